"""Makes the audio-encoder (Whisper encoder, WavLM) test fixtures in tests/fixtures/audio_enc/, and full-size
parity sets.

Tiny fixtures (committed; < 2 MB):

  Run:  build/refenv/bin/python tests/reference/make_audio_enc_fixtures.py [--out tests/fixtures/audio_enc]

  whisper_tiny/  WhisperModel (encoder + a 1-layer decoder): d_model 64, 2 encoder layers, 2 heads (of 32: the
                 C default head_dim 64 would be wrong, so config.json matters), ffn 128, 80 mels,
                 max_source_positions 24 (transformers insists on input frames == 2 * max_source_positions,
                 here 48);
                 Hugging Face layout: config.json + model.safetensors (keys "encoder.*", "decoder.*").
                 full.f16.safetensors: WhisperForConditionalGeneration of the same weights rounded to f16 and
                 stored F16 (keys "model.encoder.*", "model.decoder.*"; proj_out is tied and not saved).
  wavlm_group/   WavLMModel, feat_extract_norm "group" (GroupNorm on conv layer 0), post-LN encoder
                 (do_stable_layer_norm false) as wavlm-base-plus; conv_dim (32,32,32,32), kernels (10,3,3,2),
                 strides (5,2,2,2), no conv bias; hidden 64, 2 layers, 4 heads, ffn 128; positional conv
                 kernel 16 (even: the extra frame is removed), 4 groups; 32 buckets, max distance 64.
                 config.json + model.safetensors with the positional conv weight norm stored as
                 weight_g/weight_v (torch 1.x naming), keys without prefix.
  wavlm_layer/   WavLMForCTC (keys "wavlm.*" plus "lm_head.*"), feat_extract_norm "layer" (LayerNorm on every
                 conv layer), stable layer norm (pre-LN, LN after the stack) as wavlm-large; conv_dim
                 (24,32,40,32), kernels (8,4,3,3), strides (4,2,2,2), conv bias; hidden 48, 2 layers, 3 heads
                 (of 16), ffn 96, positional conv kernel 15 (odd: nothing removed), 3 groups; 40 buckets, max
                 distance 100, layer_norm_eps 1e-6; weight norm stored as parametrizations.weight.original0/1
                 (torch 2.x naming).
  buckets.safetensors  torch's relative-position buckets of WavLM for (num_buckets, max_distance) = (320, 800)
                 over relative positions -4000 .. 4000, "buckets_320_800" I32 [8001].

Each directory holds golden.safetensors: the input ("input_features" [80, 48] or "input_values" [n]) and
"last_hidden_state" [T, d] computed by transformers in float64 from the float32 weights (for full.f16 also
"last_hidden_state_f16", from the f16-rounded weights). The script prints how far transformers' own float32
run is from the float64 golden, for scale.

Full-size parity sets (NOT committed; a few GB; run once, then point the C tests at them):

  Run:  build/refenv/bin/python tests/reference/make_audio_enc_fixtures.py \
            --full whisper-small wavlm-base-plus --out build/parity-audio
        MRW_AUDIO_PARITY_DIR=build/parity-audio /tmp/audio-build/test_whisper_enc
        MRW_AUDIO_PARITY_DIR=build/parity-audio /tmp/audio-build/test_wavlm

  names: whisper-base, whisper-small, whisper-medium (encoder-only files, keys without prefix, input
  [80, 3000] = 30 s), wavlm-base-plus, wavlm-large (WavLMModel, input 10 s = 160000 samples, zero mean and
  unit variance). Each: config.json with the published values, model.safetensors (f32), golden.safetensors
  (float64 reference cast to f32, and "last_hidden_state_torch_f32": transformers' float32 output).

Deterministic: every tensor is drawn from numpy's PCG64 seeded with (SEED, crc32(name)), so the weights do not
depend on torch's RNG or on transformers' init; inputs from (INPUT_SEED, crc32(model name)). Distributions are
chosen to exercise every parameter: matrices and convolutions N(0, 1/fan_in), biases U(-0.1, 0.1), norm
weights 1 + U(-0.2, 0.2), position embeddings N(0, 0.5), WavLM's rel_attn_embed N(0, 1), gru_rel_pos_const
1 + U(-0.3, 0.3), weight_g U(0.5, 2). (torch 1.13 has no SDPA: transformers runs its eager attention.)
"""

