/* Evaluation metrics: see metrics.h for the exact definitions. */
#include "eval/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Decodes one UTF-8 sequence of s[0..n) (n >= 1). Returns the code point and sets *adv; a byte that does not
 * start a valid sequence is returned as 0x110000 + byte with *adv = 1. */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *adv) {
    unsigned c = s[0];
    *adv = 1;
    if (c < 0x80) return c;
    int len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0x110000u + c;
    if ((size_t)len > n) return 0x110000u + c;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0x110000u + c;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0x110000u + c;
    *adv = (size_t)len;
    return cp;
}

/* ------------------------------------------------------------------------------------- VQA normalisation */

static const char k_vqa_punct[] = ";/[]\"{}()=+\\_-><@`,?!";

/* Appends a word to out (space-separated) unless it is an article; number words become digits. */
static size_t vqa_word(char *out, size_t o, const char *w, size_t n) {
    static const char *const nums[] = {"none", "zero", "one", "two", "three", "four", "five",
                                       "six",  "seven", "eight", "nine", "ten"};
    static const char *const digits[] = {"0", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"};
    if ((n == 1 && w[0] == 'a') || (n == 2 && !memcmp(w, "an", 2)) || (n == 3 && !memcmp(w, "the", 3))) return o;
    for (int i = 0; i < 12; i++)
        if (strlen(nums[i]) == n && !memcmp(w, nums[i], n)) {
            w = digits[i];
            n = strlen(w);
            break;
        }
    if (o) out[o++] = ' ';
    memcpy(out + o, w, n);
    return o + n;
}

char *mrw_vqa_normalize(const char *s, size_t len) {
    char *t = malloc(len + 1), *out = malloc(len + 1);
    if (!t || !out) {
        free(t);
        free(out);
        return NULL;
    }
    /* 1. newlines and tabs to spaces, strip */
    size_t a = 0, b = len;
    while (a < b && is_space((unsigned char)s[a])) a++;
    while (b > a && is_space((unsigned char)s[b - 1])) b--;
    size_t n = 0;
    for (size_t i = a; i < b; i++) t[n++] = (s[i] == '\n' || s[i] == '\t') ? ' ' : s[i];
    t[n] = 0;
    /* 2. punctuation: delete or replace by a space, decided per character on the whole text */
    int dcd = 0;
    for (size_t i = 1; i + 1 < n && !dcd; i++) dcd = t[i] == ',' && is_digit(t[i - 1]) && is_digit(t[i + 1]);
    char action[256] = {0}; /* 0 keep, 1 delete, 2 space */
    for (const char *p = k_vqa_punct; *p; p++) {
        int adjacent = 0;
        for (size_t i = 0; i < n && !adjacent; i++)
            if (t[i] == *p) adjacent = (i + 1 < n && t[i + 1] == ' ') || (i > 0 && t[i - 1] == ' ');
        action[(unsigned char)*p] = adjacent || dcd ? 1 : 2;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int act = action[(unsigned char)t[i]];
        if (act == 1) continue;
        out[m++] = act == 2 ? ' ' : t[i];
    }
    /* 3. periods not followed by a digit */
    n = 0;
    for (size_t i = 0; i < m; i++)
        if (out[i] != '.' || (i + 1 < m && is_digit((unsigned char)out[i + 1]))) t[n++] = out[i];
    /* 4. lower case, words, number words, articles */
    for (size_t i = 0; i < n; i++)
        if (t[i] >= 'A' && t[i] <= 'Z') t[i] = (char)(t[i] - 'A' + 'a');
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && is_space((unsigned char)t[i])) i++;
        size_t j = i;
        while (j < n && !is_space((unsigned char)t[j])) j++;
        if (j > i) o = vqa_word(out, o, t + i, j - i);
        i = j;
    }
    out[o] = 0;
    free(t);
    return out;
}

int mrw_exact_match(const char *pred, const char *ref) {
    char *p = mrw_vqa_normalize(pred, strlen(pred)), *r = mrw_vqa_normalize(ref, strlen(ref));
    int res = p && r ? !strcmp(p, r) : -1;
    free(p);
    free(r);
    return res;
}

