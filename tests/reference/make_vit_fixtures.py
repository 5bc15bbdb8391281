"""Makes the ViT (SigLIP / CLIP vision tower) test fixtures in tests/fixtures/vit/, and full-size parity sets.

Tiny fixtures (committed; a few hundred KB):

  Run:  build/refenv/bin/python tests/reference/make_vit_fixtures.py [--out tests/fixtures/vit]

  siglip_tiny/   SiglipVisionModel  hidden 64, 2 layers, 2 heads, mlp 128, patch 8, image 32 (16 patches),
                 no pooling head; Hugging Face layout: config.json + model.safetensors (keys "vision_model.*",
                 as transformers 4.x saves them)
  siglip_odd/    hidden 72 = 3 heads of 24, mlp 40, 1 layer, patch 8, image 40 (25 patches); keys WITHOUT the
                 "vision_model." prefix (as transformers 5.x saves a vision-only model)
  clip_tiny/     CLIPVisionModel    hidden 64, 2 layers, 2 heads, mlp 128, patch 8, image 32 (16 patches
                 + CLS)
  clip_odd/      hidden 72 = 3 heads of 24, mlp 40, 1 layer, patch 8, image 40, keys without prefix
  siglip_full/   SiglipModel (text tower, logit_scale/bias, attention-pooling head vision_model.head.*) — a
                 "full checkpoint"; vision hidden 32, 2 heads, mlp 64, 2 layers, patch 8, image 16; also
                 model.bf16.safetensors (all weights rounded to bf16, stored BF16)
  clip_full/     CLIPModel (text tower, visual/text projections, logit_scale), vision tower as siglip_full's;
                 also model.f16.safetensors (weights rounded to f16, stored F16)
  v2ckpt.safetensors       a ModRWKV-v2-style file: "encoder.model." + siglip_full's vision transformer
                           (keys without "vision_model.") plus unrelated "llm.*" / "proj.*" tensors
                           (golden: siglip_full's)
  v2ckpt_full.safetensors  "encoder.model." + all of clip_full's keys (text tower included), plus "llm.*"
                           (golden: clip_full's)
Each directory holds golden.safetensors: "pixels" [3, S, S] f32 (random, the HF processor's planar layout),
"last_hidden_state" [N, hidden] computed by transformers in float64 from the float32 weights, and for the
low-precision copies "last_hidden_state_bf16" / "last_hidden_state_f16" computed (float64) from the rounded
weights.

Full-size parity sets (NOT committed; ~1.6 GB; run once, then point the C test at them):

  Run:  build/refenv/bin/python tests/reference/make_vit_fixtures.py --full --out build/parity-vit
        MRW_VIT_PARITY_DIR=build/parity-vit /tmp/vit-build/test_vit

  build/parity-vit/siglip2-base-patch16-384/   768, 12 layers, 12 heads, 3072, patch 16, image 384
  build/parity-vit/clip-vit-large-patch14-336/ 1024, 24 layers, 16 heads, 4096, patch 14, image 336
  (config.json as the published ones would give, model.safetensors in f32, golden.safetensors in float64.)

Deterministic: every tensor is drawn from numpy's PCG64 seeded with (SEED, crc32(name)), so the weights do not
depend on torch's RNG or on transformers' init; pixels from (PIXEL_SEED, crc32(model name)). Weight
distributions are chosen to exercise every parameter: matrices N(0, 1/fan_in), biases U(-0.1, 0.1),
LayerNorm weights 1 + U(-0.2, 0.2), position/class embeddings N(0, 0.5). (torch 1.13 has no SDPA, so
transformers runs its eager attention.)
"""

from __future__ import annotations

import argparse
import os
import zlib

import numpy as np
import torch
from safetensors.numpy import save_file as np_save
from safetensors.torch import load_file as torch_load
from safetensors.torch import save_file as torch_save
from transformers import (CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel, SiglipConfig,
                          SiglipModel, SiglipVisionConfig, SiglipVisionModel)

SEED = 20250801
PIXEL_SEED = 4242

