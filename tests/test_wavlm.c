/* WavLM against transformers (fixtures made by tests/reference/make_audio_enc_fixtures.py): parity of
 * last_hidden_state for the "group"/post-LN form (WavLMModel, weight_g/weight_v) and the "layer"/stable-LN
 * form (WavLMForCTC under "wavlm.", parametrizations.weight.original0/1), the ModRWKV-v2 layout derived from
 * them, torch's relative-position buckets, and bad inputs. With MRW_AUDIO_PARITY_DIR set, also the
 * full-size sets (wavlm-base-plus, wavlm-large) found there. */
#include <stdint.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "models/wavlm.h"
#include "test.h"

#define FIX "tests/fixtures/audio_enc/"

static char tmpdir[256];

static double rel_err(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        d = e > d ? e : d;
        m = fabs(b[i]) > m ? fabs(b[i]) : m;
    }
    return m > 0 ? d / m : d;
}

typedef struct {
    const char *from, *to, *drop;
    int64_t reshape0; /* > 0: `drop` is kept with shape[0] = reshape0 instead */
} move_t;

/* Copy of src with tensors under `from` renamed to `to` (others dropped), one tensor dropped or
 * mis-shaped, and optionally an extra tensor. */
static const char *rewrite(const mrw_tfile *src, const char *file, const move_t *mv, const char *extra) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, file);
    const int n = mrw_tfile_count(src);
    int k = 0;
    mrw_tensor_info *ts = calloc((size_t)n + 1, sizeof *ts);
    char(*names)[256] = calloc((size_t)n + 1, sizeof *names);
    static const float one[4] = {1, 1, 1, 1};
    const size_t fl = strlen(mv->from);
    for (int i = 0; i < n; i++) {
        mrw_tensor_info t = *mrw_tfile_tensor(src, i);
        if (strncmp(t.name, mv->from, fl)) continue;
        const char *rest = t.name + fl;
        if (mv->drop && !strcmp(rest, mv->drop)) {
            if (mv->reshape0 <= 0) continue;
            t.shape[0] = mv->reshape0;
            t.nbytes = (size_t)mrw_tensor_numel(&t) * 4;
        }
        snprintf(names[k], sizeof names[k], "%s%s", mv->to, rest);
        t.name = names[k];
        ts[k++] = t;
    }
    if (extra) {
        snprintf(names[k], sizeof names[k], "%s", extra);
        ts[k] = (mrw_tensor_info){
            .name = names[k], .dtype = MRW_DT_F32, .ndim = 1, .shape = {4}, .data = one, .nbytes = 16};
        k++;
    }
    mrw_error err = {0};
    CHECKF(mrw_safetensors_write(path, ts, k, NULL, 0, NULL, NULL, &err) == MRW_OK, "%s: %s", path, err.msg);
    free(ts);
    free(names);
    return path;
}

typedef struct {
    mrw_tfile *f;
    const float *wave, *gold, *torch32;
    int n, T, d;
} golden;

static int load_golden(const char *path, golden *g) {
    mrw_error err = {0};
    memset(g, 0, sizeof *g);
    CHECK_OK(mrw_tfile_open(path, &g->f, &err), &err);
    if (!g->f) return -1;
    const mrw_tensor_info *w = mrw_tfile_find(g->f, "input_values"),
                          *o = mrw_tfile_find(g->f, "last_hidden_state");
    if (!w || !o || w->dtype != MRW_DT_F32 || o->dtype != MRW_DT_F32 || o->ndim != 2) return -1;
    g->wave = w->data;
    g->n = (int)mrw_tensor_numel(w);
    g->gold = o->data;
    g->T = (int)o->shape[0];
    g->d = (int)o->shape[1];
    const mrw_tensor_info *t = mrw_tfile_find(g->f, "last_hidden_state_torch_f32");
    g->torch32 = t ? t->data : NULL;
    return 0;
}

