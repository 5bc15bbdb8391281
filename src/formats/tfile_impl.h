/* What the format readers use to build an mrw_tfile. Not for consumers. */
#ifndef MRW_FORMATS_TFILE_IMPL_H
#define MRW_FORMATS_TFILE_IMPL_H

#include "base/mapfile.h"
#include "formats/tensorfile.h"

struct mrw_tfile {
    mrw_file_format format;
    mrw_mapping map;     /* the whole file (may be empty for _open_mem) */
    mrw_tensor_info *tensors;
    int n_tensors, cap_tensors;
    mrw_meta *meta;
    int n_meta, cap_meta;
    /* Owned allocations (names, copied tensor data, metadata strings) freed on close. */
    void **owned;
    int n_owned, cap_owned;
    /* Sorted index of names for lookup (built by mrw_tfile_finish). */
    int *sorted;
};

mrw_tfile *mrw_tfile_alloc(mrw_file_format fmt);
/* Keeps p to be freed with the file; returns p (or NULL if p was NULL or tracking failed, in which case p
 * has been freed). */
void *mrw_tfile_own(mrw_tfile *f, void *p);
/* Appends a tensor (the info is copied; the name must already be owned by f or static). Returns NULL on
 * out-of-memory. */
mrw_tensor_info *mrw_tfile_add_tensor(mrw_tfile *f, const mrw_tensor_info *t);
mrw_meta *mrw_tfile_add_meta(mrw_tfile *f, const mrw_meta *m);
/* Builds the name index and rejects duplicate tensor names. */
mrw_status mrw_tfile_finish(mrw_tfile *f, mrw_error *err);

/* A format's parser: fills f from f->map. `path` is the file's path, or NULL for a memory buffer. */
typedef mrw_status (*mrw_tfile_parse_fn)(mrw_tfile *f, const char *path, mrw_error *err);
/* The shared open paths: map the file (or wrap the buffer), parse, and on failure free everything. */
mrw_status mrw_tfile_open_file(mrw_file_format fmt, const char *path, mrw_tfile_parse_fn parse, mrw_tfile **out,
                               mrw_error *err);
mrw_status mrw_tfile_open_buffer(mrw_file_format fmt, const void *buf, size_t len, mrw_tfile_parse_fn parse,
                                 mrw_tfile **out, mrw_error *err);

#endif
