/* Forecasting baselines, evaluated on the same windows as the models (splits.h):
 *
 *   last value      y[h] = x[L-1] for every step h.
 *   seasonal naive  y[h] = x[L - P + (h mod P)]: the last full period repeated (P = the dataset's period, see
 *                   splits.h: 24 hourly, 96 for 15 min, 144 for 10 min, 7 daily, 52 weekly); needs P <= L.
 *   linear          DLinear (Zeng et al. 2023, "Are Transformers Effective for Time Series Forecasting?"),
 *                   channel-shared ("individual = False"): the lookback x is split into a trend t = moving
 *                   average of x (kernel 25, stride 1, the ends padded by repeating the first / last value,
 *                   as DLinear's series_decomp does) and a seasonal part s = x - t; y = Ws·s + bs + Wt·t + bt
 *                   with Ws, Wt [H, L].
 *
 * Fitting the linear model: closed-form ridge regression on the training split's windows (every channel,
 * stride 1 as the literature trains), in double precision, instead of DLinear's Adam epochs:
 *   minimise  sum over windows ||y - Ws s - Wt t - b||^2 + lambda (||Ws||^2 + ||Wt||^2)   (b = bs + bt free;
 *   reported as bs = b, bt = 0).
 * The normal equations need only the Gram matrix G = sum x xᵀ of the lookbacks, sum x, the cross moments
 * C = sum x yᵀ, sum y and sum ||y||^2. For stride-1 windows of one series these are computed exactly in
 * O(n (L + H) + L (L + H)) by the shift recursion G[i+1][j+1] = G[i][j] - z[p0+i] z[p0+j] + z[p1+1+i] z[p1+1+j]
 * (and the same for C), then mapped to the (s, t, 1) features with the banded moving-average matrix A:
 * s = (I - A) x, t = A x. The system (dimension 2L + 1) is solved by Cholesky. lambda = alpha · N (N = training
 * windows) with alpha picked from a grid by the validation-split MSE (computed from the validation moments, so
 * no window is predicted twice). Since s + t = x, prediction uses the collapsed map W = Ws + (Wt - Ws) A,
 * b = bs + bt (identical up to rounding), through the fp32 GEMM; mrw_ts_dlinear_predict is the plain
 * decomposed form the tests compare it with.
 *
 * Metrics: MSE and MAE over every target value of every window of the split (all channels), in the
 * normalised space of splits.h, accumulated in double. */
#ifndef MRW_TS_BASELINES_H
#define MRW_TS_BASELINES_H

#include <stdint.h>
#include <stdio.h>

#include "kernels/cpu/kctx.h"
#include "modrwkv.h"
#include "ts/splits.h"

typedef enum { MRW_TS_BASE_LAST = 0, MRW_TS_BASE_SEASONAL = 1, MRW_TS_BASE_LINEAR = 2 } mrw_ts_baseline;

#define MRW_TS_DLINEAR_KERNEL 25

void mrw_ts_last_value(const float *x, int L, int H, float *y);
/* Returns 0, or -1 when period < 1 or period > L. */
int mrw_ts_seasonal_naive(const float *x, int L, int H, int period, float *y);

/* Trend (moving average, odd kernel, replicated ends) and seasonal part of x[0..L); either may be NULL. */
void mrw_ts_decompose(const float *x, int L, int kernel, float *trend, float *seasonal);

typedef struct {
    int L, H, kernel;
    float *ws, *wt; /* [H, L] */
    float *bs, *bt; /* [H] */
    float *w, *b;   /* collapsed: y = W x + b, [H, L] and [H] */
    double alpha, lambda, val_mse; /* the chosen alpha, lambda = alpha * N, its validation MSE */
    int64_t n_train;               /* training windows used */
} mrw_ts_dlinear;

/* Fits on d's training windows (stride 1), choosing alpha among alphas[0..n_alpha) by the validation MSE
 * (NULL / 0: the default grid 1e-4, 1e-3, 1e-2, 1e-1, 1). With one alpha, the validation MSE is still reported. */
mrw_status mrw_ts_dlinear_fit(mrw_ts_dlinear *m, const mrw_ts_data *d, const double *alphas, int n_alpha,
                              mrw_error *err);
void mrw_ts_dlinear_free(mrw_ts_dlinear *m);
/* Decomposed form: y = Ws s + bs + Wt t + bt (plain loops, double accumulation). */
void mrw_ts_dlinear_predict(const mrw_ts_dlinear *m, const float *x, float *y);

typedef struct {
    double mse, mae;
    int64_t n_windows, n_values;
} mrw_ts_score;

/* MSE/MAE of a baseline over every window of a split (d->stride apart). `lin` is needed for
 * MRW_TS_BASE_LINEAR, `period` (> 0) for MRW_TS_BASE_SEASONAL. k may be NULL (one thread). */
mrw_status mrw_ts_eval_baseline(mrw_kctx *k, const mrw_ts_data *d, int split, mrw_ts_baseline kind,
                                const mrw_ts_dlinear *lin, int period, mrw_ts_score *out, mrw_error *err);

/* Forecast of one window with a baseline (y [H]). */
mrw_status mrw_ts_baseline_forecast(mrw_ts_baseline kind, const mrw_ts_dlinear *lin, int period, const float *x,
                                    int L, int H, float *y, mrw_error *err);

/* The baselines table: for each CSV (dataset detected by name; all numeric columns, channel-independent),
 * the test-split MSE and MAE of last value, seasonal naive and the DLinear-style linear model, printed as a
 * Markdown table to `out`. lookback / horizon <= 0: each dataset's usual setting (splits.h). Progress lines
 * go to stderr when `progress` is set. */
mrw_status mrw_ts_eval_baselines(const char *const *paths, int n_paths, int lookback, int horizon, int n_threads,
                                 int progress, FILE *out, mrw_error *err);

#endif
