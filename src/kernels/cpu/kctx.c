#define _GNU_SOURCE
#include "kernels/cpu/kctx.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* Pins OpenMP thread i to the i-th CPU this process may run on (libgomp keeps its threads across parallel
 * regions, so this holds for later regions of the same team size). Opt-in: on the 2-core VM it gave no
 * gain beyond run-to-run noise (85-109 tokens/s either way), and pinning by default would make two
 * processes share the same cores. */
static void pin_threads(int n) {
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    int cpus[MRW_MAX_THREADS], nc = 0;
    for (int c = 0; c < CPU_SETSIZE && nc < MRW_MAX_THREADS; c++)
        if (CPU_ISSET(c, &allowed)) cpus[nc++] = c;
    if (nc < n) return;
#pragma omp parallel num_threads(n)
    {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[omp_get_thread_num()], &one);
        pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    }
}

void mrw_kctx_init(mrw_kctx *k, int n_threads) {
    memset(k, 0, sizeof *k);
    if (n_threads <= 0) n_threads = omp_get_num_procs();
    if (n_threads > MRW_MAX_THREADS) n_threads = MRW_MAX_THREADS;
    if (n_threads < 1) n_threads = 1;
    k->n_threads = n_threads;
    const char *env = getenv("MODRWKV_PIN"); /* MODRWKV_PIN=1: pin threads to cores */
    if (env && atoi(env) == 1 && n_threads > 1) pin_threads(n_threads);
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
