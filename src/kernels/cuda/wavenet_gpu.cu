/* The WaveNet encoder with patch pooling on the GPU (wavenet_gpu.h, which explains the plan). Buffers (rows n = b*T + t,
 * N = B*T, Rp = B*n pooled rows; "op" = the GEMM operand dtype: fp32 in the parity mode, bf16 in the fast mode):
 *   x [N] fp32 (copy of the input); h [L][N][C] fp32 (h_i minus the res biases of the layers before it, cb_i);
 *   a [L][N][2C] fp32: the dilated conv's output, overwritten by the gate with (f, g) = (tanh, sigmoid) for the
 *   backward; Z [N][L*C] op (every layer's z side by side); col [N][2C] op; sk [N][S] fp32 (skip without biases);
 *   prs [Rp][S] op (pooled relu(skip)); pooled [Rp][E] fp32 (the output).
 *   Backward: dZ [N][L*C] fp32; dh [N][C] fp32 (+ its op copy dhb in the fast mode); da [N][2C] op;
 *   dcol [N][2C] fp32; dsk [N][S] op; dprs [Rp][S] fp32; dpb [Rp][E] bf16 (the fast mode's copy of d_pooled).
 * Weights: one fp32 block w (+ its bf16 copy wbf) in the layout of wn_layout, which differs from the host set's in
 * two places: the skip weights of all layers are one [S][L*C] matrix (skw) and their biases one summed vector (sb);
 * and cb [L][C] holds the running sums of the res biases. The gradient block g has the same layout (sb's gradient
 * is every layer's skip bias gradient; cb has none). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/wavenet_gpu.h"
}

using namespace mrwcu;

#define WN_MAXL MRW_WAVENET_MAX_LAYERS

namespace {

struct wn_layout {
    size_t in_w, in_b, dil_w[WN_MAXL], dil_b[WN_MAXL], res_w[WN_MAXL], res_b[WN_MAXL], skw, sb, out_w, out_b, cb;
    size_t total; /* floats */
};

/* ---------------------------------------------------------------------------------------------- kernels */

/* h[n][c] = w[c] x[n] + b[c] */
__global__ void input_kernel(size_t n, int C, const float *x, const float *w, const float *b, float *h) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % C);
        h[e] = w[c] * x[e / C] + b[c];
    }
}

/* col[n][2c] = h[n - d][c] + cb[c] (0 when t < d), col[n][2c + 1] = h[n][c] + cb[c]  (e over N*C) */
template <typename OT>
__global__ void im2col_kernel(size_t n, int T, int C, int d, const float *h, const float *cb, OT *col) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % C);
        const size_t r = e / C;
        const int t = (int)(r % T);
        const float cur = h[e] + cb[c], prev = t >= d ? h[e - (size_t)d * C] + cb[c] : 0.f;
        st2(col, r * 2 * C + 2 * c, prev, cur);
    }
}

/* a (bias-free conv output, [N][2C]) -> f = tanh(a_f + b_f), g = sigmoid(a_g + b_g) in place; Z[n][zo + c] = f g */
template <typename OT>
__global__ void gate_kernel(size_t n, int C, int ldz, int zo, float *a, const float *b, OT *Z) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % C);
        const size_t r = e / C;
        float *ar = a + r * 2 * C;
        const float f = tanhf(ar[c] + b[c]), g = 1.0f / (1.0f + expf(-(ar[C + c] + b[C + c])));
        ar[c] = f, ar[C + c] = g;
        st(Z, r * ldz + zo + c, f * g);
    }
}

/* prs[b*np + j][s] = mean over the patch's P steps of relu(sk + sb[s]) (e over Rp*S) */
template <typename OT>
__global__ void pool_kernel(size_t n, int S, int T, int P, int np, int off, const float *sk, const float *sb, OT *prs) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int s = (int)(e % S);
        const size_t r = e / S;
        const size_t b = r / np, j = r % np;
        const float *p = sk + (b * T + off + j * P) * S + s;
        float acc = 0.f;
        for (int q = 0; q < P; q++) acc += fmaxf(p[(size_t)q * S] + sb[s], 0.f);
        st(prs, e, acc / (float)P);
    }
}

