/* Matrix-vector kernels: stream each weight row once and dot it with up to MRW_MV_MAXT f32 inputs. The
 * weights are converted exactly to f32 in registers (no rounding of the activations), so decode results
 * match the reference up to fp32 summation order. */
#include <string.h>

#include "kernels/cpu/matmul_impl.h"
#include "tensor/dtype.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__F16C__)
#include <immintrin.h>
#define MRW_MV_AVX512 1
#endif

static inline void store_y(float *Y, int ldy, int o, int t, float v, int acc) {
    float *y = Y + (size_t)t * ldy + o;
    *y = acc ? *y + v : v;
}

/* Portable fallback: dequantize one row at a time. */
static void matvec_generic(const mrw_mat *W, int r0, int r1, const float *X, int ldx, float *Y, int ldy, int tn,
                           int acc) {
    float row[4096];
    for (int o = r0; o < r1; o++) {
        float sum[MRW_MV_MAXT] = {0};
        for (int c0 = 0; c0 < W->cols; c0 += 4096) {
            int cn = W->cols - c0 < 4096 ? W->cols - c0 : 4096;
            const uint8_t *src = (const uint8_t *)W->data + (size_t)o * W->row_bytes +
                                 mrw_dtype_row_bytes(W->dtype, c0);
            mrw_to_f32(W->dtype, src, row, cn);
            for (int t = 0; t < tn; t++) {
                const float *x = X + (size_t)t * ldx + c0;
                float s = 0;
                for (int c = 0; c < cn; c++) s += row[c] * x[c];
                sum[t] += s;
            }
        }
        for (int t = 0; t < tn; t++) store_y(Y, ldy, o, t, sum[t], acc);
    }
}

#ifdef MRW_MV_AVX512
/* 16 weights of a row as f32, for the float dtypes. */
static inline __m512 load16_f32(const float *p) { return _mm512_loadu_ps(p); }
/* Two 8-wide conversions instead of one 16-wide: measured faster on Zen 4, where the 512-bit vcvtph2ps is split in
 * two anyway (docs/PERFORMANCE.md, "f16 decode"). */
static inline __m512 load16_f16(const uint16_t *p) {
    const __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    const __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8)));
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}
static inline __m512 load16_bf16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
static inline __m512 loadm_f32(const float *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
static inline __m512 loadm_f16(const uint16_t *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
static inline __m512 loadm_bf16(const uint16_t *p, __mmask16 m) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

/* Float weights, one row at a time: a single sequential stream per thread is what the hardware prefetchers
 * follow best (interleaving several rows measured 2.5x slower on DRAM-sized matrices). For one input, four
 * accumulators hide the FMA latency; with more inputs each has its own. */
#define MV_FLOAT_KERNEL(NAME, TYPE, LOAD, LOADM)                                                              \
    static void NAME(const mrw_mat *W, int r0, int r1, const float *X, int ldx, float *Y, int ldy, int tn,    \
                     int acc) {                                                                               \
        const int K = W->cols, K16 = K & ~15, K64 = K & ~63;                                                  \
        const __mmask16 tail = (__mmask16)((1u << (K - K16)) - 1);                                           \
        for (int o = r0; o < r1; o++) {                                                                       \
            const TYPE *w = (const TYPE *)((const uint8_t *)W->data + (size_t)o * W->row_bytes);              \
            if (tn == 1) {                                                                                    \
                __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                                   \
                int c = 0;                                                                                    \
                for (; c < K64; c += 64) {                                                                    \
                    s0 = _mm512_fmadd_ps(LOAD(w + c), _mm512_loadu_ps(X + c), s0);                            \
                    s1 = _mm512_fmadd_ps(LOAD(w + c + 16), _mm512_loadu_ps(X + c + 16), s1);                  \
                    s2 = _mm512_fmadd_ps(LOAD(w + c + 32), _mm512_loadu_ps(X + c + 32), s2);                  \
                    s3 = _mm512_fmadd_ps(LOAD(w + c + 48), _mm512_loadu_ps(X + c + 48), s3);                  \
                }                                                                                             \
                for (; c < K16; c += 16) s0 = _mm512_fmadd_ps(LOAD(w + c), _mm512_loadu_ps(X + c), s0);       \
                if (tail) s1 = _mm512_fmadd_ps(LOADM(w + K16, tail), _mm512_maskz_loadu_ps(tail, X + K16), s1); \
                store_y(Y, ldy, o, 0, _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3))), acc); \
                continue;                                                                                     \
            }                                                                                                 \
            __m512 s[MRW_MV_MAXT];                                                                            \
            for (int t = 0; t < MRW_MV_MAXT; t++) s[t] = _mm512_setzero_ps();                                 \
            for (int c = 0; c < K16; c += 16) {                                                               \
                const __m512 a = LOAD(w + c);                                                                 \
                for (int t = 0; t < tn; t++) s[t] = _mm512_fmadd_ps(a, _mm512_loadu_ps(X + (size_t)t * ldx + c), s[t]); \
            }                                                                                                 \
            if (tail) {                                                                                       \
                const __m512 a = LOADM(w + K16, tail);                                                        \
                for (int t = 0; t < tn; t++)                                                                  \
                    s[t] = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(tail, X + (size_t)t * ldx + K16), s[t]); \
            }                                                                                                 \
            for (int t = 0; t < tn; t++) store_y(Y, ldy, o, t, _mm512_reduce_add_ps(s[t]), acc);              \
        }                                                                                                     \
    }

