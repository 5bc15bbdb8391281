/* Loading an RWKV-7 model from any tensor file: the official key layout (.pth / safetensors, optionally
 * under a prefix such as "llm.") or llama.cpp's GGUF layout. Every tensor is found by name and checked
 * against the shape derived from emb / r_k / w1 / ffn.key; tensors nobody uses are an error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bigalloc.h"
#include "base/error.h"
#include "base/progress.h"
#include "models/rwkv7.h"
#include "tensor/dtype.h"
#include "text/vocab.h"

typedef struct {
    mrw_tfile *f;
    const char *prefix;
    int gguf;
    unsigned char *used; /* per tensor index */
    mrw_model *m;
    const mrw_load_params *p;
    mrw_error *err;
    mrw_progress prog;
    uint64_t prog_done;
} loader;

void *mrw_model_own(mrw_model *m, void *p) {
    if (!p) return NULL;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 256;
        void **o = realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) { free(p); return NULL; }
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return p;
}

static void shape_str(const mrw_tensor_info *t, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < t->ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static const mrw_tensor_info *find(loader *L, const char *name) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", L->gguf ? "" : L->prefix, name);
    const mrw_tensor_info *t = mrw_tfile_find(L->f, full);
    if (t) L->used[t - mrw_tfile_tensor(L->f, 0)] = 1;
    return t;
}

static mrw_status need(loader *L, const char *name, const mrw_tensor_info **out) {
    *out = find(L, name);
    if (!*out)
        return mrw_err(L->err, MRW_E_MISSING, "tensor '%s%s' is missing", L->gguf ? "" : L->prefix, name);
    return MRW_OK;
}

static int can_compute(mrw_dtype t) {
    return t == MRW_DT_F32 || t == MRW_DT_F16 || t == MRW_DT_BF16 || t == MRW_DT_Q8_0 || t == MRW_DT_Q4_0;
}

/* Any tensor with n elements (the official [1,1,C] and [H,N] forms and GGUF's flat [C] all qualify),
 * copied to f32. */
static mrw_status vec_from(loader *L, const mrw_tensor_info *t, int n, float **out) {
    char s[96];
    if (mrw_tensor_numel(t) != n || t->ndim > 4) {
        shape_str(t, s, sizeof s);
        return mrw_err(L->err, MRW_E_SHAPE, "tensor '%s' has shape %s, expected %d elements", t->name, s, n);
    }
    if (!mrw_dtype_is_float(t->dtype) && !mrw_dtype_is_quant(t->dtype))
        return mrw_err(L->err, MRW_E_UNSUPPORTED, "tensor '%s' has dtype %s; expected a floating-point type",
                       t->name, mrw_dtype_name(t->dtype));
    float *v = mrw_model_own(L->m, malloc((size_t)n * sizeof *v));
    if (!v) return mrw_err(L->err, MRW_E_NOMEM, "out of memory");
    mrw_to_f32(t->dtype, t->data, v, n);
    *out = v;
    return MRW_OK;
}

static mrw_status vec(loader *L, const char *name, int n, float **out) {
    const mrw_tensor_info *t;
    mrw_status s = need(L, name, &t);
    return s ? s : vec_from(L, t, n, out);
}

static int is_matrix(const mrw_tensor_info *t, int rows, int cols) {
    return t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols;
}

static mrw_status shape_error(loader *L, const mrw_tensor_info *t, int rows, int cols) {
    char s[96];
    shape_str(t, s, sizeof s);
    return mrw_err(L->err, MRW_E_SHAPE, "tensor '%s' has shape %s, expected [%d,%d]", t->name, s, rows, cols);
}

/* A LoRA matrix in Linear layout [out, in]. The official layout stores it [in, out] (used as x·W); GGUF already
 * stores [out, in]. f16/bf16 LoRAs stay in their dtype (unless f32 weights were asked for): decode then reads
 * half the bytes for them, and they are always multiplied with f32 activations (f32_act), so the products are
 * the f32 ones. Other dtypes become f32. */
