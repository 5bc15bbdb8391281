/* The WaveNet encoder on the GPU (src/kernels/cuda/wavenet_gpu.h) against the CPU's (src/ts/wavenet.h,
 * mrw_wavenet_forward / _backward, fp32), random weights (mrw_wavenet_init_random: every tensor nonzero) and inputs:
 *   pooled output: the CPU's out [B][T][E] pooled on the host as forecaster.h's pool_P (patches aligned to the end)
 *   every parameter's gradient for a random d_pooled: the CPU gets d_out [B][T][E] = d_pooled / P spread over each
 *     patch's steps (0 before off); one row per tensor kind, the worst layer of it
 *   download_grads adds (a second forward + backward downloaded into the first's gradients gives twice them) and
 *   zeroes (a download right after adds nothing); upload after a host weight change takes effect; bad arguments
 *   (B > max_B, T > max_T, P > T, P < 1, backward without a forward, a second backward) are MRW_E_ARG.
 * Cases: the default config (mrw_wavenet_config_default(720): 10 layers, C 64, S 64, E 128) at B 4 T 720, P 16 and
 * P 1; L5 cycle 3 (dilations 1 2 4 1 2) C12 S10 E6 at B 3 T 37 P 5 (T not a multiple of P); L6 (dilations up to 32)
 * C16 S8 E24 at B 1 T 20 P 3 (T below the largest dilation); each in fp32 mode and bf16 mode.
 * Errors: max abs err = max |gpu - ref| over the tensor; max rel err = that / max |ref| of the tensor; norm err =
 * ||gpu - ref|| / ||ref|| (a tensor whose reference is all zero, the last layer's res_conv, must come out exactly
 * zero). A row passes when both relative errors are within its tolerances (max / norm):
 *   fp32 mode, against the CPU: 2e-5 / 2e-5 (fp32 GEMMs without TF32, sums in other orders; H100: <= 8.8e-7 / 4.8e-7)
 *   bf16 mode (weights, x and d_pooled bf16-representable for every side, so only the GPU's own roundings count):
 *     pooled against the fp32 CPU: 2e-2 / 1e-2 (H100: <= 3.3e-3 / 2.6e-3)
 *     against emu_bf16, the same bf16 roundings done on the host with double sums: on the small configs pooled and
 *       gradients 5e-3 / 2e-3 (H100: <= 2.1e-4 / 8.3e-5; left: fp32 vs double sums, tanhf / expf ulps); on the
 *       default-size cases pooled 1e-2 / 3e-3, gradients 8e-2 / 4e-2 (H100: 2.6e-3 / 1.1e-3 and 3.7e-2 / 1.9e-2 at
 *       P 1): 10 layers of bf16 roundings amplify any ulp-level difference (a value near a bf16 rounding boundary
 *       rounds the other way, a skip pre-activation near 0 switches its ReLU) -- the same host emulation with float
 *       sums in reverse order differs from emu_bf16 by 2.7e-3 / 7.6e-4 pooled and 2.5e-2 / 1.3e-2 in the gradients
 *       at the default B4 T720 P1, by <= 5e-4 / 2.3e-4 on the small configs (20 random draws))
 *     gradients against the fp32 CPU: 1.5e-1 / 1e-1 on the default-size cases (thousands of rows per sum; H100:
 *       7.0e-2 / 6.4e-2 at P 1, 3.1e-2 / 3.1e-2 at P 16; the RWKV-7 trainer's bf16 gradients take the same 1e-1), a
 *       measurement ("info") on the small ones (H100: up to 8.7e-2 / 7.8e-2 for these draws): the skip ReLU's step
 *       derivative makes a forward rounding that moves a pre-activation across 0 switch a whole element of d skip,
 *       so sums over tens of rows move by up to ~30% (emu_bf16's comment)
 * Then one timing line at the default config, B 32 T 720 P 16: forward ms and forward+backward ms in bf16 and fp32
 * modes (CUDA events, mean of 10 after 2 warm-ups), and the CPU's forward+backward with 16 threads
 * (MRW_TEST_THREADS; one run): a timing, never an assertion.
 *     make CUDA=1 BUILD=<dir> <dir>/tests/cuda/test_wavenet_gpu && <dir>/tests/cuda/test_wavenet_gpu [--quick]
 * --quick: the two small configs only and a small default-like one (for compute-sanitizer), no timing.
 * Exit status 0 only if every row passes. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vector>

extern "C" {
#include "kernels/cpu/kctx.h"
#include "kernels/cuda/wavenet_gpu.h"
#include "modrwkv.h"
#include "train/params.h"
#include "ts/wavenet.h"
}

static int g_fail = 0, g_rows = 0, g_threads = 16;
static uint64_t g_rng = 0x2545F4914F6CDD1Dull;

#include "test_rng.inc"

/* the table: max abs err, max rel err (max abs / max |ref|), norm err (||gpu - ref|| / ||ref||); both relative
 * errors within their tolerances passes; tol < 0: a measurement only ("info", not counted) */
