/* Streaming training data: index pass, per-epoch permutation, record -> tokens/labels (the contract and the
 * label rules are in data.h).
 *
 * Index pass. Each file is read once in 1 MiB chunks by a byte scanner; only (offset, line, length) of each
 * record is kept, packed into 16 bytes. The first non-blank byte (after an optional UTF-8 BOM) decides the
 * layout: '[' = one JSON array whose elements are the records (the scanner follows strings, escapes and
 * bracket depth to find each element's extent, so records may span lines: LLaVA's pretty-printed files),
 * anything else = JSONL (one record per non-blank line; CRLF is fine). A record is parsed with cJSON only
 * when it is visited, so memory does not grow with the file size.
 *
 * Tokenisation. Each turn "\x16{Role}: {text}\x17" is tokenised on its own and the turns are concatenated
 * (token boundaries at turn edges; the World vocabulary has no token that contains 0x16 or 0x17, so this is
 * also what tokenising the whole conversation at once gives). Inside a user turn the literal "<image>"
 * markers are removed and the text on each side is tokenised separately (a token boundary at the marker);
 * media_pos is the index of the first token after the marker. Nothing else around the marker is removed
 * (LLaVA's "<image>\n" keeps its "\n"). The roles are "human"/"user", "gpt"/"assistant" and "system"
 * (case-insensitive). */
#define _GNU_SOURCE
#include "train/data.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/strutil.h"
#include "train/rwkv7_train.h" /* MRW_IGNORE */

#define DEFAULT_MAX_RECORD (64ll << 20)
#define LEN_BITS 27
#define LEN_MAX ((1ll << LEN_BITS) - 1)
#define LINE_MAX_V ((1ll << (64 - LEN_BITS)) - 1)
#define CHUNK (1 << 20)
#define MAX_WARNINGS 1000 /* per mrw_data: a wrong media root must not print a million lines */

typedef struct {
    uint64_t off;
    uint64_t line_len; /* line << LEN_BITS | length */
} rec_t;

typedef struct {
    char *path;
    char *root; /* media root of this file */
    int64_t first, n;
    int packed; /* several records start on one line (a one-line JSON array): messages add the byte offset */
} dfile;

struct mrw_data {
    mrw_data_params p;
    mrw_data_kind kind;
    int64_t max_rec;
    dfile *files;
    int n_files;
    rec_t *recs;
    int64_t n, cap;
    uint8_t *bad; /* bitmap: records already reported */
    uint32_t *perm;
    int64_t perm_epoch;
    int64_t epoch, k;
    int fd, fd_file;
    char *buf;
    size_t buf_cap;
    /* the current sample */
    int32_t *tok, *lab;
    uint8_t *sup;
    size_t ntok, tcap;
    char *str;
    size_t scap;
    char *media[MRW_DATA_MAX_MEDIA];
    mrw_status last; /* status of the last failed load (err may be NULL) */
    int n_warn;
};

/* ------------------------------------------------------------------------------------------- helpers */

