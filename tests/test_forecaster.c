/* The ModRWKV forecaster (src/ts/forecaster.h): forecast, loss and every parameter gradient against PyTorch
 * float64 autograd (tests/reference/make_forecaster_fixtures.py: the base configuration, and patch 2 + the
 * linear skip path), central finite differences, the hidden-state entry of RWKV-7 (rwkv7_train.h),
 * batch-size independence, checkpoint round trip, training a few steps, and bad input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "test.h"
#include "train/optim.h"
#include "ts/forecaster.h"

#define FIX "tests/fixtures/forecaster/forecaster.safetensors"
#define FIX2 "tests/fixtures/forecaster/forecaster_patch_skip.safetensors"

static const float *tensor(const mrw_tfile *f, const char *name, size_t n) {
    const mrw_tensor_info *t = mrw_tfile_find(f, name);
    if (!t || t->dtype != MRW_DT_F32 || (size_t)mrw_tensor_numel(t) != n) {
        fprintf(stderr, "fixture tensor %s missing or mis-shaped\n", name);
        return NULL;
    }
    return (const float *)t->data;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *ref_max) {
    double m = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        m = d > m ? d : m;
        r = fabs(b[i]) > r ? fabs(b[i]) : r;
    }
    if (ref_max) *ref_max = r;
    return m;
}

static uint64_t rs = 12345;
static uint64_t rnd(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return rs;
}

/* Central differences of the loss on random entries (up to per_set per set) whose analytical gradient is at
 * least 5% of the set's largest: returns the count, *worst the largest relative error. Expects the gradients
 * of the current weights in the sets (a forward + backward just done). */
static int fd_check(mrw_forecaster *f, const float *x, const float *y, int B, int per_set, float rel_eps, double *worst) {
    mrw_error err = {0};
    mrw_param_set *sets[4];
    const int ns = mrw_forecaster_sets(f, sets);
    int n_fd = 0;
    *worst = 0;
    for (int s = 0; s < ns; s++) {
        if (!sets[s]->total) continue; /* a frozen Timer: no encoder tensor */
        float *g0 = malloc(sets[s]->total * sizeof(float));
        memcpy(g0, sets[s]->g, sets[s]->total * sizeof(float));
        double gmax = 0;
        for (size_t j = 0; j < sets[s]->total; j++) gmax = fabs(g0[j]) > gmax ? fabs(g0[j]) : gmax;
        int tried = 0;
        for (int k = 0; k < 400 && tried < per_set; k++) {
            size_t j = (size_t)(rnd() % sets[s]->total);
            if (fabs(g0[j]) < 0.05 * gmax) continue; /* FD in fp32 resolves the larger entries */
            float w0 = sets[s]->w[j];
            const float eps = rel_eps * (fabsf(w0) > 1 ? fabsf(w0) : 1);
            double lp, lm;
            sets[s]->w[j] = w0 + eps;
            mrw_forecaster_forward(f, x, y, B, NULL, &lp, &err);
            sets[s]->w[j] = w0 - eps;
            mrw_forecaster_forward(f, x, y, B, NULL, &lm, &err);
            sets[s]->w[j] = w0;
            const double fd = (lp - lm) / ((double)(w0 + eps) - (double)(w0 - eps));
            const double rel = fabs(fd - g0[j]) / fabs(g0[j]);
            *worst = rel > *worst ? rel : *worst;
            if (getenv("FD_DEBUG") && rel > 1e-2) fprintf(stderr, "set %d [%zu]: fd %g grad %g\n", s, j, fd, g0[j]);
            tried++, n_fd++;
        }
        free(g0);
    }
    return n_fd;
}

/* Forecast, loss and every gradient of a fixture's forecaster against its PyTorch values; returns the worst
 * relative gradient error. */
