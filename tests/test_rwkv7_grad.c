/* RWKV-7 training forward and backward (src/train/rwkv7_train*.c, wkv7_train.c):
 *   1. the training forward's logits and loss equal the inference path (mrw_eval_tokens / mrw_eval_embeddings,
 *      exact mode) on the same weights (f32, bf16, q8_0), copied with mrw_rwkv7_train_from_model;
 *   2. loss, logits, every parameter gradient and d_inject equal PyTorch autograd in float64
 *      (tests/fixtures/rwkv7_grad, made by tests/reference/make_rwkv7_grad_fixtures.py): per tensor
 *      max|Δ| / max|g| <= 1e-4;
 *   3. central finite differences of the fp32 loss along a random ±1 direction per tensor agree with the
 *      analytic directional derivative;
 *   4. frozen mode: the same d_inject, parameter gradients untouched;
 *   5. scale and accumulation (+=) semantics; an all-ignored batch; invalid input;
 *   6. the init rules (a few exact values, orthogonality);
 *   7. one thread and two give the same results on a batch big enough for every parallel path;
 *   8. the WKV7 kernels against a plain double-precision forward and adjoint (chunk boundaries, both paths);
 *   9. SGD from the reference init memorises a short sequence;
 *  10. the transposed-operand GEMM of the backward (kernels/cpu/gemm_train.c) against its plain reference for
 *      every layout, tails in M, N and K, several K blocks, accumulation, one and two threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/tensorfile.h"
#include "kernels/cpu/gemm_train.h"
#include "modrwkv.h"
#include "test.h"
#include "train/rwkv7_train.h"

#define FIX "tests/fixtures/rwkv7_grad/grad.safetensors"

static const mrw_tensor_info *need(mrw_tfile *f, const char *name) {
    const mrw_tensor_info *t = mrw_tfile_find(f, name);
    CHECKF(t != NULL, "fixture tensor %s missing", name);
    return t;
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* ------------------------------------------------------------------------ 1. against the inference path */

static void test_inference_parity(mrw_dtype dt) {
    mrw_error err = {0};
    mrw_rwkv7_config rc = {.n_layer = 3, .n_embd = 128, .head_size = 64, .n_ffn = 256, .n_vocab = 300,
                           .lora_w = 32, .lora_a = 32, .lora_v = 32, .lora_g = 64};
    mrw_model *model = NULL;
    CHECK_OK(mrw_model_new_random(&rc, dt, 7, &model, &err), &err);
    if (!model) return;
    mrw_rwkv7_train_config tc;
    mrw_rwkv7_train_config_of(model, &tc);
    CHECK(tc.n_layer == 3 && tc.n_embd == 128 && tc.ffn == 256 && tc.vocab == 300 && tc.d_g == 64);
    const int B = 2, T = 41, C = 128, V = 300;
    mrw_rwkv7_train *m = NULL;
    CHECK_OK(mrw_rwkv7_train_new(&tc, B, 48, 2, &m, &err), &err);
    if (!m) {
        mrw_model_free(model);
        return;
    }
    mrw_rwkv7_train_init(m, 1); /* layer 0's v0/v1/v2 come from init; everything else from the model */
    CHECK_OK(mrw_rwkv7_train_from_model(m, model, &err), &err);
    int32_t tok[2 * 41], tgt[2 * 41];
    uint8_t mask[2 * 41] = {0};
    float *inject = calloc((size_t)B * T * C, sizeof(float));
    uint64_t s = 99;
    for (int i = 0; i < B * T; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((s >> 33) % V);
        tgt[i] = (int32_t)((s >> 45) % V);
    }
    for (int t = 5; t < 9; t++) { /* sequence 1 gets injected rows */
        mask[T + t] = 1;
        for (int i = 0; i < C; i++) inject[(size_t)(T + t) * C + i] = sinf(0.37f * i + t);
    }
    float *lg = malloc((size_t)B * T * V * sizeof(float)), *ref = malloc((size_t)B * T * V * sizeof(float));
    float *emb = malloc((size_t)B * T * C * sizeof(float));
    const float loss = mrw_rwkv7_train_forward(m, tok, inject, mask, tgt, B, T, lg);
    mrw_context_params cp = mrw_context_params_default();
    cp.n_threads = 2, cp.exact = 1;
    mrw_context *ctx = NULL;
    CHECK_OK(mrw_context_new(model, &cp, &ctx, &err), &err);
    mrw_state *st = mrw_state_new(model);
    if (ctx && st) {
        CHECK_OK(mrw_eval_tokens(ctx, st, tok, T, MRW_LOGITS_ALL, ref, &err), &err);
        for (int t = 0; t < T; t++) {
            const int r = T + t;
            if (mask[r]) memcpy(emb + (size_t)t * C, inject + (size_t)r * C, C * sizeof(float));
            else mrw_model_embedding(model, tok[r], emb + (size_t)t * C);
        }
        mrw_state_reset(st);
        CHECK_OK(mrw_eval_embeddings(ctx, st, emb, T, MRW_LOGITS_ALL, ref + (size_t)T * V, &err), &err);
        const size_t n = (size_t)B * T * V;
        const double rel = max_diff(lg, ref, n) / max_abs(ref, n);
        fprintf(stderr, "training forward vs inference (%s weights): max|dlogit|/max|logit| = %.3g\n",
                mrw_dtype_name(dt), rel);
        CHECKF(rel <= 1e-5, "logits differ from the inference path: %.3g", rel);
        double sum = 0;
        for (int r = 0; r < B * T; r++) {
            const float *l = ref + (size_t)r * V;
            double mx = l[0], se = 0;
            for (int v = 1; v < V; v++) mx = fmax(mx, l[v]);
            for (int v = 0; v < V; v++) se += exp(l[v] - mx);
            sum += mx + log(se) - l[tgt[r]];
        }
        const double lref = sum / (B * T);
        CHECKF(fabs(loss - lref) <= 1e-5 * fabs(lref), "loss %.8g vs %.8g from the inference logits", loss, lref);
        CHECK(mrw_rwkv7_train_n_targets(m) == B * T);
    }
    /* a shape mismatch is a clear error naming the tensor */
    mrw_rwkv7_train_config bad = tc;
    bad.ffn = 128;
    mrw_rwkv7_train *m2 = NULL;
    CHECK_OK(mrw_rwkv7_train_new(&bad, 1, 4, 1, &m2, &err), &err);
    if (m2) {
        CHECK(mrw_rwkv7_train_from_model(m2, model, &err) == MRW_E_SHAPE);
        CHECKF(strstr(err.msg, "ffn.key.weight") != NULL, "message: %s", err.msg);
        mrw_rwkv7_train_free(m2);
    }
    mrw_state_free(st);
    mrw_context_free(ctx);
    free(lg), free(ref), free(emb), free(inject);
    mrw_rwkv7_train_free(m);
    mrw_model_free(model);
}

