/* Encoder input preprocessing: PIL-exact image resampling, the SigLIP/CLIP processors, Whisper's log-mel and
 * the Wav2Vec2/WavLM waveform normalisation. See preprocess.h for the contracts. */

/* Bit-exactness with PIL and numpy needs every a*b+c rounded twice, as their (non-FMA) builds do: forbid the
 * compiler from fusing them here (GCC ignores the STDC pragma, clang the GCC one). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "models/preprocess.h"

#include <fftw3.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* ------------------------------------------------------------------------------------ PIL resampling */

/* PIL's filters (Resample.c): the kernels and their support radius at scale 1. */
static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double filter_bicubic(double x) {
    const double a = -0.5; /* PIL's choice (Keys' kernel) */
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

#define PIL_PRECISION_BITS (32 - 8 - 2) /* 22 fractional bits: room for 8-bit sums and negative lobes */

/* Bounds that keep hostile shapes (a small PNG can decode to a 1 x 64M strip) from needing gigabytes; the
 * results are the same bits either way. */
#define MAX_COEFF_TABLE (1 << 20)    /* weights precomputed per axis; beyond, computed per use */
#define MAX_INTERMEDIATE (32u << 20) /* bytes of horizontally resampled rows; beyond, streamed per row */
#define MAX_WORK_PIXELS ((int64_t)1 << 27) /* rows read x output width: about a second of work at most */

/* The fixed-point weights of the output positions [out0, out0 + n) of one axis. PIL precomputes them all;
 * here they are precomputed too unless the table would be huge (an extreme downscale of a long side), in
 * which case each position's weights are computed when needed, by the same function. */
typedef struct {
    int in_size, out_size, out0, n, ksize;
    mrw_resample rs;
    double scale, filterscale, support;
    int *lo;    /* first input index of each output position (NULL: computed per use) */
    int *cnt;   /* taps used by each output position */
    int32_t *k; /* n * ksize weights */
} axis_coeffs;

static void coeffs_free(axis_coeffs *c) {
    free(c->lo);
    free(c->cnt);
    free(c->k);
    memset(c, 0, sizeof *c);
}

/* PIL's precompute_coeffs + normalize_coeffs_8bpc for output position xx of the box [0, in_size) resampled
 * to out_size: k receives ksize weights. The expressions keep PIL's order of operations so that the
 * doubles, and hence the rounded weights, are the same bits. `w` is scratch of ksize doubles. */
static void coeffs_one(const axis_coeffs *c, int xx, int32_t *k, int *lo, int *cnt, double *w) {
    double (*filter)(double) = c->rs == MRW_RESAMPLE_BICUBIC ? filter_bicubic : filter_bilinear;
    double center = 0.0 + (xx + 0.5) * c->scale;
    double ww = 0.0, ss = 1.0 / c->filterscale;
    int xmin = (int)(center - c->support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + c->support + 0.5);
    if (xmax > c->in_size) xmax = c->in_size;
    xmax -= xmin;
    if (xmax > c->ksize) xmax = c->ksize; /* cannot happen; keeps the buffer bound obvious */
    if (xmax < 0) xmax = 0;
    for (int x = 0; x < xmax; x++) {
        w[x] = filter((x + xmin - center + 0.5) * ss);
        ww += w[x];
    }
    for (int x = 0; x < c->ksize; x++) {
        double v = x < xmax ? (ww != 0.0 ? w[x] / ww : w[x]) : 0.0;
        k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PIL_PRECISION_BITS))
                     : (int32_t)(0.5 + v * (1 << PIL_PRECISION_BITS));
    }
    *lo = xmin;
    *cnt = xmax;
}

