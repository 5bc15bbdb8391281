/* Training data the way users have it, streamed: LLaVA JSON (a top-level array) or JSONL records
 * {"image": "file", "conversations": [{"from": "human"|"gpt", "value": "...<image>..."}]}, audio JSONL
 * manifests {"audio": "path", "text": "transcript"}, plain text JSONL {"text": "..."}, and CSV time series.
 *
 * A first pass indexes the byte offset and line of every record (8+8 bytes each, the records themselves are not
 * kept); each epoch visits the records in a permutation drawn from (seed, epoch), so a position is just
 * (epoch, k) and resuming is exact. A record that is malformed (bad JSON, missing field, media file missing,
 * no assistant turn, …) is reported once as "file:line: reason" through the warn callback and skipped.
 *
 * Tokenisation follows the ModRWKV chat template (../shared/reference/rwkv7.md, modrwkv.md "Training"):
 * human turns become "\x16User: {text}\x17", gpt turns "\x16Assistant: {text}\x17"; labels are the next-token
 * targets and are MRW_IGNORE except on assistant turns (the "\x16Assistant:" prefix and the closing "\x17"
 * included). Audio records become "\x16Assistant: {transcript}\x17" after the audio (ASR). Text records are
 * trained on every token. The media marker ("<image>" in the first human turn; the audio position) is removed
 * from the text and reported as a token index: the trainer splices the features there (v1: before the text;
 * v2: as <|image_pad|> runs). */
#ifndef MRW_TRAIN_DATA_H
#define MRW_TRAIN_DATA_H

#include <stdint.h>

#include "modrwkv.h"

typedef enum { MRW_DATA_AUTO = 0, MRW_DATA_TEXT, MRW_DATA_LLAVA, MRW_DATA_AUDIO } mrw_data_kind;
typedef enum { MRW_MEDIA_IMAGE = 1, MRW_MEDIA_AUDIO = 2 } mrw_media_kind;

#define MRW_DATA_MAX_MEDIA 3

typedef struct {
    int32_t *tokens, *labels; /* n each; labels[i] is the target for position i (next token) or MRW_IGNORE */
    int n;
    int n_media;
    mrw_media_kind media_kind[MRW_DATA_MAX_MEDIA];
    char *media_path[MRW_DATA_MAX_MEDIA]; /* resolved against the data root */
    int media_pos[MRW_DATA_MAX_MEDIA];    /* token index before which the features go */
    const char *file;                     /* the record's source, for messages */
    int64_t line;
    int64_t index;                        /* record number in the file order */
} mrw_sample;

typedef struct {
    mrw_data_kind kind;
    const char *root;     /* media paths are relative to it (default: the data file's directory) */
    const mrw_vocab *vocab;
    int ctx_len;          /* samples are truncated to this many tokens (0 = no limit) */
    uint64_t seed;
    int shuffle;          /* 1: a permutation per epoch; 0: file order */
    void (*warn)(void *user, const char *msg);
    void *warn_user;
} mrw_data_params;

typedef struct mrw_data mrw_data;

/* One or more files (same kind). Indexes them; fails only if nothing usable is found or a file can't be read. */
mrw_status mrw_data_open(const char *const *paths, int n_paths, const mrw_data_params *params, mrw_data **out,
                         mrw_error *err);
void mrw_data_free(mrw_data *d);
int64_t mrw_data_count(const mrw_data *d); /* records indexed */
/* The next good sample (skipping bad ones with a warning); at the end of an epoch starts the next one.
 * The sample's buffers stay valid until the next call. */
mrw_status mrw_data_next(mrw_data *d, mrw_sample *s, mrw_error *err);
/* Position for checkpoints: (epoch, k-th record of that epoch's order). */
void mrw_data_tell(const mrw_data *d, int64_t *epoch, int64_t *k);
mrw_status mrw_data_seek(mrw_data *d, int64_t epoch, int64_t k, mrw_error *err);

/* CSV time series: a header row, then numeric rows. Selected columns (names) are returned as
 * column-major float arrays [n_cols][n_rows]; a missing column, a non-numeric cell, an empty cell, NaN or Inf
 * is an error "file:line: column 'X': …" (never a silent NaN). */
typedef struct {
    int n_cols;
    int64_t n_rows;
    char **names;
    float *values; /* n_cols * n_rows, column-major */
} mrw_csv_series;
mrw_status mrw_csv_read(const char *path, const char *const *columns, int n_columns, mrw_csv_series *out,
                        mrw_error *err);
void mrw_csv_series_free(mrw_csv_series *s);

/* On-disk cache of frozen-encoder features, keyed by (encoder id, media path, size, mtime): computed once,
 * reused across epochs and runs; entries are written atomically (tmp + fsync + rename). */
typedef struct mrw_feature_cache mrw_feature_cache;
mrw_status mrw_feature_cache_open(const char *dir, const char *encoder_id, mrw_feature_cache **out, mrw_error *err);
void mrw_feature_cache_free(mrw_feature_cache *c);
/* 1 = found (*data malloc'd, rows x cols), 0 = not cached, <0 = error. */
int mrw_feature_cache_get(mrw_feature_cache *c, const char *media_path, float **data, int *rows, int *cols,
                          mrw_error *err);
mrw_status mrw_feature_cache_put(mrw_feature_cache *c, const char *media_path, const float *data, int rows, int cols,
                                 mrw_error *err);

#endif
