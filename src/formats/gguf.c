/* GGUF (llama.cpp's weight format), versions 2 and 3, little-endian.
 *
 * Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count; the metadata as key/type/value triples
 * (strings are u64 length + bytes, arrays are u32 element type + u64 count + elements); the tensor infos
 * (name, u32 n_dims, u64 dims fastest-first, u32 ggml type, u64 offset into the data section); zero padding
 * to `general.alignment` (default 32); the data section, each tensor at an aligned offset.
 *
 * The reader trusts nothing: every length and count is checked against the bytes that remain before it is
 * used, so a hostile file yields an error naming what is wrong and where, never an out-of-bounds read.
 * Tensors and metadata strings point into the mapping (zero copy). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "formats/tfile_impl.h"
#include "tensor/dtype.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_N_VALUE_TYPES 13
#define GGUF_WRITE_CHUNK ((size_t)64 << 20) /* progress granularity for large tensors */

/* ------------------------------------------------------------------------------------------ ggml types */

/* Names of ggml tensor types, for messages about the ones modrwkv cannot read. */
/* clang-format off */
static const char *const k_ggml_names[] = {
    [0] = "F32",      [1] = "F16",      [2] = "Q4_0",     [3] = "Q4_1",    [4] = "Q4_2 (removed)",
    [5] = "Q4_3 (removed)",             [6] = "Q5_0",     [7] = "Q5_1",    [8] = "Q8_0",
    [9] = "Q8_1",     [10] = "Q2_K",    [11] = "Q3_K",    [12] = "Q4_K",   [13] = "Q5_K",
    [14] = "Q6_K",    [15] = "Q8_K",    [16] = "IQ2_XXS", [17] = "IQ2_XS", [18] = "IQ3_XXS",
    [19] = "IQ1_S",   [20] = "IQ4_NL",  [21] = "IQ3_S",   [22] = "IQ2_S",  [23] = "IQ4_XS",
    [24] = "I8",      [25] = "I16",     [26] = "I32",     [27] = "I64",    [28] = "F64",
    [29] = "IQ1_M",   [30] = "BF16",    [31] = "Q4_0_4_4 (removed)",       [32] = "Q4_0_4_8 (removed)",
    [33] = "Q4_0_8_8 (removed)",        [34] = "TQ1_0",   [35] = "TQ2_0",  [36] = "IQ4_NL_4_4 (removed)",
    [37] = "IQ4_NL_4_8 (removed)",      [38] = "IQ4_NL_8_8 (removed)",     [39] = "MXFP4",
    [40] = "NVFP4",   [41] = "Q1_0",
};
/* clang-format on */

static const char *ggml_type_name(uint32_t t) {
    size_t n = sizeof k_ggml_names / sizeof k_ggml_names[0];
    return t < n && k_ggml_names[t] ? k_ggml_names[t] : "an unknown type";
}

/* The ggml types modrwkv reads, and the dtype each becomes. */
static const struct {
    uint32_t ggml;
    mrw_dtype dt;
} k_types[] = {
    {0, MRW_DT_F32}, {1, MRW_DT_F16},  {2, MRW_DT_Q4_0}, {8, MRW_DT_Q8_0}, {30, MRW_DT_BF16},
    {24, MRW_DT_I8}, {25, MRW_DT_I16}, {26, MRW_DT_I32}, {27, MRW_DT_I64}, {28, MRW_DT_F64},
};

static int ggml_to_dtype(uint32_t g, mrw_dtype *out) {
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (k_types[i].ggml == g) {
            *out = k_types[i].dt;
            return 1;
        }
    return 0;
}

static int dtype_to_ggml(mrw_dtype dt, uint32_t *out) {
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (k_types[i].dt == dt) {
            *out = k_types[i].ggml;
            return 1;
        }
    return 0;
}

/* ------------------------------------------------------------------------------------- metadata types */

static size_t mv_size(mrw_meta_type t) {
    switch (t) {
    case MRW_MV_U8:
    case MRW_MV_I8:
    case MRW_MV_BOOL: return 1;
    case MRW_MV_U16:
    case MRW_MV_I16: return 2;
    case MRW_MV_U32:
    case MRW_MV_I32:
    case MRW_MV_F32: return 4;
    case MRW_MV_U64:
    case MRW_MV_I64:
    case MRW_MV_F64: return 8;
    default: return 0; /* STRING, ARRAY: variable */
    }
}

static const char *mv_name(uint32_t t) {
    static const char *const names[GGUF_N_VALUE_TYPES] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
    };
    return t < GGUF_N_VALUE_TYPES ? names[t] : "?";
}

/* ----------------------------------------------------------------------------------------- byte order */

static uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t ld32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32; }

/* ------------------------------------------------------------------------------------------- reading */

