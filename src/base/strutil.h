/* Small string helpers shared by the parsers. */
#ifndef MRW_BASE_STRUTIL_H
#define MRW_BASE_STRUTIL_H

#include <stddef.h>

/* A name from an untrusted file, fit for an error message: printable ASCII kept, other bytes as \xNN, long
 * names cut with "...". Writes into out (cap >= 16) and returns it. */
const char *mrw_printable(char *out, size_t cap, const char *s, size_t n);

/* A growing, always NUL-terminated string buffer (zero-initialise it; free(b.p) when done). */
typedef struct {
    char *p;
    size_t n, cap;
} mrw_sbuf;

/* Appends n bytes of s; returns 0, or -1 when out of memory (the buffer is then unchanged). */
int mrw_sbuf_add(mrw_sbuf *b, const char *s, size_t n);

#endif
