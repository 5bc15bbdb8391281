/* The WavLM encoder on the GPU in bf16 (wavlm_gpu.h; the CPU model src/models/wavlm.c is the reference). GEMMs are
 * cuBLAS (bf16 inputs, fp32 accumulation; the attention and the grouped positional convolution as strided-batched
 * GEMMs); the row LayerNorm, bias + activation and the GEMM call are vit_gpu_kernels.cuh's, shared with the ViT and
 * Whisper encoders; the conv stack's first layer, GroupNorm, unfolds, the gate and the biased softmax are below. */
#include <cublas_v2.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vit_gpu_kernels.cuh"

extern "C" {
#include "kernels/cuda/wavlm_gpu.h"
}

using namespace mrwcu;

namespace {

/* One tensor of the table. kind: 0 fp32 vector store, 1 bf16 matrix as stored, 2 bf16 conv weight permuted from
 * PyTorch's [co][ci][k] to window order [co][k][ci]. */
struct wl_entry {
    char name[112];
    size_t numel, off;
    int kind, co, ci, k;
    double fan; /* fan-in for the random init (0: a vector) */
};

struct wl_layer {
    size_t qkvw, ow, w1, w2;                                                 /* into wb */
    size_t qkvb, ob, b1, b2, gru, grub, gruc, ln1w, ln1b, ln2w, ln2b;        /* into wf */
};

#define GN_SLICES 64

} // namespace

struct mrw_wavlm_gpu {
    mrw_wavlm_config cfg;
    cudaStream_t st;
    cublasHandle_t blas;
    wl_entry *tab;
    int n_tab, cap_tab;
    wl_layer *L;
    size_t conv_w[MRW_WAVLM_MAX_CONV], conv_b[MRW_WAVLM_MAX_CONV], conv_nw[MRW_WAVLM_MAX_CONV],
        conv_nb[MRW_WAVLM_MAX_CONV];
    int conv_norm[MRW_WAVLM_MAX_CONV];
    size_t fp_lnw, fp_lnb, fp_w, fp_b, pos_w, pos_b, enc_lnw, enc_lnb, rel;
    size_t nwb, nwf;
    bf16 *wb;
    float *wf;
    float *rel_host; /* rel_attn_embed [num_buckets][H], for the bias table */
    /* activations, sized for cap_n samples */
    int cap_n, tab_T;
    float *wave, *y, *x, *pc, *S, *gate, *btab, *ss;
    double *part;
    bf16 *hA, *hB, *cols, *xb, *qkv, *P, *att, *ff;
    size_t wbytes, abytes;
};

/* ------------------------------------------------------------------------------------------------ kernels */
namespace {

/* Conv layer 0 (one input channel): y[t][o] = sum_j w[o][j] x[S t + j], fp32. */
__global__ void conv0_kernel(size_t n, int Co, int K, int S, const float *x, const float *w, float *y) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t t = e / Co;
        const int o = (int)(e % Co);
        const float *xr = x + t * S, *wr = w + (size_t)o * K;
        float s = 0.f;
        for (int j = 0; j < K; j++) s += wr[j] * xr[j];
        y[e] = s;
    }
}

/* Overlapping windows of [T][Ci] rows: cols[t][r] = h[t*step + r], r < KC (= K*Ci, step = S*Ci). */
__global__ void unfold_kernel(size_t n, int KC, int step, const bf16 *h, bf16 *cols) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t t = e / KC;
        cols[e] = h[t * step + e % KC];
    }
}

/* GroupNorm (one group per channel, over time), stage 1: per slice of rows, sum and sum of squares per channel in
 * double. Block (32, 8), grid (ceil(C/32), slices). */
__global__ void gn_part_kernel(int T, int C, const float *y, double *part) {
    __shared__ double sh[2][8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    double s1 = 0, s2 = 0;
    if (c < C)
        for (int r = blockIdx.y * 8 + threadIdx.y; r < T; r += 8 * gridDim.y) {
            const double v = y[(size_t)r * C + c];
            s1 += v, s2 += v * v;
        }
    sh[0][threadIdx.y][threadIdx.x] = s1;
    sh[1][threadIdx.y][threadIdx.x] = s2;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        double a = 0, b = 0;
        for (int i = 0; i < 8; i++) a += sh[0][i][threadIdx.x], b += sh[1][i][threadIdx.x];
        part[((size_t)blockIdx.y * 2) * C + c] = a;
        part[((size_t)blockIdx.y * 2 + 1) * C + c] = b;
    }
}

/* Stage 2: ss[c] = w / sqrt(var + 1e-5), ss[C + c] = b - mean ss[c] (the CPU's channel_norm_act). */
__global__ void gn_final_kernel(int T, int C, int slices, const double *part, const float *w, const float *b,
                                float *ss) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double sum = 0, sq = 0;
    for (int i = 0; i < slices; i++) sum += part[(size_t)i * 2 * C + c], sq += part[((size_t)i * 2 + 1) * C + c];
    const double mean = sum / T, var = sq / T - mean * mean, inv = 1.0 / sqrt((var > 0 ? var : 0) + 1e-5);
    ss[c] = (float)(inv * w[c]);
    ss[C + c] = (float)(b[c] - mean * inv * w[c]);
}

/* v = act(y sc[c] + sh[c]) (sc / sh optional); written to yo (fp32, may be y itself) and / or ho (bf16). */
__global__ void affine_act_kernel(size_t n, int C, const float *y, const float *sc, const float *sh, int act,
                                  float *yo, bf16 *ho) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % C);
        float v = y[e];
        if (sc) v *= sc[c];
        if (sh) v += sh[c];
        v = act_f(v, act);
        if (yo) yo[e] = v;
        if (ho) ho[e] = __float2bfloat16_rn(v);
    }
}

