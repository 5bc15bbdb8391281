/* NCCL through dlopen and the data-parallel optimizer step (dist_nccl.h). The few NCCL types and functions used are
 * declared here (values as in nccl.h 2.x, stable across releases), so no NCCL header or library is needed to build. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "base/error.h"
#include "kernels/cuda/adam.h"
#include "kernels/cuda/dist_nccl.h"
}

namespace {
typedef int nccl_result;                        /* ncclResult_t: 0 = ncclSuccess */
typedef struct nccl_comm_s *nccl_comm;          /* ncclComm_t */
typedef struct { char internal[128]; } nccl_id; /* ncclUniqueId (NCCL_UNIQUE_ID_BYTES) */
enum { NCCL_SUM = 0 };                          /* ncclRedOp_t */
enum { NCCL_T_F32 = 7, NCCL_T_F64 = 8, NCCL_T_BF16 = 9 }; /* ncclDataType_t */
} // namespace

struct mrw_nccl {
    void *lib;
    nccl_comm comm;
    int rank, world;
    double *scratch; /* 64 doubles on the device */
    char version[32];
    nccl_result (*GetVersion)(int *);
    nccl_result (*GetUniqueId)(nccl_id *);
    nccl_result (*CommInitRank)(nccl_comm *, int, nccl_id, int);
    nccl_result (*CommDestroy)(nccl_comm);
    nccl_result (*CommAbort)(nccl_comm);
    nccl_result (*AllReduce)(const void *, void *, size_t, int, int, nccl_comm, cudaStream_t);
    nccl_result (*ReduceScatter)(const void *, void *, size_t, int, int, nccl_comm, cudaStream_t);
    nccl_result (*AllGather)(const void *, void *, size_t, int, nccl_comm, cudaStream_t);
    const char *(*GetErrorString)(nccl_result);
    const char *(*GetLastError)(nccl_comm);
};

static mrw_status nccl_fail(mrw_nccl *c, nccl_result r, const char *what, mrw_error *err) {
    const char *last = c->GetLastError ? c->GetLastError(c->comm) : NULL;
    return mrw_err(err, MRW_E_INTERNAL, "NCCL %s (rank %d of %d): %s%s%s", what, c->rank, c->world,
                   c->GetErrorString ? c->GetErrorString(r) : "error", last && *last ? ": " : "", last ? last : "");
}

#define NCHK(c, call, what)                                                                                    \
    do {                                                                                                       \
        nccl_result r_ = (call);                                                                               \
        if (r_) return nccl_fail((c), r_, (what), err);                                                        \
    } while (0)

static int nccl_type(mrw_nccl_dtype dt) { return dt == MRW_NCCL_F64 ? NCCL_T_F64 : dt == MRW_NCCL_BF16 ? NCCL_T_BF16 : NCCL_T_F32; }

extern "C" void mrw_nccl_close(mrw_nccl *c) {
    if (!c) return;
    if (c->comm && c->CommDestroy) c->CommDestroy(c->comm);
    cudaFree(c->scratch);
    if (c->lib) dlclose(c->lib);
    free(c);
}

