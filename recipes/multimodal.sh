#!/usr/bin/env bash
# A model that answers spoken questions about images (docs/MULTIMODAL.md): merge a vision and a speech ModRWKV
# model into one, fine-tune it on spoken questions about generated scenes, and measure its accuracy on held-out
# voices and scenes, before and after.
#
#   recipes/multimodal.sh [--vision MODEL] [--speech MODEL] [--out DIR] [--n-train N] [--n-test N]
#                         [--questions Q] [--steps S] [--lr LR] [--batch B] [--train LIST] [--threads T]
#                         [--vocab V] [--seed S] [--modrwkv BIN] [--mix-typed]
#                         [--standin [--image-encoder DIR] [--audio-encoder DIR] [--standin-steps N]]
#
#   --vision / --speech  ModRWKV bundles (default: the .safetensors or .gguf in models/vision, models/speech); the
#                        language model comes from --vision; both must splice the same way and share n_embd
#   --n-train / --n-test scenes for training / testing (default 400 / 100), --questions per scene (default 2)
#   --steps, --lr        fine-tuning steps (default 600) and learning rate (default 1e-4; cosine to lr/10)
#   --batch B            micro-batches of one record accumulated per step (default 4; recordings differ in
#                        length, so each micro-batch holds one record)
#   --train LIST         what trains (default adapter,rwkv: stage 2; adapter: stage 1 only)
#   --mix-typed          fine-tune on each spoken question and the same question typed (keeps the text path)
#   --threads T          (default 1)  --vocab V: passed to every command (e.g. bytes)
#   --standin            build stand-in models instead of taking shipped ones (no vision/speech model needed):
#                        the vision model is a byte-level RWKV-7 (2 x 128, from scratch) with a v1 adapter on
#                        --image-encoder (default: the tiny random SigLIP of tests/fixtures/modrwkv/siglip,
#                        32x32, 16 tokens; frozen), trained --standin-steps (default 1500) on the written scene
#                        questions of the train split; the speech model is --audio-encoder (default:
#                        build/whisper-tiny-en from recipes/gen_whisper_weights.sh, else the fixture Whisper)
#                        with a new v1 audio adapter (1 step: only its encoder and adapter shape are merged)
#
# Steps: 1. modrwkv convert --merge (the RWKV-7 of --vision, both encoders and adapters) -> DIR/merged.safetensors
#        2. recipes/gen_spoken_vqa.sh: DIR/data/{train,test}.jsonl (test: held-out voices and scenes)
#        3. accuracy of the merged model on the test records (modrwkv chat --image --audio, greedy, first word)
#        4. modrwkv train on the train records (frozen encoders, features cached in DIR/fcache) -> DIR/ft
#        5. accuracy of the fine-tuned model on the test records; and, as references, on the same test
#           questions written as text (--image only, the question typed) for the vision model and the
#           fine-tuned one, and the best constant answer per question type (from the train split)
# --report-only rewrites DIR/results.md from the answers of an earlier run (same options), running nothing.
# Prints a table per question type and writes it to DIR/results.md. Deterministic for fixed options and
# thread count (modrwkv train is bit-reproducible; the data generators are deterministic).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/build/modrwkv"
vision=""; speech=""; out="runs/multimodal"; ntrain=400; ntest=100; questions=2; steps=600; lr=1e-4
train=adapter,rwkv; threads=1; vocab=""; seed=1; batch=4; standin=0; img_enc=""; aud_enc=""; standin_steps=1500
report_only=0; mix_typed=0
while [ $# -gt 0 ]; do
  case "$1" in
    --vision) vision=$2; shift 2 ;;
    --speech) speech=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --n-train) ntrain=$2; shift 2 ;;
    --n-test) ntest=$2; shift 2 ;;
    --questions) questions=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --lr) lr=$2; shift 2 ;;
    --train) train=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --vocab) vocab=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --modrwkv) bin=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --standin) standin=1; shift ;;
    --image-encoder) img_enc=$2; shift 2 ;;
    --audio-encoder) aud_enc=$2; shift 2 ;;
    --standin-steps) standin_steps=$2; shift 2 ;;
    --report-only) report_only=1; shift ;;
    --mix-typed) mix_typed=1; shift ;;
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    *) echo "multimodal.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "multimodal.sh: $*" >&2; exit 2; }
first_model() { local f; for f in "$1"/*.safetensors "$1"/*.gguf; do [ -f "$f" ] && { echo "$f"; return 0; }; done; return 0; }
[ -x "$bin" ] || die "$bin not found: build it (make) or give --modrwkv BIN"
if [ "$standin" = 0 ]; then
  [ -n "$vision" ] || vision=$(first_model "$root/models/vision")
  [ -n "$speech" ] || speech=$(first_model "$root/models/speech")
  [ -n "$vision" ] && [ -f "$vision" ] || die "no vision model: give --vision MODEL (models/vision has none), or --standin"
  [ -n "$speech" ] && [ -f "$speech" ] || die "no speech model: give --speech MODEL (models/speech has none), or --standin"
else
  [ -n "$img_enc" ] || img_enc="$root/tests/fixtures/modrwkv/siglip"
  if [ -z "$aud_enc" ]; then
    aud_enc="$root/build/whisper-tiny-en"; [ -f "$aud_enc/model.safetensors" ] || aud_enc="$root/tests/fixtures/modrwkv/whisper"
  fi
  [ -n "$vocab" ] || vocab=bytes
fi
va=(); [ -z "$vocab" ] || va=(--vocab "$vocab")
mkdir -p "$out"
log() { echo "multimodal.sh: $*" >&2; }

# 3./5. scoring: one `modrwkv chat` per test record; the answer's first word, lower-cased, against the record's
score() { # model mode(spoken|text) tag -> DIR/answers_TAG.tsv (type, want, got)
  local model=$1 mode=$2 tag=$3 line img wav q want ty got
  : > "$out/answers_$tag.tsv"
  while IFS= read -r line; do
    img=$(sed -E 's/.*"image":"([^"]*)".*/\1/' <<< "$line"); wav=$(sed -E 's/.*"audio":"([^"]*)".*/\1/' <<< "$line")
    q=$(sed -E 's/.*"question":"([^"]*)".*/\1/' <<< "$line"); ty=$(sed -E 's/.*"question_type":"([^"]*)".*/\1/' <<< "$line")
    want=$(sed -E 's/.*"from":"gpt","value":"([^"]*)".*/\1/' <<< "$line")
    if [ "$mode" = spoken ]; then
      got=$("$bin" chat -m "$model" "${va[@]}" --image "$out/data/$img" --audio "$out/data/$wav" -n 8 -q -t "$threads" 2> /dev/null || true)
    else
      got=$("$bin" chat -m "$model" "${va[@]}" --image "$out/data/$img" -n 8 -q -t "$threads" "$q" 2> /dev/null || true)
    fi
    got=$(tr 'A-Z' 'a-z' <<< "$got" | tr -d '.,!?' | awk 'NF && !d {print $1; d = 1}')
    printf '%s\t%s\t%s\n' "$ty" "$want" "$got" >> "$out/answers_$tag.tsv"
  done < "$out/data/test.jsonl"
}
typed() { # tag -> "type n answers-of-that-type" lines + total (the train split's answers per type)
  awk -F'\t' 'NR == FNR {ok[$1 "\t" $2] = 1; next} {n[$1]++; N++; if (($1 "\t" $3) in ok) {c[$1]++; C++}}
    END {for (t in n) printf "%s %d %d\n", t, n[t], c[t]; printf "all %d %d\n", N, C}' "$out/answer_types.tsv" \
    "$out/answers_$1.tsv" | sort
}
table() { # tag -> "type n correct" lines + total
  awk -F'\t' '{n[$1]++; if ($2 == $3) c[$1]++; N++; if ($2 == $3) C++}
    END {for (t in n) printf "%s %d %d\n", t, n[t], c[t]; printf "all %d %d\n", N, C}' "$out/answers_$1.tsv" | sort
}

