/* modrwkv train --csv …: trains the ModRWKV forecaster (src/ts/forecaster.h) on channel-independent windows of
 * the training split of one or more CSV series; progress bar, JSONL log in the trainer's format, atomic
 * safetensors checkpoint with the forecaster's configuration as metadata. */
#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/progress.h"
#include "tools/common.h"
#include "tools/tools.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/optim.h"
#include "train/rwkv7_train.h"
#include "train/schedule.h"
#include "ts/baselines.h"
#include "ts/forecaster.h"
#include "ts/splits.h"
#ifdef MRW_CUDA
#include "kernels/cuda/forecaster_gpu.h"
#endif

#define MAX_CSV 64
#define MAX_COLS 256

static const char *k_usage =
    "usage: modrwkv train --csv FILE [--csv FILE …] --out DIR (--init L,C | -m RWKV7_FILE) [options]\n"
    "Trains a ModRWKV forecaster: per-window normalisation -> WaveNet (features pooled over patches of --patch\n"
    "steps) -> v2 adapter -> RWKV-7 -> linear head on the final hidden state predicting all --horizon steps, plus\n"
    "a linear skip path from the lookback (docs/FORECAST.md). Training windows: every window\n"
    "(stride 1) of the standard training split of each selected column of each file, channel-independent,\n"
    "sampled at random. Loss: MSE in the dataset-normalised space (the benchmarks' metric).\n\n"
    "  --csv FILE            a series (header row, numeric rows; repeatable)\n"
    "  --columns A,B|all     columns to train on (default all numeric columns)\n"
    "  --dataset NAME        split rules of a known dataset (default: from each file name)\n"
    "  --lookback N          input steps (default: the dataset's usual, 720; ILI 104)\n"
    "  --horizon N           forecast steps (default: the dataset's usual, 96; ILI 24)\n"
    "  --init L,C            a random RWKV-7 of L layers and width C (default 2,64)\n"
    "  -m, --model FILE      start from an RWKV-7 model instead (.pth/.safetensors/.gguf)\n"
    "  --adapter-scale K     adapter hidden width = K x the encoder's 128 features (2, 4 or 8; default 4)\n"
    "  --prompt-tokens N     fixed tokens after the features; the forecast is read at the last one\n"
    "                        (default 0: read at the last feature row)\n"
    "  --encoder wavenet     the WaveNet encoder, trained from scratch (default)\n"
    "  --encoder timer DIR   a frozen Timer encoder (thuml/timer-base-84m layout: DIR/config.json +\n"
    "                        model.safetensors): features = its last hidden states [lookback/96, 1024];\n"
    "                        the checkpoint refers to DIR (implies --patch 1)\n"
    "  --enc-channels N      WaveNet residual/skip channels (default 64; features stay 128)\n"
    "  --patch P             RWKV-7 reads the means of the WaveNet features over patches of P steps:\n"
    "                        lookback/P tokens (default 16; 1 = every step a token)\n"
    "  --skip on|off         linear skip path from the normalised lookback to the horizon, added to the\n"
    "                        head's output (default on)\n"
    "  --skip-init ridge|zero  start the skip path from the closed-form DLinear-style ridge fit of the\n"
    "                        training split (default ridge) or from zero\n"
    "  --skip-lr M           the skip path's learning rate = M x --lr (its own Adam; default 0.05 with\n"
    "                        --skip-init ridge, 1 with zero)\n"
    "  --freeze-rwkv         train the encoder, adapter and head only\n"
    "  --lr X                peak learning rate (default 1e-3; cosine to lr/10 after --warmup steps)\n"
    "  --warmup N            warm-up steps (default 20)\n"
    "  --steps N             optimizer steps (default 500)\n"
    "  -b, --batch N         windows per step (default 16)\n"
    "  --accum K             gradient accumulation: K batches of -b windows per optimizer step (default 1)\n"
    "  --clip X              gradient-norm clip (default 1.0)\n"
    "  --seed N              initialisation and sampling (default 42)\n"
    "  --balance-files       draw each window's file with equal probability (default: every window of every\n"
    "                        file equally likely, so a file with more channels or rows weighs more); the skip\n"
    "                        path's ridge start is then the plain mean of the files' fits\n"
    "  --device cpu|cuda     where it trains (default cpu). cuda: one GPU (a build with make CUDA=1): WaveNet,\n"
    "                        adapter and RWKV-7 on the GPU (bf16 activations, fp32 masters; MRW_TRAIN_GPU_FP32=1:\n"
    "                        fp32 everywhere, the adapter on the host), head and loss on the host; the same\n"
    "                        checkpoints and --resume files as on the CPU (docs/FORECAST.md \"On the GPU\");\n"
    "                        RWKV-7 width >= 64 (head size 64); a Timer encoder runs on the host\n"
    "  --target-interval DUR the sampling interval of the series the model is for (15min, 1h, 1d, ...;\n"
    "                        zero-shot: the target's data need not be given): the skip path's ridge start\n"
    "                        is fitted only on the --csv files sampled at that interval (read from their\n"
    "                        date columns), or at the nearest one; the RWKV-7 branch still trains on all\n"
    "                        the files. Default: every file\n"
    "  --out DIR             writes DIR/forecaster.safetensors and DIR/train.jsonl\n"
    "  --save-every N        checkpoint every N steps (default: at the end only); each save also writes\n"
    "                        DIR/resume.safetensors (weights, Adam moments, step, sampler state)\n"
    "  --resume              continue the run in --out DIR from DIR/resume.safetensors (same options;\n"
    "                        bit-identical to an uninterrupted run)\n"
    "  --stop-after N        end this invocation after N steps (saving), e.g. to resume later\n"
    "  --time-limit S        stop (and save) after S seconds of training even before --steps\n"
    "  --eval-windows N      after training, the validation MSE/MAE on N windows per channel (default 0: skip)\n"
    "  -t, --threads N       threads (default: all cores)\n"
    "  -q, --quiet           no progress bar\n";

