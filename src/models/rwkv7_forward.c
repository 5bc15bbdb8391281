/* The RWKV-7 forward pass in sequence mode (T tokens at once: GEMMs for every projection, then the WKV
 * scan); T = 1 is RNN mode through the same code. Follows ../shared/reference/rwkv7.md step by step; the
 * step numbers in comments refer to its "One token in RNN mode" section. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/cpu/ops.h"
#include "models/rwkv7.h"
#include "models/rwkv7_context.h"

#define NT (c->kc.n_threads)

/* Steps 1-2: LN1, token shift against the previous row (the state for row 0), the six mixes. */
static void shift_and_mix(mrw_context *c, const rwkv7_layer *ly, float *sx, int T) {
    const int nt = NT;
    const int C = c->C;
    mrw_layernorm(c->x, c->xa, T, C, ly->ln1_w, ly->ln1_b, MRW_LN_EPS, nt);
    MRW_PARALLEL_FOR_IF(T >= MRW_ROWS_MIN_PARALLEL && nt > 1, int, t, T, {
        const float *cur = c->xa + (size_t)t * C, *prev = t ? cur - C : sx;
        const size_t o = (size_t)t * C;
        for (int i = 0; i < C; i++) {
            const float x = cur[i], d = prev[i] - x;
            c->xr[o + i] = x + d * ly->x_r[i];
            c->xw[o + i] = x + d * ly->x_w[i];
            c->xk[o + i] = x + d * ly->x_k[i];
            c->xv[o + i] = x + d * ly->x_v[i];
            c->xaa[o + i] = x + d * ly->x_a[i];
            c->xg[o + i] = x + d * ly->x_g[i];
        }
    });
    memcpy(sx, c->xa + (size_t)(T - 1) * C, (size_t)C * sizeof *sx);
}

/* Steps 3-7: the projections and LoRAs, decay, ICLR, gate and the value residual. */
void mrw_rwkv7_projections(mrw_context *c, const rwkv7_layer *ly, int layer, int T) {
    const int nt = NT;
    const int C = c->C;
    mrw_mm_job down[7] = {
        {&ly->Wr, c->xr, C, c->r, C, 0},
        {&ly->Wk, c->xk, C, c->k, C, 0},
        {&ly->Wv, c->xv, C, c->v, C, 0},
        {&ly->w1, c->xw, C, c->lw, ly->w1.rows, 0},
        {&ly->a1, c->xaa, C, c->la, ly->a1.rows, 0},
        {&ly->g1, c->xg, C, c->lg, ly->g1.rows, 0},
        {&ly->v1, c->xv, C, c->lv, ly->v1.rows, 0},
    };
    mrw_matmul_batch(&c->kc, down, layer > 0 ? 7 : 6, T);
    mrw_vec_tanh(c->lw, (size_t)T * ly->w1.rows, nt);
    mrw_vec_sigmoid(c->lg, (size_t)T * ly->g1.rows, nt);
    /* up-projections write into the mix buffers, which are dead now */
    float *wpre = c->xw, *apre = c->xaa, *vpre = c->xr;
    mrw_mm_job up[4] = {
        {&ly->w2, c->lw, ly->w2.cols, wpre, C, 0},
        {&ly->a2, c->la, ly->a2.cols, apre, C, 0},
        {&ly->g2, c->lg, ly->g2.cols, c->g, C, 0},
        {&ly->v2, c->lv, ly->v2.cols, vpre, C, 0},
    };
    mrw_matmul_batch(&c->kc, up, layer > 0 ? 4 : 3, T);
    /* step 4: decay; step 5: ICLR; step 7: value residual (its gate computed in place in vpre) */
    memcpy(c->w, wpre, (size_t)T * C * sizeof(float));
    mrw_vec_decay(c->w, ly->w0, T, C, nt);
    memcpy(c->alpha, apre, (size_t)T * C * sizeof(float));
    mrw_vec_sigmoid_bias(c->alpha, ly->a0, T, C, nt);
    if (layer == 0) {
        memcpy(c->vfirst, c->v, (size_t)T * C * sizeof(float));
    } else {
        mrw_vec_sigmoid_bias(vpre, ly->v0, T, C, nt);
        const long n = (long)T * C;
        MRW_PARALLEL_FOR_IF(T >= MRW_ROWS_MIN_PARALLEL && nt > 1, long, i, n, { c->v[i] += (c->vfirst[i] - c->v[i]) * vpre[i]; });
    }
}

