/* Audio encoder benchmark: the Whisper-small encoder on 30 s (the full 3000-frame log-mel input) and
 * WavLM-base-plus on 10 s (160000 samples), random full-size weights, on 1 and 2 threads. Each encode is
 * reported in GFLOP/s (multiply-adds of every GEMM-shaped product, convolutions and attention included,
 * counted as 2 FLOPs) next to the rate OpenBLAS's cblas_sgemm reaches on a representative shape (Whisper's
 * fc1: 1500 x 768 times 768 x 3072) measured in the same run; the target is >= 70% of it. The machine's
 * fp32 FMA peak and load average go to stderr: on a shared host the 2-thread rows mean little when another
 * process holds a core.
 *   build/bench/bench_audio [max_threads (2)] [repetitions (2)]
 * The random models are written to $TMPDIR (~750 MB) and removed afterwards. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/progress.h"
#include "bench_machine.h"
#include "formats/tensorfile.h"
#include "kernels/cpu/kctx.h"
#include "models/wavlm.h"
#include "models/whisper_enc.h"

/* ------------------------------------------------------------------------------- random model files */

typedef struct {
    mrw_tensor_info *t;
    char **names;
    int n, cap;
    uint64_t rng;
} tlist;

static float urand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((*s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* kind: 'w' N(0,1/fan_in)-like uniform, 'b' small bias, 'n' norm weight near 1, 'e' embedding */
static void add(tlist *L, char kind, const char *fmt, int i, int ndim, int64_t s0, int64_t s1, int64_t s2,
                int64_t s3) {
    if (L->n == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 256;
        L->t = realloc(L->t, (size_t)L->cap * sizeof *L->t);
        L->names = realloc(L->names, (size_t)L->cap * sizeof *L->names);
        if (!L->t || !L->names) abort();
    }
    char name[256];
    snprintf(name, sizeof name, fmt, i);
    const int64_t shape[4] = {s0, s1, s2, s3};
    mrw_tensor_info *t = &L->t[L->n];
    memset(t, 0, sizeof *t);
    t->dtype = MRW_DT_F32;
    t->ndim = ndim;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= t->shape[d] = shape[d];
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) abort();
    const float a = kind == 'w' ? 1.7320508f / sqrtf((float)(n / shape[0])) : kind == 'e' ? 0.5f : 0.1f;
    for (int64_t k = 0; k < n; k++) v[k] = (kind == 'n' ? 1.0f : 0.0f) + a * urand(&L->rng);
    L->names[L->n] = strdup(name);
    t->name = L->names[L->n];
    t->data = v;
    t->nbytes = (size_t)n * sizeof *v;
    L->n++;
}

static void tlist_free(tlist *L) {
    for (int i = 0; i < L->n; i++) {
        free((void *)L->t[i].data);
        free(L->names[i]);
    }
    free(L->t);
    free(L->names);
}

#define W2(name, i, a, b) add(&L, 'w', name, i, 2, a, b, 0, 0)
#define V(kind, name, i, n) add(&L, kind, name, i, 1, n, 0, 0, 0)

static int write_whisper(const char *path) {
    tlist L = {.rng = 0x9e3779b97f4a7c15ull};
    const int d = 768, ffn = 3072;
    add(&L, 'w', "conv1.weight", 0, 3, d, 80, 3, 0);
    V('b', "conv1.bias", 0, d);
    add(&L, 'w', "conv2.weight", 0, 3, d, d, 3, 0);
    V('b', "conv2.bias", 0, d);
    add(&L, 'e', "embed_positions.weight", 0, 2, 1500, d, 0, 0);
    for (int l = 0; l < 12; l++) {
        W2("layers.%d.self_attn.q_proj.weight", l, d, d);
        W2("layers.%d.self_attn.k_proj.weight", l, d, d);
        W2("layers.%d.self_attn.v_proj.weight", l, d, d);
        W2("layers.%d.self_attn.out_proj.weight", l, d, d);
        V('b', "layers.%d.self_attn.q_proj.bias", l, d);
        V('b', "layers.%d.self_attn.v_proj.bias", l, d);
        V('b', "layers.%d.self_attn.out_proj.bias", l, d);
        V('n', "layers.%d.self_attn_layer_norm.weight", l, d);
        V('b', "layers.%d.self_attn_layer_norm.bias", l, d);
        W2("layers.%d.fc1.weight", l, ffn, d);
        V('b', "layers.%d.fc1.bias", l, ffn);
        W2("layers.%d.fc2.weight", l, d, ffn);
        V('b', "layers.%d.fc2.bias", l, d);
        V('n', "layers.%d.final_layer_norm.weight", l, d);
        V('b', "layers.%d.final_layer_norm.bias", l, d);
    }
    V('n', "layer_norm.weight", 0, d);
    V('b', "layer_norm.bias", 0, d);
    mrw_error err = {0};
    mrw_status s = mrw_safetensors_write(path, L.t, L.n, NULL, 0, NULL, NULL, &err);
    if (s) fprintf(stderr, "%s: %s\n", path, err.msg);
    tlist_free(&L);
    return s ? -1 : 0;
}

static int write_wavlm(const char *path) {
    tlist L = {.rng = 0x2545f4914f6cdd1dull};
    const int d = 768, ffn = 3072, H = 12;
    static const int K[7] = {10, 3, 3, 3, 3, 2, 2};
    for (int i = 0; i < 7; i++)
        add(&L, 'w', "feature_extractor.conv_layers.%d.conv.weight", i, 3, 512, i ? 512 : 1, K[i], 0);
    V('n', "feature_extractor.conv_layers.%d.layer_norm.weight", 0, 512);
    V('b', "feature_extractor.conv_layers.%d.layer_norm.bias", 0, 512);
    V('n', "feature_projection.layer_norm.weight", 0, 512);
    V('b', "feature_projection.layer_norm.bias", 0, 512);
    W2("feature_projection.projection.weight", 0, d, 512);
    V('b', "feature_projection.projection.bias", 0, d);
    add(&L, 'n', "encoder.pos_conv_embed.conv.weight_g", 0, 3, 1, 1, 128, 0);
    add(&L, 'w', "encoder.pos_conv_embed.conv.weight_v", 0, 3, d, d / 16, 128, 0);
    V('b', "encoder.pos_conv_embed.conv.bias", 0, d);
    V('n', "encoder.layer_norm.weight", 0, d);
    V('b', "encoder.layer_norm.bias", 0, d);
    add(&L, 'e', "encoder.layers.0.attention.rel_attn_embed.weight", 0, 2, 320, H, 0, 0);
    for (int l = 0; l < 12; l++) {
        static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int p = 0; p < 4; p++) {
            char n[128];
            snprintf(n, sizeof n, "encoder.layers.%%d.attention.%s.weight", proj[p]);
            W2(n, l, d, d);
            snprintf(n, sizeof n, "encoder.layers.%%d.attention.%s.bias", proj[p]);
            V('b', n, l, d);
        }
        add(&L, 'n', "encoder.layers.%d.attention.gru_rel_pos_const", l, 4, 1, H, 1, 1);
        W2("encoder.layers.%d.attention.gru_rel_pos_linear.weight", l, 8, d / H);
        V('b', "encoder.layers.%d.attention.gru_rel_pos_linear.bias", l, 8);
        V('n', "encoder.layers.%d.layer_norm.weight", l, d);
        V('b', "encoder.layers.%d.layer_norm.bias", l, d);
        W2("encoder.layers.%d.feed_forward.intermediate_dense.weight", l, ffn, d);
        V('b', "encoder.layers.%d.feed_forward.intermediate_dense.bias", l, ffn);
        W2("encoder.layers.%d.feed_forward.output_dense.weight", l, d, ffn);
        V('b', "encoder.layers.%d.feed_forward.output_dense.bias", l, d);
        V('n', "encoder.layers.%d.final_layer_norm.weight", l, d);
        V('b', "encoder.layers.%d.final_layer_norm.bias", l, d);
    }
    mrw_error err = {0};
    mrw_status s = mrw_safetensors_write(path, L.t, L.n, NULL, 0, NULL, NULL, &err);
    if (s) fprintf(stderr, "%s: %s\n", path, err.msg);
    tlist_free(&L);
    return s ? -1 : 0;
}

