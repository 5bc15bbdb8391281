/* Encoder training (src/train/vit_train.c, whisper_train.c) against PyTorch autograd on the tiny fixtures of
 * tests/reference/make_encoder_grad_fixtures.py (transformers' SiglipVisionModel, CLIPVisionModel and
 * WhisperEncoder, B = 2):
 *   - the training forward equals transformers' last_hidden_state and the inference encoders (mrw_vit_forward,
 *     mrw_whisper_forward) on the same files: max |diff| / max |golden| <= 1e-5,
 *   - every parameter gradient and the input gradient: max |diff| / max |golden| <= 1e-4 per tensor,
 *   - central finite differences agree with a few gradient entries, gradients accumulate (+=),
 *   - missing / mis-shaped tensors are clear errors. */
#include <stdint.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "models/vit.h"
#include "models/whisper_enc.h"
#include "train/vit_train.h"
#include "train/whisper_train.h"
#include "test.h"

#define FIX "tests/fixtures/encoder_grad/"
#define B 2

static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mg = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        md = d > md || d != d ? d : md;
        mg = fabs(b[i]) > mg ? fabs(b[i]) : mg;
    }
    return mg > 0 ? md / mg : md;
}

static const float *gt(const mrw_tfile *f, const char *name, size_t n) {
    const mrw_tensor_info *t = mrw_tfile_find(f, name);
    if (!t || t->dtype != MRW_DT_F32 || (size_t)mrw_tensor_numel(t) != n) {
        fprintf(stderr, "golden tensor %s missing or not %zu f32 values\n", name, n);
        return NULL;
    }
    return t->data;
}

/* Writes a parameter set as a safetensors file under its own names (what a v2 checkpoint holds). */
static int write_params(const mrw_param_set *ps, const char *path) {
    mrw_tensor_info *t = calloc((size_t)ps->n, sizeof *t);
    for (int i = 0; i < ps->n; i++) {
        t[i].name = ps->p[i].name;
        t[i].dtype = MRW_DT_F32;
        t[i].ndim = ps->p[i].ndim;
        for (int d = 0; d < ps->p[i].ndim; d++) t[i].shape[d] = ps->p[i].shape[d];
        t[i].data = mrw_param_w(ps, i);
        t[i].nbytes = ps->p[i].n * sizeof(float);
    }
    mrw_error e;
    const int rc = mrw_safetensors_write(path, t, ps->n, NULL, 0, NULL, NULL, &e) ? -1 : 0;
    free(t);
    return rc;
}

static uint64_t rng_state = 99;
static int rnd(int n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng_state >> 33) % (uint64_t)n);
}

/* A training encoder seen through function pointers, so one checker serves both. */
typedef struct {
    void *m;
    mrw_param_set *ps;
    mrw_status (*fwd)(void *m, const float *in, int b, int frames, float *out, mrw_error *e);
    void (*bwd)(void *m, const float *d_out, float *d_in);
    int frames;
} enc;

static double loss(const enc *E, const float *in, const float *d_out, float *out, size_t n_out) {
    mrw_error e;
    if (E->fwd(E->m, in, B, E->frames, out, &e)) return NAN;
    double L = 0;
    for (size_t i = 0; i < n_out; i++) L += (double)out[i] * d_out[i];
    return L;
}