extern "C" mrw_status mrw_nccl_open(const mrw_dist_env *e, int device, mrw_nccl **out, mrw_error *err) {
    *out = NULL;
    mrw_nccl *c = (mrw_nccl *)calloc(1, sizeof *c);
    if (!c) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    c->rank = e->rank, c->world = e->world;
    const char *path = getenv("MRW_NCCL_LIB");
    if (!path || !*path) path = "libnccl.so.2";
    c->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!c->lib) {
        const char *d = dlerror();
        mrw_err(err, MRW_E_UNSUPPORTED, "rank %d: cannot load NCCL (%s): %s. Install NCCL 2 (e.g. pip install "
                "nvidia-nccl-cu13) and set MRW_NCCL_LIB to its libnccl.so.2 or put its folder on LD_LIBRARY_PATH "
                "(docs/DISTRIBUTED.md)", e->rank, path, d ? d : "?");
        free(c);
        return MRW_E_UNSUPPORTED;
    }
    struct {
        void **fn;
        const char *name;
    } syms[] = {{(void **)&c->GetVersion, "ncclGetVersion"},       {(void **)&c->GetUniqueId, "ncclGetUniqueId"},
                {(void **)&c->CommInitRank, "ncclCommInitRank"},   {(void **)&c->CommDestroy, "ncclCommDestroy"},
                {(void **)&c->CommAbort, "ncclCommAbort"},         {(void **)&c->AllReduce, "ncclAllReduce"},
                {(void **)&c->ReduceScatter, "ncclReduceScatter"}, {(void **)&c->AllGather, "ncclAllGather"},
                {(void **)&c->GetErrorString, "ncclGetErrorString"}, {(void **)&c->GetLastError, "ncclGetLastError"}};
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].fn = dlsym(c->lib, syms[i].name);
        if (!*syms[i].fn) {
            mrw_err(err, MRW_E_UNSUPPORTED, "rank %d: %s has no %s (NCCL 2.x needed)", e->rank, path, syms[i].name);
            mrw_nccl_close(c);
            return MRW_E_UNSUPPORTED;
        }
    }
    int v = 0;
    c->GetVersion(&v);
    snprintf(c->version, sizeof c->version, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    cudaError_t ce = cudaSetDevice(device);
    if (ce == cudaSuccess) ce = cudaMalloc((void **)&c->scratch, 64 * sizeof(double));
    if (ce != cudaSuccess) {
        mrw_err(err, MRW_E_UNSUPPORTED, "rank %d: GPU %d (LOCAL_RANK): %s", e->rank, device, cudaGetErrorString(ce));
        mrw_nccl_close(c);
        return MRW_E_UNSUPPORTED;
    }
    nccl_id id;
    memset(&id, 0, sizeof id);
    nccl_result r = e->rank == 0 ? c->GetUniqueId(&id) : 0;
    mrw_status s = r ? nccl_fail(c, r, "ncclGetUniqueId", err) : mrw_dist_exchange(e, (uint8_t *)&id, sizeof id, err);
    if (!s && (r = c->CommInitRank(&c->comm, e->world, id, e->rank))) {
        c->comm = NULL;
        s = nccl_fail(c, r, "ncclCommInitRank", err);
    }
    if (s) {
        mrw_nccl_close(c);
        return s;
    }
    *out = c;
    return MRW_OK;
}

extern "C" int mrw_nccl_rank(const mrw_nccl *c) { return c ? c->rank : 0; }
extern "C" int mrw_nccl_world(const mrw_nccl *c) { return c ? c->world : 1; }
extern "C" const char *mrw_nccl_version(const mrw_nccl *c) { return c ? c->version : "none"; }

extern "C" mrw_status mrw_nccl_all_reduce(mrw_nccl *c, const void *send, void *recv, size_t n, mrw_nccl_dtype dt,
                                          void *stream, mrw_error *err) {
    NCHK(c, c->AllReduce(send, recv, n, nccl_type(dt), NCCL_SUM, c->comm, (cudaStream_t)stream), "all-reduce");
    return MRW_OK;
}
extern "C" mrw_status mrw_nccl_reduce_scatter(mrw_nccl *c, const void *send, void *recv, size_t n, mrw_nccl_dtype dt,
                                              void *stream, mrw_error *err) {
    NCHK(c, c->ReduceScatter(send, recv, n, nccl_type(dt), NCCL_SUM, c->comm, (cudaStream_t)stream), "reduce-scatter");
    return MRW_OK;
}
extern "C" mrw_status mrw_nccl_all_gather(mrw_nccl *c, const void *send, void *recv, size_t n, mrw_nccl_dtype dt,
                                          void *stream, mrw_error *err) {
    NCHK(c, c->AllGather(send, recv, n, nccl_type(dt), c->comm, (cudaStream_t)stream), "all-gather");
    return MRW_OK;
}

static mrw_status cchk(cudaError_t e, const char *what, mrw_error *err) {
    return e == cudaSuccess ? MRW_OK : mrw_err(err, MRW_E_INTERNAL, "data parallel: %s: %s", what, cudaGetErrorString(e));
}
#define TRY(x)                                                                                                 \
    do {                                                                                                       \
        mrw_status s_ = (x);                                                                                   \
        if (s_) return s_;                                                                                     \
    } while (0)

