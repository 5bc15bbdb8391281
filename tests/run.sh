#!/usr/bin/env bash
# Runs every test program of a build directory (default: build) from the repository root.
set -u
build=${1:-build}
cd "$(dirname "$0")/.."
fail=0; n=0
for t in "$build"/tests/test_*; do
  [ -x "$t" ] || continue
  n=$((n+1))
  start=$(date +%s%N)
  if MRW_BUILD="$build" "$t" > "$t.log" 2>&1; then
    printf 'PASS  %-40s %6.1fs\n' "$(basename "$t")" "$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN{print (b-a)/1e9}')"
  else
    printf 'FAIL  %-40s (log: %s)\n' "$(basename "$t")" "$t.log"; tail -n 30 "$t.log"; fail=$((fail+1))
  fi
done
for c in tests/cli_*.sh; do
  [ -x "$c" ] || continue
  n=$((n+1))
  log="$build/tests/$(basename "$c" .sh).log"
  if MRW_BUILD="$build" "$c" "$build" > "$log" 2>&1; then
    printf 'PASS  %-40s\n' "$(basename "$c")"
  else
    printf 'FAIL  %-40s (log: %s)\n' "$(basename "$c")" "$log"; tail -n 30 "$log"; fail=$((fail+1))
  fi
done
for r in "$build"/fuzz-replay/fuzz_*; do
  [ -x "$r" ] || continue
  n=$((n+1))
  name=$(basename "$r"); corpus=fuzz/corpus/${name#fuzz_}
  if "$r" "$corpus" > "$r.log" 2>&1; then
    printf 'PASS  %-40s (%s inputs)\n' "$name corpus replay" "$(ls "$corpus" 2>/dev/null | wc -l)"
  else
    printf 'FAIL  %-40s (log: %s)\n' "$name corpus replay" "$r.log"; tail -n 30 "$r.log"; fail=$((fail+1))
  fi
done
echo "$((n-fail)) of $n test programs passed"
[ $fail -eq 0 ]
