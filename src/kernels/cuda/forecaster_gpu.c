/* The ModRWKV forecaster trained on one GPU (forecaster_gpu.h): the host forecaster's normalisation, head, skip path
 * and loss (the CPU code, on B rows) around the GPU WaveNet (wavenet_gpu.h), adapter (adapter_gpu.h; on the host
 * in the fp32 parity mode) and RWKV-7 in hidden-state mode (rwkv7_train_gpu.h). Compiled only with MRW_CUDA. */
#ifdef MRW_CUDA
#include "kernels/cuda/forecaster_gpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/cuda/adam.h"
#include "kernels/cuda/adapter_gpu.h"
#include "kernels/cuda/forecaster_gpu_ops.h"
#include "kernels/cuda/rwkv7_train_gpu.h"
#include "kernels/cuda/wavenet_gpu.h"

#define NORM_EPS 1e-5f /* forecaster.c's */

struct mrw_forecaster_gpu {
    mrw_forecaster *f;
    int fp32, frozen, B, has_loss;
    mrw_rwkv7_gpu *lm;
    mrw_wavenet_gpu *wn;
    mrw_adapter_gpu *ad; /* bf16 mode only */
    void *st;
    size_t esz, bytes;
    /* device buffers */
    float *x;      /* [max_B][L] normalised windows */
    void *inject;  /* [max_B*T][C] activation dtype */
    void *dinject; /* the same */
    void *xb, *ab, *dab, *dxb; /* bf16 mode: pooled rows (bf16) [B*n][E], adapter output / its gradient [B*n][C],
                                * d pooled (bf16) [B*n][E] */
    float *dpool;  /* [max_B][n][E] fp32 */
    float *hinj;   /* fp32 mode, host: the injected rows [max_B*T][C] (zero outside them) */
};

static mrw_status upload_small(mrw_forecaster_gpu *g, mrw_error *err) {
    mrw_status s;
    if (g->wn && (s = mrw_wavenet_gpu_upload(g->wn, &g->f->wn, err))) return s;
    if (g->ad && (s = mrw_adapter_gpu_upload(g->ad, mrw_tadapter_params(g->f->ad), 0, err))) return s;
    return MRW_OK;
}

mrw_status mrw_forecaster_gpu_new(mrw_forecaster *f, int fp32, int frozen_lm, int device, mrw_forecaster_gpu **out,
                                  mrw_error *err) {
    *out = NULL;
    mrw_forecaster_gpu *g = calloc(1, sizeof *g);
    if (!g) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    g->f = f, g->fp32 = fp32 != 0, g->frozen = frozen_lm != 0;
    g->esz = g->fp32 ? 4 : 2;
    const int B = f->max_B, L = f->cfg.lookback, T = f->T, n = f->n_tok, E = f->E, C = f->cfg.lm.n_embd;
    mrw_status s;
    mrw_rwkv7_gpu_opts o = {.fp32 = g->fp32, .ckpt = 0, .device = device, .frozen = g->frozen};
    if ((s = mrw_rwkv7_gpu_new(&f->cfg.lm, B, T, &o, &g->lm, err))) goto fail;
    g->st = mrw_rwkv7_gpu_stream(g->lm);
    /* a frozen Timer encoder runs on the host (mrw_timer_forward, as on the CPU); its features go up as the adapter's
     * input (staged in dpool) */
    if (!f->timer && (s = mrw_wavenet_gpu_new(&f->cfg.enc, B, L, g->fp32, g->st, &g->wn, err))) goto fail;
    if (!g->fp32 &&
        (s = mrw_adapter_gpu_new(E, C, f->cfg.adapter_scale * E, B * n, g->st, &g->ad, err)))
        goto fail;
    const size_t BTC = (size_t)B * T * C, BnE = (size_t)B * n * E, BnC = (size_t)B * n * C;
    struct {
        void **p;
        size_t bytes;
    } al[] = {{(void **)&g->x, (size_t)B * L * 4}, {&g->inject, BTC * g->esz}, {&g->dinject, BTC * g->esz},
              {(void **)&g->dpool, BnE * 4},        {&g->xb, g->fp32 ? 0 : BnE * 2}, {&g->ab, g->fp32 ? 0 : BnC * 2},
              {&g->dab, g->fp32 ? 0 : BnC * 2},     {&g->dxb, g->fp32 ? 0 : BnE * 2}};
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        if (!al[i].bytes) continue;
        if ((s = mrw_fcg_malloc(al[i].p, al[i].bytes, err))) goto fail;
        g->bytes += al[i].bytes;
    }
    if (g->fp32 && !(g->hinj = calloc(BTC, sizeof(float)))) {
        s = mrw_err(err, MRW_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((s = mrw_forecaster_gpu_upload(g, err))) goto fail;
    *out = g;
    return MRW_OK;
fail:
    mrw_forecaster_gpu_free(g);
    return s;
}

void mrw_forecaster_gpu_free(mrw_forecaster_gpu *g) {
    if (!g) return;
    if (g->st) mrw_fcg_sync(g->st, NULL);
    void *d[] = {g->x, g->inject, g->dinject, g->dpool, g->xb, g->ab, g->dab, g->dxb};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) mrw_fcg_free(d[i]);
    mrw_adapter_gpu_free(g->ad);
    mrw_wavenet_gpu_free(g->wn);
    mrw_rwkv7_gpu_free(g->lm);
    free(g->hinj);
    free(g);
}

