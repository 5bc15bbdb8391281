/* The WavLM encoder (src/models/wavlm.h is the reference: transformers' WavLMModel, last_hidden_state) on the GPU in
 * bf16, for `chat` / `generate` / `encode --device cuda --audio` with a WavLM ModRWKV model. Built with `make CUDA=1`
 * (wavlm_gpu.cu; wavlm_gpu_load.c fills it from a weight file). See docs/CUDA.md, "ModRWKV inference on the GPU".
 *
 * Graph (n samples -> T = mrw_wavlm_out_frames frames):
 *   conv layer 0 (one input channel): a direct fp32 kernel y[t][o] = sum_j w[o][j] wave[S t + j];
 *   conv layers 1..: windows x weight, one GEMM each (the bf16 input rows [T][C] are read in place when the kernel
 *     is no longer than the stride, else unfolded first); then GroupNorm over time (layer 0 of "group": two-stage
 *     column sums in double) or LayerNorm over channels ("layer", eps 1e-5) or the bias, and the activation
 *   feature projection: LayerNorm(C_last) -> Linear -> x (fp32 residual stream)
 *   x += act(pos_conv(x) + b): the grouped convolution as one strided-batched GEMM over the groups on unfolded
 *     windows (G x T x K*C/G bf16), weight norm folded into the weight at load
 *   post-LN ("group"): x = LN(x); per layer x = LN(x + attn(x)); x = LN(x + ffn(x))
 *   stable ("layer"): per layer x += attn(LN(x)); x += ffn(LN(x)); then x = LN(x)
 *   attention: S = q k^T / sqrt(D) (one strided-batched GEMM over the heads, fp32), P = softmax(S + gate(t,h) *
 *     bias_h(s - t)) in bf16 (bias table from layer 0's rel_attn_embed, bucketed on the host; gate from the
 *     attention input's bf16 rows and gru_rel_pos_linear in fp32), o = P v (batched GEMM)
 * Precision as vit_gpu.h: matrices (conv weights of layers 1.., projection, positional conv, q/k/v/out, FFN) in bf16
 * rounded to nearest even; layer 0's conv weight, vectors, norms, the residual stream, softmax and every sum in fp32;
 * GEMM inputs (conv rows, LayerNorm outputs, q/k/v, probabilities, FFN hidden rows) in bf16.
 * Memory grows with the clip: at 10 s (160000 samples, WavLM-base-plus) about 0.4 GB of activations besides the
 * weights (the attention scores H*T*T fp32 + bf16 are the only quadratic part: 18 MB at T = 499). Buffers grow on
 * demand and stay allocated for the next call. */
#ifndef MRW_KERNELS_CUDA_WAVLM_GPU_H
#define MRW_KERNELS_CUDA_WAVLM_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "formats/tensorfile.h"
#include "models/wavlm.h"
#include "modrwkv.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mrw_wavlm_gpu mrw_wavlm_gpu;

/* Shape from cfg (a loaded CPU model's mrw_wavlm_get_config, or a hand-filled one for benchmarks: n_conv, conv_dim,
 * conv_kernel, conv_stride, conv_bias, norm_layer, hidden, n_layers, n_heads, ffn_dim, pos_kernel, pos_groups,
 * num_buckets, max_distance, stable_ln, ln_eps, act, feat_act). Weights start at zero. MRW_E_ARG for a bad shape. */
mrw_status mrw_wavlm_gpu_new(const mrw_wavlm_config *cfg, void *stream, mrw_wavlm_gpu **out, mrw_error *err);
void mrw_wavlm_gpu_free(mrw_wavlm_gpu *v);
const mrw_wavlm_config *mrw_wavlm_gpu_config(const mrw_wavlm_gpu *v);
size_t mrw_wavlm_gpu_bytes(const mrw_wavlm_gpu *v); /* device bytes allocated now (weights and activations) */

/* The tensors the model needs, by transformers' WavLMModel name (no prefix) and element count: i = 0, 1, ... until
 * NULL. The positional convolution's weight is "encoder.pos_conv_embed.conv.weight" [hidden][hidden/G][K], the
 * effective weight (the loader folds weight norm into it). The conv layers' biases are listed only with conv_bias,
 * conv norms only where the CPU model has them. */
const char *mrw_wavlm_gpu_tensor(const mrw_wavlm_gpu *v, int i, size_t *numel);
/* Upload one tensor (fp32 host data in PyTorch's layout, numel elements) by that name: MRW_E_ARG for an unknown name
 * or a wrong count. */
mrw_status mrw_wavlm_gpu_set(mrw_wavlm_gpu *v, const char *name, const float *data, size_t numel, mrw_error *err);
/* Random weights (benchmarks): matrices uniform with variance 1/(3 fan_in), norms near 1, the rest small. */
mrw_status mrw_wavlm_gpu_init_random(mrw_wavlm_gpu *v, uint64_t seed, mrw_error *err);

/* wave: HOST fp32 [n_samples] (normalised as the feature extractor does); out: HOST fp32
 * [mrw_wavlm_out_frames][hidden]; *frames (may be NULL) = that frame count. Synchronous. Too short: MRW_E_ARG,
 * longer than MRW_WAVLM_MAX_SAMPLES: MRW_E_LIMIT (as the CPU model); MRW_E_NOMEM naming the buffer that failed. */
mrw_status mrw_wavlm_gpu_forward_host(mrw_wavlm_gpu *v, const float *wave, int n_samples, float *out, int *frames,
                                      mrw_error *err);
int mrw_wavlm_gpu_out_frames(const mrw_wavlm_gpu *v, int n_samples); /* as mrw_wavlm_out_frames */

/* (wavlm_gpu_load.c, in the library only with MRW_CUDA) From a weight file: every tensor under `prefix` (the CPU
 * loader's mrw_wavlm_prefix), any stored dtype converted to fp32; the positional convolution's weight norm
 * (weight_g / weight_v, parametrizations.weight.original0 / 1, over dim 2 or 0) or plain weight. */
mrw_status mrw_wavlm_gpu_from_file(const mrw_tfile *f, const char *prefix, const mrw_wavlm_config *cfg, void *stream,
                                   mrw_wavlm_gpu **out, mrw_error *err);
/* ModRWKV: the GPU copy of the model's WavLM encoder (MRW_E_UNSUPPORTED when its audio encoder is Whisper, MRW_E_ARG
 * when it has none); and mrw_mm_encode_audio with it: the recording is decoded, resampled and normalised on the CPU,
 * encoded on the GPU (every frame kept, as on the CPU), then compressed (if the model does) and adapted by the CPU
 * code (out / encoder_out as in mrw_mm_encode_audio). */
mrw_status mrw_wavlm_gpu_from_mm(const mrw_mm *mm, void *stream, mrw_wavlm_gpu **out, mrw_error *err);
mrw_status mrw_mm_encode_audio_wavlm_gpu(const mrw_mm *mm, mrw_wavlm_gpu *v, const char *path, int n_threads,
                                         mrw_features *out, mrw_features *encoder_out, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
