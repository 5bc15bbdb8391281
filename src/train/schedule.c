#include "train/schedule.h"

#include <math.h>
#include <string.h>

double mrw_schedule_lr(const mrw_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    if (step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
    if (s->kind == MRW_SCHED_CONSTANT) return s->lr;
    const int64_t span = s->total - s->warmup; /* steps after warmup */
    if (span <= 1) return s->kind == MRW_SCHED_COSINE && step >= s->total ? s->lr_final : s->lr;
    const double x = (double)(step - s->warmup);
    if (s->kind == MRW_SCHED_COSINE) {
        double p = x / (double)(span - 1); /* the last step (total - 1) uses lr_final */
        if (p > 1) p = 1;
        return s->lr_final + (s->lr - s->lr_final) * 0.5 * (1.0 + cos(M_PI * p));
    }
    /* wsd */
    double frac = s->decay_frac > 0 && s->decay_frac <= 1 ? s->decay_frac : 0.2;
    int64_t n_decay = (int64_t)ceil(frac * (double)span);
    if (n_decay < 1) n_decay = 1;
    const int64_t start = s->total - n_decay; /* first decaying step */
    if (step < start) return s->lr;
    double p = n_decay > 1 ? (double)(step - start + 1) / (double)n_decay : 1.0;
    if (p > 1) p = 1;
    return s->lr + (s->lr_final - s->lr) * p;
}

int mrw_schedule_parse(const char *name, mrw_sched_kind *out) {
    if (!strcmp(name, "cosine")) *out = MRW_SCHED_COSINE;
    else if (!strcmp(name, "wsd")) *out = MRW_SCHED_WSD;
    else if (!strcmp(name, "constant")) *out = MRW_SCHED_CONSTANT;
    else return -1;
    return 0;
}

const char *mrw_schedule_name(mrw_sched_kind k) {
    return k == MRW_SCHED_WSD ? "wsd" : k == MRW_SCHED_CONSTANT ? "constant" : "cosine";
}
