"""Compares `modrwkv logits` on the full-size random model made by parity_full.py with its float64 goldens.

Run:  build/refenv/bin/python tests/reference/check_parity_full.py build/parity [--modrwkv build/modrwkv]
Prints, per prompt and mode (sequence, RNN), max|Δlogit| and max|Δlogit| / max|logit| (the issue's bound is
1e-4 for f32), then the same for the model converted to GGUF and safetensors by `modrwkv convert`.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file


def logits(exe, model, tokens, rnn):
    cmd = [exe, "logits", "-m", model, "--tokens", ",".join(map(str, tokens))] + (["--rnn"] if rnn else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return np.array([float(x) for x in out.split()], dtype=np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--modrwkv", default="build/modrwkv")
    a = ap.parse_args()
    g = load_file(os.path.join(a.dir, "golden-0.1b.safetensors"))
    pth = os.path.join(a.dir, "rwkv7-0.1b-random.pth")
    models = [("pth", pth)]
    for ext in ("gguf", "safetensors"):
        out = os.path.join(a.dir, "rwkv7-0.1b-random." + ext)
        if not os.path.exists(out):
            subprocess.run([a.modrwkv, "convert", pth, out], check=True)
        models.append((ext, out))
    names = sorted({k.split(".")[0] for k in g if k.endswith(".tokens")})
    worst = 0.0
    print(f"{'format':12s} {'prompt':10s} {'T':>4s} {'mode':4s} {'max|Δ|':>10s} {'max|logit|':>10s} {'relative':>10s}")
    for fmt, path in models:
        for n in names:
            toks = [int(t) for t in g[n + ".tokens"]]
            ref = g[n + ".logits_last"].astype(np.float64)
            for rnn in (False, True):
                if fmt != "pth" and rnn:
                    continue
                got = logits(a.modrwkv, path, toks, rnn)
                d = np.abs(got - ref).max()
                rel = d / np.abs(ref).max()
                worst = max(worst, rel)
                print(f"{fmt:12s} {n:10s} {len(toks):4d} {'rnn' if rnn else 'seq':4s} {d:10.3e} {np.abs(ref).max():10.3f} {rel:10.3e}")
    print(f"worst relative error {worst:.3e} (bound 1e-4): {'PASS' if worst <= 1e-4 else 'FAIL'}")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