/* ---------------------------------------------------------------------------- 2-5. against the fixture */

typedef struct {
    mrw_tfile *f;
    mrw_rwkv7_train *m;
    int B, T, C, V;
    int32_t *tok, *tgt;
    uint8_t *mask;
    const float *inject;
} fixture;

static int load_fixture(fixture *fx, int n_threads) {
    mrw_error err = {0};
    memset(fx, 0, sizeof *fx);
    if (mrw_tfile_open(FIX, &fx->f, &err)) {
        CHECKF(0, "cannot open %s: %s", FIX, err.msg);
        return -1;
    }
    const mrw_tensor_info *tk = need(fx->f, "tokens"), *e = need(fx->f, "llm.emb.weight");
    const mrw_tensor_info *w1 = need(fx->f, "llm.blocks.0.att.w1"), *a1 = need(fx->f, "llm.blocks.0.att.a1");
    const mrw_tensor_info *v1 = need(fx->f, "llm.blocks.1.att.v1"), *g1 = need(fx->f, "llm.blocks.0.att.g1");
    const mrw_tensor_info *fk = need(fx->f, "llm.blocks.0.ffn.key.weight"), *rk = need(fx->f, "llm.blocks.0.att.r_k");
    if (!tk || !e || !w1 || !a1 || !v1 || !g1 || !fk || !rk) return -1;
    int L = 0;
    char nm[96];
    for (;; L++) {
        snprintf(nm, sizeof nm, "llm.blocks.%d.ln1.weight", L);
        if (!mrw_tfile_find(fx->f, nm)) break;
    }
    mrw_rwkv7_train_config c = {.n_layer = L, .n_embd = (int)e->shape[1], .head_size = (int)rk->shape[1],
                                .vocab = (int)e->shape[0], .ffn = (int)fk->shape[0], .d_w = (int)w1->shape[1],
                                .d_a = (int)a1->shape[1], .d_v = (int)v1->shape[1], .d_g = (int)g1->shape[1]};
    fx->B = (int)tk->shape[0], fx->T = (int)tk->shape[1], fx->C = c.n_embd, fx->V = c.vocab;
    CHECK_OK(mrw_rwkv7_train_new(&c, fx->B, fx->T + 5, n_threads, &fx->m, &err), &err);
    if (!fx->m) return -1;
    mrw_param_set *ps = mrw_rwkv7_train_params(fx->m);
    int copied = 0;
    for (int i = 0; i < ps->n; i++) {
        const mrw_tensor_info *t = need(fx->f, ps->p[i].name);
        if (!t) continue;
        int same = t->dtype == MRW_DT_F32 && t->ndim == ps->p[i].ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == ps->p[i].shape[d];
        CHECKF(same, "%s: shape or dtype differs from the fixture", ps->p[i].name);
        if (!same) continue;
        memcpy(mrw_param_w(ps, i), t->data, ps->p[i].n * sizeof(float));
        copied++;
    }
    CHECKF(copied == ps->n, "%d of %d parameters in the fixture", copied, ps->n);
    CHECK(copied == (mrw_tfile_count(fx->f) - 7) / 2); /* every llm.* tensor of the fixture is a parameter */
    const size_t BT = (size_t)fx->B * fx->T;
    fx->tok = malloc(BT * sizeof(int32_t)), fx->tgt = malloc(BT * sizeof(int32_t)), fx->mask = malloc(BT);
    memcpy(fx->tok, need(fx->f, "tokens")->data, BT * 4);
    memcpy(fx->tgt, need(fx->f, "targets")->data, BT * 4);
    memcpy(fx->mask, need(fx->f, "inject_mask")->data, BT);
    fx->inject = need(fx->f, "inject")->data;
    return 0;
}

static void free_fixture(fixture *fx) {
    mrw_rwkv7_train_free(fx->m);
    mrw_tfile_close(fx->f);
    free(fx->tok), free(fx->tgt), free(fx->mask);
}

static float fwd(fixture *fx, float *logits) {
    return mrw_rwkv7_train_forward(fx->m, fx->tok, fx->inject, fx->mask, fx->tgt, fx->B, fx->T, logits);
}