static void warnf(mrw_data *d, const char *fmt, ...) MRW_PRINTF(2, 3);
static void warnf(mrw_data *d, const char *fmt, ...) {
    char msg[1024];
    if (d->n_warn >= MAX_WARNINGS) return;
    if (++d->n_warn == MAX_WARNINGS)
        snprintf(msg, sizeof msg, "%d data warnings: further bad records are skipped without a message", MAX_WARNINGS);
    else {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    if (d->p.warn)
        d->p.warn(d->p.warn_user, msg);
    else
        fprintf(stderr, "warning: %s\n", msg);
}

static int is_ws(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t mix64(uint64_t x) { return splitmix64(&x); }

/* ---------------------------------------------------------------------------------------- index pass */

typedef struct {
    mrw_data *d;
    int fi;
    int mode;       /* 0 undecided, 1 JSONL, 2 JSON array */
    int64_t line;   /* line of the next byte (1-based) */
    /* JSONL */
    int64_t ls, lline;
    int nonblank;
    /* array */
    int st;         /* 1 between elements, 2 in an element, 3 after the closing ']' */
    int in_str, esc, trailing_warned;
    int64_t depth, es, eline;
    mrw_status status; /* NOMEM / LIMIT from emit */
} scan_t;

static void emit(scan_t *s, int64_t off, int64_t len, int64_t line) {
    mrw_data *d = s->d;
    const char *path = d->files[s->fi].path;
    if (s->status) return;
    if (len > d->max_rec) {
        warnf(d, "%s:%lld: record of %lld bytes exceeds the limit of %lld bytes; skipped", path, (long long)line,
              (long long)len, (long long)d->max_rec);
        return;
    }
    if (line > LINE_MAX_V || d->n >= (int64_t)UINT32_MAX) {
        s->status = MRW_E_LIMIT;
        return;
    }
    if (d->n == d->cap) {
        int64_t nc = d->cap ? d->cap * 2 : 1024;
        rec_t *r = realloc(d->recs, (size_t)nc * sizeof *r);
        if (!r) {
            s->status = MRW_E_NOMEM;
            return;
        }
        d->recs = r;
        d->cap = nc;
    }
    if (d->n > d->files[s->fi].first && (int64_t)(d->recs[d->n - 1].line_len >> LEN_BITS) == line)
        d->files[s->fi].packed = 1;
    d->recs[d->n].off = (uint64_t)off;
    d->recs[d->n].line_len = ((uint64_t)line << LEN_BITS) | (uint64_t)len;
    d->n++;
}

/* Bytes that matter inside a JSON string, and inside an array element outside strings. */
static const uint8_t STR_SPECIAL[256] = {['"'] = 1, ['\\'] = 1, ['\n'] = 1};
static const uint8_t ELEM_SPECIAL[256] = {['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1, [','] = 1, ['\n'] = 1};

/* Feeds bytes [pos, pos + n) of the file. */
static void scan_feed(scan_t *s, const uint8_t *b, size_t n, int64_t pos) {
    for (size_t i = 0; i < n; i++) {
        if (s->mode == 2 && s->st == 2 && !s->esc) { /* fast path: skip the bytes that change nothing */
            const uint8_t *tab = s->in_str ? STR_SPECIAL : ELEM_SPECIAL;
            while (i < n && !tab[b[i]]) i++;
            if (i == n) break;
        }
        int c = b[i];
        int64_t at = pos + (int64_t)i;
        if (s->mode == 0) {
            if (c == '\n') {
                s->line++;
                s->ls = at + 1;
                s->lline = s->line;
                continue;
            }
            if (is_ws(c)) continue;
            if (c == '[') {
                s->mode = 2;
                s->st = 1;
                continue;
            }
            s->mode = 1;
            s->nonblank = 1;
            continue;
        }
        if (s->mode == 1) {
            if (c == '\n') {
                if (s->nonblank) emit(s, s->ls, at - s->ls, s->lline);
                s->line++;
                s->ls = at + 1;
                s->lline = s->line;
                s->nonblank = 0;
            } else if (s->nonblank) {
                /* fast path: jump to the end of the line */
                const uint8_t *nl = memchr(b + i, '\n', n - i);
                if (!nl) break;
                i = (size_t)(nl - b) - 1;
            } else if (!is_ws(c)) {
                s->nonblank = 1;
            }
            continue;
        }
        /* JSON array */
        if (c == '\n') s->line++;
        if (s->st == 2) {
            if (s->in_str) {
                if (s->esc)
                    s->esc = 0;
                else if (c == '\\')
                    s->esc = 1;
                else if (c == '"')
                    s->in_str = 0;
                continue;
            }
            if (c == '"') {
                s->in_str = 1;
            } else if (c == '{' || c == '[') {
                s->depth++;
            } else if (c == '}') {
                if (s->depth > 0) s->depth--;
            } else if (c == ']') {
                if (s->depth > 0) {
                    s->depth--;
                } else {
                    emit(s, s->es, at - s->es, s->eline);
                    s->st = 3;
                }
            } else if (c == ',' && s->depth == 0) {
                emit(s, s->es, at - s->es, s->eline);
                s->st = 1;
            }
            continue;
        }
        if (s->st == 1) {
            if (is_ws(c) || c == ',') continue;
            if (c == ']') {
                s->st = 3;
                continue;
            }
            s->st = 2;
            s->es = at;
            s->eline = s->line;
            s->depth = 0;
            s->in_str = s->esc = 0;
            i--; /* process this byte as part of the element */
            continue;
        }
        /* st 3: after the array */
        if (!is_ws(c) && !s->trailing_warned) {
            warnf(s->d, "%s:%lld: text after the closing ']' is ignored", s->d->files[s->fi].path, (long long)s->line);
            s->trailing_warned = 1;
        }
    }
}

static void scan_end(scan_t *s, int64_t size) {
    const char *path = s->d->files[s->fi].path;
    if (s->mode == 1) {
        if (s->nonblank) emit(s, s->ls, size - s->ls, s->lline);
    } else if (s->mode == 2) {
        if (s->st == 2) {
            if (s->in_str || s->depth > 0) {
                warnf(s->d, "%s:%lld: truncated record (the file ends inside it); skipped", path, (long long)s->eline);
            } else {
                emit(s, s->es, size - s->es, s->eline);
            }
        }
        if (s->st == 1 || s->st == 2) warnf(s->d, "%s:%lld: the file ends before the array's closing ']'", path, (long long)s->line);
    }
}

static mrw_status index_file(mrw_data *d, int fi, uint8_t *chunk, mrw_error *err) {
    const char *path = d->files[fi].path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mrw_err(err, MRW_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return mrw_err(err, MRW_E_IO, "%s: not a regular file", path);
    }
    scan_t s;
    memset(&s, 0, sizeof s);
    s.d = d;
    s.fi = fi;
    s.line = s.lline = 1;
    int64_t pos = 0;
    d->files[fi].first = d->n;
    for (;;) {
        ssize_t got = read(fd, chunk, CHUNK);
        if (got < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            return mrw_err(err, MRW_E_IO, "%s: read failed: %s", path, strerror(e));
        }
        if (got == 0) break;
        size_t skip = 0;
        if (pos == 0 && got >= 3 && chunk[0] == 0xEF && chunk[1] == 0xBB && chunk[2] == 0xBF) {
            skip = 3;
            s.ls = 3;
        }
        scan_feed(&s, chunk + skip, (size_t)got - skip, pos + (int64_t)skip);
        pos += got;
        if (s.status) break;
    }
    close(fd);
    if (!s.status) scan_end(&s, pos);
    if (s.status == MRW_E_NOMEM) return mrw_err(err, MRW_E_NOMEM, "%s: out of memory while indexing", path);
    if (s.status) return mrw_err(err, s.status, "%s: too many records or lines", path);
    d->files[fi].n = d->n - d->files[fi].first;
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------ record -> sample */

typedef struct {
    char why[600];
    int64_t line_off; /* line of the problem relative to the record's first line */
} bad_t;

static int badf(bad_t *b, const char *fmt, ...) MRW_PRINTF(2, 3);
static int badf(bad_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->why, sizeof b->why, fmt, ap);
    va_end(ap);
    return 1;
}

static int grow_tokens(mrw_data *d, size_t need) {
    if (need <= d->tcap) return 0;
    size_t nc = d->tcap ? d->tcap : 256;
    while (nc < need) nc *= 2;
    int32_t *t = realloc(d->tok, nc * sizeof *t);
    if (t) d->tok = t;
    int32_t *l = realloc(d->lab, nc * sizeof *l);
    if (l) d->lab = l;
    uint8_t *u = realloc(d->sup, nc);
    if (u) d->sup = u;
    if (!t || !l || !u) return -1;
    d->tcap = nc;
    return 0;
}

/* Appends the tokens of s[0..len). 0 ok, -1 out of memory, -2 the vocabulary cannot encode it. */
static int tok_append(mrw_data *d, const char *s, size_t len, int supervised) {
    if (len == 0) return 0;
    for (;;) {
        size_t room = d->tcap - d->ntok;
        int64_t k = mrw_tokenize(d->p.vocab, s, len, d->tok ? d->tok + d->ntok : NULL, room);
        if (k < 0) return -2;
        if ((size_t)k <= room) {
            memset(d->sup + d->ntok, supervised, (size_t)k);
            d->ntok += (size_t)k;
            return 0;
        }
        if (grow_tokens(d, d->ntok + (size_t)k)) return -1;
    }
}

static int str_reserve(mrw_data *d, size_t need) {
    if (need <= d->scap) return 0;
    size_t nc = d->scap ? d->scap : 4096;
    while (nc < need) nc *= 2;
    char *p = realloc(d->str, nc);
    if (!p) return -1;
    d->str = p;
    d->scap = nc;
    return 0;
}

static const char *json_type(const cJSON *j) {
    if (!j) return "missing";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

/* Resolves a media path against the root and checks that it names a regular file. */
static int media_add(mrw_data *d, mrw_data_sample *s, const char *dir, const char *rel, mrw_media_kind kind,
                     const char *what, int pos, bad_t *b) {
    char pr[200];
    size_t rl = strlen(rel);
    if (rl == 0) return badf(b, "'%s' is an empty string", what);
    size_t n = (rel[0] == '/' ? 0 : strlen(dir) + 1) + rl + 1;
    char *p = malloc(n);
    if (!p) return -1;
    if (rel[0] == '/')
        memcpy(p, rel, rl + 1);
    else
        snprintf(p, n, "%s/%s", dir, rel);
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
        char pp[300];
        badf(b, "%s '%s' not found (%s)", what, mrw_printable(pr, sizeof pr, rel, rl), mrw_printable(pp, sizeof pp, p, strlen(p)));
        free(p);
        return 1;
    }
    int j = s->n_media++;
    d->media[j] = p;
    s->media_path[j] = p;
    s->media_kind[j] = kind;
    s->media_pos[j] = pos;
    return 0;
}

static mrw_data_kind detect_kind(const cJSON *root) {
    if (cJSON_GetObjectItemCaseSensitive(root, "conversations")) return MRW_DATA_LLAVA;
    if (cJSON_GetObjectItemCaseSensitive(root, "audio")) return MRW_DATA_AUDIO;
    if (cJSON_GetObjectItemCaseSensitive(root, "text")) return MRW_DATA_TEXT;
    return MRW_DATA_AUTO;
}

static const char IMAGE_MARK[] = "<image>";
#define IMAGE_MARK_LEN (sizeof IMAGE_MARK - 1)
static const char AUDIO_MARK[] = "<audio>"; /* a marker only in records with an "audio" field */
#define AUDIO_MARK_LEN (sizeof AUDIO_MARK - 1)

/* Tokenises d->str[0..len) with "<image>" (and, when `audio_marks`, "<audio>") markers split out when
 * `markers`; fills the media positions and kinds in marker order. */
static int tok_turn(mrw_data *d, size_t len, int supervised, int markers, int audio_marks, int *n_marks, int *mpos,
                    int *maudio, bad_t *b) {
    const char *p = d->str, *end = d->str + len;
    int r;
    while (markers) {
        const char *mi = memmem(p, (size_t)(end - p), IMAGE_MARK, IMAGE_MARK_LEN);
        const char *ma = audio_marks ? memmem(p, (size_t)(end - p), AUDIO_MARK, AUDIO_MARK_LEN) : NULL;
        const char *m = mi && (!ma || mi < ma) ? mi : ma;
        if (!m) break;
        if ((r = tok_append(d, p, (size_t)(m - p), supervised))) return r;
        if (*n_marks < MRW_DATA_MAX_MEDIA) mpos[*n_marks] = (int)d->ntok, maudio[*n_marks] = m == ma;
        ++*n_marks;
        p = m + (m == ma ? AUDIO_MARK_LEN : IMAGE_MARK_LEN);
    }
    return tok_append(d, p, (size_t)(end - p), supervised);
}

/* "image" / "audio" of a LLaVA record: a string or an array of strings (up to MRW_DATA_MAX_MEDIA). */
static int media_list(const cJSON *root, const char *key, const char **out, int *n, bad_t *b) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *n = 0;
    if (cJSON_IsString(v)) {
        out[(*n)++] = v->valuestring;
    } else if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsString(e)) return badf(b, "'%s' must hold strings, found %s", key, json_type(e));
            if (*n == MRW_DATA_MAX_MEDIA) return badf(b, "more than %d %ss", MRW_DATA_MAX_MEDIA, key);
            out[(*n)++] = e->valuestring;
        }
        if (*n == 0) return badf(b, "'%s' is an empty array", key);
    } else if (v && !cJSON_IsNull(v)) {
        return badf(b, "'%s' must be a string or an array of strings, found %s", key, json_type(v));
    }
    return 0;
}