MV_FLOAT_KERNEL(matvec_f32, float, load16_f32, loadm_f32)
MV_FLOAT_KERNEL(matvec_f16, uint16_t, load16_f16, loadm_f16)
MV_FLOAT_KERNEL(matvec_bf16, uint16_t, load16_bf16, loadm_bf16)

/* The 32 weights of one quantized block as two f32 vectors (elements 0..15, 16..31), unscaled. */
static inline void q8_block(const mrw_block_q8_0 *b, __m512 *lo, __m512 *hi) {
    __m256i q = _mm256_loadu_si256((const __m256i *)b->qs);
    *lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q)));
    *hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1)));
}
/* q4_0: the byte j holds elements j (low nibble) and j+16 (high nibble), value q - 8. vpermps indexes with
 * the low 4 bits of each lane only, so a 16-entry table turns a byte lane straight into (low nibble - 8),
 * and the shifted lane into (high nibble - 8): no mask, subtract or int->float conversion needed. */
static inline void q4_block(const mrw_block_q4_0 *b, __m512 *lo, __m512 *hi) {
    const __m512 table = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)b->qs));
    *lo = _mm512_permutexvar_ps(q, table);
    *hi = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);
}

/* The f16 block scale broadcast to all lanes. */
static inline __m512 block_scale(uint16_t d) { return _mm512_cvtph_ps(_mm256_set1_epi16((short)d)); }

/* Quantized weights, one row at a time: per block, dot the unscaled weights with the input, then scale by
 * the block's d. Two blocks per step into separate accumulators hide the FMA latency (indexing one
 * accumulator array by block parity would put it on the stack); one input gets its own loop. */
