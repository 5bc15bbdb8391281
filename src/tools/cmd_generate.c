/* modrwkv generate: prompt -> streamed text.  modrwkv chat: the ModRWKV chat template, one-shot or
 * interactive, keeping the RNN state across turns. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/strutil.h"
#include "tools/common.h"
#include "tools/tools.h"
#ifdef MRW_CUDA
#include "kernels/cuda/rwkv7_decode_gpu.h"
#include "models/modrwkv_hooks.h"
#endif

typedef struct {
    tool_model_opts m;
    mrw_sampler_params sp;
    int max_tokens, ignore_stop, raw_bytes, echo, quiet;
    const char *state_in, *state_out;
    int device; /* --device cuda: images encoded (session.c), prompt read and tokens generated on the GPU */
    void *gpu;  /* the mrw_decode_gpu, made on first use */
} gen_opts;

#define SAMPLING_HELP                                                                                         \
    "  -n, --max-tokens N   tokens to generate (default 256)\n"                                               \
    "      --temp T         temperature; 0 = greedy (default 0)\n"                                            \
    "      --top-p P        nucleus sampling (default 1 = off)\n"                                             \
    "      --top-k K        keep the K most likely tokens (default 0 = off)\n"                                \
    "      --repeat-penalty R  divide positive / multiply negative logits of seen tokens (default 1 = off)\n" \
    "      --presence-penalty A   subtract A from the logits of seen tokens (default 0)\n"                     \
    "      --frequency-penalty B  subtract B per occurrence (default 0)\n"                                    \
    "      --seed S         random seed (default 42)\n"                                                       \
    "      --state-in FILE  start from a saved RNN state instead of zero\n"                                   \
    "      --state-out FILE save the final RNN state (covering everything read and written)\n"                \
    "      --raw-bytes      accept input that is not valid UTF-8 (tokenized byte by byte)\n"                  \
    "  -q, --quiet          no statistics on stderr\n"                                                   \
    "      --device D       cpu (default) or cuda (needs make CUDA=1): the language model on the GPU, bf16\n"  \
    "                       weights, fp32 activations and state; the prompt (text tokens and feature rows)\n"  \
    "                       is read one position per GPU step, then every new token is one GPU step. The\n"  \
    "                       vision, Whisper and WavLM encoders run on the GPU in bf16; image decoding,\n"  \
    "                       log-mel, resampling, the adapter (and Conv1D compression) and sampling stay\n"  \
    "                       on the CPU\n"

static int sampling_option(tool_args *a, const char *o, gen_opts *g) {
    if (!strcmp(o, "-n") || !strncmp(o, "--max-tokens", 12)) tool_int(a, o, 0, 1 << 30, &g->max_tokens);
    else if (!strncmp(o, "--temp", 6)) tool_float(a, o, 0, 100, &g->sp.temperature);
    else if (!strncmp(o, "--top-p", 7)) tool_float(a, o, 0, 1, &g->sp.top_p);
    else if (!strncmp(o, "--top-k", 7)) tool_int(a, o, 0, 1 << 30, &g->sp.top_k);
    else if (!strncmp(o, "--repeat-penalty", 16)) tool_float(a, o, 0.01, 100, &g->sp.repetition_penalty);
    else if (!strncmp(o, "--presence-penalty", 18)) tool_float(a, o, -100, 100, &g->sp.presence_penalty);
    else if (!strncmp(o, "--frequency-penalty", 19)) tool_float(a, o, -100, 100, &g->sp.frequency_penalty);
    else if (!strncmp(o, "--seed", 6)) {
        int s;
        if (tool_int(a, o, 0, 2147483647, &s)) g->sp.seed = (uint64_t)s;
    } else if (!strncmp(o, "--state-in", 10)) g->state_in = tool_value(a, o);
    else if (!strncmp(o, "--state-out", 11)) g->state_out = tool_value(a, o);
    else if (!strcmp(o, "--raw-bytes")) g->raw_bytes = 1;
    else if (!strcmp(o, "-q") || !strcmp(o, "--quiet")) g->quiet = 1;
    else if (!strncmp(o, "--device", 8) && (o[8] == 0 || o[8] == '=')) {
        const char *v = tool_value(a, o);
        if (v && strcmp(v, "cpu") && strcmp(v, "cuda")) {
            tool_fail(a->cmd, "--device must be cpu or cuda, not '%s'", v);
            a->failed = 1;
        }
        g->device = v && !strcmp(v, "cuda");
        g->m.device = g->device; /* session.c: the image encoder on the GPU */
#ifndef MRW_CUDA
        if (g->device) {
            tool_fail(a->cmd, "--device cuda: this modrwkv was built without CUDA (build with make CUDA=1)");
            a->failed = 1;
        }
#endif
    } else return tool_model_option(a, o, &g->m);
    return 1;
}

