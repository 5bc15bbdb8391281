#include "train/train_nn.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/matmul.h"

#define ROWS_PAR 16 /* rows before a row loop forks */

/* dst[c, r] = src[r, c] for a [R, C] matrix. */
static void transpose(const float *src, int R, int C, float *dst, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if ((long)R * C >= 65536 && nt > 1)
    for (int c0 = 0; c0 < C; c0 += 32)
        for (int r = 0; r < R; r++) {
            const int c1 = c0 + 32 < C ? c0 + 32 : C;
            for (int c = c0; c < c1; c++) dst[(size_t)c * R + r] = src[(size_t)r * C + c];
        }
}

void mrw_tnn_linear(mrw_kctx *k, const float *W, const float *b, const float *X, int N, int in, int out, float *Y) {
    mrw_mat m;
    mrw_mat_init(&m, MRW_DT_F32, out, in, W);
    mrw_matmul(k, &m, X, in, Y, out, N, 0);
    if (b) {
#pragma omp parallel for num_threads(k->n_threads) schedule(static) if (N >= ROWS_PAR && k->n_threads > 1)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) Y[(size_t)n * out + o] += b[o];
    }
}

size_t mrw_tnn_linear_bwd_scratch(int N, int in, int out) {
    const size_t a = (size_t)N * ((size_t)in + out), b = (size_t)in * out;
    return (a > b ? a : b) + 16;
}

void mrw_tnn_linear_bwd(mrw_kctx *k, const float *W, const float *X, const float *dY, int N, int in, int out,
                        float *dW, float *db, float *dX, int dx_acc, float *scratch) {
    const int nt = k->n_threads;
    if (db) {
#pragma omp parallel for num_threads(nt) schedule(static) if (out >= 64 && nt > 1)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += dY[(size_t)n * out + o];
            db[o] += (float)s;
        }
    }
    if (dW) { /* dW[out, in] += dYᵀ[out, N] · X[N, in]  ==  matmul(W' = Xᵀ [in, N], X' = dYᵀ [out, N]) */
        float *dYT = scratch, *XT = scratch + (size_t)N * out;
        transpose(dY, N, out, dYT, nt);
        transpose(X, N, in, XT, nt);
        mrw_mat m;
        mrw_mat_init(&m, MRW_DT_F32, in, N, XT);
        mrw_matmul(k, &m, dYT, N, dW, in, out, 1);
    }
    if (dX) { /* dX[N, in] (+)= dY[N, out] · W[out, in]  ==  matmul(W' = Wᵀ [in, out], X' = dY) */
        float *WT = scratch;
        transpose(W, out, in, WT, nt);
        mrw_mat m;
        mrw_mat_init(&m, MRW_DT_F32, in, out, WT);
        mrw_matmul(k, &m, dY, out, dX, in, N, dx_acc);
    }
}

/* ------------------------------------------------------------------------------------------ LayerNorm */

void mrw_tnn_layernorm(const float *x, float *y, float *mean, float *rstd, int N, int C, const float *w,
                       const float *b, float eps, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (N >= ROWS_PAR && nt > 1)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *yr = y + (size_t)n * C;
        double s = 0, ss = 0;
        for (int c = 0; c < C; c++) s += xr[c];
        const double mu = s / C;
        for (int c = 0; c < C; c++) ss += (xr[c] - mu) * (xr[c] - mu);
        const float r = (float)(1.0 / sqrt(ss / C + eps)), m = (float)mu;
        mean[n] = m, rstd[n] = r;
        for (int c = 0; c < C; c++) yr[c] = (xr[c] - m) * r * w[c] + b[c];
    }
}

void mrw_tnn_layernorm_bwd(const float *x, const float *mean, const float *rstd, const float *w, const float *dy,
                           int N, int C, float *dx, float *dw, float *db, int nt) {
    /* xhat = (x - m) r; g = dy w; dx = r (g - mean(g) - xhat mean(g xhat)) */
#pragma omp parallel for num_threads(nt) schedule(static) if (N >= ROWS_PAR && nt > 1)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *dyr = dy + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        const float m = mean[n], r = rstd[n];
        double sg = 0, sgx = 0;
        for (int c = 0; c < C; c++) {
            const double g = (double)dyr[c] * w[c], xh = (xr[c] - m) * r;
            sg += g, sgx += g * xh;
        }
        const float mg = (float)(sg / C), mgx = (float)(sgx / C);
        for (int c = 0; c < C; c++) {
            const float xh = (xr[c] - m) * r;
            dxr[c] += r * (dyr[c] * w[c] - mg - xh * mgx);
        }
    }
    if (!dw && !db) return;
