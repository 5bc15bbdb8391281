/* Streaming UTF-8 repair for generated text: tokens end in the middle of characters, so bytes are held
 * until a sequence completes. Invalid input becomes U+FFFD by the "maximal subpart" rule (Unicode §3.9,
 * WHATWG, Python's bytes.decode('utf-8', 'replace')): a lead byte plus the continuation bytes that were still
 * valid for it become one U+FFFD, and the byte that broke the sequence is looked at again as a new start.
 * The output is therefore the same however the stream is cut into pushes. */
#include <string.h>

#include "modrwkv.h"

/* Total length of the sequence a lead byte starts, or 0 if the byte cannot start one (continuation bytes,
 * C0/C1 overlong leads, F5..FF). */
static int seq_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Whether c may follow the bytes pending[0..n) (n >= 1). The second byte's range excludes overlongs (E0,
 * F0), surrogates (ED) and code points past U+10FFFF (F4). */
static int continues(const uint8_t *pending, int n, uint8_t c) {
    uint8_t lo = 0x80, hi = 0xBF;
    if (n == 1) {
        switch (pending[0]) {
        case 0xE0: lo = 0xA0; break;
        case 0xED: hi = 0x9F; break;
        case 0xF0: lo = 0x90; break;
        case 0xF4: hi = 0x8F; break;
        default: break;
        }
    }
    return c >= lo && c <= hi;
}

static size_t put_fffd(char *out) {
    memcpy(out, "\xEF\xBF\xBD", 3);
    return 3;
}

size_t mrw_utf8_stream_push(mrw_utf8_stream *s, const uint8_t *in, size_t n, char *out) {
    size_t o = 0;
    if (s->n_pending < 0 || s->n_pending > 3) s->n_pending = 0; /* not a state this code leaves */
    for (size_t i = 0; i < n;) {
        uint8_t c = in[i];
        if (s->n_pending == 0) {
            if (c < 0x80) { /* ASCII run: the common case */
                size_t j = i + 1;
                while (j < n && in[j] < 0x80) j++;
                memcpy(out + o, in + i, j - i);
                o += j - i;
                i = j;
            } else if (seq_len(c)) {
                s->pending[s->n_pending++] = c;
                i++;
            } else {
                o += put_fffd(out + o);
                i++;
            }
            continue;
        }
        if (!continues(s->pending, s->n_pending, c)) {
            /* The pending prefix is a maximal subpart: one U+FFFD; c starts over (do not advance). */
            o += put_fffd(out + o);
            s->n_pending = 0;
            continue;
        }
        s->pending[s->n_pending++] = c;
        i++;
        if (s->n_pending == seq_len(s->pending[0])) {
            memcpy(out + o, s->pending, (size_t)s->n_pending);
            o += (size_t)s->n_pending;
            s->n_pending = 0;
        }
    }
    return o;
}

size_t mrw_utf8_stream_flush(mrw_utf8_stream *s, char *out) {
    int had = s->n_pending > 0 && s->n_pending <= 3;
    s->n_pending = 0;
    return had ? put_fffd(out) : 0;
}
