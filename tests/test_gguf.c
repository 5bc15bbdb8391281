/* GGUF reader and writer: fixtures written by llama.cpp's gguf-py (tests/reference/make_format_fixtures.py),
 * round trips of every dtype and metadata type, hostile inputs, and bit-exact agreement of the Q8_0/Q4_0
 * quantizers with gguf-py's. Run from the repository root. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "tensor/dtype.h"
#include "test.h"

#define FIX "tests/fixtures/formats/"

static char g_tmp[64];

/* ------------------------------------------------------------------------------------------- helpers */

static int has_msg(const mrw_error *e, const char *s) { return strstr(e->msg, s) != NULL; }

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static float ld_f32(const void *p, int64_t i) {
    float x;
    memcpy(&x, (const char *)p + 4 * i, 4);
    return x;
}

/* A growable byte buffer for building GGUF files by hand. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} bb;

static void bb_put(bb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u32(bb *b, uint32_t v) {
    for (int i = 0; i < 4; i++) bb_u8(b, (uint8_t)(v >> 8 * i));
}
static void bb_u64(bb *b, uint64_t v) {
    for (int i = 0; i < 8; i++) bb_u8(b, (uint8_t)(v >> 8 * i));
}
static void bb_str(bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}
static void bb_pad(bb *b, size_t align) {
    while (b->n % align) bb_u8(b, 0);
}
static void bb_header(bb *b, uint64_t n_tensors, uint64_t n_kv) {
    bb_put(b, "GGUF", 4);
    bb_u32(b, 3);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
/* A tensor info with ggml-ordered dims. */
static void bb_tinfo(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                     uint64_t off) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) bb_u64(b, ne[i]);
    bb_u32(b, type);
    bb_u64(b, off);
}

static mrw_status open_bb(const bb *b, mrw_tfile **f, mrw_error *e) {
    memset(e, 0, sizeof *e);
    return mrw_gguf_open_mem(b->p, b->n, f, e);
}

/* Expects b to fail with status want and a message containing msg. */
static void expect_fail(const bb *b, mrw_status want, const char *msg, int line) {
    mrw_tfile *f = NULL;
    mrw_error e;
    mrw_status s = open_bb(b, &f, &e);
    CHECKF(s == want && f == NULL, "line %d: status %s (%s), wanted %s", line, mrw_status_name(s), e.msg,
           mrw_status_name(want));
    if (msg) CHECKF(has_msg(&e, msg), "line %d: message '%s' lacks '%s'", line, e.msg, msg);
    mrw_tfile_close(f);
}
#define EXPECT_FAIL(b, want, msg) expect_fail(b, want, msg, __LINE__)

/* ----------------------------------------------------------------------------------- gguf-py fixtures */

static const mrw_meta *meta_of(const mrw_tfile *f, const char *key, mrw_meta_type t) {
    const mrw_meta *m = mrw_tfile_find_meta(f, key);
    CHECKF(m && m->type == t, "metadata %s missing or of the wrong type", key);
    return m && m->type == t ? m : NULL;
}

static int str_eq(mrw_str s, const char *c) { return s.len == strlen(c) && !memcmp(s.ptr, c, s.len); }

