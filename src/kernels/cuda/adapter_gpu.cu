/* The ModRWKV adapters on the GPU (adapter_gpu.h). Optional convolutions first (conv1d_gpu.h; per sequence):
 *     xc = compress(x) (Conv1d E->E, k, s, bias) ; xv = conv(xc or x) ; the MLP's input xm = xv, xc or x
 * then the MLP (on xm; Cv its width). Without LayerNorm (v1 audio) out = h. Forward of the MLP:
 *     h1 = x W1^T (fp32) ; a1 = relu(h1 + b1) (bf16, kept) ; h = a1 W2^T + b2 (bf16, kept) ; y = LN(h) ; out = h + y
 * (h1 stays fp32 until the ReLU so that its sign, which gates the whole first layer's gradient, is decided on the
 * accurate value: a bf16 h1 flips the ReLU of ~0.1% of the elements against an fp32 reference, and each flip is a
 * whole element of da1: ~3% norm error in dW1, db1, dx.)
 * Backward from d_out:
 *     dh = d_out + LN_bwd(d_out) (LayerNorm backward accumulating into a copy of d_out; dlnw, dlnb +=)
 *     db2 += colsum(dh), dW2 += dh^T a1, da1 = dh W2, da1 *= [a1 > 0], db1 += colsum(da1), dW1 += da1^T x,
 *     dx = da1 W1 (when asked)
 * The column sums are GEMMs against a vector of ones (deterministic, fp32 accumulation). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/cuda/adam.h"
#include "kernels/cuda/adapter_gpu.h"
#include "kernels/cuda/conv1d_gpu.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"
}

using namespace mrwcu;

#define AD_LN_EPS 1e-5f

struct mrw_adapter_gpu {
    int E, C, Hd, max_rows, rows, valid;
    /* convolutions (adapter_gpu_config): compression (ck 0 = none), adapter conv (vk 0 = none); Cv: the MLP's
     * input width; ln: h + LN(h) */
    int ck, cs_, vk, vs, vp, vout, vbias, Cv, ln;
    int ic_w, ic_b, iv_w, iv_b;     /* -1 = absent */
    int max_items, max_Tin, in_cap; /* in_cap: input rows (max_items * max_Tin) */
    int n_seq, T_in, T_c, T_o;      /* the last forward_seq's shape */
    bf16 *col, *xc, *xv, *dxv, *dxc;
    float *yf, *dcol;
    size_t ones_n;
    const void *x_in;               /* the forward_seq input (the compression's / conv's input) */
    cudaStream_t st;
    mrw_cuda_blas *blas;
    mrw_param_set ps; /* table only */
    int iw1, ib1, iw2, ib2, ilnw, ilnb;
    float *w, *g, *m, *v, *norm_out, *mean, *rstd, *cs, *h1;
    double *norm_part;
    bf16 *wbf, *a1, *h, *dh, *da1, *ones;
    const void *x;
    int64_t t_adam;
    size_t bytes;
    /* the CLI trainer's buffers (mrw_adapter_gpu_trainer_buffers; NULL until then) */
    float *xf;
    bf16 *xb, *yo, *dyo;
    int32_t *pos;
    void *inj, *dinj;
    mrw_cuda_dtype inj_dt;
    size_t inj_rows;
    int rows_pos;
    int inj_shared; /* inj / dinj belong to another adapter (mrw_adapter_gpu_share_trainer_buffers) */
};

namespace {

/* a[r][c] = bf16(relu(h[r][c] + b[c])) (pairs; N even) */
__global__ void bias_relu_f32_kernel(size_t n2, int N, const float *h, const float *b, bf16 *a) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n2; i += (size_t)gridDim.x * blockDim.x) {
        const size_t e = 2 * i;
        const int c = (int)(e % N);
        const float2 v = ld2(h, e);
        st2(a, e, fmaxf(v.x + b[c], 0.f), fmaxf(v.y + b[c + 1], 0.f));
    }
}

/* y[r][c] = relu?(y[r][c] + b[c]) in place (bf16 pairs; N even) */
__global__ void bias_relu_kernel(size_t n2, int N, bf16 *y, const float *b, int relu) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n2; i += (size_t)gridDim.x * blockDim.x) {
        const size_t e = 2 * i;
        const int c = (int)(e % N);
        const float2 v = ld2(y, e);
        float p = v.x + b[c], q = v.y + b[c + 1];
        if (relu) p = fmaxf(p, 0.f), q = fmaxf(q, 0.f);
        st2(y, e, p, q);
    }
}

/* out += h (bf16 pairs) */
__global__ void add_kernel(size_t n2, bf16 *out, const bf16 *h) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n2; i += (size_t)gridDim.x * blockDim.x) {
        const float2 a = ld2(out, 2 * i), b = ld2(h, 2 * i);
        st2(out, 2 * i, a.x + b.x, a.y + b.y);
    }
}

/* d *= [a > 0] (the ReLU's derivative, from its output) */
__global__ void relu_bwd_kernel(size_t n2, bf16 *d, const bf16 *a) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n2; i += (size_t)gridDim.x * blockDim.x) {
        const float2 x = ld2(d, 2 * i), y = ld2(a, 2 * i);
        st2(d, 2 * i, y.x > 0.f ? x.x : 0.f, y.y > 0.f ? x.y : 0.f);
    }
}

__global__ void fill_kernel(size_t n, bf16 *y, float v) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        y[e] = __float2bfloat16_rn(v);
}


