/* Matrix-vector kernels with prepared low-precision activations (the fast decode path; `exact` contexts use
 * the f32-activation kernels in matvec.c instead): q8_0 / q4_0 weights with 8-bit activations, and bf16
 * weights with bf16 activations.
 *
 * bf16: the inputs are rounded to bf16 (nearest even) exactly as the bf16 GEMM packs them, so decode and
 * prefill see the same activations, and each 32 weights take one vdpbf16ps. With f32 activations the
 * kernel needs a widen, a shift and an FMA per 16 weights (~8 cycles per 64-byte line on Zen 4), about the
 * time one core's share of DRAM bandwidth delivers the line, so it ran at 57-82% of the measured bandwidth.
 *
 * The input rows are quantized once per call per 32-element block exactly as the int8 GEMM does
 * (d = amax/127, q = round-half-away(x/d)), so decode and prefill see the same activations. Products use
 * vpdpbusd (u8 x s8 -> s32) on 256-bit vectors, which Zen 4 runs single-pumped:
 *   q4_0: two blocks per vector. The weights' nibbles q in [0,15] are the unsigned operand, the activations
 *         the signed one; the "-8" of q4_0 becomes -8·Σx_q, which starts the integer accumulator. x is stored
 *         per block pair as [lo halves of both blocks | hi halves of both blocks] to match the nibble layout.
 *   q8_0: one block per vector with the abs/sign trick (|w| unsigned, x·sign(w) signed).
 * The float accumulator takes one FMA per block (pair) with the product of the two scales. */
#include <string.h>

#include "kernels/cpu/matmul_impl.h"
#include "tensor/dtype.h"

#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__F16C__)
#include <immintrin.h>
#define MRW_QACT 1
#endif

#ifdef MRW_QACT

static inline void store_y(float *y, float v, int acc) { *y = acc ? *y + v : v; }

size_t mrw_qx_bytes(int tn, int K) {
    const int nb = K / MRW_QK, np = (nb + 1) / 2;
    /* xq: tn x np x 64 bytes; dx: tn x np x 8 floats; corr: tn x np x 8 ints.
     * bf16 inputs (tn x K x 2 bytes = tn x nb x 64) fit in the same size. */
    return (size_t)tn * np * (64 + 32 + 32) + 64;
}

#if defined(__AVX512BF16__)
#define MRW_BF16ACT 1
/* Inputs rounded to bf16, [tn][K] (K a multiple of 32). */
static void prepare_bf16(mrw_qx *qx, uint8_t *p, const float *X, int ldx, int tn, int K) {
    uint16_t *xb = (uint16_t *)p;
    qx->xb = xb;
    for (int t = 0; t < tn; t++)
        for (int k = 0; k < K; k += 32) {
            const float *x = X + (size_t)t * ldx + k;
            _mm512_storeu_si512(xb + (size_t)t * K + k,
                                (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x)));
        }
}

/* One row of bf16 weights against tn prepared inputs; two accumulators per input hide the vdpbf16ps
 * latency for one input. */
static void rows_bf16(const mrw_mat *W, int r0, int r1, const mrw_qx *qx, float *Y, int ldy, int acc) {
    const int K = W->cols, tn = qx->tn;
    for (int o = r0; o < r1; o++) {
        const uint16_t *w = (const uint16_t *)((const uint8_t *)W->data + (size_t)o * W->row_bytes);
        if (tn == 1) {
            __m512 s0 = _mm512_setzero_ps(), s1 = s0;
            int k = 0;
            for (; k + 64 <= K; k += 64) {
                s0 = _mm512_dpbf16_ps(s0, (__m512bh)_mm512_loadu_si512(w + k), (__m512bh)_mm512_loadu_si512(qx->xb + k));
                s1 = _mm512_dpbf16_ps(s1, (__m512bh)_mm512_loadu_si512(w + k + 32),
                                      (__m512bh)_mm512_loadu_si512(qx->xb + k + 32));
            }
            if (k < K)
                s0 = _mm512_dpbf16_ps(s0, (__m512bh)_mm512_loadu_si512(w + k), (__m512bh)_mm512_loadu_si512(qx->xb + k));
            store_y(Y + o, _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)), acc);
            continue;
        }
        __m512 s[MRW_MV_MAXT];
        for (int t = 0; t < MRW_MV_MAXT; t++) s[t] = _mm512_setzero_ps();
        for (int k = 0; k < K; k += 32) {
            const __m512bh a = (__m512bh)_mm512_loadu_si512(w + k);
            for (int t = 0; t < tn; t++)
                s[t] = _mm512_dpbf16_ps(s[t], a, (__m512bh)_mm512_loadu_si512(qx->xb + (size_t)t * K + k));
        }
        for (int t = 0; t < tn; t++) store_y(Y + (size_t)t * ldy + o, _mm512_reduce_add_ps(s[t]), acc);
    }
}
#endif

