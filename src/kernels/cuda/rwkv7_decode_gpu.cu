/* RWKV-7 decode on the GPU (see rwkv7_decode_gpu.h). Kernels of one step, for B sequences:
 *   k_ln         LayerNorm of a row, then the token-shift mixes against the state's previous row (1 or 6 mixes),
 *                and the state's shift vector becomes this token's normalized row (steps 1-2, 14); C / 64 blocks
 *                per row, each sums the whole row itself and writes its 64 channels. ln0 reads the token's bf16
 *                embedding row itself (or an uploaded input row)
 *   k_gemv       Y (=, +=) act(X W^T) for up to 7 products in one launch: 1-8 warps per output row, 16-byte weight
 *                chunks (8 bf16 or 4 fp32 weights; 8 in flight per lane at B = 1, 4 for B > 1), fp32 activations
 *                and sums; B rows of X per weight load tile
 *   k_mid        one block per (sequence, head), 64 threads: decay, ICLR, value residual, key prep, the WKV
 *                state update and readout with the head's state row in registers, GroupNorm, bonus and gate
 *                (steps 4-12); at B = 1 also the 4 LoRA up-projections (the head's rows copied to shared memory
 *                while the kernel before runs)
 * Per layer: ln+mix, 7 down-projections (r, k, v and the LoRA downs with tanh / sigmoid fused), 4 LoRA ups (B > 1,
 * or big LoRA ranks), mid, Wo (+= residual), ln2+mix, FFN key (relu^2 fused), FFN value (+= residual): 7 or 8
 * launches per layer + 3. Every kernel loads what does not depend on the kernel before (weights, the state) before
 * it waits for it (programmatic dependent launch). */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "base/error.h"
}
#include "kernels/cuda/rwkv7_decode_gpu.h"

typedef __nv_bfloat16 bf16;

#define DG_N 64
#define DG_MAXJOBS 7
#define DG_FUSE_MAX (96 * 1024) /* k_mid's shared memory for the fused LoRA up-projections, at most (B = 1) */

/* ------------------------------------------------------------------------------------------ device helpers */

static __device__ __forceinline__ float dg_warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result. sh: 32 floats. */
static __device__ __forceinline__ float dg_block_sum(float x, float *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    x = dg_warp_sum(x);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[w] = x;
    __syncthreads();
    float s = 0;
    for (int i = 0; i < nw; i++) s += sh[i];
    return s;
}

/* Programmatic dependent launch (sm_90): every kernel lets the next one start at once (launch_dependents) and
 * waits for the previous one's completion and memory (wait) before it reads or writes activations, so each launch's
 * latency and the weight prefetch of the GEMVs overlap the kernel before. */
static __device__ __forceinline__ void pdl_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
static __device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

static __device__ __forceinline__ float dg_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* ------------------------------------------------------------------------------------------------ kernels */

#define DG_MAXMIX 6
#define DG_LN_SL 64  /* channels per block of k_ln */
#define DG_LN_T 128  /* threads per block of k_ln: two per channel of the slice */

struct LnArgs {
    const float *x;      /* [B][C] input rows, or NULL: the rows are the embeddings of tok (bf16 emb) */
    const int32_t *tok;  /* [B] token ids (with emb) */
    const bf16 *emb;     /* [V][C] */
    const float *lw, *lb;
    float *ln_out;       /* [B][C] y = LN(row), or NULL; never the same buffer as x */
    float *state;        /* NULL, or the shift row sx = state + b * sstride + sx_off is mixed against and updated */
    size_t sstride, sx_off;
    const float *mix[DG_MAXMIX];
    float *out[DG_MAXMIX];
    int n, C;
};

/* grid (C / 64, B), 128 threads: block (s, b) normalizes row b (each block sums the whole row itself: 4 KB from
 * L2 at C = 1024) and writes channels [64 s, 64 s + 64) of ln_out and of the mixes out_j = y + (sx - y) * mix_j,
 * then sx = y for its channels. Thread t takes channel t % 64 and the mixes j = t / 64, t / 64 + 2, t / 64 + 4.
 * The per-channel weights and the shift row (written only by this kernel, in the previous step) are loaded before
 * the wait for the kernel before. */
__global__ void __launch_bounds__(DG_LN_T) k_ln(LnArgs a) {
    __shared__ float sh[32];
    pdl_launch();
    const int b = blockIdx.y, C = a.C, t = threadIdx.x, half = t >> 6;
    const int c = blockIdx.x * DG_LN_SL + (t & (DG_LN_SL - 1));
    const float lw = a.lw[c], lb = a.lb[c];
    float mx[3];
#pragma unroll
    for (int q = 0; q < 3; q++) {
        const int j = half + 2 * q;
        mx[q] = j < a.n ? a.mix[j][c] : 0.0f;
    }
    float *sx = a.state ? a.state + (size_t)b * a.sstride + a.sx_off : NULL;
    const float sxv = sx ? sx[c] : 0.0f;
    pdl_wait();
    float s = 0, xc;
    if (a.x) {
        const float *xr = a.x + (size_t)b * C;
        for (int i = t; i < C; i += DG_LN_T) s += xr[i];
        const float mean = dg_block_sum(s, sh) / C;
        float v = 0;
        for (int i = t; i < C; i += DG_LN_T) {
            const float d = xr[i] - mean;
            v += d * d;
        }
        xc = (xr[c] - mean) * rsqrtf(dg_block_sum(v, sh) / C + 1e-5f);
    } else {
        const bf16 *er = a.emb + (size_t)a.tok[b] * C;
        for (int i = t; i < C; i += DG_LN_T) s += __bfloat162float(er[i]);
        const float mean = dg_block_sum(s, sh) / C;
        float v = 0;
        for (int i = t; i < C; i += DG_LN_T) {
            const float d = __bfloat162float(er[i]) - mean;
            v += d * d;
        }
        xc = (__bfloat162float(er[c]) - mean) * rsqrtf(dg_block_sum(v, sh) / C + 1e-5f);
    }
    const float y = xc * lw + lb;
    const size_t o = (size_t)b * C + c;
    if (a.ln_out && half == 0) a.ln_out[o] = y;
    if (sx) {
        const float d = sxv - y;
#pragma unroll
        for (int q = 0; q < 3; q++) {
            const int j = half + 2 * q;
            if (j < a.n) a.out[j][o] = y + d * mx[q];
        }
        if (half == 0) sx[c] = y; /* both threads of c read sx[c] before the block sums' barriers */
    }
}

enum { ACT_NONE = 0, ACT_TANH, ACT_SIGMOID, ACT_RELU2 };

struct GJob {
    const void *W;  /* [rows][K], bf16 or (f32) fp32 */
    const float *X; /* [B][ldx] */
    float *Y;       /* [B][ldy] */
    int rows, K, ldx, ldy, act, acc, f32;
};
struct GJobs {
    GJob j[DG_MAXJOBS];
    int start[DG_MAXJOBS + 1]; /* first global row of each job; start[n] = total */
    int n;
};

