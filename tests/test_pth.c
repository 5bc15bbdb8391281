/* Tests of the PyTorch .pth reader/writer, its zip layer and its restricted unpickler.
 * Fixtures: tests/fixtures/pth (made by tests/reference/make_pth_fixtures.py with real torch.save) and the
 * shared tiny RWKV-7 checkpoint. Set MRW_PTH_KEEP=<dir> to keep the round-tripped files for checking them
 * with torch.load (see the script's header). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "formats/pickle.h"
#include "formats/tfile_impl.h"
#include "formats/zip.h"
#include "tensor/dtype.h"
#include "test.h"

#define FIX "tests/fixtures/pth/"

/* ----------------------------------------------------------------------------------------- helpers */

static double elem(const mrw_tensor_info *t, size_t i) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case MRW_DT_F32: { float v; memcpy(&v, p + 4 * i, 4); return v; }
    case MRW_DT_F64: { double v; memcpy(&v, p + 8 * i, 8); return v; }
    case MRW_DT_F16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return mrw_f16_to_f32(v); }
    case MRW_DT_BF16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return mrw_bf16_to_f32(v); }
    case MRW_DT_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    case MRW_DT_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case MRW_DT_I16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case MRW_DT_I8: return (int8_t)p[i];
    case MRW_DT_U8: case MRW_DT_BOOL: return p[i];
    default: return NAN;
    }
}

static cJSON *load_json(const char *path) {
    unsigned char *b = t_read_file(path, NULL);
    if (!b) return NULL;
    cJSON *j = cJSON_Parse((const char *)b);
    free(b);
    return j;
}

static int in_mapping(const mrw_tfile *f, const void *p) {
    const uint8_t *q = p;
    return f->map.data && q >= f->map.data && q < f->map.data + f->map.size;
}

