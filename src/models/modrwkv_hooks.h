/* Pieces of src/models/modrwkv.c for the GPU path of `chat` / `generate` / `encode --device cuda` (docs/CUDA.md,
 * "ModRWKV inference on the GPU"): the image encoder's weight file and config (for mrw_vit_gpu_from_file), the
 * image preprocessing, the CPU part that follows the encoder (compression, adapter), and mrw_mm_eval's splice of
 * features and tokens as a list of positions, so that a GPU decoder can read the same prompt. Internal to the
 * project (not in include/modrwkv.h). */
#ifndef MRW_MODELS_MODRWKV_HOOKS_H
#define MRW_MODELS_MODRWKV_HOOKS_H

#include "formats/tensorfile.h"
#include "models/vit.h"
#include "models/wavlm.h"
#include "models/whisper_enc.h"
#include "modrwkv.h"

/* The modality that takes images: its encoder's tensor file and config (cfg->prefix says where the tower is).
 * MRW_E_ARG (naming the model's encoders) when the model has no image encoder. */
mrw_status mrw_mm_vision_encoder(const mrw_mm *mm, const mrw_tfile **file, const mrw_vit_config **cfg,
                                 mrw_error *err);
/* An image file loaded and preprocessed as mrw_mm_encode_image does: *pixels = malloc'ed [3][S][S]. */
mrw_status mrw_mm_image_pixels(const mrw_mm *mm, const char *path, float **pixels, mrw_error *err);
/* The rest of mrw_mm_encode_image (audio = 0) / _audio (audio = 1) from the encoder's output enc [n][E] (malloc'ed,
 * at least n rows; taken over: freed, or moved into encoder_out when that is not NULL): compression (if any) and
 * adapter of that modality on the CPU into out (may be NULL). */
mrw_status mrw_mm_features_finish(const mrw_mm *mm, int audio, float *enc, int n, int n_threads, mrw_features *out,
                                  mrw_features *encoder_out, mrw_error *err);
/* The modality that takes audio, when its encoder is Whisper: its tensor file, prefix and config (MRW_E_ARG when
 * the model has no audio encoder, MRW_E_UNSUPPORTED for WavLM). */
mrw_status mrw_mm_whisper_encoder(const mrw_mm *mm, const mrw_tfile **file, const char **prefix,
                                  const mrw_whisper_config **cfg, mrw_error *err);
/* A recording as that modality reads it (mrw_mm_encode_audio): *mel = malloc'ed log-mel [n_mels][*frames]
 * (frames = 2 n_pos, the padded 30 s), *keep = how many encoder rows ModRWKV keeps (the real audio). */
mrw_status mrw_mm_whisper_mel(const mrw_mm *mm, const char *path, float **mel, int *frames, int *keep,
                              mrw_error *err);
/* The modality that takes audio, when its encoder is WavLM: its tensor file, prefix and config (MRW_E_ARG when the
 * model has no audio encoder, MRW_E_UNSUPPORTED for Whisper). */
mrw_status mrw_mm_wavlm_encoder(const mrw_mm *mm, const mrw_tfile **file, const char **prefix,
                                const mrw_wavlm_config **cfg, mrw_error *err);
/* A recording as that WavLM modality reads it (mrw_mm_encode_audio): *wave = malloc'ed 16 kHz samples [*n],
 * normalised (zero mean, unit variance) when the model's feature extractor says do_normalize. Too short for the
 * conv stack: MRW_E_ARG, as on the CPU. */
mrw_status mrw_mm_wavlm_wave(const mrw_mm *mm, const char *path, float **wave, int *n, mrw_error *err);
/* The input mrw_mm_eval builds: *rows = malloc'ed [*total][n_embd] (every position: token embeddings and feature
 * rows), *src = malloc'ed [*total]: the token id of a text position, -1 at a feature row. Same checks and errors
 * as mrw_mm_eval. */
mrw_status mrw_mm_splice(const mrw_mm *mm, const mrw_features *feats, int n_feats, const int32_t *tokens,
                         int n_tokens, float **rows, int32_t **src, int *total, mrw_error *err);

#endif