static int is_opt(const char *o, const char *name) {
    size_t n = strlen(name);
    return !strncmp(o, name, n) && (o[n] == 0 || o[n] == '=');
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#ifdef MRW_CUDA
/* --device cuda (src/kernels/cuda/forecaster_gpu.h): RWKV-7 mastered on the GPU, the small sets (WaveNet, adapter,
 * head) with their Adam on the host in opt_h; opt, the CPU trainer's optimizer over the same sets, holds the moments
 * only for checkpoints (so the resume files are the CPU's, and a run resumes on either device). */

/* The moments of every tensor both optimizers train, src -> dst (same sets in the same order). */
static void moments_copy(mrw_adam *dst, const mrw_adam *src) {
    for (int s = 0; s < src->n_sets; s++)
        for (int i = 0; i < src->sets[s]->n; i++) {
            if (src->moff[s][i] == SIZE_MAX || dst->moff[s][i] == SIZE_MAX) continue;
            const size_t n = src->sets[s]->p[i].n * sizeof(float);
            memcpy(dst->m + dst->moff[s][i], src->m + src->moff[s][i], n);
            memcpy(dst->v + dst->moff[s][i], src->v + src->moff[s][i], n);
        }
}

/* Before a checkpoint: the RWKV-7 weights and moments from the device and opt_h's moments into f and opt. */
static mrw_status gpu_to_host(mrw_forecaster_gpu *fg, mrw_adam *opt, mrw_adam *opt_h, mrw_error *err) {
    mrw_status s;
    if ((s = mrw_forecaster_gpu_download(fg, err)) || (s = mrw_forecaster_gpu_moments(fg, 0, opt, err))) return s;
    moments_copy(opt, opt_h);
    opt->t = opt_h->t;
    return MRW_OK;
}

/* One optimizer step of everything but the skip path: the clip over the host sets' and the RWKV-7 table's gradients
 * at once (mrw_clip_grad_norm's norm and float coefficient), Adam on both sides, the small weights back up. */
static mrw_status gpu_step(mrw_forecaster_gpu *fg, mrw_adam *opt_h, const mrw_adam_config *acfg, double clip,
                           double lr, double *norm, mrw_error *err) {
    mrw_status s;
    double gss;
    if ((s = mrw_forecaster_gpu_grads_to_host(fg, err)) || (s = mrw_forecaster_gpu_rwkv_sumsq(fg, &gss, err))) return s;
    const double hn = mrw_grad_norm(opt_h), hss = hn * hn;
    *norm = sqrt(hss + gss);
    if (clip > 0) {
        const float c = (float)clip / ((float)*norm + 1e-6f);
        if (c < 1.0f)
            for (int k = 0; k < opt_h->n_sets; k++)
                for (int i = 0; i < opt_h->sets[k]->n; i++) {
                    if (!mrw_adam_trains(opt_h, k, i)) continue;
                    float *g = mrw_param_g(opt_h->sets[k], i);
                    for (size_t j = 0; j < opt_h->sets[k]->p[i].n; j++) g[j] *= c;
                }
    }
    mrw_adam_step(opt_h, lr);
    if ((s = mrw_forecaster_gpu_rwkv_step(fg, acfg, lr, clip, hss, err))) return s;
    return MRW_OK;
}
#endif

int cmd_train_forecast(int argc, char **argv) {
    const char *cmd = "train";
    const char *csvs[MAX_CSV];
    int n_csv = 0;
    const char *columns = NULL, *dataset = NULL, *model = NULL, *outdir = NULL, *init = NULL;
    int lookback = 0, horizon = 0, scale = 4, n_prompt = 0, enc_ch = 64, freeze = 0, warmup = 20, steps = 500,
        batch = 16, seed = 42, save_every = 0, time_limit = 0, eval_windows = 0, threads = 0, quiet = 0;
    int patch = 16, skip = 1, skip_ridge = 1, accum = 1, resume = 0, stop_after = 0, balance = 0, device = 0;
    double target_iv = 0; /* --target-interval, seconds (0: none) */
    const char *skip_s = NULL, *skip_init_s = NULL, *timer_dir = NULL;
    int patch_set = 0;
    float skip_lr = -1;
    float lr = 1e-3f, clip = 1.0f;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (is_opt(o, "--csv")) {
            const char *v = tool_value(&a, o);
            if (v && n_csv < MAX_CSV) csvs[n_csv++] = v;
            else if (v) a.failed = 1, tool_fail(cmd, "at most %d --csv files", MAX_CSV);
        } else if (is_opt(o, "--columns")) columns = tool_value(&a, o);
        else if (is_opt(o, "--dataset")) dataset = tool_value(&a, o);
        else if (is_opt(o, "--lookback")) tool_int(&a, o, 2, 1 << 16, &lookback);
        else if (is_opt(o, "--horizon")) tool_int(&a, o, 1, 1 << 16, &horizon);
        else if (is_opt(o, "--init")) init = tool_value(&a, o);
        else if (is_opt(o, "--model") || !strcmp(o, "-m")) model = tool_value(&a, o);
        else if (is_opt(o, "--adapter-scale")) tool_int(&a, o, 1, 64, &scale);
        else if (is_opt(o, "--prompt-tokens")) tool_int(&a, o, 0, 64, &n_prompt);
        else if (is_opt(o, "--enc-channels")) tool_int(&a, o, 1, 1024, &enc_ch);
        else if (is_opt(o, "--freeze-rwkv")) freeze = 1;
        else if (is_opt(o, "--patch")) tool_int(&a, o, 1, 1 << 16, &patch), patch_set = 1;
        else if (is_opt(o, "--encoder")) {
            const char *v = tool_value(&a, o);
            if (v && !strcmp(v, "timer")) {
                if (a.i < a.argc) timer_dir = a.argv[a.i++];
                else a.failed = 1, tool_fail(cmd, "--encoder timer needs the Timer directory (--encoder timer DIR)");
            } else if (v && strcmp(v, "wavenet")) {
                a.failed = 1, tool_fail(cmd, "--encoder expects wavenet or timer DIR, got '%s'", v);
            }
        }
        else if (is_opt(o, "--skip")) skip_s = tool_value(&a, o);
        else if (is_opt(o, "--skip-init")) skip_init_s = tool_value(&a, o);
        else if (is_opt(o, "--skip-lr")) tool_float(&a, o, 0, 1000, &skip_lr);
        else if (is_opt(o, "--accum")) tool_int(&a, o, 1, 1 << 16, &accum);
        else if (is_opt(o, "--resume")) resume = 1;
        else if (is_opt(o, "--balance-files")) balance = 1;
        else if (is_opt(o, "--device")) {
            const char *v = tool_value(&a, o);
            if (v && !strcmp(v, "cuda")) {
#ifdef MRW_CUDA
                device = 1;
#else
                a.failed = 1, tool_fail(cmd, "--device cuda: this modrwkv was built without CUDA (build with make "
                                             "CUDA=1)");
#endif
            } else if (v && strcmp(v, "cpu")) {
                a.failed = 1, tool_fail(cmd, "--device must be cpu or cuda, not '%s'", v);
            }
        }
        else if (is_opt(o, "--gpus")) {
            tool_value(&a, o);
            a.failed = 1, tool_fail(cmd, "--gpus: the forecaster (--csv) trains on one GPU (--device cuda); several "
                                         "GPUs are for the text and ModRWKV image / audio stages");
        }
        else if (is_opt(o, "--target-interval")) {
            const char *v = tool_value(&a, o);
            if (v && (target_iv = mrw_parse_duration(v)) <= 0)
                a.failed = 1, tool_fail(cmd, "--target-interval expects a duration such as 15min, 1h or 1d, got '%s'", v);
        }
        else if (is_opt(o, "--stop-after")) tool_int(&a, o, 1, 1 << 30, &stop_after);
        else if (is_opt(o, "--lr")) tool_float(&a, o, 0, 10, &lr);
        else if (is_opt(o, "--warmup")) tool_int(&a, o, 0, 1 << 30, &warmup);
        else if (is_opt(o, "--steps")) tool_int(&a, o, 1, 1 << 30, &steps);
        else if (is_opt(o, "--batch") || !strcmp(o, "-b")) tool_int(&a, o, 1, 4096, &batch);
        else if (is_opt(o, "--clip")) tool_float(&a, o, 0, 1e9, &clip);
        else if (is_opt(o, "--seed")) tool_int(&a, o, 0, 1 << 30, &seed);
        else if (is_opt(o, "--out")) outdir = tool_value(&a, o);
        else if (is_opt(o, "--save-every")) tool_int(&a, o, 0, 1 << 30, &save_every);
        else if (is_opt(o, "--time-limit")) tool_int(&a, o, 0, 1 << 30, &time_limit);
        else if (is_opt(o, "--eval-windows")) tool_int(&a, o, 0, 1 << 30, &eval_windows);
        else if (is_opt(o, "--threads") || !strcmp(o, "-t")) tool_int(&a, o, 1, 256, &threads);
        else if (is_opt(o, "--quiet") || !strcmp(o, "-q")) quiet = 1;
        else tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    if (!n_csv) return tool_fail(cmd, "give the series with --csv FILE"), 2;
    if (!outdir) return tool_fail(cmd, "give the output directory with --out DIR"), 2;
    if (model && init) return tool_fail(cmd, "give either -m or --init, not both"), 2;
    if (skip_s) {
        if (!strcmp(skip_s, "on")) skip = 1;
        else if (!strcmp(skip_s, "off")) skip = 0;
        else return tool_fail(cmd, "--skip expects on or off, got '%s'", skip_s), 2;
    }
    if (skip_init_s) {
        if (!strcmp(skip_init_s, "ridge")) skip_ridge = 1;
        else if (!strcmp(skip_init_s, "zero")) skip_ridge = 0;
        else return tool_fail(cmd, "--skip-init expects ridge or zero, got '%s'", skip_init_s), 2;
    }
    int il = 2, ic = 64;
    if (init) {
        char *e1, *e2;
        long l1 = strtol(init, &e1, 10), l2 = *e1 == ',' ? strtol(e1 + 1, &e2, 10) : 0;
        if (*e1 != ',' || *e2 || l1 < 1 || l1 > 64 || l2 < 1 || l2 > 4096)
            return tool_fail(cmd, "--init expects LAYERS,WIDTH such as 2,64; got '%s'", init), 2;
        il = (int)l1, ic = (int)l2;
        if (ic > 64 && ic % 64) return tool_fail(cmd, "--init: the width %d is not a multiple of 64", ic), 2;
    }
    /* columns */
    char *colbuf = NULL;
    const char *cols[MAX_COLS];
    int n_cols = 0;
    if (columns && strcmp(columns, "all")) {
        if (!(colbuf = strdup(columns))) return tool_fail(cmd, "out of memory");
        for (char *p = strtok(colbuf, ","); p; p = strtok(NULL, ",")) {
            if (n_cols == MAX_COLS) return free(colbuf), tool_fail(cmd, "at most %d columns", MAX_COLS), 2;
            cols[n_cols++] = p;
        }
        if (!n_cols) return free(colbuf), tool_fail(cmd, "--columns is empty"), 2;
    }
    mrw_error err = {0};
    int rc = 1;
    mrw_ts_data data[MAX_CSV];
    memset(data, 0, sizeof data);
    mrw_forecaster *f = NULL;
    mrw_model *src = NULL;
    mrw_adam opt, opt_skip, opt_h; /* opt_h: --device cuda's host optimizer of the small sets */
    memset(&opt, 0, sizeof opt);
    memset(&opt_skip, 0, sizeof opt_skip);
    memset(&opt_h, 0, sizeof opt_h);
#ifdef MRW_CUDA
    mrw_forecaster_gpu *fg = NULL;
#endif
    FILE *log = NULL;
    float *x = NULL, *y = NULL;
    int64_t *cum = NULL;
    /* data: every file with the same lookback and horizon */
    for (int i = 0; i < n_csv; i++) {
        mrw_ts_dataset ds;
        if (mrw_ts_dataset_find(csvs[i], dataset, &ds, &err)) {
            tool_fail(cmd, "%s", err.msg);
            goto done;
        }
        if (!lookback) lookback = ds.lookback;
        if (!horizon) horizon = ds.horizon;
        if (mrw_ts_data_load(&data[i], csvs[i], n_cols ? cols : NULL, n_cols, dataset, lookback, horizon, 1, &err)) {
            tool_fail(cmd, "%s", err.msg);
            goto done;
        }
    }
    if (!(cum = malloc(sizeof *cum * (n_csv + 1)))) goto oom;
    cum[0] = 0;
    for (int i = 0; i < n_csv; i++) cum[i + 1] = cum[i] + mrw_ts_data_windows(&data[i], MRW_TS_TRAIN);
    if (cum[n_csv] < 1) {
        tool_fail(cmd, "no training window of %d -> %d in the given series", lookback, horizon);
        goto done;
    }
    /* model */
    mrw_forecaster_config fc;
    memset(&fc, 0, sizeof fc);
    fc.lookback = lookback, fc.horizon = horizon, fc.adapter_scale = scale, fc.n_prompt = n_prompt;
    if (timer_dir) {
        if (patch_set && patch != 1) {
            tool_fail(cmd, "--patch: a Timer encoder has its own patches of 96 points (leave --patch out)");
            goto done;
        }
        patch = 1;
    }
    fc.patch = patch, fc.skip = skip, fc.timer = timer_dir != NULL, fc.timer_path = timer_dir;
    if (patch > lookback) {
        tool_fail(cmd, "--patch %d is longer than the lookback %d", patch, lookback);
        goto done;
    }
    mrw_wavenet_config_default(&fc.enc, lookback);
    fc.enc.res_ch = fc.enc.skip_ch = enc_ch;
    if (model) {
        mrw_load_params lp = mrw_load_params_default();
        if (mrw_model_load(model, &lp, &src, &err)) {
            tool_fail(cmd, "%s", err.msg);
            goto done;
        }
        mrw_rwkv7_train_config_of(src, &fc.lm);
    } else {
        mrw_forecaster_lm_config(&fc.lm, il, ic);
    }
    if (mrw_forecaster_new(&fc, batch, threads, &f, &err)) {
        tool_fail(cmd, "%s", err.msg);
        goto done;
    }
    mrw_forecaster_init(f, (uint64_t)seed);
    if (src) {
        if (mrw_rwkv7_train_from_model(f->lm, src, &err)) {
            tool_fail(cmd, "%s: %s", model, err.msg);
            goto done;
        }
        mrw_model_free(src);
        src = NULL;
    }
    if (skip && skip_ridge && !resume) { /* the skip path from the closed-form ridge fit (n-weighted over files, or
                                          * equally weighted with --balance-files, as the windows are drawn) */
        const size_t nw = (size_t)horizon * lookback;
        float *w = calloc(nw, sizeof *w);
        int64_t n_all = 0;
        if (!w) goto oom;
        /* --target-interval: the files sampled at the interval nearest to it (on a log scale: 1 h is as far from
         * 30 min as from 2 h); a file without dates is never nearest */
        unsigned char use[MAX_CSV];
        memset(use, 1, sizeof use);
        if (target_iv > 0) {
            double dist[MAX_CSV], best = INFINITY;
            for (int i = 0; i < n_csv; i++) {
                double iv;
                mrw_error e2;
                dist[i] = mrw_csv_interval(csvs[i], &iv, &e2) ? INFINITY : fabs(log2(iv / target_iv));
                if (dist[i] < best) best = dist[i];
                if (!quiet && isinf(dist[i])) fprintf(stderr, "modrwkv train: %s\n", e2.msg);
            }
            if (isinf(best)) {
                free(w);
                tool_fail(cmd, "--target-interval: no --csv file has a date column to read its sampling interval from");
                goto done;
            }
            for (int i = 0; i < n_csv; i++) use[i] = dist[i] <= best + 0.01;
        }
        for (int i = 0; i < n_csv; i++) {
            if (!use[i]) continue;
            mrw_ts_dlinear lin;
            memset(&lin, 0, sizeof lin);
            if (mrw_ts_dlinear_fit(&lin, &data[i], NULL, 0, &err)) {
                free(w);
                tool_fail(cmd, "%s: ridge fit for the skip path: %s", csvs[i], err.msg);
                goto done;
            }
            const int64_t wt = balance ? 1 : lin.n_train;
            for (size_t j = 0; j < nw; j++) w[j] += (float)wt * lin.w[j];
            n_all += wt;
            if (!quiet)
                fprintf(stderr, "modrwkv train: skip path from the ridge fit of %s (alpha %g, validation MSE %.4f)\n",
                        csvs[i], lin.alpha, lin.val_mse);
            mrw_ts_dlinear_free(&lin);
        }
        for (size_t j = 0; j < nw; j++) w[j] /= (float)(n_all > 0 ? n_all : 1);
        mrw_forecaster_set_skip(f, w, &err);
        free(w);
    }
    mrw_param_set *sets[4];
    int n_sets = mrw_forecaster_sets(f, sets);
    mrw_adam_config acfg = mrw_adam_config_default();
    int groups = MRW_PG_ENCODER | MRW_PG_ADAPTER | (freeze ? 0 : MRW_PG_RWKV);
    if (mrw_adam_init(&opt, &acfg, sets, n_sets, groups, &err) ||
        (skip && mrw_adam_init(&opt_skip, &acfg, sets, n_sets, MRW_FC_PG_SKIP, &err))) {
        tool_fail(cmd, "%s", err.msg);
        goto done;
    }
    if (device && mrw_adam_init(&opt_h, &acfg, sets, n_sets, MRW_PG_ENCODER | MRW_PG_ADAPTER, &err)) {
        tool_fail(cmd, "%s", err.msg);
        goto done;
    }
    if (skip_lr < 0) skip_lr = skip_ridge ? 0.05f : 1.0f;
    mrw_schedule sched = {MRW_SCHED_COSINE, lr, lr / 10, warmup < steps ? warmup : 0, steps, 0.2};
    /* output */
    if (mkdir(outdir, 0777) && errno != EEXIST) {
        tool_fail(cmd, "cannot create '%s': %s", outdir, strerror(errno));
        goto done;
    }
    char path_model[4096], path_log[4096], path_resume[4096], path_resume2[4096];
    snprintf(path_model, sizeof path_model, "%s/forecaster.safetensors", outdir);
    snprintf(path_log, sizeof path_log, "%s/train.jsonl", outdir);
    snprintf(path_resume, sizeof path_resume, "%s/resume.safetensors", outdir);
    snprintf(path_resume2, sizeof path_resume2, "%s/resume_skip.safetensors", outdir); /* the skip path's Adam */
    /* the options a resumed run must repeat (everything that changes the model, the data or the schedule) */
    char opts[8192];
    {
        int n = snprintf(opts, sizeof opts,
                         "{\"lookback\":%d,\"horizon\":%d,\"init\":\"%s\",\"model\":\"%s\",\"scale\":%d,\"prompt\":%d,"
                         "\"enc_channels\":%d,\"timer\":\"%s\",\"patch\":%d,\"skip\":%d,\"skip_ridge\":%d,\"skip_lr\":%.9g,\"freeze\":%d,\"lr\":%.9g,"
                         "\"warmup\":%d,\"steps\":%d,\"batch\":%d,\"accum\":%d,\"clip\":%.9g,\"seed\":%d,"
                         "\"columns\":\"%s\",\"dataset\":\"%s\",%s\"csv\":[",
                         lookback, horizon, init ? init : "", model ? model : "", scale, n_prompt, enc_ch, timer_dir ? timer_dir : "", patch, skip,
                         skip_ridge, skip_lr, freeze, lr, warmup, steps, batch, accum, clip, seed, columns ? columns : "all",
                         dataset ? dataset : "", balance ? "\"balance_files\":1," : "");
        if (target_iv > 0 && n < (int)sizeof opts) n += snprintf(opts + n, sizeof opts - n, "\"target_interval_s\":%.9g,", target_iv);
        for (int i = 0; i < n_csv && n < (int)sizeof opts; i++)
            n += snprintf(opts + n, sizeof opts - n, "%s\"%s\"", i ? "," : "", csvs[i]);
        if (n < (int)sizeof opts) snprintf(opts + n, sizeof opts - n, "]}");
    }
    uint64_t rng = 0x5EEDull ^ (uint64_t)seed * 0x9E3779B97F4A7C15ull;
    int step0 = 0;
    int64_t tokens = 0;
    double elapsed0 = 0;
    if (resume) {
        mrw_train_state st;
        memset(&st, 0, sizeof st);
        if (mrw_ckpt_load_resume(path_resume, &opt, &st, &err)) {
            tool_fail(cmd, "--resume: %s", err.msg);
            goto done;
        }
        if (skip) {
            mrw_train_state st2;
            memset(&st2, 0, sizeof st2);
            if (mrw_ckpt_load_resume(path_resume2, &opt_skip, &st2, &err)) {
                free((char *)st.options);
                tool_fail(cmd, "--resume: %s", err.msg);
                goto done;
            }
            free((char *)st2.options);
        }
        const int same = st.options && !strcmp(st.options, opts);
        if (!same) {
            tool_fail(cmd, "--resume: the options differ from the saved run's:\n  saved: %s\n  now:   %s",
                      st.options ? st.options : "(none)", opts);
            free((char *)st.options);
            goto done;
        }
        free((char *)st.options);
        step0 = (int)st.step, rng = st.rng, tokens = st.tokens, elapsed0 = st.elapsed_s;
        if (!quiet) fprintf(stderr, "modrwkv train: resuming %s at step %d of %d\n", path_resume, step0, steps);
    }
#ifdef MRW_CUDA
    if (device) { /* after a resume loaded the weights and moments on the host: everything up */
        const char *f32 = getenv("MRW_TRAIN_GPU_FP32"); /* 1: fp32 activations and GEMMs (the parity mode) */
        const int fp32 = f32 && f32[0] == '1';
        if (mrw_forecaster_gpu_new(f, fp32, freeze, 0, &fg, &err)) {
            tool_fail(cmd, "--device cuda: %s", err.msg);
            goto done;
        }
        if (resume) {
            moments_copy(&opt_h, &opt);
            opt_h.t = opt.t;
            if (mrw_forecaster_gpu_moments(fg, 1, &opt, &err)) {
                tool_fail(cmd, "--resume: %s", err.msg);
                goto done;
            }
        }
        if (!quiet)
            fprintf(stderr, "modrwkv train: on the GPU (%s, %.2f GiB of device memory)\n", fp32 ? "fp32" : "bf16",
                    mrw_forecaster_gpu_bytes(fg) / 1073741824.0);
    }
#endif
    if (!(log = fopen(path_log, resume ? "a" : "w"))) {
        tool_fail(cmd, "cannot write '%s'", path_log);
        goto done;
    }
    if (!(x = malloc(sizeof *x * (size_t)batch * lookback)) || !(y = malloc(sizeof *y * (size_t)batch * horizon)))
        goto oom;
    int64_t n_params = 0;
    for (int i = 0; i < n_sets; i++) n_params += (int64_t)sets[i]->total;
    if (!quiet)
        fprintf(stderr, "modrwkv train: forecaster %d -> %d, %" PRId64 " training windows in %d file(s); RWKV-7 L%d "
                        "C%d, adapter x%d, %d prompt tokens; %.2fM parameters\n", lookback, horizon, cum[n_csv], n_csv,
                fc.lm.n_layer, fc.lm.n_embd, scale, n_prompt, n_params / 1e6);
    /* metadata */
    char meta_data[1024] = "", meta_steps[32];
    for (int i = 0; i < n_csv; i++) {
        size_t l = strlen(meta_data);
        snprintf(meta_data + l, sizeof meta_data - l, "%s%s", i ? ";" : "", data[i].ds.name);
    }
    const char *mk[3] = {"modrwkv.forecaster.datasets", "modrwkv.forecaster.columns", "modrwkv.forecaster.steps"};
    const char *mv[3] = {meta_data, columns ? columns : "all", meta_steps};

    mrw_progress bar;
    mrw_progress_start(&bar, "train", (uint64_t)steps, "steps", !quiet);
    mrw_progress_update(&bar, (uint64_t)step0);
    const double t_start = mrw_now() - elapsed0;
    const char *kill_at = getenv("MRW_TRAIN_KILL_AFTER_STEP"); /* tests: SIGKILL itself after that step */
    double first_loss = NAN, last_loss = NAN;
    int steps_done = steps;
    const int step_end = stop_after && step0 + stop_after < steps ? step0 + stop_after : steps;
    for (int step = step0; step < step_end; step++) {
        const double t0 = mrw_now();
#ifdef MRW_CUDA
        if (fg) { /* the host sets' gradients (not RWKV-7's host copy, which the GPU path never uses) and the device's */
            for (int i = 0; i < n_sets; i++)
                if (sets[i] != mrw_rwkv7_train_params(f->lm)) memset(sets[i]->g, 0, sets[i]->total * sizeof(float));
            if (mrw_forecaster_gpu_zero_grad(fg, &err)) {
                tool_fail(cmd, "step %d: %s", step + 1, err.msg);
                goto done;
            }
        } else
#endif
            mrw_adam_zero_grad(&opt);
        double loss = 0;
        for (int k = 0; k < accum; k++) {
            for (int b = 0; b < batch; b++) {
                int64_t w;
                int i = 0;
                if (balance) { /* a file with no training window is never drawn */
                    do i = (int)(rng_next(&rng) % (uint64_t)n_csv);
                    while (cum[i + 1] == cum[i]);
                    w = cum[i] + (int64_t)(rng_next(&rng) % (uint64_t)(cum[i + 1] - cum[i]));
                } else {
                    w = (int64_t)(rng_next(&rng) % (uint64_t)cum[n_csv]);
                    while (w >= cum[i + 1]) i++;
                }
                mrw_ts_data_window(&data[i], MRW_TS_TRAIN, w - cum[i], x + (size_t)b * lookback,
                                   y + (size_t)b * horizon, NULL);
            }
            double l;
            int failed;
#ifdef MRW_CUDA
            if (fg)
                failed = mrw_forecaster_gpu_forward(fg, x, y, batch, NULL, &l, &err) ||
                         mrw_forecaster_gpu_backward(fg, 1.0f / (float)accum, &err);
            else
#endif
                failed = mrw_forecaster_forward(f, x, y, batch, NULL, &l, &err) ||
                         mrw_forecaster_backward(f, 1.0f / (float)accum, freeze, &err);
            if (failed) {
                tool_fail(cmd, "step %d: %s", step + 1, err.msg);
                goto done;
            }
            loss += l / accum;
        }
        if (!isfinite(loss)) {
            tool_fail(cmd, "the loss is %g at step %d: lower --lr", loss, step + 1);
            goto done;
        }
        const double cur = mrw_schedule_lr(&sched, step);
        double norm;
#ifdef MRW_CUDA
        if (fg) {
            if (gpu_step(fg, &opt_h, &acfg, clip, cur, &norm, &err)) {
                tool_fail(cmd, "step %d: %s", step + 1, err.msg);
                goto done;
            }
        } else
#endif
        {
            norm = mrw_clip_grad_norm(&opt, clip);
            mrw_adam_step(&opt, cur);
        }
        if (skip) { /* the skip path: its own clip and Adam at skip_lr x the schedule */
            mrw_clip_grad_norm(&opt_skip, clip);
            mrw_adam_step(&opt_skip, cur * skip_lr);
        }
#ifdef MRW_CUDA
        if (fg && mrw_forecaster_gpu_upload_small(fg, &err)) { /* the host step's WaveNet and adapter weights */
            tool_fail(cmd, "step %d: %s", step + 1, err.msg);
            goto done;
        }
#endif
        tokens += (int64_t)batch * accum * f->T;
        const double now = mrw_now(), dt = now - t0;
        if (step == step0) first_loss = loss;
        last_loss = loss;
        fprintf(log,
                "{\"step\":%d,\"epoch\":%.6f,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.6f,\"tokens\":%" PRId64
                ",\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f}\n",
                step + 1, (double)(step + 1) * batch * accum / (double)cum[n_csv], loss, cur, norm, tokens,
                dt > 0 ? (double)batch * accum * f->T / dt : 0.0, now - t_start);
        fflush(log);
        char label[96];
        snprintf(label, sizeof label, "train loss %.4f lr %.2e", loss, cur);
        bar.label = label;
        mrw_progress_update(&bar, (uint64_t)step + 1);
        bar.label = "train";
        const int out_of_time = time_limit > 0 && mrw_now() - t_start > time_limit;
        if ((save_every > 0 && (step + 1) % save_every == 0) || step + 1 == step_end || out_of_time) {
            snprintf(meta_steps, sizeof meta_steps, "%d", step + 1);
            mrw_train_state st = {.step = step + 1, .rng = rng, .tokens = tokens, .elapsed_s = mrw_now() - t_start,
                                  .options = opts};
#ifdef MRW_CUDA
            if (fg && gpu_to_host(fg, &opt, &opt_h, &err)) {
                tool_fail(cmd, "%s", err.msg);
                goto done;
            }
#endif
            if (mrw_forecaster_save(f, path_model, mk, mv, 3, &err) ||
                mrw_ckpt_save_resume(path_resume, &opt, &st, &err) ||
                (skip && mrw_ckpt_save_resume(path_resume2, &opt_skip, &st, &err))) {
                tool_fail(cmd, "%s", err.msg);
                goto done;
            }
        }
        if (kill_at && atoi(kill_at) == step + 1) { /* tests: an interrupted run (then --resume) */
            fflush(NULL);
            raise(SIGKILL);
        }
        if (out_of_time || step + 1 == step_end) {
            steps_done = step + 1;
            break;
        }
    }
    mrw_progress_finish(&bar);
    if (!quiet)
        fprintf(stderr, "modrwkv train: done: %d steps%s, loss %.4f -> %.4f, %.1f s; wrote %s\n", steps_done,
                steps_done < steps ? " (stopped early)" : "", first_loss,
                last_loss, mrw_now() - t_start, path_model);
    if (eval_windows > 0) { /* on the host (the GPU run's weights were downloaded with the last checkpoint) */
        for (int i = 0; i < n_csv; i++) {
            double mse, mae;
            int64_t nw;
            if (mrw_forecaster_eval(f, &data[i], MRW_TS_VAL, eval_windows, !quiet, &mse, &mae, &nw, &err)) {
                tool_fail(cmd, "%s: %s", csvs[i], err.msg);
                goto done;
            }
            printf("%s validation: MSE %.4f MAE %.4f (%" PRId64 " windows)\n", csvs[i], mse, mae, nw);
        }
    }
    rc = 0;
    goto done;
oom:
    tool_fail(cmd, "out of memory");
done:
    if (log) fclose(log);
    free(x), free(y), free(cum), free(colbuf);
    mrw_adam_free(&opt);
    mrw_adam_free(&opt_skip);
    mrw_adam_free(&opt_h);
#ifdef MRW_CUDA
    mrw_forecaster_gpu_free(fg);
#endif
    mrw_forecaster_free(f);
    if (src) mrw_model_free(src);
    for (int i = 0; i < n_csv; i++) mrw_ts_data_free(&data[i]);
    return rc;
}
