#!/usr/bin/env python3
"""One full training step of `modrwkv train` computed by PyTorch: tests/test_trainer.c runs the C trainer
(mrw_train_run, the code behind the command) on the same model and data for one step and compares the loss,
the gradient norm and every updated parameter.

Made with (from the repository root, torch 1.13 CPU in build/refenv, see scripts/refenv.sh):
    build/refenv/bin/python tests/reference/make_train_step_fixtures.py tests/fixtures/train_step

The step (docs/TRAINING.md): 4 text records (byte vocabulary: token = byte) of 21 bytes each, --batch 2
--grad-accum 2, so the step sees every record once; all records have the same number of targets, so the mean
over micro-batches equals the mean over all 80 targets whatever order the seed shuffles them in. Each row is
padded with token 0 (target -100) to 32 = a multiple of 16. Loss: mean cross-entropy over the targets
(next byte). Then torch.nn.utils.clip_grad_norm_(1.0) and one torch.optim.Adam step (betas 0.9/0.99, eps 1e-8,
no weight decay) at lr 1e-3 (--schedule constant, no warmup).

The model is a random tiny RWKV-7 (L=2, C=32, one head of 32, F=128, V=256, LoRA ranks 16/16/8/16) made with
make_weights() of make_rwkv7_grad_fixtures.py, whose literal PyTorch forward (written from
../shared/reference/rwkv7.md and checked there against rwkv7_ref.forward_seq) is reused here; autograd in
float64 from the float32 weights.

Files: model.safetensors (the start, official RWKV-7 keys), data.jsonl, expected.safetensors
("updated.<key>" after the step, "loss" [1], "grad_norm" [1], "illcond.<key>": int32 flat indices of the
elements whose clipped gradient is nonzero but below 1e-7, where Adam's first step g / (|g| + eps) amplifies
float rounding; the C test allows up to 2 lr there and 1e-5 * max|w| + 1e-2 lr everywhere else).

The multimodal step (mm_*): a ModRWKV bundle (mm_model.safetensors: llm.* = the same tiny RWKV-7 without layer
0's v0/v1/v2, a v2 adapter with its stride-2 conv under proj.* (make_adapter_grad_fixtures.Adapter, kind 3,
hidden 40), the SigLIP vision tower of tests/fixtures/modrwkv/siglip under encoder.model.*, metadata
modrwkv.splice = prepend) and two LLaVA records (mm_data.jsonl, images image_a/b.png copied from
tests/fixtures/modrwkv/media). The encoder is frozen, so its output is an input here: random features
[16, 48] per image ("features.<image>"), which the C test puts into the trainer's feature cache. Sequence =
7 adapter rows (16 -> conv -> 7) prepended to the byte tokens of "\x16User: What is this?\x17\x16Assistant:
{answer}\x17" ("<image>" at the end of the question is removed), targets only on the assistant turn (its
"\x16Assistant:" prefix and closing "\x17" included), padded to 48. --batch 2, one step, lr 1e-3, clip 1.0.
Stage 2 (adapter + RWKV: "s2.updated.*", "s2.loss", "s2.grad_norm") and stage 1 (adapter only, RWKV
frozen; the gradient still flows through it: "s1.updated.proj.*", "s1.grad_norm") in mm_expected.safetensors.

The encoder stage (--train adapter,rwkv,encoder: "s3.*"): the same, but the features come from the SigLIP
vision tower itself (transformers' SiglipVisionModel with the weights of tests/fixtures/modrwkv/siglip, float64,
through modrwkv_ref.VisionEncoder: its processor makes the pixels from the PNGs), which trains too
("s3.updated.encoder.model.vision_model.<key>").

The Whisper encoder stage (asr_*): a bundle (asr_model.safetensors: the same LM, a v1 audio adapter under
proj.*, the Whisper encoder of tests/fixtures/modrwkv/whisper under encoder.model.<WhisperEncoder key>, prepend
splicing), two ASR records of the same recording (speech.wav) with transcripts of equal length, --batch 1
--grad-accum 2 (equal target counts: the mean over micro-batches is the mean over all targets). The log-mel
comes from modrwkv_ref.AudioEncoder (transformers' WhisperFeatureExtractor), the encoder is transformers'
WhisperEncoder in float64; its output is cut to the real audio (n = frames // 2 + 1) as ModRWKV does. Expected:
asr_expected.safetensors ("updated.<name>", "loss", "grad_norm", "illcond.<name>").
"""
import json
import os
import sys
from collections import OrderedDict

