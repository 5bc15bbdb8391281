/* The ViT encoder's training forward and backward on the GPU (src/kernels/cuda/vit_gpu_train.h) against the CPU
 * trainer's (src/train/vit_train.h, fp32) on random weights, pixels and output gradients: the output of the
 * forward, then every parameter gradient of one backward (d_pixels is not computed on the GPU: the encoder is
 * the first stage), for SigLIP (GELU-tanh and GELU-erf, with the post-LN) and CLIP (class token, pre-LN,
 * quick-GELU, no post-LN) at odd sizes (25, 17, 197 tokens; head_dim 16, 32, 64; 1-5 images), in fp32 mode and
 * bf16 mode. Then: a second backward after zero_grad is bit-identical (deterministic), one clipped AdamW step
 * (sumsq_add + step_part) against mrw_clip_grad_norm + mrw_adam_step on the same gradients, and errors (a
 * backward without a forward, a bad shape).
 *     make CUDA=1 BUILD=<dir> <dir>/tests/cuda/test_vit_train_gpu && <dir>/tests/cuda/test_vit_train_gpu [--quick]
 * Errors: max err = max|gpu - cpu| / max|cpu|, norm err = ||gpu - cpu|| / ||cpu|| per tensor. Tolerances:
 *   fp32: output 1e-5 / 1e-5, gradients 1e-5 / 1e-5 (fp32 sums in another order; seen: 4e-7 and 1.4e-6 at most)
 *   bf16 (weights, pixels and d_out rounded to bf16 for both sides, so only the GPU's bf16 activations count):
 *         output 2e-2 / 1e-2, gradients 4e-2 / 3e-2 (every activation and every gradient flowing back is rounded
 *         to bf16 in every layer; seen: 7e-3 and 1.5e-2 at most)
 *   the key biases' gradients are exactly zero (softmax is shift invariant): max |gpu| / max |the query bias's
 *         gradient| <= 1e-5 (fp32), 5e-2 (bf16)
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
#include "kernels/cuda/vit_gpu_train.h"
#include "models/vit.h"
#include "train/optim.h"
#include "train/params.h"
#include "train/vit_train.h"
}

#include "enc_train_check.inc"

typedef struct {
    const char *name;
    mrw_vit_family fam;
    mrw_vit_act act;
    int C, H, I, L, image, patch, B;
} vcase;

/* Random weights for the CPU set: matrices U(+-1/sqrt(fan_in)), LayerNorm weights 1 +- 0.2, everything else
 * (biases, positions, class token) U(+-0.3); rounded to bf16 when `round`. */
static void fill_weights(mrw_param_set *ps, int round) {
    for (int i = 0; i < ps->n; i++) {
        const mrw_param *p = &ps->p[i];
        float *w = ps->w + p->offset;
        const int is_ln = strstr(p->name, "norm") && strstr(p->name, ".weight");
        float lo = -0.3f, hi = 0.3f, off = 0.f;
        if (is_ln) lo = -0.2f, hi = 0.2f, off = 1.f;
        else if (p->ndim >= 2 && !strstr(p->name, "position_embedding")) {
            const float a = 1.f / sqrtf((float)(p->n / (size_t)p->shape[0]));
            lo = -a, hi = a;
        }
        for (size_t k = 0; k < p->n; k++) {
            const float x = off + rnd_u(lo, hi);
            w[k] = round ? rbf(x) : x;
        }
    }
}

