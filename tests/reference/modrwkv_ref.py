"""ModRWKV reference pipeline, written literally from ../shared/reference/modrwkv.md (and encoders.md).

    media -> encoder (transformers, frozen) -> [Conv1D compression] -> adapter -> splice -> ln0 -> RWKV-7 -> logits

The language model is tests/reference/rwkv7_ref.py, used unchanged: its forward_seq(model, embeds=...) takes rows
*before* ln0 and applies ln0 of block 0 to every row, which is exactly the spec's "ln0 of block 0 is applied to the
spliced sequence, modality features included". The encoders are the Hugging Face `transformers` classes, used as
black boxes (their last_hidden_state). Everything else (convolutions over the token axis, adapters, splicing,
checkpoint layouts) is written out here with plain tensor operations so that it reads like the specification.

Arithmetic is float64 by default (pass dtype=torch.float32 for an fp32 run).

Spec readings this module makes (also in tests/fixtures/modrwkv/README.md):
  * v2 `pre_norm` is a LayerNorm over C (the LM width) applied exactly like v1's: out = h + LayerNorm_C(h), after
    the MLP. The spec lists the key but not its place; its v1 line says the key named `pre_norm` is used as
    "h + LayerNorm_C(h)", and the published v2 adapter builds `LayerNorm(project_dim)` and returns `x + pre_norm(x)`.
    A `pre_norm.weight` whose length is not C is rejected (a true pre-MLP norm over E would have length E).
  * LayerNorm eps 1e-5 (PyTorch default) for every adapter norm, biased variance.
  * Conv1D over the token axis: input rows are time steps, weight is PyTorch's Conv1d layout [out, in, k], zero
    padding p on both ends, L' = floor((L + 2p - k)/s) + 1. v1 audio: k3 s2 p2 with bias; v2 conv: k3 s2 p0 without
    bias; the general compression stage: kernel from the weight shape, stride and padding given (padding 0 for the
    paper's Table 7 settings: 577 -> 288 / 192 / 144), bias optional. Keys of the general stage in the bundled
    format: `compress.weight` [E, E, k], `compress.bias` [E] (optional), stride/padding in metadata.
  * Whisper: n = (mel frames of the real audio) // 2 + 1 rows of last_hidden_state are kept, where the mel frames
    of the real audio are num_samples // 160 (what WhisperFeatureExtractor gives the unpadded clip); n <= 1500.
  * v2 checkpoints carry the encoder weights (`encoder.model.*` = the SigLIP vision transformer, as
    `AutoModel.from_pretrained(...).vision_model` names them, `head.*` included and unused). They take precedence
    over any Hugging Face file; the encoder *configuration* (heads, eps, image size, processor) comes from the
    encoder directory, because the checkpoint does not carry it.
  * Images are opened with PIL and converted to RGB before the processor (a grayscale or RGBA file is therefore
    replicated / stripped of alpha, as stb_image with 3 requested channels does).

Command line (mirrors `modrwkv logits`):
  python modrwkv_ref.py logits -m MODEL [--encoder DIR] (--image FILE [--image FILE ...] | --audio FILE)
         (--text TEXT | --tokens 1,2,3) [--compress K,S --compress-weights FILE] [--all] [--f32]
  prints the last position's logits, one per line (%.9g), like the C tool; --all prints every position.
"""

from __future__ import annotations

import json
import os
import re
import sys
import wave
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv7_ref  # noqa: E402  (the RWKV-7 reference, reused as is)

# ------------------------------------------------------------------------------------------- constants

ADAPTER_LN_EPS = 1e-5  # LayerNorm_C of the vision adapters (PyTorch's default)
VISION_START, VISION_END, IMAGE_PAD = 65530, 65531, 65532  # ModRWKV v2 special tokens
SPECIAL_TOKENS = OrderedDict([("<|vision_start|>", VISION_START), ("<|vision_end|>", VISION_END),
                              ("<|image_pad|>", IMAGE_PAD)])
MAX_IMAGES_V2 = 3  # "Up to 3 images per sample"
V1_ADAPTER_PREFIX = "modality.world_encoder.adapter."
V2_LLM_PREFIX, V2_PROJ_PREFIX, V2_ENCODER_PREFIX = "llm.", "proj.", "encoder.model."
WHISPER_HOP = 160  # samples per mel frame
WHISPER_MAX_FRAMES = 1500  # encoder positions of a 30 s window
SAMPLE_RATE = 16000


