/* safetensors reader and writer: a fixture written by the `safetensors` Python package
 * (tests/reference/make_format_fixtures.py), round trips of every dtype, and hostile headers. Run from the
 * repository root. */
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

/* A file image: 8-byte length, the header text as given (no padding), then dlen data bytes. */
typedef struct {
    uint8_t *p;
    size_t n;
} img;

static img make(const char *json, const void *data, size_t dlen) {
    size_t h = strlen(json);
    img m = {malloc(8 + h + dlen + 1), 8 + h + dlen};
    for (int i = 0; i < 8; i++) m.p[i] = (uint8_t)((uint64_t)h >> 8 * i);
    memcpy(m.p + 8, json, h);
    if (dlen) {
        if (data)
            memcpy(m.p + 8 + h, data, dlen);
        else
            memset(m.p + 8 + h, 0, dlen);
    }
    return m;
}

static void expect(const char *json, const void *data, size_t dlen, mrw_status want, const char *msg,
                   int line) {
    img m = make(json, data, dlen);
    mrw_tfile *f = NULL;
    mrw_error e = {0};
    mrw_status s = mrw_safetensors_open_mem(m.p, m.n, &f, &e);
    CHECKF(s == want, "line %d: status %s (%s), wanted %s", line, mrw_status_name(s), e.msg,
           mrw_status_name(want));
    if (want != MRW_OK) CHECKF(f == NULL, "line %d: a file handle came back with an error", line);
    if (msg) CHECKF(has_msg(&e, msg), "line %d: message '%s' lacks '%s'", line, e.msg, msg);
    mrw_tfile_close(f);
    free(m.p);
}
#define EXPECT(json, data, dlen, want, msg) expect(json, data, dlen, want, msg, __LINE__)
#define T1(name, dtype, shape, offs)                                                                         \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

/* -------------------------------------------------------------------------------------------- fixture */

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

