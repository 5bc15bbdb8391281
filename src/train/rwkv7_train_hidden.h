/* RWKV-7 training with the final hidden state as the output (for read-out heads such as the forecaster's),
 * built on the public interface of rwkv7_train.h only, without touching its implementation.
 *
 * The training model has no "hidden state out / d_hidden in" entry; it computes logits = ln_out(h)·headᵀ and
 * turns them into the cross-entropy gradient in its backward. Two facts of that interface give an exact path:
 *   1. With head = s·[I_C; 0] (V >= C rows, s = 2^-10), the logits' first C columns are s·ln_out(h), so
 *      ln_out(h) = logits / s exactly (one non-zero product per output, by a power of two). The small s keeps
 *      every softmax row of the logits nearly uniform, whatever the hidden state, which the next step needs.
 *   2. The backward computes d(ln_out h) = d_logits · head with the head as it is *at backward time*, and
 *      d_logits at the counted rows is known: (softmax(logits_r) - onehot(target_r)) / n. So with one counted
 *      row per sequence (its read-out row, target b for sequence b, n = B), and D [B, V] those rows, the head
 *      is set to W' = Dᵀ (D Dᵀ)⁻¹ G for the wanted gradient G [B, C] before the backward: then D W' = G, i.e.
 *      the backward starts from exactly d(ln_out h) = G (up to the fp32 rounding of its softmax). The targets
 *      b are distinct and the softmax rows nearly uniform (u ≈ 1/V), so D's rows are ≈ (u - e_b)/B and
 *      D Dᵀ ≈ (I - J/V)/B², whose condition number is about V/(V - B): V > B is required (the rows of D sum to
 *      zero, so B = V rows are always dependent).
 * The "head.weight" tensor is therefore a scratch tensor of this path: it holds s·[I; 0] after every call, its
 * gradient is zeroed, and it should not be trained (Adam leaves a tensor with zero gradient unchanged).
 *
 * Requirements: cfg.vocab >= C and cfg.vocab > B. Cost: the logits GEMM (T·B·V·C) and a copy of the logits; with
 * V = C (the forecaster's own models) that is small, with a released vocabulary (65536) it is the memory
 * the training model already keeps. */
#ifndef MRW_TRAIN_RWKV7_TRAIN_HIDDEN_H
#define MRW_TRAIN_RWKV7_TRAIN_HIDDEN_H

#include "train/rwkv7_train.h"

typedef struct {
    int max_B, max_T, V, C;
    float *logits; /* [max_B*max_T*V] */
    int32_t *targets;
    double *D, *K; /* [max_B*V], [max_B*max_B + max_B*C] */
    int last_B, last_T; /* the last forward's batch (0: no backward pending) */
} mrw_rwkv7_hidden_ws;

mrw_status mrw_rwkv7_hidden_ws_init(mrw_rwkv7_hidden_ws *ws, const mrw_rwkv7_train *m, int max_B, int max_T,
                                    mrw_error *err);
void mrw_rwkv7_hidden_ws_free(mrw_rwkv7_hidden_ws *ws);
/* Sets head = s·[I; 0]. Call once after loading or initialising the model (the forward does it too). */
void mrw_rwkv7_hidden_set_identity(mrw_rwkv7_train *m);

/* Forward over B sequences of T tokens (tokens, inject, inject_mask as in mrw_rwkv7_train_forward); hidden
 * [B*C] receives ln_out(h) at the last position of each sequence. Returns 0, or MRW_E_ARG on a bad size /
 * token (the model's forward returned NaN). */
mrw_status mrw_rwkv7_hidden_forward(mrw_rwkv7_train *m, mrw_rwkv7_hidden_ws *ws, const int32_t *tokens,
                                    const float *inject, const uint8_t *inject_mask, int B, int T, float *hidden,
                                    mrw_error *err);
/* Backward of the last forward from dhidden [B*C] = d loss / d hidden: parameter gradients += (unless
 * frozen; the head's gradient is zeroed), d_inject as in mrw_rwkv7_train_backward. */
mrw_status mrw_rwkv7_hidden_backward(mrw_rwkv7_train *m, mrw_rwkv7_hidden_ws *ws, const float *dhidden, int frozen,
                                     float *d_inject, mrw_error *err);

#endif