/* One block of 32 floats to 32 int8 (round half away from zero); returns the scale, writes Σq. */
static float quant_block(const float *x, int8_t *q, int32_t *sum) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 lo = _mm512_loadu_ps(x), hi = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, lo), _mm512_andnot_ps(sign, hi)));
    const float d = amax / 127.0f;
    const __m512 id = _mm512_set1_ps(d != 0 ? 1.0f / d : 0.0f), half = _mm512_set1_ps(0.5f);
    const __m512i qlo = _mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(lo, id), _mm512_or_ps(_mm512_and_ps(lo, sign), half)));
    const __m512i qhi = _mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(hi, id), _mm512_or_ps(_mm512_and_ps(hi, sign), half)));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(qlo));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(qhi));
    *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
    return d;
}

void mrw_qx_prepare(mrw_qx *qx, void *mem, mrw_dtype wdt, const float *X, int ldx, int tn, int K) {
    const int nb = K / MRW_QK, np = (nb + 1) / 2;
    qx->tn = tn;
    qx->K = K;
    qx->dtype = wdt;
    uint8_t *p = (uint8_t *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
#ifdef MRW_BF16ACT
    if (wdt == MRW_DT_BF16) {
        prepare_bf16(qx, p, X, ldx, tn, K);
        return;
    }
#endif
    qx->xq = (int8_t *)p;
    qx->dx = (float *)(p + (size_t)tn * np * 64);
    qx->corr = (int32_t *)(p + (size_t)tn * np * 96);
    for (int t = 0; t < tn; t++) {
        const float *x = X + (size_t)t * ldx;
        int8_t *xq = qx->xq + (size_t)t * np * 64;
        float *dx = qx->dx + (size_t)t * np * 8;
        int32_t *corr = qx->corr + (size_t)t * np * 8;
        memset(xq, 0, (size_t)np * 64);
        memset(corr, 0, (size_t)np * 8 * sizeof *corr);
        for (int b = 0; b < nb; b++) {
            int8_t q[32];
            int32_t s;
            const float d = quant_block(x + (size_t)b * MRW_QK, q, &s);
            if (wdt == MRW_DT_Q8_0) { /* natural order; dx per block */
                memcpy(xq + (size_t)b * 32, q, 32);
                dx[b] = d;
            } else { /* q4_0: pair layout, dx and -8·Σq per half */
                const int pr = b / 2, half = b % 2;
                memcpy(xq + (size_t)pr * 64 + half * 16, q, 16);
                memcpy(xq + (size_t)pr * 64 + 32 + half * 16, q + 16, 16);
                for (int l = 0; l < 4; l++) dx[pr * 8 + half * 4 + l] = d;
                corr[pr * 8 + half * 4] = -8 * s;
            }
        }
        if (wdt == MRW_DT_Q4_0 && nb % 2) /* the missing half of the last pair contributes nothing */
            for (int l = 0; l < 4; l++) dx[(np - 1) * 8 + 4 + l] = 0;
    }
}

/* Scales of two q4_0 blocks as [d0 x4, d1 x4]. */
static inline __m256 pair_scale(uint16_t d0, uint16_t d1) {
    const __m128i t = _mm_cvtsi32_si128((int)((uint32_t)d0 | ((uint32_t)d1 << 16)));
    const __m128i u = _mm_unpacklo_epi16(t, t);
    return _mm256_cvtph_ps(_mm_unpacklo_epi32(u, u));
}

static inline float hsum8(__m256 f) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps(f, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}


/* Σ over one pair of q4_0 blocks (b, b+1; b+1 absent when `two` is 0) with input t's activations, scaled. */
static inline __m256 q4_pair(const mrw_block_q4_0 *bl, int two, const int8_t *xq, const int32_t *corr, const float *dx) {
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m128i w1 = two ? _mm_loadu_si128((const __m128i *)bl[1].qs) : _mm_setzero_si128();
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)bl[0].qs)), w1, 1);
    const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    __m256i i = _mm256_load_si256((const __m256i *)corr);
    i = _mm256_dpbusd_epi32(i, lo, _mm256_load_si256((const __m256i *)xq));
    i = _mm256_dpbusd_epi32(i, hi, _mm256_load_si256((const __m256i *)(xq + 32)));
    const __m256 s = _mm256_mul_ps(pair_scale(bl[0].d, two ? bl[1].d : 0), _mm256_load_ps(dx));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(i), s);
}

