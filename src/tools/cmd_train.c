/* modrwkv train: RWKV-7 text fine-tuning and the ModRWKV training stages (src/train/trainer.h,
 * docs/TRAINING.md). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/common.h"
#include "tools/tools.h"
#include "train/dist.h"
#include "train/trainer.h"

static const char *k_train_usage =
    "usage: modrwkv train --data FILE --out DIR (-m MODEL | --init L,C) [options]\n"
    "Trains on the CPU (or the GPU: --device cuda): text fine-tuning of RWKV-7, or the ModRWKV stages (adapter;\n"
    "adapter + RWKV).\n"
    "Writes DIR/model.safetensors (the model), DIR/resume.safetensors (everything --resume needs) and\n"
    "DIR/train.jsonl (one line per step). Same options, seed and --threads give bit-identical weights.\n"
    "With --csv FILE it trains a time-series forecaster instead (options: modrwkv train-forecast --help).\n\n"
    "Model:\n"
    "  -m, --model FILE     start from an RWKV-7 (.pth/.safetensors/.gguf) or a ModRWKV checkpoint\n"
    "      --init L,C       start from a random RWKV-7 of L layers and width C (the reference init)\n"
    "      --vocab FILE     World vocabulary file or 'bytes' (default: as modrwkv generate picks it)\n"
    "      --encoder PATH   Hugging Face encoder (dir or weights) for an RWKV-7 start: adds a new adapter\n"
    "      --adapter v1|v2  layout of a new adapter (default v2: <|image_pad|> splicing; v1: prepend)\n"
    "      --compress K,S   a new trained Conv1D compression over the encoder tokens\n"
    "      --adapter-scale K  a new v2 adapter whose hidden width is K x its input width (paper Table 5:\n"
    "                       2, 4, 8; default: 4C); without the World vocabulary's placeholder tokens\n"
    "                       (byte vocabulary) its rows are prepended, as v1's\n"
    "      --feature-cache DIR  cache the frozen encoder's features on disk (reused across epochs and runs)\n"
    "      --train LIST     what trains: rwkv (text; the default), adapter (stage 1: RWKV frozen, gradients\n"
    "                       still flow through it), adapter,rwkv (stage 2), adapter,rwkv,encoder (the\n"
    "                       SigLIP/CLIP/Whisper encoder trains too)\n"
    "Data:\n"
    "      --data FILE      JSONL/JSON: {\"text\"}, LLaVA {\"image\",\"conversations\"} or {\"audio\",\"text\"};\n"
    "                       repeat for several files\n"
    "      --data-root DIR  media paths are relative to it (default: the data file's directory)\n"
    "      --data-kind K    auto (default), text, llava, audio\n"
    "Optimisation:\n"
    "  -b, --batch N        samples per micro-batch (default 1)\n"
    "      --ctx-len N      truncate samples to N tokens (default 512)\n"
    "      --grad-accum N   micro-batches per optimizer step (default 1)\n"
    "      --lr X           peak learning rate (default 1e-4)\n"
    "      --lr-final X     final learning rate (default lr/10)\n"
    "      --warmup N       linear warmup steps (default 0)\n"
    "      --schedule S     cosine (default), wsd (warmup-stable-decay), constant\n"
    "      --wsd-decay F    wsd: fraction of the steps spent decaying (default 0.2)\n"
    "      --steps N        optimizer steps (default: from --epochs)\n"
    "      --epochs X       passes over the data (default 1)\n"
    "      --clip X         global gradient-norm clip (default 1.0; 0 = off)\n"
    "      --weight-decay X AdamW decay on matrices (default 0: Adam, as the ModRWKV recipe)\n"
    "      --seed N         data order and initialisation (default 42)\n"
    "  -t, --threads N      threads (default: all cores). Same options, seed and thread count give\n"
    "                       bit-identical weights; --resume must use the count of the run it continues\n"
    "      --device D       cpu (default) or cuda: RWKV-7 text training and the ModRWKV stages (image and\n"
    "                       audio features from the GPU encoders, --encoder-device, or --feature-cache; every\n"
    "                       adapter, --compress, several modalities; --train adapter,[rwkv,]encoder with a\n"
    "                       SigLIP/CLIP or Whisper encoder, which then trains on the GPU too; not the encoder\n"
    "                       without the adapter) on the GPU (bf16 activations, fp32 master weights and Adam; needs a\n"
    "                       build with make CUDA=1; not bit-identical across runs: the embedding gradient uses\n"
    "                       atomics). A non-finite loss skips the step\n"
    "      --encoder-device D  cuda (the default with --device cuda) or cpu: where the frozen encoder (SigLIP,\n"
    "                       CLIP, Whisper, WavLM) runs (the GPU: bf16, a micro-batch's images in one forward);\n"
    "                       --feature-cache keeps the GPU's features apart from the CPU's\n"
    "      --ckpt           cuda: per-block activation checkpointing (less GPU memory, ~1/3 more compute)\n"
    "      --gpus N         cuda: data parallel over N GPUs of this machine, one process each (NCCL, loaded at\n"
    "                       run time: MRW_NCCL_LIB=path/libnccl.so.2); --batch is the global micro-batch, split\n"
    "                       evenly; the loss curve equals one GPU's at that batch. Text and the ModRWKV stages\n"
    "                       (adapter, adapter + RWKV, the SigLIP / CLIP / Whisper encoder trained). Across\n"
    "                       machines, start one process per GPU with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,\n"
    "                       MASTER_PORT set instead (torchrun's names; docs/DISTRIBUTED.md)\n"
    "      --zero 0|1       cuda, data parallel: 1 = ZeRO-1, Adam's moments sharded over the GPUs (default 0; the\n"
    "                       ModRWKV stages: the RWKV part's; the small adapter / encoder tables stay whole)\n"
    "      --allreduce T    cuda, data parallel: fp32 (default) or bf16 gradients over the wire\n"
    "Output:\n"
    "      --out DIR        output directory (created)\n"
    "      --save-every N   also write the checkpoint every N steps (default: only at the end)\n"
    "      --resume         continue the run in --out from its last checkpoint (same options)\n"
    "      --no-progress    no progress bar\n";

static int is_opt(const char *o, const char *name) {
    size_t n = strlen(name);
    return !strncmp(o, name, n) && (o[n] == 0 || o[n] == '=');
}

static int parse_train_list(const char *v, int *out) {
    int m = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "rwkv")) m |= MRW_PG_RWKV;
        else if (!strcmp(tok, "adapter")) m |= MRW_PG_ADAPTER;
        else if (!strcmp(tok, "encoder")) m |= MRW_PG_ENCODER;
        else return -1;
    }
    *out = m;
    return m ? 0 : -1;
}

static int parse_pair(const char *v, int *a, int *b) {
    char end;
    return v && sscanf(v, "%d,%d%c", a, b, &end) == 2 && *a > 0 && *b > 0 ? 0 : -1;
}

static int parse_double(const char *v, double lo, double *out) {
    char *end;
    double x = v ? strtod(v, &end) : 0;
    if (!v || end == v || *end || !(x >= lo) || x > 1e12) return -1;
    *out = x;
    return 0;
}

int cmd_train(int argc, char **argv) {
    const char *cmd = "train";
    /* CSV series make a forecaster (src/ts/forecaster.c), a different model with its own options */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--csv") || !strncmp(argv[i], "--csv=", 6)) return cmd_train_forecast(argc, argv);
    mrw_train_opts o;
    mrw_train_opts_default(&o);
    o.progress = isatty(2);
    o.threads = omp_get_num_procs();
    const char *vocab_opt = NULL;
    int gpus = 1;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_train_usage);
    const char *opt, *v;
    int bad = 0;
    while (tool_next(&a, &opt) && !bad) {
        if (!strcmp(opt, "-m") || is_opt(opt, "--model")) o.model = tool_value(&a, opt);
        else if (is_opt(opt, "--init")) {
            if (parse_pair(v = tool_value(&a, opt), &o.init_layers, &o.init_embd) && v)
                bad = tool_fail(cmd, "--init expects LAYERS,WIDTH such as 2,64; got '%s'", v);
        } else if (is_opt(opt, "--vocab")) vocab_opt = tool_value(&a, opt);
        else if (is_opt(opt, "--encoder")) o.encoder = tool_value(&a, opt);
        else if (is_opt(opt, "--adapter")) {
            v = tool_value(&a, opt);
            if (v && strcmp(v, "v1") && strcmp(v, "v2")) bad = tool_fail(cmd, "--adapter must be v1 or v2, not '%s'", v);
            o.adapter_v1 = v && !strcmp(v, "v1");
        } else if (is_opt(opt, "--compress")) {
            if (parse_pair(v = tool_value(&a, opt), &o.compress_k, &o.compress_s) && v)
                bad = tool_fail(cmd, "--compress expects KERNEL,STRIDE such as 3,2; got '%s'", v);
        } else if (is_opt(opt, "--adapter-scale")) tool_int(&a, opt, 1, 64, &o.adapter_scale);
        else if (is_opt(opt, "--feature-cache")) o.feature_cache = tool_value(&a, opt);
        else if (is_opt(opt, "--train")) {
            if (parse_train_list(v = tool_value(&a, opt), &o.train) && v)
                bad = tool_fail(cmd, "--train takes a comma list of rwkv, adapter, encoder; got '%s'", v);
        } else if (is_opt(opt, "--data")) {
            v = tool_value(&a, opt);
            if (o.n_data == MRW_TRAIN_MAX_DATA) bad = tool_fail(cmd, "at most %d --data files", MRW_TRAIN_MAX_DATA);
            else if (v) o.data[o.n_data++] = v;
        } else if (is_opt(opt, "--data-root")) o.data_root = tool_value(&a, opt);
        else if (is_opt(opt, "--data-kind")) {
            v = tool_value(&a, opt);
            if (!v) continue;
            if (!strcmp(v, "auto")) o.data_kind = MRW_DATA_AUTO;
            else if (!strcmp(v, "text")) o.data_kind = MRW_DATA_TEXT;
            else if (!strcmp(v, "llava")) o.data_kind = MRW_DATA_LLAVA;
            else if (!strcmp(v, "audio")) o.data_kind = MRW_DATA_AUDIO;
            else bad = tool_fail(cmd, "--data-kind must be auto, text, llava or audio, not '%s'", v);
        } else if (!strcmp(opt, "-b") || is_opt(opt, "--batch")) tool_int(&a, opt, 1, 1 << 16, &o.batch);
        else if (is_opt(opt, "--ctx-len")) tool_int(&a, opt, 1, 1 << 20, &o.ctx_len);
        else if (is_opt(opt, "--grad-accum")) tool_int(&a, opt, 1, 1 << 20, &o.grad_accum);
        else if (is_opt(opt, "--lr") || is_opt(opt, "--lr-final") || is_opt(opt, "--clip") ||
                 is_opt(opt, "--weight-decay") || is_opt(opt, "--epochs") || is_opt(opt, "--wsd-decay")) {
            double x;
            v = tool_value(&a, opt);
            if (!v) continue;
            if (parse_double(v, 0, &x)) {
                bad = tool_fail(cmd, "%.*s expects a non-negative number, got '%s'", (int)strcspn(opt, "="), opt, v);
                continue;
            }
            if (is_opt(opt, "--lr")) o.lr = x;
            else if (is_opt(opt, "--lr-final")) o.lr_final = x;
            else if (is_opt(opt, "--clip")) o.clip = x;
            else if (is_opt(opt, "--weight-decay")) o.weight_decay = x;
            else if (is_opt(opt, "--epochs")) o.epochs = x;
            else o.wsd_decay = x;
        } else if (is_opt(opt, "--warmup") || is_opt(opt, "--steps") || is_opt(opt, "--save-every") ||
                   is_opt(opt, "--seed")) {
            v = tool_value(&a, opt);
            if (!v) continue;
            char *end;
            long long x = strtoll(v, &end, 10);
            if (end == v || *end || x < 0) {
                bad = tool_fail(cmd, "%.*s expects a non-negative integer, got '%s'", (int)strcspn(opt, "="), opt, v);
                continue;
            }
            if (is_opt(opt, "--warmup")) o.warmup = x;
            else if (is_opt(opt, "--steps")) o.steps = x;
            else if (is_opt(opt, "--save-every")) o.save_every = x;
            else o.seed = (uint64_t)x;
        } else if (is_opt(opt, "--schedule")) {
            v = tool_value(&a, opt);
            if (v && mrw_schedule_parse(v, &o.schedule))
                bad = tool_fail(cmd, "--schedule must be cosine, wsd or constant, not '%s'", v);
        } else if (!strcmp(opt, "-t") || is_opt(opt, "--threads")) tool_int(&a, opt, 1, 1024, &o.threads);
        else if (is_opt(opt, "--device")) {
            v = tool_value(&a, opt);
            if (v && strcmp(v, "cpu") && strcmp(v, "cuda"))
                bad = tool_fail(cmd, "--device must be cpu or cuda, not '%s'", v);
            o.device = v && !strcmp(v, "cuda");
        } else if (is_opt(opt, "--encoder-device")) {
            v = tool_value(&a, opt);
            if (v && strcmp(v, "cpu") && strcmp(v, "cuda"))
                bad = tool_fail(cmd, "--encoder-device must be cpu or cuda, not '%s'", v);
            o.encoder_device = !v ? 0 : !strcmp(v, "cpu") ? 1 : 2;
        } else if (!strcmp(opt, "--ckpt")) o.act_ckpt = 1;
        else if (is_opt(opt, "--gpus")) tool_int(&a, opt, 1, 4096, &gpus);
        else if (is_opt(opt, "--zero")) tool_int(&a, opt, 0, 1, &o.zero);
        else if (is_opt(opt, "--allreduce")) {
            v = tool_value(&a, opt);
            if (v && strcmp(v, "fp32") && strcmp(v, "bf16"))
                bad = tool_fail(cmd, "--allreduce must be fp32 or bf16, not '%s'", v);
            o.allreduce_bf16 = v && !strcmp(v, "bf16");
        }
        else if (is_opt(opt, "--out")) o.out = tool_value(&a, opt);
        else if (!strcmp(opt, "--resume")) o.resume = 1;
        else if (!strcmp(opt, "--no-progress")) o.progress = 0;
        else tool_unknown(&a, opt);
    }
    if (a.failed || bad) return 2;
    if (!o.out) return tool_fail(cmd, "no output directory: give --out DIR (see modrwkv train --help)"), 2;
    if (o.n_data < 1) return tool_fail(cmd, "no training data: give --data FILE (see modrwkv train --help)"), 2;
    if (!o.model && !o.init_layers)
        return tool_fail(cmd, "no model: give -m FILE (RWKV-7 or ModRWKV) or --init LAYERS,WIDTH"), 2;
    if (o.model && o.init_layers) return tool_fail(cmd, "give either -m or --init, not both"), 2;
    o.vocab_name = vocab_opt;
    if (gpus > 1 && !o.device) return tool_fail(cmd, "--gpus %d trains on GPUs: add --device cuda", gpus), 2;
    if (o.zero && !o.device) return tool_fail(cmd, "--zero needs --device cuda"), 2;
    if (o.encoder_device == 2 && !o.device)
        return tool_fail(cmd, "--encoder-device cuda runs the frozen encoders on the GPU: it needs --device cuda"), 2;
    if (o.device) {
        /* what the GPU does not cover for the ModRWKV stages is refused by name (the trainer checks the start model's
         * adapter and encoder too), before the build is asked: the same answer with or without CUDA */
        const int mm = o.encoder || (o.model && mrw_is_modrwkv_file(o.model));
        mrw_error e = {0};
        if (mm && mrw_train_gpu_mm_options(&o, gpus > 1 ? gpus : 1, &e)) return tool_fail(cmd, "%s", e.msg), 2;
#ifndef MRW_CUDA
        return tool_fail(cmd, "--device cuda: this modrwkv was built without CUDA (build with make CUDA=1)"), 2;
#endif
    }
    const char *ws = getenv("WORLD_SIZE");
    if (gpus > 1 && !(ws && *ws && strcmp(ws, "1"))) {
        /* the launcher: this process starts one copy of itself per GPU (RANK = LOCAL_RANK = i) and waits; a copy
         * finds WORLD_SIZE set and trains as that rank */
        if (o.batch % gpus)
            return tool_fail(cmd, "--batch %d is the global micro-batch, split evenly over --gpus %d: give a multiple "
                             "of %d", o.batch, gpus, gpus), 2;
        char **av = calloc((size_t)argc + 2, sizeof *av);
        if (!av) return tool_fail(cmd, "out of memory"), 1;
        av[0] = "modrwkv";
        for (int i = 0; i < argc; i++) av[i + 1] = argv[i];
        mrw_error err = {0};
        const int rc = mrw_dist_launch(gpus, "/proc/self/exe", av, 10.0, "modrwkv train", &err);
        free(av);
        if (rc < 0) return tool_fail(cmd, "%s", err.msg), 1;
        return rc;
    }

    /* A plain RWKV-7 start is loaded here to resolve its vocabulary; a ModRWKV checkpoint by the trainer. */
    mrw_error err = {0};
    mrw_model *start = NULL;
    mrw_vocab *vocab = NULL;
    if (o.model && !mrw_is_modrwkv_file(o.model)) {
        mrw_load_params lp = mrw_load_params_default();
        lp.progress = o.progress;
        if (mrw_model_load(o.model, &lp, &start, &err)) return tool_fail(cmd, "%s", err.msg);
    }
    if (tool_load_vocab(cmd, vocab_opt, start, &vocab)) {
        mrw_model_free(start);
        return 1;
    }
    mrw_status s = mrw_train_run(&o, start, vocab, &err);
    mrw_vocab_free(vocab);
    mrw_model_free(start);
    if (s) return tool_fail(cmd, "%s", err.msg);
    return 0;
}