#pragma omp parallel for num_threads(nt) schedule(static) if (C >= 64 && nt > 1)
    for (int c = 0; c < C; c++) {
        double sw = 0, sb = 0;
        for (int n = 0; n < N; n++) {
            const float d = dy[(size_t)n * C + c];
            sw += (double)d * (x[(size_t)n * C + c] - mean[n]) * rstd[n];
            sb += d;
        }
        if (dw) dw[c] += (float)sw;
        if (db) db[c] += (float)sb;
    }
}

/* ---------------------------------------------------------------------------------------- activations */

#define SQRT_2_OVER_PI 0.7978845608028654f

void mrw_tnn_act(mrw_tnn_act_kind a, const float *x, float *y, size_t n, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (n >= 16384 && nt > 1)
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        float r;
        switch (a) {
        case MRW_TACT_RELU: r = v > 0 ? v : 0; break;
        case MRW_TACT_GELU_ERF: r = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
        case MRW_TACT_GELU_TANH: r = 0.5f * v * (1.0f + tanhf(SQRT_2_OVER_PI * (v + 0.044715f * v * v * v))); break;
        default: r = v / (1.0f + expf(-1.702f * v)); break;
        }
        y[i] = r;
    }
}

void mrw_tnn_act_bwd(mrw_tnn_act_kind a, const float *x, const float *dy, float *dx, size_t n, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (n >= 16384 && nt > 1)
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        float d;
        switch (a) {
        case MRW_TACT_RELU: d = v > 0 ? 1.0f : 0.0f; break;
        case MRW_TACT_GELU_ERF:
            d = 0.5f * (1.0f + erff(v * 0.70710678118654752f)) + v * 0.3989422804014327f * expf(-0.5f * v * v);
            break;
        case MRW_TACT_GELU_TANH: {
            const float u = SQRT_2_OVER_PI * (v + 0.044715f * v * v * v), t = tanhf(u);
            d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3 * 0.044715f * v * v);
            break;
        }
        default: {
            const float s = 1.0f / (1.0f + expf(-1.702f * v));
            d = s + 1.702f * v * s * (1.0f - s);
            break;
        }
        }
        dx[i] = dy[i] * d;
    }
}

/* --------------------------------------------------------------------------------------------- conv1d */

void mrw_tnn_im2col(const float *x, int Tin, int Cin, int K, int s, int p, int Tout, float *col, int nt) {
    const int cols = Cin * K;
#pragma omp parallel for num_threads(nt) schedule(static) if (Tout >= 64 && nt > 1)
    for (int t = 0; t < Tout; t++) {
        float *row = col + (size_t)t * cols;
        for (int ci = 0; ci < Cin; ci++)
            for (int j = 0; j < K; j++) {
                const int ti = t * s - p + j;
                row[ci * K + j] = (ti >= 0 && ti < Tin) ? x[(size_t)ti * Cin + ci] : 0.0f;
            }
    }
}

void mrw_tnn_col2im_add(const float *dcol, int Tin, int Cin, int K, int s, int p, int Tout, float *dx) {
    const int cols = Cin * K;
    for (int t = 0; t < Tout; t++) { /* serial: windows overlap */
        const float *row = dcol + (size_t)t * cols;
        for (int j = 0; j < K; j++) {
            const int ti = t * s - p + j;
            if (ti < 0 || ti >= Tin) continue;
            float *d = dx + (size_t)ti * Cin;
            for (int ci = 0; ci < Cin; ci++) d[ci] += row[ci * K + j];
        }
    }
}

/* ------------------------------------------------------------------------------------------ attention */

void mrw_tnn_attention(const float *q, const float *k, const float *v, int ld, int T, int H, int D, float scale,
                       float *P, float *o, int ldo, int nt) {
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static) if ((long)H * T >= 16 && nt > 1)
    for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++) {
            float *p = P + ((size_t)h * T + i) * T;
            const float *qi = q + (size_t)i * ld + (size_t)h * D;
            float mx = -INFINITY;
            for (int j = 0; j < T; j++) {
                const float *kj = k + (size_t)j * ld + (size_t)h * D;
                float s = 0;
                for (int d = 0; d < D; d++) s += qi[d] * kj[d];
                p[j] = s * scale;
                mx = p[j] > mx ? p[j] : mx;
            }
            double sum = 0;
            for (int j = 0; j < T; j++) sum += (p[j] = expf(p[j] - mx));
            const float inv = (float)(1.0 / sum);
            float *oi = o + (size_t)i * ldo + (size_t)h * D;
            for (int d = 0; d < D; d++) oi[d] = 0;
            for (int j = 0; j < T; j++) {
                p[j] *= inv;
                const float *vj = v + (size_t)j * ld + (size_t)h * D;
                for (int d = 0; d < D; d++) oi[d] += p[j] * vj[d];
            }
        }
}