static void run_case(const vcase *vc, int fp32) {
    mrw_error e;
    memset(&e, 0, sizeof e);
    char cs[64];
    snprintf(cs, sizeof cs, "%s %s", vc->name, fp32 ? "fp32" : "bf16");
    mrw_vit_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.family = vc->fam, cfg.act = vc->act, cfg.hidden = vc->C, cfg.n_head = vc->H, cfg.intermediate = vc->I;
    cfg.n_layer = vc->L, cfg.channels = 3, cfg.patch = vc->patch, cfg.image_size = vc->image;
    cfg.eps = vc->fam == MRW_VIT_CLIP ? 1e-5f : 1e-6f;
    const int B = vc->B;
    mrw_vit_train *cpu = NULL;
    CHECK(mrw_vit_train_new(&cfg, B, 8, &cpu, &e));
    mrw_param_set *ps = mrw_vit_train_params(cpu);
    const mrw_vit_config *g = mrw_vit_train_config(cpu);
    const int T = g->n_tokens, C = g->hidden, round = !fp32;
    fill_weights(ps, round);
    const size_t img = (size_t)3 * g->image_size * g->image_size, NC = (size_t)B * T * C;
    std::vector<float> px(B * img), dout(NC), ycpu(NC), ygpu(NC);
    for (auto &x : px) x = round ? rbf(rnd_u(-1.f, 1.f)) : rnd_u(-1.f, 1.f);
    for (auto &x : dout) x = round ? rbf(rnd_u(-1.f, 1.f)) : rnd_u(-1.f, 1.f);
    CHECK(mrw_vit_train_forward(cpu, px.data(), B, ycpu.data(), &e));
    mrw_param_zero_grad(ps);
    mrw_vit_train_backward(cpu, dout.data(), NULL);

    cudaStream_t st;
    CU(cudaStreamCreate(&st));
    mrw_vit_gpu_train *v = NULL;
    CHECK(mrw_vit_gpu_train_new(&cfg, B + 1, fp32, st, &v, &e));
    const mrw_param_set *lay = mrw_vit_gpu_train_layout(v);
    int same = lay->n == ps->n && lay->total == ps->total;
    for (int i = 0; same && i < ps->n; i++)
        same = !strcmp(lay->p[i].name, ps->p[i].name) && lay->p[i].offset == ps->p[i].offset &&
               lay->p[i].n == ps->p[i].n;
    row(cs, "parameter table = vit_train's (names, order, offsets)", same ? 0 : 1, 0, 0, 0);
    CHECK(mrw_vit_gpu_train_upload(v, ps, 0, &e));
    const size_t es = fp32 ? 4 : 2;
    const void *dy = NULL;
    CHECK(mrw_vit_gpu_train_forward(v, px.data(), 1, B, &dy, &e));
    std::vector<uint16_t> hb(NC);
    if (fp32) CU(cudaMemcpyAsync(ygpu.data(), dy, NC * 4, cudaMemcpyDeviceToHost, st));
    else CU(cudaMemcpyAsync(hb.data(), dy, NC * 2, cudaMemcpyDeviceToHost, st));
    CU(cudaStreamSynchronize(st));
    if (!fp32)
        for (size_t i = 0; i < NC; i++) ygpu[i] = unbf(hb[i]);
    double me, ne;
    errs(ygpu.data(), ycpu.data(), NC, &me, &ne);
    row(cs, "forward: last_hidden_state", me, ne, fp32 ? 1e-5 : 2e-2, fp32 ? 1e-5 : 1e-2);
    void *ddo = NULL;
    CU(cudaMalloc(&ddo, NC * es));
    if (fp32) CU(cudaMemcpy(ddo, dout.data(), NC * 4, cudaMemcpyHostToDevice));
    else {
        for (size_t i = 0; i < NC; i++) hb[i] = bf(dout[i]);
        CU(cudaMemcpy(ddo, hb.data(), NC * 2, cudaMemcpyHostToDevice));
    }
    CHECK(mrw_vit_gpu_train_zero_grad(v, &e));
    CHECK(mrw_vit_gpu_train_backward(v, ddo, &e));
    mrw_param_set gp = *ps;
    std::vector<float> gw(ps->total), gg(ps->total), gg2(ps->total);
    gp.w = gw.data(), gp.g = gg.data();
    CHECK(mrw_vit_gpu_train_download(v, &gp, 1, &e));
    const double tm = fp32 ? 1e-5 : 4e-2, tn = fp32 ? 1e-5 : 3e-2;
    double worst_m = 0, worst_n = 0;
    for (int i = 0; i < ps->n; i++) {
        const mrw_param *p = &ps->p[i];
        char what[128];
        if (strstr(p->name, "k_proj.bias")) {
            /* exactly zero (a key bias shifts every score of a row alike; the softmax ignores it): both sides hold
             * rounding noise, measured against the query bias gradient of the same layer */
            char qn[MRW_PARAM_NAME_MAX];
            snprintf(qn, sizeof qn, "%s", p->name);
            memcpy(strstr(qn, "k_proj.bias"), "q", 1);
            const mrw_param *q = &ps->p[mrw_param_find(ps, qn)];
            double mk = 0, mq = 0;
            for (size_t k = 0; k < p->n; k++) mk = fmax(mk, fabs(gg[p->offset + k]));
            for (size_t k = 0; k < q->n; k++) mq = fmax(mq, fabs(ps->g[q->offset + k]));
            snprintf(what, sizeof what, "grad %s = 0: max / max q_proj.bias",
                     p->name + strlen("encoder.model.vision_model."));
            row(cs, what, mk / mq, 0, fp32 ? 1e-5 : 5e-2, 0);
            continue;
        }
        errs(gg.data() + p->offset, ps->g + p->offset, p->n, &me, &ne);
        snprintf(what, sizeof what, "grad %s", p->name + strlen("encoder.model.vision_model."));
        row(cs, what, me, ne, tm, tn);
        if (me > worst_m) worst_m = me;
        if (ne > worst_n) worst_n = ne;
    }
    printf("%-24s %-58s %10.2e %10.2e\n", cs, "(worst gradient)", worst_m, worst_n);
    /* determinism: the same forward and backward again, from zero gradients */
    CHECK(mrw_vit_gpu_train_zero_grad(v, &e));
    CHECK(mrw_vit_gpu_train_forward(v, px.data(), 1, B, &dy, &e));
    CHECK(mrw_vit_gpu_train_backward(v, ddo, &e));
    gp.g = gg2.data();
    CHECK(mrw_vit_gpu_train_download(v, &gp, 1, &e));
    row(cs, "second backward bit-identical", memcmp(gg.data(), gg2.data(), ps->total * 4) ? 1 : 0, 0, 0, 0);
    const mrw_status s2 = mrw_vit_gpu_train_backward(v, ddo, &e);
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
        const double cn = mrw_clip_grad_norm(&opt, clip);
        mrw_adam_step(&opt, lr);
        row(cs, "adam: gradient norm (relative)", fabs(gnorm - cn) / cn, 0, 1e-5, 0);
        CHECK(mrw_vit_gpu_train_download(v, &gp, 0, &e));
        double md = 0;
        for (size_t i = 0; i < ps->total; i++) md = fmax(md, fabs((double)gw[i] - ps->w[i]));
        row(cs, "adam: weights (max |diff| / lr)", md / lr, 0, 1e-3, 0);
        mrw_adam_free(&opt);
        cudaFree(part);
    }
    cudaFree(ddo);
    mrw_vit_gpu_train_free(v);
    cudaStreamDestroy(st);
    mrw_vit_train_free(cpu);
}

