/* Decode speed of the GPU decoder (src/kernels/cuda/rwkv7_decode_gpu.h) at the 0.4B (L24 C1024 F4096) and 1.5B
 * (L24 C2048 F8192) shapes, vocabulary 65536, the published LoRA ranks, random bf16 weights.
 *     make CUDA=1 cuda-bench && build-cuda/bench/cuda/bench_decode_gpu [all|0.4b|1.5b] [--main]
 * (--main: only the graph + PDL rows)
 * For B = 1, 8, 32, 128 concurrent sequences, with the CUDA graph and (B = 1, 8) without it: the median over 5
 * repetitions of N back-to-back steps timed with CUDA events (the step only: no token upload, no logits download),
 * tokens/s = B / step time; PDL = programmatic dependent launch (each kernel starts while the one before runs); "GB/step" is what a step must move at least (every weight matrix but the embedding
 * once, B embedding rows, the per-channel vectors, and B states read and written), and "% of peak" its rate
 * against the H100's 3.35 TB/s. "step()" is mrw_decode_gpu_step at B = 1 as a chat loop calls it (token upload,
 * graph, logits download to the host, synchronisation). */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

extern "C" {
#include "kernels/cuda/rwkv7_decode_gpu.h"
}

static int default_rank(int C, double expo, double mult) {
    int r = (int)lround(pow((double)C, expo) * mult / 32.0);
    return (r < 1 ? 1 : r) * 32;
}

#define CK(x)                                                                                                     \
    do {                                                                                                          \
        if ((x) != MRW_OK) {                                                                                      \
            fprintf(stderr, "%s\n", err.msg);                                                                     \
            exit(1);                                                                                              \
        }                                                                                                         \
    } while (0)

static double time_steps(mrw_decode_gpu *g, int B, int n) {
    mrw_error err = {};
    cudaStream_t st = (cudaStream_t)mrw_decode_gpu_stream(g);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    CK(mrw_decode_gpu_enqueue(g, B, 3, &err)); /* warm-up (and graph capture) */
    CK(mrw_decode_gpu_sync(g, &err));
    std::vector<double> t;
    for (int r = 0; r < 5; r++) {
        cudaEventRecord(e0, st);
        CK(mrw_decode_gpu_enqueue(g, B, n, &err));
        cudaEventRecord(e1, st);
        CK(mrw_decode_gpu_sync(g, &err));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        t.push_back(ms / n);
    }
    std::sort(t.begin(), t.end());
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return t[2];
}

static void shape(const char *name, int L, int C, int F, int all_modes) {
    mrw_error err = {};
    const int V = 65536;
    mrw_decode_gpu_shape sh = {L, C, 64, F, V, default_rank(C, 0.5, 1.8), default_rank(C, 0.5, 1.8),
                               default_rank(C, 0.5, 1.3), default_rank(C, 0.8, 0.6)};
    mrw_decode_gpu *g = NULL;
    CK(mrw_decode_gpu_new(&sh, 128, &g, &err));
    CK(mrw_decode_gpu_init_random(g, 1, &err));
    printf("%s: L%d C%d F%d V%d LoRA %d/%d/%d/%d, %d kernel launches per step (%d at B = 1 when the LoRA ups are fused)\n",
           name, L, C, F, V, sh.lora_w, sh.lora_a, sh.lora_v, sh.lora_g, 8 * L + 2, 7 * L + 2);
    printf("| shape | B | graph | PDL | ms/step | tokens/s | GB/step | GB/s | %% of 3350 GB/s |\n"
           "|---|---|---|---|---|---|---|---|---|\n");
    const int Bs[4] = {1, 8, 32, 128};
    const int modes[3][2] = {{1, 1}, {1, 0}, {0, 1}}; /* graph, PDL */
    for (int md = 0; md < 3; md++)
        for (int i = 0; i < 4; i++) {
            const int B = Bs[i], gr = modes[md][0], pdl = modes[md][1];
            if (md && (B > 8 || !all_modes)) continue;
            mrw_decode_gpu_set_graph(g, gr);
            mrw_decode_gpu_set_pdl(g, pdl);
            const double ms = time_steps(g, B, B >= 32 ? 20 : 100);
            const double gb = mrw_decode_gpu_bytes_per_step(g, B) / 1e9;
            printf("| %s | %d | %s | %s | %.4f | %.0f | %.3f | %.0f | %.1f |\n", name, B, gr ? "yes" : "no", pdl ? "yes" : "no", ms,
                   B * 1000.0 / ms, gb, gb / (ms / 1000.0), 100.0 * gb / (ms / 1000.0) / 3350.0);
            fflush(stdout);
        }
    /* the chat loop's call: B = 1 with logits to the host, synchronous */
    mrw_decode_gpu_set_graph(g, 1);
    mrw_decode_gpu_set_pdl(g, 1);
    std::vector<float> logits(V);
    int32_t tok = 17;
    for (int i = 0; i < 5; i++) CK(mrw_decode_gpu_step(g, &tok, 1, logits.data(), &err));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    const int n = 100;
    cudaEventRecord(e0, 0);
    cudaDeviceSynchronize();
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        tok = (tok * 31 + 7) % V;
        CK(mrw_decode_gpu_step(g, &tok, 1, logits.data(), &err));
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    const double ms = ((b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6) / n;
    printf("%s step() B=1 with logits to host: %.4f ms/token, %.0f tokens/s (wall clock, %d tokens)\n\n", name, ms,
           1000.0 / ms, n);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    mrw_decode_gpu_free(g);
}

int main(int argc, char **argv) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
        printf("no CUDA device\n");
        return 1;
    }
    printf("device: %s\n", p.name);
    const char *which = argc > 1 ? argv[1] : "all";
    const int all_modes = !(argc > 2 && !strcmp(argv[2], "--main"));
    if (!strcmp(which, "all") || !strcmp(which, "0.4b")) shape("0.4B", 24, 1024, 4096, all_modes);
    if (!strcmp(which, "all") || !strcmp(which, "1.5b")) shape("1.5B", 24, 2048, 8192, all_modes);
    return 0;
}