/* One input: no loop over inputs, so the accumulators stay in registers (1.5-1.8x faster than the general
 * form below on short rows); two pairs per step. */
static void rows_q4_one(const mrw_mat *W, int r0, int r1, const mrw_qx *qx, float *Y, int acc) {
    const int nb = W->cols / MRW_QK, np = (nb + 1) / 2;
    for (int o = r0; o < r1; o++) {
        const mrw_block_q4_0 *bl = (const mrw_block_q4_0 *)((const uint8_t *)W->data + (size_t)o * W->row_bytes);
        __m256 f0 = _mm256_setzero_ps(), f1 = f0;
        int p = 0;
        for (; p + 2 <= np - 1 || (p + 2 <= np && nb % 2 == 0); p += 2) {
            f0 = _mm256_add_ps(f0, q4_pair(bl + 2 * p, 1, qx->xq + (size_t)p * 64, qx->corr + p * 8, qx->dx + p * 8));
            f1 = _mm256_add_ps(f1, q4_pair(bl + 2 * p + 2, 1, qx->xq + (size_t)(p + 1) * 64, qx->corr + (p + 1) * 8,
                                           qx->dx + (p + 1) * 8));
        }
        for (; p < np; p++)
            f0 = _mm256_add_ps(f0, q4_pair(bl + 2 * p, 2 * p + 1 < nb, qx->xq + (size_t)p * 64, qx->corr + p * 8, qx->dx + p * 8));
        store_y(Y + o, hsum8(_mm256_add_ps(f0, f1)), acc);
    }
}

static void rows_q4(const mrw_mat *W, int r0, int r1, const mrw_qx *qx, float *Y, int ldy, int acc) {
    if (qx->tn == 1) {
        rows_q4_one(W, r0, r1, qx, Y, acc);
        return;
    }
    const int nb = W->cols / MRW_QK, np = (nb + 1) / 2, tn = qx->tn;
    for (int o = r0; o < r1; o++) {
        const mrw_block_q4_0 *bl = (const mrw_block_q4_0 *)((const uint8_t *)W->data + (size_t)o * W->row_bytes);
        __m256 f[MRW_MV_MAXT];
        for (int t = 0; t < MRW_MV_MAXT; t++) f[t] = _mm256_setzero_ps();
        for (int p = 0; p < np; p++) {
            const int two = 2 * p + 1 < nb;
            for (int t = 0; t < tn; t++) {
                const size_t q = (size_t)t * np + p;
                f[t] = _mm256_add_ps(f[t], q4_pair(bl + 2 * p, two, qx->xq + q * 64, qx->corr + q * 8, qx->dx + q * 8));
            }
        }
        for (int t = 0; t < tn; t++) store_y(Y + (size_t)t * ldy + o, hsum8(f[t]), acc);
    }
}