/* dst[pos[r]][c] = src[r][c] (src bf16; dst fp32 or bf16) */
template <typename T>
__global__ void scatter_rows_kernel(size_t n, int C, const int32_t *pos, const bf16 *src, T *dst) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / C, c = e % C;
        const float x = __bfloat162float(src[e]);
        if constexpr (sizeof(T) == 4) dst[(size_t)pos[r] * C + c] = x;
        else dst[(size_t)pos[r] * C + c] = __float2bfloat16_rn(x);
    }
}

/* dst[r][c] = bf16(src[pos[r]][c]) (src fp32 or bf16) */
template <typename T>
__global__ void gather_rows_kernel(size_t n, int C, const int32_t *pos, const T *src, bf16 *dst) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / C, c = e % C;
        float x;
        if constexpr (sizeof(T) == 4) x = src[(size_t)pos[r] * C + c];
        else x = __bfloat162float(src[(size_t)pos[r] * C + c]);
        dst[e] = __float2bfloat16_rn(x);
    }
}

__global__ void add_f64_kernel(int n, double *y, const double *x) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}

} // namespace

static mrw_status cuda_chk(cudaError_t e, const char *what, mrw_error *err) {
    return cuda_status(e, "adapter (cuda)", what, err);
}

#define AW(i) (a->w + a->ps.p[(i)].offset)
#define AG(i) (a->g + a->ps.p[(i)].offset)
#define ABF(i) (a->wbf + a->ps.p[(i)].offset)

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

