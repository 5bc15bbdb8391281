#include "kernels/cpu/kctx.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

void mrw_kctx_init(mrw_kctx *k, int n_threads) {
    memset(k, 0, sizeof *k);
    if (n_threads <= 0) n_threads = omp_get_num_procs();
    if (n_threads > MRW_MAX_THREADS) n_threads = MRW_MAX_THREADS;
    if (n_threads < 1) n_threads = 1;
    k->n_threads = n_threads;
}

void mrw_kctx_free(mrw_kctx *k) {
    for (int i = 0; i < MRW_KS_SLOTS; i++) free(k->buf[i]);
    memset(k, 0, sizeof *k);
}

void *mrw_kctx_buf(mrw_kctx *k, int slot, size_t bytes) {
    if (slot < 0 || slot >= MRW_KS_SLOTS) return NULL;
    if (k->size[slot] >= bytes && k->buf[slot]) return k->buf[slot];
    size_t n = (bytes + 63) & ~(size_t)63;
    if (n < 4096) n = 4096;
    void *p = aligned_alloc(64, n);
    if (!p) return NULL;
    free(k->buf[slot]);
    k->buf[slot] = p;
    k->size[slot] = n;
    return p;
}
