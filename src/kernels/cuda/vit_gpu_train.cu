/* The ViT encoder's training forward and backward on the GPU (vit_gpu_train.h); src/train/vit_train.c and
 * mrw_tnn_block_forward / _backward (train_nn.c) are the reference. Per batch of B images, N = B*T rows:
 *   cols = im2col(pixels) [B*Np][ch*P*P]; pe = cols Wp^T; x0 = [cls] ++ (pe + pb) + pos; CLIP: x = pre_LN(x0)
 *   layer: xn1 = LN1(x); q,k,v = xn1 W^T + b; P = softmax(q k^T / sqrt(D)) (fp32, kept); att = P v
 *          xmid = x + att Wo^T + bo; xn2 = LN2(xmid); f = xn2 W1^T + b1 (kept); fa = act(f) (kept)
 *          out = xmid + fa W2^T + b2
 *   SigLIP: y = post_LN(x_L); CLIP: y = x_L
 * Backward, per layer (dres = d out on entry, d x on return):
 *   dff = dres W2 * act'(f); dW2 += dres^T fa; db2 += colsum dres; dxn = dff W1; dW1 += dff^T xn2; db1 += colsum dff
 *   dres += LN2_bwd(dxn); datt = dres Wo; dWo, dbo; (dq, dk, dv) = attention_bwd(datt)
 *   dxn = dq Wq + dk Wk + dv Wv; dW*, db*; dres += LN1_bwd(dxn)
 * then d x0 (CLIP: through pre_LN), dpos += sum over images, dcls (CLIP), dWp += dpe^T cols, dpb (SigLIP).
 * Whisper (whisper_gpu_train.h, src/train/whisper_train.c the reference; wh = 1): the stem instead of the patch
 * embedding, the same layers (k_proj without bias: its index -1), layer_norm as the post-LN:
 *   cols1 = unfold(mel, k3 p1); h1p = cols1 W1^T + b1; h1 = GELU(h1p); cols2 = unfold(h1, k3 s2 p1);
 *   h2p = cols2 W2^T + b2; x0 = GELU(h2p) + pos[0..T)
 *   backward: dh2p = dx0 GELU'(h2p); dW2, db2, dcols2; dh1 = fold(dcols2); dh1p = dh1 GELU'(h1p); dW1, db1 (and on
 *   request dcols1 = dh1p W1, d_mel = fold(dcols1)); embed_positions is frozen (no gradient), as on the CPU. */
#include <cublas_v2.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/cuda/adam.h"
#include "kernels/cuda/adapter_gpu.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/vit_gpu_train.h"
#include "kernels/cuda/whisper_gpu_train.h"
}

using namespace mrwcu;

#define PFX "encoder.model.vision_model."

/* layer tensor order (train_nn.h's MRW_TB_*) */
enum { LN1W, LN1B, QW, QB, KW, KB, VW, VB, OW, OB, LN2W, LN2B, F1W, F1B, F2W, F2B, NB };
static const char *const LKEY[NB] = {
    "layer_norm1.weight",      "layer_norm1.bias",      "self_attn.q_proj.weight", "self_attn.q_proj.bias",
    "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias",
    "self_attn.out_proj.weight", "self_attn.out_proj.bias", "layer_norm2.weight",  "layer_norm2.bias",
    "mlp.fc1.weight",          "mlp.fc1.bias",          "mlp.fc2.weight",          "mlp.fc2.bias"};

typedef struct {
    void *x, *xn1, *q, *k, *v, *att, *xmid, *xn2, *f, *fa; /* activation dtype */
    float *P, *m1, *r1, *m2, *r2;
} layer_acts;

struct mrw_vit_gpu_train {
    mrw_vit_config cfg;
    int max_B, PP, act, fp32, B, valid;
    mrw_cuda_dtype dt;
    size_t esz, bytes;
    cudaStream_t st;
    cublasHandle_t blas;
    mrw_param_set ps; /* table only */
    int i_pw, i_pb, i_cls, i_pos, i_prew, i_preb, i_postw, i_postb;
    int *li; /* [n_layer][NB] */
    float *w, *g, *m, *v, *norm_out, *lnscratch, *part, *dS;
    double *norm_part;
    bf16 *wbf;
    int64_t t_adam;
    float *pixels, *m0, *r0, *mL, *rL;
    void *cols, *pe, *x0, *xL, *y, *dres, *dxn, *dq, *dk, *dv, *datt, *dff, *dx0n, *dpe;
    layer_acts *la;
    void *mem; /* one allocation for the activations */
    /* the trainer's glue (allocated on first use): row positions, the gathered gradient rows, the adapter's d_x */
    int32_t *g_pos;
    bf16 *g_dy, *g_dx;
    void *g_dout;
    size_t g_rows_cap;
    float *h_tmp;
    /* Whisper (whisper_gpu_train.h; wh 1): the stem's buffers (activation dtype; dmel fp32), frames F, n_mels, the
     * rows per clip the trainer's adapter took (keep) and the input gradient on request (want_dmel) */
    int wh, F, nm, keep, want_dmel;
    size_t in_elems; /* input floats per item: pixels or mel */
    mrw_whisper_config wcfg;
    int i_c1w, i_c1b, i_c2w, i_c2b;
    void *cols1, *h1p, *h1, *cols2, *h2p, *dh1, *dcols2, *dcols1;
    float *dmel;
};

namespace {

static __device__ __forceinline__ float act_f(int a, float v) {
    switch (a) {
    case 1: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));                                   /* erf */
    case 2: return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));          /* tanh */
    case 4: return v > 0.f ? v : 0.f;                                                                     /* relu */
    default: return v / (1.0f + expf(-1.702f * v));                                                       /* quick */
    }
}
static __device__ __forceinline__ float act_d(int a, float v) {
    switch (a) {
    case 1: return 0.5f * (1.0f + erff(v * 0.70710678118654752f)) + v * 0.3989422804014327f * expf(-0.5f * v * v);
    case 2: {
        const float t = tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v));
        return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * 0.7978845608028654f * (1.0f + 3 * 0.044715f * v * v);
    }
    case 4: return v > 0.f ? 1.f : 0.f;
    default: {
        const float s = 1.0f / (1.0f + expf(-1.702f * v));
        return s + 1.702f * v * s * (1.0f - s);
    }
    }
}

static __device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

/* cols[b*Np + p][(ch*P + ky)*P + kx] = pixels[b][ch][y0 + ky][x0 + kx] */
template <typename T>
__global__ void im2col_kernel(size_t n, int ch, int S, int P, int G, const float *px, T *cols) {
    const int Np = G * G, PP = ch * P * P;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t bp = e / PP;
        const int r = (int)(e % PP), p = (int)(bp % Np);
        const size_t b = bp / Np;
        const int c = r / (P * P), ky = (r / P) % P, kx = r % P, y = (p / G) * P + ky, x = (p % G) * P + kx;
        st(cols, e, px[((b * ch + c) * S + y) * S + x]);
    }
}

/* x0[b][t][c] = (clip && t == 0 ? cls[c] : pe[b*Np + t - clip][c] + pb[c]) + pos[t][c] */
template <typename T>
__global__ void embed_kernel(size_t n, int Tn, int Np, int C, int clip, const T *pe, const float *pb,
                             const float *cls, const float *pos, T *x0) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % C), t = (int)((e / C) % Tn);
        const size_t b = e / ((size_t)C * Tn);
        float s;
        if (clip && t == 0) s = cls[c];
        else s = ld(pe, (b * Np + t - clip) * C + c) + (pb ? pb[c] : 0.f);
        st(x0, e, s + pos[(size_t)t * C + c]);
    }
}

/* y[r][c] += b[c] (b NULL: none; Whisper's k_proj) (+ res[r][c] when res) */
template <typename T>
__global__ void bias_res_kernel(size_t n, int C, T *y, const float *b, const T *res) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        float s = ld(y, e) + (b ? b[e % C] : 0.f);
        if (res) s += ld(res, e);
        st(y, e, s);
    }
}

/* f[r][c] += b[c]; fa = act(f) (f as stored is the activation's input) */
template <typename T>
__global__ void bias_act_kernel(size_t n, int C, int a, T *f, const float *b, T *fa) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        st(f, e, ld(f, e) + b[e % C]);
        st(fa, e, act_f(a, ld(f, e)));
    }
}

