/* The ModRWKV pieces on the GPU against their CPU references, on random inputs:
 *   adapter  src/kernels/cuda/adapter_gpu.h (v2: Linear, ReLU, Linear, h + LN(h)) against mrw_tadapter (fp32):
 *            forward output, every parameter gradient and d_x of one backward, one clipped Adam step on the CPU's
 *            gradients (norm and weights), and the output of a second forward after it (the bf16 copy Adam wrote)
 *   vit      src/kernels/cuda/vit_gpu.h (bf16) against mrw_vit (fp32) with the same weights, written to a
 *            safetensors file with Hugging Face names and loaded by both (mrw_vit_load, mrw_vit_gpu_from_file):
 *            last_hidden_state of several images encoded at once, each against its own CPU forward, with both
 *            attention variants (batched GEMMs + softmax; the fused kernel), then bf16 output and device pixels
 *   whisper  src/kernels/cuda/whisper_gpu.h (bf16; the ViT's layers behind a Conv1d stem) against mrw_whisper_enc
 *            (fp32) with the same random weights written with transformers' names: last_hidden_state of one clip,
 *            head_dim 64 (fused attention) and 32 (batched), an odd frame count, and the whisper-tiny shape at 3000
 *            frames; then the models/speech bundle (Whisper width 384, q8_0) through mrw_mm_encode_audio_gpu against
 *            mrw_mm_encode_audio (encoder rows trimmed to the real audio, and the CPU adapter's features)
 *   wavlm    src/kernels/cuda/wavlm_gpu.h (bf16) against mrw_wavlm (fp32), weights loaded by both from one file
 *            (mrw_wavlm_load, mrw_wavlm_gpu_from_file): last_hidden_state of random clips whose lengths are not
 *            multiples of the conv strides, on the fixtures tests/fixtures/audio_enc/wavlm_group ("group" norm, post-LN,
 *            weight_g/weight_v, hidden 64, 4 heads, pos conv k16 g4) and wavlm_layer ("layer" norm on every conv, conv
 *            bias, stable LN, parametrizations.weight.original0/1, "wavlm." prefix, hidden 48, 3 heads, k15 g3), one
 *            GPU model for several lengths (the buffers grow and are reused); a random WavLM-base-plus-shaped model
 *            with 2 layers (7 conv layers of 512, hidden 768, 12 heads of 64, pos conv k128 g16, 320 buckets), 2 s;
 *            ModRWKV's path (mrw_wavlm_gpu_from_mm + mrw_mm_encode_audio_wavlm_gpu: decode, resample, normalise on the
 *            CPU) against mrw_mm_encode_audio on the wavlm_group encoder and tests/fixtures/modrwkv/media/speech.wav;
 *            errors: a clip too short (MRW_E_ARG), too long (MRW_E_LIMIT), a bad shape (MRW_E_ARG), a Whisper model
 *            (MRW_E_UNSUPPORTED)
 *   mm image ModRWKV inference with the encoder on the GPU (mrw_vit_gpu_from_mm + mrw_mm_encode_image_gpu, what
 *            `chat` / `generate` / `encode --device cuda` run) against mrw_mm_encode_image (CPU, f32 encoder) on the
 *            models in the tree: models/vision (bundle, SigLIP C128 f16, v1 adapter), the v1 fixture with its
 *            SigLIP directory, the v2 fixture (encoder weights in the checkpoint, its config.json from the SigLIP
 *            directory as the CLI tests pass it, Conv1d k3 s2 before the adapter, bf16):
 *            last_hidden_state and the adapted features of one image; a model without an image encoder is an error
 *     make CUDA=1 BUILD=<dir> <dir>/tests/cuda/test_modrwkv_gpu && <dir>/tests/cuda/test_modrwkv_gpu [--quick]
 * Errors: max err = max|gpu - cpu| / max|cpu|, norm err = ||gpu - cpu|| / ||cpu|| (per tensor; for the ViT over all
 * images). Tolerances, bf16 (inputs and the adapter's matrices rounded to bf16 for both sides, so only the GPU's own
 * bf16 roundings count; after the Adam step the CPU keeps fp32 weights, the GPU their bf16 copy):
 *   adapter output, d_x: 1e-2 / 1e-2 (one rounding of a1, h and the output each, ~2^-9 relative)
 *   adapter parameter gradients (fp32 sums of bf16 products over the rows): 2e-2 / 1e-2
 *   Adam: norm 1e-5 (fp32 vs double sums), weights 1e-3 of lr (the kernels round as the CPU does)
 *   ViT, 2 layers (and mm image: 2-3 layers, then the CPU adapter on the GPU's encoder rows): 3e-2 / 1e-2; SigLIP2-base shape (12 layers, 576 tokens): 6e-2 / 2e-2 (bf16 GEMM inputs
 *   in every layer; the residual stream stays fp32)
 *   WavLM (2 layers, bf16 conv stack, positional conv and layers; GroupNorm / LayerNorm / softmax in fp32): 3e-2 / 1e-2
 * --quick: small shapes only (for compute-sanitizer); --wavlm: only the WavLM rows. Exit status 0 only if every row passes. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <execinfo.h>
#include <signal.h>

#include <string>
#include <vector>

extern "C" {
#include "formats/tensorfile.h"
#include "kernels/cuda/adapter_gpu.h"
#include "kernels/cuda/vit_gpu.h"
#include "kernels/cuda/wavlm_gpu.h"
#include "kernels/cuda/whisper_gpu.h"
#include "models/vit.h"
#include "models/wavlm.h"
#include "models/whisper_enc.h"
#include "modrwkv.h"
#include "train/adapter_train.h"
#include "train/optim.h"
#include "train/params.h"
}

static int g_fail = 0, g_rows = 0;
static FILE *g_log = NULL;
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

#include "test_rng.inc"

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (g_log) {
        va_start(ap, fmt);
        vfprintf(g_log, fmt, ap);
        va_end(ap);
    }
    fflush(stdout);
}

static void row(const char *cs, const char *what, double maxe, double norme, double tol_max, double tol_norm) {
    const int ok = maxe <= tol_max && norme <= tol_norm && maxe == maxe && norme == norme;
    g_rows++;
    if (!ok) g_fail++;
    out("%-30s %-40s %10.2e %10.2e %8.0e/%-8.0e %s\n", cs, what, maxe, norme, tol_max, tol_norm, ok ? "ok" : "FAIL");
}

static void errs(const float *a, const float *b, size_t n, double *maxe, double *norme) {
    double md = 0, mr = 0, sd = 0, sr = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d;
        if (fabs(b[i]) > mr) mr = fabs(b[i]);
        sd += d * d, sr += (double)b[i] * b[i];
    }
    *maxe = mr > 0 ? md / mr : md;
    *norme = sr > 0 ? sqrt(sd / sr) : sqrt(sd);
}

static uint16_t bf(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float unbf(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

#include "check_calls.inc"

/* random bf16-representable values: host floats and their bf16 device copy */
static void *rand_bf16_dev(std::vector<float> &h, size_t n, float lo, float hi) {
    h.resize(n);
    std::vector<uint16_t> b(n);
    for (size_t i = 0; i < n; i++) b[i] = bf(rnd_u(lo, hi)), h[i] = unbf(b[i]);
    void *d = NULL;
    CU(cudaMalloc(&d, n * 2));
    CU(cudaMemcpy(d, b.data(), n * 2, cudaMemcpyHostToDevice));
    return d;
}
static std::vector<float> dev_bf16_to_host(const void *d, size_t n) {
    std::vector<uint16_t> b(n);
    CU(cudaMemcpy(b.data(), d, n * 2, cudaMemcpyDeviceToHost));
    std::vector<float> h(n);
    for (size_t i = 0; i < n; i++) h[i] = unbf(b[i]);
    return h;
}