static int build_llava(mrw_data *d, const cJSON *root, const dfile *f, mrw_data_sample *s, bad_t *b) {
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(root, "conversations");
    if (!cJSON_IsArray(conv)) return badf(b, "'conversations' must be an array, found %s", json_type(conv));
    const char *images[MRW_DATA_MAX_MEDIA], *audios[MRW_DATA_MAX_MEDIA];
    int n_images = 0, n_audios = 0, r;
    if ((r = media_list(root, "image", images, &n_images, b))) return r;
    if ((r = media_list(root, "audio", audios, &n_audios, b))) return r;
    const int audio_marks = cJSON_GetObjectItemCaseSensitive(root, "audio") != NULL;
    int mpos[MRW_DATA_MAX_MEDIA] = {0}, maudio[MRW_DATA_MAX_MEDIA] = {0};
    int n_marks = 0, n_turns = 0, has_assistant = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, conv) {
        int ti = n_turns++;
        if (!cJSON_IsObject(t)) return badf(b, "conversations[%d] must be an object, found %s", ti, json_type(t));
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(t, "from");
        const cJSON *val = cJSON_GetObjectItemCaseSensitive(t, "value");
        if (!cJSON_IsString(from))
            return badf(b, "conversations[%d]: 'from' must be a string, found %s", ti, json_type(from));
        if (!cJSON_IsString(val))
            return badf(b, "conversations[%d]: 'value' must be a string, found %s", ti, json_type(val));
        const char *role;
        int assistant = 0, user = 0;
        if (!strcasecmp(from->valuestring, "human") || !strcasecmp(from->valuestring, "user")) {
            role = "\x16User: ";
            user = 1;
        } else if (!strcasecmp(from->valuestring, "gpt") || !strcasecmp(from->valuestring, "assistant")) {
            role = "\x16" "Assistant: ";
            assistant = 1;
        } else if (!strcasecmp(from->valuestring, "system")) {
            role = "\x16System: ";
        } else {
            char pr[64];
            return badf(b, "conversations[%d]: unknown role '%s' (expected human, gpt, user, assistant or system)", ti,
                        mrw_printable(pr, sizeof pr, from->valuestring, strlen(from->valuestring)));
        }
        size_t rl = strlen(role), vl = strlen(val->valuestring);
        if (!user && memmem(val->valuestring, vl, IMAGE_MARK, IMAGE_MARK_LEN))
            return badf(b, "conversations[%d]: <image> marker outside a user turn", ti);
        if (!user && audio_marks && memmem(val->valuestring, vl, AUDIO_MARK, AUDIO_MARK_LEN))
            return badf(b, "conversations[%d]: <audio> marker outside a user turn", ti);
        if (str_reserve(d, rl + vl + 1)) return -1;
        memcpy(d->str, role, rl);
        memcpy(d->str + rl, val->valuestring, vl);
        d->str[rl + vl] = '\x17';
        if ((r = tok_turn(d, rl + vl + 1, assistant, user, audio_marks, &n_marks, mpos, maudio, b))) return r;
        has_assistant |= assistant;
    }
    if (n_turns == 0) return badf(b, "'conversations' is empty");
    if (n_marks > MRW_DATA_MAX_MEDIA) return badf(b, "%d media markers (at most %d)", n_marks, MRW_DATA_MAX_MEDIA);
    int n_img_marks = 0;
    for (int j = 0; j < n_marks; j++) n_img_marks += !maudio[j];
    const int n_aud_marks = n_marks - n_img_marks;
    if (n_img_marks > n_images) {
        if (n_images == 0) return badf(b, "<image> marker but the record has no 'image'");
        return badf(b, "%d <image> markers for %d image%s", n_img_marks, n_images, n_images > 1 ? "s" : "");
    }
    if (n_img_marks < n_images) {
        if (n_img_marks == 0) return badf(b, "the record has an image but no <image> marker in a user turn");
        return badf(b, "%d <image> marker%s for %d images", n_img_marks, n_img_marks > 1 ? "s" : "", n_images);
    }
    if (n_aud_marks != n_audios)
        return badf(b, "%d <audio> marker%s for %d recording%s", n_aud_marks, n_aud_marks == 1 ? "" : "s", n_audios,
                    n_audios == 1 ? "" : "s");
    if (!has_assistant) return badf(b, "no assistant turn");
    for (int j = 0, ji = 0, ja = 0; j < n_marks; j++) /* in marker order */
        if ((r = maudio[j] ? media_add(d, s, f->root, audios[ja++], MRW_MEDIA_AUDIO, "audio", mpos[j], b)
                           : media_add(d, s, f->root, images[ji++], MRW_MEDIA_IMAGE, "image", mpos[j], b)))
            return r;
    return 0;
}