/* d *= act'(f) */
template <typename T> __global__ void act_bwd_kernel(size_t n, int a, const T *f, T *d) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        st(d, e, ld(d, e) * act_d(a, ld(f, e)));
}

/* One warp per query row (b, h, i): P[b][h][i][:] = softmax(q_i k^T * scale), o_i = P v. Rows of q, k, v, o are
 * b*T + t with stride C, head h at columns h*D. */
template <typename T>
__global__ void attn_fwd_kernel(int nrows, int Tn, int H, int D, int C, float scale, const T *q, const T *k,
                                const T *v, float *P, T *o) {
    const int row = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (row >= nrows) return;
    const int i = row % Tn, bh = row / Tn, h = bh % H, b = bh / H;
    const size_t base = (size_t)b * Tn * C + (size_t)h * D;
    const T *qi = q + base + (size_t)i * C;
    float *p = P + (size_t)row * Tn;
    float mx = -INFINITY;
    for (int j = lane; j < Tn; j += 32) {
        const T *kj = k + base + (size_t)j * C;
        float s = 0.f;
        for (int d = 0; d < D; d++) s += ld(qi, d) * ld(kj, d);
        s *= scale;
        p[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = warp_max(mx);
    float sum = 0.f;
    for (int j = lane; j < Tn; j += 32) {
        const float e = expf(p[j] - mx);
        p[j] = e;
        sum += e;
    }
    const float inv = 1.f / warp_sum(sum);
    for (int j = lane; j < Tn; j += 32) p[j] *= inv;
    __syncwarp();
    T *oi = o + base + (size_t)i * C;
    for (int d = lane; d < D; d += 32) {
        float acc = 0.f;
        for (int j = 0; j < Tn; j++) acc += p[j] * ld(v, base + (size_t)j * C + d);
        st(oi, d, acc);
    }
}

/* Backward, one warp per query row: dS_ij = P_ij (dO_i . v_j - sum_j' P_ij' dO_i . v_j') * scale; dq_i = dS_i k. */
template <typename T>
__global__ void attn_bwd_q_kernel(int nrows, int Tn, int H, int D, int C, float scale, const T *k, const T *v,
                                  const float *P, const T *dO, float *dS, T *dq) {
    const int row = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (row >= nrows) return;
    const int i = row % Tn, bh = row / Tn, h = bh % H, b = bh / H;
    const size_t base = (size_t)b * Tn * C + (size_t)h * D;
    const T *doi = dO + base + (size_t)i * C;
    const float *p = P + (size_t)row * Tn;
    float *ds = dS + (size_t)row * Tn;
    float dot = 0.f;
    for (int j = lane; j < Tn; j += 32) {
        const T *vj = v + base + (size_t)j * C;
        float s = 0.f;
        for (int d = 0; d < D; d++) s += ld(doi, d) * ld(vj, d);
        ds[j] = s;
        dot += s * p[j];
    }
    dot = warp_sum(dot);
    for (int j = lane; j < Tn; j += 32) ds[j] = p[j] * (ds[j] - dot) * scale;
    __syncwarp();
    T *dqi = dq + base + (size_t)i * C;
    for (int d = lane; d < D; d += 32) {
        float acc = 0.f;
        for (int j = 0; j < Tn; j++) acc += ds[j] * ld(k, base + (size_t)j * C + d);
        st(dqi, d, acc);
    }
}

/* One warp per key row j: dk_j = sum_i dS_ij q_i, dv_j = sum_i P_ij dO_i. */
template <typename T>
__global__ void attn_bwd_kv_kernel(int nrows, int Tn, int H, int D, int C, const T *q, const float *P,
                                   const T *dO, const float *dS, T *dk, T *dv) {
    const int row = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (row >= nrows) return;
    const int j = row % Tn, bh = row / Tn, h = bh % H, b = bh / H;
    const size_t base = (size_t)b * Tn * C + (size_t)h * D;
    const float *pc = P + (size_t)bh * Tn * Tn + j, *dsc = dS + (size_t)bh * Tn * Tn + j;
    for (int d = lane; d < D; d += 32) {
        float ak = 0.f, av = 0.f;
        for (int i = 0; i < Tn; i++) {
            const size_t r = base + (size_t)i * C + d;
            ak += dsc[(size_t)i * Tn] * ld(q, r);
            av += pc[(size_t)i * Tn] * ld(dO, r);
        }
        st(dk, base + (size_t)j * C + d, ak);
        st(dv, base + (size_t)j * C + d, av);
    }
}

/* dpos[t][c] += sum_b dx0[b][t][c] (images in order, as the CPU adds them); CLIP: dcls[c] += the same at t = 0 */
template <typename T>
__global__ void pos_grad_kernel(int B, int Tn, int C, const T *dx0, float *dpos, float *dcls) {
    const size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (e >= (size_t)Tn * C) return;
    float s = 0.f;
    for (int b = 0; b < B; b++) s += ld(dx0, (size_t)b * Tn * C + e);
    dpos[e] += s;
    if (dcls && e < (size_t)C) dcls[e] += s;
}

/* CLIP: dpe[b*Np + p][c] = dx0[b][p + 1][c] */
template <typename T> __global__ void gather_patch_kernel(size_t n, int Tn, int Np, int C, const T *dx0, T *dpe) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t b = e / ((size_t)Np * C), r = e % ((size_t)Np * C);
        dpe[e] = dx0[(b * Tn + 1) * C + r];
    }
}

/* Whisper's Conv1d (k3, padding 1, stride s) as unfolded windows: cols[b*To + t][ci*3 + j] = x(b, t*s - 1 + j, ci)
 * (0 outside), x(b, ti, ci) = x[b*sb + ti*stt + ci*sc] (the mel [b][ci][ti], or h1 [b*Ti + ti][ci]) */
template <typename TO, typename TI> /* (TO first: the EW macro names the activation dtype) */
__global__ void unfold_kernel(size_t n, int Ti, int Ci, int s, int To, size_t sb, size_t stt, size_t sc, const TI *x,
                              TO *cols) {
    const int K = Ci * 3;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t row = e / K, b = row / To;
        const int r = (int)(e % K), t = (int)(row % To), ci = r / 3, ti = t * s - 1 + r % 3;
        st(cols, e, ti >= 0 && ti < Ti ? ld(x, b * sb + (size_t)ti * stt + (size_t)ci * sc) : 0.f);
    }
}

/* The fold (the unfold's transpose), one output element per thread in the order of (b, ti, ci), a fixed-order sum
 * over the (at most 3) windows that read it: dx(b, ti, ci) = sum_j dcols[b*To + t][ci*3 + j], t*s - 1 + j = ti */
template <typename TI, typename TO>
__global__ void fold_kernel(size_t n, int Ti, int Ci, int s, int To, size_t sb, size_t stt, size_t sc, const TI *dcols,
                            TO *dx) {
    const int K = Ci * 3;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int ci = (int)(e % Ci), ti = (int)((e / Ci) % Ti);
        const size_t b = e / ((size_t)Ci * Ti);
        float acc = 0.f;
        for (int j = 2; j >= 0; j--) { /* t ascending, as the CPU's col2im adds them */
            const int u = ti + 1 - j;
            if (u < 0 || u % s) continue;
            const int t = u / s;
            if (t < To) acc += ld(dcols, (b * To + t) * K + (size_t)ci * 3 + j);
        }
        st(dx, b * sb + (size_t)ti * stt + (size_t)ci * sc, acc);
    }
}

/* Whisper: h[b*T + t][c] += bias[c]; x0 = GELU_erf(h) + pos[t][c] */
template <typename T>
__global__ void stem_out_kernel(size_t n, int Tn, int C, T *h, const float *bias, const float *pos, T *x0) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % C), t = (int)((e / C) % Tn);
        st(h, e, ld(h, e) + bias[c]);
        st(x0, e, act_f(1, ld(h, e)) + pos[(size_t)t * C + c]);
    }
}

/* Whisper glue: dst[b][t][c] = t < keep ? src[b][t][c] : 0 (src [B][keep][C] bf16, dst [B][Tn][C]) */
template <typename T> __global__ void pad_rows_kernel(size_t n, int keep, int Tn, int C, const bf16 *src, T *dst) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % C), t = (int)((e / C) % Tn);
        const size_t b = e / ((size_t)C * Tn);
        st(dst, e, t < keep ? __bfloat162float(src[(b * keep + t) * C + c]) : 0.f);
    }
}

