/* RWKV-7 training with the final hidden state as output, through the public interface of rwkv7_train.h (the
 * method is described in rwkv7_train_hidden.h). */
#include "train/rwkv7_train_hidden.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* The forward head is HID_SCALE·[I; 0]: a power of two, so hidden = logits / HID_SCALE exactly, and the logits are
 * so small that every softmax row is nearly uniform whatever the hidden state (see the header). */
#define HID_SCALE (1.0f / 1024.0f)

static int head_index(const mrw_rwkv7_train *m) {
    return mrw_param_find(mrw_rwkv7_train_params((mrw_rwkv7_train *)m), "llm.head.weight");
}

mrw_status mrw_rwkv7_hidden_ws_init(mrw_rwkv7_hidden_ws *ws, const mrw_rwkv7_train *m, int max_B, int max_T,
                                    mrw_error *err) {
    memset(ws, 0, sizeof *ws);
    const mrw_rwkv7_train_config *c = mrw_rwkv7_train_cfg(m);
    if (max_B < 1 || max_T < 1) return mrw_err(err, MRW_E_ARG, "hidden-state path: bad batch %d x %d", max_B, max_T);
    if (c->vocab < c->n_embd || c->vocab <= max_B)
        return mrw_err(err, MRW_E_ARG,
                       "hidden-state path: the vocabulary (%d) must be at least the width (%d) and larger than the "
                       "batch (%d)", c->vocab, c->n_embd, max_B);
    if (head_index(m) < 0) return mrw_err(err, MRW_E_MISSING, "hidden-state path: no llm.head.weight");
    ws->max_B = max_B, ws->max_T = max_T, ws->V = c->vocab, ws->C = c->n_embd;
    ws->logits = malloc((size_t)max_B * max_T * ws->V * sizeof(float));
    ws->targets = malloc((size_t)max_B * max_T * sizeof(int32_t));
    ws->D = malloc((size_t)max_B * ws->V * sizeof(double));
    ws->K = malloc(((size_t)max_B * max_B + (size_t)max_B * ws->C) * sizeof(double));
    if (!ws->logits || !ws->targets || !ws->D || !ws->K) {
        mrw_rwkv7_hidden_ws_free(ws);
        return mrw_err(err, MRW_E_NOMEM, "hidden-state path: out of memory (%d x %d x %d logits)", max_B, max_T,
                       c->vocab);
    }
    return MRW_OK;
}

void mrw_rwkv7_hidden_ws_free(mrw_rwkv7_hidden_ws *ws) {
    free(ws->logits), free(ws->targets), free(ws->D), free(ws->K);
    memset(ws, 0, sizeof *ws);
}

void mrw_rwkv7_hidden_set_identity(mrw_rwkv7_train *m) {
    mrw_param_set *ps = mrw_rwkv7_train_params(m);
    const mrw_rwkv7_train_config *c = mrw_rwkv7_train_cfg(m);
    int i = head_index(m);
    if (i < 0) return;
    float *w = mrw_param_w(ps, i);
    memset(w, 0, (size_t)c->vocab * c->n_embd * sizeof *w);
    for (int r = 0; r < c->n_embd && r < c->vocab; r++) w[(size_t)r * c->n_embd + r] = HID_SCALE;
}

mrw_status mrw_rwkv7_hidden_forward(mrw_rwkv7_train *m, mrw_rwkv7_hidden_ws *ws, const int32_t *tokens,
                                    const float *inject, const uint8_t *inject_mask, int B, int T, float *hidden,
                                    mrw_error *err) {
    if (B < 1 || T < 1 || B > ws->max_B || T > ws->max_T)
        return mrw_err(err, MRW_E_ARG, "hidden-state path: batch %d x %d exceeds %d x %d", B, T, ws->max_B,
                       ws->max_T);
    const int V = ws->V, C = ws->C;
    mrw_rwkv7_hidden_set_identity(m);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) ws->targets[(size_t)b * T + t] = t == T - 1 ? b : MRW_IGNORE;
    float loss = mrw_rwkv7_train_forward(m, tokens, inject, inject_mask, ws->targets, B, T, ws->logits);
    ws->last_B = 0, ws->last_T = 0;
    if (isnan(loss)) return mrw_err(err, MRW_E_ARG, "RWKV-7 forward: invalid batch (a token outside the vocabulary?)");
    for (int b = 0; b < B; b++) {
        const float *l = ws->logits + ((size_t)b * T + T - 1) * V;
        for (int c = 0; c < C; c++) hidden[(size_t)b * C + c] = l[c] * (1.0f / HID_SCALE);
    }
    ws->last_B = B, ws->last_T = T;
    return MRW_OK;
}

