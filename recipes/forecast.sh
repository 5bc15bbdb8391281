#!/usr/bin/env bash
# The forecasters (docs/FORECAST.md): ModRWKV (WaveNet → adapter ×4 → RWKV-7 L2 C64 → linear head, plus the
# linear skip path from the lookback) trained on one dataset's training split, 720 → 96 (ILI 104 → 24), on the CPU.
# The default dataset, ETTh1, is the demo model shipped in models/forecast/.
#
#   recipes/forecast.sh [--dataset NAME] [--quick] [--ship] [--out DIR] [--threads N] [--data DIR]
#
#   1. train  modrwkv train --csv DATA/NAME.csv (all channels, channel-independent windows), patches of 16
#             steps (45 RWKV tokens), skip path initialised from the closed-form ridge fit, STEPS steps of
#             BATCH windows, cosine schedule; DIR/forecaster.safetensors, DIR/train.jsonl, DIR/resume.safetensors
#             (an interrupted run continues with the same command plus RESUME=1)
#   2. eval   the test split of NAME (every window, stride 1; MAX_WINDOWS per channel to subsample), next to
#             the last-value, seasonal-naive and linear baselines on the same windows: DIR/results.md
#   3. demo   recipes/gen_series.sh --out DIR/series.csv (a synthetic hourly series with trend, daily and weekly
#             seasons and noise), the forecast of its last 96 (ILI: 24) rows with the truth and a plot
#             (DIR/series.png), and the last-value forecast's error on the same rows: appended to DIR/results.md
#   4. --ship copies the model to models/forecast/forecaster.safetensors (ETTh1; the model card is
#             models/forecast/README.md) or models/forecast/NAME.safetensors (the other datasets)
#
# --dataset NAME: ETTh1 (default), ETTh2, ETTm1, ETTm2, weather, exchange_rate or national_illness (DATA/NAME.csv);
# or ett-weather: one model trained on the training splits of ETTh1, ETTh2, ETTm1, ETTm2 and weather together
# (windows drawn uniformly from all five; the skip path starts from the window-weighted mean of their ridge fits),
# evaluated on each of their test splits.
# --quick: a smoke run (seconds: lookback 96 → 24, a 1-layer width-16 model, 3 steps, a few eval windows) that
# writes under DIR only (default build/forecast/quick), never models/. --out DIR: working directory (default
# build/forecast/run for ETTh1, build/forecast/NAME otherwise; replaced). --threads N: threads (default 1).
# --data DIR: the folder with the CSV files (default ../shared/data/timeseries). Environment: MODRWKV (binary,
# default build/modrwkv), STEPS, BATCH (16), LR, SKIP_LR (the skip path's lr as a multiple of LR), WARMUP, PATCH
# (16), SCALE (4), SEED (42), TIME_LIMIT (seconds, default none), MAX_WINDOWS (0 = all), RESUME (1 = continue
# DIR's run). Defaults: STEPS 600, LR 5e-4, SKIP_LR 0 (the ridge-fitted skip path stays fixed; only the WaveNet →
# RWKV-7 branch learns), WARMUP 20 (docs/FORECAST.md, "Results"). Long runs: OMP_WAIT_POLICY=passive nice -n 5 ….
set -euo pipefail
cd "$(dirname "$0")/.."

main() {  # (the whole script is one function: bash reads it before running, so editing the file is safe)

quick=0; ship=0; out=""; threads=1; data=../shared/data/timeseries; ds=ETTh1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --ship) ship=1; shift ;;
    --out|--threads|--data|--dataset) [ $# -ge 2 ] || { echo "forecast.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in --out) out=$2 ;; --threads) threads=$2 ;; --data) data=$2 ;; --dataset) ds=$2 ;; esac; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "forecast.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
M=${MODRWKV:-build/modrwkv}
[ -x "$M" ] || { echo "forecast.sh: $M not found (run make first)" >&2; exit 2; }
case "$ds" in
  ETTh1|ETTh2|ETTm1|ETTm2|weather|exchange_rate|national_illness) names=("$ds") ;;
  ett-weather) names=(ETTh1 ETTh2 ETTm1 ETTm2 weather) ;;
  *) echo "forecast.sh: --dataset must be ETTh1, ETTh2, ETTm1, ETTm2, weather, exchange_rate, national_illness or" \
          "ett-weather (got '$ds')" >&2
     exit 2 ;;
esac
csvs=(); train_csv=()
for n in "${names[@]}"; do
  [ -f "$data/$n.csv" ] || { echo "forecast.sh: $data/$n.csv not found (--data DIR)" >&2; exit 2; }
  csvs+=("$data/$n.csv"); train_csv+=(--csv "$data/$n.csv")
done
if [ "$ds" = ETTh1 ]; then run_dir=build/forecast/run; ship_to=models/forecast/forecaster.safetensors
else run_dir=build/forecast/$ds; ship_to=models/forecast/$ds.safetensors; fi
d_steps=600; d_lr=5e-4; d_skip_lr=0; d_warmup=20
if [ $quick = 1 ]; then
  [ $ship = 0 ] || { echo "forecast.sh: --quick and --ship exclude each other" >&2; exit 2; }
  out=${out:-build/forecast/quick}
  model=(--lookback 96 --horizon 24 --init 1,16 --enc-channels 4 --patch 8 --adapter-scale 4)
  steps=3; batch=2; warmup=1; maxw=3; H=24
else
  out=${out:-$run_dir}
  model=(--init 2,64 --enc-channels 32 --patch "${PATCH:-16}" --adapter-scale "${SCALE:-4}")
  steps=${STEPS:-$d_steps}; batch=${BATCH:-16}; warmup=${WARMUP:-$d_warmup}; maxw=${MAX_WINDOWS:-0}; H=96
  [ "$ds" = national_illness ] && H=24  # ILI: lookback 104 -> horizon 24 (the trainer's dataset default)
fi
resume=()
if [ "${RESUME:-0}" = 1 ]; then resume=(--resume); else rm -rf "$out"; fi
mkdir -p "$out"
extra=()
[ -n "${TIME_LIMIT:-}" ] && extra=(--time-limit "$TIME_LIMIT")
[ $quick = 1 ] || extra+=(--skip-lr "${SKIP_LR:-$d_skip_lr}")

echo "== 1. train ($out)"
"$M" train "${train_csv[@]}" "${model[@]}" --skip on --steps "$steps" --warmup "$warmup" --lr "${LR:-$d_lr}" \
  -b "$batch" --seed "${SEED:-42}" --save-every 50 "${extra[@]}" "${resume[@]}" -t "$threads" -q --out "$out"

echo "== 2. eval ($ds test split)"
{
  echo "# ModRWKV forecaster: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "$ds test split (MSE/MAE in the dataset-normalised space; max windows per channel: $maxw, 0 = all):"
  echo
  for c in "${csvs[@]}"; do
    "$M" forecast -m "$out/forecaster.safetensors" --eval "$c" --max-windows "$maxw" -t "$threads"
    echo
  done
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
  cp "$out/forecaster.safetensors" "$ship_to.tmp"
  mv "$ship_to.tmp" "$ship_to"
  echo "== 4. shipped $ship_to ($(wc -c < "$ship_to") bytes)"
fi
}
main "$@"
