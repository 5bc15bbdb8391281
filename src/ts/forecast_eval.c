/* Test-split evaluation of a trained forecaster next to the baselines on the same windows (forecast_eval.h). */
#include "ts/forecast_eval.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/progress.h"
#include "ts/baselines.h"
#include "ts/forecaster.h"
#include "ts/splits.h"

enum { S_MODEL, S_LAST, S_SEAS, S_LIN, N_S };

static mrw_status eval_one(mrw_forecaster *f, const char *path, const mrw_ts_eval_opts *o, FILE *out,
                           mrw_error *err) {
    const int L = f->cfg.lookback, H = f->cfg.horizon, B = f->max_B;
    mrw_ts_data d;
    mrw_ts_dlinear lin;
    memset(&d, 0, sizeof d);
    memset(&lin, 0, sizeof lin);
    mrw_status s = mrw_ts_data_load(&d, path, NULL, 0, o->dataset, L, H, 1, err);
    if (s) return s;
    float *x = NULL, *y = NULL, *yh = NULL, *yb = NULL;
    const int64_t per = mrw_ts_data_windows_per_channel(&d, MRW_TS_TEST);
    if (per < 1) {
        s = mrw_err(err, MRW_E_ARG, "%s: no test window of %d -> %d", path, L, H);
        goto done;
    }
    if ((s = mrw_ts_dlinear_fit(&lin, &d, NULL, 0, err))) goto done;
    int64_t step = 1, use = per;
    if (o->max_windows > 0 && per > o->max_windows) step = per / o->max_windows, use = (per + step - 1) / step;
    const int64_t total = use * d.n_ch;
    x = malloc((size_t)B * L * sizeof *x), y = malloc((size_t)B * H * sizeof *y);
    yh = malloc((size_t)B * H * sizeof *yh), yb = malloc((size_t)H * sizeof *yb);
    if (!x || !y || !yh || !yb) {
        s = mrw_err(err, MRW_E_NOMEM, "out of memory");
        goto done;
    }
    const int period = d.ds.period > 0 && d.ds.period <= L ? d.ds.period : 0;
    double se[N_S] = {0}, ae[N_S] = {0};
    mrw_progress bar;
    mrw_progress_start(&bar, d.ds.name, (uint64_t)total, "windows", o->progress);
    for (int64_t done = 0; done < total;) {
        int nb = 0;
        for (; nb < B && done + nb < total; nb++) {
            int64_t i = done + nb, ch = i / use, k = (i % use) * step;
            mrw_ts_data_window(&d, MRW_TS_TEST, ch * per + k, x + (size_t)nb * L, y + (size_t)nb * H, NULL);
        }
        if ((s = mrw_forecaster_forward(f, x, NULL, nb, yh, NULL, err))) goto done;
        for (int b = 0; b < nb; b++) {
            const float *xb = x + (size_t)b * L, *tb = y + (size_t)b * H;
            for (int kind = S_MODEL; kind < N_S; kind++) {
                const float *p = yh + (size_t)b * H;
                if (kind == S_LAST) mrw_ts_last_value(xb, L, H, yb), p = yb;
                else if (kind == S_SEAS) {
                    if (!period) continue;
                    mrw_ts_seasonal_naive(xb, L, H, period, yb), p = yb;
                } else if (kind == S_LIN) mrw_ts_dlinear_predict(&lin, xb, yb), p = yb;
                for (int h = 0; h < H; h++) {
                    double e = (double)p[h] - tb[h];
                    se[kind] += e * e, ae[kind] += fabs(e);
                }
            }
        }
        done += nb;
        mrw_progress_update(&bar, (uint64_t)done);
    }
    mrw_progress_finish(&bar);
    f->B = 0;
    const double n = (double)total * H;
    fprintf(out, "| %s | %d → %d | %d | %" PRId64 "%s | **%.4f** | %.4f | %.4f | %.4f |", d.ds.name, L, H, d.n_ch,
            total, step > 1 ? " (subsampled)" : "", se[S_MODEL] / n, ae[S_MODEL] / n, se[S_LAST] / n, ae[S_LAST] / n);
    if (period) fprintf(out, " %.4f (%d) | %.4f |", se[S_SEAS] / n, period, ae[S_SEAS] / n);
    else fprintf(out, " – | – |");
    fprintf(out, " %.4f | %.4f |\n", se[S_LIN] / n, ae[S_LIN] / n);
    fflush(out);
done:
    free(x), free(y), free(yh), free(yb);
    mrw_ts_dlinear_free(&lin);
    mrw_ts_data_free(&d);
    return s;
}

mrw_status mrw_ts_eval_forecaster(const char *model_path, const char *const *paths, int n_paths,
                                  const mrw_ts_eval_opts *o, FILE *out, mrw_error *err) {
    mrw_forecaster *f = NULL;
    const int batch = o->batch > 0 ? o->batch : 16;
    mrw_status s = mrw_forecaster_load(model_path, batch, o->n_threads, &f, err);
    if (s) return s;
    fprintf(out, "| dataset | L → H | channels | test windows | ModRWKV MSE | MAE | last value MSE | MAE | "
                 "seasonal naive (P) MSE | MAE | linear MSE | MAE |\n");
    fprintf(out, "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_paths && !s; i++) {
        s = eval_one(f, paths[i], o, out, err);
        if (s) s = mrw_err(err, s, "%s: %s", paths[i], err->msg);
    }
    mrw_forecaster_free(f);
    return s;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

mrw_status mrw_ts_eval_forecaster_path(const char *model_path, const char *file_or_dir, const mrw_ts_eval_opts *o,
                                       FILE *out, mrw_error *err) {
    DIR *dp = opendir(file_or_dir);
    if (!dp) return mrw_ts_eval_forecaster(model_path, &file_or_dir, 1, o, out, err);
    char **paths = NULL;
    int n = 0, cap = 0;
    mrw_status s = MRW_OK;
    struct dirent *e;
    while ((e = readdir(dp))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcasecmp(e->d_name + l - 4, ".csv")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **np = realloc(paths, (size_t)cap * sizeof *np);
            if (!np) {
                s = mrw_err(err, MRW_E_NOMEM, "out of memory");
                goto done;
            }
            paths = np;
        }
        size_t pl = strlen(file_or_dir) + l + 2;
        if (!(paths[n] = malloc(pl))) {
            s = mrw_err(err, MRW_E_NOMEM, "out of memory");
            goto done;
        }
        snprintf(paths[n], pl, "%s/%s", file_or_dir, e->d_name);
        n++;
    }
    if (!n) {
        s = mrw_err(err, MRW_E_ARG, "no .csv file in '%s'", file_or_dir);
        goto done;
    }
    qsort(paths, (size_t)n, sizeof *paths, cmp_str);
    s = mrw_ts_eval_forecaster(model_path, (const char *const *)paths, n, o, out, err);
done:
    closedir(dp);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    return s;
}
