#include "formats/zip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/strutil.h"

/* Record signatures and fixed sizes (APPNOTE.TXT). */
#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u
#define SIG_DESCRIPTOR 0x08074b50u
#define LOCAL_SIZE 30u
#define CENTRAL_SIZE 46u
#define EOCD_SIZE 22u
#define EOCD64_SIZE 56u
#define LOC64_SIZE 20u
#define U16_MAX 0xffffu
#define U32_MAX 0xffffffffu
#define EXTRA_ZIP64 0x0001u
#define FLAG_ENCRYPTED 0x0001u
#define FLAG_DESCRIPTOR 0x0008u

/* Little-endian fields, read byte by byte: independent of the host's byte order and alignment. */
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* ------------------------------------------------------------------------------------------------ CRC */

/* x^n mod P(x) for the CRC-32 polynomial, as a bit-reflected 64-bit value (the coefficient of x^d at bit
 * 63 - d), which is how PCLMULQDQ sees the low or high half of a little-endian 128-bit block. */
static uint64_t xpow_mod_reflected(unsigned n) {
    uint64_t r = 1; /* normal order: bit d is x^d */
    while (n--) {
        r <<= 1;
        if (r >> 32) r ^= 0x104c11db7ull;
    }
    uint64_t out = 0;
    for (int d = 0; d < 32; d++)
        if (r >> d & 1) out |= 1ull << (63 - d);
    return out;
}

void mrw_crc32_init(mrw_crc32_ctx *c) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t r = i;
        for (int k = 0; k < 8; k++) r = (r >> 1) ^ (0xedb88320u & (0u - (r & 1u)));
        c->t[0][i] = r;
    }
    for (int s = 1; s < 8; s++)
        for (int i = 0; i < 256; i++) c->t[s][i] = (c->t[s - 1][i] >> 8) ^ c->t[0][c->t[s - 1][i] & 0xff];
    /* Folding a 128-bit block forward by D bits: its first (low) 64 bits stand for L(x) x^64, its last 64
     * for H(x); L x^(64+D) + H x^D is reduced with the constants below. One less power than that, because a
     * carry-less product of two reflected 64-bit values comes out multiplied by x. */
    c->fold512[0] = xpow_mod_reflected(64 + 512 - 1);
    c->fold512[1] = xpow_mod_reflected(512 - 1);
    c->fold128[0] = xpow_mod_reflected(64 + 128 - 1);
    c->fold128[1] = xpow_mod_reflected(128 - 1);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    c->clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#else
    c->clmul = 0;
#endif
}

