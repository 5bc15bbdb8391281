/* Trainable tensors as the trainer sees them: named fp32 arrays with their gradients. Each trainable module
 * (RWKV-7, adapter, compression, encoder) owns one mrw_param_set: one allocation for the weights and one for
 * the gradients (llm.c style), with a table of named views into them. The optimizer, gradient clipping,
 * checkpoints and the parity tests work on the table only, so they do not know any model.
 *
 * Names are the checkpoint keys with the ModRWKV v2 prefixes ("llm.blocks.0.att.key.weight", "proj.mlp.0.weight",
 * "encoder.model.…"), shapes are the PyTorch shapes as saved, so a checkpoint is the table written out. */
#ifndef MRW_TRAIN_PARAMS_H
#define MRW_TRAIN_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "modrwkv.h"

/* Which part of the model a tensor belongs to; `modrwkv train --train adapter,rwkv` selects groups. */
typedef enum { MRW_PG_ADAPTER = 1, MRW_PG_RWKV = 2, MRW_PG_ENCODER = 4 } mrw_param_group;

#define MRW_PARAM_NAME_MAX 128

typedef struct {
    char name[MRW_PARAM_NAME_MAX];
    int ndim;
    int64_t shape[4];
    size_t offset; /* in floats, into the set's w and g */
    size_t n;      /* element count */
    int group;     /* mrw_param_group */
    int no_decay;  /* AdamW leaves it alone: norms, biases, mixes and other 1-D / [1,1,C] tensors */
} mrw_param;

typedef struct {
    mrw_param *p;
    int n, cap;
    float *w, *g; /* total floats each; NULL until mrw_param_set_alloc */
    size_t total;
} mrw_param_set;

/* Layout phase: add tensors (shape given as ndim sizes), then allocate once. Returns the index, or -1 on
 * allocation failure / name too long. */
int mrw_param_add(mrw_param_set *s, const char *name, int group, int no_decay, int ndim, const int64_t *shape);
/* Zero-filled w and g for every tensor added. */
mrw_status mrw_param_set_alloc(mrw_param_set *s, mrw_error *err);
void mrw_param_set_free(mrw_param_set *s);
/* Index of the named tensor, or -1. */
int mrw_param_find(const mrw_param_set *s, const char *name);
/* Weights and gradient of tensor i; i < 0 (an optional tensor the model does not have, e.g. a bias) gives NULL. */
static inline float *mrw_param_w(const mrw_param_set *s, int i) { return i >= 0 ? s->w + s->p[i].offset : NULL; }
static inline float *mrw_param_g(const mrw_param_set *s, int i) { return i >= 0 ? s->g + s->p[i].offset : NULL; }
void mrw_param_zero_grad(mrw_param_set *s);

#endif
