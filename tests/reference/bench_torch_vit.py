"""PyTorch CPU timing of the same vision encoders bench/bench_vit.c times: SigLIP2-base/16 at 384 and CLIP
ViT-L/14 at 336 (transformers' SiglipVisionModel / CLIPVisionModel, full published shapes, random weights,
f32), one image, the same thread counts (torch.set_num_threads), best of N after a warm-up, under no_grad.

Run:  build/refenv/bin/python tests/reference/bench_torch_vit.py [--threads 1,2] [--reps 3]
                                                                 [--only siglip|clip]

GFLOP/s uses the same count as mrw_vit_flops: the GEMMs (patch embedding, q/k/v/out, fc1/fc2) and the two
attention products, 2 per multiply-add. (torch 1.13 has no SDPA; transformers runs its eager attention.)
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

ENCODERS = {
    "siglip2-base-patch16-384": (SiglipVisionModel, SiglipVisionConfig,
                                 dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                      num_attention_heads=12, patch_size=16, image_size=384), False),
    "clip-vit-large-patch14-336": (CLIPVisionModel, CLIPVisionConfig,
                                   dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                        num_attention_heads=16, patch_size=14, image_size=336), True),
}


def flops(cfg: dict, cls_token: bool) -> float:
    c, i, p, s, layers = (cfg["hidden_size"], cfg["intermediate_size"], cfg["patch_size"], cfg["image_size"],
                          cfg["num_hidden_layers"])
    n_patches = (s // p) ** 2
    t = n_patches + (1 if cls_token else 0)
    patch = 2.0 * n_patches * c * 3 * p * p
    layer = 2.0 * t * c * c * 4 + 2.0 * t * c * i * 2 + 2.0 * t * t * c * 2
    return patch + layer * layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    threads = [int(x) for x in args.threads.split(",")]
    print(f"torch {torch.__version__}, transformers eager attention, f32, one image")
    print(f"{'encoder':<27} {'thr':>3} | {'encode ms':>9} {'GFLOP':>7} {'GFLOP/s':>8}")
    for name, (model_cls, cfg_cls, cfg, cls_token) in ENCODERS.items():
        if args.only and args.only not in name:
            continue
        torch.manual_seed(0)
        model = model_cls(cfg_cls(**cfg)).eval()
        pixels = torch.rand(1, 3, cfg["image_size"], cfg["image_size"]) * 2 - 1
        gflop = flops(cfg, cls_token) / 1e9
        for nt in threads:
            torch.set_num_threads(nt)
            with torch.no_grad():
                model(pixel_values=pixels)  # warm-up
                best = float("inf")
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    model(pixel_values=pixels)
                    best = min(best, time.perf_counter() - t0)
            print(f"{name:<27} {nt:>3} | {best * 1e3:9.1f} {gflop:7.1f} {gflop / best:8.1f}", flush=True)
        del model


if __name__ == "__main__":
    main()
