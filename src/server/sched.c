/* The server's scheduler: one thread owns the inference context and runs every active sequence. Each
 * iteration it drops cancelled and timed-out requests, admits queued ones into free slots and prefills them
 * (only their new tokens when a conversation's state is reused), then advances every active sequence by one
 * token. Connection threads only read the published text under the lock. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "models/rwkv7_batch.h"
#include "server/sched.h"


double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int srv_buf_add(srv_buf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        if (cap < 64) cap = 64;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n && s) memcpy(b->p + b->n, s, n); /* s == NULL: reserve n bytes */
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

uint64_t srv_hash_msg(uint64_t h, const srv_msg *m) {
    uint64_t v[2] = {(uint64_t)m->role, (uint64_t)m->len};
    h = fnv(h, v, sizeof v);
    h = fnv(h, m->text, m->len);
    for (int i = 0; i < m->n_media; i++) {
        uint64_t w[2] = {(uint64_t)m->media[i].audio, (uint64_t)m->media[i].len};
        h = fnv(h, w, sizeof w);
        h = fnv(h, m->media[i].data, m->media[i].len);
    }
    return h;
}

void srv_fail_job(srv_job *j, int status, const char *type, const char *fmt, ...) {
    if (j->http_status) return; /* the first error wins */
    j->http_status = status;
    snprintf(j->err_type, sizeof j->err_type, "%s", type);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err_msg, sizeof j->err_msg, fmt, ap);
    va_end(ap);
}

static int status_http(mrw_status s) {
    switch (s) {
    case MRW_E_LIMIT: return 413;
    case MRW_E_NOMEM: return 503;
    case MRW_E_ARG: case MRW_E_FORMAT: case MRW_E_SHAPE: case MRW_E_UNSUPPORTED: case MRW_E_SECURITY: return 400;
    default: return 500;
    }
}

