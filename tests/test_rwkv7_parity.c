/* Parity with the PyTorch reference (tests/reference/rwkv7_ref.py, float64; fixtures made by
 * tests/reference/make_rwkv7_fixtures.py) and with the real trained tiny model in ../shared.
 *
 * Tolerances, as max|Δlogit| / max|logit| of the golden row set (and the same relative measure for states):
 *   f32 weights, any format, sequence and RNN mode ........................... 1e-4 (the bound)
 *   f16/bf16/q8_0/q4_0 weights vs the golden computed from the same dequantized weights:
 *     exact context (f32 activations), sequence and RNN mode .................. 1e-4
 *     fast context, RNN mode, f16 (f32 activations) ........................... 1e-4
 *     fast prefill bf16/f16, fast RNN bf16 (activations, and f16 weights in prefill, rounded to bf16) .. 2e-2
 *     fast context, q8_0/q4_0, sequence and RNN mode (activations quantized per
 *     32-block to int8, as llama.cpp does) .................................... 4e-2
 * The fast-prefill bounds are about 3x the worst measured value (printed by this test). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "modrwkv.h"
#include "test.h"

#define FIX "tests/fixtures/rwkv7/"

static mrw_tfile *golden;

static const float *G(const char *name, int64_t *numel) {
    const mrw_tensor_info *t = mrw_tfile_find(golden, name);
    if (!t) {
        fprintf(stderr, "golden tensor %s missing\n", name);
        exit(1);
    }
    if (numel) *numel = mrw_tensor_numel(t);
    return t->data;
}

static double rel_err(const float *got, const float *want, int64_t n) {
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)got[i] - want[i]));
        m = fmax(m, fabs(want[i]));
    }
    return d / (m > 0 ? m : 1);
}

static double worst[8];
enum { W_F32, W_EXACT, W_RNN, W_BF16, W_Q, W_STATE, W_N };
static const char *wname[] = {"f32 seq/rnn", "exact prefill", "rnn, f32 activations", "bf16/f16 fast prefill",
                              "q8_0/q4_0 8-bit activations", "state"};

static void check_rel(const char *what, const float *got, const float *want, int64_t n, double tol, int cat) {
    double e = rel_err(got, want, n);
    if (e > worst[cat]) worst[cat] = e;
    CHECKF(e <= tol, "%s: relative error %.3g > %.3g", what, e, tol);
}

static mrw_model *load(const char *path, mrw_dtype dt) {
    mrw_error err = {0};
    mrw_model *m = NULL;
    mrw_load_params lp = mrw_load_params_default();
    lp.weight_dtype = dt;
    CHECK_OK(mrw_model_load(path, &lp, &m, &err), &err);
    return m;
}

static mrw_context *context(mrw_model *m, int exact, int chunk) {
    mrw_error err = {0};
    mrw_context *c = NULL;
    mrw_context_params cp = mrw_context_params_default();
    cp.exact = exact;
    if (chunk) cp.max_chunk = chunk;
    CHECK_OK(mrw_context_new(m, &cp, &c, &err), &err);
    return c;
}

static const char *prompts[] = {"p1", "p7", "p33", "p100"};

/* Sequence logits (all positions), RNN logits, last-only logits and the final state of each prompt. */
static void f32_prompts(const char *file) {
    mrw_model *m = load(file, MRW_DT_AUTO);
    if (!m) return;
    mrw_context *ctx = context(m, 0, 0), *small = context(m, 0, 5);
    mrw_error err = {0};
    const int V = 256;
    char name[96], what[160];
    for (int p = 0; p < 4; p++) {
        int64_t T, ns;
        snprintf(name, sizeof name, "%s.tokens", prompts[p]);
        const int32_t *tok = (const int32_t *)G(name, &T);
        float *all = malloc((size_t)T * V * sizeof *all), *last = malloc(V * sizeof *last);
        mrw_state *st = mrw_state_new(m);
        /* sequence, all positions (chunks of 256 and of 5) */
        for (int c = 0; c < 2; c++) {
            mrw_state_reset(st);
            CHECK_OK(mrw_eval_tokens(c ? small : ctx, st, tok, (int)T, MRW_LOGITS_ALL, all, &err), &err);
            snprintf(name, sizeof name, "%s.logits_all", prompts[p]);
            snprintf(what, sizeof what, "%s %s seq all (chunk %s)", file, prompts[p], c ? "5" : "256");
            check_rel(what, all, G(name, NULL), T * V, 1e-4, W_F32);
            snprintf(name, sizeof name, "%s.state", prompts[p]);
            const float *ws = G(name, &ns);
            size_t n;
            snprintf(what, sizeof what, "%s %s state", file, prompts[p]);
            check_rel(what, mrw_state_data(st, &n), ws, ns, 1e-4, W_STATE);
            CHECK(n == (size_t)ns);
        }
        /* last only */
        mrw_state_reset(st);
        CHECK_OK(mrw_eval_tokens(ctx, st, tok, (int)T, MRW_LOGITS_LAST, last, &err), &err);
        snprintf(name, sizeof name, "%s.logits_last", prompts[p]);
        snprintf(what, sizeof what, "%s %s seq last", file, prompts[p]);
        check_rel(what, last, G(name, NULL), V, 1e-4, W_F32);
        /* RNN mode */
        mrw_state_reset(st);
        snprintf(name, sizeof name, "%s.rnn_logits", prompts[p]);
        const float *rl = G(name, NULL);
        for (int t = 0; t < T; t++) {
            CHECK_OK(mrw_eval_tokens(ctx, st, tok + t, 1, MRW_LOGITS_LAST, last, &err), &err);
            snprintf(what, sizeof what, "%s %s rnn step %d", file, prompts[p], t);
            check_rel(what, last, rl + (size_t)t * V, V, 1e-4, W_RNN);
        }
        free(all);
        free(last);
        mrw_state_free(st);
    }
    /* state carried across calls */
    {
        int64_t na, nb, ns = 0;
        const int32_t *a = (const int32_t *)G("carry.a_tokens", &na), *b = (const int32_t *)G("carry.b_tokens", &nb);
        float *out = malloc((size_t)nb * V * sizeof *out);
        mrw_state *st = mrw_state_new(m);
        CHECK_OK(mrw_eval_tokens(ctx, st, a, (int)na, MRW_LOGITS_NONE, NULL, &err), &err);
        size_t n;
        check_rel("carry: state after A", mrw_state_data(st, &n), G("carry.a_state", &ns), ns, 1e-4, W_STATE);
        CHECK_OK(mrw_eval_tokens(ctx, st, b, (int)nb, MRW_LOGITS_ALL, out, &err), &err);
        check_rel("carry: B after A", out, G("carry.b_logits_all", NULL), nb * V, 1e-4, W_F32);
        check_rel("carry: state after A, B", mrw_state_data(st, &n), G("carry.b_state", &ns), ns, 1e-4, W_STATE);
        free(out);
        mrw_state_free(st);
    }
    /* embeddings spliced after a token prefix */
    {
        int64_t np, ne, ns = 0;
        const int32_t *pre = (const int32_t *)G("embeds.prefix_tokens", &np);
        const float *in = G("embeds.input", &ne);
        int rows = (int)(ne / 128);
        float *out = malloc((size_t)rows * V * sizeof *out);
        mrw_state *st = mrw_state_new(m);
        CHECK_OK(mrw_eval_tokens(ctx, st, pre, (int)np, MRW_LOGITS_NONE, NULL, &err), &err);
        CHECK_OK(mrw_eval_embeddings(ctx, st, in, rows, MRW_LOGITS_ALL, out, &err), &err);
        check_rel("embeddings: logits", out, G("embeds.logits_all", NULL), (int64_t)rows * V, 1e-4, W_F32);
        size_t n;
        check_rel("embeddings: state", mrw_state_data(st, &n), G("embeds.state", &ns), ns, 1e-4, W_STATE);
        free(out);
        mrw_state_free(st);
    }
    mrw_context_free(ctx);
    mrw_context_free(small);
    mrw_model_free(m);
}

