/* LayerNorm and GroupNorm + bonus + gate, forward and backward (norm.h). LayerNorm: one warp per row with the row
 * in registers (C even and <= 1024, 8-byte aligned tensors), else one block of 256 threads per row; fp32 statistics
 * (mean, then the centred variance). The backward is fused with the parameter sums (per-slice partial sums, then
 * ln_part_final): one warp per row for C <= 1024 (ln_bwd_fused_kernel), a block per row walking a slice of rows for
 * C <= 2048 (ln_bwd_block_fused_kernel); wider or unpaired rows take the block kernel and a separate colsum pass.
 * GroupNorm: one warp per (row, head), each lane two of the head's 64 channels (adjacent ones, one paired access,
 * when the tensors are 8-byte aligned). Parameter gradients: the column sums of common.cuh (GroupNorm's backward:
 * summed in registers over a slice of rows per block, in the same pass). */
#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/cuda/norm.h"
}

using namespace mrwcu;

namespace {

constexpr int LN_THREADS = 256;
constexpr int HN = 64;

/* V2: the row is read and written in column pairs (C even, 8-byte aligned tensors). */
template <typename T, bool V2>
__global__ void __launch_bounds__(LN_THREADS) ln_fwd_kernel(int C, const T *x, const float *w, const float *b,
                                                            float eps, T *y, float *mean, float *rstd) {
    __shared__ float sh[32];
    const size_t o = (size_t)blockIdx.x * C;
    float s = 0.f;
    if (V2)
        for (int i = 2 * threadIdx.x; i < C; i += 2 * LN_THREADS) {
            const float2 v = ld2(x, o + i);
            s += v.x + v.y;
        }
    else
        for (int i = threadIdx.x; i < C; i += LN_THREADS) s += ld(x, o + i);
    const float mu = block_sum(s, sh) / C;
    float v = 0.f;
    if (V2)
        for (int i = 2 * threadIdx.x; i < C; i += 2 * LN_THREADS) {
            const float2 t = ld2(x, o + i);
            v += (t.x - mu) * (t.x - mu) + (t.y - mu) * (t.y - mu);
        }
    else
        for (int i = threadIdx.x; i < C; i += LN_THREADS) {
            const float d = ld(x, o + i) - mu;
            v += d * d;
        }
    const float rs = rsqrtf(block_sum(v, sh) / C + eps);
    if (V2)
        for (int i = 2 * threadIdx.x; i < C; i += 2 * LN_THREADS) {
            const float2 t = ld2(x, o + i);
            st2(y, o + i, (t.x - mu) * rs * w[i] + b[i], (t.y - mu) * rs * w[i + 1] + b[i + 1]);
        }
    else
        for (int i = threadIdx.x; i < C; i += LN_THREADS) st(y, o + i, (ld(x, o + i) - mu) * rs * w[i] + b[i]);
    if (threadIdx.x == 0) mean[blockIdx.x] = mu, rstd[blockIdx.x] = rs;
}

template <typename T, bool V2>
__global__ void __launch_bounds__(LN_THREADS)
    ln_bwd_kernel(int C, const T *dy, const T *x, const float *mean, const float *rstd, const float *w, int acc,
                  T *dx) {
    __shared__ float sh[32];
    const size_t o = (size_t)blockIdx.x * C;
    const float mu = mean[blockIdx.x], rs = rstd[blockIdx.x];
    float m1 = 0.f, m2 = 0.f;
    if (V2)
        for (int i = 2 * threadIdx.x; i < C; i += 2 * LN_THREADS) {
            const float2 xv = ld2(x, o + i), dv = ld2(dy, o + i);
            const float d0 = dv.x * w[i], d1 = dv.y * w[i + 1];
            m1 += d0 + d1, m2 += d0 * ((xv.x - mu) * rs) + d1 * ((xv.y - mu) * rs);
        }
    else
        for (int i = threadIdx.x; i < C; i += LN_THREADS) {
            const float xh = (ld(x, o + i) - mu) * rs, d = ld(dy, o + i) * w[i];
            m1 += d, m2 += d * xh;
        }
    m1 = block_sum(m1, sh) / C;
    m2 = block_sum(m2, sh) / C;
    if (V2)
        for (int i = 2 * threadIdx.x; i < C; i += 2 * LN_THREADS) {
            const float2 xv = ld2(x, o + i), dv = ld2(dy, o + i);
            float g0 = rs * (dv.x * w[i] - m1 - ((xv.x - mu) * rs) * m2);
            float g1 = rs * (dv.y * w[i + 1] - m1 - ((xv.y - mu) * rs) * m2);
            if (acc) {
                const float2 p = ld2(dx, o + i);
                g0 = p.x + g0, g1 = p.y + g1;
            }
            st2(dx, o + i, g0, g1);
        }
    else
        for (int i = threadIdx.x; i < C; i += LN_THREADS) {
            const float xh = (ld(x, o + i) - mu) * rs;
            const float g = rs * (ld(dy, o + i) * w[i] - m1 - xh * m2);
            st(dx, o + i, acc ? ld(dx, o + i) + g : g);
        }
}

/* Warp-per-row LayerNorm (C even, C <= 64 NP, 8-byte aligned tensors): lane l holds the pairs 64 j + 2 l of its
 * row in registers, so the row is read once and no block barrier is needed (8 rows per 256-thread block). The
 * statistics are the block kernel's (mean, then the centred variance, both from the registers). */
template <typename T, int NP>
__global__ void __launch_bounds__(256) ln_fwd_warp_kernel(int rows, int C, const T *x, const float *w,
                                                          const float *b, float eps, T *y, float *mean, float *rstd) {
    const int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const size_t o = (size_t)row * C;
    float2 v[NP];
    float s = 0.f;
#pragma unroll
    for (int j = 0; j < NP; j++) {
        const int i = 64 * j + 2 * lane;
        v[j] = i < C ? ld2(x, o + i) : make_float2(0.f, 0.f);
        s += v[j].x + v[j].y;
    }
    const float mu = warp_sum(s) / C;
    float q = 0.f;
#pragma unroll
    for (int j = 0; j < NP; j++)
        if (64 * j + 2 * lane < C) q += (v[j].x - mu) * (v[j].x - mu) + (v[j].y - mu) * (v[j].y - mu);
    const float rs = rsqrtf(warp_sum(q) / C + eps);
#pragma unroll
    for (int j = 0; j < NP; j++) {
        const int i = 64 * j + 2 * lane;
        if (i < C) st2(y, o + i, (v[j].x - mu) * rs * w[i] + b[i], (v[j].y - mu) * rs * w[i + 1] + b[i + 1]);
    }
    if (lane == 0) mean[row] = mu, rstd[row] = rs;
}

/* The warp backward fused with its parameter sums (C even, C <= 64 NP, 8-byte aligned tensors): block = a slice of
 * `per` rows, 4 warps, warp w takes rows r0 + w, r0 + w + 4, ...; lane l holds the pairs 64 j + 2 l of its row in
 * registers and adds its dy xhat and dy terms into the warp's own [2][C] accumulator in dynamic shared memory (each
 * lane only its own columns: no barrier until the end). Then the 4 warps' accumulators are added in a fixed order
 * into part[slice][2][C] and ln_part_final adds the slices: deterministic, and dy and x are read once (the separate
 * parameter pass read them a second time). PG false: dx only (no scratch given). */
constexpr int LNF_WARPS = 4, LN_MAX_SLICES = 1024;
template <typename T, int NP, bool PG>
__global__ void __launch_bounds__(LNF_WARPS * 32)
    ln_bwd_fused_kernel(int rows, int C, int per, const T *dy, const T *x, const float *mean, const float *rstd,
                        const float *w, int acc, T *dx, float *part) {
    extern __shared__ float lnf_sh[]; /* [LNF_WARPS][2][C] */
    const int wp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *aw = lnf_sh + (size_t)wp * 2 * C, *ab = aw + C;
    float2 wv[NP];
#pragma unroll
    for (int j = 0; j < NP; j++) {
        const int i = 64 * j + 2 * lane;
        wv[j] = i < C ? make_float2(w[i], w[i + 1]) : make_float2(0.f, 0.f);
        if (PG && i < C) *(float2 *)(aw + i) = make_float2(0.f, 0.f), *(float2 *)(ab + i) = make_float2(0.f, 0.f);
    }
    const int r0 = blockIdx.x * per, r1 = min(rows, r0 + per);
    for (int row = r0 + wp; row < r1; row += LNF_WARPS) {
        const size_t o = (size_t)row * C;
        const float mu = mean[row], rs = rstd[row];
        float2 xh[NP], dv[NP];
        float m1 = 0.f, m2 = 0.f;
#pragma unroll
        for (int j = 0; j < NP; j++) {
            const int i = 64 * j + 2 * lane;
            if (i < C) {
                const float2 xv = ld2(x, o + i);
                dv[j] = ld2(dy, o + i);
                xh[j] = make_float2((xv.x - mu) * rs, (xv.y - mu) * rs);
            } else {
                xh[j] = dv[j] = make_float2(0.f, 0.f);
            }
            const float d0 = dv[j].x * wv[j].x, d1 = dv[j].y * wv[j].y;
            m1 += d0 + d1, m2 += d0 * xh[j].x + d1 * xh[j].y;
        }
        m1 = warp_sum(m1) / C;
        m2 = warp_sum(m2) / C;
#pragma unroll
        for (int j = 0; j < NP; j++) {
            const int i = 64 * j + 2 * lane;
            if (i >= C) continue;
            float g0 = rs * (dv[j].x * wv[j].x - m1 - xh[j].x * m2), g1 = rs * (dv[j].y * wv[j].y - m1 - xh[j].y * m2);
            if (acc) {
                const float2 p = ld2(dx, o + i);
                g0 = p.x + g0, g1 = p.y + g1;
            }
            st2(dx, o + i, g0, g1);
            if (PG) {
                float2 a = *(float2 *)(aw + i), b = *(float2 *)(ab + i);
                a.x += dv[j].x * xh[j].x, a.y += dv[j].y * xh[j].y, b.x += dv[j].x, b.y += dv[j].y;
                *(float2 *)(aw + i) = a, *(float2 *)(ab + i) = b;
            }
        }
    }
    if constexpr (PG) {
        __syncthreads();
        for (int i = threadIdx.x; i < 2 * C; i += LNF_WARPS * 32) {
            float s = 0.f;
#pragma unroll
            for (int ww = 0; ww < LNF_WARPS; ww++) s += lnf_sh[(size_t)ww * 2 * C + i];
            part[(size_t)blockIdx.x * 2 * C + i] = s;
        }
    }
}

/* The block backward (C even, 1024 < C <= 2 LN_THREADS PPT, 8-byte aligned) fused with its parameter sums: block =
 * a slice of `per` rows walked one row at a time by 256 threads, thread t owning the column pairs 2 t + 512 j
 * (j < PPT) of every row, so its dy xhat and dy sums stay in registers and go to part[slice][2][C] at the end with no
 * block reduction (columns are the thread's own); the row's two means take one barrier (double-buffered). */
template <typename T, int PPT>
__global__ void __launch_bounds__(LN_THREADS)
    ln_bwd_block_fused_kernel(int rows, int C, int per, const T *dy, const T *x, const float *mean, const float *rstd,
                              const float *w, int acc, T *dx, float *part) {
    __shared__ float2 sh[2][LN_THREADS / 32];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    float2 wv[PPT], aw[PPT], ab[PPT];
#pragma unroll
    for (int j = 0; j < PPT; j++) {
        const int i = 2 * threadIdx.x + 2 * LN_THREADS * j;
        wv[j] = i < C ? make_float2(w[i], w[i + 1]) : make_float2(0.f, 0.f);
        aw[j] = ab[j] = make_float2(0.f, 0.f);
    }
    const int r0 = blockIdx.x * per, r1 = min(rows, r0 + per);
    int buf = 0;
    for (int row = r0; row < r1; row++, buf ^= 1) {
        const size_t o = (size_t)row * C;
        const float mu = mean[row], rs = rstd[row];
        float2 xh[PPT], dv[PPT];
        float m1 = 0.f, m2 = 0.f;
#pragma unroll
        for (int j = 0; j < PPT; j++) {
            const int i = 2 * threadIdx.x + 2 * LN_THREADS * j;
            if (i < C) {
                const float2 xv = ld2(x, o + i);
                dv[j] = ld2(dy, o + i);
                xh[j] = make_float2((xv.x - mu) * rs, (xv.y - mu) * rs);
            } else {
                xh[j] = dv[j] = make_float2(0.f, 0.f);
            }
            const float d0 = dv[j].x * wv[j].x, d1 = dv[j].y * wv[j].y;
            m1 += d0 + d1, m2 += d0 * xh[j].x + d1 * xh[j].y;
        }
        m1 = warp_sum(m1), m2 = warp_sum(m2);
        if (lane == 0) sh[buf][wid] = make_float2(m1, m2);
        __syncthreads(); /* sh[buf] is next written two rows later, after the next row's barrier */
        m1 = m2 = 0.f;
#pragma unroll
        for (int k = 0; k < LN_THREADS / 32; k++) m1 += sh[buf][k].x, m2 += sh[buf][k].y;
        m1 /= C, m2 /= C;
#pragma unroll
        for (int j = 0; j < PPT; j++) {
            const int i = 2 * threadIdx.x + 2 * LN_THREADS * j;
            if (i >= C) continue;
            float g0 = rs * (dv[j].x * wv[j].x - m1 - xh[j].x * m2), g1 = rs * (dv[j].y * wv[j].y - m1 - xh[j].y * m2);
            if (acc) {
                const float2 p = ld2(dx, o + i);
                g0 = p.x + g0, g1 = p.y + g1;
            }
            st2(dx, o + i, g0, g1);
            aw[j].x += dv[j].x * xh[j].x, aw[j].y += dv[j].y * xh[j].y, ab[j].x += dv[j].x, ab[j].y += dv[j].y;
        }
    }
#pragma unroll
    for (int j = 0; j < PPT; j++) {
        const int i = 2 * threadIdx.x + 2 * LN_THREADS * j;
        if (i >= C) continue;
        *(float2 *)(part + ((size_t)blockIdx.x * 2 + 0) * C + i) = aw[j];
        *(float2 *)(part + ((size_t)blockIdx.x * 2 + 1) * C + i) = ab[j];
    }
}

/* out[q][c] += sum over the slices of part[slice][q][c] (double, fixed order: 8 interleaved partial sums per
 * column, then added in order); block (32 columns, 8 row groups), grid (columns / 32, 2). */
__global__ void ln_part_final(int C, int slices, const float *part, float *dw, float *db) {
    float *out = blockIdx.y ? db : dw;
    if (!out) return; /* uniform over the block */
    __shared__ double sh[8][32];
    const int c = blockIdx.x * 32 + threadIdx.x, q = blockIdx.y;
    double s = 0;
    if (c < C)
        for (int y = threadIdx.y; y < slices; y += 8) s += part[((size_t)y * 2 + q) * C + c];
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        double t = 0;
#pragma unroll
        for (int k = 0; k < 8; k++) t += sh[k][threadIdx.x];
        out[c] += (float)t;
    }
}

