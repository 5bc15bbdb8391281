/* Generated VQA scenes (src/gen/scenes.c): determinism, held-out split, layout, and every answer re-derived
 * from the pixels of the written PNG files (decoded by our own image loader): objects are found as connected
 * components that differ from the background, their colour is the palette colour at the centre, their shape
 * is classified from the fill ratio and aspect of their bounding box, their position from the centroid; the
 * questions of the JSONL are then answered from these objects alone and compared with the written answers. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdint.h>
#include <unistd.h>

#include "formats/audio.h"
#include "formats/image.h"
#include "gen/scenes.h"
#include "test.h"
#include "train/data.h"

static int same_scene(const mrw_scene *a, const mrw_scene *b) {
    if (a->size != b->size || a->n != b->n || memcmp(a->background, b->background, 3)) return 0;
    for (int i = 0; i < a->n; i++)
        if (memcmp(&a->obj[i], &b->obj[i], sizeof a->obj[i])) return 0;
    return 1;
}

static void test_determinism(void) {
    int differ_split = 0, differ_seed = 0;
    for (int i = 0; i < 50; i++) {
        mrw_scene a, b, c, d;
        mrw_scene_make(7, MRW_SPLIT_TRAIN, i, 64, &a);
        mrw_scene_make(7, MRW_SPLIT_TRAIN, i, 64, &b);
        mrw_scene_make(7, MRW_SPLIT_TEST, i, 64, &c);
        mrw_scene_make(8, MRW_SPLIT_TRAIN, i, 64, &d);
        CHECK(same_scene(&a, &b));
        differ_split += !same_scene(&a, &c);
        differ_seed += !same_scene(&a, &d);
        uint8_t *r1 = malloc(64 * 64 * 3), *r2 = malloc(64 * 64 * 3);
        mrw_scene_render(&a, r1);
        mrw_scene_render(&b, r2);
        CHECK(!memcmp(r1, r2, 64 * 64 * 3));
        free(r1);
        free(r2);
    }
    CHECKF(differ_split >= 45, "%d of 50 test scenes differ from train", differ_split);
    CHECKF(differ_seed >= 45, "%d of 50 scenes differ between seeds", differ_seed);
}

/* Layout: inside the image, one object per slot, 1..5 objects, and no point of the plane inside two objects
 * (sampled every 1/4 pixel, with the shapes grown by one pixel so that neighbours never touch). */
static void test_layout(void) {
    int hist[MRW_SCENE_MAX_OBJECTS + 1] = {0};
    for (int i = 0; i < 1000; i++) {
        mrw_scene s;
        mrw_scene_make(3, MRW_SPLIT_TRAIN, i, 64, &s);
        CHECK(s.n >= 1 && s.n <= MRW_SCENE_MAX_OBJECTS);
        hist[s.n]++;
        for (int k = 0; k < s.n; k++) {
            const mrw_scene_object *o = &s.obj[k];
            CHECK(o->cx - 1.2 * o->r > 0 && o->cx + 1.2 * o->r < 64 && o->cy - 1.2 * o->r > 0 && o->cy + 1.2 * o->r < 64);
            CHECK(mrw_scene_inside(o, o->cx, o->cy)); /* the centre is inside every shape */
            for (int j = 0; j < k; j++) CHECK(o->position != s.obj[j].position);
        }
        if (i >= 200) continue;
        int overlap = 0;
        for (int y = 0; y < 64 * 4; y++)
            for (int x = 0; x < 64 * 4; x++) {
                int in = 0;
                for (int k = 0; k < s.n; k++) {
                    mrw_scene_object g = s.obj[k];
                    g.r += 1.0f; /* one pixel of margin */
                    in += mrw_scene_inside(&g, (x + 0.5) / 4, (y + 0.5) / 4);
                }
                overlap += in > 1;
            }
        CHECKF(!overlap, "scene %d: %d samples inside two objects", i, overlap);
    }
    for (int n = 1; n <= MRW_SCENE_MAX_OBJECTS; n++) CHECKF(hist[n] > 150, "%d scenes with %d objects", hist[n], n);
}

/* ------------------------------------------------------------------------------- objects from pixels */

