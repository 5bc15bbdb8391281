/* The Whisper encoder's training forward and backward on the GPU (src/kernels/cuda/whisper_gpu_train.h, the ViT
 * trainer's layers with a Conv1d stem) against the CPU trainer's (src/train/whisper_train.h, fp32): the output of the
 * forward, every parameter gradient and the input (mel) gradient of one backward, on random weights, mel and output
 * gradients (gelu, gelu_new and relu MLPs; d_model 16-128, head_dim 8-64, 37-300 frames, odd and even, 1-3 clips)
 * and on the tests/fixtures/audio_enc/whisper_tiny weights (48 frames), in fp32 mode and bf16 mode. Also: the
 * parameter table equals whisper_train's; embed_positions gets no gradient (frozen, as on the CPU); the trainer's
 * output rows (mrw_whisper_gpu_train_output_host: the first `keep` rows of every clip); a second backward after
 * zero_grad is bit-identical; one clipped AdamW step (sumsq_add + step_part) against mrw_clip_grad_norm +
 * mrw_adam_step (embed_positions unchanged); errors.
 *     make CUDA=1 BUILD=<dir> <dir>/tests/cuda/test_whisper_train_gpu && <dir>/tests/cuda/test_whisper_train_gpu [--quick]
 * Errors: max err = max|gpu - cpu| / max|cpu|, norm err = ||gpu - cpu|| / ||cpu|| per tensor. Tolerances:
 *   fp32: output, gradients and d_mel 1e-5 / 1e-5 (fp32 sums in another order)
 *   bf16 (weights, mel and d_out rounded to bf16 for both sides, so only the GPU's bf16 activations count):
 *         output 2e-2 / 1e-2, gradients and d_mel 5e-2 / 3e-2 (every activation, the unfolded windows and every
 *         gradient flowing back are rounded to bf16), the ReLU case 2e-1 / 8e-2 (a step derivative: a pre-activation
 *         near 0 that bf16 moves across it switches that unit's gradient; H100: fc1.weight 1.2e-1 / 4.9e-2 and d_mel
 *         7.1e-2 / 2.9e-2 in the first run, 9.9e-2 / 4.4e-2 and 8.2e-2 / 2.7e-2 with other random draws, while the
 *         GELU case of the same shape is within 8.6e-3 / 6.7e-3 and every fp32 row within 1.2e-6)
 * Seen on an H100 (2026-11-22), 449 rows: fp32 output <= 5.3e-7, gradients <= 1.2e-6, d_mel <= 7.1e-7; bf16 (GELU
 * cases) output <= 7.8e-3 / 6.2e-3, gradients <= 1.3e-2 / 1.2e-2, d_mel <= 1.1e-2 / 9.8e-3.
 *   Adam: norm 1e-5 relative, weights 1e-3 of lr.
 * --quick: the two small cases only (for compute-sanitizer). Exit status 0 only if every row passes. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

extern "C" {
#include "kernels/cuda/adam.h"
#include "kernels/cuda/whisper_gpu_train.h"
#include "models/whisper_enc.h"
#include "train/optim.h"
#include "train/params.h"
#include "train/whisper_train.h"
}

#include "enc_train_check.inc"

typedef struct {
    const char *name;
    const char *path; /* fixture weights, or NULL: random weights of this shape */
    mrw_audio_act act;
    int nm, d, H, I, L, n_pos, F, B;
    double bf_tm, bf_tn; /* bf16 gradient tolerances (max, norm) */
} wcase;

#define PFXLEN (sizeof "encoder.model." - 1)

/* Random weights for the CPU set: matrices U(+-1/sqrt(fan_in)), LayerNorm weights 1 +- 0.2, everything else
 * (biases, positions) U(+-0.3); rounded to bf16 when `round`. */