static __device__ __forceinline__ void dg_unpack(uint32_t u, float &lo, float &hi) {
    lo = __uint_as_float(u << 16);
    hi = __uint_as_float(u & 0xffff0000u);
}

/* wpr (1, 2, 4 or 8) warps per output row of one of the jobs (a block of 8 warps holds 8 / wpr rows); the warps of
 * a row take interleaved 16-byte chunks of the row (8 bf16 weights, or 4 fp32 weights of the LoRA matrices), U
 * chunks in flight per lane, and add their sums in a fixed order through shared memory, so the result does not
 * depend on timing. BT rows of X share each weight load. K a multiple of 8, X and W rows 16-byte aligned (checked
 * at creation). B = 1 (BT = 1) is held to 64 registers so that 4 blocks fit on an SM. */
template <int BT, int U> __global__ void __launch_bounds__(256, BT == 1 ? 4 : 1) k_gemv(GJobs js, int B, int wpr) {
    __shared__ float red[8][BT];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row_g = blockIdx.x * (8 / wpr) + warp / wpr, part = warp % wpr;
    const int active = row_g < js.start[js.n];
    int ji = 0;
    while (active && ji + 1 < js.n && row_g >= js.start[ji + 1]) ji++;
    const GJob J = js.j[ji];
    const int row = active ? row_g - js.start[ji] : 0;
    const int f32 = J.f32, epc = f32 ? 4 : 8;   /* weights per 16-byte chunk */
    const int nch = active ? J.K / epc : 0;     /* chunks per row */
    const uint4 *w = (const uint4 *)J.W + (size_t)row * nch;
    const int c0 = part * 32 + lane, cstep = wpr * 32;
    pdl_launch();
    /* the weights do not depend on the kernel before: the first chunks into registers, the rest into L2 */
    uint4 wv[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int c = c0 + u * cstep;
        wv[u] = c < nch ? __ldg(w + c) : make_uint4(0, 0, 0, 0);
    }
    for (int c = c0 + U * cstep; c < nch; c += cstep) asm volatile("prefetch.global.L2 [%0];" ::"l"(w + c));
    pdl_wait();
    for (int b0 = 0; b0 < B; b0 += BT) {
        float acc[BT];
#pragma unroll
        for (int t = 0; t < BT; t++) acc[t] = 0;
        for (int c1 = c0; c1 < nch; c1 += cstep * U) {
            if (b0 != 0 || c1 != c0) {
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int c = c1 + u * cstep;
                    wv[u] = c < nch ? __ldg(w + c) : make_uint4(0, 0, 0, 0);
                }
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int c = c1 + u * cstep;
                if (c >= nch) break;
                const int k = c * epc;
                if (f32) {
                    const float w0 = __uint_as_float(wv[u].x), w1 = __uint_as_float(wv[u].y);
                    const float w2 = __uint_as_float(wv[u].z), w3 = __uint_as_float(wv[u].w);
#pragma unroll
                    for (int t = 0; t < BT; t++) {
                        if (BT > 1 && b0 + t >= B) break;
                        const float4 x0 = *(const float4 *)(J.X + (size_t)(b0 + t) * J.ldx + k);
                        float a = acc[t];
                        a += w0 * x0.x;
                        a += w1 * x0.y;
                        a += w2 * x0.z;
                        a += w3 * x0.w;
                        acc[t] = a;
                    }
                } else {
                    float wf[8];
                    dg_unpack(wv[u].x, wf[0], wf[1]);
                    dg_unpack(wv[u].y, wf[2], wf[3]);
                    dg_unpack(wv[u].z, wf[4], wf[5]);
                    dg_unpack(wv[u].w, wf[6], wf[7]);
#pragma unroll
                    for (int t = 0; t < BT; t++) {
                        if (BT > 1 && b0 + t >= B) break;
                        const float *x = J.X + (size_t)(b0 + t) * J.ldx + k;
                        const float4 x0 = *(const float4 *)x, x1 = *(const float4 *)(x + 4);
                        float a = acc[t];
                        a += wf[0] * x0.x;
                        a += wf[1] * x0.y;
                        a += wf[2] * x0.z;
                        a += wf[3] * x0.w;
                        a += wf[4] * x1.x;
                        a += wf[5] * x1.y;
                        a += wf[6] * x1.z;
                        a += wf[7] * x1.w;
                        acc[t] = a;
                    }
                }
            }
        }
#pragma unroll
        for (int t = 0; t < BT; t++) acc[t] = dg_warp_sum(acc[t]);
        if (wpr > 1) {
            if (lane == 0)
#pragma unroll
                for (int t = 0; t < BT; t++) red[warp][t] = acc[t];
            __syncthreads();
            if (part == 0)
#pragma unroll
                for (int t = 0; t < BT; t++) {
                    float s = red[warp][t];
                    for (int q = 1; q < wpr; q++) s += red[warp + q][t];
                    acc[t] = s;
                }
            __syncthreads(); /* red is reused by the next tile */
        }
        if (active && part == 0 && lane == 0)
#pragma unroll
            for (int t = 0; t < BT; t++) {
                if (b0 + t >= B) break;
                float y = acc[t];
                if (J.act == ACT_TANH) y = tanhf(y);
                else if (J.act == ACT_SIGMOID) y = dg_sigmoid(y);
                else if (J.act == ACT_RELU2) y = y > 0 ? y * y : 0;
                float *dst = J.Y + (size_t)(b0 + t) * J.ldy + row;
                *dst = J.acc ? *dst + y : y;
            }
    }
}

struct MidArgs {
    const float *r, *k, *v, *wp, *ap, *g, *vp; /* [B][C] (vp unused in layer 0) */
    float *vfirst, *y;                          /* [B][C] */
    const float *w0, *a0, *v0, *k_k, *k_a, *r_k, *lnx_w, *lnx_b;
    float *state;
    size_t sstride, s_off; /* the layer's WKV state: state + b * sstride + s_off, heads of N*N */
    int C, layer0;
    /* fuse: the 4 LoRA up-projections are computed here (wp, ap, g, vp unused): m = w, a, g, v; M[m] [C][rank[m]]
     * fp32, hid[m] [B][rank[m]] the down-projections' outputs; rank[3] = 0 in layer 0 */
    int fuse;
    const float *M[4], *hid[4];
    int rank[4];
};

static __device__ __forceinline__ void dg_cp_async16(void *smem, const void *gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned sa = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(sa), "l"(gmem) : "memory");
#else
    *(uint4 *)smem = *(const uint4 *)gmem;
#endif
}
static __device__ __forceinline__ void dg_cp_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;" ::: "memory");
#endif
}

/* Row i of a [64][n] fp32 slice in shared memory times the [n] vector h (shared): thread i starts at float4 i mod
 * (n / 4) and wraps around, so the 8 threads of a 128-byte phase hit different banks (n / 4 is even). */