typedef struct {
    int colour, shape, position;
    double cx, cy;
} found;

static int nearest_palette(const uint8_t *p) {
    int best = 0, bd = 1 << 30;
    for (int c = 0; c < MRW_SCENE_N_COLOURS; c++) {
        int d = 0;
        for (int k = 0; k < 3; k++) d += (p[k] - mrw_scene_palette[c][k]) * (p[k] - mrw_scene_palette[c][k]);
        if (d < bd) bd = d, best = c;
    }
    return best;
}

/* Area of each shape in units of r^2 (the outlines of scenes.c). */
static const double k_area[MRW_SCENE_N_SHAPES] = {3.14159265 * 0.81, 2.56, 1.29903811, 1.32254, 2.0, 1.8944};

/* Finds the objects of an image: 4-connected components of pixels that differ from the background by more
 * than the noise; colour = the palette colour at the centroid; coverage alpha of each pixel from its colour
 * (projection onto colour - background); shape = the outline whose rendering, at the centroid and with the
 * radius that gives the measured area, is nearest to the coverage (L1); position = the nearest slot. */
static int find_objects(const mrw_image *im, const uint8_t *bg, found *out, int max) {
    const int W = im->width, H = im->height;
    int *lab = calloc((size_t)W * H, sizeof *lab), *stack = malloc((size_t)W * H * sizeof *stack);
    int n = 0;
    for (int i = 0; i < W * H; i++) {
        const uint8_t *p = im->rgb + (size_t)i * 3;
        int fg = abs(p[0] - bg[0]) > 12 || abs(p[1] - bg[1]) > 12 || abs(p[2] - bg[2]) > 12;
        lab[i] = fg ? -1 : 0;
    }
    for (int i = 0; i < W * H; i++) {
        if (lab[i] != -1) continue;
        int sp = 0, area = 0, x0 = W, x1 = -1, y0 = H, y1 = -1, id = n + 1;
        double sx = 0, sy = 0;
        stack[sp++] = i;
        lab[i] = id;
        while (sp) {
            int q = stack[--sp], x = q % W, y = q / W;
            area++;
            sx += x + 0.5, sy += y + 0.5;
            if (x < x0) x0 = x;
            if (x > x1) x1 = x;
            if (y < y0) y0 = y;
            if (y > y1) y1 = y;
            const int nb[4] = {x > 0 ? q - 1 : -1, x < W - 1 ? q + 1 : -1, y > 0 ? q - W : -1, y < H - 1 ? q + W : -1};
            for (int k = 0; k < 4; k++)
                if (nb[k] >= 0 && lab[nb[k]] == -1) lab[nb[k]] = id, stack[sp++] = nb[k];
        }
        if (area < 6) continue; /* a stray pixel */
        if (n == max) {
            n++;
            break;
        }
        found *f = &out[n++];
        f->cx = sx / area, f->cy = sy / area;
        f->colour = nearest_palette(im->rgb + ((size_t)(int)f->cy * W + (int)f->cx) * 3);
        /* Coverage from the colour. */
        const uint8_t *col = mrw_scene_palette[f->colour];
        double dd = 0, A = 0, ax = 0, ay = 0;
        for (int k = 0; k < 3; k++) dd += (double)(col[k] - bg[k]) * (col[k] - bg[k]);
        x0 = x0 > 2 ? x0 - 2 : 0, y0 = y0 > 2 ? y0 - 2 : 0, x1 = x1 < W - 3 ? x1 + 2 : W - 1, y1 = y1 < H - 3 ? y1 + 2 : H - 1;
        const int bw = x1 - x0 + 1, bh = y1 - y0 + 1;
        double *alpha = calloc((size_t)bw * bh, sizeof *alpha);
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                if (lab[y * W + x] != id) continue;
                const uint8_t *p = im->rgb + ((size_t)y * W + x) * 3;
                double dot = 0;
                for (int k = 0; k < 3; k++) dot += (double)(p[k] - bg[k]) * (col[k] - bg[k]);
                double al = dot / dd;
                al = al < 0 ? 0 : al > 1 ? 1 : al;
                alpha[(y - y0) * bw + (x - x0)] = al;
                A += al, ax += al * (x + 0.5), ay += al * (y + 0.5);
            }
        f->cx = ax / A, f->cy = ay / A;
        double best = 1e30;
        for (int sh = 0; sh < MRW_SCENE_N_SHAPES; sh++) {
            mrw_scene_object g = {.shape = sh, .cx = (float)f->cx, .cy = (float)f->cy, .r = (float)sqrt(A / k_area[sh])};
            double l1 = 0;
            for (int y = y0; y <= y1; y++)
                for (int x = x0; x <= x1; x++) {
                    int hits = 0;
                    for (int s = 0; s < 16; s++) hits += mrw_scene_inside(&g, x + (s % 4 + 0.5) / 4, y + (s / 4 + 0.5) / 4);
                    l1 += fabs(alpha[(y - y0) * bw + (x - x0)] - hits / 16.0);
                }
            if (l1 < best) best = l1, f->shape = sh;
        }
        free(alpha);
        /* Position: the nearest slot centre. */
        static const double slot[5][2] = {{0.18, 0.5}, {0.82, 0.5}, {0.5, 0.18}, {0.5, 0.82}, {0.5, 0.5}};
        double bd = 1e9;
        for (int k = 0; k < 5; k++) {
            double dx = f->cx / W - slot[k][0], dy = f->cy / H - slot[k][1], d = dx * dx + dy * dy;
            if (d < bd) bd = d, f->position = k;
        }
    }
    free(lab);
    free(stack);
    return n;
}

