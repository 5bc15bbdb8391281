/* The Whisper encoder (openai/whisper-{tiny,base,small,medium,large}) exactly as transformers' WhisperEncoder
 * computes `last_hidden_state`, in f32 on the CPU:
 *
 *   mel [n_mels][frames] -> conv1 (n_mels->d, k3, p1) + GELU -> conv2 (d->d, k3, s2, p1) + GELU
 *   -> + embed_positions[0 .. frames/2) -> L x pre-LN layer -> layer_norm -> [frames/2, d]
 *   layer: x += out_proj(attn(LN1(x)))   (q/v/out with bias, k without; softmax(q kᵀ / sqrt(head_dim)))
 *          x += fc2(act(fc1(LN2(x))))    (act = config "activation_function", "gelu" = erf GELU)
 *
 * Weights come from any mrw_tfile: WhisperForConditionalGeneration ("model.encoder."), WhisperModel
 * ("encoder."), an encoder-only file (""), or under a caller-given prefix (ModRWKV v2: "encoder.model."; the
 * three layouts above are also tried under it). The decoder and proj_out lie outside the encoder's prefix and
 * are ignored; an unexpected tensor inside it is an error. Sizes come from the tensors (a config that
 * disagrees is an error); the head count from config.json (`encoder_attention_heads`, transformers' default
 * 4 when a config lacks it) or, without a config, d_model / 64 (true of every published size).
 *
 * f32 tensors are used in place (the mrw_tfile must stay open while the model is used); f16/bf16 ones are
 * converted to f32 once, unless `keep_lowp` asks to compute with them as stored (faster, not exact).
 *
 * The helpers at the end (vectorised GELU, packing-free attention kernels, convolution over overlapping
 * windows, the per-context workspace) are shared with wavlm.c; they belong in kernels/cpu/ and live here
 * until they move. */
#ifndef MRW_MODELS_WHISPER_ENC_H
#define MRW_MODELS_WHISPER_ENC_H

#include "formats/tensorfile.h"
#include "kernels/cpu/kctx.h"
#include "kernels/cpu/matmul.h"
#include "models/weights.h"
#include "modrwkv.h"

/* Activation functions of the audio encoders, by their transformers names. */
typedef enum {
    MRW_ACT_GELU = 0,  /* "gelu": x·Φ(x) */
    MRW_ACT_GELU_TANH, /* "gelu_new", "gelu_pytorch_tanh", "gelu_fast" */
    MRW_ACT_RELU,      /* "relu" */
} mrw_audio_act;

/* Parses a transformers activation name; -1 if unsupported. */
int mrw_audio_act_parse(const char *name, mrw_audio_act *out);

typedef struct {
    int n_mels, d_model, n_layers, n_heads, ffn_dim;
    int n_pos;             /* max_source_positions: the longest output (HF requires frames == 2 * n_pos) */
    mrw_audio_act act;     /* fc1 activation (the convolutions always use GELU, as transformers does) */
    float ln_eps;          /* 1e-5: transformers builds Whisper's LayerNorms with the default eps */
    int heads_from_config; /* 1: n_heads read from config.json / the caller; 0: d_model / 64 */
} mrw_whisper_config;

typedef struct {
    const char *prefix;      /* NULL: detect; else the encoder lies at prefix + one of the layouts above */
    const char *config_path; /* WhisperConfig JSON file, or NULL */
    const char *config_json; /* the same as text (takes precedence over config_path), or NULL */
    int n_heads;             /* > 0: overrides config and default */
    int keep_lowp;           /* compute with f16/bf16/quantized weights as stored instead of converting */
} mrw_whisper_params;

typedef struct mrw_whisper_enc mrw_whisper_enc;

/* p may be NULL (detect everything). The file must outlive the model. */
mrw_status mrw_whisper_enc_load(const mrw_tfile *f, const mrw_whisper_params *p, mrw_whisper_enc **out,
                                mrw_error *err);
void mrw_whisper_enc_free(mrw_whisper_enc *m);
const mrw_whisper_config *mrw_whisper_enc_config(const mrw_whisper_enc *m);
/* The prefix the tensors were found under (e.g. "model.encoder."). */
const char *mrw_whisper_enc_prefix(const mrw_whisper_enc *m);

/* Encoder output length for `n_frames` mel frames: conv2's ceil(n_frames / 2). */
int mrw_whisper_enc_out_frames(int n_frames);

/* mel: input_features [n_mels][n_frames] (HF layout: row m holds n_frames values), 1 <= n_frames <= 2*n_pos;
 * transformers accepts only n_frames == 2*n_pos (3000 = 30 s) and that is what ModRWKV feeds; shorter inputs
 * give the encoder of a shorter clip (not the same numbers as a padded one). out: [out_frames, d_model].
 * Activations (~66 MB for whisper-small at 3000 frames) stay in k's workspace for the next call
 * (mrw_audio_workspace); k->n_threads threads. The model is read-only: contexts may run it concurrently. */
