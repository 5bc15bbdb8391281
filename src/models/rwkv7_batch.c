/* Batched RNN-mode decode (rwkv7_batch.h): rows are B different sequences, each one token, each with its own
 * state. The row-independent steps (projections, LoRAs, key preparation, GroupNorm/bonus/gate/output, the
 * channel-mix matrices) are sequence mode's own over B rows (mrw_rwkv7_* in rwkv7_context.h); only the token
 * shift and the WKV step live here: row b shifts against and scans with its own state. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/cpu/ops.h"
#include "models/rwkv7.h"
#include "models/rwkv7_batch.h"
#include "models/rwkv7_context.h"

#define NT (c->kc.n_threads)
#define PAR if (B >= MRW_ROWS_MIN_PARALLEL && NT > 1)

/* the per-layer pieces of sequence b's state */
static float *sx_att(mrw_state *s, size_t lf, int l) { return s->data + (size_t)l * lf; }

static void shift_and_mix(mrw_context *c, const rwkv7_layer *ly, mrw_state *const *st, size_t lf, int l, int B) {
    const int C = c->C;
    mrw_layernorm(c->x, c->xa, B, C, ly->ln1_w, ly->ln1_b, MRW_LN_EPS, NT);
#pragma omp parallel for num_threads(NT) schedule(static) PAR
    for (int b = 0; b < B; b++) {
        float *sx = sx_att(st[b], lf, l);
        const float *cur = c->xa + (size_t)b * C;
        const size_t o = (size_t)b * C;
        for (int i = 0; i < C; i++) {
            const float x = cur[i], d = sx[i] - x;
            c->xr[o + i] = x + d * ly->x_r[i];
            c->xw[o + i] = x + d * ly->x_w[i];
            c->xk[o + i] = x + d * ly->x_k[i];
            c->xv[o + i] = x + d * ly->x_v[i];
            c->xaa[o + i] = x + d * ly->x_a[i];
            c->xg[o + i] = x + d * ly->x_g[i];
        }
        memcpy(sx, cur, (size_t)C * sizeof *sx);
    }
}

static void wkv_and_output(mrw_context *c, const rwkv7_layer *ly, mrw_state *const *st, size_t lf, int l, int B) {
    const int C = c->C, H = c->H, N = c->N;
    /* one WKV step per sequence against its own matrix state (heads in parallel inside the kernel when the
     * batch is small, sequences in parallel otherwise) */
    if (B >= NT && NT > 1) {
#pragma omp parallel for num_threads(NT) schedule(static)
        for (int b = 0; b < B; b++) {
            const size_t o = (size_t)b * C;
            mrw_wkv7(sx_att(st[b], lf, l) + C, H, N, 1, c->r + o, c->w + o, c->k + o, c->v + o, c->kk + o,
                     c->alpha + o, c->y + o, 1);
        }
    } else {
        for (int b = 0; b < B; b++) {
            const size_t o = (size_t)b * C;
            mrw_wkv7(sx_att(st[b], lf, l) + C, H, N, 1, c->r + o, c->w + o, c->k + o, c->v + o, c->kk + o,
                     c->alpha + o, c->y + o, NT);
        }
    }
    mrw_rwkv7_attn_out(c, ly, B);
}

static void channel_mix(mrw_context *c, const rwkv7_layer *ly, mrw_state *const *st, size_t lf, int l, int B) {
    const int C = c->C;
    mrw_layernorm(c->x, c->xa, B, C, ly->ln2_w, ly->ln2_b, MRW_LN_EPS, NT);
#pragma omp parallel for num_threads(NT) schedule(static) PAR
    for (int b = 0; b < B; b++) {
        float *sx = sx_att(st[b], lf, l) + lf - C;
        const float *cur = c->xa + (size_t)b * C;
        float *u = c->xk + (size_t)b * C;
        for (int i = 0; i < C; i++) u[i] = cur[i] + (sx[i] - cur[i]) * ly->ffn_x_k[i];
        memcpy(sx, cur, (size_t)C * sizeof *sx);
    }
    mrw_rwkv7_ffn(c, ly, B);
}

static void batch_chunk(mrw_context *c, mrw_state *const *st, const int32_t *tok, int B, float *logits) {
    const mrw_model *m = c->model;
    const int C = c->C;
    const size_t lf = mrw_state_layer_floats(&m->info);
    for (int b = 0; b < B; b++) mrw_mat_row_f32(&m->emb, tok[b], c->x + (size_t)b * C);
    mrw_layernorm(c->x, c->x, B, C, m->ln0_w, m->ln0_b, MRW_LN_EPS, NT);
    for (int l = 0; l < m->info.n_layer; l++) {
        const rwkv7_layer *ly = &m->layers[l];
        shift_and_mix(c, ly, st, lf, l, B);
        mrw_rwkv7_projections(c, ly, l, B);
        mrw_rwkv7_key_prep(c, ly, B);
        wkv_and_output(c, ly, st, lf, l, B);
        channel_mix(c, ly, st, lf, l, B);
    }
    if (!logits) return;
    mrw_layernorm(c->x, c->xa, B, C, m->lnout_w, m->lnout_b, MRW_LN_EPS, NT);
    mrw_matmul(&c->kc, &m->head, c->xa, C, logits, m->info.n_vocab, B, 0);
}

mrw_status mrw_eval_batch(mrw_context *c, mrw_state *const *states, const int32_t *tokens, int B, float *logits,
                          mrw_error *err) {
    if (!c || !states || !tokens) return mrw_err(err, MRW_E_ARG, "no context, states or tokens");
    if (B <= 0) return mrw_err(err, MRW_E_ARG, "empty batch: nothing to evaluate");
    const mrw_model_info *in = &c->model->info;
    const size_t want = (size_t)in->n_layer * mrw_state_layer_floats(in);
    for (int b = 0; b < B; b++) {
        if (!states[b] || states[b]->n != want)
            return mrw_err(err, MRW_E_ARG, "state %d belongs to a model of a different shape", b);
        if (tokens[b] < 0 || tokens[b] >= in->n_vocab)
            return mrw_err(err, MRW_E_ARG, "token %d of sequence %d is outside the vocabulary [0, %d)", tokens[b], b,
                           in->n_vocab);
        for (int k = 0; k < b; k++)
            if (states[k] == states[b]) return mrw_err(err, MRW_E_ARG, "sequences %d and %d share a state", k, b);
    }
    for (int start = 0; start < B; start += c->max_chunk) {
        const int n = B - start < c->max_chunk ? B - start : c->max_chunk;
        batch_chunk(c, states + start, tokens + start, n, logits ? logits + (size_t)start * in->n_vocab : NULL);
    }
    return MRW_OK;
}
