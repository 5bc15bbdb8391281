#!/usr/bin/env bash
# End-to-end test of the ModRWKV forecaster's command line (src/tools/cmd_train_forecast.c, `forecast -m`):
# trains a tiny forecaster (RWKV-7 L1 C32, small WaveNet) a few dozen steps on a synthetic CSV of noisy sines
# and checks that the loss falls (JSONL log in the trainer's format), that the checkpoint is a safetensors file
# with the forecaster's metadata, that `modrwkv forecast -m` writes a finite forecast (CSV and plot) and beats
# the last-value baseline on the training series, that `forecast -m --eval` prints the table, and clear errors
# for bad input; also a start from an RWKV-7 file (-m) with prompt tokens, --resume (bit-identical to an
# uninterrupted run, with --accum), patch/skip options, the ridge-initialised skip path, a frozen Timer encoder
# (tiny random weights, tests/fixtures/timer) end to end, recipes/gen_series.sh and recipes/forecast.sh --quick. Run by tests/run.sh with the build directory as $1; takes a few seconds.
. "$(dirname "$0")/lib/cli.sh"
# `modrwkv train --csv ...` dispatches to the forecaster trainer (also reachable as `modrwkv train-forecast`)
TRAIN=(train)

# two channels of noisy sines with different periods, 600 rows (custom dataset: 70/10/20 split)
awk 'BEGIN{srand(3); print "date,a,b"; for(i=0;i<600;i++) printf "d%d,%.5f,%.5f\n", i, 5+2*sin(i*2*3.14159/12)+0.1*(rand()-0.5), -1+sin(i*2*3.14159/8)+0.1*(rand()-0.5)}' > "$T/sines.csv"

OPTS=(--csv "$T/sines.csv" --lookback 24 --horizon 6 --init 1,32 --enc-channels 8 --adapter-scale 2 --steps 60
      --warmup 5 --lr 3e-3 -b 8 --seed 1 -t 1 -q --patch 4 --skip-init zero)
expect_ok "train" "$M" "${TRAIN[@]}" "${OPTS[@]}" --out "$T/run" --save-every 25 --eval-windows 10
cp "$T/out" "$T/out.train"
[ -s "$T/run/forecaster.safetensors" ] && ok || bad "no checkpoint"
[ "$(wc -l < "$T/run/train.jsonl")" -eq 60 ] && ok || bad "train.jsonl has $(wc -l < "$T/run/train.jsonl") lines"
head -1 "$T/run/train.jsonl" | grep -qE '^\{"step":1,"epoch":[0-9.]+,"loss":[0-9.]+,"lr":[0-9.e-]+,"grad_norm":[0-9.]+,"tokens":[0-9]+,"tokens_per_s":[0-9.]+,"elapsed_s":[0-9.]+\}$' \
  && ok || bad "log line format: $(head -1 "$T/run/train.jsonl")"
# the mean loss of the last 10 steps is well below that of the first 10
awk -F'"loss":' '{split($2,a,","); l[NR]=a[1]} END{for(i=1;i<=10;i++){f+=l[i]; e+=l[NR-10+i]} if (e < 0.5*f) exit 0; printf "first %.4f last %.4f\n", f/10, e/10 > "/dev/stderr"; exit 1}' \
  "$T/run/train.jsonl" && ok || bad "the loss did not fall"
expect_ok "plot the log" "$M" plot "$T/run/train.jsonl" -o "$T/loss.svg"
grep -q "validation: MSE" "$T/out.train" && ok || bad "no validation line: $(cat "$T/out.train")"
grep -aq "modrwkv.forecaster" "$T/run/forecaster.safetensors" && ok || bad "no forecaster metadata"

# forecast with the model: at a known row (truth known), CSV + plot
expect_ok "forecast -m" "$M" forecast -m "$T/run/forecaster.safetensors" --csv "$T/sines.csv" --column a --at 500 \
  --out "$T/f.csv" --plot "$T/f.svg"
