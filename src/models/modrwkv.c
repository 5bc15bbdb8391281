/* ModRWKV: the assembly of RWKV-7, a modality encoder, optional Conv1D compression and an adapter
 * (../shared/reference/modrwkv.md). This file finds the pieces in the files users have (v1 and v2
 * checkpoints, Hugging Face encoder directories, our own bundles), runs media through them, and splices the
 * resulting features into the language model's input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "formats/audio.h"
#include "formats/image.h"
#include "formats/tfile_impl.h"
#include "kernels/cpu/kctx.h"
#include "models/adapter.h"
#include "models/modrwkv_hooks.h"
#include "models/preprocess.h"
#include "models/rwkv7.h"
#include "models/vit.h"
#include "models/wavlm.h"
#include "models/weights.h"
#include "models/whisper_enc.h"
#include "tensor/dtype.h"

#define V1_ADAPTER "modality.world_encoder.adapter."
#define V2_ADAPTER "proj."
#define V2_ENCODER "encoder.model."
#define COMPRESS "compress."
#define BUNDLE_FORMAT "modrwkv.format"
#define MAX_IMAGES 3
#define IMAGE_PAD 65532

typedef enum { LAYOUT_ENCODER_ONLY, LAYOUT_V1, LAYOUT_V2, LAYOUT_BUNDLE } layout;

/* One modality: encoder -> [compression] -> adapter. Modality 0 of a bundle uses the historical unprefixed
 * names (proj.*, compress.*, encoder.model.*, modrwkv.<key>); modality i >= 1 the same names under "m<i>."
 * (tensors) and "modrwkv.m<i>." (metadata); docs/MULTIMODAL.md. */
typedef struct {
    mrw_tfile *own_file; /* a file we opened that nothing else owns: the encoder file or encoder-only input */
    const mrw_tfile *enc_file;
    char enc_prefix[192];
    char *enc_config, *pre_config; /* config.json / preprocessor_config.json texts (owned), may be NULL */
    mrw_encoder_kind kind;
    mrw_vit *vit;
    mrw_whisper_enc *whisper;
    mrw_wavlm *wavlm;
    int E;
    int wav_normalize;
    mrw_image_proc proc;
    int has_adapter;
    mrw_adapter adapter;
    char adapter_prefix[96];
    const mrw_tfile *src;      /* the file holding the adapter (and the compression unless compress_file) */
    char tprefix[16];          /* "" or "m<i>." in the source file */
    int has_compress;
    mrw_compress compress;
    mrw_tfile *compress_file; /* owned when the weights came from their own file */
} modality;

struct mrw_mm {
    mrw_model *lm;       /* owns the checkpoint file (NULL for an encoder alone) */
    modality mod[MRW_MM_MAX_MODALITIES];
    int n_mod;
    mrw_splice_mode splice;
    mrw_arena arena;
};

mrw_mm_params mrw_mm_params_default(void) {
    mrw_mm_params p = {0};
    p.lm = mrw_load_params_default();
    return p;
}

/* ------------------------------------------------------------------------------------------ detection */

static int has_prefix(const mrw_tfile *f, const char *prefix) {
    const size_t n = strlen(prefix);
    for (int i = 0; i < mrw_tfile_count(f); i++)
        if (!strncmp(mrw_tfile_tensor(f, i)->name, prefix, n)) return 1;
    return 0;
}

static const char *meta_str(const mrw_tfile *f, const char *key, char *buf, size_t n) {
    const mrw_meta *m = mrw_tfile_find_meta(f, key);
    if (!m || m->type != MRW_MV_STRING) return NULL;
    snprintf(buf, n, "%.*s", (int)(m->v.s.len < n ? m->v.s.len : n - 1), m->v.s.ptr);
    return buf;
}

static layout detect_layout(const mrw_tfile *f) {
    if (mrw_tfile_find_meta(f, BUNDLE_FORMAT)) return LAYOUT_BUNDLE;
    if (mrw_tfile_find(f, "llm.emb.weight")) return LAYOUT_V2;
    if (mrw_tfile_find(f, "emb.weight") && has_prefix(f, V1_ADAPTER)) return LAYOUT_V1;
    return LAYOUT_ENCODER_ONLY;
}

int mrw_is_modrwkv_file(const char *path) {
    mrw_tfile *f;
    if (mrw_tfile_open(path, &f, NULL) != MRW_OK) return 0;
    layout l = detect_layout(f);
    int yes = l == LAYOUT_V1 || l == LAYOUT_V2 || l == LAYOUT_BUNDLE;
    mrw_tfile_close(f);
    return yes;
}

/* The encoder family from the tensor names under `prefix`. */
static mrw_encoder_kind detect_encoder(const mrw_tfile *f, const char *prefix) {
    const size_t pl = strlen(prefix);
    int patch = 0, cls = 0, conv1 = 0, wav = 0;
    for (int i = 0; i < mrw_tfile_count(f); i++) {
        const char *n = mrw_tfile_tensor(f, i)->name;
        if (strncmp(n, prefix, pl)) continue;
        n += pl;
        if (strstr(n, "embeddings.patch_embedding.weight")) patch = 1;
        if (strstr(n, "embeddings.class_embedding")) cls = 1;
        if (strstr(n, "conv1.weight") && !strstr(n, "decoder")) conv1 = 1;
        if (strstr(n, "feature_extractor.conv_layers.0.conv.weight")) wav = 1;
    }
    if (patch) return cls ? MRW_ENC_CLIP : MRW_ENC_SIGLIP;
    if (wav) return MRW_ENC_WAVLM;
    if (conv1) return MRW_ENC_WHISPER;
    return MRW_ENC_NONE;
}

static const char *kind_name(mrw_encoder_kind k) {
    switch (k) {
    case MRW_ENC_SIGLIP: return "siglip";
    case MRW_ENC_CLIP: return "clip";
    case MRW_ENC_WHISPER: return "whisper";
    case MRW_ENC_WAVLM: return "wavlm";
    default: return "none";
    }
}

/* ------------------------------------------------------------------------------------- encoder files */

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *read_text(const char *path, size_t limit) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    char *buf = malloc(limit + 1);
    size_t n = buf ? fread(buf, 1, limit, fp) : 0;
    int more = buf && fgetc(fp) != EOF;
    fclose(fp);
    if (!buf || more) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

/* Resolves a Hugging Face encoder path into its weight file and the texts of config.json and
 * preprocessor_config.json (when present next to the weights). */
static mrw_status encoder_files(const char *path, char *weights, size_t wn, char **config, char **pre, mrw_error *err) {
    char dir[4096];
    if (is_dir(path)) {
        snprintf(dir, sizeof dir, "%s", path);
        snprintf(weights, wn, "%s/model.safetensors", path);
        struct stat st;
        if (stat(weights, &st) != 0)
            return mrw_err(err, MRW_E_IO, "%s: no model.safetensors in this encoder directory", path);
    } else {
        snprintf(weights, wn, "%s", path);
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    *config = read_text(p, 1 << 20);
    snprintf(p, sizeof p, "%s/preprocessor_config.json", dir);
    *pre = read_text(p, 1 << 20);
    return MRW_OK;
}

/* Reads a float array of 3 from preprocessor_config.json text (image_mean / image_std). Small and lenient:
 * the file is the user's own, a value that does not parse leaves the default. */
static void json_floats3(const char *json, const char *key, float out[3]) {
    if (!json) return;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p || !(p = strchr(p + strlen(pat), '['))) return;
    float v[3];
    if (sscanf(p, "[ %f , %f , %f ]", &v[0], &v[1], &v[2]) == 3) memcpy(out, v, sizeof v);
}

