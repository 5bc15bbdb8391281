/* modrwkv convert | init | info: whole-model operations. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/common.h"
#include "tools/tools.h"

static const char *k_convert_usage =
    "usage: modrwkv convert INPUT OUTPUT [--dtype TYPE] [--vocab FILE]\n"
    "       modrwkv convert CHECKPOINT BUNDLE.safetensors [--encoder DIR] [--compress K,S [--compress-weights F]]\n"
    "       modrwkv convert --merge [--lm FILE] MODEL... BUNDLE.safetensors\n"
    "Converts an RWKV-7 model between .pth, .safetensors and .gguf (chosen by OUTPUT's extension). .pth and\n"
    ".safetensors use the official key layout; GGUF uses llama.cpp's rwkv7 layout and embeds the vocabulary.\n"
    "A ModRWKV checkpoint (v1 with --encoder, v2, or a bundle) is bundled into one self-describing safetensors\n"
    "file (language model, adapter, compression, encoder weights and configuration): -m BUNDLE is then all a\n"
    "command needs. The output is written atomically: on any error nothing is left at OUTPUT.\n"
    "--merge makes one model of several (docs/MULTIMODAL.md): the RWKV-7 of --lm FILE (a ModRWKV file, or a\n"
    "plain RWKV-7 .pth/.safetensors; default: the first MODEL) and the encoder, compression and adapter of every\n"
    "MODEL (ModRWKV v2 checkpoints or bundles, in order), e.g. a vision and a speech model into one that takes\n"
    "--image and --audio together. Every adapter must give features of the RWKV-7's width, all MODELs must\n"
    "splice the same way (v1 prepend or v2 placeholders), and at most one image and one audio encoder.\n\n"
    "      --merge          merge MODEL... into BUNDLE.safetensors (the last argument)\n"
    "      --lm FILE        with --merge: where the language model comes from\n"
    "      --dtype TYPE     big matrices (emb, head, r/k/v/o, ffn) as f32, f16, bf16, q8_0 or q4_0; q8_0 and\n"
    "                       q4_0 need a .gguf output (default: as stored). Norms, mixes and LoRAs stay f32.\n"
    "      --vocab FILE     vocabulary to embed in a GGUF ('bytes' for byte-level models; default: the input\n"
    "                       GGUF's, bytes for 256-token models, else the installed World vocabulary if found)\n"
    TOOL_MEDIA_HELP;

/* ModRWKV checkpoint -> bundle. */
static int convert_bundle(const char *cmd, const char *in, const char *out, const tool_media_opts *media) {
    const char *ext = strrchr(out, '.');
    if (!ext || strcmp(ext, ".safetensors"))
        return tool_fail(cmd, "%s: a ModRWKV bundle is written as .safetensors", out);
    mrw_mm_params p = tool_mm_params(media);
    p.encoder_keep_dtype = 0; /* the bundle stores the encoder's weights as the file has them either way */
    mrw_mm *mm = NULL;
    mrw_error err = {0};
    if (mrw_mm_load(in, &p, &mm, &err)) return tool_fail(cmd, "%s", err.msg);
    int rc = 0;
    if (mrw_mm_save(mm, out, isatty(2), &err)) rc = tool_fail(cmd, "%s", err.msg);
    else fprintf(stderr, "wrote %s: ModRWKV bundle\n", out);
    mrw_mm_free(mm);
    return rc;
}