static __device__ __forceinline__ float dg_row_dot(const float *ws, const float *h, int n, int i) {
    const int n4 = n >> 2;
    const float4 *w4 = (const float4 *)(ws + (size_t)i * n), *h4 = (const float4 *)h;
    int q = i % n4;
    float s0 = 0, s1 = 0;
    for (int j = 0; j < n4; j++) {
        const float4 a = w4[q], x = h4[q];
        s0 += a.x * x.x + a.y * x.y;
        s1 += a.z * x.z + a.w * x.w;
        if (++q == n4) q = 0;
    }
    return s0 + s1;
}

/* grid (H, B), 64 threads: thread i is channel c = h*64 + i and row i of the head's state. The per-channel weights
 * and the state row (written only by this kernel of this layer, in the previous step) are loaded before the wait
 * for the kernel before. */
__global__ void __launch_bounds__(DG_N) k_mid(MidArgs a) {
    __shared__ float r_s[DG_N], w_s[DG_N], k_s[DG_N], a_s[DG_N], b_s[DG_N];
    __shared__ float sh[32];
    extern __shared__ float4 dyn_s[]; /* fuse: the head's 64 rows of each up-projection, then the 4 hidden vectors */
    pdl_launch();
    const int h = blockIdx.x, b = blockIdx.y, i = threadIdx.x, c = h * DG_N + i;
    const size_t o = (size_t)b * a.C + c;
    float *ws = (float *)dyn_s;
    int hoff = 0;
    if (a.fuse) /* the weights do not depend on the kernel before: copied to shared memory while it runs */
        for (int m = 0; m < 4; m++) {
            const int n4 = DG_N * a.rank[m] / 4;
            const float4 *src = (const float4 *)(a.M[m] + (size_t)h * DG_N * a.rank[m]);
            for (int j = i; j < n4; j += DG_N) dg_cp_async16(ws + hoff + 4 * j, src + j);
            hoff += DG_N * a.rank[m];
        }
    const float w0 = a.w0[c], a0 = a.a0[c], v0 = a.layer0 ? 0.0f : a.v0[c], k_k = a.k_k[c], k_a = a.k_a[c];
    const float r_k = a.r_k[c], lnx_w = a.lnx_w[c], lnx_b = a.lnx_b[c];
    float *S = a.state + (size_t)b * a.sstride + a.s_off + (size_t)h * DG_N * DG_N + (size_t)i * DG_N;
    float4 srow[DG_N / 4];
#pragma unroll
    for (int q = 0; q < DG_N / 4; q++) srow[q] = ((const float4 *)S)[q];
    pdl_wait();
    float wp, ap, gv, vp = 0;
    if (a.fuse) {
        float *hs = ws + hoff;
        for (int m = 0, ho = 0; m < 4; ho += a.rank[m], m++)
            for (int j = i; j < a.rank[m]; j += DG_N) hs[ho + j] = a.hid[m][(size_t)b * a.rank[m] + j];
        dg_cp_async_wait_all();
        __syncthreads();
        const int r0 = a.rank[0], r1 = a.rank[1], r2 = a.rank[2];
        const float *w1 = ws + DG_N * r0, *w2 = w1 + DG_N * r1, *w3 = w2 + DG_N * r2;
        wp = dg_row_dot(ws, hs, r0, i);
        ap = dg_row_dot(w1, hs + r0, r1, i);
        gv = dg_row_dot(w2, hs + r0 + r1, r2, i);
        if (!a.layer0) vp = dg_row_dot(w3, hs + r0 + r1 + r2, a.rank[3], i);
    } else {
        wp = a.wp[o], ap = a.ap[o], gv = a.g[o];
        if (!a.layer0) vp = a.vp[o];
    }
    const float r = a.r[o];
    float k = a.k[o], v = a.v[o];
    const float w = expf(-0.60653065971263342f * dg_sigmoid(w0 + wp)); /* step 4 */
    const float alpha = dg_sigmoid(a0 + ap);                          /* step 5 */
    if (a.layer0) a.vfirst[o] = v;                                     /* step 7 */
    else v += (a.vfirst[o] - v) * dg_sigmoid(v0 + vp);
    float kk = k * k_k; /* steps 8-9 */
    const float ss = dg_block_sum(kk * kk, sh);
    kk *= 1.0f / fmaxf(sqrtf(ss), 1e-12f);
    k *= 1.0f + (alpha - 1.0f) * k_a;
    r_s[i] = r;
    w_s[i] = w;
    k_s[i] = k;
    a_s[i] = -kk;
    b_s[i] = alpha * kk;
    __syncthreads();
    /* step 10: S_i = S_i diag(w) + (S_i a) b^T + v_i k^T, y_i = S_i r */
    float sa = 0;
#pragma unroll
    for (int q = 0; q < DG_N / 4; q++)
        sa += srow[q].x * a_s[4 * q] + srow[q].y * a_s[4 * q + 1] + srow[q].z * a_s[4 * q + 2] + srow[q].w * a_s[4 * q + 3];
    float y = 0;
#pragma unroll
    for (int q = 0; q < DG_N / 4; q++) {
        float4 s = srow[q];
        const int j = 4 * q;
        s.x = s.x * w_s[j] + sa * b_s[j] + v * k_s[j];
        s.y = s.y * w_s[j + 1] + sa * b_s[j + 1] + v * k_s[j + 1];
        s.z = s.z * w_s[j + 2] + sa * b_s[j + 2] + v * k_s[j + 2];
        s.w = s.w * w_s[j + 3] + sa * b_s[j + 3] + v * k_s[j + 3];
        y += s.x * r_s[j] + s.y * r_s[j + 1] + s.z * r_s[j + 2] + s.w * r_s[j + 3];
        ((float4 *)S)[q] = s;
    }
    /* steps 11-12: GroupNorm over the head, bonus, gate */
    const float mean = dg_block_sum(y, sh) / DG_N;
    const float d = y - mean;
    const float var = dg_block_sum(d * d, sh) / DG_N;
    const float beta = dg_block_sum(r * k * r_k, sh);
    const float gn = d * rsqrtf(var + 64e-5f) * lnx_w + lnx_b;
    a.y[o] = (gn + beta * v) * gv;
}

/* Deterministic uniform [lo, hi) fill (benchmarks). */
static __device__ __forceinline__ float dg_uniform(uint64_t seed, size_t i) {
    uint64_t z = seed + (uint64_t)i * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((z >> 40) * (1.0 / 16777216.0));
}
__global__ void k_fill_bf16(bf16 *p, size_t n, uint64_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __float2bfloat16_rn(lo + (hi - lo) * dg_uniform(seed, i));
}
__global__ void k_fill_f32(float *p, size_t n, uint64_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = lo + (hi - lo) * dg_uniform(seed, i);
}

/* --------------------------------------------------------------------------------------------------- host */

