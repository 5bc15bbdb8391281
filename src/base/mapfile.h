/* Read-only whole-file memory mapping, and atomic file writing (temp file in the same directory, fsync,
 * rename; removed on failure so nothing partial is ever left under the final name). */
#ifndef MRW_BASE_MAPFILE_H
#define MRW_BASE_MAPFILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "modrwkv.h"

typedef struct {
    const uint8_t *data;
    size_t size;
    int is_mmap; /* 1: munmap on close; 0: data is not owned (memory buffer) */
} mrw_mapping;

mrw_status mrw_map_file(const char *path, mrw_mapping *out, mrw_error *err);
void mrw_unmap(mrw_mapping *m);

typedef struct {
    FILE *fp;
    char *final_path;
    char *tmp_path;
    int failed; /* set by mrw_afile_write on error; commit then fails */
} mrw_afile;

mrw_status mrw_afile_open(mrw_afile *f, const char *path, mrw_error *err);
/* Buffered write; errors are remembered and reported by commit. */
void mrw_afile_write(mrw_afile *f, const void *data, size_t n);
void mrw_afile_pad(mrw_afile *f, size_t n); /* n zero bytes */
long long mrw_afile_tell(mrw_afile *f);
/* Flush, fsync, rename over the final path. On any failure the temp file is removed. */
mrw_status mrw_afile_commit(mrw_afile *f, mrw_error *err);
/* Abandon: remove the temp file. Safe to call after commit (no-op). */
void mrw_afile_abort(mrw_afile *f);

#endif