[ "$(wc -l < "$T/f.csv")" -eq 7 ] && ok || bad "forecast CSV has $(wc -l < "$T/f.csv") lines"
awk -F, 'NR>1 { if ($2 != $2+0 || $2 == "nan" || $2 == "inf") bad=1 } END{exit bad}' "$T/f.csv" && ok || bad "non-numeric forecast"
[ -s "$T/f.svg" ] && ok || bad "no plot"
mse_model=$(sed -n 's/.*MSE \([0-9.e+-]*\),.*/\1/p' "$T/err")
expect_ok "last value" "$M" forecast --baseline last --csv "$T/sines.csv" --column a --lookback 24 --horizon 6 --at 500
mse_last=$(sed -n 's/.*MSE \([0-9.e+-]*\),.*/\1/p' "$T/err")
awk -v m="$mse_model" -v l="$mse_last" 'BEGIN{exit !(m < l)}' && ok || bad "model MSE $mse_model not below last value $mse_last"
expect_ok "forecast -m to stdout" "$M" forecast -m "$T/run/forecaster.safetensors" --csv "$T/sines.csv" --column b
[ "$(wc -l < "$T/out")" -eq 7 ] && ok || bad "stdout has $(wc -l < "$T/out") lines"
expect_ok "forecast -m --eval" "$M" forecast -m "$T/run/forecaster.safetensors" --eval "$T/sines.csv" --max-windows 20
grep -q "^| custom | 24 → 6 | 2 |" "$T/out" && ok || bad "eval table: $(cat "$T/out")"
expect_ok "eval --task forecast" "$M" eval --task forecast -m "$T/run/forecaster.safetensors" --data "$T/sines.csv" --max 20
grep -q "^| custom | 24 → 6 | 2 |" "$T/out" && ok || bad "eval --task forecast table: $(cat "$T/out")"
expect_fail "eval --task forecast without data" "needs -m FORECASTER and --data" "$M" eval --task forecast -m "$T/run/forecaster.safetensors"

# from an RWKV-7 file (-m) with prompt tokens: trains, saves, forecasts
expect_ok "init" "$M" init -o "$T/lm.safetensors" --layers 1 --embd 64 --head-size 32 --vocab-size 300
expect_ok "train -m" "$M" "${TRAIN[@]}" --csv "$T/sines.csv" -m "$T/lm.safetensors" --lookback 24 --horizon 6 \
  --enc-channels 8 --prompt-tokens 3 --steps 10 -b 4 -t 1 -q --out "$T/run_m"
expect_ok "forecast -m (from -m)" "$M" forecast -m "$T/run_m/forecaster.safetensors" --csv "$T/sines.csv" --column a
[ "$(wc -l < "$T/out")" -eq 7 ] && ok || bad "stdout has $(wc -l < "$T/out") lines"
expect_fail "-m and --init" "either -m or --init" "$M" "${TRAIN[@]}" --csv "$T/sines.csv" -m "$T/lm.safetensors" --init 1,32 --out "$T/r7"

# a width below the batch (the vocabulary is raised for the hidden-state path; eval batches are capped)
expect_ok "narrow" "$M" "${TRAIN[@]}" --csv "$T/sines.csv" --lookback 24 --horizon 6 --init 1,8 --enc-channels 4 \
  --steps 3 -b 20 -t 1 -q --out "$T/run_n"
expect_ok "narrow eval" "$M" forecast -m "$T/run_n/forecaster.safetensors" --eval "$T/sines.csv" --max-windows 5

# --resume: 6 steps, stop, resume to 12 == 12 steps uninterrupted, bit for bit (weights, Adam moments, sampler)
ROPTS=(--csv "$T/sines.csv" --lookback 24 --horizon 6 --init 1,32 --enc-channels 8 --patch 4 --steps 12 --warmup 2
       -b 4 --accum 2 --seed 3 -t 1 -q)
expect_ok "uninterrupted" "$M" "${TRAIN[@]}" "${ROPTS[@]}" --out "$T/ra"
expect_ok "first half" "$M" "${TRAIN[@]}" "${ROPTS[@]}" --out "$T/rb" --stop-after 6
[ "$(wc -l < "$T/rb/train.jsonl")" -eq 6 ] && [ -s "$T/rb/resume.safetensors" ] && ok || bad "stop-after 6"
expect_ok "resume" "$M" "${TRAIN[@]}" "${ROPTS[@]}" --out "$T/rb" --resume
cmp -s "$T/ra/forecaster.safetensors" "$T/rb/forecaster.safetensors" && ok || bad "resumed model differs"
# the resume files' tensors (weights, moments), after their JSON headers (which hold the elapsed time)
st_data() { local n; n=$(od -An -t u8 -N 8 "$1" | tr -d ' '); tail -c +$((9 + n)) "$1"; }
cmp -s <(st_data "$T/ra/resume.safetensors") <(st_data "$T/rb/resume.safetensors") && ok || bad "resumed optimizer state differs"
cmp -s <(st_data "$T/ra/resume_skip.safetensors") <(st_data "$T/rb/resume_skip.safetensors") && ok || bad "resumed skip optimizer differs"
diff <(sed 's/,"tokens_per_s.*//' "$T/ra/train.jsonl") <(sed 's/,"tokens_per_s.*//' "$T/rb/train.jsonl") > /dev/null \
  && ok || bad "resumed log differs"
