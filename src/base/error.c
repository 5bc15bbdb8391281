#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

mrw_status mrw_err(mrw_error *err, mrw_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

mrw_status mrw_err_prefix(mrw_error *err, const char *fmt, ...) {
    if (!err) return MRW_E_INTERNAL;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = 0;
    /* Truncation is acceptable: the message is for people. */
    int n = snprintf(err->msg, sizeof err->msg, "%.200s: ", prefix);
    if (n > 0 && (size_t)n < sizeof err->msg) snprintf(err->msg + n, sizeof err->msg - (size_t)n, "%.300s", old);
    return err->code;
}

const char *mrw_status_name(mrw_status s) {
    switch (s) {
    case MRW_OK: return "ok";
    case MRW_E_ARG: return "invalid argument";
    case MRW_E_IO: return "I/O error";
    case MRW_E_FORMAT: return "malformed file";
    case MRW_E_UNSUPPORTED: return "unsupported";
    case MRW_E_SHAPE: return "shape mismatch";
    case MRW_E_MISSING: return "missing tensor";
    case MRW_E_UNKNOWN: return "unknown tensor";
    case MRW_E_SECURITY: return "refused";
    case MRW_E_NOMEM: return "out of memory";
    case MRW_E_LIMIT: return "size limit exceeded";
    case MRW_E_INTERNAL: return "internal error";
    }
    return "unknown status";
}
