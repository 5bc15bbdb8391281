/* Kernel benchmark: GEMM GFLOP/s (prefill shapes) and matrix-vector GB/s (decode shapes) for every dtype,
 * next to the machine's measured fp32 FMA rate and read bandwidth.
 *   build/bench/bench_matmul [threads] [T]
 *   build/bench/bench_matmul --dram [threads] [rounds]
 * --dram: decode-shaped GEMV over 1 GiB of weights (far beyond the L3, as in a real decode), each round right
 * after one pass of the read-bandwidth probe, so that the ratio of the two is measured under the same
 * momentary bandwidth of a noisy host. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "bench_machine.h"
#include "kernels/cpu/matmul.h"
#include "tensor/dtype.h"

static double time_matmul(mrw_kctx *kc, const mrw_mat *W, const float *X, float *Y, int T, double min_time) {
    mrw_matmul(kc, W, X, W->cols, Y, W->rows, T, 0); /* warm up */
    int reps = 0;
    double t0 = mrw_now(), t;
    do {
        mrw_matmul(kc, W, X, W->cols, Y, W->rows, T, 0);
        reps++;
        t = mrw_now() - t0;
    } while (t < min_time);
    return t / reps;
}

static int dram_gemv(int nt, int rounds) {
    const size_t probe_bytes = (size_t)1 << 30, total = (size_t)1 << 30;
    uint64_t *probe = mrw_bench_probe_buf(probe_bytes, nt);
    if (!probe) return 1;
    mrw_kctx kc;
    mrw_kctx_init(&kc, nt);
    int shapes[8][2] = {{2048, 8192}, {8192, 2048}}, nshapes = 2;
    const char *env = getenv("MRW_DRAM_SHAPES"); /* e.g. "4096x4096,1024x16384" */
    if (env) {
        nshapes = 0;
        for (const char *q = env; *q && nshapes < 8;) {
            int o, k, len = 0;
            if (sscanf(q, "%dx%d%n", &o, &k, &len) != 2 || o < 1 || k < 32 || k % 32) {
                fprintf(stderr, "MRW_DRAM_SHAPES: expected OxK[,OxK...] with K a multiple of 32\n");
                return 2;
            }
            shapes[nshapes][0] = o;
            shapes[nshapes++][1] = k;
            q += len;
            if (*q == ',') q++;
        }
    }
    const mrw_dtype types[] = {MRW_DT_F32, MRW_DT_F16, MRW_DT_BF16, MRW_DT_Q8_0, MRW_DT_Q4_0};
    printf("threads %d, GEMV over 1 GiB of weights, %d rounds; each round: probe pass, then GEMV pass\n", nt, rounds);
    printf("%-6s %-11s | %9s %9s %9s | %7s %7s %7s\n", "dtype", "O x K", "probe med", "GEMV med", "GEMV max",
           "min %", "med %", "max %");
    for (int s = 0; s < nshapes; s++) {
        const int O = shapes[s][0], K = shapes[s][1];
        float *Wf = malloc((size_t)O * K * 4), *X = aligned_alloc(64, ((size_t)K * 4 + 63) & ~(size_t)63), *Y = malloc((size_t)O * 4);
        if (!Wf || !X || !Y) return 1;
        for (size_t i = 0; i < (size_t)O * K; i++) Wf[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        for (int i = 0; i < K; i++) X[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
            const mrw_dtype dt = types[ti];
            const size_t rb = mrw_dtype_row_bytes(dt, K), mb = ((size_t)O * rb + 4095) & ~(size_t)4095;
            const int n = (int)((total + mb - 1) / mb);
            uint8_t *all = aligned_alloc(4096, mb * n);
            if (!all) return 1;
            mrw_mat *W = malloc(sizeof *W * n);
            for (int o = 0; o < O; o++) mrw_from_f32(dt, Wf + (size_t)o * K, all + (size_t)o * rb, K);
            mrw_mat first; /* in decode's layout: q4_0 rows interleaved as a loaded model holds them */
            mrw_mat_init(&first, dt, O, K, all);
            const char *plain = getenv("MRW_NO_INTERLEAVE"); /* as for models (set and not "0"): plain rows */
            const int keep_plain = plain && *plain && strcmp(plain, "0");
            if (!keep_plain && mrw_mat_interleavable(&first) && mrw_mat_interleave(&first, all)) return 1;
            for (int m = 0; m < n; m++) {
                if (m) memcpy(all + mb * m, all, mb);
                W[m] = first;
                W[m].data = all + mb * m;
            }
            double pr[64], gv[64], ratio[64];
            for (int r = 0; r < rounds; r++) {
                pr[r] = mrw_bench_read_once(probe, probe_bytes, nt);
                double t0 = mrw_now();
                for (int m = 0; m < n; m++) mrw_matmul(&kc, &W[m], X, K, Y, O, 1, 0);
                gv[r] = (double)O * rb * n / (mrw_now() - t0) / 1e9;
                ratio[r] = gv[r] / pr[r];
            }
            double gmax = 0;
            for (int r = 0; r < rounds; r++) gmax = gv[r] > gmax ? gv[r] : gmax;
            qsort(pr, rounds, sizeof *pr, mrw_bench_cmp_double);
            qsort(gv, rounds, sizeof *gv, mrw_bench_cmp_double);
            qsort(ratio, rounds, sizeof *ratio, mrw_bench_cmp_double);
            printf("%-6s %5dx%-5d | %9.1f %9.1f %9.1f | %6.0f%% %6.0f%% %6.0f%%\n", mrw_dtype_name(dt), O, K,
                   pr[rounds / 2], gv[rounds / 2], gmax, 100 * ratio[0], 100 * ratio[rounds / 2],
                   100 * ratio[rounds - 1]);
            fflush(stdout);
            free(W);
            free(all);
        }
        free(Wf);
        free(X);
        free(Y);
    }
    mrw_kctx_free(&kc);
    free(probe);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--dram")) {
        int nt = argc > 2 ? atoi(argv[2]) : 2, rounds = argc > 3 ? atoi(argv[3]) : 7;
        if (nt < 1 || rounds < 1 || rounds > 64) {
            fprintf(stderr, "usage: bench_matmul --dram [threads >= 1] [rounds 1..64]\n");
            return 2;
        }
        return dram_gemv(nt, rounds);
    }
    int nt = argc > 1 ? atoi(argv[1]) : 2;
    int T = argc > 2 ? atoi(argv[2]) : 512;
    mrw_kctx kc;
    mrw_kctx_init(&kc, nt);
    double fma = mrw_bench_fma_gflops(nt), bw = mrw_bench_read_gbps(nt);
    printf("threads %d: fp32 FMA %.1f GFLOP/s, read bandwidth %.1f GB/s\n\n", nt, fma, bw);
    const int shapes[][2] = {{768, 768}, {3072, 768}, {768, 3072}, {2048, 2048}, {8192, 2048}, {2048, 8192}};
    const mrw_dtype types[] = {MRW_DT_F32, MRW_DT_F16, MRW_DT_BF16, MRW_DT_Q8_0, MRW_DT_Q4_0};
    printf("%-6s %-11s | %10s %6s | %10s %6s\n", "dtype", "O x K", "GEMM GF/s", "%FMA", "GEMV GB/s", "%BW");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int O = shapes[s][0], K = shapes[s][1];
        float *Wf = malloc((size_t)O * K * 4), *X = malloc((size_t)T * K * 4), *Y = malloc((size_t)T * O * 4);
        for (size_t i = 0; i < (size_t)O * K; i++) Wf[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        for (size_t i = 0; i < (size_t)T * K; i++) X[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
            mrw_dtype dt = types[ti];
            size_t rb = mrw_dtype_row_bytes(dt, K);
            uint8_t *Wd = aligned_alloc(64, ((size_t)O * rb + 63) & ~(size_t)63);
            for (int o = 0; o < O; o++) mrw_from_f32(dt, Wf + (size_t)o * K, Wd + (size_t)o * rb, K);
            mrw_mat W;
            mrw_mat_init(&W, dt, O, K, Wd);
            double tg = time_matmul(&kc, &W, X, Y, T, 0.3);
            double tv = time_matmul(&kc, &W, X, Y, 1, 0.3);
            double gf = 2.0 * O * K * T / tg / 1e9, gb = (double)O * rb / tv / 1e9;
            printf("%-6s %5dx%-5d | %10.1f %5.0f%% | %10.1f %5.0f%%\n", mrw_dtype_name(dt), O, K, gf, 100 * gf / fma, gb,
                   100 * gb / bw);
            fflush(stdout);
            free(Wd);
        }
        free(Wf);
        free(X);
        free(Y);
    }
    mrw_kctx_free(&kc);
    return 0;
}
