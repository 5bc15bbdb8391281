"""Chunked (WY / UT-form) WKV7 forward and backward in float64 numpy, checked against the step-by-step recurrence.

This is the derivation behind src/kernels/cuda/wkv7_chunk.cu, written as plain matrix algebra so that every
formula is checked on the CPU before it is a kernel. Run (no GPU, no fixtures written; it prints a table and exits 0
only if every check passes):

    build/refenv/bin/python tests/reference/wkv7_chunked_ref.py

The recurrence (../shared/reference/rwkv7.md step 10; src/kernels/cuda/wkv7.h), per (batch row, head), state S[i][j]
(i = value row, j = key column), log-space decay w (decay d = exp(-exp(w)), lw = log d = -exp(w) in [-0.6065, 0)):
    sa_t = S_{t-1} a_t ;  S_t = S_{t-1} diag(d_t) + sa_t b_t^T + v_t k_t^T ;  y_t = S_t r_t.

Chunk of L steps from state S0 (rows of the L x N matrices are steps t = 1..L, 1-based inside the chunk):
    c_t = sum_{s<=t} lw_s (cumulative log decay, per column j), c_0 = 0
    A- = A * e^{c_{t-1}}, R+ = R * e^{c_t}            (decays from the chunk start up to the step)
    B^ = B * e^{-c_s},    K^ = K * e^{-c_s}           (only ever used in products with A- or R+, so that every
                                                      product term is a_j b_j e^{c_{t-1,j} - c_{s,j}} with s < t:
                                                      a difference of cumulative log decays, never above 1)
    B- = B * e^{c_L - c_s}, K- = K * e^{c_L - c_s}     (to the chunk end, <= 1)
    M_ab = strict_tril(A- B^T), M_ak = strict_tril(A- K^T), M_rb = tril(R+ B^T), M_rk = tril(R+ K^T)
    SA = (I - M_ab)^{-1} (A- S0^T + M_ak V)            (L x N: row t = sa_t; unit lower triangular solve)
    Y  = R+ S0^T + M_rb SA + M_rk V
    S_L = S0 diag(e^{c_L}) + SA^T B- + V^T K-
The L x L matrices are formed here from the differences e^{c_t - c_s} element by element (stable for any L);
the kernel forms them as products of the scaled rows with the chunk's middle as reference point.

Backward of one chunk, given dY and dS_L (the gradient of the chunk's end state):
    dSA = M_rb^T dY + B- dS_L^T ;  dU = (I - M_ab)^{-T} dSA   (upper triangular solve)
    dS0 = dS_L diag(e^{c_L}) + dY^T R+ + dU^T A-            (the only sequential dependency: dS flows backwards)
    dM_ab = strict_tril(dU SA^T), dM_ak = strict_tril(dU V^T), dM_rb = tril(dY SA^T), dM_rk = tril(dY V^T)
    dV  = M_ak^T dU + M_rk^T dY + K- dS_L^T
    dA- = dU S0 + dM_ab B^ + dM_ak K^ ;  dR+ = dY S0 + dM_rb B^ + dM_rk K^
    dB^ = dM_ab^T A- + dM_rb^T R+ ;      dK^ = dM_ak^T A- + dM_rk^T R+
    dB- = SA dS_L ;                      dK- = V dS_L
    then to raw inputs: dA = dA- e^{c_{t-1}}, dR = dR+ e^{c_t}, dB = dB^ e^{-c} + dB- e^{c_L - c}, same for dK,
    and the cumulative decays: dc_t = dR+ R+ - dB^ B^ - dK^ K^ - dB- B- - dK- K- + (dA- A-)_{t+1}
    (+ at t = L: sum over t of (dB- B- + dK- K-) + colsum(dS_L * S0 * e^{c_L})); dlw_s = sum_{t>=s} dc_t;
    dw = dlw * lw (lw = -exp(w)).
In the element-wise form used here, the L x L products are written with explicit e^{c_t - c_s} factors; the
gradient through those factors is what the dc terms above collect (they are the same numbers).
"""
import sys

import numpy as np