/* A low-precision file against the golden computed from its own dequantized weights. */
static void dtype_file(const char *dt, double fast_tol, int cat) {
    char path[128], name[96], what[160];
    snprintf(path, sizeof path, FIX "tiny-%s.gguf", dt);
    mrw_model *m = load(path, MRW_DT_AUTO);
    if (!m) return;
    mrw_context *fast = context(m, 0, 0), *exact = context(m, 1, 0);
    mrw_error err = {0};
    const int V = 256;
    float *out = malloc((size_t)100 * V * sizeof *out);
    mrw_state *st = mrw_state_new(m);
    for (int p = 0; p < 4; p++) {
        int64_t T;
        snprintf(name, sizeof name, "%s.tokens", prompts[p]);
        const int32_t *tok = (const int32_t *)G(name, &T);
        snprintf(name, sizeof name, "%s.%s.logits_last", dt, prompts[p]);
        const float *want = G(name, NULL);
        /* low-precision activations in RNN mode too: 8-bit for q8_0/q4_0, bf16 for bf16 */
        const int act8 = !strcmp(dt, "q8_0") || !strcmp(dt, "q4_0") || !strcmp(dt, "bf16");
        for (int mode = 0; mode < 4; mode++) { /* fast prefill, exact prefill, fast RNN, exact RNN */
            mrw_context *c = mode == 0 || mode == 2 ? fast : exact;
            mrw_state_reset(st);
            if (mode < 2) {
                CHECK_OK(mrw_eval_tokens(c, st, tok, (int)T, MRW_LOGITS_LAST, out, &err), &err);
            } else {
                for (int t = 0; t < T; t++) CHECK_OK(mrw_eval_tokens(c, st, tok + t, 1, MRW_LOGITS_LAST, out, &err), &err);
            }
            /* fast prefill with T <= 3 and fast RNN use the matrix-vector kernels: f32 activations except for
             * q8_0/q4_0/bf16 */
            const int rounded = (mode == 0 && (T > 3 || act8)) || (mode == 2 && act8);
            static const char *names[] = {"fast prefill", "exact prefill", "fast rnn", "exact rnn"};
            snprintf(what, sizeof what, "%s %s %s", dt, prompts[p], names[mode]);
            check_rel(what, out, want, V, rounded ? fast_tol : 1e-4, rounded ? cat : mode % 2 ? W_EXACT : W_RNN);
        }
    }
    /* all positions of p33 */
    int64_t T;
    const int32_t *tok = (const int32_t *)G("p33.tokens", &T);
    snprintf(name, sizeof name, "%s.p33.logits_all", dt);
    mrw_state_reset(st);
    CHECK_OK(mrw_eval_tokens(exact, st, tok, (int)T, MRW_LOGITS_ALL, out, &err), &err);
    snprintf(what, sizeof what, "%s p33 all positions, exact", dt);
    check_rel(what, out, G(name, NULL), T * V, 1e-4, W_EXACT);
    free(out);
    mrw_state_free(st);
    mrw_context_free(fast);
    mrw_context_free(exact);
    mrw_model_free(m);
}