/* Checks that file f holds exactly the tensors described in JSON (name, dtype, shape, values), in order. */
static void check_against(const char *what, const mrw_tfile *f, const cJSON *list) {
    int n = cJSON_GetArraySize(list);
    CHECKF(mrw_tfile_count(f) == n, "%s: %d tensors, expected %d", what, mrw_tfile_count(f), n);
    for (int i = 0; i < n && i < mrw_tfile_count(f); i++) {
        const cJSON *e = cJSON_GetArrayItem(list, i);
        const mrw_tensor_info *t = mrw_tfile_tensor(f, i);
        const char *name = cJSON_GetObjectItem(e, "name")->valuestring;
        CHECKF(!strcmp(t->name, name), "%s: tensor %d is '%s', expected '%s'", what, i, t->name, name);
        CHECKF(mrw_tfile_find(f, name) == t, "%s: find('%s')", what, name);
        const char *dt = cJSON_GetObjectItem(e, "dtype")->valuestring;
        CHECKF(!strcmp(mrw_dtype_name(t->dtype), dt), "%s: %s dtype %s", what, name,
               mrw_dtype_name(t->dtype));
        const cJSON *shape = cJSON_GetObjectItem(e, "shape");
        CHECKF(t->ndim == cJSON_GetArraySize(shape), "%s: %s ndim %d", what, name, t->ndim);
        for (int d = 0; d < t->ndim && d < cJSON_GetArraySize(shape); d++)
            CHECKF(t->shape[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble,
                                                              "%s: %s shape[%d]", what,
                   name, d);
        const cJSON *vals = cJSON_GetObjectItem(e, "values");
        int64_t numel = mrw_tensor_numel(t);
        CHECKF(numel == cJSON_GetArraySize(vals), "%s: %s numel %lld", what, name, (long long)numel);
        CHECK(t->nbytes == (size_t)numel * mrw_dtype_block_bytes(t->dtype));
        int bad = 0;
        for (int64_t k = 0; k < numel && k < cJSON_GetArraySize(vals); k++)
            bad += elem(t, (size_t)k) != cJSON_GetArrayItem(vals, (int)k)->valuedouble;
        CHECKF(bad == 0, "%s: %s: %d values differ", what, name, bad);
        CHECK(t->data != NULL);
        CHECK(t->nbytes == 0 || (uintptr_t)t->data % mrw_dtype_block_bytes(t->dtype) == 0);
    }
}

static const char *valid_fixtures[] = {"dtypes.pth", "views.pth", "ordered.pth", "plain.pth", "nested.pth",
                                       "param.pth", "proto4.pth", "unaligned.pth"};
#define N_VALID (int)(sizeof valid_fixtures / sizeof valid_fixtures[0])

/* -------------------------------------------------------------------------------------- real checkpoint */

static void test_tiny_checkpoint(void) {
    char path[1024];
    t_path(path, sizeof path, mrw_shared_dir(), "assets/tiny-rwkv7/tiny-rwkv7-834K.pth");
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "note: %s not found; skipping the real-checkpoint test\n", path);
        return;
    }
    cJSON *exp = load_json(FIX "tiny-rwkv7-expected.json");
    CHECK(exp != NULL);
    if (!exp) return;
    mrw_tfile *f = NULL;
    mrw_error err = {0};
    CHECK_OK(mrw_tfile_open(path, &f, &err), &err);
    if (!f) { cJSON_Delete(exp); return; }
    CHECK(mrw_tfile_format(f) == MRW_FMT_PTH);
    int n = (int)cJSON_GetObjectItem(exp, "count")->valuedouble;
    CHECKF(mrw_tfile_count(f) == n, "tiny: %d tensors, expected %d", mrw_tfile_count(f), n);
    const cJSON *list = cJSON_GetObjectItem(exp, "tensors");
    int zero_copy = 0;
    for (int i = 0; i < n && i < mrw_tfile_count(f); i++) {
        const cJSON *e = cJSON_GetArrayItem(list, i);
        const mrw_tensor_info *t = mrw_tfile_tensor(f, i);
        const char *name = cJSON_GetObjectItem(e, "name")->valuestring;
        CHECKF(!strcmp(t->name, name), "tiny: tensor %d is %s", i, t->name);
        CHECK(t->dtype == MRW_DT_F32);
        const cJSON *shape = cJSON_GetObjectItem(e, "shape");
        CHECK(t->ndim == cJSON_GetArraySize(shape));
        for (int d = 0; d < t->ndim; d++)
            CHECK(t->shape[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble);
        zero_copy += in_mapping(f, t->data);
    }
    CHECKF(zero_copy == n, "tiny: %d of %d tensors point into the mapping", zero_copy, n);
    const mrw_tensor_info *emb = mrw_tfile_find(f, "emb.weight");
    CHECK(emb && emb->ndim == 2 && emb->shape[0] == 256 && emb->shape[1] == 64);
    CHECK(mrw_tfile_find(f, "blocks.0.att.v0") == NULL); /* layer 0 carries no v0/v1/v2 */
    CHECK(mrw_tfile_find(f, "blocks.1.att.v0") != NULL);
    for (const cJSON *p = cJSON_GetObjectItem(exp, "probe")->child; p; p = p->next) {
        const mrw_tensor_info *t = mrw_tfile_find(f, p->string);
        CHECKF(t != NULL, "tiny: %s missing", p->string);
        if (!t) continue;
        const cJSON *first = cJSON_GetObjectItem(p, "first");
        for (int k = 0; k < 4; k++)
            CHECK_NEAR(elem(t, (size_t)k), cJSON_GetArrayItem(first, k)->valuedouble, 0);
        int64_t m = mrw_tensor_numel(t);
        CHECK_NEAR(elem(t, (size_t)m - 1), cJSON_GetObjectItem(p, "last")->valuedouble, 0);
        double sum = 0;
        for (int64_t k = 0; k < m; k++) sum += elem(t, (size_t)k);
        CHECK_NEAR(sum, cJSON_GetObjectItem(p, "sum")->valuedouble, 1e-9 * (1 + fabs(sum)));
    }
    mrw_tfile_close(f);
    cJSON_Delete(exp);
}

/* ------------------------------------------------------------------------------------- fixture files */

static void test_fixtures(void) {
    cJSON *exp = load_json(FIX "expected.json");
    CHECK(exp != NULL);
    if (!exp) return;
    for (int i = 0; i < N_VALID; i++) {
        char path[256];
        snprintf(path, sizeof path, FIX "%s", valid_fixtures[i]);
        const cJSON *list = cJSON_GetObjectItem(exp, valid_fixtures[i]);
        CHECKF(list != NULL, "%s missing from expected.json", valid_fixtures[i]);
        mrw_error err = {0};
        mrw_tfile *f = NULL;
        CHECK_OK(mrw_pth_open(path, &f, &err), &err);
        if (f && list) check_against(path, f, list);
        /* The same through the memory API. */
        size_t len = 0;
        unsigned char *buf = t_read_file(path, &len);
        mrw_tfile *g = NULL;
        CHECK_OK(mrw_pth_open_mem(buf, len, &g, &err), &err);
        if (g && list) check_against(path, g, list);
        if (f && !strcmp(valid_fixtures[i], "views.pth")) {
            /* Contiguous views point into the mapping (the shared storage); the others are copies. */
            CHECK(in_mapping(f, mrw_tfile_find(f, "base")->data));
            CHECK(in_mapping(f, mrw_tfile_find(f, "row")->data));
            CHECK(in_mapping(f, mrw_tfile_find(f, "rows")->data));
            CHECK(mrw_tfile_find(f, "row")->data == (const float *)mrw_tfile_find(f, "base")->data + 12);
            CHECK(!in_mapping(f, mrw_tfile_find(f, "transposed")->data));
            CHECK(!in_mapping(f, mrw_tfile_find(f, "broadcast")->data));
            CHECK(!in_mapping(f, mrw_tfile_find(f, "permuted")->data));
            CHECK(mrw_tfile_find(f, "scalar")->ndim == 0 && mrw_tfile_find(f, "scalar")->nbytes == 4);
        }
        if (f && !strcmp(valid_fixtures[i], "unaligned.pth")) {
            int copied = 0;
            for (int k = 0; k < mrw_tfile_count(f); k++)
                copied += !in_mapping(f, mrw_tfile_tensor(f, k)->data);
            CHECKF(copied > 0, "unaligned.pth: expected some misaligned storages to be copied");
        }
        mrw_tfile_close(f);
        mrw_tfile_close(g);
        free(buf);
    }
    cJSON_Delete(exp);
}

