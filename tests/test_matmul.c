/* Every matmul path (matrix-vector and packed GEMM, every dtype) against the double-precision reference on
 * the same weights, for awkward shapes (tails in rows, columns and T).
 *
 * Tolerances follow from the arithmetic, per output element, with S = Σ_k |x_k·w_k| and
 * B = Σ_k |w_k|·amax(block of x_k):
 *   exact-activation paths (matvec f32/f16, GEMM f32, any exact context): |Δ| ≤ 1e-5·S   (fp32 summation)
 *   GEMM bf16/f16 (x, and f16 weights, rounded to bf16, relative error ≤ 2^-9 each): |Δ| ≤ 2^-7·S + 1e-5·S
 *   matvec bf16 (x rounded to bf16 when K is a multiple of 32, the decode fast path): the same bound
 *   q8_0/q4_0, both paths (x quantized per 32-block, error ≤ amax/254): |Δ| ≤ B/254·1.01 + 1e-5·S
 *   the same with an exact context (f32 activations): |Δ| ≤ 1e-5·S */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/matmul.h"
#include "tensor/dtype.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* slice > 0: the product runs on a copy of W in column slices of that width (mrw_mat.slice_cols), checked against the
 * reference on the row-major W with the same bounds, which hold per slice and so for their sum. inter: q4_0 rows (of
 * each slice) interleaved as a loaded model holds them (mrw_mat.interleaved), where the CPU has that kernel. */
static void check_layout(mrw_kctx *kc, mrw_dtype dt, int O, int K, int T, mrw_mm_path path, int acc, int slice,
                         int inter) {
    /* q8_0/q4_0 take 8-bit activations in every path unless exact */
    const int act8 = mrw_dtype_is_quant(dt) && !kc->exact;
    /* bf16 weights take bf16 activations unless exact (matvec: only when K is a multiple of 32) */
    const int act16 = !kc->exact && (dt == MRW_DT_BF16 || dt == MRW_DT_F16) && (path == MRW_MM_GEMM || K % 32 == 0);
    float *Wf = malloc((size_t)O * K * sizeof *Wf);
    float *X = malloc((size_t)T * (K + 3) * sizeof *X);
    for (size_t i = 0; i < (size_t)O * K; i++) Wf[i] = frand() * (1 + (i % 7 == 0) * 3);
    const int ldx = K + 3, ldy = O + 5;
    for (size_t i = 0; i < (size_t)T * ldx; i++) X[i] = frand() * 2;
    size_t rb = mrw_dtype_row_bytes(dt, K);
    uint8_t *Wd = malloc((size_t)O * rb);
    for (int o = 0; o < O; o++) mrw_from_f32(dt, Wf + (size_t)o * K, Wd + (size_t)o * rb, K);
    mrw_mat W;
    CHECK(mrw_mat_init(&W, dt, O, K, Wd) == 0);
    float *Y = malloc((size_t)T * ldy * sizeof *Y), *R = malloc((size_t)T * ldy * sizeof *R);
    for (size_t i = 0; i < (size_t)T * ldy; i++) Y[i] = R[i] = frand();
    uint8_t *Ws = slice ? malloc((size_t)O * rb) : NULL;
    mrw_mat S = W;
    if (slice) {
        mrw_mat_copy_sliced(&W, slice, Ws, &S);
        CHECK(S.slice_cols == slice && mrw_mat_n_slices(&S) == (K + slice - 1) / slice);
    }
    uint8_t *Wi = NULL;
    if (inter && mrw_mat_interleavable(&S)) {
        Wi = malloc((size_t)O * rb);
        CHECK(mrw_mat_interleave(&S, Wi) == 0 && S.interleaved && S.data == Wi);
    }
    mrw_matmul_path(kc, &S, X, ldx, Y, ldy, T, acc, path);
    mrw_matmul_ref(&W, X, ldx, R, ldy, T, acc);
    /* bounds */
    float *wrow = malloc((size_t)K * sizeof *wrow);
    double worst = 0;
    int bad = 0;
    const int gemm = path == MRW_MM_GEMM;
    for (int o = 0; o < O && !bad; o++) {
        mrw_mat_row_f32(&W, o, wrow);
        for (int t = 0; t < T; t++) {
            const float *x = X + (size_t)t * ldx;
            double S = 0, B = 0;
            for (int k = 0; k < K; k++) {
                S += fabs((double)x[k] * wrow[k]);
                if (k % 32 == 0) {
                    double am = 0;
                    for (int j = k; j < k + 32 && j < K; j++) am = fmax(am, fabs(x[j]));
                    for (int j = k; j < k + 32 && j < K; j++) B += fabs(wrow[j]) * am;
                }
            }
            double tol = 1e-5 * S + 1e-6;
            if (act16 && (gemm || dt == MRW_DT_BF16)) tol += S / 128.0; /* x (and f16 w) rounded to bf16 */
            if (act8) tol += B / 254.0 * 1.01;
            double d = fabs((double)Y[(size_t)t * ldy + o] - R[(size_t)t * ldy + o]);
            if (d / (tol > 0 ? tol : 1) > worst) worst = d / tol;
            if (d > tol) {
                bad = 1;
                fprintf(stderr, "  %s O=%d K=%d T=%d path=%d acc=%d: y[%d][%d] = %g vs ref %g (|d| %.3g > tol %.3g)\n",
                        mrw_dtype_name(dt), O, K, T, path, acc, t, o, Y[(size_t)t * ldy + o], R[(size_t)t * ldy + o],
                        d, tol);
            }
        }
    }
    CHECKF(!bad, "%s O=%d K=%d T=%d path=%d slice=%d interleaved=%d", mrw_dtype_name(dt), O, K, T, path, slice,
           S.interleaved);
    if (slice || S.interleaved) { /* the same values row by row, and back to the same bytes */
        float *srow = malloc((size_t)K * sizeof *srow);
        for (int o = 0; o < O; o++) {
            mrw_mat_row_f32(&W, o, wrow);
            mrw_mat_row_f32(&S, o, srow);
            if (memcmp(wrow, srow, (size_t)K * sizeof *srow)) {
                CHECKF(0, "%s K=%d slice=%d: row %d differs", mrw_dtype_name(dt), K, slice, o);
                break;
            }
        }
        uint8_t *back = malloc((size_t)O * rb);
        mrw_mat_copy_plain(&S, back);
        CHECKF(!memcmp(back, Wd, (size_t)O * rb), "%s K=%d slice=%d interleaved=%d: round trip", mrw_dtype_name(dt), K,
               slice, S.interleaved);
        if (!S.interleaved) {
            mrw_mat B;
            memset(back, 0, (size_t)O * rb);
            mrw_mat_copy_sliced(&S, 0, back, &B);
            CHECKF(B.slice_cols == 0 && !memcmp(back, Wd, (size_t)O * rb), "%s K=%d slice=%d: round trip", mrw_dtype_name(dt),
                   K, slice);
        }
        free(back);
        free(srow);
    }
    /* columns beyond O must be untouched */
    for (int t = 0; t < T; t++)
        for (int o = O; o < ldy; o++) CHECK(Y[(size_t)t * ldy + o] == R[(size_t)t * ldy + o]);
    free(wrow);
    free(Wf);
    free(X);
    free(Wd);
    free(Ws);
    free(Wi);
    free(Y);
    free(R);
}

