/* ViT training forward/backward (vit_train.h). Per batch of B images, N = B·T rows of the residual stream:
 *   embeddings: cols = patches [B·Np, ch·P·P] -> pe = cols·Wpᵀ (+ b) -> x0 rows (CLIP: row 0 = class) + pos
 *               CLIP: x = pre_LN(x0)
 *   layer l:    xn1 = LN1(x_l); q,k,v = xn1·W + b; att = MHA(q,k,v); x_mid = x_l + att·Woᵀ + bo
 *               xn2 = LN2(x_mid); f = act(xn2·W1ᵀ + b1); x_{l+1} = x_mid + f·W2ᵀ + b2
 *   SigLIP:     out = post_LN(x_L); CLIP: out = x_L
 * Activations of every layer are kept (x_l, xn1, q, k, v, P, att, x_mid, xn2, f before and after the
 * activation, LayerNorm statistics); the patch rows are rebuilt from the kept pixels in the backward. */
#include "train/vit_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "kernels/cpu/kctx.h"
#include "tensor/dtype.h"
#include "train/train_nn.h"

#define PFX "encoder.model.vision_model."

/* Layer tensor keys in the block's weight order (train_nn.h, MRW_TB_*). */
static const char *const LKEY[MRW_TB_N] = {
    "layer_norm1.weight",      "layer_norm1.bias",      "self_attn.q_proj.weight", "self_attn.q_proj.bias",
    "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias",
    "self_attn.out_proj.weight", "self_attn.out_proj.bias", "layer_norm2.weight",  "layer_norm2.bias",
    "mlp.fc1.weight",          "mlp.fc1.bias",          "mlp.fc2.weight",          "mlp.fc2.bias"};

struct mrw_vit_train {
    mrw_vit_config cfg;
    int max_B, PP;
    mrw_tnn_act_kind act;
    mrw_param_set ps;
    int i_pw, i_pb, i_cls, i_pos, i_prew, i_preb, i_postw, i_postb;
    int *li; /* [n_layer][MRW_TB_N] */
    mrw_kctx k;
    int B;
    mrw_tnn_block_dims dims; /* at max_B */
    float *mem; /* one allocation for all activations and backward buffers */
    float *pixels, *cols, *pe, *x0, *m0, *r0, *xL, *mL, *rL;
    mrw_tnn_block_acts *la;
    mrw_tnn_block_bufs bb;
    float *dres, *dxn0, *dcols, *dpe, *scratch;
};

mrw_param_set *mrw_vit_train_params(mrw_vit_train *m) { return &m->ps; }
const mrw_vit_config *mrw_vit_train_config(const mrw_vit_train *m) { return &m->cfg; }

void mrw_vit_train_free(mrw_vit_train *m) {
    if (!m) return;
    mrw_param_set_free(&m->ps);
    mrw_kctx_free(&m->k);
    free(m->li), free(m->la), free(m->mem);
    free(m);
}

static int addp(mrw_vit_train *m, const char *key, int no_decay, int ndim, int64_t d0, int64_t d1, int64_t d2,
                int64_t d3) {
    char name[MRW_PARAM_NAME_MAX];
    if (snprintf(name, sizeof name, PFX "%s", key) >= (int)sizeof name) return -1;
    const int64_t shape[4] = {d0, d1, d2, d3};
    return mrw_param_add(&m->ps, name, MRW_PG_ENCODER, no_decay, ndim, shape);
}

