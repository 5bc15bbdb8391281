/* Writing a model: the official key layout for .pth / .safetensors (PyTorch shapes: mixes [1,1,C], LoRAs
 * [in,out], r_k [H,N]) and llama.cpp's rwkv7 layout for GGUF (fused lerp [6,1,1,C], LoRAs [out,in], flat
 * vectors, layer-0 v0/v1/v2 as copies of a0/a1/a2, hyperparameters and the tokenizer in the metadata). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/progress.h"
#include "models/rwkv7.h"
#include "tensor/dtype.h"
#include "text/vocab.h"

typedef struct {
    mrw_tensor_info *t;
    int n, cap;
    void **tmp; /* buffers to free after writing */
    int n_tmp, cap_tmp;
    int oom;
} tlist;

static void *keep(tlist *L, void *p) {
    if (!p) { L->oom = 1; return NULL; }
    if (L->n_tmp == L->cap_tmp) {
        int cap = L->cap_tmp ? 2 * L->cap_tmp : 256;
        void **n = realloc(L->tmp, (size_t)cap * sizeof *n);
        if (!n) { free(p); L->oom = 1; return NULL; }
        L->tmp = n;
        L->cap_tmp = cap;
    }
    L->tmp[L->n_tmp++] = p;
    return p;
}

static void add(tlist *L, const char *name, mrw_dtype dt, const void *data, size_t nbytes, int ndim, const int64_t *shape) {
    if (L->oom) return;
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 256;
        mrw_tensor_info *n = realloc(L->t, (size_t)cap * sizeof *n);
        if (!n) { L->oom = 1; return; }
        L->t = n;
        L->cap = cap;
    }
    char *nm = keep(L, strdup(name));
    if (!nm) return;
    mrw_tensor_info *t = &L->t[L->n++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->dtype = dt;
    t->data = data;
    t->nbytes = nbytes;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
}

/* f32 vector with a given shape (numel must match). */
static void add_vec(tlist *L, const char *name, const float *v, int ndim, const int64_t *shape) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    add(L, name, MRW_DT_F32, v, n * 4, ndim, shape);
}

static void add_mat(tlist *L, const char *name, const mrw_mat *m) {
    int64_t sh[2] = {m->rows, m->cols};
    const size_t bytes = (size_t)m->rows * m->row_bytes;
    const void *data = m->data;
    if (m->slice_cols > 0 || m->interleaved) { /* files hold plain rows (mrw_load_params.file_layout avoids this copy) */
        void *rows = keep(L, malloc(bytes));
        if (!rows) return;
        mrw_mat_copy_plain(m, rows);
        data = rows;
    }
    add(L, name, m->dtype, data, bytes, 2, sh);
}

/* LoRA as f32 (files keep LoRAs f32 whatever the dtype held in memory: f16/bf16 LoRAs of a loaded model convert
 * exactly), in the official [in, out] layout (transposed) or GGUF's [out, in] one. */
static void add_lora(tlist *L, const char *name, const mrw_mat *m, int transposed) {
    float *d = keep(L, malloc((size_t)m->rows * m->cols * sizeof *d));
    float *row = malloc((size_t)m->cols * sizeof *row);
    if (!d || !row) {
        free(row);
        L->oom = 1;
        return;
    }
    for (int o = 0; o < m->rows; o++) {
        mrw_mat_row_f32(m, o, row);
        for (int i = 0; i < m->cols; i++) d[transposed ? (size_t)i * m->rows + o : (size_t)o * m->cols + i] = row[i];
    }
    free(row);
    int64_t sh[2] = {transposed ? m->cols : m->rows, transposed ? m->rows : m->cols};
    add(L, name, MRW_DT_F32, d, (size_t)m->rows * m->cols * 4, 2, sh);
}