expect_fail "resume with other options" "options differ" "$M" "${TRAIN[@]}" "${ROPTS[@]}" --lr 5e-3 --out "$T/rb" --resume
expect_fail "resume without a file" "resume" "$M" "${TRAIN[@]}" "${ROPTS[@]}" --out "$T/rc" --resume
# --balance-files: a second, 4x longer file; each window's file drawn with equal probability (a different sample
# stream, so a different model); the option is part of what a resumed run must repeat
awk 'BEGIN{srand(5); print "date,c"; for(i=0;i<2400;i++) printf "d%d,%.5f\n", i, 3+cos(i*2*3.14159/24)+0.1*(rand()-0.5)}' > "$T/long.csv"
expect_ok "two files" "$M" "${TRAIN[@]}" "${ROPTS[@]}" --csv "$T/long.csv" --out "$T/rbal0"
expect_ok "two files, --balance-files" "$M" "${TRAIN[@]}" "${ROPTS[@]}" --csv "$T/long.csv" --balance-files --out "$T/rbal1" --stop-after 6
expect_ok "--balance-files resumed" "$M" "${TRAIN[@]}" "${ROPTS[@]}" --csv "$T/long.csv" --balance-files --out "$T/rbal1" --resume
cmp -s "$T/rbal0/forecaster.safetensors" "$T/rbal1/forecaster.safetensors" && bad "--balance-files changed nothing" || ok
expect_fail "resume without --balance-files" "options differ" "$M" "${TRAIN[@]}" "${ROPTS[@]}" --csv "$T/long.csv" --out "$T/rbal1" --resume
# --target-interval: the skip path's ridge start only from the files sampled at the (nearest) interval, read from
# their date columns; the RWKV-7 branch still trains on both files
awk 'BEGIN{srand(7); print "date,h"; for(i=0;i<600;i++) printf "2020-01-%02d %02d:00:00,%.5f\n", 1+int(i/24), i%24, 2+sin(i*2*3.14159/24)+0.1*(rand()-0.5)}' > "$T/hourly.csv"
awk 'BEGIN{srand(8); print "date,q"; for(i=0;i<600;i++) printf "2021-03-%02d %02d:%02d,%.5f\n", 1+int(i/96), int(i/4)%24, 15*(i%4), 1+cos(i*2*3.14159/96)+0.1*(rand()-0.5)}' > "$T/quarter.csv"
TI=("${TRAIN[@]}" --csv "$T/hourly.csv" --csv "$T/quarter.csv" --lookback 24 --horizon 6 --init 1,32 --enc-channels 8 --steps 2 -b 2 -t 1)
expect_ok "--target-interval 15min" "$M" "${TI[@]}" --target-interval 15min --out "$T/ti1" --stop-after 1
grep -q "ridge fit of $T/quarter.csv" "$T/err" && ! grep -q "ridge fit of $T/hourly.csv" "$T/err" && ok \
  || bad "--target-interval 15min fitted: $(grep ridge "$T/err")"
grep -aq 'target_interval_s[^0-9]*900,' "$T/ti1/resume.safetensors" && ok || bad "target interval not in the options"
expect_fail "resume with another --target-interval" "options differ" "$M" "${TI[@]}" --target-interval 1h --out "$T/ti1" --resume
expect_ok "--target-interval 2h (nearest: hourly)" "$M" "${TI[@]}" --target-interval 2h --out "$T/ti2"
grep -q "ridge fit of $T/hourly.csv" "$T/err" && ! grep -q "ridge fit of $T/quarter.csv" "$T/err" && ok \
  || bad "--target-interval 2h fitted: $(grep ridge "$T/err")"
expect_ok "without --target-interval: both" "$M" "${TI[@]}" --out "$T/ti3"
[ "$(grep -c "ridge fit of" "$T/err")" -eq 2 ] && ok || bad "no --target-interval fitted: $(grep ridge "$T/err")"
expect_fail "--target-interval not a duration" "expects a duration" "$M" "${TI[@]}" --target-interval 15parsecs --out "$T/ti4"
expect_fail "--target-interval negative" "expects a duration" "$M" "${TI[@]}" --target-interval -1h --out "$T/ti4"
expect_fail "--target-interval, no dates" "no --csv file has a date column" "$M" "${TRAIN[@]}" --csv "$T/sines.csv" \
  --lookback 24 --horizon 6 --init 1,32 --steps 1 -t 1 -q --target-interval 1h --out "$T/ti5"
