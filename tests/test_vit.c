/* SigLIP / CLIP vision towers (src/models/vit.c): parity with transformers' last_hidden_state on the tiny
 * fixtures of tests/reference/make_vit_fixtures.py (both families, odd head sizes, both tensor layouts, full
 * checkpoints with text towers, ModRWKV v2 prefixes, f16/bf16 files), and clear errors for missing, extra
 * and mis-shaped tensors and inconsistent configs.
 *
 * Tolerance: max |ours - golden| / max |golden| <= 1e-4 with f32 weights (goldens are float64); 3e-2 when
 * 16-bit weights are kept as stored (bf16 dot products).
 * With MRW_VIT_PARITY_DIR set (see the fixture script), also checks the full-size published configs. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "models/vit.h"
#include "test.h"

#define FIX "tests/fixtures/vit/"

static char tmpdir[64];

/* ------------------------------------------------------------------------------------------ helpers */

typedef struct {
    mrw_tfile *f;
    const float *pixels, *want;
    int n_want;
} golden;

static int golden_open(const char *dir, const char *key, golden *g) {
    char path[512];
    mrw_error e;
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    memset(g, 0, sizeof *g);
    if (mrw_tfile_open(path, &g->f, &e)) {
        fprintf(stderr, "cannot open %s: %s\n", path, e.msg);
        return -1;
    }
    const mrw_tensor_info *p = mrw_tfile_find(g->f, "pixels"), *w = mrw_tfile_find(g->f, key);
    if (!p || !w || p->dtype != MRW_DT_F32 || w->dtype != MRW_DT_F32) {
        fprintf(stderr, "%s: no f32 pixels / %s\n", path, key);
        mrw_tfile_close(g->f);
        return -1;
    }
    g->pixels = p->data;
    g->want = w->data;
    g->n_want = (int)mrw_tensor_numel(w);
    return 0;
}

/* Runs the model on the golden pixels with nt threads: max |diff| / max |golden|, or 1e30 on failure. */
static double run_rel(const mrw_vit *v, const golden *g, int nt) {
    const mrw_vit_config *c = mrw_vit_get_config(v);
    if ((int64_t)c->n_tokens * c->hidden != g->n_want) {
        fprintf(stderr, "output size %d x %d vs golden %d\n", c->n_tokens, c->hidden, g->n_want);
        return 1e30;
    }
    float *out = malloc((size_t)g->n_want * sizeof *out);
    mrw_vit_ctx *ctx;
    mrw_error e;
    double rel = 1e30;
    if (out && !mrw_vit_ctx_new(v, nt, &ctx, &e)) {
        if (!mrw_vit_forward(ctx, g->pixels, out, &e)) {
            double md = 0, mg = 0;
            for (int i = 0; i < g->n_want; i++) {
                const double d = fabs((double)out[i] - g->want[i]);
                md = d > md || d != d ? d : md;
                mg = fabs(g->want[i]) > mg ? fabs(g->want[i]) : mg;
            }
            rel = md / mg;
        } else {
            fprintf(stderr, "forward: %s\n", e.msg);
        }
        mrw_vit_ctx_free(ctx);
    }
    free(out);
    return rel;
}

static mrw_vit_params quiet_params(void) {
    mrw_vit_params p;
    memset(&p, 0, sizeof p);
    p.quiet = 1;
    return p;
}

/* Opens `model` (a directory or file) with params and checks parity against dir's golden `key`. */
static void check_parity(const char *model, const mrw_vit_params *p, const char *dir, const char *key,
                         double tol, const char *what) {
    mrw_vit *v;
    mrw_error e;
    golden g;
    if (golden_open(dir, key, &g)) {
        CHECKF(0, "%s: no golden", what);
        return;
    }
    mrw_status s = mrw_vit_open(model, p, &v, &e);
    CHECKF(s == MRW_OK, "%s: %s", what, e.msg);
    if (s == MRW_OK) {
        for (int nt = 1; nt <= 2; nt++) {
            const double rel = run_rel(v, &g, nt);
            CHECKF(rel <= tol, "%s (%d threads): relative error %.3g > %.3g", what, nt, rel, tol);
            if (nt == 1) fprintf(stderr, "  %-48s rel err %.2e\n", what, rel);
        }
        mrw_vit_free(v);
    }
    mrw_tfile_close(g.f);
}

