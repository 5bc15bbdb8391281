/* World tokenizer, vocabulary loaders, GGUF token strings, streaming UTF-8 and the chat template, checked
 * against golden outputs of the reference rwkv.rwkv_tokenizer.TRIE_TOKENIZER
 * (tests/reference/make_tokenizer_golden.py -> tests/fixtures/tokenizer/). Run from the repository root. */
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "formats/tfile_impl.h"
#include "modrwkv.h"
#include "test.h"
#include "text/chat.h"
#include "text/vocab.h"

#define FIX "tests/fixtures/tokenizer/"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t fnv1a(const void *p, size_t n, uint64_t h) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_OFFSET 0xcbf29ce484222325ull

static uint64_t ids_hash(const int32_t *ids, int64_t n) {
    uint64_t h = FNV_OFFSET;
    for (int64_t i = 0; i < n; i++) {
        uint8_t le[4] = {(uint8_t)ids[i], (uint8_t)(ids[i] >> 8), (uint8_t)(ids[i] >> 16),
                         (uint8_t)(ids[i] >> 24)};
        h = fnv1a(le, 4, h);
    }
    return h;
}

/* ------------------------------------------------------------------------------------ fixture reading */

typedef struct {
    char *buf;
    char *pos;
} lines;

static int lines_open(lines *l, const char *path) {
    l->buf = (char *)t_read_file(path, NULL);
    l->pos = l->buf;
    if (!l->buf) fprintf(stderr, "cannot read %s\n", path);
    return l->buf != NULL;
}

/* Next non-comment line split at tabs into at most `max` fields; returns the field count, 0 at the end. */
static int lines_next(lines *l, char **f, int max) {
    while (l->pos && *l->pos) {
        char *s = l->pos, *e = strchr(s, '\n');
        if (e) *e = 0;
        l->pos = e ? e + 1 : s + strlen(s);
        if (*s == '#' || !*s) continue;
        int n = 0;
        f[n++] = s;
        for (char *p = s; *p && n < max; p++)
            if (*p == '\t') *p = 0, f[n++] = p + 1;
        return n;
    }
    return 0;
}

static uint8_t *unhex(const char *h, size_t *n) {
    size_t len = strlen(h) / 2;
    uint8_t *b = malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        b[i] = (uint8_t)v;
    }
    *n = len;
    return b;
}

static int32_t *parse_ids(const char *s, int64_t *n) {
    size_t cap = 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    *n = 0;
    char *end;
    for (long v; (v = strtol(s, &end, 10)), end != s; s = end) {
        if ((size_t)*n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        ids[(*n)++] = (int32_t)v;
    }
    return ids;
}

static mrw_vocab *load_world(void) {
    char path[1024];
    mrw_error err = {0};
    mrw_vocab *v = NULL;
    t_path(path, sizeof path, mrw_shared_dir(), "assets/rwkv_vocab_v20230424.txt");
    CHECK_OK(mrw_vocab_load(path, &v, &err), &err);
    return v;
}

/* ------------------------------------------------------------------------------------- golden cases */

static int check_encode(const mrw_vocab *v, const char *name, const uint8_t *in, size_t n, const int32_t *exp,
                        int64_t n_exp) {
    int32_t *got = malloc((n + 1) * sizeof *got);
    int64_t k = mrw_tokenize(v, (const char *)in, n, got, n + 1);
    int ok = k == n_exp && !memcmp(got, exp, (size_t)k * sizeof *got);
    CHECKF(ok, "case %s: %lld tokens, expected %lld", name, (long long)k, (long long)n_exp);
    /* decoding the ids gives the input back */
    size_t pos = 0;
    for (int64_t i = 0; ok && i < k; i++) {
        size_t tl;
        const uint8_t *tb = mrw_token_bytes(v, got[i], &tl);
        ok = tb && pos + tl <= n && !memcmp(in + pos, tb, tl);
        pos += tl;
    }
    CHECKF(ok && pos == n, "case %s: decode(encode(x)) != x", name);
    free(got);
    return ok;
}

static void test_cases(const mrw_vocab *v, const char *file) {
    lines l;
    char *f[3];
    int n_cases = 0, n_ok = 0;
    if (!lines_open(&l, file)) {
        CHECK(0);
        return;
    }
    while (lines_next(&l, f, 3) == 3) {
        size_t n;
        int64_t n_ids;
        uint8_t *in = unhex(f[1], &n);
        int32_t *ids = parse_ids(f[2], &n_ids);
        n_ok += check_encode(v, f[0], in, n, ids, n_ids);
        n_cases++;
        free(in);
        free(ids);
    }
    free(l.buf);
    fprintf(stderr, "%s: %d of %d cases match the reference\n", file, n_ok, n_cases);
    CHECK(n_cases >= 10);
}

/* Every normal token's bytes encode to exactly that token (the World vocabulary has no duplicates). */
static void test_each_token(const mrw_vocab *v) {
    int bad = 0;
    for (int32_t id = 0; id < mrw_vocab_size(v); id++) {
        size_t n;
        const uint8_t *b = mrw_token_bytes(v, id, &n);
        if (mrw_vocab_token_kind(v, id) != MRW_TOKEN_NORMAL) continue;
        int32_t out[2];
        int64_t k = mrw_tokenize(v, (const char *)b, n, out, 2);
        bad += !(k == 1 && out[0] == id && mrw_vocab_find(v, b, n) == id);
    }
    CHECKF(bad == 0, "%d tokens do not encode to themselves", bad);
}

static void test_big(const mrw_vocab *v) {
    lines l;
    char *f[5];
    if (!lines_open(&l, FIX "big.txt")) {
        CHECK(0);
        return;
    }
    size_t total = 0;
    double secs = 0;
    while (lines_next(&l, f, 5) == 5) {
        char path[1024];
        size_t n;
        t_path(path, sizeof path, mrw_shared_dir(), f[0]);
        uint8_t *text = t_read_file(path, &n);
        CHECKF(text, "cannot read %s", path);
        if (!text) continue;
        char hex[32];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv1a(text, n, FNV_OFFSET));
        CHECKF(n == strtoull(f[1], NULL, 10) && !strcmp(hex, f[2]), "%s changed since the fixtures were made",
               path);
        int32_t *ids = malloc(n * sizeof *ids);
        double t0 = now_s();
        int64_t k = mrw_tokenize(v, (const char *)text, n, ids, n);
        secs += now_s() - t0;
        total += n;
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)ids_hash(ids, k));
        CHECKF(k == strtoll(f[3], NULL, 10) && !strcmp(hex, f[4]), "%s: %lld tokens hash %s, expected %s %s",
               f[0], (long long)k, hex, f[3], f[4]);
        /* round trip */
        size_t pos = 0;
        int ok = 1;
        for (int64_t i = 0; i < k && ok; i++) {
            size_t tl;
            const uint8_t *tb = mrw_token_bytes(v, ids[i], &tl);
            ok = pos + tl <= n && !memcmp(text + pos, tb, tl);
            pos += tl;
        }
        CHECKF(ok && pos == n, "%s: decode(encode(x)) != x", f[0]);
        free(ids);
        free(text);
    }
    free(l.buf);
    if (secs > 0) fprintf(stderr, "tokenized %.1f MB at %.1f MB/s\n", total / 1e6, total / 1e6 / secs);
}

