/* Line charts as PNG or SVG, and the trainer's JSONL log.
 *
 * A chart is a column of panels (e.g. loss above learning rate), each with its own axes, ticks, labels and
 * legend, holding line or marker series. SVG is written as text; PNG is drawn into an RGB buffer by the
 * rasteriser here (anti-aliased lines, a built-in 5x9 bitmap font) and encoded with stb_image_write. The
 * output type follows the file extension (.png / .svg); the file is written atomically (temp + rename), so a
 * failure never leaves a partial image. Non-finite points are skipped (they break a line). */
#ifndef MRW_EVAL_PLOT_H
#define MRW_EVAL_PLOT_H

#include <stdint.h>

#include "modrwkv.h"

typedef enum { MRW_PLOT_LINE = 0, MRW_PLOT_MARKERS = 1 } mrw_plot_style;

typedef struct {
    const double *x, *y;
    int64_t n;
    uint32_t rgb;  /* 0xRRGGBB */
    mrw_plot_style style;
    float width;   /* line width / marker size in pixels (0: 1.5 / 5) */
    const char *label; /* legend text, or NULL */
} mrw_plot_series;

typedef struct {
    const char *title, *xlabel, *ylabel;
    const mrw_plot_series *series;
    int n_series;
    float weight; /* share of the height (0: 1) */
} mrw_plot_panel;

#define MRW_PLOT_MAX_SIDE 8192

/* Writes the panels, stacked top to bottom, as a width x height image (64 <= side <= MRW_PLOT_MAX_SIDE).
 * The format comes from the extension of path: ".png" or ".svg" (case-insensitive). */
mrw_status mrw_plot_write(const char *path, const mrw_plot_panel *panels, int n_panels, int width, int height,
                          mrw_error *err);

/* The rasterised image of the same chart (RGB, width*height*3 bytes, malloc'd), for tests and callers that
 * encode it themselves. */
mrw_status mrw_plot_render_rgb(const mrw_plot_panel *panels, int n_panels, int width, int height, uint8_t **rgb,
                               mrw_error *err);

/* ---------------------------------------------------------------------------------------- training log */

/* The trainer's JSONL log: one object per optimizer step with "step", "loss", "lr" (and "epoch", "grad_norm",
 * "tokens", "tokens_per_s", "elapsed_s", which are not needed here); objects with "eval_loss" are held-out
 * points at their "step". */
typedef struct {
    int64_t n, n_eval;
    double *step, *loss, *lr; /* n each; lr is NaN where a line has none */
    double *eval_step, *eval_loss;
    int64_t n_bad; /* malformed lines skipped */
} mrw_train_log;

#define MRW_TRAIN_LOG_MAX_LINE (1 << 20)

/* Reads a log. Every malformed line (not JSON, not an object, "step" or "loss"/"eval_loss" missing, not a
 * number or not finite, longer than MRW_TRAIN_LOG_MAX_LINE) is reported as "PATH:LINE: reason" through warn
 * (may be NULL) and skipped; blank lines are ignored. A log without any point is an error. */
mrw_status mrw_train_log_read(const char *path, mrw_train_log *out, void (*warn)(void *user, const char *msg),
                              void *user, mrw_error *err);
void mrw_train_log_free(mrw_train_log *log);

/* Trailing moving average over `window` points (window <= 1: a copy); non-finite values are left out of the
 * mean (NaN where a window holds none). out must not alias in. */
void mrw_moving_average(const double *in, int64_t n, int window, double *out);

#endif