report() {
  # the best constant answer per type, from the train split, scored on the test split
  sed -E 's/.*"from":"gpt","value":"([^"]*)".*"question_type":"([^"]*)".*/\2\t\1/' "$out/data/train.jsonl" |
    sort | uniq -c | sort -k2,2 -k1,1nr | awk '!seen[$2]++ {print $2 "\t" $3}' > "$out/constant.tsv"
  sed -E 's/.*"from":"gpt","value":"([^"]*)".*"question_type":"([^"]*)".*/\2\t\1/' "$out/data/train.jsonl" |
    sort -u > "$out/answer_types.tsv"
  awk -F'\t' 'NR == FNR {best[$1] = $2; next} {printf "%s\t%s\t%s\n", $1, $2, best[$1]}' "$out/constant.tsv" \
    "$out/answers_zero.tsv" > "$out/answers_constant.tsv"

  {
    echo "# Spoken questions about generated scenes (recipes/multimodal.sh)"
    echo
    if [ "$standin" = 1 ]; then
      echo "**Stand-in models** (--standin): vision = \`$img_enc\` (frozen) + 2 x 128 byte-level RWKV-7 trained here"
      echo "($standin_steps steps on the written questions of the train split); speech = \`$aud_enc\` (frozen) + a new"
      echo "v1 audio adapter. "
    else
      echo "vision \`$vision\`, speech \`$speech\`. "
    fi
    echo "$ntrain train scenes x $questions questions, $ntest test scenes x $questions (held-out voices and scenes);"
    echo "fine-tuning of the merged model: --train $train, $steps steps of $batch records, lr $lr, $threads thread(s),"
    echo "$t_fine s; whole recipe $t_all s wall. Accuracy = the answer's first word equals the record's."
    echo
    echo "| question type | records | vision model, typed | merged, spoken, before | merged, spoken, fine-tuned | fine-tuned, typed | best constant |"
    echo "|---|---|---|---|---|---|---|"
    join <(table vision_text) <(table zero) | join - <(table ft) | join - <(table ft_text) | join - <(table constant) |
      awk '{printf "| %s | %d | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% |\n", $1, $2, 100*$3/$2, 100*$5/$4, 100*$7/$6, 100*$9/$8, 100*$11/$10}'
    echo
    echo "Answers of the asked type (the answer is one of the train split's answers for the question's type: did the"
    echo "model understand which question was asked?):"
    echo
    echo "| question type | vision model, typed | merged, spoken, before | merged, spoken, fine-tuned | fine-tuned, typed |"
    echo "|---|---|---|---|---|"
    join <(typed vision_text) <(typed zero) | join - <(typed ft) | join - <(typed ft_text) |
      awk '{printf "| %s | %.1f%% | %.1f%% | %.1f%% | %.1f%% |\n", $1, 100*$3/$2, 100*$5/$4, 100*$7/$6, 100*$9/$8}'
  } > "$out/results.md"
  cat "$out/results.md"
}


