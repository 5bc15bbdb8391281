/* Element types: sizes, conversions between f32 and f16/bf16, and the Q8_0/Q4_0 block quantizers.
 * Rows of quantized tensors are sequences of 32-element blocks (GGUF layout). */
#ifndef MRW_TENSOR_DTYPE_H
#define MRW_TENSOR_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "modrwkv.h"

#define MRW_QK 32 /* elements per quantization block */

typedef struct {
    uint16_t d;            /* f16 scale */
    int8_t qs[MRW_QK];
} mrw_block_q8_0;

typedef struct {
    uint16_t d;              /* f16 scale */
    uint8_t qs[MRW_QK / 2]; /* element j in the low nibble of byte j, element j+16 in the high nibble */
} mrw_block_q4_0;

/* Elements per storage block (32 for quantized types, 1 otherwise) and bytes per block. */
int mrw_dtype_block_elems(mrw_dtype t);
size_t mrw_dtype_block_bytes(mrw_dtype t);
int mrw_dtype_is_quant(mrw_dtype t);
int mrw_dtype_is_float(mrw_dtype t); /* f32, f16, bf16, f64 */
/* Bytes of one row of n elements, or 0 if n is not a whole number of blocks. */
size_t mrw_dtype_row_bytes(mrw_dtype t, int64_t n);

static inline float mrw_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t mrw_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float mrw_f16_to_f32(uint16_t h);
uint16_t mrw_f32_to_f16(float f); /* round to nearest even, overflow to inf */

/* Converts n elements of type t at src (n a multiple of the block size for quantized types) to f32. */
void mrw_to_f32(mrw_dtype t, const void *src, float *dst, int64_t n);
/* Converts n f32 values to type t (float or quantized types; n a multiple of 32 for quantized). Returns 0,
 * or -1 for a type that cannot be produced. */
int mrw_from_f32(mrw_dtype t, const float *src, void *dst, int64_t n);

void mrw_quantize_q8_0(const float *x, mrw_block_q8_0 *y, int64_t n);
void mrw_quantize_q4_0(const float *x, mrw_block_q4_0 *y, int64_t n);
void mrw_dequantize_q8_0(const mrw_block_q8_0 *x, float *y, int64_t n);
void mrw_dequantize_q4_0(const mrw_block_q4_0 *x, float *y, int64_t n);

/* q4_0 rows interleaved for the 8-bit-activation decode kernel (docs/PERFORMANCE.md, "q4_0: interleaved rows"): the
 * blocks of a row go in groups of MRW_Q4I_GROUP; a group of n blocks holds their n f16 scales, then for s = 0..3 the
 * quant bytes 4s..4s+3 of each block in block order. One 64-byte load of a full group's step s thus puts block j's
 * bytes in 32-bit lane j, where vpdpbusd sums them, and the 16 scales convert with one instruction. A row keeps its
 * byte count; the last group may be partial (n < 16, same form). */
#define MRW_Q4I_GROUP 16
/* Blocks in group g of an interleaved row of nb blocks (the last group may be partial). */
static inline int mrw_q4i_group_blocks(int nb, int g) {
    return nb - g * MRW_Q4I_GROUP < MRW_Q4I_GROUP ? nb - g * MRW_Q4I_GROUP : MRW_Q4I_GROUP;
}
void mrw_q4_interleave_row(const mrw_block_q4_0 *src, uint8_t *dst, int nb);
void mrw_q4_deinterleave_row(const uint8_t *src, mrw_block_q4_0 *dst, int nb);
/* Blocks [b0, b0 + n) of an interleaved row of nb blocks in the plain layout; b0 a multiple of MRW_Q4I_GROUP and
 * b0 + n either one too or nb. */
void mrw_q4_deinterleave_blocks(const uint8_t *row, int nb, int b0, int n, mrw_block_q4_0 *dst);
/* Block i of an interleaved row of nb blocks, in the plain layout. */
void mrw_q4i_block(const uint8_t *row, int nb, int i, mrw_block_q4_0 *out);

#endif
