/* Vision-encoder benchmark: one image through SigLIP2-base/16 at 384 and CLIP ViT-L/14 at 336 (random
 * full-size f32 weights), on 1 and 2 threads (or those given), against the sgemm rate OpenBLAS reaches on a
 * representative GEMM of the same encoder in the same run. The target is >= 70% of OpenBLAS.
 *   build/bench/bench_vit [--threads 1,2] [--reps N] [--only siglip|clip]
 * GFLOP counted: the GEMMs (patch embedding, q/k/v/out, fc1/fc2) and the two attention products, 2 per
 * multiply-add (mrw_vit_flops). Same shapes in PyTorch: tests/reference/bench_torch_vit.py. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "bench_machine.h"
#include "kernels/cpu/matmul.h"
#include "models/vit.h"
#include "tensor/dtype.h"

typedef struct {
    const char *name;
    mrw_vit_family family;
    int hidden, layers, heads, inter, patch, image;
} encoder_shape;

static const encoder_shape ENCODERS[] = {
    {"siglip2-base-patch16-384", MRW_VIT_SIGLIP, 768, 12, 12, 3072, 16, 384},
    {"clip-vit-large-patch14-336", MRW_VIT_CLIP, 1024, 24, 16, 4096, 14, 336},
};

/* Best time of `reps` encodes after one warm-up. */
static double time_encode(mrw_vit_ctx *ctx, const float *px, float *out, int reps) {
    mrw_error e;
    if (mrw_vit_forward(ctx, px, out, &e)) {
        fprintf(stderr, "forward: %s\n", e.msg);
        exit(1);
    }
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = mrw_now();
        mrw_vit_forward(ctx, px, out, &e);
        const double t = mrw_now() - t0;
        best = t < best ? t : best;
    }
    return best;
}

/* GFLOP/s of Y[T,O] = X[T,K]·W[O,K]ᵀ: OpenBLAS (which = 0) or mrw_matmul with W in dtype (which = 1). */
static double gemm_rate(int which, mrw_dtype dt, int T, int O, int K, int nt) {
    float *X = malloc((size_t)T * K * 4), *W = malloc((size_t)O * K * 4), *Y = malloc((size_t)T * O * 4);
    for (size_t i = 0; i < (size_t)T * K; i++) X[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < (size_t)O * K; i++) W[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    const size_t rb = mrw_dtype_row_bytes(dt, K);
    uint8_t *Wd = aligned_alloc(64, ((size_t)O * rb + 63) & ~(size_t)63);
    for (int o = 0; o < O; o++) mrw_from_f32(dt, W + (size_t)o * K, Wd + (size_t)o * rb, K);
    mrw_mat m;
    mrw_mat_init(&m, dt, O, K, Wd);
    mrw_kctx k;
    mrw_kctx_init(&k, nt);
    openblas_set_num_threads(nt);
    double best = 1e30;
    for (int r = 0; r < 6; r++) { /* first run warms up */
        const double t0 = mrw_now();
        if (which == 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, O, K, 1, X, K, W, K, 0, Y, O);
        else
            mrw_matmul(&k, &m, X, K, Y, O, T, 0);
        const double t = mrw_now() - t0;
        if (r && t < best) best = t;
    }
    mrw_kctx_free(&k);
    free(X);
    free(W);
    free(Wd);
    free(Y);
    return 2.0 * T * O * K / best / 1e9;
}

int main(int argc, char **argv) {
    int threads[8] = {1, 2}, n_threads = 2, reps = 3;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            n_threads = 0;
            for (char *s = strtok(argv[++i], ","); s && n_threads < 8; s = strtok(NULL, ","))
                threads[n_threads++] = atoi(s);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--threads 1,2] [--reps N] [--only siglip|clip]\n", argv[0]);
            return 2;
        }
    }
    printf("vision encoders, random f32 weights, one image; cores: %d\n", omp_get_num_procs());
    printf("%-27s %3s | %9s %7s %8s | %9s %9s %9s | %6s\n", "encoder", "thr", "encode ms", "GFLOP", "GFLOP/s",
           "BLAS GF/s", "ours GF/s", "bf16 GF/s", "vsBLAS");
    for (size_t ei = 0; ei < sizeof ENCODERS / sizeof *ENCODERS; ei++) {
        const encoder_shape *es = &ENCODERS[ei];
        if (only && !strstr(es->name, only)) continue;
        mrw_vit_config shape;
        memset(&shape, 0, sizeof shape);
        shape.family = es->family;
        shape.hidden = es->hidden;
        shape.n_layer = es->layers;
        shape.n_head = es->heads;
        shape.intermediate = es->inter;
        shape.patch = es->patch;
        shape.image_size = es->image;
        mrw_vit *v;
        mrw_error e;
        if (mrw_vit_new_random(&shape, 1234, &v, &e)) {
            fprintf(stderr, "%s: %s\n", es->name, e.msg);
            return 1;
        }
        const mrw_vit_config *c = mrw_vit_get_config(v);
        const size_t npx = (size_t)3 * c->image_size * c->image_size;
        float *px = malloc(npx * sizeof *px), *out = malloc((size_t)c->n_tokens * c->hidden * sizeof *out);
        for (size_t i = 0; i < npx; i++) px[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
        const double gflop = mrw_vit_flops(v) / 1e9;
        for (int ti = 0; ti < n_threads; ti++) {
            const int nt = threads[ti];
            mrw_vit_ctx *ctx;
            if (mrw_vit_ctx_new(v, nt, &ctx, &e)) {
                fprintf(stderr, "%s\n", e.msg);
                return 1;
            }
            const double t = time_encode(ctx, px, out, reps);
            mrw_vit_ctx_free(ctx);
            /* the encoder's fc1: T x intermediate x hidden, the bulk of its FLOPs */
            const double blas = gemm_rate(0, MRW_DT_F32, c->n_tokens, c->intermediate, c->hidden, nt);
            const double ours = gemm_rate(1, MRW_DT_F32, c->n_tokens, c->intermediate, c->hidden, nt);
            const double bf16 = gemm_rate(1, MRW_DT_BF16, c->n_tokens, c->intermediate, c->hidden, nt);
            printf("%-27s %3d | %9.1f %7.1f %8.1f | %9.1f %9.1f %9.1f | %5.0f%%\n", es->name, nt, t * 1e3,
                   gflop, gflop / t, blas, ours, bf16, 100 * gflop / t / blas);
            fflush(stdout);
        }
        printf("  (%s: %d tokens x %d, GEMM shape for the rates: %d x %d x %d)\n", es->name, c->n_tokens,
               c->hidden, c->n_tokens, c->intermediate, c->hidden);
        free(px);
        free(out);
        mrw_vit_free(v);
    }
    return 0;
}
