#include "base/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double mrw_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fmt_amount(char *buf, size_t n, double v, const char *unit) {
    if (unit && unit[0] == 'B' && unit[1] == 0) {
        const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        int i = 0;
        while (v >= 1024 && i < 4) { v /= 1024; i++; }
        snprintf(buf, n, "%.1f %s", v, u[i]);
    } else {
        snprintf(buf, n, "%.0f%s%s", v, unit && *unit ? " " : "", unit ? unit : "");
    }
}

void mrw_progress_start(mrw_progress *p, const char *label, uint64_t total, const char *unit, int enabled) {
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->t0 = p->last_draw = mrw_now();
    p->tty = isatty(2);
    p->last_decile = -1;
    p->enabled = enabled;
}

void mrw_progress_update(mrw_progress *p, uint64_t done) {
    if (!p->enabled || !p->total) return;
    double now = mrw_now(), el = now - p->t0;
    double frac = (double)done / (double)p->total;
    if (frac > 1) frac = 1;
    char rate[32], amount[32], total[32];
    fmt_amount(rate, sizeof rate, el > 0 ? done / el : 0, p->unit);
    fmt_amount(amount, sizeof amount, (double)done, p->unit);
    fmt_amount(total, sizeof total, (double)p->total, p->unit);
    double eta = frac > 0 ? el / frac - el : 0;
    if (p->tty) {
        if (now - p->last_draw < 0.1 && done < p->total) return;
        p->last_draw = now;
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %3.0f%% %s/%s  %s/s  ETA %.0fs ", p->label, bar, frac * 100, amount, total, rate,
                eta);
    } else {
        int decile = (int)(frac * 10);
        if (decile == p->last_decile) return;
        p->last_decile = decile;
        fprintf(stderr, "%s: %3.0f%% (%s of %s, %s/s)\n", p->label, frac * 100, amount, total, rate);
    }
    fflush(stderr);
}

void mrw_progress_finish(mrw_progress *p) {
    if (!p->enabled) return;
    mrw_progress_update(p, p->total);
    if (p->tty) fprintf(stderr, "\n");
    p->enabled = 0;
}

void mrw_progress_cb(void *user, uint64_t done, uint64_t total) {
    mrw_progress *p = user;
    if (total) p->total = total;
    mrw_progress_update(p, done);
}