class ModRWKVError(ValueError):
    """A bad input the C implementation must also reject with a clear error."""


# ------------------------------------------------------------------------------------ basic operations

def linear(x, w, b=None):
    """nn.Linear: weight [out, in]; x [T, in] -> [T, out]."""
    y = x @ w.T
    return y if b is None else y + b


def layer_norm(x, w, b, eps=ADAPTER_LN_EPS):
    """LayerNorm over the last dimension, biased variance, affine."""
    return rwkv7_ref.layer_norm(x, w, b, eps)


def conv_out_len(L: int, k: int, s: int, p: int = 0) -> int:
    """L' = floor((L + 2p - k)/s) + 1 (the spec's formula)."""
    return (L + 2 * p - k) // s + 1


def conv1d_tokens(x, weight, bias=None, stride=1, padding=0):
    """Conv1d over the token (time) axis.
    x: [T, E_in] (one row per token); weight: [E_out, E_in, k] (PyTorch Conv1d layout); bias: [E_out] or None;
    zero padding `padding` rows at both ends. Returns [T', E_out] with T' = conv_out_len(T, k, stride, padding):
        out[t, o] = bias[o] + sum_{i, j} weight[o, i, j] * xpad[t*stride + j, i]."""
    T, E = x.shape
    O, I, k = weight.shape
    if I != E:
        raise ModRWKVError(f"convolution expects {I} input channels, the features have {E}")
    Tp = conv_out_len(T, k, stride, padding)
    if Tp < 1:
        raise ModRWKVError(f"{T} tokens are too few for a convolution with kernel {k}, stride {stride}, "
                           f"padding {padding}")
    z = torch.zeros(padding, E, dtype=x.dtype)
    xp = torch.cat([z, x, z], dim=0)
    windows = xp.unfold(0, k, stride)[:Tp]  # [T', E_in, k]: windows[t, i, j] = xpad[t*stride + j, i]
    out = torch.einsum("tij,oij->to", windows, weight)
    return out if bias is None else out + bias


# --------------------------------------------------------------------------------------------- adapters

def _t(sd, key, dtype):
    if key not in sd:
        raise ModRWKVError(f"adapter tensor '{key}' is missing")
    return sd[key].detach().to(torch.float64).to(dtype)


class AdapterV1Vision:
    """v1 vision: h = Linear(E->2C) -> ReLU -> Linear(2C->C); out = h + LayerNorm_C(h) (eps 1e-5).
    Keys proj.0.{weight,bias} [2C,E], proj.2.{weight,bias} [C,2C], pre_norm.{weight,bias} [C]."""
    kind = "v1-vision"

    def __init__(self, sd, dtype=torch.float64):
        self.w0, self.b0 = _t(sd, "proj.0.weight", dtype), _t(sd, "proj.0.bias", dtype)
        self.w2, self.b2 = _t(sd, "proj.2.weight", dtype), _t(sd, "proj.2.bias", dtype)
        self.ln_w, self.ln_b = _t(sd, "pre_norm.weight", dtype), _t(sd, "pre_norm.bias", dtype)
        self.in_dim, self.out_dim = self.w0.shape[1], self.w2.shape[0]
        _check_mlp(self.w0, self.b0, self.w2, self.b2, "proj")
        _check_norm(self.ln_w, self.ln_b, self.out_dim)

    def __call__(self, x):
        _check_width(x, self.in_dim, self.kind)
        h = linear(torch.relu(linear(x, self.w0, self.b0)), self.w2, self.b2)
        return h + layer_norm(h, self.ln_w, self.ln_b)


