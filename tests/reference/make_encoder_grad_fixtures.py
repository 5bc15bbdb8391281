"""Makes the encoder gradient fixtures in tests/fixtures/encoder_grad/ (ViT and Whisper training backward).

  Run:  build/refenv/bin/python tests/reference/make_encoder_grad_fixtures.py [--out tests/fixtures/encoder_grad]
        (torch 1.13 CPU, transformers 4.46.3; eager attention)

Cases (tiny random configs, built with transformers' own classes):
  siglip/   SiglipVisionModel  hidden 24 = 2 heads of 12, mlp 40, 2 layers, patch 4, image 12 (9 patches),
            gelu_pytorch_tanh, eps 1e-6
  clip/     CLIPVisionModel    hidden 24 = 3 heads of 8, mlp 36, 2 layers, patch 4, image 12 (9 patches + CLS),
            quick_gelu, eps 1e-5
  whisper/  WhisperEncoder     d_model 24 = 3 heads of 8, ffn 40, 2 layers, 8 mel bins, 14 frames
            (max_source_positions 7), exact GELU
Each directory holds config.json and model.safetensors (float32 weights, keys as transformers saves the model:
"vision_model.*" for the ViTs; the WhisperEncoder's own keys "conv1.*", "embed_positions.weight", "layers.*",
"layer_norm.*" for Whisper) and golden.safetensors:
  "input" (pixels [B, 3, S, S] / input_features [B, mel, frames], f32), "d_out" [B, T, hidden] (f32),
  "out" (last_hidden_state), "grad.input" and "grad.<key>" for every parameter: autograd of
  sum(last_hidden_state * d_out) in float64 from the float32 weights, stored as float32. B = 2.
Random parameters (not transformers' init, so every tensor matters): matrices N(0, 1/fan_in), biases
U(-0.1, 0.1), LayerNorm weights 1 + U(-0.2, 0.2), position/class embeddings N(0, 0.5).
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import (CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel,
                          WhisperConfig)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

B = 2


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = name.rsplit(".", 1)[-1]
            if "norm" in name or "layrnorm" in name:
                if base == "weight":
                    p.copy_(1 + (torch.rand(p.shape, generator=gen) * 0.4 - 0.2))
                else:
                    p.copy_(torch.rand(p.shape, generator=gen) * 0.2 - 0.1)
            elif base == "bias":
                p.copy_(torch.rand(p.shape, generator=gen) * 0.2 - 0.1)
            elif "position" in name or "class_embedding" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
            p.copy_(p.float().to(p.dtype))  # exactly representable in f32


def run(model, inp, out_dir, cfg_dict, gen):
    os.makedirs(out_dir, exist_ok=True)
    model = model.double().eval()
    randomize(model, gen)
    x = inp.double().requires_grad_(True)
    hs = model(x).last_hidden_state
    d_out = torch.randn(hs.shape, generator=gen).float()
    (hs * d_out.double()).sum().backward()
    weights = {n: p.detach().float().contiguous() for n, p in model.state_dict().items()
               if not n.endswith("position_ids")}
    save_file(weights, os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg_dict, f, indent=1)
    g = {"input": inp.float().contiguous(), "d_out": d_out.contiguous(), "out": hs.detach().float().contiguous(),
         "grad.input": x.grad.float().contiguous()}
    for n, p in model.named_parameters():
        g["grad." + n] = (p.grad if p.grad is not None else torch.zeros_like(p)).float().contiguous()
    save_file(g, os.path.join(out_dir, "golden.safetensors"))
    print(out_dir, tuple(hs.shape))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/encoder_grad")
    a = ap.parse_args()
    gen = torch.Generator().manual_seed(777)

    sc = SiglipVisionConfig(hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2,
                            num_channels=3, image_size=12, patch_size=4, hidden_act="gelu_pytorch_tanh",
                            layer_norm_eps=1e-6, attn_implementation="eager")
    m = SiglipVisionModel(sc)
    d = sc.to_dict()
    d["model_type"] = "siglip_vision_model"
    run(m, torch.randn(B, 3, 12, 12, generator=gen), os.path.join(a.out, "siglip"), d, gen)

    cc = CLIPVisionConfig(hidden_size=24, intermediate_size=36, num_hidden_layers=2, num_attention_heads=3,
                          num_channels=3, image_size=12, patch_size=4, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                          attn_implementation="eager")
    m = CLIPVisionModel(cc)
    d = cc.to_dict()
    d["model_type"] = "clip_vision_model"
    run(m, torch.randn(B, 3, 12, 12, generator=gen), os.path.join(a.out, "clip"), d, gen)

    wc = WhisperConfig(num_mel_bins=8, d_model=24, encoder_layers=2, encoder_attention_heads=3, encoder_ffn_dim=40,
                       max_source_positions=7, activation_function="gelu", attn_implementation="eager",
                       decoder_layers=1, decoder_attention_heads=3, decoder_ffn_dim=40, vocab_size=64)
    m = WhisperEncoder(wc)
    run(m, torch.randn(B, 8, 14, generator=gen), os.path.join(a.out, "whisper"), wc.to_dict(), gen)


if __name__ == "__main__":
    main()
