/* PyTorch .pth / .pt files (torch.save's zip format) behind the tensor-file interface.
 *
 * Reading: the archive's `<prefix>/data.pkl` is unpickled by the restricted unpickler (formats/pickle.h);
 * each tensor is a view (offset, size, stride) into a storage `<prefix>/data/<key>`. Storage sizes and
 * views are checked against the entries, every referenced entry's CRC-32 is verified, and then contiguous
 * views point straight into the mapping while non-contiguous (or misaligned) ones are copied into memory
 * owned by the file.
 *
 * Writing: a torch.save-compatible archive (`archive/data.pkl` as a protocol-2 OrderedDict of
 * _rebuild_tensor_v2 calls, `archive/byteorder`, one storage per tensor `archive/data/<i>`,
 * `archive/version`), written atomically. Checked by hand during development: a file written here loads
 * with torch.load(path, weights_only=True) in torch 1.13 with identical values and dtypes
 * (tests/reference/make_pth_fixtures.py --check-written FILE repeats that check). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/strutil.h"
#include "formats/pickle.h"
#include "formats/tfile_impl.h"
#include "formats/zip.h"
#include "tensor/dtype.h"

/* Copies of non-contiguous views may use at most this much memory beyond twice the file size. */
#define PTH_COPY_SLACK ((size_t)64 << 20)

/* -------------------------------------------------------------------------------------------- helpers */

static int mul_ok(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static int add_ok(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_add_overflow(a, b, out); }

/* Row-major contiguity; dimensions of size 1 may have any stride. */
static int is_contiguous(const mrw_pkl_tensor *t) {
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->size[i] == 0) return 1;
        if (t->size[i] != 1 && t->stride[i] != expect) return 0;
        expect *= t->size[i];
    }
    return 1;
}

/* Copies a strided view into dst, row-major: an odometer over the outer dimensions, the innermost dimension
 * as one memcpy when its stride is 1. */
static void strided_copy(uint8_t *dst, const uint8_t *base, size_t es, const mrw_pkl_tensor *t) {
    if (t->ndim == 0) {
        memcpy(dst, base, es);
        return;
    }
    int last = t->ndim - 1;
    int64_t idx[MRW_MAX_DIMS] = {0};
    size_t row = (size_t)t->size[last];
    for (;;) {
        int64_t off = 0;
        for (int d = 0; d < last; d++) off += idx[d] * t->stride[d];
        const uint8_t *src = base + (size_t)off * es;
        if (t->stride[last] == 1 || row == 1) {
            memcpy(dst, src, row * es);
        } else {
            for (size_t j = 0; j < row; j++) memcpy(dst + j * es, src + (size_t)t->stride[last] * j * es, es);
        }
        dst += row * es;
        int d = last - 1;
        while (d >= 0 && ++idx[d] == t->size[d]) idx[d--] = 0;
        if (d < 0) return;
    }
}

/* ------------------------------------------------------------------------------------------- reading */

typedef struct {
    const char *what; /* file name for messages */
    mrw_zip zip;
    const mrw_zip_entry *pkl;
    char prefix[MRW_ZIP_MAX_NAME + 1]; /* "archive/" */
    size_t prefix_len;
    mrw_pkl_state_dict sd;
    const mrw_zip_entry **storage; /* per tensor: its storage entry */
    size_t copy_budget;
} pth_reader;

static int ends_with(const mrw_zip_entry *e, const char *suffix) {
    size_t n = strlen(suffix);
    return e->name_len >= n && !memcmp(e->name + e->name_len - n, suffix, n);
}

static const mrw_zip_entry *find_rel(const pth_reader *r, const char *rel) {
    char name[MRW_ZIP_MAX_NAME + 64];
    int n = snprintf(name, sizeof name, "%s%s", r->prefix, rel);
    return mrw_zip_find(&r->zip, name, (size_t)n);
}

