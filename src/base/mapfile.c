#define _GNU_SOURCE
#include "base/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

mrw_status mrw_map_file(const char *path, mrw_mapping *out, mrw_error *err) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mrw_err(err, MRW_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mrw_err(err, MRW_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mrw_err(err, MRW_E_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return mrw_err(err, MRW_E_FORMAT, "%s: the file is empty", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return mrw_err(err, MRW_E_IO, "%s: cannot map: %s", path, strerror(e));
    out->data = p;
    out->size = (size_t)st.st_size;
    out->is_mmap = 1;
    return MRW_OK;
}

void mrw_unmap(mrw_mapping *m) {
    if (m->is_mmap && m->data) munmap((void *)m->data, m->size);
    memset(m, 0, sizeof *m);
}

mrw_status mrw_afile_open(mrw_afile *f, const char *path, mrw_error *err) {
    memset(f, 0, sizeof *f);
    size_t n = strlen(path);
    f->final_path = strdup(path);
    f->tmp_path = malloc(n + 32);
    if (!f->final_path || !f->tmp_path) {
        free(f->final_path);
        free(f->tmp_path);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    snprintf(f->tmp_path, n + 32, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(f->tmp_path);
    if (fd < 0) {
        int e = errno;
        free(f->final_path);
        free(f->tmp_path);
        f->final_path = f->tmp_path = NULL;
        return mrw_err(err, MRW_E_IO, "%s: cannot create a temporary file next to it: %s", path, strerror(e));
    }
    fchmod(fd, 0644);
    f->fp = fdopen(fd, "wb");
    if (!f->fp) {
        close(fd);
        unlink(f->tmp_path);
        free(f->final_path);
        free(f->tmp_path);
        f->final_path = f->tmp_path = NULL;
        return mrw_err(err, MRW_E_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    return MRW_OK;
}

void mrw_afile_write(mrw_afile *f, const void *data, size_t n) {
    if (f->failed || !f->fp || n == 0) return;
    if (fwrite(data, 1, n, f->fp) != n) f->failed = errno ? errno : EIO;
}

void mrw_afile_pad(mrw_afile *f, size_t n) {
    static const uint8_t zeros[256];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        mrw_afile_write(f, zeros, k);
        n -= k;
    }
}

long long mrw_afile_tell(mrw_afile *f) { return f->fp ? (long long)ftello(f->fp) : -1; }

mrw_status mrw_afile_commit(mrw_afile *f, mrw_error *err) {
    if (!f->fp) return mrw_err(err, MRW_E_INTERNAL, "commit of a closed file");
    int e = f->failed;
    if (!e && fflush(f->fp) != 0) e = errno;
    if (!e && fsync(fileno(f->fp)) != 0) e = errno;
    if (fclose(f->fp) != 0 && !e) e = errno;
    f->fp = NULL;
    if (!e && rename(f->tmp_path, f->final_path) != 0) e = errno;
    if (e) {
        unlink(f->tmp_path);
        mrw_err(err, MRW_E_IO, "%s: write failed: %s", f->final_path, strerror(e));
    } else {
        /* Make the rename itself durable. */
        char *dir = strdup(f->final_path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            const char *d = ".";
            if (slash) { *slash = 0; d = slash == dir ? "/" : dir; }
            int dfd = open(d, O_RDONLY | O_DIRECTORY);
            if (dfd >= 0) { fsync(dfd); close(dfd); }
            free(dir);
        }
    }
    free(f->final_path);
    free(f->tmp_path);
    f->final_path = f->tmp_path = NULL;
    return e ? MRW_E_IO : MRW_OK;
}

void mrw_afile_abort(mrw_afile *f) {
    if (f->fp) {
        fclose(f->fp);
        f->fp = NULL;
    }
    if (f->tmp_path) unlink(f->tmp_path);
    free(f->final_path);
    free(f->tmp_path);
    f->final_path = f->tmp_path = NULL;
}
