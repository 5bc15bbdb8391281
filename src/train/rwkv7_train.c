/* RWKV-7 training: parameters, the batch forward that keeps the activations the backward needs, the loss,
 * and the explicit backward (llm.c style: one function per layer and direction, no autograd). The math is
 * ../shared/reference/rwkv7.md (step numbers in comments are its "One token in RNN mode" steps); the PyTorch
 * autograd of tests/reference/make_rwkv7_grad_fixtures.py is the reference the gradients are tested against.
 *
 * Layout: a batch is B sequences of T tokens, all starting from the zero state; activations are [B*T, width]
 * row-major (row b*T + t). Every projection is a GEMM over the B*T rows through mrw_sgemm_t
 * (kernels/cpu/gemm_train.c, fp32 FMA): the three forms a backward needs (X·Wᵀ, X·W, Aᵀ·B) are one kernel
 * whose packing reads either layout of each operand in place, so nothing is transposed into scratch.
 *
 * Memory (floats; BT = max_B*max_T): per layer 17·BT·C + BT·(F + Dw + Da + Dv + Dg) + 3·BT·H + 4·BT
 * + max_B·H·ceil(max_T/16)·N² (WKV checkpoints); once: 3·BT·C (embedding rows, final residual, ln_out) and
 * BT·V (logits, turned into their gradient by the backward); scratch ~29·BT·C + 2·BT·F + 2·BT·D.
 * For L6 C256 F1024 V65536 at 4×256 that is about 0.4 GiB, most of it the logits. */
#include "train/rwkv7_train.h"
#include "train/rwkv7_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/cpu/gemm_train.h"
#include "kernels/cpu/vmath.h"

#define LN_EPS 1e-5f
#define GN_EPS 64e-5f
#define L2_FLOOR 1e-12f
#define DECAY_SCALE 0.60653065971263342f /* e^{-1/2} */

typedef mrw_rwkv7_lidx lidx; /* the parameter table is train/rwkv7_layout.c's */

/* What the forward keeps per layer. */
typedef struct {
    float *x_in, *mu1, *rs1, *xa;           /* residual in, LN1 stats and output */
    float *r, *kraw, *kk, *kn, *k;          /* r, W_k xk, κ̂, ‖κ‖ per head, k after step 9 */
    float *vraw, *v;                        /* W_v xv, v after step 7 */
    float *wsig, *decay, *alpha, *g, *vgate; /* σ(ω), decay, α, gate, value-residual gate */
    float *lw, *la, *lg, *lv;               /* LoRA hidden rows: tanh(xw w1), xa w1, σ(xg g1), xv v1 */
    float *y, *gmu, *grs, *o;               /* WKV output, GroupNorm stats, o before the gate */
    float *xm, *mu2, *rs2, *xf, *hk;        /* residual after time mix, LN2 stats and output, W_fk u */
    float *ckpt;                            /* WKV states every 16 steps */
} lact;

enum {
    S_XR, S_XW, S_XK, S_XV, S_XA, S_XG, /* the six mixes (recomputed in the backward) */
    S_T1, S_T2, S_WA, S_WB,             /* temporaries; WKV a = -κ̂, b = κ̂α */
    S_DX, S_DXA, S_DZ, S_DG, S_DY, S_DR, S_DW, S_DK, S_DV, S_DA, S_DB, S_DR2, S_DK2, S_DV2, S_DVF, S_DAL,
    S_DKR, S_DXM, S_T3,
    N_SC
};

struct mrw_rwkv7_train {
    mrw_rwkv7_train_config cfg;
    int max_B, max_T, nt, H, Dmax;
    mrw_kctx kc;
    mrw_param_set ps;
    int i_emb, i_ln0w, i_ln0b, i_lnow, i_lnob, i_head;
    lidx *L;
    lact *A;
    float *act;
    float *x_emb, *mu0, *rs0, *x_fin, *muo, *rso, *xo, *logits, *lse;
    int32_t *tokens, *targets;
    uint8_t *mask;
    float *sc[N_SC];
    float *sF1, *sF2, *sL1, *sL2, *wkv_scr;
    int B, T, valid; /* valid: 1 = a cross-entropy forward awaits its backward, 2 = a hidden-state forward */
    int no_logits;   /* MRW_RWKV7_TRAIN_NO_LOGITS: no logits buffer, hidden-state entry only */
    int par; /* this batch is large enough for the row loops to fork (a fork costs more than a tiny loop) */
    int64_t n_targets;
};

/* ------------------------------------------------------------------------------------------ parameters */

static int layout(mrw_rwkv7_train *m) {
    mrw_rwkv7_gidx gi;
    const int rc = mrw_rwkv7_param_layout(&m->ps, &m->cfg, &gi, m->L);
    m->i_emb = gi.emb;
    m->i_ln0w = gi.ln0w;
    m->i_ln0b = gi.ln0b;
    m->i_lnow = gi.lnow;
    m->i_lnob = gi.lnob;
    m->i_head = gi.head;
    return rc;
}

#define PW(i) mrw_param_w(&m->ps, (i))
#define PG(i) mrw_param_g(&m->ps, (i))

/* ----------------------------------------------------------------------------------------- allocation */

typedef struct {
    float *base;
    size_t off;
} arena;

static float *take(arena *a, size_t n) {
    float *p = a->base ? a->base + a->off : NULL;
    a->off += (n + 15) & ~(size_t)15;
    return p;
}

