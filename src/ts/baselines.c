/* Forecasting baselines: last value, seasonal naive, DLinear-style linear model fitted by ridge regression
 * from exact window moments (see baselines.h). */
#include "ts/baselines.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/cpu/matmul.h"

void mrw_ts_last_value(const float *x, int L, int H, float *y) {
    for (int h = 0; h < H; h++) y[h] = x[L - 1];
}

int mrw_ts_seasonal_naive(const float *x, int L, int H, int period, float *y) {
    if (period < 1 || period > L) return -1;
    for (int h = 0; h < H; h++) y[h] = x[L - period + h % period];
    return 0;
}

void mrw_ts_decompose(const float *x, int L, int kernel, float *trend, float *seasonal) {
    int r = (kernel - 1) / 2;
    for (int i = 0; i < L; i++) {
        double s = 0;
        for (int u = -r; u <= r; u++) {
            int j = i + u;
            j = j < 0 ? 0 : j >= L ? L - 1 : j;
            s += x[j];
        }
        float t = (float)(s / (2 * r + 1));
        if (trend) trend[i] = t;
        if (seasonal) seasonal[i] = x[i] - t;
    }
}

void mrw_ts_dlinear_predict(const mrw_ts_dlinear *m, const float *x, float *y) {
    int L = m->L;
    float *t = malloc((size_t)L * 2 * sizeof *t);
    if (!t) {
        for (int h = 0; h < m->H; h++) y[h] = NAN;
        return;
    }
    float *s = t + L;
    mrw_ts_decompose(x, L, m->kernel, t, s);
    for (int h = 0; h < m->H; h++) {
        double acc = (double)m->bs[h] + m->bt[h];
        const float *ws = m->ws + (size_t)h * L, *wt = m->wt + (size_t)h * L;
        for (int i = 0; i < L; i++) acc += (double)ws[i] * s[i] + (double)wt[i] * t[i];
        y[h] = (float)acc;
    }
    free(t);
}

