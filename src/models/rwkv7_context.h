/* Per-context scratch for the forward pass: one allocation holding every activation buffer for up to
 * max_chunk rows, plus the kernels' context (threads, packing buffers). And the state's layout. */
#ifndef MRW_MODELS_RWKV7_CONTEXT_H
#define MRW_MODELS_RWKV7_CONTEXT_H

#include "kernels/cpu/kctx.h"
#include "models/rwkv7.h"

struct mrw_context {
    const mrw_model *model;
    mrw_kctx kc;
    int max_chunk, C, H, N;
    float *arena;
    /* [max_chunk, C] */
    float *x, *xa, *xr, *xw, *xk, *xv, *xaa, *xg, *r, *k, *v, *w, *alpha, *g, *vfirst, *kk, *y;
    /* [max_chunk, rank] and [max_chunk, F] */
    float *lw, *la, *lv, *lg, *ffn;
};

struct mrw_state {
    int n_layer, n_embd, n_head, head_size;
    size_t n;
    float *data;
};

#endif
