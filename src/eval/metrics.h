/* Evaluation metrics: exact match with VQA-style answer normalisation, VQAv2 consensus accuracy, WER and CER
 * (Levenshtein distance over words / Unicode code points), MSE and MAE.
 *
 * All text is UTF-8. Bytes that are not valid UTF-8 count as one character each (a distinct "invalid byte"
 * character per byte value), so no input is rejected for its encoding.
 *
 * VQA answer normalisation (mrw_vqa_normalize), modelled on the official VQAv2 evaluation (vqaEval.py):
 *   1. '\n' and '\t' become spaces; leading and trailing ASCII whitespace is removed.
 *   2. Punctuation. For each character p of  ; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !  : if the text contains
 *      "p " or " p", or the text contains a digit-comma-digit sequence anywhere, every p is deleted;
 *      otherwise every p becomes a space. (So "t-shirt" -> "t shirt", "1,000" -> "1000", "yes !" -> "yes".)
 *   3. Every '.' not followed by an ASCII digit is deleted ("3.5" keeps its point, "dog." -> "dog").
 *   4. ASCII letters are lower-cased; the text is split at runs of ASCII whitespace; the words none, zero,
 *      one, ..., ten become 0, 0, 1, ..., 10; the articles a, an, the are dropped; the words are joined by
 *      single spaces.
 *   Differences from vqaEval.py, on purpose: (a) its contraction table ("dont" -> "don't", ...) is not
 *   applied, apostrophes stay as written; (b) its period rule stops after 32 replacements (a Python re.sub
 *   quirk), ours does not; (c) only ASCII letters are lower-cased and only ASCII digits count as digits;
 *   (d) the official code normalises the prediction only when the human answers disagree, we always
 *   normalise both sides.
 *
 * ASR text normalisation (mrw_asr_normalize), applied by `modrwkv eval` before WER/CER unless asked not to:
 *   ASCII letters lower-cased; ASCII punctuation other than the apostrophe, general punctuation
 *   (U+2000-U+206F except U+2019, which becomes an apostrophe), CJK symbols and punctuation (U+3000-U+303F)
 *   and full-width punctuation (U+FF01-U+FF0F, U+FF1A-U+FF20, U+FF3B-U+FF40, U+FF5B-U+FF65) become spaces;
 *   whitespace runs collapse to one space; leading and trailing spaces are removed.
 *
 * WER: words are the maximal runs of non-whitespace (ASCII whitespace) characters; errors = minimal number
 * of word substitutions + deletions + insertions turning the reference into the hypothesis.
 * CER: characters are Unicode code points after removing leading/trailing whitespace and collapsing inner
 * whitespace runs to one space (or, with remove_spaces, removing all whitespace: the Chinese convention).
 * A corpus rate is sum(errors) / sum(reference length), as jiwer computes it over a list of pairs. */
#ifndef MRW_EVAL_METRICS_H
#define MRW_EVAL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "modrwkv.h"

/* WER/CER refuse (MRW_E_LIMIT) a side longer than MRW_METRICS_MAX_UNITS words/characters, or a pair whose
 * dynamic-programming table (hypothesis x reference units) exceeds MRW_METRICS_MAX_CELLS: about a second. */
#define MRW_METRICS_MAX_UNITS 100000
#define MRW_METRICS_MAX_CELLS 400000000ll

/* VQA normalisation of s[0..len) (see above). Returns a malloc'd NUL-terminated string, NULL when out of
 * memory. */
char *mrw_vqa_normalize(const char *s, size_t len);
/* 1 if pred and ref are equal after mrw_vqa_normalize, 0 if not, -1 when out of memory. */
int mrw_exact_match(const char *pred, const char *ref);
/* VQAv2 consensus accuracy of pred against n human answers (normally 10): the mean over each answer left
 * out of min(1, matches among the other n-1 / 3); with n == 1 it is the exact match. Answers are compared
 * after normalisation. Returns a value in [0, 1], or -1 when n < 1 or out of memory. */
double mrw_vqa_accuracy(const char *pred, const char *const *refs, int n);

/* ASR normalisation (see above): malloc'd, NULL when out of memory. */
char *mrw_asr_normalize(const char *s, size_t len);
/* 1 if s contains a CJK ideograph, kana or hangul syllable (the texts whose CER ignores spaces). */
int mrw_text_has_cjk(const char *s);

typedef struct {
    int64_t errors;  /* edit distance */
    int64_t ref_len; /* words or characters of the reference */
    int64_t hyp_len;
} mrw_edit_stats;

mrw_status mrw_wer_stats(const char *hyp, const char *ref, mrw_edit_stats *out, mrw_error *err);
mrw_status mrw_cer_stats(const char *hyp, const char *ref, int remove_spaces, mrw_edit_stats *out, mrw_error *err);
/* errors / ref_len; for an empty reference: 0 if the hypothesis is empty too, else 1. */
double mrw_edit_rate(const mrw_edit_stats *s);

/* Levenshtein distance between two sequences of 32-bit units (code points, or word ids that the WER code
 * assigns by exact string comparison). Returns -1 when out of memory. */
int64_t mrw_levenshtein_u32(const uint32_t *a, size_t na, const uint32_t *b, size_t nb);

/* Mean squared / absolute error of n pairs, accumulated in double. n == 0 gives 0. */
double mrw_mse(const float *pred, const float *ref, size_t n);
double mrw_mae(const float *pred, const float *ref, size_t n);

#endif
