#!/usr/bin/env bash
# `modrwkv train` end to end: a tiny RWKV-7 learns, its checkpoint runs in `generate` (and PyTorch reads it),
# bad options fail clearly, the same run twice is bit-identical, and the resume proof: a run killed with
# SIGKILL (by itself after a step, and from outside at an arbitrary moment) and resumed with --resume ends
# with weights bit-identical to an uninterrupted run; a crash inside a save (MRW_TRAIN_CRASH_IN_SAVE) leaves
# the previous checkpoint intact. Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
SHARED=${MRW_SHARED:-../shared}
VOCAB=$SHARED/assets/rwkv_vocab_v20230424.txt
losses() { sed -n 's/.*"loss":\([0-9.eE+-]*\).*/\1/p' "$1"; }
# close A B: |A - B| <= 1e-5 |B| (the encoders' training and inference forwards round differently)
close() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b != "" && d <= 1e-5 * (b < 0 ? -b : b)) }'; }

# --- data: short sentences from a 14-word vocabulary (deterministic)
awk 'BEGIN { srand(7); split("the cat sat on a mat and the dog ran in the park while birds sang", w, " ");
  for (i = 0; i < 48; i++) { n = 5 + int(rand() * 20); s = w[1 + int(rand() * 16)];
    for (j = 1; j < n; j++) s = s " " w[1 + int(rand() * 16)]; printf "{\"text\": \"%s\"}\n", s } }' > "$T/text.jsonl"
printf '{"text": "ok line"}\nthis is not json\n{"text": 5}\n{"text": "another fine line"}\n' > "$T/mixed.jsonl"

COMMON=(--init 2,64 --vocab bytes --data "$T/text.jsonl" -b 2 --ctx-len 64 --lr 3e-3 --warmup 2 --no-progress -t 2)

# --- help and bad options
expect_ok "train --help" "$M" train --help
grep -q "usage: modrwkv train" "$T/out" || bad "train --help does not print its usage"
grep -q "bit-identical" "$T/out" || bad "train --help does not state the determinism rule"
expect_fail "no --out" "no output directory" "$M" train --init 2,64 --data "$T/text.jsonl"
expect_fail "no --data" "no training data" "$M" train --init 2,64 --out "$T/x"
expect_fail "no model" "no model" "$M" train --data "$T/text.jsonl" --out "$T/x"
expect_fail "bad --init" "--init expects LAYERS,WIDTH" "$M" train --init 2x64 --data "$T/text.jsonl" --out "$T/x"
expect_fail "bad --schedule" "--schedule must be" "$M" train "${COMMON[@]}" --schedule linear --out "$T/x"
expect_fail "bad --train" "--train takes" "$M" train "${COMMON[@]}" --train everything --out "$T/x"
expect_fail "bad --lr" "expects a non-negative number" "$M" train "${COMMON[@]}" --lr fast --out "$T/x"
expect_fail "zero --lr" "--lr must be > 0" "$M" train "${COMMON[@]}" --lr 0 --steps 1 --out "$T/x"
expect_fail "adapter on a text model" "needs a multimodal start" "$M" train "${COMMON[@]}" --train adapter --steps 1 --out "$T/x"
expect_fail "encoder training on a text model" "needs a multimodal start" "$M" train "${COMMON[@]}" --train rwkv,encoder --steps 1 --out "$T/x"
expect_fail "missing data file" "nope.jsonl" "$M" train "${COMMON[@]}" --data "$T/nope.jsonl" --steps 1 --out "$T/x"
expect_fail "missing model" "nope.pth" "$M" train -m "$T/nope.pth" --data "$T/text.jsonl" --out "$T/x"
expect_fail "--resume with nothing to resume" "nothing to resume" "$M" train "${COMMON[@]}" --steps 2 --resume --out "$T/empty"
expect_fail "width not a multiple of the head size" "head size" "$M" train --init 1,96 --vocab bytes --data "$T/text.jsonl" --steps 1 --out "$T/x"

