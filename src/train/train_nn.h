/* fp32 building blocks of the trainable adapters and encoders (adapter_train.c, vit_train.c, whisper_train.c):
 * one forward and one backward function per layer, sequence-major rows ([N, C], row n contiguous), weights in
 * the PyTorch layouts (Linear [out, in], Conv1d [out, in, k]). Backward functions accumulate (+=) parameter
 * gradients, as the trainer expects; input gradients are written (=) unless the name says _acc. The GEMMs
 * go through mrw_matmul (fp32 FMA GEMM for f32 weights), transposing operands into caller scratch. */
#ifndef MRW_TRAIN_TRAIN_NN_H
#define MRW_TRAIN_TRAIN_NN_H

#include <stddef.h>

#include "kernels/cpu/kctx.h"

/* Y[N, out] = X[N, in] · Wᵀ + b (b may be NULL). */
void mrw_tnn_linear(mrw_kctx *k, const float *W, const float *b, const float *X, int N, int in, int out, float *Y);
/* Floats of scratch mrw_tnn_linear_bwd needs. */
size_t mrw_tnn_linear_bwd_scratch(int N, int in, int out);
/* dW += dYᵀ·X, db += Σ_n dY (db may be NULL), dX = dY·W (or += if dx_acc; dX may be NULL).
 * dW may be NULL (frozen weights). */
void mrw_tnn_linear_bwd(mrw_kctx *k, const float *W, const float *X, const float *dY, int N, int in, int out,
                        float *dW, float *db, float *dX, int dx_acc, float *scratch);

/* LayerNorm over C per row (biased variance); keeps mean and rstd per row for the backward. y may alias x
 * only if the backward does not need x (it does: keep x). */
void mrw_tnn_layernorm(const float *x, float *y, float *mean, float *rstd, int N, int C, const float *w,
                       const float *b, float eps, int nt);
/* dx += ..., dw += ..., db += ... (dw/db may be NULL). */
void mrw_tnn_layernorm_bwd(const float *x, const float *mean, const float *rstd, const float *w, const float *dy,
                           int N, int C, float *dx, float *dw, float *db, int nt);

/* Activations: forward y = f(x) (y may alias x); backward dx = dy · f'(x) from the pre-activation x
 * (dx may alias dy). */
typedef enum { MRW_TACT_RELU = 1, MRW_TACT_GELU_ERF, MRW_TACT_GELU_TANH, MRW_TACT_QUICK_GELU } mrw_tnn_act_kind;
void mrw_tnn_act(mrw_tnn_act_kind a, const float *x, float *y, size_t n, int nt);
void mrw_tnn_act_bwd(mrw_tnn_act_kind a, const float *x, const float *dy, float *dx, size_t n, int nt);

/* Conv1d (zero padding p, stride s) as im2col + GEMM: col[Tout, Cin*K] with col[t, ci*K + j] =
 * x[t*s - p + j, ci] (the weight's [Cout, Cin, K] order); col2im adds dcol back into dx. */
void mrw_tnn_im2col(const float *x, int Tin, int Cin, int K, int s, int p, int Tout, float *col, int nt);
void mrw_tnn_col2im_add(const float *dcol, int Tin, int Cin, int K, int s, int p, int Tout, float *dx);

/* Multi-head self-attention core over one sequence: q, k, v, o are [T, H*D] with row stride ld (head h is
 * columns h*D..); P [H, T, T] receives the softmax probabilities (kept for the backward).
 * o = softmax(q kᵀ · scale) v per head. */
void mrw_tnn_attention(const float *q, const float *k, const float *v, int ld, int T, int H, int D, float scale,
                       float *P, float *o, int ldo, int nt);
/* From dO: dq, dk, dv (=, stride ld) given P of the forward. scratch needs T floats per thread (nt * T). */
void mrw_tnn_attention_bwd(const float *q, const float *k, const float *v, int ld, int T, int H, int D, float scale,
                           const float *P, const float *dO, int ldo, float *dq, float *dk, float *dv, float *scratch,
                           int nt);


/* ------------------------------------------------------------------------------ pre-LN transformer block
 * The encoder layer of SigLIP, CLIP and Whisper over B sequences of T rows (N = B·T):
 *   xn1 = LN1(x); q,k,v = xn1·Wᵀ + b; att = MHA(q, k, v) (scale 1/√D); xmid = x + att·Woᵀ + bo
 *   xn2 = LN2(xmid); f = xn2·W1ᵀ + b1; fa = act(f); out = xmid + fa·W2ᵀ + b2
 * Weights and gradients are passed as arrays indexed by the enum below; the key bias (Whisper has none) and
 * any gradient may be NULL. */
enum {
    MRW_TB_LN1W, MRW_TB_LN1B, MRW_TB_QW, MRW_TB_QB, MRW_TB_KW, MRW_TB_KB, MRW_TB_VW, MRW_TB_VB, MRW_TB_OW,
    MRW_TB_OB, MRW_TB_LN2W, MRW_TB_LN2B, MRW_TB_F1W, MRW_TB_F1B, MRW_TB_F2W, MRW_TB_F2B, MRW_TB_N
};

typedef struct {
    int B, T, C, H, I; /* sequences, rows each, width, heads, MLP width */
    float eps;
    mrw_tnn_act_kind act;
} mrw_tnn_block_dims;

/* What the backward needs from the forward (x is the block's input, kept by the caller's layout). */
typedef struct {
    float *x, *xn1, *m1, *r1, *q, *k, *v, *P, *att, *xmid, *xn2, *m2, *r2, *f, *fa;
} mrw_tnn_block_acts;

/* Backward work buffers, shared by all blocks of a model. */
typedef struct {
    float *dxn, *dq, *dk, *dv, *datt, *dff, *scratch, *ascratch;
} mrw_tnn_block_bufs;

/* Floats of one block's activations (x included); carves them from *p (advanced). */
size_t mrw_tnn_block_act_floats(const mrw_tnn_block_dims *d);
void mrw_tnn_block_acts_take(const mrw_tnn_block_dims *d, float **p, mrw_tnn_block_acts *a);
/* Floats of the shared backward buffers for nt threads; carves them from *p. */
size_t mrw_tnn_block_buf_floats(const mrw_tnn_block_dims *d, int nt);
void mrw_tnn_block_bufs_take(const mrw_tnn_block_dims *d, int nt, float **p, mrw_tnn_block_bufs *b);

/* a->x holds the input; out [N, C] (may be the next block's x). */
void mrw_tnn_block_forward(mrw_kctx *k, const mrw_tnn_block_dims *d, float *const w[MRW_TB_N],
                           mrw_tnn_block_acts *a, float *out);
/* dres: d(out) on entry, d(x) on return; g[...] += parameter gradients. */
void mrw_tnn_block_backward(mrw_kctx *k, const mrw_tnn_block_dims *d, float *const w[MRW_TB_N],
                            float *const g[MRW_TB_N], const mrw_tnn_block_acts *a, float *dres,
                            const mrw_tnn_block_bufs *b);

#endif
