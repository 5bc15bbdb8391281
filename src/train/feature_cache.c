/* On-disk cache of frozen-encoder features (mrw_feature_cache_*).
 *
 * One file per media item: DIR/<encoder_id>/<16 hex digits>.f32, the digits being the FNV-1a 64 hash of the
 * media file's canonical path (realpath). Layout (host byte order, which is little-endian on every supported
 * machine; the magic tells a foreign file apart):
 *     "MRWFEAT1"  int32 rows  int32 cols  int64 source size  int64 mtime s  int64 mtime ns
 *     uint32 path length  uint32 0  path bytes  float32 data[rows * cols]
 * An entry counts only if its recorded path, size and mtime equal the media file's current ones and the file
 * has exactly the expected length; anything else (stale, foreign, truncated, a hash collision) reads as "not
 * cached" and the next put replaces it. Writes go through a temporary file, fsync and rename. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "base/error.h"
#include "base/mapfile.h"
#include "base/strutil.h"
#include "train/data.h"

#define FC_MAGIC "MRWFEAT1"
#define FC_MAX_VALUES (1ll << 30) /* 4 GiB of features per item is surely a corrupt header */

struct mrw_feature_cache {
    char *dir;
};

typedef struct {
    char magic[8];
    int32_t rows, cols;
    int64_t size, mtime_s, mtime_ns;
    uint32_t path_len, zero;
} fc_header;

static int mkdir_p(const char *path) {
    char *p = strdup(path);
    if (!p) return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    int r = mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    if (r == 0) {
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return -1;
    }
    return r;
}

mrw_status mrw_feature_cache_open(const char *dir, const char *encoder_id, mrw_feature_cache **out, mrw_error *err) {
    *out = NULL;
    if (!dir || !*dir) return mrw_err(err, MRW_E_ARG, "feature cache: no directory given");
    size_t n = encoder_id ? strlen(encoder_id) : 0;
    int ok = n > 0 && n <= 128 && strcmp(encoder_id, ".") && strcmp(encoder_id, "..");
    for (size_t i = 0; ok && i < n; i++) {
        char c = encoder_id[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
             c == '-';
    }
    if (!ok) {
        char pr[160];
        return mrw_err(err, MRW_E_ARG,
                       "feature cache: encoder id '%s' must be 1-128 characters of A-Z a-z 0-9 . _ - (not . or ..)",
                       encoder_id ? mrw_printable(pr, sizeof pr, encoder_id, n) : "");
    }
    mrw_feature_cache *c = calloc(1, sizeof *c);
    size_t dl = strlen(dir) + n + 2;
    if (!c || !(c->dir = malloc(dl))) {
        free(c);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    snprintf(c->dir, dl, "%s/%s", dir, encoder_id);
    if (mkdir_p(c->dir) != 0) {
        int e = errno;
        mrw_feature_cache_free(c);
        return mrw_err(err, MRW_E_IO, "feature cache: cannot create %s/%s: %s", dir, encoder_id, strerror(e));
    }
    *out = c;
    return MRW_OK;
}

void mrw_feature_cache_free(mrw_feature_cache *c) {
    if (!c) return;
    free(c->dir);
    free(c);
}

/* The media file's identity: canonical path (malloc'd) and stat. */
static mrw_status identify(const char *media_path, char **canon, struct stat *st, mrw_error *err) {
    *canon = NULL;
    if (!media_path || !*media_path) return mrw_err(err, MRW_E_ARG, "feature cache: no media path");
    if (stat(media_path, st) != 0)
        return mrw_err(err, MRW_E_IO, "feature cache: %s: %s", media_path, strerror(errno));
    *canon = realpath(media_path, NULL);
    if (!*canon) *canon = strdup(media_path);
    if (!*canon) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    return MRW_OK;
}

static char *entry_path(const mrw_feature_cache *c, const char *canon) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)canon; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    size_t n = strlen(c->dir) + 32;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%016llx.f32", c->dir, (unsigned long long)h);
    return p;
}