size_t mrw_forecaster_gpu_bytes(const mrw_forecaster_gpu *g) {
    return g->bytes + mrw_rwkv7_gpu_bytes(g->lm) + (g->wn ? mrw_wavenet_gpu_bytes(g->wn) : 0) +
           (g->ad ? mrw_adapter_gpu_bytes(g->ad) : 0);
}

mrw_status mrw_forecaster_gpu_upload(mrw_forecaster_gpu *g, mrw_error *err) {
    mrw_status s;
    if ((s = mrw_rwkv7_gpu_upload(g->lm, mrw_rwkv7_train_params(g->f->lm), err))) return s;
    return upload_small(g, err);
}

mrw_status mrw_forecaster_gpu_upload_small(mrw_forecaster_gpu *g, mrw_error *err) { return upload_small(g, err); }

mrw_status mrw_forecaster_gpu_download(mrw_forecaster_gpu *g, mrw_error *err) {
    return mrw_rwkv7_gpu_download(g->lm, mrw_rwkv7_train_params(g->f->lm), 0, err);
}

mrw_status mrw_forecaster_gpu_forward(mrw_forecaster_gpu *g, const float *x, const float *y, int B, float *yhat,
                                      double *loss, mrw_error *err) {
    mrw_forecaster *f = g->f;
    g->B = 0, g->has_loss = 0;
    if (B < 1 || B > f->max_B) return mrw_err(err, MRW_E_ARG, "forecaster: batch %d exceeds %d", B, f->max_B);
    const int L = f->cfg.lookback, H = f->cfg.horizon, T = f->T, E = f->E, C = f->cfg.lm.n_embd, n = f->n_tok;
    for (size_t i = 0; i < (size_t)B * L; i++)
        if (!isfinite(x[i])) return mrw_err(err, MRW_E_ARG, "forecaster: input value %zu is not finite", i);
    if (y)
        for (size_t i = 0; i < (size_t)B * H; i++)
            if (!isfinite(y[i])) return mrw_err(err, MRW_E_ARG, "forecaster: target value %zu is not finite", i);
    for (int b = 0; b < B; b++)
        mrw_ts_instance_norm(x + (size_t)b * L, L, NORM_EPS, f->xn + (size_t)b * L, &f->mu[b], &f->sig[b]);
    mrw_status s;
    const float *pooled = NULL;
    if (f->timer) { /* frozen, on the host: [n, E] last hidden states of the most recent n patches of x̂ */
        for (int b = 0; b < B; b++)
            if ((s = mrw_timer_forward(f->timer, f->kc.n_threads, f->xn + (size_t)b * L, L,
                                       f->pool + (size_t)b * n * E, NULL, err)))
                return s;
        if (!g->fp32 && (s = mrw_fcg_copy(g->dpool, f->pool, (size_t)B * n * E * sizeof(float), 0, g->st, err)))
            return s;
        pooled = g->dpool;
    } else if ((s = mrw_fcg_copy(g->x, f->xn, (size_t)B * L * sizeof(float), 0, g->st, err)) ||
               (s = mrw_wavenet_gpu_forward(g->wn, g->x, B, L, f->cfg.patch, &pooled, err))) {
        return s;
    }
    if (g->fp32) { /* the adapter on the host (the CPU code), its rows to the sequence positions b*T + t, t < n */
        if ((!f->timer && (s = mrw_fcg_copy(f->pool, pooled, (size_t)B * n * E * sizeof(float), 1, g->st, err))) ||
            (s = mrw_tadapter_forward(f->ad, f->pool, B, n, f->adout, err)))
            return s;
        for (int b = 0; b < B; b++)
            memcpy(g->hinj + (size_t)b * T * C, f->adout + (size_t)b * n * C, (size_t)n * C * sizeof(float));
        if ((s = mrw_fcg_copy(g->inject, g->hinj, (size_t)B * T * C * sizeof(float), 0, g->st, err))) return s;
    } else {
        if ((s = mrw_fcg_cast((size_t)B * n * E, pooled, g->xb, 0, g->st, err)) ||
            (s = mrw_adapter_gpu_forward(g->ad, g->xb, B * n, g->ab, err)) ||
            (s = mrw_fcg_rows_to_seq(B, n, T, C, g->ab, g->inject, 0, g->st, err)))
            return s;
    }
    const int grad = y ? (g->frozen ? 2 : 1) : 0;
    if ((s = mrw_rwkv7_gpu_forward_hidden(g->lm, f->tokens, g->inject, f->mask, B, T, grad, f->hid, err))) return s;
    /* the head, the skip path, de-normalisation and the loss on the host (forecaster.c) */
    if ((s = mrw_forecaster_head_forward(f, y, B, yhat, loss, err))) return s;
    g->has_loss = y != NULL;
    g->B = B;
    return MRW_OK;
}

