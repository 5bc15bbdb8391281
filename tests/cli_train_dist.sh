#!/usr/bin/env bash
# `modrwkv train --gpus N / --zero` without a GPU (docs/DISTRIBUTED.md): the options are listed, --gpus > 1 and --zero
# without --device cuda are refused, the CPU-only build refuses --gpus with --device cuda (it has no CUDA), an
# uneven split of --batch is refused before anything starts, and a bad rank environment is reported by name; the same
# for a ModRWKV stage-1 run, which is no longer refused as text-only.
# The GPU side (2 GPUs vs 1 at the same global batch, ZeRO-1, resume across GPU counts) is
# tests/cuda/train_dist_gpu.sh, run on a machine with 2 GPUs. Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
printf '{"text": "a short line of text"}\n{"text": "another line"}\n' > "$T/text.jsonl"
COMMON=(--init 1,64 --vocab bytes --data "$T/text.jsonl" --ctx-len 32 --steps 1 --no-progress -t 1)
"$M" train --help > "$T/help" 2>&1
grep -q -- "--gpus N" "$T/help" && grep -q -- "--zero 0|1" "$T/help" && grep -q -- "--allreduce" "$T/help" &&
  grep -q "Text and the ModRWKV stages" "$T/help" && ok || bad "train --help does not list --gpus / --zero / --allreduce"
expect_fail "--gpus 2 on the CPU" "add --device cuda" "$M" train "${COMMON[@]}" --gpus 2 --out "$T/a"
expect_fail "--zero on the CPU" "--zero needs --device cuda" "$M" train "${COMMON[@]}" --zero 1 --out "$T/a"
expect_fail "--gpus 0" "--gpus" "$M" train "${COMMON[@]}" --gpus 0 --out "$T/a"
expect_fail "--zero 2" "--zero" "$M" train "${COMMON[@]}" --zero 2 --out "$T/a"
expect_fail "--allreduce fp16" "--allreduce must be fp32 or bf16" "$M" train "${COMMON[@]}" --allreduce fp16 --out "$T/a"
if "$M" train "${COMMON[@]}" --device cuda --gpus 2 --out "$T/b" > "$T/out" 2> "$T/err"; then
  bad "--device cuda --gpus 2 without GPUs succeeded"
elif grep -q "built without CUDA" "$T/err"; then
  ok # the CPU build
  [ ! -e "$T/b/model.safetensors" ] && ok || bad "--gpus 2 on a CPU build wrote a model"
else
  # a CUDA build on a machine without GPUs: the batch split and the environment are checked, then CUDA fails
  grep -qiE "cuda|nccl|gpu" "$T/err" && ok || bad "--gpus 2 without GPUs: unexpected message: $(head -c 300 "$T/err")"
  expect_fail "--gpus 2 with an odd batch" "multiple of 2" "$M" train "${COMMON[@]}" --device cuda --gpus 2 --batch 3 --out "$T/c"
  WORLD_SIZE=2 expect_fail "WORLD_SIZE without RANK" "RANK is not set" "$M" train "${COMMON[@]}" --device cuda --out "$T/d"
  WORLD_SIZE=2 RANK=5 expect_fail "RANK out of range" "RANK='5'" "$M" train "${COMMON[@]}" --device cuda --out "$T/d"
fi
expect_ok "--gpus 1 --device cpu trains as before" "$M" train "${COMMON[@]}" --gpus 1 --out "$T/cpu"
# the ModRWKV stages are data parallel too (docs/DISTRIBUTED.md): the same refusals, and no "text only" one
MM=tests/fixtures/modrwkv
cp $MM/media/image_a.png "$T/"
printf '{"image": "image_a.png", "conversations": [{"from": "human", "value": "<image>\\nWhat is it?"}, {"from": "gpt", "value": "A square."}]}\n' > "$T/mm.jsonl"
S1=(--init 1,64 --vocab bytes --encoder $MM/siglip --adapter v1 --train adapter --data "$T/mm.jsonl" --ctx-len 64 --steps 1
    --no-progress -t 1)
expect_fail "stage 1 --gpus 2 on the CPU" "add --device cuda" "$M" train "${S1[@]}" --gpus 2 --out "$T/m1"
expect_fail "stage 1 --zero 1 on the CPU" "--zero needs --device cuda" "$M" train "${S1[@]}" --zero 1 --out "$T/m1"
expect_ok "stage 1 on the CPU" "$M" train "${S1[@]}" --out "$T/s1"
S2=(-m "$T/s1/model.safetensors" --vocab bytes --data "$T/mm.jsonl" --train adapter,rwkv --steps 1 --no-progress -t 1)
dp() { local n=$1; shift # a ModRWKV run with --gpus 2: trains (a CUDA build with 2 GPUs and NCCL) or fails for want of them
  if "$M" train "$@" --device cuda --gpus 2 --batch 2 --out "$T/$n" > "$T/out" 2> "$T/err"; then
    ok
  elif grep -q "covers plain text training only" "$T/err"; then
    bad "$n: --gpus 2 is still refused as text-only: $(head -c 300 "$T/err")"
  elif grep -q "built without CUDA" "$T/err"; then
    ok # the CPU build
    [ ! -e "$T/$n/model.safetensors" ] && ok || bad "$n: --gpus 2 on a CPU build wrote a model"
  else
    grep -qiE "cuda|nccl|gpu" "$T/err" && ok || bad "$n --gpus 2: unexpected message: $(head -c 300 "$T/err")"
    expect_fail "$n --gpus 2 with an odd batch" "multiple of 2" "$M" train "$@" --device cuda --gpus 2 --batch 3 \
      --out "$T/${n}_odd"
  fi
}
dp stage1 "${S1[@]}" --zero 1 --allreduce bf16
dp stage2 "${S2[@]}"
[ ! -e "$T/m1" ] && ok || bad "a refused ModRWKV run wrote its --out"
finish cli_train_dist.sh
