#!/usr/bin/env bash
# End-to-end test of the ModRWKV forecaster's command line (src/tools/cmd_train_forecast.c, `forecast -m`):
# trains a tiny forecaster (RWKV-7 L1 C32, small WaveNet) a few dozen steps on a synthetic CSV of noisy sines
# and checks that the loss falls (JSONL log in the trainer's format), that the checkpoint is a safetensors file
# with the forecaster's metadata, that `modrwkv forecast -m` writes a finite forecast (CSV and plot) and beats
# the last-value baseline on the training series, that `forecast -m --eval` prints the table, and clear errors
# for bad input; also a start from an RWKV-7 file (-m) with prompt tokens. Run by tests/run.sh with the build directory as $1; takes a few seconds.
. "$(dirname "$0")/lib/cli.sh"
# `modrwkv train --csv ...` dispatches to the forecaster trainer (also reachable as `modrwkv train-forecast`)
TRAIN=(train)

# two channels of noisy sines with different periods, 600 rows (custom dataset: 70/10/20 split)
awk 'BEGIN{srand(3); print "date,a,b"; for(i=0;i<600;i++) printf "d%d,%.5f,%.5f\n", i, 5+2*sin(i*2*3.14159/12)+0.1*(rand()-0.5), -1+sin(i*2*3.14159/8)+0.1*(rand()-0.5)}' > "$T/sines.csv"

OPTS=(--csv "$T/sines.csv" --lookback 24 --horizon 6 --init 1,32 --enc-channels 8 --adapter-scale 2 --steps 60
      --warmup 5 --lr 3e-3 -b 8 --seed 1 -t 1 -q)
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

# bad input
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
