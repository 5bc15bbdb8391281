#include "models/wavlm.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/cpu/nn.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/vmath.h"
#include "models/weights.h"

typedef struct {
    mrw_mat w;            /* [C_i][K_i][C_{i-1}]: window order over [T][C_{i-1}] rows */
    float *wk;            /* one input channel: the weight as [K][C_i] for the direct kernel, else NULL */
    const float *b;       /* conv bias or NULL */
    const float *nw, *nb; /* GroupNorm / LayerNorm affine, or NULL */
} conv_layer;

typedef struct {
    mrw_mat wq, wk, wv, wo, w1, w2;
    const float *bq, *bk, *bv, *bo, *b1, *b2;
    mrw_mat gru;                                /* gru_rel_pos_linear [8][D] */
    const float *gru_b, *gru_const;             /* [8], [H] */
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* layer_norm, final_layer_norm */
} wv_layer;

struct mrw_wavlm {
    mrw_wavlm_config cfg;
    char prefix[256];
    conv_layer conv[MRW_WAVLM_MAX_CONV];
    const float *fp_ln_w, *fp_ln_b, *fp_b;
    mrw_mat fp;
    float *pos_w;   /* direct kernel: [G][K][cg in][cg out]; else [hidden][K][cg]: per group window order */
    int pos_direct; /* the AVX-512 direct kernel computes the positional convolution */
    const float *pos_b;
    const float *rel_embed; /* [num_buckets][H] */
    const float *enc_ln_w, *enc_ln_b;
    wv_layer *layers;
    mrw_arena arena;
};

const mrw_wavlm_config *mrw_wavlm_get_config(const mrw_wavlm *m) { return &m->cfg; }
const char *mrw_wavlm_prefix(const mrw_wavlm *m) { return m->prefix; }

void mrw_wavlm_free(mrw_wavlm *m) {
    if (!m) return;
    mrw_arena_free(&m->arena);
    free(m);
}

int mrw_wavlm_out_frames(const mrw_wavlm *m, int n_samples) {
    long t = n_samples;
    for (int i = 0; i < m->cfg.n_conv; i++) {
        if (t < m->cfg.conv_kernel[i]) return 0;
        t = (t - m->cfg.conv_kernel[i]) / m->cfg.conv_stride[i] + 1;
    }
    return (int)t;
}

int mrw_wavlm_min_samples(const mrw_wavlm *m) {
    long need = 1;
    for (int i = m->cfg.n_conv - 1; i >= 0; i--)
        need = (need - 1) * m->cfg.conv_stride[i] + m->cfg.conv_kernel[i];
    return (int)need;
}

/* torch: buckets = (rel > 0)·nb; n = |rel|; small (n < nb/2) exactly, larger ones
 * nb/2 + log(n/(nb/2)) / log(max_distance/(nb/2)) · (nb - nb/2), truncated, capped at nb - 1; with nb =
 * num_buckets/2. Every step in float32, as the tensor ops run (the golden table checks this over ±4000). */
int mrw_wavlm_rel_bucket(int rel, int num_buckets, int max_distance) {
    const int nb = num_buckets / 2, max_exact = nb / 2;
    const int base = rel > 0 ? nb : 0, n = rel < 0 ? -rel : rel;
    if (n < max_exact) return base + n;
    float v = logf((float)n / (float)max_exact);
    v = v / (float)log((double)max_distance / max_exact);
    v = v * (float)(nb - max_exact);
    long large = (long)((float)max_exact + v);
    return base + (int)(large < nb - 1 ? large : nb - 1);
}

/* ------------------------------------------------------------------------------------------- loading */

/* Values config.json may give; -1 / "" = absent. */
typedef struct {
    int present;
    int n_conv, conv_dim[MRW_WAVLM_MAX_CONV], conv_kernel[MRW_WAVLM_MAX_CONV],
        conv_stride[MRW_WAVLM_MAX_CONV];
    int conv_bias, norm_layer, stable, hidden, n_layers, n_heads, ffn, pos_k, pos_g, buckets, max_dist,
        adapter;
    double eps;
    char act[32], feat_act[32];
} jconfig;

static int jint(const cJSON *root, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e9 ? (int)v->valuedouble : -1;
}

/* An integer list; returns its length, -1 if absent, -2 if malformed. */
static int jlist(const cJSON *root, const char *key, int *out) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!a) return -1;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > MRW_WAVLM_MAX_CONV) return -2;
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 1 || e->valuedouble > 1e6) return -2;
        out[n++] = (int)e->valuedouble;
    }
    return n;
}

static void jstr(const cJSON *root, const char *key, char *out, size_t n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (cJSON_IsString(v)) snprintf(out, n, "%s", v->valuestring);
}

static mrw_status parse_config(const mrw_wavlm_params *p, jconfig *c, mrw_error *err) {
    memset(c, -1, sizeof *c);
    c->present = 0;
    c->eps = -1;
    strcpy(c->act, "gelu");
    strcpy(c->feat_act, "gelu");
    cJSON *r = NULL;
    mrw_status s = mrw_audio_config_parse(p ? p->config_path : NULL, p ? p->config_json : NULL, &r, err);
    if (s || !r) return s;
    c->present = 1;
    const char *what = p->config_json ? "config text" : p->config_path;
    int nd = jlist(r, "conv_dim", c->conv_dim), nk = jlist(r, "conv_kernel", c->conv_kernel);
    int ns = jlist(r, "conv_stride", c->conv_stride);
    if (nd == -2 || nk == -2 || ns == -2 || (nd >= 0 && nk >= 0 && nd != nk) ||
        (nd >= 0 && ns >= 0 && nd != ns) || (nk >= 0 && ns >= 0 && nk != ns)) {
        cJSON_Delete(r);
        return mrw_err(err, MRW_E_FORMAT,
                       "%s: conv_dim / conv_kernel / conv_stride must be lists of one length "
                       "(at most %d positive integers)",
                       what, MRW_WAVLM_MAX_CONV);
    }
    c->n_conv = nd >= 0 ? nd : nk >= 0 ? nk : ns;
    if (ns < 0) { /* WavLMConfig's default strides */
        static const int def[7] = {5, 2, 2, 2, 2, 2, 2};
        memcpy(c->conv_stride, def, sizeof def);
        ns = 7;
    }
    if (c->n_conv < 0) c->n_conv = ns;
    if (nd < 0) c->conv_dim[0] = -1; /* not given: nothing to cross-check */
    if (nk < 0) c->conv_kernel[0] = -1;
    c->conv_bias = jint(r, "conv_bias");
    char norm[16] = "";
    jstr(r, "feat_extract_norm", norm, sizeof norm);
    c->norm_layer = !*norm ? 0 : !strcmp(norm, "layer") ? 1 : !strcmp(norm, "group") ? 0 : -2;
    c->stable = jint(r, "do_stable_layer_norm");
    if (c->stable < 0) c->stable = 0;
    c->hidden = jint(r, "hidden_size");
    c->n_layers = jint(r, "num_hidden_layers");
    c->n_heads = jint(r, "num_attention_heads");
    c->ffn = jint(r, "intermediate_size");
    c->pos_k = jint(r, "num_conv_pos_embeddings");
    c->pos_g = jint(r, "num_conv_pos_embedding_groups");
    c->buckets = jint(r, "num_buckets");
    c->max_dist = jint(r, "max_bucket_distance");
    if (c->max_dist < 0) c->max_dist = 800;
    c->adapter = jint(r, "add_adapter");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "layer_norm_eps");
    c->eps = cJSON_IsNumber(e) && e->valuedouble > 0 && e->valuedouble < 1 ? e->valuedouble : 1e-5;
    jstr(r, "hidden_act", c->act, sizeof c->act);
    jstr(r, "feat_extract_activation", c->feat_act, sizeof c->feat_act);
    cJSON_Delete(r);
    if (c->norm_layer == -2) return mrw_err(err, MRW_E_UNSUPPORTED, "%s: feat_extract_norm '%s'", what, norm);
    if (c->adapter == 1)
        return mrw_err(err, MRW_E_UNSUPPORTED, "%s: add_adapter (an output adapter) is not supported", what);
    return MRW_OK;
}

