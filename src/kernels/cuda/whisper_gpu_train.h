/* The Whisper encoder trained on the GPU: the training forward (activations kept) and the explicit backward of
 * src/train/whisper_train.c (the reference: same graph, same parameter table), for `modrwkv train --device cuda
 * --train adapter,encoder` (and adapter,rwkv,encoder) with a Whisper encoder. Built with `make CUDA=1`.
 *
 * It is the GPU ViT trainer (vit_gpu_train.h, vit_gpu_train.cu) with a Conv1d stem in place of the patch embedding:
 * the same object type, the same pre-LN layer forward / backward, parameter upload / download, Adam, gradient norm
 * and trainer glue; only the stem, the table and the input differ:
 *   mel [B][n_mels][F] -> cols1 = unfold(k3, p1) [B*F][n_mels*3] -> h1p = cols1 W1^T + b1 -> h1 = GELU(h1p)
 *   -> cols2 = unfold(h1, k3, s2, p1) [B*T][d*3] -> h2p = cols2 W2^T + b2 -> x0 = GELU(h2p) + pos[0..T)
 *   -> L x pre-LN layer (k_proj without bias; activation gelu (erf), gelu_new (tanh) or relu) -> layer_norm
 * (the convolutions as unfolded windows times the weight: one GEMM each, as whisper_gpu.h does; GELU of the stem is
 * the erf GELU, as transformers has it). embed_positions is frozen as on the CPU (whisper_train.h): in the table, never
 * a gradient (so Adam leaves it as it is: no decay, zero moments).
 * Precision as vit_gpu_train.h: fp32 master weights, gradients and Adam moments; activations (the unfolded windows,
 * the conv outputs and their gradients too) in bf16 with bf16 GEMMs, or fp32 (fp32 = 1: the tests' exact mode).
 * Backward of the stem: dh2p = dx0 * GELU'(h2p); dW2 += dh2p^T cols2, db2; dcols2 = dh2p W2; dh1 = fold(dcols2)
 * (a gather per element, deterministic); dh1p = dh1 * GELU'(h1p); dW1, db1; and, on request, the input gradient
 * dcols1 = dh1p W1, d_mel = fold(dcols1) (fp32; the trainer does not need it: the encoder is the first stage). */
#ifndef MRW_KERNELS_CUDA_WHISPER_GPU_TRAIN_H
#define MRW_KERNELS_CUDA_WHISPER_GPU_TRAIN_H

#include "kernels/cuda/vit_gpu_train.h"
#include "models/whisper_enc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Zero weights laid out for cfg (n_mels, d_model, n_layers, n_heads, ffn_dim, n_pos, act, ln_eps are read), for
 * clips of n_frames mel frames (1..2 * n_pos; T = (n_frames - 1) / 2 + 1 output rows), up to max_B clips. The
 * parameter table is mrw_whisper_train's (names "encoder.model.<key>", order, shapes, offsets). Freed with
 * mrw_vit_gpu_train_free; upload / download / zero_grad / moments / sumsq_add / step_part / layout / dtype / bytes /
 * backward / backward_adapter are the mrw_vit_gpu_train_* functions. mrw_vit_gpu_train_forward takes the mel
 * [B][n_mels][n_frames] (fp32) in place of the pixels; its output is [B * T][d_model]. MRW_E_ARG for a shape
 * whisper_train refuses. */
mrw_status mrw_whisper_gpu_train_new(const mrw_whisper_config *cfg, int n_frames, int max_B, int fp32, void *stream,
                                     mrw_vit_gpu_train **out, mrw_error *err);
int mrw_whisper_gpu_train_frames(const mrw_vit_gpu_train *v); /* n_frames (0: a ViT) */
int mrw_whisper_gpu_train_out_rows(const mrw_vit_gpu_train *v); /* T */
/* The backward (as mrw_vit_gpu_train_backward) and, when d_mel is not NULL, the input gradient into d_mel (HOST fp32
 * [B][n_mels][n_frames], synchronises). */
mrw_status mrw_whisper_gpu_train_backward(mrw_vit_gpu_train *v, const void *d_out, float *d_mel, mrw_error *err);
/* The trainer: the first `keep` rows (1..T) of every clip of the last forward as HOST fp32 [B][keep][d_model] (the
 * adapter's input: the rows of the real audio; synchronises). mrw_vit_gpu_train_backward_adapter then takes the
 * adapter's input gradient as [B][keep][d_model] and gives the other rows a zero gradient. */
mrw_status mrw_whisper_gpu_train_output_host(mrw_vit_gpu_train *v, int keep, float *dst, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
