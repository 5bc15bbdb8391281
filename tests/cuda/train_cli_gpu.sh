#!/usr/bin/env bash
# `modrwkv train --device cuda` against `--device cpu` on one small text run (GPU machine): the same random init,
# data order and schedule, 30 steps; prints the loss of every step for CPU, GPU and GPU with --ckpt, and passes if
# the GPU's loss stays within 3% of the CPU's at every step (bf16 activations on the GPU, fp32 on the CPU) and
# --ckpt within 1% of the plain GPU run (the recomputation repeats the same bf16 arithmetic; only the embedding
# gradient's atomics reorder); then a GPU run killed after step 20 and resumed ends at the uninterrupted run's loss. Needs build-cuda/modrwkv (make CUDA=1 tool); build-cuda/gpulibs, when present, holds
# the shared libraries that binary needs on a bare GPU machine (LD_LIBRARY_PATH), DATA a JSONL {"text"} file.
#   tests/cuda/train_cli_gpu.sh            (logs in $OUT or ./cuda-out)
set -u
cd "$(dirname "$0")/../.."
M=${MODRWKV:-build-cuda/modrwkv}
out=${OUT:-cuda-out}; mkdir -p "$out"
data=${DATA:-build-cuda/gpudata/text.jsonl}
[ -d build-cuda/gpulibs ] && export LD_LIBRARY_PATH="$PWD/build-cuda/gpulibs:${LD_LIBRARY_PATH:-}"
tmp=$(mktemp -d)
common=(--data "$data" --init 2,128 --vocab bytes --batch 4 --ctx-len 100 --steps 30 --lr 3e-3 --seed 7 --no-progress)
rc=0
"$M" train "${common[@]}" -t "$(nproc)" --out "$tmp/cpu" > "$out/cli_cpu.txt" 2>&1 || { echo "cpu run failed"; cat "$out/cli_cpu.txt"; rc=1; }
"$M" train "${common[@]}" --device cuda --out "$tmp/gpu" > "$out/cli_gpu.txt" 2>&1 || { echo "gpu run failed"; cat "$out/cli_gpu.txt"; rc=1; }
"$M" train "${common[@]}" --device cuda --ckpt --out "$tmp/ck" > "$out/cli_ck.txt" 2>&1 || { echo "gpu --ckpt run failed"; cat "$out/cli_ck.txt"; rc=1; }
cat "$out/cli_gpu.txt" "$out/cli_ck.txt" | grep -E "GPU|done" 
losses() { grep -o '"loss":[0-9.eE+-]*' "$1/train.jsonl" | cut -d: -f2; }
paste <(losses "$tmp/cpu") <(losses "$tmp/gpu") <(losses "$tmp/ck") | awk '
  { n++; d = ($2 - $1) / $1; if (d < 0) d = -d; e = ($3 - $2) / $2; if (e < 0) e = -e;
    if (d > md) md = d; if (e > me) me = e;
    printf "step %2d  cpu %.5f  gpu %.5f  gpu --ckpt %.5f  |gpu-cpu|/cpu %.2e  |ckpt-gpu|/gpu %.2e\n", n, $1, $2, $3, d, e }
  END { printf "%d steps: max |gpu-cpu|/cpu %.2e (tol 3e-2), max |ckpt-gpu|/gpu %.2e (tol 1e-2)\n", n, md, me;
        exit !(n == 30 && md <= 0.03 && me <= 0.01) }' | tee "$out/cli_losses.txt"
[ "${PIPESTATUS[1]}" -eq 0 ] || rc=1
# --resume on the GPU: killed after step 20 (checkpoints every 10 steps), resumed: the weights and Adam moments
# go through the checkpoint, so the last loss matches the uninterrupted GPU run (up to the embedding's atomics)
MRW_TRAIN_KILL_AFTER_STEP=20 "$M" train "${common[@]}" --device cuda --save-every 10 --out "$tmp/rs" > "$out/cli_rs.txt" 2>&1
"$M" train "${common[@]}" --device cuda --save-every 10 --resume --out "$tmp/rs" >> "$out/cli_rs.txt" 2>&1 || { echo "resume failed"; cat "$out/cli_rs.txt"; rc=1; }
a=$(losses "$tmp/gpu" | tail -1); b=$(losses "$tmp/rs" | tail -1); n=$(losses "$tmp/rs" | wc -l)
if awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN { d = (a - b) / a; if (d < 0) d = -d; printf "resume: %d log lines, last loss %s vs %s uninterrupted (rel diff %.2e, tol 1e-3)\n", n, b, a, d; exit !(n == 30 && d <= 1e-3) }'; then :; else rc=1; fi
ls -la "$tmp/gpu" | grep safetensors
rm -rf "$tmp"
echo "train_cli_gpu: exit $rc"
exit $rc
