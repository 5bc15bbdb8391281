/* Checkpoints: model and resume files round-trip bit for bit, mismatches are clear errors, and a crash in the
 * middle of a save (MRW_TRAIN_CRASH_IN_SAVE) leaves the previous file intact. */
#include "test.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "train/checkpoint.h"

static void make_sets(mrw_param_set *a, mrw_param_set *b, float base) {
    memset(a, 0, sizeof *a), memset(b, 0, sizeof *b);
    int64_t s1[2] = {4, 3}, s2[1] = {5}, s3[3] = {1, 1, 6};
    mrw_param_add(a, "llm.blocks.0.att.key.weight", MRW_PG_RWKV, 0, 2, s1);
    mrw_param_add(a, "llm.blocks.0.att.x_r", MRW_PG_RWKV, 1, 3, s3);
    mrw_param_add(b, "proj.mlp.0.weight", MRW_PG_ADAPTER, 0, 2, s1);
    mrw_param_add(b, "proj.mlp.0.bias", MRW_PG_ADAPTER, 1, 1, s2);
    mrw_error err = {0};
    CHECK_OK(mrw_param_set_alloc(a, &err), &err);
    CHECK_OK(mrw_param_set_alloc(b, &err), &err);
    for (size_t i = 0; i < a->total; i++) a->w[i] = base + 0.1f * (float)i, a->g[i] = 0.01f * (float)i;
    for (size_t i = 0; i < b->total; i++) b->w[i] = -base - 0.3f * (float)i, b->g[i] = -0.02f * (float)i;
}

static int same_floats(const float *x, const float *y, size_t n) { return !memcmp(x, y, n * sizeof(float)); }

/* The tensors' weights (not the alignment padding between them) are bit-identical. */
static int same_w(const mrw_param_set *x, const mrw_param_set *y) {
    for (int i = 0; i < x->n; i++)
        if (!same_floats(mrw_param_w(x, i), mrw_param_w(y, i), x->p[i].n)) return 0;
    return 1;
}