/* Finds the single `<prefix>data.pkl`; refuses TorchScript archives with a message that says so. */
static mrw_status find_pickle(pth_reader *r, mrw_error *err) {
    const mrw_zip_entry *pkl = NULL;
    for (int i = 0; i < r->zip.n_entries; i++) {
        const mrw_zip_entry *e = &r->zip.entries[i];
        if (!ends_with(e, "data.pkl") || (e->name_len > 8 && e->name[e->name_len - 9] != '/')) continue;
        if (pkl) {
            char a[200], b[200];
            return mrw_err(err, MRW_E_FORMAT,
                           "%s: the archive holds two pickles, '%s' and '%s'; a torch.save "
                           "checkpoint has one", r->what, mrw_printable(a, sizeof a, pkl->name, pkl->name_len),
                           mrw_printable(b, sizeof b, e->name, e->name_len));
        }
        pkl = e;
    }
    if (!pkl)
        return mrw_err(err, MRW_E_FORMAT, "%s: a zip archive without data.pkl: not a torch.save checkpoint",
                       r->what);
    r->pkl = pkl;
    r->prefix_len = pkl->name_len - 8;
    memcpy(r->prefix, pkl->name, r->prefix_len);
    r->prefix[r->prefix_len] = 0;
    if (find_rel(r, "constants.pkl"))
        return mrw_err(err, MRW_E_UNSUPPORTED, "%s: this is a TorchScript archive (torch.jit.save), not a "
                       "torch.save checkpoint; load it in Python and torch.save(model.state_dict()) instead",
                       r->what);
    return MRW_OK;
}

/* The small records next to data.pkl: byteorder (torch >= 2.1) and version. */
static mrw_status check_records(pth_reader *r, mrw_error *err) {
    const mrw_zip_entry *bo = find_rel(r, "byteorder");
    if (bo) {
        const uint8_t *d;
        mrw_status s = mrw_zip_data(&r->zip, bo, 1, &d, err);
        if (s) return mrw_err_prefix(err, "%s", r->what), s;
        if (bo->size == 3 && !memcmp(d, "big", 3))
            return mrw_err(err, MRW_E_UNSUPPORTED,
                           "%s: the storages are big-endian (byteorder 'big'); re-save "
                           "the checkpoint on a little-endian machine", r->what);
        if (bo->size != 6 || memcmp(d, "little", 6))
            return mrw_err(err, MRW_E_FORMAT,
                           "%s: the byteorder record is neither 'little' nor 'big'", r->what);
    }
    /* The format version (torch writes "3\n"): storages have not changed with it, so any number is fine,
     * but a record that is not one means the archive is damaged. */
    const mrw_zip_entry *ver = find_rel(r, "version");
    if (ver) {
        const uint8_t *d;
        mrw_status s = mrw_zip_data(&r->zip, ver, 1, &d, err);
        if (s) return mrw_err_prefix(err, "%s", r->what), s;
        size_t n = (size_t)ver->size, k = 0;
        while (k < n && k < 20 && d[k] >= '0' && d[k] <= '9') k++;
        if (k == 0 || !(k == n || (k + 1 == n && d[k] == '\n')))
            return mrw_err(err, MRW_E_FORMAT, "%s: the archive's version record is not a number", r->what);
    }
    return MRW_OK;
}

static mrw_status unpickle(pth_reader *r, mrw_error *err) {
    const uint8_t *d;
    char nb[200];
    mrw_printable(nb, sizeof nb, r->pkl->name, r->pkl->name_len);
    if (r->pkl->size > MRW_PKL_MAX_BYTES)
        return mrw_err(err, MRW_E_LIMIT, "%s: %s is %llu bytes (limit %zu MiB)", r->what, nb,
                       (unsigned long long)r->pkl->size, MRW_PKL_MAX_BYTES >> 20);
    mrw_status s = mrw_zip_data(&r->zip, r->pkl, 1, &d, err);
    if (s) return mrw_err_prefix(err, "%s", r->what), s;
    s = mrw_pkl_load_state_dict(d, (size_t)r->pkl->size, &r->sd, err);
    if (s) mrw_err_prefix(err, "%s: %s", r->what, nb);
    return s;
}

/* Checks one tensor against its storage entry: the storage must fit in the entry and the view (offset +
 * strides x sizes) inside the storage. Sets *numel. */
