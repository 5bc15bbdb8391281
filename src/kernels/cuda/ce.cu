/* Fused cross-entropy forward + gradient (ce.h). One block of 1024 threads per row: an online max / sum of
 * exponentials over the row (each thread a strided slice, combined by a block reduction of (max, sum) pairs),
 * then, for the gradient, a second pass that overwrites the row with scale * (softmax - onehot). Rows of a
 * multiple of 8 bf16 / 4 floats, 16-byte aligned, take ce_vec_kernel (16-byte accesses). */
#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/cuda/ce.h"
}

using namespace mrwcu;

namespace {

constexpr int CE_THREADS = 1024;

__device__ __forceinline__ void ms_combine(float &m, float &s, float m2, float s2) {
    if (s2 == 0.f) return;
    if (s == 0.f) {
        m = m2, s = s2;
        return;
    }
    const float mx = fmaxf(m, m2);
    s = s * expf(m - mx) + s2 * expf(m2 - mx);
    m = mx;
}

template <typename T>
__global__ void __launch_bounds__(CE_THREADS)
    ce_kernel(int V, T *logits, const int32_t *targets, int grad, float scale, float *row_loss, float *row_lse) {
    __shared__ float shm[32], shs[32];
    const size_t r = blockIdx.x;
    T *x = logits + r * (size_t)V;
    const int tgt = targets[r];
    const bool ignore = tgt == MRW_CUDA_IGNORE, valid = tgt >= 0 && tgt < V;
    const float xt = valid ? ld(x, tgt) : 0.f; /* read before anything is overwritten (barriers below) */
    float m = -INFINITY, s = 0.f;
    for (int v = threadIdx.x; v < V; v += CE_THREADS) {
        const float a = ld(x, v);
        if (a > m) {
            s = s * expf(m - a) + 1.f;
            m = a;
        } else {
            s += expf(a - m);
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_combine(m, s, m2, s2);
    }
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) shm[wid] = m, shs[wid] = s;
    __syncthreads();
    m = shm[lane], s = shs[lane]; /* CE_THREADS = 1024: 32 warps */
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_combine(m, s, m2, s2);
    }
    const float lse = m + logf(s);
    if (threadIdx.x == 0) {
        row_loss[r] = ignore ? 0.f : valid ? lse - xt : NAN;
        if (row_lse) row_lse[r] = lse;
    }
    if (!grad) return;
    for (int v = threadIdx.x; v < V; v += CE_THREADS) {
        const float a = ld(x, v);
        st(x, v, ignore ? 0.f : expf(a - lse) * scale - (v == tgt ? scale : 0.f));
    }
}

/* The same with 16-byte accesses (8 bf16 or 4 floats a thread and request; V a multiple of that, the row
 * 16-byte aligned): the running max is updated once per vector and the exponentials taken against it, so the
 * first pass costs one rescale per vector instead of a branch per element. */
template <typename T> struct vec16;
template <> struct vec16<bf16> {
    static constexpr int N = 8;
    static __device__ __forceinline__ void load(const uint4 &u, float *a) {
        const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float2 f = __bfloat1622float2(h[k]);
            a[2 * k] = f.x, a[2 * k + 1] = f.y;
        }
    }
    static __device__ __forceinline__ uint4 store(const float *a) {
        uint4 u;
        __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
        for (int k = 0; k < 4; k++) h[k] = __floats2bfloat162_rn(a[2 * k], a[2 * k + 1]);
        return u;
    }
};
template <> struct vec16<float> {
    static constexpr int N = 4;
    static __device__ __forceinline__ void load(const uint4 &u, float *a) {
        a[0] = __uint_as_float(u.x), a[1] = __uint_as_float(u.y), a[2] = __uint_as_float(u.z),
        a[3] = __uint_as_float(u.w);
    }
    static __device__ __forceinline__ uint4 store(const float *a) {
        return make_uint4(__float_as_uint(a[0]), __float_as_uint(a[1]), __float_as_uint(a[2]), __float_as_uint(a[3]));
    }
};

