/* bf16 GEMM, fp32 accumulation, through cublasGemmEx (gemm.h). Row-major C = op(A) op(B) is column-major
 * C^T = op(B)^T op(A)^T, and a row-major matrix is its transpose in column-major, so the call passes B first
 * with the same op flags and the dimensions swapped. */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <stdlib.h>
#include <string.h>

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

/* ------------------------------------------------------------------------------------ cuBLASLt, C != D */

namespace {
struct lt_key {
    int ab, c, tA, tB, M, N, K, lda, ldb, ldd, beta0, alA, alB, alC, alD;
};
constexpr int LT_CAND = 8; /* algorithms a tuning handle times per shape */
struct lt_plan {
    lt_key k;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    int n_cand, tuned;
    cublasLtMatmulAlgo_t cand[LT_CAND];
};
constexpr int LT_CACHE = 256; /* a training step's shapes (forward, backward, weight gradients) all stay cached */
constexpr size_t LT_WS = (size_t)32 << 20;
} // namespace

struct mrw_cuda_lt {
    cublasLtHandle_t h;
    void *ws;
    int n, tune, last, evicted; /* last: the plan of the previous call (a training step repeats its sequence of
                                 * shapes, so the next call's plan is usually the one after it) */ /* evicted: the cache overflowed once; new shapes then take the heuristic's choice
                           * (timing shapes that keep coming back would cost a synchronisation each time) */
    lt_plan plan[LT_CACHE];
};

static void plan_free(lt_plan *p) {
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    p->op = nullptr, p->la = p->lb = p->lc = nullptr;
}

extern "C" mrw_status mrw_cuda_lt_new_tuned(mrw_cuda_lt **out, int tune, mrw_error *err) {
    const mrw_status s = mrw_cuda_lt_new(out, err);
    if (!s) (*out)->tune = !!tune;
    return s;
}

extern "C" mrw_status mrw_cuda_lt_new(mrw_cuda_lt **out, mrw_error *err) {
    *out = nullptr;
    mrw_cuda_lt *b = (mrw_cuda_lt *)calloc(1, sizeof *b);
    if (!b) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    const cublasStatus_t s = cublasLtCreate(&b->h);
    if (s != CUBLAS_STATUS_SUCCESS) {
        free(b);
        return mrw_err(err, MRW_E_INTERNAL, "cublasLtCreate: %s", blas_msg(s));
    }
    if (cudaMalloc(&b->ws, LT_WS) != cudaSuccess) {
        cudaGetLastError();
        cublasLtDestroy(b->h);
        free(b);
        return mrw_err(err, MRW_E_NOMEM, "gemm (cuda): cannot allocate the %zu MiB cuBLASLt workspace", LT_WS >> 20);
    }
    *out = b;
    return MRW_OK;
}

extern "C" void mrw_cuda_lt_free(mrw_cuda_lt *b) {
    if (!b) return;
    for (int i = 0; i < b->n; i++) plan_free(&b->plan[i]);
    cudaFree(b->ws);
    cublasLtDestroy(b->h);
    free(b);
}

/* the largest power of two (at most 256) that divides the address */
static int align_of(const void *p) {
    const uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 1 && (a & (uintptr_t)(al - 1))) al >>= 1;
    return al;
}

static cublasStatus_t plan_make(mrw_cuda_lt *b, const lt_key &k, lt_plan *p) {
    const cudaDataType_t at = k.ab ? CUDA_R_16BF : CUDA_R_32F, ct = k.c ? CUDA_R_16BF : CUDA_R_32F;
    /* row-major D = op(A) op(B) is column-major D^T = op(B)^T op(A)^T: cuBLASLt's A is our B and vice versa */
    const cublasOperation_t opa = k.tB ? CUBLAS_OP_T : CUBLAS_OP_N, opb = k.tA ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t s = cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatrixLayoutCreate(&p->la, at, k.tB ? k.K : k.N, k.tB ? k.N : k.K, k.ldb);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatrixLayoutCreate(&p->lb, at, k.tA ? k.M : k.K, k.tA ? k.K : k.M, k.lda);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&p->lc, ct, k.N, k.M, k.ldd);
    cublasLtMatmulPreference_t pref = nullptr;
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulPreferenceCreate(&pref);
    const uint64_t ws = LT_WS;
    const uint32_t al[4] = {(uint32_t)k.alB, (uint32_t)k.alA, (uint32_t)k.alC, (uint32_t)k.alD};
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], 4);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], 4);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], 4);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[3], 4);
    cublasLtMatmulHeuristicResult_t res[LT_CAND];
    int got = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(b->h, p->op, p->la, p->lb, p->lc, p->lc, pref, b->tune ? LT_CAND : 1, res,
                                           &got);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (s == CUBLAS_STATUS_SUCCESS && got < 1) s = CUBLAS_STATUS_NOT_SUPPORTED;
    if (s != CUBLAS_STATUS_SUCCESS) {
        plan_free(p);
        return s;
    }
    p->algo = res[0].algo;
    p->n_cand = 0;
    for (int i = 0; i < got; i++)
        if (res[i].state == CUBLAS_STATUS_SUCCESS) p->cand[p->n_cand++] = res[i].algo;
    p->tuned = p->n_cand < 2;
    p->k = k;
    return s;
}

/* A tuning handle's first call of a shape: every candidate algorithm run on the call's own operands (once to warm
 * up, then 3 timed runs), the fastest kept. The call is repeated, so when it accumulates into D in place (beta != 0,
 * Cin == D) the candidates write a scratch copy of D's shape instead; D itself is written by the caller's run after.
 * Any failure keeps the heuristic's first choice. Synchronises the stream (once per shape). */
