/* SigLIP / CLIP vision transformers: loading Hugging Face weights and the f32 forward pass (see vit.h).
 *
 * Graph (pre-LN transformer; names are the Hugging Face tensor names under the tower's prefix):
 *   patches = im2col(pixels) · embeddings.patch_embedding.weightᵀ (+ bias: SigLIP only)
 *   x = [CLS: embeddings.class_embedding (CLIP only)] ++ patches, + embeddings.position_embedding.weight
 *   CLIP: x = pre_layrnorm(x)
 *   per layer: x += out_proj(attention(LN1(x))); x += fc2(act(fc1(LN2(x))))
 *   SigLIP: x = post_layernorm(x)   (CLIP's post_layernorm only feeds the pooled CLS output: not applied)
 *
 * Speed: the GEMMs are mrw_matmul's packed f32 kernel (~90% of OpenBLAS on these shapes). Attention is
 * split into (head, query block) items run in parallel, each with single-threaded GEMMs on a block of
 * scores that stays in L2, instead of one multi-threaded GEMM per head (many small fork/joins, and the
 * P·V product has only 64 output columns to split). Bias + activation and the scaled softmax are single
 * vectorised passes. */
#include "models/vit.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/strutil.h"
#include "kernels/cpu/nn.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/vmath.h"
#include "models/weights.h"
#include "tensor/dtype.h"

/* Sanity limits on what a file may ask for (each far above any published ViT). */
#define MAX_HIDDEN 16384
#define MAX_INTER 65536
#define MAX_LAYERS 256
#define MAX_PATCH 1024
#define MAX_TOKENS 16384
#define MAX_CONFIG_BYTES (4 << 20)

typedef struct {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    mrw_mat q, k, v, o, fc1, fc2;
    float *q_b, *k_b, *v_b, *o_b, *fc1_b, *fc2_b;
} vit_layer;

struct mrw_vit {
    mrw_vit_config cfg;
    mrw_tfile *own_file; /* opened by mrw_vit_open; NULL when the caller's */
    mrw_arena arena;
    mrw_mat patch_w; /* [C, channels·patch·patch], f32 */
    float *patch_b;  /* [C] (SigLIP) or NULL */
    float *pos;      /* [n_tokens, C] */
    float *cls;      /* [C] (CLIP) or NULL */
    float *pre_w, *pre_b, *post_w, *post_b;
    vit_layer *layers;
};

static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

static const char *family_name(mrw_vit_family f) { return f == MRW_VIT_CLIP ? "CLIP" : "SigLIP"; }
static const char *act_name(mrw_vit_act a) {
    return a == MRW_VIT_QUICK_GELU ? "quick_gelu" : a == MRW_VIT_GELU_ERF ? "gelu" : "gelu_pytorch_tanh";
}

/* ------------------------------------------------------------------------------------ config.json */

/* What a Hugging Face config says about the vision tower; 0 / -1 where it says nothing. */
typedef struct {
    int present;
    mrw_vit_family family; /* 0 if model_type is absent */
    int hidden, intermediate, layers, heads, channels, patch, image;
    double eps; /* 0: absent */
    int act;    /* -1: absent */
    float mean[3], std[3];
    int has_norm; /* mean/std from preprocessor_config.json */
} hf_cfg;

static mrw_status json_posint(const cJSON *o, const char *key, int *out, const char *src, mrw_error *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j || cJSON_IsNull(j)) return MRW_OK;
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < 1 ||
        j->valuedouble > 1 << 20)
        return mrw_err(err, MRW_E_FORMAT, "%s: '%s' must be a positive integer", src, key);
    *out = (int)j->valuedouble;
    return MRW_OK;
}

static mrw_status parse_act(const char *s, int *act, const char *src, mrw_error *err) {
    if (!strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_new") || !strcmp(s, "gelu_fast") ||
        !strcmp(s, "gelu_python_tanh"))
        *act = MRW_VIT_GELU_TANH; /* gelu_fast is the same tanh formula with folded constants */
    else if (!strcmp(s, "quick_gelu"))
        *act = MRW_VIT_QUICK_GELU;
    else if (!strcmp(s, "gelu") || !strcmp(s, "gelu_python"))
        *act = MRW_VIT_GELU_ERF;
    else {
        char p[64];
        return mrw_err(err, MRW_E_UNSUPPORTED,
                       "%s: hidden_act '%s' is not supported (gelu_pytorch_tanh, quick_gelu, gelu)", src,
                       mrw_printable(p, sizeof p, s, strlen(s)));
    }
    return MRW_OK;
}

/* model_type of a SigLIP/CLIP vision config -> family; 0 for anything else. */
static mrw_vit_family family_of_type(const char *t) {
    if (!strcmp(t, "siglip") || !strcmp(t, "siglip_vision_model")) return MRW_VIT_SIGLIP;
    if (!strcmp(t, "clip") || !strcmp(t, "clip_vision_model")) return MRW_VIT_CLIP;
    return 0;
}

static mrw_status parse_config(const char *text, const char *src, hf_cfg *c, mrw_error *err) {
    cJSON *root = cJSON_Parse(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return mrw_err(err, MRW_E_FORMAT, "%s: not a JSON object", src);
    }
    mrw_status s = MRW_OK;
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    if (!cJSON_IsObject(vc)) vc = root; /* a vision-only config: the fields are at the top */
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (cJSON_IsString(mt)) {
        char p[64];
        const char *t = mt->valuestring;
        if (!strncmp(t, "siglip2", 7))
            s = mrw_err(err, MRW_E_UNSUPPORTED,
                        "%s: model_type '%s' is the NaFlex SigLIP2 (variable resolution); only "
                        "fixed-resolution SigLIP/SigLIP2 checkpoints (model_type siglip) are supported",
                        src, mrw_printable(p, sizeof p, t, strlen(t)));
        else if (!(c->family = family_of_type(t)))
            s = mrw_err(err, MRW_E_UNSUPPORTED, "%s: model_type '%s' is not a SigLIP or CLIP vision model",
                        src, mrw_printable(p, sizeof p, t, strlen(t)));
    }
    static const char *const keys[] = {"hidden_size",         "intermediate_size", "num_hidden_layers",
                                       "num_attention_heads", "num_channels",      "patch_size",
                                       "image_size"};
    int *dst[] = {&c->hidden, &c->intermediate, &c->layers, &c->heads, &c->channels, &c->patch, &c->image};
    for (int i = 0; i < 7 && !s; i++) s = json_posint(vc, keys[i], dst[i], src, err);
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(vc, "layer_norm_eps");
    if (!s && eps && !cJSON_IsNull(eps)) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0 && eps->valuedouble < 1))
            s = mrw_err(err, MRW_E_FORMAT, "%s: 'layer_norm_eps' must be a number in (0, 1)", src);
        else
            c->eps = eps->valuedouble;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(vc, "hidden_act");
    if (!s && act && !cJSON_IsNull(act)) {
        if (!cJSON_IsString(act))
            s = mrw_err(err, MRW_E_FORMAT, "%s: 'hidden_act' must be a string", src);
        else
            s = parse_act(act->valuestring, &c->act, src, err);
    }
    cJSON_Delete(root);
    if (!s) c->present = 1;
    return s;
}

/* image_mean / image_std of a preprocessor_config.json (both or neither). */
static mrw_status parse_preprocessor(const char *text, const char *src, hf_cfg *c, mrw_error *err) {
    cJSON *root = cJSON_Parse(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return mrw_err(err, MRW_E_FORMAT, "%s: not a JSON object", src);
    }
    const char *names[2] = {"image_mean", "image_std"};
    float *dst[2] = {c->mean, c->std};
    mrw_status s = MRW_OK;
    int found = 0;
    for (int k = 0; k < 2 && !s; k++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, names[k]);
        if (!a) continue;
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 3) {
            s = mrw_err(err, MRW_E_FORMAT, "%s: '%s' must be an array of 3 numbers", src, names[k]);
            break;
        }
        for (int i = 0; i < 3 && !s; i++) {
            const cJSON *e = cJSON_GetArrayItem(a, i);
            if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || (k == 1 && !(e->valuedouble > 0)))
                s = mrw_err(err, MRW_E_FORMAT, "%s: '%s' must hold 3 finite numbers%s", src, names[k],
                            k ? " > 0" : "");
            else
                dst[k][i] = (float)e->valuedouble;
        }
        found++;
    }
    if (!s && found == 1) s = mrw_err(err, MRW_E_FORMAT, "%s: image_mean and image_std come together", src);
    c->has_norm = !s && found == 2;
    cJSON_Delete(root);
    return s;
}