void mrw_ts_dlinear_free(mrw_ts_dlinear *m) {
    if (!m) return;
    free(m->ws);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------------------------------ moments */

typedef struct {
    int L, H;
    double *G, *S, *C, *Sy; /* L*L, L, L*H, H */
    double Q;
    int64_t n;
    double *tmp; /* per-series scratch: L*L + L + L*H + H + H */
} moments;

static int moments_init(moments *m, int L, int H) {
    memset(m, 0, sizeof *m);
    m->L = L, m->H = H;
    size_t tot = (size_t)L * L + L + (size_t)L * H + H;
    m->G = calloc(tot, sizeof(double));
    m->tmp = calloc(tot + H, sizeof(double));
    if (!m->G || !m->tmp) return -1;
    m->S = m->G + (size_t)L * L;
    m->C = m->S + L;
    m->Sy = m->C + (size_t)L * H;
    return 0;
}

static void moments_free(moments *m) {
    free(m->G);
    free(m->tmp);
    memset(m, 0, sizeof *m);
}

/* Adds the windows starting at rows p0..p1 (inclusive) of z: x = z[p, p+L), y = z[p+L, p+L+H). Needs
 * z[p1 + L + H - 1] to exist. */
static void moments_add_series(moments *m, const float *z, int64_t p0, int64_t p1) {
    int L = m->L, H = m->H;
    double *G = m->tmp, *S = G + (size_t)L * L, *C = S + L, *Sy = C + (size_t)L * H, *q = Sy + H;
    /* first row of G, first column and row of C, first entries of S, Sy, q: direct sums */
#pragma omp parallel for schedule(static)
    for (int j = 0; j < L; j++) {
        double g = 0, c = 0;
        for (int64_t p = p0; p <= p1; p++) {
            g += (double)z[p] * z[p + j];
            c += (double)z[p + j] * z[p + L];
        }
        G[j] = g;
        G[(size_t)j * L] = g;
        C[(size_t)j * H] = c;
    }
#pragma omp parallel for schedule(static)
    for (int h = 0; h < H; h++) {
        double c = 0;
        for (int64_t p = p0; p <= p1; p++) c += (double)z[p] * z[p + L + h];
        C[h] = c;
    }
    double s0 = 0, sy0 = 0, q0 = 0;
    for (int64_t p = p0; p <= p1; p++) {
        s0 += z[p];
        sy0 += z[p + L];
        q0 += (double)z[p + L] * z[p + L];
    }
    S[0] = s0, Sy[0] = sy0, q[0] = q0;
    /* shift recursions: moving every window one row later drops row p0 and adds row p1 + 1 */
    for (int i = 1; i < L; i++) {
        double a0 = z[p0 + i - 1], a1 = z[p1 + i];
        for (int j = i; j < L; j++) {
            double v = G[(size_t)(i - 1) * L + j - 1] - a0 * z[p0 + j - 1] + a1 * z[p1 + j];
            G[(size_t)i * L + j] = v;
            G[(size_t)j * L + i] = v;
        }
        S[i] = S[i - 1] - a0 + a1;
        for (int h = 1; h < H; h++)
            C[(size_t)i * H + h] = C[(size_t)(i - 1) * H + h - 1] - a0 * z[p0 + L + h - 1] + a1 * z[p1 + L + h];
    }
    for (int h = 1; h < H; h++) {
        double a0 = z[p0 + L + h - 1], a1 = z[p1 + L + h];
        Sy[h] = Sy[h - 1] - a0 + a1;
        q[h] = q[h - 1] - a0 * a0 + a1 * a1;
    }
    size_t nG = (size_t)L * L + L + (size_t)L * H + H;
    for (size_t i = 0; i < nG; i++) m->G[i] += m->tmp[i];
    for (int h = 0; h < H; h++) m->Q += q[h];
    m->n += p1 - p0 + 1;
}

/* Moments of every channel's stride-1 windows of a split. */
static int moments_split(moments *m, const mrw_ts_data *d, int split) {
    if (moments_init(m, d->lookback, d->horizon)) return -1;
    int64_t per = mrw_ts_window_count(&d->sp, split, d->lookback, d->horizon, 1);
    if (per < 1) return 0;
    int64_t t0 = mrw_ts_window_start(&d->sp, split, d->lookback, 1, 0);
    for (int c = 0; c < d->n_ch; c++)
        moments_add_series(m, d->z + (size_t)c * d->n_rows, t0 - d->lookback, t0 - d->lookback + per - 1);
    return 0;
}

/* out[L, ncols] = A · M[L, ncols], A the moving average with replicated ends (rows of M are contiguous). */
static void apply_avg(const double *M, int L, int ncols, int kernel, double *out) {
    int r = (kernel - 1) / 2;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < L; i++) {
        double *o = out + (size_t)i * ncols;
        for (int c = 0; c < ncols; c++) o[c] = 0;
        for (int u = -r; u <= r; u++) {
            int j = i + u;
            j = j < 0 ? 0 : j >= L ? L - 1 : j;
            const double *row = M + (size_t)j * ncols;
            for (int c = 0; c < ncols; c++) o[c] += row[c];
        }
        for (int c = 0; c < ncols; c++) o[c] /= (2 * r + 1);
    }
}

