/* Timer encoder (thuml/timer-base-84m layout): loading by tensor name and an fp32 forward (see timer.h). */
#include "ts/timer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "formats/tensorfile.h"
#include "kernels/cpu/kctx.h"
#include "tensor/dtype.h"
#include "train/train_nn.h"

enum { L_QW, L_QB, L_KW, L_KB, L_VW, L_VB, L_OW, L_GW, L_UW, L_DW, L_N1W, L_N1B, L_N2W, L_N2B, L_COUNT };

#define TIMER_MAX_LAYERS 128

struct mrw_timer {
    mrw_timer_config cfg;
    float *mem;
    float *emb, *norm_w, *norm_b, *head;
    float *lw[TIMER_MAX_LAYERS][L_COUNT];
};

const mrw_timer_config *mrw_timer_get_config(const mrw_timer *t) { return &t->cfg; }

void mrw_timer_free(mrw_timer *t) {
    if (!t) return;
    free(t->mem);
    free(t);
}

int mrw_timer_patches(const mrw_timer *t, int64_t T) {
    if (T < t->cfg.patch) return 0;
    int64_t n = T / t->cfg.patch;
    return n > (1 << 20) ? 0 : (int)n;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* config.json values (0 where absent). */
typedef struct {
    int heads, hidden, layers, intermediate, patch;
    double rope_theta;
    char act[32];
} timer_json;

static mrw_status read_config(const char *path, timer_json *j, mrw_error *err) {
    memset(j, 0, sizeof *j);
    FILE *fp = fopen(path, "rb");
    if (!fp) return MRW_E_MISSING; /* no message: the caller decides whether it is needed */
    char *buf = malloc(1 << 20);
    if (!buf) {
        fclose(fp);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, (1 << 20) - 1, fp);
    fclose(fp);
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf);
    free(buf);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return mrw_err(err, MRW_E_FORMAT, "%s: not a JSON object", path);
    }
    static const char *keys[5] = {"num_attention_heads", "hidden_size", "num_hidden_layers", "intermediate_size",
                                  "input_token_len"};
    int *dst[5] = {&j->heads, &j->hidden, &j->layers, &j->intermediate, &j->patch};
    mrw_status st = MRW_OK;
    for (int i = 0; i < 5; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
        if (!v || cJSON_IsNull(v)) continue;
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > (1 << 20) ||
            v->valuedouble != floor(v->valuedouble)) {
            st = mrw_err(err, MRW_E_FORMAT, "%s: '%s' must be a positive integer", path, keys[i]);
            break;
        }
        *dst[i] = (int)v->valuedouble;
    }
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(root, "rope_theta");
    if (rt && cJSON_IsNumber(rt) && rt->valuedouble > 0) j->rope_theta = rt->valuedouble;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && cJSON_IsString(act)) snprintf(j->act, sizeof j->act, "%s", act->valuestring);
    cJSON_Delete(root);
    return st;
}

