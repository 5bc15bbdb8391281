/* Data-parallel scaling of the GPU trainer (src/kernels/cuda/dist_nccl.h): weak scaling, a fixed batch per GPU, at
 * the official 0.1B (B 32 per GPU) and 0.4B (B 16 per GPU) shapes, ctx 2048, V 65536, random weights and tokens,
 * bf16, AdamW (wd 0.1) with clipping at 1.0, fp32 gradient all-reduce (NCCL):
 *     build-cuda/bench/cuda/bench_dist_gpu [--gpus N] [--zero] [--bf16] [--steps S] [0.1b 0.4b]
 * For each shape it runs 1 GPU, then N GPUs (default: every GPU; one process per GPU started by the launcher of
 * train/dist.h, as `modrwkv train --gpus N` does), with --zero also N GPUs with ZeRO-1, and with --bf16 also N GPUs
 * with the gradients summed in bf16 (plain and, with --zero, ZeRO-1), each a fresh job. Per
 * job: tokens/s of all GPUs together over S steps (forward, backward, gradient sum over the GPUs, clip, AdamW; host
 * wall clock after 2 warm-up steps), the time of the optimizer step alone (all-reduce or reduce-scatter + Adam +
 * all-gather; measured on one more step between two synchronisations), Adam-moment memory per GPU, and the scaling
 * efficiency tokens/s(N) / (N tokens/s(1)). NCCL: MRW_NCCL_LIB or libnccl.so.2 on the library path.
 * Checks: BENCH_SAME_TOKENS=1 gives every rank the same tokens (N GPUs must then follow one GPU's loss: the last
 * column); `--gpus 1 --bf16` adds one GPU with its gradients rounded to bf16 (what the bf16 all-reduce does to them). */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vector>

extern "C" {
#include "kernels/cuda/dist_nccl.h"
#include "kernels/cuda/rwkv7_train_gpu.h"
#include "train/dist.h"
}

struct shape {
    const char *name;
    int L, C, dw, da, dv, dg, B;
};
static const shape k_shapes[] = {{"0.1b", 12, 768, 64, 64, 32, 128, 32}, {"0.4b", 24, 1024, 64, 64, 32, 128, 16}};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

#define CHECK(call)                                                                                        \
    do {                                                                                                   \
        if ((call)) {                                                                                      \
            fprintf(stderr, "bench_dist_gpu rank %d: %s\n", de.rank, e.msg);                               \
            rc = 1;                                                                                        \
            goto done;                                                                                     \
        }                                                                                                  \
    } while (0)

