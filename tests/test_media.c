/* Media input: image decoding (vs PIL), the SigLIP/CLIP processors (vs transformers 4.46, bit for bit),
 * audio decoding and resampling (vs soundfile + soxr as librosa.load does it), Whisper's log-mel (vs
 * WhisperFeatureExtractor), WavLM normalisation, and every kind of bad input.
 * Fixtures: tests/fixtures/media, made by tests/reference/make_media_fixtures.py (see its header). */
#include <pthread.h>
#include <stdint.h>

#include "formats/audio.h"
#include "formats/image.h"
#include "formats/tensorfile.h"
#include "models/preprocess.h"
#include "test.h"

#define FIX "tests/fixtures/media/"

/* Tolerances, stated once. */
#define TOL_JPEG_MAX 4     /* stb_image vs libjpeg-turbo, max |diff| in levels per value (measured: 2) */
#define TOL_JPEG_MEAN 0.1  /* ... and mean |diff| (measured: 0.02) */
#define TOL_RESAMPLE 2e-6  /* soxr HQ, Debian libsoxr vs python-soxr 1.1.0 (measured: bit-exact) */
#define TOL_LOSSY 1e-4     /* Vorbis/Opus/MP3 decoders: libsndfile 1.2.0 vs 1.2.2 (measured: 3e-8) */
#define TOL_MEL_FLOAT 1e-4 /* log-mel with the single-precision FFT vs numpy's double-precision one */
#define TOL_MEL_TORCH 1e-4 /* vs the torch path of WhisperFeatureExtractor (float32 STFT) */
#define TOL_NORM 2e-5      /* WavLM normalisation: double statistics vs numpy's float32 ones */

static mrw_tfile *golden;

static const mrw_tensor_info *G(const char *name) {
    const mrw_tensor_info *t = mrw_tfile_find(golden, name);
    CHECKF(t != NULL, "golden tensor %s missing", name);
    return t;
}

