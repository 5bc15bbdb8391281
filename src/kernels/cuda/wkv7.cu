/* WKV7 forward and backward for training on NVIDIA GPUs. Interface and math: wkv7.h; design: docs/CUDA.md.
 *
 * One thread block per (batch row, head). The 64x64 fp32 state lives in registers. Row-sliced kernels (forward
 * and backward, variant K = 2/4/8): K threads share a row i (64*K threads a block), thread q of the row holding
 * the columns j = 4*K*g + 4*q + {0..3} for g < 16/K (so a float4 of shared memory serves each group without bank
 * conflicts).
 * Sums over j are partial sums in each thread plus K-lane butterfly shuffles, so the forward needs no block
 * barrier per step. Inputs are staged per chunk of 16 steps: while the block computes chunk c, each thread
 * already has its share of chunk c+1 in flight in registers; at the chunk boundary they are converted to fp32
 * (decay = exp(-exp(w)) computed once there) into shared memory. The default forward is the tiled variant
 * (wkv7_fwd_tiled: 4 rows x 8 columns a thread), which reads shared memory 4x less per state element.
 *
 * The backward walks t = T-1..0. Thread (i, q) holds, for its columns j, three slices: Sc = S[j][i] (column i
 * of the state), dSc = dS[j][i] and dSr = dS[i][j] (row and column of the state gradient), so that every
 * reduction the gradients need is over j inside one row group. The state of step t-1 comes from inverting the
 * update; at each chunk end it restarts from the forward's checkpoint (prefetched a chunk ahead). d(sa) is
 * shared through shared memory: one barrier per step. */
#include <cuda_bf16.h>
#include <cuda_pipeline.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "base/error.h"
#include "kernels/cuda/wkv7.h"
}

namespace {

constexpr int N = MRW_WKV7_N;
constexpr int CK = MRW_WKV7_CHUNK;

/* Shared-memory slots of the per-chunk input staging. */
enum { IR = 0, IW, IK, IV, IA, IB, IDY, ISA, IEW };

typedef __nv_bfloat16 bf16;

template <typename T> struct io;
template <> struct io<float> {
    static constexpr int VE = 4; /* elements per 16-byte vector */
    static __device__ __forceinline__ void unpack(uint4 u, float *f) {
        f[0] = __uint_as_float(u.x), f[1] = __uint_as_float(u.y), f[2] = __uint_as_float(u.z),
        f[3] = __uint_as_float(u.w);
    }
    static __device__ __forceinline__ void put(float *p, float x) { *p = x; }
};
template <> struct io<bf16> {
    static constexpr int VE = 8;
    static __device__ __forceinline__ void unpack(uint4 u, float *f) {
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int e = 0; e < 4; e++) {
            f[2 * e] = __uint_as_float(w[e] << 16);
            f[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
        }
    }
    static __device__ __forceinline__ void put(bf16 *p, float x) { *p = __float2bfloat16_rn(x); }
};

/* Moves chunks (CK steps x N) of NA arrays of type T, [B][T][H][N], from global memory through registers
 * into shared memory as fp32, into slots first..first+NA-1. Each thread owns SLOTS 16-byte vectors. */
template <typename T, int NA, int NT> struct chunk_loader {
    static constexpr int VE = io<T>::VE, VPA = CK * N / VE, SLOTS = (NA * VPA + NT - 1) / NT;
    const T *src[SLOTS]; /* the vector's address in chunk 0; NULL if the slot is unused */
    int slot[SLOTS], tt[SLOTS], n[SLOTS];
    uint4 buf[SLOTS];
    size_t chunk_stride;

    __device__ __forceinline__ void init(const T *const *arrays, size_t head_base, size_t step_stride, int tid,
                                         int first) {
        chunk_stride = step_stride * CK;
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            const int flat = tid + s * NT, arr = flat / VPA, e0 = (flat % VPA) * VE;
            tt[s] = e0 / N, n[s] = e0 % N, slot[s] = first + arr;
            src[s] = arr < NA ? arrays[arr] + head_base + (size_t)tt[s] * step_stride + n[s] : nullptr;
        }
    }
    __device__ __forceinline__ void load(int c, int T_) {
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            buf[s] = make_uint4(0, 0, 0, 0);
            if (src[s] && c * CK + tt[s] < T_) buf[s] = *(const uint4 *)(src[s] + (size_t)c * chunk_stride);
        }
    }
    /* decay_slot: the slot whose values are log-space decays (stored as exp(-exp(x)); -exp(x) also goes to
     * ew_slot if that is >= 0). */
    __device__ __forceinline__ void store(float (*sm)[CK][N], int decay_slot, int ew_slot) {
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            if (!src[s]) continue;
            float f[VE];
            io<T>::unpack(buf[s], f);
            if (slot[s] == decay_slot) {
#pragma unroll
                for (int e = 0; e < VE; e++) {
                    const float ew = -expf(f[e]);
                    f[e] = expf(ew);
                    if (ew_slot >= 0) sm[ew_slot][tt[s]][n[s] + e] = ew;
                }
            }
            float *d = &sm[slot[s]][tt[s]][n[s]];
#pragma unroll
            for (int e = 0; e < VE; e += 4) *(float4 *)(d + e) = make_float4(f[e], f[e + 1], f[e + 2], f[e + 3]);
        }
    }
};