/* ----------------------------------------------------------------------------------------- FLOP counts */

static double whisper_flops(const mrw_whisper_config *c, int F) {
    const double T = mrw_whisper_enc_out_frames(F), d = c->d_model;
    double f = 2.0 * F * 3 * c->n_mels * d + 2.0 * T * 3 * d * d;
    f += c->n_layers * (8.0 * T * d * d + 4.0 * T * T * d + 4.0 * T * d * c->ffn_dim);
    return f;
}

static double wavlm_flops(const mrw_wavlm *m, int n) {
    const mrw_wavlm_config *c = mrw_wavlm_get_config(m);
    double f = 0, t = n;
    int cin = 1;
    for (int i = 0; i < c->n_conv; i++) {
        t = (int)((t - c->conv_kernel[i]) / c->conv_stride[i]) + 1;
        f += 2.0 * t * c->conv_kernel[i] * cin * c->conv_dim[i];
        cin = c->conv_dim[i];
    }
    const double d = c->hidden, T = t;
    f += 2.0 * T * cin * d + 2.0 * T * c->pos_kernel * (d / c->pos_groups) * d;
    f += c->n_layers * (8.0 * T * d * d + 4.0 * T * T * d + 4.0 * T * d * c->ffn_dim + 16.0 * T * d);
    return f;
}