static void fill_weights(mrw_param_set *ps, int round) {
    for (int i = 0; i < ps->n; i++) {
        const mrw_param *p = &ps->p[i];
        float *w = ps->w + p->offset;
        const int is_ln = strstr(p->name, "norm") && strstr(p->name, ".weight");
        float lo = -0.3f, hi = 0.3f, off = 0.f;
        if (is_ln) lo = -0.2f, hi = 0.2f, off = 1.f;
        else if (p->ndim >= 2 && !strstr(p->name, "embed_positions")) {
            const float a = 1.f / sqrtf((float)(p->n / (size_t)p->shape[0]));
            lo = -a, hi = a;
        }
        for (size_t k = 0; k < p->n; k++) {
            const float x = off + rnd_u(lo, hi);
            w[k] = round ? rbf(x) : x;
        }
    }
}

static void run_case(const wcase *wc, int fp32) {
    mrw_error e;
    memset(&e, 0, sizeof e);
    char cs[64];
    snprintf(cs, sizeof cs, "%s %s", wc->name, fp32 ? "fp32" : "bf16");
    const int B = wc->B, round = !fp32;
    mrw_whisper_train *cpu = NULL;
    if (wc->path) {
        CHECK(mrw_whisper_train_open(wc->path, NULL, B, 0, 4, &cpu, &e));
    } else {
        mrw_whisper_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.n_mels = wc->nm, cfg.d_model = wc->d, cfg.n_heads = wc->H, cfg.ffn_dim = wc->I, cfg.n_layers = wc->L;
        cfg.n_pos = wc->n_pos, cfg.act = wc->act, cfg.ln_eps = 1e-5f;
        CHECK(mrw_whisper_train_new(&cfg, B, wc->F, 4, &cpu, &e));
    }
    mrw_param_set *ps = mrw_whisper_train_params(cpu);
    const mrw_whisper_config *g = mrw_whisper_train_config(cpu);
    const int F = wc->path ? 2 * g->n_pos : wc->F, T = mrw_whisper_enc_out_frames(F), C = g->d_model, nm = g->n_mels;
    if (wc->path) {
        if (round)
            for (size_t i = 0; i < ps->total; i++) ps->w[i] = rbf(ps->w[i]);
    } else {
        fill_weights(ps, round);
    }
    const size_t NM = (size_t)B * nm * F, NC = (size_t)B * T * C;
    std::vector<float> mel(NM), dout(NC), ycpu(NC), ygpu(NC), dmc(NM), dmg(NM);
    for (auto &x : mel) x = round ? rbf(rnd_u(-1.f, 1.f)) : rnd_u(-1.f, 1.f);
    for (auto &x : dout) x = round ? rbf(rnd_u(-1.f, 1.f)) : rnd_u(-1.f, 1.f);
    CHECK(mrw_whisper_train_forward(cpu, mel.data(), B, F, ycpu.data(), &e));
    mrw_param_zero_grad(ps);
    mrw_whisper_train_backward(cpu, dout.data(), dmc.data());

    cudaStream_t st;
    CU(cudaStreamCreate(&st));
    mrw_vit_gpu_train *v = NULL;
    CHECK(mrw_whisper_gpu_train_new(g, F, B + 1, fp32, st, &v, &e));
    const mrw_param_set *lay = mrw_vit_gpu_train_layout(v);
    int same = lay->n == ps->n && lay->total == ps->total && mrw_whisper_gpu_train_frames(v) == F &&
               mrw_whisper_gpu_train_out_rows(v) == T && mrw_vit_gpu_train_in_floats(v) == (size_t)nm * F;
    for (int i = 0; same && i < ps->n; i++) {
        same = !strcmp(lay->p[i].name, ps->p[i].name) && lay->p[i].offset == ps->p[i].offset &&
               lay->p[i].n == ps->p[i].n && lay->p[i].ndim == ps->p[i].ndim &&
               lay->p[i].no_decay == ps->p[i].no_decay;
        for (int k = 0; same && k < ps->p[i].ndim; k++) same = lay->p[i].shape[k] == ps->p[i].shape[k];
    }
    row(cs, "parameter table = whisper_train's (names, shapes, offsets)", same ? 0 : 1, 0, 0, 0);
    CHECK(mrw_vit_gpu_train_upload(v, ps, 0, &e));
    const size_t es = fp32 ? 4 : 2;
    const void *dy = NULL;
    CHECK(mrw_vit_gpu_train_forward(v, mel.data(), 1, B, &dy, &e));
    std::vector<uint16_t> hb(NC);
    if (fp32) CU(cudaMemcpyAsync(ygpu.data(), dy, NC * 4, cudaMemcpyDeviceToHost, st));
    else CU(cudaMemcpyAsync(hb.data(), dy, NC * 2, cudaMemcpyDeviceToHost, st));
    CU(cudaStreamSynchronize(st));
    if (!fp32)
        for (size_t i = 0; i < NC; i++) ygpu[i] = unbf(hb[i]);
    double me, ne;
    errs(ygpu.data(), ycpu.data(), NC, &me, &ne);
    row(cs, "forward: last_hidden_state", me, ne, fp32 ? 1e-5 : 2e-2, fp32 ? 1e-5 : 1e-2);
    /* the trainer's rows: the first keep of every clip, exactly the forward's output */
    {
        const int keep = T > 3 ? T - 3 : 1;
        std::vector<float> kr((size_t)B * keep * C);
        CHECK(mrw_whisper_gpu_train_output_host(v, keep, kr.data(), &e));
        double md = 0;
        for (int b = 0; b < B; b++)
            for (size_t i = 0; i < (size_t)keep * C; i++)
                md = fmax(md, fabs((double)kr[(size_t)b * keep * C + i] - ygpu[(size_t)b * T * C + i]));
        char what[96];
        snprintf(what, sizeof what, "output_host: first %d of %d rows = the forward's", keep, T);
        row(cs, what, md, 0, 0, 0);
    }
    void *ddo = NULL;
    CU(cudaMalloc(&ddo, NC * es));
    if (fp32) CU(cudaMemcpy(ddo, dout.data(), NC * 4, cudaMemcpyHostToDevice));
    else {
        for (size_t i = 0; i < NC; i++) hb[i] = bf(dout[i]);
        CU(cudaMemcpy(ddo, hb.data(), NC * 2, cudaMemcpyHostToDevice));
    }
    CHECK(mrw_vit_gpu_train_zero_grad(v, &e));
    CHECK(mrw_whisper_gpu_train_backward(v, ddo, dmg.data(), &e));
    mrw_param_set gp = *ps;
    std::vector<float> gw(ps->total), gg(ps->total), gg2(ps->total);
    gp.w = gw.data(), gp.g = gg.data();
    CHECK(mrw_vit_gpu_train_download(v, &gp, 1, &e));
    const double tm = fp32 ? 1e-5 : wc->bf_tm, tn = fp32 ? 1e-5 : wc->bf_tn;
    double worst_m = 0, worst_n = 0;
    for (int i = 0; i < ps->n; i++) {
        const mrw_param *p = &ps->p[i];
        char what[128];
        if (strstr(p->name, "embed_positions")) { /* frozen: no gradient on either side */
            double mg = 0, mc = 0;
            for (size_t k = 0; k < p->n; k++) mg = fmax(mg, fabs(gg[p->offset + k])), mc = fmax(mc, fabs(ps->g[p->offset + k]));
            row(cs, "grad embed_positions.weight = 0 (frozen): max |gpu| + |cpu|", mg + mc, 0, 0, 0);
            continue;
        }
        errs(gg.data() + p->offset, ps->g + p->offset, p->n, &me, &ne);
        snprintf(what, sizeof what, "grad %s", p->name + PFXLEN);
        row(cs, what, me, ne, tm, tn);
        if (me > worst_m) worst_m = me;
        if (ne > worst_n) worst_n = ne;
    }
    errs(dmg.data(), dmc.data(), NM, &me, &ne);
    row(cs, "input gradient d_mel", me, ne, tm, tn);
    printf("%-24s %-58s %10.2e %10.2e\n", cs, "(worst parameter gradient)", worst_m, worst_n);
    /* determinism: the same forward and backward again, from zero gradients (the trainer's call: no d_mel) */
    CHECK(mrw_vit_gpu_train_zero_grad(v, &e));
    CHECK(mrw_vit_gpu_train_forward(v, mel.data(), 1, B, &dy, &e));
    CHECK(mrw_vit_gpu_train_backward(v, ddo, &e));
    gp.g = gg2.data();
    CHECK(mrw_vit_gpu_train_download(v, &gp, 1, &e));
    row(cs, "second backward bit-identical", memcmp(gg.data(), gg2.data(), ps->total * 4) ? 1 : 0, 0, 0, 0);
    const mrw_status s2 = mrw_whisper_gpu_train_backward(v, ddo, NULL, &e);
    row(cs, "backward twice refused", s2 == MRW_E_ARG ? 0 : 1, 0, 0, 0);

    /* one clipped AdamW step on the CPU's gradients, both sides */
    if (fp32) {
        mrw_adam_config ac = mrw_adam_config_default();
        ac.weight_decay = 0.05, ac.decoupled = 1;
        mrw_adam opt;
        mrw_param_set *sets[1] = {ps};
        CHECK(mrw_adam_init(&opt, &ac, sets, 1, MRW_PG_ENCODER, &e));
        const double lr = 1e-3, clip = 0.5 * mrw_grad_norm(&opt); /* so that the clip acts */
        CHECK(mrw_vit_gpu_train_upload(v, ps, 1, &e)); /* the CPU's gradients */
        double *part = NULL;
        CU(cudaMalloc(&part, MRW_CUDA_NORM_BLOCKS * sizeof(double)));
        CU(cudaMemset(part, 0, MRW_CUDA_NORM_BLOCKS * sizeof(double)));
        CHECK(mrw_vit_gpu_train_sumsq_add(v, part, &e));
        double gnorm = 0;
        CHECK(mrw_vit_gpu_train_step_part(v, &ac, lr, clip, part, &gnorm, &e));
        std::vector<float> w0(ps->w, ps->w + ps->total);
        const double cn = mrw_clip_grad_norm(&opt, clip);
        mrw_adam_step(&opt, lr);
        row(cs, "adam: gradient norm (relative)", fabs(gnorm - cn) / cn, 0, 1e-5, 0);
        CHECK(mrw_vit_gpu_train_download(v, &gp, 0, &e));
        double md = 0, mp = 0;
        for (size_t i = 0; i < ps->total; i++) md = fmax(md, fabs((double)gw[i] - ps->w[i]));
        row(cs, "adam: weights (max |diff| / lr)", md / lr, 0, 1e-3, 0);
        const mrw_param *pp = &ps->p[mrw_param_find(ps, "encoder.model.embed_positions.weight")];
        for (size_t k = 0; k < pp->n; k++) mp = fmax(mp, fabs((double)gw[pp->offset + k] - w0[pp->offset + k]));
        row(cs, "adam: embed_positions unchanged", mp, 0, 0, 0);
        mrw_adam_free(&opt);
        cudaFree(part);
    }
    cudaFree(ddo);
    mrw_vit_gpu_train_free(v);
    cudaStreamDestroy(st);
    mrw_whisper_train_free(cpu);
}

