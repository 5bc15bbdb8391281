/* Time-series splits, normalisation, windows and baselines (src/ts/splits.c, src/ts/baselines.c): known
 * answers on synthetic series, and a numpy reference (tests/reference/make_ts_fixtures.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/tensorfile.h"
#include "test.h"
#include "ts/baselines.h"
#include "ts/forecast_head.h"
#include "ts/splits.h"

static void test_detect(void) {
    mrw_error err = {0};
    mrw_ts_dataset ds;
    CHECK_OK(mrw_ts_dataset_find("../x/ETTh1.csv", NULL, &ds, &err), &err);
    CHECK(!strcmp(ds.name, "ETTh1") && ds.rule == MRW_TS_RULE_ETTH && ds.period == 24 && ds.lookback == 720 &&
          ds.horizon == 96);
    CHECK_OK(mrw_ts_dataset_find("/data/ettm2.CSV", NULL, &ds, &err), &err);
    CHECK(!strcmp(ds.name, "ETTm2") && ds.rule == MRW_TS_RULE_ETTM && ds.period == 96);
    CHECK_OK(mrw_ts_dataset_find("national_illness.csv", NULL, &ds, &err), &err);
    CHECK(!strcmp(ds.name, "national_illness") && ds.lookback == 104 && ds.horizon == 24 && ds.period == 52);
    CHECK_OK(mrw_ts_dataset_find("weather.csv", NULL, &ds, &err), &err);
    CHECK(ds.period == 144 && ds.rule == MRW_TS_RULE_RATIO);
    CHECK_OK(mrw_ts_dataset_find("exchange_rate.csv", NULL, &ds, &err), &err);
    CHECK(ds.period == 7);
    CHECK_OK(mrw_ts_dataset_find("my_sales.csv", NULL, &ds, &err), &err);
    CHECK(!strcmp(ds.name, "custom") && ds.period == 0);
    CHECK_OK(mrw_ts_dataset_find("my_sales.csv", "ILI", &ds, &err), &err);
    CHECK(!strcmp(ds.name, "national_illness"));
    CHECK(mrw_ts_dataset_find("ETTh1.csv", "nonsense", &ds, &err) == MRW_E_ARG);
    CHECK(strstr(err.msg, "nonsense") && strstr(err.msg, "ETTh1"));
}

static void test_splits(void) {
    mrw_error err = {0};
    mrw_ts_splits s;
    CHECK_OK(mrw_ts_splits_compute(MRW_TS_RULE_ETTH, 17420, &s, &err), &err);
    CHECK(s.start[0] == 0 && s.end[0] == 8640 && s.start[1] == 8640 && s.end[1] == 11520 && s.start[2] == 11520 &&
          s.end[2] == 14400);
    CHECK_OK(mrw_ts_splits_compute(MRW_TS_RULE_ETTM, 69680, &s, &err), &err);
    CHECK(s.end[0] == 34560 && s.end[1] == 46080 && s.end[2] == 57600);
    CHECK(mrw_ts_splits_compute(MRW_TS_RULE_ETTH, 14399, &s, &err) == MRW_E_ARG);
    CHECK_OK(mrw_ts_splits_compute(MRW_TS_RULE_RATIO, 7588, &s, &err), &err);
    CHECK(s.end[0] == 5311 && s.start[2] == 7588 - 1517 && s.end[1] == s.start[2] && s.end[2] == 7588);
    CHECK_OK(mrw_ts_splits_compute(MRW_TS_RULE_RATIO, 966, &s, &err), &err);
    CHECK(s.end[0] == 676 && s.start[2] == 773);
    /* windows: the literature's counts (ETTh1 720 -> 96: test 2880 - 96 + 1 = 2785 per channel) */
    CHECK_OK(mrw_ts_splits_compute(MRW_TS_RULE_ETTH, 17420, &s, &err), &err);
    CHECK(mrw_ts_window_count(&s, MRW_TS_TEST, 720, 96, 1) == 2785);
    CHECK(mrw_ts_window_count(&s, MRW_TS_TRAIN, 720, 96, 1) == 8640 - 720 - 96 + 1);
    CHECK(mrw_ts_window_count(&s, MRW_TS_VAL, 720, 96, 1) == 2880 - 96 + 1);
    CHECK(mrw_ts_window_start(&s, MRW_TS_TEST, 720, 1, 0) == 11520);
    CHECK(mrw_ts_window_start(&s, MRW_TS_TRAIN, 720, 1, 0) == 720);
    CHECK(mrw_ts_window_count(&s, MRW_TS_TEST, 720, 96, 7) == (2880 - 96) / 7 + 1);
    CHECK(mrw_ts_window_count(&s, MRW_TS_TEST, 720, 2881, 1) == 0);
}

