/* Conv1d (im2col + cuBLAS GEMM) and average pooling over sequences, forward and backward (conv1d_gpu.h). */
#include <stdint.h>

#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/cuda/conv1d_gpu.h"
}

using namespace mrwcu;

namespace {

/* col[(b*Tout + t)][ci*K + j] = bf16(x[b][t*s - p + j][ci]), 0 outside [0, Tin) */
template <typename T>
__global__ void im2col_kernel(size_t n, int Tin, int Cin, int K, int s, int p, int Tout, const T *x, bf16 *col) {
    const size_t cols = (size_t)Cin * K;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t row = e / cols, c = e % cols;
        const int b = (int)(row / Tout), t = (int)(row % Tout), ci = (int)(c / K), j = (int)(c % K);
        const int ti = t * s - p + j;
        col[e] = ti >= 0 && ti < Tin ? __float2bfloat16_rn(ld(x, ((size_t)b * Tin + ti) * Cin + ci))
                                     : __float2bfloat16_rn(0.f);
    }
}

/* y[r][o] = yf[r][o] + b[o] (b NULL: 0), in y's dtype (y may be yf) */
template <typename T> __global__ void bias_out_kernel(size_t n, int Cout, const float *yf, const float *b, T *y) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        st(y, e, yf[e] + (b ? b[e % Cout] : 0.f));
}

/* dx[b][ti][ci] = sum over j with (ti + p - j) = t*s, 0 <= t < Tout, of dcol[b*Tout + t][ci*K + j] (the gather form
 * of col2im: no two threads write one element) */
template <typename T>
__global__ void col2im_kernel(size_t n, int Tin, int Cin, int K, int s, int p, int Tout, const float *dcol, T *dx) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int ci = (int)(e % Cin);
        const size_t bt = e / Cin;
        const int ti = (int)(bt % Tin), b = (int)(bt / Tin);
        float acc = 0.f;
        for (int j = 0; j < K; j++) {
            const int u = ti + p - j;
            if (u < 0 || u % s) continue;
            const int t = u / s;
            if (t >= Tout) continue;
            acc += dcol[((size_t)b * Tout + t) * ((size_t)Cin * K) + (size_t)ci * K + j];
        }
        st(dx, e, acc);
    }
}

/* y[b][t][c] = (sum_{j<K} x[b][t*s + j][c]) / K */
template <typename T>
__global__ void avgpool_fwd_kernel(size_t n, int Tin, int C, int K, int s, int Tout, const T *x, T *y) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % C);
        const size_t bt = e / C;
        const int t = (int)(bt % Tout), b = (int)(bt / Tout);
        float acc = 0.f;
        for (int j = 0; j < K; j++) acc += ld(x, ((size_t)b * Tin + (size_t)t * s + j) * C + c);
        st(y, e, acc / (float)K);
    }
}

/* dx[b][ti][c] = sum over the windows t holding ti (t*s <= ti < t*s + K, t < Tout) of dy[b][t][c] / K */
template <typename T>
__global__ void avgpool_bwd_kernel(size_t n, int Tin, int C, int K, int s, int Tout, const T *dy, T *dx) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % C);
        const size_t bt = e / C;
        const int ti = (int)(bt % Tin), b = (int)(bt / Tin);
        int t0 = ti - K + 1 <= 0 ? 0 : (ti - K + 1 + s - 1) / s; /* first window reaching ti */
        int t1 = ti / s;                                          /* last window starting at or before ti */
        if (t1 > Tout - 1) t1 = Tout - 1;
        float acc = 0.f;
        for (int t = t0; t <= t1; t++) acc += ld(dy, ((size_t)b * Tout + t) * C + c);
        st(dx, e, acc / (float)K);
    }
}

} // namespace

extern "C" int mrw_cuda_conv1d_out_len(int Tin, int K, int s, int p) {
    if (K < 1 || s < 1 || p < 0 || Tin < 1) return -1;
    const long span = (long)Tin + 2L * p - K;
    return span < 0 ? -1 : (int)(span / s + 1);
}

