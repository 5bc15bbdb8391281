/* Generated VQA scenes: layout, rasteriser, questions and the dataset writer (see scenes.h). */
#include "gen/scenes.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stb/stb_image_write.h>

#include "base/error.h"
#include "base/mapfile.h"

const char *const mrw_scene_shape_names[MRW_SCENE_N_SHAPES] = {"circle", "square", "triangle", "star", "diamond", "cross"};
static const char *const k_shape_plural[MRW_SCENE_N_SHAPES] = {"circles", "squares", "triangles", "stars", "diamonds", "crosses"};
const char *const mrw_scene_colour_names[MRW_SCENE_N_COLOURS] = {"red", "green", "blue", "yellow",
                                                                 "purple", "orange", "white", "black"};
const uint8_t mrw_scene_palette[MRW_SCENE_N_COLOURS][3] = {
    {220, 30, 30}, {30, 160, 50}, {30, 70, 220}, {245, 220, 30}, {140, 40, 180}, {250, 130, 20}, {250, 250, 250}, {15, 15, 15}};
const char *const mrw_scene_position_names[MRW_SCENE_N_POSITIONS] = {"left", "right", "top", "bottom", "centre"};
const char *const mrw_scene_qtype_names[MRW_SQ_N] = {"colour", "shape", "count", "where", "exists"};

/* Slot centres as fractions of the side, in the order of mrw_scene_position_names. */
static const float k_slot[MRW_SCENE_N_POSITIONS][2] = {{0.18f, 0.5f}, {0.82f, 0.5f}, {0.5f, 0.18f}, {0.5f, 0.82f}, {0.5f, 0.5f}};

/* ------------------------------------------------------------------------------------------------ rng */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t next64(uint64_t *s) { return mix64(*s += 0x9e3779b97f4a7c15ULL); }
static double uniform(uint64_t *s) { return (double)(next64(s) >> 11) * (1.0 / 9007199254740992.0); }
static int below(uint64_t *s, int n) { return (int)(uniform(s) * n); }

static uint64_t scene_stream(uint64_t seed, mrw_scene_split split, int64_t index) {
    return mix64(mix64(seed ^ 0x5ce9e5ULL) ^ mix64(((uint64_t)split + 1) * 0x9e3779b97f4a7c15ULL) ^
                 mix64((uint64_t)index + 0x1234567ULL));
}

/* -------------------------------------------------------------------------------------------- layout */

void mrw_scene_make(uint64_t seed, mrw_scene_split split, int64_t index, int size, mrw_scene *out) {
    memset(out, 0, sizeof *out);
    if (size < MRW_SCENE_MIN_SIZE) size = MRW_SCENE_MIN_SIZE;
    if (size > MRW_SCENE_MAX_SIZE) size = MRW_SCENE_MAX_SIZE;
    uint64_t rng = scene_stream(seed, split, index);
    out->size = size;
    out->noise_seed = next64(&rng);
    int grey = 90 + below(&rng, 81);
    for (int c = 0; c < 3; c++) out->background[c] = (uint8_t)(grey - 8 + below(&rng, 17));
    out->n = 1 + below(&rng, MRW_SCENE_MAX_OBJECTS);
    int slots[MRW_SCENE_N_POSITIONS] = {0, 1, 2, 3, 4};
    for (int i = MRW_SCENE_N_POSITIONS - 1; i > 0; i--) {
        int j = below(&rng, i + 1), t = slots[i];
        slots[i] = slots[j];
        slots[j] = t;
    }
    for (int i = 0; i < out->n; i++) {
        mrw_scene_object *o = &out->obj[i];
        /* A third of the later objects repeat an earlier shape, so that counts above 1 are common. */
        o->shape = i > 0 && uniform(&rng) < 0.33 ? out->obj[below(&rng, i)].shape : below(&rng, MRW_SCENE_N_SHAPES);
        o->colour = below(&rng, MRW_SCENE_N_COLOURS);
        o->position = slots[i];
        o->large = below(&rng, 2);
        float rf = (o->large ? 0.125f : 0.085f) * (float)(0.92 + 0.08 * uniform(&rng));
        float jx = (float)(uniform(&rng) * 2 - 1) * 0.01f, jy = (float)(uniform(&rng) * 2 - 1) * 0.01f;
        o->r = rf * (float)size;
        o->cx = (k_slot[o->position][0] + jx) * (float)size;
        o->cy = (k_slot[o->position][1] + jy) * (float)size;
    }
}

