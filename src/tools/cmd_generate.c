/* modrwkv generate: prompt -> streamed text.  modrwkv chat: the ModRWKV chat template, one-shot or
 * interactive, keeping the RNN state across turns. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/common.h"
#include "tools/tools.h"

typedef struct {
    tool_model_opts m;
    mrw_sampler_params sp;
    int max_tokens, ignore_stop, raw_bytes, echo, quiet;
    const char *state_in, *state_out;
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
    "  -q, --quiet          no statistics on stderr\n"

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
    else return tool_model_option(a, o, &g->m);
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
    "Continues a text prompt and streams the result to stdout. Greedy by default; stops at token 24 (the\n"
    "turn end \\x17) unless --ignore-stop; token 0 is never generated.\n\n"
    "  -p, --prompt TEXT    the prompt\n"
    "  -f, --file FILE      read the prompt from FILE ('-' = stdin)\n"
    "      --echo           print the prompt before the continuation\n"
    "      --ignore-stop    do not stop at token 24\n" TOOL_MODEL_HELP SAMPLING_HELP;

int cmd_generate(int argc, char **argv) {
    const char *cmd = "generate";
    gen_opts g;
    gen_defaults(&g);
    const char *prompt = NULL, *file = NULL;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_generate_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strcmp(o, "-p") || !strncmp(o, "--prompt", 8)) prompt = tool_value(&a, o);
        else if (!strcmp(o, "-f") || !strncmp(o, "--file", 6)) file = tool_value(&a, o);
        else if (!strcmp(o, "--echo")) g.echo = 1;
        else if (!strcmp(o, "--ignore-stop")) g.ignore_stop = 1;
        else if (!sampling_option(&a, o, &g)) tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    if (!prompt && !file) return tool_fail(cmd, "give a prompt with -p TEXT or -f FILE"), 2;
    if (prompt && file) return tool_fail(cmd, "give either -p or -f, not both"), 2;
    char *text = NULL;
    size_t len = 0;
    if (file) {
        if (tool_read_file(cmd, file, &text, &len)) return 1;
    } else {
        len = strlen(prompt);
    }
    int rc = 1;
    mrw_model *model = NULL;
    mrw_context *ctx = NULL;
    mrw_vocab *vocab = NULL;
    mrw_state *st = NULL;
    mrw_sampler *smp = NULL;
    int32_t *ids = NULL;
    int n_ids = 0;
    if (tool_load_model(cmd, &g.m, &model, &ctx) || tool_load_vocab(cmd, g.m.vocab, model, &vocab)) goto out;
    if (tool_tokenize(cmd, vocab, file ? text : prompt, len, g.raw_bytes, &ids, &n_ids)) goto out;
    st = mrw_state_new(model);
    smp = mrw_sampler_new(&g.sp, mrw_model_get_info(model).n_vocab);
    if (!st || !smp) {
        tool_fail(cmd, "out of memory");
        goto out;
    }
    if (load_state(cmd, st, g.state_in)) goto out;
    gen_cb_data d = {0};
    tool_printer_init(&d.pr, vocab, stdout);
    if (g.echo) fwrite(file ? text : prompt, 1, len, stdout);
    mrw_generate_params gp = mrw_generate_params_default();
    gp.max_tokens = g.max_tokens;
    if (g.ignore_stop) gp.n_stop = 0;
    gp.feed_last = g.state_out != NULL;
    mrw_error err = {0};
    int n_gen = 0;
    double t0 = tool_now();
    if (g.max_tokens == 0) { /* only read the prompt (e.g. to save its state) */
        if (mrw_eval_tokens(ctx, st, ids, n_ids, MRW_LOGITS_NONE, NULL, &err)) {
            tool_fail(cmd, "%s", err.msg);
            goto out;
        }
    } else if (mrw_generate(ctx, st, smp, ids, n_ids, &gp, on_token, &d, &n_gen, &err)) {
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
    }
    if (save_state(cmd, st, g.state_out)) goto out;
    rc = 0;
out:
    free(ids);
    free(text);
    mrw_sampler_free(smp);
    mrw_state_free(st);
    mrw_vocab_free(vocab);
    mrw_context_free(ctx);
    mrw_model_free(model);
    return rc;
}

/* ----------------------------------------------------------------------------------------------- chat */

static const char *k_chat_usage =
    "usage: modrwkv chat -m MODEL [options] [QUESTION]\n"
    "Chats with the ModRWKV template: each turn is \"\\x16User: {text}\\x17\\x16Assistant:\" and the answer runs\n"
    "to token 24 (\\x17). With QUESTION, answers it and exits (one-shot, for scripts). Without, reads one user\n"
    "turn per line from stdin; the RNN state is kept across turns. Lines starting with '/': /reset clears\n"
    "the conversation, /quit ends it.\n\n"
    "      --system TEXT    a system turn \"\\x16System: {TEXT}\\x17\" before the first user turn\n"
    "      --template T     'modrwkv' (\\x16User: ..\\x17\\x16Assistant:, default) or 'card' (..\\x17Assistant:)\n"
    TOOL_MODEL_HELP SAMPLING_HELP;

typedef struct {
    mrw_context *ctx;
    mrw_state *st;
    mrw_sampler *smp;
    const mrw_vocab *vocab;
    gen_opts *g;
    mrw_chat_style style;
} chat_session;