import torch
import torch.nn.functional as Fn
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_rwkv7_grad_fixtures as lit  # noqa: E402  (the literal forward and the weight maker)
import make_adapter_grad_fixtures as adg  # noqa: E402  (the adapter as torch.nn modules)

HERE = os.path.dirname(os.path.abspath(__file__))
SIGLIP = os.path.join(HERE, "..", "fixtures", "modrwkv", "siglip")
MEDIA = os.path.join(HERE, "..", "fixtures", "modrwkv", "media")
MM_RECORDS = [("image_a.png", "a disc"), ("image_b.png", "a grid")]
E, M_ROWS, T_MM = 48, 7, 48

L, C, N, F, V = 2, 32, 32, 128, 256
DW, DA, DV, DG = 16, 16, 8, 16
RECORDS = ["the cat sat on a mat.", "a dog ran in the park", "birds sang all day ok", "RWKV-7 learns bytes!!"]
B, T = 4, 32
LR = 1e-3


def main(out):
    os.makedirs(out, exist_ok=True)
    # the literal forward reads these module globals
    lit.L, lit.C, lit.N, lit.F, lit.V, lit.H = L, C, N, F, V, C // N
    lit.DW, lit.DA, lit.DV, lit.DG = DW, DA, DV, DG
    lit.B, lit.T = B, T
    w32 = lit.make_weights()
    # layer 0 has no value residual in the math; official checkpoints still carry v0/v1/v2 there
    for k in ("v0", "v1", "v2"):
        w32[f"blocks.0.att.{k}"] = w32[f"blocks.1.att.{k}"].clone()
    save_file({k: v.contiguous() for k, v in w32.items()}, os.path.join(out, "model.safetensors"))
    with open(os.path.join(out, "data.jsonl"), "w") as f:
        for r in RECORDS:
            assert len(r.encode()) == 21
            f.write(json.dumps({"text": r}) + "\n")

    tokens = torch.zeros(B, T, dtype=torch.long)
    targets = torch.full((B, T), -100, dtype=torch.long)
    for b, r in enumerate(RECORDS):
        ids = list(r.encode())
        tokens[b, : len(ids)] = torch.tensor(ids)
        targets[b, : len(ids) - 1] = torch.tensor(ids[1:])
    w = OrderedDict((k, v.to(torch.float64).requires_grad_(True)) for k, v in w32.items())
    inject = torch.zeros(B, T, C, dtype=torch.float64)
    mask = torch.zeros(B, T, dtype=torch.bool)
    logits = lit.forward(w, tokens, inject, mask)
    loss = Fn.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100, reduction="mean")
    loss.backward()

    params = [w[k] for k in w]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    t = OrderedDict()
    norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
    ill_conditioned(t, "illcond.", list(w), params)
    opt = torch.optim.Adam(params, lr=LR, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, foreach=False)
    opt.step()
    print(f"loss {loss.item():.8f} grad_norm {norm.item():.6f}")
    for k in w:
        t["updated." + k] = w[k].detach().float().contiguous()
    t["loss"] = loss.detach().reshape(1).float()
    t["grad_norm"] = norm.detach().reshape(1).float()
    save_file(t, os.path.join(out, "expected.safetensors"),
              metadata={"made_by": "tests/reference/make_train_step_fixtures.py", "lr": str(LR)})


ILL = 1e-7  # |clipped gradient| below this: Adam's first step g / (|g| + 1e-8) is ill-conditioned