static mrw_status load_encoder(modality *mm, const mrw_tfile *f, const char *prefix, int keep_dtype, mrw_error *err) {
    mm->kind = detect_encoder(f, prefix);
    mm->enc_file = f;
    snprintf(mm->enc_prefix, sizeof mm->enc_prefix, "%s", prefix);
    mrw_status s;
    switch (mm->kind) {
    case MRW_ENC_SIGLIP:
    case MRW_ENC_CLIP: {
        mrw_vit_params p = {.prefix = prefix, .config_json = mm->enc_config, .keep_dtype = keep_dtype, .quiet = 1};
        if ((s = mrw_vit_load(f, &p, &mm->vit, err))) return s;
        const mrw_vit_config *c = mrw_vit_get_config(mm->vit);
        mm->E = c->hidden;
        mm->proc = mm->kind == MRW_ENC_SIGLIP ? mrw_image_proc_siglip(c->image_size) : mrw_image_proc_clip(c->image_size);
        json_floats3(mm->pre_config, "image_mean", mm->proc.mean);
        json_floats3(mm->pre_config, "image_std", mm->proc.std);
        snprintf(mm->enc_prefix, sizeof mm->enc_prefix, "%s", c->prefix);
        return MRW_OK;
    }
    case MRW_ENC_WHISPER: {
        mrw_whisper_params p = {.prefix = prefix, .config_json = mm->enc_config, .keep_lowp = keep_dtype};
        if ((s = mrw_whisper_enc_load(f, &p, &mm->whisper, err))) return s;
        mm->E = mrw_whisper_enc_config(mm->whisper)->d_model;
        snprintf(mm->enc_prefix, sizeof mm->enc_prefix, "%s", mrw_whisper_enc_prefix(mm->whisper));
        return MRW_OK;
    }
    case MRW_ENC_WAVLM: {
        mrw_wavlm_params p = {.prefix = prefix, .config_json = mm->enc_config, .keep_lowp = keep_dtype};
        if ((s = mrw_wavlm_load(f, &p, &mm->wavlm, err))) return s;
        mm->E = mrw_wavlm_get_config(mm->wavlm)->hidden;
        /* Wav2Vec2FeatureExtractor's do_normalize: true for both published WavLMs */
        mm->wav_normalize = !(mm->pre_config && strstr(mm->pre_config, "\"do_normalize\": false"));
        snprintf(mm->enc_prefix, sizeof mm->enc_prefix, "%s", mrw_wavlm_prefix(mm->wavlm));
        return MRW_OK;
    }
    default:
        return mrw_err(err, MRW_E_MISSING,
                       "no encoder found%s%s (expected SigLIP/CLIP vision, Whisper or WavLM tensors)",
                       *prefix ? " under " : "", prefix);
    }
}

/* ------------------------------------------------------------------------------------------- loading */

/* "m<i>." prefixes of the extra modalities of a bundle (i in 1..9). */
static int is_modality_prefix(const char *name) {
    return name[0] == 'm' && name[1] >= '1' && name[1] <= '9' && name[2] == '.';
}

/* Tensors the language-model loader must leave to us. */
static int claim_non_lm(void *user, const char *name) {
    (void)user;
    return !strncmp(name, V1_ADAPTER, strlen(V1_ADAPTER)) || !strncmp(name, V2_ADAPTER, strlen(V2_ADAPTER)) ||
           !strncmp(name, V2_ENCODER, strlen(V2_ENCODER)) || !strncmp(name, COMPRESS, strlen(COMPRESS)) ||
           is_modality_prefix(name);
}

/* Bundle metadata key of modality i: "modrwkv.<key>" (i = 0) or "modrwkv.m<i>.<key>". */
static const char *mod_key(int i, const char *key, char *buf, size_t n) {
    if (i) snprintf(buf, n, "modrwkv.m%d.%s", i, key);
    else snprintf(buf, n, "modrwkv.%s", key);
    return buf;
}

/* The compression of modality m: CLI parameters (k, s, weights file) when given, else the checkpoint's
 * "<meta>compress" = "k,s" and "<tprefix>compress.*" tensors. */
static mrw_status load_compression(mrw_mm *mm, modality *m, int k, int s, const char *weights, const mrw_tfile *ckpt,
                                   int mi, mrw_error *err) {
    char buf[64], key[64], tname[64];
    if (!k && ckpt && meta_str(ckpt, mod_key(mi, "compress", key, sizeof key), buf, sizeof buf) &&
        sscanf(buf, "%d,%d", &k, &s) != 2)
        return mrw_err(err, MRW_E_FORMAT, "bad %s metadata '%s'", key, buf);
    const mrw_tfile *wf = ckpt;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s" COMPRESS, m->tprefix);
    mrw_status st;
    if (weights) {
        if ((st = mrw_tfile_open(weights, &m->compress_file, err))) return st;
        wf = m->compress_file;
        snprintf(prefix, sizeof prefix, COMPRESS);
        if (!k) k = -1; /* from the weight's shape */
        if (!s && meta_str(wf, "compress.stride", buf, sizeof buf)) s = atoi(buf);
    }
    snprintf(tname, sizeof tname, "%sweight", prefix);
    if (!k && !(ckpt && mrw_tfile_find(ckpt, tname))) return MRW_OK;
    if (!s) return mrw_err(err, MRW_E_ARG, "compression needs a stride: give --compress k,s");
    mrw_wloader L;
    if ((st = mrw_wl_init(&L, wf, "", &mm->arena, err))) return st;
    st = mrw_compress_load(&L, prefix, m->E, k > 0 ? k : 0, s, &m->compress, err);
    if (!st && k > 0 && m->compress.k != k)
        st = mrw_err(err, MRW_E_SHAPE, "--compress %d,%d but the compression weights have kernel %d", k, s, m->compress.k);
    mrw_wl_done(&L);
    if (st) return st;
    m->has_compress = 1;
    return MRW_OK;
}

/* The adapter of modality m from its source file, checked against the encoder's width and the LM's. */
static mrw_status load_adapter(mrw_mm *mm, modality *m, mrw_error *err) {
    mrw_wloader L;
    mrw_status s = mrw_wl_init(&L, m->src, "", &mm->arena, err);
    if (s) return s;
    s = mrw_adapter_load(&L, m->adapter_prefix, m->E, mrw_model_get_info(mm->lm).n_embd, &m->adapter, err);
    for (int i = 0; i < mrw_tfile_count(m->src) && !s; i++) { /* everything under the adapter's prefix is used */
        const char *n = mrw_tfile_tensor(m->src, i)->name;
        if (!strncmp(n, m->adapter_prefix, strlen(m->adapter_prefix)) && !L.used[i])
            s = mrw_err(err, MRW_E_UNKNOWN, "unexpected adapter tensor '%s'", n);
    }
    mrw_wl_done(&L);
    if (!s) m->has_adapter = 1;
    return s;
}

