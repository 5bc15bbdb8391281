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
#include <stdarg.h>
#include <sys/stat.h>
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
    "       modrwkv eval --suite SUITE.jsonl [--out TABLE.md] [--only NAME] [-t N] [-q]\n"
    "Runs the model over an evaluation file and prints a table of metrics (stdout); per-sample predictions go\n"
    "to --out. Tasks:\n"
    "  vqa    LLaVA JSON/JSONL {\"image\", \"conversations\": [human question, gpt answer]} (the first human\n"
    "         turn is the question, the gpt turn after it the reference; \"<image>\" marks the image):\n"
    "         exact match after VQA answer normalisation; VQAv2 consensus accuracy when a record also has\n"
    "         \"answers\": [10 human answers]\n"
    "  asr    audio manifest {\"audio\": FILE, \"text\": transcript}: WER and CER (after ASR normalisation:\n"
    "         lower case, punctuation removed; CER ignores spaces for Chinese/Japanese/Korean references)\n"
    "         with \"question_type\" in the records, also per question type\n"
    "  text   conversations without media (exact match, as vqa), or {\"text\"} records (loss only)\n"
    "  perplexity  the whole --data file is one plain text: loss, perplexity and bits per byte of every token\n"
    "         after the first (as modrwkv perplexity --no-bos); --max N keeps its first N bytes\n"
    "  forecast  a trained forecaster on the test split of a CSV or a folder of CSVs: MSE/MAE next to the baselines\n"
    "Every task also reports the held-out loss and perplexity of the reference answers (teacher-forced).\n"
    "With --score, recomputes the table from a predictions file written by --out (no model needed).\n"
    "With --suite, runs every row of a suite file (JSONL or a JSON array of {\"name\", \"task\", \"model\",\n"
    "\"data\", optional \"root\", \"max\", \"options\": [extra eval options], \"chance\", \"chance_by_type\",\n"
    "\"recipe\"}; paths relative to the current directory) and prints one Markdown table (name, task, model,\n"
    "data, metric, n, chance, time), also written atomically to --out. A row whose model or data is missing\n"
    "says \"missing: PATH (run RECIPE)\"; a failing row is reported and the rest still run (exit status 1).\n"
    "--only NAME runs one row; -t N and -q apply to every row.\n\n"
    "      --data FILE      the evaluation file (JSONL, or a JSON array)\n"
    "      --task T         vqa, asr, text, perplexity or forecast (default: from the first record)\n"
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

typedef enum { TASK_AUTO = 0, TASK_VQA, TASK_ASR, TASK_TEXT, TASK_PERPLEXITY, TASK_FORECAST } eval_task;
static const char *const k_task_names[] = {"auto", "vqa", "asr", "text", "perplexity", "forecast"};

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
    int64_t loss_bytes;           /* bytes of the scored tokens (for bits per byte) */
} eval_totals;

/* Exact match (and consensus accuracy) per "question_type" of the records that carry one. */
typedef struct {
    char *name;
    long n, exact, n_vqa;
    double vqa_acc;
} qtype_stat;

typedef struct {
    qtype_stat *v;
    int n, cap;
} qtype_table;

static void qtypes_free(qtype_table *q) {
    for (int i = 0; i < q->n; i++) free(q->v[i].name);
    free(q->v);
    memset(q, 0, sizeof *q);
}

/* Adds one scored record (its per-record JSON: "exact", optional "vqa_accuracy") to its type. -1 = no memory. */
static int qtypes_add(qtype_table *q, const char *type, const cJSON *scored) {
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(scored, "exact");
    const cJSON *va = cJSON_GetObjectItemCaseSensitive(scored, "vqa_accuracy");
    if (!type || !cJSON_IsNumber(ex)) return 0;
    int i = 0;
    while (i < q->n && strcmp(q->v[i].name, type)) i++;
    if (i == q->n) {
        if (q->n == q->cap) {
            int cap = q->cap ? q->cap * 2 : 8;
            qtype_stat *p = realloc(q->v, (size_t)cap * sizeof *p);
            if (!p) return -1;
            q->v = p;
            q->cap = cap;
        }
        memset(&q->v[i], 0, sizeof q->v[i]);
        if (!(q->v[i].name = strdup(type))) return -1;
        q->n++;
    }
    q->v[i].n++;
    q->v[i].exact += ex->valuedouble != 0;
    if (cJSON_IsNumber(va)) q->v[i].n_vqa++, q->v[i].vqa_acc += va->valuedouble;
    return 0;
}