from __future__ import annotations

import argparse
import json
import os
import time
import zlib

import numpy as np
import torch
from safetensors.numpy import save_file as np_save
from safetensors.torch import load_file as torch_load
from safetensors.torch import save_file as torch_save
from transformers import (WavLMConfig, WavLMForCTC, WavLMModel, WhisperConfig,
                          WhisperForConditionalGeneration, WhisperModel)
from transformers.models.wavlm import modeling_wavlm
from transformers.models.whisper.modeling_whisper import WhisperEncoder

# transformers asks whether the module is FSDP-managed, which imports torch.distributed.fsdp; Debian's torch
# 1.13 fails that import on Python 3.11. No module here is.
modeling_wavlm.is_fsdp_managed_module = lambda module: False

SEED = 20250811
INPUT_SEED = 5151


def rng_for(seed: int, name: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed, zlib.crc32(name.encode())]))


def value_for(name: str, shape: tuple) -> np.ndarray:
    r = rng_for(SEED, name)
    leaf = name.split(".")[-1]
    if name.endswith("gru_rel_pos_const"):
        return 1 + r.uniform(-0.3, 0.3, shape)
    if leaf in ("weight_g", "original0"):
        return r.uniform(0.5, 2.0, shape)
    if "rel_attn_embed" in name:
        return r.normal(0, 1.0, shape)
    if "embed_positions" in name or "embed_tokens" in name:
        return r.normal(0, 0.5, shape)
    if leaf == "masked_spec_embed":
        return r.uniform(0, 1, shape)
    if leaf == "bias":
        return r.uniform(-0.1, 0.1, shape)
    if len(shape) == 1:  # LayerNorm / GroupNorm weights
        return 1 + r.uniform(-0.2, 0.2, shape)
    fan_in = int(np.prod(shape[1:]))
    return r.normal(0, 1.0 / np.sqrt(fan_in), shape)


def randomize(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(value_for(name, tuple(p.shape))).to(p.dtype))
        for name, b in model.named_buffers():
            if b.is_floating_point():
                b.copy_(torch.from_numpy(value_for(name, tuple(b.shape))).to(b.dtype))


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / np.abs(b).max())


def run64(module, fn):
    """fn(module) in float64 on a copy (the module is left in float32). A fresh module from the config plus
    the state dict: deepcopy fails on weight-normed convolutions after a forward."""
    m64 = type(module)(module.config)
    m64.load_state_dict(module.state_dict())
    m64 = m64.double().eval()
    with torch.no_grad():
        return fn(m64)


def state(module) -> dict:
    return {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}


def save_dir(out: str, name: str, config, tensors: dict, golden: dict, fname="model.safetensors") -> str:
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    if config is not None:
        with open(os.path.join(d, "config.json"), "w") as fp:
            # what save_pretrained writes: only the values that differ from the config class's defaults
            fp.write(config.to_json_string(use_diff=True))
    if tensors is not None:
        torch_save(tensors, os.path.join(d, fname))
    if golden is not None:
        np_save({k: np.ascontiguousarray(v) for k, v in golden.items()},
                os.path.join(d, "golden.safetensors"))
    return d


# ------------------------------------------------------------------------------------------------ Whisper

def whisper_config(d, layers, heads, ffn, n_pos, dec_layers=1, dec_ffn=32, vocab=16):
    return WhisperConfig(d_model=d, encoder_layers=layers, encoder_attention_heads=heads, encoder_ffn_dim=ffn,
                         num_mel_bins=80, max_source_positions=n_pos, decoder_layers=dec_layers,
                         decoder_attention_heads=heads, decoder_ffn_dim=dec_ffn, vocab_size=vocab,
                         max_target_positions=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         decoder_start_token_id=1, suppress_tokens=[], begin_suppress_tokens=[])


