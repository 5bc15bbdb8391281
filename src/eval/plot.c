/* Line charts (PNG through our own rasteriser + stb_image_write, or SVG) and the trainer's JSONL log. */
#define _GNU_SOURCE
#include "eval/plot.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stb/stb_image_write.h>

#include "base/error.h"
#include "base/mapfile.h"

/* --------------------------------------------------------------------------------------------- the font */

/* A 5x9 bitmap font for ASCII 32..126, drawn for this project: 9 rows of 5 bits per glyph, the first row in
 * the highest bits, the leftmost pixel in the highest bit of a row; rows 7-8 hold descenders. */
static const uint64_t k_font[95] = {
    0x000000000000ull, 0x042108401000ull, 0x0a5000000000ull, 0x0a57d5f52800ull, 0x047d1c5f1000ull, 0x18c888898c00ull,
    0x0c9511593400ull, 0x042000000000ull, 0x022210820800ull, 0x082084222000ull, 0x00255d520000ull, 0x00213e420000ull,
    0x000000063088ull, 0x00003e000000ull, 0x000000063000ull, 0x000888880000ull, 0x0e8ceb98b800ull, 0x046108423800ull,
    0x0e8844447c00ull, 0x1f110418b800ull, 0x0232a5f10800ull, 0x1f878218b800ull, 0x06443d18b800ull, 0x1f0888842000ull,
    0x0e8c5d18b800ull, 0x0e8c5e113000ull, 0x006300c60000ull, 0x006300c61100ull, 0x022220820800ull, 0x0007c1f00000ull,
    0x082082222000ull, 0x0e8844401000ull, 0x0e885b5ab800ull, 0x0e8c7f18c400ull, 0x1e8c7d18f800ull, 0x0e8c2108b800ull,
    0x1c9463197000ull, 0x1f843d087c00ull, 0x1f843d084000ull, 0x0e8c2f18bc00ull, 0x118c7f18c400ull, 0x0e2108423800ull,
    0x071084293000ull, 0x119531494400ull, 0x108421087c00ull, 0x11dd6b18c400ull, 0x118e6b38c400ull, 0x0e8c6318b800ull,
    0x1e8c7d084000ull, 0x0e8c63593400ull, 0x1e8c7d494400ull, 0x0f841c10f800ull, 0x1f2108421000ull, 0x118c6318b800ull,
    0x118c63151000ull, 0x118c6b5aa800ull, 0x118a88a8c400ull, 0x118a88421000ull, 0x1f0888887c00ull, 0x0e4210843800ull,
    0x008208208000ull, 0x0e1084213800ull, 0x045440000000ull, 0x000000007c00ull, 0x082000000000ull, 0x000382f8bc00ull,
    0x1085b318f800ull, 0x0003a108b800ull, 0x010b6718bc00ull, 0x0003a3f83800ull, 0x064a38842000ull, 0x0003e317862eull,
    0x1085b318c400ull, 0x040308423800ull, 0x020184210a4cull, 0x1084a98a4800ull, 0x0c2108423800ull, 0x0006ab58c400ull,
    0x0005b318c400ull, 0x0003a318b800ull, 0x0007a31f4210ull, 0x0003e3178421ull, 0x0005b3084000ull, 0x0003e0e0f800ull,
    0x084710849800ull, 0x00046319b400ull, 0x000463151000ull, 0x0004635aa800ull, 0x000454454400ull, 0x00046317862eull,
    0x0007c4447c00ull, 0x022110420800ull, 0x042108421000ull, 0x082104422000ull, 0x00022a200000ull,
};
#define GLYPH_W 5
#define GLYPH_H 9
#define GLYPH_ADV 6
#define GLYPH_CAP 7 /* rows above the baseline */

static int glyph_bit(unsigned char ch, int row, int col) {
    if (ch < 32 || ch > 126) ch = '?';
    uint64_t g = k_font[ch - 32];
    return (int)((g >> (5 * (8 - row) + (4 - col))) & 1);
}

