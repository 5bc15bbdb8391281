/* Loading a plain RWKV-7 or a ModRWKV model for a command, and encoding its media options once. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/common.h"
#ifdef MRW_CUDA
#include "kernels/cuda/vit_gpu.h"
#include "kernels/cuda/wavlm_gpu.h"
#include "kernels/cuda/whisper_gpu.h"
#endif

int tool_media_option(tool_args *a, const char *opt, tool_media_opts *o) {
    if (!strcmp(opt, "--encoder-fast")) {
        o->encoder_fast = 1;
    } else if (!strncmp(opt, "--encoder", 9) && (opt[9] == 0 || opt[9] == '=')) {
        o->encoder = tool_value(a, opt);
    } else if ((!strncmp(opt, "--image", 7) && (opt[7] == 0 || opt[7] == '=')) ||
               (!strncmp(opt, "--audio", 7) && (opt[7] == 0 || opt[7] == '='))) {
        const int audio = opt[2] == 'a';
        const char *v = tool_value(a, opt);
        if (v && !audio && o->n_images == TOOL_MAX_IMAGES) {
            tool_fail(a->cmd, "%d images given: a prompt takes at most %d (ModRWKV v2's limit)", TOOL_MAX_IMAGES + 1,
                      TOOL_MAX_IMAGES);
            a->failed = 1;
        } else if (v && o->n_media == TOOL_MAX_MEDIA) {
            tool_fail(a->cmd, "more than %d media given (--image and --audio together)", TOOL_MAX_MEDIA);
            a->failed = 1;
        } else if (v) {
            if (audio) o->audio = v;
            else o->images[o->n_images++] = v;
            o->media_audio[o->n_media] = audio;
            o->media[o->n_media++] = v;
        }
    } else if (!strncmp(opt, "--compress-weights", 18)) {
        o->compress_weights = tool_value(a, opt);
    } else if (!strncmp(opt, "--compress", 10) && (opt[10] == 0 || opt[10] == '=')) {
        const char *v = tool_value(a, opt);
        if (v && (sscanf(v, "%d,%d", &o->compress_k, &o->compress_s) != 2 || o->compress_k < 1 || o->compress_s < 1 ||
                  o->compress_k > 64 || o->compress_s > 64)) {
            tool_fail(a->cmd, "--compress expects K,S (kernel and stride, e.g. 3,2), got '%s'", v);
            a->failed = 1;
        }
    } else {
        return 0;
    }
    return 1;
}

mrw_mm_params tool_mm_params(const tool_media_opts *o) {
    mrw_mm_params p = mrw_mm_params_default();
    if (o) {
        p.encoder = o->encoder;
        p.compress_k = o->compress_k;
        p.compress_s = o->compress_s;
        p.compress_weights = o->compress_weights;
        p.encoder_keep_dtype = o->encoder_fast;
    }
    return p;
}

static int has_media(const tool_media_opts *m) { return m && m->n_media; }

int tool_session_open(const char *cmd, const tool_model_opts *mo, const tool_media_opts *media, tool_session *s) {
    memset(s, 0, sizeof *s);
    if (!mo->model) return tool_fail(cmd, "no model given: use -m FILE (see modrwkv %s --help)", cmd);
    mrw_error err = {0};
    const int multimodal = mrw_is_modrwkv_file(mo->model);
    if (!multimodal) {
        if (has_media(media) || (media && media->encoder))
            return tool_fail(cmd, "%s is not a ModRWKV checkpoint (no adapter tensors): it cannot take --image, "
                                  "--audio or --encoder", mo->model);
        if (tool_load_model(cmd, mo, &s->own_model, &s->ctx)) return 1;
        s->model = s->own_model;
    } else {
        mrw_mm_params p = tool_mm_params(media);
        p.lm.weight_dtype = mo->dtype;
        p.lm.progress = isatty(2);
        if (mrw_mm_load(mo->model, &p, &s->mm, &err)) return tool_fail(cmd, "%s", err.msg);
        s->model = mrw_mm_model(s->mm);
        mrw_context_params cp = mrw_context_params_default();
        if (mo->threads) cp.n_threads = mo->threads;
        if (mo->chunk) cp.max_chunk = mo->chunk;
        cp.exact = mo->exact;
        if (mrw_context_new(s->model, &cp, &s->ctx, &err)) {
            tool_session_close(s);
            return tool_fail(cmd, "%s", err.msg);
        }
        s->special = mrw_mm_get_info(s->mm).splice == MRW_SPLICE_PLACEHOLDER;
        const int nt = mrw_context_n_threads(s->ctx);
#ifdef MRW_CUDA
        /* --device cuda: images through the GPU ViT, recordings through the GPU Whisper or WavLM (bf16), each made
         * on first use */
        mrw_vit_gpu *vg = NULL, *wg = NULL;
        mrw_wavlm_gpu *lg = NULL;
