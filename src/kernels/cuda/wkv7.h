/* WKV7 recurrence on the GPU for training (forward that keeps what the backward needs, and the backward).
 * Plain C interface; built only with `make CUDA=1` (src/kernels/cuda/wkv7.cu). See docs/CUDA.md.
 *
 * The recurrence (../shared/reference/rwkv7.md, step 10), per batch row b and head h, i = value (row) index,
 * j = key (column) index, N = 64:
 *     decay_j = exp(-exp(w_j))                       w is the LOG-SPACE decay, as the official training kernel
 *                                                    takes it: w = -softplus(-omega) - 0.5, decay in (0.545, 1)
 *     sa_i    = sum_j S_ij a_j                       (old S)
 *     S_ij   <- S_ij decay_j + sa_i b_j + v_i k_j
 *     y_i     = sum_j S_ij r_j                       (new S)
 * with a = -kappa_hat and b = kappa_hat * alpha in RWKV-7. S starts at s0 (or zero).
 *
 * Tensors r, w, k, v, a, b, y, dy and every gradient are [B][T][H][N] row-major, contiguous, all of one dtype
 * (fp32 or bf16). State and everything saved for the backward are fp32:
 *     s0, ds_T, ds0   [B][H][N][N]    S[i][j], j contiguous (the CPU mrw_wkv7 layout)
 *     ckpt            [B][H][nc][N][N], nc = ceil(T / 16): the state after step min(16c+15, T-1); the last
 *                     one (c = nc-1) is the final state S_T
 *     sa              [B][T][H][N]    sa_i of every step
 * T need not be a multiple of 16. The backward recovers S_{t-1} from S_t by inverting the update
 * (S_{t-1} = (S_t - v k^T - sa b^T) / decay), restarting from a checkpoint every 16 steps, as the reference
 * trainer's kernel does; dw is the gradient with respect to the log-space w.
 *
 * All pointers are device pointers; the calls are asynchronous on `stream` (a cudaStream_t, NULL = default
 * stream) and return MRW_E_ARG for bad shapes or NULL tensors, MRW_E_INTERNAL with the CUDA message if a
 * launch fails. Gradients are written (=), not accumulated. */
#ifndef MRW_KERNELS_CUDA_WKV7_H
#define MRW_KERNELS_CUDA_WKV7_H

#include <stddef.h>

#include "modrwkv.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MRW_WKV7_N 64     /* head size the kernels are built for */
#define MRW_WKV7_CHUNK 16 /* checkpoint interval */

typedef enum { MRW_CUDA_F32 = 0, MRW_CUDA_BF16 = 1 } mrw_cuda_dtype;

/* Sizes (in floats) of the buffers the forward fills for the backward. */
size_t mrw_cuda_wkv7_ckpt_floats(int B, int T, int H);
size_t mrw_cuda_wkv7_sa_floats(int B, int T, int H);

/* s0 may be NULL (zero state). */
mrw_status mrw_cuda_wkv7_forward(mrw_cuda_dtype dt, int B, int T, int H, const void *r, const void *w,
                                 const void *k, const void *v, const void *a, const void *b, const float *s0,
                                 void *y, float *ckpt, float *sa, void *stream, mrw_error *err);

/* ds_T (gradient of the final state) may be NULL (zero); ds0 may be NULL (not wanted). ckpt and sa are the
 * forward's, for the same inputs. */
mrw_status mrw_cuda_wkv7_backward(mrw_cuda_dtype dt, int B, int T, int H, const void *r, const void *w,
                                  const void *k, const void *v, const void *a, const void *b, const void *dy,
                                  const float *ds_T, const float *ckpt, const float *sa, void *dr, void *dw,
                                  void *dk, void *dv, void *da, void *db, float *ds0, void *stream,
                                  mrw_error *err);

