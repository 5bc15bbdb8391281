/* Adam/AdamW + gradient clipping against torch (tests/fixtures/optim, tests/reference/make_optim_fixtures.py)
 * and the learning-rate schedules against their closed forms. */
#include "test.h"

#include "train/optim.h"
#include "train/schedule.h"

static const char *FIX = "tests/fixtures/optim/optim.safetensors";

static float *rd(const char *name, size_t *n) {
    float *d = NULL;
    size_t k = 0;
    int64_t shape[8];
    int nd;
    mrw_error err = {0};
    if (mrw_read_tensor_f32(FIX, name, &d, &k, shape, &nd, &err) != MRW_OK) {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        return NULL;
    }
    if (n) *n = k;
    return d;
}

/* Relative error of a tensor: max |a-b| / max |b| (element-wise ratios blow up where a moment is a
 * near-cancelling sum, e.g. g + wd*w, and say nothing about the optimizer). */
static double max_rel(const float *a, const float *b, size_t n) {
    double m = 0, scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return m / scale;
}

static void torch_case(int c, int decoupled, double wd, double clip) {
    static const int64_t shapes[3][3] = {{7, 5, 0}, {5, 0, 0}, {3, 4, 2}};
    static const int ndims[3] = {2, 1, 3};
    mrw_param_set ps = {0};
    mrw_error err = {0};
    char name[64];
    /* A frozen tensor in another group sits between them: it must not count or move. */
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "p%d", i);
        CHECK(mrw_param_add(&ps, name, MRW_PG_RWKV, i == 1, ndims[i], shapes[i]) == 2 * i);
        int64_t fs = 3;
        snprintf(name, sizeof name, "frozen%d", i);
        CHECK(mrw_param_add(&ps, name, MRW_PG_ENCODER, 0, 1, &fs) == 2 * i + 1);
    }
    CHECK_OK(mrw_param_set_alloc(&ps, &err), &err);
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "c%d.p%d.init", c, i);
        size_t n;
        float *d = rd(name, &n);
        CHECK(d && n == ps.p[2 * i].n);
        if (d) memcpy(mrw_param_w(&ps, 2 * i), d, n * sizeof(float));
        free(d);
        for (int j = 0; j < 3; j++) mrw_param_w(&ps, 2 * i + 1)[j] = 7.0f + j;
    }
    mrw_adam_config cfg = mrw_adam_config_default();
    cfg.weight_decay = wd;
    cfg.decoupled = decoupled;
    mrw_adam o;
    mrw_param_set *sets[1] = {&ps};
    CHECK_OK(mrw_adam_init(&o, &cfg, sets, 1, MRW_PG_RWKV | MRW_PG_ADAPTER, &err), &err);
    CHECK(o.n_moment == 35 + 5 + 24);
    snprintf(name, sizeof name, "c%d.norm", c);
    float *norms = rd(name, NULL);
    for (int s = 0; s < 5; s++) {
        mrw_adam_zero_grad(&o);
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "c%d.p%d.grad%d", c, i, s);
            size_t n;
            float *d = rd(name, &n);
            if (d) memcpy(mrw_param_g(&ps, 2 * i), d, n * sizeof(float));
            free(d);
            for (int j = 0; j < 3; j++) mrw_param_g(&ps, 2 * i + 1)[j] = 100.0f; /* must not count */
        }
        double norm = mrw_clip_grad_norm(&o, clip);
        if (norms) CHECKF(fabs(norm - norms[s]) <= 1e-6 * norms[s], "case %d step %d norm %.9g vs torch %.9g", c, s,
                          norm, (double)norms[s]);
        mrw_adam_step(&o, 1e-2 * (1 + s) / 5);
    }
    CHECK(o.t == 5);
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        const char *what[3] = {"final", "exp_avg", "exp_avg_sq"};
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "c%d.p%d.%s", c, i, what[k]);
            size_t n;
            float *want = rd(name, &n);
            if (!want) { CHECK(0); continue; }
            const float *got = k == 0 ? mrw_param_w(&ps, 2 * i) : (k == 1 ? o.m : o.v) + o.moff[0][2 * i];
            double r = max_rel(got, want, n);
            if (r > worst) worst = r;
            CHECKF(r <= 1e-6, "case %d %s: max rel err %.3g", c, name, r);
            free(want);
        }
        for (int j = 0; j < 3; j++) CHECK(mrw_param_w(&ps, 2 * i + 1)[j] == 7.0f + j);
    }
    fprintf(stderr, "case %d: max relative error vs torch %.3g\n", c, worst);
    free(norms);
    mrw_adam_free(&o);
    mrw_param_set_free(&ps);
}

