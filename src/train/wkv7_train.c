/* The WKV7 recurrence for training: a forward over a batch that saves the state every MRW_WKV_CKPT steps,
 * and its exact backward. The backward walks the chunks from the last to the first; for each it recomputes
 * the chunk's states from the checkpoint (the same float operations as the forward, so the same values) and
 * then runs the adjoint recurrence backwards through the chunk. No state is recovered by inversion.
 *
 * One step (per head, i = value row, j = key column; every right-hand term uses the old S):
 *   sa_i = sum_j S_ij a_j;   S'_ij = S_ij w_j + sa_i b_j + v_i k_j;   y_i = sum_j S'_ij r_j.
 * Adjoint, with dS = dL/dS' (flowing back from later steps) plus dy_i r_j:
 *   dr_j = sum_i S'_ij dy_i
 *   dw_j = sum_i dS_ij S_ij,  db_j = sum_i dS_ij sa_i,  dk_j = sum_i dS_ij v_i
 *   dsa_i = sum_j dS_ij b_j,  dv_i = sum_j dS_ij k_j,  da_j = sum_i dsa_i S_ij
 *   dL/dS_ij = dS_ij w_j + dsa_i a_j. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/vmath.h"
#include "train/rwkv7_train.h"

#define CK MRW_WKV_CKPT

/* One step from Sin to Sout (may alias); sa receives S a. */
static inline void wkv_step(const float *Sin, float *Sout, int N, const float *w, const float *k, const float *v,
                            const float *a, const float *b, float *sa) {
    for (int i = 0; i < N; i++) {
        const float *s = Sin + (size_t)i * N;
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int j = 0; j < N; j++) acc += s[j] * a[j];
        sa[i] = acc;
    }
    for (int i = 0; i < N; i++) {
        const float *s = Sin + (size_t)i * N;
        float *o = Sout + (size_t)i * N;
        const float sai = sa[i], vi = v[i];
#pragma omp simd
        for (int j = 0; j < N; j++) o[j] = s[j] * w[j] + sai * b[j] + vi * k[j];
    }
}

static inline void wkv_out(const float *S, int N, const float *r, float *y) {
    for (int i = 0; i < N; i++) {
        const float *s = S + (size_t)i * N;
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int j = 0; j < N; j++) acc += s[j] * r[j];
        y[i] = acc;
    }
}


#ifdef MRW_VMATH_AVX512
/* N = 64 with AVX-512: one pass over the rows of S per step (each row is 4 vectors). y may be NULL. */
static void step64(const float *Sin, float *Sout, const float *w, const float *k, const float *v, const float *a,
                   const float *b, const float *r, float *sa, float *y) {
    __m512 W_[4], K_[4], A_[4], B_[4], R_[4];
    for (int q = 0; q < 4; q++) {
        W_[q] = _mm512_loadu_ps(w + 16 * q), K_[q] = _mm512_loadu_ps(k + 16 * q);
        A_[q] = _mm512_loadu_ps(a + 16 * q), B_[q] = _mm512_loadu_ps(b + 16 * q);
        R_[q] = y ? _mm512_loadu_ps(r + 16 * q) : _mm512_setzero_ps();
    }
    for (int i = 0; i < 64; i++) {
        __m512 s[4];
        for (int q = 0; q < 4; q++) s[q] = _mm512_loadu_ps(Sin + i * 64 + 16 * q);
        __m512 pa = _mm512_mul_ps(s[0], A_[0]);
        for (int q = 1; q < 4; q++) pa = _mm512_fmadd_ps(s[q], A_[q], pa);
        const float sai = _mm512_reduce_add_ps(pa);
        sa[i] = sai;
        const __m512 sv = _mm512_set1_ps(sai), vi = _mm512_set1_ps(v[i]);
        __m512 pr = _mm512_setzero_ps();
        for (int q = 0; q < 4; q++) {
            s[q] = _mm512_fmadd_ps(s[q], W_[q], _mm512_fmadd_ps(sv, B_[q], _mm512_mul_ps(vi, K_[q])));
            _mm512_storeu_ps(Sout + i * 64 + 16 * q, s[q]);
            pr = _mm512_fmadd_ps(s[q], R_[q], pr);
        }
        if (y) y[i] = _mm512_reduce_add_ps(pr);
    }
}

