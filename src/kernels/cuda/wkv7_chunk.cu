/* Chunked WKV7 forward and backward on tensor cores (variant MRW_WKV7_CHUNKED of wkv7.h's _ex calls).
 * The derivation, checked in float64 against the step-by-step recurrence: tests/reference/wkv7_chunked_ref.py.
 * Design and measurements: docs/CUDA.md ("The chunked kernels").
 *
 * One thread block (4 warps) per (batch row, head) walks the chunks of CK = 16 steps in order (forward) or in
 * reverse (backward); everything lives in shared memory in fp32. Per chunk, with c_t the cumulative log decay
 * (per key column j) inside the chunk, the rows of the L x N matrices being the chunk's steps:
 *     Atr = A e^{c_{t-1}}, Rtr = R e^{c_t}, Bh = B e^{-c_t}, Kh = K e^{-c_t}, Bbar = B e^{c_L - c_t}, Kbar = ...
 *     M_ab = strict_tril(Atr Bh^T), M_ak = strict_tril(Atr Kh^T), M_rb = tril(Rtr Bh^T), M_rk = tril(Rtr Kh^T)
 *     SA = (I - M_ab)^{-1} (Atr S0^T + M_ak V);  Y = Rtr S0^T + M_rb SA + M_rk V
 *     S_L = S0 diag(e^{c_L}) + SA^T Bbar + V^T Kbar
 * Each product term of the L x L matrices is a_j b_j e^{c_{t-1,j} - c_{s,j}} (s < t) computed as the fp32 product
 * of e^{c_{t-1}} and e^{-c_s}, each from exp() of a cumulative log decay (never a running product); with
 * log-decays >= -0.6065 a step, e^{-c} <= e^{9.7} inside a 16-step chunk, far inside fp32's range.
 * Every matrix product (the 64-wide ones with the state: Atr S0^T, Rtr S0^T, SA^T Bbar + V^T Kbar and the
 * backward's; the L x L ones: the four M, M_ak V, M_rb SA, ... and the backward's dM) runs on the tensor cores as
 * TF32 mma.sync m16n8k8 with fp32 accumulation, operands read from shared memory: the state itself stays fp32
 * (only the operands are rounded). For fp32 tensors the products use the 3xTF32 split (a = hi + lo;
 * hi*hi + hi*lo + lo*hi), about fp32 accuracy; for bf16 tensors one TF32 product (operands to 2^-11, below the
 * bf16 outputs' 2^-9). The unit-triangular solves (I - M_ab)^{-1} and the decay chain run on the CUDA cores.
 * Warp w owns the state rows / columns [16w, 16w+16) of every 64-wide product, so most phases need no block
 * barrier (forward 3 a chunk, backward 5).
 * The forward writes the same checkpoints (state after each chunk) and sa as wkv7.cu's kernels, so the step
 * backwards can follow it in fp32 (in bf16 its TF32-rounded checkpoints are not accurate enough for their
 * inversion: use the chunked backward); the chunked backward restarts every chunk from the exact checkpoint (no
 * inversion of the update) and follows any forward. Two backward kernels: wkv7_bwd_chunk2 (106 KB of shared
 * memory, 2 blocks per SM) and wkv7_bwd_chunk3 (74.5 KB, <= 168 registers, S0 in registers: 3 per SM), picked by
 * the shape (chunk3 when B H > 2 SMs); variant MRW_WKV7_CHUNKED3 forces chunk3. Both come in two shared-memory
 * layouts (bwd2_layout): v2, the default, with fewer bank conflicts, and v1, the layout before; MRW_WKV7_BWD=1 in
 * the environment picks v1. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

extern "C" {
#include "base/error.h"
#include "kernels/cuda/wkv7.h"
}

namespace {

constexpr int N = MRW_WKV7_N, CK = MRW_WKV7_CHUNK, NT = 128;
constexpr int SP = 68;                       /* row stride (floats) of the [CK][N] chunk arrays */
constexpr int SS = 68;                       /* row stride of the [N][N] state arrays */
constexpr int CA = CK * SP, SA_ = N * SS, MS = 17, MA = CK * MS;

typedef __nv_bfloat16 bf16;

template <typename T> struct cio;
template <> struct cio<float> {
    static __device__ __forceinline__ void unpack(uint4 u, float *f) {
        f[0] = __uint_as_float(u.x), f[1] = __uint_as_float(u.y), f[2] = __uint_as_float(u.z),
        f[3] = __uint_as_float(u.w);
    }
    static __device__ __forceinline__ void put(float *p, float x) { *p = x; }
};
template <> struct cio<bf16> {
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

/* Chunk staging: NA arrays [B][T][H][N] of type T -> shared [NA][CK][SP] fp32, prefetched one chunk ahead in
 * registers. Steps past T load as zero; array `wslot` holds log-space decays and is stored as lw = -exp(w)
 * (0 on steps past T: decay 1, so a short last chunk leaves the state as its last real step left it). */
template <typename T, int NA, bool SWZ = false> struct cloader {
    static constexpr int VE = 16 / sizeof(T), VPA = CK * N / VE, SLOTS = NA * VPA / NT;
    static_assert(NA * VPA % NT == 0 && VPA % NT == 0, "slots");
    /* slot s: array (s NT) / VPA, element e0 = ((s NT) % VPA + tid) VE of the chunk (step e0 / N, column e0 % N);
     * recomputed from threadIdx.x at each use and the array pointers taken from the kernel's parameters, so the
     * loader keeps nothing but its buffers in registers */
    uint4 buf[SLOTS];
    size_t base, hs;
    __device__ __forceinline__ void init(size_t base_, size_t hs_) { base = base_, hs = hs_; }
    __device__ __forceinline__ void load(const T *const (&arrays)[NA], int c, int T_) {
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            const int a = s * NT / VPA, e0 = (s * NT % VPA + (int)threadIdx.x) * VE, t = e0 / N, n = e0 % N;
            buf[s] = make_uint4(0, 0, 0, 0);
            if (c * CK + t < T_) buf[s] = *(const uint4 *)(arrays[a] + base + (size_t)(c * CK + t) * hs + n);
        }
    }
    __device__ __forceinline__ void store(float *sm, int wslot, int c, int T_) {
#pragma unroll
        for (int s = 0; s < SLOTS; s++) {
            const int a = s * NT / VPA, e0 = (s * NT % VPA + (int)threadIdx.x) * VE, t = e0 / N, n = e0 % N;
            float f[VE];
            cio<T>::unpack(buf[s], f);
            if (a == wslot) {
                const bool ok = c * CK + t < T_;
#pragma unroll
                for (int e = 0; e < VE; e++) f[e] = ok ? -expf(f[e]) : 0.f;
            }
            if constexpr (SWZ && VE == 8) {
                /* 8 columns a lane, 8 lanes a row: lanes 4..7 of each 8 store their second float4 first, so the 8
                 * lanes of a quarter-warp hit 8 distinct bank quads in each store (no 2-way conflict) */
                const bool s4 = (threadIdx.x >> 2) & 1;
                const float4 lo = make_float4(f[0], f[1], f[2], f[3]), hi = make_float4(f[4], f[5], f[6], f[7]);
                float *d = sm + a * CA + t * SP + n;
                *(float4 *)(d + (s4 ? 4 : 0)) = s4 ? hi : lo;
                *(float4 *)(d + (s4 ? 0 : 4)) = s4 ? lo : hi;
            } else {
#pragma unroll
                for (int e = 0; e < VE; e += 4)
                    *(float4 *)(sm + a * CA + t * SP + n + e) = make_float4(f[e], f[e + 1], f[e + 2], f[e + 3]);
            }
        }
    }
};

