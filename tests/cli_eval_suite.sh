#!/usr/bin/env bash
# End-to-end tests of `modrwkv eval --task perplexity`, of VQA accuracy per question type and of the suite
# mode `modrwkv eval --suite FILE` (the benchmark table of docs/RESULTS.md). Tiny committed fixtures only: the
# byte-level RWKV-7 tests/fixtures/rwkv7/tiny.pth and a ModRWKV bundle made from the v1 vision fixture, on
# scenes this script generates with `modrwkv gen-scenes`. Checked: the perplexity task equals
# `modrwkv perplexity --no-bos` and its bits per byte is loss / ln 2 for a byte vocabulary; --max cuts the text
# at a character boundary; the per-type rows equal a recomputation from the per-sample --out file (awk) and
# `eval --score` gives them too; the suite's table (one row per entry, per-type rows, chance levels, missing
# data naming its recipe, invalid rows, a failing row that does not stop the others, exit status), --out
# byte-identical to stdout, --only, and bad suite options. Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
MM=tests/fixtures/modrwkv
TINY=tests/fixtures/rwkv7/tiny.pth
metric() { awk -v k="$1" '$1==k {print $2}' "$2"; }
near() { awk -v a="$1" -v b="$2" -v t="${3:-1e-5}" 'BEGIN{d=a-b; if(d<0)d=-d; s=b<0?-b:b; if(s<1)s=1; exit !(a!="" && b!="" && d<=t*s)}'; }
# the cells of the suite table row whose first cell is NAME (fields separated by " | ")
row() { awk -F' [|] ' -v n="| $1" '$1==n' "$2"; }

# --- perplexity task: a plain text file, against `modrwkv perplexity --no-bos`
printf 'It was the best of times, it was the worst of times, it was the age of wisdom.\nÉté — 夏天 — summer.\n' > "$T/text.txt"
expect_ok "eval --task perplexity" "$M" eval --task perplexity -m $TINY --data "$T/text.txt" --out "$T/ppl_out.jsonl"
cp "$T/out" "$T/ppl_table"
expect_ok "perplexity --no-bos" "$M" perplexity -m $TINY -f "$T/text.txt" --no-bos
pl=$(sed -nE 's/.*loss ([0-9.]+) nats.*/\1/p' "$T/out"); pn=$(sed -nE 's/^tokens ([0-9]+),.*/\1/p' "$T/out")
near "$(metric loss "$T/ppl_table")" "$pl" 2e-6 && ok || bad "perplexity task loss $(metric loss "$T/ppl_table") != perplexity's $pl"
[ "$(metric answer_tokens "$T/ppl_table")" = "$pn" ] || bad "perplexity task scored $(metric answer_tokens "$T/ppl_table") tokens, perplexity $pn"
nb=$(( $(wc -c < "$T/text.txt") - 1 ))
[ "$(metric answer_bytes "$T/ppl_table")" = "$nb" ] || bad "answer_bytes $(metric answer_bytes "$T/ppl_table") != $nb (every byte but the first)"
near "$(metric bits_per_byte "$T/ppl_table")" "$(awk -v l="$(metric loss "$T/ppl_table")" 'BEGIN{print l/log(2)}')" 1e-5 && ok \
  || bad "bits_per_byte != loss/ln2 for a byte vocabulary"
[ "$(metric records "$T/ppl_table")" = 1 ] && [ "$(wc -l < "$T/ppl_out.jsonl")" = 1 ] && grep -q '"task":"perplexity"' "$T/ppl_out.jsonl" \
  && ok || bad "perplexity --out: $(cat "$T/ppl_out.jsonl")"