typedef struct {
    const uint8_t *d;
    size_t size, pos;
} cursor;

static int has(const cursor *c, uint64_t n) { return n <= c->size - c->pos; }

static int get_u32(cursor *c, uint32_t *v) {
    if (!has(c, 4)) return 0;
    *v = ld32(c->d + c->pos);
    c->pos += 4;
    return 1;
}

static int get_u64(cursor *c, uint64_t *v) {
    if (!has(c, 8)) return 0;
    *v = ld64(c->d + c->pos);
    c->pos += 8;
    return 1;
}

/* A string: u64 length, then that many bytes (not NUL-terminated). */
static int get_str(cursor *c, mrw_str *s) {
    uint64_t n;
    size_t at = c->pos;
    if (!get_u64(c, &n) || !has(c, n)) {
        c->pos = at;
        return 0;
    }
    s->ptr = (const char *)c->d + c->pos;
    s->len = (size_t)n;
    c->pos += (size_t)n;
    return 1;
}

static mrw_status truncated(mrw_error *err, const cursor *c, const char *what) {
    return mrw_err(err, MRW_E_FORMAT, "truncated: %s at offset %zu runs past the end of the file (%zu bytes)",
                   what, c->pos, c->size);
}

/* Keys and tensor names become C strings, so an embedded NUL would silently shorten them. */
static char *own_cstr(mrw_tfile *f, mrw_str s) {
    if (memchr(s.ptr, 0, s.len)) return NULL;
    char *p = malloc(s.len + 1);
    if (!p) return NULL;
    memcpy(p, s.ptr, s.len);
    p[s.len] = 0;
    return mrw_tfile_own(f, p);
}

static mrw_status name_error(mrw_error *err, mrw_str s, const char *what, size_t at) {
    if (memchr(s.ptr, 0, s.len))
        return mrw_err(err, MRW_E_FORMAT, "%s at offset %zu contains a NUL byte", what, at);
    return mrw_err(err, MRW_E_NOMEM, "out of memory");
}

/* Decodes one scalar value of type t at p into m. */
static void decode_scalar(mrw_meta *m, mrw_meta_type t, const uint8_t *p) {
    switch (t) {
    case MRW_MV_U8:
    case MRW_MV_BOOL: m->v.i = p[0]; break;
    case MRW_MV_I8: m->v.i = (int8_t)p[0]; break;
    case MRW_MV_U16: m->v.i = ld16(p); break;
    case MRW_MV_I16: m->v.i = (int16_t)ld16(p); break;
    case MRW_MV_U32: m->v.i = ld32(p); break;
    case MRW_MV_I32: m->v.i = (int32_t)ld32(p); break;
    case MRW_MV_U64: m->v.u = ld64(p); break;
    case MRW_MV_I64: m->v.i = (int64_t)ld64(p); break;
    case MRW_MV_F32: {
        uint32_t u = ld32(p);
        float x;
        memcpy(&x, &u, 4);
        m->v.f = x;
    } break;
    case MRW_MV_F64: {
        uint64_t u = ld64(p);
        memcpy(&m->v.f, &u, 8);
    } break;
    default: break;
    }
}

static mrw_status read_array(cursor *c, mrw_tfile *f, mrw_meta *m, mrw_error *err) {
    uint32_t et;
    uint64_t count;
    if (!get_u32(c, &et)) return truncated(err, c, "the element type of array metadata");
    if (!get_u64(c, &count)) return truncated(err, c, "the element count of array metadata");
    if (et == MRW_MV_ARRAY)
        return mrw_err(err, MRW_E_UNSUPPORTED,
                       "metadata '%s' is an array of arrays, which modrwkv does not read", m->key);
    if (et >= GGUF_N_VALUE_TYPES)
        return mrw_err(err, MRW_E_FORMAT, "metadata '%s' is an array of unknown value type %" PRIu32, m->key,
                       et);
    m->elem_type = (mrw_meta_type)et;
    m->count = count;
    size_t remain = c->size - c->pos;
    if (et != MRW_MV_STRING) {
        size_t es = mv_size(m->elem_type);
        if (count > remain / es)
            return mrw_err(err, MRW_E_FORMAT,
                           "metadata '%s': %" PRIu64
                           " elements of %s at offset %zu run past the end of the file",
                           m->key, count, mv_name(et), c->pos);
        m->nums = c->d + c->pos;
        if (et == MRW_MV_BOOL)
            for (uint64_t i = 0; i < count; i++)
                if (c->d[c->pos + i] > 1)
                    return mrw_err(err, MRW_E_FORMAT,
                                   "metadata '%s': bool element %" PRIu64 " is %u, not 0 or 1", m->key, i,
                                   c->d[c->pos + i]);
        c->pos += (size_t)(count * es);
        return MRW_OK;
    }
    /* Every string takes at least its 8-byte length: bounds the allocation by the file size. */
    if (count > remain / 8)
        return mrw_err(err, MRW_E_FORMAT,
                       "metadata '%s' claims %" PRIu64 " strings but only %zu bytes remain at offset %zu",
                       m->key, count, remain, c->pos);
    if (count == 0) return MRW_OK;
    m->strs = mrw_tfile_own(f, malloc((size_t)count * sizeof *m->strs));
    if (!m->strs) return mrw_err(err, MRW_E_NOMEM, "out of memory for %" PRIu64 " strings", count);
    for (uint64_t i = 0; i < count; i++)
        if (!get_str(c, &m->strs[i]))
            return mrw_err(err, MRW_E_FORMAT,
                           "truncated: metadata '%s' string %" PRIu64 " of %" PRIu64
                           " at offset %zu runs past the end of the file (%zu bytes)",
                           m->key, i, count, c->pos, c->size);
    return MRW_OK;
}

