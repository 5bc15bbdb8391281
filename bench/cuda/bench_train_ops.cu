/* The training-step kernels other than WKV7 (ce.h, norm.h, rwkv7_ew.h, adam.h) at the 0.4B shape of issue 5
 * (L24 C1024 H16, batch 16 x ctx 2048 = 32768 rows, F 4096, V 65536), bf16 activations: milliseconds per call
 * (CUDA-event median of 15 repetitions after 2 warm-ups) and the effective bandwidth counting each tensor's
 * minimal traffic (every input read once, every output written once). Cross-entropy is timed on 8192 rows
 * (the trainer runs the head and the loss in row blocks). Adam runs over the 0.4B model's 451M parameters.
 *     make CUDA=1 cuda-bench && build-cuda/bench/cuda/bench_train_ops */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "kernels/cuda/adam.h"
#include "kernels/cuda/ce.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rwkv7_ew.h"

#define CUDA_OK(call)                                                                                      \
    do {                                                                                                   \
        cudaError_t e_ = (call);                                                                           \
        if (e_ != cudaSuccess) {                                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));         \
            exit(2);                                                                                       \
        }                                                                                                  \
    } while (0)

static mrw_error g_err;
#define OK(call)                                                                                           \
    do {                                                                                                   \
        if ((call) != MRW_OK) {                                                                            \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, g_err.msg);                                 \
            exit(2);                                                                                       \
        }                                                                                                  \
    } while (0)

__global__ void fill(size_t n, uint64_t seed, float sc, float sh, int bf, void *p) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + i * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        const float u = ((float)(z >> 40) + 0.5f) * (2.0f / 16777216.0f) - 1.0f;
        if (bf) ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(sh + sc * u);
        else ((float *)p)[i] = sh + sc * u;
    }
}

static std::vector<void *> g_allocs;
static uint64_t g_seed = 1;
static void *alloc(size_t n, bool bf, float sc = 1, float sh = 0) {
    void *p;
    CUDA_OK(cudaMalloc(&p, n * (bf ? 2 : 4) + 16));
    fill<<<1024, 256>>>(n, g_seed++ * 0x1234567ull, sc, sh, bf, p);
    g_allocs.push_back(p);
    return p;
}

