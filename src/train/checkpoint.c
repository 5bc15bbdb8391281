#include "train/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "tensor/dtype.h"

#define RESUME_VERSION "1"

/* ------------------------------------------------------------------------------------- atomic write */

static void fsync_dir_of(const char *path) {
    char *dir = strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash) {
        *slash = 0;
        d = slash == dir ? "/" : dir;
    }
    int fd = open(d, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

/* The safetensors writer is itself atomic (temp, fsync, rename) onto <path>.partial; the final rename makes
 * the complete file replace the previous one in one step. */
static mrw_status write_atomic(const char *path, const mrw_tensor_info *t, int n, const mrw_meta *meta, int n_meta,
                               mrw_error *err) {
    size_t len = strlen(path) + 16;
    char *partial = malloc(len);
    if (!partial) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    snprintf(partial, len, "%s.partial", path);
    mrw_status s = mrw_safetensors_write(partial, t, n, meta, n_meta, NULL, NULL, err);
    if (s == MRW_OK) {
        const char *crash = getenv("MRW_TRAIN_CRASH_IN_SAVE");
        if (crash && *crash == '1') {
            fprintf(stderr, "MRW_TRAIN_CRASH_IN_SAVE: aborting before replacing %s\n", path);
            abort();
        }
        if (rename(partial, path) != 0) {
            s = mrw_err(err, MRW_E_IO, "%s: cannot rename %s over it: %s", path, partial, strerror(errno));
            unlink(partial);
        } else {
            fsync_dir_of(path);
        }
    }
    free(partial);
    return s;
}

static mrw_tensor_info f32_tensor(char *name, const mrw_param *p, const float *data) {
    mrw_tensor_info t = {.name = name, .dtype = MRW_DT_F32, .ndim = p->ndim, .data = data,
                         .nbytes = p->n * sizeof(float)};
    for (int d = 0; d < p->ndim; d++) t.shape[d] = p->shape[d];
    return t;
}

/* -------------------------------------------------------------------------------------------- model */

mrw_status mrw_ckpt_save_model(const char *path, mrw_param_set *const *sets, int n_sets, const char *strip,
                               const mrw_tensor_info *extra, int n_extra, const char *const *keys,
                               const char *const *vals, int n_meta, mrw_error *err) {
    int n = n_extra;
    for (int s = 0; s < n_sets; s++) n += sets[s]->n;
    mrw_tensor_info *t = calloc(n ? n : 1, sizeof *t);
    mrw_meta *meta = calloc(n_meta + 1, sizeof *meta);
    if (!t || !meta) {
        free(t), free(meta);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    int k = 0;
    const size_t sl = strip ? strlen(strip) : 0;
    for (int s = 0; s < n_sets; s++)
        for (int i = 0; i < sets[s]->n; i++) {
            char *name = sets[s]->p[i].name;
            if (sl && !strncmp(name, strip, sl)) name += sl;
            t[k++] = f32_tensor(name, &sets[s]->p[i], mrw_param_w(sets[s], i));
        }
    for (int i = 0; i < n_extra; i++) t[k++] = extra[i];
    meta[0] = (mrw_meta){.key = "format", .type = MRW_MV_STRING, .v.s = {"pt", 2}};
    for (int i = 0; i < n_meta; i++)
        meta[i + 1] = (mrw_meta){.key = (char *)keys[i], .type = MRW_MV_STRING, .v.s = {vals[i], strlen(vals[i])}};
    mrw_status st = write_atomic(path, t, n, meta, n_meta + 1, err);
    free(t), free(meta);
    return st;
}

static mrw_status copy_in(const mrw_tensor_info *ti, const mrw_param *p, float *dst, const char *path,
                          mrw_error *err) {
    int same = ti->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = ti->shape[d] == p->shape[d];
    if (!same || mrw_tensor_numel(ti) != (int64_t)p->n) {
        char a[96] = "", b[96] = "";
        for (int d = 0; d < ti->ndim && d < 8; d++)
            snprintf(a + strlen(a), sizeof a - strlen(a), "%s%" PRId64, d ? "," : "", ti->shape[d]);
        for (int d = 0; d < p->ndim; d++)
            snprintf(b + strlen(b), sizeof b - strlen(b), "%s%" PRId64, d ? "," : "", p->shape[d]);
        return mrw_err(err, MRW_E_SHAPE, "%s: tensor '%s' has shape [%s], the model needs [%s]", path, ti->name, a,
                       b);
    }
    if (!mrw_dtype_is_float(ti->dtype))
        return mrw_err(err, MRW_E_FORMAT, "%s: tensor '%s' is %s, not a float type", path, ti->name,
                       mrw_dtype_name(ti->dtype));
    if (ti->dtype == MRW_DT_F32)
        memcpy(dst, ti->data, p->n * sizeof(float));
    else
        mrw_to_f32(ti->dtype, ti->data, dst, (int64_t)p->n);
    return MRW_OK;
}

mrw_status mrw_ckpt_load_weights(const char *path, mrw_param_set *const *sets, int n_sets, int allow_missing,
                                 int *n_loaded, mrw_error *err) {
    mrw_tfile *f;
    mrw_status s = mrw_tfile_open(path, &f, err);
    if (s != MRW_OK) return s;
    int loaded = 0;
    for (int k = 0; k < n_sets && s == MRW_OK; k++) {
        for (int i = 0; i < sets[k]->n && s == MRW_OK; i++) {
            const mrw_param *p = &sets[k]->p[i];
            const mrw_tensor_info *ti = mrw_tfile_find(f, p->name);
            if (!ti) {
                if (!allow_missing) s = mrw_err(err, MRW_E_MISSING, "%s: tensor '%s' is missing", path, p->name);
                continue;
            }
            s = copy_in(ti, p, mrw_param_w(sets[k], i), path, err);
            loaded += s == MRW_OK;
        }
    }
    mrw_tfile_close(f);
    if (n_loaded) *n_loaded = loaded;
    return s;
}

/* ------------------------------------------------------------------------------------------- resume */

mrw_status mrw_ckpt_save_resume(const char *path, const mrw_adam *o, const mrw_train_state *st, mrw_error *err) {
    int n = 0;
    for (int s = 0; s < o->n_sets; s++)
        for (int i = 0; i < o->sets[s]->n; i++) n += mrw_adam_trains(o, s, i) ? 3 : 1;
    mrw_tensor_info *t = calloc(n ? n : 1, sizeof *t);
    char **names = calloc(n ? n : 1, sizeof *names);
    mrw_status rc = MRW_OK;
    if (!t || !names) rc = mrw_err(err, MRW_E_NOMEM, "out of memory");
    int k = 0;
    for (int s = 0; s < o->n_sets && rc == MRW_OK; s++) {
        const mrw_param_set *ps = o->sets[s];
        for (int i = 0; i < ps->n && rc == MRW_OK; i++) {
            const mrw_param *p = &ps->p[i];
            static const char *pre[3] = {"w/", "m/", "v/"};
            int parts = mrw_adam_trains(o, s, i) ? 3 : 1;
            for (int j = 0; j < parts; j++) {
                names[k] = malloc(strlen(p->name) + 3);
                if (!names[k]) { rc = mrw_err(err, MRW_E_NOMEM, "out of memory"); break; }
                sprintf(names[k], "%s%s", pre[j], p->name);
                const float *d = j == 0 ? mrw_param_w(ps, i) : (j == 1 ? o->m : o->v) + o->moff[s][i];
                t[k] = f32_tensor(names[k], p, d);
                k++;
            }
        }
    }
    if (rc == MRW_OK) {
        char v_step[32], v_t[32], v_epoch[32], v_k[32], v_rng[32], v_tok[32], v_el[40], v_groups[16];
        snprintf(v_step, sizeof v_step, "%" PRId64, st->step);
        snprintf(v_t, sizeof v_t, "%" PRId64, o->t);
        snprintf(v_epoch, sizeof v_epoch, "%" PRId64, st->epoch);
        snprintf(v_k, sizeof v_k, "%" PRId64, st->k);
        snprintf(v_rng, sizeof v_rng, "%" PRIu64, st->rng);
        snprintf(v_tok, sizeof v_tok, "%" PRId64, st->tokens);
        snprintf(v_el, sizeof v_el, "%.17g", st->elapsed_s);
        snprintf(v_groups, sizeof v_groups, "%d", o->groups);
        const char *opt = st->options ? st->options : "{}";
        mrw_meta meta[] = {
            {.key = "modrwkv.resume", .type = MRW_MV_STRING, .v.s = {RESUME_VERSION, 1}},
            {.key = "step", .type = MRW_MV_STRING, .v.s = {v_step, strlen(v_step)}},
            {.key = "adam_t", .type = MRW_MV_STRING, .v.s = {v_t, strlen(v_t)}},
            {.key = "epoch", .type = MRW_MV_STRING, .v.s = {v_epoch, strlen(v_epoch)}},
            {.key = "k", .type = MRW_MV_STRING, .v.s = {v_k, strlen(v_k)}},
            {.key = "rng", .type = MRW_MV_STRING, .v.s = {v_rng, strlen(v_rng)}},
            {.key = "tokens", .type = MRW_MV_STRING, .v.s = {v_tok, strlen(v_tok)}},
            {.key = "elapsed_s", .type = MRW_MV_STRING, .v.s = {v_el, strlen(v_el)}},
            {.key = "groups", .type = MRW_MV_STRING, .v.s = {v_groups, strlen(v_groups)}},
            {.key = "options", .type = MRW_MV_STRING, .v.s = {opt, strlen(opt)}},
        };
        rc = write_atomic(path, t, k, meta, (int)(sizeof meta / sizeof meta[0]), err);
    }
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names), free(t);
    return rc;
}

/* A metadata string as a NUL-terminated copy in buf; NULL if absent or too long. */
static const char *meta_get(const mrw_tfile *f, const char *key, char *buf, size_t cap) {
    const mrw_meta *m = mrw_tfile_find_meta(f, key);
    if (!m || m->type != MRW_MV_STRING || m->v.s.len >= cap) return NULL;
    memcpy(buf, m->v.s.ptr, m->v.s.len);
    buf[m->v.s.len] = 0;
    return buf;
}

static int meta_i64(const mrw_tfile *f, const char *key, int64_t *out) {
    char buf[48], *end;
    if (!meta_get(f, key, buf, sizeof buf)) return -1;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end || end == buf) return -1;
    *out = v;
    return 0;
}

