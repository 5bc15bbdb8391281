/* Packed GEMM kernels for prefill: Y[T,O] (+)= X[T,K] · W[O,K]ᵀ.
 *
 * Layout (GotoBLAS-style, sized for AVX-512 with 32 registers):
 *   - X is packed once per call into row blocks of MR rows, interleaved so that the MR values a micro-kernel
 *     broadcasts at one k step are contiguous: f32 [k][MR], bf16 [k/2][MR][2], u8 [k/4][MR][4].
 *   - Each thread owns panels of NR = 32 output rows; per K block it packs the panel's weights into a
 *     buffer that stays in L1 ([k][32] f32, [k/2][32][2] bf16, [k/4][32][4] s8) and sweeps all row blocks.
 *   - f32 and f16 weights use fp32 FMA (exact products). bf16 weights use vdpbf16ps with X rounded to bf16.
 *     q8_0 / q4_0 weights use vpdpbusd with X quantized per 32-element block to int8 (stored +128 as u8;
 *     the 128·Σw correction starts the integer accumulator) and one float FMA per block and tile.
 * Tail rows of a row block are zero-padded and not stored; tail columns are masked. */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/matmul_impl.h"
#include "tensor/dtype.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512BF16__) && defined(__AVX512VNNI__) && \
    defined(__AVX512VL__)
#include <immintrin.h>
#define MRW_GEMM_AVX512 1
#endif

#define NR 32

#ifdef MRW_GEMM_AVX512

enum { K_F32, K_BF16, K_I8 };

#define MR_F32 12
#define MR_BF16 12
#define MR_I8 6
#define KC_F32 128
#define KC_BF16 256
#define KC_I8 512

static int kind_of(mrw_dtype t) {
    switch (t) {
    case MRW_DT_F32: return K_F32;
    case MRW_DT_F16: /* converted to bf16 panels: 2x the fp32 rate; --exact keeps f32 */
    case MRW_DT_BF16: return K_BF16;
    case MRW_DT_Q8_0:
    case MRW_DT_Q4_0: return K_I8;
    default: return -1;
    }
}

static inline int round_up(int x, int m) { return (x + m - 1) / m * m; }
static inline __mmask16 col_mask(int n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* ------------------------------------------------------------------------------------------ X packing */

/* f32: block tb holds rows [tb*MR, tb*MR+MR) as [K][MR]. */
static void pack_x_f32(const float *X, int ldx, int T, int K, int tb, float *dst) {
    for (int i = 0; i < MR_F32; i++) {
        const int t = tb * MR_F32 + i;
        const float *x = X + (size_t)t * ldx;
        if (t < T)
            for (int k = 0; k < K; k++) dst[(size_t)k * MR_F32 + i] = x[k];
        else
            for (int k = 0; k < K; k++) dst[(size_t)k * MR_F32 + i] = 0;
    }
}

/* bf16: [Kp/2][MR] pairs, K padded to even with zeros. Each row is converted 32 floats at a time (round to
 * nearest even), then its pairs are placed as 32-bit words. */
static void pack_x_bf16(const float *X, int ldx, int T, int K, int Kp, int tb, uint16_t *dst) {
    uint32_t *d32 = (uint32_t *)dst;
    uint32_t pairs[KC_BF16];
    for (int i = 0; i < MR_BF16; i++) {
        const int t = tb * MR_BF16 + i;
        const float *x = X + (size_t)t * ldx;
        for (int k0 = 0; k0 < Kp; k0 += 2 * KC_BF16) {
            const int n = Kp - k0 < 2 * KC_BF16 ? Kp - k0 : 2 * KC_BF16; /* even */
            if (t < T) {
                for (int k = 0; k < n; k += 32) {
                    const int left = K - (k0 + k);
                    const __mmask16 m0 = col_mask(left), m1 = col_mask(left - 16);
                    const __m512 lo = _mm512_maskz_loadu_ps(m0, x + k0 + k), hi = _mm512_maskz_loadu_ps(m1, x + k0 + k + 16);
                    _mm512_storeu_si512(pairs + k / 2, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                }
            } else {
                memset(pairs, 0, sizeof pairs);
            }
            for (int p = 0; p < n / 2; p++) d32[(size_t)(k0 / 2 + p) * MR_BF16 + i] = pairs[p];
        }
    }
}

/* int8: per row and 32-block, d = amax/127, q = round(x/d) stored as q+128 in [K/4][MR][4]; scales [K/32][MR]. */
static void pack_x_i8(const float *X, int ldx, int T, int K, int tb, uint8_t *dst, float *dx) {
    const int nb = K / 32;
    uint32_t *d32 = (uint32_t *)dst;
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int i = 0; i < MR_I8; i++) {
        const int t = tb * MR_I8 + i;
        const float *x = X + (size_t)t * ldx;
        for (int b = 0; b < nb; b++) {
            uint32_t q32[8];
            float d = 0;
            if (t < T) {
                const __m512 lo = _mm512_loadu_ps(x + b * 32), hi = _mm512_loadu_ps(x + b * 32 + 16);
                const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, lo), _mm512_andnot_ps(sign, hi)));
                d = amax / 127.0f;
                const __m512 id = _mm512_set1_ps(d != 0 ? 1.0f / d : 0.0f);
                /* round half away from zero, as roundf does */
                const __m512i qlo = _mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(lo, id), _mm512_or_ps(_mm512_and_ps(lo, sign), _mm512_set1_ps(0.5f))));
                const __m512i qhi = _mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(hi, id), _mm512_or_ps(_mm512_and_ps(hi, sign), _mm512_set1_ps(0.5f))));
                const __m128i blo = _mm512_cvtepi32_epi8(_mm512_add_epi32(qlo, _mm512_set1_epi32(128)));
                const __m128i bhi = _mm512_cvtepi32_epi8(_mm512_add_epi32(qhi, _mm512_set1_epi32(128)));
                _mm_storeu_si128((__m128i *)q32, blo);
                _mm_storeu_si128((__m128i *)(q32 + 4), bhi);
            } else {
                memset(q32, 0x80, sizeof q32);
            }
            dx[(size_t)b * MR_I8 + i] = d;
            for (int j = 0; j < 8; j++) d32[(size_t)(b * 8 + j) * MR_I8 + i] = q32[j];
        }
    }
}

