/* The ModRWKV forecaster: normalisation → WaveNet → v2 adapter → RWKV-7 → forecast head (see forecaster.h). */
#include "ts/forecaster.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/progress.h"
#include "formats/tensorfile.h"
#include "train/checkpoint.h"

#define NORM_EPS 1e-5f

void mrw_forecaster_lm_config(mrw_rwkv7_train_config *lm, int n_layer, int n_embd) {
    memset(lm, 0, sizeof *lm);
    lm->n_layer = n_layer, lm->n_embd = n_embd;
    lm->head_size = n_embd < 64 ? n_embd : 64;
    lm->vocab = n_embd, lm->ffn = 4 * n_embd;
    const double C = n_embd, f[4] = {1.8, 1.8, 1.3, 0.6}, p[4] = {0.5, 0.5, 0.5, 0.8};
    int r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (int)(round(f[i] * pow(C, p[i]) / 32.0) * 32.0);
        if (r[i] < 32) r[i] = 32;
    }
    lm->d_w = r[0], lm->d_a = r[1], lm->d_v = r[2], lm->d_g = r[3];
}

mrw_status mrw_forecaster_config_check(const mrw_forecaster_config *c, mrw_error *err) {
    mrw_status s;
    if (c->lookback < 2 || c->lookback > (1 << 16) || c->horizon < 1 || c->horizon > (1 << 16))
        return mrw_err(err, MRW_E_ARG, "forecaster: lookback %d / horizon %d out of range", c->lookback, c->horizon);
    if ((s = mrw_wavenet_config_check(&c->enc, err))) return s;
    if (c->adapter_scale < 1 || c->adapter_scale > 64)
        return mrw_err(err, MRW_E_ARG, "forecaster: adapter scale %d out of range (2, 4, 8 usual)", c->adapter_scale);
    if (c->n_prompt < 0 || c->n_prompt > 64)
        return mrw_err(err, MRW_E_ARG, "forecaster: %d prompt tokens (0 … 64)", c->n_prompt);
    const mrw_rwkv7_train_config *l = &c->lm;
    if (l->n_layer < 1 || l->n_layer > 256 || l->n_embd < 1 || l->n_embd > 16384 || l->head_size < 1 ||
        l->n_embd % l->head_size || l->ffn < 1 || l->vocab < 1 || l->vocab > (1 << 20) || l->d_w < 1 ||
        l->d_a < 1 || l->d_v < 0 || (l->n_layer > 1 && l->d_v < 1) || l->d_g < 1 || l->d_w > 4096 || l->d_a > 4096 || l->d_v > 4096 ||
        l->d_g > 4096 || l->ffn > (1 << 18))
        return mrw_err(err, MRW_E_ARG, "forecaster: bad RWKV-7 configuration (L %d, C %d, head %d, V %d, F %d)",
                       l->n_layer, l->n_embd, l->head_size, l->vocab, l->ffn);
    if (l->vocab < l->n_embd || l->vocab < c->n_prompt || l->vocab < 2)
        return mrw_err(err, MRW_E_ARG, "forecaster: the vocabulary (%d) must cover the width (%d) and the prompt",
                       l->vocab, l->n_embd);
    return MRW_OK;
}

void mrw_forecaster_config_format(const mrw_forecaster_config *c, char *buf, size_t n) {
    const mrw_rwkv7_train_config *l = &c->lm;
    snprintf(buf, n, "lookback=%d,horizon=%d,prompt=%d,scale=%d,enc=%d/%d/%d/%d/%d,lm=%d/%d/%d/%d/%d/%d/%d/%d/%d",
             c->lookback, c->horizon, c->n_prompt, c->adapter_scale, c->enc.n_layers, c->enc.res_ch, c->enc.skip_ch,
             c->enc.out_dim, c->enc.cycle, l->n_layer, l->n_embd, l->head_size, l->vocab, l->ffn, l->d_w, l->d_a,
             l->d_v, l->d_g);
}

mrw_status mrw_forecaster_config_parse(const char *s, size_t len, mrw_forecaster_config *c, mrw_error *err) {
    char buf[512];
    if (len >= sizeof buf) return mrw_err(err, MRW_E_FORMAT, "forecaster metadata too long (%zu bytes)", len);
    memcpy(buf, s, len);
    buf[len] = 0;
    memset(c, 0, sizeof *c);
    mrw_rwkv7_train_config *l = &c->lm;
    int used = 0;
    int n = sscanf(buf, "lookback=%d,horizon=%d,prompt=%d,scale=%d,enc=%d/%d/%d/%d/%d,lm=%d/%d/%d/%d/%d/%d/%d/%d/%d%n",
                   &c->lookback, &c->horizon, &c->n_prompt, &c->adapter_scale, &c->enc.n_layers, &c->enc.res_ch,
                   &c->enc.skip_ch, &c->enc.out_dim, &c->enc.cycle, &l->n_layer, &l->n_embd, &l->head_size,
                   &l->vocab, &l->ffn, &l->d_w, &l->d_a, &l->d_v, &l->d_g, &used);
    if (n != 18 || (size_t)used != len)
        return mrw_err(err, MRW_E_FORMAT, "bad forecaster metadata '%s'", buf);
    return mrw_forecaster_config_check(c, err);
}