static int sm_count() {
    static int n = 0;
    if (!n) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && v > 0)
            n = v;
        else
            n = 132;
    }
    return n;
}

/* NP for the warp kernels (0: use the block kernels). Measured (H100, bench_train_gpu): at C 768 / 1024 the warp
 * kernels cut the norms' time by 3.9 / 2.7 ms a step; at C 2048 (32 pairs a lane) they added 3.2 ms, so wider rows
 * keep the block kernels. */
static inline int ln_warp_np(int C, bool v2) {
    if (!v2) return 0;
    return C <= 512 ? 8 : C <= 1024 ? 16 : 0;
}

template <typename T> struct ln_param_terms {
    const T *dy, *x;
    const float *mean, *rstd;
    int C;
    __device__ void operator()(int r, int c, float acc[2]) const {
        const size_t e = (size_t)r * C + c;
        const float d = ld(dy, e);
        acc[0] += d * ((ld(x, e) - mean[r]) * rstd[r]);
        acc[1] += d;
    }
};

/* ---- GroupNorm + bonus + gate: one warp per (row, head); lane holds channels lane and lane + 32 */
template <typename T>
__global__ void gn_fwd_kernel(int rows, int H, const T *y, const T *r, const T *k, const T *v, const T *g,
                              const float *lnw, const float *lnb, const float *rk, float eps, T *z, float *mean,
                              float *rstd) {
    const int gw = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (gw >= rows * H) return;
    const int h = gw % H;
    const size_t o = (size_t)gw * HN;
    const int c0 = h * HN + lane, c1 = c0 + 32;
    const float y0 = ld(y, o + lane), y1 = ld(y, o + lane + 32);
    const float mu = warp_sum(y0 + y1) * (1.f / HN);
    const float d0 = y0 - mu, d1 = y1 - mu;
    const float rs = rsqrtf(warp_sum(d0 * d0 + d1 * d1) * (1.f / HN) + eps);
    float o0 = d0 * rs * lnw[c0] + lnb[c0], o1 = d1 * rs * lnw[c1] + lnb[c1];
    if (rk) {
        const float beta = warp_sum(ld(r, o + lane) * ld(k, o + lane) * rk[c0] +
                                    ld(r, o + lane + 32) * ld(k, o + lane + 32) * rk[c1]);
        o0 += beta * ld(v, o + lane), o1 += beta * ld(v, o + lane + 32);
    }
    if (g) o0 *= ld(g, o + lane), o1 *= ld(g, o + lane + 32);
    st(z, o + lane, o0), st(z, o + lane + 32, o1);
    if (lane == 0) mean[gw] = mu, rstd[gw] = rs;
}

