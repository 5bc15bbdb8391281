/* fp32 GEMM with transposable operands (see gemm_train.h).
 *
 * Blocking: each thread owns a range of row blocks (MR rows each). For each block of NC output columns and KC
 * of K it packs the op(W) block into NR-column micro-panels [KC][NR] (NC·KC floats = 256 KiB, held in L2),
 * then for each of its groups of row blocks packs op(X) [KC][MR] per block and runs the micro-kernel over
 * every micro-panel. Transposing packs go 16x16 at a time in registers. Tails: missing rows/columns are
 * packed as zeros and not stored. */
#include "kernels/cpu/gemm_train.h"

#include <omp.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define GT_AVX512 1
#endif

void mrw_sgemm_t_ref(int M, int N, int K, const float *X, int ldx, int tx, const float *W, int ldw, int tw, float *Y,
                     int ldy, int acc) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                const float x = tx ? X[(size_t)k * ldx + m] : X[(size_t)m * ldx + k];
                const float w = tw ? W[(size_t)k * ldw + n] : W[(size_t)n * ldw + k];
                s += (double)x * w;
            }
            float *y = Y + (size_t)m * ldy + n;
            *y = acc ? (float)(*y + s) : (float)s;
        }
}

#ifdef GT_AVX512

#define MR 12
#define NR 32
#define KC 256
#define NC 256
#define SB 8 /* row blocks packed together */

static inline __mmask16 col_mask(int n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* In-place 16x16 transpose: on return r[c] holds column c of the rows given (r[i][c] -> r[c][i]). */
static inline void tr16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {
        u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        const __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), v2 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        const __m512 v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        const __m512 v4 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(v1, v3, 0x88), r[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(v2, v4, 0x88), r[12 + c] = _mm512_shuffle_f32x4(v2, v4, 0xDD);
    }
}

/* dst[k][ld] (the first `n` <= 16 of each group of ld) = src rows i < n (row stride lds) at columns k < kc,
 * rows n..15 taken as zero; stores of `store` lanes. A transpose of an n x kc block, 16 columns at a time. */
static void pack_rows_t(const float *src, size_t lds, int n, int kc, float *dst, int ld, __mmask16 store) {
    __m512 r[16];
    for (int k = 0; k < kc; k += 16) {
        const int w = kc - k < 16 ? kc - k : 16;
        const __mmask16 lm = col_mask(w);
        for (int i = 0; i < 16; i++) r[i] = i < n ? _mm512_maskz_loadu_ps(lm, src + (size_t)i * lds + k) : _mm512_setzero_ps();
        tr16(r);
        for (int c = 0; c < w; c++) _mm512_mask_storeu_ps(dst + (size_t)(k + c) * ld, store, r[c]);
    }
}

/* dst[b][k][MR] for the nb row blocks of MR rows from m0: op(X)[m0 + b·MR + i][k0 + k], zero beyond M. */
static void pack_a(const float *X, int ldx, int tx, int M, int m0, int nb, int k0, int kc, float *dst) {
    if (tx) { /* rows of X are K: each k reads nb·MR contiguous floats */
        for (int k = 0; k < kc; k++) {
            const float *s = X + (size_t)(k0 + k) * ldx + m0;
            for (int b = 0; b < nb; b++) {
                const __mmask16 mk = col_mask(M - (m0 + b * MR) < MR ? M - (m0 + b * MR) : MR);
                _mm512_mask_storeu_ps(dst + ((size_t)b * KC + k) * MR, 0x0fff, _mm512_maskz_loadu_ps(mk, s + b * MR));
            }
        }
    } else {
        for (int b = 0; b < nb; b++) {
            const int mb = m0 + b * MR, rows = M - mb < MR ? M - mb : MR;
            pack_rows_t(X + (size_t)mb * ldx + k0, (size_t)ldx, rows, kc, dst + (size_t)b * KC * MR, MR, 0x0fff);
        }
    }
}

