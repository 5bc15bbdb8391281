/* RWKV-7 for training: fp32 parameters in one mrw_param_set (names "llm.<official key>", PyTorch shapes),
 * a sequence-mode forward over a batch that keeps what the backward needs, and an explicit backward per layer
 * (llm.c style). The math is ../shared/reference/rwkv7.md; the WKV7 backward recomputes the state from
 * checkpoints taken every MRW_WKV_CKPT steps.
 *
 * Loss convention (the trainer relies on it): the forward returns the mean cross-entropy over the positions
 * whose target is not MRW_IGNORE (PyTorch's CrossEntropyLoss(ignore_index=-100), reduction "mean"), and
 * mrw_rwkv7_train_backward(m, scale) accumulates scale * d(that mean) into the gradients (+=, never =), so
 * gradient accumulation over micro-batches is the caller's choice of scale. */
#ifndef MRW_TRAIN_RWKV7_TRAIN_H
#define MRW_TRAIN_RWKV7_TRAIN_H

#include "train/params.h"

#define MRW_IGNORE (-100)

typedef struct {
    int n_layer, n_embd, head_size, vocab, ffn; /* head_size 64 in every release */
    int d_w, d_a, d_v, d_g;                     /* LoRA ranks */
} mrw_rwkv7_train_config;

typedef struct mrw_rwkv7_train mrw_rwkv7_train;

/* Allocates parameters (zero), gradients and activations for batches up to max_B x max_T. */
mrw_status mrw_rwkv7_train_new(const mrw_rwkv7_train_config *cfg, int max_B, int max_T, int n_threads,
                               mrw_rwkv7_train **out, mrw_error *err);
void mrw_rwkv7_train_free(mrw_rwkv7_train *m);
mrw_param_set *mrw_rwkv7_train_params(mrw_rwkv7_train *m);
const mrw_rwkv7_train_config *mrw_rwkv7_train_cfg(const mrw_rwkv7_train *m);

/* The reference trainer's initialisation rules (BlinkDL RWKV-LM, RWKV-v7 train code), from a seed. */
void mrw_rwkv7_train_init(mrw_rwkv7_train *m, uint64_t seed);
/* Copies the weights of a loaded inference model (any file format / dtype; converted to fp32). Shapes must
 * match the config (MRW_E_SHAPE naming the tensor otherwise). Layer 0's v0/v1/v2 stay as in init. */
mrw_status mrw_rwkv7_train_from_model(mrw_rwkv7_train *m, const mrw_model *src, mrw_error *err);
/* The config of a loaded inference model. */
void mrw_rwkv7_train_config_of(const mrw_model *src, mrw_rwkv7_train_config *cfg);

/* tokens [B*T]; inject (NULL, or [B*T*C]) with inject_mask ([B*T], 1 = use inject's row instead of
 * emb[token]; the row goes through ln0 like an embedding, as at inference); targets [B*T] (MRW_IGNORE =
 * no loss). Returns the mean loss (0 if no target counts). logits_out (NULL or [B*T*V]) receives the logits. */
float mrw_rwkv7_train_forward(mrw_rwkv7_train *m, const int32_t *tokens, const float *inject,
                              const uint8_t *inject_mask, const int32_t *targets, int B, int T, float *logits_out);
/* Number of positions counted by the last forward. */
int64_t mrw_rwkv7_train_n_targets(const mrw_rwkv7_train *m);
/* Invalid input (B or T beyond the allocation, a token outside [0, V) at a row that is not injected, a target
 * that is neither MRW_IGNORE nor in [0, V)) returns NaN and leaves nothing for the backward.
 * Memory: the forward keeps ~(17 + F/C)·C floats per token and layer plus the logits (V floats per token);
 * the sizes are in the comment at the top of rwkv7_train.c. */
/* Backward of the last forward: grads += scale * dloss/dparam; d_inject (NULL or [B*T*C]) receives
 * scale * dloss/d(inject row) at masked positions (0 elsewhere). `frozen` skips parameter gradients
 * (stage 1: only d_inject is needed, but it still flows through every layer). */
void mrw_rwkv7_train_backward(mrw_rwkv7_train *m, float scale, int frozen, float *d_inject);
/* (At most one backward per forward: it turns the stored logits into their gradient; a second call does
 * nothing. With no counted target, or frozen without d_inject, it only zeroes d_inject.) */

/* ---- the final hidden states as the output (read-out heads such as the forecaster's) ----
 * mrw_rwkv7_train_new_ex with MRW_RWKV7_TRAIN_NO_LOGITS allocates no logits (BT·V floats): such a model
 * only runs the hidden-state entry (mrw_rwkv7_train_forward returns NaN). "llm.head.weight" stays in the
 * parameter set (checkpoints keep their layout) but the hidden-state path neither reads nor trains it. */
#define MRW_RWKV7_TRAIN_NO_LOGITS 1u
mrw_status mrw_rwkv7_train_new_ex(const mrw_rwkv7_train_config *cfg, int max_B, int max_T, int n_threads,
                                  unsigned flags, mrw_rwkv7_train **out, mrw_error *err);
/* The forward up to ln_out: hidden (NULL or [B*T*C]) receives ln_out(h) of every position (row b*T + t);
 * tokens / inject / inject_mask as in mrw_rwkv7_train_forward. Bad sizes or tokens: MRW_E_ARG. */
mrw_status mrw_rwkv7_train_forward_hidden(mrw_rwkv7_train *m, const int32_t *tokens, const float *inject,
                                          const uint8_t *inject_mask, int B, int T, float *hidden, mrw_error *err);
/* The last forward's ln_out rows [B*T, C] (valid until the next forward). */
const float *mrw_rwkv7_train_last_hidden(const mrw_rwkv7_train *m);
/* Backward of the last hidden-state forward from d_hidden [B*T*C] = d loss / d hidden (already scaled):
 * parameter gradients += (unless frozen; head.weight gets none), d_inject (NULL or [B*T*C]) = d loss / d inject
 * row at injected positions, 0 elsewhere. One backward per forward (a second one is an error). */
mrw_status mrw_rwkv7_train_backward_hidden(mrw_rwkv7_train *m, const float *d_hidden, int frozen, float *d_inject,
                                           mrw_error *err);

/* ---- internals shared by the training files (and their tests) ---- */

#define MRW_WKV_CKPT 16 /* the WKV state is saved every MRW_WKV_CKPT steps of the forward */

/* WKV7 over B sequences of T steps from a zero state, inputs [B*T, H*N] rows (row b*T + t): per head
 * S <- S diag(w) + (S a) b^T + v k^T, y = S r. Saves S before steps 0, 16, 32, ... into ckpt
 * [B][H][ceil(T/16)][N][N]. */
void mrw_wkv7_train_fwd(int B, int T, int H, int N, const float *r, const float *w, const float *k, const float *v,
                        const float *a, const float *b, float *y, float *ckpt, int n_threads);
/* Its exact backward (recomputes the states of each 16-step chunk from its checkpoint): writes (=) dr, dw, dk,
 * dv, da, db from dy. scratch: n_threads * mrw_wkv7_train_scratch(N) floats. */
size_t mrw_wkv7_train_scratch(int N);
void mrw_wkv7_train_bwd(int B, int T, int H, int N, const float *r, const float *w, const float *k,
                        const float *v, const float *a, const float *b, const float *ckpt, const float *dy,
                        float *dr, float *dw, float *dk, float *dv, float *da, float *db, float *scratch,
                        int n_threads);

#endif