/* ---------------------------------------------------------------------------------------- parity */

static void test_parity_dirs(void) {
    static const struct {
        const char *dir;
        mrw_vit_family fam;
        int tokens, hidden, heads, layers;
    } sets[] = {
        {"siglip_tiny", MRW_VIT_SIGLIP, 16, 64, 2, 2}, {"siglip_odd", MRW_VIT_SIGLIP, 25, 72, 3, 1},
        {"clip_tiny", MRW_VIT_CLIP, 17, 64, 2, 2},     {"clip_odd", MRW_VIT_CLIP, 26, 72, 3, 1},
        {"siglip_full", MRW_VIT_SIGLIP, 4, 32, 2, 2},  {"clip_full", MRW_VIT_CLIP, 5, 32, 2, 2},
    };
    mrw_vit_params p = quiet_params();
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, FIX "%s", sets[i].dir);
        check_parity(dir, &p, dir, "last_hidden_state", 1e-4, sets[i].dir);
        mrw_vit *v;
        mrw_error e;
        if (mrw_vit_open(dir, &p, &v, &e)) continue;
        const mrw_vit_config *c = mrw_vit_get_config(v);
        CHECK(c->family == sets[i].fam);
        CHECK(c->n_tokens == sets[i].tokens);
        CHECK(c->hidden == sets[i].hidden);
        CHECK(c->n_head == sets[i].heads);
        CHECK(c->n_layer == sets[i].layers);
        CHECK(c->config_given == 1);
        CHECK(c->weight_dtype == MRW_DT_F32);
        if (c->family == MRW_VIT_SIGLIP) {
            CHECK(c->eps == 1e-6f && c->act == MRW_VIT_GELU_TANH && c->mean[0] == 0.5f && c->std[2] == 0.5f);
        } else {
            CHECK(c->eps == 1e-5f && c->act == MRW_VIT_QUICK_GELU);
            CHECK_NEAR(c->mean[0], 0.48145466, 1e-7);
            CHECK_NEAR(c->std[2], 0.27577711, 1e-7);
        }
        CHECK(mrw_vit_flops(v) > 0);
        mrw_vit_free(v);
    }
    /* a weight file given directly: the config.json beside it is found */
    check_parity(FIX "clip_odd/model.safetensors", &p, FIX "clip_odd", "last_hidden_state", 1e-4,
                 "clip_odd file");
    /* the config passed as text */
    size_t len;
    char *text = (char *)t_read_file(FIX "siglip_odd/config.json", &len);
    CHECK(text != NULL);
    if (text) {
        mrw_vit_params q = quiet_params();
        q.config_json = text;
        check_parity(FIX "siglip_odd/model.safetensors", &q, FIX "siglip_odd", "last_hidden_state", 1e-4,
                     "siglip_odd, config as JSON text");
        free(text);
    }
}

/* 16-bit weight files: converted to f32 (exact) or kept (bf16 GEMM). */
static void test_low_precision(void) {
    mrw_vit_params p = quiet_params();
    p.config_path = FIX "siglip_full/config.json";
    check_parity(FIX "siglip_full/model.bf16.safetensors", &p, FIX "siglip_full", "last_hidden_state_bf16",
                 1e-4, "siglip_full bf16 -> f32");
    p.keep_dtype = 1;
    check_parity(FIX "siglip_full/model.bf16.safetensors", &p, FIX "siglip_full", "last_hidden_state_bf16",
                 3e-2, "siglip_full bf16 kept");
    p.keep_dtype = 0;
    p.config_path = FIX "clip_full/config.json";
    check_parity(FIX "clip_full/model.f16.safetensors", &p, FIX "clip_full", "last_hidden_state_f16", 1e-4,
                 "clip_full f16 -> f32");
    p.keep_dtype = 1;
    check_parity(FIX "clip_full/model.f16.safetensors", &p, FIX "clip_full", "last_hidden_state_f16", 3e-2,
                 "clip_full f16 kept");
    mrw_vit *v;
    mrw_error e;
    if (!mrw_vit_open(FIX "clip_full/model.f16.safetensors", &p, &v, &e)) {
        CHECK(mrw_vit_get_config(v)->weight_dtype == MRW_DT_F16);
        mrw_vit_free(v);
    }
}

