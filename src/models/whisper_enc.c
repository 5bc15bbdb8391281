#include "models/whisper_enc.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/cpu/nn.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/vmath.h"
#include "models/weights.h"
#include "tensor/dtype.h"

/* ===================================================================== shared helpers (wavlm.c too) */

int mrw_audio_act_parse(const char *name, mrw_audio_act *out) {
    if (!strcmp(name, "gelu"))
        *out = MRW_ACT_GELU;
    else if (!strcmp(name, "gelu_new") || !strcmp(name, "gelu_pytorch_tanh") || !strcmp(name, "gelu_fast"))
        *out = MRW_ACT_GELU_TANH;
    else if (!strcmp(name, "relu"))
        *out = MRW_ACT_RELU;
    else
        return -1;
    return 0;
}

/* x·Φ(x) with Φ from erfc (Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7): Φ(x) = 1 - erfc(z)/2 for x >= 0
 * and erfc(z)/2 below, z = |x|/√2, so the negative side keeps its relative accuracy. libm's erff costs ~8 ns
 * a value, which made GELU a quarter of WavLM's time. */
#define AS_P 0.3275911f
#define AS_A1 0.254829592f
#define AS_A2 -0.284496736f
#define AS_A3 1.421413741f
#define AS_A4 -1.453152027f
#define AS_A5 1.061405429f

#ifdef MRW_VMATH_AVX512
static inline __m512 v_gelu(__m512 x) {
    const __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
    const __m512 t =
        _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(z, _mm512_set1_ps(AS_P), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_fmadd_ps(t, _mm512_set1_ps(AS_A5), _mm512_set1_ps(AS_A4));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(AS_A3));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(AS_A2));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(AS_A1));
    p = _mm512_mul_ps(p, t);
    const __m512 half_erfc =
        _mm512_mul_ps(_mm512_mul_ps(p, mrw_v_exp(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), z), z))),
                      _mm512_set1_ps(0.5f));
    const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512 phi = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(1.0f), half_erfc), half_erfc);
    return _mm512_mul_ps(x, phi);
}
#endif

static inline float s_gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

/* One row: y = act(y·scale + shift) (scale may be NULL: y + shift; shift may be NULL). */
static void row_affine_act(float *y, const float *scale, const float *shift, int C, mrw_audio_act act) {
    int c = 0;
#ifdef MRW_VMATH_AVX512
    if (act == MRW_ACT_GELU) {
        for (; c < C; c += 16) {
            const __mmask16 m = C - c >= 16 ? 0xffff : (__mmask16)((1u << (C - c)) - 1);
            __m512 v = _mm512_maskz_loadu_ps(m, y + c);
            if (scale) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, scale + c));
            if (shift) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, shift + c));
            _mm512_mask_storeu_ps(y + c, m, v_gelu(v));
        }
        return;
    }
#endif
    for (int i = 0; i < C; i++) y[i] = (scale ? y[i] * scale[i] : y[i]) + (shift ? shift[i] : 0.0f);
    if (act == MRW_ACT_GELU)
        for (; c < C; c++) y[c] = s_gelu(y[c]);
    else if (act == MRW_ACT_GELU_TANH)
        mrw_gelu_tanh(y, (size_t)C, 1);
    else
        mrw_relu(y, (size_t)C, 1);
}

void mrw_audio_affine_act(float *y, int ld, const float *scale, const float *shift, int T, int C,
                          mrw_audio_act act, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && (size_t)T * C >= 32768)
    for (int t = 0; t < T; t++) row_affine_act(y + (size_t)t * ld, scale, shift, C, act);
}

void mrw_audio_bias_act(float *y, int ld, const float *bias, int T, int C, mrw_audio_act act, int nt) {
    mrw_audio_affine_act(y, ld, NULL, bias, T, C, act, nt);
}

/* Rows per GEMM call: the shared GEMM packs all T rows of X before sweeping them once per 32 outputs, so
 * once a K block (128 columns) of the packed rows outgrows L2 the sweep slows down (measured: T=16000,
 * K=1536: 52 GFLOP/s whole vs 90 in chunks of 516). Short rows (a conv over few input channels) take
 * proportionally more rows per call, so that the per-call costs (fork, weight packing) stay small. */
static int lin_chunk(int K) {
    const int kc = K < 128 ? K : 128;
    const int rows = 516 * (128 / kc);
    return (rows + 11) / 12 * 12;
}

void mrw_audio_linear(mrw_kctx *k, const mrw_mat *W, const float *bias, const float *X, int ldx, int T,
                      float *Y, int ldy, int accumulate) {
    const int max_rows = lin_chunk(W->cols), n_chunks = (T + max_rows - 1) / max_rows;
    int chunk = n_chunks ? (T + n_chunks - 1) / n_chunks : T;
    chunk = (chunk + 11) / 12 * 12;
    for (int t0 = 0; t0 < T; t0 += chunk) {
        const int n = T - t0 < chunk ? T - t0 : chunk;
        mrw_matmul(k, W, X + (size_t)t0 * ldx, ldx, Y + (size_t)t0 * ldy, ldy, n, accumulate);
    }
    mrw_add_bias(Y, ldy, bias, T, W->rows, k->n_threads);
}

