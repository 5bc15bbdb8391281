"""Makes tests/fixtures/forecaster/forecaster.safetensors: a tiny ModRWKV forecaster (random weights in the
checkpoint's tensor names), a batch of windows and targets, and PyTorch float64 autograd's forecast, MSE loss
and gradient of every parameter, for tests/test_forecaster.c.

Run:  build/refenv/bin/python tests/reference/make_forecaster_fixtures.py [--out tests/fixtures/forecaster]

The forward (src/ts/forecaster.h) is composed from the project's own reference modules:
  x̂ = (x − μ)/σ, μ, σ = mean, sqrt(biased var + 1e-5) of each window
  f = WaveNet(x̂)                         make_wavenet_fixtures.WaveNet (tiny config below)
  e = v2 adapter(f)                       make_adapter_grad_fixtures.Adapter(kind 3, hidden = scale·E)
  RWKV-7 over [e rows (injected), prompt tokens 0..P−1]   make_rwkv7_grad_fixtures.forward with head = I
  h = ln_out(x) at the last position      (the logits with an identity head)
  ŷ = μ + σ·(W h + b);  loss = mean (ŷ − y)²
Sizes: lookback 12, horizon 5, 2 prompt tokens, batch 3; WaveNet 3 layers (cycle 3), 4 residual / 5 skip
channels, 6 features; adapter scale 2 (hidden 12); RWKV-7 2 layers, C 32, heads of 16, F 64, V 32, LoRA 8.
The metadata "modrwkv.forecaster" is the C side's configuration string, so the file is also a checkpoint.
Deterministic: torch.manual_seed(SEED).

A second file, forecaster_patch_skip.safetensors, covers the options added later (same sizes otherwise):
lookback 13 with patch 2 (g = the means of the WaveNet features over steps (1,2), (3,4), …, (11,12): 6 tokens,
the oldest step's features left out), 1 prompt token, and the linear skip path u += Ws x̂ + bs.
"""

import argparse
import os
import sys
from collections import OrderedDict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_adapter_grad_fixtures as ad  # noqa: E402
import make_rwkv7_grad_fixtures as rg  # noqa: E402
import make_wavenet_fixtures as wn  # noqa: E402

SEED = 20261123
LB, HZ, P, B = 12, 5, 2, 3
SCALE = 2
# RWKV-7 (module globals of make_rwkv7_grad_fixtures)
rg.L, rg.C, rg.N, rg.F, rg.V = 2, 32, 16, 64, 32
rg.DW, rg.DA, rg.DV, rg.DG = 8, 8, 8, 8
rg.H = rg.C // rg.N
rg.B, rg.T = B, LB + P
# WaveNet (module globals of make_wavenet_fixtures)
wn.C, wn.S, wn.E, wn.NL, wn.CYCLE = 4, 5, 6, 3, 3



def config(lb, p, patch, skip):
    s = (f"lookback={lb},horizon={HZ},prompt={p},scale={SCALE},enc={wn.NL}/{wn.C}/{wn.S}/{wn.E}/{wn.CYCLE},"
         f"lm={rg.L}/{rg.C}/{rg.N}/{rg.V}/{rg.F}/{rg.DW}/{rg.DA}/{rg.DV}/{rg.DG}")
    return s if patch == 1 and not skip else s + f",patch={patch},skip={skip}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "forecaster"))
    args = ap.parse_args()
    make(args.out, "forecaster.safetensors", SEED, LB, P, 1, 0)
    make(args.out, "forecaster_patch_skip.safetensors", SEED + 1, 13, 1, 2, 1)


