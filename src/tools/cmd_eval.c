/* modrwkv eval: a model over an evaluation file -> per-sample predictions and a table of metrics.
 *
 * Records: LLaVA-style {"image", "conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt",
 * "value": "A"}]} (vqa; text without an image), audio manifests {"audio", "text"} (asr), and plain {"text"}
 * (text: held-out loss only). The file is JSONL, or one JSON array. A record that cannot be used is reported
 * as "FILE:LINE: reason" and skipped.
 *
 * For each record: the prompt ("\x16User: {question}\x17\x16Assistant:", or "\x16Assistant:" after the
 * audio for ASR; media features prepended for v1 models, or as <|image_pad|> blocks opening the user turn for
 * v2) is evaluated once; the answer is generated greedily from it (token 0 banned, stop at the turn end \x17, the first
 * space stripped), and the reference answer " {A}\x17" is scored teacher-forced from a copy of the same state
 * (the mean cross-entropy of its tokens is the held-out loss). The metrics are in src/eval/metrics.h. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/mapfile.h"
#include "eval/metrics.h"
#include "base/strutil.h"
#include "tools/common.h"
#include "ts/forecast_eval.h"
#include "tools/tools.h"

static const char *k_usage =
    "usage: modrwkv eval -m MODEL --data FILE [options]\n"
    "       modrwkv eval --score PREDICTIONS.jsonl [--task T]\n"
    "Runs the model over an evaluation file and prints a table of metrics (stdout); per-sample predictions go\n"
    "to --out. Tasks:\n"
    "  vqa    LLaVA JSON/JSONL {\"image\", \"conversations\": [human question, gpt answer]} (the first human\n"
    "         turn is the question, the gpt turn after it the reference; \"<image>\" marks the image):\n"
    "         exact match after VQA answer normalisation; VQAv2 consensus accuracy when a record also has\n"
    "         \"answers\": [10 human answers]\n"
    "  asr    audio manifest {\"audio\": FILE, \"text\": transcript}: WER and CER (after ASR normalisation:\n"
    "         lower case, punctuation removed; CER ignores spaces for Chinese/Japanese/Korean references)\n"
    "  text   conversations without media (exact match, as vqa), or {\"text\"} records (loss only)\n"
    "  forecast  a trained forecaster on the test split of a CSV or a folder of CSVs: MSE/MAE next to the baselines\n"
    "Every task also reports the held-out loss and perplexity of the reference answers (teacher-forced).\n"
    "With --score, recomputes the table from a predictions file written by --out (no model needed).\n\n"
    "      --data FILE      the evaluation file (JSONL, or a JSON array)\n"
    "      --task T         vqa, asr, text or forecast (default: from the first record)\n"
    "      --root DIR       media paths are relative to DIR (default: the data file's directory)\n"
    "      --max N          evaluate at most N records\n"
    "      --out FILE       per-sample predictions and scores (JSONL; written atomically)\n"
    "      --max-new-tokens N  answer length limit (default 128)\n"
    "      --no-loss        skip the teacher-forced loss\n"
    "      --no-normalize   WER/CER on the raw texts (default: ASR normalisation first)\n"
    "      --cer-spaces M   auto (default: drop spaces when the reference has CJK characters), keep, remove\n"
    "      --template T     'modrwkv' (\\x16User: ..\\x17\\x16Assistant:, default) or 'card' (..\\x17Assistant:)\n"
    "  -q, --quiet          no per-record warnings\n"
    "      --score FILE     recompute the metrics of a predictions file\n" TOOL_MODEL_HELP
    "      --encoder PATH   the Hugging Face encoder, for v1 checkpoints\n"
    "      --compress K,S   Conv1D compression of the encoder tokens\n"
    "      --compress-weights FILE  trained compression weights\n"
    "      --encoder-fast   compute the encoder with its f16/bf16 weights as stored\n";

typedef enum { TASK_AUTO = 0, TASK_VQA, TASK_ASR, TASK_TEXT, TASK_FORECAST } eval_task;
static const char *const k_task_names[] = {"auto", "vqa", "asr", "text", "forecast"};

typedef struct {
    eval_task task;
    int normalize;  /* ASR normalisation before WER/CER */
    int cer_spaces; /* 0 auto, 1 keep, 2 remove */
} score_opts;

/* Sums behind the table. */
typedef struct {
    long n, skipped;
    long n_exact, exact;          /* records with an exact-match score, and how many matched */
    long n_vqa;                   /* records with "answers" */
    double vqa_acc;               /* sum of consensus accuracies */
    int64_t wer_e, wer_n, cer_e, cer_n;
    long n_asr;
    double loss_sum;              /* nats over all scored answer tokens */
    int64_t loss_tokens;
} eval_totals;

/* ------------------------------------------------------------------------------------------- scoring */

/* Scores one prediction against its reference (and optional human answers), adds to the totals and to the
 * output record `o` (may be NULL). Returns 0, or -1 with a message in err. */