struct mrw_decode_gpu {
    mrw_decode_gpu_shape s;
    int L, C, H, F, V, max_B;
    size_t lf, state_floats;
    size_t *off;  /* [L][MRW_DG_COUNT] element offset into wmat (matrices) or wvec (vectors); SIZE_MAX: absent */
    bf16 *wmat;
    float *wvec;
    size_t n_mat, n_vec;
    float *state; /* [max_B][state_floats] */
    float *act;   /* scratch */
    float *x, *xin, *xr, *xw, *xk, *xv, *xa, *xg, *r, *k, *v, *lw, *la, *lg, *lv, *wp, *ap, *g, *vp, *vfirst, *y, *ffn,
        *logits;
    int32_t *d_tok, *h_tok;
    cudaStream_t st;
    cudaGraphExec_t *graph; /* [max_B + 1], lazily captured */
    cudaGraphExec_t *graph_emb; /* the same for steps that read embedding rows (mrw_decode_gpu_step_embed) */
    int use_graph, use_pdl;
    size_t fuse_smem; /* dynamic shared memory of k_mid with the LoRA ups fused (B = 1); 0: not fused */
};

/* bf16: the big matrices; fp32: the vectors and the LoRA matrices (as the CPU model holds them) */
static int is_mat(int t) { return t == MRW_DG_EMB || t == MRW_DG_HEAD || t >= MRW_DG_WR; }
static int is_lora(int t) { return t >= MRW_DG_W1 && t <= MRW_DG_G2; }
static int is_global(int t) { return t <= MRW_DG_LNOUT_B; }

extern "C" size_t mrw_decode_gpu_tensor_size(const mrw_decode_gpu *g, mrw_dg_tensor t, int layer) {
    const mrw_decode_gpu_shape *s = &g->s;
    const size_t C = s->n_embd, V = s->n_vocab, F = s->n_ffn;
    const int l0 = layer == 0;
    switch (t) {
    case MRW_DG_EMB:
    case MRW_DG_HEAD: return V * C;
    case MRW_DG_V0: return l0 ? 0 : C;
    case MRW_DG_W1:
    case MRW_DG_W2: return (size_t)s->lora_w * C;
    case MRW_DG_A1:
    case MRW_DG_A2: return (size_t)s->lora_a * C;
    case MRW_DG_V1:
    case MRW_DG_V2: return l0 ? 0 : (size_t)s->lora_v * C;
    case MRW_DG_G1:
    case MRW_DG_G2: return (size_t)s->lora_g * C;
    case MRW_DG_WR:
    case MRW_DG_WK:
    case MRW_DG_WV:
    case MRW_DG_WO: return C * C;
    case MRW_DG_FFN_KEY:
    case MRW_DG_FFN_VALUE: return F * C;
    case MRW_DG_COUNT: return 0;
    default: return C;
    }
}

static mrw_status cu_fail(mrw_error *err, cudaError_t e, const char *what) {
    return mrw_err(err, MRW_E_INTERNAL, "GPU decode: %s: %s", what, cudaGetErrorString(e));
}

static mrw_status cu_alloc(void **p, size_t bytes, const char *what, mrw_error *err) {
    cudaError_t e = cudaMalloc(p, bytes);
    if (e == cudaSuccess) return MRW_OK;
    size_t fr = 0, tot = 0;
    cudaGetLastError();
    cudaMemGetInfo(&fr, &tot);
    if (e == cudaErrorMemoryAllocation)
        return mrw_err(err, MRW_E_NOMEM, "GPU decode: cannot allocate %.2f GiB (%zu bytes) of %s (%.2f GiB free of %.2f GiB)",
                       bytes / 1073741824.0, bytes, what, fr / 1073741824.0, tot / 1073741824.0);
    return cu_fail(err, e, what);
}

extern "C" void mrw_decode_gpu_free(mrw_decode_gpu *g) {
    if (!g) return;
    if (g->graph)
        for (int b = 0; b <= g->max_B; b++)
            if (g->graph[b]) cudaGraphExecDestroy(g->graph[b]);
    if (g->graph_emb)
        for (int b = 0; b <= g->max_B; b++)
            if (g->graph_emb[b]) cudaGraphExecDestroy(g->graph_emb[b]);
    free(g->graph);
    free(g->graph_emb);
    cudaFree(g->wmat);
    cudaFree(g->wvec);
    cudaFree(g->state);
    cudaFree(g->act);
    cudaFree(g->d_tok);
    if (g->h_tok) cudaFreeHost(g->h_tok);
    if (g->st) cudaStreamDestroy(g->st);
    free(g->off);
    free(g);
}

