/* Image decoding through stb_image (Debian's libstb.so holds the implementation; we only include the
 * header). See image.h for what the pixels are and how they relate to PIL's. */
#include "formats/image.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image.h>

#include "base/error.h"
#include "base/mapfile.h"

mrw_image_limits mrw_image_limits_default(void) {
    mrw_image_limits l = {MRW_IMAGE_MAX_BYTES, MRW_IMAGE_MAX_PIXELS};
    return l;
}

const char *mrw_image_format_name(mrw_image_format f) {
    switch (f) {
    case MRW_IMG_PNG: return "PNG";
    case MRW_IMG_JPEG: return "JPEG";
    case MRW_IMG_BMP: return "BMP";
    case MRW_IMG_GIF: return "GIF";
    default: return "unknown";
    }
}

static int starts(const uint8_t *p, size_t n, const char *magic, size_t m) {
    return n >= m && memcmp(p, magic, m) == 0;
}

mrw_image_format mrw_image_detect(const void *data, size_t size) {
    const uint8_t *p = data;
    if (!p) return MRW_IMG_UNKNOWN;
    if (starts(p, size, "\x89PNG\r\n\x1a\n", 8)) return MRW_IMG_PNG;
    if (starts(p, size, "\xff\xd8\xff", 3)) return MRW_IMG_JPEG;
    if (starts(p, size, "GIF87a", 6) || starts(p, size, "GIF89a", 6)) return MRW_IMG_GIF;
    if (starts(p, size, "BM", 2)) return MRW_IMG_BMP;
    return MRW_IMG_UNKNOWN;
}

/* Names formats we recognise but do not decode, so that the error says what the file is. stb_image could
 * decode some of them (PSD, TGA, PNM, HDR, PIC), but those decoders are rarely exercised and not needed, so
 * they are kept out of reach of untrusted input. */
static const char *other_format_name(const uint8_t *p, size_t n) {
    if (starts(p, n, "RIFF", 4) && n >= 12 && memcmp(p + 8, "WEBP", 4) == 0) return "WebP";
    if (starts(p, n, "II*\0", 4) || starts(p, n, "MM\0*", 4)) return "TIFF";
    if (n >= 12 && memcmp(p + 4, "ftyp", 4) == 0) {
        if (memcmp(p + 8, "avif", 4) == 0 || memcmp(p + 8, "avis", 4) == 0) return "AVIF";
        if (memcmp(p + 8, "heic", 4) == 0 || memcmp(p + 8, "heix", 4) == 0 || memcmp(p + 8, "mif1", 4) == 0)
            return "HEIF/HEIC";
        return "an ISO media file (MP4/MOV/HEIF)";
    }
    if (starts(p, n, "\xff\x0a", 2) || starts(p, n, "\0\0\0\x0cJXL ", 8)) return "JPEG XL";
    if (starts(p, n, "\0\0\0\x0cjP  ", 8) || starts(p, n, "\xff\x4f\xff\x51", 4)) return "JPEG 2000";
    if (starts(p, n, "8BPS", 4)) return "Photoshop PSD";
    if (starts(p, n, "qoif", 4)) return "QOI";
    if (starts(p, n, "\0\0\1\0", 4)) return "ICO";
    if (starts(p, n, "#?RADIANCE", 10) || starts(p, n, "#?RGBE", 6)) return "Radiance HDR";
    if (n >= 2 && p[0] == 'P' && p[1] >= '1' && p[1] <= '7') return "PNM/PAM";
    if (starts(p, n, "%PDF", 4)) return "PDF";
    if (starts(p, n, "<?xml", 5) || starts(p, n, "<svg", 4)) return "SVG/XML";
    return NULL;
}

static const char *stb_reason(void) {
    const char *r = stbi_failure_reason();
    return r && *r ? r : "unknown reason";
}

