/* Trainable adapters and Conv1D compression (adapter_train.h). Per batch:
 *   x [B,T,E] -> [compress: Conv1d(E->E, k, s) per sample] -> xc [B,Tc,E]
 *             -> [conv: v1 audio Conv1d(E->2C,3,2,p2)+bias | v2 Conv1d(E->E,3,2) no bias] -> xv [B,To,Cv]
 *             -> Linear(Cv->H) -> h1 -> ReLU -> a1 -> Linear(H->C) -> h2 -> [out = h2 + LN(h2)]
 * The convolutions are im2col + GEMM (train_nn.c); the im2col rows are recomputed in the backward. */
#include "train/adapter_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "formats/tensorfile.h"
#include "kernels/cpu/kctx.h"
#include "tensor/dtype.h"
#include "train/train_nn.h"

#define LN_EPS 1e-5f
#define V1_PREFIX "modality.world_encoder.adapter."

struct mrw_tadapter {
    mrw_tadapter_config cfg;
    int max_B, max_T;
    int H, Cv;           /* hidden width; width entering the first Linear */
    int conv_k, conv_s, conv_p, conv_out, conv_bias; /* adapter conv (conv_k 0 = none) */
    int has_ln;
    mrw_param_set ps;
    int i_cw, i_cb, i_aw, i_ab, i_l1w, i_l1b, i_l2w, i_l2b, i_lnw, i_lnb; /* -1 = absent */
    mrw_kctx k;
    /* activations of the last forward */
    int B, T, Tc, To;
    float *x, *xc, *xv, *h1, *a1, *h2, *mean, *rstd;
    /* backward buffers */
    float *dh2, *da1, *dxv, *dxc, *col, *dcol, *scratch;
};

static int tc_len(const mrw_tadapter_config *c, int T) {
    if (!c->compress_k) return T >= 1 ? T : -1;
    if (T < c->compress_k) return -1;
    return (T - c->compress_k) / c->compress_s + 1;
}

static int conv_len(const mrw_tadapter *a, int T) {
    if (!a->conv_k || T < 1) return T >= 1 ? T : -1;
    const int span = T + 2 * a->conv_p - a->conv_k;
    return span < 0 ? -1 : span / a->conv_s + 1;
}

int mrw_tadapter_out_len(const mrw_tadapter *a, int T) {
    const int Tc = tc_len(&a->cfg, T);
    return Tc < 1 ? -1 : conv_len(a, Tc);
}

mrw_param_set *mrw_tadapter_params(mrw_tadapter *a) { return &a->ps; }

