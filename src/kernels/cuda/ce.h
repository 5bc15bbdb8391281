/* Fused cross-entropy forward + gradient over a large vocabulary on the GPU (the LM head's loss).
 * Plain C interface; built with `make CUDA=1` (ce.cu). See docs/CUDA.md.
 *
 * logits [rows][V] (fp32 or bf16, `dt`), targets [rows] int32 with MRW_CUDA_IGNORE (-100) = no loss. Per row:
 *     lse = log sum_v exp(logit_v)            (fp32, max-shifted, one online pass)
 *     row_loss = lse - logit[target]          (0 for an ignored row)
 * and, when grad != 0, the logits are overwritten IN PLACE by their gradient
 *     dlogit_v = scale * (softmax_v - [v == target])     (0 on ignored rows)
 * with scale = (loss scale) / (number of counted targets), as the CPU trainer's mean loss has it. Nothing
 * bigger than one row is ever materialised: each row is read twice (the second time mostly from L2).
 * A target outside [0, V) that is not -100 gives row_loss NaN (the trainer validates targets on the host).
 * row_lse may be NULL. All pointers are device pointers; asynchronous on `stream`. */
#ifndef MRW_KERNELS_CUDA_CE_H
#define MRW_KERNELS_CUDA_CE_H

#include <stdint.h>

#include "kernels/cuda/wkv7.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MRW_CUDA_IGNORE (-100)

mrw_status mrw_cuda_cross_entropy(mrw_cuda_dtype dt, int rows, int V, void *logits, const int32_t *targets,
                                  int grad, float scale, float *row_loss, float *row_lse, void *stream,
                                  mrw_error *err);

/* out[0] = mean of row_loss over the rows whose target is not ignored (0 if none), out[1] = that count (as a
 * float); deterministic (double sum in a fixed order). */
mrw_status mrw_cuda_loss_mean(int rows, const float *row_loss, const int32_t *targets, float *out, void *stream,
                              mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
