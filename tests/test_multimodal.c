/* One conversation that mixes modalities (docs/MULTIMODAL.md): a ModRWKV bundle with an image and an audio
 * modality, built with mrw_mm_merge from the tiny v1 fixtures of tests/fixtures/modrwkv (whose single-modality
 * pipelines test_modrwkv checks against the PyTorch goldens).
 *   - each modality of the merged model gives exactly the features of the model it came from (also with a
 *     trained compression on the second modality, stored under "m1.compress.");
 *   - mrw_mm_eval with image + audio features equals splicing both by hand (embedding rows through
 *     mrw_eval_embeddings), and the order matters;
 *   - the bundle survives mrw_mm_save / mrw_mm_load;
 *   - errors: a single-modality model asked for the other modality, a width mismatch, two image modalities,
 *     splice modes that disagree, --compress on a multi-modality bundle, a bad modality count;
 *   - data: LLaVA records with "image" and "audio" list their media in marker order ("<image>", "<audio>");
 *     mismatched counts and misplaced markers are reported and skipped;
 *   - training on records with an image and a spoken question ("<image><audio>"): the trainer's first loss
 *     equals the cross-entropy that inference (mrw_mm_eval, both features spliced in order) gives for the
 *     same record; stage 1 changes both adapters and not the RWKV; stage 2 drives the loss down and the
 *     trained bundle answers by the image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "tensor/dtype.h"
#include "modrwkv.h"
#include "test.h"
#include "train/trainer.h"

#define FIX "tests/fixtures/modrwkv/"

static char g_dir[] = "/tmp/mrw_multimodal_XXXXXX";

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k = 0;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", g_dir, name);
    return b;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

static mrw_mm *load(const char *path, const char *encoder, const char *cw, int ck, int cs) {
    mrw_mm_params p = mrw_mm_params_default();
    p.encoder = encoder;
    p.compress_weights = cw;
    p.compress_k = ck;
    p.compress_s = cs;
    mrw_mm *mm = NULL;
    mrw_error err = {0};
    CHECK_OK(mrw_mm_load(path, &p, &mm, &err), &err);
    return mm;
}

static int same_features(const mrw_features *a, const mrw_features *b) {
    return a->n == b->n && a->dim == b->dim && a->rows && b->rows &&
           !memcmp(a->rows, b->rows, (size_t)a->n * a->dim * sizeof(float));
}

/* Logits of the last position for features + tokens: through mrw_mm_eval, and by hand. */
static void eval_both(const mrw_mm *mm, const mrw_features *f, int nf, const int32_t *ids, int n, float *via_mm,
                      float *by_hand) {
    const mrw_model *lm = mrw_mm_model(mm);
    const int C = mrw_model_get_info(lm).n_embd;
    mrw_error err = {0};
    mrw_context_params cp = mrw_context_params_default();
    cp.n_threads = 2;
    cp.exact = 1;
    mrw_context *ctx = NULL;
    CHECK_OK(mrw_context_new(lm, &cp, &ctx, &err), &err);
    mrw_state *st = mrw_state_new(lm);
    CHECK_OK(mrw_mm_eval(ctx, st, mm, f, nf, ids, n, MRW_LOGITS_LAST, via_mm, &err), &err);
    int rows = n;
    for (int i = 0; i < nf; i++) rows += f[i].n;
    float *x = malloc((size_t)rows * C * sizeof *x);
    int r = 0;
    for (int i = 0; i < nf; i++)
        for (int j = 0; j < f[i].n; j++, r++) memcpy(x + (size_t)r * C, f[i].rows + (size_t)j * C, C * sizeof *x);
    for (int t = 0; t < n; t++, r++) CHECK_OK(mrw_model_embedding(lm, ids[t], x + (size_t)r * C), &err);
    mrw_state_reset(st);
    CHECK_OK(mrw_eval_embeddings(ctx, st, x, rows, MRW_LOGITS_LAST, by_hand, &err), &err);
    free(x);
    mrw_state_free(st);
    mrw_context_free(ctx);
}

/* ------------------------------------------------------------------------------------------ GGUF parts */

/* A speech model shipped as a GGUF bundle (the RWKV-7 in llama.cpp's layout, the rest under the bundle names,
 * some matrices q8_0, as recipes/pack_speech.py writes it) merges into a safetensors bundle: its quantized
 * tensors become f32, exactly what the loader dequantizes them to, so the features are bit-identical. */
