#include "base/strutil.h"

#include <stdio.h>
#include <string.h>

const char *mrw_printable(char *out, size_t cap, const char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') out[o++] = (char)ch;
        else o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
    }
    if (o + 8 >= cap && n) memcpy(out + o, "...", 4), o += 3;
    out[o] = 0;
    return out;
}