static double run_parity(const char *path, const mrw_wavlm_params *p, const golden *g, int threads,
                         const char *want_prefix) {
    mrw_error err = {0};
    mrw_tfile *f = NULL;
    mrw_wavlm *m = NULL;
    double r = -1;
    CHECK_OK(mrw_tfile_open(path, &f, &err), &err);
    if (!f) return -1;
    CHECK_OK(mrw_wavlm_load(f, p, &m, &err), &err);
    if (m) {
        if (want_prefix)
            CHECKF(!strcmp(mrw_wavlm_prefix(m), want_prefix), "prefix '%s', want '%s'", mrw_wavlm_prefix(m),
                   want_prefix);
        CHECKF(mrw_wavlm_out_frames(m, g->n) == g->T, "%d frames, golden %d", mrw_wavlm_out_frames(m, g->n),
               g->T);
        float *out = calloc((size_t)g->T * g->d, sizeof *out);
        mrw_kctx k;
        mrw_kctx_init(&k, threads);
        CHECK_OK(mrw_wavlm_forward(m, &k, g->wave, g->n, out, &err), &err);
        r = rel_err(out, g->gold, (size_t)g->T * g->d);
        mrw_kctx_free(&k);
        free(out);
        mrw_wavlm_free(m);
    }
    mrw_tfile_close(f);
    return r;
}

