/* Trainable adapters and Conv1D compression (src/train/adapter_train.c):
 *   - forward equals the inference path (mrw_compress_forward + mrw_adapter_forward loaded from the same file),
 *   - forward, parameter gradients and d_x equal PyTorch autograd on the fixtures of
 *     tests/reference/make_adapter_grad_fixtures.py (every kind, B = 2, odd T): max |diff| / max |golden|
 *     <= 1e-4 per tensor,
 *   - central finite differences (in double over the fp32 forward) agree with a few gradient entries,
 *   - gradients accumulate (+=) and scale linearly,
 *   - mrw_tadapter_load reads v1 names (modality.world_encoder.adapter.*) and rejects missing, mis-shaped
 *     and foreign tensors with clear errors, leaving the weights untouched. */
#include <stdint.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "models/adapter.h"
#include "train/adapter_train.h"
#include "test.h"

#define FIX "tests/fixtures/adapter_grad/"

static const char *CASES[] = {"v1_vision", "v1_audio", "v2", "v2_conv", "v2_conv_compress", "v1_audio_compress",
                              "v2_narrow_compress"};

static int meta_int(const mrw_tfile *f, const char *key) {
    const mrw_meta *m = mrw_tfile_find_meta(f, key);
    if (!m || m->type != MRW_MV_STRING) return -1;
    char buf[32];
    snprintf(buf, sizeof buf, "%.*s", (int)m->v.s.len, m->v.s.ptr);
    return atoi(buf);
}

static const float *tensor(const mrw_tfile *f, const char *name, int64_t n) {
    const mrw_tensor_info *t = mrw_tfile_find(f, name);
    if (!t || t->dtype != MRW_DT_F32 || mrw_tensor_numel(t) != n) {
        fprintf(stderr, "fixture tensor %s missing or wrong (%lld floats expected)\n", name, (long long)n);
        return NULL;
    }
    return t->data;
}

static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mg = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        md = d > md || d != d ? d : md;
        mg = fabs(b[i]) > mg ? fabs(b[i]) : mg;
    }
    return mg > 0 ? md / mg : md;
}

static double loss_of(mrw_tadapter *a, const float *x, int B, int T, const float *d_out, float *out, size_t n_out) {
    mrw_error e;
    if (mrw_tadapter_forward(a, x, B, T, out, &e)) return NAN;
    double L = 0;
    for (size_t i = 0; i < n_out; i++) L += (double)out[i] * d_out[i];
    return L;
}

/* Forward of the inference adapter (compression + adapter) per sample, from the same file. */
static double inference_rel(const char *path, const mrw_tadapter_config *c, const float *x, int B, int T,
                            const float *mine, int To) {
    mrw_tfile *f;
    mrw_error e;
    if (mrw_tfile_open(path, &f, &e)) return 1e30;
    mrw_arena arena = {0};
    mrw_wloader L;
    double rel = 1e30;
    mrw_adapter ad;
    mrw_compress cp;
    mrw_kctx k;
    mrw_kctx_init(&k, 2);
    if (!mrw_wl_init(&L, f, "", &arena, &e) && !mrw_adapter_load(&L, "proj.", c->E, c->C, &ad, &e) &&
        (!c->compress_k || !mrw_compress_load(&L, "compress.", c->E, 0, c->compress_s, &cp, &e))) {
        float *out = malloc((size_t)B * To * c->C * sizeof *out), *xc = malloc((size_t)T * c->E * sizeof *xc);
        const int Tc = c->compress_k ? mrw_compress_out_len(&cp, T) : T;
        float *scr = malloc((mrw_adapter_scratch_floats(&ad, Tc) +
                             (c->compress_k ? mrw_compress_scratch_floats(&cp, T) : 0) + 64) * sizeof *scr);
        int ok = mrw_adapter_out_len(&ad, Tc) == To;
        CHECKF(ok, "inference adapter length %d vs %d", mrw_adapter_out_len(&ad, Tc), To);
        CHECK(ad.kind == (c->kind == MRW_TADAPTER_V1_AUDIO ? MRW_ADAPTER_AUDIO : MRW_ADAPTER_MLP));
        CHECK(ad.version == (c->kind == MRW_TADAPTER_V2 ? 2 : 1));
        for (int b = 0; b < B && ok; b++) {
            const float *xb = x + (size_t)b * T * c->E;
            if (c->compress_k) {
                ok = !mrw_compress_forward(&cp, &k, xb, T, xc, scr, &e);
                xb = xc;
            }
            ok = ok && !mrw_adapter_forward(&ad, &k, xb, Tc, out + (size_t)b * To * c->C, scr, &e);
        }
        if (ok) rel = rel_err(mine, out, (size_t)B * To * c->C);
        else fprintf(stderr, "inference forward: %s\n", e.msg);
        free(out), free(xc), free(scr);
    } else {
        fprintf(stderr, "inference load: %s\n", e.msg);
    }
    mrw_wl_done(&L);
    mrw_arena_free(&arena);
    mrw_kctx_free(&k);
    mrw_tfile_close(f);
    return rel;
}