static void test_autograd(fixture *fx) {
    mrw_param_set *ps = mrw_rwkv7_train_params(fx->m);
    const size_t BT = (size_t)fx->B * fx->T, nl = BT * fx->V;
    float *lg = malloc(nl * sizeof(float)), *dinj = malloc(BT * fx->C * sizeof(float));
    mrw_param_zero_grad(ps);
    const float loss = fwd(fx, lg);
    const float want = *(const float *)need(fx->f, "loss")->data;
    CHECKF(fabsf(loss - want) <= 1e-5f * want, "loss %.8g, autograd %.8g", loss, want);
    const double lrel = max_diff(lg, need(fx->f, "logits")->data, nl) / max_abs(need(fx->f, "logits")->data, nl);
    CHECKF(lrel <= 1e-5, "logits rel %.3g", lrel);
    int64_t counted = 0;
    for (size_t r = 0; r < BT; r++) counted += fx->tgt[r] != MRW_IGNORE;
    CHECK(mrw_rwkv7_train_n_targets(fx->m) == counted);
    mrw_rwkv7_train_backward(fx->m, 1.0f, 0, dinj);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < ps->n; i++) {
        char gname[MRW_PARAM_NAME_MAX + 8];
        snprintf(gname, sizeof gname, "grad.%s", ps->p[i].name);
        const mrw_tensor_info *t = need(fx->f, gname);
        if (!t) continue;
        const float *g = mrw_param_g(ps, i);
        const double gm = max_abs(t->data, ps->p[i].n), d = max_diff(g, t->data, ps->p[i].n);
        if (gm == 0) { /* layer 0's v0/v1/v2 */
            CHECKF(d == 0, "%s: gradient should be zero, max %.3g", ps->p[i].name, d);
            continue;
        }
        const double rel = d / gm;
        if (rel > worst) worst = rel, worst_name = ps->p[i].name;
        CHECKF(rel <= 1e-4, "%s: max|dg| %.3g, max|g| %.3g, rel %.3g", ps->p[i].name, d, gm, rel);
    }
    const float *gi = need(fx->f, "grad.inject")->data;
    const double irel = max_diff(dinj, gi, BT * fx->C) / max_abs(gi, BT * fx->C);
    CHECKF(irel <= 1e-4, "d_inject rel %.3g", irel);
    fprintf(stderr, "autograd parity: loss %.8g vs %.8g, logits rel %.3g, worst gradient rel %.3g (%s), "
            "d_inject rel %.3g\n", loss, want, lrel, worst, worst_name, irel);
    free(lg), free(dinj);
}

/* 3. The loss's change along a random ±1 direction d (times h) of one tensor, by central differences of the
 * fp32 forward with Richardson extrapolation (h and h/2, cancelling the h² term), against the analytic g·d.
 * The loss is summed in double from the fp32 logits; its rounding noise is ~1e-7, so the difference quotient
 * carries noise ~1e-7/h: measured on this fixture, |fd - g·d|·h <= 2e-7 for every tensor but one, whose
 * residual truncation error is 0.2% of g·d. Tolerance: 1e-6/h + 1% of |g·d|. With h = 1e-2·max(rms(w), 0.05)
 * that tolerance is under 10% of |g·d| for most tensors (counted and required for 3/4 of them); a wrong
 * gradient term shows up as an O(1) relative error. The autograd comparison above is the precise check. */
/* The loss in double from the fp32 logits (finer than the float the forward returns). */
static double loss64(fixture *fx, float *lg) {
    fwd(fx, lg);
    double sum = 0;
    int n = 0;
    for (int r = 0; r < fx->B * fx->T; r++) {
        if (fx->tgt[r] == MRW_IGNORE) continue;
        const float *l = lg + (size_t)r * fx->V;
        double mx = l[0], se = 0;
        for (int v = 1; v < fx->V; v++) mx = fmax(mx, l[v]);
        for (int v = 0; v < fx->V; v++) se += exp(l[v] - mx);
        sum += mx + log(se) - l[fx->tgt[r]];
        n++;
    }
    return sum / n;
}

/* Central difference of the loss along h·dir for one tensor. */
static double central(fixture *fx, float *w, const float *w0, const signed char *dir, size_t n, double h, float *lg) {
    for (size_t j = 0; j < n; j++) w[j] = (float)(w0[j] + h * dir[j]);
    const double lp = loss64(fx, lg);
    for (size_t j = 0; j < n; j++) w[j] = (float)(w0[j] - h * dir[j]);
    const double lm = loss64(fx, lg);
    memcpy(w, w0, n * sizeof(float));
    return (lp - lm) / (2 * h);
}