template <typename T> struct col_of {
    const T *y;
    int C;
    __device__ void operator()(int r, int c, float acc[1]) const { acc[0] += ld(y, (size_t)r * C + c); }
};

} // namespace

static mrw_status cuda_chk(cudaError_t e, const char *what, mrw_error *err) {
    return cuda_status(e, "vit trainer (cuda)", what, err);
}

#define PW(i) (v->w + v->ps.p[(i)].offset)
#define PG(i) (v->g + v->ps.p[(i)].offset)
#define PWn(i) ((i) >= 0 ? PW(i) : NULL)
#define WG(i) (v->fp32 ? (const void *)PW(i) : (const void *)(v->wbf + v->ps.p[(i)].offset))
#define LI(l, j) (v->li[(l) * NB + (j)])
#define GRID(n) grid_for((n), 256), 256, 0, v->st

/* C[M][N] = alpha op(A) op(B) + beta C (row-major), A and B of the activation dtype, C of c_dt */
static mrw_status gm(mrw_vit_gpu_train *v, int tA, int tB, int M, int N, int K, const void *A, int lda,
                     const void *B, int ldb, float beta, mrw_cuda_dtype c_dt, void *C, int ldc, mrw_error *err) {
    const float alpha = 1.f;
    const cudaDataType_t at = v->fp32 ? CUDA_R_32F : CUDA_R_16BF, ct = c_dt == MRW_CUDA_F32 ? CUDA_R_32F : CUDA_R_16BF;
    const cublasStatus_t s =
        cublasGemmEx(v->blas, tB ? CUBLAS_OP_T : CUBLAS_OP_N, tA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, at,
                     ldb, A, at, lda, &beta, C, ct, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS)
        return mrw_err(err, MRW_E_INTERNAL, "vit trainer (cuda): cublasGemmEx %dx%dx%d: %s", M, N, K,
                       cublasGetStatusString(s));
    return MRW_OK;
}

/* Y[rows][out] = X[rows][in] W^T (bias and residual added by the caller's kernel) */
static mrw_status lin(mrw_vit_gpu_train *v, int wi, const void *X, int rows, int in, int out, void *Y,
                      mrw_error *err) {
    return gm(v, 0, 1, rows, out, in, X, in, WG(wi), in, 0.f, v->dt, Y, out, err);
}

/* dW += dY^T X, db += colsum dY (bi < 0: none), dX = (or += when acc) dY W (dX NULL: none) */
static mrw_status lin_bwd(mrw_vit_gpu_train *v, int wi, int bi, const void *X, const void *dY, int rows, int in,
                          int out, void *dX, int acc, mrw_error *err) {
    TRY(gm(v, 1, 0, out, in, rows, dY, out, X, in, 1.f, MRW_CUDA_F32, PG(wi), in, err));
    if (bi >= 0) {
        outs<1> o = {{PG(bi)}};
        if (v->fp32) colsum<1>(rows, out, col_of<float>{(const float *)dY, out}, v->part, o, v->st);
        else colsum<1>(rows, out, col_of<bf16>{(const bf16 *)dY, out}, v->part, o, v->st);
        TRY(launched("vit trainer bias gradient", err));
    }
    if (dX) TRY(gm(v, 0, 0, rows, in, out, dY, out, WG(wi), in, acc ? 1.f : 0.f, v->dt, dX, in, err));
    return MRW_OK;
}

/* the element-wise kernels on the activation dtype */
#define EW(kernel, n, ...)                                                                                          \
    do {                                                                                                            \
        if (v->fp32) {                                                                                              \
            typedef float Ty;                                                                                       \
            kernel<Ty><<<GRID(n)>>>(__VA_ARGS__);                                                                   \
        } else {                                                                                                    \
            typedef bf16 Ty;                                                                                        \
            kernel<Ty><<<GRID(n)>>>(__VA_ARGS__);                                                                   \
        }                                                                                                           \
    } while (0)
#define A_(p) ((Ty *)(p))

static int addp(mrw_vit_gpu_train *v, const char *key, int no_decay, int ndim, int64_t d0, int64_t d1, int64_t d2,
                int64_t d3) {
    char name[MRW_PARAM_NAME_MAX];
    if (snprintf(name, sizeof name, "%s%s", v->wh ? "encoder.model." : PFX, key) >= (int)sizeof name) return -1;
    const int64_t shape[4] = {d0, d1, d2, d3};
    return mrw_param_add(&v->ps, name, MRW_PG_ENCODER, no_decay, ndim, shape);
}

extern "C" void mrw_vit_gpu_train_free(mrw_vit_gpu_train *v) {
    if (!v) return;
    cudaStreamSynchronize(v->st);
    void *bufs[] = {v->w,    v->g,         v->m,    v->v,    v->wbf,  v->norm_out, v->norm_part, v->lnscratch,
                    v->part, v->mem,       v->g_pos, v->g_dy, v->g_dx, v->g_dout};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    if (v->blas) cublasDestroy(v->blas);
    mrw_param_set_free(&v->ps);
    free(v->li), free(v->la), free(v->h_tmp);
    free(v);
}

static mrw_status alloc_common(mrw_vit_gpu_train *v, mrw_vit_gpu_train **out, mrw_error *err);