/* --------------------------------------------------------------------------- answers from the objects */

static int word_index(const char *w, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(w, names[i])) return i;
    return -1;
}

/* Answers a question from the found objects, from its words alone. */
static void answer_from(const char *type, const char *q, const found *f, int n, char *a, size_t an) {
    int colour = -1, shape = -1, all = 0;
    char w[64];
    for (const char *p = q; *p;) {
        while (*p && !isalpha((unsigned char)*p)) p++;
        size_t k = 0;
        while (isalpha((unsigned char)*p)) {
            if (k < sizeof w - 1) w[k++] = (char)tolower((unsigned char)*p);
            p++;
        }
        w[k] = 0;
        if (!k) continue;
        int c = word_index(w, mrw_scene_colour_names, MRW_SCENE_N_COLOURS), s = word_index(w, mrw_scene_shape_names, MRW_SCENE_N_SHAPES);
        if (s < 0 && k > 1 && w[k - 1] == 's') { /* plural */
            w[k - 1] = 0;
            if ((s = word_index(w, mrw_scene_shape_names, MRW_SCENE_N_SHAPES)) < 0 && k > 2 && w[k - 2] == 'e') {
                w[k - 2] = 0; /* crosses */
                s = word_index(w, mrw_scene_shape_names, MRW_SCENE_N_SHAPES);
            }
            w[k - 1] = 's';
        }
        if (!strcmp(w, "objects") || !strcmp(w, "shapes")) all = 1;
        if (c >= 0) colour = c;
        if (s >= 0) shape = s;
    }
    int match = -1, count = 0;
    for (int i = 0; i < n; i++)
        if ((colour < 0 || f[i].colour == colour) && (shape < 0 || f[i].shape == shape)) match = i, count++;
    if (!strcmp(type, "count")) snprintf(a, an, "%d", all && shape < 0 ? n : count);
    else if (!strcmp(type, "exists")) snprintf(a, an, "%s", count ? "yes" : "no");
    else if (count != 1) snprintf(a, an, "(ambiguous: %d objects match)", count);
    else if (!strcmp(type, "colour")) snprintf(a, an, "%s", mrw_scene_colour_names[f[match].colour]);
    else if (!strcmp(type, "shape")) snprintf(a, an, "%s", mrw_scene_shape_names[f[match].shape]);
    else if (!strcmp(type, "where")) snprintf(a, an, "%s", mrw_scene_position_names[f[match].position]);
    else snprintf(a, an, "(unknown type %s)", type);
}

