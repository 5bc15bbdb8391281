/* Matrix-vector kernels with prepared activations: the fast decode path (q8_0 / q4_0 weights with 8-bit
 * activations, bf16 weights with bf16 activations), and for interleaved q4_0 rows also the `exact` one (f32
 * activations reordered to the rows' lane order, rows_q4i_f32; other `exact` products use matvec.c).
 *
 * bf16: the inputs are rounded to bf16 (nearest even) exactly as the bf16 GEMM packs them, so decode and
 * prefill see the same activations, and each 32 weights take one vdpbf16ps. With f32 activations the
 * kernel needs a widen, a shift and an FMA per 16 weights (~8 cycles per 64-byte line on Zen 4), about the
 * time one core's share of DRAM bandwidth delivers the line, so it ran at 57-82% of the measured bandwidth.
 *
 * The input rows are quantized once per call per 32-element block exactly as the int8 GEMM does
 * (d = amax/127, q = round-half-away(x/d)), so decode and prefill see the same activations. Products use
 * vpdpbusd (u8 x s8 -> s32):
 *   q4_0: the weights' nibbles q in [0,15] are the unsigned operand, the activations the signed one; the "-8"
 *         of q4_0 becomes -8·Σx_q, which starts the integer accumulator.
 *         Interleaved rows (mrw_mat.interleaved, how a loaded model holds q4_0): sixteen blocks per step, block j
 *         in 32-bit lane j of every vector, so four 64-byte loads, eight vpdpbusd, one scale conversion and one
 *         FMA cover 512 weights with no shuffles. The inputs are stored to match (q4i_prepare). ~1.8x the
 *         plain-row kernel's rate with the weights in L2 (46 against 26 GB/s), which one core needs to keep up
 *         with its share of DRAM.
 *         Plain rows: four blocks per 512-bit step, x stored per group of four blocks (see q4_group) to match
 *         the nibble layout, with each block's scale in the four lanes that sum its products, gathered with one
 *         vpermw.
 *   q8_0: one block per 256-bit vector (which Zen 4 runs single-pumped) with the abs/sign trick (|w| unsigned,
 *         x·sign(w) signed).
 * The float accumulator takes one FMA per block (pair) with the product of the two scales. */
#include <string.h>

#include "kernels/cpu/matmul_impl.h"
#include "tensor/dtype.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__F16C__)
#include <immintrin.h>
#define MRW_QACT 1
#endif

#ifdef MRW_QACT

static inline void store_y(float *y, float v, int acc) { *y = acc ? *y + v : v; }

/* q4_0 inputs: per input, groups of four blocks of Q4G_BYTES (q4_group). */
#define Q4G_BYTES 256
static int q4_groups(int K) { return (K / MRW_QK + 3) / 4; }

/* Interleaved q4_0 inputs: per input, groups of MRW_Q4I_GROUP blocks of Q4I_BYTES (q4i_prepare), or of Q4IX_BYTES of
 * f32 inputs for the exact kernel (q4i_prepare_f32). */
#define Q4I_BYTES 640
#define Q4IX_BYTES (MRW_Q4I_GROUP * MRW_QK * 4)
static int q4i_groups(int K) { return (K / MRW_QK + MRW_Q4I_GROUP - 1) / MRW_Q4I_GROUP; }