/* ------------------------------------------------------------------------------------------- the canvas */

/* What the chart layout draws with; implemented by the rasteriser and the SVG writer. Coordinates in pixels,
 * y down. Text is anchored at its baseline: anchor 0 left, 1 centre, 2 right; `vertical` rotates it by -90
 * degrees around (x, y). */
typedef struct canvas canvas;
struct canvas {
    void (*line)(canvas *c, double x0, double y0, double x1, double y1, uint32_t rgb, double w);
    void (*polyline)(canvas *c, const double *xy, int64_t n, uint32_t rgb, double w);
    void (*marker)(canvas *c, double x, double y, uint32_t rgb, double size);
    void (*rect)(canvas *c, double x, double y, double w, double h, uint32_t fill, uint32_t stroke);
    void (*text)(canvas *c, double x, double y, const char *s, int anchor, int vertical, uint32_t rgb);
    double font_px; /* height of a capital in pixels */
    double char_w;  /* advance of one character */
    int failed;     /* out of memory */
};

/* --- raster */

typedef struct {
    canvas c;
    uint8_t *px;
    int w, h, scale;
} raster;

static void blend(raster *r, int x, int y, uint32_t rgb, double a) {
    if (x < 0 || y < 0 || x >= r->w || y >= r->h || a <= 0) return;
    if (a > 1) a = 1;
    uint8_t *p = r->px + ((size_t)y * r->w + x) * 3;
    const int col[3] = {(int)(rgb >> 16 & 255), (int)(rgb >> 8 & 255), (int)(rgb & 255)};
    for (int k = 0; k < 3; k++) p[k] = (uint8_t)lrint(p[k] + (col[k] - p[k]) * a);
}

static void r_line(canvas *c, double x0, double y0, double x1, double y1, uint32_t rgb, double w) {
    raster *r = (raster *)c;
    const double hw = w * 0.5;
    int xa = (int)floor(fmin(x0, x1) - hw - 1), xb = (int)ceil(fmax(x0, x1) + hw + 1);
    int ya = (int)floor(fmin(y0, y1) - hw - 1), yb = (int)ceil(fmax(y0, y1) + hw + 1);
    if (xa < 0) xa = 0;
    if (ya < 0) ya = 0;
    if (xb > r->w - 1) xb = r->w - 1;
    if (yb > r->h - 1) yb = r->h - 1;
    const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
    for (int y = ya; y <= yb; y++)
        for (int x = xa; x <= xb; x++) {
            double px = x + 0.5, py = y + 0.5, t = len2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / len2 : 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            double ex = px - (x0 + t * dx), ey = py - (y0 + t * dy), d = sqrt(ex * ex + ey * ey);
            double cov = hw + 0.5 - d;
            if (cov > 0) blend(r, x, y, rgb, cov);
        }
}

static void r_polyline(canvas *c, const double *xy, int64_t n, uint32_t rgb, double w) {
    raster *r = (raster *)c;
    if (n == 1) r_line(c, xy[0], xy[1], xy[0], xy[1], rgb, w);
    /* Draw into a coverage mask first so that joints are not blended twice. */
    float *mask = calloc((size_t)r->w * r->h, sizeof *mask);
    if (!mask) {
        c->failed = 1;
        return;
    }
    const double hw = w * 0.5;
    for (int64_t i = 0; i + 1 < n; i++) {
        double x0 = xy[2 * i], y0 = xy[2 * i + 1], x1 = xy[2 * i + 2], y1 = xy[2 * i + 3];
        int xa = (int)floor(fmin(x0, x1) - hw - 1), xb = (int)ceil(fmax(x0, x1) + hw + 1);
        int ya = (int)floor(fmin(y0, y1) - hw - 1), yb = (int)ceil(fmax(y0, y1) + hw + 1);
        if (xa < 0) xa = 0;
        if (ya < 0) ya = 0;
        if (xb > r->w - 1) xb = r->w - 1;
        if (yb > r->h - 1) yb = r->h - 1;
        const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
        for (int y = ya; y <= yb; y++)
            for (int x = xa; x <= xb; x++) {
                double px = x + 0.5, py = y + 0.5, t = len2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / len2 : 0;
                t = t < 0 ? 0 : t > 1 ? 1 : t;
                double ex = px - (x0 + t * dx), ey = py - (y0 + t * dy);
                float cov = (float)(hw + 0.5 - sqrt(ex * ex + ey * ey));
                float *m = &mask[(size_t)y * r->w + x];
                if (cov > *m) *m = cov > 1 ? 1 : cov;
            }
    }
    for (int y = 0; y < r->h; y++)
        for (int x = 0; x < r->w; x++)
            if (mask[(size_t)y * r->w + x] > 0) blend(r, x, y, rgb, mask[(size_t)y * r->w + x]);
    free(mask);
}

