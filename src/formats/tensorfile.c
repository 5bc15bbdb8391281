#include "formats/tfile_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tensor/dtype.h"

mrw_tfile *mrw_tfile_alloc(mrw_file_format fmt) {
    mrw_tfile *f = calloc(1, sizeof *f);
    if (f) f->format = fmt;
    return f;
}

void *mrw_tfile_own(mrw_tfile *f, void *p) {
    if (!p) return NULL;
    if (f->n_owned == f->cap_owned) {
        int cap = f->cap_owned ? f->cap_owned * 2 : 64;
        void **o = realloc(f->owned, (size_t)cap * sizeof *o);
        if (!o) {
            free(p);
            return NULL;
        }
        f->owned = o;
        f->cap_owned = cap;
    }
    f->owned[f->n_owned++] = p;
    return p;
}

mrw_tensor_info *mrw_tfile_add_tensor(mrw_tfile *f, const mrw_tensor_info *t) {
    if (f->n_tensors == f->cap_tensors) {
        int cap = f->cap_tensors ? f->cap_tensors * 2 : 64;
        mrw_tensor_info *n = realloc(f->tensors, (size_t)cap * sizeof *n);
        if (!n) return NULL;
        f->tensors = n;
        f->cap_tensors = cap;
    }
    f->tensors[f->n_tensors] = *t;
    return &f->tensors[f->n_tensors++];
}

mrw_meta *mrw_tfile_add_meta(mrw_tfile *f, const mrw_meta *m) {
    if (f->n_meta == f->cap_meta) {
        int cap = f->cap_meta ? f->cap_meta * 2 : 32;
        mrw_meta *n = realloc(f->meta, (size_t)cap * sizeof *n);
        if (!n) return NULL;
        f->meta = n;
        f->cap_meta = cap;
    }
    f->meta[f->n_meta] = *m;
    return &f->meta[f->n_meta++];
}

/* qsort has no user pointer in C11: a small merge sort keeps this reentrant without a global. */
static void sort_idx(const mrw_tfile *f, int *idx, int *tmp, int n) {
    if (n < 2) return;
    int h = n / 2;
    sort_idx(f, idx, tmp, h);
    sort_idx(f, idx + h, tmp, n - h);
    int i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = strcmp(f->tensors[idx[i]].name, f->tensors[idx[j]].name) <= 0 ? idx[i++] : idx[j++];
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, (size_t)n * sizeof *idx);
}

mrw_status mrw_tfile_finish(mrw_tfile *f, mrw_error *err) {
    free(f->sorted);
    f->sorted = NULL;
    if (f->n_tensors == 0) return MRW_OK;
    int *idx = malloc((size_t)f->n_tensors * sizeof *idx);
    int *tmp = malloc((size_t)f->n_tensors * sizeof *tmp);
    if (!idx || !tmp) {
        free(idx);
        free(tmp);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < f->n_tensors; i++) idx[i] = i;
    sort_idx(f, idx, tmp, f->n_tensors);
    free(tmp);
    for (int i = 1; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[idx[i]].name, f->tensors[idx[i - 1]].name)) {
            const char *name = f->tensors[idx[i]].name;
            mrw_status s = mrw_err(err, MRW_E_FORMAT, "duplicate tensor name '%s'", name);
            free(idx);
            return s;
        }
    f->sorted = idx;
    return MRW_OK;
}