/* ------------------------------------------------------------------------------------ weight packing */

static void row_f32(const mrw_mat *W, int o, int k0, int n, float *out) {
    const uint8_t *row = (const uint8_t *)W->data + (size_t)o * W->row_bytes;
    if (!W->interleaved) {
        mrw_to_f32(W->dtype, row + mrw_dtype_row_bytes(W->dtype, k0), out, n);
        return;
    }
    for (int b = 0; b < n / MRW_QK; b++) { /* k0 and n are whole blocks: KC_F32 is */
        mrw_block_q4_0 B;
        mrw_q4i_block(row, W->cols / MRW_QK, k0 / MRW_QK + b, &B);
        mrw_dequantize_q4_0(&B, out + (size_t)b * MRW_QK, MRW_QK);
    }
}

/* [kc][32] f32; rows beyond O are zero. */
static void pack_w_f32(const mrw_mat *W, int o0, int k0, int kc, float *dst) {
    float tmp[KC_F32];
    for (int j = 0; j < NR; j++) {
        const int o = o0 + j;
        const float *src = tmp;
        if (o >= W->rows) {
            memset(tmp, 0, sizeof tmp);
        } else if (W->dtype == MRW_DT_F32) {
            src = (const float *)((const uint8_t *)W->data + (size_t)o * W->row_bytes) + k0;
        } else {
            row_f32(W, o, k0, kc, tmp);
        }
        for (int k = 0; k < kc; k++) dst[k * NR + j] = src[k];
    }
}

/* [kcp/2][32] bf16 pairs (kcp = kc rounded up to even, zero-padded): a transpose of 32-bit words. f16 rows
 * are converted to bf16 (round to nearest even) on the way. */