static void r_marker(canvas *c, double x, double y, uint32_t rgb, double size) {
    raster *r = (raster *)c;
    const double rad = size * 0.5;
    for (int py = (int)floor(y - rad - 1); py <= (int)ceil(y + rad + 1); py++)
        for (int px = (int)floor(x - rad - 1); px <= (int)ceil(x + rad + 1); px++) {
            double d = hypot(px + 0.5 - x, py + 0.5 - y);
            blend(r, px, py, rgb, rad + 0.5 - d);
        }
}

static void r_rect(canvas *c, double x, double y, double w, double h, uint32_t fill, uint32_t stroke) {
    raster *r = (raster *)c;
    if (fill != 0xFFFFFFFFu)
        for (int py = (int)lrint(y); py < (int)lrint(y + h); py++)
            for (int px = (int)lrint(x); px < (int)lrint(x + w); px++) blend(r, px, py, fill, 1);
    if (stroke != 0xFFFFFFFFu) {
        int x0 = (int)lrint(x), y0 = (int)lrint(y), x1 = (int)lrint(x + w) - 1, y1 = (int)lrint(y + h) - 1;
        for (int px = x0; px <= x1; px++) blend(r, px, y0, stroke, 1), blend(r, px, y1, stroke, 1);
        for (int py = y0; py <= y1; py++) blend(r, x0, py, stroke, 1), blend(r, x1, py, stroke, 1);
    }
}

static void r_text(canvas *c, double x, double y, const char *s, int anchor, int vertical, uint32_t rgb) {
    raster *r = (raster *)c;
    const int sc = r->scale, n = (int)strlen(s), tw = n * GLYPH_ADV * sc;
    double off = anchor == 1 ? tw / 2.0 : anchor == 2 ? tw : 0;
    for (int i = 0; i < n; i++)
        for (int row = 0; row < GLYPH_H; row++)
            for (int col = 0; col < GLYPH_W; col++) {
                if (!glyph_bit((unsigned char)s[i], row, col)) continue;
                /* u along the text, v down from the cap line */
                double u = -off + (i * GLYPH_ADV + col) * sc, v = (row - GLYPH_CAP) * sc;
                for (int a = 0; a < sc; a++)
                    for (int b = 0; b < sc; b++) {
                        int px, py;
                        if (!vertical) px = (int)lrint(x + u) + a, py = (int)lrint(y + v) + b;
                        else px = (int)lrint(x + v) + b, py = (int)lrint(y - u) - a - 1;
                        blend(r, px, py, rgb, 1);
                    }
            }
}

/* --- SVG */

typedef struct {
    canvas c;
    char *buf;
    size_t len, cap;
} svg;