/* Modality mi of a bundle (or the one modality of a v2 checkpoint: mi = 0, no metadata). */
static mrw_status load_inner_modality(mrw_mm *mm, int mi, const mrw_tfile *ckpt, layout lay, const mrw_mm_params *p,
                                      int use_cli_compress, mrw_error *err) {
    modality *m = &mm->mod[mi];
    char buf[256], key[64];
    if (mi) snprintf(m->tprefix, sizeof m->tprefix, "m%d.", mi);
    m->src = ckpt;
    if (lay == LAYOUT_BUNDLE) {
        const mrw_meta *c = mrw_tfile_find_meta(ckpt, mod_key(mi, "encoder_config", key, sizeof key));
        if (c && c->type == MRW_MV_STRING && !(m->enc_config = strndup(c->v.s.ptr, c->v.s.len)))
            return mrw_err(err, MRW_E_NOMEM, "out of memory");
        const mrw_meta *pc = mrw_tfile_find_meta(ckpt, mod_key(mi, "preprocessor_config", key, sizeof key));
        if (pc && pc->type == MRW_MV_STRING && !(m->pre_config = strndup(pc->v.s.ptr, pc->v.s.len)))
            return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    char enc_prefix[160];
    snprintf(enc_prefix, sizeof enc_prefix, "%s" V2_ENCODER, m->tprefix);
    if (lay == LAYOUT_BUNDLE && meta_str(ckpt, mod_key(mi, "encoder_prefix", key, sizeof key), buf, sizeof buf))
        snprintf(enc_prefix, sizeof enc_prefix, "%s" V2_ENCODER "%.100s", m->tprefix, buf); /* longer names match nothing */
    mrw_status s = load_encoder(m, ckpt, enc_prefix, p->encoder_keep_dtype, err);
    if (s) return s;
    const char *ap = lay == LAYOUT_BUNDLE ? meta_str(ckpt, mod_key(mi, "adapter_prefix", key, sizeof key), buf, sizeof buf) : NULL;
    if (ap) snprintf(m->adapter_prefix, sizeof m->adapter_prefix, "%.60s", ap);
    else snprintf(m->adapter_prefix, sizeof m->adapter_prefix, "%s" V2_ADAPTER, m->tprefix);
    if (mi && strncmp(m->adapter_prefix, m->tprefix, strlen(m->tprefix)))
        return mrw_err(err, MRW_E_FORMAT, "%s '%s' lies outside the modality's '%s' tensors", key, m->adapter_prefix,
                       m->tprefix);
    if (use_cli_compress) s = load_compression(mm, m, p->compress_k, p->compress_s, p->compress_weights, ckpt, mi, err);
    else s = load_compression(mm, m, 0, 0, NULL, ckpt, mi, err);
    if (!s) s = load_adapter(mm, m, err);
    return s;
}

mrw_status mrw_mm_load(const char *path, const mrw_mm_params *params, mrw_mm **out, mrw_error *err) {
    *out = NULL;
    mrw_mm_params defaults = mrw_mm_params_default();
    const mrw_mm_params *p = params ? params : &defaults;
    mrw_mm *mm = calloc(1, sizeof *mm);
    if (!mm) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    modality *m0 = &mm->mod[0];
    mrw_tfile *f = NULL;
    char dir_weights[4096];
    mrw_status s;
    if (is_dir(path)) { /* a Hugging Face encoder directory */
        if ((s = encoder_files(path, dir_weights, sizeof dir_weights, &m0->enc_config, &m0->pre_config, err))) goto fail;
        if ((s = mrw_tfile_open(dir_weights, &f, err))) goto fail;
    } else if ((s = mrw_tfile_open(path, &f, err))) {
        goto fail;
    }
    const layout lay = detect_layout(f);
    char buf[256];
    /* the encoder's configuration: the bundle's own (read per modality), else the Hugging Face files named by
     * the caller */
    char enc_weights[4096] = "";
    if (lay != LAYOUT_BUNDLE && p->encoder && !m0->enc_config) {
        if ((s = encoder_files(p->encoder, enc_weights, sizeof enc_weights, &m0->enc_config, &m0->pre_config, err)))
            goto fail;
    }
    if (lay == LAYOUT_ENCODER_ONLY) { /* `modrwkv encode -m ENCODER` */
        m0->own_file = f;
        f = NULL;
        mm->n_mod = 1;
        if (m0->enc_config == NULL && !p->encoder && !is_dir(path)) /* a weight file: its config sits next to it */
            if ((s = encoder_files(path, enc_weights, sizeof enc_weights, &m0->enc_config, &m0->pre_config, err))) goto fail;
        if ((s = load_encoder(m0, m0->own_file, "", p->encoder_keep_dtype, err))) goto fail;
        *out = mm;
        return MRW_OK;
    }
    /* language model: official keys at the root (v1) or under llm. (v2, bundles); it takes the file */
    const char *lm_prefix = lay == LAYOUT_V1 ? "" : "llm.";
    if ((s = mrw_rwkv7_from_file(f, lm_prefix, &p->lm, claim_non_lm, NULL, &mm->lm, err))) goto fail;
    const mrw_tfile *ckpt = f;
    f = NULL;
    /* encoder: inside the checkpoint (v2, bundles), or the Hugging Face files (v1) */
    if (lay == LAYOUT_V1) {
        mm->n_mod = 1;
        if (!p->encoder) {
            s = mrw_err(err, MRW_E_ARG, "this is a ModRWKV v1 checkpoint: its encoder is not inside it; give the "
                                        "Hugging Face encoder with --encoder DIR (e.g. siglip2-base-patch16-384/)");
            goto fail;
        }
        if ((s = mrw_tfile_open(enc_weights, &m0->own_file, err))) goto fail;
        if ((s = load_encoder(m0, m0->own_file, "", p->encoder_keep_dtype, err))) goto fail;
        snprintf(m0->adapter_prefix, sizeof m0->adapter_prefix, "%s", V1_ADAPTER);
        m0->src = ckpt;
        mm->splice = MRW_SPLICE_PREPEND;
        if ((s = load_compression(mm, m0, p->compress_k, p->compress_s, p->compress_weights, ckpt, 0, err))) goto fail;
        if ((s = load_adapter(mm, m0, err))) goto fail;
    } else {
        int n = 1;
        if (lay == LAYOUT_BUNDLE && meta_str(ckpt, "modrwkv.modalities", buf, sizeof buf)) {
            char *end;
            long v = strtol(buf, &end, 10);
            if (*end || v < 1 || v > MRW_MM_MAX_MODALITIES) {
                s = mrw_err(err, MRW_E_FORMAT, "modrwkv.modalities is '%s' (1 to %d supported)", buf, MRW_MM_MAX_MODALITIES);
                goto fail;
            }
            n = (int)v;
        }
        if (n > 1 && (p->compress_k || p->compress_weights)) {
            s = mrw_err(err, MRW_E_ARG, "--compress applies to a model with one modality; this one has %d", n);
            goto fail;
        }
        if (n > 1 && p->encoder) {
            s = mrw_err(err, MRW_E_ARG, "--encoder applies to a model with one modality; this one has %d (its encoders "
                                        "are inside it)", n);
            goto fail;
        }
        mm->splice = MRW_SPLICE_PLACEHOLDER;
        if (lay == LAYOUT_BUNDLE && meta_str(ckpt, "modrwkv.splice", buf, sizeof buf) && !strcmp(buf, "prepend"))
            mm->splice = MRW_SPLICE_PREPEND;
        for (int i = 0; i < n; i++) {
            mm->n_mod = i + 1;
            if ((s = load_inner_modality(mm, i, ckpt, lay, p, n == 1, err))) goto fail;
        }
    }
    *out = mm;
    return MRW_OK;
fail:
    mrw_tfile_close(f);
    mrw_mm_free(mm);
    if (err && s != MRW_E_NOMEM) mrw_err_prefix(err, "%s", path);
    return s;
}

void mrw_mm_free(mrw_mm *mm) {
    if (!mm) return;
    for (int i = 0; i < MRW_MM_MAX_MODALITIES; i++) {
        modality *m = &mm->mod[i];
        mrw_vit_free(m->vit);
        mrw_whisper_enc_free(m->whisper);
        mrw_wavlm_free(m->wavlm);
    }
    mrw_model_free(mm->lm);
    for (int i = 0; i < MRW_MM_MAX_MODALITIES; i++) {
        modality *m = &mm->mod[i];
        mrw_tfile_close(m->own_file);
        mrw_tfile_close(m->compress_file);
        free(m->enc_config);
        free(m->pre_config);
    }
    mrw_arena_free(&mm->arena);
    free(mm);
}

const mrw_model *mrw_mm_model(const mrw_mm *mm) { return mm->lm; }

int mrw_mm_n_modalities(const mrw_mm *mm) { return mm->n_mod; }

mrw_mm_info mrw_mm_modality_info(const mrw_mm *mm, int index) {
    mrw_mm_info i = {0};
    i.n_modalities = mm->n_mod;
    i.has_lm = mm->lm != NULL;
    i.splice = mm->splice;
    if (index < 0 || index >= mm->n_mod) return i;
    const modality *m = &mm->mod[index];
    i.encoder = m->kind;
    i.encoder_width = m->E;
    i.adapter_version = m->has_adapter ? m->adapter.version : 0;
    i.adapter_audio = m->has_adapter && m->adapter.kind == MRW_ADAPTER_AUDIO;
    i.compress_k = m->has_compress ? m->compress.k : 0;
    i.compress_s = m->has_compress ? m->compress.s : 0;
    i.compress_trained = m->has_compress && m->compress.w;
    i.image_size = m->vit ? mrw_vit_get_config(m->vit)->image_size : 0;
    i.takes_audio = m->whisper || m->wavlm;
    return i;
}

mrw_mm_info mrw_mm_get_info(const mrw_mm *mm) { return mrw_mm_modality_info(mm, 0); }

/* ------------------------------------------------------------------------------------------ encoding */

void mrw_features_free(mrw_features *f) {
    if (!f) return;
    free(f->rows);
    memset(f, 0, sizeof *f);
}

mrw_status mrw_features_save(const char *path, const mrw_features *encoder_out, const mrw_features *adapted,
                             mrw_error *err) {
    mrw_tensor_info t[2];
    int n = 0;
    const mrw_features *f[2] = {encoder_out, adapted};
    static const char *names[2] = {"last_hidden_state", "features"};
    for (int i = 0; i < 2; i++) {
        if (!f[i] || !f[i]->rows) continue;
        memset(&t[n], 0, sizeof t[n]);
        t[n].name = (char *)names[i];
        t[n].dtype = MRW_DT_F32;
        t[n].ndim = 2;
        t[n].shape[0] = f[i]->n;
        t[n].shape[1] = f[i]->dim;
        t[n].data = f[i]->rows;
        t[n].nbytes = (size_t)f[i]->n * f[i]->dim * sizeof(float);
        n++;
    }
    if (!n) return mrw_err(err, MRW_E_ARG, "no features to write");
    return mrw_safetensors_write(path, t, n, NULL, 0, NULL, NULL, err);
}

/* Encoder output [n, E] -> compression -> adapter -> out [m, C]. */
static mrw_status adapt(const modality *mm, mrw_kctx *k, float *enc, int n, mrw_features *out, mrw_error *err) {
    float *x = enc;
    int T = n;
    float *comp = NULL, *scratch = NULL;
    mrw_status s = MRW_OK;
    if (mm->has_compress) {
        const int To = mrw_compress_out_len(&mm->compress, T);
        if (To < 1) return mrw_err(err, MRW_E_ARG, "%d encoder tokens are too few to compress with kernel %d", T, mm->compress.k);
        comp = malloc((size_t)To * mm->E * sizeof *comp);
        scratch = malloc((mrw_compress_scratch_floats(&mm->compress, T) + 1) * sizeof *scratch);
        if (!comp || !scratch) s = mrw_err(err, MRW_E_NOMEM, "out of memory");
        if (!s) s = mrw_compress_forward(&mm->compress, k, x, T, comp, scratch, err);
        free(scratch);
        scratch = NULL;
        x = comp;
        T = To;
    }
    if (!s) {
        const int To = mrw_adapter_out_len(&mm->adapter, T);
        if (To < 1) s = mrw_err(err, MRW_E_ARG, "%d encoder tokens are too few for the adapter", T);
        if (!s) {
            out->dim = mm->adapter.C;
            out->n = To;
            out->rows = malloc((size_t)To * out->dim * sizeof(float));
            scratch = malloc((mrw_adapter_scratch_floats(&mm->adapter, T) + 1) * sizeof *scratch);
            if (!out->rows || !scratch) s = mrw_err(err, MRW_E_NOMEM, "out of memory");
            if (!s) s = mrw_adapter_forward(&mm->adapter, k, x, T, out->rows, scratch, err);
            if (s) mrw_features_free(out);
        }
    }
    free(scratch);
    free(comp);
    return s;
}

static mrw_status finish(const modality *mm, mrw_kctx *k, float *enc, int n, mrw_features *out, mrw_features *enc_out,
                         mrw_error *err) {
    mrw_status s = MRW_OK;
    if (out) {
        memset(out, 0, sizeof *out);
        if (!mm->has_adapter) s = mrw_err(err, MRW_E_ARG, "this file holds an encoder only: no adapted features");
        else s = adapt(mm, k, enc, n, out, err);
    }
    if (!s && enc_out) {
        enc_out->rows = enc;
        enc_out->n = n;
        enc_out->dim = mm->E;
        enc = NULL;
    }
    free(enc);
    return s;
}

static mrw_status encode_image_mod(const modality *mm, const char *path, int n_threads, mrw_features *out,
                               mrw_features *encoder_out, mrw_error *err) {
    if (encoder_out) memset(encoder_out, 0, sizeof *encoder_out);
    if (!mm->vit) return mrw_err(err, MRW_E_ARG, "this model's encoder (%s) takes audio, not images", kind_name(mm->kind));
    const mrw_vit_config *c = mrw_vit_get_config(mm->vit);
    mrw_image img = {0};
    mrw_status s = mrw_image_load(path, NULL, &img, err);
    if (s) return s;
    float *pix = malloc((size_t)3 * c->image_size * c->image_size * sizeof *pix);
    float *enc = malloc((size_t)c->n_tokens * c->hidden * sizeof *enc);
    if (!pix || !enc) s = mrw_err(err, MRW_E_NOMEM, "out of memory");
    if (!s) s = mrw_image_preprocess(&img, &mm->proc, pix, err);
    mrw_image_free(&img);
    mrw_vit_ctx *vc = NULL;
    if (!s) s = mrw_vit_ctx_new(mm->vit, n_threads, &vc, err);
    if (!s) s = mrw_vit_forward(vc, pix, enc, err);
    mrw_vit_ctx_free(vc);
    free(pix);
    if (s) {
        free(enc);
        return err ? mrw_err_prefix(err, "%s", path), s : s;
    }
    mrw_kctx k;
    mrw_kctx_init(&k, n_threads);
    s = finish(mm, &k, enc, c->n_tokens, out, encoder_out, err);
    mrw_kctx_free(&k);
    return s;
}

static mrw_status whisper_features(const modality *mm, mrw_kctx *k, const mrw_audio *a, float **enc, int *n, mrw_error *err) {
    const mrw_whisper_config *c = mrw_whisper_enc_config(mm->whisper);
    const int frames = 2 * c->n_pos; /* 3000 (30 s) for every released Whisper */
    float *mel = malloc((size_t)c->n_mels * frames * sizeof *mel);
    const int out_frames = mrw_whisper_enc_out_frames(frames);
    float *o = malloc((size_t)out_frames * c->d_model * sizeof *o);
    int real = 0;
    mrw_status s = (!mel || !o) ? mrw_err(err, MRW_E_NOMEM, "out of memory") : MRW_OK;
    if (!s) s = mrw_whisper_log_mel(a->samples, a->n, c->n_mels, frames, mel, &real, err);
    if (!s) s = mrw_whisper_enc_forward(mm->whisper, k, mel, frames, o, err);
    free(mel);
    if (s) {
        free(o);
        return s;
    }
    /* "mel frames of real audio" (../shared/reference/encoders.md): the frames an unpadded extraction gives,
     * samples / hop (the attention mask of the padded one counts one more when the length is not a multiple
     * of the hop) */
    (void)real;
    *n = mrw_whisper_keep_frames((int)(a->n / MRW_WHISPER_HOP), out_frames);
    *enc = o;
    return MRW_OK;
}

static mrw_status wavlm_features(const modality *mm, mrw_kctx *k, mrw_audio *a, float **enc, int *n, mrw_error *err) {
    const int frames = mrw_wavlm_out_frames(mm->wavlm, (int)a->n);
    if (frames < 1)
        return mrw_err(err, MRW_E_ARG, "the audio is too short for WavLM: %zu samples, at least %d needed", a->n,
                       mrw_wavlm_min_samples(mm->wavlm));
    mrw_status s = mm->wav_normalize ? mrw_wav_normalize(a->samples, a->n, a->samples, err) : MRW_OK;
    if (s) return s;
    float *o = malloc((size_t)frames * mrw_wavlm_get_config(mm->wavlm)->hidden * sizeof *o);
    if (!o) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    if ((s = mrw_wavlm_forward(mm->wavlm, k, a->samples, (int)a->n, o, err))) {
        free(o);
        return s;
    }
    *enc = o;
    *n = frames;
    return MRW_OK;
}

static mrw_status encode_audio_mod(const modality *mm, const char *path, int n_threads, mrw_features *out,
                               mrw_features *encoder_out, mrw_error *err) {
    if (encoder_out) memset(encoder_out, 0, sizeof *encoder_out);
    if (!mm->whisper && !mm->wavlm)
        return mrw_err(err, MRW_E_ARG, "this model's encoder (%s) takes images, not audio", kind_name(mm->kind));
    mrw_audio a = {0};
    mrw_status s = mrw_audio_load(path, 16000, NULL, &a, err);
    if (s) return s;
    mrw_kctx k;
    mrw_kctx_init(&k, n_threads);
    float *enc = NULL;
    int n = 0;
    s = mm->whisper ? whisper_features(mm, &k, &a, &enc, &n, err) : wavlm_features(mm, &k, &a, &enc, &n, err);
    mrw_audio_free(&a);
    if (s) {
        if (err) mrw_err_prefix(err, "%s", path);
    } else {
        s = finish(mm, &k, enc, n, out, encoder_out, err);
    }
    mrw_kctx_free(&k);
    return s;
}

static mrw_status encode_input_mod(const modality *mm, const float *input, size_t n, int n_threads, mrw_features *out,
                               mrw_features *encoder_out, mrw_error *err) {
    if (encoder_out) memset(encoder_out, 0, sizeof *encoder_out);
    mrw_kctx k;
    mrw_kctx_init(&k, n_threads);
    float *enc = NULL;
    int rows = 0;
    mrw_status s = MRW_OK;
    if (mm->vit) {
        const mrw_vit_config *c = mrw_vit_get_config(mm->vit);
        const size_t need = (size_t)3 * c->image_size * c->image_size;
        if (n != need) s = mrw_err(err, MRW_E_SHAPE, "pixel_values has %zu floats, the encoder takes 3x%dx%d", n, c->image_size, c->image_size);
        mrw_vit_ctx *vc = NULL;
        if (!s && !(enc = malloc((size_t)c->n_tokens * c->hidden * sizeof *enc))) s = mrw_err(err, MRW_E_NOMEM, "out of memory");
        if (!s) s = mrw_vit_ctx_new(mm->vit, n_threads, &vc, err);
        if (!s) s = mrw_vit_forward(vc, input, enc, err);
        mrw_vit_ctx_free(vc);
        rows = c->n_tokens;
    } else if (mm->whisper) {
        const mrw_whisper_config *c = mrw_whisper_enc_config(mm->whisper);
        const int frames = c->n_mels > 0 ? (int)(n / (size_t)c->n_mels) : 0;
        if (frames < 1 || (size_t)frames * c->n_mels != n)
            s = mrw_err(err, MRW_E_SHAPE, "input_features has %zu floats, not a multiple of %d mel bins", n, c->n_mels);
        rows = s ? 0 : mrw_whisper_enc_out_frames(frames);
        if (!s && !(enc = malloc((size_t)rows * c->d_model * sizeof *enc))) s = mrw_err(err, MRW_E_NOMEM, "out of memory");
        if (!s) s = mrw_whisper_enc_forward(mm->whisper, &k, input, frames, enc, err);
    } else if (mm->wavlm) {
        rows = mrw_wavlm_out_frames(mm->wavlm, (int)n);
        if (rows < 1) s = mrw_err(err, MRW_E_ARG, "input_values has %zu samples; WavLM needs at least %d", n, mrw_wavlm_min_samples(mm->wavlm));
        if (!s && !(enc = malloc((size_t)rows * mrw_wavlm_get_config(mm->wavlm)->hidden * sizeof *enc)))
            s = mrw_err(err, MRW_E_NOMEM, "out of memory");
        if (!s) s = mrw_wavlm_forward(mm->wavlm, &k, input, (int)n, enc, err);
    } else {
        s = mrw_err(err, MRW_E_ARG, "no encoder");
    }
    if (s) free(enc);
    else s = finish(mm, &k, enc, rows, out, encoder_out, err);
    mrw_kctx_free(&k);
    return s;
}

/* The modality that takes images (audio = 0) or recordings (audio = 1); a single-modality model answers with
 * its only modality so that the error names its encoder. */
static int pick_modality(const mrw_mm *mm, int audio) {
    for (int i = 0; i < mm->n_mod; i++) {
        const modality *m = &mm->mod[i];
        if (audio ? m->whisper || m->wavlm : m->vit != NULL) return i;
    }
    return mm->n_mod == 1 ? 0 : -1;
}

static mrw_status no_modality(const mrw_mm *mm, int audio, mrw_error *err) {
    char have[96] = "";
    for (int i = 0; i < mm->n_mod; i++)
        snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? ", " : "", kind_name(mm->mod[i].kind));
    return mrw_err(err, MRW_E_ARG, "this model has no %s encoder (its encoders: %s); merge one in with modrwkv "
                   "convert --merge", audio ? "audio" : "image", mm->n_mod ? have : "none");
}