extern "C" mrw_status mrw_adapter_gpu_new_ex(const mrw_adapter_gpu_config *cfg, int max_items, int max_Tin,
                                             void *stream, mrw_adapter_gpu **out, mrw_error *err) {
    *out = NULL;
    const int E = cfg->E, C = cfg->C, Hd = cfg->hidden ? cfg->hidden : 4 * C;
    const int vk = cfg->conv_k, ck = cfg->compress_k, vout = vk ? cfg->conv_out : 0, Cv = vk ? vout : E;
    if (E < 2 || C < 2 || Hd < 2 || E % 2 || C % 2 || Hd % 2 || Cv % 2 || E > (1 << 16) || C > (1 << 16) ||
        Hd > (1 << 18) || max_items < 1 || max_Tin < 1 || (double)max_items * max_Tin > (1 << 24) ||
        (vk && (vk < 1 || vk > 64 || cfg->conv_s < 1 || cfg->conv_p < 0 || vout < 2 || vout > (1 << 18))) ||
        (ck && (ck < 1 || ck > 4096 || cfg->compress_s < 1)))
        return mrw_err(err, MRW_E_ARG, "adapter (cuda): bad sizes E %d C %d hidden %d conv %d->%d k%d s%d p%d "
                       "compress k%d s%d, %d x %d rows (even widths needed)", E, C, Hd, E, vout, vk, cfg->conv_s,
                       cfg->conv_p, ck, cfg->compress_s, max_items, max_Tin);
    mrw_adapter_gpu *a = (mrw_adapter_gpu *)calloc(1, sizeof *a);
    if (!a) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    a->E = E, a->C = C, a->Hd = Hd, a->Cv = Cv, a->ln = cfg->ln;
    a->ck = ck, a->cs_ = ck ? cfg->compress_s : 0;
    a->vk = vk, a->vs = vk ? cfg->conv_s : 0, a->vp = vk ? cfg->conv_p : 0, a->vout = vout, a->vbias = vk && cfg->conv_bias;
    a->max_items = max_items, a->max_Tin = max_Tin, a->in_cap = max_items * max_Tin;
    a->ic_w = a->ic_b = a->iv_w = a->iv_b = a->ilnw = a->ilnb = -1;
    /* lengths grow with the input: the largest at max_Tin (at least one row, so that the buffers exist) */
    int Tc = ck ? mrw_cuda_conv1d_out_len(max_Tin, ck, a->cs_, 0) : max_Tin;
    if (Tc < 1) Tc = 1;
    int To = vk ? mrw_cuda_conv1d_out_len(Tc, vk, a->vs, a->vp) : Tc;
    if (To < 1) To = 1;
    const size_t It = (size_t)max_items, R = It * To;
    if (R > (1u << 24)) {
        free(a);
        return mrw_err(err, MRW_E_ARG, "adapter (cuda): %zu output rows is too many", R);
    }
    a->max_rows = (int)R;
    a->st = (cudaStream_t)stream;
    const int64_t s1[2] = {Hd, Cv}, s2[2] = {C, Hd}, sh[1] = {Hd}, sc[1] = {C}, se[1] = {E}, sv[1] = {vout};
    const int64_t scw[3] = {E, E, ck}, svw[3] = {vout, E, vk};
    const int v1 = cfg->v1_names;
    int bad = 0;
    if (ck) {
        bad |= (a->ic_w = mrw_param_add(&a->ps, "compress.weight", MRW_PG_ADAPTER, 0, 3, scw)) < 0;
        bad |= (a->ic_b = mrw_param_add(&a->ps, "compress.bias", MRW_PG_ADAPTER, 1, 1, se)) < 0;
    }
    if (vk) {
        bad |= (a->iv_w = mrw_param_add(&a->ps, "proj.conv.weight", MRW_PG_ADAPTER, 0, 3, svw)) < 0;
        if (a->vbias) bad |= (a->iv_b = mrw_param_add(&a->ps, "proj.conv.bias", MRW_PG_ADAPTER, 1, 1, sv)) < 0;
    }
    bad |= (a->iw1 = mrw_param_add(&a->ps, v1 ? "proj.proj.0.weight" : "proj.mlp.0.weight", MRW_PG_ADAPTER, 0, 2, s1)) < 0;
    bad |= (a->ib1 = mrw_param_add(&a->ps, v1 ? "proj.proj.0.bias" : "proj.mlp.0.bias", MRW_PG_ADAPTER, 1, 1, sh)) < 0;
    bad |= (a->iw2 = mrw_param_add(&a->ps, v1 ? "proj.proj.2.weight" : "proj.mlp.2.weight", MRW_PG_ADAPTER, 0, 2, s2)) < 0;
    bad |= (a->ib2 = mrw_param_add(&a->ps, v1 ? "proj.proj.2.bias" : "proj.mlp.2.bias", MRW_PG_ADAPTER, 1, 1, sc)) < 0;
    if (a->ln) {
        bad |= (a->ilnw = mrw_param_add(&a->ps, "proj.pre_norm.weight", MRW_PG_ADAPTER, 1, 1, sc)) < 0;
        bad |= (a->ilnb = mrw_param_add(&a->ps, "proj.pre_norm.bias", MRW_PG_ADAPTER, 1, 1, sc)) < 0;
    }
    if (bad) {
        mrw_adapter_gpu_free(a);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    mrw_status s = mrw_cuda_blas_new(&a->blas, err);
    if (s) {
        mrw_adapter_gpu_free(a);
        return s;
    }
    const size_t P = a->ps.total, RC = It * Tc;
    const size_t ncol = zmax(ck ? mrw_cuda_conv1d_col_elems(max_items, Tc, E, ck) : 0,
                             vk ? mrw_cuda_conv1d_col_elems(max_items, To, E, vk) : 0);
    const size_t nyf = zmax(ck ? RC * E : 0, vk ? R * vout : 0);
    a->ones_n = zmax(zmax(R, RC), (size_t)a->in_cap);
    struct {
        void **p;
        size_t bytes;
    } al[] = {{(void **)&a->w, P * 4},          {(void **)&a->g, P * 4},
              {(void **)&a->m, P * 4},          {(void **)&a->v, P * 4},
              {(void **)&a->wbf, P * 2},        {(void **)&a->a1, R * Hd * 2},
              {(void **)&a->h1, R * Hd * 4},
              {(void **)&a->h, R * C * 2},      {(void **)&a->dh, R * C * 2},
              {(void **)&a->da1, R * Hd * 2},   {(void **)&a->ones, a->ones_n * 2},
              {(void **)&a->mean, R * 4},       {(void **)&a->rstd, R * 4},
              {(void **)&a->cs, mrw_cuda_layernorm_bwd_scratch(C) * 4},
              {(void **)&a->norm_out, 16},      {(void **)&a->norm_part, MRW_CUDA_NORM_BLOCKS * sizeof(double)},
              {(void **)&a->col, ncol * 2},     {(void **)&a->dcol, ncol * 4},
              {(void **)&a->yf, nyf * 4},       {(void **)&a->xc, ck ? RC * E * 2 : 0},
              {(void **)&a->dxc, ck ? RC * E * 2 : 0},
              {(void **)&a->xv, vk ? R * vout * 2 : 0}, {(void **)&a->dxv, vk ? R * vout * 2 : 0}};
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        if (!al[i].bytes) continue;
        const cudaError_t e = cudaMalloc(al[i].p, al[i].bytes);
        if (e != cudaSuccess) {
            cudaGetLastError();
            mrw_adapter_gpu_free(a);
            return mrw_err(err, MRW_E_NOMEM, "adapter (cuda): cannot allocate %.2f GiB for %d x %d rows: use fewer rows",
                           al[i].bytes / 1073741824.0, max_items, max_Tin);
        }
        a->bytes += al[i].bytes;
    }
    cudaMemsetAsync(a->w, 0, P * 4, a->st);
    cudaMemsetAsync(a->g, 0, P * 4, a->st);
    cudaMemsetAsync(a->m, 0, P * 4, a->st);
    cudaMemsetAsync(a->v, 0, P * 4, a->st);
    cudaMemsetAsync(a->wbf, 0, P * 2, a->st);
    fill_kernel<<<grid_for(a->ones_n, 256), 256, 0, a->st>>>(a->ones_n, a->ones, 1.f);
    const cudaError_t e = cudaStreamSynchronize(a->st);
    if (e != cudaSuccess) {
        mrw_adapter_gpu_free(a);
        return mrw_err(err, MRW_E_INTERNAL, "adapter (cuda): init: %s", cudaGetErrorString(e));
    }
    *out = a;
    return MRW_OK;
}

extern "C" mrw_status mrw_adapter_gpu_new(int E, int C, int hidden, int max_rows, void *stream,
                                          mrw_adapter_gpu **out, mrw_error *err) {
    mrw_adapter_gpu_config c;
    memset(&c, 0, sizeof c);
    c.E = E, c.C = C, c.hidden = hidden, c.ln = 1;
    if (max_rows < 1 || max_rows > (1 << 24)) {
        *out = NULL;
        return mrw_err(err, MRW_E_ARG, "adapter (cuda): %d rows", max_rows);
    }
    return mrw_adapter_gpu_new_ex(&c, max_rows, 1, stream, out, err);
}

extern "C" int mrw_adapter_gpu_out_len(const mrw_adapter_gpu *a, int Tin) {
    int T = Tin < 1 ? -1 : Tin;
    if (T > 0 && a->ck) T = mrw_cuda_conv1d_out_len(T, a->ck, a->cs_, 0);
    if (T > 0 && a->vk) T = mrw_cuda_conv1d_out_len(T, a->vk, a->vs, a->vp);
    return T;
}

