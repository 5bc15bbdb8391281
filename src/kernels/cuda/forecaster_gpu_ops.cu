/* Device helpers of the GPU forecaster (forecaster_gpu_ops.h). */
#include <stdint.h>
#include <stdlib.h>

#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/cuda/forecaster_gpu_ops.h"
}

using namespace mrwcu;

namespace {

template <typename S, typename D> __global__ void cast_kernel(size_t n, const S *x, D *y) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        st(y, e, ld(x, e));
}

template <typename D> __global__ void rows_to_seq_kernel(int B, int n, int T, int C, const bf16 *src, D *dst) {
    const size_t N = (size_t)B * n * C;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < N; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / C, c = e % C, b = r / n, t = r % n;
        st(dst, (b * T + t) * C + c, ld(src, e));
    }
}

template <typename S> __global__ void seq_to_rows_kernel(int B, int n, int T, int C, const S *src, bf16 *dst) {
    const size_t N = (size_t)B * n * C;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < N; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / C, c = e % C, b = r / n, t = r % n;
        st(dst, e, ld(src, (b * T + t) * C + c));
    }
}

__global__ void part_add_kernel(double *p, double x) { p[0] += x; }

} // namespace

static mrw_status chk(cudaError_t e, const char *what, mrw_error *err) {
    return cuda_status(e, "gpu forecaster", what, err);
}

extern "C" mrw_status mrw_fcg_malloc(void **p, size_t bytes, mrw_error *err) {
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *p = NULL;
        return mrw_err(err, MRW_E_NOMEM, "gpu forecaster: cannot allocate %.3f GiB on the GPU (%s): use a smaller "
                       "--batch", bytes / 1073741824.0, cudaGetErrorString(e));
    }
    return chk(cudaMemset(*p, 0, bytes ? bytes : 16), "memset", err);
}

extern "C" void mrw_fcg_free(void *p) { cudaFree(p); }

extern "C" mrw_status mrw_fcg_copy(void *dst, const void *src, size_t bytes, int dir, void *stream, mrw_error *err) {
    const cudaMemcpyKind k = dir == 0 ? cudaMemcpyHostToDevice : dir == 1 ? cudaMemcpyDeviceToHost
                                                                          : cudaMemcpyDeviceToDevice;
    TRY(chk(cudaMemcpyAsync(dst, src, bytes, k, (cudaStream_t)stream), "copy", err));
    /* host -> device from pageable memory returns once the source is staged; device -> host: wait for the data */
    if (dir == 1) return chk(cudaStreamSynchronize((cudaStream_t)stream), "copy", err);
    return MRW_OK;
}

extern "C" mrw_status mrw_fcg_sync(void *stream, mrw_error *err) {
    return chk(cudaStreamSynchronize((cudaStream_t)stream), "sync", err);
}

extern "C" mrw_status mrw_fcg_cast(size_t n, const void *x, void *y, int to_f32, void *stream, mrw_error *err) {
    if (!n) return MRW_OK;
    cudaStream_t s = (cudaStream_t)stream;
    if (to_f32) cast_kernel<bf16, float><<<grid_for(n, 256), 256, 0, s>>>(n, (const bf16 *)x, (float *)y);
    else cast_kernel<float, bf16><<<grid_for(n, 256), 256, 0, s>>>(n, (const float *)x, (bf16 *)y);
    return launched("gpu forecaster cast", err);
}

extern "C" mrw_status mrw_fcg_rows_to_seq(int B, int n, int T, int C, const void *src, void *dst, int dst_f32,
                                          void *stream, mrw_error *err) {
    const size_t N = (size_t)B * n * C;
    if (!N) return MRW_OK;
    cudaStream_t s = (cudaStream_t)stream;
    if (dst_f32) rows_to_seq_kernel<float><<<grid_for(N, 256), 256, 0, s>>>(B, n, T, C, (const bf16 *)src, (float *)dst);
    else rows_to_seq_kernel<bf16><<<grid_for(N, 256), 256, 0, s>>>(B, n, T, C, (const bf16 *)src, (bf16 *)dst);
    return launched("gpu forecaster rows", err);
}

extern "C" mrw_status mrw_fcg_seq_to_rows(int B, int n, int T, int C, const void *src, int src_f32, void *dst,
                                          void *stream, mrw_error *err) {
    const size_t N = (size_t)B * n * C;
    if (!N) return MRW_OK;
    cudaStream_t s = (cudaStream_t)stream;
    if (src_f32) seq_to_rows_kernel<float><<<grid_for(N, 256), 256, 0, s>>>(B, n, T, C, (const float *)src, (bf16 *)dst);
    else seq_to_rows_kernel<bf16><<<grid_for(N, 256), 256, 0, s>>>(B, n, T, C, (const bf16 *)src, (bf16 *)dst);
    return launched("gpu forecaster rows", err);
}

extern "C" mrw_status mrw_fcg_part_add(double *part, double x, void *stream, mrw_error *err) {
    part_add_kernel<<<1, 1, 0, (cudaStream_t)stream>>>(part, x);
    return launched("gpu forecaster norm", err);
}

extern "C" mrw_status mrw_fcg_part_sum(const double *part, int n, double *sum, void *stream, mrw_error *err) {
    double *h = (double *)malloc((size_t)n * sizeof *h);
    if (!h) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    mrw_status s = mrw_fcg_copy(h, part, (size_t)n * sizeof *h, 1, stream, err);
    double a = 0;
    for (int i = 0; i < n; i++) a += h[i];
    free(h);
    *sum = a;
    return s;
}
