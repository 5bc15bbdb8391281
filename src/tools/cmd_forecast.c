/* modrwkv forecast: forecast a CSV column with a trained ModRWKV forecaster (-m) or a baseline (last value,
 * seasonal naive, DLinear-style linear), write the forecast as CSV and optionally plot it; print the baselines
 * table of a directory of benchmark series (--eval-baselines), or a forecaster's test-split table next to the
 * baselines (-m M --eval FILE|DIR). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/error.h"
#include "eval/metrics.h"
#include "eval/plot.h"
#include "tools/common.h"
#include "tools/tools.h"
#include "train/data.h"
#include "ts/baselines.h"
#include "ts/forecast_eval.h"
#include "ts/forecaster.h"
#include "ts/splits.h"

static const char *k_usage =
    "usage: modrwkv forecast --csv FILE --column NAME [options]\n"
    "       modrwkv forecast -m FORECASTER --csv FILE --column NAME [options]\n"
    "       modrwkv forecast -m FORECASTER --eval FILE|DIR [--max-windows N]\n"
    "       modrwkv forecast --eval-baselines DIR [--lookback N] [--horizon N]\n"
    "Forecasts the next --horizon values of one CSV column from its last --lookback values with a baseline,\n"
    "and prints them (or writes --out) as CSV rows \"row,forecast[,truth]\" (row = 0-based data row).\n"
    "With --at ROW the forecast starts at that row (its lookback ends just before it), so the truth is known\n"
    "and written next to it; without it the forecast continues the series past its end.\n\n"
    "  --csv FILE            the series (a header row, then numbers; a date column is ignored)\n"
    "  --column NAME         the column to forecast (default OT)\n"
    "  --horizon N           steps to forecast (default: the dataset's usual horizon, 96; ILI 24)\n"
    "  --lookback N          history the forecast sees (default: the dataset's usual lookback, 720; ILI 104)\n"
    "  --baseline KIND       last | seasonal | linear (default linear)\n"
    "                        linear: DLinear-style, fitted on the column's standard training split (ridge,\n"
    "                        alpha chosen on the validation split; see docs/FORECAST.md)\n"
    "  --period P            season length for 'seasonal' (default: the dataset's: 24 hourly, 96 15-min,\n"
    "                        144 10-min, 7 daily, 52 weekly)\n"
    "  --dataset NAME        the split rules and defaults of a known dataset (default: from the file name;\n"
    "                        ETTh1 ETTh2 ETTm1 ETTm2 weather exchange_rate national_illness electricity traffic\n"
    "                        custom)\n"
    "  --at ROW              forecast starting at data row ROW (needs ROW >= lookback)\n"
    "  --out FILE.csv        write the forecast there (default: stdout)\n"
    "  --plot FILE.png|svg   draw the history, the forecast and (with --at) the truth\n"
    "  -m, --model FILE      a trained ModRWKV forecaster (modrwkv train --csv …): lookback and horizon\n"
    "                        are the model's\n"
    "  --eval FILE|DIR       with -m: test-split MSE/MAE of the model on each CSV (all numeric columns,\n"
    "                        dataset-normalised) next to the baselines on the same windows (Markdown table)\n"
    "  --max-windows N       with --eval: about N evenly spaced test windows per channel (default: all)\n"
    "  -t, --threads N       threads (default: all cores)\n"
    "  --eval-baselines DIR  for every *.csv in DIR (all numeric columns, standard test split, stride 1):\n"
    "                        MSE and MAE of the three baselines, as a Markdown table\n";

static int is_opt(const char *o, const char *name) {
    size_t n = strlen(name);
    return !strncmp(o, name, n) && (o[n] == 0 || o[n] == '=');
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int eval_dir(const char *cmd, const char *dir, int lookback, int horizon, int threads) {
    DIR *dp = opendir(dir);
    if (!dp) return tool_fail(cmd, "cannot open directory '%s'", dir);
    char **paths = NULL;
    int n = 0, cap = 0, rc = 1;
    struct dirent *e;
    while ((e = readdir(dp))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcasecmp(e->d_name + l - 4, ".csv")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **np = realloc(paths, (size_t)cap * sizeof *np);
            if (!np) goto done;
            paths = np;
        }
        size_t pl = strlen(dir) + l + 2;
        if (!(paths[n] = malloc(pl))) goto done;
        snprintf(paths[n], pl, "%s/%s", dir, e->d_name);
        n++;
    }
    if (!n) {
        tool_fail(cmd, "no .csv file in '%s'", dir);
        goto done;
    }
    qsort(paths, (size_t)n, sizeof *paths, cmp_str);
    mrw_error err = {0};
    if (mrw_ts_eval_baselines((const char *const *)paths, n, lookback, horizon, threads, 1, stdout, &err))
        tool_fail(cmd, "%s", err.msg);
    else rc = 0;
done:
    closedir(dp);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    return rc;
}

static int eval_model(const char *cmd, const char *model, const char *target, const char *dataset, long long maxw,
                      int threads) {
    mrw_error err = {0};
    mrw_ts_eval_opts o = {.max_windows = maxw, .batch = 16, .n_threads = threads, .progress = 1, .dataset = dataset};
    if (mrw_ts_eval_forecaster_path(model, target, &o, stdout, &err)) return tool_fail(cmd, "%s", err.msg), 1;
    return 0;
}

static int write_csv(const char *cmd, const char *path, int64_t t, const float *fc, const float *truth, int H) {
    FILE *fp = stdout;
    char tmp[4096];
    if (path) {
        if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp)
            return tool_fail(cmd, "output path too long");
        if (!(fp = fopen(tmp, "w"))) return tool_fail(cmd, "cannot write '%s'", path);
    }
    fprintf(fp, truth ? "row,forecast,truth\n" : "row,forecast\n");
    for (int h = 0; h < H; h++) {
        if (truth) fprintf(fp, "%lld,%.9g,%.9g\n", (long long)(t + h), fc[h], truth[h]);
        else fprintf(fp, "%lld,%.9g\n", (long long)(t + h), fc[h]);
    }
    if (path) {
        int bad = ferror(fp);
        if (fclose(fp) || bad || rename(tmp, path)) {
            unlink(tmp);
            return tool_fail(cmd, "cannot write '%s'", path);
        }
    }
    return 0;
}

static int plot_forecast(const char *cmd, const char *path, const char *title, const float *hist, int L, int64_t t,
                         const float *fc, const float *truth, int H) {
    double *buf = malloc(sizeof(double) * 2 * ((size_t)L + 2 * (size_t)H + 2));
    if (!buf) return tool_fail(cmd, "out of memory");
    double *hx = buf, *hy = hx + L, *fx = hy + L, *fy = fx + H + 1, *tx = fy + H + 1, *ty = tx + H;
    for (int i = 0; i < L; i++) hx[i] = (double)(t - L + i), hy[i] = hist[i];
    /* the forecast line starts at the last observed point so that it joins the history */
    fx[0] = (double)(t - 1), fy[0] = hist[L - 1];
    for (int h = 0; h < H; h++) fx[h + 1] = (double)(t + h), fy[h + 1] = fc[h];
    if (truth)
        for (int h = 0; h < H; h++) tx[h] = (double)(t + h), ty[h] = truth[h];
    mrw_plot_series s[3] = {
        {hx, hy, L, 0x1f77b4, MRW_PLOT_LINE, 1.5f, "history"},
        {tx, ty, H, 0x2ca02c, MRW_PLOT_LINE, 1.5f, "truth"},
        {fx, fy, H + 1, 0xd62728, MRW_PLOT_LINE, 2.0f, "forecast"},
    };
    mrw_plot_series use[3];
    int ns = 0;
    use[ns++] = s[0];
    if (truth) use[ns++] = s[1];
    use[ns++] = s[2];
    mrw_plot_panel p = {title, "row", "value", use, ns, 1};
    mrw_error err = {0};
    int rc = 0;
    if (mrw_plot_write(path, &p, 1, 960, 480, &err)) rc = tool_fail(cmd, "%s", err.msg);
    free(buf);
    return rc;
}