/* One rank of a job: BENCH_JOB="shape zero bf16 steps", rank 0 appends its result line to BENCH_OUT. */
static int worker(void) {
    mrw_dist_env de;
    mrw_error e;
    int dist = 0, rc = 0, zero = 0, bf = 0, steps = 5, si = 0;
    char name[16] = "";
    const char *job = getenv("BENCH_JOB"), *outp = getenv("BENCH_OUT");
    if (!job || sscanf(job, "%15s %d %d %d", name, &zero, &bf, &steps) != 4) return 2;
    for (int s = 0; s < 2; s++)
        if (!strcmp(name, k_shapes[s].name)) si = s;
    const shape *sh = &k_shapes[si];
    const int T = 2048, V = 65536, BT = sh->B * T;
    mrw_rwkv7_train_config cfg = {sh->L, sh->C, 64, V, 4 * sh->C, sh->dw, sh->da, sh->dv, sh->dg};
    mrw_nccl *c = NULL;
    mrw_rwkv7_gpu *g = NULL;
    mrw_dp *dp = NULL;
    std::vector<int32_t> tok(BT), tgt(BT);
    const mrw_adam_config ac = {0.9, 0.99, 1e-8, 0.1, 1};
    double t0 = 0, dt = 0, t_opt = 0, norm = 0;
    float loss = 0, loss0 = 0;
    size_t tot = 0, fr = 0;
    if (mrw_dist_env_read(&de, &dist, &e)) {
        fprintf(stderr, "bench_dist_gpu: %s\n", e.msg);
        return 1;
    }
    {
        const int world = dist ? de.world : 1, dev = dist ? de.local_rank : 0;
        mrw_rwkv7_gpu_opts o = {0, 0, dev};
        if (dist) CHECK(mrw_nccl_open(&de, dev, &c, &e));
        CHECK(mrw_rwkv7_gpu_new(&cfg, sh->B, T, &o, &g, &e));
        CHECK(mrw_rwkv7_gpu_init_random(g, 1234, &e)); /* the same weights on every rank */
        CHECK(mrw_dp_new(g, c, zero, &dp, &e));
        CHECK(mrw_dp_set_bf16(dp, bf, &e));
        /* each rank its own tokens (BENCH_SAME_TOKENS=1: the same on every rank, so that N GPUs compute one GPU's
         * gradient: a check of the gradient sum, not a benchmark) */
        const char *same = getenv("BENCH_SAME_TOKENS");
        srand(7 + (same && *same == '1' ? 0 : 1000 * de.rank));
        for (int r = 0; r < BT; r++) tok[r] = rand() % V;
        for (int r = 0; r < BT; r++) tgt[r] = r % T + 1 < T ? tok[r + 1] : rand() % V;
        for (int it = 0; it < steps + 2; it++) {
            if (it == 2) {
                CHECK(mrw_rwkv7_gpu_sync(g, &e));
                t0 = now();
            }
            CHECK(mrw_rwkv7_gpu_zero_grad(g, &e));
            CHECK(mrw_rwkv7_gpu_forward(g, tok.data(), tgt.data(), sh->B, T, 1, &loss, &e));
            if (it == 0) loss0 = loss;
            CHECK(mrw_rwkv7_gpu_backward(g, 1.0f / (float)world, &e)); /* equal target counts on every rank */
            CHECK(mrw_dp_step(dp, &ac, 1e-4, 1.0, NULL, &e));
        }
        CHECK(mrw_rwkv7_gpu_sync(g, &e));
        dt = (now() - t0) / steps;
        /* the optimizer step alone (communication + Adam) */
        CHECK(mrw_rwkv7_gpu_zero_grad(g, &e));
        CHECK(mrw_rwkv7_gpu_forward(g, tok.data(), tgt.data(), sh->B, T, 1, &loss, &e));
        CHECK(mrw_rwkv7_gpu_backward(g, 1.0f / (float)world, &e));
        CHECK(mrw_rwkv7_gpu_sync(g, &e));
        t_opt = now();
        CHECK(mrw_dp_step(dp, &ac, 1e-4, 1.0, &norm, &e));
        CHECK(mrw_rwkv7_gpu_sync(g, &e));
        t_opt = now() - t_opt;
        cudaMemGetInfo(&fr, &tot);
        if (de.rank == 0 && outp) {
            FILE *f = fopen(outp, "a");
            if (f) {
                fprintf(f, "%s %d %d %d %d %d %.3f %.1f %.3f %.3f %.3f %.4f %.4f %.4g\n", sh->name, world, zero, bf, sh->B, T,
                        dt * 1e3, (double)BT * world / dt, t_opt * 1e3, mrw_dp_moment_bytes(dp) / 1073741824.0,
                        (tot - fr) / 1073741824.0, loss0, loss, norm);
                fclose(f);
            }
        }
    }
done:
    mrw_dp_free(dp);
    mrw_rwkv7_gpu_free(g);
    mrw_nccl_close(c);
    return rc;
}