/* The real trained model from ../shared against another implementation's logits. */
static void shared_tiny(void) {
    char path[512], lpath[512];
    t_path(path, sizeof path, mrw_shared_dir(), "assets/tiny-rwkv7/tiny-rwkv7-834K.pth");
    t_path(lpath, sizeof lpath, mrw_shared_dir(), "assets/tiny-rwkv7/expected-logits-834K.bin");
    size_t len;
    float *want = (float *)t_read_file(lpath, &len);
    CHECKF(want && len == 1024, "missing %s", lpath);
    if (!want) return;
    mrw_model *m = load(path, MRW_DT_AUTO);
    if (m) {
        mrw_context *ctx = context(m, 0, 0);
        mrw_error err = {0};
        float got[256];
        const int32_t tok[3] = {34, 105, 110};
        for (int rnn = 0; rnn < 2; rnn++) {
            mrw_state *st = mrw_state_new(m);
            if (rnn)
                for (int t = 0; t < 3; t++) CHECK_OK(mrw_eval_tokens(ctx, st, tok + t, 1, MRW_LOGITS_LAST, got, &err), &err);
            else
                CHECK_OK(mrw_eval_tokens(ctx, st, tok, 3, MRW_LOGITS_LAST, got, &err), &err);
            double d = 0;
            for (int i = 0; i < 256; i++) d = fmax(d, fabs(got[i] - want[i]));
            fprintf(stderr, "tiny-rwkv7-834K %s: max|Δlogit| %.3g\n", rnn ? "rnn" : "seq", d);
            CHECKF(d <= 1e-5, "tiny-rwkv7 %s: max|d| %g", rnn ? "rnn" : "seq", d);
            mrw_state_free(st);
        }
        mrw_context_free(ctx);
        mrw_model_free(m);
    }
    free(want);
}