static const char *gname(char *buf, size_t n, const char *fmt, const char *a) {
    snprintf(buf, n, fmt, a);
    return buf;
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int is_jpeg(const char *name) { return has_suffix(name, ".jpg"); }

/* ------------------------------------------------------------------------------------------- images */

static const char *IMAGES[] = {"anim_10x7.gif",   "gray16_12x9.png", "gray_40x30.png", "gray_64x48.jpg",
                               "la_21x13.png",    "pal_50x20.png",   "pal_9x6.bmp",    "photo_480x400.jpg",
                               "prog_120x90.jpg", "rgb16_20x10.png", "rgb_97x61.png",  "rgba_33x47.png",
                               "rgba_8x4.bmp",    "small_16x12.png", "strip_1x50.png", "strip_50x1.png",
                               "tiny_7x5.bmp"};
#define N_IMAGES (int)(sizeof IMAGES / sizeof IMAGES[0])

static int load_image(const char *name, mrw_image *img) {
    mrw_error err = {0};
    char path[256];
    snprintf(path, sizeof path, FIX "%s", name);
    mrw_status st = mrw_image_load(path, NULL, img, &err);
    CHECKF(st == MRW_OK, "%s: %s", name, err.msg);
    return st == MRW_OK;
}

/* Compares decoded pixels with PIL's (possibly subsampled every `step` rows/columns). */
static void compare_decode(const char *name, const mrw_image *img, const mrw_tensor_info *t, int step,
                           int exact) {
    int gh = (int)t->shape[0], gw = (int)t->shape[1];
    CHECKF(gh == (img->height + step - 1) / step && gw == (img->width + step - 1) / step,
           "%s: %dx%d vs golden %dx%d (step %d)", name, img->width, img->height, gw, gh, step);
    if (gh != (img->height + step - 1) / step || gw != (img->width + step - 1) / step) return;
    const uint8_t *ref = t->data;
    int maxd = 0;
    double sum = 0;
    for (int y = 0; y < gh; y++)
        for (int x = 0; x < gw * 3; x++) {
            int d = abs(img->rgb[((size_t)y * step * img->width + (size_t)(x / 3) * step) * 3 + x % 3] -
                        ref[(size_t)y * gw * 3 + x]);
            maxd = d > maxd ? d : maxd;
            sum += d;
        }
    double mean = sum / ((double)gh * gw * 3);
    if (exact)
        CHECKF(maxd == 0, "%s: decode differs from PIL by up to %d levels", name, maxd);
    else {
        CHECKF(maxd <= TOL_JPEG_MAX && mean <= TOL_JPEG_MEAN, "%s: max %d mean %.3f", name, maxd, mean);
        fprintf(stderr, "  %-20s decode vs PIL: max %2d levels, mean %.3f\n", name, maxd, mean);
    }
}

static void test_decode(void) {
    char key[128];
    for (int i = 0; i < N_IMAGES; i++) {
        mrw_image img;
        if (!load_image(IMAGES[i], &img)) continue;
        const char *n = IMAGES[i];
        int step = strncmp(n, "photo", 5) == 0 ? 8 : strncmp(n, "prog", 4) == 0 ? 2 : 1;
        compare_decode(n, &img, G(gname(key, sizeof key, "decode.%s", n)), step, !is_jpeg(n));
        mrw_image_free(&img);
    }
    /* what the loader reports about the source */
    mrw_image img;
    if (load_image("rgba_33x47.png", &img)) {
        CHECK(img.format == MRW_IMG_PNG && img.src_channels == 4 && img.width == 33 && img.height == 47);
        mrw_image_free(&img);
    }
    if (load_image("gray_64x48.jpg", &img)) {
        CHECK(img.format == MRW_IMG_JPEG && img.src_channels == 1);
        mrw_image_free(&img);
    }
}

/* pixel_values -> the uint8 level it is the image of, through the golden map (exact match required). */
static int level_of(const float *lut, float v) {
    int lo = 0, hi = 255;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (lut[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lut[lo] == v ? lo : -1;
}

/* Checks planar processor output against golden uint8 levels (HWC) mapped through the golden LUT:
 * returns the largest difference in levels (0 = bit-exact), or 999 if a value is off the map. */
static int compare_levels(const float *out, int w, int h, const uint8_t *ref, const float *lut, int *n_diff) {
    int maxd = 0;
    *n_diff = 0;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < (size_t)w * h; i++) {
            float v = out[c * (size_t)w * h + i];
            int lv = level_of(lut + 256 * c, v);
            if (lv < 0) return 999;
            int d = abs(lv - ref[i * 3 + c]);
            if (d) (*n_diff)++;
            maxd = d > maxd ? d : maxd;
        }
    return maxd;
}

static void test_pixel_map(void) {
    /* a 16x16 ramp of all levels, no resize: the rescale + normalize map alone, bit for bit */
    mrw_image ramp;
    mrw_error err = {0};
    CHECK_OK(mrw_image_alloc(16, 16, &ramp, &err), &err);
    for (int i = 0; i < 256; i++) ramp.rgb[3 * i] = ramp.rgb[3 * i + 1] = ramp.rgb[3 * i + 2] = (uint8_t)i;
    float out[3 * 256];
    CHECK_OK(mrw_image_to_siglip(&ramp, 16, out, &err), &err);
    CHECKF(memcmp(out, G("lut.siglip")->data, sizeof out) == 0, "SigLIP rescale/normalize not bit-exact");
    mrw_image_proc p = mrw_image_proc_clip(16);
    CHECK_OK(mrw_image_preprocess(&ramp, &p, out, &err), &err);
    CHECKF(memcmp(out, G("lut.clip")->data, sizeof out) == 0, "CLIP rescale/normalize not bit-exact");
    mrw_image_free(&ramp);
}

static void test_processors_on_files(void) {
    const float *lut_s = G("lut.siglip")->data, *lut_c = G("lut.clip")->data;
    int exact_cases = 0, jpeg_max = 0;
    for (int i = 0; i < mrw_tfile_count(golden); i++) {
        const mrw_tensor_info *t = mrw_tfile_tensor(golden, i);
        int is_siglip = strncmp(t->name, "siglip", 6) == 0, is_clip = strncmp(t->name, "clip", 4) == 0;
        if (!is_siglip && !is_clip) continue;
        int size = atoi(t->name + (is_siglip ? 6 : 4));
        const char *file = strchr(t->name, '.') + 1;
        mrw_image img;
        if (!load_image(file, &img)) continue;
        float *out = malloc(sizeof(float) * 3 * size * size);
        mrw_error err = {0};
        mrw_status st =
            is_siglip ? mrw_image_to_siglip(&img, size, out, &err) : mrw_image_to_clip(&img, size, out, &err);
        CHECKF(st == MRW_OK, "%s: %s", t->name, err.msg);
        int n_diff, d = compare_levels(out, size, size, t->data, is_siglip ? lut_s : lut_c, &n_diff);
        if (is_jpeg(file)) {
            /* the decoders differ (see test_decode); the resize itself is checked on the lossless files */
            CHECKF(d <= TOL_JPEG_MAX, "%s: %d levels off", t->name, d);
            jpeg_max = d > jpeg_max ? d : jpeg_max;
        } else {
            CHECKF(d == 0, "%s: %d values differ from the processor, by up to %d levels", t->name, n_diff, d);
            exact_cases += d == 0;
        }
        free(out);
        mrw_image_free(&img);
    }
    fprintf(stderr, "  processors on files: %d lossless cases bit-exact; JPEG inputs within %d levels\n",
            exact_cases, jpeg_max);
}

static void proc_image(int w, int h, mrw_image *img);

static void test_resize(void) {
    /* a 10 x 300000 source to 12 x 40: per-use vertical weights and the streamed vertical pass */
    mrw_image tall, small;
    mrw_error err = {0};
    proc_image(10, 300000, &tall);
    CHECK_OK(mrw_image_resize(&tall, 12, 40, MRW_RESAMPLE_BILINEAR, &small, &err), &err);
    CHECK(small.rgb && memcmp(small.rgb, G("resize.proc_10x300000.bilinear.12x40")->data, 12 * 40 * 3) == 0);
    mrw_image_free(&small);
    mrw_image_free(&tall);
    for (int i = 0; i < mrw_tfile_count(golden); i++) {
        const mrw_tensor_info *t = mrw_tfile_tensor(golden, i);
        if (strncmp(t->name, "resize.", 7) != 0) continue;
        char file[64], filt[16];
        int w, h;
        const char *rest = t->name + 7, *dot = strstr(rest, ".png.");
        if (!dot) dot = strstr(rest, ".jpg.");
        if (!dot) continue;
        snprintf(file, sizeof file, "%.*s", (int)(dot - rest) + 4, rest);
        if (sscanf(dot + 5, "%15[a-z].%dx%d", filt, &w, &h) != 3) continue;
        mrw_image img, out;
        if (!load_image(file, &img)) continue;
        mrw_resample rs = strcmp(filt, "bicubic") == 0 ? MRW_RESAMPLE_BICUBIC : MRW_RESAMPLE_BILINEAR;
        CHECK_OK(mrw_image_resize(&img, w, h, rs, &out, &err), &err);
        if (out.rgb) {
            int maxd = 0;
            const uint8_t *ref = t->data;
            for (size_t k = 0; k < (size_t)w * h * 3; k++) {
                int d = abs(out.rgb[k] - ref[k]);
                maxd = d > maxd ? d : maxd;
            }
            CHECKF(maxd <= (is_jpeg(file) ? TOL_JPEG_MAX : 0), "%s: max diff %d", t->name, maxd);
        }
        mrw_image_free(&out);
        mrw_image_free(&img);
    }
}

/* The procedural image of make_media_fixtures.py's proc_image(). */
static void proc_image(int w, int h, mrw_image *img) {
    mrw_error err = {0};
    CHECK_OK(mrw_image_alloc(w, h, img, &err), &err);
    for (uint32_t y = 0; y < (uint32_t)h; y++)
        for (uint32_t x = 0; x < (uint32_t)w; x++)
            for (int c = 0; c < 3; c++) {
                uint32_t s = (x * 73856093u) ^ (y * 19349663u) ^ (uint32_t)((c + 1) * 83492791u);
                s = (s ^ (s >> 13)) * 0x5BD1E995u;
                s ^= s >> 15;
                int64_t noise = s & 31, grad;
                if (c == 0)
                    grad = (int64_t)x * 255 / (w > 1 ? w - 1 : 1);
                else if (c == 1)
                    grad = (int64_t)y * 255 / (h > 1 ? h - 1 : 1);
                else
                    grad = ((int64_t)x + y) * 255 / (w + h - 2 > 0 ? w + h - 2 : 1);
                int64_t check = (((x >> 4) + (y >> 4)) & 1) * 48;
                int64_t v = grad * 3 / 4 + check + noise;
                img->rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)(v > 255 ? 255 : v);
            }
}

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

static void test_processors_full_size(void) {
    static const struct {
        const char *kind;
        int w, h;
    } cases[] = {
        {"siglip384", 1000, 700}, {"siglip384", 200, 150}, {"siglip384", 384, 384},   {"siglip384", 385, 383},
        {"siglip384", 7, 5},      {"siglip384", 2000, 90}, {"siglip384", 1000000, 1}, {"siglip384", 1, 40000},
        {"clip336", 1000, 700},   {"clip336", 200, 150},   {"clip336", 336, 500},     {"clip336", 1, 500},
        {"clip336", 3000, 40},    {"clip336", 7, 5},
    };
    int exact = 0, n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        int siglip = cases[i].kind[0] == 's', size = siglip ? 384 : 336;
        const float *lut = G(siglip ? "lut.siglip" : "lut.clip")->data;
        mrw_image img;
        proc_image(cases[i].w, cases[i].h, &img);
        float *out = malloc(sizeof(float) * 3 * size * size);
        uint8_t *lv = malloc((size_t)size * size * 3);
        mrw_error err = {0};
        mrw_status st =
            siglip ? mrw_image_to_siglip(&img, size, out, &err) : mrw_image_to_clip(&img, size, out, &err);
        CHECKF(st == MRW_OK, "%s %dx%d: %s", cases[i].kind, cases[i].w, cases[i].h, err.msg);
        int off_map = 0;
        for (int c = 0; c < 3; c++)
            for (size_t k = 0; k < (size_t)size * size; k++) {
                int l = level_of(lut + 256 * c, out[c * (size_t)size * size + k]);
                off_map += l < 0;
                lv[k * 3 + c] = (uint8_t)(l < 0 ? 0 : l);
            }
        char key[96];
        snprintf(key, sizeof key, "proc.%s.%dx%d.hash", cases[i].kind, cases[i].w, cases[i].h);
        uint64_t want;
        memcpy(&want, G(key)->data, 8);
        uint64_t got = fnv1a64(lv, (size_t)size * size * 3);
        /* on a mismatch, count differing pixels in the stored every-8th-pixel subsample */
        int sub_diff = 0, sub_max = 0;
        snprintf(key, sizeof key, "proc.%s.%dx%d.sub", cases[i].kind, cases[i].w, cases[i].h);
        const uint8_t *sub = G(key)->data;
        int sn = (size + 7) / 8;
        for (int y = 0; y < sn; y++)
            for (int x = 0; x < sn * 3; x++) {
                int d = abs(lv[((size_t)y * 8 * size + (size_t)(x / 3) * 8) * 3 + x % 3] -
                            sub[(size_t)y * sn * 3 + x]);
                sub_diff += d != 0;
                sub_max = d > sub_max ? d : sub_max;
            }
        CHECKF(got == want && off_map == 0,
               "%s %dx%d: not bit-exact (%d values off the map; subsample: %d differ, max %d)", cases[i].kind,
               cases[i].w, cases[i].h, off_map, sub_diff, sub_max);
        exact += got == want;
        free(out);
        free(lv);
        mrw_image_free(&img);
    }
    fprintf(stderr, "  processors at 384/336: %d of %d procedural images bit-exact\n", exact, n);
}

