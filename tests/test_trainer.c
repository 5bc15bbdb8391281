/* The trainer: micro-batch padding and splicing, and one full training step of mrw_train_run (the code behind
 * `modrwkv train`: data reader, splicing, padding, encoder/adapter/RWKV-7 forward and backward, clipping, Adam)
 * against the same step in PyTorch (tests/fixtures/train_step, tests/reference/make_train_step_fixtures.py):
 * text, ModRWKV stage 1 and 2, the SigLIP encoder stage and the Whisper encoder stage. */
#include "test.h"

#include <unistd.h>

#include "formats/tensorfile.h"
#include "train/trainer.h"

#define FIX "tests/fixtures/train_step/"

static void padding(void) {
    const int32_t t0[3] = {5, 6, 7}, l0[3] = {6, 7, MRW_IGNORE};
    const int32_t t1[17] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
    const int32_t l1[17] = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, MRW_IGNORE};
    const int32_t *tk[2] = {t0, t1}, *lb[2] = {l0, l1};
    int n[2] = {3, 17};
    int32_t tok[64], tgt[64];
    CHECK(mrw_train_pad_batch(tk, lb, n, 1, tok, tgt) == 16);
    CHECK(tok[2] == 7 && tok[3] == 0 && tok[15] == 0 && tgt[1] == 7 && tgt[2] == MRW_IGNORE && tgt[3] == MRW_IGNORE);
    CHECK(mrw_train_pad_batch(tk, lb, n, 2, tok, tgt) == 32);
    CHECK(tok[31] == 0 && tok[32] == 1 && tok[48] == 17 && tok[49] == 0 && tgt[47] == 17 && tgt[48] == MRW_IGNORE);
}

/* Token-by-token layout of both splicing modes (v2's is the one `modrwkv chat` writes for an image). */
static void splicing(void) {
    /* text: 10 tokens, markers before token 3 (twice: two images side by side) and before token 7 */
    int32_t tokens[10], labels[10];
    for (int i = 0; i < 10; i++) tokens[i] = 100 + i, labels[i] = i >= 5 && i < 9 ? 101 + i : MRW_IGNORE;
    mrw_data_sample s = {.tokens = tokens, .labels = labels, .n = 10, .n_media = 3, .file = "x", .line = 1};
    s.media_pos[0] = 3, s.media_pos[1] = 3, s.media_pos[2] = 7;
    s.media_target[0] = s.media_target[1] = MRW_IGNORE, s.media_target[2] = 107;
    int32_t tk[64], lb[64];
    int at[3];
    const int M = 2, n = mrw_train_splice(&s, M, 0, 11, 64, tk, lb, at);
    CHECK(n == 10 + 3 * (M + 3));
    /* 100 101 102 | S P P E NL | S P P E NL | 103 104 105 106 | S P P E NL | 107 108 109 */
    static const int32_t want_tk[25] = {100, 101, 102, 65530, 65532, 65532, 65531, 11, 65530, 65532, 65532, 65531, 11,
                                        103, 104, 105, 106, 65530, 65532, 65532, 65531, 11, 107, 108, 109};
    const int I = MRW_IGNORE;
    static int32_t want_lb[25];
    const int32_t wl[25] = {I, I, I, I, I, I, I, I, I, I, I, I, I, I, I, 106, I, I, I, I, I, 107, 108, 109, I};
    memcpy(want_lb, wl, sizeof wl);
    CHECK(n == 25 && !memcmp(tk, want_tk, sizeof want_tk) && !memcmp(lb, want_lb, sizeof want_lb));
    CHECK(at[0] == 4 && at[1] == 9 && at[2] == 18);
    /* prepend: all rows in front; the last predicts tokens[0] only when the marker was at 0 */
    s.n_media = 1, s.media_pos[0] = 0, s.media_target[0] = 100;
    CHECK(mrw_train_splice(&s, 3, 1, 11, 64, tk, lb, at) == 13);
    CHECK(at[0] == 0 && tk[0] == 0 && lb[0] == I && lb[2] == 100 && tk[3] == 100 && lb[8] == 106);
    s.media_pos[0] = 4;
    CHECK(mrw_train_splice(&s, 3, 1, 11, 64, tk, lb, at) == 13 && lb[2] == I);
    /* truncation keeps the features and cuts the text; no room at all is -1 */
    CHECK(mrw_train_splice(&s, 3, 1, 11, 8, tk, lb, at) == 8 && tk[7] == 104);
    CHECK(mrw_train_splice(&s, 8, 1, 11, 8, tk, lb, at) == -1);
    s.media_pos[0] = 7;
    CHECK(mrw_train_splice(&s, 3, 0, 11, 12, tk, lb, at) == -1); /* the marker falls in the cut text */
}

