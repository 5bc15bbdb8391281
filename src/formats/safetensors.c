/* safetensors (Hugging Face): u64 little-endian header length n, n bytes of UTF-8 JSON
 *   {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...}
 * then the data block; offsets are relative to its start.
 *
 * The reader checks what the format promises (see reference/formats.md): header size limit, UTF-8, JSON,
 * known dtypes, integer shapes and offsets in range, sizes that agree with dtype x shape, no overlapping
 * tensors, no duplicate names. It is more lenient than the reference in one way only: gaps between tensors
 * and trailing bytes are accepted, since they cannot cause an out-of-bounds read.
 *
 * The writer produces files the reference library reads: the JSON header padded with spaces so the data
 * block starts 8-byte aligned, and the data block with no gaps (the reference rejects gaps). */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/error.h"
#include "formats/tfile_impl.h"
#include "tensor/dtype.h"

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* the reference implementation's limit */
#define ST_EXACT_LIMIT 9007199254740992.0           /* 2^53: doubles above this are not exact integers */
#define ST_WRITE_CHUNK ((size_t)64 << 20)
/* JSON values (strings and keys included) a header may hold: about 15 per tensor, so room for ~500k tensors
 * while the parse tree stays under ~700 MB whatever the file says. */
#define ST_MAX_VALUES (8 << 20)

/* ------------------------------------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    mrw_dtype dt;
} k_dtypes[] = {
    {"F64", MRW_DT_F64}, {"F32", MRW_DT_F32},   {"F16", MRW_DT_F16}, {"BF16", MRW_DT_BF16},
    {"I64", MRW_DT_I64}, {"I32", MRW_DT_I32},   {"I16", MRW_DT_I16}, {"I8", MRW_DT_I8},
    {"U8", MRW_DT_U8},   {"BOOL", MRW_DT_BOOL},
};

/* dtypes the format defines that modrwkv does not read. */
static const char *const k_unsupported[] = {
    "U16", "U32", "U64", "C64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",
};

static const char *st_dtype_name(mrw_dtype dt) {
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (k_dtypes[i].dt == dt) return k_dtypes[i].name;
    return NULL;
}

/* ------------------------------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid (overlong forms, surrogates and code
 * points above U+10FFFF are invalid). */
static size_t utf8_seq(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
}

/* Offset of the first invalid byte, or n if all of s is valid UTF-8. */
static size_t utf8_check(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(s + i, n - i);
        if (!k) return i;
        i += k;
    }
    return n;
}

/* ----------------------------------------------------------------------------------------- reading */

/* A lexical pass over the header before cJSON sees it, for what cJSON would let through: raw control bytes
 * (cJSON treats every byte <= 0x20 as whitespace, NUL included), the escape \u0000 (cJSON's strings are
 * NUL-terminated, so two different names could collapse into one), numbers that are not plain
 * non-negative integer literals (every number in a safetensors header is a shape or an offset, and cJSON
 * would silently round 1.5 or 2^53+1), and too many JSON values (cJSON spends about 80 bytes on each, so
 * 100 MB of "0," would cost gigabytes). */
