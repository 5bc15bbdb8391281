/* Decode's layout of the big matrices (src/models/rwkv7_slices.c): long rows held in column slices
 * (mrw_mat.slice_cols) and q4_0 rows interleaved (mrw_mat.interleaved, where the CPU has the kernel). Random and
 * loaded models take it by default and not with mrw_load_params.file_layout; the logits do not depend on the layout
 * beyond fp32 summation order (sequence and RNN mode, fast and exact contexts, f16 / f32 / q4_0 / q8_0, also with
 * every matrix sliced narrowly, which leaves interleaved q4_0 rows of one block); files written from a model in decode's
 * layout are byte for byte those of the row-major one. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "kernels/cpu/matmul_impl.h"
#include "tensor/dtype.h"
#include "models/rwkv7.h"
#include "test.h"

enum { V = 300, NTOK = 24 };

static void logits(mrw_model *m, int exact, int rnn, float *out) {
    int32_t toks[NTOK];
    for (int i = 0; i < NTOK; i++) toks[i] = (i * 53 + 7) % V;
    t_last_logits(m, toks, NTOK, rnn, 16, 2, exact, out);
}

static double rel_diff(const float *a, const float *b) {
    double m = 0, s = 0;
    for (int i = 0; i < V; i++) m = fmax(m, fabs((double)a[i] - b[i])), s = fmax(s, fabs(a[i]));
    return m / s;
}

/* Same logits as the reference model in every mode. */
static void same_logits(mrw_model *ref, mrw_model *m, const char *what) {
    float a[V], b[V];
    for (int exact = 0; exact <= 1; exact++)
        for (int rnn = 0; rnn <= 1; rnn++) {
            logits(ref, exact, rnn, a);
            logits(m, exact, rnn, b);
            const double d = rel_diff(a, b);
            CHECKF(d <= 2e-6, "%s exact=%d rnn=%d: %.2e", what, exact, rnn, d);
            fprintf(stderr, "%-40s exact=%d rnn=%d  rel diff %.2e\n", what, exact, rnn, d);
        }
}

static int same_file(const char *a, const char *b) {
    mrw_error err = {0};
    mrw_tfile *fa = NULL, *fb = NULL;
    CHECK_OK(mrw_tfile_open(a, &fa, &err), &err);
    CHECK_OK(mrw_tfile_open(b, &fb, &err), &err);
    int same = fa && fb && mrw_tfile_count(fa) == mrw_tfile_count(fb);
    for (int i = 0; same && i < mrw_tfile_count(fa); i++) {
        const mrw_tensor_info *x = mrw_tfile_tensor(fa, i), *y = mrw_tfile_find(fb, x->name);
        same = y && y->dtype == x->dtype && y->nbytes == x->nbytes && !memcmp(y->data, x->data, x->nbytes);
        if (!same) fprintf(stderr, "  %s differs\n", x->name);
    }
    mrw_tfile_close(fa);
    mrw_tfile_close(fb);
    return same;
}

