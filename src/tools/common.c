#define _GNU_SOURCE
#include "tools/common.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int tool_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "modrwkv %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

void tool_args_init(tool_args *a, int argc, char **argv, const char *cmd, const char *usage) {
    memset(a, 0, sizeof *a);
    a->argc = argc;
    a->argv = argv;
    a->i = 1;
    a->cmd = cmd;
    a->usage = usage;
}

int tool_next(tool_args *a, const char **opt) {
    if (a->failed || a->i >= a->argc) return 0;
    *opt = a->argv[a->i++];
    if (!strcmp(*opt, "-h") || !strcmp(*opt, "--help")) {
        fputs(a->usage, stdout);
        exit(0);
    }
    return 1;
}

/* "--opt=value" support: the value is what follows '=' in the current argument. */
static const char *inline_value(const char *arg) {
    if (arg[0] != '-' || arg[1] != '-') return NULL;
    const char *eq = strchr(arg, '=');
    return eq ? eq + 1 : NULL;
}

const char *tool_value(tool_args *a, const char *opt) {
    const char *v = inline_value(opt);
    if (v) return v;
    if (a->i >= a->argc) {
        tool_fail(a->cmd, "option %s needs a value (see modrwkv %s --help)", opt, a->cmd);
        a->failed = 1;
        return NULL;
    }
    return a->argv[a->i++];
}

int tool_int(tool_args *a, const char *opt, long lo, long hi, int *out) {
    const char *v = tool_value(a, opt);
    if (!v) return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        tool_fail(a->cmd, "%s expects an integer in [%ld, %ld], got '%s'", opt, lo, hi, v);
        a->failed = 1;
        return 0;
    }
    *out = (int)x;
    return 1;
}

int tool_float(tool_args *a, const char *opt, double lo, double hi, float *out) {
    const char *v = tool_value(a, opt);
    if (!v) return 0;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        tool_fail(a->cmd, "%s expects a number in [%g, %g], got '%s'", opt, lo, hi, v);
        a->failed = 1;
        return 0;
    }
    *out = (float)x;
    return 1;
}

void tool_unknown(tool_args *a, const char *opt) {
    tool_fail(a->cmd, "unknown option '%s' (see modrwkv %s --help)", opt, a->cmd);
    a->failed = 1;
}

/* Option names match with or without an inline "=value". */
static int is_opt(const char *arg, const char *name) {
    size_t n = strlen(name);
    return !strncmp(arg, name, n) && (arg[n] == 0 || (arg[n] == '=' && name[1] == '-'));
}

int tool_model_option(tool_args *a, const char *opt, tool_model_opts *o) {
    if (is_opt(opt, "-m") || is_opt(opt, "--model")) {
        o->model = tool_value(a, opt);
    } else if (is_opt(opt, "--vocab")) {
        o->vocab = tool_value(a, opt);
    } else if (is_opt(opt, "--dtype")) {
        const char *v = tool_value(a, opt);
        if (v && (mrw_dtype_parse(v, &o->dtype) || !(o->dtype == MRW_DT_AUTO || o->dtype <= MRW_DT_Q4_0))) {
            tool_fail(a->cmd, "--dtype must be one of f32, f16, bf16, q8_0, q4_0 (got '%s')", v);
            a->failed = 1;
        }
    } else if (is_opt(opt, "-t") || is_opt(opt, "--threads")) {
        tool_int(a, opt, 1, 256, &o->threads);
    } else if (is_opt(opt, "--chunk")) {
        tool_int(a, opt, 1, 65536, &o->chunk);
    } else if (!strcmp(opt, "--exact")) {
        o->exact = 1;
    } else {
        return 0;
    }
    return 1;
}