static mrw_status read_kv(cursor *c, mrw_tfile *f, uint64_t idx, uint64_t n_kv, mrw_error *err) {
    char what[96];
    mrw_meta m;
    memset(&m, 0, sizeof m);
    mrw_str key;
    size_t at = c->pos;
    snprintf(what, sizeof what, "the key of metadata entry %" PRIu64 " of %" PRIu64, idx, n_kv);
    if (!get_str(c, &key)) return truncated(err, c, what);
    if (!(m.key = own_cstr(f, key))) return name_error(err, key, "a metadata key", at);
    uint32_t type;
    if (!get_u32(c, &type)) return truncated(err, c, "a metadata value type");
    if (type >= GGUF_N_VALUE_TYPES)
        return mrw_err(err, MRW_E_FORMAT, "metadata '%s' has unknown value type %" PRIu32 " (offset %zu)",
                       m.key, type, c->pos - 4);
    m.type = (mrw_meta_type)type;
    mrw_status s = MRW_OK;
    if (m.type == MRW_MV_STRING) {
        if (!get_str(c, &m.v.s)) {
            snprintf(what, sizeof what, "the string value of metadata '%.60s'", m.key);
            return truncated(err, c, what);
        }
    } else if (m.type == MRW_MV_ARRAY) {
        s = read_array(c, f, &m, err);
    } else {
        size_t n = mv_size(m.type);
        if (!has(c, n)) {
            snprintf(what, sizeof what, "the %s value of metadata '%.60s'", mv_name(type), m.key);
            return truncated(err, c, what);
        }
        decode_scalar(&m, m.type, c->d + c->pos);
        if (m.type == MRW_MV_BOOL && m.v.i > 1)
            return mrw_err(err, MRW_E_FORMAT, "metadata '%s': bool value is %" PRId64 ", not 0 or 1", m.key,
                           m.v.i);
        c->pos += n;
    }
    if (s != MRW_OK) return s;
    if (!mrw_tfile_add_meta(f, &m)) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    return MRW_OK;
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts a copy of the names and reports the first one that appears twice (NULL if none). */
static const char *find_duplicate(const char **names, size_t n, int *nomem) {
    *nomem = 0;
    if (n < 2) return NULL;
    const char **s = malloc(n * sizeof *s);
    if (!s) {
        *nomem = 1;
        return NULL;
    }
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_cstr);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(s[i - 1], s[i])) dup = s[i];
    free(s);
    return dup;
}

static mrw_status check_duplicate_keys(mrw_tfile *f, mrw_error *err) {
    if (f->n_meta < 2) return MRW_OK;
    const char **keys = malloc((size_t)f->n_meta * sizeof *keys);
    if (!keys) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    for (int i = 0; i < f->n_meta; i++) keys[i] = f->meta[i].key;
    int nomem;
    const char *dup = find_duplicate(keys, (size_t)f->n_meta, &nomem);
    free(keys);
    if (nomem) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    if (dup) return mrw_err(err, MRW_E_FORMAT, "metadata key '%s' appears more than once", dup);
    return MRW_OK;
}

static mrw_status read_alignment(const mrw_tfile *f, uint64_t *align, mrw_error *err) {
    *align = GGUF_DEFAULT_ALIGNMENT;
    const mrw_meta *m = mrw_tfile_find_meta(f, "general.alignment");
    if (!m) return MRW_OK;
    /* The GGUF specification, llama.cpp and gguf-py all insist on u32 here. */
    if (m->type != MRW_MV_U32)
        return mrw_err(err, MRW_E_FORMAT, "general.alignment is a %s; GGUF requires a u32", mv_name(m->type));
    uint64_t a = (uint64_t)m->v.i;
    if (a == 0 || (a & (a - 1)))
        return mrw_err(err, MRW_E_FORMAT, "general.alignment is %" PRIu64 ", not a power of two", a);
    *align = a;
    return MRW_OK;
}