template <typename T>
__global__ void gn_bwd_kernel(int rows, int H, const T *dz, const T *y, const T *r, const T *k, const T *v,
                              const T *g, const float *lnw, const float *lnb, const float *rk, const float *mean,
                              const float *rstd, T *dy, T *dr, T *dk, T *dv, T *dg, float *dbeta_out, float *dbo) {
    const int gw = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (gw >= rows * H) return;
    const int h = gw % H;
    const size_t o = (size_t)gw * HN;
    const float mu = mean[gw], rs = rstd[gw];
    float dov[2], yh[2], beta = 0.f, dbeta = 0.f, m1 = 0.f, m2 = 0.f;
#pragma unroll
    for (int q = 0; q < 2; q++) {
        const size_t e = o + lane + 32 * q;
        const int c = h * HN + lane + 32 * q;
        yh[q] = (ld(y, e) - mu) * rs;
        const float dzv = ld(dz, e);
        dov[q] = g ? dzv * ld(g, e) : dzv;
        if (rk) beta += ld(r, e) * ld(k, e) * rk[c], dbeta += dov[q] * ld(v, e);
        const float d = dov[q] * lnw[c];
        m1 += d, m2 += d * yh[q];
    }
    beta = warp_sum(beta), dbeta = warp_sum(dbeta);
    m1 = warp_sum(m1) * (1.f / HN), m2 = warp_sum(m2) * (1.f / HN);
#pragma unroll
    for (int q = 0; q < 2; q++) {
        const size_t e = o + lane + 32 * q;
        const int c = h * HN + lane + 32 * q;
        st(dy, e, rs * (dov[q] * lnw[c] - m1 - yh[q] * m2));
        if (g) {
            const float ov = yh[q] * lnw[c] + lnb[c] + (rk ? beta * ld(v, e) : 0.f);
            st(dg, e, ld(dz, e) * ov);
        }
        if (rk) {
            st(dv, e, dov[q] * beta);
            if (dr) st(dr, e, dbeta * rk[c] * ld(k, e));
            if (dk) st(dk, e, dbeta * rk[c] * ld(r, e));
        }
    }
    if (lane == 0 && rk) {
        dbeta_out[gw] = dbeta;
        if (dbo) dbo[gw] = dbeta;
    }
}