void mrw_audio_residual(float *x, const float *y, const float *bias, int T, int C, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && (size_t)T * C >= 65536)
    for (int t = 0; t < T; t++) {
        float *xr = x + (size_t)t * C;
        const float *yr = y + (size_t)t * C;
        if (bias)
            for (int c = 0; c < C; c++) xr[c] += yr[c] + bias[c];
        else
            for (int c = 0; c < C; c++) xr[c] += yr[c];
    }
}

mrw_status mrw_audio_weight_f32(mrw_wloader *L, const char *name, int ndim, const int64_t *shape,
                                const float **data, float **tmp) {
    *data = NULL;
    *tmp = NULL;
    const mrw_tensor_info *t = mrw_wl_find(L, name);
    if (!t) return mrw_err(L->err, MRW_E_MISSING, "tensor '%s%s' is missing", L->prefix, name);
    if (!mrw_dtype_is_float(t->dtype))
        return mrw_err(L->err, MRW_E_UNSUPPORTED, "tensor '%s' has dtype %s; expected floating point",
                       t->name, mrw_dtype_name(t->dtype));
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char got[96] = "", want[96] = "";
        for (int i = 0, n = 0; i < t->ndim && n < 90; i++)
            n += snprintf(got + n, sizeof got - n, i ? ",%lld" : "%lld", (long long)t->shape[i]);
        for (int i = 0, n = 0; i < ndim && n < 90; i++)
            n += snprintf(want + n, sizeof want - n, i ? ",%lld" : "%lld", (long long)shape[i]);
        return mrw_err(L->err, MRW_E_SHAPE, "tensor '%s' has shape [%s], expected [%s]", t->name, got, want);
    }
    if (t->dtype == MRW_DT_F32) {
        *data = t->data;
        return MRW_OK;
    }
    const int64_t n = mrw_tensor_numel(t);
    if (!(*tmp = malloc((size_t)(n ? n : 1) * sizeof(float))))
        return mrw_err(L->err, MRW_E_NOMEM, "out of memory for '%s'", t->name);
    mrw_to_f32(t->dtype, t->data, *tmp, n);
    *data = *tmp;
    return MRW_OK;
}

void mrw_audio_conv_weight_tk(const float *w, int Cout, int Cin, int K, float *dst) {
    for (int o = 0; o < Cout; o++)
        for (int i = 0; i < Cin; i++)
            for (int j = 0; j < K; j++) dst[((size_t)o * K + j) * Cin + i] = w[((size_t)o * Cin + i) * K + j];
}

/* Softmax of one score row in place: x = x·scale + g·bias (bias may be NULL), max-subtracted, summed in
 * double. With `normalize` 0 the row is left unnormalised (e^(x - max)) and 1/Σ is returned for the caller
 * to apply to the product with v. */
static float softmax_row(float *x, int n, float scale, const float *bias, float g, int normalize) {
    int j = 0;
#ifdef MRW_VMATH_AVX512
    const __m512 vs = _mm512_set1_ps(scale), vg = _mm512_set1_ps(g);
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + j), vs);
        if (bias) v = _mm512_fmadd_ps(vg, _mm512_maskz_loadu_ps(m, bias + j), v);
        _mm512_mask_storeu_ps(x + j, m, v);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, v);
    }
    const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    for (j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        const __m512 e =
            _mm512_maskz_mov_ps(m, mrw_v_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), mx)));
        _mm512_mask_storeu_ps(x + j, m, e);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1,
                           _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    const float invs = (float)(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)));
    const __m512 inv = _mm512_set1_ps(invs);
    for (j = 0; normalize && j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        _mm512_mask_storeu_ps(x + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + j), inv));
    }
    return invs;
#else
    float mx = -INFINITY;
    for (; j < n; j++) {
        x[j] = x[j] * scale + (bias ? g * bias[j] : 0.0f);
        mx = x[j] > mx ? x[j] : mx;
    }
    double sum = 0;
    for (j = 0; j < n; j++) {
        x[j] = expf(x[j] - mx);
        sum += x[j];
    }
    const float inv = (float)(1.0 / sum);
    for (j = 0; normalize && j < n; j++) x[j] *= inv;
    return inv;
#endif
}

/* Query rows per block: scores [ATT_BQ, T] plus k_h and v_h stay in a 2 MB L2 up to T ~ 2000. */
#define ATT_BQ 96

/* Softmax (scale, gated relative bias) of the bq score rows of one (head, query block) task; with `inv`
 * the rows stay unnormalised and inv[i] receives row i's 1/Σ. */
static void softmax_block(float *s, int bq, int T, int t0, int h, int H, float scale,
                          const mrw_audio_relbias *rb, float *inv) {
    for (int i = 0; i < bq; i++) {
        const int t = t0 + i;
        const float *bias = rb ? rb->tab + (size_t)h * (2 * T - 1) + (T - 1 - t) : NULL;
        const float g = rb && rb->gate ? rb->gate[(size_t)t * H + h] : 1.0f;
        const float r = softmax_row(s + (size_t)i * T, T, scale, bias, g, inv == NULL);
        if (inv) inv[i] = r;
    }
}

