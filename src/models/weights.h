/* Reading a model's tensors from a tensor file by name: every getter checks the shape, converts to f32 where
 * the caller needs f32 (owned by the loader's arena, freed with the model), and marks the tensor used, so that
 * after loading, tensors nobody asked for can be reported (or skipped for known extras such as a CLIP text
 * tower). Used by the encoder loaders (ViT, Whisper, WavLM) and the adapters. */
#ifndef MRW_MODELS_WEIGHTS_H
#define MRW_MODELS_WEIGHTS_H

#include "formats/tensorfile.h"
#include "kernels/cpu/matmul.h"
#include "modrwkv.h"

/* Owned allocations of a model (freed together). */
typedef struct {
    void **p;
    int n, cap;
} mrw_arena;

void *mrw_arena_keep(mrw_arena *a, void *p); /* NULL (p freed) on failure */
void mrw_arena_free(mrw_arena *a);

typedef struct {
    const mrw_tfile *f;
    const char *prefix; /* prepended to every name ("" for none) */
    unsigned char *used; /* per tensor of f */
    mrw_arena *arena;
    mrw_error *err;
} mrw_wloader;

mrw_status mrw_wl_init(mrw_wloader *L, const mrw_tfile *f, const char *prefix, mrw_arena *arena, mrw_error *err);
void mrw_wl_done(mrw_wloader *L);

/* The tensor `prefix+name`, marked used; NULL if absent. */
const mrw_tensor_info *mrw_wl_find(mrw_wloader *L, const char *name);
int mrw_wl_has(mrw_wloader *L, const char *name); /* present? (does not mark it used) */
/* A float tensor whose shape must be exactly `shape` (ndim dims), as f32. */
mrw_status mrw_wl_f32(mrw_wloader *L, const char *name, int ndim, const int64_t *shape, float **out);
/* A vector of n elements (any shape with n elements), as f32. */
mrw_status mrw_wl_vec(mrw_wloader *L, const char *name, int n, float **out);
/* Like mrw_wl_vec but returns NULL in *out without error when the tensor is absent. */
mrw_status mrw_wl_vec_opt(mrw_wloader *L, const char *name, int n, float **out);
/* A Linear weight [rows = out, cols = in]: zero-copy when stored as f32/f16/bf16/q8_0/q4_0 and `keep_dtype`,
 * else converted to f32. */
mrw_status mrw_wl_mat(mrw_wloader *L, const char *name, int rows, int cols, int keep_dtype, mrw_mat *out);
/* Tensors under the prefix that were not used and do not start with any of `skip` (NULL-terminated list of
 * name prefixes relative to the loader's prefix): MRW_E_UNKNOWN naming the first. */
mrw_status mrw_wl_check_unused(mrw_wloader *L, const char *const *skip);

#endif