/* ---------------------------------------------------------------------------------------------- main */

static double sgemm_rate(int nt) {
    const int M = 1500, N = 3072, K = 768;
    float *A = malloc((size_t)M * K * 4), *B = malloc((size_t)N * K * 4), *C = malloc((size_t)M * N * 4);
    uint64_t s = 12345;
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = urand(&s);
    for (size_t i = 0; i < (size_t)N * K; i++) B[i] = urand(&s);
    openblas_set_num_threads(nt); /* OpenBLAS's cblas.h declares it */
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double t0 = mrw_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        double t = mrw_now() - t0;
        if (r && t < best) best = t;
    }
    free(A);
    free(B);
    free(C);
    return 2.0 * M * N * K / best / 1e9;
}

typedef struct {
    double sec, gflop;
} result;

static result bench_whisper(const mrw_whisper_enc *m, int nt, int reps) {
    const mrw_whisper_config *c = mrw_whisper_enc_config(m);
    const int F = 2 * c->n_pos, T = mrw_whisper_enc_out_frames(F);
    float *mel = malloc((size_t)c->n_mels * F * sizeof *mel),
          *out = malloc((size_t)T * c->d_model * sizeof *out);
    uint64_t s = 777;
    for (size_t i = 0; i < (size_t)c->n_mels * F; i++) mel[i] = 0.25f + urand(&s);
    mrw_kctx k;
    mrw_kctx_init(&k, nt);
    mrw_error err = {0};
    double best = 1e30;
    for (int r = 0; r <= reps; r++) { /* the first run warms up (page faults, scratch) */
        double t0 = mrw_now();
        if (mrw_whisper_enc_forward(m, &k, mel, F, out, &err)) fprintf(stderr, "whisper: %s\n", err.msg);
        double t = mrw_now() - t0;
        if (r && t < best) best = t;
    }
    mrw_kctx_free(&k);
    free(mel);
    free(out);
    return (result){best, whisper_flops(c, F) / 1e9};
}