static uint64_t rng_state = 12345;
static int rnd(int n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng_state >> 33) % (uint64_t)n);
}

static void run_case(const char *name) {
    char path[256];
    snprintf(path, sizeof path, FIX "%s.safetensors", name);
    mrw_tfile *f;
    mrw_error e;
    if (mrw_tfile_open(path, &f, &e)) {
        CHECKF(0, "%s: %s", path, e.msg);
        return;
    }
    mrw_tadapter_config c = {0};
    c.kind = (mrw_tadapter_kind)meta_int(f, "kind");
    c.E = meta_int(f, "E"), c.C = meta_int(f, "C"), c.hidden = meta_int(f, "hidden"), c.v2_conv = meta_int(f, "v2_conv");
    c.compress_k = meta_int(f, "compress_k"), c.compress_s = meta_int(f, "compress_s");
    const int B = meta_int(f, "B"), T = meta_int(f, "T");
    mrw_tadapter *a = NULL;
    CHECK_OK(mrw_tadapter_new(&c, B, T + 3, 2, &a, &e), &e);
    if (!a) {
        mrw_tfile_close(f);
        return;
    }
    mrw_param_set *ps = mrw_tadapter_params(a);
    CHECK_OK(mrw_tadapter_load(a, path, &e), &e);
    const int To = mrw_tadapter_out_len(a, T);
    const size_t n_out = (size_t)B * To * c.C, n_x = (size_t)B * T * c.E;
    const float *x = tensor(f, "x", (int64_t)n_x), *d_out = tensor(f, "d_out", (int64_t)n_out),
                *want = tensor(f, "out", (int64_t)n_out), *gx = tensor(f, "grad.x", (int64_t)n_x);
    CHECK(x && d_out && want && gx);
    if (!x || !d_out || !want || !gx) goto done;
    float *out = malloc(n_out * sizeof *out), *dx = malloc(n_x * sizeof *dx);
    CHECK_OK(mrw_tadapter_forward(a, x, B, T, out, &e), &e);
    double r = rel_err(out, want, n_out);
    const double rf = r;
    CHECKF(r <= 1e-5, "%s: forward vs torch rel %.3g", name, r);
    double ri = inference_rel(path, &c, x, B, T, out, To);
    CHECKF(ri <= 1e-5, "%s: forward vs inference adapter rel %.3g", name, ri);
    mrw_param_zero_grad(ps);
    mrw_tadapter_backward(a, d_out, dx);
    double worst = rel_err(dx, gx, n_x);
    CHECKF(worst <= 1e-4, "%s: grad.x rel %.3g", name, worst);
    for (int i = 0; i < ps->n; i++) {
        char gname[160];
        snprintf(gname, sizeof gname, "grad.%s", ps->p[i].name);
        const float *g = tensor(f, gname, (int64_t)ps->p[i].n);
        CHECKF(g != NULL, "%s: no golden for %s", name, ps->p[i].name);
        if (!g) continue;
        r = rel_err(mrw_param_g(ps, i), g, ps->p[i].n);
        CHECKF(r <= 1e-4, "%s: %s rel %.3g", name, gname, r);
        worst = r > worst ? r : worst;
    }
    /* accumulation: a second backward with the same d_out doubles every gradient; no d_x this time */
    float *g1 = malloc(ps->total * sizeof *g1);
    memcpy(g1, ps->g, ps->total * sizeof *g1);
    mrw_tadapter_backward(a, d_out, NULL);
    double acc = 0;
    for (size_t i = 0; i < ps->total; i++) acc = fmax(acc, fabs(ps->g[i] - 2 * g1[i]) / (1e-6 + fabs(g1[i])));
    CHECKF(acc <= 1e-5, "%s: accumulated gradients are not 2x (rel %.3g)", name, acc);
    /* finite differences on a few parameters and inputs */
    double fd_worst = 0;
    float *xp = malloc(n_x * sizeof *xp);
    memcpy(xp, x, n_x * sizeof *xp);
    for (int trial = 0; trial < 12; trial++) {
        float *w, g;
        if (trial < 8) {
            const int pi = rnd(ps->n);
            const size_t j = (size_t)rnd((int)ps->p[pi].n);
            w = mrw_param_w(ps, pi) + j;
            g = g1[ps->p[pi].offset + j];
        } else {
            const size_t j = (size_t)rnd((int)n_x);
            w = xp + j;
            g = dx[j];
        }
        const float w0 = *w, h = 1e-3f;
        *w = w0 + h;
        const double lp = loss_of(a, xp, B, T, d_out, out, n_out);
        *w = w0 - h;
        const double lm = loss_of(a, xp, B, T, d_out, out, n_out);
        *w = w0;
        const double fd = (lp - lm) / (2 * h), d = fabs(fd - g) / fmax(1.0, fabs(g));
        if (getenv("FD_DEBUG")) fprintf(stderr, "trial %d fd %.6g g %.6g\n", trial, fd, g);
        fd_worst = d > fd_worst ? d : fd_worst;
    }
    CHECKF(fd_worst <= 1e-2, "%s: finite differences disagree (rel %.3g)", name, fd_worst);
    fprintf(stderr, "%-20s out %d x %d x %d: forward %.2g, inference %.2g, worst grad rel %.2g, fd %.2g\n", name, B,
            To, c.C, rf, ri, worst, fd_worst);
    free(xp), free(g1), free(out), free(dx);
done:
    mrw_tadapter_free(a);
    mrw_tfile_close(f);
}