extern "C" void mrw_adapter_gpu_free(mrw_adapter_gpu *a) {
    if (!a) return;
    cudaStreamSynchronize(a->st);
    if (a->inj_shared) a->inj = a->dinj = NULL;
    void *bufs[] = {a->w, a->g, a->m, a->v, a->wbf, a->a1, a->h, a->dh, a->da1, a->ones, a->mean, a->rstd, a->cs,
                    a->norm_out, a->norm_part, a->h1, a->xf, a->xb, a->yo, a->dyo, a->pos, a->inj, a->dinj,
                    a->col, a->dcol, a->yf, a->xc, a->dxc, a->xv, a->dxv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    mrw_cuda_blas_free(a->blas);
    mrw_param_set_free(&a->ps);
    free(a);
}

extern "C" const mrw_param_set *mrw_adapter_gpu_layout(const mrw_adapter_gpu *a) { return &a->ps; }
extern "C" size_t mrw_adapter_gpu_bytes(const mrw_adapter_gpu *a) { return a->bytes; }

static mrw_status refresh_bf16(mrw_adapter_gpu *a, mrw_error *err) {
    to_bf16_kernel<<<grid_for(a->ps.total, 256), 256, 0, a->st>>>(a->ps.total, a->w, a->wbf);
    return launched("adapter bf16 copy", err);
}

extern "C" mrw_status mrw_adapter_gpu_upload(mrw_adapter_gpu *a, const mrw_param_set *src, int grads,
                                             mrw_error *err) {
    if (!src || !(grads ? src->g : src->w)) return mrw_err(err, MRW_E_ARG, "adapter (cuda): upload from nothing");
    TRY(cuda_chk(cudaStreamSynchronize(a->st), "upload", err));
    for (int i = 0; i < a->ps.n; i++) {
        const mrw_param *p = &a->ps.p[i];
        const int j = mrw_param_find(src, p->name);
        if (j < 0) return mrw_err(err, MRW_E_MISSING, "adapter (cuda): upload: no tensor %s", p->name);
        if (src->p[j].n != p->n)
            return mrw_err(err, MRW_E_SHAPE, "adapter (cuda): upload: %s has %zu elements, %zu expected", p->name,
                           src->p[j].n, p->n);
        const float *from = (grads ? src->g : src->w) + src->p[j].offset;
        TRY(cuda_chk(cudaMemcpy((grads ? a->g : a->w) + p->offset, from, p->n * 4, cudaMemcpyHostToDevice), "upload",
                     err));
    }
    if (!grads) TRY(refresh_bf16(a, err));
    return cuda_chk(cudaStreamSynchronize(a->st), "upload", err);
}

extern "C" mrw_status mrw_adapter_gpu_download(mrw_adapter_gpu *a, mrw_param_set *dst, int grads, mrw_error *err) {
    if (!dst || !dst->w || (grads && !dst->g)) return mrw_err(err, MRW_E_ARG, "adapter (cuda): download into nothing");
    TRY(cuda_chk(cudaStreamSynchronize(a->st), "download", err));
    for (int i = 0; i < a->ps.n; i++) {
        const mrw_param *p = &a->ps.p[i];
        const int j = mrw_param_find(dst, p->name);
        if (j < 0 || dst->p[j].n != p->n) continue;
        TRY(cuda_chk(cudaMemcpy(dst->w + dst->p[j].offset, a->w + p->offset, p->n * 4, cudaMemcpyDeviceToHost),
                     "download", err));
        if (grads)
            TRY(cuda_chk(cudaMemcpy(dst->g + dst->p[j].offset, a->g + p->offset, p->n * 4, cudaMemcpyDeviceToHost),
                         "download", err));
    }
    return MRW_OK;
}

extern "C" mrw_status mrw_adapter_gpu_init_random(mrw_adapter_gpu *a, uint64_t seed, mrw_error *err) {
    const float b1 = 1.f / sqrtf((float)a->Cv), b2 = 1.f / sqrtf((float)a->Hd);
    const float bc = a->ck ? 1.f / sqrtf((float)a->E * a->ck) : 0, bv = a->vk ? 1.f / sqrtf((float)a->E * a->vk) : 0;
    const struct {
        int i;
        float lo, hi;
    } t[] = {{a->iw1, -b1, b1}, {a->ib1, -b1, b1}, {a->iw2, -b2, b2}, {a->ib2, -b2, b2}, {a->ilnw, 1, 1},
             {a->ilnb, 0, 0},   {a->ic_w, -bc, bc}, {a->ic_b, -bc, bc}, {a->iv_w, -bv, bv}, {a->iv_b, -bv, bv}};
    for (int k = 0; k < (int)(sizeof t / sizeof t[0]); k++) {
        if (t[k].i < 0) continue;
        const mrw_param *p = &a->ps.p[t[k].i];
        rand_kernel<<<grid_for(p->n, 256), 256, 0, a->st>>>(p->n, a->w + p->offset, seed + 0x9E37ull * k, t[k].lo,
                                                             t[k].hi);
    }
    TRY(launched("adapter init", err));
    TRY(refresh_bf16(a, err));
    return cuda_chk(cudaStreamSynchronize(a->st), "init", err);
}

/* The MLP on rows x [rows][Cv] (bf16) -> out [rows][C]. */
static mrw_status mlp_forward(mrw_adapter_gpu *a, const void *x, int rows, void *out, mrw_error *err) {
    const int K = a->Cv, C = a->C, Hd = a->Hd;
    void *st = (void *)a->st;
    TRY(mrw_cuda_gemm(a->blas, 0, 1, rows, Hd, K, 1.f, x, K, ABF(a->iw1), K, 0.f, MRW_CUDA_F32, a->h1, Hd, st, err));
    bias_relu_f32_kernel<<<grid_for((size_t)rows * Hd / 2, 256), 256, 0, a->st>>>((size_t)rows * Hd / 2, Hd, a->h1,
                                                                                  AW(a->ib1), a->a1);
    TRY(launched("adapter bias relu", err));
    /* h = a1 W2^T + b2 (with LayerNorm kept in a->h; without, straight into out) */
    bf16 *h = a->ln ? a->h : (bf16 *)out;
    TRY(mrw_cuda_gemm(a->blas, 0, 1, rows, C, Hd, 1.f, a->a1, Hd, ABF(a->iw2), Hd, 0.f, MRW_CUDA_BF16, h, C, st, err));
    bias_relu_kernel<<<grid_for((size_t)rows * C / 2, 256), 256, 0, a->st>>>((size_t)rows * C / 2, C, h, AW(a->ib2), 0);
    TRY(launched("adapter bias", err));
    if (!a->ln) return MRW_OK;
    TRY(mrw_cuda_layernorm_fwd(MRW_CUDA_BF16, rows, C, a->h, AW(a->ilnw), AW(a->ilnb), AD_LN_EPS, out, a->mean,
                               a->rstd, st, err));
    add_kernel<<<grid_for((size_t)rows * C / 2, 256), 256, 0, a->st>>>((size_t)rows * C / 2, (bf16 *)out, a->h);
    return launched("adapter residual", err);
}

extern "C" mrw_status mrw_adapter_gpu_forward(mrw_adapter_gpu *a, const void *x, int rows, void *out,
                                              mrw_error *err) {
    a->valid = 0;
    if (a->ck || a->vk)
        return mrw_err(err, MRW_E_ARG, "adapter (cuda): an adapter with convolutions takes sequences (forward_seq)");
    if (!x || !out || rows < 1 || rows > a->max_rows)
        return mrw_err(err, MRW_E_ARG, "adapter (cuda): %d rows (1..%d) or NULL buffers", rows, a->max_rows);
    TRY(mlp_forward(a, x, rows, out, err));
    a->x = x, a->x_in = x, a->rows = rows, a->n_seq = rows, a->T_in = a->T_c = a->T_o = 1, a->valid = 1;
    return MRW_OK;
}

extern "C" mrw_status mrw_adapter_gpu_forward_seq(mrw_adapter_gpu *a, const void *x, int n, int Tin, void *out,
                                                  mrw_error *err) {
    a->valid = 0;
    if (!a->ck && !a->vk) {
        if ((double)n * Tin > a->max_rows || n < 1 || Tin < 1)
            return mrw_err(err, MRW_E_ARG, "adapter (cuda): %d x %d rows (at most %d)", n, Tin, a->max_rows);
        return mrw_adapter_gpu_forward(a, x, n * Tin, out, err);
    }
    const int To = mrw_adapter_gpu_out_len(a, Tin);
    if (!x || !out || n < 1 || n > a->max_items || Tin < 1 || Tin > a->max_Tin || To < 1)
        return mrw_err(err, MRW_E_ARG, "adapter (cuda): %d sequences of %d rows (at most %d of %d; at least enough "
                       "for the convolutions) or NULL buffers", n, Tin, a->max_items, a->max_Tin);
    void *st = (void *)a->st;
    const void *in = x;
    int T = Tin;
    if (a->ck) {
        TRY(mrw_cuda_conv1d_fwd(a->blas, n, T, a->E, a->E, a->ck, a->cs_, 0, MRW_CUDA_BF16, in, ABF(a->ic_w),
                                AW(a->ic_b), a->col, a->yf, MRW_CUDA_BF16, a->xc, st, err));
        in = a->xc, T = mrw_cuda_conv1d_out_len(T, a->ck, a->cs_, 0);
    }
    a->T_c = T;
    if (a->vk) {
        TRY(mrw_cuda_conv1d_fwd(a->blas, n, T, a->E, a->vout, a->vk, a->vs, a->vp, MRW_CUDA_BF16, in, ABF(a->iv_w),
                                a->vbias ? AW(a->iv_b) : NULL, a->col, a->yf, MRW_CUDA_BF16, a->xv, st, err));
        in = a->xv, T = mrw_cuda_conv1d_out_len(T, a->vk, a->vs, a->vp);
    }
    TRY(mlp_forward(a, in, n * T, out, err));
    a->x = in, a->x_in = x, a->rows = n * T, a->n_seq = n, a->T_in = Tin, a->T_o = T, a->valid = 1;
    return MRW_OK;
}

extern "C" mrw_status mrw_adapter_gpu_backward(mrw_adapter_gpu *a, const void *d_out, void *d_x, mrw_error *err) {
    if (!a->valid) return mrw_err(err, MRW_E_ARG, "adapter (cuda): backward without a forward before it");
    if (!d_out) return mrw_err(err, MRW_E_ARG, "adapter (cuda): NULL d_out");
    a->valid = 0;
    const int C = a->C, Hd = a->Hd, R = a->rows, K = a->Cv, n = a->n_seq;
    void *st = (void *)a->st;
    const void *dh = d_out;
    if (a->ln) { /* dh = d_out + LN backward */
        TRY(cuda_chk(cudaMemcpyAsync(a->dh, d_out, (size_t)R * C * 2, cudaMemcpyDeviceToDevice, a->st), "copy", err));
        TRY(mrw_cuda_layernorm_bwd(MRW_CUDA_BF16, R, C, d_out, a->h, a->mean, a->rstd, AW(a->ilnw), 1, a->dh,
                                   AG(a->ilnw), AG(a->ilnb), a->cs, st, err));
        dh = a->dh;
    }
    /* second linear */
    TRY(mrw_cuda_gemm(a->blas, 1, 0, C, 1, R, 1.f, dh, C, a->ones, 1, 1.f, MRW_CUDA_F32, AG(a->ib2), 1, st, err));
    TRY(mrw_cuda_gemm(a->blas, 1, 0, C, Hd, R, 1.f, dh, C, a->a1, Hd, 1.f, MRW_CUDA_F32, AG(a->iw2), Hd, st, err));
    TRY(mrw_cuda_gemm(a->blas, 0, 0, R, Hd, C, 1.f, dh, C, ABF(a->iw2), Hd, 0.f, MRW_CUDA_BF16, a->da1, Hd, st, err));
    relu_bwd_kernel<<<grid_for((size_t)R * Hd / 2, 256), 256, 0, a->st>>>((size_t)R * Hd / 2, a->da1, a->a1);
    TRY(launched("adapter relu backward", err));
    /* first linear */
    TRY(mrw_cuda_gemm(a->blas, 1, 0, Hd, 1, R, 1.f, a->da1, Hd, a->ones, 1, 1.f, MRW_CUDA_F32, AG(a->ib1), 1, st,
                      err));
    TRY(mrw_cuda_gemm(a->blas, 1, 0, Hd, K, R, 1.f, a->da1, Hd, a->x, K, 1.f, MRW_CUDA_F32, AG(a->iw1), K, st, err));
    /* the gradient at the MLP's input: into the conv's output gradient, the compression's, or d_x */
    void *dm = a->vk ? (void *)a->dxv : a->ck ? (void *)a->dxc : d_x;
    if (dm)
        TRY(mrw_cuda_gemm(a->blas, 0, 0, R, K, Hd, 1.f, a->da1, Hd, ABF(a->iw1), K, 0.f, MRW_CUDA_BF16, dm, K, st,
                          err));
    if (a->vk) { /* the adapter conv, input xc (compression) or x */
        void *dvin = a->ck ? (void *)a->dxc : d_x;
        TRY(mrw_cuda_conv1d_bwd(a->blas, n, a->T_c, a->E, a->vout, a->vk, a->vs, a->vp, MRW_CUDA_BF16,
                                a->ck ? (const void *)a->xc : a->x_in, ABF(a->iv_w), a->dxv, a->col, a->ones,
                                AG(a->iv_w), a->vbias ? AG(a->iv_b) : NULL, a->dcol, MRW_CUDA_BF16, dvin, st, err));
    }
    if (a->ck)
        TRY(mrw_cuda_conv1d_bwd(a->blas, n, a->T_in, a->E, a->E, a->ck, a->cs_, 0, MRW_CUDA_BF16, a->x_in,
                                ABF(a->ic_w), a->dxc, a->col, a->ones, AG(a->ic_w), AG(a->ic_b), a->dcol, MRW_CUDA_BF16,
                                d_x, st, err));
    return MRW_OK;
}

extern "C" mrw_status mrw_adapter_gpu_zero_grad(mrw_adapter_gpu *a, mrw_error *err) {
    return cuda_chk(cudaMemsetAsync(a->g, 0, a->ps.total * 4, a->st), "zero grad", err);
}

extern "C" mrw_status mrw_adapter_gpu_step(mrw_adapter_gpu *a, const mrw_adam_config *cfg, double lr, double max_norm,
                                           double *grad_norm, mrw_error *err) {
    /* the whole buffer is one tensor for the norm (the padding between tensors stays zero) */
    TRY(mrw_cuda_sumsq_part(a->ps.total, a->g, a->norm_part, a->st, err));
    TRY(mrw_cuda_grad_norm_finish(1, a->norm_part, (float)max_norm, a->norm_out, NULL, a->st, err));
    a->t_adam++;
    for (int i = 0; i < a->ps.n; i++) {
        const mrw_param *p = &a->ps.p[i];
        const mrw_cuda_adam_hp hp = mrw_cuda_adam_hparams(lr, a->t_adam, cfg->beta1, cfg->beta2, cfg->eps,
                                                          cfg->weight_decay, cfg->decoupled, p->no_decay);
        TRY(mrw_cuda_adam_step(p->n, a->w + p->offset, a->g + p->offset, a->m + p->offset, a->v + p->offset,
                               a->wbf + p->offset, &hp, max_norm > 0 ? a->norm_out + 1 : NULL, a->st, err));
    }
    if (grad_norm) {
        float h;
        TRY(cuda_chk(cudaMemcpyAsync(&h, a->norm_out, sizeof h, cudaMemcpyDeviceToHost, a->st), "norm", err));
        TRY(cuda_chk(cudaStreamSynchronize(a->st), "step", err));
        *grad_norm = h;
    }
    return MRW_OK;
}

/* ---------------------------------------------------------------------- for the CLI trainer (trainer.c) */

extern "C" mrw_status mrw_adapter_gpu_use_v1_names(mrw_adapter_gpu *a, mrw_error *err) {
    if (a->Hd != 2 * a->C)
        return mrw_err(err, MRW_E_ARG, "adapter (cuda): a v1 vision adapter has hidden 2C = %d, not %d", 2 * a->C, a->Hd);
    static const char *v1[4] = {"proj.proj.0.weight", "proj.proj.0.bias", "proj.proj.2.weight", "proj.proj.2.bias"};
    const int idx[4] = {a->iw1, a->ib1, a->iw2, a->ib2};
    for (int k = 0; k < 4; k++) snprintf(a->ps.p[idx[k]].name, sizeof a->ps.p[idx[k]].name, "%s", v1[k]);
    return MRW_OK;
}

extern "C" mrw_status mrw_adapter_gpu_moments(mrw_adapter_gpu *a, int to_gpu, const mrw_param_set *ps, float *m,
                                              float *v, const size_t *moff, int64_t *t, mrw_error *err) {
    TRY(cuda_chk(cudaStreamSynchronize(a->st), "moments", err));
    for (int i = 0; i < ps->n; i++) {
        if (moff[i] == SIZE_MAX) continue;
        const int j = mrw_param_find(&a->ps, ps->p[i].name);
        if (j < 0 || a->ps.p[j].n != ps->p[i].n)
            return mrw_err(err, MRW_E_SHAPE, "adapter (cuda): optimizer state of %s does not match", ps->p[i].name);
        const size_t o = a->ps.p[j].offset, n = ps->p[i].n * sizeof(float);
        float *host[2] = {m + moff[i], v + moff[i]}, *dev[2] = {a->m + o, a->v + o};
        for (int k = 0; k < 2; k++)
            TRY(cuda_chk(to_gpu ? cudaMemcpy(dev[k], host[k], n, cudaMemcpyHostToDevice)
                                : cudaMemcpy(host[k], dev[k], n, cudaMemcpyDeviceToHost), "moments", err));
    }
    if (to_gpu) a->t_adam = *t;
    else *t = a->t_adam;
    return MRW_OK;
}

extern "C" mrw_status mrw_adapter_gpu_sumsq_add(mrw_adapter_gpu *a, double *part, mrw_error *err) {
    TRY(mrw_cuda_sumsq_part(a->ps.total, a->g, a->norm_part, a->st, err));
    add_f64_kernel<<<(MRW_CUDA_NORM_BLOCKS + 255) / 256, 256, 0, a->st>>>(MRW_CUDA_NORM_BLOCKS, part, a->norm_part);
    return launched("adapter norm sum", err);
}

extern "C" mrw_status mrw_adapter_gpu_step_part(mrw_adapter_gpu *a, const mrw_adam_config *cfg, double lr,
                                                double max_norm, const double *part, double *grad_norm,
                                                mrw_error *err) {
    TRY(mrw_cuda_grad_norm_finish(1, part, (float)max_norm, a->norm_out, NULL, a->st, err));
    a->t_adam++;
    for (int i = 0; i < a->ps.n; i++) {
        const mrw_param *p = &a->ps.p[i];
        const mrw_cuda_adam_hp hp = mrw_cuda_adam_hparams(lr, a->t_adam, cfg->beta1, cfg->beta2, cfg->eps,
                                                          cfg->weight_decay, cfg->decoupled, p->no_decay);
        TRY(mrw_cuda_adam_step(p->n, a->w + p->offset, a->g + p->offset, a->m + p->offset, a->v + p->offset,
                               a->wbf + p->offset, &hp, max_norm > 0 ? a->norm_out + 1 : NULL, a->st, err));
    }
    if (grad_norm) {
        float h;
        TRY(cuda_chk(cudaMemcpyAsync(&h, a->norm_out, sizeof h, cudaMemcpyDeviceToHost, a->st), "norm", err));
        TRY(cuda_chk(cudaStreamSynchronize(a->st), "step", err));
        *grad_norm = h;
    }
    return MRW_OK;
}

extern "C" mrw_status mrw_adapter_gpu_trainer_buffers(mrw_adapter_gpu *a, size_t n_rows, mrw_cuda_dtype dt,
                                                      void **inject, void **d_inject, mrw_error *err) {
    if (a->inj || n_rows < 1) return mrw_err(err, MRW_E_ARG, "adapter (cuda): trainer buffers: asked twice or 0 rows");
    const size_t R = (size_t)a->max_rows, RI = (size_t)a->in_cap, es = dt == MRW_CUDA_F32 ? 4 : 2;
    struct {
        void **p;
        size_t bytes;
    } al[] = {{(void **)&a->xf, RI * a->E * 4}, {(void **)&a->xb, RI * a->E * 2}, {(void **)&a->yo, R * a->C * 2},
              {(void **)&a->dyo, R * a->C * 2}, {(void **)&a->pos, R * 4},     {&a->inj, n_rows * a->C * es},
              {&a->dinj, n_rows * a->C * es}};
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        if (cudaMalloc(al[i].p, al[i].bytes) != cudaSuccess) {
            cudaGetLastError();
            return mrw_err(err, MRW_E_NOMEM, "adapter (cuda): cannot allocate %.2f GiB for the trainer's buffers "
                           "(%zu rows): use a smaller --batch or --ctx-len", al[i].bytes / 1073741824.0, n_rows);
        }
        a->bytes += al[i].bytes;
    }
    TRY(cuda_chk(cudaMemsetAsync(a->inj, 0, n_rows * a->C * es, a->st), "trainer buffers", err));
    a->inj_dt = dt, a->inj_rows = n_rows;
    *inject = a->inj, *d_inject = a->dinj;
    return MRW_OK;
}