static mrw_status check_tensor(pth_reader *r, int i, uint64_t *numel, mrw_error *err) {
    const mrw_pkl_tensor *t = &r->sd.tensors[i];
    char key[MRW_PKL_MAX_KEY + 16];
    snprintf(key, sizeof key, "data/%.*s", (int)t->key_len, t->key);
    const mrw_zip_entry *e = find_rel(r, key);
    if (!e)
        return mrw_err(err, MRW_E_FORMAT,
                       "%s: tensor '%s': its storage '%s%s' is not in the archive", r->what,
                       t->name, r->prefix, key);
    const uint8_t *d;
    mrw_status s = mrw_zip_data(&r->zip, e, 0, &d, err); /* method check; CRCs are verified in bulk */
    if (s) return mrw_err_prefix(err, "%s: tensor '%s'", r->what, t->name), s;
    size_t es = mrw_dtype_block_bytes(t->dtype);
    uint64_t need;
    if (!mul_ok((uint64_t)t->storage_numel, es, &need) || need > e->size)
        return mrw_err(err, MRW_E_FORMAT, "%s: tensor '%s': storage '%s%s' declares %lld %s elements but the "
                       "entry holds only %llu bytes (truncated or corrupt)", r->what, t->name, r->prefix, key,
                       (long long)t->storage_numel, mrw_dtype_name(t->dtype), (unsigned long long)e->size);
    uint64_t n = 1, last = (uint64_t)t->offset;
    for (int k = 0; k < t->ndim; k++) {
        uint64_t span;
        if (!mul_ok(n, (uint64_t)t->size[k], &n)) n = UINT64_MAX; /* only matters if no size is 0 */
        if (t->size[k] == 0) continue;
        if (!mul_ok((uint64_t)(t->size[k] - 1), (uint64_t)t->stride[k], &span) || !add_ok(last, span, &last))
            last = UINT64_MAX;
    }
    for (int k = 0; k < t->ndim; k++) if (t->size[k] == 0) n = 0;
    if (n > 0 && last >= (uint64_t)t->storage_numel)
        return mrw_err(err, MRW_E_FORMAT,
                       "%s: tensor '%s': the view (offset %lld with its sizes and strides) "
                       "reaches element %llu of a storage of %lld elements", r->what, t->name,
                       (long long)t->offset, (unsigned long long)last, (long long)t->storage_numel);
    uint64_t bytes;
    if (!mul_ok(n, es, &bytes) || bytes > SIZE_MAX / 2)
        return mrw_err(err, MRW_E_LIMIT, "%s: tensor '%s' is too large", r->what, t->name);
    r->storage[i] = e;
    *numel = n;
    return MRW_OK;
}

/* Verifies the CRC-32 of every entry some tensor uses, in parallel over entries. */
static mrw_status verify_crcs(pth_reader *r, mrw_error *err) {
    int ne = r->zip.n_entries;
    unsigned char *used = calloc((size_t)ne + 1, 1);
    if (!used) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    for (int i = 0; i < r->sd.n; i++) used[r->storage[i] - r->zip.entries] = 1;
    const mrw_zip *z = &r->zip;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1)
#endif
    for (int i = 0; i < ne; i++) {
        const mrw_zip_entry *e = &z->entries[i];
        if (used[i] && !(e->crc32 == 0 && e->size > 0) &&
            mrw_crc32(&z->crc, 0, z->buf + e->data_offset, (size_t)e->size) != e->crc32)
            used[i] = 2;
    }
    mrw_status s = MRW_OK;
    for (int i = 0; i < ne && !s; i++)
        if (used[i] == 2) {
            const uint8_t *d;
            s = mrw_zip_data(z, &z->entries[i], 1, &d, err); /* repeats the check to word the error */
            if (s) mrw_err_prefix(err, "%s", r->what);
        }
    free(used);
    return s;
}