/* Writes a modified copy of a fixture into memory and decodes it. */
static mrw_status decode_bytes(const uint8_t *p, size_t n, const mrw_image_limits *lim, mrw_error *err) {
    mrw_image img;
    memset(err, 0, sizeof *err);
    mrw_status st = mrw_image_load_mem(p, n, "test.img", lim, &img, err);
    if (st == MRW_OK)
        mrw_image_free(&img);
    else
        CHECKF(img.rgb == NULL && err->msg[0] && strstr(err->msg, "test.img"),
               "failure without a clean message");
    return st;
}

static void expect(mrw_status got, mrw_status want, const mrw_error *err, const char *needle,
                   const char *what) {
    CHECKF(got == want, "%s: status %s, want %s (%s)", what, mrw_status_name(got), mrw_status_name(want),
           err->msg);
    if (needle)
        CHECKF(strstr(err->msg, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err->msg, needle);
}

static uint8_t *read_fix(const char *name, size_t *n) {
    char path[256];
    snprintf(path, sizeof path, FIX "%s", name);
    uint8_t *b = t_read_file(path, n);
    CHECKF(b != NULL, "cannot read %s", path);
    return b;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = (uint8_t)v;
}

static void test_image_errors(void) {
    mrw_error err;
    size_t n;
    uint8_t *png = read_fix("rgb_97x61.png", &n);
    if (!png) return;
    expect(decode_bytes(png, 0, NULL, &err), MRW_E_FORMAT, &err, "empty", "empty input");
    expect(decode_bytes((const uint8_t *)"hello, world, not an image", 26, NULL, &err), MRW_E_UNSUPPORTED,
           &err, "not a PNG, JPEG, BMP or GIF", "garbage");
    expect(decode_bytes((const uint8_t *)"RIFF\x10\0\0\0WEBPVP8 ", 16, NULL, &err), MRW_E_UNSUPPORTED, &err,
           "WebP", "WebP");
    expect(decode_bytes((const uint8_t *)"II*\0\x08\0\0\0", 8, NULL, &err), MRW_E_UNSUPPORTED, &err, "TIFF",
           "TIFF");
    for (size_t cut = 8; cut < n; cut += n / 7)
        expect(decode_bytes(png, cut, NULL, &err), MRW_E_FORMAT, &err, "PNG", "truncated PNG");
    expect(decode_bytes(png, n - 12, NULL, &err), MRW_E_FORMAT, &err, "PNG", "PNG without IEND");
    uint8_t *m = malloc(n);
    memcpy(m, png, n);
    put_be32(m + 16, 0); /* IHDR width */
    expect(decode_bytes(m, n, NULL, &err), MRW_E_FORMAT, &err, "PNG", "0-width PNG");
    memcpy(m, png, n);
    put_be32(m + 16, 20000);
    put_be32(m + 20, 20000);
    expect(decode_bytes(m, n, NULL, &err), MRW_E_LIMIT, &err, "20000x20000 = 400 Mpx; the limit is 64 Mpx",
           "huge PNG");
    put_be32(m + 16, 0xFFFFFFFFu);
    put_be32(m + 20, 0xFFFFFFFFu);
    expect(decode_bytes(m, n, NULL, &err), MRW_E_LIMIT, &err, "4294967295x4294967295", "PNG 2^32-1 square");
    mrw_image_limits small = {.max_bytes = 1000, .max_pixels = MRW_IMAGE_MAX_PIXELS};
    expect(decode_bytes(png, n, &small, &err), MRW_E_LIMIT, &err, "limit", "file size limit");
    small = (mrw_image_limits){.max_bytes = MRW_IMAGE_MAX_BYTES, .max_pixels = 97 * 61 - 1};
    expect(decode_bytes(png, n, &small, &err), MRW_E_LIMIT, &err, "97x61", "pixel limit");
    for (size_t i = 40; i < n; i += 97) m[i] ^= 0x5A; /* corrupt the compressed data */
    memcpy(m, png, 40);
    mrw_status st = decode_bytes(m, n, NULL, &err);
    CHECKF(st == MRW_E_FORMAT, "corrupt PNG: %s", err.msg);
    free(m);
    free(png);

    uint8_t *jpg = read_fix("photo_480x400.jpg", &n);
    if (jpg) {
        for (size_t cut = 3; cut < n; cut += n / 9)
            expect(decode_bytes(jpg, cut, NULL, &err), MRW_E_FORMAT, &err, "JPEG", "truncated JPEG");
        expect(decode_bytes(jpg, n - 2, NULL, &err), MRW_E_FORMAT, &err, "truncated", "JPEG without EOI");
        m = malloc(n);
        memcpy(m, jpg, n);
        size_t sof = 2; /* find SOF0/SOF2 and declare 65000 x 65000 */
        while (sof + 9 < n && !(m[sof] == 0xFF && (m[sof + 1] == 0xC0 || m[sof + 1] == 0xC2))) sof++;
        m[sof + 5] = 0xFD, m[sof + 6] = 0xE8, m[sof + 7] = 0xFD, m[sof + 8] = 0xE8;
        expect(decode_bytes(m, n, NULL, &err), MRW_E_LIMIT, &err, "65000x65000", "huge JPEG");
        m[sof + 5] = m[sof + 6] = 0;
        expect(decode_bytes(m, n, NULL, &err), MRW_E_FORMAT, &err, "JPEG", "0-height JPEG");
        /* Huffman tables stb_image 2.27 would mishandle (memory corruption, abort): refused up front */
        memcpy(m, jpg, n);
        size_t dht = 2;
        while (dht + 21 < n && !(m[dht] == 0xFF && m[dht + 1] == 0xC4)) dht++;
        m[dht + 19] = m[dht + 20] = 200; /* code counts for lengths 15 and 16: > 256 codes in all */
        expect(decode_bytes(m, n, NULL, &err), MRW_E_FORMAT, &err, "Huffman table declares", "DHT > 256");
        memcpy(m, jpg, n);
        for (size_t i = 0; i + 1 < n; i++)
            if (m[i] == 0xFF && m[i + 1] == 0xC4) m[i + 1] = 0xE5; /* every DHT becomes an APP5 segment */
        expect(decode_bytes(m, n, NULL, &err), MRW_E_FORMAT, &err, "not defined", "JPEG without DHT");
        free(m);
        free(jpg);
    }
    uint8_t *gif = read_fix("anim_10x7.gif", &n);
    if (gif) {
        for (size_t cut = 6; cut < 100 && cut < n; cut += 7)
            expect(decode_bytes(gif, cut, NULL, &err), MRW_E_FORMAT, &err, "GIF", "truncated GIF");
        m = malloc(n);
        memcpy(m, gif, n);
        m[6] = m[7] = m[8] = m[9] = 0xFF; /* 65535 x 65535 screen */
        expect(decode_bytes(m, n, NULL, &err), MRW_E_LIMIT, &err, "Mpx", "huge GIF");
        free(m);
        free(gif);
    }
    uint8_t *bmp = read_fix("tiny_7x5.bmp", &n);
    if (bmp) {
        expect(decode_bytes(bmp, n - 5, NULL, &err), MRW_E_FORMAT, &err, "truncated", "truncated BMP");
        expect(decode_bytes(bmp, 20, NULL, &err), MRW_E_FORMAT, &err, "BMP", "BMP header only");
        free(bmp);
    }
    mrw_image img;
    expect(mrw_image_load(FIX "does-not-exist.png", NULL, &img, &err), MRW_E_IO, &err, "does-not-exist.png",
           "missing file");
    /* preprocessing arguments */
    mrw_image empty = {0};
    float out[3];
    expect(mrw_image_to_siglip(&empty, 1, out, &err), MRW_E_ARG, &err, "empty image", "empty image");
    proc_image(3, 2, &img);
    expect(mrw_image_to_clip(&img, 0, out, &err), MRW_E_ARG, &err, "size", "CLIP size 0");
    mrw_image_proc bad = mrw_image_proc_siglip(4);
    bad.std[1] = 0.0f;
    expect(mrw_image_preprocess(&img, &bad, out, &err), MRW_E_ARG, &err, "std", "zero std");
    mrw_image_free(&img);
    /* shapes that would make the resize absurd are refused with a clear message */
    proc_image(1, 100000, &img);
    int w = -1, h = -1;
    mrw_image_proc clip = mrw_image_proc_clip(336);
    expect(mrw_image_proc_out_size(&clip, &img, &w, &h, &err), MRW_E_LIMIT, &err, "aspect ratio",
           "CLIP strip");
    float *big = malloc(sizeof(float) * 3 * 384 * 384);
    expect(mrw_image_to_clip(&img, 336, big, &err), MRW_E_LIMIT, &err, "1x100000", "CLIP strip");
    mrw_image_free(&img);
    proc_image(1, 400000, &img);
    expect(mrw_image_to_siglip(&img, 384, big, &err), MRW_E_LIMIT, &err, "too elongated", "SigLIP strip");
    mrw_image_free(&img);
    proc_image(50, 20, &img);
    CHECK_OK(mrw_image_proc_out_size(&clip, &img, &w, &h, &err), &err);
    CHECK(w == 336 && h == 336);
    mrw_image_proc sq = {
        .shortest_edge = 30, .resample = MRW_RESAMPLE_BICUBIC, .mean = {0, 0, 0}, .std = {1, 1, 1}};
    CHECK_OK(mrw_image_proc_out_size(&sq, &img, &w, &h, &err), &err);
    CHECK(w == 75 && h == 30); /* int(30 * 50 / 20) */
    free(big);
    mrw_image_free(&img);
}

/* -------------------------------------------------------------------------------------------- audio */

static int load_audio(const char *name, int rate, mrw_audio *a) {
    mrw_error err = {0};
    char path[256];
    snprintf(path, sizeof path, FIX "%s", name);
    mrw_status st = mrw_audio_load(path, rate, NULL, a, &err);
    CHECKF(st == MRW_OK, "%s: %s", name, err.msg);
    return st == MRW_OK;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        m = d > m ? d : m;
    }
    return m;
}

