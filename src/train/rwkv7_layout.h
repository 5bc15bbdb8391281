/* The parameter table of RWKV-7 training (names "llm.<official key>", PyTorch shapes, weight-decay flags as
 * RWKV-LM's configure_optimizers), shared by the CPU trainer (rwkv7_train.c) and the GPU trainer
 * (kernels/cuda/rwkv7_train_gpu.cu) so both lay out, name and decay the same tensors. */
#ifndef MRW_TRAIN_RWKV7_LAYOUT_H
#define MRW_TRAIN_RWKV7_LAYOUT_H

#include "train/params.h"
#include "train/rwkv7_train.h"

/* Indices into the parameter set, per layer; v0/v1/v2 are -1 when the config has no value LoRA. */
typedef struct {
    int ln1w, ln1b, ln2w, ln2b, xr, xw, xk, xv, xa, xg, w0, w1, w2, a0, a1, a2, v0, v1, v2, g1, g2, kk, ka, rk;
    int Wr, Wk, Wv, Wo, lnxw, lnxb, fxk, Wfk, Wfv;
} mrw_rwkv7_lidx;

/* ... and for the tensors outside the blocks. */
typedef struct {
    int emb, ln0w, ln0b, lnow, lnob, head;
} mrw_rwkv7_gidx;

/* Adds every tensor of `c` to `ps` (group MRW_PG_RWKV) and fills the indices (L: c->n_layer entries). Returns
 * 0, or -1 if the set refused a tensor. */
int mrw_rwkv7_param_layout(mrw_param_set *ps, const mrw_rwkv7_train_config *c, mrw_rwkv7_gidx *g, mrw_rwkv7_lidx *L);

#endif