static void check_fixture_meta(const mrw_tfile *f) {
    const mrw_meta *m;
    if ((m = meta_of(f, "general.architecture", MRW_MV_STRING))) CHECK(str_eq(m->v.s, "rwkv7"));
    if ((m = meta_of(f, "test.u8", MRW_MV_U8))) CHECK(m->v.i == 200);
    if ((m = meta_of(f, "test.i8", MRW_MV_I8))) CHECK(m->v.i == -100);
    if ((m = meta_of(f, "test.u16", MRW_MV_U16))) CHECK(m->v.i == 60000);
    if ((m = meta_of(f, "test.i16", MRW_MV_I16))) CHECK(m->v.i == -30000);
    if ((m = meta_of(f, "test.u32", MRW_MV_U32))) CHECK(m->v.i == 4000000000LL);
    if ((m = meta_of(f, "test.i32", MRW_MV_I32))) CHECK(m->v.i == -2000000000LL);
    if ((m = meta_of(f, "test.f32", MRW_MV_F32))) CHECK(m->v.f == 1.5);
    if ((m = meta_of(f, "test.bool", MRW_MV_BOOL))) CHECK(m->v.i == 1);
    if ((m = meta_of(f, "test.string", MRW_MV_STRING))) CHECK(str_eq(m->v.s, "h\xc3\xa9llo"));
    if ((m = meta_of(f, "test.u64", MRW_MV_U64))) CHECK(m->v.u == (1ULL << 63) + 5);
    if ((m = meta_of(f, "test.i64", MRW_MV_I64))) CHECK(m->v.i == -(1LL << 62));
    if ((m = meta_of(f, "test.f64", MRW_MV_F64))) CHECK(m->v.f == 3.141592653589793);
    if ((m = meta_of(f, "rwkv7.attention.layer_norm_epsilon", MRW_MV_F32))) CHECK(m->v.f == (double)1e-5f);
    if ((m = meta_of(f, "rwkv7.block_count", MRW_MV_U32))) CHECK(m->v.i == 2);

    static const uint8_t u8[] = {1, 2, 255};
    static const int8_t i8[] = {-1, 2, -128};
    static const uint16_t u16[] = {1, 65535};
    static const int16_t i16[] = {-2, 32767};
    static const uint32_t u32[] = {3, 4000000000u};
    static const int32_t i32[] = {-3, 5, 7};
    static const float f32[] = {0.5f, -1.25f};
    static const uint8_t bl[] = {1, 0, 1};
    static const uint64_t u64[] = {UINT64_MAX, 0};
    static const int64_t i64[] = {INT64_MIN, INT64_MAX};
    static const double f64[] = {1e300, -2.5};
    static const struct {
        const char *key;
        mrw_meta_type et;
        const void *want;
        uint64_t count;
        size_t size;
    } arrays[] = {
        {"test.arr_u8", MRW_MV_U8, u8, 3, 1},    {"test.arr_i8", MRW_MV_I8, i8, 3, 1},
        {"test.arr_u16", MRW_MV_U16, u16, 2, 2}, {"test.arr_i16", MRW_MV_I16, i16, 2, 2},
        {"test.arr_u32", MRW_MV_U32, u32, 2, 4}, {"test.arr_i32", MRW_MV_I32, i32, 3, 4},
        {"test.arr_f32", MRW_MV_F32, f32, 2, 4}, {"test.arr_bool", MRW_MV_BOOL, bl, 3, 1},
        {"test.arr_u64", MRW_MV_U64, u64, 2, 8}, {"test.arr_i64", MRW_MV_I64, i64, 2, 8},
        {"test.arr_f64", MRW_MV_F64, f64, 2, 8},
    };
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        if (!(m = meta_of(f, arrays[i].key, MRW_MV_ARRAY))) continue;
        CHECKF(m->elem_type == arrays[i].et && m->count == arrays[i].count && m->nums &&
                   !memcmp(m->nums, arrays[i].want, arrays[i].count * arrays[i].size),
               "array %s", arrays[i].key);
    }
    if ((m = meta_of(f, "test.arr_str", MRW_MV_ARRAY))) {
        CHECK(m->elem_type == MRW_MV_STRING && m->count == 3 && m->strs);
        if (m->strs && m->count == 3)
            CHECK(str_eq(m->strs[0], "a") && str_eq(m->strs[1], "") && str_eq(m->strs[2], "\xc3\xbc"));
    }
    /* llama.cpp's RWKV vocabulary: repr-escaped token bytes, token 0 a control token */
    if ((m = meta_of(f, "tokenizer.ggml.model", MRW_MV_STRING))) CHECK(str_eq(m->v.s, "rwkv"));
    if ((m = meta_of(f, "tokenizer.ggml.tokens", MRW_MV_ARRAY))) {
        CHECK(m->elem_type == MRW_MV_STRING && m->count == 8);
        if (m->count == 8 && m->strs) {
            CHECK(str_eq(m->strs[0], "<s>"));
            CHECK(str_eq(m->strs[1], "\\n"));
            CHECK(str_eq(m->strs[4], "\\xe4\\xbd\\xa0"));
            CHECK(str_eq(m->strs[5], "\\\\"));
            CHECK(str_eq(m->strs[6], "\\'"));
            CHECK(str_eq(m->strs[7], " the"));
        }
    }
    if ((m = meta_of(f, "tokenizer.ggml.token_type", MRW_MV_ARRAY))) {
        CHECK(m->elem_type == MRW_MV_I32 && m->count == 8);
        int32_t t0 = 0, t1 = 0;
        if (m->count == 8) {
            memcpy(&t0, m->nums, 4);
            memcpy(&t1, (const char *)m->nums + 4, 4);
        }
        CHECK(t0 == 3 && t1 == 1);
    }
}

static const mrw_tensor_info *tensor_of(const mrw_tfile *f, const char *name, mrw_dtype dt, int ndim,
                                        const int64_t *shape) {
    const mrw_tensor_info *t = mrw_tfile_find(f, name);
    CHECKF(t != NULL, "tensor %s missing", name);
    if (!t) return NULL;
    int ok = t->dtype == dt && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    CHECKF(ok, "tensor %s: dtype %s ndim %d", name, mrw_dtype_name(t->dtype), t->ndim);
    return ok ? t : NULL;
}

static void check_fixture_tensors(const mrw_tfile *f) {
    const mrw_tensor_info *t;
    if ((t = tensor_of(f, "f32", MRW_DT_F32, 2, (int64_t[]){3, 4})))
        for (int i = 0; i < 12; i++) CHECK(ld_f32(t->data, i) == i * 0.5f - 3.0f);
    if ((t = tensor_of(f, "f16", MRW_DT_F16, 2, (int64_t[]){2, 3}))) {
        static const float want[] = {-2, -1, 0, 1, 2.5f, 65504};
        const uint16_t *h = t->data;
        for (int i = 0; i < 6; i++) CHECK(mrw_f16_to_f32(h[i]) == want[i]);
    }
    if ((t = tensor_of(f, "bf16", MRW_DT_BF16, 2, (int64_t[]){2, 2}))) {
        static const float want[] = {1.5f, -2.0f, 0.0078125f, 256.0f};
        const uint16_t *h = t->data;
        for (int i = 0; i < 4; i++) CHECK(mrw_bf16_to_f32(h[i]) == want[i]);
    }
    if ((t = tensor_of(f, "f64", MRW_DT_F64, 1, (int64_t[]){3}))) {
        const double *d = t->data;
        CHECK(d[0] == -0.5 && d[1] == 0.25 && d[2] == 1e300);
    }
    if ((t = tensor_of(f, "i8", MRW_DT_I8, 1, (int64_t[]){4}))) {
        const int8_t *d = t->data;
        CHECK(d[0] == -128 && d[1] == -1 && d[2] == 0 && d[3] == 127);
    }
    if ((t = tensor_of(f, "i16", MRW_DT_I16, 1, (int64_t[]){2}))) {
        const int16_t *d = t->data;
        CHECK(d[0] == -32768 && d[1] == 32767);
    }
    if ((t = tensor_of(f, "i32", MRW_DT_I32, 2, (int64_t[]){2, 2}))) {
        const int32_t *d = t->data;
        CHECK(d[0] == -7 && d[1] == 0 && d[2] == 7 && d[3] == INT32_MAX);
    }
    if ((t = tensor_of(f, "i64", MRW_DT_I64, 1, (int64_t[]){2}))) {
        const int64_t *d = t->data;
        CHECK(d[0] == -(1LL << 40) && d[1] == (1LL << 40) + 7);
    }
    if ((t = tensor_of(f, "rank4", MRW_DT_F32, 4, (int64_t[]){2, 3, 1, 4})))
        for (int i = 0; i < 24; i++) CHECK(ld_f32(t->data, i) == (float)i);
    /* quantized tensors: gguf-py's blocks dequantize close to the float source kept next to them */
    static const struct {
        const char *name, *src;
        mrw_dtype dt;
        float tol;
    } q[] = {{"q8_0", "q8_0.src", MRW_DT_Q8_0, 0.02f}, {"q4_0", "q4_0.src", MRW_DT_Q4_0, 0.4f}};
    for (int k = 0; k < 2; k++) {
        const mrw_tensor_info *qt = tensor_of(f, q[k].name, q[k].dt, 2, (int64_t[]){3, 64});
        const mrw_tensor_info *st = tensor_of(f, q[k].src, MRW_DT_F32, 2, (int64_t[]){3, 64});
        if (!qt || !st) continue;
        CHECK(qt->nbytes == 3 * 2 * mrw_dtype_block_bytes(q[k].dt));
        float deq[192];
        mrw_to_f32(q[k].dt, qt->data, deq, 192);
        double maxerr = 0;
        for (int i = 0; i < 192; i++) maxerr = fmax(maxerr, fabs(deq[i] - ld_f32(st->data, i)));
        CHECKF(maxerr < q[k].tol, "%s: max dequantization error %g", q[k].name, maxerr);
    }
}

