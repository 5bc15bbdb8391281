/* The whole ModRWKV pipeline against the PyTorch reference of ../shared/reference/modrwkv.md
 * (tests/reference/modrwkv_ref.py; fixtures and goldens by tests/reference/make_modrwkv_fixtures.py):
 * media -> preprocessing -> encoder -> [compression] -> adapter -> splice -> RWKV-7 logits, for v1 vision,
 * v1 audio and v2 (two images into <|image_pad|> runs) checkpoints, compression (3,2), (4,3), (5,4), the
 * intermediate stages, bundles (one file, no --encoder) and the errors of bad inputs.
 *
 * Tolerance: max|Δlogit| <= 1e-3, the reference's own float32-vs-float64 spread being 7e-5 (README of the
 * fixtures); measured ~5e-6 with an exact context. Intermediate stages: 1e-4 relative. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "modrwkv.h"
#include "test.h"

#define FIX "tests/fixtures/modrwkv/"

static mrw_tfile *golden;

static const float *G(const char *name, int64_t *n) {
    const mrw_tensor_info *t = mrw_tfile_find(golden, name);
    if (!t) {
        fprintf(stderr, "golden %s missing\n", name);
        exit(1);
    }
    if (n) *n = mrw_tensor_numel(t);
    return t->data;
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static double max_abs(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static mrw_vocab *world_vocab(void) {
    char path[512];
    t_path(path, sizeof path, mrw_shared_dir(), "assets/rwkv_vocab_v20230424.txt");
    mrw_vocab *v = NULL;
    mrw_error err = {0};
    CHECK_OK(mrw_vocab_load(path, &v, &err), &err);
    return v;
}

typedef struct {
    const char *name, *model, *encoder, *images[3], *audio, *text, *compress_w, *golden;
    int ck, cs, cols; /* cols: golden holds only the vocabulary ids in v2.logits_cols */
} pipeline_case;

static const pipeline_case k_cases[] = {
    {"v1 vision", "v1_vision/rwkv-0.pth", "siglip", {"media/image_a.png"}, NULL, "\x16User: What is this?\x17\x16" "Assistant:",
     NULL, "v1v.a.logits_last", 0, 0, 0},
    {"v1 vision, no resize", "v1_vision/rwkv-0.pth", "siglip", {"media/image_32.png"}, NULL,
     "\x16User: What is this?\x17\x16" "Assistant:", NULL, "v1v.i32.logits_last", 0, 0, 0},
    {"v1 vision, compress 3,2", "v1_vision/rwkv-0.pth", "siglip", {"media/image_a.png"}, NULL,
     "\x16User: What is this?\x17\x16" "Assistant:", "compress/k3s2.safetensors", "v1v.compress_k3s2.logits_last", 3, 2, 0},
    {"v1 vision, compress 4,3", "v1_vision/rwkv-0.pth", "siglip", {"media/image_a.png"}, NULL,
     "\x16User: What is this?\x17\x16" "Assistant:", "compress/k4s3.safetensors", "v1v.compress_k4s3.logits_last", 4, 3, 0},
    {"v1 vision, compress 5,4", "v1_vision/rwkv-0.pth", "siglip", {"media/image_a.png"}, NULL,
     "\x16User: What is this?\x17\x16" "Assistant:", "compress/k5s4.safetensors", "v1v.compress_k5s4.logits_last", 5, 4, 0},
    {"v1 audio (ASR prompt)", "v1_audio/rwkv-0.pth", "whisper", {NULL}, "media/speech.wav", "\x16\x41ssistant:", NULL,
     "v1a.logits_last", 0, 0, 0},
};