/* The same on channel pairs (lane holds 2 lane, 2 lane + 1: one 4/8-byte access per tensor and lane), for 8-byte
 * aligned tensors. The backward walks a slice of rows per block (block (slice, h), 8 warps, warp w takes rows
 * r0 + w, r0 + w + 8, ...) and sums its parameter terms in registers, then over the warps in a fixed order into
 * part[slice][3][C] for colsum_final: one pass instead of two. */
template <typename T>
__global__ void gn_fwd2_kernel(int rows, int H, const T *y, const T *r, const T *k, const T *v, const T *g,
                               const float *lnw, const float *lnb, const float *rk, float eps, T *z, float *mean,
                               float *rstd) {
    const int gw = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (gw >= rows * H) return;
    const int h = gw % H;
    const size_t e = (size_t)gw * HN + 2 * lane;
    const int c = h * HN + 2 * lane;
    const float2 yv = ld2(y, e);
    const float mu = warp_sum(yv.x + yv.y) * (1.f / HN);
    const float d0 = yv.x - mu, d1 = yv.y - mu;
    const float rs = rsqrtf(warp_sum(d0 * d0 + d1 * d1) * (1.f / HN) + eps);
    float o0 = d0 * rs * lnw[c] + lnb[c], o1 = d1 * rs * lnw[c + 1] + lnb[c + 1];
    if (rk) {
        const float2 rv = ld2(r, e), kv = ld2(k, e), vv = ld2(v, e);
        const float beta = warp_sum(rv.x * kv.x * rk[c] + rv.y * kv.y * rk[c + 1]);
        o0 += beta * vv.x, o1 += beta * vv.y;
    }
    if (g) {
        const float2 gv = ld2(g, e);
        o0 *= gv.x, o1 *= gv.y;
    }
    st2(z, e, o0, o1);
    if (lane == 0) mean[gw] = mu, rstd[gw] = rs;
}