static void test_audio_decode(void) {
    static const struct {
        const char *name;
        int rate, ch;
        int lossy;
    } files[] = {
        {"sine_8k.wav", 8000, 1, 0},        {"chirp_22k_stereo.wav", 22050, 2, 0},
        {"noise_44k_f32.wav", 44100, 1, 0}, {"speech_48k_stereo.flac", 48000, 2, 0},
        {"three_ch_48k.wav", 48000, 3, 0},  {"tone_16k.ogg", 16000, 1, 1},
        {"opus_48k.ogg", 48000, 1, 1},      {"tone_44k.mp3", 44100, 1, 1},
        {"pcm24_96k.aiff", 96000, 1, 0},    {"ulaw_8k.au", 8000, 1, 0},
        {"silence_16k.wav", 16000, 1, 0},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        mrw_audio a;
        if (!load_audio(files[i].name, 16000, &a)) continue;
        char key[96];
        snprintf(key, sizeof key, "audio.%s", files[i].name);
        const mrw_tensor_info *t = G(key);
        CHECKF(a.src_rate == files[i].rate && a.src_channels == files[i].ch && a.sample_rate == 16000,
               "%s: %d Hz x %d (%s)", files[i].name, a.src_rate, a.src_channels, a.src_format);
        size_t want = (size_t)t->shape[0];
        int prefix = files[i].rate == 16000; /* 16 kHz goldens hold the first 2000 samples */
        CHECKF(prefix ? a.n >= want : a.n == want, "%s: %zu samples, golden %zu", files[i].name, a.n, want);
        if (t && a.n >= want) {
            double d = max_abs_diff(a.samples, t->data, want);
            CHECKF(d <= (files[i].lossy ? TOL_LOSSY : TOL_RESAMPLE), "%s: max |diff| %.3g", files[i].name, d);
            fprintf(stderr, "  %-24s %-40s %6zu samples, max |diff| %.3g\n", files[i].name, a.src_format, a.n,
                    d);
        }
        mrw_audio_free(&a);
    }
    /* the resampler alone gives what the loader gives */
    mrw_audio native, at16;
    if (load_audio("chirp_22k_stereo.wav", 0, &native) && load_audio("chirp_22k_stereo.wav", 16000, &at16)) {
        float *r = NULL;
        size_t rn = 0;
        mrw_error err = {0};
        CHECK(native.sample_rate == 22050 && native.n == 5512);
        CHECK_OK(mrw_audio_resample(native.samples, native.n, 22050, 16000, &r, &rn, &err), &err);
        CHECK(rn == at16.n && r && memcmp(r, at16.samples, rn * sizeof(float)) == 0);
        free(r);
    }
    mrw_audio_free(&native);
    mrw_audio_free(&at16);
    mrw_audio s;
    if (load_audio("silence_16k.wav", 16000, &s)) {
        int zero = 1;
        for (size_t i = 0; i < s.n; i++) zero &= s.samples[i] == 0.0f;
        CHECK(zero && s.n == 3200);
        mrw_audio_free(&s);
    }
}