static void test_fixture(void) {
    mrw_tfile *f = NULL;
    mrw_error e = {0};
    CHECK(mrw_tfile_detect(FIX "dtypes.safetensors") == MRW_FMT_SAFETENSORS);
    CHECK_OK(mrw_tfile_open(FIX "dtypes.safetensors", &f, &e), &e);
    if (!f) return;
    CHECK(mrw_tfile_format(f) == MRW_FMT_SAFETENSORS);
    CHECK(mrw_tfile_count(f) == 13);
    const mrw_meta *m = mrw_tfile_find_meta(f, "note");
    const char *note = "\xc3\xbcn\xc3\xaf"
                       "c\xc3\xb6"
                       "d\xc3\xa9 \xe2\x9c\x93 \"quoted\"\n";
    CHECK(m && m->type == MRW_MV_STRING && m->v.s.len == strlen(note) &&
          !memcmp(m->v.s.ptr, note, m->v.s.len));
    CHECK(mrw_tfile_meta_count(f) == 1);
    const mrw_tensor_info *t;
    if ((t = tensor_of(f, "f64", MRW_DT_F64, 2, (int64_t[]){2, 3}))) {
        const double *d = t->data;
        for (int i = 0; i < 6; i++) CHECK(d[i] == -0.5 + 0.25 * i);
    }
    if ((t = tensor_of(f, "f32", MRW_DT_F32, 2, (int64_t[]){3, 4})))
        for (int i = 0; i < 12; i++) CHECK(ld_f32(t->data, i) == i * 0.5f - 3.0f);
    if ((t = tensor_of(f, "f16", MRW_DT_F16, 1, (int64_t[]){5}))) {
        static const float want[] = {-2, -1, 0, 1, 2.5f};
        for (int i = 0; i < 5; i++) CHECK(mrw_f16_to_f32(((const uint16_t *)t->data)[i]) == want[i]);
    }
    if ((t = tensor_of(f, "bf16", MRW_DT_BF16, 2, (int64_t[]){2, 2}))) {
        static const float want[] = {1.5f, -2.0f, 0.0078125f, 256.0f};
        for (int i = 0; i < 4; i++) CHECK(mrw_bf16_to_f32(((const uint16_t *)t->data)[i]) == want[i]);
    }
    if ((t = tensor_of(f, "i64", MRW_DT_I64, 1, (int64_t[]){3}))) {
        const int64_t *d = t->data;
        CHECK(d[0] == -(1LL << 40) && d[1] == 0 && d[2] == (1LL << 40) + 7);
    }
    if ((t = tensor_of(f, "i32", MRW_DT_I32, 2, (int64_t[]){2, 2}))) {
        const int32_t *d = t->data;
        CHECK(d[0] == -7 && d[1] == 0 && d[2] == 7 && d[3] == INT32_MAX);
    }
    if ((t = tensor_of(f, "i16", MRW_DT_I16, 1, (int64_t[]){4}))) {
        const int16_t *d = t->data;
        CHECK(d[0] == -32768 && d[1] == -1 && d[2] == 1 && d[3] == 32767);
    }
    if ((t = tensor_of(f, "i8", MRW_DT_I8, 1, (int64_t[]){4}))) {
        const int8_t *d = t->data;
        CHECK(d[0] == -128 && d[1] == -1 && d[2] == 0 && d[3] == 127);
    }
    if ((t = tensor_of(f, "u8", MRW_DT_U8, 1, (int64_t[]){3}))) {
        const uint8_t *d = t->data;
        CHECK(d[0] == 0 && d[1] == 128 && d[2] == 255);
    }
    if ((t = tensor_of(f, "bool", MRW_DT_BOOL, 1, (int64_t[]){3}))) {
        const uint8_t *d = t->data;
        CHECK(d[0] == 1 && d[1] == 0 && d[2] == 1);
    }
    if ((t = tensor_of(f, "empty", MRW_DT_F32, 2, (int64_t[]){0, 4}))) CHECK(t->nbytes == 0);
    if ((t = tensor_of(f, "scalar", MRW_DT_F32, 0, NULL)))
        CHECK(t->nbytes == 4 && ld_f32(t->data, 0) == 42.0f);
    if ((t = tensor_of(f, "blocks.0.att.key.weight", MRW_DT_BF16, 2, (int64_t[]){2, 2})))
        CHECK(mrw_bf16_to_f32(((const uint16_t *)t->data)[3]) == 4.0f);
    /* tensors come in header order; the reference writer puts them in data order */
    CHECK(!strcmp(mrw_tfile_tensor(f, 0)->name, "i64"));
    /* zero copy: tensors point into the file's mapping */
    mrw_tfile_close(f);

    size_t len;
    unsigned char *buf = t_read_file(FIX "dtypes.safetensors", &len);
    CHECK_OK(mrw_safetensors_open_mem(buf, len, &f, &e), &e);
    if (f) {
        t = mrw_tfile_find(f, "f32");
        CHECK(t && (const unsigned char *)t->data > buf && (const unsigned char *)t->data < buf + len);
        mrw_tfile_close(f);
    }
    free(buf);
    CHECK(mrw_safetensors_open("tests/fixtures/formats/nope.safetensors", &f, &e) == MRW_E_IO && !f);
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

static void test_round_trip(void) {
    double f64[3] = {1e-300, -2.0, 7.25};
    float f32[12];
    for (int i = 0; i < 12; i++) f32[i] = sinf((float)i);
    uint16_t f16[3] = {0x3c00, 0xc000, 0x7bff}, b16[5] = {0x3f80, 0xbf80, 0x0001, 0x7f80, 0x4049};
    int64_t i64[2] = {INT64_MIN, INT64_MAX};
    int32_t i32[3] = {-1, 0, 1};
    int16_t i16[1] = {-300};
    int8_t i8[5] = {-128, -1, 0, 1, 127};
    uint8_t u8[3] = {0, 7, 255}, bl[2] = {1, 0};
    uint8_t one8[1 << 8];
    for (int i = 0; i < 256; i++) one8[i] = (uint8_t)i;
    mrw_tensor_info t[] = {
        {"u8", MRW_DT_U8, 1, {3}, u8, 3},
        {"f16", MRW_DT_F16, 1, {3}, f16, 6},
        {"model.f32", MRW_DT_F32, 2, {3, 4}, f32, sizeof f32},
        {"bool", MRW_DT_BOOL, 1, {2}, bl, 2},
        {"i32 odd", MRW_DT_I32, 1, {3}, i32, 12},
        {"f64", MRW_DT_F64, 1, {3}, f64, sizeof f64},
        {"bf16", MRW_DT_BF16, 2, {1, 5}, b16, 10},
        {"i64", MRW_DT_I64, 1, {2}, i64, 16},
        {"i16", MRW_DT_I16, 0, {0}, i16, 2},
        {"i8", MRW_DT_I8, 1, {5}, i8, 5},
        {"empty", MRW_DT_F32, 3, {4, 0, 2}, NULL, 0},
        {"rank8", MRW_DT_U8, 8, {2, 2, 2, 2, 2, 2, 2, 2}, one8, 256},
        {"name \"with\" \\ escapes\t\xc3\xa9\x01", MRW_DT_F32, 1, {1}, f32, 4},
    };
    int nt = (int)(sizeof t / sizeof t[0]);
    mrw_meta m[] = {
        {.key = "format", .type = MRW_MV_STRING, .v.s = {"pt", 2}},
        {.key = "empty", .type = MRW_MV_STRING, .v.s = {NULL, 0}},
        {.key = "json \"in\" key", .type = MRW_MV_STRING, .v.s = {"{\"a\": [1, 2]}\n\x7f\xe2\x9c\x93", 18}},
    };
    int nm = 3;
    char path[128];
    snprintf(path, sizeof path, "%s/rt.safetensors", g_tmp);
    mrw_error e = {0};
    prog p = {0, 0, 0, 1};
    CHECK_OK(mrw_safetensors_write(path, t, nt, m, nm, on_progress, &p, &e), &e);
    size_t len = 0;
    unsigned char *buf = t_read_file(path, &len);
    CHECK(buf && p.calls >= 2 && p.monotonic && p.last == len && p.total == len);
    if (!buf) return;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    CHECK((8 + hl) % 8 == 0);
    /* the data block has no gaps and no trailing bytes (the reference reader insists) */
    size_t total = 0;
    for (int i = 0; i < nt; i++) total += t[i].nbytes;
    CHECK(len == 8 + hl + total);
    CHECK(buf[8] == '{' && !memcmp(buf + 9, "\"__metadata__\"", 14));
    mrw_tfile *f = NULL;
    CHECK_OK(mrw_safetensors_open_mem(buf, len, &f, &e), &e);
    if (f) {
        CHECK(mrw_tfile_count(f) == nt);
        for (int i = 0; i < nt && i < mrw_tfile_count(f); i++) {
            const mrw_tensor_info *r = mrw_tfile_tensor(f, i);
            int ok = !strcmp(r->name, t[i].name) && r->dtype == t[i].dtype && r->ndim == t[i].ndim &&
                     r->nbytes == t[i].nbytes && (!r->nbytes || !memcmp(r->data, t[i].data, r->nbytes));
            for (int d = 0; ok && d < r->ndim; d++) ok = r->shape[d] == t[i].shape[d];
            CHECKF(ok, "round trip of tensor %s", t[i].name);
            size_t off = (size_t)((const unsigned char *)r->data - buf);
            /* alignment: 8 for sizes that are multiples of 8, the element size for the rest */
            if (r->nbytes % 8 == 0) CHECKF(off % 8 == 0, "%s at offset %zu", r->name, off);
            CHECKF(off % mrw_dtype_block_bytes(r->dtype) == 0, "%s at offset %zu", r->name, off);
            CHECKF(r->data == NULL || !r->nbytes || (off >= 8 + hl && off + r->nbytes <= len),
                   "%s in the file", r->name);
        }
        CHECK(mrw_tfile_meta_count(f) == nm);
        for (int i = 0; i < nm && i < mrw_tfile_meta_count(f); i++) {
            const mrw_meta *r = mrw_tfile_meta(f, i);
            CHECKF(!strcmp(r->key, m[i].key) && r->type == MRW_MV_STRING && r->v.s.len == m[i].v.s.len &&
                       (!r->v.s.len || !memcmp(r->v.s.ptr, m[i].v.s.ptr, r->v.s.len)),
                   "metadata %s", m[i].key);
        }
        mrw_tfile_close(f);
    }
    free(buf);
    /* nothing at all is a valid file too */
    CHECK_OK(mrw_safetensors_write(path, NULL, 0, NULL, 0, NULL, NULL, &e), &e);
    CHECK_OK(mrw_safetensors_open(path, &f, &e), &e);
    CHECK(f && mrw_tfile_count(f) == 0);
    mrw_tfile_close(f);
}

/* Tensors of sizes that are not multiples of 8, in an order that would misalign them if written as given. */
static void test_writer_placement(void) {
    uint8_t a[3] = {1, 2, 3};
    uint16_t b[3] = {4, 5, 6};
    float c[3] = {7, 8, 9};
    double d[1] = {10};
    mrw_tensor_info t[] = {
        {"a", MRW_DT_U8, 1, {3}, a, 3},
        {"b", MRW_DT_F16, 1, {3}, b, 6},
        {"c", MRW_DT_F32, 1, {3}, c, 12},
        {"d", MRW_DT_F64, 1, {1}, d, 8},
    };
    char path[128];
    snprintf(path, sizeof path, "%s/place.safetensors", g_tmp);
    mrw_error e = {0};
    CHECK_OK(mrw_safetensors_write(path, t, 4, NULL, 0, NULL, NULL, &e), &e);
    size_t len;
    unsigned char *buf = t_read_file(path, &len);
    mrw_tfile *f = NULL;
    if (buf) CHECK_OK(mrw_safetensors_open_mem(buf, len, &f, &e), &e);
    if (f) {
        for (int i = 0; i < 4; i++) {
            const mrw_tensor_info *r = mrw_tfile_tensor(f, i);
            CHECK(!strcmp(r->name, t[i].name) && !memcmp(r->data, t[i].data, t[i].nbytes));
            /* still zero copy: nothing had to be copied to align it */
            CHECK((const unsigned char *)r->data >= buf && (const unsigned char *)r->data < buf + len);
            CHECK(((const unsigned char *)r->data - buf) % mrw_dtype_block_bytes(r->dtype) == 0);
        }
        mrw_tfile_close(f);
    }
    free(buf);
}

static void expect_write_fail(const mrw_tensor_info *t, int n, const mrw_meta *m, int nm, mrw_status want,
                              const char *msg, int line) {
    char path[128];
    snprintf(path, sizeof path, "%s/bad.safetensors", g_tmp);
    mrw_error e = {0};
    mrw_status s = mrw_safetensors_write(path, t, n, m, nm, NULL, NULL, &e);
    CHECKF(s == want, "line %d: status %s (%s), wanted %s", line, mrw_status_name(s), e.msg,
           mrw_status_name(want));
    if (msg) CHECKF(has_msg(&e, msg), "line %d: message '%s' lacks '%s'", line, e.msg, msg);
    CHECKF(!file_exists(path), "line %d: a failed write left a file", line);
}
#define EXPECT_WRITE_FAIL(t, n, m, nm, want, msg) expect_write_fail(t, n, m, nm, want, msg, __LINE__)

static void test_writer_rejects(void) {
    float x[32] = {0};
    mrw_block_q8_0 q8[1];
    mrw_block_q4_0 q4[1];
    mrw_quantize_q8_0(x, q8, 32);
    mrw_quantize_q4_0(x, q4, 32);
    mrw_tensor_info ok = {"x", MRW_DT_F32, 1, {32}, x, sizeof x}, t;
    t = (mrw_tensor_info){"q", MRW_DT_Q8_0, 1, {32}, q8, sizeof q8};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_UNSUPPORTED, "safetensors cannot hold q8_0; write GGUF");
    t = (mrw_tensor_info){"q", MRW_DT_Q4_0, 1, {32}, q4, sizeof q4};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_UNSUPPORTED, "safetensors cannot hold q4_0; write GGUF");
    t = (mrw_tensor_info){"sz", MRW_DT_F32, 1, {32}, x, 64};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_ARG, "needs 128");
    t = (mrw_tensor_info){"neg", MRW_DT_F32, 1, {-2}, x, 0};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_ARG, "negative");
    t = (mrw_tensor_info){"__metadata__", MRW_DT_F32, 1, {32}, x, sizeof x};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_ARG, "__metadata__");
    t = (mrw_tensor_info){"bad\xff", MRW_DT_F32, 1, {32}, x, sizeof x};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_ARG, "UTF-8");
    t = (mrw_tensor_info){"bad", (mrw_dtype)99, 1, {32}, x, sizeof x};
    EXPECT_WRITE_FAIL(&t, 1, NULL, 0, MRW_E_ARG, "invalid dtype");
    mrw_tensor_info two[2] = {ok, ok};
    EXPECT_WRITE_FAIL(two, 2, NULL, 0, MRW_E_ARG, "appears more than once");
    mrw_meta m = {.key = "n", .type = MRW_MV_U32, .v.i = 5};
    EXPECT_WRITE_FAIL(&ok, 1, &m, 1, MRW_E_UNSUPPORTED, "metadata are strings");
    m = (mrw_meta){.key = "s", .type = MRW_MV_STRING, .v.s = {"a\0b", 3}};
    EXPECT_WRITE_FAIL(&ok, 1, &m, 1, MRW_E_ARG, "NUL");
    m = (mrw_meta){.key = "s", .type = MRW_MV_STRING, .v.s = {"\xc0\xaf", 2}};
    EXPECT_WRITE_FAIL(&ok, 1, &m, 1, MRW_E_ARG, "UTF-8");
    mrw_meta dup[2] = {{.key = "k", .type = MRW_MV_STRING, .v.s = {"a", 1}},
                       {.key = "k", .type = MRW_MV_STRING, .v.s = {"b", 1}}};
    EXPECT_WRITE_FAIL(&ok, 1, dup, 2, MRW_E_ARG, "appears more than once");
    mrw_error e = {0};
    CHECK(mrw_safetensors_write("/nonexistent-dir/x.safetensors", &ok, 1, NULL, 0, NULL, NULL, &e) ==
          MRW_E_IO);
}