static void test_bad_input(void) {
    mrw_error err = {0};
    mrw_ts_dataset ds;
    mrw_ts_dataset_find("custom.csv", NULL, &ds, &err);
    float v[100];
    for (int i = 0; i < 100; i++) v[i] = (float)i;
    mrw_ts_data d;
    /* shorter than the lookback */
    CHECK(mrw_ts_data_init(&d, v, 1, 100, NULL, &ds, 96, 24, 1, &err) == MRW_E_ARG);
    CHECK(strstr(err.msg, "too short") != NULL);
    /* non-finite values */
    v[37] = NAN;
    CHECK(mrw_ts_data_init(&d, v, 1, 100, NULL, &ds, 8, 4, 1, &err) == MRW_E_FORMAT);
    CHECK(strstr(err.msg, "row 37") != NULL);
    v[37] = INFINITY;
    CHECK(mrw_ts_data_init(&d, v, 1, 100, NULL, &ds, 8, 4, 1, &err) == MRW_E_FORMAT);
    v[37] = 37;
    CHECK(mrw_ts_data_init(&d, v, 1, 100, NULL, &ds, 8, 4, 0, &err) == MRW_E_ARG);
    /* a CSV with a missing column / a bad cell: errors name file and line */
    char path[128];
    snprintf(path, sizeof path, "/tmp/mrw_ts_bad_%d.csv", (int)getpid());
    FILE *fp = fopen(path, "w");
    if (fp) {
        fprintf(fp, "date,a,OT\n");
        for (int i = 0; i < 50; i++) fprintf(fp, "d%d,%d,%s\n", i, i, i == 20 ? "abc" : "1.5");
        fclose(fp);
        CHECK(mrw_ts_data_load(&d, path, (const char *const[]){"OT"}, 1, NULL, 8, 4, 1, &err) != MRW_OK);
        CHECKF(strstr(err.msg, ".csv:22") != NULL && strstr(err.msg, "OT") != NULL, "%s", err.msg);
        CHECK(mrw_ts_data_load(&d, path, (const char *const[]){"nope"}, 1, NULL, 8, 4, 1, &err) != MRW_OK);
        CHECK(strstr(err.msg, "nope") != NULL);
        remove(path);
    }
    /* constant channel: std 1, never a division by zero */
    float c[200];
    for (int i = 0; i < 200; i++) c[i] = 3.0f;
    CHECK_OK(mrw_ts_data_init(&d, c, 1, 200, NULL, &ds, 16, 8, 1, &err), &err);
    CHECK(d.std[0] == 1.0 && d.z[5] == 0.0f);
    mrw_ts_score sc;
    CHECK_OK(mrw_ts_eval_baseline(NULL, &d, MRW_TS_TEST, MRW_TS_BASE_LAST, NULL, 0, &sc, &err), &err);
    CHECK(sc.mse == 0 && sc.mae == 0);
    mrw_ts_data_free(&d);
}

/* Known answers: a periodic series is forecast exactly by seasonal naive; a line exactly by a linear model;
 * a constant by last value. */