if [ "$report_only" = 1 ]; then
  [ -s "$out/answers_ft.tsv" ] && [ -s "$out/times" ] || die "--report-only: no earlier run in $out"
  read -r t_fine t_all < "$out/times"
  report
  exit 0
fi
t_start=$(date +%s)

# 2. data (first: the stand-in vision model trains on its written questions)
log "generating spoken scene questions"
"$root/recipes/gen_spoken_vqa.sh" --out "$out/data" --n "$ntrain" --questions "$questions" --seed "$seed" \
  --split train --jobs 2 --modrwkv "$bin" >&2
"$root/recipes/gen_spoken_vqa.sh" --out "$out/data" --n "$ntest" --questions "$questions" --seed "$seed" \
  --split test --jobs 2 --modrwkv "$bin" >&2

if [ "$standin" = 1 ]; then
  log "stand-in vision model: $img_enc + a 2 x 128 byte-level RWKV-7, $standin_steps steps on the written questions"
  rm -rf "$out/standin"
  mkdir -p "$out/standin"
  "$bin" train --init 2,128 "${va[@]}" --encoder "$img_enc" --adapter v1 --train adapter,rwkv \
    --data "$out/data/scenes/train.jsonl" --out "$out/standin/vision" --feature-cache "$out/fcache" \
    --steps "$standin_steps" --lr 2e-3 -b 4 --seed "$seed" -t "$threads" --no-progress
  log "stand-in speech model: $aud_enc + a new v1 audio adapter"
  head -n 4 "$out/data/train.jsonl" | sed -E 's/.*"audio":"([^"]*)".*"question":"([^"]*)".*/{"audio":"\1","text":"\2"}/' \
    > "$out/data/asr4.jsonl"
  "$bin" train --init 1,128 "${va[@]}" --encoder "$aud_enc" --adapter v1 --train adapter \
    --data "$out/data/asr4.jsonl" --out "$out/standin/speech" --steps 1 --lr 1e-4 -t "$threads" --no-progress
  vision="$out/standin/vision/model.safetensors"
  speech="$out/standin/speech/model.safetensors"