size_t mrw_qx_bytes(int tn, int K) {
    const int nb = K / MRW_QK, np = (nb + 1) / 2;
    /* q8_0: xq tn x np x 64 bytes, dx tn x np x 8 floats (and room for as many ints); q4_0: tn x groups x 256, or
     * x 640 interleaved; bf16 inputs (tn x K x 2 bytes = tn x nb x 64) fit in the first. */
    size_t per = (size_t)np * (64 + 32 + 32);
    const size_t q4 = (size_t)q4_groups(K) * Q4G_BYTES, q4i = (size_t)q4i_groups(K) * Q4I_BYTES;
    if (q4 > per) per = q4;
    if (q4i > per) per = q4i;
    if ((size_t)q4i_groups(K) * Q4IX_BYTES > per) per = (size_t)q4i_groups(K) * Q4IX_BYTES;
    return (size_t)tn * per + 64;
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

static void prepare_q4(mrw_qx *qx, uint8_t *p, const float *X, int ldx, int tn, int K);
static void q4i_prepare(mrw_qx *qx, uint8_t *p, const float *X, int ldx, int tn, int K);
static void q4i_prepare_f32(mrw_qx *qx, uint8_t *p, const float *X, int ldx, int tn, int K);

int mrw_qx_exact_supported(const mrw_mat *W) { return W->dtype == MRW_DT_Q4_0 && W->interleaved; }

void mrw_qx_prepare(mrw_qx *qx, void *mem, const mrw_mat *W, const float *X, int ldx, int tn, int exact) {
    const mrw_dtype wdt = W->dtype;
    const int K = W->cols, nb = K / MRW_QK, np = (nb + 1) / 2;
    qx->tn = tn;
    qx->K = K;
    qx->dtype = wdt;
    qx->f32x = 0;
    uint8_t *p = (uint8_t *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
    if (exact) {
        q4i_prepare_f32(qx, p, X, ldx, tn, K);
        return;
    }
#ifdef MRW_BF16ACT
    if (wdt == MRW_DT_BF16) {
        prepare_bf16(qx, p, X, ldx, tn, K);
        return;
    }
#endif
    if (wdt == MRW_DT_Q4_0) {
        if (W->interleaved) q4i_prepare(qx, p, X, ldx, tn, K);
        else prepare_q4(qx, p, X, ldx, tn, K);
        return;
    }
    qx->xq = (int8_t *)p;
    qx->dx = (float *)(p + (size_t)tn * np * 64);
    qx->corr = NULL;
    for (int t = 0; t < tn; t++) {
        const float *x = X + (size_t)t * ldx;
        int8_t *xq = qx->xq + (size_t)t * np * 64;
        float *dx = qx->dx + (size_t)t * np * 8;
        for (int b = 0; b < nb; b++) {
            int32_t s;
            dx[b] = quant_block(x + (size_t)b * MRW_QK, xq + (size_t)b * 32, &s);
        }
    }
}

static inline float hsum8(__m256 f) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps(f, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* Four q4_0 blocks of a weight row: the nibbles as unsigned bytes, block b's low nibbles (its elements 0-15) at
 * bytes 16b..16b+15 of lo and its high nibbles (elements 16-31) at the same bytes of hi, and the four scales as
 * [d0 x4, d1 x4, d2 x4, d3 x4], matching the 32-bit lanes vpdpbusd sums them into. */
typedef struct {
    __m512i lo, hi;
    __m512 d;
} q4_group;

static inline q4_group q4_group_load(const mrw_block_q4_0 *bl, int nblk) {
    uint8_t tail[4 * sizeof(mrw_block_q4_0) + 8];
    const uint8_t *g = (const uint8_t *)bl;
    if (nblk < 4) { /* the row's last, partial group: missing blocks read as zeros (their inputs are zero too) */
        memset(tail, 0, sizeof tail);
        memcpy(tail, g, (size_t)nblk * sizeof(mrw_block_q4_0));
        g = tail;
    }
    const size_t B = sizeof(mrw_block_q4_0);
    /* the scales are 16-bit words 0, 9, 18 and 27 of the group's first 64 bytes */
    const __m512i words = _mm512_loadu_si512(g);
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(g + 2)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(g + B + 2)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(g + 2 * B + 2)), 2);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(g + 3 * B + 2)), 3);
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 27, 27, 27, 27, 18, 18, 18, 18,
                                         9, 9, 9, 9, 0, 0, 0, 0);
    q4_group q = {_mm512_and_si512(v, m4), _mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                  _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(idx, words)))};
    return q;
}

/* Σ over one group with one input's prepared group gx: [x lo 64 bytes][x hi 64][scales 16 floats][corr 16 ints]. */
static inline __m512 q4_group_dot(const q4_group *q, const uint8_t *gx, __m512 acc) {
    __m512i i = _mm512_load_si512(gx + 192);
    i = _mm512_dpbusd_epi32(i, q->lo, _mm512_load_si512(gx));
    i = _mm512_dpbusd_epi32(i, q->hi, _mm512_load_si512(gx + 64));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(q->d, _mm512_load_ps((const float *)(gx + 128))), acc);
}

/* The 8-bit inputs of the q4_0 kernels, tn rows of ng groups of `gbytes` bytes per `gblocks` blocks: each block
 * quantized as the GEMM does, then placed in its group (block j of the group) by `place`. */
