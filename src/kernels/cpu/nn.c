#include "kernels/cpu/nn.h"

#include <math.h>
#include <string.h>

#include "kernels/cpu/vmath.h"

#define ELEMS_PER_TASK 8192 /* element-wise work is split into tasks of this size across threads */

void mrw_add_bias(float *Y, int ldy, const float *bias, int T, int C, int nt) {
    if (!bias) return;
#pragma omp parallel for num_threads(nt) schedule(static) if (T >= 32 && nt > 1)
    for (int t = 0; t < T; t++) {
        float *y = Y + (size_t)t * ldy;
        for (int c = 0; c < C; c++) y[c] += bias[c];
    }
}

void mrw_linear(mrw_kctx *k, const mrw_mat *W, const float *bias, const float *X, int ldx, int T, float *Y, int ldy) {
    mrw_matmul(k, W, X, ldx, Y, ldy, T, 0);
    mrw_add_bias(Y, ldy, bias, T, W->rows, k->n_threads);
}

/* Applies f to n floats split into tasks across threads. */
#define ELEMENTWISE(n, nt, body)                                                                              \
    do {                                                                                                      \
        const long tasks_ = (long)(((n) + ELEMS_PER_TASK - 1) / ELEMS_PER_TASK);                              \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (tasks_ >= 4 && nt > 1)")              \
        for (long task_ = 0; task_ < tasks_; task_++) {                                                       \
            const size_t i0_ = (size_t)task_ * ELEMS_PER_TASK;                                                \
            const size_t i1_ = i0_ + ELEMS_PER_TASK < (n) ? i0_ + ELEMS_PER_TASK : (n);                       \
            for (size_t i = i0_; i < i1_; i++) { body; }                                                      \
        }                                                                                                     \
    } while (0)

void mrw_gelu_erf(float *x, size_t n, int nt) {
    ELEMENTWISE(n, nt, x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f)));
}

void mrw_gelu_tanh(float *x, size_t n, int nt) {
    /* 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) = x·σ(2·√(2/π)·(x + 0.044715·x³)) */
    ELEMENTWISE(n, nt, {
        const float v = x[i];
        const float u = 1.5957691216057308f * (v + 0.044715f * v * v * v);
        x[i] = v / (1.0f + expf(-u));
    });
}

void mrw_quick_gelu(float *x, size_t n, int nt) { ELEMENTWISE(n, nt, x[i] = x[i] / (1.0f + expf(-1.702f * x[i]))); }

void mrw_relu(float *x, size_t n, int nt) { ELEMENTWISE(n, nt, x[i] = x[i] > 0 ? x[i] : 0); }

void mrw_softmax_rows(float *x, int rows, int cols, int ld, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (rows >= 16 && nt > 1)
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * ld;
        float mx = -INFINITY;
        for (int c = 0; c < cols; c++) mx = row[c] > mx ? row[c] : mx;
        double sum = 0;
        for (int c = 0; c < cols; c++) {
            row[c] = expf(row[c] - mx);
            sum += row[c];
        }
        const float inv = (float)(1.0 / sum);
        for (int c = 0; c < cols; c++) row[c] *= inv;
    }
}

size_t mrw_attention_scratch_floats(int T, int D) {
    /* scores [T, T], contiguous k_h [T, D], transposed v_h [D, T] */
    return (size_t)T * T + 2 * (size_t)T * D + 64;
}

void mrw_attention(mrw_kctx *k, const float *q, int ldq, const float *kk, int ldk, const float *v, int ldv, int T,
                   int H, int D, float scale, const float *bias, float *out, int ldo, float *scratch) {
    float *S = scratch, *Kh = S + (size_t)T * T, *Vt = Kh + (size_t)T * D;
    const int nt = k->n_threads;
    for (int h = 0; h < H; h++) {
        /* the GEMM reads its weight operand as contiguous rows: gather k_h, and v_h transposed */
        for (int t = 0; t < T; t++) memcpy(Kh + (size_t)t * D, kk + (size_t)t * ldk + (size_t)h * D, (size_t)D * sizeof(float));
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) Vt[(size_t)d * T + t] = v[(size_t)t * ldv + (size_t)h * D + d];
        mrw_mat Km, Vm;
        mrw_mat_init(&Km, MRW_DT_F32, T, D, Kh);
        mrw_mat_init(&Vm, MRW_DT_F32, D, T, Vt);
        mrw_matmul(k, &Km, q + (size_t)h * D, ldq, S, T, T, 0); /* S = q_h k_hᵀ */
        const float *bh = bias ? bias + (size_t)h * T * T : NULL;
#pragma omp parallel for num_threads(nt) schedule(static) if (T >= 32 && nt > 1)
        for (int i = 0; i < T; i++) {
            float *row = S + (size_t)i * T;
            if (bh)
                for (int j = 0; j < T; j++) row[j] = row[j] * scale + bh[(size_t)i * T + j];
            else
                for (int j = 0; j < T; j++) row[j] *= scale;
        }
        mrw_softmax_rows(S, T, T, T, nt);
        mrw_matmul(k, &Vm, S, T, out + (size_t)h * D, ldo, T, 0); /* out_h = A v_h */
    }
}

int mrw_conv1d_out_len(int Tin, int K, int stride, int pad) {
    if (Tin < 1 || K < 1 || stride < 1 || pad < 0) return -1;
    long span = (long)Tin + 2L * pad - K;
    return span < 0 ? -1 : (int)(span / stride + 1);
}

size_t mrw_conv1d_scratch_floats(int Tin, int Cin, int K, int stride, int pad, int groups) {
    int Tout = mrw_conv1d_out_len(Tin, K, stride, pad);
    if (Tout < 1 || groups < 1) return 0;
    return (size_t)Tout * (size_t)(Cin / groups) * K + 64;
}

int mrw_conv1d(mrw_kctx *k, const float *x, int Tin, int Cin, const float *w, const float *bias, int Cout, int K,
               int stride, int pad, int groups, float *y, float *scratch) {
    const int Tout = mrw_conv1d_out_len(Tin, K, stride, pad);
    if (Tout < 1 || groups < 1 || Cin % groups || Cout % groups) return -1;
    const int cin_g = Cin / groups, cout_g = Cout / groups, cols = cin_g * K;
    const int nt = k->n_threads;
    for (int g = 0; g < groups; g++) {
        /* im2col: row t holds the window of output t, ordered (input channel, tap) like the weight */
#pragma omp parallel for num_threads(nt) schedule(static) if (Tout >= 64 && nt > 1)
        for (int t = 0; t < Tout; t++) {
            float *row = scratch + (size_t)t * cols;
            for (int ci = 0; ci < cin_g; ci++)
                for (int j = 0; j < K; j++) {
                    const int ti = t * stride - pad + j;
                    row[ci * K + j] = (ti >= 0 && ti < Tin) ? x[(size_t)ti * Cin + (size_t)g * cin_g + ci] : 0.0f;
                }
        }
        mrw_mat Wg;
        mrw_mat_init(&Wg, MRW_DT_F32, cout_g, cols, w + (size_t)g * cout_g * cols);
        mrw_linear(k, &Wg, bias ? bias + (size_t)g * cout_g : NULL, scratch, cols, Tout, y + (size_t)g * cout_g, Cout);
    }
    return Tout;
}