/* The whole text of a small file; MRW_E_IO if it cannot be read. */
static mrw_status read_text(const char *path, char **out, mrw_error *err) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return mrw_err(err, MRW_E_IO, "cannot open '%s'", path);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    mrw_status s = MRW_OK;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 16384;
            char *nb = realloc(buf, cap);
            if (!nb) {
                s = mrw_err(err, MRW_E_NOMEM, "out of memory reading '%s'", path);
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, fp);
        n += got;
        if (n > MAX_CONFIG_BYTES) {
            s = mrw_err(err, MRW_E_LIMIT, "'%s' is larger than %d bytes: not a config file", path,
                        MAX_CONFIG_BYTES);
            break;
        }
        if (got == 0) {
            if (ferror(fp)) s = mrw_err(err, MRW_E_IO, "cannot read '%s'", path);
            break;
        }
    }
    fclose(fp);
    if (s) {
        free(buf);
        return s;
    }
    buf[n] = 0;
    if (strlen(buf) != n) {
        free(buf);
        return mrw_err(err, MRW_E_FORMAT, "'%s' contains a NUL byte: not a JSON file", path);
    }
    *out = buf;
    return MRW_OK;
}

static mrw_status load_config_file(const char *path, hf_cfg *c, mrw_error *err) {
    char *text;
    mrw_status s = read_text(path, &text, err);
    if (s) return s;
    s = parse_config(text, path, c, err);
    free(text);
    return s;
}

/* -------------------------------------------------------------------------------- shape and config */

static void set_defaults(mrw_vit_config *c) {
    const int clip = c->family == MRW_VIT_CLIP;
    if (!(c->eps > 0)) c->eps = clip ? 1e-5f : 1e-6f;
    for (int i = 0; i < 3; i++)
        if (!(c->std[i] > 0)) {
            c->mean[i] = clip ? CLIP_MEAN[i] : 0.5f;
            c->std[i] = clip ? CLIP_STD[i] : 0.5f;
        }
}

/* Checks the geometry and fills the derived fields. */
static mrw_status finish_config(mrw_vit_config *c, mrw_error *err) {
    if (c->family != MRW_VIT_SIGLIP && c->family != MRW_VIT_CLIP)
        return mrw_err(err, MRW_E_ARG, "vit: unknown family %d", (int)c->family);
    if (c->hidden < 1 || c->hidden > MAX_HIDDEN || c->intermediate < 1 || c->intermediate > MAX_INTER ||
        c->n_layer < 1 || c->n_layer > MAX_LAYERS || c->patch < 1 || c->patch > MAX_PATCH ||
        c->channels < 1 || c->channels > 4)
        return mrw_err(err, MRW_E_LIMIT,
                       "vit: unsupported size (hidden %d, intermediate %d, layers %d, patch %d, channels %d)",
                       c->hidden, c->intermediate, c->n_layer, c->patch, c->channels);
    if (c->n_head < 1 || c->hidden % c->n_head)
        return mrw_err(err, MRW_E_SHAPE, "vit: hidden size %d is not divisible by %d attention heads",
                       c->hidden, c->n_head);
    if (c->image_size < c->patch || c->image_size % c->patch)
        return mrw_err(err, MRW_E_SHAPE, "vit: image size %d is not a multiple of the patch size %d",
                       c->image_size, c->patch);
    c->head_dim = c->hidden / c->n_head;
    c->grid = c->image_size / c->patch;
    if ((int64_t)c->grid * c->grid + 1 > MAX_TOKENS)
        return mrw_err(err, MRW_E_LIMIT, "vit: a %dx%d patch grid is more than %d tokens", c->grid, c->grid,
                       MAX_TOKENS);
    c->n_patches = c->grid * c->grid;
    c->n_tokens = c->n_patches + (c->family == MRW_VIT_CLIP);
    set_defaults(c);
    return MRW_OK;
}

/* Name candidates for the tower's prefix; the first that has embeddings.patch_embedding.weight wins. */
static int prefix_candidates(const char *user, char out[4][128]) {
    int n = 0;
    if (user && *user) {
        const size_t ul = strlen(user);
        snprintf(out[n++], 128, "%s", user);
        snprintf(out[n++], 128, "%s%svision_model.", user, user[ul - 1] == '.' ? "" : ".");
        if (user[ul - 1] != '.') snprintf(out[n++], 128, "%s.", user);
    } else {
        static const char *const auto_p[] = {"", "vision_model.", "encoder.model.",
                                             "encoder.model.vision_model."};
        for (int i = 0; i < 4; i++) snprintf(out[n++], 128, "%s", auto_p[i]);
    }
    return n;
}

static const mrw_tensor_info *find_pf(const mrw_tfile *f, const char *prefix, const char *name) {
    char full[512];
    if (snprintf(full, sizeof full, "%s%s", prefix, name) >= (int)sizeof full) return NULL;
    return mrw_tfile_find(f, full);
}

static mrw_status resolve_prefix(const mrw_tfile *f, const char *user, char *out, mrw_error *err) {
    char cand[4][128];
    if (user && strlen(user) > 100) return mrw_err(err, MRW_E_ARG, "vit: tensor prefix is too long");
    const int n = prefix_candidates(user, cand);
    for (int i = 0; i < n; i++)
        if (find_pf(f, cand[i], "embeddings.patch_embedding.weight")) {
            memcpy(out, cand[i], sizeof cand[i]);
            return MRW_OK;
        }
    char tried[600];
    size_t k = 0;
    for (int i = 0; i < n && k < sizeof tried; i++)
        k += (size_t)snprintf(tried + k, sizeof tried - k, "%s'%sembeddings.patch_embedding.weight'",
                              i ? ", " : "", cand[i]);
    return mrw_err(err, MRW_E_MISSING, "no SigLIP/CLIP vision tower in this file: none of %s is present",
                   tried);
}

/* 1 + the largest N of "<prefix>encoder.layers.N." in the file, 0 if none; -1 if absurd. */
static int count_layers(const mrw_tfile *f, const char *prefix) {
    char head[160];
    snprintf(head, sizeof head, "%sencoder.layers.", prefix);
    const size_t hl = strlen(head);
    long n = 0;
    for (int i = 0; i < mrw_tfile_count(f); i++) {
        const char *name = mrw_tfile_tensor(f, i)->name;
        if (strncmp(name, head, hl)) continue;
        char *end;
        long idx = strtol(name + hl, &end, 10);
        if (end == name + hl || *end != '.' || idx < 0) continue; /* reported as an unknown tensor later */
        if (idx >= MAX_LAYERS) return -1;
        if (idx + 1 > n) n = idx + 1;
    }
    return (int)n;
}

static mrw_status mismatch(mrw_error *err, const char *key, int cfg, int got, const char *prefix,
                           const char *src) {
    return mrw_err(err, MRW_E_SHAPE, "config.json %s is %d but the weights give %d (%s%s)", key, cfg, got,
                   prefix, src);
}

/* Family and every shape from the tensors, cross-checked with the config; heads/eps/act from the config or
 * the family defaults. */