static void gen_defaults(gen_opts *g) {
    memset(g, 0, sizeof *g);
    g->m.dtype = MRW_DT_AUTO;
    g->sp = mrw_sampler_params_default();
    g->max_tokens = 256;
}

typedef struct {
    tool_printer pr;
    double t_first;
} gen_cb_data;

static int on_token(void *user, int32_t tok) {
    gen_cb_data *d = user;
    if (d->t_first == 0) d->t_first = tool_now();
    tool_printer_token(&d->pr, tok);
    return 0;
}

#ifdef MRW_CUDA
static mrw_status gpu_get(gen_opts *g, const tool_session *s, mrw_error *err) {
    if (g->gpu) return MRW_OK;
    mrw_decode_gpu *dg = NULL;
    mrw_status r = mrw_decode_gpu_from_model(s->model, 1, &dg, err);
    if (!r) g->gpu = dg;
    return r;
}
#endif

/* tool_session_eval, on the GPU with --device cuda: the state goes up, every position of the prompt is one GPU
 * step (a text token through mrw_decode_gpu_step, a spliced feature row through _step_embed; the same splice as
 * the CPU's mrw_mm_eval), and the state comes back down. Only MRW_LOGITS_LAST / _NONE are asked for here. */
static int gen_eval(const char *cmd, gen_opts *g, tool_session *s, mrw_state *st, const int32_t *ids, int n,
                    int with_media, mrw_logits_mode mode, float *logits) {
#ifdef MRW_CUDA
    if (g->device) {
        mrw_error err = {0};
        float *rows = NULL;
        int32_t *src = NULL;
        int total = n;
        mrw_status r = gpu_get(g, s, &err);
        if (!r && s->mm && with_media) r = mrw_mm_splice(s->mm, s->feats, s->n_feats, ids, n, &rows, &src, &total, &err);
        if (!r && total < 1) r = mrw_err(&err, MRW_E_ARG, "nothing to evaluate");
        mrw_decode_gpu *dg = g->gpu;
        size_t ns = 0;
        float *sd = r ? NULL : mrw_state_data(st, &ns);
        if (!r) r = mrw_decode_gpu_set_state(dg, 0, sd, ns, &err);
        const size_t C = (size_t)mrw_model_get_info(s->model).n_embd;
        for (int i = 0; !r && i < total; i++) {
            float *lg = i == total - 1 && mode != MRW_LOGITS_NONE ? logits : NULL;
            int32_t t = src ? src[i] : ids[i];
            r = t >= 0 || !rows ? mrw_decode_gpu_step(dg, &t, 1, lg, &err) /* (a negative id is refused there) */
                                : mrw_decode_gpu_step_embed(dg, rows + i * C, 1, lg, &err);
        }
        if (!r) r = mrw_decode_gpu_get_state(dg, 0, sd, ns, &err);
        free(rows);
        free(src);
        return r ? tool_fail(cmd, "%s", err.msg) : 0;
    }
#else
    (void)g;
#endif
    return tool_session_eval(cmd, s, st, ids, n, with_media, mode, logits);
}

/* mrw_generate_continue, on the GPU with --device cuda: the state goes up, each sampled token is one GPU step (the
 * same loop: stop tokens, max_tokens, feed_last), and the state comes back down, so --state-out and the next chat
 * turn see it. */
