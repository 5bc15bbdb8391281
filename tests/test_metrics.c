/* Evaluation metrics (src/eval/metrics.c) against the reference values of
 * tests/reference/make_metrics_fixtures.py (tests/fixtures/eval/metrics_cases.json; WER/CER cross-checked
 * with jiwer there), plus properties the fixtures cannot hold (invalid UTF-8, limits, symmetry). */
#include <cjson/cJSON.h>
#include <stdint.h>

#include "eval/metrics.h"
#include "eval/plot.h"
#include "test.h"

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}
static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static float *floats(const cJSON *arr, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(arr);
    float *f = malloc((*n ? *n : 1) * sizeof *f);
    size_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) f[i++] = (float)x->valuedouble;
    return f;
}

static void fixture_cases(void) {
    size_t len = 0;
    unsigned char *buf = t_read_file("tests/fixtures/eval/metrics_cases.json", &len);
    CHECK(buf != NULL);
    if (!buf) return;
    cJSON *root = cJSON_ParseWithLength((const char *)buf, len);
    CHECK(root != NULL);
    if (!root) {
        free(buf);
        return;
    }
    const cJSON *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "vqa_normalize")) {
        const char *in = str(c, "in");
        char *o = mrw_vqa_normalize(in, strlen(in));
        CHECKF(o && !strcmp(o, str(c, "out")), "vqa_normalize('%s') = '%s', expected '%s'", in, o ? o : "(null)",
               str(c, "out"));
        free(o);
        n_cases++;
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "exact_match")) {
        int m = mrw_exact_match(str(c, "pred"), str(c, "ref"));
        CHECKF(m == (int)num(c, "match"), "exact_match('%s', '%s') = %d", str(c, "pred"), str(c, "ref"), m);
        n_cases++;
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "vqa_accuracy")) {
        const cJSON *refs = cJSON_GetObjectItem(c, "refs"), *r;
        const char *rv[16];
        int n = 0;
        cJSON_ArrayForEach(r, refs) if (n < 16) rv[n++] = r->valuestring;
        CHECK_NEAR(mrw_vqa_accuracy(str(c, "pred"), rv, n), num(c, "acc"), 1e-12);
        n_cases++;
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "asr_normalize")) {
        const char *in = str(c, "in");
        char *o = mrw_asr_normalize(in, strlen(in));
        CHECKF(o && !strcmp(o, str(c, "out")), "asr_normalize('%s') = '%s', expected '%s'", in, o ? o : "(null)",
               str(c, "out"));
        free(o);
        n_cases++;
    }
    mrw_error err = {0};
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "wer")) {
        mrw_edit_stats s;
        CHECK_OK(mrw_wer_stats(str(c, "hyp"), str(c, "ref"), &s, &err), &err);
        CHECKF(s.errors == (int64_t)num(c, "errors") && s.ref_len == (int64_t)num(c, "ref_len") &&
                   s.hyp_len == (int64_t)num(c, "hyp_len"),
               "WER('%s' | '%s'): %lld errors / %lld words", str(c, "hyp"), str(c, "ref"), (long long)s.errors,
               (long long)s.ref_len);
        n_cases++;
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cer")) {
        mrw_edit_stats s;
        CHECK_OK(mrw_cer_stats(str(c, "hyp"), str(c, "ref"), (int)num(c, "remove_spaces"), &s, &err), &err);
        CHECKF(s.errors == (int64_t)num(c, "errors") && s.ref_len == (int64_t)num(c, "ref_len") &&
                   s.hyp_len == (int64_t)num(c, "hyp_len"),
               "CER('%s' | '%s'): %lld errors / %lld chars", str(c, "hyp"), str(c, "ref"), (long long)s.errors,
               (long long)s.ref_len);
        n_cases++;
    }
    const cJSON *cw = cJSON_GetObjectItem(root, "corpus_wer");
    {
        const cJSON *hs = cJSON_GetObjectItem(cw, "hyps"), *rs = cJSON_GetObjectItem(cw, "refs");
        int64_t e = 0, n = 0;
        for (int i = 0; i < cJSON_GetArraySize(hs); i++) {
            mrw_edit_stats s;
            CHECK_OK(mrw_wer_stats(cJSON_GetArrayItem(hs, i)->valuestring, cJSON_GetArrayItem(rs, i)->valuestring, &s,
                                   &err),
                     &err);
            e += s.errors;
            n += s.ref_len;
        }
        CHECK_NEAR((double)e / (double)n, num(cw, "wer"), 1e-12);
        n_cases++;
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "series")) {
        size_t np, nr;
        float *p = floats(cJSON_GetObjectItem(c, "pred"), &np), *r = floats(cJSON_GetObjectItem(c, "ref"), &nr);
        CHECK(np == nr);
        CHECK_NEAR(mrw_mse(p, r, np), num(c, "mse"), 1e-12 * (1 + num(c, "mse")));
        CHECK_NEAR(mrw_mae(p, r, np), num(c, "mae"), 1e-12 * (1 + num(c, "mae")));
        free(p);
        free(r);
        n_cases++;
    }
    fprintf(stderr, "fixture cases: %d\n", n_cases);
    CHECK(n_cases > 100);
    cJSON_Delete(root);
    free(buf);
}

