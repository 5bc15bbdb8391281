/* The Whisper encoder against transformers (fixtures made by tests/reference/make_audio_enc_fixtures.py):
 * parity of last_hidden_state for the WhisperModel layout ("encoder.", f32) and the full
 * WhisperForConditionalGeneration checkpoint ("model.encoder.", f16), the encoder-only and ModRWKV-v2
 * ("encoder.model.") layouts derived from them, the head count from config.json, and bad inputs.
 * With MRW_AUDIO_PARITY_DIR set, also the full-size sets (whisper-{base,small,medium}) found there. */
#include <stdint.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "models/whisper_enc.h"
#include "test.h"

#define FIX "tests/fixtures/audio_enc/whisper_tiny/"

static char tmpdir[256];

/* max |a-b| / max |b| */
static double rel_err(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        d = e > d ? e : d;
        m = fabs(b[i]) > m ? fabs(b[i]) : m;
    }
    return m > 0 ? d / m : d;
}

static const float *tensor_f32(const mrw_tfile *f, const char *name, int64_t *n) {
    const mrw_tensor_info *t = mrw_tfile_find(f, name);
    if (!t || t->dtype != MRW_DT_F32) return NULL;
    if (n) *n = mrw_tensor_numel(t);
    return t->data;
}

/* Copy of `src` with each tensor passed through `edit` (return 0 to drop it; it may rename or reshape). */
typedef int (*edit_fn)(mrw_tensor_info *t, char *name, size_t n, void *user);

static const char *rewrite(const mrw_tfile *src, const char *file, edit_fn edit, void *user,
                           const char *extra_name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, file);
    int n = mrw_tfile_count(src), k = 0;
    mrw_tensor_info *ts = calloc((size_t)n + 1, sizeof *ts);
    char(*names)[256] = calloc((size_t)n + 1, sizeof *names);
    static const float one = 1.0f;
    for (int i = 0; i < n; i++) {
        ts[k] = *mrw_tfile_tensor(src, i);
        snprintf(names[k], sizeof names[k], "%s", ts[k].name);
        if (edit && !edit(&ts[k], names[k], sizeof names[k], user)) continue;
        ts[k].name = names[k];
        k++;
    }
    if (extra_name) { /* an unrelated tensor, as a ModRWKV checkpoint holds */
        snprintf(names[k], sizeof names[k], "%s", extra_name);
        ts[k] = (mrw_tensor_info){
            .name = names[k], .dtype = MRW_DT_F32, .ndim = 1, .shape = {1}, .data = &one, .nbytes = 4};
        k++;
    }
    mrw_error err = {0};
    mrw_status s = mrw_safetensors_write(path, ts, k, NULL, 0, NULL, NULL, &err);
    CHECKF(s == MRW_OK, "writing %s: %s", path, err.msg);
    free(ts);
    free(names);
    return path;
}

/* Keeps tensors under `from` renamed to `to` + rest; drops everything else. */
typedef struct {
    const char *from, *to, *drop;
    int64_t reshape0; /* > 0: the first tensor named `drop` instead gets shape[0] = reshape0 (mis-shaped) */
} move_t;

static int move_edit(mrw_tensor_info *t, char *name, size_t n, void *user) {
    const move_t *m = user;
    size_t fl = strlen(m->from);
    if (strncmp(t->name, m->from, fl)) return 0;
    char rest[256];
    snprintf(rest, sizeof rest, "%s", t->name + fl);
    if (m->drop && !strcmp(rest, m->drop)) {
        if (m->reshape0 <= 0) return 0;
        t->shape[0] = m->reshape0;
        t->nbytes = (size_t)mrw_tensor_numel(t) * 4;
    }
    snprintf(name, n, "%s%s", m->to, rest);
    return 1;
}

typedef struct {
    const float *mel, *gold, *gold16;
    int frames, T, d;
} golden;

static int load_golden(const mrw_tfile *g, golden *o) {
    int64_t n = 0;
    o->mel = tensor_f32(g, "input_features", &n);
    const mrw_tensor_info *t = mrw_tfile_find(g, "last_hidden_state");
    if (!o->mel || !t) return -1;
    o->frames = (int)(n / 80);
    o->T = (int)t->shape[0];
    o->d = (int)t->shape[1];
    o->gold = t->data;
    o->gold16 = tensor_f32(g, "last_hidden_state_f16", NULL);
    return 0;
}

