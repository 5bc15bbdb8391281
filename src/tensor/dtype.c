#include "tensor/dtype.h"

#include <math.h>

static const struct {
    const char *name;
    int block_elems;
    size_t block_bytes;
} k_types[MRW_DT_COUNT] = {
    [MRW_DT_F32] = {"f32", 1, 4},
    [MRW_DT_F16] = {"f16", 1, 2},
    [MRW_DT_BF16] = {"bf16", 1, 2},
    [MRW_DT_Q8_0] = {"q8_0", MRW_QK, sizeof(mrw_block_q8_0)},
    [MRW_DT_Q4_0] = {"q4_0", MRW_QK, sizeof(mrw_block_q4_0)},
    [MRW_DT_F64] = {"f64", 1, 8},
    [MRW_DT_I64] = {"i64", 1, 8},
    [MRW_DT_I32] = {"i32", 1, 4},
    [MRW_DT_I16] = {"i16", 1, 2},
    [MRW_DT_I8] = {"i8", 1, 1},
    [MRW_DT_U8] = {"u8", 1, 1},
    [MRW_DT_BOOL] = {"bool", 1, 1},
};

_Static_assert(sizeof(mrw_block_q8_0) == 34, "q8_0 block layout");
_Static_assert(sizeof(mrw_block_q4_0) == 18, "q4_0 block layout");

const char *mrw_dtype_name(mrw_dtype t) {
    if (t == MRW_DT_AUTO) return "auto";
    if ((int)t < 0 || t >= MRW_DT_COUNT) return "?";
    return k_types[t].name;
}

int mrw_dtype_parse(const char *name, mrw_dtype *out) {
    if (!name) return -1;
    if (!strcmp(name, "auto")) { *out = MRW_DT_AUTO; return 0; }
    for (int i = 0; i < MRW_DT_COUNT; i++)
        if (!strcmp(name, k_types[i].name)) { *out = (mrw_dtype)i; return 0; }
    return -1;
}

int mrw_dtype_block_elems(mrw_dtype t) { return ((int)t >= 0 && t < MRW_DT_COUNT) ? k_types[t].block_elems : 0; }
size_t mrw_dtype_block_bytes(mrw_dtype t) { return ((int)t >= 0 && t < MRW_DT_COUNT) ? k_types[t].block_bytes : 0; }
int mrw_dtype_is_quant(mrw_dtype t) { return t == MRW_DT_Q8_0 || t == MRW_DT_Q4_0; }
int mrw_dtype_is_float(mrw_dtype t) {
    return t == MRW_DT_F32 || t == MRW_DT_F16 || t == MRW_DT_BF16 || t == MRW_DT_F64;
}

size_t mrw_dtype_row_bytes(mrw_dtype t, int64_t n) {
    int be = mrw_dtype_block_elems(t);
    if (be <= 0 || n < 0 || n % be) return 0;
    return (size_t)(n / be) * mrw_dtype_block_bytes(t);
}

/* IEEE half <-> single with round-to-nearest-even, written out so the result does not depend on compiler
 * flags; the hot paths use the hardware conversion in the kernels. */
float mrw_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t mrw_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00; /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65536: inf */
    if (a < 0x38800000u) {                      /* below the smallest normal half: subnormal or zero */
        if (a < 0x33000000u) return sign;       /* < 2^-25 rounds to 0 */
        uint32_t man = (a & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(a >> 23); /* 14..24 */
        uint32_t r = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return sign | (uint16_t)r;
    }
    uint32_t r = a - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t rem = r & 0x1fff;
    r >>= 13;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return sign | (uint16_t)r;
}

void mrw_quantize_q8_0(const float *x, mrw_block_q8_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / MRW_QK; b++) {
        const float *xb = x + b * MRW_QK;
        float amax = 0;
        for (int j = 0; j < MRW_QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = mrw_f32_to_f16(d);
        for (int j = 0; j < MRW_QK; j++) y[b].qs[j] = (int8_t)roundf(xb[j] * id);
    }
}

void mrw_quantize_q4_0(const float *x, mrw_block_q4_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / MRW_QK; b++) {
        const float *xb = x + b * MRW_QK;
        float amax = 0, max = 0; /* the element of largest magnitude, with its sign */
        for (int j = 0; j < MRW_QK; j++)
            if (fabsf(xb[j]) > amax) { amax = fabsf(xb[j]); max = xb[j]; }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = mrw_f32_to_f16(d);
        for (int j = 0; j < MRW_QK / 2; j++) {
            float v0 = xb[j] * id + 8.5f, v1 = xb[j + MRW_QK / 2] * id + 8.5f;
            int q0 = v0 < 0 ? 0 : (int)v0, q1 = v1 < 0 ? 0 : (int)v1;
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void mrw_dequantize_q8_0(const mrw_block_q8_0 *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n / MRW_QK; b++) {
        float d = mrw_f16_to_f32(x[b].d);
        for (int j = 0; j < MRW_QK; j++) y[b * MRW_QK + j] = d * (float)x[b].qs[j];
    }
}

void mrw_dequantize_q4_0(const mrw_block_q4_0 *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n / MRW_QK; b++) {
        float d = mrw_f16_to_f32(x[b].d);
        for (int j = 0; j < MRW_QK / 2; j++) {
            y[b * MRW_QK + j] = d * (float)((x[b].qs[j] & 0x0f) - 8);
            y[b * MRW_QK + j + MRW_QK / 2] = d * (float)((x[b].qs[j] >> 4) - 8);
        }
    }
}

