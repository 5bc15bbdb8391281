#!/usr/bin/env bash
# End-to-end tests of `modrwkv forecast` (baselines; src/tools/cmd_forecast.c) on CSV series this script writes:
# exact seasonal-naive forecasts of a periodic series checked against the truth, the CSV and plot outputs, the
# --eval-baselines table, and clear errors for bad input (missing column, non-numeric cell, a series shorter
# than the lookback, -m with a file that is not a forecaster; the trained forecaster is tested by
# tests/cli_train_forecast.sh). Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"

# a periodic series (period 24) and a noisy trended one, 1000 rows, with a date column
awk 'BEGIN{print "date,load,OT"; for(i=0;i<1000;i++){v=(i%24)*0.5+((i%24)>12?3:0); printf "d%d,%.6f,%.6f\n", i, 10+0.01*i+sin(i*0.7), v}}' > "$T/series.csv"

expect_ok "seasonal at a known row" "$M" forecast --csv "$T/series.csv" --column OT --baseline seasonal --period 24 \
  --lookback 96 --horizon 24 --at 800 --out "$T/f.csv"
[ "$(wc -l < "$T/f.csv")" -eq 25 ] && ok || bad "forecast CSV has $(wc -l < "$T/f.csv") lines, expected 25"
head -1 "$T/f.csv" | grep -q '^row,forecast,truth$' && ok || bad "CSV header: $(head -1 "$T/f.csv")"
awk -F, 'NR>1 {d=$2-$3; if(d<0)d=-d; if(d>1e-5) bad=1; if($1!=799+NR-1) bad=1} END{exit bad}' "$T/f.csv" && ok \
  || bad "seasonal naive of a periodic series is not exact"
grep -q "MSE 0," "$T/err" && ok || bad "MSE line: $(cat "$T/err")"

expect_ok "last value to stdout" "$M" forecast --csv "$T/series.csv" --column load --baseline last --lookback 50 --horizon 5
[ "$(wc -l < "$T/out")" -eq 6 ] && ok || bad "stdout has $(wc -l < "$T/out") lines"
last=$(tail -1 "$T/series.csv" | cut -d, -f2)
awk -F, -v l="$last" 'NR>1 {d=$2-l; if(d<0)d=-d; if(d>1e-5) bad=1; if($1!=1000+NR-2) bad=1} END{exit bad}' "$T/out" && ok \
  || bad "last value forecast: $(head -3 "$T/out")"

expect_ok "linear with plots" "$M" forecast --csv "$T/series.csv" --column load --lookback 96 --horizon 24 --at 900 \
  --plot "$T/p.svg" --out "$T/l.csv"
grep -q "<svg" "$T/p.svg" && ok || bad "no SVG written"
awk -F, 'NR>1 {d=$2-$3; s+=d*d; n++} END{exit !(n==24 && s/n < 1.0)}' "$T/l.csv" && ok || bad "linear forecast far off: $(head -3 "$T/l.csv")"
expect_ok "linear PNG plot" "$M" forecast --csv "$T/series.csv" --column OT --lookback 96 --horizon 24 --plot "$T/p.png" \
  --out "$T/l2.csv"
[ "$(head -c 8 "$T/p.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] && ok || bad "PNG signature"

mkdir -p "$T/bench"
cp "$T/series.csv" "$T/bench/a.csv"
awk 'BEGIN{print "t,x,y"; for(i=0;i<600;i++) printf "%d,%.5f,%.5f\n", i, cos(i*0.3), i*0.01}' > "$T/bench/b.csv"
expect_ok "eval-baselines table" "$M" forecast --eval-baselines "$T/bench" --lookback 48 --horizon 12
[ "$(grep -c '^| custom | 48 -> 12 |' "$T/out")" -eq 2 ] && ok || bad "table rows: $(cat "$T/out")"

expect_fail "missing model" "x.pth" "$M" forecast -m "$T/x.pth" --csv "$T/series.csv"
expect_fail "--eval without -m" "needs a trained forecaster" "$M" forecast --eval "$T/series.csv"
expect_fail "missing column" "nope" "$M" forecast --csv "$T/series.csv" --column nope --baseline last
printf 'date,OT\nd0,1\nd1,2\nd2,abc\nd3,4\n' > "$T/badcell.csv"
expect_fail "non-numeric cell" "badcell.csv:4" "$M" forecast --csv "$T/badcell.csv" --baseline last --lookback 2 --horizon 1
printf 'date,OT\nd0,1\nd1,2\nd2,3\n' > "$T/short.csv"
expect_fail "shorter than lookback" "history" "$M" forecast --csv "$T/short.csv" --baseline last --lookback 10 --horizon 2
expect_fail "linear on a short series" "too short|training split" "$M" forecast --csv "$T/short.csv" --lookback 2 --horizon 1
expect_fail "unknown baseline" "last, seasonal or linear" "$M" forecast --csv "$T/series.csv" --baseline arima
expect_fail "seasonal without period" "period" "$M" forecast --csv "$T/series.csv" --baseline seasonal --lookback 48
expect_fail "bad plot extension" "png or .svg" "$M" forecast --csv "$T/series.csv" --plot x.jpg
expect_fail "unknown dataset" "unknown dataset" "$M" forecast --csv "$T/series.csv" --dataset foo

finish cli_forecast.sh
