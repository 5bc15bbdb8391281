/* libFuzzer harness for the vocabulary parser, the tokenizer, the GGUF token escaping and the streaming UTF-8
 * decoder. Input: a vocabulary file, a 0x00 byte, then text (without a 0x00 the whole input is both).
 *   - the file either loads or fails with a message and no vocabulary;
 *   - a loaded vocabulary tokenizes the text to a greedy longest match (checked against a brute-force
 *     search), decodes back to the text, never fails when every byte is a token, and obeys `cap`;
 *   - every token survives GGUF escape + unescape;
 *   - the stream decoder, fed the text in chunks, equals a one-shot maximal-subpart decoder.
 * When the file does not load, the text goes through the World vocabulary (../shared or $MRW_SHARED) if
 * present, else the byte vocabulary. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/vocab.h"

#define ASSERT(c)                                                                  \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                               \
        }                                                                          \
    } while (0)

static const mrw_vocab *fallback_vocab(void) {
    static mrw_vocab *v;
    if (v) return v;
    const char *dir = getenv("MRW_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/assets/rwkv_vocab_v20230424.txt", dir && *dir ? dir : "../shared");
    if (mrw_vocab_load(path, &v, NULL) != MRW_OK) v = mrw_vocab_new_bytes();
    return v;
}

/* Longest normal token (ids listed in `normal`) matching s[0..n), by brute force. */
static size_t brute_longest(const mrw_vocab *v, const int32_t *normal, int n_normal, const uint8_t *s,
                            size_t n) {
    size_t best = 0;
    for (int i = 0; i < n_normal; i++) {
        size_t tl;
        const uint8_t *tb = mrw_token_bytes(v, normal[i], &tl);
        if (tl > best && tl <= n && !memcmp(tb, s, tl)) best = tl;
    }
    return best;
}

static int32_t *normal_ids(const mrw_vocab *v, int *n) {
    int32_t *ids = malloc(((size_t)mrw_vocab_size(v) + 1) * sizeof *ids);
    ASSERT(ids);
    *n = 0;
    for (int32_t id = 0; id < mrw_vocab_size(v); id++)
        if (mrw_vocab_token_kind(v, id) == MRW_TOKEN_NORMAL) ids[(*n)++] = id;
    ASSERT(*n >= mrw_vocab_n_normal(v)); /* equal unless two ids share their bytes */
    return ids;
}

static int covers_all_bytes(const mrw_vocab *v) {
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        int32_t id = mrw_vocab_find(v, &c, 1);
        if (id < 0 || mrw_vocab_token_kind(v, id) != MRW_TOKEN_NORMAL) return 0;
    }
    return 1;
}

static void check_tokenize(const mrw_vocab *v, const uint8_t *text, size_t n, int brute, unsigned flags) {
    int64_t k = mrw_tokenize_ex(v, (const char *)text, n, NULL, 0, flags);
    if (k < 0) {
        ASSERT(!covers_all_bytes(v));
        return;
    }
    int32_t *ids = malloc(((size_t)k + 1) * sizeof *ids);
    int n_normal = 0;
    int32_t *normal = brute ? normal_ids(v, &n_normal) : NULL;
    ASSERT(ids);
    ASSERT(mrw_tokenize_ex(v, (const char *)text, n, ids, (size_t)k / 2, flags) == k);
    ASSERT(mrw_tokenize_ex(v, (const char *)text, n, ids, (size_t)k, flags) == k);
    size_t pos = 0;
    for (int64_t i = 0; i < k; i++) {
        size_t tl;
        const uint8_t *tb = mrw_token_bytes(v, ids[i], &tl);
        mrw_token_kind kind = mrw_vocab_token_kind(v, ids[i]);
        ASSERT(tb && tl > 0 && pos + tl <= n && !memcmp(tb, text + pos, tl));
        ASSERT(kind == MRW_TOKEN_NORMAL || (kind == MRW_TOKEN_SPECIAL && (flags & MRW_TOKENIZE_SPECIAL)));
        if (brute && kind == MRW_TOKEN_NORMAL)
            ASSERT(brute_longest(v, normal, n_normal, text + pos, n - pos) == tl);
        pos += tl;
    }
    ASSERT(pos == n);
    free(ids);
    free(normal);
}

