/* libFuzzer harness for image decoding and preprocessing: decodes the input as an image file through the
 * memory loader and, when it is accepted, runs the SigLIP and CLIP processors and a resize on it, touching
 * every output value, so that ASan/UBSan see any out-of-range access in the decoders' glue or in the
 * resampler. A rejected input must come with a message and leave nothing allocated. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/image.h"
#include "models/preprocess.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A small pixel limit keeps each run fast; the limit logic itself is the same at any value. */
    mrw_image_limits lim = {.max_bytes = 1 << 20, .max_pixels = 1 << 20};
    mrw_image img;
    mrw_error err;
    memset(&err, 0, sizeof err);
    if (mrw_image_load_mem(data, size, "fuzz", &lim, &img, &err) != MRW_OK) {
        if (img.rgb || !err.msg[0]) __builtin_trap();
        return 0;
    }
    if (img.width <= 0 || img.height <= 0 || (int64_t)img.width * img.height > lim.max_pixels)
        __builtin_trap();
    volatile float sink = 0;
    for (size_t i = 0; i < (size_t)img.width * img.height * 3; i++) sink += img.rgb[i];

    /* sizes that upscale and downscale, odd and even, from the input's last bytes */
    int s1 = 3 + (size ? data[size - 1] % 29 : 0), s2 = 2 + (size > 1 ? data[size - 2] % 31 : 0);
    float *out = malloc(sizeof(float) * 3 * 32 * 32);
    if (mrw_image_to_siglip(&img, s1, out, &err) != MRW_OK) __builtin_trap();
    for (int i = 0; i < 3 * s1 * s1; i++) sink += out[i];
    if (mrw_image_to_clip(&img, s2, out, &err) != MRW_OK) __builtin_trap();
    for (int i = 0; i < 3 * s2 * s2; i++) sink += out[i];
    free(out);
    mrw_image small;
    if (mrw_image_resize(&img, s2, s1, MRW_RESAMPLE_BICUBIC, &small, &err) != MRW_OK) __builtin_trap();
    for (size_t i = 0; i < (size_t)s1 * s2 * 3; i++) sink += small.rgb[i];
    mrw_image_free(&small);
    mrw_image_free(&img);
    (void)sink;
    return 0;
}
