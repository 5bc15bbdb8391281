/* RWKV-7 training step on one GPU (rwkv7_train_gpu.h). The structure follows the CPU trainer
 * (src/train/rwkv7_train.c): one forward per block that keeps what the backward needs, one explicit backward per
 * block, llm.c style. Every projection is a cuBLAS GEMM over the B*T rows; everything else is the kernels of
 * ce.h, norm.h, rwkv7_ew.h, wkv7.h, adam.h plus the few small kernels below (embedding gather / scatter-add,
 * the LoRA activations and their derivatives, scaling, random init).
 *
 * Per block the forward keeps (dt = bf16, or fp32 in fp32 mode): x_in, xa (LN1 out), r, kraw, vraw, the LoRA
 * hidden rows lw = tanh(xw w1), la = xa a1, lg = sigmoid(xg g1), lv = xv v1, the LoRA outputs pw, pa, pv, the gate
 * g, the WKV inputs w (log-space), k, v, a, b, the WKV output y, z = GroupNorm/bonus/gate output, xm (residual
 * after the time mix), xf (LN2 out), hk = relu(W_fk u)^2, the six token-shift mixes and u (kept rather than
 * recomputed in the backward: 7 more B*T*C tensors a block, 2 reads + 7 writes of B*T*C less); fp32: LN/GN
 * statistics, the WKV checkpoints and sa. */
#include <cublas_v2.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/cuda/adam.h"
#include "kernels/cuda/ce.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rwkv7_ew.h"
#include "kernels/cuda/rwkv7_train_gpu.h"
#include "train/rwkv7_layout.h"
}

using namespace mrwcu;

#define LN_EPS 1e-5f
#define GN_EPS 64e-5f
#define MAX_EVENTS 16384

namespace {

typedef mrw_rwkv7_lidx lidx; /* the parameter table is train/rwkv7_layout.c's */

/* What the forward keeps per block (pointers into the arena; void* = activation dtype). */
typedef struct {
    void *x_in, *xa, *r, *kraw, *vraw, *lw, *la, *lg, *lv, *pw, *pa, *pv, *g, *wl, *k, *v, *a, *b, *y, *z, *xm, *xf,
        *hk,                        /* hk: relu(W_fk u)^2 */
        *mx[6], *u;                 /* the six token-shift mixes of LN1's output and the channel mix's u */
    float *mu1, *rs1, *gmu, *grs, *mu2, *rs2, *ckpt, *sa;
} lact;

enum {
    S_D0, S_D1, S_D2, S_D3, S_D4, S_D5,       /* their gradients */
    S_DX, S_DXA, S_DXF, S_DZ, S_DY, S_DV2, S_DG, S_DR, S_DW, S_DK, S_DV, S_DA, S_DB, S_DPW, S_DPA,
    S_DPV, S_DKR, S_DVR, S_DXO, S_OUT,
    N_SC
};

} // namespace

struct mrw_rwkv7_gpu {
    mrw_rwkv7_train_config cfg;
    mrw_rwkv7_gpu_opts opt;
    int max_B, max_T, H, Dmax, n_act; /* n_act: blocks whose activations are stored (1 with ckpt) */
    mrw_cuda_dtype dt;
    size_t esz;
    mrw_param_set ps; /* table only */
    int i_emb, i_ln0w, i_ln0b, i_lnow, i_lnob, i_head;
    lidx *L;
    lact *A;
    void **x_blk; /* ckpt: each block's input [n_layer + 1] (last = final residual) */
    cudaStream_t st;
    cublasHandle_t blas;
    mrw_cuda_lt *lt; /* cuBLASLt for the residual GEMMs (D = C + A B with C != D), made on first use */
    /* device memory */
    float *w, *g, *m, *v;
    void *wbf;
    char *arena;
    size_t arena_bytes, bytes;
    void *x_emb, *x_fin, *xo, *vfirst, *logits, *sc[N_SC], *F1, *F2, *L1;
    float *mu0, *rs0, *muo, *rso, *dvf, *dbeta, *dhead, *row_loss, *loss_out, *cs_scr, *norm_out;
    double *norm_part;
    int32_t *d_tok, *d_tgt, *h_tok, *h_tgt;
    uint8_t *d_mask, *h_mask; /* injected rows (ModRWKV), device and host copies */
    int n_inject;             /* injected rows in the last forward */
    int pg, grad_mode;        /* pg: the running backward computes parameter gradients; grad_mode: forward's grad */
    int hidden_mode;          /* the last forward was mrw_rwkv7_gpu_forward_hidden (no head, no CE) */
    float *hid;               /* hidden mode: DEVICE fp32 [max_B][C] (read-out rows, then their gradient) */
    int rows_chunk;
    size_t cs_floats;
    /* state */
    int B, T, valid;
    int64_t n_targets, t_adam;
    /* timing */
    int timing, cur_class, n_ev;
    cudaEvent_t ev[MAX_EVENTS];
    int ev_class[MAX_EVENTS];
    double ms[MRW_GPU_T_N];
};

/* ---------------------------------------------------------------------------------------------- kernels */
namespace {

template <typename T, typename W>
__global__ void embed_kernel(size_t n, int C, const int32_t *tok, const W *emb, T *x, const uint8_t *mask,
                             const T *inject) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / C;
        const int c = (int)(e % C);
        if (mask && mask[r]) x[e] = inject[e]; /* ModRWKV: a feature row instead of emb[token] */
        else st(x, e, ld(emb, (size_t)tok[r] * C + c));
    }
}

/* d_inject[r] = d[r] at injected rows, 0 elsewhere. */
template <typename T> __global__ void inject_bwd_kernel(size_t n, int C, const uint8_t *mask, const T *d, T *dinj) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        dinj[e] = mask[e / C] ? d[e] : T(0.f);
}

/* gemb[tok[r]] += d[r]; fp32 atomics (the order of additions into a row hit by several tokens is not fixed). */
template <typename T>
__global__ void embed_bwd_kernel(size_t n, int C, const int32_t *tok, const T *d, float *gemb, const uint8_t *mask) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / C;
        const int c = (int)(e % C);
        if (mask && mask[r]) continue; /* injected rows have no embedding row */
        atomicAdd(gemb + (size_t)tok[r] * C + c, ld(d, e));
    }
}

/* op 0: x = tanh(x); 1: x = sigmoid(x); 2: d *= 1 - y^2 (tanh'); 3: d *= y (1 - y) (sigmoid'); 4: x *= s;
 * 5: d *= 2 sqrt(y) (relu^2' from y = relu(h)^2: 2 relu(h)) */
template <typename T> __global__ void act_kernel(size_t n, int op, T *x, const T *y, float s) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const float v = ld(x, e);
        float o;
        switch (op) {
        case 0: o = tanhf(v); break;
        case 1: o = 1.f / (1.f + expf(-v)); break;
        case 2: { const float t = ld(y, e); o = v * (1.f - t * t); } break;
        case 3: { const float t = ld(y, e); o = v * t * (1.f - t); } break;
        case 5: o = v * 2.f * sqrtf(fmaxf(ld(y, e), 0.f)); break;
        default: o = v * s; break;
        }
        st(x, e, o);
    }
}

/* the same on pairs (n even, 8-byte aligned pointers) */
template <typename T> __global__ void act2_kernel(size_t n2, int op, T *x, const T *y, float s) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n2; i += (size_t)gridDim.x * blockDim.x) {
        const size_t e = 2 * i;
        const float2 v = ld2(x, e), t = op >= 2 && op != 4 ? ld2(y, e) : make_float2(0.f, 0.f);
        float o[2];
        const float vv[2] = {v.x, v.y}, tt[2] = {t.x, t.y};
#pragma unroll
        for (int q = 0; q < 2; q++) {
            switch (op) {
            case 0: o[q] = tanhf(vv[q]); break;
            case 1: o[q] = 1.f / (1.f + expf(-vv[q])); break;
            case 2: o[q] = vv[q] * (1.f - tt[q] * tt[q]); break;
            case 3: o[q] = vv[q] * tt[q] * (1.f - tt[q]); break;
            case 5: o[q] = vv[q] * 2.f * sqrtf(fmaxf(tt[q], 0.f)); break;
            default: o[q] = vv[q] * s; break;
            }
        }
        st2(x, e, o[0], o[1]);
    }
}

/* the same for bf16, 8 elements (16 bytes) a thread (n % 8 == 0, 16-byte aligned pointers) */
__global__ void act8_kernel(size_t n8, int op, uint4 *x, const uint4 *y, float s) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8; i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = x[i];
        const uint4 t = op >= 2 && op != 4 ? y[i] : make_uint4(0, 0, 0, 0);
        __nv_bfloat162 *pv = (__nv_bfloat162 *)&v;
        const __nv_bfloat162 *pt = (const __nv_bfloat162 *)&t;
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const float2 a = __bfloat1622float2(pv[q]), b = __bfloat1622float2(pt[q]);
            const float vv[2] = {a.x, a.y}, tt[2] = {b.x, b.y};
            float o[2];
#pragma unroll
            for (int u = 0; u < 2; u++) {
                switch (op) {
                case 0: o[u] = tanhf(vv[u]); break;
                case 1: o[u] = 1.f / (1.f + expf(-vv[u])); break;
                case 2: o[u] = vv[u] * (1.f - tt[u] * tt[u]); break;
                case 3: o[u] = vv[u] * tt[u] * (1.f - tt[u]); break;
                case 5: o[u] = vv[u] * 2.f * sqrtf(fmaxf(tt[u], 0.f)); break;
                default: o[u] = vv[u] * s; break;
                }
            }
            pv[q] = __floats2bfloat162_rn(o[0], o[1]);
        }
        x[i] = v;
    }
}

__global__ void axpy_kernel(size_t n, float a, const float *x, float *y) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        y[e] += a * x[e];
}

/* hidden mode: out[b][c] = xo[b*T + T-1][c] (fp32) */
template <typename T> __global__ void hidden_gather_kernel(int B, int Tn, int C, const T *xo, float *out) {
    const size_t n = (size_t)B * C;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        out[e] = ld(xo, ((size_t)(e / C) * Tn + Tn - 1) * C + e % C);
}
/* hidden mode backward: dxo[b*T + T-1][c] = scale d[b][c] (the other rows are zeroed before) */
template <typename T> __global__ void hidden_scatter_kernel(int B, int Tn, int C, const float *d, float scale, T *dxo) {
    const size_t n = (size_t)B * C;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        st(dxo, ((size_t)(e / C) * Tn + Tn - 1) * C + e % C, scale * d[e]);
}


} // namespace

