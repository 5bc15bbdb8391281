/* Random RWKV-7 models for tests, benchmarks and the offline demo. Values are drawn so every path is
 * exercised with realistic magnitudes (decays across their whole range, unit-scale activations). Each row
 * has its own RNG stream, so the result does not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bigalloc.h"
#include "base/error.h"
#include "models/rwkv7.h"
#include "tensor/dtype.h"

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi) from stream (seed, tensor, row). */
static void fill_uniform(float *dst, int n, uint64_t seed, uint64_t tensor, uint64_t row, float lo, float hi) {
    uint64_t s = mix64(seed ^ mix64(tensor * 0x9e3779b97f4a7c15ull + row + 1));
    for (int i = 0; i < n; i++) {
        s += 0x9e3779b97f4a7c15ull;
        double u = (mix64(s) >> 11) * (1.0 / 9007199254740992.0);
        dst[i] = lo + (hi - lo) * (float)u;
    }
}

static int default_rank(int C, double expo, double mult) {
    int r = (int)lround(pow((double)C, expo) * mult / 32.0);
    return (r < 1 ? 1 : r) * 32;
}

typedef struct {
    mrw_model *m;
    uint64_t seed, tensor_id;
    mrw_error *err;
} rnd;

static float *vec(rnd *r, int n, float lo, float hi) {
    float *v = mrw_model_own(r->m, malloc((size_t)n * sizeof *v));
    if (v) fill_uniform(v, n, r->seed, r->tensor_id, 0, lo, hi);
    r->tensor_id++;
    return v;
}

/* [rows, cols] in dtype, uniform in ±scale. */
static int mat(rnd *r, mrw_mat *m, mrw_dtype dt, int rows, int cols, float scale) {
    size_t rb = mrw_dtype_row_bytes(dt, cols);
    if (!rb) return -1;
    uint8_t *d = mrw_model_own(r->m, mrw_alloc_big((size_t)rows * rb));
    if (!d) return -1;
    const uint64_t id = r->tensor_id++;
    int failed = 0;
#pragma omp parallel
    {
        float *row = malloc((size_t)cols * sizeof *row);
        if (!row) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!row) continue;
            fill_uniform(row, cols, r->seed, id, (uint64_t)i, -scale, scale);
            mrw_from_f32(dt, row, d + (size_t)i * rb, cols);
        }
        free(row);
    }
    if (failed) return -1;
    mrw_mat_init(m, dt, rows, cols, d);
    return 0;
}

