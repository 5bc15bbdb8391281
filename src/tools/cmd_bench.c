/* modrwkv bench: one line of prefill and decode speed for a model file. (The full table across model
 * shapes, dtypes and thread counts is bench/bench_rwkv7.) */
#include <stdlib.h>
#include <string.h>

#include "tools/common.h"
#include "tools/tools.h"

static const char *k_usage =
    "usage: modrwkv bench -m MODEL [--prompt N] [--gen N] [options]\n"
    "Measures prefill of an N-token prompt (sequence mode) and decode of N tokens (RNN mode) on pseudo-random\n"
    "token ids, and prints one line with tokens/s and the weight bytes read per second while decoding.\n\n"
    "      --prompt N       prompt length (default 512)\n"
    "      --gen N          decoded tokens (default 128)\n" TOOL_MODEL_HELP;

int cmd_bench(int argc, char **argv) {
    const char *cmd = "bench";
    tool_model_opts mo = {.dtype = MRW_DT_AUTO};
    int n_prompt = 512, n_gen = 128;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strncmp(o, "--prompt", 8)) tool_int(&a, o, 1, 1 << 20, &n_prompt);
        else if (!strncmp(o, "--gen", 5)) tool_int(&a, o, 1, 1 << 20, &n_gen);
        else if (!tool_model_option(&a, o, &mo)) tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    mrw_model *m = NULL;
    mrw_context *ctx = NULL;
    if (tool_load_model(cmd, &mo, &m, &ctx)) return 1;
    mrw_model_info in = mrw_model_get_info(m);
    int32_t *ids = malloc((size_t)n_prompt * sizeof *ids);
    float *logits = malloc((size_t)in.n_vocab * sizeof *logits);
    mrw_state *st = mrw_state_new(m);
    int rc = 1;
    if (!ids || !logits || !st) { tool_fail(cmd, "out of memory"); goto out; }
    for (int i = 0; i < n_prompt; i++) ids[i] = (int32_t)((i * 2654435761u) % (unsigned)in.n_vocab);
    mrw_error err = {0};
    /* warm-up: touch every weight once */
    if (mrw_eval_tokens(ctx, st, ids, 1, MRW_LOGITS_LAST, logits, &err)) { tool_fail(cmd, "%s", err.msg); goto out; }
    mrw_state_reset(st);
    double t0 = tool_now();
    if (mrw_eval_tokens(ctx, st, ids, n_prompt, MRW_LOGITS_LAST, logits, &err)) { tool_fail(cmd, "%s", err.msg); goto out; }
    double tp = tool_now() - t0;
    int32_t tok = 1;
    t0 = tool_now();
    for (int i = 0; i < n_gen; i++) {
        if (mrw_eval_tokens(ctx, st, &tok, 1, MRW_LOGITS_LAST, logits, &err)) { tool_fail(cmd, "%s", err.msg); goto out; }
        tok = (int32_t)((tok * 48271u + 11) % (unsigned)in.n_vocab);
    }
    double td = tool_now() - t0;
    printf("bench: %s, %d layers, n_embd %d, %s, %d threads: prefill %d tokens %.1f tok/s, decode %d tokens %.1f "
           "tok/s (%.2f GB/s of weights)\n", mo.model, in.n_layer, in.n_embd, mrw_dtype_name(in.weight_dtype),
           mrw_context_n_threads(ctx), n_prompt, n_prompt / tp, n_gen, n_gen / td, in.decode_bytes * (n_gen / td) / 1e9);
    rc = 0;
out:
    free(ids);
    free(logits);
    mrw_state_free(st);
    mrw_context_free(ctx);
    mrw_model_free(m);
    return rc;
}
