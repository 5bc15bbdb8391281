"""RWKV-7 ("x070") reference forward pass, written literally from ../shared/reference/rwkv7.md.

This module is the authority the C implementation is judged against. It favours readability over
speed: every step carries the number it has in the specification ("One token in RNN mode").

Two forms of the same model:
  * rnn_step / forward_rnn: one token at a time, with the state;
  * forward_seq: token-parallel projections over T rows, then the WKV scan over t = 0..T-1.
Both compute in float64 by default (pass dtype=torch.float32 to get fp32 arithmetic).

State (per layer): sx_att [C], S [H][N][N] (i = value row, j = key column), sx_ffn [C].
Flat export layout (State.to_flat): per layer [sx_att (C)][S (H*N*N, index h*N*N + i*N + j)][sx_ffn (C)].

Loaders: load_state_dict(path) reads an official .pth, a .safetensors with the same names, or a GGUF
(arch "rwkv7", llama.cpp layout, any of F32/F16/BF16/Q8_0/Q4_0) and returns an OrderedDict in the official
key layout and PyTorch shapes (GGUF tensors are dequantized to float32).

Usage as a script:
  python rwkv7_ref.py MODEL TOKEN [TOKEN ...]     prints the last-position logits (top 10) in float64
  python rwkv7_ref.py --selftest                  the shared tiny-rwkv7 model against its golden logits
                                                  (seq and RNN forms; exit status 1 above 1e-5)
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from dataclasses import dataclass

import torch

# ------------------------------------------------------------------------------------------ constants

LN_EPS = 1e-5  # LayerNorm eps (ln0, ln1, ln2, ln_out), biased variance
GN_EPS = 64e-5  # GroupNorm eps of att.ln_x: 6.4e-4 (= 1e-5 * 64)
L2_FLOOR = 1e-12  # floor on the L2 norm of kappa (on the norm, not on the squared norm)
DECAY_SCALE = math.exp(-0.5)  # decay = exp(-e^{-1/2} * sigmoid(omega)), range (0.545, 1)

ATT_MIX_NAMES = ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g")  # also the order inside GGUF lerp_fused


# --------------------------------------------------------------------------------------------- config

@dataclass
class Config:
    n_layer: int
    n_embd: int  # C
    n_head: int  # H = C / N
    head_size: int  # N
    n_ffn: int  # F
    n_vocab: int  # V
    lora_w: int  # Dw (decay)
    lora_a: int  # Da (in-context learning rate)
    lora_v: int  # Dv (value residual); 0 when the model has a single layer
    lora_g: int  # Dg (output gate)

    def state_floats_per_layer(self) -> int:
        return 2 * self.n_embd + self.n_head * self.head_size * self.head_size

    def state_floats(self) -> int:
        return self.n_layer * self.state_floats_per_layer()


def expected_shapes(cfg: Config, include_layer0_v: bool = False) -> "OrderedDict[str, tuple]":
    """Official key -> PyTorch shape, in the order of an official checkpoint. Layer 0 has no v0/v1/v2
    unless include_layer0_v (some releases carry unused dummies there)."""
    C, H, N, F, V = cfg.n_embd, cfg.n_head, cfg.head_size, cfg.n_ffn, cfg.n_vocab
    s = OrderedDict()
    s["emb.weight"] = (V, C)
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        if i == 0:
            s[p + "ln0.weight"] = (C,)
            s[p + "ln0.bias"] = (C,)
        for ln in ("ln1", "ln2"):
            s[p + ln + ".weight"] = (C,)
            s[p + ln + ".bias"] = (C,)
        for m in ATT_MIX_NAMES:
            s[p + "att." + m] = (1, 1, C)
        s[p + "att.w0"] = (1, 1, C)
        s[p + "att.w1"] = (C, cfg.lora_w)
        s[p + "att.w2"] = (cfg.lora_w, C)
        s[p + "att.a0"] = (1, 1, C)
        s[p + "att.a1"] = (C, cfg.lora_a)
        s[p + "att.a2"] = (cfg.lora_a, C)
        if i > 0 or include_layer0_v:
            s[p + "att.v0"] = (1, 1, C)
            s[p + "att.v1"] = (C, cfg.lora_v)
            s[p + "att.v2"] = (cfg.lora_v, C)
        s[p + "att.g1"] = (C, cfg.lora_g)
        s[p + "att.g2"] = (cfg.lora_g, C)
        s[p + "att.k_k"] = (1, 1, C)
        s[p + "att.k_a"] = (1, 1, C)
        s[p + "att.r_k"] = (H, N)
        for lin in ("receptance", "key", "value", "output"):
            s[p + "att." + lin + ".weight"] = (C, C)
        s[p + "att.ln_x.weight"] = (C,)
        s[p + "att.ln_x.bias"] = (C,)
        s[p + "ffn.x_k"] = (1, 1, C)
        s[p + "ffn.key.weight"] = (F, C)
        s[p + "ffn.value.weight"] = (C, F)
    s["ln_out.weight"] = (C,)
    s["ln_out.bias"] = (C,)
    s["head.weight"] = (V, C)
    return s


def config_from_state_dict(sd, head_size: int = 64) -> Config:
    """Reads every dimension from tensor shapes, then checks the whole dict: unknown keys, missing keys
    and wrong shapes are errors (variants with extra keys such as s_emb or qq are other architectures)."""
    V, C = sd["emb.weight"].shape
    L = 0
    while f"blocks.{L}.ln1.weight" in sd:
        L += 1
    if L == 0:
        raise ValueError("no blocks.N.ln1.weight: not an RWKV-7 state dict")
    H, N = sd["blocks.0.att.r_k"].shape
    if H * N != C:
        raise ValueError(f"r_k shape {(H, N)} does not match C={C}")
    F = sd["blocks.0.ffn.key.weight"].shape[0]
    lora_v = sd["blocks.1.att.v1"].shape[1] if L > 1 else 0
    cfg = Config(n_layer=L, n_embd=C, n_head=H, head_size=N, n_ffn=F, n_vocab=V,
                 lora_w=sd["blocks.0.att.w1"].shape[1], lora_a=sd["blocks.0.att.a1"].shape[1],
                 lora_v=lora_v, lora_g=sd["blocks.0.att.g1"].shape[1])
    has_v0 = "blocks.0.att.v0" in sd
    want = expected_shapes(cfg, include_layer0_v=has_v0)
    if has_v0:  # dummies of any LoRA rank are tolerated in layer 0: they are never used
        for k in ("blocks.0.att.v1", "blocks.0.att.v2"):
            want[k] = tuple(sd[k].shape)
    unknown = sorted(set(sd) - set(want))
    missing = sorted(set(want) - set(sd))
    if unknown or missing:
        raise ValueError(f"not an RWKV-7 (x070) state dict: unknown keys {unknown[:8]}, missing {missing[:8]}")
    for k, shape in want.items():
        if tuple(sd[k].shape) != tuple(shape):
            raise ValueError(f"{k}: shape {tuple(sd[k].shape)}, expected {shape}")
    return cfg


# -------------------------------------------------------------------------------------------- loading

def load_state_dict(path: str) -> "OrderedDict[str, torch.Tensor]":
    """Official layout from .pth (zip), .safetensors or GGUF; the format is detected from the content."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"PK":
        return load_pth(path)
    if magic == b"GGUF":
        return load_gguf(path)[0]
    return load_safetensors(path)


