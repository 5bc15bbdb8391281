/* Audio decoding: WAV, AIFF, AU, FLAC, Ogg (Vorbis, Opus) and MP3 through libsndfile, from a file or from
 * memory, to float mono at a chosen sample rate (16 kHz for every ModRWKV audio encoder).
 *
 * The result is what ModRWKV's Python pipeline gets from `librosa.load(path, sr=16000, mono=True)`:
 *   - samples decoded to float by libsndfile (integer PCM scaled by 1/2^(bits-1)), as soundfile does;
 *   - channels averaged in float32 (sum in channel order, then divided by the channel count), as numpy's
 *     mean does there;
 *   - resampled with soxr at its "HQ" quality (20-bit precision, soxr_quality_spec(SOXR_HQ, 0), float32
 *     I/O) as librosa's default res_type "soxr_hq" does, and the length fixed to ceil(n * out / in)
 *     (librosa's fix_length: zero-padded or cut). Nothing is done when the rate already matches.
 * Input is untrusted: the container is recognised from its magic bytes and only the formats above are
 * handed to libsndfile; the size, the duration and every sample are checked (NaN/Inf are rejected), and
 * errors name the file and the problem. */
#ifndef MRW_FORMATS_AUDIO_H
#define MRW_FORMATS_AUDIO_H

#include <stddef.h>
#include <stdint.h>

#include "modrwkv.h"

typedef struct {
    float *samples;      /* mono samples at sample_rate; owned, see mrw_audio_free */
    size_t n;            /* number of samples */
    int sample_rate;     /* rate of `samples` */
    int src_rate;        /* the file's sample rate */
    int src_channels;    /* the file's channel count */
    int64_t src_frames;  /* frames decoded from the file (at src_rate) */
    char src_format[64]; /* e.g. "WAV (16-bit PCM)", "FLAC (24-bit)", "Ogg Vorbis", "MP3" */
} mrw_audio;

typedef struct {
    size_t max_bytes;   /* largest encoded file accepted */
    double max_seconds; /* longest duration accepted */
} mrw_audio_limits;

#define MRW_AUDIO_MAX_BYTES ((size_t)2 << 30) /* 2 GiB: an hour of 96 kHz stereo 24-bit PCM fits */
#define MRW_AUDIO_MAX_SECONDS 3600.0          /* 1 hour */

mrw_audio_limits mrw_audio_limits_default(void);

/* Decodes a file to mono at target_rate (0: keep the file's rate). `limits` may be NULL for the defaults.
 * On failure *out is left empty. Audio without any sample is an error (MRW_E_FORMAT); silence is not. */
mrw_status mrw_audio_load(const char *path, int target_rate, const mrw_audio_limits *limits, mrw_audio *out,
                          mrw_error *err);

/* The same from an encoded file held in memory; `name` (may be NULL) stands for the path in messages. */
mrw_status mrw_audio_load_mem(const void *data, size_t size, const char *name, int target_rate,
                              const mrw_audio_limits *limits, mrw_audio *out, mrw_error *err);

void mrw_audio_free(mrw_audio *a); /* frees the samples and empties *a; safe on an empty struct */

/* Resamples mono float audio with soxr HQ, as above (output length ceil(n * out_rate / in_rate)); *out is
 * allocated (free with free()). When the rates are equal the samples are copied. */
mrw_status mrw_audio_resample(const float *in, size_t n, int in_rate, int out_rate, float **out,
                              size_t *n_out, mrw_error *err);

#endif
