"""Full-size parity data: a random RWKV-7 with the shapes of the released 0.1B model (L=12, C=768, H=12,
N=64, V=65536, F=3072, LoRA ranks Dw=64, Da=64, Dv=32, Dg=128; ~191M parameters) and its golden outputs.

Writes into OUT_DIR (outside the repository, e.g. build/parity/):
  rwkv7-0.1b-random.pth      torch.save(OrderedDict), official layout, float32, layer 0 without v0/v1/v2 (~765 MB)
  golden-0.1b.safetensors    per prompt: {name}.tokens (I32), {name}.logits_last (F32 [65536]) and
                             {name}.state (F32, per layer [sx_att C][S H*N*N][sx_ffn C]), computed in float64
                             from the float32 weights with rwkv7_ref.forward_seq
Prompts use World-vocabulary ids: a chat prompt encoded with the World tokenizer (rwkv package), random ids
over the whole vocabulary including ids above 60000 (65529..65535 have no text), a single token, and a
longer text (English, code, \n\n, CJK).

Run:  build/refenv/bin/python tests/reference/parity_full.py build/parity [--threads 2]
The weights come from make_rwkv7_fixtures.random_state_dict (same distributions as the tiny fixtures,
scaled by fan-in), seeded with (SEED, crc32(name)): re-running reproduces identical files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv7_ref as ref  # noqa: E402
import make_rwkv7_fixtures as mk  # noqa: E402

SEED = 20250708
PROMPT_SEED = 4242

FULL = ref.Config(n_layer=12, n_embd=768, n_head=12, head_size=64, n_ffn=3072, n_vocab=65536,
                  lora_w=64, lora_a=64, lora_v=32, lora_g=128)

CHAT_TEXT = "\x16User: What is the RWKV-7 \u201cGoose\u201d architecture? Answer in one sentence.\x17\x16Assistant:"
LONG_TEXT = ("RWKV is an RNN with transformer-level LLM performance. It can be directly trained like a GPT "
             "(parallelizable). So it combines the best of RNN and transformer: great performance, linear time, "
             "constant space (no kv-cache), fast training, infinite ctx_len, and free sentence embedding.\n\n"
             "def wkv(S, r, w, k, v, a, b):\n    S = S * w + (S @ a) @ b.T + v @ k.T\n    return S @ r\n\n"
             "\u4e2d\u6587\u6d4b\u8bd5\uff1a\u4f60\u597d\uff0c\u4e16\u754c\uff01 \u65e5\u672c\u8a9e\u3082\u3002")


def world_encode(text: str):
    from rwkv.rwkv_tokenizer import TRIE_TOKENIZER
    import rwkv
    vocab = os.path.join(os.path.dirname(rwkv.__file__), "rwkv_vocab_v20230424.txt")
    return TRIE_TOKENIZER(vocab).encode(text)


def prompts():
    rng = np.random.default_rng(PROMPT_SEED)
    ps = OrderedDict()
    ps["chat"] = [int(t) for t in world_encode(CHAT_TEXT)]
    rand = rng.integers(1, 65536, size=64)
    rand[[3, 17, 40, 63]] = [65535, 60001, 65529, 64000]  # ids above 60000, incl. the last id
    ps["random64"] = [int(t) for t in rand]
    ps["high1"] = [65530]
    ps["long"] = [int(t) for t in world_encode(LONG_TEXT)]
    assert ps["chat"][0] == 23 and 24 in ps["chat"], ps["chat"]
    return ps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-checks", action="store_true", help="skip the RNN and float32 cross-checks")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    t_start = time.time()

    def log(msg):
        print(f"[{time.time() - t_start:7.1f}s] {msg}", flush=True)

    sd = mk.random_state_dict(FULL, SEED)
    assert ref.config_from_state_dict(sd) == FULL
    log(f"generated {sum(v.numel() for v in sd.values()) / 1e6:.1f}M parameters")
    pth = os.path.join(args.out_dir, "rwkv7-0.1b-random.pth")
    mk.save_pth(sd, pth)
    log(f"wrote {pth} ({os.path.getsize(pth) / 1e6:.1f} MB)")

    model = ref.Model(sd, torch.float64)
    ps = prompts()
    golden = OrderedDict()
    for name, toks in ps.items():
        t0 = time.time()
        logits, st = ref.forward_seq(model, toks, logits="last")
        golden[f"{name}.tokens"] = torch.tensor(toks, dtype=torch.int32)
        golden[f"{name}.logits_last"] = logits.to(torch.float32).contiguous()
        golden[f"{name}.state"] = st.to_flat().to(torch.float32).contiguous()
        top = torch.topk(logits, 3)
        log(f"{name}: {len(toks)} tokens in {time.time() - t0:.1f}s; logits [{logits.min():.3f}, "
            f"{logits.max():.3f}], std {logits.std():.3f}, top {top.indices.tolist()}")

    info = {"config": repr(FULL), "weights_seed": str(SEED), "prompt_seed": str(PROMPT_SEED)}
    if not args.no_checks:
        toks = ps["chat"][:8]
        lseq, sseq = ref.forward_seq(model, toks, logits="all")
        lrnn, srnn = ref.forward_rnn(model, toks)
        d = max(float((lseq - lrnn).abs().max()), float((sseq.to_flat() - srnn.to_flat()).abs().max()))
        log(f"seq vs rnn (float64, 8 tokens): max|delta| {d:.3e}")
        info["seq_vs_rnn_max_abs"] = f"{d:.3e}"
        del lseq, sseq, lrnn, srnn
        model32 = ref.Model(sd, torch.float32)
        l32, _ = ref.forward_seq(model32, ps["chat"], logits="last")
        d32 = float((l32.double() - golden["chat.logits_last"].double()).abs().max())
        log(f"float32 arithmetic vs float64 (chat prompt, last logits): max|delta| {d32:.3e}")
        info["f32_arith_vs_f64_max_abs_logits"] = f"{d32:.3e}"

    gpath = os.path.join(args.out_dir, "golden-0.1b.safetensors")
    mk.save_safetensors_ordered(golden, gpath, metadata=info)
    log(f"wrote {gpath}; total {time.time() - t_start:.1f}s")


if __name__ == "__main__":
    main()