/* ModRWKV v2 files: the tower under "encoder.model." (bare, or a whole CLIPModel with its text tower). */
static void test_prefixes(void) {
    mrw_vit_params p = quiet_params();
    p.config_path = FIX "siglip_full/config.json";
    p.prefix = "encoder.model.";
    check_parity(FIX "v2ckpt.safetensors", &p, FIX "siglip_full", "last_hidden_state", 1e-4,
                 "v2 encoder.model.");
    p.prefix = "encoder.model";
    check_parity(FIX "v2ckpt.safetensors", &p, FIX "siglip_full", "last_hidden_state", 1e-4,
                 "v2 encoder.model");
    p.prefix = NULL;
    check_parity(FIX "v2ckpt.safetensors", &p, FIX "siglip_full", "last_hidden_state", 1e-4,
                 "v2 auto prefix");
    p.config_path = FIX "clip_full/config.json";
    p.prefix = "encoder.model.";
    check_parity(FIX "v2ckpt_full.safetensors", &p, FIX "clip_full", "last_hidden_state", 1e-4,
                 "v2 full CLIPModel");
    mrw_vit *v;
    mrw_error e;
    if (!mrw_vit_open(FIX "v2ckpt_full.safetensors", &p, &v, &e)) {
        CHECK(!strcmp(mrw_vit_get_config(v)->prefix, "encoder.model.vision_model."));
        mrw_vit_free(v);
    }
    p.prefix = "nope.";
    mrw_status s = mrw_vit_open(FIX "v2ckpt.safetensors", &p, &v, &e);
    CHECK(s == MRW_E_MISSING);
    CHECKF(strstr(e.msg, "nope.embeddings.patch_embedding.weight") != NULL, "%s", e.msg);
}

/* Without a config: family defaults (64-wide heads), flagged in the config. */
static void test_no_config(void) {
    mrw_tfile *f;
    mrw_error e;
    mrw_vit *v;
    mrw_vit_params p = quiet_params();
    if (mrw_tfile_open(FIX "siglip_tiny/model.safetensors", &f, &e)) {
        CHECKF(0, "%s", e.msg);
        return;
    }
    mrw_status s = mrw_vit_load(f, &p, &v, &e);
    CHECKF(s == MRW_OK, "%s", e.msg);
    if (s == MRW_OK) {
        const mrw_vit_config *c = mrw_vit_get_config(v);
        CHECK(c->config_given == 0 && c->n_head == 1 && c->head_dim == 64 && c->eps == 1e-6f);
        golden g;
        if (!golden_open(FIX "siglip_tiny", "last_hidden_state", &g)) {
            /* the real model has 2 heads: a wrong guess must show */
            CHECK(run_rel(v, &g, 1) > 1e-3);
            mrw_tfile_close(g.f);
        }
        mrw_vit_free(v);
    }
    mrw_tfile_close(f);
    /* 72 wide: no guess possible */
    if (mrw_tfile_open(FIX "siglip_odd/model.safetensors", &f, &e)) return;
    s = mrw_vit_load(f, &p, &v, &e);
    CHECK(s == MRW_E_ARG);
    CHECKF(strstr(e.msg, "config.json") != NULL, "%s", e.msg);
    mrw_tfile_close(f);
}

/* ---------------------------------------------------------------------------------------- errors */

/* The tensors of a file, to be edited and written back. */
typedef struct {
    mrw_tfile *f;
    mrw_tensor_info t[128];
    int n;
} tlist;

static int tl_open(tlist *l, const char *path) {
    mrw_error e;
    if (mrw_tfile_open(path, &l->f, &e)) return -1;
    l->n = mrw_tfile_count(l->f);
    if (l->n > 120) return -1;
    for (int i = 0; i < l->n; i++) l->t[i] = *mrw_tfile_tensor(l->f, i);
    return 0;
}

static mrw_tensor_info *tl_find(tlist *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->t[i].name, name)) return &l->t[i];
    return NULL;
}