static void test_finite_differences(fixture *fx) {
    mrw_param_set *ps = mrw_rwkv7_train_params(fx->m);
    float *lg = malloc((size_t)fx->B * fx->T * fx->V * sizeof(float));
    mrw_param_zero_grad(ps);
    fwd(fx, NULL);
    mrw_rwkv7_train_backward(fx->m, 1.0f, 0, NULL);
    int checked = 0, failed = 0, tight = 0;
    double worst = 0;
    for (int i = 0; i < ps->n; i++) {
        const size_t n = ps->p[i].n;
        float *w = mrw_param_w(ps, i);
        const float *g = mrw_param_g(ps, i);
        double rms = 0;
        for (size_t j = 0; j < n; j++) rms += (double)w[j] * w[j];
        rms = sqrt(rms / n);
        double h = 1e-2 * (rms > 0.05 ? rms : 0.05);
        float *w0 = malloc(n * sizeof(float));
        memcpy(w0, w, n * sizeof(float));
        uint64_t s = 1234567 + (uint64_t)i * 7919;
        double gd = 0;
        signed char *dir = malloc(n);
        for (size_t j = 0; j < n; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            dir[j] = (s >> 40) & 1 ? 1 : -1;
            gd += (double)g[j] * dir[j];
        }
        const double d1 = central(fx, w, w0, dir, n, h, lg), d2 = central(fx, w, w0, dir, n, h / 2, lg);
        const double fd = (4 * d2 - d1) / 3; /* Richardson: cancels the h² term */
        const double tol = 1e-6 / h + 0.01 * fabs(gd);
        tight += tol < 0.1 * fabs(gd);
        const int zero_ok = fabs(gd) == 0 && fabs(fd) == 0; /* layer 0's v0/v1/v2 */
        if (!zero_ok) {
            checked++;
            const double rel = fabs(fd - gd) / fmax(fabs(gd), 1e-12);
            if (fabs(gd) > 1e-3 && rel > worst) worst = rel;
            if (fabs(fd - gd) > tol) {
                failed++;
                CHECKF(0, "%s: finite difference %.6g, analytic %.6g (h %.3g)", ps->p[i].name, fd, gd, h);
            }
        }
        free(w0), free(dir);
    }
    CHECK(checked >= ps->n - 3);
    CHECKF(tight >= checked * 3 / 4, "only %d of %d tensors checked to better than 10%%", tight, checked);
    fprintf(stderr, "finite differences: %d tensors (%d with a tolerance under 10%% of |g.d|), %d outside "
            "tolerance, worst relative error %.3g (|g.d| > 1e-3)\n", checked, tight, failed, worst);
    free(lg);
}

static void test_frozen_and_scale(fixture *fx) {
    mrw_param_set *ps = mrw_rwkv7_train_params(fx->m);
    const size_t nI = (size_t)fx->B * fx->T * fx->C;
    float *d1 = malloc(nI * sizeof(float)), *d2 = malloc(nI * sizeof(float));
    float *g1 = malloc(ps->total * sizeof(float));
    /* reference run */
    mrw_param_zero_grad(ps);
    fwd(fx, NULL);
    mrw_rwkv7_train_backward(fx->m, 1.0f, 0, d1);
    memcpy(g1, ps->g, ps->total * sizeof(float));
    /* 4. frozen: d_inject identical, gradients untouched */
    for (size_t i = 0; i < ps->total; i++) ps->g[i] = 0.25f;
    fwd(fx, NULL);
    mrw_rwkv7_train_backward(fx->m, 1.0f, 1, d2);
    int untouched = 1;
    for (size_t i = 0; i < ps->total; i++) untouched &= ps->g[i] == 0.25f;
    CHECK(untouched);
    CHECKF(max_diff(d1, d2, nI) == 0, "frozen d_inject differs by %.3g", max_diff(d1, d2, nI));
    CHECK(max_abs(d1, nI) > 0);
    /* rows that are not injected get 0 */
    int zero_rows = 1;
    for (size_t r = 0; r < (size_t)fx->B * fx->T; r++)
        if (!fx->mask[r])
            for (int i = 0; i < fx->C; i++) zero_rows &= d1[r * fx->C + i] == 0;
    CHECK(zero_rows);
    /* 5. accumulation: grads += scale * g */
    memcpy(ps->g, g1, ps->total * sizeof(float));
    fwd(fx, NULL);
    mrw_rwkv7_train_backward(fx->m, 0.5f, 0, d2);
    double e = 0, gm = max_abs(g1, ps->total);
    for (size_t i = 0; i < ps->total; i++) e = fmax(e, fabs(ps->g[i] - 1.5 * g1[i]));
    CHECKF(e <= 1e-6 * gm, "accumulated gradients: max|g - 1.5 g1| %.3g (max|g1| %.3g)", e, gm);
    double ei = 0;
    for (size_t i = 0; i < nI; i++) ei = fmax(ei, fabs(d2[i] - 0.5 * d1[i]));
    CHECKF(ei <= 1e-6 * max_abs(d1, nI), "scaled d_inject off by %.3g", ei);
    /* a second backward of the same forward does nothing (the logits became their gradient) */
    memcpy(g1, ps->g, ps->total * sizeof(float));
    mrw_rwkv7_train_backward(fx->m, 1.0f, 0, NULL);
    CHECK(max_diff(g1, ps->g, ps->total) == 0);
    /* all targets ignored: loss 0, nothing accumulates, d_inject zero */
    int32_t *ign = malloc((size_t)fx->B * fx->T * sizeof(int32_t));
    for (int i = 0; i < fx->B * fx->T; i++) ign[i] = MRW_IGNORE;
    const float l0 = mrw_rwkv7_train_forward(fx->m, fx->tok, fx->inject, fx->mask, ign, fx->B, fx->T, NULL);
    CHECK(l0 == 0.0f && mrw_rwkv7_train_n_targets(fx->m) == 0);
    mrw_rwkv7_train_backward(fx->m, 1.0f, 0, d2);
    CHECK(max_diff(g1, ps->g, ps->total) == 0 && max_abs(d2, nI) == 0);
    /* invalid input: NaN, and the backward does nothing */
    int row = 0;
    while (fx->mask[row]) row++;
    int32_t keep = fx->tok[row];
    fx->tok[row] = fx->V; /* out of the vocabulary at a row that is not injected */
    CHECK(isnan(fwd(fx, NULL)));
    fx->tok[row] = -5;
    CHECK(isnan(fwd(fx, NULL)));
    fx->tok[row] = keep;
    keep = fx->tok[0]; /* an injected row's token is not used: any value passes */
    fx->tok[0] = -1;
    CHECK(fx->mask[0] && !isnan(fwd(fx, NULL)));
    fx->tok[0] = keep;
    CHECK(isnan(mrw_rwkv7_train_forward(fx->m, fx->tok, NULL, NULL, fx->tgt, fx->B, fx->T + 6, NULL)));
    ign[0] = fx->V;
    CHECK(isnan(mrw_rwkv7_train_forward(fx->m, fx->tok, NULL, NULL, ign, fx->B, fx->T, NULL)));
    mrw_rwkv7_train_backward(fx->m, 1.0f, 0, NULL);
    CHECK(max_diff(g1, ps->g, ps->total) == 0);
    /* a shorter batch through the same buffers still matches (B = 1, T = 20 prefix of sequence 0) */
    const float ls = mrw_rwkv7_train_forward(fx->m, fx->tok, fx->inject, fx->mask, fx->tgt, 1, 20, NULL);
    CHECK(isfinite(ls) && ls > 0);
    free(ign), free(d1), free(d2), free(g1);
}

