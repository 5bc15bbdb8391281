/* Batched decode (src/models/rwkv7_batch.c) against the one-sequence RNN path: B sequences at different
 * positions advance one token each in one call, and every sequence's logits and whole state must match
 * mrw_eval_tokens(n = 1) on a copy of its state. f32 weights, and bf16 / q8_0 with an exact context (tolerance
 * stated per case); batches larger than the context's chunk; the argument checks. */
#include "models/rwkv7_batch.h"
#include "modrwkv.h"
#include "test.h"

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void run_case(mrw_dtype dt, int C, int B, int chunk, int threads, int exact, double tol) {
    mrw_rwkv7_config cfg = {.n_layer = 2, .n_embd = C, .head_size = 64, .n_vocab = 300, .n_ffn = 0};
    mrw_model *m = NULL;
    mrw_error err = {0};
    CHECK_OK(mrw_model_new_random(&cfg, dt, 99, &m, &err), &err);
    if (!m) return;
    const int V = mrw_model_get_info(m).n_vocab;
    mrw_context_params cp = mrw_context_params_default();
    cp.n_threads = threads;
    cp.max_chunk = chunk;
    cp.exact = exact;
    mrw_context *ctx = NULL, *one = NULL;
    CHECK_OK(mrw_context_new(m, &cp, &ctx, &err), &err);
    cp.max_chunk = 64;
    CHECK_OK(mrw_context_new(m, &cp, &one, &err), &err);
    mrw_state **sb = calloc((size_t)B, sizeof *sb), **s1 = calloc((size_t)B, sizeof *s1);
    float *lb = malloc((size_t)B * V * sizeof *lb), *l1 = malloc((size_t)V * sizeof *l1);
    int32_t *tok = malloc((size_t)B * sizeof *tok);
    /* each sequence gets its own prompt of its own length, so the states differ */
    for (int b = 0; b < B; b++) {
        sb[b] = mrw_state_new(m);
        s1[b] = mrw_state_new(m);
        int32_t prompt[16];
        const int n = 1 + b % 13;
        for (int i = 0; i < n; i++) prompt[i] = (int32_t)((b * 37 + i * 11) % V);
        CHECK_OK(mrw_eval_tokens(one, sb[b], prompt, n, MRW_LOGITS_NONE, NULL, &err), &err);
        CHECK_OK(mrw_state_copy(s1[b], sb[b]), &err);
    }
    double worst_logit = 0, worst_state = 0;
    for (int step = 0; step < 3; step++) {
        for (int b = 0; b < B; b++) tok[b] = (int32_t)((b * 7 + step * 13 + 1) % V);
        CHECK_OK(mrw_eval_batch(ctx, sb, tok, B, lb, &err), &err);
        for (int b = 0; b < B; b++) {
            CHECK_OK(mrw_eval_tokens(one, s1[b], &tok[b], 1, MRW_LOGITS_LAST, l1, &err), &err);
            worst_logit = fmax(worst_logit, max_diff(lb + (size_t)b * V, l1, (size_t)V));
            size_t na, nb;
            float *da = mrw_state_data(sb[b], &na), *db = mrw_state_data(s1[b], &nb);
            worst_state = fmax(worst_state, max_diff(da, db, na));
        }
    }
    fprintf(stderr, "%-5s C=%d B=%2d chunk=%2d threads=%d exact=%d: max |logit diff| %.3g, max |state diff| %.3g\n",
            mrw_dtype_name(dt), C, B, chunk, threads, exact, worst_logit, worst_state);
    CHECKF(worst_logit <= tol && worst_state <= tol, "%s B=%d: %.3g / %.3g > %.3g", mrw_dtype_name(dt), B, worst_logit,
           worst_state, tol);
    /* argument checks */
    if (B >= 2) {
        mrw_state *dup[2] = {sb[0], sb[0]};
        CHECK(mrw_eval_batch(ctx, dup, tok, 2, NULL, &err) == MRW_E_ARG && strstr(err.msg, "share"));
        int32_t bad[2] = {0, V};
        CHECK(mrw_eval_batch(ctx, sb, bad, 2, NULL, &err) == MRW_E_ARG && strstr(err.msg, "vocabulary"));
    }
    CHECK(mrw_eval_batch(ctx, sb, tok, 0, NULL, &err) == MRW_E_ARG);
    for (int b = 0; b < B; b++) {
        mrw_state_free(sb[b]);
        mrw_state_free(s1[b]);
    }
    free(sb);
    free(s1);
    free(lb);
    free(l1);
    free(tok);
    mrw_context_free(ctx);
    mrw_context_free(one);
    mrw_model_free(m);
}

int main(void) {
    run_case(MRW_DT_F32, 128, 1, 64, 1, 0, 1e-4);
    run_case(MRW_DT_F32, 128, 9, 64, 2, 0, 1e-4);
    run_case(MRW_DT_F32, 128, 40, 16, 2, 0, 1e-4); /* three pieces of 16 rows; rows in parallel */
    run_case(MRW_DT_BF16, 128, 12, 64, 2, 1, 1e-4);
    run_case(MRW_DT_Q8_0, 128, 12, 64, 1, 1, 1e-4);
    /* not exact: the batched GEMMs round activations to bf16 as prefill does, RNN mode does not */
    run_case(MRW_DT_BF16, 128, 12, 64, 2, 0, 1e-1);
    TEST_MAIN_END();
}