static void row(const char *cs, const char *what, double abse, double rele, double norme, double tol, double tol_n) {
    if (tol < 0) {
        printf("%-34s %-52s %10.2e %10.2e %10.2e %17s info\n", cs, what, abse, rele, norme, "-");
        fflush(stdout);
        return;
    }
    const int ok = rele <= tol && norme <= tol_n && rele == rele && abse == abse && norme == norme;
    g_rows++;
    if (!ok) g_fail++;
    printf("%-34s %-52s %10.2e %10.2e %10.2e %8.0e/%-8.0e %s\n", cs, what, abse, rele, norme, tol, tol_n,
           ok ? "PASS" : "FAIL");
    fflush(stdout);
}

/* max |a - b|, that / max |b| and ||a - b|| / ||b|| (b all zero: the absolute errors, so only exact zeros pass) */
static void errs(const float *a, const float *b, size_t n, double *abse, double *rele, double *norme = NULL) {
    double md = 0, mr = 0, sd = 0, sr = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d;
        if (fabs(b[i]) > mr) mr = fabs(b[i]);
        sd += d * d, sr += (double)b[i] * b[i];
    }
    *abse = md;
    *rele = mr > 0 ? md / mr : md;
    if (norme) *norme = sr > 0 ? sqrt(sd / sr) : sqrt(sd);
}

/* x rounded to bf16 (nearest even) and back */
static float bf16r(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

#include "check_calls.inc"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* A host WaveNet with random weights. */
struct host_wn {
    mrw_param_set ps;
    mrw_wavenet wn;
};
static void host_new(host_wn *h, const mrw_wavenet_config *cfg) {
    mrw_error e;
    memset(h, 0, sizeof *h);
    CHECK(mrw_wavenet_add_params(&h->wn, cfg, &h->ps, &e));
    CHECK(mrw_param_set_alloc(&h->ps, &e));
    mrw_wavenet_init_random(&h->wn, rnd_u64());
}

/* CPU: out [B*T][E] pooled as forecaster.h's pool_P -> [B][n][E] */
static void pool_host(const float *outp, int B, int T, int E, int P, std::vector<float> &pooled) {
    const int n = T / P, off = T - n * P;
    pooled.assign((size_t)B * n * E, 0.f);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < n; j++)
            for (int c = 0; c < E; c++) {
                double s = 0;
                for (int q = 0; q < P; q++) s += outp[((size_t)b * T + off + (size_t)j * P + q) * E + c];
                pooled[((size_t)b * n + j) * E + c] = (float)(s / P);
            }
}

/* d_out [B*T][E] from d_pooled [B][n][E]: d_pooled / P over each patch's steps, 0 before off */
static void unpool_host(const float *dp, int B, int T, int E, int P, std::vector<float> &dout) {
    const int n = T / P, off = T - n * P;
    dout.assign((size_t)B * T * E, 0.f);
    for (int b = 0; b < B; b++)
        for (int t = off; t < T; t++)
            for (int c = 0; c < E; c++)
                dout[((size_t)b * T + t) * E + c] = dp[((size_t)b * n + (t - off) / P) * E + c] / (float)P;
}

static void cpu_forward(host_wn *h, mrw_kctx *kc, const float *x, int B, int T, int P, mrw_wavenet_acts *acts,
                        std::vector<float> &pooled) {
    mrw_error e;
    if (acts->B != B || acts->T != T) {
        mrw_wavenet_acts_free(acts);
        CHECK(mrw_wavenet_acts_alloc(acts, &h->wn.cfg, B, T, &e));
    }
    std::vector<float> outp((size_t)B * T * h->wn.cfg.out_dim);
    mrw_wavenet_forward(kc, &h->wn, x, acts, outp.data());
    pool_host(outp.data(), B, T, h->wn.cfg.out_dim, P, pooled);
}

/* ------------------------------------------------------------------ the bf16 mode's arithmetic on the host */
/* The GPU's fast mode rounds GEMM operands to bf16 at fixed points: this is that computation on the host (sums in
 * double), the reference that checks the bf16 code paths element by element. Against the fp32 CPU the bf16 mode
 * differs mostly through the skip ReLU: a pre-activation that the forward's bf16 roundings (1e-3 relative) move
 * across 0 switches a whole element of d skip, so a gradient summed over few rows moves by ~sqrt(flipped fraction)
 * (a host emulation of this function against the CPU, 20 random draws per config: max / norm err up to 7e-1 / 3.3e-1
 * at B1 T20 (20 rows per sum), 1.4e-1 / 1.5e-1 at B2 T50; 5.3e-2 / 3.9e-2 at the default B4 T720 (2 draws); the
 * forward's roundings alone keep that, the backward's alone give <= 7e-3). */