static void test_world_basics(const mrw_vocab *v) {
    size_t n;
    const uint8_t *b;
    CHECK(mrw_vocab_size(v) == 65533);
    CHECK(mrw_vocab_n_normal(v) == 65529);
    CHECK(mrw_vocab_turn_end(v) == 24); /* "\x17" ends chat turns */
    CHECK(mrw_token_bytes(v, 0, &n) == NULL && n == 0);
    CHECK(mrw_token_bytes(v, -1, &n) == NULL && mrw_token_bytes(v, 1 << 30, &n) == NULL);
    b = mrw_token_bytes(v, MRW_TOK_TURN_START, &n);
    CHECK(b && n == 1 && b[0] == 0x16);
    b = mrw_token_bytes(v, MRW_TOK_TURN_END, &n);
    CHECK(b && n == 1 && b[0] == 0x17);
    b = mrw_token_bytes(v, MRW_TOK_DOUBLE_NL, &n);
    CHECK(b && n == 2 && !memcmp(b, "\n\n", 2));
    b = mrw_token_bytes(v, 1, &n);
    CHECK(b && n == 1 && b[0] == 0);
    b = mrw_token_bytes(v, 256, &n);
    CHECK(b && n == 1 && b[0] == 0xFF);
    b = mrw_token_bytes(v, 65529, &n);
    CHECK(b && n == 128);
    static const char *sp[] = {"<|vision_start|>", "<|vision_end|>", "<|image_pad|>"};
    for (int i = 0; i < 3; i++) {
        b = mrw_token_bytes(v, MRW_TOK_VISION_START + i, &n);
        CHECK(b && n == strlen(sp[i]) && !memcmp(b, sp[i], n));
        CHECK(mrw_vocab_token_kind(v, MRW_TOK_VISION_START + i) == MRW_TOKEN_SPECIAL);
        CHECK(mrw_vocab_find(v, sp[i], strlen(sp[i])) == MRW_TOK_VISION_START + i);
    }
    CHECK(mrw_vocab_find(v, "\n\n", 2) == 261 && mrw_vocab_find(v, "", 0) == -1);
    CHECK(mrw_vocab_token_kind(v, 0) == MRW_TOKEN_NONE && mrw_vocab_token_kind(v, 100) == MRW_TOKEN_NORMAL);

    /* specials come from text only when asked; default encoding equals the reference */
    const char *s = "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>hi<|image_pad";
    int32_t ids[64];
    int64_t k = mrw_tokenize_ex(v, s, strlen(s), ids, 64, MRW_TOKENIZE_SPECIAL);
    CHECK(k >= 5 && ids[0] == 65530 && ids[1] == 65532 && ids[2] == 65532 && ids[3] == 65531);
    int64_t k2 = mrw_tokenize(v, s + 56, strlen(s + 56), ids + 10, 54);
    CHECK(k == 4 + k2 && !memcmp(ids + 4, ids + 10, (size_t)k2 * sizeof *ids));
    k = mrw_tokenize(v, s, strlen(s), ids, 64);
    for (int64_t i = 0; i < k; i++) CHECK(ids[i] < 65530);
}