/* ---------------------------------------------------------------------------------------- rasteriser */

#define MAX_VERTS 12

/* The outline of a polygonal shape (y grows downwards); 0 for the circle. */
static int outline(const mrw_scene_object *o, double *px, double *py) {
    const double r = o->r, cx = o->cx, cy = o->cy, pi = 3.14159265358979323846;
    int n = 0;
    switch (o->shape) {
    case 1: { /* square */
        double h = 0.8 * r;
        const double sx[4] = {-1, 1, 1, -1}, sy[4] = {-1, -1, 1, 1};
        for (n = 0; n < 4; n++) px[n] = cx + h * sx[n], py[n] = cy + h * sy[n];
        break;
    }
    case 2: /* triangle, point up; the centre is its centroid */
        for (n = 0; n < 3; n++) {
            double a = -pi / 2 + n * 2 * pi / 3;
            px[n] = cx + r * cos(a), py[n] = cy + r * sin(a);
        }
        break;
    case 3: /* five-pointed star, inner radius 0.45 r */
        for (n = 0; n < 10; n++) {
            double a = -pi / 2 + n * pi / 5, rr = n % 2 ? 0.45 * r : r;
            px[n] = cx + rr * cos(a), py[n] = cy + rr * sin(a);
        }
        break;
    case 4: { /* diamond */
        const double sx[4] = {0, 1, 0, -1}, sy[4] = {-1, 0, 1, 0};
        for (n = 0; n < 4; n++) px[n] = cx + r * sx[n], py[n] = cy + r * sy[n];
        break;
    }
    case 5: { /* cross (plus sign): arms of half-length 0.9 r, half-width 0.32 r */
        const double a = 0.9 * r, w = 0.32 * r;
        const double sx[12] = {-w, w, w, a, a, w, w, -w, -w, -a, -a, -w};
        const double sy[12] = {-a, -a, -w, -w, w, w, a, a, w, w, -w, -w};
        for (n = 0; n < 12; n++) px[n] = cx + sx[n], py[n] = cy + sy[n];
        break;
    }
    default: break;
    }
    return n;
}

static int in_polygon(const double *px, const double *py, int n, double x, double y) {
    int in = 0;
    for (int i = 0, j = n - 1; i < n; j = i++)
        if ((py[i] > y) != (py[j] > y) && x < (px[j] - px[i]) * (y - py[i]) / (py[j] - py[i]) + px[i]) in = !in;
    return in;
}

int mrw_scene_inside(const mrw_scene_object *o, double x, double y) {
    if (o->shape == 0) {
        double dx = x - o->cx, dy = y - o->cy, rr = 0.9 * o->r;
        return dx * dx + dy * dy <= rr * rr;
    }
    double px[MAX_VERTS], py[MAX_VERTS];
    int n = outline(o, px, py);
    return in_polygon(px, py, n, x, y);
}

#define SS 4 /* supersampling: SS x SS samples per pixel */