/* ------------------------------------------------------------------------------------------ helpers */

static mrw_status cuda_chk(cudaError_t e, const char *what, mrw_error *err) {
    return cuda_status(e, "gpu trainer", what, err);
}

/* Step-time classes: an event at every change of class; consecutive ops of a class share one interval. */
static void tmark(mrw_rwkv7_gpu *g, int cls) {
    if (!g->timing || cls == g->cur_class || g->n_ev >= MAX_EVENTS) return;
    cudaEventRecord(g->ev[g->n_ev], g->st);
    g->ev_class[g->n_ev++] = cls;
    g->cur_class = cls;
}
/* Ends the current interval (before the host waits or does its own work: idle GPU time is no class's). */
static void tstop(mrw_rwkv7_gpu *g) {
    if (!g->timing || g->cur_class < 0 || g->n_ev >= MAX_EVENTS) return;
    cudaEventRecord(g->ev[g->n_ev], g->st);
    g->ev_class[g->n_ev++] = -1;
    g->cur_class = -1;
}

#define PW(i) (g->w + g->ps.p[(i)].offset)
#define PG(i) (g->g + g->ps.p[(i)].offset)
#define PGX(i) (g->pg ? PG(i) : (float *)NULL) /* a parameter gradient the running backward accumulates */
/* the GEMM copy of weight i: bf16 working copy, or the fp32 master in fp32 mode */
#define WG(i) (g->opt.fp32 ? (const void *)PW(i) : (const void *)((const bf16 *)g->wbf + g->ps.p[(i)].offset))
#define AT(p, row) ((void *)((char *)(p) + (size_t)(row) * g->esz))

/* C[M][N] = alpha op(A) op(B) + beta C, row-major, A and B of the activation dtype; C of c_dt. */
/* The GEMMs go through cuBLASLt with each shape's algorithm timed once (mrw_cuda_lt_new_tuned; MRW_GEMM_TUNE=0:
 * cublasGemmEx with its default choice, and the residual adds untimed). */
static int gemm_tune(void) { /* read once: gm runs it for every GEMM */
    static int tune = -1;
    if (tune < 0) {
        const char *e = getenv("MRW_GEMM_TUNE");
        tune = !(e && e[0] == '0');
    }
    return tune;
}
static mrw_status lt_handle(mrw_rwkv7_gpu *g, mrw_error *err) {
    return g->lt ? MRW_OK : mrw_cuda_lt_new_tuned(&g->lt, gemm_tune(), err);
}

static mrw_status gm(mrw_rwkv7_gpu *g, int tA, int tB, int M, int N, int K, float alpha, const void *A, int lda,
                     const void *B, int ldb, float beta, mrw_cuda_dtype c_dt, void *C, int ldc, mrw_error *err) {
    tmark(g, MRW_GPU_T_GEMM);
    if (gemm_tune()) {
        TRY(lt_handle(g, err));
        mrw_error e2;
        const mrw_status s = mrw_cuda_gemm_cd(g->lt, g->dt, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta,
                                              beta != 0.f ? C : NULL, c_dt, C, ldc, g->st, &e2);
        if (s != MRW_E_UNSUPPORTED) {
            if (s && err) *err = e2;
            return s;
        }
    }
    const cudaDataType_t at = g->dt == MRW_CUDA_F32 ? CUDA_R_32F : CUDA_R_16BF;
    const cudaDataType_t ct = c_dt == MRW_CUDA_F32 ? CUDA_R_32F : CUDA_R_16BF;
    const cublasStatus_t s =
        cublasGemmEx(g->blas, tB ? CUBLAS_OP_T : CUBLAS_OP_N, tA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, at,
                     ldb, A, at, lda, &beta, C, ct, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS)
        return mrw_err(err, MRW_E_INTERNAL, "gpu trainer: cublasGemmEx %dx%dx%d: %s", M, N, K,
                       cublasGetStatusString(s));
    return MRW_OK;
}
/* The four forms over `rows` rows (W row-major as stored):
 *   y_nt: Y[rows][N] (+)= X[rows][K] W[N][K]^T       y_nn: Y[rows][N] (+)= X[rows][K] W[K][N]
 *   gw:   G[N1][N2] += A[rows][N1]^T Bm[rows][N2]     (fp32 gradient)                                  */
static mrw_status y_nt(mrw_rwkv7_gpu *g, int rows, void *Y, const void *X, int wi, int N, int K, int acc,
                       mrw_error *err) {
    return gm(g, 0, 1, rows, N, K, 1.f, X, K, WG(wi), K, acc ? 1.f : 0.f, g->dt, Y, N, err);
}
static mrw_status y_nn(mrw_rwkv7_gpu *g, int rows, void *Y, const void *X, int wi, int K, int N, int acc,
                       mrw_error *err) {
    return gm(g, 0, 0, rows, N, K, 1.f, X, K, WG(wi), N, acc ? 1.f : 0.f, g->dt, Y, N, err);
}
static mrw_status gw(mrw_rwkv7_gpu *g, int rows, int gi, const void *A, int N1, const void *Bm, int N2,
                     mrw_error *err) {
    if (!g->pg) return MRW_OK; /* frozen backward: no weight gradient */
    return gm(g, 1, 0, N1, N2, rows, 1.f, A, N1, Bm, N2, 1.f, MRW_CUDA_F32, PG(gi), N2, err);
}

static mrw_status copy_act(mrw_rwkv7_gpu *g, void *dst, const void *src, size_t n, mrw_error *err);

/* Y[rows][N] = R + X[rows][K] W[N][K]^T with R kept (the residual adds): one cuBLASLt call reading R and writing Y;
 * a copy of R into Y and the GEMM with beta 1 where cuBLASLt offers no algorithm. */
static mrw_status y_nt_res(mrw_rwkv7_gpu *g, int rows, void *Y, const void *R, const void *X, int wi, int N, int K,
                           mrw_error *err) {
    TRY(lt_handle(g, err));
    tmark(g, MRW_GPU_T_GEMM);
    mrw_error e2;
    const mrw_status s = mrw_cuda_gemm_cd(g->lt, g->dt, 0, 1, rows, N, K, 1.f, X, K, WG(wi), K, 1.f, R, g->dt, Y, N,
                                          g->st, &e2);
    if (s != MRW_E_UNSUPPORTED) {
        if (s && err) *err = e2;
        return s;
    }
    TRY(copy_act(g, Y, R, (size_t)rows * N, err));
    return y_nt(g, rows, Y, X, wi, N, K, 1, err);
}

static mrw_status act(mrw_rwkv7_gpu *g, size_t n, int op, void *x, const void *y, float s, mrw_error *err) {
    tmark(g, MRW_GPU_T_EW);
    const bool pairs = n % 2 == 0 && !((uintptr_t)x & 7) && !((uintptr_t)y & 7);
    const bool v8 = n % 8 == 0 && !((uintptr_t)x & 15) && !((uintptr_t)y & 15);
    if (v8 && g->dt == MRW_CUDA_BF16)
        act8_kernel<<<grid_for(n / 8, 256), 256, 0, g->st>>>(n / 8, op, (uint4 *)x, (const uint4 *)y, s);
    else if (pairs && g->dt == MRW_CUDA_F32)
        act2_kernel<float><<<grid_for(n / 2, 256), 256, 0, g->st>>>(n / 2, op, (float *)x, (const float *)y, s);
    else if (pairs)
        act2_kernel<bf16><<<grid_for(n / 2, 256), 256, 0, g->st>>>(n / 2, op, (bf16 *)x, (const bf16 *)y, s);
    else if (g->dt == MRW_CUDA_F32)
        act_kernel<float><<<grid_for(n, 256), 256, 0, g->st>>>(n, op, (float *)x, (const float *)y, s);
    else
        act_kernel<bf16><<<grid_for(n, 256), 256, 0, g->st>>>(n, op, (bf16 *)x, (const bf16 *)y, s);
    return launched("gpu trainer activation", err);
}

static mrw_status copy_act(mrw_rwkv7_gpu *g, void *dst, const void *src, size_t n, mrw_error *err) {
    tmark(g, MRW_GPU_T_EW);
    return cuda_chk(cudaMemcpyAsync(dst, src, n * g->esz, cudaMemcpyDeviceToDevice, g->st), "copy", err);
}

/* ----------------------------------------------------------------------------------------- parameters */

static int layout(mrw_rwkv7_gpu *g) {
    mrw_rwkv7_gidx gi;
    const int rc = mrw_rwkv7_param_layout(&g->ps, &g->cfg, &gi, g->L);
    g->i_emb = gi.emb;
    g->i_ln0w = gi.ln0w;
    g->i_ln0b = gi.ln0b;
    g->i_lnow = gi.lnow;
    g->i_lnob = gi.lnob;
    g->i_head = gi.head;
    return rc;
}

/* ------------------------------------------------------------------------------------------ allocation */

typedef struct {
    char *base;
    size_t off;
} arena;

static void *take(arena *a, size_t bytes) {
    void *p = a->base ? a->base + a->off : NULL;
    a->off += (bytes + 255) & ~(size_t)255;
    return p;
}