extern "C" mrw_status mrw_vit_gpu_train_new(const mrw_vit_config *cfg, int max_B, int fp32, void *stream,
                                            mrw_vit_gpu_train **out, mrw_error *err) {
    *out = NULL;
    mrw_vit_config c = *cfg;
    if (c.family != MRW_VIT_SIGLIP && c.family != MRW_VIT_CLIP)
        return mrw_err(err, MRW_E_ARG, "vit trainer (cuda): unknown family %d", (int)c.family);
    if (c.hidden < 1 || c.n_layer < 1 || c.n_head < 1 || c.hidden % c.n_head || c.intermediate < 1 ||
        c.channels < 1 || c.patch < 1 || c.image_size < c.patch || c.image_size % c.patch || max_B < 1 ||
        c.hidden > 16384 || c.intermediate > 65536 || c.n_layer > 256 || c.image_size / c.patch > 128 ||
        !(c.eps > 0) || max_B > 65536 || /* rows (images x tokens x heads) counted in int */
        (double)max_B * ((double)(c.image_size / c.patch) * (c.image_size / c.patch) + 1) * c.n_head > 2e9)
        return mrw_err(err, MRW_E_ARG, "vit trainer (cuda): inconsistent configuration (hidden %d, heads %d, patch %d, "
                       "image %d, %d images)", c.hidden, c.n_head, c.patch, c.image_size, max_B);
    c.head_dim = c.hidden / c.n_head;
    c.grid = c.image_size / c.patch;
    c.n_patches = c.grid * c.grid;
    c.n_tokens = c.n_patches + (c.family == MRW_VIT_CLIP);
    mrw_vit_gpu_train *v = (mrw_vit_gpu_train *)calloc(1, sizeof *v);
    if (!v) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    v->cfg = c, v->max_B = max_B, v->fp32 = !!fp32;
    v->dt = fp32 ? MRW_CUDA_F32 : MRW_CUDA_BF16, v->esz = fp32 ? 4 : 2;
    v->PP = c.channels * c.patch * c.patch;
    v->act = c.act == MRW_VIT_QUICK_GELU ? 3 : c.act == MRW_VIT_GELU_ERF ? 1 : 2;
    v->st = (cudaStream_t)stream;
    v->in_elems = (size_t)c.channels * c.image_size * c.image_size;
    const int C = c.hidden, I = c.intermediate, T = c.n_tokens, clip = c.family == MRW_VIT_CLIP, L = c.n_layer;
    /* the table: vit_train.c's order, names and shapes */
    int bad = 0;
    v->i_pb = v->i_cls = v->i_prew = v->i_preb = -1;
    if (clip) bad |= (v->i_cls = addp(v, "embeddings.class_embedding", 1, 1, C, 0, 0, 0)) < 0;
    bad |= (v->i_pw = addp(v, "embeddings.patch_embedding.weight", 0, 4, C, c.channels, c.patch, c.patch)) < 0;
    if (!clip) bad |= (v->i_pb = addp(v, "embeddings.patch_embedding.bias", 1, 1, C, 0, 0, 0)) < 0;
    bad |= (v->i_pos = addp(v, "embeddings.position_embedding.weight", 0, 2, T, C, 0, 0)) < 0;
    if (clip) {
        bad |= (v->i_prew = addp(v, "pre_layrnorm.weight", 1, 1, C, 0, 0, 0)) < 0;
        bad |= (v->i_preb = addp(v, "pre_layrnorm.bias", 1, 1, C, 0, 0, 0)) < 0;
    }
    v->li = (int *)malloc((size_t)L * NB * sizeof *v->li);
    v->la = (layer_acts *)calloc((size_t)L, sizeof *v->la);
    bad |= !v->li || !v->la;
    for (int l = 0; l < L && !bad; l++)
        for (int j = 0; j < NB; j++) {
            char key[96];
            snprintf(key, sizeof key, "encoder.layers.%d.%s", l, LKEY[j]);
            const int is_w = j == QW || j == KW || j == VW || j == OW || j == F1W || j == F2W;
            const int rows = j == F1W || j == F1B ? I : C, cols = j == F2W ? I : C;
            bad |= (LI(l, j) = is_w ? addp(v, key, 0, 2, rows, cols, 0, 0) : addp(v, key, 1, 1, rows, 0, 0, 0)) < 0;
        }
    bad |= (v->i_postw = addp(v, "post_layernorm.weight", 1, 1, C, 0, 0, 0)) < 0;
    bad |= (v->i_postb = addp(v, "post_layernorm.bias", 1, 1, C, 0, 0, 0)) < 0;
    if (bad) {
        mrw_vit_gpu_train_free(v);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    return alloc_common(v, out, err);
}

/* the cuBLAS handle, the activations (one allocation) and the parameters, Adam moments and scratch of the table */
static mrw_status alloc_common(mrw_vit_gpu_train *v, mrw_vit_gpu_train **out, mrw_error *err) {
    const mrw_vit_config c = v->cfg;
    const int max_B = v->max_B, fp32 = v->fp32;
    const int C = c.hidden, I = c.intermediate, T = c.n_tokens, clip = c.family == MRW_VIT_CLIP, L = c.n_layer;
    if (cublasCreate(&v->blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(v->blas, v->st) != CUBLAS_STATUS_SUCCESS) {
        v->blas = NULL;
        mrw_vit_gpu_train_free(v);
        return mrw_err(err, MRW_E_INTERNAL, "vit trainer (cuda): cublasCreate failed");
    }
    /* activations: sizes in bytes, 256-aligned pieces of one allocation */
    const size_t B = (size_t)max_B, N = B * T, NP = B * c.n_patches, es = v->esz, H = c.n_head;
    const size_t NC = N * C * es, NI = N * (size_t)I * es, PT = B * H * T * T * 4, img = v->in_elems;
    /* Whisper's stem (0 for a ViT): frames B*F, conv input width nm */
    const size_t NF = v->wh ? B * v->F : 0, nm3 = (size_t)v->nm * 3, NW = v->wh ? N : 0;
    size_t off = 0;
    char *base = NULL;
    for (int pass = 0; pass < 2; pass++) {
        off = 0;
#define TAKE(dst, bytes)                                                                                            \
    (dst = (decltype(dst))(base ? base + off : NULL), off += ((size_t)(bytes) + 255) & ~(size_t)255)
        TAKE(v->pixels, B * img * 4);
        TAKE(v->cols, NP * v->PP * es), TAKE(v->pe, NP * C * es), TAKE(v->dpe, clip ? NP * C * es : 0);
        TAKE(v->x0, clip ? NC : 0), TAKE(v->dx0n, clip ? NC : 0), TAKE(v->xL, NC), TAKE(v->y, clip ? 0 : NC);
        TAKE(v->m0, N * 4), TAKE(v->r0, N * 4), TAKE(v->mL, N * 4), TAKE(v->rL, N * 4);
        TAKE(v->dres, NC), TAKE(v->dxn, NC), TAKE(v->dq, NC), TAKE(v->dk, NC), TAKE(v->dv, NC), TAKE(v->datt, NC);
        TAKE(v->dff, NI), TAKE(v->dS, PT);
        TAKE(v->cols1, NF * nm3 * es), TAKE(v->dcols1, NF * nm3 * es), TAKE(v->h1p, NF * C * es);
        TAKE(v->h1, NF * C * es), TAKE(v->dh1, NF * C * es), TAKE(v->cols2, NW * 3 * C * es);
        TAKE(v->dcols2, NW * 3 * C * es), TAKE(v->h2p, NW * C * es), TAKE(v->dmel, v->wh ? B * img * 4 : 0);
        for (int l = 0; l < L; l++) {
            layer_acts *a = &v->la[l];
            TAKE(a->x, NC), TAKE(a->xn1, NC), TAKE(a->q, NC), TAKE(a->k, NC), TAKE(a->v, NC), TAKE(a->att, NC);
            TAKE(a->xmid, NC), TAKE(a->xn2, NC), TAKE(a->f, NI), TAKE(a->fa, NI), TAKE(a->P, PT);
            TAKE(a->m1, N * 4), TAKE(a->r1, N * 4), TAKE(a->m2, N * 4), TAKE(a->r2, N * 4);
        }
#undef TAKE
        if (pass == 0 && cudaMalloc(&v->mem, off) != cudaSuccess) {
            cudaGetLastError();
            v->mem = NULL;
            mrw_vit_gpu_train_free(v);
            return mrw_err(err, MRW_E_NOMEM, "vit trainer (cuda): cannot allocate %.2f GiB of activations for %d "
                           "images (%d tokens, %d layers): use a smaller batch", off / 1073741824.0, max_B, T, L);
        }
        base = (char *)v->mem;
    }
    if (!clip) v->x0 = v->la[0].x; /* SigLIP: the embeddings are the first block's input */
    v->bytes = off;
    const size_t P = v->ps.total, wide = (size_t)(C > I ? C : I);
    struct {
        void **p;
        size_t bytes;
    } al[] = {{(void **)&v->w, P * 4},
              {(void **)&v->g, P * 4},
              {(void **)&v->m, P * 4},
              {(void **)&v->v, P * 4},
              {(void **)&v->wbf, fp32 ? 0 : P * 2},
              {(void **)&v->norm_out, 16},
              {(void **)&v->norm_part, MRW_CUDA_NORM_BLOCKS * sizeof(double)},
              {(void **)&v->lnscratch, mrw_cuda_layernorm_bwd_scratch(C) * 4},
              {(void **)&v->part, colsum_scratch_floats<1>((int)wide) * 4}};
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        if (!al[i].bytes) continue;
        if (cudaMalloc(al[i].p, al[i].bytes) != cudaSuccess) {
            cudaGetLastError();
            *al[i].p = NULL;
            mrw_vit_gpu_train_free(v);
            return mrw_err(err, MRW_E_NOMEM, "vit trainer (cuda): cannot allocate %.2f GiB of parameters",
                           al[i].bytes / 1073741824.0);
        }
        v->bytes += al[i].bytes;
    }
    cudaMemsetAsync(v->w, 0, P * 4, v->st);
    cudaMemsetAsync(v->g, 0, P * 4, v->st);
    cudaMemsetAsync(v->m, 0, P * 4, v->st);
    cudaMemsetAsync(v->v, 0, P * 4, v->st);
    if (v->wbf) cudaMemsetAsync(v->wbf, 0, P * 2, v->st);
    const cudaError_t e = cudaStreamSynchronize(v->st);
    if (e != cudaSuccess) {
        mrw_vit_gpu_train_free(v);
        return mrw_err(err, MRW_E_INTERNAL, "vit trainer (cuda): init: %s", cudaGetErrorString(e));
    }
    *out = v;
    return MRW_OK;
}

/* conv2 (k3, s2, p1)'s output length: models/whisper_enc.c's mrw_whisper_enc_out_frames, kept here so that the
 * standalone GPU drivers need not link the CPU encoder */
static int whisper_out_frames(int n_frames) { return n_frames < 1 ? 0 : (n_frames - 1) / 2 + 1; }

extern "C" mrw_status mrw_whisper_gpu_train_new(const mrw_whisper_config *cfg, int n_frames, int max_B, int fp32,
                                                void *stream, mrw_vit_gpu_train **out, mrw_error *err) {
    *out = NULL;
    const mrw_whisper_config *w = cfg;
    /* whisper_train's limits, and the rows (clips x rows x heads, clips x frames x 3 n_mels) counted in int */
    if (w->n_mels < 1 || w->d_model < 1 || w->n_layers < 1 || w->n_heads < 1 || w->d_model % w->n_heads ||
        w->ffn_dim < 1 || w->n_pos < 1 || w->d_model > 16384 || w->ffn_dim > 65536 || w->n_layers > 256 ||
        w->n_mels > 1024 || w->n_pos > 65536 || !(w->ln_eps > 0) || max_B < 1 || max_B > 65536 || n_frames < 1 ||
        n_frames > 2 * w->n_pos || (double)max_B * n_frames * 3 * (w->n_mels > w->d_model ? w->n_mels : w->d_model) > 2e9 ||
        (double)max_B * whisper_out_frames(n_frames) * w->n_heads > 2e9)
        return mrw_err(err, MRW_E_ARG, "whisper trainer (cuda): inconsistent configuration (d_model %d, heads %d, %d "
                       "frames of at most %d, %d clips)", w->d_model, w->n_heads, n_frames, 2 * w->n_pos, max_B);
    if (w->act != MRW_ACT_GELU && w->act != MRW_ACT_GELU_TANH && w->act != MRW_ACT_RELU)
        return mrw_err(err, MRW_E_ARG, "whisper trainer (cuda): unknown activation %d", (int)w->act);
    mrw_vit_gpu_train *v = (mrw_vit_gpu_train *)calloc(1, sizeof *v);
    if (!v) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    const int d = w->d_model, nm = w->n_mels, I = w->ffn_dim, L = w->n_layers, T = whisper_out_frames(n_frames);
    mrw_vit_config c;
    memset(&c, 0, sizeof c);
    c.family = MRW_VIT_SIGLIP; /* (the layer code's non-CLIP path: no pre-LN, a final LayerNorm) */
    c.hidden = d, c.n_layer = L, c.n_head = w->n_heads, c.head_dim = d / w->n_heads, c.intermediate = I;
    c.eps = w->ln_eps, c.n_tokens = T;
    v->cfg = c, v->wcfg = *w, v->wh = 1, v->F = n_frames, v->nm = nm, v->max_B = max_B, v->fp32 = !!fp32;
    v->dt = fp32 ? MRW_CUDA_F32 : MRW_CUDA_BF16, v->esz = fp32 ? 4 : 2;
    v->act = w->act == MRW_ACT_GELU ? 1 : w->act == MRW_ACT_GELU_TANH ? 2 : 4;
    v->st = (cudaStream_t)stream;
    v->in_elems = (size_t)nm * n_frames;
    v->i_pw = v->i_pb = v->i_cls = v->i_prew = v->i_preb = -1;
    /* the table: whisper_train.c's order, names and shapes (k_proj has no bias) */
    int bad = 0;
    bad |= (v->i_c1w = addp(v, "conv1.weight", 0, 3, d, nm, 3, 0)) < 0;
    bad |= (v->i_c1b = addp(v, "conv1.bias", 1, 1, d, 0, 0, 0)) < 0;
    bad |= (v->i_c2w = addp(v, "conv2.weight", 0, 3, d, d, 3, 0)) < 0;
    bad |= (v->i_c2b = addp(v, "conv2.bias", 1, 1, d, 0, 0, 0)) < 0;
    bad |= (v->i_pos = addp(v, "embed_positions.weight", 1, 2, w->n_pos, d, 0, 0)) < 0;
    static const char *const WKEY[NB] = {
        "self_attn_layer_norm.weight", "self_attn_layer_norm.bias", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
        "self_attn.k_proj.weight",     NULL,                        "self_attn.v_proj.weight", "self_attn.v_proj.bias",
        "self_attn.out_proj.weight",   "self_attn.out_proj.bias",   "final_layer_norm.weight", "final_layer_norm.bias",
        "fc1.weight",                  "fc1.bias",                  "fc2.weight",              "fc2.bias"};
    v->li = (int *)malloc((size_t)L * NB * sizeof *v->li);
    v->la = (layer_acts *)calloc((size_t)L, sizeof *v->la);
    bad |= !v->li || !v->la;
    for (int l = 0; l < L && !bad; l++)
        for (int j = 0; j < NB; j++) {
            LI(l, j) = -1;
            if (!WKEY[j]) continue;
            char key[96];
            snprintf(key, sizeof key, "layers.%d.%s", l, WKEY[j]);
            const int is_w = j == QW || j == KW || j == VW || j == OW || j == F1W || j == F2W;
            const int rows = j == F1W || j == F1B ? I : d, cols = j == F2W ? I : d;
            bad |= (LI(l, j) = is_w ? addp(v, key, 0, 2, rows, cols, 0, 0) : addp(v, key, 1, 1, rows, 0, 0, 0)) < 0;
        }
    bad |= (v->i_postw = addp(v, "layer_norm.weight", 1, 1, d, 0, 0, 0)) < 0;
    bad |= (v->i_postb = addp(v, "layer_norm.bias", 1, 1, d, 0, 0, 0)) < 0;
    if (bad) {
        mrw_vit_gpu_train_free(v);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    return alloc_common(v, out, err);
}

extern "C" int mrw_whisper_gpu_train_frames(const mrw_vit_gpu_train *v) { return v->wh ? v->F : 0; }
extern "C" int mrw_whisper_gpu_train_out_rows(const mrw_vit_gpu_train *v) { return v->cfg.n_tokens; }

extern "C" const mrw_vit_config *mrw_vit_gpu_train_config(const mrw_vit_gpu_train *v) { return &v->cfg; }
extern "C" const mrw_param_set *mrw_vit_gpu_train_layout(const mrw_vit_gpu_train *v) { return &v->ps; }
extern "C" mrw_cuda_dtype mrw_vit_gpu_train_dtype(const mrw_vit_gpu_train *v) { return v->dt; }
extern "C" size_t mrw_vit_gpu_train_bytes(const mrw_vit_gpu_train *v) { return v->bytes; }
extern "C" size_t mrw_vit_gpu_train_in_floats(const mrw_vit_gpu_train *v) { return v->in_elems; }

extern "C" mrw_status mrw_vit_gpu_train_upload(mrw_vit_gpu_train *v, const mrw_param_set *src, int grads,
                                               mrw_error *err) {
    if (!src || !(grads ? src->g : src->w)) return mrw_err(err, MRW_E_ARG, "vit trainer (cuda): upload from nothing");
    TRY(cuda_chk(cudaStreamSynchronize(v->st), "upload", err));
    for (int i = 0; i < v->ps.n; i++) {
        const mrw_param *p = &v->ps.p[i];
        const int j = mrw_param_find(src, p->name);
        if (j < 0) return mrw_err(err, MRW_E_MISSING, "vit trainer (cuda): upload: no tensor %s", p->name);
        if (src->p[j].n != p->n)
            return mrw_err(err, MRW_E_SHAPE, "vit trainer (cuda): upload: %s has %zu elements, %zu expected", p->name,
                           src->p[j].n, p->n);
        const float *from = (grads ? src->g : src->w) + src->p[j].offset;
        TRY(cuda_chk(cudaMemcpy((grads ? v->g : v->w) + p->offset, from, p->n * 4, cudaMemcpyHostToDevice), "upload",
                     err));
    }
    if (!grads && v->wbf) {
        to_bf16_kernel<<<GRID(v->ps.total)>>>(v->ps.total, v->w, v->wbf);
        TRY(launched("vit trainer bf16 copy", err));
    }
    return cuda_chk(cudaStreamSynchronize(v->st), "upload", err);
}

extern "C" mrw_status mrw_vit_gpu_train_download(mrw_vit_gpu_train *v, mrw_param_set *dst, int grads,
                                                 mrw_error *err) {
    if (!dst || !dst->w || (grads && !dst->g))
        return mrw_err(err, MRW_E_ARG, "vit trainer (cuda): download into nothing");
    TRY(cuda_chk(cudaStreamSynchronize(v->st), "download", err));
    for (int i = 0; i < v->ps.n; i++) {
        const mrw_param *p = &v->ps.p[i];
        const int j = mrw_param_find(dst, p->name);
        if (j < 0 || dst->p[j].n != p->n) continue;
        TRY(cuda_chk(cudaMemcpy(dst->w + dst->p[j].offset, v->w + p->offset, p->n * 4, cudaMemcpyDeviceToHost),
                     "download", err));
        if (grads)
            TRY(cuda_chk(cudaMemcpy(dst->g + dst->p[j].offset, v->g + p->offset, p->n * 4, cudaMemcpyDeviceToHost),
                         "download", err));
    }
    return MRW_OK;
}

/* --------------------------------------------------------------------------------------------- forward */

template <typename Ty> static void attn_fwd(mrw_vit_gpu_train *v, int B, layer_acts *a) {
    const mrw_vit_config *c = &v->cfg;
    const int rows = B * c->n_head * c->n_tokens;
    attn_fwd_kernel<Ty><<<(unsigned)(((size_t)rows * 32 + 127) / 128), 128, 0, v->st>>>(
        rows, c->n_tokens, c->n_head, c->head_dim, c->hidden, 1.0f / sqrtf((float)c->head_dim), A_(a->q), A_(a->k),
        A_(a->v), a->P, A_(a->att));
}

template <typename Ty> static void attn_bwd(mrw_vit_gpu_train *v, int B, const layer_acts *a) {
    const mrw_vit_config *c = &v->cfg;
    const int rows = B * c->n_head * c->n_tokens, T = c->n_tokens, H = c->n_head, D = c->head_dim, C = c->hidden;
    const unsigned grid = (unsigned)(((size_t)rows * 32 + 127) / 128);
    attn_bwd_q_kernel<Ty><<<grid, 128, 0, v->st>>>(rows, T, H, D, C, 1.0f / sqrtf((float)D), A_(a->k), A_(a->v),
                                                    a->P, A_(v->datt), v->dS, A_(v->dq));
    attn_bwd_kv_kernel<Ty><<<grid, 128, 0, v->st>>>(rows, T, H, D, C, A_(a->q), a->P, A_(v->datt), v->dS, A_(v->dk),
                                                     A_(v->dv));
}

extern "C" mrw_status mrw_vit_gpu_train_forward(mrw_vit_gpu_train *v, const float *pixels, int pixels_on_host, int B,
                                                const void **out, mrw_error *err) {
    v->valid = 0, v->keep = 0;
    const mrw_vit_config *c = &v->cfg;
    if (!pixels || !out || B < 1 || B > v->max_B)
        return mrw_err(err, MRW_E_ARG, "vit trainer (cuda): batch %d outside 1..%d or NULL buffers", B, v->max_B);
    const int C = c->hidden, T = c->n_tokens, Np = c->n_patches, I = c->intermediate, clip = c->family == MRW_VIT_CLIP;
    const size_t img = v->in_elems, N = (size_t)B * T, NP = (size_t)B * Np;
    const int Nr = (int)N;
    void *st = (void *)v->st;
    TRY(cuda_chk(cudaMemcpyAsync(v->pixels, pixels, (size_t)B * img * 4,
                                 pixels_on_host ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice, v->st),
                 "pixels", err));
    if (pixels_on_host) TRY(cuda_chk(cudaStreamSynchronize(v->st), "pixels", err));
    v->B = B;
    if (v->wh) { /* Whisper's stem: conv1 + GELU, conv2 (stride 2) + GELU, + positions */
        const int F = v->F, nm = v->nm;
        const size_t NF = (size_t)B * F, n1 = NF * nm * 3, n2 = N * 3 * C;
        EW(unfold_kernel, n1, n1, F, nm, 1, F, (size_t)nm * F, (size_t)1, (size_t)F, v->pixels, A_(v->cols1));
        TRY(lin(v, v->i_c1w, v->cols1, (int)NF, 3 * nm, C, v->h1p, err));
        EW(bias_act_kernel, NF * C, NF * C, C, 1, A_(v->h1p), PW(v->i_c1b), A_(v->h1));
        EW(unfold_kernel, n2, n2, F, C, 2, T, (size_t)F * C, (size_t)C, (size_t)1, A_(v->h1), A_(v->cols2));
        TRY(lin(v, v->i_c2w, v->cols2, Nr, 3 * C, C, v->h2p, err));
        EW(stem_out_kernel, N * C, N * C, T, C, A_(v->h2p), PW(v->i_c2b), PW(v->i_pos), A_(v->x0));
        TRY(launched("whisper trainer stem", err));
    } else {
        EW(im2col_kernel, NP * v->PP, NP * v->PP, c->channels, c->image_size, c->patch, c->grid, v->pixels, A_(v->cols));
        TRY(launched("vit trainer im2col", err));
        TRY(lin(v, v->i_pw, v->cols, (int)NP, v->PP, C, v->pe, err));
        EW(embed_kernel, N * C, N * C, T, Np, C, clip, A_(v->pe), v->i_pb >= 0 ? PW(v->i_pb) : NULL,
           clip ? PW(v->i_cls) : NULL, PW(v->i_pos), A_(v->x0));
        TRY(launched("vit trainer embeddings", err));
    }
    if (clip)
        TRY(mrw_cuda_layernorm_fwd(v->dt, Nr, C, v->x0, PW(v->i_prew), PW(v->i_preb), c->eps, v->la[0].x, v->m0, v->r0,
                                   st, err));
    for (int l = 0; l < c->n_layer; l++) {
        layer_acts *a = &v->la[l];
        void *nx = l + 1 < c->n_layer ? v->la[l + 1].x : v->xL;
        TRY(mrw_cuda_layernorm_fwd(v->dt, Nr, C, a->x, PW(LI(l, LN1W)), PW(LI(l, LN1B)), c->eps, a->xn1, a->m1, a->r1,
                                   st, err));
        void *qkv[3] = {a->q, a->k, a->v};
        for (int j = 0; j < 3; j++) {
            TRY(lin(v, LI(l, QW + 2 * j), a->xn1, Nr, C, C, qkv[j], err));
            EW(bias_res_kernel, N * C, N * C, C, A_(qkv[j]), PWn(LI(l, QB + 2 * j)), (const Ty *)NULL);
        }
        if (v->fp32) attn_fwd<float>(v, B, a);
        else attn_fwd<bf16>(v, B, a);
        TRY(launched("vit trainer attention", err));
        TRY(lin(v, LI(l, OW), a->att, Nr, C, C, a->xmid, err));
        EW(bias_res_kernel, N * C, N * C, C, A_(a->xmid), PW(LI(l, OB)), A_(a->x));
        TRY(mrw_cuda_layernorm_fwd(v->dt, Nr, C, a->xmid, PW(LI(l, LN2W)), PW(LI(l, LN2B)), c->eps, a->xn2, a->m2,
                                   a->r2, st, err));
        TRY(lin(v, LI(l, F1W), a->xn2, Nr, C, I, a->f, err));
        EW(bias_act_kernel, N * I, N * I, I, v->act, A_(a->f), PW(LI(l, F1B)), A_(a->fa));
        TRY(lin(v, LI(l, F2W), a->fa, Nr, I, C, nx, err));
        EW(bias_res_kernel, N * C, N * C, C, A_(nx), PW(LI(l, F2B)), A_(a->xmid));
        TRY(launched("vit trainer block", err));
    }
    if (clip) {
        *out = v->xL;
    } else {
        TRY(mrw_cuda_layernorm_fwd(v->dt, Nr, C, v->xL, PW(v->i_postw), PW(v->i_postb), c->eps, v->y, v->mL, v->rL, st,
                                   err));
        *out = v->y;
    }
    v->valid = 1;
    return MRW_OK;
}

/* -------------------------------------------------------------------------------------------- backward */

extern "C" mrw_status mrw_vit_gpu_train_backward(mrw_vit_gpu_train *v, const void *d_out, mrw_error *err) {
    if (!v->valid) return mrw_err(err, MRW_E_ARG, "vit trainer (cuda): backward without a forward before it");
    if (!d_out) return mrw_err(err, MRW_E_ARG, "vit trainer (cuda): NULL d_out");
    v->valid = 0;
    const mrw_vit_config *c = &v->cfg;
    const int B = v->B, C = c->hidden, T = c->n_tokens, Np = c->n_patches, I = c->intermediate,
              clip = c->family == MRW_VIT_CLIP;
    const size_t N = (size_t)B * T, NP = (size_t)B * Np;
    const int Nr = (int)N;
    void *st = (void *)v->st;
    if (clip)
        TRY(cuda_chk(cudaMemcpyAsync(v->dres, d_out, N * C * v->esz, cudaMemcpyDeviceToDevice, v->st), "copy", err));
    else
        TRY(mrw_cuda_layernorm_bwd(v->dt, Nr, C, d_out, v->xL, v->mL, v->rL, PW(v->i_postw), 0, v->dres,
                                   PG(v->i_postw), PG(v->i_postb), v->lnscratch, st, err));
    for (int l = c->n_layer - 1; l >= 0; l--) {
        const layer_acts *a = &v->la[l];
        /* MLP */
        TRY(lin_bwd(v, LI(l, F2W), LI(l, F2B), a->fa, v->dres, Nr, I, C, v->dff, 0, err));
        EW(act_bwd_kernel, N * I, N * I, v->act, A_(a->f), A_(v->dff));
        TRY(launched("vit trainer activation backward", err));
        TRY(lin_bwd(v, LI(l, F1W), LI(l, F1B), a->xn2, v->dff, Nr, C, I, v->dxn, 0, err));
        TRY(mrw_cuda_layernorm_bwd(v->dt, Nr, C, v->dxn, a->xmid, a->m2, a->r2, PW(LI(l, LN2W)), 1, v->dres,
                                   PG(LI(l, LN2W)), PG(LI(l, LN2B)), v->lnscratch, st, err));
        /* attention */
        TRY(lin_bwd(v, LI(l, OW), LI(l, OB), a->att, v->dres, Nr, C, C, v->datt, 0, err));
        if (v->fp32) attn_bwd<float>(v, B, a);
        else attn_bwd<bf16>(v, B, a);
        TRY(launched("vit trainer attention backward", err));
        TRY(lin_bwd(v, LI(l, QW), LI(l, QB), a->xn1, v->dq, Nr, C, C, v->dxn, 0, err));
        TRY(lin_bwd(v, LI(l, KW), LI(l, KB), a->xn1, v->dk, Nr, C, C, v->dxn, 1, err));
        TRY(lin_bwd(v, LI(l, VW), LI(l, VB), a->xn1, v->dv, Nr, C, C, v->dxn, 1, err));
        TRY(mrw_cuda_layernorm_bwd(v->dt, Nr, C, v->dxn, a->x, a->m1, a->r1, PW(LI(l, LN1W)), 1, v->dres,
                                   PG(LI(l, LN1W)), PG(LI(l, LN1B)), v->lnscratch, st, err));
    }
    if (v->wh) { /* Whisper's stem (embed_positions is frozen: no gradient) */
        const int F = v->F, nm = v->nm;
        const size_t NF = (size_t)B * F;
        EW(act_bwd_kernel, N * C, N * C, 1, A_(v->h2p), A_(v->dres));
        TRY(launched("whisper trainer conv2 GELU backward", err));
        TRY(lin_bwd(v, v->i_c2w, v->i_c2b, v->cols2, v->dres, Nr, 3 * C, C, v->dcols2, 0, err));
        EW(fold_kernel, NF * C, NF * C, F, C, 2, T, (size_t)F * C, (size_t)C, (size_t)1, A_(v->dcols2), A_(v->dh1));
        EW(act_bwd_kernel, NF * C, NF * C, 1, A_(v->h1p), A_(v->dh1));
        TRY(launched("whisper trainer conv1 GELU backward", err));
        TRY(lin_bwd(v, v->i_c1w, v->i_c1b, v->cols1, v->dh1, (int)NF, 3 * nm, C, v->want_dmel ? v->dcols1 : NULL, 0,
                    err));
        if (v->want_dmel) {
            EW(fold_kernel, NF * nm, NF * nm, F, nm, 1, F, (size_t)nm * F, (size_t)1, (size_t)F, A_(v->dcols1), v->dmel);
            TRY(launched("whisper trainer input gradient", err));
        }
        return MRW_OK;
    }
    /* embeddings */
    void *dx0 = v->dres;
    if (clip) {
        TRY(mrw_cuda_layernorm_bwd(v->dt, Nr, C, v->dres, v->x0, v->m0, v->r0, PW(v->i_prew), 0, v->dx0n,
                                   PG(v->i_prew), PG(v->i_preb), v->lnscratch, st, err));
        dx0 = v->dx0n;
    }
    const size_t TC = (size_t)T * C;
    float *dcls = clip ? PG(v->i_cls) : NULL;
    const unsigned pg = (unsigned)((TC + 255) / 256);
    if (v->fp32) pos_grad_kernel<float><<<pg, 256, 0, v->st>>>(B, T, C, (const float *)dx0, PG(v->i_pos), dcls);
    else pos_grad_kernel<bf16><<<pg, 256, 0, v->st>>>(B, T, C, (const bf16 *)dx0, PG(v->i_pos), dcls);
    TRY(launched("vit trainer position gradient", err));
    const void *dpe = dx0;
    if (clip) {
        EW(gather_patch_kernel, NP * C, NP * C, T, Np, C, A_(dx0), A_(v->dpe));
        TRY(launched("vit trainer patch gradient", err));
        dpe = v->dpe;
    }
    return lin_bwd(v, v->i_pw, v->i_pb, v->cols, dpe, (int)NP, v->PP, C, NULL, 0, err);
}

extern "C" mrw_status mrw_whisper_gpu_train_backward(mrw_vit_gpu_train *v, const void *d_out, float *d_mel,
                                                     mrw_error *err) {
    if (!v->wh) return mrw_err(err, MRW_E_ARG, "whisper trainer (cuda): not a Whisper encoder");
    v->want_dmel = d_mel != NULL;
    const int B = v->B;
    const mrw_status s = mrw_vit_gpu_train_backward(v, d_out, err);
    v->want_dmel = 0;
    if (s || !d_mel) return s;
    TRY(cuda_chk(cudaMemcpyAsync(d_mel, v->dmel, (size_t)B * v->in_elems * 4, cudaMemcpyDeviceToHost, v->st), "d_mel",
                 err));
    return cuda_chk(cudaStreamSynchronize(v->st), "d_mel", err);
}

extern "C" mrw_status mrw_vit_gpu_train_zero_grad(mrw_vit_gpu_train *v, mrw_error *err) {
    return cuda_chk(cudaMemsetAsync(v->g, 0, v->ps.total * 4, v->st), "zero grad", err);
}

/* ------------------------------------------------------------------------------------------- optimizer */

namespace {
__global__ void add_f64_kernel(int n, double *y, const double *x) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}
} // namespace

extern "C" mrw_status mrw_vit_gpu_train_moments(mrw_vit_gpu_train *v, int to_gpu, const mrw_param_set *ps, float *m,
                                                float *vv, const size_t *moff, int64_t *t, mrw_error *err) {
    TRY(cuda_chk(cudaStreamSynchronize(v->st), "moments", err));
    for (int i = 0; i < ps->n; i++) {
        if (moff[i] == SIZE_MAX) continue;
        const int j = mrw_param_find(&v->ps, ps->p[i].name);
        if (j < 0 || v->ps.p[j].n != ps->p[i].n)
            return mrw_err(err, MRW_E_SHAPE, "vit trainer (cuda): optimizer state of %s does not match", ps->p[i].name);
        const size_t o = v->ps.p[j].offset, n = ps->p[i].n * sizeof(float);
        float *host[2] = {m + moff[i], vv + moff[i]}, *dev[2] = {v->m + o, v->v + o};
        for (int k = 0; k < 2; k++)
            TRY(cuda_chk(to_gpu ? cudaMemcpy(dev[k], host[k], n, cudaMemcpyHostToDevice)
                                : cudaMemcpy(host[k], dev[k], n, cudaMemcpyDeviceToHost), "moments", err));
    }
    if (to_gpu) v->t_adam = *t;
    else *t = v->t_adam;
    return MRW_OK;
}

extern "C" mrw_status mrw_vit_gpu_train_sumsq_add(mrw_vit_gpu_train *v, double *part, mrw_error *err) {
    TRY(mrw_cuda_sumsq_part(v->ps.total, v->g, v->norm_part, v->st, err));
    add_f64_kernel<<<(MRW_CUDA_NORM_BLOCKS + 255) / 256, 256, 0, v->st>>>(MRW_CUDA_NORM_BLOCKS, part, v->norm_part);
    return launched("vit trainer norm sum", err);
}

extern "C" mrw_status mrw_vit_gpu_train_step_part(mrw_vit_gpu_train *v, const mrw_adam_config *cfg, double lr,
                                                  double max_norm, const double *part, double *grad_norm,
                                                  mrw_error *err) {
    TRY(mrw_cuda_grad_norm_finish(1, part, (float)max_norm, v->norm_out, NULL, v->st, err));
    v->t_adam++;
    for (int i = 0; i < v->ps.n; i++) {
        const mrw_param *p = &v->ps.p[i];
        const mrw_cuda_adam_hp hp = mrw_cuda_adam_hparams(lr, v->t_adam, cfg->beta1, cfg->beta2, cfg->eps,
                                                          cfg->weight_decay, cfg->decoupled, p->no_decay);
        TRY(mrw_cuda_adam_step(p->n, v->w + p->offset, v->g + p->offset, v->m + p->offset, v->v + p->offset,
                               v->wbf ? v->wbf + p->offset : NULL, &hp, max_norm > 0 ? v->norm_out + 1 : NULL, v->st,
                               err));
    }
    if (grad_norm) {
        float h;
        TRY(cuda_chk(cudaMemcpyAsync(&h, v->norm_out, sizeof h, cudaMemcpyDeviceToHost, v->st), "norm", err));
        TRY(cuda_chk(cudaStreamSynchronize(v->st), "step", err));
        *grad_norm = h;
    }
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------ the trainer's glue */

namespace {
/* dst[r][c] = bf16(src[pos[r]][c]) */
template <typename T> __global__ void gather_kernel(size_t n, int C, const int32_t *pos, const T *src, bf16 *dst) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / C, c = e % C;
        dst[e] = __float2bfloat16_rn(ld(src, (size_t)pos[r] * C + c));
    }
}
__global__ void bf16_to_f32_kernel(size_t n, const bf16 *x, float *y) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        y[e] = __bfloat162float(x[e]);
}
} // namespace