typedef void (*q4_place_fn)(uint8_t *gx, int j, const int8_t *q, float d, int32_t sum);
static void prepare_groups(mrw_qx *qx, uint8_t *p, const float *X, int ldx, int tn, int K, int gblocks, size_t gbytes,
                           q4_place_fn place) {
    const int nb = K / MRW_QK, ng = (nb + gblocks - 1) / gblocks;
    qx->xq = (int8_t *)p;
    qx->dx = NULL;
    qx->corr = NULL;
    memset(p, 0, (size_t)tn * ng * gbytes);
    for (int t = 0; t < tn; t++) {
        const float *x = X + (size_t)t * ldx;
        for (int b = 0; b < nb; b++) {
            int8_t q[32];
            int32_t s;
            const float d = quant_block(x + (size_t)b * MRW_QK, q, &s);
            place(p + ((size_t)t * ng + b / gblocks) * gbytes, b % gblocks, q, d, s);
        }
    }
}

/* Plain rows: [x lo 64 bytes][x hi 64][scales 16 floats][corr 16 ints] per four blocks (q4_group_dot). */
static void place_q4(uint8_t *gx, int j, const int8_t *q, float d, int32_t s) {
    memcpy(gx + 16 * j, q, 16);
    memcpy(gx + 64 + 16 * j, q + 16, 16);
    for (int l = 0; l < 4; l++) ((float *)(gx + 128))[4 * j + l] = d;
    ((int32_t *)(gx + 192))[4 * j] = -8 * s;
}
static void prepare_q4(mrw_qx *qx, uint8_t *p, const float *X, int ldx, int tn, int K) {
    prepare_groups(qx, p, X, ldx, tn, K, 4, Q4G_BYTES, place_q4);
}

static void rows_q4(const mrw_mat *W, int r0, int r1, const mrw_qx *qx, float *Y, int ldy, int acc) {
    const int nb = W->cols / MRW_QK, ng = q4_groups(W->cols), tn = qx->tn;
    const uint8_t *xg = (const uint8_t *)qx->xq;
    for (int o = r0; o < r1; o++) {
        const mrw_block_q4_0 *bl = (const mrw_block_q4_0 *)((const uint8_t *)W->data + (size_t)o * W->row_bytes);
        if (tn == 1) { /* two accumulators hide the FMA latency */
            __m512 f0 = _mm512_setzero_ps(), f1 = f0;
            int g = 0;
            for (; g + 2 <= nb / 4; g += 2) {
                const q4_group a = q4_group_load(bl + 4 * g, 4), b = q4_group_load(bl + 4 * g + 4, 4);
                f0 = q4_group_dot(&a, xg + (size_t)g * Q4G_BYTES, f0);
                f1 = q4_group_dot(&b, xg + (size_t)(g + 1) * Q4G_BYTES, f1);
            }
            for (; g < ng; g++) {
                const q4_group a = q4_group_load(bl + 4 * g, nb - 4 * g < 4 ? nb - 4 * g : 4);
                f0 = q4_group_dot(&a, xg + (size_t)g * Q4G_BYTES, f0);
            }
            store_y(Y + o, _mm512_reduce_add_ps(_mm512_add_ps(f0, f1)), acc);
            continue;
        }
        __m512 f[MRW_MV_MAXT];
        for (int t = 0; t < MRW_MV_MAXT; t++) f[t] = _mm512_setzero_ps();
        for (int g = 0; g < ng; g++) {
            const q4_group a = q4_group_load(bl + 4 * g, nb - 4 * g < 4 ? nb - 4 * g : 4);
            for (int t = 0; t < tn; t++) f[t] = q4_group_dot(&a, xg + ((size_t)t * ng + g) * Q4G_BYTES, f[t]);
        }
        for (int t = 0; t < tn; t++) store_y(Y + (size_t)t * ldy + o, _mm512_reduce_add_ps(f[t]), acc);
    }
}

/* Interleaved rows. Input layout per group of 16 blocks (block j of the group in lane j, as in the weights):
 * [x elements 4s..4s+3 of each block, s = 0..3: 256 bytes][elements 16+4s..16+4s+3: 256][dx: 16 floats][-8·Σx_q: 16
 * ints]. Lanes of a partial group's missing blocks are zero. */
