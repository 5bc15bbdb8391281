/* Training data pipelines (src/train/data.h): LLaVA JSON / JSONL, audio and text JSONL against golden
 * token/label sequences made by tests/reference/make_data_fixtures.py with the reference `rwkv` tokenizer;
 * bad records reported as file:line and skipped; streaming index across chunk boundaries; the per-epoch
 * permutation; tell/seek resume; CSV series; the feature cache. */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "test.h"
#include "train/data.h"
#include "train/rwkv7_train.h"

#define FIX "tests/fixtures/data"

typedef struct {
    char text[1 << 17];
    int n;
} warnings;

static void collect(void *user, const char *msg) {
    warnings *w = user;
    size_t l = strlen(w->text);
    snprintf(w->text + l, sizeof w->text - l, "%s\n", msg);
    w->n++;
}

static int has(const warnings *w, const char *s) {
    int ok = strstr(w->text, s) != NULL;
    if (!ok) fprintf(stderr, "expected warning containing \"%s\"; got:\n%s", s, w->text);
    return ok;
}

static mrw_data_params params(const mrw_vocab *v, warnings *w) {
    mrw_data_params p;
    memset(&p, 0, sizeof p);
    p.vocab = v;
    p.warn = collect;
    p.warn_user = w;
    if (w) memset(w, 0, sizeof *w);
    return p;
}

/* golden int32 tensor (stored as int32, read back through f32: exact for |x| < 2^24) */
static int32_t *golden(const char *name, size_t *n) {
    float *f = NULL;
    mrw_error err;
    int64_t shape[8];
    int nd;
    if (mrw_read_tensor_f32(FIX "/golden.safetensors", name, &f, n, shape, &nd, &err) != MRW_OK) {
        fprintf(stderr, "golden %s: %s\n", name, err.msg);
        *n = 0;
        return NULL;
    }
    int32_t *r = malloc((*n ? *n : 1) * sizeof *r);
    for (size_t i = 0; i < *n; i++) r[i] = (int32_t)f[i];
    free(f);
    return r;
}