mrw_status mrw_forecaster_gpu_backward(mrw_forecaster_gpu *g, float scale, mrw_error *err) {
    mrw_forecaster *f = g->f;
    const int B = g->B, T = f->T, C = f->cfg.lm.n_embd, n = f->n_tok, E = f->E;
    if (!B || !g->has_loss) return mrw_err(err, MRW_E_ARG, "forecaster: backward without a forward with targets");
    g->B = 0;
    /* d hidden [B][C] (f->dhid as scratch: the host forecaster's rows are not used in this mode) */
    mrw_forecaster_head_backward(f, B, scale, f->dhid);
    mrw_status s;
    if ((s = mrw_rwkv7_gpu_backward_hidden(g->lm, f->dhid, 1.0f, g->frozen, g->dinject, err))) return s;
    memset(f->dhid, 0, (size_t)B * C * sizeof(float)); /* forecaster.c keeps dhid zero outside its read-out rows */
    if (g->fp32) {
        if ((s = mrw_fcg_copy(f->dinject, g->dinject, (size_t)B * T * C * sizeof(float), 1, g->st, err))) return s;
        for (int b = 0; b < B; b++)
            memcpy(f->dadout + (size_t)b * n * C, f->dinject + (size_t)b * T * C, (size_t)n * C * sizeof(float));
        mrw_tadapter_backward(f->ad, f->dadout, f->timer ? NULL : f->dpool);
        if (f->timer) return MRW_OK; /* frozen encoder: the gradient stops at the adapter's input */
        if ((s = mrw_fcg_copy(g->dpool, f->dpool, (size_t)B * n * E * sizeof(float), 0, g->st, err))) return s;
    } else {
        if ((s = mrw_fcg_seq_to_rows(B, n, T, C, g->dinject, 0, g->dab, g->st, err)) ||
            (s = mrw_adapter_gpu_backward(g->ad, g->dab, f->timer ? NULL : g->dxb, err)))
            return s;
        if (f->timer) return MRW_OK;
        if ((s = mrw_fcg_cast((size_t)B * n * E, g->dxb, g->dpool, 1, g->st, err))) return s;
    }
    return mrw_wavenet_gpu_backward(g->wn, g->dpool, err);
}

