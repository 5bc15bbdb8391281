/* LoRA matrices kept in their file's f16/bf16 (rwkv7_load.c `lora`): they are multiplied with f32 activations in
 * every context (mrw_mat.f32_act), so a model whose LoRAs are bf16 in the file gives the logits of the same values
 * held as f32 — up to summation order, not the ~1e-3 of bf16-rounded activations — in the fast and the exact
 * context, in sequence and RNN mode; asking for f32 weights converts them; files written from such a model keep
 * LoRAs f32, byte for byte as before; random f16/bf16 models hold their LoRAs the same way. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "models/rwkv7.h"
#include "tensor/dtype.h"
#include "test.h"

static int is_lora(const char *name) {
    static const char *tails[] = {".att.w1", ".att.w2", ".att.a1", ".att.a2", ".att.v1", ".att.v2", ".att.g1", ".att.g2"};
    for (size_t i = 0; i < sizeof tails / sizeof *tails; i++) {
        size_t n = strlen(name), m = strlen(tails[i]);
        if (n >= m && !strcmp(name + n - m, tails[i])) return 1;
    }
    return 0;
}

static void logits(mrw_model *m, int exact, int rnn, const int32_t *toks, int n, float *out) {
    t_last_logits(m, toks, n, rnn, 64, 2, exact, out);
}

static double rel_diff(const float *a, const float *b, int n) {
    double m = 0, s = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i])), s = fmax(s, fabs(a[i]));
    return m / s;
}

static void run(mrw_dtype dt) {
    const int V = 300, n = 40;
    mrw_rwkv7_config cfg = {.n_layer = 3, .n_embd = 128, .head_size = 64, .n_vocab = V,
                            .lora_w = 32, .lora_a = 32, .lora_v = 32, .lora_g = 32};
    mrw_error err = {0};
    mrw_model *m0 = NULL;
    CHECK_OK(mrw_model_new_random(&cfg, dt, 99, &m0, &err), &err);
    if (!m0) return;
    CHECKF(m0->layers[1].w1.dtype == dt && m0->layers[1].v2.f32_act, "%s: random model LoRA held as %s",
           mrw_dtype_name(dt), mrw_dtype_name(m0->layers[1].w1.dtype));

    char a_path[] = "/tmp/mrw_lora_a_XXXXXX.safetensors", b_path[] = "/tmp/mrw_lora_b_XXXXXX.safetensors",
         c_path[] = "/tmp/mrw_lora_c_XXXXXX.safetensors";
    int fa = mkstemps(a_path, 12), fb = mkstemps(b_path, 12), fc = mkstemps(c_path, 12);
    CHECK(fa >= 0 && fb >= 0 && fc >= 0);
    close(fa), close(fb), close(fc);
    /* A: as saved (LoRAs f32); B: the same file with the LoRAs in dt (exact: they came from dt) */
    CHECK_OK(mrw_model_save(m0, a_path, MRW_FILE_SAFETENSORS, NULL, 0, &err), &err);
    mrw_tfile *fa_t = NULL;
    CHECK_OK(mrw_tfile_open(a_path, &fa_t, &err), &err);
    if (!fa_t) return;
    int nt = mrw_tfile_count(fa_t), n_lora = 0;
    mrw_tensor_info *ts = calloc((size_t)nt, sizeof *ts);
    void **bufs = calloc((size_t)nt, sizeof *bufs);
    for (int i = 0; i < nt; i++) {
        ts[i] = *mrw_tfile_tensor(fa_t, i);
        if (!is_lora(ts[i].name)) continue;
        CHECKF(ts[i].dtype == MRW_DT_F32, "%s saved as %s", ts[i].name, mrw_dtype_name(ts[i].dtype));
        int64_t k = mrw_tensor_numel(&ts[i]);
        bufs[i] = malloc((size_t)k * 2);
        mrw_from_f32(dt, ts[i].data, bufs[i], k);
        ts[i].dtype = dt, ts[i].data = bufs[i], ts[i].nbytes = (size_t)k * 2;
        n_lora++;
    }
    CHECKF(n_lora == 3 * 8 - 2, "%d LoRA tensors", n_lora);
    CHECK_OK(mrw_safetensors_write(b_path, ts, nt, NULL, 0, NULL, NULL, &err), &err);

    mrw_model *ma = NULL, *mb = NULL, *mb32 = NULL;
    mrw_load_params lp = mrw_load_params_default();
    CHECK_OK(mrw_model_load(a_path, &lp, &ma, &err), &err);
    CHECK_OK(mrw_model_load(b_path, &lp, &mb, &err), &err);
    lp.weight_dtype = MRW_DT_F32;
    CHECK_OK(mrw_model_load(b_path, &lp, &mb32, &err), &err);
    if (!ma || !mb || !mb32) return;
    CHECKF(ma->layers[2].g1.dtype == MRW_DT_F32 && !ma->layers[2].g1.f32_act, "f32 file: LoRA held as %s",
           mrw_dtype_name(ma->layers[2].g1.dtype));
    CHECKF(mb->layers[2].g1.dtype == dt && mb->layers[2].g1.f32_act, "%s file: LoRA held as %s", mrw_dtype_name(dt),
           mrw_dtype_name(mb->layers[2].g1.dtype));
    CHECKF(mb32->layers[2].g1.dtype == MRW_DT_F32, "--dtype f32: LoRA held as %s",
           mrw_dtype_name(mb32->layers[2].g1.dtype));
    CHECKF(mb->info.weight_bytes < ma->info.weight_bytes, "weight bytes %lld vs %lld", (long long)mb->info.weight_bytes,
           (long long)ma->info.weight_bytes);

    int32_t toks[40];
    for (int i = 0; i < n; i++) toks[i] = (i * 53 + 7) % V;
    float *la = malloc(V * sizeof *la), *lb = malloc(V * sizeof *lb), *l0 = malloc(V * sizeof *l0);
    for (int exact = 0; exact <= 1; exact++)
        for (int rnn = 0; rnn <= 1; rnn++) {
            logits(ma, exact, rnn, toks, n, la);
            logits(mb, exact, rnn, toks, n, lb);
            logits(m0, exact, rnn, toks, n, l0);
            double d = rel_diff(la, lb, V), d0 = rel_diff(la, l0, V);
            CHECKF(d <= 2e-6 && d0 <= 2e-6, "%s exact=%d rnn=%d: f32-LoRA file vs %s-LoRA file %.2e, vs random model %.2e",
                   mrw_dtype_name(dt), exact, rnn, mrw_dtype_name(dt), d, d0);
            fprintf(stderr, "%-4s exact=%d rnn=%d  f32 LoRAs vs %s LoRAs: %.2e (random model %.2e)\n", mrw_dtype_name(dt),
                    exact, rnn, mrw_dtype_name(dt), d, d0);
        }
    /* written back: LoRAs f32 again, the bytes of A */
    CHECK_OK(mrw_model_save(mb, c_path, MRW_FILE_SAFETENSORS, NULL, 0, &err), &err);
    mrw_tfile *fc_t = NULL;
    CHECK_OK(mrw_tfile_open(c_path, &fc_t, &err), &err);
    for (int i = 0; fc_t && i < nt; i++) {
        const mrw_tensor_info *x = mrw_tfile_tensor(fa_t, i), *y = mrw_tfile_find(fc_t, x->name);
        CHECKF(y && y->dtype == x->dtype && y->nbytes == x->nbytes && !memcmp(y->data, x->data, x->nbytes),
               "%s differs after a round trip", x->name);
    }
    mrw_tfile_close(fc_t);
    for (int i = 0; i < nt; i++) free(bufs[i]);
    free(bufs), free(ts), free(la), free(lb), free(l0);
    mrw_tfile_close(fa_t);
    mrw_model_free(ma), mrw_model_free(mb), mrw_model_free(mb32), mrw_model_free(m0);
    unlink(a_path), unlink(b_path), unlink(c_path);
}

int main(void) {
    run(MRW_DT_BF16);
    run(MRW_DT_F16);
    TEST_MAIN_END();
}