/* Loads `path` with params, runs the golden input on `threads` threads; returns the relative error or -1. */
static double run_parity(const char *path, const mrw_whisper_params *p, const golden *g, const float *want,
                         int threads, const char *want_prefix) {
    mrw_error err = {0};
    mrw_tfile *f = NULL;
    mrw_whisper_enc *m = NULL;
    double r = -1;
    CHECK_OK(mrw_tfile_open(path, &f, &err), &err);
    if (!f) return -1;
    CHECK_OK(mrw_whisper_enc_load(f, p, &m, &err), &err);
    if (m) {
        if (want_prefix)
            CHECKF(!strcmp(mrw_whisper_enc_prefix(m), want_prefix), "prefix '%s', want '%s'",
                   mrw_whisper_enc_prefix(m), want_prefix);
        float *out = calloc((size_t)g->T * g->d, sizeof *out);
        mrw_kctx k;
        mrw_kctx_init(&k, threads);
        CHECK_OK(mrw_whisper_enc_forward(m, &k, g->mel, g->frames, out, &err), &err);
        r = rel_err(out, want, (size_t)g->T * g->d);
        mrw_kctx_free(&k);
        free(out);
        mrw_whisper_enc_free(m);
    }
    mrw_tfile_close(f);
    return r;
}

/* Expects loading to fail with `code` and a message containing `needle`. */
static void expect_load_error(const char *path, const mrw_whisper_params *p, mrw_status code,
                              const char *needle) {
    mrw_error err = {0};
    mrw_tfile *f = NULL;
    mrw_whisper_enc *m = NULL;
    CHECK_OK(mrw_tfile_open(path, &f, &err), &err);
    if (!f) return;
    mrw_status s = mrw_whisper_enc_load(f, p, &m, &err);
    CHECKF(s == code && m == NULL, "%s: status %s, want %s (%s)", path, mrw_status_name(s),
           mrw_status_name(code), err.msg);
    CHECKF(!needle || strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    mrw_whisper_enc_free(m);
    mrw_tfile_close(f);
}

static void test_tiny(void) {
    mrw_error err = {0};
    mrw_tfile *gf = NULL, *mf = NULL;
    golden g;
    CHECK_OK(mrw_tfile_open(FIX "golden.safetensors", &gf, &err), &err);
    if (!gf || load_golden(gf, &g)) {
        CHECKF(0, "golden missing");
        mrw_tfile_close(gf);
        return;
    }
    CHECK(g.frames == 48 && g.T == 24 && g.d == 64 && g.gold16);
    const mrw_whisper_params with_cfg = {.config_path = FIX "config.json"};

    /* WhisperModel layout; 1 and 2 threads */
    for (int th = 1; th <= 2; th++) {
        double r = run_parity(FIX "model.safetensors", &with_cfg, &g, g.gold, th, "encoder.");
        fprintf(stderr, "whisper_tiny (encoder., f32, %d thread%s): rel err %.2e\n", th, th > 1 ? "s" : "",
                r);
        CHECKF(r >= 0 && r <= 1e-4, "rel err %.3g", r);
    }
    /* full checkpoint in f16: the decoder is skipped, weights converted to f32 */
    double r = run_parity(FIX "full.f16.safetensors", &with_cfg, &g, g.gold16, 2, "model.encoder.");
    fprintf(stderr, "whisper_tiny (model.encoder., f16 weights): rel err %.2e\n", r);
    CHECKF(r >= 0 && r <= 1e-4, "rel err %.3g", r);
    /* keep_lowp computes with the f16 weights as stored (bf16 products): close, not exact */
    const mrw_whisper_params lowp = {.config_path = FIX "config.json", .keep_lowp = 1};
    r = run_parity(FIX "full.f16.safetensors", &lowp, &g, g.gold16, 1, NULL);
    fprintf(stderr, "whisper_tiny (f16 weights kept, bf16 GEMM): rel err %.2e\n", r);
    CHECKF(r >= 0 && r <= 3e-2, "rel err %.3g", r);

    /* head count: config JSON text, explicit override, and the d_model/64 default (1 head here: wrong) */
    const mrw_whisper_params json = {.config_json = "{\"encoder_attention_heads\": 2, \"d_model\": 64}"};
    r = run_parity(FIX "model.safetensors", &json, &g, g.gold, 1, NULL);
    CHECKF(r >= 0 && r <= 1e-4, "config_json: rel err %.3g", r);
    const mrw_whisper_params heads2 = {.n_heads = 2};
    r = run_parity(FIX "model.safetensors", &heads2, &g, g.gold, 1, NULL);
    CHECKF(r >= 0 && r <= 1e-4, "n_heads override: rel err %.3g", r);
    r = run_parity(FIX "model.safetensors", NULL, &g, g.gold, 1, NULL);
    CHECKF(r > 1e-3, "default head_dim 64 should differ here (rel err %.3g)", r);

    /* encoder-only file (no prefix), and ModRWKV v2 ("encoder.model." next to llm.* tensors) */
    CHECK_OK(mrw_tfile_open(FIX "model.safetensors", &mf, &err), &err);
    if (!mf) goto out;
    move_t enc_only = {.from = "encoder.", .to = ""};
    const char *p = rewrite(mf, "enc_only.safetensors", move_edit, &enc_only, NULL);
    r = run_parity(p, &with_cfg, &g, g.gold, 2, "");
    CHECKF(r >= 0 && r <= 1e-4, "encoder-only: rel err %.3g", r);
    move_t v2 = {.from = "encoder.", .to = "encoder.model."};
    p = rewrite(mf, "v2.safetensors", move_edit, &v2, "llm.emb.weight");
    r = run_parity(p, &with_cfg, &g, g.gold, 1, "encoder.model.");
    CHECKF(r >= 0 && r <= 1e-4, "v2 detected: rel err %.3g", r);
    const mrw_whisper_params v2p = {.prefix = "encoder.model.", .config_path = FIX "config.json"};
    r = run_parity(p, &v2p, &g, g.gold, 1, "encoder.model.");
    CHECKF(r >= 0 && r <= 1e-4, "v2 given: rel err %.3g", r);
    const mrw_whisper_params wrongp = {.prefix = "vision."};
    expect_load_error(p, &wrongp, MRW_E_MISSING, "vision.conv1.weight");

    /* bad files: a missing tensor, a mis-shaped one, an unknown one inside the encoder's prefix */
    move_t miss = {.from = "encoder.", .to = "encoder.", .drop = "layers.1.fc2.bias"};
    expect_load_error(rewrite(mf, "miss.safetensors", move_edit, &miss, NULL), &with_cfg, MRW_E_MISSING,
                      "encoder.layers.1.fc2.bias");
    move_t shape = {
        .from = "encoder.", .to = "encoder.", .drop = "layers.0.self_attn.v_proj.weight", .reshape0 = 32};
    expect_load_error(rewrite(mf, "shape.safetensors", move_edit, &shape, NULL), &with_cfg, MRW_E_SHAPE,
                      "v_proj.weight");
    move_t pos = {.from = "encoder.", .to = "encoder.", .drop = "embed_positions.weight", .reshape0 = 12};
    const char *pos_path = rewrite(mf, "pos.safetensors", move_edit, &pos, NULL);
    expect_load_error(pos_path, &with_cfg, MRW_E_SHAPE, "max_source_positions");
    move_t keep = {.from = "encoder.", .to = "encoder."};
    expect_load_error(
        rewrite(mf, "unknown.safetensors", move_edit, &keep, "encoder.layers.0.self_attn.k_proj.bias"),
        &with_cfg, MRW_E_UNKNOWN, "encoder.layers.0.self_attn.k_proj.bias");
    move_t none = {.from = "decoder.", .to = "decoder."};
    expect_load_error(rewrite(mf, "decoder_only.safetensors", move_edit, &none, NULL), NULL, MRW_E_MISSING,
                      "conv1.weight");
    /* config that disagrees with the tensors, heads that do not divide d_model, broken JSON */
    const mrw_whisper_params bad_d = {.config_json = "{\"d_model\": 32}"};
    expect_load_error(FIX "model.safetensors", &bad_d, MRW_E_SHAPE, "d_model");
    const mrw_whisper_params bad_h = {.n_heads = 3};
    expect_load_error(FIX "model.safetensors", &bad_h, MRW_E_SHAPE, "heads");
    const mrw_whisper_params bad_json = {.config_json = "{\"d_model\": "};
    expect_load_error(FIX "model.safetensors", &bad_json, MRW_E_FORMAT, NULL);
    const mrw_whisper_params bad_act = {.config_json = "{\"activation_function\": \"swish\"}"};
    expect_load_error(FIX "model.safetensors", &bad_act, MRW_E_UNSUPPORTED, "swish");
    const mrw_whisper_params no_file = {.config_path = FIX "no-such-config.json"};
    expect_load_error(FIX "model.safetensors", &no_file, MRW_E_IO, "no-such-config.json");

    /* bad forward arguments */
    mrw_whisper_enc *m = NULL;
    CHECK_OK(mrw_whisper_enc_load(mf, &with_cfg, &m, &err), &err);
    if (m) {
        mrw_kctx k;
        mrw_kctx_init(&k, 1);
        float *out = calloc(64 * 64, sizeof *out);
        CHECK(mrw_whisper_enc_forward(m, &k, g.mel, 0, out, &err) == MRW_E_ARG);
        CHECK(mrw_whisper_enc_forward(m, &k, g.mel, 49, out, &err) == MRW_E_LIMIT && strstr(err.msg, "48"));
        CHECK(mrw_whisper_enc_forward(m, &k, NULL, 48, out, &err) == MRW_E_ARG);
        /* shorter inputs run (the encoder of a shorter clip); odd lengths round up */
        CHECK_OK(mrw_whisper_enc_forward(m, &k, g.mel, 5, out, &err), &err);
        CHECK(mrw_whisper_enc_out_frames(5) == 3 && mrw_whisper_enc_out_frames(48) == 24);
        CHECK(mrw_whisper_enc_config(m)->n_heads == 2 && mrw_whisper_enc_config(m)->heads_from_config == 1);
        CHECK(mrw_whisper_enc_config(m)->n_layers == 2 && mrw_whisper_enc_config(m)->n_pos == 24);
        free(out);
        mrw_kctx_free(&k);
        mrw_whisper_enc_free(m);
    }
out:
    mrw_tfile_close(mf);
    mrw_tfile_close(gf);
}

static void test_keep_frames(void) {
    CHECK(mrw_whisper_keep_frames(0, 1500) == 1);
    CHECK(mrw_whisper_keep_frames(1, 1500) == 1);
    CHECK(mrw_whisper_keep_frames(100, 1500) == 51);
    CHECK(mrw_whisper_keep_frames(101, 1500) == 51);
    CHECK(mrw_whisper_keep_frames(2999, 1500) == 1500);
    CHECK(mrw_whisper_keep_frames(3000, 1500) == 1500);
    CHECK(mrw_whisper_keep_frames(-5, 1500) == 1);
}

/* Full-size sets from make_audio_enc_fixtures.py --full (encoder-only files, 30 s inputs). */
static void test_full(const char *dir) {
    static const char *const names[] = {"whisper-base", "whisper-small", "whisper-medium"};
    for (int i = 0; i < 3; i++) {
        char model[512], cfg[512], gpath[512];
        snprintf(model, sizeof model, "%s/%s/model.safetensors", dir, names[i]);
        snprintf(cfg, sizeof cfg, "%s/%s/config.json", dir, names[i]);
        snprintf(gpath, sizeof gpath, "%s/%s/golden.safetensors", dir, names[i]);
        if (access(model, R_OK) || access(gpath, R_OK)) continue;
        mrw_error err = {0};
        mrw_tfile *gf = NULL;
        golden g;
        CHECK_OK(mrw_tfile_open(gpath, &gf, &err), &err);
        if (!gf || load_golden(gf, &g)) {
            mrw_tfile_close(gf);
            continue;
        }
        const mrw_whisper_params p = {.config_path = cfg};
        double r = run_parity(model, &p, &g, g.gold, 2, "");
        const float *tf32 = tensor_f32(gf, "last_hidden_state_torch_f32", NULL);
        fprintf(stderr, "%s (full size, %d frames -> %d x %d): rel err %.2e (transformers f32: %.2e)\n",
                names[i], g.frames, g.T, g.d, r, tf32 ? rel_err(tf32, g.gold, (size_t)g.T * g.d) : -1.0);
        CHECKF(r >= 0 && r <= 1e-4, "%s: rel err %.3g", names[i], r);
        mrw_tfile_close(gf);
    }
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/mrw_whisper_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_keep_frames();
    test_tiny();
    const char *full = getenv("MRW_AUDIO_PARITY_DIR");
    if (full && *full) test_full(full);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_MAIN_END();
}
