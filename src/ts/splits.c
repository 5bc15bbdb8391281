/* Standard splits, normalisation and windows of the time-series benchmarks (see splits.h). */
#include "ts/splits.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "train/data.h"

typedef struct {
    const char *name;
    const char *aliases[3];
    mrw_ts_rule rule;
    int period, lookback, horizon;
} ds_entry;

static const ds_entry k_datasets[] = {
    {"ETTh1", {NULL}, MRW_TS_RULE_ETTH, 24, 720, 96},
    {"ETTh2", {NULL}, MRW_TS_RULE_ETTH, 24, 720, 96},
    {"ETTm1", {NULL}, MRW_TS_RULE_ETTM, 96, 720, 96},
    {"ETTm2", {NULL}, MRW_TS_RULE_ETTM, 96, 720, 96},
    {"weather", {NULL}, MRW_TS_RULE_RATIO, 144, 720, 96},
    {"exchange_rate", {"exchange", NULL}, MRW_TS_RULE_RATIO, 7, 720, 96},
    {"national_illness", {"ili", "illness", NULL}, MRW_TS_RULE_RATIO, 52, 104, 24},
    {"electricity", {"ecl", NULL}, MRW_TS_RULE_RATIO, 24, 720, 96},
    {"traffic", {NULL}, MRW_TS_RULE_RATIO, 24, 720, 96},
    {"custom", {NULL}, MRW_TS_RULE_RATIO, 0, 720, 96},
};
#define N_DATASETS ((int)(sizeof k_datasets / sizeof k_datasets[0]))

static void set_ds(mrw_ts_dataset *out, const ds_entry *e) {
    out->name = e->name;
    out->rule = e->rule;
    out->period = e->period;
    out->lookback = e->lookback;
    out->horizon = e->horizon;
}

static const ds_entry *lookup(const char *s, size_t n) {
    for (int i = 0; i < N_DATASETS; i++) {
        const ds_entry *e = &k_datasets[i];
        if (strlen(e->name) == n && !strncasecmp(e->name, s, n)) return e;
        for (int a = 0; a < 3 && e->aliases[a]; a++)
            if (strlen(e->aliases[a]) == n && !strncasecmp(e->aliases[a], s, n)) return e;
    }
    return NULL;
}

mrw_status mrw_ts_dataset_find(const char *path, const char *override, mrw_ts_dataset *out, mrw_error *err) {
    if (override && *override) {
        const ds_entry *e = lookup(override, strlen(override));
        if (!e) {
            char list[512];
            size_t off = 0;
            for (int i = 0; i < N_DATASETS && off < sizeof list; i++)
                off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "", k_datasets[i].name);
            return mrw_err(err, MRW_E_ARG, "unknown dataset '%s' (known: %s)", override, list);
        }
        set_ds(out, e);
        return MRW_OK;
    }
    const char *base = path ? path : "";
    const char *slash = strrchr(base, '/');
    if (slash) base = slash + 1;
    size_t n = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) n = (size_t)(dot - base);
    const ds_entry *e = lookup(base, n);
    set_ds(out, e ? e : &k_datasets[N_DATASETS - 1]);
    return MRW_OK;
}

mrw_status mrw_ts_splits_compute(mrw_ts_rule rule, int64_t n_rows, mrw_ts_splits *out, mrw_error *err) {
    memset(out, 0, sizeof *out);
    if (rule == MRW_TS_RULE_ETTH || rule == MRW_TS_RULE_ETTM) {
        int64_t m = rule == MRW_TS_RULE_ETTH ? 30 * 24 : 30 * 24 * 4; /* rows per 30-day month */
        if (n_rows < 20 * m)
            return mrw_err(err, MRW_E_ARG, "the ETT split needs %lld rows (12/4/4 months), the series has %lld",
                           (long long)(20 * m), (long long)n_rows);
        int64_t b[4] = {0, 12 * m, 16 * m, 20 * m};
        for (int i = 0; i < 3; i++) out->start[i] = b[i], out->end[i] = b[i + 1];
        return MRW_OK;
    }
    if (rule != MRW_TS_RULE_RATIO) return mrw_err(err, MRW_E_ARG, "unknown split rule %d", (int)rule);
    if (n_rows < 10) return mrw_err(err, MRW_E_ARG, "a series of %lld rows is too short to split 70/10/20", (long long)n_rows);
    int64_t n_train = (int64_t)(n_rows * 0.7), n_test = (int64_t)(n_rows * 0.2);
    /* int(len * 0.7) in Python: the same double product truncated */
    out->start[0] = 0, out->end[0] = n_train;
    out->start[1] = n_train, out->end[1] = n_rows - n_test;
    out->start[2] = n_rows - n_test, out->end[2] = n_rows;
    return MRW_OK;
}