static mrw_param_set clone_set(const mrw_param_set *s) {
    mrw_param_set c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < s->n; i++)
        mrw_param_add(&c, s->p[i].name, s->p[i].group, s->p[i].no_decay, s->p[i].ndim, s->p[i].shape);
    mrw_error e;
    CHECK(mrw_param_set_alloc(&c, &e));
    return c;
}

/* ------------------------------------------------------------------------------------------ adapter */

static void run_adapter(int E, int C, int rows, double wd) {
    mrw_error e;
    char cs[64];
    snprintf(cs, sizeof cs, "adapter E%d C%d rows%d", E, C, rows);
    mrw_tadapter_config ac = {MRW_TADAPTER_V2, E, C, 0, 0, 0, 0};
    mrw_tadapter *cpu = NULL;
    CHECK(mrw_tadapter_new(&ac, 1, rows, 1, &cpu, &e));
    mrw_tadapter_init(cpu, rnd_u64());
    mrw_param_set *ps = mrw_tadapter_params(cpu);
    for (int i = 0; i < ps->n; i++) { /* non-trivial biases and LayerNorm affine; matrices bf16-representable */
        const mrw_param *p = &ps->p[i];
        float *w = ps->w + p->offset;
        if (strstr(p->name, "pre_norm.weight"))
            for (size_t j = 0; j < p->n; j++) w[j] = rnd_u(0.5f, 1.5f);
        else if (p->ndim == 1)
            for (size_t j = 0; j < p->n; j++) w[j] = rnd_u(-0.2f, 0.2f);
        else
            for (size_t j = 0; j < p->n; j++) w[j] = unbf(bf(w[j]));
    }
    mrw_adapter_gpu *gpu = NULL;
    CHECK(mrw_adapter_gpu_new(E, C, 0, rows, NULL, &gpu, &e));
    CHECK(mrw_adapter_gpu_upload(gpu, ps, 0, &e));
    std::vector<float> x, dout, ocpu((size_t)rows * C), dxc((size_t)rows * E);
    void *dx_in = rand_bf16_dev(x, (size_t)rows * E, -2.f, 2.f);
    void *d_dout = rand_bf16_dev(dout, (size_t)rows * C, -1.f, 1.f);
    void *d_out = NULL, *d_dx = NULL;
    CU(cudaMalloc(&d_out, (size_t)rows * C * 2));
    CU(cudaMalloc(&d_dx, (size_t)rows * E * 2));
    CU(cudaMemset(d_out, 0xff, (size_t)rows * C * 2));
    CU(cudaMemset(d_dx, 0xff, (size_t)rows * E * 2));
    CHECK(mrw_tadapter_forward(cpu, x.data(), 1, rows, ocpu.data(), &e));
    CHECK(mrw_adapter_gpu_forward(gpu, dx_in, rows, d_out, &e));
    std::vector<float> og = dev_bf16_to_host(d_out, (size_t)rows * C);
    double me, ne;
    errs(og.data(), ocpu.data(), og.size(), &me, &ne);
    row(cs, "forward out (bf16)", me, ne, 1e-2, 1e-2);
    /* backward */
    mrw_param_zero_grad(ps);
    mrw_tadapter_backward(cpu, dout.data(), dxc.data());
    CHECK(mrw_adapter_gpu_zero_grad(gpu, &e));
    CHECK(mrw_adapter_gpu_backward(gpu, d_dout, d_dx, &e));
    std::vector<float> dxg = dev_bf16_to_host(d_dx, (size_t)rows * E);
    errs(dxg.data(), dxc.data(), dxg.size(), &me, &ne);
    row(cs, "d_x (bf16)", me, ne, 1e-2, 1e-2);
    mrw_param_set gs = clone_set(ps);
    CHECK(mrw_adapter_gpu_download(gpu, &gs, 1, &e));
    for (int i = 0; i < ps->n; i++) {
        const mrw_param *p = &ps->p[i];
        errs(gs.g + p->offset, ps->g + p->offset, p->n, &me, &ne);
        char what[160];
        snprintf(what, sizeof what, "grad %s", p->name);
        row(cs, what, me, ne, 2e-2, 1e-2);
    }
    /* one clipped Adam(W) step on the CPU's gradients */
    mrw_adam_config cfg = mrw_adam_config_default();
    cfg.weight_decay = wd, cfg.decoupled = 1;
    mrw_adam opt;
    CHECK(mrw_adam_init(&opt, &cfg, &ps, 1, MRW_PG_ADAPTER, &e));
    const double lr = 1e-3, norm = mrw_grad_norm(&opt), max_norm = 0.5 * norm;
    CHECK(mrw_adapter_gpu_upload(gpu, ps, 1, &e));
    double gnorm = 0;
    CHECK(mrw_adapter_gpu_step(gpu, &cfg, lr, max_norm, &gnorm, &e));
    mrw_clip_grad_norm(&opt, max_norm);
    mrw_adam_step(&opt, lr);
    char what[160];
    snprintf(what, sizeof what, "adam%s: grad norm %.4g", wd > 0 ? "W" : "", norm);
    const double nr = fabs(gnorm - norm) / norm;
    row(cs, what, nr, nr, 1e-5, 1e-5);
    CHECK(mrw_adapter_gpu_download(gpu, &gs, 0, &e));
    double wmax = 0;
    for (size_t j = 0; j < ps->total; j++) {
        const double d = fabs((double)gs.w[j] - ps->w[j]);
        if (!(d <= wmax)) wmax = d;
    }
    row(cs, "adam: max|w_gpu - w_cpu| / lr", wmax / lr, wmax / lr, 1e-3, 1e-3);
    /* a second forward on the updated weights (the bf16 copy the step wrote) */
    CHECK(mrw_tadapter_forward(cpu, x.data(), 1, rows, ocpu.data(), &e));
    CHECK(mrw_adapter_gpu_forward(gpu, dx_in, rows, d_out, &e));
    og = dev_bf16_to_host(d_out, (size_t)rows * C);
    errs(og.data(), ocpu.data(), og.size(), &me, &ne);
    row(cs, "forward after the step", me, ne, 1e-2, 1e-2);
    mrw_adam_free(&opt);
    mrw_param_set_free(&gs);
    cudaFree(dx_in), cudaFree(d_dout), cudaFree(d_out), cudaFree(d_dx);
    mrw_adapter_gpu_free(gpu);
    mrw_tadapter_free(cpu);
}

