"""Makes tests/fixtures/rwkv7_grad/grad.safetensors: golden gradients of the RWKV-7 training loss for
tests/test_rwkv7_grad.c, computed by PyTorch autograd in float64.

Run:  build/refenv/bin/python tests/reference/make_rwkv7_grad_fixtures.py [--out tests/fixtures/rwkv7_grad]

The model is a random, non-degenerate tiny RWKV-7: L=2, C=128 (2 heads of 64), F=256, V=300, LoRA ranks
Dw=16, Da=24, Dv=8, Dg=32 (all different so that mix-ups show); layer 0 carries v0/v1/v2 as the reference
trainer does (they get zero gradient). The batch is B=2 sequences of T=37 tokens (not a multiple of 16, so the
WKV checkpoint chunks have a ragged end), with some targets = -100 (ignored) and some rows injected
(embedding rows replaced by given vectors, which then go through ln0; d_inject is their gradient).

The forward below is written literally from ../shared/reference/rwkv7.md (batch form, autograd-able); the
script checks it against rwkv7_ref.forward_seq (the project's reference) on each sequence before saving.
Loss: mean cross-entropy over the counted targets (PyTorch's ignore_index=-100, reduction "mean").

File contents (all float32 unless noted):
  llm.<official key>        the weights (PyTorch shapes)
  grad.llm.<official key>   d loss / d weight
  tokens [B,T] int32, targets [B,T] int32, inject_mask [B,T] uint8, inject [B,T,C], grad.inject [B,T,C]
  loss [1], logits [B,T,V]
Deterministic: torch.manual_seed(SEED).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections import OrderedDict

import torch
import torch.nn.functional as Fn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv7_ref as ref  # noqa: E402

SEED = 20261122
L, C, N, F, V = 2, 128, 64, 256, 300
DW, DA, DV, DG = 16, 24, 8, 32
B, T = 2, 37
H = C // N


def make_weights() -> "OrderedDict[str, torch.Tensor]":
    g = torch.Generator().manual_seed(SEED)

    def u(shape, lo, hi):
        return (torch.rand(shape, generator=g, dtype=torch.float32) * (hi - lo) + lo)

    sc, sf = math.sqrt(3.0 / C), math.sqrt(3.0 / F)
    w = OrderedDict()
    w["emb.weight"] = u((V, C), -1, 1)
    for i in range(L):
        p = f"blocks.{i}."
        if i == 0:
            w[p + "ln0.weight"], w[p + "ln0.bias"] = u((C,), 0.8, 1.2), u((C,), -0.1, 0.1)
        w[p + "ln1.weight"], w[p + "ln1.bias"] = u((C,), 0.8, 1.2), u((C,), -0.1, 0.1)
        w[p + "ln2.weight"], w[p + "ln2.bias"] = u((C,), 0.8, 1.2), u((C,), -0.1, 0.1)
        for m in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g"):
            w[p + "att." + m] = u((1, 1, C), 0, 1)
        w[p + "att.w0"] = u((1, 1, C), -6, 1)
        w[p + "att.w1"], w[p + "att.w2"] = u((C, DW), -sc, sc), u((DW, C), -0.3, 0.3)
        w[p + "att.a0"] = u((1, 1, C), -1, 1)
        w[p + "att.a1"], w[p + "att.a2"] = u((C, DA), -sc, sc), u((DA, C), -0.3, 0.3)
        w[p + "att.v0"] = u((1, 1, C), -1, 1)
        w[p + "att.v1"], w[p + "att.v2"] = u((C, DV), -sc, sc), u((DV, C), -0.3, 0.3)
        w[p + "att.g1"], w[p + "att.g2"] = u((C, DG), -sc, sc), u((DG, C), -0.3, 0.3)
        w[p + "att.k_k"], w[p + "att.k_a"] = u((1, 1, C), 0.7, 1.0), u((1, 1, C), 0.8, 1.2)
        w[p + "att.r_k"] = u((H, N), -0.3, 0.3)
        for lin, s in (("receptance", sc), ("key", sc), ("value", sc), ("output", sc * 0.5)):
            w[p + "att." + lin + ".weight"] = u((C, C), -s, s)
        w[p + "att.ln_x.weight"], w[p + "att.ln_x.bias"] = u((C,), 0.8, 1.2), u((C,), -0.1, 0.1)
        w[p + "ffn.x_k"] = u((1, 1, C), 0, 1)
        w[p + "ffn.key.weight"], w[p + "ffn.value.weight"] = u((F, C), -sc, sc), u((C, F), -sf * 0.5, sf * 0.5)
    w["ln_out.weight"], w["ln_out.bias"] = u((C,), 0.8, 1.2), u((C,), -0.1, 0.1)
    w["head.weight"] = u((V, C), -sc, sc)
    return w


def shift(x):  # [B,T,C] -> previous row of the same sequence, zero at t = 0
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)


def ln(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def forward(w, tokens, inject, mask):
    """w: dict of float64 leaves; tokens [B,T] long; inject [B,T,C] float64 leaf; mask [B,T] bool.
    Returns logits [B,T,V]."""
    e = w["emb.weight"][tokens]
    e = torch.where(mask[..., None], inject, e)
    x = ln(e, w["blocks.0.ln0.weight"], w["blocks.0.ln0.bias"])
    v_first = None
    for i in range(L):
        p = f"blocks.{i}."
        a = lambda k: w[p + "att." + k]  # noqa: E731
        xa = ln(x, w[p + "ln1.weight"], w[p + "ln1.bias"])
        d = shift(xa) - xa
        xr, xw, xk = xa + d * a("x_r"), xa + d * a("x_w"), xa + d * a("x_k")
        xv, xaa, xg = xa + d * a("x_v"), xa + d * a("x_a"), xa + d * a("x_g")
        r = xr @ a("receptance.weight").T
        k = xk @ a("key.weight").T
        v = xv @ a("value.weight").T
        decay = torch.exp(-math.exp(-0.5) * torch.sigmoid(a("w0") + torch.tanh(xw @ a("w1")) @ a("w2")))
        alpha = torch.sigmoid(a("a0") + (xaa @ a("a1")) @ a("a2"))
        g = torch.sigmoid(xg @ a("g1")) @ a("g2")
        if i == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(a("v0") + (xv @ a("v1")) @ a("v2"))
        kap = (k * a("k_k")).view(B, T, H, N)
        kh = (kap / torch.clamp(torch.sqrt((kap * kap).sum(-1, keepdim=True)), min=1e-12)).view(B, T, C)
        k = k * (1 + (alpha - 1) * a("k_a"))
        rh, kh4, vh, wh = (t.view(B, T, H, N) for t in (r, k, v, decay))
        ah, bh = (-kh).view(B, T, H, N), (kh * alpha).view(B, T, H, N)
        S = torch.zeros(B, H, N, N, dtype=x.dtype)
        ys = []
        for t in range(T):
            sa = torch.einsum("bhij,bhj->bhi", S, ah[:, t])
            S = S * wh[:, t, :, None, :] + sa[..., None] * bh[:, t, :, None, :] + vh[:, t, :, :, None] * kh4[:, t, :, None, :]
            ys.append(torch.einsum("bhij,bhj->bhi", S, rh[:, t]))
        y = torch.stack(ys, dim=1)  # [B,T,H,N]
        mu = y.mean(-1, keepdim=True)
        var = ((y - mu) ** 2).mean(-1, keepdim=True)
        o = ((y - mu) / torch.sqrt(var + 64e-5)).reshape(B, T, C) * a("ln_x.weight") + a("ln_x.bias")
        beta = (rh * kh4 * a("r_k")).sum(-1, keepdim=True)
        o = o + (beta * vh).reshape(B, T, C)
        x = x + (o * g) @ a("output.weight").T
        xf = ln(x, w[p + "ln2.weight"], w[p + "ln2.bias"])
        u = xf + (shift(xf) - xf) * w[p + "ffn.x_k"]
        x = x + torch.relu(u @ w[p + "ffn.key.weight"].T) ** 2 @ w[p + "ffn.value.weight"].T
    return ln(x, w["ln_out.weight"], w["ln_out.bias"]) @ w["head.weight"].T


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "rwkv7_grad"))
    args = ap.parse_args()
    torch.manual_seed(SEED)
    w32 = make_weights()
    w = OrderedDict((k, v.to(torch.float64).requires_grad_(True)) for k, v in w32.items())
    tokens = torch.randint(0, V, (B, T), dtype=torch.long)
    targets = torch.randint(0, V, (B, T), dtype=torch.long)
    targets[0, 3] = targets[0, 17] = targets[1, 0] = targets[1, 36] = -100
    targets[1, 20:25] = -100
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, 0:4] = True  # a "modality prefix"
    mask[1, 9:12] = True  # features in the middle
    inject32 = torch.randn(B, T, C, dtype=torch.float32)
    inject = inject32.to(torch.float64).requires_grad_(True)

    logits = forward(w, tokens, inject, mask)
    loss = Fn.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100, reduction="mean")
    loss.backward()

    # the literal forward against the project's reference (no injection there: check the token-only rows)
    with torch.no_grad():
        sd = OrderedDict((k, v.detach().clone()) for k, v in w32.items())
        model = ref.Model(sd, torch.float64)
        for bi in range(B):
            e = torch.where(mask[bi][:, None], inject[bi].detach(), model.emb[tokens[bi]])
            lref, _ = ref.forward_seq(model, embeds=e, logits="all")
            dmax = (lref - logits[bi].detach()).abs().max().item()
            assert dmax < 1e-9, f"literal forward differs from rwkv7_ref.forward_seq by {dmax}"
    print(f"loss {loss.item():.10f}; forward matches rwkv7_ref.forward_seq")

    out = OrderedDict()
    for k, v in w32.items():
        out["llm." + k] = v.contiguous()
    for k, v in w.items():
        gv = v.grad if v.grad is not None else torch.zeros_like(v)
        out["grad.llm." + k] = gv.to(torch.float32).contiguous()
    out["tokens"] = tokens.to(torch.int32)
    out["targets"] = targets.to(torch.int32)
    out["inject_mask"] = mask.to(torch.uint8)
    out["inject"] = inject32
    out["grad.inject"] = (inject.grad * mask[..., None]).to(torch.float32).contiguous()
    out["loss"] = loss.detach().reshape(1).to(torch.float32)
    out["logits"] = logits.detach().to(torch.float32).contiguous()
    from safetensors.torch import save_file
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "grad.safetensors")
    save_file(out, path, metadata={"made_by": "tests/reference/make_rwkv7_grad_fixtures.py", "seed": str(SEED)})
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
