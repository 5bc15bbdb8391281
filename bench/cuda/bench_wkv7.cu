/* WKV7 training kernels on the GPU: forward, and forward + backward, in ms (bf16 inputs, fp32 state), next to the
 * official RWKV-LM kernel's numbers from issue 5 (H100, B8 T2048 H16 N64: 1.07 ms forward, 3.50 ms forward +
 * backward). Times are CUDA-event medians over many repetitions, rotating among several freshly drawn input sets
 * so no two consecutive runs read the same memory. Run on the GPU machine:
 *     make CUDA=1 cuda-bench && build-cuda/bench/cuda/bench_wkv7 [reps]
 * Also times each threads-per-row variant (the tuning the defaults in src/kernels/cuda/wkv7.cu come from) and the
 * chunked tensor-core kernels (variant 16, src/kernels/cuda/wkv7_chunk.cu), alone and paired with the others.
 * Shapes: the official reference shape, then the trainer's (0.1B batch 32, 0.4B batch 16, 1.5B batch 4).
 *     bench_wkv7 reps B,H [B,H ...]   only these shapes (T 2048) and only the chunked pairs (16/16, 16/17): for A/B
 *                                     runs (MRW_WKV7_BWD=1 picks the v1 chunked backward) and ncu */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/wkv7.h"

#define CUDA_OK(call)                                                                                      \
    do {                                                                                                   \
        cudaError_t e_ = (call);                                                                           \
        if (e_ != cudaSuccess) {                                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));         \
            exit(2);                                                                                       \
        }                                                                                                  \
    } while (0)
#define MRW_OK_OR_DIE(call)                                                                                \
    do {                                                                                                   \
        mrw_error err_;                                                                                    \
        if ((call) != MRW_OK) {                                                                            \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, err_.msg);                                  \
            exit(2);                                                                                       \
        }                                                                                                  \
    } while (0)

__device__ float hash_uniform(uint64_t seed, uint64_t i) { /* (-1, 1) */
    uint64_t z = seed + i * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((z >> 40) + 0.5) * (2.0f / 16777216.0f) - 1.0f;
}

/* Realistic ranges: w = -softplus(-omega) - 0.5 (decay 0.545..1), a = -kappa, b = kappa * alpha with
 * |kappa| about unit norm per head. */
__global__ void fill(size_t n, uint64_t seed, __nv_bfloat16 *r, __nv_bfloat16 *w, __nv_bfloat16 *k,
                     __nv_bfloat16 *v, __nv_bfloat16 *a, __nv_bfloat16 *b, __nv_bfloat16 *dy) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const float omega = 4.0f * hash_uniform(seed, 8 * e);
        const float kap = 0.2165f * hash_uniform(seed, 8 * e + 1), alpha = 0.5f + 0.5f * hash_uniform(seed, 8 * e + 2);
        r[e] = __float2bfloat16_rn(0.5f * hash_uniform(seed, 8 * e + 3));
        w[e] = __float2bfloat16_rn(-log1pf(expf(-omega)) - 0.5f);
        k[e] = __float2bfloat16_rn(0.5f * hash_uniform(seed, 8 * e + 4));
        v[e] = __float2bfloat16_rn(hash_uniform(seed, 8 * e + 5));
        a[e] = __float2bfloat16_rn(-kap);
        b[e] = __float2bfloat16_rn(kap * alpha);
        dy[e] = __float2bfloat16_rn(hash_uniform(seed, 8 * e + 6));
    }
}

struct inputs {
    __nv_bfloat16 *r, *w, *k, *v, *a, *b, *dy;
};

