/* The HTTP side of the server: libmicrohttpd with a thread per connection. A connection thread reads the
 * body (bounded), validates the JSON into a job, queues it for the scheduler (sched.c) and waits: for the
 * whole answer, or (stream: true) for the prefill, then streams server-sent events as tokens are published.
 * Every error is an OpenAI-style JSON body: {"error": {"message", "type", "param", "code"}}. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "formats/image.h"
#include "server/sched.h"

mrw_server_params mrw_server_params_default(void) {
    mrw_server_params p = {0};
    p.host = "127.0.0.1";
    p.port = 8080;
    p.model_name = "modrwkv";
    p.style = MRW_CHAT_V1_EVAL;
    p.parallel = 16;
    p.max_queue = 64;
    p.max_connections = 128;
    p.max_body = (size_t)32 << 20;
    p.max_media = (size_t)16 << 20;
    p.max_tokens = 4096;
    p.default_max_tokens = 256;
    p.max_prompt_tokens = 16384;
    p.timeout_s = 600;
    p.client_timeout_s = 30;
    p.max_conversations = 256;
    p.batch_decode = 1;
    p.prefill_chunk = 128;
    return p;
}

/* ---------------------------------------------------------------------------------------------- base64 */

static int b64_val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int mrw_base64_decode(const char *in, size_t n, size_t max, unsigned char **out, size_t *out_n, int *too_big) {
    *out = NULL;
    *out_n = 0;
    *too_big = 0;
    size_t pad = 0;
    while (pad < 2 && n > 0 && in[n - 1] == '=') n--, pad++;
    if (n % 4 == 1) return -1;
    if (pad && (n + pad) % 4) return -1;
    size_t cap = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (cap > max) {
        *too_big = 1;
        return -1;
    }
    unsigned char *o = malloc(cap ? cap : 1);
    if (!o) return -1;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)in[i]);
        if (v < 0) {
            free(o);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits && (acc & ((1u << bits) - 1))) { /* non-zero leftover bits: not canonical base64 */
        free(o);
        return -1;
    }
    *out = o;
    *out_n = k;
    return 0;
}

/* ------------------------------------------------------------------------------------------- responses */

static enum MHD_Result send_buf(struct MHD_Connection *c, int status, const char *type, const char *body, size_t n) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (status == 405) MHD_add_response_header(r, "Allow", "GET, POST");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return send_buf(c, 500, "application/json", "{\"error\":{\"message\":\"out of memory\"}}", 37);
    enum MHD_Result r = send_buf(c, status, "application/json", s, strlen(s));
    free(s);
    return r;
}