template <typename T>
__global__ void __launch_bounds__(CE_THREADS)
    ce_vec_kernel(int V, T *logits, const int32_t *targets, int grad, float scale, float *row_loss, float *row_lse) {
    constexpr int N = vec16<T>::N;
    __shared__ float shm[32], shs[32];
    const size_t r = blockIdx.x;
    T *x = logits + r * (size_t)V;
    uint4 *xv = (uint4 *)x;
    const int nv = V / N;
    const int tgt = targets[r];
    const bool ignore = tgt == MRW_CUDA_IGNORE, valid = tgt >= 0 && tgt < V;
    const float xt = valid ? ld(x, tgt) : 0.f; /* read before anything is overwritten (barriers below) */
    float m = -INFINITY, s = 0.f;
    for (int i = threadIdx.x; i < nv; i += CE_THREADS) {
        float a[N];
        vec16<T>::load(xv[i], a);
        float lm = a[0];
#pragma unroll
        for (int k = 1; k < N; k++) lm = fmaxf(lm, a[k]);
        if (lm > m) {
            s *= expf(m - lm);
            m = lm;
        }
#pragma unroll
        for (int k = 0; k < N; k++) s += expf(a[k] - m);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_combine(m, s, m2, s2);
    }
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) shm[wid] = m, shs[wid] = s;
    __syncthreads();
    m = shm[lane], s = shs[lane];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_combine(m, s, m2, s2);
    }
    const float lse = m + logf(s);
    if (threadIdx.x == 0) {
        row_loss[r] = ignore ? 0.f : valid ? lse - xt : NAN;
        if (row_lse) row_lse[r] = lse;
    }
    if (!grad) return;
    for (int i = threadIdx.x; i < nv; i += CE_THREADS) {
        float a[N];
        vec16<T>::load(xv[i], a);
#pragma unroll
        for (int k = 0; k < N; k++)
            a[k] = ignore ? 0.f : expf(a[k] - lse) * scale - (i * N + k == tgt ? scale : 0.f);
        xv[i] = vec16<T>::store(a);
    }
}

__global__ void loss_mean_kernel(int rows, const float *row_loss, const int32_t *targets, float *out) {
    __shared__ double sh[32];
    double s = 0, n = 0;
    for (int r = threadIdx.x; r < rows; r += blockDim.x)
        if (targets[r] != MRW_CUDA_IGNORE) s += row_loss[r], n += 1;
    s = block_sum(s, sh);
    n = block_sum(n, sh);
    if (threadIdx.x == 0) out[0] = n > 0 ? (float)(s / n) : 0.f, out[1] = (float)n;
}

} // namespace

extern "C" mrw_status mrw_cuda_cross_entropy(mrw_cuda_dtype dt, int rows, int V, void *logits,
                                             const int32_t *targets, int grad, float scale, float *row_loss,
                                             float *row_lse, void *stream, mrw_error *err) {
    if (rows < 1 || V < 1) return mrw_err(err, MRW_E_ARG, "cross_entropy (cuda): bad shape rows=%d V=%d", rows, V);
    if (!logits || !targets || !row_loss)
        return mrw_err(err, MRW_E_ARG, "cross_entropy (cuda): logits, targets and row_loss are required");
    cudaStream_t st = (cudaStream_t)stream;
    const bool a16 = !((uintptr_t)logits & 15);
    if (dt == MRW_CUDA_F32 && a16 && V % 4 == 0)
        ce_vec_kernel<float><<<rows, CE_THREADS, 0, st>>>(V, (float *)logits, targets, grad, scale, row_loss, row_lse);
    else if (dt == MRW_CUDA_BF16 && a16 && V % 8 == 0)
        ce_vec_kernel<bf16><<<rows, CE_THREADS, 0, st>>>(V, (bf16 *)logits, targets, grad, scale, row_loss, row_lse);
    else if (dt == MRW_CUDA_F32)
        ce_kernel<float><<<rows, CE_THREADS, 0, st>>>(V, (float *)logits, targets, grad, scale, row_loss, row_lse);
    else if (dt == MRW_CUDA_BF16)
        ce_kernel<bf16><<<rows, CE_THREADS, 0, st>>>(V, (bf16 *)logits, targets, grad, scale, row_loss, row_lse);
    else
        return mrw_err(err, MRW_E_UNSUPPORTED, "cross_entropy (cuda): dtype %d", (int)dt);
    return launched("cross_entropy", err);
}

extern "C" mrw_status mrw_cuda_loss_mean(int rows, const float *row_loss, const int32_t *targets, float *out,
                                         void *stream, mrw_error *err) {
    if (rows < 1 || !row_loss || !targets || !out)
        return mrw_err(err, MRW_E_ARG, "loss_mean (cuda): bad arguments (rows=%d)", rows);
    loss_mean_kernel<<<1, 1024, 0, (cudaStream_t)stream>>>(rows, row_loss, targets, out);
    return launched("loss_mean", err);
}
