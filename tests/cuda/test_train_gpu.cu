/* The GPU trainer (src/kernels/cuda/rwkv7_train_gpu.h) against the CPU trainer (src/train/rwkv7_train.c, fp32,
 * exact WKV backward): one full training step on random weights and tokens.
 *     make CUDA=1 cuda-tests && build-cuda/tests/cuda/test_train_gpu [--all] [--quick]
 * Per case (B x T tokens with ~20% ignored targets; T = 37 is not a multiple of 16):
 *   loss          |gpu - cpu| / |cpu|
 *   grad <tensor> every parameter gradient after backward(scale 0.5): max err = max|gpu - cpu| / max|cpu| per
 *                 tensor and norm err = ||gpu - cpu|| / ||cpu||; the table prints the worst tensor of each class
 *                 (the name without "blocks.N."), --all every tensor
 *   adam          one AdamW / Adam step with global-norm clipping (max_norm = half the norm, so it clips) on the
 *                 CPU trainer's gradients uploaded to the GPU: the norm (relative) and max|w_gpu - w_cpu| / lr
 *   loss after    the loss of a second forward after that step (so the bf16 working copy Adam wrote is used)
 * Tolerances: fp32 mode (fp32 activations and GEMMs: this proves the math) loss 1e-4, gradients max err 3e-4 and
 * norm err 1e-4 (measured worst 1.1e-4 / 2.7e-5: the GPU's WKV backward recovers states by inversion, the CPU's
 * recomputes them exactly, and sums run in other orders); bf16 mode (the training configuration: bf16
 * activations, activation gradients and GEMM inputs, fp32 accumulation, WKV state, statistics and parameter
 * gradients) loss 5e-3, gradients max err 1.5e-1 and norm err 1e-1 (measured worst 7.5e-2 / 5.6e-2: every stored
 * activation and activation gradient is rounded to 2^-9 relative, through two blocks and back, and each weight
 * gradient here is a sum over only 74 rows, so nothing averages out; the bf16 rows check the dtype plumbing, the
 * fp32 rows the math); Adam: norm 1e-6, weights 1e-3 of lr (the kernels round as the CPU does; the clip
 * coefficient comes from a differently ordered sum). Exit status 0 only if every row passes.
 * Then the ModRWKV rows (run_inject_case): feature rows injected at masked positions and the frozen (stage 1)
 * backward against mrw_rwkv7_train_forward(inject, mask) / mrw_rwkv7_train_backward(frozen, d_inject): loss,
 * d_inject and gradients at the tolerances above; frozen: no gradient element may move.
 * Then the hidden-state rows (run_hidden_case, the forecaster's read-out): forward_hidden / backward_hidden against
 * the CPU trainer's hidden-state entry, fp32 and bf16, with and without injected rows, frozen and not.
 * --quick: the first three cases (two inject cases) and no out-of-memory check (compute-sanitizer reports the deliberately failing
 * cudaMalloc as an API error). */
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

extern "C" {
#include "kernels/cuda/rwkv7_train_gpu.h"
#include "train/optim.h"
#include "train/params.h"
#include "train/rwkv7_train.h"
}

static int g_fail = 0, g_rows = 0, g_all = 0;
static FILE *g_log = NULL;

static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
#include "test_rng.inc"

struct tcase {
    const char *name;
    int L, C, V, F, dw, da, dv, dg, B, T, fp32, ckpt;
    double wd; /* AdamW weight decay (0: plain Adam, the uniform path) */
};

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (g_log) {
        va_start(ap, fmt);
        vfprintf(g_log, fmt, ap);
        va_end(ap);
    }
}

static void row(const char *cs, const char *what, double maxe, double norme, double tol_max, double tol_norm) {
    const int ok = maxe <= tol_max && norme <= tol_norm && maxe == maxe && norme == norme;
    g_rows++;
    if (!ok) g_fail++;
    out("%-26s %-34s %10.2e %10.2e %8.0e/%-8.0e %s\n", cs, what, maxe, norme, tol_max, tol_norm, ok ? "ok" : "FAIL");
}

/* Random weights with the magnitudes of a trained model (every matrix nonzero, so every gradient flows). */
static void init_params(mrw_param_set *ps) {
    for (int i = 0; i < ps->n; i++) {
        const mrw_param *p = &ps->p[i];
        float *w = ps->w + p->offset;
        const char *n = p->name;
        float lo = -0.1f, hi = 0.1f;
        if (strstr(n, "emb.weight")) lo = -1.f, hi = 1.f;
        else if (p->ndim == 2 && strstr(n, "r_k")) lo = -0.5f, hi = 0.5f;
        else if (p->ndim == 2) {
            const int64_t fan = strstr(n, ".weight") ? p->shape[1] : p->shape[0];
            hi = sqrtf(3.0f / (float)fan), lo = -hi;
        } else if (strstr(n, "ln") && strstr(n, ".weight")) lo = 0.8f, hi = 1.2f;
        else if (strstr(n, ".w0")) lo = -4.f, hi = 0.f;
        else if (strstr(n, ".x_")) lo = 0.f, hi = 1.f;
        else if (strstr(n, "k_k") || strstr(n, "k_a")) lo = 0.5f, hi = 1.5f;
        else if (strstr(n, ".a0") || strstr(n, ".v0")) lo = -0.5f, hi = 0.5f;
        for (size_t j = 0; j < p->n; j++) w[j] = rnd_u(lo, hi);
    }
}