static void gguf_part(const mrw_mm *vis, const mrw_mm *aud) {
    mrw_error err = {0};
    mrw_vocab *bytes = mrw_vocab_new_bytes();
    CHECK_OK(mrw_mm_save(aud, tmp("aud.safetensors"), 0, &err), &err);
    CHECK_OK(mrw_model_save(mrw_mm_model(aud), tmp("lm.gguf"), MRW_FILE_GGUF, bytes, 0, &err), &err);
    mrw_tfile *lf = NULL, *bf = NULL;
    CHECK_OK(mrw_tfile_open(tmp("lm.gguf"), &lf, &err), &err);
    CHECK_OK(mrw_tfile_open(tmp("aud.safetensors"), &bf, &err), &err);
    if (!lf || !bf) {
        mrw_tfile_close(lf), mrw_tfile_close(bf), mrw_vocab_free(bytes);
        return;
    }
    const int nl = mrw_tfile_count(lf), nb = mrw_tfile_count(bf);
    mrw_tensor_info *t = calloc((size_t)(nl + nb), sizeof *t);
    mrw_meta *m = calloc(256, sizeof *m);
    void *q = NULL;
    int n = 0, nm = 0, n_quant = 0;
    for (int i = 0; i < nl; i++) t[n++] = *mrw_tfile_tensor(lf, i);
    for (int i = 0; i < nb; i++) {
        const mrw_tensor_info *ti = mrw_tfile_tensor(bf, i);
        if (!strncmp(ti->name, "llm.", 4)) continue;
        t[n] = *ti;
        if (!strcmp(ti->name, "proj.proj.0.weight") && ti->ndim == 2 && ti->shape[1] % 32 == 0) { /* -> q8_0 */
            const int64_t numel = ti->shape[0] * ti->shape[1];
            q = malloc((size_t)numel / 32 * 34);
            float *w2 = NULL;
            size_t nw = 0;
            CHECK_OK(mrw_read_tensor_f32(tmp("aud.safetensors"), ti->name, &w2, &nw, NULL, NULL, &err), &err);
            if (w2 && nw == (size_t)numel && q) {
                mrw_from_f32(MRW_DT_Q8_0, w2, q, numel);
                t[n].dtype = MRW_DT_Q8_0;
                t[n].data = q;
                t[n].nbytes = (size_t)numel / 32 * 34;
                n_quant++;
            }
            free(w2);
        }
        n++;
    }
    CHECK(n_quant == 1);
    for (int i = 0; mrw_tfile_meta(lf, i) && nm < 256; i++) m[nm++] = *mrw_tfile_meta(lf, i);
    for (int i = 0; mrw_tfile_meta(bf, i) && nm < 256; i++) m[nm++] = *mrw_tfile_meta(bf, i);
    CHECK_OK(mrw_gguf_write(tmp("aud_q.gguf"), t, n, m, nm, NULL, NULL, &err), &err);
    free(t), free(m), free(q);
    mrw_tfile_close(lf), mrw_tfile_close(bf);
    mrw_mm *g = load(tmp("aud_q.gguf"), NULL, NULL, 0, 0);
    if (g) {
        mrw_features fg = {0}, fm = {0};
        CHECK_OK(mrw_mm_encode_audio(g, FIX "media/speech.wav", 2, &fg, NULL, &err), &err);
        const mrw_mm *parts[2] = {vis, g};
        CHECK_OK(mrw_mm_merge(mrw_mm_model(vis), parts, 2, tmp("vq.safetensors"), &err), &err);
        mrw_mm *vq = load(tmp("vq.safetensors"), NULL, NULL, 0, 0);
        if (vq) {
            CHECK_OK(mrw_mm_encode_audio(vq, FIX "media/speech.wav", 2, &fm, NULL, &err), &err);
            CHECK(same_features(&fg, &fm)); /* q8_0 widened to f32 = the loader's dequantization */
            mrw_tfile *vf = NULL;
            CHECK_OK(mrw_tfile_open(tmp("vq.safetensors"), &vf, &err), &err);
            const mrw_tensor_info *wi = vf ? mrw_tfile_find(vf, "m1.proj.proj.0.weight") : NULL;
            CHECK(wi && wi->dtype == MRW_DT_F32);
            mrw_tfile_close(vf);
            mrw_mm_free(vq);
        }
        /* a GGUF language model cannot go into a safetensors bundle: a clear error, nothing written */
        CHECK(mrw_mm_merge(mrw_mm_model(g), parts, 2, tmp("x.safetensors"), &err) == MRW_E_UNSUPPORTED);
        CHECK(mrw_mm_save(g, tmp("x.safetensors"), 0, &err) == MRW_E_UNSUPPORTED);
        CHECKF(strstr(err.msg, "GGUF") != NULL, "message: %s", err.msg);
        CHECK(access(tmp("x.safetensors"), F_OK) != 0);
        mrw_features_free(&fg), mrw_features_free(&fm);
        mrw_mm_free(g);
    }
    unlink(tmp("aud.safetensors")), unlink(tmp("lm.gguf")), unlink(tmp("aud_q.gguf")), unlink(tmp("vq.safetensors"));
    mrw_vocab_free(bytes);
}

/* ------------------------------------------------------------------------------------------------ data */