/* ---------------------------------------------------------------------------------------------- ViT */

struct vit_shape {
    const char *name;
    mrw_vit_family fam;
    int C, L, I, patch, S, n;
    double tol_max, tol_norm;
};

/* Writes a random tower with Hugging Face names (vision-only layout, no prefix). */
static void write_vit(const char *path, const vit_shape *v) {
    std::vector<std::vector<float>> data;
    std::vector<mrw_tensor_info> ts;
    std::vector<std::string> names;
    const int C = v->C, I = v->I, P = v->patch, T = (v->S / P) * (v->S / P) + (v->fam == MRW_VIT_CLIP);
    auto add = [&](const std::string &n, std::vector<int64_t> shape, float lo, float hi) {
        size_t cnt = 1;
        for (int64_t d : shape) cnt *= (size_t)d;
        std::vector<float> w(cnt);
        for (size_t i = 0; i < cnt; i++) w[i] = rnd_u(lo, hi);
        data.push_back(std::move(w));
        names.push_back(n);
        mrw_tensor_info t;
        memset(&t, 0, sizeof t);
        t.dtype = MRW_DT_F32;
        t.ndim = (int)shape.size();
        for (size_t i = 0; i < shape.size(); i++) t.shape[i] = shape[i];
        t.nbytes = cnt * 4;
        ts.push_back(t);
    };
    const float bc = sqrtf(3.f / C), bi = sqrtf(3.f / I), bp = sqrtf(3.f / (3.f * P * P));
    add("embeddings.patch_embedding.weight", {C, 3, P, P}, -bp, bp);
    if (v->fam == MRW_VIT_SIGLIP) add("embeddings.patch_embedding.bias", {C}, -0.1f, 0.1f);
    add("embeddings.position_embedding.weight", {T, C}, -0.5f, 0.5f);
    if (v->fam == MRW_VIT_CLIP) {
        add("embeddings.class_embedding", {C}, -0.5f, 0.5f);
        add("pre_layrnorm.weight", {C}, 0.8f, 1.2f);
        add("pre_layrnorm.bias", {C}, -0.1f, 0.1f);
    }
    for (int l = 0; l < v->L; l++) {
        const std::string p = "encoder.layers." + std::to_string(l) + ".";
        add(p + "layer_norm1.weight", {C}, 0.8f, 1.2f);
        add(p + "layer_norm1.bias", {C}, -0.1f, 0.1f);
        for (const char *q : {"q", "k", "v", "out"}) {
            add(p + "self_attn." + q + "_proj.weight", {C, C}, -bc, bc);
            add(p + "self_attn." + q + "_proj.bias", {C}, -0.1f, 0.1f);
        }
        add(p + "layer_norm2.weight", {C}, 0.8f, 1.2f);
        add(p + "layer_norm2.bias", {C}, -0.1f, 0.1f);
        add(p + "mlp.fc1.weight", {I, C}, -bc, bc);
        add(p + "mlp.fc1.bias", {I}, -0.1f, 0.1f);
        add(p + "mlp.fc2.weight", {C, I}, -bi, bi);
        add(p + "mlp.fc2.bias", {C}, -0.1f, 0.1f);
    }
    add("post_layernorm.weight", {C}, 0.8f, 1.2f);
    add("post_layernorm.bias", {C}, -0.1f, 0.1f);
    for (size_t i = 0; i < ts.size(); i++) ts[i].name = (char *)names[i].c_str(), ts[i].data = data[i].data();
    mrw_error e;
    CHECK(mrw_safetensors_write(path, ts.data(), (int)ts.size(), NULL, 0, NULL, NULL, &e));
}

