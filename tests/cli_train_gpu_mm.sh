#!/usr/bin/env bash
# `modrwkv train --device cuda` on the ModRWKV stages: what the GPU path does not cover is refused with a message
# naming the option (--train encoder without the adapter), in every build, before anything is written; supported
# runs (stage 1, --compress, the vision encoder trained, an audio stage, data parallelism) say "built without CUDA"
# in a CPU-only build (a CUDA build trains them on the GPU: tests/cuda/train_mm_gpu.sh, train_enc_gpu.sh and
# train_audio_gpu.sh, run on a GPU machine). Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
MM=tests/fixtures/modrwkv
cp $MM/media/image_a.png "$T/"
printf '{"image": "image_a.png", "conversations": [{"from": "human", "value": "<image>\\nWhat is it?"}, {"from": "gpt", "value": "A square."}]}\n' > "$T/d.jsonl"
S1=(--init 1,64 --vocab bytes --encoder $MM/siglip --adapter v1 --data "$T/d.jsonl" --ctx-len 64 --steps 1 --no-progress -t 1)
expect_fail "--train encoder --device cuda" "--train \.\.\.,encoder needs the adapter trained too on the GPU" \
  "$M" train "${S1[@]}" --train encoder --device cuda --out "$T/x1"
[ ! -e "$T/x1" ] && ok || bad "a refused run created its --out directory x1"
# (data parallelism covers the ModRWKV stages: --gpus / --zero / --allreduce, tests/cli_train_dist.sh)
# a ModRWKV checkpoint as the start (a stage-2 run from a CPU stage 1, below)
expect_ok "stage 1 on the CPU" "$M" train "${S1[@]}" --train adapter --out "$T/s1"
# supported runs: train on a GPU, or say why not
cp $MM/media/speech.wav "$T/"
printf '{"audio": "speech.wav", "text": "hello"}\n' > "$T/a.jsonl"
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
supported probe "${S1[@]}" --train adapter
supported probe_c "${S1[@]}" --train adapter --compress 3,2
supported probe_e "${S1[@]}" --train adapter,encoder
supported probe_c2 -m "$T/s1/model.safetensors" --vocab bytes --data "$T/d.jsonl" --train adapter,rwkv --compress 3,2 \
  --steps 1 --no-progress -t 1
supported probe_a --init 1,64 --vocab bytes --encoder $MM/whisper --adapter v1 --data "$T/a.jsonl" --ctx-len 64 \
  --steps 1 --no-progress -t 1 --train adapter
finish cli_train_gpu_mm.sh