static void properties(void) {
    mrw_error err = {0};
    mrw_edit_stats s;
    /* Invalid UTF-8: each bad byte is one character; distinct bytes differ. */
    CHECK_OK(mrw_cer_stats("ab\xff", "ab\xfe", 0, &s, &err), &err);
    CHECK(s.errors == 1 && s.ref_len == 3);
    CHECK_OK(mrw_cer_stats("\xc3", "\xc3\xa9", 0, &s, &err), &err); /* truncated é vs é */
    CHECK(s.errors == 1 && s.ref_len == 1);
    CHECK_OK(mrw_cer_stats("\xe4\xbd\xa0\xe5\xa5\xbd", "\xe4\xbd\xa0", 0, &s, &err), &err); /* 你好 vs 你 */
    CHECK(s.errors == 1 && s.ref_len == 1 && s.hyp_len == 2);
    /* A non-ASCII word is one unit; words differing only in a trailing byte differ. */
    CHECK_OK(mrw_wer_stats("caf\xc3\xa9 noir", "caf\xc3\xa9 noire", &s, &err), &err);
    CHECK(s.errors == 1 && s.ref_len == 2);
    /* Symmetry and triangle inequality of the distance on random sequences. */
    uint64_t x = 88172645463325252ull;
    for (int it = 0; it < 200; it++) {
        uint32_t a[12], b[12], c[12];
        size_t na = it % 12, nb = (it * 7) % 12, nc = (it * 5) % 12;
        for (int i = 0; i < 12; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            a[i] = x % 3, b[i] = (x >> 8) % 3, c[i] = (x >> 16) % 3;
        }
        int64_t ab = mrw_levenshtein_u32(a, na, b, nb), ba = mrw_levenshtein_u32(b, nb, a, na);
        int64_t ac = mrw_levenshtein_u32(a, na, c, nc), cb = mrw_levenshtein_u32(c, nc, b, nb);
        CHECK(ab == ba);
        CHECK(ab <= ac + cb);
        CHECK(ab >= (int64_t)(na > nb ? na - nb : nb - na) && ab <= (int64_t)(na > nb ? na : nb));
    }
    /* Rates and edge cases. */
    CHECK_OK(mrw_wer_stats("", "", &s, &err), &err);
    CHECK(mrw_edit_rate(&s) == 0);
    CHECK_OK(mrw_wer_stats("x", "", &s, &err), &err);
    CHECK(mrw_edit_rate(&s) == 1);
    CHECK_OK(mrw_wer_stats("a b", "a b c d", &s, &err), &err);
    CHECK_NEAR(mrw_edit_rate(&s), 0.5, 0);
    /* The size limit is an error, not a stall. */
    size_t big = (size_t)MRW_METRICS_MAX_UNITS * 2 + 4;
    char *w = malloc(big + 1);
    for (size_t i = 0; i < big; i++) w[i] = i % 2 ? ' ' : 'a';
    w[big] = 0;
    CHECK(mrw_wer_stats(w, "a", &s, &err) == MRW_E_LIMIT);
    CHECK(strstr(err.msg, "limit") != NULL);
    CHECK(mrw_cer_stats("a", w, 0, &s, &err) == MRW_E_LIMIT);
    w[2 * 30000] = 0; /* 30000 x 30000 words: under the per-side limit, over the table limit */
    CHECK(mrw_wer_stats(w, w, &s, &err) == MRW_E_LIMIT);
    w[2 * 10000 - 1] = 0; /* 10000 x 10000 words: allowed (the identity: no errors) */
    CHECK_OK(mrw_wer_stats(w, w, &s, &err), &err);
    CHECK(s.errors == 0 && s.ref_len == 10000);
    free(w);
    CHECK(mrw_vqa_accuracy("x", NULL, 0) < 0);
    CHECK(mrw_text_has_cjk("hello \xe4\xbd\xa0") == 1);
    CHECK(mrw_text_has_cjk("hello caf\xc3\xa9") == 0);
    CHECK(mrw_mse(NULL, NULL, 0) == 0 && mrw_mae(NULL, NULL, 0) == 0);
    /* Normalisation never grows the text and always terminates it. */
    const char *odd[] = {"", " ", ".", "...", ",", "1,", ",1", "a.1", "-", "\xff\xfe", "the an a"};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        char *v = mrw_vqa_normalize(odd[i], strlen(odd[i])), *r = mrw_asr_normalize(odd[i], strlen(odd[i]));
        CHECK(v && strlen(v) <= strlen(odd[i]) && r && strlen(r) <= strlen(odd[i]));
        free(v);
        free(r);
    }
}