static mrw_status derive_config(const mrw_tfile *f, const char *prefix, const hf_cfg *h, mrw_vit_config *c,
                                mrw_error *err) {
    memset(c, 0, sizeof *c);
    snprintf(c->prefix, sizeof c->prefix, "%s", prefix);
    const int clip =
        find_pf(f, prefix, "embeddings.class_embedding") || find_pf(f, prefix, "pre_layrnorm.weight");
    c->family = clip ? MRW_VIT_CLIP : MRW_VIT_SIGLIP;
    if (h->family && h->family != c->family)
        return mrw_err(err, MRW_E_SHAPE,
                       "config.json describes a %s model but the tensors under '%s' are %s's (%s)",
                       family_name(h->family), prefix, family_name(c->family),
                       clip ? "they have embeddings.class_embedding / pre_layrnorm"
                            : "no embeddings.class_embedding / pre_layrnorm");
    const mrw_tensor_info *pw = find_pf(f, prefix, "embeddings.patch_embedding.weight");
    if (pw->ndim != 4 || pw->shape[2] != pw->shape[3] || pw->shape[0] < 1 || pw->shape[0] > MAX_HIDDEN ||
        pw->shape[1] < 1 || pw->shape[1] > 4 || pw->shape[2] < 1 || pw->shape[2] > MAX_PATCH)
        return mrw_err(err, MRW_E_SHAPE,
                       "tensor '%s' must be [hidden, channels, patch, patch] (a square Conv2d kernel)",
                       pw->name);
    c->hidden = (int)pw->shape[0];
    c->channels = (int)pw->shape[1];
    c->patch = (int)pw->shape[2];
    const mrw_tensor_info *pe = find_pf(f, prefix, "embeddings.position_embedding.weight");
    if (!pe)
        return mrw_err(err, MRW_E_MISSING, "tensor '%sembeddings.position_embedding.weight' is missing",
                       prefix);
    if (pe->ndim != 2 || pe->shape[1] != c->hidden || pe->shape[0] < 1 + clip || pe->shape[0] > MAX_TOKENS)
        return mrw_err(err, MRW_E_SHAPE, "tensor '%s' must be [positions, %d] with at most %d positions",
                       pe->name, c->hidden, MAX_TOKENS);
    const int n_patches = (int)pe->shape[0] - clip, grid = (int)lround(sqrt((double)n_patches));
    if (grid * grid != n_patches)
        return mrw_err(err, MRW_E_SHAPE,
                       "tensor '%s' has %lld rows: %d patch positions%s are not a square grid", pe->name,
                       (long long)pe->shape[0], n_patches, clip ? " (after the CLS row)" : "");
    c->image_size = grid * c->patch;
    c->n_layer = count_layers(f, prefix);
    if (c->n_layer < 0)
        return mrw_err(err, MRW_E_LIMIT, "more than %d encoder layers under '%s'", MAX_LAYERS, prefix);
    if (c->n_layer == 0) return mrw_err(err, MRW_E_MISSING, "no '%sencoder.layers.0.*' tensors", prefix);
    const mrw_tensor_info *fc1 = find_pf(f, prefix, "encoder.layers.0.mlp.fc1.weight");
    if (!fc1)
        return mrw_err(err, MRW_E_MISSING, "tensor '%sencoder.layers.0.mlp.fc1.weight' is missing", prefix);
    if (fc1->ndim != 2 || fc1->shape[1] != c->hidden || fc1->shape[0] < 1 || fc1->shape[0] > MAX_INTER)
        return mrw_err(err, MRW_E_SHAPE, "tensor '%s' must be [intermediate, %d]", fc1->name, c->hidden);
    c->intermediate = (int)fc1->shape[0];

    /* the config must agree with the file */
    const char *pw_name = "embeddings.patch_embedding.weight";
    if (h->hidden && h->hidden != c->hidden)
        return mismatch(err, "hidden_size", h->hidden, c->hidden, prefix, pw_name);
    if (h->channels && h->channels != c->channels)
        return mismatch(err, "num_channels", h->channels, c->channels, prefix, pw_name);
    if (h->patch && h->patch != c->patch)
        return mismatch(err, "patch_size", h->patch, c->patch, prefix, pw_name);
    if (h->intermediate && h->intermediate != c->intermediate)
        return mismatch(err, "intermediate_size", h->intermediate, c->intermediate, prefix,
                        "encoder.layers.0.mlp.fc1.weight");
    if (h->layers && h->layers != c->n_layer)
        return mismatch(err, "num_hidden_layers", h->layers, c->n_layer, prefix, "encoder.layers.N");
    if (h->image && (h->image % c->patch || (h->image / c->patch) * (h->image / c->patch) != n_patches))
        return mrw_err(err, MRW_E_SHAPE,
                       "tensor '%s' has %d patch positions but config.json image_size %d / patch_size %d "
                       "gives a %dx%d grid",
                       pe->name, n_patches, h->image, c->patch, h->image / c->patch, h->image / c->patch);
    if (h->present) {
        c->config_given = 1;
        c->n_head = h->heads ? h->heads : 12; /* transformers' default for both configs */
        c->eps = h->eps > 0 ? (float)h->eps : 0;
        c->act = h->act >= 0 ? (mrw_vit_act)h->act : clip ? MRW_VIT_QUICK_GELU : MRW_VIT_GELU_TANH;
        if (c->hidden % c->n_head)
            return mrw_err(err, MRW_E_SHAPE, "hidden size %d is not divisible by %d attention heads%s",
                           c->hidden, c->n_head,
                           h->heads ? "" : " (config.json has no num_attention_heads: default 12)");
    } else {
        if (c->hidden % 64)
            return mrw_err(err, MRW_E_ARG,
                           "no config.json and hidden size %d is not a multiple of 64: the head count cannot "
                           "be guessed; pass the model's config.json",
                           c->hidden);
        c->n_head = c->hidden / 64;
        c->act = clip ? MRW_VIT_QUICK_GELU : MRW_VIT_GELU_TANH;
    }
    if (h->has_norm) {
        memcpy(c->mean, h->mean, sizeof c->mean);
        memcpy(c->std, h->std, sizeof c->std);
    }
    return finish_config(c, err);
}

/* ----------------------------------------------------------------------------------------- weights */

/* Matrices: f32 in place when aligned (zero-copy); f16/bf16 kept only on request (see mrw_vit_params). */
static mrw_status get_mat(mrw_wloader *L, const char *name, int rows, int cols, int keep16, mrw_mat *m,
                          int64_t *n_params) {
    const mrw_tensor_info *t = mrw_wl_find(L, name);
    int keep = 0;
    if (t) {
        const size_t esz = t->dtype == MRW_DT_F32 ? 4 : 2;
        const int aligned = ((uintptr_t)t->data % esz) == 0;
        keep = aligned &&
               (t->dtype == MRW_DT_F32 || (keep16 && (t->dtype == MRW_DT_F16 || t->dtype == MRW_DT_BF16)));
    }
    *n_params += (int64_t)rows * cols;
    return mrw_wl_mat(L, name, rows, cols, keep, m);
}

static mrw_status get_vec(mrw_wloader *L, const char *name, int n, float **out, int64_t *n_params) {
    *n_params += n;
    return mrw_wl_vec(L, name, n, out);
}

static mrw_status load_layer(mrw_wloader *L, const mrw_vit_config *c, int i, int keep16, vit_layer *ly,
                             int64_t *np) {
    const int C = c->hidden, I = c->intermediate;
    char n[160];
    mrw_status s;
#define LNAME(suffix) (snprintf(n, sizeof n, "encoder.layers.%d.%s", i, suffix), n)
    if ((s = get_vec(L, LNAME("layer_norm1.weight"), C, &ly->ln1_w, np))) return s;
    if ((s = get_vec(L, LNAME("layer_norm1.bias"), C, &ly->ln1_b, np))) return s;
    if ((s = get_vec(L, LNAME("layer_norm2.weight"), C, &ly->ln2_w, np))) return s;
    if ((s = get_vec(L, LNAME("layer_norm2.bias"), C, &ly->ln2_b, np))) return s;
    struct {
        const char *w, *b;
        mrw_mat *m;
        float **bias;
        int rows, cols;
    } mats[] = {
        {"self_attn.q_proj.weight", "self_attn.q_proj.bias", &ly->q, &ly->q_b, C, C},
        {"self_attn.k_proj.weight", "self_attn.k_proj.bias", &ly->k, &ly->k_b, C, C},
        {"self_attn.v_proj.weight", "self_attn.v_proj.bias", &ly->v, &ly->v_b, C, C},
        {"self_attn.out_proj.weight", "self_attn.out_proj.bias", &ly->o, &ly->o_b, C, C},
        {"mlp.fc1.weight", "mlp.fc1.bias", &ly->fc1, &ly->fc1_b, I, C},
        {"mlp.fc2.weight", "mlp.fc2.bias", &ly->fc2, &ly->fc2_b, C, I},
    };
    for (size_t j = 0; j < sizeof mats / sizeof mats[0]; j++) {
        if ((s = get_mat(L, LNAME(mats[j].w), mats[j].rows, mats[j].cols, keep16, mats[j].m, np))) return s;
        if ((s = get_vec(L, LNAME(mats[j].b), mats[j].rows, mats[j].bias, np))) return s;
    }
#undef LNAME
    return MRW_OK;
}

