#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "models/rwkv7_context.h"

mrw_context_params mrw_context_params_default(void) {
    /* 512: a typical prompt is one chunk, so the GEMMs pack each weight once (activations ~90 MB at C=2048) */
    mrw_context_params p = {.n_threads = 0, .max_chunk = 512, .exact = 0};
    return p;
}

mrw_status mrw_context_new(const mrw_model *model, const mrw_context_params *params, mrw_context **out,
                           mrw_error *err) {
    *out = NULL;
    if (!model) return mrw_err(err, MRW_E_ARG, "no model");
    mrw_context_params p = params ? *params : mrw_context_params_default();
    if (p.max_chunk <= 0) p.max_chunk = 512;
    if (p.max_chunk > 65536) return mrw_err(err, MRW_E_ARG, "max_chunk %d is too large (at most 65536)", p.max_chunk);
    mrw_context *c = calloc(1, sizeof *c);
    if (!c) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    const mrw_model_info *in = &model->info;
    c->model = model;
    c->max_chunk = p.max_chunk;
    c->C = in->n_embd;
    c->H = in->n_head;
    c->N = in->head_size;
    mrw_kctx_init(&c->kc, p.n_threads);
    c->kc.exact = p.exact;
    const size_t TC = (size_t)p.max_chunk * in->n_embd, T = (size_t)p.max_chunk;
    const size_t rank_floats = T * ((size_t)in->lora_w + in->lora_a + in->lora_v + in->lora_g);
    const size_t total = 17 * TC + rank_floats + T * in->n_ffn + 16 * 22;
    c->arena = aligned_alloc(64, ((total * sizeof(float)) + 63) & ~(size_t)63);
    if (!c->arena) {
        free(c);
        return mrw_err(err, MRW_E_NOMEM, "out of memory for %zu MB of activations (lower --chunk)",
                       total * sizeof(float) >> 20);
    }
    float *p0 = c->arena;
#define TAKE(ptr, n) do { (ptr) = p0; p0 += ((n) + 15) & ~(size_t)15; } while (0)
    TAKE(c->x, TC); TAKE(c->xa, TC); TAKE(c->xr, TC); TAKE(c->xw, TC); TAKE(c->xk, TC); TAKE(c->xv, TC);
    TAKE(c->xaa, TC); TAKE(c->xg, TC); TAKE(c->r, TC); TAKE(c->k, TC); TAKE(c->v, TC); TAKE(c->w, TC);
    TAKE(c->alpha, TC); TAKE(c->g, TC); TAKE(c->vfirst, TC); TAKE(c->kk, TC); TAKE(c->y, TC);
    TAKE(c->lw, T * in->lora_w); TAKE(c->la, T * in->lora_a); TAKE(c->lv, T * in->lora_v); TAKE(c->lg, T * in->lora_g);
    TAKE(c->ffn, T * in->n_ffn);
#undef TAKE
    *out = c;
    return MRW_OK;
}

void mrw_context_free(mrw_context *c) {
    if (!c) return;
    mrw_kctx_free(&c->kc);
    free(c->arena);
    free(c);
}

const mrw_model *mrw_context_model(const mrw_context *c) { return c->model; }
int mrw_context_n_threads(const mrw_context *c) { return c->kc.n_threads; }