static mrw_status gen_continue(gen_opts *g, tool_session *s, mrw_state *st, mrw_sampler *smp, float *logits,
                               const mrw_generate_params *gp, gen_cb_data *d, int *n_gen, mrw_error *err) {
#ifdef MRW_CUDA
    if (g->device) {
        mrw_status r0 = gpu_get(g, s, err);
        if (r0) return r0;
        mrw_decode_gpu *dg = g->gpu;
        size_t n;
        float *sd = mrw_state_data(st, &n);
        mrw_status r = mrw_decode_gpu_set_state(dg, 0, sd, n, err);
        const int max = gp->max_tokens > 0 ? gp->max_tokens : 256;
        int k = 0;
        while (!r && k < max) {
            int32_t tok = mrw_sample(smp, logits, 0);
            mrw_sampler_accept(smp, tok);
            k++;
            int stop = 0;
            for (int i = 0; i < gp->n_stop; i++) stop |= tok == gp->stop_tokens[i];
            if (on_token(d, tok)) stop = 1;
            if (stop || k == max) {
                if (gp->feed_last) r = mrw_decode_gpu_step(dg, &tok, 1, NULL, err);
                break;
            }
            r = mrw_decode_gpu_step(dg, &tok, 1, logits, err);
        }
        *n_gen = k;
        if (!r) r = mrw_decode_gpu_get_state(dg, 0, sd, n, err);
        return r;
    }
#endif
    return mrw_generate_continue(s->ctx, st, smp, logits, gp, on_token, d, n_gen, err);
}

static void gen_free_gpu(gen_opts *g) {
#ifdef MRW_CUDA
    mrw_decode_gpu_free(g->gpu);
#endif
    g->gpu = NULL;
}

static int load_state(const char *cmd, mrw_state *st, const char *path) {
    mrw_error err = {0};
    if (path && mrw_state_load(st, path, &err)) return tool_fail(cmd, "%s", err.msg);
    return 0;
}

static int save_state(const char *cmd, const mrw_state *st, const char *path) {
    mrw_error err = {0};
    if (path && mrw_state_save(st, path, &err)) return tool_fail(cmd, "%s", err.msg);
    return 0;
}

/* ------------------------------------------------------------------------------------------- generate */

static const char *k_generate_usage =
    "usage: modrwkv generate -m MODEL (-p TEXT | -f FILE) [options]\n"
    "Continues a text prompt and streams the result to stdout. Greedy by default; stops at the turn end \\x17\n"
    "(token 24; 23 in a byte vocabulary) unless --ignore-stop; token 0 is never generated. With a ModRWKV\n"
    "model and --image/--audio the features are spliced in, in command-line order (v1: before the prompt; v2:\n"
    "at each \"<image>\" / \"<audio>\" marker of the prompt, or in front).\n\n"
    "  -p, --prompt TEXT    the prompt\n"
    "  -f, --file FILE      read the prompt from FILE ('-' = stdin)\n"
    "      --echo           print the prompt before the continuation\n"
    "      --ignore-stop    do not stop at the turn end (\\x17: token 24, or 23 in a byte vocabulary)\n" TOOL_MODEL_HELP SAMPLING_HELP TOOL_MEDIA_HELP;

/* A v2 image block: <|vision_start|> + <|image_pad|> x n + <|vision_end|> + "\n". */
static int sb_image_block(mrw_sbuf *b, int n) {
    int bad = mrw_sbuf_add(b, "<|vision_start|>", 16);
    for (int i = 0; i < n && !bad; i++) bad = mrw_sbuf_add(b, "<|image_pad|>", 13);
    return bad || mrw_sbuf_add(b, "<|vision_end|>\n", 15);
}

/* For placeholder (v2) models: the prompt with each "<image>" / "<audio>" marker replaced by the block of the
 * next medium in command-line order (which must be of that kind); media without a marker go in front. NULL
 * with *why set on a marker/medium mismatch, or when out of memory. */