static mrw_param_set clone_set(const mrw_param_set *s) {
    mrw_param_set c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < s->n; i++) mrw_param_add(&c, s->p[i].name, s->p[i].group, s->p[i].no_decay, s->p[i].ndim,
                                                 s->p[i].shape);
    mrw_error e;
    if (mrw_param_set_alloc(&c, &e)) {
        fprintf(stderr, "alloc: %s\n", e.msg);
        exit(2);
    }
    return c;
}

/* max|a - b| / max|b| and ||a - b|| / ||b|| (absolute when b is all zero) */
static void errs(const float *a, const float *b, size_t n, double *maxe, double *norme) {
    double md = 0, mr = 0, sd = 0, sr = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d; /* NaN sticks */
        if (fabs(b[i]) > mr) mr = fabs(b[i]);
        sd += d * d, sr += (double)b[i] * b[i];
    }
    *maxe = mr > 0 ? md / mr : md;
    *norme = sr > 0 ? sqrt(sd / sr) : sqrt(sd);
}

static std::string klass(const char *name) {
    std::string s(name);
    const size_t p = s.find("blocks.");
    if (p == std::string::npos) return s;
    const size_t q = s.find('.', p + 7);
    return s.substr(0, p) + s.substr(q + 1);
}

#define CHECK(call)                                                                                        \
    do {                                                                                                   \
        mrw_status s_ = (call);                                                                            \
        if (s_) {                                                                                          \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, e.msg);                          \
            exit(2);                                                                                       \
        }                                                                                                  \
    } while (0)

