/* LayerNorm, and RWKV-7's per-head GroupNorm fused with the bonus and the gate (steps 11-13 of
 * ../shared/reference/rwkv7.md), forward and backward on the GPU. Plain C interface; built with `make CUDA=1`
 * (norm.cu). See docs/CUDA.md.
 *
 * Activation tensors are [rows][C] row-major, all of the call's dtype `dt` (fp32 or bf16); weights, biases,
 * statistics and parameter gradients are fp32; arithmetic is fp32. Parameter gradients are accumulated (+=,
 * as the CPU trainer does) through a deterministic two-stage column sum in `scratch` (size from the *_scratch
 * functions); passing NULL parameter gradients skips them (frozen weights). All pointers are device pointers;
 * calls are asynchronous on `stream`. */
#ifndef MRW_KERNELS_CUDA_NORM_H
#define MRW_KERNELS_CUDA_NORM_H

#include <stddef.h>

#include "kernels/cuda/wkv7.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y = (x - mean) * rstd * w + b per row, biased variance, rstd = 1 / sqrt(var + eps); keeps mean, rstd [rows]. */
mrw_status mrw_cuda_layernorm_fwd(mrw_cuda_dtype dt, int rows, int C, const void *x, const float *w, const float *b,
                                  float eps, void *y, float *mean, float *rstd, void *stream, mrw_error *err);
size_t mrw_cuda_layernorm_bwd_scratch(int C); /* floats */
/* dx = (or += when accumulate) rstd * (dy w - mean(dy w) - xhat mean(dy w xhat)); dw += sum dy xhat,
 * db += sum dy (dw, db may be NULL; scratch may be NULL when both are). With scratch given, dx does not depend on
 * whether dw, db are asked for (bit-identical: a frozen backward's activation gradients equal a full one's). */
mrw_status mrw_cuda_layernorm_bwd(mrw_cuda_dtype dt, int rows, int C, const void *dy, const void *x,
                                  const float *mean, const float *rstd, const float *w, int accumulate, void *dx,
                                  float *dw, float *db, float *scratch, void *stream, mrw_error *err);

/* Per row and head h (N = 64 channels, C = 64 H), from the WKV output y:
 *     yhat = (y - mean) * rstd  (over the head's 64 values, rstd = 1 / sqrt(var + eps), eps 64e-5 in RWKV-7)
 *     beta = sum_j r_j k_j rk[h][j]                 (bonus; r, k, v, rk all NULL = no bonus)
 *     o    = yhat * lnw + lnb + beta * v
 *     z    = o * g                                  (g NULL = no gate: z = o)
 * keeps mean, rstd [rows][H]. */
mrw_status mrw_cuda_gn_bonus_gate_fwd(mrw_cuda_dtype dt, int rows, int H, const void *y, const void *r,
                                      const void *k, const void *v, const void *g, const float *lnw,
                                      const float *lnb, const float *rk, float eps, void *z, float *mean,
                                      float *rstd, void *stream, mrw_error *err);
size_t mrw_cuda_gn_bonus_gate_bwd_scratch(int rows, int H); /* floats */
/* From dz: dy, and the bonus's dr, dk, dv and the gate's dg, all written (=); dlnw, dlnb, drk += (any may be
 * NULL). dr, dk, dv are the bonus terms only: the caller adds them to the WKV's gradients (the key-prep
 * backward of rwkv7_ew.h takes them). */
mrw_status mrw_cuda_gn_bonus_gate_bwd(mrw_cuda_dtype dt, int rows, int H, const void *dz, const void *y,
                                      const void *r, const void *k, const void *v, const void *g, const float *lnw,
                                      const float *lnb, const float *rk, const float *mean, const float *rstd,
                                      void *dy, void *dr, void *dk, void *dv, void *dg, float *dlnw, float *dlnb,
                                      float *drk, float *scratch, void *stream, mrw_error *err);
/* The same with the bonus required, its dr and dk left to the caller: instead of them, dbeta [rows][H] (fp32) =
 * dL/dbeta = sum_i dz_i g_i v_i per row and head, from which dr = dbeta k rk and dk = dbeta r rk (the key prep's
 * backward forms them, rwkv7_ew.h: two tensors fewer written here and read there). */
mrw_status mrw_cuda_gn_bonus_gate_bwd_dbeta(mrw_cuda_dtype dt, int rows, int H, const void *dz, const void *y,
                                            const void *r, const void *k, const void *v, const void *g,
                                            const float *lnw, const float *lnb, const float *rk, const float *mean,
                                            const float *rstd, void *dy, float *dbeta, void *dv, void *dg,
                                            float *dlnw, float *dlnb, float *drk, float *scratch, void *stream,
                                            mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
