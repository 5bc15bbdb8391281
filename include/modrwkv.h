/* modrwkv: RWKV-7 / ModRWKV inference in C.
 *
 * One public header. Conventions:
 *   - Every fallible function returns an mrw_status (MRW_OK == 0) and, when `err` is non-NULL, writes a
 *     human-readable message into it. There is no global error state and no global mutable state.
 *   - Handles are opaque. A model (mrw_model) is immutable once loaded and may be shared by many contexts
 *     and states; a context (mrw_context) holds scratch memory and threads and is used by one thread at a
 *     time; a state (mrw_state) is the whole RNN memory of one sequence and is plain data you may copy,
 *     save, restore and fork.
 *   - Token ids are int32. Logits are float32.
 */
#ifndef MODRWKV_H
#define MODRWKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MRW_VERSION "0.1.0"

/* ---------------------------------------------------------------------------------------------- errors */

typedef enum {
    MRW_OK = 0,
    MRW_E_ARG,         /* the caller passed an invalid argument */
    MRW_E_IO,          /* the file system failed (open, read, write, rename) */
    MRW_E_FORMAT,      /* a file is malformed, truncated or inconsistent */
    MRW_E_UNSUPPORTED, /* well-formed but not supported (dtype, architecture, feature) */
    MRW_E_SHAPE,       /* tensor shapes disagree with each other or with the model */
    MRW_E_MISSING,     /* a required tensor is missing */
    MRW_E_UNKNOWN,     /* a tensor the architecture does not have */
    MRW_E_SECURITY,    /* refused on purpose: e.g. a pickle GLOBAL that is not allow-listed */
    MRW_E_NOMEM,       /* an allocation failed */
    MRW_E_LIMIT,       /* an input exceeds a size limit */
    MRW_E_INTERNAL,    /* a bug: please report it */
} mrw_status;

typedef struct {
    mrw_status code;
    char msg[512];
} mrw_error;

const char *mrw_status_name(mrw_status s);

/* ---------------------------------------------------------------------------------------------- dtypes */

/* Element types. Quantized types store blocks of 32 consecutive elements of a row (the last dimension),
 * in the GGUF/ggml block layouts: Q8_0 = f16 scale + 32 int8; Q4_0 = f16 scale + 16 bytes of nibbles
 * (byte j holds element j in its low nibble and element j+16 in its high nibble, value = d * (q - 8)). */
typedef enum {
    MRW_DT_F32 = 0,
    MRW_DT_F16,
    MRW_DT_BF16,
    MRW_DT_Q8_0,
    MRW_DT_Q4_0,
    MRW_DT_F64,
    MRW_DT_I64,
    MRW_DT_I32,
    MRW_DT_I16,
    MRW_DT_I8,
    MRW_DT_U8,
    MRW_DT_BOOL,
    MRW_DT_COUNT,
    MRW_DT_AUTO = -1 /* "keep what the file has" where a dtype is requested */
} mrw_dtype;

const char *mrw_dtype_name(mrw_dtype t);           /* "f32", "q8_0", ... */
int mrw_dtype_parse(const char *name, mrw_dtype *out); /* 0 on success, -1 if unknown */

/* ---------------------------------------------------------------------------------------------- tensors */

/* Reads one tensor of a safetensors / .pth / GGUF file as f32 (malloc'd; free it). name NULL: the file must
 * hold exactly one tensor. shape (may be NULL) receives up to 8 dimensions, *ndim their count. */
mrw_status mrw_read_tensor_f32(const char *path, const char *name, float **data, size_t *n, int64_t *shape,
                               int *ndim, mrw_error *err);

/* ----------------------------------------------------------------------------------------------- model */

typedef struct mrw_model mrw_model;
typedef struct mrw_vocab mrw_vocab;

typedef struct {
    int n_layer;
    int n_embd;    /* C */
    int n_head;    /* H = C / head_size */
    int head_size; /* N = 64 in every released model */
    int n_ffn;     /* F */
    int n_vocab;   /* rows of emb / head */
    int lora_w, lora_a, lora_v, lora_g; /* LoRA ranks, read from tensor shapes */
    mrw_dtype weight_dtype; /* dtype of the big matrices as loaded (the most common one) */
    int64_t n_params;
    int64_t weight_bytes; /* bytes of all weights as held in memory */
    int64_t decode_bytes; /* weight bytes read per decoded token: all but the embedding table, of which one row */
} mrw_model_info;