static void test_fixtures(void) {
    mrw_tfile *f = NULL;
    mrw_error e = {0};
    CHECK_OK(mrw_gguf_open(FIX "dtypes.gguf", &f, &e), &e);
    if (f) {
        CHECK(mrw_tfile_format(f) == MRW_FMT_GGUF);
        CHECK(mrw_tfile_count(f) == 13);
        check_fixture_meta(f);
        check_fixture_tensors(f);
        /* tensors keep the file's order */
        CHECK(!strcmp(mrw_tfile_tensor(f, 0)->name, "f32") && !strcmp(mrw_tfile_tensor(f, 12)->name, "q4_0"));
        mrw_tfile_close(f);
    }
    /* dispatch through the generic opener */
    CHECK_OK(mrw_tfile_open(FIX "dtypes.gguf", &f, &e), &e);
    mrw_tfile_close(f);

    /* general.alignment = 64: the data section and every offset are 64-aligned */
    size_t len = 0;
    unsigned char *buf = t_read_file(FIX "align64.gguf", &len);
    CHECK(buf != NULL);
    if (buf) {
        CHECK_OK(mrw_gguf_open_mem(buf, len, &f, &e), &e);
        if (f) {
            const mrw_meta *m = mrw_tfile_find_meta(f, "general.alignment");
            CHECK(m && m->type == MRW_MV_U32 && m->v.i == 64);
            for (int i = 0; i < mrw_tfile_count(f); i++)
                CHECK(((const unsigned char *)mrw_tfile_tensor(f, i)->data - buf) % 64 == 0);
            const mrw_tensor_info *b = mrw_tfile_find(f, "b");
            CHECK(b && ld_f32(b->data, 2) == 3.0f);
            const mrw_tensor_info *c = mrw_tfile_find(f, "c");
            CHECK(c && ((const int16_t *)c->data)[0] == -1 && ((const int16_t *)c->data)[1] == 5);
            mrw_tfile_close(f);
        }
        free(buf);
    }

    /* a type modrwkv cannot read: the error names the tensor and the type */
    mrw_status s = mrw_gguf_open(FIX "q4k.gguf", &f, &e);
    CHECK(s == MRW_E_UNSUPPORTED && f == NULL);
    CHECKF(has_msg(&e, "blk.0.ffn_up.weight") && has_msg(&e, "Q4_K (ggml type 12)") && has_msg(&e, "q8_0"),
           "%s", e.msg);
    CHECKF(has_msg(&e, "q4k.gguf"), "message names the file: %s", e.msg);

    s = mrw_gguf_open("tests/fixtures/formats/does-not-exist.gguf", &f, &e);
    CHECK(s == MRW_E_IO && f == NULL);
}

/* ------------------------------------------------------------------------------ quantizers vs gguf-py */

static int compare_quant(const mrw_tensor_info *src, const mrw_tensor_info *ref, mrw_dtype dt) {
    int64_t n = mrw_tensor_numel(src), nb = n / MRW_QK;
    size_t bsz = mrw_dtype_block_bytes(dt);
    uint8_t *ours = malloc((size_t)nb * bsz);
    float *x = malloc((size_t)n * sizeof *x);
    memcpy(x, src->data, (size_t)n * 4);
    if (dt == MRW_DT_Q8_0)
        mrw_quantize_q8_0(x, (mrw_block_q8_0 *)ours, n);
    else
        mrw_quantize_q4_0(x, (mrw_block_q4_0 *)ours, n);
    int bad = 0;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *o = ours + b * bsz, *r = (const uint8_t *)ref->data + b * bsz;
        if (!memcmp(o, r, bsz)) continue;
        if (bad++ < 8) {
            uint16_t od, rd;
            memcpy(&od, o, 2);
            memcpy(&rd, r, 2);
            size_t k = 2;
            while (k < bsz && o[k] == r[k]) k++;
            fprintf(stderr,
                    "%s block %" PRId64 " (row %" PRId64 ", block %" PRId64
                    "): scale ours 0x%04x ref 0x%04x; "
                    "first differing byte %zu: ours 0x%02x ref 0x%02x\n",
                    mrw_dtype_name(dt), b, b / (src->shape[1] / MRW_QK), b % (src->shape[1] / MRW_QK), od, rd,
                    k, k < bsz ? o[k] : 0, k < bsz ? r[k] : 0);
        }
    }
    free(ours);
    free(x);
    return bad;
}

