"""Makes the ModRWKV pipeline fixtures in tests/fixtures/modrwkv/ (see the README.md there).

Tiny random models in the real layouts, test media generated here, and golden outputs of every stage computed
with tests/reference/modrwkv_ref.py (float64 arithmetic from the stored weights):
  siglip/            a full SiglipModel (vision + tiny text tower) in the Hugging Face layout, f32
  whisper/           a WhisperForConditionalGeneration (encoder + tiny decoder), Hugging Face layout, f32
  v1_vision/rwkv-0.pth   v1 keys: RWKV unprefixed + modality.world_encoder.adapter.{proj.0,proj.2,pre_norm}.*, bf16
  v1_audio/rwkv-0.pth    v1 keys: RWKV unprefixed + modality.world_encoder.adapter.{conv,proj.0,proj.2}.*, bf16
  v2/rwkv-0.pth          v2 keys: llm.*, proj.{mlp.0,mlp.2,pre_norm,conv}.*, encoder.model.* (own SigLIP weights), bf16
  compress/k{k}s{s}.safetensors   the general Conv1D compression stage: compress.weight [E,E,k], compress.bias [E]
  bad/adapter_width.pth  a v1 vision checkpoint whose adapter takes 40-wide features (the encoder gives 48)
  media/             image_a.png (61x43 RGB), image_b.png (24x20 grayscale), image_32.png (32x32 RGB), speech.wav
  golden.safetensors every intermediate and the logits;  cases.json  the end-to-end cases for the C tool

Run:  build/refenv/bin/python tests/reference/make_modrwkv_fixtures.py [--out tests/fixtures/modrwkv]
Deterministic: every tensor is drawn from numpy's PCG64 seeded with (seed, crc32(name)) and rounded to bf16 so that
the bf16 checkpoints and the f32 Hugging Face files hold exactly the values the goldens were computed from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import wave
import zlib
from collections import OrderedDict

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rwkv7_ref as ref  # noqa: E402
import make_rwkv7_fixtures as rf  # noqa: E402  (random_state_dict, save_safetensors_ordered)
import modrwkv_ref as mr  # noqa: E402

# ----------------------------------------------------------------------------------------------- config

SEED_LM_V1V, SEED_LM_V1A, SEED_LM_V2, SEED_LM_BAD = 20250801, 20250802, 20250803, 20250804
SEED_SIGLIP, SEED_SIGLIP_V2, SEED_WHISPER = 20250811, 20250812, 20250813
SEED_ADAPTERS, SEED_COMPRESS, SEED_MEDIA = 20250821, 20250822, 20250831

# v1 language model: byte vocabulary, one head of 64 (the N = 64 path), two layers, FFN and LoRA ranks all distinct
LM_V1 = ref.Config(n_layer=2, n_embd=64, n_head=1, head_size=64, n_ffn=96, n_vocab=256,
                   lora_w=16, lora_a=12, lora_v=8, lora_g=20)
# v2 language model: the World vocabulary size (ids 65530..65532 exist), C = 8 = 2 heads of 4 to keep emb/head small
LM_V2 = ref.Config(n_layer=2, n_embd=8, n_head=2, head_size=4, n_ffn=24, n_vocab=65536,
                   lora_w=6, lora_a=4, lora_v=2, lora_g=5)
# the bad-adapter checkpoint's language model (only its adapter matters)
LM_BAD = ref.Config(n_layer=2, n_embd=8, n_head=1, head_size=8, n_ffn=16, n_vocab=256,
                    lora_w=4, lora_a=3, lora_v=2, lora_g=5)

SIGLIP_VISION = dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=3,
                     image_size=32, patch_size=8, num_channels=3, layer_norm_eps=1e-6,
                     hidden_act="gelu_pytorch_tanh")
SIGLIP_TEXT = dict(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2,
                   max_position_embeddings=8)
WHISPER = dict(vocab_size=64, num_mel_bins=80, encoder_layers=2, encoder_attention_heads=2, decoder_layers=1,
               decoder_attention_heads=2, d_model=16, encoder_ffn_dim=40, decoder_ffn_dim=24,
               max_source_positions=1500, max_target_positions=16, pad_token_id=1, bos_token_id=2, eos_token_id=2,
               decoder_start_token_id=3, suppress_tokens=[], begin_suppress_tokens=[], activation_function="gelu")

E_VIS, E_AUD = SIGLIP_VISION["hidden_size"], WHISPER["d_model"]
N_PATCH = (SIGLIP_VISION["image_size"] // SIGLIP_VISION["patch_size"]) ** 2  # 16 tokens per image
WAV_SAMPLES = 12345  # 0.77 s at 16 kHz, not a multiple of the hop (160)
COMPRESS = ((3, 2), (4, 3), (5, 4))  # paper Table 7
BAD_ADAPTER_E = 40

V1_PROMPT = "\x16User: What is this?\x17\x16Assistant:"
ASR_PROMPT = "\x16Assistant:"


def v2_prompts(M):
    blk = mr.image_placeholder(M)
    return OrderedDict([
        ("two_images", f"\x16User: {blk}\n{blk}\nWhat is different between these two pictures?\x17\x16Assistant:"),
        ("one_image_bare", f"\x16User: {mr.image_placeholder(M, wrap=False)}\nDescribe it.\x17\x16Assistant:"),
        ("bad_more_placeholders", f"\x16User: {blk}\n{blk}\n{blk}\nAnd this one?\x17\x16Assistant:"),
        ("bad_pad_count", f"\x16User: {blk}\n{mr.image_placeholder(M - 1)}\nCompare.\x17\x16Assistant:"),
        ("bad_four_images", f"\x16User: {blk}{blk}{blk}{blk}\nFour pictures.\x17\x16Assistant:"),
    ])


# ------------------------------------------------------------------------------------------ random data

def rng_for(seed, name):
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def bf16_round(t: torch.Tensor) -> torch.Tensor:
    """The nearest bf16 value (round to nearest even), kept as float32."""
    return t.detach().to(torch.float32).to(torch.bfloat16).to(torch.float32).contiguous()


def normal(seed, name, shape, std):
    return bf16_round(torch.from_numpy(rng_for(seed, name).standard_normal(shape, dtype=np.float32) * np.float32(std)))


def uniform(seed, name, shape, lo, hi):
    a = np.float32(lo) + rng_for(seed, name).random(shape, dtype=np.float32) * np.float32(hi - lo)
    return bf16_round(torch.from_numpy(a.astype(np.float32)))


def random_lm(cfg, seed):
    """rwkv7 fixture distributions (make_rwkv7_fixtures.random_state_dict), rounded to bf16 values."""
    return OrderedDict((k, bf16_round(v)) for k, v in rf.random_state_dict(cfg, seed).items())


def is_norm_weight(name):
    parts = name.split(".")
    return parts[-1] == "weight" and any(s in parts[-2] for s in ("norm", "layernorm", "ln"))


def random_hf_weights(model, seed, tag):
    """Non-degenerate random weights for every tensor of a transformers model, by name:
    norms 1 + U(-0.2, 0.2); biases U(-0.1, 0.1); position embeddings N(0, 0.5^2); SigLIP's probe N(0, 1);
    every other matrix N(0, 1/fan_in) with fan_in = product of the dimensions after the first."""
    sd = OrderedDict()
    for name, t in model.state_dict().items():
        shape = tuple(t.shape)
        key = f"{tag}:{name}"
        if is_norm_weight(name):
            a = uniform(seed, key, shape, 0.8, 1.2)
        elif name.endswith("bias") or name in ("logit_scale", "logit_bias"):
            a = uniform(seed, key, shape, -0.1, 0.1)
        elif "position" in name:
            a = normal(seed, key, shape, 0.5)
        elif name.endswith("probe"):
            a = normal(seed, key, shape, 1.0)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
            a = normal(seed, key, shape, 1.0 / math.sqrt(fan_in))
        sd[name] = a
    return sd


def adapter_v1_vision(E, C, seed, tag):
    return OrderedDict([
        ("proj.0.weight", normal(seed, tag + "proj.0.weight", (2 * C, E), 1 / math.sqrt(E))),
        ("proj.0.bias", uniform(seed, tag + "proj.0.bias", (2 * C,), -0.1, 0.1)),
        ("proj.2.weight", normal(seed, tag + "proj.2.weight", (C, 2 * C), 1 / math.sqrt(2 * C))),
        ("proj.2.bias", uniform(seed, tag + "proj.2.bias", (C,), -0.1, 0.1)),
        ("pre_norm.weight", uniform(seed, tag + "pre_norm.weight", (C,), 0.8, 1.2)),
        ("pre_norm.bias", uniform(seed, tag + "pre_norm.bias", (C,), -0.1, 0.1)),
    ])


def adapter_v1_audio(E, C, seed, tag):
    return OrderedDict([
        ("conv.weight", normal(seed, tag + "conv.weight", (2 * C, E, 3), 1 / math.sqrt(3 * E))),
        ("conv.bias", uniform(seed, tag + "conv.bias", (2 * C,), -0.1, 0.1)),
        ("proj.0.weight", normal(seed, tag + "proj.0.weight", (2 * C, 2 * C), 1 / math.sqrt(2 * C))),
        ("proj.0.bias", uniform(seed, tag + "proj.0.bias", (2 * C,), -0.1, 0.1)),
        ("proj.2.weight", normal(seed, tag + "proj.2.weight", (C, 2 * C), 1 / math.sqrt(2 * C))),
        ("proj.2.bias", uniform(seed, tag + "proj.2.bias", (C,), -0.1, 0.1)),
    ])


def adapter_v2_vision(E, C, seed, tag):
    return OrderedDict([
        ("mlp.0.weight", normal(seed, tag + "mlp.0.weight", (4 * C, E), 1 / math.sqrt(E))),
        ("mlp.0.bias", uniform(seed, tag + "mlp.0.bias", (4 * C,), -0.1, 0.1)),
        ("mlp.2.weight", normal(seed, tag + "mlp.2.weight", (C, 4 * C), 1 / math.sqrt(4 * C))),
        ("mlp.2.bias", uniform(seed, tag + "mlp.2.bias", (C,), -0.1, 0.1)),
        ("pre_norm.weight", uniform(seed, tag + "pre_norm.weight", (C,), 0.8, 1.2)),
        ("pre_norm.bias", uniform(seed, tag + "pre_norm.bias", (C,), -0.1, 0.1)),
        ("conv.weight", normal(seed, tag + "conv.weight", (E, E, 3), 1 / math.sqrt(3 * E))),
    ])


# ---------------------------------------------------------------------------------------------- media

def make_images(seed):
    """Three small test pictures (never copied from anywhere): smooth gradients, a disc, fine stripes and noise so
    that resizing (antialiased down, bilinear up) and channel order all matter."""
    from PIL import Image
    r = np.random.default_rng([seed, 1])
    h, w = 43, 61
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    R = 255 * x / (w - 1)
    G = 255 * (0.5 + 0.5 * np.sin(x / 2.0) * np.cos(y / 3.0))  # fine pattern: antialiasing matters
    B = 255 * y / (h - 1)
    disc = (x - 40) ** 2 + (y - 18) ** 2 < 11 ** 2
    R[disc], G[disc], B[disc] = 250, 30, 60
    img = np.stack([R, G, B], axis=-1) + r.normal(0, 6, (h, w, 3))
    a = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")

    h2, w2 = 20, 24
    y2, x2 = np.mgrid[0:h2, 0:w2]
    g2 = np.where(((x2 // 4) + (y2 // 5)) % 2 == 0, 200, 40) + 2 * x2 + r.integers(-5, 6, (h2, w2))
    b = Image.fromarray(np.clip(g2, 0, 255).astype(np.uint8), "L")

    c = Image.fromarray(r.integers(0, 256, (32, 32, 3)).astype(np.uint8), "RGB")
    return OrderedDict([("image_a", a), ("image_b", b), ("image_32", c)])


def make_wav_samples(seed, n=WAV_SAMPLES, sr=mr.SAMPLE_RATE):
    """A chirp (200 -> 2000 Hz), a 440 Hz tone under an envelope and a little noise, as 16-bit PCM values."""
    t = np.arange(n) / sr
    T = n / sr
    chirp = np.sin(2 * np.pi * (200 * t + (2000 - 200) * t ** 2 / (2 * T)))
    tone = np.sin(2 * np.pi * 440 * t) * np.exp(-((t - T / 2) ** 2) / 0.02)
    noise = np.random.default_rng([seed, 2]).normal(0, 0.02, n)
    x = 0.35 * chirp + 0.3 * tone + noise
    return np.clip(np.rint(x * 32767), -32768, 32767).astype("<i2")


def write_wav(path, pcm, sr=mr.SAMPLE_RATE):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


def triangle_resize_weights(n_in, n_out):
    """Bilinear resampling as PIL defines it (triangle filter widened by the scale when downscaling, i.e.
    antialiased), in float64 and without PIL's fixed-point coefficients and 8-bit intermediate rounding. Only used
    to measure how far an implementation that resizes in floating point lands from the Hugging Face pixels."""
    scale = n_in / n_out
    fs = max(scale, 1.0)
    W = np.zeros((n_out, n_in))
    for o in range(n_out):
        c = (o + 0.5) * scale
        lo, hi = max(int(c - fs + 0.5), 0), min(int(c + fs + 0.5), n_in)
        w = np.maximum(0.0, 1.0 - np.abs((np.arange(lo, hi) - c + 0.5) / fs))
        W[o, lo:hi] = w / w.sum()
    return W


def float_resized_pixels(path, size):
    from PIL import Image
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    H, W = a.shape[:2]
    r = np.einsum("oh,hwc->owc", triangle_resize_weights(H, size),
                  np.einsum("ow,hwc->hoc", triangle_resize_weights(W, size), a))
    return torch.from_numpy(np.ascontiguousarray((r / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).copy()), r


# --------------------------------------------------------------------------------------------- writers

def save_pth_bf16(sd, path):
    torch.save(OrderedDict((k, v.detach().to(torch.bfloat16).clone().contiguous()) for k, v in sd.items()), path)
    os.chmod(path, 0o644)


def save_safetensors_det(tensors, path, metadata=None):
    """Deterministic safetensors writer (tensors in the given order, metadata keys sorted, header padded with
    spaces to 8 bytes) with BF16 support: values are written as the upper 16 bits of their float32 pattern, which
    is exact because every value here is bf16-representable."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(metadata[k]) for k in sorted(metadata)}
    for name, (t, dt) in tensors.items():
        t = t.detach().contiguous()
        if dt == "BF16":
            assert torch.equal(bf16_round(t), t.float()), name
            b = t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
        elif dt == "F32":
            b = t.to(torch.float32).numpy().astype("<f4").tobytes()
        else:
            raise ValueError(dt)
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.chmod(path, 0o644)