/* ------------------------------------------------------------------------------ plot and training log */

static void count_warn(void *user, const char *msg) {
    int *n = user;
    (*n)++;
    CHECKF(strstr(msg, ".jsonl:") != NULL, "warning without file:line: %s", msg);
}

static void plot_parts(void) {
    /* moving average against the plain definition, with a NaN inside */
    double x[40], y[40];
    for (int i = 0; i < 40; i++) x[i] = sin(i * 0.7) * 3 + i;
    x[13] = NAN;
    for (int w = 1; w <= 9; w += 4) {
        mrw_moving_average(x, 40, w, y);
        for (int i = 0; i < 40; i++) {
            double s = 0;
            int c = 0;
            for (int j = i - w + 1 < 0 ? 0 : i - w + 1; j <= i; j++)
                if (isfinite(x[j])) s += x[j], c++;
            if (c) CHECK_NEAR(y[i], s / c, 1e-9);
            else CHECK(isnan(y[i]));
        }
    }
    /* the log reader: good, eval and malformed lines */
    char path[] = "/tmp/mrw_test_log_XXXXXX.jsonl";
    int fd = mkstemps(path, 6);
    CHECK(fd >= 0);
    if (fd < 0) return;
    FILE *fp = fdopen(fd, "w");
    fputs("{\"step\": 1, \"loss\": 3.5, \"lr\": 0.001}\n\n"
          "{\"step\": 2, \"loss\": 3.25}\n"
          "{\"step\": 2, \"eval_loss\": 3.75}\n"
          "nope\n{\"step\": 3}\n{\"step\": 3, \"loss\": null}\n{\"step\": 4, \"loss\": 1, \"lr\": \"x\"}\n"
          "{\"step\": 5, \"loss\": 2.5, \"lr\": 0.0005}", fp);
    fclose(fp);
    mrw_train_log log;
    mrw_error err = {0};
    int warnings = 0;
    CHECK_OK(mrw_train_log_read(path, &log, count_warn, &warnings, &err), &err);
    CHECK(log.n == 3 && log.n_eval == 1 && log.n_bad == 4 && warnings == 4);
    if (log.n == 3) {
        CHECK(log.step[2] == 5 && log.loss[1] == 3.25 && log.lr[0] == 0.001 && isnan(log.lr[1]));
        CHECK(log.eval_step[0] == 2 && log.eval_loss[0] == 3.75);
    }
    /* render: the curve's colour appears, the background stays white, NaNs are skipped */
    mrw_plot_series ser[2] = {{log.step, log.loss, log.n, 0xff0000, MRW_PLOT_LINE, 3, "train"},
                              {log.eval_step, log.eval_loss, log.n_eval, 0x0000ff, MRW_PLOT_MARKERS, 8, NULL}};
    mrw_plot_panel panel = {"t", "step", "loss", ser, 2, 1};
    uint8_t *rgb = NULL;
    CHECK_OK(mrw_plot_render_rgb(&panel, 1, 320, 200, &rgb, &err), &err);
    if (rgb) {
        long red = 0, blue = 0, white = 0;
        for (int i = 0; i < 320 * 200; i++) {
            const uint8_t *p = rgb + 3 * i;
            red += p[0] > 200 && p[1] < 60 && p[2] < 60;
            blue += p[2] > 200 && p[0] < 60 && p[1] < 60;
            white += p[0] == 255 && p[1] == 255 && p[2] == 255;
        }
        CHECKF(red > 100 && blue > 20 && white > 320 * 200 / 2, "red %ld blue %ld white %ld", red, blue, white);
        free(rgb);
    }
    CHECK(mrw_plot_render_rgb(&panel, 1, 10, 200, &rgb, &err) == MRW_E_ARG && rgb == NULL);
    CHECK(mrw_plot_write("/tmp/x.bmp", &panel, 1, 320, 200, &err) == MRW_E_ARG);
    CHECK(mrw_plot_write("/nonexistent-dir/x.png", &panel, 1, 320, 200, &err) != MRW_OK);
    mrw_train_log_free(&log);
    remove(path);
    /* an empty log is an error */
    fp = fopen(path, "w");
    fclose(fp);
    CHECK(mrw_train_log_read(path, &log, NULL, NULL, &err) == MRW_E_FORMAT);
    CHECK(strstr(err.msg, "no training steps") != NULL);
    remove(path);
}

int main(void) {
    fixture_cases();
    properties();
    plot_parts();
    TEST_MAIN_END();
}