/* ------------------------------------------------------------------------------------ tensor-core products */
__device__ __forceinline__ uint32_t to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ void mma_tf32(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* acc[m][n] (16x8 tiles, mma C layout) += sum over KS k-steps of 8: A(m0 + 16m + row, k) * B(k, n0 + 8n + col),
 * A(m, k) = Ap[m * am + k * ak], B(k, n) = Bp[k * bk + n * bn], all in shared memory (fp32). X3: 3xTF32.
 * KP: the k index of the fragments' slots t4 and t4 + 4 is k0 + 2 t4 and k0 + 2 t4 + 1 instead of k0 + t4 and
 * k0 + t4 + 4 (the same sum over k, in another order inside the mma): where both operands have k as their row
 * (A transposed, B row-major, row stride = 4 mod 32) a warp's 32 loads then hit 32 distinct banks, not 2-way. */
template <int MT, int NTL, int KS, bool X3, bool KP = false>
__device__ __forceinline__ void warp_gemm(float (*acc)[NTL][4], const float *Ap, int am, int ak, int m0,
                                          const float *Bp, int bk, int bn, int n0) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        const int k0 = 8 * ks, ka = KP ? k0 + 2 * t4 : k0 + t4, kb = KP ? k0 + 2 * t4 + 1 : k0 + t4 + 4;
        uint32_t ah[MT][4], al[MT][4], bh[NTL][2], bl[NTL][2];
#pragma unroll
        for (int m = 0; m < MT; m++) {
            const int r0 = m0 + 16 * m + g;
            const float x[4] = {Ap[r0 * am + ka * ak], Ap[(r0 + 8) * am + ka * ak], Ap[r0 * am + kb * ak],
                                Ap[(r0 + 8) * am + kb * ak]};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                ah[m][e] = to_tf32(x[e]);
                if (X3) al[m][e] = to_tf32(x[e] - __uint_as_float(ah[m][e]));
            }
        }
#pragma unroll
        for (int n = 0; n < NTL; n++) {
            const int c0 = n0 + 8 * n + g;
            const float x[2] = {Bp[ka * bk + c0 * bn], Bp[kb * bk + c0 * bn]};
#pragma unroll
            for (int e = 0; e < 2; e++) {
                bh[n][e] = to_tf32(x[e]);
                if (X3) bl[n][e] = to_tf32(x[e] - __uint_as_float(bh[n][e]));
            }
        }
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int n = 0; n < NTL; n++) {
                if (X3) {
                    mma_tf32(acc[m][n], al[m], bh[n]);
                    mma_tf32(acc[m][n], ah[m], bl[n]);
                }
                mma_tf32(acc[m][n], ah[m], bh[n]);
            }
    }
}

/* warp_gemm<1, 2, KS, X3> with the B operand's fragments in registers: bf[ks][n][e] = B(8ks + t4 + 4e, 8n + g). */
template <int KS, bool X3>
__device__ __forceinline__ void warp_gemm_rb(float (*acc)[2][4], const float *Ap, int am, int ak,
                                             const float (*bf)[2][2]) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        const int k0 = 8 * ks;
        uint32_t ah[4], al[4], bh[2][2], bl[2][2];
        const float x[4] = {Ap[g * am + (k0 + t4) * ak], Ap[(g + 8) * am + (k0 + t4) * ak],
                            Ap[g * am + (k0 + t4 + 4) * ak], Ap[(g + 8) * am + (k0 + t4 + 4) * ak]};
#pragma unroll
        for (int e = 0; e < 4; e++) {
            ah[e] = to_tf32(x[e]);
            if (X3) al[e] = to_tf32(x[e] - __uint_as_float(ah[e]));
        }
#pragma unroll
        for (int n = 0; n < 2; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                bh[n][e] = to_tf32(bf[ks][n][e]);
                if (X3) bl[n][e] = to_tf32(bf[ks][n][e] - __uint_as_float(bh[n][e]));
            }
#pragma unroll
        for (int n = 0; n < 2; n++) {
            if (X3) {
                mma_tf32(acc[0][n], al, bh[n]);
                mma_tf32(acc[0][n], ah, bl[n]);
            }
            mma_tf32(acc[0][n], ah, bh[n]);
        }
    }
}

/* Stores a warp's 16 x (8*NTL) accumulator tile to out[row * ld + col] (rows m0.., columns n0..). */
template <int NTL>
__device__ __forceinline__ void store_tile(const float (*acc)[4], float *out, int ld, int m0, int n0) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int n = 0; n < NTL; n++) {
        const int col = n0 + 8 * n + 2 * t4;
        *(float2 *)(out + (m0 + g) * ld + col) = make_float2(acc[n][0], acc[n][1]);
        *(float2 *)(out + (m0 + g + 8) * ld + col) = make_float2(acc[n][2], acc[n][3]);
    }
}

/* ------------------------------------------------------------------------------------- chunk preparation */
/* Slots of the chunk arrays in shared memory (each [CK][SP] fp32). Raw inputs R, W (stored as lw), K, V, A, B, DY;
 * chunk_prep turns R, K, A, B into Rtr, Kh, Atr, Bh in place and fills BB = Bbar, KB = Kbar (and CUM = c_t in the
 * backward). SA: the sa of the chunk. T1, T2: per-warp scratch. DU: the backward's dU. */
enum { XR = 0, XW, XK, XV, XA, XB, XDY, XBB, XKB, XSA, XT1 };
/* The 3-per-SM backward's two further slots (it has no T1): dSA, solved in place into dU; the cumulative log decay
 * c_t. Its last phase writes its three per-element scratch arrays over the slots DY, V and DU, dead by then. */
enum { XDU = XT1, XCUM = XT1 + 1 };
/* The 2-per-SM backward's: T1, T2 (per-warp scratch), dU, c_t. */
enum { XT2 = XT1 + 1, XDU2, XCUM2 };
enum { M_AB = 0, M_AK, M_RB, M_RK };