void mrw_tadapter_free(mrw_tadapter *a) {
    if (!a) return;
    mrw_param_set_free(&a->ps);
    mrw_kctx_free(&a->k);
    float **bufs[] = {&a->x, &a->xc, &a->xv, &a->h1, &a->a1, &a->h2, &a->mean, &a->rstd,
                      &a->dh2, &a->da1, &a->dxv, &a->dxc, &a->col, &a->dcol, &a->scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(*bufs[i]);
    free(a);
}

static int add(mrw_tadapter *a, const char *name, int no_decay, int ndim, int64_t d0, int64_t d1, int64_t d2) {
    const int64_t shape[3] = {d0, d1, d2};
    return mrw_param_add(&a->ps, name, MRW_PG_ADAPTER, no_decay, ndim, shape);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

mrw_status mrw_tadapter_new(const mrw_tadapter_config *cfg, int max_B, int max_T, int n_threads, mrw_tadapter **out,
                            mrw_error *err) {
    *out = NULL;
    const mrw_tadapter_config *c = cfg;
    if (c->kind < MRW_TADAPTER_V1_VISION || c->kind > MRW_TADAPTER_V2)
        return mrw_err(err, MRW_E_ARG, "unknown adapter kind %d", (int)c->kind);
    if (c->E < 1 || c->C < 1 || c->hidden < 0 || max_B < 1 || max_T < 1 || c->E > (1 << 16) || c->C > (1 << 16) ||
        c->hidden > (1 << 18))
        return mrw_err(err, MRW_E_ARG, "bad adapter sizes E %d C %d hidden %d batch %d x %d", c->E, c->C, c->hidden,
                       max_B, max_T);
    if (c->compress_k < 0 || (c->compress_k && (c->compress_s < 1 || c->compress_k > 64)))
        return mrw_err(err, MRW_E_ARG, "compression needs a kernel 1..64 and a stride >= 1 (got %d, %d)",
                       c->compress_k, c->compress_s);
    mrw_tadapter *a = calloc(1, sizeof *a);
    if (!a) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    a->cfg = *c;
    if (c->kind != MRW_TADAPTER_V2) a->cfg.hidden = 0, a->cfg.v2_conv = 0;
    a->max_B = max_B, a->max_T = max_T;
    const int E = c->E, C = c->C;
    a->i_cw = a->i_cb = a->i_aw = a->i_ab = a->i_lnw = a->i_lnb = -1;
    const char *l1 = "proj.proj.0.", *l2 = "proj.proj.2.";
    switch (c->kind) {
    case MRW_TADAPTER_V1_VISION:
        a->H = 2 * C, a->Cv = E, a->has_ln = 1;
        break;
    case MRW_TADAPTER_V1_AUDIO:
        a->H = 2 * C, a->Cv = 2 * C;
        a->conv_k = 3, a->conv_s = 2, a->conv_p = 2, a->conv_out = 2 * C, a->conv_bias = 1;
        break;
    default:
        a->H = c->hidden ? c->hidden : 4 * C, a->Cv = E, a->has_ln = 1;
        if (c->v2_conv) a->conv_k = 3, a->conv_s = 2, a->conv_p = 0, a->conv_out = E, a->conv_bias = 0;
        l1 = "proj.mlp.0.", l2 = "proj.mlp.2.";
        break;
    }
    char name[MRW_PARAM_NAME_MAX];
    int bad = 0;
    if (c->compress_k) {
        bad |= (a->i_cw = add(a, "compress.weight", 0, 3, E, E, c->compress_k)) < 0;
        bad |= (a->i_cb = add(a, "compress.bias", 1, 1, E, 0, 0)) < 0;
    }
    if (a->conv_k) {
        bad |= (a->i_aw = add(a, "proj.conv.weight", 0, 3, a->conv_out, E, a->conv_k)) < 0;
        if (a->conv_bias) bad |= (a->i_ab = add(a, "proj.conv.bias", 1, 1, a->conv_out, 0, 0)) < 0;
    }
    snprintf(name, sizeof name, "%sweight", l1), bad |= (a->i_l1w = add(a, name, 0, 2, a->H, a->Cv, 0)) < 0;
    snprintf(name, sizeof name, "%sbias", l1), bad |= (a->i_l1b = add(a, name, 1, 1, a->H, 0, 0)) < 0;
    snprintf(name, sizeof name, "%sweight", l2), bad |= (a->i_l2w = add(a, name, 0, 2, C, a->H, 0)) < 0;
    snprintf(name, sizeof name, "%sbias", l2), bad |= (a->i_l2b = add(a, name, 1, 1, C, 0, 0)) < 0;
    if (a->has_ln) {
        bad |= (a->i_lnw = add(a, "proj.pre_norm.weight", 1, 1, C, 0, 0)) < 0;
        bad |= (a->i_lnb = add(a, "proj.pre_norm.bias", 1, 1, C, 0, 0)) < 0;
    }
    mrw_status st;
    if (bad) {
        mrw_tadapter_free(a);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    if ((st = mrw_param_set_alloc(&a->ps, err))) {
        mrw_tadapter_free(a);
        return st;
    }
    mrw_kctx_init(&a->k, n_threads);
    /* activation sizes at the largest batch (lengths only shrink through the convolutions) */
    const size_t B = (size_t)max_B, T = (size_t)max_T;
    const int Tc = c->compress_k ? tc_len(c, max_T) : max_T;
    const size_t Tcs = Tc > 0 ? (size_t)Tc : 1, Tos = max_sz(Tcs, (size_t)(conv_len(a, (int)Tcs) > 0 ? conv_len(a, (int)Tcs) : 1));
    const size_t N = B * Tos, Hs = (size_t)a->H;
    size_t ncol = 1, scr = mrw_tnn_linear_bwd_scratch((int)N, a->Cv, a->H);
    scr = max_sz(scr, mrw_tnn_linear_bwd_scratch((int)N, a->H, C));
    if (c->compress_k) {
        ncol = max_sz(ncol, Tcs * E * c->compress_k);
        scr = max_sz(scr, mrw_tnn_linear_bwd_scratch((int)Tcs, E * c->compress_k, E));
    }
    if (a->conv_k) {
        ncol = max_sz(ncol, Tos * E * a->conv_k);
        scr = max_sz(scr, mrw_tnn_linear_bwd_scratch((int)Tos, E * a->conv_k, a->conv_out));
    }
    a->x = malloc(B * T * E * sizeof(float));
    a->xc = c->compress_k ? malloc(B * Tcs * E * sizeof(float)) : NULL;
    a->dxc = malloc(B * max_sz(T, Tcs) * E * sizeof(float));
    a->xv = a->conv_k ? malloc(N * a->Cv * sizeof(float)) : NULL;
    a->h1 = malloc(N * Hs * sizeof(float));
    a->a1 = malloc(N * Hs * sizeof(float));
    a->da1 = malloc(N * Hs * sizeof(float));
    a->h2 = malloc(N * C * sizeof(float));
    a->dh2 = malloc(N * C * sizeof(float));
    a->dxv = malloc(N * a->Cv * sizeof(float));
    a->mean = malloc(N * sizeof(float));
    a->rstd = malloc(N * sizeof(float));
    a->col = malloc(ncol * sizeof(float));
    a->dcol = malloc(ncol * sizeof(float));
    a->scratch = malloc(scr * sizeof(float));
    if (!a->x || (c->compress_k && !a->xc) || !a->dxc || (a->conv_k && !a->xv) || !a->h1 || !a->a1 || !a->da1 ||
        !a->h2 || !a->dh2 || !a->dxv || !a->mean || !a->rstd || !a->col || !a->dcol || !a->scratch) {
        mrw_tadapter_free(a);
        return mrw_err(err, MRW_E_NOMEM, "cannot allocate the adapter's activations for %d x %d tokens", max_B, max_T);
    }
    *out = a;
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------------------- init */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void uniform(float *w, size_t n, float bound, uint64_t *s) {
    for (size_t i = 0; i < n; i++) w[i] = (float)(((splitmix(s) >> 11) * 0x1.0p-53 * 2.0 - 1.0) * bound);
}

/* kaiming_uniform(a=√5) on the weight and U(±1/√fan_in) on the bias: both bounds are 1/√fan_in. */
static void init_layer(mrw_tadapter *a, int iw, int ib, uint64_t *s) {
    if (iw < 0) return;
    const mrw_param *p = &a->ps.p[iw];
    const size_t fan_in = p->n / (size_t)p->shape[0];
    const float bound = (float)(1.0 / sqrt((double)fan_in));
    uniform(mrw_param_w(&a->ps, iw), p->n, bound, s);
    if (ib >= 0) uniform(mrw_param_w(&a->ps, ib), a->ps.p[ib].n, bound, s);
}

void mrw_tadapter_init(mrw_tadapter *a, uint64_t seed) {
    uint64_t s = seed ^ 0x61646170746572ull; /* "adapter" */
    init_layer(a, a->i_cw, a->i_cb, &s);
    init_layer(a, a->i_aw, a->i_ab, &s);
    init_layer(a, a->i_l1w, a->i_l1b, &s);
    init_layer(a, a->i_l2w, a->i_l2b, &s);
    if (a->has_ln) {
        float *w = mrw_param_w(&a->ps, a->i_lnw), *b = mrw_param_w(&a->ps, a->i_lnb);
        for (int c = 0; c < a->cfg.C; c++) w[c] = 1, b[c] = 0;
    }
}

/* ------------------------------------------------------------------------------------------------- load */

static int is_float(mrw_dtype t) { return t == MRW_DT_F32 || t == MRW_DT_F16 || t == MRW_DT_BF16 || t == MRW_DT_F64; }

mrw_status mrw_tadapter_load(mrw_tadapter *a, const char *path, mrw_error *err) {
    mrw_tfile *f;
    mrw_status st = mrw_tfile_open(path, &f, err);
    if (st) return st;
    char prefix[128] = "";
    const mrw_meta *m = mrw_tfile_find_meta(f, "modrwkv.adapter_prefix");
    if (m && m->type == MRW_MV_STRING && m->v.s.len < 100)
        snprintf(prefix, sizeof prefix, "%.*s", (int)m->v.s.len, m->v.s.ptr);
    else if (mrw_tfile_find(f, "proj.mlp.0.weight") || mrw_tfile_find(f, "proj.proj.0.weight"))
        snprintf(prefix, sizeof prefix, "proj.");
    else if (mrw_tfile_find(f, V1_PREFIX "proj.0.weight"))
        snprintf(prefix, sizeof prefix, V1_PREFIX);
    else {
        mrw_tfile_close(f);
        return mrw_err(err, MRW_E_MISSING, "%s: no adapter tensors (expected proj.mlp.0.*, proj.proj.0.* or "
                                           V1_PREFIX "proj.0.*)", path);
    }
    const int has_compress = mrw_tfile_find(f, "compress.weight") != NULL;
    const mrw_tensor_info *src[32] = {0};
    if (a->ps.n > 32) st = mrw_err(err, MRW_E_INTERNAL, "too many adapter tensors");
    /* pass 1: every tensor present with the right shape and a float type; nothing is changed on failure */
    for (int i = 0; i < a->ps.n && !st; i++) {
        const mrw_param *p = &a->ps.p[i];
        char name[256];
        const int is_comp = !strncmp(p->name, "compress.", 9);
        if (is_comp && !has_compress) continue; /* new compression on top of a checkpoint without one: keep init */
        if (is_comp) snprintf(name, sizeof name, "%s", p->name);
        else snprintf(name, sizeof name, "%s%s", prefix, p->name + strlen("proj."));
        const mrw_tensor_info *t = mrw_tfile_find(f, name);
        if (!t) {
            st = mrw_err(err, MRW_E_MISSING, "%s: adapter tensor '%s' is missing (is the adapter kind right?)", path, name);
            break;
        }
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            st = mrw_err(err, MRW_E_SHAPE, "%s: adapter tensor '%s' has shape [%lld, ...] (%d dims), expected [%lld, %lld%s]",
                         path, name, (long long)t->shape[0], t->ndim, (long long)p->shape[0],
                         (long long)(p->ndim > 1 ? p->shape[1] : 0), p->ndim > 2 ? ", k" : "");
            break;
        }
        if (!is_float(t->dtype)) {
            st = mrw_err(err, MRW_E_UNSUPPORTED, "%s: adapter tensor '%s' is not a float tensor", path, name);
            break;
        }
        src[i] = t;
    }
    /* tensors under the adapter prefix (or compress.) that this structure does not have */
    for (int i = 0; i < mrw_tfile_count(f) && !st; i++) {
        const char *n = mrw_tfile_tensor(f, i)->name;
        char pn[256];
        if (!strncmp(n, prefix, strlen(prefix))) snprintf(pn, sizeof pn, "proj.%s", n + strlen(prefix));
        else if (!strncmp(n, "compress.", 9)) snprintf(pn, sizeof pn, "%s", n);
        else continue;
        if (mrw_param_find(&a->ps, pn) < 0)
            st = mrw_err(err, MRW_E_UNKNOWN, "%s: tensor '%s' does not belong to this adapter configuration", path, n);
    }
    for (int i = 0; i < a->ps.n && !st; i++)
        if (src[i]) mrw_to_f32(src[i]->dtype, src[i]->data, mrw_param_w(&a->ps, i), (int64_t)a->ps.p[i].n);
    mrw_tfile_close(f);
    return st;
}

/* ---------------------------------------------------------------------------------------------- forward */

/* One Conv1d as im2col + Linear over one sample. */
static void conv_fwd(mrw_tadapter *a, const float *x, int Tin, int Cin, const float *w, const float *b, int Cout,
                     int K, int s, int p, int Tout, float *y) {
    mrw_tnn_im2col(x, Tin, Cin, K, s, p, Tout, a->col, a->k.n_threads);
    mrw_tnn_linear(&a->k, w, b, a->col, Tout, Cin * K, Cout, y);
}

static void conv_bwd(mrw_tadapter *a, const float *x, int Tin, int Cin, const float *w, float *dw, float *db,
                     int Cout, int K, int s, int p, int Tout, const float *dy, float *dx) {
    mrw_tnn_im2col(x, Tin, Cin, K, s, p, Tout, a->col, a->k.n_threads);
    mrw_tnn_linear_bwd(&a->k, w, a->col, dy, Tout, Cin * K, Cout, dw, db, dx ? a->dcol : NULL, 0, a->scratch);
    if (dx) {
        memset(dx, 0, (size_t)Tin * Cin * sizeof *dx);
        mrw_tnn_col2im_add(a->dcol, Tin, Cin, K, s, p, Tout, dx);
    }
}


mrw_status mrw_tadapter_forward(mrw_tadapter *a, const float *x, int B, int T, float *out, mrw_error *err) {
    const mrw_tadapter_config *c = &a->cfg;
    if (B < 1 || T < 1 || B > a->max_B || T > a->max_T)
        return mrw_err(err, MRW_E_ARG, "adapter batch %d x %d exceeds the allocated %d x %d", B, T, a->max_B, a->max_T);
    const int Tc = tc_len(c, T), To = Tc < 1 ? -1 : conv_len(a, Tc);
    if (To < 1)
        return mrw_err(err, MRW_E_ARG, "%d encoder tokens are too few for the adapter's convolutions", T);
    const int E = c->E, C = c->C, H = a->H, nt = a->k.n_threads;
    a->B = B, a->T = T, a->Tc = Tc, a->To = To;
    memcpy(a->x, x, (size_t)B * T * E * sizeof *x);
    const float *in = a->x;
    if (c->compress_k) {
        for (int b = 0; b < B; b++)
            conv_fwd(a, a->x + (size_t)b * T * E, T, E, mrw_param_w(&a->ps, a->i_cw), mrw_param_w(&a->ps, a->i_cb), E, c->compress_k, c->compress_s,
                     0, Tc, a->xc + (size_t)b * Tc * E);
        in = a->xc;
    }
    if (a->conv_k) {
        for (int b = 0; b < B; b++)
            conv_fwd(a, in + (size_t)b * Tc * E, Tc, E, mrw_param_w(&a->ps, a->i_aw), mrw_param_w(&a->ps, a->i_ab), a->conv_out, a->conv_k,
                     a->conv_s, a->conv_p, To, a->xv + (size_t)b * To * a->Cv);
        in = a->xv;
    }
    const int N = B * To;
    mrw_tnn_linear(&a->k, mrw_param_w(&a->ps, a->i_l1w), mrw_param_w(&a->ps, a->i_l1b), in, N, a->Cv, H, a->h1);
    mrw_tnn_act(MRW_TACT_RELU, a->h1, a->a1, (size_t)N * H, nt);
    if (!a->has_ln) {
        mrw_tnn_linear(&a->k, mrw_param_w(&a->ps, a->i_l2w), mrw_param_w(&a->ps, a->i_l2b), a->a1, N, H, C, out);
        return MRW_OK;
    }
    mrw_tnn_linear(&a->k, mrw_param_w(&a->ps, a->i_l2w), mrw_param_w(&a->ps, a->i_l2b), a->a1, N, H, C, a->h2);
    mrw_tnn_layernorm(a->h2, out, a->mean, a->rstd, N, C, mrw_param_w(&a->ps, a->i_lnw), mrw_param_w(&a->ps, a->i_lnb), LN_EPS, nt);
    for (size_t i = 0; i < (size_t)N * C; i++) out[i] += a->h2[i];
    return MRW_OK;
}

/* --------------------------------------------------------------------------------------------- backward */

void mrw_tadapter_backward(mrw_tadapter *a, const float *d_out, float *d_x) {
    const mrw_tadapter_config *c = &a->cfg;
    const int B = a->B, T = a->T, Tc = a->Tc, To = a->To, E = c->E, C = c->C, H = a->H, N = B * To,
              nt = a->k.n_threads;
    if (B < 1) return; /* no forward yet */
    const float *dh2 = d_out;
    if (a->has_ln) { /* out = h2 + LN(h2) */
        memcpy(a->dh2, d_out, (size_t)N * C * sizeof *d_out);
        mrw_tnn_layernorm_bwd(a->h2, a->mean, a->rstd, mrw_param_w(&a->ps, a->i_lnw), d_out, N, C, a->dh2, mrw_param_g(&a->ps, a->i_lnw),
                              mrw_param_g(&a->ps, a->i_lnb), nt);
        dh2 = a->dh2;
    }
    mrw_tnn_linear_bwd(&a->k, mrw_param_w(&a->ps, a->i_l2w), a->a1, dh2, N, H, C, mrw_param_g(&a->ps, a->i_l2w), mrw_param_g(&a->ps, a->i_l2b), a->da1, 0,
                       a->scratch);
    mrw_tnn_act_bwd(MRW_TACT_RELU, a->h1, a->da1, a->da1, (size_t)N * H, nt);
    const float *xin = a->conv_k ? a->xv : c->compress_k ? a->xc : a->x;
    const int need_din = a->conv_k || c->compress_k || d_x;
    /* dxv: gradient w.r.t. the first Linear's input; when that input is x itself it goes straight to d_x */
    float *din = (!a->conv_k && !c->compress_k) ? d_x : a->dxv;
    mrw_tnn_linear_bwd(&a->k, mrw_param_w(&a->ps, a->i_l1w), xin, a->da1, N, a->Cv, H, mrw_param_g(&a->ps, a->i_l1w), mrw_param_g(&a->ps, a->i_l1b),
                       need_din ? din : NULL, 0, a->scratch);
    if (a->conv_k) {
        const float *cin = c->compress_k ? a->xc : a->x;
        const int want = c->compress_k || d_x;
        float *dcin = c->compress_k ? a->dxc : d_x;
        for (int b = 0; b < B; b++)
            conv_bwd(a, cin + (size_t)b * Tc * E, Tc, E, mrw_param_w(&a->ps, a->i_aw), mrw_param_g(&a->ps, a->i_aw), mrw_param_g(&a->ps, a->i_ab), a->conv_out,
                     a->conv_k, a->conv_s, a->conv_p, To, a->dxv + (size_t)b * To * a->Cv,
                     want ? dcin + (size_t)b * Tc * E : NULL);
    }
    if (c->compress_k) {
        const float *dyc = a->conv_k ? a->dxc : a->dxv; /* [B, Tc, E] */
        for (int b = 0; b < B; b++)
            conv_bwd(a, a->x + (size_t)b * T * E, T, E, mrw_param_w(&a->ps, a->i_cw), mrw_param_g(&a->ps, a->i_cw), mrw_param_g(&a->ps, a->i_cb), E, c->compress_k,
                     c->compress_s, 0, Tc, dyc + (size_t)b * Tc * E, d_x ? d_x + (size_t)b * T * E : NULL);
    }
}
