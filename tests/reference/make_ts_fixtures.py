"""Makes tests/fixtures/ts/baselines.safetensors: splits, normalisation, windows and baselines of src/ts/
computed independently in numpy (explicit windows and features, no moment recursions).

  Run:  build/refenv/bin/python tests/reference/make_ts_fixtures.py [--out tests/fixtures/ts]
        (numpy, safetensors)

Series: 3 channels x 400 rows (seeded): daily-like sine of period 12 plus a trend plus noise, scaled differently
per channel. Dataset rule: "custom" (70/10/20 chronological), lookback L = 48, horizon H = 12, period 12.
  split rows:   train [0, 280), val [280, 320), test [320, 400)   (int(400*0.7) = 280, int(400*0.2) = 80)
  scaler:       per channel mean and population std over rows [0, 280)
  windows:      forecast start t from max(start, L) to end - H (stride 1); x = z[t-L, t), y = z[t, t+H);
                channel-major order (all windows of channel 0 first)
  DLinear:      moving average kernel 25 with replicated ends (trend), seasonal = x - trend; features
                (seasonal, trend, 1); ridge lambda = alpha * N_train on the seasonal and trend weights only;
                alpha chosen among ALPHAS by validation MSE; the normal equations are solved in float64 from
                explicit feature matrices.
Tensors (float32 unless noted):
  series [3, 400] raw, mean [3], std [3] (float64), z [3, 400], borders [3, 2] (int64),
  test_x [Nw, 48], test_y [Nw, 12], val_t_stride5 (int64, the forecast starts of validation windows at stride 5),
  ws [12, 48], wt [12, 48], b [12], alpha [1] (float64), val_mse [1] (float64),
  pred_last, pred_seasonal, pred_linear [Nw, 12], metrics [6] (float64: MSE, MAE of last, seasonal, linear on
  the test windows).
"""
import argparse
import os

import numpy as np
from safetensors.numpy import save_file

L, H, K, P = 48, 12, 25, 12
ALPHAS = [1e-3, 1e-1]


def decompose(x):
    r = (K - 1) // 2
    Lx = x.shape[-1]
    idx = np.clip(np.arange(Lx)[:, None] + np.arange(-r, r + 1)[None, :], 0, Lx - 1)
    trend = x[..., idx].mean(-1)
    return x - trend, trend


def windows(z, start, end, stride=1):
    t0 = max(start, L)
    ts = list(range(t0, end - H + 1, stride))
    xs, ys = [], []
    for c in range(z.shape[0]):
        for t in ts:
            xs.append(z[c, t - L:t])
            ys.append(z[c, t:t + H])
    return np.array(xs), np.array(ys), ts


def features(x64):
    s, t = decompose(x64)
    return np.concatenate([s, t, np.ones((x64.shape[0], 1))], axis=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/ts")
    args = ap.parse_args()
    rng = np.random.default_rng(1234)
    n = 400
    i = np.arange(n)
    series = np.stack([
        10 + 3 * np.sin(2 * np.pi * i / P) + 0.01 * i + 0.5 * rng.standard_normal(n),
        -5 + 2 * np.cos(2 * np.pi * i / P + 0.3) + 0.3 * np.sin(2 * np.pi * i / 40) + 0.3 * rng.standard_normal(n),
        100 + 20 * np.sin(2 * np.pi * i / P) * (1 + 0.002 * i) + 4 * rng.standard_normal(n),
    ]).astype(np.float32)
    n_train, n_test = int(n * 0.7), int(n * 0.2)
    borders = np.array([[0, n_train], [n_train, n - n_test], [n - n_test, n]], dtype=np.int64)
    x64 = series.astype(np.float64)
    mean = x64[:, :n_train].mean(1)
    std = x64[:, :n_train].std(1)
    z = ((x64 - mean[:, None]) / std[:, None]).astype(np.float32)

    trX, trY, _ = windows(z, 0, n_train)
    vaX, vaY, _ = windows(z, n_train, n - n_test)
    teX, teY, _ = windows(z, n - n_test, n)
    _, _, val_t5 = windows(z, n_train, n - n_test, stride=5)

    Ftr = features(trX.astype(np.float64))
    Fva = features(vaX.astype(np.float64))
    Ytr = trY.astype(np.float64)
    Yva = vaY.astype(np.float64)
    G = Ftr.T @ Ftr
    C = Ftr.T @ Ytr
    N = Ftr.shape[0]
    best = None
    for a in ALPHAS:
        M = G.copy()
        M[np.arange(2 * L), np.arange(2 * L)] += a * N
        W = np.linalg.solve(M, C)
        mse = float(((Fva @ W - Yva) ** 2).mean())
        if best is None or mse < best[1]:
            best = (a, mse, W)
    alpha, val_mse, W = best
    ws = W[:L].T.astype(np.float32)
    wt = W[L:2 * L].T.astype(np.float32)
    b = W[2 * L].astype(np.float32)

    Fte = features(teX.astype(np.float64))
    pred_lin = Fte @ W
    pred_last = np.repeat(teX[:, -1:], H, axis=1).astype(np.float64)
    pred_seas = teX[:, L - P + (np.arange(H) % P)].astype(np.float64)
    Yte = teY.astype(np.float64)

    def mm(p):
        e = p - Yte
        return [float((e ** 2).mean()), float(np.abs(e).mean())]

    metrics = np.array(mm(pred_last) + mm(pred_seas) + mm(pred_lin), dtype=np.float64)
    os.makedirs(args.out, exist_ok=True)
    tensors = {
        "series": series, "mean": mean, "std": std, "z": z, "borders": borders,
        "test_x": teX.astype(np.float32), "test_y": teY.astype(np.float32),
        "val_t_stride5": np.array(val_t5, dtype=np.int64),
        "ws": ws, "wt": wt, "b": b,
        "alpha": np.array([alpha]), "val_mse": np.array([val_mse]),
        "pred_last": pred_last.astype(np.float32), "pred_seasonal": pred_seas.astype(np.float32),
        "pred_linear": pred_lin.astype(np.float32), "metrics": metrics,
    }
    # safetensors writes the raw buffer: make every array C-contiguous (transposes and fancy indexing are not)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    save_file(tensors, os.path.join(args.out, "baselines.safetensors"))
    print("alpha", alpha, "val_mse", val_mse, "metrics", metrics, "test windows", teX.shape[0])


if __name__ == "__main__":
    main()