static void run_case(const tcase *tc, int idx) {
    mrw_error e;
    mrw_rwkv7_train_config cfg = {tc->L, tc->C, 64, tc->V, tc->F, tc->dw, tc->da, tc->dv, tc->dg};
    char cs[64];
    snprintf(cs, sizeof cs, "%s", tc->name);
    mrw_rwkv7_train *cpu = NULL;
    CHECK(mrw_rwkv7_train_new(&cfg, tc->B, tc->T, 1, &cpu, &e));
    mrw_param_set *ps = mrw_rwkv7_train_params(cpu);
    init_params(ps);
    mrw_rwkv7_gpu_opts o = {tc->fp32, tc->ckpt, 0};
    mrw_rwkv7_gpu *gpu = NULL;
    CHECK(mrw_rwkv7_gpu_new(&cfg, tc->B, tc->T, &o, &gpu, &e));
    CHECK(mrw_rwkv7_gpu_upload(gpu, ps, &e));
    const int BT = tc->B * tc->T;
    std::vector<int32_t> tok(BT), tgt(BT);
    for (int r = 0; r < BT; r++) tok[r] = (int32_t)(rnd_u64() % (uint64_t)tc->V);
    for (int r = 0; r < BT; r++)
        tgt[r] = (rnd_u64() % 5 == 0) ? MRW_IGNORE : (r % tc->T + 1 < tc->T ? tok[r + 1] : (int32_t)(rnd_u64() % tc->V));
    const double tl = tc->fp32 ? 1e-4 : 5e-3, tgm = tc->fp32 ? 3e-4 : 1.5e-1, tgn = tc->fp32 ? 1e-4 : 1e-1;
    /* forward + backward on both */
    mrw_param_zero_grad(ps);
    const float lc = mrw_rwkv7_train_forward(cpu, tok.data(), NULL, NULL, tgt.data(), tc->B, tc->T, NULL);
    mrw_rwkv7_train_backward(cpu, 0.5f, 0, NULL);
    float lg = 0;
    CHECK(mrw_rwkv7_gpu_zero_grad(gpu, &e));
    CHECK(mrw_rwkv7_gpu_forward(gpu, tok.data(), tgt.data(), tc->B, tc->T, 1, &lg, &e));
    CHECK(mrw_rwkv7_gpu_backward(gpu, 0.5f, &e));
    char what[160];
    snprintf(what, sizeof what, "loss (cpu %.6f gpu %.6f)", lc, lg);
    const double le = fabs((double)lg - lc) / fabs((double)lc);
    row(cs, what, le, le, tl, tl);
    /* gradients */
    mrw_param_set gs = clone_set(ps);
    CHECK(mrw_rwkv7_gpu_download(gpu, &gs, 1, &e));
    std::vector<std::string> cls;
    std::vector<double> cmax, cnorm;
    std::vector<std::string> cworst;
    for (int i = 0; i < ps->n; i++) {
        const mrw_param *p = &ps->p[i];
        double me, ne;
        errs(gs.g + p->offset, ps->g + p->offset, p->n, &me, &ne);
        if (g_all) {
            snprintf(what, sizeof what, "grad %s", p->name);
            row(cs, what, me, ne, tgm, tgn);
        }
        const std::string k = klass(p->name);
        size_t j = 0;
        while (j < cls.size() && cls[j] != k) j++;
        if (j == cls.size()) cls.push_back(k), cmax.push_back(-1), cnorm.push_back(-1), cworst.push_back(p->name);
        if (!(me <= cmax[j])) cmax[j] = me, cworst[j] = p->name;
        if (!(ne <= cnorm[j])) cnorm[j] = ne;
    }
    if (!g_all)
        for (size_t j = 0; j < cls.size(); j++) {
            snprintf(what, sizeof what, "grad %s", cls[j].c_str());
            row(cs, what, cmax[j], cnorm[j], tgm, tgn);
        }
    /* one optimizer step on the CPU trainer's gradients */
    mrw_adam_config ac = mrw_adam_config_default();
    ac.weight_decay = tc->wd, ac.decoupled = 1;
    mrw_adam opt;
    CHECK(mrw_adam_init(&opt, &ac, &ps, 1, MRW_PG_RWKV, &e));
    const double lr = 1e-3, norm = mrw_grad_norm(&opt), max_norm = 0.5 * norm;
    CHECK(mrw_rwkv7_gpu_upload_grads(gpu, ps, &e));
    double gnorm = 0;
    CHECK(mrw_rwkv7_gpu_step(gpu, &ac, lr, max_norm, &gnorm, &e));
    mrw_clip_grad_norm(&opt, max_norm);
    mrw_adam_step(&opt, lr);
    snprintf(what, sizeof what, "adam: grad norm %.4g (clip %.3g)", norm, max_norm);
    const double ne = fabs(gnorm - norm) / norm;
    row(cs, what, ne, ne, 1e-6, 1e-6);
    CHECK(mrw_rwkv7_gpu_download(gpu, &gs, 0, &e));
    double wmax = 0;
    for (size_t j = 0; j < ps->total; j++) {
        const double d = fabs((double)gs.w[j] - ps->w[j]);
        if (!(d <= wmax)) wmax = d;
    }
    snprintf(what, sizeof what, "adam%s: max|w_gpu - w_cpu| / lr", tc->wd > 0 ? "W wd 0.1" : "");
    row(cs, what, wmax / lr, wmax / lr, 1e-3, 1e-3);
    /* a second forward after the step */
    const float lc2 = mrw_rwkv7_train_forward(cpu, tok.data(), NULL, NULL, tgt.data(), tc->B, tc->T, NULL);
    float lg2 = 0;
    CHECK(mrw_rwkv7_gpu_forward(gpu, tok.data(), tgt.data(), tc->B, tc->T, 0, &lg2, &e));
    snprintf(what, sizeof what, "loss after step (%.6f)", lc2);
    const double le2 = fabs((double)lg2 - lc2) / fabs((double)lc2);
    row(cs, what, le2, le2, tl, tl);
    (void)idx;
    mrw_adam_free(&opt);
    mrw_param_set_free(&gs);
    mrw_rwkv7_gpu_free(gpu);
    mrw_rwkv7_train_free(cpu);
}

/* ModRWKV stages: feature rows injected at masked positions (the first M of every sample plus a few random rows;
 * M = T/3), against the CPU trainer's inject / frozen backward. mode 0: full backward (parameter gradients and
 * d_inject); 1: frozen (stage 1) after a grad-1 forward; 2: frozen after a grad-2 forward (no head gradient).
 * Rows: loss, d_inject (scale 0.5) and, unfrozen, the worst gradient class; frozen, that no gradient moved (the
 * buffers were set to 1 before: every element must still be exactly 1). bf16 cases give both trainers the same
 * bf16-rounded feature rows. */
