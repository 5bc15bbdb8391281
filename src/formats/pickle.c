#include "formats/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/strutil.h"

/* -------------------------------------------------------------------------------------------- opcodes */

/* Every pickle opcode (protocols 0-5) by name, so refusals can say what they refused. */
static const char *const k_op_names[256] = {
    ['('] = "MARK", ['.'] = "STOP", ['0'] = "POP", ['1'] = "POP_MARK", ['2'] = "DUP", ['F'] = "FLOAT",
    ['I'] = "INT", ['J'] = "BININT", ['K'] = "BININT1", ['L'] = "LONG", ['M'] = "BININT2", ['N'] = "NONE",
    ['P'] = "PERSID", ['Q'] = "BINPERSID", ['R'] = "REDUCE", ['S'] = "STRING", ['T'] = "BINSTRING",
    ['U'] = "SHORT_BINSTRING", ['V'] = "UNICODE", ['X'] = "BINUNICODE", ['a'] = "APPEND", ['b'] = "BUILD",
    ['c'] = "GLOBAL", ['d'] = "DICT", ['}'] = "EMPTY_DICT", ['e'] = "APPENDS", ['g'] = "GET",
    ['h'] = "BINGET", ['i'] = "INST", ['j'] = "LONG_BINGET", ['l'] = "LIST", [']'] = "EMPTY_LIST",
    ['o'] = "OBJ", ['p'] = "PUT", ['q'] = "BINPUT", ['r'] = "LONG_BINPUT", ['s'] = "SETITEM", ['t'] = "TUPLE",
    [')'] = "EMPTY_TUPLE", ['u'] = "SETITEMS", ['G'] = "BINFLOAT", ['B'] = "BINBYTES",
    ['C'] = "SHORT_BINBYTES",
    [0x80] = "PROTO", [0x81] = "NEWOBJ", [0x82] = "EXT1", [0x83] = "EXT2", [0x84] = "EXT4", [0x85] = "TUPLE1",
    [0x86] = "TUPLE2", [0x87] = "TUPLE3", [0x88] = "NEWTRUE", [0x89] = "NEWFALSE", [0x8a] = "LONG1",
    [0x8b] = "LONG4", [0x8c] = "SHORT_BINUNICODE", [0x8d] = "BINUNICODE8", [0x8e] = "BINBYTES8",
    [0x8f] = "EMPTY_SET", [0x90] = "ADDITEMS", [0x91] = "FROZENSET", [0x92] = "NEWOBJ_EX",
    [0x93] = "STACK_GLOBAL", [0x94] = "MEMOIZE", [0x95] = "FRAME", [0x96] = "BYTEARRAY8",
    [0x97] = "NEXT_BUFFER", [0x98] = "READONLY_BUFFER",
};

const char *mrw_pkl_opcode_name(uint8_t op) { return k_op_names[op]; }

/* ------------------------------------------------------------------------------------------- values */

typedef enum { V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_BYTES, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE,
               V_TENSOR } vkind;

static const char *kind_name(int k) {
    static const char *const names[] = {"None", "bool",  "int",  "float",  "str",     "bytes",
                                        "tuple", "list", "dict", "global", "storage", "tensor"};
    return names[k];
}

/* What an allowed GLOBAL resolves to. */
typedef enum { G_ORDERED_DICT = 1, G_REBUILD_V2, G_REBUILD_PARAM, G_STORAGE, G_DTYPE } gkind;

static const struct {
    const char *mod, *name;
    gkind kind;
    mrw_dtype dtype;
} k_globals[] = {
    {"collections", "OrderedDict", G_ORDERED_DICT, MRW_DT_AUTO},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2, MRW_DT_AUTO},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM, MRW_DT_AUTO},
    {"torch", "BFloat16Storage", G_STORAGE, MRW_DT_BF16}, {"torch", "HalfStorage", G_STORAGE, MRW_DT_F16},
    {"torch", "FloatStorage", G_STORAGE, MRW_DT_F32}, {"torch", "DoubleStorage", G_STORAGE, MRW_DT_F64},
    {"torch", "LongStorage", G_STORAGE, MRW_DT_I64}, {"torch", "IntStorage", G_STORAGE, MRW_DT_I32},
    {"torch", "ShortStorage", G_STORAGE, MRW_DT_I16}, {"torch", "CharStorage", G_STORAGE, MRW_DT_I8},
    {"torch", "ByteStorage", G_STORAGE, MRW_DT_U8}, {"torch", "BoolStorage", G_STORAGE, MRW_DT_BOOL},
    {"torch", "bfloat16", G_DTYPE, MRW_DT_BF16}, {"torch", "float16", G_DTYPE, MRW_DT_F16},
    {"torch", "half", G_DTYPE, MRW_DT_F16}, {"torch", "float32", G_DTYPE, MRW_DT_F32},
    {"torch", "float", G_DTYPE, MRW_DT_F32}, {"torch", "float64", G_DTYPE, MRW_DT_F64},
    {"torch", "double", G_DTYPE, MRW_DT_F64}, {"torch", "int64", G_DTYPE, MRW_DT_I64},
    {"torch", "long", G_DTYPE, MRW_DT_I64}, {"torch", "int32", G_DTYPE, MRW_DT_I32},
    {"torch", "int", G_DTYPE, MRW_DT_I32}, {"torch", "int16", G_DTYPE, MRW_DT_I16},
    {"torch", "short", G_DTYPE, MRW_DT_I16}, {"torch", "int8", G_DTYPE, MRW_DT_I8},
    {"torch", "uint8", G_DTYPE, MRW_DT_U8}, {"torch", "bool", G_DTYPE, MRW_DT_BOOL},
};