/* y[r][c] += b[c] */
__global__ void bias_rows_kernel(size_t n, int E, float *y, const float *b) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        y[e] += b[e % E];
}

/* d relu(skip)[n][s] from d prs: the patch's gradient / P for the steps of a patch, 0 before off; times the ReLU's
 * derivative [sk + sb > 0] */
struct dskip_val {
    const float *dprs, *sk, *sb;
    int S, T, P, np, off;
    __device__ __forceinline__ float operator()(size_t r, int s) const {
        const int t = (int)(r % T);
        if (t < off) return 0.f;
        const size_t b = r / T;
        const float v = dprs[(b * np + (size_t)((t - off) / P)) * S + s] / (float)P;
        return sk[r * S + s] + sb[s] > 0.f ? v : 0.f;
    }
};

template <typename OT> __global__ void dskip_kernel(size_t n, dskip_val f, OT *dsk) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        st(dsk, e, f(e / f.S, (int)(e % f.S)));
}

/* the gate's backward: da_f = dz g (1 - f^2), da_g = dz f g (1 - g), dz = dZ[n][zo + c] */
struct gate_bwd_val {
    const float *dZ, *fg;
    int C, ldz, zo;
    __device__ __forceinline__ float operator()(size_t r, int o) const {
        const int c = o < C ? o : o - C;
        const float dz = dZ[r * ldz + zo + c], f = fg[r * 2 * C + c], g = fg[r * 2 * C + C + c];
        return o < C ? dz * g * (1.f - f * f) : dz * f * g * (1.f - g);
    }
};

template <typename OT> __global__ void gate_bwd_kernel(size_t n, gate_bwd_val f, OT *da) {
    const int C2 = 2 * f.C;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        st(da, e, f(e / C2, (int)(e % C2)));
}

/* dh[n][c] (= or +=) dcol[n][2c + 1] + dcol[n + d][2c] (when t + d < T, same series); dhb (NULL or) its op copy */
template <typename OT>
__global__ void col2im_kernel(size_t n, int T, int C, int d, const float *dcol, int acc, float *dh, OT *dhb) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % C);
        const size_t r = e / C;
        const int t = (int)(r % T);
        float v = dcol[r * 2 * C + 2 * c + 1];
        if (t + d < T) v += dcol[(r + d) * 2 * C + 2 * c];
        if (acc) v += dh[e];
        dh[e] = v;
        if (dhb) st(dhb, e, v);
    }
}

/* column-sum functors (common.cuh colsum) */
struct cs_plain {
    const float *x;
    int ld;
    __device__ void operator()(int r, int c, float acc[1]) const { acc[0] += x[(size_t)r * ld + c]; }
};
struct cs_dskip {
    dskip_val v;
    __device__ void operator()(int r, int c, float acc[1]) const { acc[0] += v((size_t)r, c); }
};
struct cs_gate {
    gate_bwd_val v;
    __device__ void operator()(int r, int c, float acc[1]) const { acc[0] += v((size_t)r, c); }
};
struct cs_input { /* d w_in[c] = sum dh[n][c] x[n], d b_in[c] = sum dh[n][c] */
    const float *dh, *x;
    int C;
    __device__ void operator()(int r, int c, float acc[2]) const {
        const float v = dh[(size_t)r * C + c];
        acc[0] += v * x[r], acc[1] += v;
    }
};

} // namespace

