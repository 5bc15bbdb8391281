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
static inline __m512 load16_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
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

/* Float weights: 4 rows at a time share each input load; the tail of a row uses masked loads. */
#define MV_FLOAT_KERNEL(NAME, TYPE, LOAD, LOADM)                                                              \
    static void NAME(const mrw_mat *W, int r0, int r1, const float *X, int ldx, float *Y, int ldy, int tn,    \
                     int acc) {                                                                               \
        const int K = W->cols, K16 = K & ~15;                                                                 \
        const __mmask16 tail = (__mmask16)((1u << (K - K16)) - 1);                                           \
        int o = r0;                                                                                           \
        for (; o + 4 <= r1; o += 4) {                                                                         \
            const TYPE *w0 = (const TYPE *)((const uint8_t *)W->data + (size_t)o * W->row_bytes);             \
            const TYPE *w1 = (const TYPE *)((const uint8_t *)w0 + W->row_bytes);                              \
            const TYPE *w2 = (const TYPE *)((const uint8_t *)w1 + W->row_bytes);                              \
            const TYPE *w3 = (const TYPE *)((const uint8_t *)w2 + W->row_bytes);                              \
            __m512 s[4][MRW_MV_MAXT];                                                                         \
            for (int r = 0; r < 4; r++)                                                                       \
                for (int t = 0; t < MRW_MV_MAXT; t++) s[r][t] = _mm512_setzero_ps();                          \
            for (int c = 0; c < K16; c += 16) {                                                               \
                __m512 a0 = LOAD(w0 + c), a1 = LOAD(w1 + c), a2 = LOAD(w2 + c), a3 = LOAD(w3 + c);           \
                for (int t = 0; t < tn; t++) {                                                                \
                    __m512 x = _mm512_loadu_ps(X + (size_t)t * ldx + c);                                      \
                    s[0][t] = _mm512_fmadd_ps(a0, x, s[0][t]);                                                \
                    s[1][t] = _mm512_fmadd_ps(a1, x, s[1][t]);                                                \
                    s[2][t] = _mm512_fmadd_ps(a2, x, s[2][t]);                                                \
                    s[3][t] = _mm512_fmadd_ps(a3, x, s[3][t]);                                                \
                }                                                                                             \
            }                                                                                                 \
            if (tail) {                                                                                       \
                __m512 a0 = LOADM(w0 + K16, tail), a1 = LOADM(w1 + K16, tail);                                \
                __m512 a2 = LOADM(w2 + K16, tail), a3 = LOADM(w3 + K16, tail);                                \
                for (int t = 0; t < tn; t++) {                                                                \
                    __m512 x = _mm512_maskz_loadu_ps(tail, X + (size_t)t * ldx + K16);                        \
                    s[0][t] = _mm512_fmadd_ps(a0, x, s[0][t]);                                                \
                    s[1][t] = _mm512_fmadd_ps(a1, x, s[1][t]);                                                \
                    s[2][t] = _mm512_fmadd_ps(a2, x, s[2][t]);                                                \
                    s[3][t] = _mm512_fmadd_ps(a3, x, s[3][t]);                                                \
                }                                                                                             \
            }                                                                                                 \
            for (int t = 0; t < tn; t++)                                                                      \
                for (int r = 0; r < 4; r++) store_y(Y, ldy, o + r, t, _mm512_reduce_add_ps(s[r][t]), acc);    \
        }                                                                                                     \
        for (; o < r1; o++) {                                                                                 \
            const TYPE *w0 = (const TYPE *)((const uint8_t *)W->data + (size_t)o * W->row_bytes);             \
            for (int t = 0; t < tn; t++) {                                                                    \
                const float *x = X + (size_t)t * ldx;                                                         \
                __m512 s0 = _mm512_setzero_ps();                                                              \
                for (int c = 0; c < K16; c += 16) s0 = _mm512_fmadd_ps(LOAD(w0 + c), _mm512_loadu_ps(x + c), s0); \
                if (tail) s0 = _mm512_fmadd_ps(LOADM(w0 + K16, tail), _mm512_maskz_loadu_ps(tail, x + K16), s0); \
                store_y(Y, ldy, o, t, _mm512_reduce_add_ps(s0), acc);                                         \
            }                                                                                                 \
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
static inline void q4_block(const mrw_block_q4_0 *b, __m512 *lo, __m512 *hi) {
    __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)b->qs));
    const __m512i eight = _mm512_set1_epi32(8);
    *lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(q, _mm512_set1_epi32(15)), eight));
    *hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(q, 4), eight));
}

/* Quantized weights: per block, dot the unscaled weights with the input, then scale by the block's d. Two
 * rows at a time. */
#define MV_QUANT_KERNEL(NAME, BLOCK, UNPACK)                                                                  \
    static void NAME(const mrw_mat *W, int r0, int r1, const float *X, int ldx, float *Y, int ldy, int tn,    \
                     int acc) {                                                                               \
        const int nb = W->cols / MRW_QK;                                                                      \
        int o = r0;                                                                                           \
        for (; o + 2 <= r1; o += 2) {                                                                         \
            const BLOCK *b0 = (const BLOCK *)((const uint8_t *)W->data + (size_t)o * W->row_bytes);           \
            const BLOCK *b1 = (const BLOCK *)((const uint8_t *)b0 + W->row_bytes);                            \
            __m512 s0[MRW_MV_MAXT], s1[MRW_MV_MAXT];                                                          \
            for (int t = 0; t < MRW_MV_MAXT; t++) s0[t] = s1[t] = _mm512_setzero_ps();                        \
            for (int b = 0; b < nb; b++) {                                                                    \
                __m512 l0, h0, l1, h1;                                                                        \
                UNPACK(b0 + b, &l0, &h0);                                                                     \
                UNPACK(b1 + b, &l1, &h1);                                                                     \
                __m512 d0 = _mm512_set1_ps(_cvtsh_ss(b0[b].d)), d1 = _mm512_set1_ps(_cvtsh_ss(b1[b].d)); \
                for (int t = 0; t < tn; t++) {                                                                \
                    const float *x = X + (size_t)t * ldx + b * MRW_QK;                                        \
                    __m512 xl = _mm512_loadu_ps(x), xh = _mm512_loadu_ps(x + 16);                             \
                    s0[t] = _mm512_fmadd_ps(_mm512_fmadd_ps(h0, xh, _mm512_mul_ps(l0, xl)), d0, s0[t]);       \
                    s1[t] = _mm512_fmadd_ps(_mm512_fmadd_ps(h1, xh, _mm512_mul_ps(l1, xl)), d1, s1[t]);       \
                }                                                                                             \
            }                                                                                                 \
            for (int t = 0; t < tn; t++) {                                                                    \
                store_y(Y, ldy, o, t, _mm512_reduce_add_ps(s0[t]), acc);                                      \
                store_y(Y, ldy, o + 1, t, _mm512_reduce_add_ps(s1[t]), acc);                                  \
            }                                                                                                 \
        }                                                                                                     \
        if (o < r1) matvec_generic(W, o, r1, X, ldx, Y, ldy, tn, acc);                                        \
    }

MV_QUANT_KERNEL(matvec_q8_0, mrw_block_q8_0, q8_block)
MV_QUANT_KERNEL(matvec_q4_0, mrw_block_q4_0, q4_block)
#endif

void mrw_matvec_rows(const mrw_mat *W, int r0, int r1, const float *X, int ldx, float *Y, int ldy, int tn,
                     int acc) {
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