def ill_conditioned(t, prefix, names, params):
    """Flat indices of the elements whose clipped gradient is below ILL: there Adam's first step turns the
    f32-vs-f64 rounding of an almost-zero gradient into a visible part of a step (the C test allows 2 lr)."""
    for n, p in zip(names, params):
        idx = (p.grad.abs().flatten() < ILL).nonzero().flatten()
        nonzero = idx[p.grad.flatten()[idx] != 0]  # exactly-zero gradients agree exactly
        if len(nonzero):
            t[prefix + n] = nonzero.to(torch.int32).contiguous()


def adam_step(params, norm_of, t, prefix, names):
    norm = torch.nn.utils.clip_grad_norm_(norm_of, 1.0)
    ill_conditioned(t, prefix, names, params)
    opt = torch.optim.Adam(params, lr=LR, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, foreach=False)
    opt.step()
    return norm


def mm_step(out, w32, stage):
    """One multimodal step; stage 2 trains LM + adapter, stage 1 the adapter only, stage 3 (the encoder stage)
    encoder + adapter + LM with the features made by the encoder."""
    torch.manual_seed(77)
    ad = adg.Adapter(3, E, C, 40, 1)
    with torch.no_grad():
        for n, p in ad.named_parameters():
            if "pre_norm" in n:
                p.add_(0.2 * torch.randn_like(p))
    ad32 = OrderedDict(("proj." + n, p.detach().float().clone()) for n, p in ad.named_parameters())
    ad = ad.double()
    g = torch.Generator().manual_seed(78)
    feats = OrderedDict((im, torch.randn(16, E, generator=g)) for im, _ in MM_RECORDS)
    tokens = torch.zeros(2, T_MM, dtype=torch.long)
    targets = torch.full((2, T_MM), -100, dtype=torch.long)
    mask = torch.zeros(2, T_MM, dtype=torch.bool)
    for b, (im, ans) in enumerate(MM_RECORDS):
        user = list(b"\x16User: What is this?\x17")
        asst = list(("\x16Assistant: " + ans + "\x17").encode())
        ids, sup = user + asst, [0] * len(user) + [1] * len(asst)
        n = len(ids)
        tokens[b, M_ROWS:M_ROWS + n] = torch.tensor(ids)
        for i in range(n - 1):
            if sup[i + 1]:
                targets[b, M_ROWS + i] = ids[i + 1]
        mask[b, :M_ROWS] = True
    w = OrderedDict((k, v.to(torch.float64).requires_grad_(stage >= 2)) for k, v in w32.items())
    if stage == 3:
        import modrwkv_ref
        enc = modrwkv_ref.VisionEncoder(SIGLIP, dtype=torch.float64)
        vm = enc.model.vision_model
        for p in vm.parameters():
            p.requires_grad_(True)
        pix = torch.stack([enc.preprocess(os.path.join(MEDIA, im)) for im, _ in MM_RECORDS]).double()
        x = vm(pixel_values=pix).last_hidden_state
        assert x.shape == (2, 16, E)
        rows = ad(x)
    else:
        rows = ad(torch.stack([feats[im].double() for im, _ in MM_RECORDS]))  # [2, 7, C]
    assert rows.shape == (2, M_ROWS, C)
    inject = torch.zeros(2, T_MM, C, dtype=torch.float64)
    inject[:, :M_ROWS] = rows
    lit.B, lit.T = 2, T_MM
    logits = lit.forward(w, tokens, inject, mask)
    loss = Fn.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100, reduction="mean")
    loss.backward()
    aparams = list(ad.parameters())
    anames = ["proj." + n for n, _ in ad.named_parameters()]
    t = OrderedDict()
    if stage >= 2:
        lparams = [w[k] for k in w]
        for p in lparams:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        eparams, enames = [], []
        if stage == 3:  # the tower's parameters that last_hidden_state uses (not SigLIP's pooling head)
            for n, p in vm.named_parameters():
                if p.grad is not None:
                    eparams.append(p)
                    enames.append("encoder.model.vision_model." + n)
        allp = lparams + aparams + eparams
        norm = adam_step(allp, allp, t, f"s{stage}.illcond.", ["llm." + k for k in w] + anames + enames)
        if stage == 3:
            for n, p in zip(enames, eparams):
                t[f"s3.updated.{n}"] = p.detach().float().contiguous()
    else:
        norm = adam_step(aparams, aparams, t, "s1.illcond.", anames)
    if stage >= 2:
        for k in w:
            t[f"s{stage}.updated.llm.{k}"] = w[k].detach().float().contiguous()
    for n, p in ad.named_parameters():
        t[f"s{stage}.updated.proj.{n}"] = p.detach().float().contiguous()
    t[f"s{stage}.loss"] = loss.detach().reshape(1).float()
    t[f"s{stage}.grad_norm"] = norm.detach().reshape(1).float()
    print(f"multimodal stage {stage}: loss {loss.item():.8f} grad_norm {norm.item():.6f}")
    return ad32, feats, t


