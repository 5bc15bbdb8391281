/* A restricted unpickler for PyTorch state dicts (the data.pkl of a torch.save archive).
 *
 * It is not a Python unpickler: it builds inert values (None, bools, ints, floats, strings, bytes, tuples,
 * lists, dicts) and three kinds of torch objects, and nothing it reads can make it run code. Accepted
 * opcodes (everything else is refused with MRW_E_SECURITY naming the opcode and its offset):
 *   what torch.save writes at its default protocol 2 (checked with pickletools.dis on torch 1.13 output:
 *   state dicts, nn.Parameter values, nested checkpoints): PROTO STOP MARK EMPTY_DICT EMPTY_TUPLE NONE
 *   NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 BINFLOAT BINUNICODE TUPLE TUPLE1 TUPLE2 TUPLE3 SETITEM
 *   SETITEMS BINPUT LONG_BINPUT BINGET LONG_BINGET GLOBAL BINPERSID REDUCE BUILD, and EMPTY_LIST APPEND
 *   APPENDS for lists in saved configs;
 *   what pickle_protocol=4/5 adds: FRAME MEMOIZE STACK_GLOBAL SHORT_BINUNICODE;
 *   plain data some writers use: SHORT_BINSTRING (Python 2 era; PyTorch's weights_only reader takes it too),
 *   BINBYTES SHORT_BINBYTES.
 *
 * GLOBAL / STACK_GLOBAL may name only:
 *   collections.OrderedDict                  called with () -> an empty dict
 *   torch._utils._rebuild_tensor_v2          called with (storage, offset, size, stride, requires_grad,
 *                                            backward_hooks[, metadata]) -> a tensor view
 *   torch._utils._rebuild_parameter          called with (tensor, requires_grad, backward_hooks) -> that
 *                                            tensor: nn.Parameter entries (torch.save of a module's
 *                                            parameters) use it; it is in PyTorch's own weights_only
 *                                            allow-list and only wraps a tensor
 *   torch.{BFloat16,Half,Float,Double,Long,Int,Short,Char,Byte,Bool}Storage   storage types, as the second
 *                                            field of a persistent id; not callable
 *   torch.<dtype> (torch.bfloat16, torch.float32, ...)   inert values (they appear in saved configs)
 * Anything else is refused with MRW_E_SECURITY before it is used. A persistent id (BINPERSID) must be
 * ('storage', <storage type>, '<key>', '<location>', numel).
 *
 * The result is the flat list of tensors in the top-level dict (an OrderedDict or a plain dict). Nested
 * dicts are flattened with "key." prefixes ({"model": {"w": t}} gives "model.w"; integer keys print in
 * decimal); values that are neither tensors nor dicts (numbers, strings, lists, the _metadata that BUILD
 * attaches to a state dict, ...) are skipped. Every resource is bounded (limits below) and the work is
 * linear in the input; there is no recursion an input can make deep. */
#ifndef MRW_FORMATS_PICKLE_H
#define MRW_FORMATS_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "formats/tensorfile.h"
#include "modrwkv.h"

/* Limits (MRW_E_LIMIT beyond them). */
#define MRW_PKL_MAX_BYTES ((size_t)1 << 30)   /* size of the pickle itself */
#define MRW_PKL_MAX_STACK (1 << 20)            /* values on the stack at once */
#define MRW_PKL_MAX_MARKS 1024                 /* MARK nesting (torch.save uses 2) */
#define MRW_PKL_MAX_MEMO (1 << 24)             /* memo indices (also: below the pickle's length) */
#define MRW_PKL_MAX_ARENA ((size_t)1 << 31)    /* bytes of decoded values */
#define MRW_PKL_MAX_GLOBAL 256                 /* bytes of a GLOBAL module or name */
#define MRW_PKL_MAX_KEY 256                    /* bytes of a storage key */
#define MRW_PKL_MAX_NAME 4096                  /* bytes of a (flattened) tensor name */
#define MRW_PKL_MAX_NEST 16                    /* dicts within dicts */
#define MRW_PKL_MAX_TENSORS (1 << 18)          /* tensors in the result (big models have thousands) */
#define MRW_PKL_MAX_NAME_BYTES (64 << 20)      /* bytes of all tensor names together */
#define MRW_PKL_MAX_VISITS (1 << 22)           /* dict entries visited while flattening (shared sub-dicts) */

typedef struct {
    char *name;             /* NUL-terminated, owned by the result */
    const char *key;        /* storage key, points into the pickle bytes; not NUL-terminated */
    size_t key_len;
    mrw_dtype dtype;        /* of the storage */
    int64_t storage_numel;  /* elements of the storage, as the persistent id declares */
    int64_t offset;         /* storage_offset, in elements */
    int ndim;
    int64_t size[MRW_MAX_DIMS];
    int64_t stride[MRW_MAX_DIMS]; /* in elements */
} mrw_pkl_tensor;

typedef struct {
    mrw_pkl_tensor *tensors;
    int n;
    void *arena_; /* internal */
} mrw_pkl_state_dict;

/* Unpickles buf[0..len) (which must outlive the result: keys point into it). Error messages start with
 * "offset N:" where they concern an opcode; the caller prefixes the file and entry name. On failure *out is
 * empty and mrw_pkl_free is still safe. */
mrw_status mrw_pkl_load_state_dict(const void *buf, size_t len, mrw_pkl_state_dict *out, mrw_error *err);
void mrw_pkl_free(mrw_pkl_state_dict *sd);

/* The pickle opcode's name ("GLOBAL"), or NULL for a byte that is no opcode. */
const char *mrw_pkl_opcode_name(uint8_t op);

#endif