/* 7. A batch large enough for the parallel paths (row loops, threaded WKV scan and its backward): two threads
 * give the same loss, gradients and d_inject as one. */
static void test_threads(void) {
    mrw_error err = {0};
    mrw_rwkv7_config rc = {.n_layer = 2, .n_embd = 128, .head_size = 64, .n_ffn = 256, .n_vocab = 200,
                           .lora_w = 16, .lora_a = 16, .lora_v = 16, .lora_g = 32};
    mrw_model *model = NULL;
    CHECK_OK(mrw_model_new_random(&rc, MRW_DT_F32, 11, &model, &err), &err);
    if (!model) return;
    mrw_rwkv7_train_config tc;
    mrw_rwkv7_train_config_of(model, &tc);
    const int B = 4, T = 133, C = 128, BT = B * T;
    mrw_rwkv7_train *m[2] = {NULL, NULL};
    float *dinj[2];
    int32_t *tok = malloc(BT * sizeof(int32_t)), *tgt = malloc(BT * sizeof(int32_t));
    uint8_t *mask = calloc(BT, 1);
    float *inject = malloc((size_t)BT * C * sizeof(float));
    for (int i = 0; i < BT; i++) {
        tok[i] = (i * 131 + 7) % 200, tgt[i] = i % 9 == 0 ? MRW_IGNORE : (i * 17 + 3) % 200;
        mask[i] = i % T < 6;
        for (int c = 0; c < C; c++) inject[(size_t)i * C + c] = cosf(0.1f * c + i);
    }
    float loss[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        dinj[k] = malloc((size_t)BT * C * sizeof(float));
        CHECK_OK(mrw_rwkv7_train_new(&tc, B, T, k + 1, &m[k], &err), &err);
        if (!m[k]) continue;
        mrw_rwkv7_train_init(m[k], 3);
        CHECK_OK(mrw_rwkv7_train_from_model(m[k], model, &err), &err);
        loss[k] = mrw_rwkv7_train_forward(m[k], tok, inject, mask, tgt, B, T, NULL);
        mrw_rwkv7_train_backward(m[k], 1.0f, 0, dinj[k]);
    }
    if (m[0] && m[1]) {
        mrw_param_set *a = mrw_rwkv7_train_params(m[0]), *b = mrw_rwkv7_train_params(m[1]);
        const double gd = max_diff(a->g, b->g, a->total), gm = max_abs(a->g, a->total);
        const double id = max_diff(dinj[0], dinj[1], (size_t)BT * C);
        CHECKF(fabsf(loss[0] - loss[1]) <= 1e-6f * loss[0], "loss %.9g (1 thread) vs %.9g (2 threads)", loss[0], loss[1]);
        CHECKF(gd <= 1e-6 * gm, "gradients differ between 1 and 2 threads: %.3g (max %.3g)", gd, gm);
        CHECKF(id <= 1e-6 * max_abs(dinj[0], (size_t)BT * C), "d_inject differs between 1 and 2 threads: %.3g", id);
        CHECK(isfinite(loss[0]) && gm > 0);
    }
    for (int k = 0; k < 2; k++) mrw_rwkv7_train_free(m[k]), free(dinj[k]);
    free(tok), free(tgt), free(mask), free(inject);
    mrw_model_free(model);
}

/* 8. The WKV7 kernels alone against a plain double-precision forward (all states kept) and adjoint, for
 * lengths around the 16-step checkpoint chunks, N = 64 (the AVX-512 path) and N = 16 (the generic path). */