static int build_audio(mrw_data *d, const cJSON *root, const dfile *f, mrw_data_sample *s, bad_t *b) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "audio");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "text");
    if (!cJSON_IsString(a)) return badf(b, "'audio' must be a string, found %s", json_type(a));
    if (!cJSON_IsString(t)) return badf(b, "'text' must be a string, found %s", json_type(t));
    static const char pre[] = "\x16" "Assistant: ";
    size_t pl = sizeof pre - 1, tl = strlen(t->valuestring);
    if (str_reserve(d, pl + tl + 1)) return -1;
    memcpy(d->str, pre, pl);
    memcpy(d->str + pl, t->valuestring, tl);
    d->str[pl + tl] = '\x17';
    int r = tok_append(d, d->str, pl + tl + 1, 1);
    if (r) return r;
    return media_add(d, s, f->root, a->valuestring, MRW_MEDIA_AUDIO, "audio", 0, b);
}

static int build_text(mrw_data *d, const cJSON *root, mrw_data_sample *s, bad_t *b) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "text");
    if (!cJSON_IsString(t)) return badf(b, "'text' must be a string, found %s", json_type(t));
    if (!t->valuestring[0]) return badf(b, "'text' is empty");
    return tok_append(d, t->valuestring, strlen(t->valuestring), 1);
}

