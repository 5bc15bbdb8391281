/* Greedy longest-match tokenization over bytes with a double-array trie, identical to the reference
 * rwkv.rwkv_tokenizer.TRIE_TOKENIZER.encodeBytes: from the current position take the longest vocabulary token
 * that matches, emit it, continue after it. Any byte string encodes when every single byte is a token (true
 * of the World vocabulary, ids 1..256).
 *
 * The double array keeps one 12-byte cell per trie state (the World vocabulary's 116k states fit in ~1.5 MB)
 * and costs one cell load per input byte, so the scan runs at memory speed instead of chasing pointers. */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "text/vocab.h"

/* ------------------------------------------------------------------------------------- construction */

typedef struct {
    const uint8_t *p;
    uint32_t len;
    int32_t id;
    int32_t order; /* position in file order: the later of two equal tokens wins */
} key;

static int cmp_key(const void *pa, const void *pb) {
    const key *a = pa, *b = pb;
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->p, b->p, n) : 0;
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* The array under construction. Free cells have check == -1 and sit on a doubly linked list (nxt/prv, from
 * `head` to `tail`) so that searching for a base skips occupied cells. A free cell that has been rejected as
 * a base position many times leaves the list for good (it stays free, so it can still be taken as a later
 * child slot): without that, vocabularies whose branches never fit the front of the list make every search
 * walk it, and the build turns quadratic (minutes for a crafted 600k-token file). */
typedef struct {
    mrw_dat_cell *c;
    int32_t *nxt, *prv;
    uint8_t *fails; /* rejections as a base position; ABANDONED = off the list */
    int32_t cap, head, tail, max_used;
} dat_build;

enum { FREE = -1, NIL = -1, MAX_FAILS = 32, ABANDONED = 255 };

static int db_grow(dat_build *d, int64_t need) {
    if (need <= d->cap) return 0;
    int64_t cap = d->cap ? d->cap : 1024;
    while (cap < need) cap *= 2;
    if (cap > INT32_MAX / 2) return -1;
    mrw_dat_cell *c = realloc(d->c, (size_t)cap * sizeof *c);
    if (!c) return -1;
    d->c = c;
    int32_t *nx = realloc(d->nxt, (size_t)cap * sizeof *nx);
    if (!nx) return -1;
    d->nxt = nx;
    int32_t *pv = realloc(d->prv, (size_t)cap * sizeof *pv);
    if (!pv) return -1;
    d->prv = pv;
    uint8_t *fl = realloc(d->fails, (size_t)cap);
    if (!fl) return -1;
    d->fails = fl;
    for (int32_t i = d->cap; i < (int32_t)cap; i++) { /* append the new cells to the free list in order */
        d->c[i] = (mrw_dat_cell){.base = 0, .check = FREE, .val = -1};
        d->fails[i] = 0;
        d->prv[i] = d->tail;
        d->nxt[i] = NIL;
        if (d->tail == NIL) d->head = i;
        else d->nxt[d->tail] = i;
        d->tail = i;
    }
    d->cap = (int32_t)cap;
    return 0;
}

static void db_unlink(dat_build *d, int32_t i) {
    int32_t p = d->prv[i], n = d->nxt[i];
    if (p == NIL) d->head = n;
    else d->nxt[p] = n;
    if (n == NIL) d->tail = p;
    else d->prv[n] = p;
}

static void db_take(dat_build *d, int32_t i, int32_t parent) {
    if (d->fails[i] != ABANDONED) db_unlink(d, i);
    d->c[i].check = parent;
    if (i > d->max_used) d->max_used = i;
}

/* Finds base >= 1 with every base + labels[j] free, walking the free list from its head. */
static int64_t db_find_base(dat_build *d, const uint8_t *labels, int n) {
    for (;;) {
        for (int32_t p = d->head, next; p != NIL; p = next) {
            next = d->nxt[p];
            int64_t b = (int64_t)p - labels[0];
            int ok = b >= 1;
            for (int j = 1; j < n && ok; j++) {
                int64_t t = b + labels[j];
                ok = t >= d->cap || d->c[t].check == FREE;
            }
            if (ok) return b;
            if (++d->fails[p] >= MAX_FAILS) {
                db_unlink(d, p);
                d->fails[p] = ABANDONED;
            }
        }
        /* No fit below cap: append room (new cells always fit past the old end). */
        if (db_grow(d, (int64_t)d->cap * 2)) return -1;
    }
}

typedef struct {
    int32_t state, lo, hi, depth;
} work;

/* Places the children of one state: the keys in [lo, hi) share `depth` leading bytes; those exactly `depth`
 * long end here (the last in file order gives the value), the rest branch on their next byte. Children are
 * pushed onto the work stack. */