static void mm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *Y, int ldy, int acc) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) { /* Y (=, +=) A B^T, B [N][K] */
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)A[(size_t)m * lda + k] * B[(size_t)n * ldb + k];
            Y[(size_t)m * ldy + n] = (float)(acc ? Y[(size_t)m * ldy + n] + s : s);
        }
}
static void mm_nn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *Y, int ldy, int acc) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) { /* Y (=, +=) A B, B [K][N] */
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)A[(size_t)m * lda + k] * B[(size_t)k * ldb + n];
            Y[(size_t)m * ldy + n] = (float)(acc ? Y[(size_t)m * ldy + n] + s : s);
        }
}
static void mm_tn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *Y, int ldy) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) { /* Y += A^T B, A [K][M], B [K][N] */
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)A[(size_t)k * lda + m] * B[(size_t)k * ldb + n];
            Y[(size_t)m * ldy + n] += (float)s;
        }
}

/* pooled [B*n][E] =, gradients (wn->ps->g) += for d_pooled dp (already bf16-representable, as are the weights) */
static void emu_bf16(const mrw_wavenet *wn, const float *x, int B, int T, int P, const float *dp, float *pooled) {
    const mrw_param_set *ps = wn->ps;
    const int L = wn->cfg.n_layers, C = wn->cfg.res_ch, S = wn->cfg.skip_ch, E = wn->cfg.out_dim;
    const int N = B * T, np = T / P, off = T - np * P, Rp = B * np;
#define PW(i) mrw_param_w(ps, (i))
#define PG(i) mrw_param_g(ps, (i))
    std::vector<float> h((size_t)L * N * C), fg((size_t)L * N * 2 * C), Z((size_t)L * N * C), col((size_t)N * 2 * C),
        sk((size_t)N * S), prs((size_t)Rp * S), sb(S);
    auto im2col = [&](int i) {
        const int d = mrw_wavenet_dilation(&wn->cfg, i);
        const float *hi = h.data() + (size_t)i * N * C;
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                col[(size_t)n * 2 * C + 2 * c] = n % T >= d ? bf16r(hi[(size_t)(n - d) * C + c]) : 0.f;
                col[(size_t)n * 2 * C + 2 * c + 1] = bf16r(hi[(size_t)n * C + c]);
            }
    };
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) h[(size_t)n * C + c] = PW(wn->in_w)[c] * x[n] + PW(wn->in_b)[c];
    for (int i = 0; i < L; i++) {
        float *ai = fg.data() + (size_t)i * N * 2 * C, *zi = Z.data() + (size_t)i * N * C;
        im2col(i);
        mm_nt(N, 2 * C, 2 * C, col.data(), 2 * C, PW(wn->dil_w[i]), 2 * C, ai, 2 * C, 0);
        const float *bd = PW(wn->dil_b[i]);
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                float *ar = ai + (size_t)n * 2 * C;
                const float f = tanhf(ar[c] + bd[c]), g = 1.f / (1.f + expf(-(ar[C + c] + bd[C + c])));
                ar[c] = f, ar[C + c] = g;
                zi[(size_t)n * C + c] = bf16r(f * g);
            }
        if (i + 1 < L) {
            float *hn = h.data() + (size_t)(i + 1) * N * C;
            const float *hi = h.data() + (size_t)i * N * C, *rb = PW(wn->res_b[i]);
            mm_nt(N, C, C, zi, C, PW(wn->res_w[i]), C, hn, C, 0);
            for (size_t j = 0; j < (size_t)N * C; j++) hn[j] += hi[j] + rb[j % C];
        }
        mm_nt(N, S, C, zi, C, PW(wn->skip_w[i]), C, sk.data(), S, i > 0);
    }
    for (int s = 0; s < S; s++) {
        double v = 0;
        for (int i = 0; i < L; i++) v += PW(wn->skip_b[i])[s];
        sb[s] = (float)v;
    }
    for (int r = 0; r < Rp; r++)
        for (int s = 0; s < S; s++) {
            const int b = r / np, j = r % np;
            float acc = 0;
            for (int q = 0; q < P; q++) acc += fmaxf(sk[((size_t)b * T + off + j * P + q) * S + s] + sb[s], 0.f);
            prs[(size_t)r * S + s] = bf16r(acc / P);
        }
    mm_nt(Rp, E, S, prs.data(), S, PW(wn->out_w), S, pooled, E, 0);
    for (size_t j = 0; j < (size_t)Rp * E; j++) pooled[j] += PW(wn->out_b)[j % E];
    /* backward */
    for (int c = 0; c < E; c++) {
        double v = 0;
        for (int r = 0; r < Rp; r++) v += dp[(size_t)r * E + c];
        PG(wn->out_b)[c] += (float)v;
    }
    mm_tn(E, S, Rp, dp, E, prs.data(), S, PG(wn->out_w), S);
    std::vector<float> dprs((size_t)Rp * S), dskf((size_t)N * S), dsk((size_t)N * S), dz((size_t)N * C),
        dh((size_t)N * C), dhb((size_t)N * C), daf((size_t)N * 2 * C), da((size_t)N * 2 * C), dcol((size_t)N * 2 * C);
    mm_nn(Rp, S, E, dp, E, PW(wn->out_w), S, dprs.data(), S, 0);
    for (int n = 0; n < N; n++)
        for (int s = 0; s < S; s++) {
            const int t = n % T, b = n / T;
            float v = 0;
            if (t >= off && sk[(size_t)n * S + s] + sb[s] > 0) v = dprs[((size_t)b * np + (t - off) / P) * S + s] / P;
            dskf[(size_t)n * S + s] = v, dsk[(size_t)n * S + s] = bf16r(v);
        }
    for (int s = 0; s < S; s++) {
        double v = 0;
        for (int n = 0; n < N; n++) v += dskf[(size_t)n * S + s];
        for (int i = 0; i < L; i++) PG(wn->skip_b[i])[s] += (float)v;
    }
    for (int i = L - 1; i >= 0; i--) {
        const int d = mrw_wavenet_dilation(&wn->cfg, i);
        const float *zi = Z.data() + (size_t)i * N * C, *fgi = fg.data() + (size_t)i * N * 2 * C;
        mm_tn(S, C, N, dsk.data(), S, zi, C, PG(wn->skip_w[i]), C);
        mm_nn(N, C, S, dsk.data(), S, PW(wn->skip_w[i]), C, dz.data(), C, 0);
        if (i + 1 < L) {
            for (size_t j = 0; j < (size_t)N * C; j++) dhb[j] = bf16r(dh[j]);
            mm_nn(N, C, C, dhb.data(), C, PW(wn->res_w[i]), C, dz.data(), C, 1);
            mm_tn(C, C, N, dhb.data(), C, zi, C, PG(wn->res_w[i]), C);
            for (int c = 0; c < C; c++) {
                double v = 0;
                for (int n = 0; n < N; n++) v += dh[(size_t)n * C + c];
                PG(wn->res_b[i])[c] += (float)v;
            }
        }
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                const float f = fgi[(size_t)n * 2 * C + c], g = fgi[(size_t)n * 2 * C + C + c], z = dz[(size_t)n * C + c];
                daf[(size_t)n * 2 * C + c] = z * g * (1 - f * f);
                daf[(size_t)n * 2 * C + C + c] = z * f * g * (1 - g);
            }
        for (size_t j = 0; j < (size_t)N * 2 * C; j++) da[j] = bf16r(daf[j]);
        for (int o = 0; o < 2 * C; o++) {
            double v = 0;
            for (int n = 0; n < N; n++) v += daf[(size_t)n * 2 * C + o];
            PG(wn->dil_b[i])[o] += (float)v;
        }
        im2col(i);
        mm_tn(2 * C, 2 * C, N, da.data(), 2 * C, col.data(), 2 * C, PG(wn->dil_w[i]), 2 * C);
        mm_nn(N, 2 * C, 2 * C, da.data(), 2 * C, PW(wn->dil_w[i]), 2 * C, dcol.data(), 2 * C, 0);
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                float v = dcol[(size_t)n * 2 * C + 2 * c + 1];
                if (n % T + d < T) v += dcol[(size_t)(n + d) * 2 * C + 2 * c];
                dh[(size_t)n * C + c] = (i + 1 < L ? dh[(size_t)n * C + c] : 0.f) + v;
            }
    }
    for (int c = 0; c < C; c++) {
        double a = 0, b = 0;
        for (int n = 0; n < N; n++) a += (double)dh[(size_t)n * C + c] * x[n], b += dh[(size_t)n * C + c];
        PG(wn->in_w)[c] += (float)a, PG(wn->in_b)[c] += (float)b;
    }