static void carve(mrw_rwkv7_train *m, arena *a) {
    const mrw_rwkv7_train_config *c = &m->cfg;
    const size_t BT = (size_t)m->max_B * m->max_T, C = c->n_embd, H = m->H, N = c->head_size;
    const size_t nck = (size_t)(m->max_T + MRW_WKV_CKPT - 1) / MRW_WKV_CKPT;
    m->x_emb = take(a, BT * C);
    m->mu0 = take(a, BT);
    m->rs0 = take(a, BT);
    for (int l = 0; l < c->n_layer; l++) {
        lact *x = &m->A[l];
        x->x_in = take(a, BT * C), x->mu1 = take(a, BT), x->rs1 = take(a, BT), x->xa = take(a, BT * C);
        x->r = take(a, BT * C), x->kraw = take(a, BT * C), x->kk = take(a, BT * C), x->kn = take(a, BT * H);
        x->k = take(a, BT * C), x->vraw = take(a, BT * C), x->v = take(a, BT * C);
        x->wsig = take(a, BT * C), x->decay = take(a, BT * C), x->alpha = take(a, BT * C), x->g = take(a, BT * C);
        x->vgate = take(a, BT * C);
        x->lw = take(a, BT * c->d_w), x->la = take(a, BT * c->d_a), x->lg = take(a, BT * c->d_g);
        x->lv = take(a, BT * (c->d_v > 0 ? c->d_v : 1));
        x->y = take(a, BT * C), x->gmu = take(a, BT * H), x->grs = take(a, BT * H), x->o = take(a, BT * C);
        x->xm = take(a, BT * C), x->mu2 = take(a, BT), x->rs2 = take(a, BT), x->xf = take(a, BT * C);
        x->hk = take(a, BT * c->ffn);
        x->ckpt = take(a, (size_t)m->max_B * H * nck * N * N);
    }
    m->x_fin = take(a, BT * C), m->muo = take(a, BT), m->rso = take(a, BT), m->xo = take(a, BT * C);
    m->logits = take(a, m->no_logits ? 0 : BT * c->vocab), m->lse = take(a, BT);
    for (int i = 0; i < N_SC; i++) m->sc[i] = take(a, BT * C);
    m->sF1 = take(a, BT * c->ffn), m->sF2 = take(a, BT * c->ffn);
    m->sL1 = take(a, BT * m->Dmax), m->sL2 = take(a, BT * m->Dmax);
    m->wkv_scr = take(a, (size_t)m->nt * mrw_wkv7_train_scratch((int)N));
}

mrw_status mrw_rwkv7_train_new(const mrw_rwkv7_train_config *cfg, int max_B, int max_T, int n_threads,
                               mrw_rwkv7_train **out, mrw_error *err) {
    return mrw_rwkv7_train_new_ex(cfg, max_B, max_T, n_threads, 0, out, err);
}

mrw_status mrw_rwkv7_train_new_ex(const mrw_rwkv7_train_config *cfg, int max_B, int max_T, int n_threads,
                                  unsigned flags, mrw_rwkv7_train **out, mrw_error *err) {
    *out = NULL;
    const mrw_rwkv7_train_config *c = cfg;
    if (c->n_layer < 1 || c->n_embd < 1 || c->head_size < 1 || c->n_embd % c->head_size || c->vocab < 1 ||
        c->ffn < 1 || c->d_w < 1 || c->d_a < 1 || c->d_g < 1 || (c->n_layer > 1 && c->d_v < 1) || c->d_v < 0 ||
        c->n_embd > (1 << 16) || c->ffn > (1 << 18) || c->vocab > (1 << 24) || c->n_layer > 4096)
        return mrw_err(err, MRW_E_ARG, "invalid RWKV-7 training config: %d layers, n_embd %d, head size %d, ffn %d, "
                       "vocab %d, LoRA ranks %d/%d/%d/%d", c->n_layer, c->n_embd, c->head_size, c->ffn, c->vocab,
                       c->d_w, c->d_a, c->d_v, c->d_g);
    if (max_B < 1 || max_T < 1 || (double)max_B * max_T > (1 << 24))
        return mrw_err(err, MRW_E_ARG, "invalid batch shape %d x %d", max_B, max_T);
    mrw_rwkv7_train *m = calloc(1, sizeof *m);
    if (!m) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    m->cfg = *cfg;
    m->max_B = max_B, m->max_T = max_T;
    m->no_logits = (flags & MRW_RWKV7_TRAIN_NO_LOGITS) != 0;
    m->H = c->n_embd / c->head_size;
    m->Dmax = c->d_w > c->d_a ? c->d_w : c->d_a;
    if (c->d_g > m->Dmax) m->Dmax = c->d_g;
    if (c->d_v > m->Dmax) m->Dmax = c->d_v;
    mrw_kctx_init(&m->kc, n_threads);
    m->nt = m->kc.n_threads;
    m->L = calloc((size_t)c->n_layer, sizeof *m->L);
    m->A = calloc((size_t)c->n_layer, sizeof *m->A);
    const size_t BT = (size_t)max_B * max_T;
    m->tokens = malloc(BT * sizeof *m->tokens);
    m->targets = malloc(BT * sizeof *m->targets);
    m->mask = malloc(BT);
    if (!m->L || !m->A || !m->tokens || !m->targets || !m->mask) {
        mrw_rwkv7_train_free(m);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    if (layout(m)) {
        mrw_rwkv7_train_free(m);
        return mrw_err(err, MRW_E_NOMEM, "cannot lay out the RWKV-7 parameters");
    }
    mrw_status s = mrw_param_set_alloc(&m->ps, err);
    if (s) {
        mrw_rwkv7_train_free(m);
        return s;
    }
    arena a = {0};
    carve(m, &a);
    m->act = aligned_alloc(64, (a.off * sizeof(float) + 63) & ~(size_t)63);
    if (!m->act) {
        double gib = a.off * 4.0 / (1 << 30);
        mrw_rwkv7_train_free(m);
        return mrw_err(err, MRW_E_NOMEM, "cannot allocate %.2f GiB of activations for batches of %d x %d", gib,
                       max_B, max_T);
    }
    a.base = m->act, a.off = 0;
    carve(m, &a);
    *out = m;
    return MRW_OK;
}

void mrw_rwkv7_train_free(mrw_rwkv7_train *m) {
    if (!m) return;
    mrw_param_set_free(&m->ps);
    mrw_kctx_free(&m->kc);
    free(m->L), free(m->A), free(m->act), free(m->tokens), free(m->targets), free(m->mask);
    free(m);
}

mrw_param_set *mrw_rwkv7_train_params(mrw_rwkv7_train *m) { return &m->ps; }
const mrw_rwkv7_train_config *mrw_rwkv7_train_cfg(const mrw_rwkv7_train *m) { return &m->cfg; }
int64_t mrw_rwkv7_train_n_targets(const mrw_rwkv7_train *m) { return m->n_targets; }

/* --------------------------------------------------------------------------------------- GEMM helpers */

/* Y[M, N] (+)= X[M, K] · W[N, K]ᵀ (W row-major [N, K]). (The inference GEMM of kernels/cpu/gemm.c packs the
 * weight panels with scalar transposes, which costs ~5% of a step for the V x C head.) */
static void mm_nt(mrw_rwkv7_train *m, float *Y, int ldy, const float *X, int ldx, const float *W, int N, int K,
                  int M, int acc) {
    mrw_sgemm_t(&m->kc, M, N, K, X, ldx, 0, W, K, 0, Y, ldy, acc);
}

/* Y[M, N] (+)= X[M, K] · W[K, N] (W row-major [K, N]): the packing reads W's columns directly. */
static void mm_nn(mrw_rwkv7_train *m, float *Y, int ldy, const float *X, int ldx, const float *W, int K, int N,
                  int M, int acc) {
    mrw_sgemm_t(&m->kc, M, N, K, X, ldx, 0, W, N, 1, Y, ldy, acc);
}

/* G[N2, K2] += A[M, N2]ᵀ · Bm[M, K2]: the weight-gradient form, both operands read in place. */
static void mm_tn(mrw_rwkv7_train *m, float *G, const float *A, int lda, int N2, const float *Bm, int ldb, int K2,
                  int M) {
    mrw_sgemm_t(&m->kc, N2, K2, M, A, lda, 1, Bm, ldb, 1, G, K2, 1);
}

/* ------------------------------------------------------------------------------------ row-wise pieces */

static void ln_fwd(const mrw_rwkv7_train *m, const float *x, float *y, float *mu, float *rs, int rows, int C,
                   const float *w, const float *b) {
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * C;
        float *yr = y + (size_t)r * C;
        float s = 0;
        for (int i = 0; i < C; i++) s += xr[i];
        const float mean = s / C;
        float v = 0;
        for (int i = 0; i < C; i++) v += (xr[i] - mean) * (xr[i] - mean);
        const float rstd = 1.0f / sqrtf(v / C + LN_EPS);
        mu[r] = mean, rs[r] = rstd;
        for (int i = 0; i < C; i++) yr[i] = (xr[i] - mean) * rstd * w[i] + b[i];
    }
}