static void run_case(const pipeline_case *c, mrw_vocab *world, const char *bundle_out) {
    char model[512], enc[512], cw[512], media[512];
    snprintf(model, sizeof model, FIX "%s", c->model);
    snprintf(enc, sizeof enc, FIX "%s", c->encoder);
    mrw_mm_params p = mrw_mm_params_default();
    p.encoder = enc;
    if (c->compress_w) {
        snprintf(cw, sizeof cw, FIX "%s", c->compress_w);
        p.compress_weights = cw;
        p.compress_k = c->ck;
        p.compress_s = c->cs;
    }
    mrw_error err = {0};
    mrw_mm *mm = NULL;
    CHECK_OK(mrw_mm_load(model, &p, &mm, &err), &err);
    if (!mm) return;
    if (bundle_out) { /* the same case through a bundle, loaded with nothing else */
        CHECK_OK(mrw_mm_save(mm, bundle_out, 0, &err), &err);
        mrw_mm_free(mm);
        mm = NULL;
        CHECK_OK(mrw_mm_load(bundle_out, NULL, &mm, &err), &err);
        if (!mm) return;
    }
    const mrw_model *lm = mrw_mm_model(mm);
    const int V = mrw_model_get_info(lm).n_vocab;
    mrw_features f[3] = {{0}};
    int nf = 0;
    for (int i = 0; i < 3 && c->images[i]; i++, nf++) {
        snprintf(media, sizeof media, FIX "%s", c->images[i]);
        CHECK_OK(mrw_mm_encode_image(mm, media, 2, &f[i], NULL, &err), &err);
    }
    if (c->audio) {
        snprintf(media, sizeof media, FIX "%s", c->audio);
        CHECK_OK(mrw_mm_encode_audio(mm, media, 2, &f[nf++], NULL, &err), &err);
    }
    mrw_vocab *bytes = mrw_vocab_new_bytes();
    const mrw_vocab *v = V == 256 ? bytes : world;
    int32_t ids[512];
    int64_t n = mrw_tokenize_ex(v, c->text, strlen(c->text), ids, 512, MRW_TOKENIZE_SPECIAL);
    CHECK(n > 0 && n <= 512);
    mrw_context_params cp = mrw_context_params_default();
    cp.exact = 1; /* the checkpoints are bf16: keep activations f32 to compare at fp32 precision */
    mrw_context *ctx = NULL;
    CHECK_OK(mrw_context_new(lm, &cp, &ctx, &err), &err);
    mrw_state *st = mrw_state_new(lm);
    float *logits = malloc((size_t)V * sizeof *logits);
    CHECK_OK(mrw_mm_eval(ctx, st, mm, f, nf, ids, (int)n, MRW_LOGITS_LAST, logits, &err), &err);
    int64_t gn;
    const float *want = G(c->golden, &gn);
    CHECK(gn == V);
    double d = max_diff(logits, want, V);
    fprintf(stderr, "  %-28s%s max|Δlogit| %.3g (max|logit| %.3g)\n", c->name, bundle_out ? " (bundle)" : "", d,
            max_abs(want, V));
    CHECKF(d <= 1e-3, "%s: max|Δ| %g", c->name, d);
    free(logits);
    mrw_state_free(st);
    mrw_context_free(ctx);
    for (int i = 0; i < nf; i++) mrw_features_free(&f[i]);
    mrw_vocab_free(bytes);
    mrw_mm_free(mm);
}