void mrw_image_free(mrw_image *img) {
    if (!img) return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

mrw_status mrw_image_alloc(int width, int height, mrw_image *out, mrw_error *err) {
    memset(out, 0, sizeof *out);
    if (width <= 0 || height <= 0)
        return mrw_err(err, MRW_E_ARG, "image dimensions must be positive, got %dx%d", width, height);
    if ((uint64_t)width * (uint64_t)height > (uint64_t)(SIZE_MAX / 4))
        return mrw_err(err, MRW_E_LIMIT, "image %dx%d is too large", width, height);
    out->rgb = malloc((size_t)width * (size_t)height * 3);
    if (!out->rgb) return mrw_err(err, MRW_E_NOMEM, "out of memory for a %dx%d image", width, height);
    out->width = width;
    out->height = height;
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------------------ GIF */

/* What PIL needs from a GIF's first frame and stb_image does not give: the frame rectangle, the palette it
 * uses and its transparent index. stb_image leaves transparent pixels as (0,0,0,0) and fills the canvas
 * outside the first frame with the background colour; PIL instead keeps the palette index, so that
 * convert("RGB") shows the transparent entry's colour inside the frame and, outside it, the colour of the
 * transparent index (or of index 0 when there is none). */
typedef struct {
    int x, y, w, h;         /* first frame rectangle within the canvas */
    const uint8_t *palette; /* the frame's palette (local, else global), 3 bytes per entry */
    int n_colors;
    int transparent; /* -1 if none */
} gif_frame0;

/* Skips GIF data sub-blocks starting at *pos; 0 if they run past the end. */
static int gif_skip_blocks(const uint8_t *p, size_t n, size_t *pos) {
    while (*pos < n) {
        size_t len = p[(*pos)++];
        if (len == 0) return 1;
        if (len > n - *pos) return 0;
        *pos += len;
    }
    return 0;
}

/* 1: parsed; 0: not understood (stb_image will judge); -1: the data ends inside the first frame. */
static int gif_parse_frame0(const uint8_t *p, size_t n, gif_frame0 *f) {
    memset(f, 0, sizeof *f);
    f->transparent = -1;
    if (n < 13) return 0;
    size_t pos = 13;
    const uint8_t *global = NULL;
    int n_global = 0;
    if (p[10] & 0x80) {
        n_global = 2 << (p[10] & 7);
        if ((size_t)n_global * 3 > n - pos) return 0;
        global = p + pos;
        pos += (size_t)n_global * 3;
    }
    while (pos < n) {
        uint8_t tag = p[pos++];
        if (tag == 0x21) { /* extension: label, then sub-blocks */
            if (pos >= n) return -1;
            uint8_t label = p[pos++];
            /* Graphic Control Extension: a 4-byte block; bit 0 of its flags says the index is transparent.
             * The one read last before the image applies to it (as in both stb_image and PIL). */
            if (label == 0xF9 && pos + 5 <= n && p[pos] == 4)
                f->transparent = (p[pos + 1] & 1) ? p[pos + 4] : -1;
            if (!gif_skip_blocks(p, n, &pos)) return -1;
        } else if (tag == 0x2C) { /* image descriptor */
            if (n - pos < 9) return -1;
            f->x = p[pos] | p[pos + 1] << 8;
            f->y = p[pos + 2] | p[pos + 3] << 8;
            f->w = p[pos + 4] | p[pos + 5] << 8;
            f->h = p[pos + 6] | p[pos + 7] << 8;
            uint8_t flags = p[pos + 8];
            pos += 9;
            f->palette = global;
            f->n_colors = n_global;
            if (flags & 0x80) {
                int n_local = 2 << (flags & 7);
                if ((size_t)n_local * 3 > n - pos) return -1;
                f->palette = p + pos;
                f->n_colors = n_local;
                pos += (size_t)n_local * 3;
            }
            if (!f->palette) return 0;
            /* the LZW minimum code size, then the raster's sub-blocks up to their terminator */
            if (pos >= n) return -1;
            pos++;
            return gif_skip_blocks(p, n, &pos) ? 1 : -1;
        } else {
            return 0; /* trailer or garbage before any image */
        }
    }
    return -1;
}

/* PIL looks up palette indices past the end of a short palette in its default palette, a gray ramp. */
static void gif_color(const gif_frame0 *f, int index, uint8_t *rgb) {
    if (index < f->n_colors) {
        memcpy(rgb, f->palette + 3 * index, 3);
    } else {
        rgb[0] = rgb[1] = rgb[2] = (uint8_t)index;
    }
}

/* Rewrites stb_image's RGBA first frame into PIL's RGB rendering of it (see gif_frame0). */
static void gif_to_pil_rgb(const uint8_t *rgba, int w, int h, const gif_frame0 *f, uint8_t *rgb) {
    uint8_t outside[3], transparent[3] = {0, 0, 0};
    gif_color(f, f->transparent >= 0 ? f->transparent : 0, outside);
    if (f->transparent >= 0) gif_color(f, f->transparent, transparent);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            const uint8_t *s = rgba + ((size_t)y * w + x) * 4;
            uint8_t *d = rgb + ((size_t)y * w + x) * 3;
            int inside = x >= f->x && x - f->x < f->w && y >= f->y && y - f->y < f->h;
            if (!inside)
                memcpy(d, outside, 3);
            else if (s[3] == 0)
                memcpy(d, transparent, 3);
            else
                memcpy(d, s, 3);
        }
    }
}

