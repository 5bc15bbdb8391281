#!/usr/bin/env bash
# End-to-end tests of the data generators' command lines: `modrwkv gen-scenes` (byte-identical output for the
# same options, other output for another seed or split, the per-type table, --types, bad options refused with
# a message and no output) and recipes/gen_cifar_vqa.sh on a small tar this script builds (records, classes, question
# phrasings, bad files skipped). The pixel-level checks of the scenes and the speech / FSDD generators are in
# tests/test_gen.c. Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
check() { local d=$1; shift; if "$@"; then ok; else bad "$d"; fi; }

# --- gen-scenes
expect_ok "help" "$M" gen-scenes --help
check "help names the question types" grep -q "exists" "$T/out"
expect_ok "scenes a" "$M" gen-scenes --out "$T/a" --n 40 --seed 5 --questions 3 -q
cp "$T/out" "$T/table_a"
expect_ok "scenes b (same options)" "$M" gen-scenes --out "$T/b" --n 40 --seed 5 --questions 3 -q
check "same options give the same bytes" diff -r "$T/a" "$T/b"
check "40 images" test "$(ls "$T/a/train" | wc -l)" -eq 40
check "spec: one line per image" test "$(wc -l < "$T/a/train_spec.jsonl")" -eq 40
check "records: 2-3 per image" test "$(wc -l < "$T/a/train.jsonl")" -ge 80
records=$(wc -l < "$T/a/train.jsonl")
# The table: a row per type whose counts add up to the records, answers per row add up to its count.
sum=$(awk '$1 ~ /^(colour|shape|count|where|exists)$/ {s += $2} END {print s}' "$T/table_a")
check "table rows add up to the records ($sum vs $records)" test "$sum" = "$records"
check "answer counts add up per row" awk '$1 ~ /^(colour|shape|count|where|exists)$/ {t=0; for (i=3;i<=NF;i++){split($i,p,":"); t+=p[2]} if (t!=$2) exit 1}' "$T/table_a"
for ty in colour shape count where exists; do
  check "type $ty in the JSONL" grep -q "\"question_type\":\"$ty\"" "$T/a/train.jsonl"
done
check "answers are one word" test -z "$(sed -E 's/.*"from":"gpt","value":"([^"]*)".*/\1/' "$T/a/train.jsonl" | grep ' ')"
check "first human turn opens with <image>" test "$(grep -c '"from":"human","value":"<image>\\n' "$T/a/train.jsonl")" -eq "$records"
check "PNG files" test "$(head -c 8 "$T/a/train/000000.png" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a
expect_ok "scenes other seed" "$M" gen-scenes --out "$T/c" --n 40 --seed 6 --questions 3 -q
if cmp -s "$T/a/train_spec.jsonl" "$T/c/train_spec.jsonl"; then bad "another seed gives the same scenes"; else ok; fi
expect_ok "scenes test split" "$M" gen-scenes --out "$T/a" --n 40 --seed 5 --questions 3 --split test -q
check "the test split is written beside train" test -f "$T/a/test.jsonl" -a -f "$T/a/test/000039.png"
if cmp -s <(sed 's/"image":"[a-z]*/X/' "$T/a/train_spec.jsonl") <(sed 's/"image":"[a-z]*/X/' "$T/a/test_spec.jsonl"); then bad "the test split equals train"; else ok; fi
check "train files untouched by the test run" diff -r "$T/a/train" "$T/b/train"
expect_ok "size 96" "$M" gen-scenes --out "$T/d" --n 2 --size 96 -q
check "size 96 in the spec" grep -q '"size":96' "$T/d/train_spec.jsonl"

expect_ok "--types colour,count" "$M" gen-scenes --out "$T/f" --n 30 --types colour,count --questions 2 -q
check "--types: only those types" test -z "$(grep -v '"question_type":"\(colour\|count\)"' "$T/f/train.jsonl")"
check "--types: both present" test "$(grep -c '"question_type":"colour"' "$T/f/train.jsonl")" -gt 0 -a "$(grep -c '"question_type":"count"' "$T/f/train.jsonl")" -eq 30
check "--types: table rows of the others are 0" test "$(awk '$1=="where"{print $2}' "$T/out")" = 0
expect_fail "unknown type" "--types" "$M" gen-scenes --out "$T/e" --n 2 --types color
expect_fail "empty type" "--types" "$M" gen-scenes --out "$T/e" --n 2 --types colour,
expect_fail "no --out" "--out" "$M" gen-scenes --n 3
expect_fail "no --n" "--n" "$M" gen-scenes --out "$T/e"
expect_fail "--n 0" "integer in" "$M" gen-scenes --out "$T/e" --n 0
expect_fail "bad split" "train or test" "$M" gen-scenes --out "$T/e" --n 2 --split dev
expect_fail "size too small" "size" "$M" gen-scenes --out "$T/e" --n 2 --size 8
expect_fail "bad seed" "seed" "$M" gen-scenes --out "$T/e" --n 2 --seed -4
expect_fail "unknown option" "unknown|--bogus" "$M" gen-scenes --out "$T/e" --n 2 --bogus
check "nothing written on bad options" test ! -e "$T/e"
expect_fail "unwritable directory" "cannot|denied|such" "$M" gen-scenes --out /proc/nonexistent/x --n 2 -q

# --- gen_cifar_vqa.sh on a small tar: train/<class>/NNNN.png (the script does not decode the images)
mkdir -p "$T/tar/train"
for cls in airplane cat truck; do
  mkdir -p "$T/tar/train/$cls"
  for k in 0 1 2 3; do cp "$T/a/train/00000$k.png" "$T/tar/train/$cls/000$k.png"; done
done
mkdir -p "$T/tar/train/unicorn" && cp "$T/a/train/000000.png" "$T/tar/train/unicorn/0000.png"
tar -czf "$T/cifar.tar.gz" -C "$T/tar" train
expect_ok "cifar vqa" recipes/gen_cifar_vqa.sh --tar "$T/cifar.tar.gz" --out "$T/cif"
check "cifar: 12 records" test "$(wc -l < "$T/cif/train.jsonl")" -eq 12
check "cifar: unknown class reported" grep -q unicorn "$T/err"
check "cifar: answer is the folder's class" test -z "$(sed -E 's/.*"image":"train\/([a-z]*)\/.*"from":"gpt","value":"([a-z]*)".*/\1 \2/' "$T/cif/train.jsonl" | awk '$1 != $2')"
check "cifar: image files exist" test -f "$T/cif/$(sed -E 's/.*"image":"([^"]*)".*/\1/' "$T/cif/train.jsonl" | head -1)"
check "cifar: six phrasings" test "$(sed -E 's/.*<image>\\n([^"]*)".*/\1/' "$T/cif/train.jsonl" | sort -u | wc -l)" -eq 6
expect_ok "cifar vqa --max 2" recipes/gen_cifar_vqa.sh --tar "$T/cifar.tar.gz" --out "$T/cif2" --max 2
check "cifar: --max 2 per class" test "$(wc -l < "$T/cif2/train.jsonl")" -eq 6
expect_ok "cifar again" recipes/gen_cifar_vqa.sh --tar "$T/cifar.tar.gz" --out "$T/cif3"
check "cifar: deterministic" cmp -s "$T/cif/train.jsonl" "$T/cif3/train.jsonl"
expect_fail "cifar: missing tar" "no such file" recipes/gen_cifar_vqa.sh --tar "$T/none.tar.gz" --out "$T/cif4"
expect_fail "cifar: bad split" "train or test" recipes/gen_cifar_vqa.sh --split dev --out "$T/cif4"

finish cli_gen.sh