static mrw_status lora(loader *L, const char *name, int in, int out_dim, mrw_mat *m) {
    const mrw_tensor_info *t;
    mrw_status s = need(L, name, &t);
    if (s) return s;
    int file_rows = L->gguf ? out_dim : in, file_cols = L->gguf ? in : out_dim;
    if (!is_matrix(t, file_rows, file_cols)) return shape_error(L, t, file_rows, file_cols);
    if (!mrw_dtype_is_float(t->dtype) && !mrw_dtype_is_quant(t->dtype))
        return mrw_err(L->err, MRW_E_UNSUPPORTED, "tensor '%s' has dtype %s", t->name, mrw_dtype_name(t->dtype));
    const size_t n = (size_t)in * out_dim;
    const int half = (t->dtype == MRW_DT_F16 || t->dtype == MRW_DT_BF16) && L->p->weight_dtype != MRW_DT_F32;
    if (half) {
        const uint8_t *src = t->data; /* (a file offset need not be 2-byte aligned: copy bytes) */
        uint16_t *dst = mrw_model_own(L->m, malloc(n * sizeof *dst));
        if (!dst) return mrw_err(L->err, MRW_E_NOMEM, "out of memory");
        if (L->gguf) {
            memcpy(dst, src, n * sizeof *dst);
        } else {
            for (int i = 0; i < in; i++)
                for (int o = 0; o < out_dim; o++)
                    memcpy(&dst[(size_t)o * in + i], src + ((size_t)i * out_dim + o) * 2, 2);
        }
        mrw_mat_init(m, t->dtype, out_dim, in, dst);
        m->f32_act = 1;
        return MRW_OK;
    }
    float *src = malloc(n * sizeof *src);
    float *dst = mrw_model_own(L->m, malloc(n * sizeof *dst));
    if (!src || !dst) {
        free(src);
        return mrw_err(L->err, MRW_E_NOMEM, "out of memory");
    }
    mrw_to_f32(t->dtype, t->data, src, (int64_t)n);
    if (L->gguf) {
        memcpy(dst, src, n * sizeof *dst);
    } else {
        for (int i = 0; i < in; i++)
            for (int o = 0; o < out_dim; o++) dst[(size_t)o * in + i] = src[(size_t)i * out_dim + o];
    }
    free(src);
    mrw_mat_init(m, MRW_DT_F32, out_dim, in, dst);
    return MRW_OK;
}

/* A big matrix [rows, cols]: zero-copy when the file's dtype is the one wanted, else converted row by row
 * (quantizing needs whole 32-element blocks). */