static cJSON *read_jsonl(const char *path, int *n) {
    size_t len;
    unsigned char *buf = t_read_file(path, &len);
    cJSON *arr = cJSON_CreateArray();
    *n = 0;
    if (!buf) return arr;
    char *save = NULL;
    for (char *line = strtok_r((char *)buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(line);
        CHECKF(o != NULL, "%s: bad JSON line", path);
        if (o) cJSON_AddItemToArray(arr, o), (*n)++;
    }
    free(buf);
    return arr;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int64_t check_loader(const char *path, mrw_data_kind kind, int expect_media);

static void test_dataset(const char *dir, int size, int n_images, int nq) {
    mrw_gen_scenes_params p = {.out_dir = dir, .n = n_images, .seed = 11, .split = MRW_SPLIT_TEST, .size = size, .questions = nq};
    mrw_gen_scenes_stats st;
    mrw_error err = {0};
    CHECK_OK(mrw_gen_scenes(&p, &st, &err), &err);
    CHECK(st.images == n_images);
    char path[1024];
    int n_rec, n_spec;
    snprintf(path, sizeof path, "%s/test.jsonl", dir);
    cJSON *recs = read_jsonl(path, &n_rec);
    snprintf(path, sizeof path, "%s/test_spec.jsonl", dir);
    cJSON *specs = read_jsonl(path, &n_spec);
    CHECK(n_rec == st.records && n_spec == n_images);
    CHECK(n_rec >= n_images * (nq < 2 ? nq : 2)); /* count and exists are always possible */
    int64_t per_type[MRW_SQ_N] = {0};
    int mismatches = 0, checked = 0, shapes_ok = 0, shapes_all = 0;
    for (int i = 0; i < n_spec; i++) {
        const cJSON *sp = cJSON_GetArrayItem(specs, i);
        mrw_scene sc;
        mrw_scene_make(11, MRW_SPLIT_TEST, i, size, &sc);
        /* The spec line describes the scene. */
        const cJSON *objs = cJSON_GetObjectItemCaseSensitive(sp, "objects");
        CHECK(cJSON_GetArraySize(objs) == sc.n);
        for (int k = 0; k < sc.n && k < cJSON_GetArraySize(objs); k++) {
            const cJSON *o = cJSON_GetArrayItem(objs, k);
            CHECK(!strcmp(jstr(o, "shape"), mrw_scene_shape_names[sc.obj[k].shape]));
            CHECK(!strcmp(jstr(o, "colour"), mrw_scene_colour_names[sc.obj[k].colour]));
            CHECK(!strcmp(jstr(o, "position"), mrw_scene_position_names[sc.obj[k].position]));
            CHECK_NEAR(cJSON_GetObjectItemCaseSensitive(o, "x")->valuedouble, sc.obj[k].cx, 0.006);
        }
        /* The PNG decodes (our loader) to exactly the rendered pixels. */
        snprintf(path, sizeof path, "%s/%s", dir, jstr(sp, "image"));
        mrw_image im = {0};
        CHECK_OK(mrw_image_load(path, NULL, &im, &err), &err);
        if (!im.rgb) continue;
        CHECK(im.width == size && im.height == size && im.format == MRW_IMG_PNG);
        uint8_t *ref = malloc((size_t)size * size * 3);
        mrw_scene_render(&sc, ref);
        CHECK(!memcmp(ref, im.rgb, (size_t)size * size * 3));
        free(ref);
        /* Objects re-derived from the pixels. */
        found f[8];
        int nf = find_objects(&im, sc.background, f, 8);
        CHECKF(nf == sc.n, "image %d: %d objects found, %d in the scene", i, nf, sc.n);
        for (int k = 0; k < nf && k < sc.n; k++) {
            int m = -1;
            for (int j = 0; j < sc.n; j++)
                if (sc.obj[j].position == f[k].position) m = j;
            CHECKF(m >= 0, "image %d: object at %s not in the scene", i, mrw_scene_position_names[f[k].position]);
            if (m < 0) continue;
            CHECKF(f[k].colour == sc.obj[m].colour, "image %d: colour %s at the centre, scene says %s", i,
                   mrw_scene_colour_names[f[k].colour], mrw_scene_colour_names[sc.obj[m].colour]);
            CHECKF(fabs(f[k].cx - sc.obj[m].cx) < 0.25 && fabs(f[k].cy - sc.obj[m].cy) < 0.25, "image %d: centroid (%.2f,%.2f), centre (%.2f,%.2f)", i, f[k].cx, f[k].cy, sc.obj[m].cx, sc.obj[m].cy);
            shapes_all++;
            shapes_ok += f[k].shape == sc.obj[m].shape;
        }
        /* Every question about this image, answered from the pixels. */
        char prefix[64];
        snprintf(prefix, sizeof prefix, "scene-test-%06d-", i);
        for (int r = 0; r < n_rec; r++) {
            const cJSON *rec = cJSON_GetArrayItem(recs, r);
            if (strncmp(jstr(rec, "id"), prefix, strlen(prefix))) continue;
            CHECK(!strcmp(jstr(rec, "image"), jstr(sp, "image")));
            const cJSON *conv = cJSON_GetObjectItemCaseSensitive(rec, "conversations");
            const char *q = jstr(cJSON_GetArrayItem(conv, 0), "value"), *ans = jstr(cJSON_GetArrayItem(conv, 1), "value");
            const char *type = jstr(rec, "question_type");
            CHECK(!strncmp(q, "<image>\n", 8));
            CHECK(!strcmp(jstr(cJSON_GetArrayItem(conv, 0), "from"), "human") && !strcmp(jstr(cJSON_GetArrayItem(conv, 1), "from"), "gpt"));
            int t = word_index(type, mrw_scene_qtype_names, MRW_SQ_N);
            CHECK(t >= 0);
            if (t >= 0) per_type[t]++;
            char derived[64];
            answer_from(type, q + 8, f, nf, derived, sizeof derived);
            checked++;
            if (strcmp(derived, ans)) {
                if (mismatches++ < 10) fprintf(stderr, "image %d: '%s' answered '%s', from the pixels '%s'\n", i, q + 8, ans, derived);
            }
        }
        mrw_image_free(&im);
    }
    for (int t = 0; t < MRW_SQ_N; t++) CHECK(per_type[t] == st.per_type[t]);
    /* Shape classification from pixels is exact at 128 px; every answer must then agree. */
    CHECKF(shapes_ok == shapes_all, "shapes from pixels: %d of %d", shapes_ok, shapes_all);
    CHECKF(mismatches == 0, "%d of %d answers differ from the pixels", mismatches, checked);
    fprintf(stderr, "size %d: %d answers checked against the pixels, %d objects\n", size, checked, shapes_all);
    snprintf(path, sizeof path, "%s/test.jsonl", dir);
    CHECK(check_loader(path, MRW_DATA_LLAVA, 1) == n_rec);
    cJSON_Delete(recs);
    cJSON_Delete(specs);
}

static void test_errors(const char *dir) {
    mrw_error err = {0};
    mrw_gen_scenes_params p = {.out_dir = dir, .n = 0};
    CHECK(mrw_gen_scenes(&p, NULL, &err) == MRW_E_ARG);
    p.n = 1, p.size = 8;
    CHECK(mrw_gen_scenes(&p, NULL, &err) == MRW_E_ARG && strstr(err.msg, "size"));
    p.size = 64, p.questions = 9;
    CHECK(mrw_gen_scenes(&p, NULL, &err) == MRW_E_ARG);
    p.questions = 1, p.out_dir = "/proc/no/such/dir";
    CHECK(mrw_gen_scenes(&p, NULL, &err) != MRW_OK && strstr(err.msg, "/proc/no"));
}

/* ---------------------------------------------------------------- the files through the training loader */

typedef struct {
    int n;
} warn_count;
static void on_warn(void *user, const char *msg) {
    ((warn_count *)user)->n++;
    fprintf(stderr, "data warning: %s\n", msg);
}

/* Every record of the file is read by mrw_data_next without a warning; returns the records indexed. */
static int64_t check_loader(const char *path, mrw_data_kind kind, int expect_media) {
    mrw_vocab *v = mrw_vocab_new_bytes();
    warn_count w = {0};
    mrw_data_params p = {.kind = kind, .vocab = v, .warn = on_warn, .warn_user = &w};
    mrw_data *d = NULL;
    mrw_error err = {0};
    const char *paths[1] = {path};
    int64_t n = 0;
    CHECK_OK(mrw_data_open(paths, 1, &p, &d, &err), &err);
    if (d) {
        n = mrw_data_count(d);
        for (int64_t i = 0; i < n; i++) {
            mrw_data_sample smp;
            CHECK_OK(mrw_data_next(d, &smp, &err), &err);
            CHECK(smp.n_media == expect_media);
        }
        mrw_data_free(d);
    }
    CHECKF(w.n == 0, "%s: %d loader warnings", path, w.n);
    mrw_vocab_free(v);
    return n;
}

/* ------------------------------------------------------------------------------ speech (recipes/gen_*) */

static int have(const char *prog) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s > /dev/null 2>&1", prog);
    return system(cmd) == 0;
}

/* Each manifest line's audio decodes (our loader, 16 kHz) to a sane duration with signal in it; returns the
 * lines checked. */
static int check_audio_manifest(const char *dir, const char *jsonl, double min_s, double max_s) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, jsonl);
    int n = 0;
    cJSON *recs = read_jsonl(path, &n);
    CHECKF(n > 0, "%s: no records", path);
    for (int i = 0; i < n; i++) {
        const cJSON *r = cJSON_GetArrayItem(recs, i);
        const char *text = jstr(r, "text");
        CHECKF(*text, "%s:%d: no text", path, i + 1);
        for (const char *c = text; *c; c++) CHECKF((*c >= 'a' && *c <= 'z') || *c == ' ', "%s:%d: transcript '%s'", path, i + 1, text);
        snprintf(path, sizeof path, "%s/%s", dir, jstr(r, "audio"));
        mrw_audio a = {0};
        mrw_error err = {0};
        CHECK_OK(mrw_audio_load(path, 16000, NULL, &a, &err), &err);
        if (!a.samples) continue;
        double dur = (double)a.n / a.sample_rate, ss = 0, peak = 0;
        for (size_t k = 0; k < a.n; k++) ss += (double)a.samples[k] * a.samples[k], peak = fmax(peak, fabs(a.samples[k]));
        double rms = sqrt(ss / a.n);
        CHECKF(dur >= min_s && dur <= max_s, "%s: %.2f s", path, dur);
        CHECKF(rms > 0.001 && peak > 0.01 && peak <= 1.0, "%s: rms %.4f peak %.3f", path, rms, peak);
        mrw_audio_free(&a);
        snprintf(path, sizeof path, "%s/%s", dir, jsonl);
    }
    cJSON_Delete(recs);
    return n;
}