static void plan_tune(mrw_cuda_lt *b, lt_plan *p, float alpha, const void *A, const void *B, float beta,
                      const void *Cin, void *D, size_t d_bytes, cudaStream_t st) {
    p->tuned = 1;
    void *Dt = D, *scratch = nullptr;
    if (beta != 0.f && Cin == D) {
        if (cudaMalloc(&scratch, d_bytes) != cudaSuccess) {
            cudaGetLastError();
            return;
        }
        Dt = scratch;
    }
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
        cudaGetLastError();
        if (e0) cudaEventDestroy(e0);
        cudaFree(scratch);
        return;
    }
    float best = 0;
    int best_i = -1;
    for (int i = 0; i < p->n_cand; i++) {
        bool ok = cublasLtMatmul(b->h, p->op, &alpha, B, p->la, A, p->lb, &beta, Cin, p->lc, Dt, p->lc, &p->cand[i],
                                 b->ws, LT_WS, st) == CUBLAS_STATUS_SUCCESS;
        ok = ok && cudaEventRecord(e0, st) == cudaSuccess;
        for (int r = 0; r < 3 && ok; r++)
            ok = cublasLtMatmul(b->h, p->op, &alpha, B, p->la, A, p->lb, &beta, Cin, p->lc, Dt, p->lc, &p->cand[i],
                                b->ws, LT_WS, st) == CUBLAS_STATUS_SUCCESS;
        float ms = 0;
        ok = ok && cudaEventRecord(e1, st) == cudaSuccess && cudaEventSynchronize(e1) == cudaSuccess &&
             cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess;
        if (ok && (best_i < 0 || ms < best)) best = ms, best_i = i;
    }
    cudaGetLastError();
    if (best_i >= 0) p->algo = p->cand[best_i];
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(scratch); /* (synchronous: the candidates are done with it) */
}

extern "C" mrw_status mrw_cuda_gemm_cd(mrw_cuda_lt *b, mrw_cuda_dtype ab_dt, int transA, int transB, int M, int N,
                                       int K, float alpha, const void *A, int lda, const void *B, int ldb, float beta,
                                       const void *Cin, mrw_cuda_dtype c_dt, void *D, int ldd, void *stream,
                                       mrw_error *err) {
    if (!b || !A || !B || !D || (beta != 0.f && !Cin))
        return mrw_err(err, MRW_E_ARG, "gemm (cuda, lt): NULL handle or matrix");
    if (M < 1 || N < 1 || K < 1) return mrw_err(err, MRW_E_ARG, "gemm (cuda, lt): bad shape M=%d N=%d K=%d", M, N, K);
    if (lda < (transA ? M : K) || ldb < (transB ? K : N) || ldd < N)
        return mrw_err(err, MRW_E_ARG, "gemm (cuda, lt): leading dimension too small (lda %d ldb %d ldd %d for "
                       "%dx%dx%d)", lda, ldb, ldd, M, N, K);
    if ((ab_dt != MRW_CUDA_F32 && ab_dt != MRW_CUDA_BF16) || (c_dt != MRW_CUDA_F32 && c_dt != MRW_CUDA_BF16))
        return mrw_err(err, MRW_E_UNSUPPORTED, "gemm (cuda, lt): dtypes %d / %d", (int)ab_dt, (int)c_dt);
    if (!Cin) Cin = D;
    const lt_key k = {ab_dt == MRW_CUDA_BF16, c_dt == MRW_CUDA_BF16, !!transA, !!transB, M, N, K, lda, ldb, ldd,
                      beta == 0.f, align_of(A), align_of(B), align_of(Cin), align_of(D)};
    lt_plan *p = nullptr;
    const int hint = b->last + 1 < b->n ? b->last + 1 : 0;
    if (b->n && !memcmp(&b->plan[hint].k, &k, sizeof k)) p = &b->plan[hint];
    for (int i = 0; i < b->n && !p; i++)
        if (!memcmp(&b->plan[i].k, &k, sizeof k)) p = &b->plan[i];
    if (!p) {
        if (b->n == LT_CACHE) { /* full: drop the oldest */
            plan_free(&b->plan[0]);
            memmove(&b->plan[0], &b->plan[1], (LT_CACHE - 1) * sizeof(lt_plan));
            b->n--;
            b->evicted = 1;
        }
        lt_plan np;
        memset(&np, 0, sizeof np);
        const cublasStatus_t s = plan_make(b, k, &np);
        if (s != CUBLAS_STATUS_SUCCESS)
            return mrw_err(err, s == CUBLAS_STATUS_NOT_SUPPORTED ? MRW_E_UNSUPPORTED : MRW_E_INTERNAL,
                           "gemm (cuda, lt): no algorithm for %dx%dx%d: %s", M, N, K, blas_msg(s));
        b->plan[b->n] = np;
        p = &b->plan[b->n++];
    }
    b->last = (int)(p - b->plan);
    if (!p->tuned && !b->evicted)
        plan_tune(b, p, alpha, A, B, beta, Cin, D,
                  (size_t)(M - 1) * ldd * (c_dt == MRW_CUDA_BF16 ? 2 : 4) + (size_t)N * (c_dt == MRW_CUDA_BF16 ? 2 : 4),
                  (cudaStream_t)stream);
    const cublasStatus_t s = cublasLtMatmul(b->h, p->op, &alpha, B, p->la, A, p->lb, &beta, Cin, p->lc, D, p->lc,
                                            &p->algo, b->ws, LT_WS, (cudaStream_t)stream);
    if (s != CUBLAS_STATUS_SUCCESS)
        return mrw_err(err, MRW_E_INTERNAL, "gemm (cuda, lt): cublasLtMatmul %dx%dx%d: %s", M, N, K, blas_msg(s));
    return MRW_OK;
}