class AdapterV1Audio:
    """v1 audio: Conv1d(E->2C, kernel 3, stride 2, padding 2) over time -> Linear(2C->2C) -> ReLU -> Linear(2C->C);
    no LayerNorm. Output length floor((T+1)/2)+1. Keys conv.{weight [2C,E,3], bias}, proj.0.*, proj.2.*."""
    kind = "v1-audio"
    STRIDE, PADDING = 2, 2

    def __init__(self, sd, dtype=torch.float64):
        self.cw, self.cb = _t(sd, "conv.weight", dtype), _t(sd, "conv.bias", dtype)
        self.w0, self.b0 = _t(sd, "proj.0.weight", dtype), _t(sd, "proj.0.bias", dtype)
        self.w2, self.b2 = _t(sd, "proj.2.weight", dtype), _t(sd, "proj.2.bias", dtype)
        if self.cw.ndim != 3 or self.cw.shape[2] != 3 or self.cb.shape != (self.cw.shape[0],):
            raise ModRWKVError(f"audio adapter conv weight {tuple(self.cw.shape)} is not [2C, E, 3]")
        _check_mlp(self.w0, self.b0, self.w2, self.b2, "proj")
        if self.w0.shape[1] != self.cw.shape[0]:
            raise ModRWKVError(f"audio adapter: conv gives {self.cw.shape[0]} channels, proj.0 takes {self.w0.shape[1]}")
        self.in_dim, self.out_dim = self.cw.shape[1], self.w2.shape[0]

    def __call__(self, x):
        _check_width(x, self.in_dim, self.kind)
        y = conv1d_tokens(x, self.cw, self.cb, self.STRIDE, self.PADDING)
        return linear(torch.relu(linear(y, self.w0, self.b0)), self.w2, self.b2)


class AdapterV2Vision:
    """v2 vision: optional conv = Conv1d(E->E, kernel 3, stride 2, no padding, no bias) over tokens, then
    h = Linear(E->4C) -> ReLU -> Linear(4C->C), out = h + LayerNorm_C(h) (key pre_norm, eps 1e-5; see the module
    docstring for this reading). Keys mlp.0.* [4C,E], mlp.2.* [C,4C], pre_norm.* [C], conv.weight [E,E,3]."""
    kind = "v2-vision"
    STRIDE = 2

    def __init__(self, sd, dtype=torch.float64):
        self.cw = _t(sd, "conv.weight", dtype) if "conv.weight" in sd else None
        if "conv.bias" in sd:
            raise ModRWKVError("v2 adapter conv has no bias, but the checkpoint carries proj.conv.bias")
        self.w0, self.b0 = _t(sd, "mlp.0.weight", dtype), _t(sd, "mlp.0.bias", dtype)
        self.w2, self.b2 = _t(sd, "mlp.2.weight", dtype), _t(sd, "mlp.2.bias", dtype)
        self.ln_w, self.ln_b = _t(sd, "pre_norm.weight", dtype), _t(sd, "pre_norm.bias", dtype)
        _check_mlp(self.w0, self.b0, self.w2, self.b2, "mlp")
        self.in_dim, self.out_dim = self.w0.shape[1], self.w2.shape[0]
        if self.cw is not None and (self.cw.ndim != 3 or self.cw.shape[0] != self.cw.shape[1] or
                                    self.cw.shape[0] != self.in_dim or self.cw.shape[2] != 3):
            raise ModRWKVError(f"v2 adapter conv weight {tuple(self.cw.shape)} is not [E, E, 3] with E={self.in_dim}")
        if self.ln_w.shape[0] != self.out_dim:
            raise ModRWKVError(f"v2 pre_norm has {self.ln_w.shape[0]} weights; this reference reads it as "
                               f"LayerNorm_C after the MLP (C={self.out_dim})")
        _check_norm(self.ln_w, self.ln_b, self.out_dim)

    def __call__(self, x):
        _check_width(x, self.in_dim, self.kind)
        if self.cw is not None:
            x = conv1d_tokens(x, self.cw, None, self.STRIDE, 0)
        h = linear(torch.relu(linear(x, self.w0, self.b0)), self.w2, self.b2)
        return h + layer_norm(h, self.ln_w, self.ln_b)


