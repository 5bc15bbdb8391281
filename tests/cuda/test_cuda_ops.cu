/* CUDA operations against plain CPU references in float64, on fresh random inputs; prints one table row per
 * output tensor. Run on a GPU machine:
 *     make CUDA=1 cuda-tests && build-cuda/tests/cuda/test_cuda_ops          (all cases)
 *     build-cuda/tests/cuda/test_cuda_ops --quick                            (small shapes, for compute-sanitizer)
 *     build-cuda/tests/cuda/test_cuda_ops --train-ops [--quick]              (only the training-step rows)
 * Exit status 0 only if every row passes.
 *
 * Error measure per tensor: max|gpu - ref| / max|ref| ("max err", the pass criterion) and
 * ||gpu - ref||_2 / ||ref||_2 ("norm err"). Tolerances: fp32 tensors 1e-4 (fp32 arithmetic over 64-term sums),
 * except dr, dw and da in fp32: 2e-4, and 5e-3 when every decay sits at its floor 0.545 ("d.55" cases). Those
 * three use S_{t-1}, which the backward recovers by inverting up to 15 updates (dividing by the decay each step),
 * as the reference trainer's kernel does, so fp32 rounding can grow by up to 0.545^-15 ~ 9e3 before the next
 * checkpoint; measured max err up to ~9e-4 at the floor, ~3e-5 with mixed decays (the chunked backward, variant 16,
 * restarts from exact chunk start states: 1e-4 for all its fp32 tensors). bf16 tensors 1e-2 (inputs are
 * bf16 in both, outputs are rounded to bf16: 2^-9 relative per element, plus fp32 arithmetic); fp32 outputs of
 * bf16 cases (S_T, ds0) 1e-3. Every output buffer is poisoned with NaN before the
 * call, so an unwritten element fails. The references themselves are checked against central finite differences
 * (float64) first. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vector>

#include "kernels/cuda/adam.h"
#include "kernels/cuda/ce.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rwkv7_ew.h"
#include "kernels/cuda/wkv7.h"

#define CUDA_OK(call)                                                                                      \
    do {                                                                                                   \
        cudaError_t e_ = (call);                                                                           \
        if (e_ != cudaSuccess) {                                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));         \
            exit(2);                                                                                       \
        }                                                                                                  \
    } while (0)

static int g_fail = 0, g_rows = 0;
static const int NN = MRW_WKV7_N;

/* ------------------------------------------------------------------------------------------ random data */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
#include "test_rng.inc"
static double rnd_uniform(void) { return ((rnd_u64() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static double rnd_normal(void) { return sqrt(-2.0 * log(rnd_uniform())) * cos(6.283185307179586 * rnd_uniform()); }

static uint16_t f2bf(float f) { /* round to nearest even */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------------------------- float64 reference */
struct wkv_in {
    int B, T, H;
    std::vector<double> r, w, k, v, a, b, dy, s0, dsT; /* w is the log-space decay; s0/dsT empty = zero */
};
struct wkv_out {
    std::vector<double> y, sT, dr, dw, dk, dv, da, db, ds0;
};

/* Forward and backward for one (b, h), straight from the formulas of wkv7.h; keeps every state. */
static void ref_head(const wkv_in &in, int bb, int hh, wkv_out &o) {
    const int T = in.T, H = in.H, N = NN;
    std::vector<double> S((size_t)(T + 1) * N * N, 0.0), sa((size_t)T * N), dec((size_t)T * N);
    const size_t sbase = ((size_t)bb * H + hh) * N * N;
    if (!in.s0.empty())
        for (int e = 0; e < N * N; e++) S[e] = in.s0[sbase + e];
    auto at = [&](int t, int n) { return (((size_t)bb * T + t) * H + hh) * N + n; };
    for (int t = 0; t < T; t++) {
        const double *Sp = &S[(size_t)t * N * N];
        double *Sn = &S[(size_t)(t + 1) * N * N];
        for (int j = 0; j < N; j++) dec[(size_t)t * N + j] = exp(-exp(in.w[at(t, j)]));
        for (int i = 0; i < N; i++) {
            double s = 0;
            for (int j = 0; j < N; j++) s += Sp[i * N + j] * in.a[at(t, j)];
            sa[(size_t)t * N + i] = s;
        }
        for (int i = 0; i < N; i++) {
            double y = 0;
            for (int j = 0; j < N; j++) {
                Sn[i * N + j] = Sp[i * N + j] * dec[(size_t)t * N + j] + sa[(size_t)t * N + i] * in.b[at(t, j)] +
                                in.v[at(t, i)] * in.k[at(t, j)];
                y += Sn[i * N + j] * in.r[at(t, j)];
            }
            o.y[at(t, i)] = y;
        }
    }
    for (int e = 0; e < N * N; e++) o.sT[sbase + e] = S[(size_t)T * N * N + e];
    std::vector<double> dS(N * N, 0.0), dsa(N);
    if (!in.dsT.empty())
        for (int e = 0; e < N * N; e++) dS[e] = in.dsT[sbase + e];
    for (int t = T - 1; t >= 0; t--) {
        const double *Sp = &S[(size_t)t * N * N], *Sn = &S[(size_t)(t + 1) * N * N];
        for (int j = 0; j < N; j++) {
            double dr = 0;
            for (int i = 0; i < N; i++) dr += Sn[i * N + j] * in.dy[at(t, i)];
            o.dr[at(t, j)] = dr;
        }
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) dS[i * N + j] += in.dy[at(t, i)] * in.r[at(t, j)];
        for (int i = 0; i < N; i++) {
            double dv = 0, ds = 0;
            for (int j = 0; j < N; j++) dv += dS[i * N + j] * in.k[at(t, j)], ds += dS[i * N + j] * in.b[at(t, j)];
            o.dv[at(t, i)] = dv, dsa[i] = ds;
        }
        for (int j = 0; j < N; j++) {
            double dk = 0, db = 0, dd = 0, da = 0;
            for (int i = 0; i < N; i++) {
                dk += dS[i * N + j] * in.v[at(t, i)];
                db += dS[i * N + j] * sa[(size_t)t * N + i];
                dd += dS[i * N + j] * Sp[i * N + j];
                da += Sp[i * N + j] * dsa[i];
            }
            const double wl = in.w[at(t, j)];
            o.dk[at(t, j)] = dk, o.db[at(t, j)] = db, o.da[at(t, j)] = da;
            o.dw[at(t, j)] = dd * dec[(size_t)t * N + j] * -exp(wl);
        }
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                dS[i * N + j] = dS[i * N + j] * dec[(size_t)t * N + j] + dsa[i] * in.a[at(t, j)];
    }
    for (int e = 0; e < N * N; e++) o.ds0[sbase + e] = dS[e];
}

/* sa_t = S_{t-1} a_t of every step (what the forward saves for the backward), [B][T][H][N]. */
static std::vector<double> ref_sa(const wkv_in &in) {
    const int T = in.T, H = in.H, N = NN;
    std::vector<double> out((size_t)in.B * T * H * N), S(N * N);
    for (int bb = 0; bb < in.B; bb++)
        for (int hh = 0; hh < H; hh++) {
            const size_t sbase = ((size_t)bb * H + hh) * N * N;
            for (int e = 0; e < N * N; e++) S[e] = in.s0.empty() ? 0.0 : in.s0[sbase + e];
            for (int t = 0; t < T; t++) {
                const size_t at = (((size_t)bb * T + t) * H + hh) * N;
                std::vector<double> sa(N, 0.0);
                for (int i = 0; i < N; i++)
                    for (int j = 0; j < N; j++) sa[i] += S[i * N + j] * in.a[at + j];
                for (int i = 0; i < N; i++) {
                    out[at + i] = sa[i];
                    for (int j = 0; j < N; j++)
                        S[i * N + j] = S[i * N + j] * exp(-exp(in.w[at + j])) + sa[i] * in.b[at + j] + in.v[at + i] * in.k[at + j];
                }
            }
        }
    return out;
}

static void ref_all(const wkv_in &in, wkv_out &o) {
    const size_t n = (size_t)in.B * in.T * in.H * NN, ns = (size_t)in.B * in.H * NN * NN;
    o.y.assign(n, 0), o.dr.assign(n, 0), o.dw.assign(n, 0), o.dk.assign(n, 0), o.dv.assign(n, 0);
    o.da.assign(n, 0), o.db.assign(n, 0), o.sT.assign(ns, 0), o.ds0.assign(ns, 0);
    for (int bb = 0; bb < in.B; bb++)
        for (int hh = 0; hh < in.H; hh++) ref_head(in, bb, hh, o);
}

/* Loss L = sum y*dy + sum S_T*dsT; its gradient is what the backward returns. */
static double ref_loss(const wkv_in &in) {
    wkv_out o;
    ref_all(in, o);
    double L = 0;
    for (size_t e = 0; e < o.y.size(); e++) L += o.y[e] * in.dy[e];
    for (size_t e = 0; e < o.sT.size(); e++) L += o.sT[e] * in.dsT[e];
    return L;
}

/* ------------------------------------------------------------------------------------------ inputs */
enum decay_kind { DECAY_MIXED, DECAY_STRONG };

static wkv_in make_inputs(int B, int T, int H, bool bf16, bool s0, bool dsT, decay_kind dk) {
    wkv_in in;
    in.B = B, in.T = T, in.H = H;
    const size_t n = (size_t)B * T * H * NN, ns = (size_t)B * H * NN * NN;
    in.r.resize(n), in.w.resize(n), in.k.resize(n), in.v.resize(n), in.a.resize(n), in.b.resize(n);
    in.dy.resize(n);
    std::vector<double> kk(NN);
    for (size_t row = 0; row < n / NN; row++) {
        /* kappa_hat: a unit vector; a = -kappa_hat, b = kappa_hat * alpha, alpha in (0, 1) (rwkv7.md step 10). */
        double nrm = 0;
        for (int j = 0; j < NN; j++) kk[j] = rnd_normal(), nrm += kk[j] * kk[j];
        nrm = sqrt(nrm);
        for (int j = 0; j < NN; j++) {
            const size_t e = row * NN + j;
            const double omega = dk == DECAY_STRONG ? 6.0 + rnd_normal() : 2.0 * rnd_normal();
            in.w[e] = -log1p(exp(-omega)) - 0.5; /* -softplus(-omega) - 0.5 */
            in.r[e] = 0.5 * rnd_normal(), in.k[e] = 0.5 * rnd_normal(), in.v[e] = rnd_normal();
            in.a[e] = -kk[j] / nrm, in.b[e] = kk[j] / nrm * rnd_uniform();
            in.dy[e] = rnd_normal();
        }
    }
    if (s0) {
        in.s0.resize(ns);
        for (auto &x : in.s0) x = 0.3 * rnd_normal();
    }
    if (dsT) {
        in.dsT.resize(ns);
        for (auto &x : in.dsT) x = 0.3 * rnd_normal();
    }
    if (bf16) /* the kernel sees bf16 inputs: the reference uses the same rounded values */
        for (std::vector<double> *vp : {&in.r, &in.w, &in.k, &in.v, &in.a, &in.b, &in.dy})
            for (auto &x : *vp) x = bf2f(f2bf((float)x));
    else
        for (std::vector<double> *vp : {&in.r, &in.w, &in.k, &in.v, &in.a, &in.b, &in.dy, &in.s0, &in.dsT})
            for (auto &x : *vp) x = (float)x;
    for (std::vector<double> *vp : {&in.s0, &in.dsT})
        for (auto &x : *vp) x = (float)x;
    return in;
}

/* ------------------------------------------------------------------------------------ device helpers */
struct dbuf {
    void *p = nullptr;
    size_t bytes = 0;
    explicit dbuf(size_t nbytes) : bytes(nbytes) {
        CUDA_OK(cudaMalloc(&p, nbytes ? nbytes : 16));
        CUDA_OK(cudaMemset(p, 0xFF, nbytes ? nbytes : 16)); /* NaN in fp32 and bf16 */
    }
    ~dbuf() { cudaFree(p); }
    dbuf(const dbuf &) = delete;
    dbuf &operator=(const dbuf &) = delete;
};

static void upload(dbuf &d, const std::vector<double> &x, bool bf16) {
    if (bf16) {
        std::vector<uint16_t> h(x.size());
        for (size_t e = 0; e < x.size(); e++) h[e] = f2bf((float)x[e]);
        CUDA_OK(cudaMemcpy(d.p, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
    } else {
        std::vector<float> h(x.begin(), x.end());
        CUDA_OK(cudaMemcpy(d.p, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    }
}

static std::vector<double> download(const dbuf &d, size_t n, bool bf16) {
    std::vector<double> out(n);
    if (bf16) {
        std::vector<uint16_t> h(n);
        CUDA_OK(cudaMemcpy(h.data(), d.p, n * 2, cudaMemcpyDeviceToHost));
        for (size_t e = 0; e < n; e++) out[e] = bf2f(h[e]);
    } else {
        std::vector<float> h(n);
        CUDA_OK(cudaMemcpy(h.data(), d.p, n * 4, cudaMemcpyDeviceToHost));
        for (size_t e = 0; e < n; e++) out[e] = h[e];
    }
    return out;
}

static void row(const char *op, const char *tensor, const char *dt, const char *shape, int K,
                const std::vector<double> &got, const std::vector<double> &ref, double tol, double ms) {
    double maxd = 0, maxr = 0, sd = 0, sr = 0;
    bool nan = false;
    for (size_t e = 0; e < ref.size(); e++) {
        const double d = got[e] - ref[e];
        if (!isfinite(got[e])) nan = true;
        maxd = fmax(maxd, fabs(d)), maxr = fmax(maxr, fabs(ref[e]));
        sd += d * d, sr += ref[e] * ref[e];
    }
    const double emax = maxr > 0 ? maxd / maxr : maxd, enorm = sr > 0 ? sqrt(sd / sr) : sqrt(sd);
    const bool ok = !nan && emax <= tol && enorm <= tol;
    g_rows++;
    if (!ok) g_fail++;
    printf("| %-9s | %-6s | %-4s | %-14s | %d | %9.2e | %9.2e | %7.0e | %-4s | %8.3f |%s\n", op, tensor, dt, shape, K,
           emax, enorm, tol, ok ? "pass" : "FAIL", ms, nan ? " (NaN/unwritten)" : "");
}

/* One case: GPU forward + backward vs the float64 reference. */
static void run_case(int B, int T, int H, bool bf16, bool s0, bool dsT, decay_kind dk, int K, int Kb = -1) {
    if (Kb < 0) Kb = K;
    wkv_in in = make_inputs(B, T, H, bf16, s0, dsT, dk);
    wkv_out ref;
    ref_all(in, ref);
    const size_t n = (size_t)B * T * H * NN, ns = (size_t)B * H * NN * NN, es = bf16 ? 2 : 4;
    const mrw_cuda_dtype dt = bf16 ? MRW_CUDA_BF16 : MRW_CUDA_F32;
    dbuf r(n * es), w(n * es), k(n * es), v(n * es), a(n * es), b(n * es), dy(n * es), y(n * es);
    dbuf dr(n * es), dw(n * es), dk_(n * es), dv(n * es), da(n * es), db(n * es);
    dbuf ds0(ns * 4), s0b(ns * 4), dsTb(ns * 4);
    dbuf ck(mrw_cuda_wkv7_ckpt_floats(B, T, H) * 4), sa(mrw_cuda_wkv7_sa_floats(B, T, H) * 4);
    upload(r, in.r, bf16), upload(w, in.w, bf16), upload(k, in.k, bf16), upload(v, in.v, bf16);
    upload(a, in.a, bf16), upload(b, in.b, bf16), upload(dy, in.dy, bf16);
    if (s0) upload(s0b, in.s0, false);
    if (dsT) upload(dsTb, in.dsT, false);
    cudaEvent_t e0, e1, e2;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    CUDA_OK(cudaEventCreate(&e2));
    mrw_error err;
    CUDA_OK(cudaEventRecord(e0));
    mrw_status st = mrw_cuda_wkv7_forward_ex(dt, B, T, H, r.p, w.p, k.p, v.p, a.p, b.p, s0 ? (float *)s0b.p : nullptr,
                                             y.p, (float *)ck.p, (float *)sa.p, nullptr, K, &err);
    if (st != MRW_OK) fprintf(stderr, "forward: %s\n", err.msg), g_fail++;
    CUDA_OK(cudaEventRecord(e1));
    if (Kb == MRW_WKV7_CHUNKED || Kb == MRW_WKV7_CHUNKED3) /* the chunked backward restarts from the forward's s0 */
        st = mrw_cuda_wkv7_backward_s0(dt, B, T, H, r.p, w.p, k.p, v.p, a.p, b.p, dy.p, s0 ? (float *)s0b.p : nullptr,
                                       dsT ? (float *)dsTb.p : nullptr, (const float *)ck.p, (const float *)sa.p,
                                       dr.p, dw.p, dk_.p, dv.p, da.p, db.p, (float *)ds0.p, nullptr, Kb, &err);
    else
        st = mrw_cuda_wkv7_backward_ex(dt, B, T, H, r.p, w.p, k.p, v.p, a.p, b.p, dy.p, dsT ? (float *)dsTb.p : nullptr,
                                       (const float *)ck.p, (const float *)sa.p, dr.p, dw.p, dk_.p, dv.p, da.p, db.p,
                                       (float *)ds0.p, nullptr, Kb, &err);
    if (st != MRW_OK) fprintf(stderr, "backward: %s\n", err.msg), g_fail++;
    CUDA_OK(cudaEventRecord(e2));
    CUDA_OK(cudaDeviceSynchronize());
    float fms = 0, bms = 0;
    CUDA_OK(cudaEventElapsedTime(&fms, e0, e1));
    CUDA_OK(cudaEventElapsedTime(&bms, e1, e2));
    cudaEventDestroy(e0), cudaEventDestroy(e1), cudaEventDestroy(e2);

    /* final state = last checkpoint of each (b, h) */
    const int nc = (T + MRW_WKV7_CHUNK - 1) / MRW_WKV7_CHUNK;
    std::vector<double> ckh = download(ck, mrw_cuda_wkv7_ckpt_floats(B, T, H), false), sT(ns);
    for (int bh = 0; bh < B * H; bh++)
        for (int e = 0; e < NN * NN; e++) sT[(size_t)bh * NN * NN + e] = ckh[((size_t)bh * nc + nc - 1) * NN * NN + e];

    char shape[64];
    snprintf(shape, sizeof shape, "%dx%dx%d%s%s%s", B, T, H, s0 ? " s0" : "", dsT ? " dS" : "",
             dk == DECAY_STRONG ? " d.55" : "");
    const char *ds = bf16 ? "bf16" : "f32";
    /* tol32: fp32 outputs of a bf16 case (the state and its gradient); tol_inv: the gradients computed from the
     * state the backward recovers by inversion (dr, dw, da), see the header comment. */
    const double tol = bf16 ? 1e-2 : 1e-4, tol32 = bf16 ? 1e-3 : 1e-4;
    const double tol_inv = bf16 ? 1e-2 : Kb == MRW_WKV7_CHUNKED || Kb == MRW_WKV7_CHUNKED3 ? 1e-4 : dk == DECAY_STRONG ? 5e-3 : 2e-4;
    if (K != Kb) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), " b%d", Kb);
    row("wkv7_fwd", "y", ds, shape, K, download(y, n, bf16), ref.y, tol, fms);
    row("wkv7_fwd", "S_T", ds, shape, K, sT, ref.sT, tol32, fms);
    if (K == MRW_WKV7_CHUNKED || K == MRW_WKV7_CHUNKED3) { /* the same checkpoints and sa as the step-by-step forward writes */
        std::vector<double> sah = download(sa, n, false);
        row("wkv7_fwd", "sa", ds, shape, K, sah, ref_sa(in), tol32, fms);
    }
    K = Kb;
    row("wkv7_bwd", "dr", ds, shape, K, download(dr, n, bf16), ref.dr, tol_inv, bms);
    row("wkv7_bwd", "dw", ds, shape, K, download(dw, n, bf16), ref.dw, tol_inv, bms);
    row("wkv7_bwd", "dk", ds, shape, K, download(dk_, n, bf16), ref.dk, tol, bms);
    row("wkv7_bwd", "dv", ds, shape, K, download(dv, n, bf16), ref.dv, tol, bms);
    row("wkv7_bwd", "da", ds, shape, K, download(da, n, bf16), ref.da, tol_inv, bms);
    row("wkv7_bwd", "db", ds, shape, K, download(db, n, bf16), ref.db, tol, bms);
    row("wkv7_bwd", "ds0", ds, shape, K, download(ds0, ns, false), ref.ds0, tol32, bms);
}

/* The float64 reference backward against central finite differences of L along random directions. */
static void check_reference(void) {
    wkv_in in = make_inputs(1, 7, 2, false, true, true, DECAY_MIXED);
    wkv_out g;
    ref_all(in, g);
    struct {
        const char *name;
        std::vector<double> *x;
        const std::vector<double> *grad;
    } t[] = {{"r", &in.r, &g.dr}, {"w", &in.w, &g.dw}, {"k", &in.k, &g.dk}, {"v", &in.v, &g.dv},
             {"a", &in.a, &g.da}, {"b", &in.b, &g.db}, {"s0", &in.s0, &g.ds0}};
    for (auto &c : t) {
        std::vector<double> dir(c.x->size()), x0 = *c.x;
        double an = 0;
        for (size_t e = 0; e < dir.size(); e++) dir[e] = rnd_normal(), an += dir[e] * (*c.grad)[e];
        const double h = 1e-6;
        for (size_t e = 0; e < dir.size(); e++) (*c.x)[e] = x0[e] + h * dir[e];
        const double lp = ref_loss(in);
        for (size_t e = 0; e < dir.size(); e++) (*c.x)[e] = x0[e] - h * dir[e];
        const double lm = ref_loss(in);
        *c.x = x0;
        /* relative to |an|, but never to less than 1% of |dir| |grad|: a direction almost orthogonal to the
         * gradient would otherwise turn the difference quotient's rounding into a false failure */
        double dd = 0, gg = 0;
        for (size_t e = 0; e < dir.size(); e++) dd += dir[e] * dir[e], gg += (*c.grad)[e] * (*c.grad)[e];
        const double fd = (lp - lm) / (2 * h), rel = fabs(fd - an) / fmax(fmax(fabs(an), 1e-2 * sqrt(dd * gg)), 1e-12);
        const bool ok = rel < 1e-6;
        g_rows++;
        if (!ok) g_fail++;
        printf("| ref-fd    | %-6s | f64  | 1x7x2 s0 dS    | - | %9.2e |         - |   1e-06 | %-4s |        - |\n",
               c.name, rel, ok ? "pass" : "FAIL");
    }
}

static void check_errors(void) {
    mrw_error err;
    int ok = 1;
    void *p = nullptr;
    CUDA_OK(cudaMalloc(&p, 1 << 20));
    float *f = (float *)p;
    ok &= mrw_cuda_wkv7_forward(MRW_CUDA_F32, 1, 0, 1, p, p, p, p, p, p, nullptr, p, f, f, nullptr, &err) == MRW_E_ARG;
    ok &= mrw_cuda_wkv7_forward(MRW_CUDA_F32, 1, 4, 1, nullptr, p, p, p, p, p, nullptr, p, f, f, nullptr, &err) ==
          MRW_E_ARG;
    ok &= strstr(err.msg, "tensor r") != nullptr;
    ok &= mrw_cuda_wkv7_forward_ex(MRW_CUDA_F32, 1, 4, 1, p, p, p, p, p, p, nullptr, p, f, f, nullptr, 3, &err) ==
          MRW_E_ARG;
    ok &= mrw_cuda_wkv7_backward_ex(MRW_CUDA_F32, 1, 4, 1, p, p, p, p, p, p, p, nullptr, f, f, p, p, p, p, p, p,
                                    nullptr, nullptr, 3, &err) == MRW_E_ARG;
    ok &= mrw_cuda_wkv7_forward(MRW_CUDA_BF16, 1, 4, 1, (char *)p + 2, p, p, p, p, p, nullptr, p, f, f, nullptr,
                                &err) == MRW_E_ARG;
    ok &= mrw_cuda_wkv7_backward(MRW_CUDA_F32, 1, 4, 1, p, p, p, p, p, p, p, nullptr, f, f, p, p, p, p, p, nullptr,
                                 nullptr, nullptr, &err) == MRW_E_ARG;
    ok &= mrw_cuda_wkv7_forward((mrw_cuda_dtype)7, 1, 4, 1, p, p, p, p, p, p, nullptr, p, f, f, nullptr, &err) ==
          MRW_E_UNSUPPORTED;
    ok &= mrw_cuda_wkv7_forward_ex((mrw_cuda_dtype)7, 1, 4, 1, p, p, p, p, p, p, nullptr, p, f, f, nullptr,
                                   MRW_WKV7_CHUNKED, &err) == MRW_E_UNSUPPORTED;
    ok &= mrw_cuda_wkv7_backward_s0(MRW_CUDA_F32, 1, 4, 1, p, p, p, p, p, p, p, f + 1, nullptr, f, f, p, p, p, p, p,
                                    p, nullptr, nullptr, MRW_WKV7_CHUNKED, &err) == MRW_E_ARG;
    ok &= mrw_cuda_wkv7_backward_s0(MRW_CUDA_F32, 1, 4, 1, p, p, p, p, p, p, p, nullptr, nullptr, f, f, p, p, p, p,
                                    nullptr, p, nullptr, nullptr, MRW_WKV7_CHUNKED, &err) == MRW_E_ARG;
    CUDA_OK(cudaDeviceSynchronize());
    cudaFree(p);
    g_rows++;
    if (!ok) g_fail++;
    printf("| args      | -      | -    | bad shape/ptr  | - |         - |         - |       - | %-4s |        - |\n",
           ok ? "pass" : "FAIL");
}

#include "train_ops.inc"

int main(int argc, char **argv) {
    bool quick = false, train_only = false, wkv_only = false; /* --train-ops: only the training-step rows (no WKV7
                                                                 * rows); --wkv: only the WKV7 rows */
    for (int i = 1; i < argc; i++)
        quick |= !strcmp(argv[i], "--quick"), train_only |= !strcmp(argv[i], "--train-ops"),
            wkv_only |= !strcmp(argv[i], "--wkv");
    /* Fresh inputs on every run; the seed is printed so a failure can be replayed with MRW_TEST_SEED=<seed>. */
    const char *seed_env = getenv("MRW_TEST_SEED");
    const uint64_t seed = seed_env ? strtoull(seed_env, nullptr, 0) : (uint64_t)time(nullptr);
    g_rng = seed * 0x9E3779B97F4A7C15ull + 1;
    printf("seed %llu (MRW_TEST_SEED)\n", (unsigned long long)seed);
    if (argc > 1 && !strcmp(argv[1], "--ref-only")) { /* the float64 reference alone: runs without a GPU */
        check_reference();
        check_train_reference();
        return g_fail ? 1 : 0;
    }
    int dev = 0;
    cudaDeviceProp prop;
    CUDA_OK(cudaGetDevice(&dev));
    CUDA_OK(cudaGetDeviceProperties(&prop, dev));
    printf("device: %s, %d SMs, sm_%d%d%s\n", prop.name, prop.multiProcessorCount, prop.major, prop.minor,
           quick ? " (quick)" : "");
    if (argc > 1 && !strcmp(argv[1], "--device")) return 0;
    printf("| op        | tensor | type | shape BxTxH    | K |   max err |  norm err |     tol | ok   |  time ms |\n");
    printf("|-----------|--------|------|----------------|---|-----------|-----------|---------|------|----------|\n");
    if (train_only) {
        run_train_ops(quick);
        printf("%d of %d rows passed\n", g_rows - g_fail, g_rows);
        return g_fail ? 1 : 0;
    }
    check_reference();
    check_errors();
    /* args: B, T, H, bf16, s0, dsT, decay, variant (0 default, 1 tiled, 2/4/8 row-sliced) */
    run_case(1, 40, 2, false, true, true, DECAY_MIXED, 0);
    run_case(1, 16, 1, true, false, false, DECAY_MIXED, 0);
    run_case(1, 5, 1, false, true, true, DECAY_MIXED, 2);
    run_case(1, 19, 2, true, true, true, DECAY_MIXED, 1);
    run_case(1, 37, 1, false, true, true, DECAY_MIXED, 2);
    run_case(1, 33, 2, false, true, true, DECAY_MIXED, 1);
    run_case(1, 21, 1, true, true, true, DECAY_MIXED, 8);
    /* the chunked kernels (variant 16): the same cases, and each direction paired with a step-by-step one */
    const int C = MRW_WKV7_CHUNKED;
    run_case(1, 40, 2, false, true, true, DECAY_MIXED, C);
    run_case(1, 16, 1, true, false, false, DECAY_MIXED, C);
    run_case(1, 5, 1, false, true, true, DECAY_MIXED, C);
    run_case(1, 19, 2, true, true, true, DECAY_MIXED, C);
    run_case(1, 37, 1, false, true, true, DECAY_MIXED, C);
    run_case(1, 33, 2, false, true, true, DECAY_MIXED, C, 2);
    run_case(1, 21, 1, true, true, true, DECAY_MIXED, 1, C);
    /* the backward's 3-blocks-per-SM kernel (variant 16 takes it when B H > 2 SMs; 17 forces it), after the
     * chunked and the tiled forward */
    const int C3 = MRW_WKV7_CHUNKED3;
    run_case(1, 40, 2, false, true, true, DECAY_MIXED, C, C3);
    run_case(1, 19, 2, true, true, true, DECAY_MIXED, C, C3);
    run_case(1, 5, 1, false, true, true, DECAY_MIXED, C, C3);
    run_case(1, 37, 1, true, false, true, DECAY_MIXED, 1, C3);
    run_case(1, 16, 1, true, false, false, DECAY_MIXED, C3);
    if (!quick) {
        run_case(2, 257, 4, true, true, false, DECAY_MIXED, C, C3);
        run_case(2, 257, 4, false, true, true, DECAY_MIXED, 1, C3);
        run_case(1, 2048, 2, false, false, true, DECAY_STRONG, C, C3);
        run_case(3, 1000, 5, true, false, false, DECAY_MIXED, C, C3);
        run_case(1, 4096, 1, true, true, true, DECAY_STRONG, C, C3);
        run_case(17, 35, 16, true, true, true, DECAY_MIXED, C); /* 272 blocks: variant 16 picks the 3-per-SM kernel */
        run_case(17, 35, 16, false, false, false, DECAY_MIXED, C);
        /* 256 blocks: the 2-per-SM backward with every SM busy (the 0.4B trainer's B16 H16, T not a multiple of 16) */
        run_case(16, 35, 16, true, true, true, DECAY_MIXED, C);
        run_case(16, 35, 16, false, false, true, DECAY_STRONG, C);
        run_case(2, 100, 3, false, true, true, DECAY_MIXED, C);
        run_case(2, 257, 4, true, true, false, DECAY_MIXED, C);
        run_case(1, 2048, 2, false, false, true, DECAY_STRONG, C);
        run_case(1, 2048, 2, false, true, false, DECAY_MIXED, C);
        run_case(1, 64, 2, false, true, true, DECAY_STRONG, C);
        run_case(3, 1000, 5, true, false, false, DECAY_MIXED, C);
        run_case(1, 4096, 1, true, true, true, DECAY_STRONG, C);
        run_case(8, 64, 16, true, false, false, DECAY_MIXED, C);
        /* fp32: the step-by-step backward inverts the update from the checkpoints, which needs them to fp32
         * accuracy; the chunked forward's bf16 path (one TF32 product) is not meant to feed it */
        run_case(2, 257, 4, false, true, true, DECAY_MIXED, C, 2);
        run_case(2, 257, 4, false, true, true, DECAY_MIXED, 1, C);
        for (int K : {1, 2, 4, 8}) run_case(2, 100, 3, false, true, true, DECAY_MIXED, K);
        for (int K : {1, 2, 4, 8}) run_case(2, 257, 4, true, true, false, DECAY_MIXED, K);
        run_case(1, 2048, 2, false, false, true, DECAY_STRONG, 0);
        run_case(1, 2048, 2, false, false, true, DECAY_STRONG, 2);
        run_case(1, 2048, 2, false, false, true, DECAY_STRONG, 1);
        run_case(1, 2048, 2, false, true, false, DECAY_MIXED, 0);
        run_case(3, 1000, 5, true, false, false, DECAY_MIXED, 0);
        run_case(1, 4096, 1, true, true, true, DECAY_STRONG, 0);
        run_case(8, 64, 16, true, false, false, DECAY_MIXED, 0);
    }
    if (!wkv_only) run_train_ops(quick);
    printf("%d of %d rows passed\n", g_rows - g_fail, g_rows);
    return g_fail ? 1 : 0;
}