mrw_status mrw_vit_train_new(const mrw_vit_config *cfg, int max_B, int n_threads, mrw_vit_train **out,
                             mrw_error *err) {
    *out = NULL;
    mrw_vit_config c = *cfg;
    if (c.family != MRW_VIT_SIGLIP && c.family != MRW_VIT_CLIP)
        return mrw_err(err, MRW_E_ARG, "vit_train: unknown family %d", (int)c.family);
    if (c.hidden < 1 || c.n_layer < 1 || c.n_head < 1 || c.hidden % c.n_head || c.intermediate < 1 ||
        c.channels < 1 || c.patch < 1 || c.image_size < c.patch || c.image_size % c.patch || max_B < 1 ||
        c.hidden > 16384 || c.intermediate > 65536 || c.n_layer > 256 || c.image_size / c.patch > 128 ||
        !(c.eps > 0))
        return mrw_err(err, MRW_E_ARG, "vit_train: inconsistent configuration (hidden %d, heads %d, patch %d, image %d)",
                       c.hidden, c.n_head, c.patch, c.image_size);
    c.head_dim = c.hidden / c.n_head;
    c.grid = c.image_size / c.patch;
    c.n_patches = c.grid * c.grid;
    c.n_tokens = c.n_patches + (c.family == MRW_VIT_CLIP);
    mrw_vit_train *m = calloc(1, sizeof *m);
    if (!m) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    m->cfg = c;
    m->max_B = max_B;
    m->PP = c.channels * c.patch * c.patch;
    m->act = c.act == MRW_VIT_QUICK_GELU ? MRW_TACT_QUICK_GELU : c.act == MRW_VIT_GELU_ERF ? MRW_TACT_GELU_ERF
                                                                                            : MRW_TACT_GELU_TANH;
    const int C = c.hidden, I = c.intermediate, T = c.n_tokens, clip = c.family == MRW_VIT_CLIP;
    int bad = 0;
    m->i_pb = m->i_cls = m->i_prew = m->i_preb = -1;
    if (clip) bad |= (m->i_cls = addp(m, "embeddings.class_embedding", 1, 1, C, 0, 0, 0)) < 0;
    bad |= (m->i_pw = addp(m, "embeddings.patch_embedding.weight", 0, 4, C, c.channels, c.patch, c.patch)) < 0;
    if (!clip) bad |= (m->i_pb = addp(m, "embeddings.patch_embedding.bias", 1, 1, C, 0, 0, 0)) < 0;
    bad |= (m->i_pos = addp(m, "embeddings.position_embedding.weight", 0, 2, T, C, 0, 0)) < 0;
    if (clip) {
        bad |= (m->i_prew = addp(m, "pre_layrnorm.weight", 1, 1, C, 0, 0, 0)) < 0;
        bad |= (m->i_preb = addp(m, "pre_layrnorm.bias", 1, 1, C, 0, 0, 0)) < 0;
    }
    m->li = malloc((size_t)c.n_layer * MRW_TB_N * sizeof *m->li);
    m->la = calloc((size_t)c.n_layer, sizeof *m->la);
    bad |= !m->li || !m->la;
    for (int l = 0; l < c.n_layer && !bad; l++)
        for (int j = 0; j < MRW_TB_N; j++) {
            char key[96];
            snprintf(key, sizeof key, "encoder.layers.%d.%s", l, LKEY[j]);
            const int is_w = j == MRW_TB_QW || j == MRW_TB_KW || j == MRW_TB_VW || j == MRW_TB_OW ||
                             j == MRW_TB_F1W || j == MRW_TB_F2W;
            const int rows = j == MRW_TB_F1W || j == MRW_TB_F1B ? I : C, cols = j == MRW_TB_F2W ? I : C;
            bad |= (m->li[l * MRW_TB_N + j] = is_w ? addp(m, key, 0, 2, rows, cols, 0, 0) : addp(m, key, 1, 1, rows, 0, 0, 0)) < 0;
        }
    bad |= (m->i_postw = addp(m, "post_layernorm.weight", 1, 1, C, 0, 0, 0)) < 0;
    bad |= (m->i_postb = addp(m, "post_layernorm.bias", 1, 1, C, 0, 0, 0)) < 0;
    mrw_status st;
    if (bad) {
        mrw_vit_train_free(m);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    if ((st = mrw_param_set_alloc(&m->ps, err))) {
        mrw_vit_train_free(m);
        return st;
    }
    mrw_kctx_init(&m->k, n_threads);
    /* activations: embeddings, the blocks, the backward buffers */
    const size_t B = (size_t)max_B, N = B * T, NP = B * c.n_patches, nt = m->k.n_threads;
    m->dims = (mrw_tnn_block_dims){max_B, T, C, c.n_head, I, c.eps, m->act};
    const size_t s1 = mrw_tnn_linear_bwd_scratch((int)NP, m->PP, C);
    const size_t total = B * c.channels * c.image_size * c.image_size + 2 * NP * m->PP + 2 * NP * C + 4 * N * C +
                         4 * N + mrw_tnn_block_act_floats(&m->dims) * c.n_layer +
                         mrw_tnn_block_buf_floats(&m->dims, (int)nt) + s1 + 64;
    m->mem = malloc(total * sizeof(float));
    if (!m->mem) {
        mrw_vit_train_free(m);
        return mrw_err(err, MRW_E_NOMEM, "vit_train: cannot allocate %zu MiB of activations for %d images",
                       total * sizeof(float) >> 20, max_B);
    }
    float *p = m->mem;
#define TAKE(dst, n) (dst = p, p += (n))
    TAKE(m->pixels, B * c.channels * c.image_size * c.image_size);
    TAKE(m->cols, NP * m->PP), TAKE(m->dcols, NP * m->PP);
    TAKE(m->pe, NP * C), TAKE(m->dpe, NP * C);
    TAKE(m->x0, N * C), TAKE(m->xL, N * C), TAKE(m->dres, N * C), TAKE(m->dxn0, N * C);
    TAKE(m->m0, N), TAKE(m->r0, N), TAKE(m->mL, N), TAKE(m->rL, N);
    TAKE(m->scratch, s1);
#undef TAKE
    for (int l = 0; l < c.n_layer; l++) mrw_tnn_block_acts_take(&m->dims, &p, &m->la[l]);
    mrw_tnn_block_bufs_take(&m->dims, (int)nt, &p, &m->bb);
    *out = m;
    return MRW_OK;
}

/* ----------------------------------------------------------------------------------------------- loading */

static int is_float(mrw_dtype t) { return t == MRW_DT_F32 || t == MRW_DT_F16 || t == MRW_DT_BF16 || t == MRW_DT_F64; }

mrw_status mrw_vit_train_load(mrw_vit_train *m, const mrw_tfile *f, const char *prefix, mrw_error *err) {
    const size_t pl = strlen(PFX);
    /* check everything first, then copy: a failed load leaves the weights as they were */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->ps.n; i++) {
            const mrw_param *p = &m->ps.p[i];
            char name[512];
            snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", p->name + pl);
            const mrw_tensor_info *t = mrw_tfile_find(f, name);
            if (!t) return mrw_err(err, MRW_E_MISSING, "vision tensor '%s' is missing", name);
            int same = t->ndim == p->ndim && is_float(t->dtype);
            for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
            if (!same)
                return mrw_err(err, MRW_E_SHAPE, "vision tensor '%s' should be a float tensor of %zu values in %d dims", name, p->n, p->ndim);
            if (pass) mrw_to_f32(t->dtype, t->data, mrw_param_w(&m->ps, i), (int64_t)p->n);
        }
    return MRW_OK;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

mrw_status mrw_vit_train_open(const char *path, const mrw_vit_params *params, int max_B, int n_threads,
                              mrw_vit_train **out, mrw_error *err) {
    *out = NULL;
    mrw_vit_params p = {0};
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
    mrw_tfile *f;
    mrw_status st = mrw_tfile_open(weights, &f, err);
    if (st) return st;
    mrw_vit *v = NULL;
    p.quiet = 1;
    if (!(st = mrw_vit_load(f, &p, &v, err))) {
        const mrw_vit_config cfg = *mrw_vit_get_config(v);
        if (!(st = mrw_vit_train_new(&cfg, max_B, n_threads, out, err)) &&
            (st = mrw_vit_train_load(*out, f, cfg.prefix, err))) {
            mrw_vit_train_free(*out);
            *out = NULL;
        }
        mrw_vit_free(v);
    }
    mrw_tfile_close(f);
    if (st && err && st != MRW_E_NOMEM) mrw_err_prefix(err, "%s", path);
    return st;
}

/* ------------------------------------------------------------------------------------------------ forward */


/* Row p of one image's cols holds patch p's pixels in the Conv2d weight's (channel, ky, kx) order. */
static void patches(const mrw_vit_config *g, const float *px, float *cols, int add_back) {
    const int P = g->patch, S = g->image_size, G = g->grid, PP = g->channels * P * P;
    for (int p = 0; p < g->n_patches; p++) {
        const int y0 = (p / G) * P, x0 = (p % G) * P;
        float *row = cols + (size_t)p * PP;
        for (int ch = 0; ch < g->channels; ch++)
            for (int ky = 0; ky < P; ky++) {
                float *img = (float *)px + ((size_t)ch * S + y0 + ky) * S + x0, *r = row + (ch * P + ky) * P;
                if (add_back)
                    for (int kx = 0; kx < P; kx++) img[kx] += r[kx];
                else
                    memcpy(r, img, (size_t)P * sizeof(float));
            }
    }
}

mrw_status mrw_vit_train_forward(mrw_vit_train *m, const float *pixels, int B, float *out, mrw_error *err) {
    const mrw_vit_config *g = &m->cfg;
    if (B < 1 || B > m->max_B) return mrw_err(err, MRW_E_ARG, "vit_train: batch %d outside 1..%d", B, m->max_B);
    const int C = g->hidden, T = g->n_tokens, Np = g->n_patches, nt = m->k.n_threads,
              clip = g->family == MRW_VIT_CLIP;
    const size_t img = (size_t)g->channels * g->image_size * g->image_size, N = (size_t)B * T;
    for (size_t i = 0; i < (size_t)B * img; i++)
        if (!isfinite(pixels[i])) return mrw_err(err, MRW_E_ARG, "vit_train: pixel %zu is not finite", i);
    m->B = B;
    memcpy(m->pixels, pixels, (size_t)B * img * sizeof *pixels);
    for (int b = 0; b < B; b++) patches(g, m->pixels + b * img, m->cols + (size_t)b * Np * m->PP, 0);
    mrw_tnn_linear(&m->k, mrw_param_w(&m->ps, m->i_pw), mrw_param_w(&m->ps, m->i_pb), m->cols, B * Np, m->PP, C, m->pe);
    const float *pos = mrw_param_w(&m->ps, m->i_pos), *cls = mrw_param_w(&m->ps, m->i_cls);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *x = m->x0 + ((size_t)b * T + t) * C;
            const float *src = clip && t == 0 ? cls : m->pe + ((size_t)b * Np + t - clip) * C;
            for (int c = 0; c < C; c++) x[c] = src[c] + pos[(size_t)t * C + c];
        }
    float *x = m->la[0].x;
    if (clip) mrw_tnn_layernorm(m->x0, x, m->m0, m->r0, (int)N, C, mrw_param_w(&m->ps, m->i_prew), mrw_param_w(&m->ps, m->i_preb), g->eps, nt);
    else memcpy(x, m->x0, N * C * sizeof *x);
    mrw_tnn_block_dims dims = m->dims;
    dims.B = B;
    for (int l = 0; l < g->n_layer; l++) {
        float *w[MRW_TB_N];
        for (int j = 0; j < MRW_TB_N; j++) w[j] = mrw_param_w(&m->ps, m->li[l * MRW_TB_N + j]);
        mrw_tnn_block_forward(&m->k, &dims, w, &m->la[l], l + 1 < g->n_layer ? m->la[l + 1].x : m->xL);
    }
    if (clip) memcpy(out, m->xL, N * C * sizeof *out);
    else mrw_tnn_layernorm(m->xL, out, m->mL, m->rL, (int)N, C, mrw_param_w(&m->ps, m->i_postw), mrw_param_w(&m->ps, m->i_postb), g->eps, nt);
    return MRW_OK;
}