/* Bytes of a tensor of ggml-ordered dims ne[0..n) (ne[0] fastest); 0 with *why set if impossible. */
static int tensor_bytes(mrw_dtype dt, const uint64_t *ne, uint32_t n, size_t *bytes, const char **why) {
    int be = mrw_dtype_block_elems(dt);
    uint64_t numel = 1;
    int zero = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (ne[i] > (uint64_t)INT64_MAX) {
            *why = "has a dimension larger than 2^63";
            return 0;
        }
        if (ne[i] == 0) zero = 1;
    }
    if (be > 1 && n == 0) {
        *why = "is a scalar, but a block type needs rows of 32 elements";
        return 0;
    }
    if (n > 0 && ne[0] % (uint64_t)be) {
        *why = "has rows that are not a whole number of 32-element blocks";
        return 0;
    }
    /* Checked product of the non-zero dimensions: even an empty tensor must have a shape whose product
     * can be computed in int64 (mrw_tensor_numel multiplies them all). */
    for (uint32_t i = 0; i < n; i++) {
        if (ne[i] == 0) continue;
        if (numel > (uint64_t)INT64_MAX / ne[i]) {
            *why = "has dimensions whose product exceeds 2^63";
            return 0;
        }
        numel *= ne[i];
    }
    if (zero) {
        *bytes = 0;
        return 1;
    }
    uint64_t blocks = numel / (uint64_t)be, bb = mrw_dtype_block_bytes(dt);
    if (blocks > (uint64_t)SIZE_MAX / bb) {
        *why = "is larger than the address space";
        return 0;
    }
    *bytes = (size_t)(blocks * bb);
    return 1;
}

static mrw_status read_tensor_info(cursor *c, mrw_tfile *f, uint64_t idx, uint64_t n_tensors,
                                   uint64_t *offset, mrw_error *err) {
    char what[96];
    mrw_tensor_info t;
    memset(&t, 0, sizeof t);
    mrw_str name;
    size_t at = c->pos;
    snprintf(what, sizeof what, "the name of tensor info %" PRIu64 " of %" PRIu64, idx, n_tensors);
    if (!get_str(c, &name)) return truncated(err, c, what);
    if (!(t.name = own_cstr(f, name))) return name_error(err, name, "a tensor name", at);
    snprintf(what, sizeof what, "the tensor info of '%.60s'", t.name);
    uint32_t n_dims, type;
    if (!get_u32(c, &n_dims)) return truncated(err, c, what);
    if (n_dims > GGUF_MAX_DIMS)
        return mrw_err(err, MRW_E_FORMAT, "tensor '%s' has %" PRIu32 " dimensions; GGUF allows at most %d",
                       t.name, n_dims, GGUF_MAX_DIMS);
    uint64_t ne[GGUF_MAX_DIMS];
    for (uint32_t i = 0; i < n_dims; i++)
        if (!get_u64(c, &ne[i])) return truncated(err, c, what);
    if (!get_u32(c, &type) || !get_u64(c, offset)) return truncated(err, c, what);
    if (!ggml_to_dtype(type, &t.dtype))
        return mrw_err(err, MRW_E_UNSUPPORTED,
                       "tensor %s is %s (ggml type %" PRIu32 "), which modrwkv cannot read; "
                       "re-quantize to q8_0 or q4_0",
                       t.name, ggml_type_name(type), type);
    const char *why = NULL;
    if (!tensor_bytes(t.dtype, ne, n_dims, &t.nbytes, &why))
        return mrw_err(err, MRW_E_FORMAT, "tensor '%s' (%s) %s", t.name, mrw_dtype_name(t.dtype), why);
    t.ndim = (int)n_dims;
    for (uint32_t i = 0; i < n_dims; i++) t.shape[i] = (int64_t)ne[n_dims - 1 - i];
    if (!mrw_tfile_add_tensor(f, &t)) return mrw_err(err, MRW_E_NOMEM, "out of memory");
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

/* Two tensors sharing bytes would let a writer through one corrupt the other; llama.cpp refuses it too. */
static mrw_status check_overlap(const mrw_tfile *f, const uint64_t *off, mrw_error *err) {
    span *s = malloc((f->n_tensors > 0 ? (size_t)f->n_tensors : 1) * sizeof *s);
    if (!s) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    int n = 0;
    for (int i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].nbytes) s[n++] = (span){off[i], off[i] + f->tensors[i].nbytes, i};
    qsort(s, (size_t)n, sizeof *s, cmp_span);
    for (int i = 1; i < n; i++)
        if (s[i].begin < s[i - 1].end) {
            const mrw_tensor_info *a = &f->tensors[s[i - 1].idx], *b = &f->tensors[s[i].idx];
            mrw_status st = mrw_err(err, MRW_E_FORMAT,
                                    "tensors '%s' (data bytes %" PRIu64 "..%" PRIu64 ") and '%s' (%" PRIu64
                                    "..%" PRIu64 ") overlap",
                                    a->name, s[i - 1].begin, s[i - 1].end, b->name, s[i].begin, s[i].end);
            free(s);
            return st;
        }
    free(s);
    return MRW_OK;
}