static int score_record(const score_opts *so, const char *pred, const char *ref, const cJSON *answers,
                        eval_totals *t, cJSON *o, mrw_error *err) {
    if (so->task == TASK_VQA || so->task == TASK_TEXT) {
        int m = mrw_exact_match(pred, ref);
        if (m < 0) return mrw_err(err, MRW_E_NOMEM, "out of memory"), -1;
        t->n_exact++;
        t->exact += m;
        if (o) cJSON_AddNumberToObject(o, "exact", m);
        if (cJSON_IsArray(answers) && cJSON_GetArraySize(answers) > 0) {
            int n = cJSON_GetArraySize(answers), k = 0;
            const char **rv = malloc((size_t)n * sizeof *rv);
            if (!rv) return mrw_err(err, MRW_E_NOMEM, "out of memory"), -1;
            const cJSON *e;
            cJSON_ArrayForEach(e, answers) {
                if (!cJSON_IsString(e)) {
                    free(rv);
                    return mrw_err(err, MRW_E_FORMAT, "'answers' must hold strings"), -1;
                }
                rv[k++] = e->valuestring;
            }
            double acc = mrw_vqa_accuracy(pred, rv, n);
            free(rv);
            if (acc < 0) return mrw_err(err, MRW_E_NOMEM, "out of memory"), -1;
            t->n_vqa++;
            t->vqa_acc += acc;
            if (o) cJSON_AddNumberToObject(o, "vqa_accuracy", acc);
        }
    } else if (so->task == TASK_ASR) {
        char *h = so->normalize ? mrw_asr_normalize(pred, strlen(pred)) : strdup(pred);
        char *r = so->normalize ? mrw_asr_normalize(ref, strlen(ref)) : strdup(ref);
        if (!h || !r) {
            free(h);
            free(r);
            return mrw_err(err, MRW_E_NOMEM, "out of memory"), -1;
        }
        int rm = so->cer_spaces == 2 || (so->cer_spaces == 0 && mrw_text_has_cjk(r));
        mrw_edit_stats w, c;
        int bad = mrw_wer_stats(h, r, &w, err) || mrw_cer_stats(h, r, rm, &c, err);
        free(h);
        free(r);
        if (bad) return -1;
        t->n_asr++;
        t->wer_e += w.errors, t->wer_n += w.ref_len;
        t->cer_e += c.errors, t->cer_n += c.ref_len;
        if (o) {
            cJSON_AddNumberToObject(o, "wer_errors", (double)w.errors);
            cJSON_AddNumberToObject(o, "wer_words", (double)w.ref_len);
            cJSON_AddNumberToObject(o, "cer_errors", (double)c.errors);
            cJSON_AddNumberToObject(o, "cer_chars", (double)c.ref_len);
        }
    }
    return 0;
}