static void carve(mrw_rwkv7_gpu *g, arena *a) {
    const mrw_rwkv7_train_config *c = &g->cfg;
    const size_t BT = (size_t)g->max_B * g->max_T, C = c->n_embd, H = g->H, F = c->ffn, e = g->esz;
    const size_t f4 = sizeof(float);
#define TA(n) take(a, (size_t)(n) * e)
#define TF(n) (float *)take(a, (size_t)(n) * f4)
    g->x_emb = TA(BT * C), g->mu0 = TF(BT), g->rs0 = TF(BT);
    for (int l = 0; l < g->n_act; l++) {
        lact *x = &g->A[l];
        x->x_in = TA(BT * C), x->xa = TA(BT * C), x->mu1 = TF(BT), x->rs1 = TF(BT);
        x->r = TA(BT * C), x->kraw = TA(BT * C), x->vraw = TA(BT * C);
        x->lw = TA(BT * c->d_w), x->la = TA(BT * c->d_a), x->lg = TA(BT * c->d_g);
        x->lv = TA(BT * (c->d_v > 0 ? c->d_v : 1));
        x->pw = TA(BT * C), x->pa = TA(BT * C), x->pv = TA(BT * C), x->g = TA(BT * C);
        x->wl = TA(BT * C), x->k = TA(BT * C), x->v = TA(BT * C), x->a = TA(BT * C), x->b = TA(BT * C);
        x->y = TA(BT * C), x->z = TA(BT * C), x->xm = TA(BT * C), x->xf = TA(BT * C), x->hk = TA(BT * F);
        for (int q = 0; q < 6; q++) x->mx[q] = TA(BT * C);
        x->u = TA(BT * C);
        x->gmu = TF(BT * H), x->grs = TF(BT * H), x->mu2 = TF(BT), x->rs2 = TF(BT);
        x->ckpt = TF(mrw_cuda_wkv7_ckpt_floats(g->max_B, g->max_T, (int)H));
        x->sa = TF(mrw_cuda_wkv7_sa_floats(g->max_B, g->max_T, (int)H));
    }
    if (g->opt.ckpt)
        for (int l = 0; l <= c->n_layer; l++) g->x_blk[l] = TA(BT * C);
    g->vfirst = TA(BT * C);
    g->x_fin = g->opt.ckpt ? g->x_blk[c->n_layer] : TA(BT * C);
    g->muo = TF(BT), g->rso = TF(BT), g->xo = TA(BT * C);
    for (int i = 0; i < N_SC; i++) g->sc[i] = TA(BT * C);
    g->F1 = TA(BT * F), g->F2 = g->F1, g->L1 = TA(BT * g->Dmax); /* F1: forward, F2: backward */
    g->dvf = TF(BT * C), g->dbeta = TF(BT * H); /* dbeta: the bonus's gradient scalar (GroupNorm -> key prep) */
    g->logits = TA((size_t)g->rows_chunk * c->vocab);
    g->dhead = TF((size_t)c->vocab * C);
    g->row_loss = TF(BT), g->loss_out = TF(4), g->norm_out = TF(4);
    g->norm_part = (double *)take(a, MRW_CUDA_NORM_BLOCKS * sizeof(double));
    g->cs_scr = TF(g->cs_floats);
    g->d_tok = (int32_t *)take(a, BT * 4), g->d_tgt = (int32_t *)take(a, BT * 4);
    g->d_mask = (uint8_t *)take(a, BT);
#undef TA
#undef TF
}

static size_t max_z(size_t a, size_t b) { return a > b ? a : b; }

extern "C" mrw_status mrw_rwkv7_gpu_new(const mrw_rwkv7_train_config *cfg, int max_B, int max_T,
                                        const mrw_rwkv7_gpu_opts *o, mrw_rwkv7_gpu **out, mrw_error *err) {
    *out = NULL;
    const mrw_rwkv7_train_config *c = cfg;
    if (c->n_layer < 1 || c->n_embd < 64 || c->head_size != MRW_WKV7_N || c->n_embd % MRW_WKV7_N || c->vocab < 1 ||
        c->ffn < 1 || c->ffn % 8 || c->d_w < 1 || c->d_a < 1 || c->d_g < 1 || (c->n_layer > 1 && c->d_v < 1) ||
        c->d_v < 0 || c->vocab > (1 << 24) || c->n_layer > 4096)
        return mrw_err(err, MRW_E_ARG, "gpu trainer: unsupported config: %d layers, n_embd %d, head size %d (64 "
                       "needed), ffn %d, vocab %d, LoRA ranks %d/%d/%d/%d", c->n_layer, c->n_embd, c->head_size,
                       c->ffn, c->vocab, c->d_w, c->d_a, c->d_v, c->d_g);
    if (max_B < 1 || max_T < 1 || (double)max_B * max_T > (1 << 24))
        return mrw_err(err, MRW_E_ARG, "gpu trainer: invalid batch shape %d x %d", max_B, max_T);
    mrw_rwkv7_gpu *g = (mrw_rwkv7_gpu *)calloc(1, sizeof *g);
    if (!g) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    g->cfg = *cfg;
    if (o) g->opt = *o;
    g->max_B = max_B, g->max_T = max_T;
    g->H = c->n_embd / c->head_size;
    g->dt = g->opt.fp32 ? MRW_CUDA_F32 : MRW_CUDA_BF16;
    g->esz = g->opt.fp32 ? 4 : 2;
    g->Dmax = c->d_w;
    if (c->d_a > g->Dmax) g->Dmax = c->d_a;
    if (c->d_g > g->Dmax) g->Dmax = c->d_g;
    if (c->d_v > g->Dmax) g->Dmax = c->d_v;
    g->n_act = g->opt.ckpt ? 1 : c->n_layer;
    g->cur_class = -1;
    const size_t BT = (size_t)max_B * max_T;
    /* LM head chunk: at most 2^29 logits (1 GiB in bf16) and at least one row. Each chunk's dhead GEMM reads and
     * writes the whole fp32 [V][C] head gradient: 2^27 logits (2048 rows at V 65536) made that 32 passes a step
     * at 0.1B B32 */
    size_t rc = ((size_t)1 << 29) / (size_t)c->vocab;
    if (rc < 1) rc = 1;
    if (rc > BT) rc = BT;
    g->rows_chunk = (int)rc;
    g->cs_floats = max_z(mrw_cuda_layernorm_bwd_scratch(c->n_embd),
                         max_z(mrw_cuda_gn_bonus_gate_bwd_scratch((int)BT, g->H),
                               max_z(mrw_cuda_token_mix_bwd_scratch(c->n_embd),
                                     mrw_cuda_keyprep_bwd_scratch((int)BT, g->H))));
    g->L = (lidx *)calloc((size_t)c->n_layer, sizeof *g->L);
    g->A = (lact *)calloc((size_t)g->n_act, sizeof *g->A);
    g->x_blk = (void **)calloc((size_t)c->n_layer + 1, sizeof *g->x_blk);
    g->h_tok = (int32_t *)malloc(BT * sizeof(int32_t));
    g->h_tgt = (int32_t *)malloc(BT * sizeof(int32_t));
    g->h_mask = (uint8_t *)malloc(BT);
    g->pg = 1;
    if (!g->L || !g->A || !g->x_blk || !g->h_tok || !g->h_tgt || !g->h_mask || layout(g)) {
        mrw_rwkv7_gpu_free(g);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    cudaError_t e = cudaSetDevice(g->opt.device);
    if (e != cudaSuccess) {
        const int dev = g->opt.device; /* (g is freed below) */
        mrw_rwkv7_gpu_free(g);
        return mrw_err(err, MRW_E_UNSUPPORTED, "gpu trainer: no CUDA device %d: %s", dev, cudaGetErrorString(e));
    }
    if ((e = cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking)) != cudaSuccess) {
        mrw_rwkv7_gpu_free(g);
        return mrw_err(err, MRW_E_INTERNAL, "gpu trainer: stream: %s", cudaGetErrorString(e));
    }
    if (cublasCreate(&g->blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(g->blas, g->st) != CUBLAS_STATUS_SUCCESS) {
        mrw_rwkv7_gpu_free(g);
        return mrw_err(err, MRW_E_INTERNAL, "gpu trainer: cublasCreate failed");
    }
    const size_t P = g->ps.total;
    struct {
        void **p;
        size_t bytes;
        const char *what;
    } al[] = {{(void **)&g->w, P * 4, "fp32 weights"},
              {(void **)&g->g, g->opt.frozen ? 0 : P * 4, "fp32 gradients"}, /* frozen: never trained */
              {(void **)&g->m, g->opt.frozen ? 0 : P * 4, "Adam first moments"},
              {(void **)&g->v, g->opt.frozen ? 0 : P * 4, "Adam second moments"},
              {&g->wbf, g->opt.fp32 ? 0 : P * 2, "bf16 weights"}};
    arena a = {0};
    carve(g, &a);
    g->arena_bytes = a.off;
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        if (!al[i].bytes) continue;
        if ((e = cudaMalloc(al[i].p, al[i].bytes)) != cudaSuccess) {
            cudaGetLastError();
            mrw_rwkv7_gpu_free(g);
            return mrw_err(err, MRW_E_NOMEM, "gpu trainer: cannot allocate %.2f GiB of %s on the GPU (%s)",
                           al[i].bytes / 1073741824.0, al[i].what, cudaGetErrorString(e));
        }
        g->bytes += al[i].bytes;
    }
    if ((e = cudaMalloc((void **)&g->arena, g->arena_bytes)) != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        const double need = g->arena_bytes / 1073741824.0;
        mrw_rwkv7_gpu_free(g);
        return mrw_err(err, MRW_E_NOMEM, "gpu trainer: out of GPU memory: cannot allocate %.2f GiB (%zu bytes) of "
                       "activations for batches of %d x %d (%.2f GiB free of %.2f GiB): use a smaller batch or "
                       "context%s", need, a.off, max_B, max_T, fr / 1073741824.0, tot / 1073741824.0,
                       g->opt.ckpt ? "" : ", or per-block activation checkpointing (--ckpt)");
    }
    g->bytes += g->arena_bytes;
    a.base = g->arena, a.off = 0;
    carve(g, &a);
    cudaMemsetAsync(g->w, 0, P * 4, g->st);
    if (g->g) cudaMemsetAsync(g->g, 0, P * 4, g->st);
    if (g->m) cudaMemsetAsync(g->m, 0, P * 4, g->st);
    if (g->v) cudaMemsetAsync(g->v, 0, P * 4, g->st);
    if (g->wbf) cudaMemsetAsync(g->wbf, 0, P * 2, g->st);
    /* scratch that is read before every element is written (padding rows of GEMM inputs are never read) */
    cudaMemsetAsync(g->arena, 0, g->arena_bytes, g->st);
    for (int i = 0; i < MAX_EVENTS; i++) g->ev[i] = NULL;
    if ((e = cudaStreamSynchronize(g->st)) != cudaSuccess) {
        mrw_rwkv7_gpu_free(g);
        return mrw_err(err, MRW_E_INTERNAL, "gpu trainer: init: %s", cudaGetErrorString(e));
    }
    *out = g;
    return MRW_OK;
}

extern "C" void mrw_rwkv7_gpu_free(mrw_rwkv7_gpu *g) {
    if (!g) return;
    if (g->st) cudaStreamSynchronize(g->st);
    for (int i = 0; i < MAX_EVENTS; i++)
        if (g->ev[i]) cudaEventDestroy(g->ev[i]);
    cudaFree(g->w), cudaFree(g->g), cudaFree(g->m), cudaFree(g->v), cudaFree(g->wbf), cudaFree(g->arena);
    cudaFree(g->hid);
    if (g->blas) cublasDestroy(g->blas);
    mrw_cuda_lt_free(g->lt);
    if (g->st) cudaStreamDestroy(g->st);
    mrw_param_set_free(&g->ps);
    free(g->L), free(g->A), free(g->x_blk), free(g->h_tok), free(g->h_tgt), free(g->h_mask);
    free(g);
}