/* Adds tensor i to the file: zero-copy when the view is contiguous and aligned, else a copy. */
static mrw_status add_tensor(pth_reader *r, mrw_tfile *f, int i, uint64_t numel, mrw_error *err) {
    const mrw_pkl_tensor *t = &r->sd.tensors[i];
    const mrw_zip_entry *e = r->storage[i];
    size_t es = mrw_dtype_block_bytes(t->dtype);
    mrw_tensor_info ti = {0};
    ti.dtype = t->dtype;
    ti.ndim = t->ndim;
    memcpy(ti.shape, t->size, sizeof ti.shape);
    ti.nbytes = (size_t)numel * es;
    const uint8_t *base = r->zip.buf + e->data_offset;
    const uint8_t *p = numel ? base + (size_t)t->offset * es : base;
    if (numel && (!is_contiguous(t) || (uintptr_t)p % es)) {
        if (ti.nbytes > r->copy_budget)
            return mrw_err(err, MRW_E_LIMIT,
                           "%s: tensor '%s': copying its non-contiguous view needs %zu bytes, "
                           "more than this file may use (save it with .contiguous())", r->what, t->name,
                           ti.nbytes);
        r->copy_budget -= ti.nbytes;
        uint8_t *copy = mrw_tfile_own(f, malloc(ti.nbytes));
        if (!copy)
            return mrw_err(err, MRW_E_NOMEM, "%s: out of memory copying tensor '%s'", r->what, t->name);
        if (is_contiguous(t)) memcpy(copy, p, ti.nbytes);
        else strided_copy(copy, base + (size_t)t->offset * es, es, t);
        p = copy;
    }
    ti.data = p;
    ti.name = mrw_tfile_own(f, strdup(t->name));
    if (!ti.name || !mrw_tfile_add_tensor(f, &ti)) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    return MRW_OK;
}

static mrw_status build(pth_reader *r, mrw_tfile *f, mrw_error *err) {
    uint64_t *numel = calloc((size_t)r->sd.n + 1, sizeof *numel);
    r->storage = calloc((size_t)r->sd.n + 1, sizeof *r->storage);
    mrw_status s = (!numel || !r->storage) ? mrw_err(err, MRW_E_NOMEM, "out of memory") : MRW_OK;
    for (int i = 0; i < r->sd.n && !s; i++) s = check_tensor(r, i, &numel[i], err);
    if (!s) s = verify_crcs(r, err);
    for (int i = 0; i < r->sd.n && !s; i++) s = add_tensor(r, f, i, numel[i], err);
    if (!s && (s = mrw_tfile_finish(f, err))) mrw_err_prefix(err, "%s", r->what);
    free(numel);
    return s;
}

static mrw_status pth_parse(mrw_tfile *f, const uint8_t *buf, size_t len, const char *what, mrw_error *err) {
    pth_reader *r = calloc(1, sizeof *r);
    if (!r) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    r->what = what;
    r->copy_budget = (len > (SIZE_MAX - PTH_COPY_SLACK) / 2) ? SIZE_MAX : 2 * len + PTH_COPY_SLACK;
    mrw_status s = mrw_zip_open(&r->zip, buf, len, what, err);
    if (!s) s = find_pickle(r, err);
    if (!s) s = unpickle(r, err);
    if (!s) s = check_records(r, err);
    if (!s) s = build(r, f, err);
    mrw_pkl_free(&r->sd);
    free(r->storage);
    mrw_zip_close(&r->zip);
    free(r);
    return s;
}

static mrw_status pth_parse_file(mrw_tfile *f, const char *path, mrw_error *err) {
    return pth_parse(f, f->map.data, f->map.size, path ? path : "<memory>", err);
}

mrw_status mrw_pth_open_mem(const void *buf, size_t len, mrw_tfile **out, mrw_error *err) {
    return mrw_tfile_open_buffer(MRW_FMT_PTH, buf, len, pth_parse_file, out, err);
}

mrw_status mrw_pth_open(const char *path, mrw_tfile **out, mrw_error *err) {
    return mrw_tfile_open_file(MRW_FMT_PTH, path, pth_parse_file, out, err);
}

/* ------------------------------------------------------------------------------------------- writing */

