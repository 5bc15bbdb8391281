/* Loading the RWKV World vocabulary: the text file (`<id> <python literal> <byte length>` per line), the
 * byte-level vocabulary, the GGUF embedding (llama.cpp's escaped token strings), and the GGUF escaping. */
#include "text/vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mapfile.h"

/* ------------------------------------------------------------------------------------------- builder */

/* Collects id -> bytes while a source is parsed; mrw_vocab is made from it at the end. */
typedef struct {
    mrw_vocab_entry *ent;
    uint32_t *line; /* where each id was defined (text files: for the duplicate-id message) */
    int32_t cap_ent, n_ids;
    uint8_t *pool;
    size_t pool_len, pool_cap;
    int32_t *order; /* NORMAL ids in definition order */
    int32_t n_order, cap_order;
} vbuild;

static void vb_free(vbuild *b) {
    free(b->ent);
    free(b->line);
    free(b->pool);
    free(b->order);
    memset(b, 0, sizeof *b);
}

static int vb_reserve_ids(vbuild *b, int32_t n) {
    if (n <= b->cap_ent) return 0;
    int32_t cap = b->cap_ent ? b->cap_ent : 1024;
    while (cap < n) cap = cap > MRW_VOCAB_MAX_ID / 2 ? MRW_VOCAB_MAX_ID : cap * 2;
    mrw_vocab_entry *e = realloc(b->ent, (size_t)cap * sizeof *e);
    if (!e) return -1;
    b->ent = e;
    uint32_t *l = realloc(b->line, (size_t)cap * sizeof *l);
    if (!l) return -1;
    b->line = l;
    memset(b->ent + b->cap_ent, 0, (size_t)(cap - b->cap_ent) * sizeof *e);
    memset(b->line + b->cap_ent, 0, (size_t)(cap - b->cap_ent) * sizeof *l);
    b->cap_ent = cap;
    return 0;
}

/* Makes room for n more pool bytes; returns where they go, or NULL. */
static uint8_t *vb_pool_room(vbuild *b, size_t n) {
    if (n > UINT32_MAX - b->pool_len) return NULL; /* offsets are 32-bit */
    if (b->pool_len + n > b->pool_cap) {
        size_t cap = b->pool_cap ? b->pool_cap : 4096;
        while (cap < b->pool_len + n) cap *= 2;
        uint8_t *p = realloc(b->pool, cap);
        if (!p) return NULL;
        b->pool = p;
        b->pool_cap = cap;
    }
    return b->pool + b->pool_len;
}

/* Records id -> the n bytes just written at vb_pool_room(). The caller has checked that id is free. */
static int vb_commit(vbuild *b, int32_t id, size_t n, mrw_token_kind kind, uint32_t line) {
    if (vb_reserve_ids(b, id + 1)) return -1;
    if (kind == MRW_TOKEN_NORMAL) {
        if (b->n_order == b->cap_order) {
            int32_t cap = b->cap_order ? b->cap_order * 2 : 1024;
            int32_t *o = realloc(b->order, (size_t)cap * sizeof *o);
            if (!o) return -1;
            b->order = o;
            b->cap_order = cap;
        }
        b->order[b->n_order++] = id;
    }
    b->ent[id] = (mrw_vocab_entry){.off = (uint32_t)b->pool_len, .len = (uint16_t)n, .kind = (uint8_t)kind};
    b->line[id] = line;
    b->pool_len += n;
    if (id >= b->n_ids) b->n_ids = id + 1;
    return 0;
}

static int vb_add(vbuild *b, int32_t id, const void *bytes, size_t n, mrw_token_kind kind) {
    uint8_t *dst = vb_pool_room(b, n);
    if (!dst) return -1;
    if (n) memcpy(dst, bytes, n);
    return vb_commit(b, id, n, kind, 0);
}

static int vb_has(const vbuild *b, int32_t id) { return id < b->n_ids && b->ent[id].kind != MRW_TOKEN_NONE; }

/* ModRWKV v2's image tokens, added wherever the source left their ids without text. */
static int vb_add_v2_specials(vbuild *b) {
    static const struct { int32_t id; const char *text; } sp[] = {
        {MRW_TOK_VISION_START, "<|vision_start|>"},
        {MRW_TOK_VISION_END, "<|vision_end|>"},
        {MRW_TOK_IMAGE_PAD, "<|image_pad|>"},
    };
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++)
        if (!vb_has(b, sp[i].id) && vb_add(b, sp[i].id, sp[i].text, strlen(sp[i].text), MRW_TOKEN_SPECIAL))
            return -1;
    return 0;
}