extern "C" mrw_status mrw_adapter_gpu_forward_items(mrw_adapter_gpu *a, const float *x_host, int n, int Tin,
                                                    const int32_t *pos, mrw_error *err) {
    a->valid = 0;
    if (!a->inj) return mrw_err(err, MRW_E_ARG, "adapter (cuda): forward_items before trainer_buffers");
    const int To = mrw_adapter_gpu_out_len(a, Tin);
    if (!x_host || !pos || n < 1 || Tin < 1 || To < 1 || (double)n * Tin > a->in_cap || (double)n * To > a->max_rows)
        return mrw_err(err, MRW_E_ARG, "adapter (cuda): %d x %d rows (at most %d in, %d out) or NULL arguments", n,
                       Tin, a->in_cap, a->max_rows);
    const int rows = n * To;
    for (int r = 0; r < rows; r++)
        if (pos[r] < 0 || (size_t)pos[r] >= a->inj_rows)
            return mrw_err(err, MRW_E_ARG, "adapter (cuda): row position %d outside [0, %zu)", pos[r], a->inj_rows);
    const size_t nx = (size_t)n * Tin * a->E, ny = (size_t)rows * a->C;
    /* (pageable host memory: the copies are complete when cudaMemcpyAsync returns) */
    TRY(cuda_chk(cudaMemcpyAsync(a->xf, x_host, nx * 4, cudaMemcpyHostToDevice, a->st), "features", err));
    TRY(cuda_chk(cudaMemcpyAsync(a->pos, pos, (size_t)rows * 4, cudaMemcpyHostToDevice, a->st), "positions", err));
    TRY(cuda_chk(cudaStreamSynchronize(a->st), "features", err));
    to_bf16_kernel<<<grid_for(nx, 256), 256, 0, a->st>>>(nx, a->xf, a->xb);
    TRY(launched("adapter features to bf16", err));
    TRY(mrw_adapter_gpu_forward_seq(a, a->xb, n, Tin, a->yo, err));
    if (a->inj_dt == MRW_CUDA_F32)
        scatter_rows_kernel<float><<<grid_for(ny, 256), 256, 0, a->st>>>(ny, a->C, a->pos, a->yo, (float *)a->inj);
    else
        scatter_rows_kernel<bf16><<<grid_for(ny, 256), 256, 0, a->st>>>(ny, a->C, a->pos, a->yo, (bf16 *)a->inj);
    TRY(launched("adapter rows scatter", err));
    a->rows_pos = rows;
    return MRW_OK;
}