fi

# 1. merge
log "merging $vision + $speech"
"$bin" convert --merge --lm "$vision" "$vision" "$speech" "$out/merged.safetensors"
# a byte-level model (256 tokens) trains with --vocab bytes (chat/eval pick it by themselves)
if [ -z "$vocab" ] && "$bin" info -m "$out/merged.safetensors" | grep -qE '^vocab +256$'; then vocab=bytes; va=(--vocab bytes); fi

log "scoring the vision model on the written test questions"
score "$vision" text vision_text
log "scoring the merged model (no fine-tuning) on held-out voices"
score "$out/merged.safetensors" spoken zero

# 4. fine-tune (--mix-typed: every spoken record is followed by the same question typed, so that fine-tuning on
# speech does not overwrite the typed-question path)
ftdata="$out/data/train.jsonl"
if [ "$mix_typed" = 1 ]; then
  ftdata="$out/data/train_mixed.jsonl"
  python3 - "$out/data/train.jsonl" "$ftdata" <<'PY' || die "could not write $ftdata"
import json, sys
src, dst = sys.argv[1:3]
with open(dst + '.tmp', 'w') as o:
    for line in open(src):
        r = json.loads(line)
        o.write(json.dumps(r, separators=(',', ':')) + '\n')
        t = {'id': r['id'] + '-typed', 'image': r['image'],
             'conversations': [{'from': 'human', 'value': '<image>\n' + r['question']}, r['conversations'][1]],
             'question_type': r['question_type']}
        o.write(json.dumps(t, separators=(',', ':')) + '\n')
import os; os.replace(dst + '.tmp', dst)
PY
fi
log "fine-tuning ($train, $steps steps, lr $lr, $threads thread(s), data $(basename "$ftdata"))"
rm -rf "$out/ft"
t0=$(date +%s)
"$bin" train -m "$out/merged.safetensors" "${va[@]}" --data "$ftdata" --out "$out/ft" --train "$train" \
  --feature-cache "$out/fcache" --steps "$steps" --lr "$lr" -b 1 --grad-accum "$batch" --seed "$seed" -t "$threads" \
  --no-progress
t1=$(date +%s)

log "scoring the fine-tuned model"
score "$out/ft/model.safetensors" spoken ft
score "$out/ft/model.safetensors" text ft_text

t_all=$(( $(date +%s) - t_start )); t_fine=$((t1 - t0))
echo "$t_fine $t_all" > "$out/times"
report
