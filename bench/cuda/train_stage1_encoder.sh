#!/usr/bin/env bash
# Samples/s of a real `modrwkv train --device cuda` stage-1 run (--train adapter, RWKV frozen) with the frozen image
# encoder on the CPU (--encoder-device cpu) against the GPU (--encoder-device cuda, bf16, a micro-batch's images in
# one forward). The encoder: a random SigLIP2-base-shaped vision tower in the Hugging Face layout (256 px, patch 16:
# 256 tokens, width 768, 12 layers, 12 heads, MLP 3072; 85.8 M parameters: bench/cuda/random_encoder.py, python3 + numpy); the language
# model: models/base/model-q4_0.gguf (byte-level RWKV-7 L4 C256); the data: N `modrwkv gen-scenes` images (64 px,
# resized to 256 by the processor), one question each; no feature cache (every step encodes its images). The rate
# is the steady state: steps 5..STEPS from train.jsonl's elapsed_s (the first steps include start-up). Results:
# docs/CUDA.md, "The frozen encoders on the GPU".
#   bench/cuda/train_stage1_encoder.sh [N_IMAGES (256)] [BATCH (16)] [STEPS (16)] [THREADS (16)]
# Needs MODRWKV (default build-cuda/modrwkv) and GPULIBS (default build-cuda/gpulibs) as tests/cuda/*.sh.
set -u
cd "$(dirname "$0")/../.."
. bench/cuda/lib_bench.sh
N=${1:-256}; B=${2:-16}; STEPS=${3:-16}; TH=${4:-16}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 bench/cuda/random_encoder.py siglip2-base "$tmp/enc" || exit 1
"$M" gen-scenes --out "$tmp/scenes" --n "$N" --seed 1 --split train --questions 1 --size 64 -q || exit 1
data="$tmp/scenes/train.jsonl"
echo "data: $data ($(wc -l < "$data") records); batch $B, $STEPS steps, -t $TH; $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null)"
for dev in cpu cuda; do
  "$M" train -m models/base/model-q4_0.gguf --vocab bytes --encoder "$tmp/enc" --adapter v1 --train adapter \
    --data "$data" --batch "$B" --ctx-len 512 --steps "$STEPS" --lr 1e-3 -t "$TH" --no-progress --device cuda \
    --encoder-device $dev --out "$tmp/run_$dev" > "$tmp/log_$dev" 2>&1 || { echo "run $dev failed:"; tail -5 "$tmp/log_$dev"; exit 1; }
  grep -h "encoder" "$tmp/log_$dev" | head -3
  steady_rate "$tmp/run_$dev" "$B" "$STEPS" "stage 1, frozen encoder on the $([ $dev = cuda ] && echo 'GPU (bf16)' || echo CPU)"
done