static int same_ints(const int32_t *a, const int32_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* Compares sample s with golden record k of `file` (ctx: truncated to ctx tokens, 0 = whole). */
static void check_golden(const char *file, int k, const mrw_data_sample *s, int ctx) {
    char key[256];
    size_t nt, nl, nm;
    snprintf(key, sizeof key, "%s.%d.tokens", file, k);
    int32_t *t = golden(key, &nt);
    snprintf(key, sizeof key, "%s.%d.labels", file, k);
    int32_t *l = golden(key, &nl);
    snprintf(key, sizeof key, "%s.%d.media", file, k);
    int32_t *m = golden(key, &nm);
    if (!t || !l || !m) {
        CHECKF(0, "golden for %s record %d missing", file, k);
        free(t), free(l), free(m);
        return;
    }
    size_t n = ctx && nt > (size_t)ctx ? (size_t)ctx : nt;
    CHECKF(s->n == (int)n, "%s #%d: %d tokens, golden %zu", file, k, s->n, n);
    if (s->n == (int)n) {
        CHECKF(same_ints(s->tokens, t, n), "%s #%d: tokens differ", file, k);
        CHECKF(same_ints(s->labels, l, n), "%s #%d: labels differ", file, k);
    }
    int nmedia = m[0];
    if (!ctx) {
        CHECKF(s->n_media == nmedia, "%s #%d: %d media, golden %d", file, k, s->n_media, nmedia);
        for (int j = 0; j < nmedia && j < s->n_media; j++) {
            CHECKF(s->media_pos[j] == m[1 + 2 * j], "%s #%d: media %d at %d, golden %d", file, k, j, s->media_pos[j],
                   m[1 + 2 * j]);
            CHECKF(s->media_target[j] == m[2 + 2 * j], "%s #%d: media %d target %d, golden %d", file, k, j,
                   s->media_target[j], m[2 + 2 * j]);
            CHECK(s->media_path[j] && access(s->media_path[j], R_OK) == 0);
        }
    }
    free(t), free(l), free(m);
}

static int golden_count(const char *file) {
    char key[256];
    size_t n;
    snprintf(key, sizeof key, "%s.count", file);
    int32_t *c = golden(key, &n);
    int r = c && n == 1 ? c[0] : -1;
    free(c);
    return r;
}

/* Reads every good record of a fixture in file order and compares with the goldens. */
static void check_file(const mrw_vocab *v, const char *name, warnings *w, int64_t expect_indexed) {
    char path[512];
    snprintf(path, sizeof path, FIX "/%s", name);
    const char *paths[] = {path};
    mrw_data_params p = params(v, w);
    mrw_data *d = NULL;
    mrw_error err;
    CHECK_OK(mrw_data_open(paths, 1, &p, &d, &err), &err);
    if (!d) return;
    CHECKF(mrw_data_count(d) == expect_indexed, "%s: %lld indexed", name, (long long)mrw_data_count(d));
    int count = golden_count(name);
    CHECK(count > 0);
    int64_t last_index = -1;
    for (int k = 0; k < count; k++) {
        mrw_data_sample s;
        CHECK_OK(mrw_data_next(d, &s, &err), &err);
        check_golden(name, k, &s, 0);
        CHECK(s.index > last_index && !strcmp(s.file, path));
        last_index = s.index;
    }
    /* the second epoch gives the same samples and no new warnings */
    mrw_data_sample s;
    CHECK_OK(mrw_data_next(d, &s, &err), &err);
    check_golden(name, 0, &s, 0);
    int64_t e, k;
    mrw_data_tell(d, &e, &k);
    CHECKF(e == 1 && k == s.index + 1, "%s: at epoch %lld record %lld", name, (long long)e, (long long)k);
    int nw = w->n;
    for (int i = 1; i < count; i++) {
        CHECK_OK(mrw_data_next(d, &s, &err), &err);
        check_golden(name, i, &s, 0);
    }
    CHECK_OK(mrw_data_next(d, &s, &err), &err);
    mrw_data_tell(d, &e, &k);
    CHECK(e == 2);
    check_golden(name, 0, &s, 0);
    CHECKF(w->n == nw, "%s: bad records were reported again in epoch 1", name);
    mrw_data_free(d);
}

static void test_llava(const mrw_vocab *v) {
    warnings w;
    check_file(v, "llava.json", &w, 11);
    CHECK(has(&w, "llava.json:41: image 'media/missing.png' not found"));
    CHECK(has(&w, "llava.json:54: the record has an image but no <image> marker in a user turn; skipped"));
    CHECK(has(&w, "llava.json:67: 'conversations' must be an array, found a string"));
    CHECK(has(&w, "llava.json:71: conversations[0]: 'value' must be a string, found a number"));
    CHECK(has(&w, "llava.json:92: conversations[1]: unknown role 'bot'"));
    CHECK(has(&w, "llava.json:105: no assistant turn"));
    CHECK(has(&w, "llava.json:114: the record is a number, not a JSON object"));
    CHECKF(w.n == 7, "%d warnings:\n%s", w.n, w.text);

    /* BOM + CRLF + a blank line + malformed lines */
    check_file(v, "llava_crlf.jsonl", &w, 14);
    CHECK(has(&w, "llava_crlf.jsonl:3: image 'media/missing.png' not found"));
    CHECK(has(&w, "llava_crlf.jsonl:11: the record is a number"));
    CHECK(has(&w, "llava_crlf.jsonl:13: invalid JSON"));
    CHECK(has(&w, "llava_crlf.jsonl:14: invalid JSON"));
    CHECK(has(&w, "llava_crlf.jsonl:15: unexpected text after the JSON value"));
    CHECKF(w.n == 10, "%d warnings:\n%s", w.n, w.text);

    /* ctx_len truncation keeps the labels of the full sequence (the last one looks one token past the end) */
    const char *paths[] = {FIX "/llava.json"};
    mrw_data_params p = params(v, &w);
    p.ctx_len = 7;
    mrw_data *d = NULL;
    mrw_error err;
    CHECK_OK(mrw_data_open(paths, 1, &p, &d, &err), &err);
    if (d) {
        mrw_data_sample s;
        for (int k = 0; k < golden_count("llava.json"); k++) {
            CHECK_OK(mrw_data_next(d, &s, &err), &err);
            check_golden("llava.json", k, &s, 7);
            for (int j = 0; j < s.n_media; j++) CHECK(s.media_pos[j] <= s.n);
        }
        mrw_data_free(d);
    }
    /* the kind given explicitly: a LLaVA file read as audio manifests has no usable record */
    p = params(v, &w);
    p.kind = MRW_DATA_AUDIO;
    CHECK(mrw_data_open(paths, 1, &p, &d, &err) == MRW_E_FORMAT && d == NULL);
    CHECK(strstr(err.msg, "llava.json: no usable record") != NULL);
    CHECK(has(&w, "llava.json:2: 'audio' must be a string, found missing"));
}

static void test_audio_text(const mrw_vocab *v) {
    warnings w;
    check_file(v, "audio.jsonl", &w, 4);
    CHECK(has(&w, "audio.jsonl:2: audio 'media/nope.wav' not found"));
    CHECK(has(&w, "audio.jsonl:3: 'text' must be a string, found a number"));
    CHECK(w.n == 2);
    check_file(v, "text.jsonl", &w, 5);
    CHECK(has(&w, "text.jsonl:2: 'text' is empty"));
    CHECK(has(&w, "text.jsonl:3: 'text' must be a string, found missing"));
    CHECK(w.n == 2);
    /* audio: the last feature vector predicts the "\x16" that opens the answer */
    const char *paths[] = {FIX "/audio.jsonl"};
    mrw_data_params p = params(v, &w);
    mrw_data *d = NULL;
    mrw_error err;
    CHECK_OK(mrw_data_open(paths, 1, &p, &d, &err), &err);
    if (d) {
        mrw_data_sample s;
        CHECK_OK(mrw_data_next(d, &s, &err), &err);
        CHECK(s.n_media == 1 && s.media_kind[0] == MRW_MEDIA_AUDIO && s.media_pos[0] == 0 && s.media_target[0] == 23);
        CHECK(s.tokens[0] == 23 && s.tokens[s.n - 1] == 24 && s.labels[s.n - 2] == 24 && s.labels[s.n - 1] == MRW_IGNORE);
        mrw_data_free(d);
    }
    /* two files: records are numbered over both, each sample names its own file */
    const char *two[] = {FIX "/text.jsonl", FIX "/text.jsonl"};
    p = params(v, &w);
    CHECK_OK(mrw_data_open(two, 2, &p, &d, &err), &err);
    if (d) {
        CHECK(mrw_data_count(d) == 10);
        mrw_data_sample s;
        int seen_second = 0;
        for (int i = 0; i < 6; i++) {
            CHECK_OK(mrw_data_next(d, &s, &err), &err);
            if (s.index >= 5) seen_second++;
        }
        CHECK(seen_second == 3 && s.index == 9 && s.line == 5);
        mrw_data_free(d);
    }
}

static void test_malformed_files(const mrw_vocab *v) {
    warnings w;
    mrw_data_params p = params(v, &w);
    mrw_data *d = NULL;
    mrw_error err;
    const char *trunc[] = {FIX "/truncated.json"};
    CHECK_OK(mrw_data_open(trunc, 1, &p, &d, &err), &err);
    CHECK(has(&w, "truncated.json:8: truncated record (the file ends inside it); skipped"));
    CHECK(has(&w, "truncated.json:9: the file ends before the array's closing ']'"));
    if (d) {
        CHECK(mrw_data_count(d) == 2);
        mrw_data_free(d);
    }
    const char *bad[] = {FIX "/all_bad.jsonl"};
    p = params(v, &w);
    CHECK(mrw_data_open(bad, 1, &p, &d, &err) == MRW_E_FORMAT && !d);
    CHECK(strstr(err.msg, "all_bad.jsonl: no usable record (all 4 are bad)") != NULL);
    CHECK(w.n == 4 && has(&w, "all_bad.jsonl:4: invalid JSON") && has(&w, "all_bad.jsonl:3: the record is an array"));
    const char *missing[] = {FIX "/does-not-exist.jsonl"};
    CHECK(mrw_data_open(missing, 1, &p, &d, &err) == MRW_E_IO && !d);
    CHECK(strstr(err.msg, "does-not-exist.jsonl: cannot open") != NULL);

    /* empty, blank-only, "[]" and a not-closed array; a record over the size limit */
    char dir[] = "/tmp/mrw_data_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    FILE *fp;
    const char *bodies[] = {"", " \n\r\n\n", "[ ]\n", "\xEF\xBB\xBF[{\"text\": \"a\"}, {\"text\": \"b\"}"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/f%d.json", dir, i);
        fp = fopen(path, "wb");
        fputs(bodies[i], fp);
        fclose(fp);
        const char *pp[] = {path};
        p = params(v, &w);
        mrw_status st = mrw_data_open(pp, 1, &p, &d, &err);
        if (i < 3) {
            CHECKF(st == MRW_E_FORMAT && strstr(err.msg, "no records found"), "body %d: %s", i, err.msg);
        } else {
            CHECK_OK(st, &err);
            CHECK(d && mrw_data_count(d) == 2 && has(&w, "ends before the array's closing ']'"));
        }
        mrw_data_free(d);
        d = NULL;
        unlink(path);
    }
    /* a one-line JSON array (how LLaVA's own files come): messages give the record's byte offset */
    snprintf(path, sizeof path, "%s/oneline.json", dir);
    fp = fopen(path, "wb");
    fputs("[{\"text\": \"a\"}, {\"text\": 5}, {\"text\": \"c\"}]", fp);
    fclose(fp);
    {
        const char *one[] = {path};
        p = params(v, &w);
        CHECK_OK(mrw_data_open(one, 1, &p, &d, &err), &err);
        mrw_data_sample s;
        for (int i = 0; d && i < 2; i++) CHECK_OK(mrw_data_next(d, &s, &err), &err);
        CHECK(has(&w, "oneline.json:1: record at byte 16: 'text' must be a string, found a number; skipped"));
        mrw_data_free(d);
        d = NULL;
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/big.jsonl", dir);
    fp = fopen(path, "wb");
    fprintf(fp, "{\"text\": \"short\"}\n{\"text\": \"");
    for (int i = 0; i < 300; i++) fputc('a' + i % 26, fp);
    fprintf(fp, "\"}\n{\"text\": \"after\"}\n[1,\n");
    fclose(fp);
    const char *pp[] = {path};
    p = params(v, &w);
    p.max_record_bytes = 200;
    CHECK_OK(mrw_data_open(pp, 1, &p, &d, &err), &err);
    CHECK(has(&w, "big.jsonl:2: record of 312 bytes exceeds the limit of 200 bytes; skipped"));
    if (d) {
        CHECK(mrw_data_count(d) == 3);
        mrw_data_sample s;
        CHECK_OK(mrw_data_next(d, &s, &err), &err);
        CHECK_OK(mrw_data_next(d, &s, &err), &err);
        CHECK(s.line == 3);
        CHECK_OK(mrw_data_next(d, &s, &err), &err); /* line 4 is bad: wraps to epoch 1 */
        CHECK(s.line == 1 && has(&w, "big.jsonl:4: invalid JSON"));
        mrw_data_free(d);
    }
    unlink(path);
    /* many bad records: the messages stop after 1000, the good record at the end is still found */
    snprintf(path, sizeof path, "%s/many.jsonl", dir);
    fp = fopen(path, "wb");
    for (int i = 0; i < 1500; i++) fprintf(fp, "{\"text\": %d}\n", i);
    fprintf(fp, "{\"text\": \"good\"}\n");
    fclose(fp);
    static warnings many;
    p = params(v, &many);
    CHECK_OK(mrw_data_open(pp, 1, &p, &d, &err), &err);
    CHECK(many.n == 1000 && has(&many, "1000 data warnings: further bad records are skipped without a message"));
    CHECK(has(&many, "many.jsonl:999: 'text' must be a string, found a number"));
    if (d) {
        mrw_data_sample s;
        CHECK_OK(mrw_data_next(d, &s, &err), &err);
        CHECK(s.line == 1501 && s.n >= 1);
        mrw_data_free(d);
    }
    unlink(path);
    rmdir(dir);
}

/* A JSON array over several 1 MiB read chunks, with brackets, commas, quotes and escapes inside strings and
 * records split across lines: every record must come back whole and in order. */
static void test_streaming(const mrw_vocab *v) {
    char path[] = "/tmp/mrw_data_stream_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *fp = fdopen(fd, "wb");
    const int N = 6000;
    fputs("[\n", fp);
    for (int i = 0; i < N; i++) {
        fprintf(fp, "  {\"meta\": {\"x\": [1, {\"y\": \"]}\"}]},\n   \"text\": \"rec %d: \\\"q\\\" ],}{[ \\\\", i);
        for (int j = 0; j < i % 500; j++) fputc('a' + j % 26, fp);
        fprintf(fp, "\"}%s\n", i + 1 < N ? "," : "");
    }
    fputs("]\n", fp);
    fclose(fp);
    warnings w;
    mrw_data_params p = params(v, &w);
    p.kind = MRW_DATA_TEXT;
    mrw_data *d = NULL;
    mrw_error err;
    const char *pp[] = {path};
    CHECK_OK(mrw_data_open(pp, 1, &p, &d, &err), &err);
    if (d) {
        CHECK(mrw_data_count(d) == N && w.n == 0);
        int bad = 0;
        char want[1024], got[1024];
        for (int i = 0; i < N; i++) {
            mrw_data_sample s;
            if (mrw_data_next(d, &s, &err) != MRW_OK) {
                bad++;
                continue;
            }
            int l = snprintf(want, sizeof want, "rec %d: \"q\" ],}{[ \\", i);
            for (int j = 0; j < i % 500; j++) want[l++] = (char)('a' + j % 26);
            want[l] = 0;
            size_t gl = 0;
            for (int t = 0; t < s.n; t++) {
                size_t bl;
                const uint8_t *b = mrw_token_bytes(v, s.tokens[t], &bl);
                if (gl + bl < sizeof got) memcpy(got + gl, b, bl);
                gl += bl;
            }
            got[gl < sizeof got ? gl : sizeof got - 1] = 0;
            bad += strcmp(want, got) != 0 || s.line != 2 + 2 * i;
        }
        CHECKF(bad == 0, "%d of %d streamed records differ", bad, N);
        mrw_data_free(d);
    }
    unlink(path);
}

/* Permutations: a function of (seed, epoch) only; every record once per epoch; tell/seek resumes exactly. */
static void test_order(const mrw_vocab *v) {
    char path[] = "/tmp/mrw_data_order_XXXXXX";
    int fd = mkstemp(path);
    FILE *fp = fdopen(fd, "wb");
    const int N = 200;
    for (int i = 0; i < N; i++) fprintf(fp, "{\"text\": \"record %d\"}\n", i);
    fclose(fp);
    const char *pp[] = {path};
    mrw_error err;
    int64_t order[3][3 * 200];
    uint64_t seeds[3] = {7, 7, 8};
    for (int r = 0; r < 3; r++) {
        mrw_data_params p = params(v, NULL);
        p.warn = NULL;
        p.shuffle = 1;
        p.seed = seeds[r];
        mrw_data *d = NULL;
        CHECK_OK(mrw_data_open(pp, 1, &p, &d, &err), &err);
        if (!d) return;
        for (int i = 0; i < 3 * N; i++) {
            mrw_data_sample s;
            mrw_data_next(d, &s, &err);
            order[r][i] = s.index;
        }
        mrw_data_free(d);
    }
    int perm_ok = 1, same = 1, differs_seed = 0, differs_epoch = 0, identity = 1;
    for (int e = 0; e < 3; e++) {
        char seen[200] = {0};
        for (int i = 0; i < N; i++) {
            int64_t x = order[0][e * N + i];
            if (x < 0 || x >= N || seen[x]) perm_ok = 0;
            else seen[x] = 1;
            identity &= x == i;
        }
    }
    for (int i = 0; i < 3 * N; i++) {
        same &= order[0][i] == order[1][i];
        differs_seed |= order[0][i] != order[2][i];
    }
    for (int i = 0; i < N; i++) differs_epoch |= order[0][i] != order[0][N + i];
    CHECK(perm_ok && same && differs_seed && differs_epoch && !identity);

    /* resume from every kind of position: mid-epoch, at an epoch's end, in a later epoch */
    int stops[] = {0, 37, 199, 200, 201, 450};
    for (size_t t = 0; t < sizeof stops / sizeof *stops; t++) {
        mrw_data_params p = params(v, NULL);
        p.warn = NULL;
        p.shuffle = 1;
        p.seed = 7;
        mrw_data *a = NULL, *b = NULL;
        CHECK_OK(mrw_data_open(pp, 1, &p, &a, &err), &err);
        CHECK_OK(mrw_data_open(pp, 1, &p, &b, &err), &err);
        if (!a || !b) return;
        mrw_data_sample s;
        for (int i = 0; i < stops[t]; i++) mrw_data_next(a, &s, &err);
        int64_t e, k;
        mrw_data_tell(a, &e, &k);
        CHECK(e * N + k == stops[t]);
        CHECK_OK(mrw_data_seek(b, e, k, &err), &err);
        int eq = 1;
        for (int i = 0; i < 150; i++) {
            mrw_data_sample sa, sb;
            mrw_data_next(a, &sa, &err);
            int64_t ia = sa.index;
            mrw_data_next(b, &sb, &err);
            eq &= ia == sb.index && ia == order[0][stops[t] + i];
        }
        CHECKF(eq, "resume at %d differs", stops[t]);
        CHECK(mrw_data_seek(b, 0, N + 1, &err) == MRW_E_ARG && mrw_data_seek(b, -1, 0, &err) == MRW_E_ARG);
        mrw_data_free(a);
        mrw_data_free(b);
    }
    /* shuffle off: file order */
    mrw_data_params p = params(v, NULL);
    p.warn = NULL;
    mrw_data *d = NULL;
    CHECK_OK(mrw_data_open(pp, 1, &p, &d, &err), &err);
    if (d) {
        int ok = 1;
        for (int i = 0; i < N + 5; i++) {
            mrw_data_sample s;
            mrw_data_next(d, &s, &err);
            ok &= s.index == i % N;
        }
        CHECK(ok);
        mrw_data_free(d);
    }
    unlink(path);
}

static void test_csv(void) {
    mrw_csv_series s;
    mrw_error err;
    const char *cols[] = {"b (unit)", "a"};
    CHECK_OK(mrw_csv_read(FIX "/series.csv", cols, 2, &s, &err), &err);
    CHECK(s.n_cols == 2 && s.n_rows == 3 && !strcmp(s.names[0], "b (unit)") && !strcmp(s.names[1], "a"));
    if (s.n_cols == 2 && s.n_rows == 3) {
        const float want[6] = {-2, 5.25f, 8, 1.5f, 4, 7};
        CHECK(!memcmp(s.values, want, sizeof want));
    }
    mrw_csv_series_free(&s);
    CHECK_OK(mrw_csv_read(FIX "/series.csv", NULL, 0, &s, &err), &err);
    CHECK(s.n_cols == 3 && s.n_rows == 3 && !strcmp(s.names[2], "c") && s.values[6] == 300.0f && s.values[7] == -0.6f);
    mrw_csv_series_free(&s);

    const char *missing[] = {"a", "zz"};
    CHECK(mrw_csv_read(FIX "/series.csv", missing, 2, &s, &err) == MRW_E_FORMAT);
    CHECKF(strstr(err.msg, "series.csv:1: column 'zz' not found") != NULL, "%s", err.msg);
    CHECK(s.values == NULL && s.n_cols == 0);
    const struct {
        const char *file, *msg;
    } bad[] = {
        {"bad_empty.csv", "bad_empty.csv:3: column 'b': empty cell"},
        {"bad_text.csv", "bad_text.csv:3: column 'b': not a number: 'abc'"},
        {"bad_nan.csv", "bad_nan.csv:3: column 'a': NaN is not allowed"},
        {"bad_inf.csv", "bad_inf.csv:3: column 'b': value '-inf' is infinite"},
        {"bad_fields.csv", "bad_fields.csv:3: 2 fields, but the header has 3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[256];
        snprintf(path, sizeof path, FIX "/%s", bad[i].file);
        const char *ab[] = {"a", "b"};
        CHECK(mrw_csv_read(path, ab, 2, &s, &err) == MRW_E_FORMAT);
        CHECKF(strstr(err.msg, bad[i].msg) != NULL, "%s", err.msg);
        CHECK(s.values == NULL);
    }
    /* out of float range; a date column is never selected unless asked for (and then it is an error) */
    const char *a_only[] = {"a"};
    CHECK(mrw_csv_read(FIX "/bad_inf.csv", a_only, 1, &s, &err) == MRW_E_FORMAT);
    CHECKF(strstr(err.msg, "bad_inf.csv:4: column 'a': value '1e39' is infinite or out of float range"), "%s", err.msg);
    const char *date[] = {"date"};
    CHECK(mrw_csv_read(FIX "/series.csv", date, 1, &s, &err) == MRW_E_FORMAT);
    CHECKF(strstr(err.msg, "series.csv:2: column 'date': not a number: '2020-01-01 00:00'"), "%s", err.msg);
    CHECK(mrw_csv_read(FIX "/nope.csv", NULL, 0, &s, &err) == MRW_E_IO);

    /* the real ETTh1 series when ../shared is there */
    char path[512];
    t_path(path, sizeof path, mrw_shared_dir(), "data/timeseries/ETTh1.csv");
    if (access(path, R_OK) == 0) {
        const char *ot[] = {"OT", "HUFL"};
        CHECK_OK(mrw_csv_read(path, ot, 2, &s, &err), &err);
        CHECK(s.n_rows == 17420 && s.n_cols == 2);
        if (s.n_rows == 17420) CHECK(s.values[0] == 30.5310001373291f && s.values[17420] == 5.827000141143799f);
        mrw_csv_series_free(&s);
        CHECK_OK(mrw_csv_read(path, NULL, 0, &s, &err), &err);
        CHECK(s.n_cols == 7 && !strcmp(s.names[0], "HUFL") && !strcmp(s.names[6], "OT"));
        mrw_csv_series_free(&s);
    } else {
        fprintf(stderr, "note: %s not found, ETTh1 check skipped\n", path);
    }
    t_path(path, sizeof path, mrw_shared_dir(), "data/timeseries/weather.csv");
    if (access(path, R_OK) == 0) { /* a header with Latin-1 bytes and units in the names */
        CHECK_OK(mrw_csv_read(path, NULL, 0, &s, &err), &err);
        CHECK(s.n_cols == 21 && s.n_rows == 52696 && !strcmp(s.names[0], "p (mbar)") && !strcmp(s.names[20], "OT"));
        if (s.n_rows == 52696) CHECK(s.values[0] == 1008.89f && s.values[(size_t)20 * 52696] == 428.1f);
        mrw_csv_series_free(&s);
    }
}

/* The sampling interval from a date column (--target-interval's file matching) and duration strings. */
static void test_csv_interval(void) {
    mrw_error err;
    double iv = 0;
    CHECK_OK(mrw_csv_interval(FIX "/series.csv", &iv, &err), &err);
    CHECKF(iv == 3600, "%g", iv);
    CHECK(mrw_csv_interval(FIX "/bad_text.csv", &iv, &err) == MRW_E_FORMAT);
    CHECKF(strstr(err.msg, "bad_text.csv: no date column") != NULL, "%s", err.msg);
    CHECK(mrw_csv_interval(FIX "/nope.csv", &iv, &err) == MRW_E_IO);
    char path[512];
    const struct { const char *file; double sec; } real[] = {
        {"ETTh1.csv", 3600}, {"ETTm1.csv", 900}, {"weather.csv", 600}, {"exchange_rate.csv", 86400},
        {"national_illness.csv", 604800}};
    for (size_t i = 0; i < sizeof real / sizeof real[0]; i++) {
        t_path(path, sizeof path, mrw_shared_dir(), "data/timeseries/");
        strncat(path, real[i].file, sizeof path - strlen(path) - 1);
        if (access(path, R_OK)) continue;
        CHECK_OK(mrw_csv_interval(path, &iv, &err), &err);
        CHECKF(iv == real[i].sec, "%s: %g", real[i].file, iv);
    }
    /* dates across a leap day and a year end; 'T' and '/' forms; a column of dates that is not the first */
    char tmp[] = "/tmp/mrw_iv_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("x,when\n1,2024/02/28T23:30:00\n2,2024/02/29T00:00:00\n3,2024/02/29T00:30\n4,2024/02/29T01:30:00\n"
          "5,2024/02/29T02:00:00.0\n", f);
    fclose(f);
    CHECK_OK(mrw_csv_interval(tmp, &iv, &err), &err);
    CHECKF(iv == 1800, "%g", iv);
    f = fopen(tmp, "w");
    fputs("d,v\n2023-12-31,1\n2024-01-01,2\n2024-01-01,3\n", f); /* repeated date: only the increase counts */
    fclose(f);
    CHECK_OK(mrw_csv_interval(tmp, &iv, &err), &err);
    CHECKF(iv == 86400, "%g", iv);
    f = fopen(tmp, "w");
    fputs("d,v\n2024-01-01,1\n2024-01-01,2\n2024-13-01,3\n", f); /* never increases (month 13 is no date) */
    fclose(f);
    CHECK(mrw_csv_interval(tmp, &iv, &err) == MRW_E_FORMAT);
    CHECKF(strstr(err.msg, "never increase") != NULL, "%s", err.msg);
    unlink(tmp);
    CHECK(mrw_parse_duration("15min") == 900 && mrw_parse_duration("1h") == 3600 && mrw_parse_duration("2d") == 172800);
    CHECK(mrw_parse_duration("1w") == 604800 && mrw_parse_duration("30s") == 30 && mrw_parse_duration("3600") == 3600);
    CHECK(mrw_parse_duration("0.5h") == 1800 && mrw_parse_duration("10m") == 600);
    CHECK(mrw_parse_duration("") < 0 && mrw_parse_duration("h") < 0 && mrw_parse_duration("5 parsecs") < 0);
    CHECK(mrw_parse_duration("-1h") < 0 && mrw_parse_duration("0") < 0 && mrw_parse_duration("nanh") < 0);
    CHECK(mrw_parse_duration(NULL) < 0 && mrw_parse_duration("1e400") < 0);
}

static void test_feature_cache(void) {
    char dir[] = "/tmp/mrw_fcache_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char media[300], cache_dir[300];
    snprintf(media, sizeof media, "%s/img.png", dir);
    snprintf(cache_dir, sizeof cache_dir, "%s/cache/deep", dir);
    FILE *fp = fopen(media, "wb");
    fputs("pretend image", fp);
    fclose(fp);
    mrw_error err;
    mrw_feature_cache *c = NULL, *c2 = NULL;
    CHECK(mrw_feature_cache_open(cache_dir, "../evil", &c, &err) == MRW_E_ARG && !c);
    CHECK(mrw_feature_cache_open(cache_dir, "", &c, &err) == MRW_E_ARG && !c);
    CHECK_OK(mrw_feature_cache_open(cache_dir, "siglip2-base.v1", &c, &err), &err);
    CHECK_OK(mrw_feature_cache_open(cache_dir, "whisper_base", &c2, &err), &err);
    if (!c || !c2) return;
    float *data;
    int rows, cols;
    CHECK(mrw_feature_cache_get(c, media, &data, &rows, &cols, &err) == 0 && !data);
    float feat[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 7};
    CHECK_OK(mrw_feature_cache_put(c, media, feat, 2, 3, &err), &err);
    CHECK(mrw_feature_cache_get(c, media, &data, &rows, &cols, &err) == 1);
    CHECK(data && rows == 2 && cols == 3 && !memcmp(data, feat, sizeof feat));
    free(data);
    CHECK(mrw_feature_cache_get(c2, media, &data, &rows, &cols, &err) == 0); /* another encoder */
    /* the same file through another spelling of its path */
    char other[400];
    snprintf(other, sizeof other, "%s/../%s/img.png", dir, strrchr(dir, '/') + 1);
    CHECK(mrw_feature_cache_get(c, other, &data, &rows, &cols, &err) == 1);
    free(data);
    /* no temporary files left behind */
    char entry_dir[400];
    snprintf(entry_dir, sizeof entry_dir, "%s/siglip2-base.v1", cache_dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "test $(ls %s | wc -l) -eq 1 && ls %s | grep -q '^[0-9a-f]\\{16\\}\\.f32$'", entry_dir,
             entry_dir);
    CHECK(system(cmd) == 0);
    /* a changed media file (mtime) makes the entry stale; put replaces it */
    struct timeval tv[2] = {{1000000000, 0}, {1000000000, 0}};
    CHECK(utimes(media, tv) == 0);
    CHECK(mrw_feature_cache_get(c, media, &data, &rows, &cols, &err) == 0);
    CHECK_OK(mrw_feature_cache_put(c, media, feat, 3, 2, &err), &err);
    CHECK(mrw_feature_cache_get(c, media, &data, &rows, &cols, &err) == 1 && rows == 3 && cols == 2);
    free(data);
    /* a truncated entry reads as not cached */
    snprintf(cmd, sizeof cmd, "for f in %s/*.f32; do truncate -s -4 $f; done", entry_dir);
    CHECK(system(cmd) == 0);
    CHECK(mrw_feature_cache_get(c, media, &data, &rows, &cols, &err) == 0 && !data);
    /* missing media is an error; invalid entries are refused */
    snprintf(other, sizeof other, "%s/none.png", dir);
    CHECK(mrw_feature_cache_get(c, other, &data, &rows, &cols, &err) < 0 && strstr(err.msg, "none.png"));
    CHECK(mrw_feature_cache_put(c, media, feat, 0, 3, &err) == MRW_E_ARG);
    mrw_feature_cache_free(c);
    mrw_feature_cache_free(c2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    char path[512];
    mrw_vocab *v = NULL;
    mrw_error err;
    t_path(path, sizeof path, mrw_shared_dir(), "assets/rwkv_vocab_v20230424.txt");
    CHECK_OK(mrw_vocab_load(path, &v, &err), &err);
    if (v) {
        test_llava(v);
        test_audio_text(v);
        test_malformed_files(v);
        test_streaming(v);
        test_order(v);
        mrw_vocab_free(v);
    }
    test_csv();
    test_csv_interval();
    test_feature_cache();
    TEST_MAIN_END();
}
