/* Training step speed of the RWKV-7 forward + backward (src/train/rwkv7_train.c): tokens per second of
 * mrw_rwkv7_train_forward + mrw_rwkv7_train_backward for a small model (default L6 C256, F 1024, V 65536,
 * LoRA ranks from RWKV-LM's formulas: 32/32/32/64) at several batch shapes and thread counts, best of N
 * after a warm-up. tests/reference/bench_torch_train.py times the same step in PyTorch CPU.
 *
 *   build/bench/bench_train [--layers 6] [--embd 256] [--vocab 65536] [--shapes 1x256,4x256] [--threads 1,2]
 *                           [--reps 3] [--init ref|quick]
 *
 * --init quick fills the weights with small uniform noise instead of the reference init (whose orthogonal
 * V x C matrices take tens of seconds at one thread): the step's cost does not depend on the values, and a
 * profile (perf record / perf stat) of a quick-init run is then almost all training step.
 *
 * GFLOP/s counts the GEMMs only (2 per multiply-add; the backward as twice the forward). "fwd cpu ms" and "step cpu ms"
 * are the best process CPU times of the forward and of one step (all threads together): at one thread it is the steadier number on a loaded
 * machine, since it leaves out time spent waiting for a core. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_machine.h"
#include "train/rwkv7_train.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* CPU time of the whole process (all threads): at one thread it leaves out the time spent waiting for a core,
 * which makes it a steadier measure than wall time on a shared machine. */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (s && *s && n < max) {
        out[n++] = atoi(s);
        s = strchr(s, ',');
        if (s) s++;
    }
    return n;
}

int main(int argc, char **argv) {
    int L = 6, C = 256, V = 65536, reps = 3;
    const char *shapes = "1x256,4x256", *threads = NULL, *init = "ref";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--layers")) L = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--embd")) C = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--vocab")) V = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--shapes")) shapes = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--init")) init = argv[i + 1];
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    int thr[16], nthr;
    if (threads) nthr = parse_list(threads, thr, 16);
    else {
        const int p = omp_get_num_procs();
        nthr = 0;
        thr[nthr++] = 1;
        if (p > 1) thr[nthr++] = p;
    }
    int sb[16], st[16], nsh = 0;
    for (const char *s = shapes; s && *s && nsh < 16;) {
        sb[nsh] = atoi(s);
        const char *x = strchr(s, 'x');
        if (!x) break;
        st[nsh++] = atoi(x + 1);
        s = strchr(x, ',');
        if (s) s++;
    }
    /* RWKV-LM's rank suggestions: max(32, round(k·sqrt(C)/32)·32) with k = 2.5, 2.5, 1.7, 5 */
#define RANK(k) (int)fmax(32, nearbyint((k) * sqrt((double)C) / 32) * 32) /* half to even, as Python */
    mrw_rwkv7_train_config cfg = {.n_layer = L, .n_embd = C, .head_size = 64, .vocab = V, .ffn = 4 * C,
                                  .d_w = RANK(2.5), .d_a = RANK(2.5), .d_v = RANK(1.7), .d_g = RANK(5.0)};
    const double F = cfg.ffn;
    const double mm_per_tok = L * (4.0 * C * C + 2.0 * C * F + 2.0 * C * (cfg.d_w + cfg.d_a + cfg.d_v + cfg.d_g)) +
                              (double)V * C;
    printf("RWKV-7 training step (forward + backward, fp32): L%d C%d F%d V%d, LoRA %d/%d/%d/%d, %.1f M params\n", L,
           C, cfg.ffn, V, cfg.d_w, cfg.d_a, cfg.d_v, cfg.d_g,
           (mm_per_tok + (double)V * C + L * 20.0 * C) / 1e6);
    printf("machine: %d cores\n", omp_get_num_procs());
    printf("%-9s %3s | %9s %9s %9s | %10s %8s | %10s %11s\n", "BxT", "thr", "fwd ms", "bwd ms", "step ms", "tokens/s",
           "GFLOP/s", "fwd cpu ms", "step cpu ms");
    for (int si = 0; si < nsh; si++) {
        const int B = sb[si], T = st[si], BT = B * T;
        int32_t *tok = malloc(BT * sizeof *tok), *tgt = malloc(BT * sizeof *tgt);
        for (int i = 0; i < BT; i++) tok[i] = (i * 7919) % V, tgt[i] = (i * 104729 + 13) % V;
        for (int ti = 0; ti < nthr; ti++) {
            mrw_error err = {0};
            mrw_rwkv7_train *m = NULL;
            if (mrw_rwkv7_train_new(&cfg, B, T, thr[ti], &m, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            if (!strcmp(init, "quick")) {
                mrw_param_set *ps = mrw_rwkv7_train_params(m);
                uint64_t x = 88172645463325252ull;
                for (size_t i = 0; i < ps->total; i++) {
                    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                    ps->w[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5) * 0.2f;
                }
            } else {
                mrw_rwkv7_train_init(m, 1);
            }
            double best_f = 1e30, best_b = 1e30, best_cpu = 1e30, best_fcpu = 1e30;
            for (int r = 0; r <= reps; r++) { /* r = 0: warm-up */
                const double c0 = cpu_now(), t0 = now();
                mrw_rwkv7_train_forward(m, tok, NULL, NULL, tgt, B, T, NULL);
                const double t1 = now(), c1 = cpu_now();
                mrw_rwkv7_train_backward(m, 1.0f, 0, NULL);
                const double t2 = now(), c2 = cpu_now();
                if (r > 0) {
                    if (c2 - c0 < best_cpu) best_cpu = c2 - c0;
                    if (c1 - c0 < best_fcpu) best_fcpu = c1 - c0;
                    if (t1 - t0 < best_f) best_f = t1 - t0;
                    if (t2 - t1 < best_b) best_b = t2 - t1;
                }
            }
            const double step = best_f + best_b;
            char shp[32];
            snprintf(shp, sizeof shp, "%dx%d", B, T);
            printf("%-9s %3d | %9.1f %9.1f %9.1f | %10.0f %8.1f | %10.1f %11.1f\n", shp, thr[ti], best_f * 1e3, best_b * 1e3,
                   step * 1e3, BT / step, 6.0 * mm_per_tok * BT / step / 1e9, best_fcpu * 1e3, best_cpu * 1e3);
            fflush(stdout);
            mrw_rwkv7_train_free(m);
        }
        free(tok), free(tgt);
    }
    return 0;
}
