/* Data-parallel training on several GPUs through NCCL (docs/DISTRIBUTED.md). Plain C interface; built with
 * `make CUDA=1` (dist_nccl.cu). NCCL is loaded at run time with dlopen("libnccl.so.2") (MRW_NCCL_LIB overrides the
 * path), so nothing links it: a build without NCCL installed compiles and runs everything else, and only a run with
 * more than one rank needs it.
 *
 * mrw_nccl: one communicator, one rank per process and GPU. The NCCL unique id goes from rank 0 to the others
 * through train/dist.h's TCP rendezvous (MASTER_ADDR:MASTER_PORT), then ncclCommInitRank; NCCL itself then talks
 * over NVLink / PCIe inside a node and over the network (sockets or InfiniBand; NCCL_SOCKET_IFNAME, NCCL_IB_HCA)
 * between nodes. Nothing here assumes one machine.
 *
 * mrw_dp: the data-parallel optimizer step of a mrw_rwkv7_gpu, after every rank ran the backward of its slice of
 * the global batch with backward(scale = its share of the global target count), so that the gradients only need
 * summing:
 *   - plain (zero = 0): ncclAllReduce (sum, fp32; bf16 with mrw_dp_set_bf16) of the whole gradient buffer, then the unchanged one-GPU step
 *     (global norm, clip, Adam) on every rank: the ranks' weights stay identical;
 *   - ZeRO-1 (zero = 1): the flat buffer is cut into `world` equal shards (padded to a multiple of 64 floats); a
 *     reduce-scatter (fp32 sum) leaves each rank the summed gradient of its shard; the squared norm's partial sums
 *     are all-reduced (fp64, 4 KiB), then each rank runs Adam(W) on its shard only (weight decay per tensor: each
 *     tensor's part inside the shard) with moments that exist only for its shard, and an all-gather of the fp32
 *     weights gives every rank the whole update (then the bf16 copy is rewritten). The full-size moments are freed:
 *     8 bytes per parameter become 8 / world.
 * World size 1 (c = NULL) needs no NCCL: plain is then exactly mrw_rwkv7_gpu_step, ZeRO-1 the same update through
 * the shard code (one shard). */
#ifndef MRW_KERNELS_CUDA_DIST_NCCL_H
#define MRW_KERNELS_CUDA_DIST_NCCL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/rwkv7_train_gpu.h"
#include "train/dist.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mrw_nccl mrw_nccl;
typedef enum { MRW_NCCL_F32, MRW_NCCL_F64, MRW_NCCL_BF16 } mrw_nccl_dtype;

/* Loads NCCL, selects GPU `device`, runs the rendezvous of e and creates the communicator (blocks until every rank
 * has joined). Errors: MRW_E_UNSUPPORTED when NCCL cannot be loaded (with dlerror and what to set), MRW_E_IO for
 * the rendezvous, MRW_E_INTERNAL with NCCL's message. */
mrw_status mrw_nccl_open(const mrw_dist_env *e, int device, mrw_nccl **out, mrw_error *err);
void mrw_nccl_close(mrw_nccl *c);
int mrw_nccl_rank(const mrw_nccl *c);
int mrw_nccl_world(const mrw_nccl *c);
/* "2.28.3" */
const char *mrw_nccl_version(const mrw_nccl *c);
/* Sums over the ranks, asynchronous on stream (device pointers; send == recv is in place). reduce_scatter: rank r
 * receives elements [r n, (r+1) n) of the sum of the ranks' send buffers (world * n elements); all_gather: recv =
 * the ranks' send buffers (n elements each) one after the other. */
mrw_status mrw_nccl_all_reduce(mrw_nccl *c, const void *send, void *recv, size_t n, mrw_nccl_dtype dt, void *stream,
                               mrw_error *err);
mrw_status mrw_nccl_reduce_scatter(mrw_nccl *c, const void *send, void *recv, size_t n, mrw_nccl_dtype dt,
                                   void *stream, mrw_error *err);
mrw_status mrw_nccl_all_gather(mrw_nccl *c, const void *send, void *recv, size_t n, mrw_nccl_dtype dt, void *stream,
                               mrw_error *err);