/* Consumers read tensors through typed pointers. A small general.alignment or an odd memory buffer can leave
 * a tensor misaligned for its element type; such a tensor is copied into aligned memory instead. */
static mrw_status ensure_aligned(mrw_tfile *f, mrw_tensor_info *t, mrw_error *err) {
    size_t a = mrw_dtype_is_quant(t->dtype) ? 2 : mrw_dtype_block_bytes(t->dtype);
    if (t->nbytes == 0 || (uintptr_t)t->data % a == 0) return MRW_OK;
    void *p = mrw_tfile_own(f, malloc(t->nbytes));
    if (!p) return mrw_err(err, MRW_E_NOMEM, "out of memory copying misaligned tensor '%s'", t->name);
    memcpy(p, t->data, t->nbytes);
    t->data = p;
    return MRW_OK;
}

static mrw_status place_tensors(mrw_tfile *f, const cursor *c, const uint64_t *off, uint64_t align,
                                mrw_error *err) {
    /* The data section starts at the first aligned offset after the tensor infos. */
    uint64_t start = ((uint64_t)c->pos + align - 1) / align * align;
    if (start > c->size)
        return mrw_err(err, MRW_E_FORMAT,
                       "truncated: the data section should start at offset %" PRIu64
                       " but the file has %zu bytes",
                       start, c->size);
    uint64_t avail = c->size - start;
    for (int i = 0; i < f->n_tensors; i++) {
        mrw_tensor_info *t = &f->tensors[i];
        if (off[i] % align)
            return mrw_err(err, MRW_E_FORMAT,
                           "tensor '%s' has offset %" PRIu64 ", not a multiple of the alignment %" PRIu64,
                           t->name, off[i], align);
        if (off[i] > avail || t->nbytes > avail - off[i])
            return mrw_err(err, MRW_E_FORMAT,
                           "tensor '%s' needs data bytes %" PRIu64 "..%" PRIu64
                           " (%zu bytes) but the data section "
                           "has %" PRIu64 " bytes",
                           t->name, off[i], off[i] + (uint64_t)t->nbytes, t->nbytes, avail);
        t->data = c->d + start + off[i];
    }
    mrw_status s = check_overlap(f, off, err);
    for (int i = 0; i < f->n_tensors && s == MRW_OK; i++) s = ensure_aligned(f, &f->tensors[i], err);
    return s;
}

static mrw_status read_header(cursor *c, uint64_t *n_tensors, uint64_t *n_kv, mrw_error *err) {
    if (c->size < 4 || memcmp(c->d, "GGUF", 4))
        return mrw_err(err, MRW_E_FORMAT, "not a GGUF file (it does not start with \"GGUF\")");
    c->pos = 4;
    uint32_t version;
    if (!get_u32(c, &version)) return truncated(err, c, "the version");
    if (version == 1)
        return mrw_err(err, MRW_E_UNSUPPORTED,
                       "GGUF version 1 is not supported; convert the file with a current "
                       "llama.cpp");
    if (version != 2 && version != 3) {
        uint32_t sw = __builtin_bswap32(version);
        if (sw >= 1 && sw <= 3)
            return mrw_err(err, MRW_E_UNSUPPORTED, "big-endian GGUF (version %" PRIu32 ") is not supported",
                           sw);
        return mrw_err(err, MRW_E_UNSUPPORTED, "unknown GGUF version %" PRIu32 " (modrwkv reads 2 and 3)",
                       version);
    }
    if (!get_u64(c, n_tensors)) return truncated(err, c, "the tensor count");
    if (!get_u64(c, n_kv)) return truncated(err, c, "the metadata count");
    /* A metadata entry takes at least 13 bytes (key length, type, one-byte value), a tensor info at least
     * 24 (name length, n_dims, type, offset): counts beyond that cannot be honest. */
    size_t remain = c->size - c->pos;
    if (*n_kv > remain / 13)
        return mrw_err(err, MRW_E_FORMAT,
                       "the header claims %" PRIu64 " metadata entries but only %zu bytes follow", *n_kv,
                       remain);
    if (*n_tensors > remain / 24)
        return mrw_err(err, MRW_E_FORMAT, "the header claims %" PRIu64 " tensors but only %zu bytes follow",
                       *n_tensors, remain);
    if (*n_tensors > (uint64_t)INT32_MAX || *n_kv > (uint64_t)INT32_MAX)
        return mrw_err(err, MRW_E_LIMIT, "too many tensors or metadata entries");
    return MRW_OK;
}