static mrw_status lex_check(const char *h, size_t n, mrw_error *err) {
    int in_str = 0;
    size_t values = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (in_str) {
            if (c == '"') {
                in_str = 0;
            } else if (c < 0x20) {
                return mrw_err(err, MRW_E_FORMAT,
                               "header byte %zu: raw control character 0x%02x inside a string", i, c);
            } else if (c == '\\') {
                if (i + 5 < n && h[i + 1] == 'u' && !memcmp(h + i + 2, "0000", 4))
                    return mrw_err(err, MRW_E_FORMAT, "header byte %zu: \\u0000 (NUL) in a string", i);
                i++; /* skip the escaped character; cJSON checks the escape itself */
            }
            continue;
        }
        /* strings (keys included), numbers, objects, arrays and the literals true, false, null */
        if (c == '"' || c == '-' || (c >= '0' && c <= '9') || c == '{' || c == '[' || c == 't' || c == 'f' ||
            c == 'n') {
            if (++values > ST_MAX_VALUES)
                return mrw_err(err, MRW_E_LIMIT, "the header holds more than %d JSON values", ST_MAX_VALUES);
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i;
            while (j < n && (h[j] == '-' || h[j] == '+' || h[j] == '.' || h[j] == 'e' || h[j] == 'E' ||
                             (h[j] >= '0' && h[j] <= '9')))
                j++;
            for (size_t k = i; k < j; k++)
                if (h[k] < '0' || h[k] > '9')
                    return mrw_err(
                        err, MRW_E_FORMAT,
                        "header byte %zu: the number '%.*s' is not a non-negative integer (shapes and "
                        "offsets must be)",
                        i, (int)(j - i > 40 ? 40 : j - i), h + i);
            i = j - 1;
        } else if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return mrw_err(err, MRW_E_FORMAT, "header byte %zu: control character 0x%02x", i, c);
        }
    }
    return MRW_OK;
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* cJSON keeps every member of an object, so a repeated key must be found by hand. */
static mrw_status check_duplicates(const cJSON *obj, const char *what, mrw_error *err) {
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) n++;
    if (n < 2) return MRW_OK;
    const char **k = malloc(n * sizeof *k);
    if (!k) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) k[n++] = c->string;
    qsort(k, n, sizeof *k, cmp_cstr);
    mrw_status s = MRW_OK;
    for (size_t i = 1; i < n && s == MRW_OK; i++)
        if (!strcmp(k[i - 1], k[i]))
            s = mrw_err(err, MRW_E_FORMAT, "%s '%s' appears more than once", what, k[i]);
    free(k);
    return s;
}

/* A JSON number that is an exact non-negative integer. */
static int get_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d < ST_EXACT_LIMIT) || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static mrw_status parse_dtype(const cJSON *v, const char *name, mrw_dtype *dt, mrw_error *err) {
    if (!cJSON_IsString(v)) return mrw_err(err, MRW_E_FORMAT, "tensor '%s': dtype is not a string", name);
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (!strcmp(v->valuestring, k_dtypes[i].name)) {
            *dt = k_dtypes[i].dt;
            return MRW_OK;
        }
    for (size_t i = 0; i < sizeof k_unsupported / sizeof k_unsupported[0]; i++)
        if (!strcmp(v->valuestring, k_unsupported[i]))
            return mrw_err(
                err, MRW_E_UNSUPPORTED,
                "tensor '%s' has dtype %s, which modrwkv cannot read (it reads F64, F32, F16, BF16, I64, "
                "I32, I16, I8, U8 and BOOL)",
                name, v->valuestring);
    return mrw_err(err, MRW_E_FORMAT, "tensor '%s' has unknown dtype '%.40s'", name, v->valuestring);
}

/* numel x element size, checked so that it fits in int64 (and so in size_t). A zero dimension makes the
 * tensor empty, but the product of the other dimensions must still fit (mrw_tensor_numel multiplies them
 * all). */
static int byte_size(const mrw_tensor_info *t, size_t *out) {
    uint64_t total = mrw_dtype_block_bytes(t->dtype);
    int zero = 0;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t x = (uint64_t)t->shape[d];
        if (x == 0) {
            zero = 1;
            continue;
        }
        if (total > (uint64_t)INT64_MAX / x) return 0;
        total *= x;
    }
    *out = zero ? 0 : (size_t)total;
    return 1;
}

static mrw_status parse_shape(const cJSON *v, mrw_tensor_info *t, mrw_error *err) {
    if (!cJSON_IsArray(v)) return mrw_err(err, MRW_E_FORMAT, "tensor '%s': shape is not an array", t->name);
    int nd = cJSON_GetArraySize(v);
    if (nd > MRW_MAX_DIMS)
        return mrw_err(err, MRW_E_UNSUPPORTED, "tensor '%s' has %d dimensions; modrwkv handles at most %d",
                       t->name, nd, MRW_MAX_DIMS);
    t->ndim = 0;
    for (const cJSON *d = v->child; d; d = d->next) {
        uint64_t x;
        if (!get_uint(d, &x))
            return mrw_err(err, MRW_E_FORMAT,
                           "tensor '%s': shape[%d] is not a non-negative integer below 2^53", t->name,
                           t->ndim);
        t->shape[t->ndim++] = (int64_t)x;
    }
    if (!byte_size(t, &t->nbytes))
        return mrw_err(err, MRW_E_FORMAT, "tensor '%s': the shape's byte size overflows 64 bits", t->name);
    return MRW_OK;
}