template <int K> __device__ __forceinline__ float row_sum(float x) {
#pragma unroll
    for (int o = 1; o < K; o <<= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

template <typename T> struct fwd_args {
    const T *r, *w, *k, *v, *a, *b;
    const float *s0;
    T *y;
    float *ckpt, *sa;
    int nt, H;
};

template <typename T> struct bwd_args {
    const T *r, *w, *k, *v, *a, *b, *dy;
    const float *dsT, *ckpt, *sa;
    T *dr, *dw, *dk, *dv, *da, *db;
    float *ds0;
    int nt, H;
};

template <typename T, int K> __global__ void __launch_bounds__(64 * K, 1) wkv7_fwd(const fwd_args<T> p) {
    constexpr int NT = 64 * K, G = N / K / 4; /* float4 groups per thread */
    __shared__ __align__(16) float sm[6][CK][N];
    const int tid = threadIdx.x, q = tid % K, i = tid / K;
    const int bh = blockIdx.x, bb = bh / p.H, hh = bh % p.H, T_ = p.nt;
    const size_t hs = (size_t)p.H * N, base = (size_t)bb * T_ * hs + (size_t)hh * N;
    const int nc = (T_ + CK - 1) / CK;

    float S[4 * G];
    if (p.s0) {
        const float *s0 = p.s0 + ((size_t)bh * N + i) * N + 4 * q;
#pragma unroll
        for (int g = 0; g < G; g++) {
            const float4 x = *(const float4 *)(s0 + 4 * K * g);
            S[4 * g] = x.x, S[4 * g + 1] = x.y, S[4 * g + 2] = x.z, S[4 * g + 3] = x.w;
        }
    } else {
#pragma unroll
        for (int e = 0; e < 4 * G; e++) S[e] = 0.f;
    }

    chunk_loader<T, 6, NT> ld;
    {
        const T *arrays[6] = {p.r, p.w, p.k, p.v, p.a, p.b};
        ld.init(arrays, base, hs, tid, IR);
    }
    ld.load(0, T_);
    float *ck = p.ckpt + ((size_t)bh * nc * N + i) * N + 4 * q;
    for (int c = 0; c < nc; c++) {
        __syncthreads();
        ld.store(sm, IW, -1);
        __syncthreads();
        if (c + 1 < nc) ld.load(c + 1, T_);
        const int len = min(CK, T_ - c * CK);
        /* sa of the chunk's first step; inside the chunk, step tt's pass over the new state computes both
         * y_tt = S r_tt and the next step's sa = S a_{tt+1}, and the two row sums share their shuffle rounds. */
        float sa;
        {
            float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
#pragma unroll
            for (int g = 0; g < G; g++) {
                const float4 av = *(const float4 *)&sm[IA][0][4 * K * g + 4 * q];
                p0 = fmaf(S[4 * g], av.x, p0), p1 = fmaf(S[4 * g + 1], av.y, p1);
                p2 = fmaf(S[4 * g + 2], av.z, p2), p3 = fmaf(S[4 * g + 3], av.w, p3);
            }
            sa = row_sum<K>((p0 + p1) + (p2 + p3));
        }
#pragma unroll 2
        for (int tt = 0; tt < len; tt++) {
            const int tn = tt + 1 < len ? tt + 1 : tt; /* the last step's "next sa" is not used */
            const float vi = sm[IV][tt][i];
            float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f, n0 = 0.f, n1 = 0.f, n2 = 0.f, n3 = 0.f;
#pragma unroll
            for (int g = 0; g < G; g++) {
                const int j = 4 * K * g + 4 * q;
                const float4 wv = *(const float4 *)&sm[IW][tt][j], bv = *(const float4 *)&sm[IB][tt][j];
                const float4 kv = *(const float4 *)&sm[IK][tt][j], rv = *(const float4 *)&sm[IR][tt][j];
                const float4 av = *(const float4 *)&sm[IA][tn][j];
                float *s = &S[4 * g];
                s[0] = fmaf(s[0], wv.x, fmaf(sa, bv.x, vi * kv.x)), p0 = fmaf(s[0], rv.x, p0), n0 = fmaf(s[0], av.x, n0);
                s[1] = fmaf(s[1], wv.y, fmaf(sa, bv.y, vi * kv.y)), p1 = fmaf(s[1], rv.y, p1), n1 = fmaf(s[1], av.y, n1);
                s[2] = fmaf(s[2], wv.z, fmaf(sa, bv.z, vi * kv.z)), p2 = fmaf(s[2], rv.z, p2), n2 = fmaf(s[2], av.z, n2);
                s[3] = fmaf(s[3], wv.w, fmaf(sa, bv.w, vi * kv.w)), p3 = fmaf(s[3], rv.w, p3), n3 = fmaf(s[3], av.w, n3);
            }
            float y = (p0 + p1) + (p2 + p3), san = (n0 + n1) + (n2 + n3);
#pragma unroll
            for (int o = 1; o < K; o <<= 1) {
                y += __shfl_xor_sync(0xffffffffu, y, o);
                san += __shfl_xor_sync(0xffffffffu, san, o);
            }
            const size_t idx = base + (size_t)(c * CK + tt) * hs + i;
            if (q == 0) io<T>::put(p.y + idx, y);
            if (q == 1 % K) p.sa[idx] = sa;
            sa = san;
        }
#pragma unroll
        for (int g = 0; g < G; g++)
            *(float4 *)(ck + (size_t)c * N * N + 4 * K * g) = make_float4(S[4 * g], S[4 * g + 1], S[4 * g + 2], S[4 * g + 3]);
    }
}

/* Tiled forward: each thread holds a 4-row x 8-column tile of the state (rows 4*rg + r, columns
 * 4*cg + 32*h + m), 128 threads a head. A value read from shared memory now serves 4 rows instead of one, which
 * matters because the row-sliced kernel is bound by shared-memory bandwidth (every float4 a lane reads costs the
 * same whether or not other lanes read it too). The 8 row sums a step needs (y and the next sa for 4 rows) are
 * reduced across the 8 threads of a row group by a reduce-scatter (4 + 2 + 1 shuffles) that leaves lane cg with
 * sum cg: lanes 0-3 hold y of rows 0-3, lanes 4-7 the next sa of rows 0-3, which 4 more shuffles broadcast. */
__device__ __forceinline__ float reduce_scatter8(const float v[8], int cg) {
    const bool b2 = cg & 4, b1 = cg & 2, b0 = cg & 1;
    float u[4], t[2];
#pragma unroll
    for (int m = 0; m < 4; m++) {
        const float send = b2 ? v[m] : v[m + 4], keep = b2 ? v[m + 4] : v[m];
        u[m] = keep + __shfl_xor_sync(0xffffffffu, send, 4);
    }
#pragma unroll
    for (int m = 0; m < 2; m++) {
        const float send = b1 ? u[m] : u[m + 2], keep = b1 ? u[m + 2] : u[m];
        t[m] = keep + __shfl_xor_sync(0xffffffffu, send, 2);
    }
    const float send = b0 ? t[0] : t[1], keep = b0 ? t[1] : t[0];
    return keep + __shfl_xor_sync(0xffffffffu, send, 1);
}

template <typename T> __global__ void __launch_bounds__(128, 1) wkv7_fwd_tiled(const fwd_args<T> p) {
    constexpr int NT = 128;
    __shared__ __align__(16) float sm[6][CK][N];
    const int tid = threadIdx.x, cg = tid & 7, rg = tid >> 3, lane = tid & 31;
    const int bh = blockIdx.x, bb = bh / p.H, hh = bh % p.H, T_ = p.nt;
    const size_t hs = (size_t)p.H * N, base = (size_t)bb * T_ * hs + (size_t)hh * N;
    const int nc = (T_ + CK - 1) / CK;

    float S[4][8]; /* S[r][4h+m] = state[4rg + r][4cg + 32h + m] */
    if (p.s0) {
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const float4 x = *(const float4 *)(p.s0 + ((size_t)bh * N + 4 * rg + r) * N + 4 * cg + 32 * h);
                S[r][4 * h] = x.x, S[r][4 * h + 1] = x.y, S[r][4 * h + 2] = x.z, S[r][4 * h + 3] = x.w;
            }
    } else {
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int e = 0; e < 8; e++) S[r][e] = 0.f;
    }

    chunk_loader<T, 6, NT> ld;
    {
        const T *arrays[6] = {p.r, p.w, p.k, p.v, p.a, p.b};
        ld.init(arrays, base, hs, tid, IR);
    }
    ld.load(0, T_);
    const int row_out = 4 * rg + (cg & 3); /* the row whose y (cg < 4) or sa (cg >= 4) this lane writes */
    for (int c = 0; c < nc; c++) {
        __syncthreads();
        ld.store(sm, IW, -1);
        __syncthreads();
        if (c + 1 < nc) ld.load(c + 1, T_);
        const int len = min(CK, T_ - c * CK);
        /* sa of the chunk's first step, in the same lane layout as inside the loop */
        float mine;
        {
            float v[8];
#pragma unroll
            for (int r = 0; r < 4; r++) {
                float acc = 0.f;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const float4 av = *(const float4 *)&sm[IA][0][4 * cg + 32 * h];
                    acc = fmaf(S[r][4 * h], av.x, acc), acc = fmaf(S[r][4 * h + 1], av.y, acc);
                    acc = fmaf(S[r][4 * h + 2], av.z, acc), acc = fmaf(S[r][4 * h + 3], av.w, acc);
                }
                v[r] = 0.f, v[r + 4] = acc;
            }
            mine = reduce_scatter8(v, cg);
        }
        for (int tt = 0; tt < len; tt++) {
            const int tn = tt + 1 < len ? tt + 1 : tt;
            float sa[4];
#pragma unroll
            for (int r = 0; r < 4; r++) sa[r] = __shfl_sync(0xffffffffu, mine, (lane & ~7) | (4 + r));
            const size_t idx = base + (size_t)(c * CK + tt) * hs + row_out;
            if (cg >= 4) p.sa[idx] = mine;
            const float4 vv = *(const float4 *)&sm[IV][tt][4 * rg];
            const float vr[4] = {vv.x, vv.y, vv.z, vv.w};
            float v[8];
#pragma unroll
            for (int e = 0; e < 8; e++) v[e] = 0.f;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int j = 4 * cg + 32 * h;
                const float4 w4 = *(const float4 *)&sm[IW][tt][j], b4 = *(const float4 *)&sm[IB][tt][j];
                const float4 k4 = *(const float4 *)&sm[IK][tt][j], r4 = *(const float4 *)&sm[IR][tt][j];
                const float4 a4 = *(const float4 *)&sm[IA][tn][j];
                const float wa[4] = {w4.x, w4.y, w4.z, w4.w}, ba[4] = {b4.x, b4.y, b4.z, b4.w};
                const float ka[4] = {k4.x, k4.y, k4.z, k4.w}, ra[4] = {r4.x, r4.y, r4.z, r4.w};
                const float aa[4] = {a4.x, a4.y, a4.z, a4.w};
#pragma unroll
                for (int r = 0; r < 4; r++)
#pragma unroll
                    for (int m = 0; m < 4; m++) {
                        float &s_ = S[r][4 * h + m];
                        s_ = fmaf(s_, wa[m], fmaf(sa[r], ba[m], vr[r] * ka[m]));
                        v[r] = fmaf(s_, ra[m], v[r]);
                        v[r + 4] = fmaf(s_, aa[m], v[r + 4]);
                    }
            }
            mine = reduce_scatter8(v, cg); /* cg < 4: y of row_out; cg >= 4: next sa of row_out */
            if (cg < 4) io<T>::put(p.y + idx, mine); /* lanes 4-7 keep theirs for the next step */
        }
        float *ck = p.ckpt + ((size_t)bh * nc + c) * N * N;
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                *(float4 *)(ck + (4 * rg + r) * N + 4 * cg + 32 * h) =
                    make_float4(S[r][4 * h], S[r][4 * h + 1], S[r][4 * h + 2], S[r][4 * h + 3]);
    }
}

