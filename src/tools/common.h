/* Shared pieces of the `modrwkv` command: option parsing, loading a model and its vocabulary, reading
 * input files with limits, and the streaming printer. Every command reports errors as
 * "modrwkv <command>: <message>" on stderr and exits with a non-zero status. */
#ifndef MRW_TOOLS_COMMON_H
#define MRW_TOOLS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "modrwkv.h"

#define TOOL_MAX_INPUT_BYTES ((size_t)256 << 20) /* prompt / text files */

typedef struct {
    int argc;
    char **argv;
    int i;             /* next argument */
    const char *cmd;   /* for messages */
    const char *usage; /* printed by --help */
    int failed;
} tool_args;

void tool_args_init(tool_args *a, int argc, char **argv, const char *cmd, const char *usage);
/* Returns 1 while options remain; sets *opt to the current argument. Handles --help (prints usage, exits 0). */
int tool_next(tool_args *a, const char **opt);
/* Value of the current option (from "--opt=value" or the next argument); reports a missing value. */
const char *tool_value(tool_args *a, const char *opt);
int tool_int(tool_args *a, const char *opt, long lo, long hi, int *out);
int tool_float(tool_args *a, const char *opt, double lo, double hi, float *out);
void tool_unknown(tool_args *a, const char *opt);
int tool_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Options every model-using command shares. */
typedef struct {
    const char *model, *vocab;
    mrw_dtype dtype;
    int threads, chunk, exact;
    int device; /* 1: --device cuda (chat / generate / encode): the image encoder runs on the GPU (MRW_CUDA builds) */
} tool_model_opts;

/* Consumes -m/--model, --vocab, --dtype, -t/--threads, --chunk if `opt` is one of them (returns 1). */
int tool_model_option(tool_args *a, const char *opt, tool_model_opts *o);
#define TOOL_MODEL_HELP                                                                                       \
    "  -m, --model FILE     model: .pth, .safetensors or .gguf (RWKV-7)\n"                                    \
    "      --vocab FILE     World vocabulary file, or 'bytes' for byte-level models (default: the GGUF's own,\n" \
    "                       bytes when the model has 256 tokens, else the installed World vocabulary)\n"          \
    "      --dtype TYPE     convert the big matrices on load: f32, f16, bf16, q8_0, q4_0 (default: as stored)\n" \
    "  -t, --threads N      threads (default: all cores)\n"                                                       \
    "      --chunk N        tokens per prefill chunk (default 512)\n"                                                \
    "      --exact          f32 activations in prefill too (bf16/q8_0/q4_0 prefill then matches decode)\n"

int tool_load_model(const char *cmd, const tool_model_opts *o, mrw_model **model, mrw_context **ctx);
/* The vocabulary for a model, resolved as described in TOOL_MODEL_HELP; checks it fits the embedding. */
int tool_load_vocab(const char *cmd, const char *vocab_opt, const mrw_model *model, mrw_vocab **out);
/* Path of the installed World vocabulary, or NULL. */
const char *tool_default_vocab_path(char *buf, size_t n);

/* Media options of the multimodal commands. */
#define TOOL_MAX_IMAGES 3
#define TOOL_MAX_MEDIA 4 /* --image and --audio together (a two-modality model takes both) */
typedef struct {
    const char *encoder;
    const char *images[TOOL_MAX_IMAGES + 1];
    int n_images;
    const char *audio; /* the last --audio */
    /* every --image and --audio in command-line order (the order their features are spliced in) */
    const char *media[TOOL_MAX_MEDIA];
    int media_audio[TOOL_MAX_MEDIA];
    int n_media;
    int compress_k, compress_s;
    const char *compress_weights;
    int encoder_fast; /* keep the encoder's f16/bf16 weights: faster, not exact */
} tool_media_opts;

/* Consumes --encoder, --image (repeatable), --audio, --compress K,S, --compress-weights, --encoder-fast if
 * `opt` is one. */