extern "C" size_t mrw_cuda_conv1d_col_elems(int n, int Tout, int Cin, int K) {
    return n < 1 || Tout < 1 ? 0 : (size_t)n * Tout * Cin * K;
}

static mrw_status conv_args(int n, int Tin, int Cin, int Cout, int K, int s, int p, int *Tout, mrw_error *err) {
    *Tout = mrw_cuda_conv1d_out_len(Tin, K, s, p);
    if (n < 1 || Cin < 1 || Cout < 1 || *Tout < 1 || (double)n * *Tout * Cin * K > 2e9 ||
        (double)n * *Tout > (1 << 30) || (double)Cin * K > (1 << 30))
        return mrw_err(err, MRW_E_ARG, "conv1d (cuda): bad shape: %d sequences of %d rows, %d -> %d channels, kernel %d "
                       "stride %d padding %d", n, Tin, Cin, Cout, K, s, p);
    return MRW_OK;
}

extern "C" mrw_status mrw_cuda_conv1d_fwd(mrw_cuda_blas *h, int n, int Tin, int Cin, int Cout, int K, int s, int p,
                                          mrw_cuda_dtype x_dt, const void *x, const void *w, const float *b, void *col,
                                          float *yf, mrw_cuda_dtype y_dt, void *y, void *stream, mrw_error *err) {
    int Tout;
    TRY(conv_args(n, Tin, Cin, Cout, K, s, p, &Tout, err));
    if (!x || !w || !col || !yf || !y) return mrw_err(err, MRW_E_ARG, "conv1d (cuda): NULL buffer");
    cudaStream_t st = (cudaStream_t)stream;
    const int N = n * Tout, CK = Cin * K;
    const size_t nc = (size_t)N * CK, ny = (size_t)N * Cout;
    if (x_dt == MRW_CUDA_F32)
        im2col_kernel<float><<<grid_for(nc, 256), 256, 0, st>>>(nc, Tin, Cin, K, s, p, Tout, (const float *)x, (bf16 *)col);
    else
        im2col_kernel<bf16><<<grid_for(nc, 256), 256, 0, st>>>(nc, Tin, Cin, K, s, p, Tout, (const bf16 *)x, (bf16 *)col);
    TRY(launched("conv1d im2col", err));
    TRY(mrw_cuda_gemm(h, 0, 1, N, Cout, CK, 1.f, col, CK, w, CK, 0.f, MRW_CUDA_F32, yf, Cout, stream, err));
    if (y_dt == MRW_CUDA_F32) {
        if (b || y != yf) bias_out_kernel<float><<<grid_for(ny, 256), 256, 0, st>>>(ny, Cout, yf, b, (float *)y);
    } else {
        bias_out_kernel<bf16><<<grid_for(ny, 256), 256, 0, st>>>(ny, Cout, yf, b, (bf16 *)y);
    }
    return launched("conv1d bias", err);
}