static void test_known_answers(void) {
    mrw_error err = {0};
    mrw_ts_dataset ds;
    mrw_ts_dataset_find("custom.csv", NULL, &ds, &err);
    enum { N = 600, P = 10 };
    static float v[2 * N];
    for (int i = 0; i < N; i++) {
        v[i] = (float)((i % P) * 0.7 - (i % 3 == 0) * 0.2);            /* period 30 */
        v[N + i] = (float)(0.02 * i + 1.0);                              /* a line */
    }
    mrw_ts_data d;
    CHECK_OK(mrw_ts_data_init(&d, v, 2, N, NULL, &ds, 60, 16, 1, &err), &err);
    int64_t per = mrw_ts_data_windows_per_channel(&d, MRW_TS_TEST);
    CHECK(per == 120 - 16 + 1);
    float x[60], y[16], f[16];
    int ch;
    int64_t t = mrw_ts_data_window(&d, MRW_TS_TEST, per + 3, x, y, &ch);
    CHECK(ch == 1 && t == 480 + 3);
    CHECK_NEAR(x[59] * d.std[1] + d.mean[1], v[N + t - 1], 1e-4);
    CHECK(mrw_ts_data_window(&d, MRW_TS_TEST, 2 * per, x, y, &ch) == -1);
    /* seasonal naive with period 30 on channel 0 */
    double maxe = 0;
    for (int64_t w = 0; w < per; w++) {
        mrw_ts_data_window(&d, MRW_TS_TEST, w, x, y, NULL);
        CHECK(mrw_ts_seasonal_naive(x, 60, 16, 30, f) == 0);
        for (int h = 0; h < 16; h++) maxe = fmax(maxe, fabs(f[h] - y[h]));
    }
    CHECK(maxe < 1e-5);
    CHECK(mrw_ts_seasonal_naive(x, 60, 16, 61, f) == -1);
    /* the DLinear-style fit reproduces the line (and the sawtooth nearly) */
    mrw_ts_dlinear lin;
    double alpha = 1e-6;
    CHECK_OK(mrw_ts_dlinear_fit(&lin, &d, &alpha, 1, &err), &err);
    mrw_ts_score sc;
    /* channel 1 alone: windows per..2per */
    double se = 0;
    for (int64_t w = per; w < 2 * per; w++) {
        mrw_ts_data_window(&d, MRW_TS_TEST, w, x, y, NULL);
        mrw_ts_dlinear_predict(&lin, x, f);
        for (int h = 0; h < 16; h++) se += (f[h] - y[h]) * (f[h] - y[h]);
    }
    CHECKF(se / (per * 16) < 1e-3, "line MSE %g", se / (per * 16));
    CHECK_OK(mrw_ts_eval_baseline(NULL, &d, MRW_TS_TEST, MRW_TS_BASE_LINEAR, &lin, 0, &sc, &err), &err);
    CHECKF(sc.mse < 1e-2, "linear MSE %g", sc.mse);
    CHECK(sc.n_windows == 2 * per && sc.n_values == 2 * per * 16);
    mrw_ts_dlinear_free(&lin);
    mrw_ts_data_free(&d);
    /* decomposition: replicated ends */
    float s5[5] = {1, 2, 3, 4, 5}, tr[5], se5[5];
    mrw_ts_decompose(s5, 5, 3, tr, se5);
    CHECK_NEAR(tr[0], (1 + 1 + 2) / 3.0, 1e-6);
    CHECK_NEAR(tr[2], 3, 1e-6);
    CHECK_NEAR(tr[4], (4 + 5 + 5) / 3.0, 1e-6);
    CHECK_NEAR(se5[4], 5 - 14 / 3.0, 1e-6);
    /* per-series normalisation: mean, sqrt(biased var + eps) */
    float in[4] = {1, 2, 3, 4}, out[4], m, sd;
    mrw_ts_instance_norm(in, 4, 1e-5f, out, &m, &sd);
    CHECK_NEAR(m, 2.5, 1e-6);
    CHECK_NEAR(sd, sqrt(1.25 + 1e-5), 1e-6);
    CHECK_NEAR(out[0], -1.5 / sqrt(1.25 + 1e-5), 1e-6);
}

static const mrw_tensor_info *need(const mrw_tfile *f, const char *name) {
    const mrw_tensor_info *t = mrw_tfile_find(f, name);
    CHECKF(t != NULL, "fixture tensor %s missing", name);
    return t;
}

