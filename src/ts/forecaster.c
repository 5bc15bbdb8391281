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
    if (c->timer != 0 && c->timer != 1) return mrw_err(err, MRW_E_ARG, "forecaster: timer must be 0 or 1");
    if (!c->timer && (s = mrw_wavenet_config_check(&c->enc, err))) return s;
    if (c->timer && c->patch != 1)
        return mrw_err(err, MRW_E_ARG, "forecaster: a Timer encoder has its own patches (--patch must be 1)");
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
    if (l->vocab < c->n_prompt)
        return mrw_err(err, MRW_E_ARG, "forecaster: the vocabulary (%d) must cover the %d prompt tokens", l->vocab,
                       c->n_prompt);
    if (c->patch < 1 || c->patch > c->lookback)
        return mrw_err(err, MRW_E_ARG, "forecaster: patch %d out of range (1 … lookback %d)", c->patch, c->lookback);
    if (c->skip != 0 && c->skip != 1) return mrw_err(err, MRW_E_ARG, "forecaster: skip must be 0 or 1");
    return MRW_OK;
}

void mrw_forecaster_config_format(const mrw_forecaster_config *c, char *buf, size_t n) {
    const mrw_rwkv7_train_config *l = &c->lm;
    snprintf(buf, n,
             "lookback=%d,horizon=%d,prompt=%d,scale=%d,enc=%d/%d/%d/%d/%d,lm=%d/%d/%d/%d/%d/%d/%d/%d/%d,patch=%d,"
             "skip=%d",
             c->lookback, c->horizon, c->n_prompt, c->adapter_scale, c->enc.n_layers, c->enc.res_ch, c->enc.skip_ch,
             c->enc.out_dim, c->enc.cycle, l->n_layer, l->n_embd, l->head_size, l->vocab, l->ffn, l->d_w, l->d_a,
             l->d_v, l->d_g, c->patch, c->skip);
    if (c->timer) {
        size_t k = strlen(buf);
        snprintf(buf + k, n > k ? n - k : 0, ",timer=1");
    }
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
    if (n != 18) return mrw_err(err, MRW_E_FORMAT, "bad forecaster metadata '%s'", buf);
    c->patch = 1, c->skip = 0; /* older checkpoints: every step a token, no skip path */
    if ((size_t)used != len) {
        int used2 = 0;
        if (sscanf(buf + used, ",patch=%d,skip=%d%n", &c->patch, &c->skip, &used2) != 2)
            return mrw_err(err, MRW_E_FORMAT, "bad forecaster metadata '%s'", buf);
        used += used2;
        if ((size_t)used != len) {
            if (strcmp(buf + used, ",timer=1")) return mrw_err(err, MRW_E_FORMAT, "bad forecaster metadata '%s'", buf);
            c->timer = 1;
        }
    }
    return mrw_forecaster_config_check(c, err);
}