/* Feature moments of (s, t, 1): Gf [F, F], Cf [F, H], F = 2L + 1. */
static int feature_moments(const moments *m, int kernel, double *Gf, double *Cf) {
    int L = m->L, H = m->H, F = 2 * L + 1;
    double *T1 = malloc((size_t)L * L * sizeof(double)), *T1t = malloc((size_t)L * L * sizeof(double)),
           *T2 = malloc((size_t)L * L * sizeof(double)), *AS = malloc((size_t)L * sizeof(double)),
           *AC = malloc((size_t)L * H * sizeof(double));
    int rc = -1;
    if (!T1 || !T1t || !T2 || !AS || !AC) goto done;
    apply_avg(m->G, L, L, kernel, T1); /* A G */
    for (int i = 0; i < L; i++)
        for (int j = 0; j < L; j++) T1t[(size_t)j * L + i] = T1[(size_t)i * L + j];
    apply_avg(T1t, L, L, kernel, T2); /* A (A G)ᵀ = A G Aᵀ */
    apply_avg(m->S, L, 1, kernel, AS);
    apply_avg(m->C, L, H, kernel, AC);
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < L; j++) {
            size_t ij = (size_t)i * L + j, ji = (size_t)j * L + i;
            double t2 = T2[ij];
            Gf[(size_t)i * F + j] = m->G[ij] - T1[ij] - T1[ji] + t2; /* (I-A) G (I-A)ᵀ */
            Gf[(size_t)i * F + L + j] = T1[ji] - t2;                 /* (I-A) G Aᵀ */
            Gf[(size_t)(L + i) * F + j] = T1[ij] - t2;               /* A G (I-A)ᵀ */
            Gf[(size_t)(L + i) * F + L + j] = t2;                    /* A G Aᵀ */
        }
        double ss = m->S[i] - AS[i], st = AS[i];
        Gf[(size_t)i * F + 2 * L] = ss, Gf[(size_t)(2 * L) * F + i] = ss;
        Gf[(size_t)(L + i) * F + 2 * L] = st, Gf[(size_t)(2 * L) * F + L + i] = st;
        for (int h = 0; h < H; h++) {
            Cf[(size_t)i * H + h] = m->C[(size_t)i * H + h] - AC[(size_t)i * H + h];
            Cf[(size_t)(L + i) * H + h] = AC[(size_t)i * H + h];
        }
    }
    Gf[(size_t)(2 * L) * F + 2 * L] = (double)m->n;
    for (int h = 0; h < H; h++) Cf[(size_t)(2 * L) * H + h] = m->Sy[h];
    rc = 0;
done:
    free(T1), free(T1t), free(T2), free(AS), free(AC);
    return rc;
}

/* Cholesky of the symmetric positive definite M [n, n] in place (lower triangle); -1 if not positive. */
static int cholesky(double *M, int n) {
    for (int j = 0; j < n; j++) {
        double *rj = M + (size_t)j * n;
        double d = rj[j];
        for (int k = 0; k < j; k++) d -= rj[k] * rj[k];
        if (!(d > 0)) return -1;
        d = sqrt(d);
        rj[j] = d;
#pragma omp parallel for schedule(static)
        for (int i = j + 1; i < n; i++) {
            double *ri = M + (size_t)i * n;
            double v = ri[j];
            for (int k = 0; k < j; k++) v -= ri[k] * rj[k];
            ri[j] = v / d;
        }
    }
    return 0;
}

/* Solves L Lᵀ X = B for B [n, m] (row-major, overwritten by X). */
static void chol_solve(const double *Lm, int n, double *B, int m) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < m; c++) {
        for (int i = 0; i < n; i++) {
            double v = B[(size_t)i * m + c];
            const double *ri = Lm + (size_t)i * n;
            for (int k = 0; k < i; k++) v -= ri[k] * B[(size_t)k * m + c];
            B[(size_t)i * m + c] = v / ri[i];
        }
        for (int i = n - 1; i >= 0; i--) {
            double v = B[(size_t)i * m + c];
            for (int k = i + 1; k < n; k++) v -= Lm[(size_t)k * n + i] * B[(size_t)k * m + c];
            B[(size_t)i * m + c] = v / Lm[(size_t)i * n + i];
        }
    }
}

/* (Σ_h w_hᵀ G w_h - 2 w_hᵀ C_h + Q) / (n H): the MSE of weights W [F, H] from moments. */
static double moments_mse(const double *Gf, const double *Cf, double Q, int64_t n, int F, int H, const double *W) {
    double tot = Q;
#pragma omp parallel for reduction(+ : tot) schedule(static)
    for (int i = 0; i < F; i++) {
        const double *gi = Gf + (size_t)i * F;
        for (int h = 0; h < H; h++) {
            double gw = 0;
            for (int j = 0; j < F; j++) gw += gi[j] * W[(size_t)j * H + h];
            tot += W[(size_t)i * H + h] * (gw - 2 * Cf[(size_t)i * H + h]);
        }
    }
    return n > 0 ? tot / ((double)n * H) : NAN;
}