static double parity(mrw_forecaster *f, const mrw_tfile *fx, int B, double *e_y) {
    mrw_error err = {0};
    const int L = f->cfg.lookback, H = f->cfg.horizon;
    const float *x = tensor(fx, "x", (size_t)B * L), *y = tensor(fx, "y", (size_t)B * H),
                *yref = tensor(fx, "yhat", (size_t)B * H);
    CHECK(x && y && yref);
    if (!x || !y || !yref) return 1;
    mrw_param_set *sets[4];
    const int ns = mrw_forecaster_sets(f, sets);
    for (int s = 0; s < ns; s++) mrw_param_zero_grad(sets[s]);
    float yhat[64];
    double loss, rm;
    CHECK_OK(mrw_forecaster_forward(f, x, y, B, yhat, &loss, &err), &err);
    *e_y = max_abs_diff(yhat, yref, (size_t)B * H, &rm) / rm;
    CHECK_OK(mrw_forecaster_backward(f, 1.0f, 0, &err), &err);
    double worst = 0;
    int n = 0;
    for (int s = 0; s < ns; s++)
        for (int i = 0; i < sets[s]->n; i++) {
            const mrw_param *p = &sets[s]->p[i];
            char gname[200];
            snprintf(gname, sizeof gname, "grad.%s", p->name);
            const float *g = tensor(fx, gname, p->n);
            CHECKF(g != NULL, "%s", gname);
            if (!g) continue;
            double ref_max, d = max_abs_diff(mrw_param_g(sets[s], i), g, p->n, &ref_max);
            double rel = d / (ref_max > 1e-3 ? ref_max : 1e-3);
            worst = rel > worst ? rel : worst;
            n++;
        }
    CHECK(n > 60);
    return worst;
}

