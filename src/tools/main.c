/* modrwkv: the command-line program. Each subcommand lives in its own file and uses only the public API
 * (include/modrwkv.h) plus the shared option helpers in tools/common.c. */
#include <stdio.h>
#include <string.h>

#include "modrwkv.h"
#include "tools/tools.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} k_cmds[] = {
    {"generate", cmd_generate, "continue a prompt, streaming the text"},
    {"chat", cmd_chat, "chat with the ModRWKV template (one-shot or interactive)"},
    {"convert", cmd_convert, "convert between .pth, .safetensors and GGUF; quantize to q8_0 / q4_0"},
    {"encode", cmd_encode, "run an image or recording through the encoder (and adapter)"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"logits", cmd_logits, "print the last position's logits, one per line"},
    {"perplexity", cmd_perplexity, "loss and perplexity of a model over a text"},
    {"bench", cmd_bench, "prefill and decode speed of a model"},
    {"info", cmd_info, "shapes, parameters and dtypes of a model file"},
    {"init", cmd_init, "create a model with random weights (tests, demos)"},
    {"train", cmd_train, "train on the CPU: text fine-tuning, ModRWKV stage 1 / stage 2, exact resume"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with a chat page"},
    {"eval", cmd_eval, "evaluate on a VQA / ASR / text file: exact match, WER/CER, held-out loss"},
    {"plot", cmd_plot, "draw the loss and learning-rate curves of a training log (PNG or SVG)"},
    {"gen-scenes", cmd_gen_scenes, "generate VQA scenes (shapes, colours, counts, positions): PNG + LLaVA JSONL"},
    {"forecast", cmd_forecast, "forecast a CSV column with a baseline; the baselines table of a benchmark folder"},
    {"train-forecast", cmd_train_forecast, "train a ModRWKV time-series forecaster on CSV series (train --csv)"},
};

static void usage(FILE *out) {
    fprintf(out, "modrwkv %s: RWKV-7 / ModRWKV inference\n\nusage: modrwkv COMMAND [options]   "
                 "(modrwkv COMMAND --help for its options)\n\ncommands:\n", MRW_VERSION);
    for (size_t i = 0; i < sizeof k_cmds / sizeof *k_cmds; i++) fprintf(out, "  %-11s %s\n", k_cmds[i].name, k_cmds[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("modrwkv %s\n", MRW_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof k_cmds / sizeof *k_cmds; i++)
        if (!strcmp(argv[1], k_cmds[i].name)) return k_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "modrwkv: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