int mrw_mm_modality_of(const mrw_mm *mm, int audio) {
    int i = pick_modality(mm, audio);
    if (i < 0) return -1;
    const modality *m = &mm->mod[i];
    return (audio ? m->whisper || m->wavlm : m->vit != NULL) ? i : -1;
}

mrw_status mrw_mm_encode_image(const mrw_mm *mm, const char *path, int n_threads, mrw_features *out,
                               mrw_features *encoder_out, mrw_error *err) {
    const int i = pick_modality(mm, 0);
    if (i < 0) {
        if (encoder_out) memset(encoder_out, 0, sizeof *encoder_out);
        return no_modality(mm, 0, err);
    }
    return encode_image_mod(&mm->mod[i], path, n_threads, out, encoder_out, err);
}

mrw_status mrw_mm_encode_audio(const mrw_mm *mm, const char *path, int n_threads, mrw_features *out,
                               mrw_features *encoder_out, mrw_error *err) {
    const int i = pick_modality(mm, 1);
    if (i < 0) {
        if (encoder_out) memset(encoder_out, 0, sizeof *encoder_out);
        return no_modality(mm, 1, err);
    }
    return encode_audio_mod(&mm->mod[i], path, n_threads, out, encoder_out, err);
}

mrw_status mrw_mm_encode_input_at(const mrw_mm *mm, int modality_index, const float *input, size_t n, int n_threads,
                                  mrw_features *out, mrw_features *encoder_out, mrw_error *err) {
    if (encoder_out) memset(encoder_out, 0, sizeof *encoder_out);
    if (modality_index < 0 || modality_index >= mm->n_mod)
        return mrw_err(err, MRW_E_ARG, "modality %d does not exist (the model has %d)", modality_index, mm->n_mod);
    return encode_input_mod(&mm->mod[modality_index], input, n, n_threads, out, encoder_out, err);
}