struct mrw_wavenet_gpu {
    mrw_wavenet_config cfg;
    int L, C, S, E, max_B, max_T, fp32, dil[WN_MAXL];
    cudaStream_t st;
    mrw_cuda_lt *lt;
    wn_layout lo;
    void *mem;    /* the one device allocation */
    float *hst;   /* host staging of the weight / gradient block (lo.total floats) */
    float *w, *g; /* weights, gradients (lo.total) */
    bf16 *wbf;    /* bf16 copy of w (fast mode) */
    float *x, *h, *a, *sk, *pooled, *dZ, *dh, *dcol, *dprs, *cs;
    void *Z, *col, *prs, *dhb, *da, *dsk;
    bf16 *dpb;
    int B, T, P, np, off, valid;
    size_t bytes;
};

static mrw_status cuda_chk(cudaError_t e, const char *what, mrw_error *err) {
    return cuda_status(e, "wavenet (cuda)", what, err);
}

static size_t layout_add(size_t *at, size_t n) {
    const size_t o = (*at + 63) & ~(size_t)63; /* 256-byte aligned tensors (bf16 copy: 128) */
    *at = o + n;
    return o;
}

static void make_layout(const mrw_wavenet_config *c, wn_layout *lo) {
    const size_t C = c->res_ch, S = c->skip_ch, E = c->out_dim, L = c->n_layers;
    size_t at = 0;
    memset(lo, 0, sizeof *lo);
    lo->in_w = layout_add(&at, C);
    lo->in_b = layout_add(&at, C);
    for (size_t i = 0; i < L; i++) {
        lo->dil_w[i] = layout_add(&at, 4 * C * C);
        lo->dil_b[i] = layout_add(&at, 2 * C);
        lo->res_w[i] = layout_add(&at, C * C);
        lo->res_b[i] = layout_add(&at, C);
    }
    lo->skw = layout_add(&at, S * L * C);
    lo->sb = layout_add(&at, S);
    lo->out_w = layout_add(&at, E * S);
    lo->out_b = layout_add(&at, E);
    lo->cb = layout_add(&at, L * C);
    lo->total = (at + 63) & ~(size_t)63;
}

extern "C" void mrw_wavenet_gpu_free(mrw_wavenet_gpu *g) {
    if (!g) return;
    if (g->mem) {
        cudaStreamSynchronize(g->st);
        cudaFree(g->mem);
    }
    mrw_cuda_lt_free(g->lt);
    free(g->hst);
    free(g);
}

extern "C" size_t mrw_wavenet_gpu_bytes(const mrw_wavenet_gpu *g) { return g ? g->bytes : 0; }