extern "C" mrw_status mrw_nccl_sum_host(mrw_nccl *c, double *x, int n, void *stream, mrw_error *err) {
    if (n < 1 || n > 64) return mrw_err(err, MRW_E_ARG, "mrw_nccl_sum_host: %d values", n);
    cudaStream_t st = (cudaStream_t)stream;
    TRY(cchk(cudaMemcpyAsync(c->scratch, x, (size_t)n * sizeof(double), cudaMemcpyHostToDevice, st), "sum", err));
    TRY(mrw_nccl_all_reduce(c, c->scratch, c->scratch, (size_t)n, MRW_NCCL_F64, stream, err));
    TRY(cchk(cudaMemcpyAsync(x, c->scratch, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost, st), "sum", err));
    return cchk(cudaStreamSynchronize(st), "sum", err);
}

/* ------------------------------------------------------------------------------------- data parallel */

struct mrw_dp {
    mrw_rwkv7_gpu *g;
    mrw_nccl *c;
    int rank, world, zero;
    size_t S, cap, lo, hi; /* shard size, padded total (world * S), this rank's shard */
    float *m, *v;          /* ZeRO-1: the shard's moments */
    __nv_bfloat16 *gbf;    /* bf16 all-reduce: the gradients rounded to bf16 (cap elements) */
    int frozen, bf16;      /* frozen: the trainer has no gradients (stage 1); bf16: mrw_dp_set_bf16(on) */
    __nv_bfloat16 *xbf;    /* bf16 all-reduce of the other tables (mrw_dp_sum_grads): xcap elements */
    size_t xcap;
};

namespace {
__global__ void to_bf16(size_t n, const float *x, __nv_bfloat16 *y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16_rn(x[i]);
}
__global__ void from_bf16(size_t n, const __nv_bfloat16 *x, float *y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = __bfloat162float(x[i]);
}
} // namespace

static mrw_status convert(int to, size_t n, float *f, __nv_bfloat16 *b, void *stream, mrw_error *err) {
    if (!n) return MRW_OK;
    const unsigned grid = (unsigned)(n / 256 + 1 < 2048 ? n / 256 + 1 : 2048);
    if (to) to_bf16<<<grid, 256, 0, (cudaStream_t)stream>>>(n, f, b);
    else from_bf16<<<grid, 256, 0, (cudaStream_t)stream>>>(n, b, f);
    return cchk(cudaGetLastError(), "bf16 conversion", err);
}

extern "C" void mrw_dp_free(mrw_dp *dp) {
    if (!dp) return;
    cudaFree(dp->m), cudaFree(dp->v), cudaFree(dp->gbf), cudaFree(dp->xbf);
    free(dp);
}

extern "C" mrw_status mrw_dp_set_bf16(mrw_dp *dp, int on, mrw_error *err) {
    dp->bf16 = on != 0;
    if (dp->frozen) return MRW_OK; /* (no RWKV gradients to round) */
    if (!on) {
        cudaFree(dp->gbf);
        dp->gbf = NULL;
        return MRW_OK;
    }
    if (dp->gbf) return MRW_OK;
    cudaError_t e = cudaMalloc((void **)&dp->gbf, dp->cap * sizeof(__nv_bfloat16));
    if (e == cudaSuccess) e = cudaMemset(dp->gbf, 0, dp->cap * sizeof(__nv_bfloat16));
    if (e != cudaSuccess) {
        cudaGetLastError();
        dp->gbf = NULL;
        return mrw_err(err, MRW_E_NOMEM, "data parallel: cannot allocate %.2f GiB for the bf16 all-reduce: %s",
                       dp->cap * 2 / 1073741824.0, cudaGetErrorString(e));
    }
    return MRW_OK;
}

