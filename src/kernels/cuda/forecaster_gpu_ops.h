/* Small device helpers of the GPU forecaster (forecaster_gpu.c): memory, transfers, casts and the row copies between
 * the pooled features [B][n] and the RWKV-7 sequence rows [B][T] (row b*T + t, t < n). C interface; CUDA=1 only. */
#ifndef MRW_KERNELS_CUDA_FORECASTER_GPU_OPS_H
#define MRW_KERNELS_CUDA_FORECASTER_GPU_OPS_H

#include <stddef.h>

#include "modrwkv.h"

#ifdef __cplusplus
extern "C" {
#endif

mrw_status mrw_fcg_malloc(void **p, size_t bytes, mrw_error *err); /* zeroed */
void mrw_fcg_free(void *p);
/* dir 0: host -> device, 1: device -> host (synchronises the stream), 2: device -> device. */
mrw_status mrw_fcg_copy(void *dst, const void *src, size_t bytes, int dir, void *stream, mrw_error *err);
mrw_status mrw_fcg_sync(void *stream, mrw_error *err);
/* y (bf16) = x (fp32), or (to_f32) y (fp32) = x (bf16); n elements. */
mrw_status mrw_fcg_cast(size_t n, const void *x, void *y, int to_f32, void *stream, mrw_error *err);
/* dst[b*T + t][c] = src[b*n + t][c] for t < n: src bf16, dst fp32 (dst_f32) or bf16. */
mrw_status mrw_fcg_rows_to_seq(int B, int n, int T, int C, const void *src, void *dst, int dst_f32, void *stream,
                               mrw_error *err);
/* dst[b*n + t][c] = bf16(src[b*T + t][c]) for t < n: src fp32 (src_f32) or bf16. */
mrw_status mrw_fcg_seq_to_rows(int B, int n, int T, int C, const void *src, int src_f32, void *dst, void *stream,
                               mrw_error *err);
/* part[0] += x (a device double). */
mrw_status mrw_fcg_part_add(double *part, double x, void *stream, mrw_error *err);
/* *sum = the sum of n device doubles (downloaded; fixed order). */
mrw_status mrw_fcg_part_sum(const double *part, int n, double *sum, void *stream, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
