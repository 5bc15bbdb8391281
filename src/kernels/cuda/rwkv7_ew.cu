/* RWKV-7 element-wise chains (rwkv7_ew.h). Token shift / mixes and relu^2: one thread per element (grid-stride).
 * Key prep: one warp per (row, head), each lane two of the head's 64 channels (the L2 norm of k_k * kraw and
 * the dot product of its backward are warp sums). Parameter gradients: the column sums of common.cuh, except the
 * key prep's backward, which sums its parameter terms in registers over a slice of rows per block (one pass). */
#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rwkv7_ew.h"
}

using namespace mrwcu;

namespace {

constexpr int HN = 64;
constexpr float L2_FLOOR = 1e-12f;

template <typename T> struct mix_ptrs {
    const float *m[MRW_CUDA_MIX_MAX];
    T *o[MRW_CUDA_MIX_MAX];
    const T *d[MRW_CUDA_MIX_MAX];
    float *g[MRW_CUDA_MIX_MAX];
};

__device__ __forceinline__ float sigm(float x) { return 1.f / (1.f + expf(-x)); }
/* log(sigmoid(x)) = -softplus(-x), stable */
__device__ __forceinline__ float log_sigm(float x) { return x >= 0.f ? -log1pf(expf(-x)) : x - log1pf(expf(x)); }

template <typename T>
__global__ void mix_fwd_kernel(size_t n, int T_, int C, int nq, const T *x, mix_ptrs<T> p) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / C;
        const int c = (int)(e % C);
        const float cur = ld(x, e), prev = r % T_ ? ld(x, e - C) : 0.f;
        for (int q = 0; q < nq; q++) st(p.o[q], e, cur + (prev - cur) * p.m[q][c]);
    }
}

/* LayerNorm fused with the token shift + mixes of its output (mrw_cuda_ln_mix_fwd): one warp per row, lane l holding
 * the pairs 64 j + 2 l of the row in registers (C even, C <= 64 NP, 8-byte aligned tensors), as norm.cu's warp
 * LayerNorm. The warp normalises its row and, with the same code, the previous row of the sequence (read a second
 * time, mostly from L2: the neighbouring warp reads it as its own row); both are rounded to T as the stored y is, so
 * the mixes equal token_mix_fwd's on y. */
template <typename T> __device__ __forceinline__ float2 round2(float a, float b); /* as stored in T */
template <> __device__ __forceinline__ float2 round2<float>(float a, float b) { return make_float2(a, b); }
template <> __device__ __forceinline__ float2 round2<bf16>(float a, float b) {
    return __bfloat1622float2(__floats2bfloat162_rn(a, b));
}
template <typename T, int NP>
__device__ __forceinline__ void ln_row(const T *x, size_t o, int C, const float *w, const float *b, float eps,
                                       float2 (&v)[NP], float &mu, float &rs) {
    const int lane = threadIdx.x & 31;
    float s = 0.f;
#pragma unroll
    for (int j = 0; j < NP; j++) {
        const int i = 64 * j + 2 * lane;
        v[j] = i < C ? ld2(x, o + i) : make_float2(0.f, 0.f);
        s += v[j].x + v[j].y;
    }
    mu = warp_sum(s) / C;
    float q = 0.f;
#pragma unroll
    for (int j = 0; j < NP; j++)
        if (64 * j + 2 * lane < C) q += (v[j].x - mu) * (v[j].x - mu) + (v[j].y - mu) * (v[j].y - mu);
    rs = rsqrtf(warp_sum(q) / C + eps);
#pragma unroll
    for (int j = 0; j < NP; j++) {
        const int i = 64 * j + 2 * lane;
        if (i < C) v[j] = round2<T>((v[j].x - mu) * rs * w[i] + b[i], (v[j].y - mu) * rs * w[i + 1] + b[i + 1]);
    }
}

template <typename T, int NP, int NQ>
__global__ void __launch_bounds__(256) ln_mix_warp_kernel(int rows, int T_, int C, const T *x, const float *w,
                                                          const float *b, float eps, T *y, float *mean, float *rstd,
                                                          mix_ptrs<T> p) {
    const int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const size_t o = (size_t)row * C;
    float2 cur[NP], prev[NP];
    float mu, rs, mup, rsp;
    ln_row<T, NP>(x, o, C, w, b, eps, cur, mu, rs);
    if (row % T_) ln_row<T, NP>(x, o - C, C, w, b, eps, prev, mup, rsp);
    else
#pragma unroll
        for (int j = 0; j < NP; j++) prev[j] = make_float2(0.f, 0.f);
#pragma unroll
    for (int j = 0; j < NP; j++) {
        const int i = 64 * j + 2 * lane;
        if (i >= C) continue;
        st2(y, o + i, cur[j].x, cur[j].y);
#pragma unroll
        for (int q = 0; q < NQ; q++)
            st2(p.o[q], o + i, cur[j].x + (prev[j].x - cur[j].x) * p.m[q][i],
                cur[j].y + (prev[j].y - cur[j].y) * p.m[q][i + 1]);
    }
    if (lane == 0) mean[row] = mu, rstd[row] = rs;
}

template <typename T>
__global__ void mix_bwd_kernel(size_t n, int T_, int C, int nq, int acc, T *dx, mix_ptrs<T> p) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / C;
        const int c = (int)(e % C);
        const bool next = (r + 1) % T_ != 0;
        float s = acc ? ld(dx, e) : 0.f;
        for (int q = 0; q < nq; q++) {
            const float m = p.m[q][c];
            s += ld(p.d[q], e) * (1.f - m) + (next ? ld(p.d[q], e + C) * m : 0.f);
        }
        st(dx, e, s);
    }
}

