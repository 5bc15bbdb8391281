/* Kernel entry points behind mrw_matmul (one implementation file per kernel family). */
#ifndef MRW_KERNELS_CPU_MATMUL_IMPL_H
#define MRW_KERNELS_CPU_MATMUL_IMPL_H

#include "kernels/cpu/matmul.h"

#define MRW_MV_MAXT 4 /* inputs per matrix-vector pass */

/* Rows [r0, r1) of Y[t] (t < tn <= MRW_MV_MAXT) from rows of W; single-threaded. */
void mrw_matvec_rows(const mrw_mat *W, int r0, int r1, const float *X, int ldx, float *Y, int ldy, int tn, int acc);

/* Packed GEMM, threaded inside. Returns 0, or -1 if no GEMM kernel handles this dtype / the scratch could
 * not be allocated (the caller then uses the matrix-vector kernel). */
int mrw_gemm(mrw_kctx *k, const mrw_mat *W, const float *X, int ldx, float *Y, int ldy, int T, int acc);
/* Largest T for which the matrix-vector kernel is used by default. */
int mrw_gemm_min_T(mrw_dtype dt);

#endif
