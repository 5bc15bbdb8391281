/* modrwkv gen-scenes: generated VQA scenes (shapes, colours, counts, positions) as PNG + LLaVA JSONL. */
#include <stdlib.h>
#include <string.h>

#include "gen/scenes.h"
#include "tools/common.h"
#include "tools/tools.h"

static const char *k_usage =
    "usage: modrwkv gen-scenes --out DIR --n N [options]\n"
    "Renders N scenes of 1-5 coloured shapes (circle, square, triangle, star, diamond, cross; red, green, blue,\n"
    "yellow, purple, orange, white, black; each in one of the slots left, right, top, bottom, centre; small or\n"
    "large) and writes visual questions about them with one-word answers:\n"
    "  colour  \"What colour is the star?\"          -> red\n"
    "  shape   \"What shape is the red object?\"     -> star\n"
    "  count   \"How many stars are there?\"         -> 2\n"
    "  where   \"Where is the star?\"                -> left\n"
    "  exists  \"Is there a blue circle?\"           -> yes / no\n"
    "Output: DIR/SPLIT/NNNNNN.png, DIR/SPLIT.jsonl (LLaVA records {\"id\", \"image\", \"conversations\",\n"
    "\"question_type\"}, image paths relative to DIR) and DIR/SPLIT_spec.jsonl (each scene's objects, for\n"
    "checks). The same (seed, split, N, size, questions) always gives the same bytes; the test split of a seed\n"
    "is drawn from another stream than its train split (held out). Prints the counts per question type and\n"
    "the answer distribution.\n\n"
    "      --out DIR        output directory (created)\n"
    "      --n N            number of images\n"
    "      --seed S         random seed (default 1)\n"
    "      --split S        train (default) or test\n"
    "      --size N         image side in pixels, 32..1024 (default 64)\n"
    "      --questions N    questions per image, 1..5, of distinct types (default 1)\n"
    "      --types LIST     ask only these types, e.g. colour,count (default: all five); an image whose\n"
    "                       scene allows none of them gets no record\n"
    "  -q, --quiet          no progress line\n";

typedef struct {
    tool_progress bar;
    int quiet;
} prog_state;

static void on_progress(void *user, int64_t done, int64_t total) {
    prog_state *p = user;
    if (!p->quiet && (done % 256 == 0 || done == total)) tool_progress_update(&p->bar, (long)done);
}

/* "colour,count" -> bit mask; nonzero on an unknown or empty name. */
static int parse_types(const char *v, unsigned *mask) {
    *mask = 0;
    while (1) {
        size_t n = strcspn(v, ",");
        int found = -1;
        for (int t = 0; t < MRW_SQ_N; t++)
            if (strlen(mrw_scene_qtype_names[t]) == n && !strncmp(v, mrw_scene_qtype_names[t], n)) found = t;
        if (found < 0) return 1;
        *mask |= 1u << found;
        if (!v[n]) return 0;
        v += n + 1;
    }
}

static int cmp_answer(const void *a, const void *b) {
    const char *x = a, *y = b; /* the struct's first member is the answer text */
    size_t lx = strlen(x), ly = strlen(y);
    return lx != ly && x[0] >= '0' && x[0] <= '9' ? (lx < ly ? -1 : 1) : strcmp(x, y);
}

int cmd_gen_scenes(int argc, char **argv) {
    const char *cmd = "gen-scenes";
    mrw_gen_scenes_params p = {.seed = 1, .size = 64, .questions = 1, .split = MRW_SPLIT_TRAIN};
    int n = 0, quiet = 0;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strncmp(o, "--out", 5) || !strcmp(o, "-o")) p.out_dir = tool_value(&a, o);
        else if (!strncmp(o, "--n", 3) && (o[3] == 0 || o[3] == '=')) tool_int(&a, o, 1, 100000000, &n);
        else if (!strncmp(o, "--size", 6)) tool_int(&a, o, MRW_SCENE_MIN_SIZE, MRW_SCENE_MAX_SIZE, &p.size);
        else if (!strncmp(o, "--questions", 11)) tool_int(&a, o, 1, MRW_SQ_N, &p.questions);
        else if (!strcmp(o, "-q") || !strcmp(o, "--quiet")) quiet = 1;
        else if (!strncmp(o, "--seed", 6)) {
            const char *v = tool_value(&a, o);
            char *end = NULL;
            if (v) p.seed = strtoull(v, &end, 10);
            if (v && (!*v || *end || *v == '-')) {
                tool_fail(cmd, "--seed expects a non-negative integer, got '%s'", v);
                a.failed = 1;
            }
        } else if (!strncmp(o, "--types", 7)) {
            const char *v = tool_value(&a, o);
            if (v && parse_types(v, &p.types)) {
                tool_fail(cmd, "--types expects a comma-separated list of colour, shape, count, where, exists; got '%s'", v);
                a.failed = 1;
            }
        } else if (!strncmp(o, "--split", 7)) {
            const char *v = tool_value(&a, o);
            if (v && !strcmp(v, "train")) p.split = MRW_SPLIT_TRAIN;
            else if (v && !strcmp(v, "test")) p.split = MRW_SPLIT_TEST;
            else if (v) {
                tool_fail(cmd, "--split expects train or test, got '%s'", v);
                a.failed = 1;
            }
        } else tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    if (!p.out_dir) return tool_fail(cmd, "give the output directory with --out DIR"), 2;
    if (n < 1) return tool_fail(cmd, "give the number of images with --n N"), 2;
    p.n = n;
    prog_state ps = {.quiet = quiet};
    if (!quiet) tool_progress_start(&ps.bar, "scenes", n);
    p.progress = on_progress;
    p.progress_user = &ps;
    mrw_gen_scenes_stats st;
    mrw_error err = {0};
    if (mrw_gen_scenes(&p, &st, &err)) return tool_fail(cmd, "%s", err.msg);
    if (!quiet) tool_progress_finish(&ps.bar);
    const char *split = p.split == MRW_SPLIT_TEST ? "test" : "train";
    printf("%s: %lld images (%dx%d, %lld objects), %lld records in %s/%s.jsonl\n", split, (long long)st.images, p.size,
           p.size, (long long)st.objects, (long long)st.records, p.out_dir, split);
    printf("%-8s %8s  answers\n", "type", "records");
    for (int t = 0; t < MRW_SQ_N; t++) {
        printf("%-8s %8lld ", mrw_scene_qtype_names[t], (long long)st.per_type[t]);
        qsort(st.answers[t], (size_t)st.n_answers[t], sizeof st.answers[t][0], cmp_answer);
        for (int k = 0; k < st.n_answers[t]; k++)
            printf(" %s:%lld", st.answers[t][k].answer, (long long)st.answers[t][k].count);
        printf("\n");
    }
    return 0;
}