template <typename T> struct mix_param_terms {
    const T *x;
    const T *d[MRW_CUDA_MIX_MAX];
    int T_, C, nq;
    __device__ void operator()(int r, int c, float acc[MRW_CUDA_MIX_MAX]) const {
        const size_t e = (size_t)r * C + c;
        const float diff = (r % T_ ? ld(x, e - C) : 0.f) - ld(x, e);
#pragma unroll
        for (int q = 0; q < MRW_CUDA_MIX_MAX; q++)
            if (q < nq) acc[q] += ld(d[q], e) * diff;
    }
};

/* ---- key prep */
template <typename T> struct kp_in {
    const T *pw, *pa, *pv, *kraw, *vraw, *vfirst;
    const float *w0, *a0, *v0, *k_k, *k_a;
};

/* lane holds channels 2 lane and 2 lane + 1 (paired accesses; the trainer's tensors are 8-byte aligned, others
 * take kp_fwd1_kernel with lane, lane + 32) */
template <typename T>
__global__ void kp_fwd_kernel(int rows, int H, kp_in<T> in, T *wlog, T *k, T *v, T *a, T *b) {
    const int gw = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (gw >= rows * H) return;
    const int h = gw % H;
    const size_t e = (size_t)gw * HN + 2 * lane;
    const int c = h * HN + 2 * lane;
    const float2 pw = ld2(in.pw, e), pa = ld2(in.pa, e), vr = ld2(in.vraw, e), kr2 = ld2(in.kraw, e);
    st2(wlog, e, log_sigm(in.w0[c] + pw.x) - 0.5f, log_sigm(in.w0[c + 1] + pw.y) - 0.5f);
    const float al[2] = {sigm(in.a0[c] + pa.x), sigm(in.a0[c + 1] + pa.y)};
    if (in.pv) {
        const float2 pv = ld2(in.pv, e), vf = ld2(in.vfirst, e);
        st2(v, e, vr.x + (vf.x - vr.x) * sigm(in.v0[c] + pv.x), vr.y + (vf.y - vr.y) * sigm(in.v0[c + 1] + pv.y));
    } else {
        st2(v, e, vr.x, vr.y);
    }
    const float kr[2] = {kr2.x, kr2.y};
    float kk[2] = {kr[0] * in.k_k[c], kr[1] * in.k_k[c + 1]};
    const float inv = 1.f / fmaxf(sqrtf(warp_sum(kk[0] * kk[0] + kk[1] * kk[1])), L2_FLOOR);
    kk[0] *= inv, kk[1] *= inv;
    st2(k, e, kr[0] * (1.f + (al[0] - 1.f) * in.k_a[c]), kr[1] * (1.f + (al[1] - 1.f) * in.k_a[c + 1]));
    st2(a, e, -kk[0], -kk[1]);
    st2(b, e, kk[0] * al[0], kk[1] * al[1]);
}

template <typename T>
__global__ void kp_fwd1_kernel(int rows, int H, kp_in<T> in, T *wlog, T *k, T *v, T *a, T *b) {
    const int gw = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (gw >= rows * H) return;
    const int h = gw % H;
    const size_t o = (size_t)gw * HN;
    float kk[2], kr[2], al[2], ss = 0.f;
#pragma unroll
    for (int q = 0; q < 2; q++) {
        const size_t e = o + lane + 32 * q;
        const int c = h * HN + lane + 32 * q;
        st(wlog, e, log_sigm(in.w0[c] + ld(in.pw, e)) - 0.5f);
        al[q] = sigm(in.a0[c] + ld(in.pa, e));
        const float vr = ld(in.vraw, e);
        st(v, e, in.pv ? vr + (ld(in.vfirst, e) - vr) * sigm(in.v0[c] + ld(in.pv, e)) : vr);
        kr[q] = ld(in.kraw, e);
        kk[q] = kr[q] * in.k_k[c];
        ss += kk[q] * kk[q];
    }
    const float inv = 1.f / fmaxf(sqrtf(warp_sum(ss)), L2_FLOOR);
#pragma unroll
    for (int q = 0; q < 2; q++) {
        const size_t e = o + lane + 32 * q;
        const int c = h * HN + lane + 32 * q;
        const float kh = kk[q] * inv;
        st(k, e, kr[q] * (1.f + (al[q] - 1.f) * in.k_a[c]));
        st(a, e, -kh);
        st(b, e, kh * al[q]);
    }
}

template <typename T> struct kp_grad {
    const T *dwlog, *dk, *dv, *da, *db, *dk2, *dv2, *dr2;
    T *dr, *dpw, *dpa, *dpv, *dkraw, *dvraw;
    float *dvfirst;
    const float *dbeta; /* the bonus from its scalar (with r, rk), or NULL */
    const T *r;
    const float *rk;
};


/* Token shift + mixes on pairs of columns (C even): the same formulas as mix_fwd_kernel / mix_bwd_kernel, with
 * 4- or 8-byte accesses. The backward is fused with its parameter column sums: block (slice, column chunk of 64)
 * walks a slice of rows with 8 row pairs in flight, each thread keeping its two columns' nq sums in registers; the 8
 * partial sums are added in a fixed order into part[slice][q][C] for colsum_final (deterministic). */
template <typename T>
__global__ void mix_fwd2_kernel(size_t n2, int T_, int C, int nq, const T *x, mix_ptrs<T> p) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n2; i += (size_t)gridDim.x * blockDim.x) {
        const size_t e = 2 * i, r = e / C;
        const int c = (int)(e % C);
        const float2 cur = ld2(x, e), prev = r % T_ ? ld2(x, e - C) : make_float2(0.f, 0.f);
        for (int q = 0; q < nq; q++)
            st2(p.o[q], e, cur.x + (prev.x - cur.x) * p.m[q][c], cur.y + (prev.y - cur.y) * p.m[q][c + 1]);
    }
}