static mrw_status load_weights(mrw_vit *v, mrw_wloader *L, int keep16) {
    const mrw_vit_config *c = &v->cfg;
    const int C = c->hidden, PP = c->channels * c->patch * c->patch;
    int64_t np = 0;
    mrw_status s;
    const int64_t pshape[4] = {C, c->channels, c->patch, c->patch};
    float *pw;
    if ((s = mrw_wl_f32(L, "embeddings.patch_embedding.weight", 4, pshape, &pw))) return s;
    mrw_mat_init(&v->patch_w, MRW_DT_F32, C, PP, pw);
    np += (int64_t)C * PP;
    if (c->family == MRW_VIT_SIGLIP &&
        (s = get_vec(L, "embeddings.patch_embedding.bias", C, &v->patch_b, &np)))
        return s;
    if (c->family == MRW_VIT_CLIP) {
        if ((s = get_vec(L, "embeddings.class_embedding", C, &v->cls, &np))) return s;
        if ((s = get_vec(L, "pre_layrnorm.weight", C, &v->pre_w, &np))) return s;
        if ((s = get_vec(L, "pre_layrnorm.bias", C, &v->pre_b, &np))) return s;
    }
    const int64_t eshape[2] = {c->n_tokens, C};
    if ((s = mrw_wl_f32(L, "embeddings.position_embedding.weight", 2, eshape, &v->pos))) return s;
    np += (int64_t)c->n_tokens * C;
    /* loaded for both (CLIP's feeds only the pooled output, so it is not counted as used by the forward) */
    int64_t post = 0;
    if ((s = get_vec(L, "post_layernorm.weight", C, &v->post_w, &post))) return s;
    if ((s = get_vec(L, "post_layernorm.bias", C, &v->post_b, &post))) return s;
    if (c->family == MRW_VIT_SIGLIP) np += post;
    v->layers = mrw_arena_keep(&v->arena, calloc((size_t)c->n_layer, sizeof *v->layers));
    if (!v->layers) return mrw_err(L->err, MRW_E_NOMEM, "out of memory");
    for (int i = 0; i < c->n_layer; i++)
        if ((s = load_layer(L, c, i, keep16, &v->layers[i], &np))) return s;
    v->cfg.n_params = np;
    v->cfg.weight_dtype = v->layers[0].q.dtype;
    return MRW_OK;
}

/* Tensors nobody used: errors, except the known extras of full checkpoints. */
static mrw_status check_extras(const mrw_tfile *f, mrw_wloader *L, const mrw_vit_config *c, mrw_error *err) {
    static const char *const outer_skip[] = {
        "vision_model.",      "text_model.",      "logit_scale", "logit_bias",
        "visual_projection.", "text_projection.", NULL};
    const char *inner_skip[4] = {"embeddings.position_ids", NULL, NULL, NULL};
    if (c->family == MRW_VIT_SIGLIP)
        inner_skip[1] = "head."; /* attention pooling: not in last_hidden_state */
    mrw_status s = mrw_wl_check_unused(L, inner_skip);
    if (s) return s;
    const size_t pl = strlen(c->prefix), vl = strlen("vision_model.");
    if (pl < vl || strcmp(c->prefix + pl - vl, "vision_model.")) return MRW_OK;
    /* the tower sits in a full checkpoint: everything beside it must be a known part of one */
    char base[128];
    snprintf(base, sizeof base, "%.*s", (int)(pl - vl), c->prefix);
    mrw_arena tmp = {0};
    mrw_wloader outer;
    if ((s = mrw_wl_init(&outer, f, base, &tmp, err))) return s;
    s = mrw_wl_check_unused(&outer, outer_skip);
    mrw_wl_done(&outer);
    mrw_arena_free(&tmp);
    return s;
}

static mrw_status load_with(const mrw_tfile *f, const mrw_vit_params *p, const hf_cfg *h, mrw_vit **out,
                            mrw_error *err) {
    *out = NULL;
    char prefix[128];
    mrw_status s = resolve_prefix(f, p ? p->prefix : NULL, prefix, err);
    if (s) return s;
    mrw_vit *v = calloc(1, sizeof *v);
    if (!v) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    if ((s = derive_config(f, prefix, h, &v->cfg, err))) {
        free(v);
        return s;
    }
    mrw_wloader L;
    if ((s = mrw_wl_init(&L, f, prefix, &v->arena, err))) {
        mrw_vit_free(v);
        return s;
    }
    s = load_weights(v, &L, p && p->keep_dtype);
    if (!s) s = check_extras(f, &L, &v->cfg, err);
    mrw_wl_done(&L);
    if (s) {
        mrw_vit_free(v);
        return s;
    }
    if (!v->cfg.config_given && !(p && p->quiet))
        fprintf(stderr, "vit: no config.json: %s defaults assumed: %d heads of 64, layer_norm_eps %g, %s\n",
                family_name(v->cfg.family), v->cfg.n_head, (double)v->cfg.eps, act_name(v->cfg.act));
    *out = v;
    return MRW_OK;
}

static mrw_status params_config(const mrw_vit_params *p, hf_cfg *h, mrw_error *err) {
    memset(h, 0, sizeof *h);
    h->act = -1;
    if (!p) return MRW_OK;
    if (p->config_path && p->config_json)
        return mrw_err(err, MRW_E_ARG, "vit: give config_path or config_json, not both");
    if (p->config_path) return load_config_file(p->config_path, h, err);
    if (p->config_json) return parse_config(p->config_json, "config.json", h, err);
    return MRW_OK;
}