/* The raw table-driven CRC (no pre/post inversion). */
static uint32_t crc_tables(const mrw_crc32_ctx *c, uint32_t r, const uint8_t *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) {
        r = (r >> 8) ^ c->t[0][(r ^ *p++) & 0xff];
        n--;
    }
    /* Eight bytes per step (slicing-by-8). */
    while (n >= 8) {
        uint32_t lo = r ^ rd32(p), hi = rd32(p + 4);
        r = c->t[7][lo & 0xff] ^ c->t[6][(lo >> 8) & 0xff] ^ c->t[5][(lo >> 16) & 0xff] ^ c->t[4][lo >> 24] ^
            c->t[3][hi & 0xff] ^ c->t[2][(hi >> 8) & 0xff] ^ c->t[1][(hi >> 16) & 0xff] ^ c->t[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) r = (r >> 8) ^ c->t[0][(r ^ *p++) & 0xff];
    return r;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

__attribute__((target("pclmul,sse4.1"))) static inline __m128i fold(__m128i x, __m128i k) {
    return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

/* Raw CRC of n >= 64 bytes: four 128-bit accumulators folded 512 bits at a time, combined, then folded 128
 * bits at a time; the last accumulator and the tail (< 16 bytes) go through the tables. The CRC state enters
 * as an XOR into the first 32 bits, which is what the table recurrence does with it. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc_clmul(const mrw_crc32_ctx *c, uint32_t r,
                                                                   const uint8_t *p, size_t n) {
    __m128i k512 = _mm_set_epi64x((long long)c->fold512[1], (long long)c->fold512[0]);
    __m128i k128 = _mm_set_epi64x((long long)c->fold128[1], (long long)c->fold128[0]);
    __m128i x0 = _mm_loadu_si128((const __m128i *)p), x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32)), x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)r));
    p += 64;
    n -= 64;
    for (; n >= 64; p += 64, n -= 64) {
        x0 = _mm_xor_si128(fold(x0, k512), _mm_loadu_si128((const __m128i *)p));
        x1 = _mm_xor_si128(fold(x1, k512), _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = _mm_xor_si128(fold(x2, k512), _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = _mm_xor_si128(fold(x3, k512), _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    __m128i x = _mm_xor_si128(fold(x0, k128), x1);
    x = _mm_xor_si128(fold(x, k128), x2);
    x = _mm_xor_si128(fold(x, k128), x3);
    for (; n >= 16; p += 16, n -= 16) x = _mm_xor_si128(fold(x, k128), _mm_loadu_si128((const __m128i *)p));
    uint8_t last[16];
    _mm_storeu_si128((__m128i *)last, x);
    return crc_tables(c, crc_tables(c, 0, last, 16), p, n);
}
#endif

uint32_t mrw_crc32(const mrw_crc32_ctx *c, uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = data;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (c->clmul && n >= 256) return ~crc_clmul(c, ~crc, p, n);
#endif
    return ~crc_tables(c, ~crc, p, n);
}

/* ---------------------------------------------------------------------------------------------- helpers */


#define NAMEBUF 200
#define ENAME(e, b) mrw_printable(b, sizeof b, (e)->name, (e)->name_len)

static const char *method_name(unsigned m) {
    switch (m) {
    case 8: return "deflate";
    case 9: return "deflate64";
    case 12: return "bzip2";
    case 14: return "lzma";
    case 93: return "zstd";
    case 95: return "xz";
    default: return "compressed";
    }
}

/* --------------------------------------------------------------------------------------- end records */

typedef struct {
    uint64_t n_entries, cd_size, cd_offset;
    uint64_t cd_limit; /* the central directory must end at or before this offset */
} zip_end;

static mrw_status find_eocd(const uint8_t *b, size_t len, const char *what, size_t *at, mrw_error *err) {
    if (len < EOCD_SIZE) {
        if (len >= 2 && b[0] == 0x80 && b[1] <= 5)
            return mrw_err(err, MRW_E_UNSUPPORTED, "%s: this is a bare pickle, PyTorch's legacy (pre-1.6) "
                           "serialization, not a zip archive; re-save it with a current torch.save", what);
        return mrw_err(err, MRW_E_FORMAT, "%s: too short (%zu bytes) to be a zip archive", what, len);
    }
    /* The record is the last thing in the file, followed only by its comment (at most 65535 bytes). */
    size_t lo = len - EOCD_SIZE > U16_MAX ? len - EOCD_SIZE - U16_MAX : 0;
    for (size_t p = len - EOCD_SIZE + 1; p-- > lo;) {
        if (rd32(b + p) == SIG_EOCD && p + EOCD_SIZE + rd16(b + p + 20) == len) {
            *at = p;
            return MRW_OK;
        }
    }
    if (b[0] == 0x80 && b[1] <= 5)
        return mrw_err(err, MRW_E_UNSUPPORTED, "%s: this is a bare pickle, PyTorch's legacy (pre-1.6) "
                       "serialization, not a zip archive; re-save it with a current torch.save", what);
    return mrw_err(err, MRW_E_FORMAT, "%s: no zip end-of-central-directory record: not a zip archive, or the "
                   "file is truncated (an incomplete download?)", what);
}

static mrw_status read_eocd64(const uint8_t *b, size_t eocd, const char *what, zip_end *e, mrw_error *err) {
    const uint8_t *loc = b + eocd - LOC64_SIZE;
    if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1)
        return mrw_err(err, MRW_E_UNSUPPORTED, "%s: multi-disk (split) zip archives are not supported", what);
    uint64_t off = rd64(loc + 8);
    if (off > eocd - LOC64_SIZE || eocd - LOC64_SIZE - off < EOCD64_SIZE)
        return mrw_err(err, MRW_E_FORMAT, "%s: the zip64 end record offset %llu is out of range", what,
                       (unsigned long long)off);
    const uint8_t *r = b + off;
    if (rd32(r) != SIG_EOCD64)
        return mrw_err(err, MRW_E_FORMAT, "%s: no zip64 end record at offset %llu", what,
                       (unsigned long long)off);
    if (rd32(r + 16) != 0 || rd32(r + 20) != 0)
        return mrw_err(err, MRW_E_UNSUPPORTED, "%s: multi-disk (split) zip archives are not supported", what);
    if (rd64(r + 24) != rd64(r + 32))
        return mrw_err(err, MRW_E_FORMAT, "%s: the zip64 end record's entry counts disagree", what);
    e->n_entries = rd64(r + 32);
    e->cd_size = rd64(r + 40);
    e->cd_offset = rd64(r + 48);
    e->cd_limit = off;
    return MRW_OK;
}

/* A 32-bit (or 16-bit) field either agrees with its zip64 counterpart or is saturated. */
static int agrees(uint64_t narrow, uint64_t sat, uint64_t wide) { return narrow == sat || narrow == wide; }

static mrw_status read_end(const uint8_t *b, size_t len, const char *what, zip_end *e, mrw_error *err) {
    size_t at = 0;
    mrw_status s = find_eocd(b, len, what, &at, err);
    if (s) return s;
    const uint8_t *r = b + at;
    uint64_t n16 = rd16(r + 10), size32 = rd32(r + 12), off32 = rd32(r + 16);
    if (at >= LOC64_SIZE && rd32(b + at - LOC64_SIZE) == SIG_LOC64) {
        if ((s = read_eocd64(b, at, what, e, err))) return s;
        if (!agrees(n16, U16_MAX, e->n_entries) || !agrees(size32, U32_MAX, e->cd_size) ||
            !agrees(off32, U32_MAX, e->cd_offset))
            return mrw_err(err, MRW_E_FORMAT, "%s: the zip end record and the zip64 end record disagree",
                           what);
        return MRW_OK;
    }
    if (rd16(r + 4) != 0 || rd16(r + 6) != 0 || rd16(r + 8) != n16)
        return mrw_err(err, MRW_E_UNSUPPORTED, "%s: multi-disk (split) zip archives are not supported", what);
    if (n16 == U16_MAX || size32 == U32_MAX || off32 == U32_MAX)
        return mrw_err(err, MRW_E_FORMAT, "%s: the zip end record needs a zip64 record, which is missing",
                       what);
    e->n_entries = n16;
    e->cd_size = size32;
    e->cd_offset = off32;
    e->cd_limit = at;
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------- central entries */

/* Reads the zip64 extra field: values follow in this order, each present only when its narrow field is
 * saturated. `need[i]` says which; vals[i] receives them. */
static int parse_zip64(const uint8_t *x, size_t n, const int need[3], uint64_t vals[3]) {
    size_t o = 0;
    while (o + 4 <= n) {
        unsigned id = rd16(x + o), sz = rd16(x + o + 2);
        if (o + 4 + sz > n) return -1;
        if (id == EXTRA_ZIP64) {
            size_t q = o + 4;
            for (int i = 0; i < 3; i++) {
                if (!need[i]) continue;
                if (q + 8 > o + 4 + sz) return -1;
                vals[i] = rd64(x + q);
                q += 8;
            }
            return 1;
        }
        o += 4 + sz;
    }
    return o == n ? 0 : -1;
}

static mrw_status bad_entry(mrw_error *err, const char *what, const mrw_zip_entry *e, const char *why) {
    char nb[NAMEBUF];
    return mrw_err(err, MRW_E_FORMAT, "%s: zip entry '%s': %s", what, ENAME(e, nb), why);
}

/* Parses the central header at b[*pos], which must lie within [.., cd_end); advances *pos. */
static mrw_status read_central(const uint8_t *b, uint64_t *pos, uint64_t cd_end, const char *what, int index,
                               mrw_zip_entry *e, mrw_error *err) {
    uint64_t p = *pos;
    if (cd_end - p < CENTRAL_SIZE || rd32(b + p) != SIG_CENTRAL)
        return mrw_err(err, MRW_E_FORMAT,
                       "%s: central directory entry %d is truncated or has a bad signature", what, index);
    const uint8_t *h = b + p;
    uint64_t nl = rd16(h + 28), xl = rd16(h + 30), cl = rd16(h + 32);
    if (cd_end - p - CENTRAL_SIZE < nl + xl + cl)
        return mrw_err(err, MRW_E_FORMAT, "%s: central directory entry %d runs past the directory", what,
                       index);
    memset(e, 0, sizeof *e);
    e->name = (const char *)h + CENTRAL_SIZE;
    e->name_len = nl;
    e->flags = rd16(h + 8);
    e->method = rd16(h + 10);
    e->crc32 = rd32(h + 16);
    uint64_t csize = rd32(h + 20), usize = rd32(h + 24), off = rd32(h + 42);
    int need[3] = {usize == U32_MAX, csize == U32_MAX, off == U32_MAX};
    uint64_t v[3] = {usize, csize, off};
    int z = parse_zip64(h + CENTRAL_SIZE + nl, xl, need, v);
    if (z < 0) return bad_entry(err, what, e, "malformed extra field in the central directory");
    if ((need[0] || need[1] || need[2]) && z == 0)
        return bad_entry(err, what, e, "a size or offset needs a zip64 extra field, which is missing");
    if (rd16(h + 34) != 0 && rd16(h + 34) != U16_MAX)
        return mrw_err(err, MRW_E_UNSUPPORTED, "%s: multi-disk (split) zip archives are not supported", what);
    e->usize = v[0];
    e->size = v[1];
    e->header_offset = v[2];
    if (nl == 0)
        return mrw_err(err, MRW_E_FORMAT, "%s: central directory entry %d has an empty name", what, index);
    if (nl > MRW_ZIP_MAX_NAME) return mrw_err(err, MRW_E_LIMIT, "%s: entry %d's name is longer than %d bytes",
                                              what, index, MRW_ZIP_MAX_NAME);
    if (memchr(e->name, 0, nl)) return bad_entry(err, what, e, "the name contains a NUL byte");
    if (e->method == 0 && e->size != e->usize && !(e->flags & FLAG_ENCRYPTED))
        return bad_entry(err, what, e, "a stored entry whose compressed and uncompressed sizes differ");
    *pos = p + CENTRAL_SIZE + nl + xl + cl;
    return MRW_OK;
}

/* Checks the optional data descriptor after an entry's data when it carries its signature. */
static mrw_status check_descriptor(const uint8_t *b, uint64_t end, uint64_t limit, const char *what,
                                   const mrw_zip_entry *e, mrw_error *err) {
    if (limit - end < 16 || rd32(b + end) != SIG_DESCRIPTOR) return MRW_OK;
    const uint8_t *d = b + end + 4;
    int ok32 = rd32(d + 4) == e->size && rd32(d + 8) == e->usize;
    int ok64 = limit - end >= 24 && rd64(d + 4) == e->size && rd64(d + 12) == e->usize;
    if (rd32(d) != e->crc32 || !(ok32 || ok64))
        return bad_entry(err, what, e,
                         "its data descriptor disagrees with the central directory (CRC or size)");
    return MRW_OK;
}

/* Validates the local header of e against the central directory and sets e->data_offset. */
static mrw_status read_local(const uint8_t *b, uint64_t cd_offset, const char *what, mrw_zip_entry *e,
                             mrw_error *err) {
    uint64_t p = e->header_offset;
    if (p > cd_offset || cd_offset - p < LOCAL_SIZE)
        return bad_entry(err, what, e, "local header offset out of range");
    const uint8_t *h = b + p;
    if (rd32(h) != SIG_LOCAL) return bad_entry(err, what, e, "no local header at the recorded offset");
    uint64_t nl = rd16(h + 26), xl = rd16(h + 28);
    if (cd_offset - p - LOCAL_SIZE < nl + xl)
        return bad_entry(err, what, e, "local header runs past the data");
    if (nl != e->name_len || memcmp(h + LOCAL_SIZE, e->name, nl))
        return bad_entry(err, what, e, "the local header names a different entry");
    if (rd16(h + 8) != e->method)
        return bad_entry(err, what, e, "local and central compression methods differ");
    uint16_t lflags = rd16(h + 6);
    uint32_t lcrc = rd32(h + 14);
    uint64_t lcs = rd32(h + 18), lus = rd32(h + 22);
    int need[3] = {lus == U32_MAX, lcs == U32_MAX, 0};
    uint64_t v[3] = {lus, lcs, 0};
    if (parse_zip64(h + LOCAL_SIZE + nl, xl, need, v) < 0)
        return bad_entry(err, what, e, "malformed extra field in the local header");
    lus = v[0];
    lcs = v[1];
    if (lflags & FLAG_DESCRIPTOR) {
        /* Streamed entries (what torch 1.x writes) may leave CRC and sizes zero here. */
        if ((lcrc && lcrc != e->crc32) || (lcs && lcs != U32_MAX && lcs != e->size) ||
            (lus && lus != U32_MAX && lus != e->usize))
            return bad_entry(err, what, e, "local header and central directory disagree on CRC or size");
    } else if (lcrc != e->crc32 || lcs != e->size || lus != e->usize) {
        return bad_entry(err, what, e, "local header and central directory disagree on CRC or size");
    }
    e->data_offset = p + LOCAL_SIZE + nl + xl;
    if (e->size > cd_offset - e->data_offset) {
        char nb[NAMEBUF];
        return mrw_err(err, MRW_E_FORMAT,
                       "%s: zip entry '%s': its %llu bytes at offset %llu run past the end of the entry area "
                       "(offset %llu): truncated or corrupt", what, ENAME(e, nb),
                       (unsigned long long)e->size, (unsigned long long)e->data_offset,
                       (unsigned long long)cd_offset);
    }
    if (lflags & FLAG_DESCRIPTOR)
        return check_descriptor(b, e->data_offset + e->size, cd_offset, what, e, err);
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------ order and lookup */

static int cmp_name(const char *a, size_t an, const char *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}
static int cmp_by_name(const void *x, const void *y) {
    const mrw_zip_entry *a = *(const mrw_zip_entry *const *)x, *b = *(const mrw_zip_entry *const *)y;
    return cmp_name(a->name, a->name_len, b->name, b->name_len);
}
static int cmp_by_offset(const void *x, const void *y) {
    const mrw_zip_entry *a = *(const mrw_zip_entry *const *)x, *b = *(const mrw_zip_entry *const *)y;
    return (a->header_offset > b->header_offset) - (a->header_offset < b->header_offset);
}

/* Rejects overlapping entries (each one's header..data range must end before the next begins) and duplicate
 * names, then leaves z->by_name sorted for lookup. */
static mrw_status check_layout(mrw_zip *z, const char *what, mrw_error *err) {
    int n = z->n_entries;
    const mrw_zip_entry **v = z->by_name;
    for (int i = 0; i < n; i++) v[i] = &z->entries[i];
    qsort(v, (size_t)n, sizeof *v, cmp_by_offset);
    for (int i = 1; i < n; i++)
        if (v[i - 1]->data_offset + v[i - 1]->size > v[i]->header_offset) {
            char a[NAMEBUF], b[NAMEBUF];
            return mrw_err(err, MRW_E_FORMAT, "%s: zip entries '%s' and '%s' overlap", what,
                           ENAME(v[i - 1], a), ENAME(v[i], b));
        }
    qsort(v, (size_t)n, sizeof *v, cmp_by_name);
    for (int i = 1; i < n; i++)
        if (!cmp_by_name(&v[i - 1], &v[i])) {
            char a[NAMEBUF];
            return mrw_err(err, MRW_E_FORMAT, "%s: the zip archive has two entries named '%s'", what,
                           ENAME(v[i], a));
        }
    return MRW_OK;
}

static mrw_status read_directory(mrw_zip *z, const zip_end *end, const char *what, mrw_error *err) {
    const uint8_t *b = z->buf;
    if (end->cd_offset > end->cd_limit || end->cd_size > end->cd_limit - end->cd_offset)
        return mrw_err(err, MRW_E_FORMAT,
                       "%s: the central directory (offset %llu, %llu bytes) lies outside the file: "
                       "truncated or corrupt", what, (unsigned long long)end->cd_offset,
                       (unsigned long long)end->cd_size);
    if (end->n_entries > MRW_ZIP_MAX_ENTRIES)
        return mrw_err(err, MRW_E_LIMIT, "%s: the zip archive declares %llu entries (limit %d)", what,
                       (unsigned long long)end->n_entries, MRW_ZIP_MAX_ENTRIES);
    if (end->n_entries > end->cd_size / CENTRAL_SIZE)
        return mrw_err(err, MRW_E_FORMAT,
                       "%s: the zip archive declares %llu entries but its central directory has room for "
                       "only %llu", what, (unsigned long long)end->n_entries,
                       (unsigned long long)(end->cd_size / CENTRAL_SIZE));
    int n = (int)end->n_entries;
    z->entries = calloc(n ? (size_t)n : 1, sizeof *z->entries);
    z->by_name = calloc(n ? (size_t)n : 1, sizeof *z->by_name);
    if (!z->entries || !z->by_name) return mrw_err(err, MRW_E_NOMEM, "%s: out of memory", what);
    uint64_t pos = end->cd_offset, cd_end = end->cd_offset + end->cd_size;
    for (int i = 0; i < n; i++) {
        mrw_status s = read_central(b, &pos, cd_end, what, i, &z->entries[i], err);
        if (!s) s = read_local(b, end->cd_offset, what, &z->entries[i], err);
        if (s) return s;
        z->n_entries = i + 1;
    }
    return check_layout(z, what, err);
}

mrw_status mrw_zip_open(mrw_zip *z, const void *buf, size_t len, const char *what, mrw_error *err) {
    memset(z, 0, sizeof *z);
    if (!buf && len) return mrw_err(err, MRW_E_ARG, "%s: no buffer", what);
    z->buf = buf;
    z->len = len;
    mrw_crc32_init(&z->crc);
    zip_end end = {0};
    mrw_status s = read_end(z->buf, len, what, &end, err);
    if (!s) s = read_directory(z, &end, what, err);
    if (s) mrw_zip_close(z);
    return s;
}

void mrw_zip_close(mrw_zip *z) {
    free(z->entries);
    free(z->by_name);
    z->entries = NULL;
    z->by_name = NULL;
    z->n_entries = 0;
}

const mrw_zip_entry *mrw_zip_find(const mrw_zip *z, const char *name, size_t len) {
    int lo = 0, hi = z->n_entries - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const mrw_zip_entry *e = z->by_name[mid];
        int c = cmp_name(e->name, e->name_len, name, len);
        if (c == 0) return e;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

mrw_status mrw_zip_data(const mrw_zip *z, const mrw_zip_entry *e, int check_crc, const uint8_t **data,
                        mrw_error *err) {
    char nb[NAMEBUF];
    *data = NULL;
    if (e->flags & FLAG_ENCRYPTED)
        return mrw_err(err, MRW_E_UNSUPPORTED, "zip entry '%s' is encrypted, which is not supported",
                       ENAME(e, nb));
    if (e->method != 0)
        return mrw_err(err, MRW_E_UNSUPPORTED, "zip entry '%s' is compressed (method %u, %s); only stored "
                       "(uncompressed) entries are supported, which is what torch.save writes: re-save the "
                       "checkpoint with torch.save, or re-zip it with `zip -0`", ENAME(e, nb), e->method,
                       method_name(e->method));
    const uint8_t *p = z->buf + e->data_offset;
    if (check_crc && !(e->crc32 == 0 && e->size > 0)) {
        uint32_t c = mrw_crc32(&z->crc, 0, p, (size_t)e->size);
        if (c != e->crc32)
            return mrw_err(err, MRW_E_FORMAT, "zip entry '%s' is corrupt: its CRC-32 is %08x but the archive "
                           "records %08x (a damaged or incomplete file?)", ENAME(e, nb), c, e->crc32);
    }
    *data = p;
    return MRW_OK;
}

/* --------------------------------------------------------------------------------------------- writer */

static uint8_t *put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); return p + 2; }
static uint8_t *put32(uint8_t *p, uint32_t v) { put16(p, v & 0xffff); put16(p + 2, v >> 16); return p + 4; }
static uint8_t *put64(uint8_t *p, uint64_t v) {
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
    return p + 8;
}
static uint32_t sat32(uint64_t v, int wide) { return wide ? U32_MAX : (uint32_t)v; }

#define DOS_DATE_1980 0x0021u /* 1980-01-01: fixed, so that output does not depend on the clock */

void mrw_zipw_init(mrw_zipw *w, mrw_zip_sink sink, void *user) {
    memset(w, 0, sizeof *w);
    w->sink = sink;
    w->user = user;
}

void mrw_zipw_write(mrw_zipw *w, const void *data, size_t n) {
    if (!n) return;
    w->sink(w->user, data, n);
    w->pos += n;
}

static mrw_status check_entry_done(const mrw_zipw *w, mrw_error *err) {
    if (w->pos != w->entry_end)
        return mrw_err(err, MRW_E_INTERNAL, "zip writer: the previous entry got %llu bytes instead of %llu",
                       (unsigned long long)(w->pos - (w->n ? w->ents[w->n - 1].offset : 0)),
                       (unsigned long long)(w->entry_end - (w->n ? w->ents[w->n - 1].offset : 0)));
    return MRW_OK;
}

mrw_status mrw_zipw_begin(mrw_zipw *w, const char *name, uint64_t size, uint32_t crc32, mrw_error *err) {
    mrw_status s = check_entry_done(w, err);
    if (s) return s;
    size_t nl = strlen(name);
    if (nl == 0 || nl > MRW_ZIP_MAX_NAME)
        return mrw_err(err, MRW_E_ARG, "zip writer: entry name of %zu bytes", nl);
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 64;
        mrw_zipw_entry *e = realloc(w->ents, (size_t)cap * sizeof *e);
        if (!e) return mrw_err(err, MRW_E_NOMEM, "out of memory");
        w->ents = e;
        w->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    w->ents[w->n++] = (mrw_zipw_entry){copy, w->pos, size, crc32};

    int z64 = w->force_zip64 || size >= U32_MAX;
    uint64_t before_pad = w->pos + LOCAL_SIZE + nl + (z64 ? 20 : 0) + 4;
    uint32_t pad = (uint32_t)((MRW_ZIP_ALIGN - before_pad % MRW_ZIP_ALIGN) % MRW_ZIP_ALIGN);
    uint8_t h[LOCAL_SIZE], x[20 + 4 + MRW_ZIP_ALIGN], *p = h;
    p = put32(p, SIG_LOCAL);
    p = put16(p, z64 ? 45 : 20); /* version needed: 4.5 for zip64 */
    p = put16(p, 0);             /* flags */
    p = put16(p, 0);             /* stored */
    p = put16(p, 0);             /* time */
    p = put16(p, DOS_DATE_1980);
    p = put32(p, crc32);
    p = put32(p, sat32(size, z64));
    p = put32(p, sat32(size, z64));
    p = put16(p, (uint32_t)nl);
    put16(p, (z64 ? 20 : 0) + 4 + pad);
    p = x;
    if (z64) {
        p = put16(p, EXTRA_ZIP64);
        p = put16(p, 16);
        p = put64(p, size);
        p = put64(p, size);
    }
    /* PyTorch's alignment block: id "FB", then `pad` filler bytes, so the data start 64-byte aligned. */
    *p++ = 'F';
    *p++ = 'B';
    p = put16(p, pad);
    memset(p, 'Z', pad);
    p += pad;
    mrw_zipw_write(w, h, sizeof h);
    mrw_zipw_write(w, name, nl);
    mrw_zipw_write(w, x, (size_t)(p - x));
    w->entry_end = w->pos + size;
    return MRW_OK;
}

mrw_status mrw_zipw_add(mrw_zipw *w, const mrw_crc32_ctx *crc, const char *name, const void *data, size_t n,
                        mrw_error *err) {
    mrw_status s = mrw_zipw_begin(w, name, n, mrw_crc32(crc, 0, data, n), err);
    if (!s) mrw_zipw_write(w, data, n);
    return s;
}

static void write_central(mrw_zipw *w, const mrw_zipw_entry *e) {
    size_t nl = strlen(e->name);
    int zs = w->force_zip64 || e->size >= U32_MAX, zo = w->force_zip64 || e->offset >= U32_MAX;
    uint8_t h[CENTRAL_SIZE], x[4 + 24], *p = h;
    uint8_t *q = x;
    if (zs || zo) {
        q = put16(q, EXTRA_ZIP64);
        q = put16(q, (zs ? 16 : 0) + (zo ? 8 : 0));
        if (zs) q = put64(put64(q, e->size), e->size);
        if (zo) q = put64(q, e->offset);
    }
    p = put32(p, SIG_CENTRAL);
    p = put16(p, (zs || zo) ? 45 : 20); /* version made by (MS-DOS attributes) */
    p = put16(p, (zs || zo) ? 45 : 20); /* version needed */
    p = put16(p, 0);
    p = put16(p, 0);
    p = put16(p, 0);
    p = put16(p, DOS_DATE_1980);
    p = put32(p, e->crc32);
    p = put32(p, sat32(e->size, zs));
    p = put32(p, sat32(e->size, zs));
    p = put16(p, (uint32_t)nl);
    p = put16(p, (uint32_t)(q - x));
    p = put16(p, 0); /* comment */
    p = put16(p, 0); /* disk */
    p = put16(p, 0); /* internal attributes */
    p = put32(p, 0); /* external attributes */
    put32(p, sat32(e->offset, zo));
    mrw_zipw_write(w, h, sizeof h);
    mrw_zipw_write(w, e->name, nl);
    mrw_zipw_write(w, x, (size_t)(q - x));
}

mrw_status mrw_zipw_finish(mrw_zipw *w, mrw_error *err) {
    mrw_status s = check_entry_done(w, err);
    if (s) return s;
    uint64_t cd_offset = w->pos;
    for (int i = 0; i < w->n; i++) write_central(w, &w->ents[i]);
    uint64_t cd_size = w->pos - cd_offset, n = (uint64_t)w->n;
    int z64 = w->force_zip64 || n >= U16_MAX || cd_size >= U32_MAX || cd_offset >= U32_MAX;
    uint8_t r[EOCD64_SIZE + LOC64_SIZE + EOCD_SIZE], *p = r;
    if (z64) {
        uint64_t at = w->pos;
        p = put32(p, SIG_EOCD64);
        p = put64(p, EOCD64_SIZE - 12);
        p = put16(p, 45);
        p = put16(p, 45);
        p = put32(p, 0);
        p = put32(p, 0);
        p = put64(p, n);
        p = put64(p, n);
        p = put64(p, cd_size);
        p = put64(p, cd_offset);
        p = put32(p, SIG_LOC64);
        p = put32(p, 0);
        p = put64(p, at);
        p = put32(p, 1);
    }
    p = put32(p, SIG_EOCD);
    p = put16(p, 0);
    p = put16(p, 0);
    p = put16(p, n >= U16_MAX ? U16_MAX : (uint32_t)n);
    p = put16(p, n >= U16_MAX ? U16_MAX : (uint32_t)n);
    p = put32(p, sat32(cd_size, cd_size >= U32_MAX));
    p = put32(p, sat32(cd_offset, cd_offset >= U32_MAX));
    p = put16(p, 0);
    mrw_zipw_write(w, r, (size_t)(p - r));
    return MRW_OK;
}

void mrw_zipw_free(mrw_zipw *w) {
    for (int i = 0; i < w->n; i++) free(w->ents[i].name);
    free(w->ents);
    w->ents = NULL;
    w->n = w->cap = 0;
}
