#!/usr/bin/env bash
# Smoke test of recipes/base.sh --quick --ship (the base language model's recipe, a few seconds): the data
# preparation holds out the tail of each text (a suffix of the source file, never in a training record), the
# training run writes its log and model, the q8_0 and q4_0 GGUFs score close to the f32 model and the shipped
# one loads in `generate` and `perplexity`, the results table has a row per held-out slice and equals what
# `modrwkv eval --task perplexity` gives, --eval-only redoes it from the finished run, and the install / ship
# steps stay inside --out.
# Needs python3 and ../shared/data/text (skipped without it). Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
TEXT=${MRW_SHARED:-../shared}/data/text
if [ ! -r "$TEXT/sotu.txt" ] || ! command -v python3 > /dev/null; then
  echo "cli_recipe_base.sh: skipped (needs python3 and $TEXT)" >&2
  exit 0
fi
O=$T/base
expect_ok "recipes/base.sh --quick --ship" env MODRWKV="$M" recipes/base.sh --quick --ship --out "$O" --text "$TEXT"
cp "$T/out" "$T/log"
for f in data/train.jsonl train/model.safetensors train/train.jsonl model-q8_0.gguf model-q4_0.gguf results.md \
         installed/model.safetensors installed/heldout/sotu.txt ship/model-q4_0.gguf ship/results.md; do
  [ -s "$O/$f" ] || bad "missing $O/$f"
done
[ "$(wc -l < "$O/train/train.jsonl")" = 3 ] || bad "the quick run should log 3 steps"
[ "$(wc -l < "$O/data/train.jsonl")" = 6 ] || bad "3 steps x batch 2 = 6 training records, got $(wc -l < "$O/data/train.jsonl")"
cmp -s "$O/model-q4_0.gguf" "$O/ship/model-q4_0.gguf" && ok || bad "the shipped file differs from the quantised one"
[ ! -e "$O/ship/model-q8_0.gguf" ] && ok || bad "only the q4_0 file should be shipped"
cmp -s "$O/train/model.safetensors" "$O/installed/model.safetensors" && ok || bad "the installed file differs from the trained one"
# held out: each slice is the tail of its source and no training record comes from it
for name in sotu moby-dick songci; do
  h=$O/data/heldout_$name.txt
  n=$(wc -c < "$h")
  [ "$n" -gt 3000 ] && [ "$n" -le 4096 ] || bad "$name: held-out slice of $n bytes (want the last <= 4 KiB)"
  cmp -s "$h" <(tail -c "$n" "$TEXT/$name.txt") && ok || bad "$name: the held-out slice is not the end of the file"
  cmp -s "$h" "$O/installed/heldout/$name.txt" && ok || bad "$name: installed held-out slice differs"
done
python3 - "$O/data" <<'EOF' && ok || bad "a training record overlaps a held-out slice"
import json, sys
held = [open(f'{sys.argv[1]}/heldout_{n}.txt', encoding='utf-8').read() for n in ('sotu', 'moby-dick', 'songci')]
for line in open(f'{sys.argv[1]}/train.jsonl', encoding='utf-8'):
    t = json.loads(line)['text']
    if len(t) >= 16 and any(t in h for h in held):
        sys.exit(1)
EOF
# the results table: three slices, f32 and q8_0 close, a greedy sample
res=$O/results.md
[ "$(grep -cE '^\| (sotu|moby-dick|songci) \| 511 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$' "$res")" = 3 ] && ok \
  || bad "results table: $(cat "$res")"
awk -F' [|] ' '/^\| (sotu|moby|songci)/ {for (c = 6; c <= 7; c++) {d=$4-$c; if (d<0) d=-d; if (d > 0.1) bad=1}} END{exit bad}' "$res" && ok \
  || bad "q8_0/q4_0 bits/byte differ from f32 by more than 0.1: $(cat "$res")"
# the sotu row's f32 numbers are those of `modrwkv eval --task perplexity` on the first 512 bytes
expect_ok "eval --task perplexity" "$M" eval --task perplexity -m "$O/train/model.safetensors" --data "$O/data/heldout_sotu.txt" --max 512 --exact -t 1
want=$(awk '$1=="loss"{printf "%.4f", $2}' "$T/out")
grep -q "^| sotu | 511 | $want |" "$res" && ok || bad "sotu row is not eval's loss $want: $(grep sotu "$res")"
grep -q "Greedy sample" "$res" && ok || bad "no sample in the results"
grep -q "step     3 loss" "$T/log" && ok || bad "the log lacks the loss summary"
expect_ok "generate with the shipped q4_0 GGUF" "$M" generate -m "$O/ship/model-q4_0.gguf" -p "The " -n 8 -t 1
[ "$(wc -c < "$T/out")" -ge 1 ] && ok || bad "generate printed nothing"
expect_ok "perplexity with the installed model" "$M" perplexity -m "$O/installed/model.safetensors" -f "$O/installed/heldout/sotu.txt" --max-tokens 64 -t 1
# --eval-only: the same table again from the finished run
cp "$res" "$T/res1"
expect_ok "recipes/base.sh --quick --eval-only" env MODRWKV="$M" recipes/base.sh --quick --eval-only --out "$O" --text "$TEXT"
cmp -s "$res" "$T/res1" && ok || bad "--eval-only gave another table: $(diff "$res" "$T/res1")"
expect_fail "--eval-only without a run" "needs a finished run" env MODRWKV="$M" recipes/base.sh --quick --eval-only --out "$T/none"
# bad options
expect_fail "unknown option" "unknown option" recipes/base.sh --bogus
expect_fail "bad --threads" "positive integer" recipes/base.sh --quick --threads 0
expect_fail "missing text folder" "missing" env MODRWKV="$M" recipes/base.sh --quick --out "$T/x" --text "$T/none"

finish cli_recipe_base.sh