template <typename T, bool PG, int NQ>
__global__ void mix_bwd2_kernel(int rows, int T_, int C, int nq_rt, int acc, int per, const T *x, T *dx,
                                mix_ptrs<T> p, float *part) {
    const int nq = NQ ? NQ : nq_rt; /* NQ: the count at compile time (6 or 1), so every load of a row is issued
                                      * before the first is used (a runtime count left one latency per mix) */
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const int r0 = blockIdx.x * per, r1 = min(rows, r0 + per);
    const int c = blockIdx.y * 64 + 2 * tx;
    const bool valid = c < C;
    float m[MRW_CUDA_MIX_MAX][2], pacc[MRW_CUDA_MIX_MAX][2];
#pragma unroll
    for (int q = 0; q < MRW_CUDA_MIX_MAX; q++) {
        m[q][0] = m[q][1] = pacc[q][0] = pacc[q][1] = 0.f;
        if (q < nq && valid) m[q][0] = p.m[q][c], m[q][1] = p.m[q][c + 1];
    }
    /* rows in pairs (r, r + 1), warp ty takes the pairs starting at r0 + 2 ty, r0 + 2 ty + 16, ...: the gradients
     * of rows r, r + 1 and r + 2 serve both rows (3 loads per mix instead of 4), and both rows' loads are issued
     * before either is used */
    if (valid)
        for (int r = r0 + 2 * ty; r < r1; r += 16) {
            const size_t e = (size_t)r * C + c;
            const bool two = r + 1 < r1;
            const bool n0 = (r + 1) % T_ != 0, n1 = two && (r + 2) % T_ != 0; /* a next row in the sequence */
            const bool p0 = r % T_ != 0;                                         /* row r has a previous row */
            float2 d0[MRW_CUDA_MIX_MAX], d1[MRW_CUDA_MIX_MAX], d2[MRW_CUDA_MIX_MAX];
#pragma unroll
            for (int q = 0; q < MRW_CUDA_MIX_MAX; q++) {
                d0[q] = d1[q] = d2[q] = make_float2(0.f, 0.f);
                if (q < nq) {
                    d0[q] = ld2(p.d[q], e);
                    if (n0) d1[q] = ld2(p.d[q], e + C); /* row r + 1: dn of row r, d of row r + 1 */
                    if (n1) d2[q] = ld2(p.d[q], e + 2 * (size_t)C);
                }
            }
            if (two && !n0) /* row r + 1 starts a new sequence: its own gradients, and none flow back to row r */
#pragma unroll
                for (int q = 0; q < MRW_CUDA_MIX_MAX; q++)
                    if (q < nq) d1[q] = ld2(p.d[q], e + C);
            float2 s0 = acc ? ld2(dx, e) : make_float2(0.f, 0.f);
            float2 s1 = acc && two ? ld2(dx, e + C) : make_float2(0.f, 0.f);
            float2 df0 = make_float2(0.f, 0.f), df1 = make_float2(0.f, 0.f);
            if (PG) {
                const float2 xc = ld2(x, e), xp = p0 ? ld2(x, e - C) : make_float2(0.f, 0.f);
                df0 = make_float2(xp.x - xc.x, xp.y - xc.y);
                if (two) {
                    const float2 xn = ld2(x, e + C);
                    /* row r + 1's previous row is row r unless r + 1 starts a sequence */
                    df1 = n0 ? make_float2(xc.x - xn.x, xc.y - xn.y) : make_float2(-xn.x, -xn.y);
                }
            }
#pragma unroll
            for (int q = 0; q < MRW_CUDA_MIX_MAX; q++) {
                if (q >= nq) break;
                const float2 dn0 = n0 ? d1[q] : make_float2(0.f, 0.f); /* 0 at a sequence's last row */
                s0.x += d0[q].x * (1.f - m[q][0]), s0.y += d0[q].y * (1.f - m[q][1]);
                s0.x += dn0.x * m[q][0], s0.y += dn0.y * m[q][1];
                s1.x += d1[q].x * (1.f - m[q][0]), s1.y += d1[q].y * (1.f - m[q][1]);
                s1.x += d2[q].x * m[q][0], s1.y += d2[q].y * m[q][1];
                if (PG) {
                    pacc[q][0] += d0[q].x * df0.x, pacc[q][1] += d0[q].y * df0.y;
                    if (two) pacc[q][0] += d1[q].x * df1.x, pacc[q][1] += d1[q].y * df1.y;
                }
            }
            st2(dx, e, s0.x, s0.y);
            if (two) st2(dx, e + C, s1.x, s1.y);
        }
    if constexpr (PG) {
        __shared__ float sh[8][MRW_CUDA_MIX_MAX][64];
#pragma unroll
        for (int q = 0; q < MRW_CUDA_MIX_MAX; q++) sh[ty][q][2 * tx] = pacc[q][0], sh[ty][q][2 * tx + 1] = pacc[q][1];
        __syncthreads();
        for (int i = threadIdx.x; i < nq * 64; i += blockDim.x) {
            const int q = i / 64, cc = blockIdx.y * 64 + i % 64;
            if (cc >= C) continue;
            float sum = 0.f;
#pragma unroll
            for (int y = 0; y < 8; y++) sum += sh[y][q][i % 64];
            part[((size_t)blockIdx.x * MRW_CUDA_MIX_MAX + q) * C + cc] = sum;
        }
    }
}

template <typename T> __global__ void relu2_fwd2_kernel(size_t n2, const T *h, T *act) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n2; i += (size_t)gridDim.x * blockDim.x) {
        const float2 v = ld2(h, 2 * i);
        const float a = fmaxf(v.x, 0.f), b = fmaxf(v.y, 0.f);
        st2(act, 2 * i, a * a, b * b);
    }
}
/* bf16, 8 elements (16 bytes) a thread: n % 8 == 0, 16-byte aligned tensors. */
__global__ void relu2_fwd8_kernel(size_t n8, const uint4 *h, uint4 *act) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8; i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = h[i];
        __nv_bfloat162 *p = (__nv_bfloat162 *)&v;
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const float2 f = __bfloat1622float2(p[q]);
            const float a = fmaxf(f.x, 0.f), b = fmaxf(f.y, 0.f);
            p[q] = __floats2bfloat162_rn(a * a, b * b);
        }
        act[i] = v;
    }
}
template <typename T> __global__ void relu2_bwd2_kernel(size_t n2, const T *h, T *d) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n2; i += (size_t)gridDim.x * blockDim.x) {
        const float2 v = ld2(h, 2 * i), g = ld2(d, 2 * i);
        st2(d, 2 * i, g.x * 2.f * fmaxf(v.x, 0.f), g.y * 2.f * fmaxf(v.y, 0.f));
    }
}