expect_ok "eval --score on a perplexity --out" "$M" eval --score "$T/ppl_out.jsonl"
[ "$(metric bits_per_byte "$T/out")" = "$(metric bits_per_byte "$T/ppl_table")" ] || bad "--score lost bits_per_byte: $(cat "$T/out")"
# --max: the first bytes, cut back to a character boundary (bytes 79-80 are "É": --max 80 keeps 79 bytes)
expect_ok "perplexity --max" "$M" eval --task perplexity -m $TINY --data "$T/text.txt" --max 80
[ "$(metric answer_tokens "$T/out")" = 78 ] || bad "--max 80 should score 78 tokens (79 bytes, the 'É' cut): $(metric answer_tokens "$T/out")"
hl=$(metric loss "$T/out")
head -c 79 "$T/text.txt" > "$T/head.txt"
expect_ok "perplexity of the head" "$M" perplexity -m $TINY -f "$T/head.txt" --no-bos
near "$hl" "$(sed -nE 's/.*loss ([0-9.]+) nats.*/\1/p' "$T/out")" 2e-6 && ok || bad "--max 80 loss $hl != perplexity of the first 79 bytes"
printf 'x\0y' > "$T/nul.txt"; : > "$T/empty.txt"
expect_fail "perplexity of a binary file" "NUL bytes" "$M" eval --task perplexity -m $TINY --data "$T/nul.txt"
expect_fail "perplexity of an empty file" "empty" "$M" eval --task perplexity -m $TINY --data "$T/empty.txt"
printf 'a' > "$T/one.txt"
expect_fail "perplexity of one byte" "fewer than 2 tokens" "$M" eval --task perplexity -m $TINY --data "$T/one.txt"
expect_fail "perplexity with --no-loss" "drop --no-loss" "$M" eval --task perplexity -m $TINY --data "$T/text.txt" --no-loss

# --- VQA per question type, on generated scenes
expect_ok "gen-scenes" "$M" gen-scenes --out "$T/scenes" --n 4 --split test --size 32 --questions 3 -q
expect_ok "bundle the vision fixture" "$M" convert $MM/v1_vision/rwkv-0.pth "$T/vision.safetensors" --encoder $MM/siglip
expect_ok "eval vqa on scenes" "$M" eval -m "$T/vision.safetensors" --data "$T/scenes/test.jsonl" --out "$T/vqa_out.jsonl" --max-new-tokens 3 -q
# every other record's reference becomes the model's own answer, so that some types have matches and some not
perl -MJSON::PP -e 'open(my $p, "<", $ARGV[0]) or die; my @pred = map { decode_json($_)->{prediction} } <$p>;
  open(my $d, "<", $ARGV[1]) or die; my $i = 0;
  while (<$d>) { my $r = decode_json($_); $r->{conversations}[1]{value} = $pred[$i] if $i % 2 == 0; $i++;
    print JSON::PP->new->utf8->canonical->encode($r), "\n" }' "$T/vqa_out.jsonl" "$T/scenes/test.jsonl" > "$T/scenes/echo.jsonl"