/* One q8_0 block with input activations xq (32 s8) and scale dw·dx. */
static inline __m256 q8_block(const mrw_block_q8_0 *b, const int8_t *xq, float dx) {
    const __m256i w = _mm256_loadu_si256((const __m256i *)b->qs);
    const __m256i x = _mm256_load_si256((const __m256i *)xq);
    const __m256i i = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(i), _mm256_set1_ps(_cvtsh_ss(b->d) * dx));
}

static void rows_q8(const mrw_mat *W, int r0, int r1, const mrw_qx *qx, float *Y, int ldy, int acc) {
    const int nb = W->cols / MRW_QK, np = (nb + 1) / 2, tn = qx->tn;
    for (int o = r0; o < r1; o++) {
        const mrw_block_q8_0 *bl = (const mrw_block_q8_0 *)((const uint8_t *)W->data + (size_t)o * W->row_bytes);
        if (tn == 1) {
            __m256 f0 = _mm256_setzero_ps(), f1 = f0;
            int b = 0;
            for (; b + 2 <= nb; b += 2) {
                f0 = _mm256_add_ps(f0, q8_block(bl + b, qx->xq + (size_t)b * 32, qx->dx[b]));
                f1 = _mm256_add_ps(f1, q8_block(bl + b + 1, qx->xq + (size_t)(b + 1) * 32, qx->dx[b + 1]));
            }
            if (b < nb) f0 = _mm256_add_ps(f0, q8_block(bl + b, qx->xq + (size_t)b * 32, qx->dx[b]));
            store_y(Y + o, hsum8(_mm256_add_ps(f0, f1)), acc);
            continue;
        }
        __m256 f[MRW_MV_MAXT];
        for (int t = 0; t < MRW_MV_MAXT; t++) f[t] = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++)
            for (int t = 0; t < tn; t++)
                f[t] = _mm256_add_ps(f[t], q8_block(bl + b, qx->xq + (size_t)t * np * 64 + (size_t)b * 32, qx->dx[(size_t)t * np * 8 + b]));
        for (int t = 0; t < tn; t++) store_y(Y + (size_t)t * ldy + o, hsum8(f[t]), acc);
    }
}

int mrw_qx_supported(mrw_dtype t) {
#ifdef MRW_BF16ACT
    if (t == MRW_DT_BF16) return 1;
#endif
    return t == MRW_DT_Q8_0 || t == MRW_DT_Q4_0;
}

void mrw_matvec_qx_rows(const mrw_mat *W, int r0, int r1, const mrw_qx *qx, float *Y, int ldy, int acc) {
    if (r0 >= r1) return;
#ifdef MRW_BF16ACT
    if (W->dtype == MRW_DT_BF16) {
        rows_bf16(W, r0, r1, qx, Y, ldy, acc);
        return;
    }
#endif
    if (W->dtype == MRW_DT_Q4_0) rows_q4(W, r0, r1, qx, Y, ldy, acc);
    else rows_q8(W, r0, r1, qx, Y, ldy, acc);
}

#else

size_t mrw_qx_bytes(int tn, int K) { (void)tn; (void)K; return 0; }
void mrw_qx_prepare(mrw_qx *qx, void *mem, mrw_dtype wdt, const float *X, int ldx, int tn, int K) {
    (void)qx; (void)mem; (void)wdt; (void)X; (void)ldx; (void)tn; (void)K;
}
int mrw_qx_supported(mrw_dtype t) { (void)t; return 0; }
void mrw_matvec_qx_rows(const mrw_mat *W, int r0, int r1, const mrw_qx *qx, float *Y, int ldy, int acc) {
    (void)W; (void)r0; (void)r1; (void)qx; (void)Y; (void)ldy; (void)acc;
}

#endif
