/* Frozen SigLIP / CLIP vision transformer forward on the GPU in bf16 (vit_gpu.h), and the Whisper encoder
 * (whisper_gpu.h: a Conv1d stem in place of the patch embedding, then the same pre-LN layers and final LayerNorm). The GEMMs are cuBLAS (bf16
 * inputs, fp32 accumulation), the attention two batched GEMMs over every (image, head) pair around a softmax
 * kernel; LayerNorm (with the pending bias of the previous GEMM added into the fp32 residual first), bias +
 * activation, im2col and the embedding assembly are the small kernels below (the first three, and the GEMM call, in
 * vit_gpu_kernels.cuh, shared with wavlm_gpu.cu). */
#include <cublas_v2.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vit_gpu_kernels.cuh"

extern "C" {
#include "kernels/cuda/vit_gpu.h"
#include "kernels/cuda/whisper_gpu.h"
}

using namespace mrwcu;

namespace {

/* One tensor of the table: where it lives (bf16 matrix store or fp32 vector store) and its HF name. */
struct vt_entry {
    char name[96];
    size_t numel, off; /* off: elements into wb (matrix) or wf (vector) */
    int matrix;
};

struct vt_layer {
    size_t ln1w, ln1b, ln2w, ln2b, qkvb, ob, fc1b, fc2b; /* into wf */
    size_t qkvw, ow, fc1w, fc2w;                         /* into wb */
};

} // namespace

struct mrw_vit_gpu {
    mrw_vit_config cfg;
    int max_n;
    cudaStream_t st;
    cublasHandle_t blas;
    vt_entry *tab;
    int n_tab;
    vt_layer *L;
    size_t patch_w, patch_b, pos, cls, pre_w, pre_b, post_w, post_b; /* offsets (patch_b/cls/pre/post may be unused) */
    size_t nwb, nwf;
    bf16 *wb;  /* matrices */
    float *wf; /* vectors */
    /* activations */
    float *px, *pe, *x, *S;
    bf16 *cols, *xn, *qkv, *P, *att, *ff;
    const void **ptrs; /* device pointer arrays for the batched attention GEMMs: 3 sets of max_n*H each, x2 */
    size_t bytes;
    int fused; /* attention: 1 = the fused kernel (head_dim 64), 0 = batched GEMMs + softmax */
    /* Whisper (whisper_gpu.h): mel [n_mels][frames] -> conv1 (k3 p1) + GELU -> conv2 (k3 s2 p1) + GELU + positions;
     * px holds the mel, cols the unfolded windows of either conv, pe conv1's output (fp32) */
    int whisper, n_mels, frames, n_pos;
    size_t c1w, c2w, c1b, c2b; /* into wb (matrices [d][Cin*3]) and wf */
};

/* ------------------------------------------------------------------------------------------------ kernels */
namespace {

/* cols[img*P2 + gy*grid + gx][(ch*p + ky)*p + kx] = px[img][ch][gy*p + ky][gx*p + kx] */
__global__ void im2col_kernel(size_t n, int ch, int S, int p, int grid, const float *px, bf16 *cols) {
    const int PP = ch * p * p, P2 = grid * grid;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t row = e / PP;
        const int k = (int)(e % PP), img = (int)(row / P2), pidx = (int)(row % P2);
        const int c = k / (p * p), ky = k / p % p, kx = k % p, gy = pidx / grid, gx = pidx % grid;
        cols[e] = __float2bfloat16_rn(px[(((size_t)img * ch + c) * S + gy * p + ky) * S + gx * p + kx]);
    }
}

/* x[img*T + t] = (CLIP, t = 0: cls) or pe[img*P2 + t - cls] (+ patch_b), + pos[t] */
__global__ void embed_kernel(size_t n, int C, int T, int P2, int has_cls, const float *pe, const float *pb,
                             const float *cls, const float *pos, float *x) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t row = e / C;
        const int c = (int)(e % C), img = (int)(row / T), t = (int)(row % T);
        float v;
        if (has_cls && t == 0) v = cls[c];
        else v = pe[((size_t)img * P2 + t - has_cls) * C + c] + (pb ? pb[c] : 0.f);
        x[e] = v + pos[(size_t)t * C + c];
    }
}

/* Whisper's stem. conv1 windows: cols[t][c*3 + k] = mel[c][t + k - 1] (0 outside [0, F)), t < F */
__global__ void conv1_cols_kernel(size_t n, int nm, int F, const float *mel, bf16 *cols) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int t = (int)(e / ((size_t)nm * 3)), ck = (int)(e % ((size_t)nm * 3)), c = ck / 3, s = t + ck % 3 - 1;
        cols[e] = __float2bfloat16_rn(s >= 0 && s < F ? mel[(size_t)c * F + s] : 0.f);
    }
}

/* conv2 windows (stride 2): cols[t][c*3 + k] = h[2t + k - 1][c] (0 outside [0, F)), t < T */
__global__ void conv2_cols_kernel(size_t n, int d, int F, const float *h, bf16 *cols) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int t = (int)(e / ((size_t)d * 3)), ck = (int)(e % ((size_t)d * 3)), c = ck / 3, s = 2 * t + ck % 3 - 1;
        cols[e] = __float2bfloat16_rn(s >= 0 && s < F ? h[(size_t)s * d + c] : 0.f);
    }
}

/* x[r][c] = gelu(x[r][c] + b[c]) (+ pos[r][c] when pos), fp32 in place (erf GELU, as the convolutions use) */
__global__ void bias_gelu_pos_kernel(size_t n, int C, float *x, const float *b, const float *pos) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const float v = x[e] + b[e % C];
        x[e] = 0.5f * v * (1.f + erff(v * 0.70710678118654752f)) + (pos ? pos[e] : 0.f);
    }
}