static mrw_status parse_offsets(const cJSON *v, const mrw_tensor_info *t, size_t data_size, uint64_t *begin,
                                mrw_error *err) {
    uint64_t b, e;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !get_uint(v->child, &b) ||
        !get_uint(v->child->next, &e))
        return mrw_err(err, MRW_E_FORMAT, "tensor '%s': data_offsets is not a pair of non-negative integers",
                       t->name);
    if (b > e)
        return mrw_err(err, MRW_E_FORMAT,
                       "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin", t->name,
                       b, e);
    if (e > data_size)
        return mrw_err(err, MRW_E_FORMAT,
                       "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] run past the data block (%zu bytes)",
                       t->name, b, e, data_size);
    if (e - b != t->nbytes)
        return mrw_err(err, MRW_E_FORMAT,
                       "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                       " bytes but a %s tensor of this shape needs %zu",
                       t->name, b, e, e - b, st_dtype_name(t->dtype), t->nbytes);
    *begin = b;
    return MRW_OK;
}

/* Consumers read tensors through typed pointers; offsets the format allows (or an odd memory buffer) can
 * leave a tensor misaligned for its element type. Such a tensor is copied into aligned memory. */
static mrw_status ensure_aligned(mrw_tfile *f, mrw_tensor_info *t, mrw_error *err) {
    size_t a = mrw_dtype_block_bytes(t->dtype);
    if (t->nbytes == 0 || (uintptr_t)t->data % a == 0) return MRW_OK;
    void *p = mrw_tfile_own(f, malloc(t->nbytes));
    if (!p) return mrw_err(err, MRW_E_NOMEM, "out of memory copying misaligned tensor '%s'", t->name);
    memcpy(p, t->data, t->nbytes);
    t->data = p;
    return MRW_OK;
}

static mrw_status parse_tensor(mrw_tfile *f, const cJSON *e, const uint8_t *data, size_t data_size,
                               uint64_t *begin, mrw_error *err) {
    mrw_tensor_info t;
    memset(&t, 0, sizeof t);
    if (!(t.name = mrw_tfile_own(f, strdup(e->string)))) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    if (!cJSON_IsObject(e))
        return mrw_err(err, MRW_E_FORMAT, "tensor '%s': entry is not a JSON object", t.name);
    mrw_status s = check_duplicates(e, "field", err);
    if (s != MRW_OK) {
        mrw_err_prefix(err, "tensor '%s'", t.name);
        return s;
    }
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dtype || !shape || !offs)
        return mrw_err(err, MRW_E_FORMAT, "tensor '%s' lacks %s", t.name,
                       !dtype   ? "a dtype"
                       : !shape ? "a shape"
                                : "data_offsets");
    if ((s = parse_dtype(dtype, t.name, &t.dtype, err)) != MRW_OK) return s;
    if ((s = parse_shape(shape, &t, err)) != MRW_OK) return s;
    if ((s = parse_offsets(offs, &t, data_size, begin, err)) != MRW_OK) return s;
    t.data = data + *begin;
    if ((s = ensure_aligned(f, &t, err)) != MRW_OK) return s;
    if (!mrw_tfile_add_tensor(f, &t)) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    return MRW_OK;
}

