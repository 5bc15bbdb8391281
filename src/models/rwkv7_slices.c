/* The layout decode wants for the big matrices, made at load (docs/PERFORMANCE.md):
 * - rows too long for decode's input slice to stay in L1 are re-stored in column slices (mrw_mat.slice_cols).
 *   Measured on Zen 4 (bench_matmul --dram): a 2048 x 8192 f16 matrix-vector product streamed 45-54 % of the read
 *   bandwidth with whole rows and ~100 % in slices of 2048 columns, because with 32 KiB of f32 input per row every
 *   input line is evicted by the weight stream before it is used again ("Long rows");
 * - q4_0 rows are interleaved (mrw_mat.interleaved): the decode kernel then takes 16 blocks per step with no
 *   shuffles, ~1.8x the work per cycle, which one core needs to keep up with its share of DRAM ("q4_0: interleaved
 *   rows"). */
#include <stdlib.h>
#include <string.h>

#include "base/bigalloc.h"
#include "base/error.h"
#include "models/rwkv7.h"

/* The index of p among the model's own buffers, or -1 (mapped file data is not owned). */
static int owned_index(const mrw_model *m, const void *p) {
    for (int i = 0; i < m->n_owned; i++)
        if (m->owned[i] == p) return i;
    return -1;
}

/* Frees p if the model owns it (a buffer of a matrix that was replaced). */
static void release(mrw_model *m, const void *p) {
    const int i = owned_index(m, p);
    if (i < 0) return;
    free(m->owned[i]);
    m->owned[i] = m->owned[--m->n_owned];
}

static mrw_status slice(mrw_model *m, mrw_mat *w, int input_bytes, mrw_error *err) {
    const int cols = mrw_mat_slice_cols_for(w->dtype, w->cols, input_bytes);
    if (!cols || w->slice_cols || w->interleaved || !w->data) return MRW_OK;
    void *dst = mrw_model_own(m, mrw_alloc_big((size_t)w->rows * w->row_bytes));
    if (!dst) return mrw_err(err, MRW_E_NOMEM, "out of memory re-laying out a %d x %d matrix", w->rows, w->cols);
    const void *old = w->data;
    mrw_mat_copy_sliced(w, cols, dst, w);
    release(m, old);
    return MRW_OK;
}

/* In place when the model owns the buffer, else (weights used in place from a mapped file) into a copy. */
static mrw_status interleave(mrw_model *m, mrw_mat *w, int input_bytes, mrw_error *err) {
    (void)input_bytes;
    if (!mrw_mat_interleavable(w) || !w->data) return MRW_OK;
    const int i = owned_index(m, w->data);
    void *dst = i >= 0 ? m->owned[i] : mrw_model_own(m, mrw_alloc_big((size_t)w->rows * w->row_bytes));
    if (!dst)
        return mrw_err(err, MRW_E_NOMEM, "out of memory re-laying out a %d x %d matrix", w->rows, w->cols);
    if (mrw_mat_interleave(w, dst)) return mrw_err(err, MRW_E_NOMEM, "out of memory interleaving a q4_0 row");
    return MRW_OK;
}

static int disabled(const char *var) { /* for A/B measurements (bench_rwkv7 --ab-slices, --ab-interleave) */
    const char *v = getenv(var);
    return v && *v && strcmp(v, "0");
}

typedef mrw_status (*relayout_fn)(mrw_model *m, mrw_mat *w, int input_bytes, mrw_error *err);

static mrw_status each_big(mrw_model *m, relayout_fn f, int input_bytes, mrw_error *err) {
    mrw_status s = f(m, &m->head, input_bytes, err);
    for (int i = 0; i < m->info.n_layer && !s; i++) {
        rwkv7_layer *l = &m->layers[i];
        mrw_mat *big[] = {&l->Wr, &l->Wk, &l->Wv, &l->Wo, &l->ffn_key, &l->ffn_value};
        for (size_t j = 0; j < sizeof big / sizeof *big && !s; j++) s = f(m, big[j], input_bytes, err);
    }
    return s;
}

mrw_status mrw_rwkv7_decode_layout(mrw_model *m, int input_bytes, mrw_error *err) {
    mrw_status s = disabled("MRW_NO_SLICES") ? MRW_OK : each_big(m, slice, input_bytes, err);
    if (!s && !disabled("MRW_NO_INTERLEAVE")) s = each_big(m, interleave, input_bytes, err);
    return s;
}