mrw_status mrw_mm_encode_input(const mrw_mm *mm, const float *input, size_t n, int n_threads, mrw_features *out,
                               mrw_features *encoder_out, mrw_error *err) {
    return mrw_mm_encode_input_at(mm, 0, input, n, n_threads, out, encoder_out, err);
}

/* ------------------------------------------------------------ hooks for the GPU path (modrwkv_hooks.h) */

mrw_status mrw_mm_vision_encoder(const mrw_mm *mm, const mrw_tfile **file, const mrw_vit_config **cfg,
                                 mrw_error *err) {
    const int i = mrw_mm_modality_of(mm, 0);
    if (i < 0) return no_modality(mm, 0, err);
    *file = mm->mod[i].enc_file;
    *cfg = mrw_vit_get_config(mm->mod[i].vit);
    return MRW_OK;
}

mrw_status mrw_mm_image_pixels(const mrw_mm *mm, const char *path, float **pixels, mrw_error *err) {
    *pixels = NULL;
    const int i = mrw_mm_modality_of(mm, 0);
    if (i < 0) return no_modality(mm, 0, err);
    const modality *m = &mm->mod[i];
    const mrw_vit_config *c = mrw_vit_get_config(m->vit);
    mrw_image img = {0};
    mrw_status s = mrw_image_load(path, NULL, &img, err);
    if (s) return s;
    float *pix = malloc((size_t)3 * c->image_size * c->image_size * sizeof *pix);
    s = pix ? mrw_image_preprocess(&img, &m->proc, pix, err) : mrw_err(err, MRW_E_NOMEM, "out of memory");
    mrw_image_free(&img);
    if (s) {
        free(pix);
        return err ? mrw_err_prefix(err, "%s", path), s : s;
    }
    *pixels = pix;
    return MRW_OK;
}

