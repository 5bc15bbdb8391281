/* Trainable ModRWKV adapters and Conv1D sequence compression (../shared/reference/modrwkv.md, "Adapters",
 * "Sequence compression"), forward and backward in fp32, parameters in an mrw_param_set with the names that
 * the inference loader (src/models/adapter.c, modrwkv.c) reads from a v2 checkpoint ("proj.mlp.0.weight", …;
 * "compress.weight"), so a trained checkpoint runs in `modrwkv chat` as is.
 *
 * Shapes: input features [B, T, E] (sequence-major per sample), output [B, T', C]. The backward accumulates
 * (+=) scale-free gradients of the given d_out into the set's g, and writes d_in when asked (encoder training).
 *
 * Tensor names (all group MRW_PG_ADAPTER; PyTorch shapes):
 *   v1 vision  proj.proj.0.{weight [2C,E],bias}  proj.proj.2.{weight [C,2C],bias}  proj.pre_norm.{weight,bias}
 *   v1 audio   proj.conv.{weight [2C,E,3],bias}  proj.proj.0.{weight [2C,2C],bias}  proj.proj.2.*
 *   v2         [proj.conv.weight [E,E,3]]  proj.mlp.0.{weight [H,E],bias}  proj.mlp.2.{weight [C,H],bias}
 *              proj.pre_norm.*
 *   compress   compress.weight [E,E,k], compress.bias [E]
 * i.e. a released v1 adapter ("modality.world_encoder.adapter.X") saved in a v2 file is "proj.X"; the inference
 * loader (mrw_adapter_load under "proj.") reads all of these, and reports v1 names as adapter version 1. The
 * compression stride is not in any tensor: a checkpoint must carry it as metadata ("modrwkv.compress" = "k,s").
 * The forward is computed as mrw_compress_forward + mrw_adapter_forward compute it (tested equal). */
#ifndef MRW_TRAIN_ADAPTER_TRAIN_H
#define MRW_TRAIN_ADAPTER_TRAIN_H

#include "train/params.h"

typedef enum {
    MRW_TADAPTER_V1_VISION = 1, /* Linear(E->2C) ReLU Linear(2C->C), h + LN(h) */
    MRW_TADAPTER_V1_AUDIO = 2,  /* Conv1d(E->2C,k3,s2,p2) Linear(2C->2C) ReLU Linear(2C->C) */
    MRW_TADAPTER_V2 = 3,        /* [Conv1d(E->E,k3,s2,no bias)] Linear(E->hidden) ReLU Linear(hidden->C), h + LN(h) */
} mrw_tadapter_kind;

typedef struct {
    mrw_tadapter_kind kind;
    int E, C;
    int hidden;       /* v2: hidden width (0 = 4C); "adapter scaling" sets it to 2x/4x/8x of its input */
    int v2_conv;      /* v2: the optional stride-2 Conv1d */
    int compress_k;   /* 0 = none; else a trained Conv1d(E->E, k, s) over the tokens before the adapter */
    int compress_s;
} mrw_tadapter_config;

typedef struct mrw_tadapter mrw_tadapter;

mrw_status mrw_tadapter_new(const mrw_tadapter_config *cfg, int max_B, int max_T, int n_threads, mrw_tadapter **out,
                            mrw_error *err);
void mrw_tadapter_free(mrw_tadapter *a);
mrw_param_set *mrw_tadapter_params(mrw_tadapter *a);
int mrw_tadapter_out_len(const mrw_tadapter *a, int T); /* -1 if T is too short */
/* PyTorch's default init (kaiming-uniform Linear/Conv1d, LN weight 1 bias 0) from a seed. */
void mrw_tadapter_init(mrw_tadapter *a, uint64_t seed);
/* Loads the tensors of an existing checkpoint (v1 or v2 names, e.g. a stage-1 output or a released model):
 * the adapter under "modrwkv.adapter_prefix" (bundles), "proj." or "modality.world_encoder.adapter.", and
 * "compress.*". Every adapter tensor of this configuration must be there with its shape (f32/f16/bf16/f64),
 * and no other tensor may sit under the adapter's prefix (MRW_E_MISSING / MRW_E_SHAPE / MRW_E_UNKNOWN naming
 * it); a file without compress.* leaves a configured compression as initialised (compression added on top of
 * a released model). Nothing is changed when it fails. */
mrw_status mrw_tadapter_load(mrw_tadapter *a, const char *path, mrw_error *err);
/* x [B*T*E] -> out [B*T'*C]; keeps activations for the backward. */
mrw_status mrw_tadapter_forward(mrw_tadapter *a, const float *x, int B, int T, float *out, mrw_error *err);
/* d_out [B*T'*C] of the last forward; grads += ...; d_x (NULL or [B*T*E]) = dloss/dx. */
void mrw_tadapter_backward(mrw_tadapter *a, const float *d_out, float *d_x);

#endif
