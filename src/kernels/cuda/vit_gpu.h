/* A frozen vision transformer (SigLIP / SigLIP2 at fixed resolution, CLIP ViT) forward on the GPU in bf16: the
 * CPU model src/models/vit.c is the reference (same graph, same Hugging Face tensor names, same output
 * `last_hidden_state`). Plain C interface; built with `make CUDA=1` (vit_gpu.cu; vit_gpu_load.c fills it from a
 * weight file). See docs/CUDA.md, "ModRWKV stages on the GPU".
 *
 * Precision: matrices in bf16 (rounded to nearest even at upload), vectors (biases, LayerNorms, positions, CLS)
 * in fp32; the residual stream in fp32; the GEMM inputs (LayerNorm outputs, q/k/v, attention probabilities,
 * the MLP hidden rows) in bf16; every sum in fp32 (cuBLAS, CUBLAS_COMPUTE_32F), softmax and LayerNorm in fp32.
 *
 * Graph for n images at once (rows img*T + t):
 *   cols  = im2col(pixels) [n*grid^2][3*p*p] (bf16);  pe = cols patch_w^T (one GEMM)
 *   x     = [CLS (CLIP)] ++ (pe + patch_b (SigLIP)) + pos;  CLIP: x = pre_layrnorm(x)
 *   layer: xn = LN1(x); qkv = xn [Wq;Wk;Wv]^T + b (one fused GEMM); per (image, head) S = q k^T / sqrt(D)
 *          (one batched GEMM over all n*H pairs), P = softmax(S) (bf16), o = P v (one batched GEMM);
 *          x += o Wo^T + bo; xn = LN2(x); x += gelu(xn W1^T + b1) W2^T + b2
 *          (head_dim 64: the attention is one fused kernel instead, scores kept on chip; mrw_vit_gpu_set_attention)
 *   SigLIP: out = post_layernorm(x); CLIP: out = x (no post-LN: last_hidden_state)
 * Memory for n images: the attention scores n*H*T*T floats plus their bf16 probabilities (SigLIP2-base, 32
 * images: 509 + 255 MB; used by the unfused attention only, allocated anyway), and the activations of one layer. */
#ifndef MRW_KERNELS_CUDA_VIT_GPU_H
#define MRW_KERNELS_CUDA_VIT_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/wkv7.h"
#include "models/vit.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mrw_vit_gpu mrw_vit_gpu;

/* Shape from cfg (family, hidden, n_layer, n_head, head_dim, intermediate, channels, patch, image_size, grid,
 * n_patches, n_tokens, eps, act: a loaded model's mrw_vit_get_config, or a hand-filled one for benchmarks);
 * buffers for up to max_images per forward. stream: the CUDA stream to run on (NULL: the default stream).
 * Weights start at zero. MRW_E_ARG for a bad shape, MRW_E_NOMEM naming the size that failed. */
mrw_status mrw_vit_gpu_new(const mrw_vit_config *cfg, int max_images, void *stream, mrw_vit_gpu **out,
                           mrw_error *err);
void mrw_vit_gpu_free(mrw_vit_gpu *v);
const mrw_vit_config *mrw_vit_gpu_config(const mrw_vit_gpu *v);
size_t mrw_vit_gpu_bytes(const mrw_vit_gpu *v); /* device bytes allocated */
/* FLOPs of one image's forward (GEMMs and the two attention products, 2 per multiply-add; = mrw_vit_flops). */
double mrw_vit_gpu_flops(const mrw_vit_gpu *v);

/* The tensors the model needs, by Hugging Face name relative to the tower (no "vision_model." prefix), with
 * their element counts: i = 0, 1, ... until NULL. */
const char *mrw_vit_gpu_tensor(const mrw_vit_gpu *v, int i, size_t *numel);
/* Upload one tensor (fp32 host data, numel elements, PyTorch layout) by that name. Unknown name or wrong count:
 * MRW_E_ARG. */
mrw_status mrw_vit_gpu_set(mrw_vit_gpu *v, const char *name, const float *data, size_t numel, mrw_error *err);
/* Random weights on the device (uniform with the variance of 1/fan_in for matrices), for benchmarks. */
mrw_status mrw_vit_gpu_init_random(mrw_vit_gpu *v, uint64_t seed, mrw_error *err);

/* pixels: planar fp32 [n][channels][S][S], normalised as the processor does; on the host (pixels_on_host = 1:
 * copied first; pinned memory makes that asynchronous) or the device. out: DEVICE [n*n_tokens][hidden] of
 * out_dt (fp32 or bf16), row img*n_tokens + t. Asynchronous on the stream; n in 1..max_images. */
mrw_status mrw_vit_gpu_forward(mrw_vit_gpu *v, const float *pixels, int pixels_on_host, int n, mrw_cuda_dtype out_dt,
                               void *out, mrw_error *err);

/* Attention variant: 1 = the fused flash-style kernel (the default where head_dim is 64 and hidden a multiple of
 * 8), 0 = two batched GEMMs around a softmax kernel (materialises the fp32 scores; any head_dim). Returns the
 * variant now in use (asking for 1 where it cannot run gives 0). */
int mrw_vit_gpu_set_attention(mrw_vit_gpu *v, int fused);

/* (vit_gpu_load.c, in the library only with MRW_CUDA) A GPU copy of a loaded CPU model's weights, read again
 * from its tensor file f (the file mrw_vit_load was given; cfg = mrw_vit_get_config of that model, whose prefix
 * says where the tower is). Any stored dtype is converted to fp32, then matrices to bf16. */
mrw_status mrw_vit_gpu_from_file(const mrw_tfile *f, const mrw_vit_config *cfg, int max_images, void *stream,
                                 mrw_vit_gpu **out, mrw_error *err);

/* The forward with host pixels and a HOST fp32 output [n*n_tokens][hidden]; synchronous. */
mrw_status mrw_vit_gpu_forward_host(mrw_vit_gpu *v, const float *pixels, int n, float *out, mrw_error *err);

/* (vit_gpu_load.c) ModRWKV inference (`chat` / `generate` / `encode --device cuda`): the GPU copy of the image
 * encoder of a loaded ModRWKV model (mrw_vit_gpu_from_file on the model's own encoder tensors; MRW_E_ARG when it
 * has no image encoder), and mrw_mm_encode_image with that encoder: the image is decoded and preprocessed on the
 * CPU, encoded on the GPU (bf16 weights, fp32 output downloaded), then compressed (if the model does) and adapted
 * by the CPU code on the downloaded rows (out / encoder_out as in mrw_mm_encode_image). */
mrw_status mrw_vit_gpu_from_mm(const mrw_mm *mm, int max_images, void *stream, mrw_vit_gpu **out, mrw_error *err);
mrw_status mrw_mm_encode_image_gpu(const mrw_mm *mm, mrw_vit_gpu *v, const char *path, int n_threads,
                                   mrw_features *out, mrw_features *encoder_out, mrw_error *err);

#ifdef __cplusplus
}
#endif

#endif
