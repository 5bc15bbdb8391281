#!/usr/bin/env bash
# `modrwkv train --encoder-device cpu|cuda` (where the frozen SigLIP / CLIP / Whisper encoder runs with --device cuda):
# a bad value fails clearly, `cuda` without --device cuda is refused naming both options (nothing written), `cpu` on
# a CPU run is accepted (and trains as without it: the same losses), the help lists it, and `--device cuda
# --encoder-device cuda|cpu` trains on a GPU or says why not (a CPU-only build: "built without CUDA"). The GPU
# encoder against the CPU encoder: tests/cuda/train_mm_gpu.sh and train_audio_gpu.sh (GPU machine).
# Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
MM=tests/fixtures/modrwkv
cp $MM/media/image_a.png $MM/media/speech.wav "$T/"
printf '{"image": "image_a.png", "conversations": [{"from": "human", "value": "<image>\\nWhat is it?"}, {"from": "gpt", "value": "A square."}]}\n' > "$T/d.jsonl"
printf '{"audio": "speech.wav", "text": "hello"}\n' > "$T/a.jsonl"
S1=(--init 1,64 --vocab bytes --encoder $MM/siglip --adapter v1 --train adapter --data "$T/d.jsonl" --ctx-len 64 --steps 2
    --no-progress -t 1)
expect_fail "bad --encoder-device" "--encoder-device must be cpu or cuda, not 'tpu'" \
  "$M" train "${S1[@]}" --encoder-device tpu --out "$T/x1"
expect_fail "--encoder-device cuda without --device cuda" "--encoder-device cuda .*needs --device cuda" \
  "$M" train "${S1[@]}" --encoder-device cuda --out "$T/x2"
expect_fail "--encoder-device=cuda --device cpu" "--encoder-device cuda .*needs --device cuda" \
  "$M" train "${S1[@]}" --encoder-device=cuda --device cpu --out "$T/x3"
for i in 1 2 3; do [ ! -e "$T/x$i" ] && ok || bad "a refused run created its --out directory x$i"; done
expect_ok "--encoder-device cpu on the CPU" "$M" train "${S1[@]}" --encoder-device cpu --out "$T/c1"
expect_ok "the same run without it" "$M" train "${S1[@]}" --out "$T/c0"
cmp -s <(grep -o '"loss":[0-9.eE+-]*' "$T/c0/train.jsonl") <(grep -o '"loss":[0-9.eE+-]*' "$T/c1/train.jsonl") && ok ||
  bad "--encoder-device cpu changed a CPU run's losses"
"$M" train --help > "$T/help" 2>&1
grep -q -- "--encoder-device D" "$T/help" && ok || bad "train --help does not list --encoder-device"
supported() { local n=$1; shift
  if "$M" train "$@" --device cuda --out "$T/$n" > "$T/out" 2> "$T/err"; then
    ok # a CUDA build with a GPU: it trained
  elif grep -q "built without CUDA" "$T/err"; then
    ok
    [ ! -e "$T/$n/model.safetensors" ] && ok || bad "--device cuda on a CPU build wrote a model ($n)"
  elif grep -qiE "no CUDA device|cuda" "$T/err"; then
    ok # a CUDA build on a machine without a GPU: a clear CUDA error
  else
    bad "$n --device cuda: unexpected failure: $(head -c 400 "$T/err")"
  fi
}
supported g1 "${S1[@]}" --encoder-device cuda
supported g2 "${S1[@]}" --encoder-device cpu
supported g3 --init 1,64 --vocab bytes --encoder $MM/whisper --adapter v1 --data "$T/a.jsonl" --ctx-len 64 --steps 1 \
  --no-progress -t 1 --train adapter --encoder-device cuda
finish cli_train_encoder_device.sh
