/* WavLM (microsoft/wavlm-base-plus, wavlm-large) exactly as transformers' WavLMModel computes
 * `last_hidden_state`, in f32 on the CPU:
 *
 *   waveform [n] -> conv feature extractor: Conv1d(C_{i-1} -> C_i, K_i, stride S_i[, bias]) per layer, then
 *       "group": GroupNorm(C_0 groups) on layer 0 only, or "layer": LayerNorm over channels on every layer
 *       (eps 1e-5), then GELU  -> [T, C_last], ~50 frames/s
 *   -> feature projection: LayerNorm(C_last) -> Linear(C_last -> hidden)
 *   -> x += GELU(pos_conv(x)): Conv1d(hidden, hidden, K=128, padding K/2, 16 groups, weight norm over dim 2,
 *       the extra last frame of an even K dropped)
 *   -> "group"/post-LN (base): x = LN(x); per layer x = LN(x + attn(x)); x = LN(x + ffn(x))
 *      "layer"/stable-LN (large): per layer x += attn(LN(x)); x += ffn(LN(x)); after the stack x = LN(x)
 *   attention: softmax(q kᵀ/sqrt(D) + gate(t, h) · bias_h(s - t)) v, where bias_h is layer 0's
 *       rel_attn_embed[bucket(s - t)][h] (log-spaced buckets up to max_bucket_distance, reused by every
 *       layer) and gate = σ(a)·(σ(b)·gru_rel_pos_const_h - 1) + 2 from gru_rel_pos_linear of the
 *       attention's input (per head: D -> 8, summed in two groups of 4 into a, b).
 *
 * Weights come from any mrw_tfile: WavLMModel (no prefix), WavLMForCTC / WavLMForSequenceClassification
 * ("wavlm."; their heads are ignored), or under a caller-given prefix (ModRWKV v2: "encoder.model."; the
 * layouts above are also tried under it). The positional convolution's weight norm may be stored as
 * weight_g/weight_v (torch 1.x), parametrizations.weight.original0/1 (torch 2.x) or as a plain weight.
 *
 * Configuration: sizes, kernels, conv bias, the norm type, head count and buckets come from the tensors; from
 * config.json when given: conv_stride, do_stable_layer_norm, max_bucket_distance, layer_norm_eps,
 * hidden_act, feat_extract_activation (every config value that the tensors also show is cross-checked; keys
 * absent from a config take transformers' WavLMConfig defaults). Without a config: the published values,
 * strides (5,2,2,2,2,2,2) (7 conv layers required), stable layer norm iff the norm type is "layer",
 * max_bucket_distance 800, eps 1e-5, GELU.
 *
 * The input is used as given: normalise it first (zero mean, unit variance) when the feature extractor's
 * do_normalize says so (true for both published models). */
#ifndef MRW_MODELS_WAVLM_H
#define MRW_MODELS_WAVLM_H

#include "formats/tensorfile.h"
#include "kernels/cpu/kctx.h"
#include "models/whisper_enc.h"
#include "modrwkv.h"

#define MRW_WAVLM_MAX_CONV 16
/* Longest input accepted: 60 s at 16 kHz. Memory grows linearly (the first two conv layers' outputs are
 * n/5 x 512 and n/10 x 512 floats: ~600 MB at this limit); split longer audio. */
#define MRW_WAVLM_MAX_SAMPLES (16000 * 60)

typedef struct {
    int n_conv, conv_dim[MRW_WAVLM_MAX_CONV], conv_kernel[MRW_WAVLM_MAX_CONV],
        conv_stride[MRW_WAVLM_MAX_CONV];
    int conv_bias;  /* the conv layers have biases */
    int norm_layer; /* feat_extract_norm: 0 "group", 1 "layer" */
    int hidden, n_layers, n_heads, ffn_dim;
    int pos_kernel, pos_groups;
    int num_buckets, max_distance;
    int stable_ln; /* do_stable_layer_norm */
    float ln_eps;  /* layer_norm_eps: feature projection and encoder (conv-layer norms use 1e-5) */
    mrw_audio_act act, feat_act;
    int from_config; /* 1: a config was given; 0: the defaults above */
} mrw_wavlm_config;

typedef struct {
    const char *prefix;      /* NULL: detect ("", "wavlm.", and both under "encoder.model.") */
    const char *config_path; /* WavLMConfig JSON file, or NULL */
    const char *config_json; /* the same as text (takes precedence), or NULL */
    int keep_lowp;           /* compute with f16/bf16/quantized Linear weights as stored (not exact) */
} mrw_wavlm_params;

typedef struct mrw_wavlm mrw_wavlm;

/* p may be NULL. The file must outlive the model (f32 weights are used in place). */
mrw_status mrw_wavlm_load(const mrw_tfile *f, const mrw_wavlm_params *p, mrw_wavlm **out, mrw_error *err);
void mrw_wavlm_free(mrw_wavlm *m);
const mrw_wavlm_config *mrw_wavlm_get_config(const mrw_wavlm *m);
const char *mrw_wavlm_prefix(const mrw_wavlm *m);

/* Output frames for n samples (0 if n is shorter than the conv stack's receptive field), and that minimum. */
int mrw_wavlm_out_frames(const mrw_wavlm *m, int n_samples);
int mrw_wavlm_min_samples(const mrw_wavlm *m);

/* wave [n_samples] -> out [mrw_wavlm_out_frames(m, n_samples), hidden]. Too short (fewer than
 * mrw_wavlm_min_samples) is MRW_E_ARG, longer than MRW_WAVLM_MAX_SAMPLES MRW_E_LIMIT. Activations (~100 MB
 * for 10 s) stay in k's workspace for the next call; the model is read-only (contexts may share it). */
mrw_status mrw_wavlm_forward(const mrw_wavlm *m, mrw_kctx *k, const float *wave, int n_samples, float *out,
                             mrw_error *err);

/* transformers' bucket of relative position `rel` (= key - query), computed in float32 as torch does. */
int mrw_wavlm_rel_bucket(int rel, int num_buckets, int max_distance);

#endif