template <typename T, int K> __global__ void __launch_bounds__(64 * K, 1) wkv7_bwd(const bwd_args<T> p) {
    constexpr int NT = 64 * K, G = N / K / 4, E = 4 * G;
    __shared__ __align__(16) float sm[9][CK][N];
    __shared__ float dsa_s[2][N];
    const int tid = threadIdx.x, q = tid % K, i = tid / K;
    const int bh = blockIdx.x, bb = bh / p.H, hh = bh % p.H, T_ = p.nt;
    const size_t hs = (size_t)p.H * N, base = (size_t)bb * T_ * hs + (size_t)hh * N;
    const int nc = (T_ + CK - 1) / CK;

    /* For e = 4g+m the column is j = 4Kg + 4q + m. */
    float Sc[E], dSc[E], dSr[E], ckn[E];
    if (p.dsT) {
        const float *d = p.dsT + (size_t)bh * N * N;
#pragma unroll
        for (int g = 0; g < G; g++) {
            const int j = 4 * K * g + 4 * q;
            const float4 x = *(const float4 *)(d + i * N + j);
            dSr[4 * g] = x.x, dSr[4 * g + 1] = x.y, dSr[4 * g + 2] = x.z, dSr[4 * g + 3] = x.w;
#pragma unroll
            for (int m = 0; m < 4; m++) dSc[4 * g + m] = d[(j + m) * N + i];
        }
    } else {
#pragma unroll
        for (int e = 0; e < E; e++) dSr[e] = dSc[e] = 0.f;
    }

    chunk_loader<T, 7, NT> ld;
    chunk_loader<float, 1, NT> lsa;
    {
        const T *arrays[7] = {p.r, p.w, p.k, p.v, p.a, p.b, p.dy};
        ld.init(arrays, base, hs, tid, IR);
        const float *sa_arr[1] = {p.sa};
        lsa.init(sa_arr, base, hs, tid, ISA);
    }
    const float *ckb = p.ckpt + (size_t)bh * nc * N * N + i;
    auto load_ckpt = [&](int c) {
#pragma unroll
        for (int g = 0; g < G; g++)
#pragma unroll
            for (int m = 0; m < 4; m++) ckn[4 * g + m] = ckb[((size_t)c * N + 4 * K * g + 4 * q + m) * N];
    };
    ld.load(nc - 1, T_);
    lsa.load(nc - 1, T_);
    load_ckpt(nc - 1);

    for (int c = nc - 1; c >= 0; c--) {
        __syncthreads();
        ld.store(sm, IW, IEW);
        lsa.store(sm, -1, -1);
#pragma unroll
        for (int e = 0; e < E; e++) Sc[e] = ckn[e];
        __syncthreads();
        if (c > 0) {
            ld.load(c - 1, T_);
            lsa.load(c - 1, T_);
            load_ckpt(c - 1);
        }
        const int len = min(CK, T_ - c * CK);
        for (int tt = len - 1; tt >= 0; tt--) {
            const int t = c * CK + tt;
            const float ri = sm[IR][tt][i], wi = sm[IW][tt][i], ki = sm[IK][tt][i], ai = sm[IA][tt][i];
            const float bi = sm[IB][tt][i], dyi = sm[IDY][tt][i], ewi = sm[IEW][tt][i];
            const float iw = 1.0f / wi;
            /* dr_i = sum_j S_t[j][i] dy_j, then S_t -> S_{t-1}, then dS += dy r^T. */
            float dr = 0.f, dw = 0.f, dk = 0.f, db = 0.f, dv = 0.f, dsa = 0.f;
#pragma unroll
            for (int g = 0; g < G; g++) {
                const int j = 4 * K * g + 4 * q;
                const float4 dyv = *(const float4 *)&sm[IDY][tt][j], vv = *(const float4 *)&sm[IV][tt][j];
                const float4 sav = *(const float4 *)&sm[ISA][tt][j], rv = *(const float4 *)&sm[IR][tt][j];
                const float4 kv = *(const float4 *)&sm[IK][tt][j], bv = *(const float4 *)&sm[IB][tt][j];
                const float dya[4] = {dyv.x, dyv.y, dyv.z, dyv.w}, va[4] = {vv.x, vv.y, vv.z, vv.w};
                const float saa[4] = {sav.x, sav.y, sav.z, sav.w}, ra[4] = {rv.x, rv.y, rv.z, rv.w};
                const float ka[4] = {kv.x, kv.y, kv.z, kv.w}, ba[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
                for (int m = 0; m < 4; m++) {
                    const int e = 4 * g + m;
                    dr = fmaf(Sc[e], dya[m], dr);
                    Sc[e] = fmaf(-saa[m], bi, fmaf(-va[m], ki, Sc[e])) * iw;
                    dSr[e] = fmaf(dyi, ra[m], dSr[e]);
                    dSc[e] = fmaf(dya[m], ri, dSc[e]);
                    dw = fmaf(dSc[e], Sc[e], dw);
                    dk = fmaf(dSc[e], va[m], dk);
                    db = fmaf(dSc[e], saa[m], db);
                    dv = fmaf(dSr[e], ka[m], dv);
                    dsa = fmaf(dSr[e], ba[m], dsa);
                }
            }
            dsa = row_sum<K>(dsa);
            if (q == 0) dsa_s[t & 1][i] = dsa;
            dr = row_sum<K>(dr), dw = row_sum<K>(dw), dk = row_sum<K>(dk);
            db = row_sum<K>(db), dv = row_sum<K>(dv);
            __syncthreads();
            float da = 0.f;
#pragma unroll
            for (int g = 0; g < G; g++) {
                const int j = 4 * K * g + 4 * q;
                const float4 dsv = *(const float4 *)&dsa_s[t & 1][j], wv = *(const float4 *)&sm[IW][tt][j];
                const float4 av = *(const float4 *)&sm[IA][tt][j];
                const float dsb[4] = {dsv.x, dsv.y, dsv.z, dsv.w}, wa[4] = {wv.x, wv.y, wv.z, wv.w};
                const float aa[4] = {av.x, av.y, av.z, av.w};
#pragma unroll
                for (int m = 0; m < 4; m++) {
                    const int e = 4 * g + m;
                    da = fmaf(Sc[e], dsb[m], da);
                    dSr[e] = fmaf(dSr[e], wa[m], dsa * aa[m]);
                    dSc[e] = fmaf(dSc[e], wi, dsb[m] * ai);
                }
            }
            da = row_sum<K>(da);
            const size_t idx = base + (size_t)t * hs + i;
            if (q == 0 % K) io<T>::put(p.dr + idx, dr);
            if (q == 1 % K) io<T>::put(p.dw + idx, dw * wi * ewi);
            if (q == 2 % K) io<T>::put(p.dk + idx, dk);
            if (q == 3 % K) io<T>::put(p.dv + idx, dv);
            if (q == 4 % K) io<T>::put(p.da + idx, da);
            if (q == 5 % K) io<T>::put(p.db + idx, db);
        }
    }
    if (p.ds0) {
        float *d = p.ds0 + ((size_t)bh * N + i) * N + 4 * q;
#pragma unroll
        for (int g = 0; g < G; g++)
            *(float4 *)(d + 4 * K * g) = make_float4(dSr[4 * g], dSr[4 * g + 1], dSr[4 * g + 2], dSr[4 * g + 3]);
    }
}

/* Measured on an H100 (docs/CUDA.md): the tiled forward, and 2 threads per row for the backward. */
/* Reduce-scatter of V values (V a multiple of 8) over the 8 lanes of a group (lane bits b2 b1 b0 = cg): lane cg
 * ends with the full sums of values (V/8)*cg .. (V/8)*cg + V/8 - 1. */
template <int V> __device__ __forceinline__ void reduce_scatter8v(const float *v, bool b2, bool b1, bool b0, float *out) {
    float u[V / 2], w[V / 4];
#pragma unroll
    for (int m = 0; m < V / 2; m++) {
        const float send = b2 ? v[m] : v[m + V / 2], keep = b2 ? v[m + V / 2] : v[m];
        u[m] = keep + __shfl_xor_sync(0xffffffffu, send, 4);
    }
#pragma unroll
    for (int m = 0; m < V / 4; m++) {
        const float send = b1 ? u[m] : u[m + V / 4], keep = b1 ? u[m + V / 4] : u[m];
        w[m] = keep + __shfl_xor_sync(0xffffffffu, send, 2);
    }
#pragma unroll
    for (int m = 0; m < V / 8; m++) {
        const float send = b0 ? w[m] : w[m + V / 8], keep = b0 ? w[m + V / 8] : w[m];
        out[m] = keep + __shfl_xor_sync(0xffffffffu, send, 1);
    }
}

/* Tiled backward: 128 threads a head; thread (ig, cg) owns the indices i = 4*ig + r (r < 4) and the columns
 * j = 4*cg + 32*h + m (h < 2, m < 4): for each, S[j][i], dS[j][i] and dS[i][j]. A value read from shared memory
 * serves 4 indices, a quarter of the row-sliced kernel's traffic. The 24 sums of phase A (dr, dw, dk, db, dv, dsa
 * for 4 indices) are reduce-scattered over the 8 threads of a group (12 + 6 + 3 shuffles), da's 4 with 4 more.
 * The checkpoint of the next chunk is staged into shared memory with cp.async (no registers held).
 * Measured on an H100 (docs/CUDA.md): correct, but 11% slower than the K = 2 row-sliced backward (more shuffle and
 * select instructions than the shared-memory loads it saves), so it is a variant, not the default. */
constexpr int BWD_TILED_SLOTS = 10; /* IR..IEW, plus IIW = 1/decay */
constexpr int IIW = 9;
constexpr size_t BWD_TILED_SMEM = (size_t)(BWD_TILED_SLOTS * CK * N + N * N + 2 * N) * sizeof(float);

template <typename T> __global__ void __launch_bounds__(128, 1) wkv7_bwd_tiled(const bwd_args<T> p) {
    constexpr int NT = 128;
    extern __shared__ __align__(16) float dyn[];
    float(*sm)[CK][N] = reinterpret_cast<float(*)[CK][N]>(dyn);
    float *ckbuf = dyn + BWD_TILED_SLOTS * CK * N; /* [N][N]: S[row][col] of the checkpoint */
    float(*dsa_s)[N] = reinterpret_cast<float(*)[N]>(ckbuf + N * N);
    const int tid = threadIdx.x, cg = tid & 7, ig = tid >> 3;
    const bool b2 = cg & 4, b1 = cg & 2, b0 = cg & 1;
    const int bh = blockIdx.x, bb = bh / p.H, hh = bh % p.H, T_ = p.nt;
    const size_t hs = (size_t)p.H * N, base = (size_t)bb * T_ * hs + (size_t)hh * N;
    const int nc = (T_ + CK - 1) / CK;

    float Sc[4][8], dSc[4][8], dSr[4][8]; /* [r][4h+m]: S[j][i], dS[j][i], dS[i][j] */
    if (p.dsT) {
        const float *d = p.dsT + (size_t)bh * N * N;
#pragma unroll
        for (int h = 0; h < 2; h++) {
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const float4 x = *(const float4 *)(d + (4 * ig + r) * N + 4 * cg + 32 * h);
                dSr[r][4 * h] = x.x, dSr[r][4 * h + 1] = x.y, dSr[r][4 * h + 2] = x.z, dSr[r][4 * h + 3] = x.w;
            }
#pragma unroll
            for (int m = 0; m < 4; m++) {
                const float4 x = *(const float4 *)(d + (4 * cg + 32 * h + m) * N + 4 * ig);
                dSc[0][4 * h + m] = x.x, dSc[1][4 * h + m] = x.y, dSc[2][4 * h + m] = x.z, dSc[3][4 * h + m] = x.w;
            }
        }
    } else {
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int e = 0; e < 8; e++) dSr[r][e] = dSc[r][e] = 0.f;
    }

    chunk_loader<T, 7, NT> ld;
    chunk_loader<float, 1, NT> lsa;
    {
        const T *arrays[7] = {p.r, p.w, p.k, p.v, p.a, p.b, p.dy};
        ld.init(arrays, base, hs, tid, IR);
        const float *sa_arr[1] = {p.sa};
        lsa.init(sa_arr, base, hs, tid, ISA);
    }
    const float *ckg = p.ckpt + (size_t)bh * nc * N * N;
    auto stage_ckpt = [&](int c) {
        const float *src = ckg + (size_t)c * N * N;
#pragma unroll
        for (int s = 0; s < N * N / 4 / NT; s++) {
            const int v = tid + s * NT;
            __pipeline_memcpy_async(ckbuf + 4 * v, src + 4 * v, 16);
        }
        __pipeline_commit();
    };
    /* After the reduce-scatter lane cg holds sums 3cg..3cg+2 of red[24] (red[4q + r], quantities q = dr, dw, dk,
     * db, dv, dsa): where each goes. */
    T *outp[3];
    int outr[3];
