/* RWKV-7 speed on this CPU: prefill tokens/s for a 512-token prompt and decode tokens/s over 128 tokens, for
 * random models shaped 0.1B (L12 C768), 0.4B (L24 C1024) and 1.5B (L24 C2048) with vocab 65536, per weight
 * dtype and thread count, next to the machine's limits measured in the same run:
 *   decode:  weight bytes read per token x tokens/s, as a fraction of the measured read bandwidth
 *            (bytes per token = every weight except the embedding table, of which one row is read);
 *   prefill: 2 x (matmul parameters per token) x tokens/s, as a fraction of the measured fp32 FMA rate.
 * This host's bandwidth swings by +-15% from minute to minute, so each cell measures the limits right around
 * itself (bandwidth before and after decoding, the larger of two best-of-3 probes taken as the limit; FMA rate
 * before prefill) and reports the best of three prefill and five decode repetitions. "% of BW, paired": each decode
 * repetition runs right after one single pass of the probe, and the column is the median over the repetitions of
 * (that repetition's weight GB/s) / (that probe pass) — the same ratio under the same momentary bandwidth.
 * The llama.cpp column quotes the numbers given for this kind of machine (2 threads) in the project's issue.
 *
 *   build/bench/bench_rwkv7 [--models 0.1b,0.4b,1.5b] [--dtypes bf16,f16,q8_0,q4_0] [--threads 1,2]
 *                           [--prompt 512] [--gen 128] [--exact] [--ab-slices ROUNDS | --ab-interleave ROUNDS]
 * --ab-slices: decode only, the model with its long rows in column slices (the default) against the same weights
 * row-major (MRW_NO_SLICES=1), alternating --gen tokens of each for ROUNDS rounds in one process so that both see
 * the same momentary bandwidth; prints the median tokens/s of each and the median of the per-round ratios.
 * --ab-interleave: the same with q4_0 rows interleaved (the default) against plain rows (MRW_NO_INTERLEAVE=1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "bench_machine.h"
#include "modrwkv.h"

typedef struct {
    const char *name;
    int L, C;
    /* llama.cpp, 2 threads: prefill / decode tokens/s for f16, q8_0, q4_0 */
    double ref_pp[3], ref_tg[3];
} shape;

static const shape k_shapes[] = {
    {"0.1b", 12, 768, {600, 655, 975}, {88, 96, 180}},
    {"0.4b", 24, 1024, {191, 248, 252}, {36, 49, 60}},
    {"1.5b", 24, 2048, {57, 54, 80}, {11, 13.5, 22.6}},
};

static int ref_index(mrw_dtype dt) { return dt == MRW_DT_Q8_0 ? 1 : dt == MRW_DT_Q4_0 ? 2 : 0; }

