/* The ModRWKV forecaster (src/ts/forecaster.h) trained on one GPU: `modrwkv train --csv … --device cuda`.
 * See docs/FORECAST.md, "On the GPU". Compiled into the library only with MRW_CUDA (make CUDA=1):
 * forecaster_gpu.c (the step, plain C over the CUDA modules' C interfaces) and forecaster_gpu_ops.cu (row copies,
 * casts, transfers).
 *
 * What runs where (per micro-batch):
 *   host    per-window normalisation x̂ = (x − μ)/σ (tiny), upload x̂
 *   GPU     WaveNet + patch pooling (wavenet_gpu.h) → pooled features [B][n][E]; or a frozen Timer encoder on the
 *           host (mrw_timer_forward, as on the CPU), its features [B][n][E] uploaded
 *   GPU     bf16 mode: the v2 adapter (adapter_gpu.h) on the pooled rows, scattered to the injected rows b*T + t
 *   host    fp32 mode: the adapter on the host (the CPU code; adapter_gpu is bf16-only, and the fp32 mode exists to
 *           check the math against the CPU trainer), its rows uploaded
 *   GPU     RWKV-7 in hidden-state mode (rwkv7_train_gpu.h mrw_rwkv7_gpu_forward_hidden): ln_out at position T-1
 *   host    the head, the skip path, de-normalisation and the MSE (forecast_head.c; B×C×H is tiny), d hidden
 *   GPU     the backward through RWKV-7 (parameter gradients unless frozen), the adapter, the pooling, WaveNet.
 * Parameters: RWKV-7 is mastered on the GPU (fp32 weights, gradients and Adam moments; its host set is written only
 * by mrw_forecaster_gpu_download, for checkpoints and evaluation); the small sets (WaveNet, adapter, head, skip path)
 * keep their fp32 masters, gradients and Adam on the host in the forecaster's own parameter sets: the device
 * gradients are added into them by mrw_forecaster_gpu_grads_to_host, and mrw_forecaster_gpu_upload_small copies
 * the weights back after the host step. One clip over every trained tensor but the skip path's (as the CPU trainer's
 * mrw_clip_grad_norm): mrw_forecaster_gpu_rwkv_sumsq gives the RWKV table's sum of squares; the caller adds the host
 * sets' and both sides scale by the same coefficient (mrw_forecaster_gpu_rwkv_step). */
#ifndef MRW_KERNELS_CUDA_FORECASTER_GPU_H
#define MRW_KERNELS_CUDA_FORECASTER_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "train/optim.h"
#include "ts/forecaster.h"

typedef struct mrw_forecaster_gpu mrw_forecaster_gpu;

/* The GPU side of the host forecaster f (which must outlive it; its max_B is the batch). fp32: fp32 activations
 * and GEMMs everywhere (the parity mode) and the adapter on the host; frozen_lm: the RWKV-7 is never trained (no
 * gradients, no moments on the device). Uploads every weight of f. */
mrw_status mrw_forecaster_gpu_new(mrw_forecaster *f, int fp32, int frozen_lm, int device, mrw_forecaster_gpu **out,
                                  mrw_error *err);
void mrw_forecaster_gpu_free(mrw_forecaster_gpu *g);
size_t mrw_forecaster_gpu_bytes(const mrw_forecaster_gpu *g);

/* Every weight of f (RWKV-7 included) to the device (after a resume loaded them on the host). */
mrw_status mrw_forecaster_gpu_upload(mrw_forecaster_gpu *g, mrw_error *err);
/* The WaveNet's and the adapter's weights to the device (after the host optimizer step). */
mrw_status mrw_forecaster_gpu_upload_small(mrw_forecaster_gpu *g, mrw_error *err);
/* The RWKV-7 weights from the device into f's host set (checkpoints, evaluation on the host). */
mrw_status mrw_forecaster_gpu_download(mrw_forecaster_gpu *g, mrw_error *err);

/* As mrw_forecaster_forward / _backward (x [B, L], y [B, H] or NULL, yhat NULL or [B, H]); the backward adds the
 * head's and skip path's gradients (and, fp32 mode, the adapter's) into f's host sets and the others on the device. */
mrw_status mrw_forecaster_gpu_forward(mrw_forecaster_gpu *g, const float *x, const float *y, int B, float *yhat,
                                      double *loss, mrw_error *err);
mrw_status mrw_forecaster_gpu_backward(mrw_forecaster_gpu *g, float scale, mrw_error *err);
/* Zeroes the device gradients (RWKV-7, adapter; the WaveNet's are zeroed by each transfer to the host). */
mrw_status mrw_forecaster_gpu_zero_grad(mrw_forecaster_gpu *g, mrw_error *err);
/* Adds the WaveNet's and the adapter's device gradients into f's host sets (once per optimizer step). */
mrw_status mrw_forecaster_gpu_grads_to_host(mrw_forecaster_gpu *g, mrw_error *err);

/* The RWKV-7 table's sum of squared gradients (0 when frozen); then the step: the norm is sqrt(that + host_ss) and
 * the clip coefficient min(1, clip / (norm + 1e-6)) (float, as mrw_clip_grad_norm), Adam(W) at lr on the device. */
mrw_status mrw_forecaster_gpu_rwkv_sumsq(mrw_forecaster_gpu *g, double *ss, mrw_error *err);
mrw_status mrw_forecaster_gpu_rwkv_step(mrw_forecaster_gpu *g, const mrw_adam_config *cfg, double lr, double clip,
                                        double host_ss, mrw_error *err);
/* RWKV-7 Adam moments and step count between the device and a host optimizer over f's sets (mrw_adam's layout:
 * set 2 = RWKV-7, moff its offsets); nothing when frozen. */
mrw_status mrw_forecaster_gpu_moments(mrw_forecaster_gpu *g, int to_gpu, mrw_adam *opt, mrw_error *err);

#endif
