"""Makes tests/fixtures/timer/{config.json,model.safetensors,golden.safetensors}: a tiny random Timer
(thuml/timer-base-84m layout, "TimerForPrediction") and its forward, written in plain torch after the model's
modeling_timer.py (patch embedding without bias; post-norm decoder layers with rotary causal attention
(q/k/v with bias, o without) and a SiLU-gated MLP; final LayerNorm; lm_heads.0 on the last patch).

  Run:  build/refenv/bin/python tests/reference/make_timer_fixtures.py [--out tests/fixtures/timer]
        (torch 1.13 CPU)

Tiny config: hidden 16 = 2 heads of 8, intermediate 24, input_token_len (patch) 8, 2 layers,
output_token_lens [8], rope base 10000, LayerNorm eps 1e-5. Weights N(0, 0.3^2) (LayerNorm weights 1 + N(0, 0.1^2)),
float32, the HF tensor names. Input: one series of 43 points; as in src/ts/timer.c the oldest 43 mod 8 = 3 points
are dropped and the last 40 make 5 patches.
golden.safetensors: "input" [43], "hidden" [5, 16] (last_hidden_state), "pred" [8] (lm_heads.0 of the last
patch), computed in float64 from the float32 weights.
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file

D, H, I, P, NL, OUT, T = 16, 2, 24, 8, 2, 8, 43


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(w, x):
    n = x.shape[0] // P
    x = x[x.shape[0] - n * P:]
    patches = x.unfold(0, P, P)                         # [n, P]
    h = patches @ w["model.embed_layer.emb.weight"].T   # [n, D]
    hd = D // H
    inv_freq = 1.0 / (10000 ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    t = torch.arange(n).type_as(inv_freq)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(h.dtype), emb.sin().to(h.dtype)
    mask = torch.full((n, n), float("-inf"), dtype=h.dtype).triu(1)
    ln = torch.nn.functional.layer_norm
    for l in range(NL):
        p = "model.layers.%d." % l

        def lin(name, a, bias=True):
            y = a @ w[p + name + ".weight"].T
            return y + w[p + name + ".bias"] if bias else y

        q = lin("self_attn.q_proj", h).view(n, H, hd).transpose(0, 1)
        k = lin("self_attn.k_proj", h).view(n, H, hd).transpose(0, 1)
        v = lin("self_attn.v_proj", h).view(n, H, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        s = q @ k.transpose(-1, -2) / hd ** 0.5 + mask
        a = torch.softmax(s, dim=-1) @ v                # [H, n, hd]
        a = a.transpose(0, 1).reshape(n, D)
        h = ln(h + lin("self_attn.o_proj", a, bias=False), (D,), w[p + "norm1.weight"], w[p + "norm1.bias"], 1e-5)
        f = lin("ffn_layer.down_proj", torch.nn.functional.silu(lin("ffn_layer.gate_proj", h, False)) *
                lin("ffn_layer.up_proj", h, False), False)
        h = ln(h + f, (D,), w[p + "norm2.weight"], w[p + "norm2.bias"], 1e-5)
    h = ln(h, (D,), w["model.norm.weight"], w["model.norm.bias"], 1e-5)
    pred = h[-1] @ w["lm_heads.0.weight"].T
    return h, pred


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/timer")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(11)

    def rnd(*shape, mean=0.0, std=0.3):
        return (mean + std * torch.randn(*shape, generator=g)).float()

    w = {"model.embed_layer.emb.weight": rnd(D, P), "model.norm.weight": rnd(D, mean=1, std=0.1),
         "model.norm.bias": rnd(D, std=0.1), "lm_heads.0.weight": rnd(OUT, D)}
    for l in range(NL):
        p = "model.layers.%d." % l
        for nm in ("q_proj", "k_proj", "v_proj"):
            w[p + "self_attn.%s.weight" % nm] = rnd(D, D)
            w[p + "self_attn.%s.bias" % nm] = rnd(D, std=0.1)
        w[p + "self_attn.o_proj.weight"] = rnd(D, D)
        w[p + "ffn_layer.gate_proj.weight"] = rnd(I, D)
        w[p + "ffn_layer.up_proj.weight"] = rnd(I, D)
        w[p + "ffn_layer.down_proj.weight"] = rnd(D, I)
        for k in ("norm1", "norm2"):
            w[p + k + ".weight"] = rnd(D, mean=1, std=0.1)
            w[p + k + ".bias"] = rnd(D, std=0.1)
    x = (torch.sin(torch.arange(T) * 0.4) + 0.3 * torch.randn(T, generator=g)).float()
    h, pred = forward({k: v.double() for k, v in w.items()}, x.double())
    os.makedirs(args.out, exist_ok=True)
    cfg = {"model_type": "timer", "architectures": ["TimerForPrediction"], "hidden_size": D,
           "intermediate_size": I, "num_hidden_layers": NL, "num_attention_heads": H, "input_token_len": P,
           "output_token_lens": [OUT], "hidden_act": "silu", "rope_theta": 10000, "max_position_embeddings": 10000}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_file({k: v.contiguous() for k, v in w.items()}, os.path.join(args.out, "model.safetensors"))
    save_file({"input": x, "hidden": h.float().contiguous(), "pred": pred.float().contiguous()},
              os.path.join(args.out, "golden.safetensors"))
    print("patches", h.shape[0], "pred", pred[:4].tolist())


if __name__ == "__main__":
    main()
