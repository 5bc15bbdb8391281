/* libFuzzer harness for audio decoding and the audio preprocessing: decodes the input as an audio file
 * through the memory loader (libsndfile virtual I/O, channel averaging, soxr resampling to 16 kHz, or the
 * native rate when the input's size is odd) and, when it is accepted, computes a short Whisper log-mel and
 * the WavLM normalisation of it. A rejected input must come with a message and leave nothing allocated. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/audio.h"
#include "models/preprocess.h"

/* libvorbis, called by libsndfile, leaks the codec setup it allocated when a corrupt Vorbis header makes
 * libsndfile give up (sf_open fails, and libsndfile's error path does not clear the vorbis_info): a known
 * class of bugs in those libraries (xiph/vorbis#125, libsndfile#922), a few kB per malformed Ogg Vorbis
 * file, which our code cannot free or avoid without parsing Vorbis headers itself. Only allocations made
 * inside libvorbis are exempted from leak detection; leaks of ours are still caught. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libvorbis.so\n"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Short limits keep each run fast; the limit logic itself is the same at any value. */
    mrw_audio_limits lim = {.max_bytes = 1 << 20, .max_seconds = 20.0};
    mrw_audio a;
    mrw_error err;
    memset(&err, 0, sizeof err);
    int rate = (size & 1) ? 0 : 16000;
    if (mrw_audio_load_mem(data, size, "fuzz", rate, &lim, &a, &err) != MRW_OK) {
        if (a.samples || !err.msg[0]) __builtin_trap();
        return 0;
    }
    if (a.n == 0 || !a.samples || (rate && a.sample_rate != rate)) __builtin_trap();
    volatile float sink = 0;
    for (size_t i = 0; i < a.n; i++) {
        if (!isfinite(a.samples[i])) __builtin_trap();
        sink += a.samples[i];
    }
    enum { MELS = 80, FRAMES = 64 }; /* a 0.64 s chunk */
    float *mel = malloc(sizeof(float) * MELS * FRAMES);
    int real = -1;
    memset(&err, 0, sizeof err);
    if (mrw_whisper_log_mel(a.samples, a.n, MELS, FRAMES, mel, &real, &err) == MRW_OK) {
        if (real < 1 || real > FRAMES) __builtin_trap();
        for (int i = 0; i < MELS * FRAMES; i++) {
            if (!isfinite(mel[i])) __builtin_trap();
            sink += mel[i];
        }
    } else if (!err.msg[0]) { /* refused (absurd sample magnitudes): with a message */
        __builtin_trap();
    }
    free(mel);
    float *norm = malloc(sizeof(float) * a.n);
    if (mrw_wav_normalize(a.samples, a.n, norm, &err) != MRW_OK) __builtin_trap();
    sink += norm[a.n - 1];
    free(norm);
    mrw_audio_free(&a);
    (void)sink;
    return 0;
}