/* A type name for a one-word table cell: whitespace becomes '_'. */
static void qtype_label(const char *name, char *out, size_t cap) {
    size_t k = 0;
    for (; name[k] && k + 1 < cap; k++) out[k] = (name[k] == ' ' || name[k] == '\t' || name[k] == '\n') ? '_' : name[k];
    out[k] = 0;
}

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

static void print_table(FILE *f, const char *what, eval_task task, const eval_totals *t, const qtype_table *qt) {
    fprintf(f, "# %s (task %s)\n", what, k_task_names[task]);
    fprintf(f, "%-16s %s\n", "metric", "value");
    fprintf(f, "%-16s %ld\n", "records", t->n);
    fprintf(f, "%-16s %ld\n", "skipped", t->skipped);
    if (t->n_exact) fprintf(f, "%-16s %.6f\n", "exact_match", (double)t->exact / (double)t->n_exact);
    if (t->n_exact) fprintf(f, "%-16s %ld/%ld\n", "exact_count", t->exact, t->n_exact);
    if (t->n_vqa) fprintf(f, "%-16s %.6f\n", "vqa_accuracy", t->vqa_acc / (double)t->n_vqa);
    for (int i = 0; qt && i < qt->n; i++) {
        char lab[96], key[128];
        qtype_label(qt->v[i].name, lab, sizeof lab);
        snprintf(key, sizeof key, "exact_match[%s]", lab);
        fprintf(f, "%-16s %.6f %ld/%ld\n", key, (double)qt->v[i].exact / (double)qt->v[i].n, qt->v[i].exact, qt->v[i].n);
        if (qt->v[i].n_vqa) {
            snprintf(key, sizeof key, "vqa_accuracy[%s]", lab);
            fprintf(f, "%-16s %.6f\n", key, qt->v[i].vqa_acc / (double)qt->v[i].n_vqa);
        }
    }
    if (t->n_asr) {
        fprintf(f, "%-16s %.6f\n", "wer", t->wer_n ? (double)t->wer_e / (double)t->wer_n : 0.0);
        fprintf(f, "%-16s %lld/%lld\n", "wer_errors", (long long)t->wer_e, (long long)t->wer_n);
        fprintf(f, "%-16s %.6f\n", "cer", t->cer_n ? (double)t->cer_e / (double)t->cer_n : 0.0);
        fprintf(f, "%-16s %lld/%lld\n", "cer_errors", (long long)t->cer_e, (long long)t->cer_n);
    }
    if (t->loss_tokens) {
        double l = t->loss_sum / (double)t->loss_tokens;
        fprintf(f, "%-16s %.6f\n", "loss", l);
        fprintf(f, "%-16s %.4f\n", "perplexity", exp(l));
        fprintf(f, "%-16s %lld\n", "answer_tokens", (long long)t->loss_tokens);
        if (t->loss_bytes > 0) {
            fprintf(f, "%-16s %.6f\n", "bits_per_byte", t->loss_sum / log(2.0) / (double)t->loss_bytes);
            fprintf(f, "%-16s %lld\n", "answer_bytes", (long long)t->loss_bytes);
        }
    }
    fflush(f);
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
        int64_t nb = 0;
        for (int i = 0; i < n_ans; i++) {
            size_t len = 0;
            mrw_token_bytes(s->vocab, ans[i], &len);
            nb += (int64_t)len;
        }
        tot->loss_sum += sum;
        tot->loss_tokens += n_ans;
        tot->loss_bytes += nb;
        cJSON_AddNumberToObject(o, "loss_sum", sum);
        cJSON_AddNumberToObject(o, "answer_tokens", n_ans);
        cJSON_AddNumberToObject(o, "answer_bytes", (double)nb);
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
    qtype_table qt = {0};
    record rec;
    const char *why;
    mrw_error err = {0};
    int oom = 0, bytes_missing = 0;
    while (!oom && reader_next(&r, &rec, &why)) {
        char w[512];
        where(&r, &rec, w, sizeof w);
        const char *pred = rec.json ? jstr(rec.json, "prediction") : NULL;
        const char *ref = rec.json ? jstr(rec.json, "reference") : NULL;
        if (!why && so.task == TASK_AUTO) {
            const char *tn = jstr(rec.json, "task");
            for (int k = 1; tn && k <= TASK_PERPLEXITY; k++)
                if (!strcmp(tn, k_task_names[k])) so.task = (eval_task)k;
            if (so.task == TASK_AUTO) why = "no \"task\" in the record: give --task";
        }
        const cJSON *ls = rec.json ? cJSON_GetObjectItemCaseSensitive(rec.json, "loss_sum") : NULL;
        const cJSON *lt = rec.json ? cJSON_GetObjectItemCaseSensitive(rec.json, "answer_tokens") : NULL;
        const cJSON *lb = rec.json ? cJSON_GetObjectItemCaseSensitive(rec.json, "answer_bytes") : NULL;
        int has_loss = cJSON_IsNumber(ls) && cJSON_IsNumber(lt) && isfinite(ls->valuedouble) && lt->valuedouble >= 1;
        if (!why && (!pred || !ref) && !has_loss) why = "needs string \"prediction\" and \"reference\" (or a loss)";
        cJSON *sc = cJSON_CreateObject();
        if (!sc) oom = 1, why = "out of memory";
        if (!why && pred && ref &&
            score_record(&so, pred, ref, cJSON_GetObjectItemCaseSensitive(rec.json, "answers"), &t, sc, &err))
            why = err.msg;
        if (why) {
            if (!quiet) fprintf(stderr, "modrwkv %s: %s: %s, skipped\n", cmd, w, why);
            t.skipped++;
        } else {
            t.n++;
            if (has_loss) {
                t.loss_sum += ls->valuedouble;
                t.loss_tokens += (int64_t)lt->valuedouble;
                if (cJSON_IsNumber(lb) && lb->valuedouble >= 0) t.loss_bytes += (int64_t)lb->valuedouble;
                else bytes_missing = 1;
            }
            if (qtypes_add(&qt, jstr(rec.json, "question_type"), sc)) oom = 1;
        }
        cJSON_Delete(sc);
        record_free(&r, &rec);
    }
    reader_close(&r);
    if (oom) return qtypes_free(&qt), tool_fail(cmd, "out of memory");
    if (bytes_missing) t.loss_bytes = 0; /* older files: no bits per byte rather than a wrong one */
    if (t.n == 0) return qtypes_free(&qt), tool_fail(cmd, "%s: no usable records", path);
    char what[600];
    snprintf(what, sizeof what, "scored %s", path);
    print_table(stdout, what, so.task, &t, &qt);
    qtypes_free(&qt);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ one run */

/* What one evaluation produced: suite mode keeps it instead of printing the table. */
typedef struct {
    eval_task task;
    eval_totals t;
    qtype_table qt;
    char *forecast; /* --task forecast: the Markdown table it printed */
} eval_result;

static void result_free(eval_result *r) {
    qtypes_free(&r->qt);
    free(r->forecast);
    memset(r, 0, sizeof *r);
}

/* --task perplexity: the whole file is one text; with max > 0 only its first max bytes (cut back to a UTF-8
 * character boundary). NULL after a message. */
static char *read_text(const char *cmd, const char *path, long max) {
    char *text = NULL;
    size_t len = 0;
    if (tool_read_file(cmd, path, &text, &len)) return NULL;
    if (memchr(text, 0, len)) return free(text), tool_fail(cmd, "%s: contains NUL bytes: not a text file", path), NULL;
    if (max > 0 && len > (size_t)max) {
        len = (size_t)max;
        while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80) len--;
        text[len] = 0;
    }
    if (len == 0) return free(text), tool_fail(cmd, "%s: the file is empty", path), NULL;
    return text;
}