/* One warp per row of S (length T, fp32, already scaled): P = softmax(row) in bf16. */
__global__ void softmax_kernel(size_t rows, int T, const float *S, bf16 *P) {
    const size_t row = blockIdx.x * (size_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float *s = S + row * T;
    bf16 *p = P + row * T;
    float mx = -INFINITY;
    for (int j = lane; j < T; j += 32) mx = fmaxf(mx, s[j]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.f;
    for (int j = lane; j < T; j += 32) sum += expf(s[j] - mx);
    const float inv = 1.f / warp_sum(sum);
    for (int j = lane; j < T; j += 32) p[j] = __float2bfloat16_rn(expf(s[j] - mx) * inv);
}

/* ---- fused attention (head_dim 64), flash style: one block of 4 warps per (64 queries, image, head); each warp
 * owns 16 query rows; keys and values pass through shared memory in tiles of 64; S = q k^T and O += P v on the tensor
 * cores (mma.sync m16n8k16, bf16 in, fp32 accumulate); online softmax in fp32 (running max and sum per row), P
 * rounded to bf16 for the second product as in the unfused path; the scores never leave the SM. */
#define FA_B 64
#define FA_LD 72 /* padded shared row (elements): 144 bytes, 16-byte aligned rows, no ldmatrix bank conflicts */

__device__ __forceinline__ void ldsm4(uint32_t r[4], const bf16 *p) {
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void ldsm4t(uint32_t r[4], const bf16 *p) {
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

/* qkv [n*T][3C] (q, k, v of head h at columns h*64, C + h*64, 2C + h*64), att [n*T][C]; scale_log2 = log2(e)/sqrt(64).
 * Needs C % 8 == 0 (16-byte rows) and 16-byte aligned qkv. */
__global__ void __launch_bounds__(128) flash_attn_kernel(int T, int H, int C, const bf16 *qkv, bf16 *att,
                                                         float scale_log2) {
    __shared__ __align__(16) bf16 sQ[FA_B * FA_LD], sK[FA_B * FA_LD], sV[FA_B * FA_LD];
    const int pair = blockIdx.y, img = pair / H, h = pair % H, q0 = blockIdx.x * FA_B;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const size_t ld = 3 * (size_t)C;
    const bf16 *base = qkv + (size_t)img * T * ld + (size_t)h * 64;
    const uint4 z4 = make_uint4(0, 0, 0, 0);
    for (int i = tid; i < FA_B * 8; i += 128) {
        const int r = i >> 3, c8 = (i & 7) * 8;
        *(uint4 *)(sQ + r * FA_LD + c8) = q0 + r < T ? *(const uint4 *)(base + (size_t)(q0 + r) * ld + c8) : z4;
    }
    __syncthreads();
    uint32_t qa[4][4];
#pragma unroll
    for (int kc = 0; kc < 4; kc++) ldsm4(qa[kc], sQ + (warp * 16 + (lane & 15)) * FA_LD + kc * 16 + (lane >> 4) * 8);
    float o[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    for (int k0 = 0; k0 < T; k0 += FA_B) {
        __syncthreads(); /* the previous tiles are consumed */
        for (int i = tid; i < FA_B * 8; i += 128) {
            const int r = i >> 3, c8 = (i & 7) * 8;
            const bool in = k0 + r < T;
            const bf16 *src = base + (size_t)(k0 + r) * ld + c8;
            *(uint4 *)(sK + r * FA_LD + c8) = in ? *(const uint4 *)(src + C) : z4;
            *(uint4 *)(sV + r * FA_LD + c8) = in ? *(const uint4 *)(src + 2 * C) : z4;
        }
        __syncthreads();
        float sc[8][4];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
            for (int kp = 0; kp < 2; kp++) {
                uint32_t b[4];
                ldsm4(b, sK + (j * 8 + (lane & 7)) * FA_LD + kp * 32 + (lane >> 3) * 8);
                mma16816(sc[j], qa[2 * kp], b[0], b[1]);
                mma16816(sc[j], qa[2 * kp + 1], b[2], b[3]);
            }
        }
        /* mask keys past T; running max per row (rows lane/4 and lane/4 + 8 of the warp's 16) */
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const int key = k0 + j * 8 + 2 * (lane & 3);
            if (key >= T) sc[j][0] = sc[j][2] = -INFINITY;
            if (key + 1 >= T) sc[j][1] = sc[j][3] = -INFINITY;
            mx0 = fmaxf(mx0, fmaxf(sc[j][0], sc[j][1]));
            mx1 = fmaxf(mx1, fmaxf(sc[j][2], sc[j][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float c0 = exp2f((m0 - mx0) * scale_log2), c1 = exp2f((m1 - mx1) * scale_log2); /* 0 at the start */
        m0 = mx0, m1 = mx1;
        l0 *= c0, l1 *= c1;
#pragma unroll
        for (int j = 0; j < 8; j++) o[j][0] *= c0, o[j][1] *= c0, o[j][2] *= c1, o[j][3] *= c1;
        uint32_t pa[4][4];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const float p0 = exp2f((sc[j][0] - mx0) * scale_log2), p1 = exp2f((sc[j][1] - mx0) * scale_log2);
            const float p2 = exp2f((sc[j][2] - mx1) * scale_log2), p3 = exp2f((sc[j][3] - mx1) * scale_log2);
            l0 += p0 + p1, l1 += p2 + p3;
            pa[j >> 1][(j & 1) * 2] = pack2(p0, p1);
            pa[j >> 1][(j & 1) * 2 + 1] = pack2(p2, p3);
        }
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t b[4];
                ldsm4t(b, sV + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * FA_LD + np * 16 + (lane >> 4) * 8);
                mma16816(o[2 * np], pa[kk], b[0], b[1]);
                mma16816(o[2 * np + 1], pa[kk], b[2], b[3]);
            }
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = 1.f / l0, i1 = 1.f / l1;
    const int r0 = q0 + warp * 16 + (lane >> 2), r1 = r0 + 8;
    bf16 *out = att + (size_t)img * T * C + (size_t)h * 64 + 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < 8; j++) {
        if (r0 < T) *(uint32_t *)(out + (size_t)r0 * C + j * 8) = pack2(o[j][0] * i0, o[j][1] * i0);
        if (r1 < T) *(uint32_t *)(out + (size_t)r1 * C + j * 8) = pack2(o[j][2] * i1, o[j][3] * i1);
    }
}

} // namespace

/* ------------------------------------------------------------------------------------------------ helpers */

static mrw_status cuda_chk(cudaError_t e, const char *what, mrw_error *err) {
    return cuda_status(e, "vit (cuda)", what, err);
}

static mrw_status blas_chk(cublasStatus_t s, const char *what, mrw_error *err) {
    if (s == CUBLAS_STATUS_SUCCESS) return MRW_OK;
    return mrw_err(err, MRW_E_INTERNAL, "vit (cuda): %s: %s", what, cublasGetStatusString(s));
}

/* Row-major C[M][N] = alpha A[M][K] op(B) + beta C, A and B bf16 (B stored [N][K] when transB), C of ct. */
static mrw_status gemm(mrw_vit_gpu *v, int transB, int M, int N, int K, float alpha, const bf16 *A, int lda,
                       const bf16 *B, int ldb, float beta, cudaDataType_t ct, void *C, int ldc, mrw_error *err) {
    return enc_gemm(v->blas, transB, M, N, K, alpha, A, lda, B, ldb, beta, ct, C, ldc, "vit", err);
}

static int add_entry(mrw_vit_gpu *v, int cap, const char *name, size_t numel, int matrix, size_t off) {
    if (v->n_tab >= cap) return -1;
    vt_entry *e = &v->tab[v->n_tab++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->numel = numel, e->matrix = matrix, e->off = off;
    return 0;
}

/* Whisper's table: transformers' WhisperEncoder names relative to the encoder (no k_proj bias: that part of the
 * fused q/k/v bias stays 0). */
static int build_table_whisper(mrw_vit_gpu *v) {
    const mrw_vit_config *c = &v->cfg;
    const size_t C = c->hidden, I = c->intermediate;
    const int cap = 16 + 16 * c->n_layer;
    v->tab = (vt_entry *)calloc((size_t)cap, sizeof *v->tab);
    v->L = (vt_layer *)calloc((size_t)c->n_layer, sizeof *v->L);
    if (!v->tab || !v->L) return -1;
    size_t wb = 0, wf = 0;
#define MAT(field, nm, n) (field = wb, wb += (n), add_entry(v, cap, nm, (n), 1, field))
#define VEC(field, nm, n) (field = wf, wf += ((n) + 15) / 16 * 16, add_entry(v, cap, nm, (n), 0, field))
    int bad = MAT(v->c1w, "conv1.weight", C * v->n_mels * 3);
    bad |= VEC(v->c1b, "conv1.bias", C);
    bad |= MAT(v->c2w, "conv2.weight", C * C * 3);
    bad |= VEC(v->c2b, "conv2.bias", C);
    bad |= VEC(v->pos, "embed_positions.weight", (size_t)v->n_pos * C);
    bad |= VEC(v->post_w, "layer_norm.weight", C);
    bad |= VEC(v->post_b, "layer_norm.bias", C);
    char nm[96];
    for (int l = 0; l < c->n_layer && !bad; l++) {
        vt_layer *y = &v->L[l];
#define NM(s) (snprintf(nm, sizeof nm, "layers.%d.%s", l, s), nm)
        bad |= VEC(y->ln1w, NM("self_attn_layer_norm.weight"), C);
        bad |= VEC(y->ln1b, NM("self_attn_layer_norm.bias"), C);
        bad |= VEC(y->ln2w, NM("final_layer_norm.weight"), C);
        bad |= VEC(y->ln2b, NM("final_layer_norm.bias"), C);
        y->qkvw = wb, wb += 3 * C * C;
        y->qkvb = wf, wf += (3 * C + 15) / 16 * 16;
        const char *qkv[3] = {"q", "k", "v"};
        for (int q = 0; q < 3; q++) {
            char s[64];
            snprintf(s, sizeof s, "self_attn.%s_proj.weight", qkv[q]);
            bad |= add_entry(v, cap, NM(s), C * C, 1, y->qkvw + q * C * C);
            if (q == 1) continue;
            snprintf(s, sizeof s, "self_attn.%s_proj.bias", qkv[q]);
            bad |= add_entry(v, cap, NM(s), C, 0, y->qkvb + q * C);
        }
        bad |= MAT(y->ow, NM("self_attn.out_proj.weight"), C * C);
        bad |= VEC(y->ob, NM("self_attn.out_proj.bias"), C);
        bad |= MAT(y->fc1w, NM("fc1.weight"), I * C);
        bad |= VEC(y->fc1b, NM("fc1.bias"), I);
        bad |= MAT(y->fc2w, NM("fc2.weight"), C * I);
        bad |= VEC(y->fc2b, NM("fc2.bias"), C);
#undef NM
    }
#undef MAT
#undef VEC
    v->nwb = wb, v->nwf = wf;
    return bad ? -1 : 0;
}

/* Lays out the two weight stores and the name table. */
static int build_table(mrw_vit_gpu *v) {
    if (v->whisper) return build_table_whisper(v);
    const mrw_vit_config *c = &v->cfg;
    const size_t C = c->hidden, I = c->intermediate, PP = (size_t)c->channels * c->patch * c->patch;
    const int cap = 16 + 16 * c->n_layer;
    v->tab = (vt_entry *)calloc((size_t)cap, sizeof *v->tab);
    v->L = (vt_layer *)calloc((size_t)c->n_layer, sizeof *v->L);
    if (!v->tab || !v->L) return -1;
    size_t wb = 0, wf = 0;
    const int clip = c->family == MRW_VIT_CLIP;
#define MAT(field, nm, n) (field = wb, wb += (n), add_entry(v, cap, nm, (n), 1, field))
#define VEC(field, nm, n) (field = wf, wf += ((n) + 15) / 16 * 16, add_entry(v, cap, nm, (n), 0, field))
    int bad = MAT(v->patch_w, "embeddings.patch_embedding.weight", C * PP);
    bad |= VEC(v->pos, "embeddings.position_embedding.weight", (size_t)c->n_tokens * C);
    if (clip) {
        bad |= VEC(v->cls, "embeddings.class_embedding", C);
        bad |= VEC(v->pre_w, "pre_layrnorm.weight", C);
        bad |= VEC(v->pre_b, "pre_layrnorm.bias", C);
    } else {
        bad |= VEC(v->patch_b, "embeddings.patch_embedding.bias", C);
        bad |= VEC(v->post_w, "post_layernorm.weight", C);
        bad |= VEC(v->post_b, "post_layernorm.bias", C);
    }
    char nm[96];
    for (int l = 0; l < c->n_layer && !bad; l++) {
        vt_layer *y = &v->L[l];
#define NM(s) (snprintf(nm, sizeof nm, "encoder.layers.%d.%s", l, s), nm)
        bad |= VEC(y->ln1w, NM("layer_norm1.weight"), C);
        bad |= VEC(y->ln1b, NM("layer_norm1.bias"), C);
        bad |= VEC(y->ln2w, NM("layer_norm2.weight"), C);
        bad |= VEC(y->ln2b, NM("layer_norm2.bias"), C);
        /* q, k, v: one fused [3C][C] matrix and one [3C] bias */
        y->qkvw = wb, wb += 3 * C * C;
        y->qkvb = wf, wf += (3 * C + 15) / 16 * 16;
        const char *qkv[3] = {"q", "k", "v"};
        for (int q = 0; q < 3; q++) {
            char s[64];
            snprintf(s, sizeof s, "self_attn.%s_proj.weight", qkv[q]);
            bad |= add_entry(v, cap, NM(s), C * C, 1, y->qkvw + q * C * C);
            snprintf(s, sizeof s, "self_attn.%s_proj.bias", qkv[q]);
            bad |= add_entry(v, cap, NM(s), C, 0, y->qkvb + q * C);
        }
        bad |= MAT(y->ow, NM("self_attn.out_proj.weight"), C * C);
        bad |= VEC(y->ob, NM("self_attn.out_proj.bias"), C);
        bad |= MAT(y->fc1w, NM("mlp.fc1.weight"), I * C);
        bad |= VEC(y->fc1b, NM("mlp.fc1.bias"), I);
        bad |= MAT(y->fc2w, NM("mlp.fc2.weight"), C * I);
        bad |= VEC(y->fc2b, NM("mlp.fc2.bias"), C);
#undef NM
    }
#undef MAT
#undef VEC
    v->nwb = wb, v->nwf = wf;
    return bad ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------------ public */

static mrw_status vit_alloc(mrw_vit_gpu *v, mrw_vit_gpu **out, mrw_error *err);

extern "C" mrw_status mrw_vit_gpu_new(const mrw_vit_config *cfg, int max_images, void *stream, mrw_vit_gpu **out,
                                      mrw_error *err) {
    *out = NULL;
    const mrw_vit_config *c = cfg;
    if ((c->family != MRW_VIT_SIGLIP && c->family != MRW_VIT_CLIP) || c->hidden < 2 || c->hidden % 2 ||
        c->n_layer < 1 || c->n_head < 1 || c->hidden % c->n_head || c->head_dim != c->hidden / c->n_head ||
        c->intermediate < 2 || c->intermediate % 2 || c->channels < 1 || c->patch < 1 || c->grid < 1 ||
        c->image_size != c->grid * c->patch || c->n_patches != c->grid * c->grid ||
        c->n_tokens != c->n_patches + (c->family == MRW_VIT_CLIP) || !(c->eps > 0) || c->hidden > 16384 ||
        c->intermediate > 65536 || c->n_tokens > 16384 || c->act < MRW_VIT_GELU_TANH || c->act > MRW_VIT_GELU_ERF)
        return mrw_err(err, MRW_E_ARG, "vit (cuda): unsupported shape (family %d, hidden %d, heads %d, layers %d, "
                       "intermediate %d, patch %d, image %d)", (int)c->family, c->hidden, c->n_head, c->n_layer,
                       c->intermediate, c->patch, c->image_size);
    if (max_images < 1 || (double)max_images * c->n_head * c->n_tokens * c->n_tokens > 4e9)
        return mrw_err(err, MRW_E_ARG, "vit (cuda): %d images per forward is out of range", max_images);
    mrw_vit_gpu *v = (mrw_vit_gpu *)calloc(1, sizeof *v);
    if (!v) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    v->cfg = *cfg;
    v->max_n = max_images;
    v->st = (cudaStream_t)stream;
    v->fused = c->head_dim == 64 && c->hidden % 8 == 0;
    return vit_alloc(v, out, err);
}

/* The weight table and every device buffer of v (cfg, max_n, st, fused and the Whisper fields set). */
static mrw_status vit_alloc(mrw_vit_gpu *v, mrw_vit_gpu **out, mrw_error *err) {
    const mrw_vit_config *c = &v->cfg;
    const int max_images = v->max_n;
    if (build_table(v)) {
        mrw_vit_gpu_free(v);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    if (cublasCreate(&v->blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(v->blas, v->st) != CUBLAS_STATUS_SUCCESS) {
        mrw_vit_gpu_free(v);
        return mrw_err(err, MRW_E_INTERNAL, "vit (cuda): cublasCreate failed");
    }
    const size_t n = (size_t)max_images, T = c->n_tokens, C = c->hidden, I = c->intermediate, H = c->n_head;
    const size_t P2 = c->n_patches, PP = (size_t)c->channels * c->patch * c->patch;
    /* pixels / mel, unfolded windows, patch embeddings / conv1 output */
    size_t npx = n * c->channels * c->image_size * c->image_size, ncols = n * P2 * PP, npe = n * P2 * C;
    /* a Whisper encoder for several clips with the fused attention keeps no scores (1500 x 1500 per head and clip):
     * it stays fused (mrw_vit_gpu_set_attention) */
    const int noSP = v->whisper && v->fused && max_images > 1;
    if (v->whisper) { /* the stem runs one clip at a time (cols, pe); the mel of every clip is uploaded at once */
        const size_t F = v->frames, nm = v->n_mels;
        npx = n * nm * F, ncols = F * nm * 3 > T * C * 3 ? F * nm * 3 : T * C * 3, npe = F * C;
    }
    struct {
        void **p;
        size_t bytes;
        const char *what;
    } al[] = {{(void **)&v->wb, v->nwb * 2, "bf16 matrices"},
              {(void **)&v->wf, v->nwf * 4, "fp32 vectors"},
              {(void **)&v->px, npx * 4, "pixels"},
              {(void **)&v->cols, ncols * 2, "patches"},
              {(void **)&v->pe, npe * 4, "patch embeddings"},
              {(void **)&v->x, n * T * C * 4, "residual stream"},
              {(void **)&v->xn, n * T * C * 2, "LayerNorm output"},
              {(void **)&v->qkv, n * T * 3 * C * 2, "q/k/v"},
              {(void **)&v->S, noSP ? 0 : n * H * T * T * 4, "attention scores"},
              {(void **)&v->P, noSP ? 0 : n * H * T * T * 2, "attention probabilities"},
              {(void **)&v->att, n * T * C * 2, "attention output"},
              {(void **)&v->ff, n * T * I * 2, "MLP hidden rows"},
              {(void **)&v->ptrs, 6 * n * H * sizeof(void *), "pointer arrays"}};
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        if (!al[i].bytes) continue;
        const cudaError_t e = cudaMalloc(al[i].p, al[i].bytes);
        if (e != cudaSuccess) {
            cudaGetLastError();
            size_t fr = 0, tot = 0;
            cudaMemGetInfo(&fr, &tot);
            mrw_vit_gpu_free(v);
            return mrw_err(err, MRW_E_NOMEM, "vit (cuda): cannot allocate %.2f GiB of %s for %d images (%.2f GiB "
                           "free): encode fewer images at once", al[i].bytes / 1073741824.0, al[i].what, max_images,
                           fr / 1073741824.0);
        }
        v->bytes += al[i].bytes;
    }
    /* pointer arrays of the batched attention GEMMs, pair i = img*H + h:
     *   scores: A = q (row-major [T][D], ld 3C), B = k, C = S_i ([T][T])
     *   output: A = P_i ([T][T]), B = v ([T][D], ld 3C), C = att rows of the image, columns of the head (ld C) */
    const size_t np = n * H, D = c->head_dim;
    const void **hp = (const void **)malloc(6 * np * sizeof(void *));
    if (!hp) {
        mrw_vit_gpu_free(v);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < np; i++) {
        const size_t img = i / H, h = i % H;
        const bf16 *base = v->qkv + img * T * 3 * C + h * D;
        hp[i] = base;                              /* q */
        hp[np + i] = base + C;                     /* k */
        hp[2 * np + i] = v->S ? v->S + i * T * T : NULL; /* S */
        hp[3 * np + i] = v->P ? v->P + i * T * T : NULL; /* P */
        hp[4 * np + i] = base + 2 * C;             /* v */
        hp[5 * np + i] = v->att + img * T * C + h * D; /* out */
    }
    cudaError_t e = cudaMemcpy(v->ptrs, hp, 6 * np * sizeof(void *), cudaMemcpyHostToDevice);
    free(hp);
    if (e == cudaSuccess) e = cudaMemset(v->wb, 0, v->nwb * 2);
    if (e == cudaSuccess) e = cudaMemset(v->wf, 0, v->nwf * 4);
    if (e != cudaSuccess) {
        mrw_vit_gpu_free(v);
        return mrw_err(err, MRW_E_INTERNAL, "vit (cuda): init: %s", cudaGetErrorString(e));
    }
    *out = v;
    return MRW_OK;
}

extern "C" void mrw_vit_gpu_free(mrw_vit_gpu *v) {
    if (!v) return;
    if (v->blas) {
        cudaStreamSynchronize(v->st);
        cublasDestroy(v->blas);
    }
    void *bufs[] = {v->wb, v->wf, v->px, v->cols, v->pe, v->x, v->xn, v->qkv, v->S, v->P, v->att, v->ff,
                    (void *)v->ptrs};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    free(v->tab), free(v->L);
    free(v);
}

extern "C" const mrw_vit_config *mrw_vit_gpu_config(const mrw_vit_gpu *v) { return &v->cfg; }

extern "C" int mrw_vit_gpu_set_attention(mrw_vit_gpu *v, int fused) {
    if (!v->S) return v->fused; /* (no score buffers: a several-clip Whisper encoder stays fused) */
    v->fused = fused && v->cfg.head_dim == 64 && v->cfg.hidden % 8 == 0;
    return v->fused;
}
extern "C" size_t mrw_vit_gpu_bytes(const mrw_vit_gpu *v) { return v->bytes; }

extern "C" double mrw_vit_gpu_flops(const mrw_vit_gpu *v) {
    const mrw_vit_config *c = &v->cfg;
    const double T = c->n_tokens, C = c->hidden, I = c->intermediate,
                 PP = (double)c->channels * c->patch * c->patch;
    return 2.0 * c->n_patches * PP * C + c->n_layer * (2.0 * T * (4.0 * C * C + 2.0 * C * I) + 4.0 * T * T * C);
}

extern "C" const char *mrw_vit_gpu_tensor(const mrw_vit_gpu *v, int i, size_t *numel) {
    if (i < 0 || i >= v->n_tab) return NULL;
    if (numel) *numel = v->tab[i].numel;
    return v->tab[i].name;
}

extern "C" mrw_status mrw_vit_gpu_set(mrw_vit_gpu *v, const char *name, const float *data, size_t numel,
                                      mrw_error *err) {
    if (!name || !data) return mrw_err(err, MRW_E_ARG, "vit (cuda): NULL tensor");
    for (int i = 0; i < v->n_tab; i++) {
        const vt_entry *e = &v->tab[i];
        if (strcmp(e->name, name)) continue;
        if (numel != e->numel)
            return mrw_err(err, MRW_E_ARG, "vit (cuda): %s has %zu elements, %zu expected", name, numel, e->numel);
        TRY(cuda_chk(cudaStreamSynchronize(v->st), "upload", err));
        if (!e->matrix) return cuda_chk(cudaMemcpy(v->wf + e->off, data, numel * 4, cudaMemcpyHostToDevice), name, err);
        bf16 *h = (bf16 *)malloc(numel * sizeof(bf16));
        if (!h) return mrw_err(err, MRW_E_NOMEM, "out of memory");
        for (size_t j = 0; j < numel; j++) h[j] = __float2bfloat16_rn(data[j]); /* nearest even */
        const cudaError_t ce = cudaMemcpy(v->wb + e->off, h, numel * 2, cudaMemcpyHostToDevice);
        free(h);
        return cuda_chk(ce, name, err);
    }
    return mrw_err(err, MRW_E_ARG, "vit (cuda): no tensor named %s", name);
}

extern "C" mrw_status mrw_vit_gpu_init_random(mrw_vit_gpu *v, uint64_t seed, mrw_error *err) {
    const mrw_vit_config *c = &v->cfg;
    for (int i = 0; i < v->n_tab; i++) {
        const vt_entry *e = &v->tab[i];
        float lo = -0.1f, hi = 0.1f;
        if (e->matrix) {
            const double fan = strstr(e->name, "fc2") ? c->intermediate
                               : strstr(e->name, "patch") ? (double)c->channels * c->patch * c->patch
                                                          : c->hidden;
            hi = (float)sqrt(3.0 / fan), lo = -hi;
        } else if (strstr(e->name, "norm") && strstr(e->name, ".weight")) {
            lo = 0.8f, hi = 1.2f;
        } else if (strstr(e->name, "position") || strstr(e->name, "class")) {
            lo = -0.5f, hi = 0.5f;
        }
        if (e->matrix)
            rand_kernel<<<grid_for(e->numel, 256), 256, 0, v->st>>>(e->numel, v->wb + e->off, seed + 0x1000003ull * i,
                                                                     lo, hi);
        else
            rand_kernel<<<grid_for(e->numel, 256), 256, 0, v->st>>>(e->numel, v->wf + e->off, seed + 0x1000003ull * i,
                                                                     lo, hi);
    }
    TRY(launched("vit random init", err));
    return cuda_chk(cudaStreamSynchronize(v->st), "init", err);
}

/* The transformer layers and the output LayerNorm over the residual stream v->x (n sequences of n_tokens rows). */
static mrw_status run_layers(mrw_vit_gpu *v, int n, mrw_cuda_dtype out_dt, void *out, mrw_error *err) {
    const mrw_vit_config *c = &v->cfg;
    const int C = c->hidden, I = c->intermediate, H = c->n_head, D = c->head_dim, T = c->n_tokens;
    const int rows = n * T, clip = c->family == MRW_VIT_CLIP;
    const float *wf = v->wf;
    const bf16 *wb = v->wb;
    const unsigned ln_grid = (unsigned)((rows + 7) / 8);
    const int act = c->act == MRW_VIT_QUICK_GELU ? 2 : c->act == MRW_VIT_GELU_ERF ? 3 : 1;
    const float *pending = NULL; /* the bias of the last GEMM into x, added by the next LayerNorm */
    const size_t np = (size_t)n * H, np_max = (size_t)v->max_n * H;
    const float one = 1.f, zero = 0.f, scale = 1.f / sqrtf((float)D);
    for (int l = 0; l < c->n_layer; l++) {
        const vt_layer *y = &v->L[l];
        ln_kernel<bf16><<<ln_grid, 256, 0, v->st>>>(rows, C, v->x, pending, wf + y->ln1w, wf + y->ln1b, c->eps, v->xn);
        TRY(launched("vit layernorm", err));
        TRY(gemm(v, 1, rows, 3 * C, C, 1.f, v->xn, C, wb + y->qkvw, C, 0.f, CUDA_R_16BF, v->qkv, 3 * C, err));
        bias_act_kernel<<<grid_for((size_t)rows * 3 * C / 2, 256), 256, 0, v->st>>>((size_t)rows * 3 * C / 2, 3 * C,
                                                                                     v->qkv, wf + y->qkvb, 0);
        TRY(launched("vit qkv bias", err));
        if (v->fused) {
            flash_attn_kernel<<<dim3((unsigned)((T + FA_B - 1) / FA_B), (unsigned)np), 128, 0, v->st>>>(
                T, H, C, v->qkv, v->att, 1.4426950408889634f / sqrtf((float)D));
            TRY(launched("vit attention", err));
        } else {
        /* S_i = q k^T / sqrt(D): column-major S_i^T = k q^T (row-major [T][D] with ld 3C is column-major D x T) */
        TRY(blas_chk(cublasGemmBatchedEx(v->blas, CUBLAS_OP_T, CUBLAS_OP_N, T, T, D, &scale, v->ptrs + np_max,
                                         CUDA_R_16BF, 3 * C, v->ptrs, CUDA_R_16BF, 3 * C, &zero,
                                         (void *const *)(v->ptrs + 2 * np_max), CUDA_R_32F, T, (int)np,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     "attention scores", err));
        const size_t srows = np * T;
        softmax_kernel<<<(unsigned)((srows + 7) / 8), 256, 0, v->st>>>(srows, T, v->S, v->P);
        TRY(launched("vit softmax", err));
        /* o_i = P_i v: column-major o^T = v^T P^T */
        TRY(blas_chk(cublasGemmBatchedEx(v->blas, CUBLAS_OP_N, CUBLAS_OP_N, D, T, T, &one, v->ptrs + 4 * np_max,
                                         CUDA_R_16BF, 3 * C, v->ptrs + 3 * np_max, CUDA_R_16BF, T, &zero,
                                         (void *const *)(v->ptrs + 5 * np_max), CUDA_R_16BF, C, (int)np,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     "attention output", err));
        }
        TRY(gemm(v, 1, rows, C, C, 1.f, v->att, C, wb + y->ow, C, 1.f, CUDA_R_32F, v->x, C, err)); /* x += */
        ln_kernel<bf16><<<ln_grid, 256, 0, v->st>>>(rows, C, v->x, wf + y->ob, wf + y->ln2w, wf + y->ln2b, c->eps,
                                                    v->xn);
        TRY(launched("vit layernorm", err));
        TRY(gemm(v, 1, rows, I, C, 1.f, v->xn, C, wb + y->fc1w, C, 0.f, CUDA_R_16BF, v->ff, I, err));
        bias_act_kernel<<<grid_for((size_t)rows * I / 2, 256), 256, 0, v->st>>>((size_t)rows * I / 2, I, v->ff,
                                                                                wf + y->fc1b, act);
        TRY(launched("vit mlp activation", err));
        TRY(gemm(v, 1, rows, C, I, 1.f, v->ff, I, wb + y->fc2w, I, 1.f, CUDA_R_32F, v->x, C, err)); /* x += */
        pending = wf + y->fc2b;
    }
    /* SigLIP: post-LN; CLIP: the residual stream itself (plus the last pending bias) */
    const float *pw = clip ? NULL : wf + v->post_w, *pb = clip ? NULL : wf + v->post_b;
    if (out_dt == MRW_CUDA_F32)
        ln_kernel<float><<<ln_grid, 256, 0, v->st>>>(rows, C, v->x, pending, pw, pb, c->eps, (float *)out);
    else
        ln_kernel<bf16><<<ln_grid, 256, 0, v->st>>>(rows, C, v->x, pending, pw, pb, c->eps, (bf16 *)out);
    return launched("vit output", err);
}

extern "C" mrw_status mrw_vit_gpu_forward(mrw_vit_gpu *v, const float *pixels, int pixels_on_host, int n,
                                          mrw_cuda_dtype out_dt, void *out, mrw_error *err) {
    const mrw_vit_config *c = &v->cfg;
    if (!pixels || !out || n < 1 || n > v->max_n)
        return mrw_err(err, MRW_E_ARG, "vit (cuda): %d images (1..%d) or NULL buffers", n, v->max_n);
    if (out_dt != MRW_CUDA_F32 && out_dt != MRW_CUDA_BF16)
        return mrw_err(err, MRW_E_UNSUPPORTED, "vit (cuda): output dtype %d", (int)out_dt);
    if (v->whisper) return mrw_err(err, MRW_E_ARG, "vit (cuda): a Whisper encoder takes mel frames, not pixels");
    const int C = c->hidden, T = c->n_tokens;
    const int P2 = c->n_patches, PP = c->channels * c->patch * c->patch, S = c->image_size;
    const int rows = n * T, clip = c->family == MRW_VIT_CLIP;
    const size_t npx = (size_t)n * c->channels * S * S;
    const float *px = pixels;
    if (pixels_on_host) {
        TRY(cuda_chk(cudaMemcpyAsync(v->px, pixels, npx * 4, cudaMemcpyHostToDevice, v->st), "pixels", err));
        px = v->px;
    }
    const float *wf = v->wf;
    const bf16 *wb = v->wb;
    /* patch embedding: one GEMM over the unfolded patches */
    const size_t ncol = (size_t)n * P2 * PP;
    im2col_kernel<<<grid_for(ncol, 256), 256, 0, v->st>>>(ncol, c->channels, S, c->patch, c->grid, px, v->cols);
    TRY(launched("vit im2col", err));
    TRY(gemm(v, 1, n * P2, C, PP, 1.f, v->cols, PP, wb + v->patch_w, PP, 0.f, CUDA_R_32F, v->pe, C, err));
    const size_t nx = (size_t)rows * C;
    embed_kernel<<<grid_for(nx, 256), 256, 0, v->st>>>(nx, C, T, P2, clip, v->pe, clip ? NULL : wf + v->patch_b,
                                                        clip ? wf + v->cls : NULL, wf + v->pos, v->x);
    TRY(launched("vit embeddings", err));
    const unsigned ln_grid = (unsigned)((rows + 7) / 8);
    if (clip) ln_kernel<float><<<ln_grid, 256, 0, v->st>>>(rows, C, v->x, NULL, wf + v->pre_w, wf + v->pre_b, c->eps,
                                                          v->x);
    return run_layers(v, n, out_dt, out, err);
}

extern "C" mrw_status mrw_vit_gpu_forward_host(mrw_vit_gpu *v, const float *pixels, int n, float *out, mrw_error *err) {
    if (!v || !pixels || !out || n < 1 || n > v->max_n)
        return mrw_err(err, MRW_E_ARG, "vit (cuda): %d images (1..%d) or NULL buffers", n, v ? v->max_n : 0);
    const size_t bytes = (size_t)n * v->cfg.n_tokens * v->cfg.hidden * sizeof(float);
    float *d = NULL;
    cudaError_t e = cudaMalloc((void **)&d, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return mrw_err(err, MRW_E_NOMEM, "vit (cuda): cannot allocate %zu bytes for the encoder output", bytes);
    }
    mrw_status s = mrw_vit_gpu_forward(v, pixels, 1, n, MRW_CUDA_F32, d, err);
    if (!s) s = cuda_chk(cudaMemcpyAsync(out, d, bytes, cudaMemcpyDeviceToHost, v->st), "output download", err);
    if (!s) s = cuda_chk(cudaStreamSynchronize(v->st), "vit forward", err);
    cudaFree(d);
    return s;
}

/* ------------------------------------------------------------------------------------------------ Whisper */

extern "C" mrw_status mrw_whisper_gpu_new(const mrw_whisper_config *wc, int n_frames, void *stream, mrw_vit_gpu **out,
                                          mrw_error *err) {
    return mrw_whisper_gpu_new_batch(wc, n_frames, 1, stream, out, err);
}

extern "C" mrw_status mrw_whisper_gpu_new_batch(const mrw_whisper_config *wc, int n_frames, int max_clips, void *stream,
                                                mrw_vit_gpu **out, mrw_error *err) {
    *out = NULL;
    if (wc && n_frames > 0 && (max_clips < 1 || (double)max_clips * (wc->n_heads > 0 ? wc->n_heads : 1) *
                                                    ((n_frames + 1) / 2) * ((n_frames + 1) / 2) > 4e9))
        return mrw_err(err, MRW_E_ARG, "whisper (cuda): %d clips per forward is out of range", max_clips);
    if (!wc || wc->n_mels < 1 || wc->d_model < 2 || wc->d_model % 2 || wc->n_layers < 1 || wc->n_heads < 1 ||
        wc->d_model % wc->n_heads || wc->ffn_dim < 2 || wc->ffn_dim % 2 || wc->n_pos < 1 || n_frames < 1 ||
        n_frames > 2 * wc->n_pos || wc->d_model > 16384 || wc->ffn_dim > 65536 || wc->n_mels > 1024 || !(wc->ln_eps > 0))
        return mrw_err(err, MRW_E_ARG, "whisper (cuda): unsupported shape (d_model %d, heads %d, layers %d, ffn %d, "
                       "mels %d, %d frames of at most %d)", wc ? wc->d_model : 0, wc ? wc->n_heads : 0,
                       wc ? wc->n_layers : 0, wc ? wc->ffn_dim : 0, wc ? wc->n_mels : 0, n_frames, wc ? 2 * wc->n_pos : 0);
    if (wc->act != MRW_ACT_GELU && wc->act != MRW_ACT_GELU_TANH)
        return mrw_err(err, MRW_E_UNSUPPORTED, "whisper (cuda): activation %d (only gelu and gelu_new)", (int)wc->act);
    mrw_vit_gpu *v = (mrw_vit_gpu *)calloc(1, sizeof *v);
    if (!v) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    mrw_vit_config *c = &v->cfg;
    c->family = MRW_VIT_SIGLIP; /* no CLS, output = the final LayerNorm (post_w / post_b) */
    c->hidden = wc->d_model, c->n_layer = wc->n_layers, c->n_head = wc->n_heads;
    c->head_dim = wc->d_model / wc->n_heads, c->intermediate = wc->ffn_dim;
    c->n_tokens = c->n_patches = (n_frames + 1) / 2; /* conv2 (k3, s2, p1): mrw_whisper_enc_out_frames */
    c->channels = 1, c->patch = 1, c->grid = 1, c->image_size = 1;
    c->eps = wc->ln_eps;
    c->act = wc->act == MRW_ACT_GELU ? MRW_VIT_GELU_ERF : MRW_VIT_GELU_TANH;
    v->whisper = 1, v->n_mels = wc->n_mels, v->frames = n_frames, v->n_pos = wc->n_pos;
    v->max_n = max_clips;
    v->st = (cudaStream_t)stream;
    v->fused = c->head_dim == 64 && c->hidden % 8 == 0;
    return vit_alloc(v, out, err);
}

extern "C" int mrw_whisper_gpu_frames(const mrw_vit_gpu *v) { return v->whisper ? v->frames : 0; }

extern "C" int mrw_whisper_gpu_max_clips(const mrw_vit_gpu *v) { return v->whisper ? v->max_n : 0; }

extern "C" mrw_status mrw_whisper_gpu_forward_host(mrw_vit_gpu *v, const float *mel, float *out, mrw_error *err) {
    return mrw_whisper_gpu_forward_host_batch(v, mel, 1, out, err);
}

/* n clips: the stem (conv1, conv2, positions) one clip at a time into its rows of the residual stream, then the
 * layers over all n clips at once (GEMMs over n * T rows, attention per clip and head) */
extern "C" mrw_status mrw_whisper_gpu_forward_host_batch(mrw_vit_gpu *v, const float *mel, int n, float *out,
                                                         mrw_error *err) {
    if (!v || !v->whisper || !mel || !out || n < 1 || n > v->max_n)
        return mrw_err(err, MRW_E_ARG, "whisper (cuda): not a Whisper encoder, %d clips (1..%d) or NULL buffers", n,
                       v && v->whisper ? v->max_n : 0);
    const mrw_vit_config *c = &v->cfg;
    const int C = c->hidden, T = c->n_tokens, F = v->frames, nm = v->n_mels;
    const float *wf = v->wf;
    const bf16 *wb = v->wb;
    TRY(cuda_chk(cudaMemcpyAsync(v->px, mel, (size_t)n * nm * F * 4, cudaMemcpyHostToDevice, v->st), "mel", err));
    for (int i = 0; i < n; i++) {
        const size_t n1 = (size_t)F * nm * 3;
        conv1_cols_kernel<<<grid_for(n1, 256), 256, 0, v->st>>>(n1, nm, F, v->px + (size_t)i * nm * F, v->cols);
        TRY(launched("whisper conv1 windows", err));
        TRY(gemm(v, 1, F, C, nm * 3, 1.f, v->cols, nm * 3, wb + v->c1w, nm * 3, 0.f, CUDA_R_32F, v->pe, C, err));
        const size_t nh = (size_t)F * C;
        bias_gelu_pos_kernel<<<grid_for(nh, 256), 256, 0, v->st>>>(nh, C, v->pe, wf + v->c1b, NULL);
        TRY(launched("whisper conv1 gelu", err));
        const size_t n2 = (size_t)T * C * 3;
        conv2_cols_kernel<<<grid_for(n2, 256), 256, 0, v->st>>>(n2, C, F, v->pe, v->cols);
        TRY(launched("whisper conv2 windows", err));
        float *xi = v->x + (size_t)i * T * C;
        TRY(gemm(v, 1, T, C, C * 3, 1.f, v->cols, C * 3, wb + v->c2w, C * 3, 0.f, CUDA_R_32F, xi, C, err));
        const size_t nx = (size_t)T * C;
        bias_gelu_pos_kernel<<<grid_for(nx, 256), 256, 0, v->st>>>(nx, C, xi, wf + v->c2b, wf + v->pos);
        TRY(launched("whisper conv2 gelu + positions", err));
    }
    const size_t nx = (size_t)n * T * C;
    float *d = NULL;
    cudaError_t e = cudaMalloc((void **)&d, nx * sizeof(float));
    if (e != cudaSuccess) {
        cudaGetLastError();
        return mrw_err(err, MRW_E_NOMEM, "whisper (cuda): cannot allocate %zu bytes for the output", nx * 4);
    }
    mrw_status s = run_layers(v, n, MRW_CUDA_F32, d, err);
    if (!s) s = cuda_chk(cudaMemcpyAsync(out, d, nx * sizeof(float), cudaMemcpyDeviceToHost, v->st), "output download", err);
    if (!s) s = cuda_chk(cudaStreamSynchronize(v->st), "whisper forward", err);
    cudaFree(d);
    return s;
}