extern "C" mrw_status mrw_adapter_gpu_forward_rows(mrw_adapter_gpu *a, const float *x_host, int rows,
                                                   const int32_t *pos, mrw_error *err) {
    if (a->ck || a->vk)
        return mrw_err(err, MRW_E_ARG, "adapter (cuda): an adapter with convolutions takes sequences (forward_items)");
    return mrw_adapter_gpu_forward_items(a, x_host, rows, 1, pos, err);
}

extern "C" mrw_status mrw_adapter_gpu_backward_rows(mrw_adapter_gpu *a, mrw_error *err) {
    if (!a->inj || !a->valid || a->rows_pos != a->rows)
        return mrw_err(err, MRW_E_ARG, "adapter (cuda): backward_rows without forward_rows before it");
    const size_t ny = (size_t)a->rows * a->C;
    if (a->inj_dt == MRW_CUDA_F32)
        gather_rows_kernel<float><<<grid_for(ny, 256), 256, 0, a->st>>>(ny, a->C, a->pos, (const float *)a->dinj, a->dyo);
    else
        gather_rows_kernel<bf16><<<grid_for(ny, 256), 256, 0, a->st>>>(ny, a->C, a->pos, (const bf16 *)a->dinj, a->dyo);
    TRY(launched("adapter rows gather", err));
    return mrw_adapter_gpu_backward(a, a->dyo, NULL, err);
}