extern "C" mrw_status mrw_vit_gpu_train_output_host(mrw_vit_gpu_train *v, float *dst, mrw_error *err) {
    if (!v->valid) return mrw_err(err, MRW_E_ARG, "vit trainer (cuda): no forward to read");
    const size_t n = (size_t)v->B * v->cfg.n_tokens * v->cfg.hidden;
    const void *src = v->cfg.family == MRW_VIT_CLIP ? v->xL : v->y;
    if (v->fp32) {
        TRY(cuda_chk(cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyDeviceToHost, v->st), "output", err));
        return cuda_chk(cudaStreamSynchronize(v->st), "output", err);
    }
    /* bf16: copied, widened on the host */
    if (!v->h_tmp && !(v->h_tmp = (float *)malloc((size_t)v->max_B * v->cfg.n_tokens * v->cfg.hidden * 2)))
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    uint16_t *h = (uint16_t *)v->h_tmp;
    TRY(cuda_chk(cudaMemcpyAsync(h, src, n * 2, cudaMemcpyDeviceToHost, v->st), "output", err));
    TRY(cuda_chk(cudaStreamSynchronize(v->st), "output", err));
    for (size_t i = 0; i < n; i++) {
        const uint32_t u = (uint32_t)h[i] << 16;
        memcpy(dst + i, &u, 4);
    }
    return MRW_OK;
}

