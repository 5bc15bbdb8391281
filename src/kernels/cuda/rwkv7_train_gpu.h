/* RWKV-7 language-model training step on one GPU: the CPU trainer's math (src/train/rwkv7_train.c, the
 * reference; same parameter names, shapes and loss convention) assembled from the CUDA kernels of this folder.
 * Plain C interface; built with `make CUDA=1` (rwkv7_train_gpu.cu). See docs/CUDA.md "The GPU trainer".
 *
 *   - fp32 master weights, fp32 gradients, fp32 Adam moments, all on the device in one table laid out exactly as
 *     mrw_rwkv7_train's parameter set (names "llm.<official key>", PyTorch shapes, 16-float aligned offsets);
 *   - a bf16 working copy of the weights for the GEMMs (cuBLAS, fp32 accumulation), rewritten by every Adam step;
 *   - bf16 activations (or fp32 everywhere with `fp32`: fp32 GEMMs and fp32 activations, the mode the parity test
 *     uses to check the math at ~1e-5), fp32 WKV state, fp32 norm statistics;
 *   - the LM head and cross-entropy in row chunks: a chunk's logits are turned into their gradient in place by the
 *     fused CE kernel and consumed at once (head gradient and d(ln_out output)), so no [B*T, V] tensor exists.
 *     The forward therefore already does the head's backward (at unit scale); backward(scale) scales it.
 *   - optional per-block activation checkpointing (`ckpt`): the forward keeps only each block's input, and the
 *     backward recomputes a block's forward just before its backward (one block's activations in memory).
 * Loss convention as the CPU trainer: the forward returns the mean cross-entropy over targets != MRW_IGNORE;
 * backward(scale) accumulates scale * d(that mean) into the gradients (+=).
 * ModRWKV stages (the CPU trainer's convention): mrw_rwkv7_gpu_forward_ex takes feature rows that replace the token
 * embedding at masked positions, and mrw_rwkv7_gpu_backward_ex returns d(those rows) and runs "frozen" (stage 1:
 * no RWKV parameter gradient is computed, activation gradients still flow through every block). */
#ifndef MRW_KERNELS_CUDA_RWKV7_TRAIN_GPU_H
#define MRW_KERNELS_CUDA_RWKV7_TRAIN_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/wkv7.h"
#include "train/optim.h"
#include "train/params.h"
#include "train/rwkv7_train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int fp32;   /* 1: fp32 activations and fp32 GEMMs (slow; for checking the math) */
    int ckpt;   /* 1: per-block activation checkpointing (recompute each block's forward in the backward) */
    int device; /* CUDA device ordinal */
    int frozen; /* 1: the RWKV is never trained (ModRWKV stage 1): no parameter gradients and no Adam moments are
                 * allocated; only forwards with grad 0 / 2 and frozen backwards (_backward_ex frozen = 1) run, and
                 * what needs the gradients or moments (a full backward, _step, _zero_grad is a no-op, grads up/
                 * download, moments of a trained tensor, the flat/ZeRO calls) is MRW_E_ARG */
} mrw_rwkv7_gpu_opts;

typedef struct mrw_rwkv7_gpu mrw_rwkv7_gpu;

/* Allocates everything on the device for batches up to max_B x max_T (T any length >= 1). An allocation failure
 * returns MRW_E_NOMEM naming the bytes asked for and what to try (smaller batch, --ckpt). */
mrw_status mrw_rwkv7_gpu_new(const mrw_rwkv7_train_config *cfg, int max_B, int max_T, const mrw_rwkv7_gpu_opts *o,
                             mrw_rwkv7_gpu **out, mrw_error *err);
void mrw_rwkv7_gpu_free(mrw_rwkv7_gpu *g);
/* The parameter table (names, shapes, offsets; its w and g are NULL: the storage is on the device). */
const mrw_param_set *mrw_rwkv7_gpu_layout(const mrw_rwkv7_gpu *g);
/* Device bytes allocated (parameters, gradients, moments, activations, scratch). */
size_t mrw_rwkv7_gpu_bytes(const mrw_rwkv7_gpu *g);

/* Copy weights from a host parameter set, matched by name (every tensor of the layout must be there with the
 * same element count: MRW_E_SHAPE otherwise); refreshes the bf16 copy. */
mrw_status mrw_rwkv7_gpu_upload(mrw_rwkv7_gpu *g, const mrw_param_set *src, mrw_error *err);
/* The same for the gradients (tests: the optimizer step on the CPU trainer's gradients). */
mrw_status mrw_rwkv7_gpu_upload_grads(mrw_rwkv7_gpu *g, const mrw_param_set *src, mrw_error *err);
/* Copy weights (and gradients when `grads`) back into a host set, matched by name (tensors not in the layout are
 * left alone). */