static void test_wkv(void) {
    const int Ts[] = {1, 15, 16, 17, 40}, Ns[] = {64, 16};
    double worst = 0;
    for (int ni = 0; ni < 2; ni++)
        for (int ti = 0; ti < 5; ti++) {
            const int B = 2, H = 2, N = Ns[ni], T = Ts[ti], C = H * N;
            const size_t n = (size_t)B * T * C, NN = (size_t)N * N;
            float *in[7], *out[7];
            for (int q = 0; q < 7; q++) in[q] = malloc(n * sizeof(float)), out[q] = malloc(n * sizeof(float));
            float *r = in[0], *w = in[1], *k = in[2], *v = in[3], *a = in[4], *b = in[5], *dy = in[6];
            uint64_t st = 5 + ti * 13 + ni;
            for (size_t i = 0; i < n; i++)
                for (int q = 0; q < 7; q++) {
                    st = st * 6364136223846793005ull + 1442695040888963407ull;
                    const float u = (float)((st >> 40) * (1.0 / 16777216.0)); /* [0, 1) */
                    in[q][i] = q == 1 ? 0.55f + 0.45f * u : u - 0.5f;
                }
            for (size_t row = 0; row < (size_t)B * T * H; row++) { /* a = -κ̂, b = κ̂·α as in the model */
                float *ka = a + row * N, *kb = b + row * N, ss = 0;
                for (int j = 0; j < N; j++) ss += ka[j] * ka[j];
                for (int j = 0; j < N; j++) {
                    const float kh = ka[j] / sqrtf(ss), al = kb[j] + 0.5f;
                    ka[j] = -kh, kb[j] = kh * al;
                }
            }
            const int nck = (T + MRW_WKV_CKPT - 1) / MRW_WKV_CKPT;
            float *ck = malloc((size_t)B * H * nck * NN * sizeof(float)), *y = malloc(n * sizeof(float));
            float *scr = malloc(2 * mrw_wkv7_train_scratch(N) * sizeof(float));
            mrw_wkv7_train_fwd(B, T, H, N, r, w, k, v, a, b, y, ck, 2);
            mrw_wkv7_train_bwd(B, T, H, N, r, w, k, v, a, b, ck, dy, out[0], out[1], out[2], out[3], out[4], out[5],
                               scr, 2);
            /* reference */
            double *S = malloc((size_t)(T + 1) * NN * sizeof(double)), *dS = malloc(NN * sizeof(double));
            double *ref = calloc(7 * n, sizeof(double)), *sa = malloc((size_t)T * N * sizeof(double));
            double *ry = ref + 6 * n, *dsa = malloc(N * sizeof(double));
            for (int bh = 0; bh < B * H; bh++) {
                const int bi = bh / H, h = bh % H;
                memset(S, 0, NN * sizeof(double));
                for (int t = 0; t < T; t++) {
                    const size_t o = ((size_t)bi * T + t) * C + (size_t)h * N;
                    double *S0 = S + (size_t)t * NN, *S1 = S0 + NN;
                    for (int i = 0; i < N; i++) {
                        double acc = 0;
                        for (int j = 0; j < N; j++) acc += S0[i * N + j] * a[o + j];
                        sa[t * N + i] = acc;
                    }
                    for (int i = 0; i < N; i++) {
                        double yy = 0;
                        for (int j = 0; j < N; j++) {
                            S1[i * N + j] = S0[i * N + j] * w[o + j] + sa[t * N + i] * b[o + j] + (double)v[o + i] * k[o + j];
                            yy += S1[i * N + j] * r[o + j];
                        }
                        ry[o + i] = yy;
                    }
                }
                memset(dS, 0, NN * sizeof(double));
                for (int t = T - 1; t >= 0; t--) {
                    const size_t o = ((size_t)bi * T + t) * C + (size_t)h * N;
                    const double *S0 = S + (size_t)t * NN, *S1 = S0 + NN;
                    for (int i = 0; i < N; i++)
                        for (int j = 0; j < N; j++) {
                            ref[0 * n + o + j] += S1[i * N + j] * dy[o + i];
                            dS[i * N + j] += (double)dy[o + i] * r[o + j];
                        }
                    for (int i = 0; i < N; i++) {
                        double ds = 0, dv = 0;
                        for (int j = 0; j < N; j++) {
                            const double g = dS[i * N + j];
                            ref[1 * n + o + j] += g * S0[i * N + j];
                            ref[5 * n + o + j] += g * sa[t * N + i];
                            ref[2 * n + o + j] += g * v[o + i];
                            ds += g * b[o + j];
                            dv += g * k[o + j];
                        }
                        dsa[i] = ds;
                        ref[3 * n + o + i] = dv;
                    }
                    for (int i = 0; i < N; i++)
                        for (int j = 0; j < N; j++) {
                            ref[4 * n + o + j] += dsa[i] * S0[i * N + j];
                            dS[i * N + j] = dS[i * N + j] * w[o + j] + dsa[i] * a[o + j];
                        }
                }
            }
            const char *names[7] = {"dr", "dw", "dk", "dv", "da", "db", "y"};
            for (int q = 0; q < 7; q++) {
                const float *got = q == 6 ? y : out[q];
                const double *want = ref + (size_t)q * n;
                double d = 0, m = 0;
                for (size_t i = 0; i < n; i++) d = fmax(d, fabs(got[i] - want[i])), m = fmax(m, fabs(want[i]));
                worst = fmax(worst, d / m);
                CHECKF(d <= 1e-5 * m, "wkv N=%d T=%d %s: max|diff| %.3g, max %.3g", N, T, names[q], d, m);
            }
            for (int q = 0; q < 7; q++) free(in[q]), free(out[q]);
            free(ck), free(y), free(scr), free(S), free(dS), free(ref), free(sa), free(dsa);
        }
    fprintf(stderr, "wkv7 kernels vs double reference: worst max|diff|/max %.3g\n", worst);
}