def main_mm(out):
    from safetensors.torch import load_file
    lit.L, lit.C, lit.N, lit.F, lit.V, lit.H = L, C, N, F, V, C // N
    lit.DW, lit.DA, lit.DV, lit.DG = DW, DA, DV, DG
    w32 = lit.make_weights()
    ad32, feats, t2 = mm_step(out, w32, 2)
    _, _, t1 = mm_step(out, w32, 1)
    _, _, t3 = mm_step(out, w32, 3)
    bundle = OrderedDict(("llm." + k, v.contiguous()) for k, v in w32.items())
    bundle.update(ad32)
    enc = load_file(os.path.join(SIGLIP, "model.safetensors"))
    for k, v in enc.items():
        if k.startswith("vision_model."):
            bundle["encoder.model." + k] = v.contiguous()
    meta = {"modrwkv.format": "1", "modrwkv.encoder": "siglip", "modrwkv.encoder_prefix": "",
            "modrwkv.adapter_prefix": "proj.", "modrwkv.splice": "prepend",
            "modrwkv.encoder_config": open(os.path.join(SIGLIP, "config.json")).read(),
            "modrwkv.preprocessor_config": open(os.path.join(SIGLIP, "preprocessor_config.json")).read()}
    save_file(bundle, os.path.join(out, "mm_model.safetensors"), metadata=meta)
    with open(os.path.join(out, "mm_data.jsonl"), "w") as f:
        for im, ans in MM_RECORDS:
            f.write(json.dumps({"image": im, "conversations": [{"from": "human", "value": "What is this?<image>"},
                                                               {"from": "gpt", "value": ans}]}) + "\n")
    for im, _ in MM_RECORDS:
        with open(os.path.join(MEDIA, im), "rb") as src, open(os.path.join(out, im), "wb") as dst:
            dst.write(src.read())
    t = OrderedDict()
    t.update(t2)
    t.update(t1)
    t.update(t3)
    for im, x in feats.items():
        t["features." + im] = x.contiguous()
    save_file(t, os.path.join(out, "mm_expected.safetensors"),
              metadata={"made_by": "tests/reference/make_train_step_fixtures.py", "lr": str(LR)})


WHISPER = os.path.join(HERE, "..", "fixtures", "modrwkv", "whisper")
ASR_RECORDS = ["hello", "world"]


