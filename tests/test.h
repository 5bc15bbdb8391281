/* Minimal test harness: each tests/test_*.c is a program; CHECK failures are counted and reported, and the
 * exit status is non-zero if any failed. Paths to ../shared come from mrw_shared_path(). */
#ifndef MRW_TEST_H
#define MRW_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modrwkv.h"

static int t_failures = 0, t_checks = 0;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        t_checks++;                                                                          \
        if (!(cond)) {                                                                       \
            t_failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);         \
        }                                                                                    \
    } while (0)

#define CHECKF(cond, ...)                                                                    \
    do {                                                                                     \
        t_checks++;                                                                          \
        if (!(cond)) {                                                                       \
            t_failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
        }                                                                                    \
    } while (0)

/* Checks an mrw_status call succeeded, printing the error message if not. */
#define CHECK_OK(call, errp)                                                                 \
    do {                                                                                     \
        t_checks++;                                                                          \
        mrw_status s_ = (call);                                                              \
        if (s_ != MRW_OK) {                                                                  \
            t_failures++;                                                                    \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, (errp)->msg); \
        }                                                                                    \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                \
    do {                                                                                     \
        double a_ = (a), b_ = (b);                                                           \
        t_checks++;                                                                          \
        if (!(fabs(a_ - b_) <= (tol))) {                                                     \
            t_failures++;                                                                    \
            fprintf(stderr, "%s:%d: %s = %.9g, %s = %.9g, |diff| %.3g > %.3g\n", __FILE__,   \
                    __LINE__, #a, a_, #b, b_, fabs(a_ - b_), (double)(tol));                 \
        }                                                                                    \
    } while (0)

#define TEST_MAIN_END()                                                                      \
    do {                                                                                     \
        fprintf(stderr, "%s: %d checks, %d failed\n", __FILE__, t_checks, t_failures);      \
        return t_failures ? 1 : 0;                                                           \
    } while (0)

/* Directory of the shared read-only assets: $MRW_SHARED, else ../shared. */
static inline const char *mrw_shared_dir(void) {
    const char *s = getenv("MRW_SHARED");
    return s && *s ? s : "../shared";
}

static inline char *t_path(char *buf, size_t n, const char *dir, const char *rel) {
    snprintf(buf, n, "%s/%s", dir, rel);
    return buf;
}

/* Reads a whole file; returns NULL if absent. */
static inline unsigned char *t_read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (b && n > 0 && fread(b, 1, (size_t)n, fp) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n > 0 ? n : 0] = 0;
    fclose(fp);
    if (len) *len = n > 0 ? (size_t)n : 0;
    return b;
}

/* Logits of the last token after feeding toks[0..n) to a fresh state, as one sequence (chunks of `chunk` tokens) or
 * one token at a time (rnn), in a context of `threads` threads, fast or exact. */
static inline void t_last_logits(mrw_model *m, const int32_t *toks, int n, int rnn, int chunk, int threads, int exact,
                                 float *out) {
    mrw_error err = {0};
    mrw_context_params cp = {.n_threads = threads, .max_chunk = chunk, .exact = exact};
    mrw_context *ctx = NULL;
    CHECK_OK(mrw_context_new(m, &cp, &ctx, &err), &err);
    if (!ctx) return;
    mrw_state *st = mrw_state_new(m);
    if (rnn)
        for (int i = 0; i < n; i++) CHECK_OK(mrw_eval_tokens(ctx, st, toks + i, 1, MRW_LOGITS_LAST, out, &err), &err);
    else
        CHECK_OK(mrw_eval_tokens(ctx, st, toks, n, MRW_LOGITS_LAST, out, &err), &err);
    mrw_state_free(st);
    mrw_context_free(ctx);
}

#endif
