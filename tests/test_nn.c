/* The encoder building blocks (kernels/cpu/nn.c) against naive double-precision implementations written
 * from their definitions: linear + bias, GELU variants, softmax, multi-head attention with and without a
 * bias, and grouped strided padded 1-D convolution. Tolerance: 1e-5 relative to the magnitude of the terms. */
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/nn.h"
#include "test.h"

static uint64_t rng = 12345;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}
static float *rnd(size_t n, float scale) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

static void activations(int nt) {
    const size_t n = 40000;
    float *x = rnd(n, 6), *a = malloc(n * 4), *b = malloc(n * 4), *c = malloc(n * 4), *d = malloc(n * 4);
    memcpy(a, x, n * 4); memcpy(b, x, n * 4); memcpy(c, x, n * 4); memcpy(d, x, n * 4);
    mrw_gelu_erf(a, n, nt);
    mrw_gelu_tanh(b, n, nt);
    mrw_quick_gelu(c, n, nt);
    mrw_relu(d, n, nt);
    double e1 = 0, e2 = 0, e3 = 0, e4 = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        e1 = fmax(e1, fabs(a[i] - 0.5 * v * (1 + erf(v / sqrt(2.0)))));
        e2 = fmax(e2, fabs(b[i] - 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))));
        e3 = fmax(e3, fabs(c[i] - v / (1 + exp(-1.702 * v))));
        e4 = fmax(e4, fabs(d[i] - (v > 0 ? v : 0)));
    }
    CHECKF(e1 < 1e-5 && e2 < 1e-5 && e3 < 1e-5 && e4 == 0, "gelu_erf %g gelu_tanh %g quick %g relu %g", e1, e2, e3, e4);
    free(x); free(a); free(b); free(c); free(d);
}

static void attention(mrw_kctx *k, int T, int H, int D, int with_bias) {
    const int C = H * D, ld = C + 3;
    float *q = rnd((size_t)T * ld, 1), *kk = rnd((size_t)T * ld, 1), *v = rnd((size_t)T * ld, 1);
    float *bias = with_bias ? rnd((size_t)H * T * T, 2) : NULL;
    float *out = calloc((size_t)T * ld, 4), *scratch = malloc(mrw_attention_scratch_floats(T, D) * 4);
    const float scale = 1.0f / sqrtf((float)D);
    mrw_attention(k, q, ld, kk, ld, v, ld, T, H, D, scale, bias, out, ld, scratch);
    double worst = 0;
    double *p = malloc((size_t)T * sizeof *p);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++) {
            double mx = -1e300, z = 0;
            for (int j = 0; j < T; j++) {
                double s = 0;
                for (int d = 0; d < D; d++) s += (double)q[(size_t)i * ld + h * D + d] * kk[(size_t)j * ld + h * D + d];
                s = s * scale + (bias ? bias[((size_t)h * T + i) * T + j] : 0);
                p[j] = s;
                mx = fmax(mx, s);
            }
            for (int j = 0; j < T; j++) z += (p[j] = exp(p[j] - mx));
            for (int d = 0; d < D; d++) {
                double o = 0;
                for (int j = 0; j < T; j++) o += p[j] / z * v[(size_t)j * ld + h * D + d];
                worst = fmax(worst, fabs(o - out[(size_t)i * ld + h * D + d]));
            }
        }
    CHECKF(worst < 1e-5, "attention T=%d H=%d D=%d bias=%d: %g", T, H, D, with_bias, worst);
    free(p); free(q); free(kk); free(v); free(bias); free(out); free(scratch);
}

static void conv1d(mrw_kctx *k, int Tin, int Cin, int Cout, int K, int stride, int pad, int groups, int with_bias) {
    const int Tout = mrw_conv1d_out_len(Tin, K, stride, pad);
    float *x = rnd((size_t)Tin * Cin, 1), *w = rnd((size_t)Cout * (Cin / groups) * K, 0.5f);
    float *b = with_bias ? rnd((size_t)Cout, 1) : NULL, *y = malloc((size_t)Tout * Cout * 4);
    float *scratch = malloc(mrw_conv1d_scratch_floats(Tin, Cin, K, stride, pad, groups) * 4);
    CHECK(mrw_conv1d(k, x, Tin, Cin, w, b, Cout, K, stride, pad, groups, y, scratch) == Tout);
    const int cg = Cin / groups, og = Cout / groups;
    double worst = 0;
    for (int t = 0; t < Tout; t++)
        for (int o = 0; o < Cout; o++) {
            const int g = o / og;
            double s = b ? b[o] : 0, mag = 1e-3;
            for (int ci = 0; ci < cg; ci++)
                for (int j = 0; j < K; j++) {
                    int ti = t * stride - pad + j;
                    if (ti < 0 || ti >= Tin) continue;
                    double term = (double)w[((size_t)o * cg + ci) * K + j] * x[(size_t)ti * Cin + g * cg + ci];
                    s += term;
                    mag += fabs(term);
                }
            worst = fmax(worst, fabs(s - y[(size_t)t * Cout + o]) / mag);
        }
    CHECKF(worst < 1e-5, "conv1d Tin=%d Cin=%d Cout=%d K=%d s=%d p=%d g=%d: %g", Tin, Cin, Cout, K, stride, pad, groups, worst);
    free(x); free(w); free(b); free(y); free(scratch);
}

int main(void) {
    for (int nt = 1; nt <= 2; nt++) {
        mrw_kctx k;
        mrw_kctx_init(&k, nt);
        activations(nt);
        attention(&k, 7, 2, 16, 0);
        attention(&k, 50, 3, 64, 1);
        attention(&k, 33, 1, 40, 0);
        conv1d(&k, 20, 8, 12, 3, 1, 1, 1, 1);      /* Whisper conv1 shape */
        conv1d(&k, 31, 16, 16, 3, 2, 1, 1, 1);     /* Whisper conv2 */
        conv1d(&k, 400, 1, 32, 10, 5, 0, 1, 0);    /* WavLM first feature conv */
        conv1d(&k, 45, 32, 32, 16, 1, 8, 4, 1);    /* WavLM positional conv (grouped) */
        conv1d(&k, 25, 24, 48, 3, 2, 2, 1, 1);     /* v1 audio adapter (k3 s2 p2) */
        conv1d(&k, 57, 24, 24, 3, 2, 0, 1, 0);     /* v2 vision compression (k3 s2, no pad, no bias) */
        conv1d(&k, 60, 16, 16, 5, 4, 0, 1, 1);     /* --compress 5,4 */
        CHECK(mrw_conv1d_out_len(2, 5, 1, 0) == -1);
        mrw_kctx_free(&k);
    }
    TEST_MAIN_END();
}