class Compress:
    """The general sequence-compression stage (paper section 3.3, Table 7): Conv1d(E->E, kernel k, stride s,
    padding p) over the token axis, between the encoder and the adapter. Kernel from compress.weight [E, E, k];
    compress.bias [E] optional; stride and padding are not in the weights (metadata or --compress k,s)."""

    def __init__(self, weight, bias=None, stride=1, padding=0, dtype=torch.float64):
        self.w = weight.detach().to(torch.float64).to(dtype)
        self.b = None if bias is None else bias.detach().to(torch.float64).to(dtype)
        if self.w.ndim != 3 or self.w.shape[0] != self.w.shape[1]:
            raise ModRWKVError(f"compress.weight {tuple(self.w.shape)} is not [E, E, k]")
        if self.b is not None and self.b.shape != (self.w.shape[0],):
            raise ModRWKVError(f"compress.bias {tuple(self.b.shape)} does not match E={self.w.shape[0]}")
        self.k, self.s, self.p = self.w.shape[2], int(stride), int(padding)
        if self.s < 1 or self.p < 0:
            raise ModRWKVError(f"bad compression stride {self.s} / padding {self.p}")

    @staticmethod
    def load(path, kernel=None, stride=None, dtype=torch.float64):
        """compress.{weight,bias} from a safetensors file; stride/padding from its metadata unless given."""
        from safetensors import safe_open
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            w = f.get_tensor("compress.weight")
            b = f.get_tensor("compress.bias") if "compress.bias" in f.keys() else None
        s = stride if stride is not None else int(meta.get("compress.stride", 0))
        if s < 1:
            raise ModRWKVError(f"{path}: no stride (metadata compress.stride) and none given")
        if kernel is not None and int(kernel) != w.shape[2]:
            raise ModRWKVError(f"{path}: kernel {w.shape[2]} in the file, {kernel} requested")
        return Compress(w, b, s, int(meta.get("compress.padding", 0)), dtype)

    def out_len(self, L):
        return conv_out_len(L, self.k, self.s, self.p)

    def __call__(self, x):
        if x.shape[1] != self.w.shape[1]:
            raise ModRWKVError(f"compression expects width {self.w.shape[1]}, the encoder gives {x.shape[1]}")
        return conv1d_tokens(x, self.w, self.b, self.s, self.p)


def _check_width(x, want, kind):
    if x.ndim != 2 or x.shape[1] != want:
        raise ModRWKVError(f"{kind} adapter expects features of width {want}, the encoder gives "
                           f"{x.shape[-1] if x.ndim else '?'}")


def _check_mlp(w0, b0, w2, b2, name):
    if w0.ndim != 2 or w2.ndim != 2 or w2.shape[1] != w0.shape[0] or b0.shape != (w0.shape[0],) or \
            b2.shape != (w2.shape[0],):
        raise ModRWKVError(f"adapter {name}: inconsistent shapes {tuple(w0.shape)}, {tuple(w2.shape)}")


def _check_norm(w, b, C):
    if w.shape != (C,) or b.shape != (C,):
        raise ModRWKVError(f"adapter pre_norm shapes {tuple(w.shape)}/{tuple(b.shape)}, expected [{C}]")