/* Thread: column j = tid & 63, rows 8*(tid >> 6) .. +7. Ends with a barrier. */
__device__ __forceinline__ void chunk_prep(float *X, float *ecL, int cum_slot) {
    const int j = threadIdx.x & 63, h = threadIdx.x >> 6;
    float c[CK], cum = 0.f;
#pragma unroll
    for (int t = 0; t < CK; t++) cum += X[XW * CA + t * SP + j], c[t] = cum;
    if (h == 0) ecL[j] = __expf(c[CK - 1]);
#pragma unroll
    for (int u = 0; u < CK / 2; u++) {
        const int t = 8 * h + u, o = t * SP + j;
        const float ct = h ? c[8 + u] : c[u], cp = h ? c[7 + u] : (u ? c[u ? u - 1 : 0] : 0.f);
        const float ec = __expf(ct), emc = __expf(-ct), ecp = __expf(cp), eb = __expf(c[CK - 1] - ct);
        const float b = X[XB * CA + o], k = X[XK * CA + o];
        X[XA * CA + o] *= ecp;
        X[XR * CA + o] *= ec;
        X[XB * CA + o] = b * emc, X[XK * CA + o] = k * emc;
        X[XBB * CA + o] = b * eb, X[XKB * CA + o] = k * eb;
        if (cum_slot >= 0) X[cum_slot * CA + o] = ct;
    }
    __syncthreads();
}

/* One warp: D[t][s] = sum_n P[t][n] Q[s][n] (16 x 16, k = 64) on the tensor cores, stored masked into D (stride
 * MS): strictly lower (strict) or lower with the diagonal. */
template <bool X3>
__device__ __forceinline__ void warp_small(float *D, const float *P, const float *Q, bool strict, int ld = MS) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    float acc[1][2][4] = {};
    warp_gemm<1, 2, 8, X3>(acc, P, SP, 1, 0, Q, 1, SP, 0);
#pragma unroll
    for (int n = 0; n < 2; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int t = g + 8 * (e >> 1), s = 8 * n + 2 * t4 + (e & 1);
            D[t * ld + s] = (strict ? s < t : s <= t) ? acc[0][n][e] : 0.f;
        }
}

template <typename T> __device__ __forceinline__ void put2(T *p, float a, float b);
template <> __device__ __forceinline__ void put2<float>(float *p, float a, float b) { *(float2 *)p = make_float2(a, b); }
template <> __device__ __forceinline__ void put2<bf16>(bf16 *p, float a, float b) {
    *(__nv_bfloat162 *)p = __floats2bfloat162_rn(a, b);
}

/* Stores a warp's 16 x 16 fragment tile (rows t of the chunk, columns n0..n0+15) to a [B][T][H][N] tensor, skipping
 * steps past T. */
template <typename T>
__device__ __forceinline__ void put_tile(T *dst, const float (*acc)[4], size_t base, size_t hs, int t0, int T_, int n0) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int n = 0; n < 2; n++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            const int t = t0 + g + 8 * hr;
            if (t < T_) put2<T>(dst + base + (size_t)t * hs + n0 + 8 * n + 2 * t4, acc[n][2 * hr], acc[n][2 * hr + 1]);
        }
}

template <typename T> struct cfwd_args {
    const T *r, *w, *k, *v, *a, *b;
    const float *s0;
    T *y;
    float *ckpt, *sa;
    int nt, H;
};

template <typename T> struct cbwd_args {
    const T *r, *w, *k, *v, *a, *b, *dy;
    const float *s0, *dsT, *ckpt, *sa;
    T *dr, *dw, *dk, *dv, *da, *db;
    float *ds0;
    int nt, H;
};

/* Forward. Warp w owns the state rows i in [16w, 16w+16): it reads them as the B operand of Atr S0^T / Rtr S0^T,
 * solves its 16 columns of SA, and updates them; only the chunk's inputs and the L x L matrices are shared. */
constexpr int NXF = XT1 + 1;
constexpr int FWD_FLOATS = NXF * CA + SA_ + 4 * MA + N;
constexpr size_t FWD_SMEM = (size_t)FWD_FLOATS * sizeof(float);

template <typename T, bool X3> __global__ void __launch_bounds__(NT) wkv7_fwd_chunk(const cfwd_args<T> p) {
    extern __shared__ __align__(16) float smem[];
    float *X = smem, *S = X + NXF * CA, *M = S + SA_, *ecL = M + 4 * MA;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int bh = blockIdx.x, bb = bh / p.H, hh = bh % p.H, T_ = p.nt;
    const size_t hs = (size_t)p.H * N, base = (size_t)bb * T_ * hs + (size_t)hh * N;
    const int nc = (T_ + CK - 1) / CK, w16 = 16 * warp;

    for (int e = tid; e < N * N / 4; e += NT) {
        const int i = e / 16, j = 4 * (e % 16);
        const float4 x = p.s0 ? *(const float4 *)(p.s0 + (size_t)bh * N * N + i * N + j) : make_float4(0, 0, 0, 0);
        *(float4 *)(S + i * SS + j) = x;
    }
    cloader<T, 6> ld;
    ld.init(base, hs);
    const T *const ins[6] = {p.r, p.w, p.k, p.v, p.a, p.b};
    ld.load(ins, 0, T_);
    const int si = w16 + (lane & 15), shl = lane >> 4; /* the solve: column, row parity */
    for (int c = 0; c < nc; c++) {
        __syncthreads();
        ld.store(X, XW, c, T_);
        __syncthreads();
        if (c + 1 < nc) ld.load(ins, c + 1, T_);
        chunk_prep(X, ecL, -1);
        float accP[1][2][4] = {}, accQ[1][2][4] = {};
        warp_gemm<1, 2, 8, X3>(accP, X + XA * CA, SP, 1, 0, S, 1, SS, w16); /* Atr S0^T, columns i of the warp */
        warp_gemm<1, 2, 8, X3>(accQ, X + XR * CA, SP, 1, 0, S, 1, SS, w16); /* Rtr S0^T */
        {
            const int pa = warp == 0 || warp == 1 ? XA : XR, qa = warp == 0 || warp == 2 ? XB : XK;
            warp_small<X3>(M + warp * MA, X + pa * CA, X + qa * CA, warp < 2);
        }
        __syncthreads();
        /* u = P + M_ak V; SA = (I - M_ab)^{-1} u (right-looking, CUDA cores); y = Q + M_rb SA + M_rk V */
        warp_gemm<1, 2, 2, X3>(accP, M + M_AK * MA, MS, 1, 0, X + XV * CA, SP, 1, w16);
        store_tile<2>(accP[0], X + XT1 * CA, SP, 0, w16);
        __syncwarp();
        {
            float u[CK];
#pragma unroll
            for (int t = 0; t < CK; t++) u[t] = X[XT1 * CA + t * SP + si];
#pragma unroll
            for (int s = 0; s < CK - 1; s++)
#pragma unroll
                for (int t = s + 1; t < CK; t++) u[t] = fmaf(M[M_AB * MA + t * MS + s], u[s], u[t]);
#pragma unroll
            for (int t = 0; t < CK; t++) {
                if ((t & 1) != shl) continue;
                X[XSA * CA + t * SP + si] = u[t];
                if (c * CK + t < T_) p.sa[base + (size_t)(c * CK + t) * hs + si] = u[t];
            }
        }
        __syncwarp();
        warp_gemm<1, 2, 2, X3>(accQ, M + M_RB * MA, MS, 1, 0, X + XSA * CA, SP, 1, w16);
        warp_gemm<1, 2, 2, X3>(accQ, M + M_RK * MA, MS, 1, 0, X + XV * CA, SP, 1, w16);
        put_tile<T>(p.y, accQ[0], base, hs, c * CK, T_, w16);
        /* S_L = S0 diag(e^{c_L}) + SA^T Bbar + V^T Kbar for the warp's rows */
        {
            float acc[1][8][4];
            const int r0 = w16 + g;
#pragma unroll
            for (int n = 0; n < 8; n++) {
                const int col = 8 * n + 2 * t4;
                const float e0 = ecL[col], e1 = ecL[col + 1];
                acc[0][n][0] = S[r0 * SS + col] * e0, acc[0][n][1] = S[r0 * SS + col + 1] * e1;
                acc[0][n][2] = S[(r0 + 8) * SS + col] * e0, acc[0][n][3] = S[(r0 + 8) * SS + col + 1] * e1;
            }
            warp_gemm<1, 8, 2, X3>(acc, X + XSA * CA, 1, SP, w16, X + XBB * CA, SP, 1, 0);
            warp_gemm<1, 8, 2, X3>(acc, X + XV * CA, 1, SP, w16, X + XKB * CA, SP, 1, 0);
            __syncwarp();
            store_tile<8>(acc[0], S, SS, w16, 0);
            float *ck = p.ckpt + ((size_t)bh * nc + c) * N * N;
#pragma unroll
            for (int n = 0; n < 8; n++) {
                const int col = 8 * n + 2 * t4;
                *(float2 *)(ck + r0 * N + col) = make_float2(acc[0][n][0], acc[0][n][1]);
                *(float2 *)(ck + (r0 + 8) * N + col) = make_float2(acc[0][n][2], acc[0][n][3]);
            }
        }
    }
}