static mrw_status parse_metadata(mrw_tfile *f, const cJSON *m, mrw_error *err) {
    if (!cJSON_IsObject(m)) return mrw_err(err, MRW_E_FORMAT, "__metadata__ is not a JSON object");
    mrw_status s = check_duplicates(m, "__metadata__ key", err);
    if (s != MRW_OK) return s;
    for (const cJSON *c = m->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return mrw_err(err, MRW_E_FORMAT, "__metadata__ value of '%s' is not a string", c->string);
        mrw_meta mm;
        memset(&mm, 0, sizeof mm);
        mm.type = MRW_MV_STRING;
        char *v = mrw_tfile_own(f, strdup(c->valuestring));
        if (!v || !(mm.key = mrw_tfile_own(f, strdup(c->string))))
            return mrw_err(err, MRW_E_NOMEM, "out of memory");
        mm.v.s.ptr = v;
        mm.v.s.len = strlen(v);
        if (!mrw_tfile_add_meta(f, &mm)) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    return MRW_OK;
}

typedef struct {
    uint64_t begin, end;
    int idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->idx - y->idx;
}

static mrw_status check_overlap(const mrw_tfile *f, const uint64_t *begin, mrw_error *err) {
    span *s = malloc((f->n_tensors > 0 ? (size_t)f->n_tensors : 1) * sizeof *s);
    if (!s) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    int n = 0;
    for (int i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].nbytes) s[n++] = (span){begin[i], begin[i] + f->tensors[i].nbytes, i};
    qsort(s, (size_t)n, sizeof *s, cmp_span);
    mrw_status st = MRW_OK;
    for (int i = 1; i < n && st == MRW_OK; i++)
        if (s[i].begin < s[i - 1].end)
            st =
                mrw_err(err, MRW_E_FORMAT,
                        "tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64 ") overlap",
                        f->tensors[s[i - 1].idx].name, s[i - 1].begin, s[i - 1].end,
                        f->tensors[s[i].idx].name, s[i].begin, s[i].end);
    free(s);
    return st;
}

static mrw_status parse_entries(mrw_tfile *f, const cJSON *root, const uint8_t *data, size_t data_size,
                                mrw_error *err) {
    int n = cJSON_GetArraySize(root);
    uint64_t *begin = malloc((size_t)(n ? n : 1) * sizeof *begin);
    if (!begin) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    mrw_status s = MRW_OK;
    for (const cJSON *e = root->child; e && s == MRW_OK; e = e->next) {
        if (!strcmp(e->string, "__metadata__"))
            s = parse_metadata(f, e, err);
        else
            s = parse_tensor(f, e, data, data_size, &begin[f->n_tensors], err);
    }
    if (s == MRW_OK) s = check_overlap(f, begin, err);
    free(begin);
    return s;
}

static mrw_status parse_header(mrw_tfile *f, const char *h, size_t n, size_t data_off, mrw_error *err) {
    size_t bad = utf8_check((const uint8_t *)h, n);
    if (bad < n) return mrw_err(err, MRW_E_FORMAT, "the header is not valid UTF-8 (byte %zu of %zu)", bad, n);
    mrw_status s = lex_check(h, n, err);
    if (s != MRW_OK) return s;
    /* cJSON may read a few bytes past the length it is given (on \u escapes and at the end); a private,
     * zero-padded copy keeps those reads inside our allocation. */
    char *buf = calloc(1, n + 16);
    if (!buf) return mrw_err(err, MRW_E_NOMEM, "out of memory for a %zu-byte header", n);
    memcpy(buf, h, n);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, n, &end, 0);
    if (!root) {
        size_t at = end && end >= buf && end <= buf + n ? (size_t)(end - buf) : 0;
        s = mrw_err(err, MRW_E_FORMAT, "the header is not valid JSON (near byte %zu: '%.24s')", at, buf + at);
    } else {
        for (size_t i = (size_t)(end - buf); i < n && s == MRW_OK; i++)
            if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n' && buf[i] != '\r')
                s = mrw_err(err, MRW_E_FORMAT, "the header has data after its JSON object (byte %zu)", i);
        if (s == MRW_OK && !cJSON_IsObject(root))
            s = mrw_err(err, MRW_E_FORMAT, "the header is not a JSON object");
        if (s == MRW_OK) s = check_duplicates(root, "name", err);
        if (s == MRW_OK) s = parse_entries(f, root, f->map.data + data_off, f->map.size - data_off, err);
    }
    cJSON_Delete(root);
    free(buf);
    return s;
}

