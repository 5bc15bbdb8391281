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

static void check_case(mrw_kctx *kc, mrw_dtype dt, int O, int K, int T, mrw_mm_path path, int acc) {
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
    mrw_matmul_path(kc, &W, X, ldx, Y, ldy, T, acc, path);
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
    CHECKF(!bad, "%s O=%d K=%d T=%d path=%d", mrw_dtype_name(dt), O, K, T, path);
    /* columns beyond O must be untouched */
    for (int t = 0; t < T; t++)
        for (int o = O; o < ldy; o++) CHECK(Y[(size_t)t * ldy + o] == R[(size_t)t * ldy + o]);
    free(wrow);
    free(Wf);
    free(X);
    free(Wd);
    free(Y);
    free(R);
}

int main(void) {
    const mrw_dtype types[] = {MRW_DT_F32, MRW_DT_F16, MRW_DT_BF16, MRW_DT_Q8_0, MRW_DT_Q4_0};
    const int shapes[][2] = {{1, 32}, {17, 64}, {33, 96}, {64, 128}, {100, 800}, {47, 544}, {32, 1056}};
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
        /* a large K that spans several K blocks of every kernel */
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) check_case(&kc, types[ti], 40, 2048 + 64, 25, MRW_MM_GEMM, 1);
        mrw_kctx_free(&kc);
    }
    TEST_MAIN_END();
}
