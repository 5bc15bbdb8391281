#!/usr/bin/env bash
# `modrwkv chat / generate / encode --device cuda` on ModRWKV image models (GPU machine): the vision encoder on the GPU
# (bf16), the prompt (text tokens and feature rows) prefilled on the GPU, decode on the GPU; against the CPU
# (`--device cpu --exact`: fp32 activations, as the GPU keeps them). The numerical comparison of the features is in
# test_modrwkv_gpu (rows "mm ..."), that of the prompt steps in test_decode_gpu (rows "prompt", "pseq"); here:
#   models/vision (the project's trained bundle): `encode --device cuda` writes the CPU's shapes; the greedy answers
#     to five questions about example.png equal the CPU's; `generate --image` (24 tokens) equals the CPU's;
#   a random bundle made by the project's own tools (train --init 2,128, 3 text steps; stage 1 with the SigLIP
#     fixture, 2 steps): chat --device cuda runs; its answer against the CPU's is printed (not checked: a random
#     model's logits are near-ties, and the GPU's bf16 encoder moves the features by ~5e-3);
#   models/speech (the project's Whisper-tiny bundle, q8_0): `encode --device cuda --audio` writes the CPU's shapes;
#     the transcription and an answer equal the CPU's;
#   WavLM (a small model made here: the tools' 2 x 128 RWKV-7 + the wavlm_group fixture encoder + a v1 audio adapter
#     trained 2 steps on the CPU): `encode --device cuda --audio` writes the CPU's shapes, `chat --device cuda --audio`
#     answers as `--device cpu --exact` (16 tokens; the encoder values are compared in test_modrwkv_gpu);
#   errors: a model the GPU decoder cannot take (the v1 fixture: LoRA ranks 12 and 20) fails with a message, `encode
#     --device cuda --input` is refused;
#   time to first token of `chat -m models/vision/model.safetensors --image models/vision/example.png "Count the
#     stars."` on the CPU (default and --exact) and the GPU, 3 runs each (the "[first token ...]" line).
# Needs MODRWKV (default build-cuda/modrwkv) and GPULIBS (default build-cuda/gpulibs).
#   tests/cuda/mm_chat_gpu.sh            (logs in $OUT or ./cuda-out)
set -u
cd "$(dirname "$0")/../.."
M=${MODRWKV:-build-cuda/modrwkv}
out=${OUT:-cuda-out}; mkdir -p "$out"
libs=${GPULIBS:-build-cuda/gpulibs}
[ -d "$libs" ] && export LD_LIBRARY_PATH="$(cd "$libs" && pwd):${LD_LIBRARY_PATH:-}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0; checks=0
ok() { checks=$((checks+1)); echo "ok: $*"; }
bad() { checks=$((checks+1)); fails=$((fails+1)); echo "FAIL: $*"; }
V=models/vision/model.safetensors
IMG=models/vision/example.png
F=tests/fixtures/modrwkv

# encode
if "$M" encode -m $V --image $IMG -o "$T/cpu.st" 2> "$T/ecpu" && "$M" encode -m $V --image $IMG -o "$T/gpu.st" --device cuda 2> "$T/egpu"; then
  if [ "$(sed 's/cpu.st/X/' "$T/ecpu")" = "$(sed 's/gpu.st/X/' "$T/egpu")" ]; then ok "encode shapes: $(cat "$T/egpu")"; else bad "encode: $(cat "$T/ecpu") vs $(cat "$T/egpu")"; fi
else bad "encode: $(cat "$T/ecpu" "$T/egpu" | tail -c 400)"; fi
if "$M" encode -m $V --input $F/golden.safetensors -o "$T/x.st" --device cuda 2> "$T/err"; then bad "encode --device cuda --input accepted"
elif grep -q "runs on the CPU" "$T/err"; then ok "encode --device cuda --input refused"; else bad "encode --input: $(cat "$T/err")"; fi
S=models/speech/model-q8_0.gguf
WAV=models/speech/example.wav
if "$M" encode -m $S --audio $WAV -o "$T/acpu.st" 2> "$T/ecpu" && "$M" encode -m $S --audio $WAV -o "$T/agpu.st" --device cuda 2> "$T/egpu"; then
  if [ "$(sed 's/acpu.st/X/' "$T/ecpu")" = "$(sed 's/agpu.st/X/' "$T/egpu")" ]; then ok "encode --audio shapes: $(cat "$T/egpu")"; else bad "encode --audio: $(cat "$T/ecpu") vs $(cat "$T/egpu")"; fi