static void test_reference(void) {
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/ts/baselines.safetensors");
    mrw_error err = {0};
    mrw_tfile *f = NULL;
    CHECK_OK(mrw_tfile_open(path, &f, &err), &err);
    if (!f) return;
    const mrw_tensor_info *ts = need(f, "series"), *tmean = need(f, "mean"), *tstd = need(f, "std"),
                          *tz = need(f, "z"), *tb = need(f, "borders"), *tx = need(f, "test_x"),
                          *ty = need(f, "test_y"), *tv5 = need(f, "val_t_stride5"), *tws = need(f, "ws"),
                          *twt = need(f, "wt"), *tbias = need(f, "b"), *ta = need(f, "alpha"),
                          *tvm = need(f, "val_mse"), *tpl = need(f, "pred_last"), *tps = need(f, "pred_seasonal"),
                          *tpn = need(f, "pred_linear"), *tm = need(f, "metrics");
    if (!ts || !tmean || !tstd || !tz || !tb || !tx || !ty || !tv5 || !tws || !twt || !tbias || !ta || !tvm || !tpl ||
        !tps || !tpn || !tm) {
        mrw_tfile_close(f);
        return;
    }
    const int L = 48, H = 12, P = 12;
    int n_ch = (int)ts->shape[0];
    int64_t n = ts->shape[1];
    mrw_ts_dataset ds;
    mrw_ts_dataset_find("synthetic.csv", NULL, &ds, &err);
    mrw_ts_data d;
    CHECK_OK(mrw_ts_data_init(&d, ts->data, n_ch, n, NULL, &ds, L, H, 1, &err), &err);
    const int64_t *bor = tb->data;
    for (int s = 0; s < 3; s++) CHECK(d.sp.start[s] == bor[2 * s] && d.sp.end[s] == bor[2 * s + 1]);
    const double *mean = tmean->data, *sd = tstd->data;
    for (int c = 0; c < n_ch; c++) {
        CHECK_NEAR(d.mean[c], mean[c], 1e-9 * fabs(mean[c]) + 1e-12);
        CHECK_NEAR(d.std[c], sd[c], 1e-9 * sd[c]);
    }
    double maxe = 0;
    const float *z = tz->data;
    for (int64_t i = 0; i < n_ch * n; i++) maxe = fmax(maxe, fabs(d.z[i] - z[i]));
    CHECKF(maxe <= 1e-6, "z max err %g", maxe);
    /* windows */
    int64_t nw = mrw_ts_data_windows(&d, MRW_TS_TEST);
    CHECK(nw == tx->shape[0]);
    float *x = malloc(sizeof(float) * L), *y = malloc(sizeof(float) * H), *p = malloc(sizeof(float) * H);
    const float *rx = tx->data, *ry = ty->data;
    double ex = 0;
    for (int64_t w = 0; w < nw && w < tx->shape[0]; w++) {
        mrw_ts_data_window(&d, MRW_TS_TEST, w, x, y, NULL);
        for (int i = 0; i < L; i++) ex = fmax(ex, fabs(x[i] - rx[w * L + i]));
        for (int h = 0; h < H; h++) ex = fmax(ex, fabs(y[h] - ry[w * H + h]));
    }
    CHECKF(ex <= 1e-6, "window max err %g", ex);
    /* stride 5 starts */
    int64_t n5 = mrw_ts_window_count(&d.sp, MRW_TS_VAL, L, H, 5);
    CHECK(n5 == tv5->shape[0]);
    const int64_t *v5 = tv5->data;
    for (int64_t k = 0; k < n5 && k < tv5->shape[0]; k++) CHECK(mrw_ts_window_start(&d.sp, MRW_TS_VAL, L, 5, k) == v5[k]);
    /* DLinear fit with the reference's alpha grid */
    double alphas[2] = {1e-3, 1e-1};
    mrw_ts_dlinear lin;
    CHECK_OK(mrw_ts_dlinear_fit(&lin, &d, alphas, 2, &err), &err);
    CHECK(lin.alpha == ((const double *)ta->data)[0]);
    CHECK_NEAR(lin.val_mse, ((const double *)tvm->data)[0], 1e-7);
    double ew = 0;
    const float *rws = tws->data, *rwt = twt->data, *rb = tbias->data;
    for (int i = 0; i < H * L; i++) ew = fmax(ew, fmax(fabs(lin.ws[i] - rws[i]), fabs(lin.wt[i] - rwt[i])));
    for (int h = 0; h < H; h++) ew = fmax(ew, fabs(lin.bs[h] + lin.bt[h] - rb[h]));
    CHECKF(ew <= 1e-5, "DLinear weight max err %g", ew);
    /* predictions of the three baselines, and the collapsed GEMM path against the decomposed form */
    double el = 0, es = 0, en = 0, eg = 0;
    const float *pl = tpl->data, *ps = tps->data, *pn = tpn->data;
    mrw_kctx k;
    mrw_kctx_init(&k, 2);
    for (int64_t w = 0; w < nw && w < tx->shape[0]; w++) {
        mrw_ts_data_window(&d, MRW_TS_TEST, w, x, y, NULL);
        mrw_ts_last_value(x, L, H, p);
        for (int h = 0; h < H; h++) el = fmax(el, fabs(p[h] - pl[w * H + h]));
        mrw_ts_seasonal_naive(x, L, H, P, p);
        for (int h = 0; h < H; h++) es = fmax(es, fabs(p[h] - ps[w * H + h]));
        mrw_ts_dlinear_predict(&lin, x, p);
        for (int h = 0; h < H; h++) en = fmax(en, fabs(p[h] - pn[w * H + h]));
        for (int h = 0; h < H; h++) {
            double acc = lin.b[h];
            for (int i = 0; i < L; i++) acc += (double)lin.w[h * L + i] * x[i];
            eg = fmax(eg, fabs(acc - p[h]));
        }
    }
    CHECKF(el == 0 && es == 0, "naive errs %g %g", el, es);
    CHECKF(en <= 1e-5, "linear prediction max err %g", en);
    CHECKF(eg <= 1e-5, "collapsed vs decomposed max err %g", eg);
    const double *met = tm->data;
    mrw_ts_score s1, s2, s3;
    CHECK_OK(mrw_ts_eval_baseline(&k, &d, MRW_TS_TEST, MRW_TS_BASE_LAST, NULL, 0, &s1, &err), &err);
    CHECK_OK(mrw_ts_eval_baseline(&k, &d, MRW_TS_TEST, MRW_TS_BASE_SEASONAL, NULL, P, &s2, &err), &err);
    CHECK_OK(mrw_ts_eval_baseline(&k, &d, MRW_TS_TEST, MRW_TS_BASE_LINEAR, &lin, 0, &s3, &err), &err);
    CHECK_NEAR(s1.mse, met[0], 1e-6);
    CHECK_NEAR(s1.mae, met[1], 1e-6);
    CHECK_NEAR(s2.mse, met[2], 1e-6);
    CHECK_NEAR(s2.mae, met[3], 1e-6);
    CHECK_NEAR(s3.mse, met[4], 1e-5);
    CHECK_NEAR(s3.mae, met[5], 1e-5);
    CHECK(mrw_ts_eval_baseline(&k, &d, MRW_TS_TEST, MRW_TS_BASE_SEASONAL, NULL, L + 1, &s2, &err) == MRW_E_ARG);
    fprintf(stderr, "ts reference: z %.2g, windows %.2g, weights %.2g, linear pred %.2g, gemm %.2g; linear MSE %.6f "
                    "(ref %.6f)\n", maxe, ex, ew, en, eg, s3.mse, met[4]);
    mrw_kctx_free(&k);
    mrw_ts_dlinear_free(&lin);
    mrw_ts_data_free(&d);
    free(x), free(y), free(p);
    mrw_tfile_close(f);
}