/* The pickle is built in memory: a few hundred bytes per tensor. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} pbuf;

static void pb_bytes(pbuf *b, const void *data, size_t n) {
    if (b->oom) return;
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n < n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void pb_op(pbuf *b, uint8_t op) { pb_bytes(b, &op, 1); }

static void pb_le(pbuf *b, uint64_t v, int n) {
    uint8_t t[8];
    for (int i = 0; i < n; i++) t[i] = (uint8_t)(v >> (8 * i));
    pb_bytes(b, t, (size_t)n);
}

static void pb_int(pbuf *b, int64_t v) {
    if (v >= 0 && v < 256) {
        pb_op(b, 'K'); /* BININT1 */
        pb_le(b, (uint64_t)v, 1);
    } else if (v >= 0 && v < 65536) {
        pb_op(b, 'M'); /* BININT2 */
        pb_le(b, (uint64_t)v, 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        pb_op(b, 'J'); /* BININT */
        pb_le(b, (uint64_t)(uint32_t)(int32_t)v, 4);
    } else {
        pb_op(b, 0x8a); /* LONG1, 8 bytes two's complement */
        pb_le(b, 8, 1);
        pb_le(b, (uint64_t)v, 8);
    }
}

static void pb_str(pbuf *b, const char *s) {
    size_t n = strlen(s);
    pb_op(b, 'X'); /* BINUNICODE */
    pb_le(b, n, 4);
    pb_bytes(b, s, n);
}

static void pb_global(pbuf *b, const char *mod, const char *name) {
    pb_op(b, 'c');
    pb_bytes(b, mod, strlen(mod));
    pb_op(b, '\n');
    pb_bytes(b, name, strlen(name));
    pb_op(b, '\n');
}

/* Memoized values: the first use emits the value and BINPUT, later uses BINGET. */
enum { M_ODICT, M_REBUILD, M_STORAGE_STR, M_CPU, M_TYPES, M_COUNT = M_TYPES + MRW_DT_COUNT };

static void pb_memo(pbuf *b, int *have, int slot) {
    if (have[slot]) {
        pb_op(b, 'h'); /* BINGET */
    } else {
        pb_op(b, 'q'); /* BINPUT */
        have[slot] = 1;
    }
    pb_le(b, (uint64_t)slot, 1);
}

static const char *storage_type(mrw_dtype t) {
    switch (t) {
    case MRW_DT_BF16: return "BFloat16Storage";
    case MRW_DT_F16: return "HalfStorage";
    case MRW_DT_F32: return "FloatStorage";
    case MRW_DT_F64: return "DoubleStorage";
    case MRW_DT_I64: return "LongStorage";
    case MRW_DT_I32: return "IntStorage";
    case MRW_DT_I16: return "ShortStorage";
    case MRW_DT_I8: return "CharStorage";
    case MRW_DT_U8: return "ByteStorage";
    case MRW_DT_BOOL: return "BoolStorage";
    default: return NULL;
    }
}

static void pb_tuple(pbuf *b, const int64_t *v, int n) {
    static const uint8_t tuple_n[4] = {')', 0x85, 0x86, 0x87}; /* EMPTY_TUPLE, TUPLE1..3 */
    if (n > 3) pb_op(b, '(');
    for (int i = 0; i < n; i++) pb_int(b, v[i]);
    pb_op(b, n > 3 ? 't' : tuple_n[n]);
}

/* Emits `memo-able value`: the first time with its constructor, then from the memo. */
static void pb_memo_value(pbuf *b, int *have, int slot, const char *mod, const char *name) {
    if (!have[slot]) {
        if (mod) pb_global(b, mod, name);
        else pb_str(b, name);
    }
    pb_memo(b, have, slot);
}

/* name -> _rebuild_tensor_v2(('storage', torch.XStorage, key, 'cpu', numel), 0, size, stride, False,
 * OrderedDict()) */