#undef PW
#undef PG
}

/* per tensor kind (the name after "encoder.model." without the layer), the worst relative error over its tensors */
static void grad_rows(const char *cs, const mrw_param_set *ps, const float *gpu, const float *ref, const char *vs,
                      double tol, double tol_n) {
    static const char *kinds[] = {"input_conv.weight", "input_conv.bias", "dilated_conv.weight", "dilated_conv.bias",
                                  "res_conv.weight",   "res_conv.bias",   "skip_conv.weight",    "skip_conv.bias",
                                  "out_conv.weight",   "out_conv.bias"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        double wa = 0, wr = -1, wnn = 0;
        const char *wn = "";
        int cnt = 0;
        for (int i = 0; i < ps->n; i++) {
            const mrw_param *p = &ps->p[i];
            const size_t ln = strlen(p->name), lk = strlen(kinds[k]);
            if (ln < lk || strcmp(p->name + ln - lk, kinds[k])) continue;
            double a, r, nr;
            errs(gpu + p->offset, ref + p->offset, p->n, &a, &r, &nr);
            cnt++;
            if (!(r <= wr)) wr = r, wa = a, wn = p->name;
            if (!(nr <= wnn)) wnn = nr;
        }
        if (!cnt) continue;
        char what[160];
        const char *sh = strncmp(wn, "encoder.model.", 14) ? wn : wn + 14;
        snprintf(what, sizeof what, "grad %s%s", sh, vs);
        row(cs, what, wa, wr, wnn, tol, tol_n);
    }
}