static void test_speech(const char *dir) {
    if (!have("espeak-ng") || !have("sox")) {
        fprintf(stderr, "SKIP speech: espeak-ng or sox not installed (scripts/setup.sh --deps-only installs them)\n");
        return;
    }
    char cmd[2400], a[512], b[512];
    snprintf(a, sizeof a, "%s/sp1", dir);
    snprintf(b, sizeof b, "%s/sp2", dir);
    snprintf(cmd, sizeof cmd, "recipes/gen_speech.sh --out %s --n 5 --seed 4 > /dev/null && "
                              "recipes/gen_speech.sh --out %s --n 3 --seed 4 --split test > /dev/null && "
                              "recipes/gen_speech.sh --out %s --n 5 --seed 4 --jobs 2 > /dev/null", a, a, b);
    CHECK(system(cmd) == 0);
    /* Deterministic, whatever the number of jobs. */
    snprintf(cmd, sizeof cmd, "cmp -s %s/train.jsonl %s/train.jsonl && for f in %s/train/*.wav; do cmp -s $f %s/train/$(basename $f) || exit 1; done", a, b, a, b);
    CHECK(system(cmd) == 0);
    CHECK(check_audio_manifest(a, "train.jsonl", 0.3, 8.0) == 5);
    CHECK(check_audio_manifest(a, "test.jsonl", 0.3, 8.0) == 3);
    /* Held-out voices: neither the language voice nor the variant of a test utterance occurs in train. */
    int n_tr = 0, n_te = 0;
    snprintf(cmd, sizeof cmd, "%s/train.jsonl", a);
    cJSON *tr = read_jsonl(cmd, &n_tr);
    snprintf(cmd, sizeof cmd, "%s/test.jsonl", a);
    cJSON *te = read_jsonl(cmd, &n_te);
    for (int i = 0; i < n_te; i++) {
        char tv[64];
        snprintf(tv, sizeof tv, "%s", jstr(cJSON_GetArrayItem(te, i), "voice"));
        char *plus = strchr(tv, '+');
        CHECK(plus != NULL);
        if (!plus) continue;
        *plus = 0;
        for (int j = 0; j < n_tr; j++) {
            char rv[64];
            snprintf(rv, sizeof rv, "%s", jstr(cJSON_GetArrayItem(tr, j), "voice"));
            char *rp = strchr(rv, '+');
            if (!rp) continue;
            *rp = 0;
            CHECKF(strcmp(tv, rv) && strcmp(plus + 1, rp + 1), "test voice %s+%s shares a part with train voice %s+%s", tv, plus + 1, rv, rp + 1);
        }
    }
    cJSON_Delete(tr);
    cJSON_Delete(te);
    snprintf(a, sizeof a, "%s/sp1/train.jsonl", dir);
    CHECK(check_loader(a, MRW_DATA_AUDIO, 1) == 5);
    /* Bad options are refused with a message, nothing written. */
    snprintf(cmd, sizeof cmd, "recipes/gen_speech.sh --out %s/sp3 --n 0 2> /dev/null", dir);
    CHECK(system(cmd) != 0);
}

