#!/usr/bin/env bash
# `modrwkv train --device`: a bad value fails clearly; a build without CUDA refuses `--device cuda` with a message
# that says so (a CUDA build trains on the GPU instead: tests/cuda/train_cli_gpu.sh, run on a GPU machine).
# Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
printf '{"text": "a short line of text"}\n{"text": "another line"}\n' > "$T/text.jsonl"
COMMON=(--init 1,64 --vocab bytes --data "$T/text.jsonl" --ctx-len 32 --steps 1 --no-progress -t 1)
expect_fail "bad --device" "--device must be cpu or cuda" "$M" train "${COMMON[@]}" --device tpu --out "$T/x"
"$M" train --help > "$T/help" 2>&1
grep -q -- "--device D" "$T/help" && ok || bad "train --help does not list --device"
if "$M" train "${COMMON[@]}" --device cuda --out "$T/probe" > "$T/out" 2> "$T/err"; then
  ok # a CUDA build with a GPU: it trained
elif grep -q "built without CUDA" "$T/err"; then
  ok # the CPU build says so
  [ ! -e "$T/probe/model.safetensors" ] && ok || bad "--device cuda on a CPU build wrote a model"
elif grep -qiE "no CUDA device|cuda" "$T/err"; then
  ok # a CUDA build on a machine without a GPU: a clear CUDA error
else
  bad "--device cuda: unexpected failure: $(head -c 400 "$T/err")"
fi
expect_ok "--device cpu trains" "$M" train "${COMMON[@]}" --device cpu --out "$T/cpu"
finish cli_train_device.sh
