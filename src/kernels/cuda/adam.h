/* Adam / AdamW on fp32 master weights with an optional bf16 copy for the forward, and the global gradient
 * norm for clipping, on the GPU. Plain C interface; built with `make CUDA=1` (adam.cu). See docs/CUDA.md.
 * The math is the CPU optimizer's (src/train/optim.h, = torch.optim.Adam/AdamW and clip_grad_norm_):
 *     clip:  total = ||g||_2 over every trained tensor; coef = max_norm / (total + 1e-6) in fp32, applied if < 1
 *     Adam:  g = g * coef;  g += wd * w (Adam with L2 decay only)
 *            m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *            w *= 1 - lr wd (AdamW only);  w -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *            wbf = bf16(w) (round to nearest even), when a copy is wanted
 * The norm is two-pass and deterministic: mrw_cuda_sumsq_part per tensor (a fixed grid of
 * MRW_CUDA_NORM_BLOCKS blocks writes its partial sums in double), then mrw_cuda_grad_norm_finish over all
 * tensors' partials writes the norm and the clip coefficient to device memory, where the Adam step reads the
 * coefficient: no host synchronisation in a step. All pointers are device pointers except `hp`. */
#ifndef MRW_KERNELS_CUDA_ADAM_H
#define MRW_KERNELS_CUDA_ADAM_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/wkv7.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MRW_CUDA_NORM_BLOCKS 512

/* part[0 .. MRW_CUDA_NORM_BLOCKS) = partial sums of g^2 (double). */
mrw_status mrw_cuda_sumsq_part(size_t n, const float *g, double *part, void *stream, mrw_error *err);
/* part: n_tensors * MRW_CUDA_NORM_BLOCKS doubles (tensor i at i * MRW_CUDA_NORM_BLOCKS); out[0] = the norm,
 * out[1] = the clip coefficient (1 when max_norm <= 0 or no clipping is needed); tensor_sumsq (NULL or
 * n_tensors doubles) receives each tensor's sum of squares. */
mrw_status mrw_cuda_grad_norm_finish(int n_tensors, const double *part, float max_norm, float *out,
                                     double *tensor_sumsq, void *stream, mrw_error *err);

typedef struct {
    float step_size, bc2_sqrt, eps, b1, b2, omb1, omb2, wd, shrink;
    int l2_decay, decoupled_decay; /* which decay applies to this tensor (at most one) */
} mrw_cuda_adam_hp;

/* The fp32 scalars of step t (t >= 1, after the increment) for one tensor, as the CPU optimizer computes them. */
mrw_cuda_adam_hp mrw_cuda_adam_hparams(double lr, int64_t t, double beta1, double beta2, double eps,
                                       double weight_decay, int decoupled, int no_decay);
/* One step over n elements; coef (device, 1 float) may be NULL (no clipping); wbf (bf16 copy) may be NULL. */
mrw_status mrw_cuda_adam_step(size_t n, float *w, const float *g, float *m, float *v, void *wbf,
                              const mrw_cuda_adam_hp *hp, const float *coef, void *stream, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
