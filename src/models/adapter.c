#include "models/adapter.h"

#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "kernels/cpu/nn.h"
#include "kernels/cpu/ops.h"

#define LN_EPS 1e-5f

static const char *key(char *buf, size_t n, const char *prefix, const char *name) {
    snprintf(buf, n, "%s%s", prefix, name);
    return buf;
}

/* A Linear layer "<prefix><name>.weight/.bias" with the expected out size; in_dim -1 = take from the file. */
static mrw_status linear(mrw_wloader *L, const char *prefix, const char *name, int out_dim, int *in_dim, mrw_mat *W,
                         const float **b, mrw_error *err) {
    char k[256];
    const mrw_tensor_info *t = mrw_wl_find(L, key(k, sizeof k, prefix, name));
    if (!t) return mrw_err(err, MRW_E_MISSING, "adapter tensor '%s%s' is missing", L->prefix, k);
    if (t->ndim != 2 || (out_dim > 0 && t->shape[0] != out_dim))
        return mrw_err(err, MRW_E_SHAPE, "adapter tensor '%s' should be [%d, *]", t->name, out_dim);
    if (*in_dim > 0 && t->shape[1] != *in_dim)
        return mrw_err(err, MRW_E_SHAPE, "adapter tensor '%s' takes %lld inputs, expected %d", t->name,
                       (long long)t->shape[1], *in_dim);
    *in_dim = (int)t->shape[1];
    const int rows = (int)t->shape[0];
    mrw_status s = mrw_wl_mat(L, k, rows, *in_dim, 0, W);
    if (s) return s;
    char kb[256];
    snprintf(kb, sizeof kb, "%.*sbias", (int)(strlen(k) - strlen("weight")), k);
    float *bias;
    if ((s = mrw_wl_vec(L, kb, rows, &bias))) return s;
    *b = bias;
    return MRW_OK;
}

static mrw_status conv(mrw_wloader *L, const char *prefix, mrw_adapter *a, int want_bias, mrw_error *err) {
    char k[256];
    const mrw_tensor_info *t = mrw_wl_find(L, key(k, sizeof k, prefix, "conv.weight"));
    if (!t || t->ndim != 3) return mrw_err(err, MRW_E_SHAPE, "adapter conv '%s%s' must be a [out, in, k] tensor", L->prefix, k);
    a->conv_out = (int)t->shape[0];
    a->conv_in = (int)t->shape[1];
    a->conv_k = (int)t->shape[2];
    const int64_t shape[3] = {a->conv_out, a->conv_in, a->conv_k};
    float *w, *b = NULL;
    mrw_status s = mrw_wl_f32(L, k, 3, shape, &w);
    if (s) return s;
    if (want_bias && (s = mrw_wl_vec(L, key(k, sizeof k, prefix, "conv.bias"), a->conv_out, &b))) return s;
    a->conv_w = w;
    a->conv_b = b;
    return MRW_OK;
}

mrw_status mrw_adapter_load(mrw_wloader *L, const char *prefix, int E, int C, mrw_adapter *a, mrw_error *err) {
    memset(a, 0, sizeof *a);
    char k[256];
    mrw_status s;
    const int v1 = mrw_wl_has(L, key(k, sizeof k, prefix, "proj.0.weight"));
    const int v2 = mrw_wl_has(L, key(k, sizeof k, prefix, "mlp.0.weight"));
    const int has_ln = mrw_wl_has(L, key(k, sizeof k, prefix, "pre_norm.weight"));
    const int has_conv = mrw_wl_has(L, key(k, sizeof k, prefix, "conv.weight"));
    if (!v1 && !v2)
        return mrw_err(err, MRW_E_MISSING, "no adapter found under '%s%s' (expected proj.0.* or mlp.0.*)", L->prefix, prefix);
    a->version = v2 ? 2 : 1;
    a->kind = (v1 && has_conv && !has_ln) ? MRW_ADAPTER_AUDIO : MRW_ADAPTER_MLP;
    a->C = C;
    int in_dim = -1;
    if (has_conv) {
        if ((s = conv(L, prefix, a, a->kind == MRW_ADAPTER_AUDIO, err))) return s;
        if (a->kind == MRW_ADAPTER_AUDIO) {
            a->conv_s = 2;
            a->conv_p = 2;
        } else {
            a->conv_s = 2;
            a->conv_p = 0;
            if (a->conv_out != a->conv_in)
                return mrw_err(err, MRW_E_SHAPE, "the v2 adapter conv maps %d to %d channels; it must keep the width",
                               a->conv_in, a->conv_out);
        }
        a->E = a->conv_in;
        in_dim = a->conv_out;
    }
    const char *l1 = v2 ? "mlp.0.weight" : "proj.0.weight", *l2 = v2 ? "mlp.2.weight" : "proj.2.weight";
    if ((s = linear(L, prefix, l1, -1, &in_dim, &a->l1, &a->b1, err))) return s;
    if (!has_conv) a->E = in_dim;
    a->H = a->l1.rows;
    int hid = a->H;
    if ((s = linear(L, prefix, l2, C, &hid, &a->l2, &a->b2, err))) return s;
    if (a->kind == MRW_ADAPTER_MLP) {
        if (!has_ln) return mrw_err(err, MRW_E_MISSING, "adapter tensor '%s%spre_norm.weight' is missing", L->prefix, prefix);
        float *w, *b;
        if ((s = mrw_wl_vec(L, key(k, sizeof k, prefix, "pre_norm.weight"), C, &w))) return s;
        if ((s = mrw_wl_vec(L, key(k, sizeof k, prefix, "pre_norm.bias"), C, &b))) return s;
        a->ln_w = w;
        a->ln_b = b;
    }
    if (E > 0 && a->E != E)
        return mrw_err(err, MRW_E_SHAPE, "the adapter expects %d-wide encoder features but the encoder produces %d: "
                       "the checkpoint and the encoder do not belong together", a->E, E);
    return MRW_OK;
}

