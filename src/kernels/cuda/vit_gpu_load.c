/* The GPU encoders of vit_gpu.cu (the ViT, and the Whisper encoder of whisper_gpu.h) filled from a weight file:
 * every tensor by its Hugging Face name under the prefix the CPU loader found (mrw_vit_config.prefix,
 * mrw_whisper_enc_prefix), converted to fp32 (mrw_to_f32) and uploaded (matrices are rounded to bf16 there); and a
 * ModRWKV model's images and recordings through them (`chat` / `generate` / `encode --device cuda`). Compiled into
 * the library only with MRW_CUDA (make CUDA=1). */
#ifdef MRW_CUDA
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "formats/tensorfile.h"
#include "kernels/cuda/vit_gpu.h"
#include "kernels/cuda/whisper_gpu.h"
#include "models/modrwkv_hooks.h"
#include "tensor/dtype.h"

/* Every tensor of v's table from f under prefix; frees v on failure. */
static mrw_status fill(mrw_vit_gpu *v, const mrw_tfile *f, const char *prefix, const char *what, mrw_vit_gpu **out,
                       mrw_error *err) {
    mrw_status s = MRW_OK;
    size_t n;
    const char *name;
    for (int i = 0; !s && (name = mrw_vit_gpu_tensor(v, i, &n)) != NULL; i++) {
        char full[256];
        snprintf(full, sizeof full, "%s%s", prefix, name);
        const mrw_tensor_info *t = mrw_tfile_find(f, full);
        if (!t) {
            s = mrw_err(err, MRW_E_MISSING, "%s (cuda): the file has no tensor %s", what, full);
            break;
        }
        if ((size_t)mrw_tensor_numel(t) != n) {
            s = mrw_err(err, MRW_E_SHAPE, "%s (cuda): %s has %lld elements, %zu expected", what, full,
                        (long long)mrw_tensor_numel(t), n);
            break;
        }
        float *buf = malloc(n * sizeof *buf);
        if (!buf) {
            s = mrw_err(err, MRW_E_NOMEM, "out of memory");
            break;
        }
        mrw_to_f32(t->dtype, t->data, buf, (int64_t)n);
        s = mrw_vit_gpu_set(v, name, buf, n, err);
        free(buf);
    }
    if (s) {
        mrw_vit_gpu_free(v);
        return s;
    }
    *out = v;
    return MRW_OK;
}

mrw_status mrw_vit_gpu_from_file(const mrw_tfile *f, const mrw_vit_config *cfg, int max_images, void *stream,
                                 mrw_vit_gpu **out, mrw_error *err) {
    *out = NULL;
    if (!f || !cfg) return mrw_err(err, MRW_E_ARG, "vit (cuda): NULL file or config");
    mrw_vit_gpu *v;
    mrw_status s = mrw_vit_gpu_new(cfg, max_images, stream, &v, err);
    return s ? s : fill(v, f, cfg->prefix, "vit", out, err);
}

static mrw_status whisper_from_file(const mrw_tfile *f, const char *prefix, const mrw_whisper_config *cfg,
                                    int n_frames, int max_clips, void *stream, mrw_vit_gpu **out, mrw_error *err) {
    *out = NULL;
    if (!f || !cfg) return mrw_err(err, MRW_E_ARG, "whisper (cuda): NULL file or config");
    mrw_vit_gpu *v;
    mrw_status s = mrw_whisper_gpu_new_batch(cfg, n_frames, max_clips, stream, &v, err);
    return s ? s : fill(v, f, prefix ? prefix : "", "whisper", out, err);
}

mrw_status mrw_whisper_gpu_from_file(const mrw_tfile *f, const char *prefix, const mrw_whisper_config *cfg,
                                     int n_frames, void *stream, mrw_vit_gpu **out, mrw_error *err) {
    return whisper_from_file(f, prefix, cfg, n_frames, 1, stream, out, err);
}

mrw_status mrw_vit_gpu_from_mm(const mrw_mm *mm, int max_images, void *stream, mrw_vit_gpu **out, mrw_error *err) {
    *out = NULL;
    const mrw_tfile *f = NULL;
    const mrw_vit_config *cfg = NULL;
    mrw_status s = mrw_mm_vision_encoder(mm, &f, &cfg, err);
    return s ? s : mrw_vit_gpu_from_file(f, cfg, max_images, stream, out, err);
}

mrw_status mrw_mm_encode_image_gpu(const mrw_mm *mm, mrw_vit_gpu *v, const char *path, int n_threads,
                                   mrw_features *out, mrw_features *encoder_out, mrw_error *err) {
    if (out) memset(out, 0, sizeof *out);
    if (encoder_out) memset(encoder_out, 0, sizeof *encoder_out);
    const mrw_vit_config *c = mrw_vit_gpu_config(v);
    float *pix = NULL, *enc = NULL;
    mrw_status s = mrw_mm_image_pixels(mm, path, &pix, err);
    if (!s && !(enc = malloc((size_t)c->n_tokens * c->hidden * sizeof *enc))) s = mrw_err(err, MRW_E_NOMEM, "out of memory");
    if (!s) s = mrw_vit_gpu_forward_host(v, pix, 1, enc, err);
    free(pix);
    if (s) {
        free(enc);
        return s;
    }
    return mrw_mm_features_finish(mm, 0, enc, c->n_tokens, n_threads, out, encoder_out, err);
}

mrw_status mrw_whisper_gpu_from_mm(const mrw_mm *mm, void *stream, mrw_vit_gpu **out, mrw_error *err) {
    return mrw_whisper_gpu_from_mm_batch(mm, 1, stream, out, err);
}

mrw_status mrw_whisper_gpu_from_mm_batch(const mrw_mm *mm, int max_clips, void *stream, mrw_vit_gpu **out,
                                         mrw_error *err) {
    *out = NULL;
    const mrw_tfile *f = NULL;
    const char *prefix = NULL;
    const mrw_whisper_config *cfg = NULL;
    mrw_status s = mrw_mm_whisper_encoder(mm, &f, &prefix, &cfg, err);
    return s ? s : whisper_from_file(f, prefix, cfg, 2 * cfg->n_pos, max_clips, stream, out, err);
}

mrw_status mrw_mm_encode_audio_gpu(const mrw_mm *mm, mrw_vit_gpu *v, const char *path, int n_threads,
                                   mrw_features *out, mrw_features *encoder_out, mrw_error *err) {
    if (out) memset(out, 0, sizeof *out);
    if (encoder_out) memset(encoder_out, 0, sizeof *encoder_out);
    float *mel = NULL, *enc = NULL;
    int frames = 0, keep = 0;
    mrw_status s = mrw_mm_whisper_mel(mm, path, &mel, &frames, &keep, err);
    if (!s && frames != mrw_whisper_gpu_frames(v))
        s = mrw_err(err, MRW_E_ARG, "whisper (cuda): made for %d frames, the model reads %d", mrw_whisper_gpu_frames(v),
                    frames);
    const mrw_vit_config *c = mrw_vit_gpu_config(v);
    if (!s && !(enc = malloc((size_t)c->n_tokens * c->hidden * sizeof *enc))) s = mrw_err(err, MRW_E_NOMEM, "out of memory");
    if (!s) s = mrw_whisper_gpu_forward_host(v, mel, enc, err);
    free(mel);
    if (s) {
        free(enc);
        return s;
    }
    return mrw_mm_features_finish(mm, 1, enc, keep, n_threads, out, encoder_out, err);
}
#endif
