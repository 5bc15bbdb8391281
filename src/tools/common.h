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

/* Reads a whole file ("-" = stdin) up to TOOL_MAX_INPUT_BYTES; NUL-terminated. */
int tool_read_file(const char *cmd, const char *path, char **data, size_t *len);
/* Tokenizes text; rejects empty text and (unless allow_invalid) invalid UTF-8 with a clear message. */
int tool_tokenize(const char *cmd, const mrw_vocab *v, const char *text, size_t len, int allow_invalid,
                  int32_t **ids, int *n);
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