static void pb_tensor(pbuf *b, int *have, const mrw_tensor_info *t, int key) {
    char k[16];
    snprintf(k, sizeof k, "%d", key);
    int64_t stride[MRW_MAX_DIMS], st = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        stride[d] = st;
        st *= t->shape[d] > 1 ? t->shape[d] : 1; /* torch's strides treat size-0 dims as 1 */
    }
    pb_str(b, t->name);
    pb_memo_value(b, have, M_REBUILD, "torch._utils", "_rebuild_tensor_v2");
    pb_op(b, '(');
    pb_op(b, '(');
    pb_memo_value(b, have, M_STORAGE_STR, NULL, "storage");
    pb_memo_value(b, have, M_TYPES + t->dtype, "torch", storage_type(t->dtype));
    pb_str(b, k);
    pb_memo_value(b, have, M_CPU, NULL, "cpu");
    pb_int(b, mrw_tensor_numel(t));
    pb_op(b, 't');
    pb_op(b, 'Q'); /* BINPERSID */
    pb_int(b, 0);
    pb_tuple(b, t->shape, t->ndim);
    pb_tuple(b, stride, t->ndim);
    pb_op(b, 0x89); /* NEWFALSE: requires_grad */
    pb_memo(b, have, M_ODICT);
    pb_op(b, ')');
    pb_op(b, 'R'); /* backward_hooks = OrderedDict() */
    pb_op(b, 't');
    pb_op(b, 'R');
}

static void build_pickle(pbuf *b, const mrw_tensor_info *tensors, int n) {
    int have[M_COUNT] = {0};
    pb_op(b, 0x80);
    pb_op(b, 2);
    pb_memo_value(b, have, M_ODICT, "collections", "OrderedDict");
    pb_op(b, ')');
    pb_op(b, 'R');
    for (int i = 0; i < n; i += 1000) { /* SETITEMS batches of 1000, as Python's pickler */
        pb_op(b, '(');
        for (int j = i; j < n && j < i + 1000; j++) pb_tensor(b, have, &tensors[j], j);
        pb_op(b, 'u');
    }
    pb_op(b, '.');
}

static int utf8_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        int k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
        if (k < 0 || i + (size_t)k >= n) return 0;
        for (int j = 1; j <= k; j++)
            if ((s[i + (size_t)j] & 0xc0) != 0x80) return 0;
        i += (size_t)k + 1;
    }
    return 1;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp((*(const mrw_tensor_info *const *)a)->name, (*(const mrw_tensor_info *const *)b)->name);
}

static mrw_status check_write_tensor(const char *path, const mrw_tensor_info *t, mrw_error *err) {
    if (!t->name) return mrw_err(err, MRW_E_ARG, "%s: a tensor without a name", path);
    if (!utf8_ok((const unsigned char *)t->name, strlen(t->name)))
        return mrw_err(err, MRW_E_ARG, "%s: tensor name '%s' is not valid UTF-8", path, t->name);
    if (mrw_dtype_is_quant(t->dtype))
        return mrw_err(err, MRW_E_UNSUPPORTED,
                       "%s: tensor '%s': %s tensors cannot be stored in .pth; write GGUF",
                       path, t->name, mrw_dtype_name(t->dtype));
    if (!storage_type(t->dtype))
        return mrw_err(err, MRW_E_ARG, "%s: tensor '%s' has an invalid dtype", path, t->name);
    if (t->ndim < 0 || t->ndim > MRW_MAX_DIMS)
        return mrw_err(err, MRW_E_ARG, "%s: tensor '%s' has %d dimensions", path, t->name, t->ndim);
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || !mul_ok(n, (uint64_t)t->shape[d], &n) || n > ((uint64_t)1 << 62))
            return mrw_err(err, MRW_E_ARG, "%s: tensor '%s' has an invalid shape", path, t->name);
    uint64_t bytes = n * mrw_dtype_block_bytes(t->dtype);
    if (bytes != t->nbytes || (bytes && !t->data))
        return mrw_err(err, MRW_E_ARG,
                       "%s: tensor '%s': %llu bytes of data given, its shape and dtype need %llu",
                       path, t->name, (unsigned long long)t->nbytes, (unsigned long long)bytes);
    return MRW_OK;
}