/* Steps 8-9 and the kernel's a/b vectors: κ̂ from k before the k_a update, then b = κ̂⊙α, a = −κ̂. */
void mrw_rwkv7_key_prep(mrw_context *c, const rwkv7_layer *ly, int T) {
    const int nt = NT;
    const int C = c->C, H = c->H, N = c->N;
    MRW_PARALLEL_FOR_IF(T >= MRW_ROWS_MIN_PARALLEL && nt > 1, int, t, T, {
        const size_t o = (size_t)t * C;
        float *k = c->k + o, *kk = c->kk + o, *al = c->alpha + o;
        for (int h = 0; h < H; h++) {
            float ss = 0;
            for (int j = 0; j < N; j++) {
                float v = k[h * N + j] * ly->k_k[h * N + j];
                kk[h * N + j] = v;
                ss += v * v;
            }
            float inv = 1.0f / fmaxf(sqrtf(ss), 1e-12f);
            for (int j = 0; j < N; j++) kk[h * N + j] *= inv;
        }
        for (int i = 0; i < C; i++) {
            k[i] *= 1.0f + (al[i] - 1.0f) * ly->k_a[i];
            al[i] *= kk[i]; /* alpha buffer becomes b */
            kk[i] = -kk[i]; /* kk buffer becomes a */
        }
    });
}

/* Steps 11-13: GroupNorm, bonus, gate, output projection into the residual. */
void mrw_rwkv7_attn_out(mrw_context *c, const rwkv7_layer *ly, int T) {
    const int nt = NT;
    const int C = c->C, H = c->H, N = c->N;
    mrw_groupnorm(c->y, T, H, N, ly->lnx_w, ly->lnx_b, MRW_GN_EPS, nt);
    MRW_PARALLEL_FOR_IF(T >= MRW_ROWS_MIN_PARALLEL && nt > 1, int, t, T, {
        const size_t o = (size_t)t * C;
        for (int h = 0; h < H; h++) {
            const size_t p = o + (size_t)h * N;
            float beta = 0;
            for (int j = 0; j < N; j++) beta += c->r[p + j] * c->k[p + j] * ly->r_k[h * N + j];
            for (int i = 0; i < N; i++) c->y[p + i] = (c->y[p + i] + beta * c->v[p + i]) * c->g[p + i];
        }
    });
    mrw_matmul(&c->kc, &ly->Wo, c->y, C, c->x, C, T, 1);
}

/* Step 10: the WKV scan over the T tokens, then steps 11-13. */
static void wkv_and_output(mrw_context *c, const rwkv7_layer *ly, float *S, int T) {
    mrw_wkv7(S, c->H, c->N, T, c->r, c->w, c->k, c->v, c->kk, c->alpha, c->y, c->kc.n_threads);
    mrw_rwkv7_attn_out(c, ly, T);
}

/* Step 14: channel mix. */
static void channel_mix(mrw_context *c, const rwkv7_layer *ly, float *sx, int T) {
    const int nt = NT;
    const int C = c->C;
    mrw_layernorm(c->x, c->xa, T, C, ly->ln2_w, ly->ln2_b, MRW_LN_EPS, nt);
    MRW_PARALLEL_FOR_IF(T >= MRW_ROWS_MIN_PARALLEL && nt > 1, int, t, T, {
        const float *cur = c->xa + (size_t)t * C, *prev = t ? cur - C : sx;
        float *u = c->xk + (size_t)t * C;
        for (int i = 0; i < C; i++) u[i] = cur[i] + (prev[i] - cur[i]) * ly->ffn_x_k[i];
    });
    memcpy(sx, c->xa + (size_t)(T - 1) * C, (size_t)C * sizeof *sx);
    mrw_rwkv7_ffn(c, ly, T);
}

void mrw_rwkv7_ffn(mrw_context *c, const rwkv7_layer *ly, int T) {
    const int nt = NT;
    const int C = c->C, F = ly->ffn_key.rows;
    mrw_matmul(&c->kc, &ly->ffn_key, c->xk, C, c->ffn, F, T, 0);
    const long n_ffn = (long)T * F;
    MRW_PARALLEL_FOR_IF(T >= MRW_ROWS_MIN_PARALLEL && nt > 1, long, i, n_ffn, {
        float h = c->ffn[i] > 0 ? c->ffn[i] : 0;
        c->ffn[i] = h * h;
    });
    mrw_matmul(&c->kc, &ly->ffn_value, c->ffn, F, c->x, C, T, 1);
}