static int in_list(const char *list, const char *item) {
    size_t n = strlen(item);
    for (const char *p = list; (p = strstr(p, item)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}

#define DECODE_REPS 5
#define PROBE_BYTES ((size_t)1 << 30)

static double decode_rate(mrw_context *ctx, mrw_state *st, float *logits, int n_gen) {
    mrw_error err = {0};
    int32_t tok = 1;
    double t0 = mrw_now();
    for (int i = 0; i < n_gen; i++) {
        mrw_eval_tokens(ctx, st, &tok, 1, MRW_LOGITS_LAST, logits, &err);
        tok = (int32_t)((tok * 48271u + 11) % 65536u);
    }
    return n_gen / (mrw_now() - t0);
}

/* --ab-slices / --ab-interleave: decode's layout (default) against the one that `off_var` turns off, alternating in
 * one process. */
static const char *off_var = "MRW_NO_SLICES";
static int ab_layout(const mrw_rwkv7_config *cfg, const char *name, const char *dname, mrw_dtype dt, int t, int n_gen,
                     int rounds) {
    mrw_model *m[2] = {NULL, NULL}; /* 0: without, 1: with */
    mrw_context *ctx[2] = {NULL, NULL};
    mrw_state *st[2] = {NULL, NULL};
    mrw_error err = {0};
    int rc = 1;
    for (int k = 0; k < 2; k++) {
        if (k == 0) setenv(off_var, "1", 1);
        else unsetenv(off_var);
        mrw_context_params cp = mrw_context_params_default();
        cp.n_threads = t;
        if (mrw_model_new_random(cfg, dt, 7, &m[k], &err) || mrw_context_new(m[k], &cp, &ctx[k], &err)) {
            fprintf(stderr, "%s\n", err.msg);
            goto out;
        }
        st[k] = mrw_state_new(m[k]);
    }
    float *logits = malloc((size_t)cfg->n_vocab * sizeof *logits);
    double r[2][64], ratio[64];
    for (int k = 0; k < 2; k++) decode_rate(ctx[k], st[k], logits, 4); /* warm up */
    for (int i = 0; i < rounds; i++) {
        for (int j = 0; j < 2; j++) { /* which goes first alternates between rounds */
            const int k = (i + j) % 2;
            r[k][i] = decode_rate(ctx[k], st[k], logits, n_gen);
        }
        ratio[i] = r[1][i] / r[0][i];
    }
        const double bw = mrw_bench_read_gbps(t);
    const double ratio_med = mrw_bench_median(ratio, rounds); /* sorts ratio: [0] and [rounds - 1] are min and max */
    printf("| %s | %s | %d | %.1f | %.1f | %.3fx (%.2f-%.2f) | %.1f |\n", name, dname, t, mrw_bench_median(r[0], rounds),
           mrw_bench_median(r[1], rounds), ratio_med, ratio[0], ratio[rounds - 1], bw);
    fflush(stdout);
    free(logits);
    rc = 0;
out:
    for (int k = 0; k < 2; k++) {
        mrw_state_free(st[k]);
        mrw_context_free(ctx[k]);
        mrw_model_free(m[k]);
    }
    return rc;
}

int main(int argc, char **argv) {
    const char *models = "0.1b,0.4b,1.5b", *dtypes = "bf16,f16,q8_0,q4_0", *threads = "1,2";
    int n_prompt = 512, n_gen = 128, exact = 0, ab_rounds = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--models") && i + 1 < argc) models = argv[++i];
        else if (!strcmp(argv[i], "--dtypes") && i + 1 < argc) dtypes = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = argv[++i];
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) n_prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc) n_gen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--exact")) exact = 1;
        else if (!strcmp(argv[i], "--ab-slices") && i + 1 < argc) ab_rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ab-interleave") && i + 1 < argc) ab_rounds = atoi(argv[++i]), off_var = "MRW_NO_INTERLEAVE";
        else {
            fprintf(stderr, "usage: %s [--models 0.1b,0.4b,1.5b] [--dtypes bf16,f16,q8_0,q4_0] [--threads 1,2] "
                            "[--prompt 512] [--gen 128] [--exact] [--ab-slices ROUNDS | --ab-interleave ROUNDS]\n", argv[0]);
            return 2;
        }
    }
    if (n_prompt < 1 || n_gen < 1 || ab_rounds < 0 || ab_rounds > 64) return 2;
    if (ab_rounds) {
        const int sl = !strcmp(off_var, "MRW_NO_SLICES");
        const char *without = sl ? "row-major" : "plain rows", *with = sl ? "sliced" : "interleaved";
        printf("decode %d tokens per round, %d rounds, %s and %s alternating\n\n", n_gen, ab_rounds, without, with);
        printf("| model | dtype | thr | %s tok/s | %s tok/s | %s / %s, median (min-max) | read BW GB/s after |\n"
               "|---|---|---|---|---|---|---|\n", without, with, with, without);
        for (size_t si = 0; si < sizeof k_shapes / sizeof *k_shapes; si++) {
            const char *dnames[] = {"bf16", "f16", "q8_0", "q4_0"};
            if (!in_list(models, k_shapes[si].name)) continue;
            for (int di = 0; di < 4; di++) {
                if (!in_list(dtypes, dnames[di])) continue;
                mrw_dtype dt;
                mrw_dtype_parse(dnames[di], &dt);
                mrw_rwkv7_config cfg = {.n_layer = k_shapes[si].L, .n_embd = k_shapes[si].C, .head_size = 64,
                                        .n_vocab = 65536};
                for (int t = 1; t <= 2; t++) {
                    char tn[4];
                    snprintf(tn, sizeof tn, "%d", t);
                    if (in_list(threads, tn) && ab_layout(&cfg, k_shapes[si].name, dnames[di], dt, t, n_gen, ab_rounds))
                        return 1;
                }
            }
        }
        return 0;
    }
    double fma[3] = {0}, bw[3] = {0};
    for (int t = 1; t <= 2; t++) {
        char tn[4];
        snprintf(tn, sizeof tn, "%d", t);
        if (!in_list(threads, tn)) continue;
        fma[t] = mrw_bench_fma_gflops(t);
        bw[t] = mrw_bench_read_gbps(t);
        printf("machine, %d thread%s: fp32 FMA %.1f GFLOP/s, read bandwidth %.1f GB/s\n", t, t > 1 ? "s" : "", fma[t], bw[t]);
    }
    printf("prompt %d tokens, decode %d tokens%s\n\n", n_prompt, n_gen, exact ? ", exact prefill" : "");
    printf("| model | dtype | thr | prefill tok/s | GFLOP/s | %% of FMA GFLOP/s | vs llama.cpp | decode tok/s | GB/s | "
           "%% of BW GB/s | %% of BW, paired | vs llama.cpp |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    uint64_t *probe = mrw_bench_probe_buf(PROBE_BYTES, 2);
    fflush(stdout);
    for (size_t si = 0; si < sizeof k_shapes / sizeof *k_shapes; si++) {
        const shape *sh = &k_shapes[si];
        if (!in_list(models, sh->name)) continue;
        const char *dnames[] = {"bf16", "f16", "q8_0", "q4_0"};
        for (int di = 0; di < 4; di++) {
            if (!in_list(dtypes, dnames[di])) continue;
            mrw_dtype dt;
            mrw_dtype_parse(dnames[di], &dt);
            mrw_rwkv7_config cfg = {.n_layer = sh->L, .n_embd = sh->C, .head_size = 64, .n_vocab = 65536};
            mrw_model *m = NULL;
            mrw_error err = {0};
            if (mrw_model_new_random(&cfg, dt, 7, &m, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            mrw_model_info in = mrw_model_get_info(m);
            const double C = in.n_embd, F = in.n_ffn;
            const double mm_params = in.n_layer * (4 * C * C + 2 * F * C + C * (in.lora_w + in.lora_a + in.lora_g) * 2 +
                                                   C * in.lora_v * 2);
            const double bytes_per_token = (double)in.decode_bytes;
            for (int t = 1; t <= 2; t++) {
                if (!fma[t]) continue;
                mrw_context_params cp = mrw_context_params_default();
                cp.n_threads = t;
                cp.exact = exact;
                mrw_context *ctx = NULL;
                if (mrw_context_new(m, &cp, &ctx, &err)) {
                    fprintf(stderr, "%s\n", err.msg);
                    return 1;
                }
                mrw_state *st = mrw_state_new(m);
                int32_t *ids = malloc((size_t)n_prompt * sizeof *ids);
                float *logits = malloc((size_t)in.n_vocab * sizeof *logits);
                for (int i = 0; i < n_prompt; i++) ids[i] = (int32_t)((i * 2654435761u) % 65536u);
                mrw_eval_tokens(ctx, st, ids, 8, MRW_LOGITS_LAST, logits, &err); /* warm up */
                const double fma_cell = mrw_bench_fma_gflops(t);
                double tp = 1e30, td = 1e30;
                for (int rep = 0; rep < 3; rep++) {
                    mrw_state_reset(st);
                    double t0 = mrw_now();
                    mrw_eval_tokens(ctx, st, ids, n_prompt, MRW_LOGITS_LAST, logits, &err);
                    double dt = mrw_now() - t0;
                    if (dt < tp) tp = dt;
                }
                double bw_before = mrw_bench_read_gbps(t);
                /* each decode repetition right after one probe pass: the ratio of the two is taken under the same
                 * momentary bandwidth, and its median is robust to the swings of a shared host */
                double ratio[DECODE_REPS];
                for (int rep = 0; rep < DECODE_REPS; rep++) {
                    const double pr = probe ? mrw_bench_read_once(probe, PROBE_BYTES, t) : 0;
                    const double tg_rep = decode_rate(ctx, st, logits, n_gen);
                    ratio[rep] = pr > 0 ? bytes_per_token * tg_rep / 1e9 / pr : 0;
                    if (n_gen / tg_rep < td) td = n_gen / tg_rep;
                }
                const double ratio_med = mrw_bench_median(ratio, DECODE_REPS);
                double bw_after = mrw_bench_read_gbps(t), bw_cell = bw_before > bw_after ? bw_before : bw_after;
                if (getenv("MRW_BENCH_DEBUG")) fprintf(stderr, "bandwidth before %.1f after %.1f GB/s\n", bw_before, bw_after);
                double pp = n_prompt / tp, tg = n_gen / td;
                double gflops = 2 * mm_params * pp / 1e9, gbps = bytes_per_token * tg / 1e9;
                int ri = ref_index(dt);
                char rpp[32] = "", rtg[32] = "";
                if (t == 2) {
                    snprintf(rpp, sizeof rpp, "%.2fx", pp / sh->ref_pp[ri]);
                    snprintf(rtg, sizeof rtg, "%.2fx", tg / sh->ref_tg[ri]);
                }
                printf("| %s | %s | %d | %.1f | %.1f | %.0f%% of %.0f | %s | %.1f | %.1f | %.0f%% of %.1f | %.0f%% | %s |\n",
                       sh->name, dnames[di], t, pp, gflops, 100 * gflops / fma_cell, fma_cell, rpp, tg, gbps,
                       100 * gbps / bw_cell, bw_cell, 100 * ratio_med, rtg);
                fflush(stdout);
                free(ids);
                free(logits);
                mrw_state_free(st);
                mrw_context_free(ctx);
            }
            mrw_model_free(m);
        }
    }
    free(probe);
    return 0;
}