static void test_quantizers_match_gguf_py(void) {
    mrw_tfile *f = NULL;
    mrw_error e = {0};
    CHECK_OK(mrw_gguf_open(FIX "quant.gguf", &f, &e), &e);
    if (!f) return;
    const mrw_tensor_info *src = mrw_tfile_find(f, "src"), *q8 = mrw_tfile_find(f, "q8_0"),
                          *q4 = mrw_tfile_find(f, "q4_0");
    CHECK(src && q8 && q4 && src->dtype == MRW_DT_F32 && q8->dtype == MRW_DT_Q8_0 &&
          q4->dtype == MRW_DT_Q4_0);
    if (src && q8 && q4) {
        int b8 = compare_quant(src, q8, MRW_DT_Q8_0), b4 = compare_quant(src, q4, MRW_DT_Q4_0);
        int64_t nb = mrw_tensor_numel(src) / MRW_QK;
        CHECKF(b8 == 0, "q8_0: %d of %" PRId64 " blocks differ from gguf-py", b8, nb);
        CHECKF(b4 == 0, "q4_0: %d of %" PRId64 " blocks differ from gguf-py", b4, nb);
    }
    mrw_tfile_close(f);
}

/* ----------------------------------------------------------------------------------------- round trip */

typedef struct {
    uint64_t last, total;
    int calls, monotonic;
} prog;

static void on_progress(void *user, uint64_t done, uint64_t total) {
    prog *p = user;
    if (done < p->last || done > total) p->monotonic = 0;
    p->last = done;
    p->total = total;
    p->calls++;
}

static void check_same_tensors(const mrw_tfile *f, const mrw_tensor_info *t, int n) {
    CHECK(mrw_tfile_count(f) == n);
    for (int i = 0; i < n && i < mrw_tfile_count(f); i++) {
        const mrw_tensor_info *r = mrw_tfile_tensor(f, i);
        int ok = !strcmp(r->name, t[i].name) && r->dtype == t[i].dtype && r->ndim == t[i].ndim &&
                 r->nbytes == t[i].nbytes && (!r->nbytes || !memcmp(r->data, t[i].data, r->nbytes));
        for (int d = 0; ok && d < r->ndim; d++) ok = r->shape[d] == t[i].shape[d];
        CHECKF(ok, "round trip of tensor %s", t[i].name);
    }
}

static size_t elem_size(mrw_meta_type t) {
    switch (t) {
    case MRW_MV_U8:
    case MRW_MV_I8:
    case MRW_MV_BOOL: return 1;
    case MRW_MV_U16:
    case MRW_MV_I16: return 2;
    case MRW_MV_U64:
    case MRW_MV_I64:
    case MRW_MV_F64: return 8;
    default: return 4;
    }
}

static int same_array(const mrw_meta *r, const mrw_meta *m) {
    if (r->elem_type != m->elem_type || r->count != m->count) return 0;
    if (r->elem_type != MRW_MV_STRING)
        return !r->count || !memcmp(r->nums, m->nums, r->count * elem_size(r->elem_type));
    for (uint64_t j = 0; j < r->count; j++)
        if (r->strs[j].len != m->strs[j].len || memcmp(r->strs[j].ptr, m->strs[j].ptr, r->strs[j].len))
            return 0;
    return 1;
}

static int same_value(const mrw_meta *r, const mrw_meta *m) {
    switch (r->type) {
    case MRW_MV_STRING: return r->v.s.len == m->v.s.len && !memcmp(r->v.s.ptr, m->v.s.ptr, r->v.s.len);
    case MRW_MV_U64: return r->v.u == m->v.u;
    case MRW_MV_F32:
    case MRW_MV_F64: return r->v.f == m->v.f;
    case MRW_MV_ARRAY: return same_array(r, m);
    default: return r->v.i == m->v.i;
    }
}

static void check_same_meta(const mrw_tfile *f, const mrw_meta *m, int n) {
    CHECK(mrw_tfile_meta_count(f) == n);
    for (int i = 0; i < n && i < mrw_tfile_meta_count(f); i++) {
        const mrw_meta *r = mrw_tfile_meta(f, i);
        int ok = !strcmp(r->key, m[i].key) && r->type == m[i].type && same_value(r, &m[i]);
        CHECKF(ok, "round trip of metadata %s", m[i].key);
    }
}

