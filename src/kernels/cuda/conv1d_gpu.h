/* Conv1d and average pooling over sequences on the GPU, forward and backward: the ModRWKV audio adapter's
 * Conv1d(E->2C, k3, s2, p2), the v2 adapter's Conv1d(E->E, k3, s2, no bias) and the sequence compression
 * (a trained Conv1d(E->E, k, s), or average pooling (k, s)) of ../shared/reference/modrwkv.md ("Adapters",
 * "Sequence compression"). The CPU versions (src/train/adapter_train.c: im2col + Linear, col2im; src/models/
 * adapter.c: the pooling) are the reference; tests/cuda/test_conv1d_gpu.cu checks these against them.
 *
 * Layout: channels last, n sequences of Tin rows each: x [n][Tin][Cin] -> y [n][Tout][Cout] with
 * Tout = (Tin + 2p - K) / s + 1 (mrw_cuda_conv1d_out_len; < 1: too short). The weight is PyTorch's [Cout][Cin][K]
 * (so row o of the [Cout][Cin*K] matrix), as a bf16 copy; the bias fp32 (or NULL).
 * Conv1d = im2col (col [n*Tout][Cin*K] bf16, column ci*K + j = x[t*s - p + j][ci], 0 outside) + one cuBLAS GEMM
 * (bf16 inputs, fp32 accumulation and fp32 result), then bias + the output dtype in one pass. Backward from dy
 * (bf16): dW += dy^T col (fp32), db += column sums of dy (a GEMM against a vector of ones: deterministic),
 * dcol = dy W (fp32), dx = col2im(dcol) as a gather (each x element sums its own window entries: no atomics,
 * deterministic). All asynchronous on `stream`; no host synchronisation. Built with `make CUDA=1`. */
#ifndef MRW_KERNELS_CUDA_CONV1D_GPU_H
#define MRW_KERNELS_CUDA_CONV1D_GPU_H

#include <stddef.h>

#include "kernels/cuda/gemm.h"
#include "kernels/cuda/wkv7.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Output length, or -1 when Tin is too short (or K, s < 1, p < 0). */
int mrw_cuda_conv1d_out_len(int Tin, int K, int s, int p);
/* Scratch elements: col (bf16) n*Tout*Cin*K; the fp32 dcol of the backward the same count. */
size_t mrw_cuda_conv1d_col_elems(int n, int Tout, int Cin, int K);

/* y = conv(x) + b. x: DEVICE [n][Tin][Cin] in x_dt (fp32 or bf16; rounded to bf16 for the GEMM); w: DEVICE bf16
 * [Cout][Cin][K]; b: DEVICE fp32 [Cout] or NULL; col: scratch (bf16, col_elems); yf: fp32 scratch
 * [n*Tout][Cout]; y: DEVICE [n][Tout][Cout] in y_dt (may be yf itself when y_dt is fp32). */
mrw_status mrw_cuda_conv1d_fwd(mrw_cuda_blas *h, int n, int Tin, int Cin, int Cout, int K, int s, int p,
                               mrw_cuda_dtype x_dt, const void *x, const void *w, const float *b, void *col,
                               float *yf, mrw_cuda_dtype y_dt, void *y, void *stream, mrw_error *err);
/* Backward of that forward from dy (DEVICE bf16 [n][Tout][Cout]): dw (fp32 [Cout][Cin*K]) +=, db (fp32 [Cout]) +=,
 * each NULL to skip; dx (DEVICE [n][Tin][Cin] in dx_dt, or NULL) = dL/dx. col (bf16) is recomputed from x;
 * ones: DEVICE bf16 1.0 x at least n*Tout (only with db); dcol: fp32 scratch (col_elems; only with dx). */
mrw_status mrw_cuda_conv1d_bwd(mrw_cuda_blas *h, int n, int Tin, int Cin, int Cout, int K, int s, int p,
                               mrw_cuda_dtype x_dt, const void *x, const void *w, const void *dy, void *col,
                               const void *ones, float *dw, float *db, float *dcol, mrw_cuda_dtype dx_dt, void *dx,
                               void *stream, mrw_error *err);

/* Average pooling over windows of K rows with stride s (no padding; Tout = (Tin - K) / s + 1), per channel, fp32
 * sums: y[t] = (x[t*s] + ... + x[t*s+K-1]) / K. x and y in dt (fp32 or bf16). The backward: dx = the sum of dy/K
 * over the windows holding each row (rows in no window: 0). */
mrw_status mrw_cuda_avgpool_fwd(mrw_cuda_dtype dt, int n, int Tin, int C, int K, int s, const void *x, void *y,
                                void *stream, mrw_error *err);
mrw_status mrw_cuda_avgpool_bwd(mrw_cuda_dtype dt, int n, int Tin, int C, int K, int s, const void *dy, void *dx,
                                void *stream, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