mrw_status mrw_forecaster_gpu_zero_grad(mrw_forecaster_gpu *g, mrw_error *err) {
    mrw_status s;
    if ((s = mrw_rwkv7_gpu_zero_grad(g->lm, err))) return s;
    if (g->ad && (s = mrw_adapter_gpu_zero_grad(g->ad, err))) return s;
    return MRW_OK;
}

mrw_status mrw_forecaster_gpu_grads_to_host(mrw_forecaster_gpu *g, mrw_error *err) {
    mrw_status s;
    if (g->wn && (s = mrw_wavenet_gpu_download_grads(g->wn, &g->f->wn, err))) return s;
    if (g->ad) { /* the host adapter's gradients += the device's (download overwrites: add through a copy) */
        mrw_param_set *ps = mrw_tadapter_params(g->f->ad);
        float *keep = malloc(ps->total * sizeof(float));
        if (!keep) return mrw_err(err, MRW_E_NOMEM, "out of memory");
        memcpy(keep, ps->g, ps->total * sizeof(float));
        if (!(s = mrw_fcg_sync(g->st, err))) s = mrw_adapter_gpu_download(g->ad, ps, 1, err);
        if (!s)
            for (size_t i = 0; i < ps->total; i++) ps->g[i] += keep[i];
        free(keep);
        if (s) return s;
        if ((s = mrw_adapter_gpu_zero_grad(g->ad, err))) return s;
    }
    return MRW_OK;
}

mrw_status mrw_forecaster_gpu_rwkv_sumsq(mrw_forecaster_gpu *g, double *ss, mrw_error *err) {
    *ss = 0;
    if (g->frozen) return MRW_OK;
    mrw_rwkv7_gpu_flat fl;
    mrw_rwkv7_gpu_flat_get(g->lm, &fl);
    mrw_status s;
    if ((s = mrw_rwkv7_gpu_sumsq_range(g->lm, 0, fl.total, err))) return s;
    return mrw_fcg_part_sum(fl.norm_part, MRW_CUDA_NORM_BLOCKS, ss, g->st, err);
}

mrw_status mrw_forecaster_gpu_rwkv_step(mrw_forecaster_gpu *g, const mrw_adam_config *cfg, double lr, double clip,
                                        double host_ss, mrw_error *err) {
    if (g->frozen) return MRW_OK;
    mrw_rwkv7_gpu_flat fl;
    mrw_rwkv7_gpu_flat_get(g->lm, &fl);
    mrw_status s;
    /* norm_part still holds the table's partial sums (mrw_forecaster_gpu_rwkv_sumsq): add the host sets' */
    if ((s = mrw_fcg_part_add(fl.norm_part, host_ss, g->st, err)) ||
        (s = mrw_rwkv7_gpu_step_range(g->lm, cfg, lr, clip, 0, fl.total, fl.m, fl.v, NULL, err)))
        return s;
    return mrw_rwkv7_gpu_refresh(g->lm, err);
}

mrw_status mrw_forecaster_gpu_moments(mrw_forecaster_gpu *g, int to_gpu, mrw_adam *opt, mrw_error *err) {
    if (g->frozen) return MRW_OK;
    mrw_param_set *ps = mrw_rwkv7_train_params(g->f->lm);
    int k = -1;
    for (int i = 0; i < opt->n_sets; i++)
        if (opt->sets[i] == ps) k = i;
    if (k < 0) return mrw_err(err, MRW_E_ARG, "gpu forecaster: the optimizer has no RWKV-7 set");
    int64_t t = opt->t;
    mrw_status s = mrw_rwkv7_gpu_moments(g->lm, to_gpu, ps, opt->m, opt->v, opt->moff[k], &t, err);
    return s;
}
#endif