/* -------------------------------------------------------------------------------------- round trips */

typedef struct {
    uint64_t last_done, total;
    int calls, monotonic;
} prog;

static void on_progress(void *user, uint64_t done, uint64_t total) {
    prog *p = user;
    if (done < p->last_done || (p->calls && total != p->total)) p->monotonic = 0;
    p->last_done = done;
    p->total = total;
    p->calls++;
}

static void check_same(const char *what, const mrw_tfile *a, const mrw_tfile *b) {
    CHECKF(mrw_tfile_count(a) == mrw_tfile_count(b), "%s: %d vs %d tensors", what, mrw_tfile_count(a),
           mrw_tfile_count(b));
    for (int i = 0; i < mrw_tfile_count(a) && i < mrw_tfile_count(b); i++) {
        const mrw_tensor_info *x = mrw_tfile_tensor(a, i), *y = mrw_tfile_tensor(b, i);
        CHECKF(!strcmp(x->name, y->name) && x->dtype == y->dtype && x->ndim == y->ndim &&
               !memcmp(x->shape, y->shape, sizeof x->shape) && x->nbytes == y->nbytes &&
               !memcmp(x->data, y->data, x->nbytes),
                       "%s: tensor %s differs after the round trip", what, x->name);
    }
}

/* Every entry of a file written by mrw_pth_write: under archive/, data 64-byte aligned, CRCs right. */
static void check_written_layout(const char *path) {
    size_t len = 0;
    unsigned char *buf = t_read_file(path, &len);
    mrw_zip z;
    mrw_error err = {0};
    CHECK_OK(mrw_zip_open(&z, buf, len, path, &err), &err);
    for (int i = 0; i < z.n_entries; i++) {
        const mrw_zip_entry *e = &z.entries[i];
        const uint8_t *d;
        CHECK(e->name_len > 8 && !memcmp(e->name, "archive/", 8));
        CHECKF(e->data_offset % MRW_ZIP_ALIGN == 0, "%s: %.*s at %llu", path, (int)e->name_len, e->name,
               (unsigned long long)e->data_offset);
        CHECK_OK(mrw_zip_data(&z, e, 1, &d, &err), &err);
    }
    CHECK(mrw_zip_find(&z, "archive/version", 15) != NULL);
    CHECK(mrw_zip_find(&z, "archive/byteorder", 17) != NULL);
    CHECK(z.n_entries > 0 && z.entries[0].name_len == 16 && !memcmp(z.entries[0].name,
                                                                    "archive/data.pkl", 16));
    mrw_zip_close(&z);
    free(buf);
}

static void test_round_trip(void) {
    const char *keep = getenv("MRW_PTH_KEEP");
    char dir[512];
    if (keep && *keep) {
        snprintf(dir, sizeof dir, "%s", keep);
        mkdir(dir, 0755);
    } else {
        snprintf(dir, sizeof dir, "/tmp/mrw-test-pth-%d", (int)getpid());
        CHECK(mkdir(dir, 0700) == 0);
    }
    for (int i = 0; i < N_VALID; i++) {
        char src[256], dst[700];
        snprintf(src, sizeof src, FIX "%s", valid_fixtures[i]);
        snprintf(dst, sizeof dst, "%s/%s.rt.pth", dir, valid_fixtures[i]);
        mrw_error err = {0};
        mrw_tfile *a = NULL, *b = NULL;
        CHECK_OK(mrw_pth_open(src, &a, &err), &err);
        if (!a) continue;
        prog p = {0, 0, 0, 1};
        CHECK_OK(mrw_pth_write(dst, a->tensors, a->n_tensors, on_progress, &p, &err), &err);
        CHECK(p.calls > 0 && p.monotonic && p.last_done == p.total);
        CHECK_OK(mrw_pth_open(dst, &b, &err), &err);
        if (b) check_same(dst, a, b);
        check_written_layout(dst);
        mrw_tfile_close(a);
        mrw_tfile_close(b);
        if (!(keep && *keep)) unlink(dst);
    }
    /* An empty state dict. */
    char dst[700];
    snprintf(dst, sizeof dst, "%s/empty.pth", dir);
    mrw_error err = {0};
    mrw_tfile *f = NULL;
    CHECK_OK(mrw_pth_write(dst, NULL, 0, NULL, NULL, &err), &err);
    CHECK_OK(mrw_pth_open(dst, &f, &err), &err);
    CHECK(f && mrw_tfile_count(f) == 0);
    mrw_tfile_close(f);
    if (!(keep && *keep)) {
        unlink(dst);
        rmdir(dir);
    }
}