/* Checks forward, gradients, accumulation and finite differences against golden.safetensors in dir. */
static void check_grads(const char *name, const enc *E, const char *dir, size_t n_in, size_t n_out,
                        const char *strip, const float *inference_out) {
    char path[256];
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    mrw_tfile *g;
    mrw_error e;
    if (mrw_tfile_open(path, &g, &e)) {
        CHECKF(0, "%s: %s", path, e.msg);
        return;
    }
    const float *in = gt(g, "input", n_in), *d_out = gt(g, "d_out", n_out), *want = gt(g, "out", n_out),
                *gin = gt(g, "grad.input", n_in);
    CHECK(in && d_out && want && gin);
    if (!in || !d_out || !want || !gin) {
        mrw_tfile_close(g);
        return;
    }
    float *out = malloc(n_out * sizeof *out), *din = malloc(n_in * sizeof *din), *inp = malloc(n_in * sizeof *inp);
    memcpy(inp, in, n_in * sizeof *inp);
    CHECK_OK(E->fwd(E->m, in, B, E->frames, out, &e), &e);
    const double rf = rel_err(out, want, n_out);
    CHECKF(rf <= 1e-5, "%s: forward vs transformers rel %.3g", name, rf);
    double ri = 0;
    if (inference_out) {
        ri = rel_err(out, inference_out, n_out);
        CHECKF(ri <= 1e-5, "%s: forward vs the inference encoder rel %.3g", name, ri);
    }
    mrw_param_zero_grad(E->ps);
    E->bwd(E->m, d_out, din);
    double worst = rel_err(din, gin, n_in);
    CHECKF(worst <= 1e-4, "%s: grad.input rel %.3g", name, worst);
    for (int i = 0; i < E->ps->n; i++) {
        char gname[200];
        snprintf(gname, sizeof gname, "grad.%s", E->ps->p[i].name + strlen(strip));
        const float *gw = gt(g, gname, E->ps->p[i].n);
        CHECKF(gw != NULL, "%s: no golden %s", name, gname);
        if (!gw) continue;
        double mg = 0;
        for (size_t j = 0; j < E->ps->p[i].n; j++) mg = fmax(mg, fabs(gw[j]));
        /* attention's key bias has an analytically zero gradient (softmax ignores a per-row constant):
         * both sides are rounding noise there, so compare absolutely */
        double r = rel_err(mrw_param_g(E->ps, i), gw, E->ps->p[i].n);
        if (mg < 1e-6) { /* |ours| <= 1e-5 counts as zero */
            r = 0;
            for (size_t j = 0; j < E->ps->p[i].n; j++) r = fmax(r, fabs(mrw_param_g(E->ps, i)[j]) * 10);
        }
        CHECKF(r <= 1e-4, "%s: %s rel %.3g", name, gname, r);
        worst = r > worst ? r : worst;
    }
    float *g1 = malloc(E->ps->total * sizeof *g1);
    memcpy(g1, E->ps->g, E->ps->total * sizeof *g1);
    E->bwd(E->m, d_out, NULL);
    double acc = 0;
    for (size_t i = 0; i < E->ps->total; i++) acc = fmax(acc, fabs(E->ps->g[i] - 2 * g1[i]) / (1e-6 + fabs(g1[i])));
    CHECKF(acc <= 1e-5, "%s: accumulated gradients are not 2x (rel %.3g)", name, acc);
    double fd_worst = 0;
    for (int trial = 0; trial < 12; trial++) {
        float *w, gv;
        if (trial < 9) {
            int pi;
            int live = 0; /* frozen tensors (no gradient by design: CLIP's post_layernorm, Whisper's positions)
                           * and the key biases (zero gradient) are skipped */
            do {
                pi = rnd(E->ps->n);
                live = 0;
                for (size_t j = 0; j < E->ps->p[pi].n && !live; j++) live = fabsf(g1[E->ps->p[pi].offset + j]) > 1e-4f;
            } while (!live);
            const size_t j = (size_t)rnd((int)E->ps->p[pi].n);
            w = mrw_param_w(E->ps, pi) + j;
            gv = g1[E->ps->p[pi].offset + j];
        } else {
            const size_t j = (size_t)rnd((int)n_in);
            w = inp + j;
            gv = din[j];
        }
        const float w0 = *w, h = 1e-3f;
        *w = w0 + h;
        const double lp = loss(E, inp, d_out, out, n_out);
        *w = w0 - h;
        const double lm = loss(E, inp, d_out, out, n_out);
        *w = w0;
        const double fd = (lp - lm) / (2 * h), d = fabs(fd - gv) / fmax(1.0, fabs(gv));
        fd_worst = d > fd_worst ? d : fd_worst;
    }
    CHECKF(fd_worst <= 1e-2, "%s: finite differences disagree (rel %.3g)", name, fd_worst);
    fprintf(stderr, "%-8s forward %.2g (inference %.2g), worst gradient rel %.2g, finite differences %.2g\n", name,
            rf, ri, worst, fd_worst);
    free(g1), free(out), free(din), free(inp);
    mrw_tfile_close(g);
}

/* ------------------------------------------------------------------------------------------------- ViT */