def adapter_from_state_dict(sd, version, dtype=torch.float64):
    """sd: the adapter's tensors with the prefix removed. v1: conv.* -> audio, else vision; v2: vision."""
    keys = set(sd)
    if version == 1:
        want_audio = {"conv.weight", "conv.bias", "proj.0.weight", "proj.0.bias", "proj.2.weight", "proj.2.bias"}
        want_vision = {"proj.0.weight", "proj.0.bias", "proj.2.weight", "proj.2.bias", "pre_norm.weight",
                       "pre_norm.bias"}
        if keys == want_audio:
            return AdapterV1Audio(sd, dtype)
        if keys == want_vision:
            return AdapterV1Vision(sd, dtype)
        raise ModRWKVError(f"unknown v1 adapter keys {sorted(keys)}")
    want = {"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "pre_norm.weight", "pre_norm.bias"}
    if keys == want or keys == want | {"conv.weight"}:
        return AdapterV2Vision(sd, dtype)
    raise ModRWKVError(f"unknown v2 adapter keys {sorted(keys)}")


# ------------------------------------------------------------------------------------------ checkpoints

class Checkpoint:
    """A ModRWKV checkpoint split into its parts.
    v1: RWKV keys unprefixed + the adapter under modality.world_encoder.adapter.; no encoder weights.
    v2: llm.<rwkv key>, proj.{mlp.0,mlp.2,pre_norm[,conv]}.*, encoder.model.* (the full encoder)."""

    def __init__(self, sd, dtype=torch.float64):
        if any(k.startswith(V2_LLM_PREFIX) for k in sd):
            self.version = 2
            parts = {V2_LLM_PREFIX: OrderedDict(), V2_PROJ_PREFIX: OrderedDict(), V2_ENCODER_PREFIX: OrderedDict()}
            for k, v in sd.items():
                for p, d in parts.items():
                    if k.startswith(p):
                        d[k[len(p):]] = v
                        break
                else:
                    raise ModRWKVError(f"v2 checkpoint: unexpected key '{k}'")
            lm, ad, self.encoder_sd = parts[V2_LLM_PREFIX], parts[V2_PROJ_PREFIX], parts[V2_ENCODER_PREFIX]
        else:
            self.version = 1
            lm, ad = OrderedDict(), OrderedDict()
            for k, v in sd.items():
                if k.startswith(V1_ADAPTER_PREFIX):
                    ad[k[len(V1_ADAPTER_PREFIX):]] = v
                else:
                    lm[k] = v
            self.encoder_sd = None
        if not ad:
            raise ModRWKVError("no adapter tensors: a plain RWKV-7 checkpoint, not ModRWKV")
        self.lm_sd = lm
        self.lm = rwkv7_ref.Model(lm, dtype)  # rejects unknown RWKV keys
        self.adapter = adapter_from_state_dict(ad, self.version, dtype)
        C = self.lm.cfg.n_embd
        if self.adapter.out_dim != C:
            raise ModRWKVError(f"adapter gives {self.adapter.out_dim} features, the language model has C={C}")
        self.dtype = dtype

    @staticmethod
    def load(path, dtype=torch.float64):
        return Checkpoint(rwkv7_ref.load_state_dict(path), dtype)


# -------------------------------------------------------------------------------------------- encoders

def _read_config(directory):
    with open(os.path.join(directory, "config.json")) as f:
        return json.load(f)


class VisionEncoder:
    """SigLIP (last_hidden_state, post-LayerNorm) or CLIP (last_hidden_state, no post-LN) vision tower from a Hugging
    Face directory (config.json, model.safetensors, preprocessor_config.json). `state_dict`, when given, replaces
    the directory's weights (keys of the vision transformer without prefix: embeddings.*, encoder.*, ...)."""

    def __init__(self, directory, state_dict=None, dtype=torch.float64):
        from transformers import AutoConfig, AutoImageProcessor
        mt = _read_config(directory).get("model_type")
        if mt in ("siglip", "siglip_vision_model"):
            from transformers import SiglipVisionModel as VM
        elif mt in ("clip", "clip_vision_model"):
            from transformers import CLIPVisionModel as VM
        else:
            raise ModRWKVError(f"{directory}: model_type {mt!r} is not a supported vision encoder")
        cfg = AutoConfig.from_pretrained(directory)
        vcfg = getattr(cfg, "vision_config", cfg)
        vcfg._attn_implementation = "eager"
        model = VM(vcfg)  # its .vision_model is the vision transformer
        if state_dict is None:
            from safetensors.torch import load_file
            full = load_file(os.path.join(directory, "model.safetensors"))
            pre = "vision_model." if any(k.startswith("vision_model.") for k in full) else ""
            state_dict = OrderedDict((k[len(pre):], v) for k, v in full.items() if k.startswith(pre) and
                                     not k.startswith("text_model.") and k not in ("logit_scale", "logit_bias"))
        missing, unexpected = model.vision_model.load_state_dict(
            OrderedDict((k, v.to(torch.float32)) for k, v in state_dict.items()), strict=False)
        if missing or unexpected:
            raise ModRWKVError(f"vision encoder weights: missing {missing[:6]}, unexpected {unexpected[:6]}")
        self.model = model.to(dtype).eval()
        self.dtype = dtype
        self.width = vcfg.hidden_size
        self.processor = AutoImageProcessor.from_pretrained(directory)

    def preprocess(self, path):
        """PIL open -> convert('RGB') -> the Hugging Face image processor. Returns pixels [3, H, W] float32."""
        from PIL import Image
        with Image.open(path) as im:
            im.seek(0)  # GIF: first frame
            rgb = im.convert("RGB")
        px = self.processor(images=rgb, return_tensors="np")["pixel_values"][0]
        return torch.from_numpy(np.ascontiguousarray(px, dtype=np.float32))

    @torch.no_grad()
    def __call__(self, pixels):
        """pixels [3, H, W] -> last_hidden_state [tokens, E]."""
        out = self.model(pixel_values=pixels[None].to(self.dtype))
        return out.last_hidden_state[0]


def read_wav(path):
    """PCM WAV (8/16/24/32-bit integer) -> float64 mono samples in [-1, 1) and the sample rate. Channels are
    averaged. (The C tool also reads other formats and resamples with soxr; the fixtures are 16 kHz mono WAV.)"""
    with wave.open(path, "rb") as w:
        ch, sw, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    if sw == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif sw == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    elif sw == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    elif sw == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)
    else:
        raise ModRWKVError(f"{path}: {8 * sw}-bit samples are not supported")
    return x.reshape(-1, ch).mean(axis=1), sr