/* dst[k][NR] = op(W)[n0 + j][k0 + k], zero beyond N. */
static void pack_b(const float *W, int ldw, int tw, int N, int n0, int k0, int kc, float *dst) {
    const int cols = N - n0 < NR ? N - n0 : NR;
    if (tw) {
        const __mmask16 m0 = col_mask(cols), m1 = col_mask(cols - 16);
        for (int k = 0; k < kc; k++) {
            const float *s = W + (size_t)(k0 + k) * ldw + n0;
            _mm512_store_ps(dst + (size_t)k * NR, _mm512_maskz_loadu_ps(m0, s));
            _mm512_store_ps(dst + (size_t)k * NR + 16, _mm512_maskz_loadu_ps(m1, s + 16));
        }
    } else {
        for (int h = 0; h < 2; h++) {
            const int n = cols - 16 * h < 0 ? 0 : cols - 16 * h > 16 ? 16 : cols - 16 * h;
            const float *src = n > 0 ? W + (size_t)(n0 + 16 * h) * ldw + k0 : W; /* n = 0: zeros, nothing read */
            pack_rows_t(src, (size_t)ldw, n, kc, dst + 16 * h, NR, 0xffff);
        }
    }
}

/* C[rows][cols] (+)= A[kc][MR] · B[kc][NR] (the block's sum starts from zero, then is added to C). */
static void ukr(const float *A, const float *B, int kc, float *C, int ldc, int rows, int cols, int load_c) {
    __m512 c0[MR], c1[MR];
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(B + (size_t)k * NR), b1 = _mm512_load_ps(B + (size_t)k * NR + 16);
        const float *a = A + (size_t)k * MR;
        for (int i = 0; i < MR; i++) {
            const __m512 av = _mm512_set1_ps(a[i]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
    }
    const __mmask16 m0 = col_mask(cols), m1 = col_mask(cols - 16);
    for (int i = 0; i < rows; i++) {
        float *c = C + (size_t)i * ldc;
        __m512 v0 = c0[i], v1 = c1[i];
        if (load_c) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c + 16));
        }
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

#else /* portable C: the same blocking with a small micro-kernel the compiler vectorises (AVX2, NEON) */

#define MR 4
#define NR 16
#define KC 256
#define NC 256
#define SB 8

static void pack_a(const float *X, int ldx, int tx, int M, int m0, int nb, int k0, int kc, float *dst) {
    for (int b = 0; b < nb; b++)
        for (int i = 0; i < MR; i++) {
            const int m = m0 + b * MR + i;
            float *d = dst + (size_t)b * KC * MR + i;
            for (int k = 0; k < kc; k++)
                d[(size_t)k * MR] = m >= M ? 0.0f : tx ? X[(size_t)(k0 + k) * ldx + m] : X[(size_t)m * ldx + k0 + k];
        }
}

static void pack_b(const float *W, int ldw, int tw, int N, int n0, int k0, int kc, float *dst) {
    for (int k = 0; k < kc; k++)
        for (int j = 0; j < NR; j++) {
            const int n = n0 + j;
            dst[(size_t)k * NR + j] = n >= N ? 0.0f : tw ? W[(size_t)(k0 + k) * ldw + n] : W[(size_t)n * ldw + k0 + k];
        }
}

static void ukr(const float *A, const float *B, int kc, float *C, int ldc, int rows, int cols, int load_c) {
    float c[MR][NR] = {{0}};
    for (int k = 0; k < kc; k++) {
        const float *a = A + (size_t)k * MR, *bk = B + (size_t)k * NR;
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) c[i][j] += a[i] * bk[j];
    }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) C[(size_t)i * ldc + j] = load_c ? C[(size_t)i * ldc + j] + c[i][j] : c[i][j];
}

#endif