mrw_status mrw_rwkv7_gpu_download(mrw_rwkv7_gpu *g, mrw_param_set *dst, int grads, mrw_error *err);
/* Adam state to (to_gpu) or from the device, for checkpoints: for each tensor i of ps (matched by name) with
 * moff[i] != SIZE_MAX, moments m/v + moff[i] (mrw_adam's layout), and the step count t. */
mrw_status mrw_rwkv7_gpu_moments(mrw_rwkv7_gpu *g, int to_gpu, const mrw_param_set *ps, float *m, float *v,
                                 const size_t *moff, int64_t *t, mrw_error *err);
/* Random weights on the device (uniform, scales like the reference init's magnitudes), for benchmarks. */
mrw_status mrw_rwkv7_gpu_init_random(mrw_rwkv7_gpu *g, uint64_t seed, mrw_error *err);

/* tokens, targets: host arrays [B*T]. Validates them (a token outside [0, V), a target neither MRW_IGNORE nor in
 * [0, V): MRW_E_ARG), runs the forward and, when `grad`, the head's backward at unit scale. *loss = mean CE
 * (0 when no target counts; NaN/Inf are returned as computed, the caller decides). Synchronises. */
mrw_status mrw_rwkv7_gpu_forward(mrw_rwkv7_gpu *g, const int32_t *tokens, const int32_t *targets, int B, int T,
                                 int grad, float *loss, mrw_error *err);
int64_t mrw_rwkv7_gpu_n_targets(const mrw_rwkv7_gpu *g);
/* grads += scale * d(mean loss of the last forward with grad)/d(params). At most once per forward. Asynchronous. */
mrw_status mrw_rwkv7_gpu_backward(mrw_rwkv7_gpu *g, float scale, mrw_error *err);
mrw_status mrw_rwkv7_gpu_zero_grad(mrw_rwkv7_gpu *g, mrw_error *err);
/* Global grad norm (fp64 sum) and clip (max_norm <= 0: measure only), then one Adam(W) step (t increments first)
 * on every tensor, as mrw_clip_grad_norm + mrw_adam_step with group mask MRW_PG_RWKV. *grad_norm (may be NULL)
 * receives the norm before clipping (synchronises when asked). */
mrw_status mrw_rwkv7_gpu_step(mrw_rwkv7_gpu *g, const mrw_adam_config *cfg, double lr, double max_norm,
                              double *grad_norm, mrw_error *err);
mrw_status mrw_rwkv7_gpu_sync(mrw_rwkv7_gpu *g, mrw_error *err);

/* ModRWKV: injected embedding rows and the frozen backward (mirrors mrw_rwkv7_train_forward / _backward).
 * inject: NULL, or a DEVICE tensor [B*T][C] of the activation dtype (bf16; fp32 in fp32 mode), row b*T + t;
 * inject_mask: host [B*T], 1 = the row comes from inject instead of emb[token] (it then goes through ln0 like an
 * embedding; the token at that row is not checked). grad: 0 = loss only; 1 = keep what any backward needs;
 * 2 = only for a frozen backward (the LM head's weight gradient is not computed: backward_ex(frozen = 0) after it
 * is an error). */
mrw_status mrw_rwkv7_gpu_forward_ex(mrw_rwkv7_gpu *g, const int32_t *tokens, const void *inject,
                                    const uint8_t *inject_mask, const int32_t *targets, int B, int T, int grad,
                                    float *loss, mrw_error *err);
/* grads += scale * d(mean loss)/d(params) unless `frozen` (then no parameter gradient is touched: no weight-
 * gradient GEMM, no parameter column sum, no embedding scatter); d_inject (NULL or DEVICE [B*T][C], activation
 * dtype) = scale * d(mean loss)/d(inject row) at masked rows, 0 elsewhere (written =). Asynchronous. */
mrw_status mrw_rwkv7_gpu_backward_ex(mrw_rwkv7_gpu *g, float scale, int frozen, void *d_inject, mrw_error *err);
/* Hidden-state mode (read-out heads such as the forecaster's; the CPU reference is mrw_rwkv7_train_forward_hidden /
 * _backward_hidden): the forward up to ln_out, no LM head and no cross-entropy ("llm.head.weight" is neither read nor
 * trained). tokens, inject, inject_mask and grad as forward_ex (no targets); hidden: NULL or HOST fp32 [B][C] =
 * ln_out's output at position T-1 of each sequence (synchronises when given). */