static void test_round_trip(uint32_t align) {
    enum { N = 64 };
    float src[2 * N];
    for (int i = 0; i < 2 * N; i++) src[i] = sinf(0.37f * i) * (1 + i % 5);
    uint16_t f16[6], b16[6];
    for (int i = 0; i < 6; i++) {
        f16[i] = mrw_f32_to_f16(src[i]);
        b16[i] = mrw_f32_to_bf16(src[i]);
    }
    mrw_block_q8_0 q8[4];
    mrw_block_q4_0 q4[4];
    mrw_quantize_q8_0(src, q8, 2 * N);
    mrw_quantize_q4_0(src, q4, 2 * N);
    double f64[3] = {1e-300, -2.0, 7.25};
    int64_t i64[3] = {INT64_MIN, 0, INT64_MAX};
    int32_t i32[5] = {1, -2, 3, -4, 5};
    int16_t i16[3] = {-1, 0, 1};
    int8_t i8[7] = {-128, -1, 0, 1, 2, 3, 127};
    float scalar = 42.0f;
    mrw_tensor_info t[] = {
        {"emb.weight", MRW_DT_F32, 2, {2, N}, src, sizeof src},
        {"f16", MRW_DT_F16, 2, {2, 3}, f16, sizeof f16},
        {"bf16", MRW_DT_BF16, 3, {1, 2, 3}, b16, sizeof b16},
        {"blk.0.att.q8", MRW_DT_Q8_0, 2, {2, N}, q8, sizeof q8},
        {"blk.0.att.q4", MRW_DT_Q4_0, 4, {1, 1, 2, N}, q4, sizeof q4},
        {"f64", MRW_DT_F64, 1, {3}, f64, sizeof f64},
        {"i64", MRW_DT_I64, 1, {3}, i64, sizeof i64},
        {"i32", MRW_DT_I32, 1, {5}, i32, sizeof i32},
        {"i16", MRW_DT_I16, 1, {3}, i16, sizeof i16},
        {"i8", MRW_DT_I8, 1, {7}, i8, sizeof i8},
        {"scalar", MRW_DT_F32, 0, {0}, &scalar, 4},
        {"empty", MRW_DT_F32, 2, {0, 5}, NULL, 0},
    };
    int nt = (int)(sizeof t / sizeof t[0]);
    /* metadata: every type, a 65536-entry string array, arrays of every number type, an empty array */
    enum { NS = 65536 };
    mrw_str *strs = malloc(NS * sizeof *strs);
    char *pool = malloc(NS * 8);
    for (int i = 0; i < NS; i++) {
        int k = snprintf(pool + 8 * i, 8, "t%d", i);
        strs[i] = (mrw_str){pool + 8 * i, (size_t)(i % 7 == 3 ? 0 : k)};
    }
    uint8_t au8[3] = {1, 0, 255};
    int16_t ai16[2] = {-5, 5};
    uint32_t au32[2] = {7, 4000000000u};
    float af32[3] = {0.25f, -1, 3};
    int64_t ai64[2] = {-9, INT64_MAX};
    double af64[1] = {6.5};
    uint8_t abool[2] = {1, 0};
    mrw_meta m[] = {
        {.key = "general.alignment", .type = MRW_MV_U32, .v.i = align},
        {.key = "general.architecture", .type = MRW_MV_STRING, .v.s = {"rwkv7", 5}},
        {.key = "u8", .type = MRW_MV_U8, .v.i = 255},
        {.key = "i8", .type = MRW_MV_I8, .v.i = -128},
        {.key = "u16", .type = MRW_MV_U16, .v.i = 65535},
        {.key = "i16", .type = MRW_MV_I16, .v.i = -32768},
        {.key = "u32", .type = MRW_MV_U32, .v.i = 4294967295LL},
        {.key = "i32", .type = MRW_MV_I32, .v.i = INT32_MIN},
        {.key = "f32", .type = MRW_MV_F32, .v.f = 0.1f},
        {.key = "bool", .type = MRW_MV_BOOL, .v.i = 1},
        {.key = "str.empty", .type = MRW_MV_STRING, .v.s = {"", 0}},
        {.key = "str.nul", .type = MRW_MV_STRING, .v.s = {"a\0b", 3}},
        {.key = "u64", .type = MRW_MV_U64, .v.u = UINT64_MAX},
        {.key = "i64", .type = MRW_MV_I64, .v.i = INT64_MIN},
        {.key = "f64", .type = MRW_MV_F64, .v.f = -1e-310},
        {.key = "tokenizer.ggml.tokens",
         .type = MRW_MV_ARRAY,
         .elem_type = MRW_MV_STRING,
         .count = NS,
         .strs = strs},
        {.key = "a.u8", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_U8, .count = 3, .nums = au8},
        {.key = "a.i16", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_I16, .count = 2, .nums = ai16},
        {.key = "a.u32", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_U32, .count = 2, .nums = au32},
        {.key = "a.f32", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_F32, .count = 3, .nums = af32},
        {.key = "a.i64", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_I64, .count = 2, .nums = ai64},
        {.key = "a.f64", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_F64, .count = 1, .nums = af64},
        {.key = "a.bool", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_BOOL, .count = 2, .nums = abool},
        {.key = "a.empty", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_I32, .count = 0, .nums = NULL},
        {.key = "a.empty_str", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_STRING, .count = 0, .strs = NULL},
    };
    int nm = (int)(sizeof m / sizeof m[0]);
    m[8].v.f = (double)0.1f; /* f32 metadata round-trips exactly only if it is a float to begin with */
    /* with the default alignment, leave general.alignment out */
    const mrw_meta *mp = align == 32 ? m + 1 : m;
    int nmp = align == 32 ? nm - 1 : nm;

    char path[128];
    snprintf(path, sizeof path, "%s/rt%u.gguf", g_tmp, align);
    mrw_error e = {0};
    prog p = {0, 0, 0, 1};
    CHECK_OK(mrw_gguf_write(path, t, nt, mp, nmp, on_progress, &p, &e), &e);
    size_t len = 0;
    unsigned char *buf = t_read_file(path, &len);
    CHECK(buf && p.calls >= 2 && p.monotonic && p.last == p.total && p.total == len);
    mrw_tfile *f = NULL;
    if (buf) CHECK_OK(mrw_gguf_open_mem(buf, len, &f, &e), &e);
    if (f) {
        check_same_tensors(f, t, nt);
        check_same_meta(f, mp, nmp);
        for (int i = 0; i < mrw_tfile_count(f); i++) {
            const mrw_tensor_info *r = mrw_tfile_tensor(f, i);
            if (r->nbytes) CHECKF(((const unsigned char *)r->data - buf) % align == 0, "%s aligned", r->name);
        }
        mrw_tfile_close(f);
    }
    free(buf);
    /* and through the file path (mmap) */
    CHECK_OK(mrw_tfile_open(path, &f, &e), &e);
    if (f) check_same_tensors(f, t, nt);
    mrw_tfile_close(f);
    free(strs);
    free(pool);
}

/* ---------------------------------------------------------------------------------- writer rejections */

static void expect_write_fail(const mrw_tensor_info *t, int n, const mrw_meta *m, int nm, mrw_status want,
                              const char *msg, int line) {
    char path[128];
    snprintf(path, sizeof path, "%s/bad.gguf", g_tmp);
    mrw_error e = {0};
    mrw_status s = mrw_gguf_write(path, t, n, m, nm, NULL, NULL, &e);
    CHECKF(s == want, "line %d: status %s (%s), wanted %s", line, mrw_status_name(s), e.msg,
           mrw_status_name(want));
    if (msg) CHECKF(has_msg(&e, msg), "line %d: message '%s' lacks '%s'", line, e.msg, msg);
    CHECKF(!file_exists(path), "line %d: a failed write left a file", line);
}
#define EXPECT_WRITE_FAIL(t, n, m, nm, want, msg) expect_write_fail(t, n, m, nm, want, msg, __LINE__)