mrw_status mrw_model_new_random(const mrw_rwkv7_config *cfg, mrw_dtype dtype, uint64_t seed, mrw_model **out,
                                mrw_error *err) {
    *out = NULL;
    mrw_rwkv7_config c = *cfg;
    if (c.head_size <= 0) c.head_size = 64;
    if (c.n_ffn <= 0) c.n_ffn = 4 * c.n_embd;
    if (c.n_layer < 1 || c.n_layer > 4096 || c.n_embd < 1 || c.n_embd % c.head_size || c.n_vocab < 1 ||
        c.n_vocab > (1 << 24) || c.n_embd > (1 << 16) || c.n_ffn > (1 << 18))
        return mrw_err(err, MRW_E_ARG, "invalid model shape: %d layers, n_embd %d, head size %d, vocab %d",
                       c.n_layer, c.n_embd, c.head_size, c.n_vocab);
    if (c.lora_w <= 0) c.lora_w = default_rank(c.n_embd, 0.5, 1.8);
    if (c.lora_a <= 0) c.lora_a = default_rank(c.n_embd, 0.5, 1.8);
    if (c.lora_v <= 0) c.lora_v = default_rank(c.n_embd, 0.5, 1.3);
    if (c.lora_g <= 0) c.lora_g = default_rank(c.n_embd, 0.8, 0.6);
    if (dtype == MRW_DT_AUTO) dtype = MRW_DT_F32;
    if (mrw_dtype_is_quant(dtype) && (c.n_embd % 32 || c.n_ffn % 32))
        return mrw_err(err, MRW_E_ARG, "%s needs n_embd and n_ffn to be multiples of 32", mrw_dtype_name(dtype));
    mrw_model *m = calloc(1, sizeof *m);
    if (!m) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    mrw_model_info *in = &m->info;
    in->n_layer = c.n_layer;
    in->n_embd = c.n_embd;
    in->head_size = c.head_size;
    in->n_head = c.n_embd / c.head_size;
    in->n_ffn = c.n_ffn;
    in->n_vocab = c.n_vocab;
    in->lora_w = c.lora_w;
    in->lora_a = c.lora_a;
    in->lora_v = c.lora_v;
    in->lora_g = c.lora_g;
    rnd r = {.m = m, .seed = seed, .err = err};
    const int C = c.n_embd, F = c.n_ffn;
    const float sc = sqrtf(3.0f / C), sf = sqrtf(3.0f / F);
    int bad = 0;
#define V(ptr, lo, hi) bad |= !((ptr) = vec(&r, C, lo, hi))
#define M(mm, dt, rows, cols, s) bad |= mat(&r, &(mm), dt, rows, cols, s)
    /* LoRAs as a loaded checkpoint of this dtype holds them (f16/bf16 kept, f32 activations; else f32) */
    const mrw_dtype ldt = dtype == MRW_DT_F16 || dtype == MRW_DT_BF16 ? dtype : MRW_DT_F32;
#define LM(mm, rows, cols, s) (M(mm, ldt, rows, cols, s), (mm).f32_act = 1)
    M(m->emb, dtype, c.n_vocab, C, 1.0f);
    V(m->ln0_w, 0.8f, 1.2f);
    V(m->ln0_b, -0.1f, 0.1f);
    m->layers = mrw_model_own(m, calloc((size_t)c.n_layer, sizeof *m->layers));
    bad |= !m->layers;
    for (int i = 0; i < c.n_layer && !bad; i++) {
        rwkv7_layer *l = &m->layers[i];
        V(l->ln1_w, 0.8f, 1.2f); V(l->ln1_b, -0.1f, 0.1f); V(l->ln2_w, 0.8f, 1.2f); V(l->ln2_b, -0.1f, 0.1f);
        V(l->x_r, 0, 1); V(l->x_w, 0, 1); V(l->x_k, 0, 1); V(l->x_v, 0, 1); V(l->x_a, 0, 1); V(l->x_g, 0, 1);
        V(l->w0, -6.0f, 1.0f);
        V(l->a0, -1.0f, 1.0f);
        LM(l->w1, c.lora_w, C, sc);
        LM(l->w2, C, c.lora_w, 0.3f);
        LM(l->a1, c.lora_a, C, sc);
        LM(l->a2, C, c.lora_a, 0.3f);
        if (i > 0) {
            V(l->v0, -1.0f, 1.0f);
            LM(l->v1, c.lora_v, C, sc);
            LM(l->v2, C, c.lora_v, 0.3f);
        }
        LM(l->g1, c.lora_g, C, sc);
        LM(l->g2, C, c.lora_g, 0.3f);
        V(l->k_k, 0.7f, 1.0f); V(l->k_a, 0.8f, 1.2f); V(l->r_k, -0.3f, 0.3f);
        M(l->Wr, dtype, C, C, sc); M(l->Wk, dtype, C, C, sc); M(l->Wv, dtype, C, C, sc);
        M(l->Wo, dtype, C, C, sc * 0.5f);
        V(l->lnx_w, 0.8f, 1.2f); V(l->lnx_b, -0.1f, 0.1f);
        V(l->ffn_x_k, 0, 1);
        M(l->ffn_key, dtype, F, C, sc);
        M(l->ffn_value, dtype, C, F, sf * 0.5f);
    }
    V(m->lnout_w, 0.8f, 1.2f);
    V(m->lnout_b, -0.1f, 0.1f);
    M(m->head, dtype, c.n_vocab, C, sc * 3.0f);
#undef V
#undef M
#undef LM
    if (bad) {
        mrw_model_free(m);
        return mrw_err(err, MRW_E_NOMEM, "out of memory creating a random model");
    }
    mrw_status st = mrw_rwkv7_decode_layout(m, MRW_SLICE_INPUT_BYTES, err); /* as a loaded model holds them */
    if (st) {
        mrw_model_free(m);
        return st;
    }
    mrw_rwkv7_count(m); /* parameter and byte counts as for a loaded model */
    *out = m;
    return MRW_OK;
}
