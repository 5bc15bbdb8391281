/* Pieces of the bf16 encoders shared by vit_gpu.cu (ViT, Whisper) and wavlm_gpu.cu (WavLM): the row LayerNorm with
 * a pending bias, the activations, bias + activation on bf16 rows, and the row-major cuBLAS GEMM (bf16 inputs, fp32
 * accumulation). Internal, C++ only; each including file gets its own copy of the kernels. */
#ifndef MRW_KERNELS_CUDA_VIT_GPU_KERNELS_CUH
#define MRW_KERNELS_CUDA_VIT_GPU_KERNELS_CUH

#include <cublas_v2.h>
#include <math.h>

#include "kernels/cuda/common.cuh"

namespace {
using namespace mrwcu;

/* One warp per row: x += addb (written back, when given); then y = LN(x) w + b (w NULL: y = x), y of type TO. */
template <typename TO>
__global__ void ln_kernel(int rows, int C, float *x, const float *addb, const float *w, const float *b, float eps,
                          TO *y) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    float *xr = x + (size_t)row * C;
    TO *yr = y + (size_t)row * C;
    float s = 0.f;
    for (int c = lane; c < C; c += 32) {
        float v = xr[c];
        if (addb) v += addb[c], xr[c] = v;
        s += v;
    }
    if (!w) {
        for (int c = lane; c < C; c += 32) st(yr, c, xr[c]);
        return;
    }
    const float mean = warp_sum(s) / (float)C;
    float q = 0.f;
    for (int c = lane; c < C; c += 32) {
        const float d = xr[c] - mean;
        q += d * d;
    }
    const float rstd = rsqrtf(warp_sum(q) / (float)C + eps);
    for (int c = lane; c < C; c += 32) st(yr, c, (xr[c] - mean) * rstd * w[c] + b[c]);
}

__device__ __forceinline__ float act_f(float x, int act) {
    switch (act) {
    case 1: return x / (1.f + expf(-1.5957691216057308f * (x + 0.044715f * x * x * x))); /* gelu tanh */
    case 2: return x / (1.f + expf(-1.702f * x));                                      /* quick gelu */
    case 3: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));                  /* gelu (erf) */
    case 4: return fmaxf(x, 0.f);                                                       /* relu */
    default: return x;
    }
}

/* y[r][c] = act(y[r][c] + b[c]) in place, bf16, pairs (n even). */
__global__ void bias_act_kernel(size_t n2, int N, bf16 *y, const float *b, int act) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n2; i += (size_t)gridDim.x * blockDim.x) {
        const size_t e = 2 * i;
        const int c = (int)(e % N);
        const float2 v = ld2(y, e);
        st2(y, e, act_f(v.x + b[c], act), act_f(v.y + b[c + 1], act));
    }
}

/* Row-major C[M][N] = alpha A[M][K] op(B) + beta C, A and B bf16 (B stored [N][K] when transB, else [K][N]), C of
 * type ct; `who` names the caller in the error. */
static inline mrw_status enc_gemm(cublasHandle_t h, int transB, int M, int N, int K, float alpha, const bf16 *A,
                                  int lda, const bf16 *B, int ldb, float beta, cudaDataType_t ct, void *C, int ldc,
                                  const char *who, mrw_error *err) {
    const cublasStatus_t s = cublasGemmEx(h, transB ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha, B,
                                          CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C, ct, ldc,
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s == CUBLAS_STATUS_SUCCESS) return MRW_OK;
    return mrw_err(err, MRW_E_INTERNAL, "%s (cuda): cublasGemmEx: %s", who, cublasGetStatusString(s));
}

} // namespace

#endif
