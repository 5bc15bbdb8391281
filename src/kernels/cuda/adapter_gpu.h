/* The ModRWKV v2 vision adapter trained on the GPU: Linear(E -> hidden) -> ReLU -> Linear(hidden -> C) -> h,
 * out = h + LayerNorm_C(h) (eps 1e-5), forward and backward, fp32 master weights + Adam (adam.h), bf16 activations
 * and GEMMs through the cuBLAS wrapper (gemm.h, fp32 accumulation). The CPU adapter src/train/adapter_train.c
 * (MRW_TADAPTER_V2 without the optional Conv1d) is the reference; the parameter table has its names and shapes
 * ("proj.mlp.0.weight" [hidden][E], "proj.mlp.0.bias", "proj.mlp.2.weight" [C][hidden], "proj.mlp.2.bias",
 * "proj.pre_norm.weight", "proj.pre_norm.bias"; group MRW_PG_ADAPTER), so weights, gradients and moments move
 * between the two by name. Built with `make CUDA=1` (adapter_gpu.cu). See docs/CUDA.md, "ModRWKV stages on the GPU".
 *
 * Rows are feature vectors [rows][E] (all the image tokens of a batch, any order); everything is asynchronous on
 * the stream given at creation (the GPU trainer's, mrw_rwkv7_gpu_stream, so the three parts of a ModRWKV step
 * run in order without host synchronisation). */
#ifndef MRW_KERNELS_CUDA_ADAPTER_GPU_H
#define MRW_KERNELS_CUDA_ADAPTER_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/wkv7.h"
#include "train/optim.h"
#include "train/params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mrw_adapter_gpu mrw_adapter_gpu;

/* hidden 0 = 4C (the v2 adapter). Buffers for up to max_rows rows. stream: NULL = the default stream. */
mrw_status mrw_adapter_gpu_new(int E, int C, int hidden, int max_rows, void *stream, mrw_adapter_gpu **out,
                               mrw_error *err);

/* Every adapter of src/train/adapter_train.h (mrw_tadapter_config) on the GPU:
 *   x [n][Tin][E] -> [compress: Conv1d(E->E, compress_k, compress_s, bias) per sequence] -> [conv: Conv1d(E->conv_out,
 *   conv_k, conv_s, conv_p, bias if conv_bias)] -> Linear(Cv->hidden) -> ReLU -> Linear(hidden->C) -> h
 *   -> out = h + LN(h) (ln 1) or h (ln 0)
 * v1 vision: hidden 2C, ln 1, v1_names. v1 audio: conv E->2C k3 s2 p2 with bias, hidden 2C, ln 0, v1_names.
 * v2: hidden (0 = 4C), ln 1, optionally conv E->E k3 s2 p0 without bias. Names: "compress.weight" [E][E][k],
 * "compress.bias", "proj.conv.weight" [conv_out][E][k], "proj.conv.bias", then the MLP's ("proj.mlp.*" or, with
 * v1_names, "proj.proj.*") and "proj.pre_norm.*" (ln 1) -- the CPU adapter's table. The convolutions are
 * conv1d_gpu.h (im2col + GEMM, bf16 in and out, fp32 sums). Buffers for up to max_items sequences of up to
 * max_Tin rows each (every length is largest at max_Tin). */
typedef struct {
    int E, C, hidden, ln, v1_names;
    int conv_out, conv_k, conv_s, conv_p, conv_bias; /* conv_k 0: no adapter Conv1d */
    int compress_k, compress_s;                      /* compress_k 0: no compression */
} mrw_adapter_gpu_config;
mrw_status mrw_adapter_gpu_new_ex(const mrw_adapter_gpu_config *cfg, int max_items, int max_Tin, void *stream,
                                  mrw_adapter_gpu **out, mrw_error *err);
/* Output rows per sequence of Tin rows (-1: too short for the convolutions). */
int mrw_adapter_gpu_out_len(const mrw_adapter_gpu *a, int Tin);
/* x: DEVICE bf16 [n][Tin][E] (kept until the backward); out: DEVICE bf16 [n][out_len(Tin)][C]. Without
 * convolutions this is mrw_adapter_gpu_forward over n*Tin rows; with them, mrw_adapter_gpu_forward is refused. */
mrw_status mrw_adapter_gpu_forward_seq(mrw_adapter_gpu *a, const void *x, int n, int Tin, void *out, mrw_error *err);
void mrw_adapter_gpu_free(mrw_adapter_gpu *a);
const mrw_param_set *mrw_adapter_gpu_layout(const mrw_adapter_gpu *a); /* names/shapes/offsets; w, g NULL */
size_t mrw_adapter_gpu_bytes(const mrw_adapter_gpu *a);
/* Weights (grads = 0) or gradients (grads = 1) from a host set, matched by name (every tensor must be there with
 * its element count); weights refresh the bf16 copy. Download: weights, and gradients when `grads`. */
mrw_status mrw_adapter_gpu_upload(mrw_adapter_gpu *a, const mrw_param_set *src, int grads, mrw_error *err);
mrw_status mrw_adapter_gpu_download(mrw_adapter_gpu *a, mrw_param_set *dst, int grads, mrw_error *err);
/* PyTorch's default init (U(+-1/sqrt(fan_in)) for weights and biases, LayerNorm 1 / 0) on the device. */
mrw_status mrw_adapter_gpu_init_random(mrw_adapter_gpu *a, uint64_t seed, mrw_error *err);

