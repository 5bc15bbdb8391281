/* Timer encoder (src/ts/timer.c, thuml/timer-base-84m layout): forward parity on random weights against the
 * PyTorch reference of tests/reference/make_timer_fixtures.py, and load errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "test.h"
#include "ts/timer.h"

static void test_parity(void) {
    mrw_error err = {0};
    mrw_timer *t = NULL;
    CHECK_OK(mrw_timer_open("tests/fixtures/timer", 0, &t, &err), &err);
    mrw_tfile *g = NULL;
    CHECK_OK(mrw_tfile_open("tests/fixtures/timer/golden.safetensors", &g, &err), &err);
    if (!t || !g) goto done;
    const mrw_timer_config *c = mrw_timer_get_config(t);
    CHECK(c->hidden == 16 && c->heads == 2 && c->layers == 2 && c->intermediate == 24 && c->patch == 8 &&
          c->out_len == 8);
    const mrw_tensor_info *ti = mrw_tfile_find(g, "input"), *th = mrw_tfile_find(g, "hidden"),
                          *tp = mrw_tfile_find(g, "pred");
    CHECK(ti && th && tp);
    if (!ti || !th || !tp) goto done;
    int64_t T = ti->shape[0];
    int N = mrw_timer_patches(t, T);
    CHECK(N == 5 && th->shape[0] == 5);
    float *out = malloc((size_t)N * c->hidden * sizeof *out), pred[8];
    CHECK_OK(mrw_timer_forward(t, 2, ti->data, T, out, pred, &err), &err);
    double eh = 0, ep = 0;
    const float *rh = th->data, *rp = tp->data;
    for (int i = 0; i < N * c->hidden; i++) eh = fmax(eh, fabs(out[i] - rh[i]));
    for (int i = 0; i < 8; i++) ep = fmax(ep, fabs(pred[i] - rp[i]));
    CHECKF(eh <= 1e-4, "hidden max err %g", eh);
    CHECKF(ep <= 1e-4, "pred max err %g", ep);
    fprintf(stderr, "timer parity: hidden %.2g, pred %.2g\n", eh, ep);
    /* errors: too short, non-finite input */
    CHECK(mrw_timer_forward(t, 1, ti->data, 7, out, NULL, &err) == MRW_E_ARG);
    float bad[16];
    for (int i = 0; i < 16; i++) bad[i] = (float)i;
    bad[3] = NAN;
    CHECK(mrw_timer_forward(t, 1, bad, 16, out, NULL, &err) == MRW_E_ARG && strstr(err.msg, "not finite"));
    free(out);
done:
    mrw_timer_free(t);
    if (g) mrw_tfile_close(g);
}

/* A copy of the model without one tensor, or with an extra one: errors name the tensor. */
static void test_load_errors(void) {
    mrw_error err = {0};
    mrw_tfile *f = NULL;
    CHECK_OK(mrw_tfile_open("tests/fixtures/timer/model.safetensors", &f, &err), &err);
    if (!f) return;
    int n = mrw_tfile_count(f);
    mrw_tensor_info *ts = calloc((size_t)n + 1, sizeof *ts);
    int m = 0;
    for (int i = 0; i < n; i++) {
        const mrw_tensor_info *x = mrw_tfile_tensor(f, i);
        if (!strcmp(x->name, "model.layers.1.ffn_layer.up_proj.weight")) continue;
        ts[m++] = *x;
    }
    char p1[128];
    snprintf(p1, sizeof p1, "/tmp/mrw_timer_%d.safetensors", (int)getpid());
    CHECK_OK(mrw_safetensors_write(p1, ts, m, NULL, 0, NULL, NULL, &err), &err);
    mrw_timer *t = NULL;
    CHECK(mrw_timer_open(p1, 2, &t, &err) == MRW_E_MISSING && strstr(err.msg, "up_proj"));
    /* heads that do not divide the hidden size */
    CHECK(mrw_timer_open("tests/fixtures/timer/model.safetensors", 3, &t, &err) == MRW_E_SHAPE);
    /* an unknown tensor */
    ts[m] = *mrw_tfile_find(f, "model.norm.bias");
    m = 0;
    for (int i = 0; i < n; i++) ts[m++] = *mrw_tfile_tensor(f, i);
    ts[m] = *mrw_tfile_find(f, "model.norm.bias");
    char extra[] = "model.layers.0.self_attn.rotary.inv_freq";
    ts[m].name = extra;
    m++;
    CHECK_OK(mrw_safetensors_write(p1, ts, m, NULL, 0, NULL, NULL, &err), &err);
    CHECK(mrw_timer_open(p1, 2, &t, &err) == MRW_E_UNKNOWN && strstr(err.msg, "inv_freq"));
    /* a tensor of the wrong shape */
    m = 0;
    for (int i = 0; i < n; i++) {
        ts[m] = *mrw_tfile_tensor(f, i);
        if (!strcmp(ts[m].name, "model.norm.bias")) {
            const mrw_tensor_info *o = mrw_tfile_find(f, "lm_heads.0.weight");
            ts[m].ndim = o->ndim, ts[m].shape[0] = o->shape[0], ts[m].shape[1] = o->shape[1];
            ts[m].data = o->data, ts[m].nbytes = o->nbytes;
        }
        m++;
    }
    CHECK_OK(mrw_safetensors_write(p1, ts, m, NULL, 0, NULL, NULL, &err), &err);
    CHECK(mrw_timer_open(p1, 2, &t, &err) == MRW_E_SHAPE && strstr(err.msg, "[8, 16], expected [16]"));
    remove(p1);
    free(ts);
    mrw_tfile_close(f);
}

int main(void) {
    test_parity();
    test_load_errors();
    TEST_MAIN_END();
}