static mrw_status st_parse(mrw_tfile *f, mrw_error *err) {
    const uint8_t *d = f->map.data;
    size_t size = f->map.size;
    if (size < 8)
        return mrw_err(err, MRW_E_FORMAT, "truncated: %zu bytes, too short for the 8-byte header length",
                       size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | d[i];
    if (n > ST_MAX_HEADER)
        return mrw_err(err, MRW_E_LIMIT, "the header length %" PRIu64 " exceeds the 100 MB limit", n);
    if (n > size - 8)
        return mrw_err(err, MRW_E_FORMAT,
                       "truncated: the header length %" PRIu64 " runs past the end of the file "
                       "(%zu bytes)",
                       n, size);
    if (n < 2) return mrw_err(err, MRW_E_FORMAT, "a %" PRIu64 "-byte header cannot hold a JSON object", n);
    mrw_status s = parse_header(f, (const char *)d + 8, (size_t)n, 8 + (size_t)n, err);
    if (s == MRW_OK) s = mrw_tfile_finish(f, err);
    return s;
}

static mrw_status st_parse_file(mrw_tfile *f, const char *path, mrw_error *err) {
    mrw_status s = st_parse(f, err);
    if (s != MRW_OK && path && err) mrw_err_prefix(err, "%s", path);
    return s;
}

mrw_status mrw_safetensors_open_mem(const void *buf, size_t len, mrw_tfile **out, mrw_error *err) {
    return mrw_tfile_open_buffer(MRW_FMT_SAFETENSORS, buf, len, st_parse_file, out, err);
}

mrw_status mrw_safetensors_open(const char *path, mrw_tfile **out, mrw_error *err) {
    return mrw_tfile_open_file(MRW_FMT_SAFETENSORS, path, st_parse_file, out, err);
}

/* ------------------------------------------------------------------------------------------ writing */

/* A growable text buffer for the JSON header. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal; the text is known to be valid UTF-8 without NUL bytes. */
static void sb_json_str(sbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        sb_put(b, s + run, i - run);
        char e[8];
        if (c == '"' || c == '\\')
            snprintf(e, sizeof e, "\\%c", c);
        else if (c == '\n')
            snprintf(e, sizeof e, "\\n");
        else if (c == '\t')
            snprintf(e, sizeof e, "\\t");
        else if (c == '\r')
            snprintf(e, sizeof e, "\\r");
        else
            snprintf(e, sizeof e, "\\u%04x", c);
        sb_str(b, e);
        run = i + 1;
    }
    sb_put(b, s + run, n - run);
    sb_put(b, "\"", 1);
}

static void sb_u64(sbuf *b, uint64_t v) {
    char t[24];
    snprintf(t, sizeof t, "%" PRIu64, v);
    sb_str(b, t);
}

static mrw_status check_text(const char *s, size_t n, const char *what, const char *name, mrw_error *err) {
    if (memchr(s, 0, n))
        return mrw_err(err, MRW_E_ARG,
                       "%s '%.60s' contains a NUL byte, which safetensors readers cannot represent", what,
                       name);
    if (utf8_check((const uint8_t *)s, n) < n)
        return mrw_err(err, MRW_E_ARG, "%s '%.60s' is not valid UTF-8", what, name);
    return MRW_OK;
}

static mrw_status check_tensor(const mrw_tensor_info *t, int i, mrw_error *err) {
    if (!t->name) return mrw_err(err, MRW_E_ARG, "tensor %d has no name", i);
    mrw_status s = check_text(t->name, strlen(t->name), "tensor name", t->name, err);
    if (s != MRW_OK) return s;
    if (!strcmp(t->name, "__metadata__"))
        return mrw_err(err, MRW_E_ARG, "a tensor cannot be named __metadata__ in safetensors");
    if (t->dtype == MRW_DT_Q8_0 || t->dtype == MRW_DT_Q4_0)
        return mrw_err(err, MRW_E_UNSUPPORTED, "safetensors cannot hold %s; write GGUF (tensor '%s')",
                       mrw_dtype_name(t->dtype), t->name);
    if (!st_dtype_name(t->dtype))
        return mrw_err(err, MRW_E_ARG, "tensor '%s' has an invalid dtype %d", t->name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > MRW_MAX_DIMS)
        return mrw_err(err, MRW_E_ARG, "tensor '%s' has %d dimensions", t->name, t->ndim);
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0) return mrw_err(err, MRW_E_ARG, "tensor '%s' has a negative dimension", t->name);
        /* Shapes are written as JSON numbers, which readers parse as doubles. */
        if ((uint64_t)t->shape[d] >= (uint64_t)ST_EXACT_LIMIT)
            return mrw_err(err, MRW_E_ARG, "tensor '%s': dimension %" PRId64 " is too large", t->name,
                           t->shape[d]);
    }
    size_t bytes;
    if (!byte_size(t, &bytes)) return mrw_err(err, MRW_E_ARG, "tensor '%s': size overflows", t->name);
    if (bytes != t->nbytes)
        return mrw_err(err, MRW_E_ARG, "tensor '%s': %zu bytes given, but its %s shape needs %zu", t->name,
                       t->nbytes, mrw_dtype_name(t->dtype), bytes);
    if (bytes && !t->data) return mrw_err(err, MRW_E_ARG, "tensor '%s' has no data", t->name);
    return MRW_OK;
}