static void clear_media(mrw_data *d) {
    for (int j = 0; j < MRW_DATA_MAX_MEDIA; j++) {
        free(d->media[j]);
        d->media[j] = NULL;
    }
}

/* Parses one record's bytes into s. 0 = ok, 1 = bad record (b says why), -1 = out of memory. */
static int build_sample(mrw_data *d, const char *buf, size_t len, const dfile *f, mrw_data_sample *s, bad_t *b) {
    memset(s, 0, sizeof *s);
    clear_media(d);
    d->ntok = 0;
    b->line_off = 0;
    const char *end = NULL;
    cJSON *root = len ? cJSON_ParseWithLengthOpts(buf, len, &end, 0) : NULL;
    if (!root) {
        size_t at = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;
        for (size_t i = 0; i < at; i++) b->line_off += buf[i] == '\n';
        size_t col = 0;
        while (col < at && buf[at - col - 1] != '\n') col++;
        return badf(b, "invalid JSON (column %zu)", col + 1);
    }
    int r = 0;
    for (const char *p = end; p < buf + len; p++)
        if (!is_ws((unsigned char)*p)) {
            for (const char *q = buf; q < p; q++) b->line_off += *q == '\n';
            r = badf(b, "unexpected text after the JSON value");
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        r = badf(b, "the record is %s, not a JSON object", json_type(root));
        goto done;
    }
    if (d->kind == MRW_DATA_AUTO) {
        d->kind = detect_kind(root);
        if (d->kind == MRW_DATA_AUTO) {
            r = badf(b, "cannot tell the record kind: no 'conversations', 'audio' or 'text' field");
            goto done;
        }
    }
    if (grow_tokens(d, 256)) {
        r = -1;
        goto done;
    }
    if (d->kind == MRW_DATA_LLAVA)
        r = build_llava(d, root, f, s, b);
    else if (d->kind == MRW_DATA_AUDIO)
        r = build_audio(d, root, f, s, b);
    else
        r = build_text(d, root, s, b);
    if (r == -2) r = badf(b, "the vocabulary cannot encode the text");
    if (r) goto done;
    if (d->ntok > (size_t)(1 << 30)) {
        r = badf(b, "too many tokens");
        goto done;
    }
    /* labels: next-token targets on supervised tokens */
    size_t n = d->ntok;
    for (size_t i = 0; i < n; i++) d->lab[i] = i + 1 < n && d->sup[i + 1] ? d->tok[i + 1] : MRW_IGNORE;
    for (int j = 0; j < s->n_media; j++) {
        size_t p = (size_t)s->media_pos[j];
        s->media_target[j] = p < n && d->sup[p] ? d->tok[p] : MRW_IGNORE;
    }
    if (d->p.ctx_len > 0 && n > (size_t)d->p.ctx_len) {
        n = (size_t)d->p.ctx_len;
        while (s->n_media > 0 && (size_t)s->media_pos[s->n_media - 1] > n) {
            s->n_media--;
            s->media_path[s->n_media] = NULL;
        }
    }
    for (int j = s->n_media; j < MRW_DATA_MAX_MEDIA; j++) s->media_target[j] = MRW_IGNORE;
    s->tokens = d->tok;
    s->labels = d->lab;
    s->n = (int)n;
done:
    cJSON_Delete(root);
    if (r) {
        memset(s, 0, sizeof *s);
        clear_media(d);
    }
    return r;
}

