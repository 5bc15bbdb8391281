/* What CPU kernels need from their caller: a thread count and scratch buffers that are reserved once (per
 * context) so that the hot path never allocates. */
#ifndef MRW_KERNELS_CPU_KCTX_H
#define MRW_KERNELS_CPU_KCTX_H

#include <stddef.h>

#define MRW_MAX_THREADS 64
#define MRW_KS_SHARED 0 /* slot for data shared by all threads of one call (packed activations) */
#define MRW_KS_SLOTS (1 + MRW_MAX_THREADS)

typedef struct {
    int n_threads;
    int exact; /* keep activations f32 in every kernel (see mrw_context_params.exact) */
    void *buf[MRW_KS_SLOTS];
    size_t size[MRW_KS_SLOTS];
} mrw_kctx;

void mrw_kctx_init(mrw_kctx *k, int n_threads); /* n_threads <= 0: all available cores */
void mrw_kctx_free(mrw_kctx *k);
/* A 64-byte aligned buffer of at least `bytes` for `slot` (MRW_KS_SHARED, or 1 + thread id). Grows on
 * demand; returns NULL only if the allocation fails. Distinct slots may be grown from distinct threads. */
void *mrw_kctx_buf(mrw_kctx *k, int slot, size_t bytes);

#endif
