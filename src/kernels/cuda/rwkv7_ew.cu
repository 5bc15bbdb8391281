/* RWKV-7 element-wise chains (rwkv7_ew.h). Token shift / mixes and relu^2: one thread per element (grid-stride).
 * Key prep: one warp per (row, head), each lane two of the head's 64 channels (the L2 norm of k_k * kraw and
 * the dot product of its backward are warp sums). Parameter gradients: the column sums of common.cuh. */
#include "kernels/cuda/common.cuh"

extern "C" {
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

template <typename T>
__global__ void kp_fwd_kernel(int rows, int H, kp_in<T> in, T *wlog, T *k, T *v, T *a, T *b) {
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
};

template <typename T>
__global__ void kp_bwd_kernel(int rows, int H, kp_in<T> in, kp_grad<T> g, float *stats) {
    const int gw = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (gw >= rows * H) return;
    const int h = gw % H;
    const size_t o = (size_t)gw * HN;
    float kr[2], kk[2], al[2], dkh[2], ss = 0.f;
#pragma unroll
    for (int q = 0; q < 2; q++) {
        const size_t e = o + lane + 32 * q;
        const int c = h * HN + lane + 32 * q;
        kr[q] = ld(in.kraw, e);
        kk[q] = kr[q] * in.k_k[c];
        ss += kk[q] * kk[q];
        al[q] = sigm(in.a0[c] + ld(in.pa, e));
    }
    const float nrm = sqrtf(warp_sum(ss)), inv = 1.f / fmaxf(nrm, L2_FLOOR);
    float dot = 0.f;
#pragma unroll
    for (int q = 0; q < 2; q++) {
        const size_t e = o + lane + 32 * q;
        kk[q] *= inv; /* khat */
        dkh[q] = -ld(g.da, e) + ld(g.db, e) * al[q];
        dot += dkh[q] * kk[q];
    }
    dot = warp_sum(dot);
    if (lane == 0) stats[2 * (size_t)gw] = dot, stats[2 * (size_t)gw + 1] = nrm;
#pragma unroll
    for (int q = 0; q < 2; q++) {
        const size_t e = o + lane + 32 * q;
        const int c = h * HN + lane + 32 * q;
        const float dkt = ld(g.dk, e) + (g.dk2 ? ld(g.dk2, e) : 0.f);
        const float dvt = ld(g.dv, e) + (g.dv2 ? ld(g.dv2, e) : 0.f);
        const float dkap = nrm > L2_FLOOR ? (dkh[q] - kk[q] * dot) / nrm : dkh[q] / L2_FLOOR;
        st(g.dkraw, e, dkt * (1.f + (al[q] - 1.f) * in.k_a[c]) + dkap * in.k_k[c]);
        const float dal = ld(g.db, e) * kk[q] + dkt * kr[q] * in.k_a[c];
        st(g.dpa, e, dal * al[q] * (1.f - al[q]));
        st(g.dpw, e, ld(g.dwlog, e) * (1.f - sigm(in.w0[c] + ld(in.pw, e))));
        if (in.pv) {
            const float gt = sigm(in.v0[c] + ld(in.pv, e)), vr = ld(in.vraw, e);
            g.dvfirst[e] += dvt * gt;
            st(g.dpv, e, dvt * (ld(in.vfirst, e) - vr) * gt * (1.f - gt));
            st(g.dvraw, e, dvt * (1.f - gt));
        } else {
            st(g.dvraw, e, dvt + (g.dvfirst ? g.dvfirst[e] : 0.f));
        }
        if (g.dr && g.dr2) st(g.dr, e, ld(g.dr, e) + ld(g.dr2, e));
    }
}

/* Parameter terms: w0 <- dpw, a0 <- dpa, v0 <- dpv, k_a <- dk kraw (alpha - 1), k_k <- dkappa kraw, all recomputed
 * here in fp32 from the inputs (not read back from the bf16-rounded dpw / dpa / dpv). */
template <typename T> struct kp_param_terms {
    kp_in<T> in;
    kp_grad<T> g;
    const float *stats;
    int H;
    __device__ void operator()(int r, int c, float acc[5]) const {
        const size_t e = (size_t)r * H * HN + c;
        const int s = r * H + c / HN;
        acc[0] += ld(g.dwlog, e) * (1.f - sigm(in.w0[c] + ld(in.pw, e)));
        const float kr = ld(in.kraw, e), al = sigm(in.a0[c] + ld(in.pa, e));
        const float dkt = ld(g.dk, e) + (g.dk2 ? ld(g.dk2, e) : 0.f);
        const float dot = stats[2 * (size_t)s], nrm = stats[2 * (size_t)s + 1];
        const float kh = kr * in.k_k[c] / fmaxf(nrm, L2_FLOOR);
        acc[1] += (ld(g.db, e) * kh + dkt * kr * in.k_a[c]) * al * (1.f - al);
        if (in.pv) {
            const float gt = sigm(in.v0[c] + ld(in.pv, e));
            const float dvt = ld(g.dv, e) + (g.dv2 ? ld(g.dv2, e) : 0.f);
            acc[2] += dvt * (ld(in.vfirst, e) - ld(in.vraw, e)) * gt * (1.f - gt);
        }
        acc[3] += dkt * kr * (al - 1.f);
        const float dkh = -ld(g.da, e) + ld(g.db, e) * al;
        const float dkap = nrm > L2_FLOOR ? (dkh - kh * dot) / nrm : dkh / L2_FLOOR;
        acc[4] += dkap * kr;
    }
};

template <typename T> kp_in<T> cast_in(const mrw_cuda_keyprep_in *p) {
    return kp_in<T>{(const T *)p->pw, (const T *)p->pa, (const T *)p->pv, (const T *)p->kraw, (const T *)p->vraw,
                    (const T *)p->vfirst, p->w0, p->a0, p->v0, p->k_k, p->k_a};
}

template <typename T>
mrw_status kp_fwd_t(int rows, int H, const mrw_cuda_keyprep_in *in, void *wlog, void *k, void *v, void *a, void *b,
                    cudaStream_t st, mrw_error *err) {
    kp_fwd_kernel<T><<<(unsigned)(((long long)rows * H + 7) / 8), 256, 0, st>>>(rows, H, cast_in<T>(in), (T *)wlog,
                                                                                (T *)k, (T *)v, (T *)a, (T *)b);
    return launched("keyprep forward", err);
}

template <typename T>
mrw_status kp_bwd_t(int rows, int H, const mrw_cuda_keyprep_in *in, const mrw_cuda_keyprep_grad *gp,
                    float *scratch, cudaStream_t st, mrw_error *err) {
    kp_grad<T> g{(const T *)gp->dwlog, (const T *)gp->dk, (const T *)gp->dv, (const T *)gp->da, (const T *)gp->db,
                 (const T *)gp->dk_bonus, (const T *)gp->dv_bonus, (const T *)gp->dr_bonus, (T *)gp->dr,
                 (T *)gp->dpw, (T *)gp->dpa, (T *)gp->dpv, (T *)gp->dkraw, (T *)gp->dvraw, gp->dvfirst};
    const kp_in<T> ki = cast_in<T>(in);
    const size_t pairs = (size_t)rows * H;
    float *stats = scratch, *part = scratch + 2 * pairs;
    kp_bwd_kernel<T><<<(unsigned)((pairs + 7) / 8), 256, 0, st>>>(rows, H, ki, g, stats);
    if (gp->dw0 || gp->da0 || gp->dv0 || gp->dk_k || gp->dk_a) {
        kp_param_terms<T> f{ki, g, stats, H};
        colsum<5>(rows, H * HN, f, part, outs<5>{{gp->dw0, gp->da0, in->pv ? gp->dv0 : nullptr, gp->dk_a, gp->dk_k}},
                  st);
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
    cudaStream_t st = (cudaStream_t)stream;
    DT_DISPATCH("keyprep backward", kp_bwd_t<float>(rows, H, in, g, scratch, st, err),
                kp_bwd_t<bf16>(rows, H, in, g, scratch, st, err));
}

extern "C" mrw_status mrw_cuda_relu2_fwd(mrw_cuda_dtype dt, size_t n, const void *h, void *act, void *stream,
                                         mrw_error *err) {
    if (!n || !h || !act) return mrw_err(err, MRW_E_ARG, "relu2 (cuda): bad arguments");
    cudaStream_t st = (cudaStream_t)stream;
    if (dt == MRW_CUDA_F32)
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
    if (dt == MRW_CUDA_F32)
        relu2_bwd_kernel<float><<<grid_for(n, 256), 256, 0, st>>>(n, (const float *)h, (float *)d);
    else if (dt == MRW_CUDA_BF16)
        relu2_bwd_kernel<bf16><<<grid_for(n, 256), 256, 0, st>>>(n, (const bf16 *)h, (bf16 *)d);
    else
        return mrw_err(err, MRW_E_UNSUPPORTED, "relu2 backward (cuda): dtype %d", (int)dt);
    return launched("relu2 backward", err);
}
