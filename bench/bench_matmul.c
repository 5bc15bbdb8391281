/* Kernel benchmark: GEMM GFLOP/s (prefill shapes) and matrix-vector GB/s (decode shapes) for every dtype,
 * next to the machine's measured fp32 FMA rate and read bandwidth.
 *   build/bench/bench_matmul [threads] [T] */
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

int main(int argc, char **argv) {
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
