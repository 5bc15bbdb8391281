/* Time to first token for an image + a question on a ModRWKV model shaped like the paper's 0.4B (RWKV-7 L24
 * C1024, vocab 65536) with a SigLIP2-base/16-384 encoder and the v1 vision adapter (E 768 -> 2C -> C), and
 * how that time falls with Conv1D compression of the 576 image tokens: none, (3,2), (4,3), (5,4) (the
 * paper's Table 7 settings; its Figure 2 right panel, measured here on a CPU). Random weights throughout:
 * the time does not depend on their values.
 *
 * TTFT = preprocess (a 640x480 RGB image to 384x384 pixel_values, PIL-exact bilinear)
 *      + encoder (last_hidden_state, 576 x 768)
 *      + compression (a trained Conv1d(E->E, k, s) with bias, as the paper's models carry)
 *      + adapter
 *      + prefill of features + question tokens through the language model, logits of the last position
 *      + the greedy pick of the first token.
 * Image decoding is left out (it depends on the file, not on the model; a 640x480 JPEG takes ~3 ms).
 *
 *   build/bench/bench_mm [--threads 1,2] [--dtype bf16] [--reps 3] [--question 16] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "bench_machine.h"
#include "kernels/cpu/kctx.h"
#include "models/adapter.h"
#include "models/preprocess.h"
#include "models/vit.h"
#include "modrwkv.h"
#include "tensor/dtype.h"

#define LM_LAYERS 24
#define LM_WIDTH 1024

static void die(const char *what, const mrw_error *e) {
    fprintf(stderr, "bench_mm: %s: %s\n", what, e->msg);
    exit(1);
}

static float *random_floats(size_t n, float scale, uint64_t seed) {
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "bench_mm: out of memory\n");
        exit(1);
    }
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        p[i] = scale * ((float)(s >> 40) / (float)(1u << 24) - 0.5f);
    }
    return p;
}

/* The v1 vision adapter with random f32 weights: Linear(E->2C) -> ReLU -> Linear(2C->C) -> h + LN(h). */
static void adapter_random(mrw_adapter *a, int E, int C) {
    memset(a, 0, sizeof *a);
    a->kind = MRW_ADAPTER_MLP;
    a->version = 1;
    a->E = E, a->C = C, a->H = 2 * C;
    mrw_mat_init(&a->l1, MRW_DT_F32, a->H, E, random_floats((size_t)a->H * E, 2.0f / E, 11));
    mrw_mat_init(&a->l2, MRW_DT_F32, C, a->H, random_floats((size_t)C * a->H, 2.0f / a->H, 12));
    a->b1 = random_floats((size_t)a->H, 0.1f, 13);
    a->b2 = random_floats((size_t)C, 0.1f, 14);
    float *w = random_floats((size_t)C, 0.1f, 15);
    for (int i = 0; i < C; i++) w[i] += 1.0f;
    a->ln_w = w;
    a->ln_b = random_floats((size_t)C, 0.1f, 16);
}

static void adapter_release(mrw_adapter *a) {
    free((void *)a->l1.data);
    free((void *)a->l2.data);
    free((void *)a->b1);
    free((void *)a->b2);
    free((void *)a->ln_w);
    free((void *)a->ln_b);
}