mrw_status mrw_mm_features_finish(const mrw_mm *mm, int audio, float *enc, int n, int n_threads, mrw_features *out,
                                  mrw_features *encoder_out, mrw_error *err) {
    if (encoder_out) memset(encoder_out, 0, sizeof *encoder_out);
    const int i = mrw_mm_modality_of(mm, audio);
    if (i < 0) {
        free(enc);
        return no_modality(mm, audio, err);
    }
    mrw_kctx k;
    mrw_kctx_init(&k, n_threads);
    mrw_status s = finish(&mm->mod[i], &k, enc, n, out, encoder_out, err);
    mrw_kctx_free(&k);
    return s;
}

mrw_status mrw_mm_whisper_encoder(const mrw_mm *mm, const mrw_tfile **file, const char **prefix,
                                  const mrw_whisper_config **cfg, mrw_error *err) {
    const int i = mrw_mm_modality_of(mm, 1);
    if (i < 0) return no_modality(mm, 1, err);
    const modality *m = &mm->mod[i];
    if (!m->whisper)
        return mrw_err(err, MRW_E_UNSUPPORTED, "this model's audio encoder (%s) has no GPU version", kind_name(m->kind));
    *file = m->enc_file;
    *prefix = mrw_whisper_enc_prefix(m->whisper);
    *cfg = mrw_whisper_enc_config(m->whisper);
    return MRW_OK;
}

mrw_status mrw_mm_whisper_mel(const mrw_mm *mm, const char *path, float **mel, int *frames, int *keep,
                              mrw_error *err) {
    *mel = NULL;
    const int i = mrw_mm_modality_of(mm, 1);
    if (i < 0) return no_modality(mm, 1, err);
    const modality *m = &mm->mod[i];
    if (!m->whisper) return mrw_err(err, MRW_E_UNSUPPORTED, "this model's audio encoder is not Whisper");
    const mrw_whisper_config *c = mrw_whisper_enc_config(m->whisper);
    const int F = 2 * c->n_pos; /* as whisper_features: 3000 (30 s) for every released Whisper */
    mrw_audio a = {0};
    mrw_status s = mrw_audio_load(path, 16000, NULL, &a, err);
    if (s) return s;
    float *buf = malloc((size_t)c->n_mels * F * sizeof *buf);
    int real = 0;
    s = buf ? mrw_whisper_log_mel(a.samples, a.n, c->n_mels, F, buf, &real, err) : mrw_err(err, MRW_E_NOMEM, "out of memory");
    if (!s) {
        *keep = mrw_whisper_keep_frames((int)(a.n / MRW_WHISPER_HOP), mrw_whisper_enc_out_frames(F));
        *frames = F;
        *mel = buf;
    } else {
        free(buf);
        if (err) mrw_err_prefix(err, "%s", path);
    }
    mrw_audio_free(&a);
    return s;
}

mrw_status mrw_mm_wavlm_encoder(const mrw_mm *mm, const mrw_tfile **file, const char **prefix,
                                const mrw_wavlm_config **cfg, mrw_error *err) {
    const int i = mrw_mm_modality_of(mm, 1);
    if (i < 0) return no_modality(mm, 1, err);
    const modality *m = &mm->mod[i];
    if (!m->wavlm) return mrw_err(err, MRW_E_UNSUPPORTED, "this model's audio encoder (%s) is not WavLM", kind_name(m->kind));
    *file = m->enc_file;
    *prefix = mrw_wavlm_prefix(m->wavlm);
    *cfg = mrw_wavlm_get_config(m->wavlm);
    return MRW_OK;
}

mrw_status mrw_mm_wavlm_wave(const mrw_mm *mm, const char *path, float **wave, int *n, mrw_error *err) {
    *wave = NULL;
    *n = 0;
    const int i = mrw_mm_modality_of(mm, 1);
    if (i < 0) return no_modality(mm, 1, err);
    const modality *m = &mm->mod[i];
    if (!m->wavlm) return mrw_err(err, MRW_E_UNSUPPORTED, "this model's audio encoder is not WavLM");
    mrw_audio a = {0};
    mrw_status s = mrw_audio_load(path, 16000, NULL, &a, err);
    if (s) return s;
    if (a.n > MRW_WAVLM_MAX_SAMPLES)
        s = mrw_err(err, MRW_E_LIMIT, "wavlm: %zu samples exceed the limit of %d (%d s at 16 kHz): split the audio",
                    a.n, MRW_WAVLM_MAX_SAMPLES, MRW_WAVLM_MAX_SAMPLES / 16000);
    else if (mrw_wavlm_out_frames(m->wavlm, (int)a.n) < 1)
        s = mrw_err(err, MRW_E_ARG, "the audio is too short for WavLM: %zu samples, at least %d needed", a.n,
                    mrw_wavlm_min_samples(m->wavlm));
    if (!s && m->wav_normalize) s = mrw_wav_normalize(a.samples, a.n, a.samples, err);
    if (!s) {
        *wave = a.samples;
        *n = (int)a.n;
        a.samples = NULL;
    } else if (err) {
        mrw_err_prefix(err, "%s", path);
    }
    mrw_audio_free(&a);
    return s;
}

/* ------------------------------------------------------------------------------------------- splicing */

