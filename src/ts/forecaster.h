/* The ModRWKV forecaster (docs/FORECAST.md, "The forecaster"): one univariate window x [L] in, all H steps out.
 *
 *   x̂ = (x − μ)/σ                  per-window normalisation (mrw_ts_instance_norm, eps 1e-5)
 *   f = WaveNet(x̂)                  [L, E] per-step features (src/ts/wavenet.h)
 *   g = pool_P(f)                   [n, E], n = ⌊L/P⌋: the mean of each patch of P steps, patches aligned to the
 *                                   end of the window (the oldest L mod P steps' features are left out; the
 *                                   WaveNet's receptive field still sees them). P = 1: g = f.
 *   e = adapter(g)                  v2 adapter Linear(E → k·E) ReLU Linear(k·E → C), h + LN(h); k = adapter scale
 *   h = RWKV-7([e_0 … e_{n−1}, p_0 … p_{Q−1}])   the feature rows injected (through ln0 like embeddings),
 *                                   followed by Q fixed prompt tokens (ids 0 … Q−1), read at the last position
 *   u = W ln_out(h) + b             forecast head (src/ts/forecast_head.h)
 *     (+ Ws x̂ + bs)                 the optional linear skip path from the normalised lookback ("skip")
 *   ŷ = μ + σ·u
 *   loss = mean (ŷ − y)²            in the dataset-normalised space (the benchmarks' MSE)
 *
 * Forward and backward through every part; the RWKV-7 hidden state comes from rwkv7_train.h's hidden-state
 * entry (its "llm.head.weight" is neither read nor trained). Parameters in four sets (encoder, adapter,
 * RWKV-7, head + skip) for the optimizer and checkpoints; a checkpoint carries the configuration as the metadata
 * string "modrwkv.forecaster" (mrw_forecaster_config_format). */
#ifndef MRW_TS_FORECASTER_H
#define MRW_TS_FORECASTER_H

#include <stdint.h>

#include "kernels/cpu/kctx.h"
#include "modrwkv.h"
#include "train/adapter_train.h"
#include "train/rwkv7_train.h"
#include "ts/forecast_head.h"
#include "ts/splits.h"
#include "ts/timer.h"
#include "ts/wavenet.h"

/* The skip path's parameter group (a bit of its own next to mrw_param_group's): the trainer gives it its own
 * optimizer and learning rate (a wide linear map started at the ridge optimum needs a much smaller step). */
#define MRW_FC_PG_SKIP 8

typedef struct {
    int lookback, horizon;
    mrw_wavenet_config enc;
    int adapter_scale;           /* adapter hidden width = adapter_scale · enc.out_dim (2, 4 or 8 in the paper) */
    int n_prompt;                /* fixed tokens after the features (ids 0 … n_prompt−1), 0 … 64 */
    mrw_rwkv7_train_config lm;   /* vocab >= n_prompt */
    int patch;                   /* feature rows pooled per RWKV token (1 = every step a token), 1 … lookback */
    int skip;                    /* 1: the linear skip path Ws x̂ + bs ("forecast_head.skip.*") */
    int timer;                   /* 1: a frozen Timer encoder instead of the WaveNet (enc unused, patch 1):
                                  * features = Timer's last hidden states [⌊L/96⌋, D] of x̂ */
    const char *timer_path;      /* its directory (config.json + model.safetensors); borrowed by _new, which
                                  * keeps a copy; saved as the metadata "modrwkv.forecaster.timer" */
} mrw_forecaster_config;

/* The LoRA ranks of the reference trainer for width C (as `modrwkv train --init` picks them), vocab = C. */
void mrw_forecaster_lm_config(mrw_rwkv7_train_config *lm, int n_layer, int n_embd);
mrw_status mrw_forecaster_config_check(const mrw_forecaster_config *c, mrw_error *err);
/* "lookback=…,horizon=…,prompt=…,scale=…,enc=NL/RES/SKIP/OUT/CYCLE,lm=L/C/N/V/F/DW/DA/DV/DG,patch=P,skip=S"
 * with ",timer=1" appended for a Timer encoder (enc then 0/0/0/0/0) (buf >= 256). Parsing accepts the string
 * without ",patch=…,skip=…" (older checkpoints: patch 1, skip 0). */
void mrw_forecaster_config_format(const mrw_forecaster_config *c, char *buf, size_t n);
mrw_status mrw_forecaster_config_parse(const char *s, size_t len, mrw_forecaster_config *c, mrw_error *err);

