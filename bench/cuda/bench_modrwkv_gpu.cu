/* ModRWKV on one GPU: image encode time and the stage-1 / stage-2 training step, random weights.
 *     make CUDA=1 cuda-bench && build-cuda/bench/cuda/bench_modrwkv_gpu [--steps N] [--batch B] [--text T] [--stage1-full]
 *       [--encode-only | --steps-only | --wavlm-only]
 * 1. Encode: the SigLIP2-base shape (hidden 768, 12 layers, 12 heads, MLP 3072, patch 16, 384 px -> 576 tokens,
 *    gelu tanh) in bf16 (src/kernels/cuda/vit_gpu.h), pixels already on the device, bf16 output; CUDA-event median
 *    of 10 forwards after 3 warm-ups, at 1 and 32 images per forward, with the fused attention kernel (the default)
 *    and with batched GEMMs + softmax: ms per forward, ms per image, images/s,
 *    TFLOP/s (mrw_vit_gpu_flops: GEMMs + attention products) and % of the 989 TFLOP/s bf16 dense peak.
 * 2. Steps: samples of 576 image tokens (one 384 px image, the v1 splice: features first) + T text tokens
 *    (default 512: 1088 tokens, a multiple of 16), batch B (default 16), RWKV 0.4B shape (L24 C1024, V 65536,
 *    LoRA 64/64/32/128), v2 adapter (768 -> 4096 -> 1024, + LN). One step = pixels (pinned host memory) to the
 *    device, encoder forward (frozen), adapter forward, features spliced into the embedding rows, RWKV forward +
 *    backward (stage 1: frozen, only d(features) flows back; stage 2: all RWKV gradients), d(features) gathered,
 *    adapter backward, then the optimizer: stage 1 Adam on the adapter, stage 2 Adam on the adapter and AdamW with
 *    global-norm clipping on the RWKV weights (each clipped over its own tensors). Loss on the text positions.
 *    samples/s over N steps (host wall clock, after 2 warm-ups); the breakdown (CUDA events on the one stream of
 *    one more step): encoder / adapter fwd+bwd (incl. the splice copies) / RWKV fwd+bwd / optimizer; memory: what
 *    the three parts allocate and the device's peak use (cudaMemGetInfo: + cuBLAS workspaces + CUDA context).
 *    Stage 1 runs "lean" (the RWKV trainer without gradients or Adam moments: mrw_rwkv7_gpu_opts.frozen, as the CLI
 *    does); `--stage1-full` adds a stage-1 run with them allocated (the old way), for the memory comparison.
 * 3. WavLM encode (`--wavlm-only`: this part alone): the WavLM-base-plus shape (7 conv layers of 512, hidden 768,
 *    12 layers, 12 heads, FFN 3072, positional conv k128 g16, 320 buckets; src/kernels/cuda/wavlm_gpu.h) on 10 s of
 *    random audio (160000 samples -> 499 frames), random weights: wall-clock median of 10 calls of
 *    mrw_wavlm_gpu_forward_host after 3 warm-ups (host waveform up, fp32 output down, synchronous), ms per clip and
 *    the device memory the encoder holds. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <vector>

extern "C" {
#include "kernels/cuda/adapter_gpu.h"
#include "kernels/cuda/rwkv7_train_gpu.h"
#include "kernels/cuda/vit_gpu.h"
#include "kernels/cuda/wavlm_gpu.h"
}

#define PEAK 989e12

#define CHECK(call)                                                                                        \
    do {                                                                                                   \
        mrw_status s_ = (call);                                                                            \
        if (s_) {                                                                                          \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, e.msg);                          \
            exit(2);                                                                                       \
        }                                                                                                  \
    } while (0)
#define CU(call)                                                                                           \
    do {                                                                                                   \
        cudaError_t c_ = (call);                                                                           \
        if (c_ != cudaSuccess) {                                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(c_));         \
            exit(2);                                                                                       \
        }                                                                                                  \
    } while (0)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static mrw_vit_config siglip2_base(void) {
    mrw_vit_config c;
    memset(&c, 0, sizeof c);
    c.family = MRW_VIT_SIGLIP, c.hidden = 768, c.n_layer = 12, c.n_head = 12, c.head_dim = 64;
    c.intermediate = 3072, c.channels = 3, c.patch = 16, c.image_size = 384, c.grid = 24, c.n_patches = 576;
    c.n_tokens = 576, c.eps = 1e-6f, c.act = MRW_VIT_GELU_TANH;
    return c;
}

static void fill_pixels(float *p, size_t n) {
    uint64_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((s >> 40) * (2.0 / 16777216.0) - 1.0);
    }
}

static void bench_encode(void) {
    mrw_error e;
    const mrw_vit_config c = siglip2_base();
    printf("Image encode, SigLIP2-base shape (576 tokens x 768, 12 layers), bf16, random weights\n");
    printf("%-8s %-8s %12s %12s %12s %10s %8s %10s\n", "images", "attn", "ms/forward", "ms/image", "images/s",
           "TFLOP/s", "% peak", "GiB alloc");
    for (int cfgi = 0; cfgi < 4; cfgi++) {
        const int n = cfgi % 2 ? 32 : 1, fused = cfgi < 2;
        mrw_vit_gpu *v = NULL;
        CHECK(mrw_vit_gpu_new(&c, n, NULL, &v, &e));
        CHECK(mrw_vit_gpu_init_random(v, 7, &e));
        mrw_vit_gpu_set_attention(v, fused);
        const size_t npx = (size_t)n * 3 * 384 * 384;
        std::vector<float> h(npx);
        fill_pixels(h.data(), npx);
        float *px = NULL;
        void *out = NULL;
        CU(cudaMalloc(&px, npx * 4));
        CU(cudaMalloc(&out, (size_t)n * 576 * 768 * 2));
        CU(cudaMemcpy(px, h.data(), npx * 4, cudaMemcpyHostToDevice));
        cudaEvent_t a, b;
        cudaEventCreate(&a), cudaEventCreate(&b);
        std::vector<float> ms;
        for (int it = 0; it < 13; it++) {
            cudaEventRecord(a, NULL);
            CHECK(mrw_vit_gpu_forward(v, px, 0, n, MRW_CUDA_BF16, out, &e));
            cudaEventRecord(b, NULL);
            CU(cudaEventSynchronize(b));
            float t = 0;
            cudaEventElapsedTime(&t, a, b);
            if (it >= 3) ms.push_back(t);
        }
        std::sort(ms.begin(), ms.end());
        const double med = ms[ms.size() / 2], fl = mrw_vit_gpu_flops(v) * n / (med * 1e-3);
        printf("%-8d %-8s %12.3f %12.3f %12.1f %10.1f %7.1f%% %10.2f\n", n, fused ? "fused" : "batched", med, med / n,
               n / (med * 1e-3), fl / 1e12, 100 * fl / PEAK, mrw_vit_gpu_bytes(v) / 1073741824.0);
        cudaEventDestroy(a), cudaEventDestroy(b);
        cudaFree(px), cudaFree(out);
        mrw_vit_gpu_free(v);
    }
    printf("(GFLOP per image: %.1f)\n\n", [] {
        mrw_error e;
        const mrw_vit_config c = siglip2_base();
        mrw_vit_gpu *v = NULL;
        CHECK(mrw_vit_gpu_new(&c, 1, NULL, &v, &e));
        const double f = mrw_vit_gpu_flops(v);
        mrw_vit_gpu_free(v);
        return f / 1e9;
    }());
}

/* WavLM-base-plus encode of 10 s of audio (section 3 of the header). */
static void bench_wavlm(void) {
    mrw_error e;
    mrw_wavlm_config c;
    memset(&c, 0, sizeof c);
    static const int kern[7] = {10, 3, 3, 3, 3, 2, 2}, strd[7] = {5, 2, 2, 2, 2, 2, 2};
    c.n_conv = 7;
    for (int i = 0; i < 7; i++) c.conv_dim[i] = 512, c.conv_kernel[i] = kern[i], c.conv_stride[i] = strd[i];
    c.conv_bias = 0, c.norm_layer = 0, c.hidden = 768, c.n_layers = 12, c.n_heads = 12, c.ffn_dim = 3072;
    c.pos_kernel = 128, c.pos_groups = 16, c.num_buckets = 320, c.max_distance = 800, c.stable_ln = 0;
    c.ln_eps = 1e-5f, c.act = MRW_ACT_GELU, c.feat_act = MRW_ACT_GELU;
    mrw_wavlm_gpu *v = NULL;
    CHECK(mrw_wavlm_gpu_new(&c, NULL, &v, &e));
    CHECK(mrw_wavlm_gpu_init_random(v, 11, &e));
    const int n = 160000, T = mrw_wavlm_gpu_out_frames(v, n);
    std::vector<float> wave(n), out((size_t)T * c.hidden);
    fill_pixels(wave.data(), wave.size());
    std::vector<double> ms;
    int frames = 0;
    for (int it = 0; it < 13; it++) {
        const double t0 = now();
        CHECK(mrw_wavlm_gpu_forward_host(v, wave.data(), n, out.data(), &frames, &e));
        if (it >= 3) ms.push_back((now() - t0) * 1e3);
    }
    std::sort(ms.begin(), ms.end());
    double fin = 0;
    for (float x : out) fin += isfinite(x) ? 0 : 1;
    printf("WavLM encode, WavLM-base-plus shape (12 layers, hidden 768), bf16, random weights\n");
    printf("10 s of audio (%d samples -> %d frames): %.2f ms per clip (median of 10; min %.2f), %.0fx real time, "
           "device memory %.2f GiB%s\n\n", n, frames, ms[ms.size() / 2], ms[0], 10000.0 / ms[ms.size() / 2],
           mrw_wavlm_gpu_bytes(v) / 1073741824.0, fin ? " (NON-FINITE OUTPUT)" : "");
    mrw_wavlm_gpu_free(v);
}