struct wn_case {
    const char *name;
    mrw_wavenet_config cfg;
    int B, T, P;
};

static void run_case(const wn_case *c, int fp32) {
    mrw_error e;
    char cs[96];
    snprintf(cs, sizeof cs, "%s %s", c->name, fp32 ? "fp32" : "bf16");
    const int B = c->B, T = c->T, P = c->P, E = c->cfg.out_dim, n = T / P;
    const size_t N = (size_t)B * T, np = (size_t)B * n * E;
    const double tol_f = fp32 ? 2e-5 : 2e-2, tol_fn = fp32 ? 2e-5 : 1e-2;
    /* bf16 gradients against the fp32 CPU: asserted on the default-size cases only (thousands of rows per sum); the
     * small ones are measured (see emu_bf16 on the ReLU) and checked against the bf16 host arithmetic instead */
    const double tol_g = fp32 ? 2e-5 : N >= 1000 ? 1.5e-1 : -1, tol_gn = fp32 ? 2e-5 : 1e-1;
    host_wn h;
    host_new(&h, &c->cfg);
    if (!fp32) /* weights bf16-representable for both sides (the GPU's bf16 copy is then exact) */
        for (size_t i = 0; i < h.ps.total; i++) h.ps.w[i] = bf16r(h.ps.w[i]);
    mrw_kctx kc;
    mrw_kctx_init(&kc, g_threads);
    mrw_wavenet_acts acts;
    memset(&acts, 0, sizeof acts);
    std::vector<float> x(N), dp(np), ref, dout;
    for (auto &v : x) v = rnd_u(-2.f, 2.f);
    for (auto &v : dp) v = rnd_u(-1.f, 1.f);
    if (!fp32) { /* (d_pooled is rounded to bf16 for the GEMMs on the GPU) */
        for (auto &v : x) v = bf16r(v);
        for (auto &v : dp) v = bf16r(v);
    }
    float *d_x = NULL, *d_dp = NULL;
    CU(cudaMalloc(&d_x, N * 4));
    CU(cudaMalloc(&d_dp, np * 4));
    CU(cudaMemcpy(d_x, x.data(), N * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d_dp, dp.data(), np * 4, cudaMemcpyHostToDevice));
    cudaStream_t st;
    CU(cudaStreamCreate(&st));
    mrw_wavenet_gpu *g = NULL;
    /* buffers for one more series and step than used: the sizes of a call need not be the maxima */
    CHECK(mrw_wavenet_gpu_new(&c->cfg, B + 1, T + 1, fp32, (void *)st, &g, &e));
    CHECK(mrw_wavenet_gpu_upload(g, &h.wn, &e));
    /* forward */
    cpu_forward(&h, &kc, x.data(), B, T, P, &acts, ref);
    const float *d_pooled = NULL;
    CHECK(mrw_wavenet_gpu_forward(g, d_x, B, T, P, &d_pooled, &e));
    std::vector<float> got(np);
    CU(cudaMemcpyAsync(got.data(), d_pooled, np * 4, cudaMemcpyDeviceToHost, st));
    CU(cudaStreamSynchronize(st));
    double a, r, nr;
    errs(got.data(), ref.data(), np, &a, &r, &nr);
    char what[160];
    snprintf(what, sizeof what, "pooled [%d][%d][%d]", B, n, E);
    row(cs, what, a, r, nr, tol_f, tol_fn);
    std::vector<float> gemu;
    if (!fp32) { /* the bf16 host arithmetic: forward and gradients */
        std::vector<float> pemu(np);
        mrw_param_zero_grad(&h.ps);
        emu_bf16(&h.wn, x.data(), B, T, P, dp.data(), pemu.data());
        gemu.assign(h.ps.g, h.ps.g + h.ps.total);
        errs(got.data(), pemu.data(), np, &a, &r, &nr);
        row(cs, "pooled (vs bf16 host arithmetic)", a, r, nr, N >= 1000 ? 1e-2 : 5e-3, N >= 1000 ? 3e-3 : 2e-3);
    }
    /* backward: CPU reference gradients, GPU gradients downloaded into zeroed host gradients */
    unpool_host(dp.data(), B, T, E, P, dout);
    mrw_param_zero_grad(&h.ps);
    mrw_wavenet_backward(&kc, &h.wn, &acts, dout.data(), NULL);
    std::vector<float> gref(h.ps.g, h.ps.g + h.ps.total);
    CHECK(mrw_wavenet_gpu_backward(g, d_dp, &e));
    mrw_param_zero_grad(&h.ps);
    CHECK(mrw_wavenet_gpu_download_grads(g, &h.wn, &e));
    std::vector<float> g1(h.ps.g, h.ps.g + h.ps.total);
    grad_rows(cs, &h.ps, g1.data(), gref.data(), fp32 ? "" : " (vs fp32 CPU)", tol_g, tol_gn);
    if (!fp32) /* (see the file's comment for the two tolerances) */
        grad_rows(cs, &h.ps, g1.data(), gemu.data(), " (vs bf16 host)", N >= 1000 ? 8e-2 : 5e-3, N >= 1000 ? 4e-2 : 2e-3);
    /* download adds and zeroes: a second forward + backward into the first's gradients gives 2 g1; then nothing */
    CHECK(mrw_wavenet_gpu_forward(g, d_x, B, T, P, &d_pooled, &e));
    CHECK(mrw_wavenet_gpu_backward(g, d_dp, &e));
    CHECK(mrw_wavenet_gpu_download_grads(g, &h.wn, &e));
    std::vector<float> two(h.ps.total);
    for (size_t i = 0; i < h.ps.total; i++) two[i] = 2 * g1[i];
    errs(h.ps.g, two.data(), h.ps.total, &a, &r, &nr);
    row(cs, "download adds (2nd step into the 1st's grads)", a, r, nr, 1e-6, 1e-6);
    std::vector<float> g2(h.ps.g, h.ps.g + h.ps.total);
    CHECK(mrw_wavenet_gpu_download_grads(g, &h.wn, &e));
    errs(h.ps.g, g2.data(), h.ps.total, &a, &r);
    row(cs, "download zeroed the device grads", a, a, a, 0, 0);
    /* a host weight change, uploaded, takes effect (every tensor scaled, the out bias shifted) */
    for (size_t i = 0; i < h.ps.total; i++) h.ps.w[i] = fp32 ? h.ps.w[i] * 0.9f : bf16r(h.ps.w[i] * 0.9f);
    float *ob = mrw_param_w(&h.ps, h.wn.out_b);
    for (int i = 0; i < E; i++) ob[i] += 0.25f;
    cpu_forward(&h, &kc, x.data(), B, T, P, &acts, ref);
    CHECK(mrw_wavenet_gpu_upload(g, &h.wn, &e));
    CHECK(mrw_wavenet_gpu_forward(g, d_x, B, T, P, &d_pooled, &e));
    CU(cudaMemcpyAsync(got.data(), d_pooled, np * 4, cudaMemcpyDeviceToHost, st));
    CU(cudaStreamSynchronize(st));
    errs(got.data(), ref.data(), np, &a, &r, &nr);
    row(cs, "pooled after a host weight change + upload", a, r, nr, tol_f, tol_fn);
    /* a smaller batch through the same buffers */
    if (B > 1) {
        cpu_forward(&h, &kc, x.data(), 1, T, P, &acts, ref);
        CHECK(mrw_wavenet_gpu_forward(g, d_x, 1, T, P, &d_pooled, &e));
        std::vector<float> g1b((size_t)n * E);
        CU(cudaMemcpyAsync(g1b.data(), d_pooled, g1b.size() * 4, cudaMemcpyDeviceToHost, st));
        CU(cudaStreamSynchronize(st));
        errs(g1b.data(), ref.data(), g1b.size(), &a, &r, &nr);
        row(cs, "pooled, B 1 through the same buffers", a, r, nr, tol_f, tol_fn);
    }
    CHECK(mrw_wavenet_gpu_download_grads(g, &h.wn, &e)); /* (the forward above left nothing pending: a no-op) */
    mrw_wavenet_gpu_free(g);
    CU(cudaStreamDestroy(st));
    cudaFree(d_x), cudaFree(d_dp);
    mrw_wavenet_acts_free(&acts);
    mrw_kctx_free(&kc);
    mrw_param_set_free(&h.ps);
}