mrw_status mrw_ts_dlinear_fit(mrw_ts_dlinear *m, const mrw_ts_data *d, const double *alphas, int n_alpha,
                              mrw_error *err) {
    static const double k_grid[] = {1e-4, 1e-3, 1e-2, 1e-1, 1};
    memset(m, 0, sizeof *m);
    if (!alphas || n_alpha < 1) alphas = k_grid, n_alpha = 5;
    for (int a = 0; a < n_alpha; a++)
        if (!(alphas[a] > 0) || !isfinite(alphas[a])) return mrw_err(err, MRW_E_ARG, "ridge alpha must be > 0");
    int L = d->lookback, H = d->horizon, F = 2 * L + 1, kernel = MRW_TS_DLINEAR_KERNEL;
    if (L > 8192) return mrw_err(err, MRW_E_LIMIT, "the linear baseline supports lookbacks up to 8192 (got %d)", L);
    moments tr, va;
    memset(&va, 0, sizeof va);
    double *Gf = NULL, *Cf = NULL, *Gv = NULL, *Cv = NULL, *M = NULL, *W = NULL, *best = NULL;
    mrw_status st = MRW_OK;
    if (moments_split(&tr, d, MRW_TS_TRAIN) || moments_split(&va, d, MRW_TS_VAL)) {
        st = mrw_err(err, MRW_E_NOMEM, "out of memory");
        goto done;
    }
    if (tr.n < 1) {
        st = mrw_err(err, MRW_E_ARG, "no training window for the linear baseline");
        goto done;
    }
    size_t FF = (size_t)F * F, FH = (size_t)F * H;
    Gf = malloc(FF * sizeof *Gf), Cf = malloc(FH * sizeof *Cf), Gv = malloc(FF * sizeof *Gv),
    Cv = malloc(FH * sizeof *Cv), M = malloc(FF * sizeof *M), W = malloc(FH * sizeof *W),
    best = malloc(FH * sizeof *best);
    if (!Gf || !Cf || !Gv || !Cv || !M || !W || !best || feature_moments(&tr, kernel, Gf, Cf) ||
        feature_moments(&va, kernel, Gv, Cv)) {
        st = mrw_err(err, MRW_E_NOMEM, "out of memory");
        goto done;
    }
    double best_mse = INFINITY, best_alpha = 0;
    for (int a = 0; a < n_alpha; a++) {
        double lambda = alphas[a] * (double)tr.n;
        memcpy(M, Gf, FF * sizeof *M);
        for (int i = 0; i < 2 * L; i++) M[(size_t)i * F + i] += lambda;
        if (cholesky(M, F)) continue; /* not positive definite: skip this alpha */
        memcpy(W, Cf, FH * sizeof *W);
        chol_solve(M, F, W, H);
        double mse = va.n > 0 ? moments_mse(Gv, Cv, va.Q, va.n, F, H, W) : 0;
        if (!isfinite(mse)) continue;
        if (mse < best_mse || best_alpha == 0) {
            best_mse = mse, best_alpha = alphas[a];
            memcpy(best, W, FH * sizeof *W);
        }
    }
    if (best_alpha == 0) {
        st = mrw_err(err, MRW_E_ARG, "the linear baseline's normal equations are singular (constant series?)");
        goto done;
    }
    /* parameters: one allocation */
    size_t nw = (size_t)H * L;
    m->ws = calloc(3 * nw + 4 * (size_t)H, sizeof(float));
    if (!m->ws) {
        st = mrw_err(err, MRW_E_NOMEM, "out of memory");
        goto done;
    }
    m->wt = m->ws + nw, m->w = m->wt + nw, m->bs = m->w + nw, m->bt = m->bs + H, m->b = m->bt + H;
    m->L = L, m->H = H, m->kernel = kernel;
    m->alpha = best_alpha, m->lambda = best_alpha * (double)tr.n, m->val_mse = best_mse, m->n_train = tr.n;
    for (int h = 0; h < H; h++) {
        for (int i = 0; i < L; i++) {
            m->ws[(size_t)h * L + i] = (float)best[(size_t)i * H + h];
            m->wt[(size_t)h * L + i] = (float)best[(size_t)(L + i) * H + h];
        }
        m->bs[h] = (float)best[(size_t)(2 * L) * H + h];
        m->bt[h] = 0;
        m->b[h] = m->bs[h];
    }
    /* collapsed W = Ws + (Wt - Ws) A, in double: (D A)[h][j] = Σ_i D[h][i] A[i][j] */
    {
        int r = (kernel - 1) / 2;
        double *row = calloc((size_t)L, sizeof *row);
        if (!row) {
            mrw_ts_dlinear_free(m);
            st = mrw_err(err, MRW_E_NOMEM, "out of memory");
            goto done;
        }
        for (int h = 0; h < H; h++) {
            for (int j = 0; j < L; j++) row[j] = best[(size_t)j * H + h];
            for (int i = 0; i < L; i++) {
                double dd = (best[(size_t)(L + i) * H + h] - best[(size_t)i * H + h]) / (2 * r + 1);
                for (int u = -r; u <= r; u++) {
                    int j = i + u;
                    j = j < 0 ? 0 : j >= L ? L - 1 : j;
                    row[j] += dd;
                }
            }
            for (int j = 0; j < L; j++) m->w[(size_t)h * L + j] = (float)row[j];
        }
        free(row);
    }
done:
    moments_free(&tr);
    moments_free(&va);
    free(Gf), free(Cf), free(Gv), free(Cv), free(M), free(W), free(best);
    return st;
}

