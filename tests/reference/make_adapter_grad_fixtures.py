"""Makes the adapter / Conv1D-compression gradient fixtures in tests/fixtures/adapter_grad/.

  Run:  build/refenv/bin/python tests/reference/make_adapter_grad_fixtures.py [--out tests/fixtures/adapter_grad]

Each case is one safetensors file <case>.safetensors holding
  - the module's parameters in float32, named exactly as src/train/adapter_train.c names them (and as a ModRWKV
    v2 checkpoint stores them): "compress.weight/bias", "proj.conv.*", "proj.proj.{0,2}.*" (v1 structures),
    "proj.mlp.{0,2}.*" (v2), "proj.pre_norm.*", so the file doubles as a checkpoint for mrw_tadapter_load;
  - "x" [B, T, E] and "d_out" [B, T', C] (random, f32);
  - "out" [B, T', C], "grad.x" and "grad.<param>" for every parameter: PyTorch autograd of sum(out * d_out),
    computed in float64 from the float32 values above, stored as float32;
  - metadata: kind (1 v1 vision, 2 v1 audio, 3 v2), E, C, hidden, v2_conv, compress_k, compress_s.
The modules are torch.nn Linear / Conv1d / LayerNorm / ReLU (ModRWKV's structures, modrwkv.md "Adapters").
"""
import argparse
import os

import torch
import torch.nn as nn
from safetensors.torch import save_file


class Adapter(nn.Module):
    def __init__(self, kind, E, C, hidden, v2_conv):
        super().__init__()
        self.kind = kind
        if kind == 1:
            self.proj = nn.Sequential(nn.Linear(E, 2 * C), nn.ReLU(), nn.Linear(2 * C, C))
            self.pre_norm = nn.LayerNorm(C, eps=1e-5)
        elif kind == 2:
            self.conv = nn.Conv1d(E, 2 * C, kernel_size=3, stride=2, padding=2)
            self.proj = nn.Sequential(nn.Linear(2 * C, 2 * C), nn.ReLU(), nn.Linear(2 * C, C))
        else:
            if v2_conv:
                self.conv = nn.Conv1d(E, E, kernel_size=3, stride=2, bias=False)
            H = hidden or 4 * C
            self.mlp = nn.Sequential(nn.Linear(E, H), nn.ReLU(), nn.Linear(H, C))
            self.pre_norm = nn.LayerNorm(C, eps=1e-5)

    def forward(self, x):  # x [B, T, E]
        if hasattr(self, "conv"):
            x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        h = self.proj(x) if self.kind in (1, 2) else self.mlp(x)
        return h + self.pre_norm(h) if hasattr(self, "pre_norm") else h


class Whole(nn.Module):
    def __init__(self, kind, E, C, hidden=0, v2_conv=0, ck=0, cs=0):
        super().__init__()
        if ck:
            self.compress = nn.Conv1d(E, E, kernel_size=ck, stride=cs)
        self.proj = Adapter(kind, E, C, hidden, v2_conv)

    def forward(self, x):
        if hasattr(self, "compress"):
            x = self.compress(x.transpose(1, 2)).transpose(1, 2)
        return self.proj(x)


CASES = [
    # name, kind, E, C, hidden, v2_conv, compress_k, compress_s, B, T
    ("v1_vision", 1, 24, 16, 0, 0, 0, 0, 2, 7),
    ("v1_audio", 2, 20, 12, 0, 0, 0, 0, 2, 9),
    ("v2", 3, 24, 16, 40, 0, 0, 0, 2, 7),
    ("v2_conv", 3, 16, 12, 0, 1, 0, 0, 2, 11),
    ("v2_conv_compress", 3, 16, 12, 24, 1, 3, 2, 2, 15),
    ("v1_audio_compress", 2, 12, 8, 0, 0, 4, 3, 2, 17),
    ("v2_narrow_compress", 3, 20, 16, 8, 0, 2, 2, 2, 9),
]


def make(out_dir, case, seed):
    name, kind, E, C, hidden, v2_conv, ck, cs, B, T = case
    torch.manual_seed(seed)
    m = Whole(kind, E, C, hidden, v2_conv, ck, cs)
    with torch.no_grad():  # non-trivial LayerNorm affine
        for n, p in m.named_parameters():
            if "pre_norm" in n:
                p.add_(0.2 * torch.randn_like(p))
    m = m.double()
    x = torch.randn(B, T, E).float()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.float().double())  # the values the f32 file holds
    xd = x.double().requires_grad_(True)
    out = m(xd)
    d_out = torch.randn(out.shape).float()
    (out * d_out.double()).sum().backward()
    t = {}
    for n, p in m.named_parameters():
        t[n] = p.detach().float().contiguous()
        t["grad." + n] = p.grad.float().contiguous()
    t["x"] = x.contiguous()
    t["d_out"] = d_out.contiguous()
    t["out"] = out.detach().float().contiguous()
    t["grad.x"] = xd.grad.float().contiguous()
    meta = dict(kind=kind, E=E, C=C, hidden=hidden, v2_conv=v2_conv, compress_k=ck, compress_s=cs, B=B, T=T)
    save_file(t, os.path.join(out_dir, name + ".safetensors"), metadata={k: str(v) for k, v in meta.items()})
    print(name, tuple(out.shape))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/adapter_grad")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for i, c in enumerate(CASES):
        make(a.out, c, 1000 + i)


if __name__ == "__main__":
    main()
