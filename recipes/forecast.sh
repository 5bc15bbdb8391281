#!/usr/bin/env bash
# The demo forecaster (models/forecast/): ModRWKV (WaveNet → adapter ×4 → RWKV-7 L2 C64 → linear head, plus the
# linear skip path from the lookback) trained on ETTh1's training split, 720 → 96, on the CPU.
#
#   recipes/forecast.sh [--quick] [--ship] [--out DIR] [--threads N] [--data DIR]
#
#   1. train  modrwkv train --csv DATA/ETTh1.csv (all 7 channels, channel-independent windows), patches of 16
#             steps (45 RWKV tokens), skip path initialised from the closed-form ridge fit, STEPS steps of
#             BATCH windows, cosine schedule; DIR/forecaster.safetensors, DIR/train.jsonl, DIR/resume.safetensors
#             (an interrupted run continues with the same command plus RESUME=1)
#   2. eval   the test split of ETTh1 (every window, stride 1; MAX_WINDOWS per channel to subsample), next to
#             the last-value, seasonal-naive and linear baselines on the same windows: DIR/results.md
#   3. demo   recipes/gen_series.sh --out DIR/series.csv (a synthetic hourly series with trend, daily and weekly
#             seasons and noise), the forecast of its last 96 rows with the truth and a plot (DIR/series.png),
#             and the last-value forecast's error on the same rows: appended to DIR/results.md
#   4. --ship copies the model to models/forecast/forecaster.safetensors (the model card is
#             models/forecast/README.md)
#
# --quick: a smoke run (seconds: lookback 96 → 24, a 1-layer width-16 model, 3 steps, a few eval windows) that
# writes under DIR only (default build/forecast/quick), never models/. --out DIR: working directory (default
# build/forecast/run; replaced). --threads N: threads (default 1). --data DIR: the folder with ETTh1.csv
# (default ../shared/data/timeseries). Environment: MODRWKV (binary, default build/modrwkv), STEPS (800),
# BATCH (16), LR (1e-3), WARMUP (40), PATCH (16), SCALE (4), SEED (42), TIME_LIMIT (seconds, default none),
# MAX_WINDOWS (0 = all), RESUME (1 = continue DIR's run). Long runs: OMP_WAIT_POLICY=passive nice -n 5 ….
set -euo pipefail
cd "$(dirname "$0")/.."

main() {  # (the whole script is one function: bash reads it before running, so editing the file is safe)

quick=0; ship=0; out=""; threads=1; data=../shared/data/timeseries
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --ship) ship=1; shift ;;
    --out|--threads|--data) [ $# -ge 2 ] || { echo "forecast.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in --out) out=$2 ;; --threads) threads=$2 ;; --data) data=$2 ;; esac; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "forecast.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
M=${MODRWKV:-build/modrwkv}
[ -x "$M" ] || { echo "forecast.sh: $M not found (run make first)" >&2; exit 2; }
[ -f "$data/ETTh1.csv" ] || { echo "forecast.sh: $data/ETTh1.csv not found (--data DIR)" >&2; exit 2; }
if [ $quick = 1 ]; then
  [ $ship = 0 ] || { echo "forecast.sh: --quick and --ship exclude each other" >&2; exit 2; }
  out=${out:-build/forecast/quick}
  model=(--lookback 96 --horizon 24 --init 1,16 --enc-channels 4 --patch 8 --adapter-scale 4)
  steps=3; batch=2; warmup=1; maxw=3; H=24
else
  out=${out:-build/forecast/run}
  model=(--init 2,64 --enc-channels 32 --patch "${PATCH:-16}" --adapter-scale "${SCALE:-4}")
  steps=${STEPS:-800}; batch=${BATCH:-16}; warmup=${WARMUP:-40}; maxw=${MAX_WINDOWS:-0}; H=96
fi
resume=()
if [ "${RESUME:-0}" = 1 ]; then resume=(--resume); else rm -rf "$out"; fi
mkdir -p "$out"
limit=()
[ -n "${TIME_LIMIT:-}" ] && limit=(--time-limit "$TIME_LIMIT")

echo "== 1. train ($out)"
"$M" train --csv "$data/ETTh1.csv" "${model[@]}" --skip on --steps "$steps" --warmup "$warmup" --lr "${LR:-1e-3}" \
  -b "$batch" --seed "${SEED:-42}" --save-every 50 "${limit[@]}" "${resume[@]}" -t "$threads" -q --out "$out"

echo "== 2. eval (ETTh1 test split)"
{
  echo "# ModRWKV forecaster: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "ETTh1 test split (MSE/MAE in the dataset-normalised space; max windows per channel: $maxw, 0 = all):"
  echo
  "$M" forecast -m "$out/forecaster.safetensors" --eval "$data/ETTh1.csv" --max-windows "$maxw" -t "$threads"
} > "$out/results.md"

echo "== 3. demo (synthetic series)"
recipes/gen_series.sh --out "$out/series.csv"
n=$(( $(wc -l < "$out/series.csv") - 1 ))
at=$(( n - H ))
"$M" forecast -m "$out/forecaster.safetensors" --csv "$out/series.csv" --column value --horizon $H --at $at \
  --out "$out/series_forecast.csv" --plot "$out/series.png" -t "$threads" 2> "$out/demo.err" || { cat "$out/demo.err" >&2; exit 1; }
"$M" forecast --baseline last --csv "$out/series.csv" --column value --lookback 96 --horizon $H --at $at \
  2> "$out/last.err" > /dev/null || { cat "$out/last.err" >&2; exit 1; }
{
  echo
  echo "Synthetic series (recipes/gen_series.sh, $n hourly rows), forecast of its last $H rows (raw units):"
  echo
  echo "- ModRWKV forecaster: $(grep -o 'MSE.*' "$out/demo.err" | tail -1)"
  echo "- last value:         $(grep -o 'MSE.*' "$out/last.err" | tail -1)"
} >> "$out/results.md"
cat "$out/results.md"

if [ $ship = 1 ]; then
  mkdir -p models/forecast
  cp "$out/forecaster.safetensors" models/forecast/forecaster.safetensors.tmp
  mv models/forecast/forecaster.safetensors.tmp models/forecast/forecaster.safetensors
  echo "== 4. shipped models/forecast/forecaster.safetensors ($(wc -c < models/forecast/forecaster.safetensors) bytes)"
fi
}
main "$@"