def chmod_tree(d):
    for root, _, files in os.walk(d):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def i32(v):
    return torch.tensor([int(x) for x in v], dtype=torch.int32)


def maxabs(a, b):
    return float((a.double() - b.double()).abs().max())


def relerr(a, b):
    """max|a - b| / max|b|."""
    return maxabs(a, b) / float(b.double().abs().max())


# ----------------------------------------------------------------------------------------- the fixture

def build(out, log):
    from transformers import (SiglipConfig, SiglipModel, SiglipImageProcessor, WhisperConfig,
                              WhisperForConditionalGeneration, WhisperFeatureExtractor)

    if os.path.isdir(out):
        for sub in ("siglip", "whisper", "v1_vision", "v1_audio", "v2", "compress", "bad", "media"):
            shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    for sub in ("siglip", "whisper", "v1_vision", "v1_audio", "v2", "compress", "bad", "media"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    P = lambda *a: os.path.join(out, *a)  # noqa: E731
    g, meta, info = OrderedDict(), OrderedDict(), OrderedDict()
    cases = []

    # ---- encoders in the Hugging Face layout
    scfg = SiglipConfig(text_config=SIGLIP_TEXT, vision_config=SIGLIP_VISION)
    smodel = SiglipModel(scfg)
    smodel.load_state_dict(random_hf_weights(smodel, SEED_SIGLIP, "siglip"))
    smodel.save_pretrained(P("siglip"), safe_serialization=True)
    SiglipImageProcessor(do_resize=True, size={"height": 32, "width": 32}, resample=2, do_rescale=True,
                         rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3,
                         image_std=[0.5] * 3).save_pretrained(P("siglip"))

    wcfg = WhisperConfig(**WHISPER)
    wmodel = WhisperForConditionalGeneration(wcfg)
    wmodel.load_state_dict(random_hf_weights(wmodel, SEED_WHISPER, "whisper"))
    wmodel.save_pretrained(P("whisper"), safe_serialization=True)
    WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30,
                            n_fft=400).save_pretrained(P("whisper"))
    for d in ("siglip", "whisper"):
        chmod_tree(P(d))

    # ---- media
    images = make_images(SEED_MEDIA)
    for name, im in images.items():
        im.save(P("media", name + ".png"), format="PNG")
    pcm = make_wav_samples(SEED_MEDIA)
    write_wav(P("media", "speech.wav"), pcm)
    chmod_tree(P("media"))

    # ---- checkpoints
    lm_v1v, lm_v1a, lm_v2 = random_lm(LM_V1, SEED_LM_V1V), random_lm(LM_V1, SEED_LM_V1A), random_lm(LM_V2, SEED_LM_V2)
    ad_v1v = adapter_v1_vision(E_VIS, LM_V1.n_embd, SEED_ADAPTERS, "v1v.")
    ad_v1a = adapter_v1_audio(E_AUD, LM_V1.n_embd, SEED_ADAPTERS, "v1a.")
    ad_v2 = adapter_v2_vision(E_VIS, LM_V2.n_embd, SEED_ADAPTERS, "v2.")
    from transformers import SiglipVisionModel
    v2_vis = SiglipVisionModel(scfg.vision_config)
    enc_v2 = random_hf_weights(v2_vis.vision_model, SEED_SIGLIP_V2, "siglip-v2")  # differs from siglip/

    def v1_sd(lm, ad):
        sd = OrderedDict(lm)
        sd.update((mr.V1_ADAPTER_PREFIX + k, v) for k, v in ad.items())
        return sd

    sd_v1v, sd_v1a = v1_sd(lm_v1v, ad_v1v), v1_sd(lm_v1a, ad_v1a)
    sd_v2 = OrderedDict((mr.V2_LLM_PREFIX + k, v) for k, v in lm_v2.items())
    sd_v2.update((mr.V2_PROJ_PREFIX + k, v) for k, v in ad_v2.items())
    sd_v2.update((mr.V2_ENCODER_PREFIX + k, v) for k, v in enc_v2.items())
    lm_bad = random_lm(LM_BAD, SEED_LM_BAD)
    sd_bad = v1_sd(lm_bad, adapter_v1_vision(BAD_ADAPTER_E, LM_BAD.n_embd, SEED_ADAPTERS, "bad."))
    for sd, path in ((sd_v1v, P("v1_vision", "rwkv-0.pth")), (sd_v1a, P("v1_audio", "rwkv-0.pth")),
                     (sd_v2, P("v2", "rwkv-0.pth")), (sd_bad, P("bad", "adapter_width.pth"))):
        save_pth_bf16(sd, path)
        back = ref.load_state_dict(path)
        assert list(back) == list(sd) and all(back[k].dtype == torch.bfloat16 and
                                              torch.equal(back[k].float(), sd[k]) for k in sd), path
    log("checkpoints: bf16 .pth files load back to exactly the generated values")

    # ---- compression weights (the general stage; key names of our bundled format)
    comp_sd = OrderedDict()
    for k, s in COMPRESS:
        w = normal(SEED_COMPRESS, f"compress.k{k}s{s}.weight", (E_VIS, E_VIS, k), 1 / math.sqrt(k * E_VIS))
        b = uniform(SEED_COMPRESS, f"compress.k{k}s{s}.bias", (E_VIS,), -0.1, 0.1)
        comp_sd[(k, s)] = (w, b)
        cpath = P("compress", f"k{k}s{s}.safetensors")
        save_safetensors_det(OrderedDict([("compress.weight", (w, "BF16")), ("compress.bias", (b, "BF16"))]),
                             cpath, metadata={"compress.kernel": k, "compress.stride": s, "compress.padding": 0,
                                              "compress.width": E_VIS})
        back = ref.load_safetensors(cpath)
        assert back["compress.weight"].dtype == torch.bfloat16 and torch.equal(back["compress.weight"].float(), w)
        assert torch.equal(back["compress.bias"].float(), b)
    chmod_tree(P("compress"))

    # ---- the pipeline, float64 (goldens) and float32 (error budget)
    def load_all(dtype):
        ck_v1v = mr.Checkpoint.load(P("v1_vision", "rwkv-0.pth"), dtype)
        ck_v1a = mr.Checkpoint.load(P("v1_audio", "rwkv-0.pth"), dtype)
        ck_v2 = mr.Checkpoint.load(P("v2", "rwkv-0.pth"), dtype)
        venc = mr.VisionEncoder(P("siglip"), None, dtype)
        venc_v2 = mr.VisionEncoder(P("siglip"), ck_v2.encoder_sd, dtype)
        aenc = mr.AudioEncoder(P("whisper"), dtype)
        return ck_v1v, ck_v1a, ck_v2, venc, venc_v2, aenc

    R64 = load_all(torch.float64)
    R32 = load_all(torch.float32)
    ck_v1v, ck_v1a, ck_v2, venc, venc_v2, aenc = R64
    assert ck_v1v.version == 1 and isinstance(ck_v1v.adapter, mr.AdapterV1Vision)
    assert ck_v1a.version == 1 and isinstance(ck_v1a.adapter, mr.AdapterV1Audio)
    assert ck_v2.version == 2 and isinstance(ck_v2.adapter, mr.AdapterV2Vision)
    img_path = {n: P("media", n + ".png") for n in images}
    rel = lambda p: os.path.relpath(p, out)  # noqa: E731
    errs32 = OrderedDict()

    # pixels (same processor for v1 and v2)
    pixels = OrderedDict((n, venc.preprocess(p)) for n, p in img_path.items())
    for n, px in pixels.items():
        g[f"pixels.{n}"] = f32(px)
    # independent check: the processor on the PIL image equals our preprocess (RGB conversion included)
    from PIL import Image
    px_b = SiglipImageProcessor.from_pretrained(P("siglip"))(
        images=Image.open(img_path["image_b"]).convert("RGB"), return_tensors="np")["pixel_values"][0]
    assert np.array_equal(px_b, pixels["image_b"].numpy())
    # a 32x32 picture is not resized: its pixels are x/255 normalised with mean = std = 0.5
    info["image_32_pixels_vs_exact_max_abs"] = "%.3e" % maxabs(pixels["image_32"], torch.from_numpy(
        np.asarray(images["image_32"], dtype=np.float64).transpose(2, 0, 1) / 127.5 - 1.0))
    assert float(info["image_32_pixels_vs_exact_max_abs"]) < 1e-6

    # ---- v1 vision
    toks_v1 = mr.tokenize(V1_PROMPT, 256)
    g["v1v.tokens"] = i32(toks_v1)
    pipe = mr.Pipeline(ck_v1v, venc)
    pipe32 = mr.Pipeline(R32[0], R32[3])
    enc_out = OrderedDict()
    for n, tag in (("image_a", "a"), ("image_32", "i32")):
        e = venc(pixels[n])
        enc_out[n] = e
        st = pipe.run([e], toks_v1)
        assert st["encoder"][0].shape == (N_PATCH, E_VIS) and st["adapter"][0].shape == (N_PATCH, LM_V1.n_embd)
        g[f"v1v.{tag}.encoder"] = f32(e)
        g[f"v1v.{tag}.adapter"] = f32(st["adapter"][0])
        g[f"v1v.{tag}.logits_last"] = f32(st["logits"][-1])
        if tag == "a":
            g["v1v.a.embeds"] = f32(st["embeds"])
            g["v1v.a.logits_all"] = f32(st["logits"])
        st32 = pipe32.run([R32[3](pixels[n])], toks_v1)
        errs32[f"v1v.{tag}.encoder"] = relerr(st32["encoder"][0], e)
        errs32[f"v1v.{tag}.logits"] = maxabs(st32["logits"], st["logits"])
        cases.append(dict(name=f"v1_vision_{n}", model=rel(P("v1_vision", "rwkv-0.pth")), encoder="siglip",
                          image=[rel(img_path[n])], text=V1_PROMPT, golden=f"v1v.{tag}.logits_last"))
    e_b = venc(pixels["image_b"])
    g["siglip.image_b.encoder"] = f32(e_b)

    # ---- the general compression stage on image_a's encoder output, and end to end through v1 vision
    x = enc_out["image_a"]
    for (k, s), (w, b) in comp_sd.items():
        cp = mr.Compress.load(P("compress", f"k{k}s{s}.safetensors"), kernel=k, stride=s)
        y = cp(x)
        assert y.shape == (mr.conv_out_len(N_PATCH, k, s), E_VIS)
        yt = torch.nn.functional.conv1d(x.T[None], w.double(), b.double(), stride=s)[0].T
        assert maxabs(y, yt) < 1e-12, "conv1d_tokens disagrees with torch.nn.functional.conv1d"
        g[f"compress.k{k}s{s}.out"] = f32(y)
        pc = mr.Pipeline(ck_v1v, venc, cp)
        st = pc.run([x], toks_v1)
        g[f"v1v.compress_k{k}s{s}.adapter"] = f32(st["adapter"][0])
        g[f"v1v.compress_k{k}s{s}.logits_last"] = f32(st["logits"][-1])
        cases.append(dict(name=f"v1_vision_compress_k{k}s{s}", model=rel(P("v1_vision", "rwkv-0.pth")),
                          encoder="siglip", image=[rel(img_path["image_a"])], text=V1_PROMPT,
                          compress=f"{k},{s}", compress_weights=rel(P("compress", f"k{k}s{s}.safetensors")),
                          golden=f"v1v.compress_k{k}s{s}.logits_last"))
    log("compression: " + ", ".join(f"({k},{s}) {N_PATCH} -> {mr.conv_out_len(N_PATCH, k, s)}" for k, s in COMPRESS))

    # ---- v1 audio (Whisper)
    samples, sr = mr.read_wav(P("media", "speech.wav"))
    assert sr == 16000 and len(samples) == WAV_SAMPLES and np.array_equal(samples, pcm.astype(np.float64) / 32768)
    logmel, frames = aenc.preprocess(samples)
    n_keep = aenc.whisper_keep(frames)
    K = frames + 8
    pad_val = logmel[0, -1]
    assert logmel.shape == (80, 3000) and bool((logmel[:, K:] == pad_val).all()), "padding frames not constant"
    fe = WhisperFeatureExtractor.from_pretrained(P("whisper"))
    # the extractor's numpy path (float64 STFT) on the same padded clip, for information
    padded = np.zeros(480000, dtype=np.float32)
    padded[:len(samples)] = samples.astype(np.float32)
    mel_np = fe._np_extract_fbank_features(padded[None], "cpu")[0]
    info["logmel_torch_vs_numpy_path_max_abs"] = f"{maxabs(torch.from_numpy(mel_np), logmel):.3e}"
    unpadded = fe(samples.astype(np.float32), sampling_rate=16000, padding=False, return_tensors="np")
    assert unpadded["input_features"].shape[-1] == frames  # "mel frames of the real audio" = samples // 160
    a_enc = aenc(logmel, frames)
    assert a_enc.shape == (n_keep, E_AUD)
    toks_asr = mr.tokenize(ASR_PROMPT, 256)
    st = mr.Pipeline(ck_v1a, aenc).run([a_enc], toks_asr)
    M_a = st["adapter"][0].shape[0]
    assert M_a == (n_keep + 1) // 2 + 1  # floor((T+1)/2)+1
    cw = ck_v1a.adapter.cw
    yt = torch.nn.functional.conv1d(a_enc.T[None], cw, ck_v1a.adapter.cb, stride=2, padding=2)[0].T
    assert maxabs(mr.conv1d_tokens(a_enc, cw, ck_v1a.adapter.cb, 2, 2), yt) < 1e-12
    g["v1a.real_frames"] = i32([frames])
    g["v1a.logmel_head"] = f32(logmel[:, :K])
    g["v1a.logmel_pad_value"] = f32(pad_val.reshape(1))
    g["v1a.encoder"] = f32(a_enc)
    g["v1a.adapter"] = f32(st["adapter"][0])
    g["v1a.tokens"] = i32(toks_asr)
    g["v1a.embeds"] = f32(st["embeds"])
    g["v1a.logits_all"] = f32(st["logits"])
    g["v1a.logits_last"] = f32(st["logits"][-1])
    lm32, fr32 = R32[5].preprocess(samples)
    st32 = mr.Pipeline(R32[1], R32[5]).run([R32[5](lm32, fr32)], toks_asr)
    errs32["v1a.encoder"] = relerr(st32["encoder"][0], a_enc)
    errs32["v1a.logits"] = maxabs(st32["logits"], st["logits"])
    cases.append(dict(name="v1_audio", model=rel(P("v1_audio", "rwkv-0.pth")), encoder="whisper",
                      audio=rel(P("media", "speech.wav")), text=ASR_PROMPT, golden="v1a.logits_last"))
    log(f"audio: {WAV_SAMPLES} samples, {frames} real mel frames, encoder rows kept {n_keep}, adapter rows {M_a}")

    # ---- v2 (two images through <|image_pad|>, the checkpoint's own encoder weights)
    M2 = mr.conv_out_len(N_PATCH, 3, 2)
    prompts = v2_prompts(M2)
    pipe2 = mr.Pipeline(ck_v2, venc_v2)
    pipe2_32 = mr.Pipeline(R32[2], R32[4])
    e2 = OrderedDict((n, venc_v2(pixels[n])) for n in ("image_a", "image_b"))
    for n, tag in (("image_a", "a"), ("image_b", "b")):
        g[f"v2.{tag}.encoder"] = f32(e2[n])
        g[f"v2.{tag}.conv"] = f32(mr.conv1d_tokens(e2[n], ck_v2.adapter.cw, None, 2, 0))
        errs32[f"v2.{tag}.encoder"] = relerr(R32[4](pixels[n]), e2[n])
    assert maxabs(e2["image_a"], enc_out["image_a"]) > 0.1, "v2 encoder weights must differ from siglip/"
    rng = np.random.default_rng([SEED_MEDIA, 3])
    cols = sorted(set(range(128)) | set(range(65520, 65536)) | set(int(c) for c in rng.integers(128, 65520, 48)))
    g["v2.logits_cols"] = i32(cols)
    cols_t = torch.tensor(cols, dtype=torch.long)
    for pname, text in prompts.items():
        toks = mr.tokenize(text, LM_V2.n_vocab)
        n_img = 4 if pname == "bad_four_images" else 2 if pname != "one_image_bare" else 1
        mentions = {"bad_more_placeholders": ["21"], "bad_pad_count": ["13"], "bad_four_images": ["4"]}
        imgs = (["image_a", "image_b"] * 2)[:n_img]
        case = dict(name=f"v2_{pname}", model=rel(P("v2", "rwkv-0.pth")), encoder="siglip",
                    image=[rel(img_path[n]) for n in imgs], text=text)
        g[f"v2.{pname}.tokens"] = i32(toks)
        if pname.startswith("bad_"):
            try:
                pipe2.run([e2[n] for n in imgs], toks)
            except mr.ModRWKVError as ex:
                case.update(expect_error=True, error_mentions=mentions[pname], reference_error=str(ex))
                log(f"v2 {pname}: rejected as expected: {ex}")
            else:
                raise AssertionError(f"{pname} was accepted")
            cases.append(case)
            continue
        st = pipe2.run([e2[n] for n in imgs], toks)
        assert [int(a.shape[0]) for a in st["adapter"]] == [M2] * n_img
        # splice check: the rows at the placeholders are the adapter rows, the others the embedding rows
        pads = [i for i, t in enumerate(toks) if t == mr.IMAGE_PAD]
        assert torch.equal(st["embeds"][pads], torch.cat(st["adapter"]))
        others = [i for i, t in enumerate(toks) if t != mr.IMAGE_PAD]
        assert torch.equal(st["embeds"][others], ck_v2.lm.emb[torch.tensor([toks[i] for i in others])])
        if pname == "two_images":
            for n, tag, a in zip(imgs, ("a", "b"), st["adapter"]):
                g[f"v2.{tag}.adapter"] = f32(a)
            g["v2.two_images.embeds"] = f32(st["embeds"])
            g["v2.two_images.logits_last"] = f32(st["logits"][-1])
            case["golden"] = "v2.two_images.logits_last"
        else:
            g[f"v2.{pname}.logits_last_cols"] = f32(st["logits"][-1][cols_t])
            case.update(golden=f"v2.{pname}.logits_last_cols", golden_cols="v2.logits_cols")
        g[f"v2.{pname}.logits_all_cols"] = f32(st["logits"][:, cols_t])
        st32 = pipe2_32.run([R32[4](pixels[n]) for n in imgs], toks)
        errs32[f"v2.{pname}.logits"] = maxabs(st32["logits"], st["logits"])
        cases.append(case)
        log(f"v2 {pname}: {len(toks)} tokens ({len(pads)} placeholders, {n_img} image(s) x {M2} rows)")

    # ---- bad adapter width
    try:
        mr.Pipeline(mr.Checkpoint.load(P("bad", "adapter_width.pth")), venc)
    except mr.ModRWKVError as ex:
        log(f"bad/adapter_width.pth: rejected as expected: {ex}")
        cases.append(dict(name="bad_adapter_width", model=rel(P("bad", "adapter_width.pth")), encoder="siglip",
                          image=[rel(img_path["image_a"])], text=V1_PROMPT, expect_error=True,
                          error_mentions=[str(BAD_ADAPTER_E), str(E_VIS)], reference_error=str(ex)))
    else:
        raise AssertionError("bad/adapter_width.pth was accepted")

    # ---- how far a floating-point resize (no 8-bit rounding) moves things (information for the tolerances)
    from PIL import Image as _I
    fpx = {}
    for n in ("image_a", "image_b"):
        fpx[n], r = float_resized_pixels(img_path[n], 32)
        pil = np.asarray(_I.open(img_path[n]).convert("RGB").resize((32, 32), _I.BILINEAR), dtype=np.float64)
        info[f"float_resize_vs_pil.{n}.max_levels"] = f"{np.abs(r - pil).max():.3f}"
    st = pipe.run([venc(fpx["image_a"])], toks_v1)
    info["float_resize_vs_pil.v1v.a.logits_max_abs"] = f"{maxabs(st['logits'][-1], g['v1v.a.logits_last']):.3e}"
    st = pipe2.run([venc_v2(fpx["image_a"]), venc_v2(fpx["image_b"])], mr.tokenize(prompts["two_images"], 65536))
    info["float_resize_vs_pil.v2.two_images.logits_max_abs"] = \
        f"{maxabs(st['logits'][-1], g['v2.two_images.logits_last']):.3e}"
    for k in [k for k in info if k.startswith("float_resize")]:
        log(f"{k}: {info[k]}")

    # ---- cross-checks of the reference itself
    cross = OrderedDict()
    # (1) adapters against an nn.Module formulation of the same weights
    with torch.no_grad():
        def seq(w0, b0, w2, b2):
            m = torch.nn.Sequential(torch.nn.Linear(w0.shape[1], w0.shape[0]), torch.nn.ReLU(),
                                    torch.nn.Linear(w2.shape[1], w2.shape[0])).double()
            m[0].weight.copy_(w0), m[0].bias.copy_(b0), m[2].weight.copy_(w2), m[2].bias.copy_(b2)
            return m
        A = ck_v1v.adapter
        m, ln = seq(A.w0, A.b0, A.w2, A.b2), torch.nn.LayerNorm(A.out_dim, eps=1e-5).double()
        ln.weight.copy_(A.ln_w), ln.bias.copy_(A.ln_b)
        h = m(enc_out["image_a"])
        cross["adapter_v1_vision_vs_nn"] = maxabs(h + ln(h), A(enc_out["image_a"]))
        A = ck_v1a.adapter
        conv = torch.nn.Conv1d(A.cw.shape[1], A.cw.shape[0], 3, stride=2, padding=2).double()
        conv.weight.copy_(A.cw), conv.bias.copy_(A.cb)
        y = seq(A.w0, A.b0, A.w2, A.b2)(conv(a_enc.T[None])[0].T)
        cross["adapter_v1_audio_vs_nn"] = maxabs(y, A(a_enc))
        A = ck_v2.adapter
        conv = torch.nn.Conv1d(E_VIS, E_VIS, 3, stride=2, bias=False).double()
        conv.weight.copy_(A.cw)
        ln = torch.nn.LayerNorm(A.out_dim, eps=1e-5).double()
        ln.weight.copy_(A.ln_w), ln.bias.copy_(A.ln_b)
        h = seq(A.w0, A.b0, A.w2, A.b2)(conv(e2["image_a"].T[None])[0].T)
        cross["adapter_v2_vs_nn"] = maxabs(h + ln(h), A(e2["image_a"]))
    # (2) encoders loaded back through transformers' own from_pretrained (the saved files round-trip)
    sm = SiglipModel.from_pretrained(P("siglip")).double().eval()
    with torch.no_grad():
        cross["siglip_from_pretrained"] = maxabs(
            sm.vision_model(pixel_values=pixels["image_a"][None].double()).last_hidden_state[0], enc_out["image_a"])
        wm = WhisperForConditionalGeneration.from_pretrained(P("whisper")).double().eval()
        cross["whisper_from_pretrained"] = maxabs(
            wm.model.encoder(logmel[None].double()).last_hidden_state[0, :n_keep], a_enc)
    # (3) sequence form vs RNN form of the spliced v1 sequence, and chunked prefill (features, then text
    #     from the carried state) vs one shot -- the features must enter exactly once
    emb = g["v1v.a.embeds"].double()
    l_seq, s_seq = ref.forward_seq(ck_v1v.lm, embeds=emb, logits="all")
    l_rnn, s_rnn = ref.forward_rnn(ck_v1v.lm, embeds=emb)
    cross["v1v_seq_vs_rnn_logits"] = maxabs(l_seq, l_rnn)
    _, s_f = ref.forward_seq(ck_v1v.lm, embeds=emb[:N_PATCH], logits="none")
    l_c, s_c = ref.forward_seq(ck_v1v.lm, tokens=toks_v1, state=s_f, logits="all")
    cross["v1v_chunked_vs_oneshot_logits"] = maxabs(l_c, l_seq[N_PATCH:])
    cross["v1v_chunked_vs_oneshot_state"] = maxabs(s_c.to_flat(), s_seq.to_flat())
    emb2 = g["v2.two_images.embeds"].double()
    cross["v2_seq_vs_rnn_logits"] = maxabs(ref.forward_seq(ck_v2.lm, embeds=emb2, logits="all")[0],
                                           ref.forward_rnn(ck_v2.lm, embeds=emb2)[0])
    # (4) ln0 really is applied to the features: skipping it changes the logits
    lm_no_ln0 = ref.Model(ck_v1v.lm_sd, torch.float64)
    lm_no_ln0.ln0_w, lm_no_ln0.ln0_b = torch.ones_like(lm_no_ln0.ln0_w), torch.zeros_like(lm_no_ln0.ln0_b)
    cross["v1v_ln0_effect"] = maxabs(ref.forward_seq(lm_no_ln0, embeds=emb, logits="last")[0], l_seq[-1])
    for k, v in cross.items():
        log(f"cross-check {k}: {v:.3e}")
    assert all(v < 1e-10 for k, v in cross.items() if k != "v1v_ln0_effect") and cross["v1v_ln0_effect"] > 1e-2
    for k, v in errs32.items():
        log(f"float32 pipeline vs float64 {k}: {v:.3e}")

    # ---- golden file, cases
    meta.update({
        "lm_v1": repr(LM_V1), "lm_v2": repr(LM_V2), "lm_bad": repr(LM_BAD),
        "siglip_vision": json.dumps(SIGLIP_VISION, sort_keys=True), "whisper": json.dumps(WHISPER, sort_keys=True),
        "seeds": json.dumps(dict(lm_v1v=SEED_LM_V1V, lm_v1a=SEED_LM_V1A, lm_v2=SEED_LM_V2, lm_bad=SEED_LM_BAD,
                                 siglip=SEED_SIGLIP, siglip_v2=SEED_SIGLIP_V2, whisper=SEED_WHISPER,
                                 adapters=SEED_ADAPTERS, compress=SEED_COMPRESS, media=SEED_MEDIA)),
        "state_layout": "per layer [sx_att C][S H*N*N, h*N*N+i*N+j, i=value row, j=key column][sx_ffn C]",
        "v1_prompt": json.dumps(V1_PROMPT), "asr_prompt": json.dumps(ASR_PROMPT),
        "v2_prompts": json.dumps(prompts),
    })
    meta.update({f"cross.{k}": f"{v:.3e}" for k, v in cross.items()})
    meta.update({f"f32_vs_f64.{k}": f"{v:.3e}" for k, v in errs32.items()})
    meta.update(info)
    gpath = P("golden.safetensors")
    rf.save_safetensors_ordered(g, gpath, metadata=meta)
    back = ref.load_safetensors(gpath)
    assert set(back) == set(g) and all(torch.equal(back[k], g[k]) for k in g)
    with open(P("cases.json"), "w") as f:
        json.dump({"note": "end-to-end cases for tests/reference/modrwkv_pipeline_check.py; paths relative to "
                           "this folder; 'golden' names a tensor of golden.safetensors (with 'golden_cols', only "
                           "those vocabulary ids are compared)", "cases": cases}, f, indent=1, ensure_ascii=True)
        f.write("\n")
    for fn in ("golden.safetensors", "cases.json"):
        os.chmod(P(fn), 0o644)
    return g, meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "fixtures", "modrwkv"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    g, meta = build(out, log)
    total = 0
    for root, _, files in sorted(os.walk(out)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            n = os.path.getsize(p)
            total += n
            with open(p, "rb") as f:
                h = hashlib.sha256(f.read()).hexdigest()[:16]
            log(f"{n:10d}  {h}  {os.path.relpath(p, out)}")
    log(f"{total:10d}  total")


if __name__ == "__main__":
    main()
