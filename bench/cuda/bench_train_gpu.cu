/* Training throughput of the GPU trainer (src/kernels/cuda/rwkv7_train_gpu.h) at the official RWKV-7 shapes, random
 * weights and tokens, bf16, ctx 2048:
 *     build-cuda/bench/cuda/bench_train_gpu [--ckpt] [--steps N] [0.1b|0.4b|1.5b ...]
 * Per shape: tokens/s over N full steps (forward, backward, grad-norm clip, AdamW; host wall clock, after 2 warm-up
 * steps), MFU = 6 * N_params * tokens/s / 989e12 (N_params without the embedding table, which is a gather; the
 * WKV7 recurrence's own FLOPs are not counted, nor the recomputation of --ckpt), the step-time breakdown of one more
 * step (CUDA events at every change of op class: GEMM / WKV7 / other element-wise, norms, CE, embedding /
 * optimizer; the event overhead makes that step a little slower), and memory: what the trainer allocated and the
 * device's peak use (cudaMemGetInfo, which includes cuBLAS's workspace and the CUDA context). */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vector>

extern "C" {
#include "kernels/cuda/rwkv7_train_gpu.h"
}

struct shape {
    const char *name;
    int L, C, dw, da, dv, dg, B;
    double official; /* tokens/s of the official trainer (issue 5) */
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

#define CHECK(call)                                                                                        \
    do {                                                                                                   \
        if ((call)) {                                                                                      \
            printf("%s: %s\n", sh->name, e.msg);                                                           \
            goto done;                                                                                     \
        }                                                                                                  \
    } while (0)

static void bench(const shape *sh, int ckpt, int steps) {
    const int T = 2048, V = 65536;
    mrw_rwkv7_train_config cfg = {sh->L, sh->C, 64, V, 4 * sh->C, sh->dw, sh->da, sh->dv, sh->dg};
    mrw_rwkv7_gpu_opts o = {0, ckpt, 0};
    mrw_rwkv7_gpu *g = NULL;
    mrw_error e;
    size_t free0 = 0, tot = 0, free1 = 0;
    cudaMemGetInfo(&free0, &tot);
    const int BT = sh->B * T;
    std::vector<int32_t> tok(BT), tgt(BT);
    double nparam = 0, dt = 0, ms[MRW_GPU_T_N] = {0}, norm = 0;
    float loss = 0, loss0 = 0;
    const mrw_adam_config ac = {0.9, 0.99, 1e-8, 0.1, 1};
    CHECK(mrw_rwkv7_gpu_new(&cfg, sh->B, T, &o, &g, &e));
    CHECK(mrw_rwkv7_gpu_init_random(g, 1234, &e));
    {
        const mrw_param_set *ps = mrw_rwkv7_gpu_layout(g);
        for (int i = 0; i < ps->n; i++)
            if (strcmp(ps->p[i].name, "llm.emb.weight")) nparam += (double)ps->p[i].n;
    }
    srand(7);
    for (int r = 0; r < BT; r++) tok[r] = rand() % V;
    for (int r = 0; r < BT; r++) tgt[r] = r % T + 1 < T ? tok[r + 1] : rand() % V;
    for (int it = 0; it < steps + 2; it++) {
        if (it == 2) {
            CHECK(mrw_rwkv7_gpu_sync(g, &e));
            dt = now();
        }
        CHECK(mrw_rwkv7_gpu_zero_grad(g, &e));
        CHECK(mrw_rwkv7_gpu_forward(g, tok.data(), tgt.data(), sh->B, T, 1, &loss, &e));
        if (it == 0) loss0 = loss;
        CHECK(mrw_rwkv7_gpu_backward(g, 1.0f, &e));
        CHECK(mrw_rwkv7_gpu_step(g, &ac, 1e-4, 1.0, NULL, &e));
    }
    CHECK(mrw_rwkv7_gpu_sync(g, &e));
    dt = (now() - dt) / steps;
    cudaMemGetInfo(&free1, &tot);
    /* one step with the breakdown */
    mrw_rwkv7_gpu_set_timing(g, 1);
    CHECK(mrw_rwkv7_gpu_zero_grad(g, &e));
    CHECK(mrw_rwkv7_gpu_forward(g, tok.data(), tgt.data(), sh->B, T, 1, &loss, &e));
    CHECK(mrw_rwkv7_gpu_backward(g, 1.0f, &e));
    CHECK(mrw_rwkv7_gpu_step(g, &ac, 1e-4, 1.0, &norm, &e));
    mrw_rwkv7_gpu_timing(g, ms);
    mrw_rwkv7_gpu_set_timing(g, 0);
    {
        const double tps = BT / dt, mfu = 6.0 * nparam * tps / 989e12;
        const double tot_ms = ms[0] + ms[1] + ms[2] + ms[3];
        printf("%-5s L%d C%d B%d T%d%s: %.1f M params (%.1f M without emb), step %.1f ms, %.0f tokens/s (official %.0fk, "
               "%.2fx; target 1.3x), MFU %.1f%%\n",
               sh->name, sh->L, sh->C, sh->B, T, ckpt ? " ckpt" : "", (nparam + (double)V * sh->C) / 1e6, nparam / 1e6,
               dt * 1e3, tps, sh->official / 1e3, tps / sh->official, 100 * mfu);
        printf("      breakdown (one step with events, %.1f ms): GEMM %.1f ms (%.0f%%), WKV7 %.1f ms (%.0f%%), other %.1f ms "
               "(%.0f%%), optimizer %.1f ms (%.0f%%)\n",
               tot_ms, ms[0], 100 * ms[0] / tot_ms, ms[1], 100 * ms[1] / tot_ms, ms[2], 100 * ms[2] / tot_ms, ms[3],
               100 * ms[3] / tot_ms);
        printf("      other = norms %.1f + element-wise %.1f + cross-entropy %.1f + embedding %.1f ms\n", ms[MRW_GPU_T_NORM],
               ms[MRW_GPU_T_EW], ms[MRW_GPU_T_CE], ms[MRW_GPU_T_EMB]);
        printf("      memory: trainer %.2f GiB, device peak in use %.2f GiB of %.2f; loss %.4f -> %.4f, grad norm %.3g\n",
               mrw_rwkv7_gpu_bytes(g) / 1073741824.0, (tot - free1) / 1073741824.0, tot / 1073741824.0, loss0, loss,
               norm);
        fflush(stdout);
    }
done:
    mrw_rwkv7_gpu_free(g);
    (void)free0;
}

int main(int argc, char **argv) {
    const shape shapes[] = {{"0.1b", 12, 768, 64, 64, 32, 128, 32, 252e3},
                            {"0.4b", 24, 1024, 64, 64, 32, 128, 16, 99e3},
                            {"1.5b", 24, 2048, 96, 96, 64, 256, 4, 31e3}};
    int ckpt = 0, steps = 5, any = 0;
    int want[3] = {0, 0, 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ckpt")) ckpt = 1;
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else
            for (int s = 0; s < 3; s++)
                if (!strcmp(argv[i], shapes[s].name)) want[s] = 1, any = 1;
    }
    if (steps < 1) steps = 1;
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
        printf("no CUDA device\n");
        return 1;
    }
    printf("%s, %d SMs; bf16 GEMMs (cuBLAS, fp32 accumulation), fp32 master weights + AdamW, ctx 2048, V 65536\n",
           p.name, p.multiProcessorCount);
    for (int s = 0; s < 3; s++)
        if (!any || want[s]) bench(&shapes[s], ckpt, steps);
    return 0;
}