/* Writes the params of `a` under another prefix (and optionally drops / reshapes / adds one tensor). */
static int write_renamed(mrw_tadapter *a, const char *path, const char *prefix, const char *drop, const char *extra) {
    mrw_param_set *ps = mrw_tadapter_params(a);
    mrw_tensor_info t[40];
    char names[40][160];
    int n = 0;
    for (int i = 0; i < ps->n && n < 38; i++) {
        const mrw_param *p = &ps->p[i];
        if (drop && !strcmp(p->name, drop)) continue;
        if (!strncmp(p->name, "proj.", 5)) snprintf(names[n], sizeof names[n], "%s%s", prefix, p->name + 5);
        else snprintf(names[n], sizeof names[n], "%s", p->name);
        memset(&t[n], 0, sizeof t[n]);
        t[n].name = names[n];
        t[n].dtype = MRW_DT_F32;
        t[n].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) t[n].shape[d] = p->shape[d];
        t[n].data = mrw_param_w(ps, i);
        t[n].nbytes = p->n * sizeof(float);
        n++;
    }
    if (extra) {
        memset(&t[n], 0, sizeof t[n]);
        snprintf(names[n], sizeof names[n], "%s", extra);
        t[n].name = names[n];
        t[n].dtype = MRW_DT_F32;
        t[n].ndim = 1;
        t[n].shape[0] = 1;
        t[n].data = ps->w;
        t[n].nbytes = 4;
        n++;
    }
    mrw_error e;
    return mrw_safetensors_write(path, t, n, NULL, 0, NULL, NULL, &e) ? -1 : 0;
}