static void sv_printf(svg *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sv_printf(svg *s, const char *fmt, ...) {
    if (s->c.failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
        va_end(ap);
        if (k < 0) {
            s->c.failed = 1;
            return;
        }
        if ((size_t)k < s->cap - s->len) {
            s->len += (size_t)k;
            return;
        }
        size_t cap = (s->cap + (size_t)k + 1) * 2;
        char *b = realloc(s->buf, cap);
        if (!b) {
            s->c.failed = 1;
            return;
        }
        s->buf = b;
        s->cap = cap;
    }
}

static void sv_line(canvas *c, double x0, double y0, double x1, double y1, uint32_t rgb, double w) {
    sv_printf((svg *)c, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#%06x\" stroke-width=\"%.2f\"/>\n",
              x0, y0, x1, y1, rgb, w);
}

static void sv_polyline(canvas *c, const double *xy, int64_t n, uint32_t rgb, double w) {
    svg *s = (svg *)c;
    sv_printf(s, "<polyline fill=\"none\" stroke=\"#%06x\" stroke-width=\"%.2f\" stroke-linejoin=\"round\" points=\"", rgb, w);
    for (int64_t i = 0; i < n; i++) sv_printf(s, i ? " %.2f,%.2f" : "%.2f,%.2f", xy[2 * i], xy[2 * i + 1]);
    sv_printf(s, "\"/>\n");
}

static void sv_marker(canvas *c, double x, double y, uint32_t rgb, double size) {
    sv_printf((svg *)c, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\" fill=\"#%06x\"/>\n", x, y, size / 2, rgb);
}

static void sv_rect(canvas *c, double x, double y, double w, double h, uint32_t fill, uint32_t stroke) {
    svg *s = (svg *)c;
    sv_printf(s, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"", x, y, w, h);
    if (fill != 0xFFFFFFFFu) sv_printf(s, " fill=\"#%06x\"", fill);
    else sv_printf(s, " fill=\"none\"");
    if (stroke != 0xFFFFFFFFu) sv_printf(s, " stroke=\"#%06x\" stroke-width=\"1\"", stroke);
    sv_printf(s, "/>\n");
}

/* Length of the valid UTF-8 sequence starting at p (a non-ASCII lead byte), 0 if invalid. */
static int utf8_len(const unsigned char *p) {
    int k = p[0] >= 0xC2 && p[0] <= 0xDF ? 2 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3 : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : 0;
    for (int i = 1; i < k; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if (k == 3 && ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0))) return 0;
    if (k == 4 && ((p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] >= 0x90))) return 0;
    return k;
}

static void sv_text(canvas *c, double x, double y, const char *t, int anchor, int vertical, uint32_t rgb) {
    svg *s = (svg *)c;
    static const char *const anchors[] = {"start", "middle", "end"};
    sv_printf(s, "<text x=\"%.2f\" y=\"%.2f\" fill=\"#%06x\" text-anchor=\"%s\"", x, y, rgb, anchors[anchor]);
    if (vertical) sv_printf(s, " transform=\"rotate(-90 %.2f %.2f)\"", x, y);
    sv_printf(s, ">");
    for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
        if (*p == '<') sv_printf(s, "&lt;");
        else if (*p == '>') sv_printf(s, "&gt;");
        else if (*p == '&') sv_printf(s, "&amp;");
        else if (*p == '"') sv_printf(s, "&quot;");
        else if (*p < 32 || *p == 127) sv_printf(s, "?");
        else if (*p < 128) sv_printf(s, "%c", *p);
        else { /* copy a valid UTF-8 sequence, '?' for a byte that does not start one */
            int k = utf8_len(p);
            if (k) sv_printf(s, "%.*s", k, (const char *)p), p += k - 1;
            else sv_printf(s, "?");
        }
    }
    sv_printf(s, "</text>\n");
}

/* ------------------------------------------------------------------------------------------ the layout */

/* A "nice" tick step (1, 2 or 5 x 10^k) giving about `target` intervals over `range`. */
static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static void fmt_tick(char *out, size_t cap, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    snprintf(out, cap, "%.4g", v);
}

typedef struct {
    double lo, hi;
} range;