/* convert: every format round-trips bit-exactly, and converting to f16/bf16/q8_0/q4_0 reproduces llama.cpp's
 * conversions byte for byte (gguf-py wrote tiny-{dtype}.gguf from the same weights). */
static void conversions(void) {
    mrw_model *m = load(FIX "tiny.pth", MRW_DT_AUTO);
    if (!m) return;
    mrw_error err = {0};
    const char *outs[] = {"/tmp/mrw_parity.gguf", "/tmp/mrw_parity.safetensors", "/tmp/mrw_parity.pth"};
    mrw_context *c0 = context(m, 0, 0);
    const int32_t tok[5] = {72, 101, 108, 108, 111};
    float ref[256], got[256];
    mrw_state *st = mrw_state_new(m);
    CHECK_OK(mrw_eval_tokens(c0, st, tok, 5, MRW_LOGITS_LAST, ref, &err), &err);
    for (int i = 0; i < 3; i++) {
        CHECK_OK(mrw_model_save(m, outs[i], MRW_FILE_AUTO, NULL, 0, &err), &err);
        mrw_model *r = load(outs[i], MRW_DT_AUTO);
        if (!r) continue;
        mrw_context *c = context(r, 0, 0);
        mrw_state *s = mrw_state_new(r);
        CHECK_OK(mrw_eval_tokens(c, s, tok, 5, MRW_LOGITS_LAST, got, &err), &err);
        CHECKF(!memcmp(ref, got, sizeof ref), "round trip through %s changes the logits", outs[i]);
        mrw_state_free(s);
        mrw_context_free(c);
        mrw_model_free(r);
        unlink(outs[i]);
    }
    mrw_state_free(st);
    mrw_context_free(c0);
    mrw_model_free(m);
    /* convert to each dtype, save as GGUF, compare every tensor with the file gguf-py wrote */
    const char *dts[] = {"f16", "bf16", "q8_0", "q4_0"};
    for (int d = 0; d < 4; d++) {
        mrw_dtype dt;
        mrw_dtype_parse(dts[d], &dt);
        mrw_model *q = load(FIX "tiny.pth", dt);
        if (!q) continue;
        char ref[128];
        snprintf(ref, sizeof ref, FIX "tiny-%s.gguf", dts[d]);
        CHECK_OK(mrw_model_save(q, outs[0], MRW_FILE_AUTO, NULL, 0, &err), &err);
        mrw_tfile *a = NULL, *b = NULL;
        CHECK_OK(mrw_tfile_open(outs[0], &a, &err), &err);
        CHECK_OK(mrw_tfile_open(ref, &b, &err), &err);
        if (a && b) {
            int same = 0, total = 0;
            for (int i = 0; i < mrw_tfile_count(b); i++) {
                const mrw_tensor_info *tb = mrw_tfile_tensor(b, i), *ta = mrw_tfile_find(a, tb->name);
                total++;
                if (ta && ta->dtype == tb->dtype && ta->nbytes == tb->nbytes && !memcmp(ta->data, tb->data, ta->nbytes)) same++;
                else fprintf(stderr, "  %s: tensor %s differs from gguf-py's\n", dts[d], tb->name);
            }
            CHECKF(same == total && mrw_tfile_count(a) == total, "%s: %d of %d tensors identical to gguf-py's file",
                   dts[d], same, total);
        }
        mrw_tfile_close(a);
        mrw_tfile_close(b);
        unlink(outs[0]);
        mrw_model_free(q);
    }
}

int main(void) {
    mrw_error err = {0};
    CHECK_OK(mrw_tfile_open(FIX "golden.safetensors", &golden, &err), &err);
    if (!golden) TEST_MAIN_END();
    f32_prompts(FIX "tiny.pth");
    f32_prompts(FIX "tiny.safetensors");
    f32_prompts(FIX "tiny.gguf");
    dtype_file("f16", 2e-2, W_BF16);
    dtype_file("bf16", 2e-2, W_BF16);
    dtype_file("q8_0", 4e-2, W_Q);
    dtype_file("q4_0", 4e-2, W_Q);
    shared_tiny();
    conversions();
    for (int i = 0; i < W_N; i++) fprintf(stderr, "worst relative error, %-24s %.3g\n", wname[i], worst[i]);
    mrw_tfile_close(golden);
    TEST_MAIN_END();
}
