/* Training checkpoints (../shared/reference/modrwkv.md "Checkpoints").
 *
 * Two files, each written atomically (the safetensors writer's temp file + fsync + rename to "<path>.partial",
 * then rename to <path> and fsync of the directory), so a kill at any moment leaves the previous file intact:
 *   - the model: every tensor of the given parameter sets in f32 under its table name (the ModRWKV v2 keys
 *     "llm.*", "proj.*", "encoder.model.*"), plus optional extra tensors (e.g. a frozen encoder copied from its
 *     source so the file runs on its own) and string metadata. safetensors.torch.load_file reads it; so do
 *     mrw_model_load and mrw_mm_load.
 *   - the resume state: every weight ("w/<name>"), the Adam moments of the trained tensors ("m/<name>",
 *     "v/<name>"), and as metadata the optimizer step, the data position, the RNG state, counters and the
 *     run's options (a JSON string), so `modrwkv train --resume` continues exactly where the file was written.
 *     It is self-contained: resuming needs no other checkpoint file.
 *
 * MRW_TRAIN_CRASH_IN_SAVE=1 in the environment (tests only) aborts the process after the new file is
 * complete but before it replaces the old one. */
#ifndef MRW_TRAIN_CHECKPOINT_H
#define MRW_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "formats/tensorfile.h"
#include "train/optim.h"

typedef struct {
    int64_t step;          /* optimizer steps done (the schedule position) */
    int64_t epoch, k;      /* data position: the next sample is the k-th of epoch `epoch` */
    uint64_t rng;          /* the trainer's RNG state */
    int64_t tokens;        /* tokens trained on so far */
    double elapsed_s;      /* training time so far */
    const char *options;   /* JSON object of the run's options (save: borrowed; load: malloc'd, free it) */
} mrw_train_state;

/* Model file. strip (NULL: none): a name prefix left out of the keys (a text-only fine-tune is saved with the
 * official RWKV-7 keys, without "llm.", so every tool treats it as a plain RWKV-7 model). meta: n_meta
 * key/value string pairs (keys[i], vals[i]); "format": "pt" is always written. */
mrw_status mrw_ckpt_save_model(const char *path, mrw_param_set *const *sets, int n_sets, const char *strip,
                               const mrw_tensor_info *extra, int n_extra, const char *const *keys,
                               const char *const *vals, int n_meta, mrw_error *err);
/* Loads the tensors of a file into the sets by name (any float dtype, converted to f32); a tensor of the sets
 * that the file lacks is an error unless allow_missing; a shape mismatch is always an error naming the tensor.
 * Tensors of the file that the sets lack are ignored. *n_loaded (may be NULL) counts the tensors read. */
mrw_status mrw_ckpt_load_weights(const char *path, mrw_param_set *const *sets, int n_sets, int allow_missing,
                                 int *n_loaded, mrw_error *err);

/* Resume file of the optimizer's sets. */
mrw_status mrw_ckpt_save_resume(const char *path, const mrw_adam *o, const mrw_train_state *st, mrw_error *err);
/* Restores weights, moments and o->t (the sets and groups must be the same as when saved: every tensor is
 * checked by name and shape) and fills st (st->options malloc'd). */
mrw_status mrw_ckpt_load_resume(const char *path, mrw_adam *o, mrw_train_state *st, mrw_error *err);

#endif