typedef struct {
    /* Convert the big matrices (emb, head, r/k/v/o, ffn key/value) to this dtype at load time, or keep the
     * file's dtype with MRW_DT_AUTO. Vectors are held in f32; the LoRA matrices in f32, or in their file's
     * f16/bf16 unless f32 is asked for (they always multiply f32 activations, so this is exact). */
    mrw_dtype weight_dtype;
    /* Print a progress line while converting on load (to stderr). */
    int progress;
    /* 1: keep every matrix row-major as in the file (for a model that is only converted or inspected). 0 (default):
     * decode's layout: matrices with long rows (the FFN value matrix from n_embd 1024 at f16) are copied into column
     * slices, which makes decode up to 2x faster on them (docs/PERFORMANCE.md, "Long rows"), and q4_0 rows are
     * interleaved for the decode kernel (up to 1.4x on one thread, "q4_0: interleaved rows"). Results are the same
     * either way up to fp32 summation order; files written from either are the same. */
    int file_layout;
} mrw_load_params;

mrw_load_params mrw_load_params_default(void);

/* Loads an RWKV-7 model from a .pth (official layout), .safetensors or GGUF (arch "rwkv7") file; the format
 * is detected from the file's content. Shapes, layer count, head count and LoRA ranks come from the tensors. */
mrw_status mrw_model_load(const char *path, const mrw_load_params *params, mrw_model **out, mrw_error *err);
void mrw_model_free(mrw_model *model);
mrw_model_info mrw_model_get_info(const mrw_model *model);
/* The embedding row of a token (n_embd floats, before ln0): lets callers splice token rows and modality
 * features into one mrw_eval_embeddings call. */
mrw_status mrw_model_embedding(const mrw_model *model, int32_t token, float *out);

/* A model with random weights (reference init distributions), for tests, benchmarks and demos. Big matrices
 * are created directly in `dtype`; LoRA ranks of 0 pick the published defaults for n_embd. */
typedef struct {
    int n_layer, n_embd, head_size, n_ffn, n_vocab;
    int lora_w, lora_a, lora_v, lora_g;
} mrw_rwkv7_config;

mrw_status mrw_model_new_random(const mrw_rwkv7_config *cfg, mrw_dtype dtype, uint64_t seed, mrw_model **out,
                                mrw_error *err);

typedef enum { MRW_FILE_AUTO = 0, MRW_FILE_SAFETENSORS, MRW_FILE_PTH, MRW_FILE_GGUF } mrw_file_type;

/* Writes the model as loaded (big matrices in their in-memory dtype; vectors and LoRAs f32): .pth and
 * .safetensors in the official key layout, GGUF in llama.cpp's rwkv7 layout with `vocab` embedded when
 * given. MRW_FILE_AUTO picks the type from the extension. Atomic; progress on stderr when asked. */
mrw_status mrw_model_save(const mrw_model *model, const char *path, mrw_file_type type, const mrw_vocab *vocab,
                          int progress, mrw_error *err);

/* ----------------------------------------------------------------------------------------------- state */

/* The whole RNN memory of one sequence: per layer the token-shift vectors of time mix and channel mix (C
 * floats each) and the WKV matrices (H x N x N floats), all fp32. */
typedef struct mrw_state mrw_state;

mrw_state *mrw_state_new(const mrw_model *model); /* zero state; NULL when out of memory */
void mrw_state_free(mrw_state *state);
void mrw_state_reset(mrw_state *state);                           /* back to zero */
mrw_status mrw_state_copy(mrw_state *dst, const mrw_state *src); /* same model shape required */
/* Raw access: n floats laid out per layer as [sx_att C][wkv H*N*N][sx_ffn C]. */
float *mrw_state_data(mrw_state *state, size_t *n_floats);
/* Saves to / restores from a file that records the model shape and a checksum; loading into a state of a
 * different shape or from a corrupt file fails with a clear error. Saving is atomic (temp file + rename). */
mrw_status mrw_state_save(const mrw_state *state, const char *path, mrw_error *err);
mrw_status mrw_state_load(mrw_state *state, const char *path, mrw_error *err);

/* --------------------------------------------------------------------------------------------- context */

typedef struct mrw_context mrw_context;

typedef struct {
    int n_threads; /* 0: one per available core */
    int max_chunk; /* tokens per sequence-mode chunk (bounds scratch memory); 0: default 512 */
    /* Prefill normally rounds activations for the fast GEMMs (to bf16 for bf16 weights, to 8-bit per 32-block
     * for q8_0/q4_0, as llama.cpp does). exact = 1 keeps them f32 in every kernel, so sequence mode matches
     * RNN mode to fp32 rounding for every dtype, at a lower prefill speed for those dtypes. */
    int exact;
} mrw_context_params;