typedef struct val val;

typedef struct {
    const char *key; /* points into the pickle */
    size_t key_len;
    int64_t numel;
    mrw_dtype dtype;
} storage_ref;

typedef struct {
    const storage_ref *storage;
    int64_t offset;
    int ndim;
    int64_t size[MRW_MAX_DIMS], stride[MRW_MAX_DIMS];
} tensor_view;

/* 24 bytes: every opcode creates at most one value, so memory stays a small multiple of the input. */
struct val {
    uint8_t kind; /* vkind */
    union {
        int64_t i;    /* V_INT, V_BOOL */
        double f;     /* V_FLOAT */
        struct {      /* V_STR, V_BYTES: point into the pickle */
            const char *p;
            uint32_t n;
        } s;
        struct {      /* V_TUPLE, V_LIST, V_DICT (v[2k] key, v[2k+1] value, in insertion order) */
            val **v;
            uint32_t n, cap;
        } seq;
        int g;                 /* V_GLOBAL: index into k_globals */
        const storage_ref *st; /* V_STORAGE */
        const tensor_view *t;  /* V_TENSOR */
    } u;
};

_Static_assert(sizeof(val) <= 24, "pickle values stay small");

/* -------------------------------------------------------------------------------------------- arena */

/* All values live in one arena, so every exit path frees everything with one call, whatever the graph of
 * references (memo entries, shared sub-objects, cycles) looks like. */
typedef struct blk {
    struct blk *next;
    size_t used, cap;
    _Alignas(8) unsigned char data[];
} blk;

typedef struct {
    blk *head;
    size_t total;
} arena;