/* mrw_tokenize writes at most cap ids and always returns the full count. */
static void test_capacity(const mrw_vocab *v) {
    const char *s = "The quick brown fox jumps over the lazy dog, again and again.";
    int32_t full[64], part[64];
    int64_t n = mrw_tokenize(v, s, strlen(s), full, 64);
    CHECK(n > 8 && n < 64);
    CHECK(mrw_tokenize(v, s, strlen(s), NULL, 0) == n);
    CHECK(mrw_tokenize(v, s, strlen(s), NULL, 100) == n);
    for (size_t cap = 0; cap <= (size_t)n; cap++) {
        for (int i = 0; i < 64; i++) part[i] = -7;
        CHECK(mrw_tokenize(v, s, strlen(s), part, cap) == n);
        CHECK(!memcmp(part, full, cap * sizeof *part));
        CHECK(part[cap] == -7);
    }
    CHECK(mrw_tokenize(v, "", 0, part, 64) == 0);
    CHECK(mrw_tokenize(v, NULL, 0, part, 64) == 0);
    CHECK(mrw_tokenize(NULL, s, 3, part, 64) == -1);
}

/* ---------------------------------------------------------------------------------------- CRLF copy */

static void test_crlf(const mrw_vocab *lf) {
    char path[1024];
    size_t n;
    t_path(path, sizeof path, mrw_shared_dir(), "assets/rwkv_vocab_v20230424.txt");
    uint8_t *text = t_read_file(path, &n);
    CHECK(text);
    if (!text) return;
    char tmp[] = "/tmp/mrw_vocab_crlf_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
    for (size_t i = 0; fp && i < n; i++) {
        if (text[i] == '\n') fputc('\r', fp);
        fputc(text[i], fp);
    }
    if (fp) fclose(fp);
    free(text);
    mrw_vocab *v = NULL;
    mrw_error err = {0};
    CHECK_OK(mrw_vocab_load(tmp, &v, &err), &err);
    unlink(tmp);
    if (!v) return;
    int same = mrw_vocab_size(v) == mrw_vocab_size(lf);
    for (int32_t id = 0; same && id < mrw_vocab_size(v); id++) {
        size_t a, b;
        const uint8_t *pa = mrw_token_bytes(v, id, &a), *pb = mrw_token_bytes(lf, id, &b);
        same = a == b && (a == 0 || !memcmp(pa, pb, a)) &&
               mrw_vocab_token_kind(v, id) == mrw_vocab_token_kind(lf, id);
    }
    CHECK(same);
    test_cases(v, FIX "cases.txt");
    mrw_vocab_free(v);
}

/* -------------------------------------------------------------------------------------------- GGUF */

static void test_gguf_strings(const mrw_vocab *v) {
    uint64_t h = FNV_OFFSET;
    int n = 0, bad = 0;
    char s[4 * MRW_VOCAB_MAX_TOKEN + 1];
    uint8_t back[sizeof s];
    for (int32_t id = 1; id < mrw_vocab_size(v); id++) {
        if (mrw_vocab_token_kind(v, id) != MRW_TOKEN_NORMAL) continue;
        size_t tl, bl;
        const uint8_t *tb = mrw_token_bytes(v, id, &tl);
        size_t sl = mrw_gguf_escape_token(tb, tl, s, sizeof s);
        CHECK(sl == strlen(s) && mrw_vocab_gguf_token_string(v, id, (char *)back, sizeof back) == sl);
        h = fnv1a(s, sl, h);
        h = fnv1a("\n", 1, h);
        n++;
        bad += mrw_gguf_unescape_token(s, sl, back, &bl, NULL) != MRW_OK || bl != tl || memcmp(back, tb, tl);
        CHECK(mrw_vocab_gguf_token_type(v, id) == MRW_GGUF_TOKEN_NORMAL);
    }
    CHECKF(bad == 0, "%d tokens do not survive escape + unescape", bad);
    lines l;
    char *f[3];
    if (!lines_open(&l, FIX "gguf.txt")) {
        CHECK(0);
        return;
    }
    int samples = 0;
    while (lines_next(&l, f, 3) >= 2) {
        if (!strcmp(f[0], "all")) {
            char hex[32];
            snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
            CHECKF(n == atoi(f[1]) && !strcmp(hex, f[2]), "token strings: %d hash %s, expected %s %s", n, hex,
                   f[1], f[2]);
            continue;
        }
        size_t en;
        uint8_t *exp = unhex(f[1], &en);
        size_t sl = mrw_vocab_gguf_token_string(v, atoi(f[0]), s, sizeof s);
        CHECKF(sl == en && !memcmp(s, exp, en), "token %s: escaped as '%s'", f[0], s);
        free(exp);
        samples++;
    }
    CHECK(samples > 50);
    free(l.buf);

    /* the other ids, and snprintf-like truncation */
    CHECK(mrw_vocab_gguf_token_string(v, 0, s, sizeof s) == 3 && !strcmp(s, "<s>"));
    CHECK(mrw_vocab_gguf_token_type(v, 0) == MRW_GGUF_TOKEN_CONTROL);
    CHECK(mrw_vocab_gguf_token_string(v, 65535, s, sizeof s) == 10 && !strcmp(s, "[PAD65535]"));
    CHECK(mrw_vocab_gguf_token_type(v, 65535) == MRW_GGUF_TOKEN_UNUSED);
    CHECK(mrw_vocab_gguf_token_string(v, 65532, s, sizeof s) == 13 && !strcmp(s, "<|image_pad|>"));
    CHECK(mrw_vocab_gguf_token_type(v, 65532) == MRW_GGUF_TOKEN_CONTROL);
    CHECK(mrw_gguf_escape_token((const uint8_t *)"a'b\\\xff", 5, s, 4) == 9 && !strcmp(s, "a'b"));
    CHECK(mrw_gguf_escape_token((const uint8_t *)"it's", 4, s, sizeof s) == 4 && !strcmp(s, "it's"));
    CHECK(mrw_gguf_escape_token((const uint8_t *)"'\"", 2, s, sizeof s) == 3 && !strcmp(s, "\\'\""));

    /* unescape: lenient where llama.cpp is (\q -> q), strict on broken \x and a dangling backslash */
    size_t bl;
    CHECK(mrw_gguf_unescape_token("\\q\\\"\\xAb\\x0f", 12, back, &bl, NULL) == MRW_OK && bl == 4 &&
          !memcmp(back, "q\"\xab\x0f", 4));
    mrw_error err = {0};
    CHECK(mrw_gguf_unescape_token("ab\\", 3, back, &bl, &err) == MRW_E_FORMAT &&
          strstr(err.msg, "backslash"));
    CHECK(mrw_gguf_unescape_token("\\x4", 3, back, &bl, &err) == MRW_E_FORMAT);
    CHECK(mrw_gguf_unescape_token("\\x4g", 4, back, &bl, &err) == MRW_E_FORMAT);
}