static void test_load(void) {
    mrw_tadapter_config c = {.kind = MRW_TADAPTER_V1_VISION, .E = 24, .C = 16};
    mrw_tadapter *a, *b;
    mrw_error e;
    CHECK_OK(mrw_tadapter_new(&c, 1, 4, 1, &a, &e), &e);
    CHECK_OK(mrw_tadapter_new(&c, 1, 4, 1, &b, &e), &e);
    mrw_tadapter_init(a, 7);
    mrw_tadapter_init(b, 8);
    mrw_param_set *pa = mrw_tadapter_params(a), *pb = mrw_tadapter_params(b);
    CHECK(memcmp(pa->w, pb->w, pa->total * sizeof(float)) != 0);
    /* init bounds: |w| <= 1/sqrt(fan_in), LN weight 1 */
    const int i0 = mrw_param_find(pa, "proj.proj.0.weight"), iln = mrw_param_find(pa, "proj.pre_norm.weight");
    CHECK(i0 >= 0 && iln >= 0);
    float mx = 0;
    for (size_t i = 0; i < pa->p[i0].n; i++) mx = fmaxf(mx, fabsf(mrw_param_w(pa, i0)[i]));
    CHECK(mx <= 1 / sqrtf(24.f) && mx > 0.8f / sqrtf(24.f));
    CHECK(mrw_param_w(pa, iln)[3] == 1.0f);
    char tmp[] = "/tmp/mrw_tadapterXXXXXX", path[128];
    CHECK(mkdtemp(tmp) != NULL);
    /* v1 names */
    snprintf(path, sizeof path, "%s/v1.safetensors", tmp);
    CHECK(write_renamed(a, path, "modality.world_encoder.adapter.", NULL, "blocks.0.att.x") == 0);
    CHECK_OK(mrw_tadapter_load(b, path, &e), &e);
    CHECK(memcmp(pa->w, pb->w, pa->total * sizeof(float)) == 0);
    mrw_tadapter_init(b, 8);
    float *before = malloc(pb->total * sizeof *before);
    memcpy(before, pb->w, pb->total * sizeof *before);
    /* missing tensor */
    snprintf(path, sizeof path, "%s/missing.safetensors", tmp);
    CHECK(write_renamed(a, path, "proj.", "proj.pre_norm.bias", NULL) == 0);
    CHECK(mrw_tadapter_load(b, path, &e) == MRW_E_MISSING && strstr(e.msg, "proj.pre_norm.bias"));
    /* a foreign tensor under the prefix */
    snprintf(path, sizeof path, "%s/extra.safetensors", tmp);
    CHECK(write_renamed(a, path, "proj.", NULL, "proj.conv.weight") == 0);
    CHECK(mrw_tadapter_load(b, path, &e) == MRW_E_UNKNOWN && strstr(e.msg, "proj.conv.weight"));
    /* wrong shapes: a v2 adapter (hidden 64) file into this v1 one, and a v1 vision file with other widths */
    mrw_tadapter_config c2 = {.kind = MRW_TADAPTER_V1_VISION, .E = 20, .C = 16};
    mrw_tadapter *d;
    CHECK_OK(mrw_tadapter_new(&c2, 1, 4, 1, &d, &e), &e);
    snprintf(path, sizeof path, "%s/shape.safetensors", tmp);
    CHECK(write_renamed(d, path, "proj.", NULL, NULL) == 0);
    CHECK(mrw_tadapter_load(b, path, &e) == MRW_E_SHAPE && strstr(e.msg, "proj.proj.0.weight"));
    CHECK(memcmp(before, pb->w, pb->total * sizeof(float)) == 0); /* untouched on failure */
    /* not an adapter at all; a missing file */
    snprintf(path, sizeof path, "%s/none.safetensors", tmp);
    CHECK(write_renamed(d, path, "xx.", NULL, NULL) == 0);
    CHECK(mrw_tadapter_load(b, path, &e) == MRW_E_MISSING);
    CHECK(mrw_tadapter_load(b, "/nonexistent/x.safetensors", &e) != MRW_OK);
    /* bad configurations and inputs */
    mrw_tadapter_config bad = {.kind = 9, .E = 4, .C = 4};
    mrw_tadapter *z = NULL;
    CHECK(mrw_tadapter_new(&bad, 1, 4, 1, &z, &e) == MRW_E_ARG && !z);
    bad.kind = MRW_TADAPTER_V2, bad.compress_k = 3, bad.compress_s = 0;
    CHECK(mrw_tadapter_new(&bad, 1, 4, 1, &z, &e) == MRW_E_ARG && !z);
    float x[5 * 24] = {0}, out[5 * 16];
    CHECK(mrw_tadapter_forward(a, x, 1, 5, out, &e) == MRW_E_ARG); /* T above max_T */
    CHECK(mrw_tadapter_forward(a, x, 2, 4, out, &e) == MRW_E_ARG); /* B above max_B */
    mrw_tadapter_config ca = {.kind = MRW_TADAPTER_V2, .E = 8, .C = 8, .v2_conv = 1, .compress_k = 3, .compress_s = 2};
    CHECK_OK(mrw_tadapter_new(&ca, 1, 8, 1, &z, &e), &e);
    CHECK(mrw_tadapter_out_len(z, 4) == -1 && mrw_tadapter_out_len(z, 7) == 1);
    CHECK(mrw_tadapter_forward(z, x, 1, 4, out, &e) == MRW_E_ARG); /* too short for the convolutions */
    mrw_tadapter_free(z);
    free(before);
    mrw_tadapter_free(a);
    mrw_tadapter_free(b);
    mrw_tadapter_free(d);
    const char *files[] = {"v1", "missing", "extra", "shape", "none"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", tmp, files[i]);
        unlink(path);
    }
    rmdir(tmp);
}