/* g[c] += sum over rows of x[r][c]. */
static void colsum_acc(const mrw_rwkv7_train *m, float *g, const float *x, int rows, int C) {
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int c0 = 0; c0 < C; c0 += 16) {
        const int c1 = c0 + 16 < C ? c0 + 16 : C;
        double acc[16] = {0};
        for (int r = 0; r < rows; r++) {
            const float *xr = x + (size_t)r * C;
            for (int c = c0; c < c1; c++) acc[c - c0] += xr[c];
        }
        for (int c = c0; c < c1; c++) g[c] += (float)acc[c - c0];
    }
}

/* dx += LN backward of dy; gw, gb (NULL when frozen) += the affine gradients. */
static void ln_bwd(const mrw_rwkv7_train *m, const float *dy, const float *x, const float *mu, const float *rs,
                   const float *w, int rows, int C, float *dx, float *gw, float *gb) {
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * C, *dr = dy + (size_t)r * C;
        float *o = dx + (size_t)r * C;
        const float mean = mu[r], rstd = rs[r];
        float m1 = 0, m2 = 0;
        for (int i = 0; i < C; i++) {
            const float xh = (xr[i] - mean) * rstd, d = dr[i] * w[i];
            m1 += d, m2 += d * xh;
        }
        m1 /= C, m2 /= C;
        for (int i = 0; i < C; i++) {
            const float xh = (xr[i] - mean) * rstd;
            o[i] += rstd * (dr[i] * w[i] - m1 - xh * m2);
        }
    }
    if (!gw) return;
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int c0 = 0; c0 < C; c0 += 16) {
        const int c1 = c0 + 16 < C ? c0 + 16 : C;
        double aw[16] = {0}, ab[16] = {0};
        for (int r = 0; r < rows; r++) {
            const float *xr = x + (size_t)r * C, *dr = dy + (size_t)r * C;
            for (int c = c0; c < c1; c++) {
                aw[c - c0] += dr[c] * ((xr[c] - mu[r]) * rs[r]);
                ab[c - c0] += dr[c];
            }
        }
        for (int c = c0; c < c1; c++) gw[c] += (float)aw[c - c0], gb[c] += (float)ab[c - c0];
    }
}

/* The scan does ~5 N² flops per head and token: fork only when there is enough of it. */
static int wkv_threads(const mrw_rwkv7_train *m) {
    return (double)m->B * m->T * m->cfg.n_embd * m->cfg.head_size >= 4e6 ? m->nt : 1;
}

static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* --------------------------------------------------------------------------------------------- forward */

/* Steps 1-2: the six mixes of LN1's output against the previous row of the same sequence (zero at t = 0). */
static void mixes(mrw_rwkv7_train *m, const lidx *P, const float *xa, int T, int BT) {
    const int C = m->cfg.n_embd;
    const float *mx[6] = {PW(P->xr), PW(P->xw), PW(P->xk), PW(P->xv), PW(P->xa), PW(P->xg)};
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int r = 0; r < BT; r++) {
        const float *cur = xa + (size_t)r * C, *prev = r % T ? cur - C : NULL;
        for (int q = 0; q < 6; q++) {
            float *o = m->sc[S_XR + q] + (size_t)r * C;
            const float *mq = mx[q];
            for (int i = 0; i < C; i++) o[i] = cur[i] + ((prev ? prev[i] : 0.0f) - cur[i]) * mq[i];
        }
    }
}