def seq_forward(r, w, k, v, a, b, s0):
    """Step by step; inputs [T][N] for one head, s0 [N][N]. Returns y, every state S_0..S_T, sa."""
    T, N = r.shape
    d = np.exp(-np.exp(w))
    S = np.zeros((T + 1, N, N))
    S[0] = s0
    y = np.zeros((T, N))
    sa = np.zeros((T, N))
    for t in range(T):
        sa[t] = S[t] @ a[t]
        S[t + 1] = S[t] * d[t][None, :] + np.outer(sa[t], b[t]) + np.outer(v[t], k[t])
        y[t] = S[t + 1] @ r[t]
    return y, S, sa


def seq_backward(r, w, k, v, a, b, dy, dsT, S, sa):
    """The step-by-step backward (the formulas of tests/cuda/test_cuda_ops.cu's ref_head)."""
    T, N = r.shape
    d = np.exp(-np.exp(w))
    dS = dsT.copy()
    g = {n: np.zeros((T, N)) for n in ("r", "w", "k", "v", "a", "b")}
    for t in range(T - 1, -1, -1):
        Sp, Sn = S[t], S[t + 1]
        g["r"][t] = Sn.T @ dy[t]
        dS = dS + np.outer(dy[t], r[t])
        g["v"][t] = dS @ k[t]
        dsa = dS @ b[t]
        g["k"][t] = dS.T @ v[t]
        g["b"][t] = dS.T @ sa[t]
        g["w"][t] = (dS * Sp).sum(0) * d[t] * -np.exp(w[t])
        g["a"][t] = Sp.T @ dsa
        dS = dS * d[t][None, :] + np.outer(dsa, a[t])
    return g, dS


def chunk_consts(lw, L):
    c = np.cumsum(lw, axis=0)  # c[t-1] = c_t (1-based t)
    cprev = np.vstack([np.zeros((1, lw.shape[1])), c[:-1]])
    return c, cprev


def ediff(x, y):
    """E[t, s, j] = exp(x[t, j] - y[s, j])."""
    return np.exp(x[:, None, :] - y[None, :, :])


def chunk_forward(r, w, k, v, a, b, s0, L):
    """Chunked forward for one head; returns y, the state at each chunk end (ckpt), sa."""
    T, N = r.shape
    lw = -np.exp(w)
    y = np.zeros((T, N))
    sa = np.zeros((T, N))
    S0 = s0.copy()
    ck = []
    for c0 in range(0, T, L):
        sl = slice(c0, min(T, c0 + L))
        R, K, V, A, Bm = r[sl], k[sl], v[sl], a[sl], b[sl]
        n = R.shape[0]
        c, cp = chunk_consts(lw[sl], L)
        cL = c[-1]
        Am, Rp = A * np.exp(cp), R * np.exp(c)
        Bbar, Kbar = Bm * np.exp(cL - c), K * np.exp(cL - c)
        Eab = ediff(cp, c)  # e^{c_{t-1} - c_s}
        Erb = ediff(c, c)  # e^{c_t - c_s}
        lo = np.tril(np.ones((n, n)), -1)
        le = np.tril(np.ones((n, n)))
        Mab = np.einsum("tj,sj,tsj->ts", A, Bm, Eab) * lo
        Mak = np.einsum("tj,sj,tsj->ts", A, K, Eab) * lo
        Mrb = np.einsum("tj,sj,tsj->ts", R, Bm, Erb) * le
        Mrk = np.einsum("tj,sj,tsj->ts", R, K, Erb) * le
        U = Am @ S0.T + Mak @ V
        SA = np.linalg.solve(np.eye(n) - Mab, U)
        Y = Rp @ S0.T + Mrb @ SA + Mrk @ V
        S0 = S0 * np.exp(cL)[None, :] + SA.T @ Bbar + V.T @ Kbar
        y[sl], sa[sl] = Y, SA
        ck.append(S0.copy())
    return y, np.array(ck), sa