static void test_writer_rejects(void) {
    float x[64] = {0};
    uint8_t u[4] = {0};
    mrw_tensor_info ok = {"x", MRW_DT_F32, 1, {64}, x, sizeof x};
    mrw_tensor_info t;
    t = (mrw_tensor_info){"u", MRW_DT_U8, 1, {4}, u, 4};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_UNSUPPORTED, "u8");
    t = (mrw_tensor_info){"b", MRW_DT_BOOL, 1, {4}, u, 4};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_UNSUPPORTED, "bool");
    t = (mrw_tensor_info){"r5", MRW_DT_F32, 5, {1, 1, 1, 1, 64}, x, sizeof x};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_UNSUPPORTED, "at most 4");
    t = (mrw_tensor_info){"q", MRW_DT_Q8_0, 1, {48}, x, 34};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_ARG, "32-element blocks");
    t = (mrw_tensor_info){"sz", MRW_DT_F32, 1, {64}, x, 100};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_ARG, "needs 256");
    t = (mrw_tensor_info){"neg", MRW_DT_F32, 1, {-1}, x, 0};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_ARG, "negative");
    mrw_tensor_info two[2] = {ok, ok};
    EXPECT_WRITE_FAIL(two, 2, NULL, 0, MRW_E_ARG, "appears more than once");
    mrw_meta m;
    m = (mrw_meta){.key = "nest", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_ARRAY, .count = 1, .nums = u};
    EXPECT_WRITE_FAIL(&ok, 1, &m, 1, MRW_E_UNSUPPORTED, "arrays of arrays");
    m = (mrw_meta){.key = "general.alignment", .type = MRW_MV_U64, .v.u = 64};
    EXPECT_WRITE_FAIL(&ok, 1, &m, 1, MRW_E_ARG, "u32");
    m = (mrw_meta){.key = "general.alignment", .type = MRW_MV_U32, .v.i = 48};
    EXPECT_WRITE_FAIL(&ok, 1, &m, 1, MRW_E_ARG, "power of two");
    m = (mrw_meta){.key = "small", .type = MRW_MV_U8, .v.i = 256};
    EXPECT_WRITE_FAIL(&ok, 1, &m, 1, MRW_E_ARG, "does not fit");
    m = (mrw_meta){.key = "t", .type = (mrw_meta_type)13};
    EXPECT_WRITE_FAIL(&ok, 1, &m, 1, MRW_E_ARG, "invalid type");
    mrw_meta dup[2] = {{.key = "k", .type = MRW_MV_U8}, {.key = "k", .type = MRW_MV_I8}};
    EXPECT_WRITE_FAIL(&ok, 1, dup, 2, MRW_E_ARG, "appears more than once");
    /* an unwritable destination is an I/O error */
    mrw_error e = {0};
    CHECK(mrw_gguf_write("/nonexistent-dir/x.gguf", &ok, 1, NULL, 0, NULL, NULL, &e) == MRW_E_IO);
}

/* ---------------------------------------------------------------------------------------- hostile input */

/* A small valid file: 2 metadata entries, an F32 [2,32] tensor and a Q8_0 [1,32] one. */
static bb valid_file(size_t *data_end) {
    bb b = {0};
    bb_header(&b, 2, 2);
    bb_str(&b, "general.architecture");
    bb_u32(&b, MRW_MV_STRING);
    bb_str(&b, "rwkv7");
    bb_str(&b, "tokens");
    bb_u32(&b, MRW_MV_ARRAY);
    bb_u32(&b, MRW_MV_STRING);
    bb_u64(&b, 2);
    bb_str(&b, "<s>");
    bb_str(&b, "\\n");
    bb_tinfo(&b, "a", 2, (uint64_t[]){32, 2}, 0, 0);
    bb_tinfo(&b, "q", 1, (uint64_t[]){32}, 8, 256);
    bb_pad(&b, 32);
    for (int i = 0; i < 64; i++) {
        float v = (float)i;
        bb_put(&b, &v, 4);
    }
    for (int i = 0; i < 34; i++) bb_u8(&b, (uint8_t)i);
    *data_end = b.n;
    bb_pad(&b, 32);
    return b;
}

static void test_truncations(void) {
    size_t data_end;
    bb b = valid_file(&data_end);
    mrw_tfile *f = NULL;
    mrw_error e;
    CHECK_OK(open_bb(&b, &f, &e), &e);
    mrw_tfile_close(f);
    int wrong = 0;
    for (size_t n = 0; n <= b.n; n++) {
        /* a fresh allocation of exactly n bytes, so that ASan catches any read past it */
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, b.p, n);
        memset(&e, 0, sizeof e);
        mrw_status s = mrw_gguf_open_mem(p, n, &f, &e);
        int ok = n >= data_end ? s == MRW_OK : (s == MRW_E_FORMAT && e.msg[0]);
        if (!ok && wrong++ < 5) fprintf(stderr, "truncation at %zu: %s: %s\n", n, mrw_status_name(s), e.msg);
        mrw_tfile_close(f);
        free(p);
    }
    CHECKF(wrong == 0, "%d truncations misjudged", wrong);
    /* the messages say what was being read */
    bb t = {0};
    bb_put(&t, b.p, 30);
    EXPECT_FAIL(&t, MRW_E_FORMAT, "claims 2 metadata entries");
    t.n = 0;
    bb_header(&t, 0, 1);
    bb_u64(&t, 100);
    bb_put(&t, "general.architecture", 20);
    EXPECT_FAIL(&t, MRW_E_FORMAT, "truncated: the key of metadata entry 0 of 1 at offset 24");
    free(t.p);
    free(b.p);
}

