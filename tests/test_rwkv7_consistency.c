/* Internal consistency of the forward pass on random models (no fixtures needed): sequence mode equals RNN
 * mode, a state carried across calls equals one long call, chunking does not change results, the
 * embedding path equals the token path, every weight dtype runs, state files round-trip and reject
 * mismatches, and bad calls fail cleanly. Parity with the PyTorch reference is in test_rwkv7_parity.c. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "modrwkv.h"
#include "test.h"

static double max_abs(const float *a, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static double max_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static mrw_model *random_model(mrw_dtype dt, int layers, int C, int V) {
    mrw_rwkv7_config cfg = {.n_layer = layers, .n_embd = C, .head_size = 64, .n_vocab = V,
                            .lora_w = 32, .lora_a = 16, .lora_v = 8, .lora_g = 24};
    mrw_model *m = NULL;
    mrw_error err = {0};
    CHECK_OK(mrw_model_new_random(&cfg, dt, 1234, &m, &err), &err);
    return m;
}

/* logits of the last token after feeding toks[0..n) as one sequence (chunk = max_chunk) or one by one */
static void run(mrw_model *m, const int32_t *toks, int n, int rnn, int chunk, int threads, float *out) {
    t_last_logits(m, toks, n, rnn, chunk, threads, 0, out);
}

static void consistency(mrw_dtype dt, double tol_rel) {
    const int V = 300, n = 45;
    mrw_model *m = random_model(dt, 3, 128, V);
    if (!m) return;
    int32_t toks[45];
    for (int i = 0; i < n; i++) toks[i] = (i * 37 + 11) % V;
    float *a = malloc(V * sizeof *a), *b = malloc(V * sizeof *b), *c = malloc(V * sizeof *c), *d = malloc(V * sizeof *d);
    run(m, toks, n, 0, 256, 1, a);  /* sequence, one chunk, 1 thread */
    run(m, toks, n, 1, 256, 2, b);  /* RNN, 2 threads */
    run(m, toks, n, 0, 7, 2, c);    /* sequence in chunks of 7 */
    run(m, toks, n, 0, 256, 2, d);  /* sequence, 2 threads */
    double scale = max_abs(a, V);
    CHECKF(scale > 0.5 && isfinite(scale), "%s: logits degenerate (max |logit| %g)", mrw_dtype_name(dt), scale);
    CHECKF(max_diff(a, b, V) <= tol_rel * scale, "%s seq vs rnn: %g > %g", mrw_dtype_name(dt), max_diff(a, b, V), tol_rel * scale);
    CHECKF(max_diff(a, c, V) <= tol_rel * scale, "%s seq vs chunked: %g", mrw_dtype_name(dt), max_diff(a, c, V));
    CHECKF(max_diff(a, d, V) <= 1e-5 * scale, "%s 1 vs 2 threads: %g", mrw_dtype_name(dt), max_diff(a, d, V));
    fprintf(stderr, "%-5s max|logit| %.3f  seq-rnn %.2e  seq-chunked %.2e  threads %.2e\n", mrw_dtype_name(dt), scale,
            max_diff(a, b, V), max_diff(a, c, V), max_diff(a, d, V));
    free(a); free(b); free(c); free(d);
    mrw_model_free(m);
}

