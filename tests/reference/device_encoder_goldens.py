"""Full-size encoder goldens from transformers on the GPU machine (transformers 5.x, torch 2.x), checked
against the C encoders here, without moving hundreds of MB of weights.

Every weight is drawn from numpy's PCG64 seeded with (SEED, crc32(name)), a generator that gives the same
numbers on every machine and numpy version. The run on the GPU machine records the models' configs and
tensor names/shapes (manifest.json), the seeded inputs and transformers' last_hidden_state; here the same
weights are rebuilt from the manifest into Hugging Face directories and `modrwkv encode --input` is compared
with the goldens. It also runs the image processors of that transformers version (torchvision-based in 5.x)
on the project's media fixtures, to measure how far they are from the PIL-exact resize modrwkv implements.

  on the GPU machine (from the repository root, the device tool):
      python3 tests/reference/device_encoder_goldens.py run $OUT
  here, with the files it brought back in DIR:
      build/refenv/bin/python tests/reference/device_encoder_goldens.py weights DIR build/parity-enc
      build/refenv/bin/python tests/reference/device_encoder_goldens.py compare DIR build/parity-enc

Forward passes run on the CPU in float32 (no TF32), one thread count-independent result per model.
"""
import json
import math
import os
import subprocess
import sys
import time
import zlib

import numpy as np

SEED = 20261122
MODELS = ["siglip2-base-384", "clip-l-336", "whisper-small", "wavlm-base-plus"]


def weight(name, shape):
    """The value of one parameter, from (SEED, crc32(name)) alone."""
    rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])
    shape = tuple(int(s) for s in shape)
    low = name.lower()
    n = rng.standard_normal(shape).astype(np.float64)
    if "gru_rel_pos_const" in low:
        return (1.0 + 0.1 * n).astype(np.float32)
    if low.endswith("weight_g") or low.endswith("original0"):
        return (1.0 + 0.1 * np.abs(n)).astype(np.float32)
    if len(shape) <= 1:
        if "norm" in low and low.endswith("weight"):
            return (1.0 + 0.1 * n).astype(np.float32)
        return (0.02 * n).astype(np.float32)
    if "position" in low or "embed_positions" in low or "rel_attn_embed" in low:
        return (0.02 * n).astype(np.float32)
    fan_in = int(np.prod(shape[1:]))
    return (n / math.sqrt(fan_in)).astype(np.float32)


def inputs(model):
    rng = np.random.default_rng([SEED, 7, MODELS.index(model)])
    if model == "siglip2-base-384":
        return "pixel_values", rng.uniform(-1, 1, (3, 384, 384)).astype(np.float32)
    if model == "clip-l-336":
        return "pixel_values", rng.uniform(-1.8, 2.1, (3, 336, 336)).astype(np.float32)
    if model == "whisper-small":
        return "input_features", rng.uniform(-0.9, 1.3, (80, 3000)).astype(np.float32)
    x = rng.standard_normal(160000)
    return "input_values", ((x - x.mean()) / x.std()).astype(np.float32)


# ---------------------------------------------------------------------------------------------- GPU run

def build(model):
    import transformers as tf
    if model == "siglip2-base-384":
        cfg = tf.SiglipVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                    num_attention_heads=12, image_size=384, patch_size=16,
                                    hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
        return cfg, tf.SiglipVisionModel(cfg)
    if model == "clip-l-336":
        cfg = tf.CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=336, patch_size=14, hidden_act="quick_gelu",
                                  layer_norm_eps=1e-5, projection_dim=768)
        return cfg, tf.CLIPVisionModel(cfg)
    if model == "whisper-small":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder
        cfg = tf.WhisperConfig(d_model=768, encoder_layers=12, encoder_attention_heads=12, encoder_ffn_dim=3072,
                               decoder_layers=12, decoder_attention_heads=12, decoder_ffn_dim=3072, num_mel_bins=80,
                               max_source_positions=1500, activation_function="gelu")
        return cfg, WhisperEncoder(cfg)
    cfg = tf.WavLMConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                         feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False,
                         num_buckets=320, max_bucket_distance=800)
    return cfg, tf.WavLMModel(cfg)