/* Specials are matched longest first (then by id), so one that contains another wins. */
static int special_before(const mrw_vocab *v, int32_t a, int32_t b) {
    if (v->ent[a].len != v->ent[b].len) return v->ent[a].len > v->ent[b].len;
    return a < b;
}

static void sort_specials(mrw_vocab *v) { /* insertion sort: there are a handful */
    for (int32_t i = 1; i < v->n_specials; i++)
        for (int32_t j = i; j > 0 && special_before(v, v->specials[j], v->specials[j - 1]); j--) {
            int32_t t = v->specials[j];
            v->specials[j] = v->specials[j - 1];
            v->specials[j - 1] = t;
        }
}

/* Turns the builder into a vocabulary (the builder is emptied either way). */
static mrw_status vb_finish(vbuild *b, const char *name, mrw_vocab **out, mrw_error *err) {
    *out = NULL;
    if (b->n_order == 0) {
        vb_free(b);
        return mrw_err(err, MRW_E_FORMAT, "%s: the vocabulary has no tokens", name);
    }
    mrw_vocab *v = calloc(1, sizeof *v);
    if (!v) {
        vb_free(b);
        return mrw_err(err, MRW_E_NOMEM, "%s: out of memory", name);
    }
    v->n_ids = b->n_ids;
    v->ent = b->ent;
    v->pool = b->pool;
    v->pool_len = b->pool_len;
    b->ent = NULL;
    b->pool = NULL;
    for (int32_t id = 0; id < v->n_ids; id++) v->n_specials += v->ent[id].kind == MRW_TOKEN_SPECIAL;
    v->specials = malloc((size_t)(v->n_specials ? v->n_specials : 1) * sizeof *v->specials);
    mrw_status st = MRW_OK;
    if (!v->specials) {
        st = mrw_err(err, MRW_E_NOMEM, "%s: out of memory", name);
    } else {
        int32_t k = 0;
        for (int32_t id = 0; id < v->n_ids; id++)
            if (v->ent[id].kind == MRW_TOKEN_SPECIAL) v->specials[k++] = id;
        sort_specials(v);
        st = mrw_vocab_build_trie(v, b->order, b->n_order, err);
        if (st) mrw_err_prefix(err, "%s", name);
    }
    vb_free(b);
    if (st) {
        mrw_vocab_free(v);
        return st;
    }
    *out = v;
    return MRW_OK;
}