/* Backward, 2 blocks per SM (the kernel for B H <= 2 SMs: one wave at 2 per SM, where it is faster than the
 * 3-per-SM kernel below). The running state gradient dS and the chunk's start state S0 are in shared memory; warp w
 * owns the columns i (or j) in [16w, 16w+16) of every L x N product and the rows [16w, 16w+16) of the dS update.
 * Per chunk: (1) X1 = Bbar dS^T, X2 = Kbar dS^T, dBbar = SA dS, dKbar = V dS, Z1 = dY S0, the four M;
 * (2) dSA = X1 + M_rb^T dY, dU = (I - M_ab)^{-T} dSA, dV = X2 + M_ak^T dU + M_rk^T dY; (3) Z2 = dU S0, the four dM,
 * dS <- dS diag(e^{c_L}) + dY^T Rtr + dU^T Atr; (4) dAtr = Z2 + dM_ab Bh + dM_ak Kh, dRtr = Z1 + dM_rb Bh +
 * dM_rk Kh, dBh = dM_ab^T Atr + dM_rb^T Rtr, dKh = dM_ak^T Atr + dM_rk^T Rtr, the raw gradients and the decay's. */
constexpr int NXB2 = XCUM2 + 1;
/* The shared-memory layout by version V (MRW_WKV7_BWD, launch_bwd below). v1, the layout before helper K's pass:
 * state rows at stride SS = 68, the L x L matrices at MS = 17 (103 KiB). v2 (default): 72 and 24 (109 KiB), which
 * takes the commonest 2-way bank conflicts out (ncu at B16 H16: a third of the shared-memory wavefronts were
 * conflicts, and shared memory is what bounds this kernel at 2 blocks per SM): stride 72 those of the fragment loads
 * that walk a state column (rows t4, columns g: dS and S0 as B operand with k the row) and of the float2 accesses to
 * dS and S0 in the dS update (one more 2-way remains where dS^T is read as B with k the column); stride 24 those of M^T
 * and dM^T read as A operand; the dS update's two products run in warp_gemm's KP slot order (both operands have k as
 * their row); and the loader stores the chunk's bf16 inputs in a conflict-free order. Same results as v1 up to the
 * summation order inside the dS update's mma. (A v3 with the L x L matrices at 20 and KP wherever both operands have
 * k as their row took 3% more wavefronts out but ran no faster at 2 blocks per SM and 3% slower at one, with spills in
 * the 3-per-SM kernel: not kept.) */
template <int V> struct bwd2_layout {
    static constexpr int SSK = V >= 2 ? 72 : SS, MSK = V >= 2 ? 24 : MS, MAK = CK * MSK;
    static constexpr int FLOATS = NXB2 * CA + 2 * N * SSK + 8 * MAK + N + 4 * N;
    static constexpr size_t SMEM = (size_t)FLOATS * sizeof(float);
};

