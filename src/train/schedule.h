/* Learning-rate schedules as pure functions of the optimizer step (0-based: the lr used by step s), so a
 * resumed run needs only the step to continue the curve exactly.
 *
 *   warmup (all kinds): s < warmup  ->  lr * (s + 1) / warmup
 *   cosine:   then lr_final + (lr - lr_final) * (1 + cos(pi * p)) / 2,  p = (s - warmup) / (total - warmup)
 *   wsd:      warmup-stable-decay: lr until the last decay_frac of the steps after warmup, then a linear
 *             decay to lr_final at the last step
 *   constant: lr after warmup
 * p is clamped to [0, 1]: steps beyond `total` stay at lr_final. */
#ifndef MRW_TRAIN_SCHEDULE_H
#define MRW_TRAIN_SCHEDULE_H

#include <stdint.h>

typedef enum { MRW_SCHED_COSINE = 0, MRW_SCHED_WSD = 1, MRW_SCHED_CONSTANT = 2 } mrw_sched_kind;

typedef struct {
    mrw_sched_kind kind;
    double lr, lr_final;
    int64_t warmup, total; /* optimizer steps */
    double decay_frac;     /* wsd: fraction of the post-warmup steps spent decaying (default 0.2) */
} mrw_schedule;

double mrw_schedule_lr(const mrw_schedule *s, int64_t step);
/* "cosine" | "wsd" | "constant" -> 0, else -1. */
int mrw_schedule_parse(const char *name, mrw_sched_kind *out);
const char *mrw_schedule_name(mrw_sched_kind k);

#endif