/* --merge: the LM of lm_path (default: the first part) + the modalities of every part -> one bundle. */
static int convert_merge(const char *cmd, const char *lm_path, const char *const *parts, int n_parts, const char *out) {
    const char *ext = strrchr(out, '.');
    if (!ext || strcmp(ext, ".safetensors"))
        return tool_fail(cmd, "%s: a merged ModRWKV bundle is written as .safetensors (the last argument is the output)", out);
    if (n_parts < 1) return tool_fail(cmd, "--merge needs at least one MODEL before the output");
    if (n_parts > MRW_MM_MAX_MODALITIES) return tool_fail(cmd, "--merge takes at most %d models", MRW_MM_MAX_MODALITIES);
    mrw_mm *mm[MRW_MM_MAX_MODALITIES] = {0}, *lm_mm = NULL;
    mrw_model *lm_plain = NULL;
    mrw_error err = {0};
    int rc = 1;
    mrw_mm_params p = mrw_mm_params_default();
    for (int i = 0; i < n_parts; i++)
        if (mrw_mm_load(parts[i], &p, &mm[i], &err)) {
            tool_fail(cmd, "%s", err.msg);
            goto out;
        }
    const mrw_model *lm = mrw_mm_model(mm[0]);
    if (lm_path) {
        if (mrw_is_modrwkv_file(lm_path)) {
            if (mrw_mm_load(lm_path, &p, &lm_mm, &err)) { tool_fail(cmd, "%s", err.msg); goto out; }
            lm = mrw_mm_model(lm_mm);
        } else {
            if (mrw_model_load(lm_path, NULL, &lm_plain, &err)) { tool_fail(cmd, "%s", err.msg); goto out; }
            lm = lm_plain;
        }
    }
    if (mrw_mm_merge(lm, (const mrw_mm *const *)mm, n_parts, out, &err)) {
        tool_fail(cmd, "%s", err.msg);
        goto out;
    }
    mrw_mm *check = NULL; /* read it back: the bundle must load as it will be used */
    if (mrw_mm_load(out, &p, &check, &err)) {
        remove(out);
        tool_fail(cmd, "the merged bundle does not load (removed): %s", err.msg);
        goto out;
    }
    fprintf(stderr, "wrote %s: ModRWKV bundle with %d modalities:", out, mrw_mm_n_modalities(check));
    static const char *enc[] = {"none", "SigLIP", "CLIP", "Whisper", "WavLM"};
    for (int i = 0; i < mrw_mm_n_modalities(check); i++)
        fprintf(stderr, "%s %s", i ? "," : "", enc[mrw_mm_modality_info(check, i).encoder]);
    fputc('\n', stderr);
    mrw_mm_free(check);
    rc = 0;
out:
    for (int i = 0; i < n_parts; i++) mrw_mm_free(mm[i]);
    mrw_mm_free(lm_mm);
    mrw_model_free(lm_plain);
    return rc;
}

int cmd_convert(int argc, char **argv) {
    const char *cmd = "convert";
    tool_model_opts mo = {.dtype = MRW_DT_AUTO};
    tool_media_opts media = {0};
    const char *in = NULL, *out = NULL, *lm = NULL;
    const char *pos[MRW_MM_MAX_MODALITIES + 2];
    int n_pos = 0, merge = 0;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_convert_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (o[0] != '-') {
            if (n_pos == MRW_MM_MAX_MODALITIES + 2) { tool_fail(cmd, "unexpected argument '%s'", o); return 2; }
            pos[n_pos++] = o;
        } else if (!strcmp(o, "--merge")) {
            merge = 1;
        } else if (!strncmp(o, "--lm", 4) && (o[4] == 0 || o[4] == '=')) {
            lm = tool_value(&a, o);
        } else if (!strncmp(o, "--dtype", 7) || !strncmp(o, "--vocab", 7) || !strcmp(o, "-t") || !strncmp(o, "--threads", 9)) {
            tool_model_option(&a, o, &mo);
        } else if (tool_media_option(&a, o, &media)) {
            if (media.n_images || media.audio) { tool_fail(cmd, "convert takes no --image/--audio"); return 2; }
        } else {
            tool_unknown(&a, o);
        }
    }
    if (a.failed) return 2;
    if (merge) {
        if (media.encoder || media.compress_k || media.compress_weights || mo.dtype != MRW_DT_AUTO)
            return tool_fail(cmd, "--merge takes no --encoder, --compress or --dtype (merge bundles; convert them first)"), 2;
        if (n_pos < 2) return tool_fail(cmd, "--merge: give MODEL... and the output BUNDLE.safetensors"), 2;
        return convert_merge(cmd, lm, pos, n_pos - 1, pos[n_pos - 1]);
    }
    if (lm) return tool_fail(cmd, "--lm goes with --merge"), 2;
    if (n_pos > 2) return tool_fail(cmd, "unexpected argument '%s'", pos[2]), 2;
    if (n_pos > 0) in = pos[0];
    if (n_pos > 1) out = pos[1];
    if (!in || !out) return tool_fail(cmd, "give INPUT and OUTPUT (see modrwkv convert --help)"), 2;
    if (media.encoder || media.compress_k || mrw_is_modrwkv_file(in)) {
        /* a bundle keeps every tensor's stored dtype: refuse rather than silently write f32 */
        if (mo.dtype != MRW_DT_AUTO)
            return tool_fail(cmd, "--dtype does not apply to ModRWKV bundles (their tensors keep the dtypes they are stored in)"), 2;
        return convert_bundle(cmd, in, out, &media);
    }
    mo.model = in;
    const char *ext = strrchr(out, '.');
    int gguf = ext && !strcmp(ext, ".gguf");
    if (!ext || (!gguf && strcmp(ext, ".safetensors") && strcmp(ext, ".pth") && strcmp(ext, ".pt")))
        return tool_fail(cmd, "%s: the output must end in .gguf, .safetensors or .pth", out), 2;
    if (!gguf && (mo.dtype == MRW_DT_Q8_0 || mo.dtype == MRW_DT_Q4_0))
        return tool_fail(cmd, "%s weights can only be written as .gguf", mrw_dtype_name(mo.dtype)), 2;
    mrw_model *model = NULL;
    mrw_vocab *vocab = NULL;
    int rc = 1;
    if (tool_load_model(cmd, &mo, &model, NULL)) return 1;
    if (gguf) {
        /* a vocabulary is embedded when one can be found; its absence is not an error */
        if (mo.vocab) {
            if (tool_load_vocab(cmd, mo.vocab, model, &vocab)) goto out;
        } else {
            mrw_error e = {0};
            char path[4096];
            int V = mrw_model_get_info(model).n_vocab;
            if (mrw_vocab_from_model(model, &vocab, &e) != MRW_OK) {
                if (V == 256) vocab = mrw_vocab_new_bytes();
                else if (tool_default_vocab_path(path, sizeof path) && mrw_vocab_load(path, &vocab, &e) == MRW_OK &&
                         mrw_vocab_size(vocab) > V) {
                    mrw_vocab_free(vocab);
                    vocab = NULL;
                }
            }
            if (!vocab) fprintf(stderr, "modrwkv convert: note: no vocabulary embedded (pass --vocab FILE to add one)\n");
        }
    }
    mrw_error err = {0};
    if (mrw_model_save(model, out, MRW_FILE_AUTO, vocab, isatty(2), &err)) {
        tool_fail(cmd, "%s", err.msg);
        goto out;
    }
    mrw_model_info info = mrw_model_get_info(model);
    fprintf(stderr, "wrote %s: %d layers, n_embd %d, vocab %d, %s weights%s\n", out, info.n_layer, info.n_embd,
            info.n_vocab, mrw_dtype_name(info.weight_dtype), vocab ? ", vocabulary embedded" : "");
    rc = 0;