/* --------------------------------------------------------------------------- Python literal decoding */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(uint8_t *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not valid (overlong, surrogate, > U+10FFFF,
 * truncated). */
static size_t utf8_valid_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3;
    else if (c >= 0xF0 && c <= 0xF4) len = 4;
    else return 0;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

typedef struct {
    char msg[160];
} lit_err;

/* Reads `digits` hex digits at s[i..n). Returns the value or -1. */
static long read_hex(const uint8_t *s, size_t n, size_t i, int digits) {
    if (n - i < (size_t)digits) return -1;
    long v = 0;
    for (int k = 0; k < digits; k++) {
        int h = hexval(s[i + k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* One escape sequence at s[i] == '\\'. Appends its bytes to out[*o] and returns the index after it, or 0
 * with e->msg set. The escapes are Python's (for literals that fit on one line). */
static size_t decode_escape(const uint8_t *s, size_t n, size_t i, int is_bytes, uint8_t *out, size_t *o,
                            lit_err *e) {
    if (i + 1 >= n) {
        snprintf(e->msg, sizeof e->msg, "unterminated string literal");
        return 0;
    }
    uint8_t c = s[i + 1];
    const char *simple = "\\\\''\"\"a\ab\bf\fn\nr\rt\tv\v";
    for (const char *p = simple; *p; p += 2)
        if (c == (uint8_t)p[0]) {
            out[(*o)++] = (uint8_t)p[1];
            return i + 2;
        }
    if (c >= '0' && c <= '7') { /* up to three octal digits */
        size_t j = i + 1;
        unsigned v = 0;
        while (j < n && j < i + 4 && s[j] >= '0' && s[j] <= '7') v = v * 8 + (s[j++] - '0');
        if (is_bytes && v > 0xFF) {
            snprintf(e->msg, sizeof e->msg, "octal escape \\%o out of range in a bytes literal", v);
            return 0;
        }
        if (is_bytes) out[(*o)++] = (uint8_t)v;
        else *o += put_utf8(out + *o, v);
        return j;
    }
    int digits = c == 'x' ? 2 : (!is_bytes && c == 'u') ? 4 : (!is_bytes && c == 'U') ? 8 : 0;
    if (digits) {
        long v = read_hex(s, n, i + 2, digits);
        if (v < 0) {
            snprintf(e->msg, sizeof e->msg, "truncated \\%c escape (needs %d hex digits)", c, digits);
            return 0;
        }
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
            snprintf(e->msg, sizeof e->msg, "escape \\%c%0*lX is not a code point UTF-8 can encode", c,
                     digits, (unsigned long)v);
            return 0;
        }
        if (is_bytes) out[(*o)++] = (uint8_t)v;
        else *o += put_utf8(out + *o, (uint32_t)v);
        return i + 2 + digits;
    }
    if (!is_bytes && c == 'N') {
        snprintf(e->msg, sizeof e->msg, "\\N{...} escapes are not supported");
        return 0;
    }
    /* Python keeps an unknown escape as written: the backslash, then the character read normally. */
    out[(*o)++] = '\\';
    return i + 1;
}

/* Decodes a Python str ('...', "...", u'...') or bytes (b'...') literal into UTF-8 / raw bytes. out needs n
 * bytes (a literal never decodes longer than it is written). Returns 0 or -1 with e->msg set. */
static int decode_literal(const uint8_t *s, size_t n, uint8_t *out, size_t *out_len, lit_err *e) {
    size_t i = 0, o = 0;
    int is_bytes = 0;
    if (i < n && (s[i] == 'b' || s[i] == 'B')) is_bytes = 1, i++;
    else if (i < n && (s[i] == 'u' || s[i] == 'U')) i++;
    if (i >= n || (s[i] != '\'' && s[i] != '"')) {
        snprintf(e->msg, sizeof e->msg, "expected a quoted Python string literal ('...', \"...\" or b'...')");
        return -1;
    }
    uint8_t q = s[i++];
    if (n - i >= 2 && s[i] == q && s[i + 1] == q) {
        snprintf(e->msg, sizeof e->msg, "triple-quoted literals are not supported");
        return -1;
    }
    int closed = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == q) {
            closed = 1, i++;
            break;
        }
        if (c == '\\') {
            i = decode_escape(s, n, i, is_bytes, out, &o, e);
            if (!i) return -1;
        } else if (c >= 0x80 && is_bytes) {
            snprintf(e->msg, sizeof e->msg, "non-ASCII byte 0x%02X in a bytes literal", c);
            return -1;
        } else if (c >= 0x80) {
            size_t k = utf8_valid_len(s + i, n - i);
            if (!k) {
                snprintf(e->msg, sizeof e->msg, "invalid UTF-8 in a str literal");
                return -1;
            }
            memcpy(out + o, s + i, k);
            o += k, i += k;
        } else {
            out[o++] = c, i++;
        }
    }
    if (!closed) {
        snprintf(e->msg, sizeof e->msg, "unterminated string literal");
        return -1;
    }
    if (i != n) {
        snprintf(e->msg, sizeof e->msg, "unexpected text after the string literal");
        return -1;
    }
    *out_len = o;
    return 0;
}

/* ----------------------------------------------------------------------------------------- text file */

/* Parses a decimal number of at most 9 digits; -1 if s[0..n) is not one. */
static long parse_dec(const uint8_t *s, size_t n) {
    if (n == 0 || n > 9) return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static const uint8_t *last_space(const uint8_t *s, size_t n) {
    for (size_t i = n; i-- > 0;)
        if (s[i] == ' ') return s + i;
    return NULL;
}

/* One line `<id> <literal> <byte_len>` (without its line end) into the builder. */
static mrw_status parse_line(vbuild *b, const uint8_t *l, size_t n, const char *name, uint32_t lineno,
                             mrw_error *err) {
    if (n == 0) return mrw_err(err, MRW_E_FORMAT, "%s:%u: empty line", name, lineno);
    if (n > MRW_VOCAB_MAX_LINE)
        return mrw_err(err, MRW_E_LIMIT, "%s:%u: line longer than %d bytes", name, lineno,
                       MRW_VOCAB_MAX_LINE);
    if (memchr(l, 0, n)) return mrw_err(err, MRW_E_FORMAT, "%s:%u: NUL byte in the line", name, lineno);
    if (memchr(l, '\r', n)) return mrw_err(err, MRW_E_FORMAT, "%s:%u: stray carriage return", name, lineno);
    const uint8_t *sp1 = memchr(l, ' ', n), *sp2 = last_space(l, n);
    if (!sp1 || sp1 == sp2)
        return mrw_err(err, MRW_E_FORMAT, "%s:%u: expected '<id> <literal> <byte length>'", name, lineno);
    long id = parse_dec(l, (size_t)(sp1 - l));
    long blen = parse_dec(sp2 + 1, (size_t)(l + n - sp2 - 1));
    if (id < 0) return mrw_err(err, MRW_E_FORMAT, "%s:%u: the id is not a decimal number", name, lineno);
    if (blen < 0)
        return mrw_err(err, MRW_E_FORMAT, "%s:%u: the byte length is not a decimal number", name, lineno);
    if (id == 0 || id >= MRW_VOCAB_MAX_ID)
        return mrw_err(err, MRW_E_FORMAT, "%s:%u: id %ld out of range (1..%d; 0 is end-of-text)", name,
                       lineno, id, MRW_VOCAB_MAX_ID - 1);
    if (vb_has(b, (int32_t)id))
        return mrw_err(err, MRW_E_FORMAT, "%s:%u: id %ld already defined on line %u", name, lineno, id,
                       b->line[id]);
    const uint8_t *lit = sp1 + 1, *end = sp2;
    while (lit < end && *lit == ' ') lit++;
    while (end > lit && end[-1] == ' ') end--;
    size_t lit_n = (size_t)(end - lit), got = 0;
    uint8_t *dst = vb_pool_room(b, lit_n);
    if (!dst) return mrw_err(err, MRW_E_NOMEM, "%s:%u: out of memory", name, lineno);
    lit_err e;
    if (decode_literal(lit, lit_n, dst, &got, &e))
        return mrw_err(err, MRW_E_FORMAT, "%s:%u: %s", name, lineno, e.msg);
    if (got != (size_t)blen)
        return mrw_err(err, MRW_E_FORMAT, "%s:%u: the literal decodes to %zu bytes but the line says %ld",
                       name, lineno, got, blen);
    if (got == 0) return mrw_err(err, MRW_E_FORMAT, "%s:%u: empty token", name, lineno);
    if (got > MRW_VOCAB_MAX_TOKEN)
        return mrw_err(err, MRW_E_LIMIT, "%s:%u: token of %zu bytes (limit %d)", name, lineno, got,
                       MRW_VOCAB_MAX_TOKEN);
    if (vb_commit(b, (int32_t)id, got, MRW_TOKEN_NORMAL, lineno))
        return mrw_err(err, MRW_E_NOMEM, "%s:%u: out of memory", name, lineno);
    return MRW_OK;
}

mrw_status mrw_vocab_load_mem(const void *buf, size_t len, const char *name, mrw_vocab **out,
                              mrw_error *err) {
    *out = NULL;
    if (!name) name = "<memory>";
    if (!buf && len) return mrw_err(err, MRW_E_ARG, "%s: NULL buffer", name);
    if (len > MRW_VOCAB_MAX_FILE)
        return mrw_err(err, MRW_E_LIMIT, "%s: vocabulary file of %zu bytes (limit %u)", name, len,
                       MRW_VOCAB_MAX_FILE);
    vbuild b = {0};
    const uint8_t *p = buf, *end = p + len;
    uint32_t lineno = 1;
    for (; p < end; lineno++) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        if (n && p[n - 1] == '\r') n--; /* CRLF */
        mrw_status st = parse_line(&b, p, n, name, lineno, err);
        if (st) {
            vb_free(&b);
            return st;
        }
        p = nl ? nl + 1 : end;
    }
    if (vb_add_v2_specials(&b)) {
        vb_free(&b);
        return mrw_err(err, MRW_E_NOMEM, "%s: out of memory", name);
    }
    return vb_finish(&b, name, out, err);
}

mrw_status mrw_vocab_load(const char *path, mrw_vocab **out, mrw_error *err) {
    *out = NULL;
    mrw_mapping m;
    mrw_status st = mrw_map_file(path, &m, err);
    if (st) return st;
    st = mrw_vocab_load_mem(m.data, m.size, path, out, err);
    mrw_unmap(&m);
    return st;
}

mrw_vocab *mrw_vocab_new_bytes(void) {
    vbuild b = {0};
    for (int c = 0; c < 256; c++) {
        uint8_t byte = (uint8_t)c;
        if (vb_add(&b, c, &byte, 1, MRW_TOKEN_NORMAL)) {
            vb_free(&b);
            return NULL;
        }
    }
    mrw_vocab *v;
    return vb_finish(&b, "byte vocabulary", &v, NULL) ? NULL : v;
}

/* ------------------------------------------------------------------------------------------ accessors */

void mrw_vocab_free(mrw_vocab *v) {
    if (!v) return;
    free(v->ent);
    free(v->pool);
    free(v->dat);
    free(v->specials);
    free(v);
}

int mrw_vocab_size(const mrw_vocab *v) { return v ? v->n_ids : 0; }

int32_t mrw_vocab_turn_end(const mrw_vocab *v) {
    int32_t ids[2];
    if (!v || mrw_tokenize(v, "\x17", 1, ids, 2) != 1) return -1;
    return ids[0];
}
int mrw_vocab_n_normal(const mrw_vocab *v) { return v ? v->n_normal : 0; }

mrw_token_kind mrw_vocab_token_kind(const mrw_vocab *v, int32_t id) {
    if (!v || id < 0 || id >= v->n_ids) return MRW_TOKEN_NONE;
    return (mrw_token_kind)v->ent[id].kind;
}

const uint8_t *mrw_token_bytes(const mrw_vocab *v, int32_t id, size_t *len) {
    if (mrw_vocab_token_kind(v, id) == MRW_TOKEN_NONE) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->ent[id].len;
    return v->pool + v->ent[id].off;
}

int32_t mrw_vocab_find(const mrw_vocab *v, const void *text, size_t len) {
    const uint8_t *s = text;
    int32_t st = 0;
    for (size_t i = 0; i < len && st >= 0; i++) {
        int32_t t = v->dat[st].base + s[i];
        st = v->dat[t].check == st ? t : -1;
    }
    if (len && st >= 0 && v->dat[st].val >= 0) return v->dat[st].val;
    for (int32_t k = 0; k < v->n_specials; k++) {
        const mrw_vocab_entry *e = &v->ent[v->specials[k]];
        if (e->len == len && !memcmp(v->pool + e->off, s, len)) return v->specials[k];
    }
    return -1;
}

/* ---------------------------------------------------------------------------------------------- GGUF */

size_t mrw_gguf_escape_token(const uint8_t *bytes, size_t n, char *out, size_t cap) {
    /* repr(bytes) quotes with ' unless the bytes hold ' and no ", and then escapes only that quote. */
    int has_sq = memchr(bytes, '\'', n) != NULL, has_dq = memchr(bytes, '"', n) != NULL;
    uint8_t quote = (has_sq && !has_dq) ? '"' : '\'';
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = bytes[i];
        char tmp[4];
        size_t k = 0;
        if (c == quote || c == '\\') tmp[k++] = '\\', tmp[k++] = (char)c;
        else if (c == '\t') tmp[k++] = '\\', tmp[k++] = 't';
        else if (c == '\n') tmp[k++] = '\\', tmp[k++] = 'n';
        else if (c == '\r') tmp[k++] = '\\', tmp[k++] = 'r';
        else if (c < 0x20 || c >= 0x7F)
            tmp[0] = '\\', tmp[1] = 'x', tmp[2] = hex[c >> 4], tmp[3] = hex[c & 15], k = 4;
        else tmp[k++] = (char)c;
        for (size_t j = 0; j < k; j++, o++)
            if (o + 1 < cap) out[o] = tmp[j];
    }
    if (cap) out[o < cap ? o : cap - 1] = 0;
    return o;
}

mrw_status mrw_gguf_unescape_token(const char *s, size_t n, uint8_t *out, size_t *out_len, mrw_error *err) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            out[o++] = (uint8_t)s[i];
            continue;
        }
        if (++i >= n) return mrw_err(err, MRW_E_FORMAT, "dangling backslash at the end of a token string");
        char c = s[i];
        if (c == 't') out[o++] = '\t';
        else if (c == 'n') out[o++] = '\n';
        else if (c == 'r') out[o++] = '\r';
        else if (c == 'x') {
            int h = i + 2 < n ? hexval((uint8_t)s[i + 1]) : -1;
            int l = i + 2 < n ? hexval((uint8_t)s[i + 2]) : -1;
            if (h < 0 || l < 0) return mrw_err(err, MRW_E_FORMAT, "bad \\x escape in a token string");
            out[o++] = (uint8_t)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = (uint8_t)c;
        }
    }
    *out_len = o;
    return MRW_OK;
}

