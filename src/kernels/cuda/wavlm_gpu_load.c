/* The GPU WavLM encoder of wavlm_gpu.cu filled from a weight file (every tensor by its transformers name under the
 * prefix the CPU loader found, converted to fp32 and uploaded; the positional convolution's weight norm folded into
 * its weight here, in double as the CPU loader does), and a ModRWKV model's recordings through it (`chat` /
 * `generate` / `encode --device cuda --audio`). Compiled into the library only with MRW_CUDA (make CUDA=1). */
#ifdef MRW_CUDA
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "formats/tensorfile.h"
#include "kernels/cuda/wavlm_gpu.h"
#include "models/modrwkv_hooks.h"
#include "tensor/dtype.h"

static const mrw_tensor_info *find(const mrw_tfile *f, const char *prefix, const char *name) {
    char full[512];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return mrw_tfile_find(f, full);
}

/* A tensor as fp32 (malloc'ed) with exactly n elements. */
static mrw_status read_f32(const mrw_tfile *f, const char *prefix, const char *name, size_t n, float **out,
                           mrw_error *err) {
    *out = NULL;
    const mrw_tensor_info *t = find(f, prefix, name);
    if (!t) return mrw_err(err, MRW_E_MISSING, "wavlm (cuda): the file has no tensor %s%s", prefix, name);
    if ((size_t)mrw_tensor_numel(t) != n)
        return mrw_err(err, MRW_E_SHAPE, "wavlm (cuda): %s%s has %lld elements, %zu expected", prefix, name,
                       (long long)mrw_tensor_numel(t), n);
    float *b = malloc((n ? n : 1) * sizeof *b);
    if (!b) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    mrw_to_f32(t->dtype, t->data, b, (int64_t)n);
    *out = b;
    return MRW_OK;
}

/* The positional convolution's effective weight [C][cg][K]: plain, or g * v / ||v|| with the norm over every dim
 * but the one g spans. */
static mrw_status pos_weight(const mrw_tfile *f, const char *prefix, const mrw_wavlm_config *c, float **out,
                             mrw_error *err) {
    static const char *const names[][2] = {
        {"encoder.pos_conv_embed.conv.weight_g", "encoder.pos_conv_embed.conv.weight_v"},
        {"encoder.pos_conv_embed.conv.parametrizations.weight.original0",
         "encoder.pos_conv_embed.conv.parametrizations.weight.original1"},
        {NULL, "encoder.pos_conv_embed.conv.weight"}};
    const int C = c->hidden, cg = C / c->pos_groups, K = c->pos_kernel;
    const int64_t vs[3] = {C, cg, K};
    const size_t n = (size_t)C * cg * K;
    int which = 0;
    while (which < 3 && !find(f, prefix, names[which][1])) which++;
    if (which == 3)
        return mrw_err(err, MRW_E_MISSING, "wavlm (cuda): the file has no %sencoder.pos_conv_embed.conv.weight_v "
                       "(or parametrizations.weight.original1, or weight)", prefix);
    float *v;
    mrw_status s = read_f32(f, prefix, names[which][1], n, &v, err);
    if (s || which == 2) {
        *out = v;
        return s;
    }
    const mrw_tensor_info *tg = find(f, prefix, names[which][0]);
    int dim = -1;
    for (int d = 0; tg && tg->ndim == 3 && d < 3 && dim < 0; d++) {
        int ok = 1;
        for (int j = 0; j < 3; j++) ok &= tg->shape[j] == (j == d ? vs[d] : 1);
        if (ok) dim = d;
    }
    float *g = NULL;
    double *sc = NULL;
    if (dim < 0)
        s = mrw_err(err, tg ? MRW_E_SHAPE : MRW_E_MISSING, "wavlm (cuda): %s%s %s", prefix, names[which][0],
                    tg ? "must be [1,1,kernel] or [out,1,1]" : "is missing");
    else if (!(s = read_f32(f, prefix, names[which][0], (size_t)vs[dim], &g, err)) &&
             !(sc = calloc((size_t)vs[dim], sizeof *sc)))
        s = mrw_err(err, MRW_E_NOMEM, "out of memory");
    if (!s) {
#define IDX(i) (dim == 2 ? (int)((i) % K) : dim == 1 ? (int)((i) / K % cg) : (int)((i) / ((size_t)cg * K)))
        for (size_t i = 0; i < n; i++) sc[IDX(i)] += (double)v[i] * v[i];
        for (int j = 0; j < vs[dim]; j++) sc[j] = g[j] / sqrt(sc[j]);
        for (size_t i = 0; i < n; i++) v[i] = (float)(v[i] * sc[IDX(i)]);
#undef IDX
    }
    free(g);
    free(sc);
    if (s) {
        free(v);
        return s;
    }
    *out = v;
    return MRW_OK;
}

mrw_status mrw_wavlm_gpu_from_file(const mrw_tfile *f, const char *prefix, const mrw_wavlm_config *cfg, void *stream,
                                   mrw_wavlm_gpu **out, mrw_error *err) {
    *out = NULL;
    if (!f || !cfg) return mrw_err(err, MRW_E_ARG, "wavlm (cuda): NULL file or config");
    if (!prefix) prefix = "";
    mrw_wavlm_gpu *v;
    mrw_status s = mrw_wavlm_gpu_new(cfg, stream, &v, err);
    if (s) return s;
    size_t n;
    const char *name;
    for (int i = 0; !s && (name = mrw_wavlm_gpu_tensor(v, i, &n)) != NULL; i++) {
        float *buf = NULL;
        s = !strcmp(name, "encoder.pos_conv_embed.conv.weight") ? pos_weight(f, prefix, cfg, &buf, err)
                                                                 : read_f32(f, prefix, name, n, &buf, err);
        if (!s) s = mrw_wavlm_gpu_set(v, name, buf, n, err);
        free(buf);
    }
    if (s) {
        mrw_wavlm_gpu_free(v);
        return s;
    }
    *out = v;
    return MRW_OK;
}

mrw_status mrw_wavlm_gpu_from_mm(const mrw_mm *mm, void *stream, mrw_wavlm_gpu **out, mrw_error *err) {
    *out = NULL;
    const mrw_tfile *f = NULL;
    const char *prefix = NULL;
    const mrw_wavlm_config *cfg = NULL;
    mrw_status s = mrw_mm_wavlm_encoder(mm, &f, &prefix, &cfg, err);
    return s ? s : mrw_wavlm_gpu_from_file(f, prefix, cfg, stream, out, err);
}

mrw_status mrw_mm_encode_audio_wavlm_gpu(const mrw_mm *mm, mrw_wavlm_gpu *v, const char *path, int n_threads,
                                         mrw_features *out, mrw_features *encoder_out, mrw_error *err) {
    if (out) memset(out, 0, sizeof *out);
    if (encoder_out) memset(encoder_out, 0, sizeof *encoder_out);
    float *wave = NULL, *enc = NULL;
    int n = 0, T = 0;
    mrw_status s = mrw_mm_wavlm_wave(mm, path, &wave, &n, err);
    if (!s) {
        T = mrw_wavlm_gpu_out_frames(v, n);
        if (!(enc = malloc((size_t)(T > 0 ? T : 1) * mrw_wavlm_gpu_config(v)->hidden * sizeof *enc)))
            s = mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    if (!s && (s = mrw_wavlm_gpu_forward_host(v, wave, n, enc, &T, err)) && err) mrw_err_prefix(err, "%s", path);
    free(wave);
    if (s) {
        free(enc);
        return s;
    }
    return mrw_mm_features_finish(mm, 1, enc, T, n_threads, out, encoder_out, err);
}
#endif