/* The forecast head: forward against plain loops, gradients against central differences (exact for the
 * quadratic loss up to rounding). */
static void test_head(void) {
    mrw_error err = {0};
    enum { B = 3, C = 10, H = 6 };
    mrw_param_set ps = {0};
    mrw_ts_head hd;
    CHECK_OK(mrw_ts_head_add_params(&hd, C, H, &ps, &err), &err);
    CHECK_OK(mrw_param_set_alloc(&ps, &err), &err);
    mrw_ts_head_init_random(&hd, 3);
    float *b0 = mrw_param_w(&ps, hd.b);
    for (int t = 0; t < H; t++) b0[t] = 0.1f * t - 0.2f;
    float h[B * C], mu[B] = {0.5f, -1.0f, 2.0f}, sg[B] = {1.5f, 0.3f, 2.0f}, y[B * H], yh[B * H], dy[B * H], dh[B * C];
    for (int i = 0; i < B * C; i++) h[i] = sinf(i * 0.37f);
    for (int i = 0; i < B * H; i++) y[i] = cosf(i * 0.21f);
    mrw_kctx k;
    mrw_kctx_init(&k, 1);
    mrw_ts_head_forward(&k, &hd, h, mu, sg, B, yh);
    const float *W = mrw_param_w(&ps, hd.w), *bb = mrw_param_w(&ps, hd.b);
    double ef = 0;
    for (int i = 0; i < B; i++)
        for (int t = 0; t < H; t++) {
            double u = bb[t];
            for (int c = 0; c < C; c++) u += (double)W[t * C + c] * h[i * C + c];
            ef = fmax(ef, fabs(mu[i] + sg[i] * u - yh[i * H + t]));
        }
    CHECKF(ef < 1e-5, "head forward err %g", ef);
    mrw_param_zero_grad(&ps);
    double loss = mrw_ts_mse_loss(yh, y, B, H, dy);
    float scratch[1024];
    CHECK(mrw_ts_head_scratch(B, C, H) <= 1024);
    mrw_ts_head_backward(&k, &hd, h, sg, dy, B, dh, scratch);
    double eg = 0;
    float *Wm = mrw_param_w(&ps, hd.w);
    const float *gW = mrw_param_g(&ps, hd.w), *gb = mrw_param_g(&ps, hd.b);
    for (int j = 0; j < H * C; j += 7) {
        float keep = Wm[j];
        Wm[j] = keep + 0.05f;
        mrw_ts_head_forward(&k, &hd, h, mu, sg, B, yh);
        double lp = mrw_ts_mse_loss(yh, y, B, H, NULL);
        Wm[j] = keep - 0.05f;
        mrw_ts_head_forward(&k, &hd, h, mu, sg, B, yh);
        double lm = mrw_ts_mse_loss(yh, y, B, H, NULL);
        Wm[j] = keep;
        eg = fmax(eg, fabs((lp - lm) / 0.1 - gW[j]) / fmax(1, fabs(gW[j])));
    }
    for (int j = 0; j < B * C; j += 5) {
        float keep = h[j];
        h[j] = keep + 0.05f;
        mrw_ts_head_forward(&k, &hd, h, mu, sg, B, yh);
        double lp = mrw_ts_mse_loss(yh, y, B, H, NULL);
        h[j] = keep - 0.05f;
        mrw_ts_head_forward(&k, &hd, h, mu, sg, B, yh);
        double lm = mrw_ts_mse_loss(yh, y, B, H, NULL);
        h[j] = keep;
        eg = fmax(eg, fabs((lp - lm) / 0.1 - dh[j]) / fmax(1, fabs(dh[j])));
    }
    float *bm = mrw_param_w(&ps, hd.b);
    for (int t = 0; t < H; t++) {
        float keep = bm[t];
        bm[t] = keep + 0.05f;
        mrw_ts_head_forward(&k, &hd, h, mu, sg, B, yh);
        double lp = mrw_ts_mse_loss(yh, y, B, H, NULL);
        bm[t] = keep - 0.05f;
        mrw_ts_head_forward(&k, &hd, h, mu, sg, B, yh);
        double lm = mrw_ts_mse_loss(yh, y, B, H, NULL);
        bm[t] = keep;
        eg = fmax(eg, fabs((lp - lm) / 0.1 - gb[t]) / fmax(1, fabs(gb[t])));
    }
    CHECKF(eg < 1e-4, "head gradient vs central differences: %g (loss %g)", eg, loss);
    CHECK(mrw_param_find(&ps, "forecast_head.weight") == hd.w && ps.p[hd.w].group == MRW_PG_ADAPTER);
    mrw_kctx_free(&k);
    mrw_param_set_free(&ps);
}

int main(void) {
    test_head();
    test_detect();
    test_splits();
    test_bad_input();
    test_known_answers();
    test_reference();
    TEST_MAIN_END();
}
