#!/usr/bin/env bash
# Creates build/refenv: the Python environment that runs tests/reference/ (the scripts that produce golden
# fixtures). Debian's python3-torch (CPU) and numpy, plus pinned PyPI packages: `rwkv` (the reference World
# tokenizer), `gguf` (llama.cpp's GGUF writer and quantizers), `safetensors`, and `transformers` 4.46.3 (the
# last line that runs on Debian's torch 1.13) with pillow for the encoder and processor goldens.
# Not needed to build or test modrwkv: the fixtures it makes are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y python3-torch python3-numpy python3-venv
fi
[ -x build/refenv/bin/python ] || /usr/bin/python3 -m venv --system-site-packages build/refenv
build/refenv/bin/pip install -q rwkv==0.8.32 gguf==0.19.0 safetensors==0.8.0 pyyaml tqdm transformers==4.46.3 pillow==9.4.0 soundfile==0.14.0 soxr==1.1.0
build/refenv/bin/python -c 'import torch, numpy, rwkv, gguf, safetensors; print("refenv ready: torch", torch.__version__)'