static double read_loss_from_log(const char *path, double *norm) {
    size_t len;
    unsigned char *b = t_read_file(path, &len);
    double loss = NAN;
    if (b) {
        const char *l = strstr((char *)b, "\"loss\":"), *g = strstr((char *)b, "\"grad_norm\":");
        if (l) loss = atof(l + 7);
        if (g) *norm = atof(g + 12);
    }
    free(b);
    return loss;
}

/* Every "<prefix>updated.<name>" of the expected file against tensor <name> of the trained checkpoint.
 * Tolerance per tensor: max |C - torch| <= 1e-5 * max |torch| + 1e-2 * lr; at the few elements listed in
 * "<prefix>illcond.<name>" (clipped gradient nonzero but below 1e-7) up to 2 * lr: there Adam's first step
 * g / (|g| + eps) turns f32-vs-f64 rounding of an almost-zero gradient into a visible part of one step. */
static int compare_updated(const char *label, const char *got_path, const char *want_path, const char *prefix, double lr,
                           int *n_want) {
    mrw_error err = {0};
    mrw_tfile *got = NULL, *want = NULL;
    CHECK_OK(mrw_tfile_open(got_path, &got, &err), &err);
    CHECK_OK(mrw_tfile_open(want_path, &want, &err), &err);
    int compared = 0, n_ill = 0;
    const size_t pl = strlen(prefix) + 8;
    double worst = 0;
    const char *worst_name = "";
    *n_want = 0;
    for (int i = 0; got && want && i < mrw_tfile_count(want); i++) {
        const mrw_tensor_info *w = mrw_tfile_tensor(want, i);
        if (strncmp(w->name, prefix, strlen(prefix)) || strncmp(w->name + strlen(prefix), "updated.", 8)) continue;
        const char *name = w->name + pl;
        (*n_want)++;
        if (strstr(name, "blocks.0.att.v") && strlen(strstr(name, "blocks.0.att.v")) == strlen("blocks.0.att.v0")) continue;
        const mrw_tensor_info *g = mrw_tfile_find(got, name);
        CHECKF(g != NULL, "the trained checkpoint lacks %s", name);
        if (!g || g->nbytes != w->nbytes || g->dtype != MRW_DT_F32) {
            CHECKF(0, "%s: dtype/size", name);
            continue;
        }
        const float *a = g->data, *b = w->data;
        const size_t n = w->nbytes / 4;
        char ill_name[300];
        snprintf(ill_name, sizeof ill_name, "%sillcond.%s", prefix, name);
        const mrw_tensor_info *ill = mrw_tfile_find(want, ill_name);
        uint8_t *skip = calloc(n, 1);
        for (int64_t j = 0; ill && skip && j < mrw_tensor_numel(ill); j++) {
            const int32_t k = ((const int32_t *)ill->data)[j];
            if (k >= 0 && (size_t)k < n) {
                skip[k] = 1;
                n_ill++;
                CHECKF(fabs((double)a[k] - b[k]) <= 2 * lr, "%s[%d]: ill-conditioned element off by more than 2 lr", name, k);
            }
        }
        double md = 0, mx = 1e-30;
        for (size_t j = 0; j < n; j++) {
            if (!skip || !skip[j]) md = fmax(md, fabs((double)a[j] - b[j]));
            mx = fmax(mx, fabs((double)b[j]));
        }
        free(skip);
        if (md / mx > worst) worst = md / mx, worst_name = name;
        CHECKF(md <= 1e-5 * mx + 1e-2 * lr, "%s: max |C - torch| = %.3g, max |torch| = %.3g", name, md, mx);
        compared++;
    }
    fprintf(stderr, "%s: %d updated tensors compared; worst max|diff|/max|w| %.3g (%s); %d ill-conditioned elements\n",
            label, compared, worst, worst_name, n_ill);
    mrw_tfile_close(got), mrw_tfile_close(want);
    return compared;
}