mrw_context_params mrw_context_params_default(void);
mrw_status mrw_context_new(const mrw_model *model, const mrw_context_params *params, mrw_context **out,
                           mrw_error *err);
void mrw_context_free(mrw_context *ctx);
const mrw_model *mrw_context_model(const mrw_context *ctx);
int mrw_context_n_threads(const mrw_context *ctx);

/* ---------------------------------------------------------------------------------------------- forward */

typedef enum {
    MRW_LOGITS_NONE = 0, /* only advance the state */
    MRW_LOGITS_LAST,     /* logits of the last position: n_vocab floats */
    MRW_LOGITS_ALL,      /* logits of every position: n x n_vocab floats */
} mrw_logits_mode;

/* Feeds n tokens through the model in sequence mode (token-parallel GEMMs, then the WKV scan), advancing
 * `state`. n == 1 is RNN mode. Token ids must lie in [0, n_vocab). */
mrw_status mrw_eval_tokens(mrw_context *ctx, mrw_state *state, const int32_t *tokens, int n,
                           mrw_logits_mode mode, float *logits, mrw_error *err);

/* Like mrw_eval_tokens, but the input rows are given as embeddings (n x n_embd floats, before ln0 of block
 * 0, which is applied to them): how modality features are spliced into the sequence. */
mrw_status mrw_eval_embeddings(mrw_context *ctx, mrw_state *state, const float *embd, int n,
                               mrw_logits_mode mode, float *logits, mrw_error *err);

/* ------------------------------------------------------------------------------ multimodal (ModRWKV) */

/* A ModRWKV model: RWKV-7 + a frozen modality encoder + [Conv1D compression] + an adapter. Files understood:
 *   v1 checkpoint (rwkv-0.pth): RWKV keys unprefixed + modality.world_encoder.adapter.* (vision: proj.0,
 *     proj.2, pre_norm; audio: conv, proj.0, proj.2); the encoder comes from mrw_mm_params.encoder (a Hugging
 *     Face directory or weight file); features are prepended to the text.
 *   v2 checkpoint: llm.*, proj.{mlp.0,mlp.2,pre_norm[,conv]}.*, encoder.model.* (the whole encoder); features
 *     fill the <|image_pad|> (65532) runs of the prompt, up to 3 images.
 *   a bundle written by mrw_mm_save: everything in one safetensors file that describes itself; it may carry
 *     up to MRW_MM_MAX_MODALITIES modalities (one image and one audio encoder, each with its own
 *     [compression] and adapter) around one RWKV-7 (docs/MULTIMODAL.md: key layout, mrw_mm_merge).
 *   an encoder alone (Hugging Face layout): encoding only, for `modrwkv encode`. */
typedef struct mrw_mm mrw_mm;

#define MRW_MM_MAX_MODALITIES 4 /* encoder + [compression] + adapter sets one bundle may carry */

typedef enum { MRW_ENC_NONE = 0, MRW_ENC_SIGLIP, MRW_ENC_CLIP, MRW_ENC_WHISPER, MRW_ENC_WAVLM } mrw_encoder_kind;
typedef enum { MRW_SPLICE_PREPEND = 1, MRW_SPLICE_PLACEHOLDER = 2 } mrw_splice_mode;

typedef struct {
    /* Hugging Face encoder: a directory (config.json + model.safetensors [+ preprocessor_config.json]) or a
     * weight file. Needed for v1 checkpoints; for v2 and bundles it may supply config.json (the weights stay
     * the checkpoint's). */
    const char *encoder;
    /* Conv1D compression over the encoder tokens, kernel/stride (0: none, unless the file carries one). */
    int compress_k, compress_s;
    const char *compress_weights; /* safetensors with compress.weight [E,E,k] (+ compress.bias); NULL: the
                                     checkpoint's, else average pooling */
    mrw_load_params lm;           /* how to load the language model */
    int encoder_keep_dtype;       /* compute the encoder with f16/bf16 weights as stored (faster, not exact) */
} mrw_mm_params;