static const char *default_type(int status) {
    switch (status) {
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 504: return "timeout";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static cJSON *error_obj(const char *type, const char *msg, const char *param) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    /* messages may quote the client's bytes: keep the JSON valid UTF-8 */
    size_t n = strlen(msg);
    char *clean = malloc(MRW_UTF8_STREAM_OUT_MAX(n));
    if (clean) {
        mrw_utf8_stream u = {0};
        size_t k = mrw_utf8_stream_push(&u, (const uint8_t *)msg, n, clean);
        k += mrw_utf8_stream_flush(&u, clean + k);
        clean[k] = 0;
    }
    cJSON_AddStringToObject(e, "message", clean ? clean : "error");
    free(clean);
    cJSON_AddStringToObject(e, "type", type);
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddNullToObject(e, "code");
    return root;
}

static void count_status(srv_state *S, int status) {
    pthread_mutex_lock(&S->mu);
    if (status >= 500) S->req_5xx++;
    else if (status >= 400) S->req_4xx++;
    else S->req_ok++;
    pthread_mutex_unlock(&S->mu);
}

static enum MHD_Result send_error(srv_state *S, struct MHD_Connection *c, int status, const char *type,
                                  const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result send_error(srv_state *S, struct MHD_Connection *c, int status, const char *type,
                                  const char *param, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (S) count_status(S, status);
    return send_json(c, status, error_obj(type ? type : default_type(status), msg, param));
}

/* ------------------------------------------------------------------------------------- request parsing */

typedef struct {
    int status; /* 0: fine */
    char msg[512];
    const char *param;
} perr;

static int fail(perr *e, int status, const char *param, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(perr *e, int status, const char *param, const char *fmt, ...) {
    if (e->status) return -1;
    e->status = status;
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static int get_number(cJSON *root, const char *key, double lo, double hi, double *out, perr *e) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return fail(e, 400, key, "'%s' must be a number", key);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return fail(e, 400, key, "'%s' must lie in [%g, %g], got %g", key, lo, hi, v->valuedouble);
    *out = v->valuedouble;
    return 1;
}

static int get_int(cJSON *root, const char *key, double lo, double hi, long long *out, perr *e) {
    double d = 0;
    int r = get_number(root, key, lo, hi, &d, e);
    if (r <= 0) return r;
    if (d != floor(d)) return fail(e, 400, key, "'%s' must be an integer", key);
    *out = (long long)d;
    return 1;
}

static int get_bool(cJSON *root, const char *key, int *out, perr *e) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return fail(e, 400, key, "'%s' must be true or false", key);
    *out = cJSON_IsTrue(v);
    return 1;
}

static int read_local_file(srv_state *S, const char *path, srv_media *m, perr *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return fail(e, 400, "messages", "cannot open local file '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        return fail(e, 400, "messages", "'%s' is not a regular file", path);
    }
    if ((size_t)st.st_size > S->p.max_media) {
        fclose(f);
        return fail(e, 413, "messages", "'%s' has %lld bytes; the server takes media up to %zu bytes", path,
                    (long long)st.st_size, S->p.max_media);
    }
    m->data = malloc((size_t)st.st_size + 1);
    m->len = m->data ? fread(m->data, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!m->data) return fail(e, 503, "messages", "out of memory");
    return 0;
}

static int decode_b64(srv_state *S, const char *s, size_t n, srv_media *m, const char *what, perr *e) {
    int too_big = 0;
    if (mrw_base64_decode(s, n, S->p.max_media, &m->data, &m->len, &too_big)) {
        if (too_big)
            return fail(e, 413, "messages", "%s is larger than the server's media limit (%zu bytes)", what,
                        S->p.max_media);
        return fail(e, 400, "messages", "%s is not valid base64", what);
    }
    if (m->len == 0) return fail(e, 400, "messages", "%s is empty", what);
    return 0;
}

static int parse_image(srv_state *S, cJSON *part, srv_media *m, perr *e) {
    cJSON *iu = cJSON_GetObjectItemCaseSensitive(part, "image_url");
    cJSON *url = cJSON_IsObject(iu) ? cJSON_GetObjectItemCaseSensitive(iu, "url") : iu;
    if (!cJSON_IsString(url)) return fail(e, 400, "messages", "an image_url part needs \"image_url\": {\"url\": \"...\"}");
    const char *u = url->valuestring;
    m->audio = 0;
    if (!strncmp(u, "data:", 5)) {
        const char *comma = strchr(u, ',');
        if (!comma || comma - u > 200 || !memmem(u, (size_t)(comma - u), ";base64", 7))
            return fail(e, 400, "messages", "image_url: only base64 data URLs are understood (data:image/png;base64,...)");
        if (decode_b64(S, comma + 1, strlen(comma + 1), m, "the image data URL", e)) return -1;
    } else if (S->p.allow_local_files && (!strncmp(u, "file://", 7) || u[0] == '/')) {
        if (read_local_file(S, u[0] == '/' ? u : u + 7, m, e)) return -1;
    } else {
        return fail(e, 400, "messages",
                    "image_url must be a data URL (data:image/png;base64,...)%s; the server fetches nothing from the "
                    "network", S->p.allow_local_files ? " or a local path" : " (local paths need --allow-local-files)");
    }
    if (mrw_image_detect(m->data, m->len) == MRW_IMG_UNKNOWN)
        return fail(e, 400, "messages", "the image is not a PNG, JPEG, BMP or GIF file");
    return 0;
}

static int parse_audio(srv_state *S, cJSON *part, srv_media *m, perr *e) {
    cJSON *ia = cJSON_GetObjectItemCaseSensitive(part, "input_audio");
    cJSON *data = cJSON_IsObject(ia) ? cJSON_GetObjectItemCaseSensitive(ia, "data") : NULL;
    if (!cJSON_IsString(data))
        return fail(e, 400, "messages", "an input_audio part needs \"input_audio\": {\"data\": BASE64, \"format\": \"wav\"}");
    m->audio = 1;
    const char *d = data->valuestring;
    if (S->p.allow_local_files && (!strncmp(d, "file://", 7) || d[0] == '/'))
        return read_local_file(S, d[0] == '/' ? d : d + 7, m, e);
    if (!strncmp(d, "data:", 5)) {
        const char *comma = strchr(d, ',');
        if (!comma) return fail(e, 400, "messages", "input_audio: malformed data URL");
        d = comma + 1;
    }
    return decode_b64(S, d, strlen(d), m, "the input_audio data", e);
}

static int parse_role(const char *r, mrw_chat_role *out) {
    if (!strcmp(r, "user")) *out = MRW_ROLE_USER;
    else if (!strcmp(r, "assistant")) *out = MRW_ROLE_ASSISTANT;
    else if (!strcmp(r, "system") || !strcmp(r, "developer")) *out = MRW_ROLE_SYSTEM;
    else return -1;
    return 0;
}

static int parse_messages(srv_state *S, cJSON *msgs, srv_job *j, perr *e) {
    if (!cJSON_IsArray(msgs)) return fail(e, 400, "messages", "'messages' must be an array of message objects");
    int n = cJSON_GetArraySize(msgs);
    if (n < 1) return fail(e, 400, "messages", "'messages' is empty");
    if (n > 4096) return fail(e, 400, "messages", "too many messages (%d; at most 4096)", n);
    j->msgs = calloc((size_t)n, sizeof *j->msgs);
    j->prefix_hash = calloc((size_t)n + 1, sizeof *j->prefix_hash);
    if (!j->msgs || !j->prefix_hash) return fail(e, 503, NULL, "out of memory");
    /* a model may have an image and an audio modality (docs/MULTIMODAL.md) */
    const int vision = S->p.mm && mrw_mm_modality_of(S->p.mm, 0) >= 0;
    const int audio = S->p.mm && mrw_mm_modality_of(S->p.mm, 1) >= 0;
    int total_media = 0;
    j->prefix_hash[0] = SRV_HASH_SEED;
    cJSON *m;
    int i = 0;
    cJSON_ArrayForEach(m, msgs) {
        srv_msg *sm = &j->msgs[i];
        j->n_msgs = i + 1;
        if (!cJSON_IsObject(m)) return fail(e, 400, "messages", "messages[%d] must be an object", i);
        cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role) || parse_role(role->valuestring, &sm->role))
            return fail(e, 400, "messages", "messages[%d].role must be \"system\", \"user\" or \"assistant\"", i);
        cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        srv_buf text = {0};
        int bad = 0;
        if (cJSON_IsString(content)) {
            bad = srv_buf_add(&text, content->valuestring, strlen(content->valuestring));
        } else if (cJSON_IsArray(content)) {
            cJSON *part;
            cJSON_ArrayForEach(part, content) {
                cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
                if (!cJSON_IsObject(part) || !cJSON_IsString(type)) {
                    free(text.p);
                    return fail(e, 400, "messages", "messages[%d].content parts must be objects with a \"type\"", i);
                }
                const char *t = type->valuestring;
                if (!strcmp(t, "text")) {
                    cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
                    if (!cJSON_IsString(tx)) {
                        free(text.p);
                        return fail(e, 400, "messages", "messages[%d]: a text part needs a string \"text\"", i);
                    }
                    if (text.n) bad |= srv_buf_add(&text, "\n", 1);
                    bad |= srv_buf_add(&text, tx->valuestring, strlen(tx->valuestring));
                } else if (!strcmp(t, "image_url") || !strcmp(t, "input_audio")) {
                    const int is_audio = t[0] == 'i' && t[1] == 'n';
                    int err = 0;
                    if (sm->role != MRW_ROLE_USER)
                        err = fail(e, 400, "messages", "messages[%d]: only user messages may carry images or audio", i);
                    else if (is_audio ? !audio : !vision)
                        err = fail(e, 400, "messages", "this model takes %s (a %s content part was given)",
                                   vision ? "images, not audio" : audio ? "audio, not images" : "text only",
                                   is_audio ? "input_audio" : "image_url");
                    else if (sm->n_media == SRV_MAX_MEDIA || total_media == SRV_MAX_MEDIA)
                        err = fail(e, 400, "messages", "at most %d images or recordings per request", SRV_MAX_MEDIA);
                    else if (is_audio ? parse_audio(S, part, &sm->media[sm->n_media], e)
                                      : parse_image(S, part, &sm->media[sm->n_media], e))
                        err = -1, sm->n_media++; /* free what was decoded */
                    else
                        sm->n_media++, total_media++;
                    if (err) {
                        free(text.p);
                        return -1;
                    }
                } else {
                    free(text.p);
                    return fail(e, 400, "messages", "messages[%d]: unknown content part type '%s'", i, t);
                }
            }
        } else if (!(cJSON_IsNull(content) && sm->role == MRW_ROLE_ASSISTANT)) {
            return fail(e, 400, "messages", "messages[%d].content must be a string or an array of parts", i);
        }
        if (bad) {
            free(text.p);
            return fail(e, 503, NULL, "out of memory");
        }
        sm->text = text.p;
        sm->len = text.n;
        j->prefix_hash[i + 1] = srv_hash_msg(j->prefix_hash[i], sm);
        i++;
    }
    return 0;
}

