"""Times the same audio encoders as bench/bench_audio.c in PyTorch on the CPU (transformers, eval mode,
torch.no_grad, float32): the Whisper-small encoder on 30 s (input_features [1, 80, 3000]) and WavLM-base-plus
on 10 s (160000 samples), random weights, on 1 and 2 threads; best of N after one warm-up run. GFLOP counts
as bench_audio.c's (every GEMM-shaped product, convolutions and attention included, 2 FLOPs per
multiply-add).

Run:  build/refenv/bin/python tests/reference/bench_torch_audio.py [--threads 1 2] [--reps 2]
"""

from __future__ import annotations

import argparse
import re
import time

import torch
from transformers import WavLMConfig, WavLMModel, WhisperConfig
from transformers.models.wavlm import modeling_wavlm
from transformers.models.whisper.modeling_whisper import WhisperEncoder

# transformers asks whether the module is FSDP-managed, which imports torch.distributed.fsdp; Debian's torch
# 1.13 fails that import on Python 3.11. No module here is.
modeling_wavlm.is_fsdp_managed_module = lambda module: False


def whisper_gflop(d=768, layers=12, ffn=3072, mels=80, frames=3000) -> float:
    T = (frames - 1) // 2 + 1
    f = 2.0 * frames * 3 * mels * d + 2.0 * T * 3 * d * d
    f += layers * (8.0 * T * d * d + 4.0 * T * T * d + 4.0 * T * d * ffn)
    return f / 1e9


def wavlm_gflop(n=160000, d=768, layers=12, ffn=3072, heads=12) -> float:
    f, t, cin = 0.0, n, 1
    for k, s in zip((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)):
        t = (t - k) // s + 1
        f += 2.0 * t * k * cin * 512
        cin = 512
    T = t
    f += 2.0 * T * cin * d + 2.0 * T * 128 * (d / 16) * d
    f += layers * (8.0 * T * d * d + 4.0 * T * T * d + 4.0 * T * d * ffn + 16.0 * T * d)
    return f / 1e9


def best_time(fn, reps: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    whisper = WhisperEncoder(WhisperConfig(d_model=768, encoder_layers=12, encoder_attention_heads=12,
                                           encoder_ffn_dim=3072, num_mel_bins=80,
                                           max_source_positions=1500)).eval()
    wavlm = WavLMModel(WavLMConfig()).eval()  # the defaults are wavlm-base-plus's
    mel = torch.randn(1, 80, 3000)
    wave = torch.randn(1, 160000)
    cfg = torch.__config__.show()
    info = re.findall(r"BLAS_INFO=\w+|MKL-DNN v[\d.]+", cfg)
    print(f"torch {torch.__version__} ({', '.join(info)})")
    print(f"{'threads':7} | {'encoder':32} | {'time s':>8} | {'GFLOP':>7} | {'GFLOP/s':>8}")
    for nt in args.threads:
        torch.set_num_threads(nt)
        with torch.no_grad():
            rows = [("whisper-small, 30 s (3000 frames)", best_time(lambda: whisper(mel), args.reps),
                     whisper_gflop()),
                    ("wavlm-base-plus, 10 s (160000)", best_time(lambda: wavlm(wave), args.reps),
                     wavlm_gflop())]
        for name, t, g in rows:
            print(f"{nt:<7} | {name:32} | {t:8.3f} | {g:7.1f} | {g / t:8.1f}", flush=True)


if __name__ == "__main__":
    main()