static result bench_wavlm(const mrw_wavlm *m, int nt, int reps, int n) {
    const int T = mrw_wavlm_out_frames(m, n);
    float *wave = malloc((size_t)n * sizeof *wave),
          *out = malloc((size_t)T * mrw_wavlm_get_config(m)->hidden * 4);
    uint64_t s = 4242;
    for (int i = 0; i < n; i++) wave[i] = urand(&s) * 1.7f;
    mrw_kctx k;
    mrw_kctx_init(&k, nt);
    mrw_error err = {0};
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = mrw_now();
        if (mrw_wavlm_forward(m, &k, wave, n, out, &err)) fprintf(stderr, "wavlm: %s\n", err.msg);
        double t = mrw_now() - t0;
        if (r && t < best) best = t;
    }
    mrw_kctx_free(&k);
    free(wave);
    free(out);
    return (result){best, wavlm_flops(m, n) / 1e9};
}

/* The 1-minute load average: other processes on the cores make every number here lower. */
static double loadavg(void) {
    double l = -1;
    FILE *fp = fopen("/proc/loadavg", "r");
    if (fp && fscanf(fp, "%lf", &l) != 1) l = -1;
    if (fp) fclose(fp);
    return l;
}

int main(int argc, char **argv) {
    if (argc > 3 || (argc > 1 && atoi(argv[1]) <= 0) || (argc > 2 && atoi(argv[2]) <= 0)) {
        fprintf(stderr, "usage: %s [MAX_THREADS (default 2)] [REPS (default 2)]\n", argv[0]);
        return 2;
    }
    const int max_nt = argc > 1 ? atoi(argv[1]) : 2;
    const int reps = argc > 2 ? atoi(argv[2]) : 2;
    const char *tmp = getenv("TMPDIR");
    char dir[256], wpath[300], lpath[300];
    snprintf(dir, sizeof dir, "%s/mrw_bench_audio_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(wpath, sizeof wpath, "%s/whisper-small.safetensors", dir);
    snprintf(lpath, sizeof lpath, "%s/wavlm-base-plus.safetensors", dir);
    fprintf(stderr, "writing random whisper-small and wavlm-base-plus weights to %s ...\n", dir);
    mrw_tfile *wf = NULL, *lf = NULL;
    mrw_whisper_enc *wm = NULL;
    mrw_wavlm *lm = NULL;
    mrw_error err = {0};
    const mrw_whisper_params wp = {.n_heads = 12};
    int rc = 1;
    if (write_whisper(wpath) || write_wavlm(lpath) || mrw_tfile_open(wpath, &wf, &err) ||
        mrw_whisper_enc_load(wf, &wp, &wm, &err) || mrw_tfile_open(lpath, &lf, &err) ||
        mrw_wavlm_load(lf, NULL, &lm, &err)) {
        fprintf(stderr, "setup failed: %s\n", err.msg);
        goto done;
    }
    printf("%-7s | %-32s | %8s | %7s | %8s | %13s | %s\n", "threads", "encoder", "time s", "GFLOP", "GFLOP/s",
           "sgemm GFLOP/s", "% of sgemm");
    for (int nt = 1; nt <= max_nt; nt++) {
        fprintf(stderr, "%d thread%s: load average %.2f before the run, fp32 FMA peak %.1f GFLOP/s\n", nt,
                nt > 1 ? "s" : "", loadavg(), mrw_bench_fma_gflops(nt));
        const double blas = sgemm_rate(nt);
        result r[2] = {bench_whisper(wm, nt, reps), bench_wavlm(lm, nt, reps, 160000)};
        const char *names[2] = {"whisper-small, 30 s (3000 frames)", "wavlm-base-plus, 10 s (160000)"};
        for (int i = 0; i < 2; i++)
            printf("%-7d | %-32s | %8.3f | %7.1f | %8.1f | %13.1f | %5.1f%%\n", nt, names[i], r[i].sec,
                   r[i].gflop, r[i].gflop / r[i].sec, blas, 100 * r[i].gflop / r[i].sec / blas);
        fflush(stdout);
    }
    rc = 0;
done:
    mrw_whisper_enc_free(wm);
    mrw_wavlm_free(lm);
    mrw_tfile_close(wf);
    mrw_tfile_close(lf);
    unlink(wpath);
    unlink(lpath);
    rmdir(dir);
    return rc;
}