static void run_vit(const vit_shape *v, const char *dir) {
    mrw_error e;
    char path[512];
    snprintf(path, sizeof path, "%s/vit_%d.safetensors", dir, (int)getpid());
    write_vit(path, v);
    mrw_tfile *f = NULL;
    CHECK(mrw_tfile_open(path, &f, &e));
    mrw_vit_params prm;
    memset(&prm, 0, sizeof prm);
    prm.quiet = 1;
    mrw_vit *cpu = NULL;
    CHECK(mrw_vit_load(f, &prm, &cpu, &e));
    const mrw_vit_config *c = mrw_vit_get_config(cpu);
    mrw_vit_gpu *gpu = NULL;
    CHECK(mrw_vit_gpu_from_file(f, c, v->n, NULL, &gpu, &e));
    mrw_vit_ctx *ctx = NULL;
    CHECK(mrw_vit_ctx_new(cpu, 0, &ctx, &e));
    const size_t npx = (size_t)c->channels * c->image_size * c->image_size, no = (size_t)c->n_tokens * c->hidden;
    std::vector<float> px(npx * v->n), ref(no * v->n), got(no * v->n);
    for (auto &p : px) p = rnd_u(-1.f, 1.f);
    for (int i = 0; i < v->n; i++) CHECK(mrw_vit_forward(ctx, px.data() + i * npx, ref.data() + i * no, &e));
    void *d_out = NULL;
    CU(cudaMalloc(&d_out, no * v->n * 4));
    CU(cudaMemset(d_out, 0xff, no * v->n * 4));
    char cs[64], what[128];
    snprintf(cs, sizeof cs, "vit %s", v->name);
    double me, ne;
    for (int fused = 0; fused < 2; fused++) { /* batched GEMMs + softmax, then the fused attention kernel */
        const int got_fused = mrw_vit_gpu_set_attention(gpu, fused);
        CU(cudaMemset(d_out, 0xff, no * v->n * 4));
        CHECK(mrw_vit_gpu_forward(gpu, px.data(), 1, v->n, MRW_CUDA_F32, d_out, &e));
        CU(cudaDeviceSynchronize());
        CU(cudaMemcpy(got.data(), d_out, no * v->n * 4, cudaMemcpyDeviceToHost));
        errs(got.data(), ref.data(), got.size(), &me, &ne);
        snprintf(what, sizeof what, "%d img x %d tok x %d, fp32 out, %s", v->n, c->n_tokens, c->hidden,
                 got_fused ? "fused attn" : "batched attn");
        row(cs, what, got_fused == fused ? me : 1.0, ne, v->tol_max, v->tol_norm);
    }
    /* bf16 output: the same values rounded once more; and the device-pixel entry */
    void *d_px = NULL;
    CU(cudaMalloc(&d_px, npx * v->n * 4));
    CU(cudaMemcpy(d_px, px.data(), npx * v->n * 4, cudaMemcpyHostToDevice));
    CHECK(mrw_vit_gpu_forward(gpu, (const float *)d_px, 0, v->n, MRW_CUDA_BF16, d_out, &e));
    CU(cudaDeviceSynchronize());
    std::vector<float> g16 = dev_bf16_to_host(d_out, no * v->n);
    errs(g16.data(), ref.data(), g16.size(), &me, &ne);
    row(cs, "bf16 out, pixels on the device", me, ne, v->tol_max, v->tol_norm);
    /* bad arguments */
    int ok = mrw_vit_gpu_forward(gpu, px.data(), 1, v->n + 1, MRW_CUDA_F32, d_out, &e) == MRW_E_ARG;
    ok &= mrw_vit_gpu_set(gpu, "no.such.tensor", px.data(), 4, &e) == MRW_E_ARG;
    ok &= mrw_vit_gpu_set(gpu, "post_layernorm.weight", px.data(), 3, &e) == MRW_E_ARG;
    row(cs, "bad arguments rejected", ok ? 0 : 1, ok ? 0 : 1, 0, 0);
    cudaFree(d_out), cudaFree(d_px);
    mrw_vit_ctx_free(ctx);
    mrw_vit_gpu_free(gpu);
    mrw_vit_free(cpu);
    mrw_tfile_close(f);
    unlink(path);
}

/* ------------------------------------------------------------------------------------------- Whisper */

struct whisper_shape {
    const char *name;
    int mels, d, heads, L, ffn, n_pos, frames;
    double tol_max, tol_norm;
};