static uint16_t to_bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float bf16_bits_to_f(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* The injected rows' gradient from the device (f32, or bf16 bits in bf16 mode) as floats. */
static void fetch_dinject(const void *d, size_t n, int fp32, float *out) {
    if (fp32) {
        cudaMemcpy(out, d, n * 4, cudaMemcpyDeviceToHost);
        return;
    }
    std::vector<uint16_t> h(n);
    cudaMemcpy(h.data(), d, n * 2, cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < n; i++) out[i] = bf16_bits_to_f(h[i]);
}

/* The d_inject row: GPU against CPU, and rows that are not injected exactly 0 (else the row fails). bf16: d_inject is
 * one row's gradient at the input end (no sum over rows averages the roundings, unlike the embedding's gradient),
 * measured up to 1.45e-1 / 1.38e-1 on this tiny case: tolerances 2.5e-1 / 2e-1. */
static void dinject_row(const char *cs, const tcase *tc, const float *dgpu, const float *dcpu,
                        const std::vector<uint8_t> &mask, int C, double tgm, double tgn) {
    double me, ne;
    errs(dgpu, dcpu, mask.size() * (size_t)C, &me, &ne);
    int zero_ok = 1;
    for (size_t r = 0; r < mask.size(); r++)
        if (!mask[r])
            for (int c = 0; c < C; c++) zero_ok &= dgpu[r * C + c] == 0.0f;
    char what[160];
    snprintf(what, sizeof what, "d_inject (%d rows)%s", (int)std::count(mask.begin(), mask.end(), 1),
             zero_ok ? "" : " NONZERO ELSEWHERE");
    row(cs, what, zero_ok ? me : 1.0, ne, tc->fp32 ? tgm : 2.5e-1, tc->fp32 ? tgn : 2e-1);
}

/* Frozen backward: no parameter gradient moved from its 1.0 fill, on the GPU (the CPU's count is shown). */
static void frozen_row(const char *cs, const mrw_param_set *gs, const mrw_param_set *ps) {
    size_t moved = 0, cmoved = 0;
    for (size_t j = 0; j < gs->total; j++) moved += gs->g[j] != 1.0f, cmoved += ps->g[j] != 1.0f;
    char what[160];
    snprintf(what, sizeof what, "frozen: grads moved gpu %zu cpu %zu", moved, cmoved);
    row(cs, what, (double)moved, (double)moved, 0, 0);
}

static void run_inject_case(const tcase *tc, int mode) {
    mrw_error e;
    mrw_rwkv7_train_config cfg = {tc->L, tc->C, 64, tc->V, tc->F, tc->dw, tc->da, tc->dv, tc->dg};
    char cs[64];
    snprintf(cs, sizeof cs, "%s %s", tc->name, mode == 0 ? "inj" : mode == 1 ? "inj frozen" : "inj frozen g2");
    mrw_rwkv7_train *cpu = NULL;
    CHECK(mrw_rwkv7_train_new(&cfg, tc->B, tc->T, 1, &cpu, &e));
    mrw_param_set *ps = mrw_rwkv7_train_params(cpu);
    init_params(ps);
    mrw_rwkv7_gpu_opts o = {tc->fp32, tc->ckpt, 0};
    mrw_rwkv7_gpu *gpu = NULL;
    CHECK(mrw_rwkv7_gpu_new(&cfg, tc->B, tc->T, &o, &gpu, &e));
    CHECK(mrw_rwkv7_gpu_upload(gpu, ps, &e));
    const int BT = tc->B * tc->T, C = tc->C, M = tc->T / 3;
    const size_t nC = (size_t)BT * C;
    std::vector<int32_t> tok(BT), tgt(BT);
    std::vector<uint8_t> mask(BT);
    std::vector<float> inj(nC), dcpu(nC), dgpu(nC);
    for (int r = 0; r < BT; r++) {
        mask[r] = r % tc->T < M || rnd_u64() % 7 == 0;
        tok[r] = mask[r] && r % 2 ? (int32_t)tc->V + 5 : (int32_t)(rnd_u64() % (uint64_t)tc->V); /* ignored */
        tgt[r] = mask[r] || rnd_u64() % 5 == 0 ? MRW_IGNORE : (int32_t)(rnd_u64() % (uint64_t)tc->V);
    }
    std::vector<uint16_t> inj16(nC);
    for (size_t i = 0; i < nC; i++) {
        inj[i] = rnd_u(-1.f, 1.f);
        if (!tc->fp32) inj16[i] = to_bf16_bits(inj[i]), inj[i] = bf16_bits_to_f(inj16[i]);
    }
    const size_t esz = tc->fp32 ? 4 : 2;
    void *d_inj = NULL, *d_dinj = NULL;
    if (cudaMalloc(&d_inj, nC * esz) != cudaSuccess || cudaMalloc(&d_dinj, nC * esz) != cudaSuccess) {
        fprintf(stderr, "cudaMalloc failed\n");
        exit(2);
    }
    cudaMemcpy(d_inj, tc->fp32 ? (const void *)inj.data() : (const void *)inj16.data(), nC * esz,
               cudaMemcpyHostToDevice);
    cudaMemset(d_dinj, 0xff, nC * esz); /* NaN poison: every element must be written */
    const int frozen = mode != 0;
    const double tl = tc->fp32 ? 1e-4 : 5e-3, tgm = tc->fp32 ? 3e-4 : 1.5e-1, tgn = tc->fp32 ? 1e-4 : 1e-1;
    mrw_param_zero_grad(ps);
    if (frozen)
        for (size_t j = 0; j < ps->total; j++) ps->g[j] = 1.0f;
    const float lc = mrw_rwkv7_train_forward(cpu, tok.data(), inj.data(), mask.data(), tgt.data(), tc->B, tc->T, NULL);
    mrw_rwkv7_train_backward(cpu, 0.5f, frozen, dcpu.data());
    mrw_param_set gs = clone_set(ps);
    if (frozen) { /* gradient buffers at 1: a frozen backward must not touch them */
        for (size_t j = 0; j < gs.total; j++) gs.g[j] = 1.0f;
        CHECK(mrw_rwkv7_gpu_upload_grads(gpu, &gs, &e));
    } else {
        CHECK(mrw_rwkv7_gpu_zero_grad(gpu, &e));
    }
    float lg = 0;
    CHECK(mrw_rwkv7_gpu_forward_ex(gpu, tok.data(), d_inj, mask.data(), tgt.data(), tc->B, tc->T, mode == 2 ? 2 : 1,
                                   &lg, &e));
    CHECK(mrw_rwkv7_gpu_backward_ex(gpu, 0.5f, frozen, d_dinj, &e));
    CHECK(mrw_rwkv7_gpu_sync(gpu, &e));
    char what[160];
    snprintf(what, sizeof what, "loss (cpu %.6f gpu %.6f)", lc, lg);
    const double le = fabs((double)lg - lc) / fabs((double)lc);
    row(cs, what, le, le, tl, tl);
    fetch_dinject(d_dinj, nC, tc->fp32, dgpu.data());
    /* bf16 tolerance: see dinject_row; the row below (frozen = full backward on the GPU) is the tight check of the
     * frozen path in bf16 */
    dinject_row(cs, tc, dgpu.data(), dcpu.data(), mask, C, tgm, tgn);
    double me, ne;
    CHECK(mrw_rwkv7_gpu_download(gpu, &gs, 1, &e));
    if (frozen) {
        frozen_row(cs, &gs, ps);
        /* the same step with a full backward on the GPU: the same d_inject (the activation gradients must not
         * depend on whether parameter gradients are summed) */
        std::vector<float> dfull(nC);
        CHECK(mrw_rwkv7_gpu_forward_ex(gpu, tok.data(), d_inj, mask.data(), tgt.data(), tc->B, tc->T, 1, &lg, &e));
        CHECK(mrw_rwkv7_gpu_backward_ex(gpu, 0.5f, 0, d_dinj, &e));
        CHECK(mrw_rwkv7_gpu_sync(gpu, &e));
        fetch_dinject(d_dinj, nC, tc->fp32, dfull.data());
        errs(dgpu.data(), dfull.data(), nC, &me, &ne);
        row(cs, "d_inject frozen vs full backward (gpu)", me, ne, 1e-5, 1e-5);
    } else {
        double wm = -1, wn = -1;
        std::string worst;
        for (int i = 0; i < ps->n; i++) {
            const mrw_param *p = &ps->p[i];
            errs(gs.g + p->offset, ps->g + p->offset, p->n, &me, &ne);
            if (!(me <= wm)) wm = me, worst = p->name;
            if (!(ne <= wn)) wn = ne;
        }
        snprintf(what, sizeof what, "grads, worst %s", worst.c_str());
        row(cs, what, wm, wn, tgm, tgn);
    }
    cudaFree(d_inj);
    cudaFree(d_dinj);
    mrw_param_set_free(&gs);
    mrw_rwkv7_gpu_free(gpu);
    mrw_rwkv7_train_free(cpu);
}

/* Hidden-state mode (the forecaster's read-out, rwkv7_train_gpu.h mrw_rwkv7_gpu_forward_hidden / _backward_hidden)
 * against mrw_rwkv7_train_forward_hidden / _backward_hidden of a NO_LOGITS CPU trainer: with or without injected
 * rows (inj), full or frozen backward. Rows: the hidden rows at position T-1 (ln_out output), d_inject (scale 0.5,
 * d_hidden nonzero only at T-1) and the worst gradient class, or (frozen) that no gradient moved; the head's
 * gradient must stay exactly zero (neither read nor trained). Tolerances: fp32 as above; bf16 hidden 5e-2 / 3e-2
 * (ln_out's output is stored in bf16: 2^-9 relative per element after two blocks of bf16 activations), the rest as
 * the inject rows (one d_hidden row per sequence: nothing averages). Misuse: backward_ex after a hidden forward and
 * backward_hidden after a plain one are MRW_E_ARG. */
static void run_hidden_case(const tcase *tc, int inject, int frozen) {
    mrw_error e;
    mrw_rwkv7_train_config cfg = {tc->L, tc->C, 64, tc->V, tc->F, tc->dw, tc->da, tc->dv, tc->dg};
    char cs[64];
    snprintf(cs, sizeof cs, "%s hid%s%s", tc->name, inject ? " inj" : "", frozen ? " frozen" : "");
    mrw_rwkv7_train *cpu = NULL;
    CHECK(mrw_rwkv7_train_new_ex(&cfg, tc->B, tc->T, 1, MRW_RWKV7_TRAIN_NO_LOGITS, &cpu, &e));
    mrw_param_set *ps = mrw_rwkv7_train_params(cpu);
    init_params(ps);
    mrw_rwkv7_gpu_opts o = {tc->fp32, tc->ckpt, 0};
    mrw_rwkv7_gpu *gpu = NULL;
    CHECK(mrw_rwkv7_gpu_new(&cfg, tc->B, tc->T, &o, &gpu, &e));
    CHECK(mrw_rwkv7_gpu_upload(gpu, ps, &e));
    const int B = tc->B, T = tc->T, BT = B * T, C = tc->C, M = T / 3;
    const size_t nC = (size_t)BT * C;
    std::vector<int32_t> tok(BT);
    std::vector<uint8_t> mask(BT);
    std::vector<float> inj(nC), dcpu(nC), dgpu(nC), dh((size_t)B * C), dhfull(nC, 0.f), hg((size_t)B * C),
        hc((size_t)B * C);
    for (int r = 0; r < BT; r++) {
        mask[r] = inject && (r % T < M || rnd_u64() % 7 == 0);
        tok[r] = mask[r] ? 0 : (int32_t)(rnd_u64() % (uint64_t)tc->V);
    }
    std::vector<uint16_t> inj16(nC);
    for (size_t i = 0; i < nC; i++) {
        inj[i] = rnd_u(-1.f, 1.f);
        if (!tc->fp32) inj16[i] = to_bf16_bits(inj[i]), inj[i] = bf16_bits_to_f(inj16[i]);
    }
    for (size_t i = 0; i < dh.size(); i++) dh[i] = rnd_u(-1.f, 1.f);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) dhfull[((size_t)b * T + T - 1) * C + c] = 0.5f * dh[(size_t)b * C + c];
    const size_t esz = tc->fp32 ? 4 : 2;
    void *d_inj = NULL, *d_dinj = NULL;
    if (cudaMalloc(&d_inj, nC * esz) != cudaSuccess || cudaMalloc(&d_dinj, nC * esz) != cudaSuccess) {
        fprintf(stderr, "cudaMalloc failed\n");
        exit(2);
    }
    cudaMemcpy(d_inj, tc->fp32 ? (const void *)inj.data() : (const void *)inj16.data(), nC * esz,
               cudaMemcpyHostToDevice);
    cudaMemset(d_dinj, 0xff, nC * esz); /* NaN poison: every element must be written */
    const double tgm = tc->fp32 ? 3e-4 : 1.5e-1, tgn = tc->fp32 ? 1e-4 : 1e-1;
    mrw_param_zero_grad(ps);
    if (frozen)
        for (size_t j = 0; j < ps->total; j++) ps->g[j] = 1.0f;
    CHECK(mrw_rwkv7_train_forward_hidden(cpu, tok.data(), inject ? inj.data() : NULL, inject ? mask.data() : NULL, B,
                                         T, NULL, &e));
    const float *hall = mrw_rwkv7_train_last_hidden(cpu);
    for (int b = 0; b < B; b++) memcpy(&hc[(size_t)b * C], hall + ((size_t)b * T + T - 1) * C, (size_t)C * 4);
    CHECK(mrw_rwkv7_train_backward_hidden(cpu, dhfull.data(), frozen, inject ? dcpu.data() : NULL, &e));
    mrw_param_set gs = clone_set(ps);
    if (frozen) {
        for (size_t j = 0; j < gs.total; j++) gs.g[j] = 1.0f;
        CHECK(mrw_rwkv7_gpu_upload_grads(gpu, &gs, &e));
    } else {
        CHECK(mrw_rwkv7_gpu_zero_grad(gpu, &e));
    }
    CHECK(mrw_rwkv7_gpu_forward_hidden(gpu, tok.data(), inject ? d_inj : NULL, inject ? mask.data() : NULL, B, T,
                                       frozen ? 2 : 1, hg.data(), &e));
    double me, ne;
    errs(hg.data(), hc.data(), hg.size(), &me, &ne);
    row(cs, "hidden rows at T-1", me, ne, tc->fp32 ? 1e-4 : 5e-2, tc->fp32 ? 1e-4 : 3e-2);
    CHECK(mrw_rwkv7_gpu_backward_hidden(gpu, dh.data(), 0.5f, frozen, inject ? d_dinj : NULL, &e));
    CHECK(mrw_rwkv7_gpu_sync(gpu, &e));
    char what[160];
    if (inject) {
        fetch_dinject(d_dinj, nC, tc->fp32, dgpu.data());
        dinject_row(cs, tc, dgpu.data(), dcpu.data(), mask, C, tgm, tgn);
    }
    CHECK(mrw_rwkv7_gpu_download(gpu, &gs, 1, &e));
    if (frozen) {
        frozen_row(cs, &gs, ps);
    } else {
        double wm = -1, wn = -1;
        std::string worst;
        size_t head_nz = 0;
        for (int i = 0; i < ps->n; i++) {
            const mrw_param *p = &ps->p[i];
            if (!strcmp(p->name, "llm.head.weight")) {
                for (size_t j = 0; j < p->n; j++) head_nz += gs.g[p->offset + j] != 0.0f;
                continue;
            }
            errs(gs.g + p->offset, ps->g + p->offset, p->n, &me, &ne);
            if (!(me <= wm)) wm = me, worst = p->name;
            if (!(ne <= wn)) wn = ne;
        }
        snprintf(what, sizeof what, "grads, worst %s", worst.c_str());
        row(cs, what, wm, wn, tgm, tgn);
        snprintf(what, sizeof what, "head.weight grad nonzero: %zu", head_nz);
        row(cs, what, (double)head_nz, (double)head_nz, 0, 0);
    }
    /* misuse: the other backward after each forward */
    int ok = 1;
    std::vector<int32_t> tgt(BT, 0);
    CHECK(mrw_rwkv7_gpu_forward_hidden(gpu, tok.data(), inject ? d_inj : NULL, inject ? mask.data() : NULL, B, T, 2,
                                       NULL, &e));
    ok &= mrw_rwkv7_gpu_backward_ex(gpu, 1.0f, 1, NULL, &e) == MRW_E_ARG;
    float loss;
    CHECK(mrw_rwkv7_gpu_forward_ex(gpu, tok.data(), NULL, NULL, tgt.data(), B, T, 2, &loss, &e));
    ok &= mrw_rwkv7_gpu_backward_hidden(gpu, dh.data(), 1.0f, 1, NULL, &e) == MRW_E_ARG;
    ok &= mrw_rwkv7_gpu_backward_hidden(gpu, dh.data(), 1.0f, 1, NULL, &e) == MRW_E_ARG; /* no valid forward */
    row(cs, "misuse refused", ok ? 0 : 1, ok ? 0 : 1, 0, 0);
    cudaFree(d_inj);
    cudaFree(d_dinj);
    mrw_param_set_free(&gs);
    mrw_rwkv7_gpu_free(gpu);
    mrw_rwkv7_train_free(cpu);
}