static int find_prefix(const mrw_tfile *f, const char *base, char *out, size_t n) {
    static const char *const layouts[] = {"", "wavlm."};
    for (int i = 0; i < 2; i++) {
        char name[512];
        snprintf(out, n, "%s%s", base, layouts[i]);
        snprintf(name, sizeof name, "%sfeature_extractor.conv_layers.0.conv.weight", out);
        if (mrw_tfile_find(f, name)) return 1;
    }
    return 0;
}

static const mrw_tensor_info *peek(mrw_wloader *L, const char *fmt, int i) {
    char name[256], full[512];
    snprintf(name, sizeof name, fmt, i);
    snprintf(full, sizeof full, "%s%s", L->prefix, name);
    return mrw_tfile_find(L->f, full);
}

static mrw_status vec(mrw_wloader *L, const char *fmt, int i, int n, const float **out) {
    char name[256];
    snprintf(name, sizeof name, fmt, i);
    float *v;
    mrw_status s = mrw_wl_vec(L, name, n, &v);
    *out = v;
    return s;
}

static mrw_status mat(mrw_wloader *L, const char *fmt, int i, int rows, int cols, int lowp, mrw_mat *out) {
    char name[256];
    snprintf(name, sizeof name, fmt, i);
    const mrw_tensor_info *t = peek(L, fmt, i);
    return mrw_wl_mat(L, name, rows, cols, t && (t->dtype == MRW_DT_F32 || lowp), out);
}

static mrw_status agree(mrw_error *err, const char *key, int cfg, int tensors) {
    if (cfg < 0 || cfg == tensors) return MRW_OK;
    return mrw_err(err, MRW_E_SHAPE, "config %s = %d but the tensors give %d", key, cfg, tensors);
}

#define TDIM(t, i) ((t)->shape[i] >= 1 && (t)->shape[i] <= (1 << 20) ? (int)(t)->shape[i] : -1)

/* The conv stack's sizes from its tensors. */
static mrw_status derive_conv(mrw_wloader *L, const jconfig *jc, mrw_wavlm_config *c, mrw_error *err) {
    int cin = 1;
    for (c->n_conv = 0; peek(L, "feature_extractor.conv_layers.%d.conv.weight", c->n_conv); c->n_conv++) {
        const int i = c->n_conv;
        if (i == MRW_WAVLM_MAX_CONV)
            return mrw_err(err, MRW_E_UNSUPPORTED, "more than %d conv layers", MRW_WAVLM_MAX_CONV);
        const mrw_tensor_info *t = peek(L, "feature_extractor.conv_layers.%d.conv.weight", i);
        if (t->ndim != 3 || TDIM(t, 0) < 0 || t->shape[1] != cin || TDIM(t, 2) < 0)
            return mrw_err(err, MRW_E_SHAPE, "tensor '%s' must be [out, %d, kernel]", t->name, cin);
        c->conv_dim[i] = cin = (int)t->shape[0];
        c->conv_kernel[i] = (int)t->shape[2];
    }
    c->conv_bias = peek(L, "feature_extractor.conv_layers.%d.conv.bias", 0) != NULL;
    c->norm_layer = jc->present
                        ? jc->norm_layer
                        : c->n_conv > 1 && peek(L, "feature_extractor.conv_layers.%d.layer_norm.weight", 1);
    mrw_status s;
    if ((s = agree(err, "conv_bias", jc->conv_bias, c->conv_bias))) return s;
    if (jc->present) {
        if (jc->n_conv != c->n_conv)
            return mrw_err(err, MRW_E_SHAPE, "config has %d conv layers, the tensors %d", jc->n_conv,
                           c->n_conv);
        for (int i = 0; i < c->n_conv; i++) {
            if (jc->conv_dim[0] >= 0 && (s = agree(err, "conv_dim", jc->conv_dim[i], c->conv_dim[i])))
                return s;
            if (jc->conv_kernel[0] >= 0 &&
                (s = agree(err, "conv_kernel", jc->conv_kernel[i], c->conv_kernel[i])))
                return s;
            c->conv_stride[i] = jc->conv_stride[i];
        }
    } else {
        if (c->n_conv != 7)
            return mrw_err(err, MRW_E_ARG,
                           "%d conv layers: give config.json (conv_stride is only known for the "
                           "published 7-layer stack)",
                           c->n_conv);
        static const int def[7] = {5, 2, 2, 2, 2, 2, 2};
        memcpy(c->conv_stride, def, sizeof def);
    }
    return MRW_OK;
}