static void layer_fwd(mrw_rwkv7_train *m, int l, float *out) {
    const mrw_rwkv7_train_config *c = &m->cfg;
    const int C = c->n_embd, H = m->H, N = c->head_size, F = c->ffn, B = m->B, T = m->T, BT = B * T;
    const lidx *P = &m->L[l];
    lact *A = &m->A[l];
    float **s = m->sc;
    ln_fwd(m, A->x_in, A->xa, A->mu1, A->rs1, BT, C, PW(P->ln1w), PW(P->ln1b));
    mixes(m, P, A->xa, T, BT);
    /* step 3 */
    mm_nt(m, A->r, C, s[S_XR], C, PW(P->Wr), C, C, BT, 0);
    mm_nt(m, A->kraw, C, s[S_XK], C, PW(P->Wk), C, C, BT, 0);
    mm_nt(m, A->vraw, C, s[S_XV], C, PW(P->Wv), C, C, BT, 0);
    /* steps 4-7: LoRA down-projections (row-vector products with [in, out] matrices), then up */
    mm_nn(m, A->lw, c->d_w, s[S_XW], C, PW(P->w1), C, c->d_w, BT, 0);
    mm_nn(m, A->la, c->d_a, s[S_XA], C, PW(P->a1), C, c->d_a, BT, 0);
    mm_nn(m, A->lg, c->d_g, s[S_XG], C, PW(P->g1), C, c->d_g, BT, 0);
    const long nw = (long)BT * c->d_w, ng = (long)BT * c->d_g;
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (long i = 0; i < nw; i++) A->lw[i] = tanhf(A->lw[i]);
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (long i = 0; i < ng; i++) A->lg[i] = sigm(A->lg[i]);
    mm_nn(m, s[S_T1], C, A->lw, c->d_w, PW(P->w2), c->d_w, C, BT, 0);
    mm_nn(m, s[S_T2], C, A->la, c->d_a, PW(P->a2), c->d_a, C, BT, 0);
    mm_nn(m, A->g, C, A->lg, c->d_g, PW(P->g2), c->d_g, C, BT, 0);
    const int vres = l > 0;
    if (vres) {
        mm_nn(m, A->lv, c->d_v, s[S_XV], C, PW(P->v1), C, c->d_v, BT, 0);
        mm_nn(m, s[S_T3], C, A->lv, c->d_v, PW(P->v2), c->d_v, C, BT, 0);
    }
    const float *w0 = PW(P->w0), *a0 = PW(P->a0), *v0 = vres ? PW(P->v0) : NULL, *kkp = PW(P->kk), *kap = PW(P->ka);
    const float *vfirst = m->A[0].v;
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int r = 0; r < BT; r++) {
        const size_t o = (size_t)r * C;
        for (int i = 0; i < C; i++) {
            const float ws = sigm(w0[i] + s[S_T1][o + i]);
            A->wsig[o + i] = ws;
            A->decay[o + i] = expf(-DECAY_SCALE * ws); /* step 4 */
            A->alpha[o + i] = sigm(a0[i] + s[S_T2][o + i]); /* step 5 */
            if (vres) {                                      /* step 7 */
                const float gt = sigm(v0[i] + s[S_T3][o + i]);
                A->vgate[o + i] = gt;
                A->v[o + i] = A->vraw[o + i] + (vfirst[o + i] - A->vraw[o + i]) * gt;
            } else {
                A->v[o + i] = A->vraw[o + i];
            }
        }
        /* step 8: κ̂ from k before step 9, per head, floor 1e-12 on the norm */
        for (int h = 0; h < H; h++) {
            float ss = 0;
            for (int j = 0; j < N; j++) {
                const int i = h * N + j;
                const float kv = A->kraw[o + i] * kkp[i];
                A->kk[o + i] = kv;
                ss += kv * kv;
            }
            const float nrm = sqrtf(ss);
            A->kn[(size_t)r * H + h] = nrm;
            const float inv = 1.0f / fmaxf(nrm, L2_FLOOR);
            for (int j = 0; j < N; j++) A->kk[o + h * N + j] *= inv;
        }
        for (int i = 0; i < C; i++) {
            const float al = A->alpha[o + i], kh = A->kk[o + i];
            A->k[o + i] = A->kraw[o + i] * (1.0f + (al - 1.0f) * kap[i]); /* step 9 */
            s[S_WA][o + i] = -kh;
            s[S_WB][o + i] = kh * al;
        }
    }
    /* step 10 */
    mrw_wkv7_train_fwd(B, T, H, N, A->r, A->decay, A->k, A->v, s[S_WA], s[S_WB], A->y, A->ckpt, wkv_threads(m));
    /* steps 11-13: GroupNorm, bonus, gate (z = o⊙g into S_T1), output projection */
    const float *lw = PW(P->lnxw), *lb = PW(P->lnxb), *rk = PW(P->rk);
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int r = 0; r < BT; r++) {
        for (int h = 0; h < H; h++) {
            const size_t o = (size_t)r * C + (size_t)h * N;
            const float *y = A->y + o;
            float mean = 0, var = 0;
            for (int j = 0; j < N; j++) mean += y[j];
            mean /= N;
            for (int j = 0; j < N; j++) var += (y[j] - mean) * (y[j] - mean);
            const float rstd = 1.0f / sqrtf(var / N + GN_EPS);
            A->gmu[(size_t)r * H + h] = mean, A->grs[(size_t)r * H + h] = rstd;
            float beta = 0;
            for (int j = 0; j < N; j++) beta += A->r[o + j] * A->k[o + j] * rk[h * N + j];
            for (int j = 0; j < N; j++) {
                const int i = h * N + j;
                const float ov = (y[j] - mean) * rstd * lw[i] + lb[i] + beta * A->v[o + j];
                A->o[o + j] = ov;
                s[S_T1][o + j] = ov * A->g[o + j];
            }
        }
    }
    memcpy(A->xm, A->x_in, (size_t)BT * C * sizeof(float));
    mm_nt(m, A->xm, C, s[S_T1], C, PW(P->Wo), C, C, BT, 1);
    /* step 14: channel mix */
    ln_fwd(m, A->xm, A->xf, A->mu2, A->rs2, BT, C, PW(P->ln2w), PW(P->ln2b));
    const float *fx = PW(P->fxk);
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int r = 0; r < BT; r++) {
        const float *cur = A->xf + (size_t)r * C, *prev = r % T ? cur - C : NULL;
        float *u = s[S_T2] + (size_t)r * C;
        for (int i = 0; i < C; i++) u[i] = cur[i] + ((prev ? prev[i] : 0.0f) - cur[i]) * fx[i];
    }
    mm_nt(m, A->hk, F, s[S_T2], C, PW(P->Wfk), F, C, BT, 0);
    const size_t nF = (size_t)BT * F;
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (size_t i = 0; i < nF; i++) {
        const float h = A->hk[i] > 0 ? A->hk[i] : 0;
        m->sF1[i] = h * h;
    }
    memcpy(out, A->xm, (size_t)BT * C * sizeof(float));
    mm_nt(m, out, C, m->sF1, F, PW(P->Wfv), C, F, BT, 1);
}