mrw_status mrw_vit_load(const mrw_tfile *f, const mrw_vit_params *params, mrw_vit **out, mrw_error *err) {
    if (!out) return mrw_err(err, MRW_E_ARG, "vit: out is NULL");
    *out = NULL;
    if (!f) return mrw_err(err, MRW_E_ARG, "vit: no tensor file");
    hf_cfg h;
    mrw_status s = params_config(params, &h, err);
    return s ? s : load_with(f, params, &h, out, err);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* dir/name into buf (dir may be "" for the current directory). */
static int join(char *buf, size_t n, const char *dir, size_t dir_len, const char *name) {
    return snprintf(buf, n, "%.*s%s%s", (int)dir_len, dir, dir_len ? "/" : "", name) < (int)n;
}

/* Config files beside the weights: config.json (when no config was passed) and preprocessor_config.json.
 * In a model directory they belong to the model, so a bad one is an error; beside a lone weight file they
 * are used only if they describe a SigLIP/CLIP model. */
static mrw_status sibling_configs(const char *dir, size_t dl, int model_dir, hf_cfg *h, mrw_error *err) {
    char path[4096];
    mrw_error ignored;
    mrw_error *e = model_dir ? err : &ignored;
    mrw_status s;
    int ours = model_dir; /* beside a lone file: only with a SigLIP/CLIP config.json */
    if (!h->present && join(path, sizeof path, dir, dl, "config.json") && file_exists(path)) {
        hf_cfg t;
        memset(&t, 0, sizeof t);
        t.act = -1;
        s = load_config_file(path, &t, e);
        if (s && model_dir) return s;
        if (!s && (model_dir || t.family)) {
            *h = t;
            ours = 1;
        }
    }
    if (ours && join(path, sizeof path, dir, dl, "preprocessor_config.json") && file_exists(path)) {
        char *text;
        if ((s = read_text(path, &text, e))) return model_dir ? s : MRW_OK;
        hf_cfg t = *h;
        s = parse_preprocessor(text, path, &t, e);
        free(text);
        if (s && model_dir) return s;
        if (!s) *h = t;
    }
    return MRW_OK;
}

mrw_status mrw_vit_open(const char *path, const mrw_vit_params *params, mrw_vit **out, mrw_error *err) {
    if (!out) return mrw_err(err, MRW_E_ARG, "vit: out is NULL");
    *out = NULL;
    if (!path || !*path) return mrw_err(err, MRW_E_ARG, "vit: no path");
    hf_cfg h;
    mrw_status s = params_config(params, &h, err);
    if (s) return s;
    char weights[4096];
    const int dir = is_dir(path);
    if (dir) {
        size_t dl = strlen(path);
        while (dl > 1 && path[dl - 1] == '/') dl--;
        if (!join(weights, sizeof weights, path, dl, "model.safetensors"))
            return mrw_err(err, MRW_E_ARG, "vit: path too long");
        if (!file_exists(weights))
            return mrw_err(err, MRW_E_IO, "'%s' is a directory without model.safetensors", path);
        if ((s = sibling_configs(path, dl, 1, &h, err))) return s;
    } else {
        if (snprintf(weights, sizeof weights, "%s", path) >= (int)sizeof weights)
            return mrw_err(err, MRW_E_ARG, "vit: path too long");
        const char *slash = strrchr(path, '/');
        if ((s = sibling_configs(path, slash ? (size_t)(slash - path) : 0, 0, &h, err))) return s;
    }
    mrw_tfile *f;
    if ((s = mrw_tfile_open(weights, &f, err))) return s;
    if ((s = load_with(f, params, &h, out, err))) {
        mrw_tfile_close(f);
        if (err) mrw_err_prefix(err, "%s", weights);
        return s;
    }
    (*out)->own_file = f;
    return MRW_OK;
}

void mrw_vit_free(mrw_vit *v) {
    if (!v) return;
    mrw_arena_free(&v->arena);
    if (v->own_file) mrw_tfile_close(v->own_file);
    free(v);
}

const mrw_vit_config *mrw_vit_get_config(const mrw_vit *v) { return v ? &v->cfg : NULL; }

double mrw_vit_flops(const mrw_vit *v) {
    const mrw_vit_config *c = &v->cfg;
    const double T = c->n_tokens, C = c->hidden, I = c->intermediate;
    const double patch = 2.0 * c->n_patches * C * c->channels * c->patch * c->patch;
    const double layer = 2.0 * T * C * C * 4 + 2.0 * T * C * I * 2 + 2.0 * T * T * C * 2;
    return patch + layer * c->n_layer;
}

/* ------------------------------------------------------------------------------------ random model */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* n values uniform in [mid - half, mid + half), stream (seed, tensor, row): independent of threads. */
static void fill_row(float *dst, int n, uint64_t seed, uint64_t tensor, uint64_t row, float mid, float half) {
    uint64_t s = mix64(seed ^ mix64(tensor * 0x9e3779b97f4a7c15ull + row + 1));
    for (int i = 0; i < n; i++) {
        s += 0x9e3779b97f4a7c15ull;
        const double u = (double)(mix64(s) >> 11) * (1.0 / 9007199254740992.0);
        dst[i] = mid + half * (float)(2 * u - 1);
    }
}

typedef struct {
    mrw_vit *v;
    uint64_t seed, id;
} rnd;

static float *rnd_tensor(rnd *r, int rows, int cols, float mid, float half) {
    float *d =
        mrw_arena_keep(&r->v->arena, aligned_alloc(64, (((size_t)rows * cols * 4) + 63) & ~(size_t)63));
    const uint64_t id = r->id++;
    if (!d) return NULL;
#pragma omp parallel for schedule(static) if (rows >= 64)
    for (int i = 0; i < rows; i++) fill_row(d + (size_t)i * cols, cols, r->seed, id, (uint64_t)i, mid, half);
    return d;
}

/* A matrix with N(0, 1/cols)-like spread: uniform of the same variance. */
static int rnd_mat(rnd *r, mrw_mat *m, int rows, int cols) {
    float *d = rnd_tensor(r, rows, cols, 0, sqrtf(3.0f / (float)cols));
    if (!d) return -1;
    mrw_mat_init(m, MRW_DT_F32, rows, cols, d);
    return 0;
}

mrw_status mrw_vit_new_random(const mrw_vit_config *shape, uint64_t seed, mrw_vit **out, mrw_error *err) {
    if (!out || !shape) return mrw_err(err, MRW_E_ARG, "vit: NULL argument");
    *out = NULL;
    mrw_vit *v = calloc(1, sizeof *v);
    if (!v) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    mrw_vit_config *c = &v->cfg;
    c->family = shape->family;
    c->hidden = shape->hidden;
    c->n_layer = shape->n_layer;
    c->n_head = shape->n_head > 0 ? shape->n_head : shape->hidden / 64;
    c->intermediate = shape->intermediate;
    c->channels = shape->channels > 0 ? shape->channels : 3;
    c->patch = shape->patch;
    c->image_size = shape->image_size;
    c->eps = shape->eps;
    c->act = shape->act;
    c->config_given = 1;
    memcpy(c->mean, shape->mean, sizeof c->mean);
    memcpy(c->std, shape->std, sizeof c->std);
    mrw_status s = finish_config(c, err);
    if (s) {
        free(v);
        return s;
    }
    if (shape->act == 0 && c->family == MRW_VIT_CLIP) c->act = MRW_VIT_QUICK_GELU;
    const int C = c->hidden, I = c->intermediate, PP = c->channels * c->patch * c->patch;
    rnd r = {v, seed, 1};
    int bad = rnd_mat(&r, &v->patch_w, C, PP) || !(v->pos = rnd_tensor(&r, c->n_tokens, C, 0, 0.5f)) ||
              !(v->post_w = rnd_tensor(&r, 1, C, 1, 0.2f)) || !(v->post_b = rnd_tensor(&r, 1, C, 0, 0.1f));
    if (c->family == MRW_VIT_SIGLIP)
        bad = bad || !(v->patch_b = rnd_tensor(&r, 1, C, 0, 0.1f));
    else
        bad = bad || !(v->cls = rnd_tensor(&r, 1, C, 0, 0.5f)) ||
              !(v->pre_w = rnd_tensor(&r, 1, C, 1, 0.2f)) || !(v->pre_b = rnd_tensor(&r, 1, C, 0, 0.1f));
    v->layers = mrw_arena_keep(&v->arena, calloc((size_t)c->n_layer, sizeof *v->layers));
    bad = bad || !v->layers;
    for (int i = 0; i < c->n_layer && !bad; i++) {
        vit_layer *ly = &v->layers[i];
        bad = !(ly->ln1_w = rnd_tensor(&r, 1, C, 1, 0.2f)) || !(ly->ln1_b = rnd_tensor(&r, 1, C, 0, 0.1f)) ||
              !(ly->ln2_w = rnd_tensor(&r, 1, C, 1, 0.2f)) || !(ly->ln2_b = rnd_tensor(&r, 1, C, 0, 0.1f)) ||
              rnd_mat(&r, &ly->q, C, C) || rnd_mat(&r, &ly->k, C, C) || rnd_mat(&r, &ly->v, C, C) ||
              rnd_mat(&r, &ly->o, C, C) || rnd_mat(&r, &ly->fc1, I, C) || rnd_mat(&r, &ly->fc2, C, I) ||
              !(ly->q_b = rnd_tensor(&r, 1, C, 0, 0.1f)) || !(ly->k_b = rnd_tensor(&r, 1, C, 0, 0.1f)) ||
              !(ly->v_b = rnd_tensor(&r, 1, C, 0, 0.1f)) || !(ly->o_b = rnd_tensor(&r, 1, C, 0, 0.1f)) ||
              !(ly->fc1_b = rnd_tensor(&r, 1, I, 0, 0.1f)) || !(ly->fc2_b = rnd_tensor(&r, 1, C, 0, 0.1f));
    }
    if (bad) {
        mrw_vit_free(v);
        return mrw_err(err, MRW_E_NOMEM, "out of memory for a random ViT");
    }
    c->weight_dtype = MRW_DT_F32;
    /* patch, positions, then patch bias + post-LN (SigLIP) or class embedding + pre-LN (CLIP): 3C */
    c->n_params = (int64_t)C * PP + (int64_t)c->n_tokens * C + 3LL * C +
                  (int64_t)c->n_layer * (4LL * C * C + 2LL * C * I + 8LL * C + I);
    snprintf(c->prefix, sizeof c->prefix, "(random)");
    *out = v;
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------------ forward */

#define QB_TARGET 96 /* portable path: query rows per attention item, scores [QB, T] stay in L2 */
#define AQ 48        /* AVX-512 path: queries per attention item (3 vectors of 16) */

struct mrw_vit_ctx {
    const mrw_vit *v;
    int nt, qb;
    int portable;  /* use the GEMM-based attention even where the AVX-512 one exists (for testing) */
    mrw_kctx k;    /* the big GEMMs, nt threads */
    mrw_kctx *sub; /* [nt] single-threaded contexts for the portable attention items */
    float *mem;
    float *xn, *q, *kk, *vv, *att, *ff, *kh, *vt, *S; /* S: [nt][ns] per-thread attention scratch */
    size_t ns;
};

static size_t round16(size_t n) { return (n + 15) / 16 * 16; }

mrw_status mrw_vit_ctx_new(const mrw_vit *v, int n_threads, mrw_vit_ctx **out, mrw_error *err) {
    if (!out || !v) return mrw_err(err, MRW_E_ARG, "vit: NULL argument");
    *out = NULL;
    mrw_vit_ctx *c = calloc(1, sizeof *c);
    if (!c) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    c->v = v;
    mrw_kctx_init(&c->k, n_threads);
    c->nt = c->k.n_threads;
    const mrw_vit_config *g = &v->cfg;
    const size_t T = (size_t)g->n_tokens, C = (size_t)g->hidden, I = (size_t)g->intermediate, D = g->head_dim;
    /* query blocks: ~QB_TARGET rows, a multiple of 12 (the GEMM's row block), as even as possible */
    const int nqb = (g->n_tokens + QB_TARGET - 1) / QB_TARGET;
    c->qb = ((g->n_tokens + nqb - 1) / nqb + 11) / 12 * 12;
    size_t ff = T * I, cols = (size_t)g->n_patches * g->channels * g->patch * g->patch;
    if (cols > ff) ff = cols; /* the im2col matrix shares the MLP buffer */
    /* every buffer is a multiple of 16 floats (64-byte aligned); the transposed keys get 16 spare floats
     * because the attention kernel reads (and discards) up to 7 keys past the end */
    const size_t tc = round16(T * C), tk = round16(T * C + 16), nff = round16(ff);
    size_t ns = round16((size_t)c->qb * T);
    const size_t ns_avx = round16(T * AQ) + round16(D * AQ) + AQ;
    if (ns_avx > ns) ns = ns_avx;
    c->ns = ns;
    const size_t total = 5 * tc + 2 * tk + nff + (size_t)c->nt * ns;
    c->mem = aligned_alloc(64, total * sizeof(float));
    c->sub = calloc((size_t)c->nt, sizeof *c->sub);
    if (!c->mem || !c->sub) {
        mrw_vit_ctx_free(c);
        return mrw_err(err, MRW_E_NOMEM, "out of memory for ViT activations (%zu MB)", total * 4 >> 20);
    }
    memset(c->mem, 0, total * sizeof(float)); /* padding lanes are read (never stored): keep them finite */
    float *p = c->mem;
    float **bufs[] = {&c->xn, &c->q, &c->kk, &c->vv, &c->att};
    for (int i = 0; i < 5; i++, p += tc) *bufs[i] = p;
    c->kh = p;
    c->vt = p + tk;
    c->ff = p + 2 * tk;
    c->S = c->ff + nff;
    for (int t = 0; t < c->nt; t++) mrw_kctx_init(&c->sub[t], 1);
    const char *env = getenv("MRW_VIT_PORTABLE_ATTENTION");
    c->portable = env && atoi(env) == 1;
    *out = c;
    return MRW_OK;
}

void mrw_vit_ctx_free(mrw_vit_ctx *c) {
    if (!c) return;
    mrw_kctx_free(&c->k);
    if (c->sub)
        for (int t = 0; t < c->nt; t++) mrw_kctx_free(&c->sub[t]);
    free(c->sub);
    free(c->mem);
    free(c);
}

/* Row p = (gy, gx) of cols holds patch p's pixels in the Conv2d weight's (channel, ky, kx) order. */
static void im2col(const mrw_vit_config *g, const float *px, float *cols, int nt) {
    const int P = g->patch, S = g->image_size, G = g->grid, PP = g->channels * P * P;
#pragma omp parallel for num_threads(nt) schedule(static) if (g->n_patches >= 64 && nt > 1)
    for (int p = 0; p < g->n_patches; p++) {
        const int y0 = (p / G) * P, x0 = (p % G) * P;
        float *row = cols + (size_t)p * PP;
        for (int ch = 0; ch < g->channels; ch++)
            for (int ky = 0; ky < P; ky++)
                memcpy(row + (ch * P + ky) * P, px + ((size_t)ch * S + y0 + ky) * S + x0,
                       (size_t)P * sizeof(float));
    }
}

/* x[t] += pos[t]; CLIP's row 0 is the class embedding. */
static void add_positions(const mrw_vit *v, float *x, int nt) {
    const mrw_vit_config *g = &v->cfg;
    const int C = g->hidden;
    if (v->cls)
        for (int c = 0; c < C; c++) x[c] = v->cls[c];
#pragma omp parallel for num_threads(nt) schedule(static) if (g->n_tokens >= 64 && nt > 1)
    for (int t = 0; t < g->n_tokens; t++)
        for (int c = 0; c < C; c++) x[(size_t)t * C + c] += v->pos[(size_t)t * C + c];
}

/* y = act(y + b) over rows of [T, n], one pass. */
static void bias_act(float *y, int T, int n, const float *b, mrw_vit_act act, int nt) {
    const float kq = 1.702f,
                kt = 1.5957691216057308f; /* quick: x·σ(1.702x); tanh: x·σ(2√(2/π)(x+0.044715x³)) */
#pragma omp parallel for num_threads(nt) schedule(static) if (T >= 32 && nt > 1)
    for (int t = 0; t < T; t++) {
        float *r = y + (size_t)t * n;
        int i = 0;
        if (act == MRW_VIT_GELU_ERF) {
            for (; i < n; i++) {
                const float x = r[i] + b[i];
                r[i] = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
            }
            continue;
        }
#ifdef MRW_VMATH_AVX512
        const __m512 vq = _mm512_set1_ps(kq), vt = _mm512_set1_ps(kt), vc = _mm512_set1_ps(0.044715f);
        for (; i + 16 <= n; i += 16) {
            const __m512 x = _mm512_add_ps(_mm512_loadu_ps(r + i), _mm512_loadu_ps(b + i));
            __m512 u;
            if (act == MRW_VIT_QUICK_GELU)
                u = _mm512_mul_ps(vq, x);
            else
                u = _mm512_mul_ps(vt, _mm512_fmadd_ps(_mm512_mul_ps(vc, x), _mm512_mul_ps(x, x), x));
            _mm512_storeu_ps(r + i, _mm512_mul_ps(x, mrw_v_sigmoid(u)));
        }
#endif
        for (; i < n; i++) {
            const float x = r[i] + b[i];
            const float u = act == MRW_VIT_QUICK_GELU ? kq * x : kt * (x + 0.044715f * x * x * x);
            r[i] = x * mrw_s_sigmoid(u);
        }
    }
}

/* softmax(scale · row) for n rows of length T (stride T), in place. */
static void softmax_scaled(float *S, int n, int T, float scale) {
    for (int r = 0; r < n; r++) {
        float *row = S + (size_t)r * T;
        float mx = -INFINITY, sum = 0;
        int j = 0;
#ifdef MRW_VMATH_AVX512
        __m512 vm = _mm512_set1_ps(-INFINITY);
        for (; j + 16 <= T; j += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(row + j));
        mx = _mm512_reduce_max_ps(vm);
#endif
        for (; j < T; j++) mx = row[j] > mx ? row[j] : mx;
        const float off = mx * scale;
        j = 0;
#ifdef MRW_VMATH_AVX512
        const __m512 vs = _mm512_set1_ps(scale), vo = _mm512_set1_ps(off);
        __m512 acc = _mm512_setzero_ps();
        for (; j + 16 <= T; j += 16) {
            const __m512 e = mrw_v_exp(_mm512_fmsub_ps(_mm512_loadu_ps(row + j), vs, vo));
            _mm512_storeu_ps(row + j, e);
            acc = _mm512_add_ps(acc, e);
        }
        sum = _mm512_reduce_add_ps(acc);
#endif
        for (; j < T; j++) {
            row[j] = expf(row[j] * scale - off);
            sum += row[j];
        }
        const float inv = 1.0f / sum;
        j = 0;
#ifdef MRW_VMATH_AVX512
        const __m512 vi = _mm512_set1_ps(inv);
        for (; j + 16 <= T; j += 16) _mm512_storeu_ps(row + j, _mm512_mul_ps(_mm512_loadu_ps(row + j), vi));
#endif
        for (; j < T; j++) row[j] *= inv;
    }
}

/* Portable attention: per (head, query block) item, S = q kᵀ and out = softmax(S/√D) v as single-threaded
 * GEMMs (k_h gathered as [T, D], v_h transposed to [D, T]: the GEMM reads its weight operand by rows). */
static void attention_gemm(mrw_vit_ctx *c) {
    const mrw_vit_config *g = &c->v->cfg;
    const int T = g->n_tokens, H = g->n_head, D = g->head_dim, C = g->hidden, nt = c->nt;
    float *kh = c->kh, *vt = c->vt;
    const float *k = c->kk, *v = c->vv;
#pragma omp parallel for num_threads(nt) schedule(static) if (T >= 64 && nt > 1)
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            memcpy(kh + ((size_t)h * T + t) * D, k + (size_t)t * C + (size_t)h * D,
                   (size_t)D * sizeof(float));
            const float *vr = v + (size_t)t * C + (size_t)h * D;
            float *dst = vt + (size_t)h * D * T + t;
            for (int d = 0; d < D; d++) dst[(size_t)d * T] = vr[d];
        }
    const int nqb = (T + c->qb - 1) / c->qb, items = H * nqb;
    const float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (items > 1 && nt > 1)
    for (int it = 0; it < items; it++) {
        const int h = it / nqb, t0 = (it % nqb) * c->qb, n = T - t0 < c->qb ? T - t0 : c->qb;
        const int tid = omp_get_thread_num();
        float *S = c->S + (size_t)tid * c->ns;
        mrw_kctx *sub = &c->sub[tid];
        sub->exact = c->k.exact;
        mrw_mat Km, Vm;
        mrw_mat_init(&Km, MRW_DT_F32, T, D, kh + (size_t)h * T * D);
        mrw_mat_init(&Vm, MRW_DT_F32, D, T, vt + (size_t)h * D * T);
        mrw_matmul(sub, &Km, c->q + (size_t)t0 * C + (size_t)h * D, C, S, T, n, 0);
        softmax_scaled(S, n, T, scale);
        mrw_matmul(sub, &Vm, S, T, c->att + (size_t)t0 * C + (size_t)h * D, C, n, 0);
    }
}

#ifdef MRW_VMATH_AVX512
/* Fused attention for AVX-512, one item = (head h, AQ queries), no per-item packing of the big operands:
 *   scores, keys by 8:  St[j][i] = Σ_d Kt[d][j] · Qt[d][i]   (Kt: keys transposed once per layer; Qt: the
 *                       item's queries transposed; queries are the vector lanes)
 *   softmax down each lane (column) of St, in place, keeping 1/Σ per query
 *   output, 12 queries × 32 dims: out[i][d] = (1/Σ_i) Σ_j St[j][i] · v_h[j][d]   (v_h: the head's values,
 *                       gathered once per layer)
 * Both inner loops are 24 independent FMAs per k step, like the GEMM's micro-kernel. */
static inline __mmask16 lane_mask(int n) {
    return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

/* r[c][i] <- r[i][c] for a 16x16 block in registers (unpack pairs, then 4x4 blocks, then 128-bit lanes). */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 4; g++) { /* u[4g+k], lane L: rows 4g..4g+3 of column 4L+k */
        u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
    }
    for (int k = 0; k < 4; k++) {
        const __m512 x = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88),
                     y = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xdd);
        const __m512 x2 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
        const __m512 y2 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xdd);
        r[k] = _mm512_shuffle_f32x4(x, x2, 0x88);
        r[4 + k] = _mm512_shuffle_f32x4(y, y2, 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(x, x2, 0xdd);
        r[12 + k] = _mm512_shuffle_f32x4(y, y2, 0xdd);
    }
}