extern "C" mrw_status mrw_decode_gpu_new(const mrw_decode_gpu_shape *s, int max_B, mrw_decode_gpu **out,
                                         mrw_error *err) {
    *out = NULL;
    if (!s || s->n_layer < 1 || s->n_embd < 64 || s->head_size != DG_N || s->n_embd % DG_N || s->n_ffn < 8 ||
        s->n_ffn % 8 || s->n_vocab < 1 || max_B < 1 || max_B > 4096)
        return mrw_err(err, MRW_E_ARG, "GPU decode: unsupported shape (head size must be 64, n_embd a multiple of 64, "
                                       "n_ffn a multiple of 8, 1 <= batch <= 4096)");
    const int ranks[4] = {s->lora_w, s->lora_a, s->lora_v, s->lora_g};
    for (int i = 0; i < 4; i++)
        if (ranks[i] < 8 || ranks[i] % 8)
            return mrw_err(err, MRW_E_ARG, "GPU decode: LoRA rank %d is not a positive multiple of 8", ranks[i]);
    mrw_decode_gpu *g = (mrw_decode_gpu *)calloc(1, sizeof *g);
    if (!g) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    g->s = *s;
    g->L = s->n_layer;
    g->C = s->n_embd;
    g->H = s->n_embd / DG_N;
    g->F = s->n_ffn;
    g->V = s->n_vocab;
    g->max_B = max_B;
    g->use_graph = 1;
    g->use_pdl = 1;
    g->lf = (size_t)2 * g->C + (size_t)g->H * DG_N * DG_N;
    g->state_floats = g->lf * g->L;
    g->off = (size_t *)malloc(sizeof(size_t) * g->L * MRW_DG_COUNT);
    g->graph = (cudaGraphExec_t *)calloc(max_B + 1, sizeof(cudaGraphExec_t));
    g->graph_emb = (cudaGraphExec_t *)calloc(max_B + 1, sizeof(cudaGraphExec_t));
    mrw_status st = MRW_OK;
    if (!g->off || !g->graph || !g->graph_emb) {
        mrw_decode_gpu_free(g);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    for (int l = 0; l < g->L; l++)
        for (int t = 0; t < MRW_DG_COUNT; t++) {
            size_t n = mrw_decode_gpu_tensor_size(g, (mrw_dg_tensor)t, l);
            size_t *o = &g->off[(size_t)l * MRW_DG_COUNT + t];
            if (!n || (is_global(t) && l > 0)) {
                *o = (size_t)-1;
                continue;
            }
            size_t *cnt = is_mat(t) ? &g->n_mat : &g->n_vec;
            *o = *cnt;
            *cnt += (n + 63) & ~(size_t)63; /* 128-byte aligned starts */
        }
    const size_t B = max_B, C = g->C;
    const size_t rk = (size_t)s->lora_w + s->lora_a + s->lora_g + s->lora_v;
    const size_t n_act = B * (C * 19 + rk + g->F + g->V) + 64 * 32;
    cudaError_t e;
    if ((e = cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking)) != cudaSuccess) {
        st = cu_fail(err, e, "stream");
        goto fail;
    }
    if ((st = cu_alloc((void **)&g->wmat, g->n_mat * sizeof(bf16), "bf16 weight matrices", err)) ||
        (st = cu_alloc((void **)&g->wvec, g->n_vec * sizeof(float), "weight vectors", err)) ||
        (st = cu_alloc((void **)&g->state, B * g->state_floats * sizeof(float), "states", err)) ||
        (st = cu_alloc((void **)&g->act, n_act * sizeof(float), "activations", err)) ||
        (st = cu_alloc((void **)&g->d_tok, B * sizeof(int32_t), "tokens", err)))
        goto fail;
    if ((e = cudaMallocHost((void **)&g->h_tok, B * sizeof(int32_t))) != cudaSuccess) {
        st = cu_fail(err, e, "pinned tokens");
        goto fail;
    }
    {
        float *p = g->act;
        float **bufs[] = {&g->x, &g->xin, &g->xr, &g->xw, &g->xk, &g->xv, &g->xa, &g->xg, &g->r,
                          &g->k, &g->v,   &g->wp, &g->ap, &g->g,  &g->vp, &g->vfirst, &g->y};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++, p += B * C) *bufs[i] = p;
        g->lw = p, p += B * s->lora_w;
        g->la = p, p += B * s->lora_a;
        g->lg = p, p += B * s->lora_g;
        g->lv = p, p += B * s->lora_v;
        g->ffn = p, p += B * g->F;
        g->logits = p;
    }
    if ((e = cudaMemset(g->state, 0, B * g->state_floats * sizeof(float))) != cudaSuccess ||
        (e = cudaMemset(g->act, 0, n_act * sizeof(float))) != cudaSuccess ||
        (e = cudaMemset(g->d_tok, 0, B * sizeof(int32_t))) != cudaSuccess ||
        (e = cudaMemset(g->wmat, 0, g->n_mat * sizeof(bf16))) != cudaSuccess ||
        (e = cudaMemset(g->wvec, 0, g->n_vec * sizeof(float))) != cudaSuccess) {
        st = cu_fail(err, e, "memset");
        goto fail;
    }
    { /* B = 1 fuses the LoRA up-projections into k_mid when the head's rows take at most DG_FUSE_MAX bytes of
       * shared memory (measured on the H100: 0.4B, 83 KB: 0.857 -> 0.762 ms/step; 1.5B, 133 KB: 1.708 -> 1.735, so
       * not fused there: 64 threads copy 133 KB per block) */
        const size_t rs = (size_t)s->lora_w + s->lora_a + s->lora_g + s->lora_v;
        const size_t bytes = (DG_N + 1) * rs * sizeof(float);
        int dev = 0, optin = 0;
        if (bytes <= DG_FUSE_MAX && cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess &&
            bytes + 2048 <= (size_t)optin &&
            cudaFuncSetAttribute(k_mid, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) == cudaSuccess)
            g->fuse_smem = bytes;
        cudaGetLastError();
    }
    *out = g;
    return MRW_OK;
fail:
    mrw_decode_gpu_free(g);
    return st;
}

static void *tensor_ptr(const mrw_decode_gpu *g, int t, int layer) {
    size_t o = g->off[(size_t)(is_global(t) ? 0 : layer) * MRW_DG_COUNT + t];
    if (o == (size_t)-1) return NULL;
    return is_mat(t) ? (void *)(g->wmat + o) : (void *)(g->wvec + o);
}
#define MATP(t, l) ((const bf16 *)tensor_ptr(g, (t), (l)))
#define VECP(t, l) ((const float *)tensor_ptr(g, (t), (l)))

static uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

extern "C" mrw_status mrw_decode_gpu_set_part(mrw_decode_gpu *g, mrw_dg_tensor t, int layer, size_t offset,
                                              const float *data, size_t n, mrw_error *err) {
    if ((int)t < 0 || t >= MRW_DG_COUNT || layer < 0 || layer >= g->L)
        return mrw_err(err, MRW_E_ARG, "GPU decode: tensor %d of layer %d does not exist", (int)t, layer);
    const size_t want = mrw_decode_gpu_tensor_size(g, t, layer);
    if (!data || offset > want || n > want - offset)
        return mrw_err(err, MRW_E_ARG, "GPU decode: tensor %d of layer %d has %zu elements, not %zu at %zu", (int)t,
                       layer, want, n, offset);
    void *dst = tensor_ptr(g, t, layer);
    cudaError_t e;
    if (is_mat(t)) {
        uint16_t *tmp = (uint16_t *)malloc(n * sizeof(uint16_t) + 1);
        if (!tmp) return mrw_err(err, MRW_E_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) tmp[i] = f32_to_bf16(data[i]);
        e = cudaMemcpy((bf16 *)dst + offset, tmp, n * sizeof(uint16_t), cudaMemcpyHostToDevice);
        free(tmp);
    } else {
        e = cudaMemcpy((float *)dst + offset, data, n * sizeof(float), cudaMemcpyHostToDevice);
    }
    return e == cudaSuccess ? MRW_OK : cu_fail(err, e, "upload");
}

extern "C" mrw_status mrw_decode_gpu_set(mrw_decode_gpu *g, mrw_dg_tensor t, int layer, const float *data, size_t n,
                                         mrw_error *err) {
    if ((int)t >= 0 && t < MRW_DG_COUNT && layer >= 0 && layer < g->L && n != mrw_decode_gpu_tensor_size(g, t, layer))
        return mrw_err(err, MRW_E_ARG, "GPU decode: tensor %d of layer %d has %zu elements, not %zu", (int)t, layer,
                       mrw_decode_gpu_tensor_size(g, t, layer), n);
    return mrw_decode_gpu_set_part(g, t, layer, 0, data, n, err);
}