/* 9. From the reference init, plain SGD on one short sequence drives its loss down (the gradients train). */
static void test_sgd(void) {
    mrw_error err = {0};
    mrw_rwkv7_train_config c = {.n_layer = 2, .n_embd = 64, .head_size = 64, .vocab = 40, .ffn = 128,
                                .d_w = 8, .d_a = 8, .d_v = 8, .d_g = 16};
    mrw_rwkv7_train *m = NULL;
    CHECK_OK(mrw_rwkv7_train_new(&c, 1, 24, 1, &m, &err), &err);
    if (!m) return;
    mrw_rwkv7_train_init(m, 5);
    mrw_param_set *ps = mrw_rwkv7_train_params(m);
    int32_t tok[24], tgt[24];
    for (int t = 0; t < 24; t++) tok[t] = (t * 7 + 3) % 40;
    for (int t = 0; t < 24; t++) tgt[t] = t + 1 < 24 ? tok[t + 1] : MRW_IGNORE;
    float first = 0, last = 0;
    for (int it = 0; it < 60; it++) {
        mrw_param_zero_grad(ps);
        last = mrw_rwkv7_train_forward(m, tok, NULL, NULL, tgt, 1, 24, NULL);
        if (it == 0) first = last;
        mrw_rwkv7_train_backward(m, 1.0f, 0, NULL);
        for (size_t i = 0; i < ps->total; i++) ps->w[i] -= 0.5f * ps->g[i];
    }
    fprintf(stderr, "SGD on one sequence: loss %.4f -> %.4f\n", first, last);
    CHECKF(isfinite(last) && last < 0.5f * first, "loss %.4g -> %.4g", first, last);
    mrw_rwkv7_train_free(m);
}

/* ----------------------------------------------------------------------------------------------- 6. init */

static void test_init(void) {
    mrw_error err = {0};
    mrw_rwkv7_train_config c = {.n_layer = 3, .n_embd = 128, .head_size = 64, .vocab = 300, .ffn = 448,
                                .d_w = 32, .d_a = 32, .d_v = 32, .d_g = 64};
    mrw_rwkv7_train *m = NULL;
    CHECK_OK(mrw_rwkv7_train_new(&c, 1, 16, 2, &m, &err), &err);
    if (!m) return;
    mrw_rwkv7_train_init(m, 42);
    mrw_param_set *ps = mrw_rwkv7_train_params(m);
#define P(name) mrw_param_w(ps, mrw_param_find(ps, name))
#define ND(name) ps->p[mrw_param_find(ps, name)].no_decay
    CHECK(mrw_param_find(ps, "llm.blocks.0.att.v1") >= 0);
    CHECK(ND("llm.emb.weight") == 0 && ND("llm.head.weight") == 0 && ND("llm.blocks.1.att.key.weight") == 0);
    CHECK(ND("llm.blocks.1.ffn.value.weight") == 0);
    CHECK(ND("llm.blocks.1.att.w1") == 1 && ND("llm.blocks.1.att.r_k") == 1 && ND("llm.blocks.1.ln1.weight") == 1);
    CHECK(ND("llm.blocks.1.att.x_r") == 1 && ND("llm.blocks.0.att.ln_x.weight") == 1);
    /* layer 0: ratio_1_to_almost0 = 1: x_r[i] = 1 - (i/C)^0.2 */
    CHECK_NEAR(P("llm.blocks.0.att.x_r")[0], 1.0, 0);
    CHECK_NEAR(P("llm.blocks.0.att.x_r")[64], 1.0 - pow(0.5, 0.2), 1e-6);
    CHECK_NEAR(P("llm.blocks.1.ffn.x_k")[64], 1.0 - pow(0.5, pow(2.0 / 3, 4)), 1e-6);
    CHECK_NEAR(P("llm.blocks.2.att.ln_x.weight")[5], 1.0, 1e-6);
    CHECK_NEAR(P("llm.blocks.0.att.ln_x.weight")[5], pow(1.0 / 3, 0.7), 1e-6);
    CHECK_NEAR(P("llm.blocks.0.att.k_a")[7], 1.02, 1e-6);
    CHECK_NEAR(P("llm.blocks.0.att.r_k")[7], -0.04, 1e-7);
    CHECK_NEAR(P("llm.blocks.1.att.k_k")[0], 0.71 + 0.05, 1e-6);
    /* w0[0] (layer 0) = -6 + 0.5 + zigzag(0)*2.5 with zigzag(0) = -1 */
    CHECK_NEAR(P("llm.blocks.0.att.w0")[0], -6 + 0.5 - 2.5, 1e-5);
    CHECK_NEAR(P("llm.blocks.0.att.a0")[127], -0.19 + 0.3 + 0.2, 1e-6);
    CHECK_NEAR(P("llm.blocks.0.ln1.weight")[3], 1.0, 0);
    CHECK_NEAR(P("llm.blocks.0.ln1.bias")[3], 0.0, 0);
    CHECK(max_abs(P("llm.blocks.1.att.output.weight"), 128 * 128) == 0);
    CHECK(max_abs(P("llm.blocks.1.ffn.value.weight"), 128 * 448) == 0);
    CHECK(max_abs(P("llm.blocks.1.att.w1"), 128 * 32) == 0);
    CHECK(max_abs(P("llm.emb.weight"), 300 * 128) <= 1e-4 && max_abs(P("llm.emb.weight"), 300 * 128) > 0);
    /* orthogonality: receptance rows orthonormal; w2 [32, 128] rows of norm 0.1; ffn.key [448, 128] columns
     * orthonormal; head [300, 128] columns of norm 0.5·sqrt(300/128) */
    struct { const char *name; int rows, cols; double gain; } o[] = {
        {"llm.blocks.1.att.receptance.weight", 128, 128, 1.0}, {"llm.blocks.1.att.key.weight", 128, 128, 0.1},
        {"llm.blocks.2.att.w2", 32, 128, 0.1}, {"llm.blocks.0.ffn.key.weight", 448, 128, 1.0},
        {"llm.head.weight", 300, 128, 0.5 * sqrt(300.0 / 128)}};
    for (int q = 0; q < 5; q++) {
        const float *w = P(o[q].name);
        const int byrow = o[q].rows <= o[q].cols, nv = byrow ? o[q].rows : o[q].cols, len = byrow ? o[q].cols : o[q].rows;
        double e = 0;
        for (int a = 0; a < nv; a += 7)
            for (int b = 0; b < nv; b += 5) {
                double d = 0;
                for (int i = 0; i < len; i++) {
                    const double x = byrow ? w[(size_t)a * o[q].cols + i] : w[(size_t)i * o[q].cols + a];
                    const double y = byrow ? w[(size_t)b * o[q].cols + i] : w[(size_t)i * o[q].cols + b];
                    d += x * y;
                }
                e = fmax(e, fabs(d - (a == b ? o[q].gain * o[q].gain : 0)));
            }
        CHECKF(e < 1e-5, "%s: not orthogonal with gain %g (max error %.3g)", o[q].name, o[q].gain, e);
    }
    /* a forward from init is finite and near ln(V) */
    int32_t tok[16], tgt[16];
    for (int i = 0; i < 16; i++) tok[i] = (i * 37) % 300, tgt[i] = (i * 11) % 300;
    const float l = mrw_rwkv7_train_forward(m, tok, NULL, NULL, tgt, 1, 16, NULL);
    CHECKF(isfinite(l) && fabs(l - log(300.0)) < 1.0, "loss from init %.4g", l);
    /* init is deterministic */
    float first = P("llm.head.weight")[1000];
    mrw_rwkv7_train_init(m, 42);
    CHECK(P("llm.head.weight")[1000] == first);
#undef P
#undef ND
    mrw_rwkv7_train_free(m);
}