int mrw_adapter_out_len(const mrw_adapter *a, int T) {
    return a->conv_w ? mrw_conv1d_out_len(T, a->conv_k, a->conv_s, a->conv_p) : T;
}

size_t mrw_adapter_scratch_floats(const mrw_adapter *a, int T) {
    const int To = mrw_adapter_out_len(a, T);
    if (To < 1) return 0;
    const int hid = a->H > a->C ? a->H : a->C; /* the LayerNorm output reuses the hidden rows */
    size_t n = (size_t)To * (a->conv_w ? a->conv_out : 0) + (size_t)To * hid + 64;
    if (a->conv_w) n += mrw_conv1d_scratch_floats(T, a->conv_in, a->conv_k, a->conv_s, a->conv_p, 1);
    return n;
}

mrw_status mrw_adapter_forward(const mrw_adapter *a, mrw_kctx *k, const float *x, int T, float *out, float *scratch,
                               mrw_error *err) {
    const int To = mrw_adapter_out_len(a, T);
    if (To < 1)
        return mrw_err(err, MRW_E_ARG, "%d encoder tokens are too few for the adapter's convolution (kernel %d)", T,
                       a->conv_k);
    const int nt = k->n_threads;
    const float *in = x;
    float *conv_out = scratch, *hidden = scratch + (a->conv_w ? (size_t)To * a->conv_out : 0);
    if (a->conv_w) {
        float *cs = hidden + (size_t)To * (a->H > a->C ? a->H : a->C);
        if (mrw_conv1d(k, x, T, a->conv_in, a->conv_w, a->conv_b, a->conv_out, a->conv_k, a->conv_s, a->conv_p, 1,
                       conv_out, cs) != To)
            return mrw_err(err, MRW_E_INTERNAL, "adapter convolution shape");
        in = conv_out;
    }
    const int in_w = a->l1.cols;
    mrw_linear(k, &a->l1, a->b1, in, in_w, To, hidden, a->H);
    mrw_relu(hidden, (size_t)To * a->H, nt);
    mrw_linear(k, &a->l2, a->b2, hidden, a->H, To, out, a->C);
    if (a->kind == MRW_ADAPTER_MLP) { /* out = h + LN(h) */
        float *ln = hidden; /* reuse: the scratch holds [To, max(H, C)] there */
        mrw_layernorm(out, ln, To, a->C, a->ln_w, a->ln_b, LN_EPS, nt);
        for (size_t i = 0; i < (size_t)To * a->C; i++) out[i] += ln[i];
    }
    return MRW_OK;
}

/* ----------------------------------------------------------------------------------------- compression */

mrw_status mrw_compress_load(mrw_wloader *L, const char *prefix, int E, int k, int s, mrw_compress *c, mrw_error *err) {
    memset(c, 0, sizeof *c);
    char key_w[256], key_b[256];
    key(key_w, sizeof key_w, prefix, "weight");
    key(key_b, sizeof key_b, prefix, "bias");
    c->E = E;
    c->s = s;
    c->k = k;
    if (L && mrw_wl_has(L, key_w)) {
        const mrw_tensor_info *t = mrw_wl_find(L, key_w);
        if (t->ndim != 3 || t->shape[0] != E || t->shape[1] != E)
            return mrw_err(err, MRW_E_SHAPE, "compression weight '%s' must be [%d, %d, k]", t->name, E, E);
        c->k = (int)t->shape[2];
        const int64_t shape[3] = {E, E, c->k};
        float *w, *b;
        mrw_status st = mrw_wl_f32(L, key_w, 3, shape, &w);
        if (st) return st;
        if ((st = mrw_wl_vec_opt(L, key_b, E, &b))) return st;
        c->w = w;
        c->b = b;
    }
    if (c->k < 1 || c->s < 1) return mrw_err(err, MRW_E_ARG, "compression needs a kernel and a stride >= 1");
    return MRW_OK;
}

int mrw_compress_out_len(const mrw_compress *c, int T) { return mrw_conv1d_out_len(T, c->k, c->s, 0); }

size_t mrw_compress_scratch_floats(const mrw_compress *c, int T) {
    return c->w ? mrw_conv1d_scratch_floats(T, c->E, c->k, c->s, 0, 1) : 0;
}

mrw_status mrw_compress_forward(const mrw_compress *c, mrw_kctx *k, const float *x, int T, float *out, float *scratch,
                                mrw_error *err) {
    const int To = mrw_compress_out_len(c, T);
    if (To < 1) return mrw_err(err, MRW_E_ARG, "%d tokens are too few to compress with kernel %d", T, c->k);
    if (c->w) {
        mrw_conv1d(k, x, T, c->E, c->w, c->b, c->E, c->k, c->s, 0, 1, out, scratch);
        return MRW_OK;
    }
    for (int t = 0; t < To; t++) { /* average pooling over the window */
        float *o = out + (size_t)t * c->E;
        memset(o, 0, (size_t)c->E * sizeof *o);
        for (int j = 0; j < c->k; j++) {
            const float *xi = x + (size_t)(t * c->s + j) * c->E;
            for (int e = 0; e < c->E; e++) o[e] += xi[e];
        }
        for (int e = 0; e < c->E; e++) o[e] /= (float)c->k;
    }
    return MRW_OK;
}