static void place_q4i(uint8_t *gx, int j, const int8_t *q, float d, int32_t s) {
    for (int st = 0; st < 4; st++) {
        memcpy(gx + 64 * st + 4 * j, q + 4 * st, 4);
        memcpy(gx + 256 + 64 * st + 4 * j, q + 16 + 4 * st, 4);
    }
    ((float *)(gx + 512))[j] = d;
    ((int32_t *)(gx + 576))[j] = -8 * s;
}
static void q4i_prepare(mrw_qx *qx, uint8_t *p, const float *X, int ldx, int tn, int K) {
    prepare_groups(qx, p, X, ldx, tn, K, MRW_Q4I_GROUP, Q4I_BYTES, place_q4i);
}

/* The exact (f32-activation) kernel on interleaved rows, without turning them back into blocks. The inputs are
 * reordered once per call to the weights' lane order: per group, for step s and chunk c (blocks 4c..4c+3, bytes
 * 16c..16c+15 of the step), 16 floats of the low-nibble elements then 16 of the high ones, lane l standing for block
 * 4c + l/4, element 4s + l%4 (+16). Lanes of missing blocks are zero. */
static void q4i_prepare_f32(mrw_qx *qx, uint8_t *p, const float *X, int ldx, int tn, int K) {
    const int nb = K / MRW_QK, ng = q4i_groups(K);
    float *xp = (float *)p;
    qx->xq = (int8_t *)p;
    qx->dx = NULL;
    qx->corr = NULL;
    qx->f32x = 1;
    memset(p, 0, (size_t)tn * ng * Q4IX_BYTES);
    for (int t = 0; t < tn; t++)
        for (int b = 0; b < nb; b++) {
            const float *x = X + (size_t)t * ldx + (size_t)b * MRW_QK;
            const int j = b % MRW_Q4I_GROUP, c = j / 4, l0 = (j % 4) * 4;
            float *gx = xp + ((size_t)t * ng + b / MRW_Q4I_GROUP) * (Q4IX_BYTES / 4);
            for (int s = 0; s < 4; s++)
                for (int e = 0; e < 4; e++) {
                    gx[(s * 4 + c) * 32 + l0 + e] = x[4 * s + e];
                    gx[(s * 4 + c) * 32 + 16 + l0 + e] = x[16 + 4 * s + e];
                }
        }
}

/* Per chunk c, the products of its 4 blocks summed unscaled over the 32 elements, then scaled by their blocks' d (as
 * the plain exact kernel scales each block's sum); vpermps with a 16-entry table turns a nibble into q - 8. */
static void rows_q4i_f32(const mrw_mat *W, int r0, int r1, const mrw_qx *qx, float *Y, int ldy, int acc) {
    const int nb = W->cols / MRW_QK, ng = q4i_groups(W->cols), tn = qx->tn;
    const size_t GB = (size_t)MRW_Q4I_GROUP * sizeof(mrw_block_q4_0);
    const float *xp = (const float *)qx->xq;
    const __m512 table = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    const __m512i quad = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3); /* + 4c: chunk c's scales */
    for (int o = r0; o < r1; o++) {
        const uint8_t *row = (const uint8_t *)W->data + (size_t)o * W->row_bytes;
        __m512 f[MRW_MV_MAXT];
        for (int t = 0; t < MRW_MV_MAXT; t++) f[t] = _mm512_setzero_ps();
        for (int g = 0; g < ng; g++) {
            const int n = mrw_q4i_group_blocks(nb, g);
            const uint8_t *gp = row + g * GB, *q = gp + 2 * n;
            const __m512 d = _mm512_cvtph_ps(n == MRW_Q4I_GROUP ? _mm256_loadu_si256((const __m256i *)gp)
                                                                : _mm256_maskz_loadu_epi16((__mmask16)((1u << n) - 1), gp));
            for (int c = 0; 4 * c < n; c++) {
                const int bytes = 4 * n - 16 * c < 16 ? 4 * n - 16 * c : 16;
                const __mmask16 m = (__mmask16)(bytes == 16 ? 0xffff : (1u << bytes) - 1);
                __m512 a[MRW_MV_MAXT], a0 = _mm512_setzero_ps(); /* a0: one input, kept in a register */
                for (int t = 0; t < tn; t++) a[t] = _mm512_setzero_ps();
                for (int s = 0; s < 4; s++) {
                    const uint8_t *qb = q + 4 * n * s + 16 * c;
                    const __m512i qi = _mm512_cvtepu8_epi32(bytes == 16 ? _mm_loadu_si128((const __m128i *)qb)
                                                                        : _mm_maskz_loadu_epi8(m, qb));
                    const __m512 lo = _mm512_permutexvar_ps(qi, table), hi = _mm512_permutexvar_ps(_mm512_srli_epi32(qi, 4), table);
                    const float *x0 = xp + (size_t)g * (Q4IX_BYTES / 4) + (s * 4 + c) * 32;
                    if (tn == 1) {
                        a0 = _mm512_fmadd_ps(hi, _mm512_load_ps(x0 + 16), _mm512_fmadd_ps(lo, _mm512_load_ps(x0), a0));
                        continue;
                    }
                    for (int t = 0; t < tn; t++) {
                        const float *xg = x0 + (size_t)t * ng * (Q4IX_BYTES / 4);
                        a[t] = _mm512_fmadd_ps(hi, _mm512_load_ps(xg + 16), _mm512_fmadd_ps(lo, _mm512_load_ps(xg), a[t]));
                    }
                }
                if (tn == 1) a[0] = a0;
                const __m512 dc = _mm512_permutexvar_ps(_mm512_add_epi32(quad, _mm512_set1_epi32(4 * c)), d);
                for (int t = 0; t < tn; t++) f[t] = _mm512_fmadd_ps(a[t], dc, f[t]);
            }
        }
        for (int t = 0; t < tn; t++) store_y(Y + (size_t)t * ldy + o, _mm512_reduce_add_ps(f[t]), acc);
    }
}