mrw_status mrw_forecaster_new(const mrw_forecaster_config *cfg, int max_B, int n_threads, mrw_forecaster **out,
                              mrw_error *err) {
    *out = NULL;
    mrw_status s;
    if ((s = mrw_forecaster_config_check(cfg, err))) return s;
    if (max_B < 1 || max_B > 4096 || max_B >= cfg->lm.vocab)
        return mrw_err(err, MRW_E_ARG, "forecaster: batch %d (1 … min(4096, vocab %d − 1))", max_B, cfg->lm.vocab);
    mrw_forecaster *f = calloc(1, sizeof *f);
    if (!f) return mrw_err(err, MRW_E_NOMEM, "forecaster: out of memory");
    f->cfg = *cfg, f->max_B = max_B;
    const int L = cfg->lookback, H = cfg->horizon, T = L + cfg->n_prompt, E = cfg->enc.out_dim,
              C = cfg->lm.n_embd;
    f->T = T;
    mrw_kctx_init(&f->kc, n_threads);
    if ((s = mrw_wavenet_add_params(&f->wn, &cfg->enc, &f->enc_ps, err)) ||
        (s = mrw_param_set_alloc(&f->enc_ps, err)) || (s = mrw_wavenet_acts_alloc(&f->acts, &cfg->enc, max_B, L, err)))
        goto fail;
    mrw_tadapter_config ac = {.kind = MRW_TADAPTER_V2, .E = E, .C = C, .hidden = cfg->adapter_scale * E};
    if ((s = mrw_tadapter_new(&ac, max_B, L, f->kc.n_threads, &f->ad, err))) goto fail;
    if ((s = mrw_rwkv7_train_new(&cfg->lm, max_B, T, f->kc.n_threads, &f->lm, err))) goto fail;
    if ((s = mrw_rwkv7_hidden_ws_init(&f->hw, f->lm, max_B, T, err))) goto fail;
    if ((s = mrw_ts_head_add_params(&f->head, C, H, &f->head_ps, err)) || (s = mrw_param_set_alloc(&f->head_ps, err)))
        goto fail;
    const size_t B = (size_t)max_B;
    size_t sizes[14] = {B * L, B, B, B * L * E, B * L * C, B * T * C, B * C, B * H, B * H, B * C, B * T * C,
                        B * L * C, B * L * E, mrw_ts_head_scratch(max_B, C, H)};
    size_t total = 0;
    for (int i = 0; i < 14; i++) total += sizes[i];
    f->mem = malloc(total * sizeof(float));
    f->mask = malloc(B * T);
    f->tokens = malloc(B * T * sizeof(int32_t));
    if (!f->mem || !f->mask || !f->tokens) {
        s = mrw_err(err, MRW_E_NOMEM, "forecaster: out of memory for batch %d x %d", max_B, T);
        goto fail;
    }
    float **ptrs[14] = {&f->xn, &f->mu, &f->sig, &f->feat, &f->adout, &f->inject, &f->hid, &f->yhat,
                        &f->dyhat, &f->dhid, &f->dinject, &f->dadout, &f->dfeat, &f->hscr};
    float *p = f->mem;
    for (int i = 0; i < 14; i++) *ptrs[i] = p, p += sizes[i];
    memset(f->inject, 0, B * T * C * sizeof(float));
    for (int b = 0; b < max_B; b++)
        for (int t = 0; t < T; t++) {
            f->mask[(size_t)b * T + t] = t < L;
            f->tokens[(size_t)b * T + t] = t < L ? 0 : t - L;
        }
    *out = f;
    return MRW_OK;
fail:
    mrw_forecaster_free(f);
    return s;
}

void mrw_forecaster_free(mrw_forecaster *f) {
    if (!f) return;
    mrw_wavenet_acts_free(&f->acts);
    mrw_param_set_free(&f->enc_ps);
    mrw_param_set_free(&f->head_ps);
    mrw_tadapter_free(f->ad);
    mrw_rwkv7_hidden_ws_free(&f->hw);
    mrw_rwkv7_train_free(f->lm);
    mrw_kctx_free(&f->kc);
    free(f->mem), free(f->mask), free(f->tokens);
    free(f);
}