/* Invalid input is an error, not a crash. */
static void run_args(int quick) {
    mrw_error e;
    mrw_rwkv7_train_config cfg = {1, 64, 64, 50, 128, 8, 8, 8, 8};
    mrw_rwkv7_gpu *gpu = NULL;
    mrw_rwkv7_gpu_opts o = {0, 0, 0};
    int ok = 1;
    mrw_rwkv7_train_config bad = cfg;
    bad.head_size = 32;
    ok &= mrw_rwkv7_gpu_new(&bad, 1, 8, &o, &gpu, &e) == MRW_E_ARG && !gpu;
    CHECK(mrw_rwkv7_gpu_new(&cfg, 2, 8, &o, &gpu, &e));
    int32_t tok[16] = {0}, tgt[16] = {0};
    float loss;
    tok[3] = 50;
    ok &= mrw_rwkv7_gpu_forward(gpu, tok, tgt, 2, 8, 1, &loss, &e) == MRW_E_ARG;
    tok[3] = 1, tgt[5] = -7;
    ok &= mrw_rwkv7_gpu_forward(gpu, tok, tgt, 2, 8, 1, &loss, &e) == MRW_E_ARG;
    ok &= mrw_rwkv7_gpu_forward(gpu, tok, tgt, 3, 8, 1, &loss, &e) == MRW_E_ARG;
    ok &= mrw_rwkv7_gpu_backward(gpu, 1.0f, &e) == MRW_E_ARG; /* no valid forward */
    { /* injection: inject without a mask; a full backward after a grad-2 forward; grad mode 3 */
        uint8_t mk[16] = {1};
        ok &= mrw_rwkv7_gpu_forward_ex(gpu, tok, NULL, mk, tgt, 2, 8, 1, &loss, &e) == MRW_E_ARG;
        tok[3] = 1, tgt[5] = 0;
        ok &= mrw_rwkv7_gpu_forward_ex(gpu, tok, NULL, NULL, tgt, 2, 8, 3, &loss, &e) == MRW_E_ARG;
        ok &= mrw_rwkv7_gpu_forward_ex(gpu, tok, NULL, NULL, tgt, 2, 8, 2, &loss, &e) == MRW_OK;
        ok &= mrw_rwkv7_gpu_backward_ex(gpu, 1.0f, 0, NULL, &e) == MRW_E_ARG;
    }
    for (int i = 0; i < 16; i++) tgt[i] = MRW_IGNORE;
    ok &= mrw_rwkv7_gpu_forward(gpu, tok, tgt, 2, 8, 1, &loss, &e) == MRW_OK && loss == 0.0f;
    ok &= mrw_rwkv7_gpu_backward(gpu, 1.0f, &e) == MRW_OK;
    /* a non-finite weight gives a non-finite loss (what the trainer tests to skip the step), not an error */
    {
        mrw_param_set hs = clone_set(mrw_rwkv7_gpu_layout(gpu));
        init_params(&hs);
        hs.w[hs.p[0].offset + 3] = NAN; /* emb row 0 */
        for (int i = 0; i < 16; i++) tok[i] = 0, tgt[i] = 1;
        ok &= mrw_rwkv7_gpu_upload(gpu, &hs, &e) == MRW_OK;
        ok &= mrw_rwkv7_gpu_forward(gpu, tok, tgt, 2, 8, 1, &loss, &e) == MRW_OK && !isfinite(loss);
        mrw_param_set_free(&hs);
    }
    mrw_rwkv7_gpu_free(gpu);
    /* out of memory: reported with the size and a suggestion */
    mrw_rwkv7_train_config big = {4, 4096, 64, 65536, 16384, 64, 64, 64, 64};
    if (!quick) {
        mrw_status s = mrw_rwkv7_gpu_new(&big, 64, 4096, &o, &gpu, &e);
        ok &= s == MRW_E_NOMEM && strstr(e.msg, "GiB") && strstr(e.msg, "smaller batch");
        if (s == MRW_E_NOMEM) out("  (OOM message: %s)\n", e.msg);
        if (gpu) mrw_rwkv7_gpu_free(gpu);
    }
    row("arguments", "bad input, NaN loss, OOM", ok ? 0 : 1, ok ? 0 : 1, 0, 0);
}

