/* ModRWKV adapters and sequence compression (../shared/reference/modrwkv.md, "Adapters", "Sequence
 * compression"). Inputs and outputs are sequence-major [T, channels].
 *
 *   MLP adapter (v1 vision "proj.{0,2}, pre_norm"; v2 vision "mlp.{0,2}, pre_norm[, conv]"):
 *       [conv: Conv1d(E->E, k3, s2, no padding, no bias)] -> Linear(E->H) -> ReLU -> Linear(H->C) -> h + LN_C(h)
 *       (H = 2C in v1, 4C in v2; LN eps 1e-5; the released code names this LayerNorm "pre_norm")
 *   audio adapter (v1 audio "conv, proj.{0,2}"):
 *       Conv1d(E->2C, k3, s2, p2) -> Linear(2C->2C) -> ReLU -> Linear(2C->C)
 *   compression ("compress.weight [E,E,k], compress.bias"): a trained Conv1d(E->E, k, s) over the tokens, or,
 *       when the model has no trained weights, average pooling with the same window (k, s). */
#ifndef MRW_MODELS_ADAPTER_H
#define MRW_MODELS_ADAPTER_H

#include "kernels/cpu/kctx.h"
#include "kernels/cpu/matmul.h"
#include "models/weights.h"

typedef enum { MRW_ADAPTER_MLP = 1, MRW_ADAPTER_AUDIO = 2 } mrw_adapter_kind;

typedef struct {
    mrw_adapter_kind kind;
    int version; /* 1 or 2 (key layout) */
    int E, C, H;
    /* optional leading Conv1d */
    const float *conv_w, *conv_b;
    int conv_in, conv_out, conv_k, conv_s, conv_p;
    mrw_mat l1, l2;
    const float *b1, *b2;
    const float *ln_w, *ln_b; /* MLP adapter only */
} mrw_adapter;

/* Loads the adapter whose tensors sit under `prefix` in the loader (e.g. "modality.world_encoder.adapter." or
 * "proj."), detecting its kind from the keys. `C` is the language model's width; `E` the encoder's width
 * (checked: a mismatch is MRW_E_SHAPE naming both). */
mrw_status mrw_adapter_load(mrw_wloader *L, const char *prefix, int E, int C, mrw_adapter *a, mrw_error *err);
/* Output length for T input tokens, or -1 if T is too short for the convolution. */
int mrw_adapter_out_len(const mrw_adapter *a, int T);
/* out [out_len, C]; scratch needs mrw_adapter_scratch_floats(a, T). */
size_t mrw_adapter_scratch_floats(const mrw_adapter *a, int T);
mrw_status mrw_adapter_forward(const mrw_adapter *a, mrw_kctx *k, const float *x, int T, float *out, float *scratch,
                               mrw_error *err);

typedef struct {
    int k, s, E;
    const float *w, *b; /* NULL: average pooling */
} mrw_compress;

/* The trained compression under `prefix` ("compress.") if present (k from the weight's shape, s given), else
 * average pooling (k, s). */
mrw_status mrw_compress_load(mrw_wloader *L, const char *prefix, int E, int k, int s, mrw_compress *c, mrw_error *err);
int mrw_compress_out_len(const mrw_compress *c, int T);
size_t mrw_compress_scratch_floats(const mrw_compress *c, int T);
mrw_status mrw_compress_forward(const mrw_compress *c, mrw_kctx *k, const float *x, int T, float *out, float *scratch,
                                mrw_error *err);

#endif
