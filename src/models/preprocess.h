/* Encoder input preprocessing, matching the Hugging Face processors that ModRWKV uses.
 *
 * Images (SiglipImageProcessor / CLIPImageProcessor of transformers 4.46, which resize through PIL; in 5.x
 * the same results come from SiglipImageProcessorPil / CLIPImageProcessorPil):
 *   - the resize is PIL's uint8 resampling reproduced bit for bit: separable convolution, horizontal pass
 *     then vertical, filter support widened by the scale factor when shrinking (that is the antialiasing),
 *     coefficients normalised per output pixel and rounded to 22-bit fixed point, sums rounded and clipped
 *     to 0..255 after each pass;
 *   - then x * (1/255) in float64 rounded to float32, and (x - mean) / std in float32, as numpy does there;
 *   - the output is planar float [3][H][W], the `pixel_values` layout.
 * transformers 5.x's default processors resize with torchvision instead; measured on the fixtures with
 * 5.17 (tests/reference/make_media_fixtures.py --report): at most one 8-bit level off, on up to ~1% of
 * the values. Transformers also guesses the channel axis of an image 1 or 3 pixels high wrongly (and
 * fails): such images are processed here as what they are.
 *
 * Audio: Whisper's log-mel spectrogram as WhisperFeatureExtractor computes it on the numpy path, and the
 * zero-mean unit-variance waveform normalisation of Wav2Vec2FeatureExtractor (WavLM's processor). */
#ifndef MRW_MODELS_PREPROCESS_H
#define MRW_MODELS_PREPROCESS_H

#include <stddef.h>
#include <stdint.h>

#include "formats/image.h"
#include "modrwkv.h"

/* ---------------------------------------------------------------------------------------------- images */

typedef enum {
    MRW_RESAMPLE_BILINEAR = 2, /* PIL's numbering */
    MRW_RESAMPLE_BICUBIC = 3,
} mrw_resample;

typedef struct {
    /* Resize: either to exactly resize_w x resize_h, or (shortest_edge > 0) so that the shorter side becomes
     * shortest_edge and the longer one int(shortest_edge * long / short), as transformers'
     * get_resize_output_image_size(default_to_square=False) computes it. */
    int resize_w, resize_h;
    int shortest_edge;
    mrw_resample resample;
    /* Centre crop to crop_w x crop_h after the resize (0: none): offset floor((size - crop) / 2), zero
     * padding where the crop is larger than the image, as transformers' center_crop. */
    int crop_w, crop_h;
    float mean[3], std[3];
} mrw_image_proc;

/* SiglipImageProcessor as google/siglip2-base-patch16-384's preprocessor_config.json sets it up: size x size,
 * bilinear (resample 2), mean = std = 0.5. (The class's own default, and SigLIP v1 configs, use bicubic:
 * set .resample = MRW_RESAMPLE_BICUBIC for those.) */
mrw_image_proc mrw_image_proc_siglip(int size);
/* CLIPImageProcessor: shortest edge `size` bicubic, centre crop size x size, the OpenAI CLIP mean/std.
 * (CLIP ViT-L/14-336: size 336.) */
mrw_image_proc mrw_image_proc_clip(int size);

/* Output size of mrw_image_preprocess for this processor and image: the crop if any, else the resize.
 * Fails as mrw_image_preprocess would on a bad processor or an image it cannot resize. */
mrw_status mrw_image_proc_out_size(const mrw_image_proc *p, const mrw_image *img, int *w, int *h,
                                   mrw_error *err);

/* Runs the processor on an RGB image; `out` receives 3 * w * h floats (planar), w x h as given by
 * mrw_image_proc_out_size. Refuses (MRW_E_LIMIT) images whose aspect ratio would make the resize absurd
 * (e.g. CLIP on a 1 x 100000 strip), where PIL would try to allocate gigabytes. */
mrw_status mrw_image_preprocess(const mrw_image *img, const mrw_image_proc *p, float *out, mrw_error *err);

/* Convenience forms: `out` holds 3 * size * size floats. */
mrw_status mrw_image_to_siglip(const mrw_image *img, int size, float *out, mrw_error *err);
mrw_status mrw_image_to_clip(const mrw_image *img, int size, float *out, mrw_error *err);

/* PIL's Image.resize((w, h), resample) on an RGB image, bit-exact; `dst` is allocated. */
mrw_status mrw_image_resize(const mrw_image *src, int w, int h, mrw_resample resample, mrw_image *dst,
                            mrw_error *err);

/* ----------------------------------------------------------------------------------------------- audio */

#define MRW_WHISPER_SAMPLE_RATE 16000
#define MRW_WHISPER_N_FFT 400
#define MRW_WHISPER_HOP 160
#define MRW_WHISPER_N_FRAMES 3000 /* 30 s chunk: 480000 samples */

/* Whisper log-mel of 16 kHz mono audio: pad with zeros or truncate to n_frames * 160 samples (3000 frames =
 * 30 s for every released Whisper), STFT (n_fft 400, hop 160, periodic Hann window, centred with reflect
 * padding), power spectrum, n_mels Slaney-normalised mel filters on the Slaney scale over 0..8000 Hz,
 * log10(max(mel, 1e-10)), the last frame dropped, clamped to >= max - 8, then (x + 4) / 4.
 * `out` receives n_mels * n_frames floats, row-major [n_mels][n_frames] (input_features' layout).
 * `real_frames` (may be NULL) receives how many frames carry real audio: ceil(n / 160), at most n_frames.
 * This is the sum of the feature extractor's attention_mask (return_attention_mask=True); ModRWKV keeps
 * real_frames / 2 + 1 rows of the encoder output (the encoder halves the frame rate).
 * Samples must be finite (and below 1e30 in magnitude). Thread-safe: the FFT plan is created once, under a
 * lock that only this module takes (FFTW's planner is global: other code planning FFTW transforms at the
 * same time needs a common lock). */
mrw_status mrw_whisper_log_mel(const float *pcm, size_t n, int n_mels, int n_frames, float *out,
                               int *real_frames, mrw_error *err);
/* The recording checks of mrw_whisper_log_mel alone (no samples; a sample among the first n_frames x hop that is
 * not finite or beyond 1e30), with its messages: for callers that need to know whether it would refuse the
 * audio without computing the log-mel (the data-parallel trainer checking another rank's recordings). */
mrw_status mrw_whisper_check_pcm(const float *pcm, size_t n, int n_frames, mrw_error *err);

/* Precision of the STFT: 32 (fftwf, within ~1e-4 of the numpy path) or 64 (built with MRW_FFTW_DOUBLE and
 * -lfftw3: bit-identical to it). */
int mrw_whisper_fft_bits(void);

/* Wav2Vec2FeatureExtractor's do_normalize: (x - mean) / sqrt(var + 1e-7) over the whole waveform (biased
 * variance). `out` may equal `in`. Statistics are computed in double precision (numpy's are float32: the
 * results agree to ~1e-6). */
mrw_status mrw_wav_normalize(const float *in, size_t n, float *out, mrw_error *err);

#endif