/* dst[c][i] = src[i][c] for i < nr (<= 16), c < 16; rows i >= nr read as zero. store_all: write all 16 lanes
 * of each dst row (zeros past nr), else only the first nr. */
static void transpose_block16(const float *src, size_t lds, int nr, float *dst, size_t ldd, int store_all) {
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = i < nr ? _mm512_loadu_ps(src + (size_t)i * lds) : _mm512_setzero_ps();
    transpose16(r);
    const __mmask16 m = store_all ? 0xffff : lane_mask(nr);
    for (int c = 0; c < 16; c++) _mm512_mask_storeu_ps(dst + (size_t)c * ldd, m, r[c]);
}

/* dst[c][i] = src[i][c] for i < rows, c < cols (a matrix transpose; src row stride lds, dst row stride ldd),
 * by 16x16 blocks with scalar edges. store_all as above, for the last block of rows. */
static void transpose(const float *src, size_t lds, int rows, int cols, float *dst, size_t ldd,
                      int store_all) {
    const int c16 = cols / 16 * 16;
    for (int i0 = 0; i0 < rows; i0 += 16) {
        const int nr = rows - i0 < 16 ? rows - i0 : 16;
        for (int c0 = 0; c0 < c16; c0 += 16)
            transpose_block16(src + (size_t)i0 * lds + c0, lds, nr, dst + (size_t)c0 * ldd + i0, ldd,
                              store_all);
        for (int c = c16; c < cols; c++)
            for (int i = 0; i < (store_all ? 16 : nr); i++)
                dst[(size_t)c * ldd + i0 + i] = i < nr ? src[(size_t)(i0 + i) * lds + c] : 0;
    }
}

