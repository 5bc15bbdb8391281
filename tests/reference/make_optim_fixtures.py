#!/usr/bin/env python3
"""Golden values for tests/test_optim.c: a few steps of torch.optim.Adam / AdamW with
torch.nn.utils.clip_grad_norm_ on small random tensors.

Made with (from the repository root, torch 1.13 CPU in build/refenv, see scripts/refenv.sh):
    build/refenv/bin/python tests/reference/make_optim_fixtures.py tests/fixtures/optim

Cases (hard-coded in the C test as well):
  c0: Adam,  weight_decay 0,    clip 1.0 (gradients large: clipping active every step)
  c1: AdamW, weight_decay 0.1 on p0/p2 only (p1 is a no-decay group), clip 1.0 (inactive: small gradients)
  c2: Adam,  weight_decay 0.05 (L2 added to the gradient) on p0/p2 only, clip 0.5
betas (0.9, 0.99), eps 1e-8, 5 steps, lr of step s = 1e-2 * (1 + s) / 5 (as a schedule would vary it).
Tensors: c{c}.p{i}.init, c{c}.p{i}.grad{s}, c{c}.p{i}.final, c{c}.p{i}.exp_avg, c{c}.p{i}.exp_avg_sq, and
c{c}.norm (the norm clip_grad_norm_ returned at each step). Seeded: rerunning reproduces the file.
"""
import os
import sys

import torch
from safetensors.torch import save_file

SHAPES = [(7, 5), (5,), (3, 4, 2)]
STEPS = 5
CASES = [
    dict(kind="adam", wd=0.0, clip=1.0, gscale=3.0),
    dict(kind="adamw", wd=0.1, clip=1.0, gscale=0.02),
    dict(kind="adam", wd=0.05, clip=0.5, gscale=0.5),
]


def main(out):
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    t = {}
    for c, case in enumerate(CASES):
        params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES]
        for i, p in enumerate(params):
            t[f"c{c}.p{i}.init"] = p.detach().clone()
        decay = [params[0], params[2]]
        groups = [dict(params=decay, weight_decay=case["wd"]), dict(params=[params[1]], weight_decay=0.0)]
        cls = torch.optim.AdamW if case["kind"] == "adamw" else torch.optim.Adam
        opt = cls(groups, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, foreach=False)
        norms = []
        for s in range(STEPS):
            lr = 1e-2 * (1 + s) / 5
            for pg in opt.param_groups:
                pg["lr"] = lr
            for i, p in enumerate(params):
                gr = torch.randn(p.shape, generator=g) * case["gscale"]
                t[f"c{c}.p{i}.grad{s}"] = gr.clone()
                p.grad = gr
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, case["clip"])))
            opt.step()
        t[f"c{c}.norm"] = torch.tensor(norms, dtype=torch.float64)
        for i, p in enumerate(params):
            t[f"c{c}.p{i}.final"] = p.detach().clone()
            st = opt.state[p]
            t[f"c{c}.p{i}.exp_avg"] = st["exp_avg"].clone()
            t[f"c{c}.p{i}.exp_avg_sq"] = st["exp_avg_sq"].clone()
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(out, "optim.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/optim")