mrw_status mrw_ckpt_load_resume(const char *path, mrw_adam *o, mrw_train_state *st, mrw_error *err) {
    memset(st, 0, sizeof *st);
    mrw_tfile *f;
    mrw_status s = mrw_tfile_open(path, &f, err);
    if (s != MRW_OK) return s;
    char buf[64];
    int64_t step, t, epoch, k, tokens, groups;
    if (!meta_get(f, "modrwkv.resume", buf, sizeof buf)) {
        s = mrw_err(err, MRW_E_FORMAT, "%s is not a modrwkv resume file (no modrwkv.resume metadata)", path);
    } else if (strcmp(buf, RESUME_VERSION)) {
        s = mrw_err(err, MRW_E_UNSUPPORTED, "%s: resume format version %s (this build reads %s)", path, buf,
                    RESUME_VERSION);
    } else if (meta_i64(f, "step", &step) || meta_i64(f, "adam_t", &t) || meta_i64(f, "epoch", &epoch) ||
               meta_i64(f, "k", &k) || meta_i64(f, "tokens", &tokens) || meta_i64(f, "groups", &groups) ||
               !meta_get(f, "rng", buf, sizeof buf) || step < 0 || t < 0 || epoch < 0 || k < 0) {
        s = mrw_err(err, MRW_E_FORMAT, "%s: missing or bad resume metadata", path);
    } else if (groups != o->groups) {
        s = mrw_err(err, MRW_E_ARG, "%s was saved training groups %d, this run trains %d (same --train needed)", path,
                    (int)groups, o->groups);
    }
    if (s == MRW_OK) {
        char *end;
        errno = 0;
        st->rng = strtoull(buf, &end, 10);
        if (errno || *end) s = mrw_err(err, MRW_E_FORMAT, "%s: bad rng metadata", path);
        st->step = step, st->epoch = epoch, st->k = k, st->tokens = tokens;
        if (meta_get(f, "elapsed_s", buf, sizeof buf)) st->elapsed_s = strtod(buf, NULL);
        const mrw_meta *m = mrw_tfile_find_meta(f, "options");
        if (m && m->type == MRW_MV_STRING) {
            char *opt = malloc(m->v.s.len + 1);
            if (opt) {
                memcpy(opt, m->v.s.ptr, m->v.s.len);
                opt[m->v.s.len] = 0;
            }
            st->options = opt;
        }
    }
    /* every tensor must be there, and nothing else: the same model and selection */
    int expect = 0;
    for (int ss = 0; ss < o->n_sets && s == MRW_OK; ss++) {
        mrw_param_set *ps = o->sets[ss];
        for (int i = 0; i < ps->n && s == MRW_OK; i++) {
            static const char *pre[3] = {"w/", "m/", "v/"};
            int parts = mrw_adam_trains(o, ss, i) ? 3 : 1;
            for (int j = 0; j < parts && s == MRW_OK; j++) {
                char name[MRW_PARAM_NAME_MAX + 4];
                snprintf(name, sizeof name, "%s%s", pre[j], ps->p[i].name);
                const mrw_tensor_info *ti = mrw_tfile_find(f, name);
                if (!ti) {
                    s = mrw_err(err, MRW_E_MISSING, "%s: tensor '%s' is missing (a different model or --train?)",
                                path, name);
                    break;
                }
                if (ti->dtype != MRW_DT_F32) {
                    s = mrw_err(err, MRW_E_FORMAT, "%s: tensor '%s' is not f32", path, name);
                    break;
                }
                float *dst = j == 0 ? mrw_param_w(ps, i) : (j == 1 ? o->m : o->v) + o->moff[ss][i];
                s = copy_in(ti, &ps->p[i], dst, path, err);
                expect++;
            }
        }
    }
    if (s == MRW_OK && expect != mrw_tfile_count(f))
        s = mrw_err(err, MRW_E_FORMAT, "%s holds %d tensors, this model and selection have %d (a different model?)",
                    path, mrw_tfile_count(f), expect);
    if (s == MRW_OK) o->t = t;
    mrw_tfile_close(f);
    if (s != MRW_OK) {
        free((char *)st->options);
        st->options = NULL;
    }
    return s;
}