out:
    mrw_vocab_free(vocab);
    mrw_model_free(model);
    return rc;
}

static const char *k_init_usage =
    "usage: modrwkv init -o OUTPUT [options]\n"
    "Writes an RWKV-7 model with random weights (for tests, benchmarks and demos; it generates noise).\n\n"
    "  -o, --output FILE    .safetensors, .pth or .gguf\n"
    "      --layers N       (default 2)\n"
    "      --embd C         n_embd, a multiple of the head size (default 128)\n"
    "      --head-size N    (default 64)\n"
    "      --ffn F          (default 4*C)\n"
    "      --vocab-size V   (default 65536)\n"
    "      --dtype TYPE     big matrices as f32, f16, bf16, q8_0 or q4_0 (default f32)\n"
    "      --seed S         (default 1)\n";

int cmd_init(int argc, char **argv) {
    const char *cmd = "init";
    mrw_rwkv7_config cfg = {.n_layer = 2, .n_embd = 128, .head_size = 64, .n_vocab = 65536};
    const char *out = NULL;
    mrw_dtype dt = MRW_DT_F32;
    int seed = 1;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_init_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strcmp(o, "-o") || !strncmp(o, "--output", 8)) out = tool_value(&a, o);
        else if (!strncmp(o, "--layers", 8)) tool_int(&a, o, 1, 4096, &cfg.n_layer);
        else if (!strncmp(o, "--embd", 6)) tool_int(&a, o, 1, 65536, &cfg.n_embd);
        else if (!strncmp(o, "--head-size", 11)) tool_int(&a, o, 1, 4096, &cfg.head_size);
        else if (!strncmp(o, "--ffn", 5)) tool_int(&a, o, 1, 1 << 18, &cfg.n_ffn);
        else if (!strncmp(o, "--vocab-size", 12)) tool_int(&a, o, 1, 1 << 24, &cfg.n_vocab);
        else if (!strncmp(o, "--seed", 6)) tool_int(&a, o, 0, 2147483647, &seed);
        else if (!strncmp(o, "--dtype", 7)) {
            const char *v = tool_value(&a, o);
            if (v && (mrw_dtype_parse(v, &dt) || dt < 0 || dt > MRW_DT_Q4_0)) {
                tool_fail(cmd, "--dtype must be one of f32, f16, bf16, q8_0, q4_0");
                return 2;
            }
        } else tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    if (!out) return tool_fail(cmd, "give the output file with -o (see modrwkv init --help)"), 2;
    mrw_error err = {0};
    mrw_model *m = NULL;
    if (mrw_model_new_random(&cfg, dt, (uint64_t)seed, &m, &err)) return tool_fail(cmd, "%s", err.msg);
    int rc = 0;
    if (mrw_model_save(m, out, MRW_FILE_AUTO, NULL, isatty(2), &err)) rc = tool_fail(cmd, "%s", err.msg);
    else fprintf(stderr, "wrote %s: random RWKV-7, %d layers, n_embd %d, vocab %d, %s\n", out, cfg.n_layer,
                 cfg.n_embd, cfg.n_vocab, mrw_dtype_name(dt));
    mrw_model_free(m);
    return rc;
}