void mrw_forecaster_init(mrw_forecaster *f, uint64_t seed) {
    mrw_wavenet_init_random(&f->wn, seed * 4 + 1);
    mrw_tadapter_init(f->ad, seed * 4 + 2);
    mrw_rwkv7_train_init(f->lm, seed * 4 + 3);
    mrw_rwkv7_hidden_set_identity(f->lm);
    mrw_ts_head_init_random(&f->head, seed * 4 + 4);
}

int mrw_forecaster_sets(mrw_forecaster *f, mrw_param_set **sets) {
    sets[0] = &f->enc_ps, sets[1] = mrw_tadapter_params(f->ad), sets[2] = mrw_rwkv7_train_params(f->lm);
    sets[3] = &f->head_ps;
    return 4;
}

mrw_status mrw_forecaster_forward(mrw_forecaster *f, const float *x, const float *y, int B, float *yhat,
                                  double *loss, mrw_error *err) {
    f->B = 0, f->has_loss = 0;
    if (B < 1 || B > f->max_B) return mrw_err(err, MRW_E_ARG, "forecaster: batch %d exceeds %d", B, f->max_B);
    const int L = f->cfg.lookback, H = f->cfg.horizon, T = f->T, E = f->cfg.enc.out_dim, C = f->cfg.lm.n_embd;
    for (size_t i = 0; i < (size_t)B * L; i++)
        if (!isfinite(x[i])) return mrw_err(err, MRW_E_ARG, "forecaster: input value %zu is not finite", i);
    if (y)
        for (size_t i = 0; i < (size_t)B * H; i++)
            if (!isfinite(y[i])) return mrw_err(err, MRW_E_ARG, "forecaster: target value %zu is not finite", i);
    for (int b = 0; b < B; b++)
        mrw_ts_instance_norm(x + (size_t)b * L, L, NORM_EPS, f->xn + (size_t)b * L, &f->mu[b], &f->sig[b]);
    f->acts.B = B; /* the activations are allocated for max_B; a smaller batch uses a prefix */
    mrw_wavenet_forward(&f->kc, &f->wn, f->xn, &f->acts, f->feat);
    mrw_status s;
    if ((s = mrw_tadapter_forward(f->ad, f->feat, B, L, f->adout, err))) return s;
    for (int b = 0; b < B; b++)
        memcpy(f->inject + (size_t)b * T * C, f->adout + (size_t)b * L * C, (size_t)L * C * sizeof(float));
    if ((s = mrw_rwkv7_hidden_forward(f->lm, &f->hw, f->tokens, f->inject, f->mask, B, T, f->hid, err))) return s;
    mrw_ts_head_forward(&f->kc, &f->head, f->hid, f->mu, f->sig, B, f->yhat);
    if (yhat) memcpy(yhat, f->yhat, (size_t)B * H * sizeof *yhat);
    for (size_t i = 0; i < (size_t)B * H; i++)
        if (!isfinite(f->yhat[i]))
            return mrw_err(err, MRW_E_ARG, "forecaster: the forecast is not finite (diverged weights?)");
    if (y) {
        double l = mrw_ts_mse_loss(f->yhat, y, B, H, f->dyhat);
        if (loss) *loss = l;
        f->has_loss = 1;
    } else if (loss) {
        *loss = 0;
    }
    f->B = B;
    (void)E;
    return MRW_OK;
}

mrw_status mrw_forecaster_backward(mrw_forecaster *f, float scale, int frozen_lm, mrw_error *err) {
    const int B = f->B, L = f->cfg.lookback, H = f->cfg.horizon, T = f->T, C = f->cfg.lm.n_embd;
    if (!B || !f->has_loss) return mrw_err(err, MRW_E_ARG, "forecaster: backward without a forward with targets");
    f->B = 0;
    if (scale != 1.0f)
        for (size_t i = 0; i < (size_t)B * H; i++) f->dyhat[i] *= scale;
    mrw_ts_head_backward(&f->kc, &f->head, f->hid, f->sig, f->dyhat, B, f->dhid, f->hscr);
    mrw_status s;
    if ((s = mrw_rwkv7_hidden_backward(f->lm, &f->hw, f->dhid, frozen_lm, f->dinject, err))) return s;
    for (int b = 0; b < B; b++)
        memcpy(f->dadout + (size_t)b * L * C, f->dinject + (size_t)b * T * C, (size_t)L * C * sizeof(float));
    mrw_tadapter_backward(f->ad, f->dadout, f->dfeat);
    mrw_wavenet_backward(&f->kc, &f->wn, &f->acts, f->dfeat, NULL);
    return MRW_OK;
}