/* The body of a completion request -> a job (not yet queued). */
static srv_job *parse_request(srv_state *S, int chat, const char *body, size_t n, perr *e) {
    cJSON *root = cJSON_ParseWithLength(body, n);
    if (!root) {
        fail(e, 400, NULL, "the request body is not valid JSON");
        return NULL;
    }
    srv_job *j = calloc(1, sizeof *j);
    if (!j) {
        cJSON_Delete(root);
        fail(e, 503, NULL, "out of memory");
        return NULL;
    }
    pthread_cond_init(&j->cv, NULL);
    j->conv_slot = -1;
    j->chat = chat;
    j->sp = mrw_sampler_params_default();
    j->sp.temperature = 1.0f;
    j->sp.top_p = 1.0f;
    j->sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)j << 7);
    j->max_tokens = S->p.default_max_tokens;
    if (!cJSON_IsObject(root)) {
        fail(e, 400, NULL, "the request body must be a JSON object");
        goto out;
    }
    cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model && !cJSON_IsString(model)) fail(e, 400, "model", "'model' must be a string");
    double d;
    long long ll = 0;
    if (get_number(root, "temperature", 0, 2, &d, e) > 0) j->sp.temperature = (float)d;
    if (get_number(root, "top_p", 0, 1, &d, e) > 0) j->sp.top_p = d > 0 ? (float)d : 1e-6f;
    if (get_int(root, "top_k", 0, 1 << 20, &ll, e) > 0) j->sp.top_k = (int)ll;
    if (get_number(root, "presence_penalty", -2, 2, &d, e) > 0) j->sp.presence_penalty = (float)d;
    if (get_number(root, "frequency_penalty", -2, 2, &d, e) > 0) j->sp.frequency_penalty = (float)d;
    if (get_int(root, "seed", -9.2e18, 9.2e18, &ll, e) > 0) j->sp.seed = (uint64_t)ll;
    if (get_int(root, "max_tokens", 1, 1e9, &ll, e) > 0 || get_int(root, "max_completion_tokens", 1, 1e9, &ll, e) > 0) {
        if (ll > S->p.max_tokens)
            fail(e, 400, "max_tokens", "max_tokens is %lld; this server allows at most %d", ll, S->p.max_tokens);
        j->max_tokens = (int)ll;
    }
    get_int(root, "n", 1, 1, &ll, e); /* one choice per request */
    get_bool(root, "stream", &j->stream, e);
    cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) fail(e, 400, "stream_options", "'stream_options' must be an object");
        else get_bool(so, "include_usage", &j->include_usage, e);
    }
    cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (stop && !cJSON_IsNull(stop)) {
        if (cJSON_IsString(stop)) {
            if (*stop->valuestring) j->stop[j->n_stop++] = strdup(stop->valuestring);
        } else if (cJSON_IsArray(stop) && cJSON_GetArraySize(stop) <= SRV_MAX_STOP) {
            cJSON *s;
            cJSON_ArrayForEach(s, stop) {
                if (!cJSON_IsString(s)) {
                    fail(e, 400, "stop", "'stop' must be a string or an array of strings");
                    break;
                }
                if (*s->valuestring) j->stop[j->n_stop++] = strdup(s->valuestring);
            }
        } else {
            fail(e, 400, "stop", "'stop' must be a string or an array of up to %d strings", SRV_MAX_STOP);
        }
        for (int i = 0; i < j->n_stop; i++)
            if (!j->stop[i] || strlen(j->stop[i]) > 256) fail(e, 400, "stop", "stop strings are limited to 256 bytes");
    }
    cJSON *cid = cJSON_GetObjectItemCaseSensitive(root, "conversation_id");
    if (cid && !cJSON_IsNull(cid)) {
        if (!cJSON_IsString(cid) || !*cid->valuestring || strlen(cid->valuestring) > SRV_ID_MAX)
            fail(e, 400, "conversation_id", "'conversation_id' must be a string of 1 to %d bytes", SRV_ID_MAX);
        else snprintf(j->conv_id, sizeof j->conv_id, "%s", cid->valuestring);
    }
    if (e->status) goto out;
    if (chat) {
        cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
        if (!msgs) fail(e, 400, "messages", "'messages' is required");
        else parse_messages(S, msgs, j, e);
    } else {
        cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1) p = cJSON_GetArrayItem(p, 0);
        if (!cJSON_IsString(p)) fail(e, 400, "prompt", "'prompt' must be a string");
        else if (!*p->valuestring) fail(e, 400, "prompt", "'prompt' is empty");
        else if (!(j->prompt = strdup(p->valuestring))) fail(e, 503, NULL, "out of memory");
        else j->prompt_len = strlen(j->prompt);
    }