/* "[PAD<i>]": llama.cpp's filler for ids past the vocabulary file. */
static int is_pad_name(const mrw_str *s, uint64_t i) {
    char buf[32];
    int k = snprintf(buf, sizeof buf, "[PAD%llu]", (unsigned long long)i);
    return (size_t)k == s->len && !memcmp(buf, s->ptr, s->len);
}

static int meta_int_at(const mrw_meta *m, uint64_t i, int64_t *v) {
    const uint8_t *p = m->nums;
    switch (m->elem_type) {
    case MRW_MV_U8: *v = p[i]; return 0;
    case MRW_MV_I8: *v = (int8_t)p[i]; return 0;
    case MRW_MV_U16: case MRW_MV_I16: {
        uint16_t x = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
        *v = m->elem_type == MRW_MV_I16 ? (int16_t)x : x;
        return 0;
    }
    case MRW_MV_U32: case MRW_MV_I32: {
        uint32_t x = 0;
        for (int k = 3; k >= 0; k--) x = x << 8 | p[4 * i + k];
        *v = m->elem_type == MRW_MV_I32 ? (int32_t)x : (int64_t)x;
        return 0;
    }
    case MRW_MV_U64: case MRW_MV_I64: {
        uint64_t x = 0;
        for (int k = 7; k >= 0; k--) x = x << 8 | p[8 * i + k];
        *v = (int64_t)x;
        return 0;
    }
    default: return -1;
    }
}

