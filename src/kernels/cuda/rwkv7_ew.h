/* RWKV-7's element-wise chains for training on the GPU, forward and backward (../shared/reference/rwkv7.md
 * steps 1-2, 4-9 and the channel mix's relu^2; the CPU trainer src/train/rwkv7_train.c is the reference).
 * Plain C interface; built with `make CUDA=1` (rwkv7_ew.cu). See docs/CUDA.md.
 *
 * Activations are [B*T][C] row-major (row b*T + t), all of the call's dtype `dt` (fp32 or bf16); parameters,
 * their gradients (accumulated, +=; NULL = skip) and statistics are fp32, arithmetic is fp32. Heads are 64
 * channels (C = 64 H). Input gradients are written (=) unless `accumulate`. All pointers are device pointers;
 * asynchronous on `stream`. */
#ifndef MRW_KERNELS_CUDA_RWKV7_EW_H
#define MRW_KERNELS_CUDA_RWKV7_EW_H

#include <stddef.h>

#include "kernels/cuda/wkv7.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MRW_CUDA_MIX_MAX 6

/* Token shift + nq mixes (1..6; 6 in the time mix: r w k v a g, 1 in the channel mix):
 *     out_q[b,t] = x[b,t] + (x[b,t-1] - x[b,t]) * mix_q       (x[b,-1] = 0) */
mrw_status mrw_cuda_token_mix_fwd(mrw_cuda_dtype dt, int B, int T, int C, int nq, const void *x,
                                  const float *const mix[], void *const out[], void *stream, mrw_error *err);
/* LayerNorm (norm.h's mrw_cuda_layernorm_fwd over the B*T rows: y, mean, rstd kept) fused with the token shift +
 * nq mixes of its output (mrw_cuda_token_mix_fwd on y), one pass instead of two: x is read (each row twice, the
 * second mostly from L2) and y, mean, rstd and the nq outputs are written. The mixes take y as stored (rounded to
 * dt), so the outputs are those of the two calls. Even C <= 1024, nq 1 or 6 and 8-byte aligned tensors take the
 * fused kernel; anything else runs the two calls. */
mrw_status mrw_cuda_ln_mix_fwd(mrw_cuda_dtype dt, int B, int T, int C, int nq, const void *x, const float *w,
                               const float *b, float eps, void *y, float *mean, float *rstd, const float *const mix[],
                               void *const out[], void *stream, mrw_error *err);
size_t mrw_cuda_token_mix_bwd_scratch(int C); /* floats */
/* dx (=, or += if accumulate) from dout_q; dmix_q += sum over rows of dout_q (x[t-1] - x[t]). */
mrw_status mrw_cuda_token_mix_bwd(mrw_cuda_dtype dt, int B, int T, int C, int nq, const void *x,
                                  const float *const mix[], const void *const dout[], int accumulate, void *dx,
                                  float *const dmix[], float *scratch, void *stream, mrw_error *err);

/* Steps 4, 5, 7, 8, 9 ("key prep"): from the LoRA outputs before their activations and the projections,
 *     wlog  = -softplus(-(w0 + pw)) - 0.5          the log-space decay wkv7.h takes (decay = exp(-exp(wlog)))
 *     alpha = sigmoid(a0 + pa)
 *     v     = vraw + (vfirst - vraw) * sigmoid(v0 + pv)    (layers > 0; layer 0: pv = vfirst = NULL, v = vraw)
 *     kk    = kraw * k_k;  khat = kk / max(||kk||_head, 1e-12)
 *     k     = kraw * (1 + (alpha - 1) * k_a)
 *     a     = -khat,  b = khat * alpha                  (the WKV's a and b)
 * pv, vfirst and v0 are NULL together (layer 0). */
typedef struct {
    const void *pw, *pa, *pv, *kraw, *vraw, *vfirst; /* activations, dt */
    const float *w0, *a0, *v0, *k_k, *k_a;           /* parameters [C] */
} mrw_cuda_keyprep_in;

mrw_status mrw_cuda_keyprep_fwd(mrw_cuda_dtype dt, int rows, int H, const mrw_cuda_keyprep_in *in, void *wlog,
                                void *k, void *v, void *a, void *b, void *stream, mrw_error *err);

/* Gradients flowing in: dwlog, dk, dv, da, db from the WKV backward; dk_bonus, dv_bonus, dr_bonus from the
 * GroupNorm/bonus backward (norm.h; NULL = none). dr (may be NULL) += dr_bonus in the same pass.
 * Out (=): dpw, dpa, dpv (layers > 0), dkraw, dvraw. dvfirst (fp32 [rows][C], the gradient of layer 0's v that
 * later layers accumulate): layers > 0 add to it; in layer 0 (pv NULL) it is added into dvraw (NULL = none).
 * Parameter gradients dw0, da0, dv0, dk_k, dk_a +=. */
typedef struct {
    const void *dwlog, *dk, *dv, *da, *db, *dk_bonus, *dv_bonus, *dr_bonus;
    void *dr;
    void *dpw, *dpa, *dpv, *dkraw, *dvraw;
    float *dvfirst;
    float *dw0, *da0, *dv0, *dk_k, *dk_a;
    /* The bonus's dr and dk from its scalar (norm.h's mrw_cuda_gn_bonus_gate_bwd_dbeta) instead of dk_bonus and
     * dr_bonus (NULL = not used; then r and rk are not read): dbeta [rows][H] fp32, the WKV's r (dt) and the
     * bonus's r_k [C]; dk += dbeta r rk and dr (required, in place) += dbeta k rk with k the WKV's k, recomputed
     * here in fp32 from kraw and alpha. */
    const float *dbeta;
    const void *r;
    const float *rk;
} mrw_cuda_keyprep_grad;

size_t mrw_cuda_keyprep_bwd_scratch(int rows, int H); /* floats */
/* (every tensor 8-byte aligned: MRW_E_ARG otherwise; the other calls also run on unaligned tensors, slower) */
mrw_status mrw_cuda_keyprep_bwd(mrw_cuda_dtype dt, int rows, int H, const mrw_cuda_keyprep_in *in,
                                const mrw_cuda_keyprep_grad *g, float *scratch, void *stream, mrw_error *err);

/* Channel-mix activation: act = relu(h)^2; backward d *= 2 relu(h) in place (d: dact in, dh out). */
mrw_status mrw_cuda_relu2_fwd(mrw_cuda_dtype dt, size_t n, const void *h, void *act, void *stream, mrw_error *err);
mrw_status mrw_cuda_relu2_bwd(mrw_cuda_dtype dt, size_t n, const void *h, void *d, void *stream, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