/* Σ exp(x[v] - mx) over a row (vectorised exp, sum in double). */
static double row_expsum(const float *x, int n, float mx) {
    double se = 0;
    int v = 0;
#ifdef MRW_VMATH_AVX512
    const __m512 m = _mm512_set1_ps(mx);
    for (; v + 16 <= n; v += 16) se += _mm512_reduce_add_ps(mrw_v_exp(_mm512_sub_ps(_mm512_loadu_ps(x + v), m)));
#endif
    for (; v < n; v++) se += expf(x[v] - mx);
    return se;
}

/* x[v] = exp(x[v] - lse) * sc in place (softmax times a scale). */
static void row_softmax_scaled(float *x, int n, float lse, float sc) {
    int v = 0;
#ifdef MRW_VMATH_AVX512
    const __m512 l = _mm512_set1_ps(lse), s = _mm512_set1_ps(sc);
    for (; v + 16 <= n; v += 16)
        _mm512_storeu_ps(x + v, _mm512_mul_ps(mrw_v_exp(_mm512_sub_ps(_mm512_loadu_ps(x + v), l)), s));
#endif
    for (; v < n; v++) x[v] = expf(x[v] - lse) * sc;
}

/* The forward up to ln_out (m->xo); targets NULL = none counted. Returns -1 on invalid input. */
static int forward_hidden(mrw_rwkv7_train *m, const int32_t *tokens, const float *inject, const uint8_t *inject_mask,
                          const int32_t *targets, int B, int T) {
    const mrw_rwkv7_train_config *c = &m->cfg;
    const int C = c->n_embd, V = c->vocab;
    m->valid = 0;
    m->n_targets = 0;
    if (B < 1 || T < 1 || B > m->max_B || T > m->max_T || !tokens) return -1;
    const int BT = B * T;
    for (int r = 0; r < BT; r++) {
        const int injected = inject && inject_mask && inject_mask[r];
        const int32_t tg = targets ? targets[r] : MRW_IGNORE;
        if (!injected && (tokens[r] < 0 || tokens[r] >= V)) return -1;
        if (tg != MRW_IGNORE && (tg < 0 || tg >= V)) return -1;
        m->tokens[r] = tokens[r];
        m->targets[r] = tg;
        m->mask[r] = (uint8_t)injected;
    }
    m->B = B, m->T = T;
    m->par = m->nt > 1 && (long)BT * C >= 32768;
    const float *emb = PW(m->i_emb);
    for (int r = 0; r < BT; r++)
        memcpy(m->x_emb + (size_t)r * C, m->mask[r] ? inject + (size_t)r * C : emb + (size_t)m->tokens[r] * C,
               (size_t)C * sizeof(float));
    /* step 0 */
    ln_fwd(m, m->x_emb, m->A[0].x_in, m->mu0, m->rs0, BT, C, PW(m->i_ln0w), PW(m->i_ln0b));
    for (int l = 0; l < c->n_layer; l++) layer_fwd(m, l, l + 1 < c->n_layer ? m->A[l + 1].x_in : m->x_fin);
    ln_fwd(m, m->x_fin, m->xo, m->muo, m->rso, BT, C, PW(m->i_lnow), PW(m->i_lnob));
    return 0;
}

float mrw_rwkv7_train_forward(mrw_rwkv7_train *m, const int32_t *tokens, const float *inject,
                              const uint8_t *inject_mask, const int32_t *targets, int B, int T, float *logits_out) {
    const mrw_rwkv7_train_config *c = &m->cfg;
    const int C = c->n_embd, V = c->vocab;
    m->valid = 0;
    m->n_targets = 0;
    if (m->no_logits || !targets || forward_hidden(m, tokens, inject, inject_mask, targets, B, T)) return NAN;
    const int BT = B * T;
    mm_nt(m, m->logits, V, m->xo, C, PW(m->i_head), V, C, BT, 0);
    double loss = 0;
    int64_t n = 0;
#pragma omp parallel for num_threads(m->nt) schedule(static) reduction(+ : loss, n) if (m->par)
    for (int r = 0; r < BT; r++) {
        const float *lg = m->logits + (size_t)r * V;
        float mx = lg[0];
        for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
        const double lse = mx + log(row_expsum(lg, V, mx));
        m->lse[r] = (float)lse;
        if (m->targets[r] != MRW_IGNORE) {
            loss += lse - lg[m->targets[r]];
            n++;
        }
    }
    if (logits_out) memcpy(logits_out, m->logits, (size_t)BT * V * sizeof(float));
    m->n_targets = n;
    m->valid = 1;
    return n ? (float)(loss / (double)n) : 0.0f;
}

mrw_status mrw_rwkv7_train_forward_hidden(mrw_rwkv7_train *m, const int32_t *tokens, const float *inject,
                                          const uint8_t *inject_mask, int B, int T, float *hidden, mrw_error *err) {
    if (forward_hidden(m, tokens, inject, inject_mask, NULL, B, T))
        return mrw_err(err, MRW_E_ARG, "RWKV-7 hidden-state forward: batch %d x %d beyond %d x %d, or a token "
                       "outside the vocabulary (%d) at a row that is not injected", B, T, m->max_B, m->max_T,
                       m->cfg.vocab);
    if (hidden) memcpy(hidden, m->xo, (size_t)B * T * m->cfg.n_embd * sizeof(float));
    m->valid = 2;
    return MRW_OK;
}

const float *mrw_rwkv7_train_last_hidden(const mrw_rwkv7_train *m) { return m->xo; }

/* -------------------------------------------------------------------------------------------- backward */

