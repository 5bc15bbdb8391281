#include "kernels/cpu/ops.h"

#include <math.h>
#include <omp.h>

#include "kernels/cpu/vmath.h"

/* Mean and variance accumulate in double: C-element sums in fp32 lose digits that GroupNorm and the head
 * later amplify (the full-size parity test is sensitive to this at the first token). */
/* Σx and Σ(x-m)² of n floats in double. */
static void sums_f64(const float *x, int n, double *mean_out, double *var_out) {
    double sum = 0, var = 0;
    int c = 0;
#ifdef MRW_VMATH_AVX512
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    for (; c + 16 <= n; c += 16) {
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm256_loadu_ps(x + c)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_loadu_ps(x + c + 8)));
    }
    sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
#endif
    for (; c < n; c++) sum += x[c];
    const double mean = sum / n;
    c = 0;
#ifdef MRW_VMATH_AVX512
    const __m512d m = _mm512_set1_pd(mean);
    __m512d v0 = _mm512_setzero_pd(), v1 = v0;
    for (; c + 16 <= n; c += 16) {
        __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + c)), m);
        __m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + c + 8)), m);
        v0 = _mm512_fmadd_pd(d0, d0, v0);
        v1 = _mm512_fmadd_pd(d1, d1, v1);
    }
    var = _mm512_reduce_add_pd(_mm512_add_pd(v0, v1));
#endif
    for (; c < n; c++) var += (x[c] - mean) * (x[c] - mean);
    *mean_out = mean;
    *var_out = var / n;
}

void mrw_layernorm(const float *x, float *y, int T, int C, const float *w, const float *b, float eps, int nt) {
    MRW_PARALLEL_FOR_IF(T >= MRW_ROWS_MIN_PARALLEL && nt > 1, int, t, T, {
        const float *xr = x + (size_t)t * C;
        float *yr = y + (size_t)t * C;
        double mean, var;
        sums_f64(xr, C, &mean, &var);
        const float inv = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
        for (int c = 0; c < C; c++) yr[c] = (xr[c] - m) * inv * w[c] + b[c];
    });
}

void mrw_groupnorm(float *y, int T, int H, int N, const float *w, const float *b, float eps, int nt) {
    MRW_PARALLEL_FOR_IF(T >= MRW_ROWS_MIN_PARALLEL && nt > 1, long, th, (long)T * H, {
        float *g = y + (size_t)th * N;
        const float *gw = w + (th % H) * N, *gb = b + (th % H) * N;
        double mean, var;
        sums_f64(g, N, &mean, &var);
        const float inv = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
        for (int i = 0; i < N; i++) g[i] = (g[i] - m) * inv * gw[i] + gb[i];
    });
}

/* One head, T steps. The row loop keeps S[i][:] in registers-sized chunks; j is contiguous. */
static void wkv7_head(float *S, int N, int T, int C, const float *r, const float *w, const float *k,
                      const float *v, const float *a, const float *b, float *y) {
    for (int t = 0; t < T; t++) {
        const size_t o = (size_t)t * C;
        const float *rt = r + o, *wt = w + o, *kt = k + o, *vt = v + o, *at = a + o, *bt = b + o;
        float *yt = y + o;
        for (int i = 0; i < N; i++) {
            float *Si = S + (size_t)i * N;
            float sa = 0;
            for (int j = 0; j < N; j++) sa += Si[j] * at[j];
            const float vi = vt[i];
            float acc = 0;
            for (int j = 0; j < N; j++) {
                float s = Si[j] * wt[j] + sa * bt[j] + vi * kt[j];
                Si[j] = s;
                acc += s * rt[j];
            }
            yt[i] = acc;
        }
    }
}

#ifdef MRW_VMATH_AVX512
/* N = 64: the head's r, w, k, a, b stay in 20 registers for the step; each row of S is 4 vectors. */
static void wkv7_head64(float *S, int T, int C, const float *r, const float *w, const float *k, const float *v,
                        const float *a, const float *b, float *y) {
    for (int t = 0; t < T; t++) {
        const size_t o = (size_t)t * C;
        const float *rt = r + o, *wt = w + o, *kt = k + o, *vt = v + o, *at = a + o, *bt = b + o;
        float *yt = y + o;
        __m512 W_[4], A_[4], B_[4], K_[4], R_[4];
        for (int q = 0; q < 4; q++) {
            W_[q] = _mm512_loadu_ps(wt + 16 * q);
            A_[q] = _mm512_loadu_ps(at + 16 * q);
            B_[q] = _mm512_loadu_ps(bt + 16 * q);
            K_[q] = _mm512_loadu_ps(kt + 16 * q);
            R_[q] = _mm512_loadu_ps(rt + 16 * q);
        }
        for (int i = 0; i < 64; i++) {
            float *Si = S + (size_t)i * 64;
            __m512 s[4];
            for (int q = 0; q < 4; q++) s[q] = _mm512_loadu_ps(Si + 16 * q);
            __m512 pa = _mm512_mul_ps(s[0], A_[0]);
            for (int q = 1; q < 4; q++) pa = _mm512_fmadd_ps(s[q], A_[q], pa);
            const __m512 sa = _mm512_set1_ps(_mm512_reduce_add_ps(pa)), vi = _mm512_set1_ps(vt[i]);
            __m512 pr = _mm512_setzero_ps();
            for (int q = 0; q < 4; q++) {
                s[q] = _mm512_fmadd_ps(s[q], W_[q], _mm512_fmadd_ps(sa, B_[q], _mm512_mul_ps(vi, K_[q])));
                _mm512_storeu_ps(Si + 16 * q, s[q]);
                pr = _mm512_fmadd_ps(s[q], R_[q], pr);
            }
            yt[i] = _mm512_reduce_add_ps(pr);
        }
    }
}
#endif