template <typename T, bool X3, int V> __global__ void __launch_bounds__(NT) wkv7_bwd_chunk2(const cbwd_args<T> p) {
    constexpr int SSK = bwd2_layout<V>::SSK, MSK = bwd2_layout<V>::MSK, MAK = bwd2_layout<V>::MAK;
    extern __shared__ __align__(16) float smem[];
    float *X = smem, *S0 = X + NXB2 * CA, *dS = S0 + N * SSK, *M = dS + N * SSK, *dM = M + 4 * MAK, *ecL = dM + 4 * MAK;
    float *dcl = ecL + N;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int bh = blockIdx.x, bb = bh / p.H, hh = bh % p.H, T_ = p.nt;
    const size_t hs = (size_t)p.H * N, base = (size_t)bb * T_ * hs + (size_t)hh * N;
    const int nc = (T_ + CK - 1) / CK, w16 = 16 * warp;

    for (int e = tid; e < N * N / 4; e += NT) {
        const int i = e / 16, j = 4 * (e % 16);
        const float4 x = p.dsT ? *(const float4 *)(p.dsT + (size_t)bh * N * N + i * N + j) : make_float4(0, 0, 0, 0);
        *(float4 *)(dS + i * SSK + j) = x;
    }
    cloader<T, 7, (V >= 2)> ld;
    cloader<float, 1> lsa;
    ld.init(base, hs), lsa.init(base, hs);
    const T *const ins[7] = {p.r, p.w, p.k, p.v, p.a, p.b, p.dy};
    const float *const sas[1] = {p.sa};
    /* the chunk's start state: checkpoint c-1, or the forward's s0 (NULL = zero) for c = 0; prefetched in
     * registers a chunk ahead */
    float4 ckr[N * N / 4 / NT];
    const float *ckg = p.ckpt + (size_t)bh * nc * N * N, *s0g = p.s0 ? p.s0 + (size_t)bh * N * N : nullptr;
    auto load_s0 = [&](int c) {
        const float *src = c > 0 ? ckg + (size_t)(c - 1) * N * N : s0g;
#pragma unroll
        for (int s = 0; s < N * N / 4 / NT; s++)
            ckr[s] = src ? *(const float4 *)(src + 4 * (tid + s * NT)) : make_float4(0, 0, 0, 0);
    };
    ld.load(ins, nc - 1, T_);
    lsa.load(sas, nc - 1, T_);
    load_s0(nc - 1);
    const int si = w16 + (lane & 15), shl = lane >> 4;
    for (int c = nc - 1; c >= 0; c--) {
        __syncthreads();
        ld.store(X, XW, c, T_);
        lsa.store(X + XSA * CA, -1, c, T_);
#pragma unroll
        for (int s = 0; s < N * N / 4 / NT; s++) {
            const int e = tid + s * NT, i = e / 16, jj = 4 * (e % 16);
            *(float4 *)(S0 + i * SSK + jj) = ckr[s];
        }
        __syncthreads();
        if (c > 0) {
            ld.load(ins, c - 1, T_);
            lsa.load(sas, c - 1, T_);
            load_s0(c - 1);
        }
        chunk_prep(X, ecL, XCUM2);
        /* (1) */
        float aX1[1][2][4] = {}, aX2[1][2][4] = {}, aDBB[1][2][4] = {}, aDKB[1][2][4] = {}, aZ1[1][2][4] = {};
        warp_gemm<1, 2, 8, X3>(aX1, X + XBB * CA, SP, 1, 0, dS, 1, SSK, w16);
        warp_gemm<1, 2, 8, X3>(aX2, X + XKB * CA, SP, 1, 0, dS, 1, SSK, w16);
        warp_gemm<1, 2, 8, X3>(aDBB, X + XSA * CA, SP, 1, 0, dS, SSK, 1, w16);
        warp_gemm<1, 2, 8, X3>(aDKB, X + XV * CA, SP, 1, 0, dS, SSK, 1, w16);
        warp_gemm<1, 2, 8, X3>(aZ1, X + XDY * CA, SP, 1, 0, S0, SSK, 1, w16);
        {
            const int pa = warp == 0 || warp == 1 ? XA : XR, qa = warp == 0 || warp == 2 ? XB : XK;
            warp_small<X3>(M + warp * MAK, X + pa * CA, X + qa * CA, warp < 2, MSK);
        }
        __syncthreads();
        /* (2) columns i of the warp */
        warp_gemm<1, 2, 2, X3>(aX1, M + M_RB * MAK, 1, MSK, 0, X + XDY * CA, SP, 1, w16);
        store_tile<2>(aX1[0], X + XT1 * CA, SP, 0, w16);
        __syncwarp();
        {
            float du[CK];
#pragma unroll
            for (int t = 0; t < CK; t++) du[t] = X[XT1 * CA + t * SP + si];
#pragma unroll
            for (int t = CK - 1; t > 0; t--)
#pragma unroll
                for (int s = 0; s < t; s++) du[s] = fmaf(M[M_AB * MAK + t * MSK + s], du[t], du[s]);
#pragma unroll
            for (int t = 0; t < CK; t++)
                if ((t & 1) == shl) X[XDU2 * CA + t * SP + si] = du[t];
        }
        __syncwarp();
        warp_gemm<1, 2, 2, X3>(aX2, M + M_AK * MAK, 1, MSK, 0, X + XDU2 * CA, SP, 1, w16);
        warp_gemm<1, 2, 2, X3>(aX2, M + M_RK * MAK, 1, MSK, 0, X + XDY * CA, SP, 1, w16);
        put_tile<T>(p.dv, aX2[0], base, hs, c * CK, T_, w16);
        __syncthreads();
        /* (3) */
        float aZ2[1][2][4] = {};
        warp_gemm<1, 2, 8, X3>(aZ2, X + XDU2 * CA, SP, 1, 0, S0, SSK, 1, w16);
        {
            const int pa = warp < 2 ? XDU2 : XDY, qa = warp == 0 || warp == 2 ? XSA : XV;
            warp_small<X3>(dM + warp * MAK, X + pa * CA, X + qa * CA, warp < 2, MSK);
        }
        {
            float acc[1][8][4], part[8][2];
            const int r0 = w16 + g;
#pragma unroll
            for (int n = 0; n < 8; n++) {
                const int col = 8 * n + 2 * t4;
                const float e0 = ecL[col], e1 = ecL[col + 1];
                const float2 d0 = *(const float2 *)(dS + r0 * SSK + col), d1 = *(const float2 *)(dS + (r0 + 8) * SSK + col);
                const float2 s0 = *(const float2 *)(S0 + r0 * SSK + col), s1 = *(const float2 *)(S0 + (r0 + 8) * SSK + col);
                part[n][0] = (d0.x * s0.x + d1.x * s1.x) * e0, part[n][1] = (d0.y * s0.y + d1.y * s1.y) * e1;
                acc[0][n][0] = d0.x * e0, acc[0][n][1] = d0.y * e1, acc[0][n][2] = d1.x * e0, acc[0][n][3] = d1.y * e1;
            }
            warp_gemm<1, 8, 2, X3, (V >= 2)>(acc, X + XDY * CA, 1, SP, w16, X + XR * CA, SP, 1, 0);
            warp_gemm<1, 8, 2, X3, (V >= 2)>(acc, X + XDU2 * CA, 1, SP, w16, X + XA * CA, SP, 1, 0);
            __syncwarp();
            store_tile<8>(acc[0], dS, SSK, w16, 0);
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float x = part[n][e];
                    x += __shfl_xor_sync(0xffffffffu, x, 4);
                    x += __shfl_xor_sync(0xffffffffu, x, 8);
                    x += __shfl_xor_sync(0xffffffffu, x, 16);
                    if (g == 0) dcl[warp * N + 8 * n + 2 * t4 + e] = x;
                }
        }
        __syncthreads();
        /* (4) columns j of the warp */
        {
            float aDA[1][2][4], aDR[1][2][4], aDBH[1][2][4] = {}, aDKH[1][2][4] = {};
#pragma unroll
            for (int n = 0; n < 2; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) aDA[0][n][e] = aZ2[0][n][e], aDR[0][n][e] = aZ1[0][n][e];
            warp_gemm<1, 2, 2, X3>(aDA, dM + M_AB * MAK, MSK, 1, 0, X + XB * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDA, dM + M_AK * MAK, MSK, 1, 0, X + XK * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDR, dM + M_RB * MAK, MSK, 1, 0, X + XB * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDR, dM + M_RK * MAK, MSK, 1, 0, X + XK * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDBH, dM + M_AB * MAK, 1, MSK, 0, X + XA * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDBH, dM + M_RB * MAK, 1, MSK, 0, X + XR * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDKH, dM + M_AK * MAK, 1, MSK, 0, X + XA * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDKH, dM + M_RK * MAK, 1, MSK, 0, X + XR * CA, SP, 1, w16);
            float gA[2][4], gR[2][4], gB[2][4], gK[2][4];
#pragma unroll
            for (int n = 0; n < 2; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int t = g + 8 * (e >> 1), jj = w16 + 8 * n + 2 * t4 + (e & 1), o = t * SP + jj;
                    const float ct = X[XCUM2 * CA + o], cp = t ? X[XCUM2 * CA + o - SP] : 0.f;
                    const float cL = X[XCUM2 * CA + (CK - 1) * SP + jj];
                    const float ec = __expf(ct), emc = __expf(-ct), ecp = __expf(cp), eb = __expf(cL - ct);
                    const float dat = aDA[0][n][e], drt = aDR[0][n][e], dbh = aDBH[0][n][e], dkh = aDKH[0][n][e];
                    const float dbb = aDBB[0][n][e], dkb = aDKB[0][n][e];
                    const float ebar = dbb * X[XBB * CA + o] + dkb * X[XKB * CA + o];
                    X[XT1 * CA + o] = drt * X[XR * CA + o] - dbh * X[XB * CA + o] - dkh * X[XK * CA + o] - ebar;
                    X[XT2 * CA + o] = dat * X[XA * CA + o];
                    X[XDU2 * CA + o] = ebar;
                    gA[n][e] = dat * ecp, gR[n][e] = drt * ec;
                    gB[n][e] = fmaf(dbh, emc, dbb * eb), gK[n][e] = fmaf(dkh, emc, dkb * eb);
                }
            put_tile<T>(p.da, gA, base, hs, c * CK, T_, w16);
            put_tile<T>(p.dr, gR, base, hs, c * CK, T_, w16);
            put_tile<T>(p.db, gB, base, hs, c * CK, T_, w16);
            put_tile<T>(p.dk, gK, base, hs, c * CK, T_, w16);
        }
        __syncwarp();
        /* dlw_s = sum_{t >= s} dc_t, with d c_L at the last step; dw = dlw * lw (lw = -exp(w)) */
        if (lane < 16) {
            const int jj = w16 + lane;
            float acc = dcl[jj] + dcl[N + jj] + dcl[2 * N + jj] + dcl[3 * N + jj];
#pragma unroll
            for (int t = 0; t < CK; t++) acc += X[XDU2 * CA + t * SP + jj];
#pragma unroll
            for (int t = CK - 1; t >= 0; t--) {
                acc += X[XT1 * CA + t * SP + jj];
                if (t + 1 < CK) acc += X[XT2 * CA + (t + 1) * SP + jj];
                if (c * CK + t < T_)
                    cio<T>::put(p.dw + base + (size_t)(c * CK + t) * hs + jj, acc * X[XW * CA + t * SP + jj]);
            }
        }
    }
    if (p.ds0) {
        __syncthreads();
        for (int e = tid; e < N * N / 4; e += NT) {
            const int i = e / 16, jj = 4 * (e % 16);
            *(float4 *)(p.ds0 + (size_t)bh * N * N + i * N + jj) = *(const float4 *)(dS + i * SSK + jj);
        }
    }
}