/* ----------------------------------------------------------------------------------------- hostile input */

static void test_truncations(void) {
    float v[4] = {1, 2, 3, 4};
    const char *json = "{\"__metadata__\":{\"k\":\"v\"}," T1("a", "F32", "[2,2]", "[0,16]") "}";
    img m = make(json, v, sizeof v);
    int wrong = 0;
    for (size_t n = 0; n <= m.n; n++) {
        uint8_t *p = malloc(n ? n : 1); /* exactly n bytes, so ASan sees any overread */
        memcpy(p, m.p, n);
        mrw_tfile *f = NULL;
        mrw_error e = {0};
        mrw_status s = mrw_safetensors_open_mem(p, n, &f, &e);
        int ok = n == m.n ? s == MRW_OK : (s == MRW_E_FORMAT && e.msg[0] && !f);
        if (!ok && wrong++ < 5) fprintf(stderr, "truncation at %zu: %s: %s\n", n, mrw_status_name(s), e.msg);
        mrw_tfile_close(f);
        free(p);
    }
    CHECKF(wrong == 0, "%d truncations misjudged", wrong);
    free(m.p);
    /* the length field itself */
    img s = make("{}", NULL, 0);
    for (int i = 0; i < 8; i++) s.p[i] = 0xff;
    mrw_tfile *f = NULL;
    mrw_error e = {0};
    CHECK(mrw_safetensors_open_mem(s.p, s.n, &f, &e) == MRW_E_LIMIT && has_msg(&e, "100 MB"));
    s.p[0] =
        3; /* 3 bytes of header, but the length is in the little-endian low byte only when the rest is 0 */
    for (int i = 1; i < 8; i++) s.p[i] = 0;
    CHECK(mrw_safetensors_open_mem(s.p, s.n, &f, &e) == MRW_E_FORMAT && has_msg(&e, "runs past the end"));
    s.p[0] = 100;
    s.p[1] = 0x10; /* ~4 KB */
    CHECK(mrw_safetensors_open_mem(s.p, s.n, &f, &e) == MRW_E_FORMAT && has_msg(&e, "runs past the end"));
    CHECK(mrw_safetensors_open_mem(s.p, 5, &f, &e) == MRW_E_FORMAT && has_msg(&e, "8-byte header length"));
    s.p[0] = 1;
    s.p[1] = 0;
    CHECK(mrw_safetensors_open_mem(s.p, s.n, &f, &e) == MRW_E_FORMAT &&
          has_msg(&e, "cannot hold a JSON object"));
    /* exactly at the limit is allowed through to the JSON check; one byte more is refused */
    uint64_t lim = 100000000, over = lim + 1;
    for (int i = 0; i < 8; i++) s.p[i] = (uint8_t)(over >> 8 * i);
    CHECK(mrw_safetensors_open_mem(s.p, s.n, &f, &e) == MRW_E_LIMIT);
    free(s.p);
}

