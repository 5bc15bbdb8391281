/* The forecaster's output end (docs/FORECAST.md): a linear head on the final hidden state that predicts all H
 * steps at once in the window's own normalised units, de-normalised with the window's mean and std, and the
 * MSE loss against the target in the dataset-normalised space.
 *
 *   u = W h + b            h [C] (RWKV-7's final hidden state after ln_out), W [H, C], b [H]
 *   ŷ = μ + σ · u          μ, σ: the input window's mean and sqrt(var + 1e-5) (mrw_ts_instance_norm)
 *   loss = mean over the batch and the H steps of (ŷ − y)²
 *
 * Parameters in an mrw_param_set: "forecast_head.weight" [H, C], "forecast_head.bias" [H], group
 * MRW_PG_ADAPTER (trained with the adapter from stage 1 on). */
#ifndef MRW_TS_FORECAST_HEAD_H
#define MRW_TS_FORECAST_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/kctx.h"
#include "modrwkv.h"
#include "train/params.h"

typedef struct {
    int C, H;
    mrw_param_set *ps;
    int w, b; /* parameter indices */
} mrw_ts_head;

mrw_status mrw_ts_head_add_params(mrw_ts_head *hd, int C, int H, mrw_param_set *ps, mrw_error *err);
/* The same with the names "<prefix>.weight" / "<prefix>.bias" (the forecaster's skip path: "forecast_head.skip"). */
mrw_status mrw_ts_head_add_params_named(mrw_ts_head *hd, const char *prefix, int C, int H, mrw_param_set *ps,
                                        mrw_error *err);
/* Zero bias, W ~ U(-1/sqrt(C), 1/sqrt(C)) (after mrw_param_set_alloc). */
void mrw_ts_head_init_random(mrw_ts_head *hd, uint64_t seed);

/* yhat [B, H] from h [B, C] and the windows' mu, sigma [B]. */
void mrw_ts_head_forward(mrw_kctx *k, const mrw_ts_head *hd, const float *h, const float *mu, const float *sigma,
                         int B, float *yhat);
/* MSE of yhat against y [B, H] (double accumulation); if dyhat is given, d loss / d yhat. */
double mrw_ts_mse_loss(const float *yhat, const float *y, int B, int H, float *dyhat);
/* From d loss / d yhat: gradients += into the head's parameters, dh [B, C] = d loss / d h (may be NULL).
 * scratch: mrw_tnn_linear_bwd_scratch(B, C, H) + B*H floats. */
void mrw_ts_head_backward(mrw_kctx *k, const mrw_ts_head *hd, const float *h, const float *sigma,
                          const float *dyhat, int B, float *dh, float *scratch);
size_t mrw_ts_head_scratch(int B, int C, int H);

#endif