/* x: DEVICE bf16 [rows][E] (must stay unchanged until the backward); out: DEVICE bf16 [rows][C]. */
mrw_status mrw_adapter_gpu_forward(mrw_adapter_gpu *a, const void *x, int rows, void *out, mrw_error *err);
/* From d_out (DEVICE bf16 [rows][C] of the last forward): grads += (fp32), d_x (NULL or DEVICE bf16 [rows][E];
 * after forward_seq [n][Tin][E]) =. At most once per forward. */
mrw_status mrw_adapter_gpu_backward(mrw_adapter_gpu *a, const void *d_out, void *d_x, mrw_error *err);
mrw_status mrw_adapter_gpu_zero_grad(mrw_adapter_gpu *a, mrw_error *err);
/* Global grad norm over the adapter's tensors and clip (max_norm <= 0: measure only), then one Adam(W) step, as
 * mrw_clip_grad_norm + mrw_adam_step over the adapter's group. *grad_norm (NULL or) receives the norm before
 * clipping (synchronises). */
mrw_status mrw_adapter_gpu_step(mrw_adapter_gpu *a, const mrw_adam_config *cfg, double lr, double max_norm,
                                double *grad_norm, mrw_error *err);

/* ---- for the CLI trainer (src/train/trainer.c, `modrwkv train --device cuda` on the ModRWKV image stages) ---- */
/* The v1 vision adapter is this graph with hidden 2C under other names: renames the table to "proj.proj.0.*",
 * "proj.proj.2.*" (create it with hidden = 2C), so upload / download / moments match a v1 parameter set. */
mrw_status mrw_adapter_gpu_use_v1_names(mrw_adapter_gpu *a, mrw_error *err);
/* Adam state to (to_gpu) or from the device: for each tensor i of ps matched by name with moff[i] != SIZE_MAX,
 * moments m/v + moff[i] (mrw_adam's layout), and the step count t. */
mrw_status mrw_adapter_gpu_moments(mrw_adapter_gpu *a, int to_gpu, const mrw_param_set *ps, float *m, float *v,
                                   const size_t *moff, int64_t *t, mrw_error *err);
/* A clip over the adapter and another table at once: part (DEVICE, MRW_CUDA_NORM_BLOCKS doubles, the other
 * table's partial sums of squares, e.g. mrw_rwkv7_gpu_flat.norm_part) += the adapter's; then _step_part takes its
 * norm and clip coefficient from part instead of its own tensors. */
mrw_status mrw_adapter_gpu_sumsq_add(mrw_adapter_gpu *a, double *part, mrw_error *err);
mrw_status mrw_adapter_gpu_step_part(mrw_adapter_gpu *a, const mrw_adam_config *cfg, double lr, double max_norm,
                                     const double *part, double *grad_norm, mrw_error *err);
/* Buffers owned by the adapter for a trainer step: the injected rows and their gradient, DEVICE [n_rows][C] in
 * dtype dt (the RWKV trainer's activation dtype), and staging for the inputs. */
mrw_status mrw_adapter_gpu_trainer_buffers(mrw_adapter_gpu *a, size_t n_rows, mrw_cuda_dtype dt, void **inject,
                                           void **d_inject, mrw_error *err);
/* x_host: HOST fp32 [rows][E] (encoder features) -> bf16 on the device -> forward -> row r of the output goes to
 * row pos[r] (HOST int32, < n_rows) of inject. */
mrw_status mrw_adapter_gpu_forward_rows(mrw_adapter_gpu *a, const float *x_host, int rows, const int32_t *pos,
                                        mrw_error *err);
/* The same for n sequences of Tin feature rows (x_host [n][Tin][E]; pos: n * out_len(Tin) entries), through the
 * convolutions when the adapter has them. */
mrw_status mrw_adapter_gpu_forward_items(mrw_adapter_gpu *a, const float *x_host, int n, int Tin, const int32_t *pos,
                                         mrw_error *err);
/* The backward of that forward from d_inject (rows pos[r] gathered, rounded to bf16); gradients +=. */
mrw_status mrw_adapter_gpu_backward_rows(mrw_adapter_gpu *a, mrw_error *err);

/* ---- several modalities in one model (docs/MULTIMODAL.md): one adapter per modality, one injected-row tensor ---- */
/* Every tensor name gets `prefix` in front ("m1." -> "m1.proj.conv.weight": the bundle's names for modality 1). */
mrw_status mrw_adapter_gpu_prefix_names(mrw_adapter_gpu *a, const char *prefix, mrw_error *err);
/* a's trainer buffers with the injected rows and their gradient of `from` (which owns them and must outlive a):
 * each adapter scatters its rows into, and gathers its gradient from, the same tensors. */
mrw_status mrw_adapter_gpu_share_trainer_buffers(mrw_adapter_gpu *a, const mrw_adapter_gpu *from, mrw_error *err);
/* The adapter's partial sums of squares (MRW_CUDA_NORM_BLOCKS doubles, DEVICE) into its own buffer, overwritten; the
 * buffer is returned (NULL on error) for mrw_adapter_gpu_sumsq_add of the others and _step_part of all. */
double *mrw_adapter_gpu_sumsq_own(mrw_adapter_gpu *a, mrw_error *err);
/* Data parallelism (dist_nccl.h mrw_dp_sum_grads): the fp32 gradient buffer (DEVICE, the whole table, *n elements). */
float *mrw_adapter_gpu_grads(mrw_adapter_gpu *a, size_t *n);

#ifdef __cplusplus
}
#endif

#endif