static void one_step_vs_torch(void) {
    char dir[] = "/tmp/mrw_trainer_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0); return; }
    mrw_error err = {0};
    mrw_model *start = NULL;
    mrw_load_params lp = mrw_load_params_default();
    CHECK_OK(mrw_model_load(FIX "model.safetensors", &lp, &start, &err), &err);
    mrw_vocab *vocab = mrw_vocab_new_bytes();
    mrw_train_opts o;
    mrw_train_opts_default(&o);
    o.model = FIX "model.safetensors";
    o.data[o.n_data++] = FIX "data.jsonl";
    o.batch = 2, o.grad_accum = 2, o.ctx_len = 64;
    o.lr = 1e-3, o.lr_final = 1e-3, o.schedule = MRW_SCHED_CONSTANT, o.warmup = 0, o.steps = 1;
    o.clip = 1.0, o.seed = 3, o.threads = 2;
    o.out = dir, o.progress = 0, o.quiet = 1;
    if (start) CHECK_OK(mrw_train_run(&o, start, vocab, &err), &err);
    char path[256];
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    double norm = NAN, loss = read_loss_from_log(path, &norm);
    float *want_loss = NULL, *want_norm = NULL;
    size_t n;
    CHECK_OK(mrw_read_tensor_f32(FIX "expected.safetensors", "loss", &want_loss, &n, NULL, NULL, &err), &err);
    CHECK_OK(mrw_read_tensor_f32(FIX "expected.safetensors", "grad_norm", &want_norm, &n, NULL, NULL, &err), &err);
    if (want_loss && want_norm) {
        fprintf(stderr, "loss %.6f (torch %.6f), grad norm %.6f (torch %.6f)\n", loss, want_loss[0], norm, want_norm[0]);
        CHECK(fabs(loss - want_loss[0]) <= 1e-5 * want_loss[0]);
        CHECK(fabs(norm - want_norm[0]) <= 1e-5 * want_norm[0] + 1e-6);
        CHECK(want_norm[0] > 1.0f); /* the clip was active */
    }
    free(want_loss), free(want_norm);
    /* every updated parameter (compare_updated states the tolerance) */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int n_want = 0, compared = compare_updated("text", path, FIX "expected.safetensors", "", o.lr, &n_want);
    CHECK(n_want > 60 && compared == n_want - 3);
    mrw_vocab_free(vocab);
    mrw_model_free(start);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

/* The multimodal step from a ModRWKV bundle with a v2 adapter, against PyTorch: stage 2 (adapter + RWKV) and
 * stage 1 (adapter; RWKV frozen) with the features from the cache (the fixture's), and stage 3, the encoder
 * stage (SigLIP + adapter + RWKV: the features come from the training ViT, pixels from the PNGs). */
static void multimodal_step_vs_torch(int stage) {
    char dir[] = "/tmp/mrw_trainer_mm_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0); return; }
    mrw_error err = {0};
    char cache[256], id[128], path[256];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    mrw_train_feature_cache_id(FIX "mm_model.safetensors", id, sizeof id);
    mrw_feature_cache *fc = NULL;
    CHECK_OK(mrw_feature_cache_open(cache, id, &fc, &err), &err);
    static const char *images[2] = {"image_a.png", "image_b.png"};
    for (int i = 0; fc && i < 2; i++) {
        char name[64];
        snprintf(name, sizeof name, "features.%s", images[i]);
        float *x = NULL;
        size_t n = 0;
        CHECK_OK(mrw_read_tensor_f32(FIX "mm_expected.safetensors", name, &x, &n, NULL, NULL, &err), &err);
        snprintf(path, sizeof path, FIX "%s", images[i]);
        if (x) CHECK_OK(mrw_feature_cache_put(fc, path, x, 16, 48, &err), &err);
        free(x);
    }
    mrw_feature_cache_free(fc);
    mrw_vocab *vocab = mrw_vocab_new_bytes();
    mrw_train_opts o;
    mrw_train_opts_default(&o);
    o.model = FIX "mm_model.safetensors";
    o.data[o.n_data++] = FIX "mm_data.jsonl";
    o.feature_cache = stage == 3 ? NULL : cache;
    o.train = stage == 3 ? MRW_PG_RWKV | MRW_PG_ADAPTER | MRW_PG_ENCODER
              : stage == 2 ? MRW_PG_RWKV | MRW_PG_ADAPTER : MRW_PG_ADAPTER;
    o.batch = 2, o.grad_accum = 1, o.ctx_len = 64;
    o.lr = 1e-3, o.lr_final = 1e-3, o.schedule = MRW_SCHED_CONSTANT, o.warmup = 0, o.steps = 1;
    o.clip = 1.0, o.seed = 5, o.threads = 2;
    o.out = dir, o.progress = 0, o.quiet = 1;
    CHECK_OK(mrw_train_run(&o, NULL, vocab, &err), &err);
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    double norm = NAN, loss = read_loss_from_log(path, &norm);
    char key[32];
    float *want = NULL;
    size_t n;
    snprintf(key, sizeof key, "s%d.loss", stage);
    CHECK_OK(mrw_read_tensor_f32(FIX "mm_expected.safetensors", key, &want, &n, NULL, NULL, &err), &err);
    if (want) {
        fprintf(stderr, "multimodal stage %d: loss %.6f (torch %.6f)", stage, loss, want[0]);
        CHECK(fabs(loss - want[0]) <= 1e-5 * want[0]);
    }
    free(want);
    snprintf(key, sizeof key, "s%d.grad_norm", stage);
    CHECK_OK(mrw_read_tensor_f32(FIX "mm_expected.safetensors", key, &want, &n, NULL, NULL, &err), &err);
    if (want) {
        fprintf(stderr, ", grad norm %.6f (torch %.6f)\n", norm, want[0]);
        CHECK(fabs(norm - want[0]) <= 1e-5 * want[0] + 1e-6);
    }
    free(want);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(key, sizeof key, "s%d.", stage);
    int n_want = 0, compared = compare_updated(key, path, FIX "mm_expected.safetensors", key, o.lr, &n_want);
    if (stage == 3) CHECK(n_want > 100 && compared == n_want - 3);
    else CHECK(stage == 2 ? (n_want > 60 && compared == n_want - 3) : (n_want == 7 && compared == 7));
    if (stage == 1) {
        /* the frozen RWKV is bit for bit the start's */
        float *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK_OK(mrw_read_tensor_f32(path, "llm.blocks.1.att.key.weight", &a, &na, NULL, NULL, &err), &err);
        CHECK_OK(mrw_read_tensor_f32(FIX "mm_model.safetensors", "llm.blocks.1.att.key.weight", &b, &nb, NULL, NULL, &err), &err);
        CHECK(a && b && na == nb && !memcmp(a, b, na * sizeof(float)));
        free(a), free(b);
    }
    mrw_vocab_free(vocab);
    char cmd[300];
    if (getenv("KEEP")) fprintf(stderr, "kept %s\n", dir); else snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

/* The Whisper encoder stage (Whisper + v1 audio adapter + RWKV, -b 1 --grad-accum 2) against PyTorch. */
static void whisper_step_vs_torch(void) {
    char dir[] = "/tmp/mrw_trainer_asr_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0); return; }
    mrw_error err = {0};
    char path[256];
    mrw_vocab *vocab = mrw_vocab_new_bytes();
    mrw_train_opts o;
    mrw_train_opts_default(&o);
    o.model = FIX "asr_model.safetensors";
    o.data[o.n_data++] = FIX "asr_data.jsonl";
    o.train = MRW_PG_RWKV | MRW_PG_ADAPTER | MRW_PG_ENCODER;
    o.batch = 1, o.grad_accum = 2, o.ctx_len = 64;
    o.lr = 1e-3, o.lr_final = 1e-3, o.schedule = MRW_SCHED_CONSTANT, o.warmup = 0, o.steps = 1;
    o.clip = 1.0, o.seed = 5, o.threads = 2;
    o.out = dir, o.progress = 0, o.quiet = 1;
    CHECK_OK(mrw_train_run(&o, NULL, vocab, &err), &err);
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    double norm = NAN, loss = read_loss_from_log(path, &norm);
    float *want = NULL;
    size_t n;
    CHECK_OK(mrw_read_tensor_f32(FIX "asr_expected.safetensors", "loss", &want, &n, NULL, NULL, &err), &err);
    if (want) {
        fprintf(stderr, "whisper encoder stage: loss %.6f (torch %.6f)", loss, want[0]);
        CHECK(fabs(loss - want[0]) <= 1e-5 * want[0]);
    }
    free(want);
    CHECK_OK(mrw_read_tensor_f32(FIX "asr_expected.safetensors", "grad_norm", &want, &n, NULL, NULL, &err), &err);
    if (want) {
        fprintf(stderr, ", grad norm %.6f (torch %.6f)\n", norm, want[0]);
        CHECK(fabs(norm - want[0]) <= 1e-5 * want[0] + 1e-6);
    }
    free(want);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int n_want = 0, compared = compare_updated("whisper", path, FIX "asr_expected.safetensors", "", o.lr, &n_want);
    CHECK(n_want > 90 && compared == n_want - 3);
    mrw_vocab_free(vocab);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

int main(void) {
    padding();
    splicing();
    one_step_vs_torch();
    multimodal_step_vs_torch(2);
    multimodal_step_vs_torch(1);
    multimodal_step_vs_torch(3);
    whisper_step_vs_torch();
    TEST_MAIN_END();
}