static double median(std::vector<double> x) {
    std::sort(x.begin(), x.end());
    return x[x.size() / 2];
}

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 50, NSETS = 4;
    cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs; bf16 in/out, fp32 state; median of %d reps over %d input sets\n", prop.name,
           prop.multiProcessorCount, reps, NSETS);
    if (reps <= 0) return 0;
    struct shape {
        int B, T, H;
        double off_fwd, off_all; /* official kernel, ms; 0 = not published */
    };
    std::vector<shape> shapes = {{8, 2048, 16, 1.07, 3.50}, {32, 2048, 12, 0, 0}, {16, 2048, 16, 0, 0}, {4, 2048, 32, 0, 0}};
    const bool only_chunked = argc > 2;
    if (only_chunked) {
        shapes.clear();
        for (int i = 2; i < argc; i++) {
            int b = 0, h = 0;
            if (sscanf(argv[i], "%d,%d", &b, &h) != 2 || b < 1 || h < 1) {
                fprintf(stderr, "bench_wkv7: bad shape '%s' (want B,H)\n", argv[i]);
                return 2;
            }
            shapes.push_back({b, 2048, h, b == 8 && h == 16 ? 1.07 : 0, b == 8 && h == 16 ? 3.50 : 0});
        }
    }
    printf("| shape B,T,H,N     | K fwd | K bwd |  fwd ms | bwd ms | fwd+bwd ms | official fwd | official f+b | f+b speedup |\n");
    printf("|-------------------|-------|-------|---------|--------|------------|--------------|--------------|-------------|\n");
    cudaEvent_t ev[3];
    for (auto &e : ev) CUDA_OK(cudaEventCreate(&e));
    for (const shape &s : shapes) {
        const size_t n = (size_t)s.B * s.T * s.H * MRW_WKV7_N;
        std::vector<inputs> sets(NSETS);
        for (int si = 0; si < NSETS; si++) {
            __nv_bfloat16 **p[] = {&sets[si].r, &sets[si].w, &sets[si].k, &sets[si].v, &sets[si].a, &sets[si].b,
                                   &sets[si].dy};
            for (auto pp : p) CUDA_OK(cudaMalloc((void **)pp, n * 2));
            fill<<<1024, 256>>>(n, 1234567ull * (si + 1) + (uint64_t)s.T * s.H, sets[si].r, sets[si].w, sets[si].k,
                                sets[si].v, sets[si].a, sets[si].b, sets[si].dy);
            CUDA_OK(cudaGetLastError());
        }
        void *y, *g[6];
        float *ck, *sa;
        CUDA_OK(cudaMalloc(&y, n * 2));
        for (auto &p : g) CUDA_OK(cudaMalloc(&p, n * 2));
        CUDA_OK(cudaMalloc((void **)&ck, mrw_cuda_wkv7_ckpt_floats(s.B, s.T, s.H) * 4));
        CUDA_OK(cudaMalloc((void **)&sa, mrw_cuda_wkv7_sa_floats(s.B, s.T, s.H) * 4));
        /* (forward, backward) variants: 0 = the defaults the library uses, 1 = tiled forward, 2/4/8 = threads per row. */
        /* 16 = MRW_WKV7_CHUNKED (the chunked tensor-core kernels), 17 = its backward's 3-blocks-per-SM kernel forced */
        const std::vector<std::vector<int>> variants =
            only_chunked ? std::vector<std::vector<int>>{{16, 16}, {16, 17}}
                         : std::vector<std::vector<int>>{{0, 0}, {1, 1}, {1, 2}, {2, 2}, {4, 4}, {8, 8}, {16, 16}, {16, 2}, {1, 16}, {16, 17}};
        for (const auto &var : variants) {
            std::vector<double> tf, tb, ta;
            for (int it = -3; it < reps; it++) {
                const inputs &in = sets[(it + 3) % NSETS];
                CUDA_OK(cudaEventRecord(ev[0]));
                MRW_OK_OR_DIE(mrw_cuda_wkv7_forward_ex(MRW_CUDA_BF16, s.B, s.T, s.H, in.r, in.w, in.k, in.v, in.a,
                                                       in.b, nullptr, y, ck, sa, nullptr, var[0], &err_));
                CUDA_OK(cudaEventRecord(ev[1]));
                MRW_OK_OR_DIE(mrw_cuda_wkv7_backward_ex(MRW_CUDA_BF16, s.B, s.T, s.H, in.r, in.w, in.k, in.v, in.a,
                                                        in.b, in.dy, nullptr, ck, sa, g[0], g[1], g[2], g[3], g[4],
                                                        g[5], nullptr, nullptr, var[1], &err_));
                CUDA_OK(cudaEventRecord(ev[2]));
                CUDA_OK(cudaEventSynchronize(ev[2]));
                float f, b;
                CUDA_OK(cudaEventElapsedTime(&f, ev[0], ev[1]));
                CUDA_OK(cudaEventElapsedTime(&b, ev[1], ev[2]));
                if (it >= 0) tf.push_back(f), tb.push_back(b), ta.push_back(f + b);
            }
            const double mf = median(tf), mb = median(tb), ma = median(ta);
            char sh[32], of[16] = "-", oa[16] = "-", sp[16] = "-";
            snprintf(sh, sizeof sh, "%d,%d,%d,%d", s.B, s.T, s.H, MRW_WKV7_N);
            if (s.off_fwd > 0) snprintf(of, sizeof of, "%.2f", s.off_fwd);
            if (s.off_all > 0) snprintf(oa, sizeof oa, "%.2f", s.off_all), snprintf(sp, sizeof sp, "%.2fx", s.off_all / ma);
            char kf[8], kb[8];
            snprintf(kf, sizeof kf, "%s", var[0] ? "" : "def");
            if (var[0]) snprintf(kf, sizeof kf, "%d", var[0]);
            snprintf(kb, sizeof kb, "%s", var[1] ? "" : "def");
            if (var[1]) snprintf(kb, sizeof kb, "%d", var[1]);
            printf("| %-17s | %5s | %5s | %7.3f | %6.3f | %10.3f | %12s | %12s | %11s |\n", sh, kf, kb, mf, mb, ma, of,
                   oa, sp);
        }
        CUDA_OK(cudaDeviceSynchronize());
        for (auto &in : sets)
            for (void *p : {(void *)in.r, (void *)in.w, (void *)in.k, (void *)in.v, (void *)in.a, (void *)in.b,
                            (void *)in.dy})
                cudaFree(p);
        cudaFree(y), cudaFree(ck), cudaFree(sa);
        for (auto p : g) cudaFree(p);
    }
    return 0;
}