static void run_errors(int quick) {
    mrw_error e;
    mrw_wavenet_config cfg = {3, 8, 8, 8, 3};
    host_wn h;
    host_new(&h, &cfg);
    mrw_wavenet_gpu *g = NULL;
    CHECK(mrw_wavenet_gpu_new(&cfg, 2, 16, 0, NULL, &g, &e));
    CHECK(mrw_wavenet_gpu_upload(g, &h.wn, &e));
    float *d_x = NULL, *d_dp = NULL;
    CU(cudaMalloc(&d_x, 3 * 17 * 4));
    CU(cudaMalloc(&d_dp, 3 * 17 * 8 * 4));
    CU(cudaMemset(d_x, 0, 3 * 17 * 4));
    CU(cudaMemset(d_dp, 0, 3 * 17 * 8 * 4));
    const float *pp = NULL;
    int ok = 1;
    ok &= mrw_wavenet_gpu_backward(g, d_dp, &e) == MRW_E_ARG;  /* no forward yet */
    ok &= mrw_wavenet_gpu_forward(g, d_x, 3, 16, 1, &pp, &e) == MRW_E_ARG; /* B > max_B */
    ok &= mrw_wavenet_gpu_forward(g, d_x, 0, 16, 1, &pp, &e) == MRW_E_ARG;
    ok &= mrw_wavenet_gpu_forward(g, d_x, 2, 17, 1, &pp, &e) == MRW_E_ARG; /* T > max_T */
    ok &= mrw_wavenet_gpu_forward(g, d_x, 2, 8, 9, &pp, &e) == MRW_E_ARG;  /* P > T */
    ok &= mrw_wavenet_gpu_forward(g, d_x, 2, 8, 0, &pp, &e) == MRW_E_ARG;  /* P < 1 */
    ok &= mrw_wavenet_gpu_backward(g, d_dp, &e) == MRW_E_ARG; /* a failed forward leaves nothing to go back through */
    ok &= mrw_wavenet_gpu_forward(g, d_x, 2, 16, 16, &pp, &e) == MRW_OK && pp != NULL; /* P = T: one patch */
    ok &= mrw_wavenet_gpu_backward(g, d_dp, &e) == MRW_OK;
    ok &= mrw_wavenet_gpu_backward(g, d_dp, &e) == MRW_E_ARG; /* at most once per forward */
    mrw_wavenet_config other = cfg;
    other.cycle = 2;
    host_wn h2;
    host_new(&h2, &other);
    ok &= mrw_wavenet_gpu_upload(g, &h2.wn, &e) == MRW_E_ARG; /* another configuration */
    ok &= mrw_wavenet_gpu_download_grads(g, &h2.wn, &e) == MRW_E_ARG;
    mrw_wavenet_gpu *g2 = NULL;
    ok &= mrw_wavenet_gpu_new(&cfg, 0, 16, 0, NULL, &g2, &e) == MRW_E_ARG && !g2;
    ok &= mrw_wavenet_gpu_new(&cfg, 1 << 13, 1 << 12, 0, NULL, &g2, &e) == MRW_E_ARG && !g2; /* 2^25 steps */
    mrw_wavenet_config bad = cfg;
    bad.n_layers = 0;
    ok &= mrw_wavenet_gpu_new(&bad, 1, 16, 0, NULL, &g2, &e) == MRW_E_ARG && !g2;
    /* more than the device has: MRW_E_NOMEM naming the bytes and the free memory (not under --quick: the failed
     * cudaMalloc is an API error to compute-sanitizer) */
    if (!quick) {
        mrw_wavenet_config huge = {1, 8, 8, 65536, 1}; /* 2^24 steps x E 65536: the output alone is 4 TiB */
        const mrw_status hs = mrw_wavenet_gpu_new(&huge, 1 << 10, 1 << 14, 1, NULL, &g2, &e);
        ok &= hs == MRW_E_NOMEM && !g2 && strstr(e.msg, "free") != NULL;
        if (hs == MRW_E_NOMEM) printf("  (NOMEM message: %s)\n", e.msg);
    }
    const double bad_args = ok ? 0 : 1;
    row("errors", quick ? "bad arguments rejected (MRW_E_ARG)" : "bad arguments rejected (MRW_E_ARG / NOMEM)", bad_args,
        bad_args, bad_args, 0, 0);
    const double nb = mrw_wavenet_gpu_bytes(g) > 0 ? 0 : 1;
    row("errors", "bytes reported", nb, nb, nb, 0, 0);
    cudaFree(d_x), cudaFree(d_dp);
    mrw_wavenet_gpu_free(g);
    mrw_param_set_free(&h.ps);
    mrw_param_set_free(&h2.ps);
}