static void test_write_errors(void) {
    char dst[256];
    snprintf(dst, sizeof dst, "/tmp/mrw-test-pth-err-%d.pth", (int)getpid());
    float x[32] = {0};
    mrw_tensor_info t[2] = {
        {.name = "a", .dtype = MRW_DT_F32, .ndim = 1, .shape = {32}, .data = x, .nbytes = 128},
        {.name = "a", .dtype = MRW_DT_F32, .ndim = 1, .shape = {32}, .data = x, .nbytes = 128},
    };
    mrw_error err = {0};
    CHECK(mrw_pth_write(dst, t, 2, NULL, NULL, &err) == MRW_E_ARG && strstr(err.msg,
                                                                            "two tensors are named 'a'"));
    CHECK(access(dst, F_OK) != 0); /* nothing written on failure */
    t[1].name = "b";
    t[1].nbytes = 100;
    CHECK(mrw_pth_write(dst, t, 2, NULL, NULL, &err) == MRW_E_ARG && strstr(err.msg, "'b'"));
    mrw_block_q8_0 q = {0};
    mrw_tensor_info tq = {
        .name = "q", .dtype = MRW_DT_Q8_0, .ndim = 1, .shape = {32}, .data = &q, .nbytes = 34,
    };
    CHECK(mrw_pth_write(dst, &tq, 1, NULL, NULL, &err) == MRW_E_UNSUPPORTED);
    CHECKF(strstr(err.msg, "q8_0 tensors cannot be stored in .pth; write GGUF") != NULL, "%s", err.msg);
    mrw_tensor_info bad = {.name = "\xff\xfe", .dtype = MRW_DT_F32, .ndim = 0, .data = x, .nbytes = 4};
    CHECK(mrw_pth_write(dst, &bad, 1, NULL, NULL, &err) == MRW_E_ARG && strstr(err.msg, "UTF-8"));
    CHECK(mrw_pth_write("/nonexistent-dir/x.pth", t, 1, NULL, NULL, &err) == MRW_E_IO);
    CHECK(access(dst, F_OK) != 0);
}

/* ------------------------------------------------------------------------------------------ zip layer */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} membuf;

static void mem_sink(void *user, const void *data, size_t n) {
    membuf *m = user;
    if (m->cap - m->n < n) {
        m->cap = (m->cap + n) * 2;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, data, n);
    m->n += n;
}

/* Rewrites a valid .pth through the zip writer (optionally forcing zip64 records and extras everywhere) and
 * checks that the reader sees the same tensors. */
static void test_zip64_rewrite(int force) {
    size_t len = 0;
    unsigned char *buf = t_read_file(FIX "views.pth", &len);
    CHECKF(buf != NULL, "fixtures not found: run from the repository root");
    if (!buf) return;
    mrw_zip z;
    mrw_error err = {0};
    CHECK_OK(mrw_zip_open(&z, buf, len, "views.pth", &err), &err);
    mrw_crc32_ctx crc;
    mrw_crc32_init(&crc);
    membuf m = {0};
    mrw_zipw w;
    mrw_zipw_init(&w, mem_sink, &m);
    w.force_zip64 = force;
    for (int i = 0; i < z.n_entries; i++) {
        const mrw_zip_entry *e = &z.entries[i];
        const uint8_t *d;
        char name[256];
        snprintf(name, sizeof name, "renamed/%.*s", (int)e->name_len, e->name);
        CHECK_OK(mrw_zip_data(&z, e, 1, &d, &err), &err);
        CHECK_OK(mrw_zipw_add(&w, &crc, name, d, (size_t)e->size, &err), &err);
    }
    CHECK_OK(mrw_zipw_finish(&w, &err), &err);
    mrw_zipw_free(&w);
    if (force) CHECK(m.n > 98 && !memcmp(m.p + m.n - 98, "PK\x06\x06", 4)); /* zip64 end record present */
    mrw_tfile *a = NULL, *b = NULL;
    CHECK_OK(mrw_pth_open_mem(buf, len, &a, &err), &err);
    CHECK_OK(mrw_pth_open_mem(m.p, m.n, &b, &err), &err);
    if (a && b) check_same(force ? "zip64 rewrite" : "rewrite", a, b);
    mrw_tfile_close(a);
    mrw_tfile_close(b);
    mrw_zip_close(&z);
    free(m.p);
    free(buf);
}