void mrw_sgemm_t(mrw_kctx *kx, int M, int N, int K, const float *X, int ldx, int tx, const float *W, int ldw, int tw,
                 float *Y, int ldy, int acc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!acc)
            for (int m = 0; m < M; m++) memset(Y + (size_t)m * ldy, 0, (size_t)N * sizeof(float));
        return;
    }
    /* below ~1M multiply-adds a second thread does not pay for its fork */
    const int nt = (double)M * N * K < 1048576.0 ? 1 : kx->n_threads;
    const int n_mb = (M + MR - 1) / MR, n_panels = (N + NR - 1) / NR, n_kb = (K + KC - 1) / KC;
    /* Work split: each thread owns a fixed range of rows (or, when there are fewer rows than columns, of
     * columns) and packs what it needs itself: no barrier inside the call (a barrier per K block costs far more
     * than some duplicated packing when the machine is shared), and the results do not depend on the thread
     * count. A row split packs every op(W) block in each thread, a column split every op(X) block, so the
     * split goes along the longer side. */
    const int split_n = nt > 1 && M < N && n_panels >= 2 * nt;
    /* Row blocks are packed in groups of up to SB (a transposed X is then read in runs of SB·MR floats), small
     * enough to leave ~4 groups per thread in a row split. */
    int sb = split_n ? n_mb / 4 : n_mb / (4 * nt);
    sb = sb < 1 ? 1 : sb > SB ? SB : sb;
    const int n_sb = (n_mb + sb - 1) / sb;
    const int max_groups = split_n ? n_sb : (n_sb + nt - 1) / nt, max_cols = split_n ? (n_panels + nt - 1) / nt * NR : N;
    /* When a thread sweeps several column blocks, its op(X) blocks are packed once and kept (up to 4 MiB). */
    const size_t slot = (size_t)sb * KC * MR, pre_floats = (size_t)max_groups * n_kb * slot;
    const int prepack = max_cols > NC && pre_floats <= ((size_t)1 << 20);
    const size_t per = (prepack ? pre_floats : slot) + (size_t)KC * NC; /* floats: packed X, then the op(W) block */
    int ok = 1;
    for (int t = 0; t < nt && ok; t++) ok = mrw_kctx_buf(kx, 1 + t, per * sizeof(float)) != NULL;
    if (!ok) { /* out of memory for a few MiB: still give the right answer */
        mrw_sgemm_t_ref(M, N, K, X, ldx, tx, W, ldw, tw, Y, ldy, acc);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num(), n = omp_get_num_threads();
        int g0 = 0, g1 = n_sb, c0t = 0, c1t = N;
        if (split_n) {
            c0t = (int)((long)n_panels * tid / n) * NR;
            c1t = (int)((long)n_panels * (tid + 1) / n) * NR;
            c1t = c1t < N ? c1t : N;
        } else {
            g0 = (int)((long)n_sb * tid / n), g1 = (int)((long)n_sb * (tid + 1) / n);
        }
        float *apack = kx->buf[1 + tid], *bpack = apack + (prepack ? pre_floats : slot);
        for (int n0 = c0t; n0 < c1t && g0 < g1; n0 += NC) {
            const int nc = c1t - n0 < NC ? c1t - n0 : NC, n_nb = (nc + NR - 1) / NR;
            for (int k0 = 0; k0 < K; k0 += KC) {
                const int kc = K - k0 < KC ? K - k0 : KC, load_c = acc || k0 > 0;
                for (int j = 0; j < n_nb; j++) pack_b(W, ldw, tw, N, n0 + j * NR, k0, kc, bpack + (size_t)j * KC * NR);
                for (int g = g0; g < g1; g++) {
                    const int b0 = g * sb, nb = n_mb - b0 < sb ? n_mb - b0 : sb;
                    float *A = prepack ? apack + ((size_t)(g - g0) * n_kb + k0 / KC) * slot : apack;
                    if (!prepack || n0 == c0t) pack_a(X, ldx, tx, M, b0 * MR, nb, k0, kc, A);
                    for (int b = 0; b < nb; b++) {
                        const int m0 = (b0 + b) * MR, rows = M - m0 < MR ? M - m0 : MR;
                        for (int j = 0; j < n_nb; j++) {
                            const int c0 = n0 + j * NR, cols = N - c0 < NR ? N - c0 : NR;
                            ukr(A + (size_t)b * KC * MR, bpack + (size_t)j * KC * NR, kc, Y + (size_t)m0 * ldy + c0, ldy,
                                rows, cols, load_c);
                        }
                    }
                }
            }
        }
    }
}