int cmd_forecast(int argc, char **argv) {
    const char *cmd = "forecast";
    const char *csv = NULL, *column = "OT", *out = NULL, *plot = NULL, *model = NULL, *dataset = NULL,
               *eval_dir_path = NULL, *baseline = "linear", *eval_model_path = NULL;
    int max_windows = 0;
    int horizon = 0, lookback = 0, period = 0, threads = 0, at_set = 0;
    long long at = -1;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (is_opt(o, "--csv")) csv = tool_value(&a, o);
        else if (is_opt(o, "--column")) column = tool_value(&a, o);
        else if (is_opt(o, "--horizon")) tool_int(&a, o, 1, 1 << 20, &horizon);
        else if (is_opt(o, "--lookback")) tool_int(&a, o, 1, 1 << 20, &lookback);
        else if (is_opt(o, "--period")) tool_int(&a, o, 1, 1 << 20, &period);
        else if (is_opt(o, "--baseline")) baseline = tool_value(&a, o);
        else if (is_opt(o, "--dataset")) dataset = tool_value(&a, o);
        else if (is_opt(o, "--out") || !strcmp(o, "-o")) out = tool_value(&a, o);
        else if (is_opt(o, "--plot")) plot = tool_value(&a, o);
        else if (is_opt(o, "--model") || !strcmp(o, "-m")) model = tool_value(&a, o);
        else if (is_opt(o, "--threads") || !strcmp(o, "-t")) tool_int(&a, o, 1, 256, &threads);
        else if (is_opt(o, "--eval-baselines")) eval_dir_path = tool_value(&a, o);
        else if (is_opt(o, "--eval")) eval_model_path = tool_value(&a, o);
        else if (is_opt(o, "--max-windows")) tool_int(&a, o, 0, 1 << 30, &max_windows);
        else if (is_opt(o, "--at")) {
            const char *v = tool_value(&a, o);
            char *end;
            if (v) {
                at = strtoll(v, &end, 10);
                if (end == v || *end || at < 0) {
                    tool_fail(cmd, "--at expects a row number >= 0, got '%s'", v);
                    a.failed = 1;
                }
                at_set = 1;
            }
        } else tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    if (eval_model_path && !model) return tool_fail(cmd, "--eval needs a trained forecaster (-m FILE)"), 2;
    if (model && eval_model_path) return eval_model(cmd, model, eval_model_path, dataset, max_windows, threads);
    mrw_forecaster *fm = NULL;
    if (model) {
        mrw_error lerr = {0};
        if (mrw_forecaster_load(model, 1, threads, &fm, &lerr)) return tool_fail(cmd, "%s", lerr.msg), 1;
        if ((lookback && lookback != fm->cfg.lookback) || (horizon && horizon != fm->cfg.horizon)) {
            tool_fail(cmd, "%s forecasts %d -> %d steps; --lookback/--horizon ask for %d -> %d", model,
                      fm->cfg.lookback, fm->cfg.horizon, lookback ? lookback : fm->cfg.lookback,
                      horizon ? horizon : fm->cfg.horizon);
            mrw_forecaster_free(fm);
            return 2;
        }
        lookback = fm->cfg.lookback, horizon = fm->cfg.horizon;
    }
    if (eval_dir_path && !fm) return eval_dir(cmd, eval_dir_path, lookback, horizon, threads);
    if (!csv) return mrw_forecaster_free(fm), tool_fail(cmd, "give the series with --csv FILE (see modrwkv forecast --help)"), 2;
    mrw_ts_baseline kind;
    if (!strcmp(baseline, "last")) kind = MRW_TS_BASE_LAST;
    else if (!strcmp(baseline, "seasonal")) kind = MRW_TS_BASE_SEASONAL;
    else if (!strcmp(baseline, "linear")) kind = MRW_TS_BASE_LINEAR;
    else return mrw_forecaster_free(fm), tool_fail(cmd, "--baseline must be last, seasonal or linear, got '%s'", baseline), 2;
    if (plot) {
        size_t pl = strlen(plot);
        if (pl < 4 || (strcasecmp(plot + pl - 4, ".png") && strcasecmp(plot + pl - 4, ".svg")))
            return mrw_forecaster_free(fm), tool_fail(cmd, "--plot must end in .png or .svg: '%s'", plot), 2;
    }

    mrw_error err = {0};
    mrw_ts_dataset ds;
    if (mrw_ts_dataset_find(csv, dataset, &ds, &err))
        return mrw_forecaster_free(fm), tool_fail(cmd, "%s", err.msg), 2;
    if (lookback <= 0) lookback = ds.lookback;
    if (horizon <= 0) horizon = ds.horizon;
    if (period <= 0) period = ds.period;
    if (!fm && kind == MRW_TS_BASE_SEASONAL && period < 1)
        return tool_fail(cmd, "seasonal naive needs --period (dataset '%s' has no known period)", ds.name), 2;
    if (!fm && kind == MRW_TS_BASE_SEASONAL && period > lookback)
        return tool_fail(cmd, "--period %d is longer than the lookback %d", period, lookback), 2;

    const char *cols[1] = {column};
    mrw_csv_series cs;
    memset(&cs, 0, sizeof cs);
    if (mrw_csv_read(csv, cols, 1, &cs, &err)) return mrw_forecaster_free(fm), tool_fail(cmd, "%s", err.msg);
    int rc = 1;
    float *fc = NULL;
    mrw_ts_data d;
    memset(&d, 0, sizeof d);
    mrw_ts_dlinear lin;
    memset(&lin, 0, sizeof lin);
    int64_t n = cs.n_rows, t = at_set ? at : n;
    if (t > n) {
        tool_fail(cmd, "--at %lld is past the end of the series (%lld rows)", (long long)t, (long long)n);
        goto done;
    }
    if (t < lookback) {
        tool_fail(cmd, "%s: the forecast at row %lld needs %d rows of history (--lookback) and has %lld", csv,
                  (long long)t, lookback, (long long)t);
        goto done;
    }
    int have_truth = at_set && t + horizon <= n;
    if (at_set && !have_truth && t < n)
        fprintf(stderr, "modrwkv forecast: the truth is only partly known after row %lld: not shown\n", (long long)t);
    const float *x = cs.values + (t - lookback);
    if (!(fc = malloc((size_t)horizon * sizeof *fc))) {
        tool_fail(cmd, "out of memory");
        goto done;
    }
    if (fm) {
        /* the model works in the dataset-normalised space (the column's training-split mean and std) when the
         * series has the standard splits, else in the window's own units (it normalises every window itself) */
        double m0 = 0, s0 = 1;
        if (!mrw_ts_data_init(&d, cs.values, 1, n, (const char *const *)cs.names, &ds, lookback, horizon, 1, &err))
            m0 = d.mean[0], s0 = d.std[0];
        float *xz = malloc((size_t)lookback * sizeof *xz);
        if (!xz) {
            tool_fail(cmd, "out of memory");
            goto done;
        }
        for (int i = 0; i < lookback; i++) xz[i] = (float)((x[i] - m0) / s0);
        mrw_status fs = mrw_forecaster_forward(fm, xz, NULL, 1, fc, NULL, &err);
        free(xz);
        if (fs) {
            tool_fail(cmd, "%s", err.msg);
            goto done;
        }
        for (int h = 0; h < horizon; h++) fc[h] = (float)(fc[h] * s0 + m0);
    } else if (kind == MRW_TS_BASE_LINEAR) {
        if (mrw_ts_data_init(&d, cs.values, 1, n, (const char *const *)cs.names, &ds, lookback, horizon, 1, &err) ||
            mrw_ts_dlinear_fit(&lin, &d, NULL, 0, &err)) {
            tool_fail(cmd, "%s: the linear baseline is fitted on the %s training split: %s", csv, ds.name, err.msg);
            goto done;
        }
        fprintf(stderr, "modrwkv forecast: linear baseline fitted on %lld training windows (alpha %g, validation "
                        "MSE %.4f in normalised units)\n", (long long)lin.n_train, lin.alpha, lin.val_mse);
        float *xz = malloc((size_t)lookback * sizeof *xz);
        if (!xz) {
            tool_fail(cmd, "out of memory");
            goto done;
        }
        for (int i = 0; i < lookback; i++) xz[i] = (float)((x[i] - d.mean[0]) / d.std[0]);
        mrw_ts_dlinear_predict(&lin, xz, fc);
        free(xz);
        for (int h = 0; h < horizon; h++) fc[h] = (float)(fc[h] * d.std[0] + d.mean[0]);
    } else if (mrw_ts_baseline_forecast(kind, NULL, period, x, lookback, horizon, fc, &err)) {
        tool_fail(cmd, "%s", err.msg);
        goto done;
    }
    for (int h = 0; h < horizon; h++)
        if (!isfinite(fc[h])) {
            tool_fail(cmd, "the forecast is not finite at step %d (numeric overflow?)", h);
            goto done;
        }
    const float *truth = have_truth ? cs.values + t : NULL;
    if (write_csv(cmd, out, t, fc, truth, horizon)) goto done;
    if (truth) {
        fprintf(stderr, "modrwkv forecast: MSE %.6g, MAE %.6g against the truth (raw units)\n",
                mrw_mse(fc, truth, (size_t)horizon), mrw_mae(fc, truth, (size_t)horizon));
    }
    if (plot) {
        char title[256];
        if (fm) snprintf(title, sizeof title, "%s, column %s: ModRWKV forecaster, %d -> %d", ds.name, column, lookback,
                          horizon);
        else snprintf(title, sizeof title, "%s, column %s: %s baseline, %d -> %d", ds.name, column, baseline, lookback,
                      horizon);
        if (plot_forecast(cmd, plot, title, x, lookback, t, fc, truth, horizon)) goto done;
    }
    rc = 0;
done:
    free(fc);
    mrw_forecaster_free(fm);
    mrw_ts_dlinear_free(&lin);
    mrw_ts_data_free(&d);
    mrw_csv_series_free(&cs);
    return rc;
}