/* ------------------------------------------------------------------------------------------ truncation */

/* JPEG checks stb_image 2.27 needs in front of it:
 *  - a file that ends before its EOI marker is truncated (stb_image decodes the missing data as zeros);
 *  - a DHT table declaring more than 256 codes makes stb_image write past its Huffman tables;
 *  - a scan that uses a Huffman table no DHT defined makes stb_image decode with uninitialised tables
 *    (reads at garbage offsets).
 * Both of the latter can also trip an assert() that Debian's libstb.so keeps (abort). The walk follows the
 * marker structure as stb_image reads it: segments are skipped by their lengths (so an EXIF thumbnail's
 * tables and EOI are not mistaken for the image's), junk where a marker is expected is skipped byte by
 * byte as stb does, entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or a restart
 * marker, and DHT tables are read as stb reads them, past the segment end if need be. */
typedef enum { JPEG_OK = 0, JPEG_TRUNCATED, JPEG_BAD_HUFFMAN, JPEG_UNDEFINED_HUFFMAN } jpeg_check;

static int byte_at(const uint8_t *p, size_t n, size_t i) { return i < n ? p[i] : 0; } /* stb: 0 at EOF */

/* Reads the tables of a DHT segment whose payload starts at `pos`: marks those defined (defined[class][id])
 * and returns the largest code count seen. */
static int dht_tables(const uint8_t *p, size_t n, size_t pos, size_t len, int defined[2][4]) {
    long left = (long)len - 2;
    int worst = 0;
    while (left > 0 && pos < n) {
        int q = byte_at(p, n, pos), codes = 0;
        for (int i = 1; i <= 16; i++) codes += byte_at(p, n, pos + i);
        if (codes > worst) worst = codes;
        if ((q >> 4) > 1 || (q & 15) > 3) break; /* stb rejects the file here */
        if (codes <= 256) defined[q >> 4][q & 15] = 1;
        pos += 17 + (size_t)codes;
        left -= 17 + codes;
    }
    return worst;
}

/* Whether every table the scan header at `pos` (after the length) uses has been defined. stb decodes a
 * baseline scan with both tables of each component, a progressive one with the DC table when it starts at
 * coefficient 0 and the AC table when it goes past it. */