#pragma unroll
    for (int k = 0; k < 3; k++) {
        const int sl = 3 * cg + k, q = sl >> 2;
        outr[k] = 4 * ig + (sl & 3);
        outp[k] = q == 0 ? p.dr : q == 1 ? p.dw : q == 2 ? p.dk : q == 3 ? p.db : q == 4 ? p.dv : nullptr;
    }
    ld.load(nc - 1, T_);
    lsa.load(nc - 1, T_);
    stage_ckpt(nc - 1);

    for (int c = nc - 1; c >= 0; c--) {
        __syncthreads();
        ld.store(sm, IW, IEW);
        lsa.store(sm, -1, -1);
        __pipeline_wait_prior(0);
        __syncthreads();
        /* 1/decay for the inversion, and the checkpoint into registers */
        for (int e = tid; e < CK * N; e += NT) (&sm[IIW][0][0])[e] = expf(-(&sm[IEW][0][0])[e]);
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int m = 0; m < 4; m++) {
                const float4 x = *(const float4 *)(ckbuf + (4 * cg + 32 * h + m) * N + 4 * ig);
                Sc[0][4 * h + m] = x.x, Sc[1][4 * h + m] = x.y, Sc[2][4 * h + m] = x.z, Sc[3][4 * h + m] = x.w;
            }
        __syncthreads();
        if (c > 0) {
            ld.load(c - 1, T_);
            lsa.load(c - 1, T_);
            stage_ckpt(c - 1);
        }
        const int len = min(CK, T_ - c * CK);
        for (int tt = len - 1; tt >= 0; tt--) {
            const int t = c * CK + tt;
            float ri[4], dyi[4], ki[4], bi[4], wi[4], ai[4], ewi[4], iwi[4];
            {
                const int i0 = 4 * ig;
                const float4 r4 = *(const float4 *)&sm[IR][tt][i0], d4 = *(const float4 *)&sm[IDY][tt][i0];
                const float4 k4 = *(const float4 *)&sm[IK][tt][i0], b4 = *(const float4 *)&sm[IB][tt][i0];
                const float4 w4 = *(const float4 *)&sm[IW][tt][i0], a4 = *(const float4 *)&sm[IA][tt][i0];
                const float4 e4 = *(const float4 *)&sm[IEW][tt][i0], q4 = *(const float4 *)&sm[IIW][tt][i0];
                ri[0] = r4.x, ri[1] = r4.y, ri[2] = r4.z, ri[3] = r4.w;
                dyi[0] = d4.x, dyi[1] = d4.y, dyi[2] = d4.z, dyi[3] = d4.w;
                ki[0] = k4.x, ki[1] = k4.y, ki[2] = k4.z, ki[3] = k4.w;
                bi[0] = b4.x, bi[1] = b4.y, bi[2] = b4.z, bi[3] = b4.w;
                wi[0] = w4.x, wi[1] = w4.y, wi[2] = w4.z, wi[3] = w4.w;
                ai[0] = a4.x, ai[1] = a4.y, ai[2] = a4.z, ai[3] = a4.w;
                ewi[0] = e4.x, ewi[1] = e4.y, ewi[2] = e4.z, ewi[3] = e4.w;
                iwi[0] = q4.x, iwi[1] = q4.y, iwi[2] = q4.z, iwi[3] = q4.w;
            }
            float red[24];
#pragma unroll
            for (int x = 0; x < 24; x++) red[x] = 0.f;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int j = 4 * cg + 32 * h;
                const float4 dy4 = *(const float4 *)&sm[IDY][tt][j], v4 = *(const float4 *)&sm[IV][tt][j];
                const float4 sa4 = *(const float4 *)&sm[ISA][tt][j], r4 = *(const float4 *)&sm[IR][tt][j];
                const float4 k4 = *(const float4 *)&sm[IK][tt][j], b4 = *(const float4 *)&sm[IB][tt][j];
                const float dyj[4] = {dy4.x, dy4.y, dy4.z, dy4.w}, vj[4] = {v4.x, v4.y, v4.z, v4.w};
                const float saj[4] = {sa4.x, sa4.y, sa4.z, sa4.w}, rj[4] = {r4.x, r4.y, r4.z, r4.w};
                const float kj[4] = {k4.x, k4.y, k4.z, k4.w}, bj[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
                for (int m = 0; m < 4; m++)
#pragma unroll
                    for (int r = 0; r < 4; r++) {
                        const int e = 4 * h + m;
                        red[r] = fmaf(Sc[r][e], dyj[m], red[r]);
                        Sc[r][e] = fmaf(-saj[m], bi[r], fmaf(-vj[m], ki[r], Sc[r][e])) * iwi[r];
                        dSr[r][e] = fmaf(dyi[r], rj[m], dSr[r][e]);
                        dSc[r][e] = fmaf(dyj[m], ri[r], dSc[r][e]);
                        red[4 + r] = fmaf(dSc[r][e], Sc[r][e], red[4 + r]);
                        red[8 + r] = fmaf(dSc[r][e], vj[m], red[8 + r]);
                        red[12 + r] = fmaf(dSc[r][e], saj[m], red[12 + r]);
                        red[16 + r] = fmaf(dSr[r][e], kj[m], red[16 + r]);
                        red[20 + r] = fmaf(dSr[r][e], bj[m], red[20 + r]);
                    }
            }
#pragma unroll
            for (int r = 0; r < 4; r++) red[4 + r] *= wi[r] * ewi[r]; /* d decay / d w = decay * -exp(w) */
            float mine[3];
            reduce_scatter8v<24>(red, b2, b1, b0, mine);
#pragma unroll
            for (int k = 0; k < 3; k++)
                if (3 * cg + k >= 20) dsa_s[t & 1][4 * ig + 3 * cg + k - 20] = mine[k];
            __syncthreads();
            const float4 ds4 = *(const float4 *)&dsa_s[t & 1][4 * ig];
            const float dsi[4] = {ds4.x, ds4.y, ds4.z, ds4.w};
            float da[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int j = 4 * cg + 32 * h;
                const float4 dj4 = *(const float4 *)&dsa_s[t & 1][j], w4 = *(const float4 *)&sm[IW][tt][j];
                const float4 a4 = *(const float4 *)&sm[IA][tt][j];
                const float dsj[4] = {dj4.x, dj4.y, dj4.z, dj4.w}, wj[4] = {w4.x, w4.y, w4.z, w4.w};
                const float aj[4] = {a4.x, a4.y, a4.z, a4.w};
#pragma unroll
                for (int m = 0; m < 4; m++)
#pragma unroll
                    for (int r = 0; r < 4; r++) {
                        const int e = 4 * h + m;
                        da[r] = fmaf(Sc[r][e], dsj[m], da[r]);
                        dSr[r][e] = fmaf(dSr[r][e], wj[m], dsi[r] * aj[m]);
                        dSc[r][e] = fmaf(dSc[r][e], wi[r], dsj[m] * ai[r]);
                    }
            }
            /* da of 4 indices over 8 lanes: lane ends with index 2*b2 + b1 (pairs b0 = 0/1 agree) */
            float k0 = (b2 ? da[2] : da[0]) + __shfl_xor_sync(0xffffffffu, b2 ? da[0] : da[2], 4);
            float k1 = (b2 ? da[3] : da[1]) + __shfl_xor_sync(0xffffffffu, b2 ? da[1] : da[3], 4);
            float dav = (b1 ? k1 : k0) + __shfl_xor_sync(0xffffffffu, b1 ? k0 : k1, 2);
            dav += __shfl_xor_sync(0xffffffffu, dav, 1);
            const size_t it = base + (size_t)t * hs;
#pragma unroll
            for (int k = 0; k < 3; k++)
                if (outp[k]) io<T>::put(outp[k] + it + outr[k], mine[k]);
            if (!b0) io<T>::put(p.da + it + 4 * ig + 2 * b2 + b1, dav);
        }
    }
    if (p.ds0) {
        float *d = p.ds0 + (size_t)bh * N * N;
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                *(float4 *)(d + (4 * ig + r) * N + 4 * cg + 32 * h) =
                    make_float4(dSr[r][4 * h], dSr[r][4 * h + 1], dSr[r][4 * h + 2], dSr[r][4 * h + 3]);
    }
}