# --- a tiny model learns; its checkpoint runs in generate and loads in PyTorch
expect_ok "train 30 steps" "$M" train "${COMMON[@]}" --steps 30 --out "$T/learn"
[ "$(wc -l < "$T/learn/train.jsonl")" = 30 ] || bad "train.jsonl: expected 30 lines"
first=$(losses "$T/learn/train.jsonl" | head -1); last=$(losses "$T/learn/train.jsonl" | tail -3 | awk '{s+=$1} END {print s/NR}')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(a > 4.5 && b < 0.6 * a) }' && ok || bad "loss did not fall: first $first, last $last"
head -1 "$T/learn/train.jsonl" | grep -qE '^\{"step":1,"epoch":[0-9.]+,"loss":[0-9.]+,"lr":[0-9.e-]+,"grad_norm":[0-9.]+,"tokens":[0-9]+,"tokens_per_s":[0-9.]+,"elapsed_s":[0-9.]+\}$' \
  && ok || bad "log line format: $(head -1 "$T/learn/train.jsonl")"
expect_ok "generate with the trained model" "$M" generate -m "$T/learn/model.safetensors" -p "the cat" -n 16
grep -qE "(the|cat|sat|dog|park|mat) " "$T/out" && ok || bad "generate output does not look like the training text: $(head -c 200 "$T/out")"
expect_ok "info on the trained model" "$M" info "$T/learn/model.safetensors"
PY=$B/refenv/bin/python; [ -x "$PY" ] || PY=build/refenv/bin/python
if [ -x "$PY" ]; then
  expect_ok "safetensors.torch.load_file reads the checkpoint" "$PY" -c "
import sys; from safetensors.torch import load_file
d = load_file(sys.argv[1]); assert d['emb.weight'].shape == (256, 64) and 'blocks.1.ffn.value.weight' in d, list(d)[:8]" \
    "$T/learn/model.safetensors"
fi
expect_fail "an existing run without --resume" "already holds a training run" "$M" train "${COMMON[@]}" --steps 30 --out "$T/learn"
expect_fail "--resume with other options" "option 'lr' is 0.002 now but was 0.003" "$M" train "${COMMON[@]}" --steps 30 --lr 2e-3 --resume --out "$T/learn"
expect_fail "--resume with another thread count" "option 'threads'" "$M" train "${COMMON[@]}" --steps 30 -t 1 --resume --out "$T/learn"

# --- bad records are reported with file:line and skipped
expect_ok "data with bad records" "$M" train --init 1,64 --vocab bytes --data "$T/mixed.jsonl" --steps 2 --no-progress --out "$T/mixed"
grep -q "mixed.jsonl:2" "$T/err" && grep -q "mixed.jsonl:3" "$T/err" && ok || bad "bad records not reported: $(head -c 400 "$T/err")"