typedef struct {
    mrw_encoder_kind encoder;
    int encoder_width;       /* E */
    int has_lm;              /* 0 for an encoder-only file */
    int adapter_version;     /* 1 or 2; 0 without an adapter */
    int adapter_audio;       /* the v1 audio adapter (conv + MLP) */
    mrw_splice_mode splice;
    int compress_k, compress_s, compress_trained;
    int image_size;          /* vision: the encoder's input side */
    int takes_audio;         /* the encoder takes recordings (Whisper, WavLM), else images */
    int n_modalities;        /* modalities of the whole model (the fields above describe one of them) */
} mrw_mm_info;

/* Features of one image or recording: n rows of dim floats. */
typedef struct {
    float *rows;
    int n, dim;
} mrw_features;

mrw_mm_params mrw_mm_params_default(void);
/* 1 if `path` holds adapter tensors (v1/v2 checkpoint or bundle), 0 otherwise (or unreadable). */
int mrw_is_modrwkv_file(const char *path);
mrw_status mrw_mm_load(const char *path, const mrw_mm_params *params, mrw_mm **out, mrw_error *err);
void mrw_mm_free(mrw_mm *mm);
const mrw_model *mrw_mm_model(const mrw_mm *mm); /* NULL for an encoder-only file */
mrw_mm_info mrw_mm_get_info(const mrw_mm *mm); /* modality 0 (the only one of v1/v2 checkpoints) */
/* Multi-modality models: the count, the description of modality i (0 <= i < count), and the modality that
 * mrw_mm_encode_image (audio = 0) / mrw_mm_encode_audio (audio = 1) use, or -1 if the model has none. */
int mrw_mm_n_modalities(const mrw_mm *mm);
mrw_mm_info mrw_mm_modality_info(const mrw_mm *mm, int i);
int mrw_mm_modality_of(const mrw_mm *mm, int audio);

/* Media file -> features ready to splice (encoder -> [compression] -> adapter: n x n_embd), through the
 * model's image or audio modality (MRW_E_ARG naming the model's encoders when it has none). `encoder_out`
 * (may be NULL) receives the encoder's last_hidden_state (for Whisper trimmed to the real audio), and is
 * all an encoder-only model gives (then `out` may be NULL). Images: PNG, JPEG, BMP, GIF; audio: what
 * libsndfile reads (WAV, FLAC, OGG, MP3), any rate and channel count. */
mrw_status mrw_mm_encode_image(const mrw_mm *mm, const char *path, int n_threads, mrw_features *out,
                               mrw_features *encoder_out, mrw_error *err);
mrw_status mrw_mm_encode_audio(const mrw_mm *mm, const char *path, int n_threads, mrw_features *out,
                               mrw_features *encoder_out, mrw_error *err);
/* The same from an already preprocessed input, for caching and parity checks: pixel_values [3][S][S]
 * (vision), input_features [n_mels][frames] (Whisper; every frame counts as real audio), or input_values
 * [n] (WavLM; used as given, so normalise first if the model expects it). `n` is the number of floats. */
mrw_status mrw_mm_encode_input(const mrw_mm *mm, const float *input, size_t n, int n_threads, mrw_features *out,
                               mrw_features *encoder_out, mrw_error *err); /* modality 0 */
mrw_status mrw_mm_encode_input_at(const mrw_mm *mm, int modality, const float *input, size_t n, int n_threads,
                                  mrw_features *out, mrw_features *encoder_out, mrw_error *err);
void mrw_features_free(mrw_features *f);
/* Writes features as a safetensors file: "last_hidden_state" (the encoder's output) and/or "features" (after
 * compression and adapter), F32 [n, dim]; either may be NULL. Atomic. */
mrw_status mrw_features_save(const char *path, const mrw_features *encoder_out, const mrw_features *adapted,
                             mrw_error *err);

/* Evaluates a prompt with features spliced in: prepend mode puts all features (in order) before the tokens;
 * placeholder mode writes feats[i] into the i-th run of <|image_pad|> tokens (each run must have exactly
 * feats[i].n tokens; wrapping 65530/65531 tokens stay text). Everything goes through ln0 and one prefill. */
mrw_status mrw_mm_eval(mrw_context *ctx, mrw_state *state, const mrw_mm *mm, const mrw_features *feats, int n_feats,
                       const int32_t *tokens, int n_tokens, mrw_logits_mode mode, float *logits, mrw_error *err);

/* Writes everything (language model, adapter, compression, encoder weights and its configuration) into one
 * self-describing safetensors file, so that mrw_mm_load(path) needs nothing else. Atomic. */
