/* Training data the way users have it, streamed: LLaVA JSON (a top-level array) or JSONL records
 * {"image": "file", "conversations": [{"from": "human"|"gpt", "value": "...<image>..."}]}, audio JSONL
 * manifests {"audio": "path", "text": "transcript"}, plain text JSONL {"text": "..."}, and CSV time series.
 *
 * A first pass indexes the byte offset, line and length of every record (16 bytes each, the records themselves
 * are not kept; a 1.2 GB JSON array of 1.5 M records indexes in a few seconds in 32 MiB); each epoch visits the records in a permutation drawn from (seed, epoch), so a position is just
 * (epoch, k) and resuming is exact. A record that is malformed (bad JSON, missing field, media file missing,
 * no assistant turn, …) is reported once as "file:line: reason" through the warn callback and skipped.
 *
 * Tokenisation follows the ModRWKV chat template (../shared/reference/rwkv7.md, modrwkv.md "Training"):
 * human turns become "\x16User: {text}\x17", gpt turns "\x16Assistant: {text}\x17"; labels are the next-token
 * targets and are MRW_IGNORE except on assistant turns (the "\x16Assistant:" prefix and the closing "\x17"
 * included). Audio records become "\x16Assistant: {transcript}\x17" after the audio (ASR). Text records are
 * trained on every token. The media marker ("<image>" in the first human turn; the audio position) is removed
 * from the text and reported as a token index: the trainer splices the features there (v1: before the text;
 * v2: as <|image_pad|> runs).
 *
 * Details (src/train/data.c):
 *   - Layout by content: a file whose first non-blank byte (after an optional UTF-8 BOM) is '[' is one JSON
 *     array of records (records may span lines; the index pass follows strings and escapes); anything else is
 *     JSONL (one record per non-blank line, LF or CRLF). A record's line is the line where it starts; in a
 *     file where records share lines (a one-line JSON array, as LLaVA ships them) messages add its byte offset.
 *   - Each turn is tokenised on its own and the turns are concatenated (a token boundary at every turn edge,
 *     which for the World vocabulary is also what tokenising the whole string gives, since no token holds
 *     0x16/0x17). A user turn is also cut at each "<image>" (only the marker itself is removed: LLaVA's
 *     "<image>\n" keeps its "\n"). Roles: human/user, gpt/assistant, system (case-insensitive);
 *     "\x16System: {text}\x17" is never trained on. "image" is a string or an array of up to 3 strings, one
 *     "<image>" per image in user turns; a record with neither image nor marker is a text-only conversation.
 *     A LLaVA record may also carry "audio" (a string or an array) with one "<audio>" marker per recording in
 *     user turns (a marker only in records with an "audio" field): a spoken question about an image is
 *     {"image", "audio", "conversations": [{"from": "human", "value": "<image><audio>"}, ...]}. The media
 *     (at most MRW_DATA_MAX_MEDIA in all) are listed in marker order (docs/MULTIMODAL.md).
 *   - ctx_len counts text tokens only (the trainer adds the feature rows); labels are those of the whole record,
 *     so the last kept position still predicts the first cut token; media whose marker was cut are dropped.
 *   - Records are visited in a Fisher-Yates permutation drawn from splitmix64 seeded by (seed, epoch); bad
 *     records are remembered (one bit each) and skipped silently after their first report.
 *   - mrw_data_tell returns the position of the next record to visit ((epoch + 1, 0) after an epoch's last
 *     record); mrw_data_seek to a position from tell (in this or another process, same files and params)
 *     continues with exactly the same samples. */
#ifndef MRW_TRAIN_DATA_H
#define MRW_TRAIN_DATA_H

#include <stdint.h>

#include "modrwkv.h"

typedef enum { MRW_DATA_AUTO = 0, MRW_DATA_TEXT, MRW_DATA_LLAVA, MRW_DATA_AUDIO } mrw_data_kind;
typedef enum { MRW_MEDIA_IMAGE = 1, MRW_MEDIA_AUDIO = 2 } mrw_media_kind;

#define MRW_DATA_MAX_MEDIA 3

/* (Named mrw_data_sample: mrw_sample is the sampler's function in modrwkv.h.) */
typedef struct {
    int32_t *tokens, *labels; /* n each; labels[i] is the target for position i (next token) or MRW_IGNORE */
    int n;
    int n_media;
    mrw_media_kind media_kind[MRW_DATA_MAX_MEDIA];
    char *media_path[MRW_DATA_MAX_MEDIA]; /* resolved against the data root */
    int media_pos[MRW_DATA_MAX_MEDIA];    /* token index before which the features go */
    /* Target of the last feature vector of media j: tokens[media_pos[j]] when that token is trained on (e.g. the
     * "\x16" that opens an ASR answer right after the audio), else MRW_IGNORE. labels[] describe the text
     * alone: once features are spliced before token p, the position p-1 has a feature as its next input and
     * the trainer gives it MRW_IGNORE (it always is MRW_IGNORE for a marker inside a user turn). */
    int32_t media_target[MRW_DATA_MAX_MEDIA];
    const char *file;                     /* the record's source, for messages */
    int64_t line;
    int64_t index;                        /* record number in the file order (over all files, 0-based) */
} mrw_data_sample;

