/* CSV time series (mrw_csv_read): a header row, then rows of numbers, streamed line by line.
 *
 * Fields are separated by ',' and may be quoted ("a,b" with "" for a quote; a quoted field cannot span
 * lines); spaces around a field are ignored; CRLF line ends, a UTF-8 BOM and blank lines are accepted.
 * Columns are chosen by their header name. With no names given, every column whose first data cell is a
 * number is taken (so a leading date column is simply left out). Every selected cell must be a finite number
 * that fits a float: anything else is an error naming the file, line and column. */
#define _GNU_SOURCE
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/strutil.h"
#include "train/data.h"

#define CSV_MAX_LINE (1 << 20)
#define CSV_MAX_FIELDS 100000

typedef struct {
    FILE *fp;
    const char *path;
    int64_t line;       /* line number of the line in buf */
    char *buf;          /* current line, NUL-terminated, without the line end */
    size_t len, cap;
    char **f;           /* fields of the current line (point into fb) */
    int nf, fcap;
    char *fb;           /* unquoted field text */
    size_t fbcap;
    mrw_status st;      /* the error of the last failed csv_line / csv_split */
} csv_t;

/* Reads the next line. 1 = got one, 0 = end of file, <0 = error (err set). */
static int csv_line(csv_t *c, mrw_error *err) {
    c->len = 0;
    int ch, any = 0;
    while ((ch = getc_unlocked(c->fp)) != EOF) {
        any = 1;
        if (ch == '\n') break;
        if (c->len + 2 > c->cap) {
            size_t nc = c->cap ? c->cap * 2 : 4096;
            if (nc > CSV_MAX_LINE + 2) nc = CSV_MAX_LINE + 2;
            if (c->len + 2 > nc) {
                c->st = mrw_err(err, MRW_E_LIMIT, "%s:%lld: line longer than %d bytes", c->path, (long long)c->line + 1,
                        CSV_MAX_LINE);
                return -1;
            }
            char *b = realloc(c->buf, nc);
            if (!b) {
                c->st = mrw_err(err, MRW_E_NOMEM, "out of memory");
                return -1;
            }
            c->buf = b;
            c->cap = nc;
        }
        c->buf[c->len++] = (char)ch;
    }
    if (ferror(c->fp)) {
        c->st = mrw_err(err, MRW_E_IO, "%s: read failed", c->path);
        return -1;
    }
    if (!any) return 0;
    if (!c->buf && !(c->buf = malloc(c->cap = 16))) {
        c->st = mrw_err(err, MRW_E_NOMEM, "out of memory");
        return -1;
    }
    if (c->len && c->buf[c->len - 1] == '\r') c->len--;
    c->buf[c->len] = 0;
    c->line++;
    if (c->line == 1 && c->len >= 3 && !memcmp(c->buf, "\xEF\xBB\xBF", 3)) {
        memmove(c->buf, c->buf + 3, c->len - 2);
        c->len -= 3;
    }
    return 1;
}

static int blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t') return 0;
    return 1;
}