static void run_timing(void) {
    mrw_error e;
    mrw_wavenet_config cfg;
    mrw_wavenet_config_default(&cfg, 720);
    const int B = 32, T = 720, P = 16, E = cfg.out_dim, n = T / P;
    const size_t N = (size_t)B * T, np = (size_t)B * n * E;
    host_wn h;
    host_new(&h, &cfg);
    std::vector<float> x(N), dp(np);
    for (auto &v : x) v = rnd_u(-2.f, 2.f);
    for (auto &v : dp) v = rnd_u(-1.f, 1.f);
    float *d_x = NULL, *d_dp = NULL;
    CU(cudaMalloc(&d_x, N * 4));
    CU(cudaMalloc(&d_dp, np * 4));
    CU(cudaMemcpy(d_x, x.data(), N * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d_dp, dp.data(), np * 4, cudaMemcpyHostToDevice));
    float fms[2] = {0, 0}, fbms[2] = {0, 0};
    size_t bytes[2] = {0, 0};
    const int it = 10;
    for (int fp32 = 0; fp32 < 2; fp32++) {
        mrw_wavenet_gpu *g = NULL;
        CHECK(mrw_wavenet_gpu_new(&cfg, B, T, fp32, NULL, &g, &e));
        CHECK(mrw_wavenet_gpu_upload(g, &h.wn, &e));
        const float *pp = NULL;
        for (int i = 0; i < 2; i++) {
            CHECK(mrw_wavenet_gpu_forward(g, d_x, B, T, P, &pp, &e));
            CHECK(mrw_wavenet_gpu_backward(g, d_dp, &e));
        }
        cudaEvent_t e0, e1;
        CU(cudaEventCreate(&e0));
        CU(cudaEventCreate(&e1));
        CU(cudaEventRecord(e0, NULL));
        for (int i = 0; i < it; i++) CHECK(mrw_wavenet_gpu_forward(g, d_x, B, T, P, &pp, &e));
        CU(cudaEventRecord(e1, NULL));
        CU(cudaEventSynchronize(e1));
        CU(cudaEventElapsedTime(&fms[fp32], e0, e1));
        CU(cudaEventRecord(e0, NULL));
        for (int i = 0; i < it; i++) {
            CHECK(mrw_wavenet_gpu_forward(g, d_x, B, T, P, &pp, &e));
            CHECK(mrw_wavenet_gpu_backward(g, d_dp, &e));
        }
        CU(cudaEventRecord(e1, NULL));
        CU(cudaEventSynchronize(e1));
        CU(cudaEventElapsedTime(&fbms[fp32], e0, e1));
        bytes[fp32] = mrw_wavenet_gpu_bytes(g);
        cudaEventDestroy(e0), cudaEventDestroy(e1);
        mrw_wavenet_gpu_free(g);
    }
    /* the CPU, 16 threads, one forward + backward */
    mrw_kctx kc;
    mrw_kctx_init(&kc, g_threads);
    mrw_wavenet_acts acts;
    memset(&acts, 0, sizeof acts);
    CHECK(mrw_wavenet_acts_alloc(&acts, &cfg, B, T, &e));
    std::vector<float> outp(N * E), dout;
    unpool_host(dp.data(), B, T, E, P, dout);
    double t0 = now_s();
    mrw_wavenet_forward(&kc, &h.wn, x.data(), &acts, outp.data());
    const double cf = now_s() - t0;
    mrw_wavenet_backward(&kc, &h.wn, &acts, dout.data(), NULL);
    const double cfb = now_s() - t0;
    printf("timing: default WaveNet (L10 C64 S64 E128) B32 T720 P16: GPU bf16 mode forward %.3f ms, forward+backward "
           "%.3f ms (%.0f MiB); fp32 mode forward %.3f ms, forward+backward %.3f ms (%.0f MiB) (mean of %d); CPU %d "
           "threads: forward %.1f ms, forward+backward %.1f ms\n", fms[0] / it, fbms[0] / it, bytes[0] / 1048576.0,
           fms[1] / it, fbms[1] / it, bytes[1] / 1048576.0, it, g_threads, cf * 1e3, cfb * 1e3);
    mrw_wavenet_acts_free(&acts);
    mrw_kctx_free(&kc);
    cudaFree(d_x), cudaFree(d_dp);
    mrw_param_set_free(&h.ps);
}

