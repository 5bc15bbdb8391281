/* fp32 GEMM with either operand stored transposed, for the backward passes of training:
 *
 *   Y[M, N] (+)= op(X)[M, K] · op(W)[N, K]ᵀ
 *   op(X)[m][k] = tx ? X[k·ldx + m] : X[m·ldx + k]      op(W)[n][k] = tw ? W[k·ldw + n] : W[n·ldw + k]
 *
 * The packing routines read whichever layout they are given, so a backward's dX = dY·W (tw = 1) and
 * dW = dYᵀ·X (tx = tw = 1) need no transposed copy in scratch. fp32 FMA in a 12x32 AVX-512 micro-kernel,
 * K in blocks of 256 each summed from zero and then added to Y (as kernels/cpu/gemm.c does); without AVX-512
 * the same blocking runs a 4x16 micro-kernel in plain C that the compiler vectorises. Each thread owns a fixed
 * range of output rows, so results do not depend on the thread count. Scratch comes from the kctx slots (MRW_KS_SHARED and 1 + thread), so
 * the call must not be interleaved with another kernel that uses the same kctx. */
#ifndef MRW_KERNELS_CPU_GEMM_TRAIN_H
#define MRW_KERNELS_CPU_GEMM_TRAIN_H

#include "kernels/cpu/kctx.h"

void mrw_sgemm_t(mrw_kctx *k, int M, int N, int K, const float *X, int ldx, int tx, const float *W, int ldw, int tw,
                 float *Y, int ldy, int acc);
/* The plain reference (double accumulation, one thread): what mrw_sgemm_t is tested against. */
void mrw_sgemm_t_ref(int M, int N, int K, const float *X, int ldx, int tx, const float *W, int ldw, int tw, float *Y,
                     int ldy, int acc);

#endif