static void pack_w_bf16(const mrw_mat *W, int o0, int k0, int kc, int K, uint16_t *dst) {
    const int kp = round_up(kc, 2) / 2;
    uint32_t *d32 = (uint32_t *)dst;
    uint16_t conv[KC_BF16 + 32];
    for (int j = 0; j < NR; j++) {
        const int o = o0 + j;
        if (o >= W->rows) {
            for (int p = 0; p < kp; p++) d32[(size_t)p * NR + j] = 0;
            continue;
        }
        const uint16_t *src = (const uint16_t *)((const uint8_t *)W->data + (size_t)o * W->row_bytes) + k0;
        const int n = K - k0 < 2 * kp ? K - k0 : 2 * kp; /* elements of this row in the block */
        if (W->dtype == MRW_DT_F16) {
            int k = 0;
            for (; k + 16 <= n; k += 16)
                _mm256_storeu_si256((__m256i *)(conv + k),
                                    (__m256i)_mm512_cvtneps_pbh(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + k)))));
            for (; k < n; k++) conv[k] = mrw_f32_to_bf16(mrw_f16_to_f32(src[k]));
            src = conv;
        }
        const int full = n / 2; /* whole pairs inside the row */
        uint32_t w;
        for (int p = 0; p < full; p++) {
            memcpy(&w, src + 2 * p, 4);
            d32[(size_t)p * NR + j] = w;
        }
        for (int p = full; p < kp; p++) { /* odd K: last element paired with zero */
            const int k = 2 * p;
            uint32_t lo = k < n ? src[k] : 0, hi = k + 1 < n ? src[k + 1] : 0;
            d32[(size_t)p * NR + j] = lo | (hi << 16);
        }
    }
}

/* [kc/4][32][4] s8 plus per block b: scale dw[b][32] (f32) and corr[b][32] = 128·Σq (int32). */
static void pack_w_i8(const mrw_mat *W, int o0, int k0, int kc, int8_t *dst, float *dw, int32_t *corr) {
    const int nb = kc / 32;
    uint32_t *d32 = (uint32_t *)dst;
    for (int j = 0; j < NR; j++) {
        const int o = o0 + j;
        const uint8_t *row = o < W->rows ? (const uint8_t *)W->data + (size_t)o * W->row_bytes : NULL;
        for (int b = 0; b < nb; b++) {
            int8_t q[32];
            float d = 0;
            const int blk = k0 / 32 + b;
            if (!row) {
                memset(q, 0, sizeof q);
            } else if (W->dtype == MRW_DT_Q8_0) {
                const mrw_block_q8_0 *B = (const mrw_block_q8_0 *)row + blk;
                d = _cvtsh_ss(B->d);
                memcpy(q, B->qs, 32);
            } else {
                mrw_block_q4_0 plain;
                const mrw_block_q4_0 *B = (const mrw_block_q4_0 *)row + blk;
                if (W->interleaved) {
                    mrw_q4i_block(row, W->cols / MRW_QK, blk, &plain);
                    B = &plain;
                }
                d = _cvtsh_ss(B->d);
                const __m128i v = _mm_loadu_si128((const __m128i *)B->qs), m = _mm_set1_epi8(15), e = _mm_set1_epi8(8);
                _mm_storeu_si128((__m128i *)q, _mm_sub_epi8(_mm_and_si128(v, m), e));
                _mm_storeu_si128((__m128i *)(q + 16), _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m), e));
            }
            /* Σq: unsigned sums of q+128 in 8-byte groups, minus 32*128 */
            const __m256i u = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)q), _mm256_set1_epi8((char)0x80));
            const __m256i sad = _mm256_sad_epu8(u, _mm256_setzero_si256());
            const int s = (int)(_mm256_extract_epi64(sad, 0) + _mm256_extract_epi64(sad, 1) + _mm256_extract_epi64(sad, 2) +
                                _mm256_extract_epi64(sad, 3)) - 32 * 128;
            uint32_t w[8];
            memcpy(w, q, 32);
            for (int i = 0; i < 8; i++) d32[(size_t)(b * 8 + i) * NR + j] = w[i];
            dw[b * NR + j] = d;
            corr[b * NR + j] = 128 * s;
        }
    }
}

/* ------------------------------------------------------------------------------------- micro-kernels */


/* Each K block is summed from zero and then added to C: partial sums stay at the block's magnitude instead of
 * being rounded at the running total's (and at a residual stream's, when accumulating into one), which
 * makes long-K products about 3x more accurate at the cost of one add per output and block. */
static inline void store_tile(float *C, int ldc, int rows, __mmask16 m0, __mmask16 m1, const __m512 *c0,
                              const __m512 *c1, int load_c) {
    for (int i = 0; i < rows; i++) {
        __m512 v0 = c0[i], v1 = c1[i];
        if (load_c) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, C + (size_t)i * ldc));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, C + (size_t)i * ldc + 16));
        }
        _mm512_mask_storeu_ps(C + (size_t)i * ldc, m0, v0);
        _mm512_mask_storeu_ps(C + (size_t)i * ldc + 16, m1, v1);
    }
}