/* Metadata as llama.cpp's converter writes it, built straight into an mrw_tfile. */
typedef struct {
    mrw_tfile *f;
    mrw_str *strs;
    char **texts;
    int32_t *types;
    int n;
} fake_gguf;

static void fake_free(fake_gguf *g) {
    for (int i = 0; i < g->n; i++) free(g->texts[i]);
    free(g->texts);
    free(g->strs);
    free(g->types);
    mrw_tfile_close(g->f);
}

static void fake_add_string(fake_gguf *g, const char *key, const char *val) {
    mrw_meta m = {.key = (char *)key, .type = MRW_MV_STRING};
    m.v.s = (mrw_str){val, strlen(val)};
    mrw_tfile_add_meta(g->f, &m);
}

/* n entries as llama.cpp writes them: "<s>", the vocabulary's tokens, then [PAD<i>] (with types when
 * `with_types`; with_types == 2 writes every id through mrw_vocab_gguf_token_string/type, as our exporter
 * does, which names the ModRWKV specials instead of padding them). */
static void fake_make(fake_gguf *g, const mrw_vocab *v, int n, int with_types, const char *model) {
    memset(g, 0, sizeof *g);
    g->f = mrw_tfile_alloc(MRW_FMT_GGUF);
    g->n = n;
    g->strs = calloc((size_t)n, sizeof *g->strs);
    g->texts = calloc((size_t)n, sizeof *g->texts);
    g->types = calloc((size_t)n, sizeof *g->types);
    for (int i = 0; i < n; i++) {
        int normal = i > 0 && i < 65530 && mrw_vocab_token_kind(v, i) == MRW_TOKEN_NORMAL;
        size_t len = normal || i == 0 ? mrw_vocab_gguf_token_string(v, i, NULL, 0) : 0;
        g->texts[i] = malloc(len + 16);
        if (normal || i == 0) mrw_vocab_gguf_token_string(v, i, g->texts[i], len + 1);
        else len = (size_t)sprintf(g->texts[i], "[PAD%d]", i);
        g->strs[i] = (mrw_str){g->texts[i], len};
        g->types[i] = i == 0   ? MRW_GGUF_TOKEN_CONTROL
                      : normal ? MRW_GGUF_TOKEN_NORMAL
                               : MRW_GGUF_TOKEN_UNUSED;
        if (with_types == 2) {
            free(g->texts[i]);
            len = mrw_vocab_gguf_token_string(v, i, NULL, 0);
            g->texts[i] = malloc(len + 1);
            mrw_vocab_gguf_token_string(v, i, g->texts[i], len + 1);
            g->strs[i] = (mrw_str){g->texts[i], len};
            g->types[i] = mrw_vocab_gguf_token_type(v, i);
        }
    }
    if (model) fake_add_string(g, "tokenizer.ggml.model", model);
    mrw_meta toks = {.key = "tokenizer.ggml.tokens", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_STRING,
                     .count = (uint64_t)n, .strs = g->strs};
    mrw_tfile_add_meta(g->f, &toks);
    if (with_types) {
        mrw_meta ty = {.key = "tokenizer.ggml.token_type", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_I32,
                       .count = (uint64_t)n, .nums = g->types};
        mrw_tfile_add_meta(g->f, &ty);
    }
}

static int same_vocab(const mrw_vocab *a, const mrw_vocab *b) {
    if (mrw_vocab_size(a) != mrw_vocab_size(b)) return 0;
    for (int32_t id = 0; id < mrw_vocab_size(a); id++) {
        size_t la, lb;
        const uint8_t *pa = mrw_token_bytes(a, id, &la), *pb = mrw_token_bytes(b, id, &lb);
        if (la != lb || (la && memcmp(pa, pb, la)) ||
            mrw_vocab_token_kind(a, id) != mrw_vocab_token_kind(b, id))
            return 0;
    }
    return 1;
}