#define MV_QUANT_KERNEL(NAME, BLOCK, UNPACK)                                                                  \
    static inline __m512 NAME##_dot(const BLOCK *blk, const float *x) {                                       \
        __m512 lo, hi;                                                                                        \
        UNPACK(blk, &lo, &hi);                                                                                \
        return _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(x)));          \
    }                                                                                                         \
    static void NAME(const mrw_mat *W, int r0, int r1, const float *X, int ldx, float *Y, int ldy, int tn,    \
                     int acc) {                                                                               \
        const int nb = W->cols / MRW_QK;                                                                      \
        for (int o = r0; o < r1; o++) {                                                                       \
            const BLOCK *bl = (const BLOCK *)((const uint8_t *)W->data + (size_t)o * W->row_bytes);           \
            if (tn == 1) {                                                                                    \
                __m512 s0 = _mm512_setzero_ps(), s1 = s0;                                                     \
                int b = 0;                                                                                    \
                for (; b + 2 <= nb; b += 2) {                                                                 \
                    s0 = _mm512_fmadd_ps(NAME##_dot(bl + b, X + b * MRW_QK), block_scale(bl[b].d), s0);       \
                    s1 = _mm512_fmadd_ps(NAME##_dot(bl + b + 1, X + (b + 1) * MRW_QK), block_scale(bl[b + 1].d), s1); \
                }                                                                                             \
                if (b < nb) s0 = _mm512_fmadd_ps(NAME##_dot(bl + b, X + b * MRW_QK), block_scale(bl[b].d), s0); \
                store_y(Y, ldy, o, 0, _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)), acc);                     \
                continue;                                                                                     \
            }                                                                                                 \
            __m512 s[MRW_MV_MAXT];                                                                            \
            for (int t = 0; t < MRW_MV_MAXT; t++) s[t] = _mm512_setzero_ps();                                 \
            for (int b = 0; b < nb; b++) {                                                                    \
                __m512 lo, hi;                                                                                \
                UNPACK(bl + b, &lo, &hi);                                                                     \
                const __m512 d = block_scale(bl[b].d);                                                        \
                for (int t = 0; t < tn; t++) {                                                                \
                    const float *x = X + (size_t)t * ldx + b * MRW_QK;                                        \
                    const __m512 p = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(x))); \
                    s[t] = _mm512_fmadd_ps(p, d, s[t]);                                                       \
                }                                                                                             \
            }                                                                                                 \
            for (int t = 0; t < tn; t++) store_y(Y, ldy, o, t, _mm512_reduce_add_ps(s[t]), acc);              \
        }                                                                                                     \
    }

MV_QUANT_KERNEL(matvec_q8_0, mrw_block_q8_0, q8_block)
MV_QUANT_KERNEL(matvec_q4_0, mrw_block_q4_0, q4_block)
#endif

/* Interleaved q4_0 rows (made for the 8-bit-activation kernel) back in plain blocks, 256 at a time on the stack
 * (PIECE is a multiple of MRW_Q4I_GROUP, so pieces hold whole groups). */
static void matvec_q4_interleaved(const mrw_mat *W, int r0, int r1, const float *X, int ldx, float *Y, int ldy, int tn,
                                  int acc) {
    enum { PIECE = 256 };
    mrw_block_q4_0 buf[PIECE];
    const int nb = W->cols / MRW_QK;
    for (int o = r0; o < r1; o++) {
        const uint8_t *row = (const uint8_t *)W->data + (size_t)o * W->row_bytes;
        for (int b0 = 0; b0 < nb; b0 += PIECE) {
            const int n = nb - b0 < PIECE ? nb - b0 : PIECE;
            mrw_q4_deinterleave_blocks(row, nb, b0, n, buf);
            mrw_mat piece;
            mrw_mat_init(&piece, MRW_DT_Q4_0, 1, n * MRW_QK, buf);
            mrw_matvec_rows(&piece, 0, 1, X + (size_t)b0 * MRW_QK, ldx, Y + o, ldy, tn, acc || b0 > 0);
        }
    }
}

void mrw_matvec_rows(const mrw_mat *W, int r0, int r1, const float *X, int ldx, float *Y, int ldy, int tn,
                     int acc) {
    if (W->interleaved) {
        matvec_q4_interleaved(W, r0, r1, X, ldx, Y, ldy, tn, acc);
        return;
    }
#ifdef MRW_MV_AVX512
    switch (W->dtype) {
    case MRW_DT_F32: matvec_f32(W, r0, r1, X, ldx, Y, ldy, tn, acc); return;
    case MRW_DT_F16: matvec_f16(W, r0, r1, X, ldx, Y, ldy, tn, acc); return;
    case MRW_DT_BF16: matvec_bf16(W, r0, r1, X, ldx, Y, ldy, tn, acc); return;
    case MRW_DT_Q8_0: matvec_q8_0(W, r0, r1, X, ldx, Y, ldy, tn, acc); return;
    case MRW_DT_Q4_0: matvec_q4_0(W, r0, r1, X, ldx, Y, ldy, tn, acc); return;
    default: break;
    }
#endif
    matvec_generic(W, r0, r1, X, ldx, Y, ldy, tn, acc);
}
