/* WaveNet encoder: forward and backward (see wavenet.h). Convolutions are GEMMs over rows (train_nn.h):
 * the kernel-2 dilated conv reads [h[t - d], h[t]] through a small causal im2col. */
#include "ts/wavenet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "formats/tensorfile.h"
#include "train/train_nn.h"

#define PAR_MIN (1 << 16) /* elements below which a loop stays on one thread */

static int add(mrw_param_set *ps, const char *name, int no_decay, int ndim, int64_t a, int64_t b, int64_t c) {
    int64_t shape[3] = {a, b, c};
    return mrw_param_add(ps, name, MRW_PG_ENCODER, no_decay, ndim, shape);
}

mrw_status mrw_wavenet_add_params(mrw_wavenet *wn, const mrw_wavenet_config *cfg, mrw_param_set *ps, mrw_error *err) {
    mrw_status st = mrw_wavenet_config_check(cfg, err);
    if (st) return st;
    memset(wn, 0, sizeof *wn);
    wn->cfg = *cfg;
    wn->ps = ps;
    int C = cfg->res_ch, S = cfg->skip_ch, E = cfg->out_dim;
    char nm[MRW_PARAM_NAME_MAX];
    int bad = 0;
    bad |= (wn->in_w = add(ps, "encoder.model.input_conv.weight", 0, 3, C, 1, 1)) < 0;
    bad |= (wn->in_b = add(ps, "encoder.model.input_conv.bias", 1, 1, C, 0, 0)) < 0;
    for (int i = 0; i < cfg->n_layers && !bad; i++) {
        snprintf(nm, sizeof nm, "encoder.model.layers.%d.dilated_conv.weight", i);
        bad |= (wn->dil_w[i] = add(ps, nm, 0, 3, 2 * C, C, 2)) < 0;
        snprintf(nm, sizeof nm, "encoder.model.layers.%d.dilated_conv.bias", i);
        bad |= (wn->dil_b[i] = add(ps, nm, 1, 1, 2 * C, 0, 0)) < 0;
        snprintf(nm, sizeof nm, "encoder.model.layers.%d.res_conv.weight", i);
        bad |= (wn->res_w[i] = add(ps, nm, 0, 3, C, C, 1)) < 0;
        snprintf(nm, sizeof nm, "encoder.model.layers.%d.res_conv.bias", i);
        bad |= (wn->res_b[i] = add(ps, nm, 1, 1, C, 0, 0)) < 0;
        snprintf(nm, sizeof nm, "encoder.model.layers.%d.skip_conv.weight", i);
        bad |= (wn->skip_w[i] = add(ps, nm, 0, 3, S, C, 1)) < 0;
        snprintf(nm, sizeof nm, "encoder.model.layers.%d.skip_conv.bias", i);
        bad |= (wn->skip_b[i] = add(ps, nm, 1, 1, S, 0, 0)) < 0;
    }
    bad |= (wn->out_w = add(ps, "encoder.model.out_conv.weight", 0, 3, E, S, 1)) < 0;
    bad |= (wn->out_b = add(ps, "encoder.model.out_conv.bias", 1, 1, E, 0, 0)) < 0;
    if (bad) return mrw_err(err, MRW_E_NOMEM, "WaveNet: cannot add parameters (out of memory?)");
    return MRW_OK;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill_uniform(float *w, size_t n, double bound, uint64_t *s) {
    for (size_t i = 0; i < n; i++) w[i] = (float)(((splitmix(s) >> 11) * 0x1.0p-53 * 2 - 1) * bound);
}

void mrw_wavenet_init_random(mrw_wavenet *wn, uint64_t seed) {
    const mrw_wavenet_config *c = &wn->cfg;
    uint64_t s = seed ^ 0x5A5A5A5Aull;
    mrw_param_set *ps = wn->ps;
#define FILL(idx, fan_in) fill_uniform(mrw_param_w(ps, idx), ps->p[idx].n, 1.0 / sqrt((double)(fan_in)), &s)
    FILL(wn->in_w, 1);
    FILL(wn->in_b, 1);
    for (int i = 0; i < c->n_layers; i++) {
        FILL(wn->dil_w[i], 2 * c->res_ch);
        FILL(wn->dil_b[i], 2 * c->res_ch);
        FILL(wn->res_w[i], c->res_ch);
        FILL(wn->res_b[i], c->res_ch);
        FILL(wn->skip_w[i], c->res_ch);
        FILL(wn->skip_b[i], c->res_ch);
    }
    FILL(wn->out_w, c->skip_ch);
    FILL(wn->out_b, c->skip_ch);
#undef FILL
}

mrw_status mrw_wavenet_load(mrw_wavenet *wn, const struct mrw_tfile *f, mrw_error *err) {
    mrw_param_set *ps = wn->ps;
    for (int i = 0; i < ps->n; i++) {
        const mrw_param *p = &ps->p[i];
        if (strncmp(p->name, "encoder.model.", 14)) continue;
        const mrw_tensor_info *t = mrw_tfile_find(f, p->name);
        if (!t) return mrw_err(err, MRW_E_MISSING, "WaveNet: tensor '%s' is missing", p->name);
        if (t->dtype != MRW_DT_F32) return mrw_err(err, MRW_E_UNSUPPORTED, "WaveNet: tensor '%s' is not f32", p->name);
        int ok = t->ndim == p->ndim;
        for (int d = 0; ok && d < p->ndim; d++) ok = t->shape[d] == p->shape[d];
        if (!ok || t->nbytes != p->n * sizeof(float))
            return mrw_err(err, MRW_E_SHAPE, "WaveNet: tensor '%s' has another shape than the config's", p->name);
        memcpy(mrw_param_w(ps, i), t->data, t->nbytes);
    }
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------------ activations */

static size_t max3(size_t a, size_t b, size_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

mrw_status mrw_wavenet_acts_alloc(mrw_wavenet_acts *a, const mrw_wavenet_config *cfg, int B, int T, mrw_error *err) {
    memset(a, 0, sizeof *a);
    if (B < 1 || T < 1 || (int64_t)B * T > (1 << 26)) return mrw_err(err, MRW_E_ARG, "WaveNet: bad batch %d x %d", B, T);
    size_t N = (size_t)B * T, C = cfg->res_ch, S = cfg->skip_ch, E = cfg->out_dim, nl = cfg->n_layers;
    size_t scr = max3(mrw_tnn_linear_bwd_scratch((int)N, (int)S, (int)E), mrw_tnn_linear_bwd_scratch((int)N, (int)C, (int)S),
                      mrw_tnn_linear_bwd_scratch((int)N, (int)(2 * C), (int)(2 * C)));
    size_t tmp = N * (S > C ? S : C);
    if (scr < tmp) scr = tmp;
    size_t tot = N + (nl + 1) * N * C + nl * N * 2 * C + nl * N * C + 2 * N * S + /* backward: */ N * 2 * C +
                 N * 2 * C + N * C + N * C + N * 2 * C + N * S + scr;
    a->mem = malloc(tot * sizeof(float));
    if (!a->mem) return mrw_err(err, MRW_E_NOMEM, "WaveNet: out of memory for %zu activations", tot);
    float *p = a->mem;
    a->x = p, p += N;
    a->h = p, p += (nl + 1) * N * C;
    a->a = p, p += nl * N * 2 * C;
    a->z = p, p += nl * N * C;
    a->skip = p, p += N * S;
    a->rskip = p, p += N * S;
    a->col = p, p += N * 2 * C;
    a->dcol = p, p += N * 2 * C;
    a->dh = p, p += N * C;
    a->dz = p, p += N * C;
    a->da = p, p += N * 2 * C;
    a->dskip = p, p += N * S;
    a->scratch = p, p += scr;
    a->B = B, a->T = T;
    return MRW_OK;
}

void mrw_wavenet_acts_free(mrw_wavenet_acts *a) {
    free(a->mem);
    memset(a, 0, sizeof *a);
}

/* col[n, ci*2 + 0] = h[t - d, ci] (0 before the start of the series), col[n, ci*2 + 1] = h[t, ci]. */
static void causal_im2col(const float *h, int B, int T, int C, int d, float *col) {
#pragma omp parallel for schedule(static) if ((int64_t)B * T * C >= PAR_MIN)
    for (int64_t n = 0; n < (int64_t)B * T; n++) {
        int t = (int)(n % T);
        const float *hr = h + (size_t)n * C, *hp = t >= d ? h + (size_t)(n - d) * C : NULL;
        float *cr = col + (size_t)n * 2 * C;
        for (int c = 0; c < C; c++) {
            cr[2 * c] = hp ? hp[c] : 0.0f;
            cr[2 * c + 1] = hr[c];
        }
    }
}

static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

void mrw_wavenet_forward(mrw_kctx *k, const mrw_wavenet *wn, const float *x, mrw_wavenet_acts *a, float *out) {
    const mrw_wavenet_config *cf = &wn->cfg;
    const mrw_param_set *ps = wn->ps;
    const int B = a->B, T = a->T, C = cf->res_ch, S = cf->skip_ch, E = cf->out_dim;
    const size_t N = (size_t)B * T;
    memcpy(a->x, x, N * sizeof *x);
    const float *wi = mrw_param_w(ps, wn->in_w), *bi = mrw_param_w(ps, wn->in_b);
    for (size_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++) a->h[n * C + c] = wi[c] * x[n] + bi[c];
    memset(a->skip, 0, N * S * sizeof(float));
    float *tmp = a->scratch;
    for (int i = 0; i < cf->n_layers; i++) {
        float *h = a->h + (size_t)i * N * C, *hn = h + N * C;
        float *ai = a->a + (size_t)i * N * 2 * C, *zi = a->z + (size_t)i * N * C;
        causal_im2col(h, B, T, C, mrw_wavenet_dilation(cf, i), a->col);
        mrw_tnn_linear(k, mrw_param_w(ps, wn->dil_w[i]), mrw_param_w(ps, wn->dil_b[i]), a->col, (int)N, 2 * C, 2 * C,
                       ai);
#pragma omp parallel for schedule(static) if ((int64_t)N * C >= PAR_MIN)
        for (int64_t n = 0; n < (int64_t)N; n++)
            for (int c = 0; c < C; c++)
                zi[n * C + c] = tanhf(ai[n * 2 * C + c]) * sigm(ai[n * 2 * C + C + c]);
        mrw_tnn_linear(k, mrw_param_w(ps, wn->res_w[i]), mrw_param_w(ps, wn->res_b[i]), zi, (int)N, C, C, hn);
        for (size_t j = 0; j < N * C; j++) hn[j] += h[j];
        mrw_tnn_linear(k, mrw_param_w(ps, wn->skip_w[i]), mrw_param_w(ps, wn->skip_b[i]), zi, (int)N, C, S, tmp);
        for (size_t j = 0; j < N * S; j++) a->skip[j] += tmp[j];
    }
    for (size_t j = 0; j < N * S; j++) a->rskip[j] = a->skip[j] > 0 ? a->skip[j] : 0;
    mrw_tnn_linear(k, mrw_param_w(ps, wn->out_w), mrw_param_w(ps, wn->out_b), a->rskip, (int)N, S, E, out);
}

void mrw_wavenet_backward(mrw_kctx *k, const mrw_wavenet *wn, mrw_wavenet_acts *a, const float *dout, float *dx) {
    const mrw_wavenet_config *cf = &wn->cfg;
    mrw_param_set *ps = wn->ps;
    const int B = a->B, T = a->T, C = cf->res_ch, S = cf->skip_ch, E = cf->out_dim;
    const size_t N = (size_t)B * T;
    mrw_tnn_linear_bwd(k, mrw_param_w(ps, wn->out_w), a->rskip, dout, (int)N, S, E, mrw_param_g(ps, wn->out_w),
                       mrw_param_g(ps, wn->out_b), a->dskip, 0, a->scratch);
    for (size_t j = 0; j < N * S; j++)
        if (!(a->skip[j] > 0)) a->dskip[j] = 0;
    memset(a->dh, 0, N * C * sizeof(float));
    for (int i = cf->n_layers - 1; i >= 0; i--) {
        const float *h = a->h + (size_t)i * N * C;
        const float *ai = a->a + (size_t)i * N * 2 * C, *zi = a->z + (size_t)i * N * C;
        const int d = mrw_wavenet_dilation(cf, i);
        mrw_tnn_linear_bwd(k, mrw_param_w(ps, wn->skip_w[i]), zi, a->dskip, (int)N, C, S, mrw_param_g(ps, wn->skip_w[i]),
                           mrw_param_g(ps, wn->skip_b[i]), a->dz, 0, a->scratch);
        mrw_tnn_linear_bwd(k, mrw_param_w(ps, wn->res_w[i]), zi, a->dh, (int)N, C, C, mrw_param_g(ps, wn->res_w[i]),
                           mrw_param_g(ps, wn->res_b[i]), a->dz, 1, a->scratch);
#pragma omp parallel for schedule(static) if ((int64_t)N * C >= PAR_MIN)
        for (int64_t n = 0; n < (int64_t)N; n++)
            for (int c = 0; c < C; c++) {
                float f = tanhf(ai[n * 2 * C + c]), g = sigm(ai[n * 2 * C + C + c]), dz = a->dz[n * C + c];
                a->da[n * 2 * C + c] = dz * g * (1 - f * f);
                a->da[n * 2 * C + C + c] = dz * f * g * (1 - g);
            }
        causal_im2col(h, B, T, C, d, a->col);
        mrw_tnn_linear_bwd(k, mrw_param_w(ps, wn->dil_w[i]), a->col, a->da, (int)N, 2 * C, 2 * C,
                           mrw_param_g(ps, wn->dil_w[i]), mrw_param_g(ps, wn->dil_b[i]), a->dcol, 0, a->scratch);
        /* dh (the residual path) += col2im(dcol), series by series */
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                size_t n = (size_t)b * T + t;
                const float *dc = a->dcol + n * 2 * C;
                float *dr = a->dh + n * C, *dp = t >= d ? a->dh + (n - d) * C : NULL;
                for (int c = 0; c < C; c++) {
                    dr[c] += dc[2 * c + 1];
                    if (dp) dp[c] += dc[2 * c];
                }
            }
    }
    float *gwi = mrw_param_g(ps, wn->in_w), *gbi = mrw_param_g(ps, wn->in_b);
    const float *wi = mrw_param_w(ps, wn->in_w);
    for (int c = 0; c < C; c++) {
        double sw = 0, sb = 0;
        for (size_t n = 0; n < N; n++) {
            sw += (double)a->dh[n * C + c] * a->x[n];
            sb += a->dh[n * C + c];
        }
        gwi[c] += (float)sw, gbi[c] += (float)sb;
    }
    if (dx)
        for (size_t n = 0; n < N; n++) {
            double s = 0;
            for (int c = 0; c < C; c++) s += (double)a->dh[n * C + c] * wi[c];
            dx[n] = (float)s;
        }
}