void mrw_scene_render(const mrw_scene *s, uint8_t *rgb) {
    const int S = s->size;
    for (int64_t i = 0; i < (int64_t)S * S; i++) {
        uint64_t h = mix64(s->noise_seed ^ ((uint64_t)i * 0x9e3779b97f4a7c15ULL));
        for (int c = 0; c < 3; c++) {
            int v = s->background[c] + (int)((h >> (8 * c)) % 9) - 4;
            rgb[i * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    for (int k = 0; k < s->n; k++) {
        const mrw_scene_object *o = &s->obj[k];
        const uint8_t *col = mrw_scene_palette[o->colour];
        double px[MAX_VERTS], py[MAX_VERTS];
        int nv = outline(o, px, py);
        int x0 = (int)floor(o->cx - 1.2 * o->r) - 1, x1 = (int)ceil(o->cx + 1.2 * o->r) + 1;
        int y0 = (int)floor(o->cy - 1.2 * o->r) - 1, y1 = (int)ceil(o->cy + 1.2 * o->r) + 1;
        if (x0 < 0) x0 = 0;
        if (y0 < 0) y0 = 0;
        if (x1 > S) x1 = S;
        if (y1 > S) y1 = S;
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) {
                int hits = 0;
                for (int sy = 0; sy < SS; sy++)
                    for (int sx = 0; sx < SS; sx++) {
                        double fx = x + (sx + 0.5) / SS, fy = y + (sy + 0.5) / SS;
                        if (o->shape == 0) {
                            double dx = fx - o->cx, dy = fy - o->cy, rr = 0.9 * o->r;
                            hits += dx * dx + dy * dy <= rr * rr;
                        } else hits += in_polygon(px, py, nv, fx, fy);
                    }
                if (!hits) continue;
                uint8_t *p = rgb + ((int64_t)y * S + x) * 3;
                for (int c = 0; c < 3; c++)
                    p[c] = (uint8_t)((p[c] * (SS * SS - hits) + col[c] * hits + SS * SS / 2) / (SS * SS));
            }
    }
}

/* ----------------------------------------------------------------------------------------- questions */

static int count_shape(const mrw_scene *s, int shape) {
    int n = 0;
    for (int i = 0; i < s->n; i++) n += s->obj[i].shape == shape;
    return n;
}
static int count_colour(const mrw_scene *s, int colour) {
    int n = 0;
    for (int i = 0; i < s->n; i++) n += s->obj[i].colour == colour;
    return n;
}
static int count_pair(const mrw_scene *s, int colour, int shape) {
    int n = 0;
    for (int i = 0; i < s->n; i++) n += s->obj[i].colour == colour && s->obj[i].shape == shape;
    return n;
}
static const char *article(const char *word) { return strchr("aeiou", word[0]) ? "an" : "a"; }

int mrw_scene_question(const mrw_scene *s, mrw_scene_qtype type, uint64_t *rng, char *q, size_t qn, char *a,
                       size_t an) {
    int cand[MRW_SCENE_MAX_OBJECTS], nc = 0;
    const int tpl = below(rng, 3);
    switch (type) {
    case MRW_SQ_COLOUR: {
        for (int i = 0; i < s->n; i++)
            if (count_shape(s, s->obj[i].shape) == 1) cand[nc++] = i;
        if (!nc) return 0;
        const mrw_scene_object *o = &s->obj[cand[below(rng, nc)]];
        static const char *const f[3] = {"What colour is the %s?", "What is the colour of the %s?", "Which colour is the %s?"};
        snprintf(q, qn, f[tpl], mrw_scene_shape_names[o->shape]);
        snprintf(a, an, "%s", mrw_scene_colour_names[o->colour]);
        return 1;
    }
    case MRW_SQ_SHAPE: {
        for (int i = 0; i < s->n; i++)
            if (count_colour(s, s->obj[i].colour) == 1) cand[nc++] = i;
        if (!nc) return 0;
        const mrw_scene_object *o = &s->obj[cand[below(rng, nc)]];
        static const char *const f[3] = {"What shape is the %s object?", "What is the shape of the %s object?",
                                         "What shape is the %s one?"};
        snprintf(q, qn, f[tpl], mrw_scene_colour_names[o->colour]);
        snprintf(a, an, "%s", mrw_scene_shape_names[o->shape]);
        return 1;
    }
    case MRW_SQ_COUNT: {
        double u = uniform(rng);
        if (u < 0.15) { /* all objects */
            static const char *const f[3] = {"How many objects are there?", "How many shapes are in the image?",
                                             "Count the objects."};
            snprintf(q, qn, "%s", f[tpl]);
            snprintf(a, an, "%d", s->n);
            return 1;
        }
        int shape;
        if (u < 0.3) { /* a shape that is absent: 0 */
            int absent[MRW_SCENE_N_SHAPES], na = 0;
            for (int k = 0; k < MRW_SCENE_N_SHAPES; k++)
                if (!count_shape(s, k)) absent[na++] = k;
            shape = absent[below(rng, na)]; /* at most 5 of the 6 shapes are present */
        } else shape = s->obj[below(rng, s->n)].shape;
        static const char *const f[3] = {"How many %s are there?", "How many %s are in the image?", "Count the %s."};
        snprintf(q, qn, f[tpl], k_shape_plural[shape]);
        snprintf(a, an, "%d", count_shape(s, shape));
        return 1;
    }
    case MRW_SQ_WHERE: {
        for (int i = 0; i < s->n; i++)
            if (count_pair(s, s->obj[i].colour, s->obj[i].shape) == 1) cand[nc++] = i;
        if (!nc) return 0;
        const mrw_scene_object *o = &s->obj[cand[below(rng, nc)]];
        char what[64];
        if (count_shape(s, o->shape) == 1 && uniform(rng) < 0.5) snprintf(what, sizeof what, "%s", mrw_scene_shape_names[o->shape]);
        else snprintf(what, sizeof what, "%s %s", mrw_scene_colour_names[o->colour], mrw_scene_shape_names[o->shape]);
        static const char *const f[3] = {"Where is the %s?", "Where is the %s in the image?",
                                         "In which part of the image is the %s?"};
        snprintf(q, qn, f[tpl], what);
        snprintf(a, an, "%s", mrw_scene_position_names[o->position]);
        return 1;
    }
    case MRW_SQ_EXISTS: {
        const int yes = below(rng, 2), with_colour = below(rng, 2);
        int colour = -1, shape;
        if (yes) {
            const mrw_scene_object *o = &s->obj[below(rng, s->n)];
            shape = o->shape;
            if (with_colour) colour = o->colour;
        } else if (with_colour) {
            int pairs[MRW_SCENE_N_COLOURS * MRW_SCENE_N_SHAPES], np = 0;
            for (int c = 0; c < MRW_SCENE_N_COLOURS; c++)
                for (int k = 0; k < MRW_SCENE_N_SHAPES; k++)
                    if (!count_pair(s, c, k)) pairs[np++] = c * MRW_SCENE_N_SHAPES + k;
            /* Half of the time a near miss: the colour or the shape of an object that is there. */
            int pick = pairs[below(rng, np)];
            if (uniform(rng) < 0.5) {
                const mrw_scene_object *o = &s->obj[below(rng, s->n)];
                int near[MRW_SCENE_N_COLOURS + MRW_SCENE_N_SHAPES], nn = 0;
                for (int t = 0; t < np; t++)
                    if (pairs[t] / MRW_SCENE_N_SHAPES == o->colour || pairs[t] % MRW_SCENE_N_SHAPES == o->shape)
                        near[nn++] = pairs[t];
                if (nn) pick = near[below(rng, nn)];
            }
            colour = pick / MRW_SCENE_N_SHAPES;
            shape = pick % MRW_SCENE_N_SHAPES;
        } else {
            int absent[MRW_SCENE_N_SHAPES], na = 0;
            for (int k = 0; k < MRW_SCENE_N_SHAPES; k++)
                if (!count_shape(s, k)) absent[na++] = k;
            shape = absent[below(rng, na)];
        }
        char what[64];
        if (colour >= 0)
            snprintf(what, sizeof what, "%s %s %s", article(mrw_scene_colour_names[colour]), mrw_scene_colour_names[colour],
                     mrw_scene_shape_names[shape]);
        else snprintf(what, sizeof what, "%s %s", article(mrw_scene_shape_names[shape]), mrw_scene_shape_names[shape]);
        static const char *const f[3] = {"Is there %s?", "Is there %s in the image?", "Does the image contain %s?"};
        snprintf(q, qn, f[tpl], what);
        snprintf(a, an, "%s", yes ? "yes" : "no");
        return 1;
    }
    default: return 0;
    }
}

/* -------------------------------------------------------------------------------------- the dataset */

static mrw_status make_dir(const char *path, mrw_error *err) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) return mrw_err(err, MRW_E_ARG, "path too long: %s", path);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) return mrw_err(err, MRW_E_IO, "%s: cannot create: %s", p, strerror(errno));
            *c = '/';
        }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return mrw_err(err, MRW_E_IO, "%s: cannot create: %s", p, strerror(errno));
    return MRW_OK;
}

