/* Memory for large weight matrices that decode streams once per token. Buffers of at least 4 MiB are aligned to
 * 2 MiB and marked MADV_HUGEPAGE, so that the kernel (THP in "madvise" mode, Debian's default) backs them with
 * 2 MiB pages: a 1 GB model then needs ~500 TLB entries instead of ~250,000, and a matrix-vector product no longer
 * takes a page walk every 4 KiB. Smaller buffers are 64-byte aligned. Release with free(). */
#ifndef MRW_BASE_BIGALLOC_H
#define MRW_BASE_BIGALLOC_H

#include <stddef.h>

/* NULL when out of memory. MRW_NO_HUGEPAGES=1 in the environment turns the advice off (for A/B measurements). */
void *mrw_alloc_big(size_t bytes);

#endif
