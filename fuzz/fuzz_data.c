/* libFuzzer harness for the training-data readers: the input's first byte picks the options (record kind,
 * shuffle, ctx_len, a small record-size limit), the rest is written to a file in a private temporary directory
 * (which also holds media/cat.png, dog.jpg, one.wav, two.wav so that LLaVA and audio records can be good) and
 * read through mrw_data_open / mrw_data_next / tell / seek, and through mrw_csv_read. A rejected input must
 * come with a message; an accepted sample must be consistent (token ids in the vocabulary, labels next
 * tokens or MRW_IGNORE, media inside the sequence and present on disk); warnings must be non-empty. */
#define _GNU_SOURCE
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/data.h"
#include "train/rwkv7_train.h"

static char g_dir[64];
static char g_file[128];
static mrw_vocab *g_vocab;

static void cleanup(void) {
    static const char *names[] = {"media/cat.png", "media/dog.jpg", "media/one.wav", "media/two.wav", "media", "in.data"};
    char p[256];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, names[i]);
        if (unlink(p) != 0) rmdir(p);
    }
    rmdir(g_dir);
    mrw_vocab_free(g_vocab);
}

static int setup(void) {
    if (g_vocab) return 0;
    strcpy(g_dir, "/tmp/mrw_fuzz_data_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    char p[256];
    snprintf(p, sizeof p, "%s/media", g_dir);
    mkdir(p, 0755);
    static const char *media[] = {"cat.png", "dog.jpg", "one.wav", "two.wav"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/media/%s", g_dir, media[i]);
        FILE *fp = fopen(p, "wb");
        if (fp) fclose(fp);
    }
    snprintf(g_file, sizeof g_file, "%s/in.data", g_dir);
    g_vocab = mrw_vocab_new_bytes();
    atexit(cleanup);
    return g_vocab ? 0 : -1;
}

static void on_warn(void *user, const char *msg) {
    if (!msg || !msg[0]) __builtin_trap();
    ++*(int *)user;
}

static void check_sample(const mrw_data_sample *s, int64_t count) {
    int nv = mrw_vocab_size(g_vocab);
    if (s->n < 0 || s->n_media < 0 || s->n_media > MRW_DATA_MAX_MEDIA) __builtin_trap();
    if (s->index < 0 || s->index >= count || !s->file || s->line < 1) __builtin_trap();
    for (int i = 0; i < s->n; i++) {
        if (s->tokens[i] < 0 || s->tokens[i] >= nv) __builtin_trap();
        if (s->labels[i] != MRW_IGNORE && (s->labels[i] < 0 || s->labels[i] >= nv)) __builtin_trap();
        if (i + 1 < s->n && s->labels[i] != MRW_IGNORE && s->labels[i] != s->tokens[i + 1]) __builtin_trap();
    }
    for (int j = 0; j < s->n_media; j++) {
        struct stat st;
        if (s->media_pos[j] < 0 || s->media_pos[j] > s->n || (j && s->media_pos[j] < s->media_pos[j - 1]))
            __builtin_trap();
        if (!s->media_path[j] || stat(s->media_path[j], &st) != 0) __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || setup() != 0) return 0;
    uint8_t opt = data[0];
    FILE *fp = fopen(g_file, "wb");
    if (!fp) return 0;
    fwrite(data + 1, 1, size - 1, fp);
    fclose(fp);

    int n_warn = 0;
    mrw_data_params p;
    memset(&p, 0, sizeof p);
    p.kind = (mrw_data_kind)(opt & 3);
    p.shuffle = (opt >> 2) & 1;
    p.ctx_len = (opt >> 3) & 7 ? 2 + 5 * ((opt >> 3) & 7) : 0;
    p.max_record_bytes = (opt & 0x40) ? 64 : 0;
    p.seed = opt;
    p.vocab = g_vocab;
    p.warn = on_warn;
    p.warn_user = &n_warn;
    const char *paths[] = {g_file};
    mrw_data *d = NULL;
    mrw_error err;
    memset(&err, 0, sizeof err);
    if (mrw_data_open(paths, 1, &p, &d, &err) != MRW_OK) {
        if (d || !err.msg[0]) __builtin_trap();
    } else {
        int64_t count = mrw_data_count(d);
        if (count < 1) __builtin_trap();
        int64_t steps = count * 2 + 2 < 64 ? count * 2 + 2 : 64;
        int64_t e0 = 0, k0 = 0, first_after = -1;
        for (int64_t i = 0; i < steps; i++) {
            if (i == steps / 2) mrw_data_tell(d, &e0, &k0);
            mrw_data_sample s;
            if (mrw_data_next(d, &s, &err) != MRW_OK) {
                if (!err.msg[0]) __builtin_trap();
                break;
            }
            check_sample(&s, count);
            if (i == steps / 2) first_after = s.index;
        }
        /* resume at the remembered position gives the same record */
        if (first_after >= 0) {
            mrw_data_sample s;
            if (mrw_data_seek(d, e0, k0, &err) != MRW_OK) __builtin_trap();
            if (mrw_data_next(d, &s, &err) == MRW_OK && s.index != first_after) __builtin_trap();
        }
        mrw_data_free(d);
    }

    /* the same bytes as a CSV series */
    mrw_csv_series cs;
    const char *cols[] = {"a", "b"};
    for (int pass = 0; pass < 2; pass++) {
        memset(&err, 0, sizeof err);
        if (mrw_csv_read(g_file, pass ? cols : NULL, pass ? 2 : 0, &cs, &err) != MRW_OK) {
            if (cs.values || !err.msg[0]) __builtin_trap();
            continue;
        }
        if (cs.n_cols < 1 || cs.n_rows < 1) __builtin_trap();
        for (int64_t i = 0; i < (int64_t)cs.n_cols * cs.n_rows; i++)
            if (!isfinite(cs.values[i])) __builtin_trap();
        mrw_csv_series_free(&cs);
    }
    return 0;
}
