/* WaveNet encoder (src/ts/wavenet.c): forward and backward against PyTorch autograd
 * (tests/reference/make_wavenet_fixtures.py), finite differences, causality, and the default layer table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/tensorfile.h"
#include "test.h"
#include "train/optim.h"
#include "ts/forecast_head.h"
#include "ts/splits.h"
#include "ts/wavenet.h"

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    if (scale) *scale = s;
    return m;
}

static size_t n_params(const mrw_param_set *ps) {
    size_t n = 0;
    for (int i = 0; i < ps->n; i++) n += ps->p[i].n;
    return n;
}

static double loss_of(mrw_kctx *k, mrw_wavenet *wn, mrw_wavenet_acts *a, const float *x, const float *dout,
                      float *out, size_t n) {
    mrw_wavenet_forward(k, wn, x, a, out);
    double l = 0;
    for (size_t i = 0; i < n; i++) l += (double)out[i] * dout[i];
    return l;
}

static void test_parity(void) {
    mrw_error err = {0};
    mrw_tfile *fm = NULL, *fg = NULL;
    CHECK_OK(mrw_tfile_open("tests/fixtures/wavenet/model.safetensors", &fm, &err), &err);
    CHECK_OK(mrw_tfile_open("tests/fixtures/wavenet/golden.safetensors", &fg, &err), &err);
    if (!fm || !fg) {
        if (fm) mrw_tfile_close(fm);
        if (fg) mrw_tfile_close(fg);
        return;
    }
    mrw_wavenet_config cfg = {.n_layers = 4, .res_ch = 4, .skip_ch = 5, .out_dim = 3, .cycle = 3};
    CHECK(mrw_wavenet_receptive_field(&cfg) == 9);
    mrw_param_set ps = {0};
    mrw_wavenet wn;
    CHECK_OK(mrw_wavenet_add_params(&wn, &cfg, &ps, &err), &err);
    CHECK_OK(mrw_param_set_alloc(&ps, &err), &err);
    CHECK_OK(mrw_wavenet_load(&wn, fm, &err), &err);
    CHECK(n_params(&ps) == 494);
    const mrw_tensor_info *tx = mrw_tfile_find(fg, "input"), *td = mrw_tfile_find(fg, "d_out"),
                          *to = mrw_tfile_find(fg, "out"), *tgx = mrw_tfile_find(fg, "grad.input");
    CHECK(tx && td && to && tgx);
    if (!tx || !td || !to || !tgx) goto done;
    int B = (int)tx->shape[0], T = (int)tx->shape[1], E = cfg.out_dim;
    size_t nout = (size_t)B * T * E;
    mrw_kctx k;
    mrw_kctx_init(&k, 1);
    mrw_wavenet_acts a;
    CHECK_OK(mrw_wavenet_acts_alloc(&a, &cfg, B, T, &err), &err);
    float *out = malloc(nout * sizeof *out), *dx = malloc((size_t)B * T * sizeof *dx);
    mrw_wavenet_forward(&k, &wn, tx->data, &a, out);
    double sc, e = max_abs_diff(out, to->data, nout, &sc);
    CHECKF(e <= 1e-4, "forward max err %g (scale %g)", e, sc);
    mrw_param_zero_grad(&ps);
    mrw_wavenet_backward(&k, &wn, &a, td->data, dx);
    double eg = max_abs_diff(dx, tgx->data, (size_t)B * T, &sc);
    CHECKF(eg <= 1e-4, "grad.input max err %g", eg);
    double egp = 0;
    for (int i = 0; i < ps.n; i++) {
        char nm[160];
        snprintf(nm, sizeof nm, "grad.%s", ps.p[i].name);
        const mrw_tensor_info *tg = mrw_tfile_find(fg, nm);
        CHECKF(tg != NULL, "%s missing", nm);
        if (!tg) continue;
        double ei = max_abs_diff(mrw_param_g(&ps, i), tg->data, ps.p[i].n, &sc);
        CHECKF(ei <= 1e-4 * fmax(1, sc), "%s max err %g (scale %g)", nm, ei, sc);
        egp = fmax(egp, ei);
    }
    /* finite differences in fp32 on a few parameters and inputs: central, eps 1e-2, loss = sum(out * d_out) */
    double efd = 0;
    const float *dout = td->data;
    int probes[] = {wn.in_w, wn.dil_w[0], wn.dil_b[2], wn.res_w[1], wn.skip_w[3], wn.out_w, wn.out_b};
    for (int pi = 0; pi < (int)(sizeof probes / sizeof *probes); pi++) {
        int idx = probes[pi];
        float *w = mrw_param_w(&ps, idx);
        const float *g = mrw_param_g(&ps, idx);
        for (size_t j = 0; j < ps.p[idx].n && j < 3; j++) {
            float keep = w[j];
            const float h = 1e-2f;
            w[j] = keep + h;
            double lp = loss_of(&k, &wn, &a, tx->data, dout, out, nout);
            w[j] = keep - h;
            double lm = loss_of(&k, &wn, &a, tx->data, dout, out, nout);
            w[j] = keep;
            double fd = (lp - lm) / (2 * h);
            efd = fmax(efd, fabs(fd - g[j]) / fmax(1, fabs(g[j])));
        }
    }
    CHECKF(efd <= 5e-3, "finite differences rel err %g", efd);
    /* causality: changing x[b, t0..] leaves out[b, < t0] unchanged */
    {
        float *x2 = malloc((size_t)B * T * sizeof *x2), *out2 = malloc(nout * sizeof *out2);
        memcpy(x2, tx->data, (size_t)B * T * sizeof *x2);
        int t0 = 6;
        for (int t = t0; t < T; t++) x2[t] += 3.0f;
        mrw_wavenet_forward(&k, &wn, tx->data, &a, out);
        mrw_wavenet_forward(&k, &wn, x2, &a, out2);
        double ec = max_abs_diff(out2, out, (size_t)t0 * E, NULL);
        double changed = max_abs_diff(out2 + (size_t)t0 * E, out + (size_t)t0 * E, (size_t)(T - t0) * E, NULL);
        double other = max_abs_diff(out2 + (size_t)T * E, out + (size_t)T * E, (size_t)T * E, NULL);
        CHECK(ec == 0 && changed > 1e-3 && other == 0);
        free(x2), free(out2);
    }
    fprintf(stderr, "wavenet parity: out %.2g, grad.input %.2g, param grads %.2g, finite diff rel %.2g\n", e, eg, egp,
            efd);
    /* a wrong shape in the file is an error naming the tensor */
    {
        mrw_wavenet_config c2 = cfg;
        c2.skip_ch = 6;
        mrw_param_set ps2 = {0};
        mrw_wavenet wn2;
        CHECK_OK(mrw_wavenet_add_params(&wn2, &c2, &ps2, &err), &err);
        CHECK_OK(mrw_param_set_alloc(&ps2, &err), &err);
        CHECK(mrw_wavenet_load(&wn2, fm, &err) == MRW_E_SHAPE && strstr(err.msg, "skip_conv"));
        mrw_param_set_free(&ps2);
    }
    free(out), free(dx);
    mrw_wavenet_acts_free(&a);
    mrw_kctx_free(&k);
