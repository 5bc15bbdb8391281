/* modrwkv encode: media -> encoder features (and adapted features) in a safetensors file. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tools/common.h"
#include "tools/tools.h"
#ifdef MRW_CUDA
#include "kernels/cuda/vit_gpu.h"
#include "kernels/cuda/wavlm_gpu.h"
#include "kernels/cuda/whisper_gpu.h"
#endif

static const char *k_usage =
    "usage: modrwkv encode -m MODEL (--image FILE | --audio FILE) --out FEATURES.safetensors [options]\n"
    "Runs the encoder on one image or recording and writes its last_hidden_state (F32 [tokens, width]; for\n"
    "Whisper trimmed to the real audio as ModRWKV does) and, when MODEL is a ModRWKV checkpoint, the features\n"
    "after compression and adapter (\"features\", F32 [rows, n_embd]) that the language model receives: for\n"
    "feature caching, debugging and tests. MODEL may be a Hugging Face encoder alone (a directory with\n"
    "config.json + model.safetensors, or the weight file).\n\n"
    "  -m, --model PATH     ModRWKV checkpoint or bundle, or an encoder\n"
    "      --input FILE     an already preprocessed input instead of media: a safetensors file with one F32\n"
    "                       tensor (pixel_values [3,S,S], input_features [mels,frames] or input_values [n])\n"
    "  -o, --out FILE       output safetensors file (written atomically)\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "      --device D       cpu (default) or cuda (needs make CUDA=1): --image / --audio through the GPU copy of\n"
    "                       the vision / Whisper / WavLM encoder (bf16 weights, fp32 sums; image decoding,\n"
    "                       log-mel, resampling, adapter and compression stay on the CPU; --input is CPU only)\n"
    TOOL_MEDIA_HELP;

int cmd_encode(int argc, char **argv) {
    const char *cmd = "encode";
    tool_model_opts mo = {.dtype = MRW_DT_AUTO};
    tool_media_opts media = {0};
    const char *out = NULL, *input = NULL;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strcmp(o, "-o") || !strncmp(o, "--out", 5)) out = tool_value(&a, o);
        else if (!strncmp(o, "--input", 7)) input = tool_value(&a, o);
        else if (!strncmp(o, "--device", 8) && (o[8] == 0 || o[8] == '=')) {
            const char *v = tool_value(&a, o);
            if (v && strcmp(v, "cpu") && strcmp(v, "cuda")) {
                tool_fail(cmd, "--device must be cpu or cuda, not '%s'", v);
                a.failed = 1;
            }
            mo.device = v && !strcmp(v, "cuda");
#ifndef MRW_CUDA
            if (mo.device) {
                tool_fail(cmd, "--device cuda: this modrwkv was built without CUDA (build with make CUDA=1)");
                a.failed = 1;
            }
#endif
        }
        else if (!tool_media_option(&a, o, &media) && !tool_model_option(&a, o, &mo)) tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    if (!mo.model) return tool_fail(cmd, "give the model or encoder with -m"), 2;
    if (!out) return tool_fail(cmd, "give the output file with --out"), 2;
    if ((media.n_images != 0) + (media.audio != NULL) + (input != NULL) != 1 || media.n_images > 1)
        return tool_fail(cmd, "give exactly one --image, --audio or --input"), 2;
    if (mo.device && input)
        return tool_fail(cmd, "--device cuda encodes --image and --audio files (--input runs on the CPU: leave out "
                              "--device)"), 2;
    mrw_mm_params p = tool_mm_params(&media);
    mrw_mm *mm = NULL;
    mrw_error err = {0};
    if (mrw_mm_load(mo.model, &p, &mm, &err)) return tool_fail(cmd, "%s", err.msg);
    mrw_mm_info info = mrw_mm_get_info(mm);
    mrw_features enc = {0}, feat = {0};
    mrw_features *fp = info.has_lm ? &feat : NULL;
    int rc = 1;
    mrw_status s;
    if (input) {
        float *x = NULL;
        size_t n = 0;
        s = mrw_read_tensor_f32(input, NULL, &x, &n, NULL, NULL, &err);
        if (!s) s = mrw_mm_encode_input(mm, x, n, mo.threads, fp, &enc, &err);
        free(x);
    } else if (mo.device) {
#ifdef MRW_CUDA
        mrw_vit_gpu *vg = NULL;
        mrw_wavlm_gpu *lg = NULL;
        if (media.audio) {
            s = mrw_whisper_gpu_from_mm(mm, NULL, &vg, &err);
            if (s == MRW_E_UNSUPPORTED) { /* a WavLM model */
                s = mrw_wavlm_gpu_from_mm(mm, NULL, &lg, &err);
                if (!s) s = mrw_mm_encode_audio_wavlm_gpu(mm, lg, media.audio, mo.threads, fp, &enc, &err);
            } else if (!s) {
                s = mrw_mm_encode_audio_gpu(mm, vg, media.audio, mo.threads, fp, &enc, &err);
            }
        } else {
            s = mrw_vit_gpu_from_mm(mm, 1, NULL, &vg, &err);
            if (!s) s = mrw_mm_encode_image_gpu(mm, vg, media.images[0], mo.threads, fp, &enc, &err);
        }
        mrw_vit_gpu_free(vg);
        mrw_wavlm_gpu_free(lg);
#else
        s = mrw_err(&err, MRW_E_UNSUPPORTED, "built without CUDA");
#endif
    } else {
        s = media.audio ? mrw_mm_encode_audio(mm, media.audio, mo.threads, fp, &enc, &err)
                        : mrw_mm_encode_image(mm, media.images[0], mo.threads, fp, &enc, &err);
    }
    if (s) {
        tool_fail(cmd, "%s", err.msg);
    } else if (mrw_features_save(out, &enc, fp, &err)) {
        tool_fail(cmd, "%s", err.msg);
    } else {
        fprintf(stderr, "wrote %s: last_hidden_state [%d, %d]", out, enc.n, enc.dim);
        if (fp) fprintf(stderr, ", features [%d, %d]", feat.n, feat.dim);
        fputc('\n', stderr);
        rc = 0;
    }
    mrw_features_free(&enc);
    mrw_features_free(&feat);
    mrw_mm_free(mm);
    return rc;
}