/* ---------------------------------------------------------------------- several modalities (trainer.c) */

extern "C" mrw_status mrw_adapter_gpu_prefix_names(mrw_adapter_gpu *a, const char *prefix, mrw_error *err) {
    for (int i = 0; i < a->ps.n; i++) {
        char nn[MRW_PARAM_NAME_MAX];
        if (snprintf(nn, sizeof nn, "%s%s", prefix, a->ps.p[i].name) >= (int)sizeof nn)
            return mrw_err(err, MRW_E_ARG, "adapter (cuda): name %s%s too long", prefix, a->ps.p[i].name);
        memcpy(a->ps.p[i].name, nn, sizeof nn);
    }
    return MRW_OK;
}

extern "C" mrw_status mrw_adapter_gpu_share_trainer_buffers(mrw_adapter_gpu *a, const mrw_adapter_gpu *from,
                                                            mrw_error *err) {
    if (a->inj || !from->inj) return mrw_err(err, MRW_E_ARG, "adapter (cuda): share: buffers already there or none");
    const size_t R = (size_t)a->max_rows, RI = (size_t)a->in_cap;
    struct {
        void **p;
        size_t bytes;
    } al[] = {{(void **)&a->xf, RI * a->E * 4}, {(void **)&a->xb, RI * a->E * 2}, {(void **)&a->yo, R * a->C * 2},
              {(void **)&a->dyo, R * a->C * 2}, {(void **)&a->pos, R * 4}};
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        if (cudaMalloc(al[i].p, al[i].bytes) != cudaSuccess) {
            cudaGetLastError();
            return mrw_err(err, MRW_E_NOMEM, "adapter (cuda): cannot allocate %.2f GiB for the trainer's buffers",
                           al[i].bytes / 1073741824.0);
        }
        a->bytes += al[i].bytes;
    }
    a->inj = from->inj, a->dinj = from->dinj, a->inj_dt = from->inj_dt, a->inj_rows = from->inj_rows;
    a->inj_shared = 1;
    return MRW_OK;
}

extern "C" double *mrw_adapter_gpu_sumsq_own(mrw_adapter_gpu *a, mrw_error *err) {
    return mrw_cuda_sumsq_part(a->ps.total, a->g, a->norm_part, a->st, err) ? NULL : a->norm_part;
}

extern "C" float *mrw_adapter_gpu_grads(mrw_adapter_gpu *a, size_t *n) {
    *n = a->ps.total;
    return a->g;
}