constexpr int NXB = XCUM + 1;
/* By version, as bwd2_layout: v1 dS at stride SS = 68 (72.8 KiB), v2 at 72 (73.8 KiB, still 3 blocks per SM), with
 * the KP dS update and the loader order; the L x L matrices stay at MS = 17 (24 would not fit 3 blocks per SM). */
template <int V> struct bwd3_layout {
    static constexpr int SSK = V >= 2 ? 72 : SS, MSK = MS, MAK = CK * MSK;
    static constexpr int FLOATS = NXB * CA + N * SSK + 4 * MAK + 2 * N;
    static constexpr size_t SMEM = (size_t)FLOATS * sizeof(float);
};

/* Backward, 3 blocks per SM (B H > 2 SMs: at B32 H12, 384 blocks, one wave instead of 1.45). The phases of
 * wkv7_bwd_chunk2 above in 74.5 KB of shared memory: M and dM share their space, dSA is solved into dU in place, the
 * last phase's scratch goes over the dead DY, V, DU slots; <= 168 registers in bf16 (the fp32 3xTF32 path keeps its
 * registers, 2 per SM). The chunk's start state S0 is never in shared memory: each lane loads its B-operand fragments
 * of S0 (rows k, the warp's columns) from the checkpoint into registers at the chunk's start (prefetched into L2 a
 * chunk ahead) and uses them in dY S0, dU S0 and for d c_L (summed per warp column before dS changes). */