static mrw_status check_meta(const mrw_meta *m, int i, mrw_error *err) {
    if (!m->key) return mrw_err(err, MRW_E_ARG, "metadata entry %d has no key", i);
    if (m->type != MRW_MV_STRING)
        return mrw_err(err, MRW_E_UNSUPPORTED,
                       "safetensors metadata are strings; '%s' is not (write GGUF to keep "
                       "typed metadata)",
                       m->key);
    if (!m->v.s.ptr && m->v.s.len) return mrw_err(err, MRW_E_ARG, "metadata '%s': NULL string", m->key);
    mrw_status s = check_text(m->key, strlen(m->key), "metadata key", m->key, err);
    if (s == MRW_OK && m->v.s.len)
        s = check_text(m->v.s.ptr, m->v.s.len, "the value of metadata", m->key, err);
    return s;
}

static mrw_status check_unique(const char **names, size_t n, const char *what, mrw_error *err) {
    if (n < 2) return MRW_OK;
    qsort(names, n, sizeof *names, cmp_cstr);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i]))
            return mrw_err(err, MRW_E_ARG, "%s '%s' appears more than once", what, names[i]);
    return MRW_OK;
}

static mrw_status check_all(const mrw_tensor_info *tensors, int n, const mrw_meta *meta, int n_meta,
                            mrw_error *err) {
    if (n < 0 || n_meta < 0 || (n && !tensors) || (n_meta && !meta))
        return mrw_err(err, MRW_E_ARG, "invalid tensor or metadata list");
    mrw_status s = MRW_OK;
    for (int i = 0; i < n && s == MRW_OK; i++) s = check_tensor(&tensors[i], i, err);
    for (int i = 0; i < n_meta && s == MRW_OK; i++) s = check_meta(&meta[i], i, err);
    if (s != MRW_OK) return s;
    int cap = n > n_meta ? n : n_meta;
    const char **names = malloc((size_t)(cap ? cap : 1) * sizeof *names);
    if (!names) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) names[i] = tensors[i].name;
    s = check_unique(names, (size_t)n, "tensor name", err);
    for (int i = 0; i < n_meta; i++) names[i] = meta[i].key;
    if (s == MRW_OK) s = check_unique(names, (size_t)n_meta, "metadata key", err);
    free(names);
    return s;
}

/* Data placement. The reference reader accepts no gaps in the data block, so alignment cannot come from
 * padding; it comes from the order instead. Tensors whose size is a multiple of 8 go first, in the given
 * order (every real weight matrix: all of them then start 8-byte aligned); the rest follow by decreasing
 * element size, which keeps each of them aligned to its own element size. */
static int place_rank(const mrw_tensor_info *t) {
    if (t->nbytes % 8 == 0) return 0;
    return 9 - (int)mrw_dtype_block_bytes(t->dtype); /* 4-byte elements (5) before 2 (7) before 1 (8) */
}