static mrw_status gguf_parse(mrw_tfile *f, mrw_error *err) {
    cursor c = {f->map.data, f->map.size, 0};
    uint64_t n_tensors = 0, n_kv = 0, align = GGUF_DEFAULT_ALIGNMENT;
    mrw_status s = read_header(&c, &n_tensors, &n_kv, err);
    for (uint64_t i = 0; i < n_kv && s == MRW_OK; i++) s = read_kv(&c, f, i, n_kv, err);
    if (s == MRW_OK) s = check_duplicate_keys(f, err);
    if (s == MRW_OK) s = read_alignment(f, &align, err);
    if (s != MRW_OK) return s;
    uint64_t *off = malloc((size_t)(n_tensors ? n_tensors : 1) * sizeof *off);
    if (!off) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    for (uint64_t i = 0; i < n_tensors && s == MRW_OK; i++)
        s = read_tensor_info(&c, f, i, n_tensors, &off[i], err);
    if (s == MRW_OK && n_tensors > 0) s = place_tensors(f, &c, off, align, err);
    free(off);
    if (s == MRW_OK) s = mrw_tfile_finish(f, err);
    return s;
}

static mrw_status gguf_parse_file(mrw_tfile *f, const char *path, mrw_error *err) {
    mrw_status s = gguf_parse(f, err);
    if (s != MRW_OK && path && err) mrw_err_prefix(err, "%s", path);
    return s;
}

mrw_status mrw_gguf_open_mem(const void *buf, size_t len, mrw_tfile **out, mrw_error *err) {
    return mrw_tfile_open_buffer(MRW_FMT_GGUF, buf, len, gguf_parse_file, out, err);
}

mrw_status mrw_gguf_open(const char *path, mrw_tfile **out, mrw_error *err) {
    return mrw_tfile_open_file(MRW_FMT_GGUF, path, gguf_parse_file, out, err);
}

/* ------------------------------------------------------------------------------------------- writing */

typedef struct {
    mrw_afile af;
    uint64_t done, total;
    mrw_progress_fn progress;
    void *user;
} writer;

static void put_bytes(writer *w, const void *p, size_t n) {
    mrw_afile_write(&w->af, p, n);
    w->done += n;
}

static void put_u32(writer *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put_bytes(w, b, 4);
}

static void put_u64(writer *w, uint64_t v) {
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}

static void put_str(writer *w, const char *p, size_t n) {
    put_u64(w, n);
    put_bytes(w, p, n);
}