mrw_status mrw_mm_splice(const mrw_mm *mm, const mrw_features *feats, int n_feats, const int32_t *tokens,
                         int n_tokens, float **rows_out, int32_t **src_out, int *total_out, mrw_error *err) {
    *rows_out = NULL;
    if (src_out) *src_out = NULL;
    *total_out = 0;
    if (!mm->lm) return mrw_err(err, MRW_E_ARG, "this file holds an encoder only");
    const mrw_model_info in = mrw_model_get_info(mm->lm);
    const int C = in.n_embd;
    if (n_feats > MAX_IMAGES && mm->splice == MRW_SPLICE_PLACEHOLDER)
        return mrw_err(err, MRW_E_ARG, "%d images given; a ModRWKV v2 prompt takes at most %d", n_feats, MAX_IMAGES);
    size_t n_feat_rows = 0;
    for (int i = 0; i < n_feats; i++) {
        if (feats[i].dim != C)
            return mrw_err(err, MRW_E_SHAPE, "features of width %d cannot be spliced into a model of width %d", feats[i].dim, C);
        n_feat_rows += (size_t)feats[i].n;
    }
    /* placeholder mode: the i-th run of <|image_pad|> takes feats[i] */
    if (mm->splice == MRW_SPLICE_PLACEHOLDER) {
        int runs = 0, pads = 0, mismatch = -1, run_len = 0;
        for (int t = 0; t < n_tokens;) {
            if (tokens[t] != IMAGE_PAD) { t++; continue; }
            int len = 0;
            while (t + len < n_tokens && tokens[t + len] == IMAGE_PAD) len++;
            if (mismatch < 0 && (runs >= n_feats || len != feats[runs].n)) mismatch = runs, run_len = len;
            runs++;
            pads += len;
            t += len;
        }
        if (pads != (int)n_feat_rows || runs != n_feats)
            return mrw_err(err, MRW_E_ARG, "the prompt has %d <|image_pad|> placeholder%s in %d run%s but the %d "
                           "medi%s (images, recordings) give %zu feature rows (%d for the first)", pads,
                           pads == 1 ? "" : "s", runs, runs == 1 ? "" : "s", n_feats, n_feats == 1 ? "um" : "a",
                           n_feat_rows, n_feats ? feats[0].n : 0);
        if (mismatch >= 0)
            return mrw_err(err, MRW_E_ARG, "medium %d (image or recording) gives %d feature rows but its <|image_pad|> "
                           "run has %d placeholders", mismatch + 1, feats[mismatch].n, run_len);
    }
    const size_t total = mm->splice == MRW_SPLICE_PREPEND ? n_feat_rows + (size_t)n_tokens : (size_t)n_tokens;
    if (total == 0) return mrw_err(err, MRW_E_ARG, "nothing to evaluate");
    if (total > (1u << 24)) return mrw_err(err, MRW_E_LIMIT, "the input is too long (%zu rows)", total);
    float *rows = malloc(total * C * sizeof *rows);
    int32_t *src = src_out ? malloc(total * sizeof *src) : NULL;
    if (!rows || (src_out && !src)) {
        free(rows);
        free(src);
        return mrw_err(err, MRW_E_NOMEM, "out of memory for %zu input rows", total);
    }
    size_t r = 0;
    if (mm->splice == MRW_SPLICE_PREPEND)
        for (int i = 0; i < n_feats; i++, r += (size_t)feats[i - 1].n)
            memcpy(rows + r * C, feats[i].rows, (size_t)feats[i].n * C * sizeof *rows);
    if (src)
        for (size_t i = 0; i < r; i++) src[i] = -1;
    mrw_status s = MRW_OK;
    for (int t = 0, img = 0; t < n_tokens && !s;) {
        if (mm->splice == MRW_SPLICE_PLACEHOLDER && tokens[t] == IMAGE_PAD) {
            memcpy(rows + r * C, feats[img].rows, (size_t)feats[img].n * C * sizeof *rows);
            for (int i = 0; src && i < feats[img].n; i++) src[r + i] = -1;
            r += (size_t)feats[img].n;
            t += feats[img++].n;
            continue;
        }
        if (mrw_model_embedding(mm->lm, tokens[t], rows + r * C))
            s = mrw_err(err, MRW_E_ARG, "token %d at position %d is outside the vocabulary [0, %d)", tokens[t], t, in.n_vocab);
        if (src) src[r] = tokens[t];
        r++;
        t++;
    }
    if (s) {
        free(rows);
        free(src);
        return s;
    }
    *rows_out = rows;
    if (src_out) *src_out = src;
    *total_out = (int)total;
    return MRW_OK;
}

mrw_status mrw_mm_eval(mrw_context *ctx, mrw_state *state, const mrw_mm *mm, const mrw_features *feats, int n_feats,
                       const int32_t *tokens, int n_tokens, mrw_logits_mode mode, float *logits, mrw_error *err) {
    float *rows = NULL;
    int total = 0;
    mrw_status s = mrw_mm_splice(mm, feats, n_feats, tokens, n_tokens, &rows, NULL, &total, err);
    if (!s) s = mrw_eval_embeddings(ctx, state, rows, total, mode, logits, err);
    free(rows);
    return s;
}

/* ---------------------------------------------------------------------------------------------- bundle */

typedef struct {
    mrw_tensor_info *t;
    int n, cap;
    mrw_arena names;
} tensor_list;

static int push(tensor_list *L, const mrw_tensor_info *src, const char *name) {
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 256;
        mrw_tensor_info *n = realloc(L->t, (size_t)cap * sizeof *n);
        if (!n) return -1;
        L->t = n;
        L->cap = cap;
    }
    char *nm = mrw_arena_keep(&L->names, strdup(name));
    if (!nm) return -1;
    L->t[L->n] = *src;
    L->t[L->n++].name = nm;
    return 0;
}

/* Every tensor of f starting with `from`, renamed to `to` + the rest. */
static int push_prefix(tensor_list *L, const mrw_tfile *f, const char *from, const char *to) {
    const size_t fl = strlen(from);
    char name[1024];
    for (int i = 0; i < mrw_tfile_count(f); i++) {
        const mrw_tensor_info *t = mrw_tfile_tensor(f, i);
        if (strncmp(t->name, from, fl)) continue;
        snprintf(name, sizeof name, "%s%s", to, t->name + fl);
        if (push(L, t, name)) return -1;
    }
    return 0;
}

/* Where the encoder's tensors of m sit below "encoder.model." in a bundle: its prefix with the source's
 * "[m<i>.]encoder.model." removed (v2, bundles), or as is (an encoder from Hugging Face files). */
static const char *encoder_inner(const modality *m) {
    const char *inner = m->enc_prefix;
    const size_t tl = strlen(m->tprefix);
    if (m->enc_file == m->src && !strncmp(inner, m->tprefix, tl) && !strncmp(inner + tl, V2_ENCODER, strlen(V2_ENCODER)))
        inner += tl + strlen(V2_ENCODER);
    return inner;
}

#define MAX_META (4 + 8 * MRW_MM_MAX_MODALITIES)