else bad "encode --audio: $(cat "$T/ecpu" "$T/egpu" | tail -c 400)"; fi
# speech: transcribe (no question) and a question about the recording
for q in "" "What did the speaker say?"; do
  "$M" chat -m $S --audio $WAV ${q:+"$q"} --device cpu --exact -q -n 48 > "$T/sc" 2> "$T/sce" || bad "speech chat cpu: $(cat "$T/sce")"
  "$M" chat -m $S --audio $WAV ${q:+"$q"} --device cuda -q -n 48 > "$T/sg" 2> "$T/sge" || bad "speech chat cuda: $(cat "$T/sge")"
  if cmp -s "$T/sc" "$T/sg"; then ok "speech chat '${q:-(transcribe)}' -> '$(cat "$T/sg")' on both"
  else bad "speech chat '${q:-(transcribe)}': cpu '$(cat "$T/sc")' cuda '$(cat "$T/sg")'"; fi
done

# chat, models/vision: five questions
i=0
for q in "Count the stars." "What is in the image?" "In which part of the image is the cross?" "What colour is the star in the centre?" "Is there a circle?"; do
  i=$((i+1))
  "$M" chat -m $V --image $IMG "$q" --device cpu --exact -q > "$T/c$i" 2> "$T/ce$i" || bad "chat cpu '$q': $(cat "$T/ce$i")"
  "$M" chat -m $V --image $IMG "$q" --device cuda -q > "$T/g$i" 2> "$T/ge$i" || bad "chat cuda '$q': $(cat "$T/ge$i")"
  if cmp -s "$T/c$i" "$T/g$i"; then ok "chat '$q' -> '$(cat "$T/g$i")' on both"; else bad "chat '$q': cpu '$(cat "$T/c$i")' cuda '$(cat "$T/g$i")'"; fi
done
G=(-m $V --image $IMG -p $'\x16User: Describe the image.\x17\x16Assistant:' -n 24 --ignore-stop -q)
"$M" generate "${G[@]}" --device cpu --exact > "$T/gc" 2>&1; "$M" generate "${G[@]}" --device cuda > "$T/gg" 2>&1
if cmp -s "$T/gc" "$T/gg"; then ok "generate --image (24 tokens) equal: $(tr -c '[:print:]' '?' < "$T/gg")"
else bad "generate --image: cpu '$(tr -c '[:print:]' '?' < "$T/gc")' cuda '$(tr -c '[:print:]' '?' < "$T/gg")'"; fi
# two turns with the image in the first (the state goes CPU -> GPU -> CPU between turns)
printf 'Count the stars.\nWhat is in the image?\n' > "$T/turns"
"$M" chat -m $V --image $IMG --device cpu --exact -q < "$T/turns" > "$T/tc" 2>&1; "$M" chat -m $V --image $IMG --device cuda -q < "$T/turns" > "$T/tg" 2>&1
if cmp -s "$T/tc" "$T/tg"; then ok "two-turn chat equal: $(tr '\n' '|' < "$T/tg")"; else bad "two-turn chat: cpu '$(tr '\n' '|' < "$T/tc")' cuda '$(tr '\n' '|' < "$T/tg")'"; fi

# a random bundle made by the project's tools
echo '{"text": "A red square on a dark field. Two shapes, one blue and one green. Mostly grey."}' > "$T/text.jsonl"
printf '{"image": "%s", "conversations": [{"from": "human", "value": "<image>\\nWhat is it?"}, {"from": "gpt", "value": "A square."}]}\n' \
  "$(pwd)/$F/media/image_a.png" "$(pwd)/$F/media/image_b.png" > "$T/data.jsonl"
if "$M" train --init 2,128 --vocab bytes --data "$T/text.jsonl" --batch 1 --ctx-len 64 --steps 3 --seed 7 --no-progress --out "$T/lm" > "$T/tr1" 2>&1 &&
   "$M" train -m "$T/lm/model.safetensors" --encoder $F/siglip --adapter v1 --train adapter --vocab bytes --data "$T/data.jsonl" \
     --batch 1 --ctx-len 64 --steps 2 --seed 7 --no-progress --out "$T/s1" > "$T/tr2" 2>&1; then
  R=(-m "$T/s1/model.safetensors" --image $F/media/image_a.png "What is it?" -n 16 -q)
  "$M" chat "${R[@]}" --device cpu --exact > "$T/rc" 2>&1
  if "$M" chat "${R[@]}" --device cuda > "$T/rg" 2>&1; then
    ok "random bundle: chat --device cuda runs"
    echo "   random bundle answers: cpu '$(tr -c '[:print:]' '?' < "$T/rc")' cuda '$(tr -c '[:print:]' '?' < "$T/rg")' ($(cmp -s "$T/rc" "$T/rg" && echo equal || echo differ))"
  else bad "random bundle chat --device cuda: $(tail -c 400 "$T/rg")"; fi