int main(int argc, char **argv) {
    const int quick = argc > 1 && !strcmp(argv[1], "--quick");
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        fprintf(stderr, "test_whisper_train_gpu: no CUDA device\n");
        return 2;
    }
    static const wcase cases[] = {
        {"d16 H2 F80 gelu B2", NULL, MRW_ACT_GELU, 80, 16, 2, 40, 2, 40, 80, 2, 5e-2, 3e-2},
        {"d64 H4 F37 tanh B3", NULL, MRW_ACT_GELU_TANH, 24, 64, 4, 128, 2, 24, 37, 3, 5e-2, 3e-2},
        {"fixture whisper_tiny", "tests/fixtures/audio_enc/whisper_tiny", MRW_ACT_GELU, 0, 0, 0, 0, 0, 0, 0, 2, 5e-2,
         3e-2},
        {"d128 H2 F300 gelu B1", NULL, MRW_ACT_GELU, 80, 128, 2, 256, 1, 150, 300, 1, 5e-2, 3e-2},
        /* ReLU: its derivative is a step, so a pre-activation near 0 whose bf16 rounding lands on the other side
         * switches a whole unit's gradient on or off (the GELU case of the same shape above is within 5e-2 / 3e-2) */
        {"d128 H2 F300 relu B1", NULL, MRW_ACT_RELU, 80, 128, 2, 256, 1, 150, 300, 1, 2e-1, 8e-2},
        {"d32 H1 F1 gelu B2", NULL, MRW_ACT_GELU, 8, 32, 1, 64, 1, 4, 1, 2, 5e-2, 3e-2},
    };
    printf("%-24s %-58s %10s %10s %17s\n", "case", "what", "max err", "norm err", "tolerance");
    const int nc = quick ? 2 : (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < nc; i++)
        for (int fp32 = 1; fp32 >= 0; fp32--) run_case(&cases[i], fp32);
    /* errors */
    {
        mrw_error e;
        memset(&e, 0, sizeof e);
        mrw_whisper_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.n_mels = 8, cfg.d_model = 30, cfg.n_heads = 4, cfg.ffn_dim = 8, cfg.n_layers = 1, cfg.n_pos = 4;
        cfg.act = MRW_ACT_GELU, cfg.ln_eps = 1e-5f;
        mrw_vit_gpu_train *v = NULL;
        mrw_status s = mrw_whisper_gpu_train_new(&cfg, 8, 2, 1, NULL, &v, &e);
        row("errors", "d_model 30 with 4 heads refused (MRW_E_ARG)", s == MRW_E_ARG && !v ? 0 : 1, 0, 0, 0);
        cfg.d_model = 32;
        s = mrw_whisper_gpu_train_new(&cfg, 9, 2, 1, NULL, &v, &e);
        row("errors", "9 frames with 4 positions refused (MRW_E_ARG)", s == MRW_E_ARG && !v ? 0 : 1, 0, 0, 0);
        CHECK(mrw_whisper_gpu_train_new(&cfg, 8, 2, 1, NULL, &v, &e));
        const mrw_status s2 = mrw_vit_gpu_train_backward(v, v, &e);
        row("errors", "backward without a forward refused", s2 == MRW_E_ARG ? 0 : 1, 0, 0, 0);
        const void *o = NULL;
        std::vector<float> mel(3 * 8 * 8);
        const mrw_status s3 = mrw_vit_gpu_train_forward(v, mel.data(), 1, 3, &o, &e);
        row("errors", "3 clips with room for 2 refused", s3 == MRW_E_ARG ? 0 : 1, 0, 0, 0);
        CHECK(mrw_vit_gpu_train_forward(v, mel.data(), 1, 2, &o, &e));
        std::vector<float> kr(2 * 5 * 32);
        const mrw_status s4 = mrw_whisper_gpu_train_output_host(v, 5, kr.data(), &e);
        row("errors", "output_host of 5 rows of 4 refused", s4 == MRW_E_ARG ? 0 : 1, 0, 0, 0);
        mrw_vit_gpu_train_free(v);
    }
    printf("%d rows, %d failed\n", g_rows, g_fail);
    return g_fail ? 1 : 0;
}