static uint64_t *place(const mrw_tensor_info *tensors, int n, int **order_out) {
    uint64_t *begin = malloc((size_t)(n ? n : 1) * sizeof *begin);
    int *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!begin || !order) {
        free(begin);
        free(order);
        return NULL;
    }
    int k = 0;
    for (int rank = 0; rank <= 8; rank++)
        for (int i = 0; i < n; i++)
            if (place_rank(&tensors[i]) == rank) order[k++] = i;
    uint64_t off = 0;
    for (int j = 0; j < n; j++) {
        begin[order[j]] = off;
        off += tensors[order[j]].nbytes;
    }
    *order_out = order;
    return begin;
}

static void build_header(sbuf *b, const mrw_tensor_info *tensors, int n, const uint64_t *begin,
                         const mrw_meta *meta, int n_meta) {
    sb_str(b, "{");
    if (n_meta) {
        sb_str(b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_str(b, ",");
            sb_json_str(b, meta[i].key, strlen(meta[i].key));
            sb_str(b, ":");
            sb_json_str(b, meta[i].v.s.len ? meta[i].v.s.ptr : "", meta[i].v.s.len);
        }
        sb_str(b, "}");
    }
    for (int i = 0; i < n; i++) {
        const mrw_tensor_info *t = &tensors[i];
        if (i || n_meta) sb_str(b, ",");
        sb_json_str(b, t->name, strlen(t->name));
        sb_str(b, ":{\"dtype\":\"");
        sb_str(b, st_dtype_name(t->dtype));
        sb_str(b, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) sb_str(b, ",");
            sb_u64(b, (uint64_t)t->shape[d]);
        }
        sb_str(b, "],\"data_offsets\":[");
        sb_u64(b, begin[i]);
        sb_str(b, ",");
        sb_u64(b, begin[i] + t->nbytes);
        sb_str(b, "]}");
    }
    sb_str(b, "}");
    /* Spaces up to a multiple of 8 so that the data block (after the 8-byte length) starts 8-byte aligned. */
    while (!b->oom && b->n % 8) sb_str(b, " ");
}

static mrw_status write_file(const char *path, const mrw_tensor_info *tensors, const int *order, int n,
                             const sbuf *hdr, mrw_progress_fn progress, void *user, mrw_error *err) {
    uint64_t total = 8 + hdr->n, done = 0;
    for (int i = 0; i < n; i++) total += tensors[i].nbytes;
    mrw_afile af;
    mrw_status s = mrw_afile_open(&af, path, err);
    if (s != MRW_OK) return s;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)hdr->n >> (8 * i));
    mrw_afile_write(&af, len, 8);
    mrw_afile_write(&af, hdr->p, hdr->n);
    done = 8 + hdr->n;
    if (progress) progress(user, done, total);
    for (int j = 0; j < n; j++) {
        const mrw_tensor_info *t = &tensors[order[j]];
        const uint8_t *p = t->data;
        for (size_t left = t->nbytes; left > 0;) {
            size_t k = left < ST_WRITE_CHUNK ? left : ST_WRITE_CHUNK;
            mrw_afile_write(&af, p, k);
            p += k;
            left -= k;
            done += k;
            if (progress) progress(user, done, total);
        }
    }
    return mrw_afile_commit(&af, err);
}

mrw_status mrw_safetensors_write(const char *path, const mrw_tensor_info *tensors, int n,
                                 const mrw_meta *meta, int n_meta, mrw_progress_fn progress, void *user,
                                 mrw_error *err) {
    mrw_status s = check_all(tensors, n, meta, n_meta, err);
    if (s != MRW_OK) {
        mrw_err_prefix(err, "%s", path);
        return s;
    }
    int *order = NULL;
    uint64_t *begin = place(tensors, n, &order);
    if (!begin) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    sbuf hdr = {0};
    build_header(&hdr, tensors, n, begin, meta, n_meta);
    if (hdr.oom)
        s = mrw_err(err, MRW_E_NOMEM, "out of memory building the header");
    else if (hdr.n > ST_MAX_HEADER)
        s = mrw_err(err, MRW_E_LIMIT, "%s: the header would exceed 100 MB", path);
    else
        s = write_file(path, tensors, order, n, &hdr, progress, user, err);
    free(hdr.p);
    free(begin);
    free(order);
    return s;
}