/* St rows j0 .. j0+nk (nk <= 8) for NV vectors of queries. */
static inline __attribute__((always_inline)) void scores_tile(const float *kt, int T, const float *qt, int D,
                                                              float *st, int nk, const int NV) {
    __m512 acc[8][3];
    /* every loop fully unrolled, so that acc lives in registers */
#pragma GCC unroll 8
    for (int jj = 0; jj < 8; jj++)
        for (int v = 0; v < NV; v++) acc[jj][v] = _mm512_setzero_ps();
    for (int d = 0; d < D; d++) {
        const float *a = kt + (size_t)d * T;
        __m512 b[3];
        for (int v = 0; v < NV; v++) b[v] = _mm512_load_ps(qt + (size_t)d * AQ + 16 * v);
#pragma GCC unroll 8
        for (int jj = 0; jj < 8; jj++) {
            const __m512 av = _mm512_set1_ps(a[jj]);
            for (int v = 0; v < NV; v++) acc[jj][v] = _mm512_fmadd_ps(av, b[v], acc[jj][v]);
        }
    }
#pragma GCC unroll 8
    for (int jj = 0; jj < 8; jj++)
        if (jj < nk)
            for (int v = 0; v < NV; v++) _mm512_store_ps(st + (size_t)jj * AQ + 16 * v, acc[jj][v]);
}

static void scores(const float *kt, int T, const float *qt, int D, float *st, int NV) {
    for (int j0 = 0; j0 < T; j0 += 8) {
        const int nk = T - j0 < 8 ? T - j0 : 8;
        float *dst = st + (size_t)j0 * AQ;
        if (NV == 3)
            scores_tile(kt + j0, T, qt, D, dst, nk, 3);
        else if (NV == 2)
            scores_tile(kt + j0, T, qt, D, dst, nk, 2);
        else
            scores_tile(kt + j0, T, qt, D, dst, nk, 1);
    }
}