mrw_status mrw_mm_save(const mrw_mm *mm, const char *path, int progress, mrw_error *err);
/* Writes one bundle made of the language model `lm` (e.g. mrw_mm_model of one ModRWKV file, or a plain RWKV-7
 * loaded from .pth/.safetensors) and every modality of parts[0..n_parts) (their encoders, compressions and
 * adapters), in that order; the splice mode is the parts'. Checked: every adapter's output width equals lm's
 * n_embd (MRW_E_SHAPE), the parts splice the same way, at most one image and one audio modality (MRW_E_ARG).
 * The tensors are copied as their files hold them. Atomic. */
mrw_status mrw_mm_merge(const mrw_model *lm, const mrw_mm *const *parts, int n_parts, const char *path,
                        mrw_error *err);

/* ----------------------------------------------------------------------------------------------- vocab */

/* The RWKV World vocabulary file (rwkv_vocab_v20230424.txt, LF or CRLF line ends). ModRWKV's v2 special
 * tokens <|vision_start|>, <|vision_end|>, <|image_pad|> (65530..65532) are added. */
mrw_status mrw_vocab_load(const char *path, mrw_vocab **out, mrw_error *err);
/* A byte-level vocabulary: token id = byte value (256 tokens). */
mrw_vocab *mrw_vocab_new_bytes(void);
/* The vocabulary embedded in a GGUF model, if it has one (MRW_E_MISSING otherwise). */
mrw_status mrw_vocab_from_model(const mrw_model *model, mrw_vocab **out, mrw_error *err);
void mrw_vocab_free(mrw_vocab *vocab);
int mrw_vocab_size(const mrw_vocab *vocab); /* largest id + 1 */
/* The token that ends a chat turn ("\x17"): 24 in the World vocabulary, 23 in a byte-level one (id = byte);
 * -1 if "\x17" is not a single token. Generation of chat answers stops there. */
int32_t mrw_vocab_turn_end(const mrw_vocab *vocab);

/* Greedy longest-match tokenization of `len` bytes (any bytes: invalid UTF-8 falls back to byte tokens).
 * Writes at most `cap` ids to `out` and returns the total number of tokens the text needs (call again with
 * a larger buffer if it exceeds cap), or -1 if the vocabulary cannot encode some byte. */
int64_t mrw_tokenize(const mrw_vocab *vocab, const char *text, size_t len, int32_t *out, size_t cap);
/* mrw_tokenize with options. MRW_TOKENIZE_SPECIAL: the text of special tokens ("<|vision_start|>",
 * "<|vision_end|>", "<|image_pad|>") is encoded as their ids (65530..65532); plain mrw_tokenize never
 * produces them, exactly like the reference tokenizer. */
#define MRW_TOKENIZE_SPECIAL 1u
int64_t mrw_tokenize_ex(const mrw_vocab *vocab, const char *text, size_t len, int32_t *out, size_t cap,
                        unsigned flags);
/* Bytes of one token (not NUL-terminated); NULL and *len = 0 for ids without text (0, padding). */
const uint8_t *mrw_token_bytes(const mrw_vocab *vocab, int32_t id, size_t *len);

/* Streaming detokenizer: push the bytes of generated tokens and get back only complete UTF-8 sequences;
 * bytes that can never form a valid sequence come out as U+FFFD. */
typedef struct {
    uint8_t pending[4];
    int n_pending;
} mrw_utf8_stream;
/* Appends the printable part of (pending + in) to out and returns the bytes written. out needs 3*n + 3
 * bytes of room (every invalid byte may become a 3-byte U+FFFD); flush writes at most 3. */
size_t mrw_utf8_stream_push(mrw_utf8_stream *s, const uint8_t *in, size_t n, char *out);
#define MRW_UTF8_STREAM_OUT_MAX(n) (3 * (size_t)(n) + 3) /* output room mrw_utf8_stream_push needs */
/* At the end of a stream: a dangling incomplete sequence becomes U+FFFD. */
size_t mrw_utf8_stream_flush(mrw_utf8_stream *s, char *out);

/* ------------------------------------------------------------------------------------------------ chat */

/* The ModRWKV chat template: turns are "\x16{Role}: {text}\x17" (bytes 0x16/0x17 are World tokens 23/24, and
 * no other World token contains them, so each turn tokenizes on its own). Generation stops at token 24.
 *
 * Two spellings of the generation prompt exist:
 *   MRW_CHAT_V1_EVAL     "\x16User: {q}\x17\x16Assistant:"  ModRWKV v1 evaluation code and training data;
 *                        also the ASR prompt ("\x16Assistant:" right after the audio features)
 *   MRW_CHAT_MODEL_CARD  "\x16User: {q}\x17Assistant:"      the released models' cards (no \x16 before the
 *                        assistant's name)
 * Completed turns are the same in both. The text is not escaped: a 0x16/0x17 byte inside it acts as a
 * delimiter, as in the reference. */