void srv_job_free(srv_job *j) {
    if (!j) return;
    for (int i = 0; i < j->n_msgs; i++) {
        free(j->msgs[i].text);
        for (int k = 0; k < j->msgs[i].n_media; k++) free(j->msgs[i].media[k].data);
    }
    free(j->msgs);
    free(j->prefix_hash);
    free(j->prompt);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    for (int i = 0; i < j->n_pieces; i++) {
        free(j->pieces[i].ids);
        for (int k = 0; k < j->pieces[i].nf; k++) mrw_features_free(&j->pieces[i].feats[k]);
    }
    free(j->pieces);
    mrw_state_free(j->st);
    mrw_sampler_free(j->smp);
    free(j->logits);
    free(j->text.p);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void srv_job_release(srv_state *S, srv_job *j) {
    (void)S;
    if (--j->refs == 0) srv_job_free(j);
}

int srv_submit(srv_state *S, srv_job *j, char *why, size_t why_n) {
    pthread_mutex_lock(&S->mu);
    int rc = 0;
    if (S->stopping) {
        rc = 503;
        snprintf(why, why_n, "the server is shutting down");
    } else if (S->n_queued >= S->p.max_queue) {
        rc = 429;
        snprintf(why, why_n, "too many requests queued (%d waiting; limit %d): retry later", S->n_queued,
                 S->p.max_queue);
    } else {
        j->refs = 2;
        j->t_submit = srv_now();
        j->next = NULL;
        if (S->queue_tail) S->queue_tail->next = j;
        else S->queue_head = j;
        S->queue_tail = j;
        S->n_queued++;
        pthread_cond_signal(&S->cv);
    }
    pthread_mutex_unlock(&S->mu);
    return rc;
}

/* --------------------------------------------------------------------------------------- conversations */

/* Under S->mu. Finds or creates the slot of an id; -1 if every slot is busy. */
static int conv_slot(srv_state *S, const char *id, int *existed) {
    int free_slot = -1, lru = -1;
    *existed = 0;
    for (int i = 0; i < S->p.max_conversations; i++) {
        srv_conv *c = &S->convs[i];
        if (c->id[0] && !strcmp(c->id, id)) {
            *existed = 1;
            return i;
        }
        if (!c->id[0]) {
            if (free_slot < 0) free_slot = i;
        } else if (!c->busy && (lru < 0 || c->last_used < S->convs[lru].last_used)) {
            lru = i;
        }
    }
    int i = free_slot >= 0 ? free_slot : lru;
    if (i < 0) return -1;
    srv_conv *c = &S->convs[i];
    mrw_state_free(c->state);
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", id);
    return i;
}

static void conv_drop(srv_state *S, int slot) {
    srv_conv *c = &S->convs[slot];
    mrw_state_free(c->state);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------------------------------- prefill */

/* Media goes through the public API, which encodes from a path: write it to a private temporary file. */
static mrw_status encode_media(srv_state *S, const srv_media *m, mrw_features *out, mrw_error *err) {
    char path[320];
    snprintf(path, sizeof path, "%s/media-XXXXXX", S->tmpdir);
    int fd = mkstemp(path);
    if (fd < 0) return mrw_err(err, MRW_E_IO, "cannot create a temporary file in %s", S->tmpdir);
    size_t off = 0;
    while (off < m->len) {
        ssize_t w = write(fd, m->data + off, m->len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
    mrw_status s;
    if (off != m->len) s = mrw_err(err, MRW_E_IO, "cannot write a temporary file");
    else if (m->audio) s = mrw_mm_encode_audio(S->p.mm, path, mrw_context_n_threads(S->p.ctx), out, NULL, err);
    else s = mrw_mm_encode_image(S->p.mm, path, mrw_context_n_threads(S->p.ctx), out, NULL, err);
    unlink(path);
    if (s && err) mrw_err_prefix(err, "%s %s", m->audio ? "input_audio" : "image_url", "content part");
    return s;
}

static int32_t *tokenize(srv_state *S, const char *text, size_t len, int special, int *n) {
    unsigned flags = special ? MRW_TOKENIZE_SPECIAL : 0;
    int64_t need = mrw_tokenize_ex(S->p.vocab, text, len, NULL, 0, flags);
    if (need < 0 || need > (1 << 28)) return NULL;
    int32_t *ids = malloc((size_t)(need ? need : 1) * sizeof *ids);
    if (!ids) return NULL;
    mrw_tokenize_ex(S->p.vocab, text, len, ids, (size_t)need, flags);
    *n = (int)need;
    return ids;
}

/* Tokenizes one piece of the prompt and queues it for evaluation, taking over `feats`. */
static int add_piece(srv_state *S, srv_job *j, const char *text, size_t len, int special, mrw_features *feats,
                     int n_feats) {
    int n = 0;
    int32_t *ids = tokenize(S, text, len, special, &n);
    if (!ids) {
        srv_fail_job(j, 400, "invalid_request_error", "the prompt cannot be tokenized with this model's vocabulary");
        return -1;
    }
    int rows = 0;
    if (S->p.mm && mrw_mm_get_info(S->p.mm).splice == MRW_SPLICE_PREPEND)
        for (int i = 0; i < n_feats; i++) rows += feats[i].n;
    if (j->prompt_tokens + n + rows > S->p.max_prompt_tokens) {
        free(ids);
        srv_fail_job(j, 413, "invalid_request_error",
                     "the prompt needs more than %d tokens (the server's --max-prompt-tokens)", S->p.max_prompt_tokens);
        return -1;
    }
    if (n + rows == 0) {
        free(ids);
        return 0;
    }
    srv_piece *pc = realloc(j->pieces, (size_t)(j->n_pieces + 1) * sizeof *pc);
    if (!pc) {
        free(ids);
        srv_fail_job(j, 503, "server_error", "out of memory");
        return -1;
    }
    j->pieces = pc;
    srv_piece *q = &pc[j->n_pieces++];
    memset(q, 0, sizeof *q);
    q->ids = ids;
    q->n = n;
    for (int i = 0; i < n_feats; i++) {
        q->feats[i] = feats[i];
        memset(&feats[i], 0, sizeof feats[i]);
    }
    q->nf = n_feats;
    for (int i = 0; i < n; i++) mrw_sampler_accept(j->smp, ids[i]);
    j->prompt_tokens += n + rows;
    return 0;
}

/* A v2 image block: <|vision_start|> + <|image_pad|> x n + <|vision_end|> + "\n". */
static int image_block(srv_buf *b, int n) {
    int bad = srv_buf_add(b, "<|vision_start|>", 16);
    for (int i = 0; i < n && !bad; i++) bad = srv_buf_add(b, "<|image_pad|>", 13);
    return bad || srv_buf_add(b, "<|vision_end|>\n", 15);
}

/* The new messages as pieces: one per message (its turn, its media encoded now), the generation prompt
 * closing the last. */
static int prepare_chat(srv_state *S, srv_job *j) {
    char gen[32];
    size_t gen_n = mrw_chat_generation_prompt(S->p.style, gen, sizeof gen);
    int first = j->skipped_msgs;
    if (first == j->n_msgs) /* nothing new: only ask for the next answer */
        return add_piece(S, j, gen, gen_n, 0, NULL, 0);
    for (int i = first; i < j->n_msgs; i++) {
        const srv_msg *m = &j->msgs[i];
        mrw_features feats[SRV_MAX_MEDIA];
        int nf = 0, rc = 0;
        for (int k = 0; k < m->n_media && !rc; k++) {
            mrw_error err = {0};
            double t0 = srv_now();
            mrw_status s = encode_media(S, &m->media[k], &feats[nf], &err);
            pthread_mutex_lock(&S->mu);
            S->encode_s += srv_now() - t0;
            pthread_mutex_unlock(&S->mu);
            if (s) {
                srv_fail_job(j, status_http(s), status_http(s) >= 500 ? "server_error" : "invalid_request_error", "%s",
                             err.msg);
                rc = -1;
            } else {
                nf++;
            }
        }
        srv_buf q = {0}, turn = {0};
        int special = S->p.special && nf > 0;
        for (int k = 0; k < nf && special && !rc; k++) rc = image_block(&q, feats[k].n);
        if (!rc) rc = srv_buf_add(&q, m->text ? m->text : "", m->len);
        if (!rc) {
            size_t n = mrw_chat_turn(m->role, q.p, q.n, NULL, 0);
            rc = srv_buf_add(&turn, NULL, n) || !turn.p;
            if (!rc) mrw_chat_turn(m->role, q.p, q.n, turn.p, n + 1);
            if (!rc && i == j->n_msgs - 1) rc = srv_buf_add(&turn, gen, gen_n);
            if (rc) srv_fail_job(j, 503, "server_error", "out of memory");
            else rc = add_piece(S, j, turn.p, turn.n, special, feats, nf);
        } else if (!j->http_status) {
            srv_fail_job(j, 503, "server_error", "out of memory");
        }
        free(q.p);
        free(turn.p);
        for (int k = 0; k < nf; k++) mrw_features_free(&feats[k]); /* those not taken over by a piece */
        if (rc) return -1;
    }
    return 0;
}

static void publish_started(srv_state *S, srv_job *j) {
    pthread_mutex_lock(&S->mu);
    j->started = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&S->mu);
}

/* Ends a job: publishes the outcome, hands a conversation's state back (or drops it), releases the scheduler's
 * reference. Called by the scheduler without the lock. */
static void complete(srv_state *S, srv_job *j) {
    /* the conversation's state must cover the answer and the closing turn end */
    int keep = j->conv_slot >= 0 && !j->http_status && !j->cancelled && j->st;
    if (keep && j->active) {
        int32_t ids[2];
        int n = 0;
        if (j->last_tok != S->turn_end) ids[n++] = j->last_tok;
        ids[n++] = S->turn_end;
        mrw_error err = {0};
        if (mrw_eval_tokens(S->p.ctx, j->st, ids, n, MRW_LOGITS_NONE, NULL, &err)) keep = 0;
    }
    pthread_mutex_lock(&S->mu);
    if (j->conv_slot >= 0) {
        srv_conv *c = &S->convs[j->conv_slot];
        if (keep && j->active) {
            srv_msg a = {.role = MRW_ROLE_ASSISTANT, .text = j->text.p, .len = j->text.n};
            c->state = j->st;
            j->st = NULL;
            c->n_msgs = j->n_msgs + 1;
            c->hash = srv_hash_msg(j->prefix_hash[j->n_msgs], &a);
            c->n_tokens = j->cached_tokens + j->prompt_tokens + j->n_gen + (j->last_tok != S->turn_end);
            c->busy = 0;
            c->last_used = srv_now();
        } else {
            conv_drop(S, j->conv_slot);
        }
        j->conv_slot = -1;
    }
    if (!j->finish_reason) j->finish_reason = "stop";
    j->ready = j->text.n;
    j->done = 1;
    S->gen_tokens += (uint64_t)j->n_gen;
    if (j->cancelled) S->req_cancelled++;
    if (j->http_status >= 500) S->req_5xx++;
    else if (j->http_status) S->req_4xx++;
    else S->req_ok++;
    j->completion_tokens = j->n_gen;
    pthread_cond_broadcast(&j->cv);
    for (int i = 0; i < S->n_active; i++)
        if (S->active[i] == j) {
            S->active[i] = S->active[--S->n_active];
            break;
        }
    srv_job_release(S, j);
    pthread_mutex_unlock(&S->mu);
}

/* An admitted job: its state (a conversation's, or a new one), its sampler, and its prompt as pieces. Returns
 * -1 after completing the job when it failed. */
static int prepare(srv_state *S, srv_job *j) {
    j->conv_slot = -1;
    j->st = mrw_state_new(S->p.model);
    j->smp = mrw_sampler_new(&j->sp, S->n_vocab);
    j->logits = malloc((size_t)S->n_vocab * sizeof *j->logits);
    if (!j->st || !j->smp || !j->logits) {
        srv_fail_job(j, 503, "server_error", "out of memory");
        complete(S, j);
        return -1;
    }
    if (j->chat && j->conv_id[0]) {
        pthread_mutex_lock(&S->mu);
        int existed = 0, slot = conv_slot(S, j->conv_id, &existed);
        if (slot < 0) {
            srv_fail_job(j, 429, "rate_limit_error", "every conversation slot is in use (--max-conversations %d)",
                         S->p.max_conversations);
        } else if (S->convs[slot].busy) {
            srv_fail_job(j, 409, "invalid_request_error",
                         "conversation '%s' is answering another request: wait for it to finish", j->conv_id);
        } else {
            srv_conv *c = &S->convs[slot];
            c->busy = 1;
            j->conv_slot = slot;
            if (existed && c->state && c->n_msgs <= j->n_msgs && j->prefix_hash[c->n_msgs] == c->hash) {
                mrw_state_free(j->st);
                j->st = c->state; /* the job owns the state until it completes */
                c->state = NULL;
                j->skipped_msgs = c->n_msgs;
                j->cached_tokens = c->n_tokens;
            } else if (c->state) { /* history differs: start over */
                mrw_state_free(c->state);
                c->state = NULL;
            }
        }
        pthread_mutex_unlock(&S->mu);
        if (j->http_status) {
            complete(S, j);
            return -1;
        }
    }
    int rc;
    if (j->chat) {
        rc = prepare_chat(S, j);
    } else {
        rc = add_piece(S, j, j->prompt, j->prompt_len, 0, NULL, 0);
        if (!rc && j->prompt_tokens == 0) {
            srv_fail_job(j, 400, "invalid_request_error", "the prompt is empty");
            rc = -1;
        }
    }
    if (rc) {
        complete(S, j);
        return -1;
    }
    pthread_mutex_lock(&S->mu);
    S->cached_tokens += (uint64_t)j->cached_tokens;
    S->prompt_tokens += (uint64_t)j->prompt_tokens;
    pthread_mutex_unlock(&S->mu);
    j->prefilling = 1;
    return 0;
}

/* Evaluates up to `budget` prompt tokens of a prefilling job (a piece with media goes whole: its features and
 * tokens are one evaluation). Returns the tokens evaluated; the job starts decoding after its last piece. */
static int prefill_step(srv_state *S, srv_job *j, int budget) {
    int used = 0;
    double t0 = srv_now();
    while (j->cur_piece < j->n_pieces && (used < budget || used == 0)) {
        srv_piece *pc = &j->pieces[j->cur_piece];
        const int last_piece = j->cur_piece == j->n_pieces - 1;
        int n = pc->nf ? pc->n - j->cur_pos : (pc->n - j->cur_pos < budget - used ? pc->n - j->cur_pos : budget - used);
        if (n <= 0 && !pc->nf) n = pc->n - j->cur_pos < 1 ? 0 : 1;
        const int ends = j->cur_pos + n == pc->n;
        mrw_logits_mode mode = last_piece && ends ? MRW_LOGITS_LAST : MRW_LOGITS_NONE;
        mrw_error err = {0};
        mrw_status s = pc->nf ? mrw_mm_eval(S->p.ctx, j->st, S->p.mm, pc->feats, pc->nf, pc->ids, pc->n, mode, j->logits,
                                            &err)
                              : mrw_eval_tokens(S->p.ctx, j->st, pc->ids + j->cur_pos, n, mode, j->logits, &err);
        if (s) {
            pthread_mutex_lock(&S->mu);
            srv_fail_job(j, status_http(s), status_http(s) >= 500 ? "server_error" : "invalid_request_error", "%s",
                         err.msg);
            pthread_mutex_unlock(&S->mu);
            j->prefilling = 0;
            complete(S, j);
            return used ? used : 1;
        }
        used += n;
        j->cur_pos += n;
        if (j->cur_pos >= pc->n) {
            j->cur_piece++;
            j->cur_pos = 0;
        }
    }
    pthread_mutex_lock(&S->mu);
    S->prefill_s += srv_now() - t0;
    S->prefill_tokens += (uint64_t)used;
    pthread_mutex_unlock(&S->mu);
    if (j->cur_piece == j->n_pieces) {
        j->prefilling = 0;
        j->active = 1;
        publish_started(S, j);
    }
    return used;
}

/* ------------------------------------------------------------------------------------------- decoding */

static size_t stop_holdback(const srv_job *j) {
    size_t best = 0;
    for (int s = 0; s < j->n_stop; s++) {
        size_t L = strlen(j->stop[s]);
        for (size_t k = L > 1 ? L - 1 : 0; k > best; k--)
            if (k <= j->text.n && !memcmp(j->text.p + j->text.n - k, j->stop[s], k)) {
                best = k;
                break;
            }
    }
    return best;
}

/* Appends generated text under the lock, applying stop strings. Returns 1 when a stop string ended it. */
static int append_text(srv_state *S, srv_job *j, const char *s, size_t n) {
    int stopped = 0;
    pthread_mutex_lock(&S->mu);
    size_t before = j->text.n;
    if (n && srv_buf_add(&j->text, s, n)) {
        srv_fail_job(j, 503, "server_error", "out of memory");
        stopped = 1;
    }
    for (int k = 0; k < j->n_stop && !stopped; k++) {
        size_t L = strlen(j->stop[k]);
        size_t from = before >= L ? before - L + 1 : 0;
        char *hit = j->text.n >= L ? memmem(j->text.p + from, j->text.n - from, j->stop[k], L) : NULL;
        if (hit) {
            j->text.n = (size_t)(hit - j->text.p);
            j->text.p[j->text.n] = 0;
            stopped = 1;
        }
    }
    if (!stopped) {
        size_t hold = stop_holdback(j);
        j->ready = j->text.n - hold;
    } else {
        j->ready = j->text.n;
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&S->mu);
    return stopped;
}

/* Handles a sampled token; returns 1 when the job is finished. */
static int take_token(srv_state *S, srv_job *j, int32_t tok) {
    j->last_tok = tok;
    j->n_gen++;
    if (j->chat && tok == S->turn_end) {
        j->finish_reason = "stop";
        return 1;
    }
    size_t len = 0;
    const uint8_t *b = mrw_token_bytes(S->p.vocab, tok, &len);
    char out[MRW_UTF8_STREAM_OUT_MAX(64)];
    size_t n = 0;
    if (b && len <= 64) n = mrw_utf8_stream_push(&j->u8, b, len, out);
    const char *p = out;
    if (j->chat && j->text.n == 0 && n > 0 && p[0] == ' ' && j->n_gen <= 2) { /* ModRWKV answers open with a space */
        p++;
        n--;
    }
    if (append_text(S, j, p, n)) {
        j->finish_reason = "stop";
        return 1;
    }
    if (j->n_gen >= j->max_tokens) {
        j->finish_reason = "length";
        return 1;
    }
    return 0;
}

static void finish_text(srv_state *S, srv_job *j) {
    char out[8];
    size_t n = mrw_utf8_stream_flush(&j->u8, out);
    if (n) append_text(S, j, out, n);
}

/* Under S->mu: drops cancelled and timed-out jobs from the queue (they are completed by the caller). */
static int sweep_queue(srv_state *S, srv_job **dead, int cap) {
    int n = 0;
    double now = srv_now();
    srv_job **pp = &S->queue_head, *prev = NULL;
    while (*pp && n < cap) {
        srv_job *j = *pp;
        int timed_out = now - j->t_submit > S->p.timeout_s;
        if (j->cancelled || timed_out || S->stopping) {
            if (S->stopping) srv_fail_job(j, 503, "server_error", "the server is shutting down");
            else if (timed_out)
                srv_fail_job(j, 503, "server_error", "timed out after %.0f s waiting in the queue", S->p.timeout_s);
            *pp = j->next;
            if (S->queue_tail == j) S->queue_tail = prev;
            S->n_queued--;
            dead[n++] = j;
            continue;
        }
        prev = j;
        pp = &j->next;
    }
    return n;
}

static void fail_and_complete(srv_state *S, srv_job *j, const char *msg) {
    pthread_mutex_lock(&S->mu);
    srv_fail_job(j, 500, "server_error", "%s", msg);
    pthread_mutex_unlock(&S->mu);
    complete(S, j);
}

void *srv_scheduler_main(void *arg) {
    srv_state *S = arg;
    srv_job **admit = calloc((size_t)S->p.parallel, sizeof *admit);
    srv_job **dead = calloc((size_t)S->p.parallel + 64, sizeof *dead); /* 64 from the queue + the active ones */
    srv_job **run = calloc((size_t)S->p.parallel, sizeof *run);
    srv_job **pre = calloc((size_t)S->p.parallel, sizeof *pre);
    int32_t *cont_tok = calloc((size_t)S->p.parallel, sizeof *cont_tok);
    mrw_state **cont_st = calloc((size_t)S->p.parallel, sizeof *cont_st);
    /* batched decode needs B x n_vocab logits; without the memory, sequences are decoded one by one */
    float *batch_logits = S->p.batch_decode ? malloc((size_t)S->p.parallel * S->n_vocab * sizeof(float)) : NULL;
    if (!admit || !dead || !run || !pre || !cont_tok || !cont_st) {
        fprintf(stderr, "modrwkv serve: out of memory in the scheduler\n");
        pthread_mutex_lock(&S->mu);
        S->stopping = 1;
        pthread_mutex_unlock(&S->mu);
    }
    for (;;) {
        pthread_mutex_lock(&S->mu);
        while (!S->stopping && !S->queue_head && S->n_active == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&S->cv, &S->mu, &ts);
        }
        const int stopping = S->stopping;
        int n_dead = admit && dead ? sweep_queue(S, dead, 64) : 0;
        int n_admit = 0;
        /* at most a few prefills per iteration, so that the running sequences keep streaming */
        const int admit_cap = S->p.parallel < 4 ? S->p.parallel : 4;
        while (!stopping && S->queue_head && S->n_active + n_admit < S->p.parallel && n_admit < admit_cap) {
            srv_job *j = S->queue_head;
            S->queue_head = j->next;
            if (!S->queue_head) S->queue_tail = NULL;
            S->n_queued--;
            admit[n_admit++] = j;
        }
        for (int i = 0; i < n_admit; i++) S->active[S->n_active++] = admit[i];
        /* cancelled, timed-out or (when stopping) every active job ends now */
        const double now = srv_now();
        int n_run = 0, n_pre = 0;
        for (int i = 0; i < S->n_active; i++) {
            srv_job *j = S->active[i];
            int is_new = 0;
            for (int k = 0; k < n_admit; k++) is_new |= admit[k] == j;
            if (is_new) continue;
            if (stopping) srv_fail_job(j, 503, "server_error", "the server is shutting down");
            else if (now - j->t_submit > S->p.timeout_s)
                srv_fail_job(j, 504, "timeout", "the request took longer than %.0f s (the server's --timeout)",
                             S->p.timeout_s);
            if (j->http_status || j->cancelled) dead[n_dead++] = j;
            else if (j->prefilling) pre[n_pre++] = j;
            else run[n_run++] = j;
        }
        pthread_mutex_unlock(&S->mu);
        for (int i = 0; i < n_dead; i++) {
            srv_job *j = dead[i];
            if (j->active || j->st) complete(S, j);
            else { /* never admitted: not in the active list */
                pthread_mutex_lock(&S->mu);
                if (!j->finish_reason) j->finish_reason = "stop";
                j->done = 1;
                if (j->http_status >= 500) S->req_5xx++;
                else if (j->http_status) S->req_4xx++;
                pthread_cond_broadcast(&j->cv);
                srv_job_release(S, j);
                pthread_mutex_unlock(&S->mu);
            }
        }
        if (stopping) {
            pthread_mutex_lock(&S->mu);
            int left = S->n_active + S->n_queued;
            pthread_mutex_unlock(&S->mu);
            if (!left) break;
            continue;
        }
        /* new requests get their state and their prompt ready (media encoded); then at most prefill_chunk
         * prompt tokens are evaluated, oldest request first, before the next decode step */
        for (int i = 0; i < n_admit; i++)
            if (!prepare(S, admit[i])) pre[n_pre++] = admit[i];
        int budget = S->p.prefill_chunk > 0 ? S->p.prefill_chunk : 1 << 30;
        for (int i = 0; i < n_pre && budget > 0; i++) budget -= prefill_step(S, pre[i], budget);
        /* one token for every running sequence: sample, then evaluate the continuing ones together */
        if (n_run) {
            double t0 = srv_now();
            int n_cont = 0;
            for (int i = 0; i < n_run; i++) {
                srv_job *j = run[i];
                int32_t tok = mrw_sample(j->smp, j->logits, 0);
                mrw_sampler_accept(j->smp, tok);
                if (take_token(S, j, tok)) {
                    finish_text(S, j);
                    complete(S, j);
                    continue;
                }
                run[n_cont] = j;
                cont_tok[n_cont] = tok;
                cont_st[n_cont++] = j->st;
            }
            mrw_error err = {0};
            if (n_cont > 1 && S->p.batch_decode && batch_logits) {
                if (mrw_eval_batch(S->p.ctx, cont_st, cont_tok, n_cont, batch_logits, &err)) {
                    for (int i = 0; i < n_cont; i++) fail_and_complete(S, run[i], err.msg);
                } else {
                    for (int i = 0; i < n_cont; i++)
                        memcpy(run[i]->logits, batch_logits + (size_t)i * S->n_vocab, (size_t)S->n_vocab * sizeof(float));
                }
            } else {
                for (int i = 0; i < n_cont; i++)
                    if (mrw_eval_tokens(S->p.ctx, run[i]->st, &cont_tok[i], 1, MRW_LOGITS_LAST, run[i]->logits, &err))
                        fail_and_complete(S, run[i], err.msg);
            }
            pthread_mutex_lock(&S->mu);
            S->decode_s += srv_now() - t0;
            S->decode_steps++;
            S->batch_rows += (uint64_t)n_run;
            pthread_mutex_unlock(&S->mu);
        }
    }
    free(admit);
    free(dead);
    free(run);
    free(pre);
    free(cont_tok);
    free(cont_st);
    free(batch_logits);
    return NULL;
}