static mrw_status decode_audio_bytes(const uint8_t *p, size_t n, const mrw_audio_limits *lim,
                                     mrw_error *err) {
    mrw_audio a;
    memset(err, 0, sizeof *err);
    mrw_status st = mrw_audio_load_mem(p, n, "test.audio", 16000, lim, &a, err);
    if (st == MRW_OK)
        mrw_audio_free(&a);
    else
        CHECKF(a.samples == NULL && err->msg[0] && strstr(err->msg, "test.audio"),
               "failure without a clean message");
    return st;
}

static void test_audio_errors(void) {
    mrw_error err;
    mrw_audio a;
    expect(mrw_audio_load(FIX "empty.wav", 16000, NULL, &a, &err), MRW_E_FORMAT, &err, "no samples",
           "empty WAV");
    expect(mrw_audio_load(FIX "nan_f32.wav", 16000, NULL, &a, &err), MRW_E_FORMAT, &err,
           "frame 777, channel 0) is NaN", "NaN WAV");
    expect(mrw_audio_load(FIX "nope.wav", 16000, NULL, &a, &err), MRW_E_IO, &err, "nope.wav", "missing file");
    size_t n;
    uint8_t *wav = read_fix("sine_8k.wav", &n);
    if (!wav) return;
    expect(decode_audio_bytes(wav, 0, NULL, &err), MRW_E_FORMAT, &err, "empty", "empty input");
    expect(decode_audio_bytes((const uint8_t *)"this is not audio at all", 24, NULL, &err), MRW_E_UNSUPPORTED,
           &err, "not a WAV", "garbage");
    expect(decode_audio_bytes((const uint8_t *)"\0\0\0\x20"
                                               "ftypM4A \0\0\0\0",
                              16, NULL, &err),
           MRW_E_UNSUPPORTED, &err, "MP4/M4A", "M4A");
    expect(decode_audio_bytes(wav, 20, NULL, &err), MRW_E_FORMAT, &err, "cannot decode", "WAV header cut");
    mrw_audio_limits lim = {.max_bytes = MRW_AUDIO_MAX_BYTES, .max_seconds = 0.1};
    expect(decode_audio_bytes(wav, n, &lim, &err), MRW_E_LIMIT, &err, "0.3 s long; the limit is 0.1 s",
           "duration limit");
    lim = (mrw_audio_limits){.max_bytes = 100, .max_seconds = 3600};
    expect(decode_audio_bytes(wav, n, &lim, &err), MRW_E_LIMIT, &err, "bytes", "size limit");
    /* a WAV whose data is cut short decodes what is there (as soundfile does) */
    CHECK(decode_audio_bytes(wav, n / 2, NULL, &err) == MRW_OK);
    uint8_t *m = malloc(n);
    memcpy(m, wav, n);
    m[24] = m[25] = m[26] = m[27] = 0; /* sample rate 0 */
    mrw_status st = decode_audio_bytes(m, n, NULL, &err);
    CHECKF(st == MRW_E_FORMAT || st == MRW_E_UNSUPPORTED, "rate 0: %s", err.msg);
    memcpy(m, wav, n);
    m[24] = 0x40, m[25] = 0x1F, m[26] = 0x20, m[27] = 0; /* 2105152 Hz */
    expect(decode_audio_bytes(m, n, NULL, &err), MRW_E_UNSUPPORTED, &err, "sample rate", "absurd rate");
    free(m);
    free(wav);
    float *r;
    size_t rn;
    expect(mrw_audio_resample(NULL, 0, 8000, 16000, &r, &rn, &err), MRW_E_ARG, &err, "no samples",
           "resample nothing");
}