static mrw_status vit_fwd(void *m, const float *in, int b, int frames, float *out, mrw_error *e) {
    return mrw_vit_train_forward(m, in, b, out, e);
}
static void vit_bwd(void *m, const float *d, float *din) { mrw_vit_train_backward(m, d, din); }

static void test_vit(const char *name) {
    char dir[128];
    snprintf(dir, sizeof dir, FIX "%s", name);
    mrw_vit_train *m = NULL;
    mrw_error e;
    CHECK_OK(mrw_vit_train_open(dir, NULL, B, 2, &m, &e), &e);
    if (!m) return;
    const mrw_vit_config *c = mrw_vit_train_config(m);
    const size_t img = (size_t)c->channels * c->image_size * c->image_size, n_out = (size_t)c->n_tokens * c->hidden;
    /* the inference encoder on the same files, image by image */
    float *inf = malloc(B * n_out * sizeof *inf);
    int have_inf = 0;
    mrw_vit *v;
    char gpath[160];
    snprintf(gpath, sizeof gpath, "%s/golden.safetensors", dir);
    mrw_tfile *g;
    if (!mrw_vit_open(dir, NULL, &v, &e) && !mrw_tfile_open(gpath, &g, &e)) {
        const float *px = gt(g, "input", B * img);
        mrw_vit_ctx *ctx;
        if (px && !mrw_vit_ctx_new(v, 2, &ctx, &e)) {
            have_inf = 1;
            for (int b = 0; b < B; b++) have_inf &= !mrw_vit_forward(ctx, px + b * img, inf + b * n_out, &e);
            mrw_vit_ctx_free(ctx);
        }
        mrw_tfile_close(g);
        mrw_vit_free(v);
    }
    CHECKF(have_inf, "%s: inference encoder: %s", name, e.msg);
    enc E = {m, mrw_vit_train_params(m), vit_fwd, vit_bwd, 0};
    check_grads(name, &E, dir, B * img, B * n_out, "encoder.model.", have_inf ? inf : NULL);
    /* names as a ModRWKV v2 checkpoint holds them */
    CHECK(mrw_param_find(E.ps, "encoder.model.vision_model.encoder.layers.1.mlp.fc2.weight") >= 0);
    CHECK(E.ps->p[0].group == MRW_PG_ENCODER);
    /* the set saved as is loads in the inference encoder under "encoder.model." and computes the same */
    char ck[] = "/tmp/mrw_vit_ckptXXXXXX";
    const int fd = mkstemp(ck);
    if (fd >= 0) close(fd);
    CHECK(write_params(E.ps, ck) == 0);
    mrw_tfile *cf;
    char cfg[160];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    if (have_inf && !mrw_tfile_open(ck, &cf, &e)) {
        mrw_vit_params vp = {.prefix = "encoder.model.", .config_path = cfg, .quiet = 1};
        mrw_vit_ctx *ctx;
        float *o = malloc(n_out * sizeof *o), *px = malloc(img * sizeof *px);
        for (size_t i = 0; i < img; i++) px[i] = cosf(0.1f * i);
        CHECK_OK(mrw_vit_load(cf, &vp, &v, &e), &e);
        if (v && !mrw_vit_ctx_new(v, 1, &ctx, &e)) {
            CHECK_OK(mrw_vit_forward(ctx, px, o, &e), &e);
            CHECK_OK(mrw_vit_train_forward(m, px, 1, inf, &e), &e);
            CHECKF(rel_err(inf, o, n_out) <= 1e-5, "%s: checkpoint round trip", name);
            mrw_vit_ctx_free(ctx);
        }
        mrw_vit_free(v);
        free(o), free(px);
        mrw_tfile_close(cf);
        /* and back into training: the same weights */
        mrw_vit_train *m2 = NULL;
        CHECK_OK(mrw_vit_train_open(ck, &vp, 1, 1, &m2, &e), &e);
        if (m2) {
            mrw_param_set *p2 = mrw_vit_train_params(m2);
            CHECK(p2->total == E.ps->total && memcmp(p2->w, E.ps->w, p2->total * sizeof(float)) == 0);
            mrw_vit_train_free(m2);
        }
    }
    unlink(ck);
    free(inf);
    mrw_vit_train_free(m);
}

