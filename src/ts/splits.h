/* Time-series benchmarks the way the forecasting literature uses them (Informer / Autoformer / DLinear /
 * PatchTST data loaders): the standard chronological splits, normalisation with the training split's
 * per-channel mean and standard deviation, and channel-independent sliding windows.
 *
 * Splits (rows of the file, after the header; ../shared/reference/encoders.md):
 *   ETTh1, ETTh2 (hourly):  train [0, 8640), val [8640, 11520), test [11520, 14400)   (12/4/4 months of 30 days;
 *                           rows after 14400 are not used)
 *   ETTm1, ETTm2 (15 min):  4x those: [0, 34560), [34560, 46080), [46080, 57600)
 *   everything else:       n_train = floor(0.7 n), n_test = floor(0.2 n), n_val = n - n_train - n_test,
 *                           train [0, n_train), val [n_train, n - n_test), test [n - n_test, n)
 * A split's range is where its forecast targets lie. A window is (lookback L, horizon H, forecast start t):
 * input rows [t - L, t), target rows [t, t + H). Windows of a split have start <= t and t + H <= end; their
 * lookback may reach back into the previous split (as in the literature, whose borders are
 * [start - L, end)); t >= L always. So the test targets do not depend on L, and every method evaluated with
 * the same H sees the same test targets. Window k of a split has t = max(start, L) + k * stride.
 *
 * Normalisation: z = (x - mean_c) / std_c with mean and std (population, ddof 0, like sklearn's
 * StandardScaler) of channel c over the training rows [0, train_end); a constant channel gets std 1.
 * Metrics (MSE, MAE) are computed on z. (The forecaster additionally normalises each input window on its own:
 * mean and sqrt(var + 1e-5); that is the model's business, not the benchmark's.)
 *
 * Channel independence: every channel is a univariate series; window w of a split is channel w / n_t,
 * k = w % n_t, where n_t is the per-channel window count. The MSE over all channels' windows is the
 * "multivariate" (M) number of the literature for channel-independent models.
 *
 * Dataset detection: by the file's base name (case-insensitive, before the extension): ETTh1, ETTh2, ETTm1,
 * ETTm2, weather, exchange_rate (or exchange), national_illness (or ili, illness), electricity (or ecl),
 * traffic; an override name (the same names) wins; anything else is "custom" with the 70/10/20 rule.
 * Usual settings (lookback -> horizon, seasonal period in rows):
 *   ETTh*            720 -> 96, period 24 (a day of hours)
 *   ETTm*            720 -> 96, period 96 (a day of 15 minutes)
 *   weather          720 -> 96, period 144 (a day of 10 minutes)
 *   exchange_rate    720 -> 96, period 7 (daily rows, a week)
 *   national_illness 104 -> 24, period 52 (weekly rows, a year). ILI has only 966 rows (193 test rows), so
 *                    the literature uses short lookbacks and horizons 24/36/48/60; we follow PatchTST's
 *                    L = 104 and report H = 24.
 *   electricity, traffic (not in ../shared/data): 720 -> 96, period 24 (hourly)
 *   custom           720 -> 96, no period (seasonal naive needs --period)
 * The paper's setting is 720 -> 96 for every dataset it reports. */
#ifndef MRW_TS_SPLITS_H
#define MRW_TS_SPLITS_H

#include <stdint.h>

#include "modrwkv.h"

typedef enum { MRW_TS_RULE_ETTH = 1, MRW_TS_RULE_ETTM = 2, MRW_TS_RULE_RATIO = 3 } mrw_ts_rule;

enum { MRW_TS_TRAIN = 0, MRW_TS_VAL = 1, MRW_TS_TEST = 2 };

typedef struct {
    const char *name;   /* canonical name: "ETTh1", ..., "weather", "exchange_rate", "national_illness", "custom" */
    mrw_ts_rule rule;
    int period;         /* seasonal period in rows (0: none known) */
    int lookback, horizon; /* the usual setting */
} mrw_ts_dataset;

/* The dataset of a file (by base name) or of `override` (a name from the list above, case-insensitive;
 * NULL or "" = detect). An override that names no known dataset is an error listing the names. */
mrw_status mrw_ts_dataset_find(const char *path, const char *override, mrw_ts_dataset *out, mrw_error *err);

typedef struct {
    int64_t start[3], end[3]; /* forecast-target rows of train, val, test */
} mrw_ts_splits;

/* The split ranges for a series of n_rows rows. ETT rules need at least 14400 / 57600 rows; the ratio rule
 * at least 10 rows. */
mrw_status mrw_ts_splits_compute(mrw_ts_rule rule, int64_t n_rows, mrw_ts_splits *out, mrw_error *err);

/* Windows per channel in a split (0 if none fit), and the forecast start of window k. */
int64_t mrw_ts_window_count(const mrw_ts_splits *s, int split, int lookback, int horizon, int stride);
int64_t mrw_ts_window_start(const mrw_ts_splits *s, int split, int lookback, int stride, int64_t k);

/* A loaded, normalised benchmark series. */
typedef struct {
    mrw_ts_dataset ds;
    int n_ch;
    int64_t n_rows;
    char **names;          /* n_ch column names */
    float *z;              /* normalised values, column-major [n_ch][n_rows] */
    double *mean, *std;    /* n_ch each (training rows) */
    mrw_ts_splits sp;
    int lookback, horizon, stride;
} mrw_ts_data;

/* From raw column-major values (copied). lookback/horizon <= 0 take the dataset's usual setting; stride >= 1.
 * Fails with a clear message when the series cannot give at least one window in each split (e.g. shorter
 * than the lookback), when a value is not finite, or on bad arguments. names may be NULL ("0", "1", ...). */
mrw_status mrw_ts_data_init(mrw_ts_data *d, const float *values, int n_ch, int64_t n_rows,
                            const char *const *names, const mrw_ts_dataset *ds, int lookback, int horizon,
                            int stride, mrw_error *err);
/* Reads CSV columns (NULL / 0 = every numeric column) with mrw_csv_read and calls mrw_ts_data_init; the
 * dataset comes from the file name or `override`. Errors name the file. */
mrw_status mrw_ts_data_load(mrw_ts_data *d, const char *path, const char *const *columns, int n_columns,
                            const char *override, int lookback, int horizon, int stride, mrw_error *err);
void mrw_ts_data_free(mrw_ts_data *d);

/* Windows per channel and in all channels, for a split. */
int64_t mrw_ts_data_windows_per_channel(const mrw_ts_data *d, int split);
int64_t mrw_ts_data_windows(const mrw_ts_data *d, int split);
/* Window w of a split (channel w / per-channel count): x [lookback] and y [horizon] (either may be NULL),
 * normalised. Returns the forecast start row (or -1 when w is out of range); *channel receives the channel. */
int64_t mrw_ts_data_window(const mrw_ts_data *d, int split, int64_t w, float *x, float *y, int *channel);

/* Per-series (per window) normalisation used by the forecaster: mean and sqrt(biased var + eps) of x[0..n);
 * returns mean and std; y = (x - mean) / std may alias x. */
void mrw_ts_instance_norm(const float *x, int n, float eps, float *y, float *mean, float *std);

#endif