# --- determinism and the resume proof
RUN=("${COMMON[@]}" --steps 12 --grad-accum 2 --save-every 2 --schedule wsd)
expect_ok "uninterrupted run" "$M" train "${RUN[@]}" --out "$T/ref"
expect_ok "same run again" "$M" train "${RUN[@]}" --out "$T/ref2"
cmp -s "$T/ref/model.safetensors" "$T/ref2/model.safetensors" && ok || bad "same seed and options gave different weights"
# killed (SIGKILL, by itself) after step 5: the checkpoint of step 4 is the last one
MRW_TRAIN_KILL_AFTER_STEP=5 "$M" train "${RUN[@]}" --out "$T/kill" > /dev/null 2>&1
rc=$?; [ $rc -eq 137 ] && ok || bad "MRW_TRAIN_KILL_AFTER_STEP: expected exit 137, got $rc"
[ "$(wc -l < "$T/kill/train.jsonl")" = 5 ] || bad "killed run: expected 5 log lines"
expect_ok "resume after kill" "$M" train "${RUN[@]}" --resume --out "$T/kill"
grep -q "resumed at step 4" "$T/err" && ok || bad "did not resume at step 4: $(tail -c 300 "$T/err")"
cmp -s "$T/ref/model.safetensors" "$T/kill/model.safetensors" && ok || bad "killed + resumed weights differ from the uninterrupted run"
diff <(cut -d, -f1-5 "$T/ref/train.jsonl") <(cut -d, -f1-5 "$T/kill/train.jsonl") > /dev/null && ok || bad "resumed log differs (step, epoch, loss, lr, grad_norm)"
# a crash inside a save leaves the previous checkpoint intact; resuming then still reaches the same weights
MRW_TRAIN_KILL_AFTER_STEP=2 "$M" train "${RUN[@]}" --out "$T/crash" > /dev/null 2>&1
cp "$T/crash/resume.safetensors" "$T/resume-2" && cp "$T/crash/model.safetensors" "$T/model-2"
MRW_TRAIN_CRASH_IN_SAVE=1 "$M" train "${RUN[@]}" --resume --out "$T/crash" > /dev/null 2>&1
rc=$?; [ $rc -ge 128 ] && ok || bad "MRW_TRAIN_CRASH_IN_SAVE: expected an abort, got exit $rc"
cmp -s "$T/crash/resume.safetensors" "$T/resume-2" && cmp -s "$T/crash/model.safetensors" "$T/model-2" && ok \
  || bad "a crash during the save changed the previous checkpoint"
expect_ok "resume after a crash in the save" "$M" train "${RUN[@]}" --resume --out "$T/crash"
cmp -s "$T/ref/model.safetensors" "$T/crash/model.safetensors" && ok || bad "crash-in-save + resume weights differ"
# kill -9 from outside at whatever moment the run is in, once a second checkpoint exists
"$M" train "${RUN[@]}" --out "$T/ext" > /dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -f "$T/ext/train.jsonl" ] && [ "$(wc -l < "$T/ext/train.jsonl")" -ge 5 ] && break
  kill -0 $pid 2> /dev/null || break
  sleep 0.05
done
kill -9 $pid 2> /dev/null; wait $pid 2> /dev/null
if [ -f "$T/ext/resume.safetensors" ]; then
  expect_ok "resume after an external kill -9" "$M" train "${RUN[@]}" --resume --out "$T/ext"
  cmp -s "$T/ref/model.safetensors" "$T/ext/model.safetensors" && ok || bad "kill -9 + resume weights differ"
else
  bad "the externally killed run left no checkpoint"
fi

# --- multimodal: stage 1 (adapter; RWKV frozen) from a v1 checkpoint + a Hugging Face encoder, stage 2 (adapter +
# RWKV) from a v2 checkpoint; both outputs run in `modrwkv chat --image`, and the stage-1 resume is exact too
MM=tests/fixtures/modrwkv
cp $MM/media/image_a.png $MM/media/image_b.png $MM/media/image_32.png "$T/"
for i in 0 1 2 3; do for p in "image_a.png:a disc" "image_b.png:a checkerboard" "image_32.png:noise"; do
  printf '{"image": "%s", "conversations": [{"from": "human", "value": "<image>\\nWhat is this?"}, {"from": "gpt", "value": "%s"}]}\n' "${p%%:*}" "${p#*:}"
done; done > "$T/llava.jsonl"
S1=(-m $MM/v1_vision/rwkv-0.pth --encoder $MM/siglip --vocab bytes --train adapter --data "$T/llava.jsonl" -b 3 --ctx-len 96
    --lr 3e-3 --no-progress -t 2 --feature-cache "$T/fcache")