/* Larger sizes, where the row / element / transpose loops fork: 1 and 2 threads give the same results. */
static void test_threads(void) {
    mrw_tadapter_config c = {.kind = MRW_TADAPTER_V2, .E = 128, .C = 96, .hidden = 512, .v2_conv = 1,
                             .compress_k = 2, .compress_s = 2};
    const int B = 2, T = 301;
    mrw_tadapter *a[2] = {0};
    mrw_error e;
    float *out[2], *dx[2];
    const size_t n_x = (size_t)B * T * c.E;
    float *x = malloc(n_x * sizeof *x);
    for (size_t i = 0; i < n_x; i++) x[i] = sinf(0.013f * (float)i) + 0.1f * cosf(0.7f * (float)i);
    for (int r = 0; r < 2; r++) {
        CHECK_OK(mrw_tadapter_new(&c, B, T, r + 1, &a[r], &e), &e);
        if (!a[r]) return;
        mrw_tadapter_init(a[r], 5);
        const int To = mrw_tadapter_out_len(a[r], T);
        CHECK(To == ((T - 2) / 2 + 1 - 3) / 2 + 1);
        out[r] = malloc((size_t)B * To * c.C * sizeof(float));
        dx[r] = malloc(n_x * sizeof(float));
        CHECK_OK(mrw_tadapter_forward(a[r], x, B, T, out[r], &e), &e);
        mrw_tadapter_backward(a[r], out[r], dx[r]);
    }
    const int To = mrw_tadapter_out_len(a[0], T);
    mrw_param_set *p0 = mrw_tadapter_params(a[0]), *p1 = mrw_tadapter_params(a[1]);
    const double ro = rel_err(out[1], out[0], (size_t)B * To * c.C), rx = rel_err(dx[1], dx[0], n_x);
    double rg = 0;
    for (int i = 0; i < p0->n; i++) rg = fmax(rg, rel_err(mrw_param_g(p1, i), mrw_param_g(p0, i), p0->p[i].n));
    CHECKF(ro <= 1e-6 && rx <= 1e-6 && rg <= 1e-6, "1 vs 2 threads: out %.3g, d_x %.3g, grads %.3g", ro, rx, rg);
    for (int r = 0; r < 2; r++) free(out[r]), free(dx[r]), mrw_tadapter_free(a[r]);
    free(x);
}

int main(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) run_case(CASES[i]);
    test_load();
    test_threads();
    TEST_MAIN_END();
}