typedef struct {
    mrw_forecaster_config cfg;
    int max_B, T; /* T = n_tok + n_prompt tokens */
    int n_tok, off; /* feature tokens ⌊L/P⌋ (Timer: ⌊L/96⌋ patches); the first pooled step (L − n_tok·P) */
    int E;          /* encoder feature width (WaveNet out_dim, or Timer's hidden size) */
    mrw_timer *timer;
    char *timer_path;
    mrw_kctx kc;
    mrw_param_set enc_ps, head_ps;
    mrw_wavenet wn;
    mrw_wavenet_acts acts;
    mrw_tadapter *ad;
    mrw_rwkv7_train *lm;
    mrw_ts_head head, skiph; /* skiph: the skip path (when cfg.skip) */
    float *mem;
    float *xn, *mu, *sig, *feat, *pool, *adout, *inject, *hid, *yhat, *dyhat, *dhid, *dinject, *dadout, *dpool,
        *dfeat, *hscr, *yskip, *zero;
    uint8_t *mask;
    int32_t *tokens;
    int B;        /* batch of the last forward (0: no backward pending) */
    int has_loss; /* the last forward had targets (dyhat is valid) */
} mrw_forecaster;

mrw_status mrw_forecaster_new(const mrw_forecaster_config *cfg, int max_B, int n_threads, mrw_forecaster **out,
                              mrw_error *err);
void mrw_forecaster_free(mrw_forecaster *f);
/* Random init of every part from a seed (RWKV-7 with the reference trainer's rules). */
void mrw_forecaster_init(mrw_forecaster *f, uint64_t seed);
/* The four parameter sets: encoder, adapter, RWKV-7, head (with the skip path). Returns 4. */
int mrw_forecaster_sets(mrw_forecaster *f, mrw_param_set **sets);

/* x [B, L] windows (dataset-normalised), y [B, H] targets or NULL; yhat (NULL or [B, H]) receives the
 * forecast. *loss (may be NULL) = MSE when y is given. Non-finite inputs are an error. */
mrw_status mrw_forecaster_forward(mrw_forecaster *f, const float *x, const float *y, int B, float *yhat,
                                  double *loss, mrw_error *err);
/* Backward of the last forward (which had targets): gradients += scale · d loss / d param of every set
 * (RWKV-7's only unless frozen_lm). */
mrw_status mrw_forecaster_backward(mrw_forecaster *f, float scale, int frozen_lm, mrw_error *err);
/* The parts after RWKV-7, shared with the GPU forecaster (src/kernels/cuda/forecaster_gpu.c): from f->hid [B][C]
 * (the read-out rows) and f->xn / mu / sig, the head, the skip path and de-normalisation into f->yhat (and yhat when
 * given); with targets y the MSE (*loss) and its gradient f->dyhat. Non-finite forecasts are an error. Then the
 * backward: f->dyhat *= scale, the head's and skip path's gradients +=, d hidden [B][C] into dhid (=). */
mrw_status mrw_forecaster_head_forward(mrw_forecaster *f, const float *y, int B, float *yhat, double *loss,
                                       mrw_error *err);
void mrw_forecaster_head_backward(mrw_forecaster *f, int B, float scale, float *dhid);

/* Sets the skip path to y = W x̂ (bias 0) from a linear map of the lookback (W [H, L], e.g. the closed-form
 * DLinear fit's collapsed map, baselines.h). MRW_E_ARG when the forecaster has no skip path. */
mrw_status mrw_forecaster_set_skip(mrw_forecaster *f, const float *w, mrw_error *err);

/* Checkpoint: every set's tensors (f32) and the metadata "modrwkv.forecaster" plus extra key/value pairs. */
mrw_status mrw_forecaster_save(mrw_forecaster *f, const char *path, const char *const *keys,
                               const char *const *vals, int n_meta, mrw_error *err);
/* Builds a forecaster from a checkpoint written by mrw_forecaster_save (configuration from its metadata);
 * max_B is lowered below the vocabulary size if needed (f->max_B is the batch it got). */
mrw_status mrw_forecaster_load(const char *path, int max_B, int n_threads, mrw_forecaster **out, mrw_error *err);

/* Test-set style evaluation: MSE/MAE over every window of a split of d (d->lookback / d->horizon must be the
 * forecaster's), batched; progress lines when `progress`. max_windows > 0 evaluates only the first ones of
 * each channel (evenly spread: every k-th window) — 0 = all. */
mrw_status mrw_forecaster_eval(mrw_forecaster *f, const mrw_ts_data *d, int split, int64_t max_windows,
                               int progress, double *mse, double *mae, int64_t *n_windows, mrw_error *err);

#endif
