/* The Whisper encoder (src/models/whisper_enc.h is the reference: transformers' WhisperEncoder, last_hidden_state)
 * on the GPU in bf16, for `chat` / `generate` / `encode --device cuda --audio`. It is the ViT of vit_gpu.h with a
 * Conv1d stem in place of the patch embedding, and lives in vit_gpu.cu:
 *   mel [n_mels][F] -> conv1 (n_mels -> d, k3, p1) + GELU -> conv2 (d -> d, k3, s2, p1) + GELU + embed_positions[0..T)
 *   (the convolutions as unfolded windows times the weight, one GEMM each; T = ceil(F / 2))
 *   -> L x pre-LN layer (self_attn_layer_norm, q/k/v/out (no k bias), final_layer_norm, fc1, GELU, fc2) -> layer_norm
 * Precision as vit_gpu.h: matrices (the conv weights too) and GEMM inputs (the mel and conv1's output included) in
 * bf16, the residual stream, LayerNorms, softmax and every sum in fp32. One clip of F frames per forward (ModRWKV
 * always feeds F = 2 * n_pos = 3000). Built with `make CUDA=1`. See docs/CUDA.md, "ModRWKV inference on the GPU". */
#ifndef MRW_KERNELS_CUDA_WHISPER_GPU_H
#define MRW_KERNELS_CUDA_WHISPER_GPU_H

#include "kernels/cuda/vit_gpu.h"
#include "models/whisper_enc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A Whisper encoder for clips of n_frames mel frames (1..2 * n_pos) from a mrw_whisper_config (a loaded CPU model's
 * mrw_whisper_enc_config); weights start at zero, filled by name with mrw_vit_gpu_set (names relative to the
 * encoder: "conv1.weight", "layers.0.fc1.weight", "layer_norm.bias", ...; mrw_vit_gpu_tensor lists them) and freed
 * with mrw_vit_gpu_free. MRW_E_ARG for a bad shape, MRW_E_UNSUPPORTED for an activation other than gelu / gelu_new. */
mrw_status mrw_whisper_gpu_new(const mrw_whisper_config *cfg, int n_frames, void *stream, mrw_vit_gpu **out,
                               mrw_error *err);
int mrw_whisper_gpu_frames(const mrw_vit_gpu *v); /* the n_frames it was made for (0: not a Whisper encoder) */
/* mel: HOST [n_mels][n_frames]; out: HOST fp32 [ceil(n_frames / 2)][d_model]. Synchronous. */
mrw_status mrw_whisper_gpu_forward_host(mrw_vit_gpu *v, const float *mel, float *out, mrw_error *err);
/* Several clips per forward (the trainer's frozen encoder: a micro-batch's recordings at once): made for up to
 * max_clips clips (mrw_whisper_gpu_new is max_clips = 1); mel: HOST [n][n_mels][n_frames], out: HOST fp32
 * [n][ceil(n_frames / 2)][d_model], 1 <= n <= max_clips. The convolution stem runs clip by clip, the layers over all
 * n clips' rows at once (attention per clip): each clip's rows are its single-clip forward's up to the GEMMs' bf16
 * rounding over more rows. MRW_E_ARG for max_clips out of range (its attention buffers above 4e9 elements). */
mrw_status mrw_whisper_gpu_new_batch(const mrw_whisper_config *cfg, int n_frames, int max_clips, void *stream,
                                     mrw_vit_gpu **out, mrw_error *err);
int mrw_whisper_gpu_max_clips(const mrw_vit_gpu *v); /* (0: not a Whisper encoder) */
mrw_status mrw_whisper_gpu_forward_host_batch(mrw_vit_gpu *v, const float *mel, int n, float *out, mrw_error *err);

/* (vit_gpu_load.c, in the library only with MRW_CUDA) From a weight file: every tensor under `prefix` (the CPU
 * loader's mrw_whisper_enc_prefix), any stored dtype converted to fp32, matrices then rounded to bf16. */
mrw_status mrw_whisper_gpu_from_file(const mrw_tfile *f, const char *prefix, const mrw_whisper_config *cfg,
                                     int n_frames, void *stream, mrw_vit_gpu **out, mrw_error *err);
/* ModRWKV: the GPU copy of the model's Whisper encoder (MRW_E_UNSUPPORTED when its audio encoder is WavLM,
 * MRW_E_ARG when it has none), for the model's 30 s clips; and mrw_mm_encode_audio with it: the recording is
 * decoded, resampled and turned into log-mel frames on the CPU, encoded on the GPU, trimmed to the real audio as
 * on the CPU, and adapted by the CPU code. */
mrw_status mrw_whisper_gpu_from_mm(const mrw_mm *mm, void *stream, mrw_vit_gpu **out, mrw_error *err);
/* The same for up to max_clips clips per forward (mrw_whisper_gpu_forward_host_batch). */
mrw_status mrw_whisper_gpu_from_mm_batch(const mrw_mm *mm, int max_clips, void *stream, mrw_vit_gpu **out,
                                         mrw_error *err);
mrw_status mrw_mm_encode_audio_gpu(const mrw_mm *mm, mrw_vit_gpu *v, const char *path, int n_threads,
                                   mrw_features *out, mrw_features *encoder_out, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