static void state_and_embeddings(void) {
    const int V = 256;
    mrw_model *m = random_model(MRW_DT_F32, 2, 128, V);
    if (!m) return;
    mrw_error err = {0};
    mrw_context *ctx = NULL;
    CHECK_OK(mrw_context_new(m, NULL, &ctx, &err), &err);
    int32_t toks[20];
    for (int i = 0; i < 20; i++) toks[i] = (i * 13 + 5) % V;
    float *one = malloc(V * sizeof *one), *two = malloc(V * sizeof *two), *all = malloc(20 * V * sizeof *all);
    mrw_state *s1 = mrw_state_new(m), *s2 = mrw_state_new(m);
    CHECK_OK(mrw_eval_tokens(ctx, s1, toks, 20, MRW_LOGITS_LAST, one, &err), &err);
    /* carried: 12 then 8 */
    CHECK_OK(mrw_eval_tokens(ctx, s2, toks, 12, MRW_LOGITS_NONE, NULL, &err), &err);
    CHECK_OK(mrw_eval_tokens(ctx, s2, toks + 12, 8, MRW_LOGITS_LAST, two, &err), &err);
    CHECK(max_diff(one, two, V) <= 1e-5 * max_abs(one, V));
    size_t n1, n2;
    float *d1 = mrw_state_data(s1, &n1), *d2 = mrw_state_data(s2, &n2);
    CHECK(n1 == n2 && n1 == 2 * (2 * 128 + 2 * 64 * 64));
    CHECK(max_diff(d1, d2, (int)n1) <= 1e-4);
    /* all-position logits: the last row equals the last-only result */
    mrw_state_reset(s2);
    CHECK_OK(mrw_eval_tokens(ctx, s2, toks, 20, MRW_LOGITS_ALL, all, &err), &err);
    CHECK(max_diff(all + 19 * V, one, V) <= 1e-5 * max_abs(one, V));
    /* embeddings path: rows of emb give the same result as the tokens */
    float *emb = malloc(20 * 128 * sizeof *emb);
    for (int i = 0; i < 20; i++) CHECK(mrw_model_embedding(m, toks[i], emb + i * 128) == MRW_OK);
    CHECK(mrw_model_embedding(m, V, emb) == MRW_E_ARG);
    mrw_state_reset(s2);
    CHECK_OK(mrw_eval_embeddings(ctx, s2, emb, 20, MRW_LOGITS_LAST, two, &err), &err);
    CHECK(max_diff(one, two, V) <= 1e-6 * max_abs(one, V));
    /* state files */
    char path[] = "/tmp/mrw_state_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK_OK(mrw_state_save(s1, path, &err), &err);
    mrw_state_reset(s2);
    CHECK_OK(mrw_state_load(s2, path, &err), &err);
    d2 = mrw_state_data(s2, &n2);
    CHECK(max_diff(d1, d2, (int)n1) == 0);
    /* continuing from the loaded state equals continuing from the original */
    int32_t nxt = 7;
    CHECK_OK(mrw_eval_tokens(ctx, s1, &nxt, 1, MRW_LOGITS_LAST, one, &err), &err);
    CHECK_OK(mrw_eval_tokens(ctx, s2, &nxt, 1, MRW_LOGITS_LAST, two, &err), &err);
    CHECK(max_diff(one, two, V) == 0);
    /* corrupt: flip a byte in the data, truncate, and load into a different shape */
    {
        size_t len;
        unsigned char *buf = t_read_file(path, &len);
        buf[100] ^= 1;
        FILE *fp = fopen(path, "wb");
        fwrite(buf, 1, len, fp);
        fclose(fp);
        CHECK(mrw_state_load(s2, path, &err) == MRW_E_FORMAT);
        CHECK(strstr(err.msg, "checksum") != NULL);
        fp = fopen(path, "wb");
        fwrite(buf, 1, len / 2, fp);
        fclose(fp);
        CHECK(mrw_state_load(s2, path, &err) != MRW_OK);
        free(buf);
        mrw_model *other = random_model(MRW_DT_F32, 3, 128, V);
        mrw_state *so = mrw_state_new(other);
        CHECK_OK(mrw_state_save(so, path, &err), &err);
        CHECK(mrw_state_load(s2, path, &err) == MRW_E_SHAPE);
        mrw_state_free(so);
        mrw_model_free(other);
        CHECK(mrw_state_load(s2, "/nonexistent/state", &err) == MRW_E_IO);
    }
    unlink(path);
    /* bad calls */
    int32_t badtok = V;
    CHECK(mrw_eval_tokens(ctx, s1, &badtok, 1, MRW_LOGITS_LAST, one, &err) == MRW_E_ARG);
    badtok = -1;
    CHECK(mrw_eval_tokens(ctx, s1, &badtok, 1, MRW_LOGITS_LAST, one, &err) == MRW_E_ARG);
    CHECK(mrw_eval_tokens(ctx, s1, toks, 0, MRW_LOGITS_LAST, one, &err) == MRW_E_ARG);
    CHECK(mrw_eval_tokens(ctx, s1, toks, 3, MRW_LOGITS_LAST, NULL, &err) == MRW_E_ARG);
    free(one); free(two); free(all); free(emb);
    mrw_state_free(s1);
    mrw_state_free(s2);
    mrw_context_free(ctx);
    mrw_model_free(m);
}

int main(void) {
    /* RNN and sequence mode round activations differently only in the GEMM kernels: bf16/f16 round the
     * activations (and f16 weights) to bf16, q8_0/q4_0 quantize them per 32-block (see test_matmul.c). */
    consistency(MRW_DT_F32, 1e-5);
    consistency(MRW_DT_F16, 2e-2);
    consistency(MRW_DT_BF16, 2e-2);
    consistency(MRW_DT_Q8_0, 2e-2);
    consistency(MRW_DT_Q4_0, 2e-2);
    state_and_embeddings();
    TEST_MAIN_END();
}
