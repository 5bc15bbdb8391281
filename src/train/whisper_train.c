/* Whisper encoder training forward/backward (whisper_train.h). Per batch of B clips of F frames, T out rows:
 *   xin [B·F, n_mels] (mel transposed) -> cols1 = im2col(k3, p1) -> h1p = cols1·W1ᵀ + b1 -> h1 = GELU(h1p)
 *   -> cols2 = im2col(h1, k3, s2, p1) -> h2p = cols2·W2ᵀ + b2 -> x0 = GELU(h2p) + pos[0..T)
 *   -> blocks (train_nn.c) -> xL -> out = LN(xL)
 * Kept for the backward: cols1, h1p, cols2, h2p, the blocks' activations, the final LayerNorm statistics. */
#include "train/whisper_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "kernels/cpu/kctx.h"
#include "tensor/dtype.h"
#include "train/train_nn.h"

#define PFX "encoder.model."

/* Layer tensor keys in the block's weight order (MRW_TB_*); Whisper's k_proj has no bias. */
static const char *const LKEY[MRW_TB_N] = {
    "self_attn_layer_norm.weight", "self_attn_layer_norm.bias", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
    "self_attn.k_proj.weight",     NULL,                        "self_attn.v_proj.weight", "self_attn.v_proj.bias",
    "self_attn.out_proj.weight",   "self_attn.out_proj.bias",   "final_layer_norm.weight", "final_layer_norm.bias",
    "fc1.weight",                  "fc1.bias",                  "fc2.weight",              "fc2.bias"};

struct mrw_whisper_train {
    mrw_whisper_config cfg;
    int max_B, max_F;
    mrw_param_set ps;
    int i_c1w, i_c1b, i_c2w, i_c2b, i_pos, i_lnw, i_lnb;
    int *li; /* [n_layers][MRW_TB_N], -1 for the missing key bias */
    mrw_kctx k;
    int B, F, T;
    mrw_tnn_block_dims dims; /* at max_B, max T */
    float *mem;
    float *xin, *cols1, *h1p, *h1, *cols2, *h2p, *xL, *mL, *rL, *dres, *dh1, *dcols1, *dcols2, *dxin, *scratch;
    mrw_tnn_block_acts *la;
    mrw_tnn_block_bufs bb;
};

mrw_param_set *mrw_whisper_train_params(mrw_whisper_train *m) { return &m->ps; }
const mrw_whisper_config *mrw_whisper_train_config(const mrw_whisper_train *m) { return &m->cfg; }

void mrw_whisper_train_free(mrw_whisper_train *m) {
    if (!m) return;
    mrw_param_set_free(&m->ps);
    mrw_kctx_free(&m->k);
    free(m->li), free(m->la), free(m->mem);
    free(m);
}