/* The adjoint of one step (see the top of the file), N = 64, rows fused: dS is updated in place. */
static void back64(const float *Snew, const float *Sold, float *dS, const float *sa, const float *dy,
                   const float *r, const float *w, const float *k, const float *v, const float *a, const float *b,
                   float *dr, float *dw, float *dk, float *dv, float *da, float *db) {
    __m512 R_[4], W_[4], K_[4], A_[4], B_[4], ar[4], aw[4], ab[4], ak[4], aa[4];
    for (int q = 0; q < 4; q++) {
        R_[q] = _mm512_loadu_ps(r + 16 * q), W_[q] = _mm512_loadu_ps(w + 16 * q);
        K_[q] = _mm512_loadu_ps(k + 16 * q), A_[q] = _mm512_loadu_ps(a + 16 * q);
        B_[q] = _mm512_loadu_ps(b + 16 * q);
        ar[q] = aw[q] = ab[q] = ak[q] = aa[q] = _mm512_setzero_ps();
    }
    for (int i = 0; i < 64; i++) {
        const __m512 dyi = _mm512_set1_ps(dy[i]), sai = _mm512_set1_ps(sa[i]), vi = _mm512_set1_ps(v[i]);
        __m512 g[4], so[4], ps = _mm512_setzero_ps(), pv = _mm512_setzero_ps();
        for (int q = 0; q < 4; q++) {
            const __m512 sn = _mm512_loadu_ps(Snew + i * 64 + 16 * q);
            so[q] = _mm512_loadu_ps(Sold + i * 64 + 16 * q);
            ar[q] = _mm512_fmadd_ps(sn, dyi, ar[q]);
            g[q] = _mm512_fmadd_ps(dyi, R_[q], _mm512_loadu_ps(dS + i * 64 + 16 * q));
            aw[q] = _mm512_fmadd_ps(g[q], so[q], aw[q]);
            ab[q] = _mm512_fmadd_ps(g[q], sai, ab[q]);
            ak[q] = _mm512_fmadd_ps(g[q], vi, ak[q]);
            ps = _mm512_fmadd_ps(g[q], B_[q], ps);
            pv = _mm512_fmadd_ps(g[q], K_[q], pv);
        }
        dv[i] = _mm512_reduce_add_ps(pv);
        const __m512 dsa = _mm512_set1_ps(_mm512_reduce_add_ps(ps));
        for (int q = 0; q < 4; q++) {
            aa[q] = _mm512_fmadd_ps(dsa, so[q], aa[q]);
            _mm512_storeu_ps(dS + i * 64 + 16 * q, _mm512_fmadd_ps(g[q], W_[q], _mm512_mul_ps(dsa, A_[q])));
        }
    }
    for (int q = 0; q < 4; q++) {
        _mm512_storeu_ps(dr + 16 * q, ar[q]), _mm512_storeu_ps(dw + 16 * q, aw[q]);
        _mm512_storeu_ps(dk + 16 * q, ak[q]), _mm512_storeu_ps(da + 16 * q, aa[q]);
        _mm512_storeu_ps(db + 16 * q, ab[q]);
    }
}
#endif

void mrw_wkv7_train_fwd(int B, int T, int H, int N, const float *r, const float *w, const float *k, const float *v,
                        const float *a, const float *b, float *y, float *ckpt, int n_threads) {
    const int C = H * N, nck = (T + CK - 1) / CK;
    const size_t NN = (size_t)N * N;
#pragma omp parallel num_threads(n_threads)
    {
        float *S = malloc(NN * sizeof *S + (size_t)N * sizeof(float));
        float *sa = S ? S + NN : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < B * H; bh++) {
            if (!S) continue; /* cannot happen for sane N; leaves y untouched */
            const int bi = bh / H, h = bh % H;
            float *ck = ckpt + ((size_t)bi * H + h) * nck * NN;
            memset(S, 0, NN * sizeof *S);
            for (int t = 0; t < T; t++) {
                if (t % CK == 0) memcpy(ck + (size_t)(t / CK) * NN, S, NN * sizeof *S);
                const size_t o = ((size_t)bi * T + t) * C + (size_t)h * N;
#ifdef MRW_VMATH_AVX512
                if (N == 64) {
                    step64(S, S, w + o, k + o, v + o, a + o, b + o, r + o, sa, y + o);
                    continue;
                }
#endif
                wkv_step(S, S, N, w + o, k + o, v + o, a + o, b + o, sa);
                wkv_out(S, N, r + o, y + o);
            }
        }
        free(S);
    }
}