static void run_whisper(const whisper_shape *w, const char *dir) {
    mrw_error e;
    char path[512];
    snprintf(path, sizeof path, "%s/whisper_%d.safetensors", dir, (int)getpid());
    std::vector<std::vector<float>> data;
    std::vector<mrw_tensor_info> ts;
    std::vector<std::string> names;
    auto add = [&](const std::string &n, std::vector<int64_t> shape, float lo, float hi) {
        size_t cnt = 1;
        for (int64_t d : shape) cnt *= (size_t)d;
        std::vector<float> v(cnt);
        for (size_t i = 0; i < cnt; i++) v[i] = rnd_u(lo, hi);
        data.push_back(std::move(v));
        names.push_back(n);
        mrw_tensor_info t;
        memset(&t, 0, sizeof t);
        t.dtype = MRW_DT_F32;
        t.ndim = (int)shape.size();
        for (size_t i = 0; i < shape.size(); i++) t.shape[i] = shape[i];
        t.nbytes = cnt * 4;
        ts.push_back(t);
    };
    const int d = w->d, F = w->ffn;
    const float bc = sqrtf(3.f / d), bf = sqrtf(3.f / F), b1 = sqrtf(3.f / (3.f * w->mels)), b2 = sqrtf(3.f / (3.f * d));
    add("conv1.weight", {d, w->mels, 3}, -b1, b1);
    add("conv1.bias", {d}, -0.1f, 0.1f);
    add("conv2.weight", {d, d, 3}, -b2, b2);
    add("conv2.bias", {d}, -0.1f, 0.1f);
    add("embed_positions.weight", {w->n_pos, d}, -0.5f, 0.5f);
    for (int l = 0; l < w->L; l++) {
        const std::string p = "layers." + std::to_string(l) + ".";
        add(p + "self_attn_layer_norm.weight", {d}, 0.8f, 1.2f);
        add(p + "self_attn_layer_norm.bias", {d}, -0.1f, 0.1f);
        for (const char *q : {"q", "k", "v", "out"}) {
            add(p + "self_attn." + q + "_proj.weight", {d, d}, -bc, bc);
            if (strcmp(q, "k")) add(p + "self_attn." + q + "_proj.bias", {d}, -0.1f, 0.1f);
        }
        add(p + "final_layer_norm.weight", {d}, 0.8f, 1.2f);
        add(p + "final_layer_norm.bias", {d}, -0.1f, 0.1f);
        add(p + "fc1.weight", {F, d}, -bc, bc);
        add(p + "fc1.bias", {F}, -0.1f, 0.1f);
        add(p + "fc2.weight", {d, F}, -bf, bf);
        add(p + "fc2.bias", {d}, -0.1f, 0.1f);
    }
    add("layer_norm.weight", {d}, 0.8f, 1.2f);
    add("layer_norm.bias", {d}, -0.1f, 0.1f);
    for (size_t i = 0; i < ts.size(); i++) ts[i].name = (char *)names[i].c_str(), ts[i].data = data[i].data();
    CHECK(mrw_safetensors_write(path, ts.data(), (int)ts.size(), NULL, 0, NULL, NULL, &e));
    mrw_tfile *f = NULL;
    CHECK(mrw_tfile_open(path, &f, &e));
    mrw_whisper_params prm;
    memset(&prm, 0, sizeof prm);
    prm.n_heads = w->heads;
    mrw_whisper_enc *cpu = NULL;
    CHECK(mrw_whisper_enc_load(f, &prm, &cpu, &e));
    const mrw_whisper_config *c = mrw_whisper_enc_config(cpu);
    mrw_vit_gpu *gpu = NULL;
    CHECK(mrw_whisper_gpu_from_file(f, mrw_whisper_enc_prefix(cpu), c, w->frames, NULL, &gpu, &e));
    const int T = mrw_whisper_enc_out_frames(w->frames);
    std::vector<float> mel((size_t)w->mels * w->frames), ref((size_t)T * d), got((size_t)T * d, NAN);
    for (auto &x : mel) x = rnd_u(-1.f, 1.5f);
    mrw_kctx k;
    mrw_kctx_init(&k, 0);
    CHECK(mrw_whisper_enc_forward(cpu, &k, mel.data(), w->frames, ref.data(), &e));
    mrw_kctx_free(&k);
    CHECK(mrw_whisper_gpu_forward_host(gpu, mel.data(), got.data(), &e));
    double me, ne;
    char cs[64], what[128];
    snprintf(cs, sizeof cs, "whisper %s", w->name);
    snprintf(what, sizeof what, "%d frames -> %d x %d, %s attn", w->frames, T, d,
             mrw_vit_gpu_set_attention(gpu, 1) ? "fused" : "batched");
    errs(got.data(), ref.data(), got.size(), &me, &ne);
    row(cs, what, me, ne, w->tol_max, w->tol_norm);
    /* a ViT forward on a Whisper encoder and a Whisper forward on a ViT are errors */
    int ok = mrw_vit_gpu_forward(gpu, mel.data(), 1, 1, MRW_CUDA_F32, got.data(), &e) == MRW_E_ARG;
    mrw_whisper_config bad = *c;
    bad.n_heads = 5;
    mrw_vit_gpu *g2 = NULL;
    ok &= mrw_whisper_gpu_new(&bad, w->frames, NULL, &g2, &e) == MRW_E_ARG && !g2;
    ok &= mrw_whisper_gpu_new(c, 2 * c->n_pos + 1, NULL, &g2, &e) == MRW_E_ARG && !g2;
    row(cs, "bad arguments rejected", ok ? 0 : 1, ok ? 0 : 1, 0, 0);
    mrw_vit_gpu_free(gpu);
    mrw_whisper_enc_free(cpu);
    mrw_tfile_close(f);
    unlink(path);
}

/* One recording through a ModRWKV model with a Whisper encoder on the CPU (f32) and on the GPU (bf16). */
static void run_mm_audio(const char *cs, const char *model, const char *encoder, const char *wav) {
    mrw_error err = {};
    mrw_mm_params p = mrw_mm_params_default();
    p.encoder = encoder;
    mrw_mm *mm = NULL;
    if (mrw_mm_load(model, &p, &mm, &err)) {
        out("%s: %s\n", cs, err.msg);
        g_rows++, g_fail++;
        return;
    }
    mrw_features fc = {}, ec = {}, fg = {}, eg = {};
    mrw_vit_gpu *wg = NULL;
    mrw_status a = mrw_mm_encode_audio(mm, wav, 0, &fc, &ec, &err);
    if (!a) a = mrw_whisper_gpu_from_mm(mm, NULL, &wg, &err);
    if (!a) a = mrw_mm_encode_audio_gpu(mm, wg, wav, 0, &fg, &eg, &err);
    if (a || ec.n != eg.n || ec.dim != eg.dim || fc.n != fg.n || fc.dim != fg.dim) {
        out("%s: %s (cpu %dx%d / %dx%d, gpu %dx%d / %dx%d)\n", cs, a ? err.msg : "shapes differ", ec.n, ec.dim, fc.n,
            fc.dim, eg.n, eg.dim, fg.n, fg.dim);
        g_rows++, g_fail++;
    } else {
        double me, ne;
        char what[64];
        errs(eg.rows, ec.rows, (size_t)ec.n * ec.dim, &me, &ne);
        snprintf(what, sizeof what, "encoder output %dx%d (trimmed)", ec.n, ec.dim);
        row(cs, what, me, ne, 3e-2, 1e-2);
        errs(fg.rows, fc.rows, (size_t)fc.n * fc.dim, &me, &ne);
        snprintf(what, sizeof what, "features (CPU adapter) %dx%d", fc.n, fc.dim);
        row(cs, what, me, ne, 3e-2, 1e-2);
    }
    mrw_features_free(&fc), mrw_features_free(&ec), mrw_features_free(&fg), mrw_features_free(&eg);
    mrw_vit_gpu_free(wg);
    mrw_mm_free(mm);
}

/* One image through a ModRWKV model with the encoder on the CPU (f32) and on the GPU (bf16). Paths from the
 * repository root. */
