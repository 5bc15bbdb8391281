/* The GPU decoder (rwkv7_decode_gpu.cu) filled from a loaded CPU model: every tensor of src/models/rwkv7.h
 * uploaded by id, matrices dequantized row by row to f32 (mrw_mat_row_f32) and rounded to bf16 by the upload.
 * Compiled into the library only with MRW_CUDA (make CUDA=1). */
#ifdef MRW_CUDA
#include <stdlib.h>

#include "base/error.h"
#include "kernels/cuda/rwkv7_decode_gpu.h"
#include "models/rwkv7.h"

static mrw_status put_vec(mrw_decode_gpu *g, mrw_dg_tensor t, int l, const float *v, mrw_error *err) {
    size_t n = mrw_decode_gpu_tensor_size(g, t, l);
    if (!n) return MRW_OK;
    if (!v) return mrw_err(err, MRW_E_ARG, "GPU decode: the model lacks tensor %d of layer %d", (int)t, l);
    return mrw_decode_gpu_set(g, t, l, v, n, err);
}

/* Matrices go up in pieces of at most `cap` floats. */
static mrw_status put_mat(mrw_decode_gpu *g, mrw_dg_tensor t, int l, const mrw_mat *m, float *buf, size_t cap,
                          mrw_error *err) {
    size_t n = mrw_decode_gpu_tensor_size(g, t, l);
    if (!n) return MRW_OK;
    if (!m->data || (size_t)m->rows * m->cols != n)
        return mrw_err(err, MRW_E_ARG, "GPU decode: tensor %d of layer %d has shape %d x %d, expected %zu elements",
                       (int)t, l, m->rows, m->cols, n);
    const int per = (int)(cap / (size_t)m->cols) > 0 ? (int)(cap / (size_t)m->cols) : 1;
    for (int r0 = 0; r0 < m->rows; r0 += per) {
        int nr = m->rows - r0 < per ? m->rows - r0 : per;
        for (int r = 0; r < nr; r++) mrw_mat_row_f32(m, r0 + r, buf + (size_t)r * m->cols);
        mrw_status s = mrw_decode_gpu_set_part(g, t, l, (size_t)r0 * m->cols, buf, (size_t)nr * m->cols, err);
        if (s) return s;
    }
    return MRW_OK;
}

mrw_status mrw_decode_gpu_from_model(const mrw_model *m, int max_B, mrw_decode_gpu **out, mrw_error *err) {
    *out = NULL;
    const mrw_model_info *in = &m->info;
    mrw_decode_gpu_shape sh = {in->n_layer, in->n_embd, in->head_size, in->n_ffn, in->n_vocab,
                               in->lora_w,  in->lora_a, in->lora_v,    in->lora_g};
    mrw_decode_gpu *g;
    mrw_status s = mrw_decode_gpu_new(&sh, max_B, &g, err);
    if (s) return s;
    const size_t cap = (size_t)1 << 22;
    float *buf = malloc(cap * sizeof *buf + (size_t)in->n_ffn * sizeof *buf);
    if (!buf) {
        mrw_decode_gpu_free(g);
        return mrw_err(err, MRW_E_NOMEM, "out of memory");
    }
    const size_t bcap = cap + (size_t)in->n_ffn; /* at least one row of any matrix */
    s = put_mat(g, MRW_DG_EMB, 0, &m->emb, buf, bcap, err);
    if (!s) s = put_mat(g, MRW_DG_HEAD, 0, &m->head, buf, bcap, err);
    if (!s) s = put_vec(g, MRW_DG_LN0_W, 0, m->ln0_w, err);
    if (!s) s = put_vec(g, MRW_DG_LN0_B, 0, m->ln0_b, err);
    if (!s) s = put_vec(g, MRW_DG_LNOUT_W, 0, m->lnout_w, err);
    if (!s) s = put_vec(g, MRW_DG_LNOUT_B, 0, m->lnout_b, err);
    for (int l = 0; l < in->n_layer && !s; l++) {
        const rwkv7_layer *y = &m->layers[l];
        const struct {
            mrw_dg_tensor t;
            const float *v;
        } vecs[] = {{MRW_DG_LN1_W, y->ln1_w}, {MRW_DG_LN1_B, y->ln1_b}, {MRW_DG_LN2_W, y->ln2_w},
                    {MRW_DG_LN2_B, y->ln2_b}, {MRW_DG_X_R, y->x_r},     {MRW_DG_X_W, y->x_w},
                    {MRW_DG_X_K, y->x_k},     {MRW_DG_X_V, y->x_v},     {MRW_DG_X_A, y->x_a},
                    {MRW_DG_X_G, y->x_g},     {MRW_DG_W0, y->w0},       {MRW_DG_A0, y->a0},
                    {MRW_DG_V0, y->v0},       {MRW_DG_K_K, y->k_k},     {MRW_DG_K_A, y->k_a},
                    {MRW_DG_R_K, y->r_k},     {MRW_DG_LNX_W, y->lnx_w}, {MRW_DG_LNX_B, y->lnx_b},
                    {MRW_DG_FFN_X_K, y->ffn_x_k}};
        for (size_t i = 0; i < sizeof vecs / sizeof *vecs && !s; i++) s = put_vec(g, vecs[i].t, l, vecs[i].v, err);
        const struct {
            mrw_dg_tensor t;
            const mrw_mat *m;
        } mats[] = {{MRW_DG_W1, &y->w1}, {MRW_DG_W2, &y->w2}, {MRW_DG_A1, &y->a1}, {MRW_DG_A2, &y->a2},
                    {MRW_DG_V1, &y->v1}, {MRW_DG_V2, &y->v2}, {MRW_DG_G1, &y->g1}, {MRW_DG_G2, &y->g2},
                    {MRW_DG_WR, &y->Wr}, {MRW_DG_WK, &y->Wk}, {MRW_DG_WV, &y->Wv}, {MRW_DG_WO, &y->Wo},
                    {MRW_DG_FFN_KEY, &y->ffn_key}, {MRW_DG_FFN_VALUE, &y->ffn_value}};
        for (size_t i = 0; i < sizeof mats / sizeof *mats && !s; i++) s = put_mat(g, mats[i].t, l, mats[i].m, buf, bcap, err);
    }
    free(buf);
    if (s) {
        mrw_decode_gpu_free(g);
        return s;
    }
    *out = g;
    return MRW_OK;
}
#else
typedef int mrw_rwkv7_decode_gpu_unused; /* ISO C: no empty translation unit */
#endif
