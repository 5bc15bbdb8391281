/* The training loop (train/trainer.h): set-up (model, data, optimizer, resume), micro-batches, the step, the
 * log and the checkpoints. Multimodal pieces (encoder features, adapter, splicing) live in the second half. */
#include "train/trainer.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/error.h"
#include "base/progress.h"
#include "train/adapter_train.h"
#include "train/checkpoint.h"
#include "train/optim.h"
#include "train/vit_train.h"
#include "train/whisper_train.h"
#include "formats/audio.h"
#include "formats/image.h"
#include "models/preprocess.h"
#include "train/dist.h"
#ifdef MRW_CUDA
#include "kernels/cuda/adapter_gpu.h"
#include "kernels/cuda/dist_nccl.h"
#include "kernels/cuda/rwkv7_train_gpu.h"
#include "kernels/cuda/vit_gpu_train.h"
#include "kernels/cuda/whisper_gpu_train.h"
#include "kernels/cuda/vit_gpu.h"
#include "kernels/cuda/whisper_gpu.h"
#include "kernels/cuda/wavlm_gpu.h"
#include "models/modrwkv_hooks.h"
#endif

#define PAD_MULTIPLE 16
#define TOKEN_IMAGE_PAD 65532
#define TOKEN_VISION_START 65530
#define TOKEN_VISION_END 65531

void mrw_train_opts_default(mrw_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->train = MRW_PG_RWKV;
    o->batch = 1;
    o->ctx_len = 512;
    o->grad_accum = 1;
    o->lr = 1e-4;
    o->lr_final = -1; /* = lr / 10 unless given */
    o->clip = 1.0;
    o->wsd_decay = 0.2;
    o->warmup = 0;
    o->steps = 0;
    o->epochs = 1;
    o->schedule = MRW_SCHED_COSINE;
    o->seed = 42;
    o->threads = 1;
    o->save_every = 0;
    o->progress = 1;
}

static int round_up(int n, int m) { return (n + m - 1) / m * m; }

int mrw_train_pad_batch(const int32_t *const *tokens, const int32_t *const *labels, const int *n, int B, int32_t *tok,
                        int32_t *tgt) {
    int longest = 1;
    for (int b = 0; b < B; b++)
        if (n[b] > longest) longest = n[b];
    const int T = round_up(longest, PAD_MULTIPLE);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            tok[(size_t)b * T + t] = t < n[b] ? tokens[b][t] : 0;
            tgt[(size_t)b * T + t] = t < n[b] ? labels[b][t] : MRW_IGNORE;
        }
    }
    return T;
}

/* ------------------------------------------------------------------------------------------ state */

/* Another modality of a multi-modality start model (docs/MULTIMODAL.md): modality k >= 1 of t->enc, its frozen
 * encoder and its own trainable adapter (tensors "m<k>.proj.*", "m<k>.compress.*"), with its own micro-batch
 * items. Its media are those that mrw_mm_modality_of routes to it (images or recordings). */
typedef struct {
    int k;
    mrw_tadapter *ad;
    mrw_feature_cache *fcache;
    int feat_E, feat_Tin, feat_M, max_rows, max_items;
    int n_items, n_items_in_batch;
    float *feat_in, *feat_out, *d_feat_out;
    int *item_b, *item_at;
    int compress_k, compress_s;
    char *enc_config, *pre_config, *enc_inner;
    const char *kind;
    mrw_tadapter_config adc;     /* its adapter's configuration */
    struct mrw_adapter_gpu *agpu; /* --device cuda: its adapter on the GPU (ad then holds the host copy) */
    int32_t *row_pos;             /* --device cuda: its rows' positions in the micro-batch */
} xmod;

typedef struct {
    const mrw_train_opts *o;
    const mrw_vocab *vocab;
    mrw_rwkv7_train *lm;
    mrw_tadapter *ad;          /* multimodal only */
    mrw_mm *enc;               /* frozen encoder (multimodal only) */
    mrw_feature_cache *fcache;
    mrw_data *data;
    mrw_adam opt;
    mrw_param_set *sets[3 + MRW_MM_MAX_MODALITIES];
    int n_sets;
    mrw_schedule sched;
    int C, V, maxT, B;
    int splice_prepend;        /* v1 adapters: features before the text; v2: <|image_pad|> runs */
    int compress_k, compress_s; /* the trained compression, new or from the start file (0: none) */
    int32_t newline_token;     /* v2 image block: "\n" after <|vision_end|> */
    /* micro-batch buffers */
    int32_t *tok, *tgt;        /* [B*maxT] */
    int32_t **s_tok, **s_lab;  /* per sample, maxT each (the spliced sequence) */
    int *s_n;
    float *inject, *d_inject;  /* [B*maxT*C] (multimodal) */
    uint8_t *mask;             /* [B*maxT] */
    /* media of the micro-batch ("items"), all with feat_Tin encoder rows -> feat_M adapter rows */
    float *feat_in, *feat_out, *d_feat_out; /* adapter input [items*Tin*E], output [items*M*C], its gradient */
    int feat_Tin, feat_M, feat_E, max_rows, max_items;
    int n_items, n_items_in_batch;
    int *item_b, *item_at;     /* per item: sample and position of its first row in that sample's sequence */
    mrw_train_state st;
    char *options;             /* JSON */
    char path_model[4096], path_resume[4096], path_log[4096];
    FILE *log;
    int64_t n_records;
    /* --train ...,encoder (vision): the trainable ViT, its input pixels [items][3][S][S] and the gradient of
     * its output */
    mrw_vit_train *vt;
    mrw_image_proc proc;
    float *pix, *d_enc;
    /* ... or Whisper: log-mel inputs [items][n_mels][frames], the whole output [items][out_frames][d] (the first
     * feat_Tin rows, the real audio, go on) and its gradient */
    mrw_whisper_train *wt;
    int w_frames, w_out;
    float *mel, *w_out_buf, *d_w_out;
    /* source of the frozen encoder tensors copied into a multimodal checkpoint */
    mrw_tfile *enc_src;
    const char *enc_src_prefix;
    char *enc_config, *pre_config;
    char *enc_inner;           /* modality 0's "modrwkv.encoder_prefix" of a start bundle (owned; NULL: "") */
    char enc_src_prefix_buf[160];
    xmod xm[MRW_MM_MAX_MODALITIES - 1];
    int n_xm;
    struct mrw_rwkv7_gpu *gpu; /* --device cuda: the GPU trainer (lm then only holds the host copy of the weights) */
    mrw_tadapter_config adc;   /* the primary adapter's configuration (multimodal) */
    /* --device cuda, ModRWKV image stages: the adapter on the GPU (ad then only holds the host copy of its weights),
     * the injected rows and their gradient on the device, and the rows' positions in the micro-batch */
    struct mrw_adapter_gpu *agpu;
    void *g_inject, *g_dinject;
    int32_t *row_pos;
    /* --device cuda, --train ...,encoder (vision): the ViT on the GPU (vt then only holds the host copy of its
     * weights), its parameter set's index in sets[] */
    struct mrw_vit_gpu_train *vgpu;
    int vt_set;
    /* data parallel (docs/DISTRIBUTED.md): rank of world; every rank reads the whole global micro-batch of B
     * samples and trains on samples [rank B/world, (rank+1) B/world) */
    mrw_dist_env denv;
    int rank, world;
    struct mrw_nccl *nccl;
    struct mrw_dp *dp;
    /* --device cuda (unless --encoder-device cpu): the frozen encoders on the GPU in bf16 (docs/CUDA.md). Images go
     * through genc_img several per forward, recordings through genc_aud (Whisper) several per forward: load_sample
     * preprocesses them on the CPU (pixels, log-mel) and queues them (pend), the micro-batch's loading ends with one
     * encode of the queue (gpu_encode_pending) into their feat_in slots; WavLM (genc_wavlm) one recording at a time. */
    int enc_gpu;                          /* the options ask for it (set before the feature caches open) */
    struct mrw_vit_gpu *genc_img, *genc_aud;
    struct mrw_wavlm_gpu *genc_wavlm;
    struct gpend {
        float *pix, *dst;                 /* preprocessed pixels or log-mel (malloc'ed), their rows' slot in feat_in */
        char *path;                       /* for the feature cache fc (NULL: none, or another entry writes it) */
        mrw_feature_cache *fc;
        int audio, rows;                  /* a Whisper clip (rows: the encoder rows kept, the real audio) */
    } *pend;
    int n_pend, max_pend, genc_chunk, genc_aud_chunk;
    float *gpix, *gout;                   /* genc_chunk images' pixels and encoder rows (host) */
    float *gmel, *gaout;                  /* genc_aud_chunk clips' log-mel and encoder rows (host) */
    size_t gmel_floats;                   /* one clip's log-mel: n_mels x frames */
    /* data parallel, frozen encoders (docs/DISTRIBUTED.md): slot b of the global micro-batch belongs to rank
     * b / (B / world); a rank encodes (or reads from the cache) only its slots' media, and only checks the others'
     * (read and decoded as their owner does, the encoder not run) so that every rank skips the same records; the
     * micro-batch's signature (records, rows) is compared across the ranks once it is loaded. slice_encode = 0 (one
     * rank, or MRW_TRAIN_ENCODE_ALL=1 for the before/after measurement): every rank encodes every medium. */
    int slice_encode;
    uint64_t batch_sig;
    int64_t n_encoded, n_cached, n_checked; /* this rank's media: encoded / read from the cache / checked only */
    int64_t n_written;                      /* feature-cache entries this rank wrote */
    double t_load, t_genc;                  /* seconds loading micro-batches, of which in gpu_encode_pending */
    /* the feature-cache entries of the micro-batch so far (hash of the cache and path): within a micro-batch only
     * the first medium of a path writes its entry, so that no two ranks write one file at the same time */
    uint64_t *fc_seen;
    int n_fc_seen, max_fc_seen;
} trainer;

static void warn_cb(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "modrwkv train: warning: %s\n", msg);
}

/* ------------------------------------------------------------------------------------- options record */

static char *options_json(const mrw_train_opts *o, int64_t total_steps) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "model", o->model ? o->model : "");
    char init[64] = "";
    if (!o->model) snprintf(init, sizeof init, "%d,%d", o->init_layers, o->init_embd);
    cJSON_AddStringToObject(j, "init", init);
    cJSON_AddStringToObject(j, "vocab", o->vocab_name ? o->vocab_name : "");
    cJSON *d = cJSON_AddArrayToObject(j, "data");
    for (int i = 0; d && i < o->n_data; i++) cJSON_AddItemToArray(d, cJSON_CreateString(o->data[i]));
    cJSON_AddStringToObject(j, "data_root", o->data_root ? o->data_root : "");
    cJSON_AddNumberToObject(j, "data_kind", o->data_kind);
    cJSON_AddStringToObject(j, "encoder", o->encoder ? o->encoder : "");
    cJSON_AddNumberToObject(j, "adapter_v1", o->adapter_v1);
    cJSON_AddNumberToObject(j, "compress_k", o->compress_k);
    cJSON_AddNumberToObject(j, "compress_s", o->compress_s);
    if (o->adapter_scale) cJSON_AddNumberToObject(j, "adapter_scale", o->adapter_scale);
    cJSON_AddNumberToObject(j, "train", o->train);
    cJSON_AddNumberToObject(j, "batch", o->batch);
    cJSON_AddNumberToObject(j, "ctx_len", o->ctx_len);
    cJSON_AddNumberToObject(j, "grad_accum", o->grad_accum);
    cJSON_AddNumberToObject(j, "lr", o->lr);
    cJSON_AddNumberToObject(j, "lr_final", o->lr_final);
    cJSON_AddNumberToObject(j, "clip", o->clip);
    cJSON_AddNumberToObject(j, "weight_decay", o->weight_decay);
    cJSON_AddNumberToObject(j, "wsd_decay", o->wsd_decay);
    cJSON_AddNumberToObject(j, "warmup", (double)o->warmup);
    cJSON_AddNumberToObject(j, "steps", (double)total_steps);
    cJSON_AddStringToObject(j, "schedule", mrw_schedule_name(o->schedule));
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, o->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "threads", o->threads);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* A resumed run must be the same run: report the first option that differs. */
static mrw_status check_same_options(const char *saved, const char *now, mrw_error *err) {
    if (saved && !strcmp(saved, now)) return MRW_OK;
    cJSON *a = saved ? cJSON_Parse(saved) : NULL, *b = cJSON_Parse(now);
    mrw_status s = mrw_err(err, MRW_E_ARG, "the options differ from the run being resumed (saved: %.300s)",
                           saved ? saved : "none");
    if (a && b) {
        for (cJSON *x = b->child; x; x = x->next) {
            cJSON *y = cJSON_GetObjectItemCaseSensitive(a, x->string);
            char *xs = cJSON_PrintUnformatted(x), *ys = y ? cJSON_PrintUnformatted(y) : NULL;
            int diff = !ys || strcmp(xs ? xs : "", ys);
            if (diff)
                s = mrw_err(err, MRW_E_ARG,
                            "--resume: option '%s' is %s now but was %s in the run being resumed; resume with the "
                            "same options (and thread count)",
                            x->string, xs ? xs : "?", ys ? ys : "absent");
            free(xs), free(ys);
            if (diff) break;
        }
    }
    cJSON_Delete(a), cJSON_Delete(b);
    return s;
}

/* ------------------------------------------------------------------------------------------- log */