mrw_status mrw_forecaster_new(const mrw_forecaster_config *cfg, int max_B, int n_threads, mrw_forecaster **out,
                              mrw_error *err) {
    *out = NULL;
    mrw_status s;
    if ((s = mrw_forecaster_config_check(cfg, err))) return s;
    if (max_B < 1 || max_B > 4096) return mrw_err(err, MRW_E_ARG, "forecaster: batch %d (1 … 4096)", max_B);
    mrw_forecaster *f = calloc(1, sizeof *f);
    if (!f) return mrw_err(err, MRW_E_NOMEM, "forecaster: out of memory");
    f->cfg = *cfg, f->max_B = max_B;
    const int L = cfg->lookback, H = cfg->horizon, C = cfg->lm.n_embd;
    int NT = L / cfg->patch, E = cfg->enc.out_dim;
    f->cfg.timer_path = NULL;
    mrw_kctx_init(&f->kc, n_threads);
    if (cfg->timer) {
        if (!cfg->timer_path) {
            s = mrw_err(err, MRW_E_ARG, "forecaster: a Timer encoder needs its directory");
            goto fail;
        }
        char *rp = realpath(cfg->timer_path, NULL); /* absolute, so the checkpoint's reference works from anywhere */
        f->timer_path = rp ? rp : strdup(cfg->timer_path);
        if (!f->timer_path) {
            s = mrw_err(err, MRW_E_NOMEM, "forecaster: out of memory");
            goto fail;
        }
        f->cfg.timer_path = f->timer_path;
        if ((s = mrw_timer_open(cfg->timer_path, 0, &f->timer, err))) goto fail;
        const mrw_timer_config *tc = mrw_timer_get_config(f->timer);
        E = tc->hidden, NT = mrw_timer_patches(f->timer, L);
        if (NT < 1) {
            s = mrw_err(err, MRW_E_ARG, "forecaster: the lookback %d is shorter than one Timer patch (%d)", L,
                        tc->patch);
            goto fail;
        }
        f->off = L - NT * tc->patch;
        if ((s = mrw_param_set_alloc(&f->enc_ps, err))) goto fail; /* frozen: no trained encoder tensor */
    } else {
        f->off = L - NT * cfg->patch;
        if ((s = mrw_wavenet_add_params(&f->wn, &cfg->enc, &f->enc_ps, err)) ||
            (s = mrw_param_set_alloc(&f->enc_ps, err)) ||
            (s = mrw_wavenet_acts_alloc(&f->acts, &cfg->enc, max_B, L, err)))
            goto fail;
    }
    const int T = NT + cfg->n_prompt;
    f->T = T, f->n_tok = NT, f->E = E;
    mrw_tadapter_config ac = {.kind = MRW_TADAPTER_V2, .E = E, .C = C, .hidden = cfg->adapter_scale * E};
    if ((s = mrw_tadapter_new(&ac, max_B, NT, f->kc.n_threads, &f->ad, err))) goto fail;
    if ((s = mrw_rwkv7_train_new_ex(&cfg->lm, max_B, T, f->kc.n_threads, MRW_RWKV7_TRAIN_NO_LOGITS, &f->lm, err)))
        goto fail;
    if ((s = mrw_ts_head_add_params(&f->head, C, H, &f->head_ps, err))) goto fail;
    if (cfg->skip) {
        if ((s = mrw_ts_head_add_params_named(&f->skiph, "forecast_head.skip", L, H, &f->head_ps, err))) goto fail;
        f->head_ps.p[f->skiph.w].group = f->head_ps.p[f->skiph.b].group = MRW_FC_PG_SKIP;
    }
    if ((s = mrw_param_set_alloc(&f->head_ps, err))) goto fail;
    const size_t B = (size_t)max_B;
    const size_t hs1 = mrw_ts_head_scratch(max_B, C, H), hs2 = mrw_ts_head_scratch(max_B, L, H);
    enum { NBUF = 18 };
    const size_t nfeat = cfg->timer ? (size_t)NT * E : (size_t)L * E;
    size_t sizes[NBUF] = {B * L, B, B, B * nfeat, B * NT * E, B * NT * C, B * T * C, B * C, B * H, B * H,
                          B * T * C, B * T * C, B * NT * C, B * NT * E, B * nfeat, hs1 > hs2 ? hs1 : hs2, B * H, B};
    size_t total = 0;
    for (int i = 0; i < NBUF; i++) total += sizes[i];
    f->mem = malloc(total * sizeof(float));
    f->mask = malloc(B * T);
    f->tokens = malloc(B * T * sizeof(int32_t));
    if (!f->mem || !f->mask || !f->tokens) {
        s = mrw_err(err, MRW_E_NOMEM, "forecaster: out of memory for batch %d x %d", max_B, T);
        goto fail;
    }
    float **ptrs[NBUF] = {&f->xn,   &f->mu,      &f->sig,     &f->feat,   &f->pool,  &f->adout,
                          &f->inject, &f->hid,   &f->yhat,    &f->dyhat,  &f->dhid,  &f->dinject,
                          &f->dadout, &f->dpool, &f->dfeat,   &f->hscr,   &f->yskip, &f->zero};
    float *p = f->mem;
    for (int i = 0; i < NBUF; i++) *ptrs[i] = p, p += sizes[i];
    memset(f->inject, 0, B * T * C * sizeof(float));
    memset(f->dhid, 0, B * T * C * sizeof(float)); /* d hidden: only the read-out rows are ever non-zero */
    memset(f->zero, 0, B * sizeof(float));
    for (int b = 0; b < max_B; b++)
        for (int t = 0; t < T; t++) {
            f->mask[(size_t)b * T + t] = t < NT;
            f->tokens[(size_t)b * T + t] = t < NT ? 0 : t - NT;
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
    mrw_timer_free(f->timer);
    free(f->timer_path);
    mrw_param_set_free(&f->enc_ps);
    mrw_param_set_free(&f->head_ps);
    mrw_tadapter_free(f->ad);
    mrw_rwkv7_train_free(f->lm);
    mrw_kctx_free(&f->kc);
    free(f->mem), free(f->mask), free(f->tokens);
    free(f);
}

void mrw_forecaster_init(mrw_forecaster *f, uint64_t seed) {
    if (!f->cfg.timer) mrw_wavenet_init_random(&f->wn, seed * 4 + 1);
    mrw_tadapter_init(f->ad, seed * 4 + 2);
    mrw_rwkv7_train_init(f->lm, seed * 4 + 3);
    mrw_ts_head_init_random(&f->head, seed * 4 + 4);
    if (f->cfg.skip) { /* the skip path starts at zero (or from a linear fit: mrw_forecaster_set_skip), and the
                        * head's weight at zero, so the model starts as the skip path alone (a zero-initialised
                        * residual branch: the head's gradient is non-zero from the first step, RWKV-7's after it) */
        memset(mrw_param_w(&f->head_ps, f->head.w), 0, sizeof(float) * (size_t)f->cfg.horizon * f->cfg.lm.n_embd);
        memset(mrw_param_w(&f->head_ps, f->skiph.w), 0, sizeof(float) * (size_t)f->cfg.horizon * f->cfg.lookback);
        memset(mrw_param_w(&f->head_ps, f->skiph.b), 0, sizeof(float) * (size_t)f->cfg.horizon);
    }
}

mrw_status mrw_forecaster_set_skip(mrw_forecaster *f, const float *w, mrw_error *err) {
    if (!f->cfg.skip) return mrw_err(err, MRW_E_ARG, "forecaster: no skip path to set");
    memcpy(mrw_param_w(&f->head_ps, f->skiph.w), w, sizeof(float) * (size_t)f->cfg.horizon * f->cfg.lookback);
    memset(mrw_param_w(&f->head_ps, f->skiph.b), 0, sizeof(float) * (size_t)f->cfg.horizon);
    return MRW_OK;
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
    const int L = f->cfg.lookback, H = f->cfg.horizon, T = f->T, E = f->E, C = f->cfg.lm.n_embd;
    for (size_t i = 0; i < (size_t)B * L; i++)
        if (!isfinite(x[i])) return mrw_err(err, MRW_E_ARG, "forecaster: input value %zu is not finite", i);
    if (y)
        for (size_t i = 0; i < (size_t)B * H; i++)
            if (!isfinite(y[i])) return mrw_err(err, MRW_E_ARG, "forecaster: target value %zu is not finite", i);
    for (int b = 0; b < B; b++)
        mrw_ts_instance_norm(x + (size_t)b * L, L, NORM_EPS, f->xn + (size_t)b * L, &f->mu[b], &f->sig[b]);
    f->acts.B = B; /* the activations are allocated for max_B; a smaller batch uses a prefix */
    const int P = f->cfg.patch, NT = f->n_tok, off = f->off;
    mrw_status s;
    if (f->timer) { /* frozen: [NT, D] last hidden states of the most recent NT patches of x̂ */
        for (int b = 0; b < B; b++)
            if ((s = mrw_timer_forward(f->timer, f->kc.n_threads, f->xn + (size_t)b * L, L,
                                       f->feat + (size_t)b * NT * E, NULL, err)))
                return s;
    } else {
        mrw_wavenet_forward(&f->kc, &f->wn, f->xn, &f->acts, f->feat);
    }
    const float *g = f->feat;
    if (P > 1) { /* mean of each patch of P steps (patches end at the last step) */
        const float inv = 1.0f / (float)P;
        for (int b = 0; b < B; b++)
            for (int j = 0; j < NT; j++) {
                float *o = f->pool + ((size_t)b * NT + j) * E;
                const float *src = f->feat + ((size_t)b * L + off + (size_t)j * P) * E;
                for (int e = 0; e < E; e++) {
                    float acc = 0;
                    for (int q = 0; q < P; q++) acc += src[(size_t)q * E + e];
                    o[e] = acc * inv;
                }
            }
        g = f->pool;
    }
    if ((s = mrw_tadapter_forward(f->ad, g, B, NT, f->adout, err))) return s;
    for (int b = 0; b < B; b++)
        memcpy(f->inject + (size_t)b * T * C, f->adout + (size_t)b * NT * C, (size_t)NT * C * sizeof(float));
    if ((s = mrw_rwkv7_train_forward_hidden(f->lm, f->tokens, f->inject, f->mask, B, T, NULL, err))) return s;
    const float *hall = mrw_rwkv7_train_last_hidden(f->lm);
    for (int b = 0; b < B; b++)
        memcpy(f->hid + (size_t)b * C, hall + ((size_t)b * T + T - 1) * C, (size_t)C * sizeof(float));
    if ((s = mrw_forecaster_head_forward(f, y, B, yhat, loss, err))) return s;
    f->has_loss = y != NULL;
    f->B = B;
    return MRW_OK;
}

mrw_status mrw_forecaster_head_forward(mrw_forecaster *f, const float *y, int B, float *yhat, double *loss,
                                       mrw_error *err) {
    const int H = f->cfg.horizon;
    mrw_ts_head_forward(&f->kc, &f->head, f->hid, f->mu, f->sig, B, f->yhat);
    if (f->cfg.skip) { /* + σ·(Ws x̂ + bs) */
        mrw_ts_head_forward(&f->kc, &f->skiph, f->xn, f->zero, f->sig, B, f->yskip);
        for (size_t i = 0; i < (size_t)B * H; i++) f->yhat[i] += f->yskip[i];
    }
    if (yhat) memcpy(yhat, f->yhat, (size_t)B * H * sizeof *yhat);
    for (size_t i = 0; i < (size_t)B * H; i++)
        if (!isfinite(f->yhat[i]))
            return mrw_err(err, MRW_E_ARG, "forecaster: the forecast is not finite (diverged weights?)");
    if (y) {
        double l = mrw_ts_mse_loss(f->yhat, y, B, H, f->dyhat);
        if (loss) *loss = l;
    } else if (loss) {
        *loss = 0;
    }
    return MRW_OK;
}

void mrw_forecaster_head_backward(mrw_forecaster *f, int B, float scale, float *dhid) {
    const int H = f->cfg.horizon;
    if (scale != 1.0f)
        for (size_t i = 0; i < (size_t)B * H; i++) f->dyhat[i] *= scale;
    if (f->cfg.skip) mrw_ts_head_backward(&f->kc, &f->skiph, f->xn, f->sig, f->dyhat, B, NULL, f->hscr);
    mrw_ts_head_backward(&f->kc, &f->head, f->hid, f->sig, f->dyhat, B, dhid, f->hscr);
}

mrw_status mrw_forecaster_backward(mrw_forecaster *f, float scale, int frozen_lm, mrw_error *err) {
    const int B = f->B, L = f->cfg.lookback, T = f->T, C = f->cfg.lm.n_embd;
    if (!B || !f->has_loss) return mrw_err(err, MRW_E_ARG, "forecaster: backward without a forward with targets");
    f->B = 0;
    /* d hidden at each sequence's read-out row (dinject as scratch; the other rows of dhid stay zero) */
    mrw_forecaster_head_backward(f, B, scale, f->dinject);
    for (int b = 0; b < B; b++)
        memcpy(f->dhid + ((size_t)b * T + T - 1) * C, f->dinject + (size_t)b * C, (size_t)C * sizeof(float));
    mrw_status s;
    if ((s = mrw_rwkv7_train_backward_hidden(f->lm, f->dhid, frozen_lm, f->dinject, err))) return s;
    for (int b = 0; b < B; b++) memset(f->dhid + ((size_t)b * T + T - 1) * C, 0, (size_t)C * sizeof(float));
    const int P = f->cfg.patch, NT = f->n_tok, off = f->off, E = f->E;
    for (int b = 0; b < B; b++)
        memcpy(f->dadout + (size_t)b * NT * C, f->dinject + (size_t)b * T * C, (size_t)NT * C * sizeof(float));
    if (f->timer) { /* frozen encoder: the gradient stops at the adapter's input */
        mrw_tadapter_backward(f->ad, f->dadout, NULL);
        return MRW_OK;
    }
    if (P == 1) {
        mrw_tadapter_backward(f->ad, f->dadout, f->dfeat);
    } else {
        mrw_tadapter_backward(f->ad, f->dadout, f->dpool);
        const float inv = 1.0f / (float)P;
        for (int b = 0; b < B; b++) {
            float *db = f->dfeat + (size_t)b * L * E;
            memset(db, 0, (size_t)off * E * sizeof(float));
            for (int j = 0; j < NT; j++) {
                const float *dp = f->dpool + ((size_t)b * NT + j) * E;
                for (int q = 0; q < P; q++) {
                    float *d = db + ((size_t)off + (size_t)j * P + q) * E;
                    for (int e = 0; e < E; e++) d[e] = dp[e] * inv;
                }
            }
        }
    }
    mrw_wavenet_backward(&f->kc, &f->wn, &f->acts, f->dfeat, NULL);
    return MRW_OK;
}

mrw_status mrw_forecaster_save(mrw_forecaster *f, const char *path, const char *const *keys,
                               const char *const *vals, int n_meta, mrw_error *err) {
    enum { MAXM = 16 };
    if (n_meta < 0 || n_meta > MAXM - 2) return mrw_err(err, MRW_E_ARG, "forecaster save: too many metadata");
    char cfgs[512];
    mrw_forecaster_config_format(&f->cfg, cfgs, sizeof cfgs);
    const char *k[MAXM], *v[MAXM];
    k[0] = "modrwkv.forecaster", v[0] = cfgs;
    for (int i = 0; i < n_meta; i++) k[i + 1] = keys[i], v[i + 1] = vals[i];
    int nm = n_meta + 1;
    if (f->timer) k[nm] = "modrwkv.forecaster.timer", v[nm] = f->timer_path, nm++;
    mrw_param_set *sets[4];
    int n = mrw_forecaster_sets(f, sets);
    return mrw_ckpt_save_model(path, sets, n, NULL, NULL, 0, k, v, nm, err);
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
    char *tpath = NULL;
    if (!s && cfg.timer) { /* the frozen Timer is referenced by its directory, not copied into the file */
        const mrw_meta *tm = mrw_tfile_find_meta(tf, "modrwkv.forecaster.timer");
        if (!tm || tm->type != MRW_MV_STRING)
            s = mrw_err(err, MRW_E_FORMAT, "no 'modrwkv.forecaster.timer' metadata (the Timer directory)");
        else if (!(tpath = strndup(tm->v.s.ptr, tm->v.s.len)))
            s = mrw_err(err, MRW_E_NOMEM, "out of memory");
        cfg.timer_path = tpath;
    }
    mrw_tfile_close(tf);
    if (s) {
        free(tpath);
        return mrw_err(err, s, "%s: %s", path, err->msg);
    }
    mrw_forecaster *f;
    s = mrw_forecaster_new(&cfg, max_B, n_threads, &f, err);
    free(tpath);
    if (s) return s;
    mrw_param_set *sets[4];
    int n = mrw_forecaster_sets(f, sets);
    mrw_rwkv7_train_init(f->lm, 1); /* v0/v1/v2 of layer 0 are not in every file */
    if ((s = mrw_ckpt_load_weights(path, sets, n, 0, NULL, err))) {
        mrw_forecaster_free(f);
        return s;
    }
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
