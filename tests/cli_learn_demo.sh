#!/usr/bin/env bash
# Smoke test of recipes/learn_demo.sh --quick: the whole spoken-digit pipeline (FSDD manifests, random Whisper
# encoder, text stage 0, stage 1, eval, stage 2, eval, plots, summary) runs with a few steps each, every phase
# writes what the next one needs, and the losses fall. Accuracy is not checked here (a few steps cannot learn
# the task; docs/LEARNING_DEMO.md has the full run's numbers). Skipped when ../shared/data is not there.
# Run by tests/run.sh with the build directory as $1.
set -u
B=${1:-build}
SHARED=${MRW_SHARED:-../shared}
TAR=$SHARED/data/speech/fsdd-recordings.tar
if [ ! -f "$TAR" ]; then echo "SKIP: $TAR not found"; exit 0; fi
command -v python3 > /dev/null || { echo "SKIP: no python3"; exit 0; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0; checks=0
ok() { checks=$((checks+1)); }
bad() { checks=$((checks+1)); fails=$((fails+1)); echo "FAIL: $*" >&2; }

if MODRWKV="$B/modrwkv" recipes/learn_demo.sh --quick --out "$T/ld" --threads 2 > "$T/out" 2> "$T/err"; then ok
else bad "learn_demo.sh --quick failed: $(tail -c 1500 "$T/err")"; fi
cat "$T/out"

for f in encoder/model.safetensors encoder/config.json s0/model.safetensors s1/model.safetensors \
         s2/model.safetensors eval1.jsonl eval2.jsonl loss_s0.png loss_s1.png loss_s2.png; do
  [ -s "$T/ld/$f" ] && ok || bad "missing output $f"
done
[ "$(wc -l < "$T/ld/eval2.jsonl" 2>/dev/null)" = 20 ] && ok || bad "eval2.jsonl should hold 20 predictions"
for s in 1 2; do grep -q "accuracy after stage $s " "$T/out" && ok || bad "no stage-$s accuracy in the summary"; done
grep -q "chance level" "$T/out" && ok || bad "no chance level in the summary"

# the losses fall: stage 0 (text) by more than half, stage 1 (the adapter) by more than 20 %
losses() { sed -n 's/.*"loss":\([0-9.eE+-]*\).*/\1/p' "$1"; }
falls() { # LOG FRACTION: mean of the last 3 steps < FRACTION x mean of the first 3
  losses "$1" | awk -v f="$2" -v name="${1#$T/ld/}" '{ l[NR] = $1 } END { if (NR < 6) exit 1
    a = (l[1] + l[2] + l[3]) / 3; b = (l[NR] + l[NR-1] + l[NR-2]) / 3; printf "%s: %.3f -> %.3f\n", name, a, b; exit !(b < f * a) }'
}
falls "$T/ld/s0/train.jsonl" 0.5 && ok || bad "stage 0 loss did not halve"
falls "$T/ld/s1/train.jsonl" 0.8 && ok || bad "stage 1 loss did not fall by 20 %"

# the stage-2 model is a self-contained bundle: `modrwkv chat` transcribes a clip with nothing else
clip=$(ls "$T/ld/fsdd/recordings" | head -1)
"$B/modrwkv" chat -m "$T/ld/s2/model.safetensors" --vocab bytes --audio "$T/ld/fsdd/recordings/$clip" -n 6 -q \
  > "$T/chat" 2> "$T/chat.err" && ok || bad "chat on the stage-2 bundle failed: $(head -c 400 "$T/chat.err")"

echo "$((checks - fails)) of $checks checks passed"
[ $fails -eq 0 ]