static mrw_status check_write_args(const char *path, const mrw_tensor_info *tensors, int n, mrw_error *err) {
    if (!path || n < 0 || (n > 0 && !tensors)) return mrw_err(err, MRW_E_ARG,
                                                              "mrw_pth_write: invalid arguments");
    for (int i = 0; i < n; i++) {
        mrw_status s = check_write_tensor(path, &tensors[i], err);
        if (s) return s;
    }
    const mrw_tensor_info **v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) v[i] = &tensors[i];
    qsort(v, (size_t)n, sizeof *v, cmp_names);
    mrw_status s = MRW_OK;
    for (int i = 1; i < n && !s; i++)
        if (!strcmp(v[i]->name, v[i - 1]->name))
            s = mrw_err(err, MRW_E_ARG, "%s: two tensors are named '%s'", path, v[i]->name);
    free(v);
    return s;
}

static void afile_sink(void *user, const void *data, size_t n) { mrw_afile_write(user, data, n); }

typedef struct {
    mrw_progress_fn fn;
    void *user;
    uint64_t done, total;
} progress;

static void report(progress *p, uint64_t n) {
    p->done += n;
    if (p->fn) p->fn(p->user, p->done, p->total);
}

/* Writes the records; the CRCs of the tensors' data were computed beforehand (the local header that
 * precedes the data carries them, and the output is strictly sequential). */
static mrw_status write_records(mrw_zipw *w, const mrw_crc32_ctx *crc, const pbuf *pk,
                                const mrw_tensor_info *ts, int n, const uint32_t *crcs, progress *pr,
                                mrw_error *err) {
    mrw_status s = mrw_zipw_add(w, crc, "archive/data.pkl", pk->p, pk->n, err);
    if (!s) s = mrw_zipw_add(w, crc, "archive/byteorder", "little", 6, err);
    report(pr, pk->n);
    for (int i = 0; i < n && !s; i++) {
        char name[32];
        snprintf(name, sizeof name, "archive/data/%d", i);
        if ((s = mrw_zipw_begin(w, name, ts[i].nbytes, crcs[i], err))) break;
        const uint8_t *d = ts[i].data;
        for (size_t off = 0; off < ts[i].nbytes;) {
            size_t k = ts[i].nbytes - off < ((size_t)64 << 20) ? ts[i].nbytes - off : (size_t)64 << 20;
            mrw_zipw_write(w, d + off, k);
            off += k;
            report(pr, k);
        }
    }
    if (!s) s = mrw_zipw_add(w, crc, "archive/version", "3\n", 2, err);
    if (!s) s = mrw_zipw_finish(w, err);
    return s;
}

mrw_status mrw_pth_write(const char *path, const mrw_tensor_info *tensors, int n, mrw_progress_fn progress_fn,
                         void *user, mrw_error *err) {
    mrw_status s = check_write_args(path, tensors, n, err);
    if (s) return s;
    pbuf pk = {0};
    build_pickle(&pk, tensors, n);
    mrw_crc32_ctx *crc = malloc(sizeof *crc);
    uint32_t *crcs = malloc((size_t)(n > 0 ? n : 1) * sizeof *crcs);
    if (pk.oom || !crc || !crcs) {
        free(pk.p);
        free(crc);
        free(crcs);
        return mrw_err(err, MRW_E_NOMEM, "%s: out of memory", path);
    }
    mrw_crc32_init(crc);
    progress pr = {progress_fn, user, 0, pk.n};
    for (int i = 0; i < n; i++) pr.total += tensors[i].nbytes;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1)
#endif
    for (int i = 0; i < n; i++) crcs[i] = mrw_crc32(crc, 0, tensors[i].data, tensors[i].nbytes);
    mrw_afile af;
    s = mrw_afile_open(&af, path, err);
    if (!s) {
        mrw_zipw w;
        mrw_zipw_init(&w, afile_sink, &af);
        s = write_records(&w, crc, &pk, tensors, n, crcs, &pr, err);
        mrw_zipw_free(&w);
        if (s) mrw_afile_abort(&af);
        else s = mrw_afile_commit(&af, err);
    }
    free(pk.p);
    free(crc);
    free(crcs);
    return s;
}