static int addp(mrw_whisper_train *m, const char *key, int no_decay, int ndim, int64_t d0, int64_t d1, int64_t d2) {
    char name[MRW_PARAM_NAME_MAX];
    if (snprintf(name, sizeof name, PFX "%s", key) >= (int)sizeof name) return -1;
    const int64_t shape[3] = {d0, d1, d2};
    return mrw_param_add(&m->ps, name, MRW_PG_ENCODER, no_decay, ndim, shape);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

mrw_status mrw_whisper_train_new(const mrw_whisper_config *cfg, int max_B, int max_frames, int n_threads,
                                 mrw_whisper_train **out, mrw_error *err) {
    *out = NULL;
    const mrw_whisper_config *c = cfg;
    if (c->n_mels < 1 || c->d_model < 1 || c->n_layers < 1 || c->n_heads < 1 || c->d_model % c->n_heads ||
        c->ffn_dim < 1 || c->n_pos < 1 || c->d_model > 16384 || c->ffn_dim > 65536 || c->n_layers > 256 ||
        c->n_mels > 1024 || c->n_pos > 65536 || !(c->ln_eps > 0) || max_B < 1 || max_frames < 0 ||
        max_frames > 2 * c->n_pos)
        return mrw_err(err, MRW_E_ARG, "whisper_train: inconsistent configuration (d_model %d, heads %d, %d frames "
                                       "of at most %d)", c->d_model, c->n_heads, max_frames, 2 * c->n_pos);
    mrw_whisper_train *m = calloc(1, sizeof *m);
    if (!m) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    m->cfg = *c;
    m->max_B = max_B;
    m->max_F = max_frames ? max_frames : 2 * c->n_pos;
    const int d = c->d_model, nm = c->n_mels, I = c->ffn_dim;
    int bad = 0;
    bad |= (m->i_c1w = addp(m, "conv1.weight", 0, 3, d, nm, 3)) < 0;
    bad |= (m->i_c1b = addp(m, "conv1.bias", 1, 1, d, 0, 0)) < 0;
    bad |= (m->i_c2w = addp(m, "conv2.weight", 0, 3, d, d, 3)) < 0;
    bad |= (m->i_c2b = addp(m, "conv2.bias", 1, 1, d, 0, 0)) < 0;
    bad |= (m->i_pos = addp(m, "embed_positions.weight", 1, 2, c->n_pos, d, 0)) < 0;
    m->li = malloc((size_t)c->n_layers * MRW_TB_N * sizeof *m->li);
    m->la = calloc((size_t)c->n_layers, sizeof *m->la);
    bad |= !m->li || !m->la;
    for (int l = 0; l < c->n_layers && !bad; l++)
        for (int j = 0; j < MRW_TB_N; j++) {
            int *slot = &m->li[l * MRW_TB_N + j];
            *slot = -1;
            if (!LKEY[j]) continue;
            char key[96];
            snprintf(key, sizeof key, "layers.%d.%s", l, LKEY[j]);
            const int is_w = j == MRW_TB_QW || j == MRW_TB_KW || j == MRW_TB_VW || j == MRW_TB_OW ||
                             j == MRW_TB_F1W || j == MRW_TB_F2W;
            const int rows = j == MRW_TB_F1W || j == MRW_TB_F1B ? I : d, cols = j == MRW_TB_F2W ? I : d;
            bad |= (*slot = is_w ? addp(m, key, 0, 2, rows, cols, 0) : addp(m, key, 1, 1, rows, 0, 0)) < 0;
        }
    bad |= (m->i_lnw = addp(m, "layer_norm.weight", 1, 1, d, 0, 0)) < 0;
    bad |= (m->i_lnb = addp(m, "layer_norm.bias", 1, 1, d, 0, 0)) < 0;
    mrw_status st;
    if (bad) {
        mrw_whisper_train_free(m);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    if ((st = mrw_param_set_alloc(&m->ps, err))) {
        mrw_whisper_train_free(m);
        return st;
    }
    mrw_kctx_init(&m->k, n_threads);
    const int nt = m->k.n_threads, Tm = mrw_whisper_enc_out_frames(m->max_F);
    const mrw_tnn_act_kind act = c->act == MRW_ACT_GELU_TANH ? MRW_TACT_GELU_TANH
                                 : c->act == MRW_ACT_RELU    ? MRW_TACT_RELU
                                                             : MRW_TACT_GELU_ERF;
    m->dims = (mrw_tnn_block_dims){max_B, Tm, d, c->n_heads, I, c->ln_eps, act};
    const size_t B = (size_t)max_B, NF = B * m->max_F, NT = B * Tm;
    const size_t scr = max_sz(mrw_tnn_linear_bwd_scratch((int)NF, 3 * nm, d), mrw_tnn_linear_bwd_scratch((int)NT, 3 * d, d));
    const size_t total = 2 * NF * nm + 2 * NF * 3 * (size_t)nm + 3 * NF * d + 2 * NT * 3 * (size_t)d + 3 * NT * d +
                         2 * NT + scr + mrw_tnn_block_act_floats(&m->dims) * c->n_layers +
                         mrw_tnn_block_buf_floats(&m->dims, nt) + 64;
    m->mem = malloc(total * sizeof(float));
    if (!m->mem) {
        mrw_whisper_train_free(m);
        return mrw_err(err, MRW_E_NOMEM, "whisper_train: cannot allocate %zu MiB of activations", total * sizeof(float) >> 20);
    }
    float *p = m->mem;
#define TAKE(dst, n) (m->dst = p, p += (n))
    TAKE(xin, NF * nm), TAKE(dxin, NF * nm), TAKE(cols1, NF * 3 * nm), TAKE(dcols1, NF * 3 * nm);
    TAKE(h1p, NF * d), TAKE(h1, NF * d), TAKE(dh1, NF * d);
    TAKE(cols2, NT * 3 * d), TAKE(dcols2, NT * 3 * d), TAKE(h2p, NT * d), TAKE(xL, NT * d), TAKE(dres, NT * d);
    TAKE(mL, NT), TAKE(rL, NT), TAKE(scratch, scr);
#undef TAKE
    for (int l = 0; l < c->n_layers; l++) mrw_tnn_block_acts_take(&m->dims, &p, &m->la[l]);
    mrw_tnn_block_bufs_take(&m->dims, nt, &p, &m->bb);
    *out = m;
    return MRW_OK;
}

/* ----------------------------------------------------------------------------------------------- loading */

static int is_float(mrw_dtype t) { return t == MRW_DT_F32 || t == MRW_DT_F16 || t == MRW_DT_BF16 || t == MRW_DT_F64; }

mrw_status mrw_whisper_train_load(mrw_whisper_train *m, const mrw_tfile *f, const char *prefix, mrw_error *err) {
    const size_t pl = strlen(PFX);
    for (int pass = 0; pass < 2; pass++) /* check everything, then copy */
        for (int i = 0; i < m->ps.n; i++) {
            const mrw_param *p = &m->ps.p[i];
            char name[512];
            snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", p->name + pl);
            const mrw_tensor_info *t = mrw_tfile_find(f, name);
            if (!t) return mrw_err(err, MRW_E_MISSING, "whisper tensor '%s' is missing", name);
            int same = t->ndim == p->ndim && is_float(t->dtype);
            for (int k = 0; same && k < p->ndim; k++) same = t->shape[k] == p->shape[k];
            if (!same)
                return mrw_err(err, MRW_E_SHAPE, "whisper tensor '%s' should be a float tensor of %zu values in %d dims",
                               name, p->n, p->ndim);
            if (pass) mrw_to_f32(t->dtype, t->data, mrw_param_w(&m->ps, i), (int64_t)p->n);
        }
    return MRW_OK;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

mrw_status mrw_whisper_train_open(const char *path, const mrw_whisper_params *params, int max_B, int max_frames,
                                  int n_threads, mrw_whisper_train **out, mrw_error *err) {
    *out = NULL;
    mrw_whisper_params p = {0};
    if (params) p = *params;
    char weights[4096], config[4096];
    if (is_dir(path)) {
        snprintf(weights, sizeof weights, "%s/model.safetensors", path);
        snprintf(config, sizeof config, "%s/config.json", path);
        struct stat st;
        if (!p.config_path && !p.config_json && stat(config, &st) == 0) p.config_path = config;
    } else {
        snprintf(weights, sizeof weights, "%s", path);
    }
    p.keep_lowp = 0;
    mrw_tfile *f;
    mrw_status st = mrw_tfile_open(weights, &f, err);
    if (st) return st;
    mrw_whisper_enc *e = NULL;
    if (!(st = mrw_whisper_enc_load(f, &p, &e, err))) {
        if (!(st = mrw_whisper_train_new(mrw_whisper_enc_config(e), max_B, max_frames, n_threads, out, err)) &&
            (st = mrw_whisper_train_load(*out, f, mrw_whisper_enc_prefix(e), err))) {
            mrw_whisper_train_free(*out);
            *out = NULL;
        }
        mrw_whisper_enc_free(e);
    }
    mrw_tfile_close(f);
    if (st && err && st != MRW_E_NOMEM) mrw_err_prefix(err, "%s", path);
    return st;
}

/* ------------------------------------------------------------------------------------------------ forward */


mrw_status mrw_whisper_train_forward(mrw_whisper_train *m, const float *mel, int B, int n_frames, float *out,
                                     mrw_error *err) {
    const mrw_whisper_config *c = &m->cfg;
    if (B < 1 || B > m->max_B || n_frames < 1 || n_frames > m->max_F)
        return mrw_err(err, MRW_E_ARG, "whisper_train: batch %d x %d frames outside 1..%d x 1..%d", B, n_frames,
                       m->max_B, m->max_F);
    const int d = c->d_model, nm = c->n_mels, F = n_frames, T = mrw_whisper_enc_out_frames(F), nt = m->k.n_threads;
    for (size_t i = 0; i < (size_t)B * nm * F; i++)
        if (!isfinite(mel[i])) return mrw_err(err, MRW_E_ARG, "whisper_train: mel value %zu is not finite", i);
    m->B = B, m->F = F, m->T = T;
    for (int b = 0; b < B; b++) {
        float *x = m->xin + (size_t)b * F * nm;
        const float *src = mel + (size_t)b * nm * F;
        for (int t = 0; t < F; t++)
            for (int i = 0; i < nm; i++) x[(size_t)t * nm + i] = src[(size_t)i * F + t];
        mrw_tnn_im2col(x, F, nm, 3, 1, 1, F, m->cols1 + (size_t)b * F * 3 * nm, nt);
    }
    mrw_tnn_linear(&m->k, mrw_param_w(&m->ps, m->i_c1w), mrw_param_w(&m->ps, m->i_c1b), m->cols1, B * F, 3 * nm, d, m->h1p);
    mrw_tnn_act(MRW_TACT_GELU_ERF, m->h1p, m->h1, (size_t)B * F * d, nt);
    for (int b = 0; b < B; b++)
        mrw_tnn_im2col(m->h1 + (size_t)b * F * d, F, d, 3, 2, 1, T, m->cols2 + (size_t)b * T * 3 * d, nt);
    mrw_tnn_linear(&m->k, mrw_param_w(&m->ps, m->i_c2w), mrw_param_w(&m->ps, m->i_c2b), m->cols2, B * T, 3 * d, d, m->h2p);
    float *x = m->la[0].x;
    mrw_tnn_act(MRW_TACT_GELU_ERF, m->h2p, x, (size_t)B * T * d, nt);
    const float *pos = mrw_param_w(&m->ps, m->i_pos);
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < (size_t)T * d; i++) x[(size_t)b * T * d + i] += pos[i];
    mrw_tnn_block_dims dims = m->dims;
    dims.B = B, dims.T = T;
    for (int l = 0; l < c->n_layers; l++) {
        float *w[MRW_TB_N];
        for (int j = 0; j < MRW_TB_N; j++) w[j] = mrw_param_w(&m->ps, m->li[l * MRW_TB_N + j]);
        mrw_tnn_block_forward(&m->k, &dims, w, &m->la[l], l + 1 < c->n_layers ? m->la[l + 1].x : m->xL);
    }
    mrw_tnn_layernorm(m->xL, out, m->mL, m->rL, B * T, d, mrw_param_w(&m->ps, m->i_lnw), mrw_param_w(&m->ps, m->i_lnb), c->ln_eps, nt);
    return MRW_OK;
}

/* ----------------------------------------------------------------------------------------------- backward */

void mrw_whisper_train_backward(mrw_whisper_train *m, const float *d_out, float *d_mel) {
    const mrw_whisper_config *c = &m->cfg;
    const int B = m->B, F = m->F, T = m->T, d = c->d_model, nm = c->n_mels, nt = m->k.n_threads;
    if (B < 1) return;
    mrw_kctx *k = &m->k;
    float *dres = m->dres;
    memset(dres, 0, (size_t)B * T * d * sizeof *dres);
    mrw_tnn_layernorm_bwd(m->xL, m->mL, m->rL, mrw_param_w(&m->ps, m->i_lnw), d_out, B * T, d, dres, mrw_param_g(&m->ps, m->i_lnw), mrw_param_g(&m->ps, m->i_lnb),
                          nt);
    mrw_tnn_block_dims dims = m->dims;
    dims.B = B, dims.T = T;
    for (int l = c->n_layers - 1; l >= 0; l--) {
        float *w[MRW_TB_N], *gr[MRW_TB_N];
        for (int j = 0; j < MRW_TB_N; j++) w[j] = mrw_param_w(&m->ps, m->li[l * MRW_TB_N + j]), gr[j] = mrw_param_g(&m->ps, m->li[l * MRW_TB_N + j]);
        mrw_tnn_block_backward(k, &dims, w, gr, &m->la[l], dres, &m->bb);
    }
    /* dres = d x0; embed_positions is frozen (no gradient) */
    mrw_tnn_act_bwd(MRW_TACT_GELU_ERF, m->h2p, dres, dres, (size_t)B * T * d, nt);
    mrw_tnn_linear_bwd(k, mrw_param_w(&m->ps, m->i_c2w), m->cols2, dres, B * T, 3 * d, d, mrw_param_g(&m->ps, m->i_c2w), mrw_param_g(&m->ps, m->i_c2b), m->dcols2,
                       0, m->scratch);
    memset(m->dh1, 0, (size_t)B * F * d * sizeof *m->dh1);
    for (int b = 0; b < B; b++)
        mrw_tnn_col2im_add(m->dcols2 + (size_t)b * T * 3 * d, F, d, 3, 2, 1, T, m->dh1 + (size_t)b * F * d);
    mrw_tnn_act_bwd(MRW_TACT_GELU_ERF, m->h1p, m->dh1, m->dh1, (size_t)B * F * d, nt);
    mrw_tnn_linear_bwd(k, mrw_param_w(&m->ps, m->i_c1w), m->cols1, m->dh1, B * F, 3 * nm, d, mrw_param_g(&m->ps, m->i_c1w), mrw_param_g(&m->ps, m->i_c1b),
                       d_mel ? m->dcols1 : NULL, 0, m->scratch);
    if (!d_mel) return;
    memset(m->dxin, 0, (size_t)B * F * nm * sizeof *m->dxin);
    for (int b = 0; b < B; b++) {
        float *dx = m->dxin + (size_t)b * F * nm, *dm = d_mel + (size_t)b * nm * F;
        mrw_tnn_col2im_add(m->dcols1 + (size_t)b * F * 3 * nm, F, nm, 3, 1, 1, F, dx);
        for (int t = 0; t < F; t++)
            for (int i = 0; i < nm; i++) dm[(size_t)i * F + t] = dx[(size_t)t * nm + i];
    }
}