static char g_warn[4096];
static void collect(void *user, const char *msg) {
    (void)user;
    snprintf(g_warn + strlen(g_warn), sizeof g_warn - strlen(g_warn), "%s\n", msg);
}

/* LLaVA records with "image" and "audio": media in marker order, kinds, positions; count mismatches skipped. */
static void data_records(void) {
    char cwd[1024];
    if (!getcwd(cwd, sizeof cwd)) return;
    FILE *f = fopen(tmp("mixed.jsonl"), "w");
    if (!f) return;
    const char *img = FIX "media/image_a.png", *wav = FIX "media/speech.wav";
    /* 1: image then audio; 2: audio then image, text between; 3: "<audio>" without an "audio" field stays text;
     * 4: two <audio> markers for one recording (skipped); 5: an audio marker in an assistant turn (skipped) */
    fprintf(f, "{\"image\":\"%s/%s\",\"audio\":\"%s/%s\",\"conversations\":[{\"from\":\"human\",\"value\":\"<image><audio>\"},"
               "{\"from\":\"gpt\",\"value\":\"red\"}]}\n", cwd, img, cwd, wav);
    fprintf(f, "{\"image\":\"%s/%s\",\"audio\":[\"%s/%s\"],\"conversations\":[{\"from\":\"human\",\"value\":\"hi <audio> and "
               "<image>?\"},{\"from\":\"gpt\",\"value\":\"no\"}]}\n", cwd, img, cwd, wav);
    fprintf(f, "{\"image\":\"%s/%s\",\"conversations\":[{\"from\":\"human\",\"value\":\"<image><audio>\"},"
               "{\"from\":\"gpt\",\"value\":\"x\"}]}\n", cwd, img);
    fprintf(f, "{\"audio\":\"%s/%s\",\"conversations\":[{\"from\":\"human\",\"value\":\"<audio><audio>\"},"
               "{\"from\":\"gpt\",\"value\":\"x\"}]}\n", cwd, wav);
    fprintf(f, "{\"audio\":\"%s/%s\",\"conversations\":[{\"from\":\"human\",\"value\":\"<audio>\"},"
               "{\"from\":\"gpt\",\"value\":\"<audio>\"}]}\n", cwd, wav);
    fclose(f);
    mrw_vocab *bytes = mrw_vocab_new_bytes();
    const char *paths[1] = {tmp("mixed.jsonl")};
    mrw_data_params p = {.kind = MRW_DATA_AUTO, .vocab = bytes, .seed = 1, .shuffle = 0, .warn = collect};
    mrw_data *d = NULL;
    mrw_error err = {0};
    g_warn[0] = 0;
    CHECK_OK(mrw_data_open(paths, 1, &p, &d, &err), &err);
    if (d) {
        mrw_data_sample s;
        CHECK_OK(mrw_data_next(d, &s, &err), &err); /* record 1 */
        CHECK(s.n_media == 2 && s.media_kind[0] == MRW_MEDIA_IMAGE && s.media_kind[1] == MRW_MEDIA_AUDIO);
        CHECK(s.media_pos[0] == 7 && s.media_pos[1] == 7); /* both right after "\x16User: " */
        CHECK(strstr(s.media_path[1], "speech.wav") != NULL);
        CHECK_OK(mrw_data_next(d, &s, &err), &err); /* record 2: audio first (marker order) */
        CHECK(s.n_media == 2 && s.media_kind[0] == MRW_MEDIA_AUDIO && s.media_kind[1] == MRW_MEDIA_IMAGE);
        CHECK(s.media_pos[0] == 10 && s.media_pos[1] == 10 + 5); /* "\x16User: hi " | " and " */
        CHECK_OK(mrw_data_next(d, &s, &err), &err); /* record 3: "<audio>" is text there */
        CHECK(s.n_media == 1 && s.media_kind[0] == MRW_MEDIA_IMAGE);
        CHECK(s.n == 7 + 7 + 1 + 12 + 1 + 1); /* "\x16User: " "<audio>" "\x17" "\x16Assistant: " "x" "\x17" */
        CHECK_OK(mrw_data_next(d, &s, &err), &err); /* records 4 and 5 are skipped: back to record 1 */
        CHECK(s.n_media == 2 && s.media_kind[0] == MRW_MEDIA_IMAGE);
        CHECKF(strstr(g_warn, "2 <audio> markers for 1 recording") != NULL, "warnings: %s", g_warn);
        CHECKF(strstr(g_warn, "<audio> marker outside a user turn") != NULL, "warnings: %s", g_warn);
        mrw_data_free(d);
    }
    mrw_vocab_free(bytes);
    unlink(tmp("mixed.jsonl"));
}

/* --------------------------------------------------------------------------------------------- training */

static const char *k_answer[2] = {"red", "blue"};