static void test_hostile_headers(void) {
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    /* sanity: a good one */
    EXPECT("{" T1("a", "F32", "[2]", "[0,8]") "}", v, 8, MRW_OK, NULL);
    EXPECT("  \n{" T1("a", "F32", "[2]", "[0,8]") "}   \t\n", v, 8, MRW_OK, NULL);
    /* JSON and UTF-8 */
    EXPECT("{\"a\xff\":{}}", NULL, 0, MRW_E_FORMAT, "not valid UTF-8 (byte 3");
    EXPECT("{\"\xc0\xaf\":{}}", NULL, 0, MRW_E_FORMAT, "UTF-8");         /* overlong '/' */
    EXPECT("{\"\xed\xa0\x80\":{}}", NULL, 0, MRW_E_FORMAT, "UTF-8");     /* a surrogate */
    EXPECT("{\"\xf4\x90\x80\x80\":{}}", NULL, 0, MRW_E_FORMAT, "UTF-8"); /* above U+10FFFF */
    EXPECT("{\"\xe2\x9c\":{}}", NULL, 0, MRW_E_FORMAT, "UTF-8");         /* cut short */
    EXPECT("{\"a\":", NULL, 0, MRW_E_FORMAT, "not valid JSON");
    EXPECT("[1,2]", NULL, 0, MRW_E_FORMAT, "not a JSON object");
    EXPECT("\"str\"", NULL, 0, MRW_E_FORMAT, "not a JSON object");
    EXPECT("{} {}", NULL, 0, MRW_E_FORMAT, "data after its JSON object");
    EXPECT("{}x", NULL, 0, MRW_E_FORMAT, "data after its JSON object");
    EXPECT("{\"a\":\"b\x01\"}", NULL, 0, MRW_E_FORMAT, "control character");
    EXPECT("{\x01}", NULL, 0, MRW_E_FORMAT, "control character");
    EXPECT("{\"a\\u0000b\":{}}", NULL, 0, MRW_E_FORMAT, "\\u0000");
    EXPECT("{\"a\\ud800\":{}}", NULL, 0, MRW_E_FORMAT, "not valid JSON");
    EXPECT("{\"a\\u00", NULL, 0, MRW_E_FORMAT, NULL);
    EXPECT("{\"a\\", NULL, 0, MRW_E_FORMAT, NULL);
    {
        /* embedded NUL bytes in the header */
        img m = make("{\"a\":{}}  ", NULL, 0);
        m.p[8 + 8] = 0;
        mrw_tfile *f = NULL;
        mrw_error e = {0};
        CHECK(mrw_safetensors_open_mem(m.p, m.n, &f, &e) == MRW_E_FORMAT && has_msg(&e, "control character"));
        free(m.p);
    }
    /* names */
    EXPECT("{" T1("a", "F32", "[1]", "[0,4]") "," T1("a", "F32", "[1]", "[4,8]") "}", v, 8, MRW_E_FORMAT,
           "name 'a' appears more than once");
    EXPECT("{\"__metadata__\":{},\"__metadata__\":{}}", NULL, 0, MRW_E_FORMAT, "'__metadata__' appears more");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", v, 4,
           MRW_E_FORMAT, "tensor 'a': field 'dtype' appears more than once");
    /* entries */
    EXPECT("{\"a\":[]}", NULL, 0, MRW_E_FORMAT, "tensor 'a': entry is not a JSON object");
    EXPECT("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", v, 4, MRW_E_FORMAT, "lacks a dtype");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", v, 4, MRW_E_FORMAT, "lacks a shape");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", v, 4, MRW_E_FORMAT, "lacks data_offsets");
    EXPECT("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", v, 4, MRW_E_FORMAT, "not a string");
    EXPECT("{" T1("a", "Q9", "[1]", "[0,4]") "}", v, 4, MRW_E_FORMAT, "unknown dtype 'Q9'");
    EXPECT("{" T1("w", "F8_E4M3", "[4]", "[0,4]") "}", v, 4, MRW_E_UNSUPPORTED,
           "tensor 'w' has dtype F8_E4M3");
    EXPECT("{" T1("w", "U16", "[2]", "[0,4]") "}", v, 4, MRW_E_UNSUPPORTED, "U16");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", v, 4, MRW_E_FORMAT,
           "shape is not an array");
    EXPECT("{" T1("a", "F32", "[-1]", "[0,4]") "}", v, 4, MRW_E_FORMAT, "'-1' is not a non-negative integer");
    EXPECT("{" T1("a", "F32", "[1.5]", "[0,4]") "}", v, 4, MRW_E_FORMAT, "not a non-negative integer");
    EXPECT("{" T1("a", "F32", "[1e0]", "[0,4]") "}", v, 4, MRW_E_FORMAT, "not a non-negative integer");
    EXPECT("{" T1("a", "F32", "[\"1\"]", "[0,4]") "}", v, 4, MRW_E_FORMAT, "shape[0]");
    EXPECT("{" T1("a", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", v, 4, MRW_E_UNSUPPORTED, "9 dimensions");
    EXPECT("{" T1("a", "F32", "[1,1,1,1,1,1,1,1]", "[0,4]") "}", v, 4, MRW_OK, NULL);
    EXPECT("{" T1("a", "F32", "[9007199254740992]", "[0,4]") "}", v, 4, MRW_E_FORMAT, "below 2^53");
    EXPECT("{" T1("a", "F32", "[4294967296,4294967296]", "[0,4]") "}", v, 4, MRW_E_FORMAT, "overflows");
    /* empty, but mrw_tensor_numel could not multiply the dimensions without overflow */
    EXPECT("{" T1("a", "F32", "[4294967296,4294967296,0]", "[0,0]") "}", NULL, 0, MRW_E_FORMAT, "overflows");
    EXPECT("{" T1("a", "F32", "[0,4294967296,4294967296]", "[0,0]") "}", NULL, 0, MRW_E_FORMAT, "overflows");
    EXPECT("{" T1("a", "F32", "[0,2147483648,536870912]", "[0,0]") "}", NULL, 0, MRW_OK, NULL);
    /* offsets */
    EXPECT("{" T1("a", "F32", "[1]", "[4]") "}", v, 4, MRW_E_FORMAT, "not a pair");
    EXPECT("{" T1("a", "F32", "[1]", "[0,4,8]") "}", v, 8, MRW_E_FORMAT, "not a pair");
    EXPECT("{" T1("a", "F32", "[1]", "{}") "}", v, 4, MRW_E_FORMAT, "not a pair");
    EXPECT("{" T1("a", "F32", "[1]", "[8,4]") "}", v, 8, MRW_E_FORMAT, "end before they begin");
    EXPECT("{" T1("a", "F32", "[1]", "[4,8]") "}", v, 4, MRW_E_FORMAT, "run past the data block (4 bytes)");
    EXPECT("{" T1("a", "F32", "[1]", "[0,18446744073709551615]") "}", v, 4, MRW_E_FORMAT, "not a pair");
    EXPECT("{" T1("a", "F32", "[1]", "[9007199254740993,9007199254740997]") "}", v, 4, MRW_E_FORMAT,
           "not a pair");
    EXPECT("{" T1("a", "F32", "[2]", "[0,4]") "}", v, 4, MRW_E_FORMAT, "hold 4 bytes but a F32 tensor");
    EXPECT("{" T1("a", "F32", "[2]", "[0,8]") "," T1("b", "F32", "[2]", "[4,12]") "}", v, 12, MRW_E_FORMAT,
           "overlap");
    EXPECT("{" T1("a", "F32", "[2]", "[4,12]") "," T1("b", "F32", "[1]", "[0,8]") "}", v, 12, MRW_E_FORMAT,
           NULL);
    EXPECT("{" T1("a", "F32", "[0]", "[4,4]") "," T1("b", "F32", "[2]", "[0,8]") "}", v, 8, MRW_OK, NULL);
    /* gaps and trailing bytes are accepted (the reference rejects them, but they are harmless) */
    EXPECT("{" T1("a", "F32", "[1]", "[4,8]") "}", v, 32, MRW_OK, NULL);
    /* metadata */
    EXPECT("{\"__metadata__\":[]}", NULL, 0, MRW_E_FORMAT, "__metadata__ is not a JSON object");
    EXPECT("{\"__metadata__\":{\"n\":5}}", NULL, 0, MRW_E_FORMAT, "value of 'n' is not a string");
    EXPECT("{\"__metadata__\":{\"n\":{}}}", NULL, 0, MRW_E_FORMAT, "not a string");
    EXPECT("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", NULL, 0, MRW_E_FORMAT,
           "key 'k' appears more than once");
    /* unknown fields in an entry are ignored, as the reference does */
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":[true,null]}}", v, 4,
           MRW_OK, NULL);
    /* deep nesting does not exhaust the stack */
    {
        char deep[4200];
        size_t k = 0;
        deep[k++] = '{';
        deep[k++] = '"', deep[k++] = 'x', deep[k++] = '"', deep[k++] = ':';
        for (int i = 0; i < 2000; i++) deep[k++] = '[';
        for (int i = 0; i < 2000; i++) deep[k++] = ']';
        deep[k++] = '}';
        deep[k] = 0;
        EXPECT(deep, NULL, 0, MRW_E_FORMAT, NULL);
    }
}