static void schedules(void) {
    mrw_schedule s = {.kind = MRW_SCHED_COSINE, .lr = 1e-3, .lr_final = 1e-5, .warmup = 10, .total = 110};
    CHECK_NEAR(mrw_schedule_lr(&s, 0), 1e-4, 1e-15);
    CHECK_NEAR(mrw_schedule_lr(&s, 9), 1e-3, 1e-15);
    CHECK_NEAR(mrw_schedule_lr(&s, 10), 1e-3, 1e-15);
    CHECK_NEAR(mrw_schedule_lr(&s, 109), 1e-5, 1e-15);
    CHECK_NEAR(mrw_schedule_lr(&s, 500), 1e-5, 1e-15);
    /* midpoint of the cosine: (10 + 109) / 2 */
    double mid = 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + cos(M_PI * 49.0 / 99));
    CHECK_NEAR(mrw_schedule_lr(&s, 59), mid, 1e-15);
    for (int64_t k = 11; k < 110; k++) CHECK(mrw_schedule_lr(&s, k) <= mrw_schedule_lr(&s, k - 1));
    s.kind = MRW_SCHED_WSD; /* 100 post-warmup steps, 20 decaying: 90..109 */
    CHECK_NEAR(mrw_schedule_lr(&s, 89), 1e-3, 1e-15);
    CHECK_NEAR(mrw_schedule_lr(&s, 90), 1e-3 + (1e-5 - 1e-3) / 20, 1e-15);
    CHECK_NEAR(mrw_schedule_lr(&s, 109), 1e-5, 1e-15);
    CHECK_NEAR(mrw_schedule_lr(&s, 200), 1e-5, 1e-15);
    s.kind = MRW_SCHED_CONSTANT;
    CHECK_NEAR(mrw_schedule_lr(&s, 100), 1e-3, 1e-15);
    s.warmup = 0;
    s.kind = MRW_SCHED_COSINE;
    CHECK_NEAR(mrw_schedule_lr(&s, 0), 1e-3, 1e-15);
    mrw_sched_kind k;
    CHECK(mrw_schedule_parse("wsd", &k) == 0 && k == MRW_SCHED_WSD);
    CHECK(mrw_schedule_parse("linear", &k) == -1);
}

static void bad_args(void) {
    mrw_param_set ps = {0};
    int64_t n = 4;
    mrw_param_add(&ps, "a", MRW_PG_RWKV, 0, 1, &n);
    mrw_adam o;
    mrw_error err = {0};
    mrw_param_set *sets[1] = {&ps};
    mrw_adam_config cfg = mrw_adam_config_default();
    CHECK(mrw_adam_init(&o, &cfg, sets, 1, MRW_PG_RWKV, &err) == MRW_E_ARG); /* not allocated */
    CHECK_OK(mrw_param_set_alloc(&ps, &err), &err);
    cfg.beta2 = 1.0;
    CHECK(mrw_adam_init(&o, &cfg, sets, 1, MRW_PG_RWKV, &err) == MRW_E_ARG);
    cfg = mrw_adam_config_default();
    /* clip below the threshold leaves gradients bit-identical */
    CHECK_OK(mrw_adam_init(&o, &cfg, sets, 1, MRW_PG_RWKV, &err), &err);
    for (int i = 0; i < 4; i++) ps.g[i] = 0.1f * (i + 1);
    double nrm = mrw_clip_grad_norm(&o, 1.0);
    CHECK_NEAR(nrm, sqrt(0.01 + 0.04 + 0.09 + 0.16), 1e-7);
    CHECK(ps.g[3] == 0.4f);
    mrw_adam_free(&o);
    mrw_param_set_free(&ps);
}

int main(void) {
    torch_case(0, 0, 0.0, 1.0);
    torch_case(1, 1, 0.1, 1.0);
    torch_case(2, 0, 0.05, 0.5);
    schedules();
    bad_args();
    TEST_MAIN_END();
}