double mrw_vqa_accuracy(const char *pred, const char *const *refs, int n) {
    if (n < 1) return -1;
    char *p = mrw_vqa_normalize(pred, strlen(pred));
    int *match = calloc((size_t)n, sizeof *match);
    if (!p || !match) {
        free(p);
        free(match);
        return -1;
    }
    int total = 0;
    for (int i = 0; i < n; i++) {
        char *r = mrw_vqa_normalize(refs[i], strlen(refs[i]));
        if (!r) {
            free(p);
            free(match);
            return -1;
        }
        match[i] = !strcmp(p, r);
        total += match[i];
        free(r);
    }
    double acc;
    if (n == 1) {
        acc = match[0];
    } else {
        acc = 0;
        for (int i = 0; i < n; i++) {
            double others = total - match[i];
            acc += others / 3.0 < 1.0 ? others / 3.0 : 1.0;
        }
        acc /= n;
    }
    free(p);
    free(match);
    return acc;
}

/* ------------------------------------------------------------------------------------- ASR normalisation */

static int asr_punct(uint32_t cp) {
    if (cp < 0x80) return cp != '\'' && ((cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) ||
                                         (cp >= 0x5B && cp <= 0x60) || (cp >= 0x7B && cp <= 0x7E));
    return (cp >= 0x2000 && cp <= 0x206F && cp != 0x2019) || (cp >= 0x3000 && cp <= 0x303F) ||
           (cp >= 0xFF01 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20) || (cp >= 0xFF3B && cp <= 0xFF40) ||
           (cp >= 0xFF5B && cp <= 0xFF65);
}

char *mrw_asr_normalize(const char *s, size_t len) {
    char *out = malloc(len + 1);
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    int pending_space = 0;
    for (size_t i = 0; i < len;) {
        size_t adv;
        uint32_t cp = utf8_next(u + i, len - i, &adv);
        if (cp < 0x80 && is_space((unsigned char)cp)) cp = ' ';
        if (cp == ' ' || asr_punct(cp)) {
            pending_space = o > 0;
        } else {
            if (pending_space) out[o++] = ' ';
            pending_space = 0;
            if (cp == 0x2019) {
                out[o++] = '\''; /* 3 bytes become 1 */
            } else if (cp >= 'A' && cp <= 'Z') {
                out[o++] = (char)(cp - 'A' + 'a');
            } else {
                memcpy(out + o, s + i, adv);
                o += adv;
            }
        }
        i += adv;
    }
    out[o] = 0;
    return out;
}

int mrw_text_has_cjk(const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t adv;
        uint32_t cp = utf8_next(u + i, n - i, &adv);
        if ((cp >= 0x3040 && cp <= 0x30FF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) ||
            (cp >= 0xAC00 && cp <= 0xD7AF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x20000 && cp <= 0x2FFFF))
            return 1;
        i += adv;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ edit distance */

int64_t mrw_levenshtein_u32(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
    if (na == 0) return (int64_t)nb;
    if (nb == 0) return (int64_t)na;
    int64_t *row = malloc((nb + 1) * sizeof *row);
    if (!row) return -1;
    for (size_t j = 0; j <= nb; j++) row[j] = (int64_t)j;
    for (size_t i = 1; i <= na; i++) {
        int64_t diag = row[0]; /* D[i-1][j-1] */
        row[0] = (int64_t)i;
        for (size_t j = 1; j <= nb; j++) {
            int64_t up = row[j]; /* D[i-1][j] */
            int64_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    int64_t d = row[nb];
    free(row);
    return d;
}

typedef struct {
    const char *p;
    size_t n;
    size_t slot; /* position in the concatenated word list */
} word_ref;

static int word_cmp(const void *x, const void *y) {
    const word_ref *a = x, *b = y;
    size_t n = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->p, b->p, n);
    if (c) return c;
    return a->n < b->n ? -1 : a->n > b->n;
}

static size_t count_words(const char *s) {
    size_t k = 0;
    for (size_t i = 0; s[i];) {
        while (s[i] && is_space((unsigned char)s[i])) i++;
        if (!s[i]) break;
        k++;
        while (s[i] && !is_space((unsigned char)s[i])) i++;
    }
    return k;
}

static size_t split_words(const char *s, word_ref *w, size_t slot0) {
    size_t k = 0;
    for (size_t i = 0; s[i];) {
        while (s[i] && is_space((unsigned char)s[i])) i++;
        if (!s[i]) break;
        size_t j = i;
        while (s[j] && !is_space((unsigned char)s[j])) j++;
        w[k] = (word_ref){s + i, j - i, slot0 + k};
        k++;
        i = j;
    }
    return k;
}

mrw_status mrw_wer_stats(const char *hyp, const char *ref, mrw_edit_stats *out, mrw_error *err) {
    memset(out, 0, sizeof *out);
    size_t nh = count_words(hyp), nr = count_words(ref);
    if (nh > MRW_METRICS_MAX_UNITS || nr > MRW_METRICS_MAX_UNITS || (long long)nh * (long long)nr > MRW_METRICS_MAX_CELLS)
        return mrw_err(err, MRW_E_LIMIT, "WER: %zu x %zu words exceed the limit (%d words a side, %lld pairs)", nh, nr,
                       MRW_METRICS_MAX_UNITS, MRW_METRICS_MAX_CELLS);
    size_t n = nh + nr;
    word_ref *w = malloc((n ? n : 1) * sizeof *w);
    uint32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!w || !ids) {
        free(w);
        free(ids);
        return mrw_err(err, MRW_E_NOMEM, "WER: out of memory");
    }
    split_words(hyp, w, 0);
    split_words(ref, w + nh, nh);
    /* Exact word ids: sort, then number the groups of equal words. */
    qsort(w, n, sizeof *w, word_cmp);
    uint32_t id = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && word_cmp(&w[i - 1], &w[i])) id++;
        ids[w[i].slot] = id;
    }
    int64_t d = mrw_levenshtein_u32(ids, nh, ids + nh, nr);
    free(w);
    free(ids);
    if (d < 0) return mrw_err(err, MRW_E_NOMEM, "WER: out of memory");
    out->errors = d;
    out->ref_len = (int64_t)nr;
    out->hyp_len = (int64_t)nh;
    return MRW_OK;
}