static range data_range(const mrw_plot_panel *p, int axis) {
    range r = {INFINITY, -INFINITY};
    for (int s = 0; s < p->n_series; s++) {
        const double *v = axis ? p->series[s].y : p->series[s].x;
        const double *o = axis ? p->series[s].x : p->series[s].y;
        for (int64_t i = 0; i < p->series[s].n; i++)
            if (isfinite(v[i]) && isfinite(o[i])) {
                if (v[i] < r.lo) r.lo = v[i];
                if (v[i] > r.hi) r.hi = v[i];
            }
    }
    if (!(r.lo <= r.hi)) return (range){0, 1};
    if (r.hi - r.lo <= fabs(r.hi) * 1e-12) {
        double d = fabs(r.lo) > 0 ? fabs(r.lo) * 0.1 : 1;
        r.lo -= d;
        r.hi += d;
    }
    return r;
}

static void draw_panel(canvas *c, const mrw_plot_panel *p, double X, double Y, double W, double H) {
    const double fp = c->font_px, cw = c->char_w;
    const double left = X + cw * 10 + fp * 2.5, right = X + W - fp * 1.5, top = Y + fp * 2.5, bottom = Y + H - fp * 4.2;
    if (right - left < 10 || bottom - top < 10) return;
    const uint32_t ink = 0x222222, grid = 0xe3e3e3;
    range xr = data_range(p, 0), yr = data_range(p, 1);
    double pad = (yr.hi - yr.lo) * 0.05;
    yr.lo -= pad;
    yr.hi += pad;
    const double sx = (right - left) / (xr.hi - xr.lo), sy = (bottom - top) / (yr.hi - yr.lo);
#define MAPX(v) (left + ((v)-xr.lo) * sx)
#define MAPY(v) (bottom - ((v)-yr.lo) * sy)
    c->rect(c, left, top, right - left, bottom - top, 0xffffff, 0xFFFFFFFFu);
    char lab[64];
    /* grid and ticks */
    double xs = nice_step(xr.hi - xr.lo, (int)fmax(2, (right - left) / (cw * 12))), ys = nice_step(yr.hi - yr.lo, (int)fmax(2, fmin(6, (bottom - top) / (fp * 3.5))));
    for (double v = ceil(xr.lo / xs) * xs; v <= xr.hi + xs * 1e-9; v += xs) {
        double x = MAPX(v);
        c->line(c, x, top, x, bottom, grid, 1);
        c->line(c, x, bottom, x, bottom + fp * 0.4, ink, 1);
        fmt_tick(lab, sizeof lab, v, xs);
        c->text(c, x, bottom + fp * 1.8, lab, 1, 0, ink);
    }
    for (double v = ceil(yr.lo / ys) * ys; v <= yr.hi + ys * 1e-9; v += ys) {
        double y = MAPY(v);
        c->line(c, left, y, right, y, grid, 1);
        c->line(c, left - fp * 0.4, y, left, y, ink, 1);
        fmt_tick(lab, sizeof lab, v, ys);
        c->text(c, left - fp * 0.8, y + fp * 0.5, lab, 2, 0, ink);
    }
    c->rect(c, left, top, right - left, bottom - top, 0xFFFFFFFFu, ink);
    /* series */
    for (int s = 0; s < p->n_series && !c->failed; s++) {
        const mrw_plot_series *ser = &p->series[s];
        if (ser->style == MRW_PLOT_MARKERS) {
            double size = ser->width > 0 ? ser->width : 5;
            for (int64_t i = 0; i < ser->n; i++)
                if (isfinite(ser->x[i]) && isfinite(ser->y[i])) c->marker(c, MAPX(ser->x[i]), MAPY(ser->y[i]), ser->rgb, size);
            continue;
        }
        double *xy = malloc((size_t)(ser->n > 0 ? ser->n : 1) * 2 * sizeof *xy);
        if (!xy) {
            c->failed = 1;
            break;
        }
        int64_t k = 0;
        for (int64_t i = 0; i <= ser->n; i++) {
            int ok = i < ser->n && isfinite(ser->x[i]) && isfinite(ser->y[i]);
            if (ok) {
                xy[2 * k] = MAPX(ser->x[i]);
                xy[2 * k + 1] = MAPY(ser->y[i]);
                k++;
            } else if (k) {
                c->polyline(c, xy, k, ser->rgb, ser->width > 0 ? ser->width : 1.5);
                k = 0;
            }
        }
        free(xy);
    }
    /* labels, title, legend */
    if (p->title) c->text(c, (left + right) / 2, Y + fp * 1.6, p->title, 1, 0, ink);
    if (p->xlabel) c->text(c, (left + right) / 2, Y + H - fp * 0.6, p->xlabel, 1, 0, ink);
    if (p->ylabel) c->text(c, X + fp * 1.6, (top + bottom) / 2, p->ylabel, 1, 1, ink);
    int n_leg = 0;
    size_t wmax = 0;
    for (int s = 0; s < p->n_series; s++)
        if (p->series[s].label) n_leg++, wmax = strlen(p->series[s].label) > wmax ? strlen(p->series[s].label) : wmax;
    if (n_leg) {
        const double lh = fp * 1.8, bw = cw * (double)wmax + fp * 4, bh = lh * n_leg + fp * 0.6;
        double bx = right - bw - fp * 0.6, by = top + fp * 0.6;
        c->rect(c, bx, by, bw, bh, 0xffffff, 0xbbbbbb);
        int k = 0;
        for (int s = 0; s < p->n_series; s++) {
            const mrw_plot_series *ser = &p->series[s];
            if (!ser->label) continue;
            double ly = by + fp * 0.3 + lh * (k + 0.5);
            if (ser->style == MRW_PLOT_MARKERS) c->marker(c, bx + fp * 1.5, ly, ser->rgb, ser->width > 0 ? ser->width : 5);
            else c->line(c, bx + fp * 0.5, ly, bx + fp * 2.5, ly, ser->rgb, ser->width > 0 ? ser->width : 1.5);
            c->text(c, bx + fp * 3.2, ly + fp * 0.5, ser->label, 0, 0, ink);
            k++;
        }
    }
#undef MAPX
#undef MAPY
}

