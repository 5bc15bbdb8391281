/* Building blocks of the modality encoders (ViT, Whisper, WavLM) and the adapters, all f32 and in the
 * sequence-major layout used everywhere: a sequence of T vectors of C channels is [T, C], row t contiguous.
 * Weight matrices are mrw_mat (Linear layout [out, in], any dtype); the GEMMs are mrw_matmul's. */
#ifndef MRW_KERNELS_CPU_NN_H
#define MRW_KERNELS_CPU_NN_H

#include <stddef.h>

#include "kernels/cpu/matmul.h"

/* Y[T, out] = X[T, in] · Wᵀ + bias (bias may be NULL). X has row stride ldx, Y row stride ldy. */
void mrw_linear(mrw_kctx *k, const mrw_mat *W, const float *bias, const float *X, int ldx, int T, float *Y, int ldy);
void mrw_add_bias(float *Y, int ldy, const float *bias, int T, int C, int nt);

/* Activations, in place over n floats. */
void mrw_gelu_erf(float *x, size_t n, int nt);   /* x·Φ(x): transformers' "gelu" */
void mrw_gelu_tanh(float *x, size_t n, int nt);  /* tanh approximation: "gelu_pytorch_tanh", "gelu_new" */
void mrw_quick_gelu(float *x, size_t n, int nt); /* x·σ(1.702x): CLIP's "quick_gelu" */
void mrw_relu(float *x, size_t n, int nt);

/* Softmax of each row of [rows, cols] (row stride ld) in place, max-subtracted, summed in double. */
void mrw_softmax_rows(float *x, int rows, int cols, int ld, int nt);

/* Multi-head attention over one sequence. q, k, v and out are [T, H*D] with row strides ldq, ldk, ldv, ldo
 * (head h is columns h*D .. h*D+D-1). For each head: A = softmax(q kᵀ · scale + bias_h), out = A v, where
 * bias (NULL for none) is [H][T][T]. `scratch` needs mrw_attention_scratch_floats(T, D) floats. */
size_t mrw_attention_scratch_floats(int T, int D);
void mrw_attention(mrw_kctx *k, const float *q, int ldq, const float *kk, int ldk, const float *v, int ldv, int T,
                   int H, int D, float scale, const float *bias, float *out, int ldo, float *scratch);

/* 1-D convolution over time (PyTorch Conv1d semantics, zero padding): x [Tin, Cin] -> y [Tout, Cout] with
 * Tout = mrw_conv1d_out_len(...), weight [Cout, Cin/groups, K] f32 (PyTorch layout), bias [Cout] or NULL.
 * Computed as im2col + GEMM per group; `scratch` needs mrw_conv1d_scratch_floats(...) floats. Returns Tout,
 * or -1 if the shapes are inconsistent (Tout < 1, channels not divisible by groups). */
int mrw_conv1d_out_len(int Tin, int K, int stride, int pad);
size_t mrw_conv1d_scratch_floats(int Tin, int Cin, int K, int stride, int pad, int groups);
int mrw_conv1d(mrw_kctx *k, const float *x, int Tin, int Cin, const float *w, const float *bias, int Cout, int K,
               int stride, int pad, int groups, float *y, float *scratch);

#endif
