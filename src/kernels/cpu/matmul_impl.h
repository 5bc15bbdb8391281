/* Kernel entry points behind mrw_matmul (one implementation file per kernel family). */
#ifndef MRW_KERNELS_CPU_MATMUL_IMPL_H
#define MRW_KERNELS_CPU_MATMUL_IMPL_H

#include "kernels/cpu/matmul.h"

#define MRW_MV_MAXT 4 /* inputs per matrix-vector pass */

/* Rows [r0, r1) of Y[t] (t < tn <= MRW_MV_MAXT) from rows of W; single-threaded. */
void mrw_matvec_rows(const mrw_mat *W, int r0, int r1, const float *X, int ldx, float *Y, int ldy, int tn, int acc);

/* Low-precision activations for the matrix-vector kernels (matvec_q8act.c), prepared once per call: 8-bit
 * for q8_0/q4_0 weights (xq, dx, corr), bf16 for bf16 weights (xb). */
typedef struct {
    int tn, K;
    mrw_dtype dtype;
    int f32x;        /* exact: f32 inputs in the interleaved lane order (q4i_prepare_f32) instead of 8-bit ones */
    uint16_t *xb;
    int8_t *xq;
    float *dx;
    int32_t *corr;
} mrw_qx;
int mrw_qx_supported(mrw_dtype t); /* 0 when the CPU lacks the instructions */
size_t mrw_qx_bytes(int tn, int K);
/* For the product of W (K = W->cols) with tn inputs; mem holds mrw_qx_bytes(tn, K). exact: only for interleaved q4_0
 * rows, whose exact kernel takes the f32 inputs reordered (mrw_qx_exact_supported). */
void mrw_qx_prepare(mrw_qx *qx, void *mem, const mrw_mat *W, const float *X, int ldx, int tn, int exact);
int mrw_qx_exact_supported(const mrw_mat *W);
void mrw_matvec_qx_rows(const mrw_mat *W, int r0, int r1, const mrw_qx *qx, float *Y, int ldy, int acc);

/* Packed GEMM, threaded inside. Returns 0, or -1 if no GEMM kernel handles this dtype / the scratch could
 * not be allocated (the caller then uses the matrix-vector kernel). */
int mrw_gemm(mrw_kctx *k, const mrw_mat *W, const float *X, int ldx, float *Y, int ldy, int T, int acc);
/* Largest T for which the matrix-vector kernel is used by default. */
int mrw_gemm_min_T(mrw_dtype dt);

#endif
