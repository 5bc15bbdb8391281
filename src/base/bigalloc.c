#define _GNU_SOURCE
#include "base/bigalloc.h"

#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_ALIGN ((size_t)2 << 20)
#define HUGE_MIN ((size_t)4 << 20)

void *mrw_alloc_big(size_t bytes) {
    if (bytes < HUGE_MIN) return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    size_t n = (bytes + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_ALIGN, n)) return NULL;
    const char *off = getenv("MRW_NO_HUGEPAGES");
#ifdef MADV_HUGEPAGE
    if (!(off && off[0] == '1')) (void)madvise(p, n, MADV_HUGEPAGE); /* advice only: failure changes nothing */
#else
    (void)off;
#endif
    return p;
}
