"""Makes the RWKV-7 test fixtures in tests/fixtures/rwkv7/ (see the README.md there).

A random, non-degenerate tiny RWKV-7 (byte-level V=256, C=128 = 2 heads of 64, L=2, F=256, LoRA ranks
Dw=32, Da=16, Dv=8, Dg=24, all different so that mix-ups show) written as
  tiny.pth            torch.save(OrderedDict), official key layout and shapes, float32, layer 0 without v0/v1/v2
  tiny.safetensors    same names and shapes, F32
  tiny.gguf           llama.cpp rwkv7 layout, all F32
  tiny-{f16,bf16,q8_0,q4_0}.gguf   emb/head, att receptance/key/value/output, ffn key/value in that type,
                      every other tensor F32
and golden outputs (golden.safetensors) computed with rwkv7_ref.py in float64 from the float32 weights
(and, for the low-precision variants, from the weights dequantized out of their GGUF files).

Run:  build/refenv/bin/python tests/reference/make_rwkv7_fixtures.py [--out tests/fixtures/rwkv7]
Deterministic: every tensor is drawn from numpy's PCG64 seeded with (SEED, crc32(name)).
"""

from __future__ import annotations

import argparse
import os
import sys
import zlib
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv7_ref as ref  # noqa: E402

SEED = 20250707  # model weights
PROMPT_SEED = 777  # random prompt ids and injected embedding rows

TINY = ref.Config(n_layer=2, n_embd=128, n_head=2, head_size=64, n_ffn=256, n_vocab=256,
                  lora_w=32, lora_a=16, lora_v=8, lora_g=24)

BIG_SUFFIXES = ("att.receptance.weight", "att.key.weight", "att.value.weight", "att.output.weight",
                "ffn.key.weight", "ffn.value.weight")


def is_big(key: str) -> bool:
    """The tensors stored in the file's weight type; everything else stays F32 (llama.cpp keeps the RWKV
    LoRAs, mixes and norms unquantized)."""
    return key in ("emb.weight", "head.weight") or key.endswith(BIG_SUFFIXES)


# --------------------------------------------------------------------------------------- random model

def random_state_dict(cfg: ref.Config, seed: int = SEED) -> "OrderedDict[str, torch.Tensor]":
    """Random weights with realistic, non-degenerate ranges; float32; official layout without layer-0 v*.
    - decays: w0 ~ U(-6, 2) plus a tanh LoRA of std ~0.6, so decay spans most of (0.545, 1);
    - token-shift mixes ~ U(0, 1); k_k ~ U(0.7, 1); k_a ~ U(0.8, 1.2); a0, v0 ~ U(-1, 1);
    - norms: weights 1 + U(-0.2, 0.2), biases U(-0.1, 0.1);
    - matrices ~ N(0, 1/fan_in) so every activation stays O(1); head ~ N(0, 9/C): logits of std ~3."""
    C, F = cfg.n_embd, cfg.n_ffn
    ranks = {"w": cfg.lora_w, "a": cfg.lora_a, "v": cfg.lora_v, "g": cfg.lora_g}

    def rng_for(key):
        return np.random.default_rng([seed, zlib.crc32(key.encode())])

    def normal(key, shape, std):
        return rng_for(key).standard_normal(shape, dtype=np.float32) * np.float32(std)

    def uniform(key, shape, lo, hi):
        return (np.float32(lo) + rng_for(key).random(shape, dtype=np.float32) * np.float32(hi - lo)).astype(np.float32)

    sd = OrderedDict()
    for key, shape in ref.expected_shapes(cfg).items():
        parts = key.split(".")
        name = parts[-1]  # "x_r", "w1", ... or "weight" / "bias"
        owner = parts[-2] if len(parts) >= 2 else ""  # "ln1", "receptance", ... for weight / bias
        if key == "emb.weight":
            a = normal(key, shape, 1.0)
        elif key == "head.weight":
            a = normal(key, shape, 3.0 / np.sqrt(C))
        elif owner in ("ln0", "ln1", "ln2", "ln_x", "ln_out"):
            a = uniform(key, shape, 0.8, 1.2) if name == "weight" else uniform(key, shape, -0.1, 0.1)
        elif name in ref.ATT_MIX_NAMES or key.endswith("ffn.x_k"):
            a = uniform(key, shape, 0.0, 1.0)
        elif name == "w0":
            a = uniform(key, shape, -6.0, 2.0)
        elif name in ("a0", "v0"):
            a = uniform(key, shape, -1.0, 1.0)
        elif name in ("w1", "a1", "v1", "g1"):
            a = normal(key, shape, 1.0 / np.sqrt(C))
        elif name in ("w2", "a2", "v2"):
            a = normal(key, shape, 1.0 / np.sqrt(ranks[name[0]]))
        elif name == "g2":
            a = normal(key, shape, 1.5 / np.sqrt(ranks["g"]))
        elif name == "k_k":
            a = uniform(key, shape, 0.7, 1.0)
        elif name == "k_a":
            a = uniform(key, shape, 0.8, 1.2)
        elif name == "r_k":
            a = normal(key, shape, 0.1)
        elif key.endswith(("att.receptance.weight", "att.key.weight", "att.value.weight",
                           "att.output.weight", "ffn.key.weight")):
            a = normal(key, shape, 1.0 / np.sqrt(C))
        elif key.endswith("ffn.value.weight"):
            a = normal(key, shape, 1.0 / np.sqrt(F))
        else:
            raise AssertionError(f"no distribution for {key}")
        assert a.shape == tuple(shape) and a.dtype == np.float32, key
        sd[key] = torch.from_numpy(np.ascontiguousarray(a))
    return sd


