/* Vision transformers of the ModRWKV vision encoders: SigLIP / SigLIP2 at fixed resolution (model_type
 * "siglip", e.g. google/siglip2-base-patch16-384) and CLIP ViT (e.g. openai/clip-vit-large-patch14-336), with
 * Hugging Face weights, computing the model's `last_hidden_state` in f32:
 *   SigLIP: patches only (no CLS), after post_layernorm                      -> [grid², hidden]
 *   CLIP:   CLS + patches, pre_layrnorm before the encoder, no post-LN       -> [1 + grid², hidden]
 *
 * A loaded mrw_vit is immutable and may be shared; each caller encodes through its own mrw_vit_ctx (scratch
 * and threads), so encoding is re-entrant across contexts.
 *
 * Where the numbers come from: every shape (hidden, layers, MLP width, patch, image size, family) is read
 * from the tensors; heads, LayerNorm eps and the activation from the Hugging Face config.json when one is
 * given (the vision_config of a full SiglipModel/CLIPModel config, or a vision-only config; keys it omits
 * take transformers' class defaults), otherwise from the family defaults (64-wide heads; SigLIP eps 1e-6 and
 * gelu_pytorch_tanh; CLIP eps 1e-5 and quick_gelu), which is reported in one log line. */
#ifndef MRW_MODELS_VIT_H
#define MRW_MODELS_VIT_H

#include <stdint.h>

#include "formats/tensorfile.h"
#include "modrwkv.h"

typedef enum { MRW_VIT_SIGLIP = 1, MRW_VIT_CLIP = 2 } mrw_vit_family;
typedef enum { MRW_VIT_GELU_TANH = 0, MRW_VIT_QUICK_GELU, MRW_VIT_GELU_ERF } mrw_vit_act;

typedef struct {
    mrw_vit_family family;
    int hidden; /* C: width of every output row */
    int n_layer;
    int n_head, head_dim;
    int intermediate; /* MLP width */
    int channels;     /* 3 */
    int patch;        /* patch side in pixels */
    int image_size;   /* S: the input is planar [channels][S][S] */
    int grid;         /* S / patch */
    int n_patches;    /* grid² */
    int n_tokens;     /* rows of last_hidden_state: n_patches, + 1 (CLS, row 0) for CLIP */
    float eps;        /* LayerNorm eps */
    mrw_vit_act act;
    /* What the Hugging Face processor does before the model: resize to image_size (SigLIP: bilinear with
     * antialias; CLIP: shortest side bicubic + centre crop), x/255, then (x - mean[c]) / std[c]. From
     * preprocessor_config.json when mrw_vit_open finds one, else the family's published values. */
    float mean[3], std[3];
    mrw_dtype weight_dtype; /* dtype of the big matrices as held in memory */
    int64_t n_params;       /* parameters used by last_hidden_state (excludes skipped heads/towers) */
    int config_given;       /* 1 if heads/eps/activation came from a config.json, 0 if family defaults */
    char prefix[128];       /* tensor-name prefix the tower was found under, e.g. "vision_model." */
} mrw_vit_config;

typedef struct {
    /* Where the vision tower lives in the file, e.g. "encoder.model." for a ModRWKV v2 checkpoint; tried as
     * given and with "vision_model." appended. NULL or "": try "", "vision_model.", "encoder.model.",
     * "encoder.model.vision_model." in that order. */
    const char *prefix;
    /* The Hugging Face config.json, as a path or as JSON text (at most one; both NULL: none, except that
     * mrw_vit_open looks for config.json next to the weights). */
    const char *config_path;
    const char *config_json;
    /* 0 (default): f16/bf16 matrices are converted to f32 at load, so the GEMMs are exact f32 (parity
     * ≤ 1e-4). 1: keep them as stored (half the memory, bf16 dot products with activations rounded to bf16:
     * about 2x the GEMM rate, relative error ~5e-3). f32 weights are always used in place (zero-copy). */
    int keep_dtype;
    int quiet; /* no log line on stderr when family defaults stand in for a missing config */
} mrw_vit_params;

typedef struct mrw_vit mrw_vit;
typedef struct mrw_vit_ctx mrw_vit_ctx;

/* Loads from an open tensor file, which must stay open as long as the model lives (f32 matrices are used
 * in place). Tensors the tower does not use are errors, except known extras of full checkpoints
 * (text_model.*, logit_scale, logit_bias, visual_projection, text_projection, SigLIP's attention-pooling
 * vision_model.head.*, embeddings.position_ids). `params` may be NULL. */
mrw_status mrw_vit_load(const mrw_tfile *f, const mrw_vit_params *params, mrw_vit **out, mrw_error *err);
/* Opens `path`: a Hugging Face model directory (config.json + model.safetensors, optional
 * preprocessor_config.json) or a weight file (a config.json / preprocessor_config.json beside it is used when
 * it describes a SigLIP/CLIP model). The model owns the file. */
mrw_status mrw_vit_open(const char *path, const mrw_vit_params *params, mrw_vit **out, mrw_error *err);
void mrw_vit_free(mrw_vit *v);
const mrw_vit_config *mrw_vit_get_config(const mrw_vit *v);
/* Floating-point operations of one forward pass: the GEMMs (patch embedding, q/k/v/o, MLP) and the two
 * attention products, 2 per multiply-add. */
double mrw_vit_flops(const mrw_vit *v);

/* A model with random weights for benchmarks and tests. Uses family, hidden, n_layer, n_head,
 * intermediate, patch and image_size of `shape` (0 for eps/act/mean/std: family defaults); matrices are
 * f32, N(0, 1/fan_in)-scaled uniform. The result does not depend on the thread count. */
mrw_status mrw_vit_new_random(const mrw_vit_config *shape, uint64_t seed, mrw_vit **out, mrw_error *err);

/* Per-caller scratch (activations) and threads (n_threads <= 0: all cores). */
mrw_status mrw_vit_ctx_new(const mrw_vit *v, int n_threads, mrw_vit_ctx **out, mrw_error *err);
void mrw_vit_ctx_free(mrw_vit_ctx *c);

/* pixels: planar float [channels][S][S], normalised as the processor does. out: [n_tokens][hidden]
 * (last_hidden_state). Non-finite pixels are an MRW_E_ARG error. */
mrw_status mrw_vit_forward(mrw_vit_ctx *c, const float *pixels, float *out, mrw_error *err);

#endif