size_t mrw_wkv7_train_scratch(int N) {
    /* CK + 1 states, dS, sa for CK steps, dsa */
    return (size_t)(CK + 2) * N * N + (size_t)(CK + 1) * N + 16;
}

void mrw_wkv7_train_bwd(int B, int T, int H, int N, const float *r, const float *w, const float *k,
                        const float *v, const float *a, const float *b, const float *ckpt, const float *dy,
                        float *dr, float *dw, float *dk, float *dv, float *da, float *db, float *scratch,
                        int n_threads) {
    const int C = H * N, nck = (T + CK - 1) / CK;
    const size_t NN = (size_t)N * N, per = mrw_wkv7_train_scratch(N);
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
    for (int bh = 0; bh < B * H; bh++) {
        float *st = scratch + per * (size_t)omp_get_thread_num();
        float *dS = st + (size_t)(CK + 1) * NN, *sa = dS + NN, *dsa = sa + (size_t)CK * N;
        const int bi = bh / H, h = bh % H;
        const float *ck = ckpt + ((size_t)bi * H + h) * nck * NN;
        memset(dS, 0, NN * sizeof *dS);
        for (int c = nck - 1; c >= 0; c--) {
            const int t0 = c * CK, t1 = t0 + CK < T ? t0 + CK : T;
            memcpy(st, ck + (size_t)c * NN, NN * sizeof *st);
            for (int t = t0; t < t1; t++) {
                const size_t o = ((size_t)bi * T + t) * C + (size_t)h * N;
                const int s = t - t0;
#ifdef MRW_VMATH_AVX512
                if (N == 64) {
                    step64(st + (size_t)s * NN, st + (size_t)(s + 1) * NN, w + o, k + o, v + o, a + o, b + o, NULL,
                           sa + (size_t)s * N, NULL);
                    continue;
                }
#endif
                wkv_step(st + (size_t)s * NN, st + (size_t)(s + 1) * NN, N, w + o, k + o, v + o, a + o, b + o,
                         sa + (size_t)s * N);
            }
            for (int t = t1 - 1; t >= t0; t--) {
                const size_t o = ((size_t)bi * T + t) * C + (size_t)h * N;
                const int s = t - t0;
                const float *Snew = st + (size_t)(s + 1) * NN, *Sold = st + (size_t)s * NN, *sat = sa + (size_t)s * N;
                const float *dyt = dy + o, *rt = r + o, *wt = w + o, *kt = k + o, *vt = v + o, *at = a + o, *bt = b + o;
                float *drt = dr + o, *dwt = dw + o, *dkt = dk + o, *dvt = dv + o, *dat = da + o, *dbt = db + o;
#ifdef MRW_VMATH_AVX512
                if (N == 64) {
                    back64(Snew, Sold, dS, sat, dyt, rt, wt, kt, vt, at, bt, drt, dwt, dkt, dvt, dat, dbt);
                    continue;
                }
#endif
                for (int j = 0; j < N; j++) drt[j] = dwt[j] = dkt[j] = dbt[j] = dat[j] = 0;
                for (int i = 0; i < N; i++) {
                    const float *sn = Snew + (size_t)i * N, *so = Sold + (size_t)i * N;
                    float *ds = dS + (size_t)i * N;
                    const float dyi = dyt[i], sai = sat[i], vi = vt[i];
                    float dsai = 0, dvi = 0;
#pragma omp simd reduction(+ : dsai, dvi)
                    for (int j = 0; j < N; j++) {
                        drt[j] += sn[j] * dyi;
                        const float g = ds[j] + dyi * rt[j];
                        ds[j] = g;
                        dwt[j] += g * so[j];
                        dbt[j] += g * sai;
                        dkt[j] += g * vi;
                        dsai += g * bt[j];
                        dvi += g * kt[j];
                    }
                    dsa[i] = dsai;
                    dvt[i] = dvi;
                }
                for (int i = 0; i < N; i++) {
                    const float *so = Sold + (size_t)i * N;
                    float *ds = dS + (size_t)i * N;
                    const float dsai = dsa[i];
#pragma omp simd
                    for (int j = 0; j < N; j++) {
                        dat[j] += dsai * so[j];
                        ds[j] = ds[j] * wt[j] + dsai * at[j];
                    }
                }
            }
        }
    }
}