static mrw_status big(loader *L, const char *name, int rows, int cols, mrw_mat *m) {
    const mrw_tensor_info *t;
    mrw_status s = need(L, name, &t);
    if (s) return s;
    if (!is_matrix(t, rows, cols)) return shape_error(L, t, rows, cols);
    mrw_dtype want = L->p->weight_dtype;
    if (want == MRW_DT_AUTO) want = can_compute(t->dtype) ? t->dtype : MRW_DT_F32;
    if (!can_compute(want))
        return mrw_err(L->err, MRW_E_UNSUPPORTED, "cannot compute with %s weights (use f32, f16, bf16, q8_0 or q4_0)",
                       mrw_dtype_name(want));
    if (!mrw_dtype_is_float(t->dtype) && !mrw_dtype_is_quant(t->dtype))
        return mrw_err(L->err, MRW_E_UNSUPPORTED, "tensor '%s' has dtype %s", t->name, mrw_dtype_name(t->dtype));
    if (mrw_dtype_is_quant(want) && cols % MRW_QK)
        return mrw_err(L->err, MRW_E_UNSUPPORTED, "cannot quantize '%s' to %s: rows of %d elements are not whole blocks of 32",
                       t->name, mrw_dtype_name(want), cols);
    if (want == t->dtype) {
        mrw_mat_init(m, want, rows, cols, t->data);
    } else {
        size_t rb_out = mrw_dtype_row_bytes(want, cols), rb_in = mrw_dtype_row_bytes(t->dtype, cols);
        uint8_t *dst = mrw_model_own(L->m, mrw_alloc_big((size_t)rows * rb_out));
        if (!dst) return mrw_err(L->err, MRW_E_NOMEM, "out of memory converting '%s'", t->name);
        const uint8_t *src = t->data;
        int failed = 0;
#pragma omp parallel
        {
            float *row = malloc((size_t)cols * sizeof *row);
            if (!row) {
#pragma omp atomic write
                failed = 1;
            }
#pragma omp for schedule(static)
            for (int r = 0; r < rows; r++) {
                if (!row) continue;
                mrw_to_f32(t->dtype, src + (size_t)r * rb_in, row, cols);
                mrw_from_f32(want, row, dst + (size_t)r * rb_out, cols);
            }
            free(row);
        }
        if (failed) return mrw_err(L->err, MRW_E_NOMEM, "out of memory converting '%s'", t->name);
        mrw_mat_init(m, want, rows, cols, dst);
        L->prog_done += (uint64_t)rows * rb_in;
        mrw_progress_update(&L->prog, L->prog_done);
    }
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------------ per layer */

static mrw_status load_layer_official(loader *L, int i, rwkv7_layer *ly) {
    const mrw_model_info *in = &L->m->info;
    const int C = in->n_embd, F = in->n_ffn;
    char n[128];
    mrw_status s;
#define NAME(fmt) (snprintf(n, sizeof n, "blocks.%d." fmt, i), n)
#define TRY(x) do { if ((s = (x)) != MRW_OK) return s; } while (0)
    TRY(vec(L, NAME("ln1.weight"), C, &ly->ln1_w));
    TRY(vec(L, NAME("ln1.bias"), C, &ly->ln1_b));
    TRY(vec(L, NAME("ln2.weight"), C, &ly->ln2_w));
    TRY(vec(L, NAME("ln2.bias"), C, &ly->ln2_b));
    TRY(vec(L, NAME("att.x_r"), C, &ly->x_r));
    TRY(vec(L, NAME("att.x_w"), C, &ly->x_w));
    TRY(vec(L, NAME("att.x_k"), C, &ly->x_k));
    TRY(vec(L, NAME("att.x_v"), C, &ly->x_v));
    TRY(vec(L, NAME("att.x_a"), C, &ly->x_a));
    TRY(vec(L, NAME("att.x_g"), C, &ly->x_g));
    TRY(vec(L, NAME("att.w0"), C, &ly->w0));
    TRY(vec(L, NAME("att.a0"), C, &ly->a0));
    TRY(lora(L, NAME("att.w1"), C, in->lora_w, &ly->w1));
    TRY(lora(L, NAME("att.w2"), in->lora_w, C, &ly->w2));
    TRY(lora(L, NAME("att.a1"), C, in->lora_a, &ly->a1));
    TRY(lora(L, NAME("att.a2"), in->lora_a, C, &ly->a2));
    if (i > 0) {
        TRY(vec(L, NAME("att.v0"), C, &ly->v0));
        TRY(lora(L, NAME("att.v1"), C, in->lora_v, &ly->v1));
        TRY(lora(L, NAME("att.v2"), in->lora_v, C, &ly->v2));
    } else { /* layer 0 never applies the value-residual gate: dummies, if present, are ignored */
        find(L, NAME("att.v0"));
        find(L, NAME("att.v1"));
        find(L, NAME("att.v2"));
    }
    TRY(lora(L, NAME("att.g1"), C, in->lora_g, &ly->g1));
    TRY(lora(L, NAME("att.g2"), in->lora_g, C, &ly->g2));
    TRY(vec(L, NAME("att.k_k"), C, &ly->k_k));
    TRY(vec(L, NAME("att.k_a"), C, &ly->k_a));
    TRY(vec(L, NAME("att.r_k"), C, &ly->r_k));
    TRY(big(L, NAME("att.receptance.weight"), C, C, &ly->Wr));
    TRY(big(L, NAME("att.key.weight"), C, C, &ly->Wk));
    TRY(big(L, NAME("att.value.weight"), C, C, &ly->Wv));
    TRY(big(L, NAME("att.output.weight"), C, C, &ly->Wo));
    TRY(vec(L, NAME("att.ln_x.weight"), C, &ly->lnx_w));
    TRY(vec(L, NAME("att.ln_x.bias"), C, &ly->lnx_b));
    TRY(vec(L, NAME("ffn.x_k"), C, &ly->ffn_x_k));
    TRY(big(L, NAME("ffn.key.weight"), F, C, &ly->ffn_key));
    TRY(big(L, NAME("ffn.value.weight"), C, F, &ly->ffn_value));
    return MRW_OK;
#undef NAME
}

static mrw_status load_layer_gguf(loader *L, int i, rwkv7_layer *ly) {
    const mrw_model_info *in = &L->m->info;
    const int C = in->n_embd, F = in->n_ffn;
    char n[128];
    mrw_status s;
#define NAME(fmt) (snprintf(n, sizeof n, "blk.%d." fmt, i), n)
    TRY(vec(L, NAME("attn_norm.weight"), C, &ly->ln1_w));
    TRY(vec(L, NAME("attn_norm.bias"), C, &ly->ln1_b));
    TRY(vec(L, NAME("attn_norm_2.weight"), C, &ly->ln2_w));
    TRY(vec(L, NAME("attn_norm_2.bias"), C, &ly->ln2_b));
    float *lerp;
    TRY(vec(L, NAME("time_mix_lerp_fused.weight"), 6 * C, &lerp));
    ly->x_r = lerp;
    ly->x_w = lerp + C;
    ly->x_k = lerp + 2 * C;
    ly->x_v = lerp + 3 * C;
    ly->x_a = lerp + 4 * C;
    ly->x_g = lerp + 5 * C;
    TRY(vec(L, NAME("time_mix_w0.weight"), C, &ly->w0));
    TRY(vec(L, NAME("time_mix_a0.weight"), C, &ly->a0));
    TRY(lora(L, NAME("time_mix_w1.weight"), C, in->lora_w, &ly->w1));
    TRY(lora(L, NAME("time_mix_w2.weight"), in->lora_w, C, &ly->w2));
    TRY(lora(L, NAME("time_mix_a1.weight"), C, in->lora_a, &ly->a1));
    TRY(lora(L, NAME("time_mix_a2.weight"), in->lora_a, C, &ly->a2));
    if (i > 0) {
        TRY(vec(L, NAME("time_mix_v0.weight"), C, &ly->v0));
        TRY(lora(L, NAME("time_mix_v1.weight"), C, in->lora_v, &ly->v1));
        TRY(lora(L, NAME("time_mix_v2.weight"), in->lora_v, C, &ly->v2));
    } else { /* llama.cpp writes copies of a0/a1/a2 here; unused */
        find(L, NAME("time_mix_v0.weight"));
        find(L, NAME("time_mix_v1.weight"));
        find(L, NAME("time_mix_v2.weight"));
    }
    TRY(lora(L, NAME("time_mix_g1.weight"), C, in->lora_g, &ly->g1));
    TRY(lora(L, NAME("time_mix_g2.weight"), in->lora_g, C, &ly->g2));
    TRY(vec(L, NAME("time_mix_k_k.weight"), C, &ly->k_k));
    TRY(vec(L, NAME("time_mix_k_a.weight"), C, &ly->k_a));
    TRY(vec(L, NAME("time_mix_r_k.weight"), C, &ly->r_k));
    TRY(big(L, NAME("time_mix_receptance.weight"), C, C, &ly->Wr));
    TRY(big(L, NAME("time_mix_key.weight"), C, C, &ly->Wk));
    TRY(big(L, NAME("time_mix_value.weight"), C, C, &ly->Wv));
    TRY(big(L, NAME("time_mix_output.weight"), C, C, &ly->Wo));
    TRY(vec(L, NAME("time_mix_ln.weight"), C, &ly->lnx_w));
    TRY(vec(L, NAME("time_mix_ln.bias"), C, &ly->lnx_b));
    TRY(vec(L, NAME("channel_mix_lerp_k.weight"), C, &ly->ffn_x_k));
    TRY(big(L, NAME("channel_mix_key.weight"), F, C, &ly->ffn_key));
    TRY(big(L, NAME("channel_mix_value.weight"), C, F, &ly->ffn_value));
    return MRW_OK;
#undef NAME
#undef TRY
}

/* ---------------------------------------------------------------------------------------- whole model */

/* Reads dimensions from tensor shapes (never from metadata alone). */
static mrw_status derive_shape(loader *L) {
    mrw_model_info *in = &L->m->info;
    const mrw_tensor_info *emb, *t;
    mrw_status s;
    char n[128];
    if ((s = need(L, L->gguf ? "token_embd.weight" : "emb.weight", &emb))) return s;
    if (emb->ndim != 2 || emb->shape[0] < 1 || emb->shape[1] < 1 || emb->shape[1] > (1 << 20) || emb->shape[0] > (1 << 24))
        return mrw_err(L->err, MRW_E_SHAPE, "embedding '%s' must be a [vocab, n_embd] matrix", emb->name);
    in->n_vocab = (int)emb->shape[0];
    in->n_embd = (int)emb->shape[1];
    const int C = in->n_embd;
    /* layer count: consecutive blocks that have a pre-norm */
    in->n_layer = 0;
    for (;;) {
        snprintf(n, sizeof n, L->gguf ? "blk.%d.attn_norm.weight" : "blocks.%d.ln1.weight", in->n_layer);
        char full[256];
        snprintf(full, sizeof full, "%s%s", L->gguf ? "" : L->prefix, n);
        if (!mrw_tfile_find(L->f, full)) break;
        if (++in->n_layer > 4096) return mrw_err(L->err, MRW_E_LIMIT, "more than 4096 layers");
    }
    if (in->n_layer == 0) return mrw_err(L->err, MRW_E_MISSING, "no layers found (tensor '%s%s' is missing)",
                                         L->gguf ? "" : L->prefix, L->gguf ? "blk.0.attn_norm.weight" : "blocks.0.ln1.weight");
    /* head size: official r_k is [H, N]; GGUF flattens it, so use the metadata (default 64) */
    in->head_size = 64;
    if (L->gguf) {
        const mrw_meta *hs = mrw_tfile_find_meta(L->f, "rwkv7.wkv.head_size");
        if (hs && hs->type != MRW_MV_STRING && hs->type != MRW_MV_ARRAY && hs->v.i > 0 && hs->v.i <= 4096)
            in->head_size = (int)hs->v.i;
    } else {
        if ((s = need(L, "blocks.0.att.r_k", &t))) return s;
        if (t->ndim == 2) in->head_size = (int)t->shape[1];
    }
    if (in->head_size < 1 || C % in->head_size)
        return mrw_err(L->err, MRW_E_SHAPE, "n_embd %d is not a multiple of the head size %d", C, in->head_size);
    in->n_head = C / in->head_size;
    /* FFN width and LoRA ranks from layer 0 */
    if ((s = need(L, L->gguf ? "blk.0.channel_mix_key.weight" : "blocks.0.ffn.key.weight", &t))) return s;
    if (t->ndim != 2 || t->shape[1] != C || t->shape[0] < 1 || t->shape[0] > (1 << 22))
        return shape_error(L, t, -1, C);
    in->n_ffn = (int)t->shape[0];
    const char *lo[4] = {"w1", "a1", "v1", "g1"};
    int *rank[4] = {&in->lora_w, &in->lora_a, &in->lora_v, &in->lora_g};
    for (int k = 0; k < 4; k++) {
        /* layer 0 may lack v1 (or carry a dummy): read v1 from layer 1 when there is one */
        int layer = (k == 2 && in->n_layer > 1) ? 1 : 0;
        snprintf(n, sizeof n, L->gguf ? "blk.%d.time_mix_%s.weight" : "blocks.%d.att.%s", layer, lo[k]);
        if ((s = need(L, n, &t))) {
            if (k == 2 && in->n_layer == 1) { *rank[k] = 0; continue; } /* single layer: no value residual */
            return s;
        }
        int r = t->ndim == 2 ? (int)(L->gguf ? t->shape[0] : t->shape[1]) : -1;
        int c = t->ndim == 2 ? (int)(L->gguf ? t->shape[1] : t->shape[0]) : -1;
        if (r < 1 || c != C || r > C * 4) return mrw_err(L->err, MRW_E_SHAPE, "LoRA '%s' has an unexpected shape", t->name);
        *rank[k] = r;
    }
    return MRW_OK;
}

static int64_t mat_bytes(const mrw_mat *m) { return (int64_t)m->rows * (int64_t)m->row_bytes; }

void mrw_rwkv7_count(mrw_model *m) {
    mrw_model_info *in = &m->info;
    const int64_t C = in->n_embd, F = in->n_ffn, V = in->n_vocab;
    int64_t lora = C * (in->lora_w + in->lora_a + in->lora_g) * 2, lorav = C * in->lora_v * 2;
    int64_t per_layer = 4 * C * C + 2 * F * C + lora + 4 * C /*ln1,ln2*/ + 6 * C + 2 * C /*w0,a0*/ + 3 * C + 2 * C + C;
    in->n_params = 2 * V * C + 4 * C /* ln0, ln_out */ + in->n_layer * per_layer + (in->n_layer - 1) * (lorav + C);
    int64_t bytes = mat_bytes(&m->emb) + mat_bytes(&m->head);
    int64_t small = 4 * (4 * C);
    for (int i = 0; i < in->n_layer; i++) {
        const rwkv7_layer *l = &m->layers[i];
        bytes += mat_bytes(&l->Wr) + mat_bytes(&l->Wk) + mat_bytes(&l->Wv) + mat_bytes(&l->Wo) +
                 mat_bytes(&l->ffn_key) + mat_bytes(&l->ffn_value);
        /* LoRAs as held (f32, or f16/bf16 kept from the file) */
        bytes += mat_bytes(&l->w1) + mat_bytes(&l->w2) + mat_bytes(&l->a1) + mat_bytes(&l->a2) + mat_bytes(&l->g1) +
                 mat_bytes(&l->g2) + (i ? mat_bytes(&l->v1) + mat_bytes(&l->v2) : 0);
        small += 4 * ((i ? C : 0) + 4 * C + 6 * C + 2 * C + 3 * C + 2 * C + C);
    }
    in->weight_bytes = bytes + small;
    in->decode_bytes = in->weight_bytes - mat_bytes(&m->emb) + (int64_t)m->emb.row_bytes;
    in->weight_dtype = m->layers[0].Wr.dtype;
}

mrw_status mrw_rwkv7_from_file(mrw_tfile *file, const char *prefix, const mrw_load_params *params,
                               mrw_claim_fn claimed, void *claim_user, mrw_model **out, mrw_error *err) {
    *out = NULL;
    mrw_load_params defaults = mrw_load_params_default();
    if (!params) params = &defaults;
    mrw_model *m = calloc(1, sizeof *m);
    loader L = {.f = file, .prefix = prefix ? prefix : "", .m = m, .p = params, .err = err};
    L.gguf = mrw_tfile_format(file) == MRW_FMT_GGUF;
    L.used = calloc((size_t)mrw_tfile_count(file) + 1, 1);
    if (!m || !L.used) {
        free(m);
        free(L.used);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    mrw_status s = MRW_OK;
    if (L.gguf) {
        const mrw_meta *arch = mrw_tfile_find_meta(file, "general.architecture");
        if (arch && arch->type == MRW_MV_STRING &&
            !(arch->v.s.len == 5 && !memcmp(arch->v.s.ptr, "rwkv7", 5))) {
            s = mrw_err(err, MRW_E_UNSUPPORTED, "GGUF architecture is '%.*s', not 'rwkv7'",
                        (int)(arch->v.s.len > 64 ? 64 : arch->v.s.len), arch->v.s.ptr);
            goto fail;
        }
    }
    if ((s = derive_shape(&L))) goto fail;
    const mrw_model_info *in = &m->info;
    const int C = in->n_embd;
    uint64_t total = 0;
    for (int i = 0; i < mrw_tfile_count(file); i++) total += mrw_tfile_tensor(file, i)->nbytes;
    mrw_progress_start(&L.prog, "converting weights", total, "B",
                       params->progress && params->weight_dtype != MRW_DT_AUTO);
    if ((s = big(&L, L.gguf ? "token_embd.weight" : "emb.weight", in->n_vocab, C, &m->emb))) goto fail;
    if ((s = vec(&L, L.gguf ? "token_embd_norm.weight" : "blocks.0.ln0.weight", C, &m->ln0_w))) goto fail;
    if ((s = vec(&L, L.gguf ? "token_embd_norm.bias" : "blocks.0.ln0.bias", C, &m->ln0_b))) goto fail;
    m->layers = mrw_model_own(m, calloc((size_t)in->n_layer, sizeof *m->layers));
    if (!m->layers) { s = mrw_err(err, MRW_E_NOMEM, "out of memory"); goto fail; }
    for (int i = 0; i < in->n_layer; i++) {
        s = L.gguf ? load_layer_gguf(&L, i, &m->layers[i]) : load_layer_official(&L, i, &m->layers[i]);
        if (s) goto fail;
    }
    if ((s = vec(&L, L.gguf ? "output_norm.weight" : "ln_out.weight", C, &m->lnout_w))) goto fail;
    if ((s = vec(&L, L.gguf ? "output_norm.bias" : "ln_out.bias", C, &m->lnout_b))) goto fail;
    if ((s = big(&L, L.gguf ? "output.weight" : "head.weight", in->n_vocab, C, &m->head))) goto fail;
    mrw_progress_finish(&L.prog);
    for (int i = 0; i < mrw_tfile_count(file); i++) {
        const mrw_tensor_info *t = mrw_tfile_tensor(file, i);
        if (L.used[i] || (claimed && claimed(claim_user, t->name))) continue;
        char sh[96];
        shape_str(t, sh, sizeof sh);
        s = mrw_err(err, MRW_E_UNKNOWN,
                    "unexpected tensor '%s' %s: not part of an RWKV-7 model (is this another architecture, or a "
                    "ModRWKV checkpoint that needs its encoder?)", t->name, sh);
        goto fail;
    }
    free(L.used);
    if (!params->file_layout && (s = mrw_rwkv7_decode_layout(m, MRW_SLICE_INPUT_BYTES, err))) {
        mrw_model_free(m);
        return s;
    }
    mrw_rwkv7_count(m);
    m->file = file;
    *out = m;
    return MRW_OK;
fail:
    free(L.used);
    mrw_model_free(m);
    return s;
}

mrw_load_params mrw_load_params_default(void) {
    mrw_load_params p = {.weight_dtype = MRW_DT_AUTO, .progress = 0, .file_layout = 0};
    return p;
}

void mrw_model_free(mrw_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    mrw_tfile_close(m->file);
    free(m);
}

mrw_status mrw_model_load(const char *path, const mrw_load_params *params, mrw_model **out, mrw_error *err) {
    *out = NULL;
    mrw_tfile *f;
    mrw_status s = mrw_tfile_open(path, &f, err);
    if (s) return s;
    /* official checkpoints sometimes sit under a prefix (ModRWKV v2 uses "llm."): find where emb.weight is */
    const char *prefix = "";
    if (mrw_tfile_format(f) != MRW_FMT_GGUF && !mrw_tfile_find(f, "emb.weight") && mrw_tfile_find(f, "llm.emb.weight"))
        prefix = "llm.";
    s = mrw_rwkv7_from_file(f, prefix, params, NULL, NULL, out, err);
    if (s) {
        mrw_tfile_close(f);
        if (err) mrw_err_prefix(err, "%s", path);
        return s;
    }
    return MRW_OK;
}

mrw_model_info mrw_model_get_info(const mrw_model *m) { return m->info; }

mrw_status mrw_model_embedding(const mrw_model *m, int32_t token, float *out) {
    if (token < 0 || token >= m->info.n_vocab) return MRW_E_ARG;
    mrw_mat_row_f32(&m->emb, token, out);
    return MRW_OK;
}

mrw_status mrw_vocab_from_model(const mrw_model *m, mrw_vocab **out, mrw_error *err) {
    *out = NULL;
    if (!m->file) return mrw_err(err, MRW_E_MISSING, "the model was not loaded from a file");
    return mrw_vocab_from_gguf_meta(m->file, out, err);
}