void mrw_tnn_attention_bwd(const float *q, const float *k, const float *v, int ld, int T, int H, int D, float scale,
                           const float *P, const float *dO, int ldo, float *dq, float *dk, float *dv, float *scratch,
                           int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (H > 1 && nt > 1)
    for (int h = 0; h < H; h++) {
        float *ds = scratch + (size_t)omp_get_thread_num() * T;
        const size_t c0 = (size_t)h * D;
        for (int j = 0; j < T; j++) {
            memset(dk + (size_t)j * ld + c0, 0, (size_t)D * sizeof(float));
            memset(dv + (size_t)j * ld + c0, 0, (size_t)D * sizeof(float));
        }
        for (int i = 0; i < T; i++) {
            const float *p = P + ((size_t)h * T + i) * T, *doi = dO + (size_t)i * ldo + c0, *qi = q + (size_t)i * ld + c0;
            double dot = 0;
            for (int j = 0; j < T; j++) {
                const float *vj = v + (size_t)j * ld + c0;
                float s = 0;
                for (int d = 0; d < D; d++) s += doi[d] * vj[d];
                ds[j] = s;
                dot += (double)s * p[j];
            }
            float *dqi = dq + (size_t)i * ld + c0;
            for (int d = 0; d < D; d++) dqi[d] = 0;
            for (int j = 0; j < T; j++) {
                const float g = p[j] * (ds[j] - (float)dot) * scale;
                const float *kj = k + (size_t)j * ld + c0;
                float *dkj = dk + (size_t)j * ld + c0, *dvj = dv + (size_t)j * ld + c0;
                for (int d = 0; d < D; d++) {
                    dqi[d] += g * kj[d];
                    dkj[d] += g * qi[d];
                    dvj[d] += p[j] * doi[d];
                }
            }
        }
    }
}

/* -------------------------------------------------------------------------------- transformer block */

size_t mrw_tnn_block_act_floats(const mrw_tnn_block_dims *d) {
    const size_t N = (size_t)d->B * d->T;
    return N * (8 * (size_t)d->C + 2 * (size_t)d->I + 4) + (size_t)d->B * d->H * d->T * d->T;
}

void mrw_tnn_block_acts_take(const mrw_tnn_block_dims *d, float **p, mrw_tnn_block_acts *a) {
    const size_t N = (size_t)d->B * d->T, NC = N * d->C, NI = N * d->I;
    float *q = *p;
#define TAKE(dst, n) (a->dst = q, q += (n))
    TAKE(x, NC), TAKE(xn1, NC), TAKE(q, NC), TAKE(k, NC), TAKE(v, NC), TAKE(att, NC), TAKE(xmid, NC), TAKE(xn2, NC);
    TAKE(f, NI), TAKE(fa, NI);
    TAKE(m1, N), TAKE(r1, N), TAKE(m2, N), TAKE(r2, N);
    TAKE(P, (size_t)d->B * d->H * d->T * d->T);
#undef TAKE
    *p = q;
}

static size_t block_scratch(const mrw_tnn_block_dims *d) {
    const int N = d->B * d->T;
    const size_t a = mrw_tnn_linear_bwd_scratch(N, d->C, d->I), b = mrw_tnn_linear_bwd_scratch(N, d->I, d->C),
                 c = mrw_tnn_linear_bwd_scratch(N, d->C, d->C);
    return a > b ? (a > c ? a : c) : (b > c ? b : c);
}

size_t mrw_tnn_block_buf_floats(const mrw_tnn_block_dims *d, int nt) {
    const size_t N = (size_t)d->B * d->T;
    return N * (5 * (size_t)d->C + d->I) + block_scratch(d) + (size_t)nt * d->T;
}

void mrw_tnn_block_bufs_take(const mrw_tnn_block_dims *d, int nt, float **p, mrw_tnn_block_bufs *b) {
    const size_t N = (size_t)d->B * d->T, NC = N * d->C;
    float *q = *p;
#define TAKE(dst, n) (b->dst = q, q += (n))
    TAKE(dxn, NC), TAKE(dq, NC), TAKE(dk, NC), TAKE(dv, NC), TAKE(datt, NC), TAKE(dff, N * d->I);
    TAKE(scratch, block_scratch(d)), TAKE(ascratch, (size_t)nt * d->T);
#undef TAKE
    *p = q;
}