/* Block (slice, h): 8 warps walk the rows of one slice for head h (warp w takes rows r0 + w, r0 + w + 8, ...), lane
 * owns channels 2 lane and 2 lane + 1 of the head. With PG, the five parameter-gradient terms are summed per lane
 * in registers over the slice's rows, then over the 8 warps in a fixed order, into part[slice][5][C] (fp32 terms
 * computed from the same fp32 values as the outputs, not read back from them); colsum_final adds the slices. */
template <typename T, bool PG, bool DB>
__global__ void __launch_bounds__(256, 3) kp_bwd_kernel(int rows, int H, int rows_per_slice, kp_in<T> in, kp_grad<T> g, float *part) {
    const int h = blockIdx.y, w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r0 = blockIdx.x * rows_per_slice, r1 = min(rows, r0 + rows_per_slice);
    const int c0 = h * HN + 2 * lane;
    float pacc[5][2];
#pragma unroll
    for (int t = 0; t < 5; t++) pacc[t][0] = pacc[t][1] = 0.f;
    float w0[2], a0[2], kkp[2], kap[2], v0[2] = {0.f, 0.f}, rkc[2] = {0.f, 0.f};
#pragma unroll
    for (int q = 0; q < 2; q++) {
        w0[q] = in.w0[c0 + q], a0[q] = in.a0[c0 + q], kkp[q] = in.k_k[c0 + q], kap[q] = in.k_a[c0 + q];
        if (in.pv) v0[q] = in.v0[c0 + q];
        if (DB) rkc[q] = g.rk[c0 + q];
    }
    const bool drp = DB || (g.dr && g.dr2); /* dr += a bonus term */
    for (int r = r0 + w; r < r1; r += 8) {
        const size_t e = ((size_t)r * H + h) * HN + 2 * lane;
        /* every load of the row first (more bytes in flight per warp; each lane reads only its own elements, so
         * this is safe with outputs written in place over inputs) */
        const float2 kr2 = ld2(in.kraw, e), pa2 = ld2(in.pa, e), da2 = ld2(g.da, e), db2 = ld2(g.db, e);
        const float2 dk2 = ld2(g.dk, e), dv2 = ld2(g.dv, e), dw2 = ld2(g.dwlog, e), pw2 = ld2(in.pw, e);
        const float2 bk2 = g.dk2 ? ld2(g.dk2, e) : make_float2(0.f, 0.f), bv2 = g.dv2 ? ld2(g.dv2, e) : make_float2(0.f, 0.f);
        float2 pv2 = make_float2(0.f, 0.f), vr2 = pv2, vf2 = pv2, dvf = pv2, dr2x = pv2, dr2y = pv2;
        if (in.pv) pv2 = ld2(in.pv, e), vr2 = ld2(in.vraw, e), vf2 = ld2(in.vfirst, e);
        if (g.dvfirst) dvf = *(const float2 *)(g.dvfirst + e);
        if (drp) dr2x = ld2(g.dr, e);
        if (g.dr && g.dr2) dr2y = ld2(g.dr2, e);
        float dbt = 0.f;
        float2 rr2 = make_float2(0.f, 0.f);
        if (DB) dbt = g.dbeta[(size_t)r * H + h], rr2 = ld2(g.r, e);
        const float kr[2] = {kr2.x, kr2.y}, pa[2] = {pa2.x, pa2.y}, da[2] = {da2.x, da2.y}, db[2] = {db2.x, db2.y};
        float kk[2], al[2], dkh[2], ss = 0.f;
#pragma unroll
        for (int q = 0; q < 2; q++) {
            kk[q] = kr[q] * kkp[q];
            ss += kk[q] * kk[q];
            al[q] = sigm(a0[q] + pa[q]);
        }
        const float nrm = sqrtf(warp_sum(ss)), inv = 1.f / fmaxf(nrm, L2_FLOOR);
        float dot = 0.f;
#pragma unroll
        for (int q = 0; q < 2; q++) {
            kk[q] *= inv; /* khat */
            dkh[q] = -da[q] + db[q] * al[q];
            dot += dkh[q] * kk[q];
        }
        dot = warp_sum(dot);
        float dkt[2] = {dk2.x, dk2.y}, dvt[2] = {dv2.x, dv2.y};
        if (g.dk2) dkt[0] += bk2.x, dkt[1] += bk2.y;
        if (DB) { /* the bonus: dk += dbeta r rk, dr += dbeta k rk (k = the WKV's k, as the forward forms it) */
            dkt[0] += dbt * rr2.x * rkc[0], dkt[1] += dbt * rr2.y * rkc[1];
            dr2y.x += dbt * (kr[0] * (1.f + (al[0] - 1.f) * kap[0])) * rkc[0];
            dr2y.y += dbt * (kr[1] * (1.f + (al[1] - 1.f) * kap[1])) * rkc[1];
        }
        if (g.dv2) dvt[0] += bv2.x, dvt[1] += bv2.y;
        const float dwl[2] = {dw2.x, dw2.y}, pw[2] = {pw2.x, pw2.y};
        float o_dkraw[2], o_dpa[2], o_dpw[2];
#pragma unroll
        for (int q = 0; q < 2; q++) {
            const float dkap = nrm > L2_FLOOR ? (dkh[q] - kk[q] * dot) / nrm : dkh[q] / L2_FLOOR;
            o_dkraw[q] = dkt[q] * (1.f + (al[q] - 1.f) * kap[q]) + dkap * kkp[q];
            const float dal = db[q] * kk[q] + dkt[q] * kr[q] * kap[q];
            o_dpa[q] = dal * al[q] * (1.f - al[q]);
            o_dpw[q] = dwl[q] * (1.f - sigm(w0[q] + pw[q]));
            if (PG) {
                pacc[0][q] += o_dpw[q];
                pacc[1][q] += o_dpa[q];
                pacc[3][q] += dkt[q] * kr[q] * (al[q] - 1.f);
                pacc[4][q] += dkap * kr[q];
            }
        }
        st2(g.dkraw, e, o_dkraw[0], o_dkraw[1]);
        st2(g.dpa, e, o_dpa[0], o_dpa[1]);
        st2(g.dpw, e, o_dpw[0], o_dpw[1]);
        if (in.pv) {
            const float pv[2] = {pv2.x, pv2.y}, vr[2] = {vr2.x, vr2.y}, vf[2] = {vf2.x, vf2.y};
            float o_dpv[2], o_dvr[2];
#pragma unroll
            for (int q = 0; q < 2; q++) {
                const float gt = sigm(v0[q] + pv[q]);
                o_dpv[q] = dvt[q] * (vf[q] - vr[q]) * gt * (1.f - gt);
                o_dvr[q] = dvt[q] * (1.f - gt);
                if (PG) pacc[2][q] += o_dpv[q];
                if (q == 0) dvf.x += dvt[q] * gt;
                else dvf.y += dvt[q] * gt;
            }
            *(float2 *)(g.dvfirst + e) = dvf;
            st2(g.dpv, e, o_dpv[0], o_dpv[1]);
            st2(g.dvraw, e, o_dvr[0], o_dvr[1]);
        } else {
            float a = dvt[0], b = dvt[1];
            if (g.dvfirst) a += dvf.x, b += dvf.y;
            st2(g.dvraw, e, a, b);
        }
        if (drp) st2(g.dr, e, dr2x.x + dr2y.x, dr2x.y + dr2y.y);
    }
    if constexpr (PG) {
        __shared__ float sh[8][5][HN];
#pragma unroll
        for (int t = 0; t < 5; t++) sh[w][t][2 * lane] = pacc[t][0], sh[w][t][2 * lane + 1] = pacc[t][1];
        __syncthreads();
        const int C = H * HN;
        for (int i = threadIdx.x; i < 5 * HN; i += blockDim.x) {
            const int t = i / HN, c = i % HN;
            float sum = 0.f;
#pragma unroll
            for (int ww = 0; ww < 8; ww++) sum += sh[ww][t][c];
            part[((size_t)blockIdx.x * 5 + t) * C + h * HN + c] = sum;
        }
    }
}

