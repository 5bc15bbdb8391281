/* Internal: requests (jobs), the conversation store and the scheduler of the HTTP server. */
#ifndef MRW_SERVER_SCHED_H
#define MRW_SERVER_SCHED_H

#include <pthread.h>
#include <stdint.h>

#include "server/server.h"

#define SRV_MAX_MEDIA 3 /* media items in one message (ModRWKV v2's image limit) */
#define SRV_MAX_STOP 4
#define SRV_ID_MAX 128

typedef struct {
    char *p;
    size_t n, cap;
} srv_buf;
int srv_buf_add(srv_buf *b, const void *s, size_t n);

typedef struct {
    int audio; /* 0 image, 1 audio */
    unsigned char *data;
    size_t len;
} srv_media;

typedef struct {
    mrw_chat_role role;
    char *text;
    size_t len;
    srv_media media[SRV_MAX_MEDIA];
    int n_media;
} srv_msg;

/* A conversation's RNN state and what it covers: the first n_msgs messages, whose chained hash is `hash`. */
typedef struct {
    char id[SRV_ID_MAX + 1];
    mrw_state *state;
    int n_msgs;
    int n_tokens; /* tokens the state has read */
    uint64_t hash;
    double last_used;
    int busy;
} srv_conv;

/* A piece of a prompt waiting to be evaluated: tokens, with features spliced in when nf > 0. */
typedef struct {
    int32_t *ids;
    int n;
    mrw_features feats[SRV_MAX_MEDIA];
    int nf;
} srv_piece;

typedef struct srv_job srv_job;
struct srv_job {
    /* set by the connection thread before submission, then read-only */
    int chat, stream, include_usage;
    srv_msg *msgs;
    int n_msgs;
    uint64_t *prefix_hash; /* n_msgs + 1 chained hashes */
    char *prompt;          /* /v1/completions */
    size_t prompt_len;
    mrw_sampler_params sp;
    int max_tokens;
    char *stop[SRV_MAX_STOP];
    int n_stop;
    char conv_id[SRV_ID_MAX + 1];
    char id[48];
    long created;
    double t_submit;

    /* scheduler-private */
    mrw_state *st;
    mrw_sampler *smp;
    float *logits;
    mrw_utf8_stream u8;
    int n_gen;
    int32_t last_tok;
    int conv_slot; /* index in the conversation store, or -1 */
    int skipped_msgs;
    srv_piece *pieces; /* the prompt, evaluated a chunk per scheduler iteration */
    int n_pieces, cur_piece, cur_pos;
    int prefilling;
    int active; /* prefilled and decoding */

    /* shared, under the server lock */
    srv_buf text;   /* answer so far */
    size_t ready;   /* bytes of text that can be sent (held back: a possible start of a stop string) */
    int started;    /* prefill done: the answer is on its way */
    int done;
    int http_status; /* non-zero: failed with this status */
    char err_type[32];
    char err_msg[512];
    const char *finish_reason;
    int prompt_tokens, cached_tokens, completion_tokens;
    int cancelled;
    int refs;
    pthread_cond_t cv;
    srv_job *next;
};

typedef struct {
    mrw_server_params p;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* wakes the scheduler */
    srv_job *queue_head, *queue_tail;
    int n_queued;
    srv_job **active;
    int n_active;
    srv_conv *convs;
    int stopping;
    int n_conn;
    char tmpdir[256];
    int n_vocab;
    int32_t turn_end; /* "\x17": 24 in the World vocabulary, 23 in a byte-level one */
    double t_start;
    /* metrics */
    uint64_t req_total, req_ok, req_4xx, req_5xx, req_cancelled;
    uint64_t prompt_tokens, cached_tokens, gen_tokens, prefill_tokens;
    double decode_s, prefill_s, encode_s;
    uint64_t decode_steps, batch_rows;
} srv_state;

double srv_now(void);
/* Queues a job (takes a second reference for the scheduler). Returns 0, or an HTTP status (429, 503). */
int srv_submit(srv_state *S, srv_job *j, char *why, size_t why_n);
void srv_job_release(srv_state *S, srv_job *j); /* under S->mu */
void srv_job_free(srv_job *j);
void *srv_scheduler_main(void *arg);
void srv_fail_job(srv_job *j, int status, const char *type, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
uint64_t srv_hash_msg(uint64_t h, const srv_msg *m);
#define SRV_HASH_SEED 1469598103934665603ull

#endif