template <typename T, bool PG>
__global__ void gn_bwd2_kernel(int rows, int H, int per, const T *dz, const T *y, const T *r, const T *k, const T *v,
                               const T *g, const float *lnw, const float *lnb, const float *rk, const float *mean,
                               const float *rstd, T *dy, T *dr, T *dk, T *dv, T *dg, float *dbo, float *part) {
    const int h = blockIdx.y, w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r0 = blockIdx.x * per, r1 = min(rows, r0 + per);
    const int c = h * HN + 2 * lane;
    const float lw[2] = {lnw[c], lnw[c + 1]}, lb[2] = {lnb[c], lnb[c + 1]};
    const float rkc[2] = {rk ? rk[c] : 0.f, rk ? rk[c + 1] : 0.f};
    float pacc[3][2] = {{0.f, 0.f}, {0.f, 0.f}, {0.f, 0.f}};
    for (int row = r0 + w; row < r1; row += 8) {
        const int s = row * H + h;
        const size_t e = (size_t)s * HN + 2 * lane;
        const float mu = mean[s], rs = rstd[s];
        const float2 yv = ld2(y, e), dzv = ld2(dz, e);
        const float2 gv = g ? ld2(g, e) : make_float2(1.f, 1.f);
        const float yh[2] = {(yv.x - mu) * rs, (yv.y - mu) * rs};
        const float dzz[2] = {dzv.x, dzv.y};
        const float dov[2] = {g ? dzv.x * gv.x : dzv.x, g ? dzv.y * gv.y : dzv.y};
        float rr[2] = {0.f, 0.f}, kk[2] = {0.f, 0.f}, vv[2] = {0.f, 0.f}, beta = 0.f, dbeta = 0.f, m1 = 0.f, m2 = 0.f;
        if (rk) {
            const float2 a = ld2(r, e), b = ld2(k, e), cc = ld2(v, e);
            rr[0] = a.x, rr[1] = a.y, kk[0] = b.x, kk[1] = b.y, vv[0] = cc.x, vv[1] = cc.y;
        }
#pragma unroll
        for (int q = 0; q < 2; q++) {
            if (rk) beta += rr[q] * kk[q] * rkc[q], dbeta += dov[q] * vv[q];
            const float d = dov[q] * lw[q];
            m1 += d, m2 += d * yh[q];
        }
        beta = warp_sum(beta), dbeta = warp_sum(dbeta);
        m1 = warp_sum(m1) * (1.f / HN), m2 = warp_sum(m2) * (1.f / HN);
        float o_dy[2], o_dg[2];
#pragma unroll
        for (int q = 0; q < 2; q++) {
            o_dy[q] = rs * (dov[q] * lw[q] - m1 - yh[q] * m2);
            o_dg[q] = dzz[q] * (yh[q] * lw[q] + lb[q] + (rk ? beta * vv[q] : 0.f));
            if (PG) {
                pacc[0][q] += dov[q] * yh[q];
                pacc[1][q] += dov[q];
                if (rk) pacc[2][q] += dbeta * rr[q] * kk[q];
            }
        }
        st2(dy, e, o_dy[0], o_dy[1]);
        if (g) st2(dg, e, o_dg[0], o_dg[1]);
        if (rk) {
            st2(dv, e, dov[0] * beta, dov[1] * beta);
            if (dr) st2(dr, e, dbeta * rkc[0] * kk[0], dbeta * rkc[1] * kk[1]);
            if (dk) st2(dk, e, dbeta * rkc[0] * rr[0], dbeta * rkc[1] * rr[1]);
            if (dbo && lane == 0) dbo[s] = dbeta;
        }
    }
    if constexpr (PG) {
        __shared__ float sh[8][3][HN];
#pragma unroll
        for (int t = 0; t < 3; t++) sh[w][t][2 * lane] = pacc[t][0], sh[w][t][2 * lane + 1] = pacc[t][1];
        __syncthreads();
        const int C = H * HN;
        for (int i = threadIdx.x; i < 3 * HN; i += blockDim.x) {
            const int t = i / HN, cc = i % HN;
            float sum = 0.f;
#pragma unroll
            for (int ww = 0; ww < 8; ww++) sum += sh[ww][t][cc];
            part[((size_t)blockIdx.x * 3 + t) * C + h * HN + cc] = sum;
        }
    }
}

static inline bool al8(const void *p) { return !((uintptr_t)p & 7); }

template <typename T> struct gn_param_terms {
    const T *dz, *y, *g, *r, *k;
    const float *mean, *rstd, *dbeta;
    int H;
    __device__ void operator()(int row, int c, float acc[3]) const {
        const size_t e = (size_t)row * H * HN + c;
        const int s = row * H + c / HN;
        const float dzv = ld(dz, e), dov = g ? dzv * ld(g, e) : dzv;
        acc[0] += dov * ((ld(y, e) - mean[s]) * rstd[s]);
        acc[1] += dov;
        if (r) acc[2] += dbeta[s] * ld(r, e) * ld(k, e);
    }
};