/* C[MR rows][32] (+)= A[kc][MR] · B[kc][32]. */
static void ukr_f32(const float *A, const float *B, int kc, float *C, int ldc, int rows, int cols, int load_c) {
    __m512 c0[MR_F32], c1[MR_F32];
    const __mmask16 m0 = col_mask(cols), m1 = col_mask(cols - 16);
    for (int i = 0; i < MR_F32; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(B + (size_t)k * NR), b1 = _mm512_load_ps(B + (size_t)k * NR + 16);
        const float *a = A + (size_t)k * MR_F32;
        for (int i = 0; i < MR_F32; i++) {
            const __m512 av = _mm512_set1_ps(a[i]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
    }
    store_tile(C, ldc, rows, m0, m1, c0, c1, load_c);
}

/* C[MR][32] (+)= A[kp][MR][2] · B[kp][32][2] over kp = kc/2 bf16 pairs. */
static void ukr_bf16(const uint16_t *A, const uint16_t *B, int kp, float *C, int ldc, int rows, int cols,
                     int load_c) {
    __m512 c0[MR_BF16], c1[MR_BF16];
    const __mmask16 m0 = col_mask(cols), m1 = col_mask(cols - 16);
    for (int i = 0; i < MR_BF16; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    const uint32_t *a32 = (const uint32_t *)A;
    for (int k = 0; k < kp; k++) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(B + (size_t)k * NR * 2);
        const __m512bh b1 = (__m512bh)_mm512_load_si512(B + (size_t)k * NR * 2 + 32);
        const uint32_t *a = a32 + (size_t)k * MR_BF16;
        for (int i = 0; i < MR_BF16; i++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[i]);
            c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
        }
    }
    store_tile(C, ldc, rows, m0, m1, c0, c1, load_c);
}

/* C[MR][32] (+)= Σ_blocks dx[b][i]·dw[b][j]·(Σ_k xq·wq) over nb blocks of 32. */
static void ukr_i8(const uint8_t *A, const float *dx, const int8_t *B, const float *dw, const int32_t *corr, int nb,
                   float *C, int ldc, int rows, int cols, int load_c) {
    __m512 f0[MR_I8], f1[MR_I8];
    const __mmask16 m0 = col_mask(cols), m1 = col_mask(cols - 16);
    for (int i = 0; i < MR_I8; i++) f0[i] = f1[i] = _mm512_setzero_ps();
    const uint32_t *a32 = (const uint32_t *)A;
    for (int b = 0; b < nb; b++) {
        const __m512i n0 = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_load_si512(corr + b * NR));
        const __m512i n1 = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_load_si512(corr + b * NR + 16));
        __m512i s0[MR_I8], s1[MR_I8];
        for (int i = 0; i < MR_I8; i++) {
            s0[i] = n0;
            s1[i] = n1;
        }
        for (int q = 0; q < 8; q++) {
            const int kq = b * 8 + q;
            const __m512i b0 = _mm512_load_si512(B + (size_t)kq * NR * 4);
            const __m512i b1 = _mm512_load_si512(B + (size_t)kq * NR * 4 + 64);
            const uint32_t *a = a32 + (size_t)kq * MR_I8;
            for (int i = 0; i < MR_I8; i++) {
                const __m512i av = _mm512_set1_epi32((int)a[i]);
                s0[i] = _mm512_dpbusd_epi32(s0[i], av, b0);
                s1[i] = _mm512_dpbusd_epi32(s1[i], av, b1);
            }
        }
        const __m512 w0 = _mm512_load_ps(dw + b * NR), w1 = _mm512_load_ps(dw + b * NR + 16);
        for (int i = 0; i < MR_I8; i++) {
            const __m512 d = _mm512_set1_ps(dx[(size_t)b * MR_I8 + i]);
            f0[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0[i]), _mm512_mul_ps(w0, d), f0[i]);
            f1[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1[i]), _mm512_mul_ps(w1, d), f1[i]);
        }
    }
    store_tile(C, ldc, rows, m0, m1, f0, f1, load_c);
}