/* One group of n blocks (a row's last group may have n < 16: masked loads, never past the row) against one input's
 * prepared group gx. Two integer chains per nibble half keep the vpdpbusd latency off the critical path. */
static inline __m512 q4i_group_dot(const uint8_t *g, int n, const uint8_t *gx, __m512 acc) {
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512 d;
    __m512i w[4];
    if (n == MRW_Q4I_GROUP) {
        d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        for (int s = 0; s < 4; s++) w[s] = _mm512_loadu_si512(g + 32 + 64 * s);
    } else {
        d = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((__mmask16)((1u << n) - 1), g));
        const __mmask64 m = ((__mmask64)1 << (4 * n)) - 1;
        for (int s = 0; s < 4; s++) w[s] = _mm512_maskz_loadu_epi8(m, g + 2 * n + 4 * n * s);
    }
    __m512i a0 = _mm512_load_si512(gx + 576), a1 = _mm512_setzero_si512(), b0 = a1, b1 = a1;
    a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(w[0], m4), _mm512_load_si512(gx));
    b0 = _mm512_dpbusd_epi32(b0, _mm512_and_si512(_mm512_srli_epi16(w[0], 4), m4), _mm512_load_si512(gx + 256));
    a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(w[1], m4), _mm512_load_si512(gx + 64));
    b1 = _mm512_dpbusd_epi32(b1, _mm512_and_si512(_mm512_srli_epi16(w[1], 4), m4), _mm512_load_si512(gx + 320));
    a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(w[2], m4), _mm512_load_si512(gx + 128));
    b0 = _mm512_dpbusd_epi32(b0, _mm512_and_si512(_mm512_srli_epi16(w[2], 4), m4), _mm512_load_si512(gx + 384));
    a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(w[3], m4), _mm512_load_si512(gx + 192));
    b1 = _mm512_dpbusd_epi32(b1, _mm512_and_si512(_mm512_srli_epi16(w[3], 4), m4), _mm512_load_si512(gx + 448));
    const __m512i i = _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(b0, b1));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(d, _mm512_load_ps((const float *)(gx + 512))), acc);
}

/* A last group of exactly 8 blocks (rows of 768 columns: the 0.1B shape's), on 256-bit vectors without masks:
 * measured 68-71 % of the read bandwidth through the masked path against 82-94 % this way (bench_matmul --dram). */
