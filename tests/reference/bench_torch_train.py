"""PyTorch CPU timing of the training step bench/bench_train.c times: an RWKV-7 forward + backward (autograd)
with mean cross-entropy, fp32, same shapes (default L6 C256 F1024 V65536, LoRA ranks 32/32/32/64), same batch
shapes and thread counts (torch.set_num_threads), best of N after a warm-up.

Run:  build/refenv/bin/python tests/reference/bench_torch_train.py [--layers 6] [--embd 256] [--vocab 65536]
                                                                    [--shapes 1x256,4x256] [--threads 1,2]
                                                                    [--reps 3]

What is compared: RWKV-LM's model written in plain PyTorch as its CPU path would run it: token-parallel
Linear / LoRA / norms over [B, T, C], and the WKV7 recurrence as a per-timestep loop over T (batched over B and
heads with einsum), differentiated by autograd. RWKV-LM's own trainer needs its CUDA kernel; there is no
faster CPU kernel in it to compare with. GFLOP/s counts the GEMMs only, as bench_train.c does.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as Fn


def rank(k: float, C: int) -> int:
    return max(32, int(round(k * math.sqrt(C) / 32)) * 32)


def make(L, C, V, F, N=64):
    H = C // N
    g = torch.Generator().manual_seed(1)
    dw, da, dv, dg = rank(2.5, C), rank(2.5, C), rank(1.7, C), rank(5, C)

    def p(*shape, s=0.1):
        return (torch.randn(*shape, generator=g) * s).requires_grad_(True)

    w = {"emb": p(V, C), "ln0w": p(C), "ln0b": p(C), "lnow": p(C), "lnob": p(C), "head": p(V, C, s=0.05)}
    for i in range(L):
        for n in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "a0", "v0", "k_k", "k_a", "ffn_x_k",
                  "ln1w", "ln1b", "ln2w", "ln2b", "lnxw", "lnxb"):
            w[f"{i}.{n}"] = p(C)
        w[f"{i}.r_k"] = p(H, N)
        for n, d in (("w", dw), ("a", da), ("v", dv), ("g", dg)):
            w[f"{i}.{n}1"], w[f"{i}.{n}2"] = p(C, d), p(d, C)
        for n in ("Wr", "Wk", "Wv", "Wo"):
            w[f"{i}.{n}"] = p(C, C, s=1 / math.sqrt(C))
        w[f"{i}.Wfk"], w[f"{i}.Wfv"] = p(F, C, s=1 / math.sqrt(C)), p(C, F, s=1 / math.sqrt(F))
    return w, (dw, da, dv, dg)


def shift(x):
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)


def step(w, L, C, N, tokens, targets):
    B, T = tokens.shape
    H = C // N
    x = Fn.layer_norm(w["emb"][tokens], (C,), w["ln0w"], w["ln0b"])
    v_first = None
    for i in range(L):
        q = lambda n: w[f"{i}.{n}"]  # noqa: E731
        xa = Fn.layer_norm(x, (C,), q("ln1w"), q("ln1b"))
        d = shift(xa) - xa
        xr, xw, xk, xv, xaa, xg = (xa + d * q(n) for n in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g"))
        r, k, v = xr @ q("Wr").T, xk @ q("Wk").T, xv @ q("Wv").T
        decay = torch.exp(-math.exp(-0.5) * torch.sigmoid(q("w0") + torch.tanh(xw @ q("w1")) @ q("w2")))
        alpha = torch.sigmoid(q("a0") + (xaa @ q("a1")) @ q("a2"))
        g = torch.sigmoid(xg @ q("g1")) @ q("g2")
        if i == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(q("v0") + (xv @ q("v1")) @ q("v2"))
        kk = Fn.normalize((k * q("k_k")).view(B, T, H, N), dim=-1, p=2.0).view(B, T, C)
        k = k * (1 + (alpha - 1) * q("k_a"))
        rh, kh, vh, wh = (t.view(B, T, H, N) for t in (r, k, v, decay))
        ah, bh = (-kk).view(B, T, H, N), (kk * alpha).view(B, T, H, N)
        S = torch.zeros(B, H, N, N)
        ys = []
        for t in range(T):  # the per-timestep WKV7 loop
            sa = torch.einsum("bhij,bhj->bhi", S, ah[:, t])
            S = S * wh[:, t, :, None, :] + sa[..., None] * bh[:, t, :, None, :] + vh[:, t, :, :, None] * kh[:, t, :, None, :]
            ys.append(torch.einsum("bhij,bhj->bhi", S, rh[:, t]))
        y = torch.stack(ys, dim=1).reshape(B * T, C)
        o = Fn.group_norm(y, H, q("lnxw"), q("lnxb"), eps=64e-5).view(B, T, C)
        o = o + ((rh * kh * q("r_k")).sum(-1, keepdim=True) * vh).reshape(B, T, C)
        x = x + (o * g) @ q("Wo").T
        xf = Fn.layer_norm(x, (C,), q("ln2w"), q("ln2b"))
        u = xf + (shift(xf) - xf) * q("ffn_x_k")
        x = x + torch.relu(u @ q("Wfk").T) ** 2 @ q("Wfv").T
    logits = Fn.layer_norm(x, (C,), w["lnow"], w["lnob"]) @ w["head"].T
    return Fn.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--shapes", default="1x256,4x256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    L, C, V = args.layers, args.embd, args.vocab
    F = 4 * C
    w, (dw, da, dv, dg) = make(L, C, V, F)
    mm = L * (4.0 * C * C + 2.0 * C * F + 2.0 * C * (dw + da + dv + dg)) + V * C
    print(f"torch {torch.__version__}, RWKV-7 training step (autograd, per-timestep WKV loop), fp32: "
          f"L{L} C{C} F{F} V{V}, LoRA {dw}/{da}/{dv}/{dg}")
    print(f"{'BxT':<9} {'thr':>3} | {'fwd ms':>9} {'bwd ms':>9} {'step ms':>9} | {'tokens/s':>10} {'GFLOP/s':>8}")
    for shp in args.shapes.split(","):
        B, T = (int(s) for s in shp.split("x"))
        tokens = torch.arange(B * T).reshape(B, T) * 7919 % V
        targets = (torch.arange(B * T).reshape(B, T) * 104729 + 13) % V
        for th in (int(s) for s in args.threads.split(",")):
            torch.set_num_threads(th)
            bf = bb = float("inf")
            for r in range(args.reps + 1):
                for p in w.values():
                    p.grad = None
                t0 = time.perf_counter()
                loss = step(w, L, C, 64, tokens, targets)
                t1 = time.perf_counter()
                loss.backward()
                t2 = time.perf_counter()
                if r > 0:
                    bf, bb = min(bf, t1 - t0), min(bb, t2 - t1)
            s = bf + bb
            print(f"{shp:<9} {th:>3} | {bf * 1e3:9.1f} {bb * 1e3:9.1f} {s * 1e3:9.1f} | {B * T / s:10.0f} "
                  f"{6 * mm * B * T / s / 1e9:8.1f}", flush=True)


if __name__ == "__main__":
    main()
