/* The GPU decoder (src/kernels/cuda/rwkv7_decode_gpu.h) against the CPU model's RNN mode (mrw_eval_tokens with
 * n = 1, exact context, one thread) on tiny random models with the same weights: the model is created with bf16
 * big matrices (mrw_model_new_random; its LoRA matrices and vectors are f32, which the GPU keeps too), so both
 * sides hold identical weights and differ only in the order of fp32 sums.
 *     make CUDA=1 && make CUDA=1 build-cuda/tests/cuda/test_decode_gpu && build-cuda/tests/cuda/test_decode_gpu [--quick]
 * Rows (one per case and quantity; max err = max|gpu - cpu| / max|cpu| over every step and sequence, norm err the
 * same with 2-norms, worst step):
 *   logits   the next-token logits of every step of every sequence
 *   state    the whole state (token-shift vectors and WKV matrices) of every sequence after the last step
 *   graph    the logits of a decoder replaying the CUDA graph against one launching kernels one by one: bit-equal
 * Cases: B = 1 from the zero state; B = 3 whose sequences start from states prefilled on the CPU (different prompts
 * through mrw_state_data -> mrw_decode_gpu_set_state) and read different tokens; an odd width (C = 192, three
 * heads); FFN rows of 4104 (513 16-byte chunks) at B = 1 (4 warps per row, ragged) and B = 2. Every B = 1 case runs
 * the LoRA up-projections fused into k_mid, every B > 1 case the separate launch. Prompt cases (mrw_decode_gpu_step_embed, the prompt of `chat --device cuda`): a sequence that mixes text
 * tokens (_step) and input rows (_step_embed: random rows standing for ModRWKV feature rows), one position per GPU
 * step, against the CPU's RNN mode (mrw_eval_tokens / mrw_eval_embeddings with n = 1): rows `prompt` (the logits at
 * every position), `pstate` (the final state), `pgraph` (graph and direct launches bit-equal), and `pseq` (the last
 * logits and the final state against the CPU's sequence mode, mrw_eval_embeddings over the whole prompt at once on
 * the exact context: what `chat --device cpu --exact` runs; tolerance 1e-3, other fp32 summation orders). Then
 * argument checks (token outside the vocabulary, batch beyond the allocation, head size 32, wrong state size, NULL
 * rows). Tolerance 1e-4 (max and norm err; measured worst in docs/CUDA.md). Exit status 0 only if every
 * row passes. --quick: fewer steps (for compute-sanitizer). */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

extern "C" {
#include "kernels/cuda/rwkv7_decode_gpu.h"
#include "models/rwkv7.h"
}

static int g_fail = 0, g_rows = 0;
static const double TOL = 1e-4;

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_rng >> 33) % n;
}

/* max|a-b|, max|b|, sum (a-b)^2, sum b^2 */
struct errs {
    double md = 0, mr = 0, sd = 0, sr = 0;
    void add(const float *a, const float *b, size_t n) {
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)a[i] - b[i]);
            if (!(d == d)) d = INFINITY;
            md = fmax(md, d), mr = fmax(mr, fabs((double)b[i]));
            sd += d * d, sr += (double)b[i] * b[i];
        }
    }
    double max_err() const { return mr > 0 ? md / mr : md; }
    double norm_err() const { return sr > 0 ? sqrt(sd / sr) : sqrt(sd); }
};

static void row(const char *what, const char *cs, double me, double ne, double tol) {
    int ok = me <= tol && ne <= tol;
    g_rows++;
    g_fail += !ok;
    printf("| %-8s | %-34s | %9.2e | %9.2e | %7.0e | %s |\n", what, cs, me, ne, tol, ok ? "pass" : "FAIL");
}

static void check(const char *what, const char *cs, int ok) {
    g_rows++;
    g_fail += !ok;
    printf("| %-8s | %-34s | %9s | %9s | %7s | %s |\n", what, cs, "-", "-", "-", ok ? "pass" : "FAIL");
}