/* ------------------------------------------------------------------------------------------ Whisper */

static float *mel_of(const float *pcm, size_t n, int n_mels, int *real) {
    float *out = malloc(sizeof(float) * n_mels * MRW_WHISPER_N_FRAMES);
    mrw_error err = {0};
    CHECK_OK(mrw_whisper_log_mel(pcm, n, n_mels, MRW_WHISPER_N_FRAMES, out, real, &err), &err);
    return out;
}

/* Compares frames [0, keep) (golden [n_mels][keep], optionally every `step`-th frame) and the tail. */
static double mel_compare(const float *mel, int n_mels, const mrw_tensor_info *t, int step) {
    int keep = (int)t->shape[1];
    const float *ref = t->data;
    double m = 0;
    for (int i = 0; i < n_mels; i++)
        for (int f = 0; f < keep; f++) {
            double d = fabs((double)mel[(size_t)i * MRW_WHISPER_N_FRAMES + (size_t)f * step] -
                            ref[(size_t)i * keep + f]);
            m = d > m ? d : m;
        }
    return m;
}

static double tail_compare(const float *mel, int n_mels, int keep, float value) {
    double m = 0;
    for (int i = 0; i < n_mels; i++)
        for (int f = keep; f < MRW_WHISPER_N_FRAMES; f++) {
            double d = fabs((double)mel[(size_t)i * MRW_WHISPER_N_FRAMES + f] - value);
            m = d > m ? d : m;
        }
    return m;
}