extern "C" mrw_status mrw_wavenet_gpu_new(const mrw_wavenet_config *cfg, int max_B, int max_T, int fp32,
                                          void *stream, mrw_wavenet_gpu **out, mrw_error *err) {
    *out = NULL;
    if (!cfg) return mrw_err(err, MRW_E_ARG, "wavenet (cuda): NULL config");
    TRY(mrw_wavenet_config_check(cfg, err));
    if (max_B < 1 || max_T < 1 || (int64_t)max_B * max_T > (1 << 24))
        return mrw_err(err, MRW_E_ARG, "wavenet (cuda): %d series of %d steps (1 .. 2^24 steps in all)", max_B, max_T);
    const size_t N = (size_t)max_B * max_T, C = cfg->res_ch, S = cfg->skip_ch, E = cfg->out_dim, L = cfg->n_layers;
    if (N * L * C > ((size_t)1 << 31) - 1)
        return mrw_err(err, MRW_E_ARG, "wavenet (cuda): %zu steps x %zu layers x %zu channels is too large", N, L, C);
    mrw_wavenet_gpu *g = (mrw_wavenet_gpu *)calloc(1, sizeof *g);
    if (!g) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    g->cfg = *cfg, g->L = (int)L, g->C = (int)C, g->S = (int)S, g->E = (int)E;
    g->max_B = max_B, g->max_T = max_T, g->fp32 = !!fp32, g->st = (cudaStream_t)stream;
    for (int i = 0; i < g->L; i++) g->dil[i] = mrw_wavenet_dilation(cfg, i);
    make_layout(cfg, &g->lo);
    g->hst = (float *)calloc(g->lo.total, sizeof(float));
    if (!g->hst) {
        free(g);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    mrw_status s = mrw_cuda_lt_new_tuned(&g->lt, 1, err);
    if (s) {
        mrw_wavenet_gpu_free(g);
        return s;
    }
    const size_t ob = g->fp32 ? 4 : 2, P = g->lo.total;
    size_t cols = 2 * C;
    if (S > cols) cols = S;
    if (E > cols) cols = E;
    struct {
        void **p;
        size_t bytes;
    } al[] = {{(void **)&g->w, P * 4},
              {(void **)&g->g, P * 4},
              {(void **)&g->wbf, g->fp32 ? 0 : P * 2},
              {(void **)&g->x, N * 4},
              {(void **)&g->h, L * N * C * 4},
              {(void **)&g->a, L * N * 2 * C * 4},
              {&g->Z, N * L * C * ob},
              {&g->col, N * 2 * C * ob},
              {(void **)&g->sk, N * S * 4},
              {&g->prs, N * S * ob},
              {(void **)&g->pooled, N * E * 4},
              {(void **)&g->dZ, N * L * C * 4},
              {(void **)&g->dh, N * C * 4},
              {&g->dhb, g->fp32 ? 0 : N * C * 2},
              {&g->da, N * 2 * C * ob},
              {(void **)&g->dcol, N * 2 * C * 4},
              {&g->dsk, N * S * ob},
              {(void **)&g->dprs, N * S * 4},
              {(void **)&g->dpb, g->fp32 ? 0 : N * E * 2},
              {(void **)&g->cs, colsum_scratch_floats<2>((int)cols) * 4}};
    const int na = (int)(sizeof al / sizeof al[0]);
    size_t tot = 0;
    for (int i = 0; i < na; i++) tot += (al[i].bytes + 255) & ~(size_t)255;
    cudaError_t e = cudaMalloc(&g->mem, tot);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, all = 0;
        cudaMemGetInfo(&fr, &all);
        cudaGetLastError();
        g->mem = NULL;
        mrw_wavenet_gpu_free(g);
        return mrw_err(err, MRW_E_NOMEM, "wavenet (cuda): cannot allocate %zu bytes (%.2f GiB) for %d x %d steps; "
                       "%.2f GiB of %.2f GiB free on the device: use fewer series or steps", tot,
                       tot / 1073741824.0, max_B, max_T, fr / 1073741824.0, all / 1073741824.0);
    }
    char *p = (char *)g->mem;
    for (int i = 0; i < na; i++) {
        *al[i].p = al[i].bytes ? (void *)p : NULL;
        p += (al[i].bytes + 255) & ~(size_t)255;
    }
    if (g->fp32) g->dhb = g->dh; /* the fp32 mode's GEMMs read dh itself */
    g->bytes = tot;
    s = cuda_chk(cudaMemsetAsync(g->mem, 0, tot, g->st), "init", err);
    if (!s) s = cuda_chk(cudaStreamSynchronize(g->st), "init", err);
    if (s) {
        mrw_wavenet_gpu_free(g);
        return s;
    }
    *out = g;
    return MRW_OK;
}

static int same_config(const mrw_wavenet_config *a, const mrw_wavenet_config *b) {
    return a->n_layers == b->n_layers && a->res_ch == b->res_ch && a->skip_ch == b->skip_ch &&
           a->out_dim == b->out_dim && a->cycle == b->cycle;
}

