/* LayerNorm and GroupNorm + bonus + gate, forward and backward (norm.h). LayerNorm: one block of 256 threads
 * per row, fp32 statistics by block reductions (two passes over the row: mean, then the centred variance).
 * GroupNorm: one warp per (row, head), each lane two of the head's 64 channels. Parameter gradients: the
 * column sums of common.cuh. */
#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/cuda/norm.h"
}

using namespace mrwcu;

namespace {

constexpr int LN_THREADS = 256;
constexpr int HN = 64;

template <typename T>
__global__ void __launch_bounds__(LN_THREADS) ln_fwd_kernel(int C, const T *x, const float *w, const float *b,
                                                            float eps, T *y, float *mean, float *rstd) {
    __shared__ float sh[32];
    const size_t o = (size_t)blockIdx.x * C;
    float s = 0.f;
    for (int i = threadIdx.x; i < C; i += LN_THREADS) s += ld(x, o + i);
    const float mu = block_sum(s, sh) / C;
    float v = 0.f;
    for (int i = threadIdx.x; i < C; i += LN_THREADS) {
        const float d = ld(x, o + i) - mu;
        v += d * d;
    }
    const float rs = rsqrtf(block_sum(v, sh) / C + eps);
    for (int i = threadIdx.x; i < C; i += LN_THREADS) st(y, o + i, (ld(x, o + i) - mu) * rs * w[i] + b[i]);
    if (threadIdx.x == 0) mean[blockIdx.x] = mu, rstd[blockIdx.x] = rs;
}

template <typename T>
__global__ void __launch_bounds__(LN_THREADS)
    ln_bwd_kernel(int C, const T *dy, const T *x, const float *mean, const float *rstd, const float *w, int acc,
                  T *dx) {
    __shared__ float sh[32];
    const size_t o = (size_t)blockIdx.x * C;
    const float mu = mean[blockIdx.x], rs = rstd[blockIdx.x];
    float m1 = 0.f, m2 = 0.f;
    for (int i = threadIdx.x; i < C; i += LN_THREADS) {
        const float xh = (ld(x, o + i) - mu) * rs, d = ld(dy, o + i) * w[i];
        m1 += d, m2 += d * xh;
    }
    m1 = block_sum(m1, sh) / C;
    m2 = block_sum(m2, sh) / C;
    for (int i = threadIdx.x; i < C; i += LN_THREADS) {
        const float xh = (ld(x, o + i) - mu) * rs;
        const float g = rs * (ld(dy, o + i) * w[i] - m1 - xh * m2);
        st(dx, o + i, acc ? ld(dx, o + i) + g : g);
    }
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
                              const float *rstd, T *dy, T *dr, T *dk, T *dv, T *dg, float *dbeta_out) {
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
            st(dr, e, dbeta * rk[c] * ld(k, e));
            st(dk, e, dbeta * rk[c] * ld(r, e));
        }
    }
    if (lane == 0 && rk) dbeta_out[gw] = dbeta;
}

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
    ln_bwd_kernel<T><<<rows, LN_THREADS, 0, st>>>(C, (const T *)dy, (const T *)x, mean, rstd, w, acc, (T *)dx);
    if (dw || db) {
        ln_param_terms<T> f{(const T *)dy, (const T *)x, mean, rstd, C};
        colsum<2>(rows, C, f, scratch, outs<2>{{dw, db}}, st);
    }
    return launched("layernorm backward", err);
}

template <typename T>
mrw_status gn_bwd_t(int rows, int H, const void *dz, const void *y, const void *r, const void *k, const void *v,
                    const void *g, const float *lnw, const float *lnb, const float *rk, const float *mean,
                    const float *rstd, void *dy, void *dr, void *dk, void *dv, void *dg, float *dlnw, float *dlnb,
                    float *drk, float *scratch, cudaStream_t st, mrw_error *err) {
    const int pairs = rows * H;
    float *dbeta = scratch, *part = scratch + (((size_t)pairs + 3) & ~(size_t)3);
    gn_bwd_kernel<T><<<(pairs + 7) / 8, 256, 0, st>>>(rows, H, (const T *)dz, (const T *)y, (const T *)r,
                                                      (const T *)k, (const T *)v, (const T *)g, lnw, lnb, rk, mean,
                                                      rstd, (T *)dy, (T *)dr, (T *)dk, (T *)dv, (T *)dg, dbeta);
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
    if (dt == MRW_CUDA_F32)
        ln_fwd_kernel<float><<<rows, LN_THREADS, 0, st>>>(C, (const float *)x, w, b, eps, (float *)y, mean, rstd);
    else if (dt == MRW_CUDA_BF16)
        ln_fwd_kernel<bf16><<<rows, LN_THREADS, 0, st>>>(C, (const bf16 *)x, w, b, eps, (bf16 *)y, mean, rstd);
    else
        return mrw_err(err, MRW_E_UNSUPPORTED, "layernorm (cuda): dtype %d", (int)dt);
    return launched("layernorm forward", err);
}

extern "C" size_t mrw_cuda_layernorm_bwd_scratch(int C) { return colsum_scratch_floats<2>(C); }

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
    if (dt == MRW_CUDA_F32)
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
                gn_bwd_t<float>(rows, H, dz, y, r, k, v, g, lnw, lnb, rk, mean, rstd, dy, dr, dk, dv, dg, dlnw, dlnb,
                                drk, scratch, st, err),
                gn_bwd_t<bf16>(rows, H, dz, y, r, k, v, g, lnw, lnb, rk, mean, rstd, dy, dr, dk, dv, dg, dlnw, dlnb,
                               drk, scratch, st, err));
}