/* The tensor `name` with the given 1-D or 2-D shape (b = 0: 1-D), or an error naming it. */
static mrw_status need(const mrw_tfile *f, const char *name, int64_t a, int64_t b, const mrw_tensor_info **out,
                       mrw_error *err) {
    const mrw_tensor_info *t = mrw_tfile_find(f, name);
    if (!t) return mrw_err(err, MRW_E_MISSING, "Timer: tensor '%s' is missing", name);
    int ok = b ? (t->ndim == 2 && t->shape[0] == a && t->shape[1] == b) : (t->ndim == 1 && t->shape[0] == a);
    if (!ok) {
        char got[96] = "", want[64];
        size_t o = 0;
        for (int d = 0; d < t->ndim && o < sizeof got; d++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        if (b) snprintf(want, sizeof want, "%lld, %lld", (long long)a, (long long)b);
        else snprintf(want, sizeof want, "%lld", (long long)a);
        return mrw_err(err, MRW_E_SHAPE, "Timer: tensor '%s' has shape [%s], expected [%s]", name, got, want);
    }
    if (t->dtype != MRW_DT_F32 && t->dtype != MRW_DT_F16 && t->dtype != MRW_DT_BF16)
        return mrw_err(err, MRW_E_UNSUPPORTED, "Timer: tensor '%s' is not f32/f16/bf16", name);
    *out = t;
    return MRW_OK;
}

mrw_status mrw_timer_open(const char *path, int heads, mrw_timer **out, mrw_error *err) {
    *out = NULL;
    char wpath[4096], cpath[4096];
    if (is_dir(path)) {
        snprintf(wpath, sizeof wpath, "%s/model.safetensors", path);
        snprintf(cpath, sizeof cpath, "%s/config.json", path);
    } else {
        snprintf(wpath, sizeof wpath, "%s", path);
        const char *sl = strrchr(path, '/');
        if (sl) snprintf(cpath, sizeof cpath, "%.*s/config.json", (int)(sl - path), path);
        else snprintf(cpath, sizeof cpath, "config.json");
    }
    timer_json js;
    mrw_status st = read_config(cpath, &js, err);
    if (st && st != MRW_E_MISSING) return st;
    if (heads <= 0) heads = js.heads;
    if (heads <= 0)
        return mrw_err(err, MRW_E_ARG, "Timer: the head count is unknown (no config.json with num_attention_heads next "
                                       "to %s)", wpath);
    if (js.act[0] && strcmp(js.act, "silu"))
        return mrw_err(err, MRW_E_UNSUPPORTED, "Timer: hidden_act '%s' is not supported (silu)", js.act);
    mrw_tfile *f = NULL;
    if ((st = mrw_tfile_open(wpath, &f, err))) return st;
    mrw_timer *t = calloc(1, sizeof *t);
    if (!t) {
        mrw_tfile_close(f);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    mrw_timer_config *c = &t->cfg;
    const mrw_tensor_info *te = mrw_tfile_find(f, "model.embed_layer.emb.weight");
    if (!te || te->ndim != 2) {
        st = mrw_err(err, te ? MRW_E_SHAPE : MRW_E_MISSING,
                     "Timer: %s has no 2-D 'model.embed_layer.emb.weight' (not a Timer model?)", wpath);
        goto fail;
    }
    c->hidden = (int)te->shape[0], c->patch = (int)te->shape[1];
    c->heads = heads;
    c->rope_base = js.rope_theta > 0 ? js.rope_theta : 10000.0;
    c->eps = 1e-5;
    char nm[160];
    for (c->layers = 0; c->layers < TIMER_MAX_LAYERS; c->layers++) {
        snprintf(nm, sizeof nm, "model.layers.%d.norm1.weight", c->layers);
        if (!mrw_tfile_find(f, nm)) break;
    }
    snprintf(nm, sizeof nm, "model.layers.0.ffn_layer.gate_proj.weight");
    const mrw_tensor_info *tg = mrw_tfile_find(f, nm);
    if (c->layers < 1 || !tg || tg->ndim != 2) {
        st = mrw_err(err, MRW_E_MISSING, "Timer: %s has no decoder layers (model.layers.0.*)", wpath);
        goto fail;
    }
    c->intermediate = (int)tg->shape[0];
    const mrw_tensor_info *th = mrw_tfile_find(f, "lm_heads.0.weight");
    c->out_len = th && th->ndim == 2 ? (int)th->shape[0] : 0;
    if (c->hidden < 1 || c->patch < 1 || c->hidden % heads || (c->hidden / heads) % 2) {
        st = mrw_err(err, MRW_E_SHAPE, "Timer: hidden size %d does not split into %d heads of even size", c->hidden,
                     heads);
        goto fail;
    }
    if ((js.hidden && js.hidden != c->hidden) || (js.layers && js.layers != c->layers) ||
        (js.intermediate && js.intermediate != c->intermediate) || (js.patch && js.patch != c->patch)) {
        st = mrw_err(err, MRW_E_SHAPE, "Timer: config.json (hidden %d, layers %d, intermediate %d, input_token_len %d) "
                     "disagrees with the tensors (%d, %d, %d, %d)", js.hidden, js.layers, js.intermediate, js.patch,
                     c->hidden, c->layers, c->intermediate, c->patch);
        goto fail;
    }
    int64_t D = c->hidden, I = c->intermediate;
    size_t per_layer = 4 * D * D + 3 * D + 3 * D * I + 4 * D;
    size_t total = D * c->patch + 2 * D + (size_t)c->out_len * D + per_layer * c->layers;
    if (!(t->mem = malloc(total * sizeof(float)))) {
        st = mrw_err(err, MRW_E_NOMEM, "Timer: out of memory for %zu weights", total);
        goto fail;
    }
    float *p = t->mem;
    const mrw_tensor_info *ti;
#define TAKE(dst, name, a, b)                                                                     \
    do {                                                                                          \
        if ((st = need(f, name, a, b, &ti, err))) goto fail;                                     \
        dst = p;                                                                                  \
        mrw_to_f32(ti->dtype, ti->data, p, mrw_tensor_numel(ti));                                 \
        p += mrw_tensor_numel(ti);                                                                \
    } while (0)
    TAKE(t->emb, "model.embed_layer.emb.weight", D, c->patch);
    TAKE(t->norm_w, "model.norm.weight", D, 0);
    TAKE(t->norm_b, "model.norm.bias", D, 0);
    if (c->out_len) TAKE(t->head, "lm_heads.0.weight", c->out_len, D);
    static const char *ln[L_COUNT] = {"self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight",
                                      "self_attn.k_proj.bias",   "self_attn.v_proj.weight", "self_attn.v_proj.bias",
                                      "self_attn.o_proj.weight", "ffn_layer.gate_proj.weight",
                                      "ffn_layer.up_proj.weight", "ffn_layer.down_proj.weight", "norm1.weight",
                                      "norm1.bias",              "norm2.weight",            "norm2.bias"};
    for (int l = 0; l < c->layers; l++)
        for (int j = 0; j < L_COUNT; j++) {
            int64_t a = D, b = D;
            if (j == L_QB || j == L_KB || j == L_VB || j >= L_N1W) b = 0;
            if (j == L_GW || j == L_UW) a = I;
            if (j == L_DW) b = I;
            snprintf(nm, sizeof nm, "model.layers.%d.%s", l, ln[j]);
            TAKE(t->lw[l][j], nm, a, b);
        }
#undef TAKE
    /* every tensor must be one we know */
    for (int i = 0; i < mrw_tfile_count(f); i++) {
        const char *name = mrw_tfile_tensor(f, i)->name;
        int known = !strcmp(name, "model.embed_layer.emb.weight") || !strcmp(name, "model.norm.weight") ||
                    !strcmp(name, "model.norm.bias") || !strncmp(name, "lm_heads.", 9);
        int l;
        char rest[96];
        if (!known && sscanf(name, "model.layers.%d.%95s", &l, rest) == 2 && l >= 0 && l < c->layers)
            for (int j = 0; j < L_COUNT && !known; j++) known = !strcmp(rest, ln[j]);
        if (!known) {
            st = mrw_err(err, MRW_E_UNKNOWN, "Timer: unexpected tensor '%s' in %s", name, wpath);
            goto fail;
        }
    }
    mrw_tfile_close(f);
    *out = t;
    return MRW_OK;
fail:
    mrw_tfile_close(f);
    mrw_timer_free(t);
    return st;
}

/* Rotary embedding in the rotate-half form on x [N, D] (H heads of hd): for j < hd/2,
 * (x_j, x_{j+hd/2}) <- (x_j cos - x_{j+hd/2} sin, x_{j+hd/2} cos + x_j sin), angle = pos · base^(-2j/hd). */
static void rope(float *x, int N, int H, int hd, double base) {
    int half = hd / 2;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < half; j++) {
            float inv = (float)(1.0 / pow(base, (double)(2 * j) / hd));
            float ang = (float)n * inv;
            float cs = cosf(ang), sn = sinf(ang);
            for (int h = 0; h < H; h++) {
                float *r = x + (size_t)n * H * hd + (size_t)h * hd;
                float a = r[j], b = r[j + half];
                r[j] = a * cs - b * sn;
                r[j + half] = b * cs + a * sn;
            }
        }
}

mrw_status mrw_timer_forward(const mrw_timer *t, int n_threads, const float *x, int64_t T, float *out, float *pred,
                             mrw_error *err) {
    const mrw_timer_config *c = &t->cfg;
    int N = mrw_timer_patches(t, T);
    if (N < 1) return mrw_err(err, MRW_E_ARG, "Timer: a series of %lld points is shorter than one patch (%d)",
                              (long long)T, c->patch);
    if (N > 16384) return mrw_err(err, MRW_E_LIMIT, "Timer: %d patches is more than the 16384 supported", N);
    const int D = c->hidden, H = c->heads, hd = D / H, I = c->intermediate, P = c->patch;
    const int64_t off = T - (int64_t)N * P; /* drop the oldest T mod P points */
    for (int64_t i = 0; i < T; i++)
        if (!isfinite(x[i])) return mrw_err(err, MRW_E_ARG, "Timer: input value %lld is not finite", (long long)i);
    size_t need_f = (size_t)N * (6 * D + 3 * I + N + 2);
    float *buf = malloc(need_f * sizeof(float));
    if (!buf) return mrw_err(err, MRW_E_NOMEM, "Timer: out of memory");
    float *h = out, *q = buf, *k = q + (size_t)N * D, *v = k + (size_t)N * D, *att = v + (size_t)N * D,
          *tmp = att + (size_t)N * D, *g = tmp + (size_t)N * D, *u = g + (size_t)N * I, *s = u + (size_t)N * I,
          *mean = s + (size_t)N * N, *rstd = mean + N, *res = rstd + N;
    /* res: N * D floats, after rstd; m (= g) reused for silu(g)*u */
    (void)I;
    mrw_kctx kc;
    mrw_kctx_init(&kc, n_threads);
    int nt = kc.n_threads;
    mrw_tnn_linear(&kc, t->emb, NULL, x + off, N, P, D, h);
    const float scale = 1.0f / sqrtf((float)hd);
    for (int l = 0; l < c->layers; l++) {
        float *const *w = t->lw[l];
        mrw_tnn_linear(&kc, w[L_QW], w[L_QB], h, N, D, D, q);
        mrw_tnn_linear(&kc, w[L_KW], w[L_KB], h, N, D, D, k);
        mrw_tnn_linear(&kc, w[L_VW], w[L_VB], h, N, D, D, v);
        rope(q, N, H, hd, c->rope_base);
        rope(k, N, H, hd, c->rope_base);
        for (int hh = 0; hh < H; hh++)
            for (int i = 0; i < N; i++) {
                const float *qi = q + (size_t)i * D + (size_t)hh * hd;
                float mx = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    const float *kj = k + (size_t)j * D + (size_t)hh * hd;
                    float d = 0;
                    for (int e = 0; e < hd; e++) d += qi[e] * kj[e];
                    s[j] = d * scale;
                    mx = fmaxf(mx, s[j]);
                }
                double z = 0;
                for (int j = 0; j <= i; j++) z += (s[j] = expf(s[j] - mx));
                float *o = att + (size_t)i * D + (size_t)hh * hd;
                for (int e = 0; e < hd; e++) o[e] = 0;
                for (int j = 0; j <= i; j++) {
                    const float pj = (float)(s[j] / z), *vj = v + (size_t)j * D + (size_t)hh * hd;
                    for (int e = 0; e < hd; e++) o[e] += pj * vj[e];
                }
            }
        mrw_tnn_linear(&kc, w[L_OW], NULL, att, N, D, D, tmp);
        for (size_t i = 0; i < (size_t)N * D; i++) res[i] = h[i] + tmp[i];
        mrw_tnn_layernorm(res, h, mean, rstd, N, D, w[L_N1W], w[L_N1B], (float)c->eps, nt);
        mrw_tnn_linear(&kc, w[L_GW], NULL, h, N, D, I, g);
        mrw_tnn_linear(&kc, w[L_UW], NULL, h, N, D, I, u);
        for (size_t i = 0; i < (size_t)N * I; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        mrw_tnn_linear(&kc, w[L_DW], NULL, g, N, I, D, tmp);
        for (size_t i = 0; i < (size_t)N * D; i++) res[i] = h[i] + tmp[i];
        mrw_tnn_layernorm(res, h, mean, rstd, N, D, w[L_N2W], w[L_N2B], (float)c->eps, nt);
    }
    memcpy(res, h, (size_t)N * D * sizeof(float));
    mrw_tnn_layernorm(res, h, mean, rstd, N, D, t->norm_w, t->norm_b, (float)c->eps, nt);
    if (pred) {
        if (!t->head) {
            mrw_kctx_free(&kc);
            free(buf);
            return mrw_err(err, MRW_E_MISSING, "Timer: the model has no lm_heads.0.weight");
        }
        mrw_tnn_linear(&kc, t->head, NULL, h + (size_t)(N - 1) * D, 1, D, c->out_len, pred);
    }
    mrw_kctx_free(&kc);
    free(buf);
    return MRW_OK;
}