#endif
        for (int i = 0; media && i < media->n_media; i++) { /* in command-line order */
            const int audio = media->media_audio[i];
            mrw_status st = MRW_OK;
            mrw_features *f = &s->feats[s->n_feats];
#ifdef MRW_CUDA
            if (mo->device && !audio) {
                if (!vg) st = mrw_vit_gpu_from_mm(s->mm, 1, NULL, &vg, &err);
                if (!st) st = mrw_mm_encode_image_gpu(s->mm, vg, media->media[i], nt, f, NULL, &err);
            } else if (mo->device) {
                if (!wg && !lg && (st = mrw_whisper_gpu_from_mm(s->mm, NULL, &wg, &err)) == MRW_E_UNSUPPORTED)
                    st = mrw_wavlm_gpu_from_mm(s->mm, NULL, &lg, &err); /* a WavLM model */
                if (!st) st = wg ? mrw_mm_encode_audio_gpu(s->mm, wg, media->media[i], nt, f, NULL, &err)
                                 : mrw_mm_encode_audio_wavlm_gpu(s->mm, lg, media->media[i], nt, f, NULL, &err);
            } else
#endif
                st = audio ? mrw_mm_encode_audio(s->mm, media->media[i], nt, f, NULL, &err)
                           : mrw_mm_encode_image(s->mm, media->media[i], nt, f, NULL, &err);
            if (st) {
#ifdef MRW_CUDA
                mrw_vit_gpu_free(vg);
                mrw_vit_gpu_free(wg);
                mrw_wavlm_gpu_free(lg);
#endif
                tool_session_close(s);
                return tool_fail(cmd, "%s", err.msg);
            }
            s->feat_audio[s->n_feats++] = audio;
        }
#ifdef MRW_CUDA
        mrw_vit_gpu_free(vg);
        mrw_vit_gpu_free(wg);
        mrw_wavlm_gpu_free(lg);
#endif
    }
    if (tool_load_vocab(cmd, mo->vocab, s->model, &s->vocab)) {
        tool_session_close(s);
        return 1;
    }
    return 0;
}

void tool_session_close(tool_session *s) {
    for (int i = 0; i < s->n_feats; i++) mrw_features_free(&s->feats[i]);
    mrw_vocab_free(s->vocab);
    mrw_context_free(s->ctx);
    mrw_model_free(s->own_model);
    mrw_mm_free(s->mm);
    memset(s, 0, sizeof *s);
}

int tool_session_eval(const char *cmd, tool_session *s, mrw_state *st, const int32_t *ids, int n, int with_media,
                      mrw_logits_mode mode, float *logits) {
    mrw_error err = {0};
    int rc = s->mm && with_media ? mrw_mm_eval(s->ctx, st, s->mm, s->feats, s->n_feats, ids, n, mode, logits, &err)
                                 : mrw_eval_tokens(s->ctx, st, ids, n, mode, logits, &err);
    return rc ? tool_fail(cmd, "%s", err.msg) : 0;
}