extern "C" const mrw_param_set *mrw_rwkv7_gpu_layout(const mrw_rwkv7_gpu *g) { return &g->ps; }
extern "C" size_t mrw_rwkv7_gpu_bytes(const mrw_rwkv7_gpu *g) { return g->bytes; }
extern "C" int64_t mrw_rwkv7_gpu_n_targets(const mrw_rwkv7_gpu *g) { return g->n_targets; }

static mrw_status refresh_bf16(mrw_rwkv7_gpu *g, mrw_error *err) {
    if (!g->wbf) return MRW_OK;
    to_bf16_kernel<<<grid_for(g->ps.total, 256), 256, 0, g->st>>>(g->ps.total, g->w, (bf16 *)g->wbf);
    return launched("gpu trainer bf16 copy", err);
}

static mrw_status upload(mrw_rwkv7_gpu *g, const mrw_param_set *src, int grads, mrw_error *err) {
    if (!src || !src->w) return mrw_err(err, MRW_E_ARG, "gpu trainer: upload from an unallocated parameter set");
    if (grads && !g->g) return mrw_err(err, MRW_E_ARG, "gpu trainer: frozen (no gradients allocated)");
    for (int i = 0; i < g->ps.n; i++) {
        const mrw_param *p = &g->ps.p[i];
        const int j = mrw_param_find(src, p->name);
        if (j < 0) return mrw_err(err, MRW_E_MISSING, "gpu trainer: upload: no tensor %s", p->name);
        if (src->p[j].n != p->n)
            return mrw_err(err, MRW_E_SHAPE, "gpu trainer: upload: %s has %zu elements, %zu expected", p->name,
                           src->p[j].n, p->n);
        if (grads)
            TRY(cuda_chk(cudaMemcpyAsync(g->g + p->offset, src->g + src->p[j].offset, p->n * 4,
                                         cudaMemcpyHostToDevice, g->st), "upload", err));
        else
            TRY(cuda_chk(cudaMemcpyAsync(g->w + p->offset, src->w + src->p[j].offset, p->n * 4,
                                         cudaMemcpyHostToDevice, g->st), "upload", err));
    }
    if (!grads) TRY(refresh_bf16(g, err));
    return cuda_chk(cudaStreamSynchronize(g->st), "upload", err);
}

extern "C" mrw_status mrw_rwkv7_gpu_upload(mrw_rwkv7_gpu *g, const mrw_param_set *src, mrw_error *err) {
    return upload(g, src, 0, err);
}
extern "C" mrw_status mrw_rwkv7_gpu_upload_grads(mrw_rwkv7_gpu *g, const mrw_param_set *src, mrw_error *err) {
    return upload(g, src, 1, err);
}

extern "C" mrw_status mrw_rwkv7_gpu_download(mrw_rwkv7_gpu *g, mrw_param_set *dst, int grads, mrw_error *err) {
    if (!dst || !dst->w) return mrw_err(err, MRW_E_ARG, "gpu trainer: download into an unallocated parameter set");
    if (grads && !g->g) return mrw_err(err, MRW_E_ARG, "gpu trainer: frozen (no gradients allocated)");
    TRY(cuda_chk(cudaStreamSynchronize(g->st), "download", err));
    for (int i = 0; i < g->ps.n; i++) {
        const mrw_param *p = &g->ps.p[i];
        const int j = mrw_param_find(dst, p->name);
        if (j < 0 || dst->p[j].n != p->n) continue;
        TRY(cuda_chk(cudaMemcpy(dst->w + dst->p[j].offset, g->w + p->offset, p->n * 4, cudaMemcpyDeviceToHost),
                     "download", err));
        if (grads)
            TRY(cuda_chk(cudaMemcpy(dst->g + dst->p[j].offset, g->g + p->offset, p->n * 4, cudaMemcpyDeviceToHost),
                         "download", err));
    }
    return MRW_OK;
}

extern "C" mrw_status mrw_rwkv7_gpu_moments(mrw_rwkv7_gpu *g, int to_gpu, const mrw_param_set *ps, float *m, float *v,
                                            const size_t *moff, int64_t *t, mrw_error *err) {
    TRY(cuda_chk(cudaStreamSynchronize(g->st), "moments", err));
    for (int i = 0; i < ps->n; i++) {
        if (moff[i] == SIZE_MAX) continue;
        if (!g->m) return mrw_err(err, MRW_E_ARG, "gpu trainer: no Adam moments (frozen, or dropped for ZeRO-1)");
        const int j = mrw_param_find(&g->ps, ps->p[i].name);
        if (j < 0 || g->ps.p[j].n != ps->p[i].n)
            return mrw_err(err, MRW_E_SHAPE, "gpu trainer: optimizer state of %s does not match", ps->p[i].name);
        const size_t o = g->ps.p[j].offset, n = ps->p[i].n * sizeof(float);
        const cudaMemcpyKind k = to_gpu ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
        TRY(cuda_chk(cudaMemcpy(to_gpu ? (void *)(g->m + o) : (void *)(m + moff[i]), to_gpu ? (void *)(m + moff[i]) :
                                (void *)(g->m + o), n, k), "moments", err));
        TRY(cuda_chk(cudaMemcpy(to_gpu ? (void *)(g->v + o) : (void *)(v + moff[i]), to_gpu ? (void *)(v + moff[i]) :
                                (void *)(g->v + o), n, k), "moments", err));
    }
    if (to_gpu) g->t_adam = *t;
    else *t = g->t_adam;
    return MRW_OK;
}

extern "C" mrw_status mrw_rwkv7_gpu_init_random(mrw_rwkv7_gpu *g, uint64_t seed, mrw_error *err) {
    for (int i = 0; i < g->ps.n; i++) {
        const mrw_param *p = &g->ps.p[i];
        const char *n = p->name;
        float lo, hi;
        if (p->ndim == 2 && p->shape[0] > 1 && p->shape[1] > 1 && !strstr(n, "r_k")) {
            /* matrices: uniform with the variance of 1/fan_in (fan_in = the dimension summed over) */
            const int64_t fan = strstr(n, ".weight") ? p->shape[1] : p->shape[0];
            hi = sqrtf(3.0f / (float)fan), lo = -hi;
            if (strstr(n, "emb.weight")) lo = -1e-4f, hi = 1e-4f;
        } else if (strstr(n, "ln") && strstr(n, ".weight")) {
            lo = 0.9f, hi = 1.1f;
        } else if (strstr(n, ".w0")) {
            lo = -6.f, hi = -1.f;
        } else if (strstr(n, ".x_") || strstr(n, "k_k") || strstr(n, "k_a")) {
            lo = 0.f, hi = 1.f;
        } else {
            lo = -0.1f, hi = 0.1f;
        }
        rand_kernel<<<grid_for(p->n, 256), 256, 0, g->st>>>(p->n, g->w + p->offset, seed + 0x1000003ull * i, lo, hi);
    }
    TRY(launched("gpu trainer init", err));
    TRY(refresh_bf16(g, err));
    return cuda_chk(cudaStreamSynchronize(g->st), "init", err);
}

/* --------------------------------------------------------------------------------------------- forward */

/* LayerNorm (weights lw, lb) of x into y, fused with the token shift + nq mixes of y (rwkv7_ew.h); timed as a norm */
static mrw_status ln_mix(mrw_rwkv7_gpu *g, const void *x, int lw, int lb, void *y, float *mu, float *rs, int nq,
                         const int *mix_idx, void *const *outs, mrw_error *err) {
    const float *mx[MRW_CUDA_MIX_MAX];
    for (int q = 0; q < nq; q++) mx[q] = PW(mix_idx[q]);
    tmark(g, MRW_GPU_T_NORM);
    return mrw_cuda_ln_mix_fwd(g->dt, g->B, g->T, g->cfg.n_embd, nq, x, PW(lw), PW(lb), LN_EPS, y, mu, rs, mx, outs,
                               g->st, err);
}

static mrw_status layer_fwd(mrw_rwkv7_gpu *g, int l, const void *x_in, void *out, mrw_error *err) {
    const mrw_rwkv7_train_config *c = &g->cfg;
    const int C = c->n_embd, H = g->H, F = c->ffn, BT = g->B * g->T;
    const lidx *P = &g->L[l];
    lact *A = &g->A[g->opt.ckpt ? 0 : l];
    if (g->opt.ckpt) A->x_in = (void *)x_in; /* the shared block keeps a pointer to the saved input */
    const int mi[6] = {P->xr, P->xw, P->xk, P->xv, P->xa, P->xg};
    TRY(ln_mix(g, A->x_in, P->ln1w, P->ln1b, A->xa, A->mu1, A->rs1, 6, mi, A->mx, err)); /* mixes kept */
    void *const *M = A->mx;
    /* step 3 */
    TRY(y_nt(g, BT, A->r, M[0], P->Wr, C, C, 0, err));
    TRY(y_nt(g, BT, A->kraw, M[2], P->Wk, C, C, 0, err));
    TRY(y_nt(g, BT, A->vraw, M[3], P->Wv, C, C, 0, err));
    /* LoRAs */
    TRY(y_nn(g, BT, A->lw, M[1], P->w1, C, c->d_w, 0, err));
    TRY(act(g, (size_t)BT * c->d_w, 0, A->lw, NULL, 0, err));
    TRY(y_nn(g, BT, A->pw, A->lw, P->w2, c->d_w, C, 0, err));
    TRY(y_nn(g, BT, A->la, M[4], P->a1, C, c->d_a, 0, err));
    TRY(y_nn(g, BT, A->pa, A->la, P->a2, c->d_a, C, 0, err));
    TRY(y_nn(g, BT, A->lg, M[5], P->g1, C, c->d_g, 0, err));
    TRY(act(g, (size_t)BT * c->d_g, 1, A->lg, NULL, 0, err));
    TRY(y_nn(g, BT, A->g, A->lg, P->g2, c->d_g, C, 0, err));
    const int vres = l > 0;
    if (vres) {
        TRY(y_nn(g, BT, A->lv, M[3], P->v1, C, c->d_v, 0, err));
        TRY(y_nn(g, BT, A->pv, A->lv, P->v2, c->d_v, C, 0, err));
    }
    /* steps 4-9 */
    mrw_cuda_keyprep_in in = {A->pw, A->pa, vres ? A->pv : NULL, A->kraw, A->vraw, vres ? g->vfirst : NULL,
                              PW(P->w0), PW(P->a0), vres ? PW(P->v0) : NULL, PW(P->kk), PW(P->ka)};
    tmark(g, MRW_GPU_T_EW);
    void *V = l == 0 ? g->vfirst : A->v; /* layer 0's v is every later layer's v_first */
    TRY(mrw_cuda_keyprep_fwd(g->dt, BT, H, &in, A->wl, A->k, V, A->a, A->b, g->st, err));
    /* step 10 */
    tmark(g, MRW_GPU_T_WKV);
    /* the chunked tensor-core forward (wkv7.h, MRW_WKV7_CHUNKED): its bf16 checkpoints carry TF32 rounding, which the
     * chunked backward below (restarting from them) takes; faster than the tiled forward at B16 H16 and B4 H32 */
    TRY(mrw_cuda_wkv7_forward_ex(g->dt, g->B, g->T, H, A->r, A->wl, A->k, V, A->a, A->b, NULL, A->y, A->ckpt, A->sa,
                                 g->st, MRW_WKV7_CHUNKED, err));
    /* steps 11-13 */
    tmark(g, MRW_GPU_T_NORM);
    TRY(mrw_cuda_gn_bonus_gate_fwd(g->dt, BT, H, A->y, A->r, A->k, V, A->g, PW(P->lnxw), PW(P->lnxb), PW(P->rk),
                                   GN_EPS, A->z, A->gmu, A->grs, g->st, err));
    TRY(y_nt_res(g, BT, A->xm, A->x_in, A->z, P->Wo, C, C, err)); /* xm = x_in + z Wo^T */
    /* step 14: channel mix */
    TRY(ln_mix(g, A->xm, P->ln2w, P->ln2b, A->xf, A->mu2, A->rs2, 1, &P->fxk, &A->u, err));
    TRY(y_nt(g, BT, g->F1, A->u, P->Wfk, F, C, 0, err));
    tmark(g, MRW_GPU_T_EW);
    TRY(mrw_cuda_relu2_fwd(g->dt, (size_t)BT * F, g->F1, A->hk, g->st, err)); /* kept: relu(W_fk u)^2 */
    return y_nt_res(g, BT, out, A->xm, A->hk, P->Wfv, C, F, err); /* out = xm + hk Wfv^T */
}

