#include "models/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tensor/dtype.h"

void *mrw_arena_keep(mrw_arena *a, void *p) {
    if (!p) return NULL;
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 64;
        void **n = realloc(a->p, (size_t)cap * sizeof *n);
        if (!n) {
            free(p);
            return NULL;
        }
        a->p = n;
        a->cap = cap;
    }
    a->p[a->n++] = p;
    return p;
}

void mrw_arena_free(mrw_arena *a) {
    for (int i = 0; i < a->n; i++) free(a->p[i]);
    free(a->p);
    memset(a, 0, sizeof *a);
}

mrw_status mrw_wl_init(mrw_wloader *L, const mrw_tfile *f, const char *prefix, mrw_arena *arena, mrw_error *err) {
    memset(L, 0, sizeof *L);
    L->f = f;
    L->prefix = prefix ? prefix : "";
    L->arena = arena;
    L->err = err;
    L->used = calloc((size_t)mrw_tfile_count(f) + 1, 1);
    return L->used ? MRW_OK : mrw_err(err, MRW_E_NOMEM, "out of memory");
}

void mrw_wl_done(mrw_wloader *L) {
    free(L->used);
    L->used = NULL;
}

static const mrw_tensor_info *lookup(mrw_wloader *L, const char *name, int mark) {
    char full[512];
    if (snprintf(full, sizeof full, "%s%s", L->prefix, name) >= (int)sizeof full) return NULL;
    const mrw_tensor_info *t = mrw_tfile_find(L->f, full);
    if (t && mark) L->used[t - mrw_tfile_tensor(L->f, 0)] = 1;
    return t;
}

const mrw_tensor_info *mrw_wl_find(mrw_wloader *L, const char *name) { return lookup(L, name, 1); }
int mrw_wl_has(mrw_wloader *L, const char *name) { return lookup(L, name, 0) != NULL; }

static void shape_str(const mrw_tensor_info *t, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static mrw_status need(mrw_wloader *L, const char *name, const mrw_tensor_info **t) {
    *t = mrw_wl_find(L, name);
    if (!*t) return mrw_err(L->err, MRW_E_MISSING, "tensor '%s%s' is missing", L->prefix, name);
    if (!mrw_dtype_is_float((*t)->dtype) && !mrw_dtype_is_quant((*t)->dtype))
        return mrw_err(L->err, MRW_E_UNSUPPORTED, "tensor '%s' has dtype %s; expected floating point", (*t)->name,
                       mrw_dtype_name((*t)->dtype));
    return MRW_OK;
}

static mrw_status to_f32(mrw_wloader *L, const mrw_tensor_info *t, int64_t n, float **out) {
    float *v = mrw_arena_keep(L->arena, malloc((size_t)(n ? n : 1) * sizeof *v));
    if (!v) return mrw_err(L->err, MRW_E_NOMEM, "out of memory for '%s'", t->name);
    mrw_to_f32(t->dtype, t->data, v, n);
    *out = v;
    return MRW_OK;
}

mrw_status mrw_wl_f32(mrw_wloader *L, const char *name, int ndim, const int64_t *shape, float **out) {
    const mrw_tensor_info *t;
    mrw_status s = need(L, name, &t);
    if (s) return s;
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char got[128], want[128];
        size_t k = (size_t)snprintf(want, sizeof want, "[");
        for (int i = 0; i < ndim && k < sizeof want; i++)
            k += (size_t)snprintf(want + k, sizeof want - k, i ? ",%lld" : "%lld", (long long)shape[i]);
        if (k < sizeof want) snprintf(want + k, sizeof want - k, "]");
        shape_str(t, got, sizeof got);
        return mrw_err(L->err, MRW_E_SHAPE, "tensor '%s' has shape %s, expected %s", t->name, got, want);
    }
    return to_f32(L, t, mrw_tensor_numel(t), out);
}

mrw_status mrw_wl_vec(mrw_wloader *L, const char *name, int n, float **out) {
    const mrw_tensor_info *t;
    mrw_status s = need(L, name, &t);
    if (s) return s;
    if (mrw_tensor_numel(t) != n) {
        char got[128];
        shape_str(t, got, sizeof got);
        return mrw_err(L->err, MRW_E_SHAPE, "tensor '%s' has shape %s, expected %d elements", t->name, got, n);
    }
    return to_f32(L, t, n, out);
}

mrw_status mrw_wl_vec_opt(mrw_wloader *L, const char *name, int n, float **out) {
    *out = NULL;
    return mrw_wl_has(L, name) ? mrw_wl_vec(L, name, n, out) : MRW_OK;
}

mrw_status mrw_wl_mat(mrw_wloader *L, const char *name, int rows, int cols, int keep_dtype, mrw_mat *out) {
    const mrw_tensor_info *t;
    mrw_status s = need(L, name, &t);
    if (s) return s;
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        char got[128];
        shape_str(t, got, sizeof got);
        return mrw_err(L->err, MRW_E_SHAPE, "tensor '%s' has shape %s, expected [%d,%d]", t->name, got, rows, cols);
    }
    const mrw_dtype dt = t->dtype;
    const int computable = dt == MRW_DT_F32 || dt == MRW_DT_F16 || dt == MRW_DT_BF16 || dt == MRW_DT_Q8_0 || dt == MRW_DT_Q4_0;
    if (keep_dtype && computable) {
        mrw_mat_init(out, dt, rows, cols, t->data);
        return MRW_OK;
    }
    float *v;
    if ((s = to_f32(L, t, (int64_t)rows * cols, &v))) return s;
    mrw_mat_init(out, MRW_DT_F32, rows, cols, v);
    return MRW_OK;
}

mrw_status mrw_wl_check_unused(mrw_wloader *L, const char *const *skip) {
    const size_t pl = strlen(L->prefix);
    for (int i = 0; i < mrw_tfile_count(L->f); i++) {
        if (L->used[i]) continue;
        const char *name = mrw_tfile_tensor(L->f, i)->name;
        if (strncmp(name, L->prefix, pl)) continue; /* outside this model's prefix: someone else's */
        int skipped = 0;
        for (int k = 0; skip && skip[k] && !skipped; k++) skipped = !strncmp(name + pl, skip[k], strlen(skip[k]));
        if (!skipped)
            return mrw_err(L->err, MRW_E_UNKNOWN, "unexpected tensor '%s' (not part of this model)", name);
    }
    return MRW_OK;
}