extern "C" mrw_status mrw_whisper_gpu_train_output_host(mrw_vit_gpu_train *v, int keep, float *dst, mrw_error *err) {
    if (!v->wh) return mrw_err(err, MRW_E_ARG, "whisper trainer (cuda): not a Whisper encoder");
    if (!v->valid) return mrw_err(err, MRW_E_ARG, "whisper trainer (cuda): no forward to read");
    const int T = v->cfg.n_tokens, C = v->cfg.hidden, B = v->B;
    if (keep < 1 || keep > T || !dst)
        return mrw_err(err, MRW_E_ARG, "whisper trainer (cuda): %d rows of %d asked for", keep, T);
    v->keep = keep;
    const size_t n = (size_t)B * keep * C;
    if (v->fp32) {
        TRY(cuda_chk(cudaMemcpy2DAsync(dst, (size_t)keep * C * 4, v->y, (size_t)T * C * 4, (size_t)keep * C * 4, B,
                                       cudaMemcpyDeviceToHost, v->st), "output", err));
        return cuda_chk(cudaStreamSynchronize(v->st), "output", err);
    }
    if (!v->h_tmp && !(v->h_tmp = (float *)malloc((size_t)v->max_B * T * C * 2)))
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    uint16_t *h = (uint16_t *)v->h_tmp;
    TRY(cuda_chk(cudaMemcpy2DAsync(h, (size_t)keep * C * 2, v->y, (size_t)T * C * 2, (size_t)keep * C * 2, B,
                                   cudaMemcpyDeviceToHost, v->st), "output", err));
    TRY(cuda_chk(cudaStreamSynchronize(v->st), "output", err));
    for (size_t i = 0; i < n; i++) {
        const uint32_t u = (uint32_t)h[i] << 16;
        memcpy(dst + i, &u, 4);
    }
    return MRW_OK;
}