extern "C" mrw_status mrw_decode_gpu_init_random(mrw_decode_gpu *g, uint64_t seed, mrw_error *err) {
    for (int l = 0; l < g->L; l++)
        for (int t = 0; t < MRW_DG_COUNT; t++) {
            if (is_global(t) && l > 0) continue;
            const size_t n = mrw_decode_gpu_tensor_size(g, (mrw_dg_tensor)t, l);
            if (!n) continue;
            const uint64_t sd = seed * 1000003ull + (uint64_t)l * 131 + t;
            if (is_mat(t) || is_lora(t)) {
                int cols = g->C;
                if (t == MRW_DG_FFN_VALUE) cols = g->F;
                else if (t == MRW_DG_W2) cols = g->s.lora_w;
                else if (t == MRW_DG_A2) cols = g->s.lora_a;
                else if (t == MRW_DG_V2) cols = g->s.lora_v;
                else if (t == MRW_DG_G2) cols = g->s.lora_g;
                const float sc = t == MRW_DG_EMB ? 1.0f : 1.0f / sqrtf((float)cols);
                if (is_lora(t)) k_fill_f32<<<256, 256, 0, g->st>>>((float *)tensor_ptr(g, t, l), n, sd, -sc, sc);
                else k_fill_bf16<<<1024, 256, 0, g->st>>>((bf16 *)tensor_ptr(g, t, l), n, sd, -sc, sc);
            } else {
                float lo = 0, hi = 1; /* mixes, ln weights */
                if (t == MRW_DG_LN0_B || t == MRW_DG_LNOUT_B || t == MRW_DG_LN1_B || t == MRW_DG_LN2_B ||
                    t == MRW_DG_LNX_B)
                    lo = -0.1f, hi = 0.1f;
                else if (t == MRW_DG_W0) lo = -6, hi = 1;
                else if (t == MRW_DG_A0 || t == MRW_DG_V0) lo = -1, hi = 1;
                k_fill_f32<<<256, 256, 0, g->st>>>((float *)tensor_ptr(g, t, l), n, sd, lo, hi);
            }
        }
    cudaError_t e = cudaStreamSynchronize(g->st);
    if (e == cudaSuccess) e = cudaGetLastError();
    return e == cudaSuccess ? MRW_OK : cu_fail(err, e, "random init");
}

extern "C" size_t mrw_decode_gpu_state_floats(const mrw_decode_gpu *g) { return g->state_floats; }

static mrw_status state_check(mrw_decode_gpu *g, int b, const float *data, size_t n, mrw_error *err) {
    if (b < 0 || b >= g->max_B) return mrw_err(err, MRW_E_ARG, "GPU decode: sequence %d outside [0, %d)", b, g->max_B);
    if (!data || n != g->state_floats)
        return mrw_err(err, MRW_E_ARG, "GPU decode: a state has %zu floats, not %zu", g->state_floats, n);
    return MRW_OK;
}

extern "C" mrw_status mrw_decode_gpu_set_state(mrw_decode_gpu *g, int b, const float *data, size_t n, mrw_error *err) {
    mrw_status s = state_check(g, b, data, n, err);
    if (s) return s;
    cudaError_t e = cudaMemcpy(g->state + (size_t)b * g->state_floats, data, n * sizeof(float), cudaMemcpyHostToDevice);
    return e == cudaSuccess ? MRW_OK : cu_fail(err, e, "state upload");
}

extern "C" mrw_status mrw_decode_gpu_get_state(mrw_decode_gpu *g, int b, float *data, size_t n, mrw_error *err) {
    mrw_status s = state_check(g, b, data, n, err);
    if (s) return s;
    cudaError_t e = cudaMemcpy(data, g->state + (size_t)b * g->state_floats, n * sizeof(float), cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? MRW_OK : cu_fail(err, e, "state download");
}

extern "C" mrw_status mrw_decode_gpu_reset_state(mrw_decode_gpu *g, int b, mrw_error *err) {
    if (b < 0 || b >= g->max_B) return mrw_err(err, MRW_E_ARG, "GPU decode: sequence %d outside [0, %d)", b, g->max_B);
    cudaError_t e = cudaMemset(g->state + (size_t)b * g->state_floats, 0, g->state_floats * sizeof(float));
    return e == cudaSuccess ? MRW_OK : cu_fail(err, e, "state reset");
}

extern "C" void mrw_decode_gpu_set_graph(mrw_decode_gpu *g, int use_graph) { g->use_graph = use_graph != 0; }

extern "C" void mrw_decode_gpu_set_pdl(mrw_decode_gpu *g, int use_pdl) {
    if ((use_pdl != 0) == g->use_pdl) return;
    g->use_pdl = use_pdl != 0;
    for (int b = 0; b <= g->max_B; b++) /* captured with the other setting */
    {
        if (g->graph[b]) cudaGraphExecDestroy(g->graph[b]), g->graph[b] = NULL;
        if (g->graph_emb[b]) cudaGraphExecDestroy(g->graph_emb[b]), g->graph_emb[b] = NULL;
    }
}
extern "C" void *mrw_decode_gpu_stream(mrw_decode_gpu *g) { return (void *)g->st; }

/* Launches with programmatic stream serialization (see pdl_wait) when g->use_pdl. */
template <typename... KArgs, typename... Args>
static void launch_ex(const mrw_decode_gpu *g, int pdl, void (*k)(KArgs...), dim3 grid, dim3 block, Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.stream = g->st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    cudaLaunchKernelEx(&cfg, k, args...);
}
template <typename... KArgs, typename... Args>
static void launch(const mrw_decode_gpu *g, void (*k)(KArgs...), dim3 grid, dim3 block, Args... args) {
    launch_ex(g, g->use_pdl, k, grid, block, args...);
}

static void launch_mid(const mrw_decode_gpu *g, dim3 grid, size_t smem, const MidArgs &a) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(DG_N);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = g->st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = g->use_pdl ? 1 : 0;
    cudaLaunchKernelEx(&cfg, k_mid, a);
}

static void add_job(GJobs *js, const void *W, const float *X, int ldx, float *Y, int ldy, int rows, int K, int act,
                    int acc) {
    GJob *j = &js->j[js->n];
    j->W = W, j->X = X, j->Y = Y, j->rows = rows, j->K = K, j->ldx = ldx, j->ldy = ldy, j->act = act, j->acc = acc;
    j->f32 = 0;
    js->start[js->n + 1] = js->start[js->n] + rows;
    js->n++;
}

/* Warps per row. B = 1: the fewest (1, 2, 4, 8) with every lane's chunks of the longest row in flight at once
 * (at most DG_U1 per lane: one memory round trip). B > 1: enough warps in flight to cover the memory latency
 * (~8192 on an H100), at least two 16-byte chunks per lane for the longest row. */
#ifndef DG_U1
#define DG_U1 8
#endif
static void launch_gemv(const mrw_decode_gpu *g, const GJobs &js, int B) {
    const int R = js.start[js.n];
    int maxK = 0, maxch = 0;
    for (int i = 0; i < js.n; i++) {
        const int ch = js.j[i].K / (js.j[i].f32 ? 4 : 8);
        maxK = js.j[i].K > maxK ? js.j[i].K : maxK;
        maxch = ch > maxch ? ch : maxch;
    }
    int wpr = 1;
    if (B == 1)
        while (wpr < 8 && maxch > 32 * wpr * DG_U1) wpr *= 2;
    else
        while (wpr < 8 && (long)R * wpr < 8192 && maxK >= wpr * 2 * 256) wpr *= 2;
    const unsigned blocks = (unsigned)((R + 8 / wpr - 1) / (8 / wpr));
    if (B == 1) launch(g, k_gemv<1, DG_U1>, dim3(blocks), dim3(256), js, B, wpr);
    else if (B < 8) launch(g, k_gemv<4, 4>, dim3(blocks), dim3(256), js, B, wpr);
    else launch(g, k_gemv<8, 4>, dim3(blocks), dim3(256), js, B, wpr);
}

