/* The trainer behind `modrwkv train` (docs/TRAINING.md): RWKV-7 text fine-tuning and the ModRWKV stages
 * (../shared/reference/modrwkv.md "Training"), on CPU, deterministic and exactly resumable.
 *
 * One optimizer step = grad_accum micro-batches of `batch` samples. A micro-batch is padded with token 0
 * (target ignored) to the longest sample rounded up to a multiple of 16; samples are truncated at ctx_len.
 * Each micro-batch's loss is the mean cross-entropy over its supervised positions; the step's loss (and
 * gradient) is the mean over its micro-batches. Gradients are clipped to `clip` (global L2 norm), then Adam(W)
 * steps with the scheduled learning rate. Every save_every steps and at the end OUT/model.safetensors and
 * OUT/resume.safetensors are written atomically (train/checkpoint.h); OUT/train.jsonl gets one line per step.
 *
 * Same options (thread count included) and seed -> bit-identical weights; a run killed at any point and
 * restarted with `resume` set continues from the last resume file to the same weights. */
#ifndef MRW_TRAIN_TRAINER_H
#define MRW_TRAIN_TRAINER_H

#include <stdint.h>

#include "train/data.h"
#include "train/params.h"
#include "train/rwkv7_train.h"
#include "train/schedule.h"

#define MRW_TRAIN_MAX_DATA 16

typedef struct {
    /* starting point: model (RWKV-7 file, or a ModRWKV checkpoint for the multimodal stages), else a random
     * init of init_layers x init_embd (head size 64, or init_embd when smaller) with the vocabulary's size */
    const char *model;
    int init_layers, init_embd;
    const char *vocab_name;           /* for the options record only (the vocabulary itself is passed in) */
    /* data */
    const char *data[MRW_TRAIN_MAX_DATA];
    int n_data;
    const char *data_root;
    mrw_data_kind data_kind;
    /* multimodal */
    const char *encoder;              /* Hugging Face encoder (dir or weight file) when model is plain RWKV-7 */
    const char *feature_cache;        /* directory caching frozen-encoder features (NULL: none) */
    int adapter_v1;                   /* new adapter: v1 layout and prepend splicing (default v2 + placeholders) */
    int compress_k, compress_s;       /* new trained Conv1D compression (0: none) */
    int adapter_scale;                /* new v2 adapter: hidden width = adapter_scale x its input width E (0: 4C);
                                       * a vocabulary without <|image_pad|> gets prepend splicing */
    /* what trains: mrw_param_group mask; text fine-tuning is MRW_PG_RWKV */
    int train;
    /* batching and optimisation */
    int batch, ctx_len, grad_accum;
    double lr, lr_final, clip, weight_decay, wsd_decay;
    int64_t warmup, steps;            /* steps 0: from epochs */
    double epochs;
    mrw_sched_kind schedule;
    uint64_t seed;
    int threads;
    /* output */
    const char *out;                  /* directory (created) */
    int64_t save_every;               /* 0: only at the end */
    int resume;                       /* continue from OUT/resume.safetensors */
    int progress;                     /* progress bar / lines on stderr */
    int device;                       /* 0: CPU; 1: CUDA (text, and the ModRWKV image stages; builds with MRW_CUDA) */
    int act_ckpt;                     /* CUDA: per-block activation checkpointing */
    int zero;                         /* CUDA data parallel (WORLD_SIZE > 1, docs/DISTRIBUTED.md): 1 = ZeRO-1 */
    int allreduce_bf16;               /* CUDA data parallel: gradients summed in bf16 (default fp32) */
    int quiet;                        /* no summary lines */
    int encoder_device;               /* frozen SigLIP/CLIP/Whisper encoders: 0 = where --device runs (the GPU in bf16
                                       * with device 1), 1 = the CPU (--encoder-device cpu), 2 = the GPU (needs device) */
} mrw_train_opts;

void mrw_train_opts_default(mrw_train_opts *o);
/* Runs the whole training. start (may be NULL) is the loaded RWKV-7 of o->model when it is a plain RWKV-7
 * file (the caller loaded it to resolve the vocabulary); vocab tokenizes the data. */
mrw_status mrw_train_run(const mrw_train_opts *o, const mrw_model *start, const mrw_vocab *vocab, mrw_error *err);

/* --device cuda with a multimodal start: MRW_E_UNSUPPORTED naming the option when the options ask for what the GPU
 * path does not do (--train encoder without the adapter); MRW_OK otherwise. `world` (the ranks) is accepted: the
 * ModRWKV stages are data parallel too (docs/DISTRIBUTED.md). */
mrw_status mrw_train_gpu_mm_options(const mrw_train_opts *o, int world, mrw_error *err);

/* The spliced sequence of a sample whose n_media media give M adapter rows each, into tok/lab (room for
 * ctx_len): prepend (v1) puts every media's rows before the text, in order; otherwise (v2) a
 * <|vision_start|> <|image_pad|> x M <|vision_end|> "\n" block goes where each marker was, as `modrwkv chat`
 * writes it. Feature rows are not targets, except that the row right before the text predicts the text's
 * next token when the reader marks it supervised (media_target); the text token right before a block predicts
 * nothing (its next input is a feature). Over-long samples are truncated at ctx_len, features included.
 * item_at[j] receives the position of media j's first row. Returns the length, or -1 if it cannot fit. */
int mrw_train_splice(const mrw_data_sample *s, int M, int prepend, int32_t newline, int ctx_len, int32_t *tok,
                     int32_t *lab, int *item_at);
/* The same with Ms[j] rows for media j (media of different modalities: docs/MULTIMODAL.md). */
int mrw_train_splice_m(const mrw_data_sample *s, const int *Ms, int prepend, int32_t newline, int ctx_len,
                       int32_t *tok, int32_t *lab, int *item_at);

/* The --feature-cache id of an encoder weight file (its name and a hash of path, size and mtime). */
void mrw_train_feature_cache_id(const char *weights, char *id, size_t n);

/* The micro-batch layout (exposed for tests): samples -> tokens/targets [B*T], T a multiple of 16 >= the
 * longest sample, padding token 0 with MRW_IGNORE targets. Returns T. */
int mrw_train_pad_batch(const int32_t *const *tokens, const int32_t *const *labels, const int *n, int B, int32_t *tok,
                        int32_t *tgt);

#endif