static mrw_status coeffs_make(int in_size, int out_size, int out0, int n, mrw_resample rs, axis_coeffs *c,
                              mrw_error *err) {
    memset(c, 0, sizeof *c);
    c->in_size = in_size;
    c->out_size = out_size;
    c->out0 = out0;
    c->n = n;
    c->rs = rs;
    c->scale = (double)((float)in_size - 0.0f) / out_size; /* PIL: (in1 - in0) as floats */
    c->filterscale = c->scale < 1.0 ? 1.0 : c->scale;      /* widen only when shrinking: the antialiasing */
    c->support = (rs == MRW_RESAMPLE_BICUBIC ? 2.0 : 1.0) * c->filterscale;
    c->ksize = (int)ceil(c->support) * 2 + 1;
    if ((int64_t)n * c->ksize > MAX_COEFF_TABLE) return MRW_OK; /* computed per use */
    c->lo = malloc(sizeof(int) * (size_t)n);
    c->cnt = malloc(sizeof(int) * (size_t)n);
    c->k = malloc(sizeof(int32_t) * (size_t)n * (size_t)c->ksize);
    double *w = malloc(sizeof(double) * (size_t)c->ksize);
    if (!c->lo || !c->cnt || !c->k || !w) {
        free(w);
        coeffs_free(c);
        return mrw_err(err, MRW_E_NOMEM, "out of memory for resampling weights");
    }
    for (int i = 0; i < n; i++)
        coeffs_one(c, out0 + i, c->k + (size_t)i * c->ksize, &c->lo[i], &c->cnt[i], w);
    free(w);
    return MRW_OK;
}

/* The weights of window position i: from the table, or computed into `k` (ksize) with scratch `w`. */
static const int32_t *coeffs_get(const axis_coeffs *c, int i, int *lo, int *cnt, int32_t *k, double *w) {
    if (c->lo) {
        *lo = c->lo[i];
        *cnt = c->cnt[i];
        return c->k + (size_t)i * c->ksize;
    }
    coeffs_one(c, c->out0 + i, k, lo, cnt, w);
    return k;
}

/* Scratch for coeffs_get when the weights are not tabled. */
typedef struct {
    int32_t *k;
    double *w;
} coeff_scratch;

static int scratch_alloc(const axis_coeffs *c, coeff_scratch *s) {
    s->k = c->lo ? NULL : malloc(sizeof(int32_t) * (size_t)c->ksize);
    s->w = c->lo ? NULL : malloc(sizeof(double) * (size_t)c->ksize);
    return c->lo || (s->k && s->w);
}

static void scratch_free(coeff_scratch *s) {
    free(s->k);
    free(s->w);
}

/* PIL's clip8: the sum carries a 0.5 rounding bias already; floor to an integer and clamp. */
static inline uint8_t clip8(int32_t ss) {
    if (ss < 0) return 0;
    ss >>= PIL_PRECISION_BITS;
    return ss > 255 ? 255 : (uint8_t)ss;
}

/* Horizontal pass of one source row (RGB) into c->n output pixels. */
static void hrow(const uint8_t *row, const axis_coeffs *c, coeff_scratch *s, uint8_t *o) {
    for (int i = 0; i < c->n; i++) {
        int lo, cnt;
        const int32_t *k = coeffs_get(c, i, &lo, &cnt, s->k, s->w);
        const uint8_t *p = row + (size_t)lo * 3;
        int32_t s0 = 1 << (PIL_PRECISION_BITS - 1), s1 = s0, s2 = s0;
        for (int x = 0; x < cnt; x++) {
            s0 += p[3 * x + 0] * k[x];
            s1 += p[3 * x + 1] * k[x];
            s2 += p[3 * x + 2] * k[x];
        }
        o[3 * i + 0] = clip8(s0);
        o[3 * i + 1] = clip8(s1);
        o[3 * i + 2] = clip8(s2);
    }
}

/* Horizontal pass over `rows` rows of src (width src_w) starting at row0: dst is rows x c->n RGB. */
static mrw_status pass_h(const uint8_t *src, int src_w, int row0, int rows, const axis_coeffs *c,
                         uint8_t *dst, mrw_error *err) {
    if (!c->lo) { /* untabled weights (an extremely wide source): few rows, one scratch */
        coeff_scratch s;
        mrw_status st = scratch_alloc(c, &s) ? MRW_OK : mrw_err(err, MRW_E_NOMEM, "out of memory resizing");
        for (int y = 0; y < rows && st == MRW_OK; y++)
            hrow(src + (size_t)(row0 + y) * src_w * 3, c, &s, dst + (size_t)y * c->n * 3);
        scratch_free(&s);
        return st;
    }
#pragma omp parallel for if ((int64_t)rows * c->n * c->ksize > (1 << 20)) schedule(static)
    for (int y = 0; y < rows; y++) {
        coeff_scratch none = {0};
        hrow(src + (size_t)(row0 + y) * src_w * 3, c, &none, dst + (size_t)y * c->n * 3);
    }
    return MRW_OK;
}