/* ln_out, then the head and cross-entropy in row chunks; with grad, each chunk's logits become their gradient
 * (scale 1/n) and give dhead (=) and d(xo) rows (sc[S_DXO]) at once. */
static mrw_status head_fwd(mrw_rwkv7_gpu *g, int grad, float *loss, mrw_error *err) {
    const int C = g->cfg.n_embd, V = g->cfg.vocab, BT = g->B * g->T;
    tmark(g, MRW_GPU_T_NORM);
    TRY(mrw_cuda_layernorm_fwd(g->dt, BT, C, g->x_fin, PW(g->i_lnow), PW(g->i_lnob), LN_EPS, g->xo, g->muo, g->rso,
                               g->st, err));
    const float sc = g->n_targets ? 1.0f / (float)g->n_targets : 0.0f;
    int first = 1;
    for (int r0 = 0; r0 < BT; r0 += g->rows_chunk) {
        const int n = BT - r0 < g->rows_chunk ? BT - r0 : g->rows_chunk;
        const void *xo = AT(g->xo, (size_t)r0 * C);
        TRY(y_nt(g, n, g->logits, xo, g->i_head, V, C, 0, err));
        tmark(g, MRW_GPU_T_CE);
        TRY(mrw_cuda_cross_entropy(g->dt, n, V, g->logits, g->d_tgt + r0, grad && g->n_targets, sc, g->row_loss + r0,
                                   NULL, g->st, err));
        if (grad && g->n_targets) {
            if (grad == 1) /* grad 2 (frozen): no head gradient */
                TRY(gm(g, 1, 0, V, C, n, 1.f, g->logits, V, xo, C, first ? 0.f : 1.f, MRW_CUDA_F32, g->dhead, C,
                       err));
            TRY(gm(g, 0, 0, n, C, V, 1.f, g->logits, V, WG(g->i_head), C, 0.f, g->dt, AT(g->sc[S_DXO], (size_t)r0 * C),
                   C, err));
            first = 0;
        }
    }
    tmark(g, MRW_GPU_T_CE);
    TRY(mrw_cuda_loss_mean(BT, g->row_loss, g->d_tgt, g->loss_out, g->st, err));
    float h[2];
    tstop(g);
    TRY(cuda_chk(cudaMemcpyAsync(h, g->loss_out, sizeof h, cudaMemcpyDeviceToHost, g->st), "loss", err));
    TRY(cuda_chk(cudaStreamSynchronize(g->st), "forward", err));
    *loss = h[0];
    return MRW_OK;
}

extern "C" mrw_status mrw_rwkv7_gpu_forward(mrw_rwkv7_gpu *g, const int32_t *tokens, const int32_t *targets, int B,
                                            int T, int grad, float *loss, mrw_error *err) {
    return mrw_rwkv7_gpu_forward_ex(g, tokens, NULL, NULL, targets, B, T, grad ? 1 : 0, loss, err);
}

/* The forward of forward_ex, or with `hidden` (targets NULL) the forward up to ln_out (hidden mode). */
static mrw_status forward_impl(mrw_rwkv7_gpu *g, const int32_t *tokens, const void *inject,
                               const uint8_t *inject_mask, const int32_t *targets, int B, int T, int grad,
                               float *loss, int hidden, mrw_error *err) {
    const mrw_rwkv7_train_config *c = &g->cfg;
    const int C = c->n_embd, V = c->vocab;
    g->valid = 0;
    g->n_targets = 0;
    g->hidden_mode = 0;
    *loss = NAN;
    if (B < 1 || T < 1 || B > g->max_B || T > g->max_T || !tokens || (!targets && !hidden))
        return mrw_err(err, MRW_E_ARG, "gpu trainer: batch %d x %d outside the allocation %d x %d", B, T, g->max_B,
                       g->max_T);
    if (grad < 0 || grad > 2) return mrw_err(err, MRW_E_ARG, "gpu trainer: grad mode %d (0, 1 or 2)", grad);
    if (grad == 1 && !g->g) return mrw_err(err, MRW_E_ARG, "gpu trainer: frozen: grad mode 1 needs gradients (use 2)");
    if (!inject != !inject_mask)
        return mrw_err(err, MRW_E_ARG, "gpu trainer: inject and inject_mask must be given together");
    const int BT = B * T;
    int64_t n = 0;
    int ninj = 0;
    for (int r = 0; r < BT; r++) {
        const int injected = inject_mask && inject_mask[r];
        ninj += injected;
        if (!injected && (tokens[r] < 0 || tokens[r] >= V))
            return mrw_err(err, MRW_E_ARG, "gpu trainer: token %d at position %d outside [0, %d)", tokens[r], r, V);
        if (targets && targets[r] != MRW_IGNORE && (targets[r] < 0 || targets[r] >= V))
            return mrw_err(err, MRW_E_ARG, "gpu trainer: target %d at position %d outside [0, %d)", targets[r], r, V);
        n += targets && targets[r] != MRW_IGNORE;
    }
    g->B = B, g->T = T, g->n_targets = n, g->n_inject = ninj;
    memcpy(g->h_tok, tokens, (size_t)BT * 4);
    if (targets) memcpy(g->h_tgt, targets, (size_t)BT * 4);
    for (int r = 0; r < BT; r++) {
        g->h_mask[r] = inject_mask && inject_mask[r] ? 1 : 0;
        if (g->h_mask[r]) g->h_tok[r] = 0; /* never read; keeps the device copy in range */
    }
    const uint8_t *dmask = ninj ? g->d_mask : NULL;
    if (ninj)
        TRY(cuda_chk(cudaMemcpyAsync(g->d_mask, g->h_mask, (size_t)BT, cudaMemcpyHostToDevice, g->st), "mask", err));
    TRY(cuda_chk(cudaMemcpyAsync(g->d_tok, g->h_tok, (size_t)BT * 4, cudaMemcpyHostToDevice, g->st), "tokens", err));
    if (targets)
        TRY(cuda_chk(cudaMemcpyAsync(g->d_tgt, g->h_tgt, (size_t)BT * 4, cudaMemcpyHostToDevice, g->st), "targets",
                     err));
    tmark(g, MRW_GPU_T_EMB);
    const size_t nC = (size_t)BT * C;
    if (g->opt.fp32)
        embed_kernel<float, float><<<grid_for(nC, 256), 256, 0, g->st>>>(nC, C, g->d_tok, PW(g->i_emb),
                                                                          (float *)g->x_emb, dmask,
                                                                          (const float *)inject);
    else
        embed_kernel<bf16, bf16><<<grid_for(nC, 256), 256, 0, g->st>>>(
            nC, C, g->d_tok, (const bf16 *)g->wbf + g->ps.p[g->i_emb].offset, (bf16 *)g->x_emb, dmask,
            (const bf16 *)inject);
    TRY(launched("gpu trainer embedding", err));
    /* step 0: ln0 into block 0's input */
    void *x0 = g->opt.ckpt ? g->x_blk[0] : g->A[0].x_in;
    tmark(g, MRW_GPU_T_NORM);
    TRY(mrw_cuda_layernorm_fwd(g->dt, BT, C, g->x_emb, PW(g->i_ln0w), PW(g->i_ln0b), LN_EPS, x0, g->mu0, g->rs0,
                               g->st, err));
    for (int l = 0; l < c->n_layer; l++) {
        const void *xin = g->opt.ckpt ? g->x_blk[l] : g->A[l].x_in;
        void *xout = g->opt.ckpt ? g->x_blk[l + 1] : l + 1 < c->n_layer ? g->A[l + 1].x_in : g->x_fin;
        TRY(layer_fwd(g, l, xin, xout, err));
    }
    if (hidden) { /* ln_out only: the caller reads the last position's rows */
        tmark(g, MRW_GPU_T_NORM);
        TRY(mrw_cuda_layernorm_fwd(g->dt, BT, C, g->x_fin, PW(g->i_lnow), PW(g->i_lnob), LN_EPS, g->xo, g->muo,
                                   g->rso, g->st, err));
        *loss = 0;
    } else {
        TRY(head_fwd(g, grad, loss, err));
    }
    g->hidden_mode = hidden;
    g->valid = grad ? 1 : 0;
    g->grad_mode = grad;
    return MRW_OK;
}