static int run_case(int L, int C, int F, int V, int B, int steps, int prefill, uint64_t seed) {
    char cs[64];
    snprintf(cs, sizeof cs, "L%d C%d F%d V%d B%d %dst%s", L, C, F, V, B, steps, prefill ? " prefilled" : "");
    mrw_error err = {};
    mrw_rwkv7_config cfg = {L, C, 64, F, V, 0, 0, 0, 0};
    mrw_model *m = NULL;
    if (mrw_model_new_random(&cfg, MRW_DT_BF16, seed, &m, &err)) {
        printf("model: %s\n", err.msg);
        return 1;
    }
    mrw_context_params cp = mrw_context_params_default();
    cp.n_threads = 1;
    cp.exact = 1;
    mrw_context *ctx = NULL;
    if (mrw_context_new(m, &cp, &ctx, &err)) {
        printf("context: %s\n", err.msg);
        return 1;
    }
    mrw_decode_gpu *g = NULL, *g2 = NULL;
    if (mrw_decode_gpu_from_model(m, B, &g, &err) || mrw_decode_gpu_from_model(m, B, &g2, &err)) {
        printf("gpu: %s\n", err.msg);
        return 1;
    }
    mrw_decode_gpu_set_graph(g2, 0);
    std::vector<mrw_state *> st(B);
    const size_t nsf = mrw_decode_gpu_state_floats(g);
    for (int b = 0; b < B; b++) {
        st[b] = mrw_state_new(m);
        if (prefill) {
            std::vector<int32_t> p(3 + 2 * b);
            for (auto &t : p) t = rnd(V);
            std::vector<float> lg(V);
            mrw_eval_tokens(ctx, st[b], p.data(), (int)p.size(), MRW_LOGITS_LAST, lg.data(), &err);
            size_t n;
            float *d = mrw_state_data(st[b], &n);
            if (n != nsf || mrw_decode_gpu_set_state(g, b, d, n, &err) || mrw_decode_gpu_set_state(g2, b, d, n, &err)) {
                printf("state: %s\n", err.msg);
                return 1;
            }
        }
    }
    std::vector<float> lc((size_t)V), lgpu((size_t)B * V), lgpu2((size_t)B * V);
    std::vector<int32_t> tok(B);
    double worst_n = 0, worst_m = 0;
    int graph_equal = 1;
    for (int s = 0; s < steps; s++) {
        for (int b = 0; b < B; b++) tok[b] = rnd(V);
        if (mrw_decode_gpu_step(g, tok.data(), B, lgpu.data(), &err) ||
            mrw_decode_gpu_step(g2, tok.data(), B, lgpu2.data(), &err)) {
            printf("step: %s\n", err.msg);
            return 1;
        }
        graph_equal &= memcmp(lgpu.data(), lgpu2.data(), lgpu.size() * sizeof(float)) == 0;
        for (int b = 0; b < B; b++) {
            mrw_eval_tokens(ctx, st[b], &tok[b], 1, MRW_LOGITS_LAST, lc.data(), &err);
            errs e1;
            e1.add(lgpu.data() + (size_t)b * V, lc.data(), V);
            worst_m = fmax(worst_m, e1.max_err()), worst_n = fmax(worst_n, e1.norm_err());
        }
    }
    row("logits", cs, worst_m, worst_n, TOL);
    double sm = 0, sn = 0;
    std::vector<float> gs(nsf);
    for (int b = 0; b < B; b++) {
        size_t n;
        float *d = mrw_state_data(st[b], &n);
        mrw_decode_gpu_get_state(g, b, gs.data(), nsf, &err);
        errs e1;
        e1.add(gs.data(), d, n);
        sm = fmax(sm, e1.max_err()), sn = fmax(sn, e1.norm_err());
    }
    row("state", cs, sm, sn, TOL);
    check("graph", cs, graph_equal);
    for (auto p : st) mrw_state_free(p);
    mrw_decode_gpu_free(g);
    mrw_decode_gpu_free(g2);
    mrw_context_free(ctx);
    mrw_model_free(m);
    return 0;
}

