/* Evaluation of a trained forecaster (`modrwkv eval --task forecast`, `modrwkv forecast -m M --eval`): for each
 * CSV (dataset from the file name, all numeric columns, channel-independent), the MSE and MAE on the standard
 * test split in the dataset-normalised space (splits.h), next to the three baselines scored on exactly the same
 * windows, as a Markdown table. */
#ifndef MRW_TS_FORECAST_EVAL_H
#define MRW_TS_FORECAST_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "modrwkv.h"

typedef struct {
    int64_t max_windows; /* per channel: 0 = every test window (stride 1); else every k-th, about this many */
    int batch;           /* windows per forward (default 16) */
    int n_threads;
    int progress;        /* progress bar / lines on stderr */
    const char *dataset; /* NULL: from each file name */
} mrw_ts_eval_opts;

mrw_status mrw_ts_eval_forecaster(const char *model_path, const char *const *paths, int n_paths,
                                  const mrw_ts_eval_opts *o, FILE *out, mrw_error *err);

/* The same for one CSV file or every *.csv of a directory (sorted by name). */
mrw_status mrw_ts_eval_forecaster_path(const char *model_path, const char *file_or_dir, const mrw_ts_eval_opts *o,
                                       FILE *out, mrw_error *err);

#endif