void mrw_tnn_block_forward(mrw_kctx *k, const mrw_tnn_block_dims *d, float *const w[MRW_TB_N],
                           mrw_tnn_block_acts *a, float *out) {
    const int B = d->B, T = d->T, C = d->C, H = d->H, I = d->I, D = C / H, N = B * T, nt = k->n_threads;
    const float scale = 1.0f / sqrtf((float)D);
    mrw_tnn_layernorm(a->x, a->xn1, a->m1, a->r1, N, C, w[MRW_TB_LN1W], w[MRW_TB_LN1B], d->eps, nt);
    mrw_tnn_linear(k, w[MRW_TB_QW], w[MRW_TB_QB], a->xn1, N, C, C, a->q);
    mrw_tnn_linear(k, w[MRW_TB_KW], w[MRW_TB_KB], a->xn1, N, C, C, a->k);
    mrw_tnn_linear(k, w[MRW_TB_VW], w[MRW_TB_VB], a->xn1, N, C, C, a->v);
    for (int b = 0; b < B; b++) {
        const size_t o = (size_t)b * T * C;
        mrw_tnn_attention(a->q + o, a->k + o, a->v + o, C, T, H, D, scale, a->P + (size_t)b * H * T * T, a->att + o, C,
                          nt);
    }
    mrw_tnn_linear(k, w[MRW_TB_OW], w[MRW_TB_OB], a->att, N, C, C, a->xmid);
    for (size_t i = 0; i < (size_t)N * C; i++) a->xmid[i] += a->x[i];
    mrw_tnn_layernorm(a->xmid, a->xn2, a->m2, a->r2, N, C, w[MRW_TB_LN2W], w[MRW_TB_LN2B], d->eps, nt);
    mrw_tnn_linear(k, w[MRW_TB_F1W], w[MRW_TB_F1B], a->xn2, N, C, I, a->f);
    mrw_tnn_act(d->act, a->f, a->fa, (size_t)N * I, nt);
    mrw_tnn_linear(k, w[MRW_TB_F2W], w[MRW_TB_F2B], a->fa, N, I, C, out);
    for (size_t i = 0; i < (size_t)N * C; i++) out[i] += a->xmid[i];
}

void mrw_tnn_block_backward(mrw_kctx *k, const mrw_tnn_block_dims *d, float *const w[MRW_TB_N],
                            float *const g[MRW_TB_N], const mrw_tnn_block_acts *a, float *dres,
                            const mrw_tnn_block_bufs *bf) {
    const int B = d->B, T = d->T, C = d->C, H = d->H, I = d->I, D = C / H, N = B * T, nt = k->n_threads;
    const float scale = 1.0f / sqrtf((float)D);
    /* MLP; dres is d out = d xmid along the residual */
    mrw_tnn_linear_bwd(k, w[MRW_TB_F2W], a->fa, dres, N, I, C, g[MRW_TB_F2W], g[MRW_TB_F2B], bf->dff, 0, bf->scratch);
    mrw_tnn_act_bwd(d->act, a->f, bf->dff, bf->dff, (size_t)N * I, nt);
    mrw_tnn_linear_bwd(k, w[MRW_TB_F1W], a->xn2, bf->dff, N, C, I, g[MRW_TB_F1W], g[MRW_TB_F1B], bf->dxn, 0,
                       bf->scratch);
    mrw_tnn_layernorm_bwd(a->xmid, a->m2, a->r2, w[MRW_TB_LN2W], bf->dxn, N, C, dres, g[MRW_TB_LN2W], g[MRW_TB_LN2B],
                          nt);
    /* attention; dres is d xmid = d x along the residual */
    mrw_tnn_linear_bwd(k, w[MRW_TB_OW], a->att, dres, N, C, C, g[MRW_TB_OW], g[MRW_TB_OB], bf->datt, 0, bf->scratch);
    for (int b = 0; b < B; b++) {
        const size_t o = (size_t)b * T * C;
        mrw_tnn_attention_bwd(a->q + o, a->k + o, a->v + o, C, T, H, D, scale, a->P + (size_t)b * H * T * T,
                              bf->datt + o, C, bf->dq + o, bf->dk + o, bf->dv + o, bf->ascratch, nt);
    }
    mrw_tnn_linear_bwd(k, w[MRW_TB_QW], a->xn1, bf->dq, N, C, C, g[MRW_TB_QW], g[MRW_TB_QB], bf->dxn, 0, bf->scratch);
    mrw_tnn_linear_bwd(k, w[MRW_TB_KW], a->xn1, bf->dk, N, C, C, g[MRW_TB_KW], w[MRW_TB_KB] ? g[MRW_TB_KB] : NULL,
                       bf->dxn, 1, bf->scratch);
    mrw_tnn_linear_bwd(k, w[MRW_TB_VW], a->xn1, bf->dv, N, C, C, g[MRW_TB_VW], g[MRW_TB_VB], bf->dxn, 1, bf->scratch);
    mrw_tnn_layernorm_bwd(a->x, a->m1, a->r1, w[MRW_TB_LN1W], bf->dxn, N, C, dres, g[MRW_TB_LN1W], g[MRW_TB_LN1B], nt);
}