static void official_layout(const mrw_model *m, tlist *L) {
    const mrw_model_info *in = &m->info;
    const int64_t C = in->n_embd;
    const int64_t s1[1] = {C}, s3[3] = {1, 1, C}, shn[2] = {in->n_head, in->head_size};
    char n[128];
    add_mat(L, "emb.weight", &m->emb);
    add_vec(L, "blocks.0.ln0.weight", m->ln0_w, 1, s1);
    add_vec(L, "blocks.0.ln0.bias", m->ln0_b, 1, s1);
    for (int i = 0; i < in->n_layer; i++) {
        const rwkv7_layer *l = &m->layers[i];
#define NM(s) (snprintf(n, sizeof n, "blocks.%d.%s", i, s), n)
        add_vec(L, NM("ln1.weight"), l->ln1_w, 1, s1);
        add_vec(L, NM("ln1.bias"), l->ln1_b, 1, s1);
        add_vec(L, NM("ln2.weight"), l->ln2_w, 1, s1);
        add_vec(L, NM("ln2.bias"), l->ln2_b, 1, s1);
        add_vec(L, NM("att.x_r"), l->x_r, 3, s3);
        add_vec(L, NM("att.x_w"), l->x_w, 3, s3);
        add_vec(L, NM("att.x_k"), l->x_k, 3, s3);
        add_vec(L, NM("att.x_v"), l->x_v, 3, s3);
        add_vec(L, NM("att.x_a"), l->x_a, 3, s3);
        add_vec(L, NM("att.x_g"), l->x_g, 3, s3);
        add_vec(L, NM("att.w0"), l->w0, 3, s3);
        add_lora(L, NM("att.w1"), &l->w1, 1);
        add_lora(L, NM("att.w2"), &l->w2, 1);
        add_vec(L, NM("att.a0"), l->a0, 3, s3);
        add_lora(L, NM("att.a1"), &l->a1, 1);
        add_lora(L, NM("att.a2"), &l->a2, 1);
        if (i > 0) {
            add_vec(L, NM("att.v0"), l->v0, 3, s3);
            add_lora(L, NM("att.v1"), &l->v1, 1);
            add_lora(L, NM("att.v2"), &l->v2, 1);
        }
        add_lora(L, NM("att.g1"), &l->g1, 1);
        add_lora(L, NM("att.g2"), &l->g2, 1);
        add_vec(L, NM("att.k_k"), l->k_k, 3, s3);
        add_vec(L, NM("att.k_a"), l->k_a, 3, s3);
        add_vec(L, NM("att.r_k"), l->r_k, 2, shn);
        add_mat(L, NM("att.receptance.weight"), &l->Wr);
        add_mat(L, NM("att.key.weight"), &l->Wk);
        add_mat(L, NM("att.value.weight"), &l->Wv);
        add_mat(L, NM("att.output.weight"), &l->Wo);
        add_vec(L, NM("att.ln_x.weight"), l->lnx_w, 1, s1);
        add_vec(L, NM("att.ln_x.bias"), l->lnx_b, 1, s1);
        add_vec(L, NM("ffn.x_k"), l->ffn_x_k, 3, s3);
        add_mat(L, NM("ffn.key.weight"), &l->ffn_key);
        add_mat(L, NM("ffn.value.weight"), &l->ffn_value);
#undef NM
    }
    add_vec(L, "ln_out.weight", m->lnout_w, 1, s1);
    add_vec(L, "ln_out.bias", m->lnout_b, 1, s1);
    add_mat(L, "head.weight", &m->head);
}

static void gguf_layout(const mrw_model *m, tlist *L) {
    const mrw_model_info *in = &m->info;
    const int C = in->n_embd;
    const int64_t s1[1] = {C};
    char n[128];
    add_mat(L, "token_embd.weight", &m->emb);
    add_vec(L, "token_embd_norm.weight", m->ln0_w, 1, s1);
    add_vec(L, "token_embd_norm.bias", m->ln0_b, 1, s1);
    for (int i = 0; i < in->n_layer; i++) {
        const rwkv7_layer *l = &m->layers[i];
#define NM(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
        add_vec(L, NM("attn_norm.weight"), l->ln1_w, 1, s1);
        add_vec(L, NM("attn_norm.bias"), l->ln1_b, 1, s1);
        add_vec(L, NM("attn_norm_2.weight"), l->ln2_w, 1, s1);
        add_vec(L, NM("attn_norm_2.bias"), l->ln2_b, 1, s1);
        float *lerp = keep(L, malloc((size_t)6 * C * sizeof *lerp));
        if (lerp) {
            const float *mix[6] = {l->x_r, l->x_w, l->x_k, l->x_v, l->x_a, l->x_g};
            for (int k = 0; k < 6; k++) memcpy(lerp + (size_t)k * C, mix[k], (size_t)C * sizeof *lerp);
            const int64_t sl[4] = {6, 1, 1, C};
            add_vec(L, NM("time_mix_lerp_fused.weight"), lerp, 4, sl);
        }
        add_vec(L, NM("time_mix_w0.weight"), l->w0, 1, s1);
        add_lora(L, NM("time_mix_w1.weight"), &l->w1, 0);
        add_lora(L, NM("time_mix_w2.weight"), &l->w2, 0);
        add_vec(L, NM("time_mix_a0.weight"), l->a0, 1, s1);
        add_lora(L, NM("time_mix_a1.weight"), &l->a1, 0);
        add_lora(L, NM("time_mix_a2.weight"), &l->a2, 0);
        /* layer 0 has no value residual; llama.cpp's converter writes copies of a0/a1/a2 there */
        add_vec(L, NM("time_mix_v0.weight"), i ? l->v0 : l->a0, 1, s1);
        add_lora(L, NM("time_mix_v1.weight"), i ? &l->v1 : &l->a1, 0);
        add_lora(L, NM("time_mix_v2.weight"), i ? &l->v2 : &l->a2, 0);
        add_lora(L, NM("time_mix_g1.weight"), &l->g1, 0);
        add_lora(L, NM("time_mix_g2.weight"), &l->g2, 0);
        add_vec(L, NM("time_mix_k_k.weight"), l->k_k, 1, s1);
        add_vec(L, NM("time_mix_k_a.weight"), l->k_a, 1, s1);
        add_vec(L, NM("time_mix_r_k.weight"), l->r_k, 1, s1);
        add_mat(L, NM("time_mix_receptance.weight"), &l->Wr);
        add_mat(L, NM("time_mix_key.weight"), &l->Wk);
        add_mat(L, NM("time_mix_value.weight"), &l->Wv);
        add_mat(L, NM("time_mix_output.weight"), &l->Wo);
        add_vec(L, NM("time_mix_ln.weight"), l->lnx_w, 1, s1);
        add_vec(L, NM("time_mix_ln.bias"), l->lnx_b, 1, s1);
        add_vec(L, NM("channel_mix_lerp_k.weight"), l->ffn_x_k, 1, s1);
        add_mat(L, NM("channel_mix_key.weight"), &l->ffn_key);
        add_mat(L, NM("channel_mix_value.weight"), &l->ffn_value);
#undef NM
    }
    add_vec(L, "output_norm.weight", m->lnout_w, 1, s1);
    add_vec(L, "output_norm.bias", m->lnout_b, 1, s1);
    add_mat(L, "output.weight", &m->head);
}