template <typename T> kp_in<T> cast_in(const mrw_cuda_keyprep_in *p) {
    return kp_in<T>{(const T *)p->pw, (const T *)p->pa, (const T *)p->pv, (const T *)p->kraw, (const T *)p->vraw,
                    (const T *)p->vfirst, p->w0, p->a0, p->v0, p->k_k, p->k_a};
}

template <typename T>
mrw_status kp_fwd_t(int rows, int H, const mrw_cuda_keyprep_in *in, void *wlog, void *k, void *v, void *a, void *b,
                    cudaStream_t st, mrw_error *err) {
    const unsigned grid = (unsigned)(((long long)rows * H + 7) / 8);
    const void *ptrs[] = {in->pw, in->pa, in->pv, in->kraw, in->vraw, in->vfirst, wlog, k, v, a, b};
    bool al = true;
    for (const void *q : ptrs) al &= !((uintptr_t)q & 7);
    if (al)
        kp_fwd_kernel<T><<<grid, 256, 0, st>>>(rows, H, cast_in<T>(in), (T *)wlog, (T *)k, (T *)v, (T *)a, (T *)b);
    else
        kp_fwd1_kernel<T><<<grid, 256, 0, st>>>(rows, H, cast_in<T>(in), (T *)wlog, (T *)k, (T *)v, (T *)a, (T *)b);
    return launched("keyprep forward", err);
}

template <typename T>
mrw_status kp_bwd_t(int rows, int H, const mrw_cuda_keyprep_in *in, const mrw_cuda_keyprep_grad *gp,
                    float *scratch, cudaStream_t st, mrw_error *err) {
    kp_grad<T> g{(const T *)gp->dwlog, (const T *)gp->dk, (const T *)gp->dv, (const T *)gp->da, (const T *)gp->db,
                 (const T *)gp->dk_bonus, (const T *)gp->dv_bonus, (const T *)gp->dr_bonus, (T *)gp->dr,
                 (T *)gp->dpw, (T *)gp->dpa, (T *)gp->dpv, (T *)gp->dkraw, (T *)gp->dvraw, gp->dvfirst,
                 gp->dbeta, (const T *)gp->r, gp->rk};
    const kp_in<T> ki = cast_in<T>(in);
    const size_t pairs = (size_t)rows * H;
    float *part = scratch + 2 * pairs; /* (the first 2 rows*H floats are no longer used) */
    int slices = rows < CS_SLICES ? rows : CS_SLICES;
    const int per = (rows + slices - 1) / slices;
    slices = (rows + per - 1) / per;
    const bool pg = gp->dw0 || gp->da0 || gp->dv0 || gp->dk_k || gp->dk_a;
    if (pg) {
        if (gp->dbeta) kp_bwd_kernel<T, true, true><<<dim3(slices, H), 256, 0, st>>>(rows, H, per, ki, g, part);
        else kp_bwd_kernel<T, true, false><<<dim3(slices, H), 256, 0, st>>>(rows, H, per, ki, g, part);
        colsum_final<5><<<(H * HN + 255) / 256, 256, 0, st>>>(
            H * HN, slices, part, outs<5>{{gp->dw0, gp->da0, in->pv ? gp->dv0 : nullptr, gp->dk_a, gp->dk_k}});
    } else {
        if (gp->dbeta) kp_bwd_kernel<T, false, true><<<dim3(slices, H), 256, 0, st>>>(rows, H, per, ki, g, part);
        else kp_bwd_kernel<T, false, false><<<dim3(slices, H), 256, 0, st>>>(rows, H, per, ki, g, part);
    }
    return launched("keyprep backward", err);
}