/* Classifies GGUF token i: normal, special (decode-only) or none. */
static mrw_status gguf_token_kind(const mrw_meta *types, const mrw_str *s, uint64_t i, mrw_token_kind *kind,
                                  mrw_error *err) {
    if (i == 0) { /* end of text, whatever the file calls it */
        *kind = MRW_TOKEN_NONE;
        return MRW_OK;
    }
    if (!types) {
        *kind = is_pad_name(s, i) ? MRW_TOKEN_NONE : MRW_TOKEN_NORMAL;
        return MRW_OK;
    }
    int64_t t;
    if (meta_int_at(types, i, &t))
        return mrw_err(err, MRW_E_FORMAT, "tokenizer.ggml.token_type has a non-integer element type");
    switch (t) {
    case MRW_GGUF_TOKEN_NORMAL: case MRW_GGUF_TOKEN_USER_DEFINED: case MRW_GGUF_TOKEN_BYTE:
        *kind = MRW_TOKEN_NORMAL;
        return MRW_OK;
    case MRW_GGUF_TOKEN_CONTROL: *kind = MRW_TOKEN_SPECIAL; return MRW_OK;
    case MRW_GGUF_TOKEN_UNKNOWN: case MRW_GGUF_TOKEN_UNUSED: *kind = MRW_TOKEN_NONE; return MRW_OK;
    default:
        return mrw_err(err, MRW_E_FORMAT, "tokenizer.ggml.token_type[%llu] = %lld is not a token type",
                       (unsigned long long)i, (long long)t);
    }
}