static void wkv7_one_head(float *S, int h, int N, int T, int C, const float *r, const float *w, const float *k,
                          const float *v, const float *a, const float *b, float *y) {
    const size_t off = (size_t)h * N;
#ifdef MRW_VMATH_AVX512
    if (N == 64) {
        wkv7_head64(S + (size_t)h * N * N, T, C, r + off, w + off, k + off, v + off, a + off, b + off, y + off);
        return;
    }
#endif
    wkv7_head(S + (size_t)h * N * N, N, T, C, r + off, w + off, k + off, v + off, a + off, b + off, y + off);
}

void mrw_wkv7(float *S, int H, int N, int T, const float *r, const float *w, const float *k, const float *v,
              const float *a, const float *b, float *y, int n_threads) {
    const int C = H * N;
    if (n_threads > H) n_threads = H;
    if ((double)H * N * N * T < 65536.0) n_threads = 1; /* a fork costs more than the scan */
    if (n_threads < 1) n_threads = 1;
    const int nt = n_threads;
    MRW_PARALLEL_FOR_IF(nt > 1, int, h, H, { wkv7_one_head(S, h, N, T, C, r, w, k, v, a, b, y); });
}

static void sigmoid_span(float *x, size_t n) {
    size_t i = 0;
#ifdef MRW_VMATH_AVX512
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, mrw_v_sigmoid(_mm512_loadu_ps(x + i)));
#endif
    for (; i < n; i++) x[i] = mrw_s_sigmoid(x[i]);
}

static void tanh_span(float *x, size_t n) {
    size_t i = 0;
#ifdef MRW_VMATH_AVX512
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, mrw_v_tanh(_mm512_loadu_ps(x + i)));
#endif
    for (; i < n; i++) x[i] = tanhf(x[i]);
}

#define SPAN 4096
void mrw_vec_sigmoid(float *x, size_t n, int nt) {
    const long spans = (long)((n + SPAN - 1) / SPAN);
    MRW_PARALLEL_FOR_IF(spans >= 4 && nt > 1, long, s, spans,
                        { sigmoid_span(x + (size_t)s * SPAN, n - (size_t)s * SPAN < SPAN ? n - (size_t)s * SPAN : SPAN); });
}

void mrw_vec_tanh(float *x, size_t n, int nt) {
    const long spans = (long)((n + SPAN - 1) / SPAN);
    MRW_PARALLEL_FOR_IF(spans >= 4 && nt > 1, long, s, spans,
                        { tanh_span(x + (size_t)s * SPAN, n - (size_t)s * SPAN < SPAN ? n - (size_t)s * SPAN : SPAN); });
}

static void decay_row(float *row, const float *w0, int C) {
    const float scale = -0.60653065971263342f; /* -e^{-1/2} */
    int i = 0;
#ifdef MRW_VMATH_AVX512
    for (; i + 16 <= C; i += 16) {
        __m512 s = mrw_v_sigmoid(_mm512_add_ps(_mm512_loadu_ps(w0 + i), _mm512_loadu_ps(row + i)));
        _mm512_storeu_ps(row + i, mrw_v_exp(_mm512_mul_ps(s, _mm512_set1_ps(scale))));
    }
#endif
    for (; i < C; i++) row[i] = expf(scale * mrw_s_sigmoid(w0[i] + row[i]));
}

void mrw_vec_decay(float *w, const float *w0, int T, int C, int nt) {
    MRW_PARALLEL_FOR_IF(T >= MRW_ROWS_MIN_PARALLEL && nt > 1, int, t, T, { decay_row(w + (size_t)t * C, w0, C); });
}

static void sigmoid_bias_row(float *row, const float *bias, int C) {
    int i = 0;
#ifdef MRW_VMATH_AVX512
    for (; i + 16 <= C; i += 16)
        _mm512_storeu_ps(row + i, mrw_v_sigmoid(_mm512_add_ps(_mm512_loadu_ps(bias + i), _mm512_loadu_ps(row + i))));
#endif
    for (; i < C; i++) row[i] = mrw_s_sigmoid(bias[i] + row[i]);
}

void mrw_vec_sigmoid_bias(float *x, const float *bias, int T, int C, int nt) {
    MRW_PARALLEL_FOR_IF(T >= MRW_ROWS_MIN_PARALLEL && nt > 1, int, t, T, { sigmoid_bias_row(x + (size_t)t * C, bias, C); });
}