static void write_data(const char *path, int n_rec) {
    FILE *f = fopen(path, "w");
    char cwd[1024];
    if (!f || !getcwd(cwd, sizeof cwd)) return;
    for (int i = 0; i < n_rec; i++)
        fprintf(f, "{\"image\": \"%s/" FIX "media/image_%c.png\", \"audio\": \"%s/" FIX "media/speech.wav\", "
                   "\"conversations\": [{\"from\": \"human\", \"value\": \"<image><audio>\"}, "
                   "{\"from\": \"gpt\", \"value\": \"%s\"}]}\n", cwd, "ab"[i], cwd, k_answer[i]);
    fclose(f);
}

static double first_loss(const char *log) {
    FILE *f = fopen(log, "r");
    char line[4096];
    double l = NAN;
    if (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"loss\":");
        if (p) l = atof(p + 7);
    }
    if (f) fclose(f);
    return l;
}

static double last_loss(const char *log) {
    FILE *f = fopen(log, "r");
    char line[4096];
    double l = NAN;
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"loss\":");
        if (p) l = atof(p + 7);
    }
    if (f) fclose(f);
    return l;
}

static double tensor_diff(const char *a, const char *b, const char *name) {
    float *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    mrw_error err = {0};
    double d = -1;
    if (!mrw_read_tensor_f32(a, name, &x, &nx, NULL, NULL, &err) && !mrw_read_tensor_f32(b, name, &y, &ny, NULL, NULL, &err) &&
        nx == ny)
        d = max_diff(x, y, nx);
    free(x), free(y);
    return d;
}

