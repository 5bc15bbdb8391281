/* The SigLIP / CLIP vision encoder trained on the GPU: the training forward (activations kept) and the explicit
 * backward of src/train/vit_train.c (the reference: same graph, same variants, same parameter table), for the
 * `--train ...,encoder` ModRWKV stage. Plain C interface; built with `make CUDA=1` (vit_gpu_train.cu). The
 * inference encoder (vit_gpu.h, fused attention, no activations kept) is separate and unchanged.
 *
 * Graph (vit_train.h): SigLIP: patch conv (+bias) + positions, pre-LN blocks (MHA, GELU-tanh / erf / quick MLP),
 * post_layernorm; CLIP: class token + patch conv (no bias) + positions, pre_layrnorm, the same blocks, no post-LN
 * (CLIP's post_layernorm stays in the table, as on the CPU, and gets no gradient).
 * The same object also trains Whisper's encoder (whisper_gpu_train.h: a Conv1d stem in place of the patch embedding,
 * the same layers, Whisper's parameter table); every function below serves both unless it says otherwise.
 *
 * Precision: fp32 master weights, gradients and Adam moments. Activations (the residual stream, LayerNorm outputs,
 * q/k/v, the attention output, the MLP rows, the gradients flowing back) in the activation dtype: bf16 (GEMMs on a
 * bf16 copy of the weights, fp32 accumulation) or fp32 (fp32 = `fp32` at creation: plain fp32 GEMMs, no TF32; the
 * tests' exact mode). Attention probabilities, their gradients, LayerNorm statistics: fp32. Softmax, LayerNorm,
 * activations: fp32 arithmetic. Attention is plain (not fused): one warp per query row computes its scores,
 * softmax and output; the backward one warp per query row (dS, dq) and one per key row (dk, dv) -- deterministic.
 * Parameter gradients are accumulated (+=) deterministically: cuBLAS GEMMs for the matrices, fixed-order column
 * sums (common.cuh) for the biases, a fixed-order sum over the images for positions / class token.
 * Everything runs on the stream given at creation, asynchronously. */
#ifndef MRW_KERNELS_CUDA_VIT_GPU_TRAIN_H
#define MRW_KERNELS_CUDA_VIT_GPU_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/wkv7.h"
#include "models/vit.h"
#include "train/optim.h"
#include "train/params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mrw_vit_gpu_train mrw_vit_gpu_train;

/* Zero weights laid out for cfg (family, hidden, n_layer, n_head, intermediate, channels, patch, image_size, eps,
 * act are read; head_dim, grid, n_patches, n_tokens are derived, as mrw_vit_train_new does), activations for up
 * to max_B images. fp32: fp32 activations (else bf16). stream: NULL = the default stream. MRW_E_ARG for a shape
 * vit_train refuses, MRW_E_NOMEM naming the size that failed. */
mrw_status mrw_vit_gpu_train_new(const mrw_vit_config *cfg, int max_B, int fp32, void *stream,
                                 mrw_vit_gpu_train **out, mrw_error *err);
void mrw_vit_gpu_train_free(mrw_vit_gpu_train *v);
const mrw_vit_config *mrw_vit_gpu_train_config(const mrw_vit_gpu_train *v);
/* The parameter table (names "encoder.model.vision_model.<key>", shapes, order and offsets of vit_train's; w, g
 * NULL), the activation dtype, device bytes allocated. */
const mrw_param_set *mrw_vit_gpu_train_layout(const mrw_vit_gpu_train *v);
mrw_cuda_dtype mrw_vit_gpu_train_dtype(const mrw_vit_gpu_train *v);
size_t mrw_vit_gpu_train_bytes(const mrw_vit_gpu_train *v);
/* Input floats of one item: channels x S x S (a ViT), n_mels x n_frames (Whisper, whisper_gpu_train.h). */
size_t mrw_vit_gpu_train_in_floats(const mrw_vit_gpu_train *v);