static int sos_tables_defined(const uint8_t *p, size_t n, size_t pos, int progressive, int defined[2][4]) {
    int ns = byte_at(p, n, pos);
    if (ns < 1 || ns > 4) return 1; /* stb rejects it */
    int ss = byte_at(p, n, pos + 1 + 2 * (size_t)ns), se = byte_at(p, n, pos + 2 + 2 * (size_t)ns);
    for (int i = 0; i < ns; i++) {
        int q = byte_at(p, n, pos + 2 + 2 * (size_t)i), dc = q >> 4, ac = q & 15;
        if (dc > 3 || ac > 3) return 1; /* stb rejects it */
        if ((!progressive || ss == 0) && !defined[0][dc]) return 0;
        if ((!progressive || se != 0) && !defined[1][ac]) return 0;
    }
    return 1;
}

static jpeg_check jpeg_walk(const uint8_t *p, size_t n, int *bad_codes) {
    int defined[2][4] = {{0}}, progressive = 0;
    size_t pos = 2;
    for (;;) {
        while (pos < n && p[pos] != 0xFF) pos++; /* junk where a marker should be */
        while (pos < n && p[pos] == 0xFF) pos++; /* fill bytes */
        if (pos >= n) return JPEG_TRUNCATED;
        uint8_t m = p[pos++];
        if (m == 0xD9) return JPEG_OK;
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue; /* markers without a length */
        if (n - pos < 2) return JPEG_TRUNCATED;
        size_t len = (size_t)p[pos] << 8 | p[pos + 1];
        if (m == 0xC2) progressive = 1;
        if (m == 0xC4 && (*bad_codes = dht_tables(p, n, pos + 2, len, defined)) > 256)
            return JPEG_BAD_HUFFMAN;
        if (m == 0xDA && !sos_tables_defined(p, n, pos + 2, progressive, defined))
            return JPEG_UNDEFINED_HUFFMAN;
        if (len < 2) continue;
        if (len > n - pos) return JPEG_TRUNCATED;
        pos += len;
        if (m != 0xDA) continue;
        for (;;) { /* entropy-coded data */
            if (n - pos < 2) return JPEG_TRUNCATED;
            uint8_t a = p[pos + 1];
            if (p[pos] == 0xFF && a != 0x00 && a != 0xFF && !(a >= 0xD0 && a <= 0xD7)) break;
            pos++;
        }
    }
}

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Whether an uncompressed BMP holds all the pixel rows its header promises. 1 also when the header is not
 * understood or the pixels are compressed (the decoder judges those). */
static int bmp_complete(const uint8_t *p, size_t n) {
    if (n < 30) return 1;
    uint32_t offset = le32(p + 10), hsz = le32(p + 14);
    int64_t w, h;
    uint32_t bpp, compression = 0;
    if (hsz == 12) {
        w = le16(p + 18);
        h = le16(p + 20);
        bpp = le16(p + 24);
    } else {
        if (n < 34) return 1;
        w = (int32_t)le32(p + 18);
        h = (int32_t)le32(p + 22);
        bpp = le16(p + 28);
        compression = le32(p + 30);
    }
    if (compression != 0 && compression != 3 && compression != 6) return 1;
    if (w <= 0 || h == 0 || (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32))
        return 1;
    if (h < 0) h = -h;
    uint64_t row = ((uint64_t)w * bpp + 31) / 32 * 4;
    return (uint64_t)offset + row * (uint64_t)h <= n;
}

/* ---------------------------------------------------------------------------------------------- decode */

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

/* The dimensions a PNG, GIF or BMP header declares, read directly so that the limits are checked (and
 * explained) before stb_image looks at the file: stb refuses some large images with a misleading "unknown
 * image type". Returns 0 when the header is too short or not understood (JPEG: stb reads its SOF). */