/* c->x holds T raw input rows (embeddings before ln0). */
static void forward_chunk(mrw_context *c, mrw_state *st, int T, mrw_logits_mode mode, float *logits) {
    const mrw_model *m = c->model;
    const int C = c->C;
    const size_t lf = mrw_state_layer_floats(&m->info);
    mrw_layernorm(c->x, c->x, T, C, m->ln0_w, m->ln0_b, MRW_LN_EPS, NT);
    for (int l = 0; l < m->info.n_layer; l++) {
        const rwkv7_layer *ly = &m->layers[l];
        float *s = st->data + (size_t)l * lf;
        float *sx_att = s, *S = s + C, *sx_ffn = s + lf - C;
        shift_and_mix(c, ly, sx_att, T);
        mrw_rwkv7_projections(c, ly, l, T);
        mrw_rwkv7_key_prep(c, ly, T);
        wkv_and_output(c, ly, S, T);
        channel_mix(c, ly, sx_ffn, T);
    }
    if (mode == MRW_LOGITS_NONE) return;
    const int first = mode == MRW_LOGITS_LAST ? T - 1 : 0, rows = T - first;
    mrw_layernorm(c->x + (size_t)first * C, c->xa, rows, C, m->lnout_w, m->lnout_b, MRW_LN_EPS, NT);
    mrw_matmul(&c->kc, &m->head, c->xa, C, logits, m->info.n_vocab, rows, 0);
}

static mrw_status check_call(mrw_context *c, mrw_state *st, int n, mrw_logits_mode mode, float *logits,
                             mrw_error *err) {
    if (!c || !st) return mrw_err(err, MRW_E_ARG, "no context or state");
    if (n <= 0) return mrw_err(err, MRW_E_ARG, "empty input: nothing to evaluate");
    if (mode != MRW_LOGITS_NONE && !logits) return mrw_err(err, MRW_E_ARG, "logits requested but no buffer given");
    if (st->n != c->model->info.n_layer * mrw_state_layer_floats(&c->model->info))
        return mrw_err(err, MRW_E_ARG, "the state belongs to a model of a different shape");
    return MRW_OK;
}

/* Runs chunk after chunk; with MRW_LOGITS_ALL each chunk writes its rows, with LAST only the final one. */
typedef void (*fill_fn)(mrw_context *c, const void *src, int start, int n);

static mrw_status run(mrw_context *c, mrw_state *st, const void *src, fill_fn fill, int n, mrw_logits_mode mode,
                      float *logits) {
    const int V = c->model->info.n_vocab;
    for (int start = 0; start < n; start += c->max_chunk) {
        int T = n - start < c->max_chunk ? n - start : c->max_chunk;
        int last = start + T == n;
        fill(c, src, start, T);
        mrw_logits_mode m = mode == MRW_LOGITS_ALL ? mode : (last ? mode : MRW_LOGITS_NONE);
        float *out = mode == MRW_LOGITS_ALL ? logits + (size_t)start * V : logits;
        forward_chunk(c, st, T, m, out);
    }
    return MRW_OK;
}

static void fill_tokens(mrw_context *c, const void *src, int start, int n) {
    const int32_t *tok = (const int32_t *)src + start;
    for (int t = 0; t < n; t++) mrw_mat_row_f32(&c->model->emb, tok[t], c->x + (size_t)t * c->C);
}

static void fill_embd(mrw_context *c, const void *src, int start, int n) {
    memcpy(c->x, (const float *)src + (size_t)start * c->C, (size_t)n * c->C * sizeof(float));
}

mrw_status mrw_eval_tokens(mrw_context *c, mrw_state *st, const int32_t *tokens, int n, mrw_logits_mode mode,
                           float *logits, mrw_error *err) {
    mrw_status s = check_call(c, st, n, mode, logits, err);
    if (s) return s;
    if (!tokens) return mrw_err(err, MRW_E_ARG, "no tokens given");
    const int V = c->model->info.n_vocab;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return mrw_err(err, MRW_E_ARG, "token %d at position %d is outside the vocabulary [0, %d)", tokens[i], i, V);
    return run(c, st, tokens, fill_tokens, n, mode, logits);
}

mrw_status mrw_eval_embeddings(mrw_context *c, mrw_state *st, const float *embd, int n, mrw_logits_mode mode,
                               float *logits, mrw_error *err) {
    mrw_status s = check_call(c, st, n, mode, logits, err);
    if (s) return s;
    if (!embd) return mrw_err(err, MRW_E_ARG, "no embeddings given");
    return run(c, st, embd, fill_embd, n, mode, logits);
}