static mrw_status derive_config(mrw_wloader *L, const jconfig *jc, mrw_wavlm_config *c, mrw_error *err) {
    mrw_status s = derive_conv(L, jc, c, err);
    if (s) return s;
    const mrw_tensor_info *t = peek(L, "feature_projection.projection.weight", 0);
    if (!t)
        return mrw_err(err, MRW_E_MISSING, "tensor '%sfeature_projection.projection.weight' is missing",
                       L->prefix);
    if (t->ndim != 2 || TDIM(t, 0) < 0)
        return mrw_err(err, MRW_E_SHAPE, "tensor '%s' must be [hidden, %d]", t->name,
                       c->conv_dim[c->n_conv - 1]);
    c->hidden = (int)t->shape[0];
    for (c->n_layers = 0; peek(L, "encoder.layers.%d.attention.q_proj.weight", c->n_layers); c->n_layers++) {
    }
    if (!c->n_layers)
        return mrw_err(err, MRW_E_MISSING, "tensor '%sencoder.layers.0.attention.q_proj.weight' is missing",
                       L->prefix);
    if (!(t = peek(L, "encoder.layers.0.feed_forward.intermediate_dense.weight", 0)) || t->ndim != 2 ||
        TDIM(t, 0) < 0)
        return mrw_err(err, MRW_E_MISSING,
                       "tensor '%sencoder.layers.0.feed_forward.intermediate_dense.weight' is "
                       "missing or not [ffn, %d]",
                       L->prefix, c->hidden);
    c->ffn_dim = (int)t->shape[0];
    if (!(t = peek(L, "encoder.layers.0.attention.rel_attn_embed.weight", 0)))
        return mrw_err(err, MRW_E_MISSING,
                       "tensor '%sencoder.layers.0.attention.rel_attn_embed.weight' is missing", L->prefix);
    if (t->ndim != 2 || TDIM(t, 0) < 2 || TDIM(t, 1) < 1 || c->hidden % t->shape[1])
        return mrw_err(err, MRW_E_SHAPE, "tensor '%s' must be [num_buckets, heads] with heads dividing %d",
                       t->name, c->hidden);
    c->num_buckets = (int)t->shape[0];
    c->n_heads = (int)t->shape[1];
    c->max_distance = jc->present ? jc->max_dist : 800;
    c->stable_ln = jc->present ? jc->stable : c->norm_layer;
    c->ln_eps = jc->present ? (float)jc->eps : 1e-5f;
    c->from_config = jc->present;
    if ((s = agree(err, "hidden_size", jc->hidden, c->hidden)) ||
        (s = agree(err, "num_hidden_layers", jc->n_layers, c->n_layers)) ||
        (s = agree(err, "num_attention_heads", jc->n_heads, c->n_heads)) ||
        (s = agree(err, "intermediate_size", jc->ffn, c->ffn_dim)) ||
        (s = agree(err, "num_buckets", jc->buckets, c->num_buckets)))
        return s;
    if (c->max_distance <= c->num_buckets / 4)
        return mrw_err(err, MRW_E_ARG, "max_bucket_distance %d must exceed num_buckets/4 = %d",
                       c->max_distance, c->num_buckets / 4);
    if (mrw_audio_act_parse(jc->act, &c->act))
        return mrw_err(err, MRW_E_UNSUPPORTED, "hidden_act '%s' is not supported", jc->act);
    if (mrw_audio_act_parse(jc->feat_act, &c->feat_act))
        return mrw_err(err, MRW_E_UNSUPPORTED, "feat_extract_activation '%s' is not supported", jc->feat_act);
    return MRW_OK;
}

static int conv1_direct_ok(void);

static mrw_status load_conv(mrw_wloader *L, mrw_wavlm *m, int i) {
    const mrw_wavlm_config *c = &m->cfg;
    const int co = c->conv_dim[i], ci = i ? c->conv_dim[i - 1] : 1, K = c->conv_kernel[i];
    char name[128];
    snprintf(name, sizeof name, "feature_extractor.conv_layers.%d.conv.weight", i);
    const float *w;
    float *tmp, *wt;
    const int64_t shape[3] = {co, ci, K};
    mrw_status s = mrw_audio_weight_f32(L, name, 3, shape, &w, &tmp);
    if (s) return s;
    if (!(wt = mrw_arena_keep(L->arena, malloc((size_t)co * ci * K * sizeof *wt)))) {
        free(tmp);
        return mrw_err(L->err, MRW_E_NOMEM, "out of memory");
    }
    mrw_audio_conv_weight_tk(w, co, ci, K, wt);
    free(tmp);
    conv_layer *cl = &m->conv[i];
    mrw_mat_init(&cl->w, MRW_DT_F32, co, K * ci, wt);
    if (ci == 1 && conv1_direct_ok()) {
        if (!(cl->wk = mrw_arena_keep(L->arena, malloc((size_t)co * K * sizeof(float)))))
            return mrw_err(L->err, MRW_E_NOMEM, "out of memory");
        for (int o = 0; o < co; o++)
            for (int j = 0; j < K; j++) cl->wk[(size_t)j * co + o] = wt[(size_t)o * K + j];
    }
    if (c->conv_bias && (s = vec(L, "feature_extractor.conv_layers.%d.conv.bias", i, co, &cl->b))) return s;
    if (c->norm_layer || i == 0) {
        if ((s = vec(L, "feature_extractor.conv_layers.%d.layer_norm.weight", i, co, &cl->nw)) ||
            (s = vec(L, "feature_extractor.conv_layers.%d.layer_norm.bias", i, co, &cl->nb)))
            return s;
    }
    return MRW_OK;
}

/* The positional convolution (per group: cg = C/G channels in and out, K = 128 taps) as a direct AVX-512
 * kernel. Through the shared GEMM every one of its T x K·cg window elements is packed once for only cg = 48
 * outputs, so packing costs as much as the products (~35 GFLOP/s). Here a tile of TT time steps x cg outputs
 * stays in registers while taps and input channels stream: weights [K][cg in][cg out] (a tap block of
 * POS_JB taps stays in L2), inputs broadcast from the group's padded [T + K][cg] rows. */
#ifdef MRW_VMATH_AVX512
#define POS_JB 16

