/* Image decoding: PNG, JPEG, BMP and GIF (first frame) through stb_image, into 8-bit RGB.
 *
 * The pixels are what PIL's `Image.open(f).convert("RGB")` gives, which is what the Hugging Face processors
 * and ModRWKV see: grayscale is replicated into R=G=B, palettes are looked up, and alpha is dropped without
 * compositing (a transparent pixel keeps its stored colour; for GIF, the colour of its palette entry).
 * Known differences from PIL, all outside the usual inputs:
 *   - JPEG: stb_image's IDCT and chroma upsampling are not libjpeg's; pixels differ by a few levels.
 *   - 16-bit PNG: samples are reduced to their high byte. (PIL keeps 16-bit RGB the same way, but clips
 *     16-bit grayscale to 255 instead of scaling it, which is a PIL bug we do not copy.)
 *   - CMYK/YCCK JPEG: stb_image's conversion, not PIL's.
 * EXIF orientation is ignored, as PIL's Image.open ignores it.
 *
 * Everything here treats the input as hostile: the format is recognised from its magic bytes before any
 * decoder runs, the declared dimensions are checked against the limits before any pixel is decoded, a file
 * that ends before its image data does is rejected (stb_image would fill the missing part silently where
 * PIL raises "image file is truncated"), and every failure is a status with a message naming the file and
 * the problem. */
#ifndef MRW_FORMATS_IMAGE_H
#define MRW_FORMATS_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "modrwkv.h"

typedef enum {
    MRW_IMG_UNKNOWN = 0,
    MRW_IMG_PNG,
    MRW_IMG_JPEG,
    MRW_IMG_BMP,
    MRW_IMG_GIF,
} mrw_image_format;

typedef struct {
    int width, height;
    uint8_t *rgb;            /* height rows of width RGB triplets (no padding); owned, see mrw_image_free */
    mrw_image_format format; /* the format it was decoded from (MRW_IMG_UNKNOWN for a synthetic image) */
    int src_channels;        /* channels in the file: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (palette: 3/4) */
} mrw_image;

typedef struct {
    size_t max_bytes;   /* largest encoded file accepted */
    int64_t max_pixels; /* largest width * height accepted */
} mrw_image_limits;

#define MRW_IMAGE_MAX_BYTES ((size_t)256 << 20)  /* 256 MiB */
#define MRW_IMAGE_MAX_PIXELS ((int64_t)64000000) /* 64 Mpx (e.g. 8000 x 8000) */

mrw_image_limits mrw_image_limits_default(void);

/* Decodes a file. `limits` may be NULL for the defaults. On failure *out is left empty. */
mrw_status mrw_image_load(const char *path, const mrw_image_limits *limits, mrw_image *out, mrw_error *err);

/* Decodes an encoded image held in memory; `name` (may be NULL) is used in messages in place of a path. */
mrw_status mrw_image_load_mem(const void *data, size_t size, const char *name, const mrw_image_limits *limits,
                              mrw_image *out, mrw_error *err);

/* Allocates an uninitialised width x height RGB image (for callers that have raw pixels). */
mrw_status mrw_image_alloc(int width, int height, mrw_image *out, mrw_error *err);

void mrw_image_free(mrw_image *img); /* frees the pixels and empties *img; safe on an empty image */

/* The format recognised from the first bytes, or MRW_IMG_UNKNOWN. */
mrw_image_format mrw_image_detect(const void *data, size_t size);
const char *mrw_image_format_name(mrw_image_format f); /* "PNG", "JPEG", ... */

#endif