/* Reads record idx into d->buf. */
static mrw_status read_record(mrw_data *d, int64_t idx, int fi, size_t *len, mrw_error *err) {
    const dfile *f = &d->files[fi];
    uint64_t off = d->recs[idx].off;
    size_t n = (size_t)(d->recs[idx].line_len & (uint64_t)LEN_MAX);
    if (d->fd_file != fi) {
        if (d->fd >= 0) close(d->fd);
        d->fd = open(f->path, O_RDONLY | O_CLOEXEC);
        d->fd_file = d->fd >= 0 ? fi : -1;
        if (d->fd < 0) return mrw_err(err, MRW_E_IO, "%s: cannot open: %s", f->path, strerror(errno));
    }
    if (n + 1 > d->buf_cap) {
        size_t nc = d->buf_cap ? d->buf_cap : 65536;
        while (nc < n + 1) nc *= 2;
        char *b = realloc(d->buf, nc);
        if (!b) return mrw_err(err, MRW_E_NOMEM, "out of memory for a record of %zu bytes", n);
        d->buf = b;
        d->buf_cap = nc;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(d->fd, d->buf + got, n - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return mrw_err(err, MRW_E_IO, "%s: read failed: %s", f->path, strerror(errno));
        if (k == 0) return mrw_err(err, MRW_E_IO, "%s: the file shrank since it was indexed", f->path);
        got += (size_t)k;
    }
    d->buf[n] = 0;
    *len = n;
    return MRW_OK;
}

static int file_of(const mrw_data *d, int64_t idx) {
    int lo = 0, hi = d->n_files - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->files[mid].first <= idx)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Loads record idx into s: 0 ok, 1 bad (reported and marked), <0 error (err set). */
static int load(mrw_data *d, int64_t idx, mrw_data_sample *s, mrw_error *err) {
    int fi = file_of(d, idx);
    size_t len = 0;
    if ((d->last = read_record(d, idx, fi, &len, err))) return -1;
    bad_t b;
    int r = build_sample(d, d->buf, len, &d->files[fi], s, &b);
    int64_t line = (int64_t)(d->recs[idx].line_len >> LEN_BITS);
    if (r < 0) {
        d->last = mrw_err(err, MRW_E_NOMEM, "%s:%lld: out of memory", d->files[fi].path, (long long)line);
        return -1;
    }
    if (r > 0) {
        if (!(d->bad[idx >> 3] & (1u << (idx & 7)))) {
            if (d->files[fi].packed)
                warnf(d, "%s:%lld: record at byte %llu: %s; skipped", d->files[fi].path, (long long)(line + b.line_off),
                      (unsigned long long)d->recs[idx].off, b.why);
            else
                warnf(d, "%s:%lld: %s; skipped", d->files[fi].path, (long long)(line + b.line_off), b.why);
        }
        d->bad[idx >> 3] |= (uint8_t)(1u << (idx & 7));
        return 1;
    }
    s->file = d->files[fi].path;
    s->line = line;
    s->index = idx;
    return 0;
}

/* ------------------------------------------------------------------------------------------- public */

void mrw_data_free(mrw_data *d) {
    if (!d) return;
    for (int i = 0; i < d->n_files; i++) {
        free(d->files[i].path);
        free(d->files[i].root);
    }
    free(d->files);
    free(d->recs);
    free(d->bad);
    free(d->perm);
    if (d->fd >= 0) close(d->fd);
    free(d->buf);
    free(d->tok);
    free(d->lab);
    free(d->sup);
    free(d->str);
    clear_media(d);
    free(d);
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

mrw_status mrw_data_open(const char *const *paths, int n_paths, const mrw_data_params *params, mrw_data **out,
                         mrw_error *err) {
    *out = NULL;
    if (!paths || n_paths <= 0 || !params) return mrw_err(err, MRW_E_ARG, "no data files given");
    if (!params->vocab) return mrw_err(err, MRW_E_ARG, "a vocabulary is required to tokenise the data");
    if (params->kind < MRW_DATA_AUTO || params->kind > MRW_DATA_AUDIO)
        return mrw_err(err, MRW_E_ARG, "unknown data kind %d", (int)params->kind);
    if (params->ctx_len < 0) return mrw_err(err, MRW_E_ARG, "ctx_len must be >= 0");
    mrw_data *d = calloc(1, sizeof *d);
    if (!d) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    d->p = *params;
    d->p.root = NULL;
    d->kind = params->kind;
    d->max_rec = params->max_record_bytes > 0 ? params->max_record_bytes : DEFAULT_MAX_RECORD;
    if (d->max_rec > LEN_MAX) d->max_rec = LEN_MAX;
    d->fd = -1;
    d->fd_file = -1;
    d->perm_epoch = -1;
    mrw_status st = MRW_OK;
    uint8_t *chunk = malloc(CHUNK);
    d->files = calloc((size_t)n_paths, sizeof *d->files);
    if (!chunk || !d->files) {
        st = mrw_err(err, MRW_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n_paths; i++) {
        if (!paths[i]) {
            st = mrw_err(err, MRW_E_ARG, "data path %d is NULL", i);
            goto fail;
        }
        d->files[i].path = strdup(paths[i]);
        d->files[i].root = params->root ? strdup(params->root) : dir_of(paths[i]);
        d->n_files = i + 1;
        if (!d->files[i].path || !d->files[i].root) {
            st = mrw_err(err, MRW_E_NOMEM, "out of memory");
            goto fail;
        }
        if ((st = index_file(d, i, chunk, err))) goto fail;
        if (d->files[i].n == 0) {
            st = mrw_err(err, MRW_E_FORMAT, "%s: no records found", paths[i]);
            goto fail;
        }
    }
    free(chunk);
    chunk = NULL;
    d->bad = calloc((size_t)(d->n + 7) / 8, 1);
    if (!d->bad || (params->shuffle && !(d->perm = malloc((size_t)d->n * sizeof *d->perm)))) {
        st = mrw_err(err, MRW_E_NOMEM, "out of memory for the index of %lld records", (long long)d->n);
        goto fail;
    }
    /* Each file must have at least one usable record (this also settles MRW_DATA_AUTO). */
    for (int i = 0; i < d->n_files; i++) {
        int64_t nbad = 0;
        int ok = 0;
        for (int64_t j = d->files[i].first; j < d->files[i].first + d->files[i].n && !ok; j++) {
            mrw_data_sample s;
            int r = load(d, j, &s, err);
            if (r < 0) {
                st = d->last;
                goto fail;
            }
            if (r == 0) ok = 1;
            else nbad++;
        }
        if (!ok) {
            st = mrw_err(err, MRW_E_FORMAT, "%s: no usable record (all %lld are bad)", paths[i], (long long)nbad);
            goto fail;
        }
    }
    d->epoch = 0;
    d->k = 0;
    *out = d;
    return MRW_OK;
fail:
    free(chunk);
    mrw_data_free(d);
    return st ? st : MRW_E_INTERNAL;
}

int64_t mrw_data_count(const mrw_data *d) { return d ? d->n : 0; }

static void make_perm(mrw_data *d, int64_t epoch) {
    if (!d->perm || d->perm_epoch == epoch) return;
    for (int64_t i = 0; i < d->n; i++) d->perm[i] = (uint32_t)i;
    uint64_t s = mix64(d->p.seed) ^ mix64((uint64_t)epoch ^ 0xD1B54A32D192ED03ull);
    for (int64_t i = d->n - 1; i > 0; i--) {
        /* multiply-shift into [0, i]: bias below i / 2^64 */
        uint64_t j = (uint64_t)(((unsigned __int128)splitmix64(&s) * (uint64_t)(i + 1)) >> 64);
        uint32_t t = d->perm[i];
        d->perm[i] = d->perm[j];
        d->perm[j] = t;
    }
    d->perm_epoch = epoch;
}

mrw_status mrw_data_next(mrw_data *d, mrw_data_sample *s, mrw_error *err) {
    if (!d || !s) return mrw_err(err, MRW_E_ARG, "mrw_data_next: NULL argument");
    int64_t skipped = 0;
    for (;;) {
        if (d->k >= d->n) {
            d->epoch++;
            d->k = 0;
        }
        make_perm(d, d->epoch);
        int64_t idx = d->perm ? (int64_t)d->perm[d->k] : d->k;
        d->k++;
        if (d->bad[idx >> 3] & (1u << (idx & 7))) {
            if (++skipped > d->n) return mrw_err(err, MRW_E_FORMAT, "no usable record is left in the data");
            continue;
        }
        int r = load(d, idx, s, err);
        if (r < 0) {
            d->k--; /* retry the same record after a transient failure */
            return d->last;
        }
        if (r == 0) return MRW_OK;
        if (++skipped > d->n) return mrw_err(err, MRW_E_FORMAT, "no usable record is left in the data");
    }
}

void mrw_data_tell(const mrw_data *d, int64_t *epoch, int64_t *k) {
    int64_t e = d->epoch, kk = d->k;
    if (kk >= d->n) { /* the next call starts the next epoch */
        e++;
        kk = 0;
    }
    if (epoch) *epoch = e;
    if (k) *k = kk;
}

mrw_status mrw_data_seek(mrw_data *d, int64_t epoch, int64_t k, mrw_error *err) {
    if (!d) return mrw_err(err, MRW_E_ARG, "mrw_data_seek: NULL data");
    if (epoch < 0 || k < 0 || k > d->n)
        return mrw_err(err, MRW_E_ARG, "data position (epoch %lld, record %lld) is out of range (%lld records)",
                       (long long)epoch, (long long)k, (long long)d->n);
    d->epoch = epoch;
    d->k = k;
    return MRW_OK;
}