static inline __mmask16 pos_mask(int n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* Named accumulators (held in arrays, GCC stored them to memory on every step). Row R of a tile reads input
 * row min(R, nr-1) and is stored only when R < nr. */
#define POS_R8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define POS_R6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define POS_ROW(R)                                              \
    const float *x##R = x + (size_t)(R < nr ? R : nr - 1) * cg; \
    float *o##R = o + (size_t)(R < nr ? R : nr - 1) * ldo;
#define POS_ACC(R, V, M, OFF) __m512 V##R = acc ? _mm512_maskz_loadu_ps(M, o##R + OFF) : _mm512_setzero_ps();
#define POS_DECL3(R) POS_ROW(R) POS_ACC(R, a, m0, 0) POS_ACC(R, b, m1, 16) POS_ACC(R, c, m2, 32)
#define POS_DECL4(R) POS_DECL3(R) POS_ACC(R, d, m3, 48)
#define POS_STEP3(R)                               \
    {                                              \
        const __m512 v = _mm512_set1_ps(x##R[xo]); \
        a##R = _mm512_fmadd_ps(v, w0, a##R);       \
        b##R = _mm512_fmadd_ps(v, w1, b##R);       \
        c##R = _mm512_fmadd_ps(v, w2, c##R);       \
    }
#define POS_STEP4(R)                               \
    {                                              \
        const __m512 v = _mm512_set1_ps(x##R[xo]); \
        a##R = _mm512_fmadd_ps(v, w0, a##R);       \
        b##R = _mm512_fmadd_ps(v, w1, b##R);       \
        c##R = _mm512_fmadd_ps(v, w2, c##R);       \
        d##R = _mm512_fmadd_ps(v, w3, d##R);       \
    }
#define POS_STORE3(R)                               \
    if (R < nr) {                                   \
        _mm512_mask_storeu_ps(o##R, m0, a##R);      \
        _mm512_mask_storeu_ps(o##R + 16, m1, b##R); \
        _mm512_mask_storeu_ps(o##R + 32, m2, c##R); \
    }
#define POS_STORE4(R) POS_STORE3(R) if (R < nr) _mm512_mask_storeu_ps(o##R + 48, m3, d##R);

/* o[r][0 .. cg) (+)= Σ_{j in [j0, j1)} Σ_i w[j][i][:]·x[r + j][i] for r < nr <= 8 (cg <= 48). */
static void pos_tile3(const float *x, int cg, int nr, int j0, int j1, const float *w, float *o, int ldo,
                      int acc) {
    const __mmask16 m0 = pos_mask(cg), m1 = pos_mask(cg - 16), m2 = pos_mask(cg - 32);
    POS_R8(POS_DECL3)
    for (int j = j0; j < j1; j++)
        for (int i = 0; i < cg; i++) {
            const float *wr = w + ((size_t)j * cg + i) * cg;
            const __m512 w0 = _mm512_maskz_loadu_ps(m0, wr), w1 = _mm512_maskz_loadu_ps(m1, wr + 16);
            const __m512 w2 = _mm512_maskz_loadu_ps(m2, wr + 32);
            const size_t xo = (size_t)j * cg + i;
            POS_R8(POS_STEP3)
        }
    POS_R8(POS_STORE3)
}

/* The same for cg <= 64, r < nr <= 6. */
static void pos_tile4(const float *x, int cg, int nr, int j0, int j1, const float *w, float *o, int ldo,
                      int acc) {
    const __mmask16 m0 = pos_mask(cg), m1 = pos_mask(cg - 16), m2 = pos_mask(cg - 32), m3 = pos_mask(cg - 48);
    POS_R6(POS_DECL4)
    for (int j = j0; j < j1; j++)
        for (int i = 0; i < cg; i++) {
            const float *wr = w + ((size_t)j * cg + i) * cg;
            const __m512 w0 = _mm512_maskz_loadu_ps(m0, wr), w1 = _mm512_maskz_loadu_ps(m1, wr + 16);
            const __m512 w2 = _mm512_maskz_loadu_ps(m2, wr + 32), w3 = _mm512_maskz_loadu_ps(m3, wr + 48);
            const size_t xo = (size_t)j * cg + i;
            POS_R6(POS_STEP4)
        }
    POS_R6(POS_STORE4)
}

static int pos_direct_ok(int cg) { return cg <= 64; }

/* One group: out[t][0 .. cg) for t < T (row stride ldo) from xp = [T + K][cg] padded input rows. */
static void pos_group_direct(const float *xp, int T, int cg, int K, const float *w, float *out, int ldo) {
    const int tt = cg <= 48 ? 8 : 6;
    for (int j0 = 0; j0 < K; j0 += POS_JB) {
        const int j1 = K - j0 < POS_JB ? K : j0 + POS_JB;
        for (int t0 = 0; t0 < T; t0 += tt) {
            const int nr = T - t0 < tt ? T - t0 : tt;
            if (tt == 8)
                pos_tile3(xp + (size_t)t0 * cg, cg, nr, j0, j1, w, out + (size_t)t0 * ldo, ldo, j0 > 0);
            else
                pos_tile4(xp + (size_t)t0 * cg, cg, nr, j0, j1, w, out + (size_t)t0 * ldo, ldo, j0 > 0);
        }
    }
}
#else
static int pos_direct_ok(int cg) {
    (void)cg;
    return 0;
}
static void pos_group_direct(const float *xp, int T, int cg, int K, const float *w, float *out, int ldo) {
    (void)xp, (void)T, (void)cg, (void)K, (void)w, (void)out, (void)ldo;
}
#endif

/* The first conv layer reads one channel (the waveform): as a GEMM its inner dimension is only K = 10, and
 * the shared GEMM ran at ~8 GFLOP/s. Directly: y[t][o] = Σ_j wk[j][o]·x[S·t + j], tiles of 6 time steps x 64
 * outputs in registers. */
#ifdef MRW_VMATH_AVX512
static int conv1_direct_ok(void) { return 1; }

#define C1_R6(X) X(0) X(1) X(2) X(3) X(4) X(5)
static void conv1_tile(const float *x, int S, int K, const float *wk, int C, int col0, int nr, float *y,
                       int ldy) {
    const __mmask16 m0 = pos_mask(C - col0), m1 = pos_mask(C - col0 - 16), m2 = pos_mask(C - col0 - 32),
                    m3 = pos_mask(C - col0 - 48);
#define C1_DECL(R)                                             \
    const float *x##R = x + (size_t)(R < nr ? R : nr - 1) * S; \
    __m512 a##R = _mm512_setzero_ps(), b##R = a##R, c##R = a##R, d##R = a##R;
    C1_R6(C1_DECL)
    for (int j = 0; j < K; j++) {
        const float *wr = wk + (size_t)j * C + col0;
        const __m512 w0 = _mm512_maskz_loadu_ps(m0, wr), w1 = _mm512_maskz_loadu_ps(m1, wr + 16);
        const __m512 w2 = _mm512_maskz_loadu_ps(m2, wr + 32), w3 = _mm512_maskz_loadu_ps(m3, wr + 48);
#define C1_STEP(R)                                \
    {                                             \
        const __m512 v = _mm512_set1_ps(x##R[j]); \
        a##R = _mm512_fmadd_ps(v, w0, a##R);      \
        b##R = _mm512_fmadd_ps(v, w1, b##R);      \
        c##R = _mm512_fmadd_ps(v, w2, c##R);      \
        d##R = _mm512_fmadd_ps(v, w3, d##R);      \
    }
        C1_R6(C1_STEP)
    }
#define C1_STORE(R)                              \
    if (R < nr) {                                \
        float *o = y + (size_t)R * ldy + col0;   \
        _mm512_mask_storeu_ps(o, m0, a##R);      \
        _mm512_mask_storeu_ps(o + 16, m1, b##R); \
        _mm512_mask_storeu_ps(o + 32, m2, c##R); \
        _mm512_mask_storeu_ps(o + 48, m3, d##R); \
    }
    C1_R6(C1_STORE)
}

static void conv1_direct(const float *x, int S, int K, const float *wk, int C, int To, float *y, int nt) {
    const int tiles = (To + 5) / 6;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int tt = 0; tt < tiles; tt++) {
        const int t0 = tt * 6, nr = To - t0 < 6 ? To - t0 : 6;
        for (int c0 = 0; c0 < C; c0 += 64)
            conv1_tile(x + (size_t)t0 * S, S, K, wk, C, c0, nr, y + (size_t)t0 * C, C);
    }
}
#else
static int conv1_direct_ok(void) { return 0; }
static void conv1_direct(const float *x, int S, int K, const float *wk, int C, int To, float *y, int nt) {
    (void)x, (void)S, (void)K, (void)wk, (void)C, (void)To, (void)y, (void)nt;
}
#endif

/* Index along the weight-norm dim `dim` of element i of a [C][cg][K] tensor. */
#define WN_INDEX(i, dim, cg, K) \
    ((dim) == 2 ? (int)((i) % (K)) : (dim) == 1 ? (int)((i) / (K) % (cg)) : (int)((i) / ((size_t)(cg) * (K))))

/* The positional convolution's weight: stored plainly or as weight norm w = g · v / ‖v‖, the norm taken over
 * every dim but the one g spans (transformers: dim 2, the kernel taps). Reordered per group to window
 * order [C][K][C/groups]. */
static mrw_status load_pos_conv(mrw_wloader *L, mrw_wavlm *m, const jconfig *jc) {
    mrw_wavlm_config *c = &m->cfg;
    static const char *const names[][2] = {
        {"encoder.pos_conv_embed.conv.weight_g", "encoder.pos_conv_embed.conv.weight_v"},
        {"encoder.pos_conv_embed.conv.parametrizations.weight.original0",
         "encoder.pos_conv_embed.conv.parametrizations.weight.original1"},
        {NULL, "encoder.pos_conv_embed.conv.weight"}};
    int which = 0;
    while (which < 3 && !peek(L, names[which][1], 0)) which++;
    if (which == 3)
        return mrw_err(L->err, MRW_E_MISSING,
                       "tensor '%sencoder.pos_conv_embed.conv.weight_v' (or "
                       "parametrizations.weight.original1, or weight) is missing",
                       L->prefix);
    const mrw_tensor_info *tv = peek(L, names[which][1], 0);
    const int C = c->hidden;
    if (tv->ndim != 3 || tv->shape[0] != C || TDIM(tv, 1) < 0 || C % tv->shape[1] || TDIM(tv, 2) < 0)
        return mrw_err(L->err, MRW_E_SHAPE, "tensor '%s' must be [%d, %d/groups, kernel]", tv->name, C, C);
    const int cg = (int)tv->shape[1], G = C / cg, K = (int)tv->shape[2];
    c->pos_kernel = K;
    c->pos_groups = G;
    mrw_status s;
    if ((s = agree(L->err, "num_conv_pos_embeddings", jc->pos_k, K)) ||
        (s = agree(L->err, "num_conv_pos_embedding_groups", jc->pos_g, G)))
        return s;
    const int64_t vshape[3] = {C, cg, K};
    const float *v;
    float *tmp;
    if ((s = mrw_audio_weight_f32(L, names[which][1], 3, vshape, &v, &tmp))) return s;
    const size_t n = (size_t)C * cg * K;
    double *scale = NULL; /* weight norm: per index j of `dim`, g_j / ‖v[..j..]‖ (sums in double) */
    int dim = -1;
    if (which < 2) {
        const mrw_tensor_info *tg = peek(L, names[which][0], 0);
        for (int d = 0; tg && tg->ndim == 3 && d < 3 && dim < 0; d++) {
            int ok = 1;
            for (int j = 0; j < 3; j++) ok &= tg->shape[j] == (j == d ? vshape[d] : 1);
            if (ok) dim = d;
        }
        float *g = NULL;
        if (dim < 0)
            s = mrw_err(L->err, tg ? MRW_E_SHAPE : MRW_E_MISSING, "tensor '%s%s' %s", L->prefix,
                        names[which][0],
                        tg ? "must be [1,1,kernel] (weight norm over dim 2) or [out,1,1]" : "is missing");
        else if (!(s = mrw_wl_vec(L, names[which][0], (int)vshape[dim], &g)) &&
                 !(scale = calloc((size_t)vshape[dim], sizeof *scale)))
            s = mrw_err(L->err, MRW_E_NOMEM, "out of memory");
        if (s) {
            free(tmp);
            return s;
        }
        for (size_t i = 0; i < n; i++) scale[WN_INDEX(i, dim, cg, K)] += (double)v[i] * v[i];
        for (int j = 0; j < vshape[dim]; j++) scale[j] = g[j] / sqrt(scale[j]);
    }
    if (!(m->pos_w = mrw_arena_keep(L->arena, malloc(n * sizeof(float))))) {
        free(tmp);
        free(scale);
        return mrw_err(L->err, MRW_E_NOMEM, "out of memory");
    }
    /* direct kernel: [G][K][i][o]; GEMM: window order [g*cg + o][K][i]; from [g*cg + o][i][K] */
    m->pos_direct = pos_direct_ok(cg);
    for (int o = 0; o < C; o++)
        for (int i = 0; i < cg; i++)
            for (int j = 0; j < K; j++) {
                const size_t src = ((size_t)o * cg + i) * K + j;
                const float val = scale ? (float)(v[src] * scale[WN_INDEX(src, dim, cg, K)]) : v[src];
                const int g = o / cg, oo = o % cg;
                const size_t dst =
                    m->pos_direct ? (((size_t)g * K + j) * cg + i) * cg + oo : ((size_t)o * K + j) * cg + i;
                m->pos_w[dst] = val;
            }
    free(tmp);
    free(scale);
    return vec(L, "encoder.pos_conv_embed.conv.bias", 0, C, &m->pos_b);
}

static mrw_status load_layer(mrw_wloader *L, mrw_wavlm *m, int l, int lowp) {
    const mrw_wavlm_config *c = &m->cfg;
    const int d = c->hidden, f = c->ffn_dim, D = d / c->n_heads;
    wv_layer *w = &m->layers[l];
    mrw_status s;
    if ((s = mat(L, "encoder.layers.%d.attention.q_proj.weight", l, d, d, lowp, &w->wq)) ||
        (s = mat(L, "encoder.layers.%d.attention.k_proj.weight", l, d, d, lowp, &w->wk)) ||
        (s = mat(L, "encoder.layers.%d.attention.v_proj.weight", l, d, d, lowp, &w->wv)) ||
        (s = mat(L, "encoder.layers.%d.attention.out_proj.weight", l, d, d, lowp, &w->wo)) ||
        (s = mat(L, "encoder.layers.%d.feed_forward.intermediate_dense.weight", l, f, d, lowp, &w->w1)) ||
        (s = mat(L, "encoder.layers.%d.feed_forward.output_dense.weight", l, d, f, lowp, &w->w2)) ||
        (s = mat(L, "encoder.layers.%d.attention.gru_rel_pos_linear.weight", l, 8, D, 0, &w->gru)) ||
        (s = vec(L, "encoder.layers.%d.attention.q_proj.bias", l, d, &w->bq)) ||
        (s = vec(L, "encoder.layers.%d.attention.k_proj.bias", l, d, &w->bk)) ||
        (s = vec(L, "encoder.layers.%d.attention.v_proj.bias", l, d, &w->bv)) ||
        (s = vec(L, "encoder.layers.%d.attention.out_proj.bias", l, d, &w->bo)) ||
        (s = vec(L, "encoder.layers.%d.feed_forward.intermediate_dense.bias", l, f, &w->b1)) ||
        (s = vec(L, "encoder.layers.%d.feed_forward.output_dense.bias", l, d, &w->b2)) ||
        (s = vec(L, "encoder.layers.%d.attention.gru_rel_pos_linear.bias", l, 8, &w->gru_b)) ||
        (s = vec(L, "encoder.layers.%d.attention.gru_rel_pos_const", l, c->n_heads, &w->gru_const)) ||
        (s = vec(L, "encoder.layers.%d.layer_norm.weight", l, d, &w->ln1_w)) ||
        (s = vec(L, "encoder.layers.%d.layer_norm.bias", l, d, &w->ln1_b)) ||
        (s = vec(L, "encoder.layers.%d.final_layer_norm.weight", l, d, &w->ln2_w)) ||
        (s = vec(L, "encoder.layers.%d.final_layer_norm.bias", l, d, &w->ln2_b)))
        return s;
    return MRW_OK;
}

static mrw_status load(mrw_wavlm *m, const mrw_tfile *f, const mrw_wavlm_params *p, mrw_error *err) {
    jconfig jc;
    mrw_status s = parse_config(p, &jc, err);
    if (s) return s;
    const char *base = p && p->prefix ? p->prefix : "";
    if (!find_prefix(f, base, m->prefix, sizeof m->prefix) &&
        !(!(p && p->prefix) && find_prefix(f, "encoder.model.", m->prefix, sizeof m->prefix)))
        return mrw_err(err, MRW_E_MISSING,
                       "no WavLM model: neither '%sfeature_extractor.conv_layers.0.conv.weight' "
                       "nor '%swavlm.feature_extractor.conv_layers.0.conv.weight' exists",
                       base, base);
    mrw_wloader L;
    if ((s = mrw_wl_init(&L, f, m->prefix, &m->arena, err))) return s;
    mrw_wavlm_config *c = &m->cfg;
    const int lowp = p && p->keep_lowp;
    s = derive_config(&L, &jc, c, err);
    for (int i = 0; !s && i < c->n_conv; i++) s = load_conv(&L, m, i);
    const int cl = c->conv_dim[c->n_conv - 1];
    if (!s && !(s = vec(&L, "feature_projection.layer_norm.weight", 0, cl, &m->fp_ln_w)) &&
        !(s = vec(&L, "feature_projection.layer_norm.bias", 0, cl, &m->fp_ln_b)) &&
        !(s = mat(&L, "feature_projection.projection.weight", 0, c->hidden, cl, lowp, &m->fp)) &&
        !(s = vec(&L, "feature_projection.projection.bias", 0, c->hidden, &m->fp_b)) &&
        !(s = load_pos_conv(&L, m, &jc)) &&
        !(s = vec(&L, "encoder.layer_norm.weight", 0, c->hidden, &m->enc_ln_w)))
        s = vec(&L, "encoder.layer_norm.bias", 0, c->hidden, &m->enc_ln_b);
    if (!s) {
        float *e;
        const int64_t shape[2] = {c->num_buckets, c->n_heads};
        s = mrw_wl_f32(&L, "encoder.layers.0.attention.rel_attn_embed.weight", 2, shape, &e);
        m->rel_embed = e;
    }
    if (!s && !(m->layers = mrw_arena_keep(&m->arena, calloc((size_t)c->n_layers, sizeof *m->layers))))
        s = mrw_err(err, MRW_E_NOMEM, "out of memory");
    for (int l = 0; !s && l < c->n_layers; l++) s = load_layer(&L, m, l, lowp);
    static const char *const skip[] = {"masked_spec_embed", NULL}; /* training-time masking vector */
    if (!s) s = mrw_wl_check_unused(&L, skip);
    mrw_wl_done(&L);
    return s;
}

mrw_status mrw_wavlm_load(const mrw_tfile *f, const mrw_wavlm_params *p, mrw_wavlm **out, mrw_error *err) {
    *out = NULL;
    if (!f) return mrw_err(err, MRW_E_ARG, "no tensor file");
    mrw_wavlm *m = calloc(1, sizeof *m);
    if (!m) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    mrw_status s = load(m, f, p, err);
    if (s) {
        mrw_wavlm_free(m);
        return s;
    }
    *out = m;
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------------- forward */

/* GroupNorm with one group per channel over [T][C] (each column normalised over time), then the activation:
 * one pass for Σy and Σy² (double, per thread over its rows), one applying scale, shift and activation. A
 * per-channel conv bias cancels in the normalisation, so it is never added. */
static mrw_status channel_norm_act(float *y, int T, int C, const float *w, const float *b, mrw_audio_act act,
                                   int nt) {
    double *acc = calloc((size_t)nt * 2 * C, sizeof *acc);
    float *ss = malloc(2 * (size_t)C * sizeof *ss);
    if (!acc || !ss) {
        free(acc);
        free(ss);
        return MRW_E_NOMEM;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        double *s1 = acc + (size_t)omp_get_thread_num() * 2 * C, *s2 = s1 + C;
#pragma omp for schedule(static)
        for (int t = 0; t < T; t++) {
            const float *r = y + (size_t)t * C;
            for (int c = 0; c < C; c++) {
                s1[c] += r[c];
                s2[c] += (double)r[c] * r[c];
            }
        }
    }
    for (int c = 0; c < C; c++) {
        double sum = 0, sq = 0;
        for (int i = 0; i < nt; i++) {
            sum += acc[(size_t)i * 2 * C + c];
            sq += acc[(size_t)i * 2 * C + C + c];
        }
        const double mean = sum / T, var = sq / T - mean * mean, inv = 1.0 / sqrt((var > 0 ? var : 0) + 1e-5);
        ss[c] = (float)(inv * w[c]);
        ss[C + c] = (float)(b[c] - mean * inv * w[c]);
    }
    mrw_audio_affine_act(y, C, ss, ss + C, T, C, act, nt);
    free(acc);
    free(ss);
    return MRW_OK;
}

/* Conv feature extractor: wave -> [T][C_last] in `a` (b is scratch of the same size). Returns the buffer
 * holding the result. */
static float *conv_stack(const mrw_wavlm *m, mrw_kctx *k, const float *wave, int n, float *a, float *b,
                         int *T_out) {
    const mrw_wavlm_config *c = &m->cfg;
    const float *x = wave;
    int T = n, cin = 1, nt = k->n_threads;
    float *y = a;
    for (int i = 0; i < c->n_conv; i++) {
        const int co = c->conv_dim[i], To = (T - c->conv_kernel[i]) / c->conv_stride[i] + 1;
        const conv_layer *cl = &m->conv[i];
        if (cl->wk)
            conv1_direct(x, c->conv_stride[i], c->conv_kernel[i], cl->wk, co, To, y, nt);
        else
            mrw_audio_linear(k, &cl->w, NULL, x, c->conv_stride[i] * cin, To, y, co, 0);
        if (cl->nw && !c->norm_layer) { /* GroupNorm (layer 0) over time, then the activation */
            if (channel_norm_act(y, To, co, cl->nw, cl->nb, c->feat_act, nt)) return NULL;
        } else if (cl->nw) {
            mrw_add_bias(y, co, cl->b, To, co, nt);
            mrw_layernorm(y, y, To, co, cl->nw, cl->nb, 1e-5f, nt);
            mrw_audio_bias_act(y, co, NULL, To, co, c->feat_act, nt);
        } else {
            mrw_audio_bias_act(y, co, cl->b, To, co, c->feat_act, nt);
        }
        x = y;
        y = y == a ? b : a;
        T = To;
        cin = co;
    }
    *T_out = T;
    return (float *)x;
}

/* x += GELU(pos_conv(x) + bias), the grouped convolution run per group on separate threads: each group's
 * input channels are laid out [T + K][C/G] (zero rows either side) so that a window is contiguous. */
static mrw_status pos_conv(const mrw_wavlm *m, mrw_kctx *k, float *x, int T, float *xg, float *y) {
    const mrw_wavlm_config *c = &m->cfg;
    const int C = c->hidden, G = c->pos_groups, cg = C / G, K = c->pos_kernel, pad = K / 2, Tp = T + 2 * pad;
    const int nt = k->n_threads;
    mrw_kctx *sub = calloc((size_t)nt, sizeof *sub);
    if (!sub) return MRW_E_NOMEM;
    for (int i = 0; i < nt; i++) {
        mrw_kctx_init(&sub[i], 1);
        sub[i].exact = k->exact;
    }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int g = 0; g < G; g++) {
        float *xp = xg + (size_t)g * Tp * cg;
        memset(xp, 0, (size_t)pad * cg * sizeof(float));
        memset(xp + (size_t)(pad + T) * cg, 0, (size_t)(Tp - pad - T) * cg * sizeof(float));
        for (int t = 0; t < T; t++)
            memcpy(xp + (size_t)(pad + t) * cg, x + (size_t)t * C + (size_t)g * cg, cg * sizeof(float));
        /* output frames 0 .. T-1; an even kernel's extra frame T is never computed */
        if (m->pos_direct) {
            pos_group_direct(xp, T, cg, K, m->pos_w + (size_t)g * K * cg * cg, y + (size_t)g * cg, C);
            continue;
        }
        mrw_mat W;
        mrw_mat_init(&W, MRW_DT_F32, cg, K * cg, m->pos_w + (size_t)g * cg * K * cg);
        mrw_audio_linear(&sub[omp_get_thread_num()], &W, NULL, xp, cg, T, y + (size_t)g * cg, C, 0);
    }
    for (int i = 0; i < nt; i++) mrw_kctx_free(&sub[i]);
    free(sub);
    mrw_audio_bias_act(y, C, m->pos_b, T, C, c->feat_act, nt);
    for (size_t i = 0; i < (size_t)T * C; i++) x[i] += y[i];
    return MRW_OK;
}

/* gate[t][h] = σ(a)·(σ(b)·const_h - 1) + 2, (a, b) = the two 4-sums of gru_rel_pos_linear of head h of
 * u[t]. */
static void rel_gate(const wv_layer *w, mrw_kctx *k, const float *u, int T, int H, int D, float *proj,
                     float *gate) {
    mrw_matmul(k, &w->gru, u, D, proj, 8, T * H, 0); /* u [T][H*D] read as [T*H][D] */
#pragma omp parallel for num_threads(k->n_threads) schedule(static) if (k->n_threads > 1 && T * H >= 1024)
    for (int r = 0; r < T * H; r++) {
        const float *p = proj + (size_t)r * 8, *bb = w->gru_b;
        const float sa = (p[0] + bb[0]) + (p[1] + bb[1]) + (p[2] + bb[2]) + (p[3] + bb[3]);
        const float sb = (p[4] + bb[4]) + (p[5] + bb[5]) + (p[6] + bb[6]) + (p[7] + bb[7]);
        const float ga = 1.0f / (1.0f + expf(-sa)), gb = 1.0f / (1.0f + expf(-sb));
        gate[r] = ga * (gb * w->gru_const[r % H] - 1.0f) + 2.0f;
    }
}

typedef struct {
    float *h, *q, *k, *v, *att, *ff, *proj, *gate, *tab, *ascr;
} wbufs;

static mrw_status layer_forward(const mrw_wavlm *m, const wv_layer *w, mrw_kctx *k, float *x, int T,
                                const wbufs *b) {
    const mrw_wavlm_config *c = &m->cfg;
    const int d = c->hidden, H = c->n_heads, D = d / H, nt = k->n_threads;
    const float *u = x; /* the attention's input: x (post-LN) or LN(x) (stable) */
    if (c->stable_ln) {
        mrw_layernorm(x, b->h, T, d, w->ln1_w, w->ln1_b, c->ln_eps, nt);
        u = b->h;
    }
    rel_gate(w, k, u, T, H, D, b->proj, b->gate);
    mrw_audio_linear(k, &w->wq, w->bq, u, d, T, b->q, d, 0);
    mrw_audio_linear(k, &w->wk, w->bk, u, d, T, b->k, d, 0);
    mrw_audio_linear(k, &w->wv, w->bv, u, d, T, b->v, d, 0);
    const mrw_audio_relbias rb = {.tab = b->tab, .gate = b->gate};
    mrw_status s =
        mrw_audio_attention(k, b->q, b->k, b->v, d, T, H, D, 1.0f / sqrtf((float)D), &rb, b->att, d, b->ascr);
    if (s) return s;
    mrw_audio_linear(k, &w->wo, NULL, b->att, d, T, b->q, d, 0); /* q is free after the attention */
    mrw_audio_residual(x, b->q, w->bo, T, d, nt);
    const float *f_in = x;
    if (c->stable_ln) {
        mrw_layernorm(x, b->h, T, d, w->ln2_w, w->ln2_b, c->ln_eps, nt);
        f_in = b->h;
    } else {
        mrw_layernorm(x, x, T, d, w->ln1_w, w->ln1_b, c->ln_eps, nt);
    }
    mrw_audio_linear(k, &w->w1, NULL, f_in, d, T, b->ff, c->ffn_dim, 0);
    mrw_audio_bias_act(b->ff, c->ffn_dim, w->b1, T, c->ffn_dim, c->act, nt);
    mrw_audio_linear(k, &w->w2, NULL, b->ff, c->ffn_dim, T, b->q, d, 0);
    mrw_audio_residual(x, b->q, w->b2, T, d, nt);
    if (!c->stable_ln) mrw_layernorm(x, x, T, d, w->ln2_w, w->ln2_b, c->ln_eps, nt);
    return MRW_OK;
}

/* Layer 0's position bias as a table over relative positions: tab[h][(s - t) + T - 1]. */
static void rel_table(const mrw_wavlm *m, int T, float *tab) {
    const mrw_wavlm_config *c = &m->cfg;
    const int H = c->n_heads;
    for (int r = -(T - 1); r <= T - 1; r++) {
        const int bkt = mrw_wavlm_rel_bucket(r, c->num_buckets, c->max_distance);
        for (int h = 0; h < H; h++)
            tab[(size_t)h * (2 * T - 1) + r + T - 1] = m->rel_embed[(size_t)bkt * H + h];
    }
}

mrw_status mrw_wavlm_forward(const mrw_wavlm *m, mrw_kctx *k, const float *wave, int n_samples, float *out,
                             mrw_error *err) {
    if (!m || !k || !wave || !out) return mrw_err(err, MRW_E_ARG, "wavlm: NULL argument");
    const mrw_wavlm_config *c = &m->cfg;
    if (n_samples > MRW_WAVLM_MAX_SAMPLES)
        return mrw_err(err, MRW_E_LIMIT,
                       "wavlm: %d samples exceed the limit of %d (%d s at 16 kHz): split the audio",
                       n_samples, MRW_WAVLM_MAX_SAMPLES, MRW_WAVLM_MAX_SAMPLES / 16000);
    const int T = mrw_wavlm_out_frames(m, n_samples);
    if (T < 1)
        return mrw_err(err, MRW_E_ARG,
                       "wavlm: a waveform of %d samples is too short for the convolutional feature "
                       "extractor (it needs at least %d)",
                       n_samples, mrw_wavlm_min_samples(m));
    /* conv ping-pong buffers: even layers write the first, odd ones the second */
    size_t conv_n[2] = {0, 0};
    for (int i = 0, t = n_samples; i < c->n_conv; i++) {
        t = (t - c->conv_kernel[i]) / c->conv_stride[i] + 1;
        const size_t n = (size_t)t * c->conv_dim[i];
        conv_n[i & 1] = n > conv_n[i & 1] ? n : conv_n[i & 1];
    }
    const int d = c->hidden, H = c->n_heads, cl = c->conv_dim[c->n_conv - 1];
    const size_t td = (size_t)T * d;
    const size_t xg_n = (size_t)(T + 2 * (c->pos_kernel / 2)) * d;
    const size_t layer_n = 6 * td + (size_t)T * c->ffn_dim + (size_t)T * H * 9 + (size_t)H * (2 * T - 1) +
                           mrw_audio_attention_scratch(T, H, d / H, k->n_threads);
    size_t big = conv_n[0] + conv_n[1] > xg_n + td ? conv_n[0] + conv_n[1] : xg_n + td;
    big = big > layer_n ? big : layer_n;
    float *owned, *x = mrw_audio_workspace(k, td + big, &owned);
    if (!x) return mrw_err(err, MRW_E_NOMEM, "wavlm: out of memory for %d samples", n_samples);
    float *scratch = x + td;
    mrw_status s = MRW_OK;
    /* conv stack and feature projection */
    int Tc;
    float *feat = conv_stack(m, k, wave, n_samples, scratch, scratch + conv_n[0], &Tc);
    if (!feat) {
        s = MRW_E_NOMEM;
        goto done;
    }
    mrw_layernorm(feat, feat, T, cl, m->fp_ln_w, m->fp_ln_b, c->ln_eps, k->n_threads);
    mrw_audio_linear(k, &m->fp, m->fp_b, feat, cl, T, x, d, 0);
    /* positional convolution */
    if ((s = pos_conv(m, k, x, T, scratch, scratch + xg_n))) goto done;
    if (!c->stable_ln) mrw_layernorm(x, x, T, d, m->enc_ln_w, m->enc_ln_b, c->ln_eps, k->n_threads);
    wbufs b;
    b.h = scratch;
    b.q = b.h + td;
    b.k = b.q + td;
    b.v = b.k + td;
    b.att = b.v + td;
    b.ff = b.att + td;
    b.proj = b.ff + (size_t)T * c->ffn_dim;
    b.gate = b.proj + (size_t)T * H * 8;
    b.tab = b.gate + (size_t)T * H;
    b.ascr = b.tab + (size_t)H * (2 * T - 1);
    rel_table(m, T, b.tab);
    for (int l = 0; l < c->n_layers && !s; l++) s = layer_forward(m, &m->layers[l], k, x, T, &b);
    if (!s) {
        if (c->stable_ln)
            mrw_layernorm(x, out, T, d, m->enc_ln_w, m->enc_ln_b, c->ln_eps, k->n_threads);
        else
            memcpy(out, x, td * sizeof(float));
    }
done:
    free(owned);
    return s ? mrw_err(err, s, "wavlm: out of memory for %d frames", T) : MRW_OK;
}