def load_pth(path: str) -> "OrderedDict[str, torch.Tensor]":
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # torch without weights_only
        sd = torch.load(path, map_location="cpu")
    return OrderedDict((k, v) for k, v in sd.items())


def load_safetensors(path: str) -> "OrderedDict[str, torch.Tensor]":
    from safetensors.torch import load_file
    return OrderedDict(load_file(path).items())


def gguf_name_map(n_layer: int) -> "OrderedDict[str, str]":
    """GGUF tensor name -> official key, for every tensor except lerp_fused (six keys) and the unused
    layer-0 time_mix_v0/v1/v2 (copies of a0/a1/a2 written by llama.cpp's converter)."""
    m = OrderedDict()
    m["token_embd.weight"] = "emb.weight"
    m["token_embd_norm.weight"] = "blocks.0.ln0.weight"
    m["token_embd_norm.bias"] = "blocks.0.ln0.bias"
    for i in range(n_layer):
        g, p = f"blk.{i}.", f"blocks.{i}."
        for wb in ("weight", "bias"):
            m[g + "attn_norm." + wb] = p + "ln1." + wb
            m[g + "attn_norm_2." + wb] = p + "ln2." + wb
            m[g + "time_mix_ln." + wb] = p + "att.ln_x." + wb
        for t in ("w0", "w1", "w2", "a0", "a1", "a2", "v0", "v1", "v2", "g1", "g2", "k_k", "k_a", "r_k"):
            if i == 0 and t[0] == "v":
                continue
            m[g + "time_mix_" + t + ".weight"] = p + "att." + t
        for lin in ("receptance", "key", "value", "output"):
            m[g + "time_mix_" + lin + ".weight"] = p + "att." + lin + ".weight"
        m[g + "channel_mix_lerp_k.weight"] = p + "ffn.x_k"
        m[g + "channel_mix_key.weight"] = p + "ffn.key.weight"
        m[g + "channel_mix_value.weight"] = p + "ffn.value.weight"
    m["output_norm.weight"] = "ln_out.weight"
    m["output_norm.bias"] = "ln_out.bias"
    m["output.weight"] = "head.weight"
    return m