/* Splits the current line into fields. 0 ok, <0 error. */
static int csv_split(csv_t *c, mrw_error *err) {
    if (c->fbcap < c->len + 1) {
        char *b = realloc(c->fb, c->len + 1);
        if (!b) return c->st = mrw_err(err, MRW_E_NOMEM, "out of memory"), -1;
        c->fb = b;
        c->fbcap = c->len + 1;
    }
    c->nf = 0;
    const char *p = c->buf, *end = c->buf + c->len;
    char *o = c->fb;
    for (;;) {
        if (c->nf == c->fcap) {
            int nc = c->fcap ? c->fcap * 2 : 32;
            char **f = realloc(c->f, (size_t)nc * sizeof *f);
            if (!f) return c->st = mrw_err(err, MRW_E_NOMEM, "out of memory"), -1;
            c->f = f;
            c->fcap = nc;
        }
        if (c->nf >= CSV_MAX_FIELDS)
            return c->st = mrw_err(err, MRW_E_LIMIT, "%s:%lld: more than %d fields", c->path, (long long)c->line, CSV_MAX_FIELDS), -1;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        char *start = o;
        if (p < end && *p == '"') {
            p++;
            for (;;) {
                if (p >= end)
                    return c->st = mrw_err(err, MRW_E_FORMAT, "%s:%lld: field %d: unterminated quote", c->path,
                                   (long long)c->line, c->nf + 1), -1;
                if (*p == '"') {
                    if (p + 1 < end && p[1] == '"') {
                        *o++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *o++ = *p++;
            }
            while (p < end && (*p == ' ' || *p == '\t')) p++;
            if (p < end && *p != ',')
                return c->st = mrw_err(err, MRW_E_FORMAT, "%s:%lld: field %d: text after a closing quote", c->path,
                               (long long)c->line, c->nf + 1), -1;
        } else {
            while (p < end && *p != ',') *o++ = *p++;
            while (o > start && (o[-1] == ' ' || o[-1] == '\t')) o--;
        }
        *o++ = 0;
        c->f[c->nf++] = start;
        if (p >= end) break;
        p++; /* the comma */
    }
    return 0;
}

/* Parses a cell as a finite float. 0 ok, else an error message in why. */
/* Opens path for csv_line / csv_split; MRW_E_IO naming the file. */
static mrw_status csv_open(csv_t *c, const char *path, mrw_error *err) {
    memset(c, 0, sizeof *c);
    c->path = path;
    c->fp = fopen(path, "rb");
    return c->fp ? MRW_OK : mrw_err(err, MRW_E_IO, "%s: cannot open: %s", path, strerror(errno));
}

static void csv_close(csv_t *c) {
    if (c->fp) fclose(c->fp);
    free(c->buf);
    free(c->f);
    free(c->fb);
}

static int parse_cell(const char *s, float *v, char *why, size_t cap) {
    char pr[64];
    if (!*s) return snprintf(why, cap, "empty cell"), -1;
    errno = 0;
    char *e;
    double x = strtod(s, &e);
    if (e == s || *e) return snprintf(why, cap, "not a number: '%s'", mrw_printable(pr, sizeof pr, s, strlen(s))), -1;
    if (isnan(x)) return snprintf(why, cap, "NaN is not allowed"), -1;
    if (isinf(x) || fabs(x) > FLT_MAX)
        return snprintf(why, cap, "value '%s' is infinite or out of float range", mrw_printable(pr, sizeof pr, s, strlen(s))), -1;
    *v = (float)x;
    return 0;
}

void mrw_csv_series_free(mrw_csv_series *s) {
    if (!s) return;
    for (int i = 0; i < s->n_cols; i++)
        if (s->names) free(s->names[i]);
    free(s->names);
    free(s->values);
    memset(s, 0, sizeof *s);
}

mrw_status mrw_csv_read(const char *path, const char *const *columns, int n_columns, mrw_csv_series *out,
                        mrw_error *err) {
    memset(out, 0, sizeof *out);
    if (!path) return mrw_err(err, MRW_E_ARG, "no CSV path");
    if (n_columns < 0 || (n_columns > 0 && !columns)) return mrw_err(err, MRW_E_ARG, "invalid column list");
    csv_t c;
    mrw_status st = csv_open(&c, path, err);
    if (st) return st;
    int *sel = NULL, nsel = 0, nhead = 0;
    char **head = NULL;
    float *rows = NULL; /* row-major while reading */
    int64_t nrows = 0, rcap = 0;
    int r;
    char pr[128], why[200];

    /* header */
    while ((r = csv_line(&c, err)) == 1 && blank(c.buf)) {}
    if (r < 0) goto fail_err;
    if (r == 0) {
        st = mrw_err(err, MRW_E_FORMAT, "%s: the file is empty (no header row)", path);
        goto fail;
    }
    if (csv_split(&c, err)) goto fail_err;
    nhead = c.nf;
    head = calloc((size_t)nhead, sizeof *head);
    if (!head) goto nomem;
    for (int i = 0; i < nhead; i++)
        if (!(head[i] = strdup(c.f[i]))) goto nomem;
    int64_t head_line = c.line;

    if (n_columns > 0) {
        sel = malloc((size_t)n_columns * sizeof *sel);
        if (!sel) goto nomem;
        for (int j = 0; j < n_columns; j++) {
            int found = -1;
            for (int i = 0; i < nhead; i++) {
                if (strcmp(head[i], columns[j])) continue;
                if (found >= 0) {
                    st = mrw_err(err, MRW_E_FORMAT, "%s:%lld: column '%s' appears more than once in the header", path,
                                 (long long)head_line, mrw_printable(pr, sizeof pr, columns[j], strlen(columns[j])));
                    goto fail;
                }
                found = i;
            }
            if (found < 0) {
                st = mrw_err(err, MRW_E_FORMAT, "%s:%lld: column '%s' not found in the header (%d columns)", path,
                             (long long)head_line, mrw_printable(pr, sizeof pr, columns[j], strlen(columns[j])), nhead);
                goto fail;
            }
            sel[nsel++] = found;
        }
    }

    /* rows */
    for (;;) {
        r = csv_line(&c, err);
        if (r < 0) goto fail_err;
        if (r == 0) break;
        if (blank(c.buf)) continue;
        if (csv_split(&c, err)) goto fail_err;
        if (c.nf != nhead) {
            st = mrw_err(err, MRW_E_FORMAT, "%s:%lld: %d fields, but the header has %d", path, (long long)c.line, c.nf,
                         nhead);
            goto fail;
        }
        if (!sel) { /* choose the numeric columns from the first data row */
            sel = malloc((size_t)nhead * sizeof *sel);
            if (!sel) goto nomem;
            for (int i = 0; i < nhead; i++) {
                float v;
                if (parse_cell(c.f[i], &v, why, sizeof why) == 0) sel[nsel++] = i;
            }
            if (nsel == 0) {
                st = mrw_err(err, MRW_E_FORMAT, "%s:%lld: no numeric column", path, (long long)c.line);
                goto fail;
            }
        }
        if (nrows == rcap) {
            int64_t nc = rcap ? rcap * 2 : 1024;
            float *nr = realloc(rows, (size_t)nc * (size_t)nsel * sizeof *nr);
            if (!nr) goto nomem;
            rows = nr;
            rcap = nc;
        }
        for (int j = 0; j < nsel; j++) {
            const char *cell = c.f[sel[j]];
            if (parse_cell(cell, &rows[nrows * nsel + j], why, sizeof why)) {
                const char *name = head[sel[j]];
                st = mrw_err(err, MRW_E_FORMAT, "%s:%lld: column '%s': %s", path, (long long)c.line,
                             mrw_printable(pr, sizeof pr, name, strlen(name)), why);
                goto fail;
            }
        }
        nrows++;
    }
    if (nrows == 0) {
        st = mrw_err(err, MRW_E_FORMAT, "%s: no data rows after the header", path);
        goto fail;
    }
    out->values = malloc((size_t)nrows * (size_t)nsel * sizeof(float));
    out->names = calloc((size_t)nsel, sizeof(char *));
    if (!out->values || !out->names) goto nomem;
    out->n_cols = nsel;
    out->n_rows = nrows;
    for (int j = 0; j < nsel; j++) {
        if (!(out->names[j] = strdup(head[sel[j]]))) goto nomem;
        for (int64_t i = 0; i < nrows; i++) out->values[(size_t)j * (size_t)nrows + (size_t)i] = rows[i * nsel + j];
    }
    goto done;
nomem:
    st = mrw_err(err, MRW_E_NOMEM, "%s: out of memory", path);
    goto fail;
fail_err:
    st = c.st ? c.st : MRW_E_INTERNAL;
fail:
    mrw_csv_series_free(out);
done:
    csv_close(&c);
    for (int i = 0; i < nhead && head; i++) free(head[i]);
    free(head);
    free(sel);
    free(rows);
    return st;
}

/* Seconds since 1970-01-01 of "YYYY-MM-DD[ HH:MM[:SS]]" (or '/' between the date's parts, 'T' before the time); 0 =
 * parsed. Days from the civil date by the proleptic Gregorian rule (era arithmetic). */
static int parse_timestamp(const char *s, double *out) {
    int y, mo, d, h = 0, mi = 0, n = 0;
    double sec = 0;
    char s1, s2;
    if (sscanf(s, "%4d%c%2d%c%2d%n", &y, &s1, &mo, &s2, &d, &n) != 5 || s1 != s2 || (s1 != '-' && s1 != '/'))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31) return -1;
    s += n;
    if (*s == ' ' || *s == 'T') {
        int m = 0;
        if (sscanf(s + 1, "%2d:%2d%n", &h, &mi, &m) != 2) return -1;
        s += 1 + m;
        if (*s == ':') {
            char *e;
            sec = strtod(s + 1, &e);
            if (e == s + 1 || sec < 0 || sec >= 61) return -1;
            s = e;
        }
        if (h > 23 || mi > 59) return -1;
    }
    while (*s == ' ') s++;
    if (*s) return -1;
    const int yy = y - (mo <= 2), era = (yy >= 0 ? yy : yy - 399) / 400, yoe = yy - era * 400;
    const int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1, doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    const double days = (double)era * 146097 + doe - 719468;
    *out = days * 86400.0 + h * 3600.0 + mi * 60.0 + sec;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

mrw_status mrw_csv_interval(const char *path, double *seconds, mrw_error *err) {
    *seconds = 0;
    csv_t c;
    mrw_status st = csv_open(&c, path, err);
    if (st) return st;
    enum { MAXR = 257 };
    double ts[MAXR], dt[MAXR];
    int col = -1, n = 0, nhead = -1, r;
    while ((r = csv_line(&c, err)) == 1 && blank(c.buf)) {} /* header */
    if (r < 0 || (r == 1 && csv_split(&c, err))) {
        st = c.st ? c.st : MRW_E_INTERNAL;
        goto done;
    }
    if (r == 1) nhead = c.nf;
    while (n < MAXR && nhead > 0 && (r = csv_line(&c, err)) != 0) {
        if (r < 0 || csv_split(&c, err)) {
            st = c.st ? c.st : MRW_E_INTERNAL;
            goto done;
        }
        if (blank(c.buf) || c.nf != nhead) continue;
        if (col < 0)
            for (int i = 0; i < c.nf && col < 0; i++)
                if (parse_timestamp(c.f[i], &ts[0]) == 0) col = i;
        if (col < 0) break;
        if (parse_timestamp(c.f[col], &ts[n]) == 0) n++;
    }
    int nd = 0;
    for (int i = 1; i < n; i++)
        if (ts[i] > ts[i - 1]) dt[nd++] = ts[i] - ts[i - 1];
    if (col < 0 || nd == 0) {
        st = mrw_err(err, MRW_E_FORMAT, "%s: %s", path,
                     col < 0 ? "no date column (a column of YYYY-MM-DD[ HH:MM[:SS]] timestamps) to read the sampling "
                               "interval from"
                             : "its timestamps never increase: no sampling interval");
        goto done;
    }
    qsort(dt, (size_t)nd, sizeof *dt, cmp_double);
    *seconds = dt[nd / 2];
done:
    csv_close(&c);
    return st;
}

double mrw_parse_duration(const char *s) {
    if (!s) return -1;
    char *e;
    errno = 0;
    const double v = strtod(s, &e);
    if (e == s || errno || !(v > 0) || v > 1e12) return -1;
    static const struct { const char *unit; double sec; } units[] = {
        {"", 1}, {"s", 1}, {"sec", 1}, {"m", 60}, {"min", 60}, {"h", 3600}, {"hour", 3600}, {"d", 86400},
        {"day", 86400}, {"w", 604800}, {"week", 604800}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(e, units[i].unit)) return v * units[i].sec;
    return -1;
}