/* dx holds dL/d(layer output) on entry and dL/d(layer input) on return. pg: accumulate parameter grads. */
static void layer_bwd(mrw_rwkv7_train *m, int l, int pg) {
    const mrw_rwkv7_train_config *c = &m->cfg;
    const int C = c->n_embd, H = m->H, N = c->head_size, F = c->ffn, B = m->B, T = m->T, BT = B * T;
    const lidx *P = &m->L[l];
    const lact *A = &m->A[l];
    float **s = m->sc;
    float *dx = s[S_DX];
    const size_t nC = (size_t)BT * C, nF = (size_t)BT * F;

    /* ---- channel mix: out = xm + relu(W_fk u)² W_fvᵀ, u = xf + (prev - xf)⊙x_k */
    const float *fx = PW(P->fxk);
    float *u = s[S_T2], *act = m->sF1, *dact = m->sF2;
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int r = 0; r < BT; r++) {
        const float *cur = A->xf + (size_t)r * C, *prev = r % T ? cur - C : NULL;
        float *ur = u + (size_t)r * C;
        for (int i = 0; i < C; i++) ur[i] = cur[i] + ((prev ? prev[i] : 0.0f) - cur[i]) * fx[i];
    }
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (size_t i = 0; i < nF; i++) {
        const float h = A->hk[i] > 0 ? A->hk[i] : 0;
        act[i] = h * h;
    }
    if (pg) mm_tn(m, PG(P->Wfv), dx, C, C, act, F, F, BT);
    mm_nn(m, dact, F, dx, C, PW(P->Wfv), C, F, BT, 0);
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (size_t i = 0; i < nF; i++) dact[i] *= A->hk[i] > 0 ? 2.0f * A->hk[i] : 0.0f;
    if (pg) mm_tn(m, PG(P->Wfk), dact, F, F, u, C, C, BT);
    float *du = s[S_T1], *dxf = s[S_DXA], *tmp = s[S_T3];
    mm_nn(m, du, C, dact, F, PW(P->Wfk), F, C, BT, 0);
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int r = 0; r < BT; r++) {
        const size_t o = (size_t)r * C;
        const int has_next = (r + 1) % T != 0, has_prev = r % T != 0;
        for (int i = 0; i < C; i++) {
            dxf[o + i] = du[o + i] * (1.0f - fx[i]) + (has_next ? du[o + C + i] * fx[i] : 0.0f);
            tmp[o + i] = du[o + i] * ((has_prev ? A->xf[o - C + i] : 0.0f) - A->xf[o + i]);
        }
    }
    if (pg) colsum_acc(m, PG(P->fxk), tmp, BT, C);
    ln_bwd(m, dxf, A->xm, A->mu2, A->rs2, PW(P->ln2w), BT, C, dx, pg ? PG(P->ln2w) : NULL, pg ? PG(P->ln2b) : NULL);

    /* ---- time mix output: xm = x_in + (o⊙g) W_oᵀ */
    float *z = s[S_T1], *dz = s[S_DZ], *dg = s[S_DG];
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (size_t i = 0; i < nC; i++) z[i] = A->o[i] * A->g[i];
    if (pg) mm_tn(m, PG(P->Wo), dx, C, C, z, C, C, BT);
    mm_nn(m, dz, C, dx, C, PW(P->Wo), C, C, BT, 0);
    /* gate, bonus, GroupNorm (steps 11-13) */
    float *dy = s[S_DY], *dr2 = s[S_DR2], *dk2 = s[S_DK2], *dv2 = s[S_DV2], *t_rk = s[S_T2];
    const float *lw = PW(P->lnxw), *rk = PW(P->rk);
    float *t_yh = s[S_DXM];
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int r = 0; r < BT; r++) {
        for (int h = 0; h < H; h++) {
            const size_t o = (size_t)r * C + (size_t)h * N;
            const float mean = A->gmu[(size_t)r * H + h], rstd = A->grs[(size_t)r * H + h];
            float dbeta = 0, beta = 0, m1 = 0, m2 = 0;
            for (int j = 0; j < N; j++) {
                const float dzj = dz[o + j];
                dg[o + j] = dzj * A->o[o + j];
                const float dov = dzj * A->g[o + j]; /* dL/do */
                dz[o + j] = dov;
                dbeta += dov * A->v[o + j];
                beta += A->r[o + j] * A->k[o + j] * rk[h * N + j];
                const float yh = (A->y[o + j] - mean) * rstd, d = dov * lw[h * N + j];
                m1 += d, m2 += d * yh;
                t_yh[o + j] = dov * yh;
            }
            m1 /= N, m2 /= N;
            for (int j = 0; j < N; j++) {
                const int i = h * N + j;
                const float dov = dz[o + j], yh = (A->y[o + j] - mean) * rstd;
                dy[o + j] = rstd * (dov * lw[i] - m1 - yh * m2);
                dv2[o + j] = dov * beta;
                dr2[o + j] = dbeta * rk[i] * A->k[o + j];
                dk2[o + j] = dbeta * rk[i] * A->r[o + j];
                t_rk[o + j] = dbeta * A->r[o + j] * A->k[o + j];
            }
        }
    }
    if (pg) {
        colsum_acc(m, PG(P->rk), t_rk, BT, C);
        colsum_acc(m, PG(P->lnxw), t_yh, BT, C);
        colsum_acc(m, PG(P->lnxb), dz, BT, C);
    }
    /* ---- step 10: WKV backward */
    float *wa = s[S_WA], *wb = s[S_WB];
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (size_t i = 0; i < nC; i++) {
        wa[i] = -A->kk[i];
        wb[i] = A->kk[i] * A->alpha[i];
    }
    float *dr = s[S_DR], *dw = s[S_DW], *dk = s[S_DK], *dv = s[S_DV], *da = s[S_DA], *db = s[S_DB];
    mrw_wkv7_train_bwd(B, T, H, N, A->r, A->decay, A->k, A->v, wa, wb, A->ckpt, dy, dr, dw, dk, dv, da, db,
                       m->wkv_scr, wkv_threads(m));
    /* ---- steps 8-9, 7, 5, 4 element-wise; results: dr, dkraw, dvraw, d(pre-activations) */
    float *dal = s[S_DAL], *dkraw = s[S_DKR], *dvf = s[S_DVF];
    float *t_ka = s[S_T1], *t_kk = s[S_T2], *dwpre = s[S_DW], *dvgate = s[S_DA];
    const float *kap = PW(P->ka), *kkp = PW(P->kk);
    const int vres = l > 0;
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int r = 0; r < BT; r++) {
        const size_t o = (size_t)r * C;
        for (int i = 0; i < C; i++) {
            dr[o + i] += dr2[o + i];
            dk[o + i] += dk2[o + i];
            dv[o + i] += dv2[o + i];
        }
        for (int h = 0; h < H; h++) {
            /* a = -κ̂, b = κ̂⊙α */
            float dot = 0;
            for (int j = 0; j < N; j++) {
                const size_t q = o + (size_t)h * N + j;
                const float dkh = -da[q] + db[q] * A->alpha[q];
                dal[q] = db[q] * A->kk[q];
                da[q] = dkh; /* da now holds dκ̂ */
                dot += dkh * A->kk[q];
            }
            const float nrm = A->kn[(size_t)r * H + h];
            for (int j = 0; j < N; j++) {
                const size_t q = o + (size_t)h * N + j;
                const int i = h * N + j;
                /* κ̂ = κ / max(‖κ‖, floor): dκ = (dκ̂ - κ̂ (κ̂·dκ̂)) / ‖κ‖ above the floor, dκ̂ / floor below */
                const float dkap = nrm > L2_FLOOR ? (da[q] - A->kk[q] * dot) / nrm : da[q] / L2_FLOOR;
                /* k = kraw (1 + (α - 1) k_a) */
                const float al = A->alpha[q], kr = A->kraw[q];
                dkraw[q] = dk[q] * (1.0f + (al - 1.0f) * kap[i]) + dkap * kkp[i];
                dal[q] += dk[q] * kr * kap[i];
                t_ka[q] = dk[q] * kr * (al - 1.0f);
                t_kk[q] = dkap * kr;
            }
        }
        for (int i = 0; i < C; i++) {
            const size_t q = o + i;
            /* step 5: α = σ(a0 + la a2) -> dal becomes d(pre-activation) */
            dal[q] *= A->alpha[q] * (1.0f - A->alpha[q]);
            /* step 4: decay = exp(-e^{-1/2} σ(ω)) */
            const float ws = A->wsig[q];
            dwpre[q] = dw[q] * A->decay[q] * (-DECAY_SCALE) * ws * (1.0f - ws);
            /* step 7 */
            if (vres) {
                const float gt = A->vgate[q], vr = A->vraw[q];
                dvf[q] += dv[q] * gt;
                dvgate[q] = dv[q] * (m->A[0].v[q] - vr) * gt * (1.0f - gt);
                dv[q] *= 1.0f - gt;
            } else {
                dv[q] += dvf[q]; /* layer 0: v_first = v */
            }
        }
    }
    if (pg) {
        colsum_acc(m, PG(P->ka), t_ka, BT, C);
        colsum_acc(m, PG(P->kk), t_kk, BT, C);
        colsum_acc(m, PG(P->a0), dal, BT, C);
        colsum_acc(m, PG(P->w0), dwpre, BT, C);
        if (vres) colsum_acc(m, PG(P->v0), dvgate, BT, C);
    }
    /* ---- recompute the mixes, then every projection's input gradient into dxm_q (q = r w k v a g) */
    mixes(m, P, A->xa, T, BT);
    float *dxa = s[S_DXA], *dmix = s[S_DXM];
    memset(dxa, 0, nC * sizeof(float));
    float *L1 = m->sL1;
    const float *mx[6] = {PW(P->xr), PW(P->xw), PW(P->xk), PW(P->xv), PW(P->xa), PW(P->xg)};
    float *gm[6] = {PG(P->xr), PG(P->xw), PG(P->xk), PG(P->xv), PG(P->xa), PG(P->xg)};
    for (int q = 0; q < 6; q++) {
        const float *X = s[S_XR + q];
        switch (q) {
        case 0: /* r */
            if (pg) mm_tn(m, PG(P->Wr), dr, C, C, X, C, C, BT);
            mm_nn(m, dmix, C, dr, C, PW(P->Wr), C, C, BT, 0);
            break;
        case 1: /* w: ω = w0 + tanh(xw w1) w2 */
            if (pg) mm_tn(m, PG(P->w2), A->lw, c->d_w, c->d_w, dwpre, C, C, BT);
            mm_nt(m, L1, c->d_w, dwpre, C, PW(P->w2), c->d_w, C, BT, 0);
            for (size_t i = 0; i < (size_t)BT * c->d_w; i++) L1[i] *= 1.0f - A->lw[i] * A->lw[i];
            if (pg) mm_tn(m, PG(P->w1), X, C, C, L1, c->d_w, c->d_w, BT);
            mm_nt(m, dmix, C, L1, c->d_w, PW(P->w1), C, c->d_w, BT, 0);
            break;
        case 2: /* k */
            if (pg) mm_tn(m, PG(P->Wk), dkraw, C, C, X, C, C, BT);
            mm_nn(m, dmix, C, dkraw, C, PW(P->Wk), C, C, BT, 0);
            break;
        case 3: /* v, and the value-residual LoRA */
            if (pg) mm_tn(m, PG(P->Wv), dv, C, C, X, C, C, BT);
            mm_nn(m, dmix, C, dv, C, PW(P->Wv), C, C, BT, 0);
            if (vres) {
                if (pg) mm_tn(m, PG(P->v2), A->lv, c->d_v, c->d_v, dvgate, C, C, BT);
                mm_nt(m, L1, c->d_v, dvgate, C, PW(P->v2), c->d_v, C, BT, 0);
                if (pg) mm_tn(m, PG(P->v1), X, C, C, L1, c->d_v, c->d_v, BT);
                mm_nt(m, dmix, C, L1, c->d_v, PW(P->v1), C, c->d_v, BT, 1);
            }
            break;
        case 4: /* a: α = σ(a0 + (xa a1) a2) */
            if (pg) mm_tn(m, PG(P->a2), A->la, c->d_a, c->d_a, dal, C, C, BT);
            mm_nt(m, L1, c->d_a, dal, C, PW(P->a2), c->d_a, C, BT, 0);
            if (pg) mm_tn(m, PG(P->a1), X, C, C, L1, c->d_a, c->d_a, BT);
            mm_nt(m, dmix, C, L1, c->d_a, PW(P->a1), C, c->d_a, BT, 0);
            break;
        case 5: /* g = σ(xg g1) g2 */
            if (pg) mm_tn(m, PG(P->g2), A->lg, c->d_g, c->d_g, dg, C, C, BT);
            mm_nt(m, L1, c->d_g, dg, C, PW(P->g2), c->d_g, C, BT, 0);
            for (size_t i = 0; i < (size_t)BT * c->d_g; i++) L1[i] *= A->lg[i] * (1.0f - A->lg[i]);
            if (pg) mm_tn(m, PG(P->g1), X, C, C, L1, c->d_g, c->d_g, BT);
            mm_nt(m, dmix, C, L1, c->d_g, PW(P->g1), C, c->d_g, BT, 0);
            break;
        }
        /* x_q = xa + (prev - xa) x_q: into dxa (this row and the previous one) and the mix gradient */
        const float *mq = mx[q];
        float *tq = s[S_T1];
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
        for (int r = 0; r < BT; r++) {
            const size_t o = (size_t)r * C;
            const int has_next = (r + 1) % T != 0, has_prev = r % T != 0;
            for (int i = 0; i < C; i++) {
                dxa[o + i] += dmix[o + i] * (1.0f - mq[i]) + (has_next ? dmix[o + C + i] * mq[i] : 0.0f);
                tq[o + i] = dmix[o + i] * ((has_prev ? A->xa[o - C + i] : 0.0f) - A->xa[o + i]);
            }
        }
        if (pg) colsum_acc(m, gm[q], tq, BT, C);
    }
    ln_bwd(m, dxa, A->x_in, A->mu1, A->rs1, PW(P->ln1w), BT, C, dx, pg ? PG(P->ln1w) : NULL,
           pg ? PG(P->ln1b) : NULL);
}