/* Column-wise softmax of St[T][AQ] (scaled), NV vectors of lanes; inv[i] = 1/Σ_j. */
static void softmax_cols(float *st, int T, int NV, float scale, float *inv) {
    const __m512 vs = _mm512_set1_ps(scale);
    for (int v = 0; v < NV; v++) {
        __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
        for (int j = 0; j < T; j++) mx = _mm512_max_ps(mx, _mm512_load_ps(st + (size_t)j * AQ + 16 * v));
        const __m512 off = _mm512_mul_ps(mx, vs);
        for (int j = 0; j < T; j++) {
            float *p = st + (size_t)j * AQ + 16 * v;
            const __m512 e = mrw_v_exp(_mm512_fmsub_ps(_mm512_load_ps(p), vs, off));
            _mm512_store_ps(p, e);
            sum = _mm512_add_ps(sum, e);
        }
        _mm512_store_ps(inv + 16 * v, _mm512_div_ps(_mm512_set1_ps(1.0f), sum));
    }
}

/* out rows i < rows (<= 12), columns [0, nd) (nd <= 32) = inv[i] · Σ_j st[j][i] · v[j][0..nd). */
static void pv_tile(const float *st, const float *v, int ldv, int T, const float *inv, float *out, int ldo,
                    int rows, int nd) {
    const __mmask16 m0 = lane_mask(nd), m1 = lane_mask(nd - 16);
    __m512 c0[12], c1[12];
    /* every loop over i fully unrolled, so that c0/c1 live in registers */
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
    }
    for (int j = 0; j < T; j++) {
        const float *vr = v + (size_t)j * ldv, *a = st + (size_t)j * AQ;
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, vr), b1 = _mm512_maskz_loadu_ps(m1, vr + 16);
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) {
            const __m512 av = _mm512_set1_ps(a[i]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
        if (i >= rows) break;
        const __m512 s = _mm512_set1_ps(inv[i]);
        _mm512_mask_storeu_ps(out + (size_t)i * ldo, m0, _mm512_mul_ps(c0[i], s));
        _mm512_mask_storeu_ps(out + (size_t)i * ldo + 16, m1, _mm512_mul_ps(c1[i], s));
    }
}

static void attention_item(mrw_vit_ctx *c, float *scratch, int h, int t0) {
    const mrw_vit_config *g = &c->v->cfg;
    const int T = g->n_tokens, D = g->head_dim, C = g->hidden;
    const int nq = T - t0 < AQ ? T - t0 : AQ, NV = (nq + 15) / 16;
    float *st = scratch, *qt = st + round16((size_t)T * AQ), *inv = qt + round16((size_t)D * AQ);
    /* Qt[d][i]: this item's queries, transposed; missing queries are zero lanes */
    for (int v = 0; v < NV; v++)
        transpose(c->q + (size_t)(t0 + 16 * v) * C + (size_t)h * D, C, nq - 16 * v < 16 ? nq - 16 * v : 16, D,
                  qt + 16 * v, AQ, 1);
    scores(c->kh + (size_t)h * D * T, T, qt, D, st, NV);
    softmax_cols(st, T, NV, 1.0f / sqrtf((float)D), inv);
    for (int i0 = 0; i0 < nq; i0 += 12)
        for (int d0 = 0; d0 < D; d0 += 32)
            pv_tile(st + i0, c->vt + (size_t)h * T * D + d0, D, T, inv + i0,
                    c->att + (size_t)(t0 + i0) * C + (size_t)h * D + d0, C, nq - i0 < 12 ? nq - i0 : 12,
                    D - d0 < 32 ? D - d0 : 32);
}

static void attention_avx512(mrw_vit_ctx *c) {
    const mrw_vit_config *g = &c->v->cfg;
    const int T = g->n_tokens, H = g->n_head, D = g->head_dim, C = g->hidden, nt = c->nt;
    const int nqb = (T + AQ - 1) / AQ, items = H * nqb;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        /* keys transposed per head, kh[h][d][t]; values per head, vt[h][t][d] (rows of one head 4 KB apart
         * would cost a TLB miss per row in the output loop) */
#pragma omp for schedule(static)
        for (int t0 = 0; t0 < T; t0 += 16)
            transpose(c->kk + (size_t)t0 * C, C, T - t0 < 16 ? T - t0 : 16, C, c->kh + t0, T, 0);
#pragma omp for schedule(static)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++)
                memcpy(c->vt + ((size_t)h * T + t) * D, c->vv + (size_t)t * C + (size_t)h * D,
                       (size_t)D * sizeof(float));
        float *scratch = c->S + (size_t)omp_get_thread_num() * c->ns;
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < items; it++) attention_item(c, scratch, it / nqb, (it % nqb) * AQ);
    }
}
#endif

static void attention(mrw_vit_ctx *c) {
#ifdef MRW_VMATH_AVX512
    if (!c->portable) {
        attention_avx512(c);
        return;
    }
#endif
    attention_gemm(c);
}

static void layer_forward(mrw_vit_ctx *c, const vit_layer *ly, float *x) {
    const mrw_vit_config *g = &c->v->cfg;
    const int T = g->n_tokens, C = g->hidden, I = g->intermediate, nt = c->nt;
    mrw_kctx *k = &c->k;
    mrw_layernorm(x, c->xn, T, C, ly->ln1_w, ly->ln1_b, g->eps, nt);
    mrw_linear(k, &ly->q, ly->q_b, c->xn, C, T, c->q, C);
    mrw_linear(k, &ly->k, ly->k_b, c->xn, C, T, c->kk, C);
    mrw_linear(k, &ly->v, ly->v_b, c->xn, C, T, c->vv, C);
    attention(c);
    mrw_matmul(k, &ly->o, c->att, C, x, C, T, 1); /* residual: x += att·Woᵀ */
    mrw_add_bias(x, C, ly->o_b, T, C, nt);
    mrw_layernorm(x, c->xn, T, C, ly->ln2_w, ly->ln2_b, g->eps, nt);
    mrw_matmul(k, &ly->fc1, c->xn, C, c->ff, I, T, 0);
    bias_act(c->ff, T, I, ly->fc1_b, g->act, nt);
    mrw_matmul(k, &ly->fc2, c->ff, I, x, C, T, 1);
    mrw_add_bias(x, C, ly->fc2_b, T, C, nt);
}

mrw_status mrw_vit_forward(mrw_vit_ctx *c, const float *pixels, float *out, mrw_error *err) {
    if (!c || !pixels || !out) return mrw_err(err, MRW_E_ARG, "vit: NULL argument");
    const mrw_vit *v = c->v;
    const mrw_vit_config *g = &v->cfg;
    const int C = g->hidden, S = g->image_size, nt = c->nt;
    const size_t n_px = (size_t)g->channels * S * S;
    for (size_t i = 0; i < n_px; i++)
        if (!isfinite(pixels[i]))
            return mrw_err(err, MRW_E_ARG, "vit: pixel value at (channel %zu, y %zu, x %zu) is not finite",
                           i / ((size_t)S * S), i / S % S, i % S);
    /* the residual stream lives in `out`: its final value is last_hidden_state */
    float *x = out;
    im2col(g, pixels, c->ff, nt);
    const int cls = g->family == MRW_VIT_CLIP;
    mrw_linear(&c->k, &v->patch_w, v->patch_b, c->ff, v->patch_w.cols, g->n_patches, x + (size_t)cls * C, C);
    add_positions(v, x, nt);
    if (cls) mrw_layernorm(x, x, g->n_tokens, C, v->pre_w, v->pre_b, g->eps, nt);
    for (int l = 0; l < g->n_layer; l++) layer_forward(c, &v->layers[l], x);
    if (g->family == MRW_VIT_SIGLIP) mrw_layernorm(x, x, g->n_tokens, C, v->post_w, v->post_b, g->eps, nt);
    return MRW_OK;
}