static void run(mrw_dtype dt, int default_slice) {
    /* n_ffn 2304: f16/f32 FFN value rows hold 9 KiB of f32 input, past MRW_SLICE_INPUT_BYTES */
    mrw_rwkv7_config cfg = {.n_layer = 2, .n_embd = 64, .head_size = 64, .n_ffn = 2304, .n_vocab = V,
                            .lora_w = 32, .lora_a = 32, .lora_v = 32, .lora_g = 32};
    mrw_error err = {0};
    mrw_model *m0 = NULL;
    CHECK_OK(mrw_model_new_random(&cfg, dt, 7, &m0, &err), &err);
    if (!m0) return;
    CHECKF(m0->layers[1].ffn_value.slice_cols == default_slice && m0->layers[1].ffn_key.slice_cols == 0 &&
               m0->head.slice_cols == 0,
           "%s random model: FFN value slices of %d columns, want %d", mrw_dtype_name(dt),
           m0->layers[1].ffn_value.slice_cols, default_slice);

    /* quantized weights are written as GGUF only */
    const int quant = mrw_dtype_is_quant(dt);
    const char *ext = quant ? ".gguf" : ".safetensors";
    const mrw_file_type ft = quant ? MRW_FILE_GGUF : MRW_FILE_SAFETENSORS;
    char p0[64], p1[64], p2[] = "/tmp/mrw_slices_c_XXXXXX.gguf", p3[] = "/tmp/mrw_slices_d_XXXXXX.gguf";
    snprintf(p0, sizeof p0, "/tmp/mrw_slices_a_XXXXXX%s", ext);
    snprintf(p1, sizeof p1, "/tmp/mrw_slices_b_XXXXXX%s", ext);
    const int el = (int)strlen(ext);
    int f0 = mkstemps(p0, el), f1 = mkstemps(p1, el), f2 = mkstemps(p2, 5), f3 = mkstemps(p3, 5);
    CHECK(f0 >= 0 && f1 >= 0 && f2 >= 0 && f3 >= 0);
    close(f0), close(f1), close(f2), close(f3);
    CHECK_OK(mrw_model_save(m0, p0, ft, NULL, 0, &err), &err);

    mrw_model *rows = NULL, *sliced = NULL;
    mrw_load_params lp = mrw_load_params_default();
    CHECK_OK(mrw_model_load(p0, &lp, &sliced, &err), &err);
    lp.file_layout = 1;
    CHECK_OK(mrw_model_load(p0, &lp, &rows, &err), &err);
    if (!rows || !sliced) return;
    CHECKF(sliced->layers[0].ffn_value.slice_cols == default_slice && rows->layers[0].ffn_value.slice_cols == 0,
           "%s loaded: %d / %d", mrw_dtype_name(dt), sliced->layers[0].ffn_value.slice_cols,
           rows->layers[0].ffn_value.slice_cols);
    CHECK(sliced->info.weight_bytes == rows->info.weight_bytes && sliced->info.decode_bytes == rows->info.decode_bytes);
    const int inter = dt == MRW_DT_Q4_0 && mrw_qx_supported(dt); /* q4_0 rows interleaved by default */
    CHECKF(sliced->head.interleaved == inter && sliced->layers[1].ffn_value.interleaved == inter &&
               m0->layers[0].Wr.interleaved == inter && !rows->head.interleaved && !sliced->emb.interleaved,
           "%s interleaved: loaded %d, random %d, file layout %d, want %d", mrw_dtype_name(dt), sliced->head.interleaved,
           m0->layers[0].Wr.interleaved, rows->head.interleaved, inter);
    char what[96];
    snprintf(what, sizeof what, "%s row-major vs default layout", mrw_dtype_name(dt));
    same_logits(rows, sliced, what);
    snprintf(what, sizeof what, "%s row-major vs random model", mrw_dtype_name(dt));
    same_logits(rows, m0, what);

    /* written back from the default layout: the same bytes, in the file type of p0 and in GGUF */
    CHECK_OK(mrw_model_save(sliced, p1, ft, NULL, 0, &err), &err);
    CHECKF(same_file(p0, p1), "%s: the default layout wrote a different %s", mrw_dtype_name(dt), ext);
    CHECK_OK(mrw_model_save(rows, p2, MRW_FILE_GGUF, NULL, 0, &err), &err);
    CHECK_OK(mrw_model_save(sliced, p3, MRW_FILE_GGUF, NULL, 0, &err), &err);
    CHECKF(same_file(p2, p3), "%s: the default layout wrote a different GGUF", mrw_dtype_name(dt));

    /* every big matrix in slices of 32 columns (the head and r/k/v/o included), then interleaved */
    mrw_model *narrow = NULL;
    CHECK_OK(mrw_model_load(p0, &lp, &narrow, &err), &err);
    if (!narrow) return;
    /* input bytes per element as the slicing counts them: 4 for f16/f32, 2 for q4_0, 1 for q8_0 */
    CHECK_OK(mrw_rwkv7_decode_layout(narrow, dt == MRW_DT_Q8_0 ? 32 : quant ? 64 : 128, &err), &err);
    CHECKF(narrow->head.slice_cols == 32 && narrow->layers[1].Wo.slice_cols == 32 &&
               narrow->layers[1].ffn_value.slice_cols == 32 && narrow->layers[1].Wo.interleaved == inter,
           "%s narrow slices: head %d, Wo %d, interleaved %d", mrw_dtype_name(dt), narrow->head.slice_cols,
           narrow->layers[1].Wo.slice_cols, narrow->layers[1].Wo.interleaved);
    snprintf(what, sizeof what, "%s row-major vs narrow slices", mrw_dtype_name(dt));
    same_logits(rows, narrow, what);
    CHECK_OK(mrw_model_save(narrow, p1, ft, NULL, 0, &err), &err);
    CHECKF(same_file(p0, p1), "%s: the narrow slices wrote a different %s", mrw_dtype_name(dt), ext);
    CHECK_OK(mrw_model_save(narrow, p3, MRW_FILE_GGUF, NULL, 0, &err), &err);
    CHECKF(same_file(p2, p3), "%s: the narrow slices wrote a different GGUF", mrw_dtype_name(dt));

    mrw_model_free(m0), mrw_model_free(rows), mrw_model_free(sliced), mrw_model_free(narrow);
    unlink(p0), unlink(p1), unlink(p2), unlink(p3);
}

int main(void) {
    run(MRW_DT_F16, 1152);
    run(MRW_DT_F32, 1152);
    run(MRW_DT_Q4_0, 0); /* 2304 q4_0 inputs take 4.5 KiB: whole rows by default */
    run(MRW_DT_Q8_0, 0);
    TEST_MAIN_END();
}