static char *expand_images(const tool_session *s, const char *text, size_t len, size_t *out_len, const char **why) {
    mrw_sbuf b = {0};
    int used = 0, bad = 0;
    *why = "out of memory";
    for (const char *q = text; q < text + len && !bad;) {
        const char *mi = used < s->n_feats ? memmem(q, (size_t)(text + len - q), "<image>", 7) : NULL;
        const char *ma = used < s->n_feats ? memmem(q, (size_t)(text + len - q), "<audio>", 7) : NULL;
        const char *m = mi && (!ma || mi < ma) ? mi : ma;
        if (!m) {
            bad = mrw_sbuf_add(&b, q, (size_t)(text + len - q));
            break;
        }
        if ((m == ma) != (s->feat_audio[used] != 0)) {
            *why = s->feat_audio[used] ? "the prompt's next marker is <image> but the next medium on the command line "
                                         "is a recording (--audio): markers take the media in command-line order"
                                       : "the prompt's next marker is <audio> but the next medium on the command line "
                                         "is an image (--image): markers take the media in command-line order";
            free(b.p);
            return NULL;
        }
        bad = mrw_sbuf_add(&b, q, (size_t)(m - q)) || sb_image_block(&b, s->feats[used++].n);
        q = m + 7;
    }
    if (!bad && used < s->n_feats) {
        mrw_sbuf front = {0};
        for (int i = used; i < s->n_feats && !bad; i++) bad = sb_image_block(&front, s->feats[i].n);
        if (!bad) bad = mrw_sbuf_add(&front, b.p ? b.p : "", b.n);
        free(b.p);
        b = front;
    }
    if (bad) {
        free(b.p);
        return NULL;
    }
    *out_len = b.n;
    return b.p ? b.p : strdup("");
}

int cmd_generate(int argc, char **argv) {
    const char *cmd = "generate";
    gen_opts g;
    gen_defaults(&g);
    tool_media_opts media = {0};
    const char *prompt = NULL, *file = NULL;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_generate_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strcmp(o, "-p") || !strncmp(o, "--prompt", 8)) prompt = tool_value(&a, o);
        else if (!strcmp(o, "-f") || !strncmp(o, "--file", 6)) file = tool_value(&a, o);
        else if (!strcmp(o, "--echo")) g.echo = 1;
        else if (!strcmp(o, "--ignore-stop")) g.ignore_stop = 1;
        else if (!tool_media_option(&a, o, &media) && !sampling_option(&a, o, &g)) tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    if (!prompt && !file) return tool_fail(cmd, "give a prompt with -p TEXT or -f FILE"), 2;
    if (prompt && file) return tool_fail(cmd, "give either -p or -f, not both"), 2;
    char *text = NULL, *expanded = NULL;
    size_t len = 0;
    if (file) {
        if (tool_read_file(cmd, file, &text, &len)) return 1;
    } else {
        len = strlen(prompt);
    }
    int rc = 1;
    tool_session s;
    mrw_state *st = NULL;
    mrw_sampler *smp = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    int n_ids = 0;
    const double t_start = tool_now();
    if (tool_session_open(cmd, &g.m, &media, &s)) {
        free(text);
        return 1;
    }
    const double t_opened = tool_now();
    const char *src = file ? text : prompt;
    if (s.special && s.n_feats) {
        const char *why = NULL;
        if (!(expanded = expand_images(&s, src, len, &len, &why))) { tool_fail(cmd, "%s", why); goto out; }
        src = expanded;
    }
    if (tool_tokenize_ex(cmd, s.vocab, src, len, g.raw_bytes, s.special, &ids, &n_ids)) goto out;
    const int V = mrw_model_get_info(s.model).n_vocab;
    st = mrw_state_new(s.model);
    smp = mrw_sampler_new(&g.sp, V);
    logits = malloc((size_t)V * sizeof *logits);
    if (!st || !smp || !logits) {
        tool_fail(cmd, "out of memory");
        goto out;
    }
    if (load_state(cmd, st, g.state_in)) goto out;
    gen_cb_data d = {0};
    tool_printer_init(&d.pr, s.vocab, stdout);
    if (g.echo) fwrite(file ? text : prompt, 1, file ? len : strlen(prompt), stdout);
    mrw_generate_params gp = mrw_generate_params_default();
    gp.max_tokens = g.max_tokens;
    const int32_t turn_end = mrw_vocab_turn_end(s.vocab); /* 24 in the World vocabulary, 23 in bytes */
    gp.stop_tokens = &turn_end;
    gp.n_stop = turn_end >= 0 && !g.ignore_stop;
    gp.feed_last = g.state_out != NULL;
    mrw_error err = {0};
    int n_gen = 0;
    double t0 = tool_now();
    for (int i = 0; i < n_ids; i++) mrw_sampler_accept(smp, ids[i]);
    if (gen_eval(cmd, &g, &s, st, ids, n_ids, 1, g.max_tokens ? MRW_LOGITS_LAST : MRW_LOGITS_NONE, logits)) goto out;
    if (g.max_tokens && gen_continue(&g, &s, st, smp, logits, &gp, &d, &n_gen, &err)) {
        tool_fail(cmd, "%s", err.msg);
        goto out;
    }
    double t1 = tool_now();
    tool_printer_flush(&d.pr);
    if (n_gen) fputc('\n', stdout);
    fflush(stdout);
    if (!g.quiet) {
        double tp = (d.t_first ? d.t_first : t1) - t0, td = d.t_first ? t1 - d.t_first : 0;
        fprintf(stderr, "[prompt %d tokens in %.2f s (%.1f tok/s); generated %d tokens in %.2f s (%.1f tok/s)]\n", n_ids,
                tp, tp > 0 ? n_ids / tp : 0, n_gen, td, n_gen > 1 && td > 0 ? (n_gen - 1) / td : 0);
        if (d.t_first)
            fprintf(stderr, "[first token %.2f s after the start: load and encode %.2f s, prompt %.2f s]\n",
                    d.t_first - t_start, t_opened - t_start, tp);
    }
    if (save_state(cmd, st, g.state_out)) goto out;
    rc = 0;