extern "C" mrw_status mrw_wavenet_gpu_upload(mrw_wavenet_gpu *g, const mrw_wavenet *host, mrw_error *err) {
    if (!host || !host->ps || !host->ps->w) return mrw_err(err, MRW_E_ARG, "wavenet (cuda): upload from nothing");
    if (!same_config(&host->cfg, &g->cfg))
        return mrw_err(err, MRW_E_ARG, "wavenet (cuda): upload: the host WaveNet has another configuration");
    const mrw_param_set *ps = host->ps;
    const wn_layout *lo = &g->lo;
    const int L = g->L, C = g->C, S = g->S, E = g->E;
    float *h = g->hst;
    /* the staging buffer may still be read by an earlier upload's copy only if the host memory were pinned; it is
     * pageable, so that copy was staged before cudaMemcpyAsync returned */
    memcpy(h + lo->in_w, mrw_param_w(ps, host->in_w), C * 4);
    memcpy(h + lo->in_b, mrw_param_w(ps, host->in_b), C * 4);
    double *acc = (double *)calloc((size_t)(C > S ? C : S), sizeof(double));
    if (!acc) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    for (int i = 0; i < L; i++) {
        memcpy(h + lo->dil_w[i], mrw_param_w(ps, host->dil_w[i]), (size_t)4 * C * C * 4);
        memcpy(h + lo->dil_b[i], mrw_param_w(ps, host->dil_b[i]), (size_t)2 * C * 4);
        memcpy(h + lo->res_w[i], mrw_param_w(ps, host->res_w[i]), (size_t)C * C * 4);
        memcpy(h + lo->res_b[i], mrw_param_w(ps, host->res_b[i]), (size_t)C * 4);
        /* cb_i = sum_{j<i} res_b[j] */
        for (int c = 0; c < C; c++) h[lo->cb + (size_t)i * C + c] = (float)acc[c];
        const float *rb = mrw_param_w(ps, host->res_b[i]);
        for (int c = 0; c < C; c++) acc[c] += rb[c];
        const float *sw = mrw_param_w(ps, host->skip_w[i]);
        for (int s = 0; s < S; s++) memcpy(h + lo->skw + ((size_t)s * L + i) * C, sw + (size_t)s * C, (size_t)C * 4);
    }
    for (int s = 0; s < S; s++) {
        double v = 0;
        for (int i = 0; i < L; i++) v += mrw_param_w(ps, host->skip_b[i])[s];
        h[lo->sb + s] = (float)v;
    }
    free(acc);
    memcpy(h + lo->out_w, mrw_param_w(ps, host->out_w), (size_t)E * S * 4);
    memcpy(h + lo->out_b, mrw_param_w(ps, host->out_b), (size_t)E * 4);
    TRY(cuda_chk(cudaMemcpyAsync(g->w, h, lo->total * 4, cudaMemcpyHostToDevice, g->st), "upload", err));
    if (!g->fp32) {
        to_bf16_kernel<<<grid_for(lo->total, 256), 256, 0, g->st>>>(lo->total, g->w, g->wbf);
        TRY(launched("wavenet bf16 copy", err));
    }
    return MRW_OK;
}

extern "C" mrw_status mrw_wavenet_gpu_download_grads(mrw_wavenet_gpu *g, mrw_wavenet *host, mrw_error *err) {
    if (!host || !host->ps || !host->ps->g) return mrw_err(err, MRW_E_ARG, "wavenet (cuda): download into nothing");
    if (!same_config(&host->cfg, &g->cfg))
        return mrw_err(err, MRW_E_ARG, "wavenet (cuda): download: the host WaveNet has another configuration");
    const wn_layout *lo = &g->lo;
    float *h = g->hst;
    TRY(cuda_chk(cudaMemcpyAsync(h, g->g, lo->total * 4, cudaMemcpyDeviceToHost, g->st), "download", err));
    TRY(cuda_chk(cudaStreamSynchronize(g->st), "download", err));
    TRY(cuda_chk(cudaMemsetAsync(g->g, 0, lo->total * 4, g->st), "zero grads", err));
    const mrw_param_set *ps = host->ps;
    const int L = g->L, C = g->C, S = g->S, E = g->E;
/* host gradient of tensor hidx, elements [at, at + n) += staging [off, off + n) */
#define ADD(hidx, at, off, n)                                                                              \
    do {                                                                                                   \
        float *d_ = mrw_param_g(ps, (hidx)) + (at);                                                        \
        const float *s_ = h + (off);                                                                       \
        for (size_t k_ = 0; k_ < (size_t)(n); k_++) d_[k_] += s_[k_];                                      \
    } while (0)
    ADD(host->in_w, 0, lo->in_w, C);
    ADD(host->in_b, 0, lo->in_b, C);
    for (int i = 0; i < L; i++) {
        ADD(host->dil_w[i], 0, lo->dil_w[i], 4 * C * C);
        ADD(host->dil_b[i], 0, lo->dil_b[i], 2 * C);
        ADD(host->res_w[i], 0, lo->res_w[i], C * C);
        ADD(host->res_b[i], 0, lo->res_b[i], C);
        ADD(host->skip_b[i], 0, lo->sb, S); /* every layer's skip bias gets the gradient of their sum */
        for (int s = 0; s < S; s++) ADD(host->skip_w[i], (size_t)s * C, lo->skw + ((size_t)s * L + i) * C, C);
    }
    ADD(host->out_w, 0, lo->out_w, (size_t)E * S);
    ADD(host->out_b, 0, lo->out_b, E);
#undef ADD
    return MRW_OK;
}

