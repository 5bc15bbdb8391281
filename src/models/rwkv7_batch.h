/* Batched decode: one token for each of B independent sequences in one pass, so every projection is one GEMM
 * over B rows instead of B matrix-vector products. Used by the server's scheduler. */
#ifndef MRW_MODELS_RWKV7_BATCH_H
#define MRW_MODELS_RWKV7_BATCH_H

#include "modrwkv.h"

/* states[b] reads tokens[b] (RNN mode, as mrw_eval_tokens with n = 1 on each state). logits (may be NULL)
 * receives B x n_vocab floats: row b is sequence b's next-token logits. The states must be distinct. Any B >= 1
 * (done in pieces of the context's max_chunk rows). Results equal the one-sequence path up to fp32 rounding when
 * the context is exact (or the weights are f32); otherwise the GEMMs round activations as prefill does. */
mrw_status mrw_eval_batch(mrw_context *ctx, mrw_state *const *states, const int32_t *tokens, int B, float *logits,
                          mrw_error *err);

#endif