/* A header of many tiny JSON values would make cJSON allocate gigabytes: refused before parsing. */
static void test_value_limit(void) {
    size_t n = ((size_t)8 << 20) + 16, k = 0;
    char *j = malloc(2 * n + 64);
    k += (size_t)sprintf(j, "{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0],\"pad\":[");
    for (size_t i = 0; i < n; i++) j[k++] = '0', j[k++] = ',';
    k += (size_t)sprintf(j + k - 1, "]}}") - 1;
    j[k] = 0;
    EXPECT(j, NULL, 0, MRW_E_LIMIT, "more than 8388608 JSON values");
    free(j);
}

/* An F32 tensor at an odd offset is legal; it comes back aligned (copied), with the right values. */
static void test_misaligned(void) {
    uint8_t data[13] = {0};
    float x[3] = {1.5f, -2.0f, 3.25f};
    memcpy(data + 1, x, 12);
    img m = make("{" T1("x", "F32", "[3]", "[1,13]") "}", data, 13);
    mrw_tfile *f = NULL;
    mrw_error e = {0};
    CHECK_OK(mrw_safetensors_open_mem(m.p, m.n, &f, &e), &e);
    if (f) {
        const mrw_tensor_info *t = mrw_tfile_find(f, "x");
        CHECK(t && (uintptr_t)t->data % 4 == 0 && !memcmp(t->data, x, 12));
        mrw_tfile_close(f);
    }
    free(m.p);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/mrw-test-st-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_fixture();
    test_round_trip();
    test_writer_placement();
    test_writer_rejects();
    test_truncations();
    test_hostile_headers();
    test_misaligned();
    test_value_limit();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    TEST_MAIN_END();
}