int main(int argc, char **argv) {
    const int quick = argc > 1 && !strcmp(argv[1], "--quick");
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        fprintf(stderr, "test_vit_train_gpu: no CUDA device\n");
        return 2;
    }
    static const vcase cases[] = {
        {"siglip-tanh T25 D16", MRW_VIT_SIGLIP, MRW_VIT_GELU_TANH, 48, 3, 80, 2, 20, 4, 3},
        {"clip-quick T17 D32", MRW_VIT_CLIP, MRW_VIT_QUICK_GELU, 64, 2, 96, 2, 28, 7, 2},
        {"siglip-erf T64 D64 L3", MRW_VIT_SIGLIP, MRW_VIT_GELU_ERF, 128, 2, 512, 3, 64, 8, 5},
        {"clip-quick T197 D16", MRW_VIT_CLIP, MRW_VIT_QUICK_GELU, 64, 4, 128, 2, 56, 4, 2},
        {"siglip-tanh T64 1 image", MRW_VIT_SIGLIP, MRW_VIT_GELU_TANH, 128, 4, 256, 1, 64, 8, 1},
    };
    printf("%-24s %-58s %10s %10s %17s\n", "case", "what", "max err", "norm err", "tolerance");
    const int nc = quick ? 2 : (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < nc; i++)
        for (int fp32 = 1; fp32 >= 0; fp32--) run_case(&cases[i], fp32);
    /* errors */
    {
        mrw_error e;
    memset(&e, 0, sizeof e);
        mrw_vit_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.family = MRW_VIT_SIGLIP, cfg.hidden = 30, cfg.n_head = 4, cfg.intermediate = 8, cfg.n_layer = 1;
        cfg.channels = 3, cfg.patch = 4, cfg.image_size = 8, cfg.eps = 1e-6f;
        mrw_vit_gpu_train *v = NULL;
        const mrw_status s = mrw_vit_gpu_train_new(&cfg, 2, 1, NULL, &v, &e);
        row("errors", "hidden 30 with 4 heads refused (MRW_E_ARG)", s == MRW_E_ARG && !v ? 0 : 1, 0, 0, 0);
        cfg.hidden = 32;
        CHECK(mrw_vit_gpu_train_new(&cfg, 2, 1, NULL, &v, &e));
        const mrw_status s2 = mrw_vit_gpu_train_backward(v, v, &e);
        row("errors", "backward without a forward refused", s2 == MRW_E_ARG ? 0 : 1, 0, 0, 0);
        const void *o = NULL;
        std::vector<float> px(3 * 8 * 8 * 3);
        const mrw_status s3 = mrw_vit_gpu_train_forward(v, px.data(), 1, 3, &o, &e);
        row("errors", "3 images with room for 2 refused", s3 == MRW_E_ARG ? 0 : 1, 0, 0, 0);
        mrw_vit_gpu_train_free(v);
    }
    printf("%d rows, %d failed\n", g_rows, g_fail);
    return g_fail ? 1 : 0;
}
