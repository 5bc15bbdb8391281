/* RWKV-7 decode on the GPU: one token for each of B concurrent sequences per step (B = 1 is plain decode), the
 * CPU's RNN mode (src/models/rwkv7_forward.c with T = 1, ../shared/reference/rwkv7.md "One token in RNN mode")
 * on one GPU. The big matrices (embedding, head, r/k/v/o, FFN key/value) are held in bf16; the LoRA matrices, the
 * per-channel vectors (norms, mixes, w0/a0/v0, k_k/k_a/r_k) and the state in fp32, as the CPU model holds them; all
 * arithmetic is fp32 (weights times fp32 activations, fp32 sums). Matrix-vector products are an own bf16 GEMV kernel (1-8
 * warps per output row, 16-byte weight loads, several products in one launch); the element-wise work of a layer
 * is three fused kernels, so one step is 8 launches per layer + 2 (7 at batch 1 when the LoRA up-projections fit
 * in the element-wise kernel's shared memory). The whole step is captured once per batch size in a CUDA graph and
 * replayed for every token (the kernel boundaries, not the bytes, limit a per-launch decoder).
 *
 * The state of sequence b is laid out exactly as the CPU's mrw_state (per layer [sx_att C][wkv H*N*N][sx_ffn C]),
 * so mrw_state_data() can be copied in and out. Plain C interface; built with `make CUDA=1`. See docs/CUDA.md,
 * section "Decode on the GPU". */
#ifndef MRW_KERNELS_CUDA_RWKV7_DECODE_GPU_H
#define MRW_KERNELS_CUDA_RWKV7_DECODE_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "modrwkv.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n_layer, n_embd, head_size, n_ffn, n_vocab; /* head_size must be 64; n_embd, n_ffn multiples of 8 */
    int lora_w, lora_a, lora_v, lora_g;             /* ranks, multiples of 8 */
} mrw_decode_gpu_shape;

/* The tensors of the model, by id: global ones (layer ignored), then per-layer ones. Matrices are [out][in]
 * row-major (Linear layout, as rwkv7.h's mrw_mat), given as fp32; the big ones (EMB, HEAD, WR..FFN_VALUE) are
 * rounded to bf16 (round to nearest even), the LoRA matrices kept in fp32. */
typedef enum {
    MRW_DG_EMB = 0, /* [V][C] matrix */
    MRW_DG_HEAD,    /* [V][C] matrix */
    MRW_DG_LN0_W, MRW_DG_LN0_B, MRW_DG_LNOUT_W, MRW_DG_LNOUT_B, /* [C] */
    MRW_DG_LN1_W, MRW_DG_LN1_B, MRW_DG_LN2_W, MRW_DG_LN2_B,
    MRW_DG_X_R, MRW_DG_X_W, MRW_DG_X_K, MRW_DG_X_V, MRW_DG_X_A, MRW_DG_X_G,
    MRW_DG_W0, MRW_DG_A0, MRW_DG_V0, /* V0 unused in layer 0 */
    MRW_DG_K_K, MRW_DG_K_A, MRW_DG_R_K, MRW_DG_LNX_W, MRW_DG_LNX_B, MRW_DG_FFN_X_K,
    MRW_DG_W1, MRW_DG_W2, MRW_DG_A1, MRW_DG_A2, MRW_DG_V1, MRW_DG_V2, MRW_DG_G1, MRW_DG_G2, /* LoRA matrices */
    MRW_DG_WR, MRW_DG_WK, MRW_DG_WV, MRW_DG_WO, MRW_DG_FFN_KEY, MRW_DG_FFN_VALUE,
    MRW_DG_COUNT
} mrw_dg_tensor;

typedef struct mrw_decode_gpu mrw_decode_gpu;

/* Allocates weights, states for max_B sequences (zero) and scratch on the current device. MRW_E_ARG for a bad
 * shape, MRW_E_NOMEM (with the size) when the GPU is out of memory, MRW_E_INTERNAL for other CUDA errors. */
mrw_status mrw_decode_gpu_new(const mrw_decode_gpu_shape *shape, int max_B, mrw_decode_gpu **out, mrw_error *err);
void mrw_decode_gpu_free(mrw_decode_gpu *g);

