/* The machine's limits, measured in the same run as a benchmark so ratios are meaningful on noisy hosts:
 * fp32 FMA throughput (independent FMA chains in registers) and memory read bandwidth (a 1 GiB buffer
 * summed by all threads). Header-only, shared by the bench programs. */
#ifndef MRW_BENCH_MACHINE_H
#define MRW_BENCH_MACHINE_H

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 mrw_bvec;
#define MRW_BVEC_LANES 16
#define BV_SET1(x) _mm512_set1_ps(x)
#define BV_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define BV_SUM(v) _mm512_reduce_add_ps(v)
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 mrw_bvec;
#define MRW_BVEC_LANES 8
#define BV_SET1(x) _mm256_set1_ps(x)
#define BV_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
static inline float bv_sum256(__m256 v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#define BV_SUM(v) bv_sum256(v)
#else
typedef float mrw_bvec;
#define MRW_BVEC_LANES 1
#define BV_SET1(x) (x)
#define BV_FMA(a, b, c) ((a) * (b) + (c))
#define BV_SUM(v) (v)
#endif

static __attribute__((noinline)) float mrw_bench_fma_chain(long iters, float seed) {
    mrw_bvec a0 = BV_SET1(seed), a1 = BV_SET1(seed + 1), a2 = BV_SET1(seed + 2), a3 = BV_SET1(seed + 3),
             a4 = BV_SET1(seed + 4), a5 = BV_SET1(seed + 5), a6 = BV_SET1(seed + 6), a7 = BV_SET1(seed + 7),
             a8 = BV_SET1(seed + 8), a9 = BV_SET1(seed + 9);
    const mrw_bvec b = BV_SET1(0.999f), c = BV_SET1(1e-7f);
    for (long i = 0; i < iters; i++) {
        a0 = BV_FMA(a0, b, c); a1 = BV_FMA(a1, b, c); a2 = BV_FMA(a2, b, c); a3 = BV_FMA(a3, b, c);
        a4 = BV_FMA(a4, b, c); a5 = BV_FMA(a5, b, c); a6 = BV_FMA(a6, b, c); a7 = BV_FMA(a7, b, c);
        a8 = BV_FMA(a8, b, c); a9 = BV_FMA(a9, b, c);
    }
    return BV_SUM(a0) + BV_SUM(a1) + BV_SUM(a2) + BV_SUM(a3) + BV_SUM(a4) + BV_SUM(a5) + BV_SUM(a6) + BV_SUM(a7) +
           BV_SUM(a8) + BV_SUM(a9);
}

/* Peak fp32 FMA rate in GFLOP/s with n threads (best of 3). */
static inline double mrw_bench_fma_gflops(int n) {
    const long iters = 20000000;
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = mrw_now();
        float s = 0;
#pragma omp parallel num_threads(n) reduction(+ : s)
        s += mrw_bench_fma_chain(iters, (float)omp_get_thread_num());
        double t = mrw_now() - t0;
        sink += s;
        double g = (double)iters * 10 * MRW_BVEC_LANES * 2 * n / t / 1e9;
        if (g > best) best = g;
    }
    (void)sink;
    return best;
}

/* Median of v[0..n) (sorts v). */
static inline int mrw_bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static inline double mrw_bench_median(double *v, int n) {
    qsort(v, n, sizeof *v, mrw_bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* A probe buffer of `bytes` (a multiple of 64), written by n threads so its pages are spread as they will be read. */
static inline uint64_t *mrw_bench_probe_buf(size_t bytes, int n) {
    uint64_t *buf = aligned_alloc(64, bytes);
    if (!buf) return NULL;
#pragma omp parallel for num_threads(n) schedule(static)
    for (size_t i = 0; i < bytes / 8; i++) buf[i] = i;
    return buf;
}

/* One timed read of the whole probe buffer by n threads, in GB/s. */
static inline double mrw_bench_read_once(const uint64_t *buf, size_t bytes, int n) {
    const size_t words = bytes / 8;
    uint64_t s = 0;
    double t0 = mrw_now();
#pragma omp parallel for num_threads(n) schedule(static) reduction(+ : s)
    for (size_t i = 0; i < words; i += 8)
        s += buf[i] + buf[i + 1] + buf[i + 2] + buf[i + 3] + buf[i + 4] + buf[i + 5] + buf[i + 6] + buf[i + 7];
    double t = mrw_now() - t0;
    static volatile uint64_t sink;
    sink += s;
    return bytes / t / 1e9;
}

/* Read bandwidth in GB/s with n threads over a 1 GiB buffer (best of 3). */
static inline double mrw_bench_read_gbps(int n) {
    const size_t bytes = (size_t)1 << 30;
    uint64_t *buf = mrw_bench_probe_buf(bytes, n);
    if (!buf) return 0;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double g = mrw_bench_read_once(buf, bytes, n);
        if (g > best) best = g;
    }
    free(buf);
    return best;
}

#endif