/* Vertical pass: src holds rows of width w starting at input row `row0`; dst is c->n rows of w. */
static void pass_v(const uint8_t *src, int w, int row0, const axis_coeffs *c, uint8_t *dst) {
#pragma omp parallel for if ((int64_t)w * c->n * c->ksize > (1 << 20)) schedule(static)
    for (int i = 0; i < c->n; i++) {
        const int32_t *k = c->k + (size_t)i * c->ksize;
        const uint8_t *base = src + (size_t)(c->lo[i] - row0) * w * 3;
        uint8_t *o = dst + (size_t)i * w * 3;
        for (int x = 0; x < w * 3; x++) {
            int32_t s = 1 << (PIL_PRECISION_BITS - 1);
            for (int y = 0; y < c->cnt[i]; y++) s += base[(size_t)y * w * 3 + x] * k[y];
            o[x] = clip8(s);
        }
    }
}

/* The window [x0, x0+nx) x [y0, y0+ny) of PIL's resize of src to out_w x out_h, into dst (ny rows of nx
 * RGB). Each output pixel depends only on its own weights, so computing a window gives exactly the pixels
 * of the full resize (which could be far larger than the crop that is wanted). PIL's order is kept:
 * horizontal pass (rounded to 8 bits), then vertical pass. */
static mrw_status resize_window(const mrw_image *src, int out_w, int out_h, mrw_resample rs, int x0, int nx,
                                int y0, int ny, uint8_t *dst, mrw_error *err) {
    int need_h = out_w != src->width, need_v = out_h != src->height;
    if (!need_h && !need_v) {
        for (int y = 0; y < ny; y++)
            memcpy(dst + (size_t)y * nx * 3, src->rgb + ((size_t)(y0 + y) * src->width + x0) * 3,
                   (size_t)nx * 3);
        return MRW_OK;
    }
    axis_coeffs ch = {0}, cv = {0};
    coeff_scratch hs = {0}, vs = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    mrw_status st = MRW_OK;
    if (need_h && (st = coeffs_make(src->width, out_w, x0, nx, rs, &ch, err)) != MRW_OK) goto done;
    if (!need_v) { /* horizontal only: straight into dst */
        st = pass_h(src->rgb, src->width, y0, ny, &ch, dst, err);
        goto done;
    }
    if ((st = coeffs_make(src->height, out_h, y0, ny, rs, &cv, err)) != MRW_OK) goto done;
    if (!scratch_alloc(&cv, &vs)) {
        st = mrw_err(err, MRW_E_NOMEM, "out of memory resizing a %dx%d image", src->width, src->height);
        goto done;
    }
    /* Input rows the vertical pass reads: the taps only move forward with the output position. */
    int lo0, cnt0, lo1, cnt1;
    coeffs_get(&cv, 0, &lo0, &cnt0, vs.k, vs.w);
    coeffs_get(&cv, ny - 1, &lo1, &cnt1, vs.k, vs.w);
    int r0 = lo0, r1 = lo1 + cnt1 > lo0 ? lo1 + cnt1 : lo0;
    if ((int64_t)(r1 - r0) * nx > MAX_WORK_PIXELS) { /* e.g. a 1 x 1000000 strip made 384 wide */
        st = mrw_err(err, MRW_E_LIMIT, "image %dx%d is too elongated to resize to %dx%d", src->width,
                     src->height, out_w, out_h);
        goto done;
    }
    if (cv.lo && (uint64_t)(r1 - r0) * nx * 3 <= MAX_INTERMEDIATE) {
        /* PIL's way: all the needed rows resampled horizontally (or their window columns), then vertically */
        tmp = malloc((size_t)(r1 - r0) * nx * 3 + 1);
        if (!tmp) {
            st = mrw_err(err, MRW_E_NOMEM, "out of memory resizing a %dx%d image", src->width, src->height);
            goto done;
        }
        if (need_h) {
            st = pass_h(src->rgb, src->width, r0, r1 - r0, &ch, tmp, err);
        } else {
            for (int y = r0; y < r1; y++)
                memcpy(tmp + (size_t)(y - r0) * nx * 3, src->rgb + ((size_t)y * src->width + x0) * 3,
                       (size_t)nx * 3);
        }
        if (st == MRW_OK) pass_v(tmp, nx, r0, &cv, dst);
        goto done;
    }
    /* An extremely tall source: stream. Each output row accumulates its input rows, each resampled
     * horizontally when needed; the integer sums are the same, in the same order. */
    tmp = malloc((size_t)nx * 3);
    acc = malloc(sizeof(int32_t) * (size_t)nx * 3);
    if (!tmp || !acc || (need_h && !scratch_alloc(&ch, &hs))) {
        st = mrw_err(err, MRW_E_NOMEM, "out of memory resizing a %dx%d image", src->width, src->height);
        goto done;
    }
    for (int i = 0; i < ny; i++) {
        int lo, cnt;
        const int32_t *k = coeffs_get(&cv, i, &lo, &cnt, vs.k, vs.w);
        for (int x = 0; x < nx * 3; x++) acc[x] = 1 << (PIL_PRECISION_BITS - 1);
        for (int y = 0; y < cnt; y++) {
            const uint8_t *row = src->rgb + (size_t)(lo + y) * src->width * 3;
            if (need_h)
                hrow(row, &ch, &hs, tmp);
            else
                memcpy(tmp, row + (size_t)x0 * 3, (size_t)nx * 3);
            for (int x = 0; x < nx * 3; x++) acc[x] += tmp[x] * k[y];
        }
        for (int x = 0; x < nx * 3; x++) dst[(size_t)i * nx * 3 + x] = clip8(acc[x]);
    }
done:
    free(tmp);
    free(acc);
    scratch_free(&hs);
    scratch_free(&vs);
    coeffs_free(&ch);
    coeffs_free(&cv);
    return st;
}