static void test_crc32(void) {
    mrw_crc32_ctx c;
    mrw_crc32_init(&c);
    CHECK(mrw_crc32(&c, 0, "123456789", 9) == 0xcbf43926u); /* the standard check value */
    CHECK(mrw_crc32(&c, 0, "", 0) == 0);
    uint8_t big[1000];
    for (int i = 0; i < 1000; i++) big[i] = (uint8_t)(i * 7 + 3);
    uint32_t whole = mrw_crc32(&c, 0, big, 1000);
    CHECK(mrw_crc32(&c, mrw_crc32(&c, 0, big, 333), big + 333, 667) == whole);
    CHECK(mrw_crc32(&c, 0, big + 1, 999) == mrw_crc32(&c, mrw_crc32(&c, 0, big + 1, 5), big + 6, 994));
    /* The folding (PCLMULQDQ) path against the tables: every length up to 1000 at several alignments, with
     * a running CRC carried in. */
    mrw_crc32_ctx tab = c;
    tab.clmul = 0;
    int bad = 0;
    uint32_t run = 0x12345678u;
    for (size_t len = 0; len <= 1000 - 16; len++)
        for (size_t off = 0; off < 16; off += 5) {
            bad += mrw_crc32(&c, run, big + off, len) != mrw_crc32(&tab, run, big + off, len);
            run = run * 2654435761u + 1;
        }
    CHECKF(bad == 0, "%d CRC mismatches between the folding and table paths (clmul %d)", bad, c.clmul);
}

/* Every truncation and every single-byte corruption of a small valid file: an error or a valid result,
 * never a crash (the sanitizer builds check the memory accesses). */
static void test_mutations(void) {
    size_t len = 0;
    unsigned char *orig = t_read_file(FIX "plain.pth", &len);
    CHECKF(orig != NULL, "fixtures not found: run from the repository root");
    if (!orig) return;
    unsigned char *b = malloc(len);
    int ok = 0, failed = 0;
    for (size_t cut = 0; cut < len; cut++) {
        memcpy(b, orig, cut);
        mrw_tfile *f = NULL;
        mrw_error err = {0};
        if (mrw_pth_open_mem(b, cut, &f, &err) == MRW_OK) ok++;
        else failed += err.msg[0] != 0;
        mrw_tfile_close(f);
    }
    CHECKF(ok == 0 && failed == (int)len,
                                 "truncations: %d accepted, %d with messages of %zu", ok, failed, len);
    /* Which bytes are record data (covered by a CRC-32): corrupting one of those must always be caught. */
    unsigned char *in_data = calloc(len, 1);
    mrw_zip z;
    mrw_error zerr = {0};
    CHECK_OK(mrw_zip_open(&z, orig, len, "plain.pth", &zerr), &zerr);
    for (int k = 0; k < z.n_entries; k++)
        memset(in_data + z.entries[k].data_offset, 1, (size_t)z.entries[k].size);
    mrw_zip_close(&z);
    int accepted = 0, missed = 0;
    for (size_t i = 0; i < len; i++) {
        memcpy(b, orig, len);
        b[i] ^= 0xa5;
        mrw_tfile *f = NULL;
        mrw_error err = {0};
        mrw_status s = mrw_pth_open_mem(b, len, &f, &err);
        CHECK(s == MRW_OK || err.msg[0]);
        accepted += s == MRW_OK;
        missed += s == MRW_OK && in_data[i];
        for (int k = 0; f && k < mrw_tfile_count(f); k++) {
            const mrw_tensor_info *t = mrw_tfile_tensor(f, k);
            volatile uint8_t sink = 0;
            for (size_t j = 0; j < t->nbytes; j++) sink ^= ((const uint8_t *)t->data)[j];
            (void)sink;
        }
        mrw_tfile_close(f);
    }
    /* Bytes outside the records (alignment padding, timestamps, attributes) may change freely. */
    CHECKF(missed == 0, "%d corruptions of record data were accepted", missed);
    fprintf(stderr,
            "single-byte corruptions of plain.pth: %d of %zu accepted (none in record data)\n", accepted,
            len);
    free(in_data);
    free(b);
    free(orig);
}

/* ------------------------------------------------------------------------------------------- hostile */

typedef struct {
    const char *file;
    mrw_status code;
    const char *msg; /* a substring the message must contain */
} hostile_case;