static mrw_status open_mapping(mrw_file_format fmt, mrw_mapping map, const char *path, mrw_tfile_parse_fn parse,
                               mrw_tfile **out, mrw_error *err) {
    mrw_tfile *f = mrw_tfile_alloc(fmt);
    if (!f) {
        mrw_unmap(&map);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    f->map = map; /* closed (and unmapped) with f, on failure too */
    mrw_status s = parse(f, path, err);
    if (s != MRW_OK) {
        mrw_tfile_close(f);
        return s;
    }
    *out = f;
    return MRW_OK;
}

mrw_status mrw_tfile_open_file(mrw_file_format fmt, const char *path, mrw_tfile_parse_fn parse, mrw_tfile **out,
                               mrw_error *err) {
    *out = NULL;
    mrw_mapping map;
    mrw_status s = mrw_map_file(path, &map, err);
    return s ? s : open_mapping(fmt, map, path, parse, out, err);
}

mrw_status mrw_tfile_open_buffer(mrw_file_format fmt, const void *buf, size_t len, mrw_tfile_parse_fn parse,
                                 mrw_tfile **out, mrw_error *err) {
    *out = NULL;
    if (!buf && len) return mrw_err(err, MRW_E_ARG, "NULL buffer");
    mrw_mapping map = {buf, len, 0};
    return open_mapping(fmt, map, NULL, parse, out, err);
}

void mrw_tfile_close(mrw_tfile *f) {
    if (!f) return;
    for (int i = 0; i < f->n_owned; i++) free(f->owned[i]);
    free(f->owned);
    free(f->tensors);
    free(f->meta);
    free(f->sorted);
    mrw_unmap(&f->map);
    free(f);
}

mrw_file_format mrw_tfile_format(const mrw_tfile *f) { return f->format; }
int mrw_tfile_count(const mrw_tfile *f) { return f->n_tensors; }
const mrw_tensor_info *mrw_tfile_tensor(const mrw_tfile *f, int i) {
    return (i >= 0 && i < f->n_tensors) ? &f->tensors[i] : NULL;
}

const mrw_tensor_info *mrw_tfile_find(const mrw_tfile *f, const char *name) {
    if (!f->sorted) {
        for (int i = 0; i < f->n_tensors; i++)
            if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
        return NULL;
    }
    int lo = 0, hi = f->n_tensors - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(f->tensors[f->sorted[mid]].name, name);
        if (c == 0) return &f->tensors[f->sorted[mid]];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

int mrw_tfile_meta_count(const mrw_tfile *f) { return f->n_meta; }
const mrw_meta *mrw_tfile_meta(const mrw_tfile *f, int i) { return (i >= 0 && i < f->n_meta) ? &f->meta[i] : NULL; }
const mrw_meta *mrw_tfile_find_meta(const mrw_tfile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[i].key, key)) return &f->meta[i];
    return NULL;
}

int64_t mrw_tensor_numel(const mrw_tensor_info *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *mrw_file_format_name(mrw_file_format f) {
    switch (f) {
    case MRW_FMT_SAFETENSORS: return "safetensors";
    case MRW_FMT_PTH: return "pth";
    case MRW_FMT_GGUF: return "gguf";
    default: return "unknown";
    }
}

mrw_file_format mrw_tfile_detect(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return MRW_FMT_UNKNOWN;
    unsigned char b[16] = {0};
    size_t n = fread(b, 1, sizeof b, fp);
    fclose(fp);
    if (n >= 4 && !memcmp(b, "GGUF", 4)) return MRW_FMT_GGUF;
    if (n >= 4 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4) return MRW_FMT_PTH;
    if (n >= 9) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | b[i];
        if (hl >= 2 && hl < ((uint64_t)1 << 40) && b[8] == '{') return MRW_FMT_SAFETENSORS;
    }
    return MRW_FMT_UNKNOWN;
}

mrw_status mrw_tfile_open(const char *path, mrw_tfile **out, mrw_error *err) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return mrw_err(err, MRW_E_IO, "%s: cannot open", path);
    fclose(fp);
    switch (mrw_tfile_detect(path)) {
    case MRW_FMT_GGUF: return mrw_gguf_open(path, out, err);
    case MRW_FMT_PTH: return mrw_pth_open(path, out, err);
    case MRW_FMT_SAFETENSORS: return mrw_safetensors_open(path, out, err);
    default:
        return mrw_err(err, MRW_E_FORMAT,
                       "%s: not a recognised weight file (expected safetensors, a PyTorch .pth zip, or GGUF)", path);
    }
}

mrw_status mrw_read_tensor_f32(const char *path, const char *name, float **data, size_t *n, int64_t *shape,
                               int *ndim, mrw_error *err) {
    *data = NULL;
    *n = 0;
    mrw_tfile *f;
    mrw_status s = mrw_tfile_open(path, &f, err);
    if (s) return s;
    const mrw_tensor_info *t = NULL;
    if (name) t = mrw_tfile_find(f, name);
    else if (mrw_tfile_count(f) == 1) t = mrw_tfile_tensor(f, 0);
    if (!t) {
        s = name ? mrw_err(err, MRW_E_MISSING, "%s: no tensor '%s'", path, name)
                 : mrw_err(err, MRW_E_ARG, "%s: holds %d tensors; name the one to read", path, mrw_tfile_count(f));
    } else {
        const int64_t cnt = mrw_tensor_numel(t);
        float *d = malloc((size_t)(cnt ? cnt : 1) * sizeof *d);
        if (!d) {
            s = mrw_err(err, MRW_E_NOMEM, "out of memory");
        } else {
            mrw_to_f32(t->dtype, t->data, d, cnt);
            *data = d;
            *n = (size_t)cnt;
            if (ndim) *ndim = t->ndim;
            if (shape) memcpy(shape, t->shape, (size_t)t->ndim * sizeof *shape);
        }
    }
    mrw_tfile_close(f);
    return s;
}