/* Where block i's pieces lie in an interleaved row: its group's start, the group's size and its index in it. */
static const uint8_t *q4i_group(const uint8_t *row, int nb, int i, int *n, int *j) {
    const int g0 = i / MRW_Q4I_GROUP * MRW_Q4I_GROUP;
    *n = mrw_q4i_group_blocks(nb, i / MRW_Q4I_GROUP);
    *j = i - g0;
    return row + (size_t)g0 * sizeof(mrw_block_q4_0);
}

void mrw_q4i_block(const uint8_t *row, int nb, int i, mrw_block_q4_0 *out) {
    int n, j;
    const uint8_t *g = q4i_group(row, nb, i, &n, &j);
    memcpy(&out->d, g + 2 * j, 2);
    for (int s = 0; s < 4; s++) memcpy(out->qs + 4 * s, g + 2 * n + (size_t)4 * n * s + 4 * j, 4);
}

void mrw_q4_interleave_row(const mrw_block_q4_0 *src, uint8_t *dst, int nb) {
    for (int i = 0; i < nb; i++) {
        int n, j;
        uint8_t *g = (uint8_t *)q4i_group(dst, nb, i, &n, &j);
        memcpy(g + 2 * j, &src[i].d, 2);
        for (int s = 0; s < 4; s++) memcpy(g + 2 * n + (size_t)4 * n * s + 4 * j, src[i].qs + 4 * s, 4);
    }
}

/* One group of n blocks back to plain blocks; the full group's constant offsets let the copies unroll into moves
 * (the `--exact` decode kernel reads interleaved rows this way: per-block gathers made it 2.4x slower). */
static inline void q4i_group_to_blocks(const uint8_t *g, int n, mrw_block_q4_0 *dst) {
    for (int j = 0; j < n; j++) {
        memcpy(&dst[j].d, g + 2 * j, 2);
        for (int s = 0; s < 4; s++) memcpy(dst[j].qs + 4 * s, g + 2 * n + 4 * n * s + 4 * j, 4);
    }
}

void mrw_q4_deinterleave_blocks(const uint8_t *row, int nb, int b0, int n, mrw_block_q4_0 *dst) {
    for (int g0 = b0; g0 < b0 + n; g0 += MRW_Q4I_GROUP) {
        const uint8_t *g = row + (size_t)g0 * sizeof(mrw_block_q4_0);
        if (nb - g0 >= MRW_Q4I_GROUP) q4i_group_to_blocks(g, MRW_Q4I_GROUP, dst + (g0 - b0));
        else q4i_group_to_blocks(g, nb - g0, dst + (g0 - b0));
    }
}

void mrw_q4_deinterleave_row(const uint8_t *src, mrw_block_q4_0 *dst, int nb) {
    mrw_q4_deinterleave_blocks(src, nb, 0, nb, dst);
}

void mrw_to_f32(mrw_dtype t, const void *src, float *dst, int64_t n) {
    switch (t) {
    case MRW_DT_F32: memcpy(dst, src, (size_t)n * 4); break;
    case MRW_DT_F16: { const uint16_t *s = src; for (int64_t i = 0; i < n; i++) dst[i] = mrw_f16_to_f32(s[i]); } break;
    case MRW_DT_BF16: { const uint16_t *s = src; for (int64_t i = 0; i < n; i++) dst[i] = mrw_bf16_to_f32(s[i]); } break;
    case MRW_DT_F64: { const double *s = src; for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i]; } break;
    case MRW_DT_Q8_0: mrw_dequantize_q8_0(src, dst, n); break;
    case MRW_DT_Q4_0: mrw_dequantize_q4_0(src, dst, n); break;
    case MRW_DT_I64: { const int64_t *s = src; for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i]; } break;
    case MRW_DT_I32: { const int32_t *s = src; for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i]; } break;
    case MRW_DT_I16: { const int16_t *s = src; for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i]; } break;
    case MRW_DT_I8: { const int8_t *s = src; for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i]; } break;
    case MRW_DT_U8:
    case MRW_DT_BOOL: { const uint8_t *s = src; for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i]; } break;
    default: break;
    }
}

int mrw_from_f32(mrw_dtype t, const float *src, void *dst, int64_t n) {
    switch (t) {
    case MRW_DT_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case MRW_DT_F16: { uint16_t *d = dst; for (int64_t i = 0; i < n; i++) d[i] = mrw_f32_to_f16(src[i]); } return 0;
    case MRW_DT_BF16: { uint16_t *d = dst; for (int64_t i = 0; i < n; i++) d[i] = mrw_f32_to_bf16(src[i]); } return 0;
    case MRW_DT_F64: { double *d = dst; for (int64_t i = 0; i < n; i++) d[i] = src[i]; } return 0;
    case MRW_DT_Q8_0: if (n % MRW_QK) return -1; mrw_quantize_q8_0(src, dst, n); return 0;
    case MRW_DT_Q4_0: if (n % MRW_QK) return -1; mrw_quantize_q4_0(src, dst, n); return 0;
    default: return -1;
    }
}