static void test_fsdd(const char *dir) {
    char tar[512], cmd[1400], out[512], path[600];
    snprintf(tar, sizeof tar, "%s/data/speech/fsdd-recordings.tar", mrw_shared_dir());
    if (access(tar, R_OK) != 0) {
        fprintf(stderr, "SKIP fsdd: %s not found\n", tar);
        return;
    }
    snprintf(out, sizeof out, "%s/fsdd", dir);
    snprintf(cmd, sizeof cmd, "recipes/gen_fsdd.sh --tar %s --out %s > /dev/null", tar, out);
    CHECK(system(cmd) == 0);
    int n_train = 0, n_test = 0;
    snprintf(path, sizeof path, "%s/train.jsonl", out);
    cJSON *tr = read_jsonl(path, &n_train);
    snprintf(path, sizeof path, "%s/test.jsonl", out);
    cJSON *te = read_jsonl(path, &n_test);
    CHECK(n_train == 2700 && n_test == 300);
    /* The split is by index (0-4 test) and the word is the file's digit. */
    static const char *const words[10] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"};
    for (int s = 0; s < 2; s++) {
        const cJSON *arr = s ? te : tr;
        for (int i = 0; i < cJSON_GetArraySize(arr); i++) {
            const cJSON *r = cJSON_GetArrayItem(arr, i);
            const char *f = strrchr(jstr(r, "audio"), '/');
            int digit = -1, idx = -1;
            char spk[64];
            CHECK(f && sscanf(f + 1, "%d_%63[^_]_%d.wav", &digit, spk, &idx) == 3);
            CHECK(digit >= 0 && digit <= 9 && !strcmp(jstr(r, "text"), words[digit < 0 || digit > 9 ? 0 : digit]));
            CHECK(s ? idx <= 4 : idx >= 5);
            CHECK(!strcmp(jstr(r, "speaker"), spk));
        }
    }
    cJSON_Delete(tr);
    cJSON_Delete(te);
    /* The test clips decode through our loader (8 kHz resampled to 16 kHz); real recordings are 0.1-3 s. */
    CHECK(check_audio_manifest(out, "test.jsonl", 0.1, 3.0) == 300);
    snprintf(path, sizeof path, "%s/test.jsonl", out);
    CHECK(check_loader(path, MRW_DATA_AUDIO, 1) == 300);
}

int main(void) {
    test_determinism();
    test_layout();
    char tmpl[] = "/tmp/mrw_test_gen_XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    if (dir) {
        char d1[256], d2[256];
        snprintf(d1, sizeof d1, "%s/s128", dir);
        snprintf(d2, sizeof d2, "%s/s64", dir);
        test_dataset(d1, 128, 60, 5);
        test_dataset(d2, 64, 30, 2);
        test_errors(dir);
        test_speech(dir);
        test_fsdd(dir);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
    }
    TEST_MAIN_END();
}