extern "C" mrw_status mrw_vit_gpu_train_backward_adapter(mrw_vit_gpu_train *v, struct mrw_adapter_gpu *a,
                                                         const void *d_inject, mrw_cuda_dtype inj_dt, int C,
                                                         const int32_t *pos, int rows, mrw_error *err) {
    if (!v->valid) return mrw_err(err, MRW_E_ARG, "vit trainer (cuda): backward without a forward before it");
    if (!a || !d_inject || !pos || rows < 1 || C < 1)
        return mrw_err(err, MRW_E_ARG, "vit trainer (cuda): adapter backward: NULL arguments or no rows");
    if (v->wh && v->keep < 1)
        return mrw_err(err, MRW_E_ARG, "whisper trainer (cuda): adapter backward without mrw_whisper_gpu_train_output_host");
    const size_t nx = (size_t)v->B * v->cfg.n_tokens * v->cfg.hidden, ny = (size_t)rows * C;
    if (ny > v->g_rows_cap || !v->g_dx) { /* (re)allocate: rows of the largest micro-batch so far */
        cudaStreamSynchronize(v->st);
        cudaFree(v->g_pos), cudaFree(v->g_dy), cudaFree(v->g_dx), cudaFree(v->g_dout);
        v->g_pos = NULL, v->g_dy = v->g_dx = NULL, v->g_dout = NULL, v->g_rows_cap = 0;
        const size_t nxm = (size_t)v->max_B * v->cfg.n_tokens * v->cfg.hidden;
        if (cudaMalloc(&v->g_pos, (size_t)rows * 4) != cudaSuccess || cudaMalloc(&v->g_dy, ny * 2) != cudaSuccess ||
            cudaMalloc(&v->g_dx, nxm * 2) != cudaSuccess ||
            ((v->fp32 || v->wh) && cudaMalloc(&v->g_dout, nxm * v->esz) != cudaSuccess)) {
            cudaGetLastError();
            return mrw_err(err, MRW_E_NOMEM, "vit trainer (cuda): cannot allocate the adapter backward's buffers");
        }
        v->g_rows_cap = ny;
    }
    for (int r = 0; r < rows; r++)
        if (pos[r] < 0) return mrw_err(err, MRW_E_ARG, "vit trainer (cuda): row position %d", pos[r]);
    TRY(cuda_chk(cudaMemcpyAsync(v->g_pos, pos, (size_t)rows * 4, cudaMemcpyHostToDevice, v->st), "positions", err));
    TRY(cuda_chk(cudaStreamSynchronize(v->st), "positions", err)); /* (pageable memory) */
    if (inj_dt == MRW_CUDA_F32)
        gather_kernel<float><<<GRID(ny)>>>(ny, C, v->g_pos, (const float *)d_inject, v->g_dy);
    else
        gather_kernel<bf16><<<GRID(ny)>>>(ny, C, v->g_pos, (const bf16 *)d_inject, v->g_dy);
    TRY(launched("vit trainer gather", err));
    TRY(mrw_adapter_gpu_backward(a, v->g_dy, v->g_dx, err));
    const void *dout = v->g_dx;
    if (v->wh) { /* the adapter took the first `keep` rows of every clip: the others get a zero gradient */
        EW(pad_rows_kernel, nx, nx, v->keep, v->cfg.n_tokens, v->cfg.hidden, v->g_dx, A_(v->g_dout));
        TRY(launched("whisper trainer d_out", err));
        dout = v->g_dout;
    } else if (v->fp32) {
        bf16_to_f32_kernel<<<GRID(nx)>>>(nx, v->g_dx, (float *)v->g_dout);
        TRY(launched("vit trainer d_out", err));
        dout = v->g_dout;
    }
    return mrw_vit_gpu_train_backward(v, dout, err);
}

extern "C" float *mrw_vit_gpu_train_grads(mrw_vit_gpu_train *v, size_t *n) {
    *n = v->ps.total;
    return v->g;
}