typedef struct {
    FILE *fp;
    int failed;
} png_out;

static void png_sink(void *ctx, void *data, int size) {
    png_out *o = ctx;
    if (!o->failed && fwrite(data, 1, (size_t)size, o->fp) != (size_t)size) o->failed = 1;
}

/* Written to PATH.tmp and renamed (never a partial image under the final name); not fsynced, unlike the
 * JSONL files: an image lost to a crash is regenerated by running the command again. */
static mrw_status write_png(const char *path, const uint8_t *rgb, int size, mrw_error *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    png_out o = {fopen(tmp, "wb"), 0};
    if (!o.fp) return mrw_err(err, MRW_E_IO, "%s: cannot create: %s", tmp, strerror(errno));
    int ok = stbi_write_png_to_func(png_sink, &o, size, size, 3, rgb, size * 3);
    if (fclose(o.fp) != 0) o.failed = 1;
    if (!ok || o.failed || rename(tmp, path) != 0) {
        remove(tmp);
        return mrw_err(err, MRW_E_IO, "%s: %s", path, ok ? "cannot write" : "PNG encoding failed");
    }
    return MRW_OK;
}

static double round2(double v) { return round(v * 100.0) / 100.0; }

static char *spec_json(const mrw_scene *s, const char *image) {
    cJSON *o = cJSON_CreateObject(), *objs = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "image", image);
    cJSON_AddNumberToObject(o, "size", s->size);
    cJSON *bg = cJSON_CreateArray();
    for (int c = 0; c < 3; c++) cJSON_AddItemToArray(bg, cJSON_CreateNumber(s->background[c]));
    cJSON_AddItemToObject(o, "background", bg);
    for (int i = 0; i < s->n; i++) {
        const mrw_scene_object *b = &s->obj[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "shape", mrw_scene_shape_names[b->shape]);
        cJSON_AddStringToObject(j, "colour", mrw_scene_colour_names[b->colour]);
        cJSON_AddStringToObject(j, "position", mrw_scene_position_names[b->position]);
        cJSON_AddStringToObject(j, "size", b->large ? "large" : "small");
        cJSON_AddNumberToObject(j, "x", round2(b->cx));
        cJSON_AddNumberToObject(j, "y", round2(b->cy));
        cJSON_AddNumberToObject(j, "r", round2(b->r));
        cJSON_AddItemToArray(objs, j);
    }
    cJSON_AddItemToObject(o, "objects", objs);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return txt;
}