/* Replaces 8 bytes at off (little-endian). */
static void poke64(bb *b, size_t off, uint64_t v) {
    for (int i = 0; i < 8; i++) b->p[off + i] = (uint8_t)(v >> 8 * i);
}
static void poke32(bb *b, size_t off, uint32_t v) {
    for (int i = 0; i < 4; i++) b->p[off + i] = (uint8_t)(v >> 8 * i);
}

static void test_header_fields(void) {
    size_t data_end;
    bb b = valid_file(&data_end);
    bb c = {0};
#define COPY() (c.n = 0, bb_put(&c, b.p, b.n))
    COPY();
    c.p[0] = 'X';
    EXPECT_FAIL(&c, MRW_E_FORMAT, "not a GGUF file");
    COPY();
    poke32(&c, 4, 1);
    EXPECT_FAIL(&c, MRW_E_UNSUPPORTED, "version 1");
    COPY();
    poke32(&c, 4, 4);
    EXPECT_FAIL(&c, MRW_E_UNSUPPORTED, "unknown GGUF version 4");
    COPY();
    poke32(&c, 4, 0x03000000u);
    EXPECT_FAIL(&c, MRW_E_UNSUPPORTED, "big-endian");
    COPY();
    poke32(&c, 4, 2); /* version 2 has the same layout */
    mrw_tfile *f = NULL;
    mrw_error e;
    CHECK_OK(open_bb(&c, &f, &e), &e);
    mrw_tfile_close(f);
    COPY();
    poke64(&c, 8, UINT64_MAX);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "claims 18446744073709551615 tensors");
    COPY();
    poke64(&c, 16, 1ULL << 40);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "metadata entries");
    COPY();
    poke64(&c, 24, UINT64_MAX); /* first key length */
    EXPECT_FAIL(&c, MRW_E_FORMAT, "truncated");
    COPY();
    poke64(&c, 24, 1ULL << 62);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "truncated");
    COPY();
    size_t type_at = 24 + 8 + strlen("general.architecture");
    poke32(&c, type_at, 13);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "unknown value type 13");
    COPY();
    poke64(&c, type_at + 4, UINT64_MAX); /* string value length */
    EXPECT_FAIL(&c, MRW_E_FORMAT, "string value of metadata 'general.architecture'");
    COPY();
    c.p[24 + 8 + 3] = 0; /* NUL inside the first key */
    EXPECT_FAIL(&c, MRW_E_FORMAT, "NUL");
    /* the string array: element type at arr, count at arr+4 */
    size_t arr = type_at + 4 + 8 + 5 + 8 + strlen("tokens") + 4;
    COPY();
    poke32(&c, arr, MRW_MV_ARRAY);
    EXPECT_FAIL(&c, MRW_E_UNSUPPORTED, "array of arrays");
    COPY();
    poke32(&c, arr, 99);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "array of unknown value type 99");
    COPY();
    poke64(&c, arr + 4, 1ULL << 60);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "claims 1152921504606846976 strings");
    /* tensor infos: the first starts after the array */
    size_t ti = arr + 4 + 8 + 8 + 3 + 8 + 2;
    COPY();
    poke64(&c, arr + 4, 3);
    c.n = ti + 8; /* the third string is the next 8 bytes: a length (1) without its byte */
    EXPECT_FAIL(&c, MRW_E_FORMAT, "string 2 of 3");
    COPY();
    poke32(&c, arr, MRW_MV_U64);
    poke64(&c, arr + 4, 1ULL << 61);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "elements of u64");
    COPY();
    poke32(&c, ti + 9, 5);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "5 dimensions");
    COPY();
    poke32(&c, ti + 9 + 4 + 16, 99);
    EXPECT_FAIL(&c, MRW_E_UNSUPPORTED, "tensor a is an unknown type (ggml type 99)");
    COPY();
    poke32(&c, ti + 9 + 4 + 16, 12);
    EXPECT_FAIL(&c, MRW_E_UNSUPPORTED, "Q4_K (ggml type 12)");
    COPY();
    poke32(&c, ti + 9 + 4 + 16, 8); /* a [2,32] as Q8_0 would be fine; make ne0 = 33 */
    poke64(&c, ti + 9 + 4, 33);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "whole number of 32-element blocks");
    COPY();
    poke64(&c, ti + 9 + 4, 1ULL << 62);
    poke64(&c, ti + 9 + 12, 1ULL << 62);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "product exceeds 2^63");
    COPY();
    poke64(&c, ti + 9 + 4, 1ULL << 63);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "larger than 2^63");
    COPY();
    poke64(&c, ti + 9 + 4 + 16 + 4, 16); /* offset of a: misaligned */
    EXPECT_FAIL(&c, MRW_E_FORMAT, "not a multiple of the alignment 32");
    COPY();
    poke64(&c, ti + 9 + 4 + 16 + 4, 1ULL << 40);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "data section");
    COPY();
    poke64(&c, ti + 9 + 4 + 16 + 4, UINT64_MAX - 31);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "data section");
    COPY();
    poke64(&c, ti + 9 + 4 + 16 + 4, 224); /* a overlaps q */
    poke64(&c, ti + 9 + 4, 8);
    EXPECT_FAIL(&c, MRW_E_FORMAT, "overlap");
    COPY();
    c.p[ti + 8] = 'q'; /* rename a to q */
    EXPECT_FAIL(&c, MRW_E_FORMAT, "duplicate tensor name 'q'");
#undef COPY
    free(c.p);
    free(b.p);
}