out:
    cJSON_Delete(root);
    if (e->status) {
        srv_job_free(j);
        return NULL;
    }
    return j;
}

/* ------------------------------------------------------------------------------------------ answers */

static long wall_now(void) { return (long)time(NULL); }

static cJSON *usage_obj(const srv_job *j) {
    cJSON *u = cJSON_CreateObject();
    int prompt = j->prompt_tokens + j->cached_tokens;
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", j->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", prompt + j->completion_tokens);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", j->cached_tokens);
    return u;
}

static cJSON *answer_head(srv_state *S, const srv_job *j, const char *object) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", j->id);
    cJSON_AddStringToObject(r, "object", object);
    cJSON_AddNumberToObject(r, "created", (double)j->created);
    cJSON_AddStringToObject(r, "model", S->p.model_name);
    cJSON_AddStringToObject(r, "system_fingerprint", "modrwkv-" MRW_VERSION);
    return r;
}

/* Under S->mu (the job is done). */
static cJSON *full_answer(srv_state *S, const srv_job *j) {
    cJSON *r = answer_head(S, j, j->chat ? "chat.completion" : "text_completion");
    cJSON *ch = cJSON_AddArrayToObject(r, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(ch, c);
    cJSON_AddNumberToObject(c, "index", 0);
    if (j->chat) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", j->text.p ? j->text.p : "");
    } else {
        cJSON_AddStringToObject(c, "text", j->text.p ? j->text.p : "");
    }
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", j->finish_reason ? j->finish_reason : "stop");
    cJSON_AddItemToObject(r, "usage", usage_obj(j));
    if (j->conv_id[0]) cJSON_AddStringToObject(r, "conversation_id", j->conv_id);
    return r;
}