def run(out):
    import torch
    from safetensors.numpy import save_file
    import transformers
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(min(16, os.cpu_count() or 1))
    os.makedirs(out, exist_ok=True)
    manifest = {"transformers": transformers.__version__, "torch": torch.__version__, "seed": SEED, "models": {}}
    for model in MODELS:
        t0 = time.time()
        cfg, net = build(model)
        net.eval()
        sd = net.state_dict()
        shapes = {k: list(v.shape) for k, v in sd.items()}
        net.load_state_dict({k: torch.from_numpy(weight(k, s)) for k, s in shapes.items()})
        key, x = inputs(model)
        with torch.no_grad():
            y32 = net(torch.from_numpy(x)[None]).last_hidden_state[0].float().numpy()
            # the golden: the same weights in float64, so the bound measures our error, not torch's
            y = net.double()(torch.from_numpy(x).double()[None]).last_hidden_state[0].float().numpy()
        save_file({"last_hidden_state": np.ascontiguousarray(y), "torch_f32": np.ascontiguousarray(y32)},
                  os.path.join(out, model + ".safetensors"))
        manifest["models"][model] = {"config": json.loads(cfg.to_json_string()), "tensors": shapes,
                                     "class": type(net).__name__, "seconds": round(time.time() - t0, 1)}
        print(f"{model}: {type(net).__name__} out {y.shape} in {time.time() - t0:.1f} s", flush=True)
    manifest["processors"] = processors(out)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f)


def test_images():
    """Five fixtures (small, upscaled) and a 640x480 photo-sized image (downscaled: the antialiased path)."""
    from PIL import Image
    media = "tests/fixtures/media"
    names = sorted(f for f in os.listdir(media) if f.endswith((".png", ".jpg", ".bmp", ".gif")))[:4]
    imgs = {n: Image.open(os.path.join(media, n)).convert("RGB") for n in names}
    rng = np.random.default_rng([SEED, 99])
    yy, xx = np.mgrid[0:480, 0:640]
    base = np.stack([xx * 255 / 640, yy * 255 / 480, 128 + 100 * np.sin(xx / 17.0) * np.cos(yy / 23.0)], -1)
    photo = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    imgs["synthetic_640x480"] = Image.fromarray(photo, "RGB")
    return imgs