/* A prompt of n positions, ~1/3 of them input rows (in runs, as spliced features come), the others tokens. */
static int run_prompt_case(int L, int C, int F, int V, int n, uint64_t seed) {
    char cs[64];
    snprintf(cs, sizeof cs, "L%d C%d F%d V%d prompt %d", L, C, F, V, n);
    mrw_error err = {};
    mrw_rwkv7_config cfg = {L, C, 64, F, V, 0, 0, 0, 0};
    mrw_model *m = NULL;
    if (mrw_model_new_random(&cfg, MRW_DT_BF16, seed, &m, &err)) {
        printf("model: %s\n", err.msg);
        return 1;
    }
    mrw_context_params cp = mrw_context_params_default();
    cp.n_threads = 1;
    cp.exact = 1;
    mrw_context *ctx = NULL;
    mrw_decode_gpu *g = NULL, *g2 = NULL;
    if (mrw_context_new(m, &cp, &ctx, &err) || mrw_decode_gpu_from_model(m, 1, &g, &err) ||
        mrw_decode_gpu_from_model(m, 1, &g2, &err)) {
        printf("setup: %s\n", err.msg);
        return 1;
    }
    mrw_decode_gpu_set_graph(g2, 0);
    std::vector<int32_t> tok(n);
    std::vector<float> rows((size_t)n * C);
    for (int i = 0; i < n; i++) {
        const int feature = (i / 4) % 3 == 1; /* runs of 4 rows */
        tok[i] = feature ? -1 : (int32_t)rnd(V);
        float *r = rows.data() + (size_t)i * C;
        if (feature)
            for (int c = 0; c < C; c++) r[c] = (float)rnd(2001) / 1000.0f - 1.0f;
        else
            mrw_model_embedding(m, tok[i], r);
    }
    mrw_state *st = mrw_state_new(m), *sq = mrw_state_new(m);
    std::vector<float> lc((size_t)V), lgpu((size_t)V), lgpu2((size_t)V), lseq((size_t)V);
    double wm = 0, wn = 0;
    int graph_equal = 1;
    for (int i = 0; i < n; i++) {
        const float *r = rows.data() + (size_t)i * C;
        mrw_status a = tok[i] >= 0 ? mrw_decode_gpu_step(g, &tok[i], 1, lgpu.data(), &err)
                                   : mrw_decode_gpu_step_embed(g, r, 1, lgpu.data(), &err);
        mrw_status b = tok[i] >= 0 ? mrw_decode_gpu_step(g2, &tok[i], 1, lgpu2.data(), &err)
                                   : mrw_decode_gpu_step_embed(g2, r, 1, lgpu2.data(), &err);
        mrw_status c = tok[i] >= 0 ? mrw_eval_tokens(ctx, st, &tok[i], 1, MRW_LOGITS_LAST, lc.data(), &err)
                                   : mrw_eval_embeddings(ctx, st, r, 1, MRW_LOGITS_LAST, lc.data(), &err);
        if (a || b || c) {
            printf("step %d: %s\n", i, err.msg);
            return 1;
        }
        graph_equal &= memcmp(lgpu.data(), lgpu2.data(), lgpu.size() * sizeof(float)) == 0;
        errs e1;
        e1.add(lgpu.data(), lc.data(), V);
        wm = fmax(wm, e1.max_err()), wn = fmax(wn, e1.norm_err());
    }
    row("prompt", cs, wm, wn, TOL);
    const size_t nsf = mrw_decode_gpu_state_floats(g);
    std::vector<float> gs(nsf);
    size_t ns;
    float *d = mrw_state_data(st, &ns);
    mrw_decode_gpu_get_state(g, 0, gs.data(), nsf, &err);
    errs es;
    es.add(gs.data(), d, ns);
    row("pstate", cs, es.max_err(), es.norm_err(), TOL);
    check("pgraph", cs, graph_equal);
    /* the CPU's sequence mode over the whole prompt (what the CPU chat runs) */
    if (mrw_eval_embeddings(ctx, sq, rows.data(), n, MRW_LOGITS_LAST, lseq.data(), &err)) {
        printf("sequence: %s\n", err.msg);
        return 1;
    }
    errs eq, eqs;
    eq.add(lgpu.data(), lseq.data(), V);
    float *dq = mrw_state_data(sq, &ns);
    eqs.add(gs.data(), dq, ns);
    row("pseq", cs, fmax(eq.max_err(), eqs.max_err()), fmax(eq.norm_err(), eqs.norm_err()), 1e-3);
    mrw_state_free(st);
    mrw_state_free(sq);
    mrw_decode_gpu_free(g);
    mrw_decode_gpu_free(g2);
    mrw_context_free(ctx);
    mrw_model_free(m);
    return 0;
}