static void tl_remove(tlist *l, const char *name) {
    mrw_tensor_info *t = tl_find(l, name);
    CHECKF(t != NULL, "no %s", name);
    if (t) *t = l->t[--l->n];
}

static char *tl_write(tlist *l, const char *name) {
    static char path[256];
    mrw_error e;
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    if (mrw_safetensors_write(path, l->t, l->n, NULL, 0, NULL, NULL, &e)) {
        fprintf(stderr, "write %s: %s\n", path, e.msg);
        return NULL;
    }
    return path;
}

/* Loads `path` with the given config JSON (NULL: none) and expects status `want` with `needle` in the
 * message. */
static void expect_error(const char *path, const char *config_json, const char *prefix, mrw_status want,
                         const char *needle, const char *what) {
    mrw_vit_params p = quiet_params();
    p.config_json = config_json;
    p.prefix = prefix;
    mrw_tfile *f;
    mrw_error e;
    memset(&e, 0, sizeof e);
    if (!path || mrw_tfile_open(path, &f, &e)) {
        CHECKF(0, "%s: cannot open %s", what, path ? path : "(null)");
        return;
    }
    mrw_vit *v = NULL;
    mrw_status s = mrw_vit_load(f, &p, &v, &e);
    CHECKF(s == want, "%s: status %s, want %s (%s)", what, mrw_status_name(s), mrw_status_name(want), e.msg);
    CHECKF(v == NULL, "%s: model returned on error", what);
    if (s != MRW_OK) {
        CHECKF(strstr(e.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, e.msg, needle);
        fprintf(stderr, "  %-40s -> %s\n", what, e.msg);
    }
    mrw_vit_free(v);
    mrw_tfile_close(f);
}

static const char *SIGLIP_CFG =
    "{\"model_type\":\"siglip_vision_model\",\"hidden_size\":64,\"num_attention_heads\":2,\"patch_size\":8,"
    "\"image_size\":32,\"intermediate_size\":128,\"num_hidden_layers\":2}";

static void test_bad_tensors(void) {
    tlist l;
    const char *model = FIX "siglip_tiny/model.safetensors";
    if (tl_open(&l, model)) {
        CHECKF(0, "cannot open %s", model);
        return;
    }
    /* missing */
    tl_remove(&l, "vision_model.encoder.layers.1.mlp.fc2.bias");
    expect_error(tl_write(&l, "missing.safetensors"), SIGLIP_CFG, NULL, MRW_E_MISSING,
                 "vision_model.encoder.layers.1.mlp.fc2.bias", "missing tensor");
    l.n = mrw_tfile_count(l.f);
    for (int i = 0; i < l.n; i++) l.t[i] = *mrw_tfile_tensor(l.f, i);
    /* extra, inside the tower and beside it */
    mrw_tensor_info extra = *tl_find(&l, "vision_model.post_layernorm.bias");
    extra.name = (char *)"vision_model.encoder.layers.0.extra.bias";
    l.t[l.n++] = extra;
    expect_error(tl_write(&l, "extra.safetensors"), SIGLIP_CFG, NULL, MRW_E_UNKNOWN,
                 "vision_model.encoder.layers.0.extra.bias", "extra tensor in a layer");
    l.t[l.n - 1].name = (char *)"something_else.weight";
    expect_error(tl_write(&l, "extra2.safetensors"), SIGLIP_CFG, NULL, MRW_E_UNKNOWN, "something_else.weight",
                 "extra tensor beside vision_model.");
    l.t[l.n - 1].name = (char *)"text_model.final_layer_norm.bias"; /* a known extra of full checkpoints */
    l.t[l.n++] = *tl_find(&l, "vision_model.post_layernorm.bias");
    l.t[l.n - 1].name = (char *)"vision_model.embeddings.position_ids"; /* old transformers' buffer */
    char *ok = tl_write(&l, "known_extras.safetensors");
    mrw_vit_params p = quiet_params();
    p.config_json = SIGLIP_CFG;
    mrw_vit *v;
    mrw_error e;
    v = NULL;
    CHECK_OK(ok ? mrw_vit_open(ok, &p, &v, &e) : MRW_E_IO, &e);
    mrw_vit_free(v);
    l.n -= 2;
    /* a layer beyond the config */
    mrw_tensor_info *q = tl_find(&l, "vision_model.encoder.layers.1.layer_norm1.weight");
    mrw_tensor_info l9 = *q;
    l9.name = (char *)"vision_model.encoder.layers.2.layer_norm1.weight";
    l.t[l.n++] = l9;
    char *path = tl_write(&l, "layer2.safetensors");
    expect_error(path, SIGLIP_CFG, NULL, MRW_E_SHAPE, "num_hidden_layers", "extra layer vs config");
    expect_error(path, NULL, NULL, MRW_E_MISSING, "vision_model.encoder.layers.2.layer_norm1.bias",
                 "partial extra layer");
    l.n--;
    /* mis-shaped matrix: [64, 32] instead of [64, 64] */
    q = tl_find(&l, "vision_model.encoder.layers.0.self_attn.q_proj.weight");
    q->shape[1] = 32;
    q->nbytes /= 2;
    expect_error(tl_write(&l, "shape.safetensors"), SIGLIP_CFG, NULL, MRW_E_SHAPE,
                 "vision_model.encoder.layers.0.self_attn.q_proj.weight", "mis-shaped q_proj");
    *q = *mrw_tfile_find(l.f, "vision_model.encoder.layers.0.self_attn.q_proj.weight");
    /* position embedding vs patch grid: 15 rows (no square), 9 rows (3x3 grid vs config image 32 -> 4x4) */
    mrw_tensor_info *pe = tl_find(&l, "vision_model.embeddings.position_embedding.weight");
    pe->shape[0] = 15;
    pe->nbytes = 15 * 64 * 4;
    expect_error(tl_write(&l, "pos15.safetensors"), SIGLIP_CFG, NULL, MRW_E_SHAPE, "not a square grid",
                 "position embedding of 15 rows");
    pe->shape[0] = 9;
    pe->nbytes = 9 * 64 * 4;
    path = tl_write(&l, "pos9.safetensors");
    expect_error(path, SIGLIP_CFG, NULL, MRW_E_SHAPE, "image_size 32", "position grid vs config image_size");
    /* without a config the grid defines the image size */
    p = quiet_params();
    p.config_json = "{\"model_type\":\"siglip_vision_model\",\"hidden_size\":64,\"num_attention_heads\":2}";
    if (path && !mrw_vit_open(path, &p, &v, &e)) {
        CHECK(mrw_vit_get_config(v)->image_size == 24 && mrw_vit_get_config(v)->n_tokens == 9);
        mrw_vit_free(v);
    } else {
        CHECKF(0, "pos9 without image_size: %s", e.msg);
    }
    *pe = *mrw_tfile_find(l.f, "vision_model.embeddings.position_embedding.weight");
    /* a patch kernel that is not square */
    mrw_tensor_info *pw = tl_find(&l, "vision_model.embeddings.patch_embedding.weight");
    pw->shape[2] = 4;
    pw->shape[3] = 16;
    expect_error(tl_write(&l, "patch.safetensors"), SIGLIP_CFG, NULL, MRW_E_SHAPE, "patch_embedding.weight",
                 "non-square patch kernel");
    *pw = *mrw_tfile_find(l.f, "vision_model.embeddings.patch_embedding.weight");
    /* an integer tensor where floats belong */
    mrw_tensor_info *lb = tl_find(&l, "vision_model.encoder.layers.0.layer_norm1.bias");
    lb->dtype = MRW_DT_I32;
    expect_error(tl_write(&l, "dtype.safetensors"), SIGLIP_CFG, NULL, MRW_E_UNSUPPORTED,
                 "vision_model.encoder.layers.0.layer_norm1.bias", "integer LayerNorm bias");
    mrw_tfile_close(l.f);
}

static void test_bad_configs(void) {
    const char *model = FIX "siglip_tiny/model.safetensors";
    expect_error(model, "{\"model_type\":\"siglip\",\"vision_config\":{\"hidden_size\":128}}", NULL,
                 MRW_E_SHAPE, "hidden_size", "config hidden_size 128");
    expect_error(model, "{\"model_type\":\"siglip\",\"vision_config\":{\"patch_size\":16}}", NULL,
                 MRW_E_SHAPE, "patch_size", "config patch_size 16");
    expect_error(model, "{\"model_type\":\"siglip\",\"vision_config\":{\"num_attention_heads\":5}}", NULL,
                 MRW_E_SHAPE, "5 attention heads", "5 heads for 64");
    expect_error(model, "{\"model_type\":\"siglip\",\"vision_config\":{}}", NULL, MRW_E_SHAPE, "default 12",
                 "default 12 heads for 64");
    expect_error(model, "{\"model_type\":\"siglip2\"}", NULL, MRW_E_UNSUPPORTED, "NaFlex", "NaFlex SigLIP2");
    expect_error(model, "{\"model_type\":\"whisper\"}", NULL, MRW_E_UNSUPPORTED, "whisper", "whisper config");
    expect_error(model, "{\"model_type\":\"clip\"}", NULL, MRW_E_SHAPE, "CLIP",
                 "CLIP config, SigLIP tensors");
    expect_error(model, "{\"hidden_act\":\"relu\",\"num_attention_heads\":2}", NULL, MRW_E_UNSUPPORTED,
                 "relu", "relu");
    expect_error(model, "{\"hidden_size\":\"64\"}", NULL, MRW_E_FORMAT, "hidden_size", "string hidden_size");
    expect_error(model, "{\"layer_norm_eps\":-1}", NULL, MRW_E_FORMAT, "layer_norm_eps", "negative eps");
    expect_error(model, "{not json", NULL, MRW_E_FORMAT, "JSON", "broken JSON");
    expect_error(FIX "clip_tiny/model.safetensors",
                 "{\"model_type\":\"siglip_vision_model\",\"num_attention_heads\":2}", NULL, MRW_E_SHAPE,
                 "SigLIP", "SigLIP config, CLIP tensors");

    mrw_vit *v;
    mrw_error e;
    mrw_vit_params p = quiet_params();
    CHECK(mrw_vit_open(FIX "does-not-exist", &p, &v, &e) != MRW_OK);
    CHECK(mrw_vit_open(FIX, &p, &v, &e) == MRW_E_IO); /* a directory without model.safetensors */
    CHECKF(strstr(e.msg, "model.safetensors") != NULL, "%s", e.msg);
    p.config_path = FIX "nope/config.json";
    CHECK(mrw_vit_open(FIX "siglip_tiny", &p, &v, &e) == MRW_E_IO);
    p.config_path = FIX "siglip_tiny/config.json";
    p.config_json = "{}";
    CHECK(mrw_vit_open(FIX "siglip_tiny", &p, &v, &e) == MRW_E_ARG);
}

static int write_file(const char *dir, const char *name, const void *data, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    const int ok = fwrite(data, 1, n, fp) == n;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

/* A model directory with a preprocessor_config.json: its mean/std reach the config; a broken one is an
 * error. */
static void test_model_dir(void) {
    char dir[128];
    snprintf(dir, sizeof dir, "%s/model", tmpdir);
    if (mkdir(dir, 0700)) {
        CHECKF(0, "mkdir %s", dir);
        return;
    }
    size_t nw, nc;
    unsigned char *w = t_read_file(FIX "clip_tiny/model.safetensors", &nw);
    unsigned char *cfg = t_read_file(FIX "clip_tiny/config.json", &nc);
    const char *pre = "{\"image_mean\": [0.1, 0.2, 0.3], \"image_std\": [0.5, 0.25, 2], \"size\": 32}";
    CHECK(w && cfg && !write_file(dir, "model.safetensors", w, nw) &&
          !write_file(dir, "config.json", cfg, nc) &&
          !write_file(dir, "preprocessor_config.json", pre, strlen(pre)));
    char slash[160];
    snprintf(slash, sizeof slash, "%s/", dir);
    mrw_vit_params p = quiet_params();
    check_parity(slash, &p, FIX "clip_tiny", "last_hidden_state", 1e-4, "model directory (trailing slash)");
    mrw_vit *v;
    mrw_error e;
    if (!mrw_vit_open(dir, &p, &v, &e)) {
        const mrw_vit_config *c = mrw_vit_get_config(v);
        CHECK(c->mean[0] == 0.1f && c->mean[2] == 0.3f && c->std[1] == 0.25f && c->std[2] == 2.0f);
        mrw_vit_free(v);
    } else {
        CHECKF(0, "%s", e.msg);
    }
    const char *bad = "{\"image_mean\": [0.1, 0.2], \"image_std\": [1, 1, 1]}";
    CHECK(!write_file(dir, "preprocessor_config.json", bad, strlen(bad)));
    CHECK(mrw_vit_open(dir, &p, &v, &e) == MRW_E_FORMAT);
    CHECKF(strstr(e.msg, "image_mean") != NULL, "%s", e.msg);
    static const char *const files[] = {"model.safetensors", "config.json", "preprocessor_config.json"};
    for (int i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    free(w);
    free(cfg);
}

static void test_bad_pixels(void) {
    mrw_vit *v;
    mrw_error e;
    mrw_vit_params p = quiet_params();
    if (mrw_vit_open(FIX "siglip_full", &p, &v, &e)) {
        CHECKF(0, "%s", e.msg);
        return;
    }
    const mrw_vit_config *c = mrw_vit_get_config(v);
    const int n = c->channels * c->image_size * c->image_size;
    float *px = calloc((size_t)n, sizeof *px), *out = calloc((size_t)c->n_tokens * c->hidden, sizeof *out);
    mrw_vit_ctx *ctx;
    CHECK_OK(mrw_vit_ctx_new(v, 1, &ctx, &e), &e);
    px[n - 5] = NAN;
    CHECK(mrw_vit_forward(ctx, px, out, &e) == MRW_E_ARG);
    CHECKF(strstr(e.msg, "not finite") != NULL, "%s", e.msg);
    CHECK(mrw_vit_forward(ctx, NULL, out, &e) == MRW_E_ARG);
    px[n - 5] = 0;
    CHECK_OK(mrw_vit_forward(ctx, px, out, &e), &e); /* a blank image is fine */
    mrw_vit_ctx_free(ctx);
    free(px);
    free(out);
    mrw_vit_free(v);
}

/* Random models: shapes as asked, finite outputs, same result on 1 and 2 threads. */
static void test_random(void) {
    mrw_vit_config shape;
    memset(&shape, 0, sizeof shape);
    shape.family = MRW_VIT_CLIP;
    shape.hidden = 48;
    shape.n_head = 2;
    shape.n_layer = 2;
    shape.intermediate = 80;
    shape.patch = 4;
    shape.image_size = 28;
    mrw_vit *v;
    mrw_error e;
    CHECK_OK(mrw_vit_new_random(&shape, 7, &v, &e), &e);
    if (!v) return;
    const mrw_vit_config *c = mrw_vit_get_config(v);
    CHECK(c->n_tokens == 50 && c->act == MRW_VIT_QUICK_GELU && c->eps == 1e-5f && c->head_dim == 24);
    const size_t n = (size_t)c->n_tokens * c->hidden;
    float *px = malloc(3 * 28 * 28 * sizeof *px), *o1 = malloc(n * 4), *o2 = malloc(n * 4);
    for (int i = 0; i < 3 * 28 * 28; i++) px[i] = sinf(0.1f * i);
    mrw_vit_ctx *c1, *c2;
    CHECK_OK(mrw_vit_ctx_new(v, 1, &c1, &e), &e);
    CHECK_OK(mrw_vit_ctx_new(v, 2, &c2, &e), &e);
    CHECK_OK(mrw_vit_forward(c1, px, o1, &e), &e);
    CHECK_OK(mrw_vit_forward(c2, px, o2, &e), &e);
    double md = 0, mx = 0;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        finite &= isfinite(o1[i]);
        md = fmax(md, fabs(o1[i] - o2[i]));
        mx = fmax(mx, fabs(o1[i]));
    }
    CHECK(finite && mx > 0.1);
    CHECKF(md <= 1e-5 * mx, "1 vs 2 threads differ by %g", md);
    mrw_vit_ctx_free(c1);
    mrw_vit_ctx_free(c2);
    mrw_vit_free(v);
    shape.image_size = 30; /* not a multiple of the patch */
    CHECK(mrw_vit_new_random(&shape, 7, &v, &e) == MRW_E_SHAPE);
    free(px);
    free(o1);
    free(o2);
}

/* The fused AVX-512 attention against the portable GEMM-based one, on shapes that exercise its edges:
 * several 48-query items per head (the last with 5), keys not a multiple of 8, head sizes 64, 24 and 40. */
static void test_attention_paths(void) {
    static const int shapes[][3] = {
        {128, 2, 40}, {48, 2, 40}, {120, 3, 12}}; /* hidden, heads, image (patch 4) */
    for (int s = 0; s < 3; s++) {
        mrw_vit_config shape;
        memset(&shape, 0, sizeof shape);
        shape.family = s == 1 ? MRW_VIT_SIGLIP : MRW_VIT_CLIP;
        shape.hidden = shapes[s][0];
        shape.n_head = shapes[s][1];
        shape.n_layer = 2;
        shape.intermediate = 96;
        shape.patch = 4;
        shape.image_size = shapes[s][2];
        mrw_vit *v;
        mrw_error e;
        CHECK_OK(mrw_vit_new_random(&shape, 11 + s, &v, &e), &e);
        if (!v) continue;
        const mrw_vit_config *c = mrw_vit_get_config(v);
        const size_t n = (size_t)c->n_tokens * c->hidden, npx = (size_t)3 * c->image_size * c->image_size;
        float *px = malloc(npx * 4), *o1 = malloc(n * 4), *o2 = malloc(n * 4);
        for (size_t i = 0; i < npx; i++) px[i] = cosf(0.37f * (float)i);
        mrw_vit_ctx *fused, *portable;
        CHECK_OK(mrw_vit_ctx_new(v, 2, &fused, &e), &e);
        setenv("MRW_VIT_PORTABLE_ATTENTION", "1", 1);
        CHECK_OK(mrw_vit_ctx_new(v, 2, &portable, &e), &e);
        unsetenv("MRW_VIT_PORTABLE_ATTENTION");
        CHECK_OK(mrw_vit_forward(fused, px, o1, &e), &e);
        CHECK_OK(mrw_vit_forward(portable, px, o2, &e), &e);
        double md = 0, mx = 0;
        for (size_t i = 0; i < n; i++) {
            md = fmax(md, fabs(o1[i] - o2[i]));
            mx = fmax(mx, fabs(o2[i]));
        }
        CHECKF(md <= 1e-5 * mx && mx > 0.1,
               "%d tokens, head size %d: fused vs portable attention differ by %g (max %g)", c->n_tokens,
               c->head_dim, md, mx);
        mrw_vit_ctx_free(fused);
        mrw_vit_ctx_free(portable);
        mrw_vit_free(v);
        free(px);
        free(o1);
        free(o2);
    }
}

/* ------------------------------------------------------------------------------ full-size (opt-in) */

static void test_full_size(const char *root) {
    static const char *const names[] = {"siglip2-base-patch16-384", "clip-vit-large-patch14-336"};
    for (int i = 0; i < 2; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        mrw_vit *v;
        mrw_error e;
        golden g;
        if (golden_open(dir, "last_hidden_state", &g)) {
            fprintf(stderr, "  %s: not built, skipped\n", dir);
            continue;
        }
        mrw_vit_params p = quiet_params();
        CHECK_OK(mrw_vit_open(dir, &p, &v, &e), &e);
        if (v) {
            const double rel = run_rel(v, &g, 0);
            fprintf(stderr, "  full-size %-30s rel err %.3e\n", names[i], rel);
            CHECKF(rel <= 1e-4, "%s: relative error %.3g", names[i], rel);
            mrw_vit_free(v);
        }
        mrw_tfile_close(g.f);
    }
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_vit_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_parity_dirs();
    test_low_precision();
    test_prefixes();
    test_no_config();
    test_bad_tensors();
    test_bad_configs();
    test_model_dir();
    test_bad_pixels();
    test_random();
    test_attention_paths();
    const char *full = getenv("MRW_VIT_PARITY_DIR");
    if (full && *full) test_full_size(full);
    static const char *const files[] = {"missing", "extra", "extra2", "known_extras", "layer2",
                                        "shape",   "pos15", "pos9",   "patch",        "dtype"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%s.safetensors", tmpdir, files[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    TEST_MAIN_END();
}