out:
    free(ids);
    free(text);
    free(expanded);
    free(logits);
    mrw_sampler_free(smp);
    mrw_state_free(st);
    gen_free_gpu(&g);
    tool_session_close(&s);
    return rc;
}

/* ----------------------------------------------------------------------------------------------- chat */

static const char *k_chat_usage =
    "usage: modrwkv chat -m MODEL [options] [QUESTION]\n"
    "Chats with the ModRWKV template: each turn is \"\\x16User: {text}\\x17\\x16Assistant:\" and the answer runs\n"
    "to the turn end \\x17 (token 24; 23 in a byte vocabulary). With QUESTION, answers it and exits (one-shot, for scripts). Without, reads one user\n"
    "turn per line from stdin; the RNN state is kept across turns. Lines starting with '/': /reset clears\n"
    "the conversation, /quit ends it.\n"
    "With --image/--audio (ModRWKV models) the media is encoded once and goes with the first turn, in\n"
    "command-line order; --audio alone without a question transcribes (the ASR prompt \"\\x16Assistant:\" right\n"
    "after the features); --image with --audio and no question answers the spoken question: one user turn\n"
    "with the features and an empty text (a model with both encoders: docs/MULTIMODAL.md).\n\n"
    "      --system TEXT    a system turn \"\\x16System: {TEXT}\\x17\" before the first user turn\n"
    "      --template T     'modrwkv' (\\x16User: ..\\x17\\x16Assistant:, default) or 'card' (..\\x17Assistant:)\n"
    TOOL_MODEL_HELP SAMPLING_HELP TOOL_MEDIA_HELP;

typedef struct {
    tool_session *s;
    mrw_state *st;
    mrw_sampler *smp;
    gen_opts *g;
    mrw_chat_style style;
    int media_pending; /* the features still have to go with the next turn */
    float *logits;
    double t_start, t_opened; /* command start, model loaded and media encoded: for the first answer's timing */
    int answered;
} chat_session;

/* Text of a turn: the template around the question; for placeholder (v2) models the images' blocks open the
 * first user turn. question == NULL: the ASR prompt only. */