[ ! -e "$T/ti5/forecaster.safetensors" ] && ok || bad "a model was written after the --target-interval error"
# --device cuda: a build without CUDA refuses it clearly; a CUDA build trains (a GPU there) or names the missing device
# (the GPU path itself: tests/cuda/train_forecast_gpu.sh)
if "$M" "${TRAIN[@]}" "${OPTS[@]}" --init 1,64 --steps 2 --device cuda --out "$T/dv" > "$T/out" 2> "$T/err"; then ok
elif grep -q "built without CUDA (build with make CUDA=1)\|no CUDA device" "$T/err"; then ok
else bad "--device cuda: unexpected failure: $(head -c 400 "$T/err")"; fi
expect_fail "--device bogus" "must be cpu or cuda" "$M" "${TRAIN[@]}" --csv "$T/sines.csv" --device tpu --out "$T/dv"
expect_ok "--device cpu" "$M" "${TRAIN[@]}" "${OPTS[@]}" --steps 2 --device cpu --out "$T/dv"
# every step a token, no skip path (the original configuration); the ridge-initialised skip path alone
expect_ok "patch 1, no skip" "$M" "${TRAIN[@]}" "${OPTS[@]}" --patch 1 --skip off --steps 3 --out "$T/rp"
grep -aq "patch=1,skip=0" "$T/rp/forecaster.safetensors" && ok || bad "patch/skip metadata"
expect_ok "ridge skip" "$M" "${TRAIN[@]}" --csv "$T/sines.csv" --lookback 24 --horizon 6 --init 1,32 --enc-channels 8 \
  --steps 1 --lr 0 -b 2 -t 1 --out "$T/rr"
grep -q "skip path from the ridge fit" "$T/err" && ok || bad "no ridge message: $(cat "$T/err")"
expect_ok "ridge skip eval" "$M" forecast -m "$T/rr/forecaster.safetensors" --eval "$T/sines.csv" --max-windows 20
awk -F'|' '/^\| custom/ { gsub(/[* ]/, "", $6); gsub(/ /, "", $12); exit !($6 + 0 < 1.05 * $12) }' "$T/out" \
  && ok || bad "ridge skip path alone is not at the linear baseline: $(cat "$T/out")"

# a frozen Timer encoder (tiny random weights in the Hugging Face layout, patches of 8): train, forecast, eval
expect_ok "train --encoder timer" "$M" "${TRAIN[@]}" --csv "$T/sines.csv" --lookback 24 --horizon 6 --init 1,32 \
  --encoder timer tests/fixtures/timer --steps 40 --warmup 2 --lr 3e-3 -b 4 -t 1 -q --out "$T/rt"
grep -aq "timer=1" "$T/rt/forecaster.safetensors" && grep -aq "modrwkv.forecaster.timer" "$T/rt/forecaster.safetensors" \
  && ok || bad "no Timer metadata"
expect_ok "forecast -m (Timer)" "$M" forecast -m "$T/rt/forecaster.safetensors" --csv "$T/sines.csv" --column a --at 500 \
  --out "$T/ft.csv"
[ "$(wc -l < "$T/ft.csv")" -eq 7 ] && ok || bad "Timer forecast CSV has $(wc -l < "$T/ft.csv") lines"
expect_ok "forecast -m --eval (Timer)" "$M" forecast -m "$T/rt/forecaster.safetensors" --eval "$T/sines.csv" --max-windows 10
expect_fail "Timer with --patch" "own patches" "$M" "${TRAIN[@]}" --csv "$T/sines.csv" --lookback 24 --horizon 6 \
  --encoder timer tests/fixtures/timer --patch 4 --out "$T/rt2"
expect_fail "Timer without a directory" "Timer directory" "$M" "${TRAIN[@]}" --csv "$T/sines.csv" --encoder timer
expect_fail "Timer directory missing" "nonexistent" "$M" "${TRAIN[@]}" --csv "$T/sines.csv" --lookback 24 --horizon 6 \
  --encoder timer /nonexistent/timer --out "$T/rt3"