static void put_pad(writer *w, uint64_t n) {
    mrw_afile_pad(&w->af, (size_t)n);
    w->done += n;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Whether an integer value fits its declared type (so writing it does not silently wrap). */
static int int_fits(mrw_meta_type t, int64_t v) {
    switch (t) {
    case MRW_MV_U8: return v >= 0 && v <= UINT8_MAX;
    case MRW_MV_I8: return v >= INT8_MIN && v <= INT8_MAX;
    case MRW_MV_U16: return v >= 0 && v <= UINT16_MAX;
    case MRW_MV_I16: return v >= INT16_MIN && v <= INT16_MAX;
    case MRW_MV_U32: return v >= 0 && v <= (int64_t)UINT32_MAX;
    case MRW_MV_I32: return v >= INT32_MIN && v <= INT32_MAX;
    case MRW_MV_BOOL: return v == 0 || v == 1;
    default: return 1;
    }
}

/* Validates one metadata entry and returns its encoded size (key included). */
static mrw_status check_meta(const mrw_meta *m, int i, uint64_t *size, mrw_error *err) {
    if (!m->key) return mrw_err(err, MRW_E_ARG, "metadata entry %d has no key", i);
    if ((unsigned)m->type >= GGUF_N_VALUE_TYPES)
        return mrw_err(err, MRW_E_ARG, "metadata '%s' has invalid type %d", m->key, (int)m->type);
    *size = 8 + strlen(m->key) + 4;
    if (m->type == MRW_MV_STRING) {
        if (!m->v.s.ptr && m->v.s.len) return mrw_err(err, MRW_E_ARG, "metadata '%s': NULL string", m->key);
        *size += 8 + m->v.s.len;
    } else if (m->type == MRW_MV_ARRAY) {
        if (m->elem_type == MRW_MV_ARRAY)
            return mrw_err(err, MRW_E_UNSUPPORTED, "metadata '%s': arrays of arrays are not supported",
                           m->key);
        if ((unsigned)m->elem_type >= GGUF_N_VALUE_TYPES)
            return mrw_err(err, MRW_E_ARG, "metadata '%s' has invalid element type %d", m->key,
                           (int)m->elem_type);
        *size += 4 + 8;
        if (m->elem_type == MRW_MV_STRING) {
            if (m->count && !m->strs)
                return mrw_err(err, MRW_E_ARG, "metadata '%s': NULL string array", m->key);
            for (uint64_t j = 0; j < m->count; j++) {
                if (!m->strs[j].ptr && m->strs[j].len)
                    return mrw_err(err, MRW_E_ARG, "metadata '%s': string %" PRIu64 " is NULL", m->key, j);
                *size += 8 + m->strs[j].len;
            }
        } else {
            if (m->count && !m->nums)
                return mrw_err(err, MRW_E_ARG, "metadata '%s': NULL number array", m->key);
            if (m->count > (UINT64_MAX >> 4))
                return mrw_err(err, MRW_E_ARG, "metadata '%s': array too large", m->key);
            *size += m->count * mv_size(m->elem_type);
        }
    } else {
        if (m->type != MRW_MV_U64 && !int_fits(m->type, m->v.i))
            return mrw_err(err, MRW_E_ARG, "metadata '%s': value %" PRId64 " does not fit a %s", m->key,
                           m->v.i, mv_name(m->type));
        *size += mv_size(m->type);
    }
    if (!strcmp(m->key, "general.alignment")) {
        if (m->type != MRW_MV_U32)
            return mrw_err(err, MRW_E_ARG, "general.alignment must be a u32, not a %s", mv_name(m->type));
        uint64_t a = (uint64_t)m->v.i;
        if (a == 0 || (a & (a - 1)))
            return mrw_err(err, MRW_E_ARG, "general.alignment %" PRIu64 " is not a power of two", a);
    }
    return MRW_OK;
}

/* Validates one tensor and returns the size of its info record. */
static mrw_status check_tensor(const mrw_tensor_info *t, int i, uint64_t *info_size, mrw_error *err) {
    if (!t->name) return mrw_err(err, MRW_E_ARG, "tensor %d has no name", i);
    uint32_t g;
    if (!dtype_to_ggml(t->dtype, &g))
        return mrw_err(err, MRW_E_UNSUPPORTED, "tensor '%s': GGUF has no %s type", t->name,
                       mrw_dtype_name(t->dtype));
    if (t->ndim < 0 || t->ndim > GGUF_MAX_DIMS)
        return mrw_err(err, MRW_E_UNSUPPORTED, "tensor '%s' has %d dimensions; GGUF holds at most %d",
                       t->name, t->ndim, GGUF_MAX_DIMS);
    uint64_t ne[GGUF_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0) return mrw_err(err, MRW_E_ARG, "tensor '%s' has a negative dimension", t->name);
        ne[d] = (uint64_t)t->shape[t->ndim - 1 - d];
    }
    size_t bytes = 0;
    const char *why = NULL;
    if (!tensor_bytes(t->dtype, ne, (uint32_t)t->ndim, &bytes, &why))
        return mrw_err(err, MRW_E_ARG, "tensor '%s' (%s) %s", t->name, mrw_dtype_name(t->dtype), why);
    if (bytes != t->nbytes)
        return mrw_err(err, MRW_E_ARG, "tensor '%s': %zu bytes given, but its %s shape needs %zu", t->name,
                       t->nbytes, mrw_dtype_name(t->dtype), bytes);
    if (bytes && !t->data) return mrw_err(err, MRW_E_ARG, "tensor '%s' has no data", t->name);
    *info_size = 8 + strlen(t->name) + 4 + 8 * (uint64_t)t->ndim + 4 + 8;
    return MRW_OK;
}

static mrw_status check_unique(const char **names, int n, const char *what, mrw_error *err) {
    int nomem;
    const char *dup = find_duplicate(names, (size_t)n, &nomem);
    if (nomem) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    if (dup) return mrw_err(err, MRW_E_ARG, "%s '%s' appears more than once", what, dup);
    return MRW_OK;
}

/* Validates everything before the file is created; computes the alignment and the header size. */
static mrw_status plan(const mrw_tensor_info *tensors, int n, const mrw_meta *meta, int n_meta,
                       uint64_t *align, uint64_t *header, uint64_t *total, mrw_error *err) {
    *align = GGUF_DEFAULT_ALIGNMENT;
    *header = 24;
    *total = 0;
    if (n < 0 || n_meta < 0 || (n && !tensors) || (n_meta && !meta))
        return mrw_err(err, MRW_E_ARG, "invalid tensor or metadata list");
    mrw_status s = MRW_OK;
    int cap = n > n_meta ? n : n_meta;
    const char **names = malloc((size_t)(cap ? cap : 1) * sizeof *names);
    if (!names) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    for (int i = 0; i < n_meta && s == MRW_OK; i++) {
        uint64_t sz = 0;
        s = check_meta(&meta[i], i, &sz, err);
        if (s == MRW_OK && !strcmp(meta[i].key, "general.alignment")) *align = (uint64_t)meta[i].v.i;
        *header += sz;
        names[i] = meta[i].key;
    }
    if (s == MRW_OK) s = check_unique(names, n_meta, "metadata key", err);
    uint64_t data = 0;
    for (int i = 0; i < n && s == MRW_OK; i++) {
        uint64_t sz = 0;
        s = check_tensor(&tensors[i], i, &sz, err);
        *header += sz;
        data += align_up(tensors[i].nbytes, *align);
        names[i] = tensors[i].name;
    }
    if (s == MRW_OK) s = check_unique(names, n, "tensor name", err);
    free(names);
    *total = align_up(*header, *align) + data;
    return s;
}

