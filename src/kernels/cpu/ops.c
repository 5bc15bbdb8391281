#include "kernels/cpu/ops.h"

#include <math.h>
#include <omp.h>

/* Mean and variance accumulate in double: C-element sums in fp32 lose digits that GroupNorm and the head
 * later amplify (the full-size parity test is sensitive to this at the first token). */
void mrw_layernorm(const float *x, float *y, int T, int C, const float *w, const float *b, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * C;
        float *yr = y + (size_t)t * C;
        double sum = 0;
        for (int c = 0; c < C; c++) sum += xr[c];
        const double mean = sum / C;
        double var = 0;
        for (int c = 0; c < C; c++) {
            double d = xr[c] - mean;
            var += d * d;
        }
        var /= C;
        const float inv = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
        for (int c = 0; c < C; c++) yr[c] = (xr[c] - m) * inv * w[c] + b[c];
    }
}

void mrw_groupnorm(float *y, int T, int H, int N, const float *w, const float *b, float eps) {
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            float *g = y + (size_t)t * H * N + (size_t)h * N;
            const float *gw = w + h * N, *gb = b + h * N;
            double sum = 0, var = 0;
            for (int i = 0; i < N; i++) sum += g[i];
            const double mean = sum / N;
            for (int i = 0; i < N; i++) var += (g[i] - mean) * (g[i] - mean);
            var /= N;
            const float inv = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
            for (int i = 0; i < N; i++) g[i] = (g[i] - m) * inv * gw[i] + gb[i];
        }
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

void mrw_wkv7(float *S, int H, int N, int T, const float *r, const float *w, const float *k, const float *v,
              const float *a, const float *b, float *y, int n_threads) {
    const int C = H * N;
    if (n_threads > H) n_threads = H;
    if ((double)H * N * N * T < 65536.0) n_threads = 1; /* a fork costs more than the scan */
    if (n_threads < 1) n_threads = 1;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1)
    for (int h = 0; h < H; h++) {
        const size_t off = (size_t)h * N;
        wkv7_head(S + (size_t)h * N * N, N, T, C, r + off, w + off, k + off, v + off, a + off, b + off, y + off);
    }
}

void mrw_vec_sigmoid(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + expf(-x[i]));
}

void mrw_vec_tanh(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
}