template <typename T, bool X3, int V>
__global__ void __launch_bounds__(NT, X3 ? 1 : 3) wkv7_bwd_chunk3(const cbwd_args<T> p) {
    constexpr int SSK = bwd3_layout<V>::SSK, MSK = bwd3_layout<V>::MSK, MAK = bwd3_layout<V>::MAK;
    extern __shared__ __align__(16) float smem[];
    float *X = smem, *dS = X + NXB * CA, *M = dS + N * SSK, *dM = M /* M is dead once dM is formed */, *ecL = M + 4 * MAK;
    float *dcl = ecL + N;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int bh = blockIdx.x, bb = bh / p.H, hh = bh % p.H, T_ = p.nt;
    const size_t hs = (size_t)p.H * N, base = (size_t)bb * T_ * hs + (size_t)hh * N;
    const int nc = (T_ + CK - 1) / CK, w16 = 16 * warp;

    for (int e = tid; e < N * N / 4; e += NT) {
        const int i = e / 16, j = 4 * (e % 16);
        const float4 x = p.dsT ? *(const float4 *)(p.dsT + (size_t)bh * N * N + i * N + j) : make_float4(0, 0, 0, 0);
        *(float4 *)(dS + i * SSK + j) = x;
    }
    cloader<T, 7, (V >= 2)> ld;
    cloader<float, 1> lsa;
    ld.init(base, hs), lsa.init(base, hs);
    const T *const ins[7] = {p.r, p.w, p.k, p.v, p.a, p.b, p.dy};
    const float *const sas[1] = {p.sa};
    /* the chunk's start state: checkpoint c-1, or the forward's s0 (NULL = zero) for c = 0, as this lane's
     * B-operand fragments: s0f[ks][n][e] = S0[8ks + t4 + 4e][w16 + 8n + g] */
    float s0f[8][2][2];
    const float *ckg = p.ckpt + (size_t)bh * nc * N * N, *s0g = p.s0 ? p.s0 + (size_t)bh * N * N : nullptr;
    ld.load(ins, nc - 1, T_);
    lsa.load(sas, nc - 1, T_);
    const int si = w16 + (lane & 15), shl = lane >> 4;
    for (int c = nc - 1; c >= 0; c--) {
        __syncthreads();
        {
            const float *src = c > 0 ? ckg + (size_t)(c - 1) * N * N : s0g;
#pragma unroll
            for (int ks = 0; ks < 8; ks++)
#pragma unroll
                for (int n = 0; n < 2; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++)
                        s0f[ks][n][e] = src ? __ldg(src + (8 * ks + t4 + 4 * e) * N + w16 + 8 * n + g) : 0.f;
        }
        ld.store(X, XW, c, T_);
        lsa.store(X + XSA * CA, -1, c, T_);
        __syncthreads();
        chunk_prep(X, ecL, XCUM);
        /* (1) */
        float aX1[1][2][4] = {}, aX2[1][2][4] = {}, aDBB[1][2][4] = {}, aDKB[1][2][4] = {}, aZ1[1][2][4] = {};
        warp_gemm<1, 2, 8, X3>(aX1, X + XBB * CA, SP, 1, 0, dS, 1, SSK, w16);
        warp_gemm<1, 2, 8, X3>(aX2, X + XKB * CA, SP, 1, 0, dS, 1, SSK, w16);
        warp_gemm<1, 2, 8, X3>(aDBB, X + XSA * CA, SP, 1, 0, dS, SSK, 1, w16);
        warp_gemm<1, 2, 8, X3>(aDKB, X + XV * CA, SP, 1, 0, dS, SSK, 1, w16);
        warp_gemm_rb<8, X3>(aZ1, X + XDY * CA, SP, 1, s0f);
        {
            const int pa = warp == 0 || warp == 1 ? XA : XR, qa = warp == 0 || warp == 2 ? XB : XK;
            warp_small<X3>(M + warp * MAK, X + pa * CA, X + qa * CA, warp < 2, MSK);
        }
        __syncthreads();
        /* (2) columns i of the warp */
        warp_gemm<1, 2, 2, X3>(aX1, M + M_RB * MAK, 1, MSK, 0, X + XDY * CA, SP, 1, w16);
        store_tile<2>(aX1[0], X + XDU * CA, SP, 0, w16);
        __syncwarp();
        {
            float du[CK];
#pragma unroll
            for (int t = 0; t < CK; t++) du[t] = X[XDU * CA + t * SP + si];
            __syncwarp();
#pragma unroll
            for (int t = CK - 1; t > 0; t--)
#pragma unroll
                for (int s = 0; s < t; s++) du[s] = fmaf(M[M_AB * MAK + t * MSK + s], du[t], du[s]);
#pragma unroll
            for (int t = 0; t < CK; t++)
                if ((t & 1) == shl) X[XDU * CA + t * SP + si] = du[t];
        }
        __syncwarp();
        warp_gemm<1, 2, 2, X3>(aX2, M + M_AK * MAK, 1, MSK, 0, X + XDU * CA, SP, 1, w16);
        warp_gemm<1, 2, 2, X3>(aX2, M + M_RK * MAK, 1, MSK, 0, X + XDY * CA, SP, 1, w16);
        put_tile<T>(p.dv, aX2[0], base, hs, c * CK, T_, w16);
        /* d c_L for the warp's columns (dS still the chunk's end gradient): sum_i dS[i][j] S0[i][j] e^{c_L,j} */
#pragma unroll
        for (int n = 0; n < 2; n++) {
            const int col = w16 + 8 * n + g;
            float x = 0.f;
#pragma unroll
            for (int ks = 0; ks < 8; ks++)
#pragma unroll
                for (int e = 0; e < 2; e++) x = fmaf(dS[(8 * ks + t4 + 4 * e) * SSK + col], s0f[ks][n][e], x);
            x += __shfl_xor_sync(0xffffffffu, x, 1);
            x += __shfl_xor_sync(0xffffffffu, x, 2);
            if (t4 == 0) dcl[col] = x * ecL[col];
        }
        __syncthreads();
        /* (3) */
        float aZ2[1][2][4] = {};
        warp_gemm_rb<8, X3>(aZ2, X + XDU * CA, SP, 1, s0f);
        {
            const int pa = warp < 2 ? XDU : XDY, qa = warp == 0 || warp == 2 ? XSA : XV;
            warp_small<X3>(dM + warp * MAK, X + pa * CA, X + qa * CA, warp < 2, MSK);
        }
        {
            float acc[1][8][4];
            const int r0 = w16 + g;
#pragma unroll
            for (int n = 0; n < 8; n++) {
                const int col = 8 * n + 2 * t4;
                const float e0 = ecL[col], e1 = ecL[col + 1];
                const float2 d0 = *(const float2 *)(dS + r0 * SSK + col), d1 = *(const float2 *)(dS + (r0 + 8) * SSK + col);
                acc[0][n][0] = d0.x * e0, acc[0][n][1] = d0.y * e1, acc[0][n][2] = d1.x * e0, acc[0][n][3] = d1.y * e1;
            }
            warp_gemm<1, 8, 2, X3, (V >= 2)>(acc, X + XDY * CA, 1, SP, w16, X + XR * CA, SP, 1, 0);
            warp_gemm<1, 8, 2, X3, (V >= 2)>(acc, X + XDU * CA, 1, SP, w16, X + XA * CA, SP, 1, 0);
            __syncwarp();
            store_tile<8>(acc[0], dS, SSK, w16, 0);
        }
        __syncthreads();
        /* the next chunk's inputs in flight during the last phase (not earlier: registers) */
        if (c > 0) {
            ld.load(ins, c - 1, T_);
            lsa.load(sas, c - 1, T_);
            /* the next chunk's start state into L2 (its fragments are loaded at that chunk's start) */
            const float *nx = c > 1 ? ckg + (size_t)(c - 2) * N * N : s0g;
            if (nx) asm volatile("prefetch.global.L2 [%0];" ::"l"(nx + 32 * tid));
        }
        /* (4) columns j of the warp */
        {
            float aDA[1][2][4], aDR[1][2][4], aDBH[1][2][4] = {}, aDKH[1][2][4] = {};
#pragma unroll
            for (int n = 0; n < 2; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) aDA[0][n][e] = aZ2[0][n][e], aDR[0][n][e] = aZ1[0][n][e];
            warp_gemm<1, 2, 2, X3>(aDA, dM + M_AB * MAK, MSK, 1, 0, X + XB * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDA, dM + M_AK * MAK, MSK, 1, 0, X + XK * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDR, dM + M_RB * MAK, MSK, 1, 0, X + XB * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDR, dM + M_RK * MAK, MSK, 1, 0, X + XK * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDBH, dM + M_AB * MAK, 1, MSK, 0, X + XA * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDBH, dM + M_RB * MAK, 1, MSK, 0, X + XR * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDKH, dM + M_AK * MAK, 1, MSK, 0, X + XA * CA, SP, 1, w16);
            warp_gemm<1, 2, 2, X3>(aDKH, dM + M_RK * MAK, 1, MSK, 0, X + XR * CA, SP, 1, w16);
            float gA[2][4], gR[2][4], gB[2][4], gK[2][4];
#pragma unroll
            for (int n = 0; n < 2; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int t = g + 8 * (e >> 1), jj = w16 + 8 * n + 2 * t4 + (e & 1), o = t * SP + jj;
                    const float ct = X[XCUM * CA + o], cp = t ? X[XCUM * CA + o - SP] : 0.f;
                    const float cL = X[XCUM * CA + (CK - 1) * SP + jj];
                    const float ec = __expf(ct), emc = __expf(-ct), ecp = __expf(cp), eb = __expf(cL - ct);
                    const float dat = aDA[0][n][e], drt = aDR[0][n][e], dbh = aDBH[0][n][e], dkh = aDKH[0][n][e];
                    const float dbb = aDBB[0][n][e], dkb = aDKB[0][n][e];
                    const float ebar = dbb * X[XBB * CA + o] + dkb * X[XKB * CA + o];
                    X[XDY * CA + o] = drt * X[XR * CA + o] - dbh * X[XB * CA + o] - dkh * X[XK * CA + o] - ebar;
                    X[XV * CA + o] = dat * X[XA * CA + o];
                    X[XDU * CA + o] = ebar;
                    gA[n][e] = dat * ecp, gR[n][e] = drt * ec;
                    gB[n][e] = fmaf(dbh, emc, dbb * eb), gK[n][e] = fmaf(dkh, emc, dkb * eb);
                }
            put_tile<T>(p.da, gA, base, hs, c * CK, T_, w16);
            put_tile<T>(p.dr, gR, base, hs, c * CK, T_, w16);
            put_tile<T>(p.db, gB, base, hs, c * CK, T_, w16);
            put_tile<T>(p.dk, gK, base, hs, c * CK, T_, w16);
        }
        __syncwarp();
        /* dlw_s = sum_{t >= s} dc_t, with d c_L at the last step; dw = dlw * lw (lw = -exp(w)) */
        if (lane < 16) {
            const int jj = w16 + lane;
            float acc = dcl[jj];
#pragma unroll
            for (int t = 0; t < CK; t++) acc += X[XDU * CA + t * SP + jj];
#pragma unroll
            for (int t = CK - 1; t >= 0; t--) {
                acc += X[XDY * CA + t * SP + jj];
                if (t + 1 < CK) acc += X[XV * CA + (t + 1) * SP + jj];
                if (c * CK + t < T_)
                    cio<T>::put(p.dw + base + (size_t)(c * CK + t) * hs + jj, acc * X[XW * CA + t * SP + jj]);
            }
        }
    }
    if (p.ds0) {
        __syncthreads();
        for (int e = tid; e < N * N / 4; e += NT) {
            const int i = e / 16, jj = 4 * (e % 16);
            *(float4 *)(p.ds0 + (size_t)bh * N * N + i * N + jj) = *(const float4 *)(dS + i * SSK + jj);
        }
    }
}