def mel_input(name: str, n_mels: int, frames: int) -> np.ndarray:
    r = rng_for(INPUT_SEED, name)
    # roughly the range of WhisperFeatureExtractor's output ((log10 - 4) / 4 ... within max - 8)
    return r.uniform(-1.0, 1.5, (n_mels, frames)).astype(np.float32)


def encode_whisper(enc, mel: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(mel)[None]
    return enc(x.to(next(enc.parameters()).dtype)).last_hidden_state[0].double().numpy()


def make_whisper_tiny(out: str) -> None:
    cfg = whisper_config(64, 2, 2, 128, 24)
    model = WhisperModel(cfg).eval()
    randomize(model)
    mel = mel_input("whisper_tiny", 80, 48)
    gold = run64(model.encoder, lambda e: encode_whisper(e, mel))
    with torch.no_grad():
        f32 = encode_whisper(model.encoder, mel)
    print(f"whisper_tiny: out {gold.shape}, transformers f32 vs f64 rel {rel(f32, gold):.2e}")
    d = save_dir(out, "whisper_tiny", cfg, state(model), None)

    full = WhisperForConditionalGeneration(cfg).eval()
    sd = {"model." + k: v for k, v in state(model).items()}
    missing, unexpected = full.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.startswith("proj_out") for k in missing), (missing, unexpected)
    full.half().float()  # round every weight to f16
    gold16 = run64(full.model.encoder, lambda e: encode_whisper(e, mel))
    sd16 = {k: v.half() for k, v in state(full).items() if not k.startswith("proj_out")}
    torch_save(sd16, os.path.join(d, "full.f16.safetensors"))
    np_save({"input_features": mel, "last_hidden_state": gold.astype(np.float32),
             "last_hidden_state_f16": gold16.astype(np.float32)}, os.path.join(d, "golden.safetensors"))


# -------------------------------------------------------------------------------------------------- WavLM

def wave_input(name: str, n: int) -> np.ndarray:
    r = rng_for(INPUT_SEED, name)
    t = np.arange(n) / 16000.0
    x = 0.5 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) + r.normal(0, 0.3, n)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)  # Wav2Vec2FeatureExtractor's do_normalize
    return x.astype(np.float32)


def encode_wavlm(model, wave: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(wave)[None].to(next(model.parameters()).dtype)
    return model(x).last_hidden_state[0].double().numpy()


def rename_weight_norm(sd: dict) -> dict:
    """torch 2.x names (parametrizations) for a torch 1.x state dict."""
    out = {}
    for k, v in sd.items():
        k = k.replace("conv.weight_g", "conv.parametrizations.weight.original0")
        k = k.replace("conv.weight_v", "conv.parametrizations.weight.original1")
        out[k] = v
    return out


def make_wavlm_tiny(out: str) -> None:
    group = WavLMConfig(conv_dim=(32, 32, 32, 32), conv_kernel=(10, 3, 3, 2), conv_stride=(5, 2, 2, 2),
                        conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=False,
                        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_buckets=32,
                        max_bucket_distance=64, vocab_size=8)
    model = WavLMModel(group).eval()
    randomize(model)
    wave = wave_input("wavlm_group", 4000)
    gold = run64(model, lambda m: encode_wavlm(m, wave))
    with torch.no_grad():
        f32 = encode_wavlm(model, wave)
    print(f"wavlm_group: out {gold.shape}, transformers f32 vs f64 rel {rel(f32, gold):.2e}")
    save_dir(out, "wavlm_group", group, state(model),
             {"input_values": wave, "last_hidden_state": gold.astype(np.float32)})

    layer = WavLMConfig(conv_dim=(24, 32, 40, 32), conv_kernel=(8, 4, 3, 3), conv_stride=(4, 2, 2, 2),
                        conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True, hidden_size=48,
                        num_hidden_layers=2, num_attention_heads=3, intermediate_size=96,
                        num_conv_pos_embeddings=15, num_conv_pos_embedding_groups=3, num_buckets=40,
                        max_bucket_distance=100, layer_norm_eps=1e-6, vocab_size=8)
    ctc = WavLMForCTC(layer).eval()
    randomize(ctc)
    wave = wave_input("wavlm_layer", 3001)
    gold = run64(ctc.wavlm, lambda m: encode_wavlm(m, wave))
    with torch.no_grad():
        f32 = encode_wavlm(ctc.wavlm, wave)
    print(f"wavlm_layer: out {gold.shape}, transformers f32 vs f64 rel {rel(f32, gold):.2e}")
    save_dir(out, "wavlm_layer", layer, rename_weight_norm(state(ctc)),
             {"input_values": wave, "last_hidden_state": gold.astype(np.float32)})

    # torch's bucket function for the published (320, 800), over a long range of relative positions
    att = WavLMModel(WavLMConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                 intermediate_size=64)).encoder.layers[0].attention
    rp = torch.arange(-4000, 4001, dtype=torch.long)
    b = att._relative_positions_bucket(rp).to(torch.int32).numpy()
    np_save({"buckets_320_800": b}, os.path.join(out, "buckets.safetensors"))