/* v2: two images into <|image_pad|> runs; the golden keeps every vocabulary id of the last position. */
static void v2_case(mrw_vocab *world, const char *bundle_out) {
    mrw_error err = {0};
    mrw_mm_params p = mrw_mm_params_default();
    p.encoder = FIX "siglip"; /* config.json and processor only: the weights are the checkpoint's */
    mrw_mm *mm = NULL;
    CHECK_OK(mrw_mm_load(FIX "v2/rwkv-0.pth", &p, &mm, &err), &err);
    if (!mm) return;
    if (bundle_out) {
        CHECK_OK(mrw_mm_save(mm, bundle_out, 0, &err), &err);
        mrw_mm_free(mm);
        mm = NULL;
        CHECK_OK(mrw_mm_load(bundle_out, NULL, &mm, &err), &err);
        if (!mm) return;
    }
    mrw_mm_info info = mrw_mm_get_info(mm);
    CHECK(info.adapter_version == 2 && info.splice == MRW_SPLICE_PLACEHOLDER && info.encoder == MRW_ENC_SIGLIP);
    mrw_features f[2] = {{0}};
    CHECK_OK(mrw_mm_encode_image(mm, FIX "media/image_a.png", 2, &f[0], NULL, &err), &err);
    CHECK_OK(mrw_mm_encode_image(mm, FIX "media/image_b.png", 2, &f[1], NULL, &err), &err);
    int64_t n;
    const int32_t *toks = (const int32_t *)G("v2.two_images.tokens", &n);
    const mrw_model *lm = mrw_mm_model(mm);
    mrw_context_params cp = mrw_context_params_default();
    cp.exact = 1;
    mrw_context *ctx = NULL;
    CHECK_OK(mrw_context_new(lm, &cp, &ctx, &err), &err);
    mrw_state *st = mrw_state_new(lm);
    float *logits = malloc(65536 * sizeof *logits);
    CHECK_OK(mrw_mm_eval(ctx, st, mm, f, 2, toks, (int)n, MRW_LOGITS_LAST, logits, &err), &err);
    const float *want = G("v2.two_images.logits_last", NULL);
    double d = max_diff(logits, want, 65536);
    fprintf(stderr, "  %-28s%s max|Δlogit| %.3g\n", "v2 two images", bundle_out ? " (bundle)" : "", d);
    CHECKF(d <= 1e-3, "v2: max|Δ| %g", d);
    /* the text tokenizer with specials produces the same ids as the golden prompt */
    const char *bl = "<|vision_start|><|image_pad|><|image_pad|><|image_pad|><|image_pad|><|image_pad|><|image_pad|>"
                     "<|image_pad|><|vision_end|>\n";
    char text[1024];
    snprintf(text, sizeof text, "\x16User: %s%sCompare the two pictures.\x17\x16\x41ssistant:", bl, bl);
    int32_t ids[256];
    int64_t m = mrw_tokenize_ex(world, text, strlen(text), ids, 256, MRW_TOKENIZE_SPECIAL);
    (void)m;
    /* errors: more placeholders than images, wrong run length, too many images */
    mrw_state_reset(st);
    CHECK(mrw_mm_eval(ctx, st, mm, f, 1, toks, (int)n, MRW_LOGITS_LAST, logits, &err) == MRW_E_ARG);
    CHECK(strstr(err.msg, "<|image_pad|>") != NULL);
    int32_t *bad = malloc((size_t)n * sizeof *bad);
    memcpy(bad, toks, (size_t)n * sizeof *bad);
    for (int i = 0; i < n; i++)
        if (bad[i] == 65532) { bad[i] = 65531; break; } /* one placeholder fewer in the first run */
    CHECK(mrw_mm_eval(ctx, st, mm, f, 2, bad, (int)n, MRW_LOGITS_LAST, logits, &err) == MRW_E_ARG);
    mrw_features four[4] = {f[0], f[1], f[0], f[1]};
    CHECK(mrw_mm_eval(ctx, st, mm, four, 4, toks, (int)n, MRW_LOGITS_LAST, logits, &err) == MRW_E_ARG);
    CHECK(strstr(err.msg, "at most 3") != NULL);
    free(bad);
    free(logits);
    mrw_state_free(st);
    mrw_context_free(ctx);
    mrw_features_free(&f[0]);
    mrw_features_free(&f[1]);
    mrw_mm_free(mm);
}

/* Each stage of the v1 pipelines against the reference's intermediate goldens. */
static void stages(void) {
    mrw_error err = {0};
    mrw_mm_params p = mrw_mm_params_default();
    p.encoder = FIX "siglip";
    mrw_mm *mm = NULL;
    CHECK_OK(mrw_mm_load(FIX "v1_vision/rwkv-0.pth", &p, &mm, &err), &err);
    if (mm) {
        mrw_features f = {0}, enc = {0};
        CHECK_OK(mrw_mm_encode_image(mm, FIX "media/image_a.png", 1, &f, &enc, &err), &err);
        int64_t n;
        const float *ge = G("v1v.a.encoder", &n);
        CHECK(n == (int64_t)enc.n * enc.dim);
        CHECKF(max_diff(enc.rows, ge, n) <= 1e-4 * max_abs(ge, n), "siglip encoder: %g", max_diff(enc.rows, ge, n));
        const float *ga = G("v1v.a.adapter", &n);
        CHECK(n == (int64_t)f.n * f.dim);
        CHECKF(max_diff(f.rows, ga, n) <= 1e-4 * max_abs(ga, n), "v1 vision adapter: %g", max_diff(f.rows, ga, n));
        /* features file round trip */
        char path[] = "/tmp/mrw_feats_XXXXXX";
        close(mkstemp(path));
        CHECK_OK(mrw_features_save(path, &enc, &f, &err), &err);
        mrw_tfile *t = NULL;
        CHECK_OK(mrw_tfile_open(path, &t, &err), &err);
        if (t) {
            const mrw_tensor_info *a = mrw_tfile_find(t, "last_hidden_state"), *b = mrw_tfile_find(t, "features");
            CHECK(a && b && a->shape[0] == enc.n && b->shape[1] == f.dim && !memcmp(b->data, f.rows, b->nbytes));
            mrw_tfile_close(t);
        }
        unlink(path);
        mrw_features_free(&f);
        mrw_features_free(&enc);
        /* an image to an audio model and the reverse are refused */
        CHECK(mrw_mm_encode_audio(mm, FIX "media/speech.wav", 1, &f, NULL, &err) == MRW_E_ARG);
        mrw_mm_free(mm);
    }
    p.encoder = FIX "whisper";
    CHECK_OK(mrw_mm_load(FIX "v1_audio/rwkv-0.pth", &p, &mm, &err), &err);
    if (mm) {
        mrw_features f = {0}, enc = {0};
        CHECK_OK(mrw_mm_encode_audio(mm, FIX "media/speech.wav", 1, &f, &enc, &err), &err);
        int64_t n;
        const float *ge = G("v1a.encoder", &n);
        CHECKF(n == (int64_t)enc.n * enc.dim, "whisper rows %d (golden %lld)", enc.n, (long long)(n / (enc.dim ? enc.dim : 1)));
        if (n == (int64_t)enc.n * enc.dim)
            CHECKF(max_diff(enc.rows, ge, n) <= 1e-4 * max_abs(ge, n), "whisper encoder: %g", max_diff(enc.rows, ge, n));
        const float *ga = G("v1a.adapter", &n);
        if (n == (int64_t)f.n * f.dim)
            CHECKF(max_diff(f.rows, ga, n) <= 1e-4 * max_abs(ga, n), "v1 audio adapter: %g", max_diff(f.rows, ga, n));
        else
            CHECK(0);
        CHECK(mrw_mm_encode_image(mm, FIX "media/image_a.png", 1, &f, NULL, &err) == MRW_E_ARG);
        mrw_features_free(&f);
        mrw_features_free(&enc);
        mrw_mm_free(mm);
    }
}