int tool_load_model(const char *cmd, const tool_model_opts *o, mrw_model **model, mrw_context **ctx) {
    *model = NULL;
    if (ctx) *ctx = NULL;
    if (!o->model) return tool_fail(cmd, "no model given: use -m FILE (see modrwkv %s --help)", cmd);
    mrw_error err = {0};
    mrw_load_params lp = mrw_load_params_default();
    lp.weight_dtype = o->dtype;
    lp.progress = isatty(2);
    lp.file_layout = !ctx; /* without a context the model is only converted or inspected */
    if (mrw_model_load(o->model, &lp, model, &err)) return tool_fail(cmd, "%s", err.msg);
    if (!ctx) return 0;
    mrw_context_params cp = mrw_context_params_default();
    if (o->threads) cp.n_threads = o->threads;
    if (o->chunk) cp.max_chunk = o->chunk;
    cp.exact = o->exact;
    if (mrw_context_new(*model, &cp, ctx, &err)) {
        mrw_model_free(*model);
        *model = NULL;
        return tool_fail(cmd, "%s", err.msg);
    }
    return 0;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

const char *tool_default_vocab_path(char *buf, size_t n) {
    const char *env = getenv("MODRWKV_VOCAB");
    if (env && *env) {
        snprintf(buf, n, "%s", env);
        return file_exists(buf) ? buf : NULL;
    }
    /* next to the executable: build/modrwkv -> build/vocab/, or an install prefix's share/modrwkv/ */
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return NULL;
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0;
    const char *rel[] = {"vocab/rwkv_vocab_v20230424.txt", "../share/modrwkv/rwkv_vocab_v20230424.txt"};
    for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
        snprintf(buf, n, "%s/%s", exe, rel[i]);
        if (file_exists(buf)) return buf;
    }
    return NULL;
}

int tool_load_vocab(const char *cmd, const char *vocab_opt, const mrw_model *model, mrw_vocab **out) {
    *out = NULL;
    mrw_error err = {0};
    const int V = model ? mrw_model_get_info(model).n_vocab : 0;
    if (vocab_opt && !strcmp(vocab_opt, "bytes")) {
        *out = mrw_vocab_new_bytes();
    } else if (vocab_opt) {
        if (mrw_vocab_load(vocab_opt, out, &err)) return tool_fail(cmd, "%s", err.msg);
    } else if (model && mrw_vocab_from_model(model, out, &err) == MRW_OK) {
        /* the GGUF's own tokenizer */
    } else if (model && V == 256) {
        *out = mrw_vocab_new_bytes();
    } else {
        char path[PATH_MAX];
        if (!tool_default_vocab_path(path, sizeof path))
            return tool_fail(cmd, "no vocabulary found: pass --vocab FILE (scripts/setup.sh installs the RWKV World "
                                  "vocabulary into build/vocab/; or set MODRWKV_VOCAB)");
        if (mrw_vocab_load(path, out, &err)) return tool_fail(cmd, "%s", err.msg);
    }
    if (!*out) return tool_fail(cmd, "out of memory");
    if (model && mrw_vocab_size(*out) > V) {
        int n = mrw_vocab_size(*out);
        mrw_vocab_free(*out);
        *out = NULL;
        return tool_fail(cmd, "the vocabulary has %d tokens but the model's embedding has only %d rows: wrong "
                              "vocabulary for this model (use --vocab)", n, V);
    }
    return 0;
}

int tool_read_file(const char *cmd, const char *path, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *fp = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!fp) return tool_fail(cmd, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        if (n == cap) {
            if (cap >= TOOL_MAX_INPUT_BYTES) {
                free(buf);
                if (fp != stdin) fclose(fp);
                return tool_fail(cmd, "%s: input is larger than the %zu MiB limit", path, TOOL_MAX_INPUT_BYTES >> 20);
            }
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    int rd_err = ferror(fp);
    if (fp != stdin) fclose(fp);
    if (!buf) return tool_fail(cmd, "out of memory reading %s", path);
    if (rd_err) {
        free(buf);
        return tool_fail(cmd, "%s: read error", path);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

/* Offset of the first invalid UTF-8 sequence, or -1. */
static long first_invalid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        int len = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3 : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
        if (!len || i + len > n) return (long)i;
        for (int k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80) return (long)i;
        if (len == 3 && ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] >= 0xa0))) return (long)i;
        if (len == 4 && ((c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] >= 0x90))) return (long)i;
        i += len;
    }
    return -1;
}

int tool_tokenize(const char *cmd, const mrw_vocab *v, const char *text, size_t len, int allow_invalid,
                  int32_t **ids, int *n) {
    return tool_tokenize_ex(cmd, v, text, len, allow_invalid, 0, ids, n);
}