int main(int argc, char **argv) {
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--all")) g_all = 1;
        else if (!strcmp(argv[i], "--quick")) quick = 1;
    }
    const char *od = getenv("OUT");
    if (od) {
        std::string p = std::string(od) + "/train_parity.txt";
        g_log = fopen(p.c_str(), "w");
    }
    const char *seed = getenv("MRW_TEST_SEED");
    g_rng = seed ? strtoull(seed, NULL, 0) : 0x2545F4914F6CDD1Dull;
    out("seed %llu\n", (unsigned long long)g_rng);
    out("%-26s %-34s %10s %10s %17s %s\n", "case", "what", "max err", "norm err", "tol max/norm", "");
    /*            name                          L  C    V      F    dw da dv dg B  T  fp32 ckpt wd */
    const tcase cases[] = {{"L2C128 V256 B2T37 fp32", 2, 128, 256, 512, 32, 32, 16, 32, 2, 37, 1, 0, 0.1},
                           {"L2C128 V256 B2T37 bf16", 2, 128, 256, 512, 32, 32, 16, 32, 2, 37, 0, 0, 0.0},
                           {"L2C128 V256 B2T37 bf16 ckpt", 2, 128, 256, 512, 32, 32, 16, 32, 2, 37, 0, 1, 0.1},
                           {"L2C128 V65536 B2T37 bf16", 2, 128, 65536, 512, 32, 32, 16, 32, 2, 37, 0, 0, 0.1},
                           {"L3C192 V1000 B3T16 fp32 ckpt", 3, 192, 1000, 768, 16, 16, 16, 16, 3, 16, 1, 1, 0.0},
                           {"L2C128 V65536 B1T70 fp32", 2, 128, 65536, 512, 32, 32, 16, 32, 1, 70, 1, 0, 0.0}};
    const int nc = quick ? 3 : (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < nc; i++) run_case(&cases[i], i);
    /* ModRWKV: injected rows, frozen backward (T = 37 and 21: not multiples of 16) */
    const tcase icases[] = {{"L2C128 V256 B2T37 fp32", 2, 128, 256, 512, 32, 32, 16, 32, 2, 37, 1, 0, 0.0},
                            {"L2C128 V256 B2T21 bf16", 2, 128, 256, 512, 32, 32, 16, 32, 2, 21, 0, 0, 0.0},
                            {"L3C192 V1000 B2T21 fp32 ckpt", 3, 192, 1000, 768, 16, 16, 16, 16, 2, 21, 1, 1, 0.0}};
    const int modes[][3] = {{0, 1, 2}, {0, 1, 2}, {0, 1, -1}};
    for (int i = 0; i < (quick ? 2 : 3); i++)
        for (int m = 0; m < 3; m++)
            if (modes[i][m] >= 0) run_inject_case(&icases[i], modes[i][m]);
    /* hidden-state mode (the forecaster): fp32 and bf16, with and without inject, frozen and not (T 37 / 21) */
    for (int i = 0; i < 2; i++)
        for (int m = 0; m < 3; m++) run_hidden_case(&icases[i], m != 2, m == 1);
    run_args(quick);
    out("%d of %d rows passed\n", g_rows - g_fail, g_rows);
    if (g_log) fclose(g_log);
    return g_fail ? 1 : 0;
}