TINY_TEXT = dict(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                 num_attention_heads=2, max_position_embeddings=16)


def rng_for(*parts) -> np.random.Generator:
    return np.random.default_rng([SEED] + [zlib.crc32(str(p).encode()) for p in parts])


def random_value(name: str, shape: tuple, tag: str) -> np.ndarray:
    """A deterministic, non-degenerate value for a parameter (see the module docstring)."""
    g = rng_for(tag, name)
    base = name.rsplit(".", 1)[-1]
    is_norm = ("norm" in name or "layrnorm" in name) and base in ("weight", "bias")
    if base == "bias" or base.endswith("_bias"):
        return g.uniform(-0.1, 0.1, shape).astype(np.float32)
    if is_norm:  # LayerNorm weight
        return (1.0 + g.uniform(-0.2, 0.2, shape)).astype(np.float32)
    if name.endswith("patch_embedding.weight"):
        return (g.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
    if "embedding" in name or base in ("probe", "class_embedding", "logit_scale"):
        return (0.5 * g.standard_normal(shape)).astype(np.float32)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        return (g.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    return g.uniform(-0.5, 0.5, shape).astype(np.float32)


def randomize(model: torch.nn.Module, tag: str) -> None:
    sd = model.state_dict()
    new = {k: torch.from_numpy(np.asarray(random_value(k, tuple(v.shape), tag))) for k, v in sd.items()}
    model.load_state_dict(new)


def vision_of(model):
    """The vision transformer (embeddings, encoder, post_layernorm) of any of the four classes."""
    return model.vision_model


def golden(model, pixels: np.ndarray) -> np.ndarray:
    """last_hidden_state in float64 (the model is copied, not modified)."""
    import copy
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        out = vision_of(m)(pixel_values=torch.from_numpy(pixels[None].astype(np.float64)))
    return out.last_hidden_state[0].numpy()


def golden_f32(model, pixels: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = vision_of(model.float().eval())(pixel_values=torch.from_numpy(pixels[None]))
    return out.last_hidden_state[0].numpy()


def make_pixels(name: str, size: int) -> np.ndarray:
    g = np.random.default_rng([PIXEL_SEED, zlib.crc32(name.encode())])
    return g.uniform(-1.5, 1.5, (3, size, size)).astype(np.float32)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def rounded_copy(model, dtype):
    import copy
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    return m


def save_weights(model, path: str, strip: str = "", add: str = "", dtype=None, extra=None) -> None:
    sd = {}
    for k, v in model.state_dict().items():
        if strip and k.startswith(strip):
            k = k[len(strip):]
        sd[add + k] = (v.to(dtype) if dtype is not None else v).contiguous().clone()
    if extra:
        sd.update(extra)
    torch_save(sd, path, metadata={"format": "pt"})


def build(kind: str, name: str, vcfg: dict, full: bool):
    """A model with random weights: kind 'siglip' or 'clip'; full adds the text tower."""
    if kind == "siglip":
        if full:
            model = SiglipModel(SiglipConfig(text_config=TINY_TEXT, vision_config=vcfg))
        else:
            model = SiglipVisionModel(SiglipVisionConfig(**vcfg))
    else:
        if full:
            model = CLIPModel(CLIPConfig(text_config=TINY_TEXT, vision_config=vcfg, projection_dim=16))
        else:
            model = CLIPVisionModel(CLIPVisionConfig(**vcfg))
    randomize(model, name)
    return model.eval()


def write_set(out: str, name: str, model, image_size: int, strip: str = "", low=None) -> dict:
    """Writes out/name/{config.json, model.safetensors, golden.safetensors}; returns the golden dict."""
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    model.config.save_pretrained(d)
    save_weights(model, os.path.join(d, "model.safetensors"), strip=strip)
    pixels = make_pixels(name, image_size)
    g = {"pixels": pixels, "last_hidden_state": golden(model, pixels).astype(np.float32)}
    f32 = golden_f32(model, pixels)
    want = g["last_hidden_state"]
    msg = f"{name}: tokens {want.shape}, torch f32 vs f64 rel err {rel_err(f32, want):.2e}"
    if low is not None:
        tdt, suffix = low
        rm = rounded_copy(model, tdt)
        save_weights(rm, os.path.join(d, f"model.{suffix}.safetensors"), strip=strip, dtype=tdt)
        g[f"last_hidden_state_{suffix}"] = golden(rm, pixels).astype(np.float32)
        msg += f", {suffix} copy differs by {rel_err(g[f'last_hidden_state_{suffix}'], want):.2e}"
    np_save(g, os.path.join(d, "golden.safetensors"))
    print(msg)
    return g


def tiny_vcfg(hidden, heads, mlp, layers, patch, image, **kw):
    return dict(hidden_size=hidden, num_attention_heads=heads, intermediate_size=mlp,
                num_hidden_layers=layers, patch_size=patch, image_size=image, **kw)


def make_tiny(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    a = tiny_vcfg(64, 2, 128, 2, 8, 32)
    odd = tiny_vcfg(72, 3, 40, 1, 8, 40)      # 3 heads of 24, an MLP width that is no multiple of 16
    small = tiny_vcfg(32, 2, 64, 2, 8, 16)    # the vision tower of the full checkpoints
    m = build("siglip", "siglip_tiny", dict(a, vision_use_head=False), False)
    write_set(out, "siglip_tiny", m, 32)
    m = build("siglip", "siglip_odd", dict(odd, vision_use_head=False), False)
    write_set(out, "siglip_odd", m, 40, strip="vision_model.")
    m = build("clip", "clip_tiny", a, False)
    write_set(out, "clip_tiny", m, 32)
    m = build("clip", "clip_odd", odd, False)
    write_set(out, "clip_odd", m, 40, strip="vision_model.")
    m = build("siglip", "siglip_full", small, True)
    write_set(out, "siglip_full", m, 16, low=(torch.bfloat16, "bf16"))
    siglip_full = m
    m = build("clip", "clip_full", small, True)
    write_set(out, "clip_full", m, 16, low=(torch.float16, "f16"))
    clip_full = m

    # ModRWKV v2 files: the encoder under "encoder.model." next to the language model and the adapter
    llm = {"llm.emb.weight": torch.zeros(10, 8), "proj.mlp.0.weight": torch.zeros(16, 32)}
    save_weights(siglip_full.vision_model, os.path.join(out, "v2ckpt.safetensors"), add="encoder.model.",
                 extra=llm)
    save_weights(clip_full, os.path.join(out, "v2ckpt_full.safetensors"), add="encoder.model.",
                 extra={"llm.emb.weight": torch.zeros(10, 8)})
    for f in ("v2ckpt.safetensors", "v2ckpt_full.safetensors"):
        n = len(torch_load(os.path.join(out, f)))
        print(f"{f}: {n} tensors")


FULL = {
    # google/siglip2-base-patch16-384 (fixed resolution, model_type siglip): vision tower only
    "siglip2-base-patch16-384": ("siglip", dict(hidden_size=768, intermediate_size=3072,
                                                num_hidden_layers=12, num_attention_heads=12, patch_size=16,
                                                image_size=384)),
    # openai/clip-vit-large-patch14-336: vision tower only
    "clip-vit-large-patch14-336": ("clip", dict(hidden_size=1024, intermediate_size=4096,
                                                num_hidden_layers=24, num_attention_heads=16, patch_size=14,
                                                image_size=336)),
}


def make_full(out: str, which: list) -> None:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for name in which:
        kind, vcfg = FULL[name]
        m = build(kind, name, vcfg, False)
        write_set(out, name, m, vcfg["image_size"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--full", action="store_true", help="build the full published configs (large!)")
    ap.add_argument("--only", nargs="*", default=list(FULL), help="with --full: which of " + ", ".join(FULL))
    args = ap.parse_args()
    if args.full:
        make_full(args.out or "build/parity-vit", args.only)
    else:
        make_tiny(args.out or "tests/fixtures/vit")


if __name__ == "__main__":
    main()