LORA_SUFFIXES = ("w1", "w2", "a1", "a2", "v1", "v2", "g1", "g2")


def load_gguf(path: str):
    """Reads a llama.cpp-layout rwkv7 GGUF, dequantizes every tensor to float32 and converts back to the
    official layout and shapes. Returns (state_dict, {tensor name: GGML type name}, metadata dict)."""
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    r = GGUFReader(path)
    meta = {}
    for f in r.fields.values():
        if f.name.startswith("tokenizer.ggml.tokens") or f.name.startswith("tokenizer.ggml.token_type"):
            continue
        try:
            meta[f.name] = f.contents()
        except Exception:  # noqa: BLE001 -- only informational
            pass
    if meta.get("general.architecture") != "rwkv7":
        raise ValueError(f"{path}: general.architecture is {meta.get('general.architecture')!r}, not rwkv7")
    arrays, types = {}, {}
    for t in r.tensors:
        a = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32, copy=True)  # own, writable copy
        shape = tuple(int(d) for d in reversed(t.shape))  # ggml dims are fastest-first
        arrays[t.name] = a.reshape(shape)
        types[t.name] = t.tensor_type.name
    n_layer = int(meta["rwkv7.block_count"])
    C = int(meta["rwkv7.embedding_length"])
    N = int(meta["rwkv7.wkv.head_size"])
    names = gguf_name_map(n_layer)
    sd = OrderedDict()
    for gname, key in names.items():
        a = arrays[gname]
        if key.endswith("att.r_k"):
            a = a.reshape(C // N, N)
        elif any(key.endswith("att." + s) for s in LORA_SUFFIXES):
            a = a.T  # GGUF stores [out, in] (numpy order); official is [in, out]
        elif a.ndim == 1 and not key.endswith((".weight", ".bias")):  # w0 a0 v0 k_k k_a ffn.x_k
            a = a.reshape(1, 1, C)
        sd[key] = torch.from_numpy(np.ascontiguousarray(a))
    for i in range(n_layer):
        fused = arrays[f"blk.{i}.time_mix_lerp_fused.weight"].reshape(len(ATT_MIX_NAMES), C)
        for j, m in enumerate(ATT_MIX_NAMES):
            sd[f"blocks.{i}.att.{m}"] = torch.from_numpy(fused[j].reshape(1, 1, C).copy())
    known = set(names) | {f"blk.{i}.time_mix_lerp_fused.weight" for i in range(n_layer)}
    known |= {f"blk.0.time_mix_{t}.weight" for t in ("v0", "v1", "v2")}
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise ValueError(f"{path}: unknown tensors {unknown[:8]}")
    cfg = config_from_state_dict(sd)
    ordered = OrderedDict((k, sd[k]) for k in expected_shapes(cfg))
    return ordered, types, meta


# -------------------------------------------------------------------------------------------- weights

class Model:
    """The weights of a state dict converted to the compute dtype, mix vectors flattened to [C]."""

    def __init__(self, sd, dtype=torch.float64):
        self.cfg = cfg = config_from_state_dict(sd)
        self.dtype = dtype
        C = cfg.n_embd

        def t(k):
            return sd[k].detach().to(torch.float64).to(dtype).contiguous()

        def vec(k):
            return t(k).reshape(C)

        self.emb = t("emb.weight")
        self.ln0_w, self.ln0_b = t("blocks.0.ln0.weight"), t("blocks.0.ln0.bias")
        self.layers = []
        for i in range(cfg.n_layer):
            p = f"blocks.{i}."
            w = {
                "ln1_w": t(p + "ln1.weight"), "ln1_b": t(p + "ln1.bias"),
                "ln2_w": t(p + "ln2.weight"), "ln2_b": t(p + "ln2.bias"),
                "w0": vec(p + "att.w0"), "w1": t(p + "att.w1"), "w2": t(p + "att.w2"),
                "a0": vec(p + "att.a0"), "a1": t(p + "att.a1"), "a2": t(p + "att.a2"),
                "g1": t(p + "att.g1"), "g2": t(p + "att.g2"),
                "k_k": vec(p + "att.k_k"), "k_a": vec(p + "att.k_a"),
                "r_k": t(p + "att.r_k").reshape(cfg.n_head, cfg.head_size),
                "W_r": t(p + "att.receptance.weight"), "W_k": t(p + "att.key.weight"),
                "W_v": t(p + "att.value.weight"), "W_o": t(p + "att.output.weight"),
                "lnx_w": t(p + "att.ln_x.weight"), "lnx_b": t(p + "att.ln_x.bias"),
                "ffn_x_k": vec(p + "ffn.x_k"),
                "W_fk": t(p + "ffn.key.weight"), "W_fv": t(p + "ffn.value.weight"),
            }
            for m in ATT_MIX_NAMES:
                w[m] = vec(p + "att." + m)
            if i > 0:  # layer 0 never applies the value-residual gate (pitfall 5); its v0/v1/v2 are ignored
                w["v0"], w["v1"], w["v2"] = vec(p + "att.v0"), t(p + "att.v1"), t(p + "att.v2")
            self.layers.append(w)
        self.ln_out_w, self.ln_out_b = t("ln_out.weight"), t("ln_out.bias")
        self.head = t("head.weight")


class State:
    """Per layer: sx_att [C], S [H, N, N] (S[h, i, j]: i = value row, j = key column), sx_ffn [C]."""

    def __init__(self, cfg: Config, dtype=torch.float64):
        C, H, N = cfg.n_embd, cfg.n_head, cfg.head_size
        self.cfg = cfg
        self.sx_att = [torch.zeros(C, dtype=dtype) for _ in range(cfg.n_layer)]
        self.S = [torch.zeros(H, N, N, dtype=dtype) for _ in range(cfg.n_layer)]
        self.sx_ffn = [torch.zeros(C, dtype=dtype) for _ in range(cfg.n_layer)]

    def clone(self) -> "State":
        s = State.__new__(State)
        s.cfg = self.cfg
        s.sx_att = [x.clone() for x in self.sx_att]
        s.S = [x.clone() for x in self.S]
        s.sx_ffn = [x.clone() for x in self.sx_ffn]
        return s

    def to_flat(self) -> torch.Tensor:
        """Per layer [sx_att (C)][S (H*N*N, h*N*N + i*N + j)][sx_ffn (C)], concatenated over layers."""
        parts = []
        for i in range(self.cfg.n_layer):
            parts += [self.sx_att[i].reshape(-1), self.S[i].reshape(-1), self.sx_ffn[i].reshape(-1)]
        return torch.cat(parts)

    @staticmethod
    def from_flat(cfg: Config, flat: torch.Tensor, dtype=torch.float64) -> "State":
        s = State(cfg, dtype)
        C, H, N = cfg.n_embd, cfg.n_head, cfg.head_size
        flat = flat.to(dtype)
        per = cfg.state_floats_per_layer()
        if flat.numel() != cfg.n_layer * per:
            raise ValueError(f"state has {flat.numel()} floats, expected {cfg.n_layer * per}")
        for i in range(cfg.n_layer):
            o = i * per
            s.sx_att[i] = flat[o:o + C].clone()
            s.S[i] = flat[o + C:o + C + H * N * N].reshape(H, N, N).clone()
            s.sx_ffn[i] = flat[o + C + H * N * N:o + per].clone()
        return s


# ------------------------------------------------------------------------------------------ functions

def layer_norm(x, w, b, eps=LN_EPS):
    """LayerNorm over the last dimension, biased variance, affine."""
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def group_norm_heads(y, w, b, n_head, eps=GN_EPS):
    """GroupNorm with one group per head over y [..., C]: per head (y - mu_h) / sqrt(var_h + eps), then the
    per-channel affine w, b [C]."""
    shape = y.shape
    yh = y.reshape(*shape[:-1], n_head, shape[-1] // n_head)
    mu = yh.mean(dim=-1, keepdim=True)
    var = ((yh - mu) ** 2).mean(dim=-1, keepdim=True)
    yh = (yh - mu) / torch.sqrt(var + eps)
    return yh.reshape(shape) * w + b


def l2_normalize_heads(kappa, n_head, floor=L2_FLOOR):
    """Per head kappa / max(||kappa||_2, 1e-12) over kappa [..., C]."""
    shape = kappa.shape
    kh = kappa.reshape(*shape[:-1], n_head, shape[-1] // n_head)
    norm = torch.sqrt((kh * kh).sum(dim=-1, keepdim=True))
    return (kh / torch.clamp(norm, min=floor)).reshape(shape)


# ------------------------------------------------------------------------------------------ RNN mode

def rnn_step(model: Model, state: State, token: int | None = None, embed: torch.Tensor | None = None,
             want_logits: bool = True):
    """One token (or one injected embedding row, before ln0) in RNN mode; updates `state` in place and
    returns the logits [V] (or None)."""
    cfg = model.cfg
    H, N = cfg.n_head, cfg.head_size

    # 0. x = LN(emb[tok]; ln0)
    e = model.emb[token] if embed is None else embed.to(model.dtype)
    x = layer_norm(e, model.ln0_w, model.ln0_b)

    v_first = None  # not state: recomputed by layer 0 for every token
    for i, w in enumerate(model.layers):
        # 1. xa = LN(x; ln1); d = sx_att - xa; sx_att <- xa
        xa = layer_norm(x, w["ln1_w"], w["ln1_b"])
        d = state.sx_att[i] - xa
        state.sx_att[i] = xa

        # 2. token-shift mixes
        xr = xa + d * w["x_r"]
        xw = xa + d * w["x_w"]
        xk = xa + d * w["x_k"]
        xv = xa + d * w["x_v"]
        xa_ = xa + d * w["x_a"]
        xg = xa + d * w["x_g"]

        # 3. r = W_r xr, k = W_k xk, v = W_v xv
        r = w["W_r"] @ xr
        k = w["W_k"] @ xk
        v = w["W_v"] @ xv

        # 4. decay
        omega = w["w0"] + torch.tanh(xw @ w["w1"]) @ w["w2"]
        decay = torch.exp(-DECAY_SCALE * torch.sigmoid(omega))

        # 5. in-context learning rate
        alpha = torch.sigmoid(w["a0"] + (xa_ @ w["a1"]) @ w["a2"])

        # 6. output gate: sigmoid inside, nothing outside
        g = torch.sigmoid(xg @ w["g1"]) @ w["g2"]

        # 7. value residual
        if i == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(w["v0"] + (xv @ w["v1"]) @ w["v2"])

        # 8. kappa_hat from k BEFORE step 9
        kappa = k * w["k_k"]
        kappa_hat = l2_normalize_heads(kappa, H)

        # 9. k <- k * (1 + (alpha - 1) * k_a)
        k = k * (1 + (alpha - 1) * w["k_a"])

        # 10. WKV, per head; every right-hand term uses the old S
        S = state.S[i]  # [H, N(i: value), N(j: key)]
        r_h, k_h, v_h = r.reshape(H, N), k.reshape(H, N), v.reshape(H, N)
        decay_h, alpha_h, kappa_hat_h = decay.reshape(H, N), alpha.reshape(H, N), kappa_hat.reshape(H, N)
        a_vec = -kappa_hat_h  # a = -kappa_hat
        b_vec = kappa_hat_h * alpha_h  # b = kappa_hat * alpha
        sa = torch.einsum("hij,hj->hi", S, a_vec)  # sa_i = sum_j S_ij * (-kappa_hat_j)
        S_new = S * decay_h[:, None, :] + sa[:, :, None] * b_vec[:, None, :] + v_h[:, :, None] * k_h[:, None, :]
        y = torch.einsum("hij,hj->hi", S_new, r_h)  # y_i = sum_j S_ij * r_j (new S)
        state.S[i] = S_new

        # 11. GroupNorm per head, eps 6.4e-4
        o = group_norm_heads(y.reshape(-1), w["lnx_w"], w["lnx_b"], H)

        # 12. bonus: beta_h = sum_j r_j k_j r_k[h][j]; o_i += beta_h v_i (k after 9, v after 7)
        beta = (r_h * k_h * w["r_k"]).sum(dim=-1)  # [H]
        o = o + (beta[:, None] * v_h).reshape(-1)

        # 13. x <- x + W_o (o * g)
        x = x + w["W_o"] @ (o * g)

        # 14. channel mix
        xf = layer_norm(x, w["ln2_w"], w["ln2_b"])
        d = state.sx_ffn[i] - xf
        state.sx_ffn[i] = xf
        u = xf + d * w["ffn_x_k"]
        x = x + w["W_fv"] @ (torch.relu(w["W_fk"] @ u) ** 2)

    if not want_logits:
        return None
    return model.head @ layer_norm(x, model.ln_out_w, model.ln_out_b)


def forward_rnn(model: Model, tokens=None, state: State | None = None, embeds=None):
    """Feeds tokens (or embedding rows) one at a time. Returns (logits [T, V], state)."""
    state = State(model.cfg, model.dtype) if state is None else state.clone()
    out = []
    if embeds is not None:
        for row in embeds:
            out.append(rnn_step(model, state, embed=row))
    else:
        for tok in tokens:
            out.append(rnn_step(model, state, token=int(tok)))
    return torch.stack(out), state


# ------------------------------------------------------------------------------------- sequence mode

def forward_seq(model: Model, tokens=None, state: State | None = None, embeds=None, logits: str = "all",
                trace: dict | None = None):
    """Sequence (prefill) mode: token-parallel LN / projections / LoRAs as GEMMs over T rows, then the
    WKV scan over t = 0..T-1. logits: "all" -> [T, V], "last" -> [V], "none" -> None.
    trace: if a dict, receives per-layer intermediates "L{i}.{name}" ([T, C] each) for debugging.
    Returns (logits, new_state); the input state is not modified."""
    cfg = model.cfg
    H, N, C = cfg.n_head, cfg.head_size, cfg.n_embd
    state = State(cfg, model.dtype) if state is None else state.clone()

    # 0. rows of the embedding (or the injected rows), then ln0
    if embeds is not None:
        e = embeds.to(model.dtype)
    else:
        e = model.emb[torch.as_tensor([int(t) for t in tokens], dtype=torch.long)]
    T = e.shape[0]
    x = layer_norm(e, model.ln0_w, model.ln0_b)  # [T, C]

    v_first = None
    for i, w in enumerate(model.layers):
        # 1. x_prev[t] = xa[t-1], sx_att for t = 0; new sx_att = last row's LN output
        xa = layer_norm(x, w["ln1_w"], w["ln1_b"])
        x_prev = torch.cat([state.sx_att[i][None, :], xa[:-1]], dim=0)
        d = x_prev - xa
        state.sx_att[i] = xa[-1].clone()

        # 2.
        xr, xw, xk = xa + d * w["x_r"], xa + d * w["x_w"], xa + d * w["x_k"]
        xv, xa_, xg = xa + d * w["x_v"], xa + d * w["x_a"], xa + d * w["x_g"]

        # 3. GEMMs over T rows: row-vector form x W^T for [out, in] Linear weights
        r = xr @ w["W_r"].T
        k = xk @ w["W_k"].T
        v = xv @ w["W_v"].T

        # 4.-6. LoRAs (row-vector products with [in, out] matrices)
        decay = torch.exp(-DECAY_SCALE * torch.sigmoid(w["w0"] + torch.tanh(xw @ w["w1"]) @ w["w2"]))
        alpha = torch.sigmoid(w["a0"] + (xa_ @ w["a1"]) @ w["a2"])
        g = torch.sigmoid(xg @ w["g1"]) @ w["g2"]

        # 7.
        if i == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(w["v0"] + (xv @ w["v1"]) @ w["v2"])

        # 8.-9.
        kappa_hat = l2_normalize_heads(k * w["k_k"], H)
        k = k * (1 + (alpha - 1) * w["k_a"])

        # 10. the scan: S <- S diag(decay) + (S a) b^T + v k^T, y = S r; a = -kappa_hat, b = kappa_hat*alpha
        r_h, k_h, v_h = r.reshape(T, H, N), k.reshape(T, H, N), v.reshape(T, H, N)
        w_h = decay.reshape(T, H, N)
        a_h = -kappa_hat.reshape(T, H, N)
        b_h = (kappa_hat * alpha).reshape(T, H, N)
        S = state.S[i]
        ys = []
        for t in range(T):
            sa = torch.einsum("hij,hj->hi", S, a_h[t])
            S = S * w_h[t][:, None, :] + sa[:, :, None] * b_h[t][:, None, :] + v_h[t][:, :, None] * k_h[t][:, None, :]
            ys.append(torch.einsum("hij,hj->hi", S, r_h[t]))
        state.S[i] = S
        y = torch.stack(ys).reshape(T, C)

        if trace is not None:
            for nm, val in (("r", r), ("k", k), ("v", v), ("decay", decay), ("alpha", alpha), ("g", g),
                            ("kappa_hat", kappa_hat), ("y", y)):
                trace[f"L{i}.{nm}"] = val

        # 11.-13.
        o = group_norm_heads(y, w["lnx_w"], w["lnx_b"], H)
        beta = (r_h * k_h * w["r_k"]).sum(dim=-1, keepdim=True)  # [T, H, 1]
        o = o + (beta * v_h).reshape(T, C)
        x = x + (o * g) @ w["W_o"].T

        # 14. channel mix with its own token shift
        xf = layer_norm(x, w["ln2_w"], w["ln2_b"])
        xf_prev = torch.cat([state.sx_ffn[i][None, :], xf[:-1]], dim=0)
        state.sx_ffn[i] = xf[-1].clone()
        u = xf + (xf_prev - xf) * w["ffn_x_k"]
        x = x + (torch.relu(u @ w["W_fk"].T) ** 2) @ w["W_fv"].T

    if logits == "none":
        return None, state
    if logits == "last":
        return model.head @ layer_norm(x[-1], model.ln_out_w, model.ln_out_b), state
    if logits == "all":
        return layer_norm(x, model.ln_out_w, model.ln_out_b) @ model.head.T, state
    raise ValueError(f"logits must be all, last or none, not {logits!r}")


# ------------------------------------------------------------------------------------------ self-test

TINY_RWKV7_DIR = "/work/shared/assets/tiny-rwkv7"


def check_tiny_rwkv7(directory: str = TINY_RWKV7_DIR, verbose: bool = True) -> float:
    """The shared real model fed bytes 34, 105, 110 from a zero state against rwkv.cpp's logits.
    Returns max |delta| of the seq-mode float64 logits."""
    import numpy as np
    sd = load_state_dict(f"{directory}/tiny-rwkv7-834K.pth")
    model = Model(sd, torch.float64)
    ref = torch.from_numpy(np.fromfile(f"{directory}/expected-logits-834K.bin", dtype="<f4").astype(np.float64))
    toks = [34, 105, 110]
    lseq, sseq = forward_seq(model, toks, logits="last")
    lrnn, srnn = forward_rnn(model, toks)
    d_seq = (lseq - ref).abs().max().item()
    d_rnn = (lrnn[-1] - ref).abs().max().item()
    d_sr = (sseq.to_flat() - srnn.to_flat()).abs().max().item()
    if verbose:
        print(f"tiny-rwkv7-834K: max|seq - expected| = {d_seq:.3e}, max|rnn - expected| = {d_rnn:.3e}, "
              f"sum|seq - expected| = {(lseq - ref).abs().sum().item():.3e}, state seq-vs-rnn {d_sr:.3e}")
    return d_seq


def _selftest() -> int:
    d = check_tiny_rwkv7()
    ok = d <= 1e-5
    print("tiny-rwkv7 match:", "OK" if ok else "FAIL")
    return 0 if ok else 1


def _main(argv) -> int:
    if len(argv) >= 1 and argv[0] == "--selftest":
        return _selftest()
    if len(argv) < 2:
        print(__doc__)
        return 2
    model = Model(load_state_dict(argv[0]))
    toks = [int(t) for t in argv[1:]]
    lg, _ = forward_seq(model, toks, logits="last")
    top = torch.topk(lg, min(10, lg.numel()))
    for val, idx in zip(top.values.tolist(), top.indices.tolist()):
        print(f"{idx:6d} {val: .6f}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