/* One SSE event: "data: {chunk}\n\n". delta == NULL and finish == NULL: the opening chunk (role). */
static int sse_chunk(srv_state *S, const srv_job *j, srv_buf *out, const char *text, size_t n, const char *finish,
                     int usage_only) {
    cJSON *r = answer_head(S, j, j->chat ? "chat.completion.chunk" : "text_completion");
    cJSON *ch = cJSON_AddArrayToObject(r, "choices");
    if (!usage_only) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddItemToArray(ch, c);
        cJSON_AddNumberToObject(c, "index", 0);
        char *t = malloc(n + 1);
        if (t) {
            memcpy(t, text ? text : "", n);
            t[n] = 0;
        }
        if (j->chat) {
            cJSON *d = cJSON_AddObjectToObject(c, "delta");
            if (!text && !finish) {
                cJSON_AddStringToObject(d, "role", "assistant");
                cJSON_AddStringToObject(d, "content", "");
            } else if (text) {
                cJSON_AddStringToObject(d, "content", t ? t : "");
            }
        } else {
            cJSON_AddStringToObject(c, "text", t ? t : "");
        }
        free(t);
        cJSON_AddNullToObject(c, "logprobs");
        if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
        else cJSON_AddNullToObject(c, "finish_reason");
    } else {
        cJSON_AddItemToObject(r, "usage", usage_obj(j));
    }
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    int bad = !s || srv_buf_add(out, "data: ", 6) || srv_buf_add(out, s, strlen(s)) || srv_buf_add(out, "\n\n", 2);
    free(s);
    return bad ? -1 : 0;
}

typedef struct {
    srv_state *S;
    srv_job *j;
    size_t sent; /* bytes of the answer sent */
    srv_buf out;
    size_t out_off;
    int phase; /* 0: opening chunk next; 1: streaming; 2: finished */
} stream_ctx;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *s = cls;
    srv_state *S = s->S;
    srv_job *j = s->j;
    if (s->out_off >= s->out.n) {
        s->out.n = s->out_off = 0;
        if (s->phase == 2) return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&S->mu);
        if (s->phase == 0) {
            if (j->chat) sse_chunk(S, j, &s->out, NULL, 0, NULL, 0);
            s->phase = 1;
        }
        while (!s->out.n && !j->done && j->ready <= s->sent) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&j->cv, &S->mu, &ts);
        }
        if (j->ready > s->sent) {
            sse_chunk(S, j, &s->out, j->text.p + s->sent, j->ready - s->sent, NULL, 0);
            s->sent = j->ready;
        }
        if (j->done && s->sent >= j->ready) {
            if (j->http_status) {
                cJSON *e = error_obj(j->err_type, j->err_msg, NULL);
                char *t = cJSON_PrintUnformatted(e);
                cJSON_Delete(e);
                if (t) {
                    srv_buf_add(&s->out, "data: ", 6);
                    srv_buf_add(&s->out, t, strlen(t));
                    srv_buf_add(&s->out, "\n\n", 2);
                    free(t);
                }
            } else {
                sse_chunk(S, j, &s->out, j->chat ? NULL : "", 0, j->finish_reason ? j->finish_reason : "stop", 0);
                if (j->include_usage) sse_chunk(S, j, &s->out, NULL, 0, NULL, 1);
            }
            srv_buf_add(&s->out, "data: [DONE]\n\n", 14);
            s->phase = 2;
        }
        pthread_mutex_unlock(&S->mu);
        if (!s->out.n) return s->phase == 2 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = s->out.n - s->out_off;
    if (n > max) n = max;
    memcpy(buf, s->out.p + s->out_off, n);
    s->out_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_ctx *s = cls;
    pthread_mutex_lock(&s->S->mu);
    if (!s->j->done) s->j->cancelled = 1; /* the client went away: the scheduler drops the sequence */
    srv_job_release(s->S, s->j);
    pthread_mutex_unlock(&s->S->mu);
    free(s->out.p);
    free(s);
}