#ifdef MRW_VMATH_AVX512
/* The shared GEMM packs both operands on every call; in attention that packing (the scores, k_h, v_h) costs
 * as much as the products (28 GFLOP/s at T=499). These kernels read the operands where they are instead:
 * q rows and score rows are broadcast from memory, k_h is stored once per head as blocks of 32 keys
 * [T/32][D][32], v_h as contiguous rows [T][D]. D <= 64 (every published Whisper/WavLM size). */
#define ATT_MAXD 64

static inline __mmask16 att_mask(int n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* The accumulators are named variables: held in arrays, GCC kept a copy of them in memory and stored all of
 * them on every step (3x slower). Partial tiles compute on clamped rows (nr real rows; the others repeat
 * the last one) and only the real rows are stored. */
#define ROWS12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* s[i][0 .. 32) for 12 query rows q + i*ldq from a key block kb [D][32]; ncols (< 32 for the last block)
 * are stored. */
static void att_qk_tile(const float *q, int ldq, int nr, int D, const float *kb, int ncols, float *s,
                        int lds) {
#define QK_DECL(i)                                               \
    const float *q##i = q + (size_t)(i < nr ? i : nr - 1) * ldq; \
    __m512 a##i = _mm512_setzero_ps(), b##i = _mm512_setzero_ps();
    ROWS12(QK_DECL)
    for (int d = 0; d < D; d++) {
        const __m512 k0 = _mm512_load_ps(kb + (size_t)d * 32), k1 = _mm512_load_ps(kb + (size_t)d * 32 + 16);
#define QK_STEP(i)                                \
    {                                             \
        const __m512 x = _mm512_set1_ps(q##i[d]); \
        a##i = _mm512_fmadd_ps(x, k0, a##i);      \
        b##i = _mm512_fmadd_ps(x, k1, b##i);      \
    }
        ROWS12(QK_STEP)
    }
    const __mmask16 m0 = att_mask(ncols), m1 = att_mask(ncols - 16);
#define QK_STORE(i)                                                \
    if (i < nr) {                                                  \
        _mm512_mask_storeu_ps(s + (size_t)i * lds, m0, a##i);      \
        _mm512_mask_storeu_ps(s + (size_t)i * lds + 16, m1, b##i); \
    }
    ROWS12(QK_STORE)
}

/* out[i][0 .. D) = rs[i]·Σ_{s < T} p[i][s]·v[s][0 .. D) for 6 rows p + i*ldp (D <= 64); rs: the rows'
 * softmax 1/Σ. */
static void att_pv_tile(const float *p, int ldp, int nr, int T, const float *vh, int D, float *o, int ldo,
                        const float *rs) {
    const __mmask16 m0 = att_mask(D), m1 = att_mask(D - 16), m2 = att_mask(D - 32), m3 = att_mask(D - 48);
#define PV_DECL(i)                                               \
    const float *p##i = p + (size_t)(i < nr ? i : nr - 1) * ldp; \
    float *o##i = o + (size_t)(i < nr ? i : nr - 1) * ldo;       \
    __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0;
    ROWS6(PV_DECL)
    for (int t = 0; t < T; t++) {
        const float *vr = vh + (size_t)t * D;
        const __m512 v0 = _mm512_maskz_loadu_ps(m0, vr), v1 = _mm512_maskz_loadu_ps(m1, vr + 16);
        const __m512 v2 = _mm512_maskz_loadu_ps(m2, vr + 32), v3 = _mm512_maskz_loadu_ps(m3, vr + 48);
#define PV_STEP(i)                                 \
    {                                              \
        const __m512 x = _mm512_set1_ps(p##i[t]);  \
        c##i##0 = _mm512_fmadd_ps(x, v0, c##i##0); \
        c##i##1 = _mm512_fmadd_ps(x, v1, c##i##1); \
        c##i##2 = _mm512_fmadd_ps(x, v2, c##i##2); \
        c##i##3 = _mm512_fmadd_ps(x, v3, c##i##3); \
    }
        ROWS6(PV_STEP)
    }
#define PV_STORE(i)                                                      \
    if (i < nr) {                                                        \
        const __m512 r = _mm512_set1_ps(rs[i]);                          \
        _mm512_mask_storeu_ps(o##i, m0, _mm512_mul_ps(c##i##0, r));      \
        _mm512_mask_storeu_ps(o##i + 16, m1, _mm512_mul_ps(c##i##1, r)); \
        _mm512_mask_storeu_ps(o##i + 32, m2, _mm512_mul_ps(c##i##2, r)); \
        _mm512_mask_storeu_ps(o##i + 48, m3, _mm512_mul_ps(c##i##3, r)); \
    }
    ROWS6(PV_STORE)
}

static void attention_avx512(mrw_kctx *k, const float *q, const float *kk, const float *v, int ld, int T,
                             int H, int D, float scale, const mrw_audio_relbias *rb, float *out, int ldo,
                             float *scratch) {
    const int nt = k->n_threads, nblk = (T + ATT_BQ - 1) / ATT_BQ, tasks = H * nblk, nkb = (T + 31) / 32;
    const size_t kh_n = (size_t)nkb * D * 32, vh_n = (size_t)T * D;
    float *kb = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63); /* aligned loads of the key blocks */
    float *vh = kb + kh_n * H, *S = vh + vh_n * H;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int h = 0; h < H; h++) {
        float *kd = kb + kh_n * h, *vd = vh + vh_n * h;
        memset(kd + (size_t)(nkb - 1) * D * 32, 0,
               (size_t)D * 32 * sizeof(float)); /* the tail block's padding */
        for (int t = 0; t < T; t++) {
            const float *kr = kk + (size_t)t * ld + (size_t)h * D;
            float *dst = kd + (size_t)(t / 32) * D * 32 + t % 32;
            for (int d = 0; d < D; d++) dst[(size_t)d * 32] = kr[d];
            memcpy(vd + (size_t)t * D, v + (size_t)t * ld + (size_t)h * D, (size_t)D * sizeof(float));
        }
    }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int task = 0; task < tasks; task++) {
        const int h = task / nblk, t0 = (task % nblk) * ATT_BQ, bq = T - t0 < ATT_BQ ? T - t0 : ATT_BQ;
        float *s = S + (size_t)omp_get_thread_num() * ATT_BQ * T;
        const float *qb = q + (size_t)t0 * ld + (size_t)h * D;
        for (int i0 = 0; i0 < bq; i0 += 12)
            for (int j = 0; j < nkb; j++)
                att_qk_tile(qb + (size_t)i0 * ld, ld, bq - i0 < 12 ? bq - i0 : 12, D,
                            kb + kh_n * h + (size_t)j * D * 32, T - 32 * j, s + (size_t)i0 * T + 32 * j, T);
        float inv[ATT_BQ];
        softmax_block(s, bq, T, t0, h, H, scale, rb, inv);
        float *ob = out + (size_t)t0 * ldo + (size_t)h * D;
        for (int i0 = 0; i0 < bq; i0 += 6)
            att_pv_tile(s + (size_t)i0 * T, T, bq - i0 < 6 ? bq - i0 : 6, T, vh + vh_n * h, D,
                        ob + (size_t)i0 * ldo, ldo, inv + i0);
    }
}
#endif

/* Portable path: two GEMMs per task through the shared mrw_matmul (single-threaded contexts, one per
 * thread, so that tasks run side by side without a fork per product). */
static mrw_status attention_gemm(mrw_kctx *k, const float *q, const float *kk, const float *v, int ld, int T,
                                 int H, int D, float scale, const mrw_audio_relbias *rb, float *out, int ldo,
                                 float *scratch) {
    const int nt = k->n_threads, nblk = (T + ATT_BQ - 1) / ATT_BQ, tasks = H * nblk;
    const size_t hd = (size_t)T * D;
    /* k_h as contiguous rows [T][D] and v_h transposed [D][T]: the GEMM's weight operand, per head */
    float *kh = scratch, *vt = kh + hd * H, *S = vt + hd * H;
    mrw_kctx *sub = calloc((size_t)nt, sizeof *sub);
    if (!sub) return MRW_E_NOMEM;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int h = 0; h < H; h++) {
        float *kd = kh + hd * h, *vd = vt + hd * h;
        for (int t = 0; t < T; t++) {
            memcpy(kd + (size_t)t * D, kk + (size_t)t * ld + (size_t)h * D, (size_t)D * sizeof(float));
            const float *vr = v + (size_t)t * ld + (size_t)h * D;
            for (int d = 0; d < D; d++) vd[(size_t)d * T + t] = vr[d];
        }
    }
    for (int i = 0; i < nt; i++) {
        mrw_kctx_init(&sub[i], 1);
        sub[i].exact = k->exact;
    }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int task = 0; task < tasks; task++) {
        const int tid = omp_get_thread_num(), h = task / nblk, t0 = (task % nblk) * ATT_BQ;
        const int bq = T - t0 < ATT_BQ ? T - t0 : ATT_BQ;
        float *s = S + (size_t)tid * ATT_BQ * T;
        mrw_mat Km, Vm;
        mrw_mat_init(&Km, MRW_DT_F32, T, D, kh + hd * h);
        mrw_mat_init(&Vm, MRW_DT_F32, D, T, vt + hd * h);
        mrw_matmul(&sub[tid], &Km, q + (size_t)t0 * ld + (size_t)h * D, ld, s, T, bq, 0);
        softmax_block(s, bq, T, t0, h, H, scale, rb, NULL);
        mrw_matmul(&sub[tid], &Vm, s, T, out + (size_t)t0 * ldo + (size_t)h * D, ldo, bq, 0);
    }
    for (int i = 0; i < nt; i++) mrw_kctx_free(&sub[i]);
    free(sub);
    return MRW_OK;
}

size_t mrw_audio_attention_scratch(int T, int H, int D, int n_threads) {
    const size_t heads = (size_t)H * (((size_t)(T + 31) / 32) * 32 * D + (size_t)T * D);
    return heads + (size_t)n_threads * ATT_BQ * T + 64;
}

mrw_status mrw_audio_attention(mrw_kctx *k, const float *q, const float *kk, const float *v, int ld, int T,
                               int H, int D, float scale, const mrw_audio_relbias *rb, float *out, int ldo,
                               float *scratch) {
#ifdef MRW_VMATH_AVX512
    if (D <= ATT_MAXD) {
        attention_avx512(k, q, kk, v, ld, T, H, D, scale, rb, out, ldo, scratch);
        return MRW_OK;
    }
#endif
    return attention_gemm(k, q, kk, v, ld, T, H, D, scale, rb, out, ldo, scratch);
}

float *mrw_audio_workspace(mrw_kctx *k, size_t n, float **owned) {
    *owned = NULL;
    if (k->n_threads + 1 < MRW_KS_SLOTS) return mrw_kctx_buf(k, MRW_KS_SLOTS - 1, n * sizeof(float));
    return *owned = malloc(n * sizeof(float));
}

/* ==================================================================================== Whisper encoder */

typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    mrw_mat wq, wk, wv, wo, fc1, fc2;
    const float *bq, *bv, *bo, *b1, *b2;
} wlayer;

struct mrw_whisper_enc {
    mrw_whisper_config cfg;
    char prefix[256];
    mrw_mat conv1, conv2; /* [d][3][Cin]: window order over [T][Cin] rows */
    const float *conv1_b, *conv2_b, *pos, *lnf_w, *lnf_b;
    wlayer *layers;
    mrw_arena arena;
};

const mrw_whisper_config *mrw_whisper_enc_config(const mrw_whisper_enc *m) { return &m->cfg; }
const char *mrw_whisper_enc_prefix(const mrw_whisper_enc *m) { return m->prefix; }

int mrw_whisper_enc_out_frames(int n_frames) { return n_frames < 1 ? 0 : (n_frames - 1) / 2 + 1; }

int mrw_whisper_keep_frames(int real_mel_frames, int out_frames) {
    int n = (real_mel_frames < 0 ? 0 : real_mel_frames) / 2 + 1;
    return n > out_frames ? out_frames : n < 1 ? 1 : n;
}

void mrw_whisper_enc_free(mrw_whisper_enc *m) {
    if (!m) return;
    mrw_arena_free(&m->arena);
    free(m);
}

/* Integers that config.json may give; -1 = absent. */
typedef struct {
    int d_model, n_mels, n_layers, n_heads, ffn_dim, n_pos;
    char act[32];
} wconfig;

mrw_status mrw_audio_config_parse(const char *path, const char *json, cJSON **root, mrw_error *err) {
    *root = NULL;
    if (!json && !path) return MRW_OK;
    char *text = NULL;
    if (!json) {
        FILE *fp = fopen(path, "rb");
        if (!fp) return mrw_err(err, MRW_E_IO, "cannot open config '%s'", path);
        long n = -1;
        if (fseek(fp, 0, SEEK_END) == 0) n = ftell(fp);
        if (n >= 0 && n <= (1 << 20) && fseek(fp, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1)) &&
            fread(text, 1, (size_t)n, fp) == (size_t)n) {
            text[n] = 0;
        } else {
            free(text);
            text = NULL;
        }
        fclose(fp);
        if (!text)
            return mrw_err(err, n > (1 << 20) ? MRW_E_LIMIT : MRW_E_IO, "cannot read config '%s'%s", path,
                           n > (1 << 20) ? " (larger than 1 MiB)" : "");
        json = text;
    }
    cJSON *r = cJSON_Parse(json);
    const int from_file = text != NULL;
    free(text);
    if (!r || !cJSON_IsObject(r)) {
        cJSON_Delete(r);
        return mrw_err(err, MRW_E_FORMAT, "config %s: not a JSON object", from_file ? path : "text");
    }
    *root = r;
    return MRW_OK;
}

static int json_int(const cJSON *root, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e9 ? (int)v->valuedouble : -1;
}

static mrw_status parse_config(const mrw_whisper_params *p, wconfig *c, mrw_error *err) {
    memset(c, -1, sizeof *c);
    strcpy(c->act, "gelu");
    cJSON *root = NULL;
    mrw_status s = mrw_audio_config_parse(p ? p->config_path : NULL, p ? p->config_json : NULL, &root, err);
    if (s || !root) return s;
    c->d_model = json_int(root, "d_model");
    c->n_mels = json_int(root, "num_mel_bins");
    c->n_layers = json_int(root, "encoder_layers");
    c->n_heads = json_int(root, "encoder_attention_heads");
    c->ffn_dim = json_int(root, "encoder_ffn_dim");
    c->n_pos = json_int(root, "max_source_positions");
    if (c->n_heads < 0) c->n_heads = 4; /* absent from a config: WhisperConfig's default */
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    if (cJSON_IsString(act)) snprintf(c->act, sizeof c->act, "%s", act->valuestring);
    cJSON_Delete(root);
    return MRW_OK;
}

/* Where the encoder's tensors are: `base` + one of the known layouts. */
static int find_prefix(const mrw_tfile *f, const char *base, char *out, size_t n) {
    static const char *const layouts[] = {"model.encoder.", "encoder.", ""};
    for (int i = 0; i < 3; i++) {
        char name[512];
        snprintf(out, n, "%s%s", base, layouts[i]);
        snprintf(name, sizeof name, "%sconv1.weight", out);
        if (mrw_tfile_find(f, name)) return 1;
    }
    return 0;
}

static const mrw_tensor_info *peek(mrw_wloader *L, const char *name) {
    char full[512];
    snprintf(full, sizeof full, "%s%s", L->prefix, name);
    return mrw_tfile_find(L->f, full);
}

/* A Linear weight: f32 in place, other types converted unless keep_lowp. */
static mrw_status get_mat(mrw_wloader *L, const char *name, int rows, int cols, int keep_lowp, mrw_mat *out) {
    const mrw_tensor_info *t = peek(L, name);
    return mrw_wl_mat(L, name, rows, cols, t && (t->dtype == MRW_DT_F32 || keep_lowp), out);
}

static mrw_status get_vec(mrw_wloader *L, const char *fmt, int l, int n, const float **out) {
    char name[256];
    snprintf(name, sizeof name, fmt, l);
    float *v;
    mrw_status s = mrw_wl_vec(L, name, n, &v);
    *out = v;
    return s;
}

/* Conv1d weight [Cout][Cin][3] + bias, reordered to window order. */
static mrw_status load_conv(mrw_wloader *L, const char *name, int Cout, int Cin, mrw_mat *W,
                            const float **b) {
    char key[64];
    snprintf(key, sizeof key, "%s.weight", name);
    const float *w;
    float *tmp, *wt;
    const int64_t shape[3] = {Cout, Cin, 3};
    mrw_status s = mrw_audio_weight_f32(L, key, 3, shape, &w, &tmp);
    if (s) return s;
    if (!(wt = mrw_arena_keep(L->arena, malloc((size_t)Cout * Cin * 3 * sizeof *wt)))) {
        free(tmp);
        return mrw_err(L->err, MRW_E_NOMEM, "out of memory for '%s%s'", L->prefix, key);
    }
    mrw_audio_conv_weight_tk(w, Cout, Cin, 3, wt);
    free(tmp);
    mrw_mat_init(W, MRW_DT_F32, Cout, 3 * Cin, wt);
    snprintf(key, sizeof key, "%s.bias", name);
    float *bv;
    s = mrw_wl_vec(L, key, Cout, &bv);
    *b = bv;
    return s;
}

static mrw_status load_layer(mrw_wloader *L, int l, const mrw_whisper_config *c, int lowp, wlayer *w) {
    const int d = c->d_model, f = c->ffn_dim;
    char n[128];
    mrw_status s;
#define MAT(field, nm, r, co)                                      \
    do {                                                           \
        snprintf(n, sizeof n, "layers.%d.%s", l, nm);              \
        if ((s = get_mat(L, n, r, co, lowp, &w->field))) return s; \
    } while (0)
    MAT(wq, "self_attn.q_proj.weight", d, d);
    MAT(wk, "self_attn.k_proj.weight", d, d);
    MAT(wv, "self_attn.v_proj.weight", d, d);
    MAT(wo, "self_attn.out_proj.weight", d, d);
    MAT(fc1, "fc1.weight", f, d);
    MAT(fc2, "fc2.weight", d, f);
#undef MAT
    if ((s = get_vec(L, "layers.%d.self_attn.q_proj.bias", l, d, &w->bq)) ||
        (s = get_vec(L, "layers.%d.self_attn.v_proj.bias", l, d, &w->bv)) ||
        (s = get_vec(L, "layers.%d.self_attn.out_proj.bias", l, d, &w->bo)) ||
        (s = get_vec(L, "layers.%d.fc1.bias", l, f, &w->b1)) ||
        (s = get_vec(L, "layers.%d.fc2.bias", l, d, &w->b2)) ||
        (s = get_vec(L, "layers.%d.self_attn_layer_norm.weight", l, d, &w->ln1_w)) ||
        (s = get_vec(L, "layers.%d.self_attn_layer_norm.bias", l, d, &w->ln1_b)) ||
        (s = get_vec(L, "layers.%d.final_layer_norm.weight", l, d, &w->ln2_w)) ||
        (s = get_vec(L, "layers.%d.final_layer_norm.bias", l, d, &w->ln2_b)))
        return s;
    return MRW_OK;
}

/* A config value must agree with the tensors. */
static mrw_status agree(mrw_error *err, const char *key, int cfg, int tensors, const char *from) {
    if (cfg < 0 || cfg == tensors) return MRW_OK;
    return mrw_err(err, MRW_E_SHAPE, "config %s = %d but the tensors give %d (%s)", key, cfg, tensors, from);
}

static mrw_status derive_config(mrw_wloader *L, const mrw_whisper_params *p, const wconfig *wc,
                                mrw_whisper_config *c, mrw_error *err) {
    const mrw_tensor_info *c1 = peek(L, "conv1.weight"), *pe = peek(L, "embed_positions.weight");
    if (c1->ndim != 3 || c1->shape[2] != 3 || c1->shape[0] < 1 || c1->shape[1] < 1 || c1->shape[0] > 65536 ||
        c1->shape[1] > 65536)
        return mrw_err(err, MRW_E_SHAPE, "tensor '%s' must be [d_model, n_mels, 3]", c1->name);
    c->d_model = (int)c1->shape[0];
    c->n_mels = (int)c1->shape[1];
    if (!pe) return mrw_err(err, MRW_E_MISSING, "tensor '%sembed_positions.weight' is missing", L->prefix);
    if (pe->ndim != 2 || pe->shape[1] != c->d_model || pe->shape[0] < 1 || pe->shape[0] > (1 << 20))
        return mrw_err(err, MRW_E_SHAPE, "tensor '%s' must be [max_source_positions, %d]", pe->name,
                       c->d_model);
    c->n_pos = (int)pe->shape[0];
    c->n_layers = 0;
    for (char n[64]; snprintf(n, sizeof n, "layers.%d.fc1.weight", c->n_layers), peek(L, n);) c->n_layers++;
    if (!c->n_layers)
        return mrw_err(err, MRW_E_MISSING, "tensor '%slayers.0.fc1.weight' is missing", L->prefix);
    const mrw_tensor_info *f1 = peek(L, "layers.0.fc1.weight");
    if (f1->ndim != 2 || f1->shape[0] < 1 || f1->shape[0] > (1 << 20))
        return mrw_err(err, MRW_E_SHAPE, "tensor '%s' must be [ffn_dim, %d]", f1->name, c->d_model);
    c->ffn_dim = (int)f1->shape[0];
    const char *from = p && p->config_json ? "config JSON" : p && p->config_path ? p->config_path : "";
    mrw_status s;
    if ((s = agree(err, "d_model", wc->d_model, c->d_model, from)) ||
        (s = agree(err, "num_mel_bins", wc->n_mels, c->n_mels, from)) ||
        (s = agree(err, "encoder_layers", wc->n_layers, c->n_layers, from)) ||
        (s = agree(err, "encoder_ffn_dim", wc->ffn_dim, c->ffn_dim, from)) ||
        (s = agree(err, "max_source_positions", wc->n_pos, c->n_pos, from)))
        return s;
    c->heads_from_config = 1;
    if (p && p->n_heads > 0)
        c->n_heads = p->n_heads;
    else if (wc->n_heads > 0)
        c->n_heads = wc->n_heads;
    else {
        c->n_heads = c->d_model / 64;
        c->heads_from_config = 0;
        if (c->d_model % 64)
            return mrw_err(err, MRW_E_ARG,
                           "d_model %d is not a multiple of 64: give the head count (config.json)",
                           c->d_model);
    }
    if (c->n_heads < 1 || c->d_model % c->n_heads)
        return mrw_err(err, MRW_E_SHAPE, "%d attention heads do not divide d_model %d", c->n_heads,
                       c->d_model);
    if (mrw_audio_act_parse(wc->act, &c->act))
        return mrw_err(err, MRW_E_UNSUPPORTED, "activation_function '%s' is not supported", wc->act);
    c->ln_eps = 1e-5f;
    return MRW_OK;
}

static mrw_status load(mrw_whisper_enc *m, const mrw_tfile *f, const mrw_whisper_params *p, mrw_error *err) {
    wconfig wc;
    mrw_status s = parse_config(p, &wc, err);
    if (s) return s;
    const char *base = p && p->prefix ? p->prefix : "";
    if (!find_prefix(f, base, m->prefix, sizeof m->prefix) &&
        !(!(p && p->prefix) && find_prefix(f, "encoder.model.", m->prefix, sizeof m->prefix)))
        return mrw_err(
            err, MRW_E_MISSING,
            "no Whisper encoder: none of '%smodel.encoder.conv1.weight', '%sencoder.conv1.weight', "
            "'%sconv1.weight' exists",
            base, base, base);
    mrw_wloader L;
    if ((s = mrw_wl_init(&L, f, m->prefix, &m->arena, err))) return s;
    mrw_whisper_config *c = &m->cfg;
    const int lowp = p && p->keep_lowp;
    if (!(s = derive_config(&L, p, &wc, c, err)) &&
        !(s = load_conv(&L, "conv1", c->d_model, c->n_mels, &m->conv1, &m->conv1_b)) &&
        !(s = load_conv(&L, "conv2", c->d_model, c->d_model, &m->conv2, &m->conv2_b))) {
        float *pos;
        const int64_t shape[2] = {c->n_pos, c->d_model};
        s = mrw_wl_f32(&L, "embed_positions.weight", 2, shape, &pos);
        m->pos = pos;
    }
    if (!s && !(m->layers = mrw_arena_keep(&m->arena, calloc((size_t)c->n_layers, sizeof *m->layers))))
        s = mrw_err(err, MRW_E_NOMEM, "out of memory");
    for (int l = 0; !s && l < c->n_layers; l++) s = load_layer(&L, l, c, lowp, &m->layers[l]);
    if (!s) {
        float *w, *b;
        if (!(s = mrw_wl_vec(&L, "layer_norm.weight", c->d_model, &w)) &&
            !(s = mrw_wl_vec(&L, "layer_norm.bias", c->d_model, &b))) {
            m->lnf_w = w;
            m->lnf_b = b;
        }
    }
    if (!s) s = mrw_wl_check_unused(&L, NULL);
    mrw_wl_done(&L);
    return s;
}

mrw_status mrw_whisper_enc_load(const mrw_tfile *f, const mrw_whisper_params *p, mrw_whisper_enc **out,
                                mrw_error *err) {
    *out = NULL;
    if (!f) return mrw_err(err, MRW_E_ARG, "no tensor file");
    mrw_whisper_enc *m = calloc(1, sizeof *m);
    if (!m) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    mrw_status s = load(m, f, p, err);
    if (s) {
        mrw_whisper_enc_free(m);
        return s;
    }
    *out = m;
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------------ forward */

static void layer_forward(const mrw_whisper_enc *m, const wlayer *w, mrw_kctx *k, float *x, float *h,
                          float *q, float *kk, float *v, float *att, float *ff, float *ascr, int T,
                          mrw_status *st) {
    const mrw_whisper_config *c = &m->cfg;
    const int d = c->d_model, nt = k->n_threads, D = d / c->n_heads;
    mrw_layernorm(x, h, T, d, w->ln1_w, w->ln1_b, c->ln_eps, nt);
    mrw_audio_linear(k, &w->wq, w->bq, h, d, T, q, d, 0);
    mrw_audio_linear(k, &w->wk, NULL, h, d, T, kk, d, 0);
    mrw_audio_linear(k, &w->wv, w->bv, h, d, T, v, d, 0);
    if ((*st = mrw_audio_attention(k, q, kk, v, d, T, c->n_heads, D, 1.0f / sqrtf((float)D), NULL, att, d,
                                   ascr)))
        return;
    mrw_audio_linear(k, &w->wo, NULL, att, d, T, h, d, 0); /* h is free once q, k, v exist */
    mrw_audio_residual(x, h, w->bo, T, d, nt);
    mrw_layernorm(x, h, T, d, w->ln2_w, w->ln2_b, c->ln_eps, nt);
    mrw_audio_linear(k, &w->fc1, NULL, h, d, T, ff, c->ffn_dim, 0);
    mrw_audio_bias_act(ff, c->ffn_dim, w->b1, T, c->ffn_dim, c->act, nt);
    mrw_audio_linear(k, &w->fc2, NULL, ff, c->ffn_dim, T, h, d, 0);
    mrw_audio_residual(x, h, w->b2, T, d, nt);
}

mrw_status mrw_whisper_enc_forward(const mrw_whisper_enc *m, mrw_kctx *k, const float *mel, int n_frames,
                                   float *out, mrw_error *err) {
    if (!m || !k || !mel || !out) return mrw_err(err, MRW_E_ARG, "whisper encoder: NULL argument");
    const mrw_whisper_config *c = &m->cfg;
    if (n_frames < 1 || n_frames > 2 * c->n_pos)
        return mrw_err(err, n_frames < 1 ? MRW_E_ARG : MRW_E_LIMIT,
                       "whisper encoder: %d mel frames; it takes 1 to %d (transformers requires exactly %d)",
                       n_frames, 2 * c->n_pos, 2 * c->n_pos);
    const int d = c->d_model, nm = c->n_mels, F = n_frames, T = mrw_whisper_enc_out_frames(F),
              nt = k->n_threads;
    /* mel as [F+2][n_mels] and conv1's output as [F+2][d], each with a zero row either side: the padding of
     * both convolutions, so that every output window is a contiguous run of input rows */
    const size_t n_in = (size_t)(F + 2) * nm, n_h1 = (size_t)(F + 2) * d, n_td = (size_t)T * d;
    const size_t n_att = mrw_audio_attention_scratch(T, c->n_heads, d / c->n_heads, nt);
    const size_t total = n_in + n_h1 + 6 * n_td + (size_t)T * c->ffn_dim + n_att;
    float *owned, *buf = mrw_audio_workspace(k, total, &owned);
    if (!buf) return mrw_err(err, MRW_E_NOMEM, "whisper encoder: out of memory for %d frames", F);
    float *xin = buf, *h1 = xin + n_in, *x = h1 + n_h1, *h = x + n_td, *q = h + n_td, *kk = q + n_td,
          *v = kk + n_td, *att = v + n_td, *ff = att + n_td, *ascr = ff + (size_t)T * c->ffn_dim;
    memset(xin, 0, (size_t)nm * sizeof(float));
    memset(xin + (size_t)(F + 1) * nm, 0, (size_t)nm * sizeof(float));
    for (int t = 0; t < F; t++)
        for (int i = 0; i < nm; i++) xin[(size_t)(t + 1) * nm + i] = mel[(size_t)i * F + t];
    memset(h1, 0, (size_t)d * sizeof(float));
    memset(h1 + (size_t)(F + 1) * d, 0, (size_t)d * sizeof(float));
    mrw_audio_linear(k, &m->conv1, NULL, xin, nm, F, h1 + d, d, 0);
    mrw_audio_bias_act(h1 + d, d, m->conv1_b, F, d, MRW_ACT_GELU, nt);
    mrw_audio_linear(k, &m->conv2, NULL, h1, 2 * d, T, x, d, 0);
    mrw_audio_bias_act(x, d, m->conv2_b, T, d, MRW_ACT_GELU, nt);
    for (size_t i = 0; i < n_td; i++) x[i] += m->pos[i];
    mrw_status s = MRW_OK;
    for (int l = 0; l < c->n_layers && !s; l++)
        layer_forward(m, &m->layers[l], k, x, h, q, kk, v, att, ff, ascr, T, &s);
    if (!s) mrw_layernorm(x, out, T, d, m->lnf_w, m->lnf_b, c->ln_eps, nt);
    free(owned);
    return s ? mrw_err(err, s, "whisper encoder: out of memory for attention over %d frames", T) : MRW_OK;
}