static void training(const char *both_path, const mrw_features *fi, const mrw_features *fa) {
    mrw_error err = {0};
    mrw_vocab *bytes = mrw_vocab_new_bytes();
    write_data(tmp("one.jsonl"), 1);
    write_data(tmp("two.jsonl"), 2);
    /* 1. the trainer's loss on one record = inference's cross-entropy on the same spliced sequence */
    mrw_train_opts o;
    mrw_train_opts_default(&o);
    o.model = both_path;
    o.data[0] = tmp("one.jsonl"), o.n_data = 1;
    o.train = MRW_PG_ADAPTER;
    o.steps = 1, o.lr = 1e-9, o.threads = 2, o.progress = 0, o.quiet = 1, o.ctx_len = 256;
    o.out = tmp("tr0");
    CHECK_OK(mrw_train_run(&o, NULL, bytes, &err), &err);
    char logp[600];
    snprintf(logp, sizeof logp, "%s/train.jsonl", o.out);
    const double l_train = first_loss(logp);
    mrw_mm *mm = load(both_path, NULL, NULL, 0, 0);
    if (mm) {
        const char *text = "\x16User: \x17\x16" "Assistant: red\x17";
        int32_t ids[64];
        const int n = (int)mrw_tokenize(bytes, text, strlen(text), ids, 64);
        const int first_sup = 8; /* "\x16User: \x17" is 8 bytes: the assistant turn starts at token 8 */
        const mrw_model *lm = mrw_mm_model(mm);
        const int V = mrw_model_get_info(lm).n_vocab, R = fi->n + fa->n + n;
        float *lg = malloc((size_t)R * V * sizeof *lg);
        mrw_context_params cp = mrw_context_params_default();
        cp.n_threads = 2, cp.exact = 1;
        mrw_context *ctx = NULL;
        CHECK_OK(mrw_context_new(lm, &cp, &ctx, &err), &err);
        mrw_state *st = mrw_state_new(lm);
        mrw_features f[2] = {*fi, *fa};
        CHECK_OK(mrw_mm_eval(ctx, st, mm, f, 2, ids, n, MRW_LOGITS_ALL, lg, &err), &err);
        double ce = 0;
        int cnt = 0;
        for (int i = first_sup - 1; i + 1 < n; i++) { /* text position i predicts token i + 1 */
            const float *row = lg + (size_t)(fi->n + fa->n + i) * V;
            double mx = row[0], z = 0;
            for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            for (int v = 0; v < V; v++) z += exp(row[v] - mx);
            ce += mx + log(z) - row[ids[i + 1]];
            cnt++;
        }
        ce /= cnt;
        fprintf(stderr, "  trainer loss %.6f, inference cross-entropy %.6f (%d positions)\n", l_train, ce, cnt);
        CHECKF(fabs(l_train - ce) <= 1e-3 * (1 + ce), "train %g vs inference %g", l_train, ce);
        free(lg);
        mrw_state_free(st);
        mrw_context_free(ctx);
        mrw_mm_free(mm);
    }
    /* 2. stage 1 (adapters): both adapters learn, the RWKV stays */
    o.data[0] = tmp("two.jsonl");
    o.steps = 5, o.lr = 1e-2, o.out = tmp("tr1");
    o.feature_cache = tmp("cache"); /* each modality its own cache (the image's and the recording's features) */
    CHECK_OK(mrw_train_run(&o, NULL, bytes, &err), &err);
    char s1[600], s2[600];
    snprintf(s1, sizeof s1, "%s/model.safetensors", o.out);
    CHECK(tensor_diff(both_path, s1, "proj.proj.0.weight") > 0);    /* the image adapter */
    CHECK(tensor_diff(both_path, s1, "m1.proj.proj.0.weight") > 0); /* the audio adapter */
    CHECK(tensor_diff(both_path, s1, "llm.blocks.0.att.key.weight") == 0);
    mrw_mm *m1 = load(s1, NULL, NULL, 0, 0);
    if (m1) {
        CHECK(mrw_mm_n_modalities(m1) == 2 && mrw_mm_modality_info(m1, 1).encoder == MRW_ENC_WHISPER);
        mrw_mm_free(m1);
    }
    /* 3. stage 2 (adapters + RWKV) from stage 1: the loss goes down and the answer follows the image */
    o.model = s1;
    o.train = MRW_PG_ADAPTER | MRW_PG_RWKV;
    o.steps = 16, o.lr = 3e-3, o.out = tmp("tr2");
    CHECK_OK(mrw_train_run(&o, NULL, bytes, &err), &err);
    snprintf(logp, sizeof logp, "%s/train.jsonl", o.out);
    const double a = first_loss(logp), b = last_loss(logp);
    fprintf(stderr, "  stage 2 loss %.4f -> %.4f\n", a, b);
    CHECK(b < 0.5 * a);
    snprintf(s2, sizeof s2, "%s/model.safetensors", o.out);
    CHECK(tensor_diff(s1, s2, "llm.blocks.0.att.key.weight") > 0);
    mrw_mm *m2 = load(s2, NULL, NULL, 0, 0);
    if (m2) {
        const mrw_model *lm = mrw_mm_model(m2);
        const int V = mrw_model_get_info(lm).n_vocab;
        mrw_context *ctx = NULL;
        CHECK_OK(mrw_context_new(lm, NULL, &ctx, &err), &err);
        for (int i = 0; i < 2 && ctx; i++) {
            mrw_features f[2] = {{0}};
            char img[256];
            snprintf(img, sizeof img, FIX "media/image_%c.png", "ab"[i]);
            CHECK_OK(mrw_mm_encode_image(m2, img, 2, &f[0], NULL, &err), &err);
            CHECK_OK(mrw_mm_encode_audio(m2, FIX "media/speech.wav", 2, &f[1], NULL, &err), &err);
            const char *text = "\x16User: \x17\x16" "Assistant: ";
            int32_t ids[64];
            const int n = (int)mrw_tokenize(bytes, text, strlen(text), ids, 64);
            float *lg = malloc((size_t)V * sizeof *lg);
            mrw_state *st = mrw_state_new(lm);
            CHECK_OK(mrw_mm_eval(ctx, st, m2, f, 2, ids, n, MRW_LOGITS_LAST, lg, &err), &err);
            int best = 0;
            for (int v = 1; v < V; v++) best = lg[v] > lg[best] ? v : best;
            CHECKF(best == k_answer[i][0], "image %c: first answer byte %d, want '%c'", "ab"[i], best, k_answer[i][0]);
            free(lg);
            mrw_state_free(st);
            mrw_features_free(&f[0]), mrw_features_free(&f[1]);
        }
        mrw_context_free(ctx);
        mrw_mm_free(m2);
    }
    const char *dirs[] = {"tr0", "tr1", "tr2"};
    for (int d = 0; d < 3; d++) {
        const char *files[] = {"model.safetensors", "resume.safetensors", "train.jsonl"};
        for (int i = 0; i < 3; i++) {
            char p[700];
            snprintf(p, sizeof p, "%s/%s", tmp(dirs[d]), files[i]);
            unlink(p);
        }
        rmdir(tmp(dirs[d]));
    }
    unlink(tmp("one.jsonl")), unlink(tmp("two.jsonl"));
    char rm[700];
    snprintf(rm, sizeof rm, "rm -rf '%s'", tmp("cache"));
    CHECK(system(rm) == 0);
    mrw_vocab_free(bytes);
}