/* GGUF metadata: llama.cpp's rwkv7 hyperparameters (u32, eps f32) and file type. */
typedef struct {
    mrw_meta kv[32];
    int n;
} metalist;

static void meta_u32(metalist *M, const char *key, int64_t v) {
    mrw_meta *m = &M->kv[M->n++];
    memset(m, 0, sizeof *m);
    m->key = (char *)key;
    m->type = MRW_MV_U32;
    m->v.i = v;
}

static void meta_str(metalist *M, const char *key, const char *s) {
    mrw_meta *m = &M->kv[M->n++];
    memset(m, 0, sizeof *m);
    m->key = (char *)key;
    m->type = MRW_MV_STRING;
    m->v.s.ptr = s;
    m->v.s.len = strlen(s);
}

/* tokenizer.ggml.tokens / token_type for ids 0..n_vocab-1, as llama.cpp's converter writes them. */
typedef struct {
    mrw_meta tokens, types;
    mrw_str *strs;
    int32_t *type_vals;
    char *pool;
    int n;
} gguf_vocab;

static int gguf_vocab_build(gguf_vocab *g, const mrw_vocab *v, int n_vocab) {
    size_t total = 0;
    for (int i = 0; i < n_vocab; i++) total += mrw_vocab_gguf_token_string(v, i, NULL, 0) + 1;
    g->strs = malloc((size_t)n_vocab * sizeof *g->strs);
    g->type_vals = malloc((size_t)n_vocab * sizeof *g->type_vals);
    g->pool = malloc(total ? total : 1);
    if (!g->strs || !g->type_vals || !g->pool) return -1;
    char *p = g->pool;
    for (int i = 0; i < n_vocab; i++) {
        size_t len = mrw_vocab_gguf_token_string(v, i, p, (size_t)(g->pool + total - p));
        g->strs[i].ptr = p;
        g->strs[i].len = len;
        g->type_vals[i] = mrw_vocab_gguf_token_type(v, i);
        p += len + 1;
    }
    g->tokens = (mrw_meta){.key = "tokenizer.ggml.tokens", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_STRING,
                           .count = (uint64_t)n_vocab, .strs = g->strs};
    g->types = (mrw_meta){.key = "tokenizer.ggml.token_type", .type = MRW_MV_ARRAY, .elem_type = MRW_MV_I32,
                          .count = (uint64_t)n_vocab, .nums = g->type_vals};
    return 0;
}

static void gguf_vocab_free(gguf_vocab *g) {
    free(g->strs);
    free(g->type_vals);
    free(g->pool);
}

static int ggml_file_type(mrw_dtype t) { /* llama_ftype: ALL_F32 0, MOSTLY_F16 1, Q4_0 2, Q8_0 7, BF16 32 */
    switch (t) {
    case MRW_DT_F16: return 1;
    case MRW_DT_Q4_0: return 2;
    case MRW_DT_Q8_0: return 7;
    case MRW_DT_BF16: return 32;
    default: return 0;
    }
}