static char *turn_text(chat_session *c, const char *question, size_t *len) {
    mrw_sbuf b = {0};
    int bad = 0;
    if (!question) { /* ASR: the features (v2: their blocks), then the generation prompt */
        for (int i = 0; c->media_pending && c->s->special && i < c->s->n_feats && !bad; i++)
            bad = sb_image_block(&b, c->s->feats[i].n);
        size_t n = mrw_chat_generation_prompt(c->style, NULL, 0);
        char *t = bad ? NULL : malloc(b.n + n + 1);
        if (t) {
            if (b.n) memcpy(t, b.p, b.n);
            mrw_chat_generation_prompt(c->style, t + b.n, n + 1);
        }
        *len = b.n + n;
        free(b.p);
        return t;
    }
    mrw_sbuf q = {0};
    if (c->media_pending && c->s->special)
        for (int i = 0; i < c->s->n_feats && !bad; i++) bad = sb_image_block(&q, c->s->feats[i].n);
    if (!bad) bad = mrw_sbuf_add(&q, question, strlen(question));
    if (!bad) {
        mrw_chat_msg msg = {MRW_ROLE_USER, q.p, q.n};
        size_t n = mrw_chat_prompt(c->style, &msg, 1, 1, NULL, 0);
        b.p = malloc(n + 1);
        if (b.p) {
            mrw_chat_prompt(c->style, &msg, 1, 1, b.p, n + 1);
            b.n = n;
        }
    }
    free(q.p);
    *len = b.n;
    return b.p;
}

static int chat_turn(const char *cmd, chat_session *c, const char *question) {
    size_t len = 0;
    char *text = turn_text(c, question, &len);
    if (!text) return tool_fail(cmd, "out of memory");
    int32_t *ids = NULL;
    int n = 0;
    int rc = tool_tokenize_ex(cmd, c->s->vocab, text, len, c->g->raw_bytes, c->s->special, &ids, &n);
    free(text);
    if (rc) return rc;
    gen_cb_data d = {0};
    tool_printer_init(&d.pr, c->s->vocab, stdout);
    d.pr.skip_leading_space = 1;
    const int32_t turn_end = mrw_vocab_turn_end(c->s->vocab); /* 24 in the World vocabulary, 23 in bytes */
    d.pr.hide_token = turn_end;
    mrw_generate_params gp = mrw_generate_params_default();
    gp.stop_tokens = &turn_end;
    gp.n_stop = turn_end >= 0;
    gp.max_tokens = c->g->max_tokens ? c->g->max_tokens : 256;
    gp.feed_last = 1; /* the next turn continues after the answer's \x17 */
    mrw_error err = {0};
    int n_gen = 0;
    double t0 = tool_now();
    for (int i = 0; i < n; i++) mrw_sampler_accept(c->smp, ids[i]);
    rc = gen_eval(cmd, c->g, c->s, c->st, ids, n, c->media_pending, MRW_LOGITS_LAST, c->logits);
    free(ids);
    if (rc) return rc;
    c->media_pending = 0;
    if (gen_continue(c->g, c->s, c->st, c->smp, c->logits, &gp, &d, &n_gen, &err))
        return tool_fail(cmd, "%s", err.msg);
    tool_printer_flush(&d.pr);
    fputc('\n', stdout);
    fflush(stdout);
    if (!c->g->quiet) {
        double t1 = tool_now(), tp = (d.t_first ? d.t_first : t1) - t0, td = d.t_first ? t1 - d.t_first : 0;
        fprintf(stderr, "[prompt %d tokens in %.2f s; answer %d tokens at %.1f tok/s]\n", n, tp, n_gen,
                n_gen > 1 && td > 0 ? (n_gen - 1) / td : 0);
        if (!c->answered && d.t_first)
            fprintf(stderr, "[first token %.2f s after the start: load and encode %.2f s, prompt %.2f s]\n",
                    d.t_first - c->t_start, c->t_opened - c->t_start, tp);
    }
    c->answered = 1;
    return 0;
}