# recipes/gen_series.sh: deterministic, 2000 rows + header, numeric; bad options
expect_ok "gen_series" recipes/gen_series.sh --out "$T/s1.csv"
expect_ok "gen_series again" recipes/gen_series.sh --out "$T/s2.csv"
cmp -s "$T/s1.csv" "$T/s2.csv" && ok || bad "gen_series is not deterministic"
[ "$(wc -l < "$T/s1.csv")" -eq 2001 ] && [ "$(head -1 "$T/s1.csv")" = "date,value" ] && ok || bad "gen_series shape"
awk -F, 'NR>1 && ($2 != $2+0) {exit 1}' "$T/s1.csv" && ok || bad "gen_series non-numeric value"
expect_fail "gen_series without --out" "--out" recipes/gen_series.sh
expect_fail "gen_series bad rows" "rows" recipes/gen_series.sh --out "$T/s3.csv" --rows x
# recipes/forecast.sh --quick (needs ../shared/data/timeseries; skipped without it)
TS=${MRW_SHARED:-../shared}/data/timeseries
if [ -r "$TS/ETTh1.csv" ]; then
  expect_ok "recipes/forecast.sh --quick" env MODRWKV="$M" recipes/forecast.sh --quick --out "$T/rq" --data "$TS"
  for f in forecaster.safetensors train.jsonl results.md series.csv series_forecast.csv series.png; do
    [ -s "$T/rq/$f" ] && ok || bad "recipe: missing $f"
  done
  grep -q "^| ETTh1 | 96 → 24 | 7 |" "$T/rq/results.md" && grep -q "ModRWKV forecaster: MSE" "$T/rq/results.md" \
    && ok || bad "recipe results: $(cat "$T/rq/results.md")"
  expect_fail "recipe --quick --ship" "exclude" env MODRWKV="$M" recipes/forecast.sh --quick --ship --out "$T/rq2" --data "$TS"
  # --dataset: another file (ILI: its own test split, the demo's horizon 24), a bad name, a missing file
  expect_ok "recipes/forecast.sh --quick --dataset national_illness" env MODRWKV="$M" recipes/forecast.sh --quick \
    --dataset national_illness --out "$T/rq3" --data "$TS"
  grep -q "^| national_illness | 96 → 24 | 7 |" "$T/rq3/results.md" && grep -q "last 24 rows" "$T/rq3/results.md" \
    && ok || bad "recipe --dataset results: $(cat "$T/rq3/results.md")"
  expect_fail "recipe bad --dataset" "must be ETTh1" env MODRWKV="$M" recipes/forecast.sh --quick --dataset ETTh3 \
    --out "$T/rq4" --data "$TS"
  expect_fail "recipe --dataset, no such file" "not found" env MODRWKV="$M" recipes/forecast.sh --quick --dataset ETTm2 \
    --out "$T/rq5" --data "$T"
else
  echo "cli_train_forecast.sh: recipe smoke test skipped (no $TS/ETTh1.csv)" >&2
fi

# bad input
expect_fail "patch longer than the lookback" "patch" "$M" "${TRAIN[@]}" "${OPTS[@]}" --patch 30 --out "$T/r8"
expect_fail "bad --skip" "on or off" "$M" "${TRAIN[@]}" "${OPTS[@]}" --skip maybe --out "$T/r9"
expect_fail "horizon mismatch" "forecasts 24 -> 6" "$M" forecast -m "$T/run/forecaster.safetensors" --csv "$T/sines.csv" --column a --horizon 96
expect_fail "not a weight file" "not a recognised weight file" "$M" forecast -m "$T/sines.csv" --csv "$T/sines.csv" --column a
expect_fail "not a forecaster" "not a forecaster" "$M" forecast -m tests/fixtures/wavenet/model.safetensors --csv "$T/sines.csv" --column a
expect_fail "missing column" "column 'zz'" "$M" "${TRAIN[@]}" "${OPTS[@]}" --columns a,zz --out "$T/r2"
expect_fail "too short" "lookback|window" "$M" "${TRAIN[@]}" "${OPTS[@]}" --lookback 500 --out "$T/r3"
printf 'a\n1\n2\nx\n' > "$T/badcell.csv"
expect_fail "bad cell" "badcell.csv:4" "$M" "${TRAIN[@]}" --csv "$T/badcell.csv" --out "$T/r4" --lookback 2 --horizon 1
expect_fail "no csv" "--csv" "$M" train-forecast --out "$T/r5"
expect_fail "bad init" "--init" "$M" "${TRAIN[@]}" --csv "$T/sines.csv" --init 2 --out "$T/r6"
expect_fail "short window" "history" "$M" forecast -m "$T/run/forecaster.safetensors" --csv "$T/sines.csv" --column a --at 10

finish cli_train_forecast.sh
