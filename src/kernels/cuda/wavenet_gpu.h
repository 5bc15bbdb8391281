/* The WaveNet time-series encoder (src/ts/wavenet.h) on the GPU, forward and backward, with the forecaster's patch
 * pooling (src/ts/forecaster.h, pool_P) after it: what `modrwkv train --csv --device cuda` runs for the encoder.
 * The CPU mrw_wavenet_forward / _backward is the reference (tests/cuda/test_wavenet_gpu.cu). Built with `make CUDA=1`
 * (wavenet_gpu.cu). Everything is asynchronous on the stream given at creation.
 *
 * The weights (~1 MB at the default shape) stay mastered on the host, in the host WaveNet's parameter set: the
 * caller uploads them after every host optimizer step and downloads (adds) the device gradients before it.
 *
 * How it runs (rows n = b*T + t, N = B*T; C residual, S skip, E output channels; L layers):
 *   h_0 = w_in x + b_in                                     element-wise, fp32
 *   per layer: col = [h[t-d], h[t]] (0 for t < d, per series: never across series), a = col W_d^T (one GEMM
 *     [N, 2C] x [2C, 2C]), f = tanh(a_f + b), g = sigmoid(a_g + b), z = f g, h_{i+1} = h_i + z W_r^T (the GEMM adds
 *     into a copy of h_i: cuBLASLt with C != D). The residual stream h is fp32 and is kept without the res biases:
 *     h_i is stored minus sum_{j<i} b_r[j], which the im2col adds back (so no separate bias pass per layer).
 *   skip = Z W_s^T + sum_i b_s[i]: ONE GEMM over all layers' z stored side by side (Z [N, L*C], W_s laid out as
 *     [S, L*C]) instead of L GEMMs with K = C; the backward's d Z (for all layers at once) and d W_s likewise.
 *   The pooling commutes with the 1x1 out conv, so relu(skip) is pooled first (mean over each patch) and the out
 *   conv runs on the B*n pooled rows only (P times fewer rows than out over every step, then pooled).
 * Backward mirrors it: bias gradients are deterministic column sums in fp32 (common.cuh colsum) of values computed
 * on the fly; weight gradients are GEMMs over the rows with fp32 accumulation into fp32 gradients.
 * fp32 = 1 runs every GEMM in fp32 (no TF32) with fp32 operands: the parity mode. fp32 = 0 rounds the GEMM operands
 * (a bf16 weight copy, im2col, z, the pooled relu(skip), and the backward's gradients at GEMM inputs) to bf16 with
 * fp32 accumulation; everything element-wise (tanh, sigmoid, the residual stream, skip sums, pooling) stays fp32.
 * The last layer's res_conv feeds nothing: it is not run and gets zero gradient (as on the CPU).
 * Default config (L10 C64 S64 E128), B 32 T 720 P 16 on an H100 (tests/cuda/test_wavenet_gpu.cu): bf16 mode forward
 * 0.38 ms, forward + backward 1.6 ms, 320 MiB; fp32 mode 0.66 / 2.5 ms, 356 MiB (the step is small and mostly
 * memory-bound, so fp32 costs ~1.5x); the CPU's mrw_wavenet with 16 threads 270 / 820-910 ms. fp32 mode matches the
 * CPU to <= 9e-7 (max err / max |ref|); bf16 mode's output to 3e-3, its gradients to ~7e-2 (the skip ReLU: see the
 * test's comment). */
#ifndef MRW_KERNELS_CUDA_WAVENET_GPU_H
#define MRW_KERNELS_CUDA_WAVENET_GPU_H

#include <stddef.h>

#include "modrwkv.h"
#include "ts/wavenet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mrw_wavenet_gpu mrw_wavenet_gpu;

/* Buffers for up to max_B series of up to max_T steps. fp32 = 1: fp32 GEMMs and activations (the parity mode);
 * 0: bf16 weights copy / bf16 GEMM operands with fp32 accumulation, fp32 everything element-wise (the fast mode).
 * stream: a cudaStream_t (NULL = default) -- the GPU forecaster passes mrw_rwkv7_gpu_stream(...) so everything runs
 * in order. MRW_E_ARG for a bad config or sizes, MRW_E_NOMEM naming the bytes asked for and the free device memory. */
mrw_status mrw_wavenet_gpu_new(const mrw_wavenet_config *cfg, int max_B, int max_T, int fp32, void *stream,
                               mrw_wavenet_gpu **out, mrw_error *err);
void mrw_wavenet_gpu_free(mrw_wavenet_gpu *g);
/* Device memory held (bytes). */
size_t mrw_wavenet_gpu_bytes(const mrw_wavenet_gpu *g);
/* Weights from the host WaveNet's parameter set (src/ts/wavenet.h, names encoder.model.*), refreshing the bf16 copy.
 * Called after every host optimizer step. The host config must be the one given to _new (MRW_E_ARG otherwise).
 * Asynchronous on the stream (the host buffer is staged, so host may change its weights right after). */
mrw_status mrw_wavenet_gpu_upload(mrw_wavenet_gpu *g, const mrw_wavenet *host, mrw_error *err);
/* Device gradients ADDED into the host set's gradients (host->ps g += dev), then the device gradients are zeroed.
 * Synchronises the stream. */
mrw_status mrw_wavenet_gpu_download_grads(mrw_wavenet_gpu *g, mrw_wavenet *host, mrw_error *err);
/* x: DEVICE fp32 [B][T] (already normalised; copied, so the caller may reuse it). Runs the WaveNet and pools its
 * output [B][T][E] over patches of P steps aligned to the END of the series: n = T / P patches, patch j = steps
 * off + j*P ... off + j*P + P-1 with off = T - n*P (exactly forecaster.h's pool_P; P = 1: no pooling). *pooled
 * receives a DEVICE pointer to [B][n][E] in fp32 (owned by g, valid until the next forward). Keeps what the backward
 * needs. MRW_E_ARG for B outside 1..max_B, T outside 1..max_T, P outside 1..T, NULL pointers. */
mrw_status mrw_wavenet_gpu_forward(mrw_wavenet_gpu *g, const float *x, int B, int T, int P, const float **pooled,
                                   mrw_error *err);
/* From d_pooled (DEVICE fp32 [B][n][E], d loss / d pooled of the last forward): device gradients += . At most once
 * per forward (MRW_E_ARG without a forward before it). (d x is not computed: the input is data.) */
mrw_status mrw_wavenet_gpu_backward(mrw_wavenet_gpu *g, const float *d_pooled, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