static int declared_dims(mrw_image_format fmt, const uint8_t *p, size_t n, int64_t *w, int64_t *h) {
    if (fmt == MRW_IMG_PNG && n >= 24 && memcmp(p + 12, "IHDR", 4) == 0) {
        *w = be32(p + 16);
        *h = be32(p + 20);
        return 1;
    }
    if (fmt == MRW_IMG_GIF && n >= 10) {
        *w = le16(p + 6);
        *h = le16(p + 8);
        return 1;
    }
    if (fmt == MRW_IMG_BMP && n >= 26) {
        uint32_t hsz = le32(p + 14);
        if (hsz == 12) {
            *w = le16(p + 18);
            *h = le16(p + 20);
        } else {
            *w = (int32_t)le32(p + 18);
            *h = (int32_t)le32(p + 22);
            if (*h < 0) *h = -*h; /* top-down rows */
        }
        return 1;
    }
    return 0;
}

static mrw_status check_dims(const char *name, mrw_image_format fmt, int64_t w, int64_t h,
                             const mrw_image_limits *lim, mrw_error *err) {
    if (w <= 0 || h <= 0)
        return mrw_err(err, MRW_E_FORMAT, "%s: the %s image has zero size (%lldx%lld)", name,
                       mrw_image_format_name(fmt), (long long)w, (long long)h);
    double px = (double)w * (double)h; /* a PNG may declare 2^32 - 1 by 2^32 - 1: no int64 product */
    if (px > (double)lim->max_pixels) {
        double mpx = px / 1e6, lim_mpx = (double)lim->max_pixels / 1e6;
        return mrw_err(err, MRW_E_LIMIT, "%s: image is %lldx%lld = %.*f Mpx; the limit is %.*f Mpx", name,
                       (long long)w, (long long)h, mpx < 10 ? 1 : 0, mpx, lim_mpx < 10 ? 1 : 0, lim_mpx);
    }
    return MRW_OK;
}

/* What must be checked before stb_image parses any of the file (stbi_info already runs the JPEG marker
 * parser, DHT tables included). `gif` receives what PIL's GIF rendering needs; *is_gif says it is valid. */
static mrw_status check_structure(const uint8_t *p, size_t size, const char *name, mrw_image_format fmt,
                                  gif_frame0 *gif, int *is_gif, mrw_error *err) {
    int gif_state = fmt == MRW_IMG_GIF ? gif_parse_frame0(p, size, gif) : 0, bad_codes = 0;
    *is_gif = gif_state == 1;
    jpeg_check jc = fmt == MRW_IMG_JPEG ? jpeg_walk(p, size, &bad_codes) : JPEG_OK;
    if (jc == JPEG_BAD_HUFFMAN)
        return mrw_err(err, MRW_E_FORMAT, "%s: corrupt JPEG: a Huffman table declares %d codes (at most 256)",
                       name, bad_codes);
    if (jc == JPEG_UNDEFINED_HUFFMAN)
        return mrw_err(err, MRW_E_FORMAT, "%s: corrupt JPEG: a scan uses a Huffman table that is not defined",
                       name);
    if (gif_state < 0 || jc == JPEG_TRUNCATED || (fmt == MRW_IMG_BMP && !bmp_complete(p, size)))
        return mrw_err(err, MRW_E_FORMAT, "%s: the %s data ends before the image does (truncated file?)",
                       name, mrw_image_format_name(fmt));
    return MRW_OK;
}