static double time_ms(const std::function<void()> &f) {
    cudaEvent_t a, b;
    CUDA_OK(cudaEventCreate(&a));
    CUDA_OK(cudaEventCreate(&b));
    for (int i = 0; i < 2; i++) f();
    std::vector<float> t;
    for (int i = 0; i < 15; i++) {
        CUDA_OK(cudaEventRecord(a));
        f();
        CUDA_OK(cudaEventRecord(b));
        CUDA_OK(cudaEventSynchronize(b));
        float ms;
        CUDA_OK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    cudaEventDestroy(a), cudaEventDestroy(b);
    return t[t.size() / 2];
}

static void report(const char *what, double ms, double bytes) {
    printf("| %-34s | %8.3f | %7.0f |\n", what, ms, bytes / ms * 1e-6);
}

int main() {
    cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s\n", prop.name);
    const int B = 16, T = 2048, C = 1024, H = 16, F = 4096, V = 65536, R = B * T, RCE = 8192;
    const size_t n = (size_t)R * C, nF = (size_t)R * F;
    const mrw_cuda_dtype bf = MRW_CUDA_BF16;
    printf("| op (0.4B shape, bf16 activations)  |       ms |    GB/s |\n|---|---|---|\n");
    { /* cross-entropy, logits bf16, fused loss + gradient in place */
        void *lg = alloc((size_t)RCE * V, true, 4);
        std::vector<int32_t> h(RCE);
        for (int r = 0; r < RCE; r++) h[r] = (int32_t)((r * 2654435761u) % V);
        int32_t *tg;
        CUDA_OK(cudaMalloc(&tg, RCE * 4));
        CUDA_OK(cudaMemcpy(tg, h.data(), RCE * 4, cudaMemcpyHostToDevice));
        float *rl = (float *)alloc(RCE, false);
        const double ms = time_ms([&] { OK(mrw_cuda_cross_entropy(bf, RCE, V, lg, tg, 1, 1e-4f, rl, nullptr, nullptr, &g_err)); });
        report("cross-entropy fwd+grad 8192x65536", ms, 2.0 * RCE * V * 2);
        const double ms2 = time_ms([&] { OK(mrw_cuda_cross_entropy(bf, RCE, V, lg, tg, 0, 1e-4f, rl, nullptr, nullptr, &g_err)); });
        report("cross-entropy loss only", ms2, 1.0 * RCE * V * 2);
        cudaFree(tg);
    }
    void *x = alloc(n, true), *y = alloc(n, true), *dy = alloc(n, true), *dx = alloc(n, true);
    float *w = (float *)alloc(C, false, 0.2f, 1), *b = (float *)alloc(C, false, 0.1f), *mu = (float *)alloc(R * H, false),
          *rs = (float *)alloc(R * H, false), *gw = (float *)alloc(C, false), *gb = (float *)alloc(C, false);
    float *scr = (float *)alloc(std::max(mrw_cuda_keyprep_bwd_scratch(R, H), mrw_cuda_gn_bonus_gate_bwd_scratch(R, H)) +
                                mrw_cuda_token_mix_bwd_scratch(C) + mrw_cuda_layernorm_bwd_scratch(C), false);
    report("layernorm fwd 32768x1024", time_ms([&] { OK(mrw_cuda_layernorm_fwd(bf, R, C, x, w, b, 1e-5f, y, mu, rs, nullptr, &g_err)); }), 2.0 * n * 2);
    report("layernorm bwd (+dw, db)", time_ms([&] { OK(mrw_cuda_layernorm_bwd(bf, R, C, dy, x, mu, rs, w, 1, dx, gw, gb, scr, nullptr, &g_err)); }), 4.0 * n * 2);
    { /* the other widths (same element count): the 0.1B (C 768) and 1.5B (C 2048) shapes */
        float *w2 = (float *)alloc(2048, false, 0.2f, 1), *b2 = (float *)alloc(2048, false, 0.1f);
        float *g2w = (float *)alloc(2048, false), *g2b = (float *)alloc(2048, false);
        float *scr2 = (float *)alloc(mrw_cuda_layernorm_bwd_scratch(2048), false);
        for (int cw : {768, 2048}) {
            const int rw = (int)(n / cw);
            char l1[64], l2[64];
            snprintf(l1, sizeof l1, "layernorm fwd %dx%d", rw, cw);
            snprintf(l2, sizeof l2, "layernorm bwd %dx%d (+dw, db)", rw, cw);
            report(l1, time_ms([&] { OK(mrw_cuda_layernorm_fwd(bf, rw, cw, x, w2, b2, 1e-5f, y, mu, rs, nullptr, &g_err)); }), 2.0 * rw * cw * 2);
            report(l2, time_ms([&] { OK(mrw_cuda_layernorm_bwd(bf, rw, cw, dy, x, mu, rs, w2, 1, dx, g2w, g2b, scr2, nullptr, &g_err)); }), 4.0 * rw * cw * 2);
        }
    }
    void *r = alloc(n, true), *k = alloc(n, true), *v = alloc(n, true), *g = alloc(n, true), *z = alloc(n, true);
    void *dr = alloc(n, true), *dk = alloc(n, true), *dv = alloc(n, true), *dg = alloc(n, true);
    report("groupnorm+bonus+gate fwd", time_ms([&] { OK(mrw_cuda_gn_bonus_gate_fwd(bf, R, H, y, r, k, v, g, w, b, w, 64e-5f, z, mu, rs, nullptr, &g_err)); }), 6.0 * n * 2);
    float *dbt = (float *)alloc(R * H, false);
    report("groupnorm+bonus+gate bwd (+params), dbeta", time_ms([&] { OK(mrw_cuda_gn_bonus_gate_bwd_dbeta(bf, R, H, dy, y, r, k, v, g, w, b, w, mu, rs, dx, dbt, dv, dg, gw, gb, gw, scr, nullptr, &g_err)); }), 9.0 * n * 2);
    report("groupnorm+bonus+gate bwd (+params)", time_ms([&] { OK(mrw_cuda_gn_bonus_gate_bwd(bf, R, H, dy, y, r, k, v, g, w, b, w, mu, rs, dx, dr, dk, dv, dg, gw, gb, gw, scr, nullptr, &g_err)); }), 11.0 * n * 2);
    std::vector<void *> mo(6), md(6);
    std::vector<float *> mm(6), mg(6);
    for (int q = 0; q < 6; q++) mo[q] = alloc(n, true), md[q] = alloc(n, true), mm[q] = (float *)alloc(C, false, 0.3f, 0.5f), mg[q] = (float *)alloc(C, false);
    report("token shift + 6 mixes fwd", time_ms([&] { OK(mrw_cuda_token_mix_fwd(bf, B, T, C, 6, x, mm.data(), mo.data(), nullptr, &g_err)); }), 7.0 * n * 2);
    report("layernorm + 6 mixes fwd (fused)", time_ms([&] { OK(mrw_cuda_ln_mix_fwd(bf, B, T, C, 6, x, w, b, 1e-5f, y, mu, rs, mm.data(), mo.data(), nullptr, &g_err)); }), 8.0 * n * 2);
    report("layernorm + 1 mix fwd (fused)", time_ms([&] { OK(mrw_cuda_ln_mix_fwd(bf, B, T, C, 1, x, w, b, 1e-5f, y, mu, rs, mm.data(), mo.data(), nullptr, &g_err)); }), 3.0 * n * 2);
    report("token shift + 6 mixes bwd (+params)", time_ms([&] { OK(mrw_cuda_token_mix_bwd(bf, B, T, C, 6, x, mm.data(), md.data(), 0, dx, mg.data(), scr, nullptr, &g_err)); }), 8.0 * n * 2);
    std::vector<void *> a(20);
    for (auto &p : a) p = alloc(n, true);
    float *fv = (float *)alloc(n, false);
    mrw_cuda_keyprep_in in = {a[0], a[1], a[2], a[3], a[4], a[5], w, b, b, w, w};
    report("key prep fwd (w, k, v, a, b)", time_ms([&] { OK(mrw_cuda_keyprep_fwd(bf, R, H, &in, a[6], a[7], a[8], a[9], a[10], nullptr, &g_err)); }), 11.0 * n * 2);
    mrw_cuda_keyprep_grad gr = {a[11], a[12], a[13], a[14], a[15], dk, dv, dr, a[16], a[17], a[18], a[19], a[6], a[7], fv, gw, gb, gw, gb, gw};
    report("key prep bwd (+params)", time_ms([&] { OK(mrw_cuda_keyprep_bwd(bf, R, H, &in, &gr, scr, nullptr, &g_err)); }), (6 + 9 + 6) * n * 2.0 + 8.0 * n);
    mrw_cuda_keyprep_grad gr2 = gr; /* the trainer's form: the bonus's dr, dk from dbeta (r read instead of two tensors) */
    gr2.dk_bonus = gr2.dr_bonus = nullptr, gr2.dbeta = dbt, gr2.r = r, gr2.rk = w;
    report("key prep bwd (+params), bonus from dbeta", time_ms([&] { OK(mrw_cuda_keyprep_bwd(bf, R, H, &in, &gr2, scr, nullptr, &g_err)); }), (6 + 8 + 6) * n * 2.0 + 8.0 * n);
    void *hk = alloc(nF, true), *act = alloc(nF, true);
    report("relu^2 fwd 32768x4096", time_ms([&] { OK(mrw_cuda_relu2_fwd(bf, nF, hk, act, nullptr, &g_err)); }), 2.0 * nF * 2);
    report("relu^2 bwd", time_ms([&] { OK(mrw_cuda_relu2_bwd(bf, nF, hk, act, nullptr, &g_err)); }), 3.0 * nF * 2);
    { /* cuBLAS bf16 GEMMs of the 0.4B layer: r/k/v/o projections and the FFN, forward and both backward forms */
        mrw_cuda_blas *hb;
        OK(mrw_cuda_blas_new(&hb, &g_err));
        void *W = alloc((size_t)F * C, true, 0.03f), *X = alloc(nF, true), *Y = alloc(nF, true);
        float *G = (float *)alloc((size_t)F * C, false);
        struct { const char *name; int tA, tB, M, N, K; bool f32; } gs[] = {
            {"gemm X W^T  32768x1024x1024", 0, 1, R, C, C, false}, {"gemm X W^T  32768x4096x1024 (FFN)", 0, 1, R, F, C, false},
            {"gemm dY W   32768x1024x4096", 0, 0, R, C, F, false}, {"gemm dY^T X 4096x1024x32768 (+=f32)", 1, 0, F, C, R, true}};
        for (auto &q : gs) {
            const double ms = time_ms([&] {
                OK(mrw_cuda_gemm(hb, q.tA, q.tB, q.M, q.N, q.K, 1.f, q.tA ? Y : X, q.tA ? q.M : q.K, q.tA ? X : W,
                                 q.tB ? q.K : q.N, q.f32 ? 1.f : 0.f, q.f32 ? MRW_CUDA_F32 : MRW_CUDA_BF16,
                                 q.f32 ? (void *)G : Y, q.N, nullptr, &g_err));
            });
            printf("| %-34s | %8.3f | %5.0f TFLOP/s |\n", q.name, ms, 2.0 * q.M * q.N * q.K / ms * 1e-9);
        }
        mrw_cuda_blas_free(hb);
    }
    for (void *p : g_allocs) cudaFree(p);
    g_allocs.clear();
    { /* Adam over 0.4B parameters as one flat range, grad norm first */
        const size_t np = 451000000;
        float *pw = (float *)alloc(np, false), *pg = (float *)alloc(np, false, 0.01f), *pm = (float *)alloc(np, false, 0),
              *pv = (float *)alloc(np, false, 0);
        void *pb = alloc(np, true);
        double *part = (double *)alloc(2 * MRW_CUDA_NORM_BLOCKS, false);
        float *no = (float *)alloc(2, false);
        mrw_cuda_adam_hp hp = mrw_cuda_adam_hparams(1e-4, 10, 0.9, 0.99, 1e-8, 0.1, 1, 0);
        report("grad norm (2 passes) 451M fp32", time_ms([&] {
                   OK(mrw_cuda_sumsq_part(np, pg, part, nullptr, &g_err));
                   OK(mrw_cuda_grad_norm_finish(1, part, 1.0f, no, nullptr, nullptr, &g_err));
               }), 4.0 * np);
        report("AdamW step 451M (+bf16 copy)", time_ms([&] { OK(mrw_cuda_adam_step(np, pw, pg, pm, pv, pb, &hp, no + 1, nullptr, &g_err)); }), 26.0 * np);
        for (void *p : g_allocs) cudaFree(p);
    }
    CUDA_OK(cudaDeviceSynchronize());
    return 0;
}
