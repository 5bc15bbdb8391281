/* bf16 GEMM, fp32 accumulation, through cublasGemmEx (gemm.h). Row-major C = op(A) op(B) is column-major
 * C^T = op(B)^T op(A)^T, and a row-major matrix is its transpose in column-major, so the call passes B first
 * with the same op flags and the dimensions swapped. */
#include <cublas_v2.h>
#include <stdlib.h>

#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/cuda/gemm.h"
}

struct mrw_cuda_blas {
    cublasHandle_t h;
};

static const char *blas_msg(cublasStatus_t s) { return cublasGetStatusString(s); }

extern "C" mrw_status mrw_cuda_blas_new(mrw_cuda_blas **out, mrw_error *err) {
    *out = nullptr;
    mrw_cuda_blas *b = (mrw_cuda_blas *)calloc(1, sizeof *b);
    if (!b) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    const cublasStatus_t s = cublasCreate(&b->h);
    if (s != CUBLAS_STATUS_SUCCESS) {
        free(b);
        return mrw_err(err, MRW_E_INTERNAL, "cublasCreate: %s", blas_msg(s));
    }
    *out = b;
    return MRW_OK;
}

extern "C" void mrw_cuda_blas_free(mrw_cuda_blas *b) {
    if (!b) return;
    cublasDestroy(b->h);
    free(b);
}

extern "C" mrw_status mrw_cuda_gemm(mrw_cuda_blas *b, int transA, int transB, int M, int N, int K, float alpha,
                                    const void *A, int lda, const void *B, int ldb, float beta, mrw_cuda_dtype c_dt,
                                    void *C, int ldc, void *stream, mrw_error *err) {
    if (!b || !A || !B || !C) return mrw_err(err, MRW_E_ARG, "gemm (cuda): NULL handle or matrix");
    if (M < 1 || N < 1 || K < 1)
        return mrw_err(err, MRW_E_ARG, "gemm (cuda): bad shape M=%d N=%d K=%d", M, N, K);
    /* row-major leading dimensions: at least the stored row length */
    if (lda < (transA ? M : K) || ldb < (transB ? K : N) || ldc < N)
        return mrw_err(err, MRW_E_ARG, "gemm (cuda): leading dimension too small (lda %d ldb %d ldc %d for %dx%dx%d)",
                       lda, ldb, ldc, M, N, K);
    cudaDataType_t ct;
    if (c_dt == MRW_CUDA_F32) ct = CUDA_R_32F;
    else if (c_dt == MRW_CUDA_BF16) ct = CUDA_R_16BF;
    else return mrw_err(err, MRW_E_UNSUPPORTED, "gemm (cuda): output dtype %d", (int)c_dt);
    cublasStatus_t s = cublasSetStream(b->h, (cudaStream_t)stream);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasGemmEx(b->h, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha,
                         B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C, ct, ldc, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS)
        return mrw_err(err, MRW_E_INTERNAL, "gemm (cuda): cublasGemmEx %dx%dx%d: %s", M, N, K, blas_msg(s));
    return MRW_OK;
}