static void check_case(mrw_kctx *kc, mrw_dtype dt, int O, int K, int T, mrw_mm_path path, int acc) {
    check_layout(kc, dt, O, K, T, path, acc, 0, 0);
    if (dt == MRW_DT_Q4_0) check_layout(kc, dt, O, K, T, path, acc, 0, 1);
}

/* A batch with a sliced job among row-major ones (mrw_matmul_batch runs it on its own): every output as from
 * mrw_matmul on the row-major matrices, to fp32 summation order. */
static void check_batch_sliced(mrw_kctx *kc, mrw_dtype dt) {
    enum { NJ = 3, O = 40, K = 256 };
    uint8_t *d[NJ], *ds = malloc((size_t)O * mrw_dtype_row_bytes(dt, K));
    mrw_mat W[NJ], S;
    mrw_mm_job jobs[NJ];
    float *X = malloc(K * sizeof *X), Y[NJ][O], R[NJ][O];
    for (int k = 0; k < K; k++) X[k] = frand();
    for (int j = 0; j < NJ; j++) {
        const size_t rb = mrw_dtype_row_bytes(dt, K);
        d[j] = malloc((size_t)O * rb);
        float row[K];
        for (int o = 0; o < O; o++) {
            for (int k = 0; k < K; k++) row[k] = frand();
            mrw_from_f32(dt, row, d[j] + (size_t)o * rb, K);
        }
        mrw_mat_init(&W[j], dt, O, K, d[j]);
        for (int o = 0; o < O; o++) Y[j][o] = R[j][o] = frand();
        mrw_matmul(kc, &W[j], X, K, R[j], O, 1, j == 1);
    }
    mrw_mat_copy_sliced(&W[1], 64, ds, &S);
    for (int j = 0; j < NJ; j++) jobs[j] = (mrw_mm_job){j == 1 ? &S : &W[j], X, K, Y[j], O, j == 1};
    mrw_matmul_batch(kc, jobs, NJ, 1);
    double worst = 0;
    for (int j = 0; j < NJ; j++)
        for (int o = 0; o < O; o++) worst = fmax(worst, fabs(Y[j][o] - R[j][o]) / (1 + fabs(R[j][o])));
    CHECKF(worst < 1e-5, "%s batch with a sliced job: max rel diff %.3g", mrw_dtype_name(dt), worst);
    for (int j = 0; j < NJ; j++) free(d[j]);
    free(ds);
    free(X);
}