def make_processor(cls, kind):
    if kind == "siglip":
        return cls(size={"height": 384, "width": 384}, resample=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return cls(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, resample=3)


def processors(out):
    """This transformers' SigLIP (384 bilinear) and CLIP (336 bicubic + crop) processors, every variant it has,
    on test_images(); stored as 8-bit levels ((x * std + mean) * 255, float16) to fit the transfer limits."""
    from safetensors.numpy import save_file
    import transformers as tf
    imgs = test_images()
    info = {}
    for kind in ("siglip", "clip"):
        tensors = {}
        for suffix in ("", "Fast", "Pil"):
            cls_name = ("Siglip" if kind == "siglip" else "CLIP") + "ImageProcessor" + suffix
            cls = getattr(tf, cls_name, None)
            if cls is None:
                info[cls_name] = "missing"
                continue
            try:
                proc = make_processor(cls, kind)
                mean = np.array(proc.image_mean, dtype=np.float64)[:, None, None]
                std = np.array(proc.image_std, dtype=np.float64)[:, None, None]
                for n, img in imgs.items():
                    pv = proc(images=img, return_tensors="np")["pixel_values"][0].astype(np.float64)
                    tensors[f"{cls_name}.{n}"] = np.ascontiguousarray(((pv * std + mean) * 255).astype(np.float16))
                info[cls_name] = "ok"
            except Exception as e:  # report, do not fail the whole run
                info[cls_name] = f"error: {e}"
        if tensors:
            save_file(tensors, os.path.join(out, f"processors_{kind}.safetensors"))
    return {"images": list(imgs), "classes": info}


# ------------------------------------------------------------------------------------------- local side

def write_weights(src, dst):
    from safetensors.numpy import save_file
    man = json.load(open(os.path.join(src, "manifest.json")))
    for model, m in man["models"].items():
        d = os.path.join(dst, model)
        os.makedirs(d, exist_ok=True)
        save_file({k: weight(k, s) for k, s in m["tensors"].items()}, os.path.join(d, "model.safetensors"))
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(m["config"], f)
        print(f"{model}: {len(m['tensors'])} tensors -> {d}", flush=True)


def compare_processors(src, man):
    """The GPU machine's (transformers 5.x) processors against the PIL-based ones of the reference environment
    (transformers 4.46), which modrwkv reproduces bit for bit (tests/test_media.c): differences in 8-bit levels."""
    import transformers as tf
    from safetensors.numpy import load_file
    imgs = test_images()
    print(f"processors of transformers {man['transformers']} vs PIL-exact (transformers {tf.__version__}): "
          f"{man['processors']['classes']}")
    for kind in ("siglip", "clip"):
        path = os.path.join(src, f"processors_{kind}.safetensors")
        if not os.path.exists(path):
            continue
        got = load_file(path)
        pil = make_processor(tf.SiglipImageProcessor if kind == "siglip" else tf.CLIPImageProcessor, kind)
        mean = np.array(pil.image_mean, dtype=np.float64)[:, None, None]
        std = np.array(pil.image_std, dtype=np.float64)[:, None, None]
        for cls_name in sorted({k.split(".")[0] for k in got}):
            for n, img in imgs.items():
                key = f"{cls_name}.{n}"
                if key not in got:
                    continue
                ref = (pil(images=img, return_tensors="np")["pixel_values"][0].astype(np.float64) * std + mean) * 255
                g = got[key].astype(np.float64)
                if ref.shape != g.shape:
                    print(f"  {cls_name:28s} {n:22s} shape {g.shape} vs {ref.shape}")
                    continue
                d = np.abs(g - ref)
                print(f"  {cls_name:28s} {n:22s} max {d.max():.2f} levels, {100 * (d > 0.5).mean():.2f}% of values "
                      f"off by >= 1 level, mean {d.mean():.3f}")


def compare(src, dst, exe="build/modrwkv"):
    from safetensors.numpy import load_file, save_file
    man = json.load(open(os.path.join(src, "manifest.json")))
    print(f"goldens: transformers {man['transformers']}, torch {man['torch']}")
    worst = 0.0
    for model in man["models"]:
        g = load_file(os.path.join(src, model + ".safetensors"))
        key, x = inputs(model)
        inp = os.path.join(dst, model + ".input.safetensors")
        save_file({key: x}, inp)
        out = os.path.join(dst, model + ".out.safetensors")
        t0 = time.time()
        subprocess.run([exe, "encode", "-m", os.path.join(dst, model), "--input", inp,
                        "--out", out], check=True)
        dt = time.time() - t0
        y = load_file(out)["last_hidden_state"]
        ref = g["last_hidden_state"]
        if y.shape != ref.shape:
            print(f"{model}: shape {y.shape} vs golden {ref.shape}")
            worst = float("inf")
            continue
        rel = float(np.abs(y - ref).max() / np.abs(ref).max())
        rel_torch = float(np.abs(g["torch_f32"] - ref).max() / np.abs(ref).max())
        worst = max(worst, rel)
        print(f"{model:18s} {str(ref.shape):14s} max|Δ| {np.abs(y - ref).max():.3e}  max|ref| {np.abs(ref).max():.3f}  "
              f"relative {rel:.3e} (torch f32: {rel_torch:.3e})  ({dt:.1f} s incl. loading)")
    print(f"worst relative error {worst:.3e} (bound 1e-4): {'PASS' if worst <= 1e-4 else 'FAIL'}")
    compare_processors(src, man)
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "run":
        run(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "weights":
        write_weights(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        print(__doc__)
        sys.exit(2)