static mrw_status check_image(const mrw_image *img, mrw_error *err) {
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return mrw_err(err, MRW_E_ARG, "empty image");
    return MRW_OK;
}

/* Sizes are bounded so that the weights, the int arithmetic of PIL's algorithm and the buffers stay in
 * range whatever the caller or the image asks for. */
#define MAX_RESIZE_SIDE (1 << 24)
#define MAX_OUT_PIXELS ((int64_t)1 << 28)

mrw_status mrw_image_resize(const mrw_image *src, int w, int h, mrw_resample rs, mrw_image *dst,
                            mrw_error *err) {
    memset(dst, 0, sizeof *dst);
    mrw_status st = check_image(src, err);
    if (st != MRW_OK) return st;
    if (rs != MRW_RESAMPLE_BILINEAR && rs != MRW_RESAMPLE_BICUBIC)
        return mrw_err(err, MRW_E_ARG, "unsupported resampling filter %d", (int)rs);
    if (w <= 0 || h <= 0 || w > MAX_RESIZE_SIDE || h > MAX_RESIZE_SIDE || (int64_t)w * h > MAX_OUT_PIXELS)
        return mrw_err(err, MRW_E_ARG, "cannot resize to %dx%d", w, h);
    st = mrw_image_alloc(w, h, dst, err);
    if (st != MRW_OK) return st;
    st = resize_window(src, w, h, rs, 0, w, 0, h, dst->rgb, err);
    if (st != MRW_OK) mrw_image_free(dst);
    return st;
}

mrw_image_proc mrw_image_proc_siglip(int size) {
    mrw_image_proc p = {.resize_w = size,
                        .resize_h = size,
                        .resample = MRW_RESAMPLE_BILINEAR,
                        .mean = {0.5f, 0.5f, 0.5f},
                        .std = {0.5f, 0.5f, 0.5f}};
    return p;
}

mrw_image_proc mrw_image_proc_clip(int size) {
    mrw_image_proc p = {.shortest_edge = size,
                        .resample = MRW_RESAMPLE_BICUBIC,
                        .crop_w = size,
                        .crop_h = size,
                        .mean = {0.48145466f, 0.4578275f, 0.40821073f},
                        .std = {0.26862954f, 0.26130258f, 0.27577711f}};
    return p;
}

