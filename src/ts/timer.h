/* Timer time-series encoder in its Hugging Face layout (thuml/timer-base-84m, remote-code model
 * "TimerForPrediction", Timer-XL architecture), forward in fp32. Frozen in ModRWKV: its last hidden states are
 * the features.
 *
 * Architecture (from the model's modeling_timer.py):
 *   patches:  the series is cut into N = T / P non-overlapping patches of P = input_token_len points (96);
 *             model.embed_layer.emb.weight [D, P] (no bias) embeds each patch.
 *   layer i (post-norm):  h = norm1(h + o_proj(attn(h)));  h = norm2(h + down(silu(gate(h)) * up(h)))
 *             attention: q/k/v_proj [D, D] with bias, o_proj without; H heads of D/H; rotary position
 *             embedding on q and k (rotate-half form, base 10000, positions 0..N-1 = patch index); causal
 *             softmax(q kᵀ / sqrt(D/H)) v. LayerNorms eps 1e-5.
 *   final:    model.norm (LayerNorm) -> last_hidden_state [N, D]
 *   head:     lm_heads.0.weight [96, D]: the next 96 points from the last patch's hidden state.
 * timer-base-84m: D = 1024, 8 layers, 8 heads, MLP 2048, P = 96, output_token_lens [96] (84M parameters).
 *
 * Tensor names: model.embed_layer.emb.weight, model.layers.{i}.self_attn.{q,k,v}_proj.{weight,bias},
 * model.layers.{i}.self_attn.o_proj.weight, model.layers.{i}.ffn_layer.{gate,up,down}_proj.weight,
 * model.layers.{i}.norm{1,2}.{weight,bias}, model.norm.{weight,bias}, lm_heads.{j}.weight.
 * Shapes come from the tensors; the head count from config.json ("num_attention_heads"), which must agree.
 * Weights stored as f32, f16 or bf16 are widened to f32 once at load.
 *
 * A series whose length is not a multiple of P: the oldest T mod P points are dropped, so the features cover
 * the most recent whole patches (the HF code's unfold would drop the newest ones instead).
 *
 * Pretrained weights: thuml/timer-base-84m cannot be downloaded on these machines (no network access to
 * Hugging Face); users who have its model.safetensors + config.json load them with mrw_timer_open. */
#ifndef MRW_TS_TIMER_H
#define MRW_TS_TIMER_H

#include <stdint.h>

#include "modrwkv.h"

typedef struct {
    int hidden, layers, heads, intermediate, patch, out_len; /* out_len: the first lm_head's rows (0: none) */
    double rope_base, eps;
} mrw_timer_config;

typedef struct mrw_timer mrw_timer;

/* path: a directory with config.json + model.safetensors, or a .safetensors file (then config.json next to
 * it is read if present; without one the head count must be given as heads > 0). heads <= 0: from config. */
mrw_status mrw_timer_open(const char *path, int heads, mrw_timer **out, mrw_error *err);
void mrw_timer_free(mrw_timer *t);
const mrw_timer_config *mrw_timer_get_config(const mrw_timer *t);

/* Number of patches for a series of T points (T / P); 0 if T < P. */
int mrw_timer_patches(const mrw_timer *t, int64_t T);
/* Features of one series x[0..T): out [N, D] (N = mrw_timer_patches) = last_hidden_state. pred (may be NULL)
 * receives lm_heads.0 applied to the last patch: out_len points, in the units of x (no RevIN here). */
mrw_status mrw_timer_forward(const mrw_timer *t, int n_threads, const float *x, int64_t T, float *out, float *pred,
                             mrw_error *err);

#endif