static int place_children(dat_build *d, const key *k, work w, work **stack, int32_t *n_stack,
                          int32_t *cap_stack) {
    int32_t i = w.lo;
    while (i < w.hi && k[i].len == (uint32_t)w.depth) d->c[w.state].val = k[i++].id;
    if (i == w.hi) return 0;
    uint8_t labels[256];
    int32_t starts[257];
    int n = 0;
    for (; i < w.hi; i++) {
        uint8_t c = k[i].p[w.depth];
        if (n == 0 || labels[n - 1] != c) labels[n] = c, starts[n++] = i;
    }
    starts[n] = w.hi;
    int64_t b = db_find_base(d, labels, n);
    if (b < 0 || db_grow(d, b + 256 + 1)) return -1;
    d->c[w.state].base = (int32_t)b;
    if (*n_stack + n > *cap_stack) {
        int32_t cap = (*cap_stack + n) * 2;
        work *s = realloc(*stack, (size_t)cap * sizeof *s);
        if (!s) return -1;
        *stack = s;
        *cap_stack = cap;
    }
    for (int j = 0; j < n; j++) db_take(d, (int32_t)(b + labels[j]), w.state);
    for (int j = n - 1; j >= 0; j--)
        (*stack)[(*n_stack)++] = (work){(int32_t)(b + labels[j]), starts[j], starts[j + 1], w.depth + 1};
    return 0;
}

mrw_status mrw_vocab_build_trie(mrw_vocab *v, const int32_t *order, int32_t n, mrw_error *err) {
    key *k = malloc((size_t)(n ? n : 1) * sizeof *k);
    dat_build d = {.head = NIL, .tail = NIL};
    work *stack = NULL;
    int32_t n_stack = 0, cap_stack = 0;
    int fail = !k || db_grow(&d, 1024);
    if (!fail) {
        for (int32_t i = 0; i < n; i++) {
            const mrw_vocab_entry *e = &v->ent[order[i]];
            k[i] = (key){v->pool + e->off, e->len, order[i], i};
        }
        qsort(k, (size_t)n, sizeof *k, cmp_key);
        db_take(&d, 0, -2); /* the root: its check matches no state */
        work root = {0, 0, n, 0};
        fail = place_children(&d, k, root, &stack, &n_stack, &cap_stack);
        /* Depth-first keeps siblings' subtrees close together in the array. */
        while (!fail && n_stack > 0)
            fail = place_children(&d, k, stack[--n_stack], &stack, &n_stack, &cap_stack);
        /* Keep 256 initialised cells past the last used one so base + byte never leaves the array. */
        fail = fail || db_grow(&d, (int64_t)d.max_used + 257);
    }
    free(k);
    free(stack);
    free(d.nxt);
    free(d.prv);
    free(d.fails);
    if (fail) {
        free(d.c);
        return mrw_err(err, MRW_E_NOMEM, "out of memory building the tokenizer trie");
    }
    int32_t n_cells = d.max_used + 257; /* <= d.cap: shrinking */
    mrw_dat_cell *c = realloc(d.c, (size_t)n_cells * sizeof *c);
    v->dat = c ? c : d.c;
    v->n_dat = n_cells;
    v->n_normal = 0;
    for (int32_t i = 0; i < n_cells; i++) v->n_normal += v->dat[i].val >= 0;
    return MRW_OK;
}

/* ----------------------------------------------------------------------------------------- encoding */

/* Tokenizes s[0..len), appending to out[*n..cap) and counting in *n. Returns -1 if some position has no
 * matching token. */
static int encode_span(const mrw_vocab *v, const uint8_t *s, size_t len, int32_t *out, size_t cap,
                       int64_t *n) {
    const mrw_dat_cell *c = v->dat;
    int64_t k = *n;
    size_t i = 0;
    while (i < len) {
        int32_t st = 0, best = -1;
        size_t best_end = i;
        for (size_t p = i; p < len;) {
            int32_t t = c[st].base + s[p];
            if (c[t].check != st) break;
            st = t;
            p++;
            if (c[st].val >= 0) best = c[st].val, best_end = p;
        }
        if (best < 0) return -1;
        if ((uint64_t)k < cap) out[k] = best;
        k++;
        i = best_end;
    }
    *n = k;
    return 0;
}

/* Finds the earliest special token text in s[from..len) (longest at a tie). Returns its position or len. */
static size_t next_special(const mrw_vocab *v, const uint8_t *s, size_t from, size_t len, int32_t *id) {
    size_t best = len;
    for (int32_t k = 0; k < v->n_specials; k++) {
        const mrw_vocab_entry *e = &v->ent[v->specials[k]];
        const uint8_t *hit =
            e->len <= len - from ? memmem(s + from, len - from, v->pool + e->off, e->len) : NULL;
        /* specials are sorted longest first, so `<` keeps the longest at equal positions */
        if (hit && (size_t)(hit - s) < best) best = (size_t)(hit - s), *id = v->specials[k];
    }
    return best;
}

int64_t mrw_tokenize_ex(const mrw_vocab *v, const char *text, size_t len, int32_t *out, size_t cap,
                        unsigned flags) {
    if (!v || (!text && len)) return -1;
    if (!out) cap = 0;
    const uint8_t *s = (const uint8_t *)text;
    int64_t n = 0;
    if (!(flags & MRW_TOKENIZE_SPECIAL) || v->n_specials == 0)
        return encode_span(v, s, len, out, cap, &n) ? -1 : n;
    size_t i = 0;
    while (i < len) {
        int32_t id = -1;
        size_t at = next_special(v, s, i, len, &id);
        if (encode_span(v, s + i, at - i, out, cap, &n)) return -1;
        if (at == len) break;
        if ((uint64_t)n < cap) out[n] = id;
        n++;
        i = at + v->ent[id].len;
    }
    return n;
}

int64_t mrw_tokenize(const mrw_vocab *v, const char *text, size_t len, int32_t *out, size_t cap) {
    return mrw_tokenize_ex(v, text, len, out, cap, 0);
}