extern "C" mrw_status mrw_cuda_conv1d_bwd(mrw_cuda_blas *h, int n, int Tin, int Cin, int Cout, int K, int s, int p,
                                          mrw_cuda_dtype x_dt, const void *x, const void *w, const void *dy, void *col,
                                          const void *ones, float *dw, float *db, float *dcol, mrw_cuda_dtype dx_dt,
                                          void *dx, void *stream, mrw_error *err) {
    int Tout;
    TRY(conv_args(n, Tin, Cin, Cout, K, s, p, &Tout, err));
    if (!dy || (dw && (!x || !col)) || (db && !ones) || (dx && (!w || !dcol)))
        return mrw_err(err, MRW_E_ARG, "conv1d (cuda): backward: NULL buffer");
    cudaStream_t st = (cudaStream_t)stream;
    const int N = n * Tout, CK = Cin * K;
    if (dw) {
        const size_t nc = (size_t)N * CK;
        if (x_dt == MRW_CUDA_F32)
            im2col_kernel<float><<<grid_for(nc, 256), 256, 0, st>>>(nc, Tin, Cin, K, s, p, Tout, (const float *)x,
                                                                     (bf16 *)col);
        else
            im2col_kernel<bf16><<<grid_for(nc, 256), 256, 0, st>>>(nc, Tin, Cin, K, s, p, Tout, (const bf16 *)x,
                                                                    (bf16 *)col);
        TRY(launched("conv1d im2col", err));
        TRY(mrw_cuda_gemm(h, 1, 0, Cout, CK, N, 1.f, dy, Cout, col, CK, 1.f, MRW_CUDA_F32, dw, CK, stream, err));
    }
    if (db) TRY(mrw_cuda_gemm(h, 1, 0, Cout, 1, N, 1.f, dy, Cout, ones, 1, 1.f, MRW_CUDA_F32, db, 1, stream, err));
    if (dx) {
        TRY(mrw_cuda_gemm(h, 0, 0, N, CK, Cout, 1.f, dy, Cout, w, CK, 0.f, MRW_CUDA_F32, dcol, CK, stream, err));
        const size_t nx = (size_t)n * Tin * Cin;
        if (dx_dt == MRW_CUDA_F32)
            col2im_kernel<float><<<grid_for(nx, 256), 256, 0, st>>>(nx, Tin, Cin, K, s, p, Tout, dcol, (float *)dx);
        else
            col2im_kernel<bf16><<<grid_for(nx, 256), 256, 0, st>>>(nx, Tin, Cin, K, s, p, Tout, dcol, (bf16 *)dx);
        TRY(launched("conv1d col2im", err));
    }
    return MRW_OK;
}

static mrw_status pool_args(int n, int Tin, int C, int K, int s, const void *a, const void *b, int *Tout,
                            mrw_error *err) {
    *Tout = mrw_cuda_conv1d_out_len(Tin, K, s, 0);
    if (n < 1 || C < 1 || *Tout < 1 || (double)n * Tin * C > 4e9 || !a || !b)
        return mrw_err(err, MRW_E_ARG, "avgpool (cuda): bad shape or NULL buffer: %d sequences of %d rows x %d, "
                       "kernel %d stride %d", n, Tin, C, K, s);
    return MRW_OK;
}

extern "C" mrw_status mrw_cuda_avgpool_fwd(mrw_cuda_dtype dt, int n, int Tin, int C, int K, int s, const void *x,
                                           void *y, void *stream, mrw_error *err) {
    int Tout;
    TRY(pool_args(n, Tin, C, K, s, x, y, &Tout, err));
    cudaStream_t st = (cudaStream_t)stream;
    const size_t ny = (size_t)n * Tout * C;
    if (dt == MRW_CUDA_F32)
        avgpool_fwd_kernel<float><<<grid_for(ny, 256), 256, 0, st>>>(ny, Tin, C, K, s, Tout, (const float *)x, (float *)y);
    else
        avgpool_fwd_kernel<bf16><<<grid_for(ny, 256), 256, 0, st>>>(ny, Tin, C, K, s, Tout, (const bf16 *)x, (bf16 *)y);
    return launched("avgpool", err);
}

extern "C" mrw_status mrw_cuda_avgpool_bwd(mrw_cuda_dtype dt, int n, int Tin, int C, int K, int s, const void *dy,
                                           void *dx, void *stream, mrw_error *err) {
    int Tout;
    TRY(pool_args(n, Tin, C, K, s, dy, dx, &Tout, err));
    cudaStream_t st = (cudaStream_t)stream;
    const size_t nx = (size_t)n * Tin * C;
    if (dt == MRW_CUDA_F32)
        avgpool_bwd_kernel<float><<<grid_for(nx, 256), 256, 0, st>>>(nx, Tin, C, K, s, Tout, (const float *)dy,
                                                                      (float *)dx);
    else
        avgpool_bwd_kernel<bf16><<<grid_for(nx, 256), 256, 0, st>>>(nx, Tin, C, K, s, Tout, (const bf16 *)dy,
                                                                     (bf16 *)dx);
    return launched("avgpool backward", err);
}