extern "C" mrw_status mrw_dp_new(mrw_rwkv7_gpu *g, mrw_nccl *c, int zero, mrw_dp **out, mrw_error *err) {
    *out = NULL;
    mrw_dp *dp = (mrw_dp *)calloc(1, sizeof *dp);
    if (!dp) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    dp->g = g, dp->c = c, dp->zero = zero;
    dp->world = c ? c->world : 1, dp->rank = c ? c->rank : 0;
    mrw_rwkv7_gpu_flat f;
    mrw_rwkv7_gpu_flat_get(g, &f);
    if (!f.g) { /* frozen (stage 1): nothing of the table to sum, shard or pad */
        dp->frozen = 1, dp->zero = 0;
        dp->S = dp->cap = f.total, dp->lo = 0, dp->hi = f.total;
        *out = dp;
        return MRW_OK;
    }
    const size_t W = (size_t)dp->world;
    dp->S = ((f.total + W - 1) / W + 63) / 64 * 64;
    dp->cap = dp->S * W;
    dp->lo = dp->S * (size_t)dp->rank, dp->hi = dp->lo + dp->S;
    mrw_status s = MRW_OK;
    if (zero || dp->world > 1) s = mrw_rwkv7_gpu_flat_grow(g, dp->cap, err);
    if (!s && zero) {
        cudaError_t e = cudaMalloc((void **)&dp->m, dp->S * sizeof(float));
        if (e == cudaSuccess) e = cudaMalloc((void **)&dp->v, dp->S * sizeof(float));
        if (e == cudaSuccess) e = cudaMemset(dp->m, 0, dp->S * sizeof(float));
        if (e == cudaSuccess) e = cudaMemset(dp->v, 0, dp->S * sizeof(float));
        if (e != cudaSuccess) {
            cudaGetLastError();
            s = mrw_err(err, MRW_E_NOMEM, "data parallel: cannot allocate %.2f GiB of Adam moments for the shard: %s",
                        dp->S * 8 / 1073741824.0, cudaGetErrorString(e));
        } else {
            mrw_rwkv7_gpu_drop_moments(g);
        }
    }
    if (s) {
        mrw_dp_free(dp);
        return s;
    }
    *out = dp;
    return MRW_OK;
}

extern "C" size_t mrw_dp_moment_bytes(const mrw_dp *dp) {
    mrw_rwkv7_gpu_flat f;
    mrw_rwkv7_gpu_flat_get(dp->g, &f);
    return dp->frozen ? 0 : dp->zero ? dp->S * 8 : f.total * 8;
}
extern "C" void mrw_dp_shard(const mrw_dp *dp, size_t *lo, size_t *hi) { *lo = dp->lo, *hi = dp->hi; }

extern "C" mrw_status mrw_dp_step(mrw_dp *dp, const mrw_adam_config *cfg, double lr, double max_norm,
                                  double *grad_norm, mrw_error *err) {
    mrw_rwkv7_gpu_flat f;
    mrw_rwkv7_gpu_flat_get(dp->g, &f);
    if (dp->frozen) return mrw_err(err, MRW_E_ARG, "data parallel: the RWKV trainer is frozen (no step)");
    if (!dp->zero) {
        if (dp->gbf) { /* rounded to bf16, summed in bf16, back to fp32 (one GPU: the rounding alone) */
            TRY(convert(1, f.total, f.g, dp->gbf, f.stream, err));
            if (dp->world > 1)
                TRY(mrw_nccl_all_reduce(dp->c, dp->gbf, dp->gbf, f.total, MRW_NCCL_BF16, f.stream, err));
            TRY(convert(0, f.total, f.g, dp->gbf, f.stream, err));
        } else if (dp->world > 1) {
            TRY(mrw_nccl_all_reduce(dp->c, f.g, f.g, f.total, MRW_NCCL_F32, f.stream, err));
        }
        return mrw_rwkv7_gpu_step(dp->g, cfg, lr, max_norm, grad_norm, err);
    }
    if (dp->gbf) {
        TRY(convert(1, dp->cap, f.g, dp->gbf, f.stream, err));
        if (dp->world > 1)
            TRY(mrw_nccl_reduce_scatter(dp->c, dp->gbf, dp->gbf + dp->lo, dp->S, MRW_NCCL_BF16, f.stream, err));
        TRY(convert(0, dp->S, f.g + dp->lo, dp->gbf + dp->lo, f.stream, err));
    } else if (dp->world > 1) {
        TRY(mrw_nccl_reduce_scatter(dp->c, f.g, f.g + dp->lo, dp->S, MRW_NCCL_F32, f.stream, err));
    }
    TRY(mrw_rwkv7_gpu_sumsq_range(dp->g, dp->lo, dp->hi, err));
    if (dp->world > 1)
        TRY(mrw_nccl_all_reduce(dp->c, f.norm_part, f.norm_part, MRW_CUDA_NORM_BLOCKS, MRW_NCCL_F64, f.stream, err));
    TRY(mrw_rwkv7_gpu_step_range(dp->g, cfg, lr, max_norm, dp->lo, dp->hi, dp->m, dp->v, grad_norm, err));
    if (dp->world > 1) TRY(mrw_nccl_all_gather(dp->c, f.w + dp->lo, f.w, dp->S, MRW_NCCL_F32, f.stream, err));
    return mrw_rwkv7_gpu_refresh(dp->g, err);
}

