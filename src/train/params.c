#include "train/params.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"

int mrw_param_add(mrw_param_set *s, const char *name, int group, int no_decay, int ndim, const int64_t *shape) {
    if (strlen(name) >= MRW_PARAM_NAME_MAX || ndim < 1 || ndim > 4 || s->w) return -1;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        mrw_param *p = realloc(s->p, (size_t)cap * sizeof *p);
        if (!p) return -1;
        s->p = p, s->cap = cap;
    }
    mrw_param *t = &s->p[s->n];
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);
    t->ndim = ndim;
    t->n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0) return -1;
        t->shape[d] = shape[d];
        t->n *= (size_t)shape[d];
    }
    t->offset = s->total;
    t->group = group;
    t->no_decay = no_decay;
    /* 16-float alignment keeps every tensor 64-byte aligned for the SIMD kernels */
    s->total += (t->n + 15) & ~(size_t)15;
    return s->n++;
}

mrw_status mrw_param_set_alloc(mrw_param_set *s, mrw_error *err) {
    size_t bytes = (s->total ? s->total : 16) * sizeof(float);
    s->w = aligned_alloc(64, bytes);
    s->g = aligned_alloc(64, bytes);
    if (!s->w || !s->g) {
        free(s->w), free(s->g);
        s->w = s->g = NULL;
        return mrw_err(err, MRW_E_NOMEM, "cannot allocate %zu MiB of parameters and gradients",
                       2 * bytes >> 20);
    }
    memset(s->w, 0, bytes);
    memset(s->g, 0, bytes);
    return MRW_OK;
}

void mrw_param_set_free(mrw_param_set *s) {
    free(s->p), free(s->w), free(s->g);
    memset(s, 0, sizeof *s);
}

int mrw_param_find(const mrw_param_set *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->p[i].name, name)) return i;
    return -1;
}

void mrw_param_zero_grad(mrw_param_set *s) {
    if (s->g) memset(s->g, 0, s->total * sizeof(float));
}