constexpr int DEFAULT_K_FWD = 1, DEFAULT_K_BWD = 2;

bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

mrw_status check_shape(int B, int T, int H, mrw_error *err) {
    if (B < 1 || T < 1 || H < 1) return mrw_err(err, MRW_E_ARG, "wkv7 (cuda): bad shape B=%d T=%d H=%d", B, T, H);
    if ((long long)B * H > 0x7fffffffLL) return mrw_err(err, MRW_E_ARG, "wkv7 (cuda): B*H too large");
    return MRW_OK;
}

mrw_status check_ptrs(const char *what, const void *const *ptrs, const char *const *names, int n, mrw_error *err) {
    for (int i = 0; i < n; i++) {
        if (!ptrs[i]) return mrw_err(err, MRW_E_ARG, "wkv7 %s (cuda): tensor %s is NULL", what, names[i]);
        if (!aligned16(ptrs[i]))
            return mrw_err(err, MRW_E_ARG, "wkv7 %s (cuda): tensor %s is not 16-byte aligned", what, names[i]);
    }
    return MRW_OK;
}

mrw_status launched(const char *what, mrw_error *err) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return mrw_err(err, MRW_E_INTERNAL, "wkv7 %s (cuda): launch failed: %s", what, cudaGetErrorString(e));
    return MRW_OK;
}

