/* The RWKV-7 language model as held in memory. Small tensors (norms, mixes, LoRAs, decay/ICLR parameters)
 * are always f32 and owned; the big matrices (emb, head, r/k/v/o, ffn key/value) may stay in the file's
 * mapping (zero copy) in f32/f16/bf16/q8_0/q4_0 or be converted at load time. LoRA matrices are stored in
 * Linear layout [out, in] whatever the file's layout, so one matmul kernel serves every projection. */
#ifndef MRW_MODELS_RWKV7_H
#define MRW_MODELS_RWKV7_H

#include "formats/tensorfile.h"
#include "kernels/cpu/matmul.h"
#include "modrwkv.h"

#define MRW_LN_EPS 1e-5f
#define MRW_GN_EPS 64e-5f

typedef struct {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    float *x_r, *x_w, *x_k, *x_v, *x_a, *x_g;
    float *w0, *a0, *v0; /* v0 is NULL in layer 0 (the value-residual gate is never applied there) */
    mrw_mat w1, w2, a1, a2, v1, v2, g1, g2;
    float *k_k, *k_a, *r_k;
    mrw_mat Wr, Wk, Wv, Wo;
    float *lnx_w, *lnx_b;
    float *ffn_x_k;
    mrw_mat ffn_key, ffn_value;
} rwkv7_layer;

struct mrw_model {
    mrw_model_info info;
    float *ln0_w, *ln0_b, *lnout_w, *lnout_b;
    mrw_mat emb, head;
    rwkv7_layer *layers;
    mrw_tfile *file; /* kept open: mapped weights live in it */
    void **owned;    /* converted / f32 copies */
    int n_owned, cap_owned;
};

/* Builds a model from an opened tensor file; takes ownership of `file` on success. `prefix` ("" or e.g.
 * "llm.") is prepended to official key names; `claimed` (may be NULL) is called for tensors the RWKV-7
 * loader does not know, and returns 1 if the caller (e.g. the ModRWKV loader) will use them, so they are
 * not reported as unknown. */
typedef int (*mrw_claim_fn)(void *user, const char *name);
mrw_status mrw_rwkv7_from_file(mrw_tfile *file, const char *prefix, const mrw_load_params *params,
                               mrw_claim_fn claimed, void *claim_user, mrw_model **out, mrw_error *err);

/* Keeps p (a malloc'd buffer of the model's weights) to be freed with the model; returns p, or NULL (p
 * freed) when tracking fails. */
void *mrw_model_own(mrw_model *m, void *p);

/* Re-stores the big matrices (not the embedding) in decode's layout, replacing their data: rows longer than decode's
 * input slice of `input_bytes` (MRW_SLICE_INPUT_BYTES) in column slices, then q4_0 rows interleaved. The model's
 * results do not depend on the layout beyond fp32 summation order. Done on load unless
 * mrw_load_params.file_layout, and for random models. MRW_NO_SLICES=1 / MRW_NO_INTERLEAVE=1 skip a step. */
mrw_status mrw_rwkv7_decode_layout(mrw_model *m, int input_bytes, mrw_error *err);

/* Fills info.n_params, weight_bytes and weight_dtype from the loaded tensors. */
void mrw_rwkv7_count(mrw_model *m);

/* Floats per layer in the state: [sx_att C][wkv H*N*N][sx_ffn C]. */
static inline size_t mrw_state_layer_floats(const mrw_model_info *i) {
    return (size_t)2 * i->n_embd + (size_t)i->n_head * i->head_size * i->head_size;
}

#endif
