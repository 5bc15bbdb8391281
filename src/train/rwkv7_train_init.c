/* RWKV-7 training parameters: the reference trainer's initialisation and a copy from a loaded inference
 * model. Both address tensors by name only, through the parameter table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "models/rwkv7.h"
#include "tensor/dtype.h"
#include "train/rwkv7_train.h"

/* ------------------------------------------------------------------------------------------------ RNG */

typedef struct {
    uint64_t s;
    int have;
    double spare;
} rng;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(rng *r) { return ((splitmix(&r->s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static double gauss(rng *r) { /* Box-Muller */
    if (r->have) {
        r->have = 0;
        return r->spare;
    }
    const double u = uniform01(r), v = uniform01(r), rad = sqrt(-2.0 * log(u)), th = 6.283185307179586 * v;
    r->spare = rad * sin(th), r->have = 1;
    return rad * cos(th);
}

/* W [rows, cols] = gain × a random matrix with orthonormal rows (rows <= cols) or columns (rows > cols), as
 * torch.nn.init.orthogonal_ makes (QR of a Gaussian matrix, signs fixed by R's positive diagonal). Computed in
 * double as CholeskyQR2 on the min(rows, cols) Gaussian vectors Q (as rows): G = Q Qᵀ = L Lᵀ, Q <- L⁻¹ Q, twice
 * (the second pass removes the first one's rounding). Both steps go over Q in column chunks that stay in cache,
 * so even the head [65536, 768] takes a few passes over memory. Returns -1 when out of memory. */
#define OCH 128
static int orthogonal(float *W, int rows, int cols, float gain, rng *r) {
    const int nv = rows < cols ? rows : cols, len = rows < cols ? cols : rows;
    double *Q = malloc((size_t)nv * len * sizeof *Q), *G = malloc((size_t)nv * nv * sizeof *G);
    if (!Q || !G) {
        free(Q), free(G);
        return -1;
    }
    for (size_t i = 0; i < (size_t)nv * len; i++) Q[i] = gauss(r);
    const int big = (double)nv * nv * len > 4e6;
    for (int pass = 0; pass < 2; pass++) {
        memset(G, 0, (size_t)nv * nv * sizeof *G);
        for (int i0 = 0; i0 < len; i0 += OCH) {
            const int n = len - i0 < OCH ? len - i0 : OCH;
#pragma omp parallel for schedule(dynamic, 8) if (big)
            for (int a = 0; a < nv; a++) {
                const double *qa = Q + (size_t)a * len + i0;
                for (int b = 0; b <= a; b++) {
                    const double *qb = Q + (size_t)b * len + i0;
                    double d = 0;
#pragma omp simd reduction(+ : d)
                    for (int i = 0; i < n; i++) d += qa[i] * qb[i];
                    G[(size_t)a * nv + b] += d;
                }
            }
        }
        /* Cholesky, lower triangle in place */
        for (int a = 0; a < nv; a++) {
            for (int b = 0; b <= a; b++) {
                double s = G[(size_t)a * nv + b];
                for (int c = 0; c < b; c++) s -= G[(size_t)a * nv + c] * G[(size_t)b * nv + c];
                if (a == b) {
                    if (!(s > 0)) s = 1e-300; /* cannot happen for Gaussian vectors with nv <= len */
                    G[(size_t)a * nv + a] = sqrt(s);
                } else {
                    G[(size_t)a * nv + b] = s / G[(size_t)b * nv + b];
                }
            }
        }
        /* Q <- L⁻¹ Q, chunk by chunk (forward substitution over the rows) */
#pragma omp parallel for schedule(static) if (big)
        for (int i0 = 0; i0 < len; i0 += OCH) {
            const int n = len - i0 < OCH ? len - i0 : OCH;
            for (int a = 0; a < nv; a++) {
                double *qa = Q + (size_t)a * len + i0;
                for (int b = 0; b < a; b++) {
                    const double l = G[(size_t)a * nv + b], *qb = Q + (size_t)b * len + i0;
                    for (int i = 0; i < n; i++) qa[i] -= l * qb[i];
                }
                const double inv = 1.0 / G[(size_t)a * nv + a];
                for (int i = 0; i < n; i++) qa[i] *= inv;
            }
        }
    }
    for (int k = 0; k < nv; k++)
        for (int i = 0; i < len; i++) {
            const float v = (float)(Q[(size_t)k * len + i] * gain);
            if (rows <= cols) W[(size_t)k * cols + i] = v;
            else W[(size_t)i * cols + k] = v;
        }
    free(Q), free(G);
    return 0;
}

/* ----------------------------------------------------------------------------------------------- init */

static float *pw(mrw_param_set *ps, const char *fmt, int layer) {
    char name[MRW_PARAM_NAME_MAX], key[96];
    snprintf(key, sizeof key, fmt, layer);
    snprintf(name, sizeof name, "llm.%s", key);
    int i = mrw_param_find(ps, name);
    return i < 0 ? NULL : mrw_param_w(ps, i);
}

/* Follows BlinkDL/RWKV-LM, RWKV-v7/train_temp/src/model.py: RWKV_Tmix_x070.__init__ and RWKV_CMix_x070.__init__
 * for the small tensors (token-shift ratios, w0/a0/v0 zigzag and linear profiles, k_k 0.71 - 0.1·linear, k_a
 * 1.02, r_k -0.04, zero w1/a1/v1/g1, orthogonal ×0.1 w2/a2/v2/g2) and RWKV.generate_init_weight for the rest
 * (ln_x.weight ((1+layer)/L)^0.7, emb uniform ±1e-4, head orthogonal ×0.5·sqrt(V/C) (×0.5 if V <= C),
 * att.output and ffn.value zero, att.key orthogonal ×0.1, other matrices orthogonal ×1; norms weight 1,
 * bias 0). The random streams differ from PyTorch's; the distributions are the same. */
void mrw_rwkv7_train_init(mrw_rwkv7_train *m, uint64_t seed) {
    mrw_param_set *ps = mrw_rwkv7_train_params(m);
    const mrw_rwkv7_train_config *c = mrw_rwkv7_train_cfg(m);
    const int C = c->n_embd, N = c->head_size, L = c->n_layer, V = c->vocab, F = c->ffn;
    memset(ps->w, 0, ps->total * sizeof(float));
    rng r = {.s = seed ^ 0x5eed5eed12345678ull};
    for (int i = 0; i < ps->n; i++) { /* every LayerNorm / GroupNorm weight starts at 1, biases at 0 */
        const char *n = ps->p[i].name;
        size_t ln = strlen(n);
        if (ln > 7 && !strcmp(n + ln - 7, ".weight") && ps->p[i].ndim == 1)
            for (size_t j = 0; j < ps->p[i].n; j++) mrw_param_w(ps, i)[j] = 1.0f;
    }
    float *emb = pw(ps, "emb.weight", 0);
    for (size_t i = 0; i < (size_t)V * C; i++) emb[i] = (float)((uniform01(&r) * 2 - 1) * 1e-4);
    for (int l = 0; l < L; l++) {
        const double r01 = L > 1 ? (double)l / (L - 1) : 0.0, r10 = 1.0 - (double)l / L;
        float *xr = pw(ps, "blocks.%d.att.x_r", l), *xw = pw(ps, "blocks.%d.att.x_w", l);
        float *xk = pw(ps, "blocks.%d.att.x_k", l), *xv = pw(ps, "blocks.%d.att.x_v", l);
        float *xa = pw(ps, "blocks.%d.att.x_a", l), *xg = pw(ps, "blocks.%d.att.x_g", l);
        float *fxk = pw(ps, "blocks.%d.ffn.x_k", l);
        float *w0 = pw(ps, "blocks.%d.att.w0", l), *a0 = pw(ps, "blocks.%d.att.a0", l);
        float *v0 = pw(ps, "blocks.%d.att.v0", l), *kk = pw(ps, "blocks.%d.att.k_k", l);
        float *ka = pw(ps, "blocks.%d.att.k_a", l), *rk = pw(ps, "blocks.%d.att.r_k", l);
        float *lnx = pw(ps, "blocks.%d.att.ln_x.weight", l);
        for (int i = 0; i < C; i++) {
            const double ddd = (double)i / C;
            xr[i] = (float)(1.0 - pow(ddd, 0.2 * r10));
            xw[i] = (float)(1.0 - pow(ddd, 0.9 * r10));
            xk[i] = (float)(1.0 - pow(ddd, 0.7 * r10));
            xv[i] = (float)(1.0 - pow(ddd, 0.7 * r10));
            xa[i] = (float)(1.0 - pow(ddd, 0.9 * r10));
            xg[i] = (float)(1.0 - pow(ddd, 0.2 * r10));
            fxk[i] = (float)(1.0 - pow(ddd, pow(r10, 4)));
            const double lin = C > 1 ? (double)i / (C - 1) - 0.5 : -0.5;
            double zz = N > 1 ? ((i % N) - (N - 1) / 2.0) / ((N - 1) / 2.0) : 0.0;
            zz *= fabs(zz);
            const double www = -6.0 + 6.0 * pow(C > 1 ? (double)i / (C - 1) : 0.0, 1.0 + pow(r01, 0.3));
            w0[i] = (float)(www + 0.5 + zz * 2.5);
            a0[i] = (float)(-0.19 + zz * 0.3 + lin * 0.4);
            if (v0) v0[i] = (float)(0.73 - lin * 0.4);
            kk[i] = (float)(0.71 - lin * 0.1);
            ka[i] = 1.02f;
            rk[i] = -0.04f;
            lnx[i] = (float)pow((1.0 + l) / L, 0.7);
        }
        /* LoRA up-projections [D, C]: ortho_init(x, 0.1), gain sqrt(D/C) only if D > C */
        const char *ups[4] = {"blocks.%d.att.w2", "blocks.%d.att.a2", "blocks.%d.att.v2", "blocks.%d.att.g2"};
        const int dims[4] = {c->d_w, c->d_a, c->d_v, c->d_g};
        for (int q = 0; q < 4; q++) {
            float *w = pw(ps, ups[q], l);
            if (!w) continue;
            const double gain = dims[q] > C ? sqrt((double)dims[q] / C) : 1.0;
            orthogonal(w, dims[q], C, (float)(0.1 * gain), &r);
        }
        orthogonal(pw(ps, "blocks.%d.att.receptance.weight", l), C, C, 1.0f, &r);
        orthogonal(pw(ps, "blocks.%d.att.key.weight", l), C, C, 0.1f, &r);
        orthogonal(pw(ps, "blocks.%d.att.value.weight", l), C, C, 1.0f, &r);
        orthogonal(pw(ps, "blocks.%d.ffn.key.weight", l), F, C, 1.0f, &r);
        /* att.output, ffn.value, w1/a1/v1/g1 stay zero */
    }
    const double hs = V > C ? 0.5 * sqrt((double)V / C) : 0.5;
    orthogonal(pw(ps, "head.weight", 0), V, C, (float)hs, &r);
}

/* ------------------------------------------------------------------------------------- from a model */

void mrw_rwkv7_train_config_of(const mrw_model *src, mrw_rwkv7_train_config *cfg) {
    const mrw_model_info *in = &src->info;
    memset(cfg, 0, sizeof *cfg);
    cfg->n_layer = in->n_layer, cfg->n_embd = in->n_embd, cfg->head_size = in->head_size;
    cfg->vocab = in->n_vocab, cfg->ffn = in->n_ffn;
    cfg->d_w = in->lora_w, cfg->d_a = in->lora_a, cfg->d_v = in->lora_v, cfg->d_g = in->lora_g;
}

typedef struct {
    mrw_param_set *ps;
    mrw_error *err;
    float *row;
} copier;

static mrw_status target(copier *cp, const char *key, int layer, int *idx) {
    char name[MRW_PARAM_NAME_MAX], k[96];
    snprintf(k, sizeof k, key, layer);
    snprintf(name, sizeof name, "llm.%s", k);
    *idx = mrw_param_find(cp->ps, name);
    if (*idx < 0) return mrw_err(cp->err, MRW_E_INTERNAL, "no training parameter %s", name);
    return MRW_OK;
}

static mrw_status copy_vec(copier *cp, const char *key, int layer, const float *src) {
    int i;
    mrw_status s = target(cp, key, layer, &i);
    if (s) return s;
    if (!src) return mrw_err(cp->err, MRW_E_MISSING, "the model has no tensor for %s", cp->ps->p[i].name);
    memcpy(mrw_param_w(cp->ps, i), src, cp->ps->p[i].n * sizeof(float));
    return MRW_OK;
}

/* A matrix in Linear layout [rows, cols]; `transposed`: the parameter is its transpose (LoRAs). */
static mrw_status copy_mat(copier *cp, const char *key, int layer, const mrw_mat *src, int transposed) {
    int i;
    mrw_status s = target(cp, key, layer, &i);
    if (s) return s;
    const mrw_param *p = &cp->ps->p[i];
    const int64_t pr = p->shape[0], pc = p->shape[1];
    const int64_t want_r = transposed ? pc : pr, want_c = transposed ? pr : pc;
    if (!src->data || src->rows != want_r || src->cols != want_c)
        return mrw_err(cp->err, MRW_E_SHAPE, "%s: the model's matrix is [%d, %d] (Linear layout), training expects "
                       "[%lld, %lld]", p->name, src->rows, src->cols, (long long)want_r, (long long)want_c);
    float *w = mrw_param_w(cp->ps, i);
    for (int r = 0; r < src->rows; r++) {
        float *dst = transposed ? cp->row : w + (size_t)r * src->cols;
        mrw_mat_row_f32(src, r, dst);
        if (transposed)
            for (int c = 0; c < src->cols; c++) w[(size_t)c * src->rows + r] = dst[c];
    }
    return MRW_OK;
}

mrw_status mrw_rwkv7_train_from_model(mrw_rwkv7_train *m, const mrw_model *src, mrw_error *err) {
    const mrw_rwkv7_train_config *c = mrw_rwkv7_train_cfg(m);
    mrw_rwkv7_train_config sc;
    mrw_rwkv7_train_config_of(src, &sc);
    if (sc.n_layer != c->n_layer || sc.n_embd != c->n_embd || sc.head_size != c->head_size)
        return mrw_err(err, MRW_E_SHAPE, "the model has %d layers of n_embd %d (head size %d), the training config "
                       "%d of %d (%d)", sc.n_layer, sc.n_embd, sc.head_size, c->n_layer, c->n_embd, c->head_size);
    const int wmax = c->ffn > c->n_embd ? c->ffn : c->n_embd;
    copier cp = {.ps = mrw_rwkv7_train_params(m), .err = err, .row = malloc((size_t)(wmax > c->vocab ? wmax : c->vocab) * sizeof(float))};
    if (!cp.row) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    mrw_status s = MRW_OK;
#define TRY(x) do { if ((s = (x)) != MRW_OK) goto done; } while (0)
    TRY(copy_mat(&cp, "emb.weight", 0, &src->emb, 0));
    TRY(copy_vec(&cp, "blocks.%d.ln0.weight", 0, src->ln0_w));
    TRY(copy_vec(&cp, "blocks.%d.ln0.bias", 0, src->ln0_b));
    for (int l = 0; l < c->n_layer; l++) {
        const rwkv7_layer *y = &src->layers[l];
        TRY(copy_vec(&cp, "blocks.%d.ln1.weight", l, y->ln1_w));
        TRY(copy_vec(&cp, "blocks.%d.ln1.bias", l, y->ln1_b));
        TRY(copy_vec(&cp, "blocks.%d.ln2.weight", l, y->ln2_w));
        TRY(copy_vec(&cp, "blocks.%d.ln2.bias", l, y->ln2_b));
        TRY(copy_vec(&cp, "blocks.%d.att.x_r", l, y->x_r));
        TRY(copy_vec(&cp, "blocks.%d.att.x_w", l, y->x_w));
        TRY(copy_vec(&cp, "blocks.%d.att.x_k", l, y->x_k));
        TRY(copy_vec(&cp, "blocks.%d.att.x_v", l, y->x_v));
        TRY(copy_vec(&cp, "blocks.%d.att.x_a", l, y->x_a));
        TRY(copy_vec(&cp, "blocks.%d.att.x_g", l, y->x_g));
        TRY(copy_vec(&cp, "blocks.%d.att.w0", l, y->w0));
        TRY(copy_mat(&cp, "blocks.%d.att.w1", l, &y->w1, 1));
        TRY(copy_mat(&cp, "blocks.%d.att.w2", l, &y->w2, 1));
        TRY(copy_vec(&cp, "blocks.%d.att.a0", l, y->a0));
        TRY(copy_mat(&cp, "blocks.%d.att.a1", l, &y->a1, 1));
        TRY(copy_mat(&cp, "blocks.%d.att.a2", l, &y->a2, 1));
        if (l > 0) { /* layer 0's v0/v1/v2 are never used: they keep their current values */
            TRY(copy_vec(&cp, "blocks.%d.att.v0", l, y->v0));
            TRY(copy_mat(&cp, "blocks.%d.att.v1", l, &y->v1, 1));
            TRY(copy_mat(&cp, "blocks.%d.att.v2", l, &y->v2, 1));
        }
        TRY(copy_mat(&cp, "blocks.%d.att.g1", l, &y->g1, 1));
        TRY(copy_mat(&cp, "blocks.%d.att.g2", l, &y->g2, 1));
        TRY(copy_vec(&cp, "blocks.%d.att.k_k", l, y->k_k));
        TRY(copy_vec(&cp, "blocks.%d.att.k_a", l, y->k_a));
        TRY(copy_vec(&cp, "blocks.%d.att.r_k", l, y->r_k));
        TRY(copy_mat(&cp, "blocks.%d.att.receptance.weight", l, &y->Wr, 0));
        TRY(copy_mat(&cp, "blocks.%d.att.key.weight", l, &y->Wk, 0));
        TRY(copy_mat(&cp, "blocks.%d.att.value.weight", l, &y->Wv, 0));
        TRY(copy_mat(&cp, "blocks.%d.att.output.weight", l, &y->Wo, 0));
        TRY(copy_vec(&cp, "blocks.%d.att.ln_x.weight", l, y->lnx_w));
        TRY(copy_vec(&cp, "blocks.%d.att.ln_x.bias", l, y->lnx_b));
        TRY(copy_vec(&cp, "blocks.%d.ffn.x_k", l, y->ffn_x_k));
        TRY(copy_mat(&cp, "blocks.%d.ffn.key.weight", l, &y->ffn_key, 0));
        TRY(copy_mat(&cp, "blocks.%d.ffn.value.weight", l, &y->ffn_value, 0));
    }
    TRY(copy_vec(&cp, "ln_out.weight", 0, src->lnout_w));
    TRY(copy_vec(&cp, "ln_out.bias", 0, src->lnout_b));
    TRY(copy_mat(&cp, "head.weight", 0, &src->head, 0));
#undef TRY
done:
    free(cp.row);
    return s;
}