static mrw_status gguf_add_tokens(vbuild *b, const mrw_meta *toks, const mrw_meta *types, mrw_error *err) {
    for (uint64_t i = 0; i < toks->count; i++) {
        const mrw_str *s = &toks->strs[i];
        mrw_token_kind kind = MRW_TOKEN_NONE;
        mrw_status st = gguf_token_kind(types, s, i, &kind, err);
        if (st) return st;
        if (kind == MRW_TOKEN_NONE) continue;
        uint8_t *dst = vb_pool_room(b, s->len);
        size_t n = 0;
        if (!dst) return mrw_err(err, MRW_E_NOMEM, "out of memory");
        if ((st = mrw_gguf_unescape_token(s->ptr, s->len, dst, &n, err)) != MRW_OK) {
            if (err) mrw_err_prefix(err, "tokenizer.ggml.tokens[%llu]", (unsigned long long)i);
            return st;
        }
        if (n == 0 || n > MRW_VOCAB_MAX_TOKEN)
            return mrw_err(err, n ? MRW_E_LIMIT : MRW_E_FORMAT,
                           "tokenizer.ggml.tokens[%llu]: token of %zu bytes", (unsigned long long)i, n);
        if (vb_commit(b, (int32_t)i, n, kind, 0)) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    return MRW_OK;
}

mrw_status mrw_vocab_from_gguf_meta(const mrw_tfile *f, mrw_vocab **out, mrw_error *err) {
    *out = NULL;
    const mrw_meta *model = mrw_tfile_find_meta(f, "tokenizer.ggml.model");
    if (!model)
        return mrw_err(err, MRW_E_MISSING, "no tokenizer in the file (tokenizer.ggml.model is absent)");
    if (model->type != MRW_MV_STRING)
        return mrw_err(err, MRW_E_MISSING, "no RWKV World tokenizer (tokenizer.ggml.model is not a string)");
    mrw_str m = model->v.s;
    if (m.len != 4 || memcmp(m.ptr, "rwkv", 4))
        return mrw_err(err, MRW_E_MISSING, "no RWKV World tokenizer (tokenizer.ggml.model is '%.*s')",
                       (int)(m.len > 64 ? 64 : m.len), m.ptr ? m.ptr : "");
    const mrw_meta *toks = mrw_tfile_find_meta(f, "tokenizer.ggml.tokens");
    const mrw_meta *types = mrw_tfile_find_meta(f, "tokenizer.ggml.token_type");
    if (!toks || toks->type != MRW_MV_ARRAY || toks->elem_type != MRW_MV_STRING || !toks->strs)
        return mrw_err(err, MRW_E_FORMAT, "tokenizer.ggml.tokens is missing or not an array of strings");
    if (toks->count > MRW_VOCAB_MAX_ID)
        return mrw_err(err, MRW_E_LIMIT, "tokenizer.ggml.tokens has %llu entries (limit %d)",
                       (unsigned long long)toks->count, MRW_VOCAB_MAX_ID);
    if (types && (types->type != MRW_MV_ARRAY || types->count != toks->count || !types->nums))
        return mrw_err(err, MRW_E_FORMAT, "tokenizer.ggml.token_type is not an array as long as the tokens");
    vbuild b = {0};
    mrw_status st = gguf_add_tokens(&b, toks, types, err);
    /* only a World-sized vocabulary has room for ModRWKV v2's image tokens; a byte-level one must not grow */
    if (!st && toks->count >= MRW_TOK_VISION_START && vb_add_v2_specials(&b)) st = mrw_err(err, MRW_E_NOMEM, "out of memory");
    if (st) {
        vb_free(&b);
        return st;
    }
    return vb_finish(&b, "GGUF tokenizer", out, err);
}

size_t mrw_vocab_gguf_token_string(const mrw_vocab *v, int32_t id, char *out, size_t cap) {
    size_t n;
    const uint8_t *b = mrw_token_bytes(v, id, &n);
    if (!b && id == 0) return (size_t)snprintf(out, cap, "<s>");
    if (!b) return (size_t)snprintf(out, cap, "[PAD%d]", (int)id);
    return mrw_gguf_escape_token(b, n, out, cap);
}

int mrw_vocab_gguf_token_type(const mrw_vocab *v, int32_t id) {
    switch (mrw_vocab_token_kind(v, id)) {
    case MRW_TOKEN_NORMAL: return MRW_GGUF_TOKEN_NORMAL;
    case MRW_TOKEN_SPECIAL: return MRW_GGUF_TOKEN_CONTROL;
    default: return id == 0 ? MRW_GGUF_TOKEN_CONTROL : MRW_GGUF_TOKEN_UNUSED;
    }
}