static const hostile_case pickle_cases[] = {
    {"global_os_system.pkl", MRW_E_SECURITY,
     "offset 2: refusing to load: the pickle references os.system, which is not an allowed global (only "
     "tensors and dicts are allowed)"},
    {"global_posix_system.pkl", MRW_E_SECURITY, "references posix.system"},
    {"global_builtins_eval.pkl", MRW_E_SECURITY, "references builtins.eval"},
    {"global_getattr.pkl", MRW_E_SECURITY, "references __builtin__.getattr"},
    {"reduce_storage_type.pkl", MRW_E_SECURITY, "calls torch.FloatStorage"},
    {"reduce_on_string.pkl", MRW_E_SECURITY, "REDUCE calls a str"},
    {"opcode_inst.pkl", MRW_E_SECURITY, "opcode INST (0x69) is not allowed"},
    {"opcode_newobj.pkl", MRW_E_SECURITY, "opcode NEWOBJ (0x81) is not allowed"},
    {"opcode_ext1.pkl", MRW_E_SECURITY, "EXT1"},
    {"opcode_unknown.pkl", MRW_E_FORMAT, "byte 0xff is not a pickle opcode"},
    {"persid_not_storage.pkl", MRW_E_SECURITY, "persistent id"},
    {"deep_marks.pkl", MRW_E_LIMIT, "MARKs nested more than 1024 deep"},
    {"memo_huge_index.pkl", MRW_E_LIMIT, "memo index"},
    {"memo_undefined.pkl", MRW_E_FORMAT, "memo entry 7 is read before it is written"},
    {"stack_underflow.pkl", MRW_E_FORMAT, "stack underflow"},
    {"truncated_string.pkl", MRW_E_FORMAT, "runs past the end"},
    {"no_stop.pkl", MRW_E_FORMAT, "without STOP"},
    {"long_int.pkl", MRW_E_LIMIT, "64 bits"},
    {"top_level_list.pkl", MRW_E_FORMAT, "holds a list, not a dict"},
    {"self_nested.pkl", MRW_E_LIMIT, "nested more than"},
    {"ok_min.pkl", MRW_OK, ""},
};

static const hostile_case archive_cases[] = {
    {"zip_os_system.pth", MRW_E_SECURITY,
     "archive/data.pkl: offset 2: refusing to load: the pickle references os.system"},
    {"zip_view_beyond.pth", MRW_E_FORMAT, "tensor 'x': the view (offset 2"},
    {"zip_huge_numel.pth", MRW_E_FORMAT,
     "declares 2147483647 f32 elements but the entry holds only 16 bytes"},
    {"zip_missing_storage.pth", MRW_E_FORMAT, "its storage 'archive/data/0' is not in the archive"},
    {"zip_crc_disagree.pth", MRW_E_FORMAT, "'archive/data/0': local header and central directory disagree"},
    {"zip_crc_mismatch.pth", MRW_E_FORMAT, "'archive/data/0' is corrupt: its CRC-32"},
    {"zip_size_lie.pth", MRW_E_FORMAT, "disagree on CRC or size"},
    {"zip_offset_oob.pth", MRW_E_FORMAT, "local header offset out of range"},
    {"zip_huge_size.pth", MRW_E_FORMAT,
     "its 2147483647 bytes at offset 320 run past the end of the entry area"},
    {"zip_absurd_count.pth", MRW_E_FORMAT,
     "declares 60000 entries but its central directory has room for only 3"},
    {"zip_deflate_method.pth", MRW_E_FORMAT, "compression methods differ"},
    {"zip_truncated.pth", MRW_E_FORMAT, "truncated"},
    {"zip_empty_archive.pth", MRW_E_FORMAT, "without data.pkl"},
    {"zip_overlap.pth", MRW_E_FORMAT, "zip entries 'archive/data/0' and 'archive/data/1' overlap"},
    {"deflate.pth", MRW_E_UNSUPPORTED, "zip entry 'plain/data.pkl' is compressed (method 8, deflate)"},
    {"torchscript.pt", MRW_E_UNSUPPORTED, "TorchScript archive"},
    {"deep_marks.pkl", MRW_E_UNSUPPORTED, "legacy (pre-1.6) serialization"},
    {"zip_ok.pth", MRW_OK, ""},
};