/* Python floor division, for the crop offset when the crop is larger than the image. */
static int64_t floordiv2(int64_t a) { return a >= 0 ? a / 2 : -((-a + 1) / 2); }

/* transformers' get_resize_output_image_size(size, default_to_square=False): the short side becomes `edge`,
 * the long side int(edge * long / short) (true division, then truncation). */
static void shortest_edge_size(int w, int h, int edge, int64_t *ow, int64_t *oh) {
    int s = w <= h ? w : h, l = w <= h ? h : w;
    int64_t nl = (int64_t)((double)((int64_t)edge * l) / s);
    if (w <= h) {
        *ow = edge;
        *oh = nl;
    } else {
        *ow = nl;
        *oh = edge;
    }
}

/* The resize target (rw x rh) and the output (cw x ch: the crop, or the resize when there is none). */
static mrw_status proc_geometry(const mrw_image *img, const mrw_image_proc *p, int64_t *rw, int64_t *rh,
                                int *cw, int *ch, mrw_error *err) {
    mrw_status st = check_image(img, err);
    if (st != MRW_OK) return st;
    if (!p) return mrw_err(err, MRW_E_ARG, "no image processor given");
    if (p->resample != MRW_RESAMPLE_BILINEAR && p->resample != MRW_RESAMPLE_BICUBIC)
        return mrw_err(err, MRW_E_ARG, "unsupported resampling filter %d", (int)p->resample);
    for (int c = 0; c < 3; c++)
        if (!isfinite(p->mean[c]) || !isfinite(p->std[c]) || p->std[c] == 0.0f)
            return mrw_err(err, MRW_E_ARG, "invalid normalisation mean %g / std %g", (double)p->mean[c],
                           (double)p->std[c]);
    if (p->shortest_edge > 0) {
        shortest_edge_size(img->width, img->height, p->shortest_edge, rw, rh);
    } else {
        *rw = p->resize_w;
        *rh = p->resize_h;
    }
    if (*rw <= 0 || *rh <= 0)
        return mrw_err(err, MRW_E_ARG, "invalid resize target %lldx%lld", (long long)*rw, (long long)*rh);
    if (*rw > MAX_RESIZE_SIDE || *rh > MAX_RESIZE_SIDE)
        return mrw_err(err, MRW_E_LIMIT,
                       "image %dx%d: its aspect ratio is too extreme to resize (it would become %lldx%lld)",
                       img->width, img->height, (long long)*rw, (long long)*rh);
    *cw = p->crop_w > 0 ? p->crop_w : (int)*rw;
    *ch = p->crop_h > 0 ? p->crop_h : (int)*rh;
    if (*cw > MAX_RESIZE_SIDE || *ch > MAX_RESIZE_SIDE || (int64_t)*cw * *ch > MAX_OUT_PIXELS)
        return mrw_err(err, MRW_E_LIMIT, "image %dx%d: the processed image would be %dx%d, too large",
                       img->width, img->height, *cw, *ch);
    return MRW_OK;
}

mrw_status mrw_image_proc_out_size(const mrw_image_proc *p, const mrw_image *img, int *w, int *h,
                                   mrw_error *err) {
    int64_t rw = 0, rh = 0;
    *w = *h = 0;
    return proc_geometry(img, p, &rw, &rh, w, h, err);
}