/* x[0..n) (host doubles, n <= 64) summed over the ranks; synchronises. */
mrw_status mrw_nccl_sum_host(mrw_nccl *c, double *x, int n, void *stream, mrw_error *err);

typedef struct mrw_dp mrw_dp;
/* c NULL: a world of one. zero: 1 for ZeRO-1. Pads g's flat buffers to world equal shards. */
mrw_status mrw_dp_new(mrw_rwkv7_gpu *g, mrw_nccl *c, int zero, mrw_dp **out, mrw_error *err);
void mrw_dp_free(mrw_dp *dp);
/* on = 1: the gradients go over the wire in bf16 (rounded to nearest even before the sum, summed by NCCL in bf16,
 * back to fp32 for the norm and Adam): half the bytes, at a precision cost (2^-9 relative per element). Default: fp32.
 * Allocates 2 bytes per parameter. With one rank the gradients are only rounded (the same numerics: a check mode). */
mrw_status mrw_dp_set_bf16(mrw_dp *dp, int on, mrw_error *err);
/* The step after every rank's backward (collective): gradients summed over the ranks, global-norm clip, Adam(W);
 * *grad_norm (may be NULL) = the global norm before clipping. */
mrw_status mrw_dp_step(mrw_dp *dp, const mrw_adam_config *cfg, double lr, double max_norm, double *grad_norm,
                       mrw_error *err);
/* Adam state to (to_gpu) or from the device in mrw_adam's layout, as mrw_rwkv7_gpu_moments; with ZeRO-1 a
 * collective (every rank calls it: the shards are gathered through the gradient buffer, so call it between a step
 * and the next zero_grad, e.g. at a checkpoint), and an upload keeps each rank's shard. Every rank gets the whole
 * state on a download. */
mrw_status mrw_dp_moments(mrw_dp *dp, int to_gpu, const mrw_param_set *ps, float *m, float *v, const size_t *moff,
                          int64_t *t, mrw_error *err);
/* Host doubles summed over the ranks (nothing with one rank). */
mrw_status mrw_dp_sum_host(mrw_dp *dp, double *x, int n, mrw_error *err);
/* ---- the ModRWKV stages (src/train/trainer.c gpu_step): one clip over the RWKV table and the other trained tables
 * (adapters, compression, the GPU-trained vision encoder). An mrw_dp on a frozen trainer (stage 1: no RWKV gradients)
 * holds nothing of the table (no padding, no shard moments, no bf16 buffer; ZeRO-1 has nothing to shard) and serves
 * mrw_dp_sum_grads / mrw_dp_sum_host only. ---- */
/* Another table's fp32 gradient buffer g[0..n) (DEVICE, on the trainer's stream) summed over the ranks in place:
 * a plain all-reduce (these tables are small; ZeRO-1 shards the RWKV table only), in fp32, or in bf16 after
 * mrw_dp_set_bf16 (rounded, summed, back; with one rank only rounded). */
mrw_status mrw_dp_sum_grads(mrw_dp *dp, float *g, size_t n, mrw_error *err);
/* The RWKV table's half of a joint step: its gradients summed over the ranks (all-reduce; ZeRO-1: reduce-scatter
 * into this rank's shard), the partial sums of squares of the table (ZeRO-1: of each shard, summed over the ranks)
 * into the flat norm_part, which is returned (NULL on error, err set). The caller adds the other tables' sums of
 * squares (their gradients already summed: the same on every rank) to it, steps them with it, then calls
 * mrw_dp_step_finish: Adam(W) on the table (ZeRO-1: on the shard, then the all-gather of the weights), clipped by
 * the norm from that part, and the bf16 copy refreshed. */
double *mrw_dp_sync_sumsq(mrw_dp *dp, mrw_error *err);
mrw_status mrw_dp_step_finish(mrw_dp *dp, const mrw_adam_config *cfg, double lr, double max_norm, double *grad_norm,
                              mrw_error *err);
/* Device bytes of Adam moments this rank holds (8 per parameter, / world with ZeRO-1), and the shard [lo, hi). */
size_t mrw_dp_moment_bytes(const mrw_dp *dp);
void mrw_dp_shard(const mrw_dp *dp, size_t *lo, size_t *hi);

#ifdef __cplusplus
}
#endif

#endif
