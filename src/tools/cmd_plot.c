/* modrwkv plot: loss and learning-rate curves of a training log, as PNG or SVG. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eval/plot.h"
#include "tools/common.h"
#include "tools/tools.h"

static const char *k_usage =
    "usage: modrwkv plot LOG.jsonl -o OUT.png|OUT.svg [options]\n"
    "Draws the training loss (with its moving average and the held-out \"eval_loss\" points) above the\n"
    "learning rate, against the optimizer step, from the JSONL log that `modrwkv train` writes (one object per\n"
    "step with \"step\", \"loss\", \"lr\", ...). The image type follows the extension; the file is written\n"
    "atomically. Malformed lines are reported with their line numbers and skipped.\n\n"
    "  -o, --out FILE       the image (.png or .svg)\n"
    "      --smooth N       moving average over N steps (default: about 1/50 of the steps; 1 = off)\n"
    "      --size WxH       image size in pixels (default 960x720)\n"
    "      --title TEXT     title of the loss panel (default: the log's file name)\n";

#define MAX_WARNINGS 20

typedef struct {
    int shown;
} warn_state;

static void on_warn(void *user, const char *msg) {
    warn_state *w = user;
    if (w->shown++ < MAX_WARNINGS) fprintf(stderr, "modrwkv plot: warning: %s\n", msg);
}

int cmd_plot(int argc, char **argv) {
    const char *cmd = "plot";
    const char *log_path = NULL, *out = NULL, *title = NULL;
    int smooth = 0, width = 960, height = 720;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strcmp(o, "-o") || !strncmp(o, "--out", 5)) out = tool_value(&a, o);
        else if (!strncmp(o, "--smooth", 8)) tool_int(&a, o, 1, 1 << 24, &smooth);
        else if (!strncmp(o, "--title", 7)) title = tool_value(&a, o);
        else if (!strncmp(o, "--size", 6)) {
            const char *v = tool_value(&a, o);
            char tail;
            if (v && (sscanf(v, "%dx%d%c", &width, &height, &tail) != 2 || width < 64 || height < 64 ||
                      width > MRW_PLOT_MAX_SIDE || height > MRW_PLOT_MAX_SIDE)) {
                tool_fail(cmd, "--size expects WxH with sides in 64..%d, got '%s'", MRW_PLOT_MAX_SIDE, v);
                a.failed = 1;
            }
        } else if (o[0] != '-' || !strcmp(o, "-")) {
            if (log_path) {
                tool_fail(cmd, "give one log file");
                return 2;
            }
            log_path = o;
        } else tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    if (!log_path) return tool_fail(cmd, "give the training log (LOG.jsonl)"), 2;
    if (!out) return tool_fail(cmd, "give the output image with -o FILE.png or -o FILE.svg"), 2;
    size_t ol = strlen(out);
    if (ol < 4 || (strcasecmp(out + ol - 4, ".png") && strcasecmp(out + ol - 4, ".svg")))
        return tool_fail(cmd, "the output must end in .png or .svg: '%s'", out), 2;

    mrw_train_log log;
    mrw_error err = {0};
    warn_state ws = {0};
    if (mrw_train_log_read(log_path, &log, on_warn, &ws, &err)) return tool_fail(cmd, "%s", err.msg);
    if (ws.shown > MAX_WARNINGS) fprintf(stderr, "modrwkv plot: warning: ... %d more malformed lines\n", ws.shown - MAX_WARNINGS);
    if (log.n_bad) fprintf(stderr, "modrwkv plot: skipped %lld malformed line(s)\n", (long long)log.n_bad);

    int rc = 1;
    double *smoothed = NULL;
    if (smooth == 0) smooth = log.n >= 100 ? (int)(log.n / 50) : 1;
    if (smooth > 1 && log.n) {
        if (!(smoothed = malloc((size_t)log.n * sizeof *smoothed))) {
            tool_fail(cmd, "out of memory");
            goto done;
        }
        mrw_moving_average(log.loss, log.n, smooth, smoothed);
    }
    char smooth_label[64];
    snprintf(smooth_label, sizeof smooth_label, "train (mean of %d)", smooth);
    mrw_plot_series loss_s[3];
    int nl = 0;
    if (log.n && smoothed) {
        loss_s[nl++] = (mrw_plot_series){log.step, log.loss, log.n, 0xa9c7e8, MRW_PLOT_LINE, 1, "train"};
        loss_s[nl++] = (mrw_plot_series){log.step, smoothed, log.n, 0x1f5fa8, MRW_PLOT_LINE, 2, smooth_label};
    } else if (log.n) {
        loss_s[nl++] = (mrw_plot_series){log.step, log.loss, log.n, 0x1f5fa8, MRW_PLOT_LINE, 1.5, "train"};
    }
    if (log.n_eval)
        loss_s[nl++] = (mrw_plot_series){log.eval_step, log.eval_loss, log.n_eval, 0xe0661b, MRW_PLOT_MARKERS, 7, "held-out"};
    int64_t n_lr = 0;
    for (int64_t i = 0; i < log.n; i++) n_lr += isfinite(log.lr[i]) != 0;
    mrw_plot_series lr_s = {log.step, log.lr, log.n, 0x2e8b3e, MRW_PLOT_LINE, 1.5, NULL};
    const char *base = strrchr(log_path, '/');
    base = base ? base + 1 : log_path;
    char tbuf[256];
    snprintf(tbuf, sizeof tbuf, "loss: %s", title ? title : base);
    mrw_plot_panel panels[2] = {
        {tbuf, n_lr ? NULL : "step", "loss (nats/token)", loss_s, nl, 2},
        {"learning rate", "step", "lr", &lr_s, 1, 1},
    };
    if (!n_lr) fprintf(stderr, "modrwkv plot: the log has no \"lr\": drawing the loss only\n");
    if (mrw_plot_write(out, panels, n_lr ? 2 : 1, width, height, &err)) {
        tool_fail(cmd, "%s", err.msg);
        goto done;
    }
    fprintf(stderr, "modrwkv plot: %lld steps, %lld held-out points -> %s\n", (long long)log.n, (long long)log.n_eval, out);
    rc = 0;
done:
    free(smoothed);
    mrw_train_log_free(&log);
    return rc;
}