/* Weights (grads 0; the bf16 copy is refreshed) or gradients (grads 1) from a host set, matched by name (every
 * tensor must be there with its element count). Download: weights, and gradients when `grads` (tensors of dst
 * not in the table are left alone). Synchronous. */
mrw_status mrw_vit_gpu_train_upload(mrw_vit_gpu_train *v, const mrw_param_set *src, int grads, mrw_error *err);
mrw_status mrw_vit_gpu_train_download(mrw_vit_gpu_train *v, mrw_param_set *dst, int grads, mrw_error *err);

/* pixels fp32 [B][channels][S][S] (normalised as the processor does), on the host (pixels_on_host 1; copied, then
 * the call waits for the copy) or the device; B in 1..max_B. *out = DEVICE [B * n_tokens][hidden] of the
 * activation dtype, row b * n_tokens + t, valid until the next forward. Activations are kept for the backward. */
mrw_status mrw_vit_gpu_train_forward(mrw_vit_gpu_train *v, const float *pixels, int pixels_on_host, int B,
                                     const void **out, mrw_error *err);
/* d_out: DEVICE [B * n_tokens][hidden] of the activation dtype, for the last forward: gradients += (fp32). At
 * most once per forward. */
mrw_status mrw_vit_gpu_train_backward(mrw_vit_gpu_train *v, const void *d_out, mrw_error *err);
mrw_status mrw_vit_gpu_train_zero_grad(mrw_vit_gpu_train *v, mrw_error *err);

/* Optimizer (as mrw_adapter_gpu_*): Adam state to (to_gpu) or from the device for the tensors of ps matched by
 * name with moff[i] != SIZE_MAX, and the step count; part (DEVICE, MRW_CUDA_NORM_BLOCKS doubles) += the encoder's
 * partial sums of squares; one Adam(W) step clipped by the norm finished from part (*grad_norm: NULL or the norm,
 * synchronises). */
mrw_status mrw_vit_gpu_train_moments(mrw_vit_gpu_train *v, int to_gpu, const mrw_param_set *ps, float *m, float *vv,
                                     const size_t *moff, int64_t *t, mrw_error *err);
mrw_status mrw_vit_gpu_train_sumsq_add(mrw_vit_gpu_train *v, double *part, mrw_error *err);
mrw_status mrw_vit_gpu_train_step_part(mrw_vit_gpu_train *v, const mrw_adam_config *cfg, double lr, double max_norm,
                                       const double *part, double *grad_norm, mrw_error *err);

/* ---- for the CLI trainer (src/train/trainer.c, `modrwkv train --device cuda --train adapter,...,encoder`) ---- */
struct mrw_adapter_gpu;
/* The last forward's output as HOST fp32 [B][n_tokens][hidden] (synchronises): the adapter's input rows. */
mrw_status mrw_vit_gpu_train_output_host(mrw_vit_gpu_train *v, float *dst, mrw_error *err);
/* The backward from the language model's gradient of the injected rows through the adapter `a` (whose last forward
 * took this encoder's last output, [B][n_tokens][hidden], through mrw_adapter_gpu_forward_items) into the encoder:
 * rows pos[r] (HOST, r < rows = B x the adapter's output rows per image) of d_inject (DEVICE [*][C] of inj_dt)
 * gathered and rounded to bf16 -> mrw_adapter_gpu_backward (its gradients +=, d_x bf16) -> the encoder's backward
 * (gradients +=). Replaces mrw_adapter_gpu_backward_rows for that adapter. */
mrw_status mrw_vit_gpu_train_backward_adapter(mrw_vit_gpu_train *v, struct mrw_adapter_gpu *a, const void *d_inject,
                                              mrw_cuda_dtype inj_dt, int C, const int32_t *pos, int rows,
                                              mrw_error *err);
/* Data parallelism (dist_nccl.h mrw_dp_sum_grads): the fp32 gradient buffer (DEVICE, the whole table, *n elements). */
float *mrw_vit_gpu_train_grads(mrw_vit_gpu_train *v, size_t *n);

#ifdef __cplusplus
}
#endif

#endif