mv "$T/scenes/echo.jsonl" "$T/scenes/test.jsonl"
expect_ok "eval vqa on scenes, half echoed" "$M" eval -m "$T/vision.safetensors" --data "$T/scenes/test.jsonl" --out "$T/vqa_out.jsonl" --max-new-tokens 3 -q
cp "$T/out" "$T/vqa_table"
[ "$(metric exact_count "$T/vqa_table")" = 6/12 ] || bad "half the references echo the model: expected 6/12 exact, got $(metric exact_count "$T/vqa_table")"
n=$(metric records "$T/vqa_table")
[ "$n" = 12 ] || bad "scenes: expected 12 records, got $n"
types=$(sed -nE 's/.*"question_type":"([^"]*)".*/\1/p' "$T/scenes/test.jsonl" | sort -u)
[ "$(echo "$types" | wc -l)" -ge 2 ] || bad "the scenes should hold several question types: $types"
tot=0
for ty in $types; do
  line=$(awk -v k="exact_match[$ty]" '$1==k' "$T/vqa_table")
  [ -n "$line" ] || { bad "no per-type row for '$ty': $(cat "$T/vqa_table")"; continue; }
  want=$(grep "\"question_type\":\"$ty\"" "$T/vqa_out.jsonl" | sed -nE 's/.*"exact":([01]).*/\1/p' | awk '{s+=$1; n++} END{printf "%d/%d", s, n}')
  [ "$(echo "$line" | awk '{print $3}')" = "$want" ] && ok || bad "per-type '$ty': table '$line', recomputed $want"
  near "$(echo "$line" | awk '{print $2}')" "$(echo "$want" | awk -F/ '{print $1/$2}')" && ok || bad "per-type '$ty' rate"
  tot=$((tot + ${want#*/}))
done
[ "$tot" = "$n" ] || bad "per-type counts add up to $tot, not $n"
grep -q '"question_type":' "$T/vqa_out.jsonl" && ok || bad "--out records lack question_type"
expect_ok "eval --score keeps the per-type rows" "$M" eval --score "$T/vqa_out.jsonl"
diff <(grep '^exact_match\[' "$T/vqa_table") <(grep '^exact_match\[' "$T/out") > /dev/null && ok || bad "--score per-type rows differ"
# records without question_type: no per-type rows
sed -E 's/, *"question_type": *"[^"]*"//' "$T/scenes/test.jsonl" > "$T/scenes/untyped.jsonl"
expect_ok "eval vqa without types" "$M" eval -m "$T/vision.safetensors" --data "$T/scenes/untyped.jsonl" --max 2 --max-new-tokens 2 -q
grep -q '^exact_match\[' "$T/out" && bad "per-type rows without question_type" || ok

# --- the suite
mkdir -p "$T/s"
# a tiny time-series forecaster (as tests/cli_train_forecast.sh makes one, fewer steps)
awk 'BEGIN{srand(3); print "date,a,b"; for(i=0;i<400;i++) printf "d%d,%.5f,%.5f\n", i, 5+2*sin(i*2*3.14159/12)+0.1*(rand()-0.5), -1+sin(i*2*3.14159/8)+0.1*(rand()-0.5)}' > "$T/sines.csv"
expect_ok "train a tiny forecaster" "$M" train --csv "$T/sines.csv" --lookback 24 --horizon 6 --init 1,32 --enc-channels 8 \
  --adapter-scale 2 --steps 5 --warmup 1 --lr 3e-3 -b 8 --seed 1 -t 1 -q --patch 4 --skip-init zero --out "$T/fc"
expect_ok "eval --task forecast" "$M" eval --task forecast -m "$T/fc/forecaster.safetensors" --data "$T/sines.csv" --max 10 -q
cp "$T/out" "$T/fc_table"
cat > "$T/s/suite.jsonl" <<EOF
{"name": "base text", "task": "perplexity", "model": "$TINY", "data": "$T/text.txt", "recipe": "recipes/base.sh"}
{"name": "base head", "task": "perplexity", "model": "$TINY", "data": "$T/text.txt", "max": 80, "chance": 256, "options": ["--vocab", "bytes"]}
{"name": "scenes", "task": "vqa", "model": "$T/vision.safetensors", "data": "$T/scenes/test.jsonl", "root": "$T/scenes", "options": ["--max-new-tokens", "3"], "chance": "0.25 (answer prior)", "chance_by_type": {"count": 0.2}}
{"name": "not built", "task": "vqa", "model": "$T/vision.safetensors", "data": "$T/nothing/test.jsonl", "recipe": "recipes/vision.sh"}
{"name": "no model", "task": "asr", "model": "$T/nothing/model.safetensors", "data": "$T/text.txt"}
{"name": "sines", "task": "forecast", "model": "$T/fc/forecaster.safetensors", "data": "$T/sines.csv", "max": 10}
EOF
expect_ok "suite" "$M" eval --suite "$T/s/suite.jsonl" --out "$T/s/table.md" -t 1
cp "$T/out" "$T/suite_table"; cp "$T/err" "$T/suite_err"
cmp -s "$T/s/table.md" "$T/suite_table" && ok || bad "--out differs from stdout"
head -1 "$T/suite_table" | grep -q '^| name | task | model | data | metric | n | chance | time (s) |$' && ok || bad "table header: $(head -1 "$T/suite_table")"
sed -n 2p "$T/suite_table" | grep -q '^|---|' && ok || bad "no Markdown separator"
r=$(row "base text" "$T/suite_table")
echo "$r" | grep -qF "$(printf '%.4f nats/token' "$(metric loss "$T/ppl_table")")" && echo "$r" | grep -qF "$(metric bits_per_byte "$T/ppl_table" | awk '{printf "%.4f bits/byte", $1}')" \
  && echo "$r" | grep -qF "| $pn tokens |" && ok || bad "suite perplexity row: $r"
r=$(row "base head" "$T/suite_table")
echo "$r" | grep -qF "| 78 tokens | 256 |" && ok || bad "suite row with max/chance/options: $r"
r=$(row "scenes" "$T/suite_table")
ex=$(metric exact_count "$T/vqa_table")
echo "$r" | grep -qF "exact $(metric exact_match "$T/vqa_table" | awk '{printf "%.4f", $1}') ($ex)" && echo "$r" | grep -qF "| 12 | 0.25 (answer prior) |" \
  && ok || bad "suite vqa row: $r (standalone: $ex)"
for ty in $types; do
  r=$(row "scenes [$ty]" "$T/suite_table")
  want=$(awk -v k="exact_match[$ty]" '$1==k {print $3}' "$T/vqa_table")
  echo "$r" | grep -qF "($want)" && ok || bad "suite per-type row '$ty': '$r' (want $want)"
  if [ "$ty" = count ]; then echo "$r" | grep -qF "| 0.2 |" && ok || bad "chance_by_type not shown: $r"; fi
done
row "not built" "$T/suite_table" | grep -qF "missing: $T/nothing/test.jsonl (run recipes/vision.sh)" && ok || bad "missing data row: $(row "not built" "$T/suite_table")"
row "no model" "$T/suite_table" | grep -qF "missing: $T/nothing/model.safetensors |" && ok || bad "missing model row: $(row "no model" "$T/suite_table")"
grep -q "6 rows: 4 evaluated, 2 missing, 0 failed" "$T/suite_err" && ok || bad "suite summary: $(tail -3 "$T/suite_err")"
row sines "$T/suite_table" | grep -qF "| MSE/MAE: the table below |" && ok || bad "forecast row: $(row sines "$T/suite_table")"
# the forecaster's own table follows the suite table, as `eval --task forecast` prints it
grep -qF "sines (forecast, $T/fc/forecaster.safetensors on $T/sines.csv):" "$T/suite_table" && ok || bad "no forecast table heading"
tail -n "$(wc -l < "$T/fc_table")" "$T/suite_table" | cmp -s - "$T/fc_table" && ok || bad "the forecast table differs from eval --task forecast's"
# --only one row
expect_ok "suite --only" "$M" eval --suite "$T/s/suite.jsonl" --only "base head" -q
[ "$(grep -c '^| ' "$T/out")" = 2 ] && row "base head" "$T/out" | grep -qF "| 78 tokens |" && ok || bad "--only: $(cat "$T/out")"
expect_fail "suite --only an unknown row" "no row named" "$M" eval --suite "$T/s/suite.jsonl" --only nope -q
# invalid and failing rows are reported; the other rows still run; exit status 1
cat > "$T/s/bad.jsonl" <<EOF
{"name": "first", "task": "perplexity", "model": "$TINY", "data": "$T/head.txt"}
not json
{"name": "no task", "model": "$TINY", "data": "$T/head.txt"}
{"name": "nested", "task": "text", "model": "$TINY", "data": "$T/head.txt", "options": ["--suite", "x"]}
{"name": "bad options", "task": "text", "model": "$TINY", "data": "$T/head.txt", "options": "--max 3"}
{"name": "fails", "task": "text", "model": "$TINY", "data": "$T/text.txt"}
{"name": "last | pipe", "task": "perplexity", "model": "$TINY", "data": "$T/head.txt"}
EOF
"$M" eval --suite "$T/s/bad.jsonl" --out "$T/s/bad.md" > "$T/out" 2> "$T/err"; rc=$?
[ $rc = 1 ] && ok || bad "a suite with failing rows should exit 1, got $rc"
[ -s "$T/s/bad.md" ] && cmp -s "$T/s/bad.md" "$T/out" && ok || bad "--out not written for a suite with failing rows"
row first "$T/out" | grep -q "bits/byte" && ok || bad "first row: $(row first "$T/out")"
row "row 2" "$T/out" | grep -qF "invalid row ($T/s/bad.jsonl:2: not valid JSON)" && ok || bad "bad JSON row: $(cat "$T/out")"
row "no task" "$T/out" | grep -qF 'needs a string "task"' && ok || bad "no task row"
row "nested" "$T/out" | grep -qF 'may not hold --help, --suite or --score' && ok || bad "nested suite row"
row "bad options" "$T/out" | grep -qF '"options" must be an array' && ok || bad "string options row"
row "fails" "$T/out" | grep -qF 'failed (exit 1' && ok || bad "failing row: $(row fails "$T/out")"
grep -qF '| last \| pipe | perplexity |' "$T/out" && grep -F 'last \| pipe' "$T/out" | grep -q "bits/byte" && ok || bad "row after failures / pipe escaping: $(tail -1 "$T/out")"
# bad suite invocations
expect_fail "missing suite file" "cannot open|No such" "$M" eval --suite "$T/s/none.jsonl"
expect_fail "per-row option given to the suite" "only --out, --only, -t and -q" "$M" eval --suite "$T/s/suite.jsonl" --data x
expect_fail "suite --out in a missing directory" "cannot|No such" "$M" eval --suite "$T/s/bad.jsonl" --out "$T/nodir/t.md" -q
: > "$T/s/empty.jsonl"
expect_fail "empty suite" "empty" "$M" eval --suite "$T/s/empty.jsonl"
expect_ok "eval --help mentions the suite" "$M" eval --help
grep -q -- "--suite SUITE.jsonl" "$T/out" && grep -q "perplexity" "$T/out" && ok || bad "eval --help"

finish cli_eval_suite.sh
