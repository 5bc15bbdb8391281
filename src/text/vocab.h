/* The RWKV World vocabulary (internal view): loading from the text file, from GGUF metadata, the GGUF token
 * string escaping, and the tokenizer's extended entry point. The public part is in include/modrwkv.h.
 *
 * A vocabulary maps ids to byte strings. Each id is one of:
 *   NONE    no text (id 0 = end of text in the World vocabulary, padding, holes in the id range);
 *   NORMAL  produced by tokenization (greedy longest match over bytes, exactly like the reference
 *           rwkv.rwkv_tokenizer.TRIE_TOKENIZER.encodeBytes);
 *   SPECIAL decode-only: has text but plain tokenization never produces it (ModRWKV v2's <|vision_start|>,
 *           <|vision_end|>, <|image_pad|>, and GGUF control tokens). MRW_TOKENIZE_SPECIAL opts in. */
#ifndef MRW_TEXT_VOCAB_H
#define MRW_TEXT_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "formats/tensorfile.h"
#include "modrwkv.h"

/* Well-known ids of the World vocabulary and the ModRWKV chat template. */
enum {
    MRW_TOK_EOT = 0,           /* end of text: never produced by text; generation bans it */
    MRW_TOK_TURN_START = 23,   /* "\x16" */
    MRW_TOK_TURN_END = 24,     /* "\x17": generation stops here */
    MRW_TOK_DOUBLE_NL = 261,   /* "\n\n" */
    MRW_TOK_VISION_START = 65530,
    MRW_TOK_VISION_END = 65531,
    MRW_TOK_IMAGE_PAD = 65532,
};

/* Limits for untrusted vocabulary files. */
#define MRW_VOCAB_MAX_ID (1 << 20)      /* ids must be below this */
#define MRW_VOCAB_MAX_TOKEN 4096        /* bytes of one token */
#define MRW_VOCAB_MAX_LINE 65536        /* bytes of one line of the text file */
#define MRW_VOCAB_MAX_FILE (256u << 20) /* bytes of the whole text file */

typedef enum { MRW_TOKEN_NONE = 0, MRW_TOKEN_NORMAL = 1, MRW_TOKEN_SPECIAL = 2 } mrw_token_kind;

/* GGUF token types (llama.cpp's llama_token_type numbering). */
enum {
    MRW_GGUF_TOKEN_NORMAL = 1,
    MRW_GGUF_TOKEN_UNKNOWN = 2,
    MRW_GGUF_TOKEN_CONTROL = 3,
    MRW_GGUF_TOKEN_USER_DEFINED = 4,
    MRW_GGUF_TOKEN_UNUSED = 5,
    MRW_GGUF_TOKEN_BYTE = 6,
};

/* Parses a vocabulary file held in memory (LF or CRLF). `name` names the source in error messages ("<memory>"
 * if NULL). The v2 specials are added at 65530..65532 where the file leaves those ids free. */
mrw_status mrw_vocab_load_mem(const void *buf, size_t len, const char *name, mrw_vocab **out, mrw_error *err);

/* Builds the vocabulary embedded in GGUF metadata when tokenizer.ggml.model is "rwkv" (llama.cpp's layout:
 * tokenizer.ggml.tokens holds Python's repr of each token's bytes without the b'' quotes, token 0 is the
 * control token "<s>", padding "[PAD<i>]" may follow; tokenizer.ggml.token_type is optional). MRW_E_MISSING
 * if the file has no such tokenizer. Token 0 never has text; control tokens become decode-only specials;
 * the v2 specials are added where their ids have no text. */
mrw_status mrw_vocab_from_gguf_meta(const mrw_tfile *f, mrw_vocab **out, mrw_error *err);

mrw_token_kind mrw_vocab_token_kind(const mrw_vocab *v, int32_t id);
/* Number of ids that tokenization can produce. */
int mrw_vocab_n_normal(const mrw_vocab *v);
/* Id of the token whose bytes are `text` (normal tokens first, then specials); -1 if none. */
int32_t mrw_vocab_find(const mrw_vocab *v, const void *text, size_t len);

/* Escapes bytes as llama.cpp stores an RWKV token: Python's repr(bytes)[2:-1] (\\ \t \n \r, the quote repr
 * would use, \xNN for other bytes outside 0x20..0x7e). Writes a NUL-terminated string when it fits in cap and
 * returns its length (without the NUL) either way, like snprintf. */
size_t mrw_gguf_escape_token(const uint8_t *bytes, size_t n, char *out, size_t cap);
/* The inverse: \t \n \r \xNN (two hex digits, either case) and a backslash before any other character yields
 * that character. `out` needs n bytes. MRW_E_FORMAT for a dangling backslash or a bad \x escape. */
mrw_status mrw_gguf_unescape_token(const char *s, size_t n, uint8_t *out, size_t *out_len, mrw_error *err);
/* The GGUF token string and type of one id, for writing tokenizer.ggml.tokens / token_type the way
 * llama.cpp's converter does: id 0 (no text) is "<s>" (CONTROL), other ids without text are "[PAD<id>]"
 * (UNUSED), normal tokens are NORMAL. Specials are CONTROL with their text (so 65530..65532 name the ModRWKV
 * image tokens where llama.cpp writes padding; both read back to the same vocabulary). Returned like
 * mrw_gguf_escape_token. Ids past the end of the vocabulary are padding: write ids 0..n_vocab-1. */
size_t mrw_vocab_gguf_token_string(const mrw_vocab *v, int32_t id, char *out, size_t cap);
int mrw_vocab_gguf_token_type(const mrw_vocab *v, int32_t id);

/* mrw_tokenize_ex and MRW_TOKENIZE_SPECIAL are public (include/modrwkv.h). */

/* ---- shared between vocab.c and tokenizer.c ---- */

/* One cell of the double-array trie: the child of state s on byte c is t = base[s] + c if check[t] == s.
 * val is the token id that ends at this state, or -1. */
typedef struct {
    int32_t base, check, val;
} mrw_dat_cell;

typedef struct {
    uint32_t off;  /* into the byte pool */
    uint16_t len;  /* bytes (<= MRW_VOCAB_MAX_TOKEN) */
    uint8_t kind;  /* mrw_token_kind */
    uint8_t pad_;
} mrw_vocab_entry;

struct mrw_vocab {
    int32_t n_ids; /* largest id + 1 */
    mrw_vocab_entry *ent;
    uint8_t *pool;
    size_t pool_len;
    mrw_dat_cell *dat; /* the encoding trie over NORMAL tokens; root = cell 0 */
    int32_t n_dat;
    int32_t n_normal;
    int32_t *specials; /* SPECIAL ids, longest text first (for MRW_TOKENIZE_SPECIAL) */
    int32_t n_specials;
};

/* Builds v->dat from the NORMAL entries. `order` lists the NORMAL ids in file order: when two tokens have
 * the same bytes the later one wins, as in the reference (its bytes->id dict keeps the last assignment). */
mrw_status mrw_vocab_build_trie(mrw_vocab *v, const int32_t *order, int32_t n, mrw_error *err);

#endif