/* Positional convolution windows per group: cols[g][t][j*cg + i] = xb[t + j - pad][g*cg + i] (0 outside [0, T)). */
__global__ void pos_cols_kernel(size_t n, int T, int K, int cg, int d, int pad, const bf16 *xb, bf16 *cols) {
    const size_t per_t = (size_t)K * cg, per_g = (size_t)T * per_t;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int g = (int)(e / per_g);
        const size_t rem = e % per_g;
        const int t = (int)(rem / per_t), r = (int)(rem % per_t), j = r / cg, i = r % cg, s = t + j - pad;
        cols[e] = s >= 0 && s < T ? xb[(size_t)s * d + (size_t)g * cg + i] : __float2bfloat16_rn(0.f);
    }
}

/* x += act(pc + b) */
__global__ void pos_add_kernel(size_t n, int d, float *x, const float *pc, const float *b, int act) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        x[e] += act_f(pc[e] + b[e % d], act);
}

/* One warp per (t, h): the 8 outputs of gru_rel_pos_linear on head h of u[t], then
 * gate = sigmoid(a) (sigmoid(b) const_h - 1) + 2 with a, b the sums of outputs 0..3 and 4..7 (bias included). */
__global__ void gate_kernel(int rows, int H, int D, int d, const bf16 *u, const float *gw, const float *gb,
                            const float *gc, float *gate) {
    const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows) return;
    const int t = r / H, h = r % H;
    const bf16 *ur = u + (size_t)t * d + (size_t)h * D;
    float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = lane; i < D; i += 32) {
        const float v = __bfloat162float(ur[i]);
#pragma unroll
        for (int q = 0; q < 8; q++) p[q] += v * gw[q * D + i];
    }
#pragma unroll
    for (int q = 0; q < 8; q++) p[q] = warp_sum(p[q]);
    if (lane == 0) {
        const float sa = (p[0] + gb[0]) + (p[1] + gb[1]) + (p[2] + gb[2]) + (p[3] + gb[3]);
        const float sb = (p[4] + gb[4]) + (p[5] + gb[5]) + (p[6] + gb[6]) + (p[7] + gb[7]);
        const float ga = 1.f / (1.f + expf(-sa)), gbb = 1.f / (1.f + expf(-sb));
        gate[r] = ga * (gbb * gc[h] - 1.f) + 2.f;
    }
}

/* One warp per row (h, t) of S [H][T][T] (already scaled): P = softmax_s(S + gate[t][h] tab[h][s - t + T - 1]),
 * bf16. */
__global__ void softmax_bias_kernel(int rows, int T, int H, const float *S, const float *gate, const float *tab,
                                    bf16 *P) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int h = row / T, t = row % T;
    const float *s = S + (size_t)row * T, *bias = tab + (size_t)h * (2 * T - 1) + (T - 1 - t);
    const float g = gate[(size_t)t * H + h];
    bf16 *p = P + (size_t)row * T;
    float mx = -INFINITY;
    for (int j = lane; j < T; j += 32) mx = fmaxf(mx, s[j] + g * bias[j]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.f;
    for (int j = lane; j < T; j += 32) sum += expf(s[j] + g * bias[j] - mx);
    const float inv = 1.f / warp_sum(sum);
    for (int j = lane; j < T; j += 32) p[j] = __float2bfloat16_rn(expf(s[j] + g * bias[j] - mx) * inv);
}

} // namespace

/* ------------------------------------------------------------------------------------------------ helpers */

static mrw_status cuda_chk(cudaError_t e, const char *what, mrw_error *err) {
    return cuda_status(e, "wavlm (cuda)", what, err);
}

static mrw_status gemm(mrw_wavlm_gpu *v, int transB, int M, int N, int K, float alpha, const bf16 *A, int lda,
                       const bf16 *B, int ldb, float beta, cudaDataType_t ct, void *C, int ldc, mrw_error *err) {
    return enc_gemm(v->blas, transB, M, N, K, alpha, A, lda, B, ldb, beta, ct, C, ldc, "wavlm", err);
}

/* Row-major C_i[M][N] = alpha A_i op(B_i) + beta C_i for i < batch, element strides sA, sB, sC. */
static mrw_status sbgemm(mrw_wavlm_gpu *v, int transB, int M, int N, int K, float alpha, const bf16 *A, int lda,
                         long long sA, const bf16 *B, int ldb, long long sB, float beta, cudaDataType_t ct, void *C,
                         int ldc, long long sC, int batch, mrw_error *err) {
    const float b = beta;
    const cublasStatus_t s = cublasGemmStridedBatchedEx(
        v->blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha, B, CUDA_R_16BF, ldb, sB, A,
        CUDA_R_16BF, lda, sA, &b, C, ct, ldc, sC, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s == CUBLAS_STATUS_SUCCESS) return MRW_OK;
    return mrw_err(err, MRW_E_INTERNAL, "wavlm (cuda): cublasGemmStridedBatchedEx: %s", cublasGetStatusString(s));
}

static int act_code(mrw_audio_act a) { return a == MRW_ACT_GELU ? 3 : a == MRW_ACT_GELU_TANH ? 1 : 4; }

/* transformers' relative position bucket (key - query), every step in float32 as torch computes it; the same
 * formula as the CPU model's mrw_wavlm_rel_bucket (this file links without the library). */