mrw_status mrw_image_preprocess(const mrw_image *img, const mrw_image_proc *p, float *out, mrw_error *err) {
    int64_t rw = 0, rh = 0;
    int cw = 0, chh = 0;
    mrw_status st = proc_geometry(img, p, &rw, &rh, &cw, &chh, err);
    if (st != MRW_OK) return st;
    if (!out) return mrw_err(err, MRW_E_ARG, "no output buffer");
    /* Crop window in resized coordinates; parts outside the resized image are zero (padding). */
    int64_t left = floordiv2(rw - cw), top = floordiv2(rh - chh);
    int64_t x0 = left < 0 ? 0 : left, y0 = top < 0 ? 0 : top;
    int64_t x1 = left + cw < rw ? left + cw : rw, y1 = top + chh < rh ? top + chh : rh;
    int nx = (int)(x1 - x0), ny = (int)(y1 - y0);
    uint8_t *win = malloc((size_t)nx * ny * 3);
    if (!win)
        return mrw_err(err, MRW_E_NOMEM, "out of memory preprocessing a %dx%d image", img->width,
                       img->height);
    st = resize_window(img, (int)rw, (int)rh, p->resample, (int)x0, nx, (int)y0, ny, win, err);
    if (st != MRW_OK) {
        free(win);
        return st;
    }
    /* numpy: (uint8 as float64 * (1/255)) cast to float32, then (x - mean) / std in float32. */
    const double rescale = 1.0 / 255.0;
    for (int c = 0; c < 3; c++) {
        float lut[256];
        for (int v = 0; v < 256; v++) lut[v] = ((float)(v * rescale) - p->mean[c]) / p->std[c];
        float *o = out + (size_t)c * cw * chh;
        for (int y = 0; y < chh; y++) {
            int64_t sy = top + y;
            for (int x = 0; x < cw; x++) {
                int64_t sx = left + x;
                int inside = sy >= y0 && sy < y1 && sx >= x0 && sx < x1;
                uint8_t v = inside ? win[((size_t)(sy - y0) * nx + (size_t)(sx - x0)) * 3 + c] : 0;
                o[(size_t)y * cw + x] = lut[v];
            }
        }
    }
    free(win);
    return MRW_OK;
}

mrw_status mrw_image_to_siglip(const mrw_image *img, int size, float *out, mrw_error *err) {
    if (size <= 0) return mrw_err(err, MRW_E_ARG, "invalid SigLIP image size %d", size);
    mrw_image_proc p = mrw_image_proc_siglip(size);
    return mrw_image_preprocess(img, &p, out, err);
}

mrw_status mrw_image_to_clip(const mrw_image *img, int size, float *out, mrw_error *err) {
    if (size <= 0) return mrw_err(err, MRW_E_ARG, "invalid CLIP image size %d", size);
    mrw_image_proc p = mrw_image_proc_clip(size);
    return mrw_image_preprocess(img, &p, out, err);
}

/* ---------------------------------------------------------------------------------------- Whisper */

/* The STFT runs in single precision (fftwf) by default, which stays within ~1e-4 of the numpy path (the
 * FFT's rounding, relative to each frame's energy, shows in the weakest mel bands). Built with
 * -DMRW_FFTW_DOUBLE and linked with -lfftw3 it runs in double precision, as numpy does, and the result
 * is then bit-identical to WhisperFeatureExtractor's numpy path. */
#ifdef MRW_FFTW_DOUBLE
typedef double fft_real;
typedef fftw_complex fft_complex;
typedef fftw_plan fft_plan;
#define FFT(name) fftw_##name
#else
typedef float fft_real;
typedef fftwf_complex fft_complex;
typedef fftwf_plan fft_plan;
#define FFT(name) fftwf_##name
#endif

int mrw_whisper_fft_bits(void) { return (int)sizeof(fft_real) * 8; }

/* FFTW's planner is not thread-safe and plans are expensive to make: one plan for the 400-point real FFT,
 * created on first use under a lock and then only executed (the new-array execute functions are
 * thread-safe) on buffers from FFTW's allocator, which have the alignment the plan was made for. */
static pthread_mutex_t g_plan_lock = PTHREAD_MUTEX_INITIALIZER;
static fft_plan g_plan_400;

static fft_plan whisper_plan(void) {
    pthread_mutex_lock(&g_plan_lock);
    if (!g_plan_400) {
        fft_real *in = FFT(malloc)(sizeof(fft_real) * MRW_WHISPER_N_FFT);
        fft_complex *out = FFT(malloc)(sizeof(fft_complex) * (MRW_WHISPER_N_FFT / 2 + 1));
        if (in && out) g_plan_400 = FFT(plan_dft_r2c_1d)(MRW_WHISPER_N_FFT, in, out, FFTW_ESTIMATE);
        FFT(free)(in);
        FFT(free)(out);
    }
    fft_plan p = g_plan_400;
    pthread_mutex_unlock(&g_plan_lock);
    return p;
}

