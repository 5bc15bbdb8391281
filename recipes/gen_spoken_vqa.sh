#!/usr/bin/env bash
# Spoken questions about generated scenes: an image, the question read aloud by espeak-ng, a one-word answer.
# Training and test data for a model with an image and an audio encoder (docs/MULTIMODAL.md).
#
#   recipes/gen_spoken_vqa.sh --out DIR --n N [--seed S] [--split train|test] [--questions Q] [--types LIST]
#                             [--size PX] [--jobs J] [--modrwkv BIN]
#
# 1. `modrwkv gen-scenes` renders N scenes with Q questions each (DIR/scenes/SPLIT/NNNNNN.png,
#    DIR/scenes/SPLIT.jsonl: the written questions, their types and answers; see modrwkv gen-scenes --help).
# 2. espeak-ng reads every question (the text after "<image>\n") in a voice of the split, at 16 kHz mono 16-bit
#    (DIR/SPLIT_audio/NNNNNN.wav, one per record).
# 3. DIR/SPLIT.jsonl gets one LLaVA record per question, paths relative to DIR (as `modrwkv train` resolves them):
#      {"id": "...", "image": "scenes/train/000000.png", "audio": "train_audio/000000.wav",
#       "conversations": [{"from": "human", "value": "<image><audio>"}, {"from": "gpt", "value": "yes"}],
#       "question_type": "exists", "question": "Does the image contain a circle?", "voice": "en-us+f2",
#       "speed": 151, "pitch": 38}
#    The user turn holds only the two markers: the question is in the recording. This is exactly what
#    `modrwkv chat -m MODEL --image X.png --audio Q.wav` (no text question) sends, and the order of the markers
#    is the order of --image and --audio on its command line.
# Voices are those of recipes/gen_speech.sh: an espeak-ng language voice speaking English plus a variant, at
# 120-210 words per minute and pitch 20-80; the test split uses only held-out voices (language voices en-029,
# en-gb-x-gbcwmd, nl; variants m4, f3, klatt2, benjamin, linda, grandma, travis), never heard in training.
# The test split's scenes are held out too (gen-scenes draws them from another stream).
# Deterministic: the same options give the same bytes (record i's voice depends only on seed, split and i;
# gen-scenes is deterministic; espeak-ng and sox -R give the same samples on the same versions).
# Needs espeak-ng and sox (Debian packages; scripts/setup.sh installs both).
set -euo pipefail

out=""; n=0; seed=1; split=train; jobs=1; questions=1; types=""; size=64
bin="$(cd "$(dirname "$0")/.." && pwd)/build/modrwkv"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --split) split=$2; shift 2 ;;
    --questions) questions=$2; shift 2 ;;
    --types) types=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --modrwkv) bin=$2; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "gen_spoken_vqa.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "gen_spoken_vqa.sh: $*" >&2; exit 2; }
[ -n "$out" ] || die "give the output directory with --out DIR"
. "$(dirname "$0")/lib/espeak_rng.sh"   # espeak_check_options, espeak_check_tools, espeak_voices, mix32, rnd, pick
espeak_check_options 1000000
[ -x "$bin" ] || die "$bin not found: build it (make) or give --modrwkv BIN"
espeak_check_tools

espeak_voices "$split"

# 1. scenes and written questions
scene_args=(gen-scenes --out "$out/scenes" --n "$n" --seed "$seed" --split "$split" --questions "$questions"
            --size "$size" -q)
[ -z "$types" ] || scene_args+=(--types "$types")
"$bin" "${scene_args[@]}" > /dev/null || die "modrwkv gen-scenes failed"
src="$out/scenes/$split.jsonl"
[ -s "$src" ] || die "gen-scenes wrote no records"

# Random numbers from recipes/lib/espeak_rng.sh; the streams differ from gen_speech.sh's (salt 7).
voice() { # record index -> VOICE SPEED PITCH
  mix32 $(( (seed * 0x9e3779b1 + split_id * 7 + 0x5f0) & 0xffffffff )); mix32 $(( H ^ $1 )); S=$H
  pick BASES; local base=$W; pick VARIANTS; VOICE="$base+$W"
  rnd 91; SPEED=$((120 + R)); rnd 61; PITCH=$((20 + R))
}

mkdir -p "$out/${split}_audio"
tmpd=$(mktemp -d "$out/.gen_spoken_vqa.XXXXXX")
trap 'rm -rf "$tmpd"' EXIT
# one line per record: id, image, question, answer, type (gen-scenes writes these fields in this fixed form)
re='^\{"id":"([^"]+)","image":"([^"]+)","conversations":\[\{"from":"human","value":"<image>\\n([^"]+)"\},\{"from":"gpt","value":"([^"]+)"\}\],"question_type":"([a-z]+)"\}$'
total=$(wc -l < "$src")

worker() { # j: records i = j, j + jobs, ...
  local j=$1 i=0 name line
  while IFS= read -r line; do
    if [ $((i % jobs)) -eq "$j" ]; then
      [[ "$line" =~ $re ]] || { echo "gen_spoken_vqa.sh: unexpected gen-scenes record $i: $line" >&2; return 1; }
      local id=${BASH_REMATCH[1]} img=${BASH_REMATCH[2]} q=${BASH_REMATCH[3]} a=${BASH_REMATCH[4]} ty=${BASH_REMATCH[5]}
      voice "$i"
      printf -v name '%06d' "$i"
      if ! espeak-ng -v "$VOICE" -s "$SPEED" -p "$PITCH" -w "$tmpd/$name.22k.wav" "$q" 2> "$tmpd/$name.err"; then
        echo "gen_spoken_vqa.sh: espeak-ng failed on record $i (voice $VOICE): $(head -c 300 "$tmpd/$name.err")" >&2
        return 1
      fi
      sox -R -D -V1 "$tmpd/$name.22k.wav" -r 16000 -c 1 -b 16 "$tmpd/$name.wav" vol 0.8
      mv "$tmpd/$name.wav" "$out/${split}_audio/$name.wav"
      rm -f "$tmpd/$name.22k.wav" "$tmpd/$name.err"
      printf '%s\t{"id":"%s","image":"scenes/%s","audio":"%s_audio/%s.wav","conversations":[{"from":"human","value":"<image><audio>"},{"from":"gpt","value":"%s"}],"question_type":"%s","question":"%s","voice":"%s","speed":%d,"pitch":%d}\n' \
        "$name" "$id" "$img" "$split" "$name" "$a" "$ty" "$q" "$VOICE" "$SPEED" "$PITCH" >> "$tmpd/records.$j"
    fi
    i=$((i + 1))
  done < "$src"
}

pids=()
for ((j = 0; j < jobs; j++)); do worker "$j" & pids+=($!); done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ "$fail" = 0 ] || exit 1
cat "$tmpd"/records.* | LC_ALL=C sort | cut -f2- > "$tmpd/all.jsonl"
[ "$(wc -l < "$tmpd/all.jsonl")" -eq "$total" ] || { echo "gen_spoken_vqa.sh: missing records" >&2; exit 1; }
mv "$tmpd/all.jsonl" "$out/$split.jsonl"
echo "$split: $total spoken questions about $n scenes in $out/$split.jsonl ($(sed -E 's/.*"question_type":"([a-z]+)".*/\1/' "$out/$split.jsonl" | sort | uniq -c | awk '{printf "%s%s %s", s, $2, $1; s=", "}'))"