template <typename T> mrw_status fwd_launch(int K, int B, int H, const fwd_args<T> &a, cudaStream_t st, mrw_error *err) {
    const dim3 grid(B * H);
    switch (K) {
    case 1: wkv7_fwd_tiled<T><<<grid, 128, 0, st>>>(a); break;
    case 2: wkv7_fwd<T, 2><<<grid, 128, 0, st>>>(a); break;
    case 4: wkv7_fwd<T, 4><<<grid, 256, 0, st>>>(a); break;
    case 8: wkv7_fwd<T, 8><<<grid, 512, 0, st>>>(a); break;
    default: return mrw_err(err, MRW_E_ARG, "wkv7 forward (cuda): variant %d (1, 2, 4, 8, 16 or 17)", K);
    }
    return launched("forward", err);
}

template <typename T> mrw_status bwd_launch(int K, int B, int H, const bwd_args<T> &a, cudaStream_t st, mrw_error *err) {
    const dim3 grid(B * H);
    switch (K) {
    case 1: {
        const cudaError_t e = cudaFuncSetAttribute(wkv7_bwd_tiled<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)BWD_TILED_SMEM);
        if (e != cudaSuccess)
            return mrw_err(err, MRW_E_INTERNAL, "wkv7 backward (cuda): %zu bytes of shared memory: %s", BWD_TILED_SMEM,
                           cudaGetErrorString(e));
        wkv7_bwd_tiled<T><<<grid, 128, BWD_TILED_SMEM, st>>>(a);
        break;
    }
    case 2: wkv7_bwd<T, 2><<<grid, 128, 0, st>>>(a); break;
    case 4: wkv7_bwd<T, 4><<<grid, 256, 0, st>>>(a); break;
    case 8: wkv7_bwd<T, 8><<<grid, 512, 0, st>>>(a); break;
    default: return mrw_err(err, MRW_E_ARG, "wkv7 backward (cuda): variant %d (1, 2, 4, 8, 16 or 17)", K);
    }
    return launched("backward", err);
}

} // namespace