/* Writes lm (its tensors in lm->file, of layout lay) and the modalities mods[0..n) as one bundle. */
static mrw_status write_bundle(const mrw_model *lm, const modality *const *mods, int n, mrw_splice_mode splice,
                               const char *path, mrw_error *err) {
    const mrw_tfile *ckpt = lm->file;
    if (!ckpt || mrw_tfile_format(ckpt) == MRW_FMT_GGUF)
        return mrw_err(err, MRW_E_UNSUPPORTED, "the language model is in a GGUF file (llama.cpp's layout), which a "
                                               "safetensors bundle cannot take as is: give the RWKV-7 as .pth/.safetensors");
    const layout lay = detect_layout(ckpt);
    tensor_list L = {0};
    int bad = 0;
    /* language model under llm. (official keys) */
    if (lay == LAYOUT_V1 || lay == LAYOUT_ENCODER_ONLY) { /* unprefixed keys (v1, a plain RWKV-7 file) */
        for (int i = 0; i < mrw_tfile_count(ckpt) && !bad; i++) {
            const mrw_tensor_info *t = mrw_tfile_tensor(ckpt, i);
            if (claim_non_lm(NULL, t->name)) continue;
            char name[1024];
            snprintf(name, sizeof name, "llm.%s", t->name);
            bad |= push(&L, t, name);
        }
    } else {
        bad |= push_prefix(&L, ckpt, "llm.", "llm.");
    }
    char keyb[MAX_META][64], compress[MRW_MM_MAX_MODALITIES][32], aprefix[MRW_MM_MAX_MODALITIES][32], nmod[16];
    const char *keys[MAX_META], *vals[MAX_META];
    int nm = 0;
    keys[nm] = BUNDLE_FORMAT, vals[nm++] = "1";
    for (int i = 0; i < n && !bad; i++) { /* (modality 0's keys in the order single-modality bundles had them) */
        const modality *m = mods[i];
        char to[256], tp[16] = "";
        if (i) snprintf(tp, sizeof tp, "m%d.", i);
        snprintf(to, sizeof to, "%s" V2_ADAPTER, tp);
        bad |= push_prefix(&L, m->src, m->adapter_prefix, to);
        /* the encoder under [m<i>.]encoder.model.<its own prefix> (text towers and decoders left behind) */
        const char *inner = encoder_inner(m);
        snprintf(to, sizeof to, "%s" V2_ENCODER "%s", tp, inner);
        bad |= push_prefix(&L, m->enc_file, m->enc_prefix, to);
        if (m->has_compress && m->compress.w) {
            char from[32];
            snprintf(from, sizeof from, "%s" COMPRESS, m->compress_file ? "" : m->tprefix);
            snprintf(to, sizeof to, "%s" COMPRESS, tp);
            bad |= push_prefix(&L, m->compress_file ? m->compress_file : m->src, from, to);
        }
#define META(k, v) (keys[nm] = mod_key(i, k, keyb[nm], sizeof keyb[nm]), vals[nm++] = (v))
        META("encoder", kind_name(m->kind));
        META("encoder_prefix", inner);
        snprintf(aprefix[i], sizeof aprefix[i], "%s" V2_ADAPTER, tp);
        META("adapter_prefix", aprefix[i]);
        if (i == 0) {
            keys[nm] = "modrwkv.splice", vals[nm++] = splice == MRW_SPLICE_PREPEND ? "prepend" : "placeholder";
        }
        if (m->has_compress) {
            snprintf(compress[i], sizeof compress[i], "%d,%d", m->compress.k, m->compress.s);
            META("compress", compress[i]);
        }
        if (m->enc_config) META("encoder_config", m->enc_config);
        if (m->pre_config) META("preprocessor_config", m->pre_config);
#undef META
    }
    if (n > 1) {
        snprintf(nmod, sizeof nmod, "%d", n);
        keys[nm] = "modrwkv.modalities", vals[nm++] = nmod;
    }
    /* quantized tensors (a GGUF part, e.g. a q8_0 encoder) cannot go into safetensors: they are widened to f32,
     * exactly the values the loaders dequantize them to */
    for (int i = 0; i < L.n && !bad; i++) {
        mrw_tensor_info *t = &L.t[i];
        if (!mrw_dtype_is_quant(t->dtype)) continue;
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        float *w = mrw_arena_keep(&L.names, malloc((size_t)(numel ? numel : 1) * sizeof *w));
        if (!w) {
            bad = 1;
            break;
        }
        mrw_to_f32(t->dtype, t->data, w, numel);
        t->dtype = MRW_DT_F32;
        t->data = w;
        t->nbytes = (size_t)numel * sizeof *w;
    }
    if (bad) {
        free(L.t);
        mrw_arena_free(&L.names);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    mrw_meta meta[MAX_META];
    for (int i = 0; i < nm; i++)
        meta[i] = (mrw_meta){.key = (char *)keys[i], .type = MRW_MV_STRING, .v.s = {vals[i], strlen(vals[i])}};
    mrw_status s = mrw_safetensors_write(path, L.t, L.n, meta, nm, NULL, NULL, err);
    free(L.t);
    mrw_arena_free(&L.names);
    return s;
}

mrw_status mrw_mm_save(const mrw_mm *mm, const char *path, int progress, mrw_error *err) {
    (void)progress;
    if (!mm->lm || !mm->n_mod || !mm->mod[0].has_adapter)
        return mrw_err(err, MRW_E_ARG, "only a whole ModRWKV model can be bundled");
    const modality *mods[MRW_MM_MAX_MODALITIES];
    for (int i = 0; i < mm->n_mod; i++) mods[i] = &mm->mod[i];
    return write_bundle(mm->lm, mods, mm->n_mod, mm->splice, path, err);
}

mrw_status mrw_mm_merge(const mrw_model *lm, const mrw_mm *const *parts, int n_parts, const char *path, mrw_error *err) {
    if (!lm) return mrw_err(err, MRW_E_ARG, "merge: no language model");
    if (!lm->file || mrw_tfile_format(lm->file) == MRW_FMT_GGUF)
        return mrw_err(err, MRW_E_UNSUPPORTED, "merge: the language model must come from a .pth/.safetensors file in "
                                               "the official key layout or a ModRWKV file (not GGUF)");
    if (n_parts < 1) return mrw_err(err, MRW_E_ARG, "merge: no model to take modalities from");
    const mrw_model_info li = mrw_model_get_info(lm);
    const modality *mods[MRW_MM_MAX_MODALITIES];
    int n = 0, has_image = 0, has_audio = 0;
    mrw_splice_mode splice = parts[0] ? parts[0]->splice : MRW_SPLICE_PREPEND;
    for (int p = 0; p < n_parts; p++) {
        const mrw_mm *mm = parts[p];
        if (!mm || !mm->lm || !mm->n_mod || !mm->mod[0].has_adapter)
            return mrw_err(err, MRW_E_ARG, "merge: part %d is not a whole ModRWKV model (encoder + adapter)", p + 1);
        if (mm->splice != splice)
            return mrw_err(err, MRW_E_ARG, "merge: part %d splices its features %s but part 1 %s; a model has one splice "
                           "mode", p + 1, mm->splice == MRW_SPLICE_PREPEND ? "before the text (v1)" : "into <|image_pad|> runs (v2)",
                           splice == MRW_SPLICE_PREPEND ? "before the text (v1)" : "into <|image_pad|> runs (v2)");
        for (int i = 0; i < mm->n_mod; i++) {
            const modality *m = &mm->mod[i];
            if (m->adapter.C != li.n_embd)
                return mrw_err(err, MRW_E_SHAPE, "merge: part %d's %s adapter gives features of width %d, the language "
                               "model has n_embd %d", p + 1, kind_name(m->kind), m->adapter.C, li.n_embd);
            const int audio = m->whisper || m->wavlm;
            if (audio ? has_audio : has_image)
                return mrw_err(err, MRW_E_ARG, "merge: two %s modalities (part %d's %s is the second); a model takes at "
                               "most one image and one audio encoder", audio ? "audio" : "image", p + 1, kind_name(m->kind));
            if (n == MRW_MM_MAX_MODALITIES)
                return mrw_err(err, MRW_E_LIMIT, "merge: more than %d modalities", MRW_MM_MAX_MODALITIES);
            has_audio |= audio, has_image |= !audio;
            mods[n++] = m;
        }
    }
    return write_bundle(lm, mods, n, splice, path, err);
}