static void run_mm_image(const char *cs, const char *model, const char *encoder, const char *image) {
    mrw_error err = {};
    mrw_mm_params p = mrw_mm_params_default();
    p.encoder = encoder;
    mrw_mm *mm = NULL;
    if (mrw_mm_load(model, &p, &mm, &err)) {
        out("%s: %s\n", cs, err.msg);
        g_rows++, g_fail++;
        return;
    }
    mrw_features fc = {}, ec = {}, fg = {}, eg = {};
    mrw_vit_gpu *vg = NULL;
    mrw_status a = mrw_mm_encode_image(mm, image, 1, &fc, &ec, &err);
    if (!a) a = mrw_vit_gpu_from_mm(mm, 1, NULL, &vg, &err);
    if (!a) a = mrw_mm_encode_image_gpu(mm, vg, image, 1, &fg, &eg, &err);
    if (a || ec.n != eg.n || ec.dim != eg.dim || fc.n != fg.n || fc.dim != fg.dim) {
        out("%s: %s (cpu %dx%d / %dx%d, gpu %dx%d / %dx%d)\n", cs, a ? err.msg : "shapes differ", ec.n, ec.dim, fc.n,
            fc.dim, eg.n, eg.dim, fg.n, fg.dim);
        g_rows++, g_fail++;
    } else {
        double me, ne;
        char what[64];
        errs(eg.rows, ec.rows, (size_t)ec.n * ec.dim, &me, &ne);
        snprintf(what, sizeof what, "encoder output %dx%d", ec.n, ec.dim);
        row(cs, what, me, ne, 3e-2, 1e-2);
        errs(fg.rows, fc.rows, (size_t)fc.n * fc.dim, &me, &ne);
        snprintf(what, sizeof what, "features (CPU adapter) %dx%d", fc.n, fc.dim);
        row(cs, what, me, ne, 3e-2, 1e-2);
    }
    mrw_features_free(&fc), mrw_features_free(&ec), mrw_features_free(&fg), mrw_features_free(&eg);
    mrw_vit_gpu_free(vg);
    mrw_mm_free(mm);
}

static void mm_image_errors(void) {
    mrw_error err = {};
    mrw_mm_params p = mrw_mm_params_default();
    p.encoder = "tests/fixtures/modrwkv/whisper";
    mrw_mm *mm = NULL;
    mrw_vit_gpu *vg = NULL;
    int ok = 0;
    if (!mrw_mm_load("tests/fixtures/modrwkv/v1_audio/rwkv-0.pth", &p, &mm, &err)) {
        ok = mrw_vit_gpu_from_mm(mm, 1, NULL, &vg, &err) == MRW_E_ARG && !vg;
        out("    (%s)\n", err.msg);
    } else {
        out("    load: %s\n", err.msg);
    }
    g_rows++;
    if (!ok) g_fail++;
    out("%-30s %-40s %10s %10s %17s %s\n", "mm audio model", "no image encoder: MRW_E_ARG", "-", "-", "-", ok ? "ok" : "FAIL");
    mrw_vit_gpu_free(vg);
    mrw_mm_free(mm);
}

/* ------------------------------------------------------------------------------------------------ WavLM */

/* One clip of n random samples through the CPU model and the GPU copy; one row. */
static void wavlm_clip(const char *cs, const mrw_wavlm *cpu, mrw_wavlm_gpu *gpu, int n, double tol_max,
                       double tol_norm) {
    mrw_error e = {};
    const mrw_wavlm_config *c = mrw_wavlm_get_config(cpu);
    const int T = mrw_wavlm_out_frames(cpu, n);
    std::vector<float> wave((size_t)n), ref((size_t)T * c->hidden), got((size_t)T * c->hidden, NAN);
    for (auto &x : wave) x = rnd_u(-1.f, 1.f);
    mrw_kctx k;
    mrw_kctx_init(&k, 0);
    CHECK(mrw_wavlm_forward(cpu, &k, wave.data(), n, ref.data(), &e));
    mrw_kctx_free(&k);
    int frames = 0;
    CHECK(mrw_wavlm_gpu_forward_host(gpu, wave.data(), n, got.data(), &frames, &e));
    double me, ne;
    errs(got.data(), ref.data(), got.size(), &me, &ne);
    char what[96];
    snprintf(what, sizeof what, "%d samples -> %dx%d%s", n, frames, c->hidden, frames == T ? "" : " (FRAMES DIFFER)");
    row(cs, what, frames == T ? me : 1.0, ne, tol_max, tol_norm);
}