/* A batch large enough to be split between threads: jobs of different dtypes, row counts (not multiples of 16,
 * one of 3 rows) and widths, as the layer's projections and LoRAs are; cut into pieces of equal bytes that span
 * jobs. Every output as from mrw_matmul on its own, to fp32 summation order. */
static void check_batch_pieces(mrw_kctx *kc, int T) {
    enum { NJ = 6 };
    const struct { mrw_dtype dt; int O, K; } J[NJ] = {{MRW_DT_Q4_0, 200, 256}, {MRW_DT_F32, 3, 512},
                                                      {MRW_DT_Q8_0, 131, 256}, {MRW_DT_F32, 517, 64},
                                                      {MRW_DT_BF16, 90, 96}, {MRW_DT_Q4_0, 77, 512}};
    const int KX = 512;
    uint8_t *d[NJ];
    mrw_mat W[NJ];
    mrw_mm_job jobs[NJ];
    float *X = malloc((size_t)T * KX * sizeof *X), *Y[NJ], *R[NJ];
    for (int i = 0; i < T * KX; i++) X[i] = frand();
    for (int j = 0; j < NJ; j++) {
        const size_t rb = mrw_dtype_row_bytes(J[j].dt, J[j].K);
        d[j] = malloc((size_t)J[j].O * rb);
        float row[KX];
        for (int o = 0; o < J[j].O; o++) {
            for (int k = 0; k < J[j].K; k++) row[k] = frand();
            mrw_from_f32(J[j].dt, row, d[j] + (size_t)o * rb, J[j].K);
        }
        mrw_mat_init(&W[j], J[j].dt, J[j].O, J[j].K, d[j]);
        W[j].f32_act = J[j].dt == MRW_DT_BF16; /* as the LoRAs of a bf16 model */
        Y[j] = malloc((size_t)T * J[j].O * sizeof(float));
        R[j] = malloc((size_t)T * J[j].O * sizeof(float));
        for (int i = 0; i < T * J[j].O; i++) Y[j][i] = R[j][i] = frand();
        mrw_matmul(kc, &W[j], X, KX, R[j], J[j].O, T, j & 1);
        jobs[j] = (mrw_mm_job){&W[j], X, KX, Y[j], J[j].O, j & 1};
    }
    mrw_matmul_batch(kc, jobs, NJ, T);
    double worst = 0;
    for (int j = 0; j < NJ; j++)
        for (int i = 0; i < T * J[j].O; i++) worst = fmax(worst, fabs(Y[j][i] - R[j][i]) / (1 + fabs(R[j][i])));
    CHECKF(worst < 1e-5, "batch of %d jobs, T=%d, %d threads: max rel diff %.3g", NJ, T, kc->n_threads, worst);
    for (int j = 0; j < NJ; j++) free(d[j]), free(Y[j]), free(R[j]);
    free(X);
}