template <typename T>
mrw_status ln_bwd_t(int rows, int C, const void *dy, const void *x, const float *mean, const float *rstd,
                    const float *w, int acc, void *dx, float *dw, float *db, float *scratch, cudaStream_t st,
                    mrw_error *err) {
    const bool v2 = C % 2 == 0 && !((uintptr_t)dy & 7) && !((uintptr_t)x & 7) && !((uintptr_t)dx & 7);
    const int np = ln_warp_np(C, v2);
    if (np) { /* the warp kernel, fused with the parameter sums when they are asked for */
        /* with scratch given, the PG kernel runs even without dw, db (its sums then unused), so that a frozen
         * backward's dx is bit-identical to a full one's (the same kernel, not another instantiation) */
        const bool pg = scratch != nullptr;
        const size_t shb = pg ? (size_t)LNF_WARPS * 2 * C * sizeof(float) : 0;
        auto kern = np == 8 ? (pg ? ln_bwd_fused_kernel<T, 8, true> : ln_bwd_fused_kernel<T, 8, false>)
                    : C <= 768 ? (pg ? ln_bwd_fused_kernel<T, 12, true> : ln_bwd_fused_kernel<T, 12, false>)
                               : (pg ? ln_bwd_fused_kernel<T, 16, true> : ln_bwd_fused_kernel<T, 16, false>);
        /* one wave: as many slices as blocks fit on the GPU at once (registers, shared memory) */
        int per_sm = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, LNF_WARPS * 32, shb) != cudaSuccess ||
            per_sm < 1)
            per_sm = 2;
        int slices = (rows + 2 * LNF_WARPS - 1) / (2 * LNF_WARPS), cap = per_sm * sm_count();
        if (slices > cap) slices = cap;
        if (slices > LN_MAX_SLICES) slices = LN_MAX_SLICES;
        const int per = (rows + slices - 1) / slices;
        slices = (rows + per - 1) / per;
        kern<<<slices, LNF_WARPS * 32, shb, st>>>(rows, C, per, (const T *)dy, (const T *)x, mean, rstd, w, acc,
                                                  (T *)dx, scratch);
        if (dw || db) ln_part_final<<<dim3((C + 31) / 32, 2), dim3(32, 8), 0, st>>>(C, slices, scratch, dw, db);
        return launched("layernorm backward", err);
    }
    if (v2 && C <= 2 * LN_THREADS * 4 && scratch) { /* the block path fused with the sums (C 2048: 1.5B) */
        auto kern = ln_bwd_block_fused_kernel<T, 4>;
        int per_sm = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, LN_THREADS, 0) != cudaSuccess || per_sm < 1)
            per_sm = 2;
        int slices = (rows + 1) / 2, cap = per_sm * sm_count();
        if (slices > cap) slices = cap;
        if (slices > LN_MAX_SLICES) slices = LN_MAX_SLICES;
        const int per = (rows + slices - 1) / slices;
        slices = (rows + per - 1) / per;
        kern<<<slices, LN_THREADS, 0, st>>>(rows, C, per, (const T *)dy, (const T *)x, mean, rstd, w, acc, (T *)dx,
                                            scratch);
        if (dw || db) ln_part_final<<<dim3((C + 31) / 32, 2), dim3(32, 8), 0, st>>>(C, slices, scratch, dw, db);
        return launched("layernorm backward", err);
    }
    if (v2)
        ln_bwd_kernel<T, true><<<rows, LN_THREADS, 0, st>>>(C, (const T *)dy, (const T *)x, mean, rstd, w, acc, (T *)dx);
    else
        ln_bwd_kernel<T, false><<<rows, LN_THREADS, 0, st>>>(C, (const T *)dy, (const T *)x, mean, rstd, w, acc,
                                                             (T *)dx);
    if (dw || db) { /* the block kernels (C > 1024 or unpaired): the column-sum pass */
        ln_param_terms<T> f{(const T *)dy, (const T *)x, mean, rstd, C};
        colsum<2>(rows, C, f, scratch, outs<2>{{dw, db}}, st);
    }
    return launched("layernorm backward", err);
}

template <typename T>
mrw_status gn_bwd_t(int rows, int H, const void *dz, const void *y, const void *r, const void *k, const void *v,
                    const void *g, const float *lnw, const float *lnb, const float *rk, const float *mean,
                    const float *rstd, void *dy, void *dr, void *dk, void *dv, void *dg, float *dbo, float *dlnw,
                    float *dlnb, float *drk, float *scratch, cudaStream_t st, mrw_error *err) {
    const int pairs = rows * H;
    float *dbeta = scratch, *part = scratch + (((size_t)pairs + 3) & ~(size_t)3);
    if (al8(dz) && al8(y) && al8(r) && al8(k) && al8(v) && al8(g) && al8(dy) && al8(dr) && al8(dk) && al8(dv) &&
        al8(dg)) {
        int slices = rows < CS_SLICES ? rows : CS_SLICES;
        const int per = (rows + slices - 1) / slices;
        slices = (rows + per - 1) / per;
        const bool pg = dlnw || dlnb || (drk && rk);
        if (pg) {
            gn_bwd2_kernel<T, true><<<dim3(slices, H), 256, 0, st>>>(
                rows, H, per, (const T *)dz, (const T *)y, (const T *)r, (const T *)k, (const T *)v, (const T *)g, lnw,
                lnb, rk, mean, rstd, (T *)dy, (T *)dr, (T *)dk, (T *)dv, (T *)dg, dbo, part);
            colsum_final<3><<<(H * HN + 255) / 256, 256, 0, st>>>(H * HN, slices, part,
                                                                  outs<3>{{dlnw, dlnb, rk ? drk : nullptr}});
        } else {
            gn_bwd2_kernel<T, false><<<dim3(slices, H), 256, 0, st>>>(
                rows, H, per, (const T *)dz, (const T *)y, (const T *)r, (const T *)k, (const T *)v, (const T *)g, lnw,
                lnb, rk, mean, rstd, (T *)dy, (T *)dr, (T *)dk, (T *)dv, (T *)dg, dbo, part);
        }
        return launched("groupnorm backward", err);
    }
    gn_bwd_kernel<T><<<(pairs + 7) / 8, 256, 0, st>>>(rows, H, (const T *)dz, (const T *)y, (const T *)r,
                                                      (const T *)k, (const T *)v, (const T *)g, lnw, lnb, rk, mean,
                                                      rstd, (T *)dy, (T *)dr, (T *)dk, (T *)dv, (T *)dg, dbeta, dbo);
    if (dlnw || dlnb || (drk && rk)) {
        gn_param_terms<T> f{(const T *)dz, (const T *)y, (const T *)g, (const T *)r, (const T *)k, mean, rstd, dbeta, H};
        colsum<3>(rows, H * HN, f, part, outs<3>{{dlnw, dlnb, rk ? drk : nullptr}}, st);
    }
    return launched("groupnorm backward", err);
}

} // namespace