/* ---------------------------------------------------------------------------------------- forward, backward */

/* D[M][N] = op(A) op(B) (+ beta Cin), operands of the mode's dtype, fp32 out */
static mrw_status gm(mrw_wavenet_gpu *g, int tA, int tB, int M, int N, int K, const void *A, int lda, const void *B,
                     int ldb, float beta, const float *Cin, float *D, int ldd, mrw_error *err) {
    return mrw_cuda_gemm_cd(g->lt, g->fp32 ? MRW_CUDA_F32 : MRW_CUDA_BF16, tA, tB, M, N, K, 1.f, A, lda, B, ldb, beta,
                            Cin, MRW_CUDA_F32, D, ldd, (void *)g->st, err);
}

/* the weight tensor at layout offset o as a GEMM operand; an operand buffer advanced by k elements */
static const void *W(const mrw_wavenet_gpu *g, size_t o) {
    return g->fp32 ? (const void *)(g->w + o) : (const void *)(g->wbf + o);
}
static void *OP(const mrw_wavenet_gpu *g, void *p, size_t k) { return (char *)p + k * (g->fp32 ? 4 : 2); }

template <typename OT> static mrw_status forward_t(mrw_wavenet_gpu *g, mrw_error *err) {
    const int B = g->B, T = g->T, L = g->L, C = g->C, S = g->S, E = g->E, LC = L * C;
    const size_t N = (size_t)B * T, Rp = (size_t)B * g->np;
    const wn_layout *lo = &g->lo;
    const cudaStream_t st = g->st;
    input_kernel<<<grid_for(N * C, 256), 256, 0, st>>>(N * C, C, g->x, g->w + lo->in_w, g->w + lo->in_b, g->h);
    TRY(launched("wavenet input conv", err));
    for (int i = 0; i < L; i++) {
        const float *hi = g->h + (size_t)i * N * C;
        float *ai = g->a + (size_t)i * N * 2 * C;
        im2col_kernel<OT><<<grid_for(N * C, 256), 256, 0, st>>>(N * C, T, C, g->dil[i], hi, g->w + lo->cb + (size_t)i * C,
                                                                 (OT *)g->col);
        TRY(launched("wavenet im2col", err));
        TRY(gm(g, 0, 1, (int)N, 2 * C, 2 * C, g->col, 2 * C, W(g, lo->dil_w[i]), 2 * C, 0.f, NULL, ai, 2 * C, err));
        gate_kernel<OT><<<grid_for(N * C, 256), 256, 0, st>>>(N * C, C, LC, i * C, ai, g->w + lo->dil_b[i], (OT *)g->Z);
        TRY(launched("wavenet gate", err));
        if (i + 1 < L) /* h_{i+1} = h_i + z W_r^T (its bias goes into cb_{i+1}); the last layer's feeds nothing */
            TRY(gm(g, 0, 1, (int)N, C, C, OP(g, g->Z, (size_t)i * C), LC, W(g, lo->res_w[i]), C, 1.f, hi,
                   g->h + (size_t)(i + 1) * N * C, C, err));
    }
    TRY(gm(g, 0, 1, (int)N, S, LC, g->Z, LC, W(g, lo->skw), LC, 0.f, NULL, g->sk, S, err));
    pool_kernel<OT><<<grid_for(Rp * S, 256), 256, 0, st>>>(Rp * S, S, T, g->P, g->np, g->off, g->sk, g->w + lo->sb,
                                                            (OT *)g->prs);
    TRY(launched("wavenet pool", err));
    TRY(gm(g, 0, 1, (int)Rp, E, S, g->prs, S, W(g, lo->out_w), S, 0.f, NULL, g->pooled, E, err));
    bias_rows_kernel<<<grid_for(Rp * E, 256), 256, 0, st>>>(Rp * E, E, g->pooled, g->w + lo->out_b);
    return launched("wavenet out bias", err);
}