static void test_vit_errors(void) {
    mrw_vit_config c = {.family = MRW_VIT_SIGLIP, .hidden = 24, .n_layer = 1, .n_head = 5, .intermediate = 8,
                        .channels = 3, .patch = 4, .image_size = 12, .eps = 1e-6f};
    mrw_vit_train *m = NULL;
    mrw_error e;
    CHECK(mrw_vit_train_new(&c, 1, 1, &m, &e) == MRW_E_ARG && !m); /* 24 not divisible by 5 heads */
    c.n_head = 2, c.image_size = 14;
    CHECK(mrw_vit_train_new(&c, 1, 1, &m, &e) == MRW_E_ARG && !m); /* 14 not a multiple of the patch */
    c.image_size = 12, c.hidden = 20; /* the fixture's tensors are 24 wide */
    CHECK_OK(mrw_vit_train_new(&c, 1, 1, &m, &e), &e);
    mrw_tfile *f;
    CHECK_OK(mrw_tfile_open(FIX "siglip/model.safetensors", &f, &e), &e);
    if (m && f) {
        CHECK(mrw_vit_train_load(m, f, "vision_model.", &e) == MRW_E_SHAPE && strstr(e.msg, "patch_embedding"));
        CHECK(mrw_vit_train_load(m, f, "nothere.", &e) == MRW_E_MISSING && strstr(e.msg, "nothere."));
        float px[3 * 12 * 12] = {0}, out[9 * 20];
        CHECK(mrw_vit_train_forward(m, px, 2, out, &e) == MRW_E_ARG); /* batch above max_B */
        px[5] = NAN;
        CHECK(mrw_vit_train_forward(m, px, 1, out, &e) == MRW_E_ARG);
    }
    mrw_tfile_close(f);
    mrw_vit_train_free(m);
    CHECK(mrw_vit_train_open("/nonexistent/dir", NULL, 1, 1, &m, &e) != MRW_OK && !m);
}

/* --------------------------------------------------------------------------------------------- Whisper */

static mrw_status wh_fwd(void *m, const float *in, int b, int frames, float *out, mrw_error *e) {
    return mrw_whisper_train_forward(m, in, b, frames, out, e);
}
static void wh_bwd(void *m, const float *d, float *din) { mrw_whisper_train_backward(m, d, din); }

