#!/usr/bin/env bash
# Labelled speech from espeak-ng in many voices, as an audio manifest for `modrwkv train` / `modrwkv eval`.
#
#   recipes/gen_speech.sh --out DIR --n N [--seed S] [--split train|test] [--jobs J]
#
# Writes DIR/SPLIT/NNNNNN.wav (16 kHz mono 16-bit PCM) and DIR/SPLIT.jsonl, one line per utterance:
#   {"audio": "SPLIT/000000.wav", "text": "seven three one", "kind": "digits", "voice": "en-us+f2",
#    "speed": 151, "pitch": 38}
# (paths relative to DIR, as `modrwkv train` resolves them). Transcripts are lower-case words without
# punctuation, exactly the words given to espeak-ng; digits are spelled as words ("zero" .. "nine").
# Utterances, a third each:
#   digits    2-7 digits                          "four zero nine"
#   number    a number 0-9999 in words            "two thousand and thirty five"
#   sentence  4-9 words from the built-in word lists of this script, in simple patterns
#             "the small red dog sees a big house"
# Voices are an espeak-ng language voice speaking the English text plus a voice variant (pitch, formants),
# at 120-210 words per minute and pitch 20-80. The test split uses held-out voices only: its language
# voices (en-029, en-gb-x-gbcwmd, nl) and its variants (m4, f3, klatt2, benjamin, linda, grandma, travis)
# never occur in the train split.
# Deterministic: utterance i of (seed, split) depends on nothing else (a hashed counter seeded from the three);
# espeak-ng and sox (run with -R, no dither) give the same samples for the same input on the same versions.
# Needs espeak-ng and sox (Debian packages; scripts/setup.sh installs both).
set -euo pipefail

out=""; n=0; seed=1; split=train; jobs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --split) split=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "gen_speech.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "gen_speech.sh: $*" >&2; exit 2; }
[ -n "$out" ] || die "give the output directory with --out DIR"
. "$(dirname "$0")/lib/espeak_rng.sh"   # espeak_check_options, espeak_check_tools, espeak_voices, mix32, rnd, pick
espeak_check_options 10000000
espeak_check_tools

espeak_voices "$split"
DIGITS=(zero one two three four five six seven eight nine)
TEENS=(ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen)
TENS=("" "" twenty thirty forty fifty sixty seventy eighty ninety)
DET=(the a the this that one)
ADJ=(red green blue yellow black white small big tiny new happy sad quick slow warm cold bright dark tall
     short heavy light young loud quiet soft)
NOUN=(dog cat bird fish horse cow house car tree river road book table chair window door garden city
      child teacher doctor farmer boat train lemon bread water letter song phone clock flower mountain)
COUNT=(dog cat bird horse cow house car tree book table chair window door boat train lemon letter song
       phone clock flower mountain)
VERB=(sees finds likes takes wants holds moves opens reads paints follows watches carries visits)
VERB_I=(runs sleeps waits sings walks stops falls smiles works swims jumps)
PREP=(near under behind beside above into over)
ADV=(today again slowly quickly now here)


below100() { # $1 in 0..99 -> words in WORDS
  local x=$1
  if [ "$x" -lt 10 ]; then WORDS="${DIGITS[$x]}"
  elif [ "$x" -lt 20 ]; then WORDS="${TEENS[$((x - 10))]}"
  elif [ $((x % 10)) -eq 0 ]; then WORDS="${TENS[$((x / 10))]}"
  else WORDS="${TENS[$((x / 10))]} ${DIGITS[$((x % 10))]}"; fi
}
number_words() { # $1 in 0..9999 -> NUM
  local x=$1 parts=""
  if [ "$x" -ge 1000 ]; then parts="${DIGITS[$((x / 1000))]} thousand"; x=$((x % 1000)); fi
  if [ "$x" -ge 100 ]; then parts="${parts:+$parts }${DIGITS[$((x / 100))]} hundred"; x=$((x % 100)); fi
  if [ "$x" -gt 0 ] || [ -z "$parts" ]; then below100 "$x"; parts="${parts:+$parts and }$WORDS"; fi
  NUM=$parts
}