class AudioEncoder:
    """Whisper encoder (last_hidden_state[:n], n = real mel frames // 2 + 1) or WavLM (last_hidden_state) from a
    Hugging Face directory; full checkpoints are accepted and their decoder is ignored."""

    def __init__(self, directory, dtype=torch.float64):
        from transformers import AutoConfig, AutoFeatureExtractor
        self.kind = _read_config(directory).get("model_type")
        cfg = AutoConfig.from_pretrained(directory)
        cfg._attn_implementation = "eager"
        if self.kind == "whisper":
            from transformers.models.whisper.modeling_whisper import WhisperEncoder
            self.model = WhisperEncoder(cfg)
            pre_candidates = ("model.encoder.", "encoder.")
        elif self.kind == "wavlm":
            from transformers import WavLMModel
            self.model = WavLMModel(cfg)
            pre_candidates = ("wavlm.", "")
        else:
            raise ModRWKVError(f"{directory}: model_type {self.kind!r} is not a supported audio encoder")
        from safetensors.torch import load_file
        full = load_file(os.path.join(directory, "model.safetensors"))
        pre = next(p for p in pre_candidates if any(k.startswith(p) for k in full))
        sd = OrderedDict((k[len(pre):], v.to(torch.float32)) for k, v in full.items() if k.startswith(pre))
        missing, unexpected = self.model.load_state_dict(sd, strict=False)
        missing = [m for m in missing if "masked_spec_embed" not in m]
        if missing or (unexpected and self.kind == "whisper"):
            raise ModRWKVError(f"audio encoder weights: missing {missing[:6]}, unexpected {unexpected[:6]}")
        self.model = self.model.to(dtype).eval()
        self.dtype = dtype
        self.width = cfg.d_model if self.kind == "whisper" else cfg.hidden_size
        self.fe = AutoFeatureExtractor.from_pretrained(directory)

    def preprocess(self, samples):
        """16 kHz mono float samples -> the encoder input: Whisper log-mel [80, 3000] (float32, padded to 30 s)
        and the number of mel frames of the real audio; WavLM: the (optionally normalised) waveform."""
        x = np.asarray(samples, dtype=np.float32)
        if self.kind == "whisper":
            feats = self.fe(x, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"][0]
            return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)), len(x) // WHISPER_HOP
        feats = self.fe(x, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_values"][0]
        return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)), None

    @staticmethod
    def whisper_keep(real_frames: int) -> int:
        """n = real_frames // 2 + 1, at most 1500."""
        return min(real_frames // 2 + 1, WHISPER_MAX_FRAMES)

    @torch.no_grad()
    def __call__(self, feats, real_frames=None):
        if self.kind == "whisper":
            h = self.model(feats[None].to(self.dtype)).last_hidden_state[0]
            return h[:self.whisper_keep(real_frames)]
        return self.model(feats[None].to(self.dtype)).last_hidden_state[0]


# --------------------------------------------------------------------------------------------- splicing

def splice_v1(features, tokens, emb):
    """v1: the M feature rows first (position 0), then the text embeddings. Returns [M + T, C] before ln0."""
    if features.shape[1] != emb.shape[1]:
        raise ModRWKVError(f"features have width {features.shape[1]}, the embedding {emb.shape[1]}")
    rows = emb[torch.as_tensor([int(t) for t in tokens], dtype=torch.long)] if len(tokens) else emb[:0]
    return torch.cat([features.to(emb.dtype), rows], dim=0)


def splice_v2(feature_list, tokens, emb):
    """v2: the prompt carries <|image_pad|> (65532) x M_i per image; image i's M_i rows are written into those
    positions in order (the first M_0 placeholders take image 0, ...). vision_start/end (65530/65531) are ordinary
    tokens (their embedding rows). A count mismatch is an error; at most 3 images. Returns [T, C] before ln0."""
    if len(feature_list) > MAX_IMAGES_V2:
        raise ModRWKVError(f"{len(feature_list)} images; a v2 prompt takes at most {MAX_IMAGES_V2}")
    tokens = [int(t) for t in tokens]
    V, C = emb.shape
    for t in tokens:
        if not 0 <= t < V:
            raise ModRWKVError(f"token id {t} is outside the vocabulary (V={V})")
    pads = [i for i, t in enumerate(tokens) if t == IMAGE_PAD]
    need = sum(int(f.shape[0]) for f in feature_list)
    if len(pads) != need:
        raise ModRWKVError(f"the prompt has {len(pads)} <|image_pad|> placeholders, the images give {need} "
                           f"feature rows ({', '.join(str(int(f.shape[0])) for f in feature_list) or 'no images'})")
    x = emb[torch.as_tensor(tokens, dtype=torch.long)].clone()
    if need:
        feats = torch.cat([f.to(emb.dtype) for f in feature_list], dim=0)
        if feats.shape[1] != C:
            raise ModRWKVError(f"features have width {feats.shape[1]}, the embedding {C}")
        x[torch.as_tensor(pads, dtype=torch.long)] = feats
    return x


def image_placeholder(M: int, wrap: bool = True) -> str:
    """The text of one image's placeholder block: <|vision_start|> <|image_pad|> x M <|vision_end|>."""
    s = "<|image_pad|>" * M
    return f"<|vision_start|>{s}<|vision_end|>" if wrap else s


# ------------------------------------------------------------------------------------------- tokenizers

def world_vocab_path():
    for p in (os.environ.get("MODRWKV_VOCAB"), "/work/shared/assets/rwkv_vocab_v20230424.txt"):
        if p and os.path.exists(p):
            return p
    import rwkv  # the official package ships the same vocabulary (CRLF)
    return os.path.join(os.path.dirname(rwkv.__file__), "rwkv_vocab_v20230424.txt")


_WORLD = {}


def tokenize(text: str, n_vocab: int):
    """V = 256: byte vocabulary (id = byte value, as the C tool does for such models). Otherwise the World
    tokenizer (greedy longest match, rwkv package's TRIE_TOKENIZER) with the three v2 special tokens split out."""
    if n_vocab == 256:
        return list(text.encode("utf-8"))
    if "tok" not in _WORLD:
        from rwkv.rwkv_tokenizer import TRIE_TOKENIZER
        _WORLD["tok"] = TRIE_TOKENIZER(world_vocab_path())
    tok = _WORLD["tok"]
    ids = []
    for part in re.split("(" + "|".join(re.escape(s) for s in SPECIAL_TOKENS) + ")", text):
        if part in SPECIAL_TOKENS:
            ids.append(SPECIAL_TOKENS[part])
        elif part:
            ids.extend(tok.encodeBytes(part.encode("utf-8")))
    return ids


# --------------------------------------------------------------------------------------------- pipeline

class Pipeline:
    """Checkpoint + encoder (+ optional general compression). run_* return a dict of every stage."""

    def __init__(self, ckpt: Checkpoint, encoder=None, compress: Compress | None = None):
        self.ckpt, self.encoder, self.compress = ckpt, encoder, compress
        if encoder is not None:
            want = compress.w.shape[1] if compress is not None else ckpt.adapter.in_dim
            if encoder.width != want:
                raise ModRWKVError(f"the encoder gives features of width {encoder.width}, the "
                                   f"{'compression' if compress is not None else ckpt.adapter.kind + ' adapter'} "
                                   f"expects {want}")
        if compress is not None and compress.w.shape[0] != ckpt.adapter.in_dim:
            raise ModRWKVError(f"compression gives width {compress.w.shape[0]}, the adapter expects "
                               f"{ckpt.adapter.in_dim}")

    def features(self, enc_out):
        """encoder output [L, E] -> (compressed [L', E] or None, adapted [M, C])."""
        x = enc_out.to(self.ckpt.dtype)
        comp = None
        if self.compress is not None:
            x = comp = self.compress(x)
        return comp, self.ckpt.adapter(x)

    def lm(self, embeds, logits="all"):
        """ln0 on every spliced row, then RWKV-7 (rwkv7_ref.forward_seq). Returns (logits, state)."""
        return rwkv7_ref.forward_seq(self.ckpt.lm, embeds=embeds, logits=logits)

    def run(self, enc_outs, tokens):
        """enc_outs: list of encoder outputs (one per image / clip). v1: exactly one, prepended; v2: spliced."""
        stages = {"encoder": enc_outs, "compressed": [], "adapter": []}
        for e in enc_outs:
            c, a = self.features(e)
            stages["compressed"].append(c)
            stages["adapter"].append(a)
        emb = self.ckpt.lm.emb
        if self.ckpt.version == 1:
            if len(enc_outs) != 1:
                raise ModRWKVError(f"a v1 checkpoint takes exactly one image or clip, got {len(enc_outs)}")
            if IMAGE_PAD in [int(t) for t in tokens] and emb.shape[0] > IMAGE_PAD:
                raise ModRWKVError("a v1 checkpoint prepends its features: the prompt must not carry <|image_pad|>")
            embeds = splice_v1(stages["adapter"][0], tokens, emb)
        else:
            embeds = splice_v2(stages["adapter"], tokens, emb)
        stages["embeds"] = embeds
        stages["logits"], stages["state"] = self.lm(embeds)
        return stages


def load_compress_arg(spec, weights_path, dtype):
    k, s = (int(v) for v in spec.split(","))
    if not weights_path:
        raise ModRWKVError("--compress needs --compress-weights FILE (compress.weight [E,E,k], compress.bias [E])")
    return Compress.load(weights_path, kernel=k, stride=s, dtype=dtype)


def _main(argv) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="modrwkv_ref.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    lg = sub.add_parser("logits", help="the whole pipeline; prints logits like `modrwkv logits`")
    lg.add_argument("-m", "--model", required=True)
    lg.add_argument("--encoder", help="Hugging Face encoder directory (config, weights, processor)")
    lg.add_argument("--image", action="append", default=[])
    lg.add_argument("--audio")
    g = lg.add_mutually_exclusive_group(required=True)
    g.add_argument("--text")
    g.add_argument("--tokens")
    lg.add_argument("--compress", help="K,S")
    lg.add_argument("--compress-weights")
    lg.add_argument("--vocab", help="World vocabulary file (default: $MODRWKV_VOCAB, ../shared/assets, the "
                                    "rwkv package's copy)")
    lg.add_argument("--all", action="store_true", help="print every position (rows of V values)")
    lg.add_argument("--f32", action="store_true", help="float32 arithmetic instead of float64")
    a = ap.parse_args(argv)
    dtype = torch.float32 if a.f32 else torch.float64
    if a.vocab:
        os.environ["MODRWKV_VOCAB"] = a.vocab
    ck = Checkpoint.load(a.model, dtype)
    if not a.encoder:
        raise ModRWKVError("--encoder DIR is required (encoder configuration and processor)")
    comp = load_compress_arg(a.compress, a.compress_weights, dtype) if a.compress else None
    if a.audio:
        enc = AudioEncoder(a.encoder, dtype)
        samples, sr = read_wav(a.audio)
        if sr != SAMPLE_RATE:
            raise ModRWKVError(f"{a.audio}: {sr} Hz; this reference takes 16 kHz only")
        feats, frames = enc.preprocess(samples)
        outs = [enc(feats, frames)]
    else:
        enc = VisionEncoder(a.encoder, ck.encoder_sd, dtype)
        outs = [enc(enc.preprocess(p)) for p in a.image]
    pipe = Pipeline(ck, enc, comp)
    V = ck.lm.cfg.n_vocab
    tokens = [int(t) for t in a.tokens.split(",")] if a.tokens else tokenize(a.text, V)
    st = pipe.run(outs, tokens)
    rows = st["logits"] if a.all else st["logits"][-1:]
    for r in rows:
        sys.stdout.write("".join(f"{v:.9g}\n" for v in r.tolist()))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_main(sys.argv[1:]))
    except ModRWKVError as e:
        print(f"modrwkv_ref: error: {e}", file=sys.stderr)
        sys.exit(1)