static inline __m512 q4i_half_group_dot(const uint8_t *g, const uint8_t *gx, __m512 acc) {
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
    __m256i a = _mm256_load_si256((const __m256i *)(gx + 576)), b = _mm256_setzero_si256();
    for (int s = 0; s < 4; s++) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(g + 16 + 32 * s));
        a = _mm256_dpbusd_epi32(a, _mm256_and_si256(w, m4), _mm256_load_si256((const __m256i *)(gx + 64 * s)));
        b = _mm256_dpbusd_epi32(b, _mm256_and_si256(_mm256_srli_epi16(w, 4), m4),
                                _mm256_load_si256((const __m256i *)(gx + 256 + 64 * s)));
    }
    const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(a, b)),
                                   _mm256_mul_ps(d, _mm256_load_ps((const float *)(gx + 512))));
    return _mm512_add_ps(acc, _mm512_zextps256_ps512(f));
}

static inline __m512 q4i_any_group_dot(const uint8_t *g, int n, const uint8_t *gx, __m512 acc) {
    return n == MRW_Q4I_GROUP / 2 ? q4i_half_group_dot(g, gx, acc) : q4i_group_dot(g, n, gx, acc);
}

static void rows_q4i(const mrw_mat *W, int r0, int r1, const mrw_qx *qx, float *Y, int ldy, int acc) {
    const int nb = W->cols / MRW_QK, ng = q4i_groups(W->cols), tn = qx->tn;
    const size_t GB = (size_t)MRW_Q4I_GROUP * sizeof(mrw_block_q4_0); /* bytes of a full group */
    const uint8_t *xg = (const uint8_t *)qx->xq;
    for (int o = r0; o < r1; o++) {
        const uint8_t *row = (const uint8_t *)W->data + (size_t)o * W->row_bytes;
        if (tn == 1) { /* two accumulators hide the FMA latency */
            __m512 f0 = _mm512_setzero_ps(), f1 = f0;
            const int full = nb / MRW_Q4I_GROUP;
            int g = 0;
            for (; g + 2 <= full; g += 2) {
                f0 = q4i_group_dot(row + g * GB, MRW_Q4I_GROUP, xg + (size_t)g * Q4I_BYTES, f0);
                f1 = q4i_group_dot(row + (g + 1) * GB, MRW_Q4I_GROUP, xg + (size_t)(g + 1) * Q4I_BYTES, f1);
            }
            for (; g < ng; g++) {
                const int n = mrw_q4i_group_blocks(nb, g);
                f0 = q4i_any_group_dot(row + g * GB, n, xg + (size_t)g * Q4I_BYTES, f0);
            }
            store_y(Y + o, _mm512_reduce_add_ps(_mm512_add_ps(f0, f1)), acc);
            continue;
        }
        __m512 f[MRW_MV_MAXT];
        for (int t = 0; t < MRW_MV_MAXT; t++) f[t] = _mm512_setzero_ps();
        for (int g = 0; g < ng; g++) {
            const int n = mrw_q4i_group_blocks(nb, g);
            for (int t = 0; t < tn; t++)
                f[t] = q4i_any_group_dot(row + g * GB, n, xg + ((size_t)t * ng + g) * Q4I_BYTES, f[t]);
        }
        for (int t = 0; t < tn; t++) store_y(Y + (size_t)t * ldy + o, _mm512_reduce_add_ps(f[t]), acc);
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
    if (qx->f32x) rows_q4i_f32(W, r0, r1, qx, Y, ldy, acc);
    else if (W->interleaved) rows_q4i(W, r0, r1, qx, Y, ldy, acc);
    else if (W->dtype == MRW_DT_Q4_0) rows_q4(W, r0, r1, qx, Y, ldy, acc);
    else rows_q8(W, r0, r1, qx, Y, ldy, acc);
}

#else

size_t mrw_qx_bytes(int tn, int K) { (void)tn; (void)K; return 0; }
void mrw_qx_prepare(mrw_qx *qx, void *mem, const mrw_mat *W, const float *X, int ldx, int tn, int exact) {
    (void)qx; (void)mem; (void)W; (void)X; (void)ldx; (void)tn; (void)exact;
}
int mrw_qx_exact_supported(const mrw_mat *W) { (void)W; return 0; }
int mrw_qx_supported(mrw_dtype t) { (void)t; return 0; }
void mrw_matvec_qx_rows(const mrw_mat *W, int r0, int r1, const mrw_qx *qx, float *Y, int ldy, int acc) {
    (void)W; (void)r0; (void)r1; (void)qx; (void)Y; (void)ldy; (void)acc;
}

#endif