expect_ok "stage 1 (v1 + encoder)" "$M" train "${S1[@]}" --steps 12 --out "$T/s1"
first=$(losses "$T/s1/train.jsonl" | head -1); last=$(losses "$T/s1/train.jsonl" | tail -3 | awk '{s+=$1} END {print s/NR}')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }' && ok || bad "stage 1 loss did not fall: first $first, last $last"
[ "$(ls "$T/fcache"/* 2> /dev/null | wc -l)" -ge 1 ] && ok || bad "--feature-cache wrote nothing"
# the feature cache within a micro-batch: 6 records on 3 images, each image twice; a fresh cache is written once per
# image (its first medium; the second copy reads it), a filled one is only read (MRW_TRAIN_ENCODE_COUNT=1: this
# rank's media encoded / read from the cache / checked for other ranks / entries written)
cnt() { grep -o "[0-9]* media encoded, [0-9]* read from the feature cache, [0-9]* checked for other ranks, [0-9]* feature-cache entries written" "$T/err" | awk '{ print $1, $4, $10, $15 }'; }
S1B=(-m $MM/v1_vision/rwkv-0.pth --encoder $MM/siglip --vocab bytes --train adapter --data "$T/llava.jsonl" -b 6
     --ctx-len 96 --steps 1 --lr 3e-3 --no-progress -t 2 --feature-cache "$T/fcache6")
expect_ok "stage 1, a fresh cache, each image twice in the micro-batch" env MRW_TRAIN_ENCODE_COUNT=1 "$M" train "${S1B[@]}" --out "$T/s1b1"
[ "$(cnt)" = "3 3 0 3" ] && ok || bad "fresh cache, batch 6 on 3 images: encoded/cached/checked/written '$(cnt)', want 3 3 0 3"
expect_ok "stage 1, the filled cache" env MRW_TRAIN_ENCODE_COUNT=1 "$M" train "${S1B[@]}" --out "$T/s1b2"
[ "$(cnt)" = "0 6 0 0" ] && ok || bad "filled cache, batch 6 on 3 images: encoded/cached/checked/written '$(cnt)', want 0 6 0 0"
expect_ok "chat with the stage-1 output" "$M" chat -m "$T/s1/model.safetensors" --vocab bytes --image "$T/image_a.png" -n 4 "What is this?"
expect_ok "info of the stage-1 output" "$M" info "$T/s1/model.safetensors"
grep -q "adapter *v1; features prepended" "$T/out" && ok || bad "stage-1 output: $(cat "$T/out")"
MRW_TRAIN_KILL_AFTER_STEP=3 "$M" train "${S1[@]}" --steps 6 --save-every 2 --out "$T/s1k" > /dev/null 2>&1
expect_ok "stage 1 resume" "$M" train "${S1[@]}" --steps 6 --save-every 2 --resume --out "$T/s1k"
expect_ok "stage 1 uninterrupted" "$M" train "${S1[@]}" --steps 6 --save-every 2 --out "$T/s1r"
cmp -s "$T/s1r/model.safetensors" "$T/s1k/model.safetensors" && ok || bad "stage 1: killed + resumed weights differ"
if [ -x "$PY" ]; then
  expect_ok "stage 1 leaves the RWKV weights as they were" "$PY" -c "
import sys, torch; from safetensors.torch import load_file
a = torch.load(sys.argv[1], map_location='cpu'); b = load_file(sys.argv[2])
n = 0
for k, v in a.items():
    if k.startswith('modality.') or k in ('blocks.0.att.v0', 'blocks.0.att.v1', 'blocks.0.att.v2'): continue
    assert torch.equal(v.float(), b['llm.' + k]), k; n += 1
assert n > 60 and any(k.startswith('proj.') for k in b) and any(k.startswith('encoder.model.') for k in b)"     $MM/v1_vision/rwkv-0.pth "$T/s1/model.safetensors"
fi
# a new trained compression in stage 1 must survive into stage 2's checkpoint (its stride is metadata)
expect_ok "stage 1 with --compress 3,2" "$M" train "${S1[@]}" --compress 3,2 --steps 2 --out "$T/s1c"
expect_ok "stage 2 from the compressed stage-1 output" "$M" train -m "$T/s1c/model.safetensors" --vocab bytes \
  --train adapter,rwkv --data "$T/llava.jsonl" -b 3 --ctx-len 96 --lr 3e-3 --steps 2 --no-progress -t 2 --out "$T/s2c"