static void draw_chart(canvas *c, const mrw_plot_panel *panels, int n, int width, int height) {
    c->rect(c, 0, 0, width, height, 0xffffff, 0xFFFFFFFFu);
    double total = 0;
    for (int i = 0; i < n; i++) total += panels[i].weight > 0 ? panels[i].weight : 1;
    double y = 0;
    for (int i = 0; i < n && !c->failed; i++) {
        double h = height * (panels[i].weight > 0 ? panels[i].weight : 1) / total;
        draw_panel(c, &panels[i], 0, y, width, h);
        y += h;
    }
}

static mrw_status check_args(const mrw_plot_panel *panels, int n, int width, int height, mrw_error *err) {
    if (!panels || n < 1) return mrw_err(err, MRW_E_ARG, "plot: no panels");
    if (width < 64 || height < 64 || width > MRW_PLOT_MAX_SIDE || height > MRW_PLOT_MAX_SIDE)
        return mrw_err(err, MRW_E_ARG, "plot: size %dx%d outside 64..%d", width, height, MRW_PLOT_MAX_SIDE);
    return MRW_OK;
}

mrw_status mrw_plot_render_rgb(const mrw_plot_panel *panels, int n_panels, int width, int height, uint8_t **rgb,
                               mrw_error *err) {
    *rgb = NULL;
    mrw_status st = check_args(panels, n_panels, width, height, err);
    if (st) return st;
    raster r = {.c = {r_line, r_polyline, r_marker, r_rect, r_text, 0, 0, 0}, .w = width, .h = height};
    r.scale = (int)lrint(fmin(width, height) / 300.0);
    if (r.scale < 1) r.scale = 1;
    r.c.font_px = GLYPH_CAP * r.scale;
    r.c.char_w = GLYPH_ADV * r.scale;
    r.px = malloc((size_t)width * height * 3);
    if (!r.px) return mrw_err(err, MRW_E_NOMEM, "plot: out of memory for a %dx%d image", width, height);
    memset(r.px, 255, (size_t)width * height * 3);
    draw_chart(&r.c, panels, n_panels, width, height);
    if (r.c.failed) {
        free(r.px);
        return mrw_err(err, MRW_E_NOMEM, "plot: out of memory");
    }
    *rgb = r.px;
    return MRW_OK;
}