def chunk_backward(r, w, k, v, a, b, dy, dsT, s0, ck, sa, L):
    """Chunked backward for one head from the chunked forward's checkpoints and sa: exact chunk start states
    (no inversion). Returns the gradients and dS0."""
    T, N = r.shape
    lw = -np.exp(w)
    g = {n: np.zeros((T, N)) for n in ("r", "w", "k", "v", "a", "b")}
    dS = dsT.copy()
    starts = list(range(0, T, L))
    for ci in range(len(starts) - 1, -1, -1):
        c0 = starts[ci]
        sl = slice(c0, min(T, c0 + L))
        S0 = s0 if ci == 0 else ck[ci - 1]
        R, K, V, A, Bm, dY, SA = r[sl], k[sl], v[sl], a[sl], b[sl], dy[sl], sa[sl]
        n = R.shape[0]
        c, cp = chunk_consts(lw[sl], L)
        cL = c[-1]
        eC, eCp, eL = np.exp(c), np.exp(cp), np.exp(cL)
        Am, Rp = A * eCp, R * eC
        Bbar, Kbar = Bm * np.exp(cL - c), K * np.exp(cL - c)
        Eab, Erb = ediff(cp, c), ediff(c, c)
        lo = np.tril(np.ones((n, n)), -1)
        le = np.tril(np.ones((n, n)))
        Mab = np.einsum("tj,sj,tsj->ts", A, Bm, Eab) * lo
        Mak = np.einsum("tj,sj,tsj->ts", A, K, Eab) * lo
        Mrb = np.einsum("tj,sj,tsj->ts", R, Bm, Erb) * le
        Mrk = np.einsum("tj,sj,tsj->ts", R, K, Erb) * le
        dSL = dS
        dSA = Mrb.T @ dY + Bbar @ dSL.T
        dU = np.linalg.solve((np.eye(n) - Mab).T, dSA)
        dS = dSL * eL[None, :] + dY.T @ Rp + dU.T @ Am
        dMab = (dU @ SA.T) * lo
        dMak = (dU @ V.T) * lo
        dMrb = (dY @ SA.T) * le
        dMrk = (dY @ V.T) * le
        dV = Mak.T @ dU + Mrk.T @ dY + Kbar @ dSL.T
        # element-wise form of the L x L products: M[t,s] = sum_j X[t,j] Z[s,j] E[t,s,j]
        # d X[t,j] = sum_s dM[t,s] Z[s,j] E ; d Z[s,j] = sum_t dM[t,s] X[t,j] E ; the E factor's gradient goes
        # into dc: d(x_t - y_s) = dM X Z E.
        dA = dU @ S0 * eCp + np.einsum("ts,sj,tsj->tj", dMab, Bm, Eab) + np.einsum("ts,sj,tsj->tj", dMak, K, Eab)
        dR = dY @ S0 * eC + np.einsum("ts,sj,tsj->tj", dMrb, Bm, Erb) + np.einsum("ts,sj,tsj->tj", dMrk, K, Erb)
        dBb = SA @ dSL
        dKb = V @ dSL
        dB = np.einsum("ts,tj,tsj->sj", dMab, A, Eab) + np.einsum("ts,tj,tsj->sj", dMrb, R, Erb) + dBb * np.exp(cL - c)
        dK = np.einsum("ts,tj,tsj->sj", dMak, A, Eab) + np.einsum("ts,tj,tsj->sj", dMrk, R, Erb) + dKb * np.exp(cL - c)
        # cumulative-decay gradient: every factor e^{x} contributes d(x) = (d factor) * factor
        dc = np.zeros((n, N))
        dcp = np.zeros((n, N))
        dcp += (dU @ S0) * Am  # A- = A e^{cp}
        dc += (dY @ S0) * Rp  # R+ = R e^{c}
        for dM, X, Z, E, tgt in ((dMab, A, Bm, Eab, dcp), (dMak, A, K, Eab, dcp), (dMrb, R, Bm, Erb, dc),
                                 (dMrk, R, K, Erb, dc)):
            G = np.einsum("ts,tj,sj,tsj->tsj", dM, X, Z, E)
            tgt += G.sum(1)  # + x_t
            dc -= G.sum(0)  # - y_s (always c_s)
        G = dBb * Bbar + dKb * Kbar  # factor e^{cL - c_s}
        dc -= G
        dcL = G.sum(0) + (dSL * S0 * eL[None, :]).sum(0)
        dc[-1] += dcL
        dc[:-1] += dcp[1:]  # cp_t = c_{t-1}; cp_1 = 0
        dlw = np.cumsum(dc[::-1], axis=0)[::-1]
        g["w"][sl] = dlw * lw[sl]
        g["r"][sl], g["k"][sl], g["v"][sl], g["a"][sl], g["b"][sl] = dR, dK, dV, dA, dB
    return g, dS