extern "C" size_t mrw_cuda_wkv7_ckpt_floats(int B, int T, int H) {
    return (size_t)B * H * ((T + CK - 1) / CK) * N * N;
}

extern "C" size_t mrw_cuda_wkv7_sa_floats(int B, int T, int H) { return (size_t)B * T * H * N; }

extern "C" mrw_status mrw_cuda_wkv7_forward_ex(mrw_cuda_dtype dt, int B, int T, int H, const void *r, const void *w,
                                               const void *k, const void *v, const void *a, const void *b,
                                               const float *s0, void *y, float *ckpt, float *sa, void *stream,
                                               int variant, mrw_error *err) {
    mrw_status s = check_shape(B, T, H, err);
    if (s) return s;
    const void *ptrs[] = {r, w, k, v, a, b, y, ckpt, sa};
    const char *names[] = {"r", "w", "k", "v", "a", "b", "y", "ckpt", "sa"};
    if ((s = check_ptrs("forward", ptrs, names, 9, err))) return s;
    if (s0 && !aligned16(s0)) return mrw_err(err, MRW_E_ARG, "wkv7 forward (cuda): s0 is not 16-byte aligned");
    const int K = variant ? variant : DEFAULT_K_FWD;
    if (K == MRW_WKV7_CHUNKED || K == MRW_WKV7_CHUNKED3) {
        if (dt != MRW_CUDA_F32 && dt != MRW_CUDA_BF16)
            return mrw_err(err, MRW_E_UNSUPPORTED, "wkv7 forward (cuda): dtype %d", (int)dt);
        return mrw_cuda_wkv7_chunk_fwd_launch(dt, B, T, H, r, w, k, v, a, b, s0, y, ckpt, sa, stream, err);
    }
    cudaStream_t st = (cudaStream_t)stream;
    if (dt == MRW_CUDA_F32) {
        fwd_args<float> p = {(const float *)r, (const float *)w, (const float *)k, (const float *)v, (const float *)a,
                             (const float *)b, s0, (float *)y, ckpt, sa, T, H};
        return fwd_launch(K, B, H, p, st, err);
    }
    if (dt == MRW_CUDA_BF16) {
        fwd_args<bf16> p = {(const bf16 *)r, (const bf16 *)w, (const bf16 *)k, (const bf16 *)v, (const bf16 *)a,
                            (const bf16 *)b, s0, (bf16 *)y, ckpt, sa, T, H};
        return fwd_launch(K, B, H, p, st, err);
    }
    return mrw_err(err, MRW_E_UNSUPPORTED, "wkv7 forward (cuda): dtype %d", (int)dt);
}