static void test_whisper(void) {
    const char *dir = FIX "whisper";
    mrw_whisper_train *m = NULL;
    mrw_error e;
    CHECK_OK(mrw_whisper_train_open(dir, NULL, B, 0, 2, &m, &e), &e);
    if (!m) return;
    const mrw_whisper_config *c = mrw_whisper_train_config(m);
    const int F = 2 * c->n_pos, T = mrw_whisper_enc_out_frames(F);
    const size_t n_in = (size_t)c->n_mels * F, n_out = (size_t)T * c->d_model;
    float *inf = malloc(B * n_out * sizeof *inf);
    int have_inf = 0;
    mrw_tfile *f, *g;
    if (!mrw_tfile_open(FIX "whisper/model.safetensors", &f, &e)) {
        mrw_whisper_params wp = {.config_path = FIX "whisper/config.json"};
        mrw_whisper_enc *w;
        if (!mrw_whisper_enc_load(f, &wp, &w, &e)) {
            if (!mrw_tfile_open(FIX "whisper/golden.safetensors", &g, &e)) {
                const float *mel = gt(g, "input", B * n_in);
                mrw_kctx k;
                mrw_kctx_init(&k, 2);
                have_inf = mel != NULL;
                for (int b = 0; b < B && have_inf; b++)
                    have_inf = !mrw_whisper_enc_forward(w, &k, mel + b * n_in, F, inf + b * n_out, &e);
                mrw_kctx_free(&k);
                mrw_tfile_close(g);
            }
            mrw_whisper_enc_free(w);
        }
        mrw_tfile_close(f);
    }
    CHECKF(have_inf, "whisper: inference encoder: %s", e.msg);
    enc E = {m, mrw_whisper_train_params(m), wh_fwd, wh_bwd, F};
    check_grads("whisper", &E, dir, B * n_in, B * n_out, "encoder.model.", have_inf ? inf : NULL);
    CHECK(mrw_param_find(E.ps, "encoder.model.layers.1.self_attn.k_proj.weight") >= 0);
    CHECK(mrw_param_find(E.ps, "encoder.model.layers.1.self_attn.k_proj.bias") < 0);
    /* the set saved as is loads in the inference encoder under "encoder.model." */
    char ck[] = "/tmp/mrw_wh_ckptXXXXXX";
    const int fd = mkstemp(ck);
    if (fd >= 0) close(fd);
    CHECK(write_params(E.ps, ck) == 0);
    if (!mrw_tfile_open(ck, &f, &e)) {
        mrw_whisper_params wp = {.prefix = "encoder.model.", .config_path = FIX "whisper/config.json"};
        mrw_whisper_enc *w = NULL;
        CHECK_OK(mrw_whisper_enc_load(f, &wp, &w, &e), &e);
        CHECK(w && !strcmp(mrw_whisper_enc_prefix(w), "encoder.model."));
        mrw_whisper_enc_free(w);
        mrw_tfile_close(f);
    }
    unlink(ck);
    /* a shorter clip (odd frame count): forward equals the inference encoder's on the same frames */
    const int F2 = F - 3, T2 = mrw_whisper_enc_out_frames(F2);
    float *mel2 = malloc(B * (size_t)c->n_mels * F2 * sizeof *mel2), *o2 = malloc(B * (size_t)T2 * c->d_model * sizeof *o2);
    for (size_t i = 0; i < B * (size_t)c->n_mels * F2; i++) mel2[i] = sinf(0.37f * i);
    CHECK_OK(mrw_whisper_train_forward(m, mel2, B, F2, o2, &e), &e);
    if (!mrw_tfile_open(FIX "whisper/model.safetensors", &f, &e)) {
        mrw_whisper_params wp = {.config_path = FIX "whisper/config.json"};
        mrw_whisper_enc *w;
        if (!mrw_whisper_enc_load(f, &wp, &w, &e)) {
            mrw_kctx k;
            mrw_kctx_init(&k, 1);
            float *r = malloc((size_t)T2 * c->d_model * sizeof *r);
            double worst = 0;
            for (int b = 0; b < B; b++) {
                CHECK_OK(mrw_whisper_enc_forward(w, &k, mel2 + (size_t)b * c->n_mels * F2, F2, r, &e), &e);
                worst = fmax(worst, rel_err(o2 + (size_t)b * T2 * c->d_model, r, (size_t)T2 * c->d_model));
            }
            CHECKF(worst <= 1e-5, "whisper: %d-frame forward vs inference rel %.3g", F2, worst);
            free(r);
            mrw_kctx_free(&k);
            mrw_whisper_enc_free(w);
        }
        mrw_tfile_close(f);
    }
    CHECK(mrw_whisper_train_forward(m, mel2, B, F + 1, o2, &e) == MRW_E_ARG); /* beyond the positions */
    free(mel2), free(o2), free(inf);
    /* errors: inconsistent configurations, tensors of another size, a missing file */
    mrw_whisper_config bad = *c;
    mrw_whisper_train_free(m);
    mrw_whisper_train *z = NULL;
    bad.n_heads = 5;
    CHECK(mrw_whisper_train_new(&bad, 1, 0, 1, &z, &e) == MRW_E_ARG && !z);
    bad.n_heads = 3;
    CHECK(mrw_whisper_train_new(&bad, 1, 2 * bad.n_pos + 2, 1, &z, &e) == MRW_E_ARG && !z);
    bad.ffn_dim += 1;
    CHECK_OK(mrw_whisper_train_new(&bad, 1, 0, 1, &z, &e), &e);
    if (z && !mrw_tfile_open(FIX "whisper/model.safetensors", &f, &e)) {
        CHECK(mrw_whisper_train_load(z, f, "", &e) == MRW_E_SHAPE && strstr(e.msg, "layers.0.fc1.weight"));
        CHECK(mrw_whisper_train_load(z, f, "model.encoder.", &e) == MRW_E_MISSING);
        mrw_tfile_close(f);
    }
    mrw_whisper_train_free(z);
    CHECK(mrw_whisper_train_open("/nonexistent/whisper", NULL, 1, 0, 1, &z, &e) != MRW_OK && !z);
}

int main(void) {
    test_vit("siglip");
    test_vit("clip");
    test_vit_errors();
    test_whisper();
    TEST_MAIN_END();
}