def main_asr(out):
    import modrwkv_ref
    from safetensors.torch import load_file
    lit.L, lit.C, lit.N, lit.F, lit.V, lit.H = L, C, N, F, V, C // N
    lit.DW, lit.DA, lit.DV, lit.DG = DW, DA, DV, DG
    w32 = lit.make_weights()
    enc = modrwkv_ref.AudioEncoder(WHISPER, dtype=torch.float64)
    Ew = enc.width
    torch.manual_seed(79)
    ad = adg.Adapter(2, Ew, C, 0, 0)
    ad32 = OrderedDict(("proj." + n, p.detach().float().clone()) for n, p in ad.named_parameters())
    ad = ad.double()
    samples, sr = modrwkv_ref.read_wav(os.path.join(MEDIA, "speech.wav"))
    assert sr == 16000
    mel, real = enc.preprocess(samples)
    keep = enc.whisper_keep(real)
    for nm, p in enc.model.named_parameters():  # transformers freezes embed_positions (requires_grad False)
        p.requires_grad_("embed_positions" not in nm)
    x = enc.model(mel[None].double()).last_hidden_state[:, :keep]  # [1, keep, E]
    rows = ad(x)[0]  # [M, C]
    M = rows.shape[0]
    n = len(("\x16Assistant: " + ASR_RECORDS[0] + "\x17").encode())
    T = (M + n + 15) // 16 * 16
    tokens = torch.zeros(2, T, dtype=torch.long)
    targets = torch.full((2, T), -100, dtype=torch.long)
    mask = torch.zeros(2, T, dtype=torch.bool)
    for b, txt in enumerate(ASR_RECORDS):
        ids = list(("\x16Assistant: " + txt + "\x17").encode())
        assert len(ids) == n
        tokens[b, M:M + n] = torch.tensor(ids)
        targets[b, M - 1] = ids[0]  # the last feature row predicts the answer's first token
        targets[b, M:M + n - 1] = torch.tensor(ids[1:])
        mask[b, :M] = True
    w = OrderedDict((k, v.to(torch.float64).requires_grad_(True)) for k, v in w32.items())
    inject = torch.zeros(2, T, C, dtype=torch.float64)
    inject[:, :M] = rows
    lit.B, lit.T = 2, T
    logits = lit.forward(w, tokens, inject, mask)
    loss = Fn.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100, reduction="mean")
    loss.backward()
    lparams = [w[k] for k in w]
    for p in lparams:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    eparams, enames = [], []
    for nm, p in enc.model.named_parameters():
        if p.grad is not None:
            eparams.append(p)
            enames.append("encoder.model." + nm)
    aparams = list(ad.parameters())
    anames = ["proj." + nm for nm, _ in ad.named_parameters()]
    t = OrderedDict()
    allp = lparams + aparams + eparams
    norm = adam_step(allp, allp, t, "illcond.", ["llm." + k for k in w] + anames + enames)
    for k in w:
        t["updated.llm." + k] = w[k].detach().float().contiguous()
    for nm, p in zip(anames + enames, aparams + eparams):
        t["updated." + nm] = p.detach().float().contiguous()
    t["loss"] = loss.detach().reshape(1).float()
    t["grad_norm"] = norm.detach().reshape(1).float()
    print(f"whisper encoder stage: loss {loss.item():.8f} grad_norm {norm.item():.6f} (M {M}, keep {keep})")
    bundle = OrderedDict(("llm." + k, v.contiguous()) for k, v in w32.items())
    bundle.update(ad32)
    full = load_file(os.path.join(WHISPER, "model.safetensors"))
    for k, v in full.items():
        if k.startswith("model.encoder."):
            bundle["encoder.model." + k[len("model.encoder."):]] = v.contiguous()
    meta = {"modrwkv.format": "1", "modrwkv.encoder": "whisper", "modrwkv.encoder_prefix": "",
            "modrwkv.adapter_prefix": "proj.", "modrwkv.splice": "prepend",
            "modrwkv.encoder_config": open(os.path.join(WHISPER, "config.json")).read(),
            "modrwkv.preprocessor_config": open(os.path.join(WHISPER, "preprocessor_config.json")).read()}
    save_file(bundle, os.path.join(out, "asr_model.safetensors"), metadata=meta)
    with open(os.path.join(out, "asr_data.jsonl"), "w") as f:
        for txt in ASR_RECORDS:
            f.write(json.dumps({"audio": "speech.wav", "text": txt}) + "\n")
    with open(os.path.join(MEDIA, "speech.wav"), "rb") as src, open(os.path.join(out, "speech.wav"), "wb") as dst:
        dst.write(src.read())
    save_file(t, os.path.join(out, "asr_expected.safetensors"),
              metadata={"made_by": "tests/reference/make_train_step_fixtures.py", "lr": str(LR)})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/train_step")
    main_mm(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/train_step")
    main_asr(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/train_step")