extern "C" mrw_status mrw_cuda_wkv7_forward(mrw_cuda_dtype dt, int B, int T, int H, const void *r, const void *w,
                                            const void *k, const void *v, const void *a, const void *b,
                                            const float *s0, void *y, float *ckpt, float *sa, void *stream,
                                            mrw_error *err) {
    return mrw_cuda_wkv7_forward_ex(dt, B, T, H, r, w, k, v, a, b, s0, y, ckpt, sa, stream, 0, err);
}

extern "C" mrw_status mrw_cuda_wkv7_backward_ex(mrw_cuda_dtype dt, int B, int T, int H, const void *r,
                                                const void *w, const void *k, const void *v, const void *a,
                                                const void *b, const void *dy, const float *ds_T, const float *ckpt,
                                                const float *sa, void *dr, void *dw, void *dk, void *dv, void *da,
                                                void *db, float *ds0, void *stream, int variant,
                                                mrw_error *err) {
    return mrw_cuda_wkv7_backward_s0(dt, B, T, H, r, w, k, v, a, b, dy, NULL, ds_T, ckpt, sa, dr, dw, dk, dv, da, db,
                                     ds0, stream, variant, err);
}

extern "C" mrw_status mrw_cuda_wkv7_backward_s0(mrw_cuda_dtype dt, int B, int T, int H, const void *r,
                                                const void *w, const void *k, const void *v, const void *a,
                                                const void *b, const void *dy, const float *s0, const float *ds_T,
                                                const float *ckpt, const float *sa, void *dr, void *dw, void *dk,
                                                void *dv, void *da, void *db, float *ds0, void *stream,
                                                int variant, mrw_error *err) {
    mrw_status s = check_shape(B, T, H, err);
    if (s) return s;
    const void *ptrs[] = {r, w, k, v, a, b, dy, ckpt, sa, dr, dw, dk, dv, da, db};
    const char *names[] = {"r", "w", "k", "v", "a", "b", "dy", "ckpt", "sa", "dr", "dw", "dk", "dv", "da", "db"};
    if ((s = check_ptrs("backward", ptrs, names, 15, err))) return s;
    if ((ds_T && !aligned16(ds_T)) || (ds0 && !aligned16(ds0)))
        return mrw_err(err, MRW_E_ARG, "wkv7 backward (cuda): ds_T / ds0 not 16-byte aligned");
    if (s0 && !aligned16(s0)) return mrw_err(err, MRW_E_ARG, "wkv7 backward (cuda): s0 not 16-byte aligned");
    const int K = variant ? variant : DEFAULT_K_BWD;
    if (K == MRW_WKV7_CHUNKED || K == MRW_WKV7_CHUNKED3) {
        if (dt != MRW_CUDA_F32 && dt != MRW_CUDA_BF16)
            return mrw_err(err, MRW_E_UNSUPPORTED, "wkv7 backward (cuda): dtype %d", (int)dt);
        return mrw_cuda_wkv7_chunk_bwd_launch(dt, B, T, H, r, w, k, v, a, b, dy, s0, ds_T, ckpt, sa, dr, dw, dk, dv,
                                              da, db, ds0, K == MRW_WKV7_CHUNKED3 ? 3 : 0, stream, err);
    }
    cudaStream_t st = (cudaStream_t)stream;
    if (dt == MRW_CUDA_F32) {
        typedef float F;
        bwd_args<F> p = {(const F *)r, (const F *)w, (const F *)k, (const F *)v, (const F *)a, (const F *)b,
                         (const F *)dy, ds_T, ckpt, sa, (F *)dr, (F *)dw, (F *)dk, (F *)dv, (F *)da, (F *)db, ds0,
                         T, H};
        return bwd_launch(K, B, H, p, st, err);
    }
    if (dt == MRW_CUDA_BF16) {
        typedef bf16 F;
        bwd_args<F> p = {(const F *)r, (const F *)w, (const F *)k, (const F *)v, (const F *)a, (const F *)b,
                         (const F *)dy, ds_T, ckpt, sa, (F *)dr, (F *)dw, (F *)dk, (F *)dv, (F *)da, (F *)db, ds0,
                         T, H};
        return bwd_launch(K, B, H, p, st, err);
    }
    return mrw_err(err, MRW_E_UNSUPPORTED, "wkv7 backward (cuda): dtype %d", (int)dt);
}

extern "C" mrw_status mrw_cuda_wkv7_backward(mrw_cuda_dtype dt, int B, int T, int H, const void *r, const void *w,
                                             const void *k, const void *v, const void *a, const void *b,
                                             const void *dy, const float *ds_T, const float *ckpt, const float *sa,
                                             void *dr, void *dw, void *dk, void *dv, void *da, void *db, float *ds0,
                                             void *stream, mrw_error *err) {
    return mrw_cuda_wkv7_backward_ex(dt, B, T, H, r, w, k, v, a, b, dy, ds_T, ckpt, sa, dr, dw, dk, dv, da, db, ds0,
                                     stream, 0, err);
}