static void check_gguf_strings(const mrw_vocab *v) {
    for (int32_t id = 0; id < mrw_vocab_size(v); id++) {
        size_t tl, bl;
        const uint8_t *tb = mrw_token_bytes(v, id, &tl);
        if (!tb) continue;
        size_t sl = mrw_gguf_escape_token(tb, tl, NULL, 0);
        char *s = malloc(sl + 1);
        uint8_t *back = malloc(sl + 1);
        ASSERT(s && back && mrw_gguf_escape_token(tb, tl, s, sl + 1) == sl && strlen(s) == sl);
        ASSERT(mrw_gguf_unescape_token(s, sl, back, &bl, NULL) == MRW_OK && bl == tl &&
               !memcmp(back, tb, tl));
        free(s);
        free(back);
    }
}

/* One-shot decoder written independently of utf8.c: at each position either a whole valid sequence, or one
 * U+FFFD for the longest prefix of one (at least one byte). */
static size_t ref_decode(const uint8_t *s, size_t n, uint8_t *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        int len = c < 0x80                 ? 1
                  : c >= 0xC2 && c <= 0xDF ? 2
                  : c >= 0xE0 && c <= 0xEF ? 3
                  : c >= 0xF0 && c <= 0xF4 ? 4
                                           : 0;
        size_t ok = len ? 1 : 0;
        while (ok && ok < (size_t)len && i + ok < n) {
            uint8_t lo = 0x80, hi = 0xBF, b = s[i + ok];
            if (ok == 1 && c == 0xE0) lo = 0xA0;
            if (ok == 1 && c == 0xED) hi = 0x9F;
            if (ok == 1 && c == 0xF0) lo = 0x90;
            if (ok == 1 && c == 0xF4) hi = 0x8F;
            if (b < lo || b > hi) break;
            ok++;
        }
        if (len && ok == (size_t)len) {
            memcpy(out + o, s + i, ok);
            o += ok;
            i += ok;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += ok ? ok : 1;
        }
    }
    return o;
}

static void check_stream(const uint8_t *s, size_t n, const uint8_t *data, size_t size) {
    uint8_t *exp = malloc(3 * n + 4);
    char *got = malloc(3 * n + 8);
    ASSERT(exp && got);
    size_t n_exp = ref_decode(s, n, exp), o = 0, pos = 0, j = 0;
    mrw_utf8_stream st = {{0}, 0};
    while (pos < n) {
        size_t k = size ? 1 + data[j++ % size] % 7 : n; /* chunk sizes drawn from the input itself */
        if (k > n - pos) k = n - pos;
        size_t w = mrw_utf8_stream_push(&st, s + pos, k, got + o);
        ASSERT(w <= MRW_UTF8_STREAM_OUT_MAX(k));
        o += w, pos += k;
    }
    o += mrw_utf8_stream_flush(&st, got + o);
    ASSERT(o == n_exp && !memcmp(got, exp, o));
    free(exp);
    free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t vlen = nul ? (size_t)(nul - data) : size;
    const uint8_t *text = nul ? nul + 1 : data;
    size_t tlen = nul ? size - vlen - 1 : size;

    mrw_vocab *v = NULL;
    mrw_error err = {0};
    mrw_status st = mrw_vocab_load_mem(data, vlen, "fuzz", &v, &err);
    if (st != MRW_OK) {
        ASSERT(v == NULL && err.code == st && err.msg[0]);
        check_tokenize(fallback_vocab(), text, tlen, 0, 0);
    } else {
        ASSERT(v && mrw_vocab_size(v) >= 1);
        check_tokenize(v, text, tlen, tlen <= 512, 0);
        check_tokenize(v, text, tlen, 0, MRW_TOKENIZE_SPECIAL);
        check_gguf_strings(v);
        mrw_vocab_free(v);
    }
    check_stream(text, tlen, data, size);
    return 0;
}