static char *record_json(const char *id, const char *image, const char *q, const char *a, const char *type) {
    cJSON *o = cJSON_CreateObject(), *conv = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "image", image);
    char human[512];
    snprintf(human, sizeof human, "<image>\n%s", q);
    cJSON *h = cJSON_CreateObject(), *g = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "from", "human");
    cJSON_AddStringToObject(h, "value", human);
    cJSON_AddStringToObject(g, "from", "gpt");
    cJSON_AddStringToObject(g, "value", a);
    cJSON_AddItemToArray(conv, h);
    cJSON_AddItemToArray(conv, g);
    cJSON_AddItemToObject(o, "conversations", conv);
    cJSON_AddStringToObject(o, "question_type", type);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return txt;
}

static void tally(mrw_gen_scenes_stats *st, int type, const char *answer) {
    st->per_type[type]++;
    for (int i = 0; i < st->n_answers[type]; i++)
        if (!strcmp(st->answers[type][i].answer, answer)) {
            st->answers[type][i].count++;
            return;
        }
    if (st->n_answers[type] < 16) {
        int i = st->n_answers[type]++;
        snprintf(st->answers[type][i].answer, sizeof st->answers[type][i].answer, "%.15s", answer);
        st->answers[type][i].count = 1;
    }
}

mrw_status mrw_gen_scenes(const mrw_gen_scenes_params *p, mrw_gen_scenes_stats *stats, mrw_error *err) {
    mrw_gen_scenes_stats local;
    mrw_gen_scenes_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    const int size = p->size ? p->size : 64, nq = p->questions ? p->questions : 1;
    if (!p->out_dir || !*p->out_dir) return mrw_err(err, MRW_E_ARG, "gen-scenes: no output directory");
    if (p->n < 1 || p->n > 100000000) return mrw_err(err, MRW_E_ARG, "gen-scenes: n must be in 1..100000000, got %lld", (long long)p->n);
    if (size < MRW_SCENE_MIN_SIZE || size > MRW_SCENE_MAX_SIZE)
        return mrw_err(err, MRW_E_ARG, "gen-scenes: size must be in %d..%d, got %d", MRW_SCENE_MIN_SIZE, MRW_SCENE_MAX_SIZE, size);
    if (nq < 1 || nq > MRW_SQ_N) return mrw_err(err, MRW_E_ARG, "gen-scenes: questions per image must be in 1..%d", MRW_SQ_N);
    if (p->types >> MRW_SQ_N) return mrw_err(err, MRW_E_ARG, "gen-scenes: unknown question type bits 0x%x", p->types);
    if (p->split != MRW_SPLIT_TRAIN && p->split != MRW_SPLIT_TEST) return mrw_err(err, MRW_E_ARG, "gen-scenes: bad split");
    const char *split = p->split == MRW_SPLIT_TEST ? "test" : "train";

    char path[4096], rel[64], id[96];
    snprintf(path, sizeof path, "%s/%s", p->out_dir, split);
    mrw_status s = make_dir(path, err);
    if (s) return s;
    mrw_afile recs, specs;
    snprintf(path, sizeof path, "%s/%s.jsonl", p->out_dir, split);
    if ((s = mrw_afile_open(&recs, path, err))) return mrw_err_prefix(err, "%s", path);
    snprintf(path, sizeof path, "%s/%s_spec.jsonl", p->out_dir, split);
    if ((s = mrw_afile_open(&specs, path, err))) {
        mrw_afile_abort(&recs);
        return mrw_err_prefix(err, "%s", path);
    }
    uint8_t *rgb = malloc((size_t)size * size * 3);
    if (!rgb) {
        s = mrw_err(err, MRW_E_NOMEM, "gen-scenes: out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < p->n; i++) {
        mrw_scene sc;
        mrw_scene_make(p->seed, p->split, i, size, &sc);
        mrw_scene_render(&sc, rgb);
        snprintf(rel, sizeof rel, "%s/%06lld.png", split, (long long)i);
        if (snprintf(path, sizeof path, "%s/%s", p->out_dir, rel) >= (int)sizeof path) {
            s = mrw_err(err, MRW_E_ARG, "gen-scenes: output path too long");
            goto fail;
        }
        if ((s = write_png(path, rgb, size, err))) goto fail;
        char *sj = spec_json(&sc, rel);
        if (!sj) {
            s = mrw_err(err, MRW_E_NOMEM, "gen-scenes: out of memory");
            goto fail;
        }
        mrw_afile_write(&specs, sj, strlen(sj));
        mrw_afile_write(&specs, "\n", 1);
        free(sj);
        st->images++;
        st->objects += sc.n;

        /* Question types in a random order; the first nq the scene allows. */
        uint64_t qrng = scene_stream(p->seed ^ 0x71e57105ULL, p->split, i);
        int types[MRW_SQ_N] = {0, 1, 2, 3, 4};
        for (int k = MRW_SQ_N - 1; k > 0; k--) {
            int j = below(&qrng, k + 1), t = types[k];
            types[k] = types[j];
            types[j] = t;
        }
        int made = 0;
        for (int k = 0; k < MRW_SQ_N && made < nq; k++) {
            char q[256], a[32];
            if (p->types && !(p->types >> types[k] & 1)) continue;
            if (!mrw_scene_question(&sc, types[k], &qrng, q, sizeof q, a, sizeof a)) continue;
            snprintf(id, sizeof id, "scene-%s-%06lld-%d", split, (long long)i, made);
            char *rj = record_json(id, rel, q, a, mrw_scene_qtype_names[types[k]]);
            if (!rj) {
                s = mrw_err(err, MRW_E_NOMEM, "gen-scenes: out of memory");
                goto fail;
            }
            mrw_afile_write(&recs, rj, strlen(rj));
            mrw_afile_write(&recs, "\n", 1);
            free(rj);
            tally(st, types[k], a);
            st->records++;
            made++;
        }
        if (p->progress) p->progress(p->progress_user, i + 1, p->n);
    }
    free(rgb);
    if ((s = mrw_afile_commit(&specs, err))) {
        mrw_afile_abort(&recs);
        return s;
    }
    return mrw_afile_commit(&recs, err);
fail:
    free(rgb);
    mrw_afile_abort(&recs);
    mrw_afile_abort(&specs);
    return s;
}
