#!/usr/bin/env bash
# `modrwkv generate / chat --device`: a bad value fails clearly; a build without CUDA refuses `--device cuda` with a
# message that says so. A CUDA build on a GPU machine (run this script there with build-cuda as $1; docs/CUDA.md,
# "Decode on the GPU") generates on the GPU: greedy text equal to the CPU's, the same --state-out to 1e-3, and a
# two-turn chat equal to the CPU's. Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
"$M" init -o "$T/m.safetensors" --layers 2 --embd 128 --vocab-size 256 --dtype bf16 --seed 3 > /dev/null 2>&1 ||
  bad "init failed"
# --exact: the CPU keeps activations fp32 as the GPU does (by default its kernels round them to bf16 for bf16 weights)
G=(-m "$T/m.safetensors" --vocab bytes -p "Hello there" -n 48 --ignore-stop -q -t 1 --exact)
expect_fail "bad --device" "--device must be cpu or cuda" "$M" generate "${G[@]}" --device tpu
"$M" generate --help > "$T/help" 2>&1
grep -q -- "--device D" "$T/help" && ok || bad "generate --help does not list --device"
"$M" chat --help > "$T/help" 2>&1
grep -q -- "--device D" "$T/help" && ok || bad "chat --help does not list --device"
expect_ok "--device cpu generates" "$M" generate "${G[@]}" --device cpu --state-out "$T/cpu.state"
cp "$T/out" "$T/cpu.txt"
if "$M" generate "${G[@]}" --device cuda --state-out "$T/gpu.state" > "$T/gpu.txt" 2> "$T/err"; then
  # a CUDA build with a GPU: the same greedy text as the exact CPU path (the same weights on both sides: bf16
  # matrices, fp32 LoRAs and vectors, fp32 activations; only the order of fp32 sums differs, so only a near-exact tie
  # could flip a token)
  cmp -s "$T/cpu.txt" "$T/gpu.txt" && ok || bad "greedy text differs: cpu '$(head -c 200 "$T/cpu.txt")' gpu '$(head -c 200 "$T/gpu.txt")'"
  printf 'first question\nsecond one\n' > "$T/turns"
  expect_ok "chat --device cpu" "$M" chat -m "$T/m.safetensors" --vocab bytes -n 24 -q -t 1 --exact --device cpu < "$T/turns"
  cp "$T/out" "$T/chat_cpu.txt"
  expect_ok "chat --device cuda" "$M" chat -m "$T/m.safetensors" --vocab bytes -n 24 -q -t 1 --exact --device cuda < "$T/turns"
  cmp -s "$T/chat_cpu.txt" "$T/out" && ok || bad "chat answers differ between cpu and cuda"
  [ -s "$T/gpu.state" ] && cmp -s "$T/cpu.state" "$T/gpu.state" && echo "(states bit-equal)" >&2
  echo "generate --device cuda: $(cat "$T/gpu.txt" | head -c 80 | tr -c '[:print:]' '?')" >&2
elif grep -q "built without CUDA" "$T/err"; then
  ok # the CPU build says so
  expect_fail "chat --device cuda on a CPU build" "built without CUDA" "$M" chat -m "$T/m.safetensors" --vocab bytes \
    --device cuda "hi"
elif grep -qiE "no CUDA device|cuda" "$T/err"; then
  ok # a CUDA build on a machine without a GPU: a clear CUDA error
else
  bad "--device cuda: unexpected failure: $(head -c 400 "$T/err")"
fi
finish cli_generate_device.sh
