/* Progress display for long work: a bar with rate and ETA when stderr is a terminal, otherwise a plain line
 * every 10%. */
#ifndef MRW_BASE_PROGRESS_H
#define MRW_BASE_PROGRESS_H

#include <stdint.h>

typedef struct {
    const char *label;
    const char *unit; /* "B" formats as bytes; anything else is printed after the count */
    uint64_t total;
    double t0, last_draw;
    int tty, last_decile, enabled;
} mrw_progress;

void mrw_progress_start(mrw_progress *p, const char *label, uint64_t total, const char *unit, int enabled);
void mrw_progress_update(mrw_progress *p, uint64_t done);
void mrw_progress_finish(mrw_progress *p);
/* Adapter for mrw_progress_fn callbacks (user = mrw_progress*). */
void mrw_progress_cb(void *user, uint64_t done, uint64_t total);

double mrw_now(void); /* monotonic seconds */

#endif