static mrw_file_type type_from_path(const char *path) {
    const char *dot = strrchr(path, '.');
    if (!dot) return MRW_FILE_AUTO;
    if (!strcmp(dot, ".gguf")) return MRW_FILE_GGUF;
    if (!strcmp(dot, ".safetensors")) return MRW_FILE_SAFETENSORS;
    if (!strcmp(dot, ".pth") || !strcmp(dot, ".pt")) return MRW_FILE_PTH;
    return MRW_FILE_AUTO;
}

mrw_status mrw_model_save(const mrw_model *m, const char *path, mrw_file_type type, const mrw_vocab *vocab,
                          int progress, mrw_error *err) {
    if (type == MRW_FILE_AUTO) type = type_from_path(path);
    if (type == MRW_FILE_AUTO)
        return mrw_err(err, MRW_E_ARG, "%s: cannot tell the format from the extension (use .gguf, .safetensors or .pth)",
                       path);
    const mrw_dtype wdt = m->layers[0].Wr.dtype;
    if (type != MRW_FILE_GGUF && mrw_dtype_is_quant(wdt))
        return mrw_err(err, MRW_E_UNSUPPORTED, "%s: %s weights can only be written as GGUF", path, mrw_dtype_name(wdt));
    tlist L = {0};
    if (type == MRW_FILE_GGUF) gguf_layout(m, &L);
    else official_layout(m, &L);
    mrw_status s = MRW_OK;
    if (L.oom) {
        s = mrw_err(err, MRW_E_NOMEM, "out of memory");
        goto out;
    }
    mrw_progress prog;
    mrw_progress_start(&prog, "writing", 0, "B", progress);
    if (type == MRW_FILE_GGUF) {
        const mrw_model_info *in = &m->info;
        metalist M = {0};
        meta_str(&M, "general.architecture", "rwkv7");
        meta_str(&M, "general.name", "rwkv7");
        meta_u32(&M, "general.file_type", ggml_file_type(wdt));
        meta_u32(&M, "general.quantization_version", 2);
        meta_u32(&M, "rwkv7.context_length", 1048576);
        meta_u32(&M, "rwkv7.embedding_length", in->n_embd);
        meta_u32(&M, "rwkv7.block_count", in->n_layer);
        meta_u32(&M, "rwkv7.feed_forward_length", in->n_ffn);
        mrw_meta *eps = &M.kv[M.n++];
        memset(eps, 0, sizeof *eps);
        eps->key = "rwkv7.attention.layer_norm_epsilon";
        eps->type = MRW_MV_F32;
        eps->v.f = 1e-5;
        meta_u32(&M, "rwkv7.wkv.head_size", in->head_size);
        meta_u32(&M, "rwkv7.attention.decay_lora_rank", in->lora_w);
        meta_u32(&M, "rwkv7.attention.iclr_lora_rank", in->lora_a);
        meta_u32(&M, "rwkv7.attention.value_residual_mix_lora_rank", in->lora_v);
        meta_u32(&M, "rwkv7.attention.gate_lora_rank", in->lora_g);
        meta_u32(&M, "rwkv7.attention.head_count", 0);
        meta_u32(&M, "rwkv7.token_shift_count", 2);
        gguf_vocab gv = {0};
        if (vocab) {
            if (gguf_vocab_build(&gv, vocab, in->n_vocab)) {
                s = mrw_err(err, MRW_E_NOMEM, "out of memory");
                gguf_vocab_free(&gv);
                goto out;
            }
            meta_str(&M, "tokenizer.ggml.model", "rwkv");
            M.kv[M.n++] = gv.tokens;
            M.kv[M.n++] = gv.types;
        }
        s = mrw_gguf_write(path, L.t, L.n, M.kv, M.n, mrw_progress_cb, &prog, err);
        gguf_vocab_free(&gv);
    } else if (type == MRW_FILE_SAFETENSORS) {
        mrw_meta fmt = {.key = "format", .type = MRW_MV_STRING, .v.s = {"pt", 2}};
        s = mrw_safetensors_write(path, L.t, L.n, &fmt, 1, mrw_progress_cb, &prog, err);
    } else {
        s = mrw_pth_write(path, L.t, L.n, mrw_progress_cb, &prog, err);
    }
    mrw_progress_finish(&prog);
out:
    for (int i = 0; i < L.n_tmp; i++) free(L.tmp[i]);
    free(L.tmp);
    free(L.t);
    return s;
}