/* ------------------------------------------------------------------------------------------- driver */

typedef struct {
    int kind, mr, kc, K, Kp, O, T, n_tb;
    size_t a_stride; /* bytes per packed row block */
    const mrw_mat *W;
    const float *X;
    int ldx;
    float *Y;
    int ldy, acc;
    uint8_t *apack;
    float *adx; /* int8: [n_tb][K/32][MR] */
} gemm_job;

static size_t panel_bytes(const gemm_job *g) {
    switch (g->kind) {
    case K_F32: return (size_t)KC_F32 * NR * 4;
    case K_BF16: return (size_t)KC_BF16 * NR * 2;
    default: return (size_t)KC_I8 * NR + (size_t)(KC_I8 / 32) * NR * 8;
    }
}

static void pack_rows(const gemm_job *g, int tb) {
    uint8_t *dst = g->apack + (size_t)tb * g->a_stride;
    switch (g->kind) {
    case K_F32: pack_x_f32(g->X, g->ldx, g->T, g->K, tb, (float *)dst); break;
    case K_BF16: pack_x_bf16(g->X, g->ldx, g->T, g->K, g->Kp, tb, (uint16_t *)dst); break;
    default: pack_x_i8(g->X, g->ldx, g->T, g->K, tb, dst, g->adx + (size_t)tb * (g->K / 32) * MR_I8); break;
    }
}

static void run_panel(const gemm_job *g, int o0, uint8_t *wbuf) {
    const int cols = g->O - o0 < NR ? g->O - o0 : NR;
    for (int k0 = 0; k0 < g->K; k0 += g->kc) {
        const int kc = g->K - k0 < g->kc ? g->K - k0 : g->kc;
        const int load_c = k0 > 0 || g->acc;
        float *dw = NULL;
        int32_t *corr = NULL;
        if (g->kind == K_F32) {
            pack_w_f32(g->W, o0, k0, kc, (float *)wbuf);
        } else if (g->kind == K_BF16) {
            pack_w_bf16(g->W, o0, k0, kc, g->K, (uint16_t *)wbuf);
        } else {
            dw = (float *)(wbuf + (size_t)KC_I8 * NR);
            corr = (int32_t *)(dw + (KC_I8 / 32) * NR);
            pack_w_i8(g->W, o0, k0, kc, (int8_t *)wbuf, dw, corr);
        }
        for (int tb = 0; tb < g->n_tb; tb++) {
            const int t0 = tb * g->mr, rows = g->T - t0 < g->mr ? g->T - t0 : g->mr;
            float *C = g->Y + (size_t)t0 * g->ldy + o0;
            const uint8_t *A = g->apack + (size_t)tb * g->a_stride;
            if (g->kind == K_F32) {
                ukr_f32((const float *)A + (size_t)k0 * MR_F32, (const float *)wbuf, kc, C, g->ldy, rows, cols, load_c);
            } else if (g->kind == K_BF16) {
                ukr_bf16((const uint16_t *)A + (size_t)k0 * MR_BF16, (const uint16_t *)wbuf, round_up(kc, 2) / 2, C,
                         g->ldy, rows, cols, load_c);
            } else {
                const float *dx = g->adx + (size_t)tb * (g->K / 32) * MR_I8 + (size_t)(k0 / 32) * MR_I8;
                ukr_i8(A + (size_t)k0 * MR_I8, dx, (const int8_t *)wbuf, dw, corr, kc / 32, C, g->ldy, rows, cols,
                       load_c);
            }
        }
    }
}

int mrw_gemm_min_T(mrw_dtype dt) {
    switch (dt) {
    case MRW_DT_F32: return 3;
    case MRW_DT_F16: return 3;
    case MRW_DT_BF16: return 3;
    default: return 3;
    }
}

