/* bf16 GEMM with fp32 accumulation on the GPU through cuBLAS (tensor cores), in the row-major terms the rest
 * of the library uses. Plain C interface; built with `make CUDA=1` (gemm.cu); links -lcublas. See docs/CUDA.md.
 *
 *     C[M][N] = alpha * op(A)[M][K] * op(B)[K][N] + beta * C
 * A, B bf16, row-major with leading dimensions lda, ldb (op(X) = X, or X^T when transX: then X is stored
 * [K][M] / [N][K]); C is bf16 or fp32 (`c_dt`, row-major, ldc); products and sums in fp32
 * (CUBLAS_COMPUTE_32F). The trainer's three forms: Y = X W^T (transB), dX = dY W (none),
 * dW += dY^T X (transA, beta 1, fp32 C). */
#ifndef MRW_KERNELS_CUDA_GEMM_H
#define MRW_KERNELS_CUDA_GEMM_H

#include "kernels/cuda/wkv7.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mrw_cuda_blas mrw_cuda_blas; /* a cuBLAS handle; one per thread / device */

mrw_status mrw_cuda_blas_new(mrw_cuda_blas **out, mrw_error *err);
void mrw_cuda_blas_free(mrw_cuda_blas *h);

mrw_status mrw_cuda_gemm(mrw_cuda_blas *h, int transA, int transB, int M, int N, int K, float alpha, const void *A,
                         int lda, const void *B, int ldb, float beta, mrw_cuda_dtype c_dt, void *C, int ldc,
                         void *stream, mrw_error *err);

/* cuBLASLt with a separate input C and output D (links -lcublasLt):
 *     D[M][N] = alpha * op(A)[M][K] * op(B)[K][N] + beta * Cin
 * A and B of ab_dt (bf16, or fp32: then a plain fp32 product, no TF32), Cin and D of c_dt with the same leading
 * dimension ldd; Cin may be D itself or, with beta 0, NULL. The residual adds of the trainer (x + z W^T into a new
 * tensor, so x is kept without a copy). The handle owns a 32 MiB workspace and a cache of the algorithm chosen
 * per shape, dtypes and pointer alignments; one handle per stream at a time. MRW_E_UNSUPPORTED when cuBLASLt
 * offers no algorithm for the case (the caller can fall back to a copy and mrw_cuda_gemm). */
typedef struct mrw_cuda_lt mrw_cuda_lt;
mrw_status mrw_cuda_lt_new(mrw_cuda_lt **out, mrw_error *err);
/* The same with tune = 1: the first call of each shape times up to 8 of cuBLASLt's candidate algorithms on its own
 * operands and keeps the fastest (the trainer's GEMMs: every step repeats the same shapes). */
mrw_status mrw_cuda_lt_new_tuned(mrw_cuda_lt **out, int tune, mrw_error *err);
void mrw_cuda_lt_free(mrw_cuda_lt *h);
mrw_status mrw_cuda_gemm_cd(mrw_cuda_lt *h, mrw_cuda_dtype ab_dt, int transA, int transB, int M, int N, int K,
                            float alpha, const void *A, int lda, const void *B, int ldb, float beta, const void *Cin,
                            mrw_cuda_dtype c_dt, void *D, int ldd, void *stream, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