mrw_status mrw_rwkv7_gpu_forward_hidden(mrw_rwkv7_gpu *g, const int32_t *tokens, const void *inject,
                                        const uint8_t *inject_mask, int B, int T, int grad, float *hidden,
                                        mrw_error *err);
/* Its backward from d_hidden (HOST fp32 [B][C] = d loss / d hidden at position T-1; zero at every other position):
 * gradients += scale * d loss / d param unless `frozen`; d_inject as backward_ex (scaled). Synchronises. */
mrw_status mrw_rwkv7_gpu_backward_hidden(mrw_rwkv7_gpu *g, const float *d_hidden, float scale, int frozen,
                                         void *d_inject, mrw_error *err);
/* The device stream everything runs on (callers chaining their own kernels: the adapter, the encoder). */
void *mrw_rwkv7_gpu_stream(mrw_rwkv7_gpu *g);

/* Step-time breakdown: when on, CUDA events at every change of op class; mrw_rwkv7_gpu_timing returns the
 * milliseconds per class accumulated since the last call (and resets): GEMM, WKV7, other, optimizer (norm +
 * Adam), and "other" split into LayerNorm/GroupNorm, element-wise chains (token mixes, key prep, relu^2, LoRA
 * activations, residual copies), cross-entropy, embedding. Synchronises. */
enum {
    MRW_GPU_T_GEMM, MRW_GPU_T_WKV, MRW_GPU_T_OTHER, MRW_GPU_T_OPT,
    MRW_GPU_T_NORM, MRW_GPU_T_EW, MRW_GPU_T_CE, MRW_GPU_T_EMB, /* the parts of OTHER */
    MRW_GPU_T_N
};
void mrw_rwkv7_gpu_set_timing(mrw_rwkv7_gpu *g, int on);
void mrw_rwkv7_gpu_timing(mrw_rwkv7_gpu *g, double ms[MRW_GPU_T_N]);

/* ---- data parallelism (src/kernels/cuda/dist_nccl.h): the flat device buffers and a step over a shard ---- */
typedef struct {
    float *w, *g, *m, *v; /* fp32 weights, gradients, Adam moments (m, v NULL after _drop_moments) */
    void *wbf;            /* bf16 copy (NULL in fp32 mode) */
    size_t total;         /* elements of the table (padding between tensors included) */
    void *stream;         /* the trainer's cudaStream_t: collectives on it keep the order */
    double *norm_part;    /* MRW_CUDA_NORM_BLOCKS partial sums of the gradient norm (adam.h) */
    int64_t *t_adam;      /* Adam's step count */
} mrw_rwkv7_gpu_flat;
void mrw_rwkv7_gpu_flat_get(mrw_rwkv7_gpu *g, mrw_rwkv7_gpu_flat *f);
/* Reallocates w and g to cap >= total elements (contents kept, tail zero): collectives want N equal shards. */
mrw_status mrw_rwkv7_gpu_flat_grow(mrw_rwkv7_gpu *g, size_t cap, mrw_error *err);
/* Frees the full-size moments (ZeRO-1 keeps its shard elsewhere; _step and _moments are then unusable). */
void mrw_rwkv7_gpu_drop_moments(mrw_rwkv7_gpu *g);
/* Partial sums of the squared gradient over [lo, hi) into norm_part (to be summed over the ranks), then
 * _step_range: norm + clip coefficient from norm_part, t += 1, Adam(W) on [lo, hi) (per tensor for weight decay)
 * with the shard's moments m, v (m[0] = element lo); no bf16 copy: gather w, then _refresh. */
mrw_status mrw_rwkv7_gpu_sumsq_range(mrw_rwkv7_gpu *g, size_t lo, size_t hi, mrw_error *err);
mrw_status mrw_rwkv7_gpu_step_range(mrw_rwkv7_gpu *g, const mrw_adam_config *cfg, double lr, double max_norm,
                                    size_t lo, size_t hi, float *m, float *v, double *grad_norm, mrw_error *err);
mrw_status mrw_rwkv7_gpu_refresh(mrw_rwkv7_gpu *g, mrw_error *err);
/* Moments between the host (mrw_adam's layout: host + moff[i] for tensor i of ps) and a full-table device buffer
 * dev (to_gpu 1: host -> dev). */
mrw_status mrw_rwkv7_gpu_moments_buf(mrw_rwkv7_gpu *g, int to_gpu, const mrw_param_set *ps, float *host,
                                     const size_t *moff, float *dev, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