int main(int argc, char **argv) {
    int quick = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick")) quick = 1;
    const char *th = getenv("MRW_TEST_THREADS");
    if (th) g_threads = atoi(th);
    printf("%-34s %-52s %10s %10s %10s %17s %s\n", "case", "quantity", "max abs", "max rel", "norm rel",
           "tol max/norm", "");
    mrw_wavenet_config def;
    mrw_wavenet_config_default(&def, 720);
    const wn_case cases[] = {
        {"default L10 B4 T720 P16", def, 4, 720, 16},
        {"default L10 B4 T720 P1", def, 4, 720, 1},
        {"L5 cyc3 C12 S10 E6 B3 T37 P5", {5, 12, 10, 6, 3}, 3, 37, 5},
        {"L6 C16 S8 E24 B1 T20 P3", {6, 16, 8, 24, 6}, 1, 20, 3},
        {"L4 C16 S16 E32 B2 T50 P4", {4, 16, 16, 32, 4}, 2, 50, 4},
    };
    for (int k = 0; k < 5; k++) {
        if (quick && k < 2) continue;
        if (!quick && k == 4) continue;
        run_case(&cases[k], 1);
        run_case(&cases[k], 0);
    }
    run_errors(quick);
    if (!quick) run_timing();
    printf("%d of %d rows passed\n", g_rows - g_fail, g_rows);
    return g_fail ? 1 : 0;
}