extern "C" mrw_status mrw_dp_moments(mrw_dp *dp, int to_gpu, const mrw_param_set *ps, float *m, float *v,
                                     const size_t *moff, int64_t *t, mrw_error *err) {
    if (!dp->zero) return mrw_rwkv7_gpu_moments(dp->g, to_gpu, ps, m, v, moff, t, err);
    mrw_rwkv7_gpu_flat f;
    mrw_rwkv7_gpu_flat_get(dp->g, &f);
    cudaStream_t st = (cudaStream_t)f.stream;
    float *host[2] = {m, v}, *shard[2] = {dp->m, dp->v};
    for (int k = 0; k < 2; k++) { /* through the gradient buffer (world * S floats) */
        if (to_gpu) {
            TRY(cchk(cudaMemsetAsync(f.g, 0, dp->cap * sizeof(float), st), "moments", err));
            TRY(mrw_rwkv7_gpu_moments_buf(dp->g, 1, ps, host[k], moff, f.g, err));
            TRY(cchk(cudaDeviceSynchronize(), "moments", err)); /* (pageable uploads may still be in flight) */
            TRY(cchk(cudaMemcpyAsync(shard[k], f.g + dp->lo, dp->S * sizeof(float), cudaMemcpyDeviceToDevice, st),
                     "moments", err));
        } else {
            if (dp->world > 1) TRY(mrw_nccl_all_gather(dp->c, shard[k], f.g, dp->S, MRW_NCCL_F32, st, err));
            else TRY(cchk(cudaMemcpyAsync(f.g, shard[k], dp->S * sizeof(float), cudaMemcpyDeviceToDevice, st),
                          "moments", err));
            TRY(mrw_rwkv7_gpu_moments_buf(dp->g, 0, ps, host[k], moff, f.g, err));
        }
    }
    /* the gradient buffer is zero again (as after zero_grad) */
    TRY(cchk(cudaMemsetAsync(f.g, 0, dp->cap * sizeof(float), st), "moments", err));
    if (to_gpu) *f.t_adam = *t;
    else *t = *f.t_adam;
    return cchk(cudaStreamSynchronize(st), "moments", err);
}

extern "C" mrw_status mrw_dp_sum_host(mrw_dp *dp, double *x, int n, mrw_error *err) {
    if (dp->world <= 1) return MRW_OK;
    mrw_rwkv7_gpu_flat f;
    mrw_rwkv7_gpu_flat_get(dp->g, &f);
    return mrw_nccl_sum_host(dp->c, x, n, f.stream, err);
}

/* ------------------------------------------------------------------------- the ModRWKV stages (joint clip) */

extern "C" mrw_status mrw_dp_sum_grads(mrw_dp *dp, float *g, size_t n, mrw_error *err) {
    if (!n || (dp->world <= 1 && !dp->bf16)) return MRW_OK;
    mrw_rwkv7_gpu_flat f;
    mrw_rwkv7_gpu_flat_get(dp->g, &f);
    if (!dp->bf16) return mrw_nccl_all_reduce(dp->c, g, g, n, MRW_NCCL_F32, f.stream, err);
    if (n > dp->xcap) { /* (once: the tables keep their sizes) */
        TRY(cchk(cudaStreamSynchronize((cudaStream_t)f.stream), "bf16 buffer", err));
        cudaFree(dp->xbf);
        dp->xbf = NULL, dp->xcap = 0;
        if (cudaMalloc((void **)&dp->xbf, n * sizeof(__nv_bfloat16)) != cudaSuccess) {
            cudaGetLastError();
            dp->xbf = NULL;
            return mrw_err(err, MRW_E_NOMEM, "data parallel: cannot allocate %.2f MiB for the bf16 all-reduce",
                           n * 2 / 1048576.0);
        }
        dp->xcap = n;
    }
    TRY(convert(1, n, g, dp->xbf, f.stream, err));
    if (dp->world > 1) TRY(mrw_nccl_all_reduce(dp->c, dp->xbf, dp->xbf, n, MRW_NCCL_BF16, f.stream, err));
    return convert(0, n, g, dp->xbf, f.stream, err);
}