else bad "making the random bundle: $(tail -c 300 "$T/tr1" "$T/tr2")"; fi

# WavLM: a small ModRWKV model made by the project's tools (a 2 x 128 byte-level RWKV-7, 10 text steps; stage 1 with
# the wavlm_group fixture encoder and a fresh v1 audio adapter, 2 steps; all on the CPU), then encode / chat --audio
W=tests/fixtures/audio_enc/wavlm_group
SP=$F/media/speech.wav
echo '{"text": "hello there, a chirp and a burst, some noise at the end. The tone rises."}' > "$T/wtext.jsonl"
printf '{"audio": "%s", "text": "hello there"}\n' "$(pwd)/$SP" > "$T/wasr.jsonl"
if "$M" train --init 2,128 --vocab bytes --data "$T/wtext.jsonl" --batch 1 --ctx-len 64 --steps 10 --seed 7 --no-progress --out "$T/wlm" > "$T/wtr1" 2>&1 &&
   "$M" train -m "$T/wlm/model.safetensors" --encoder $W --adapter v1 --train adapter --vocab bytes --data "$T/wasr.jsonl" \
     --batch 1 --ctx-len 256 --steps 2 --seed 7 --no-progress --out "$T/ws1" > "$T/wtr2" 2>&1; then
  WM="$T/ws1/model.safetensors"
  if "$M" encode -m "$WM" --audio $SP -o "$T/wcpu.st" 2> "$T/ecpu" && "$M" encode -m "$WM" --audio $SP -o "$T/wgpu.st" --device cuda 2> "$T/egpu"; then
    if [ "$(sed 's/wcpu.st/X/' "$T/ecpu")" = "$(sed 's/wgpu.st/X/' "$T/egpu")" ]; then ok "WavLM encode --audio shapes: $(cat "$T/egpu")"; else bad "WavLM encode: $(cat "$T/ecpu") vs $(cat "$T/egpu")"; fi
  else bad "WavLM encode: $(cat "$T/ecpu" "$T/egpu" | tail -c 400)"; fi
  R=(-m "$WM" --audio $SP "What did you hear?" -n 16 -q)
  "$M" chat "${R[@]}" --device cpu --exact > "$T/wc" 2> "$T/wce" || bad "WavLM chat cpu: $(tail -c 300 "$T/wce")"
  if "$M" chat "${R[@]}" --device cuda > "$T/wg" 2> "$T/wge"; then
    if cmp -s "$T/wc" "$T/wg"; then ok "WavLM chat --audio -> '$(tr -c '[:print:]' '?' < "$T/wg")' on both"
    else bad "WavLM chat --audio: cpu '$(tr -c '[:print:]' '?' < "$T/wc")' cuda '$(tr -c '[:print:]' '?' < "$T/wg")'"; fi
  else bad "WavLM chat --device cuda: $(tail -c 400 "$T/wge")"; fi
  for dev in cpu cuda; do
    "$M" chat -m "$WM" --audio $SP --device $dev -n 8 > "$T/o" 2> "$T/e"
    echo "ttft WavLM model --device $dev: $(grep 'first token' "$T/e")"
  done
else bad "making the WavLM model: $(tail -c 300 "$T/wtr1" "$T/wtr2")"; fi

# errors
"$M" chat -m $F/v1_vision/rwkv-0.pth --encoder $F/siglip --image $F/media/image_a.png "hi" --device cuda -n 2 > "$T/out" 2> "$T/err"; rc=$?
if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -qi "GPU decode" "$T/err"; then ok "v1 fixture refused by the GPU decoder: $(cat "$T/err")"; else bad "v1 fixture --device cuda: rc $rc $(cat "$T/err")"; fi

# time to first token
for dev in "cpu" "cpu --exact" "cuda"; do
  for r in 1 2 3; do
    "$M" chat -m $V --image $IMG "Count the stars." --device $dev > "$T/o" 2> "$T/e"
    echo "ttft --device $dev run $r: $(grep 'first token' "$T/e") answer '$(cat "$T/o")'"
  done
done
for dev in "cpu" "cuda"; do
  for r in 1 2; do
    "$M" chat -m $S --audio $WAV --device $dev -n 8 > "$T/o" 2> "$T/e"
    echo "ttft speech --device $dev run $r: $(grep 'first token' "$T/e")"
  done
done
echo "mm_chat_gpu.sh: $checks checks, $fails failed"
[ $fails -eq 0 ]