int main(void) {
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    mrw_error err = {0};
    /* the single-modality models, as bundles (a vision one with a trained compression too) */
    mrw_mm *vis = load(FIX "v1_vision/rwkv-0.pth", FIX "siglip", NULL, 0, 0);
    mrw_mm *visc = load(FIX "v1_vision/rwkv-0.pth", FIX "siglip", FIX "compress/k3s2.safetensors", 3, 2);
    mrw_mm *aud = load(FIX "v1_audio/rwkv-0.pth", FIX "whisper", NULL, 0, 0);
    if (!vis || !visc || !aud) TEST_MAIN_END();
    CHECK(mrw_mm_n_modalities(vis) == 1 && mrw_mm_get_info(vis).n_modalities == 1);
    CHECK(mrw_mm_modality_of(vis, 0) == 0 && mrw_mm_modality_of(vis, 1) == -1);
    CHECK(mrw_mm_modality_of(aud, 1) == 0 && mrw_mm_modality_of(aud, 0) == -1);

    /* a single-modality model asked for the other modality: a clear error */
    mrw_features f = {0};
    CHECK(mrw_mm_encode_audio(vis, FIX "media/speech.wav", 1, &f, NULL, &err) == MRW_E_ARG);
    CHECKF(strstr(err.msg, "siglip") && strstr(err.msg, "not audio"), "message: %s", err.msg);
    CHECK(mrw_mm_encode_image(aud, FIX "media/image_a.png", 1, &f, NULL, &err) == MRW_E_ARG);
    CHECKF(strstr(err.msg, "whisper") && strstr(err.msg, "not images"), "message: %s", err.msg);

    /* the reference features of each single model */
    mrw_features fi = {0}, fic = {0}, fa = {0};
    CHECK_OK(mrw_mm_encode_image(vis, FIX "media/image_a.png", 2, &fi, NULL, &err), &err);
    CHECK_OK(mrw_mm_encode_image(visc, FIX "media/image_a.png", 2, &fic, NULL, &err), &err);
    CHECK_OK(mrw_mm_encode_audio(aud, FIX "media/speech.wav", 2, &fa, NULL, &err), &err);
    CHECK(fic.n < fi.n); /* compressed */

    /* merge: the LM of the vision model, image then audio modality */
    const mrw_mm *parts[2] = {vis, aud};
    CHECK_OK(mrw_mm_merge(mrw_mm_model(vis), parts, 2, tmp("both.safetensors"), &err), &err);
    /* ... and audio first with the compressed vision model second (its compression under m1.compress.) */
    const mrw_mm *parts2[2] = {aud, visc};
    CHECK_OK(mrw_mm_merge(mrw_mm_model(aud), parts2, 2, tmp("both_c.safetensors"), &err), &err);

    mrw_mm *both = load(tmp("both.safetensors"), NULL, NULL, 0, 0);
    mrw_mm *both_c = load(tmp("both_c.safetensors"), NULL, NULL, 0, 0);
    if (!both || !both_c) TEST_MAIN_END();
    CHECK(mrw_mm_n_modalities(both) == 2);
    mrw_mm_info i0 = mrw_mm_modality_info(both, 0), i1 = mrw_mm_modality_info(both, 1);
    CHECK(i0.encoder == MRW_ENC_SIGLIP && !i0.takes_audio && i0.n_modalities == 2 && i0.image_size == 32);
    CHECK(i1.encoder == MRW_ENC_WHISPER && i1.takes_audio && i1.adapter_audio && i1.adapter_version == 1);
    CHECK(i0.splice == MRW_SPLICE_PREPEND);
    CHECK(mrw_mm_modality_of(both, 0) == 0 && mrw_mm_modality_of(both, 1) == 1);
    CHECK(mrw_mm_modality_of(both_c, 0) == 1 && mrw_mm_modality_of(both_c, 1) == 0);
    mrw_mm_info c1 = mrw_mm_modality_info(both_c, 1);
    CHECK(c1.compress_k == 3 && c1.compress_s == 2 && c1.compress_trained);
    CHECK(mrw_mm_modality_info(both, 5).encoder == MRW_ENC_NONE);
    {
        mrw_tfile *tf = NULL;
        CHECK_OK(mrw_tfile_open(tmp("both_c.safetensors"), &tf, &err), &err);
        if (tf) {
            CHECK(mrw_tfile_find(tf, "m1.compress.weight") != NULL);
            CHECK(mrw_tfile_find(tf, "m1.proj.proj.0.weight") != NULL);
            CHECK(mrw_tfile_find(tf, "proj.conv.weight") != NULL); /* modality 0: the audio adapter */
            CHECK(mrw_tfile_find_meta(tf, "modrwkv.m1.encoder") != NULL);
            mrw_tfile_close(tf);
        }
    }

    /* every modality of a merged model gives the features of the model it came from, bit for bit */
    mrw_features mi = {0}, ma = {0}, mic = {0}, mac = {0};
    CHECK_OK(mrw_mm_encode_image(both, FIX "media/image_a.png", 2, &mi, NULL, &err), &err);
    CHECK_OK(mrw_mm_encode_audio(both, FIX "media/speech.wav", 2, &ma, NULL, &err), &err);
    CHECK_OK(mrw_mm_encode_image(both_c, FIX "media/image_a.png", 2, &mic, NULL, &err), &err);
    CHECK_OK(mrw_mm_encode_audio(both_c, FIX "media/speech.wav", 2, &mac, NULL, &err), &err);
    CHECK(same_features(&mi, &fi));
    CHECK(same_features(&ma, &fa));
    CHECK(same_features(&mic, &fic));
    CHECK(same_features(&mac, &fa));
    /* encode_input_at reaches the second modality */
    {
        const size_t np = 3 * 32 * 32;
        float *pix = calloc(np, sizeof *pix);
        mrw_features a = {0}, b = {0};
        CHECK_OK(mrw_mm_encode_input_at(both, 0, pix, np, 1, &a, NULL, &err), &err);
        CHECK_OK(mrw_mm_encode_input_at(both_c, 1, pix, np, 1, &b, NULL, &err), &err);
        CHECK(a.n == fi.n && b.n == fic.n);
        CHECK(mrw_mm_encode_input_at(both, 2, pix, np, 1, &b, NULL, &err) == MRW_E_ARG);
        CHECK(mrw_mm_encode_input_at(both, 1, pix, np, 1, &b, NULL, &err) != MRW_OK); /* Whisper: not 80-bin mels */
        mrw_features_free(&a), mrw_features_free(&b), free(pix);
    }

    /* the mixed conversation: spliced in order, equal to splicing by hand; the order matters */
    const char *text = "\x16User: what colour?\x17\x16" "Assistant:";
    mrw_vocab *bytes = mrw_vocab_new_bytes();
    int32_t ids[128];
    const int n = (int)mrw_tokenize(bytes, text, strlen(text), ids, 128);
    CHECK(n > 0 && n < 128);
    const int V = mrw_model_get_info(mrw_mm_model(both)).n_vocab;
    float *l_ia = malloc(V * sizeof(float)), *h_ia = malloc(V * sizeof(float));
    float *l_ai = malloc(V * sizeof(float)), *h_ai = malloc(V * sizeof(float));
    float *l_i = malloc(V * sizeof(float)), *h_i = malloc(V * sizeof(float));
    mrw_features ia[2] = {mi, ma}, ai[2] = {ma, mi};
    eval_both(both, ia, 2, ids, n, l_ia, h_ia);
    eval_both(both, ai, 2, ids, n, l_ai, h_ai);
    eval_both(both, ia, 1, ids, n, l_i, h_i);
    const double d_ia = max_diff(l_ia, h_ia, V), d_ai = max_diff(l_ai, h_ai, V);
    const double d_order = max_diff(l_ia, l_ai, V), d_audio = max_diff(l_ia, l_i, V);
    fprintf(stderr, "  image+audio vs by hand max|Δ| %.3g; audio+image vs by hand %.3g; image+audio vs audio+image %.3g; "
                    "vs image only %.3g\n", d_ia, d_ai, d_order, d_audio);
    CHECK(d_ia <= 1e-5);
    CHECK(d_ai <= 1e-5);
    CHECK(d_order > 1e-3);
    CHECK(d_audio > 1e-3);

    /* save/load round trip of a two-modality bundle gives the same logits */
    CHECK_OK(mrw_mm_save(both, tmp("both2.safetensors"), 0, &err), &err);
    mrw_mm *both2 = load(tmp("both2.safetensors"), NULL, NULL, 0, 0);
    if (both2) {
        CHECK(mrw_mm_n_modalities(both2) == 2);
        float *l2 = malloc(V * sizeof(float)), *h2 = malloc(V * sizeof(float));
        eval_both(both2, ia, 2, ids, n, l2, h2);
        CHECK(max_diff(l2, l_ia, V) == 0);
        free(l2), free(h2);
        mrw_mm_free(both2);
    }

    /* errors */
    {
        /* a language model of another width */
        mrw_rwkv7_config rc = {.n_layer = 1, .n_embd = 128, .head_size = 64, .n_ffn = 256, .n_vocab = 256};
        mrw_model *wide = NULL, *wide2 = NULL;
        CHECK_OK(mrw_model_new_random(&rc, MRW_DT_F32, 7, &wide, &err), &err);
        CHECK(mrw_mm_merge(wide, parts, 2, tmp("x.safetensors"), &err) == MRW_E_UNSUPPORTED); /* not from a file */
        CHECK_OK(mrw_model_save(wide, tmp("wide.safetensors"), MRW_FILE_AUTO, NULL, 0, &err), &err);
        CHECK_OK(mrw_model_load(tmp("wide.safetensors"), NULL, &wide2, &err), &err);
        if (wide2) {
            CHECK(mrw_mm_merge(wide2, parts, 2, tmp("x.safetensors"), &err) == MRW_E_SHAPE);
            CHECKF(strstr(err.msg, "n_embd 128") != NULL, "message: %s", err.msg);
        }
        CHECK(access(tmp("x.safetensors"), F_OK) != 0);
        mrw_model_free(wide), mrw_model_free(wide2);
        /* a plain RWKV-7 file of the right width is a valid LM source */
        CHECK_OK(mrw_model_save(mrw_mm_model(vis), tmp("lm.safetensors"), MRW_FILE_AUTO, NULL, 0, &err), &err);
        mrw_model *plain = NULL;
        CHECK_OK(mrw_model_load(tmp("lm.safetensors"), NULL, &plain, &err), &err);
        if (plain) CHECK_OK(mrw_mm_merge(plain, parts, 2, tmp("plain.safetensors"), &err), &err);
        mrw_mm *pm = load(tmp("plain.safetensors"), NULL, NULL, 0, 0);
        if (pm) {
            float *l3 = malloc(V * sizeof(float)), *h3 = malloc(V * sizeof(float));
            eval_both(pm, ia, 2, ids, n, l3, h3);
            CHECK(max_diff(l3, l_ia, V) <= 1e-6); /* same weights (bf16 widened to f32 on save) */
            free(l3), free(h3);
            mrw_mm_free(pm);
        }
        mrw_model_free(plain);
        /* two image modalities */
        const mrw_mm *two_img[2] = {vis, visc};
        CHECK(mrw_mm_merge(mrw_mm_model(vis), two_img, 2, tmp("x.safetensors"), &err) == MRW_E_ARG);
        CHECKF(strstr(err.msg, "two image") != NULL, "message: %s", err.msg);
        /* a v2 (placeholder) model with a v1 (prepend) one */
        mrw_mm *v2 = load(FIX "v2/rwkv-0.pth", FIX "siglip", NULL, 0, 0); /* its config.json */
        if (v2) {
            const mrw_mm *mixed[2] = {aud, v2};
            mrw_status s = mrw_mm_merge(mrw_mm_model(aud), mixed, 2, tmp("x.safetensors"), &err);
            CHECK(s == MRW_E_ARG || s == MRW_E_SHAPE);
            mrw_mm_free(v2);
        }
        CHECK(mrw_mm_merge(mrw_mm_model(vis), parts, 0, tmp("x.safetensors"), &err) == MRW_E_ARG);
        CHECK(access(tmp("x.safetensors"), F_OK) != 0);
        /* --compress / --encoder are for one modality */
        mrw_mm_params p = mrw_mm_params_default();
        p.compress_k = 3, p.compress_s = 2;
        mrw_mm *x = NULL;
        CHECK(mrw_mm_load(tmp("both.safetensors"), &p, &x, &err) == MRW_E_ARG && !x);
        p = mrw_mm_params_default();
        p.encoder = FIX "siglip";
        CHECK(mrw_mm_load(tmp("both.safetensors"), &p, &x, &err) == MRW_E_ARG && !x);
        /* a bundle whose modality count is out of range */
        mrw_tfile *tf = NULL;
        CHECK_OK(mrw_tfile_open(tmp("both.safetensors"), &tf, &err), &err);
        if (tf) {
            int nt = mrw_tfile_count(tf), nm = 0;
            mrw_tensor_info *t = calloc(nt, sizeof *t);
            for (int i = 0; i < nt; i++) t[i] = *mrw_tfile_tensor(tf, i);
            mrw_meta *m = calloc(64, sizeof *m);
            for (int i = 0; mrw_tfile_meta(tf, i) && nm < 64; i++) {
                m[nm] = *mrw_tfile_meta(tf, i);
                if (!strcmp(m[nm].key, "modrwkv.modalities")) m[nm].v.s.ptr = "9", m[nm].v.s.len = 1;
                nm++;
            }
            CHECK_OK(mrw_safetensors_write(tmp("bad.safetensors"), t, nt, m, nm, NULL, NULL, &err), &err);
            CHECK(mrw_mm_load(tmp("bad.safetensors"), NULL, &x, &err) == MRW_E_FORMAT && !x);
            free(t), free(m);
            mrw_tfile_close(tf);
        }
    }

    data_records();
    gguf_part(vis, aud);
    training(tmp("both.safetensors"), &fi, &fa);

    free(l_ia), free(h_ia), free(l_ai), free(h_ai), free(l_i), free(h_i);
    mrw_vocab_free(bytes);
    mrw_features_free(&fi), mrw_features_free(&fic), mrw_features_free(&fa);
    mrw_features_free(&mi), mrw_features_free(&ma), mrw_features_free(&mic), mrw_features_free(&mac);
    mrw_mm_free(both), mrw_mm_free(both_c);
    mrw_mm_free(vis), mrw_mm_free(visc), mrw_mm_free(aud);
    const char *files[] = {"both.safetensors", "both_c.safetensors", "both2.safetensors", "wide.safetensors",
                           "lm.safetensors", "plain.safetensors", "bad.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) unlink(tmp(files[i]));
    rmdir(g_dir);
    TEST_MAIN_END();
}