static enum MHD_Result run_job(srv_state *S, struct MHD_Connection *c, srv_job *j) {
    static unsigned long counter;
    snprintf(j->id, sizeof j->id, "%s-%lx%05lx", j->chat ? "chatcmpl" : "cmpl", (unsigned long)wall_now(),
             __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) & 0xfffff);
    j->created = wall_now();
    char why[256];
    int rc = srv_submit(S, j, why, sizeof why);
    if (rc) {
        srv_job_free(j);
        return send_error(S, c, rc, NULL, NULL, "%s", why);
    }
    pthread_mutex_lock(&S->mu);
    S->req_total++;
    while (!j->done && !(j->stream && j->started)) pthread_cond_wait(&j->cv, &S->mu);
    if (j->done && (j->http_status || !j->stream)) {
        enum MHD_Result r;
        if (j->http_status) {
            cJSON *e = error_obj(j->err_type, j->err_msg, NULL);
            int st = j->http_status;
            srv_job_release(S, j);
            pthread_mutex_unlock(&S->mu);
            return send_json(c, st, e);
        }
        cJSON *a = full_answer(S, j);
        srv_job_release(S, j);
        pthread_mutex_unlock(&S->mu);
        r = send_json(c, 200, a);
        return r;
    }
    pthread_mutex_unlock(&S->mu);
    stream_ctx *s = calloc(1, sizeof *s);
    struct MHD_Response *resp = NULL;
    if (s) {
        s->S = S;
        s->j = j;
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
    }
    if (!resp) {
        pthread_mutex_lock(&S->mu);
        j->cancelled = 1;
        srv_job_release(S, j);
        pthread_mutex_unlock(&S->mu);
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    enum MHD_Result r = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp); /* stream_free runs when MHD is done with it */
    return r;
}

/* --------------------------------------------------------------------------------------------- routes */

static enum MHD_Result send_metrics(srv_state *S, struct MHD_Connection *c) {
    char b[4096];
    pthread_mutex_lock(&S->mu);
    int n_conv = 0;
    for (int i = 0; i < S->p.max_conversations; i++) n_conv += S->convs[i].id[0] != 0;
    double tps = S->decode_s > 0 ? (double)S->gen_tokens / S->decode_s : 0;
    double pps = S->prefill_s > 0 ? (double)S->prefill_tokens / S->prefill_s : 0;
    int n = snprintf(b, sizeof b,
        "# HELP modrwkv_requests_total Completion requests accepted into the queue.\n"
        "# TYPE modrwkv_requests_total counter\nmodrwkv_requests_total %llu\n"
        "# HELP modrwkv_responses_total Responses by class.\n# TYPE modrwkv_responses_total counter\n"
        "modrwkv_responses_total{class=\"2xx\"} %llu\nmodrwkv_responses_total{class=\"4xx\"} %llu\n"
        "modrwkv_responses_total{class=\"5xx\"} %llu\n"
        "# HELP modrwkv_requests_cancelled_total Requests whose client went away before the answer was complete.\n"
        "# TYPE modrwkv_requests_cancelled_total counter\nmodrwkv_requests_cancelled_total %llu\n"
        "# TYPE modrwkv_prompt_tokens_total counter\nmodrwkv_prompt_tokens_total %llu\n"
        "# HELP modrwkv_prompt_tokens_cached_total Prompt tokens not evaluated again thanks to a kept conversation state.\n"
        "# TYPE modrwkv_prompt_tokens_cached_total counter\nmodrwkv_prompt_tokens_cached_total %llu\n"
        "# TYPE modrwkv_generated_tokens_total counter\nmodrwkv_generated_tokens_total %llu\n"
        "# HELP modrwkv_decode_tokens_per_second Generated tokens per second of decoding, all sequences together.\n"
        "# TYPE modrwkv_decode_tokens_per_second gauge\nmodrwkv_decode_tokens_per_second %.2f\n"
        "# TYPE modrwkv_prefill_tokens_per_second gauge\nmodrwkv_prefill_tokens_per_second %.2f\n"
        "# HELP modrwkv_decode_batch_mean Mean number of sequences advanced per decode step.\n"
        "# TYPE modrwkv_decode_batch_mean gauge\nmodrwkv_decode_batch_mean %.2f\n"
        "# TYPE modrwkv_queue_length gauge\nmodrwkv_queue_length %d\n"
        "# TYPE modrwkv_active_sequences gauge\nmodrwkv_active_sequences %d\n"
        "# TYPE modrwkv_connections gauge\nmodrwkv_connections %d\n"
        "# TYPE modrwkv_conversations gauge\nmodrwkv_conversations %d\n"
        "# TYPE modrwkv_uptime_seconds gauge\nmodrwkv_uptime_seconds %.1f\n",
        (unsigned long long)S->req_total, (unsigned long long)S->req_ok, (unsigned long long)S->req_4xx,
        (unsigned long long)S->req_5xx, (unsigned long long)S->req_cancelled, (unsigned long long)S->prompt_tokens, (unsigned long long)S->cached_tokens,
        (unsigned long long)S->gen_tokens, tps, pps,
        S->decode_steps ? (double)S->batch_rows / (double)S->decode_steps : 0.0, S->n_queued, S->n_active, S->n_conn,
        n_conv, srv_now() - S->t_start);
    pthread_mutex_unlock(&S->mu);
    return send_buf(c, 200, "text/plain; version=0.0.4", b, (size_t)(n < (int)sizeof b ? n : (int)sizeof b - 1));
}