utterance() { # index -> TEXT KIND VOICE SPEED PITCH (all from the index's own stream)
  local i=$1 k
  mix32 $(( (seed * 0x9e3779b1 + split_id) & 0xffffffff )); mix32 $(( H ^ i )); S=$H
  rnd 3
  case $R in
    0) KIND=digits; rnd 6; local len=$((R + 2)); TEXT=""
       for ((k = 0; k < len; k++)); do rnd 10; TEXT="${TEXT:+$TEXT }${DIGITS[$R]}"; done ;;
    1) KIND=number; rnd 4
       case $R in 0) rnd 20 ;; 1) rnd 100 ;; 2) rnd 1000 ;; *) rnd 10000 ;; esac
       number_words "$R"; TEXT=$NUM ;;
    *) KIND=sentence; rnd 4
       case $R in
         0) pick DET; TEXT=$W; pick ADJ; TEXT="$TEXT $W"; pick NOUN; TEXT="$TEXT $W"; pick VERB; TEXT="$TEXT $W"
            pick DET; TEXT="$TEXT $W"; pick NOUN; TEXT="$TEXT $W" ;;
         1) pick DET; TEXT=$W; pick NOUN; TEXT="$TEXT $W"; pick VERB_I; TEXT="$TEXT $W"; pick PREP; TEXT="$TEXT $W the"
            pick ADJ; TEXT="$TEXT $W"; pick NOUN; TEXT="$TEXT $W" ;;
         2) pick DET; TEXT=$W; pick ADJ; TEXT="$TEXT $W"; pick ADJ; TEXT="$TEXT $W"; pick NOUN; TEXT="$TEXT $W"
            pick VERB_I; TEXT="$TEXT $W"; pick ADV; TEXT="$TEXT $W" ;;
         *) pick DET; TEXT=$W; pick NOUN; TEXT="$TEXT $W"; pick VERB; TEXT="$TEXT $W"; rnd 9; below100 $((R + 2))
            TEXT="$TEXT $WORDS"; pick ADJ; TEXT="$TEXT $W"; pick COUNT; TEXT="$TEXT ${W}s" ;;
       esac ;;
  esac
  pick BASES; local base=$W; pick VARIANTS; VOICE="$base+$W"
  rnd 91; SPEED=$((120 + R)); rnd 61; PITCH=$((20 + R))
}

mkdir -p "$out/$split"
tmpd=$(mktemp -d "$out/.gen_speech.XXXXXX")
trap 'rm -rf "$tmpd"' EXIT

worker() { # j: utterances i = j, j + jobs, ...
  local j=$1 i name
  for ((i = j; i < n; i += jobs)); do
    utterance "$i"
    printf -v name '%06d' "$i"
    if ! espeak-ng -v "$VOICE" -s "$SPEED" -p "$PITCH" -w "$tmpd/$name.22k.wav" "$TEXT" 2> "$tmpd/$name.err"; then
      echo "gen_speech.sh: espeak-ng failed on utterance $i (voice $VOICE): $(head -c 300 "$tmpd/$name.err")" >&2; return 1
    fi
    sox -R -D -V1 "$tmpd/$name.22k.wav" -r 16000 -c 1 -b 16 "$tmpd/$name.wav" vol 0.8
    mv "$tmpd/$name.wav" "$out/$split/$name.wav"
    rm -f "$tmpd/$name.22k.wav" "$tmpd/$name.err"
    printf '%s\t{"audio":"%s/%s.wav","text":"%s","kind":"%s","voice":"%s","speed":%d,"pitch":%d}\n' \
      "$name" "$split" "$name" "$TEXT" "$KIND" "$VOICE" "$SPEED" "$PITCH" >> "$tmpd/manifest.$j"
  done
}

pids=()
for ((j = 0; j < jobs; j++)); do worker "$j" & pids+=($!); done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ "$fail" = 0 ] || exit 1
cat "$tmpd"/manifest.* | LC_ALL=C sort | cut -f2- > "$tmpd/all.jsonl"
[ "$(wc -l < "$tmpd/all.jsonl")" -eq "$n" ] || { echo "gen_speech.sh: missing utterances" >&2; exit 1; }
mv "$tmpd/all.jsonl" "$out/$split.jsonl"
echo "$split: $n utterances in $out/$split.jsonl ($(cut -d'"' -f12 "$out/$split.jsonl" | sort | uniq -c | awk '{printf "%s%s %s", s, $2, $1; s=", "}'))"
