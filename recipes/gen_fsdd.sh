#!/usr/bin/env bash
# The Free Spoken Digit Dataset (real human speech, CC BY-SA 4.0) as audio manifests for ASR.
#
#   recipes/gen_fsdd.sh --out DIR [--tar ../shared/data/speech/fsdd-recordings.tar]
#
# Extracts the 3,000 recordings ({digit}_{speaker}_{index}.wav, 8 kHz mono; `modrwkv` resamples to 16 kHz when
# it loads them) into DIR/recordings/ and writes the official split:
#   DIR/test.jsonl    index 0-4 of every speaker and digit (300 clips)
#   DIR/train.jsonl   index 5-49 (2,700 clips)
# one line per clip, sorted by file name: {"audio": "recordings/7_jackson_3.wav", "text": "seven",
# "speaker": "jackson"}. The transcript is the digit as an English word ("zero" .. "nine"), the form the
# espeak-ng data of recipes/gen_speech.sh uses, so one model can be trained on both and WER is per word.
set -euo pipefail
tar=${MRW_SHARED:-../shared}/data/speech/fsdd-recordings.tar; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --tar) tar=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "gen_fsdd.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "gen_fsdd.sh: give the output directory with --out DIR" >&2; exit 2; }
[ -f "$tar" ] || { echo "gen_fsdd.sh: $tar: no such file" >&2; exit 2; }
mkdir -p "$out"
tar -xf "$tar" -C "$out" --wildcards 'recordings/*.wav'
ls "$out/recordings" | LC_ALL=C sort | awk -v out="$out" '
  BEGIN { split("zero one two three four five six seven eight nine", W, " ") }
  /^[0-9]_[A-Za-z0-9]+_[0-9]+\.wav$/ {
    n = split($0, p, /[_.]/); digit = p[1]; speaker = p[2]; idx = p[3] + 0
    line = sprintf("{\"audio\":\"recordings/%s\",\"text\":\"%s\",\"speaker\":\"%s\"}", $0, W[digit + 1], speaker)
    if (idx <= 4) { print line > (out "/test.jsonl.tmp"); nt++ } else { print line > (out "/train.jsonl.tmp"); nr++ }
    next
  }
  { printf "gen_fsdd.sh: skipping unexpected file recordings/%s\n", $0 > "/dev/stderr" }
  END { printf "fsdd: %d train, %d test clips in %s\n", nr, nt, out }'
mv "$out/train.jsonl.tmp" "$out/train.jsonl"
mv "$out/test.jsonl.tmp" "$out/test.jsonl"