/* The template text for messages (+ the generation prompt), tokenized. */
static int chat_tokens(const char *cmd, chat_session *s, const mrw_chat_msg *msg, int add_gen, int32_t **ids, int *n) {
    size_t len = mrw_chat_prompt(s->style, msg, 1, add_gen, NULL, 0);
    char *buf = malloc(len + 1);
    if (!buf) return tool_fail(cmd, "out of memory");
    mrw_chat_prompt(s->style, msg, 1, add_gen, buf, len + 1);
    int rc = tool_tokenize(cmd, s->vocab, buf, len, s->g->raw_bytes, ids, n);
    free(buf);
    return rc;
}

static int chat_turn(const char *cmd, chat_session *s, const char *question) {
    mrw_chat_msg msg = {MRW_ROLE_USER, question, strlen(question)};
    int32_t *ids = NULL;
    int n = 0;
    int rc = chat_tokens(cmd, s, &msg, 1, &ids, &n);
    if (rc) return rc;
    gen_cb_data d = {0};
    tool_printer_init(&d.pr, s->vocab, stdout);
    d.pr.skip_leading_space = 1;
    d.pr.hide_token = 24;
    mrw_generate_params gp = mrw_generate_params_default();
    gp.max_tokens = s->g->max_tokens ? s->g->max_tokens : 256;
    gp.feed_last = 1; /* the next turn continues after the answer's \x17 */
    mrw_error err = {0};
    int n_gen = 0;
    double t0 = tool_now();
    rc = mrw_generate(s->ctx, s->st, s->smp, ids, n, &gp, on_token, &d, &n_gen, &err);
    free(ids);
    if (rc) return tool_fail(cmd, "%s", err.msg);
    tool_printer_flush(&d.pr);
    fputc('\n', stdout);
    fflush(stdout);
    if (!s->g->quiet) {
        double t1 = tool_now(), tp = (d.t_first ? d.t_first : t1) - t0, td = d.t_first ? t1 - d.t_first : 0;
        fprintf(stderr, "[prompt %d tokens in %.2f s; answer %d tokens at %.1f tok/s]\n", n, tp, n_gen,
                n_gen > 1 && td > 0 ? (n_gen - 1) / td : 0);
    }
    return 0;
}

static int chat_system(const char *cmd, chat_session *s, const char *system) {
    mrw_chat_msg msg = {MRW_ROLE_SYSTEM, system, strlen(system)};
    int32_t *ids = NULL;
    int n = 0;
    int rc = chat_tokens(cmd, s, &msg, 0, &ids, &n);
    if (rc) return rc;
    mrw_error err = {0};
    rc = mrw_eval_tokens(s->ctx, s->st, ids, n, MRW_LOGITS_NONE, NULL, &err);
    free(ids);
    return rc ? tool_fail(cmd, "%s", err.msg) : 0;
}

int cmd_chat(int argc, char **argv) {
    const char *cmd = "chat";
    gen_opts g;
    gen_defaults(&g);
    const char *system = NULL, *question = NULL;
    chat_session s = {.g = &g, .style = MRW_CHAT_V1_EVAL};
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_chat_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strncmp(o, "--system", 8)) system = tool_value(&a, o);
        else if (!strncmp(o, "--template", 10)) {
            const char *t = tool_value(&a, o);
            if (t && !strcmp(t, "card")) s.style = MRW_CHAT_MODEL_CARD;
            else if (t && strcmp(t, "modrwkv")) { tool_fail(cmd, "--template must be 'modrwkv' or 'card'"); return 2; }
        } else if (o[0] != '-' || !strcmp(o, "-")) {
            if (question) { tool_fail(cmd, "give one question (quote it)"); return 2; }
            question = o;
        } else if (!sampling_option(&a, o, &g)) tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    int rc = 1;
    mrw_model *model = NULL;
    mrw_vocab *vocab = NULL;
    if (tool_load_model(cmd, &g.m, &model, &s.ctx) || tool_load_vocab(cmd, g.m.vocab, model, &vocab)) goto out;
    s.vocab = vocab;
    s.st = mrw_state_new(model);
    s.smp = mrw_sampler_new(&g.sp, mrw_model_get_info(model).n_vocab);
    if (!s.st || !s.smp) {
        tool_fail(cmd, "out of memory");
        goto out;
    }
    if (load_state(cmd, s.st, g.state_in)) goto out;
    if (system && chat_system(cmd, &s, system)) goto out;
    if (question) {
        if (!*question) { tool_fail(cmd, "the question is empty"); goto out; }
        if (chat_turn(cmd, &s, question)) goto out;
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
                mrw_state_reset(s.st);
                if (system && chat_system(cmd, &s, system)) break;
                continue;
            }
            if (chat_turn(cmd, &s, line)) { /* a bad turn (e.g. invalid UTF-8) does not end the chat */
                if (!tty) { free(line); goto out; }
            }
        }
        free(line);
    }
    if (save_state(cmd, s.st, g.state_out)) goto out;
    rc = 0;
out:
    mrw_sampler_free(s.smp);
    mrw_state_free(s.st);
    mrw_vocab_free(vocab);
    mrw_context_free(s.ctx);
    mrw_model_free(model);
    return rc;
}