static void test_hostile(void) {
    for (size_t i = 0; i < sizeof pickle_cases / sizeof pickle_cases[0]; i++) {
        const hostile_case *c = &pickle_cases[i];
        char path[256];
        snprintf(path, sizeof path, FIX "hostile/%s", c->file);
        size_t len = 0;
        unsigned char *b = t_read_file(path, &len);
        CHECKF(b != NULL, "%s missing", path);
        if (!b) continue;
        mrw_pkl_state_dict sd;
        mrw_error err = {0};
        mrw_status s = mrw_pkl_load_state_dict(b, len, &sd, &err);
        CHECKF(s == c->code && strstr(err.msg, c->msg),
                                      "%s: got %s: %s", c->file, mrw_status_name(s), err.msg);
        if (!s) CHECK(sd.n == 1 && !strcmp(sd.tensors[0].name, "x") && sd.tensors[0].ndim == 2);
        mrw_pkl_free(&sd);
        free(b);
    }
    for (size_t i = 0; i < sizeof archive_cases / sizeof archive_cases[0]; i++) {
        const hostile_case *c = &archive_cases[i];
        char path[256];
        snprintf(path, sizeof path, FIX "hostile/%s", c->file);
        mrw_tfile *f = NULL;
        mrw_error err = {0};
        mrw_status s = mrw_pth_open(path, &f, &err);
        CHECKF(s == c->code && strstr(err.msg, c->msg),
                                      "%s: got %s: %s", c->file, mrw_status_name(s), err.msg);
        CHECK((s == MRW_OK) == (f != NULL));
        if (s) CHECKF(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
        mrw_tfile_close(f);
    }
}

/* Hand-built pickles for paths the fixtures do not reach. */
static mrw_status unpickle(const char *b, size_t n, mrw_pkl_state_dict *sd, mrw_error *err) {
    return mrw_pkl_load_state_dict(b, n, sd, err);
}

static void test_pickle_edges(void) {
    mrw_pkl_state_dict sd;
    mrw_error err = {0};
    /* LONG1 (negative, and 8 bytes), BININT, nested dicts with an int key, SHORT_BINSTRING, lists. */
    static const char nested[] =
        "\x80\x02}(U\x01k}(K\x05" "ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
        "ctorch\nHalfStorage\nX\x02\x00\x00\x00" "42X\x04\x00\x00\x00"
        "cuda\x8a\x08\x00\x00\x00\x00\x01\x00\x00\x00t"
        "QJ\x01\x00\x01\x00K\x02\x85K\x01\x85\x88}tRu"
        "X\x01\x00\x00\x00l](K\x01\x8a\x01\xff" "eX\x01\x00\x00\x00" "f"
        "G\x3f\xf0\x00\x00\x00\x00\x00\x00u.";
    CHECK_OK(unpickle(nested, sizeof nested - 1, &sd, &err), &err);
    CHECK(sd.n == 1);
    if (sd.n == 1) {
        const mrw_pkl_tensor *t = &sd.tensors[0];
        CHECK(!strcmp(t->name, "k.5") && t->dtype == MRW_DT_F16 && t->storage_numel == ((int64_t)1 << 32));
        CHECK(t->offset == 65537 && t->ndim == 1 && t->size[0] == 2 && t->stride[0] == 1);
        CHECK(t->key_len == 2 && !memcmp(t->key, "42", 2));
    }
    mrw_pkl_free(&sd);
    /* Dicts nested 20 deep. */
    char deep[512];
    size_t n = 0;
    deep[n++] = (char)0x80;
    deep[n++] = 2;
    for (int i = 0; i < 20; i++) { deep[n++] = '}'; deep[n++] = 'U'; deep[n++] = 1; deep[n++] = 'a'; }
    deep[n++] = '}';
    for (int i = 0; i < 20; i++) deep[n++] = 's';
    deep[n++] = '.';
    CHECK(unpickle(deep, n, &sd, &err) == MRW_E_LIMIT && strstr(err.msg, "a.a.a"));
    mrw_pkl_free(&sd);
    /* More than 8 dimensions. */
    static const char dims9[] =
        "\x80\x02}X\x01\x00\x00\x00xctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
        "ctorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00"
        "cpuK\x01tQK\x00(K\x01K\x01K\x01K\x01K\x01K\x01"
        "K\x01K\x01K\x01t(K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01t\x89}tRs.";
    CHECK(unpickle(dims9, sizeof dims9 - 1, &sd, &err) == MRW_E_UNSUPPORTED && strstr(err.msg,
                                                                                      "8 dimensions"));
    /* A tensor with the 'neg' metadata flag set (7th argument). */
    static const char neg[] =
        "\x80\x02}X\x01\x00\x00\x00xctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
        "ctorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00"
        "cpuK\x01tQK\x00))\x89}}X\x03\x00\x00\x00neg"
        "\x88stRs.";
    CHECK(unpickle(neg, sizeof neg - 1, &sd, &err) == MRW_E_UNSUPPORTED && strstr(err.msg, "'neg'"));
    /* Dtype globals are inert values; a top-level tensor is not a state dict. */
    static const char dtype_val[] = "\x80\x02}X\x01\x00\x00\x00" "dctorch\nbfloat16\ns.";
    CHECK_OK(unpickle(dtype_val, sizeof dtype_val - 1, &sd, &err), &err);
    CHECK(sd.n == 0);
    mrw_pkl_free(&sd);
    CHECK(unpickle("", 0, &sd, &err) == MRW_E_FORMAT);
    CHECK(unpickle("\x80\x06}.", 4, &sd, &err) == MRW_E_UNSUPPORTED);
    CHECK(unpickle("\x80\x02}(K\x01u.", 7, &sd, &err) == MRW_E_FORMAT && strstr(err.msg, "odd number"));
    CHECK(unpickle("\x80\x02K\x01K\x02s.", 8, &sd, &err) == MRW_E_FORMAT && strstr(err.msg, "SETITEM"));
    CHECK(unpickle("\x80\x02}N\x85Q.", 7, &sd, &err) == MRW_E_SECURITY);
    CHECK(!strcmp(mrw_pkl_opcode_name('c'), "GLOBAL") && mrw_pkl_opcode_name(0xff) == NULL);
    /* SETITEMS / APPENDS with nothing to add. */
    CHECK_OK(unpickle("\x80\x02}(u.", 6, &sd, &err), &err);
    CHECK(sd.n == 0);
    mrw_pkl_free(&sd);
    CHECK(unpickle("\x80\x02](e.", 6, &sd, &err) == MRW_E_FORMAT && strstr(err.msg, "holds a list"));
}

/* A small pickle that shares one dict many times over under long keys: 30^4 references to a tensor named by a
 * 4000-byte key. Flattening must stop at a limit instead of allocating gigabytes of names. */
static void test_fanout(void) {
    static const char tensor[] =
        "ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
        "ctorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x01tQK\x00))\x89}tR";
    size_t cap = 64 << 10, n = 0;
    char *b = malloc(cap);
    b[n++] = (char)0x80;
    b[n++] = 2;
    memcpy(b + n, "}q\x01(X\xa0\x0f\x00\x00", 9); /* d1 = {<4000 x 'k'>: tensor}, memo 1 */
    n += 9;
    memset(b + n, 'k', 4000);
    n += 4000;
    memcpy(b + n, tensor, sizeof tensor - 1);
    n += sizeof tensor - 1;
    b[n++] = 'u';
    for (int level = 2; level <= 5; level++) { /* d_level = {"0": d_{level-1}, ..., "29": d_{level-1}} */
        b[n++] = '}';
        b[n++] = 'q';
        b[n++] = (char)level;
        b[n++] = '(';
        for (int k = 0; k < 30; k++) {
            n += (size_t)snprintf(b + n, cap - n, "X%c%c%c%c%02d", 2, 0, 0, 0, k);
            b[n++] = 'h';
            b[n++] = (char)(level - 1);
        }
        b[n++] = 'u';
    }
    b[n++] = '.';
    mrw_pkl_state_dict sd;
    mrw_error err = {0};
    mrw_status st = mrw_pkl_load_state_dict(b, n, &sd, &err);
    CHECKF(st == MRW_E_LIMIT && strstr(err.msg, "tensor names take more than"), "fan-out: %s", err.msg);
    mrw_pkl_free(&sd);
    free(b);
}

/* An archive built in memory around a hand-written pickle: the same name twice is refused, naming it. */
static void test_duplicate_names(void) {
    static const char pkl[] =
        "\x80\x02}(X\x01\x00\x00\x00xctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
        "ctorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x01tQK\x00))\x89}tRq\x00"
        "X\x01\x00\x00\x00xh\x00u.";
    float one = 1;
    mrw_crc32_ctx crc;
    mrw_crc32_init(&crc);
    membuf m = {0};
    mrw_zipw w;
    mrw_error err = {0};
    mrw_zipw_init(&w, mem_sink, &m);
    CHECK_OK(mrw_zipw_add(&w, &crc, "dup/data.pkl", pkl, sizeof pkl - 1, &err), &err);
    CHECK_OK(mrw_zipw_add(&w, &crc, "dup/data/0", &one, 4, &err), &err);
    CHECK_OK(mrw_zipw_finish(&w, &err), &err);
    mrw_zipw_free(&w);
    mrw_tfile *f = NULL;
    CHECK(mrw_pth_open_mem(m.p, m.n, &f, &err) == MRW_E_FORMAT);
    CHECKF(strstr(err.msg, "<memory>: duplicate tensor name 'x'") != NULL, "%s", err.msg);
    CHECK(f == NULL);
    free(m.p);
}

int main(void) {
    test_crc32();
    test_tiny_checkpoint();
    test_fixtures();
    test_round_trip();
    test_write_errors();
    test_zip64_rewrite(0);
    test_zip64_rewrite(1);
    test_hostile();
    test_pickle_edges();
    test_duplicate_names();
    test_fanout();
    test_mutations();
    TEST_MAIN_END();
}