int tool_media_option(tool_args *a, const char *opt, tool_media_opts *o);
/* The loading parameters the media options ask for. */
mrw_mm_params tool_mm_params(const tool_media_opts *o);
#define TOOL_MEDIA_HELP                                                                                       \
    "Multimodal (ModRWKV checkpoints: v1 rwkv-0.pth + its encoder, v2 rwkv-0.pth, or a bundle from convert):\n" \
    "      --image FILE     an image (PNG, JPEG, BMP, GIF); repeat for up to 3 images with v2 models\n"       \
    "      --audio FILE     a recording (WAV, FLAC, OGG, MP3; any rate and channels). --image and --audio\n"   \
    "                       mix (models with an image and an audio encoder, docs/MULTIMODAL.md): up to 4\n"    \
    "                       media, spliced in command-line order\n"                                           \
    "      --encoder PATH   the Hugging Face encoder (directory with config.json + model.safetensors); needed\n" \
    "                       for v1 checkpoints, whose encoder is not inside them\n"                            \
    "      --compress K,S   Conv1D compression of the encoder tokens (paper Table 7: 3,2 4,3 5,4)\n"          \
    "      --compress-weights FILE  trained compression weights (compress.weight [E,E,K]); without them the\n" \
    "                       tokens are average-pooled with the same window\n"                                 \
    "      --encoder-fast   compute the encoder with its f16/bf16 weights as stored: ~2x faster, relative\n"   \
    "                       error ~5e-3 instead of ~1e-5 (default: widened to f32)\n"

/* A loaded model for the text and multimodal commands: a plain RWKV-7, or a ModRWKV model (mm) whose
 * language model is `model`. Features of the media options are encoded once, in order. */
typedef struct {
    mrw_mm *mm;
    mrw_model *own_model;
    const mrw_model *model;
    mrw_context *ctx;
    mrw_vocab *vocab;
    mrw_features feats[TOOL_MAX_MEDIA];
    int feat_audio[TOOL_MAX_MEDIA]; /* feats[i] came from a recording */
    int n_feats;
    int special; /* tokenize special-token text (v2 placeholder prompts) */
} tool_session;

int tool_session_open(const char *cmd, const tool_model_opts *mo, const tool_media_opts *media, tool_session *s);
void tool_session_close(tool_session *s);
/* Evaluates tokens (with the session's features spliced in when `with_media`). */
int tool_session_eval(const char *cmd, tool_session *s, mrw_state *st, const int32_t *ids, int n, int with_media,
                      mrw_logits_mode mode, float *logits);

/* Reads a whole file ("-" = stdin) up to TOOL_MAX_INPUT_BYTES; NUL-terminated. */
int tool_read_file(const char *cmd, const char *path, char **data, size_t *len);
/* Tokenizes text; rejects empty text and (unless allow_invalid) invalid UTF-8 with a clear message. */
int tool_tokenize(const char *cmd, const mrw_vocab *v, const char *text, size_t len, int allow_invalid,
                  int32_t **ids, int *n);
/* The same, with MRW_TOKENIZE_SPECIAL when `special`. */
int tool_tokenize_ex(const char *cmd, const mrw_vocab *v, const char *text, size_t len, int allow_invalid,
                     int special, int32_t **ids, int *n);
/* Parses "34,105,110" into ids; checks the range [0, n_vocab). */
int tool_parse_tokens(const char *cmd, const char *s, int n_vocab, int32_t **ids, int *n);

/* Streaming text output: complete UTF-8 only, flushed per token. */
typedef struct {
    const mrw_vocab *vocab;
    mrw_utf8_stream utf8;
    FILE *out;
    int skip_leading_space; /* ModRWKV answers start with a space that is not part of the answer */
    int hide_token;         /* a token id not to print (the turn end, 24), or -1 */
} tool_printer;

double tool_now(void); /* monotonic seconds */

/* A progress line on stderr for long work: a bar with rate and ETA on a terminal, plain lines otherwise. */
typedef struct {
    const char *label;
    long total;
    double t0, last;
    int tty, last_decile;
} tool_progress;
void tool_progress_start(tool_progress *p, const char *label, long total);
void tool_progress_update(tool_progress *p, long done);
void tool_progress_finish(tool_progress *p);

void tool_printer_init(tool_printer *p, const mrw_vocab *v, FILE *out);
void tool_printer_token(tool_printer *p, int32_t token);
void tool_printer_flush(tool_printer *p);

#endif