static int rel_bucket(int rel, int num_buckets, int max_distance) {
    const int nb = num_buckets / 2, max_exact = nb / 2;
    const int base = rel > 0 ? nb : 0, n = rel < 0 ? -rel : rel;
    if (n < max_exact) return base + n;
    float f = logf((float)n / (float)max_exact);
    f = f / (float)log((double)max_distance / max_exact);
    f = f * (float)(nb - max_exact);
    const long large = (long)((float)max_exact + f);
    return base + (int)(large < nb - 1 ? large : nb - 1);
}

extern "C" int mrw_wavlm_gpu_out_frames(const mrw_wavlm_gpu *v, int n_samples) {
    long t = n_samples;
    for (int i = 0; i < v->cfg.n_conv; i++) {
        if (t < v->cfg.conv_kernel[i]) return 0;
        t = (t - v->cfg.conv_kernel[i]) / v->cfg.conv_stride[i] + 1;
    }
    return (int)t;
}

/* ------------------------------------------------------------------------------------------------ table */

static int add(mrw_wavlm_gpu *v, const char *name, size_t numel, int kind, size_t off, double fan, int co = 0,
               int ci = 0, int k = 0) {
    if (v->n_tab >= v->cap_tab) return -1;
    wl_entry *e = &v->tab[v->n_tab++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->numel = numel, e->off = off, e->kind = kind, e->fan = fan, e->co = co, e->ci = ci, e->k = k;
    return 0;
}

static int build_table(mrw_wavlm_gpu *v) {
    const mrw_wavlm_config *c = &v->cfg;
    const size_t d = c->hidden, F = c->ffn_dim, H = c->n_heads, D = d / H;
    v->cap_tab = 24 + 4 * c->n_conv + 24 * c->n_layers;
    v->tab = (wl_entry *)calloc((size_t)v->cap_tab, sizeof *v->tab);
    v->L = (wl_layer *)calloc((size_t)c->n_layers, sizeof *v->L);
    if (!v->tab || !v->L) return -1;
    size_t wb = 0, wf = 0;
    char nm[112];
#define VEC(field, n, fan) (field = wf, wf += ((n) + 15) / 16 * 16, add(v, nm, (n), 0, field, fan))
#define NM(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)
#define SETNM(...) snprintf(nm, sizeof nm, __VA_ARGS__)
    int bad = 0, ci = 1;
    for (int i = 0; i < c->n_conv; i++) {
        const int co = c->conv_dim[i], k = c->conv_kernel[i];
        SETNM("feature_extractor.conv_layers.%d.conv.weight", i);
        if (i == 0) {
            bad |= VEC(v->conv_w[0], (size_t)co * k, (double)k);
        } else {
            v->conv_w[i] = wb, wb += (size_t)co * k * ci;
            bad |= add(v, nm, (size_t)co * k * ci, 2, v->conv_w[i], (double)k * ci, co, ci, k);
        }
        if (c->conv_bias) {
            SETNM("feature_extractor.conv_layers.%d.conv.bias", i);
            bad |= VEC(v->conv_b[i], (size_t)co, 0.0);
        }
        v->conv_norm[i] = c->norm_layer || i == 0;
        if (v->conv_norm[i]) {
            SETNM("feature_extractor.conv_layers.%d.layer_norm.weight", i);
            bad |= VEC(v->conv_nw[i], (size_t)co, 0.0);
            SETNM("feature_extractor.conv_layers.%d.layer_norm.bias", i);
            bad |= VEC(v->conv_nb[i], (size_t)co, 0.0);
        }
        ci = co;
    }
    const size_t cl = (size_t)ci, cg = d / c->pos_groups, K = c->pos_kernel;
    SETNM("feature_projection.layer_norm.weight");
    bad |= VEC(v->fp_lnw, cl, 0.0);
    SETNM("feature_projection.layer_norm.bias");
    bad |= VEC(v->fp_lnb, cl, 0.0);
    v->fp_w = wb, wb += d * cl;
    bad |= add(v, NM("feature_projection.projection.weight"), d * cl, 1, v->fp_w, (double)cl);
    SETNM("feature_projection.projection.bias");
    bad |= VEC(v->fp_b, d, 0.0);
    v->pos_w = wb, wb += d * cg * K;
    bad |= add(v, NM("encoder.pos_conv_embed.conv.weight"), d * cg * K, 2, v->pos_w, (double)cg * K, (int)d,
               (int)cg, (int)K);
    SETNM("encoder.pos_conv_embed.conv.bias");
    bad |= VEC(v->pos_b, d, 0.0);
    SETNM("encoder.layer_norm.weight");
    bad |= VEC(v->enc_lnw, d, 0.0);
    SETNM("encoder.layer_norm.bias");
    bad |= VEC(v->enc_lnb, d, 0.0);
    SETNM("encoder.layers.0.attention.rel_attn_embed.weight");
    bad |= VEC(v->rel, (size_t)c->num_buckets * H, 0.0);
    for (int l = 0; l < c->n_layers && !bad; l++) {
        wl_layer *y = &v->L[l];
        y->qkvw = wb, wb += 3 * d * d;
        y->qkvb = wf, wf += (3 * d + 15) / 16 * 16;
        const char *q3[3] = {"q", "k", "v"};
        for (int q = 0; q < 3; q++) {
            bad |= add(v, NM("encoder.layers.%d.attention.%s_proj.weight", l, q3[q]), d * d, 1, y->qkvw + q * d * d,
                       (double)d);
            bad |= add(v, NM("encoder.layers.%d.attention.%s_proj.bias", l, q3[q]), d, 0, y->qkvb + q * d, 0.0);
        }
        y->ow = wb, wb += d * d;
        bad |= add(v, NM("encoder.layers.%d.attention.out_proj.weight", l), d * d, 1, y->ow, (double)d);
        SETNM("encoder.layers.%d.attention.out_proj.bias", l);
        bad |= VEC(y->ob, d, 0.0);
        y->w1 = wb, wb += F * d;
        bad |= add(v, NM("encoder.layers.%d.feed_forward.intermediate_dense.weight", l), F * d, 1, y->w1, (double)d);
        SETNM("encoder.layers.%d.feed_forward.intermediate_dense.bias", l);
        bad |= VEC(y->b1, F, 0.0);
        y->w2 = wb, wb += d * F;
        bad |= add(v, NM("encoder.layers.%d.feed_forward.output_dense.weight", l), d * F, 1, y->w2, (double)F);
        SETNM("encoder.layers.%d.feed_forward.output_dense.bias", l);
        bad |= VEC(y->b2, d, 0.0);
        SETNM("encoder.layers.%d.attention.gru_rel_pos_linear.weight", l);
        bad |= VEC(y->gru, 8 * D, (double)D);
        SETNM("encoder.layers.%d.attention.gru_rel_pos_linear.bias", l);
        bad |= VEC(y->grub, 8, 0.0);
        SETNM("encoder.layers.%d.attention.gru_rel_pos_const", l);
        bad |= VEC(y->gruc, H, 0.0);
        SETNM("encoder.layers.%d.layer_norm.weight", l);
        bad |= VEC(y->ln1w, d, 0.0);
        SETNM("encoder.layers.%d.layer_norm.bias", l);
        bad |= VEC(y->ln1b, d, 0.0);
        SETNM("encoder.layers.%d.final_layer_norm.weight", l);
        bad |= VEC(y->ln2w, d, 0.0);
        SETNM("encoder.layers.%d.final_layer_norm.bias", l);
        bad |= VEC(y->ln2b, d, 0.0);
    }
#undef VEC
#undef NM
#undef SETNM
    v->nwb = wb, v->nwf = wf;
    return bad ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------------ public */

extern "C" mrw_status mrw_wavlm_gpu_new(const mrw_wavlm_config *cfg, void *stream, mrw_wavlm_gpu **out,
                                        mrw_error *err) {
    *out = NULL;
    const mrw_wavlm_config *c = cfg;
    int ok = c && c->n_conv >= 1 && c->n_conv <= MRW_WAVLM_MAX_CONV && c->hidden >= 2 && c->hidden % 2 == 0 &&
             c->hidden <= 16384 && c->n_layers >= 1 && c->n_heads >= 1 && c->hidden % c->n_heads == 0 &&
             c->ffn_dim >= 2 && c->ffn_dim % 2 == 0 && c->ffn_dim <= 65536 && c->pos_kernel >= 1 &&
             c->pos_kernel <= 1024 && c->pos_groups >= 1 && c->hidden % c->pos_groups == 0 && c->num_buckets >= 4 &&
             c->max_distance > c->num_buckets / 4 && c->ln_eps > 0 && (int)c->act >= 0 && (int)c->act <= 2 &&
             (int)c->feat_act >= 0 && (int)c->feat_act <= 2;
    for (int i = 0; ok && i < c->n_conv; i++)
        ok = c->conv_dim[i] >= 1 && c->conv_dim[i] <= 16384 && c->conv_kernel[i] >= 1 && c->conv_kernel[i] <= 4096 &&
             c->conv_stride[i] >= 1 && c->conv_stride[i] <= 4096;
    if (!ok)
        return mrw_err(err, MRW_E_ARG, "wavlm (cuda): unsupported shape (hidden %d, heads %d, layers %d, ffn %d, "
                       "%d conv layers, positional conv k%d g%d, %d buckets)", c ? c->hidden : 0, c ? c->n_heads : 0,
                       c ? c->n_layers : 0, c ? c->ffn_dim : 0, c ? c->n_conv : 0, c ? c->pos_kernel : 0,
                       c ? c->pos_groups : 0, c ? c->num_buckets : 0);
    mrw_wavlm_gpu *v = (mrw_wavlm_gpu *)calloc(1, sizeof *v);
    if (!v) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    v->cfg = *cfg;
    v->st = (cudaStream_t)stream;
    if (build_table(v) || !(v->rel_host = (float *)calloc((size_t)c->num_buckets * c->n_heads, sizeof(float)))) {
        mrw_wavlm_gpu_free(v);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    if (cublasCreate(&v->blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(v->blas, v->st) != CUBLAS_STATUS_SUCCESS) {
        mrw_wavlm_gpu_free(v);
        return mrw_err(err, MRW_E_INTERNAL, "wavlm (cuda): cublasCreate failed");
    }
    cudaError_t e = cudaMalloc((void **)&v->wb, v->nwb * 2);
    if (e == cudaSuccess) e = cudaMalloc((void **)&v->wf, v->nwf * 4);
    if (e == cudaSuccess) e = cudaMemset(v->wb, 0, v->nwb * 2);
    if (e == cudaSuccess) e = cudaMemset(v->wf, 0, v->nwf * 4);
    if (e != cudaSuccess) {
        cudaGetLastError();
        const double mb = (v->nwb * 2.0 + v->nwf * 4.0) / 1e6;
        mrw_wavlm_gpu_free(v);
        return mrw_err(err, MRW_E_NOMEM, "wavlm (cuda): cannot allocate %.1f MB of weights: %s", mb,
                       cudaGetErrorString(e));
    }
    v->wbytes = v->nwb * 2 + v->nwf * 4;
    *out = v;
    return MRW_OK;
}

static void free_acts(mrw_wavlm_gpu *v) {
    void *b[] = {v->wave, v->y, v->x, v->pc, v->S, v->gate, v->btab, v->ss, v->part, v->hA, v->hB, v->cols,
                 v->xb, v->qkv, v->P, v->att, v->ff};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) cudaFree(b[i]);
    v->wave = v->y = v->x = v->pc = v->S = v->gate = v->btab = v->ss = NULL;
    v->part = NULL;
    v->hA = v->hB = v->cols = v->xb = v->qkv = v->P = v->att = v->ff = NULL;
    v->cap_n = 0, v->tab_T = 0, v->abytes = 0;
}

extern "C" void mrw_wavlm_gpu_free(mrw_wavlm_gpu *v) {
    if (!v) return;
    if (v->blas) {
        cudaStreamSynchronize(v->st);
        cublasDestroy(v->blas);
    }
    free_acts(v);
    cudaFree(v->wb);
    cudaFree(v->wf);
    free(v->tab), free(v->L), free(v->rel_host);
    free(v);
}

extern "C" const mrw_wavlm_config *mrw_wavlm_gpu_config(const mrw_wavlm_gpu *v) { return &v->cfg; }
extern "C" size_t mrw_wavlm_gpu_bytes(const mrw_wavlm_gpu *v) { return v->wbytes + v->abytes; }

extern "C" const char *mrw_wavlm_gpu_tensor(const mrw_wavlm_gpu *v, int i, size_t *numel) {
    if (i < 0 || i >= v->n_tab) return NULL;
    if (numel) *numel = v->tab[i].numel;
    return v->tab[i].name;
}

extern "C" mrw_status mrw_wavlm_gpu_set(mrw_wavlm_gpu *v, const char *name, const float *data, size_t numel,
                                        mrw_error *err) {
    if (!v || !name || !data) return mrw_err(err, MRW_E_ARG, "wavlm (cuda): NULL tensor");
    for (int i = 0; i < v->n_tab; i++) {
        const wl_entry *e = &v->tab[i];
        if (strcmp(e->name, name)) continue;
        if (numel != e->numel)
            return mrw_err(err, MRW_E_ARG, "wavlm (cuda): %s has %zu elements, %zu expected", name, numel, e->numel);
        TRY(cuda_chk(cudaStreamSynchronize(v->st), "upload", err));
        if (strstr(name, "rel_attn_embed")) {
            memcpy(v->rel_host, data, numel * sizeof(float));
            v->tab_T = 0; /* rebuild the bias table */
        }
        if (e->kind == 0) {
            TRY(cuda_chk(cudaMemcpyAsync(v->wf + e->off, data, numel * 4, cudaMemcpyHostToDevice, v->st), name, err));
            return cuda_chk(cudaStreamSynchronize(v->st), name, err);
        }
        bf16 *h = (bf16 *)malloc(numel * sizeof(bf16));
        if (!h) return mrw_err(err, MRW_E_NOMEM, "out of memory");
        if (e->kind == 1) {
            for (size_t j = 0; j < numel; j++) h[j] = __float2bfloat16_rn(data[j]); /* nearest even */
        } else {                                                                      /* [co][ci][k] -> [co][k][ci] */
            for (int o = 0; o < e->co; o++)
                for (int c = 0; c < e->ci; c++)
                    for (int j = 0; j < e->k; j++)
                        h[((size_t)o * e->k + j) * e->ci + c] = __float2bfloat16_rn(data[((size_t)o * e->ci + c) * e->k + j]);
        }
        cudaError_t ce = cudaMemcpyAsync(v->wb + e->off, h, numel * 2, cudaMemcpyHostToDevice, v->st);
        if (ce == cudaSuccess) ce = cudaStreamSynchronize(v->st);
        free(h);
        return cuda_chk(ce, name, err);
    }
    return mrw_err(err, MRW_E_ARG, "wavlm (cuda): no tensor named %s", name);
}

extern "C" mrw_status mrw_wavlm_gpu_init_random(mrw_wavlm_gpu *v, uint64_t seed, mrw_error *err) {
    for (int i = 0; i < v->n_tab; i++) {
        const wl_entry *e = &v->tab[i];
        float lo = -0.1f, hi = 0.1f;
        if (e->fan > 0) {
            hi = (float)sqrt(3.0 / e->fan), lo = -hi;
        } else if (strstr(e->name, "norm.weight")) {
            lo = 0.8f, hi = 1.2f;
        } else if (strstr(e->name, "gru_rel_pos_const")) {
            lo = 0.5f, hi = 1.5f;
        }
        if (e->kind)
            rand_kernel<<<grid_for(e->numel, 256), 256, 0, v->st>>>(e->numel, v->wb + e->off,
                                                                     seed + 0x1000003ull * i, lo, hi);
        else
            rand_kernel<<<grid_for(e->numel, 256), 256, 0, v->st>>>(e->numel, v->wf + e->off,
                                                                     seed + 0x1000003ull * i, lo, hi);
    }
    TRY(launched("wavlm random init", err));
    TRY(cuda_chk(cudaMemcpyAsync(v->rel_host, v->wf + v->rel, (size_t)v->cfg.num_buckets * v->cfg.n_heads * 4,
                                 cudaMemcpyDeviceToHost, v->st), "init", err));
    v->tab_T = 0;
    return cuda_chk(cudaStreamSynchronize(v->st), "init", err);
}

/* Activation buffers for clips of up to n samples (T frames). */
static mrw_status ensure(mrw_wavlm_gpu *v, int n, int T, mrw_error *err) {
    if (n <= v->cap_n) return MRW_OK;
    TRY(cuda_chk(cudaStreamSynchronize(v->st), "resize", err));
    free_acts(v);
    const mrw_wavlm_config *c = &v->cfg;
    size_t ny = 0, ncols = 0, Cmax = 0;
    long t = n;
    int ci = 1;
    for (int i = 0; i < c->n_conv; i++) {
        t = (t - c->conv_kernel[i]) / c->conv_stride[i] + 1;
        const size_t co = c->conv_dim[i];
        ny = ny > (size_t)t * co ? ny : (size_t)t * co;
        if (i > 0 && c->conv_kernel[i] > c->conv_stride[i]) {
            const size_t nc = (size_t)t * c->conv_kernel[i] * ci;
            ncols = ncols > nc ? ncols : nc;
        }
        Cmax = Cmax > co ? Cmax : co;
        ci = (int)co;
    }
    const size_t d = c->hidden, H = c->n_heads, Tz = T;
    const size_t npos = Tz * c->pos_kernel * d;
    ncols = ncols > npos ? ncols : npos;
    struct {
        void **p;
        size_t bytes;
        const char *what;
    } al[] = {{(void **)&v->wave, (size_t)n * 4, "waveform"},
              {(void **)&v->y, ny * 4, "conv outputs"},
              {(void **)&v->hA, ny * 2, "conv rows"},
              {(void **)&v->hB, ny * 2, "conv rows"},
              {(void **)&v->cols, ncols * 2, "unfolded windows"},
              {(void **)&v->part, (size_t)GN_SLICES * 2 * Cmax * 8, "GroupNorm sums"},
              {(void **)&v->ss, 2 * Cmax * 4, "GroupNorm scales"},
              {(void **)&v->x, Tz * d * 4, "residual stream"},
              {(void **)&v->pc, Tz * d * 4, "positional conv output"},
              {(void **)&v->xb, Tz * d * 2, "bf16 rows"},
              {(void **)&v->qkv, Tz * 3 * d * 2, "q/k/v"},
              {(void **)&v->S, H * Tz * Tz * 4, "attention scores"},
              {(void **)&v->P, H * Tz * Tz * 2, "attention probabilities"},
              {(void **)&v->gate, Tz * H * 4, "gates"},
              {(void **)&v->btab, H * (2 * Tz - 1) * 4, "position bias table"},
              {(void **)&v->att, Tz * d * 2, "attention output"},
              {(void **)&v->ff, Tz * c->ffn_dim * 2, "FFN hidden rows"}};
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        const cudaError_t e = cudaMalloc(al[i].p, al[i].bytes ? al[i].bytes : 16);
        if (e != cudaSuccess) {
            cudaGetLastError();
            size_t fr = 0, tot = 0;
            cudaMemGetInfo(&fr, &tot);
            const size_t b = al[i].bytes;
            free_acts(v);
            return mrw_err(err, MRW_E_NOMEM, "wavlm (cuda): cannot allocate %.2f GiB of %s for %d samples (%.2f GiB "
                           "free): encode a shorter clip", b / 1073741824.0, al[i].what, n, fr / 1073741824.0);
        }
        v->abytes += al[i].bytes;
    }
    v->cap_n = n;
    return MRW_OK;
}

/* The gated position bias table tab[h][r + T - 1] = rel_attn_embed[bucket(r)][h], r = s - t. */
static mrw_status bias_table(mrw_wavlm_gpu *v, int T, mrw_error *err) {
    if (v->tab_T == T) return MRW_OK;
    const int H = v->cfg.n_heads, W = 2 * T - 1;
    std::vector<float> h((size_t)H * W);
    for (int r = -(T - 1); r <= T - 1; r++) {
        const int b = rel_bucket(r, v->cfg.num_buckets, v->cfg.max_distance);
        for (int k = 0; k < H; k++) h[(size_t)k * W + r + T - 1] = v->rel_host[(size_t)b * H + k];
    }
    /* on the stream (ordered before this forward's kernels, after the last one's); pageable, so staged at once */
    TRY(cuda_chk(cudaMemcpyAsync(v->btab, h.data(), h.size() * 4, cudaMemcpyHostToDevice, v->st), "bias table", err));
    v->tab_T = T;
    return MRW_OK;
}

#define LN_GRID(rows) ((unsigned)(((rows) + 7) / 8))

extern "C" mrw_status mrw_wavlm_gpu_forward_host(mrw_wavlm_gpu *v, const float *wave, int n, float *out, int *frames,
                                                 mrw_error *err) {
    if (frames) *frames = 0;
    if (!v || !wave || !out) return mrw_err(err, MRW_E_ARG, "wavlm (cuda): NULL argument");
    if (n > MRW_WAVLM_MAX_SAMPLES)
        return mrw_err(err, MRW_E_LIMIT, "wavlm: %d samples exceed the limit of %d (%d s at 16 kHz): split the audio",
                       n, MRW_WAVLM_MAX_SAMPLES, MRW_WAVLM_MAX_SAMPLES / 16000);
    const int T = n > 0 ? mrw_wavlm_gpu_out_frames(v, n) : 0;
    if (T < 1) {
        long need = 1;
        for (int i = v->cfg.n_conv - 1; i >= 0; i--) need = (need - 1) * v->cfg.conv_stride[i] + v->cfg.conv_kernel[i];
        return mrw_err(err, MRW_E_ARG, "wavlm: a waveform of %d samples is too short for the convolutional feature "
                       "extractor (it needs at least %ld)", n, need);
    }
    const mrw_wavlm_config *c = &v->cfg;
    if ((double)c->n_heads * T * T > 2e9)
        return mrw_err(err, MRW_E_LIMIT, "wavlm (cuda): %d frames are too many for the attention scores", T);
    TRY(ensure(v, n, T, err));
    TRY(bias_table(v, T, err));
    const float *wf = v->wf;
    const bf16 *wb = v->wb;
    const int fact = act_code(c->feat_act), act = act_code(c->act);
    TRY(cuda_chk(cudaMemcpyAsync(v->wave, wave, (size_t)n * 4, cudaMemcpyHostToDevice, v->st), "waveform", err));
    /* conv stack: y = conv output (fp32), then the norm and activation into the next layer's bf16 rows (the last
     * layer's stay fp32 in y) */
    int Tin = n, ci = 1;
    const bf16 *hin = NULL;
    bf16 *hout = v->hA;
    for (int i = 0; i < c->n_conv; i++) {
        const int co = c->conv_dim[i], K = c->conv_kernel[i], S = c->conv_stride[i], To = (Tin - K) / S + 1;
        const size_t ny = (size_t)To * co;
        const int last = i == c->n_conv - 1;
        if (i == 0) {
            conv0_kernel<<<grid_for(ny, 256), 256, 0, v->st>>>(ny, co, K, S, v->wave, wf + v->conv_w[0], v->y);
            TRY(launched("wavlm conv 0", err));
        } else {
            const bf16 *A = hin;
            int lda = S * ci;
            if (K > S) {
                const size_t nc = (size_t)To * K * ci;
                unfold_kernel<<<grid_for(nc, 256), 256, 0, v->st>>>(nc, K * ci, S * ci, hin, v->cols);
                TRY(launched("wavlm conv windows", err));
                A = v->cols, lda = K * ci;
            }
            TRY(gemm(v, 1, To, co, K * ci, 1.f, A, lda, wb + v->conv_w[i], K * ci, 0.f, CUDA_R_32F, v->y, co, err));
        }
        const float *bias = c->conv_bias ? wf + v->conv_b[i] : NULL;
        const float *sc = NULL, *sh = bias;
        if (v->conv_norm[i] && !c->norm_layer) { /* GroupNorm over time; the bias cancels */
            const int slices = (To + 7) / 8 < GN_SLICES ? (To + 7) / 8 : GN_SLICES;
            gn_part_kernel<<<dim3((unsigned)((co + 31) / 32), (unsigned)slices), dim3(32, 8), 0, v->st>>>(To, co, v->y,
                                                                                                       v->part);
            gn_final_kernel<<<(unsigned)((co + 255) / 256), 256, 0, v->st>>>(To, co, slices, v->part,
                                                                              wf + v->conv_nw[i], wf + v->conv_nb[i],
                                                                              v->ss);
            TRY(launched("wavlm group norm", err));
            sc = v->ss, sh = v->ss + co;
        } else if (v->conv_norm[i]) { /* bias, LayerNorm over channels (eps 1e-5) */
            ln_kernel<float><<<LN_GRID(To), 256, 0, v->st>>>(To, co, v->y, bias, wf + v->conv_nw[i], wf + v->conv_nb[i],
                                                              1e-5f, v->y);
            TRY(launched("wavlm conv layer norm", err));
            sh = NULL;
        }
        affine_act_kernel<<<grid_for(ny, 256), 256, 0, v->st>>>(ny, co, v->y, sc, sh, fact, last ? v->y : NULL,
                                                                 last ? NULL : hout);
        TRY(launched("wavlm conv activation", err));
        hin = hout;
        hout = hout == v->hA ? v->hB : v->hA;
        Tin = To, ci = co;
    }
    /* feature projection: LN(C_last) -> Linear (+ its bias, added with the bf16 copy) */
    const int d = c->hidden, H = c->n_heads, D = d / H, F = c->ffn_dim, cl = ci;
    const float eps = c->ln_eps;
    ln_kernel<bf16><<<LN_GRID(T), 256, 0, v->st>>>(T, cl, v->y, NULL, wf + v->fp_lnw, wf + v->fp_lnb, eps, v->hA);
    TRY(launched("wavlm projection layer norm", err));
    TRY(gemm(v, 1, T, d, cl, 1.f, v->hA, cl, wb + v->fp_w, cl, 0.f, CUDA_R_32F, v->x, d, err));
    ln_kernel<bf16><<<LN_GRID(T), 256, 0, v->st>>>(T, d, v->x, wf + v->fp_b, NULL, NULL, eps, v->xb);
    TRY(launched("wavlm projection bias", err));
    /* positional convolution: one GEMM per group over its unfolded windows (a strided batch) */
    const int G = c->pos_groups, cg = d / G, Kp = c->pos_kernel;
    const size_t npc = (size_t)G * T * Kp * cg, KC = (size_t)Kp * cg;
    pos_cols_kernel<<<grid_for(npc, 256), 256, 0, v->st>>>(npc, T, Kp, cg, d, Kp / 2, v->xb, v->cols);
    TRY(launched("wavlm positional windows", err));
    TRY(sbgemm(v, 1, T, cg, (int)KC, 1.f, v->cols, (int)KC, (long long)T * KC, wb + v->pos_w, (int)KC,
               (long long)cg * KC, 0.f, CUDA_R_32F, v->pc, d, cg, G, err));
    const size_t nx = (size_t)T * d;
    pos_add_kernel<<<grid_for(nx, 256), 256, 0, v->st>>>(nx, d, v->x, v->pc, wf + v->pos_b, fact);
    TRY(launched("wavlm positional add", err));
    if (!c->stable_ln) {
        ln_kernel<float><<<LN_GRID(T), 256, 0, v->st>>>(T, d, v->x, NULL, wf + v->enc_lnw, wf + v->enc_lnb, eps, v->x);
        to_bf16_kernel<float><<<grid_for(nx, 256), 256, 0, v->st>>>(nx, v->x, v->xb);
        TRY(launched("wavlm encoder layer norm", err));
    }
    const float *pending = NULL; /* stable: the last GEMM's bias into x, added by the next LayerNorm */
    const float scale = 1.f / sqrtf((float)D);
    for (int l = 0; l < c->n_layers; l++) {
        const wl_layer *y = &v->L[l];
        if (c->stable_ln) {
            ln_kernel<bf16><<<LN_GRID(T), 256, 0, v->st>>>(T, d, v->x, pending, wf + y->ln1w, wf + y->ln1b, eps, v->xb);
            TRY(launched("wavlm layer norm", err));
        }
        gate_kernel<<<LN_GRID(T * H), 256, 0, v->st>>>(T * H, H, D, d, v->xb, wf + y->gru, wf + y->grub, wf + y->gruc,
                                                        v->gate);
        TRY(launched("wavlm gate", err));
        TRY(gemm(v, 1, T, 3 * d, d, 1.f, v->xb, d, wb + y->qkvw, d, 0.f, CUDA_R_16BF, v->qkv, 3 * d, err));
        bias_act_kernel<<<grid_for((size_t)T * 3 * d / 2, 256), 256, 0, v->st>>>((size_t)T * 3 * d / 2, 3 * d, v->qkv,
                                                                                  wf + y->qkvb, 0);
        TRY(launched("wavlm qkv bias", err));
        /* S_h = q_h k_h^T / sqrt(D), [H][T][T] */
        TRY(sbgemm(v, 1, T, T, D, scale, v->qkv, 3 * d, D, v->qkv + d, 3 * d, D, 0.f, CUDA_R_32F, v->S, T,
                   (long long)T * T, H, err));
        softmax_bias_kernel<<<LN_GRID(H * T), 256, 0, v->st>>>(H * T, T, H, v->S, v->gate, v->btab, v->P);
        TRY(launched("wavlm softmax", err));
        /* o_h = P_h v_h into columns h*D of att */
        TRY(sbgemm(v, 0, T, D, T, 1.f, v->P, T, (long long)T * T, v->qkv + 2 * d, 3 * d, D, 0.f, CUDA_R_16BF, v->att,
                   d, D, H, err));
        TRY(gemm(v, 1, T, d, d, 1.f, v->att, d, wb + y->ow, d, 1.f, CUDA_R_32F, v->x, d, err)); /* x += */
        if (c->stable_ln) {
            ln_kernel<bf16><<<LN_GRID(T), 256, 0, v->st>>>(T, d, v->x, wf + y->ob, wf + y->ln2w, wf + y->ln2b, eps,
                                                            v->xb);
        } else {
            ln_kernel<float><<<LN_GRID(T), 256, 0, v->st>>>(T, d, v->x, wf + y->ob, wf + y->ln1w, wf + y->ln1b, eps,
                                                             v->x);
            to_bf16_kernel<float><<<grid_for(nx, 256), 256, 0, v->st>>>(nx, v->x, v->xb);
        }
        TRY(launched("wavlm layer norm", err));
        TRY(gemm(v, 1, T, F, d, 1.f, v->xb, d, wb + y->w1, d, 0.f, CUDA_R_16BF, v->ff, F, err));
        bias_act_kernel<<<grid_for((size_t)T * F / 2, 256), 256, 0, v->st>>>((size_t)T * F / 2, F, v->ff, wf + y->b1,
                                                                              act);
        TRY(launched("wavlm ffn activation", err));
        TRY(gemm(v, 1, T, d, F, 1.f, v->ff, F, wb + y->w2, F, 1.f, CUDA_R_32F, v->x, d, err)); /* x += */
        if (c->stable_ln) {
            pending = wf + y->b2;
        } else {
            ln_kernel<float><<<LN_GRID(T), 256, 0, v->st>>>(T, d, v->x, wf + y->b2, wf + y->ln2w, wf + y->ln2b, eps,
                                                             v->x);
            to_bf16_kernel<float><<<grid_for(nx, 256), 256, 0, v->st>>>(nx, v->x, v->xb);
            TRY(launched("wavlm layer norm", err));
        }
    }
    const float *res = v->x;
    if (c->stable_ln) {
        ln_kernel<float><<<LN_GRID(T), 256, 0, v->st>>>(T, d, v->x, pending, wf + v->enc_lnw, wf + v->enc_lnb, eps,
                                                         v->pc);
        TRY(launched("wavlm encoder layer norm", err));
        res = v->pc;
    }
    TRY(cuda_chk(cudaMemcpyAsync(out, res, nx * 4, cudaMemcpyDeviceToHost, v->st), "output download", err));
    TRY(cuda_chk(cudaStreamSynchronize(v->st), "wavlm forward", err));
    if (frames) *frames = T;
    return MRW_OK;
}