# --------------------------------------------------------------------------------------------- writers

def save_pth(sd, path):
    # each tensor owns its storage (no shared views), float32, official order
    torch.save(OrderedDict((k, v.detach().clone().contiguous()) for k, v in sd.items()), path)


def save_safetensors(sd, path):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    os.chmod(path, 0o644)  # the safetensors package creates files 0600


def byte_tokens():
    """Token i = the single byte i, written as llama.cpp writes RWKV tokens: repr(bytes)[2:-1], UTF-8."""
    return [repr(bytes([i]))[2:-1].encode("utf-8") for i in range(256)]


GGUF_TYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_0": "Q4_0"}
FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0",
              "q4_0": "MOSTLY_Q4_0"}


def gguf_tensors(sd, cfg):
    """(gguf name, official key, float32 numpy array in GGUF numpy order), in llama.cpp's converter order:
    official order, lerp_fused where the six mixes end, layer 0's time_mix_v0/v1/v2 as copies of a0/a1/a2
    (each written just before the tensor it copies)."""
    C = cfg.n_embd
    inv = {v: k for k, v in ref.gguf_name_map(cfg.n_layer).items()}
    out = []
    for key, t in sd.items():
        a = t.numpy().astype(np.float32)
        parts = key.split(".")
        if len(parts) == 4 and parts[2] == "att" and parts[3] in ref.ATT_MIX_NAMES:
            if parts[3] == "x_g":
                i = int(parts[1])
                fused = np.stack([sd[f"blocks.{i}.att.{m}"].numpy() for m in ref.ATT_MIX_NAMES], axis=0)
                out.append((f"blk.{i}.time_mix_lerp_fused.weight", None, fused.reshape(6, 1, 1, C)))
            continue
        if key.endswith("att.r_k"):
            a = a.reshape(-1)
        elif any(key.endswith("att." + s) for s in ref.LORA_SUFFIXES):
            a = np.ascontiguousarray(a.T)  # [in, out] -> [out, in]
        else:
            a = np.squeeze(a)
        name = inv[key]
        if key.startswith("blocks.0.att.a"):  # dummy v0/v1/v2 of layer 0 = copies of a0/a1/a2
            out.append((name.replace("time_mix_a", "time_mix_v"), None, a.copy()))
        out.append((name, key, a))
    return out