expect_ok "chat with the compressed stage-2 output" "$M" chat -m "$T/s2c/model.safetensors" --vocab bytes --image "$T/image_a.png" -n 2 "What?"
expect_ok "stage 2 (v2 checkpoint)" "$M" train -m $MM/v2/rwkv-0.pth --encoder $MM/siglip --vocab "$VOCAB" --train adapter,rwkv \
  --data "$T/llava.jsonl" -b 2 --ctx-len 96 --lr 3e-3 --steps 4 --no-progress -t 2 --out "$T/s2"
expect_ok "encoder stage (v2 checkpoint)" "$M" train -m $MM/v2/rwkv-0.pth --encoder $MM/siglip --vocab "$VOCAB" \
  --train adapter,rwkv,encoder --data "$T/llava.jsonl" -b 2 --ctx-len 96 --lr 3e-3 --steps 4 --no-progress -t 2 --out "$T/s3"
close "$(losses "$T/s3/train.jsonl" | head -1)" "$(losses "$T/s2/train.jsonl" | head -1)" && ok \
  || bad "the training encoder's first loss differs from the frozen (inference) encoder's"
expect_ok "chat with the encoder-stage output" "$M" chat -m "$T/s3/model.safetensors" --vocab "$VOCAB" --image "$T/image_a.png" -n 4 "What is this?"
cp $MM/media/speech.wav "$T/"
printf '{"audio": "speech.wav", "text": "hello"}\n{"audio": "speech.wav", "text": "a chirp"}\n' > "$T/asr.jsonl"
ASR=(-m $MM/v1_audio/rwkv-0.pth --encoder $MM/whisper --vocab bytes --data "$T/asr.jsonl" -b 1 --grad-accum 2 --ctx-len 96
     --lr 3e-3 --steps 2 --no-progress -t 2)
expect_ok "ASR stage 2 (v1 audio + Whisper)" "$M" train "${ASR[@]}" --train adapter,rwkv --out "$T/a2"
expect_ok "ASR encoder stage (Whisper trains)" "$M" train "${ASR[@]}" --train adapter,rwkv,encoder --out "$T/a3"
close "$(losses "$T/a3/train.jsonl" | head -1)" "$(losses "$T/a2/train.jsonl" | head -1)" && ok \
  || bad "the training Whisper's first loss differs from the frozen (inference) one's"
expect_ok "chat --audio with the Whisper-stage output" "$M" chat -m "$T/a3/model.safetensors" --vocab bytes --audio "$T/speech.wav" -n 4 "hi"
expect_ok "chat with the stage-2 output (no --encoder needed)" "$M" chat -m "$T/s2/model.safetensors" --vocab "$VOCAB" --image "$T/image_a.png" -n 4 "What is this?"
{ printf '{"image": ["image_a.png", "image_b.png"], "conversations": [{"from": "human", "value": "<image> and <image>: same?"}, {"from": "gpt", "value": "no"}]}\n'
  printf '{"conversations": [{"from": "human", "value": "hello"}, {"from": "gpt", "value": "hi there"}]}\n'
  printf '{"image": "missing.png", "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "?"}]}\n'
  head -3 "$T/llava.jsonl"; } > "$T/mixed_mm.jsonl"
expect_ok "stage 1 (v2): two images in a record, a text-only record, a missing image" "$M" train -m $MM/v2/rwkv-0.pth \
  --encoder $MM/siglip --vocab "$VOCAB" --train adapter --data "$T/mixed_mm.jsonl" -b 2 --ctx-len 96 --steps 4 --no-progress --out "$T/s1v2"
grep -q "missing.png" "$T/err" && ok || bad "the missing image was not reported: $(tail -c 300 "$T/err")"
expect_fail "images in a text run" "the record has media" "$M" train --init 1,64 --vocab bytes --data "$T/llava.jsonl" --steps 1 --no-progress --out "$T/textmm"

finish cli_train.sh
