/* The RNN state and its file format: "MRWSTATE", version, the model shape, the floats, and an FNV-1a
 * checksum, written atomically. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mapfile.h"
#include "models/rwkv7_context.h"

#define STATE_MAGIC "MRWSTATE"
#define STATE_VERSION 1u

mrw_state *mrw_state_new(const mrw_model *model) {
    mrw_state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    const mrw_model_info *in = &model->info;
    s->n_layer = in->n_layer;
    s->n_embd = in->n_embd;
    s->n_head = in->n_head;
    s->head_size = in->head_size;
    s->n = (size_t)in->n_layer * mrw_state_layer_floats(in);
    s->data = calloc(s->n, sizeof *s->data);
    if (!s->data) {
        free(s);
        return NULL;
    }
    return s;
}

void mrw_state_free(mrw_state *s) {
    if (!s) return;
    free(s->data);
    free(s);
}

void mrw_state_reset(mrw_state *s) { memset(s->data, 0, s->n * sizeof *s->data); }

static int same_shape(const mrw_state *a, const mrw_state *b) {
    return a->n_layer == b->n_layer && a->n_embd == b->n_embd && a->n_head == b->n_head &&
           a->head_size == b->head_size && a->n == b->n;
}

mrw_status mrw_state_copy(mrw_state *dst, const mrw_state *src) {
    if (!same_shape(dst, src)) return MRW_E_ARG;
    memcpy(dst->data, src->data, src->n * sizeof *src->data);
    return MRW_OK;
}

float *mrw_state_data(mrw_state *s, size_t *n) {
    if (n) *n = s->n;
    return s->data;
}

static uint64_t fnv1a(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

typedef struct {
    char magic[8];
    uint32_t version, n_layer, n_embd, n_head, head_size, reserved;
    uint64_t n_floats;
} state_header;

mrw_status mrw_state_save(const mrw_state *s, const char *path, mrw_error *err) {
    state_header h = {.version = STATE_VERSION, .n_layer = (uint32_t)s->n_layer, .n_embd = (uint32_t)s->n_embd,
                      .n_head = (uint32_t)s->n_head, .head_size = (uint32_t)s->head_size, .n_floats = s->n};
    memcpy(h.magic, STATE_MAGIC, 8);
    uint64_t sum = fnv1a(s->data, s->n * sizeof(float));
    mrw_afile f;
    mrw_status st = mrw_afile_open(&f, path, err);
    if (st) return st;
    mrw_afile_write(&f, &h, sizeof h);
    mrw_afile_write(&f, s->data, s->n * sizeof(float));
    mrw_afile_write(&f, &sum, sizeof sum);
    return mrw_afile_commit(&f, err);
}

mrw_status mrw_state_load(mrw_state *s, const char *path, mrw_error *err) {
    mrw_mapping m;
    mrw_status st = mrw_map_file(path, &m, err);
    if (st) return st;
    state_header h;
    const size_t need = sizeof h + s->n * sizeof(float) + 8;
    if (m.size < sizeof h || memcmp(m.data, STATE_MAGIC, 8)) {
        mrw_unmap(&m);
        return mrw_err(err, MRW_E_FORMAT, "%s: not a modrwkv state file", path);
    }
    memcpy(&h, m.data, sizeof h);
    if (h.version != STATE_VERSION) {
        mrw_unmap(&m);
        return mrw_err(err, MRW_E_UNSUPPORTED, "%s: state file version %u (this build reads %u)", path, h.version,
                       STATE_VERSION);
    }
    if (h.n_layer != (uint32_t)s->n_layer || h.n_embd != (uint32_t)s->n_embd || h.n_head != (uint32_t)s->n_head ||
        h.head_size != (uint32_t)s->head_size || h.n_floats != s->n) {
        mrw_unmap(&m);
        return mrw_err(err, MRW_E_SHAPE,
                       "%s: the state is for a model with %u layers and n_embd %u; this model has %d layers and "
                       "n_embd %d", path, h.n_layer, h.n_embd, s->n_layer, s->n_embd);
    }
    if (m.size != need) {
        mrw_unmap(&m);
        return mrw_err(err, MRW_E_FORMAT, "%s: state file is %zu bytes, expected %zu (truncated?)", path, m.size, need);
    }
    const uint8_t *data = m.data + sizeof h;
    uint64_t sum;
    memcpy(&sum, data + s->n * sizeof(float), 8);
    if (sum != fnv1a(data, s->n * sizeof(float))) {
        mrw_unmap(&m);
        return mrw_err(err, MRW_E_FORMAT, "%s: checksum mismatch: the state file is corrupt", path);
    }
    /* Copy only after every check so a failed load leaves the caller's state untouched. */
    memcpy(s->data, data, s->n * sizeof(float));
    mrw_unmap(&m);
    return MRW_OK;
}