static void expect_load_error(const char *path, const mrw_wavlm_params *p, mrw_status code,
                              const char *needle) {
    mrw_error err = {0};
    mrw_tfile *f = NULL;
    mrw_wavlm *m = NULL;
    CHECK_OK(mrw_tfile_open(path, &f, &err), &err);
    if (!f) return;
    mrw_status s = mrw_wavlm_load(f, p, &m, &err);
    CHECKF(s == code && !m, "%s: status %s, want %s (%s)", path, mrw_status_name(s), mrw_status_name(code),
           err.msg);
    CHECKF(!needle || strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    mrw_wavlm_free(m);
    mrw_tfile_close(f);
}

static void test_buckets(void) {
    mrw_error err = {0};
    mrw_tfile *f = NULL;
    CHECK_OK(mrw_tfile_open(FIX "buckets.safetensors", &f, &err), &err);
    const mrw_tensor_info *t = f ? mrw_tfile_find(f, "buckets_320_800") : NULL;
    CHECK(t && t->dtype == MRW_DT_I32 && mrw_tensor_numel(t) == 8001);
    if (t) {
        const int32_t *b = t->data;
        int bad = 0;
        for (int r = -4000; r <= 4000; r++)
            if (mrw_wavlm_rel_bucket(r, 320, 800) != b[r + 4000] && bad++ < 5)
                fprintf(stderr, "bucket(%d) = %d, torch %d\n", r, mrw_wavlm_rel_bucket(r, 320, 800),
                        b[r + 4000]);
        CHECKF(!bad, "%d buckets differ from torch's", bad);
    }
    mrw_tfile_close(f);
}

static void test_group(void) {
    golden g;
    if (load_golden(FIX "wavlm_group/golden.safetensors", &g)) {
        CHECKF(0, "wavlm_group golden missing");
        mrw_tfile_close(g.f);
        return;
    }
    const mrw_wavlm_params cfg = {.config_path = FIX "wavlm_group/config.json"};
    for (int th = 1; th <= 2; th++) {
        double r = run_parity(FIX "wavlm_group/model.safetensors", &cfg, &g, th, "");
        fprintf(stderr, "wavlm_group (post-LN, weight_g/v, %d thread%s): rel err %.2e\n", th,
                th > 1 ? "s" : "", r);
        CHECKF(r >= 0 && r <= 1e-4, "rel err %.3g", r);
    }
    mrw_error err = {0};
    mrw_tfile *mf = NULL;
    CHECK_OK(mrw_tfile_open(FIX "wavlm_group/model.safetensors", &mf, &err), &err);
    if (!mf) goto out;
    /* ModRWKV v2: under "encoder.model." next to other tensors, detected or given */
    const move_t v2 = {.from = "", .to = "encoder.model."};
    const char *p = rewrite(mf, "v2.safetensors", &v2, "llm.emb.weight");
    double r = run_parity(p, &cfg, &g, 1, "encoder.model.");
    CHECKF(r >= 0 && r <= 1e-4, "v2: rel err %.3g", r);
    const mrw_wavlm_params v2p = {.prefix = "encoder.model.", .config_path = FIX "wavlm_group/config.json"};
    r = run_parity(p, &v2p, &g, 1, "encoder.model.");
    CHECKF(r >= 0 && r <= 1e-4, "v2 given: rel err %.3g", r);

    /* configuration problems */
    expect_load_error(FIX "wavlm_group/model.safetensors", NULL, MRW_E_ARG, "config.json");
    const mrw_wavlm_params bad_h = {.config_json = "{\"conv_stride\": [5,2,2,2], \"hidden_size\": 96}"};
    expect_load_error(FIX "wavlm_group/model.safetensors", &bad_h, MRW_E_SHAPE, "hidden_size");
    const mrw_wavlm_params bad_n = {.config_json = "{\"conv_stride\": [5,2,2]}"};
    expect_load_error(FIX "wavlm_group/model.safetensors", &bad_n, MRW_E_SHAPE, "conv layers");
    const mrw_wavlm_params bad_l = {.config_json = "{\"conv_stride\": [5,2,2,2], \"conv_kernel\": [10,3,3]}"};
    expect_load_error(FIX "wavlm_group/model.safetensors", &bad_l, MRW_E_FORMAT, "conv_kernel");
    const mrw_wavlm_params bad_a = {.config_json = "{\"conv_stride\": [5,2,2,2], \"add_adapter\": true}"};
    expect_load_error(FIX "wavlm_group/model.safetensors", &bad_a, MRW_E_UNSUPPORTED, "adapter");
    const mrw_wavlm_params bad_act = {.config_json =
                                          "{\"conv_stride\": [5,2,2,2], \"hidden_act\": \"mish\"}"};
    expect_load_error(FIX "wavlm_group/model.safetensors", &bad_act, MRW_E_UNSUPPORTED, "mish");
    /* bad files */
    const move_t miss = {.from = "", .to = "", .drop = "encoder.layers.1.attention.gru_rel_pos_const"};
    expect_load_error(rewrite(mf, "miss.safetensors", &miss, NULL), &cfg, MRW_E_MISSING, "gru_rel_pos_const");
    const move_t nog = {.from = "", .to = "", .drop = "encoder.pos_conv_embed.conv.weight_g"};
    expect_load_error(rewrite(mf, "nog.safetensors", &nog, NULL), &cfg, MRW_E_MISSING, "weight_g");
    const move_t shp = {
        .from = "", .to = "", .drop = "encoder.layers.0.attention.rel_attn_embed.weight", .reshape0 = 16};
    expect_load_error(rewrite(mf, "shape.safetensors", &shp, NULL), &cfg, MRW_E_SHAPE, "num_buckets");
    const move_t shp2 = {
        .from = "", .to = "", .drop = "encoder.layers.1.feed_forward.output_dense.weight", .reshape0 = 32};
    expect_load_error(rewrite(mf, "shape2.safetensors", &shp2, NULL), &cfg, MRW_E_SHAPE,
                      "output_dense.weight");
    const move_t all = {.from = "", .to = ""};
    expect_load_error(
        rewrite(mf, "unknown.safetensors", &all, "encoder.layers.1.attention.rel_attn_embed.weight"), &cfg,
        MRW_E_UNKNOWN, "encoder.layers.1.attention.rel_attn_embed.weight");
    const move_t none = {.from = "encoder.", .to = "encoder."};
    expect_load_error(rewrite(mf, "no_conv.safetensors", &none, NULL), &cfg, MRW_E_MISSING, "conv_layers.0");

    /* bad waveforms: too short for the conv stack, too long, NULL */
    mrw_wavlm *m = NULL;
    CHECK_OK(mrw_wavlm_load(mf, &cfg, &m, &err), &err);
    if (m) {
        const mrw_wavlm_config *c = mrw_wavlm_get_config(m);
        CHECK(c->n_conv == 4 && c->norm_layer == 0 && c->stable_ln == 0 && c->n_heads == 4 &&
              c->num_buckets == 32 && c->max_distance == 64 && c->pos_kernel == 16 && c->pos_groups == 4 &&
              c->from_config == 1 && c->conv_bias == 0);
        CHECK(mrw_wavlm_min_samples(m) == 60 && mrw_wavlm_out_frames(m, 59) == 0 &&
              mrw_wavlm_out_frames(m, 60) == 1);
        mrw_kctx k;
        mrw_kctx_init(&k, 2);
        float *out = calloc((size_t)g.T * g.d, sizeof *out);
        mrw_status s = mrw_wavlm_forward(m, &k, g.wave, 59, out, &err);
        CHECKF(s == MRW_E_ARG && strstr(err.msg, "too short") && strstr(err.msg, "60"), "%s", err.msg);
        CHECK(mrw_wavlm_forward(m, &k, g.wave, 0, out, &err) == MRW_E_ARG);
        CHECK(mrw_wavlm_forward(m, &k, g.wave, MRW_WAVLM_MAX_SAMPLES + 1, out, &err) == MRW_E_LIMIT);
        CHECK(mrw_wavlm_forward(m, &k, NULL, 100, out, &err) == MRW_E_ARG);
        CHECK_OK(mrw_wavlm_forward(m, &k, g.wave, 60, out, &err), &err); /* one frame */
        for (int i = 0; i < g.d; i++) CHECK(isfinite(out[i]));
        /* the context's workspace, grown and reused across calls of different lengths */
        CHECK_OK(mrw_wavlm_forward(m, &k, g.wave, g.n, out, &err), &err);
        const double r = rel_err(out, g.gold, (size_t)g.T * g.d);
        CHECKF(r <= 1e-4, "after reuse: rel err %.3g", r);
        free(out);
        mrw_kctx_free(&k);
        mrw_wavlm_free(m);
    }
out:
    mrw_tfile_close(mf);
    mrw_tfile_close(g.f);
}

static void test_layer(void) {
    golden g;
    if (load_golden(FIX "wavlm_layer/golden.safetensors", &g)) {
        CHECKF(0, "wavlm_layer golden missing");
        mrw_tfile_close(g.f);
        return;
    }
    const mrw_wavlm_params cfg = {.config_path = FIX "wavlm_layer/config.json"};
    for (int th = 1; th <= 2; th++) {
        double r = run_parity(FIX "wavlm_layer/model.safetensors", &cfg, &g, th, "wavlm.");
        fprintf(stderr,
                "wavlm_layer (stable LN, CTC checkpoint, parametrizations, %d thread%s): rel err %.2e\n", th,
                th > 1 ? "s" : "", r);
        CHECKF(r >= 0 && r <= 1e-4, "rel err %.3g", r);
    }
    /* the same stack as a v2 checkpoint: "encoder.model." + "wavlm." */
    mrw_error err = {0};
    mrw_tfile *mf = NULL;
    CHECK_OK(mrw_tfile_open(FIX "wavlm_layer/model.safetensors", &mf, &err), &err);
    if (mf) {
        const move_t v2 = {.from = "", .to = "encoder.model."};
        const mrw_wavlm_params v2p = {.prefix = "encoder.model.",
                                      .config_path = FIX "wavlm_layer/config.json"};
        double r = run_parity(rewrite(mf, "v2l.safetensors", &v2, NULL), &v2p, &g, 2, "encoder.model.wavlm.");
        CHECKF(r >= 0 && r <= 1e-4, "v2 layer: rel err %.3g", r);
        const move_t nob = {.from = "", .to = "", .drop = "wavlm.feature_extractor.conv_layers.2.conv.bias"};
        expect_load_error(rewrite(mf, "nobias.safetensors", &nob, NULL), &cfg, MRW_E_MISSING,
                          "conv_layers.2.conv.bias");
        mrw_tfile_close(mf);
    }
    mrw_tfile_close(g.f);
}

static void test_full(const char *dir) {
    static const char *const names[] = {"wavlm-base-plus", "wavlm-large"};
    for (int i = 0; i < 2; i++) {
        char model[512], cfg[512], gpath[512];
        snprintf(model, sizeof model, "%s/%s/model.safetensors", dir, names[i]);
        snprintf(cfg, sizeof cfg, "%s/%s/config.json", dir, names[i]);
        snprintf(gpath, sizeof gpath, "%s/%s/golden.safetensors", dir, names[i]);
        if (access(model, R_OK) || access(gpath, R_OK)) continue;
        golden g;
        if (load_golden(gpath, &g)) {
            mrw_tfile_close(g.f);
            continue;
        }
        const mrw_wavlm_params p = {.config_path = cfg};
        double r = run_parity(model, &p, &g, 2, "");
        fprintf(stderr, "%s (full size, %d samples -> %d x %d): rel err %.2e (transformers f32: %.2e)\n",
                names[i], g.n, g.T, g.d, r, g.torch32 ? rel_err(g.torch32, g.gold, (size_t)g.T * g.d) : -1.0);
        CHECKF(r >= 0 && r <= 1e-4, "%s: rel err %.3g", names[i], r);
        /* without config.json: the published defaults must give the same model */
        r = run_parity(model, NULL, &g, 2, "");
        CHECKF(r >= 0 && r <= 1e-4, "%s without config: rel err %.3g", names[i], r);
        mrw_tfile_close(g.f);
    }
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/mrw_wavlm_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_buckets();
    test_group();
    test_layer();
    const char *full = getenv("MRW_AUDIO_PARITY_DIR");
    if (full && *full) test_full(full);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_MAIN_END();
}