def make_inputs(rng, T, N, floor, s0, dsT):
    kk = rng.standard_normal((T, N))
    kk /= np.linalg.norm(kk, axis=1, keepdims=True)
    omega = 6.0 + rng.standard_normal((T, N)) if floor else 2.0 * rng.standard_normal((T, N))
    if floor == "exact":
        w = np.full((T, N), -0.5)
    else:
        w = -np.log1p(np.exp(-omega)) - 0.5
    return dict(r=0.5 * rng.standard_normal((T, N)), w=w, k=0.5 * rng.standard_normal((T, N)),
                v=rng.standard_normal((T, N)), a=-kk, b=kk * rng.uniform(size=(T, N)),
                dy=rng.standard_normal((T, N)),
                s0=0.3 * rng.standard_normal((N, N)) if s0 else np.zeros((N, N)),
                dsT=0.3 * rng.standard_normal((N, N)) if dsT else np.zeros((N, N)))


def rel(x, ref):
    m = np.abs(ref).max()
    return np.abs(x - ref).max() / (m if m > 0 else 1.0)


def main():
    rng = np.random.default_rng(7)
    N = 64
    fails = 0
    print("| T | L | decays | s0/dS | y | S_T | sa | dr | dw | dk | dv | da | db | ds0 |")
    cases = [(5, 16, False, False, False), (16, 16, True, True, True), (19, 16, False, True, False),
             (37, 16, True, False, True), (64, 16, False, True, True), (100, 16, "exact", True, True),
             (33, 32, False, True, True), (70, 32, "exact", True, True), (257, 16, False, False, False)]
    for T, L, floor, s0, dsT in cases:
        x = make_inputs(rng, T, N, floor, s0, dsT)
        y, S, sa = seq_forward(x["r"], x["w"], x["k"], x["v"], x["a"], x["b"], x["s0"])
        g, ds0 = seq_backward(x["r"], x["w"], x["k"], x["v"], x["a"], x["b"], x["dy"], x["dsT"], S, sa)
        yc, ck, sac = chunk_forward(x["r"], x["w"], x["k"], x["v"], x["a"], x["b"], x["s0"], L)
        gc, ds0c = chunk_backward(x["r"], x["w"], x["k"], x["v"], x["a"], x["b"], x["dy"], x["dsT"], x["s0"], ck,
                                  sac, L)
        errs = [rel(yc, y), rel(ck[-1], S[-1]), rel(sac, sa)] + [rel(gc[n], g[n]) for n in "rwkvab"] + [rel(ds0c, ds0)]
        ok = all(e < 1e-10 for e in errs)
        fails += not ok
        print("| %d | %d | %s | %d/%d | " % (T, L, {False: "mixed", True: "strong", "exact": "floor"}[floor], s0, dsT)
              + " | ".join("%.1e" % e for e in errs) + (" | ok" if ok else " | FAIL"))
    # the step-by-step backward itself against central finite differences (a few coordinates)
    x = make_inputs(rng, 21, N, False, True, True)

    def loss(xx):
        y, S, _ = seq_forward(xx["r"], xx["w"], xx["k"], xx["v"], xx["a"], xx["b"], xx["s0"])
        return (y * xx["dy"]).sum() + (S[-1] * xx["dsT"]).sum()

    y, S, sa = seq_forward(x["r"], x["w"], x["k"], x["v"], x["a"], x["b"], x["s0"])
    g, ds0 = seq_backward(x["r"], x["w"], x["k"], x["v"], x["a"], x["b"], x["dy"], x["dsT"], S, sa)
    g["s0"] = ds0
    worst = 0.0
    for name in ("r", "w", "k", "v", "a", "b", "s0"):
        for _ in range(4):
            idx = tuple(rng.integers(0, s) for s in x[name].shape)
            h = 1e-6
            xp = {kk: vv.copy() for kk, vv in x.items()}
            xm = {kk: vv.copy() for kk, vv in x.items()}
            xp[name][idx] += h
            xm[name][idx] -= h
            fd = (loss(xp) - loss(xm)) / (2 * h)
            worst = max(worst, abs(fd - g[name][idx]) / max(1.0, abs(fd)))
    ok = worst < 1e-6
    fails += not ok
    print("step-by-step backward vs central finite differences (28 coordinates): worst %.1e %s" % (worst, "ok" if ok else "FAIL"))
    print("FAILED: %d" % fails if fails else "all checks pass")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