template <typename T> __global__ void relu2_fwd_kernel(size_t n, const T *h, T *act) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const float x = fmaxf(ld(h, e), 0.f);
        st(act, e, x * x);
    }
}
template <typename T> __global__ void relu2_bwd_kernel(size_t n, const T *h, T *d) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        st(d, e, ld(d, e) * 2.f * fmaxf(ld(h, e), 0.f));
}

template <typename T>
mrw_status mix_fwd_t(int B, int T_, int C, int nq, const void *x, const float *const mix[], void *const out[],
                     cudaStream_t st, mrw_error *err) {
    mix_ptrs<T> p = {};
    for (int q = 0; q < nq; q++) p.m[q] = mix[q], p.o[q] = (T *)out[q];
    const size_t n = (size_t)B * T_ * C;
    bool al = !((uintptr_t)x & 7);
    for (int q = 0; q < nq; q++) al &= !((uintptr_t)out[q] & 7);
    if (C % 2 == 0 && al)
        mix_fwd2_kernel<T><<<grid_for(n / 2, 256), 256, 0, st>>>(n / 2, T_, C, nq, (const T *)x, p);
    else
        mix_fwd_kernel<T><<<grid_for(n, 256), 256, 0, st>>>(n, T_, C, nq, (const T *)x, p);
    return launched("token mix forward", err);
}

template <typename T>
mrw_status mix_bwd_t(int B, int T_, int C, int nq, const void *x, const float *const mix[], const void *const dout[],
                     int acc, void *dx, float *const dmix[], float *scratch, cudaStream_t st, mrw_error *err) {
    mix_ptrs<T> p = {};
    mix_param_terms<T> f = {};
    outs<MRW_CUDA_MIX_MAX> o = {};
    int any = 0;
    for (int q = 0; q < nq; q++) {
        p.m[q] = mix[q], p.d[q] = (const T *)dout[q];
        f.d[q] = (const T *)dout[q];
        o.p[q] = dmix ? dmix[q] : nullptr;
        any |= o.p[q] != nullptr;
    }
    const size_t n = (size_t)B * T_ * C;
    bool al = !((uintptr_t)x & 7) && !((uintptr_t)dx & 7);
    for (int q = 0; q < nq; q++) al &= !((uintptr_t)dout[q] & 7);
    if (C % 2 == 0 && al) { /* fused: dx and the parameter sums in one pass */
        const int rows = B * T_;
        int slices = rows < CS_SLICES ? rows : CS_SLICES;
        const int per = (rows + slices - 1) / slices;
        slices = (rows + per - 1) / per;
        const dim3 grid(slices, (C + 63) / 64);
#define MIXB(PGV, NQV)                                                                                             \
    mix_bwd2_kernel<T, PGV, NQV><<<grid, 256, 0, st>>>(rows, T_, C, nq, acc, per, (const T *)x, (T *)dx, p, scratch)
        if (any && nq == 6) MIXB(true, 6);
        else if (any && nq == 1) MIXB(true, 1);
        else if (any) MIXB(true, 0);
        else if (nq == 6) MIXB(false, 6);
        else if (nq == 1) MIXB(false, 1);
        else MIXB(false, 0);
#undef MIXB
        if (any) colsum_final<MRW_CUDA_MIX_MAX><<<(C + 255) / 256, 256, 0, st>>>(C, slices, scratch, o);
        return launched("token mix backward", err);
    }
    mix_bwd_kernel<T><<<grid_for(n, 256), 256, 0, st>>>(n, T_, C, nq, acc, (T *)dx, p);
    if (any) {
        f.x = (const T *)x, f.T_ = T_, f.C = C, f.nq = nq;
        colsum<MRW_CUDA_MIX_MAX>(B * T_, C, f, scratch, o, st);
    }
    return launched("token mix backward", err);
}

} // namespace

#define DT_DISPATCH(what, call_f32, call_bf16)                                                              \
    do {                                                                                                   \
        if (dt == MRW_CUDA_F32) return call_f32;                                                           \
        if (dt == MRW_CUDA_BF16) return call_bf16;                                                         \
        return mrw_err(err, MRW_E_UNSUPPORTED, "%s (cuda): dtype %d", what, (int)dt);                      \
    } while (0)

static mrw_status mix_check(const char *what, int B, int T, int C, int nq, const void *x, mrw_error *err) {
    if (B < 1 || T < 1 || C < 1 || (double)B * T > 0x7fffffff)
        return mrw_err(err, MRW_E_ARG, "%s (cuda): bad shape B=%d T=%d C=%d", what, B, T, C);
    if (nq < 1 || nq > MRW_CUDA_MIX_MAX) return mrw_err(err, MRW_E_ARG, "%s (cuda): %d mixes (1..6)", what, nq);
    if (!x) return mrw_err(err, MRW_E_ARG, "%s (cuda): x is NULL", what);
    return MRW_OK;
}