/* Code points of s after the CER whitespace rule; *n receives the count. NULL when out of memory. */
static uint32_t *cer_units(const char *s, int remove_spaces, size_t *n) {
    size_t len = strlen(s);
    uint32_t *u = malloc((len ? len : 1) * sizeof *u);
    if (!u) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t k = 0;
    int pending_space = 0;
    for (size_t i = 0; i < len;) {
        size_t adv;
        uint32_t cp = utf8_next(p + i, len - i, &adv);
        i += adv;
        if (cp < 0x80 && is_space((unsigned char)cp)) {
            pending_space = k > 0 && !remove_spaces;
            continue;
        }
        if (pending_space) u[k++] = ' ';
        pending_space = 0;
        u[k++] = cp;
    }
    *n = k;
    return u;
}

mrw_status mrw_cer_stats(const char *hyp, const char *ref, int remove_spaces, mrw_edit_stats *out, mrw_error *err) {
    memset(out, 0, sizeof *out);
    size_t nh = 0, nr = 0;
    uint32_t *h = cer_units(hyp, remove_spaces, &nh), *r = cer_units(ref, remove_spaces, &nr);
    mrw_status st = MRW_OK;
    if (!h || !r) {
        st = mrw_err(err, MRW_E_NOMEM, "CER: out of memory");
    } else if (nh > MRW_METRICS_MAX_UNITS || nr > MRW_METRICS_MAX_UNITS ||
               (long long)nh * (long long)nr > MRW_METRICS_MAX_CELLS) {
        st = mrw_err(err, MRW_E_LIMIT, "CER: %zu x %zu characters exceed the limit (%d a side, %lld pairs)", nh, nr,
                     MRW_METRICS_MAX_UNITS, MRW_METRICS_MAX_CELLS);
    } else {
        int64_t d = mrw_levenshtein_u32(h, nh, r, nr);
        if (d < 0) {
            st = mrw_err(err, MRW_E_NOMEM, "CER: out of memory");
        } else {
            out->errors = d;
            out->ref_len = (int64_t)nr;
            out->hyp_len = (int64_t)nh;
        }
    }
    free(h);
    free(r);
    return st;
}

double mrw_edit_rate(const mrw_edit_stats *s) {
    if (s->ref_len == 0) return s->hyp_len ? 1.0 : 0.0;
    return (double)s->errors / (double)s->ref_len;
}

/* ------------------------------------------------------------------------------------------------ series */

double mrw_mse(const float *pred, const float *ref, size_t n) {
    if (!n) return 0;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)pred[i] - (double)ref[i];
        s += d * d;
    }
    return s / (double)n;
}

double mrw_mae(const float *pred, const float *ref, size_t n) {
    if (!n) return 0;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs((double)pred[i] - (double)ref[i]);
    return s / (double)n;
}