static void test_gguf_meta(const mrw_vocab *world) {
    mrw_error err = {0};
    mrw_vocab *v = NULL;
    fake_gguf g;
    for (int with_types = 0; with_types < 3; with_types++) {
        fake_make(&g, world, 65536, with_types, "rwkv");
        CHECK_OK(mrw_vocab_from_gguf_meta(g.f, &v, &err), &err);
        CHECKF(v && same_vocab(v, world), "GGUF vocabulary (types %d) differs from the text file",
               with_types);
        if (v) test_cases(v, FIX "cases.txt");
        mrw_vocab_free(v);
        fake_free(&g);
    }
    /* exactly the file's tokens, no padding */
    fake_make(&g, world, 65530, 1, "rwkv");
    CHECK_OK(mrw_vocab_from_gguf_meta(g.f, &v, &err), &err);
    CHECK(v && same_vocab(v, world));
    mrw_vocab_free(v);
    /* a control token becomes decode-only */
    g.types[300] = MRW_GGUF_TOKEN_CONTROL;
    CHECK_OK(mrw_vocab_from_gguf_meta(g.f, &v, &err), &err);
    CHECK(v && mrw_vocab_token_kind(v, 300) == MRW_TOKEN_SPECIAL && mrw_vocab_n_normal(v) == 65528);
    mrw_vocab_free(v);
    g.types[300] = 42;
    CHECK(mrw_vocab_from_gguf_meta(g.f, &v, &err) == MRW_E_FORMAT && !v && strstr(err.msg, "[300]"));
    g.types[300] = MRW_GGUF_TOKEN_NORMAL;
    g.texts[500][0] = '\\', g.strs[500].len = 1; /* a dangling backslash */
    CHECK(mrw_vocab_from_gguf_meta(g.f, &v, &err) == MRW_E_FORMAT && strstr(err.msg, "tokens[500]"));
    fake_free(&g);
    /* other tokenizers, or none */
    fake_make(&g, world, 300, 1, "gpt2");
    CHECK(mrw_vocab_from_gguf_meta(g.f, &v, &err) == MRW_E_MISSING && strstr(err.msg, "gpt2"));
    fake_free(&g);
    fake_make(&g, world, 300, 1, NULL);
    CHECK(mrw_vocab_from_gguf_meta(g.f, &v, &err) == MRW_E_MISSING);
    fake_free(&g);
    memset(&g, 0, sizeof g);
    g.f = mrw_tfile_alloc(MRW_FMT_GGUF);
    fake_add_string(&g, "tokenizer.ggml.model", "rwkv");
    CHECK(mrw_vocab_from_gguf_meta(g.f, &v, &err) == MRW_E_FORMAT && strstr(err.msg, "tokens"));
    mrw_tfile_close(g.f);
}

/* Through a real GGUF file: the vocabulary written as tokenizer.ggml.* by the GGUF writer and read back. */
static void test_gguf_file(const mrw_vocab *world) {
    fake_gguf g;
    fake_make(&g, world, 65536, 1, "rwkv");
    char tmp[] = "/tmp/mrw_vocab_gguf_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    mrw_error err = {0};
    mrw_tfile *f = NULL;
    mrw_vocab *v = NULL;
    CHECK_OK(mrw_gguf_write(tmp, NULL, 0, g.f->meta, g.f->n_meta, NULL, NULL, &err), &err);
    CHECK_OK(mrw_gguf_open(tmp, &f, &err), &err);
    if (f) CHECK_OK(mrw_vocab_from_gguf_meta(f, &v, &err), &err);
    CHECK(v && same_vocab(v, world));
    mrw_vocab_free(v);
    mrw_tfile_close(f);
    unlink(tmp);
    fake_free(&g);
}

/* ------------------------------------------------------------------------------ other vocabularies */

static void test_byte_vocab(void) {
    mrw_vocab *v = mrw_vocab_new_bytes();
    CHECK(v && mrw_vocab_size(v) == 256);
    if (!v) return;
    CHECK(mrw_vocab_turn_end(v) == 0x17); /* id = byte here, unlike the World vocabulary's 24 */
    CHECK(mrw_vocab_turn_end(NULL) == -1);
    uint8_t all[512];
    int32_t ids[512];
    for (int i = 0; i < 512; i++) all[i] = (uint8_t)(i * 7 + 3);
    CHECK(mrw_tokenize(v, (const char *)all, 512, ids, 512) == 512);
    int ok = 1;
    for (int i = 0; i < 512; i++) ok &= ids[i] == all[i];
    CHECK(ok);
    size_t n;
    const uint8_t *b = mrw_token_bytes(v, 0, &n);
    CHECK(b && n == 1 && b[0] == 0);
    b = mrw_token_bytes(v, 255, &n);
    CHECK(b && n == 1 && b[0] == 255);
    CHECK(mrw_token_bytes(v, 256, &n) == NULL);
    mrw_vocab_free(v);
}

static void test_dup_vocab(void) {
    mrw_vocab *v = NULL;
    mrw_error err = {0};
    CHECK_OK(mrw_vocab_load(FIX "dup_vocab.txt", &v, &err), &err);
    if (!v) return;
    test_cases(v, FIX "dup_cases.txt");
    mrw_vocab_free(v);
}

static mrw_status load_str(const char *s, mrw_vocab **v, mrw_error *err) {
    return mrw_vocab_load_mem(s, strlen(s), "test.txt", v, err);
}

