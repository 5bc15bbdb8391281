#!/usr/bin/env bash
# A synthetic hourly series for trying the forecaster (models/forecast/): a level with a slow linear trend, a
# daily (24 h) and a weekly (168 h) season and Gaussian noise, written as CSV with the columns date,value.
#
#   recipes/gen_series.sh --out FILE.csv [--rows N] [--seed S] [--noise SIGMA]
#
#   value[t] = 20 + 0.004 t + 4 sin(2π t/24) + 1.5 sin(2π t/24 · 2 + 1) + 2 sin(2π t/168) + noise
#   (t = 0 … N−1 hours from 2024-01-01 00:00; noise ~ N(0, SIGMA²), default SIGMA 0.6; default N 2000, seed 7)
#
# Deterministic for a given seed (awk's srand/rand, Box-Muller). The last 96 rows are the truth a forecast from
# `--at N-96` is scored against, e.g.
#   recipes/gen_series.sh --out build/series.csv
#   build/modrwkv forecast -m models/forecast/forecaster.safetensors --csv build/series.csv --column value \
#       --horizon 96 --at 1904 --plot build/series.png
set -euo pipefail
out=""; rows=2000; seed=7; noise=0.6
while [ $# -gt 0 ]; do
  case "$1" in
    --out|--rows|--seed|--noise) [ $# -ge 2 ] || { echo "gen_series.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in --out) out=$2 ;; --rows) rows=$2 ;; --seed) seed=$2 ;; --noise) noise=$2 ;; esac; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gen_series.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "gen_series.sh: give --out FILE.csv" >&2; exit 2; }
[[ "$rows" =~ ^[0-9]+$ ]] && [ "$rows" -ge 2 ] || { echo "gen_series.sh: --rows must be an integer >= 2" >&2; exit 2; }
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "gen_series.sh: --seed must be a non-negative integer" >&2; exit 2; }
[[ "$noise" =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "gen_series.sh: --noise must be a non-negative number" >&2; exit 2; }
LC_ALL=C awk -v n="$rows" -v seed="$seed" -v sd="$noise" 'BEGIN {
  srand(seed); pi = 3.14159265358979; have = 0
  print "date,value"
  for (t = 0; t < n; t++) {
    if (!have) { do u1 = rand(); while (u1 <= 1e-12); u2 = rand()
                 r = sqrt(-2 * log(u1)); z1 = r * cos(2 * pi * u2); z2 = r * sin(2 * pi * u2); z = z1; have = 1 }
    else { z = z2; have = 0 }
    v = 20 + 0.004 * t + 4 * sin(2 * pi * t / 24) + 1.5 * sin(4 * pi * t / 24 + 1) + 2 * sin(2 * pi * t / 168) + sd * z
    d = int(t / 24); h = t % 24
    # calendar date from day number d after 2024-01-01 (a leap year; enough for ~27 years of rows)
    y = 2024; dd = d
    while (1) { ylen = (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 366 : 365; if (dd < ylen) break; dd -= ylen; y++ }
    split("31 28 31 30 31 30 31 31 30 31 30 31", ml, " "); if (ylen == 366) ml[2] = 29
    m = 1; while (dd >= ml[m]) { dd -= ml[m]; m++ }
    printf "%04d-%02d-%02d %02d:00:00,%.4f\n", y, m, dd + 1, h, v
  }
}' > "$out"