mrw_status mrw_forecaster_save(mrw_forecaster *f, const char *path, const char *const *keys,
                               const char *const *vals, int n_meta, mrw_error *err) {
    enum { MAXM = 16 };
    if (n_meta < 0 || n_meta > MAXM - 1) return mrw_err(err, MRW_E_ARG, "forecaster save: too many metadata");
    char cfgs[512];
    mrw_forecaster_config_format(&f->cfg, cfgs, sizeof cfgs);
    const char *k[MAXM], *v[MAXM];
    k[0] = "modrwkv.forecaster", v[0] = cfgs;
    for (int i = 0; i < n_meta; i++) k[i + 1] = keys[i], v[i + 1] = vals[i];
    mrw_param_set *sets[4];
    int n = mrw_forecaster_sets(f, sets);
    return mrw_ckpt_save_model(path, sets, n, NULL, NULL, 0, k, v, n_meta + 1, err);
}

mrw_status mrw_forecaster_load(const char *path, int max_B, int n_threads, mrw_forecaster **out, mrw_error *err) {
    *out = NULL;
    mrw_tfile *tf = NULL;
    mrw_status s = mrw_tfile_open(path, &tf, err);
    if (s) return s;
    const mrw_meta *m = mrw_tfile_find_meta(tf, "modrwkv.forecaster");
    mrw_forecaster_config cfg;
    if (!m || m->type != MRW_MV_STRING) {
        mrw_tfile_close(tf);
        return mrw_err(err, MRW_E_FORMAT, "%s: not a forecaster checkpoint (no 'modrwkv.forecaster' metadata; "
                                          "train one with modrwkv train --csv)", path);
    }
    s = mrw_forecaster_config_parse(m->v.s.ptr, m->v.s.len, &cfg, err);
    mrw_tfile_close(tf);
    if (s) return mrw_err(err, s, "%s: %s", path, err->msg);
    mrw_forecaster *f;
    if (max_B >= cfg.lm.vocab) max_B = cfg.lm.vocab - 1; /* the hidden-state path needs batch < vocab */
    if ((s = mrw_forecaster_new(&cfg, max_B, n_threads, &f, err))) return s;
    mrw_param_set *sets[4];
    int n = mrw_forecaster_sets(f, sets);
    mrw_rwkv7_train_init(f->lm, 1); /* v0/v1/v2 of layer 0 are not in every file */
    if ((s = mrw_ckpt_load_weights(path, sets, n, 0, NULL, err))) {
        mrw_forecaster_free(f);
        return s;
    }
    mrw_rwkv7_hidden_set_identity(f->lm);
    *out = f;
    return MRW_OK;
}

mrw_status mrw_forecaster_eval(mrw_forecaster *f, const mrw_ts_data *d, int split, int64_t max_windows,
                               int progress, double *mse, double *mae, int64_t *n_windows, mrw_error *err) {
    const int L = f->cfg.lookback, H = f->cfg.horizon, B = f->max_B;
    if (d->lookback != L || d->horizon != H)
        return mrw_err(err, MRW_E_ARG, "the forecaster was trained for %d -> %d, the data are set up for %d -> %d", L,
                       H, d->lookback, d->horizon);
    const int64_t per = mrw_ts_data_windows_per_channel(d, split);
    if (per < 1) return mrw_err(err, MRW_E_ARG, "no window in this split");
    int64_t step = 1, use = per;
    if (max_windows > 0 && per > max_windows) step = per / max_windows, use = (per + step - 1) / step;
    const int64_t total = use * d->n_ch;
    float *x = malloc((size_t)B * L * sizeof *x), *y = malloc((size_t)B * H * sizeof *y),
          *yh = malloc((size_t)B * H * sizeof *yh);
    if (!x || !y || !yh) {
        free(x), free(y), free(yh);
        return mrw_err(err, MRW_E_NOMEM, "forecaster eval: out of memory");
    }
    mrw_progress bar;
    mrw_progress_start(&bar, "forecast eval", (uint64_t)total, "windows", progress);
    double se = 0, ae = 0;
    int64_t done = 0;
    mrw_status s = MRW_OK;
    while (done < total && !s) {
        int nb = 0;
        while (nb < B && done + nb < total) {
            int64_t i = done + nb, ch = i / use, k = (i % use) * step;
            mrw_ts_data_window(d, split, ch * per + k, x + (size_t)nb * L, y + (size_t)nb * H, NULL);
            nb++;
        }
        if ((s = mrw_forecaster_forward(f, x, NULL, nb, yh, NULL, err))) break;
        for (size_t i = 0; i < (size_t)nb * H; i++) {
            double e = (double)yh[i] - y[i];
            se += e * e, ae += fabs(e);
        }
        done += nb;
        mrw_progress_update(&bar, (uint64_t)done);
    }
    if (!s) mrw_progress_finish(&bar);
    f->B = 0;
    free(x), free(y), free(yh);
    if (s) return s;
    *mse = se / ((double)total * H), *mae = ae / ((double)total * H);
    if (n_windows) *n_windows = total;
    return MRW_OK;
}