/* Valid files using the Python escapes the real file does not. */
static void test_literals(void) {
    static const struct { const char *line; const char *bytes; size_t n; } ok[] = {
        {"1 'a' 1", "a", 1},
        {"1 \"it's\" 4", "it's", 4},
        {"1 'it\\'s' 4", "it's", 4},
        {"1 b'\\xff\\x00' 2", "\xff\x00", 2},
        {"1 '\\xff' 2", "\xc3\xbf", 2},
        {"1 '\\a\\b\\f\\v\\0\\101\\7' 7", "\a\b\f\v\0A\7", 7},
        {"1 '\\q' 2", "\\q", 2},
        {"1 b'\\u00e9' 6", "\\u00e9", 6},
        {"1 '\\u00e9\\U0001F600' 6", "\xc3\xa9\xf0\x9f\x98\x80", 6},
        {"1 u'\\N' 2", NULL, 0},
        {"1 '\\\\' 1", "\\", 1},
        {"1 '  ' 2", "  ", 2},
        {"1 ' a b ' 5", " a b ", 5},
        {"1 '\xe4\xb8\xad' 3", "\xe4\xb8\xad", 3},
        {"1 '\\777' 2", "\xc7\xbf", 2},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        mrw_vocab *v = NULL;
        mrw_error err = {0};
        mrw_status st = load_str(ok[i].line, &v, &err);
        if (!ok[i].bytes) {
            CHECKF(st == MRW_E_FORMAT, "'%s' should fail", ok[i].line);
            continue;
        }
        CHECKF(st == MRW_OK, "'%s': %s", ok[i].line, err.msg);
        size_t n;
        const uint8_t *b = v ? mrw_token_bytes(v, 1, &n) : NULL;
        CHECKF(b && n == ok[i].n && !memcmp(b, ok[i].bytes, n), "'%s' decoded wrong", ok[i].line);
        mrw_vocab_free(v);
    }
    /* CRLF, no final newline, ids out of order */
    mrw_vocab *v = NULL;
    mrw_error err = {0};
    CHECK_OK(load_str("2 'b' 1\r\n1 'a' 1\r\n3 'ab' 2", &v, &err), &err);
    int32_t ids[4];
    CHECK(v && mrw_tokenize(v, "abba", 4, ids, 4) == 3 && ids[0] == 3 && ids[1] == 2 && ids[2] == 1);
    /* a vocabulary that cannot encode some byte */
    CHECK(v && mrw_tokenize(v, "abc", 3, ids, 4) == -1);
    CHECK(v && mrw_tokenize(v, "c", 1, ids, 4) == -1);
    mrw_vocab_free(v);
}