extern "C" mrw_status mrw_rwkv7_gpu_forward_ex(mrw_rwkv7_gpu *g, const int32_t *tokens, const void *inject,
                                               const uint8_t *inject_mask, const int32_t *targets, int B, int T,
                                               int grad, float *loss, mrw_error *err) {
    return forward_impl(g, tokens, inject, inject_mask, targets, B, T, grad, loss, 0, err);
}

extern "C" mrw_status mrw_rwkv7_gpu_forward_hidden(mrw_rwkv7_gpu *g, const int32_t *tokens, const void *inject,
                                                   const uint8_t *inject_mask, int B, int T, int grad, float *hidden,
                                                   mrw_error *err) {
    const int C = g->cfg.n_embd;
    if (!g->hid) {
        TRY(cuda_chk(cudaMalloc((void **)&g->hid, (size_t)g->max_B * C * sizeof(float)), "hidden buffer", err));
        g->bytes += (size_t)g->max_B * C * sizeof(float);
    }
    float loss;
    TRY(forward_impl(g, tokens, inject, inject_mask, NULL, B, T, grad, &loss, 1, err));
    const size_t n = (size_t)B * C;
    if (g->opt.fp32)
        hidden_gather_kernel<float><<<grid_for(n, 256), 256, 0, g->st>>>(B, T, C, (const float *)g->xo, g->hid);
    else
        hidden_gather_kernel<bf16><<<grid_for(n, 256), 256, 0, g->st>>>(B, T, C, (const bf16 *)g->xo, g->hid);
    TRY(launched("gpu trainer hidden read-out", err));
    tstop(g);
    if (hidden) {
        TRY(cuda_chk(cudaMemcpyAsync(hidden, g->hid, n * sizeof(float), cudaMemcpyDeviceToHost, g->st), "hidden",
                     err));
        TRY(cuda_chk(cudaStreamSynchronize(g->st), "forward", err));
    }
    return MRW_OK;
}

/* -------------------------------------------------------------------------------------------- backward */

static mrw_status layer_bwd(mrw_rwkv7_gpu *g, int l, mrw_error *err) {
    const mrw_rwkv7_train_config *c = &g->cfg;
    const int C = c->n_embd, H = g->H, F = c->ffn, BT = g->B * g->T;
    const lidx *P = &g->L[l];
    const lact *A = &g->A[g->opt.ckpt ? 0 : l];
    void **s = g->sc;
    void *dx = s[S_DX];
    float *cs = g->cs_scr;
    const void *V = l == 0 ? g->vfirst : A->v;

    /* ---- channel mix */
    void *const *M = A->mx; /* the mixes and u, kept by the forward (or its rerun with ckpt) */
    TRY(gw(g, BT, P->Wfv, dx, C, A->hk, F, err));
    TRY(gm(g, 0, 0, BT, F, C, 1.f, dx, C, WG(P->Wfv), F, 0.f, g->dt, g->F2, F, err));
    TRY(act(g, (size_t)BT * F, 5, g->F2, A->hk, 0, err)); /* d(W_fk u) = d(act) 2 relu(W_fk u) */
    TRY(gw(g, BT, P->Wfk, g->F2, F, A->u, C, err));
    TRY(gm(g, 0, 0, BT, C, F, 1.f, g->F2, F, WG(P->Wfk), C, 0.f, g->dt, s[S_DXA], C, err));
    tmark(g, MRW_GPU_T_EW);
    {
        const float *mx[1] = {PW(P->fxk)};
        const void *dout[1] = {s[S_DXA]};
        float *dm[1] = {PGX(P->fxk)};
        TRY(mrw_cuda_token_mix_bwd(g->dt, g->B, g->T, C, 1, A->xf, mx, dout, 0, s[S_DXF], dm, cs, g->st, err));
    }
    tmark(g, MRW_GPU_T_NORM);
    TRY(mrw_cuda_layernorm_bwd(g->dt, BT, C, s[S_DXF], A->xm, A->mu2, A->rs2, PW(P->ln2w), 1, dx, PGX(P->ln2w),
                               PGX(P->ln2b), cs, g->st, err));
    /* ---- time mix output */
    TRY(gw(g, BT, P->Wo, dx, C, A->z, C, err));
    TRY(gm(g, 0, 0, BT, C, C, 1.f, dx, C, WG(P->Wo), C, 0.f, g->dt, s[S_DZ], C, err));
    tmark(g, MRW_GPU_T_NORM);
    /* the bonus's dr and dk as their per-(row, head) scalar dbeta: the key prep's backward forms them (two
     * tensors fewer through memory) */
    TRY(mrw_cuda_gn_bonus_gate_bwd_dbeta(g->dt, BT, H, s[S_DZ], A->y, A->r, A->k, V, A->g, PW(P->lnxw), PW(P->lnxb),
                                         PW(P->rk), A->gmu, A->grs, s[S_DY], g->dbeta, s[S_DV2], s[S_DG],
                                         PGX(P->lnxw), PGX(P->lnxb), PGX(P->rk), cs, g->st, err));
    /* ---- step 10 */
    tmark(g, MRW_GPU_T_WKV);
    /* the chunked tensor-core backward (wkv7.h, MRW_WKV7_CHUNKED): faster at every measured shape (docs/CUDA.md);
     * the forward starts from the zero state, which is what backward_ex assumes for it */
    TRY(mrw_cuda_wkv7_backward_ex(g->dt, g->B, g->T, H, A->r, A->wl, A->k, V, A->a, A->b, s[S_DY], NULL, A->ckpt,
                                  A->sa, s[S_DR], s[S_DW], s[S_DK], s[S_DV], s[S_DA], s[S_DB], NULL, g->st,
                                  MRW_WKV7_CHUNKED, err));
    /* ---- steps 4-9 */
    const int vres = l > 0;
    mrw_cuda_keyprep_in in = {A->pw, A->pa, vres ? A->pv : NULL, A->kraw, A->vraw, vres ? g->vfirst : NULL,
                              PW(P->w0), PW(P->a0), vres ? PW(P->v0) : NULL, PW(P->kk), PW(P->ka)};
    mrw_cuda_keyprep_grad kg = {s[S_DW], s[S_DK], s[S_DV], s[S_DA], s[S_DB], NULL, s[S_DV2], NULL, s[S_DR],
                                s[S_DPW], s[S_DPA], vres ? s[S_DPV] : NULL, s[S_DKR], s[S_DVR], g->dvf,
                                PGX(P->w0), PGX(P->a0), vres ? PGX(P->v0) : NULL, PGX(P->kk), PGX(P->ka),
                                g->dbeta, A->r, PW(P->rk)};
    tmark(g, MRW_GPU_T_EW);
    TRY(mrw_cuda_keyprep_bwd(g->dt, BT, H, &in, &kg, cs, g->st, err));
    /* ---- projections: gradients into dmix_q */
    const int mi[6] = {P->xr, P->xw, P->xk, P->xv, P->xa, P->xg};
    void *L1 = g->L1;
    /* r */
    TRY(gw(g, BT, P->Wr, s[S_DR], C, M[0], C, err));
    TRY(gm(g, 0, 0, BT, C, C, 1.f, s[S_DR], C, WG(P->Wr), C, 0.f, g->dt, s[S_D0], C, err));
    /* w: omega = w0 + tanh(xw w1) w2 */
    TRY(gw(g, BT, P->w2, A->lw, c->d_w, s[S_DPW], C, err));
    TRY(gm(g, 0, 1, BT, c->d_w, C, 1.f, s[S_DPW], C, WG(P->w2), C, 0.f, g->dt, L1, c->d_w, err));
    TRY(act(g, (size_t)BT * c->d_w, 2, L1, A->lw, 0, err));
    TRY(gw(g, BT, P->w1, M[1], C, L1, c->d_w, err));
    TRY(gm(g, 0, 1, BT, C, c->d_w, 1.f, L1, c->d_w, WG(P->w1), c->d_w, 0.f, g->dt, s[S_D1], C, err));
    /* k */
    TRY(gw(g, BT, P->Wk, s[S_DKR], C, M[2], C, err));
    TRY(gm(g, 0, 0, BT, C, C, 1.f, s[S_DKR], C, WG(P->Wk), C, 0.f, g->dt, s[S_D2], C, err));
    /* v and the value-residual LoRA */
    TRY(gw(g, BT, P->Wv, s[S_DVR], C, M[3], C, err));
    TRY(gm(g, 0, 0, BT, C, C, 1.f, s[S_DVR], C, WG(P->Wv), C, 0.f, g->dt, s[S_D3], C, err));
    if (vres) {
        TRY(gw(g, BT, P->v2, A->lv, c->d_v, s[S_DPV], C, err));
        TRY(gm(g, 0, 1, BT, c->d_v, C, 1.f, s[S_DPV], C, WG(P->v2), C, 0.f, g->dt, L1, c->d_v, err));
        TRY(gw(g, BT, P->v1, M[3], C, L1, c->d_v, err));
        TRY(gm(g, 0, 1, BT, C, c->d_v, 1.f, L1, c->d_v, WG(P->v1), c->d_v, 1.f, g->dt, s[S_D3], C, err));
    }
    /* a: alpha = sigmoid(a0 + (xa a1) a2) */
    TRY(gw(g, BT, P->a2, A->la, c->d_a, s[S_DPA], C, err));
    TRY(gm(g, 0, 1, BT, c->d_a, C, 1.f, s[S_DPA], C, WG(P->a2), C, 0.f, g->dt, L1, c->d_a, err));
    TRY(gw(g, BT, P->a1, M[4], C, L1, c->d_a, err));
    TRY(gm(g, 0, 1, BT, C, c->d_a, 1.f, L1, c->d_a, WG(P->a1), c->d_a, 0.f, g->dt, s[S_D4], C, err));
    /* g = sigmoid(xg g1) g2 */
    TRY(gw(g, BT, P->g2, A->lg, c->d_g, s[S_DG], C, err));
    TRY(gm(g, 0, 1, BT, c->d_g, C, 1.f, s[S_DG], C, WG(P->g2), C, 0.f, g->dt, L1, c->d_g, err));
    TRY(act(g, (size_t)BT * c->d_g, 3, L1, A->lg, 0, err));
    TRY(gw(g, BT, P->g1, M[5], C, L1, c->d_g, err));
    TRY(gm(g, 0, 1, BT, C, c->d_g, 1.f, L1, c->d_g, WG(P->g1), c->d_g, 0.f, g->dt, s[S_D5], C, err));
    tmark(g, MRW_GPU_T_EW);
    {
        const float *mx[6];
        const void *dout[6];
        float *dm[6];
        for (int q = 0; q < 6; q++) mx[q] = PW(mi[q]), dout[q] = s[S_D0 + q], dm[q] = PGX(mi[q]);
        TRY(mrw_cuda_token_mix_bwd(g->dt, g->B, g->T, C, 6, A->xa, mx, dout, 0, s[S_DXA], dm, cs, g->st, err));
    }
    tmark(g, MRW_GPU_T_NORM);
    return mrw_cuda_layernorm_bwd(g->dt, BT, C, s[S_DXA], A->x_in, A->mu1, A->rs1, PW(P->ln1w), 1, dx, PGX(P->ln1w),
                                  PGX(P->ln1b), cs, g->st, err);
}