static mrw_status check_header(const uint8_t *p, size_t size, const char *name, const mrw_image_limits *lim,
                               mrw_image_format *fmt, int *w, int *h, int *comp, gif_frame0 *gif, int *is_gif,
                               mrw_error *err) {
    if (size == 0) return mrw_err(err, MRW_E_FORMAT, "%s: the file is empty", name);
    if (size > lim->max_bytes || size > INT_MAX)
        return mrw_err(err, MRW_E_LIMIT, "%s: the file is %zu bytes; the limit for an image is %zu bytes",
                       name, size, lim->max_bytes < INT_MAX ? lim->max_bytes : (size_t)INT_MAX);
    *fmt = mrw_image_detect(p, size);
    if (*fmt == MRW_IMG_UNKNOWN) {
        const char *other = other_format_name(p, size);
        if (other)
            return mrw_err(err, MRW_E_UNSUPPORTED,
                           "%s: %s images are not supported (use PNG, JPEG, BMP or GIF)", name, other);
        char hex[40] = "";
        for (size_t i = 0; i < size && i < 8; i++) snprintf(hex + 3 * i, sizeof hex - 3 * i, " %02x", p[i]);
        return mrw_err(err, MRW_E_UNSUPPORTED, "%s: not a PNG, JPEG, BMP or GIF image (first bytes:%s)", name,
                       hex);
    }
    int64_t dw, dh;
    mrw_status st;
    if (declared_dims(*fmt, p, size, &dw, &dh) && (st = check_dims(name, *fmt, dw, dh, lim, err)) != MRW_OK)
        return st;
    if ((st = check_structure(p, size, name, *fmt, gif, is_gif, err)) != MRW_OK) return st;
    if (!stbi_info_from_memory(p, (int)size, w, h, comp))
        return mrw_err(err, MRW_E_FORMAT, "%s: cannot read the %s header: %s (corrupt or truncated file?)",
                       name, mrw_image_format_name(*fmt), stb_reason());
    return check_dims(name, *fmt, *w, *h, lim, err);
}

mrw_status mrw_image_load_mem(const void *data, size_t size, const char *name, const mrw_image_limits *limits,
                              mrw_image *out, mrw_error *err) {
    memset(out, 0, sizeof *out);
    if (!name) name = "<memory>";
    if (!data && size) return mrw_err(err, MRW_E_ARG, "%s: no data", name);
    mrw_image_limits lim = limits ? *limits : mrw_image_limits_default();
    const uint8_t *p = data;
    mrw_image_format fmt = MRW_IMG_UNKNOWN;
    int w = 0, h = 0, comp = 0, is_gif = 0;
    gif_frame0 gif;
    mrw_status st = check_header(p, size, name, &lim, &fmt, &w, &h, &comp, &gif, &is_gif, err);
    if (st != MRW_OK) return st;
    /* GIF decodes to RGBA so that transparent pixels can be told apart and re-coloured as PIL does. */
    int dw = 0, dh = 0, dcomp = 0;
    uint8_t *pix = stbi_load_from_memory(p, (int)size, &dw, &dh, &dcomp, is_gif ? 4 : 3);
    if (!pix)
        return mrw_err(err, MRW_E_FORMAT, "%s: cannot decode the %s image: %s (corrupt or truncated file?)",
                       name, mrw_image_format_name(fmt), stb_reason());
    if (dw != w || dh != h) { /* the header and the decoder must agree; never trust one without the other */
        stbi_image_free(pix);
        return mrw_err(err, MRW_E_FORMAT, "%s: %s header says %dx%d but the decoder produced %dx%d", name,
                       mrw_image_format_name(fmt), w, h, dw, dh);
    }
    st = mrw_image_alloc(w, h, out, err);
    if (st != MRW_OK) {
        stbi_image_free(pix);
        return st;
    }
    if (is_gif)
        gif_to_pil_rgb(pix, w, h, &gif, out->rgb);
    else
        memcpy(out->rgb, pix, (size_t)w * h * 3);
    stbi_image_free(pix);
    out->format = fmt;
    out->src_channels = comp;
    return MRW_OK;
}

mrw_status mrw_image_load(const char *path, const mrw_image_limits *limits, mrw_image *out, mrw_error *err) {
    memset(out, 0, sizeof *out);
    if (!path) return mrw_err(err, MRW_E_ARG, "no image path given");
    mrw_mapping m;
    mrw_status st = mrw_map_file(path, &m, err);
    if (st != MRW_OK) return st;
    st = mrw_image_load_mem(m.data, m.size, path, limits, out, err);
    mrw_unmap(&m);
    return st;
}