int main(void) {
    mrw_error err = {0};
    mrw_tfile *fx = NULL;
    CHECK_OK(mrw_tfile_open(FIX, &fx, &err), &err);
    if (!fx) TEST_MAIN_END();
    mrw_forecaster *f = NULL;
    CHECK_OK(mrw_forecaster_load(FIX, 3, 1, &f, &err), &err);
    if (!f) TEST_MAIN_END();
    const int B = 3, L = f->cfg.lookback, H = f->cfg.horizon, C = f->cfg.lm.n_embd;
    CHECK(L == 12 && H == 5 && f->cfg.n_prompt == 2 && f->cfg.adapter_scale == 2);
    const float *x = tensor(fx, "x", (size_t)B * L), *y = tensor(fx, "y", (size_t)B * H),
                *yref = tensor(fx, "yhat", (size_t)B * H), *href = tensor(fx, "hidden", (size_t)B * C),
                *lref = tensor(fx, "loss", 1);
    CHECK(x && y && yref && href && lref);
    if (!x || !y || !yref || !href || !lref) TEST_MAIN_END();

    /* ---- forward and gradients vs PyTorch float64 */
    mrw_param_set *sets[4];
    const int ns = mrw_forecaster_sets(f, sets);
    for (int s = 0; s < ns; s++) mrw_param_zero_grad(sets[s]);
    float yhat[15];
    double loss = 0, rm;
    CHECK_OK(mrw_forecaster_forward(f, x, y, B, yhat, &loss, &err), &err);
    double e_h = max_abs_diff(f->hid, href, (size_t)B * C, &rm) / rm;
    double e_y = max_abs_diff(yhat, yref, (size_t)B * H, &rm) / rm;
    double e_l = fabs(loss - lref[0]) / lref[0];
    CHECKF(e_h < 1e-4 && e_y < 1e-4 && e_l < 1e-4, "hidden %.3g forecast %.3g loss %.3g", e_h, e_y, e_l);
    CHECK_OK(mrw_forecaster_backward(f, 1.0f, 0, &err), &err);
    double worst = 0;
    char worst_name[160] = "";
    int n_checked = 0;
    for (int s = 0; s < ns; s++)
        for (int i = 0; i < sets[s]->n; i++) {
            const mrw_param *p = &sets[s]->p[i];
            char gname[200];
            snprintf(gname, sizeof gname, "grad.%s", p->name);
            const float *g = tensor(fx, gname, p->n);
            CHECKF(g != NULL, "%s", gname);
            if (!g) continue;
            double ref_max, d = max_abs_diff(mrw_param_g(sets[s], i), g, p->n, &ref_max);
            double rel = d / (ref_max > 1e-3 ? ref_max : 1e-3); /* all-zero gradients: absolute */
            if (rel > worst) worst = rel, snprintf(worst_name, sizeof worst_name, "%s", p->name);
            n_checked++;
        }
    fprintf(stderr, "vs PyTorch: hidden %.2g, forecast %.2g, loss %.2g; %d gradients, worst %.2g (%s)\n", e_h, e_y,
            e_l, n_checked, worst, worst_name);
    CHECKF(worst < 1e-4, "worst gradient %s: %.3g", worst_name, worst);
    CHECK(n_checked > 60);

    /* ---- central finite differences (fp32 forward, double loss) on random entries of every set */
    {
        double fd_worst;
        int n_fd = fd_check(f, x, y, B, 12, 1e-2f, &fd_worst);
        fprintf(stderr, "finite differences: %d entries, worst relative error %.2g\n", n_fd, fd_worst);
        CHECKF(fd_worst < 5e-3, "finite differences %.3g", fd_worst);
        CHECK(n_fd >= 40);
    }
    /* ---- the same with a large final hidden state (ln_out weight x 12, |h| ~ 30: with an unscaled identity head its softmax rows would be one-hot): the hidden-state path must not depend
     * on the logits' softmax being spread out */
    {
        mrw_param_set *lm = sets[2];
        int iw = mrw_param_find(lm, "llm.ln_out.weight");
        CHECK(iw >= 0);
        float *w = mrw_param_w(lm, iw);
        for (int c = 0; c < C; c++) w[c] *= 12.0f;
        for (int s = 0; s < ns; s++) mrw_param_zero_grad(sets[s]);
        CHECK_OK(mrw_forecaster_forward(f, x, y, B, NULL, &loss, &err), &err);
        double hmax = 0;
        for (int i = 0; i < B * C; i++) hmax = fabs(f->hid[i]) > hmax ? fabs(f->hid[i]) : hmax;
        CHECK_OK(mrw_forecaster_backward(f, 1.0f, 0, &err), &err);
        double fd_worst;
        int n_fd = fd_check(f, x, y, B, 6, 3e-3f, &fd_worst);
        fprintf(stderr, "large hidden state (max |h| %.1f): %d entries, worst relative error %.2g\n", hmax, n_fd,
                fd_worst);
        CHECK(hmax > 20);
        CHECKF(fd_worst < 5e-3, "finite differences with a large hidden state %.3g", fd_worst);
        for (int c = 0; c < C; c++) w[c] /= 12.0f;
    }

    /* ---- patch 2 (lookback 13: 6 tokens, the oldest step left out) and the linear skip path */
    {
        mrw_tfile *fx2 = NULL;
        mrw_forecaster *f2 = NULL;
        CHECK_OK(mrw_tfile_open(FIX2, &fx2, &err), &err);
        CHECK_OK(mrw_forecaster_load(FIX2, 3, 1, &f2, &err), &err);
        if (fx2 && f2) {
            CHECK(f2->cfg.patch == 2 && f2->cfg.skip == 1 && f2->cfg.lookback == 13 && f2->n_tok == 6 &&
                  f2->off == 1 && f2->T == 7);
            double e_y2 = 1, worst2 = parity(f2, fx2, B, &e_y2);
            const float *x2 = tensor(fx2, "x", (size_t)B * 13), *y2 = tensor(fx2, "y", (size_t)B * H);
            double fd_worst = 1;
            int n_fd = x2 && y2 ? fd_check(f2, x2, y2, B, 12, 1e-2f, &fd_worst) : 0;
            fprintf(stderr, "patch 2 + skip vs PyTorch: forecast %.2g, worst gradient %.2g; finite differences: %d "
                    "entries, worst %.2g\n", e_y2, worst2, n_fd, fd_worst);
            CHECKF(e_y2 < 1e-4 && worst2 < 1e-4, "patch+skip: forecast %.3g gradient %.3g", e_y2, worst2);
            CHECKF(n_fd >= 40 && fd_worst < 5e-3, "patch+skip finite differences %.3g (%d)", fd_worst, n_fd);
            /* mrw_forecaster_set_skip, and its refusal without a skip path */
            float ws[5 * 13] = {0};
            CHECK_OK(mrw_forecaster_set_skip(f2, ws, &err), &err);
            CHECK(mrw_forecaster_set_skip(f, ws, &err) == MRW_E_ARG);
        }
        mrw_forecaster_free(f2);
        mrw_tfile_close(fx2);
    }

    /* ---- a frozen Timer encoder (the tiny random Timer of tests/fixtures/timer, patches of 8): the features
     * are Timer's last hidden states of x̂'s most recent patches, gradients reach adapter, RWKV-7 and head only */
    {
        mrw_forecaster_config tc;
        memset(&tc, 0, sizeof tc);
        tc.lookback = 20, tc.horizon = 4, tc.adapter_scale = 2, tc.n_prompt = 1, tc.patch = 1, tc.skip = 1;
        tc.timer = 1, tc.timer_path = "tests/fixtures/timer";
        mrw_forecaster_lm_config(&tc.lm, 1, 32);
        tc.lm.head_size = 16;
        mrw_forecaster *ft = NULL;
        CHECK_OK(mrw_forecaster_new(&tc, 2, 1, &ft, &err), &err);
        if (ft) {
            CHECK(ft->n_tok == 2 && ft->off == 4 && ft->E == 16 && ft->T == 3);
            mrw_forecaster_init(ft, 5);
            mrw_param_set *ts[4];
            mrw_forecaster_sets(ft, ts);
            for (size_t j = 0; j < ts[3]->total; j++) ts[3]->w[j] = 0.1f * sinf((float)j); /* non-zero head/skip */
            /* the reference init's embeddings are ~1e-4, which ln0 scales up ~300x: too curved for finite
             * differences of step 1e-2 on the prompt token's row, so give them an ordinary scale */
            const int ie = mrw_param_find(ts[2], "llm.emb.weight");
            CHECK(ie >= 0);
            for (int64_t j = 0; ie >= 0 && j < ts[2]->p[ie].n; j++) mrw_param_w(ts[2], ie)[j] = 0.5f * sinf(0.37f * j);
            float xt[40], yt[8];
            for (int i = 0; i < 40; i++) xt[i] = sinf(0.7f * i) + 0.05f * i;
            for (int i = 0; i < 8; i++) yt[i] = cosf(0.3f * i);
            for (int q = 0; q < 4; q++) mrw_param_zero_grad(ts[q]);
            double lt;
            CHECK_OK(mrw_forecaster_forward(ft, xt, yt, 2, NULL, &lt, &err), &err);
            /* the adapter's input = mrw_timer_forward of the second window's x̂ */
            float ref[2 * 16];
            CHECK_OK(mrw_timer_forward(ft->timer, 1, ft->xn + 20, 20, ref, NULL, &err), &err);
            CHECK(max_abs_diff(ft->feat + 2 * 16, ref, 32, NULL) == 0);
            CHECK_OK(mrw_forecaster_backward(ft, 1.0f, 0, &err), &err);
            CHECK(ts[0]->n == 0); /* no trained encoder tensor */
            double fdw;
            int nfd = fd_check(ft, xt, yt, 2, 12, 1e-2f, &fdw);
            fprintf(stderr, "Timer encoder: finite differences %d entries, worst %.2g\n", nfd, fdw);
            CHECKF(nfd >= 20 && fdw < 5e-3, "Timer forecaster finite differences %.3g (%d)", fdw, nfd);
            /* checkpoint: refers to the Timer directory */
            char path[256];
            snprintf(path, sizeof path, "/tmp/test_forecaster_timer_%ld.safetensors", (long)getpid());
            CHECK_OK(mrw_forecaster_save(ft, path, NULL, NULL, 0, &err), &err);
            mrw_forecaster *g = NULL;
            CHECK_OK(mrw_forecaster_load(path, 2, 1, &g, &err), &err);
            if (g) {
                float y1[8], y2[8];
                CHECK_OK(mrw_forecaster_forward(ft, xt, NULL, 2, y1, NULL, &err), &err);
                CHECK_OK(mrw_forecaster_forward(g, xt, NULL, 2, y2, NULL, &err), &err);
                CHECK(g->timer && max_abs_diff(y1, y2, 8, NULL) == 0);
                mrw_forecaster_free(g);
            }
            unlink(path);
            mrw_forecaster_free(ft);
        }
        tc.patch = 2;
        CHECK(mrw_forecaster_new(&tc, 2, 1, &ft, &err) == MRW_E_ARG && !ft);
        tc.patch = 1, tc.lookback = 6;
        CHECK(mrw_forecaster_new(&tc, 2, 1, &ft, &err) == MRW_E_ARG && strstr(err.msg, "Timer patch"));
        tc.lookback = 20, tc.timer_path = "/nonexistent/timer";
        CHECK(mrw_forecaster_new(&tc, 2, 1, &ft, &err) != MRW_OK && !ft);
    }

    /* ---- the RWKV-7 hidden-state entry: a backward needs its forward; a model without logits refuses the
     * cross-entropy forward */
    {
        float *dh = calloc((size_t)B * f->T * C, sizeof *dh);
        CHECK_OK(mrw_forecaster_forward(f, x, NULL, B, NULL, NULL, &err), &err);
        CHECK_OK(mrw_rwkv7_train_backward_hidden(f->lm, dh, 1, NULL, &err), &err);
        CHECK(mrw_rwkv7_train_backward_hidden(f->lm, dh, 1, NULL, &err) == MRW_E_ARG); /* one per forward */
        free(dh);
        int32_t tok[2] = {0, 0}, tg[2] = {1, 1};
        CHECK(isnan(mrw_rwkv7_train_forward(f->lm, tok, NULL, NULL, tg, 1, 2, NULL)));
        CHECK(mrw_rwkv7_train_forward_hidden(f->lm, tok, NULL, NULL, 1, 1000, NULL, &err) == MRW_E_ARG);
    }

    /* ---- a smaller batch gives the same forecast as the same windows in a larger one */
    {
        float y1[5];
        CHECK_OK(mrw_forecaster_forward(f, x + L, NULL, 1, y1, NULL, &err), &err);
        double d = max_abs_diff(y1, yref + H, (size_t)H, &rm) / rm;
        CHECKF(d < 1e-4, "batch of one vs batch of three: %.3g", d);
    }

    /* ---- checkpoint round trip */
    {
        char path[256];
        snprintf(path, sizeof path, "/tmp/test_forecaster_%ld.safetensors", (long)getpid());
        const char *k[1] = {"modrwkv.forecaster.note"}, *v[1] = {"test"};
        CHECK_OK(mrw_forecaster_save(f, path, k, v, 1, &err), &err);
        mrw_forecaster *g = NULL;
        CHECK_OK(mrw_forecaster_load(path, 2, 1, &g, &err), &err);
        if (g) {
            float y2[10];
            CHECK_OK(mrw_forecaster_forward(g, x, NULL, 2, y2, NULL, &err), &err);
            CHECK(max_abs_diff(y2, yref, 10, &rm) / rm < 1e-4);
            mrw_forecaster_free(g);
        }
        unlink(path);
    }

    /* ---- a few Adam steps on the fixture's batch lower the loss */
    {
        mrw_adam opt;
        mrw_adam_config ac = mrw_adam_config_default();
        CHECK_OK(mrw_adam_init(&opt, &ac, sets, ns, MRW_PG_ENCODER | MRW_PG_ADAPTER | MRW_PG_RWKV, &err), &err);
        double l0 = 0, l1 = 0;
        for (int it = 0; it < 30; it++) {
            mrw_adam_zero_grad(&opt);
            double l;
            CHECK_OK(mrw_forecaster_forward(f, x, y, B, NULL, &l, &err), &err);
            CHECK_OK(mrw_forecaster_backward(f, 1.0f, 0, &err), &err);
            mrw_clip_grad_norm(&opt, 1.0);
            mrw_adam_step(&opt, 3e-3);
            if (!it) l0 = l;
            l1 = l;
        }
        fprintf(stderr, "30 Adam steps: loss %.4f -> %.4f\n", l0, l1);
        CHECK(l1 < 0.5 * l0);
        mrw_adam_free(&opt);
    }

    /* ---- bad input */
    {
        float xb[36];
        memcpy(xb, x, sizeof xb);
        xb[7] = NAN;
        CHECK(mrw_forecaster_forward(f, xb, NULL, B, NULL, NULL, &err) == MRW_E_ARG && strstr(err.msg, "finite"));
        CHECK(mrw_forecaster_forward(f, x, NULL, 4, NULL, NULL, &err) == MRW_E_ARG);
        CHECK(mrw_forecaster_backward(f, 1.0f, 0, &err) == MRW_E_ARG); /* no forward with targets */
        mrw_forecaster_config c;
        const char *bad[] = {"", "lookback=12", "lookback=12,horizon=5,prompt=2,scale=2,enc=3/4/5/6/3,lm=2/32/16/1/64/8/8/8/8",
                             "lookback=12,horizon=5,prompt=2,scale=2,enc=3/4/5/6/3,lm=2/32/16/32/64/8/8/8/8,patch=13,skip=0",
                             "lookback=12,horizon=5,prompt=2,scale=2,enc=3/4/5/6/3,lm=2/32/16/32/64/8/8/8/8,patch=2,skip=2",
                             "lookback=12,horizon=5,prompt=2,scale=2,enc=3/4/5/6/3,lm=2/32/16/32/64/8/8/8/8,patch=2",
                             "lookback=12,horizon=5,prompt=2,scale=2,enc=0/0/0/0/0,lm=2/32/16/32/64/8/8/8/8,patch=2,skip=1,timer=1",
                             "lookback=12,horizon=5,prompt=2,scale=2,enc=3/4/5/6/3,lm=2/32/16/32/64/8/8/8/8,patch=1,skip=1,timer=2",
                             "lookback=12,horizon=5,prompt=2,scale=2,enc=3/4/5/6/3,lm=2/32/16/32/64/8/8/8/8x",
                             "lookback=-1,horizon=5,prompt=2,scale=2,enc=3/4/5/6/3,lm=2/32/16/32/64/8/8/8/8"};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
            CHECKF(mrw_forecaster_config_parse(bad[i], strlen(bad[i]), &c, &err) != MRW_OK, "accepted '%s'", bad[i]);
        const char *old = "lookback=12,horizon=5,prompt=2,scale=2,enc=3/4/5/6/3,lm=2/32/16/32/64/8/8/8/8",
                   *good = "lookback=12,horizon=5,prompt=2,scale=2,enc=3/4/5/6/3,lm=2/32/16/32/64/8/8/8/8,patch=4,skip=1",
                   *tmr = "lookback=12,horizon=5,prompt=2,scale=2,enc=0/0/0/0/0,lm=2/32/16/32/64/8/8/8/8,patch=1,skip=1,timer=1";
        CHECK_OK(mrw_forecaster_config_parse(tmr, strlen(tmr), &c, &err), &err);
        CHECK(c.timer == 1);
        CHECK_OK(mrw_forecaster_config_parse(old, strlen(old), &c, &err), &err);
        CHECK(c.patch == 1 && c.skip == 0);
        CHECK_OK(mrw_forecaster_config_parse(good, strlen(good), &c, &err), &err);
        char buf[256];
        mrw_forecaster_config_format(&c, buf, sizeof buf);
        CHECK(!strcmp(buf, good));
        mrw_forecaster *g = NULL;
        CHECK(mrw_forecaster_load("tests/fixtures/wavenet/model.safetensors", 1, 1, &g, &err) == MRW_E_FORMAT &&
              strstr(err.msg, "not a forecaster"));
        CHECK(mrw_forecaster_load("/nonexistent/x.safetensors", 1, 1, &g, &err) != MRW_OK && !g);
    }
    mrw_forecaster_free(f);
    mrw_tfile_close(fx);
    TEST_MAIN_END();
}