int64_t mrw_ts_window_count(const mrw_ts_splits *s, int split, int lookback, int horizon, int stride) {
    if (split < 0 || split > 2 || lookback < 1 || horizon < 1 || stride < 1) return 0;
    int64_t t0 = s->start[split] > lookback ? s->start[split] : lookback;
    int64_t last = s->end[split] - horizon; /* largest t */
    if (last < t0) return 0;
    return (last - t0) / stride + 1;
}

int64_t mrw_ts_window_start(const mrw_ts_splits *s, int split, int lookback, int stride, int64_t k) {
    int64_t t0 = s->start[split] > lookback ? s->start[split] : lookback;
    return t0 + k * stride;
}

void mrw_ts_data_free(mrw_ts_data *d) {
    if (!d) return;
    if (d->names)
        for (int c = 0; c < d->n_ch; c++) free(d->names[c]);
    free(d->names);
    free(d->z);
    free(d->mean);
    free(d->std);
    memset(d, 0, sizeof *d);
}

mrw_status mrw_ts_data_init(mrw_ts_data *d, const float *values, int n_ch, int64_t n_rows,
                            const char *const *names, const mrw_ts_dataset *ds, int lookback, int horizon,
                            int stride, mrw_error *err) {
    memset(d, 0, sizeof *d);
    if (!values || n_ch < 1 || n_rows < 1 || !ds) return mrw_err(err, MRW_E_ARG, "empty series");
    if (stride < 1) return mrw_err(err, MRW_E_ARG, "stride must be >= 1 (got %d)", stride);
    if (lookback <= 0) lookback = ds->lookback;
    if (horizon <= 0) horizon = ds->horizon;
    if (lookback > (1 << 20) || horizon > (1 << 20))
        return mrw_err(err, MRW_E_LIMIT, "lookback %d / horizon %d too large", lookback, horizon);
    d->ds = *ds;
    d->lookback = lookback, d->horizon = horizon, d->stride = stride;
    mrw_status st = mrw_ts_splits_compute(ds->rule, n_rows, &d->sp, err);
    if (st) return st;
    for (int s = 0; s < 3; s++) {
        if (mrw_ts_window_count(&d->sp, s, lookback, horizon, stride) < 1) {
            static const char *nm[3] = {"training", "validation", "test"};
            return mrw_err(err, MRW_E_ARG,
                           "no %s window fits: the %s split holds rows [%lld, %lld) of %lld, and a window needs a "
                           "lookback of %d rows before its %d forecast rows (the series is too short for "
                           "lookback %d + horizon %d)",
                           nm[s], nm[s], (long long)d->sp.start[s], (long long)d->sp.end[s], (long long)n_rows,
                           lookback, horizon, lookback, horizon);
        }
    }
    d->n_ch = n_ch, d->n_rows = n_rows;
    d->z = malloc((size_t)n_ch * (size_t)n_rows * sizeof *d->z);
    d->mean = malloc((size_t)n_ch * sizeof *d->mean);
    d->std = malloc((size_t)n_ch * sizeof *d->std);
    d->names = calloc((size_t)n_ch, sizeof *d->names);
    if (!d->z || !d->mean || !d->std || !d->names) {
        mrw_ts_data_free(d);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    for (int c = 0; c < n_ch; c++) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%d", c);
        d->names[c] = strdup(names && names[c] ? names[c] : tmp);
        if (!d->names[c]) {
            mrw_ts_data_free(d);
            return mrw_err(err, MRW_E_NOMEM, "out of memory");
        }
        const float *x = values + (size_t)c * (size_t)n_rows;
        for (int64_t i = 0; i < n_rows; i++)
            if (!isfinite(x[i])) {
                mrw_status e = mrw_err(err, MRW_E_FORMAT, "column '%s', row %lld: value is not finite",
                                       d->names[c], (long long)i);
                mrw_ts_data_free(d);
                return e;
            }
        int64_t nt = d->sp.end[MRW_TS_TRAIN];
        double m = 0, v = 0;
        for (int64_t i = 0; i < nt; i++) m += x[i];
        m /= (double)nt;
        for (int64_t i = 0; i < nt; i++) v += ((double)x[i] - m) * ((double)x[i] - m);
        double sd = sqrt(v / (double)nt);
        if (!(sd > 0) || !isfinite(sd)) sd = 1.0;
        d->mean[c] = m, d->std[c] = sd;
        float *z = d->z + (size_t)c * (size_t)n_rows;
        for (int64_t i = 0; i < n_rows; i++) z[i] = (float)(((double)x[i] - m) / sd);
    }
    return MRW_OK;
}