static void test_whisper(void) {
    double tol = mrw_whisper_fft_bits() == 64 ? 0.0 : TOL_MEL_FLOAT;
    mrw_audio sp;
    if (!load_audio("speech_16k.wav", 16000, &sp)) return;
    int real;
    float *mel = mel_of(sp.samples, sp.n, 80, &real);
    double d = mel_compare(mel, 80, G("whisper.speech.np"), 1);
    double dt = tail_compare(mel, 80, 160, *(const float *)G("whisper.speech.tail")->data);
    double dtorch = mel_compare(mel, 80, G("whisper.speech.torch"), 1);
    CHECKF(d <= tol && dt <= tol, "speech: max %.3g, tail %.3g (%d-bit FFT)", d, dt, mrw_whisper_fft_bits());
    CHECKF(dtorch <= TOL_MEL_TORCH, "speech vs the torch path: %.3g", dtorch);
    CHECK(real == *(const int32_t *)G("whisper.speech.real")->data && real == 150);
    fprintf(stderr, "  log-mel (%d-bit FFT): speech vs numpy path %.3g (tail %.3g), vs torch path %.3g\n",
            mrw_whisper_fft_bits(), d, dt, dtorch);
    free(mel);

    mel = mel_of(sp.samples, sp.n, 128, NULL);
    d = mel_compare(mel, 128, G("whisper.speech128.np"), 1);
    CHECKF(d <= tol, "speech, 128 mels: %.3g", d);
    free(mel);

    /* 31.5 s: truncated to 30 s, every frame real */
    size_t ln = sp.n * 21;
    float *lng = malloc(sizeof(float) * ln);
    for (size_t i = 0; i < ln; i++) lng[i] = sp.samples[i % sp.n];
    mel = mel_of(lng, ln, 80, &real);
    d = mel_compare(mel, 80, G("whisper.long.np"), 20);
    CHECKF(d <= tol && real == 3000, "long: %.3g, real %d", d, real);
    free(mel);
    free(lng);

    /* threads share the FFT plan: results must not depend on who runs first */
    mrw_audio_free(&sp);

    /* through decoding and resampling */
    static const struct {
        const char *file, *key;
    } via[] = {
        {"sine_8k.wav", "sine_8k"}, {"speech_48k_stereo.flac", "flac"}, {"silence_16k.wav", "silence"}};
    for (int i = 0; i < 3; i++) {
        mrw_audio a;
        if (!load_audio(via[i].file, 16000, &a)) continue;
        char key[64];
        mel = mel_of(a.samples, a.n, 80, &real);
        snprintf(key, sizeof key, "whisper.%s.np", via[i].key);
        d = mel_compare(mel, 80, G(key), 1);
        snprintf(key, sizeof key, "whisper.%s.tail", via[i].key);
        dt = tail_compare(mel, 80, 40, *(const float *)G(key)->data);
        snprintf(key, sizeof key, "whisper.%s.real", via[i].key);
        CHECKF(d <= TOL_MEL_FLOAT && dt <= TOL_MEL_FLOAT, "%s: max %.3g tail %.3g", via[i].file, d, dt);
        CHECK(real == *(const int32_t *)G(key)->data);
        fprintf(stderr, "  log-mel of decoded+resampled %-24s max %.3g\n", via[i].file, d);
        free(mel);
        mrw_audio_free(&a);
    }

    mrw_error err;
    float one = 0.0f, nan = NAN, out[80 * 4];
    expect(mrw_whisper_log_mel(&one, 0, 80, 3000, out, NULL, &err), MRW_E_ARG, &err, "no samples",
           "empty pcm");
    expect(mrw_whisper_log_mel(&nan, 1, 80, 4, out, NULL, &err), MRW_E_ARG, &err, "finite", "NaN pcm");
    expect(mrw_whisper_log_mel(&one, 1, 0, 4, out, NULL, &err), MRW_E_ARG, &err, "mels", "0 mels");
}

typedef struct {
    const float *pcm;
    size_t n;
    float *out;
} mel_job;

static void *mel_thread(void *arg) {
    mel_job *j = arg;
    mrw_error err = {0};
    mrw_whisper_log_mel(j->pcm, j->n, 80, MRW_WHISPER_N_FRAMES, j->out, NULL, &err);
    return NULL;
}