/* ------------------------------------------------------------------------------------------ evaluation */

mrw_status mrw_ts_baseline_forecast(mrw_ts_baseline kind, const mrw_ts_dlinear *lin, int period, const float *x,
                                    int L, int H, float *y, mrw_error *err) {
    switch (kind) {
    case MRW_TS_BASE_LAST: mrw_ts_last_value(x, L, H, y); return MRW_OK;
    case MRW_TS_BASE_SEASONAL:
        if (mrw_ts_seasonal_naive(x, L, H, period, y))
            return mrw_err(err, MRW_E_ARG, "seasonal naive needs 1 <= period <= lookback (period %d, lookback %d)",
                           period, L);
        return MRW_OK;
    case MRW_TS_BASE_LINEAR:
        if (!lin || lin->L != L || lin->H != H)
            return mrw_err(err, MRW_E_ARG, "the linear baseline was fitted for another lookback/horizon");
        mrw_ts_dlinear_predict(lin, x, y);
        return MRW_OK;
    }
    return mrw_err(err, MRW_E_ARG, "unknown baseline %d", (int)kind);
}

#define EVAL_BLOCK 256

mrw_status mrw_ts_eval_baseline(mrw_kctx *k, const mrw_ts_data *d, int split, mrw_ts_baseline kind,
                                const mrw_ts_dlinear *lin, int period, mrw_ts_score *out, mrw_error *err) {
    memset(out, 0, sizeof *out);
    int L = d->lookback, H = d->horizon;
    if (kind == MRW_TS_BASE_SEASONAL && (period < 1 || period > L))
        return mrw_err(err, MRW_E_ARG, "seasonal naive needs 1 <= period <= lookback (period %d, lookback %d)", period,
                       L);
    if (kind == MRW_TS_BASE_LINEAR && (!lin || lin->L != L || lin->H != H))
        return mrw_err(err, MRW_E_ARG, "the linear baseline was fitted for another lookback/horizon");
    int64_t per = mrw_ts_data_windows_per_channel(d, split);
    if (per < 1) return mrw_err(err, MRW_E_ARG, "no window in this split");
    float *X = malloc((size_t)EVAL_BLOCK * (L + H) * sizeof *X), *Y = malloc((size_t)EVAL_BLOCK * H * sizeof *Y);
    if (!X || !Y) {
        free(X), free(Y);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    mrw_kctx local;
    int own = 0;
    if (!k && kind == MRW_TS_BASE_LINEAR) {
        mrw_kctx_init(&local, 1);
        k = &local, own = 1;
    }
    mrw_mat Wm;
    if (kind == MRW_TS_BASE_LINEAR) mrw_mat_init(&Wm, MRW_DT_F32, H, L, lin->w);
    double se = 0, ae = 0;
    int64_t nw = per * d->n_ch;
    float *T = X + (size_t)EVAL_BLOCK * L; /* targets */
    for (int64_t w0 = 0; w0 < nw; w0 += EVAL_BLOCK) {
        int B = nw - w0 < EVAL_BLOCK ? (int)(nw - w0) : EVAL_BLOCK;
        for (int b = 0; b < B; b++) mrw_ts_data_window(d, split, w0 + b, X + (size_t)b * L, T + (size_t)b * H, NULL);
        if (kind == MRW_TS_BASE_LINEAR) {
            mrw_matmul(k, &Wm, X, L, Y, H, B, 0);
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++) Y[(size_t)b * H + h] += lin->b[h];
        } else {
            for (int b = 0; b < B; b++) {
                if (kind == MRW_TS_BASE_LAST) mrw_ts_last_value(X + (size_t)b * L, L, H, Y + (size_t)b * H);
                else mrw_ts_seasonal_naive(X + (size_t)b * L, L, H, period, Y + (size_t)b * H);
            }
        }
        for (size_t i = 0; i < (size_t)B * H; i++) {
            double e = (double)Y[i] - T[i];
            se += e * e;
            ae += fabs(e);
        }
    }
    if (own) mrw_kctx_free(&local);
    free(X), free(Y);
    out->n_windows = nw;
    out->n_values = nw * H;
    out->mse = se / (double)out->n_values;
    out->mae = ae / (double)out->n_values;
    return MRW_OK;
}

