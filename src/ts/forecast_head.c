/* Forecast head: linear read-out of all H steps, de-normalisation and MSE (see forecast_head.h). */
#include "ts/forecast_head.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "train/train_nn.h"

mrw_status mrw_ts_head_add_params(mrw_ts_head *hd, int C, int H, mrw_param_set *ps, mrw_error *err) {
    return mrw_ts_head_add_params_named(hd, "forecast_head", C, H, ps, err);
}

mrw_status mrw_ts_head_add_params_named(mrw_ts_head *hd, const char *prefix, int C, int H, mrw_param_set *ps,
                                        mrw_error *err) {
    memset(hd, 0, sizeof *hd);
    if (C < 1 || H < 1 || C > (1 << 16) || H > (1 << 16))
        return mrw_err(err, MRW_E_ARG, "forecast head: bad sizes C %d, H %d", C, H);
    hd->C = C, hd->H = H, hd->ps = ps;
    int64_t sw[2] = {H, C}, sb[1] = {H};
    char nw[MRW_PARAM_NAME_MAX], nb[MRW_PARAM_NAME_MAX];
    snprintf(nw, sizeof nw, "%s.weight", prefix);
    snprintf(nb, sizeof nb, "%s.bias", prefix);
    hd->w = mrw_param_add(ps, nw, MRW_PG_ADAPTER, 0, 2, sw);
    hd->b = mrw_param_add(ps, nb, MRW_PG_ADAPTER, 1, 1, sb);
    if (hd->w < 0 || hd->b < 0) return mrw_err(err, MRW_E_NOMEM, "forecast head: cannot add parameters");
    return MRW_OK;
}

void mrw_ts_head_init_random(mrw_ts_head *hd, uint64_t seed) {
    float *w = mrw_param_w(hd->ps, hd->w), *b = mrw_param_w(hd->ps, hd->b);
    uint64_t s = seed + 0x9E3779B97F4A7C15ull;
    double bound = 1.0 / sqrt((double)hd->C);
    for (size_t i = 0; i < (size_t)hd->H * hd->C; i++) {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        w[i] = (float)(((z >> 11) * 0x1.0p-53 * 2 - 1) * bound);
    }
    memset(b, 0, (size_t)hd->H * sizeof *b);
}

void mrw_ts_head_forward(mrw_kctx *k, const mrw_ts_head *hd, const float *h, const float *mu, const float *sigma,
                         int B, float *yhat) {
    mrw_tnn_linear(k, mrw_param_w(hd->ps, hd->w), mrw_param_w(hd->ps, hd->b), h, B, hd->C, hd->H, yhat);
    for (int i = 0; i < B; i++)
        for (int t = 0; t < hd->H; t++) yhat[(size_t)i * hd->H + t] = mu[i] + sigma[i] * yhat[(size_t)i * hd->H + t];
}

double mrw_ts_mse_loss(const float *yhat, const float *y, int B, int H, float *dyhat) {
    size_t n = (size_t)B * H;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)yhat[i] - y[i];
        s += e * e;
        if (dyhat) dyhat[i] = (float)(2.0 * e / (double)n);
    }
    return n ? s / (double)n : 0;
}

size_t mrw_ts_head_scratch(int B, int C, int H) { return mrw_tnn_linear_bwd_scratch(B, C, H) + (size_t)B * H; }

void mrw_ts_head_backward(mrw_kctx *k, const mrw_ts_head *hd, const float *h, const float *sigma,
                          const float *dyhat, int B, float *dh, float *scratch) {
    float *du = scratch;
    for (int i = 0; i < B; i++)
        for (int t = 0; t < hd->H; t++) du[(size_t)i * hd->H + t] = sigma[i] * dyhat[(size_t)i * hd->H + t];
    mrw_tnn_linear_bwd(k, mrw_param_w(hd->ps, hd->w), h, du, B, hd->C, hd->H, mrw_param_g(hd->ps, hd->w),
                       mrw_param_g(hd->ps, hd->b), dh, 0, scratch + (size_t)B * hd->H);
}
