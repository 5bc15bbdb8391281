#!/usr/bin/env bash
# Training speed of the ModRWKV forecaster (`modrwkv train --csv`) on the CPU and on the GPU (--device cuda): the
# default forecaster (lookback 720, horizon 96, batch 32, patch 16: 45 tokens, WaveNet 64 channels, adapter x4) with
# the default RWKV-7 (2 x 64) and with a bigger one (12 x 768, random init). Steps/s from train.jsonl's elapsed_s
# between the first and the last step (the first step, with its one-time setup, is left out); windows/s = steps/s x 32.
#   bench/cuda/train_forecast.sh          (MODRWKV: default build-cuda/modrwkv; GPULIBS: build-cuda/gpulibs;
#                                          THREADS: the CPU runs' threads, default 16; lines also in $OUT/fc_bench.txt)
set -u
cd "$(dirname "$0")/../.."
. bench/cuda/lib_bench.sh
out=${OUT:-cuda-out}; mkdir -p "$out"
th=${THREADS:-16}
tmp=$(mktemp -d)
awk 'BEGIN{srand(5); print "date,v"; for(i=0;i<8000;i++) printf "d%d,%.5f\n", i, 3+2*sin(i*2*3.14159/24)+sin(i*2*3.14159/168)+0.3*(rand()-0.5)}' \
  > "$tmp/s.csv"
# bench LABEL STEPS OPTIONS...: prints "LABEL: S steps/s (W windows/s)"
bench() { local label=$1 steps=$2; shift 2
  if ! "$M" train --csv "$tmp/s.csv" --lookback 720 --horizon 96 -b 32 --patch 16 --skip-init zero --steps "$steps" \
       --warmup 0 --seed 1 -q --out "$tmp/r" "$@" > "$tmp/log" 2>&1; then
    echo "$label: failed: $(tail -2 "$tmp/log")"; return; fi
  grep -o '"elapsed_s":[0-9.]*' "$tmp/r/train.jsonl" | cut -d: -f2 | awk -v l="$label" -v n="$steps" '
    NR == 1 { a = $1 } { b = $1 } END { s = (n - 1) / (b - a); printf "%s: %.2f steps/s (%.0f windows/s)\n", l, s, 32 * s }'
  rm -rf "$tmp/r"; }
{
  echo "forecaster lookback 720, horizon 96, batch 32, patch 16 (45 tokens), WaveNet 64 ch, adapter x4:"
  bench "  RWKV-7 2x64,  CPU $th threads" 6 -t "$th"
  bench "  RWKV-7 2x64,  GPU bf16" 40 --device cuda
  MRW_TRAIN_GPU_FP32=1 bench "  RWKV-7 2x64,  GPU fp32 mode" 20 --device cuda
  bench "  RWKV-7 12x768, CPU $th threads" 3 -t "$th" --init 12,768
  bench "  RWKV-7 12x768, GPU bf16" 30 --device cuda --init 12,768
} 2>&1 | tee "$out/fc_bench.txt"
rm -rf "$tmp"
