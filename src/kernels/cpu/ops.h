/* Row-wise and element-wise operations of the RWKV-7 forward pass (CPU), all fp32. */
#ifndef MRW_KERNELS_CPU_OPS_H
#define MRW_KERNELS_CPU_OPS_H

#include <stddef.h>

/* Row loops run on up to nt threads when there are enough rows to pay for the fork. */
#define MRW_ROWS_MIN_PARALLEL 32

/* for (TYPE I = 0; I < N; I++) { ... } on `nt` threads (a variable of that name in scope) when COND holds, else
 * on the calling thread without entering the OpenMP runtime: `#pragma omp parallel for if (0)` still costs
 * ~0.34 µs a call on the 2-core machine, and a decoded token makes a few hundred such calls. */
#define MRW_PARALLEL_FOR_IF(COND, TYPE, I, N, ...)                                                           \
    do {                                                                                                    \
        if (COND) {                                                                                         \
            _Pragma("omp parallel for num_threads(nt) schedule(static)")                                    \
            for (TYPE I = 0; I < (N); I++) { __VA_ARGS__ }                                                  \
        } else {                                                                                            \
            for (TYPE I = 0; I < (N); I++) { __VA_ARGS__ }                                                  \
        }                                                                                                   \
    } while (0)

/* y[t] = LN(x[t]) * w + b over C elements, biased variance. x and y may alias. */
void mrw_layernorm(const float *x, float *y, int T, int C, const float *w, const float *b, float eps, int nt);

/* Per-head GroupNorm of y[t] (H groups of N) with affine w, b (C = H*N); in place. */
void mrw_groupnorm(float *y, int T, int H, int N, const float *w, const float *b, float eps, int nt);

/* The WKV7 recurrence over T steps for H heads of size N. Inputs are [T, H*N] rows: r, w (decay), k, v,
 * a, b; per head and step: S ← S·diag(w) + (S a) bᵀ + v kᵀ, y = S r (new S). S is [H][N][N] (value row i,
 * key column j) and is updated in place. Heads are split across `n_threads`. */
void mrw_wkv7(float *S, int H, int N, int T, const float *r, const float *w, const float *k, const float *v,
              const float *a, const float *b, float *y, int n_threads);

/* Vectorised elementwise helpers over n floats (in place allowed). */
void mrw_vec_sigmoid(float *x, size_t n, int nt);
void mrw_vec_tanh(float *x, size_t n, int nt);
/* Rows of T x C: decay w = exp(-e^{-1/2}·σ(w0 + w)) in place (step 4 of the spec). */
void mrw_vec_decay(float *w, const float *w0, int T, int C, int nt);
/* Rows of T x C: x = σ(bias + x) in place. */
void mrw_vec_sigmoid_bias(float *x, const float *bias, int T, int C, int nt);

#endif