/* A LoRA matrix: fp32 weights. */
static void add_lora(GJobs *js, const float *W, const float *X, int ldx, float *Y, int ldy, int rows, int K, int act) {
    add_job(js, W, X, ldx, Y, ldy, rows, K, act, 0);
    js->j[js->n - 1].f32 = 1;
}

/* Every kernel of one step for B sequences, on g->st (captured into a graph or launched directly). emb: the input
 * rows are already in g->x (uploaded by mrw_decode_gpu_step_embed), no token embedding to gather. */
static void enqueue_step(mrw_decode_gpu *g, int B, int emb) {
    const int C = g->C, F = g->F, V = g->V;
    const mrw_decode_gpu_shape *s = &g->s;
    const dim3 lng(C / DG_LN_SL, B), lnb(DG_LN_T);
    LnArgs ln;
    memset(&ln, 0, sizeof ln);
    ln.C = C;
    /* ln0 of the token's embedding row (gathered by the kernel itself), or of the uploaded row in xin; the first
     * kernel of the step follows the upload (a copy), so it is launched in plain stream order */
    if (emb) ln.x = g->xin;
    else ln.tok = g->d_tok, ln.emb = MATP(MRW_DG_EMB, 0);
    ln.lw = VECP(MRW_DG_LN0_W, 0), ln.lb = VECP(MRW_DG_LN0_B, 0), ln.ln_out = g->x;
    launch_ex(g, 0, k_ln, lng, lnb, ln);
    for (int l = 0; l < g->L; l++) {
        const size_t so = (size_t)l * g->lf;
        LnArgs m6;
        memset(&m6, 0, sizeof m6);
        const int mids[6] = {MRW_DG_X_R, MRW_DG_X_W, MRW_DG_X_K, MRW_DG_X_V, MRW_DG_X_A, MRW_DG_X_G};
        float *outs[6] = {g->xr, g->xw, g->xk, g->xv, g->xa, g->xg};
        for (int i = 0; i < 6; i++) m6.mix[i] = VECP(mids[i], l), m6.out[i] = outs[i];
        m6.n = 6, m6.C = C, m6.x = g->x, m6.lw = VECP(MRW_DG_LN1_W, l), m6.lb = VECP(MRW_DG_LN1_B, l);
        m6.state = g->state, m6.sstride = g->state_floats, m6.sx_off = so;
        launch(g, k_ln, lng, lnb, m6);
        GJobs down;
        memset(&down, 0, sizeof down);
        add_job(&down, MATP(MRW_DG_WR, l), g->xr, C, g->r, C, C, C, ACT_NONE, 0);
        add_job(&down, MATP(MRW_DG_WK, l), g->xk, C, g->k, C, C, C, ACT_NONE, 0);
        add_job(&down, MATP(MRW_DG_WV, l), g->xv, C, g->v, C, C, C, ACT_NONE, 0);
        add_lora(&down, VECP(MRW_DG_W1, l), g->xw, C, g->lw, s->lora_w, s->lora_w, C, ACT_TANH);
        add_lora(&down, VECP(MRW_DG_A1, l), g->xa, C, g->la, s->lora_a, s->lora_a, C, ACT_NONE);
        add_lora(&down, VECP(MRW_DG_G1, l), g->xg, C, g->lg, s->lora_g, s->lora_g, C, ACT_SIGMOID);
        if (l > 0) add_lora(&down, VECP(MRW_DG_V1, l), g->xv, C, g->lv, s->lora_v, s->lora_v, C, ACT_NONE);
        launch_gemv(g, down, B);
        const int fuse = B == 1 && g->fuse_smem > 0;
        if (!fuse) {
            GJobs up;
            memset(&up, 0, sizeof up);
            add_lora(&up, VECP(MRW_DG_W2, l), g->lw, s->lora_w, g->wp, C, C, s->lora_w, ACT_NONE);
            add_lora(&up, VECP(MRW_DG_A2, l), g->la, s->lora_a, g->ap, C, C, s->lora_a, ACT_NONE);
            add_lora(&up, VECP(MRW_DG_G2, l), g->lg, s->lora_g, g->g, C, C, s->lora_g, ACT_NONE);
            if (l > 0) add_lora(&up, VECP(MRW_DG_V2, l), g->lv, s->lora_v, g->vp, C, C, s->lora_v, ACT_NONE);
            launch_gemv(g, up, B);
        }
        MidArgs a;
        memset(&a, 0, sizeof a);
        a.r = g->r, a.k = g->k, a.v = g->v, a.wp = g->wp, a.ap = g->ap, a.g = g->g, a.vp = g->vp;
        a.vfirst = g->vfirst, a.y = g->y;
        a.w0 = VECP(MRW_DG_W0, l), a.a0 = VECP(MRW_DG_A0, l), a.v0 = l ? VECP(MRW_DG_V0, l) : VECP(MRW_DG_W0, l);
        a.k_k = VECP(MRW_DG_K_K, l), a.k_a = VECP(MRW_DG_K_A, l), a.r_k = VECP(MRW_DG_R_K, l);
        a.lnx_w = VECP(MRW_DG_LNX_W, l), a.lnx_b = VECP(MRW_DG_LNX_B, l);
        a.state = g->state, a.sstride = g->state_floats, a.s_off = so + C, a.C = C, a.layer0 = l == 0;
        if (fuse) {
            a.fuse = 1;
            a.M[0] = VECP(MRW_DG_W2, l), a.M[1] = VECP(MRW_DG_A2, l), a.M[2] = VECP(MRW_DG_G2, l);
            a.M[3] = l ? VECP(MRW_DG_V2, l) : NULL;
            a.hid[0] = g->lw, a.hid[1] = g->la, a.hid[2] = g->lg, a.hid[3] = g->lv;
            a.rank[0] = s->lora_w, a.rank[1] = s->lora_a, a.rank[2] = s->lora_g, a.rank[3] = l ? s->lora_v : 0;
        }
        launch_mid(g, dim3(g->H, B), fuse ? g->fuse_smem : 0, a);
        GJobs o;
        memset(&o, 0, sizeof o);
        add_job(&o, MATP(MRW_DG_WO, l), g->y, C, g->x, C, C, C, ACT_NONE, 1);
        launch_gemv(g, o, B);
        LnArgs m1;
        memset(&m1, 0, sizeof m1);
        m1.mix[0] = VECP(MRW_DG_FFN_X_K, l), m1.out[0] = g->xk, m1.n = 1;
        m1.C = C, m1.x = g->x, m1.lw = VECP(MRW_DG_LN2_W, l), m1.lb = VECP(MRW_DG_LN2_B, l);
        m1.state = g->state, m1.sstride = g->state_floats, m1.sx_off = so + g->lf - C;
        launch(g, k_ln, lng, lnb, m1);
        GJobs fk;
        memset(&fk, 0, sizeof fk);
        add_job(&fk, MATP(MRW_DG_FFN_KEY, l), g->xk, C, g->ffn, F, F, C, ACT_RELU2, 0);
        launch_gemv(g, fk, B);
        GJobs fv;
        memset(&fv, 0, sizeof fv);
        add_job(&fv, MATP(MRW_DG_FFN_VALUE, l), g->ffn, F, g->x, C, C, F, ACT_NONE, 1);
        launch_gemv(g, fv, B);
    }
    LnArgs lo;
    memset(&lo, 0, sizeof lo);
    lo.C = C, lo.x = g->x, lo.lw = VECP(MRW_DG_LNOUT_W, 0), lo.lb = VECP(MRW_DG_LNOUT_B, 0), lo.ln_out = g->xa;
    launch(g, k_ln, lng, lnb, lo);
    GJobs hd;
    memset(&hd, 0, sizeof hd);
    add_job(&hd, MATP(MRW_DG_HEAD, 0), g->xa, C, g->logits, V, V, C, ACT_NONE, 0);
    launch_gemv(g, hd, B);
}

