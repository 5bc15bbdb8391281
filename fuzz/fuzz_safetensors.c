/* libFuzzer harness for the safetensors reader: parses the input as a whole file and, when it is accepted,
 * touches every byte the reader exposed (tensor data, metadata strings), so that ASan would catch any range
 * the reader failed to bound. A rejected input must come with a message. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/tensorfile.h"

static size_t elem_size(mrw_meta_type t) {
    switch (t) {
    case MRW_MV_U8:
    case MRW_MV_I8:
    case MRW_MV_BOOL: return 1;
    case MRW_MV_U16:
    case MRW_MV_I16: return 2;
    case MRW_MV_U32:
    case MRW_MV_I32:
    case MRW_MV_F32: return 4;
    case MRW_MV_U64:
    case MRW_MV_I64:
    case MRW_MV_F64: return 8;
    default: return 0;
    }
}

static uint64_t sum_bytes(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += b[i];
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mrw_tfile *f = NULL;
    mrw_error err;
    memset(&err, 0, sizeof err);
    if (mrw_safetensors_open_mem(data, size, &f, &err) != MRW_OK) {
        if (f || !err.msg[0]) __builtin_trap();
        return 0;
    }
    volatile uint64_t sink = 0;
    for (int i = 0; i < mrw_tfile_count(f); i++) {
        const mrw_tensor_info *t = mrw_tfile_tensor(f, i);
        if (mrw_tfile_find(f, t->name) != t) __builtin_trap(); /* names are unique */
        sink += sum_bytes(t->data, t->nbytes) + strlen(t->name) + (uint64_t)mrw_tensor_numel(t);
    }
    for (int i = 0; i < mrw_tfile_meta_count(f); i++) {
        const mrw_meta *m = mrw_tfile_meta(f, i);
        sink += strlen(m->key);
        if (m->type == MRW_MV_STRING) sink += sum_bytes(m->v.s.ptr, m->v.s.len);
        if (m->type != MRW_MV_ARRAY) continue;
        if (m->elem_type == MRW_MV_STRING)
            for (uint64_t j = 0; j < m->count; j++) sink += sum_bytes(m->strs[j].ptr, m->strs[j].len);
        else
            sink += sum_bytes(m->nums, (size_t)m->count * elem_size(m->elem_type));
    }
    (void)sink;
    mrw_tfile_close(f);
    return 0;
}
