/* Adam(W) and the two-pass global gradient norm (adam.h). Element-wise, grid-stride; reductions in double
 * with a fixed grid and a fixed combination order, so the norm does not depend on timing. */
#include <math.h>

#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/cuda/adam.h"
}

using namespace mrwcu;

namespace {

__global__ void sumsq_kernel(size_t n, const float *g, double *part) {
    __shared__ double sh[32];
    double s = 0;
    const size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x, nth = (size_t)gridDim.x * blockDim.x;
    size_t head = 0; /* elements before the first 16-byte boundary */
    if ((uintptr_t)g & 15) head = (16 - ((uintptr_t)g & 15)) / 4;
    if (head > n) head = n;
    if (tid < head) s += (double)g[tid] * g[tid];
    const size_t n4 = (n - head) / 4;
    const float4 *g4 = (const float4 *)(g + head);
    for (size_t e = tid; e < n4; e += nth) { /* 4 squares in fp32, then into the double sum */
        const float4 x = g4[e];
        s += (double)(x.x * x.x + x.y * x.y + x.z * x.z + x.w * x.w);
    }
    for (size_t e = head + 4 * n4 + tid; e < n; e += nth) s += (double)g[e] * g[e];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

/* One warp per tensor (warp w takes tensors w, w + nw, ...): each lane sums a fixed 1/32 of the tensor's
 * partials, then a butterfly; the warps' totals are combined by thread 0 in warp order. Deterministic. */
__global__ void norm_finish_kernel(int nt, const double *part, float max_norm, float *out, double *tsum) {
    __shared__ double wsum[32];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    double acc = 0;
    for (int i = wid; i < nt; i += nw) {
        double s = 0;
        for (int b = lane; b < MRW_CUDA_NORM_BLOCKS; b += 32) s += part[(size_t)i * MRW_CUDA_NORM_BLOCKS + b];
        s = warp_sum(s);
        if (lane == 0 && tsum) tsum[i] = s;
        acc += s;
    }
    if (lane == 0) wsum[wid] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0;
        for (int w = 0; w < nw; w++) total += wsum[w];
        const double norm = sqrt(total);
        const float c = max_norm / ((float)norm + 1e-6f);
        out[0] = (float)norm;
        out[1] = max_norm > 0 && c < 1.0f ? c : 1.0f;
    }
}

/* Every operation explicitly rounded (no FMA contraction), in the CPU optimizer's order: with L2 decay g + wd w can
 * cancel, and a contracted multiply-add there flips the sign of a tiny gradient, i.e. of a whole lr-sized step. */
__global__ void adam_kernel(size_t n, float *w, const float *g, float *m, float *v, bf16 *wbf, mrw_cuda_adam_hp hp,
                            const float *coef) {
    const float c = coef ? *coef : 1.0f;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        float gj = g[e], wj = w[e];
        if (c < 1.0f) gj = __fmul_rn(gj, c);
        if (hp.l2_decay) gj = __fadd_rn(gj, __fmul_rn(hp.wd, wj));
        const float mj = __fadd_rn(__fmul_rn(m[e], hp.b1), __fmul_rn(gj, hp.omb1));
        const float vj = __fadd_rn(__fmul_rn(v[e], hp.b2), __fmul_rn(__fmul_rn(gj, gj), hp.omb2));
        m[e] = mj, v[e] = vj;
        if (hp.decoupled_decay) wj = __fmul_rn(wj, hp.shrink);
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vj), hp.bc2_sqrt), hp.eps);
        wj = __fsub_rn(wj, __fmul_rn(hp.step_size, __fdiv_rn(mj, denom)));
        w[e] = wj;
        if (wbf) wbf[e] = __float2bfloat16_rn(wj);
    }
}

} // namespace

static_assert(MRW_CUDA_NORM_BLOCKS <= 1024 && MRW_CUDA_NORM_BLOCKS % 32 == 0, "norm blocks");

extern "C" mrw_status mrw_cuda_sumsq_part(size_t n, const float *g, double *part, void *stream, mrw_error *err) {
    if (!part || (n && !g)) return mrw_err(err, MRW_E_ARG, "sumsq (cuda): NULL tensor");
    sumsq_kernel<<<MRW_CUDA_NORM_BLOCKS, 256, 0, (cudaStream_t)stream>>>(n, g, part);
    return launched("sumsq", err);
}

extern "C" mrw_status mrw_cuda_grad_norm_finish(int n_tensors, const double *part, float max_norm, float *out,
                                                double *tensor_sumsq, void *stream, mrw_error *err) {
    if (n_tensors < 0 || (n_tensors && !part) || !out)
        return mrw_err(err, MRW_E_ARG, "grad norm (cuda): bad arguments (%d tensors)", n_tensors);
    norm_finish_kernel<<<1, 512, 0, (cudaStream_t)stream>>>(n_tensors, part, max_norm, out,
                                                                           tensor_sumsq);
    return launched("grad norm", err);
}

extern "C" mrw_cuda_adam_hp mrw_cuda_adam_hparams(double lr, int64_t t, double b1, double b2, double eps,
                                                  double wd, int decoupled, int no_decay) {
    const double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    mrw_cuda_adam_hp h;
    h.step_size = (float)(lr / bc1), h.bc2_sqrt = (float)sqrt(bc2), h.eps = (float)eps;
    h.b1 = (float)b1, h.b2 = (float)b2, h.omb1 = (float)(1.0 - b1), h.omb2 = (float)(1.0 - b2);
    h.wd = (float)wd, h.shrink = (float)(1.0 - lr * wd);
    const int decay = !no_decay && wd > 0;
    h.l2_decay = decay && !decoupled, h.decoupled_decay = decay && decoupled;
    return h;
}

extern "C" mrw_status mrw_cuda_adam_step(size_t n, float *w, const float *g, float *m, float *v, void *wbf,
                                         const mrw_cuda_adam_hp *hp, const float *coef, void *stream,
                                         mrw_error *err) {
    if (!hp || (n && (!w || !g || !m || !v))) return mrw_err(err, MRW_E_ARG, "adam (cuda): NULL tensor");
    if (!n) return MRW_OK;
    adam_kernel<<<grid_for(n, 256), 256, 0, (cudaStream_t)stream>>>(n, w, g, m, v, (bf16 *)wbf, *hp, coef);
    return launched("adam", err);
}