int main(void) {
    char dir[] = "/tmp/mrw_ckpt_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char model[256], resume[256], cmd[300];
    snprintf(model, sizeof model, "%s/model.safetensors", dir);
    snprintf(resume, sizeof resume, "%s/resume.safetensors", dir);
    mrw_error err = {0};

    mrw_param_set a, b;
    make_sets(&a, &b, 1.0f);
    mrw_param_set *sets[2] = {&a, &b};
    mrw_adam o;
    mrw_adam_config cfg = mrw_adam_config_default();
    CHECK_OK(mrw_adam_init(&o, &cfg, sets, 2, MRW_PG_ADAPTER, &err), &err);
    mrw_clip_grad_norm(&o, 1.0);
    mrw_adam_step(&o, 1e-3);
    mrw_adam_step(&o, 1e-3);

    /* model file: loads back bit for bit, metadata and extra tensors go in */
    const float extra_data[3] = {1, 2, 3};
    mrw_tensor_info extra = {.name = "encoder.model.x", .dtype = MRW_DT_F32, .ndim = 1, .shape = {3},
                             .data = extra_data, .nbytes = sizeof extra_data};
    const char *keys[1] = {"modrwkv.train.step"}, *vals[1] = {"2"};
    CHECK_OK(mrw_ckpt_save_model(model, sets, 2, NULL, &extra, 1, keys, vals, 1, &err), &err);
    mrw_param_set a2, b2;
    make_sets(&a2, &b2, 5.0f);
    mrw_param_set *sets2[2] = {&a2, &b2};
    int nl = 0;
    CHECK_OK(mrw_ckpt_load_weights(model, sets2, 2, 0, &nl, &err), &err);
    CHECK(nl == 4);
    CHECK(same_w(&a, &a2) && same_w(&b, &b2));
    mrw_tfile *f;
    CHECK_OK(mrw_tfile_open(model, &f, &err), &err);
    if (f) {
        const mrw_meta *m = mrw_tfile_find_meta(f, "modrwkv.train.step");
        CHECK(m && m->v.s.len == 1 && m->v.s.ptr[0] == '2');
        CHECK(mrw_tfile_find_meta(f, "format") != NULL);
        CHECK(mrw_tfile_find(f, "encoder.model.x") != NULL);
        const mrw_tensor_info *t = mrw_tfile_find(f, "llm.blocks.0.att.x_r");
        CHECK(t && t->ndim == 3 && t->shape[2] == 6);
        mrw_tfile_close(f);
    }

    /* resume: weights, moments, t and the state round-trip */
    mrw_train_state st = {.step = 2, .epoch = 1, .k = 17, .rng = 0xfedcba9876543210ull, .tokens = 12345,
                          .elapsed_s = 1.25, .options = "{\"lr\":0.001}"};
    CHECK_OK(mrw_ckpt_save_resume(resume, &o, &st, &err), &err);
    mrw_adam o2;
    CHECK_OK(mrw_adam_init(&o2, &cfg, sets2, 2, MRW_PG_ADAPTER, &err), &err);
    for (size_t i = 0; i < a2.total; i++) a2.w[i] = 99;
    mrw_train_state st2;
    CHECK_OK(mrw_ckpt_load_resume(resume, &o2, &st2, &err), &err);
    CHECK(o2.t == 2 && st2.step == 2 && st2.epoch == 1 && st2.k == 17 && st2.rng == 0xfedcba9876543210ull &&
          st2.tokens == 12345 && st2.elapsed_s == 1.25);
    CHECK(st2.options && !strcmp(st2.options, "{\"lr\":0.001}"));
    free((char *)st2.options);
    CHECK(o2.n_moment == o.n_moment && same_floats(o.m, o2.m, o.n_moment) && same_floats(o.v, o2.v, o.n_moment));
    CHECK(same_w(&a, &a2) && same_w(&b, &b2));
    /* the next step is the same on both */
    mrw_adam_step(&o, 5e-4);
    mrw_adam_step(&o2, 5e-4);
    CHECK(same_w(&b, &b2));

    /* errors: another selection, a model file given as resume, a different shape, garbage */
    mrw_adam o3;
    CHECK_OK(mrw_adam_init(&o3, &cfg, sets2, 2, MRW_PG_ADAPTER | MRW_PG_RWKV, &err), &err);
    CHECK(mrw_ckpt_load_resume(resume, &o3, &st2, &err) == MRW_E_ARG);
    CHECK(strstr(err.msg, "--train") != NULL);
    CHECK(mrw_ckpt_load_resume(model, &o3, &st2, &err) == MRW_E_FORMAT);
    CHECK(strstr(err.msg, "not a modrwkv resume file") != NULL);
    mrw_adam_free(&o3);
    mrw_param_set c = {0};
    int64_t wrong[2] = {3, 4};
    mrw_param_add(&c, "proj.mlp.0.weight", MRW_PG_ADAPTER, 0, 2, wrong);
    CHECK_OK(mrw_param_set_alloc(&c, &err), &err);
    mrw_param_set *csets[1] = {&c};
    CHECK(mrw_ckpt_load_weights(model, csets, 1, 0, NULL, &err) == MRW_E_SHAPE);
    CHECK(strstr(err.msg, "proj.mlp.0.weight") && strstr(err.msg, "[4,3]"));
    mrw_param_set_free(&c);
    int64_t one = 2;
    mrw_param_add(&c, "proj.nope", MRW_PG_ADAPTER, 0, 1, &one);
    CHECK_OK(mrw_param_set_alloc(&c, &err), &err);
    CHECK(mrw_ckpt_load_weights(model, csets, 1, 0, NULL, &err) == MRW_E_MISSING);
    CHECK(mrw_ckpt_load_weights(model, csets, 1, 1, &nl, &err) == MRW_OK && nl == 0);
    mrw_param_set_free(&c);
    char junk[256];
    snprintf(junk, sizeof junk, "%s/junk.safetensors", dir);
    FILE *jf = fopen(junk, "wb");
    if (jf) { fputs("not a checkpoint at all", jf); fclose(jf); }
    CHECK(mrw_ckpt_load_resume(junk, &o2, &st2, &err) != MRW_OK);

    /* a crash between writing and replacing leaves the old resume file as it was */
    size_t len0 = 0, len1 = 0;
    unsigned char *before = t_read_file(resume, &len0);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("MRW_TRAIN_CRASH_IN_SAVE", "1", 1);
        mrw_train_state st3 = st;
        st3.step = 3;
        mrw_ckpt_save_resume(resume, &o, &st3, NULL);
        _exit(0); /* not reached */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    unsigned char *after = t_read_file(resume, &len1);
    CHECK(before && after && len0 == len1 && !memcmp(before, after, len0));
    free(before), free(after);
    CHECK_OK(mrw_ckpt_load_resume(resume, &o2, &st2, &err), &err);
    CHECK(st2.step == 2);
    free((char *)st2.options);

    mrw_adam_free(&o), mrw_adam_free(&o2);
    mrw_param_set_free(&a), mrw_param_set_free(&b), mrw_param_set_free(&a2), mrw_param_set_free(&b2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
    TEST_MAIN_END();
}