static void *arena_alloc(arena *a, size_t n) {
    n = (n + 7) & ~(size_t)7;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (a->total + cap > MRW_PKL_MAX_ARENA) return NULL;
        blk *b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->total += cap;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

static void arena_free(arena *a) {
    for (blk *b = a->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    a->head = NULL;
    a->total = 0;
}

/* --------------------------------------------------------------------------------------- unpickler */

typedef struct {
    const uint8_t *b;
    size_t len, pos, at; /* at: offset of the opcode being executed */
    arena ar;
    val **stack;
    size_t sp, scap;
    size_t *marks;
    int nmarks, mcap;
    val **memo;
    size_t memo_cap, memo_len;
    val none, vtrue, vfalse, empty_tuple; /* shared immutable values */
    val *result;
    mrw_error *err;
} U;

static mrw_status fail(U *u, mrw_status code, const char *fmt, ...) MRW_PRINTF(3, 4);
static mrw_status fail(U *u, mrw_status code, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mrw_err(u->err, code, "offset %zu: %s", u->at, msg);
}

static mrw_status nomem(U *u) {
    if (u->ar.total + 65536 > MRW_PKL_MAX_ARENA)
        return fail(u, MRW_E_LIMIT, "the pickle's values need more than %zu MiB", MRW_PKL_MAX_ARENA >> 20);
    return fail(u, MRW_E_NOMEM, "out of memory");
}

static val *new_val(U *u, vkind k) {
    val *v = arena_alloc(&u->ar, sizeof *v);
    if (v) {
        memset(v, 0, sizeof *v);
        v->kind = (uint8_t)k;
    }
    return v;
}

/* ---------------------------------------------------------------------------------- reading operands */

static mrw_status need(U *u, size_t n, const char *what) {
    if (u->len - u->pos < n)
        return fail(u, MRW_E_FORMAT, "the pickle ends inside %s (truncated?)", what);
    return MRW_OK;
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Reads an n-byte little-endian length operand. */
static mrw_status read_len(U *u, int n, const char *op, size_t *out) {
    mrw_status s = need(u, (size_t)n, op);
    if (s) return s;
    *out = (size_t)le(u->b + u->pos, n);
    u->pos += (size_t)n;
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------- stack, marks */

static size_t floor_sp(const U *u) { return u->nmarks ? u->marks[u->nmarks - 1] : 0; }

static mrw_status push(U *u, val *v) {
    if (!v) return nomem(u);
    if (u->sp == u->scap) {
        if (u->scap >= MRW_PKL_MAX_STACK)
            return fail(u, MRW_E_LIMIT, "more than %d values on the pickle stack", MRW_PKL_MAX_STACK);
        size_t cap = u->scap ? u->scap * 2 : 256;
        val **s = realloc(u->stack, cap * sizeof *s);
        if (!s) return fail(u, MRW_E_NOMEM, "out of memory");
        u->stack = s;
        u->scap = cap;
    }
    u->stack[u->sp++] = v;
    return MRW_OK;
}

/* Pops n values (n <= 3) above the current mark into out[0..n) in stack order. */
static mrw_status pop_n(U *u, int n, val **out, const char *op) {
    if (u->sp - floor_sp(u) < (size_t)n)
        return fail(u, MRW_E_FORMAT,
                    "%s needs %d value%s on the stack, which has fewer (stack underflow)", op, n,
                    n == 1 ? "" : "s");
    u->sp -= (size_t)n;
    for (int i = 0; i < n; i++) out[i] = u->stack[u->sp + (size_t)i];
    return MRW_OK;
}

static mrw_status top(U *u, val **out, const char *op) {
    if (u->sp == floor_sp(u)) return fail(u, MRW_E_FORMAT, "%s on an empty stack (stack underflow)", op);
    *out = u->stack[u->sp - 1];
    return MRW_OK;
}

/* Ends the innermost MARK: its values are stack[*start .. sp). */
static mrw_status pop_mark(U *u, size_t *start, const char *op) {
    if (!u->nmarks) return fail(u, MRW_E_FORMAT, "%s without a preceding MARK", op);
    *start = u->marks[--u->nmarks];
    return MRW_OK;
}

static mrw_status op_mark(U *u) {
    if (u->nmarks == u->mcap) {
        if (u->mcap >= MRW_PKL_MAX_MARKS)
            return fail(u, MRW_E_LIMIT, "MARKs nested more than %d deep", MRW_PKL_MAX_MARKS);
        int cap = u->mcap ? u->mcap * 2 : 16;
        size_t *m = realloc(u->marks, (size_t)cap * sizeof *m);
        if (!m) return fail(u, MRW_E_NOMEM, "out of memory");
        u->marks = m;
        u->mcap = cap;
    }
    u->marks[u->nmarks++] = u->sp;
    return MRW_OK;
}

/* --------------------------------------------------------------------------------------- containers */

static val *new_seq(U *u, vkind k, uint32_t n) {
    val *v = new_val(u, k);
    if (!v) return NULL;
    if (n) {
        v->u.seq.v = arena_alloc(&u->ar, (size_t)n * sizeof(val *));
        if (!v->u.seq.v) return NULL;
    }
    v->u.seq.cap = n;
    return v;
}

/* Appends n values to a list or dict (amortized doubling inside the arena). */
static mrw_status seq_append(U *u, val *c, val *const *items, size_t n) {
    if (n == 0) return MRW_OK;
    if (n > UINT32_MAX - c->u.seq.n) return fail(u, MRW_E_LIMIT, "a container with more than 2^32 items");
    uint32_t want = c->u.seq.n + (uint32_t)n;
    if (want > c->u.seq.cap) {
        uint64_t cap = c->u.seq.cap ? (uint64_t)c->u.seq.cap * 2 : 8;
        while (cap < want) cap *= 2;
        if (cap > UINT32_MAX) cap = UINT32_MAX;
        val **nv = arena_alloc(&u->ar, (size_t)cap * sizeof *nv);
        if (!nv) return nomem(u);
        if (c->u.seq.n) memcpy(nv, c->u.seq.v, c->u.seq.n * sizeof *nv);
        c->u.seq.v = nv;
        c->u.seq.cap = (uint32_t)cap;
    }
    memcpy(c->u.seq.v + c->u.seq.n, items, n * sizeof *items);
    c->u.seq.n = want;
    return MRW_OK;
}

static mrw_status make_tuple(U *u, size_t start) {
    size_t n = u->sp - start;
    if (n == 0) {
        u->sp = start;
        return push(u, &u->empty_tuple);
    }
    val *t = new_seq(u, V_TUPLE, (uint32_t)n);
    if (!t) return nomem(u);
    memcpy(t->u.seq.v, u->stack + start, n * sizeof(val *));
    t->u.seq.n = (uint32_t)n;
    u->sp = start;
    return push(u, t);
}

static mrw_status op_tuple_n(U *u, int n, const char *op) {
    if (u->sp - floor_sp(u) < (size_t)n)
        return fail(u, MRW_E_FORMAT, "%s needs %d values on the stack (stack underflow)", op, n);
    return make_tuple(u, u->sp - (size_t)n);
}

/* SETITEM(S) / APPEND(S): the values above `start` go into the container just below it. */
static mrw_status fill_container(U *u, size_t start, vkind want, const char *op) {
    if (start == floor_sp(u) || start == 0)
        return fail(u, MRW_E_FORMAT, "%s has no %s to add to (stack underflow)", op, kind_name(want));
    val *c = u->stack[start - 1];
    if (c->kind != want)
        return fail(u, MRW_E_FORMAT, "%s applied to a %s, not a %s", op, kind_name(c->kind), kind_name(want));
    size_t n = u->sp - start;
    if (want == V_DICT && n % 2)
        return fail(u, MRW_E_FORMAT, "%s with an odd number of values (a key without a value)", op);
    mrw_status s = seq_append(u, c, u->stack + start, n);
    u->sp = start;
    return s;
}

static mrw_status op_setitems_like(U *u, vkind want, const char *op) {
    size_t start = 0;
    mrw_status s = pop_mark(u, &start, op);
    return s ? s : fill_container(u, start, want, op);
}

static mrw_status op_setitem_like(U *u, int n, vkind want, const char *op) {
    if (u->sp - floor_sp(u) < (size_t)n + 1)
        return fail(u, MRW_E_FORMAT, "%s needs %d values on the stack (stack underflow)", op, n + 1);
    return fill_container(u, u->sp - (size_t)n, want, op);
}

/* -------------------------------------------------------------------------------------------- memo */

static mrw_status op_put(U *u, size_t idx) {
    val *v = NULL;
    mrw_status s = top(u, &v, "PUT");
    if (s) return s;
    /* The pickler numbers memo entries 0, 1, 2, ... one per PUT opcode, so an index beyond the pickle's
     * length cannot come from it; refusing those bounds the memo's memory by the input size. */
    if (idx >= MRW_PKL_MAX_MEMO || idx >= u->len)
        return fail(u, MRW_E_LIMIT, "memo index %zu is out of range for a pickle of %zu bytes", idx, u->len);
    if (idx >= u->memo_cap) {
        size_t cap = u->memo_cap ? u->memo_cap : 256;
        while (cap <= idx) cap *= 2;
        val **m = realloc(u->memo, cap * sizeof *m);
        if (!m) return fail(u, MRW_E_NOMEM, "out of memory");
        memset(m + u->memo_cap, 0, (cap - u->memo_cap) * sizeof *m);
        u->memo = m;
        u->memo_cap = cap;
    }
    if (!u->memo[idx]) u->memo_len++;
    u->memo[idx] = v;
    return MRW_OK;
}

static mrw_status op_get(U *u, size_t idx) {
    if (idx >= u->memo_cap || !u->memo[idx])
        return fail(u, MRW_E_FORMAT, "memo entry %zu is read before it is written", idx);
    return push(u, u->memo[idx]);
}

/* ------------------------------------------------------------------------------------------ scalars */

static mrw_status push_int(U *u, int64_t i) {
    val *v = new_val(u, V_INT);
    if (v) v->u.i = i;
    return push(u, v);
}

static mrw_status op_int(U *u, int nbytes, int is_signed) {
    mrw_status s = need(u, (size_t)nbytes, "an integer");
    if (s) return s;
    uint64_t x = le(u->b + u->pos, nbytes);
    u->pos += (size_t)nbytes;
    int64_t i = is_signed ? (int64_t)(int32_t)(uint32_t)x : (int64_t)x;
    return push_int(u, i);
}

static mrw_status op_long1(U *u) {
    size_t n = 0;
    mrw_status s = read_len(u, 1, "LONG1", &n);
    if (s || (s = need(u, n, "LONG1"))) return s;
    if (n > 8) return fail(u, MRW_E_LIMIT, "LONG1 integer of %zu bytes does not fit in 64 bits", n);
    uint64_t x = n ? le(u->b + u->pos, (int)n) : 0;
    if (n && n < 8 && (u->b[u->pos + n - 1] & 0x80)) x |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    u->pos += n;
    int64_t i;
    memcpy(&i, &x, sizeof i);
    return push_int(u, i);
}

static mrw_status op_binfloat(U *u) {
    mrw_status s = need(u, 8, "BINFLOAT");
    if (s) return s;
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x = x << 8 | u->b[u->pos + (size_t)i]; /* big-endian */
    u->pos += 8;
    val *v = new_val(u, V_FLOAT);
    if (v) memcpy(&v->u.f, &x, sizeof x);
    return push(u, v);
}

/* BINUNICODE and friends: the value points into the pickle. */
static mrw_status op_string(U *u, int len_bytes, vkind k, const char *op) {
    size_t n = 0;
    mrw_status s = read_len(u, len_bytes, op, &n);
    if (s) return s;
    if (n > u->len - u->pos)
        return fail(u, MRW_E_FORMAT,
                    "%s of %zu bytes runs past the end of the pickle (%zu bytes left)", op, n,
                    u->len - u->pos);
    val *v = new_val(u, k);
    if (v) {
        v->u.s.p = (const char *)u->b + u->pos;
        v->u.s.n = (uint32_t)n;
    }
    u->pos += n;
    return push(u, v);
}

/* ------------------------------------------------------------------------------------------ globals */

static mrw_status resolve_global(U *u, const char *mod, size_t ml, const char *name, size_t nl) {
    for (size_t i = 0; i < sizeof k_globals / sizeof k_globals[0]; i++)
        if (strlen(k_globals[i].mod) == ml && !memcmp(k_globals[i].mod, mod, ml) &&
            strlen(k_globals[i].name) == nl && !memcmp(k_globals[i].name, name, nl)) {
            val *v = new_val(u, V_GLOBAL);
            if (v) v->u.g = (int)i;
            return push(u, v);
        }
    char a[160], b[160];
    return fail(u, MRW_E_SECURITY, "refusing to load: the pickle references %s.%s, which is not an allowed "
                "global (only tensors and dicts are allowed)", mrw_printable(a, sizeof a, mod, ml),
                mrw_printable(b, sizeof b, name, nl));
}

/* One newline-terminated GLOBAL operand. */
static mrw_status read_line(U *u, const char **p, size_t *n) {
    size_t room = u->len - u->pos, look = room < MRW_PKL_MAX_GLOBAL + 1 ? room : MRW_PKL_MAX_GLOBAL + 1;
    const uint8_t *nl = memchr(u->b + u->pos, '\n', look);
    if (!nl) {
        if (look == room) return fail(u, MRW_E_FORMAT, "the pickle ends inside a GLOBAL (truncated?)");
        return fail(u, MRW_E_LIMIT, "a GLOBAL name longer than %d bytes", MRW_PKL_MAX_GLOBAL);
    }
    *p = (const char *)u->b + u->pos;
    *n = (size_t)(nl - (u->b + u->pos));
    u->pos += *n + 1;
    return MRW_OK;
}

static mrw_status op_global(U *u) {
    const char *m = NULL, *n = NULL;
    size_t ml = 0, nl = 0;
    mrw_status s = read_line(u, &m, &ml);
    if (s || (s = read_line(u, &n, &nl))) return s;
    return resolve_global(u, m, ml, n, nl);
}

static mrw_status op_stack_global(U *u) {
    val *v[2] = {NULL, NULL};
    mrw_status s = pop_n(u, 2, v, "STACK_GLOBAL");
    if (s) return s;
    if (v[0]->kind != V_STR || v[1]->kind != V_STR)
        return fail(u, MRW_E_FORMAT, "STACK_GLOBAL needs two strings, got %s and %s", kind_name(v[0]->kind),
                    kind_name(v[1]->kind));
    if (v[0]->u.s.n > MRW_PKL_MAX_GLOBAL || v[1]->u.s.n > MRW_PKL_MAX_GLOBAL)
        return fail(u, MRW_E_LIMIT, "a GLOBAL name longer than %d bytes", MRW_PKL_MAX_GLOBAL);
    return resolve_global(u, v[0]->u.s.p, v[0]->u.s.n, v[1]->u.s.p, v[1]->u.s.n);
}

/* --------------------------------------------------------------------------------- torch reconstruction */

static int is_str(const val *v, const char *s) {
    return (v->kind == V_STR || v->kind == V_BYTES) && v->u.s.n == strlen(s) &&
           !memcmp(v->u.s.p, s, v->u.s.n);
}

/* BINPERSID: ('storage', torch.<X>Storage, '<key>', '<location>', numel) -> a storage. */
static mrw_status op_persid(U *u) {
    val *pid = NULL;
    mrw_status s = pop_n(u, 1, &pid, "BINPERSID");
    if (s) return s;
    if (pid->kind != V_TUPLE || pid->u.seq.n == 0 || !is_str(pid->u.seq.v[0], "storage"))
        return fail(u, MRW_E_SECURITY,
                    "refusing to load: a persistent id that is not a tensor storage reference "
                    "(only ('storage', ...) ids are allowed)");
    val **f = pid->u.seq.v;
    if (pid->u.seq.n != 5 || f[1]->kind != V_GLOBAL || k_globals[f[1]->u.g].kind != G_STORAGE ||
        (f[2]->kind != V_STR && f[2]->kind != V_BYTES) || (f[3]->kind != V_STR && f[3]->kind != V_BYTES) ||
        f[4]->kind != V_INT)
        return fail(u, MRW_E_FORMAT, "a storage reference that is not ('storage', torch.<Type>Storage, key, "
                    "location, numel)");
    if (f[2]->u.s.n == 0 || f[2]->u.s.n > MRW_PKL_MAX_KEY || memchr(f[2]->u.s.p, 0, f[2]->u.s.n))
        return fail(u, MRW_E_FORMAT, "a storage key that is empty, longer than %d bytes or contains NUL",
                    MRW_PKL_MAX_KEY);
    if (f[4]->u.i < 0) return fail(u, MRW_E_FORMAT,
                                   "a storage with a negative size (%lld)", (long long)f[4]->u.i);
    val *v = new_val(u, V_STORAGE);
    storage_ref *st = arena_alloc(&u->ar, sizeof *st);
    if (!v || !st) return nomem(u);
    st->key = f[2]->u.s.p;
    st->key_len = f[2]->u.s.n;
    st->numel = f[4]->u.i;
    st->dtype = k_globals[f[1]->u.g].dtype;
    v->u.st = st;
    return push(u, v);
}

/* A tuple of non-negative ints (a size or stride) into out; returns its length or -1. */
static int int_tuple(const val *v, int64_t *out) {
    if (v->kind != V_TUPLE) return -1;
    if (v->u.seq.n > MRW_MAX_DIMS) return -2;
    for (uint32_t i = 0; i < v->u.seq.n; i++) {
        const val *x = v->u.seq.v[i];
        if (x->kind != V_INT || x->u.i < 0) return -1;
        out[i] = x->u.i;
    }
    return (int)v->u.seq.n;
}

static int truthy(const val *v) {
    switch (v->kind) {
    case V_NONE: return 0;
    case V_BOOL: case V_INT: return v->u.i != 0;
    case V_FLOAT: return v->u.f != 0;
    case V_STR: case V_BYTES: return v->u.s.n != 0;
    case V_TUPLE: case V_LIST: case V_DICT: return v->u.seq.n != 0;
    default: return 1;
    }
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
static mrw_status rebuild_tensor(U *u, const val *args, val **out) {
    uint32_t n = args->u.seq.n;
    val *const *a = args->u.seq.v;
    if (n != 6 && n != 7)
        return fail(u, MRW_E_FORMAT, "_rebuild_tensor_v2 called with %u arguments instead of 6 or 7", n);
    if (a[0]->kind != V_STORAGE || a[1]->kind != V_INT || a[1]->u.i < 0)
        return fail(u, MRW_E_FORMAT,
                    "_rebuild_tensor_v2 needs a storage and a non-negative offset, got %s and %s",
                    kind_name(a[0]->kind), kind_name(a[1]->kind));
    if ((a[4]->kind != V_BOOL && a[4]->kind != V_INT) || (a[5]->kind != V_DICT && a[5]->kind != V_NONE))
        return fail(u, MRW_E_FORMAT, "_rebuild_tensor_v2: requires_grad is a %s and backward_hooks a %s",
                    kind_name(a[4]->kind), kind_name(a[5]->kind));
    val *v = new_val(u, V_TENSOR);
    tensor_view *t = arena_alloc(&u->ar, sizeof *t);
    if (!v || !t) return nomem(u);
    memset(t, 0, sizeof *t);
    int nd = int_tuple(a[2], t->size), ns = int_tuple(a[3], t->stride);
    if (nd == -2 || ns == -2)
        return fail(u, MRW_E_UNSUPPORTED, "a tensor with more than %d dimensions", MRW_MAX_DIMS);
    if (nd < 0 || ns != nd)
        return fail(u, MRW_E_FORMAT,
                    "_rebuild_tensor_v2: size and stride must be tuples of non-negative ints of "
                    "the same length");
    if (n == 7 && a[6]->kind == V_DICT) {
        /* Flags such as a lazily negated or conjugated view would change the values: refuse those. */
        for (uint32_t i = 0; i + 1 < a[6]->u.seq.n; i += 2)
            if (truthy(a[6]->u.seq.v[i + 1])) {
                char kb[64];
                const val *k = a[6]->u.seq.v[i];
                return fail(u, MRW_E_UNSUPPORTED,
                            "a tensor with metadata '%s' set, which modrwkv cannot apply; "
                            "save a plain copy of it (tensor.clone().resolve_neg().resolve_conj())",
                            k->kind == V_STR ? mrw_printable(kb, sizeof kb, k->u.s.p, k->u.s.n) : "?");
            }
    } else if (n == 7 && a[6]->kind != V_NONE) {
        return fail(u, MRW_E_FORMAT,
                    "_rebuild_tensor_v2: metadata is a %s, not a dict", kind_name(a[6]->kind));
    }
    t->storage = a[0]->u.st;
    t->offset = a[1]->u.i;
    t->ndim = nd;
    v->u.t = t;
    *out = v;
    return MRW_OK;
}

static mrw_status op_reduce(U *u) {
    val *args = NULL, *fn = NULL;
    mrw_status s = pop_n(u, 1, &args, "REDUCE");
    if (s || (s = top(u, &fn, "REDUCE"))) return s;
    if (fn->kind != V_GLOBAL)
        return fail(u, MRW_E_SECURITY, "refusing to load: REDUCE calls a %s; only collections.OrderedDict, "
                    "torch._utils._rebuild_tensor_v2 and torch._utils._rebuild_parameter may be called",
                    kind_name(fn->kind));
    gkind g = k_globals[fn->u.g].kind;
    if (g != G_ORDERED_DICT && g != G_REBUILD_V2 && g != G_REBUILD_PARAM)
        return fail(u, MRW_E_SECURITY, "refusing to load: the pickle calls %s.%s, which is allowed only as a "
                    "value; only collections.OrderedDict, torch._utils._rebuild_tensor_v2 and "
                    "torch._utils._rebuild_parameter may be called", k_globals[fn->u.g].mod,
                    k_globals[fn->u.g].name);
    if (args->kind != V_TUPLE)
        return fail(u, MRW_E_FORMAT, "REDUCE arguments are a %s, not a tuple", kind_name(args->kind));
    val *r = NULL;
    if (g == G_ORDERED_DICT) {
        if (args->u.seq.n != 0)
            return fail(u, MRW_E_FORMAT, "OrderedDict called with arguments (torch.save calls it with none)");
        if (!(r = new_seq(u, V_DICT, 0))) return nomem(u);
    } else if (g == G_REBUILD_V2) {
        if ((s = rebuild_tensor(u, args, &r))) return s;
    } else {
        val *const *a = args->u.seq.v;
        if (args->u.seq.n != 3 || a[0]->kind != V_TENSOR)
            return fail(u, MRW_E_FORMAT, "_rebuild_parameter needs (tensor, requires_grad, backward_hooks)");
        r = a[0];
    }
    u->stack[u->sp - 1] = r;
    return MRW_OK;
}

/* BUILD sets attributes; torch.save uses it only to attach `_metadata` (per-module versions) to the state
 * dict, which has no bearing on the weights: accepted on dicts and ignored. */
static mrw_status op_build(U *u) {
    val *state = NULL, *inst = NULL;
    mrw_status s = pop_n(u, 1, &state, "BUILD");
    if (s || (s = top(u, &inst, "BUILD"))) return s;
    if (inst->kind != V_DICT)
        return fail(u, MRW_E_UNSUPPORTED, "BUILD on a %s (only a state dict's attributes can be set)",
                    kind_name(inst->kind));
    if (state->kind != V_DICT && state->kind != V_NONE && state->kind != V_TUPLE)
        return fail(u, MRW_E_FORMAT, "BUILD with a %s as the state", kind_name(state->kind));
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------- the main loop */

static mrw_status refuse_op(U *u, uint8_t op) {
    const char *name = k_op_names[op];
    if (!name) return fail(u, MRW_E_FORMAT, "byte 0x%02x is not a pickle opcode (corrupt data.pkl?)", op);
    return fail(u, MRW_E_SECURITY, "refusing to load: pickle opcode %s (0x%02x) is not allowed in a weights "
                "file (only tensors and dicts are allowed)", name, op);
}

static mrw_status step(U *u, uint8_t op, int *stop) {
    size_t n = 0;
    mrw_status s;
    switch (op) {
    case 0x80: /* PROTO */
        if ((s = read_len(u, 1, "PROTO", &n))) return s;
        if (n > 5) return fail(u, MRW_E_UNSUPPORTED, "pickle protocol %zu (this reader knows 2 to 5)", n);
        return MRW_OK;
    case 0x95: /* FRAME: a length hint only */
        if ((s = read_len(u, 8, "FRAME", &n))) return s;
        if (n > u->len - u->pos) return fail(u, MRW_E_FORMAT, "a FRAME of %zu bytes runs past the end", n);
        return MRW_OK;
    case '.': /* STOP */
        if ((s = pop_n(u, 1, &u->result, "STOP"))) return s;
        *stop = 1;
        return MRW_OK;
    case '(': return op_mark(u);
    case 'N': return push(u, &u->none);
    case 0x88: return push(u, &u->vtrue);
    case 0x89: return push(u, &u->vfalse);
    case ')': return push(u, &u->empty_tuple);
    case '}': return push(u, new_seq(u, V_DICT, 0));
    case ']': return push(u, new_seq(u, V_LIST, 0));
    case 'J': return op_int(u, 4, 1);
    case 'K': return op_int(u, 1, 0);
    case 'M': return op_int(u, 2, 0);
    case 0x8a: return op_long1(u);
    case 'G': return op_binfloat(u);
    case 'X': return op_string(u, 4, V_STR, "BINUNICODE");
    case 0x8c: return op_string(u, 1, V_STR, "SHORT_BINUNICODE");
    case 'U': return op_string(u, 1, V_STR, "SHORT_BINSTRING");
    case 'B': return op_string(u, 4, V_BYTES, "BINBYTES");
    case 'C': return op_string(u, 1, V_BYTES, "SHORT_BINBYTES");
    case 't':
        if ((s = pop_mark(u, &n, "TUPLE"))) return s;
        return make_tuple(u, n);
    case 0x85: return op_tuple_n(u, 1, "TUPLE1");
    case 0x86: return op_tuple_n(u, 2, "TUPLE2");
    case 0x87: return op_tuple_n(u, 3, "TUPLE3");
    case 's': return op_setitem_like(u, 2, V_DICT, "SETITEM");
    case 'u': return op_setitems_like(u, V_DICT, "SETITEMS");
    case 'a': return op_setitem_like(u, 1, V_LIST, "APPEND");
    case 'e': return op_setitems_like(u, V_LIST, "APPENDS");
    case 'q': return (s = read_len(u, 1, "BINPUT", &n)) ? s : op_put(u, n);
    case 'r': return (s = read_len(u, 4, "LONG_BINPUT", &n)) ? s : op_put(u, n);
    case 0x94: return op_put(u, u->memo_len);
    case 'h': return (s = read_len(u, 1, "BINGET", &n)) ? s : op_get(u, n);
    case 'j': return (s = read_len(u, 4, "LONG_BINGET", &n)) ? s : op_get(u, n);
    case 'c': return op_global(u);
    case 0x93: return op_stack_global(u);
    case 'Q': return op_persid(u);
    case 'R': return op_reduce(u);
    case 'b': return op_build(u);
    default: return refuse_op(u, op);
    }
}

static mrw_status run(U *u) {
    int stop = 0;
    while (!stop) {
        if (u->pos >= u->len) {
            u->at = u->len;
            return fail(u, MRW_E_FORMAT, "the pickle ends without STOP (truncated?)");
        }
        u->at = u->pos;
        mrw_status s = step(u, u->b[u->pos++], &stop);
        if (s) return s;
    }
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------------ flatten */

typedef struct {
    U *u;
    mrw_pkl_state_dict *out;
    int cap;
    size_t visits, name_bytes;
    char name[MRW_PKL_MAX_NAME + 1];
} flat;

/* Structural UTF-8 check (surrogates allowed, as Python's surrogatepass decoding allows them). */
static int utf8_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        int k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
        if (k < 0 || i + (size_t)k >= n) return 0;
        for (int j = 1; j <= k; j++)
            if ((s[i + (size_t)j] & 0xc0) != 0x80) return 0;
        i += (size_t)k + 1;
    }
    return 1;
}

/* Appends the key of a dict entry to f->name at `plen`; returns the new length via *nlen. */
static mrw_status append_key(flat *f, size_t plen, const val *k, size_t *nlen) {
    char num[24];
    const char *p;
    size_t n = 0;
    if (k->kind == V_STR) {
        p = k->u.s.p;
        n = k->u.s.n;
        if (memchr(p, 0, n)) return mrw_err(f->u->err, MRW_E_FORMAT, "a tensor name contains a NUL byte");
        if (!utf8_ok((const unsigned char *)p, n))
            return mrw_err(f->u->err, MRW_E_FORMAT, "a tensor name is not valid UTF-8");
    } else if (k->kind == V_INT) {
        n = (size_t)snprintf(num, sizeof num, "%lld", (long long)k->u.i);
        p = num;
    } else {
        return mrw_err(f->u->err, MRW_E_FORMAT,
                       "a tensor or dict is stored under a key that is a %s, not a string",
                       kind_name(k->kind));
    }
    size_t total = plen + (plen ? 1 : 0) + n;
    if (total > MRW_PKL_MAX_NAME) {
        f->name[plen < 60 ? plen : 60] = 0;
        return mrw_err(f->u->err, MRW_E_LIMIT, "a tensor name longer than %d bytes (starting '%s')",
                       MRW_PKL_MAX_NAME, f->name);
    }
    if (plen) f->name[plen++] = '.';
    memcpy(f->name + plen, p, n);
    f->name[total] = 0;
    *nlen = total;
    return MRW_OK;
}

static mrw_status emit(flat *f, size_t nlen, const val *t) {
    mrw_pkl_state_dict *o = f->out;
    if (o->n >= MRW_PKL_MAX_TENSORS)
        return mrw_err(f->u->err, MRW_E_LIMIT, "more than %d tensors", MRW_PKL_MAX_TENSORS);
    if (o->n == f->cap) {
        int cap = f->cap ? f->cap * 2 : 64;
        mrw_pkl_tensor *nt = realloc(o->tensors, (size_t)cap * sizeof *nt);
        if (!nt) return mrw_err(f->u->err, MRW_E_NOMEM, "out of memory");
        o->tensors = nt;
        f->cap = cap;
    }
    f->name_bytes += nlen + 1;
    if (f->name_bytes > MRW_PKL_MAX_NAME_BYTES)
        return mrw_err(f->u->err, MRW_E_LIMIT,
                       "the tensor names take more than %d MiB", MRW_PKL_MAX_NAME_BYTES >> 20);
    char *name = arena_alloc(&f->u->ar, nlen + 1);
    if (!name) return mrw_err(f->u->err, MRW_E_NOMEM, "out of memory for tensor names");
    memcpy(name, f->name, nlen + 1);
    const tensor_view *tv = t->u.t;
    mrw_pkl_tensor *x = &o->tensors[o->n++];
    memset(x, 0, sizeof *x);
    x->name = name;
    x->key = tv->storage->key;
    x->key_len = tv->storage->key_len;
    x->dtype = tv->storage->dtype;
    x->storage_numel = tv->storage->numel;
    x->offset = tv->offset;
    x->ndim = tv->ndim;
    memcpy(x->size, tv->size, sizeof x->size);
    memcpy(x->stride, tv->stride, sizeof x->stride);
    return MRW_OK;
}

/* Depth is bounded by MRW_PKL_MAX_NEST and total work by MRW_PKL_MAX_VISITS (a pickle can share one dict
 * many times over, or make a dict contain itself). */
static mrw_status flatten(flat *f, const val *d, size_t plen, int depth) {
    for (uint32_t i = 0; i + 1 < d->u.seq.n; i += 2) {
        if (++f->visits > MRW_PKL_MAX_VISITS)
            return mrw_err(f->u->err, MRW_E_LIMIT, "the state dict has more than %d entries (counting nested "
                           "dicts each time they are referenced)", MRW_PKL_MAX_VISITS);
        const val *k = d->u.seq.v[i], *v = d->u.seq.v[i + 1];
        if (v->kind != V_TENSOR && v->kind != V_DICT) continue; /* numbers, strings, lists: not weights */
        size_t nlen = 0;
        mrw_status s = append_key(f, plen, k, &nlen);
        if (s) return s;
        if (v->kind == V_TENSOR) s = emit(f, nlen, v);
        else if (depth + 1 >= MRW_PKL_MAX_NEST)
            s = mrw_err(f->u->err, MRW_E_LIMIT, "dicts nested more than %d deep under '%s' (or a dict that "
                        "contains itself)", MRW_PKL_MAX_NEST, f->name);
        else s = flatten(f, v, nlen, depth + 1);
        if (s) return s;
    }
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------------ public */

mrw_status mrw_pkl_load_state_dict(const void *buf, size_t len, mrw_pkl_state_dict *out, mrw_error *err) {
    memset(out, 0, sizeof *out);
    if (len > MRW_PKL_MAX_BYTES)
        return mrw_err(err, MRW_E_LIMIT,
                       "the pickle is %zu bytes (limit %zu MiB)", len, MRW_PKL_MAX_BYTES >> 20);
    U *u = calloc(1, sizeof *u);
    if (!u) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    u->b = buf;
    u->len = len;
    u->err = err;
    u->none.kind = V_NONE;
    u->vtrue.kind = V_BOOL;
    u->vtrue.u.i = 1;
    u->vfalse.kind = V_BOOL;
    u->empty_tuple.kind = V_TUPLE;
    mrw_status s = run(u);
    if (!s && u->result->kind != V_DICT) {
        s = mrw_err(err, u->result->kind == V_TENSOR ? MRW_E_UNSUPPORTED : MRW_E_FORMAT,
                    "the pickle holds a %s, not a dict of tensors (torch.save(model.state_dict()) writes "
                    "a dict)",
                    kind_name(u->result->kind));
    }
    if (!s) {
        flat *f = calloc(1, sizeof *f);
        if (!f) s = mrw_err(err, MRW_E_NOMEM, "out of memory");
        else {
            f->u = u;
            f->out = out;
            s = flatten(f, u->result, 0, 0);
            free(f);
        }
    }
    free(u->stack);
    free(u->marks);
    free(u->memo);
    if (s) {
        free(out->tensors);
        arena_free(&u->ar);
        memset(out, 0, sizeof *out);
    } else {
        /* Keep only the arena (it holds the names); hand it over as a heap copy of its head. */
        arena *keep = malloc(sizeof *keep);
        if (!keep) {
            free(out->tensors);
            arena_free(&u->ar);
            memset(out, 0, sizeof *out);
            s = mrw_err(err, MRW_E_NOMEM, "out of memory");
        } else {
            *keep = u->ar;
            out->arena_ = keep;
        }
    }
    free(u);
    return s;
}

void mrw_pkl_free(mrw_pkl_state_dict *sd) {
    if (!sd) return;
    if (sd->arena_) {
        arena_free(sd->arena_);
        free(sd->arena_);
    }
    free(sd->tensors);
    memset(sd, 0, sizeof *sd);
}