int mrw_feature_cache_get(mrw_feature_cache *c, const char *media_path, float **data, int *rows, int *cols,
                          mrw_error *err) {
    *data = NULL;
    *rows = *cols = 0;
    if (!c) return mrw_err(err, MRW_E_ARG, "feature cache: NULL cache"), -1;
    char *canon;
    struct stat st;
    if (identify(media_path, &canon, &st, err)) return -1;
    char *ep = entry_path(c, canon);
    if (!ep) {
        free(canon);
        return mrw_err(err, MRW_E_NOMEM, "out of memory"), -1;
    }
    int res = 0;
    FILE *fp = fopen(ep, "rb");
    if (!fp) {
        if (errno != ENOENT) res = (mrw_err(err, MRW_E_IO, "feature cache: %s: %s", ep, strerror(errno)), -1);
        goto out;
    }
    fc_header h;
    size_t pl = strlen(canon);
    if (fread(&h, sizeof h, 1, fp) != 1 || memcmp(h.magic, FC_MAGIC, 8) || h.path_len != pl || h.zero ||
        h.size != (int64_t)st.st_size || h.mtime_s != (int64_t)st.st_mtim.tv_sec ||
        h.mtime_ns != (int64_t)st.st_mtim.tv_nsec || h.rows <= 0 || h.cols <= 0 ||
        (int64_t)h.rows * h.cols > FC_MAX_VALUES)
        goto out;
    char *path = malloc(pl + 1);
    if (!path) {
        res = (mrw_err(err, MRW_E_NOMEM, "out of memory"), -1);
        goto out;
    }
    int same = fread(path, 1, pl, fp) == pl && !memcmp(path, canon, pl);
    free(path);
    if (!same) goto out;
    size_t nv = (size_t)h.rows * (size_t)h.cols;
    struct stat fst;
    if (fstat(fileno(fp), &fst) != 0 || (uint64_t)fst.st_size != sizeof h + pl + nv * sizeof(float)) goto out;
    float *v = malloc(nv * sizeof *v);
    if (!v) {
        res = (mrw_err(err, MRW_E_NOMEM, "feature cache: out of memory for %zu values", nv), -1);
        goto out;
    }
    if (fread(v, sizeof *v, nv, fp) != nv) {
        free(v);
        goto out;
    }
    *data = v;
    *rows = h.rows;
    *cols = h.cols;
    res = 1;
out:
    if (fp) fclose(fp);
    free(ep);
    free(canon);
    return res;
}

mrw_status mrw_feature_cache_put(mrw_feature_cache *c, const char *media_path, const float *data, int rows, int cols,
                                 mrw_error *err) {
    if (!c || !data || rows <= 0 || cols <= 0 || (int64_t)rows * cols > FC_MAX_VALUES)
        return mrw_err(err, MRW_E_ARG, "feature cache: invalid entry (%d x %d)", rows, cols);
    char *canon;
    struct stat st;
    mrw_status s = identify(media_path, &canon, &st, err);
    if (s) return s;
    char *ep = entry_path(c, canon);
    if (!ep) {
        free(canon);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    size_t pl = strlen(canon);
    fc_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, FC_MAGIC, 8);
    h.rows = rows;
    h.cols = cols;
    h.size = (int64_t)st.st_size;
    h.mtime_s = (int64_t)st.st_mtim.tv_sec;
    h.mtime_ns = (int64_t)st.st_mtim.tv_nsec;
    h.path_len = (uint32_t)pl;
    mrw_afile f;
    s = mrw_afile_open(&f, ep, err);
    if (!s) {
        mrw_afile_write(&f, &h, sizeof h);
        mrw_afile_write(&f, canon, pl);
        mrw_afile_write(&f, data, (size_t)rows * (size_t)cols * sizeof *data);
        s = mrw_afile_commit(&f, err);
    }
    free(ep);
    free(canon);
    return s;
}
