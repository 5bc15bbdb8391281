#!/usr/bin/env bash
# The main job, offline: create a small random RWKV-7, convert it to a q8_0 GGUF (with the vocabulary
# embedded), generate from it (noise: the weights are random), and print a benchmark line. Until the project
# ships trained models this is a round trip through every stage: init -> convert -> load -> generate -> bench.
set -euo pipefail
cd "$(dirname "$0")/.."
M=build/modrwkv
[ -x "$M" ] || make -j"$(nproc)"
mkdir -p build/demo
if [ -f build/vocab/rwkv_vocab_v20230424.txt ]; then V=65536; VOCAB=(--vocab build/vocab/rwkv_vocab_v20230424.txt)
else V=256; VOCAB=(--vocab bytes); echo "(no World vocabulary installed: using a byte-level model)"; fi
set -x
$M init -o build/demo/random.safetensors --layers 6 --embd 512 --vocab-size $V --seed 1
$M convert build/demo/random.safetensors build/demo/random-q8_0.gguf --dtype q8_0 "${VOCAB[@]}"
$M info -m build/demo/random-q8_0.gguf
$M generate -m build/demo/random-q8_0.gguf -p "The quick brown fox" -n 24 --temp 1 --top-p 0.9 --seed 7
$M bench -m build/demo/random-q8_0.gguf --prompt 256 --gen 64