static int gemm_rows(mrw_kctx *k, const mrw_mat *W, const float *X, int ldx, float *Y, int ldy, int T, int acc) {
    const int kind = (k->exact || W->f32_act) && kind_of(W->dtype) >= 0 ? K_F32 : kind_of(W->dtype);
    gemm_job g = {.kind = kind, .K = W->cols, .O = W->rows, .T = T, .W = W, .X = X, .ldx = ldx, .Y = Y, .ldy = ldy,
                  .acc = acc};
    if (g.kind < 0 || g.K <= 0) return -1;
    if ((g.kind == K_I8 || mrw_dtype_is_quant(W->dtype)) && g.K % 32) return -1;
    g.mr = g.kind == K_F32 ? MR_F32 : g.kind == K_BF16 ? MR_BF16 : MR_I8;
    g.kc = g.kind == K_F32 ? KC_F32 : g.kind == K_BF16 ? KC_BF16 : KC_I8;
    g.Kp = round_up(g.K, 2);
    g.n_tb = (T + g.mr - 1) / g.mr;
    if (g.kind == K_F32) g.a_stride = (size_t)g.K * MR_F32 * 4;
    else if (g.kind == K_BF16) g.a_stride = (size_t)g.Kp * MR_BF16 * 2;
    else g.a_stride = (size_t)g.K * MR_I8;
    g.a_stride = (g.a_stride + 63) & ~(size_t)63;
    size_t dx_bytes = g.kind == K_I8 ? (size_t)g.n_tb * (g.K / 32) * MR_I8 * 4 : 0;
    uint8_t *shared = mrw_kctx_buf(k, MRW_KS_SHARED, (size_t)g.n_tb * g.a_stride + dx_bytes + 64);
    if (!shared) return -1;
    g.apack = shared;
    g.adx = (float *)(shared + (size_t)g.n_tb * g.a_stride);
    /* below ~1M multiply-adds a second thread does not pay for its fork */
    const int nt = (double)g.O * g.K * T < 1048576.0 ? 1 : k->n_threads;
    for (int t = 0; t < nt; t++)
        if (!mrw_kctx_buf(k, 1 + t, panel_bytes(&g))) return -1;
    const int n_panels = (g.O + NR - 1) / NR;
#pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num(), n = omp_get_num_threads();
#pragma omp for schedule(static)
        for (int tb = 0; tb < g.n_tb; tb++) pack_rows(&g, tb);
        uint8_t *wbuf = k->buf[1 + tid];
        const int p0 = (int)((long)n_panels * tid / n), p1 = (int)((long)n_panels * (tid + 1) / n);
        for (int p = p0; p < p1; p++) run_panel(&g, p * NR, wbuf);
    }
    return 0;
}

/* Each (weight panel, K block) step sweeps the packed activations of all T rows for that block (T x ~512
 * bytes) and the T x 32 output tile; past ~1500 rows that no longer stays in L2 and the rate halves
 * (measured: T = 16000, K = 1536 at 52 vs 90 GFLOP/s). Long inputs therefore go in chunks of about 1024 rows;
 * the weights are re-packed per chunk, a cost that is ~1/20 of the chunk's arithmetic for f32 and shrinks as
 * the chunk grows, so short inputs (up to 1536 rows: Whisper's 1500 frames) stay in one piece. */
#define GEMM_CHUNK_ROWS 1024
int mrw_gemm(mrw_kctx *k, const mrw_mat *W, const float *X, int ldx, float *Y, int ldy, int T, int acc) {
    const int n_chunks = T <= GEMM_CHUNK_ROWS * 3 / 2 ? 1 : (T + GEMM_CHUNK_ROWS - 1) / GEMM_CHUNK_ROWS;
    for (int c = 0; c < n_chunks; c++) {
        const int t0 = (int)((long)T * c / n_chunks), n = (int)((long)T * (c + 1) / n_chunks) - t0;
        if (gemm_rows(k, W, X + (size_t)t0 * ldx, ldx, Y + (size_t)t0 * ldy, ldy, n, acc)) {
            if (c == 0) return -1; /* nothing done yet: the caller may fall back */
            /* a later chunk failing can only be an allocation that succeeded before: finish row by row */
            mrw_matmul_ref(W, X + (size_t)t0 * ldx, ldx, Y + (size_t)t0 * ldy, ldy, T - t0, acc);
            return 0;
        }
    }
    return 0;
}

#else /* no AVX-512: the matrix-vector kernel serves every T */

int mrw_gemm_min_T(mrw_dtype dt) {
    (void)dt;
    return 1 << 30;
}

int mrw_gemm(mrw_kctx *k, const mrw_mat *W, const float *X, int ldx, float *Y, int ldy, int T, int acc) {
    (void)k; (void)W; (void)X; (void)ldx; (void)Y; (void)ldy; (void)T; (void)acc;
    return -1;
}

#endif