extern "C" double *mrw_dp_sync_sumsq(mrw_dp *dp, mrw_error *err) {
    mrw_rwkv7_gpu_flat f;
    mrw_rwkv7_gpu_flat_get(dp->g, &f);
    if (dp->frozen) {
        mrw_err(err, MRW_E_ARG, "data parallel: the RWKV trainer is frozen (no gradients)");
        return NULL;
    }
    mrw_status s = MRW_OK;
    if (!dp->zero) { /* the whole table summed on every rank (bf16: as mrw_dp_step) */
        if (dp->gbf) {
            s = convert(1, f.total, f.g, dp->gbf, f.stream, err);
            if (!s && dp->world > 1) s = mrw_nccl_all_reduce(dp->c, dp->gbf, dp->gbf, f.total, MRW_NCCL_BF16, f.stream, err);
            if (!s) s = convert(0, f.total, f.g, dp->gbf, f.stream, err);
        } else if (dp->world > 1) {
            s = mrw_nccl_all_reduce(dp->c, f.g, f.g, f.total, MRW_NCCL_F32, f.stream, err);
        }
        if (!s) s = mrw_rwkv7_gpu_sumsq_range(dp->g, 0, f.total, err);
        return s ? NULL : f.norm_part;
    }
    if (dp->gbf) { /* ZeRO-1: this rank's shard summed, its sums of squares summed over the ranks */
        s = convert(1, dp->cap, f.g, dp->gbf, f.stream, err);
        if (!s && dp->world > 1)
            s = mrw_nccl_reduce_scatter(dp->c, dp->gbf, dp->gbf + dp->lo, dp->S, MRW_NCCL_BF16, f.stream, err);
        if (!s) s = convert(0, dp->S, f.g + dp->lo, dp->gbf + dp->lo, f.stream, err);
    } else if (dp->world > 1) {
        s = mrw_nccl_reduce_scatter(dp->c, f.g, f.g + dp->lo, dp->S, MRW_NCCL_F32, f.stream, err);
    }
    if (!s) s = mrw_rwkv7_gpu_sumsq_range(dp->g, dp->lo, dp->hi, err);
    if (!s && dp->world > 1)
        s = mrw_nccl_all_reduce(dp->c, f.norm_part, f.norm_part, MRW_CUDA_NORM_BLOCKS, MRW_NCCL_F64, f.stream, err);
    return s ? NULL : f.norm_part;
}

extern "C" mrw_status mrw_dp_step_finish(mrw_dp *dp, const mrw_adam_config *cfg, double lr, double max_norm,
                                         double *grad_norm, mrw_error *err) {
    mrw_rwkv7_gpu_flat f;
    mrw_rwkv7_gpu_flat_get(dp->g, &f);
    if (dp->frozen) return mrw_err(err, MRW_E_ARG, "data parallel: the RWKV trainer is frozen (no step)");
    if (!dp->zero) {
        TRY(mrw_rwkv7_gpu_step_range(dp->g, cfg, lr, max_norm, 0, f.total, f.m, f.v, grad_norm, err));
        return mrw_rwkv7_gpu_refresh(dp->g, err);
    }
    TRY(mrw_rwkv7_gpu_step_range(dp->g, cfg, lr, max_norm, dp->lo, dp->hi, dp->m, dp->v, grad_norm, err));
    if (dp->world > 1) TRY(mrw_nccl_all_gather(dp->c, f.w + dp->lo, f.w, dp->S, MRW_NCCL_F32, f.stream, err));
    return mrw_rwkv7_gpu_refresh(dp->g, err);
}