int main(int argc, char **argv) {
    const char *ws = getenv("WORLD_SIZE");
    if (ws && *ws) return worker();
    int gpus = 0, zero = 0, bf = 0, steps = 5, any = 0, want[2] = {0, 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--zero")) zero = 1;
        else if (!strcmp(argv[i], "--bf16")) bf = 1;
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gpus") && i + 1 < argc) gpus = atoi(argv[++i]);
        else
            for (int s = 0; s < 2; s++)
                if (!strcmp(argv[i], k_shapes[s].name)) want[s] = 1, any = 1;
    }
    if (steps < 1) steps = 1;
    if (gpus < 1) { /* every GPU (counted in a child: the launcher forks, so this process keeps CUDA untouched) */
        FILE *p = popen("nvidia-smi -L 2>/dev/null | wc -l", "r");
        if (p && fscanf(p, "%d", &gpus) != 1) gpus = 0;
        if (p) pclose(p);
        if (gpus < 1) gpus = 1;
    }
    char outp[] = "/tmp/bench_dist_XXXXXX";
    const int fd = mkstemp(outp);
    if (fd < 0) return 1;
    close(fd);
    setenv("BENCH_OUT", outp, 1);
    printf("data-parallel weak scaling: bf16 training, ctx 2048, V 65536, AdamW + clip; %d step%s after 2 warm-ups; 1 and "
           "%d GPUs%s%s\n", steps, steps == 1 ? "" : "s", gpus, zero ? ", ZeRO-1" : "", bf ? ", bf16 all-reduce" : "");
    fflush(stdout);
    char *wargv[] = {argv[0], NULL};
    for (int s = 0; s < 2; s++) {
        if (any && !want[s]) continue;
        /* jobs: 1 GPU; N GPUs; N ZeRO-1; N bf16; N ZeRO-1 bf16 */
        for (int j = 0; j < 5; j++) { /* (--gpus 1 --bf16: 1 GPU with the gradients rounded to bf16, a check) */
            const int n = j == 0 ? 1 : gpus, z = j == 2 || j == 4, b = j >= 3;
            if ((z && !zero) || (b && !bf) || (n == 1 && j > 0 && !b)) continue;
            char job[64];
            snprintf(job, sizeof job, "%s %d %d %d", k_shapes[s].name, z, b, steps);
            setenv("BENCH_JOB", job, 1);
            unsetenv("MASTER_PORT");
            mrw_error e;
            const int rc = mrw_dist_launch(n, "/proc/self/exe", wargv, 10, "bench_dist_gpu", &e);
            unsetenv("WORLD_SIZE"), unsetenv("LOCAL_WORLD_SIZE");
            if (rc) printf("%s on %d GPU%s%s%s: failed (exit %d)\n", k_shapes[s].name, n, n > 1 ? "s" : "",
                           z ? " ZeRO-1" : "", b ? " bf16 all-reduce" : "", rc);
        }
    }
    FILE *f = fopen(outp, "r");
    printf("| shape | GPUs | ZeRO-1 | all-reduce | batch/GPU | step ms | tokens/s (all GPUs) | efficiency | optimizer step ms "
           "(comm + Adam) | Adam moments GiB/GPU | GPU memory in use GiB | loss first -> last |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    char nm[16];
    int w, z, bb, B, T;
    double ms, tps, opt, mom, mem, l0, l1, nrm, base[2] = {0, 0};
    while (f && fscanf(f, "%15s %d %d %d %d %d %lf %lf %lf %lf %lf %lf %lf %lf", nm, &w, &z, &bb, &B, &T, &ms, &tps, &opt,
                       &mom, &mem, &l0, &l1, &nrm) == 14) {
        const int s = !strcmp(nm, "0.4b");
        if (w == 1 && !bb) base[s] = tps;
        char eff[32] = "-";
        if (base[s] > 0) snprintf(eff, sizeof eff, "%.1f%%", 100 * tps / (w * base[s]));
        printf("| %s | %d | %s | %s | %d | %.1f | %.0f | %s | %.2f | %.2f | %.1f | %.4f -> %.4f |\n", nm, w, z ? "yes" : "no",
               bb ? "bf16" : w > 1 ? "fp32" : "-", B, ms, tps, eff, opt, mom, mem, l0, l1);
    }
    if (f) fclose(f);
    unlink(outp);
    return 0;
}
