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

/* The row-independent steps of one layer, shared by sequence mode (rows = tokens of one sequence,
 * rwkv7_forward.c) and batched decode (rows = one token of each of several sequences, rwkv7_batch.c); only the
 * token shift and the WKV scan differ between the two. Each works on the first `rows` rows of the buffers. */
void mrw_rwkv7_projections(mrw_context *c, const rwkv7_layer *ly, int layer, int rows); /* steps 3-7 */
void mrw_rwkv7_key_prep(mrw_context *c, const rwkv7_layer *ly, int rows);                /* steps 8-9 */
/* steps 11-13 after the WKV scan filled c->y: GroupNorm, bonus, gate, output projection into c->x */
void mrw_rwkv7_attn_out(mrw_context *c, const rwkv7_layer *ly, int rows);
/* step 14 after the token shift filled c->xk: key, relu², value into c->x */
void mrw_rwkv7_ffn(mrw_context *c, const rwkv7_layer *ly, int rows);

#endif
