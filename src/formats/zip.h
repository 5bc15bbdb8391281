/* Zip archives as PyTorch uses them: a reader over a memory buffer (the mmapped file) and a writer of stored
 * (uncompressed) entries whose data start on 64-byte boundaries.
 *
 * Reader: finds the end-of-central-directory record (and the zip64 locator/record when present), reads
 * the central directory, and validates every entry against its local header and the buffer: names must
 * agree, sizes must agree (unless the entry uses a data descriptor, then the central directory rules and
 * the descriptor, when it carries a signature, must agree too), entries must lie before the central
 * directory and must not overlap, names must be unique. Entry data are pointers into the buffer (no copy).
 * Compressed or encrypted entries are listed but refuse to give their data (MRW_E_UNSUPPORTED).
 *
 * Writer: emits local header + data per entry (the caller supplies the size and CRC-32 up front, so the
 * output is written strictly sequentially), pads the local extra field with a PyTorch-style "FB" block so
 * data start at a multiple of 64, then the central directory and end records; zip64 fields and records
 * appear only when a size, offset or count needs them (or when forced, for tests). */
#ifndef MRW_FORMATS_ZIP_H
#define MRW_FORMATS_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "modrwkv.h"

/* Limits the reader enforces (MRW_E_LIMIT beyond them). */
#define MRW_ZIP_MAX_ENTRIES (1 << 20)
#define MRW_ZIP_MAX_NAME 4096 /* bytes of one entry name */
#define MRW_ZIP_ALIGN 64      /* the writer's data alignment (what PyTorch uses) */

/* ------------------------------------------------------------------------------------------------ CRC */

/* CRC-32 (the zip / IEEE 802.3 polynomial): carry-less multiplication folding (PCLMULQDQ) on x86-64 CPUs that
 * have it, slicing-by-8 tables otherwise and for short inputs. Tables and folding constants live in a
 * caller-owned context so there is no global state; mrw_crc32_init computes them (a few microseconds). */
typedef struct {
    uint32_t t[8][256];
    uint64_t fold512[2], fold128[2]; /* x^(64+D-1) mod P and x^(D-1) mod P, bit-reflected, for D = 512, 128 */
    int clmul;                       /* use the folding path */
} mrw_crc32_ctx;

void mrw_crc32_init(mrw_crc32_ctx *c);
/* Continues a CRC: start with crc = 0; crc(a ++ b) == mrw_crc32(c, mrw_crc32(c, 0, a), b). */
uint32_t mrw_crc32(const mrw_crc32_ctx *c, uint32_t crc, const void *data, size_t n);

/* --------------------------------------------------------------------------------------------- reader */

typedef struct {
    const char *name;     /* points into the buffer; not NUL-terminated */
    size_t name_len;
    uint64_t header_offset; /* of the local header */
    uint64_t data_offset;   /* of the entry's (stored) data */
    uint64_t size;          /* compressed size == stored bytes for method 0 */
    uint64_t usize;         /* uncompressed size */
    uint32_t crc32;
    uint16_t method;        /* 0 stored, 8 deflate, ... */
    uint16_t flags;         /* general purpose bits (bit 0: encrypted, bit 3: data descriptor) */
} mrw_zip_entry;

typedef struct {
    const uint8_t *buf;
    size_t len;
    mrw_zip_entry *entries; /* in central-directory order */
    int n_entries;
    const mrw_zip_entry **by_name; /* sorted by name, for mrw_zip_find */
    mrw_crc32_ctx crc;
} mrw_zip;

/* Parses the archive in buf[0..len). `what` names the file in error messages (e.g. its path). The buffer
 * must outlive the mrw_zip. On failure *z is left empty (mrw_zip_close is still safe). */
mrw_status mrw_zip_open(mrw_zip *z, const void *buf, size_t len, const char *what, mrw_error *err);
void mrw_zip_close(mrw_zip *z);

/* The entry with exactly this name (len bytes), or NULL. */
const mrw_zip_entry *mrw_zip_find(const mrw_zip *z, const char *name, size_t len);

/* The stored bytes of an entry: MRW_E_UNSUPPORTED (naming the entry and the method) for compressed or
 * encrypted entries. With `check_crc`, the CRC-32 recorded in the central directory is verified first
 * (MRW_E_FORMAT on a mismatch); a recorded CRC of 0 on a non-empty entry means "not recorded" (PyTorch can
 * skip computing CRCs) and is not checked. */
mrw_status mrw_zip_data(const mrw_zip *z, const mrw_zip_entry *e, int check_crc, const uint8_t **data,
                        mrw_error *err);

/* --------------------------------------------------------------------------------------------- writer */

/* Where the writer's bytes go: a sink that never fails on its own (errors are remembered by the sink's
 * owner, e.g. mrw_afile, and reported when it commits). */
typedef void (*mrw_zip_sink)(void *user, const void *data, size_t n);

typedef struct {
    char *name;
    uint64_t offset, size;
    uint32_t crc32;
} mrw_zipw_entry;

typedef struct {
    mrw_zip_sink sink;
    void *user;
    uint64_t pos;        /* bytes emitted so far */
    uint64_t entry_end;  /* where the current entry's data must end */
    mrw_zipw_entry *ents;
    int n, cap;
    int force_zip64;     /* write zip64 extras and end records even when not needed (tests) */
} mrw_zipw;

void mrw_zipw_init(mrw_zipw *w, mrw_zip_sink sink, void *user);
/* Starts an entry of `size` stored bytes with the given CRC-32; the caller then emits exactly `size` bytes
 * through mrw_zipw_write. */
mrw_status mrw_zipw_begin(mrw_zipw *w, const char *name, uint64_t size, uint32_t crc32, mrw_error *err);
void mrw_zipw_write(mrw_zipw *w, const void *data, size_t n);
/* begin + write of a small in-memory record (computes the CRC). */
mrw_status mrw_zipw_add(mrw_zipw *w, const mrw_crc32_ctx *crc, const char *name, const void *data, size_t n,
                        mrw_error *err);
/* Writes the central directory and end records. */
mrw_status mrw_zipw_finish(mrw_zipw *w, mrw_error *err);
void mrw_zipw_free(mrw_zipw *w);

#endif