mrw_status mrw_whisper_enc_forward(const mrw_whisper_enc *m, mrw_kctx *k, const float *mel, int n_frames,
                                   float *out, mrw_error *err);

/* ModRWKV's trimming rule: of the encoder output of the padded 30 s input (`out_frames` rows), keep the first
 * n = real_mel_frames / 2 + 1 rows (clamped to [1, out_frames]), where real_mel_frames is the number of mel
 * frames that cover the real audio. */
int mrw_whisper_keep_frames(int real_mel_frames, int out_frames);

/* ------------------------------------------------ helpers shared with wavlm.c (to move to kernels/cpu/) */

/* A transformers config.json given as text (`json`, preferred) or as a file (`path`, at most 1 MiB):
 * *root = the parsed object (cJSON_Delete it), or NULL when both are NULL. */
struct cJSON;
mrw_status mrw_audio_config_parse(const char *path, const char *json, struct cJSON **root, mrw_error *err);

/* y = act(y + bias) over T rows of C (row stride ld); bias may be NULL. Vectorised; erf GELU accurate to
 * ~2e-7 absolute. */
void mrw_audio_bias_act(float *y, int ld, const float *bias, int T, int C, mrw_audio_act act, int nt);
/* y = act(y·scale + shift) per column (scale and/or shift may be NULL). */
void mrw_audio_affine_act(float *y, int ld, const float *scale, const float *shift, int T, int C,
                          mrw_audio_act act, int nt);

/* Y[T, out] (+)= X[T, in]·Wᵀ (+ bias), run in row chunks so that the packed activations of one GEMM call
 * stay in cache (the shared GEMM slows down by up to 2x on long T with large inner dimensions). Rows of X
 * may overlap: with W in window order (mrw_audio_conv_weight_tk) and ldx = stride * Cin over an input laid
 * out [T][Cin], this is a Conv1d whose output row t reads the contiguous window X + t*ldx. */
void mrw_audio_linear(mrw_kctx *k, const mrw_mat *W, const float *bias, const float *X, int ldx, int T,
                      float *Y, int ldy, int accumulate);

/* x += y + bias over T rows of C (bias may be NULL): a residual added after its product is complete.
 * (Accumulating a GEMM straight into the residual stream rounds every partial sum at the stream's
 * magnitude: 8x the error of transformers' f32 run on whisper-small.) */
void mrw_audio_residual(float *x, const float *y, const float *bias, int T, int C, int nt);

/* The float tensor `name` (under the loader's prefix) of exactly `shape`, as f32, marked used, without a
 * lasting copy: *data points into the file when it is stored as f32, else to a converted copy that is also
 * returned in *tmp for the caller to free once it has reordered the values (else *tmp = NULL). */
mrw_status mrw_audio_weight_f32(mrw_wloader *L, const char *name, int ndim, const int64_t *shape,
                                const float **data, float **tmp);

/* Reorders a PyTorch Conv1d weight [Cout][Cin][K] into [Cout][K][Cin] (the window order of an input laid out
 * [T][Cin]). */
void mrw_audio_conv_weight_tk(const float *w, int Cout, int Cin, int K, float *dst);

/* Relative-position bias of a head, applied as gate[t] * tab[s - t + T - 1] to score (t, s). */
typedef struct {
    const float *tab;  /* [H][2T-1] */
    const float *gate; /* [T][H], or NULL for gate 1 */
} mrw_audio_relbias;

/* Self-attention of H heads of D over T positions: out[t, h*D..] = softmax_s(q_t·k_s·scale + bias) v.
 * q, k, v rows have stride ld; out stride ldo. Heads run in parallel on k->n_threads threads, queries in
 * blocks whose scores stay in L2. rb may be NULL. `scratch` holds mrw_audio_attention_scratch(T, H, D,
 * k->n_threads) floats. MRW_E_NOMEM only from the portable path's small allocations. */
size_t mrw_audio_attention_scratch(int T, int H, int D, int n_threads);
mrw_status mrw_audio_attention(mrw_kctx *k, const float *q, const float *kk, const float *v, int ld, int T,
                               int H, int D, float scale, const mrw_audio_relbias *rb, float *out, int ldo,
                               float *scratch);

/* n floats of activation memory for one forward call, kept in the kernel context between calls (fresh
 * allocations of this size cost a page fault per 4 KiB on every call): the context's last scratch slot,
 * which the GEMM leaves alone while n_threads + 1 < MRW_KS_SLOTS; otherwise malloc'd and returned in
 * *owned as well, for the caller to free. NULL if out of memory. */
float *mrw_audio_workspace(mrw_kctx *k, size_t n, float **owned);

#endif