# --------------------------------------------------------------------------------------------- full size

FULL = {
    "whisper-base": dict(kind="whisper", d=512, layers=6, heads=8, ffn=2048),
    "whisper-small": dict(kind="whisper", d=768, layers=12, heads=12, ffn=3072),
    "whisper-medium": dict(kind="whisper", d=1024, layers=24, heads=16, ffn=4096),
    "wavlm-base-plus": dict(kind="wavlm", hidden=768, layers=12, heads=12, ffn=3072, norm="group",
                            stable=False),
    "wavlm-large": dict(kind="wavlm", hidden=1024, layers=24, heads=16, ffn=4096, norm="layer", stable=True),
}


def make_full(name: str, out: str, seconds: float) -> None:
    spec = FULL[name]
    t0 = time.time()
    if spec["kind"] == "whisper":
        cfg = whisper_config(spec["d"], spec["layers"], spec["heads"], spec["ffn"], 1500)
        model = WhisperEncoder(cfg).eval()
        randomize(model)
        x = mel_input(name, 80, 3000)
        run = encode_whisper
        inputs = {"input_features": x}
    else:
        # conv_bias as the published configs have it (false for base-plus, true for large)
        cfg = WavLMConfig(hidden_size=spec["hidden"], num_hidden_layers=spec["layers"],
                          num_attention_heads=spec["heads"], intermediate_size=spec["ffn"],
                          feat_extract_norm=spec["norm"], do_stable_layer_norm=spec["stable"],
                          conv_bias=spec["stable"])
        model = WavLMModel(cfg).eval()
        randomize(model)
        x = wave_input(name, int(16000 * seconds))
        run = encode_wavlm
        inputs = {"input_values": x}
    with torch.no_grad():
        f32 = run(model, x)
    t1 = time.time()
    gold = run64(model, lambda m: run(m, x))
    print(f"{name}: out {gold.shape}, transformers f32 vs f64 rel {rel(f32, gold):.2e} "
          f"(f32 {t1 - t0:.0f} s, f64 {time.time() - t1:.0f} s)")
    save_dir(out, name, cfg, state(model),
             dict(inputs, last_hidden_state=gold.astype(np.float32),
                  last_hidden_state_torch_f32=f32.astype(np.float32)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--full", nargs="*", choices=sorted(FULL), help="build these full-size sets instead")
    ap.add_argument("--seconds", type=float, default=10.0, help="WavLM input length for --full")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if args.full:
        out = args.out or "build/parity-audio"
        for name in args.full:
            make_full(name, out, args.seconds)
        return
    out = args.out or "tests/fixtures/audio_enc"
    os.makedirs(out, exist_ok=True)
    make_whisper_tiny(out)
    make_wavlm_tiny(out)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
    print(f"{out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