/* One evaluation (the options of `modrwkv eval` without --suite). With res == NULL the table goes to stdout;
 * otherwise it is left in *res (zeroed first; the caller frees it with result_free). Returns the exit status. */
static int eval_run(int argc, char **argv, eval_result *res) {
    const char *cmd = "eval";
    tool_model_opts mo = {.dtype = MRW_DT_AUTO};
    tool_media_opts media = {0};
    const char *data = NULL, *root = NULL, *out = NULL, *score = NULL, *task_s = NULL;
    int max_records = 0, quiet = 0;
    evaluator e = {.cmd = cmd, .style = MRW_CHAT_V1_EVAL, .max_new = 128};
    e.so.normalize = 1;
    if (res) memset(res, 0, sizeof *res);
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strncmp(o, "--data", 6)) data = tool_value(&a, o);
        else if (!strncmp(o, "--task", 6)) task_s = tool_value(&a, o);
        else if (!strncmp(o, "--root", 6)) root = tool_value(&a, o);
        else if (!strncmp(o, "--out", 5)) out = tool_value(&a, o);
        else if (!strncmp(o, "--score", 7)) score = tool_value(&a, o);
        else if (!strncmp(o, "--suite", 7)) tool_fail(cmd, "--suite cannot be nested in a suite row"), a.failed = 1;
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
        if (task == TASK_AUTO)
            return tool_fail(cmd, "--task must be vqa, asr, text, perplexity or forecast (got '%s')", task_s), 2;
    }
    if (res) res->task = task;
    if (task == TASK_FORECAST) {
        /* a trained forecaster on the standard test split of a CSV (or every CSV of a folder), next to the
         * baselines on the same windows */
        if (!mo.model || !data) return tool_fail(cmd, "--task forecast needs -m FORECASTER and --data FILE.csv|DIR"), 2;
        mrw_ts_eval_opts fo = {.max_windows = max_records > 0 ? max_records : 0, .batch = 16, .n_threads = mo.threads,
                               .progress = !quiet};
        mrw_error fe = {0};
        size_t flen = 0;
        FILE *fout = res ? open_memstream(&res->forecast, &flen) : stdout;
        if (!fout) return tool_fail(cmd, "out of memory"), 1;
        mrw_status fst = mrw_ts_eval_forecaster_path(mo.model, data, &fo, fout, &fe);
        if (res && fclose(fout)) return tool_fail(cmd, "out of memory"), 1;
        if (fst) return tool_fail(cmd, "%s", fe.msg), 1;
        return 0;
    }
    e.so.task = task;
    if (score) {
        if (res) return tool_fail(cmd, "--score cannot be a suite row"), 2;
        if (data || mo.model) return tool_fail(cmd, "--score takes a predictions file only (no -m, no --data)"), 2;
        return score_file(cmd, score, e.so, quiet);
    }
    if (!data) return tool_fail(cmd, "give the evaluation file with --data FILE"), 2;
    if (!mo.model) return tool_fail(cmd, "no model given: use -m FILE (see modrwkv eval --help)"), 2;
    if (task == TASK_PERPLEXITY && e.no_loss) return tool_fail(cmd, "--task perplexity is the loss: drop --no-loss"), 2;

    record_reader r = {0};
    char *text = NULL; /* --task perplexity */
    if (task == TASK_PERPLEXITY ? !(text = read_text(cmd, data, max_records)) : reader_open(cmd, data, &r) != 0) return 1;
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
    qtype_table qt = {0};
    if (tool_session_open(cmd, &mo, &media, &s)) {
        reader_close(&r);
        free(text);
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
    eval_totals t = {0};
    if (task == TASK_PERPLEXITY) {
        /* one text, scored from its second token on (as `modrwkv perplexity --no-bos`) */
        sample sm = {.reference = text, .text_only = 1};
        cJSON *ro = cJSON_CreateObject();
        if (!ro) {
            tool_fail(cmd, "out of memory");
            goto done;
        }
        cJSON_AddStringToObject(ro, "task", k_task_names[task]);
        cJSON_AddStringToObject(ro, "source", data);
        int bad = eval_sample(&e, &sm, root, &t, ro, &err);
        if (!bad) out_line(&of, ro);
        cJSON_Delete(ro);
        if (bad) {
            tool_fail(cmd, "%s: %s", data, err.msg);
            goto done;
        }
        t.n = 1;
    } else {
        long total = r.is_array ? cJSON_GetArraySize(r.array) : 0;
        if (!r.is_array)
            for (size_t i = r.pos; i < r.len; i++) total += r.text[i] == '\n';
        if (!r.is_array && r.len && r.text[r.len - 1] != '\n') total++;
        if (max_records && total > max_records) total = max_records;
        tool_progress prog;
        tool_progress_start(&prog, "eval", total);
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
                const char *qtype = jstr(rec.json, "question_type");
                if (qtype) cJSON_AddStringToObject(ro, "question_type", qtype);
                eval_totals before = t;
                if (eval_sample(&e, &sm, root, &t, ro, &err)) {
                    t = before; /* nothing of a failed record counts */
                    why = err.msg;
                } else if (qtypes_add(&qt, qtype, ro)) {
                    tool_fail(cmd, "out of memory");
                    cJSON_Delete(ro);
                    free(sm.question);
                    record_free(&r, &rec);
                    goto done;
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
    }
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
    if (res) {
        res->task = e.so.task;
        res->t = t;
        res->qt = qt;
        memset(&qt, 0, sizeof qt);
    } else {
        char what[1024];
        snprintf(what, sizeof what, "%s on %s", mo.model, data);
        print_table(stdout, what, e.so.task, &t, &qt);
    }
    rc = 0;
done:
    if (of.open) mrw_afile_abort(&of.f);
    qtypes_free(&qt);
    free(e.logits);
    free(e.last);
    free(e.chunk_logits);
    mrw_state_free(e.st);
    mrw_state_free(e.st2);
    mrw_sampler_free(e.smp);
    tool_session_close(&s);
    reader_close(&r);
    free(text);
    free(root_buf);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- suite mode */

/* A Markdown table cell: '|' escaped, line breaks as spaces. */
static int cell(mrw_sbuf *b, const char *s) {
    int bad = mrw_sbuf_add(b, " ", 1);
    for (; s && *s && !bad; s++) {
        if (*s == '|') bad = mrw_sbuf_add(b, "\\|", 2);
        else if (*s == '\n' || *s == '\r') bad = mrw_sbuf_add(b, " ", 1);
        else bad = mrw_sbuf_add(b, s, 1);
    }
    return bad || mrw_sbuf_add(b, " |", 2);
}

static int sbuf_printf(mrw_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sbuf_printf(mrw_sbuf *b, const char *fmt, ...) {
    char *p = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    int bad = mrw_sbuf_add(b, p, (size_t)n);
    free(p);
    return bad;
}

/* One table row; NULL cells are empty. */
static int table_row(mrw_sbuf *b, const char *const c[8]) {
    int bad = mrw_sbuf_add(b, "|", 1);
    for (int i = 0; i < 8 && !bad; i++) bad = cell(b, c[i] ? c[i] : "");
    return bad || mrw_sbuf_add(b, "\n", 1);
}

/* The chance level of a row ("chance": number or text), or of one question type ("chance_by_type": {type:
 * number or text}). */
static void chance_text(const cJSON *v, char *out, size_t cap) {
    out[0] = 0;
    if (cJSON_IsNumber(v)) snprintf(out, cap, "%.4g", v->valuedouble);
    else if (cJSON_IsString(v)) snprintf(out, cap, "%s", v->valuestring);
}

/* The metric cell of a finished row. */
static void metric_text(const eval_result *r, char *out, size_t cap) {
    const eval_totals *t = &r->t;
    size_t k = 0;
    out[0] = 0;
#define PUT(...) (k += (size_t)snprintf(out + k, k < cap ? cap - k : 0, __VA_ARGS__), k = k < cap ? k : cap - 1)
    if (r->task == TASK_FORECAST) {
        PUT("MSE/MAE: the table below");
        return;
    }
    if (t->n_exact) PUT("exact %.4f (%ld/%ld)", (double)t->exact / (double)t->n_exact, t->exact, t->n_exact);
    if (t->n_vqa) PUT("%sVQA acc %.4f", k ? ", " : "", t->vqa_acc / (double)t->n_vqa);
    if (t->n_asr) {
        PUT("%sWER %.4f (%lld/%lld)", k ? ", " : "", t->wer_n ? (double)t->wer_e / (double)t->wer_n : 0.0,
            (long long)t->wer_e, (long long)t->wer_n);
        PUT(", CER %.4f", t->cer_n ? (double)t->cer_e / (double)t->cer_n : 0.0);
    }
    if (t->loss_tokens) {
        double l = t->loss_sum / (double)t->loss_tokens;
        int lm_only = !t->n_exact && !t->n_asr;
        if (lm_only) PUT("%.4f nats/token, ppl %.3f", l, exp(l));
        else PUT("%sanswer ppl %.3f", k ? ", " : "", exp(l));
        if (lm_only && t->loss_bytes > 0) PUT(", %.4f bits/byte", t->loss_sum / log(2.0) / (double)t->loss_bytes);
    }
#undef PUT
}

/* A path a row needs exists (file or folder). */
static int path_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Runs every row of a suite file and prints one Markdown table (stdout, and --out atomically). Rows whose
 * model or data is missing say so and name their recipe; a failing row is reported and the others still
 * run. Exit status 0 when no row failed (missing rows are not failures), 1 otherwise, 2 for bad options. */
static int suite_run(int argc, char **argv) {
    const char *cmd = "eval";
    const char *suite = NULL, *out = NULL, *threads = NULL, *only = NULL;
    int quiet = 0, n_threads = 0;
    char threads_buf[16];
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strncmp(o, "--suite", 7)) suite = tool_value(&a, o);
        else if (!strncmp(o, "--out", 5)) out = tool_value(&a, o);
        else if (!strncmp(o, "--only", 6)) only = tool_value(&a, o);
        else if (!strcmp(o, "-t") || !strncmp(o, "--threads", 9)) {
            if (tool_int(&a, o, 1, 256, &n_threads)) {
                snprintf(threads_buf, sizeof threads_buf, "%d", n_threads);
                threads = threads_buf;
            }
        } else if (!strcmp(o, "-q") || !strcmp(o, "--quiet")) quiet = 1;
        else {
            tool_fail(cmd, "%s: with --suite, only --out, --only, -t and -q apply (each row has its own options)", o);
            a.failed = 1;
        }
    }
    if (a.failed) return 2;
    record_reader r;
    if (reader_open(cmd, suite, &r)) return 1;
    mrw_sbuf tb = {0}, fb = {0}; /* the table, the forecast tables after it */
    int bad = 0, n_rows = 0, n_ok = 0, n_missing = 0, n_failed = 0;
    static const char *const head[8] = {"name", "task", "model", "data", "metric", "n", "chance", "time (s)"};
    bad = table_row(&tb, head) || mrw_sbuf_add(&tb, "|---|---|---|---|---|---|---|---|\n", 34);
    record rec;
    const char *why;
    while (!bad && reader_next(&r, &rec, &why)) {
        char w[512], rowname[64];
        where(&r, &rec, w, sizeof w);
        snprintf(rowname, sizeof rowname, "row %ld", rec.index + 1);
        const cJSON *j = rec.json;
        const char *name = why ? NULL : jstr(j, "name");
        const char *task = why ? NULL : jstr(j, "task"), *model = why ? NULL : jstr(j, "model");
        const char *data = why ? NULL : jstr(j, "data"), *root = why ? NULL : jstr(j, "root");
        const char *recipe = why ? NULL : jstr(j, "recipe");
        const cJSON *maxv = why ? NULL : cJSON_GetObjectItemCaseSensitive(j, "max");
        const cJSON *opts = why ? NULL : cJSON_GetObjectItemCaseSensitive(j, "options");
        if (!name) name = rowname;
        if (only && strcmp(only, name)) {
            record_free(&r, &rec);
            continue;
        }
        n_rows++;
        if (!why && !task) why = "needs a string \"task\"";
        if (!why && !model) why = "needs a string \"model\"";
        if (!why && !data) why = "needs a string \"data\"";
        if (!why && maxv && !(cJSON_IsNumber(maxv) && maxv->valuedouble >= 1 && maxv->valuedouble <= 1 << 30))
            why = "\"max\" must be a number from 1";
        if (!why && opts && !cJSON_IsArray(opts)) why = "\"options\" must be an array of strings";
        /* argv: eval -m MODEL --data DATA --task TASK [--root R] [--max N] [-t N] [-q] OPTIONS... */
        int n_opts = opts ? cJSON_GetArraySize(opts) : 0;
        char **av = why ? NULL : calloc((size_t)n_opts + 16, sizeof *av);
        char maxs[32];
        int ac = 0;
        if (!why && !av) why = "out of memory";
        if (!why) {
            av[ac++] = (char *)"eval";
            av[ac++] = (char *)"-m", av[ac++] = (char *)model;
            av[ac++] = (char *)"--data", av[ac++] = (char *)data;
            av[ac++] = (char *)"--task", av[ac++] = (char *)task;
            if (root) av[ac++] = (char *)"--root", av[ac++] = (char *)root;
            if (maxv) {
                snprintf(maxs, sizeof maxs, "%d", (int)maxv->valuedouble);
                av[ac++] = (char *)"--max", av[ac++] = maxs;
            }
            if (threads) av[ac++] = (char *)"-t", av[ac++] = (char *)threads;
            if (quiet) av[ac++] = (char *)"-q";
            const cJSON *e;
            cJSON_ArrayForEach(e, opts) {
                if (!cJSON_IsString(e)) {
                    why = "\"options\" must be an array of strings";
                    break;
                }
                const char *v = e->valuestring;
                if (!strcmp(v, "-h") || !strcmp(v, "--help") || !strncmp(v, "--suite", 7) || !strncmp(v, "--score", 7)) {
                    why = "\"options\" may not hold --help, --suite or --score";
                    break;
                }
                av[ac++] = (char *)v;
            }
        }
        char metric[1200] = "", nbuf[48] = "", chance[64] = "", tbuf[32] = "";
        if (why) {
            snprintf(metric, sizeof metric, "invalid row (%s: %s)", w, why);
            if (!quiet) fprintf(stderr, "modrwkv eval: %s: %s\n", w, why);
            n_failed++;
        } else if (!path_exists(model) || !path_exists(data)) {
            const char *miss = !path_exists(model) ? model : data;
            if (recipe) snprintf(metric, sizeof metric, "missing: %s (run %s)", miss, recipe);
            else snprintf(metric, sizeof metric, "missing: %s", miss);
            if (!quiet) fprintf(stderr, "modrwkv eval: %s: %s\n", name, metric);
            n_missing++;
        } else {
            if (!quiet) fprintf(stderr, "modrwkv eval: suite row '%s': %s %s on %s\n", name, task, model, data);
            eval_result res;
            double t0 = tool_now();
            int rc = eval_run(ac, av, &res);
            snprintf(tbuf, sizeof tbuf, "%.1f", tool_now() - t0);
            chance_text(cJSON_GetObjectItemCaseSensitive(j, "chance"), chance, sizeof chance);
            if (rc) {
                snprintf(metric, sizeof metric, "failed (exit %d: see the message above)", rc);
                n_failed++;
            } else {
                n_ok++;
                metric_text(&res, metric, sizeof metric);
                if (res.task == TASK_PERPLEXITY) snprintf(nbuf, sizeof nbuf, "%lld tokens", (long long)res.t.loss_tokens);
                else if (res.task != TASK_FORECAST) snprintf(nbuf, sizeof nbuf, "%ld", res.t.n);
                if (res.forecast)
                    bad = sbuf_printf(&fb, "\n%s (forecast, %s on %s):\n\n%s", name, model, data, res.forecast);
            }
            const char *const c[8] = {name, task, model, data, metric, nbuf, chance, tbuf};
            bad = bad || table_row(&tb, c);
            /* accuracy per question type, one row each */
            const cJSON *cbt = cJSON_GetObjectItemCaseSensitive(j, "chance_by_type");
            for (int i = 0; !rc && !bad && i < res.qt.n; i++) {
                const qtype_stat *q = &res.qt.v[i];
                char sub[160], m[128], nn[24], ch[64];
                snprintf(sub, sizeof sub, "%s [%s]", name, q->name);
                snprintf(m, sizeof m, "exact %.4f (%ld/%ld)", (double)q->exact / (double)q->n, q->exact, q->n);
                if (q->n_vqa) snprintf(m + strlen(m), sizeof m - strlen(m), ", VQA acc %.4f", q->vqa_acc / (double)q->n_vqa);
                snprintf(nn, sizeof nn, "%ld", q->n);
                chance_text(cJSON_IsObject(cbt) ? cJSON_GetObjectItemCaseSensitive(cbt, q->name) : NULL, ch, sizeof ch);
                const char *const qc[8] = {sub, task, NULL, NULL, m, nn, ch, NULL};
                bad = table_row(&tb, qc);
            }
            result_free(&res);
            free(av);
            record_free(&r, &rec);
            continue;
        }
        const char *const c[8] = {name, task, model, data, metric, NULL, NULL, NULL};
        bad = table_row(&tb, c);
        free(av);
        record_free(&r, &rec);
    }
    reader_close(&r);
    if (!bad && fb.n) bad = mrw_sbuf_add(&tb, fb.p, fb.n);
    free(fb.p);
    if (bad) {
        free(tb.p);
        return tool_fail(cmd, "out of memory"), 1;
    }
    if (only && n_rows == 0) {
        free(tb.p);
        return tool_fail(cmd, "%s: no row named '%s'", suite, only), 1;
    }
    fwrite(tb.p, 1, tb.n, stdout);
    fflush(stdout);
    int rc = n_failed ? 1 : 0;
    if (out) {
        mrw_afile f;
        mrw_error err = {0};
        if (mrw_afile_open(&f, out, &err)) rc = tool_fail(cmd, "%s: %s", out, err.msg);
        else {
            mrw_afile_write(&f, tb.p, tb.n);
            if (mrw_afile_commit(&f, &err)) rc = tool_fail(cmd, "%s: %s", out, err.msg);
        }
    }
    free(tb.p);
    if (!quiet)
        fprintf(stderr, "modrwkv eval: suite %s: %d row%s: %d evaluated, %d missing, %d failed\n", suite, n_rows,
                n_rows == 1 ? "" : "s", n_ok, n_missing, n_failed);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ main */

int cmd_eval(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) break;
        if (!strncmp(argv[i], "--suite", 7)) return suite_run(argc, argv);
    }
    return eval_run(argc, argv, NULL);
}