extern "C" mrw_status mrw_rwkv7_gpu_backward(mrw_rwkv7_gpu *g, float scale, mrw_error *err) {
    return mrw_rwkv7_gpu_backward_ex(g, scale, 0, NULL, err);
}

static mrw_status backward_body(mrw_rwkv7_gpu *g, float scale, void *d_inject, mrw_error *err);

extern "C" mrw_status mrw_rwkv7_gpu_backward_ex(mrw_rwkv7_gpu *g, float scale, int frozen, void *d_inject,
                                                mrw_error *err) {
    if (!g->valid) return mrw_err(err, MRW_E_ARG, "gpu trainer: backward without a forward (with grad) before it");
    if (g->hidden_mode)
        return mrw_err(err, MRW_E_ARG, "gpu trainer: the last forward was a hidden-state one (use backward_hidden)");
    if (!frozen && !g->g) return mrw_err(err, MRW_E_ARG, "gpu trainer: a full backward on a frozen trainer");
    if (!frozen && g->grad_mode == 2)
        return mrw_err(err, MRW_E_ARG, "gpu trainer: a full backward after a forward for a frozen one (grad 2)");
    g->valid = 0;
    const size_t nC = (size_t)g->B * g->T * g->cfg.n_embd;
    if (d_inject) TRY(cuda_chk(cudaMemsetAsync(d_inject, 0, nC * g->esz, g->st), "d_inject", err));
    if (g->n_targets == 0 || (frozen && !d_inject)) return MRW_OK; /* nothing to compute */
    g->pg = !frozen;
    const mrw_status s = backward_body(g, scale, g->n_inject ? d_inject : NULL, err);
    g->pg = 1;
    return s;
}

/* The backward proper; g->pg says whether parameter gradients are accumulated. */
static mrw_status backward_body(mrw_rwkv7_gpu *g, float scale, void *d_inject, mrw_error *err) {
    const mrw_rwkv7_train_config *c = &g->cfg;
    const int C = c->n_embd, V = c->vocab;
    const int BT = g->B * g->T;
    const size_t nC = (size_t)BT * C;
    /* the head's gradients at unit scale (from the forward), times scale */
    tmark(g, MRW_GPU_T_CE);
    if (g->pg && !g->hidden_mode) { /* hidden mode: no head; sc[S_DXO] was set (scaled) by backward_hidden */
        axpy_kernel<<<grid_for((size_t)V * C, 256), 256, 0, g->st>>>((size_t)V * C, scale, g->dhead, PG(g->i_head));
        TRY(launched("gpu trainer axpy", err));
    }
    if (scale != 1.0f && !g->hidden_mode) TRY(act(g, nC, 4, g->sc[S_DXO], NULL, scale, err));
    tmark(g, MRW_GPU_T_NORM);
    TRY(mrw_cuda_layernorm_bwd(g->dt, BT, C, g->sc[S_DXO], g->x_fin, g->muo, g->rso, PW(g->i_lnow), 0, g->sc[S_DX],
                               PGX(g->i_lnow), PGX(g->i_lnob), g->cs_scr, g->st, err));
    TRY(cuda_chk(cudaMemsetAsync(g->dvf, 0, nC * sizeof(float), g->st), "memset", err));
    for (int l = c->n_layer - 1; l >= 0; l--) {
        if (g->opt.ckpt) TRY(layer_fwd(g, l, g->x_blk[l], g->sc[S_OUT], err)); /* recompute this block */
        TRY(layer_bwd(g, l, err));
    }
    /* ln0 and the embedding rows */
    tmark(g, MRW_GPU_T_NORM);
    TRY(mrw_cuda_layernorm_bwd(g->dt, BT, C, g->sc[S_DX], g->x_emb, g->mu0, g->rs0, PW(g->i_ln0w), 0, g->sc[S_DXA],
                               PGX(g->i_ln0w), PGX(g->i_ln0b), g->cs_scr, g->st, err));
    tmark(g, MRW_GPU_T_EMB);
    const uint8_t *dmask = g->n_inject ? g->d_mask : NULL;
    if (g->pg && g->opt.fp32)
        embed_bwd_kernel<float><<<grid_for(nC, 256), 256, 0, g->st>>>(nC, C, g->d_tok, (const float *)g->sc[S_DXA],
                                                                        PG(g->i_emb), dmask);
    else if (g->pg)
        embed_bwd_kernel<bf16><<<grid_for(nC, 256), 256, 0, g->st>>>(nC, C, g->d_tok, (const bf16 *)g->sc[S_DXA],
                                                                       PG(g->i_emb), dmask);
    if (d_inject && g->opt.fp32)
        inject_bwd_kernel<float><<<grid_for(nC, 256), 256, 0, g->st>>>(nC, C, g->d_mask, (const float *)g->sc[S_DXA],
                                                                         (float *)d_inject);
    else if (d_inject)
        inject_bwd_kernel<bf16><<<grid_for(nC, 256), 256, 0, g->st>>>(nC, C, g->d_mask, (const bf16 *)g->sc[S_DXA],
                                                                        (bf16 *)d_inject);
    return launched("gpu trainer embedding backward", err);
}

extern "C" mrw_status mrw_rwkv7_gpu_backward_hidden(mrw_rwkv7_gpu *g, const float *d_hidden, float scale,
                                                    int frozen, void *d_inject, mrw_error *err) {
    if (!g->valid || !g->hidden_mode)
        return mrw_err(err, MRW_E_ARG, "gpu trainer: backward_hidden without a hidden-state forward (with grad)");
    if (!frozen && !g->g) return mrw_err(err, MRW_E_ARG, "gpu trainer: a full backward on a frozen trainer");
    if (!frozen && g->grad_mode == 2)
        return mrw_err(err, MRW_E_ARG, "gpu trainer: a full backward after a forward for a frozen one (grad 2)");
    if (!d_hidden) return mrw_err(err, MRW_E_ARG, "gpu trainer: backward_hidden without d_hidden");
    g->valid = 0;
    const int B = g->B, T = g->T, C = g->cfg.n_embd;
    const size_t nC = (size_t)B * T * C, n = (size_t)B * C;
    if (d_inject) TRY(cuda_chk(cudaMemsetAsync(d_inject, 0, nC * g->esz, g->st), "d_inject", err));
    if (frozen && !d_inject) return MRW_OK; /* nothing to compute */
    TRY(cuda_chk(cudaMemcpyAsync(g->hid, d_hidden, n * sizeof(float), cudaMemcpyHostToDevice, g->st), "d_hidden",
                 err));
    TRY(cuda_chk(cudaMemsetAsync(g->sc[S_DXO], 0, nC * g->esz, g->st), "d_hidden", err));
    if (g->opt.fp32)
        hidden_scatter_kernel<float><<<grid_for(n, 256), 256, 0, g->st>>>(B, T, C, g->hid, scale,
                                                                           (float *)g->sc[S_DXO]);
    else
        hidden_scatter_kernel<bf16><<<grid_for(n, 256), 256, 0, g->st>>>(B, T, C, g->hid, scale,
                                                                          (bf16 *)g->sc[S_DXO]);
    TRY(launched("gpu trainer hidden backward", err));
    g->pg = !frozen;
    const mrw_status s = backward_body(g, 1.0f, g->n_inject ? d_inject : NULL, err);
    g->pg = 1;
    /* the host's d_hidden is read by the copy above: wait for it before returning */
    if (!s) return cuda_chk(cudaStreamSynchronize(g->st), "backward_hidden", err);
    return s;
}

/* ------------------------------------------------------------------------------------------- optimizer */

extern "C" mrw_status mrw_rwkv7_gpu_zero_grad(mrw_rwkv7_gpu *g, mrw_error *err) {
    if (!g->g) return MRW_OK; /* frozen: nothing to zero */
    return cuda_chk(cudaMemsetAsync(g->g, 0, g->ps.total * sizeof(float), g->st), "zero grad", err);
}

extern "C" mrw_status mrw_rwkv7_gpu_step(mrw_rwkv7_gpu *g, const mrw_adam_config *cfg, double lr, double max_norm,
                                         double *grad_norm, mrw_error *err) {
    if (!g->g || !g->m) return mrw_err(err, MRW_E_ARG, "gpu trainer: step on a frozen trainer (no gradients or moments)");
    tmark(g, MRW_GPU_T_OPT);
    /* the whole gradient buffer is one tensor for the norm (the padding between tensors stays zero) */
    TRY(mrw_cuda_sumsq_part(g->ps.total, g->g, g->norm_part, g->st, err));
    TRY(mrw_cuda_grad_norm_finish(1, g->norm_part, (float)max_norm, g->norm_out, NULL, g->st, err));
    g->t_adam++;
    bf16 *wbf = (bf16 *)g->wbf;
    const int uniform = !(cfg->weight_decay > 0);
    if (uniform) {
        const mrw_cuda_adam_hp hp =
            mrw_cuda_adam_hparams(lr, g->t_adam, cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay, cfg->decoupled, 1);
        TRY(mrw_cuda_adam_step(g->ps.total, g->w, g->g, g->m, g->v, wbf, &hp, max_norm > 0 ? g->norm_out + 1 : NULL,
                               g->st, err));
    } else {
        /* one launch per run of adjacent tensors with the same decay (about 4 a layer instead of ~35 launches of
         * small tensors); the padding between tensors is zero in w, g, m and v and stays zero under Adam(W) */
        for (int i = 0; i < g->ps.n;) {
            const mrw_param *p = &g->ps.p[i];
            size_t end = p->offset + p->n;
            int j = i + 1;
            while (j < g->ps.n && g->ps.p[j].no_decay == p->no_decay && g->ps.p[j].offset >= end)
                end = g->ps.p[j].offset + g->ps.p[j].n, j++;
            const mrw_cuda_adam_hp hp = mrw_cuda_adam_hparams(lr, g->t_adam, cfg->beta1, cfg->beta2, cfg->eps,
                                                              cfg->weight_decay, cfg->decoupled, p->no_decay);
            TRY(mrw_cuda_adam_step(end - p->offset, g->w + p->offset, g->g + p->offset, g->m + p->offset,
                                   g->v + p->offset, wbf ? wbf + p->offset : NULL, &hp,
                                   max_norm > 0 ? g->norm_out + 1 : NULL, g->st, err));
            i = j;
        }
    }
    tstop(g);
    if (grad_norm) {
        float h;
        TRY(cuda_chk(cudaMemcpyAsync(&h, g->norm_out, sizeof h, cudaMemcpyDeviceToHost, g->st), "norm", err));
        TRY(cuda_chk(cudaStreamSynchronize(g->st), "step", err));
        *grad_norm = h;
    }
    return MRW_OK;
}

