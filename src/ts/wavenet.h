/* WaveNet time-series encoder (ModRWKV's "trained from scratch" encoder: causal dilated convolutions,
 * point-wise embedding), forward and backward in fp32, parameters in an mrw_param_set (group
 * MRW_PG_ENCODER, names "encoder.model.*", PyTorch Conv1d shapes).
 *
 * Input: B univariate series of T steps (already normalised per series), x [B, T]. Output: one feature
 * vector per step, out [B, T, E] (sequence-major rows; step t sees only x[0..t]).
 *
 *   h_0   = input_conv(x)                                  Conv1d(1 -> C, kernel 1)
 *   for layer i = 0 .. n_layers-1, dilation d_i = 2^(i mod cycle):
 *     a    = dilated_conv(h_i)                             Conv1d(C -> 2C, kernel 2, dilation d_i), causal
 *                                                          (left zero padding d_i): a[t] = W0 h[t - d] + W1 h[t] + b
 *     z    = tanh(a[:C]) * sigmoid(a[C:])                  gated activation (filter, gate)
 *     h_i+1 = h_i + res_conv(z)                             Conv1d(C -> C, kernel 1)
 *     skip += skip_conv(z)                                 Conv1d(C -> S, kernel 1)
 *   out   = out_conv(relu(skip))                           Conv1d(S -> E, kernel 1)
 *
 * Receptive field = 1 + sum of the dilations. Default (mrw_wavenet_config_default, for lookback 720):
 *   C = 64 residual channels, S = 64 skip channels, E = 128 output features, cycle 10, 10 layers with
 *   dilations 1, 2, 4, ..., 512: receptive field 1024 >= 720. Parameters: 128 (input) + 10·(16384 + 128 + 4096
 *   + 64 + 4096 + 64) + 8192 + 128 (output) = 256,768 (about 1 MB fp32).
 *
 * Tensor names (shapes):
 *   encoder.model.input_conv.weight [C, 1, 1], .bias [C]
 *   encoder.model.layers.{i}.dilated_conv.weight [2C, C, 2], .bias [2C]
 *   encoder.model.layers.{i}.res_conv.weight [C, C, 1], .bias [C]
 *   encoder.model.layers.{i}.skip_conv.weight [S, C, 1], .bias [S]
 *   encoder.model.out_conv.weight [E, S, 1], .bias [E]
 * The last layer's res_conv feeds nothing (as in WaveNet); it is kept for a uniform layout and gets zero
 * gradient. */
#ifndef MRW_TS_WAVENET_H
#define MRW_TS_WAVENET_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/kctx.h"
#include "modrwkv.h"
#include "train/params.h"

#define MRW_WAVENET_MAX_LAYERS 32

typedef struct {
    int n_layers, res_ch, skip_ch, out_dim;
    int cycle; /* dilations 1, 2, ..., 2^(cycle-1), then again from 1 */
} mrw_wavenet_config;

/* The default above, with enough layers (cycle = n_layers) that the receptive field covers `lookback`. */
void mrw_wavenet_config_default(mrw_wavenet_config *c, int lookback);
int mrw_wavenet_dilation(const mrw_wavenet_config *c, int layer);
int64_t mrw_wavenet_receptive_field(const mrw_wavenet_config *c);
mrw_status mrw_wavenet_config_check(const mrw_wavenet_config *c, mrw_error *err);

typedef struct {
    mrw_wavenet_config cfg;
    mrw_param_set *ps;
    int in_w, in_b, out_w, out_b; /* parameter indices */
    int dil_w[MRW_WAVENET_MAX_LAYERS], dil_b[MRW_WAVENET_MAX_LAYERS], res_w[MRW_WAVENET_MAX_LAYERS],
        res_b[MRW_WAVENET_MAX_LAYERS], skip_w[MRW_WAVENET_MAX_LAYERS], skip_b[MRW_WAVENET_MAX_LAYERS];
} mrw_wavenet;

/* Adds the encoder's tensors to ps (layout phase, before mrw_param_set_alloc). */
mrw_status mrw_wavenet_add_params(mrw_wavenet *wn, const mrw_wavenet_config *cfg, mrw_param_set *ps, mrw_error *err);
/* Random init (after alloc): conv weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)) like PyTorch, biases the same. */
void mrw_wavenet_init_random(mrw_wavenet *wn, uint64_t seed);
/* Copies every encoder tensor from a tensor file by name (f32, exact shapes); a missing tensor or a wrong shape
 * is an error naming it. */
struct mrw_tfile;
mrw_status mrw_wavenet_load(mrw_wavenet *wn, const struct mrw_tfile *f, mrw_error *err);

/* Activations of one forward over B x T, kept for the backward. */
typedef struct {
    int B, T;
    float *mem;
    float *x;         /* [N] input copy */
    float *h;         /* [n_layers + 1][N, C] residual stream (h[0] = input_conv output) */
    float *a;         /* [n_layers][N, 2C] dilated conv outputs (pre-activation) */
    float *z;         /* [n_layers][N, C] gated */
    float *skip;      /* [N, S] skip sum (before relu) */
    float *rskip;     /* [N, S] relu(skip) */
    /* backward work */
    float *col, *dcol, *dh, *dz, *da, *dskip, *scratch;
} mrw_wavenet_acts;

mrw_status mrw_wavenet_acts_alloc(mrw_wavenet_acts *a, const mrw_wavenet_config *cfg, int B, int T, mrw_error *err);
void mrw_wavenet_acts_free(mrw_wavenet_acts *a);

/* out [B*T, E]. x [B*T] (series b at x + b*T). */
void mrw_wavenet_forward(mrw_kctx *k, const mrw_wavenet *wn, const float *x, mrw_wavenet_acts *a, float *out);
/* From d(out) [B*T, E]: parameter gradients += into wn->ps->g; dx [B*T] (may be NULL) = d(input). */
void mrw_wavenet_backward(mrw_kctx *k, const mrw_wavenet *wn, mrw_wavenet_acts *a, const float *dout, float *dx);

#endif