/* On resume, keep the log lines of the steps already done (a killed run may have logged a few more). */
static mrw_status trim_log(const char *path, int64_t upto, mrw_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return MRW_OK;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *g = fopen(tmp, "wb");
    if (!g) {
        fclose(f);
        return mrw_err(err, MRW_E_IO, "%s: %s", tmp, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        long long step;
        if (line[len - 1] != '\n' || sscanf(line, "{\"step\":%lld", &step) != 1 || step > upto) break;
        fwrite(line, 1, (size_t)len, g);
    }
    free(line);
    fclose(f);
    int bad = fflush(g) != 0 || fsync(fileno(g)) != 0;
    bad |= fclose(g) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return mrw_err(err, MRW_E_IO, "%s: cannot rewrite the log", path);
    }
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------- checkpoints */

static mrw_status save(trainer *t, mrw_error *err) {
    char step[32];
    snprintf(step, sizeof step, "%" PRId64, t->st.step);
    mrw_status s;
#ifdef MRW_CUDA
    if (t->gpu) { /* rank 0 writes; with ZeRO-1 every rank takes part in gathering the moments */
        if (t->rank == 0 && (s = mrw_rwkv7_gpu_download(t->gpu, t->sets[0], 0, err))) return s;
        if ((t->rank == 0 || t->o->zero) &&
            (s = mrw_dp_moments(t->dp, 0, t->sets[0], t->opt.m, t->opt.v, t->opt.moff[0], &t->opt.t, err)))
            return s;
        if (t->rank != 0) return MRW_OK;
        /* the adapter's weights and moments (and the step count: the RWKV trainer's does not move in stage 1) */
        if (t->agpu && ((s = mrw_adapter_gpu_download(t->agpu, t->sets[1], 0, err)) ||
                        ((t->o->train & MRW_PG_ADAPTER) &&
                         (s = mrw_adapter_gpu_moments(t->agpu, 0, t->sets[1], t->opt.m, t->opt.v, t->opt.moff[1],
                                                      &t->opt.t, err)))))
            return s;
        if (t->vgpu && ((s = mrw_vit_gpu_train_download(t->vgpu, t->sets[t->vt_set], 0, err)) ||
                        (s = mrw_vit_gpu_train_moments(t->vgpu, 0, t->sets[t->vt_set], t->opt.m, t->opt.v,
                                                       t->opt.moff[t->vt_set], &t->opt.t, err))))
            return s;
        for (int k = 0; k < t->n_xm; k++) /* the other modalities' adapters (sets 2, 3, ...) */
            if (t->xm[k].agpu &&
                ((s = mrw_adapter_gpu_download(t->xm[k].agpu, t->sets[2 + k], 0, err)) ||
                 ((t->o->train & MRW_PG_ADAPTER) &&
                  (s = mrw_adapter_gpu_moments(t->xm[k].agpu, 0, t->sets[2 + k], t->opt.m, t->opt.v,
                                               t->opt.moff[2 + k], &t->opt.t, err)))))
                return s;
    }
#endif
    if (!t->ad) {
        const char *keys[2] = {"modrwkv.train.step", "modrwkv.train.options"};
        const char *vals[2] = {step, t->options};
        s = mrw_ckpt_save_model(t->path_model, t->sets, t->n_sets, "llm.", NULL, 0, keys, vals, 2, err);
    } else {
        /* a bundle: llm.*, proj.*, compress.*, encoder.model.* and the encoder's configuration; the other
         * modalities of a multi-modality model under m<k>. (docs/MULTIMODAL.md) */
        int n_extra = 0;
        mrw_tensor_info *extra = NULL;
        char **names = NULL;
        const int ne = mrw_tfile_count(t->enc_src); /* a trained encoder is in the sets (and copies nothing) */
        extra = calloc((size_t)ne + 1, sizeof *extra);
        names = calloc((size_t)ne + 1, sizeof *names);
        if (!extra || !names) {
            free(extra), free(names);
            return mrw_err(err, MRW_E_NOMEM, "out of memory");
        }
        const size_t pl = strlen(t->enc_src_prefix);
        const char *inner = t->enc_inner ? t->enc_inner : "";
        s = MRW_OK;
        for (int i = 0; i < ne && s == MRW_OK; i++) {
            const mrw_tensor_info *ti = mrw_tfile_tensor(t->enc_src, i);
            char xp[32];
            int other = 0; /* the frozen encoder of another modality: copied as it is named */
            for (int k = 0; k < t->n_xm && !other; k++) {
                snprintf(xp, sizeof xp, "m%d.encoder.model.", t->xm[k].k);
                other = !strncmp(ti->name, xp, strlen(xp));
            }
            if (!other && (t->vt || t->wt || strncmp(ti->name, t->enc_src_prefix, pl))) continue;
            size_t len = strlen(ti->name) + strlen(inner) + 16;
            names[n_extra] = malloc(len);
            if (!names[n_extra]) {
                s = mrw_err(err, MRW_E_NOMEM, "out of memory");
                break;
            }
            if (other) snprintf(names[n_extra], len, "%s", ti->name);
            else snprintf(names[n_extra], len, "encoder.model.%s%s", inner, ti->name + pl);
            extra[n_extra] = *ti;
            extra[n_extra].name = names[n_extra];
            n_extra++;
        }
        const mrw_mm_info mi = mrw_mm_get_info(t->enc);
        static const char *kinds[] = {"none", "siglip", "clip", "whisper", "wavlm"};
        enum { MAXK = 12 + 6 * MRW_MM_MAX_MODALITIES };
        char compress[MRW_MM_MAX_MODALITIES][32], kb[MAXK][48], nmod[16], aps[MRW_MM_MAX_MODALITIES][24];
        const char *keys[MAXK], *vals[MAXK];
        int nm = 0;
        keys[nm] = "modrwkv.format", vals[nm++] = "1";
        keys[nm] = "modrwkv.encoder", vals[nm++] = kinds[mi.encoder];
        keys[nm] = "modrwkv.encoder_prefix", vals[nm++] = inner;
        keys[nm] = "modrwkv.adapter_prefix", vals[nm++] = "proj.";
        keys[nm] = "modrwkv.splice", vals[nm++] = t->splice_prepend ? "prepend" : "placeholder";
        if (t->compress_k) {
            snprintf(compress[0], sizeof compress[0], "%d,%d", t->compress_k, t->compress_s);
            keys[nm] = "modrwkv.compress", vals[nm++] = compress[0];
        }
        if (t->enc_config) keys[nm] = "modrwkv.encoder_config", vals[nm++] = t->enc_config;
        if (t->pre_config) keys[nm] = "modrwkv.preprocessor_config", vals[nm++] = t->pre_config;
        if (t->n_xm) {
            snprintf(nmod, sizeof nmod, "%d", t->n_xm + 1);
            keys[nm] = "modrwkv.modalities", vals[nm++] = nmod;
        }
        for (int k = 0; k < t->n_xm; k++) {
            const xmod *x = &t->xm[k];
#define XMETA(name, v) (snprintf(kb[nm], sizeof kb[nm], "modrwkv.m%d.%s", x->k, name), keys[nm] = kb[nm], vals[nm++] = (v))
            XMETA("encoder", x->kind);
            XMETA("encoder_prefix", x->enc_inner ? x->enc_inner : "");
            snprintf(aps[k], sizeof aps[k], "m%d.proj.", x->k);
            XMETA("adapter_prefix", aps[k]);
            if (x->compress_k) {
                snprintf(compress[k + 1], sizeof compress[k + 1], "%d,%d", x->compress_k, x->compress_s);
                XMETA("compress", compress[k + 1]);
            }
            if (x->enc_config) XMETA("encoder_config", x->enc_config);
            if (x->pre_config) XMETA("preprocessor_config", x->pre_config);
#undef XMETA
        }
        keys[nm] = "modrwkv.train.step", vals[nm++] = step;
        keys[nm] = "modrwkv.train.options", vals[nm++] = t->options;
        if (s == MRW_OK)
            s = mrw_ckpt_save_model(t->path_model, t->sets, t->n_sets, NULL, extra, n_extra, keys, vals, nm, err);
        for (int i = 0; i < n_extra; i++) free(names[i]);
        free(names), free(extra);
    }
    if (s == MRW_OK) {
        mrw_train_state st = t->st;
        st.options = t->options;
        s = mrw_ckpt_save_resume(t->path_resume, &t->opt, &st, err);
    }
    return s;
}

/* --------------------------------------------------------------------------------------- multimodal */

static char *read_small(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = malloc((1 << 20) + 1);
    size_t n = b ? fread(b, 1, 1 << 20, f) : 0;
    fclose(f);
    if (b) b[n] = 0;
    return b;
}

/* The GPU encoder's queue from entry `from` on is dropped (a skipped sample's images). */
static void drop_pending(trainer *t, int from) {
    for (int i = from; i < t->n_pend; i++) free(t->pend[i].pix), free(t->pend[i].path);
    if (from < t->n_pend) t->n_pend = from;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
    return h;
}

/* Whether this medium writes its feature-cache entry when it is encoded: only the first medium of a path (in that
 * cache) in the micro-batch. Every rank sees the same sequence of media, so one rank at most writes an entry in a
 * micro-batch (the write itself goes through a temporary file and a rename: feature_cache.c). */
static int fc_first(trainer *t, const mrw_feature_cache *fc, const char *path) {
    const uint64_t h = fnv1a(fnv1a(1469598103934665603ull, &fc, sizeof fc), path, strlen(path));
    for (int i = 0; i < t->n_fc_seen; i++)
        if (t->fc_seen[i] == h) return 0;
    if (t->n_fc_seen == t->max_fc_seen) {
        const int cap = t->max_fc_seen ? 2 * t->max_fc_seen : 64;
        uint64_t *p = realloc(t->fc_seen, (size_t)cap * sizeof *p);
        if (!p) return 1; /* (only a duplicate write: the rename keeps it safe) */
        t->fc_seen = p, t->max_fc_seen = cap;
    }
    t->fc_seen[t->n_fc_seen++] = h;
    return 1;
}

#ifdef MRW_CUDA
/* Another rank's medium (data parallel, trainer.slice_encode): its encoder rows n x E and its failures as its owner's
 * path gives them (the file read, decoded and preprocessed as the encoder's input, the encoder not run), so that
 * every rank keeps or skips the same records. Returns 1 for a case not covered here (an audio modality on the CPU
 * WavLM, or none): the caller then encodes it as the owner does. */
static int peer_check(trainer *t, const mrw_data_sample *s, int j, int *n, int *E, mrw_status *st, mrw_error *err) {
    const char *path = s->media_path[j];
    *st = MRW_OK;
    if (s->media_kind[j] != MRW_MEDIA_AUDIO) { /* mrw_mm_encode_image's reading (the GPU queue's too) */
        const mrw_tfile *f = NULL;
        const mrw_vit_config *c = NULL;
        float *pix = NULL;
        if ((*st = mrw_mm_vision_encoder(t->enc, &f, &c, err))) return 0;
        if (!(*st = mrw_mm_image_pixels(t->enc, path, &pix, err))) *n = c->n_tokens, *E = c->hidden;
        free(pix);
        return 0;
    }
    if (t->genc_wavlm) { /* mrw_mm_encode_audio_wavlm_gpu's reading and checks */
        float *w = NULL;
        int ns = 0;
        if (!(*st = mrw_mm_wavlm_wave(t->enc, path, &w, &ns, err)))
            *n = mrw_wavlm_gpu_out_frames(t->genc_wavlm, ns), *E = mrw_wavlm_gpu_config(t->genc_wavlm)->hidden;
        free(w);
        return 0;
    }
    const mrw_tfile *f = NULL;
    const char *pre = NULL;
    const mrw_whisper_config *c = NULL;
    if (mrw_mm_whisper_encoder(t->enc, &f, &pre, &c, NULL)) return 1;
    /* Whisper (GPU or CPU): the recording as mrw_mm_whisper_mel reads it, the checks of mrw_whisper_log_mel, the rows
     * it keeps (the real audio) */
    mrw_audio a = {0};
    if ((*st = mrw_audio_load(path, 16000, NULL, &a, err))) return 0;
    const int F = 2 * c->n_pos;
    if ((*st = mrw_whisper_check_pcm(a.samples, a.n, F, err))) mrw_err_prefix(err, "%s", path);
    else *n = mrw_whisper_keep_frames((int)(a.n / MRW_WHISPER_HOP), mrw_whisper_enc_out_frames(F)), *E = c->d_model;
    mrw_audio_free(&a);
    return 0;
}
#endif

/* Raw encoder features [n, E] of one media file, through the cache when there is one: *how = 0: *rows (malloc'ed)
 * hold them; 1: queued for the GPU encoder (Whisper or the image encoder: *rows = NULL, n and E set; see
 * trainer.genc_img; the caller gives the slot of its rows to the queue's last entry); 2: another rank's medium
 * (mine = 0, data parallel): only checked, n and E set, no rows. */
static mrw_status media_features(trainer *t, mrw_feature_cache *fcache, const mrw_data_sample *s, int j, int mine,
                                 float **rows, int *n, int *E, int *how, mrw_error *err) {
    *rows = NULL, *how = 0;
    const int write = fcache && fc_first(t, fcache, s->media_path[j]);
    if (fcache) {
        int r = mrw_feature_cache_get(fcache, s->media_path[j], rows, n, E, err);
        if (r < 0) return err ? err->code : MRW_E_IO;
        if (r == 1) {
            if (mine) {
                t->n_cached++;
            } else {
                free(*rows);
                *rows = NULL, *how = 2;
                t->n_checked++;
            }
            return MRW_OK;
        }
    }
    mrw_features enc = {0};
    mrw_status st;
#ifdef MRW_CUDA
    if (!mine && !peer_check(t, s, j, n, E, &st, err)) {
        if (st) return mrw_err_prefix(err, "%s:%" PRId64, s->file, s->line);
        *how = 2;
        t->n_checked++;
        return MRW_OK;
    }
    const int audio = s->media_kind[j] == MRW_MEDIA_AUDIO;
    if ((t->genc_img && !audio) || (t->genc_aud && audio)) {
        /* the GPU encoder: preprocessed now (pixels / log-mel), encoded with the micro-batch's other media of its
         * kind once it is loaded (gpu_encode_pending) */
        if (t->n_pend >= t->max_pend) return mrw_err(err, MRW_E_INTERNAL, "more media than the GPU encoder's queue");
        struct gpend *p = &t->pend[t->n_pend];
        memset(p, 0, sizeof *p);
        if (audio) {
            int frames = 0, keep = 0;
            st = mrw_mm_whisper_mel(t->enc, s->media_path[j], &p->pix, &frames, &keep, err);
            if (!st && frames != mrw_whisper_gpu_frames(t->genc_aud))
                st = mrw_err(err, MRW_E_ARG, "whisper (cuda): made for %d frames, the model reads %d",
                             mrw_whisper_gpu_frames(t->genc_aud), frames);
            p->audio = 1, p->rows = keep;
            *n = keep, *E = mrw_vit_gpu_config(t->genc_aud)->hidden;
        } else {
            const mrw_vit_config *c = mrw_vit_gpu_config(t->genc_img);
            st = mrw_mm_image_pixels(t->enc, s->media_path[j], &p->pix, err);
            p->rows = c->n_tokens;
            *n = c->n_tokens, *E = c->hidden;
        }
        if (st) {
            free(p->pix);
            p->pix = NULL;
            return mrw_err_prefix(err, "%s:%" PRId64, s->file, s->line);
        }
        if (write && !(p->path = strdup(s->media_path[j]))) {
            free(p->pix);
            p->pix = NULL;
            return mrw_err(err, MRW_E_NOMEM, "out of memory");
        }
        p->fc = write ? fcache : NULL;
        t->n_pend++;
        *how = 1;
        return MRW_OK;
    }
    if (t->genc_wavlm && audio)
        st = mrw_mm_encode_audio_wavlm_gpu(t->enc, t->genc_wavlm, s->media_path[j], t->o->threads, NULL, &enc, err);
    else
#endif
        st = s->media_kind[j] == MRW_MEDIA_AUDIO
                 ? mrw_mm_encode_audio(t->enc, s->media_path[j], t->o->threads, NULL, &enc, err)
                 : mrw_mm_encode_image(t->enc, s->media_path[j], t->o->threads, NULL, &enc, err);
    if (st != MRW_OK) return mrw_err_prefix(err, "%s:%" PRId64, s->file, s->line);
    t->n_encoded++;
    /* (another rank's medium encoded here, peer_check's uncovered case: its owner writes the entry) */
    if (write && mine && (st = mrw_feature_cache_put(fcache, s->media_path[j], enc.rows, enc.n, enc.dim, err))) {
        mrw_features_free(&enc);
        return st;
    }
    t->n_written += write && mine;
    *rows = enc.rows, *n = enc.n, *E = enc.dim;
    return MRW_OK;
}

/* Splicing (trainer.h states the layout; the multimodal parity test checks the prepend form against PyTorch,
 * test_trainer.c the placeholder form token by token). */
int mrw_train_splice(const mrw_data_sample *s, int M, int prepend, int32_t newline, int ctx_len, int32_t *tk,
                     int32_t *lb, int *item_at) {
    int Ms[MRW_DATA_MAX_MEDIA];
    for (int j = 0; j < MRW_DATA_MAX_MEDIA; j++) Ms[j] = M;
    return mrw_train_splice_m(s, Ms, prepend, newline, ctx_len, tk, lb, item_at);
}

int mrw_train_splice_m(const mrw_data_sample *s, const int *Ms, int prepend, int32_t newline, int ctx_len, int32_t *tk,
                       int32_t *lb, int *item_at) {
    const int nm = s->n_media;
    int rows = 0;
    for (int j = 0; j < nm; j++) rows += prepend ? Ms[j] : Ms[j] + 3;
    int n_text = s->n;
    if (n_text + rows > ctx_len) n_text = ctx_len - rows;
    if (n_text < 1 || (nm && !prepend && s->media_pos[nm - 1] > n_text)) return -1;
    const int32_t feat_tok = prepend ? 0 : TOKEN_IMAGE_PAD; /* prepend: any valid id, the row is replaced */
    int n = 0, item = 0;
    for (int j = 0; prepend && j < nm; j++) {
        item_at[item++] = n;
        for (int i = 0; i < Ms[j]; i++) tk[n] = feat_tok, lb[n++] = MRW_IGNORE;
        if (j == nm - 1) lb[n - 1] = s->media_pos[j] == 0 ? s->media_target[j] : MRW_IGNORE;
    }
    int j = 0;
    for (int i = 0; i <= n_text; i++) {
        while (!prepend && j < nm && s->media_pos[j] == i) {
            if (n > 0) lb[n - 1] = MRW_IGNORE;
            tk[n] = TOKEN_VISION_START, lb[n++] = MRW_IGNORE;
            item_at[item++] = n;
            for (int r = 0; r < Ms[j]; r++) tk[n] = feat_tok, lb[n++] = MRW_IGNORE;
            tk[n] = TOKEN_VISION_END, lb[n++] = MRW_IGNORE;
            const int last = j + 1 == nm || s->media_pos[j + 1] != i;
            tk[n] = newline, lb[n++] = last && i < n_text ? s->media_target[j] : MRW_IGNORE;
            j++;
        }
        if (i < n_text) tk[n] = s->tokens[i], lb[n++] = s->labels[i];
    }
    return n;
}

/* Splices sample b (see trainer.h), media j with Ms[j] rows, of modality mods[j] (0: the primary adapter's items,
 * k: t->xm[k - 1]'s); 1 (with a warning) when it cannot fit: it is skipped. */
static int splice(trainer *t, int b, const mrw_data_sample *s, const int *Ms, const int *mods) {
    int at[MRW_DATA_MAX_MEDIA];
    int n = mrw_train_splice_m(s, Ms, t->splice_prepend, t->newline_token, t->o->ctx_len, t->s_tok[b], t->s_lab[b], at);
    if (n < 0) {
        int rows = 0;
        for (int j = 0; j < s->n_media && j < MRW_DATA_MAX_MEDIA; j++) rows += Ms[j];
        fprintf(stderr, "modrwkv train: warning: %s:%" PRId64 ": %d media with %d feature rows leave no room for the "
                        "text in --ctx-len %d; skipped\n", s->file, s->line, s->n_media, rows, t->o->ctx_len);
        return 1;
    }
    for (int j = 0; j < s->n_media; j++) {
        if (mods[j] > 0) {
            xmod *x = &t->xm[mods[j] - 1];
            x->item_at[x->n_items] = at[j];
            x->item_b[x->n_items++] = b;
        } else {
            t->item_at[t->n_items] = at[j];
            t->item_b[t->n_items++] = b;
        }
    }
    t->s_n[b] = n;
    return 0;
}

/* ----------------------------------------------------------------------------------------- a step */

/* The next usable sample into slot b (spliced sequence, its media's encoder features packed into feat_in).
 * Records that cannot be used here are reported and skipped, like the reader's bad records. */
static mrw_status load_sample(trainer *t, int b, int64_t *n_tokens, mrw_error *err) {
    mrw_status s;
    for (int64_t tries = 0;; tries++) {
        if (tries > t->n_records + 1) return mrw_err(err, MRW_E_FORMAT, "no usable record is left in the data");
        mrw_data_sample smp;
        if ((s = mrw_data_next(t->data, &smp, err))) return s;
        int bad_tok = -1;
        for (int i = 0; i < smp.n && bad_tok < 0; i++)
            if (smp.tokens[i] < 0 || smp.tokens[i] >= t->V) bad_tok = smp.tokens[i];
        if (bad_tok >= 0)
            return mrw_err(err, MRW_E_ARG, "%s:%" PRId64 ": token %d is outside the model's vocabulary of %d (wrong "
                           "--vocab?)", smp.file, smp.line, bad_tok, t->V);
        if (!t->ad) {
            if (smp.n_media)
                return mrw_err(err, MRW_E_ARG, "%s:%" PRId64 ": the record has media, but this is text training "
                               "(start from a ModRWKV checkpoint or give --encoder)", smp.file, smp.line);
            memcpy(t->s_tok[b], smp.tokens, (size_t)smp.n * sizeof(int32_t));
            memcpy(t->s_lab[b], smp.labels, (size_t)smp.n * sizeof(int32_t));
            t->s_n[b] = smp.n;
            *n_tokens += smp.n;
            return MRW_OK;
        }
        /* encoder features of every media of the record, packed after the micro-batch's earlier items */
        const int item0 = t->n_items, E = t->feat_E, pend0 = t->n_pend;
        int M = 0, skip = 0;
        for (int j = 0; j < smp.n_media && !skip && t->vt; j++) {
            /* the encoder trains: its input pixels, as the inference processor makes them */
            const mrw_vit_config *vc = mrw_vit_train_config(t->vt);
            const size_t np = (size_t)3 * vc->image_size * vc->image_size;
            mrw_image img = {0};
            if (item0 + j >= t->max_items) { /* cannot happen: max_items = B x the reader's media limit */
                fprintf(stderr, "modrwkv train: warning: %s:%" PRId64 ": too many media; skipped\n", smp.file, smp.line);
                skip = 1;
                break;
            }
            s = smp.media_kind[j] == MRW_MEDIA_IMAGE ? mrw_image_load(smp.media_path[j], NULL, &img, err)
                                                      : mrw_err(err, MRW_E_ARG, "%s: not an image", smp.media_path[j]);
            if (!s) s = mrw_image_preprocess(&img, &t->proc, t->pix + (size_t)(item0 + j) * np, err);
            mrw_image_free(&img);
            if (s) {
                if (s == MRW_E_NOMEM) return s;
                fprintf(stderr, "modrwkv train: warning: %s:%" PRId64 ": %s; skipped\n", smp.file, smp.line,
                        err ? err->msg : "cannot read the image");
                skip = 1;
                break;
            }
            t->feat_Tin = vc->n_tokens;
            M = mrw_tadapter_out_len(t->ad, vc->n_tokens);
            t->feat_M = M;
            t->n_items_in_batch++;
        }
        for (int j = 0; j < smp.n_media && !skip && t->wt; j++) {
            /* the Whisper encoder trains: its log-mel input, as the inference path makes it */
            const mrw_whisper_config *wc = mrw_whisper_train_config(t->wt);
            mrw_audio a = {0};
            if (item0 + j >= t->max_items) {
                fprintf(stderr, "modrwkv train: warning: %s:%" PRId64 ": too many media; skipped\n", smp.file, smp.line);
                skip = 1;
                break;
            }
            s = smp.media_kind[j] == MRW_MEDIA_AUDIO ? mrw_audio_load(smp.media_path[j], 16000, NULL, &a, err)
                                                      : mrw_err(err, MRW_E_ARG, "%s: not a recording", smp.media_path[j]);
            float *mel = t->mel + (size_t)(item0 + j) * wc->n_mels * t->w_frames;
            int real = 0;
            if (!s) s = mrw_whisper_log_mel(a.samples, a.n, wc->n_mels, t->w_frames, mel, &real, err);
            const int keep = s ? 0 : mrw_whisper_keep_frames((int)(a.n / MRW_WHISPER_HOP), t->w_out);
            mrw_audio_free(&a);
            if (s) {
                if (s == MRW_E_NOMEM) return s;
                fprintf(stderr, "modrwkv train: warning: %s:%" PRId64 ": %s; skipped\n", smp.file, smp.line,
                        err ? err->msg : "cannot read the recording");
                skip = 1;
                break;
            }
            if (t->n_items_in_batch > 0 && keep != t->feat_Tin)
                return mrw_err(err, MRW_E_UNSUPPORTED,
                               "%s: %d feature rows where this micro-batch has %d; media of different feature lengths "
                               "(audio) need --batch 1 (use --grad-accum for a larger batch)",
                               smp.media_path[j], keep, t->feat_Tin);
            M = mrw_tadapter_out_len(t->ad, keep);
            if (M < 1 || keep > t->max_rows) {
                fprintf(stderr, "modrwkv train: warning: %s: %d feature rows cannot go through the adapter; skipped\n",
                        smp.media_path[j], keep);
                skip = 1;
                break;
            }
            t->feat_Tin = keep, t->feat_M = M;
            t->n_items_in_batch++;
        }
        int Ms[MRW_DATA_MAX_MEDIA] = {0}, mods[MRW_DATA_MAX_MEDIA] = {0};
        for (int j = 0; j < smp.n_media && (t->vt || t->wt); j++) Ms[j] = M; /* one modality, one length */
        int k0 = 0, kx[MRW_MM_MAX_MODALITIES] = {0};
        for (int j = 0; j < smp.n_media && !skip && !t->vt && !t->wt; j++) {
            /* the modality of this medium: the primary adapter's, or another one's (multi-modality models) */
            const int mod = t->n_xm ? mrw_mm_modality_of(t->enc, smp.media_kind[j] == MRW_MEDIA_AUDIO) : 0;
            xmod *x = mod > 0 ? &t->xm[mod - 1] : NULL;
            mods[j] = mod > 0 ? mod : 0;
            const int e_want = x ? x->feat_E : E, rows_max = x ? x->max_rows : t->max_rows;
            const int in_batch = x ? x->n_items_in_batch : t->n_items_in_batch, tin = x ? x->feat_Tin : t->feat_Tin;
            const int slot = x ? x->n_items + kx[mod] : item0 + k0, slots = x ? x->max_items : t->max_items;
            float *rows = NULL;
            int n = 0, e = 0, how = 0;
            const int mine = !t->slice_encode || b / (t->B / t->world) == t->rank;
            if ((s = media_features(t, x ? x->fcache : t->fcache, &smp, j, mine, &rows, &n, &e, &how, err))) {
                if (s == MRW_E_NOMEM) return s;
                fprintf(stderr, "modrwkv train: warning: %s; skipped\n", err ? err->msg : "cannot encode the media");
                skip = 1;
                break;
            }
            if (e != e_want) {
                free(rows);
                return mrw_err(err, MRW_E_SHAPE, "%s: encoder features of width %d, the adapter takes %d",
                               smp.media_path[j], e, e_want);
            }
            if (in_batch > 0 && n != tin) {
                free(rows);
                return mrw_err(err, MRW_E_UNSUPPORTED,
                               "%s: %d feature rows where this micro-batch has %d; media of different feature lengths "
                               "(audio) need --batch 1 (use --grad-accum for a larger batch)",
                               smp.media_path[j], n, tin);
            }
            M = mrw_tadapter_out_len(x ? x->ad : t->ad, n);
            if (M < 1 || n > rows_max || slot >= slots) {
                fprintf(stderr, "modrwkv train: warning: %s: %d feature rows cannot go through the adapter (at most "
                                "%d); skipped\n", smp.media_path[j], n, rows_max);
                free(rows);
                skip = 1;
                break;
            }
            float *dst = (x ? x->feat_in : t->feat_in) + (size_t)slot * n * e_want;
            if (how == 0) memcpy(dst, rows, (size_t)n * e_want * sizeof(float));
            else if (how == 1) t->pend[t->n_pend - 1].dst = dst; /* queued for the GPU encoder */
            /* (how == 2: another rank's medium; its slot is not read here) */
            free(rows);
            Ms[j] = M;
            if (x) {
                x->feat_Tin = n, x->feat_M = M;
                x->n_items_in_batch++;
                kx[mod]++;
            } else {
                t->feat_Tin = n, t->feat_M = M;
                t->n_items_in_batch++;
                k0++;
            }
        }
        if (!skip && smp.n_media && splice(t, b, &smp, Ms, mods)) skip = 1;
        if (skip) {
            drop_pending(t, pend0);
            t->n_items = item0;
            t->n_items_in_batch = item0;
            for (int k = 0; k < t->n_xm; k++) t->xm[k].n_items_in_batch = t->xm[k].n_items;
            continue;
        }
        if (!smp.n_media) { /* a text-only record in a multimodal run */
            memcpy(t->s_tok[b], smp.tokens, (size_t)smp.n * sizeof(int32_t));
            memcpy(t->s_lab[b], smp.labels, (size_t)smp.n * sizeof(int32_t));
            t->s_n[b] = smp.n;
        }
        *n_tokens += smp.n;
        if (t->slice_encode) { /* the signature of what this slot holds (compared across the ranks) */
            int64_t v[4 + MRW_DATA_MAX_MEDIA] = {b, smp.line, smp.n, t->s_n[b]};
            for (int j = 0; j < smp.n_media && j < MRW_DATA_MAX_MEDIA; j++) v[4 + j] = Ms[j];
            t->batch_sig = fnv1a(t->batch_sig, v, sizeof v);
        }
        return MRW_OK;
    }
}

#ifdef MRW_CUDA
/* The queued media through the GPU encoders, images genc_chunk per forward, Whisper clips genc_aud_chunk per
 * forward (each kind in queue order), their rows into their slots (and the cache). */
static mrw_status gpu_encode_pending(trainer *t, mrw_error *err) {
    mrw_status s = MRW_OK;
    const double t0 = mrw_now();
    for (int audio = 0; audio < 2 && !s; audio++) {
        struct mrw_vit_gpu *v = audio ? t->genc_aud : t->genc_img;
        if (!v) continue;
        const mrw_vit_config *c = mrw_vit_gpu_config(v);
        const int chunk = audio ? t->genc_aud_chunk : t->genc_chunk;
        const size_t np = audio ? t->gmel_floats : (size_t)c->channels * c->image_size * c->image_size;
        const size_t no = (size_t)c->n_tokens * c->hidden;
        float *in = audio ? t->gmel : t->gpix, *outb = audio ? t->gaout : t->gout;
        int idx[64];
        for (int i = 0; i < t->n_pend && !s;) {
            int n = 0;
            for (; i < t->n_pend && n < chunk; i++)
                if (t->pend[i].audio == audio) {
                    memcpy(in + (size_t)n * np, t->pend[i].pix, np * sizeof(float));
                    idx[n++] = i;
                }
            if (!n) break;
            s = audio ? mrw_whisper_gpu_forward_host_batch(v, in, n, outb, err) : mrw_vit_gpu_forward_host(v, in, n, outb, err);
            for (int k = 0; k < n && !s; k++) {
                const struct gpend *p = &t->pend[idx[k]];
                if (!p->dst) {
                    s = mrw_err(err, MRW_E_INTERNAL, "a medium queued for the GPU encoder has no slot");
                    break;
                }
                memcpy(p->dst, outb + (size_t)k * no, (size_t)p->rows * c->hidden * sizeof(float));
                if (p->fc && !(s = mrw_feature_cache_put(p->fc, p->path, p->dst, p->rows, c->hidden, err))) t->n_written++;
            }
            if (!s) t->n_encoded += n;
        }
    }
    drop_pending(t, 0);
    t->t_genc += mrw_now() - t0;
    return s;
}
#endif

static mrw_status load_micro_batch_(trainer *t, int64_t *n_tokens, mrw_error *err);

static mrw_status load_micro_batch(trainer *t, int64_t *n_tokens, mrw_error *err) {
    const double t0 = mrw_now();
    const mrw_status s = load_micro_batch_(t, n_tokens, err);
    t->t_load += mrw_now() - t0;
    return s;
}

static mrw_status load_micro_batch_(trainer *t, int64_t *n_tokens, mrw_error *err) {
    t->n_items = t->n_items_in_batch = 0;
    for (int k = 0; k < t->n_xm; k++) t->xm[k].n_items = t->xm[k].n_items_in_batch = 0;
    t->n_fc_seen = 0;
    t->batch_sig = 1469598103934665603ull;
    for (int b = 0; b < t->B; b++) {
        mrw_status s = load_sample(t, b, n_tokens, err);
        if (s) return s;
    }
#ifdef MRW_CUDA
    if (t->slice_encode) {
        /* every rank must hold the same records and feature rows (the slices and the targets' shares depend on
         * them): the signatures' sum and sum of squares over the ranks equal world x this rank's iff all are equal */
        const double h = (double)(t->batch_sig & 0xFFFFF);
        double x[2] = {h, h * h};
        mrw_status s = mrw_dp_sum_host(t->dp, x, 2, err);
        if (s) return s;
        if (x[0] != t->world * h || x[1] != t->world * h * h)
            return mrw_err(err, MRW_E_INTERNAL, "data parallel: the ranks read different micro-batches (a medium was "
                           "usable on one rank only); MRW_TRAIN_ENCODE_ALL=1 makes every rank encode every medium");
    }
    if (t->n_pend) return gpu_encode_pending(t, err);
#endif
    return MRW_OK;
}

#ifdef MRW_CUDA
/* Floats of one image's pixels in t->pix (the GPU-trained encoder's input). */
static size_t vit_pixels(const struct mrw_vit_gpu_train *v) {
    const mrw_vit_config *c = mrw_vit_gpu_train_config(v);
    return (size_t)3 * c->image_size * c->image_size;
}

/* Data parallelism: the items [*i0, *i0 + *n) of item_b[0..n_items) (sample indices, ascending) that belong to the
 * samples [b0, b0 + nb). */
static void dp_items(const int *item_b, int n_items, int b0, int nb, int *i0, int *n) {
    int a = 0, e;
    while (a < n_items && item_b[a] < b0) a++;
    for (e = a; e < n_items && item_b[e] < b0 + nb; e++) {}
    *i0 = a, *n = e - a;
}
#endif

/* Forward + backward of one micro-batch; returns its loss. */
static mrw_status micro_step(trainer *t, float scale, float *loss, mrw_error *err) {
    const int B = t->B;
    int T = mrw_train_pad_batch((const int32_t *const *)t->s_tok, (const int32_t *const *)t->s_lab, t->s_n, B,
                                t->tok, t->tgt);
    if (T > t->maxT) return mrw_err(err, MRW_E_INTERNAL, "micro-batch longer than allocated");
    const int frozen = !(t->o->train & MRW_PG_RWKV);
    int n_xitems = 0;
    for (int k = 0; k < t->n_xm; k++) n_xitems += t->xm[k].n_items;
#ifdef MRW_CUDA
    if (t->gpu && t->world > 1 && !t->ad) {
        /* this rank's slice of the global micro-batch; the loss is the mean over the targets of the whole batch, so
         * the slice's mean is weighted by its share of the targets (every rank counts them: it read the batch) */
        const int b = B / t->world, b0 = t->rank * b;
        int64_t n_all = 0, n_mine = 0;
        for (int i = 0; i < B; i++)
            for (int j = 0; j < t->s_n[i]; j++) {
                const int c = t->s_lab[i][j] != MRW_IGNORE;
                n_all += c;
                n_mine += c && i >= b0 && i < b0 + b;
            }
        T = mrw_train_pad_batch((const int32_t *const *)t->s_tok + b0, (const int32_t *const *)t->s_lab + b0,
                                t->s_n + b0, b, t->tok, t->tgt);
        const double share = n_all ? (double)n_mine / (double)n_all : 0;
        mrw_status s = mrw_rwkv7_gpu_forward(t->gpu, t->tok, t->tgt, b, T, 1, loss, err);
        if (s) return s;
        const int bad = !isfinite(*loss);
        *loss = (float)(*loss * share); /* the caller sums the ranks' parts (a NaN stays NaN) */
        return bad || !n_mine ? MRW_OK : mrw_rwkv7_gpu_backward(t->gpu, (float)(scale * share), err);
    }
    if (t->gpu && t->ad) { /* ModRWKV stages on the GPU (what is refused: mrw_train_gpu_mm_options) */
        const int trains_rwkv = !frozen, trains_ad = (t->o->train & MRW_PG_ADAPTER) != 0;
        /* data parallel (docs/DISTRIBUTED.md): this rank's slice of the global micro-batch, Bs samples from b0, its
         * media items (the primary modality's from i0, NI of them; modality k's from xi0[k], xn[k]), each weighted as
         * the text path's by its share of the targets of the whole batch (world 1: the whole batch, share 1) */
        int Bs = B, b0 = 0, i0 = 0, NI = t->n_items, xi0[MRW_MM_MAX_MODALITIES] = {0}, xn[MRW_MM_MAX_MODALITIES] = {0};
        double share = 1;
        for (int k = 0; k < t->n_xm; k++) xn[k] = t->xm[k].n_items;
        if (t->world > 1) {
            Bs = B / t->world, b0 = t->rank * Bs;
            int64_t n_all = 0, n_mine = 0;
            for (int i = 0; i < B; i++)
                for (int j = 0; j < t->s_n[i]; j++) {
                    const int c = t->s_lab[i][j] != MRW_IGNORE;
                    n_all += c;
                    n_mine += c && i >= b0 && i < b0 + Bs;
                }
            *loss = 0;
            if (!n_mine) return MRW_OK; /* nothing to learn in this slice: it adds 0 to the loss and the gradients */
            share = (double)n_mine / (double)n_all;
            T = mrw_train_pad_batch((const int32_t *const *)t->s_tok + b0, (const int32_t *const *)t->s_lab + b0,
                                    t->s_n + b0, Bs, t->tok, t->tgt);
            /* the items were loaded in sample order: the slice's are contiguous */
            dp_items(t->item_b, t->n_items, b0, Bs, &i0, &NI);
            n_xitems = 0;
            for (int k = 0; k < t->n_xm; k++) {
                dp_items(t->xm[k].item_b, t->xm[k].n_items, b0, Bs, &xi0[k], &xn[k]);
                n_xitems += xn[k];
            }
        }
        mrw_status s;
        if (!NI && !n_xitems) { /* a text-only micro-batch: no rows; stage 1 needs its loss only */
            s = mrw_rwkv7_gpu_forward_ex(t->gpu, t->tok, NULL, NULL, t->tgt, Bs, T, trains_rwkv, loss, err);
            if (s || !isfinite(*loss)) return s;
            *loss = (float)(*loss * share);
            return !trains_rwkv ? s : mrw_rwkv7_gpu_backward_ex(t->gpu, (float)(scale * share), 0, NULL, err);
        }
        /* the encoder trains: the pixels through the ViT on the GPU, its output rows are the adapter's input */
        const void *enc_out = NULL;
        if (t->vgpu && NI && t->wt && /* Whisper: the 30 s windows' mel; the first feat_Tin rows (real audio) go on */
            ((s = mrw_vit_gpu_train_forward(t->vgpu, t->mel + (size_t)i0 * mrw_vit_gpu_train_in_floats(t->vgpu), 1, NI,
                                            &enc_out, err)) ||
             (s = mrw_whisper_gpu_train_output_host(t->vgpu, t->feat_Tin, t->feat_in, err))))
            return s;
        if (t->vgpu && NI && !t->wt &&
            ((s = mrw_vit_gpu_train_forward(t->vgpu, t->pix + (size_t)i0 * vit_pixels(t->vgpu), 1, NI, &enc_out, err)) ||
             (s = mrw_vit_gpu_train_output_host(t->vgpu, t->feat_in, err))))
            return s;
        /* each modality's items through its adapter, each output row scattered to its position b*T + t */
        memset(t->mask, 0, (size_t)Bs * T);
        for (int k = -1; k < t->n_xm; k++) {
            xmod *x = k >= 0 ? &t->xm[k] : NULL;
            const int ni = x ? xn[k] : NI, it0 = x ? xi0[k] : i0;
            const int tin = x ? x->feat_Tin : t->feat_Tin, M = x ? x->feat_M : t->feat_M;
            struct mrw_adapter_gpu *ag = x ? x->agpu : t->agpu;
            int32_t *rp = x ? x->row_pos : t->row_pos;
            if (!ni) continue;
            if (M != mrw_adapter_gpu_out_len(ag, tin))
                return mrw_err(err, MRW_E_INTERNAL, "GPU adapter: %d rows in, %d out", tin, M);
            for (int it = 0; it < ni; it++)
                for (int i = 0; i < M; i++) {
                    const int pos = ((x ? x->item_b[it0 + it] : t->item_b[it0 + it]) - b0) * T +
                                    (x ? x->item_at[it0 + it] : t->item_at[it0 + it]) + i;
                    t->mask[pos] = 1;
                    rp[(size_t)it * M + i] = pos;
                }
            /* (the GPU-trained encoder's output rows start at feat_in: they are only this slice's) */
            const size_t f0 = x || !t->vgpu ? (size_t)it0 * tin * (x ? x->feat_E : t->feat_E) : 0;
            if ((s = mrw_adapter_gpu_forward_items(ag, (x ? x->feat_in : t->feat_in) + f0, ni, tin, rp, err))) return s;
        }
        s = mrw_rwkv7_gpu_forward_ex(t->gpu, t->tok, t->g_inject, t->mask, t->tgt, Bs, T, trains_rwkv ? 1 : 2, loss, err);
        if (s || !isfinite(*loss)) return s; /* a non-finite loss skips the backward (and the caller the step) */
        *loss = (float)(*loss * share);
        if ((s = mrw_rwkv7_gpu_backward_ex(t->gpu, (float)(scale * share), !trains_rwkv, trains_ad ? t->g_dinject : NULL,
                                           err)))
            return s;
        if (trains_ad && NI && t->vgpu) /* through the adapter into the encoder */
            return mrw_vit_gpu_train_backward_adapter(t->vgpu, t->agpu, t->g_dinject, mrw_vit_gpu_train_dtype(t->vgpu),
                                                      t->C, t->row_pos, NI * t->feat_M, err);
        if (trains_ad && NI && (s = mrw_adapter_gpu_backward_rows(t->agpu, err))) return s;
        for (int k = 0; k < t->n_xm && trains_ad; k++)
            if (xn[k] && (s = mrw_adapter_gpu_backward_rows(t->xm[k].agpu, err))) return s;
        return MRW_OK;
    }
    if (t->gpu) { /* a non-finite loss skips the backward (and the caller the step) */
        mrw_status s = mrw_rwkv7_gpu_forward(t->gpu, t->tok, t->tgt, B, T, 1, loss, err);
        return s || !isfinite(*loss) ? s : mrw_rwkv7_gpu_backward(t->gpu, scale, err);
    }
#endif
    if (!t->ad || t->n_items + n_xitems == 0) {
        *loss = mrw_rwkv7_train_forward(t->lm, t->tok, NULL, NULL, t->tgt, B, T, NULL);
        mrw_rwkv7_train_backward(t->lm, scale, frozen, NULL);
        return MRW_OK;
    }
    const int C = t->C, M = t->feat_M, NI = t->n_items;
    mrw_status s;
    if (NI && t->vt && (s = mrw_vit_train_forward(t->vt, t->pix, NI, t->feat_in, err))) return s;
    if (NI && t->wt) { /* the whole 30 s window goes through Whisper; the rows of the real audio go on */
        if ((s = mrw_whisper_train_forward(t->wt, t->mel, NI, t->w_frames, t->w_out_buf, err))) return s;
        for (int it = 0; it < NI; it++)
            memcpy(t->feat_in + (size_t)it * t->feat_Tin * t->feat_E, t->w_out_buf + (size_t)it * t->w_out * t->feat_E,
                   (size_t)t->feat_Tin * t->feat_E * sizeof(float));
    }
    if (NI && (s = mrw_tadapter_forward(t->ad, t->feat_in, NI, t->feat_Tin, t->feat_out, err))) return s;
    memset(t->mask, 0, (size_t)B * T);
    for (int it = 0; it < NI; it++)
        for (int i = 0; i < M; i++) {
            const size_t pos = (size_t)t->item_b[it] * T + t->item_at[it] + i;
            t->mask[pos] = 1;
            memcpy(t->inject + pos * C, t->feat_out + ((size_t)it * M + i) * C, (size_t)C * sizeof(float));
        }
    for (int k = 0; k < t->n_xm; k++) { /* the other modalities' items through their adapters */
        xmod *x = &t->xm[k];
        if (!x->n_items) continue;
        if ((s = mrw_tadapter_forward(x->ad, x->feat_in, x->n_items, x->feat_Tin, x->feat_out, err))) return s;
        for (int it = 0; it < x->n_items; it++)
            for (int i = 0; i < x->feat_M; i++) {
                const size_t pos = (size_t)x->item_b[it] * T + x->item_at[it] + i;
                t->mask[pos] = 1;
                memcpy(t->inject + pos * C, x->feat_out + ((size_t)it * x->feat_M + i) * C, (size_t)C * sizeof(float));
            }
    }
    *loss = mrw_rwkv7_train_forward(t->lm, t->tok, t->inject, t->mask, t->tgt, B, T, NULL);
    mrw_rwkv7_train_backward(t->lm, scale, frozen, t->d_inject);
    for (int it = 0; it < NI; it++)
        for (int i = 0; i < M; i++) {
            const size_t pos = (size_t)t->item_b[it] * T + t->item_at[it] + i;
            memcpy(t->d_feat_out + ((size_t)it * M + i) * C, t->d_inject + pos * C, (size_t)C * sizeof(float));
        }
    for (int k = 0; k < t->n_xm; k++) {
        xmod *x = &t->xm[k];
        if (!x->n_items) continue;
        for (int it = 0; it < x->n_items; it++)
            for (int i = 0; i < x->feat_M; i++) {
                const size_t pos = (size_t)x->item_b[it] * T + x->item_at[it] + i;
                memcpy(x->d_feat_out + ((size_t)it * x->feat_M + i) * C, t->d_inject + pos * C, (size_t)C * sizeof(float));
            }
        mrw_tadapter_backward(x->ad, x->d_feat_out, NULL);
    }
    if (!NI) return MRW_OK;
    /* d_inject already carries `scale`; the adapter (and the encoder) accumulate it as given */
    mrw_tadapter_backward(t->ad, t->d_feat_out, t->vt || t->wt ? t->d_enc : NULL);
    if (t->vt) mrw_vit_train_backward(t->vt, t->d_enc, NULL);
    if (t->wt) {
        memset(t->d_w_out, 0, (size_t)NI * t->w_out * t->feat_E * sizeof(float));
        for (int it = 0; it < NI; it++)
            memcpy(t->d_w_out + (size_t)it * t->w_out * t->feat_E, t->d_enc + (size_t)it * t->feat_Tin * t->feat_E,
                   (size_t)t->feat_Tin * t->feat_E * sizeof(float));
        mrw_whisper_train_backward(t->wt, t->d_w_out, NULL);
    }
    return MRW_OK;
}

/* ----------------------------------------------------------------------------------------- set-up */

void mrw_train_feature_cache_id(const char *weights, char *id, size_t n) {
    /* the encoder file's name (sanitised) and a hash of its path, size and mtime: another encoder, or a changed
     * file, never reads these features */
    char key[4400];
    struct stat ws;
    memset(&ws, 0, sizeof ws);
    stat(weights, &ws);
    snprintf(key, sizeof key, "%s|%lld|%lld", weights, (long long)ws.st_size, (long long)ws.st_mtime);
    uint64_t h = 1469598103934665603ull;
    for (const char *c = key; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
    const char *base = strrchr(weights, '/');
    base = base && base[1] ? base + 1 : weights;
    char name[48];
    int k = 0;
    for (; base[k] && k < 40; k++) {
        const char c = base[k];
        name[k] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ? c : '_';
    }
    name[k] = 0;
    snprintf(id, n, "%s-%016llx", name, (unsigned long long)h);
}

static mrw_status alloc_buffers(trainer *t, mrw_error *err) {
    const int B = t->B;
    t->tok = malloc((size_t)B * t->maxT * sizeof(int32_t));
    t->tgt = malloc((size_t)B * t->maxT * sizeof(int32_t));
    t->s_tok = calloc((size_t)B, sizeof(int32_t *));
    t->s_lab = calloc((size_t)B, sizeof(int32_t *));
    t->s_n = calloc((size_t)B, sizeof(int));
    if (!t->tok || !t->tgt || !t->s_tok || !t->s_lab || !t->s_n)
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    for (int b = 0; b < B; b++) {
        t->s_tok[b] = malloc((size_t)t->maxT * sizeof(int32_t));
        t->s_lab[b] = malloc((size_t)t->maxT * sizeof(int32_t));
        if (!t->s_tok[b] || !t->s_lab[b]) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    if (t->ad) {
        const size_t bt = (size_t)B * t->maxT;
        t->inject = calloc(bt * t->C, sizeof(float));
        t->d_inject = calloc(bt * t->C, sizeof(float));
        t->mask = calloc(bt, 1);
        const size_t in = (size_t)t->max_items * t->max_rows * t->feat_E;
        const size_t out = (size_t)t->max_items * t->max_rows * t->C; /* M <= rows */
        t->feat_out = malloc(out * sizeof(float));
        t->d_feat_out = malloc(out * sizeof(float));
        t->feat_in = malloc(in * sizeof(float));
        t->item_b = malloc((size_t)t->max_items * sizeof(int));
        t->item_at = malloc((size_t)t->max_items * sizeof(int));
        if (t->wt) {
            const mrw_whisper_config *wc = mrw_whisper_train_config(t->wt);
            const size_t wo = (size_t)t->max_items * t->w_out * t->feat_E;
            t->mel = malloc((size_t)t->max_items * wc->n_mels * t->w_frames * sizeof(float));
            t->w_out_buf = malloc(wo * sizeof(float));
            t->d_w_out = malloc(wo * sizeof(float));
            t->d_enc = malloc(in * sizeof(float));
            if (!t->mel || !t->w_out_buf || !t->d_w_out || !t->d_enc)
                return mrw_err(err, MRW_E_NOMEM, "out of memory for the encoder buffers");
        }
        if (t->vt) {
            const mrw_vit_config *vc = mrw_vit_train_config(t->vt);
            t->pix = malloc((size_t)t->max_items * 3 * vc->image_size * vc->image_size * sizeof(float));
            t->d_enc = malloc(in * sizeof(float));
            if (!t->pix || !t->d_enc) return mrw_err(err, MRW_E_NOMEM, "out of memory for the encoder buffers");
        }
        if (!t->inject || !t->d_inject || !t->mask || !t->feat_out || !t->d_feat_out || !t->feat_in || !t->item_b ||
            !t->item_at)
            return mrw_err(err, MRW_E_NOMEM, "out of memory for the multimodal buffers");
        for (int k = 0; k < t->n_xm; k++) {
            xmod *x = &t->xm[k];
            x->feat_in = malloc((size_t)x->max_items * x->max_rows * x->feat_E * sizeof(float));
            x->feat_out = malloc((size_t)x->max_items * x->max_rows * t->C * sizeof(float));
            x->d_feat_out = malloc((size_t)x->max_items * x->max_rows * t->C * sizeof(float));
            x->item_b = malloc((size_t)x->max_items * sizeof(int));
            x->item_at = malloc((size_t)x->max_items * sizeof(int));
            if (!x->feat_in || !x->feat_out || !x->d_feat_out || !x->item_b || !x->item_at)
                return mrw_err(err, MRW_E_NOMEM, "out of memory for the multimodal buffers");
        }
    }
    return MRW_OK;
}

static void trainer_free(trainer *t) {
    if (t->log) fclose(t->log);
#ifdef MRW_CUDA
    for (int k = 0; k < t->n_xm; k++) { /* (they share the primary adapter's injected rows: before it) */
        mrw_adapter_gpu_free(t->xm[k].agpu);
        free(t->xm[k].row_pos);
    }
    mrw_vit_gpu_train_free(t->vgpu); /* (on the RWKV trainer's stream: first) */
    mrw_vit_gpu_free(t->genc_img);
    mrw_vit_gpu_free(t->genc_aud);
    mrw_wavlm_gpu_free(t->genc_wavlm);
    mrw_adapter_gpu_free(t->agpu);
    free(t->row_pos);
    mrw_dp_free(t->dp);
    mrw_rwkv7_gpu_free(t->gpu);
    mrw_nccl_close(t->nccl);
#endif
    mrw_adam_free(&t->opt);
    mrw_rwkv7_train_free(t->lm);
    if (t->ad) mrw_tadapter_free(t->ad);
    if (t->enc) mrw_mm_free(t->enc);
    if (t->fcache) mrw_feature_cache_free(t->fcache);
    if (t->enc_src) mrw_tfile_close(t->enc_src);
    if (t->vt) mrw_vit_train_free(t->vt);
    if (t->wt) mrw_whisper_train_free(t->wt);
    free(t->pix), free(t->d_enc), free(t->mel), free(t->w_out_buf), free(t->d_w_out);
    drop_pending(t, 0);
    free(t->pend), free(t->gpix), free(t->gout), free(t->gmel), free(t->gaout), free(t->fc_seen);
    mrw_data_free(t->data);
    free(t->tok), free(t->tgt), free(t->s_n), free(t->item_b), free(t->item_at);
    for (int b = 0; b < t->B; b++) {
        if (t->s_tok) free(t->s_tok[b]);
        if (t->s_lab) free(t->s_lab[b]);
    }
    free(t->s_tok), free(t->s_lab);
    free(t->inject), free(t->d_inject), free(t->mask), free(t->feat_in), free(t->feat_out), free(t->d_feat_out);
    free(t->options), free(t->enc_config), free(t->pre_config), free(t->enc_inner);
    for (int k = 0; k < t->n_xm; k++) {
        xmod *x = &t->xm[k];
        if (x->ad) mrw_tadapter_free(x->ad);
        if (x->fcache) mrw_feature_cache_free(x->fcache);
        free(x->feat_in), free(x->feat_out), free(x->d_feat_out), free(x->item_b), free(x->item_at);
        free(x->enc_config), free(x->pre_config), free(x->enc_inner);
    }
}

static mrw_status make_dir(const char *dir, mrw_error *err) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return mrw_err(err, MRW_E_IO, "%s: cannot create: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return mrw_err(err, MRW_E_IO, "%s is not a directory", dir);
    return MRW_OK;
}

static mrw_status check_opts(const mrw_train_opts *o, mrw_error *err) {
    if (!o->out || !*o->out) return mrw_err(err, MRW_E_ARG, "no output directory: give --out DIR");
    if (o->n_data < 1) return mrw_err(err, MRW_E_ARG, "no training data: give --data FILE");
    if (!o->model && (o->init_layers < 1 || o->init_embd < 1))
        return mrw_err(err, MRW_E_ARG, "no model: give -m FILE (RWKV-7 or ModRWKV) or --init LAYERS,EMBD");
    if (o->batch < 1 || o->grad_accum < 1 || o->ctx_len < 1)
        return mrw_err(err, MRW_E_ARG, "--batch, --grad-accum and --ctx-len must be at least 1");
    if (!(o->lr > 0) || !(o->lr_final >= 0) || !(o->clip >= 0) || !(o->weight_decay >= 0))
        return mrw_err(err, MRW_E_ARG, "--lr must be > 0, --lr-final, --clip and --weight-decay >= 0");
    if (o->steps < 0 || (o->steps == 0 && !(o->epochs > 0)))
        return mrw_err(err, MRW_E_ARG, "give a positive --steps or --epochs");
    if (!(o->train & (MRW_PG_RWKV | MRW_PG_ADAPTER)))
        return mrw_err(err, MRW_E_ARG, "--train must name rwkv and/or adapter");
    if (o->threads < 1) return mrw_err(err, MRW_E_ARG, "--threads must be at least 1");
    if (o->encoder_device == 2 && !o->device)
        return mrw_err(err, MRW_E_ARG, "--encoder-device cuda runs the frozen encoders on the GPU: it needs --device cuda");
    return MRW_OK;
}

/* Features of an encoder of this kind come from the GPU (SigLIP, CLIP, Whisper, WavLM). Their
 * feature cache is another one than the CPU encoder's: its id ends in MRW_GPU_CACHE_SUFFIX. */
#define MRW_GPU_CACHE_SUFFIX "-cuda-bf16"
static int gpu_encodes(const trainer *t, int kind) {
    return t->enc_gpu && (kind == MRW_ENC_SIGLIP || kind == MRW_ENC_CLIP || kind == MRW_ENC_WHISPER || kind == MRW_ENC_WAVLM);
}

/* The other modalities of a multi-modality start model (docs/MULTIMODAL.md): for each, its frozen encoder (in
 * t->enc), an adapter like the one in the file, loaded from "m<k>.proj.*" / "m<k>.compress.*" (the trainable
 * tensors are named so), buffers sized like the primary's, and its own feature cache. */
static mrw_status setup_other_modalities(trainer *t, mrw_error *err) {
    const mrw_train_opts *o = t->o;
    const int n = mrw_mm_n_modalities(t->enc);
    if (n > 1 && !t->enc_src) return mrw_err(err, MRW_E_INTERNAL, "a multi-modality start without its file");
    if (n > 1 && (o->train & MRW_PG_ENCODER))
        return mrw_err(err, MRW_E_UNSUPPORTED, "--train ...,encoder: a model with %d modalities trains its adapters and "
                                               "RWKV only (its encoders stay frozen)", n);
    mrw_status s;
    for (int k = 1; k < n; k++) {
        xmod *x = &t->xm[t->n_xm++];
        x->k = k;
        const mrw_mm_info mi = mrw_mm_modality_info(t->enc, k);
        static const char *kinds[] = {"none", "siglip", "clip", "whisper", "wavlm"};
        x->kind = kinds[mi.encoder];
        x->feat_E = mi.encoder_width;
        char name[96], key[64];
        mrw_tadapter_config ac = {0};
        ac.E = x->feat_E;
        ac.C = t->C;
        ac.kind = mi.adapter_version == 1 ? (mi.adapter_audio ? MRW_TADAPTER_V1_AUDIO : MRW_TADAPTER_V1_VISION)
                                          : MRW_TADAPTER_V2;
        ac.compress_k = mi.compress_trained ? mi.compress_k : 0;
        ac.compress_s = mi.compress_trained ? mi.compress_s : 0;
        if (ac.kind == MRW_TADAPTER_V2) {
            snprintf(name, sizeof name, "m%d.proj.mlp.0.weight", k);
            const mrw_tensor_info *w0 = mrw_tfile_find(t->enc_src, name);
            if (w0 && w0->ndim == 2) ac.hidden = (int)w0->shape[0];
            snprintf(name, sizeof name, "m%d.proj.conv.weight", k);
            ac.v2_conv = mrw_tfile_find(t->enc_src, name) != NULL;
        }
        x->compress_k = ac.compress_k, x->compress_s = ac.compress_s;
        x->adc = ac;
        if (!mi.takes_audio) { /* an image's row count: probe with a blank image */
            const size_t np = (size_t)3 * mi.image_size * mi.image_size;
            float *blank = calloc(np ? np : 1, sizeof(float));
            mrw_features probe = {0};
            if (!blank) return mrw_err(err, MRW_E_NOMEM, "out of memory");
            s = mrw_mm_encode_input_at(t->enc, k, blank, np, o->threads, NULL, &probe, err);
            free(blank);
            if (s) return s;
            x->max_rows = probe.n;
            mrw_features_free(&probe);
        } else {
            const int down = (ac.kind == MRW_TADAPTER_V1_AUDIO || ac.v2_conv ? 2 : 1) * (ac.compress_s > 1 ? ac.compress_s : 1);
            x->max_rows = (t->maxT + 4) * down;
            if (mi.encoder == MRW_ENC_WHISPER && x->max_rows > 1500) x->max_rows = 1500;
            if (x->max_rows > 16384) x->max_rows = 16384;
        }
        x->max_items = t->B * (mi.takes_audio ? 1 : MRW_DATA_MAX_MEDIA);
        if ((s = mrw_tadapter_new(&ac, x->max_items, x->max_rows, o->threads, &x->ad, err))) return s;
        mrw_tadapter_init(x->ad, o->seed ^ (0xada9ull + (uint64_t)k));
        /* "proj.X" -> "m<k>.proj.X", "compress.X" -> "m<k>.compress.X": the bundle's names for modality k */
        mrw_param_set *ps = mrw_tadapter_params(x->ad);
        for (int i = 0; i < ps->n; i++) {
            char nn[MRW_PARAM_NAME_MAX];
            if (snprintf(nn, sizeof nn, "m%d.%s", k, ps->p[i].name) >= (int)sizeof nn)
                return mrw_err(err, MRW_E_INTERNAL, "parameter name too long");
            memcpy(ps->p[i].name, nn, sizeof nn);
        }
        /* its trained weights: every tensor of this structure, with its shape */
        for (int i = 0; i < ps->n; i++) {
            const mrw_param *pp = &ps->p[i];
            const mrw_tensor_info *ti = mrw_tfile_find(t->enc_src, pp->name);
            if (!ti) return mrw_err(err, MRW_E_MISSING, "%s: adapter tensor '%s' is missing", o->model, pp->name);
            float *w = NULL;
            size_t nw = 0;
            if ((s = mrw_read_tensor_f32(o->model, pp->name, &w, &nw, NULL, NULL, err))) return s;
            if (nw != pp->n) {
                free(w);
                return mrw_err(err, MRW_E_SHAPE, "%s: adapter tensor '%s' has %zu elements, the adapter needs %zu",
                               o->model, pp->name, nw, pp->n);
            }
            memcpy(mrw_param_w(ps, i), w, nw * sizeof(float));
            free(w);
        }
        snprintf(name, sizeof name, "m%d.", k);
        for (int i = 0; i < mrw_tfile_count(t->enc_src); i++) { /* nothing else under its adapter */
            const char *tn = mrw_tfile_tensor(t->enc_src, i)->name;
            if (strncmp(tn, name, strlen(name)) || !strncmp(tn + strlen(name), "encoder.model.", 14)) continue;
            if (mrw_param_find(ps, tn) < 0)
                return mrw_err(err, MRW_E_UNKNOWN, "%s: unexpected adapter tensor '%s'", o->model, tn);
        }
        const char *mk[3] = {"encoder_config", "preprocessor_config", "encoder_prefix"};
        char **dst[3] = {&x->enc_config, &x->pre_config, &x->enc_inner};
        for (int q = 0; q < 3; q++) {
            snprintf(key, sizeof key, "modrwkv.m%d.%s", k, mk[q]);
            const mrw_meta *m = mrw_tfile_find_meta(t->enc_src, key);
            if (m && m->type == MRW_MV_STRING && !(*dst[q] = strndup(m->v.s.ptr, m->v.s.len)))
                return mrw_err(err, MRW_E_NOMEM, "out of memory");
        }
        if (o->feature_cache) {
            char id[128], idk[160];
            mrw_train_feature_cache_id(o->model, id, sizeof id);
            snprintf(idk, sizeof idk, "%s-m%d%s", id, k, gpu_encodes(t, mi.encoder) ? MRW_GPU_CACHE_SUFFIX : "");
            if ((s = mrw_feature_cache_open(o->feature_cache, idk, &x->fcache, err))) return s;
        }
    }
    return MRW_OK;
}

/* The multimodal half of the set-up: encoder, adapter (from the checkpoint or new), splicing, cache. */
static mrw_status setup_multimodal(trainer *t, mrw_error *err) {
    const mrw_train_opts *o = t->o;
    mrw_status s;
    /* --device cuda: the frozen encoders run on the GPU unless --encoder-device cpu (a trained one is on the GPU
     * anyway); made in setup() once the GPU trainer exists */
    t->enc_gpu = o->device && o->encoder_device != 1 && !(o->train & MRW_PG_ENCODER);
    /* t->enc: the ModRWKV checkpoint loaded by setup(), or the encoder alone */
    const int from_mm = t->enc != NULL;
    if (!from_mm) {
        mrw_mm_params mp = mrw_mm_params_default();
        if ((s = mrw_mm_load(o->encoder, &mp, &t->enc, err))) return s;
    }
    const mrw_mm_info mi = mrw_mm_get_info(t->enc);
    if (!mi.encoder) return mrw_err(err, MRW_E_ARG, "%s has no encoder", from_mm ? o->model : o->encoder);
    t->feat_E = mi.encoder_width;
    /* where the encoder tensors come from (copied into the trained bundle): inside the checkpoint (v2,
     * bundles), else the Hugging Face files of --encoder */
    char wpath[4200];
    struct stat st;
    int inner = 0;
    if (from_mm) {
        if ((s = mrw_tfile_open(o->model, &t->enc_src, err))) return s;
        for (int i = 0; i < mrw_tfile_count(t->enc_src) && !inner; i++)
            inner = !strncmp(mrw_tfile_tensor(t->enc_src, i)->name, "encoder.model.", 14);
        const mrw_meta *m = mrw_tfile_find_meta(t->enc_src, "modrwkv.encoder_prefix");
        if (m && m->type == MRW_MV_STRING && m->v.s.len) {
            /* a bundle from `modrwkv convert` (e.g. "vision_model."): a frozen encoder's tensors are copied with
             * their names and this prefix; the trainable encoders expect the layout `modrwkv train` writes */
            if (o->train & MRW_PG_ENCODER)
                return mrw_err(err, MRW_E_UNSUPPORTED, "%s: --train ...,encoder needs a start written by modrwkv train "
                               "(this bundle's encoder sits under a prefix)", o->model);
            if (m->v.s.len > 100) return mrw_err(err, MRW_E_FORMAT, "%s: modrwkv.encoder_prefix is too long", o->model);
            t->enc_inner = strndup(m->v.s.ptr, m->v.s.len);
            if (!t->enc_inner) return mrw_err(err, MRW_E_NOMEM, "out of memory");
        }
        m = mrw_tfile_find_meta(t->enc_src, "modrwkv.encoder_config");
        if (m && m->type == MRW_MV_STRING) t->enc_config = strndup(m->v.s.ptr, m->v.s.len);
        m = mrw_tfile_find_meta(t->enc_src, "modrwkv.preprocessor_config");
        if (m && m->type == MRW_MV_STRING) t->pre_config = strndup(m->v.s.ptr, m->v.s.len);
        if (inner) {
            snprintf(wpath, sizeof wpath, "%s", o->model);
            snprintf(t->enc_src_prefix_buf, sizeof t->enc_src_prefix_buf, "encoder.model.%s", t->enc_inner ? t->enc_inner : "");
            t->enc_src_prefix = t->enc_src_prefix_buf;
        } else {
            mrw_tfile_close(t->enc_src);
            t->enc_src = NULL;
        }
    }
    const int enc_is_dir = o->encoder && stat(o->encoder, &st) == 0 && S_ISDIR(st.st_mode);
    if (!inner) {
        if (!o->encoder) return mrw_err(err, MRW_E_ARG, "%s has no encoder inside: give --encoder DIR", o->model);
        snprintf(wpath, sizeof wpath, enc_is_dir ? "%s/model.safetensors" : "%s", o->encoder);
        t->enc_src_prefix = "";
        if ((s = mrw_tfile_open(wpath, &t->enc_src, err))) return s;
    }
    if (!t->enc_config && o->encoder) {
        char dir[4096], p[4200];
        snprintf(dir, sizeof dir, "%s", o->encoder);
        if (!enc_is_dir) {
            char *slash = strrchr(dir, '/');
            if (slash) *slash = 0;
            else snprintf(dir, sizeof dir, ".");
        }
        snprintf(p, sizeof p, "%s/config.json", dir);
        t->enc_config = read_small(p);
        snprintf(p, sizeof p, "%s/preprocessor_config.json", dir);
        t->pre_config = read_small(p);
    }
    /* adapter */
    mrw_tadapter_config ac = {0};
    ac.E = t->feat_E;
    ac.C = t->C;
    if (from_mm) {
        if (o->adapter_scale)
            return mrw_err(err, MRW_E_ARG, "--adapter-scale shapes a new adapter; %s already has one", o->model);
        ac.kind = mi.adapter_version == 1 ? (mi.adapter_audio ? MRW_TADAPTER_V1_AUDIO : MRW_TADAPTER_V1_VISION)
                                          : MRW_TADAPTER_V2;
        ac.compress_k = o->compress_k ? o->compress_k : (mi.compress_trained ? mi.compress_k : 0);
        ac.compress_s = o->compress_k ? o->compress_s : (mi.compress_trained ? mi.compress_s : 0);
        if (ac.kind == MRW_TADAPTER_V2) {
            /* hidden width and the optional conv from the file's shapes */
            const mrw_tensor_info *w0 = mrw_tfile_find(t->enc_src, "proj.mlp.0.weight");
            if (w0 && w0->ndim == 2) ac.hidden = (int)w0->shape[0];
            ac.v2_conv = mrw_tfile_find(t->enc_src, "proj.conv.weight") != NULL;
        }
        t->splice_prepend = mi.splice == MRW_SPLICE_PREPEND;
    } else {
        const int audio = mi.encoder == MRW_ENC_WHISPER || mi.encoder == MRW_ENC_WAVLM;
        ac.kind = o->adapter_v1 ? (audio ? MRW_TADAPTER_V1_AUDIO : MRW_TADAPTER_V1_VISION) : MRW_TADAPTER_V2;
        ac.compress_k = o->compress_k, ac.compress_s = o->compress_s;
        t->splice_prepend = o->adapter_v1;
        if (o->adapter_scale > 0) { /* paper Table 5 "adapter scaling": hidden = K x the MLP's input width */
            if (o->adapter_v1)
                return mrw_err(err, MRW_E_ARG, "--adapter-scale sets the width of a v2 adapter; not with --adapter v1");
            ac.hidden = o->adapter_scale * ac.E;
            t->splice_prepend = t->V <= TOKEN_IMAGE_PAD; /* byte vocabulary: no placeholders, prepend the rows */
        }
    }
    t->compress_k = ac.compress_k, t->compress_s = ac.compress_s;
    /* the longest feature sequence an input can give: bounded by the context */
    /* adapter activations sized for the largest media: an image's row count is fixed by the encoder (probed with
     * a blank image); audio rows grow with the clip, bounded by what can fit the context after the adapter's
     * downsampling (Whisper: at most 1500, its 30 s window) */
    const int audio = mi.encoder == MRW_ENC_WHISPER || mi.encoder == MRW_ENC_WAVLM;
    if (!audio && mi.image_size > 0) {
        const size_t np = (size_t)3 * mi.image_size * mi.image_size;
        float *blank = calloc(np, sizeof(float));
        mrw_features probe = {0};
        if (!blank) return mrw_err(err, MRW_E_NOMEM, "out of memory");
        s = mrw_mm_encode_input(t->enc, blank, np, o->threads, NULL, &probe, err);
        free(blank);
        if (s) return s;
        t->max_rows = probe.n;
        mrw_features_free(&probe);
    } else {
        const int down = (ac.kind == MRW_TADAPTER_V1_AUDIO || ac.v2_conv ? 2 : 1) * (ac.compress_s > 1 ? ac.compress_s : 1);
        t->max_rows = (t->maxT + 4) * down;
        if (mi.encoder == MRW_ENC_WHISPER && t->max_rows > 1500) t->max_rows = 1500;
        if (t->max_rows > 16384) t->max_rows = 16384;
    }
    t->max_items = t->B * (audio ? 1 : MRW_DATA_MAX_MEDIA);
    if ((o->train & MRW_PG_ENCODER) && mi.encoder == MRW_ENC_WHISPER) {
        if (o->feature_cache)
            fprintf(stderr, "modrwkv train: warning: the encoder trains, so --feature-cache is not used\n");
        mrw_whisper_params wp = {.prefix = *t->enc_src_prefix ? t->enc_src_prefix : NULL, .config_json = t->enc_config};
        /* (--device cuda: the encoder trains on the GPU, this copy only holds the weights: activations for 1 clip) */
        if ((s = mrw_whisper_train_open(wpath, &wp, o->device ? 1 : t->max_items, 0, o->threads, &t->wt, err))) return s;
        const mrw_whisper_config *wc = mrw_whisper_train_config(t->wt);
        t->w_frames = 2 * wc->n_pos;
        t->w_out = mrw_whisper_enc_out_frames(t->w_frames);
        if (wc->d_model != t->feat_E) return mrw_err(err, MRW_E_INTERNAL, "the trainable encoder differs from the inference one");
        if (t->max_rows > t->w_out) t->max_rows = t->w_out;
    } else if (o->train & MRW_PG_ENCODER) {
        if (audio || mi.image_size <= 0)
            return mrw_err(err, MRW_E_UNSUPPORTED, "--train ...,encoder: WavLM cannot train in this build (only SigLIP, "
                                                   "CLIP and Whisper)");
        if (o->feature_cache)
            fprintf(stderr, "modrwkv train: warning: the encoder trains, so --feature-cache is not used\n");
        mrw_vit_params vp = {.prefix = t->enc_src_prefix, .config_json = t->enc_config, .quiet = 1};
        /* (--device cuda: the encoder trains on the GPU, this copy only holds the weights: activations for 1 image) */
        if ((s = mrw_vit_train_open(wpath, &vp, o->device ? 1 : t->max_items, o->threads, &t->vt, err))) return s;
        const mrw_vit_config *vc = mrw_vit_train_config(t->vt);
        if (vc->hidden != t->feat_E || vc->n_tokens != t->max_rows)
            return mrw_err(err, MRW_E_INTERNAL, "the trainable encoder differs from the inference one");
        /* the inference processor (src/models/modrwkv.c): the family's resize, mean/std from
         * preprocessor_config.json when there is one */
        t->proc = vc->family == MRW_VIT_SIGLIP ? mrw_image_proc_siglip(vc->image_size) : mrw_image_proc_clip(vc->image_size);
        cJSON *pc = t->pre_config ? cJSON_Parse(t->pre_config) : NULL;
        static const char *keys[2] = {"image_mean", "image_std"};
        for (int k = 0; k < 2 && pc; k++) {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(pc, keys[k]);
            float *dst = k ? t->proc.std : t->proc.mean;
            if (cJSON_IsArray(a) && cJSON_GetArraySize(a) == 3)
                for (int c = 0; c < 3; c++) {
                    const cJSON *v = cJSON_GetArrayItem(a, c);
                    if (cJSON_IsNumber(v)) dst[c] = (float)v->valuedouble;
                }
        }
        cJSON_Delete(pc);
    }
    t->adc = ac;
    if ((s = mrw_tadapter_new(&ac, t->max_items, t->max_rows, o->threads, &t->ad, err))) return s;
    mrw_tadapter_init(t->ad, o->seed ^ 0xada9ull);
    if (from_mm && (s = mrw_tadapter_load(t->ad, o->model, err))) return s;
    if (!t->splice_prepend) {
        if (t->V <= TOKEN_IMAGE_PAD)
            return mrw_err(err, MRW_E_ARG, "placeholder splicing (v2 adapters) needs the World vocabulary's special "
                                           "tokens (65530-65532); this model has %d tokens: use --adapter v1", t->V);
        int32_t nl[4];
        if (mrw_tokenize(t->vocab, "\n", 1, nl, 4) != 1) return mrw_err(err, MRW_E_ARG, "the vocabulary cannot encode \"\\n\"");
        t->newline_token = nl[0];
    }
    if (o->feature_cache && !t->vt && !t->wt) {
        char id[160];
        mrw_train_feature_cache_id(wpath, id, sizeof id);
        if (gpu_encodes(t, mi.encoder)) strcat(id, MRW_GPU_CACHE_SUFFIX); /* the GPU encoder's features: their own */
        if ((s = mrw_feature_cache_open(o->feature_cache, id, &t->fcache, err))) return s;
    }
    return from_mm ? setup_other_modalities(t, err) : MRW_OK;
}

/* --device cuda for the ModRWKV stages: what the GPU path does not cover is refused, naming the option (never run
 * on the CPU instead). First what the options alone decide (also in a build without CUDA), then the start model. */
mrw_status mrw_train_gpu_mm_options(const mrw_train_opts *o, int world, mrw_error *err) {
    if ((o->train & MRW_PG_ENCODER) && !(o->train & MRW_PG_ADAPTER))
        return mrw_err(err, MRW_E_UNSUPPORTED, "--device cuda: --train ...,encoder needs the adapter trained too on the "
                       "GPU (--train adapter,encoder or adapter,rwkv,encoder); train this with --device cpu");
    (void)world; /* data parallelism covers the ModRWKV stages too (docs/DISTRIBUTED.md) */
    return MRW_OK;
}


#ifdef MRW_CUDA
/* One modality's adapter on the GPU (on the RWKV trainer's stream), as its configuration adc: v2 (hidden from the
 * file / 4C / --adapter-scale, optional Conv1d E->E k3 s2), v1 vision (the same graph, hidden 2C, other names), v1
 * audio (Conv1d E->2C k3 s2 p2, hidden 2C, no LayerNorm), each with the trained compression in front if any. Without
 * convolutions: rows for every feature row a micro-batch can hold; with: max_items sequences of max_rows feature
 * rows. prefix: NULL, or "m<k>." (modality k's tensor names); set: its host table's index in t->sets (weights, and
 * the moments when the adapter trains); share: NULL (it owns the injected rows, in dtype dt) or the adapter whose
 * rows it shares. */
static mrw_status gpu_adapter_new(trainer *t, const mrw_tadapter_config *adc, int max_items, int max_rows,
                                  const char *prefix, int set, struct mrw_adapter_gpu *share, mrw_cuda_dtype dt,
                                  struct mrw_adapter_gpu **out, int32_t **row_pos, mrw_error *err) {
    const mrw_train_opts *o = t->o;
    const int v1 = adc->kind != MRW_TADAPTER_V2, audio = adc->kind == MRW_TADAPTER_V1_AUDIO;
    const int hidden = v1 ? 2 * t->C : (adc->hidden ? adc->hidden : 4 * t->C);
    mrw_adapter_gpu_config gc = {.E = adc->E, .C = t->C, .hidden = hidden, .ln = !audio, .v1_names = v1,
                                 .compress_k = adc->compress_k, .compress_s = adc->compress_s};
    if (audio) gc.conv_out = 2 * t->C, gc.conv_k = 3, gc.conv_s = 2, gc.conv_p = 2, gc.conv_bias = 1;
    else if (adc->v2_conv) gc.conv_out = adc->E, gc.conv_k = 3, gc.conv_s = 2, gc.conv_p = 0;
    size_t rows = (size_t)max_items * max_rows;
    if (rows > (size_t)(t->B / t->world) * t->maxT) rows = (size_t)(t->B / t->world) * t->maxT; /* (per rank) */
    const int convs = gc.conv_k || gc.compress_k;
    void *st = mrw_rwkv7_gpu_stream(t->gpu);
    mrw_status s = convs ? mrw_adapter_gpu_new_ex(&gc, max_items, max_rows, st, out, err)
                         : mrw_adapter_gpu_new_ex(&gc, (int)rows, 1, st, out, err);
    if (s) return s;
    if (convs) { /* (a feature length too short for the convolutions: such items are skipped when loaded) */
        const int ol = mrw_adapter_gpu_out_len(*out, max_rows);
        rows = (size_t)max_items * (ol > 0 ? ol : 1);
    }
    *row_pos = malloc((rows ? rows : 1) * sizeof(int32_t));
    if (!*row_pos) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    if ((prefix && (s = mrw_adapter_gpu_prefix_names(*out, prefix, err))) ||
        (s = mrw_adapter_gpu_upload(*out, t->sets[set], 0, err)) ||
        ((o->train & MRW_PG_ADAPTER) &&
         (s = mrw_adapter_gpu_moments(*out, 1, t->sets[set], t->opt.m, t->opt.v, t->opt.moff[set], &t->opt.t, err))))
        return s;
    s = share ? mrw_adapter_gpu_share_trainer_buffers(*out, share, err)
              : mrw_adapter_gpu_trainer_buffers(*out, (size_t)(t->B / t->world) * t->maxT, dt, &t->g_inject,
                                                &t->g_dinject, err);
    if (s) return s;
    if (!o->quiet)
        fprintf(stderr, "modrwkv train: ModRWKV %s on the GPU: %s%s adapter (%s%s%d -> %d -> %d, bf16), encoder "
                "features from the %s, %.2f GiB of device memory for the adapter\n",
                o->train & MRW_PG_RWKV ? (o->train & MRW_PG_ADAPTER ? "stage 2 (adapter + RWKV)" : "RWKV")
                                       : "stage 1 (adapter; RWKV frozen)",
                prefix ? prefix : "", audio ? "v1 audio" : v1 ? "v1" : "v2", gc.compress_k ? "compression Conv1d, " : "",
                gc.conv_k ? "Conv1d, " : "", adc->E, hidden, t->C,
                t->vt || t->wt ? "encoder trained on the GPU"
                : t->genc_img || t->genc_aud || t->genc_wavlm ? (t->fcache ? "feature cache / GPU encoder" : "GPU encoder")
                : t->fcache ? "feature cache / CPU encoder" : "CPU encoder",
                mrw_adapter_gpu_bytes(*out) / 1073741824.0);
    return MRW_OK;
}
#endif

#ifdef MRW_CUDA
/* The frozen encoders on the GPU (t->enc_gpu), on the trainer's stream: the image encoder for up to genc_chunk
 * images per forward and the Whisper encoder for up to genc_aud_chunk 30 s clips per forward, with the queue for a
 * micro-batch's media, or WavLM (src/kernels/cuda/wavlm_gpu.h) for one recording at a time. */
static mrw_status gpu_encoders_new(trainer *t, mrw_error *err) {
    void *stream = mrw_rwkv7_gpu_stream(t->gpu);
    mrw_status s;
    /* (data parallel with slice_encode: a rank queues only its B / world samples' media) */
    t->max_pend = (t->slice_encode ? t->B / t->world : t->B) * MRW_DATA_MAX_MEDIA;
    const char *ck = getenv("MRW_TRAIN_GPU_ENCODER_CHUNK"); /* tests: fewer media per forward */
    if (!(t->pend = calloc((size_t)t->max_pend, sizeof *t->pend))) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    if (mrw_mm_modality_of(t->enc, 0) >= 0) {
        t->genc_chunk = t->max_pend < 32 ? t->max_pend : 32;
        if (ck && atoi(ck) > 0 && atoi(ck) < t->genc_chunk) t->genc_chunk = atoi(ck);
        if ((s = mrw_vit_gpu_from_mm(t->enc, t->genc_chunk, stream, &t->genc_img, err))) return s;
        const mrw_vit_config *c = mrw_vit_gpu_config(t->genc_img);
        t->gpix = malloc((size_t)t->genc_chunk * c->channels * c->image_size * c->image_size * sizeof(float));
        t->gout = malloc((size_t)t->genc_chunk * c->n_tokens * c->hidden * sizeof(float));
        if (!t->gpix || !t->gout) return mrw_err(err, MRW_E_NOMEM, "out of memory for the GPU encoder");
        if (!t->o->quiet)
            fprintf(stderr, "modrwkv train: the frozen %s encoder on the GPU (bf16; %d layers, width %d, %d tokens; up to "
                    "%d images per forward, %.2f GiB of device memory)\n", c->family == MRW_VIT_CLIP ? "CLIP" : "SigLIP",
                    c->n_layer, c->hidden, c->n_tokens, t->genc_chunk, mrw_vit_gpu_bytes(t->genc_img) / 1073741824.0);
    }
    if (mrw_mm_modality_of(t->enc, 1) >= 0) {
        /* Whisper: up to 16 clips of 30 s per forward (fewer with MRW_TRAIN_GPU_ENCODER_CHUNK) */
        t->genc_aud_chunk = t->max_pend < 16 ? t->max_pend : 16;
        if (ck && atoi(ck) > 0 && atoi(ck) < t->genc_aud_chunk) t->genc_aud_chunk = atoi(ck);
        s = mrw_whisper_gpu_from_mm_batch(t->enc, t->genc_aud_chunk, stream, &t->genc_aud, err);
        if (!s) {
            const mrw_tfile *f = NULL;
            const char *pre = NULL;
            const mrw_whisper_config *wc = NULL;
            const mrw_vit_config *c = mrw_vit_gpu_config(t->genc_aud);
            if ((s = mrw_mm_whisper_encoder(t->enc, &f, &pre, &wc, err))) return s;
            t->gmel_floats = (size_t)wc->n_mels * mrw_whisper_gpu_frames(t->genc_aud);
            t->gmel = malloc((size_t)t->genc_aud_chunk * t->gmel_floats * sizeof(float));
            t->gaout = malloc((size_t)t->genc_aud_chunk * c->n_tokens * c->hidden * sizeof(float));
            if (!t->gmel || !t->gaout) return mrw_err(err, MRW_E_NOMEM, "out of memory for the GPU encoder");
        }
        if (s == MRW_E_UNSUPPORTED) { /* WavLM */
            if ((s = mrw_wavlm_gpu_from_mm(t->enc, stream, &t->genc_wavlm, err))) return s;
            if (!t->o->quiet)
                fprintf(stderr, "modrwkv train: the frozen WavLM encoder on the GPU (bf16; one recording per forward)\n");
        } else if (s) {
            return s;
        } else if (!t->o->quiet) {
            fprintf(stderr, "modrwkv train: the frozen Whisper encoder on the GPU (bf16; up to %d clips per forward, "
                    "%.2f GiB of device memory)\n", t->genc_aud_chunk, mrw_vit_gpu_bytes(t->genc_aud) / 1073741824.0);
        }
    }
    return MRW_OK;
}
#endif

static mrw_status setup(trainer *t, const mrw_model *start, mrw_error *err) {
    const mrw_train_opts *o = t->o;
    mrw_status s;
    if ((s = check_opts(o, err))) return s;
    t->B = o->batch;
    t->maxT = round_up(o->ctx_len, PAD_MULTIPLE);
    const int multimodal = o->encoder || (o->model && mrw_is_modrwkv_file(o->model));
    if (!multimodal && (o->train & (MRW_PG_ADAPTER | MRW_PG_ENCODER)))
        return mrw_err(err, MRW_E_ARG, "--train adapter/encoder needs a multimodal start: a ModRWKV checkpoint, or "
                                       "an RWKV-7 model with --encoder");
    /* language model */
    mrw_rwkv7_train_config cfg = {0};
    mrw_mm *lm_mm = NULL;
    const mrw_model *src = start;
    if (o->model && !src) {
        if (multimodal && mrw_is_modrwkv_file(o->model)) {
            mrw_mm_params mp = mrw_mm_params_default();
            mp.encoder = o->encoder;
            if ((s = mrw_mm_load(o->model, &mp, &lm_mm, err))) return s;
            src = mrw_mm_model(lm_mm);
        } else {
            return mrw_err(err, MRW_E_ARG, "internal: the RWKV-7 start model was not loaded");
        }
    }
    if (src) {
        mrw_rwkv7_train_config_of(src, &cfg);
    } else {
        cfg.n_layer = o->init_layers;
        cfg.n_embd = o->init_embd;
        cfg.head_size = o->init_embd < 64 ? o->init_embd : 64;
        if (o->init_embd % cfg.head_size) {
            return mrw_err(err, MRW_E_ARG, "--init: the width %d is not a multiple of the head size 64", o->init_embd);
        }
        cfg.vocab = mrw_vocab_size(t->vocab);
        cfg.ffn = 4 * o->init_embd;
        /* LoRA ranks as the reference picks them (RWKV-LM v7): max(32, round(f * C^p / 32) * 32) */
        const double C = o->init_embd;
        int r[4];
        const double f[4] = {1.8, 1.8, 1.3, 0.6}, p[4] = {0.5, 0.5, 0.5, 0.8};
        for (int i = 0; i < 4; i++) {
            r[i] = (int)(round(f[i] * pow(C, p[i]) / 32.0) * 32.0);
            if (r[i] < 32) r[i] = 32;
        }
        cfg.d_w = r[0], cfg.d_a = r[1], cfg.d_v = r[2], cfg.d_g = r[3];
    }
    t->C = cfg.n_embd, t->V = cfg.vocab;
    if (o->device && multimodal && (s = mrw_train_gpu_mm_options(o, t->world, err))) return s;
#ifndef MRW_CUDA
    if (o->device) return mrw_err(err, MRW_E_UNSUPPORTED, "--device cuda: this modrwkv was built without CUDA (make CUDA=1)");
#endif
    if (t->world > 1 && t->B % t->world)
        return mrw_err(err, MRW_E_ARG, "--batch %d is the global micro-batch, split evenly over the %d ranks: give a "
                       "multiple of %d", t->B, t->world, t->world);
    /* on the GPU the CPU trainer only holds the weights (checkpoints, init): no activations for the batch */
    s = mrw_rwkv7_train_new(&cfg, o->device ? 1 : t->B, o->device ? PAD_MULTIPLE : t->maxT, o->threads, &t->lm, err);
    if (!s) {
        mrw_rwkv7_train_init(t->lm, o->seed);
        if (src) s = mrw_rwkv7_train_from_model(t->lm, src, err);
    }
    t->enc = lm_mm; /* its encoder makes the features (setup_multimodal) */
    if (s) return s;
    if (multimodal && (s = setup_multimodal(t, err))) return s;
    t->sets[t->n_sets++] = mrw_rwkv7_train_params(t->lm);
    if (t->ad) t->sets[t->n_sets++] = mrw_tadapter_params(t->ad);
    for (int k = 0; k < t->n_xm; k++) t->sets[t->n_sets++] = mrw_tadapter_params(t->xm[k].ad);
    if (t->vt) t->sets[t->n_sets++] = mrw_vit_train_params(t->vt);
    if (t->wt) t->sets[t->n_sets++] = mrw_whisper_train_params(t->wt);
    /* optimizer */
    mrw_adam_config ac = mrw_adam_config_default();
    ac.weight_decay = o->weight_decay;
    if ((s = mrw_adam_init(&t->opt, &ac, t->sets, t->n_sets, o->train, err))) return s;
    /* data */
    mrw_data_params dp = {.kind = o->data_kind, .root = o->data_root, .vocab = t->vocab, .ctx_len = o->ctx_len,
                          .seed = o->seed, .shuffle = 1, .warn = warn_cb};
    if ((s = mrw_data_open(o->data, o->n_data, &dp, &t->data, err))) return s;
    t->n_records = mrw_data_count(t->data);
    int64_t total = o->steps;
    if (!total) {
        const double per_step = (double)o->batch * o->grad_accum;
        total = (int64_t)ceil(o->epochs * (double)t->n_records / per_step);
        if (total < 1) total = 1;
    }
    t->sched = (mrw_schedule){.kind = o->schedule, .lr = o->lr, .lr_final = o->lr_final, .warmup = o->warmup,
                              .total = total, .decay_frac = o->wsd_decay};
    if ((s = alloc_buffers(t, err))) return s;
    t->options = options_json(o, total);
    if (!t->options) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    /* output */
    if ((s = make_dir(o->out, err))) return s;
    snprintf(t->path_model, sizeof t->path_model, "%s/model.safetensors", o->out);
    snprintf(t->path_resume, sizeof t->path_resume, "%s/resume.safetensors", o->out);
    snprintf(t->path_log, sizeof t->path_log, "%s/train.jsonl", o->out);
    t->st.rng = o->seed;
    if (o->resume) {
        mrw_train_state st;
        if (access(t->path_resume, F_OK) != 0)
            return mrw_err(err, MRW_E_IO, "--resume: %s does not exist (nothing to resume)", t->path_resume);
        if ((s = mrw_ckpt_load_resume(t->path_resume, &t->opt, &st, err))) return s;
        s = check_same_options(st.options, t->options, err);
        free((char *)st.options);
        st.options = NULL;
        if (s) return s;
        t->st = st;
        if ((s = mrw_data_seek(t->data, st.epoch, st.k, err))) return s;
        if (t->rank == 0 && (s = trim_log(t->path_log, st.step, err))) return s;
    } else if (access(t->path_resume, F_OK) == 0) {
        return mrw_err(err, MRW_E_ARG, "%s already holds a training run (resume.safetensors): use --resume to continue "
                                       "it, or another --out", o->out);
    }
#ifdef MRW_CUDA
    if (o->device) {
        /* MRW_TRAIN_GPU_FP32=1: fp32 activations and GEMMs (slow; the tests' exact mode) */
        const char *f32 = getenv("MRW_TRAIN_GPU_FP32");
        const int local = t->world > 1 ? t->denv.local_rank : 0;
        /* stage 1 (RWKV frozen): no RWKV gradients or Adam moments on the device */
        mrw_rwkv7_gpu_opts go = {f32 && *f32 == '1', o->act_ckpt, local, t->ad && !(o->train & MRW_PG_RWKV)};
        /* the rendezvous (rank 0 serves NCCL's id at MASTER_ADDR:MASTER_PORT), then the communicator */
        if (t->world > 1 && (s = mrw_nccl_open(&t->denv, local, &t->nccl, err))) return s;
        if ((s = mrw_rwkv7_gpu_new(&cfg, t->B / t->world, t->maxT, &go, &t->gpu, err)) ||
            (s = mrw_rwkv7_gpu_upload(t->gpu, t->sets[0], err)) ||
            (s = mrw_dp_new(t->gpu, t->nccl, o->zero, &t->dp, err)) ||
            (s = mrw_dp_set_bf16(t->dp, o->allreduce_bf16, err)) ||
            (s = mrw_dp_moments(t->dp, 1, t->sets[0], t->opt.m, t->opt.v, t->opt.moff[0], &t->opt.t, err)))
            return s;
        /* data parallel with frozen encoders: each rank encodes its slice's media only (MRW_TRAIN_ENCODE_ALL=1: every
         * medium on every rank, the earlier way, for comparisons) */
        const char *ea = getenv("MRW_TRAIN_ENCODE_ALL");
        t->slice_encode = t->world > 1 && t->ad && !t->vt && !t->wt && !(ea && *ea == '1');
        if (t->enc_gpu && (s = gpu_encoders_new(t, err))) return s;
        /* the adapters on the trainer's stream: the primary one (it owns the injected rows), then those of the other
         * modalities of a multi-modality model (sharing them) */
        const mrw_cuda_dtype idt = go.fp32 ? MRW_CUDA_F32 : MRW_CUDA_BF16;
        /* (data parallel: each rank holds the items of its B / world samples) */
        if (t->ad && (s = gpu_adapter_new(t, &t->adc, t->max_items / t->world, t->max_rows, NULL, 1, NULL, idt,
                                          &t->agpu, &t->row_pos, err)))
            return s;
        if (t->wt) { /* the Whisper encoder trains on the GPU (whisper_gpu_train.h), on the trainer's stream */
            const mrw_param_set *wps = mrw_whisper_train_params(t->wt);
            t->vt_set = -1;
            for (int i = 0; i < t->n_sets; i++)
                if (t->sets[i] == wps) t->vt_set = i;
            if (t->vt_set < 0) return mrw_err(err, MRW_E_INTERNAL, "the encoder's parameters are not in the optimizer");
            if ((s = mrw_whisper_gpu_train_new(mrw_whisper_train_config(t->wt), t->w_frames, t->max_items / t->world,
                                               go.fp32, mrw_rwkv7_gpu_stream(t->gpu), &t->vgpu, err)) ||
                (s = mrw_vit_gpu_train_upload(t->vgpu, wps, 0, err)) ||
                (s = mrw_vit_gpu_train_moments(t->vgpu, 1, wps, t->opt.m, t->opt.v, t->opt.moff[t->vt_set], &t->opt.t,
                                               err)))
                return s;
            if (!o->quiet) {
                const mrw_whisper_config *wc = mrw_whisper_train_config(t->wt);
                fprintf(stderr, "modrwkv train: the Whisper encoder trains on the GPU (%d layers, width %d, %d frames -> "
                        "%d rows, %s activations, %.2f GiB of device memory for %d clips)\n", wc->n_layers, wc->d_model,
                        t->w_frames, t->w_out, go.fp32 ? "fp32" : "bf16", mrw_vit_gpu_train_bytes(t->vgpu) / 1073741824.0,
                        t->max_items / t->world);
            }
        }
        if (t->vt) { /* the vision encoder trains on the GPU, on the trainer's stream */
            const mrw_param_set *vps = mrw_vit_train_params(t->vt);
            t->vt_set = -1;
            for (int i = 0; i < t->n_sets; i++)
                if (t->sets[i] == vps) t->vt_set = i;
            if (t->vt_set < 0) return mrw_err(err, MRW_E_INTERNAL, "the encoder's parameters are not in the optimizer");
            if ((s = mrw_vit_gpu_train_new(mrw_vit_train_config(t->vt), t->max_items / t->world, go.fp32,
                                           mrw_rwkv7_gpu_stream(t->gpu), &t->vgpu, err)) ||
                (s = mrw_vit_gpu_train_upload(t->vgpu, vps, 0, err)) ||
                (s = mrw_vit_gpu_train_moments(t->vgpu, 1, vps, t->opt.m, t->opt.v, t->opt.moff[t->vt_set], &t->opt.t,
                                               err)))
                return s;
            if (!o->quiet) {
                const mrw_vit_config *vc = mrw_vit_gpu_train_config(t->vgpu);
                fprintf(stderr, "modrwkv train: the %s encoder trains on the GPU (%d layers, width %d, %d tokens, %s "
                        "activations, %.2f GiB of device memory for %d images)\n",
                        vc->family == MRW_VIT_CLIP ? "CLIP" : "SigLIP", vc->n_layer, vc->hidden, vc->n_tokens,
                        go.fp32 ? "fp32" : "bf16", mrw_vit_gpu_train_bytes(t->vgpu) / 1073741824.0,
                        t->max_items / t->world);
            }
        }
        for (int k = 0; k < t->n_xm; k++) {
            xmod *x = &t->xm[k];
            char pre[16];
            snprintf(pre, sizeof pre, "m%d.", x->k);
            if ((s = gpu_adapter_new(t, &x->adc, x->max_items / t->world, x->max_rows, pre, 2 + k, t->agpu, idt,
                                     &x->agpu, &x->row_pos, err)))
                return s;
        }
        if (!o->quiet && t->world > 1)
            fprintf(stderr, "modrwkv train: data parallel on %d GPUs (NCCL %s, %s gradient all-reduce%s): micro-batch "
                    "%d = %d per rank; %.3g GiB of device memory on rank 0 (RWKV Adam moments %.3g GiB)\n", t->world,
                    mrw_nccl_version(t->nccl), o->allreduce_bf16 ? "bf16" : "fp32", o->zero ? ", ZeRO-1" : "", t->B,
                    t->B / t->world,
                    mrw_rwkv7_gpu_bytes(t->gpu) / 1073741824.0, mrw_dp_moment_bytes(t->dp) / 1073741824.0);
        else if (!o->quiet)
            fprintf(stderr, "modrwkv train: on the GPU (%s, %.2f GiB of device memory%s%s%s)\n", go.fp32 ? "fp32" : "bf16",
                    mrw_rwkv7_gpu_bytes(t->gpu) / 1073741824.0, o->act_ckpt ? ", activation checkpointing" : "",
                    o->zero ? ", ZeRO-1 code path" : "", o->allreduce_bf16 ? ", gradients rounded to bf16" : "");
    }
#endif
    if (t->rank != 0) return MRW_OK; /* rank 0 writes the log and the checkpoints */
    t->log = fopen(t->path_log, o->resume ? "ab" : "wb");
    if (!t->log) return mrw_err(err, MRW_E_IO, "%s: %s", t->path_log, strerror(errno));
    return MRW_OK;
}

#ifdef MRW_CUDA
/* The optimizer step on the GPU. Text: mrw_dp_step. ModRWKV: the clip is over every trained tensor at once, as the
 * CPU trainer's (stage 2: the RWKV table's and the adapter's partial sums of squares added, both steps take the norm
 * from that sum); stage 1 steps the adapter alone. */
static mrw_status gpu_step(trainer *t, double lr, double *norm, mrw_error *err) {
    const int trains_ad = t->agpu && (t->o->train & MRW_PG_ADAPTER), trains_rwkv = (t->o->train & MRW_PG_RWKV) != 0;
    if (!trains_ad) return mrw_dp_step(t->dp, &t->opt.cfg, lr, t->o->clip, norm, err);
    /* data parallel: the small tables' gradients (adapters, compression, the encoder) summed over the ranks by a plain
     * all-reduce; the RWKV table's by mrw_dp_sync_sumsq (ZeRO-1: reduce-scatter into the shards). Nothing with one
     * rank (unless --allreduce bf16: then only rounded, as the RWKV table's) */
    mrw_status s;
    size_t gn;
    float *gp = mrw_adapter_gpu_grads(t->agpu, &gn);
    if ((s = mrw_dp_sum_grads(t->dp, gp, gn, err))) return s;
    for (int k = 0; k < t->n_xm; k++) {
        gp = mrw_adapter_gpu_grads(t->xm[k].agpu, &gn);
        if ((s = mrw_dp_sum_grads(t->dp, gp, gn, err))) return s;
    }
    if (t->vgpu) {
        gp = mrw_vit_gpu_train_grads(t->vgpu, &gn);
        if ((s = mrw_dp_sum_grads(t->dp, gp, gn, err))) return s;
    }
    if (!trains_rwkv && !t->n_xm && !t->vgpu)
        return mrw_adapter_gpu_step(t->agpu, &t->opt.cfg, lr, t->o->clip, norm, err);
    /* one clip over every trained tensor: the partial sums of squares of the RWKV table (stage 2) or of the primary
     * adapter, plus those of every other adapter; each step takes the norm and coefficient from that sum */
    double *part;
    if (trains_rwkv) {
        if (!(part = mrw_dp_sync_sumsq(t->dp, err))) return err ? err->code : MRW_E_INTERNAL;
        if ((s = mrw_adapter_gpu_sumsq_add(t->agpu, part, err))) return s;
    } else if (!(part = mrw_adapter_gpu_sumsq_own(t->agpu, err))) {
        return err ? err->code : MRW_E_INTERNAL;
    }
    for (int k = 0; k < t->n_xm; k++)
        if ((s = mrw_adapter_gpu_sumsq_add(t->xm[k].agpu, part, err))) return s;
    if (t->vgpu && (s = mrw_vit_gpu_train_sumsq_add(t->vgpu, part, err))) return s; /* the encoder, in the same clip */
    if ((s = mrw_adapter_gpu_step_part(t->agpu, &t->opt.cfg, lr, t->o->clip, part, trains_rwkv ? NULL : norm, err)))
        return s;
    if (t->vgpu && (s = mrw_vit_gpu_train_step_part(t->vgpu, &t->opt.cfg, lr, t->o->clip, part, NULL, err))) return s;
    for (int k = 0; k < t->n_xm; k++)
        if ((s = mrw_adapter_gpu_step_part(t->xm[k].agpu, &t->opt.cfg, lr, t->o->clip, part, NULL, err))) return s;
    if (!trains_rwkv) return MRW_OK;
    return mrw_dp_step_finish(t->dp, &t->opt.cfg, lr, t->o->clip, norm, err);
}
#endif

/* ------------------------------------------------------------------------------------------- run */

mrw_status mrw_train_run(const mrw_train_opts *opts, const mrw_model *start, const mrw_vocab *vocab, mrw_error *err) {
    mrw_train_opts o = *opts;
    if (o.lr_final < 0) o.lr_final = o.lr / 10;
    trainer t = {.o = &o, .vocab = vocab, .world = 1};
    mrw_status s = MRW_OK;
    if (o.device) { /* WORLD_SIZE > 1 in the environment: one rank of a data-parallel run */
        int distributed = 0;
        if ((s = mrw_dist_env_read(&t.denv, &distributed, err))) return s;
        if (distributed) {
#ifndef MRW_CUDA
            return mrw_err(err, MRW_E_UNSUPPORTED, "WORLD_SIZE=%d: this modrwkv was built without CUDA (make CUDA=1)",
                           t.denv.world);
#endif
            t.rank = t.denv.rank, t.world = t.denv.world;
            if (t.rank != 0) o.quiet = 1, o.progress = 0;
        }
    }
    if (o.zero && !o.device) return mrw_err(err, MRW_E_ARG, "--zero 1 needs --device cuda");
    s = setup(&t, start, err);
    if (s) {
        trainer_free(&t);
        return s;
    }
    const int64_t total = t.sched.total;
    if (!o.quiet)
        fprintf(stderr, "modrwkv train: %" PRId64 " records, %" PRId64 " steps of %d x %d samples, %s schedule, "
                        "lr %g -> %g, %d thread%s\n",
                t.n_records, total, o.batch, o.grad_accum, mrw_schedule_name(o.schedule), o.lr, o.lr_final, o.threads,
                o.threads == 1 ? "" : "s");
    if (!o.quiet && o.resume) fprintf(stderr, "modrwkv train: resumed at step %" PRId64 "\n", t.st.step);
    char label[160] = "train";
    mrw_progress bar;
    const int64_t first = t.st.step; /* the bar (rate, ETA) counts this session's steps */
    mrw_progress_start(&bar, label, (uint64_t)(total - first), "steps", o.progress && total > first);
    const char *kill_at = getenv("MRW_TRAIN_KILL_AFTER_STEP"); /* tests: SIGKILL itself after that step */
    const char *nan_at = getenv("MRW_TRAIN_NAN_AT_STEP");      /* tests: "STEP[,RANK]": a NaN loss there (once) */
    int nan_done = 0;
    const double t_session = mrw_now();
    const double elapsed0 = t.st.elapsed_s;
    float last_loss = NAN;
    int skipped = 0; /* consecutive steps skipped for a non-finite loss (GPU) */
    while (t.st.step < total) {
        const double t0 = mrw_now();
        if (!t.gpu) mrw_adam_zero_grad(&t.opt); /* (on the GPU the host tables only carry the weights) */
#ifdef MRW_CUDA
        if (t.gpu && (s = mrw_rwkv7_gpu_zero_grad(t.gpu, err))) break;
        if (t.agpu && (s = mrw_adapter_gpu_zero_grad(t.agpu, err))) break;
        if (t.vgpu && (s = mrw_vit_gpu_train_zero_grad(t.vgpu, err))) break;
        for (int k = 0; k < t.n_xm && !s; k++)
            if (t.xm[k].agpu) s = mrw_adapter_gpu_zero_grad(t.xm[k].agpu, err);
        if (s) break;
#endif
        double loss_sum = 0;
        int64_t step_tokens = 0;
        for (int a = 0; a < o.grad_accum && !s; a++) {
            float loss = 0;
            s = load_micro_batch(&t, &step_tokens, err);
            if (!s) s = micro_step(&t, 1.0f / (float)o.grad_accum, &loss, err);
            loss_sum += loss;
        }
        if (s) break;
        if (nan_at && !nan_done && atoll(nan_at) == t.st.step + 1) { /* tests: this rank's loss of that step is NaN */
            nan_done = 1;
            if (!strchr(nan_at, ',') || atoi(strchr(nan_at, ',') + 1) == t.rank) loss_sum = NAN;
        }
#ifdef MRW_CUDA
        if (t.world > 1) { /* the global loss: the ranks' target-weighted parts summed; NaN/Inf skips on every rank */
            double x[2] = {loss_sum, isfinite(loss_sum) ? 0.0 : 1.0};
            if ((s = mrw_dp_sum_host(t.dp, x, 2, err))) break;
            loss_sum = x[1] > 0 ? NAN : x[0];
        }
#endif
        const double loss = loss_sum / o.grad_accum;
        if (!isfinite(loss) && t.gpu && ++skipped <= 10) {
            fprintf(stderr, "modrwkv train: warning: the loss is %g at step %" PRId64 ": step skipped\n", loss,
                    t.st.step + 1);
            continue;
        }
        skipped = 0;
        if (!isfinite(loss)) {
            s = mrw_err(err, MRW_E_ARG, "the loss is %g at step %" PRId64 ": lower --lr (the last checkpoint is intact)",
                        loss, t.st.step + 1);
            break;
        }
        const double lr = mrw_schedule_lr(&t.sched, t.st.step);
        double norm = 0;
#ifdef MRW_CUDA
        if (t.gpu) {
            if ((s = gpu_step(&t, lr, &norm, err))) break;
        } else
#endif
        {
            norm = mrw_clip_grad_norm(&t.opt, o.clip);
            mrw_adam_step(&t.opt, lr);
        }
        t.st.step++;
        t.st.tokens += step_tokens;
        mrw_data_tell(t.data, &t.st.epoch, &t.st.k);
        const double now = mrw_now(), dt = now - t0;
        t.st.elapsed_s = elapsed0 + (now - t_session);
        const double epoch = (double)t.st.epoch + (t.n_records ? (double)t.st.k / (double)t.n_records : 0);
        if (t.log) fprintf(t.log,
                "{\"step\":%" PRId64 ",\"epoch\":%.6f,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.6f,\"tokens\":%" PRId64
                ",\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f}\n",
                t.st.step, epoch, loss, lr, norm, t.st.tokens, dt > 0 ? (double)step_tokens / dt : 0.0,
                t.st.elapsed_s);
        if (t.log) fflush(t.log);
        last_loss = (float)loss;
        snprintf(label, sizeof label, "train loss %.4f lr %.2e %.0f tok/s", loss, lr,
                 dt > 0 ? (double)step_tokens / dt : 0.0);
        mrw_progress_update(&bar, (uint64_t)(t.st.step - first));
        if ((o.save_every > 0 && t.st.step % o.save_every == 0) || t.st.step == total) {
            if ((s = save(&t, err))) break;
        }
        if (kill_at && atoll(kill_at) == t.st.step && t.rank == 0) { /* (data parallel: the launcher stops the rest) */
            fflush(NULL);
            kill(getpid(), SIGKILL);
        }
    }
    const char *ec = getenv("MRW_TRAIN_ENCODE_COUNT"); /* tests: what this rank's frozen encoders did */
    if (!s && ec && *ec == '1')
        fprintf(stderr, "modrwkv train: rank %d of %d: %" PRId64 " media encoded, %" PRId64 " read from the feature cache, "
                "%" PRId64 " checked for other ranks, %" PRId64 " feature-cache entries written; %.3f s loading "
                "micro-batches, %.3f s of it in the GPU encoders' queue\n", t.rank, t.world, t.n_encoded, t.n_cached,
                t.n_checked, t.n_written, t.t_load, t.t_genc);
    if (!s) {
        if (total > first) mrw_progress_finish(&bar);
        if (!o.quiet)
            fprintf(stderr, "modrwkv train: done: %" PRId64 " steps, last loss %.4f, %" PRId64 " tokens, %.1f s; wrote %s\n",
                    t.st.step, last_loss, t.st.tokens, t.st.elapsed_s, t.path_model);
    } else if (bar.tty && o.progress) {
        fputc('\n', stderr);
    }
    trainer_free(&t);
    return s;
}