static enum MHD_Result send_models(srv_state *S, struct MHD_Connection *c) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(r, "data"), *m = cJSON_CreateObject();
    cJSON_AddItemToArray(d, m);
    cJSON_AddStringToObject(m, "id", S->p.model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)wall_now());
    cJSON_AddStringToObject(m, "owned_by", "modrwkv");
    count_status(S, 200);
    return send_json(c, 200, r);
}

typedef struct {
    srv_buf body;
    int too_big;
    int is_post;
} conn_ctx;

enum route { R_NONE, R_PAGE, R_HEALTH, R_METRICS, R_MODELS, R_CHAT, R_COMPLETIONS };

static enum route find_route(const char *url, int *post_only) {
    *post_only = 0;
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) return R_PAGE;
    if (!strcmp(url, "/health") || !strcmp(url, "/v1/health")) return R_HEALTH;
    if (!strcmp(url, "/metrics")) return R_METRICS;
    if (!strcmp(url, "/v1/models")) return R_MODELS;
    *post_only = 1;
    if (!strcmp(url, "/v1/chat/completions")) return R_CHAT;
    if (!strcmp(url, "/v1/completions")) return R_COMPLETIONS;
    return R_NONE;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    srv_state *S = cls;
    int post_only;
    enum route r = find_route(url, &post_only);
    const int is_post = !strcmp(method, "POST"), is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    conn_ctx *cc = *con_cls;
    if (!cc) {
        if (!(cc = calloc(1, sizeof *cc))) return MHD_NO;
        cc->is_post = is_post;
        *con_cls = cc;
        if (!is_post) goto respond; /* no body to read */
        if (r == R_CHAT || r == R_COMPLETIONS) {
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
            if (cl && strtoull(cl, NULL, 10) > S->p.max_body)
                return send_error(S, c, 413, NULL, NULL, "the request body has %s bytes; the limit is %zu", cl,
                                  S->p.max_body);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cc->too_big && (r == R_CHAT || r == R_COMPLETIONS)) {
            if (cc->body.n + *upload_size > S->p.max_body) {
                cc->too_big = 1;
                free(cc->body.p);
                memset(&cc->body, 0, sizeof cc->body);
            } else if (srv_buf_add(&cc->body, upload, *upload_size)) {
                return MHD_NO;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
respond:
    if (r == R_NONE) return send_error(S, c, 404, NULL, NULL, "no such endpoint: %s %s", method, url);
    if ((post_only && !is_post) || (!post_only && !is_get))
        return send_error(S, c, 405, NULL, NULL, "%s does not take %s", url, method);
    switch (r) {
    case R_PAGE:
        count_status(S, 200);
        return send_buf(c, 200, "text/html; charset=utf-8", mrw_server_page, strlen(mrw_server_page));
    case R_HEALTH: {
        pthread_mutex_lock(&S->mu);
        int stopping = S->stopping;
        pthread_mutex_unlock(&S->mu);
        if (stopping) return send_error(S, c, 503, NULL, NULL, "the server is shutting down");
        count_status(S, 200);
        return send_buf(c, 200, "application/json", "{\"status\":\"ok\"}", 15);
    }
    case R_METRICS: return send_metrics(S, c);
    case R_MODELS: return send_models(S, c);
    default: break;
    }
    if (cc->too_big) return send_error(S, c, 413, NULL, NULL, "the request body exceeds %zu bytes", S->p.max_body);
    pthread_mutex_lock(&S->mu);
    int over = S->n_conn > S->p.max_connections, stopping = S->stopping;
    pthread_mutex_unlock(&S->mu);
    if (stopping) return send_error(S, c, 503, NULL, NULL, "the server is shutting down");
    if (over)
        return send_error(S, c, 503, NULL, NULL, "too many connections (limit %d): retry later", S->p.max_connections);
    perr e = {0};
    srv_job *j = parse_request(S, r == R_CHAT, cc->body.p ? cc->body.p : "", cc->body.n, &e);
    if (!j) return send_error(S, c, e.status, NULL, e.param, "%s", e.msg);
    const char *hid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Conversation-Id");
    if (hid && !j->conv_id[0] && j->chat) {
        if (!*hid || strlen(hid) > SRV_ID_MAX) {
            srv_job_free(j);
            return send_error(S, c, 400, NULL, "conversation_id", "X-Conversation-Id must have 1 to %d bytes", SRV_ID_MAX);
        }
        snprintf(j->conv_id, sizeof j->conv_id, "%s", hid);
    }
    if (!j->chat) j->conv_id[0] = 0; /* conversations are a chat feature */
    /* the answer may take long: from now on the request timeout applies, not the client one */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)(S->p.timeout_s + 30));
    return run_job(S, c, j);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)toe;
    srv_state *S = cls;
    /* a kept-alive connection waiting for its next request is held to the client timeout again */
    if (c) MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)S->p.client_timeout_s);
    conn_ctx *cc = *con_cls;
    if (cc) {
        free(cc->body.p);
        free(cc);
        *con_cls = NULL;
    }
}

