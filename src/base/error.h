/* Error reporting used by every layer: functions return an mrw_status and, when the caller passed an
 * mrw_error, leave a human-readable message there. No global error state. */
#ifndef MRW_BASE_ERROR_H
#define MRW_BASE_ERROR_H

#include "modrwkv.h"

#if defined(__GNUC__)
#define MRW_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MRW_PRINTF(a, b)
#endif

/* Sets err (if non-NULL) and returns code, so callers can write `return mrw_err(err, ...)`. */
mrw_status mrw_err(mrw_error *err, mrw_status code, const char *fmt, ...) MRW_PRINTF(3, 4);

/* Prefixes the message already in err with "<context>: " (e.g. the file name), keeping the code. */
mrw_status mrw_err_prefix(mrw_error *err, const char *fmt, ...) MRW_PRINTF(2, 3);

#endif
