/* Generated scenes for visual question answering: 1-5 coloured shapes on a plain noisy background, each in
 * its own slot (left, right, top, bottom, centre), rendered antialiased by the rasteriser here, and questions
 * whose answers are one word or number (colour of the X, shape of the Y-coloured object, how many Zs, where
 * is the W, is there a V).
 *
 * Everything is a pure function of (seed, split, index): the scene of record i of a split is drawn from a
 * splitmix64 stream seeded by a hash of the three, so any record can be regenerated alone, and the train and
 * test splits of one seed never share a stream (the held-out split is "the same seed, split test").
 *
 * The slots keep the objects apart (no overlap, so every object is fully visible and "where" has one
 * answer). Sizes: "small" (radius 0.085 of the side) and "large" (0.125), up to 8% smaller; centres are
 * jittered by up to 0.01 of the side, which leaves a gap of at least 0.05 of the side between neighbours. The background is a grey between 90 and 170 with a slight tint and +-4 levels of
 * per-pixel noise, far from every palette colour. */
#ifndef MRW_GEN_SCENES_H
#define MRW_GEN_SCENES_H

#include <stddef.h>
#include <stdint.h>

#include "modrwkv.h"

#define MRW_SCENE_MAX_OBJECTS 5
#define MRW_SCENE_N_SHAPES 6
#define MRW_SCENE_N_COLOURS 8
#define MRW_SCENE_N_POSITIONS 5
#define MRW_SCENE_MIN_SIZE 32
#define MRW_SCENE_MAX_SIZE 1024

extern const char *const mrw_scene_shape_names[MRW_SCENE_N_SHAPES];   /* circle square triangle star diamond cross */
extern const char *const mrw_scene_colour_names[MRW_SCENE_N_COLOURS]; /* red green blue yellow purple orange white black */
extern const uint8_t mrw_scene_palette[MRW_SCENE_N_COLOURS][3];
extern const char *const mrw_scene_position_names[MRW_SCENE_N_POSITIONS]; /* left right top bottom centre */

typedef struct {
    int shape, colour, position; /* indices into the name tables */
    int large;                   /* size class: 0 small, 1 large */
    float cx, cy, r;             /* centre and radius in pixels (pixel centres are at i + 0.5) */
} mrw_scene_object;

typedef struct {
    int size; /* the image is size x size */
    int n;    /* objects */
    mrw_scene_object obj[MRW_SCENE_MAX_OBJECTS];
    uint8_t background[3];
    uint64_t noise_seed;
} mrw_scene;

typedef enum {
    MRW_SQ_COLOUR = 0, /* "What colour is the star?" -> "red" (asked of a shape the scene holds once) */
    MRW_SQ_SHAPE,      /* "What shape is the red object?" -> "star" (a colour the scene holds once) */
    MRW_SQ_COUNT,      /* "How many stars are there?" -> "2" (0-5) */
    MRW_SQ_WHERE,      /* "Where is the star?" -> "left" (a shape, or colour + shape, the scene holds once) */
    MRW_SQ_EXISTS,     /* "Is there a red star?" -> "yes" / "no" */
    MRW_SQ_N
} mrw_scene_qtype;
extern const char *const mrw_scene_qtype_names[MRW_SQ_N]; /* colour shape count where exists */

typedef enum { MRW_SPLIT_TRAIN = 0, MRW_SPLIT_TEST = 1 } mrw_scene_split;

/* The scene of record `index` of a split; size in [MRW_SCENE_MIN_SIZE, MRW_SCENE_MAX_SIZE]. */
void mrw_scene_make(uint64_t seed, mrw_scene_split split, int64_t index, int size, mrw_scene *out);

/* Draws the scene into rgb (size*size*3 bytes, rows top to bottom). */
void mrw_scene_render(const mrw_scene *s, uint8_t *rgb);

/* The shape's coverage of the point (x, y) in pixel coordinates: 1 inside, 0 outside (exact geometry). */
int mrw_scene_inside(const mrw_scene_object *o, double x, double y);

/* Writes question and answer of the given type for the scene, drawing its choices from *rng (a splitmix64
 * state). Returns 0 when the scene cannot be asked that type (no shape or colour that occurs exactly once). */
int mrw_scene_question(const mrw_scene *s, mrw_scene_qtype type, uint64_t *rng, char *q, size_t qn, char *a,
                       size_t an);

/* A whole dataset: DIR/<split>/NNNNNN.png, DIR/<split>.jsonl (LLaVA records, `questions` per image, each
 * with "id", "image", "conversations" and "question_type") and DIR/<split>_spec.jsonl (one line per image:
 * the scene as JSON, for checks). Files are written atomically; DIR and DIR/<split> are created. */
typedef struct {
    const char *out_dir;
    int64_t n;     /* images */
    uint64_t seed;
    mrw_scene_split split;
    int size;      /* default 64 */
    int questions; /* per image, 1-5 (distinct types where the scene allows); default 1 */
    unsigned types; /* bit t set: questions of type t may be asked; 0 = all types */
    void (*progress)(void *user, int64_t done, int64_t total);
    void *progress_user;
} mrw_gen_scenes_params;

typedef struct {
    int64_t images, records;
    int64_t per_type[MRW_SQ_N];
    int64_t objects;
    /* answer histogram per type (every answer of every type fits: at most 8 distinct) */
    struct {
        char answer[16];
        int64_t count;
    } answers[MRW_SQ_N][16];
    int n_answers[MRW_SQ_N];
} mrw_gen_scenes_stats;

mrw_status mrw_gen_scenes(const mrw_gen_scenes_params *p, mrw_gen_scenes_stats *stats, mrw_error *err);

#endif
