/* The Whisper encoder (src/models/whisper_enc.h) for the optional encoder training stage: fp32 parameters in
 * one mrw_param_set (group MRW_PG_ENCODER, names "encoder.model.<WhisperEncoder key>", e.g.
 * "encoder.model.layers.0.fc1.weight", PyTorch shapes: what a ModRWKV v2 checkpoint holds under
 * "encoder.model." and what the inference loader reads there), a batched training forward that keeps its
 * activations, and an explicit backward.
 *
 *   mel [n_mels][F] -> conv1 (k3, p1) + GELU -> conv2 (k3, s2, p1) + GELU -> + embed_positions[0..T)
 *   -> pre-LN layers (k_proj without bias) -> layer_norm -> [T, d],  T = (F - 1) / 2 + 1
 * as transformers' WhisperEncoder computes last_hidden_state. embed_positions is frozen there
 * (requires_grad False), so here too: it is in the set (a checkpoint needs it) but never gets a gradient. */
#ifndef MRW_TRAIN_WHISPER_TRAIN_H
#define MRW_TRAIN_WHISPER_TRAIN_H

#include "models/whisper_enc.h"
#include "train/params.h"

typedef struct mrw_whisper_train mrw_whisper_train;

/* Zero parameters laid out for `cfg` (n_mels, d_model, n_layers, n_heads, ffn_dim, n_pos, act, ln_eps), and
 * activations for batches up to max_B clips of up to max_frames mel frames (<= 2 * n_pos). */
mrw_status mrw_whisper_train_new(const mrw_whisper_config *cfg, int max_B, int max_frames, int n_threads,
                                 mrw_whisper_train **out, mrw_error *err);
/* A Hugging Face Whisper model (a directory with config.json + model.safetensors, or a weight file; a ModRWKV
 * v2 checkpoint with params->prefix "encoder.model."), validated by the inference loader
 * (mrw_whisper_enc_load) and copied to fp32. max_frames 0 = 2 * n_pos. */
mrw_status mrw_whisper_train_open(const char *path, const mrw_whisper_params *params, int max_B, int max_frames,
                                  int n_threads, mrw_whisper_train **out, mrw_error *err);
/* Copies the encoder's tensors found under `prefix` in f (any float dtype; shapes must match). */
mrw_status mrw_whisper_train_load(mrw_whisper_train *m, const mrw_tfile *f, const char *prefix, mrw_error *err);
void mrw_whisper_train_free(mrw_whisper_train *m);
mrw_param_set *mrw_whisper_train_params(mrw_whisper_train *m);
const mrw_whisper_config *mrw_whisper_train_config(const mrw_whisper_train *m);

/* mel [B][n_mels][n_frames] (input_features layout) -> out [B][T][d_model], T = mrw_whisper_enc_out_frames. */
mrw_status mrw_whisper_train_forward(mrw_whisper_train *m, const float *mel, int B, int n_frames, float *out,
                                     mrw_error *err);
/* d_out [B][T][d_model] of the last forward: grads += dloss/dparam; d_mel (NULL or like mel) = dloss/dmel. */
void mrw_whisper_train_backward(mrw_whisper_train *m, const float *d_out, float *d_mel);

#endif
