"""Makes tests/fixtures/wavenet/{model,golden}.safetensors: the WaveNet encoder of src/ts/wavenet.c written
with torch.nn.Conv1d, its output and autograd gradients.

  Run:  build/refenv/bin/python tests/reference/make_wavenet_fixtures.py [--out tests/fixtures/wavenet]
        (torch 1.13 CPU)

Tiny config: residual channels C = 4, skip channels S = 5, output E = 3, 4 layers with dilation cycle 3
(dilations 1, 2, 4, 1: receptive field 9), batch B = 2 series of T = 11 steps.
  h = input_conv(x);  per layer: a = dilated_conv(left-pad(h, d));  z = tanh(a[:C]) * sigmoid(a[C:]);
  skip += skip_conv(z);  h = h + res_conv(z);   out = out_conv(relu(skip))
model.safetensors: float32 weights, names "encoder.model.*" (PyTorch Conv1d shapes), random U(-0.5, 0.5) for
weights and biases (not PyTorch's init, so every tensor matters).
golden.safetensors: "input" [B, T] f32, "d_out" [B, T, E] f32, "out" [B, T, E] (per-step features), and
"grad.input", "grad.<name>": autograd of sum(out * d_out) in float64 from the float32 weights, stored f32.
"""
import argparse
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

C, S, E, NL, CYCLE, B, T = 4, 5, 3, 4, 3, 2, 11


class WaveNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.input_conv = torch.nn.Conv1d(1, C, 1)
        self.layers = torch.nn.ModuleList()
        for _ in range(NL):
            m = torch.nn.Module()
            m.dilated_conv = torch.nn.Conv1d(C, 2 * C, 2)
            m.res_conv = torch.nn.Conv1d(C, C, 1)
            m.skip_conv = torch.nn.Conv1d(C, S, 1)
            self.layers.append(m)
        self.out_conv = torch.nn.Conv1d(S, E, 1)

    def forward(self, x):  # x [B, T] -> [B, T, E]
        h = self.input_conv(x[:, None, :])
        skip = 0
        for i, l in enumerate(self.layers):
            d = 2 ** (i % CYCLE)
            a = F.conv1d(F.pad(h, (d, 0)), l.dilated_conv.weight, l.dilated_conv.bias, dilation=d)
            z = torch.tanh(a[:, :C]) * torch.sigmoid(a[:, C:])
            skip = skip + l.skip_conv(z)
            h = h + l.res_conv(z)
        return self.out_conv(torch.relu(skip)).transpose(1, 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/wavenet")
    args = ap.parse_args()
    torch.manual_seed(7)
    m = WaveNet()
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-0.5, 0.5)
    sd = {"encoder.model." + k: v.detach().clone().float().contiguous() for k, v in m.state_dict().items()}
    x = torch.randn(B, T)
    d_out = torch.randn(B, T, E)
    m64 = WaveNet().double()
    m64.load_state_dict({k[len("encoder.model."):]: v.double() for k, v in sd.items()})
    x64 = x.double().requires_grad_(True)
    out = m64(x64)
    (out * d_out.double()).sum().backward()
    golden = {"input": x, "d_out": d_out, "out": out.detach().float().contiguous(),
              "grad.input": x64.grad.float().contiguous()}
    for k, p in m64.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        golden["grad.encoder.model." + k] = g.float().contiguous()
    os.makedirs(args.out, exist_ok=True)
    save_file(sd, os.path.join(args.out, "model.safetensors"))
    save_file(golden, os.path.join(args.out, "golden.safetensors"))
    print("params", sum(v.numel() for v in sd.values()), "out", tuple(out.shape))


if __name__ == "__main__":
    main()