/* Tuning variants for tests and benchmarks (0 = the default, which the plain calls above use):
 *   2, 4, 8  row-sliced kernels: that many threads share one row of the 64x64 state
 *   1        tiled kernels: each thread holds a 4 x 8 tile (default forward; the tiled backward is slower)
 *   16       MRW_WKV7_CHUNKED: the chunked tensor-core kernels (below)
 *   17       MRW_WKV7_CHUNKED3: the same, the backward's 3-blocks-per-SM kernel forced (below)
 * Defaults: tiled forward, 2 threads per row backward (docs/CUDA.md has the measurements). */
mrw_status mrw_cuda_wkv7_forward_ex(mrw_cuda_dtype dt, int B, int T, int H, const void *r, const void *w,
                                    const void *k, const void *v, const void *a, const void *b, const float *s0,
                                    void *y, float *ckpt, float *sa, void *stream, int variant,
                                    mrw_error *err);
mrw_status mrw_cuda_wkv7_backward_ex(mrw_cuda_dtype dt, int B, int T, int H, const void *r, const void *w,
                                     const void *k, const void *v, const void *a, const void *b, const void *dy,
                                     const float *ds_T, const float *ckpt, const float *sa, void *dr, void *dw,
                                     void *dk, void *dv, void *da, void *db, float *ds0, void *stream,
                                     int variant, mrw_error *err);

/* The chunked kernels (src/kernels/cuda/wkv7_chunk.cu): variant MRW_WKV7_CHUNKED of the _ex calls. Within a chunk
 * of 16 steps the transitions are combined in WY form, so the work becomes small matrix products on the tensor
 * cores (TF32 mma with fp32 accumulation; 3xTF32 for fp32 tensors) and only the chunk-to-chunk state passing is
 * sequential. The forward writes the same ckpt and sa as the other forwards; in bf16 its checkpoints carry TF32
 * rounding, too coarse for the step backwards' inversion, so pair it with the chunked backward there. The
 * chunked backward restarts each chunk from its exact start state (no inversion), so it needs the forward's
 * initial state: mrw_cuda_wkv7_backward_s0 takes it; backward_ex with this variant assumes s0 = 0 (zero state,
 * the trainer's case). Other variants ignore s0. The chunked backward's shared-memory layout: v2 (default, fewer bank
 * conflicts) or, with MRW_WKV7_BWD=1 in the environment (read once), v1, the layout before; same results up to the
 * summation order inside some tensor-core products. docs/CUDA.md has the measurements. */
#define MRW_WKV7_CHUNKED 16
/* The same, with the backward's 3-blocks-per-SM kernel forced (variant 16 takes it by itself when B H > 2 SMs, the
 * 2-per-SM one otherwise): for tests. As a forward variant the same as 16. */
#define MRW_WKV7_CHUNKED3 17
mrw_status mrw_cuda_wkv7_backward_s0(mrw_cuda_dtype dt, int B, int T, int H, const void *r, const void *w,
                                     const void *k, const void *v, const void *a, const void *b, const void *dy,
                                     const float *s0, const float *ds_T, const float *ckpt, const float *sa,
                                     void *dr, void *dw, void *dk, void *dv, void *da, void *db, float *ds0,
                                     void *stream, int variant, mrw_error *err);

/* Internal: the chunked kernels' launchers (arguments already checked by the calls above). */
mrw_status mrw_cuda_wkv7_chunk_fwd_launch(mrw_cuda_dtype dt, int B, int T, int H, const void *r, const void *w,
                                          const void *k, const void *v, const void *a, const void *b,
                                          const float *s0, void *y, float *ckpt, float *sa, void *stream,
                                          mrw_error *err);
mrw_status mrw_cuda_wkv7_chunk_bwd_launch(mrw_cuda_dtype dt, int B, int T, int H, const void *r, const void *w,
                                          const void *k, const void *v, const void *a, const void *b,
                                          const void *dy, const float *s0, const float *ds_T, const float *ckpt,
                                          const float *sa, void *dr, void *dw, void *dk, void *dv, void *da,
                                          void *db, float *ds0, int kernel, void *stream, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