extern "C" mrw_status mrw_cuda_token_mix_fwd(mrw_cuda_dtype dt, int B, int T, int C, int nq, const void *x,
                                             const float *const mix[], void *const out[], void *stream,
                                             mrw_error *err) {
    mrw_status s = mix_check("token mix", B, T, C, nq, x, err);
    if (s) return s;
    for (int q = 0; q < nq; q++)
        if (!mix[q] || !out[q]) return mrw_err(err, MRW_E_ARG, "token mix (cuda): mix %d or its output is NULL", q);
    cudaStream_t st = (cudaStream_t)stream;
    DT_DISPATCH("token mix", mix_fwd_t<float>(B, T, C, nq, x, mix, out, st, err),
                mix_fwd_t<bf16>(B, T, C, nq, x, mix, out, st, err));
}

template <typename T>
mrw_status ln_mix_t(int B, int T_, int C, int nq, const void *x, const float *w, const float *b, float eps, void *y,
                    float *mean, float *rstd, const float *const mix[], void *const out[], cudaStream_t st,
                    mrw_error *err) {
    mix_ptrs<T> p{};
    for (int q = 0; q < nq; q++) p.m[q] = mix[q], p.o[q] = (T *)out[q];
    const int rows = B * T_, np = C <= 512 ? 8 : 16;
    const unsigned grid = (unsigned)((rows + 7) / 8);
#define LNM(NPV, NQV)                                                                                                  ln_mix_warp_kernel<T, NPV, NQV><<<grid, 256, 0, st>>>(rows, T_, C, (const T *)x, w, b, eps, (T *)y, mean, rstd, p)
    if (np == 8 && nq == 6) LNM(8, 6);
    else if (np == 8) LNM(8, 1);
    else if (nq == 6) LNM(16, 6);
    else LNM(16, 1);
#undef LNM
    return launched("layernorm + token mix", err);
}

extern "C" mrw_status mrw_cuda_ln_mix_fwd(mrw_cuda_dtype dt, int B, int T, int C, int nq, const void *x,
                                          const float *w, const float *b, float eps, void *y, float *mean,
                                          float *rstd, const float *const mix[], void *const out[], void *stream,
                                          mrw_error *err) {
    mrw_status s = mix_check("layernorm + token mix", B, T, C, nq, x, err);
    if (s) return s;
    if (!w || !b || !y || !mean || !rstd) return mrw_err(err, MRW_E_ARG, "layernorm + token mix (cuda): NULL tensor");
    bool al = !((uintptr_t)x & 7) && !((uintptr_t)y & 7);
    for (int q = 0; q < nq; q++) {
        if (!mix[q] || !out[q])
            return mrw_err(err, MRW_E_ARG, "layernorm + token mix (cuda): mix %d or its output is NULL", q);
        al &= !((uintptr_t)out[q] & 7);
    }
    if (C % 2 || C > 1024 || !al || (nq != 1 && nq != 6)) { /* the two calls */
        if ((s = mrw_cuda_layernorm_fwd(dt, B * T, C, x, w, b, eps, y, mean, rstd, stream, err))) return s;
        return mrw_cuda_token_mix_fwd(dt, B, T, C, nq, y, mix, out, stream, err);
    }
    cudaStream_t st = (cudaStream_t)stream;
    DT_DISPATCH("layernorm + token mix", ln_mix_t<float>(B, T, C, nq, x, w, b, eps, y, mean, rstd, mix, out, st, err),
                ln_mix_t<bf16>(B, T, C, nq, x, w, b, eps, y, mean, rstd, mix, out, st, err));
}

extern "C" size_t mrw_cuda_token_mix_bwd_scratch(int C) { return colsum_scratch_floats<MRW_CUDA_MIX_MAX>(C); }

extern "C" mrw_status mrw_cuda_token_mix_bwd(mrw_cuda_dtype dt, int B, int T, int C, int nq, const void *x,
                                             const float *const mix[], const void *const dout[], int accumulate,
                                             void *dx, float *const dmix[], float *scratch, void *stream,
                                             mrw_error *err) {
    mrw_status s = mix_check("token mix backward", B, T, C, nq, x, err);
    if (s) return s;
    if (!dx) return mrw_err(err, MRW_E_ARG, "token mix backward (cuda): dx is NULL");
    for (int q = 0; q < nq; q++)
        if (!mix[q] || !dout[q]) return mrw_err(err, MRW_E_ARG, "token mix backward (cuda): mix %d or dout is NULL", q);
    if (dmix && !scratch) return mrw_err(err, MRW_E_ARG, "token mix backward (cuda): scratch is NULL");
    cudaStream_t st = (cudaStream_t)stream;
    DT_DISPATCH("token mix backward", mix_bwd_t<float>(B, T, C, nq, x, mix, dout, accumulate, dx, dmix, scratch, st, err),
                mix_bwd_t<bf16>(B, T, C, nq, x, mix, dout, accumulate, dx, dmix, scratch, st, err));
}

static mrw_status kp_check(const char *what, int rows, int H, const mrw_cuda_keyprep_in *in, mrw_error *err) {
    if (rows < 1 || H < 1 || (long long)rows * H > 0x7fffffffLL)
        return mrw_err(err, MRW_E_ARG, "%s (cuda): bad shape rows=%d H=%d", what, rows, H);
    if (!in || !in->pw || !in->pa || !in->kraw || !in->vraw || !in->w0 || !in->a0 || !in->k_k || !in->k_a)
        return mrw_err(err, MRW_E_ARG, "%s (cuda): NULL input", what);
    if (!!in->pv + !!in->vfirst + !!in->v0 != 0 && !!in->pv + !!in->vfirst + !!in->v0 != 3)
        return mrw_err(err, MRW_E_ARG, "%s (cuda): pv, vfirst and v0 must be all given or all NULL", what);
    return MRW_OK;
}