/* transformers' audio_utils, Slaney flavour: linear below 1 kHz, logarithmic above. */
static double hz_to_mel(double f) {
    const double min_log_hz = 1000.0, min_log_mel = 15.0, logstep = 27.0 / log(6.4);
    return f >= min_log_hz ? min_log_mel + log(f / min_log_hz) * logstep : 3.0 * f / 200.0;
}

static double mel_to_hz(double m) {
    const double min_log_hz = 1000.0, min_log_mel = 15.0, logstep = log(6.4) / 27.0;
    return m >= min_log_mel ? min_log_hz * exp(logstep * (m - min_log_mel)) : 200.0 * m / 3.0;
}

/* One triangular filter: nonzero weights for bins [lo, lo + n). */
typedef struct {
    int lo, n;
    double w[MRW_WHISPER_N_FFT / 2 + 1];
} mel_filter;

/* mel_filter_bank(201 bins, n_mels, 0 Hz, 8000 Hz, 16 kHz, norm="slaney", mel_scale="slaney"): triangles
 * between mel-spaced edges evaluated at the FFT bin frequencies, each scaled by 2 / (its width in Hz). */
static void make_mel_filters(int n_mels, mel_filter *f) {
    const int n_bins = MRW_WHISPER_N_FFT / 2 + 1;
    double mel_min = hz_to_mel(0.0), mel_max = hz_to_mel(8000.0);
    double *edges = malloc(sizeof(double) * (size_t)(n_mels + 2));
    double step = (mel_max - mel_min) / (n_mels + 1); /* np.linspace */
    for (int i = 0; i < n_mels + 2; i++) edges[i] = mel_to_hz(i == n_mels + 1 ? mel_max : i * step + mel_min);
    for (int m = 0; m < n_mels; m++) {
        double lo = edges[m], mid = edges[m + 1], hi = edges[m + 2], enorm = 2.0 / (hi - lo);
        f[m].lo = 0;
        f[m].n = 0;
        for (int b = 0; b < n_bins; b++) {
            double hz = b * (8000.0 / (n_bins - 1)); /* np.linspace(0, sr // 2, n_bins): exact steps of 40 */
            double down = (hz - lo) / (mid - lo), up = (hi - hz) / (hi - mid);
            double w = fmax(0.0, fmin(down, up)) * enorm;
            if (w > 0.0) {
                if (f[m].n == 0) f[m].lo = b;
                f[m].n = b - f[m].lo + 1;
            }
            f[m].w[b] = w;
        }
    }
    free(edges);
}

/* The reflect-padded, zero-padded/truncated signal at position i of the centred STFT input (np.pad
 * "reflect" of the 30 s chunk). */
static inline float chunk_at(const float *pcm, size_t n, int64_t len, int64_t i) {
    if (i < 0) i = -i;
    if (i >= len) i = 2 * (len - 1) - i;
    return (uint64_t)i < n ? pcm[i] : 0.0f;
}

mrw_status mrw_whisper_check_pcm(const float *pcm, size_t n, int n_frames, mrw_error *err) {
    if (!pcm || n == 0) return mrw_err(err, MRW_E_ARG, "the audio has no samples");
    const int64_t len = (int64_t)n_frames * MRW_WHISPER_HOP;
    const size_t used = n < (size_t)len ? n : (size_t)len;
    /* Beyond 1e30 the single-precision FFT could overflow; real audio is within a few units. */
    for (size_t i = 0; i < used; i++)
        if (!isfinite(pcm[i]) || fabsf(pcm[i]) > 1e30f)
            return mrw_err(err, MRW_E_ARG, "audio sample %zu is %g; samples must be finite and below 1e30", i,
                           (double)pcm[i]);
    return MRW_OK;
}