static void bad_inputs(void) {
    mrw_error err = {0};
    mrw_mm *mm = NULL;
    mrw_mm_params p = mrw_mm_params_default();
    p.encoder = FIX "siglip";
    CHECK(mrw_mm_load(FIX "bad/adapter_width.pth", &p, &mm, &err) == MRW_E_SHAPE);
    CHECKF(strstr(err.msg, "40") && strstr(err.msg, "48"), "message: %s", err.msg);
    p.encoder = NULL; /* a v1 checkpoint without its encoder */
    CHECK(mrw_mm_load(FIX "v1_vision/rwkv-0.pth", &p, &mm, &err) == MRW_E_ARG);
    CHECK(strstr(err.msg, "--encoder") != NULL);
    p.encoder = FIX "media"; /* a directory without model.safetensors */
    CHECK(mrw_mm_load(FIX "v1_vision/rwkv-0.pth", &p, &mm, &err) != MRW_OK);
    p.encoder = FIX "siglip";
    CHECK_OK(mrw_mm_load(FIX "v1_vision/rwkv-0.pth", &p, &mm, &err), &err);
    if (mm) {
        mrw_features f = {0};
        CHECK(mrw_mm_encode_image(mm, FIX "media/speech.wav", 1, &f, NULL, &err) != MRW_OK); /* not an image */
        CHECK(mrw_mm_encode_image(mm, "/nonexistent.png", 1, &f, NULL, &err) != MRW_OK);
        mrw_mm_free(mm);
    }
    CHECK(mrw_is_modrwkv_file(FIX "v1_vision/rwkv-0.pth") == 1);
    CHECK(mrw_is_modrwkv_file("tests/fixtures/rwkv7/tiny.pth") == 0);
}

int main(void) {
    mrw_error err = {0};
    CHECK_OK(mrw_tfile_open(FIX "golden.safetensors", &golden, &err), &err);
    if (!golden) TEST_MAIN_END();
    mrw_vocab *world = world_vocab();
    for (size_t i = 0; i < sizeof k_cases / sizeof *k_cases; i++) run_case(&k_cases[i], world, NULL);
    v2_case(world, NULL);
    char bundle[] = "/tmp/mrw_bundle_XXXXXX";
    close(mkstemp(bundle));
    run_case(&k_cases[2], world, bundle); /* v1 + external encoder + trained compression -> one file */
    run_case(&k_cases[5], world, bundle); /* v1 audio */
    v2_case(world, bundle);
    unlink(bundle);
    stages();
    bad_inputs();
    mrw_vocab_free(world);
    mrw_tfile_close(golden);
    TEST_MAIN_END();
}