#define DT_DISPATCH(what, call_f32, call_bf16)                                                              \
    do {                                                                                                   \
        if (dt == MRW_CUDA_F32) return call_f32;                                                           \
        if (dt == MRW_CUDA_BF16) return call_bf16;                                                         \
        return mrw_err(err, MRW_E_UNSUPPORTED, "%s (cuda): dtype %d", what, (int)dt);                      \
    } while (0)

extern "C" mrw_status mrw_cuda_layernorm_fwd(mrw_cuda_dtype dt, int rows, int C, const void *x, const float *w,
                                             const float *b, float eps, void *y, float *mean, float *rstd,
                                             void *stream, mrw_error *err) {
    if (rows < 1 || C < 1) return mrw_err(err, MRW_E_ARG, "layernorm (cuda): bad shape rows=%d C=%d", rows, C);
    if (!x || !w || !b || !y || !mean || !rstd) return mrw_err(err, MRW_E_ARG, "layernorm (cuda): NULL tensor");
    cudaStream_t st = (cudaStream_t)stream;
    const bool v2 = C % 2 == 0 && !((uintptr_t)x & 7) && !((uintptr_t)y & 7);
    const int np = ln_warp_np(C, v2);
    const unsigned wg = (unsigned)((rows + 7) / 8);
#define LNW(TT, NPV)                                                                                               \
    ln_fwd_warp_kernel<TT, NPV><<<wg, 256, 0, st>>>(rows, C, (const TT *)x, w, b, eps, (TT *)y, mean, rstd)
    if (np && dt != MRW_CUDA_F32 && dt != MRW_CUDA_BF16)
        return mrw_err(err, MRW_E_UNSUPPORTED, "layernorm (cuda): dtype %d", (int)dt);
    if (np == 8 && dt == MRW_CUDA_F32) LNW(float, 8);
    else if (np == 16 && dt == MRW_CUDA_F32) LNW(float, 16);
    else if (np == 8) LNW(bf16, 8);
    else if (np == 16) LNW(bf16, 16);
#undef LNW
    else if (dt == MRW_CUDA_F32 && v2)
        ln_fwd_kernel<float, true><<<rows, LN_THREADS, 0, st>>>(C, (const float *)x, w, b, eps, (float *)y, mean, rstd);
    else if (dt == MRW_CUDA_BF16 && v2)
        ln_fwd_kernel<bf16, true><<<rows, LN_THREADS, 0, st>>>(C, (const bf16 *)x, w, b, eps, (bf16 *)y, mean, rstd);
    else if (dt == MRW_CUDA_F32)
        ln_fwd_kernel<float, false><<<rows, LN_THREADS, 0, st>>>(C, (const float *)x, w, b, eps, (float *)y, mean, rstd);
    else if (dt == MRW_CUDA_BF16)
        ln_fwd_kernel<bf16, false><<<rows, LN_THREADS, 0, st>>>(C, (const bf16 *)x, w, b, eps, (bf16 *)y, mean, rstd);
    else
        return mrw_err(err, MRW_E_UNSUPPORTED, "layernorm (cuda): dtype %d", (int)dt);
    return launched("layernorm forward", err);
}

extern "C" size_t mrw_cuda_layernorm_bwd_scratch(int C) {
    const size_t a = colsum_scratch_floats<2>(C), b = (size_t)LN_MAX_SLICES * 2 * C; /* colsum / the fused kernel */
    return a > b ? a : b;
}

extern "C" mrw_status mrw_cuda_layernorm_bwd(mrw_cuda_dtype dt, int rows, int C, const void *dy, const void *x,
                                             const float *mean, const float *rstd, const float *w, int accumulate,
                                             void *dx, float *dw, float *db, float *scratch, void *stream,
                                             mrw_error *err) {
    if (rows < 1 || C < 1) return mrw_err(err, MRW_E_ARG, "layernorm backward (cuda): bad shape rows=%d C=%d", rows, C);
    if (!dy || !x || !mean || !rstd || !w || !dx || ((dw || db) && !scratch))
        return mrw_err(err, MRW_E_ARG, "layernorm backward (cuda): NULL tensor");
    cudaStream_t st = (cudaStream_t)stream;
    DT_DISPATCH("layernorm backward",
                ln_bwd_t<float>(rows, C, dy, x, mean, rstd, w, accumulate, dx, dw, db, scratch, st, err),
                ln_bwd_t<bf16>(rows, C, dy, x, mean, rstd, w, accumulate, dx, dw, db, scratch, st, err));
}

static mrw_status gn_check(const char *what, int rows, int H, const void *r, const void *k, const void *v,
                           const float *rk, mrw_error *err) {
    if (rows < 1 || H < 1 || (long long)rows * H > 0x7fffffffLL)
        return mrw_err(err, MRW_E_ARG, "%s (cuda): bad shape rows=%d H=%d", what, rows, H);
    if (!!r + !!k + !!v + !!rk != 0 && !!r + !!k + !!v + !!rk != 4)
        return mrw_err(err, MRW_E_ARG, "%s (cuda): r, k, v and rk must be all given or all NULL", what);
    return MRW_OK;
}