static int chat_system(const char *cmd, chat_session *c, const char *system) {
    mrw_chat_msg msg = {MRW_ROLE_SYSTEM, system, strlen(system)};
    size_t n = mrw_chat_prompt(c->style, &msg, 1, 0, NULL, 0);
    char *buf = malloc(n + 1);
    if (!buf) return tool_fail(cmd, "out of memory");
    mrw_chat_prompt(c->style, &msg, 1, 0, buf, n + 1);
    int32_t *ids = NULL;
    int k = 0;
    int rc = tool_tokenize(cmd, c->s->vocab, buf, n, c->g->raw_bytes, &ids, &k);
    free(buf);
    if (!rc) rc = gen_eval(cmd, c->g, c->s, c->st, ids, k, 0, MRW_LOGITS_NONE, NULL);
    free(ids);
    return rc;
}

int cmd_chat(int argc, char **argv) {
    const char *cmd = "chat";
    gen_opts g;
    gen_defaults(&g);
    tool_media_opts media = {0};
    const char *system = NULL, *question = NULL;
    chat_session c = {.g = &g, .style = MRW_CHAT_V1_EVAL};
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_chat_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strncmp(o, "--system", 8)) system = tool_value(&a, o);
        else if (!strncmp(o, "--template", 10)) {
            const char *t = tool_value(&a, o);
            if (t && !strcmp(t, "card")) c.style = MRW_CHAT_MODEL_CARD;
            else if (t && strcmp(t, "modrwkv")) { tool_fail(cmd, "--template must be 'modrwkv' or 'card'"); return 2; }
        } else if (o[0] != '-' || !strcmp(o, "-")) {
            if (question) { tool_fail(cmd, "give one question (quote it)"); return 2; }
            question = o;
        } else if (!tool_media_option(&a, o, &media) && !sampling_option(&a, o, &g)) tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    tool_session s;
    c.t_start = tool_now();
    if (tool_session_open(cmd, &g.m, &media, &s)) return 1;
    c.t_opened = tool_now();
    c.s = &s;
    c.media_pending = s.n_feats > 0;
    int rc = 1;
    const int V = mrw_model_get_info(s.model).n_vocab;
    c.st = mrw_state_new(s.model);
    c.smp = mrw_sampler_new(&g.sp, V);
    c.logits = malloc((size_t)V * sizeof *c.logits);
    if (!c.st || !c.smp || !c.logits) {
        tool_fail(cmd, "out of memory");
        goto out;
    }
    if (load_state(cmd, c.st, g.state_in)) goto out;
    if (system && chat_system(cmd, &c, system)) goto out;
    if (question) {
        if (!*question) { tool_fail(cmd, "the question is empty"); goto out; }
        if (chat_turn(cmd, &c, question)) goto out;
    } else if (media.audio && !media.n_images) { /* no question: transcribe */
        if (chat_turn(cmd, &c, NULL)) goto out;
    } else if (media.audio) { /* images and a recording, no question: the recording asks it (an empty user text) */
        if (chat_turn(cmd, &c, "")) goto out;
    } else {
        int tty = isatty(0);
        char *line = NULL;
        size_t cap = 0;
        for (;;) {
            if (tty) fputs("> ", stderr);
            ssize_t n = getline(&line, &cap, stdin);
            if (n < 0) break;
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
            if (n == 0) continue;
            if (!strcmp(line, "/quit")) break;
            if (!strcmp(line, "/reset")) {
                mrw_state_reset(c.st);
                c.media_pending = s.n_feats > 0;
                if (system && chat_system(cmd, &c, system)) break;
                continue;
            }
            if (chat_turn(cmd, &c, line) && !tty) { /* a bad turn (e.g. invalid UTF-8) does not end a chat */
                free(line);
                goto out;
            }
        }
        free(line);
    }
    if (save_state(cmd, c.st, g.state_out)) goto out;
    rc = 0;
out:
    free(c.logits);
    mrw_sampler_free(c.smp);
    mrw_state_free(c.st);
    gen_free_gpu(&g);
    tool_session_close(&s);
    return rc;
}
