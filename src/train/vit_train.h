/* The ViT vision encoders (SigLIP / CLIP, src/models/vit.h) for the optional encoder training stage: fp32
 * parameters in one mrw_param_set (group MRW_PG_ENCODER, names "encoder.model.vision_model.<key>" with the
 * Hugging Face tower keys, PyTorch shapes, so a saved set is what a ModRWKV v2 checkpoint holds under
 * "encoder.model."), a batched training forward that keeps its activations, and an explicit backward.
 *
 * The forward computes what mrw_vit_forward computes (last_hidden_state): SigLIP: patch conv (+bias) +
 * positions, pre-LN blocks (MHA, GELU-tanh MLP), post_layernorm; CLIP: class token + patch conv (no bias) +
 * positions, pre_layrnorm, the same blocks with quick-GELU, no post-LN. CLIP's post_layernorm is kept in the
 * set (the inference loader reads it) but gets no gradient. */
#ifndef MRW_TRAIN_VIT_TRAIN_H
#define MRW_TRAIN_VIT_TRAIN_H

#include "models/vit.h"
#include "train/params.h"

typedef struct mrw_vit_train mrw_vit_train;

/* Zero parameters laid out for `cfg` (family, hidden, n_layer, n_head, head_dim, intermediate, channels,
 * patch, image_size, eps, act are used), activations for batches up to max_B images. */
mrw_status mrw_vit_train_new(const mrw_vit_config *cfg, int max_B, int n_threads, mrw_vit_train **out,
                             mrw_error *err);
/* A Hugging Face SigLIP / CLIP vision model (a directory with config.json + model.safetensors, or a weight
 * file, or a ModRWKV v2 checkpoint with params->prefix "encoder.model."), validated by the inference loader
 * (mrw_vit_load) and copied to fp32. */
mrw_status mrw_vit_train_open(const char *path, const mrw_vit_params *params, int max_B, int n_threads,
                              mrw_vit_train **out, mrw_error *err);
/* Copies the tower's tensors found under `prefix` in f (any float dtype; shapes must match). */
mrw_status mrw_vit_train_load(mrw_vit_train *m, const mrw_tfile *f, const char *prefix, mrw_error *err);
void mrw_vit_train_free(mrw_vit_train *m);
mrw_param_set *mrw_vit_train_params(mrw_vit_train *m);
const mrw_vit_config *mrw_vit_train_config(const mrw_vit_train *m);

/* pixels [B][channels][S][S] (normalised as the processor does) -> out [B][n_tokens][hidden]. */
mrw_status mrw_vit_train_forward(mrw_vit_train *m, const float *pixels, int B, float *out, mrw_error *err);
/* d_out [B][n_tokens][hidden] of the last forward: grads += dloss/dparam; d_pixels (NULL or like pixels)
 * = dloss/dpixels. */
void mrw_vit_train_backward(mrw_vit_train *m, const float *d_out, float *d_pixels);

#endif