static void conn_notify(void *cls, struct MHD_Connection *c, void **socket_ctx, enum MHD_ConnectionNotificationCode t) {
    (void)c, (void)socket_ctx;
    srv_state *S = cls;
    pthread_mutex_lock(&S->mu);
    S->n_conn += t == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1;
    pthread_mutex_unlock(&S->mu);
}

static void log_mhd(void *cls, const char *fmt, va_list ap) {
    srv_state *S = cls;
    if (S->p.quiet) return;
    fputs("modrwkv serve: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* ------------------------------------------------------------------------------------------------ run */

int mrw_server_run(const mrw_server_params *params) {
    srv_state *S = calloc(1, sizeof *S);
    if (!S) return fprintf(stderr, "modrwkv serve: out of memory\n"), 1;
    S->p = *params;
    if (S->p.parallel < 1) S->p.parallel = 1;
    if (S->p.max_conversations < 1) S->p.max_conversations = 1;
    S->n_vocab = mrw_model_get_info(S->p.model).n_vocab;
    S->turn_end = mrw_vocab_turn_end(S->p.vocab);
    S->t_start = srv_now();
    pthread_mutex_init(&S->mu, NULL);
    pthread_cond_init(&S->cv, NULL);
    S->active = calloc((size_t)S->p.parallel, sizeof *S->active);
    S->convs = calloc((size_t)S->p.max_conversations, sizeof *S->convs);
    const char *tmp = getenv("TMPDIR");
    snprintf(S->tmpdir, sizeof S->tmpdir, "%s/modrwkv-serve-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int rc = 1;
    pthread_t sched;
    int sched_started = 0;
    struct MHD_Daemon *d = NULL;
    if (!S->active || !S->convs) {
        fprintf(stderr, "modrwkv serve: out of memory\n");
        goto out;
    }
    if (!mkdtemp(S->tmpdir)) {
        fprintf(stderr, "modrwkv serve: cannot create a temporary directory %s: %s\n", S->tmpdir, strerror(errno));
        S->tmpdir[0] = 0;
        goto out;
    }
    struct sockaddr_in a4 = {0};
    struct sockaddr_in6 a6 = {0};
    struct sockaddr *addr;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, S->p.host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)S->p.port);
        addr = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, S->p.host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)S->p.port);
        addr = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        fprintf(stderr, "modrwkv serve: --host must be a numeric IPv4 or IPv6 address, got '%s'\n", S->p.host);
        goto out;
    }
    if (pthread_create(&sched, NULL, srv_scheduler_main, S)) {
        fprintf(stderr, "modrwkv serve: cannot start the scheduler thread\n");
        goto out;
    }
    sched_started = 1;
    d = MHD_start_daemon(flags, (uint16_t)S->p.port, NULL, NULL, handle, S, MHD_OPTION_EXTERNAL_LOGGER, log_mhd, S,
                         MHD_OPTION_SOCK_ADDR, addr,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)(S->p.max_connections + 16),
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)S->p.client_timeout_s,
                         MHD_OPTION_NOTIFY_COMPLETED, completed, S, MHD_OPTION_NOTIFY_CONNECTION, conn_notify, S,
                         MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "modrwkv serve: cannot listen on %s port %d (in use, or not allowed)\n", S->p.host, S->p.port);
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? info->port : S->p.port;
    if (S->p.port_file) {
        char tmpf[1100];
        snprintf(tmpf, sizeof tmpf, "%s.tmp", S->p.port_file);
        FILE *f = fopen(tmpf, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) || rename(tmpf, S->p.port_file)) {
            fprintf(stderr, "modrwkv serve: cannot write the port file %s\n", S->p.port_file);
            goto out;
        }
    }
    fprintf(stderr, "modrwkv serve: listening on http://%s%s%s:%d/ (model %s; %d parallel sequences)\n",
            addr->sa_family == AF_INET6 ? "[" : "", S->p.host, addr->sa_family == AF_INET6 ? "]" : "", port,
            S->p.model_name, S->p.parallel);
    while (!*S->p.stop) usleep(50 * 1000);
    if (!S->p.quiet) fprintf(stderr, "modrwkv serve: shutting down\n");
    rc = 0;
out:
    pthread_mutex_lock(&S->mu);
    S->stopping = 1;
    pthread_cond_broadcast(&S->cv);
    pthread_mutex_unlock(&S->mu);
    if (sched_started) pthread_join(sched, NULL); /* fails every queued and running job with 503 */
    if (d) MHD_stop_daemon(d);                     /* waits for the connection threads */
    if (S->convs)
        for (int i = 0; i < S->p.max_conversations; i++) mrw_state_free(S->convs[i].state);
    if (S->tmpdir[0]) rmdir(S->tmpdir);
    free(S->convs);
    free(S->active);
    pthread_cond_destroy(&S->cv);
    pthread_mutex_destroy(&S->mu);
    free(S);
    return rc;
}
