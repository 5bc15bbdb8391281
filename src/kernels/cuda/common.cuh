/* Internal helpers shared by the CUDA kernels of the training step (ce.cu, norm.cu, rwkv7_ew.cu, adam.cu):
 * element access for fp32 / bf16 activation tensors, block reductions, the deterministic two-stage column
 * sum that every parameter gradient of a [rows, C] element-wise op uses, and launch checking. C++ only. */
#ifndef MRW_KERNELS_CUDA_COMMON_CUH
#define MRW_KERNELS_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "base/error.h"
#include "kernels/cuda/wkv7.h" /* mrw_cuda_dtype */
}

namespace mrwcu {

typedef __nv_bfloat16 bf16;

static __device__ __forceinline__ float ld(const float *p, size_t i) { return p[i]; }
static __device__ __forceinline__ float ld(const bf16 *p, size_t i) { return __bfloat162float(p[i]); }
static __device__ __forceinline__ void st(float *p, size_t i, float x) { p[i] = x; }
static __device__ __forceinline__ void st(bf16 *p, size_t i, float x) { p[i] = __float2bfloat16_rn(x); }

/* Two consecutive elements (e even, pointer 8-byte aligned): one 4-byte bf16x2 or 8-byte float2 access, so a
 * warp moves 128 or 256 contiguous bytes per request. */
static __device__ __forceinline__ float2 ld2(const float *p, size_t e) { return *(const float2 *)(p + e); }
static __device__ __forceinline__ float2 ld2(const bf16 *p, size_t e) {
    return __bfloat1622float2(*(const __nv_bfloat162 *)(p + e));
}
static __device__ __forceinline__ void st2(float *p, size_t e, float a, float b) {
    *(float2 *)(p + e) = make_float2(a, b);
}
static __device__ __forceinline__ void st2(bf16 *p, size_t e, float a, float b) {
    *(__nv_bfloat162 *)(p + e) = __floats2bfloat162_rn(a, b);
}

static __device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
static __device__ __forceinline__ double warp_sum(double x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result. `sh` holds
 * 32 values of V. Contains barriers: call from every thread. */
template <typename V> static __device__ __forceinline__ V block_sum(V x, V *sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    x = warp_sum(x);
    __syncthreads(); /* sh may still be read from a previous call */
    if (lane == 0) sh[wid] = x;
    __syncthreads();
    V t = lane < nw ? sh[lane] : V(0);
    return warp_sum(t);
}

/* Column sums of NV per-element quantities over the rows of a [rows, C] op, deterministic (fixed order):
 *   stage 1 (colsum_part): block (bx, by) of 32 x 8 threads covers columns 32 bx .. and rows by*8+ty, stepping
 *     by 8 * CS_SLICES; it writes part[(by * NV + q) * C + c];
 *   stage 2 (colsum_final): out[q][c] += sum over by of part (double), out[q] NULL = skip.
 * F is a functor with `__device__ void operator()(int r, int c, float acc[NV]) const` adding its terms. */
constexpr int CS_SLICES = 64;
template <int NV> static inline size_t colsum_scratch_floats(int C) { return (size_t)CS_SLICES * NV * C; }

template <int NV, typename F> __global__ void colsum_part(int rows, int C, F f, float *part) {
    __shared__ float sh[8][NV][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float acc[NV];
#pragma unroll
    for (int q = 0; q < NV; q++) acc[q] = 0.f;
    if (c < C)
        for (int r = blockIdx.y * 8 + threadIdx.y; r < rows; r += 8 * gridDim.y) f(r, c, acc);
#pragma unroll
    for (int q = 0; q < NV; q++) sh[threadIdx.y][q][threadIdx.x] = acc[q];
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
#pragma unroll
        for (int q = 0; q < NV; q++) {
            float s = 0.f;
#pragma unroll
            for (int y = 0; y < 8; y++) s += sh[y][q][threadIdx.x];
            part[((size_t)blockIdx.y * NV + q) * C + c] = s;
        }
    }
}

template <int NV> struct outs {
    float *p[NV];
};

template <int NV> __global__ void colsum_final(int C, int slices, const float *part, outs<NV> out) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
#pragma unroll
    for (int q = 0; q < NV; q++) {
        if (!out.p[q]) continue;
        double s = 0;
        for (int y = 0; y < slices; y++) s += part[((size_t)y * NV + q) * C + c];
        out.p[q][c] += (float)s;
    }
}

template <int NV, typename F>
static inline void colsum(int rows, int C, const F &f, float *part, outs<NV> out, cudaStream_t st) {
    int slices = (rows + 7) / 8;
    if (slices > CS_SLICES) slices = CS_SLICES;
    colsum_part<NV, F><<<dim3((C + 31) / 32, slices), dim3(32, 8), 0, st>>>(rows, C, f, part);
    colsum_final<NV><<<(C + 255) / 256, 256, 0, st>>>(C, slices, part, out);
}

static inline mrw_status launched(const char *what, mrw_error *err) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return mrw_err(err, MRW_E_INTERNAL, "%s (cuda): launch failed: %s", what, cudaGetErrorString(e));
    return MRW_OK;
}

static inline unsigned grid_for(size_t n, int threads) {
    size_t g = (n + threads - 1) / threads;
    return (unsigned)(g > 1048576 ? 1048576 : g ? g : 1);
}

/* A CUDA runtime call's result as a status, naming the component (`who`) and the call. */
static inline mrw_status cuda_status(cudaError_t e, const char *who, const char *what, mrw_error *err) {
    if (e == cudaSuccess) return MRW_OK;
    return mrw_err(err, MRW_E_INTERNAL, "%s: %s: %s", who, what, cudaGetErrorString(e));
}

/* y = x rounded to bf16 (nearest even), grid-stride. */
template <typename T> __global__ void to_bf16_kernel(size_t n, const T *x, bf16 *y) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        y[e] = __float2bfloat16_rn(ld(x, e));
}

/* Random init for tests and benchmarks: w[e] uniform in [lo, hi) from a SplitMix64 hash of (seed, e), so it needs
 * no generator state and gives the same values on any grid. T is float or bf16. */
template <typename T> __global__ void rand_kernel(size_t n, T *w, uint64_t seed, float lo, float hi) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + e * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        st(w, e, lo + (hi - lo) * (float)((z >> 40) * (1.0 / 16777216.0)));
    }
}

} // namespace mrwcu

/* return the status of x when it is not MRW_OK */
#define TRY(x)                                                                                             \
    do {                                                                                                   \
        mrw_status s_ = (x);                                                                               \
        if (s_) return s_;                                                                                 \
    } while (0)

#endif
