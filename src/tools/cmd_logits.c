/* modrwkv logits | perplexity: numbers for scripts and tests. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/common.h"
#include "tools/tools.h"

static const char *k_logits_usage =
    "usage: modrwkv logits -m MODEL (--text TEXT | --tokens 34,105,110) [--image F | --audio F] [options]\n"
    "Feeds the input from a zero state (or --state-in) and prints the last position's logits, one per line\n"
    "(%.9g), for every token of the vocabulary. Works for any vocabulary size. With a ModRWKV model and media,\n"
    "the features are spliced in as the model does (v1: before the text; v2: into the <|image_pad|> runs of\n"
    "the text, whose special-token strings are recognised).\n\n"
    "      --text TEXT      tokenized with the model's vocabulary\n"
    "      --tokens LIST    comma-separated token ids\n"
    "      --rnn            feed one token at a time (RNN mode) instead of one sequence\n"
    "      --state-in FILE  start from a saved state\n"
    "      --raw-bytes      accept text that is not valid UTF-8\n" TOOL_MODEL_HELP TOOL_MEDIA_HELP;

int cmd_logits(int argc, char **argv) {
    const char *cmd = "logits";
    tool_model_opts mo = {.dtype = MRW_DT_AUTO};
    tool_media_opts media = {0};
    const char *text = NULL, *tokens = NULL, *state_in = NULL;
    int rnn = 0, raw = 0;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_logits_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strncmp(o, "--text", 6)) text = tool_value(&a, o);
        else if (!strncmp(o, "--tokens", 8)) tokens = tool_value(&a, o);
        else if (!strncmp(o, "--state-in", 10)) state_in = tool_value(&a, o);
        else if (!strcmp(o, "--rnn")) rnn = 1;
        else if (!strcmp(o, "--raw-bytes")) raw = 1;
        else if (!tool_media_option(&a, o, &media) && !tool_model_option(&a, o, &mo)) tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    if (!text == !tokens) return tool_fail(cmd, "give exactly one of --text or --tokens"), 2;
    tool_session s;
    if (tool_session_open(cmd, &mo, &media, &s)) return 1;
    mrw_state *st = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    int n = 0, rc = 1;
    const int V = mrw_model_get_info(s.model).n_vocab;
    if (tokens) {
        if (tool_parse_tokens(cmd, tokens, V, &ids, &n)) goto out;
    } else {
        if (tool_tokenize_ex(cmd, s.vocab, text, strlen(text), raw, s.special, &ids, &n)) goto out;
    }
    st = mrw_state_new(s.model);
    logits = malloc((size_t)V * sizeof *logits);
    if (!st || !logits) { tool_fail(cmd, "out of memory"); goto out; }
    mrw_error err = {0};
    if (state_in && mrw_state_load(st, state_in, &err)) { tool_fail(cmd, "%s", err.msg); goto out; }
    if (s.n_feats) {
        if (rnn) { tool_fail(cmd, "--rnn cannot be combined with media"); goto out; }
        if (tool_session_eval(cmd, &s, st, ids, n, 1, MRW_LOGITS_LAST, logits)) goto out;
    } else {
        for (int i = 0; i < (rnn ? n : 1); i++)
            if (tool_session_eval(cmd, &s, st, rnn ? ids + i : ids, rnn ? 1 : n, 0, MRW_LOGITS_LAST, logits)) goto out;
    }
    for (int i = 0; i < V; i++) printf("%.9g\n", logits[i]);
    rc = 0;
out:
    free(logits);
    free(ids);
    mrw_state_free(st);
    tool_session_close(&s);
    return rc;
}

static const char *k_ppl_usage =
    "usage: modrwkv perplexity -m MODEL -f FILE [options]\n"
    "Reads the whole text as one sequence, in chunks with the RNN state carried between them, and reports\n"
    "the mean cross-entropy of every next-token prediction (nats/token), perplexity, and bits per byte.\n"
    "With a World vocabulary the text is preceded by token 0 (end of text), so its first token is scored too.\n\n"
    "  -f, --file FILE      the text ('-' = stdin)\n"
    "      --max-tokens N   stop after N tokens\n"
    "      --no-bos         do not prepend token 0\n"
    "      --raw-bytes      accept text that is not valid UTF-8\n" TOOL_MODEL_HELP;

int cmd_perplexity(int argc, char **argv) {
    const char *cmd = "perplexity";
    tool_model_opts mo = {.dtype = MRW_DT_AUTO};
    const char *file = NULL;
    int max_tokens = 0, no_bos = 0, raw = 0;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_ppl_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strcmp(o, "-f") || !strncmp(o, "--file", 6)) file = tool_value(&a, o);
        else if (!strncmp(o, "--max-tokens", 12)) tool_int(&a, o, 2, 1 << 30, &max_tokens);
        else if (!strcmp(o, "--no-bos")) no_bos = 1;
        else if (!strcmp(o, "--raw-bytes")) raw = 1;
        else if (!tool_model_option(&a, o, &mo)) tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    if (!file) return tool_fail(cmd, "give the text with -f FILE"), 2;
    char *text = NULL;
    size_t len = 0;
    mrw_model *m = NULL;
    mrw_context *ctx = NULL;
    mrw_vocab *v = NULL;
    mrw_state *st = NULL;
    int32_t *ids = NULL, *seq = NULL;
    float *logits = NULL;
    int n = 0, rc = 1;
    if (tool_read_file(cmd, file, &text, &len)) return 1;
    if (tool_load_model(cmd, &mo, &m, &ctx) || tool_load_vocab(cmd, mo.vocab, m, &v)) goto out;
    if (tool_tokenize(cmd, v, text, len, raw, &ids, &n)) goto out;
    const int V = mrw_model_get_info(m).n_vocab;
    const int bos = !no_bos && mrw_token_bytes(v, 0, &(size_t){0}) == NULL; /* id 0 has no text: end-of-text */
    if (max_tokens && n > max_tokens) n = max_tokens;
    const int total = n + bos;
    if (total < 2) { tool_fail(cmd, "the text needs at least 2 tokens"); goto out; }
    seq = malloc((size_t)total * sizeof *seq);
    const int chunk = mo.chunk ? mo.chunk : 512;
    logits = malloc((size_t)chunk * V * sizeof *logits);
    st = mrw_state_new(m);
    if (!seq || !logits || !st) { tool_fail(cmd, "out of memory"); goto out; }
    if (bos) seq[0] = 0;
    memcpy(seq + bos, ids, (size_t)n * sizeof *seq);
    double nll = 0;
    long scored = 0;
    tool_progress prog;
    tool_progress_start(&prog, "perplexity", total);
    double t0 = tool_now();
    mrw_error err = {0};
    for (int s = 0; s < total - 1; s += chunk) {
        int T = total - 1 - s < chunk ? total - 1 - s : chunk; /* positions s..s+T-1 predict s+1..s+T */
        if (mrw_eval_tokens(ctx, st, seq + s, T, MRW_LOGITS_ALL, logits, &err)) { tool_fail(cmd, "%s", err.msg); goto out; }
        for (int t = 0; t < T; t++) {
            const float *l = logits + (size_t)t * V;
            float mx = l[0];
            for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
            double z = 0;
            for (int i = 0; i < V; i++) z += exp((double)l[i] - mx);
            nll += log(z) + mx - l[seq[s + t + 1]];
            scored++;
        }
        tool_progress_update(&prog, s + T + 1);
    }
    tool_progress_finish(&prog);
    double dt = tool_now() - t0, loss = nll / scored;
    /* bits per byte of the bytes actually predicted (the scored tokens; not the whole file when --max-tokens
     * cut it, nor the first token when no end-of-text token precedes it) */
    double bytes = 0;
    for (int i = 1; i < total; i++) {
        size_t nb = 0;
        if (mrw_token_bytes(v, seq[i], &nb)) bytes += (double)nb;
    }
    printf("tokens %ld, loss %.6f nats/token, perplexity %.4f, %.4f bits/byte, %.1f tokens/s\n", scored, loss,
           exp(loss), nll / log(2.0) / (bytes > 0 ? bytes : 1), total / dt);
    rc = 0;
out:
    free(logits);
    free(seq);
    free(ids);
    free(text);
    mrw_state_free(st);
    mrw_vocab_free(v);
    mrw_context_free(ctx);
    mrw_model_free(m);
    return rc;
}