mrw_status mrw_rwkv7_hidden_backward(mrw_rwkv7_train *m, mrw_rwkv7_hidden_ws *ws, const float *dhidden, int frozen,
                                     float *d_inject, mrw_error *err) {
    const int B = ws->last_B, T = ws->last_T, V = ws->V, C = ws->C;
    if (B < 1) return mrw_err(err, MRW_E_ARG, "hidden-state path: backward without a forward");
    ws->last_B = 0;
    double *D = ws->D, *K = ws->K, *A = ws->K + (size_t)B * B;
    /* D = (softmax - onehot(b)) / B at each sequence's last row */
    for (int b = 0; b < B; b++) {
        const float *l = ws->logits + ((size_t)b * T + T - 1) * V;
        double mx = l[0], s = 0;
        for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        for (int v = 0; v < V; v++) s += exp((double)l[v] - mx);
        for (int v = 0; v < V; v++) D[(size_t)b * V + v] = (exp((double)l[v] - mx) / s - (v == b)) / B;
    }
    /* K = D Dᵀ, Cholesky, A = K⁻¹ G */
    for (int i = 0; i < B; i++)
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int v = 0; v < V; v++) s += D[(size_t)i * V + v] * D[(size_t)j * V + v];
            K[(size_t)i * B + j] = K[(size_t)j * B + i] = s;
        }
    for (int j = 0; j < B; j++) {
        double s = K[(size_t)j * B + j];
        for (int k = 0; k < j; k++) s -= K[(size_t)j * B + k] * K[(size_t)j * B + k];
        if (!(s > 0)) return mrw_err(err, MRW_E_ARG, "hidden-state path: singular system (non-finite logits?)");
        K[(size_t)j * B + j] = sqrt(s);
        for (int i = j + 1; i < B; i++) {
            double t = K[(size_t)i * B + j];
            for (int k = 0; k < j; k++) t -= K[(size_t)i * B + k] * K[(size_t)j * B + k];
            K[(size_t)i * B + j] = t / K[(size_t)j * B + j];
        }
    }
    for (int c = 0; c < C; c++) {
        for (int i = 0; i < B; i++) { /* forward substitution */
            double t = dhidden[(size_t)i * C + c];
            for (int k = 0; k < i; k++) t -= K[(size_t)i * B + k] * A[(size_t)k * C + c];
            A[(size_t)i * C + c] = t / K[(size_t)i * B + i];
        }
        for (int i = B - 1; i >= 0; i--) { /* back substitution with Lᵀ */
            double t = A[(size_t)i * C + c];
            for (int k = i + 1; k < B; k++) t -= K[(size_t)k * B + i] * A[(size_t)k * C + c];
            A[(size_t)i * C + c] = t / K[(size_t)i * B + i];
        }
    }
    /* head = Dᵀ A, then the model's backward, then the head back to [I; 0] with a zero gradient */
    mrw_param_set *ps = mrw_rwkv7_train_params(m);
    const int hi = head_index(m);
    float *w = mrw_param_w(ps, hi);
    for (int v = 0; v < V; v++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int b = 0; b < B; b++) s += D[(size_t)b * V + v] * A[(size_t)b * C + c];
            w[(size_t)v * C + c] = (float)s;
        }
    mrw_rwkv7_train_backward(m, 1.0f, frozen, d_inject);
    mrw_rwkv7_hidden_set_identity(m);
    memset(mrw_param_g(ps, hi), 0, ps->p[hi].n * sizeof(float));
    return MRW_OK;
}