static void png_sink(void *ctx, void *data, int size) { mrw_afile_write(ctx, data, (size_t)size); }

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcasecmp(s + n - k, suf);
}

mrw_status mrw_plot_write(const char *path, const mrw_plot_panel *panels, int n_panels, int width, int height,
                          mrw_error *err) {
    mrw_status st = check_args(panels, n_panels, width, height, err);
    if (st) return st;
    const int is_png = ends_with(path, ".png"), is_svg = ends_with(path, ".svg");
    if (!is_png && !is_svg) return mrw_err(err, MRW_E_ARG, "%s: the output must end in .png or .svg", path);
    if (is_png) {
        uint8_t *rgb;
        if ((st = mrw_plot_render_rgb(panels, n_panels, width, height, &rgb, err))) return st;
        mrw_afile f;
        if ((st = mrw_afile_open(&f, path, err))) {
            free(rgb);
            return mrw_err_prefix(err, "%s", path);
        }
        int ok = stbi_write_png_to_func(png_sink, &f, width, height, 3, rgb, width * 3);
        free(rgb);
        if (!ok) {
            mrw_afile_abort(&f);
            return mrw_err(err, MRW_E_INTERNAL, "%s: PNG encoding failed", path);
        }
        return mrw_afile_commit(&f, err);
    }
    svg s = {.c = {sv_line, sv_polyline, sv_marker, sv_rect, sv_text, 13, 7.8, 0}};
    sv_printf(&s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
                  "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans Mono, monospace\" font-size=\"13\">\n",
              width, height, width, height);
    draw_chart(&s.c, panels, n_panels, width, height);
    sv_printf(&s, "</svg>\n");
    if (s.c.failed) {
        free(s.buf);
        return mrw_err(err, MRW_E_NOMEM, "plot: out of memory");
    }
    mrw_afile f;
    if ((st = mrw_afile_open(&f, path, err))) {
        free(s.buf);
        return mrw_err_prefix(err, "%s", path);
    }
    mrw_afile_write(&f, s.buf, s.len);
    free(s.buf);
    return mrw_afile_commit(&f, err);
}

/* ---------------------------------------------------------------------------------------- training log */

void mrw_moving_average(const double *in, int64_t n, int window, double *out) {
    if (window < 1) window = 1;
    double sum = 0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isfinite(in[i])) sum += in[i], cnt++;
        if (i >= window && isfinite(in[i - window])) sum -= in[i - window], cnt--;
        out[i] = cnt ? sum / (double)cnt : NAN;
    }
}

typedef struct {
    double *v;
    int64_t n, cap;
} dvec;

static int dvec_push(dvec *d, double x) {
    if (d->n == d->cap) {
        int64_t cap = d->cap ? d->cap * 2 : 256;
        double *v = realloc(d->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        d->v = v;
        d->cap = cap;
    }
    d->v[d->n++] = x;
    return 0;
}

/* A finite number field: 1 found, 0 absent, -1 present but not a finite number. */
static int json_num(const cJSON *o, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return -1;
    *out = v->valuedouble;
    return 1;
}

static void log_warn(void (*warn)(void *, const char *), void *user, const char *path, int64_t line, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));
static void log_warn(void (*warn)(void *, const char *), void *user, const char *path, int64_t line, const char *fmt,
                     ...) {
    if (!warn) return;
    char msg[640];
    int k = snprintf(msg, sizeof msg, "%s:%lld: ", path, (long long)line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + k, sizeof msg - (size_t)k, fmt, ap);
    va_end(ap);
    warn(user, msg);
}