done:
    mrw_param_set_free(&ps);
    mrw_tfile_close(fm);
    mrw_tfile_close(fg);
}

static void test_default(void) {
    mrw_error err = {0};
    mrw_wavenet_config c;
    mrw_wavenet_config_default(&c, 720);
    CHECK(c.n_layers == 10 && c.res_ch == 64 && c.skip_ch == 64 && c.out_dim == 128);
    CHECK(mrw_wavenet_receptive_field(&c) == 1024);
    mrw_wavenet_config_default(&c, 96);
    CHECK(mrw_wavenet_receptive_field(&c) >= 96);
    mrw_wavenet_config_default(&c, 720);
    mrw_param_set ps = {0};
    mrw_wavenet wn;
    CHECK_OK(mrw_wavenet_add_params(&wn, &c, &ps, &err), &err);
    CHECK_OK(mrw_param_set_alloc(&ps, &err), &err);
    CHECKF(n_params(&ps) == 256768, "default params %zu", n_params(&ps));
    for (int i = 0; i < ps.n; i++) CHECK(ps.p[i].group == MRW_PG_ENCODER && !strncmp(ps.p[i].name, "encoder.model.", 14));
    mrw_wavenet_init_random(&wn, 1);
    /* one lookback of 720 through the default encoder: finite features */
    mrw_kctx k;
    mrw_kctx_init(&k, 2);
    mrw_wavenet_acts a;
    CHECK_OK(mrw_wavenet_acts_alloc(&a, &c, 1, 720, &err), &err);
    float *x = malloc(720 * sizeof *x), *out = malloc((size_t)720 * 128 * sizeof *out);
    for (int t = 0; t < 720; t++) x[t] = sinf(t * 0.1f);
    mrw_wavenet_forward(&k, &wn, x, &a, out);
    int finite = 1;
    for (int i = 0; i < 720 * 128; i++) finite &= isfinite(out[i]) != 0;
    CHECK(finite);
    {
        mrw_wavenet_config b = c;
        b.n_layers = 0;
        CHECK(mrw_wavenet_config_check(&b, &err) == MRW_E_ARG);
    }
    free(x), free(out);
    mrw_wavenet_acts_free(&a);
    mrw_kctx_free(&k);
    mrw_param_set_free(&ps);
}

/* The pieces train together: per-series normalisation -> WaveNet -> the last step's features -> forecast head
 * -> de-normalised MSE, Adam on encoder and head. A noisy sine (period 16, random amplitude and offset per
 * window) must be fitted well below the last-value forecast's error. */