extern "C" void *mrw_rwkv7_gpu_stream(mrw_rwkv7_gpu *g) { return (void *)g->st; }

extern "C" mrw_status mrw_rwkv7_gpu_sync(mrw_rwkv7_gpu *g, mrw_error *err) {
    return cuda_chk(cudaStreamSynchronize(g->st), "sync", err);
}

/* ---------------------------------------------------------------------------------------------- timing */

extern "C" void mrw_rwkv7_gpu_set_timing(mrw_rwkv7_gpu *g, int on) {
    if (on)
        for (int i = 0; i < MAX_EVENTS; i++)
            if (!g->ev[i]) cudaEventCreate(&g->ev[i]);
    g->timing = on;
    g->n_ev = 0;
    g->cur_class = -1;
    for (int k = 0; k < MRW_GPU_T_N; k++) g->ms[k] = 0;
}

extern "C" void mrw_rwkv7_gpu_timing(mrw_rwkv7_gpu *g, double ms[MRW_GPU_T_N]) {
    if (g->timing && g->n_ev < MAX_EVENTS) {
        cudaEventRecord(g->ev[g->n_ev], g->st);
        g->ev_class[g->n_ev++] = -1;
    }
    cudaStreamSynchronize(g->st);
    for (int i = 0; i + 1 < g->n_ev; i++) {
        if (g->ev_class[i] < 0) continue;
        float t = 0;
        cudaEventElapsedTime(&t, g->ev[i], g->ev[i + 1]);
        g->ms[g->ev_class[i]] += t;
    }
    g->ms[MRW_GPU_T_OTHER] = g->ms[MRW_GPU_T_NORM] + g->ms[MRW_GPU_T_EW] + g->ms[MRW_GPU_T_CE] + g->ms[MRW_GPU_T_EMB];
    for (int k = 0; k < MRW_GPU_T_N; k++) ms[k] = g->ms[k], g->ms[k] = 0;
    g->n_ev = 0;
    g->cur_class = -1;
}


/* ------------------------------------------------------------------------ data parallelism (dist_nccl.h) */
/* Access to the flat buffers, and an optimizer step over one shard [lo, hi) of the table for ZeRO-1 (the
 * gradient norm's partial sums stay in norm_part for the caller to all-reduce across ranks in between). */

extern "C" void mrw_rwkv7_gpu_flat_get(mrw_rwkv7_gpu *g, mrw_rwkv7_gpu_flat *f) {
    f->w = g->w, f->g = g->g, f->m = g->m, f->v = g->v, f->wbf = g->wbf;
    f->total = g->ps.total;
    f->stream = g->st;
    f->norm_part = g->norm_part;
    f->t_adam = &g->t_adam;
}

/* w and g reallocated to cap >= total elements (contents kept, the tail zero). */
extern "C" mrw_status mrw_rwkv7_gpu_flat_grow(mrw_rwkv7_gpu *g, size_t cap, mrw_error *err) {
    const size_t P = g->ps.total;
    if (!g->g) return mrw_err(err, MRW_E_ARG, "gpu trainer: frozen (no gradients allocated)");
    if (cap <= P) return MRW_OK;
    TRY(cuda_chk(cudaStreamSynchronize(g->st), "grow", err));
    float **bufs[2] = {&g->w, &g->g};
    for (int i = 0; i < 2; i++) {
        float *n = NULL;
        cudaError_t e = cudaMalloc((void **)&n, cap * sizeof(float));
        if (e != cudaSuccess) {
            cudaGetLastError();
            return mrw_err(err, MRW_E_NOMEM, "gpu trainer: cannot allocate %.2f GiB for the padded %s",
                           cap * 4 / 1073741824.0, i ? "gradients" : "weights");
        }
        TRY(cuda_chk(cudaMemcpyAsync(n, *bufs[i], P * sizeof(float), cudaMemcpyDeviceToDevice, g->st), "grow", err));
        TRY(cuda_chk(cudaMemsetAsync(n + P, 0, (cap - P) * sizeof(float), g->st), "grow", err));
        TRY(cuda_chk(cudaStreamSynchronize(g->st), "grow", err));
        cudaFree(*bufs[i]);
        *bufs[i] = n;
        g->bytes += (cap - P) * sizeof(float);
    }
    return MRW_OK;
}

/* Frees the full-size Adam moments (ZeRO-1 keeps a shard of them elsewhere; mrw_rwkv7_gpu_step and _moments must
 * not be called afterwards). */
extern "C" void mrw_rwkv7_gpu_drop_moments(mrw_rwkv7_gpu *g) {
    cudaStreamSynchronize(g->st);
    if (g->m) g->bytes -= g->ps.total * sizeof(float) * 2;
    cudaFree(g->m), cudaFree(g->v);
    g->m = g->v = NULL;
}

/* Partial sums of g^2 over [lo, hi) (MRW_CUDA_NORM_BLOCKS doubles in norm_part). */
extern "C" mrw_status mrw_rwkv7_gpu_sumsq_range(mrw_rwkv7_gpu *g, size_t lo, size_t hi, mrw_error *err) {
    if (!g->g) return mrw_err(err, MRW_E_ARG, "gpu trainer: frozen (no gradients allocated)");
    tmark(g, MRW_GPU_T_OPT);
    if (hi > g->ps.total) hi = g->ps.total;
    return mrw_cuda_sumsq_part(hi > lo ? hi - lo : 0, g->g + lo, g->norm_part, g->st, err);
}

/* The norm and clip coefficient from norm_part (summed over the ranks by the caller), then Adam(W) (t increments
 * first) on the elements of [lo, hi), per tensor as mrw_rwkv7_gpu_step; m, v hold the moments of [lo, hi)
 * (m[0] is element lo). Writes no bf16 copy (the caller gathers w, then mrw_rwkv7_gpu_refresh). */
extern "C" mrw_status mrw_rwkv7_gpu_step_range(mrw_rwkv7_gpu *g, const mrw_adam_config *cfg, double lr,
                                               double max_norm, size_t lo, size_t hi, float *m, float *v,
                                               double *grad_norm, mrw_error *err) {
    if (!g->g) return mrw_err(err, MRW_E_ARG, "gpu trainer: frozen (no gradients allocated)");
    tmark(g, MRW_GPU_T_OPT);
    TRY(mrw_cuda_grad_norm_finish(1, g->norm_part, (float)max_norm, g->norm_out, NULL, g->st, err));
    g->t_adam++;
    const float *coef = max_norm > 0 ? g->norm_out + 1 : NULL;
    if (hi > g->ps.total) hi = g->ps.total;
    if (!(cfg->weight_decay > 0)) {
        const mrw_cuda_adam_hp hp =
            mrw_cuda_adam_hparams(lr, g->t_adam, cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay, cfg->decoupled, 1);
        if (hi > lo) TRY(mrw_cuda_adam_step(hi - lo, g->w + lo, g->g + lo, m, v, NULL, &hp, coef, g->st, err));
    } else {
        for (int i = 0; i < g->ps.n; i++) { /* weight decay per tensor: each tensor's part inside the shard */
            const mrw_param *p = &g->ps.p[i];
            const size_t a = p->offset > lo ? p->offset : lo, b = p->offset + p->n < hi ? p->offset + p->n : hi;
            if (b <= a) continue;
            const mrw_cuda_adam_hp hp = mrw_cuda_adam_hparams(lr, g->t_adam, cfg->beta1, cfg->beta2, cfg->eps,
                                                              cfg->weight_decay, cfg->decoupled, p->no_decay);
            TRY(mrw_cuda_adam_step(b - a, g->w + a, g->g + a, m + (a - lo), v + (a - lo), NULL, &hp, coef, g->st,
                                   err));
        }
    }
    tstop(g);
    if (grad_norm) {
        float h;
        TRY(cuda_chk(cudaMemcpyAsync(&h, g->norm_out, sizeof h, cudaMemcpyDeviceToHost, g->st), "norm", err));
        TRY(cuda_chk(cudaStreamSynchronize(g->st), "step", err));
        *grad_norm = h;
    }
    return MRW_OK;
}

/* The bf16 working copy rewritten from the fp32 weights (after they were gathered). */
extern "C" mrw_status mrw_rwkv7_gpu_refresh(mrw_rwkv7_gpu *g, mrw_error *err) { return refresh_bf16(g, err); }

/* Moments between the host (mrw_adam's layout, as mrw_rwkv7_gpu_moments) and one full-table device buffer dev
 * (element offsets of the table): to_gpu 1 uploads host -> dev, 0 downloads dev -> host. */
extern "C" mrw_status mrw_rwkv7_gpu_moments_buf(mrw_rwkv7_gpu *g, int to_gpu, const mrw_param_set *ps, float *host,
                                                const size_t *moff, float *dev, mrw_error *err) {
    TRY(cuda_chk(cudaStreamSynchronize(g->st), "moments", err));
    for (int i = 0; i < ps->n; i++) {
        if (moff[i] == SIZE_MAX) continue;
        const int j = mrw_param_find(&g->ps, ps->p[i].name);
        if (j < 0 || g->ps.p[j].n != ps->p[i].n)
            return mrw_err(err, MRW_E_SHAPE, "gpu trainer: optimizer state of %s does not match", ps->p[i].name);
        const size_t o = g->ps.p[j].offset, n = ps->p[i].n * sizeof(float);
        TRY(cuda_chk(to_gpu ? cudaMemcpy(dev + o, host + moff[i], n, cudaMemcpyHostToDevice)
                            : cudaMemcpy(host + moff[i], dev + o, n, cudaMemcpyDeviceToHost), "moments", err));
    }
    return MRW_OK;
}