/* ----------------------------------------------------------------------------------------------- backward */

void mrw_vit_train_backward(mrw_vit_train *m, const float *d_out, float *d_pixels) {
    const mrw_vit_config *g = &m->cfg;
    const int B = m->B, C = g->hidden, T = g->n_tokens, Np = g->n_patches, nt = m->k.n_threads,
              clip = g->family == MRW_VIT_CLIP;
    if (B < 1) return;
    const size_t N = (size_t)B * T;
    mrw_kctx *k = &m->k;
    float *dres = m->dres;
    if (clip) {
        memcpy(dres, d_out, N * C * sizeof *dres);
    } else {
        memset(dres, 0, N * C * sizeof *dres);
        mrw_tnn_layernorm_bwd(m->xL, m->mL, m->rL, mrw_param_w(&m->ps, m->i_postw), d_out, (int)N, C, dres, mrw_param_g(&m->ps, m->i_postw),
                              mrw_param_g(&m->ps, m->i_postb), nt);
    }
    mrw_tnn_block_dims dims = m->dims;
    dims.B = B;
    for (int l = g->n_layer - 1; l >= 0; l--) {
        float *w[MRW_TB_N], *gr[MRW_TB_N];
        for (int j = 0; j < MRW_TB_N; j++) w[j] = mrw_param_w(&m->ps, m->li[l * MRW_TB_N + j]), gr[j] = mrw_param_g(&m->ps, m->li[l * MRW_TB_N + j]);
        mrw_tnn_block_backward(k, &dims, w, gr, &m->la[l], dres, &m->bb);
    }
    /* embeddings: d x0 */
    float *dx0 = dres;
    if (clip) {
        memset(m->dxn0, 0, N * C * sizeof *m->dxn0);
        mrw_tnn_layernorm_bwd(m->x0, m->m0, m->r0, mrw_param_w(&m->ps, m->i_prew), dres, (int)N, C, m->dxn0, mrw_param_g(&m->ps, m->i_prew),
                              mrw_param_g(&m->ps, m->i_preb), nt);
        dx0 = m->dxn0;
    }
    float *dpos = mrw_param_g(&m->ps, m->i_pos), *dcls = mrw_param_g(&m->ps, m->i_cls);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *d = dx0 + ((size_t)b * T + t) * C;
            float *dp = dpos + (size_t)t * C;
            for (int c = 0; c < C; c++) dp[c] += d[c];
            if (clip && t == 0)
                for (int c = 0; c < C; c++) dcls[c] += d[c];
            else
                memcpy(m->dpe + ((size_t)b * Np + t - clip) * C, d, (size_t)C * sizeof *d);
        }
    mrw_tnn_linear_bwd(k, mrw_param_w(&m->ps, m->i_pw), m->cols, m->dpe, B * Np, m->PP, C, mrw_param_g(&m->ps, m->i_pw), mrw_param_g(&m->ps, m->i_pb),
                       d_pixels ? m->dcols : NULL, 0, m->scratch);
    if (d_pixels) {
        const size_t img = (size_t)g->channels * g->image_size * g->image_size;
        memset(d_pixels, 0, (size_t)B * img * sizeof *d_pixels);
        for (int b = 0; b < B; b++) patches(g, d_pixels + b * img, m->dcols + (size_t)b * Np * m->PP, 1);
    }
}