typedef struct {
    mrw_data_kind kind;
    const char *root;     /* media paths are relative to it (default: the data file's directory) */
    const mrw_vocab *vocab;
    int ctx_len;          /* samples are truncated to this many tokens (0 = no limit) */
    uint64_t seed;
    int shuffle;          /* 1: a permutation per epoch; 0: file order */
    void (*warn)(void *user, const char *msg); /* NULL: "warning: msg" on stderr */
    void *warn_user;
    int64_t max_record_bytes; /* a longer record is reported and skipped; 0: 64 MiB (at most 128 MiB - 1) */
} mrw_data_params;

typedef struct mrw_data mrw_data;

/* One or more files (same kind). Indexes them; fails only if nothing usable is found or a file can't be read:
 * every file must hold at least one good record (MRW_E_FORMAT "file: no usable record" otherwise). With
 * MRW_DATA_AUTO the kind is that of the first JSON object record: "conversations" -> LLaVA, else "audio" ->
 * audio, else "text" -> text. Warnings stop after 1000 (with a message saying so). */
mrw_status mrw_data_open(const char *const *paths, int n_paths, const mrw_data_params *params, mrw_data **out,
                         mrw_error *err);
void mrw_data_free(mrw_data *d);
int64_t mrw_data_count(const mrw_data *d); /* records indexed */
/* The next good sample (skipping bad ones with a warning); at the end of an epoch starts the next one.
 * The sample's buffers stay valid until the next call. */
mrw_status mrw_data_next(mrw_data *d, mrw_data_sample *s, mrw_error *err);
/* Position for checkpoints: (epoch, k-th record of that epoch's order). */
void mrw_data_tell(const mrw_data *d, int64_t *epoch, int64_t *k);
mrw_status mrw_data_seek(mrw_data *d, int64_t epoch, int64_t k, mrw_error *err);

/* CSV time series: a header row, then numeric rows. Selected columns (names) are returned as
 * column-major float arrays [n_cols][n_rows]; a missing column, a non-numeric cell, an empty cell, NaN or Inf
 * is an error "file:line: column 'X': …" (never a silent NaN). columns NULL / n_columns 0: every column whose
 * first data cell is a number (a date column is left out). Quoted fields ("" = a quote), CRLF, a BOM and blank
 * lines are accepted; a row with another field count than the header is an error. */
typedef struct {
    int n_cols;
    int64_t n_rows;
    char **names;
    float *values; /* n_cols * n_rows, column-major */
} mrw_csv_series;
mrw_status mrw_csv_read(const char *path, const char *const *columns, int n_columns, mrw_csv_series *out,
                        mrw_error *err);
void mrw_csv_series_free(mrw_csv_series *s);
/* The sampling interval of a CSV series in seconds: the median step between consecutive timestamps of its first
 * date column (the first column whose first data cell reads as "YYYY-MM-DD[ HH:MM[:SS]]" or "YYYY/MM/DD ...")
 * over up to its first 257 data rows. MRW_E_FORMAT (naming the file) when no column holds dates or the
 * timestamps never increase. */
mrw_status mrw_csv_interval(const char *path, double *seconds, mrw_error *err);
/* "15min", "10m", "1h", "2d", "1w", "30s" or plain seconds ("3600") -> seconds (> 0); -1 when not a duration. */
double mrw_parse_duration(const char *s);

/* On-disk cache of frozen-encoder features, keyed by (encoder id, media path, size, mtime): computed once,
 * reused across epochs and runs; entries are written atomically (tmp + fsync + rename). One file per item:
 * DIR/<encoder_id>/<hash of the canonical media path>.f32 with a header (rows, cols, source path, size, mtime)
 * checked on get: a stale, truncated or foreign entry reads as "not cached" (0) and the next put replaces it.
 * encoder_id must be 1-128 characters of [A-Za-z0-9._-] (it names a directory); a missing media file is an
 * error (<0). Put the encoder's weights file name or hash into the id so that features of another encoder
 * are never reused. */
typedef struct mrw_feature_cache mrw_feature_cache;
mrw_status mrw_feature_cache_open(const char *dir, const char *encoder_id, mrw_feature_cache **out, mrw_error *err);
void mrw_feature_cache_free(mrw_feature_cache *c);
/* 1 = found (*data malloc'd, rows x cols), 0 = not cached, <0 = error. */
int mrw_feature_cache_get(mrw_feature_cache *c, const char *media_path, float **data, int *rows, int *cols,
                          mrw_error *err);
mrw_status mrw_feature_cache_put(mrw_feature_cache *c, const char *media_path, const float *data, int rows, int cols,
                                 mrw_error *err);

#endif