static void write_meta(writer *w, const mrw_meta *m) {
    put_str(w, m->key, strlen(m->key));
    put_u32(w, (uint32_t)m->type);
    uint8_t b[8];
    switch (m->type) {
    case MRW_MV_STRING: put_str(w, m->v.s.ptr, m->v.s.len); break;
    case MRW_MV_ARRAY:
        put_u32(w, (uint32_t)m->elem_type);
        put_u64(w, m->count);
        if (m->elem_type == MRW_MV_STRING)
            for (uint64_t j = 0; j < m->count; j++) put_str(w, m->strs[j].ptr, m->strs[j].len);
        else if (m->count)
            put_bytes(w, m->nums, (size_t)(m->count * mv_size(m->elem_type)));
        break;
    case MRW_MV_F32: {
        float x = (float)m->v.f;
        uint32_t u;
        memcpy(&u, &x, 4);
        put_u32(w, u);
    } break;
    case MRW_MV_F64: {
        uint64_t u;
        memcpy(&u, &m->v.f, 8);
        put_u64(w, u);
    } break;
    default: { /* integers and bool: the low bytes of the value, little-endian */
        uint64_t u = m->type == MRW_MV_U64 ? m->v.u : (uint64_t)m->v.i;
        size_t n = mv_size(m->type);
        for (size_t k = 0; k < n; k++) b[k] = (uint8_t)(u >> (8 * k));
        put_bytes(w, b, n);
    } break;
    }
}

static void write_data(writer *w, const mrw_tensor_info *t, uint64_t align) {
    const uint8_t *p = t->data;
    for (size_t left = t->nbytes; left > 0;) {
        size_t k = left < GGUF_WRITE_CHUNK ? left : GGUF_WRITE_CHUNK;
        put_bytes(w, p, k);
        p += k;
        left -= k;
        if (w->progress) w->progress(w->user, w->done, w->total);
    }
    put_pad(w, align_up(t->nbytes, align) - t->nbytes);
}

mrw_status mrw_gguf_write(const char *path, const mrw_tensor_info *tensors, int n, const mrw_meta *meta,
                          int n_meta, mrw_progress_fn progress, void *user, mrw_error *err) {
    uint64_t align = GGUF_DEFAULT_ALIGNMENT, header = 0, total = 0;
    mrw_status s = plan(tensors, n, meta, n_meta, &align, &header, &total, err);
    if (s != MRW_OK) {
        mrw_err_prefix(err, "%s", path);
        return s;
    }
    writer w = {.total = total, .progress = progress, .user = user};
    if ((s = mrw_afile_open(&w.af, path, err)) != MRW_OK) return s;
    put_bytes(&w, "GGUF", 4);
    put_u32(&w, 3);
    put_u64(&w, (uint64_t)n);
    put_u64(&w, (uint64_t)n_meta);
    for (int i = 0; i < n_meta; i++) write_meta(&w, &meta[i]);
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const mrw_tensor_info *t = &tensors[i];
        put_str(&w, t->name, strlen(t->name));
        put_u32(&w, (uint32_t)t->ndim);
        for (int d = t->ndim - 1; d >= 0; d--) put_u64(&w, (uint64_t)t->shape[d]);
        uint32_t g = 0;
        dtype_to_ggml(t->dtype, &g);
        put_u32(&w, g);
        put_u64(&w, offset);
        offset += align_up(t->nbytes, align);
    }
    put_pad(&w, align_up(header, align) - header);
    if (progress) progress(user, w.done, total);
    for (int i = 0; i < n; i++) write_data(&w, &tensors[i], align);
    if (w.done != total) {
        mrw_afile_abort(&w.af);
        return mrw_err(err, MRW_E_INTERNAL, "%s: wrote %" PRIu64 " bytes, planned %" PRIu64, path, w.done,
                       total);
    }
    if ((s = mrw_afile_commit(&w.af, err)) != MRW_OK) return s;
    if (progress) progress(user, total, total);
    return MRW_OK;
}
