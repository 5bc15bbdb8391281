/* The OpenAI-compatible HTTP server behind `modrwkv serve` (docs/SERVER.md).
 *
 * One model in memory, one scheduler thread that owns the inference context and runs every active sequence
 * (continuous batching: each iteration admits queued requests, prefills them, then advances every active
 * sequence by one token), and libmicrohttpd with a thread per connection that parses, validates and waits.
 * Conversations keep their RNN state between turns under a client-chosen id. */
#ifndef MRW_SERVER_SERVER_H
#define MRW_SERVER_SERVER_H

#include <signal.h>
#include <stddef.h>

#include "modrwkv.h"

typedef struct {
    const char *host; /* address to bind (default 127.0.0.1) */
    int port;         /* 0: any free port (printed, and written to port_file) */
    const char *port_file;
    const char *model_name; /* the id reported by /v1/models */

    const mrw_model *model; /* the language model */
    const mrw_mm *mm;       /* the ModRWKV model it belongs to, or NULL for a text-only model */
    mrw_context *ctx;       /* used by the scheduler thread only */
    const mrw_vocab *vocab;
    int special;            /* v2 placeholder model: image blocks of <|image_pad|> in the prompt */
    mrw_chat_style style;

    int parallel;          /* sequences decoded together */
    int max_queue;         /* requests waiting for a slot before 429 */
    int max_connections;   /* concurrent connections before 503 */
    size_t max_body;       /* bytes of a request body before 413 */
    size_t max_media;      /* bytes of one decoded image or recording before 413 */
    int max_tokens;        /* largest max_tokens a request may ask for */
    int default_max_tokens;
    int max_prompt_tokens; /* tokens (and feature rows) one request may prefill */
    double timeout_s;      /* per request, from arrival to the last token */
    int client_timeout_s;  /* a connection idle this long while sending its request is closed */
    int max_conversations; /* RNN states kept by conversation id (least recently used evicted) */
    int allow_local_files; /* image_url / input_audio may name a file on the server */
    int batch_decode;      /* decode all active sequences in one batched step */
    int prefill_chunk;     /* prompt tokens evaluated per scheduler iteration, between decode steps */
    int quiet;
    volatile sig_atomic_t *stop; /* the server returns once this becomes non-zero */
} mrw_server_params;

mrw_server_params mrw_server_params_default(void);

/* Runs until *p->stop; returns 0, or 1 after printing why it could not start. */
int mrw_server_run(const mrw_server_params *p);

/* Strict base64 (standard alphabet, '=' padding optional at the end, no whitespace). Returns 0 and a
 * malloc'd buffer, or -1 for invalid input or when the decoded size would exceed max (then *too_big = 1). */
int mrw_base64_decode(const char *in, size_t n, size_t max, unsigned char **out, size_t *out_n, int *too_big);

/* The chat page served at "/". */
extern const char mrw_server_page[];

#endif