mrw_status mrw_whisper_log_mel(const float *pcm, size_t n, int n_mels, int n_frames, float *out,
                               int *real_frames, mrw_error *err) {
    if (real_frames) *real_frames = 0;
    if (!pcm || n == 0) return mrw_err(err, MRW_E_ARG, "the audio has no samples");
    if (!out || n_mels <= 0 || n_mels > 512 || n_frames < 2 || n_frames > (1 << 20))
        return mrw_err(err, MRW_E_ARG, "invalid log-mel shape %d mels x %d frames", n_mels, n_frames);
    mrw_status cs = mrw_whisper_check_pcm(pcm, n, n_frames, err);
    if (cs) return cs;
    const int64_t len = (int64_t)n_frames * MRW_WHISPER_HOP;
    size_t used = n < (size_t)len ? n : (size_t)len;
    fft_plan plan = whisper_plan();
    if (!plan) return mrw_err(err, MRW_E_NOMEM, "cannot create the FFT plan");

    const int nfft = MRW_WHISPER_N_FFT, n_bins = MRW_WHISPER_N_FFT / 2 + 1;
    mel_filter *filters = malloc(sizeof(mel_filter) * (size_t)n_mels);
    fft_real *frame = FFT(malloc)(sizeof(fft_real) * nfft);
    fft_complex *spec = FFT(malloc)(sizeof(fft_complex) * n_bins);
    double *power = malloc(sizeof(double) * n_bins);
    double window[MRW_WHISPER_N_FFT];
    if (!filters || !frame || !spec || !power) {
        free(filters);
        FFT(free)(frame);
        FFT(free)(spec);
        free(power);
        return mrw_err(err, MRW_E_NOMEM, "out of memory for the log-mel spectrogram");
    }
    make_mel_filters(n_mels, filters);
    for (int i = 0; i < nfft; i++) window[i] = 0.5 - 0.5 * cos(2.0 * M_PI * i / nfft); /* periodic Hann */

    float vmax = -INFINITY;
    for (int t = 0; t < n_frames; t++) { /* the STFT has n_frames + 1 frames; the last one is dropped */
        int64_t start = (int64_t)t * MRW_WHISPER_HOP - nfft / 2;
        for (int i = 0; i < nfft; i++) frame[i] = (fft_real)(chunk_at(pcm, used, len, start + i) * window[i]);
        FFT(execute_dft_r2c)(plan, frame, spec);
        for (int b = 0; b < n_bins; b++) { /* numpy's path stores the spectrum as complex64 */
            double re = (float)spec[b][0], im = (float)spec[b][1];
            power[b] = re * re + im * im;
        }
        for (int m = 0; m < n_mels; m++) {
            double s = 0.0;
            for (int b = filters[m].lo; b < filters[m].lo + filters[m].n; b++)
                s += filters[m].w[b] * power[b];
            float v = (float)log10(s > 1e-10 ? s : 1e-10);
            out[(size_t)m * n_frames + t] = v;
            if (v > vmax) vmax = v;
        }
    }
    /* numpy: max(x, float32(max - 8)), then (x + 4) / 4, all in float32. */
    float floor_v = vmax - 8.0f;
    for (size_t i = 0; i < (size_t)n_mels * n_frames; i++) {
        float v = out[i] > floor_v ? out[i] : floor_v;
        out[i] = (v + 4.0f) / 4.0f;
    }
    free(filters);
    FFT(free)(frame);
    FFT(free)(spec);
    free(power);
    if (real_frames) {
        size_t rf = (n + MRW_WHISPER_HOP - 1) / MRW_WHISPER_HOP;
        *real_frames = rf > (size_t)n_frames ? n_frames : (int)rf;
    }
    return MRW_OK;
}

/* ---------------------------------------------------------------------------------------- WavLM */

mrw_status mrw_wav_normalize(const float *in, size_t n, float *out, mrw_error *err) {
    if (!in || !out || n == 0) return mrw_err(err, MRW_E_ARG, "the audio has no samples");
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(in[i])) return mrw_err(err, MRW_E_ARG, "audio sample %zu is not finite", i);
        sum += in[i];
    }
    double mean = sum / (double)n, var = 0.0;
    for (size_t i = 0; i < n; i++) var += ((double)in[i] - mean) * ((double)in[i] - mean);
    var /= (double)n;
    double inv = 1.0 / sqrt(var + 1e-7);
    for (size_t i = 0; i < n; i++) out[i] = (float)(((double)in[i] - mean) * inv);
    return MRW_OK;
}