static const char *k_info_usage =
    "usage: modrwkv info -m MODEL [--dtype TYPE] [--encoder DIR]\n"
    "Prints the model's shape (read from its tensors), parameter count and memory; for ModRWKV checkpoints\n"
    "also the encoder, adapter, splicing and compression found.\n";

static void print_lm(const char *path, const mrw_model *m) {
    mrw_model_info i = mrw_model_get_info(m);
    printf("file         %s\n", path);
    printf("layers       %d\n", i.n_layer);
    printf("n_embd       %d (%d heads of %d)\n", i.n_embd, i.n_head, i.head_size);
    printf("n_ffn        %d\n", i.n_ffn);
    printf("vocab        %d\n", i.n_vocab);
    printf("lora ranks   decay %d, iclr %d, value %d, gate %d\n", i.lora_w, i.lora_a, i.lora_v, i.lora_g);
    printf("parameters   %lld (%.1f M)\n", (long long)i.n_params, i.n_params / 1e6);
    printf("weights      %s, %.1f MiB in memory\n", mrw_dtype_name(i.weight_dtype), i.weight_bytes / 1048576.0);
    mrw_vocab *v = NULL;
    mrw_error e = {0};
    if (mrw_vocab_from_model(m, &v, &e) == MRW_OK) {
        printf("vocabulary   embedded (%d tokens)\n", mrw_vocab_size(v));
        mrw_vocab_free(v);
    }
}

int cmd_info(int argc, char **argv) {
    const char *cmd = "info";
    tool_model_opts mo = {.dtype = MRW_DT_AUTO};
    const char *info_encoder = NULL;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_info_usage);
    const char *o;
    while (tool_next(&a, &o))
        if (o[0] != '-' && !mo.model) mo.model = o;
        else if (!strncmp(o, "--encoder", 9)) info_encoder = tool_value(&a, o);
        else if (!tool_model_option(&a, o, &mo)) tool_unknown(&a, o);
    if (a.failed) return 2;
    if (!mo.model) return tool_fail(cmd, "give the model with -m"), 2;
    if (!mrw_is_modrwkv_file(mo.model)) {
        mrw_model *m = NULL;
        if (tool_load_model(cmd, &mo, &m, NULL)) return 1;
        print_lm(mo.model, m);
        mrw_model_free(m);
        return 0;
    }
    mrw_mm_params p = mrw_mm_params_default();
    p.encoder = info_encoder;
    p.lm.weight_dtype = mo.dtype;
    mrw_mm *mm = NULL;
    mrw_error err = {0};
    if (mrw_mm_load(mo.model, &p, &mm, &err)) return tool_fail(cmd, "%s", err.msg);
    print_lm(mo.model, mrw_mm_model(mm));
    static const char *enc[] = {"none", "SigLIP", "CLIP", "Whisper", "WavLM"};
    const int nmod = mrw_mm_n_modalities(mm);
    if (nmod > 1) printf("modalities   %d (--image and --audio may be mixed)\n", nmod);
    for (int i = 0; i < nmod; i++) {
        mrw_mm_info mi = mrw_mm_modality_info(mm, i);
        if (nmod > 1) printf("[%d] ", i);
        printf("encoder      %s, width %d", enc[mi.encoder], mi.encoder_width);
        if (mi.image_size) printf(", images %dx%d", mi.image_size, mi.image_size);
        if (nmod > 1) printf("\n[%d]", i);
        printf("%sadapter      v%d%s; features %s\n", nmod > 1 ? " " : "\n", mi.adapter_version,
               mi.adapter_audio ? " (audio)" : "",
               mi.splice == MRW_SPLICE_PREPEND ? "prepended to the text" : "written into <|image_pad|> runs");
        if (mi.compress_k)
            printf("%scompression  Conv1D kernel %d stride %d (%s)\n", nmod > 1 ? "    " : "", mi.compress_k,
                   mi.compress_s, mi.compress_trained ? "trained" : "average pooling");
    }
    mrw_mm_free(mm);
    return 0;
}