/* A fixture directory (config.json + model.safetensors) on clips of the given lengths, one GPU model for all. */
static void run_wavlm_fixture(const char *cs, const char *dir, const int *lens, int n_lens) {
    mrw_error e = {};
    char path[512], cfgp[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    mrw_tfile *f = NULL;
    CHECK(mrw_tfile_open(path, &f, &e));
    mrw_wavlm_params prm;
    memset(&prm, 0, sizeof prm);
    prm.config_path = cfgp;
    mrw_wavlm *cpu = NULL;
    CHECK(mrw_wavlm_load(f, &prm, &cpu, &e));
    mrw_wavlm_gpu *gpu = NULL;
    CHECK(mrw_wavlm_gpu_from_file(f, mrw_wavlm_prefix(cpu), mrw_wavlm_get_config(cpu), NULL, &gpu, &e));
    for (int i = 0; i < n_lens; i++) wavlm_clip(cs, cpu, gpu, lens[i], 3e-2, 1e-2);
    /* errors: too short, too long, a bad shape */
    std::vector<float> w(16, 0.1f);
    std::vector<float> o(4096);
    const int min = mrw_wavlm_min_samples(cpu);
    std::vector<float> shortw((size_t)min, 0.1f);
    int ok = mrw_wavlm_gpu_forward_host(gpu, shortw.data(), min - 1, o.data(), NULL, &e) == MRW_E_ARG;
    ok &= mrw_wavlm_gpu_forward_host(gpu, w.data(), MRW_WAVLM_MAX_SAMPLES + 1, o.data(), NULL, &e) == MRW_E_LIMIT;
    mrw_wavlm_config bad = *mrw_wavlm_get_config(cpu);
    bad.n_heads = bad.hidden + 1;
    mrw_wavlm_gpu *g2 = NULL;
    ok &= mrw_wavlm_gpu_new(&bad, NULL, &g2, &e) == MRW_E_ARG && !g2;
    g_rows++;
    if (!ok) g_fail++;
    out("%-30s %-40s %10s %10s %17s %s\n", cs, "short / long clip, bad shape: errors", "-", "-", "-", ok ? "ok" : "FAIL");
    mrw_wavlm_gpu_free(gpu);
    mrw_wavlm_free(cpu);
    mrw_tfile_close(f);
}

/* A random WavLM-base-plus-shaped model with L layers written with transformers' names (weight_g / weight_v). */
static void run_wavlm_random(const char *cs, int L, int n, const char *dir) {
    mrw_error e = {};
    char path[512];
    snprintf(path, sizeof path, "%s/wavlm_%d.safetensors", dir, (int)getpid());
    std::vector<std::vector<float>> data;
    std::vector<mrw_tensor_info> ts;
    std::vector<std::string> names;
    auto add = [&](const std::string &nm, std::vector<int64_t> shape, float lo, float hi) {
        size_t cnt = 1;
        for (int64_t d : shape) cnt *= (size_t)d;
        std::vector<float> v(cnt);
        for (size_t i = 0; i < cnt; i++) v[i] = rnd_u(lo, hi);
        data.push_back(std::move(v));
        names.push_back(nm);
        mrw_tensor_info t;
        memset(&t, 0, sizeof t);
        t.dtype = MRW_DT_F32;
        t.ndim = (int)shape.size();
        for (size_t i = 0; i < shape.size(); i++) t.shape[i] = shape[i];
        t.nbytes = cnt * 4;
        ts.push_back(t);
    };
    const int kern[7] = {10, 3, 3, 3, 3, 2, 2}, C = 512, d = 768, H = 12, F = 3072, K = 128, G = 16, NB = 320;
    for (int i = 0; i < 7; i++) {
        const std::string p = "feature_extractor.conv_layers." + std::to_string(i) + ".";
        const int ci = i ? C : 1;
        const float b = sqrtf(3.f / (ci * kern[i]));
        add(p + "conv.weight", {C, ci, kern[i]}, -b, b);
        if (i == 0) {
            add(p + "layer_norm.weight", {C}, 0.8f, 1.2f);
            add(p + "layer_norm.bias", {C}, -0.1f, 0.1f);
        }
    }
    const float bc = sqrtf(3.f / C), bd = sqrtf(3.f / d), bf = sqrtf(3.f / F);
    add("feature_projection.layer_norm.weight", {C}, 0.8f, 1.2f);
    add("feature_projection.layer_norm.bias", {C}, -0.1f, 0.1f);
    add("feature_projection.projection.weight", {d, C}, -bc, bc);
    add("feature_projection.projection.bias", {d}, -0.1f, 0.1f);
    add("encoder.pos_conv_embed.conv.weight_g", {1, 1, K}, 0.5f, 1.5f);
    add("encoder.pos_conv_embed.conv.weight_v", {d, d / G, K}, -1.f, 1.f);
    add("encoder.pos_conv_embed.conv.bias", {d}, -0.1f, 0.1f);
    add("encoder.layer_norm.weight", {d}, 0.8f, 1.2f);
    add("encoder.layer_norm.bias", {d}, -0.1f, 0.1f);
    for (int l = 0; l < L; l++) {
        const std::string p = "encoder.layers." + std::to_string(l) + ".";
        for (const char *q : {"q", "k", "v", "out"}) {
            add(p + "attention." + q + "_proj.weight", {d, d}, -bd, bd);
            add(p + "attention." + q + "_proj.bias", {d}, -0.1f, 0.1f);
        }
        if (l == 0) add(p + "attention.rel_attn_embed.weight", {NB, H}, -1.f, 1.f);
        add(p + "attention.gru_rel_pos_linear.weight", {8, d / H}, -0.3f, 0.3f);
        add(p + "attention.gru_rel_pos_linear.bias", {8}, -0.1f, 0.1f);
        add(p + "attention.gru_rel_pos_const", {1, H, 1, 1}, 0.5f, 1.5f);
        add(p + "layer_norm.weight", {d}, 0.8f, 1.2f);
        add(p + "layer_norm.bias", {d}, -0.1f, 0.1f);
        add(p + "feed_forward.intermediate_dense.weight", {F, d}, -bd, bd);
        add(p + "feed_forward.intermediate_dense.bias", {F}, -0.1f, 0.1f);
        add(p + "feed_forward.output_dense.weight", {d, F}, -bf, bf);
        add(p + "feed_forward.output_dense.bias", {d}, -0.1f, 0.1f);
        add(p + "final_layer_norm.weight", {d}, 0.8f, 1.2f);
        add(p + "final_layer_norm.bias", {d}, -0.1f, 0.1f);
    }
    for (size_t i = 0; i < ts.size(); i++) ts[i].name = (char *)names[i].c_str(), ts[i].data = data[i].data();
    CHECK(mrw_safetensors_write(path, ts.data(), (int)ts.size(), NULL, 0, NULL, NULL, &e));
    mrw_tfile *f = NULL;
    CHECK(mrw_tfile_open(path, &f, &e));
    mrw_wavlm *cpu = NULL;
    CHECK(mrw_wavlm_load(f, NULL, &cpu, &e));
    mrw_wavlm_gpu *gpu = NULL;
    CHECK(mrw_wavlm_gpu_from_file(f, mrw_wavlm_prefix(cpu), mrw_wavlm_get_config(cpu), NULL, &gpu, &e));
    wavlm_clip(cs, cpu, gpu, n, 3e-2, 1e-2);
    mrw_wavlm_gpu_free(gpu);
    mrw_wavlm_free(cpu);
    mrw_tfile_close(f);
    unlink(path);
}

/* ModRWKV's audio path with a WavLM encoder (the encoder directory alone as the model: encoder rows only). */
static void run_mm_wavlm(const char *cs, const char *model, const char *wav) {
    mrw_error err = {};
    mrw_mm_params p = mrw_mm_params_default();
    mrw_mm *mm = NULL;
    if (mrw_mm_load(model, &p, &mm, &err)) {
        out("%s: %s\n", cs, err.msg);
        g_rows++, g_fail++;
        return;
    }
    mrw_features ec = {}, eg = {};
    mrw_wavlm_gpu *lg = NULL;
    mrw_status a = mrw_mm_encode_audio(mm, wav, 0, NULL, &ec, &err);
    if (!a) a = mrw_wavlm_gpu_from_mm(mm, NULL, &lg, &err);
    if (!a) a = mrw_mm_encode_audio_wavlm_gpu(mm, lg, wav, 0, NULL, &eg, &err);
    if (a || ec.n != eg.n || ec.dim != eg.dim) {
        out("%s: %s (cpu %dx%d, gpu %dx%d)\n", cs, a ? err.msg : "shapes differ", ec.n, ec.dim, eg.n, eg.dim);
        g_rows++, g_fail++;
    } else {
        double me, ne;
        char what[64];
        errs(eg.rows, ec.rows, (size_t)ec.n * ec.dim, &me, &ne);
        snprintf(what, sizeof what, "encoder output %dx%d", ec.n, ec.dim);
        row(cs, what, me, ne, 3e-2, 1e-2);
    }
    mrw_features_free(&ec), mrw_features_free(&eg);
    mrw_wavlm_gpu_free(lg);
    mrw_mm_free(mm);
    /* a Whisper model: MRW_E_UNSUPPORTED */
    p.encoder = "tests/fixtures/modrwkv/whisper";
    int ok = 0;
    mm = NULL;
    lg = NULL;
    if (!mrw_mm_load("tests/fixtures/modrwkv/v1_audio/rwkv-0.pth", &p, &mm, &err))
        ok = mrw_wavlm_gpu_from_mm(mm, NULL, &lg, &err) == MRW_E_UNSUPPORTED && !lg;
    g_rows++;
    if (!ok) g_fail++;
    out("%-30s %-40s %10s %10s %17s %s\n", "mm whisper model", "wavlm_gpu_from_mm: MRW_E_UNSUPPORTED", "-", "-", "-",
        ok ? "ok" : "FAIL");
    mrw_wavlm_gpu_free(lg);
    mrw_mm_free(mm);
}

/* A crash on the GPU machine prints where it happened (addresses for addr2line on the unstripped binary). */
static void on_fatal(int sig) {
    void *bt[64];
    const int n = backtrace(bt, 64);
    fprintf(stderr, "fatal signal %d; backtrace:\n", sig);
    backtrace_symbols_fd(bt, n, 2);
    _exit(128 + sig);
}

int main(int argc, char **argv) {
    signal(SIGSEGV, on_fatal);
    signal(SIGBUS, on_fatal);
    signal(SIGILL, on_fatal);
    int quick = 0, wavlm_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        if (!strcmp(argv[i], "--wavlm")) wavlm_only = 1; /* only the WavLM rows */
    }
    const char *od = getenv("OUT");
    if (od) {
        std::string p = std::string(od) + "/modrwkv_gpu.txt";
        g_log = fopen(p.c_str(), "w");
    }
    const char *seed = getenv("MRW_TEST_SEED");
    g_rng = seed ? strtoull(seed, NULL, 0) : 0x9E3779B97F4A7C15ull;
    out("seed %llu\n", (unsigned long long)g_rng);
    out("%-30s %-40s %10s %10s %17s %s\n", "case", "what", "max err", "norm err", "tol max/norm", "");
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    if (!wavlm_only) {
    run_adapter(64, 128, 37, 0.0);
    if (!quick) run_adapter(768, 1024, 300, 0.1);
    const vit_shape shapes[] = {
        {"siglip C128 L2 p8 S32", MRW_VIT_SIGLIP, 128, 2, 256, 8, 32, 3, 3e-2, 1e-2},
        {"clip C128 L2 p7 S35", MRW_VIT_CLIP, 128, 2, 320, 7, 35, 2, 3e-2, 1e-2},
        {"siglip2-base C768 L12 p16 S384", MRW_VIT_SIGLIP, 768, 12, 3072, 16, 384, 2, 6e-2, 2e-2}};
    for (int i = 0; i < (quick ? 2 : 3); i++) run_vit(&shapes[i], tmp);
    run_mm_image("mm models/vision", "models/vision/model.safetensors", NULL, "models/vision/example.png");
    run_mm_image("mm v1 fixture + siglip", "tests/fixtures/modrwkv/v1_vision/rwkv-0.pth", "tests/fixtures/modrwkv/siglip",
                 "tests/fixtures/modrwkv/media/image_a.png");
    run_mm_image("mm v2 fixture (conv k3 s2)", "tests/fixtures/modrwkv/v2/rwkv-0.pth", "tests/fixtures/modrwkv/siglip",
                 "tests/fixtures/modrwkv/media/image_b.png");
    mm_image_errors();
    const whisper_shape ws[] = {{"d128 H2 L2 80 frames", 16, 128, 2, 2, 256, 40, 80, 3e-2, 1e-2},
                                {"d96 H3 L2 59 frames", 20, 96, 3, 2, 192, 30, 59, 3e-2, 1e-2},
                                {"tiny d384 H6 L4 3000 frames", 80, 384, 6, 4, 1536, 1500, 3000, 3e-2, 1e-2}};
    for (int i = 0; i < (quick ? 2 : 3); i++) run_whisper(&ws[i], tmp);
    run_mm_audio("mm models/speech", "models/speech/model-q8_0.gguf", NULL, "models/speech/example.wav");
    run_mm_audio("mm v1 audio fixture + whisper", "tests/fixtures/modrwkv/v1_audio/rwkv-0.pth",
                 "tests/fixtures/modrwkv/whisper", "tests/fixtures/modrwkv/media/speech.wav");
    }
    const int lg[] = {4003, 16000, 1001}, ll[] = {3001, 16007};
    run_wavlm_fixture("wavlm group (fixture)", "tests/fixtures/audio_enc/wavlm_group", lg, 3);
    run_wavlm_fixture("wavlm layer/stable (fixture)", "tests/fixtures/audio_enc/wavlm_layer", ll, 2);
    if (!quick) run_wavlm_random("wavlm base+ shape L2 (random)", 2, 32077, tmp);
    run_mm_wavlm("mm wavlm_group encoder", "tests/fixtures/audio_enc/wavlm_group", "tests/fixtures/modrwkv/media/speech.wav");
    out("%d of %d rows passed\n", g_rows - g_fail, g_rows);
    if (g_log) fclose(g_log);
    return g_fail ? 1 : 0;
}