enum { K_ENC, K_ADA, K_RWKV, K_OPT, K_N };

/* One stage's steps. lean (stage 1 only): the RWKV trainer allocates no gradients and no Adam moments
 * (mrw_rwkv7_gpu_opts.frozen, what `modrwkv train --train adapter --device cuda` uses); lean 0 in stage 1 is the
 * old allocation, for the comparison. Everything is created and freed here, so the device's use is this stage's. */
static void bench_steps(int B, int Ttext, int steps, int stage, int lean) {
    mrw_error e;
    const int M = 576, T = M + Ttext, E = 768, C = 1024, BT = B * T;
    mrw_rwkv7_train_config cfg = {24, C, 64, 65536, 4 * C, 64, 64, 32, 128};
    size_t free0, tot;
    CU(cudaMemGetInfo(&free0, &tot));
    mrw_rwkv7_gpu_opts o = {0, 0, 0, stage == 1 && lean};
    mrw_rwkv7_gpu *g = NULL;
    CHECK(mrw_rwkv7_gpu_new(&cfg, B, T, &o, &g, &e));
    CHECK(mrw_rwkv7_gpu_init_random(g, 1, &e));
    void *st = mrw_rwkv7_gpu_stream(g);
    const mrw_vit_config vc = siglip2_base();
    mrw_vit_gpu *v = NULL;
    CHECK(mrw_vit_gpu_new(&vc, B, st, &v, &e));
    CHECK(mrw_vit_gpu_init_random(v, 2, &e));
    mrw_adapter_gpu *a = NULL;
    CHECK(mrw_adapter_gpu_new(E, C, 0, B * M, st, &a, &e));
    CHECK(mrw_adapter_gpu_init_random(a, 3, &e));
    void *feat = NULL, *aout = NULL, *inj = NULL, *dinj = NULL, *dout = NULL;
    CU(cudaMalloc(&feat, (size_t)B * M * E * 2));
    CU(cudaMalloc(&aout, (size_t)B * M * C * 2));
    CU(cudaMalloc(&dout, (size_t)B * M * C * 2));
    CU(cudaMalloc(&inj, (size_t)BT * C * 2));
    CU(cudaMalloc(&dinj, (size_t)BT * C * 2));
    CU(cudaMemset(inj, 0, (size_t)BT * C * 2));
    const size_t alloc = mrw_rwkv7_gpu_bytes(g) + mrw_vit_gpu_bytes(v) + mrw_adapter_gpu_bytes(a) +
                         (size_t)B * M * (E + 2 * C) * 2 + (size_t)BT * C * 4;
    const size_t npx = (size_t)B * 3 * 384 * 384;
    float *px = NULL;
    CU(cudaMallocHost(&px, npx * 4));
    fill_pixels(px, npx);
    std::vector<int32_t> tok(BT), tgt(BT);
    std::vector<uint8_t> mask(BT);
    uint64_t s = 99;
    for (int r = 0; r < BT; r++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[r] = (int32_t)((s >> 33) % 65536);
        mask[r] = r % T < M;
    }
    for (int r = 0; r < BT; r++) tgt[r] = mask[r] || r % T == T - 1 ? MRW_IGNORE : tok[r + 1];
    mrw_adam_config ac = mrw_adam_config_default();
    ac.beta2 = 0.99;
    cudaEvent_t ev[6];
    for (auto &x : ev) cudaEventCreate(&x);
    const size_t pitch_i = (size_t)T * C * 2, pitch_a = (size_t)M * C * 2;
    {
        double tsum[K_N] = {0}, dt = 0;
        for (int it = 0; it < steps + 3; it++) {
            const int timed = it == steps + 2; /* the last one: events */
            if (it == 2) dt = now();
            if (timed) dt = now() - dt;
            float loss = 0;
            if (timed) cudaEventRecord(ev[0], (cudaStream_t)st);
            CHECK(mrw_vit_gpu_forward(v, px, 1, B, MRW_CUDA_BF16, feat, &e));
            if (timed) cudaEventRecord(ev[1], (cudaStream_t)st);
            CHECK(mrw_adapter_gpu_forward(a, feat, B * M, aout, &e));
            CU(cudaMemcpy2DAsync(inj, pitch_i, aout, pitch_a, pitch_a, B, cudaMemcpyDeviceToDevice, (cudaStream_t)st));
            if (timed) cudaEventRecord(ev[2], (cudaStream_t)st);
            CHECK(mrw_rwkv7_gpu_forward_ex(g, tok.data(), inj, mask.data(), tgt.data(), B, T, stage == 1 ? 2 : 1,
                                           &loss, &e));
            CHECK(mrw_rwkv7_gpu_backward_ex(g, 1.0f, stage == 1, dinj, &e));
            if (timed) cudaEventRecord(ev[3], (cudaStream_t)st);
            CU(cudaMemcpy2DAsync(dout, pitch_a, dinj, pitch_i, pitch_a, B, cudaMemcpyDeviceToDevice,
                                 (cudaStream_t)st));
            CHECK(mrw_adapter_gpu_backward(a, dout, NULL, &e));
            if (timed) cudaEventRecord(ev[4], (cudaStream_t)st);
            CHECK(mrw_adapter_gpu_step(a, &ac, 1e-3, 1.0, NULL, &e));
            CHECK(mrw_adapter_gpu_zero_grad(a, &e));
            if (stage == 2) {
                CHECK(mrw_rwkv7_gpu_step(g, &ac, 2e-5, 1.0, NULL, &e));
                CHECK(mrw_rwkv7_gpu_zero_grad(g, &e));
            }
            if (timed) cudaEventRecord(ev[5], (cudaStream_t)st);
            CHECK(mrw_rwkv7_gpu_sync(g, &e));
            if (!isfinite(loss)) {
                fprintf(stderr, "non-finite loss at stage %d step %d\n", stage, it);
                exit(1);
            }
            if (timed) {
                float t;
                cudaEventElapsedTime(&t, ev[0], ev[1]), tsum[K_ENC] = t;
                cudaEventElapsedTime(&t, ev[1], ev[2]), tsum[K_ADA] = t;
                cudaEventElapsedTime(&t, ev[2], ev[3]), tsum[K_RWKV] = t;
                cudaEventElapsedTime(&t, ev[3], ev[4]), tsum[K_ADA] += t;
                cudaEventElapsedTime(&t, ev[4], ev[5]), tsum[K_OPT] = t;
            }
        }
        const double step = dt / steps;
        size_t free1;
        CU(cudaMemGetInfo(&free1, &tot));
        printf("stage %d (%s%s): batch %d x (%d image + %d text) tokens: step %.1f ms, %.1f samples/s, %.0f tokens/s\n",
               stage, stage == 1 ? "encoder + RWKV frozen, adapter trained" : "encoder frozen, adapter + RWKV trained",
               stage == 1 ? (lean ? "; lean: no RWKV gradients/moments" : "; RWKV gradients/moments allocated") : "",
               B, M, Ttext, step * 1e3, B / step, BT / step);
        printf("  breakdown (one step, CUDA events): encoder %.1f ms, adapter fwd+bwd %.1f ms, RWKV fwd+bwd %.1f ms, "
               "optimizer %.1f ms\n", tsum[K_ENC], tsum[K_ADA], tsum[K_RWKV], tsum[K_OPT]);
        printf("  memory: allocated %.2f GiB, device peak use %.2f GiB (of %.1f)\n", alloc / 1073741824.0,
               (tot - free1) / 1073741824.0, tot / 1073741824.0);
    }
    (void)free0;
    for (auto &x : ev) cudaEventDestroy(x);
    cudaFreeHost(px);
    cudaFree(feat), cudaFree(aout), cudaFree(dout), cudaFree(inj), cudaFree(dinj);
    mrw_adapter_gpu_free(a);
    mrw_vit_gpu_free(v);
    mrw_rwkv7_gpu_free(g);
}

int main(int argc, char **argv) {
    int steps = 5, B = 16, Tt = 512, enc = 1, stp = 1, full1 = 0, wl = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--text") && i + 1 < argc) Tt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--encode-only")) stp = 0;
        else if (!strcmp(argv[i], "--wavlm-only")) enc = 0, stp = 0;
        else if (!strcmp(argv[i], "--steps-only")) enc = 0, wl = 0;
        else if (!strcmp(argv[i], "--stage1-full")) full1 = 1; /* also stage 1 with the RWKV's gradients/moments */
    }
    if (steps < 1) steps = 1;
    if (B < 1 || Tt < 1) {
        fprintf(stderr, "bad --batch / --text\n");
        return 2;
    }
    cudaDeviceProp p;
    CU(cudaGetDeviceProperties(&p, 0));
    printf("device: %s\n\n", p.name);
    if (enc) bench_encode();
    if (wl) bench_wavlm();
    if (stp) {
        bench_steps(B, Tt, steps, 1, 1);
        if (full1) bench_steps(B, Tt, steps, 1, 0);
        bench_steps(B, Tt, steps, 2, 0);
    }
    return 0;
}
