#include "train/rwkv7_layout.h"

#include <stdio.h>
#include <string.h>

static int add(mrw_param_set *ps, const char *key, int nd, int64_t s0, int64_t s1, int64_t s2) {
    char name[MRW_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "llm.%s", key);
    int64_t sh[3] = {s0, s1, s2};
    /* RWKV-LM's configure_optimizers: weight decay only for tensors with >= 2 non-unit dims named ".weight"
     * (emb, head, the four attention and two FFN matrices); LoRAs, r_k, norms and mixes get none. */
    int n_big = 0;
    for (int d = 0; d < nd; d++) n_big += sh[d] > 1;
    const int decay = n_big >= 2 && strstr(key, ".weight") != NULL;
    return mrw_param_add(ps, name, MRW_PG_RWKV, !decay, nd, sh);
}

int mrw_rwkv7_param_layout(mrw_param_set *ps, const mrw_rwkv7_train_config *c, mrw_rwkv7_gidx *g, mrw_rwkv7_lidx *L) {
    const int C = c->n_embd, H = C / c->head_size, N = c->head_size, V = c->vocab, F = c->ffn;
    int bad = 0;
#define ADD(dst, key, ...) bad |= ((dst) = add(ps, key, __VA_ARGS__)) < 0
    ADD(g->emb, "emb.weight", 2, V, C, 0);
    g->ln0w = g->ln0b = -1;
    for (int l = 0; l < c->n_layer; l++) {
        mrw_rwkv7_lidx *x = &L[l];
        char k[96];
#define K(s) (snprintf(k, sizeof k, "blocks.%d.%s", l, s), k)
        if (l == 0) {
            ADD(g->ln0w, K("ln0.weight"), 1, C, 0, 0);
            ADD(g->ln0b, K("ln0.bias"), 1, C, 0, 0);
        }
        ADD(x->ln1w, K("ln1.weight"), 1, C, 0, 0);
        ADD(x->ln1b, K("ln1.bias"), 1, C, 0, 0);
        ADD(x->ln2w, K("ln2.weight"), 1, C, 0, 0);
        ADD(x->ln2b, K("ln2.bias"), 1, C, 0, 0);
        ADD(x->xr, K("att.x_r"), 3, 1, 1, C);
        ADD(x->xw, K("att.x_w"), 3, 1, 1, C);
        ADD(x->xk, K("att.x_k"), 3, 1, 1, C);
        ADD(x->xv, K("att.x_v"), 3, 1, 1, C);
        ADD(x->xa, K("att.x_a"), 3, 1, 1, C);
        ADD(x->xg, K("att.x_g"), 3, 1, 1, C);
        ADD(x->w0, K("att.w0"), 3, 1, 1, C);
        ADD(x->w1, K("att.w1"), 2, C, c->d_w, 0);
        ADD(x->w2, K("att.w2"), 2, c->d_w, C, 0);
        ADD(x->a0, K("att.a0"), 3, 1, 1, C);
        ADD(x->a1, K("att.a1"), 2, C, c->d_a, 0);
        ADD(x->a2, K("att.a2"), 2, c->d_a, C, 0);
        x->v0 = x->v1 = x->v2 = -1;
        if (c->d_v > 0) { /* layer 0 keeps them too (unused, zero gradient), as the reference trainer does */
            ADD(x->v0, K("att.v0"), 3, 1, 1, C);
            ADD(x->v1, K("att.v1"), 2, C, c->d_v, 0);
            ADD(x->v2, K("att.v2"), 2, c->d_v, C, 0);
        }
        ADD(x->g1, K("att.g1"), 2, C, c->d_g, 0);
        ADD(x->g2, K("att.g2"), 2, c->d_g, C, 0);
        ADD(x->kk, K("att.k_k"), 3, 1, 1, C);
        ADD(x->ka, K("att.k_a"), 3, 1, 1, C);
        ADD(x->rk, K("att.r_k"), 2, H, N, 0);
        ADD(x->Wr, K("att.receptance.weight"), 2, C, C, 0);
        ADD(x->Wk, K("att.key.weight"), 2, C, C, 0);
        ADD(x->Wv, K("att.value.weight"), 2, C, C, 0);
        ADD(x->Wo, K("att.output.weight"), 2, C, C, 0);
        ADD(x->lnxw, K("att.ln_x.weight"), 1, C, 0, 0);
        ADD(x->lnxb, K("att.ln_x.bias"), 1, C, 0, 0);
        ADD(x->fxk, K("ffn.x_k"), 3, 1, 1, C);
        ADD(x->Wfk, K("ffn.key.weight"), 2, F, C, 0);
        ADD(x->Wfv, K("ffn.value.weight"), 2, C, F, 0);
#undef K
    }
    ADD(g->lnow, "ln_out.weight", 1, C, 0, 0);
    ADD(g->lnob, "ln_out.bias", 1, C, 0, 0);
    ADD(g->head, "head.weight", 2, V, C, 0);
#undef ADD
    return bad ? -1 : 0;
}
