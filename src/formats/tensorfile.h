/* A weight file, whatever its format: a list of named tensors (contiguous, row-major, little-endian) plus
 * typed metadata. Readers validate everything against the file size before exposing a tensor, so a
 * consumer may read `data[0 .. nbytes)` of any tensor without further checks. Writers are atomic: the
 * destination appears complete or not at all. */
#ifndef MRW_FORMATS_TENSORFILE_H
#define MRW_FORMATS_TENSORFILE_H

#include <stddef.h>
#include <stdint.h>

#include "modrwkv.h"

#define MRW_MAX_DIMS 8

typedef struct {
    char *name;
    mrw_dtype dtype;
    int ndim;
    int64_t shape[MRW_MAX_DIMS]; /* row-major: shape[ndim-1] varies fastest (GGUF dims are reversed) */
    const void *data;            /* nbytes of contiguous data (in the mapping, or owned by the file) */
    size_t nbytes;
} mrw_tensor_info;

/* Metadata values use the GGUF value types so that GGUF files round-trip; safetensors metadata are all
 * strings, .pth has none. */
typedef enum {
    MRW_MV_U8 = 0, MRW_MV_I8 = 1, MRW_MV_U16 = 2, MRW_MV_I16 = 3, MRW_MV_U32 = 4, MRW_MV_I32 = 5,
    MRW_MV_F32 = 6, MRW_MV_BOOL = 7, MRW_MV_STRING = 8, MRW_MV_ARRAY = 9, MRW_MV_U64 = 10, MRW_MV_I64 = 11,
    MRW_MV_F64 = 12,
} mrw_meta_type;

typedef struct {
    const char *ptr; /* not NUL-terminated in general; use len */
    size_t len;
} mrw_str;

typedef struct {
    char *key;
    mrw_meta_type type;
    union {
        int64_t i;   /* every integer type and bool */
        uint64_t u;  /* U64 */
        double f;    /* F32 / F64 */
        mrw_str s;   /* STRING */
    } v;
    /* ARRAY: elem_type, count and either `strs` (STRING elements) or `nums` (raw little-endian elements of
     * the element type, count * size). Nested arrays are rejected by readers. */
    mrw_meta_type elem_type;
    uint64_t count;
    mrw_str *strs;
    const void *nums;
} mrw_meta;

typedef enum { MRW_FMT_UNKNOWN = 0, MRW_FMT_SAFETENSORS, MRW_FMT_PTH, MRW_FMT_GGUF } mrw_file_format;

typedef struct mrw_tfile mrw_tfile;

/* Detects the format from the first bytes / the name and opens the file. */
mrw_file_format mrw_tfile_detect(const char *path);
const char *mrw_file_format_name(mrw_file_format f);
mrw_status mrw_tfile_open(const char *path, mrw_tfile **out, mrw_error *err);
void mrw_tfile_close(mrw_tfile *f);

mrw_file_format mrw_tfile_format(const mrw_tfile *f);
int mrw_tfile_count(const mrw_tfile *f);
const mrw_tensor_info *mrw_tfile_tensor(const mrw_tfile *f, int i);
const mrw_tensor_info *mrw_tfile_find(const mrw_tfile *f, const char *name); /* NULL if absent */
int mrw_tfile_meta_count(const mrw_tfile *f);
const mrw_meta *mrw_tfile_meta(const mrw_tfile *f, int i);
const mrw_meta *mrw_tfile_find_meta(const mrw_tfile *f, const char *key);

int64_t mrw_tensor_numel(const mrw_tensor_info *t);

/* Writers. `progress` (may be NULL) is called with bytes written so far and the total. */
typedef void (*mrw_progress_fn)(void *user, uint64_t done, uint64_t total);

mrw_status mrw_safetensors_write(const char *path, const mrw_tensor_info *tensors, int n, const mrw_meta *meta,
                                 int n_meta, mrw_progress_fn progress, void *user, mrw_error *err);
mrw_status mrw_gguf_write(const char *path, const mrw_tensor_info *tensors, int n, const mrw_meta *meta,
                          int n_meta, mrw_progress_fn progress, void *user, mrw_error *err);
mrw_status mrw_pth_write(const char *path, const mrw_tensor_info *tensors, int n, mrw_progress_fn progress,
                         void *user, mrw_error *err);

/* Per-format openers (mrw_tfile_open dispatches to these). The internal constructor API lives in
 * formats/tfile_impl.h. */
mrw_status mrw_safetensors_open(const char *path, mrw_tfile **out, mrw_error *err);
mrw_status mrw_pth_open(const char *path, mrw_tfile **out, mrw_error *err);
mrw_status mrw_gguf_open(const char *path, mrw_tfile **out, mrw_error *err);

/* Parsers over a memory buffer (for the fuzz harnesses and tests): `buf` must outlive the result. */
mrw_status mrw_safetensors_open_mem(const void *buf, size_t len, mrw_tfile **out, mrw_error *err);
mrw_status mrw_pth_open_mem(const void *buf, size_t len, mrw_tfile **out, mrw_error *err);
mrw_status mrw_gguf_open_mem(const void *buf, size_t len, mrw_tfile **out, mrw_error *err);

#endif