void mrw_train_log_free(mrw_train_log *log) {
    free(log->step);
    free(log->loss);
    free(log->lr);
    free(log->eval_step);
    free(log->eval_loss);
    memset(log, 0, sizeof *log);
}

mrw_status mrw_train_log_read(const char *path, mrw_train_log *out, void (*warn)(void *user, const char *msg),
                              void *user, mrw_error *err) {
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp) return mrw_err(err, MRW_E_IO, "%s: cannot open: %s", path, strerror(errno));
    const size_t cap = MRW_TRAIN_LOG_MAX_LINE + 2;
    char *buf = malloc(cap);
    dvec step = {0}, loss = {0}, lr = {0}, estep = {0}, eloss = {0};
    mrw_status st = MRW_OK;
    int64_t line = 0;
    if (!buf) {
        fclose(fp);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    while (fgets(buf, (int)cap, fp)) {
        line++;
        size_t n = strlen(buf);
        if (n && buf[n - 1] != '\n' && !feof(fp)) { /* longer than the limit: skip the rest of the line */
            int ch;
            while ((ch = fgetc(fp)) != EOF && ch != '\n') {}
            log_warn(warn, user, path, line, "line longer than %d bytes, skipped", MRW_TRAIN_LOG_MAX_LINE);
            out->n_bad++;
            continue;
        }
        size_t a = 0;
        while (a < n && isspace((unsigned char)buf[a])) a++;
        if (a == n) continue; /* blank */
        cJSON *o = cJSON_ParseWithLength(buf, n);
        const char *why = NULL;
        double s = 0, l = 0, r = NAN, e = 0;
        int has_e = 0;
        if (!o) why = "not valid JSON";
        else if (!cJSON_IsObject(o)) why = "not a JSON object";
        else {
            int hs = json_num(o, "step", &s);
            has_e = json_num(o, "eval_loss", &e);
            int hl = has_e ? 0 : json_num(o, "loss", &l);
            int hr = json_num(o, "lr", &r);
            if (hs == 0) why = "no \"step\"";
            else if (hs < 0) why = "\"step\" is not a finite number";
            else if (has_e < 0) why = "\"eval_loss\" is not a finite number";
            else if (!has_e && hl == 0) why = "neither \"loss\" nor \"eval_loss\"";
            else if (!has_e && hl < 0) why = "\"loss\" is not a finite number";
            else if (hr < 0) why = "\"lr\" is not a finite number";
        }
        cJSON_Delete(o);
        if (why) {
            log_warn(warn, user, path, line, "%s, skipped", why);
            out->n_bad++;
            continue;
        }
        int bad = has_e ? dvec_push(&estep, s) || dvec_push(&eloss, e)
                        : dvec_push(&step, s) || dvec_push(&loss, l) || dvec_push(&lr, r);
        if (bad) {
            st = mrw_err(err, MRW_E_NOMEM, "%s: out of memory after %lld lines", path, (long long)line);
            break;
        }
    }
    if (!st && ferror(fp)) st = mrw_err(err, MRW_E_IO, "%s: read error: %s", path, strerror(errno));
    fclose(fp);
    free(buf);
    if (!st && step.n == 0 && estep.n == 0)
        st = mrw_err(err, MRW_E_FORMAT, "%s: no training steps in the log (%lld lines, %lld malformed)", path,
                     (long long)line, (long long)out->n_bad);
    if (st) {
        free(step.v), free(loss.v), free(lr.v), free(estep.v), free(eloss.v);
        int64_t bad = out->n_bad;
        memset(out, 0, sizeof *out);
        out->n_bad = bad;
        return st;
    }
    out->n = step.n;
    out->step = step.v, out->loss = loss.v, out->lr = lr.v;
    out->n_eval = estep.n;
    out->eval_step = estep.v, out->eval_loss = eloss.v;
    return MRW_OK;
}