typedef struct {
    double pre, enc, comp, adapt, prefill, total;
    int n_feat;
} ttft_parts;

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    const char *threads = "1,2", *dtype_name = "bf16";
    int reps = 3, n_question = 16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = argv[++i];
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dtype_name = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--question") && i + 1 < argc) n_question = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads 1,2] [--dtype bf16|f16|q8_0|q4_0|f32] [--reps 3] [--question 16]\n",
                    argv[0]);
            return 2;
        }
    }
    mrw_dtype dt;
    if (mrw_dtype_parse(dtype_name, &dt) || reps < 1 || n_question < 1) {
        fprintf(stderr, "bench_mm: bad --dtype, --reps or --question\n");
        return 2;
    }
    mrw_error err = {0};

    /* the encoder, adapter, compressions and language model */
    mrw_vit_config shape = {.family = MRW_VIT_SIGLIP, .hidden = 768, .n_layer = 12, .n_head = 12,
                            .intermediate = 3072, .patch = 16, .image_size = 384};
    mrw_vit *vit = NULL;
    if (mrw_vit_new_random(&shape, 1234, &vit, &err)) die("encoder", &err);
    const mrw_vit_config *vc = mrw_vit_get_config(vit);
    const int E = vc->hidden, S = vc->image_size, n_tok = vc->n_tokens;
    mrw_adapter adapter;
    adapter_random(&adapter, E, LM_WIDTH);
    static const int KS[][2] = {{0, 0}, {3, 2}, {4, 3}, {5, 4}};
    enum { N_SETTINGS = 4 };
    mrw_compress comp[N_SETTINGS];
    for (int c = 0; c < N_SETTINGS; c++) {
        comp[c] = (mrw_compress){.k = KS[c][0], .s = KS[c][1], .E = E};
        if (KS[c][0]) {
            comp[c].w = random_floats((size_t)E * E * KS[c][0], 2.0f / (E * KS[c][0]), 20 + c);
            comp[c].b = random_floats((size_t)E, 0.1f, 30 + c);
        }
    }
    mrw_rwkv7_config lc = {.n_layer = LM_LAYERS, .n_embd = LM_WIDTH, .head_size = 64, .n_vocab = 65536};
    mrw_model *lm = NULL;
    if (mrw_model_new_random(&lc, dt, 7, &lm, &err)) die("language model", &err);
    const mrw_model_info li = mrw_model_get_info(lm);

    /* a 640x480 photo-like test image (smooth gradients plus texture) */
    mrw_image img = {.width = 640, .height = 480};
    img.rgb = malloc((size_t)img.width * img.height * 3);
    for (int y = 0; y < img.height; y++)
        for (int x = 0; x < img.width; x++) {
            uint8_t *p = img.rgb + ((size_t)y * img.width + x) * 3;
            p[0] = (uint8_t)(x * 255 / img.width), p[1] = (uint8_t)(y * 255 / img.height);
            p[2] = (uint8_t)((x * 7 + y * 13) ^ (x * y));
        }
    const mrw_image_proc proc = mrw_image_proc_siglip(S);
    int32_t *question = malloc((size_t)n_question * sizeof *question);
    for (int i = 0; i < n_question; i++) question[i] = (int32_t)(100 + (i * 2654435761u) % 60000u);

    float *pixels = malloc((size_t)3 * S * S * sizeof *pixels);
    float *enc = malloc((size_t)n_tok * E * sizeof *enc);
    float *cbuf = malloc((size_t)n_tok * E * sizeof *cbuf);
    size_t scratch_n = mrw_adapter_scratch_floats(&adapter, n_tok);
    for (int c = 1; c < N_SETTINGS; c++) {
        size_t s = mrw_compress_scratch_floats(&comp[c], n_tok);
        if (s > scratch_n) scratch_n = s;
    }
    float *scratch = malloc((scratch_n + 1) * sizeof *scratch);
    float *rows = malloc((size_t)(n_tok + n_question) * LM_WIDTH * sizeof *rows);
    float *logits = malloc((size_t)li.n_vocab * sizeof *logits);

    printf("TTFT, image + %d-token question: SigLIP2-base/16-384 (random f32) -> [Conv1d compression] -> v1 adapter "
           "-> RWKV-7 L%d C%d vocab %d (%s); 640x480 image; best of %d; cores: %d\n\n",
           n_question, LM_LAYERS, LM_WIDTH, li.n_vocab, dtype_name, reps, omp_get_num_procs());
    printf("| thr | compression | image tokens | preprocess ms | encoder ms | compress ms | adapter ms | prefill ms "
           "| TTFT ms | vs no compression |\n|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    for (int nt = 1; nt <= 2; nt++) {
        char tn[4];
        snprintf(tn, sizeof tn, "%d", nt);
        if (!strstr(threads, tn)) continue;
        mrw_vit_ctx *vctx = NULL;
        if (mrw_vit_ctx_new(vit, nt, &vctx, &err)) die("encoder context", &err);
        mrw_context_params cp = mrw_context_params_default();
        cp.n_threads = nt;
        mrw_context *ctx = NULL;
        if (mrw_context_new(lm, &cp, &ctx, &err)) die("context", &err);
        mrw_state *st = mrw_state_new(lm);
        mrw_kctx k;
        mrw_kctx_init(&k, nt);
        double base_total = 0;
        for (int c = 0; c < N_SETTINGS; c++) {
            ttft_parts best = {.total = 1e30};
            for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms up */
                ttft_parts p = {0};
                double t0 = mrw_now(), t;
                if (mrw_image_preprocess(&img, &proc, pixels, &err)) die("preprocess", &err);
                t = mrw_now(), p.pre = t - t0, t0 = t;
                if (mrw_vit_forward(vctx, pixels, enc, &err)) die("encoder", &err);
                t = mrw_now(), p.enc = t - t0, t0 = t;
                const float *feat_in = enc;
                int n = n_tok;
                if (comp[c].k) {
                    n = mrw_compress_out_len(&comp[c], n_tok);
                    if (mrw_compress_forward(&comp[c], &k, enc, n_tok, cbuf, scratch, &err)) die("compression", &err);
                    feat_in = cbuf;
                }
                t = mrw_now(), p.comp = t - t0, t0 = t;
                const int n_feat = mrw_adapter_out_len(&adapter, n);
                if (mrw_adapter_forward(&adapter, &k, feat_in, n, rows, scratch, &err)) die("adapter", &err);
                t = mrw_now(), p.adapt = t - t0, t0 = t;
                for (int i = 0; i < n_question; i++)
                    mrw_model_embedding(lm, question[i], rows + (size_t)(n_feat + i) * LM_WIDTH);
                mrw_state_reset(st);
                if (mrw_eval_embeddings(ctx, st, rows, n_feat + n_question, MRW_LOGITS_LAST, logits, &err))
                    die("prefill", &err);
                volatile int first = argmax(logits, li.n_vocab);
                (void)first;
                t = mrw_now(), p.prefill = t - t0;
                p.total = p.pre + p.enc + p.comp + p.adapt + p.prefill;
                p.n_feat = n_feat;
                if (rep > 0 && p.total < best.total) best = p;
            }
            if (c == 0) base_total = best.total;
            char cs[16] = "none";
            if (comp[c].k) snprintf(cs, sizeof cs, "(%d,%d)", comp[c].k, comp[c].s);
            printf("| %d | %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2fx faster |\n", nt, cs, best.n_feat,
                   best.pre * 1e3, best.enc * 1e3, best.comp * 1e3, best.adapt * 1e3, best.prefill * 1e3,
                   best.total * 1e3, base_total / best.total);
            fflush(stdout);
        }
        mrw_kctx_free(&k);
        mrw_state_free(st);
        mrw_context_free(ctx);
        mrw_vit_ctx_free(vctx);
    }
    for (int c = 0; c < N_SETTINGS; c++) free((void *)comp[c].w), free((void *)comp[c].b);
    adapter_release(&adapter);
    free(img.rgb), free(question), free(pixels), free(enc), free(cbuf), free(scratch), free(rows), free(logits);
    mrw_model_free(lm);
    mrw_vit_free(vit);
    return 0;
}