static void backward_from_dxo(mrw_rwkv7_train *m, int pg, float *d_inject);

void mrw_rwkv7_train_backward(mrw_rwkv7_train *m, float scale, int frozen, float *d_inject) {
    const mrw_rwkv7_train_config *c = &m->cfg;
    const int C = c->n_embd, V = c->vocab;
    if (m->valid != 1) return;
    const int BT = m->B * m->T, pg = !frozen;
    m->valid = 0; /* the logits become their gradient */
    if (d_inject) memset(d_inject, 0, (size_t)BT * C * sizeof(float));
    if (m->n_targets == 0 || (frozen && !d_inject)) return; /* nothing to compute */
    const float sc = scale / (float)m->n_targets;
    /* dL/dlogits = scale/n (softmax - onehot) on counted rows, 0 elsewhere */
#pragma omp parallel for num_threads(m->nt) schedule(static) if (m->par)
    for (int r = 0; r < BT; r++) {
        float *lg = m->logits + (size_t)r * V;
        if (m->targets[r] == MRW_IGNORE) {
            memset(lg, 0, (size_t)V * sizeof *lg);
            continue;
        }
        const float lse = m->lse[r];
        row_softmax_scaled(lg, V, lse, sc);
        lg[m->targets[r]] -= sc;
    }
    float *dxo = m->sc[S_DXA];
    if (pg) mm_tn(m, PG(m->i_head), m->logits, V, V, m->xo, C, C, BT);
    mm_nn(m, dxo, C, m->logits, V, PW(m->i_head), V, C, BT, 0);
    backward_from_dxo(m, pg, d_inject);
}