static void test_malformed(void) {
    static char huge[MRW_VOCAB_MAX_LINE + 64];
    memset(huge, 'x', sizeof huge - 1);
    memcpy(huge, "1 'a' 1\n2 '", 11);
    static const struct { const char *text; mrw_status code; const char *msg;
    } bad[] = {
        {"", MRW_E_FORMAT, "no tokens"},
        {"1 'a' 1\n2 'b 1\n", MRW_E_FORMAT, "test.txt:2: unterminated"},
        {"1 'a' 1\n2 x 1\n", MRW_E_FORMAT, "test.txt:2: expected a quoted"},
        {"1 'a' 1\n2 'bc' 1\n", MRW_E_FORMAT,
         "test.txt:2: the literal decodes to 2 bytes but the line says 1"},
        {"1 'a' 1\n2 'b' 1\n1 'c' 1\n", MRW_E_FORMAT, "test.txt:3: id 1 already defined on line 1"},
        {"0 'a' 1\n", MRW_E_FORMAT, "test.txt:1: id 0 out of range"},
        {"1048576 'a' 1\n", MRW_E_FORMAT, "out of range"},
        {"1 'a' 1\n2 'b'", MRW_E_FORMAT, "test.txt:2: expected '<id> <literal> <byte length>'"},
        {"1 'a' 1\n2\n", MRW_E_FORMAT, "test.txt:2: expected"},
        {"1 'a' 1\n\n2 'b' 1\n", MRW_E_FORMAT, "test.txt:2: empty line"},
        {"x 'a' 1\n", MRW_E_FORMAT, "id is not a decimal number"},
        {"1 'a' 1x\n", MRW_E_FORMAT, "byte length is not a decimal number"},
        {"1 'a' -1\n", MRW_E_FORMAT, "byte length is not a decimal number"},
        {"1 '' 0\n", MRW_E_FORMAT, "empty token"},
        {"1 'a'b' 1\n", MRW_E_FORMAT, "unexpected text after"},
        {"1 '\\x4' 1\n", MRW_E_FORMAT, "truncated \\x escape"},
        {"1 '\\ud800' 3\n", MRW_E_FORMAT, "not a code point"},
        {"1 '\\U00110000' 4\n", MRW_E_FORMAT, "not a code point"},
        {"1 b'\xc3\xa9' 2\n", MRW_E_FORMAT, "non-ASCII"},
        {"1 '\xff' 1\n", MRW_E_FORMAT, "invalid UTF-8"},
        {"1 '\xed\xa0\x80' 3\n", MRW_E_FORMAT, "invalid UTF-8"},
        {"1 '\\N{BULLET}' 3\n", MRW_E_FORMAT, "\\N{"},
        {"1 '''a''' 1\n", MRW_E_FORMAT, "triple"},
        {"1 r'a' 1\n", MRW_E_FORMAT, "expected a quoted"},
        {"1 'a\\' 2\n", MRW_E_FORMAT, "unterminated"},
        {"1 'a\rb' 3\n", MRW_E_FORMAT, "carriage return"},
        {"1 b'\\777' 1\n", MRW_E_FORMAT, "out of range"},
        {"1 'a' 1\n\n", MRW_E_FORMAT, "test.txt:2: empty line"},
        {huge, MRW_E_LIMIT, "test.txt:2: line longer than"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        static char dummy;
        mrw_vocab *v = (mrw_vocab *)&dummy; /* must come back NULL */
        mrw_error err = {0};
        mrw_status st = load_str(bad[i].text, &v, &err);
        CHECKF(st == bad[i].code && v == NULL && strstr(err.msg, bad[i].msg),
               "case %zu: got %s '%s', want '%s'", i, mrw_status_name(st), err.msg, bad[i].msg);
        if (st == MRW_OK) mrw_vocab_free(v);
    }
    /* a NUL byte inside a line */
    mrw_vocab *v = NULL;
    mrw_error err = {0};
    CHECK(mrw_vocab_load_mem("1 'a\0' 2\n", 9, NULL, &v, &err) == MRW_E_FORMAT &&
          strstr(err.msg, "<memory>:1: NUL"));
    /* an over-long token */
    size_t n = MRW_VOCAB_MAX_TOKEN + 1;
    char *big = malloc(n + 32);
    int k = sprintf(big, "1 '");
    memset(big + k, 'y', n);
    sprintf(big + k + n, "' %zu\n", n);
    CHECK(load_str(big, &v, &err) == MRW_E_LIMIT && strstr(err.msg, "test.txt:1: token of"));
    free(big);
    CHECK(mrw_vocab_load("/nonexistent/vocab.txt", &v, &err) != MRW_OK && v == NULL);
}

/* A crafted vocabulary whose branches (bytes 0x00 and 0xFF under 75k prefixes) never fit the front of the
 * trie builder's free list: the build must stay fast (it once took minutes on such input). */
static void test_build_time(void) {
    const int pairs = 75000;
    size_t cap = (size_t)(256 + 2 * pairs) * 40, n = 0;
    char *text = malloc(cap);
    int id = 1;
    for (int b = 0; b < 256; b++) n += (size_t)sprintf(text + n, "%d b'\\x%02x' 1\n", id++, b);
    for (int k = 0; k < pairs; k++)
        for (int last = 0; last < 2; last++)
            n += (size_t)sprintf(text + n, "%d b'\\x%02x\\x%02x\\x%02x\\x%02x' 4\n", id++, k >> 16 & 255,
                                 k >> 8 & 255, k & 255, last ? 255 : 0);
    mrw_vocab *v = NULL;
    mrw_error err = {0};
    double t0 = now_s();
    CHECK_OK(mrw_vocab_load_mem(text, n, "crafted", &v, &err), &err);
    double dt = now_s() - t0;
    CHECKF(dt < 5.0, "crafted vocabulary took %.1f s to load", dt);
    fprintf(stderr, "crafted vocabulary of %d tokens loaded in %.0f ms\n", id - 1, dt * 1e3);
    int32_t ids[4];
    CHECK(v && mrw_tokenize(v, "\x01\x02\x03\xff\x01", 5, ids, 4) == 2 && ids[0] == 256 + 2 * 0x010203 + 2);
    mrw_vocab_free(v);
    free(text);
}

/* ---------------------------------------------------------------------------------- UTF-8 stream */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* Pushes `in` in the given chunks (sizes), else in chunks of `fixed` bytes, else in random chunks, and
 * compares with `exp`; checks the output bound of every push. */
static int stream_run(const uint8_t *in, size_t n, const size_t *chunks, size_t n_chunks, size_t fixed,
                      const uint8_t *exp, size_t n_exp) {
    char *out = malloc(3 * n + 64);
    mrw_utf8_stream s = {{0}, 0};
    size_t o = 0, pos = 0, c = 0;
    int ok = 1;
    while (pos < n) {
        size_t k = chunks ? (c < n_chunks ? chunks[c++] : n - pos) : fixed ? fixed : 1 + rnd() % 6;
        if (k > n - pos) k = n - pos;
        size_t w = mrw_utf8_stream_push(&s, in + pos, k, out + o);
        ok &= w <= MRW_UTF8_STREAM_OUT_MAX(k) && s.n_pending >= 0 && s.n_pending <= 3;
        o += w, pos += k;
    }
    size_t w = mrw_utf8_stream_flush(&s, out + o);
    ok &= w <= 3 && s.n_pending == 0;
    o += w;
    ok &= o == n_exp && !memcmp(out, exp, n_exp);
    free(out);
    return ok;
}

static void test_utf8_stream(void) {
    lines l;
    char *f[3];
    if (!lines_open(&l, FIX "utf8.txt")) {
        CHECK(0);
        return;
    }
    int n_cases = 0, bad = 0;
    while (lines_next(&l, f, 3) == 3) {
        size_t n, n_exp, chunks[4096], n_chunks = 0;
        uint8_t *in = unhex(f[0], &n), *exp = unhex(f[2], &n_exp);
        for (char *p = f[1]; *p && *p != '-' && n_chunks < 4096; p += *p == ',')
            chunks[n_chunks++] = strtoul(p, &p, 10);
        int ok = stream_run(in, n, chunks, n_chunks, 0, exp, n_exp);
        ok &= stream_run(in, n, NULL, 0, 1, exp, n_exp);
        ok &= stream_run(in, n, NULL, 0, 2, exp, n_exp);
        ok &= stream_run(in, n, NULL, 0, n + 1, exp, n_exp);
        for (int r = 0; r < 10; r++) ok &= stream_run(in, n, NULL, 0, 0, exp, n_exp);
        CHECKF(ok, "utf8 case %d (%s)", n_cases, f[0]);
        bad += !ok;
        n_cases++;
        free(in);
        free(exp);
    }
    free(l.buf);
    fprintf(stderr, "utf8 stream: %d cases, %d failed\n", n_cases, bad);
    CHECK(n_cases > 100);

    /* pending bytes wait for the next push; flush turns them into one U+FFFD */
    mrw_utf8_stream s = {{0}, 0};
    char out[64];
    CHECK(mrw_utf8_stream_push(&s, (const uint8_t *)"a\xe4\xb8", 3, out) == 1 && out[0] == 'a' &&
          s.n_pending == 2);
    CHECK(mrw_utf8_stream_push(&s, (const uint8_t *)"\xad", 1, out) == 3 && !memcmp(out, "\xe4\xb8\xad", 3));
    CHECK(mrw_utf8_stream_push(&s, (const uint8_t *)"\xf0\x9f", 2, out) == 0);
    CHECK(mrw_utf8_stream_flush(&s, out) == 3 && !memcmp(out, "\xef\xbf\xbd", 3));
    CHECK(mrw_utf8_stream_flush(&s, out) == 0);
    CHECK(mrw_utf8_stream_push(&s, NULL, 0, out) == 0);
}

/* ---------------------------------------------------------------------------------------- chat */

static void test_chat(const mrw_vocab *v) {
    char buf[256];
    CHECK(mrw_chat_turn(MRW_ROLE_USER, "hi", 2, buf, sizeof buf) == 10 && !strcmp(buf, "\x16User: hi\x17"));
    CHECK(mrw_chat_turn(MRW_ROLE_SYSTEM, "x", 1, buf, sizeof buf) == 11 && !strcmp(buf, "\x16System: x\x17"));
    CHECK(mrw_chat_generation_prompt(MRW_CHAT_V1_EVAL, buf, sizeof buf) == 11 && !strcmp(buf, "\x16"
                                                                                              "Assistant:"));
    CHECK(mrw_chat_generation_prompt(MRW_CHAT_MODEL_CARD, buf, sizeof buf) == 10 &&
          !strcmp(buf, "Assistant:"));
    mrw_chat_msg msgs[] = {{MRW_ROLE_USER, "hi", 2}};
    size_t n = mrw_chat_prompt(MRW_CHAT_V1_EVAL, msgs, 1, 1, buf, sizeof buf);
    CHECK(n == 21 && !strcmp(buf, "\x16User: hi\x17\x16" "Assistant:"));
    int32_t ids[32], exp_v1[] = {23, 24281, 59, 4571, 24, 23, 5585, 41693, 59};
    CHECK(mrw_tokenize(v, buf, n, ids, 32) == 9 && !memcmp(ids, exp_v1, sizeof exp_v1));
    n = mrw_chat_prompt(MRW_CHAT_MODEL_CARD, msgs, 1, 1, buf, sizeof buf);
    int32_t exp_card[] = {23, 24281, 59, 4571, 24, 5585, 41693, 59};
    CHECK(n == 20 && mrw_tokenize(v, buf, n, ids, 32) == 8 && !memcmp(ids, exp_card, sizeof exp_card));
    mrw_chat_msg conv[] = {{MRW_ROLE_SYSTEM, "Be brief.", 9}, {MRW_ROLE_USER, "Hi", 2},
                           {MRW_ROLE_ASSISTANT, "Hello!", 6}};
    n = mrw_chat_prompt(MRW_CHAT_V1_EVAL, conv, 3, 0, buf, sizeof buf);
    CHECK(n == strlen(buf) && !strcmp(buf, "\x16System: Be brief.\x17\x16User: Hi\x17\x16"
                                           "Assistant: Hello!\x17"));
    /* truncation: full length returned, NUL-terminated within cap */
    char small[8];
    CHECK(mrw_chat_prompt(MRW_CHAT_V1_EVAL, conv, 3, 1, small, sizeof small) == n + 11 && strlen(small) == 7);
    CHECK(mrw_chat_prompt(MRW_CHAT_V1_EVAL, conv, 3, 1, NULL, 0) == n + 11);
}

int main(void) {
    double t0 = now_s();
    mrw_vocab *world = load_world();
    fprintf(stderr, "loaded the World vocabulary in %.1f ms\n", (now_s() - t0) * 1e3);
    if (!world) TEST_MAIN_END();
    test_world_basics(world);
    test_cases(world, FIX "cases.txt");
    test_each_token(world);
    test_capacity(world);
    test_big(world);
    test_crlf(world);
    test_gguf_strings(world);
    test_gguf_meta(world);
    test_gguf_file(world);
    test_byte_vocab();
    test_dup_vocab();
    test_literals();
    test_malformed();
    test_build_time();
    test_utf8_stream();
    test_chat(world);
    mrw_vocab_free(world);
    fprintf(stderr, "total %.2f s\n", now_s() - t0);
    TEST_MAIN_END();
}