template <typename T, bool X3> mrw_status launch_fwd(int B, int H, const cfwd_args<T> &a, cudaStream_t st, mrw_error *err) {
    cudaError_t e = cudaFuncSetAttribute(wkv7_fwd_chunk<T, X3>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)FWD_SMEM);
    if (e == cudaSuccess) {
        wkv7_fwd_chunk<T, X3><<<B * H, NT, FWD_SMEM, st>>>(a);
        e = cudaGetLastError();
    }
    if (e != cudaSuccess)
        return mrw_err(err, MRW_E_INTERNAL, "wkv7 chunked forward (cuda): launch failed: %s", cudaGetErrorString(e));
    return MRW_OK;
}

/* The backward kernels' layout V (bwd2_layout): 2 (default) the one with fewer bank conflicts, 1 the one before;
 * MRW_WKV7_BWD=1 in the environment picks v1 (read once: A/B measurements, and a fallback). */
static int bwd_version() {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("MRW_WKV7_BWD");
        const int x = e ? atoi(e) : 0;
        v = x == 1 ? 1 : 2;
    }
    return v;
}

template <typename T, bool X3, int V>
cudaError_t launch_bwd_f(int B, int H, const cbwd_args<T> &a, bool three, cudaStream_t st) {
    cudaError_t e;
    if (three) {
        const int sm = (int)bwd3_layout<V>::SMEM;
        e = cudaFuncSetAttribute(wkv7_bwd_chunk3<T, X3, V>, cudaFuncAttributeMaxDynamicSharedMemorySize, sm);
        if (e == cudaSuccess)
            e = cudaFuncSetAttribute(wkv7_bwd_chunk3<T, X3, V>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                     (int)cudaSharedmemCarveoutMaxShared);
        if (e == cudaSuccess) {
            wkv7_bwd_chunk3<T, X3, V><<<B * H, NT, sm, st>>>(a);
            e = cudaGetLastError();
        }
    } else {
        const int sm = (int)bwd2_layout<V>::SMEM;
        e = cudaFuncSetAttribute(wkv7_bwd_chunk2<T, X3, V>, cudaFuncAttributeMaxDynamicSharedMemorySize, sm);
        if (e == cudaSuccess) {
            wkv7_bwd_chunk2<T, X3, V><<<B * H, NT, sm, st>>>(a);
            e = cudaGetLastError();
        }
    }
    return e;
}

template <typename T, bool X3>
mrw_status launch_bwd(int B, int H, const cbwd_args<T> &a, int kernel, cudaStream_t st, mrw_error *err) {
    /* kernel 0: by the shape (3 per SM when B H exceeds what 2 per SM hold), 3: the 3-per-SM kernel */
    int dev = 0, sms = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    const bool three = kernel == 3 || (e == cudaSuccess && B * H > 2 * sms);
    if (e == cudaSuccess)
        e = bwd_version() == 1 ? launch_bwd_f<T, X3, 1>(B, H, a, three, st) : launch_bwd_f<T, X3, 2>(B, H, a, three, st);
    if (e != cudaSuccess)
        return mrw_err(err, MRW_E_INTERNAL, "wkv7 chunked backward (cuda): launch failed: %s", cudaGetErrorString(e));
    return MRW_OK;
}

} // namespace

/* Called by wkv7.cu's _ex entry points after their argument checks. */
extern "C" mrw_status mrw_cuda_wkv7_chunk_fwd_launch(mrw_cuda_dtype dt, int B, int T, int H, const void *r,
                                                     const void *w, const void *k, const void *v, const void *a,
                                                     const void *b, const float *s0, void *y, float *ckpt,
                                                     float *sa, void *stream, mrw_error *err) {
    cudaStream_t st = (cudaStream_t)stream;
    if (dt == MRW_CUDA_F32) {
        typedef float F;
        cfwd_args<F> p = {(const F *)r, (const F *)w, (const F *)k, (const F *)v, (const F *)a, (const F *)b, s0,
                          (F *)y, ckpt, sa, T, H};
        return launch_fwd<F, true>(B, H, p, st, err);
    }
    typedef bf16 F;
    cfwd_args<F> p = {(const F *)r, (const F *)w, (const F *)k, (const F *)v, (const F *)a, (const F *)b, s0,
                      (F *)y, ckpt, sa, T, H};
    return launch_fwd<F, false>(B, H, p, st, err);
}

extern "C" mrw_status mrw_cuda_wkv7_chunk_bwd_launch(mrw_cuda_dtype dt, int B, int T, int H, const void *r,
                                                     const void *w, const void *k, const void *v, const void *a,
                                                     const void *b, const void *dy, const float *s0,
                                                     const float *ds_T, const float *ckpt, const float *sa,
                                                     void *dr, void *dw, void *dk, void *dv, void *da, void *db,
                                                     float *ds0, int kernel, void *stream, mrw_error *err) {
    cudaStream_t st = (cudaStream_t)stream;
    if (dt == MRW_CUDA_F32) {
        typedef float F;
        cbwd_args<F> p = {(const F *)r, (const F *)w, (const F *)k, (const F *)v, (const F *)a, (const F *)b,
                          (const F *)dy, s0, ds_T, ckpt, sa, (F *)dr, (F *)dw, (F *)dk, (F *)dv, (F *)da, (F *)db,
                          ds0, T, H};
        return launch_bwd<F, true>(B, H, p, kernel, st, err);
    }
    typedef bf16 F;
    cbwd_args<F> p = {(const F *)r, (const F *)w, (const F *)k, (const F *)v, (const F *)a, (const F *)b,
                      (const F *)dy, s0, ds_T, ckpt, sa, (F *)dr, (F *)dw, (F *)dk, (F *)dv, (F *)da, (F *)db,
                      ds0, T, H};
    return launch_bwd<F, false>(B, H, p, kernel, st, err);
}