static void test_metadata_edge_cases(void) {
    bb b = {0};
    /* duplicate keys */
    bb_header(&b, 0, 2);
    bb_str(&b, "k");
    bb_u32(&b, MRW_MV_U8);
    bb_u8(&b, 1);
    bb_str(&b, "k");
    bb_u32(&b, MRW_MV_U8);
    bb_u8(&b, 2);
    EXPECT_FAIL(&b, MRW_E_FORMAT, "metadata key 'k' appears more than once");
    /* bool other than 0/1 */
    b.n = 0;
    bb_header(&b, 0, 1);
    bb_str(&b, "b");
    bb_u32(&b, MRW_MV_BOOL);
    bb_u8(&b, 2);
    EXPECT_FAIL(&b, MRW_E_FORMAT, "not 0 or 1");
    /* alignment of the wrong type, or not a power of two */
    b.n = 0;
    bb_header(&b, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, MRW_MV_U64);
    bb_u64(&b, 64);
    EXPECT_FAIL(&b, MRW_E_FORMAT, "u32");
    b.n = 0;
    bb_header(&b, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, MRW_MV_U32);
    bb_u32(&b, 48);
    EXPECT_FAIL(&b, MRW_E_FORMAT, "not a power of two");
    b.n = 0;
    bb_header(&b, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, MRW_MV_U32);
    bb_u32(&b, 0);
    EXPECT_FAIL(&b, MRW_E_FORMAT, "not a power of two");
    /* an empty file with no tensors or metadata is valid; so are empty arrays and every scalar type */
    b.n = 0;
    bb_header(&b, 0, 0);
    mrw_tfile *f = NULL;
    mrw_error e;
    CHECK_OK(open_bb(&b, &f, &e), &e);
    CHECK(f && mrw_tfile_count(f) == 0 && mrw_tfile_meta_count(f) == 0);
    mrw_tfile_close(f);
    b.n = 0;
    bb_header(&b, 0, 2);
    bb_str(&b, "e");
    bb_u32(&b, MRW_MV_ARRAY);
    bb_u32(&b, MRW_MV_STRING);
    bb_u64(&b, 0);
    bb_str(&b, "g");
    bb_u32(&b, MRW_MV_I16);
    bb_u8(&b, 0xfe);
    bb_u8(&b, 0xff);
    CHECK_OK(open_bb(&b, &f, &e), &e);
    if (f) {
        const mrw_meta *m = mrw_tfile_find_meta(f, "e");
        CHECK(m && m->type == MRW_MV_ARRAY && m->count == 0);
        m = mrw_tfile_find_meta(f, "g");
        CHECK(m && m->v.i == -2);
    }
    mrw_tfile_close(f);
    /* tensors with zero elements, or 0 dims, at the end of the file */
    b.n = 0;
    bb_header(&b, 2, 0);
    bb_tinfo(&b, "z", 2, (uint64_t[]){0, 5}, 0, 0);
    bb_tinfo(&b, "s", 0, NULL, 0, 0);
    bb_pad(&b, 32);
    float one = 1.0f;
    bb_put(&b, &one, 4);
    CHECK_OK(open_bb(&b, &f, &e), &e);
    if (f) {
        const mrw_tensor_info *z = mrw_tfile_find(f, "z"), *s = mrw_tfile_find(f, "s");
        CHECK(z && z->nbytes == 0 && z->ndim == 2 && z->shape[0] == 5 && z->shape[1] == 0);
        CHECK(s && s->nbytes == 4 && s->ndim == 0 && ld_f32(s->data, 0) == 1.0f);
    }
    mrw_tfile_close(f);
    /* empty, but the other dimensions must still multiply within int64 (found by fuzzing) */
    b.n = 0;
    bb_header(&b, 1, 0);
    bb_tinfo(&b, "e", 3, (uint64_t[]){1ULL << 40, 1ULL << 40, 0}, 0, 0);
    EXPECT_FAIL(&b, MRW_E_FORMAT, "product exceeds 2^63");
    b.n = 0;
    bb_header(&b, 1, 0);
    bb_tinfo(&b, "e", 3, (uint64_t[]){1ULL << 31, 1ULL << 31, 0}, 0, 0);
    bb_pad(&b, 32);
    CHECK_OK(open_bb(&b, &f, &e), &e);
    if (f) CHECK(mrw_tensor_numel(mrw_tfile_tensor(f, 0)) == 0);
    mrw_tfile_close(f);
    /* a quantized scalar is impossible */
    b.n = 0;
    bb_header(&b, 1, 0);
    bb_tinfo(&b, "qs", 0, NULL, 8, 0);
    bb_pad(&b, 32);
    for (int i = 0; i < 34; i++) bb_u8(&b, 0);
    EXPECT_FAIL(&b, MRW_E_FORMAT, "scalar");
    /* a small general.alignment leaves an f64 tensor misaligned in memory: it is copied, not rejected */
    double dv[2] = {1.25, -3.5};
    bb c = {0};
    bb_header(&c, 1, 1);
    bb_str(&c, "general.alignment");
    bb_u32(&c, MRW_MV_U32);
    bb_u32(&c, 1);
    size_t hdr = c.n + 8 + 1 + 4 + 8 + 4 + 8;
    uint64_t pad = (3 + 8 - hdr % 8) % 8; /* data at an address == 3 (mod 8) from the buffer start */
    bb_tinfo(&c, "d", 1, (uint64_t[]){2}, 28, pad);
    for (uint64_t i = 0; i < pad; i++) bb_u8(&c, 0);
    bb_put(&c, dv, sizeof dv);
    uint8_t *al = aligned_alloc(64, (c.n + 63) / 64 * 64);
    memcpy(al, c.p, c.n);
    memset(&e, 0, sizeof e);
    CHECK_OK(mrw_gguf_open_mem(al, c.n, &f, &e), &e);
    if (f) {
        const mrw_tensor_info *d = mrw_tfile_find(f, "d");
        CHECK(d && (uintptr_t)d->data % 8 == 0);
        CHECK(d && ((const double *)d->data)[0] == 1.25 && ((const double *)d->data)[1] == -3.5);
    }
    mrw_tfile_close(f);
    free(al);
    free(c.p);
    free(b.p);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/mrw-test-gguf-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_fixtures();
    test_quantizers_match_gguf_py();
    test_round_trip(32);
    test_round_trip(128);
    test_writer_rejects();
    test_truncations();
    test_header_fields();
    test_metadata_edge_cases();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    TEST_MAIN_END();
}