mrw_status mrw_ts_eval_baselines(const char *const *paths, int n_paths, int lookback, int horizon, int n_threads,
                                 int progress, FILE *out, mrw_error *err) {
    mrw_kctx k;
    mrw_kctx_init(&k, n_threads);
    fprintf(out, "| dataset | L -> H | channels | test windows | last value MSE | MAE | seasonal naive (P) MSE | MAE "
                 "| linear (DLinear-style) MSE | MAE | ridge alpha |\n");
    fprintf(out, "|---|---|---|---|---|---|---|---|---|---|---|\n");
    mrw_status st = MRW_OK;
    for (int i = 0; i < n_paths && !st; i++) {
        mrw_ts_data d;
        if ((st = mrw_ts_data_load(&d, paths[i], NULL, 0, NULL, lookback, horizon, 1, err))) break;
        if (progress) fprintf(stderr, "%s: %s, %d channels, %lld rows, fitting the linear baseline...\n", paths[i],
                              d.ds.name, d.n_ch, (long long)d.n_rows);
        mrw_ts_score s_last, s_seas = {0}, s_lin;
        mrw_ts_dlinear lin;
        int P = d.ds.period;
        int have_seas = P >= 1 && P <= d.lookback;
        if ((st = mrw_ts_dlinear_fit(&lin, &d, NULL, 0, err))) {
            mrw_err_prefix(err, "%s", paths[i]);
            mrw_ts_data_free(&d);
            break;
        }
        st = mrw_ts_eval_baseline(&k, &d, MRW_TS_TEST, MRW_TS_BASE_LAST, NULL, 0, &s_last, err);
        if (!st && have_seas) st = mrw_ts_eval_baseline(&k, &d, MRW_TS_TEST, MRW_TS_BASE_SEASONAL, NULL, P, &s_seas, err);
        if (!st) st = mrw_ts_eval_baseline(&k, &d, MRW_TS_TEST, MRW_TS_BASE_LINEAR, &lin, 0, &s_lin, err);
        if (!st) {
            char seas[64], seas_mae[32];
            if (have_seas) {
                snprintf(seas, sizeof seas, "%.4f (%d)", s_seas.mse, P);
                snprintf(seas_mae, sizeof seas_mae, "%.4f", s_seas.mae);
            } else {
                snprintf(seas, sizeof seas, "-");
                snprintf(seas_mae, sizeof seas_mae, "-");
            }
            fprintf(out, "| %s | %d -> %d | %d | %lld | %.4f | %.4f | %s | %s | %.4f | %.4f | %g |\n", d.ds.name,
                    d.lookback, d.horizon, d.n_ch, (long long)s_last.n_windows, s_last.mse, s_last.mae, seas,
                    seas_mae, s_lin.mse, s_lin.mae, lin.alpha);
            fflush(out);
        }
        mrw_ts_dlinear_free(&lin);
        mrw_ts_data_free(&d);
    }
    mrw_kctx_free(&k);
    return st;
}