static void test_learns(void) {
    mrw_error err = {0};
    enum { L = 32, Hz = 8, B = 16, STEPS = 150 };
    mrw_wavenet_config cfg = {.n_layers = 5, .res_ch = 8, .skip_ch = 8, .out_dim = 8, .cycle = 5};
    CHECK(mrw_wavenet_receptive_field(&cfg) >= L);
    mrw_param_set ps = {0};
    mrw_wavenet wn;
    mrw_ts_head hd;
    CHECK_OK(mrw_wavenet_add_params(&wn, &cfg, &ps, &err), &err);
    CHECK_OK(mrw_ts_head_add_params(&hd, cfg.out_dim, Hz, &ps, &err), &err);
    CHECK_OK(mrw_param_set_alloc(&ps, &err), &err);
    mrw_wavenet_init_random(&wn, 5);
    mrw_ts_head_init_random(&hd, 6);
    mrw_adam_config ac = mrw_adam_config_default();
    mrw_adam opt;
    mrw_param_set *sets[1] = {&ps};
    CHECK_OK(mrw_adam_init(&opt, &ac, sets, 1, MRW_PG_ENCODER | MRW_PG_ADAPTER, &err), &err);
    mrw_kctx k;
    mrw_kctx_init(&k, 1);
    mrw_wavenet_acts a;
    CHECK_OK(mrw_wavenet_acts_alloc(&a, &cfg, B, L, &err), &err);
    float *x = malloc(sizeof(float) * B * L), *xn = malloc(sizeof(float) * B * L), *y = malloc(sizeof(float) * B * Hz),
          *out = malloc(sizeof(float) * B * L * cfg.out_dim), *dout = calloc((size_t)B * L * cfg.out_dim, sizeof(float)),
          *hl = malloc(sizeof(float) * B * cfg.out_dim), *dh = malloc(sizeof(float) * B * cfg.out_dim),
          *yh = malloc(sizeof(float) * B * Hz), *dy = malloc(sizeof(float) * B * Hz),
          *scr = malloc(sizeof(float) * mrw_ts_head_scratch(B, cfg.out_dim, Hz));
    float mu[B], sg[B];
    uint64_t rs = 99;
    double first = 0, last = 0, naive = 0;
    for (int step = 0; step < STEPS; step++) {
        for (int b = 0; b < B; b++) {
            rs = rs * 6364136223846793005ull + 1442695040888963407ull;
            double ph = (rs >> 11) * 0x1.0p-53 * 6.283, amp = 0.5 + ((rs >> 20) & 255) / 128.0,
                   off = ((rs >> 28) & 255) / 32.0 - 4;
            for (int t = 0; t < L + Hz; t++) {
                rs = rs * 6364136223846793005ull + 1442695040888963407ull;
                double v = off + amp * sin(ph + t * 6.283 / 16) + 0.05 * (((rs >> 40) & 1023) / 512.0 - 1);
                if (t < L) x[b * L + t] = (float)v;
                else y[b * Hz + t - L] = (float)v;
            }
            mrw_ts_instance_norm(x + b * L, L, 1e-5f, xn + b * L, &mu[b], &sg[b]);
        }
        mrw_wavenet_forward(&k, &wn, xn, &a, out);
        for (int b = 0; b < B; b++)
            memcpy(hl + b * cfg.out_dim, out + ((size_t)b * L + L - 1) * cfg.out_dim, sizeof(float) * cfg.out_dim);
        mrw_ts_head_forward(&k, &hd, hl, mu, sg, B, yh);
        mrw_adam_zero_grad(&opt);
        double loss = mrw_ts_mse_loss(yh, y, B, Hz, dy);
        mrw_ts_head_backward(&k, &hd, hl, sg, dy, B, dh, scr);
        for (int b = 0; b < B; b++)
            memcpy(dout + ((size_t)b * L + L - 1) * cfg.out_dim, dh + b * cfg.out_dim, sizeof(float) * cfg.out_dim);
        mrw_wavenet_backward(&k, &wn, &a, dout, NULL);
        mrw_clip_grad_norm(&opt, 1.0);
        mrw_adam_step(&opt, 1e-2);
        if (step < 10) first += loss / 10;
        if (step >= STEPS - 10) {
            last += loss / 10;
            for (int b = 0; b < B; b++)
                for (int h = 0; h < Hz; h++) naive += pow(x[b * L + L - 1] - y[b * Hz + h], 2) / (B * Hz * 10.0);
        }
    }
    CHECKF(last < 0.25 * first && last < 0.25 * naive, "loss first %g, last %g, last-value %g", first, last, naive);
    fprintf(stderr, "wavenet + head on noisy sines: loss %.4f -> %.4f (last value %.4f)\n", first, last, naive);
    free(x), free(xn), free(y), free(out), free(dout), free(hl), free(dh), free(yh), free(dy), free(scr);
    mrw_wavenet_acts_free(&a);
    mrw_kctx_free(&k);
    mrw_adam_free(&opt);
    mrw_param_set_free(&ps);
}

int main(void) {
    test_parity();
    test_learns();
    test_default();
    TEST_MAIN_END();
}