/* The backward below ln_out: sc[S_DXA] holds dL/d(ln_out output) rows on entry. */
static void backward_from_dxo(mrw_rwkv7_train *m, int pg, float *d_inject) {
    const mrw_rwkv7_train_config *c = &m->cfg;
    const int C = c->n_embd, BT = m->B * m->T;
    float *dx = m->sc[S_DX], *dxo = m->sc[S_DXA];
    memset(dx, 0, (size_t)BT * C * sizeof(float));
    ln_bwd(m, dxo, m->x_fin, m->muo, m->rso, PW(m->i_lnow), BT, C, dx, pg ? PG(m->i_lnow) : NULL,
           pg ? PG(m->i_lnob) : NULL);
    memset(m->sc[S_DVF], 0, (size_t)BT * C * sizeof(float));
    for (int l = c->n_layer - 1; l >= 0; l--) layer_bwd(m, l, pg);
    /* ln0 and the embedding rows */
    float *de = m->sc[S_DXA];
    memset(de, 0, (size_t)BT * C * sizeof(float));
    ln_bwd(m, dx, m->x_emb, m->mu0, m->rs0, PW(m->i_ln0w), BT, C, de, pg ? PG(m->i_ln0w) : NULL,
           pg ? PG(m->i_ln0b) : NULL);
    float *gemb = PG(m->i_emb);
    for (int r = 0; r < BT; r++) {
        const float *d = de + (size_t)r * C;
        if (m->mask[r]) {
            if (d_inject) memcpy(d_inject + (size_t)r * C, d, (size_t)C * sizeof(float));
        } else if (pg) {
            float *g = gemb + (size_t)m->tokens[r] * C;
            for (int i = 0; i < C; i++) g[i] += d[i];
        }
    }
}

mrw_status mrw_rwkv7_train_backward_hidden(mrw_rwkv7_train *m, const float *d_hidden, int frozen, float *d_inject,
                                           mrw_error *err) {
    if (m->valid != 2)
        return mrw_err(err, MRW_E_ARG, "RWKV-7 hidden-state backward without a hidden-state forward");
    m->valid = 0;
    const int BT = m->B * m->T, C = m->cfg.n_embd;
    if (d_inject) memset(d_inject, 0, (size_t)BT * C * sizeof(float));
    if (frozen && !d_inject) return MRW_OK;
    memcpy(m->sc[S_DXA], d_hidden, (size_t)BT * C * sizeof(float));
    backward_from_dxo(m, !frozen, d_inject);
    return MRW_OK;
}