static void print_table(const char *what, eval_task task, const eval_totals *t) {
    printf("# %s (task %s)\n", what, k_task_names[task]);
    printf("%-16s %s\n", "metric", "value");
    printf("%-16s %ld\n", "records", t->n);
    printf("%-16s %ld\n", "skipped", t->skipped);
    if (t->n_exact) printf("%-16s %.6f\n", "exact_match", (double)t->exact / (double)t->n_exact);
    if (t->n_exact) printf("%-16s %ld/%ld\n", "exact_count", t->exact, t->n_exact);
    if (t->n_vqa) printf("%-16s %.6f\n", "vqa_accuracy", t->vqa_acc / (double)t->n_vqa);
    if (t->n_asr) {
        printf("%-16s %.6f\n", "wer", t->wer_n ? (double)t->wer_e / (double)t->wer_n : 0.0);
        printf("%-16s %lld/%lld\n", "wer_errors", (long long)t->wer_e, (long long)t->wer_n);
        printf("%-16s %.6f\n", "cer", t->cer_n ? (double)t->cer_e / (double)t->cer_n : 0.0);
        printf("%-16s %lld/%lld\n", "cer_errors", (long long)t->cer_e, (long long)t->cer_n);
    }
    if (t->loss_tokens) {
        double l = t->loss_sum / (double)t->loss_tokens;
        printf("%-16s %.6f\n", "loss", l);
        printf("%-16s %.4f\n", "perplexity", exp(l));
        printf("%-16s %lld\n", "answer_tokens", (long long)t->loss_tokens);
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------------- records */

typedef struct {
    cJSON *json;
    long line; /* 1-based line (JSONL) or 0 (array) */
    long index;
} record;

typedef struct {
    cJSON *array; /* JSON-array files */
    char *text;   /* JSONL files */
    size_t len, pos;
    long line, index;
    int is_array;
    const char *path;
} record_reader;

static void reader_close(record_reader *r);

static int reader_open_(const char *cmd, const char *path, record_reader *r);
/* On failure nothing stays allocated. */
static int reader_open(const char *cmd, const char *path, record_reader *r) {
    int rc = reader_open_(cmd, path, r);
    if (rc) reader_close(r);
    return rc;
}

static int reader_open_(const char *cmd, const char *path, record_reader *r) {
    memset(r, 0, sizeof *r);
    r->path = path;
    if (tool_read_file(cmd, path, &r->text, &r->len)) return -1;
    size_t i = 0;
    if (r->len >= 3 && !memcmp(r->text, "\xEF\xBB\xBF", 3)) i = 3; /* UTF-8 BOM */
    while (i < r->len && (r->text[i] == ' ' || r->text[i] == '\t' || r->text[i] == '\r' || r->text[i] == '\n')) i++;
    r->pos = i;
    for (size_t k = 0; k < i; k++) r->line += r->text[k] == '\n';
    if (i == r->len) return tool_fail(cmd, "%s: the file is empty", path), -1;
    if (r->text[i] == '[') {
        r->is_array = 1;
        r->array = cJSON_ParseWithLength(r->text + i, r->len - i);
        if (!cJSON_IsArray(r->array)) {
            cJSON_Delete(r->array);
            r->array = NULL;
            return tool_fail(cmd, "%s: starts with '[' but is not a valid JSON array (near byte %zu)", path,
                             cJSON_GetErrorPtr() ? (size_t)(cJSON_GetErrorPtr() - r->text) : i), -1;
        }
    }
    return 0;
}

static void reader_close(record_reader *r) {
    cJSON_Delete(r->array);
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* The next record: 1 with rec filled (rec->json NULL when the line is not valid JSON: *why says so), 0 at
 * the end. */
static int reader_next(record_reader *r, record *rec, const char **why) {
    *why = NULL;
    memset(rec, 0, sizeof *rec);
    if (r->is_array) {
        cJSON *e = cJSON_GetArrayItem(r->array, (int)r->index);
        if (!e) return 0;
        rec->json = e;
        rec->index = r->index++;
        return 1;
    }
    for (;;) {
        if (r->pos >= r->len) return 0;
        char *s = r->text + r->pos, *nl = memchr(s, '\n', r->len - r->pos);
        size_t n = nl ? (size_t)(nl - s) : r->len - r->pos;
        r->pos += n + (nl != NULL);
        r->line++;
        size_t a = 0;
        while (a < n && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r')) a++;
        if (a == n) continue;
        rec->line = r->line;
        rec->index = r->index++;
        rec->json = cJSON_ParseWithLength(s, n);
        if (!rec->json) *why = "not valid JSON";
        else if (!cJSON_IsObject(rec->json)) *why = "not a JSON object";
        return 1;
    }
}

static void record_free(record_reader *r, record *rec) {
    if (!r->is_array) cJSON_Delete(rec->json);
    rec->json = NULL;
}

static void where(const record_reader *r, const record *rec, char *out, size_t cap) {
    if (r->is_array) snprintf(out, cap, "%s: record %ld", r->path, rec->index + 1);
    else snprintf(out, cap, "%s:%ld", r->path, rec->line);
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static eval_task detect_task(const cJSON *o) {
    if (cJSON_GetObjectItemCaseSensitive(o, "audio")) return TASK_ASR;
    if (cJSON_GetObjectItemCaseSensitive(o, "conversations"))
        return cJSON_GetObjectItemCaseSensitive(o, "image") ? TASK_VQA : TASK_TEXT;
    if (cJSON_GetObjectItemCaseSensitive(o, "text")) return TASK_TEXT;
    return TASK_AUTO;
}

/* ----------------------------------------------------------------------------------------- the sample */

/* What one record asks: media, question, reference. Strings point into the record's JSON or into q_buf. */
typedef struct {
    const char *media[TOOL_MAX_IMAGES];
    int n_media, audio;
    char *question;        /* malloc'd: the first human turn without its <image> markers; NULL for ASR/text */
    const char *reference; /* the answer or transcript, or the whole text for {"text"} records */
    int text_only;         /* a {"text"} record: loss over the text, no generation */
    const cJSON *answers;
} sample;

static const char *build_sample(const cJSON *o, eval_task task, sample *s) {
    memset(s, 0, sizeof *s);
    if (task == TASK_ASR) {
        const char *a = jstr(o, "audio"), *t = jstr(o, "text");
        if (!a) return "'audio' must be a string";
        if (!t) return "'text' (the transcript) must be a string";
        s->media[s->n_media++] = a;
        s->audio = 1;
        s->reference = t;
        return NULL;
    }
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(o, "conversations");
    if (!conv && task == TASK_TEXT) {
        const char *t = jstr(o, "text");
        if (!t) return "neither 'conversations' nor 'text'";
        if (!*t) return "'text' is empty";
        s->reference = t;
        s->text_only = 1;
        return NULL;
    }
    if (!cJSON_IsArray(conv)) return "'conversations' must be an array";
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(o, "image");
    if (cJSON_IsString(img)) {
        s->media[s->n_media++] = img->valuestring;
    } else if (cJSON_IsArray(img)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, img) {
            if (!cJSON_IsString(e)) return "'image' must hold strings";
            if (s->n_media == TOOL_MAX_IMAGES) return "more than 3 images";
            s->media[s->n_media++] = e->valuestring;
        }
    } else if (img && !cJSON_IsNull(img)) {
        return "'image' must be a string or an array of strings";
    }
    if (task == TASK_VQA && s->n_media == 0) return "no 'image'";
    if (task == TASK_TEXT && s->n_media) return "the record has an image: use --task vqa";
    const char *q = NULL;
    const cJSON *t;
    cJSON_ArrayForEach(t, conv) {
        const char *from = jstr(t, "from"), *val = jstr(t, "value");
        if (!from || !val) return "a turn without string 'from' and 'value'";
        int user = !strcasecmp(from, "human") || !strcasecmp(from, "user");
        int asst = !strcasecmp(from, "gpt") || !strcasecmp(from, "assistant");
        if (!q && user) q = val;
        else if (q && asst) {
            s->reference = val;
            break;
        }
    }
    if (!q) return "no human turn";
    if (!s->reference) return "no gpt turn after the first human turn";
    /* the question without "<image>" markers (and the newline LLaVA puts after one) */
    size_t n = strlen(q);
    if (!(s->question = malloc(n + 1))) return "out of memory";
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (!strncmp(q + i, "<image>", 7)) {
            i += 7;
            if (q[i] == '\n') i++;
            continue;
        }
        s->question[k++] = q[i++];
    }
    while (k > 0 && (s->question[k - 1] == ' ' || s->question[k - 1] == '\n' || s->question[k - 1] == '\t')) k--;
    s->question[k] = 0;
    size_t lead = strspn(s->question, " \n\t");
    memmove(s->question, s->question + lead, k - lead + 1);
    s->answers = cJSON_GetObjectItemCaseSensitive(o, "answers");
    return NULL;
}

/* root + "/" + path, unless path is absolute or root is NULL. */
static char *resolve(const char *root, const char *path) {
    if (path[0] == '/' || !root || !*root) return strdup(path);
    char *p = NULL;
    return asprintf(&p, "%s/%s", root, path) < 0 ? NULL : p;
}

typedef struct {
    int32_t *ids;
    int n, cap;
} token_list;

static int on_token(void *user, int32_t tok) {
    token_list *l = user;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        int32_t *p = realloc(l->ids, (size_t)cap * sizeof *p);
        if (!p) return 1;
        l->ids = p;
        l->cap = cap;
    }
    l->ids[l->n++] = tok;
    return 0;
}

/* Text of generated tokens (valid UTF-8), without the turn end and without the first leading space. */
static char *detokenize(const mrw_vocab *v, const int32_t *ids, int n) {
    mrw_sbuf b = {0};
    mrw_utf8_stream us = {0};
    char tmp[MRW_UTF8_STREAM_OUT_MAX(256)];
    for (int i = 0; i < n; i++) {
        if (i == n - 1 && ids[i] == mrw_vocab_turn_end(v)) break;
        size_t len = 0;
        const uint8_t *bytes = mrw_token_bytes(v, ids[i], &len);
        for (size_t off = 0; bytes && off < len; off += 256) {
            size_t k = len - off < 256 ? len - off : 256;
            size_t w = mrw_utf8_stream_push(&us, bytes + off, k, tmp);
            if (mrw_sbuf_add(&b, tmp, w)) goto oom;
        }
    }
    size_t w = mrw_utf8_stream_flush(&us, tmp);
    if (w > 0 && w <= 3 && mrw_sbuf_add(&b, tmp, w)) goto oom;
    if (!b.p) return strdup("");
    if (b.p[0] == ' ') memmove(b.p, b.p + 1, b.n);
    return b.p;
oom:
    free(b.p);
    return NULL;
}

typedef struct {
    const char *cmd;
    tool_session *s;
    score_opts so;
    mrw_chat_style style;
    int max_new, no_loss, n_vocab;
    mrw_sampler *smp;
    mrw_state *st, *st2;
    float *logits, *last, *chunk_logits;
    int chunk;
} evaluator;

/* Cross-entropy (nats) of `target` under logits l[0..V). */
static double ce(const float *l, int V, int32_t target) {
    float mx = l[0];
    for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    double z = 0;
    for (int i = 0; i < V; i++) z += exp((double)l[i] - mx);
    return log(z) + mx - l[target];
}

/* Teacher-forced loss of ans[0..n) continuing from state st2 whose next-token logits are `last`. */
static int answer_loss(evaluator *e, const int32_t *ans, int n, double *sum, mrw_error *err) {
    *sum = ce(e->last, e->n_vocab, ans[0]);
    for (int s = 0; s + 1 < n; s += e->chunk) {
        int T = n - 1 - s < e->chunk ? n - 1 - s : e->chunk; /* positions s..s+T-1 predict s+1..s+T */
        if (mrw_eval_tokens(e->s->ctx, e->st2, ans + s, T, MRW_LOGITS_ALL, e->chunk_logits, err)) return -1;
        for (int t = 0; t < T; t++) *sum += ce(e->chunk_logits + (size_t)t * e->n_vocab, e->n_vocab, ans[s + t + 1]);
    }
    return 0;
}

/* Evaluates one sample: fills `o` with the prediction and scores, adds to the totals. Returns 0, or -1 with
 * the reason in err (the record is then skipped). */
static int eval_sample(evaluator *e, const sample *sm, const char *root, eval_totals *tot, cJSON *o, mrw_error *err) {
    tool_session *s = e->s;
    mrw_features feats[TOOL_MAX_IMAGES] = {{0}};
    int n_feats = 0, rc = -1;
    mrw_sbuf pb = {0};
    int32_t *ids = NULL, *ans = NULL;
    token_list gen = {0};
    char *pred = NULL;
    int n_ids = 0;
    const int nt = mrw_context_n_threads(s->ctx);
    /* media */
    if (sm->n_media && !s->mm) {
        mrw_err(err, MRW_E_ARG, "the record has media but the model is not a ModRWKV model");
        goto out;
    }
    cJSON *media = sm->n_media ? cJSON_AddArrayToObject(o, "media") : NULL;
    for (int i = 0; i < sm->n_media; i++) {
        char *path = resolve(root, sm->media[i]);
        if (!path) {
            mrw_err(err, MRW_E_NOMEM, "out of memory");
            goto out;
        }
        cJSON_AddItemToArray(media, cJSON_CreateString(sm->media[i]));
        mrw_status st = sm->audio ? mrw_mm_encode_audio(s->mm, path, nt, &feats[n_feats], NULL, err)
                                  : mrw_mm_encode_image(s->mm, path, nt, &feats[n_feats], NULL, err);
        free(path);
        if (st) goto out;
        n_feats++;
    }
    /* prompt */
    int bad = 0;
    if (sm->text_only) {
        /* the first token is the context, the rest is scored */
    } else if (sm->audio) {
        char gp[32];
        size_t k = mrw_chat_generation_prompt(e->style, gp, sizeof gp);
        if (s->special)
            for (int i = 0; i < n_feats && !bad; i++) {
                bad = mrw_sbuf_add(&pb, "<|vision_start|>", 16);
                for (int j = 0; j < feats[i].n && !bad; j++) bad = mrw_sbuf_add(&pb, "<|image_pad|>", 13);
                bad = bad || mrw_sbuf_add(&pb, "<|vision_end|>\n", 15);
            }
        bad = bad || mrw_sbuf_add(&pb, gp, k);
    } else {
        mrw_sbuf q = {0};
        if (s->special)
            for (int i = 0; i < n_feats && !bad; i++) {
                bad = mrw_sbuf_add(&q, "<|vision_start|>", 16);
                for (int j = 0; j < feats[i].n && !bad; j++) bad = mrw_sbuf_add(&q, "<|image_pad|>", 13);
                bad = bad || mrw_sbuf_add(&q, "<|vision_end|>\n", 15);
            }
        bad = bad || mrw_sbuf_add(&q, sm->question, strlen(sm->question));
        if (!bad) {
            mrw_chat_msg msg = {MRW_ROLE_USER, q.p, q.n};
            size_t n = mrw_chat_prompt(e->style, &msg, 1, 1, NULL, 0);
            char *tmp = malloc(n + 1);
            bad = !tmp;
            if (tmp) {
                mrw_chat_prompt(e->style, &msg, 1, 1, tmp, n + 1);
                bad = mrw_sbuf_add(&pb, tmp, n);
                free(tmp);
            }
        }
        free(q.p);
    }
    if (bad) {
        mrw_err(err, MRW_E_NOMEM, "out of memory");
        goto out;
    }
    /* reference tokens: " {answer}\x17" (the whole text for text records) */
    mrw_sbuf rb = {0};
    bad = sm->text_only ? mrw_sbuf_add(&rb, sm->reference, strlen(sm->reference))
                        : mrw_sbuf_add(&rb, " ", 1) || mrw_sbuf_add(&rb, sm->reference, strlen(sm->reference)) || mrw_sbuf_add(&rb, "\x17", 1);
    int n_ans = 0;
    if (!bad) {
        int64_t need = mrw_tokenize(s->vocab, rb.p, rb.n, NULL, 0);
        if (need < 0 || need > (1 << 24)) {
            free(rb.p);
            mrw_err(err, MRW_E_FORMAT, "the reference cannot be tokenized with this vocabulary");
            goto out;
        }
        ans = malloc((size_t)(need + 1) * sizeof *ans);
        if (ans) n_ans = (int)mrw_tokenize(s->vocab, rb.p, rb.n, ans, (size_t)need);
        bad = !ans;
    }
    free(rb.p);
    if (bad) {
        mrw_err(err, MRW_E_NOMEM, "out of memory");
        goto out;
    }
    if (sm->text_only) {
        if (n_ans < 2) {
            mrw_err(err, MRW_E_FORMAT, "'text' has fewer than 2 tokens");
            goto out;
        }
        ids = malloc(sizeof *ids);
        if (!ids) {
            mrw_err(err, MRW_E_NOMEM, "out of memory");
            goto out;
        }
        ids[0] = ans[0];
        n_ids = 1;
        memmove(ans, ans + 1, (size_t)(n_ans - 1) * sizeof *ans);
        n_ans--;
    } else {
        int64_t need = mrw_tokenize_ex(s->vocab, pb.p, pb.n, NULL, 0, s->special ? MRW_TOKENIZE_SPECIAL : 0);
        if (need <= 0 || need > (1 << 24)) {
            mrw_err(err, MRW_E_FORMAT, "the prompt cannot be tokenized with this vocabulary");
            goto out;
        }
        if (!(ids = malloc((size_t)need * sizeof *ids))) {
            mrw_err(err, MRW_E_NOMEM, "out of memory");
            goto out;
        }
        n_ids = (int)mrw_tokenize_ex(s->vocab, pb.p, pb.n, ids, (size_t)need, s->special ? MRW_TOKENIZE_SPECIAL : 0);
    }
    /* the prompt, once */
    mrw_state_reset(e->st);
    mrw_status st = s->mm && n_feats ? mrw_mm_eval(s->ctx, e->st, s->mm, feats, n_feats, ids, n_ids, MRW_LOGITS_LAST,
                                                   e->logits, err)
                                     : mrw_eval_tokens(s->ctx, e->st, ids, n_ids, MRW_LOGITS_LAST, e->logits, err);
    if (st) goto out;
    const size_t V = (size_t)e->n_vocab;
    memcpy(e->last, e->logits, V * sizeof *e->last);
    if (!e->no_loss && (st = mrw_state_copy(e->st2, e->st))) {
        mrw_err(err, st, "state copy failed");
        goto out;
    }
    /* the answer, greedy */
    if (!sm->text_only) {
        mrw_generate_params gp = mrw_generate_params_default();
        gp.max_tokens = e->max_new;
        gp.feed_last = 0;
        const int32_t turn_end = mrw_vocab_turn_end(s->vocab); /* 24 in the World vocabulary, 23 in bytes */
        gp.stop_tokens = &turn_end;
        gp.n_stop = turn_end >= 0;
        int n_gen = 0;
        if (mrw_generate_continue(s->ctx, e->st, e->smp, e->logits, &gp, on_token, &gen, &n_gen, err)) goto out;
        if (!(pred = detokenize(s->vocab, gen.ids, gen.n))) {
            mrw_err(err, MRW_E_NOMEM, "out of memory");
            goto out;
        }
        if (sm->question) cJSON_AddStringToObject(o, "question", sm->question);
        cJSON_AddStringToObject(o, "reference", sm->reference);
        cJSON_AddStringToObject(o, "prediction", pred);
        if (cJSON_IsArray(sm->answers)) cJSON_AddItemToObject(o, "answers", cJSON_Duplicate(sm->answers, 1));
        if (score_record(&e->so, pred, sm->reference, sm->answers, tot, o, err)) goto out;
    }
    /* the reference, teacher-forced */
    if (!e->no_loss) {
        double sum = 0;
        if (answer_loss(e, ans, n_ans, &sum, err)) goto out;
        tot->loss_sum += sum;
        tot->loss_tokens += n_ans;
        cJSON_AddNumberToObject(o, "loss_sum", sum);
        cJSON_AddNumberToObject(o, "answer_tokens", n_ans);
    }
    rc = 0;
out:
    for (int i = 0; i < n_feats; i++) mrw_features_free(&feats[i]);
    free(pb.p);
    free(ids);
    free(ans);
    free(gen.ids);
    free(pred);
    return rc;
}

/* ------------------------------------------------------------------------------------------- output */

typedef struct {
    mrw_afile f;
    int open;
} out_file;

static void out_line(out_file *of, const cJSON *o) {
    if (!of->open) return;
    char *s = cJSON_PrintUnformatted(o);
    if (!s) {
        of->f.failed = 1;
        return;
    }
    mrw_afile_write(&of->f, s, strlen(s));
    mrw_afile_write(&of->f, "\n", 1);
    free(s);
}

/* ------------------------------------------------------------------------------------------- score mode */

static int score_file(const char *cmd, const char *path, score_opts so, int quiet) {
    record_reader r;
    if (reader_open(cmd, path, &r)) return 1;
    eval_totals t = {0};
    record rec;
    const char *why;
    mrw_error err = {0};
    while (reader_next(&r, &rec, &why)) {
        char w[512];
        where(&r, &rec, w, sizeof w);
        const char *pred = rec.json ? jstr(rec.json, "prediction") : NULL;
        const char *ref = rec.json ? jstr(rec.json, "reference") : NULL;
        if (!why && so.task == TASK_AUTO) {
            const char *tn = jstr(rec.json, "task");
            for (int k = 1; tn && k <= TASK_TEXT; k++)
                if (!strcmp(tn, k_task_names[k])) so.task = (eval_task)k;
            if (so.task == TASK_AUTO) why = "no \"task\" in the record: give --task";
        }
        const cJSON *ls = rec.json ? cJSON_GetObjectItemCaseSensitive(rec.json, "loss_sum") : NULL;
        const cJSON *lt = rec.json ? cJSON_GetObjectItemCaseSensitive(rec.json, "answer_tokens") : NULL;
        int has_loss = cJSON_IsNumber(ls) && cJSON_IsNumber(lt) && isfinite(ls->valuedouble) && lt->valuedouble >= 1;
        if (!why && (!pred || !ref) && !has_loss) why = "needs string \"prediction\" and \"reference\" (or a loss)";
        if (!why && pred && ref &&
            score_record(&so, pred, ref, cJSON_GetObjectItemCaseSensitive(rec.json, "answers"), &t, NULL, &err))
            why = err.msg;
        if (why) {
            if (!quiet) fprintf(stderr, "modrwkv %s: %s: %s, skipped\n", cmd, w, why);
            t.skipped++;
        } else {
            t.n++;
            if (has_loss) {
                t.loss_sum += ls->valuedouble;
                t.loss_tokens += (int64_t)lt->valuedouble;
            }
        }
        record_free(&r, &rec);
    }
    reader_close(&r);
    if (t.n == 0) return tool_fail(cmd, "%s: no usable records", path);
    char what[600];
    snprintf(what, sizeof what, "scored %s", path);
    print_table(what, so.task, &t);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ main */

int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval";
    tool_model_opts mo = {.dtype = MRW_DT_AUTO};
    tool_media_opts media = {0};
    const char *data = NULL, *root = NULL, *out = NULL, *score = NULL, *task_s = NULL;
    int max_records = 0, quiet = 0;
    evaluator e = {.cmd = cmd, .style = MRW_CHAT_V1_EVAL, .max_new = 128};
    e.so.normalize = 1;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strncmp(o, "--data", 6)) data = tool_value(&a, o);
        else if (!strncmp(o, "--task", 6)) task_s = tool_value(&a, o);
        else if (!strncmp(o, "--root", 6)) root = tool_value(&a, o);
        else if (!strncmp(o, "--out", 5)) out = tool_value(&a, o);
        else if (!strncmp(o, "--score", 7)) score = tool_value(&a, o);
        else if (!strncmp(o, "--max-new-tokens", 16)) tool_int(&a, o, 1, 1 << 20, &e.max_new);
        else if (!strncmp(o, "--max", 5)) tool_int(&a, o, 1, 1 << 30, &max_records);
        else if (!strcmp(o, "--no-loss")) e.no_loss = 1;
        else if (!strcmp(o, "--no-normalize")) e.so.normalize = 0;
        else if (!strcmp(o, "-q") || !strcmp(o, "--quiet")) quiet = 1;
        else if (!strncmp(o, "--cer-spaces", 12)) {
            const char *v = tool_value(&a, o);
            if (v && !strcmp(v, "auto")) e.so.cer_spaces = 0;
            else if (v && !strcmp(v, "keep")) e.so.cer_spaces = 1;
            else if (v && !strcmp(v, "remove")) e.so.cer_spaces = 2;
            else if (v) tool_fail(cmd, "--cer-spaces must be auto, keep or remove"), a.failed = 1;
        } else if (!strncmp(o, "--template", 10)) {
            const char *t = tool_value(&a, o);
            if (t && !strcmp(t, "card")) e.style = MRW_CHAT_MODEL_CARD;
            else if (t && strcmp(t, "modrwkv")) tool_fail(cmd, "--template must be 'modrwkv' or 'card'"), a.failed = 1;
        } else if ((!strncmp(o, "--image", 7) || !strncmp(o, "--audio", 7))) {
            tool_fail(cmd, "%s: the media come from the data file's records", o);
            a.failed = 1;
        } else if (!tool_media_option(&a, o, &media) && !tool_model_option(&a, o, &mo)) tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    eval_task task = TASK_AUTO;
    if (task_s) {
        for (int k = 1; k <= TASK_FORECAST; k++)
            if (!strcmp(task_s, k_task_names[k])) task = (eval_task)k;
        if (task == TASK_AUTO) return tool_fail(cmd, "--task must be vqa, asr, text or forecast (got '%s')", task_s), 2;
    }
    if (task == TASK_FORECAST) {
        /* a trained forecaster on the standard test split of a CSV (or every CSV of a folder), next to the
         * baselines on the same windows */
        if (!mo.model || !data) return tool_fail(cmd, "--task forecast needs -m FORECASTER and --data FILE.csv|DIR"), 2;
        mrw_ts_eval_opts fo = {.max_windows = max_records > 0 ? max_records : 0, .batch = 16, .n_threads = mo.threads,
                               .progress = !quiet};
        mrw_error fe = {0};
        if (mrw_ts_eval_forecaster_path(mo.model, data, &fo, stdout, &fe)) return tool_fail(cmd, "%s", fe.msg), 1;
        return 0;
    }
    e.so.task = task;
    if (score) {
        if (data || mo.model) return tool_fail(cmd, "--score takes a predictions file only (no -m, no --data)"), 2;
        return score_file(cmd, score, e.so, quiet);
    }
    if (!data) return tool_fail(cmd, "give the evaluation file with --data FILE"), 2;
    if (!mo.model) return tool_fail(cmd, "no model given: use -m FILE (see modrwkv eval --help)"), 2;

    record_reader r;
    if (reader_open(cmd, data, &r)) return 1;
    /* default root: the data file's directory */
    char *root_buf = NULL;
    if (!root) {
        const char *sl = strrchr(data, '/');
        root_buf = sl ? strndup(data, (size_t)(sl - data + (sl == data))) : strdup(".");
        root = root_buf;
    }
    int rc = 1;
    tool_session s;
    out_file of = {0};
    if (tool_session_open(cmd, &mo, &media, &s)) {
        reader_close(&r);
        free(root_buf);
        return 1;
    }
    e.s = &s;
    e.n_vocab = mrw_model_get_info(s.model).n_vocab;
    e.chunk = mo.chunk ? (mo.chunk < 64 ? mo.chunk : 64) : 64;
    mrw_sampler_params sp = mrw_sampler_params_default(); /* greedy */
    e.smp = mrw_sampler_new(&sp, e.n_vocab);
    e.st = mrw_state_new(s.model);
    e.st2 = mrw_state_new(s.model);
    e.logits = malloc((size_t)e.n_vocab * sizeof *e.logits);
    e.last = malloc((size_t)e.n_vocab * sizeof *e.last);
    e.chunk_logits = malloc((size_t)e.chunk * e.n_vocab * sizeof *e.chunk_logits);
    if (!e.smp || !e.st || !e.st2 || !e.logits || !e.last || !e.chunk_logits) {
        tool_fail(cmd, "out of memory");
        goto done;
    }
    mrw_error err = {0};
    if (out) {
        if (mrw_afile_open(&of.f, out, &err)) {
            tool_fail(cmd, "%s: %s", out, err.msg);
            goto done;
        }
        of.open = 1;
    }
    long total = r.is_array ? cJSON_GetArraySize(r.array) : 0;
    if (!r.is_array)
        for (size_t i = r.pos; i < r.len; i++) total += r.text[i] == '\n';
    if (!r.is_array && r.len && r.text[r.len - 1] != '\n') total++;
    if (max_records && total > max_records) total = max_records;
    tool_progress prog;
    tool_progress_start(&prog, "eval", total);
    eval_totals t = {0};
    record rec;
    const char *why;
    while ((!max_records || t.n < max_records) && reader_next(&r, &rec, &why)) {
        char w[512];
        where(&r, &rec, w, sizeof w);
        sample sm = {0};
        if (!why && e.so.task == TASK_AUTO) {
            e.so.task = detect_task(rec.json);
            if (e.so.task == TASK_AUTO) why = "cannot tell the task (no 'conversations', 'audio' or 'text'): give --task";
            else if (!quiet) fprintf(stderr, "modrwkv eval: task %s (from %s)\n", k_task_names[e.so.task], w);
        }
        if (!why && (e.so.task == TASK_VQA || e.so.task == TASK_ASR) && !s.mm) {
            tool_fail(cmd, "--task %s needs a ModRWKV model (an adapter and an encoder); %s is a plain RWKV-7",
                      k_task_names[e.so.task], mo.model);
            record_free(&r, &rec);
            goto done;
        }
        if (!why) why = build_sample(rec.json, e.so.task, &sm);
        if (!why) {
            cJSON *ro = cJSON_CreateObject();
            if (!ro) {
                tool_fail(cmd, "out of memory");
                free(sm.question);
                record_free(&r, &rec);
                goto done;
            }
            cJSON_AddStringToObject(ro, "task", k_task_names[e.so.task]);
            cJSON_AddNumberToObject(ro, "index", (double)rec.index);
            cJSON_AddStringToObject(ro, "source", w);
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(rec.json, "id");
            if (cJSON_IsString(id) || cJSON_IsNumber(id)) cJSON_AddItemToObject(ro, "id", cJSON_Duplicate(id, 0));
            eval_totals before = t;
            if (eval_sample(&e, &sm, root, &t, ro, &err)) {
                t = before; /* nothing of a failed record counts */
                why = err.msg;
            } else {
                t.n++;
                out_line(&of, ro);
            }
            cJSON_Delete(ro);
        }
        if (why) {
            if (!quiet) fprintf(stderr, "modrwkv eval: %s: %s, skipped\n", w, why);
            t.skipped++;
        }
        free(sm.question);
        record_free(&r, &rec);
        tool_progress_update(&prog, t.n + t.skipped < total ? t.n + t.skipped : total);
    }
    tool_progress_finish(&prog);
    if (t.n == 0) {
        tool_fail(cmd, "%s: no record could be evaluated (%ld skipped)", data, t.skipped);
        goto done;
    }
    if (of.open) {
        of.open = 0;
        if (mrw_afile_commit(&of.f, &err)) {
            tool_fail(cmd, "%s", err.msg);
            goto done;
        }
    }
    char what[1024];
    snprintf(what, sizeof what, "%s on %s", mo.model, data);
    print_table(what, e.so.task, &t);
    rc = 0;
done:
    if (of.open) mrw_afile_abort(&of.f);
    free(e.logits);
    free(e.last);
    free(e.chunk_logits);
    mrw_state_free(e.st);
    mrw_state_free(e.st2);
    mrw_sampler_free(e.smp);
    tool_session_close(&s);
    reader_close(&r);
    free(root_buf);
    return rc;
}