static void arg_checks(void) {
    mrw_error err = {};
    mrw_decode_gpu_shape sh = {1, 128, 64, 256, 100, 32, 32, 32, 32};
    mrw_decode_gpu *g = NULL;
    if (mrw_decode_gpu_new(&sh, 2, &g, &err)) {
        printf("new: %s\n", err.msg);
        g_fail++;
        return;
    }
    int32_t t[3] = {5, 100, 7};
    check("args", "token 100 outside V 100", mrw_decode_gpu_step(g, t, 2, NULL, &err) == MRW_E_ARG);
    printf("      %s\n", err.msg);
    check("args", "batch 3 > max 2", mrw_decode_gpu_step(g, t, 3, NULL, &err) == MRW_E_ARG);
    float x[4] = {0};
    check("args", "wrong state size", mrw_decode_gpu_set_state(g, 0, x, 4, &err) == MRW_E_ARG);
    check("args", "wrong tensor size", mrw_decode_gpu_set(g, MRW_DG_WR, 0, x, 4, &err) == MRW_E_ARG);
    check("args", "NULL embedding rows", mrw_decode_gpu_step_embed(g, NULL, 1, NULL, &err) == MRW_E_ARG);
    std::vector<float> er(3 * 128, 0.1f);
    check("args", "3 embedding rows > max 2", mrw_decode_gpu_step_embed(g, er.data(), 3, NULL, &err) == MRW_E_ARG);
    check("args", "valid embedding step", mrw_decode_gpu_step_embed(g, er.data(), 2, NULL, &err) == MRW_OK);
    t[1] = 9;
    check("args", "valid step after errors", mrw_decode_gpu_step(g, t, 2, NULL, &err) == MRW_OK);
    mrw_decode_gpu_free(g);
    sh.head_size = 32;
    check("args", "head size 32", mrw_decode_gpu_new(&sh, 1, &g, &err) == MRW_E_ARG && !g);
    printf("      %s\n", err.msg);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    int dev = 0;
    if (cudaGetDeviceCount(&dev) != cudaSuccess || dev < 1) {
        printf("no CUDA device\n");
        return 1;
    }
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    printf("device: %s\n", p.name);
    printf("| what     | case                               | max err   | norm err  | tol     | ok   |\n");
    printf("|---|---|---|---|---|---|\n");
    int n = quick ? 4 : 16;
    if (run_case(2, 128, 512, 300, 1, n, 0, 11)) g_fail++;
    if (run_case(2, 128, 512, 300, 3, n, 1, 12)) g_fail++;
    if (run_case(3, 192, 448, 1000, 2, quick ? 3 : 10, 1, 13)) g_fail++;
    if (!quick && run_case(2, 256, 1024, 65536, 1, 6, 1, 14)) g_fail++;
    /* FFN value rows of 4104 (513 chunks): B = 1 takes 4 warps per row (ragged), B = 2 the batched rule */
    if (run_case(2, 128, 4104, 300, 1, quick ? 3 : 8, 1, 17)) g_fail++;
    if (run_case(2, 128, 4104, 300, 2, quick ? 3 : 8, 1, 18)) g_fail++;
    if (run_prompt_case(2, 128, 512, 300, quick ? 12 : 40, 15)) g_fail++;
    if (!quick && run_prompt_case(3, 192, 448, 1000, 30, 16)) g_fail++;
    arg_checks();
    printf("%d of %d rows passed\n", g_rows - g_fail, g_rows);
    return g_fail ? 1 : 0;
}