/* Slice widths: none for rows whose decode input fits; equal slices in whole blocks otherwise. */
static void check_slice_widths(void) {
    CHECK(mrw_mat_slice_cols_for(MRW_DT_F16, 2048, MRW_SLICE_INPUT_BYTES) == 0);
    CHECK(mrw_mat_slice_cols_for(MRW_DT_F16, 3072, MRW_SLICE_INPUT_BYTES) == 1536);
    CHECK(mrw_mat_slice_cols_for(MRW_DT_F16, 8192, MRW_SLICE_INPUT_BYTES) == 2048);
    CHECK(mrw_mat_slice_cols_for(MRW_DT_F32, 10240, MRW_SLICE_INPUT_BYTES) == 2048);
    CHECK(mrw_mat_slice_cols_for(MRW_DT_BF16, 8192, MRW_SLICE_INPUT_BYTES) == 4096);
    CHECK(mrw_mat_slice_cols_for(MRW_DT_Q4_0, 8192, MRW_SLICE_INPUT_BYTES) == 4096);
    CHECK(mrw_mat_slice_cols_for(MRW_DT_Q4_0, 4096, MRW_SLICE_INPUT_BYTES) == 0);
    CHECK(mrw_mat_slice_cols_for(MRW_DT_Q8_0, 8192, MRW_SLICE_INPUT_BYTES) == 0);
    CHECK(mrw_mat_slice_cols_for(MRW_DT_Q8_0, 16384, MRW_SLICE_INPUT_BYTES) == 8192);
    CHECK(mrw_mat_slice_cols_for(MRW_DT_F16, 2050, MRW_SLICE_INPUT_BYTES) == 1056); /* 1025 up to whole blocks */
}

int main(void) {
    check_slice_widths();
    const mrw_dtype types[] = {MRW_DT_F32, MRW_DT_F16, MRW_DT_BF16, MRW_DT_Q8_0, MRW_DT_Q4_0};
    const int shapes[][2] = {{1, 32}, {17, 64}, {33, 96}, {64, 128}, {100, 800}, {47, 544}, {32, 1056}, {20, 256}, {9, 768}};
    const int Ts[] = {1, 2, 3, 4, 5, 13, 40};
    for (int run = 0; run < 3; run++) {
        const int nth = run == 0 ? 1 : 2;
        mrw_kctx kc;
        mrw_kctx_init(&kc, nth);
        kc.exact = run == 2;
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++)
            for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
                for (size_t tj = 0; tj < sizeof Ts / sizeof *Ts; tj++)
                    for (int p = MRW_MM_MATVEC; p <= MRW_MM_GEMM; p++)
                        check_case(&kc, types[ti], shapes[si][0], shapes[si][1], Ts[tj], (mrw_mm_path)p,
                                   (int)((si + tj + p) & 1));
        /* float dtypes also take K that is not a multiple of 32 */
        for (int dt = MRW_DT_F32; dt <= MRW_DT_BF16; dt++) {
            check_case(&kc, (mrw_dtype)dt, 24, 70, 13, MRW_MM_GEMM, 0);
            check_case(&kc, (mrw_dtype)dt, 24, 70, 3, MRW_MM_MATVEC, 1);
            check_case(&kc, (mrw_dtype)dt, 130, 7, 30, MRW_MM_GEMM, 1);
        }
        /* column slices: widths that divide K and a narrower last slice, every path, T=1 as decode */
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
            const int sl[][3] = {{33, 256, 64}, {17, 544, 96}, {40, 2048 + 64, 1024}};
            for (size_t si = 0; si < sizeof sl / sizeof *sl; si++)
                for (int T = 1; T <= 25; T += 12)
                    for (int p = MRW_MM_MATVEC; p <= MRW_MM_GEMM; p++)
                        for (int inter = 0; inter <= (types[ti] == MRW_DT_Q4_0); inter++)
                            check_layout(&kc, types[ti], sl[si][0], sl[si][1], T, (mrw_mm_path)p, (int)((T + p) & 1),
                                         sl[si][2], inter);
            check_batch_sliced(&kc, types[ti]);
        }
        for (int T = 1; T <= 9; T += 4) check_batch_pieces(&kc, T);
        /* a large K that spans several K blocks of every kernel */
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) check_case(&kc, types[ti], 40, 2048 + 64, 25, MRW_MM_GEMM, 1);
        /* rows of 259 blocks: the exact kernel reads interleaved q4_0 rows in pieces of 256 blocks */
        check_case(&kc, MRW_DT_Q4_0, 8, 8192 + 96, 3, MRW_MM_MATVEC, 0);
        check_case(&kc, MRW_DT_Q4_0, 8, 8192 + 96, 1, MRW_MM_MATVEC, 1);
        mrw_kctx_free(&kc);
    }
    mrw_kctx kc3; /* an odd thread count: pieces that do not pair up */
    mrw_kctx_init(&kc3, 3);
    for (int T = 1; T <= 9; T += 4) check_batch_pieces(&kc3, T);
    mrw_kctx_free(&kc3);
    TEST_MAIN_END();
}