extern "C" mrw_status mrw_cuda_keyprep_fwd(mrw_cuda_dtype dt, int rows, int H, const mrw_cuda_keyprep_in *in,
                                           void *wlog, void *k, void *v, void *a, void *b, void *stream,
                                           mrw_error *err) {
    mrw_status s = kp_check("keyprep", rows, H, in, err);
    if (s) return s;
    if (!wlog || !k || !v || !a || !b) return mrw_err(err, MRW_E_ARG, "keyprep (cuda): NULL output");
    cudaStream_t st = (cudaStream_t)stream;
    DT_DISPATCH("keyprep", kp_fwd_t<float>(rows, H, in, wlog, k, v, a, b, st, err),
                kp_fwd_t<bf16>(rows, H, in, wlog, k, v, a, b, st, err));
}

extern "C" size_t mrw_cuda_keyprep_bwd_scratch(int rows, int H) {
    return 2 * (size_t)rows * H + colsum_scratch_floats<5>(H * HN);
}

extern "C" mrw_status mrw_cuda_keyprep_bwd(mrw_cuda_dtype dt, int rows, int H, const mrw_cuda_keyprep_in *in,
                                           const mrw_cuda_keyprep_grad *g, float *scratch, void *stream,
                                           mrw_error *err) {
    mrw_status s = kp_check("keyprep backward", rows, H, in, err);
    if (s) return s;
    if (!g || !g->dwlog || !g->dk || !g->dv || !g->da || !g->db || !g->dpw || !g->dpa || !g->dkraw || !g->dvraw ||
        !scratch || (in->pv && (!g->dpv || !g->dvfirst)))
        return mrw_err(err, MRW_E_ARG, "keyprep backward (cuda): NULL gradient tensor or scratch");
    if (g->dbeta && (!g->r || !g->rk || !g->dr || g->dk_bonus || g->dr_bonus))
        return mrw_err(err, MRW_E_ARG, "keyprep backward (cuda): dbeta needs r, rk and dr, and no dk_bonus / dr_bonus");
    const void *ptrs[] = {in->pw, in->pa, in->pv, in->kraw, in->vraw, in->vfirst, g->dwlog, g->dk, g->dv, g->da,
                          g->db, g->dk_bonus, g->dv_bonus, g->dr_bonus, g->dr, g->dpw, g->dpa, g->dpv, g->dkraw,
                          g->dvraw, g->dvfirst, g->dbeta ? g->r : nullptr};
    for (const void *q : ptrs)
        if ((uintptr_t)q & 7)
            return mrw_err(err, MRW_E_ARG, "keyprep backward (cuda): tensors must be 8-byte aligned");
    cudaStream_t st = (cudaStream_t)stream;
    DT_DISPATCH("keyprep backward", kp_bwd_t<float>(rows, H, in, g, scratch, st, err),
                kp_bwd_t<bf16>(rows, H, in, g, scratch, st, err));
}

extern "C" mrw_status mrw_cuda_relu2_fwd(mrw_cuda_dtype dt, size_t n, const void *h, void *act, void *stream,
                                         mrw_error *err) {
    if (!n || !h || !act) return mrw_err(err, MRW_E_ARG, "relu2 (cuda): bad arguments");
    cudaStream_t st = (cudaStream_t)stream;
    const bool pairs = n % 2 == 0 && !((uintptr_t)h & 7) && !((uintptr_t)act & 7);
    const bool v8 = n % 8 == 0 && !((uintptr_t)h & 15) && !((uintptr_t)act & 15);
    if (dt == MRW_CUDA_BF16 && v8)
        relu2_fwd8_kernel<<<grid_for(n / 8, 256), 256, 0, st>>>(n / 8, (const uint4 *)h, (uint4 *)act);
    else if (dt == MRW_CUDA_F32 && pairs)
        relu2_fwd2_kernel<float><<<grid_for(n / 2, 256), 256, 0, st>>>(n / 2, (const float *)h, (float *)act);
    else if (dt == MRW_CUDA_BF16 && pairs)
        relu2_fwd2_kernel<bf16><<<grid_for(n / 2, 256), 256, 0, st>>>(n / 2, (const bf16 *)h, (bf16 *)act);
    else if (dt == MRW_CUDA_F32)
        relu2_fwd_kernel<float><<<grid_for(n, 256), 256, 0, st>>>(n, (const float *)h, (float *)act);
    else if (dt == MRW_CUDA_BF16)
        relu2_fwd_kernel<bf16><<<grid_for(n, 256), 256, 0, st>>>(n, (const bf16 *)h, (bf16 *)act);
    else
        return mrw_err(err, MRW_E_UNSUPPORTED, "relu2 (cuda): dtype %d", (int)dt);
    return launched("relu2 forward", err);
}

extern "C" mrw_status mrw_cuda_relu2_bwd(mrw_cuda_dtype dt, size_t n, const void *h, void *d, void *stream,
                                         mrw_error *err) {
    if (!n || !h || !d) return mrw_err(err, MRW_E_ARG, "relu2 backward (cuda): bad arguments");
    cudaStream_t st = (cudaStream_t)stream;
    const bool pairs = n % 2 == 0 && !((uintptr_t)h & 7) && !((uintptr_t)d & 7);
    if (dt == MRW_CUDA_F32 && pairs)
        relu2_bwd2_kernel<float><<<grid_for(n / 2, 256), 256, 0, st>>>(n / 2, (const float *)h, (float *)d);
    else if (dt == MRW_CUDA_BF16 && pairs)
        relu2_bwd2_kernel<bf16><<<grid_for(n / 2, 256), 256, 0, st>>>(n / 2, (const bf16 *)h, (bf16 *)d);
    else if (dt == MRW_CUDA_F32)
        relu2_bwd_kernel<float><<<grid_for(n, 256), 256, 0, st>>>(n, (const float *)h, (float *)d);
    else if (dt == MRW_CUDA_BF16)
        relu2_bwd_kernel<bf16><<<grid_for(n, 256), 256, 0, st>>>(n, (const bf16 *)h, (bf16 *)d);
    else
        return mrw_err(err, MRW_E_UNSUPPORTED, "relu2 backward (cuda): dtype %d", (int)dt);
    return launched("relu2 backward", err);
}