extern "C" mrw_status mrw_wavenet_gpu_forward(mrw_wavenet_gpu *g, const float *x, int B, int T, int P,
                                              const float **pooled, mrw_error *err) {
    g->valid = 0;
    if (!x || !pooled) return mrw_err(err, MRW_E_ARG, "wavenet (cuda): NULL input or output");
    if (B < 1 || B > g->max_B || T < 1 || T > g->max_T || P < 1 || P > T)
        return mrw_err(err, MRW_E_ARG, "wavenet (cuda): %d series of %d steps in patches of %d (at most %d series "
                       "of %d steps; 1 <= patch <= steps)", B, T, P, g->max_B, g->max_T);
    g->B = B, g->T = T, g->P = P, g->np = T / P, g->off = T - g->np * P;
    TRY(cuda_chk(cudaMemcpyAsync(g->x, x, (size_t)B * T * 4, cudaMemcpyDeviceToDevice, g->st), "input", err));
    TRY(g->fp32 ? forward_t<float>(g, err) : forward_t<bf16>(g, err));
    *pooled = g->pooled;
    g->valid = 1;
    return MRW_OK;
}

template <typename OT> static mrw_status backward_t(mrw_wavenet_gpu *g, const float *dp, mrw_error *err) {
    const int B = g->B, T = g->T, L = g->L, C = g->C, S = g->S, E = g->E, LC = L * C;
    const size_t N = (size_t)B * T, Rp = (size_t)B * g->np;
    const wn_layout *lo = &g->lo;
    const cudaStream_t st = g->st;
    float *gr = g->g;
    const void *dpA = dp; /* d pooled as a GEMM operand */
    if (!g->fp32) {
        to_bf16_kernel<<<grid_for(Rp * E, 256), 256, 0, st>>>(Rp * E, dp, g->dpb);
        TRY(launched("wavenet d pooled to bf16", err));
        dpA = g->dpb;
    }
    /* out conv on the pooled rows */
    colsum<1>((int)Rp, E, cs_plain{dp, E}, g->cs, outs<1>{{gr + lo->out_b}}, st);
    TRY(launched("wavenet out bias grad", err));
    TRY(gm(g, 1, 0, E, S, (int)Rp, dpA, E, g->prs, S, 1.f, gr + lo->out_w, gr + lo->out_w, S, err));
    TRY(gm(g, 0, 0, (int)Rp, S, E, dpA, E, W(g, lo->out_w), S, 0.f, NULL, g->dprs, S, err));
    /* un-pooling and the ReLU */
    const dskip_val dv = {g->dprs, g->sk, g->w + lo->sb, S, T, g->P, g->np, g->off};
    dskip_kernel<OT><<<grid_for(N * S, 256), 256, 0, st>>>(N * S, dv, (OT *)g->dsk);
    TRY(launched("wavenet d skip", err));
    colsum<1>((int)N, S, cs_dskip{dv}, g->cs, outs<1>{{gr + lo->sb}}, st);
    TRY(launched("wavenet skip bias grad", err));
    /* the skip convs of all layers at once */
    TRY(gm(g, 1, 0, S, LC, (int)N, g->dsk, S, g->Z, LC, 1.f, gr + lo->skw, gr + lo->skw, LC, err));
    TRY(gm(g, 0, 0, (int)N, LC, S, g->dsk, S, W(g, lo->skw), LC, 0.f, NULL, g->dZ, LC, err));
    for (int i = L - 1; i >= 0; i--) {
        float *dzi = g->dZ + (size_t)i * C;
        if (i + 1 < L) { /* the res conv: dz_i += dh_{i+1} W_r, dW_r += dh^T z_i, db_r += colsum(dh) */
            TRY(gm(g, 0, 0, (int)N, C, C, g->dhb, C, W(g, lo->res_w[i]), C, 1.f, dzi, dzi, LC, err));
            TRY(gm(g, 1, 0, C, C, (int)N, g->dhb, C, OP(g, g->Z, (size_t)i * C), LC, 1.f, gr + lo->res_w[i],
                   gr + lo->res_w[i], C, err));
            colsum<1>((int)N, C, cs_plain{g->dh, C}, g->cs, outs<1>{{gr + lo->res_b[i]}}, st);
            TRY(launched("wavenet res bias grad", err));
        }
        const gate_bwd_val gv = {g->dZ, g->a + (size_t)i * N * 2 * C, C, LC, i * C};
        gate_bwd_kernel<OT><<<grid_for(N * 2 * C, 256), 256, 0, st>>>(N * 2 * C, gv, (OT *)g->da);
        TRY(launched("wavenet gate backward", err));
        colsum<1>((int)N, 2 * C, cs_gate{gv}, g->cs, outs<1>{{gr + lo->dil_b[i]}}, st);
        TRY(launched("wavenet dilated bias grad", err));
        if (i + 1 < L) { /* (the forward left the last layer's im2col in col) */
            im2col_kernel<OT><<<grid_for(N * C, 256), 256, 0, st>>>(N * C, T, C, g->dil[i], g->h + (size_t)i * N * C,
                                                                     g->w + lo->cb + (size_t)i * C, (OT *)g->col);
            TRY(launched("wavenet im2col", err));
        }
        TRY(gm(g, 1, 0, 2 * C, 2 * C, (int)N, g->da, 2 * C, g->col, 2 * C, 1.f, gr + lo->dil_w[i], gr + lo->dil_w[i],
               2 * C, err));
        TRY(gm(g, 0, 0, (int)N, 2 * C, 2 * C, g->da, 2 * C, W(g, lo->dil_w[i]), 2 * C, 0.f, NULL, g->dcol, 2 * C, err));
        col2im_kernel<OT><<<grid_for(N * C, 256), 256, 0, st>>>(N * C, T, C, g->dil[i], g->dcol, i + 1 < L, g->dh,
                                                                 g->fp32 || i == 0 ? (OT *)NULL : (OT *)g->dhb);
        TRY(launched("wavenet col2im", err));
    }
    colsum<2>((int)N, C, cs_input{g->dh, g->x, C}, g->cs, outs<2>{{gr + lo->in_w, gr + lo->in_b}}, st);
    return launched("wavenet input conv grad", err);
}

extern "C" mrw_status mrw_wavenet_gpu_backward(mrw_wavenet_gpu *g, const float *d_pooled, mrw_error *err) {
    if (!g->valid) return mrw_err(err, MRW_E_ARG, "wavenet (cuda): backward without a forward before it");
    if (!d_pooled) return mrw_err(err, MRW_E_ARG, "wavenet (cuda): NULL d_pooled");
    g->valid = 0;
    return g->fp32 ? backward_t<float>(g, d_pooled, err) : backward_t<bf16>(g, d_pooled, err);
}