typedef enum { MRW_CHAT_V1_EVAL = 0, MRW_CHAT_MODEL_CARD = 1 } mrw_chat_style;
typedef enum { MRW_ROLE_SYSTEM = 0, MRW_ROLE_USER = 1, MRW_ROLE_ASSISTANT = 2 } mrw_chat_role;

typedef struct {
    mrw_chat_role role;
    const char *text; /* UTF-8, not necessarily NUL-terminated */
    size_t len;
} mrw_chat_msg;

/* "System" / "User" / "Assistant". */
const char *mrw_chat_role_name(mrw_chat_role role);

/* All writers below append to out[0..cap) like snprintf: the result is NUL-terminated when it fits, and the
 * return value is the full length (without the NUL) whether or not it fit. */

/* One completed turn: "\x16{Role}: {text}\x17". */
size_t mrw_chat_turn(mrw_chat_role role, const char *text, size_t len, char *out, size_t cap);
/* What follows the last turn to make the model answer: "\x16Assistant:" or "Assistant:". */
size_t mrw_chat_generation_prompt(mrw_chat_style style, char *out, size_t cap);
/* A whole prompt: every message as a turn, then the generation prompt if `add_generation_prompt`. */
size_t mrw_chat_prompt(mrw_chat_style style, const mrw_chat_msg *msgs, int n, int add_generation_prompt,
                       char *out, size_t cap);

/* --------------------------------------------------------------------------------------------- sampler */

typedef struct {
    float temperature;        /* 0: greedy (the default) */
    float top_p;              /* 1: off */
    int top_k;                /* 0: off */
    float repetition_penalty; /* 1: off; >1 divides positive / multiplies negative logits of seen tokens */
    float presence_penalty;   /* 0: off; subtracted once from the logit of every token seen */
    float frequency_penalty;  /* 0: off; subtracted per occurrence */
    uint64_t seed;
} mrw_sampler_params;

typedef struct mrw_sampler mrw_sampler;

mrw_sampler_params mrw_sampler_params_default(void);
mrw_sampler *mrw_sampler_new(const mrw_sampler_params *params, int n_vocab);
void mrw_sampler_free(mrw_sampler *s);
/* Picks a token from logits (modified in place by penalties and temperature). Token 0 (end of text) is
 * never picked unless `allow_eot`. */
int32_t mrw_sample(mrw_sampler *s, float *logits, int allow_eot);
/* Records a token as seen (prompt or generated) for the penalties. */
void mrw_sampler_accept(mrw_sampler *s, int32_t token);

/* -------------------------------------------------------------------------------------------- generate */

/* Called with each generated token; return non-zero to stop. */
typedef int (*mrw_token_cb)(void *user, int32_t token);

typedef struct {
    int max_tokens;             /* stop after this many new tokens (<= 0: 256) */
    const int32_t *stop_tokens; /* generation ends after emitting one of these (reported to cb) */
    int n_stop;
    /* Feed the final token into the state too, so the state covers the whole transcript (needed to continue
     * a conversation or save the state); costs one more forward step. */
    int feed_last;
} mrw_generate_params;

mrw_generate_params mrw_generate_params_default(void); /* 256 tokens, stop at 24 ("\x17"), feed_last on */

/* Samples token by token (RNN mode) starting from `logits` (n_vocab floats: the last position of whatever was
 * evaluated into `state`, e.g. by mrw_mm_eval); `logits` is used as scratch. */
mrw_status mrw_generate_continue(mrw_context *ctx, mrw_state *state, mrw_sampler *sampler, float *logits,
                                 const mrw_generate_params *params, mrw_token_cb cb, void *user, int *n_generated,
                                 mrw_error *err);

/* Evaluates the prompt (sequence mode), then samples token by token (RNN mode). `prompt` must not be empty.
 * *n_generated (may be NULL) receives the number of tokens passed to cb. */
mrw_status mrw_generate(mrw_context *ctx, mrw_state *state, mrw_sampler *sampler, const int32_t *prompt, int n_prompt,
                        const mrw_generate_params *params, mrw_token_cb cb, void *user, int *n_generated,
                        mrw_error *err);

#ifdef __cplusplus
}
#endif
#endif