/* The expected element count of a tensor (0 for V0/V1/V2 of layer 0), for callers that fill them. */
size_t mrw_decode_gpu_tensor_size(const mrw_decode_gpu *g, mrw_dg_tensor t, int layer);
/* Uploads one tensor (n must equal mrw_decode_gpu_tensor_size; big matrices rounded to bf16). */
mrw_status mrw_decode_gpu_set(mrw_decode_gpu *g, mrw_dg_tensor t, int layer, const float *data, size_t n,
                              mrw_error *err);
/* Uploads elements [offset, offset + n) of a tensor (large matrices in pieces). */
mrw_status mrw_decode_gpu_set_part(mrw_decode_gpu *g, mrw_dg_tensor t, int layer, size_t offset, const float *data,
                                   size_t n, mrw_error *err);
/* Fills every tensor with deterministic random values of realistic magnitude on the GPU (benchmarks). */
mrw_status mrw_decode_gpu_init_random(mrw_decode_gpu *g, uint64_t seed, mrw_error *err);

/* The state of sequence b (0 <= b < max_B): n must be mrw_decode_gpu_state_floats. */
size_t mrw_decode_gpu_state_floats(const mrw_decode_gpu *g);
mrw_status mrw_decode_gpu_set_state(mrw_decode_gpu *g, int b, const float *data, size_t n, mrw_error *err);
mrw_status mrw_decode_gpu_get_state(mrw_decode_gpu *g, int b, float *data, size_t n, mrw_error *err);
mrw_status mrw_decode_gpu_reset_state(mrw_decode_gpu *g, int b, mrw_error *err);

/* use_graph = 0: launch every kernel of a step one by one (for comparison); default 1. */
void mrw_decode_gpu_set_graph(mrw_decode_gpu *g, int use_graph);

/* use_pdl = 0: launch without programmatic dependent launch (each kernel starts only after the previous one
 * ended; for comparison); default 1. */
void mrw_decode_gpu_set_pdl(mrw_decode_gpu *g, int use_pdl);

/* One decode step: sequence b (0 <= b < B <= max_B) reads tokens[b] (in [0, n_vocab)) and advances its state;
 * logits (host, may be NULL) receives B x n_vocab fp32 rows. Synchronous. */
mrw_status mrw_decode_gpu_step(mrw_decode_gpu *g, const int32_t *tokens, int B, float *logits, mrw_error *err);

/* The same step with sequence b reading the input row rows[b] (HOST fp32 [B][n_embd], e.g. a ModRWKV feature row
 * from the adapter) in place of a token's embedding: ln0 and everything after it as for a token (the CPU's
 * mrw_eval_embeddings with n = 1). The prompt of `chat --device cuda` goes through _step (text tokens) and this
 * (feature rows), one position per call. Synchronous; its own CUDA graph per B (captured on first use). */
mrw_status mrw_decode_gpu_step_embed(mrw_decode_gpu *g, const float *rows, int B, float *logits, mrw_error *err);

/* Benchmarks: enqueue n_steps steps on the decoder's stream (the tokens of the last step call, or zeros) without
 * copying logits back or synchronising; mrw_decode_gpu_sync waits. */
mrw_status mrw_decode_gpu_enqueue(mrw_decode_gpu *g, int B, int n_steps, mrw_error *err);
mrw_status mrw_decode_gpu_sync(mrw_decode_gpu *g, mrw_error *err);
void *mrw_decode_gpu_stream(mrw_decode_gpu *g); /* the cudaStream_t */

/* Bytes the step reads from weights for B sequences (every matrix but the embedding, of which B rows, plus the
 * vectors) and reads + writes of state; for the bandwidth figure of the benchmark. */
double mrw_decode_gpu_bytes_per_step(const mrw_decode_gpu *g, int B);

/* From a loaded CPU model (src/models/rwkv7.h; any weight dtype, big matrices dequantized and rounded to bf16): new + set
 * for every tensor. In the library only when built with CUDA (rwkv7_decode_gpu_model.c). */
struct mrw_model;
mrw_status mrw_decode_gpu_from_model(const struct mrw_model *m, int max_B, mrw_decode_gpu **out, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