static void test_whisper_threads(void) {
    mrw_audio sp;
    if (!load_audio("speech_16k.wav", 16000, &sp)) return;
    float *ref = mel_of(sp.samples, sp.n, 80, NULL);
    pthread_t th[3];
    mel_job jobs[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (mel_job){sp.samples, sp.n, malloc(sizeof(float) * 80 * MRW_WHISPER_N_FRAMES)};
        pthread_create(&th[i], NULL, mel_thread, &jobs[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK(memcmp(jobs[i].out, ref, sizeof(float) * 80 * MRW_WHISPER_N_FRAMES) == 0);
        free(jobs[i].out);
    }
    free(ref);
    mrw_audio_free(&sp);
}

static void test_wavlm_norm(void) {
    mrw_audio sp;
    if (!load_audio("speech_16k.wav", 16000, &sp)) return;
    float *out = malloc(sizeof(float) * sp.n);
    mrw_error err = {0};
    CHECK_OK(mrw_wav_normalize(sp.samples, sp.n, out, &err), &err);
    double d = max_abs_diff(out, G("wavlm.norm")->data, 4000);
    const double *stats = G("wavlm.norm.stats")->data;
    double s = 0, s2 = 0;
    for (size_t i = 0; i < sp.n; i++) s += out[i], s2 += (double)out[i] * out[i];
    CHECKF(d <= TOL_NORM, "normalisation: max |diff| %.3g", d);
    CHECK_NEAR(s, stats[0], 1e-2);
    CHECK_NEAR(s2 / sp.n, stats[1] / sp.n, 1e-5);
    fprintf(stderr, "  WavLM normalisation: max |diff| %.3g, sum %.4g (ref %.4g)\n", d, s, stats[0]);
    expect(mrw_wav_normalize(out, 0, out, &err), MRW_E_ARG, &err, "no samples", "normalize nothing");
    free(out);
    mrw_audio_free(&sp);
}

/* jfk.wav, read in place from the shared data: decode + log-mel against stored statistics and samples. */
static void test_jfk(void) {
    char path[512];
    t_path(path, sizeof path, mrw_shared_dir(), "data/speech/jfk.wav");
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "  jfk.wav not found at %s: skipped\n", path);
        return;
    }
    fclose(fp);
    mrw_audio a;
    mrw_error err = {0};
    CHECK_OK(mrw_audio_load(path, 16000, NULL, &a, &err), &err);
    if (!a.samples) return;
    CHECK(a.n == (size_t) * (const int64_t *)G("jfk.n")->data);
    CHECK(max_abs_diff(a.samples, G("jfk.audio_head")->data, 64) == 0.0);
    const double *as = G("jfk.audio_stats")->data;
    double s = 0, s2 = 0;
    for (size_t i = 0; i < a.n; i++) s += a.samples[i], s2 += (double)a.samples[i] * a.samples[i];
    CHECK_NEAR(s, as[0], 1e-6 * a.n);
    CHECK_NEAR(s2, as[1], 1e-6 * as[1]);
    int real;
    float *mel = mel_of(a.samples, a.n, 80, &real);
    CHECK(real == *(const int32_t *)G("jfk.real")->data);
    const double *ms = G("jfk.mel_stats")->data;
    double mean = 0, var = 0, mn = 1e9, mx = -1e9;
    size_t total = 80 * (size_t)MRW_WHISPER_N_FRAMES;
    for (size_t i = 0; i < total; i++) {
        mean += mel[i];
        mn = mel[i] < mn ? mel[i] : mn;
        mx = mel[i] > mx ? mel[i] : mx;
    }
    mean /= total;
    for (size_t i = 0; i < total; i++) var += (mel[i] - mean) * (mel[i] - mean);
    CHECK_NEAR(mean, ms[0], 1e-6);
    CHECK_NEAR(sqrt(var / total), ms[1], 1e-6);
    CHECK_NEAR(mn, ms[2], 1e-6);
    CHECK_NEAR(mx, ms[3], 1e-6);
    const int64_t *idx = G("jfk.mel_index")->data;
    const float *vals = G("jfk.mel_values")->data, *tv = G("jfk.mel_torch_values")->data;
    double d = 0, dtorch = 0;
    for (int i = 0; i < 256; i++) {
        d = fmax(d, fabs((double)mel[idx[i]] - vals[i]));
        dtorch = fmax(dtorch, fabs((double)mel[idx[i]] - tv[i]));
    }
    CHECKF(d <= (mrw_whisper_fft_bits() == 64 ? 0.0 : TOL_MEL_FLOAT), "jfk: sampled log-mel off by %.3g", d);
    CHECKF(dtorch <= TOL_MEL_TORCH, "jfk: vs torch path %.3g", dtorch);
    fprintf(stderr, "  jfk.wav: %zu samples, %d real frames, log-mel samples within %.3g (torch path %.3g)\n",
            a.n, real, d, dtorch);
    free(mel);
    mrw_audio_free(&a);
}

int main(void) {
    mrw_error err = {0};
    CHECK_OK(mrw_safetensors_open(FIX "golden.safetensors", &golden, &err), &err);
    if (!golden) TEST_MAIN_END();
    test_decode();
    test_pixel_map();
    test_processors_on_files();
    test_resize();
    test_processors_full_size();
    test_image_errors();
    test_audio_decode();
    test_audio_errors();
    test_whisper();
    test_whisper_threads();
    test_wavlm_norm();
    test_jfk();
    mrw_tfile_close(golden);
    TEST_MAIN_END();
}