int tool_tokenize_ex(const char *cmd, const mrw_vocab *v, const char *text, size_t len, int allow_invalid,
                     int special, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    if (len == 0) return tool_fail(cmd, "the prompt is empty");
    long bad = allow_invalid ? -1 : first_invalid_utf8((const unsigned char *)text, len);
    if (bad >= 0)
        return tool_fail(cmd, "the input is not valid UTF-8 (first bad byte 0x%02x at offset %ld); pass --raw-bytes "
                              "to tokenize it byte by byte anyway", (unsigned char)text[bad], bad);
    const unsigned flags = special ? MRW_TOKENIZE_SPECIAL : 0;
    int64_t need = mrw_tokenize_ex(v, text, len, NULL, 0, flags);
    if (need < 0) return tool_fail(cmd, "the vocabulary cannot encode this text");
    if (need > INT32_MAX / 8) return tool_fail(cmd, "the input is too long (%lld tokens)", (long long)need);
    int32_t *buf = malloc((size_t)(need ? need : 1) * sizeof *buf);
    if (!buf) return tool_fail(cmd, "out of memory");
    mrw_tokenize_ex(v, text, len, buf, (size_t)need, flags);
    *ids = buf;
    *n = (int)need;
    return 0;
}

int tool_parse_tokens(const char *cmd, const char *s, int n_vocab, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    size_t cap = 16;
    int32_t *buf = malloc(cap * sizeof *buf);
    int cnt = 0;
    const char *p = s;
    while (buf && *p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x >= n_vocab) {
            free(buf);
            return tool_fail(cmd, "--tokens: '%s' is not a list of token ids in [0, %d) (like 34,105,110)", s, n_vocab);
        }
        if ((size_t)cnt == cap) {
            int32_t *nb = realloc(buf, (cap *= 2) * sizeof *buf);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
        }
        buf[cnt++] = (int32_t)x;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    if (!buf) return tool_fail(cmd, "out of memory");
    if (cnt == 0) {
        free(buf);
        return tool_fail(cmd, "--tokens: no token ids given");
    }
    *ids = buf;
    *n = cnt;
    return 0;
}

void tool_printer_init(tool_printer *p, const mrw_vocab *v, FILE *out) {
    memset(p, 0, sizeof *p);
    p->vocab = v;
    p->out = out;
    p->hide_token = -1;
}

void tool_printer_token(tool_printer *p, int32_t token) {
    if (token == p->hide_token) return;
    size_t n;
    const uint8_t *b = mrw_token_bytes(p->vocab, token, &n);
    if (!b || !n) return;
    if (p->skip_leading_space) {
        p->skip_leading_space = 0;
        if (b[0] == ' ') {
            b++;
            n--;
        }
    }
    char stackbuf[512];
    const size_t room = MRW_UTF8_STREAM_OUT_MAX(n);
    char *buf = room <= sizeof stackbuf ? stackbuf : malloc(room);
    if (!buf) return;
    size_t k = mrw_utf8_stream_push(&p->utf8, b, n, buf);
    fwrite(buf, 1, k, p->out);
    fflush(p->out);
    if (buf != stackbuf) free(buf);
}

void tool_printer_flush(tool_printer *p) {
    char buf[16];
    size_t k = mrw_utf8_stream_flush(&p->utf8, buf);
    fwrite(buf, 1, k, p->out);
    fflush(p->out);
}

double tool_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void tool_progress_start(tool_progress *p, const char *label, long total) {
    p->label = label;
    p->total = total > 0 ? total : 1;
    p->t0 = p->last = tool_now();
    p->tty = isatty(2);
    p->last_decile = -1;
}

void tool_progress_update(tool_progress *p, long done) {
    const double now = tool_now(), el = now - p->t0, frac = done >= p->total ? 1.0 : (double)done / p->total;
    const double rate = el > 0 ? done / el : 0, eta = frac > 0 ? el / frac - el : 0;
    if (p->tty) {
        if (now - p->last < 0.1 && done < p->total) return;
        p->last = now;
        char bar[31];
        for (int i = 0; i < 30; i++) bar[i] = i < (int)(frac * 30) ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %3.0f%% %ld/%ld  %.1f/s  ETA %.0fs ", p->label, bar, frac * 100, done, p->total, rate, eta);
    } else {
        int decile = (int)(frac * 10);
        if (decile == p->last_decile) return;
        p->last_decile = decile;
        fprintf(stderr, "%s: %3.0f%% (%ld of %ld, %.1f/s)\n", p->label, frac * 100, done, p->total, rate);
    }
    fflush(stderr);
}

void tool_progress_finish(tool_progress *p) {
    tool_progress_update(p, p->total);
    if (p->tty) fputc('\n', stderr);
}