/* Runs one step on the stream: the cached graph for B (captured on first use) or direct launches. */
static mrw_status run_step(mrw_decode_gpu *g, int B, int emb, mrw_error *err) {
    cudaError_t e;
    cudaGraphExec_t *gr = emb ? g->graph_emb : g->graph;
    if (!g->use_graph) {
        enqueue_step(g, B, emb);
        e = cudaGetLastError();
        return e == cudaSuccess ? MRW_OK : cu_fail(err, e, "launch");
    }
    if (!gr[B]) {
        cudaGraph_t graph;
        if ((e = cudaStreamBeginCapture(g->st, cudaStreamCaptureModeThreadLocal)) != cudaSuccess)
            return cu_fail(err, e, "graph capture");
        enqueue_step(g, B, emb);
        cudaError_t le = cudaGetLastError();
        e = cudaStreamEndCapture(g->st, &graph);
        if (le != cudaSuccess) {
            if (e == cudaSuccess) cudaGraphDestroy(graph);
            return cu_fail(err, le, "launch during graph capture");
        }
        if (e != cudaSuccess) return cu_fail(err, e, "graph capture");
        e = cudaGraphInstantiate(&gr[B], graph, 0);
        cudaGraphDestroy(graph);
        if (e != cudaSuccess) {
            gr[B] = NULL;
            return cu_fail(err, e, "graph instantiate");
        }
    }
    e = cudaGraphLaunch(gr[B], g->st);
    return e == cudaSuccess ? MRW_OK : cu_fail(err, e, "graph launch");
}

static mrw_status finish_step(mrw_decode_gpu *g, int B, int emb, float *logits, mrw_error *err);

extern "C" mrw_status mrw_decode_gpu_step(mrw_decode_gpu *g, const int32_t *tokens, int B, float *logits,
                                          mrw_error *err) {
    if (!g || !tokens || B < 1 || B > g->max_B)
        return mrw_err(err, MRW_E_ARG, "GPU decode: batch of %d sequences outside [1, %d]", B, g ? g->max_B : 0);
    for (int b = 0; b < B; b++)
        if (tokens[b] < 0 || tokens[b] >= g->V)
            return mrw_err(err, MRW_E_ARG, "token %d of sequence %d is outside the vocabulary [0, %d)", tokens[b], b, g->V);
    memcpy(g->h_tok, tokens, (size_t)B * sizeof(int32_t));
    cudaError_t e = cudaMemcpyAsync(g->d_tok, g->h_tok, (size_t)B * sizeof(int32_t), cudaMemcpyHostToDevice, g->st);
    if (e != cudaSuccess) return cu_fail(err, e, "token upload");
    return finish_step(g, B, 0, logits, err);
}

/* Runs the step and copies the logits back; synchronous. */
static mrw_status finish_step(mrw_decode_gpu *g, int B, int emb, float *logits, mrw_error *err) {
    cudaError_t e;
    mrw_status s = run_step(g, B, emb, err);
    if (s) return s;
    if (logits &&
        (e = cudaMemcpyAsync(logits, g->logits, (size_t)B * g->V * sizeof(float), cudaMemcpyDeviceToHost, g->st)) !=
            cudaSuccess)
        return cu_fail(err, e, "logits download");
    e = cudaStreamSynchronize(g->st);
    return e == cudaSuccess ? MRW_OK : cu_fail(err, e, "decode step");
}

extern "C" mrw_status mrw_decode_gpu_step_embed(mrw_decode_gpu *g, const float *rows, int B, float *logits,
                                                mrw_error *err) {
    if (!g || !rows || B < 1 || B > g->max_B)
        return mrw_err(err, MRW_E_ARG, "GPU decode: batch of %d embedding rows outside [1, %d] (or no rows)", B,
                       g ? g->max_B : 0);
    /* the rows go into xin (ln0 reads them); the token ids of the last _step stay in d_tok for _enqueue */
    cudaError_t e = cudaMemcpyAsync(g->xin, rows, (size_t)B * g->C * sizeof(float), cudaMemcpyHostToDevice, g->st);
    if (e != cudaSuccess) return cu_fail(err, e, "embedding rows upload");
    return finish_step(g, B, 1, logits, err);
}

extern "C" mrw_status mrw_decode_gpu_enqueue(mrw_decode_gpu *g, int B, int n_steps, mrw_error *err) {
    if (B < 1 || B > g->max_B) return mrw_err(err, MRW_E_ARG, "GPU decode: batch %d outside [1, %d]", B, g->max_B);
    for (int i = 0; i < n_steps; i++) {
        mrw_status s = run_step(g, B, 0, err);
        if (s) return s;
    }
    return MRW_OK;
}

extern "C" mrw_status mrw_decode_gpu_sync(mrw_decode_gpu *g, mrw_error *err) {
    cudaError_t e = cudaStreamSynchronize(g->st);
    return e == cudaSuccess ? MRW_OK : cu_fail(err, e, "synchronize");
}

extern "C" double mrw_decode_gpu_bytes_per_step(const mrw_decode_gpu *g, int B) {
    double bytes = 0;
    for (int l = 0; l < g->L; l++)
        for (int t = 0; t < MRW_DG_COUNT; t++) {
            if (is_global(t) && l > 0) continue;
            const double n = (double)mrw_decode_gpu_tensor_size(g, (mrw_dg_tensor)t, l);
            if (t == MRW_DG_EMB) bytes += 2.0 * B * g->C;
            else bytes += n * (is_mat(t) ? 2 : 4);
        }
    return bytes + 2.0 * B * g->state_floats * sizeof(float);
}