def write_gguf(sd, cfg, path, wtype: str):
    import gguf
    qtype = gguf.GGMLQuantizationType[GGUF_TYPES[wtype]]
    w = gguf.GGUFWriter(path, "rwkv7")
    w.add_name("modrwkv tiny rwkv7 test fixture")
    w.add_context_length(1048576)
    w.add_embedding_length(cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_layer_norm_eps(ref.LN_EPS)
    w.add_wkv_head_size(cfg.head_size)
    w.add_decay_lora_rank(cfg.lora_w)
    w.add_iclr_lora_rank(cfg.lora_a)
    w.add_value_residual_mix_lora_rank(cfg.lora_v)
    w.add_gate_lora_rank(cfg.lora_g)
    w.add_feed_forward_length(cfg.n_ffn)
    w.add_file_type(int(gguf.LlamaFileType[FILE_TYPES[wtype]]))
    w.add_head_count(0)
    w.add_token_shift_count(2)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("rwkv")
    w.add_token_list(byte_tokens())
    w.add_token_types([int(gguf.TokenType.NORMAL)] * 256)
    for name, key, a in gguf_tensors(sd, cfg):
        if key is not None and is_big(key) and wtype != "f32":
            if wtype == "f16":
                w.add_tensor(name, a.astype(np.float16))
            else:
                w.add_tensor(name, gguf.quants.quantize(a, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, a.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def save_safetensors_ordered(tensors, path, metadata=None):
    """A deterministic safetensors writer: tensors in the given order, metadata keys sorted (the
    safetensors package serialises __metadata__ from a hash map, so its key order changes between runs).
    Header padded with spaces to a multiple of 8 bytes, as the reference writer does."""
    import json
    dtypes = {torch.float32: "F32", torch.int32: "I32", torch.float64: "F64", torch.int64: "I64"}
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(metadata[k]) for k in sorted(metadata)}
    for name, t in tensors.items():
        b = t.detach().contiguous().numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------------------------- golden

def prompts():
    rng = np.random.default_rng(PROMPT_SEED)
    p100 = rng.integers(0, 256, size=100)
    p100[10], p100[50] = 0, 255  # the extreme ids
    ps = OrderedDict()
    ps["p1"] = [int(rng.integers(0, 256))]
    ps["p7"] = list(b"The cat")
    ps["p33"] = list("Naïve café — «RWKV» ça va?".encode("utf-8"))
    ps["p100"] = [int(t) for t in p100]
    assert [len(v) for v in ps.values()] == [1, 7, 33, 100]
    carry_a = list(b"In the beginning was the ")
    carry_b = list(b"Word, and the Word was")
    embeds = rng.standard_normal((6, TINY.n_embd)).astype(np.float32)
    return ps, carry_a, carry_b, embeds


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def maxabs(a, b):
    return float((a - b).abs().max())


def make_golden(sd, out_dir, log):
    model = ref.Model(sd, torch.float64)
    ps, carry_a, carry_b, embeds = prompts()
    g = OrderedDict()
    info = OrderedDict()
    seq_rnn_logits, seq_rnn_state, last_vs_all = 0.0, 0.0, 0.0
    all_logits = []
    f32_arith = 0.0
    model32 = ref.Model(sd, torch.float32)
    for name, toks in ps.items():
        la, st = ref.forward_seq(model, toks, logits="all")
        ll, st_l = ref.forward_seq(model, toks, logits="last")
        lr, st_r = ref.forward_rnn(model, toks)
        last_vs_all = max(last_vs_all, maxabs(ll, la[-1]), maxabs(st_l.to_flat(), st.to_flat()))
        seq_rnn_logits = max(seq_rnn_logits, maxabs(la, lr))
        seq_rnn_state = max(seq_rnn_state, maxabs(st.to_flat(), st_r.to_flat()))
        l32, _ = ref.forward_seq(model32, toks, logits="all")
        f32_arith = max(f32_arith, maxabs(l32.double(), la))
        all_logits.append(la)
        g[f"{name}.tokens"] = torch.tensor(toks, dtype=torch.int32)
        g[f"{name}.logits_last"] = f32(la[-1])
        g[f"{name}.logits_all"] = f32(la)
        g[f"{name}.rnn_logits"] = f32(lr)
        g[f"{name}.state"] = f32(st.to_flat())
    log(f"seq vs rnn (float64): max|logits| {seq_rnn_logits:.3e}, max|state| {seq_rnn_state:.3e}; "
        f"seq last-only vs all {last_vs_all:.3e}")
    log(f"float32 arithmetic vs float64 (same f32 weights), max|logits|: {f32_arith:.3e}")
    info["seq_vs_rnn_max_abs_logits"] = f"{seq_rnn_logits:.3e}"
    info["seq_vs_rnn_max_abs_state"] = f"{seq_rnn_state:.3e}"
    info["f32_arith_vs_f64_max_abs_logits"] = f"{f32_arith:.3e}"

    # state carry: A, then B from A's state, against A+B in one go
    la_, sa = ref.forward_seq(model, carry_a, logits="all")
    lb, sb = ref.forward_seq(model, carry_b, state=sa, logits="all")
    lab, sab = ref.forward_seq(model, carry_a + carry_b, logits="all")
    d_carry = max(maxabs(lb, lab[len(carry_a):]), maxabs(sb.to_flat(), sab.to_flat()))
    log(f"state carry: max|B-after-A - (A+B)[tail]| = {d_carry:.3e}")
    info["carry_max_abs"] = f"{d_carry:.3e}"
    g["carry.a_tokens"] = torch.tensor(carry_a, dtype=torch.int32)
    g["carry.b_tokens"] = torch.tensor(carry_b, dtype=torch.int32)
    g["carry.a_state"] = f32(sa.to_flat())
    g["carry.b_logits_all"] = f32(lb)
    g["carry.b_state"] = f32(sb.to_flat())
    g["carry.ab_logits_all"] = f32(lab)
    all_logits += [lb, lab]

    # injected embedding rows (before ln0) continuing from the state after p7
    _, s7 = ref.forward_seq(model, ps["p7"], logits="none")
    emb_t = torch.from_numpy(embeds)
    le, se = ref.forward_seq(model, state=s7, embeds=emb_t, logits="all")
    ler, ser = ref.forward_rnn(model, state=s7, embeds=emb_t)
    log(f"embeds: seq vs rnn max|logits| {maxabs(le, ler):.3e}")
    g["embeds.prefix_tokens"] = torch.tensor(ps["p7"], dtype=torch.int32)
    g["embeds.input"] = f32(emb_t)
    g["embeds.logits_all"] = f32(le)
    g["embeds.state"] = f32(se.to_flat())
    all_logits.append(le)

    allcat = torch.cat([x.reshape(-1) for x in all_logits])
    rows = torch.cat([x.reshape(-1, TINY.n_vocab) for x in all_logits])
    spread = rows.max(dim=1).values - rows.min(dim=1).values
    log(f"f32 logits: min {allcat.min():.3f} max {allcat.max():.3f} std {allcat.std():.3f}; per-position "
        f"max-min spread {spread.min():.2f}..{spread.max():.2f}")
    info["logits_min"] = f"{float(allcat.min()):.3f}"
    info["logits_max"] = f"{float(allcat.max()):.3f}"

    # low-precision variants: float64 forward from the weights dequantized out of each GGUF
    for wt in ("f16", "bf16", "q8_0", "q4_0"):
        sdq, types, _ = ref.load_gguf(os.path.join(out_dir, f"tiny-{wt}.gguf"))
        mq = ref.Model(sdq, torch.float64)
        dmax = 0.0
        for name, toks in ps.items():
            lq, _ = ref.forward_seq(mq, toks, logits="last")
            g[f"{wt}.{name}.logits_last"] = f32(lq)
            dmax = max(dmax, maxabs(lq, all_logits[list(ps).index(name)][-1]))
        lq_all, _ = ref.forward_seq(mq, ps["p33"], logits="all")
        g[f"{wt}.p33.logits_all"] = f32(lq_all)
        wdiff = max(maxabs(sdq[k].double(), sd[k].double()) for k in sd if is_big(k))
        log(f"{wt:5s}: max|logits_last - f32 logits_last| over prompts = {dmax:.4f}; "
            f"max|weight error| {wdiff:.3e}; types {sorted(set(types.values()))}")
        info[f"{wt}_vs_f32_max_abs_logits_last"] = f"{dmax:.4f}"
    return g, info


def check_roundtrips(sd, out_dir, log):
    """Every F32 file must load back to exactly the generated weights (through rwkv7_ref's loaders)."""
    for fn in ("tiny.pth", "tiny.safetensors", "tiny.gguf"):
        back = ref.load_state_dict(os.path.join(out_dir, fn))
        assert set(back) == set(sd), f"{fn}: keys differ"
        if fn == "tiny.pth":
            assert list(back) == list(sd), "tiny.pth: key order differs from the official order"
        for k in sd:
            assert back[k].dtype == torch.float32 and tuple(back[k].shape) == tuple(sd[k].shape), (fn, k)
            assert torch.equal(back[k], sd[k]), f"{fn}: {k} differs"
        log(f"{fn}: loads back bit-identical ({len(back)} tensors)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "fixtures", "rwkv7"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    cfg = TINY
    sd = random_state_dict(cfg, SEED)
    assert ref.config_from_state_dict(sd) == cfg
    log(f"config {cfg}; {sum(v.numel() for v in sd.values())} parameters")
    w0 = torch.cat([sd[f"blocks.{i}.att.w0"].reshape(-1) for i in range(cfg.n_layer)])
    log(f"w0 in [{w0.min():.2f}, {w0.max():.2f}]")

    save_pth(sd, os.path.join(out, "tiny.pth"))
    save_safetensors(sd, os.path.join(out, "tiny.safetensors"))
    for wt in ("f32", "f16", "bf16", "q8_0", "q4_0"):
        write_gguf(sd, cfg, os.path.join(out, "tiny.gguf" if wt == "f32" else f"tiny-{wt}.gguf"), wt)
    check_roundtrips(sd, out, log)

    # ranges actually reached over the p100 prompt (informational)
    tr = {}
    ref.forward_seq(ref.Model(sd), prompts()[0]["p100"], logits="none", trace=tr)
    for nm in ("decay", "alpha", "g", "r", "k", "v", "y"):
        cat = torch.cat([tr[f"L{i}.{nm}"].reshape(-1) for i in range(cfg.n_layer)])
        log(f"  {nm:6s} range [{cat.min():.4f}, {cat.max():.4f}], rms {cat.pow(2).mean().sqrt():.3f}")

    g, info = make_golden(sd, out, log)
    meta = {"config": repr(cfg), "weights_seed": str(SEED), "prompt_seed": str(PROMPT_SEED),
            "state_layout": "per layer [sx_att C][S H*N*N, h*N*N+i*N+j, i=value row, j=key column][sx_ffn C]"}
    meta.update(info)
    gpath = os.path.join(out, "golden.safetensors")
    save_safetensors_ordered(g, gpath, metadata=meta)
    back = ref.load_safetensors(gpath)  # the official reader must read it back exactly
    assert set(back) == set(g) and all(torch.equal(back[k], g[k]) for k in g)
    total = 0
    for fn in sorted(os.listdir(out)):
        n = os.path.getsize(os.path.join(out, fn))
        total += n
        log(f"{n:10d}  {fn}")
    log(f"{total:10d}  total")


if __name__ == "__main__":
    main()