mrw_status mrw_ts_data_load(mrw_ts_data *d, const char *path, const char *const *columns, int n_columns,
                            const char *override, int lookback, int horizon, int stride, mrw_error *err) {
    memset(d, 0, sizeof *d);
    mrw_ts_dataset ds;
    mrw_status st = mrw_ts_dataset_find(path, override, &ds, err);
    if (st) return st;
    mrw_csv_series cs;
    memset(&cs, 0, sizeof cs);
    st = mrw_csv_read(path, columns, n_columns, &cs, err);
    if (st) return st;
    if (cs.n_cols < 1 || cs.n_rows < 1) {
        mrw_csv_series_free(&cs);
        return mrw_err(err, MRW_E_FORMAT, "%s: no numeric column with data", path);
    }
    st = mrw_ts_data_init(d, cs.values, cs.n_cols, cs.n_rows, (const char *const *)cs.names, &ds, lookback, horizon,
                          stride, err);
    mrw_csv_series_free(&cs);
    if (st) return mrw_err_prefix(err, "%s", path);
    return MRW_OK;
}

int64_t mrw_ts_data_windows_per_channel(const mrw_ts_data *d, int split) {
    return mrw_ts_window_count(&d->sp, split, d->lookback, d->horizon, d->stride);
}

int64_t mrw_ts_data_windows(const mrw_ts_data *d, int split) {
    return mrw_ts_data_windows_per_channel(d, split) * d->n_ch;
}

int64_t mrw_ts_data_window(const mrw_ts_data *d, int split, int64_t w, float *x, float *y, int *channel) {
    int64_t per = mrw_ts_data_windows_per_channel(d, split);
    if (w < 0 || per < 1 || w >= per * d->n_ch) return -1;
    int c = (int)(w / per);
    int64_t t = mrw_ts_window_start(&d->sp, split, d->lookback, d->stride, w % per);
    const float *z = d->z + (size_t)c * (size_t)d->n_rows;
    if (x) memcpy(x, z + t - d->lookback, (size_t)d->lookback * sizeof *x);
    if (y) memcpy(y, z + t, (size_t)d->horizon * sizeof *y);
    if (channel) *channel = c;
    return t;
}

void mrw_ts_instance_norm(const float *x, int n, float eps, float *y, float *mean, float *std) {
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += x[i];
    m = n > 0 ? m / n : 0;
    for (int i = 0; i < n; i++) v += ((double)x[i] - m) * ((double)x[i] - m);
    v = n > 0 ? v / n : 0;
    double sd = sqrt(v + eps);
    if (!(sd > 0)) sd = 1;
    for (int i = 0; i < n; i++) y[i] = (float)(((double)x[i] - m) / sd);
    *mean = (float)m;
    *std = (float)sd;
}