extern "C" mrw_status mrw_cuda_gn_bonus_gate_fwd(mrw_cuda_dtype dt, int rows, int H, const void *y, const void *r,
                                                 const void *k, const void *v, const void *g, const float *lnw,
                                                 const float *lnb, const float *rk, float eps, void *z, float *mean,
                                                 float *rstd, void *stream, mrw_error *err) {
    mrw_status s = gn_check("groupnorm", rows, H, r, k, v, rk, err);
    if (s) return s;
    if (!y || !lnw || !lnb || !z || !mean || !rstd) return mrw_err(err, MRW_E_ARG, "groupnorm (cuda): NULL tensor");
    cudaStream_t st = (cudaStream_t)stream;
    const unsigned grid = (unsigned)(((long long)rows * H + 7) / 8);
    const bool v2 = al8(y) && al8(r) && al8(k) && al8(v) && al8(g) && al8(z);
    if (v2 && dt == MRW_CUDA_F32)
        gn_fwd2_kernel<float><<<grid, 256, 0, st>>>(rows, H, (const float *)y, (const float *)r, (const float *)k,
                                                    (const float *)v, (const float *)g, lnw, lnb, rk, eps, (float *)z,
                                                    mean, rstd);
    else if (v2 && dt == MRW_CUDA_BF16)
        gn_fwd2_kernel<bf16><<<grid, 256, 0, st>>>(rows, H, (const bf16 *)y, (const bf16 *)r, (const bf16 *)k,
                                                   (const bf16 *)v, (const bf16 *)g, lnw, lnb, rk, eps, (bf16 *)z,
                                                   mean, rstd);
    else if (dt == MRW_CUDA_F32)
        gn_fwd_kernel<float><<<grid, 256, 0, st>>>(rows, H, (const float *)y, (const float *)r, (const float *)k,
                                                   (const float *)v, (const float *)g, lnw, lnb, rk, eps, (float *)z,
                                                   mean, rstd);
    else if (dt == MRW_CUDA_BF16)
        gn_fwd_kernel<bf16><<<grid, 256, 0, st>>>(rows, H, (const bf16 *)y, (const bf16 *)r, (const bf16 *)k,
                                                  (const bf16 *)v, (const bf16 *)g, lnw, lnb, rk, eps, (bf16 *)z,
                                                  mean, rstd);
    else
        return mrw_err(err, MRW_E_UNSUPPORTED, "groupnorm (cuda): dtype %d", (int)dt);
    return launched("groupnorm forward", err);
}

extern "C" size_t mrw_cuda_gn_bonus_gate_bwd_scratch(int rows, int H) {
    return (((size_t)rows * H + 3) & ~(size_t)3) + colsum_scratch_floats<3>(H * HN);
}

extern "C" mrw_status mrw_cuda_gn_bonus_gate_bwd(mrw_cuda_dtype dt, int rows, int H, const void *dz, const void *y,
                                                 const void *r, const void *k, const void *v, const void *g,
                                                 const float *lnw, const float *lnb, const float *rk,
                                                 const float *mean, const float *rstd, void *dy, void *dr, void *dk,
                                                 void *dv, void *dg, float *dlnw, float *dlnb, float *drk,
                                                 float *scratch, void *stream, mrw_error *err) {
    mrw_status s = gn_check("groupnorm backward", rows, H, r, k, v, rk, err);
    if (s) return s;
    if (!dz || !y || !lnw || !lnb || !mean || !rstd || !dy || !scratch || (g && !dg) || (rk && (!dr || !dk || !dv)))
        return mrw_err(err, MRW_E_ARG, "groupnorm backward (cuda): NULL tensor");
    cudaStream_t st = (cudaStream_t)stream;
    DT_DISPATCH("groupnorm backward",
                gn_bwd_t<float>(rows, H, dz, y, r, k, v, g, lnw, lnb, rk, mean, rstd, dy, dr, dk, dv, dg, nullptr,
                                dlnw, dlnb, drk, scratch, st, err),
                gn_bwd_t<bf16>(rows, H, dz, y, r, k, v, g, lnw, lnb, rk, mean, rstd, dy, dr, dk, dv, dg, nullptr,
                               dlnw, dlnb, drk, scratch, st, err));
}

extern "C" mrw_status mrw_cuda_gn_bonus_gate_bwd_dbeta(mrw_cuda_dtype dt, int rows, int H, const void *dz,
                                                       const void *y, const void *r, const void *k, const void *v,
                                                       const void *g, const float *lnw, const float *lnb,
                                                       const float *rk, const float *mean, const float *rstd, void *dy,
                                                       float *dbeta, void *dv, void *dg, float *dlnw, float *dlnb,
                                                       float *drk, float *scratch, void *stream, mrw_error *err) {
    mrw_status s = gn_check("groupnorm backward", rows, H, r, k, v, rk, err);
    if (s) return s;
    if (!rk) return mrw_err(err, MRW_E_ARG, "groupnorm backward (cuda): dbeta needs the bonus (r, k, v, rk)");
    if (!dz || !y || !lnw || !lnb || !mean || !rstd || !dy || !scratch || (g && !dg) || !dbeta || !dv)
        return mrw_err(err, MRW_E_ARG, "groupnorm backward (cuda): NULL tensor");
    cudaStream_t st = (cudaStream_t)stream;
    DT_DISPATCH("groupnorm backward",
                gn_bwd_t<float>(rows, H, dz, y, r, k, v, g, lnw, lnb, rk, mean, rstd, dy, nullptr, nullptr, dv, dg,
                                dbeta, dlnw, dlnb, drk, scratch, st, err),
                gn_bwd_t<bf16>(rows, H, dz, y, r, k, v, g, lnw, lnb, rk, mean, rstd, dy, nullptr, nullptr, dv, dg,
                               dbeta, dlnw, dlnb, drk, scratch, st, err));
}