/* ------------------------------------------------------------------------- 10. the backward's GEMM */

static void test_sgemm_t(void) {
    /* {M, N, K}: tails everywhere; K > 256 (two blocks, the second added to Y), N > 256 (two column blocks),
     * M with many row blocks (grouped), and tiny products that stay on one thread */
    static const int dims[][3] = {{1, 1, 1}, {5, 7, 3}, {13, 33, 17}, {37, 300, 29}, {29, 45, 600}, {250, 64, 100},
                                  {12, 32, 256}, {400, 48, 40}, {100, 300, 70}, {300, 40, 300}, {40, 1100, 60},
                                  {30, 600, 300}};
    double worst = 0;
    for (int nt = 1; nt <= 2; nt++) {
        mrw_kctx kc;
        mrw_kctx_init(&kc, nt);
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
            const int M = dims[d][0], N = dims[d][1], K = dims[d][2];
            for (int lay = 0; lay < 8; lay++) {
                const int tx = lay & 1, tw = (lay >> 1) & 1, acc = lay >> 2;
                /* padded leading dimensions, so that a wrong stride shows */
                const int ldx = (tx ? M : K) + 3, ldw = (tw ? N : K) + 5, ldy = N + 2;
                const size_t nx = (size_t)(tx ? K : M) * ldx, nw = (size_t)(tw ? K : N) * ldw, ny = (size_t)M * ldy;
                float *X = malloc(nx * sizeof *X), *W = malloc(nw * sizeof *W), *Y = malloc(ny * sizeof *Y),
                      *R = malloc(ny * sizeof *R);
                uint64_t x = 12345 + d * 77 + lay;
                for (size_t i = 0; i < nx + nw + ny; i++) {
                    x = x * 6364136223846793005ull + 1442695040888963407ull;
                    const float v = (float)((double)(x >> 40) / (1 << 24) - 0.5);
                    if (i < nx) X[i] = v;
                    else if (i < nx + nw) W[i - nx] = v;
                    else Y[i - nx - nw] = R[i - nx - nw] = v;
                }
                mrw_sgemm_t(&kc, M, N, K, X, ldx, tx, W, ldw, tw, Y, ldy, acc);
                mrw_sgemm_t_ref(M, N, K, X, ldx, tx, W, ldw, tw, R, ldy, acc);
                double e = 0;
                int pad_ok = 1;
                for (int m = 0; m < M; m++) {
                    for (int n = 0; n < N; n++) e = fmax(e, fabs((double)Y[(size_t)m * ldy + n] - R[(size_t)m * ldy + n]));
                    for (int n = N; n < ldy; n++) pad_ok &= Y[(size_t)m * ldy + n] == R[(size_t)m * ldy + n];
                }
                /* fp32 sums of K products of magnitude <= 1/4 */
                const double tol = 1e-6 * (K + 4);
                CHECKF(e <= tol && pad_ok, "sgemm_t M%d N%d K%d tx%d tw%d acc%d nt%d: max err %.3g (tol %.3g), padding %s",
                       M, N, K, tx, tw, acc, nt, e, tol, pad_ok ? "kept" : "written");
                worst = fmax(worst, e / tol);
                free(X), free(W), free(Y), free(R);
            }
        }
        mrw_kctx_free(&kc);
    }
    fprintf(stderr, "sgemm_t vs reference: worst error %.2f of its tolerance\n", worst);
}

int main(void) {
    test_sgemm_t();
    test_init();
    test_wkv();
    test_sgd();
    test_inference_parity(MRW_DT_F32);
    test_inference_parity(MRW_DT_BF16); /* converted to f32 by from_model; inference in exact mode */
    test_inference_parity(MRW_DT_Q8_0);
    test_threads();
    fixture fx;
    if (load_fixture(&fx, 2) == 0) test_autograd(&fx); /* two threads: every parallel path once */
    free_fixture(&fx);
    /* one thread for the many small forwards below (forks cost more than these tiny loops on a busy machine) */
    if (load_fixture(&fx, 1) == 0) {
        test_autograd(&fx);
        test_finite_differences(&fx);
        test_frozen_and_scale(&fx);
    }
    free_fixture(&fx);
    TEST_MAIN_END();
}