def make(outdir, fname, seed, LB, P, PATCH, SKIP):
    NT = LB // PATCH
    rg.T = NT + P
    torch.manual_seed(seed)
    params = OrderedDict()
    # RWKV-7: the grad fixture's non-degenerate random init, head = identity (a scratch tensor on the C side)
    for k, v in rg.make_weights().items():
        params["llm." + k] = v
    params["llm.head.weight"] = torch.eye(rg.V, rg.C)
    enc = wn.WaveNet()
    with torch.no_grad():
        for p in enc.parameters():
            p.uniform_(-0.5, 0.5)
    for k, v in enc.state_dict().items():
        params["encoder.model." + k] = v.float()
    adp = ad.Adapter(3, wn.E, rg.C, SCALE * wn.E, 0)
    with torch.no_grad():
        for k, p in adp.named_parameters():
            if "pre_norm" in k:
                p.uniform_(0.5, 1.5) if k.endswith("weight") else p.uniform_(-0.2, 0.2)
    for k, v in adp.state_dict().items():
        params["proj." + k] = v.float()
    params["forecast_head.weight"] = (torch.rand(HZ, rg.C) * 2 - 1) / rg.C ** 0.5
    params["forecast_head.bias"] = (torch.rand(HZ) * 2 - 1) * 0.1
    if SKIP:
        params["forecast_head.skip.weight"] = (torch.rand(HZ, LB) * 2 - 1) / LB ** 0.5
        params["forecast_head.skip.bias"] = (torch.rand(HZ) * 2 - 1) * 0.1

    t = torch.arange(LB + HZ, dtype=torch.float32)
    x_full = torch.stack([torch.sin(t * 0.5 + b) * (1 + b) + 0.3 * b + 0.2 * torch.randn(LB + HZ) for b in range(B)])
    x, y = x_full[:, :LB].contiguous(), x_full[:, LB:].contiguous()

    w = OrderedDict((k, v.detach().to(torch.float64).requires_grad_(True)) for k, v in params.items())
    x64, y64 = x.double(), y.double()
    mu = x64.mean(1, keepdim=True)
    sig = torch.sqrt(((x64 - mu) ** 2).mean(1, keepdim=True) + 1e-5)
    xn = (x64 - mu) / sig
    enc64 = wn.WaveNet().double()
    enc64.load_state_dict({k: w["encoder.model." + k] for k in enc.state_dict()})
    # load_state_dict copies; use functional_call-like rebinding so gradients reach w
    for name, mod_p in list(enc64.named_parameters()):
        mod, attr = enc64, name.split(".")
        for a in attr[:-1]:
            mod = getattr(mod, a)
        delattr(mod, attr[-1])
        setattr(mod, attr[-1], w["encoder.model." + name])
    adp64 = ad.Adapter(3, wn.E, rg.C, SCALE * wn.E, 0).double()
    for name, _ in list(adp64.named_parameters()):
        mod, attr = adp64, name.split(".")
        for a in attr[:-1]:
            mod = getattr(mod, a)
        delattr(mod, attr[-1])
        setattr(mod, attr[-1], w["proj." + name])
    feat = enc64(xn)                       # [B, LB, E]
    off = LB - NT * PATCH
    feat = feat[:, off:, :].reshape(B, NT, PATCH, wn.E).mean(2)  # patch means (PATCH = 1: unchanged)
    e = adp64(feat)                        # [B, NT, C]
    T = NT + P
    inject = torch.cat([e, torch.zeros(B, P, rg.C, dtype=torch.float64)], dim=1)
    tokens = torch.zeros(B, T, dtype=torch.long)
    tokens[:, NT:] = torch.arange(P)
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, :NT] = True
    lw = {k[4:]: v for k, v in w.items() if k.startswith("llm.")}
    logits = rg.forward(lw, tokens, inject, mask)
    h = logits[:, -1, : rg.C]
    u = h @ w["forecast_head.weight"].T + w["forecast_head.bias"]
    if SKIP:
        u = u + xn @ w["forecast_head.skip.weight"].T + w["forecast_head.skip.bias"]
    yhat = mu + sig * u
    loss = ((yhat - y64) ** 2).mean()
    loss.backward()

    out = OrderedDict((k, v.contiguous()) for k, v in params.items())
    for k, v in w.items():
        g = v.grad if v.grad is not None else torch.zeros_like(v)
        if k == "llm.head.weight":
            g = torch.zeros_like(v)  # scratch tensor: its gradient is zeroed on the C side
        out["grad." + k] = g.float().contiguous()
    out["x"], out["y"] = x, y
    out["yhat"] = yhat.detach().float().contiguous()
    out["hidden"] = h.detach().float().contiguous()
    out["loss"] = loss.detach().reshape(1).float()
    from safetensors.torch import save_file
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, fname)
    save_file(out, path, metadata={"made_by": "tests/reference/make_forecaster_fixtures.py", "seed": str(seed),
                                   "modrwkv.forecaster": config(LB, P, PATCH, SKIP)})
    print(f"loss {loss.item():.8f}; wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
