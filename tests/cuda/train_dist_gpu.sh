#!/usr/bin/env bash
# Data-parallel `modrwkv train --device cuda --gpus 2` against one GPU at the same global batch (docs/DISTRIBUTED.md;
# a machine with 2 GPUs, NCCL). Same random init, data order and schedule (2-layer C128 byte model, batch 8 = 4 per
# GPU, ctx 100, 12 steps, lr 3e-3, AdamW 0.1, clip 1): prints the loss of every step for 1 GPU, 2 GPUs and 2 GPUs with
# ZeRO-1 (and 1 GPU through the ZeRO-1 code path), in fp32 mode (MRW_TRAIN_GPU_FP32=1: exact arithmetic, tolerance
# 1e-4 relative) and in bf16 (the training configuration, tolerance 1e-2: the GEMMs of a 4-row batch may round
# otherwise than those of an 8-row one). Then checkpoints across GPU counts (fp32 mode): a 2-GPU ZeRO-1 run killed
# after step 6 and resumed on 1 GPU, and a 1-GPU run killed after step 6 and resumed on 2 GPUs with ZeRO-1, each end
# at the uninterrupted 1-GPU run's last loss (tolerance 1e-4); and a run whose NCCL cannot be loaded fails on both
# ranks with the message and exit status 1, quickly. Then gradient accumulation, a NaN on one rank (every rank skips
# the step) and the bf16 all-reduce.
#   tests/cuda/train_dist_gpu.sh        (logs in $OUT or ./cuda-out; MODRWKV, DATA, MRW_NCCL_LIB may be set)
set -u
cd "$(dirname "$0")/../.."
M=${MODRWKV:-build-cuda/modrwkv}
out=${OUT:-cuda-out}; mkdir -p "$out"
data=${DATA:-build-cuda/gpudata/text.jsonl}
libs=${GPULIBS:-$(dirname "$M")/gpulibs}
[ -d "$libs" ] && export LD_LIBRARY_PATH="$(cd "$libs" && pwd):${LD_LIBRARY_PATH:-}"
if [ -z "${MRW_NCCL_LIB:-}" ]; then # NCCL from the Python package nvidia-nccl-cu13 (PyTorch's)
  d=$(python3 -c "import nvidia.nccl as n; print(list(n.__path__)[0])" 2>/dev/null)
  for f in "$d/lib/libnccl.so.2" /opt/torch/.venv/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2; do
    [ -f "$f" ] && { export MRW_NCCL_LIB="$f"; break; }
  done
fi
echo "NCCL: ${MRW_NCCL_LIB:-libnccl.so.2 from the library path}"
tmp=$(mktemp -d)
common=(--data "$data" --init 2,128 --vocab bytes --batch 8 --ctx-len 100 --steps 12 --lr 3e-3 --weight-decay 0.1
        --seed 7 --no-progress -t 4 --device cuda)
rc=0
run() { # LOG DIR ENV... -- ARGS...: one training run into $tmp/DIR, its output in $out/dist_LOG.txt
  local name=$1 dir=$2; shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  local t0=$(date +%s.%N)
  env "${envs[@]}" "$M" train "${common[@]}" "$@" --out "$tmp/$dir" > "$out/dist_$name.txt" 2>&1
  local r=$?
  printf "%-9s exit %3d %6.1f s  %s\n" "$name" "$r" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" \
    "$(grep -m1 -E 'data parallel|on the GPU' "$out/dist_$name.txt" | cut -c1-170)"
  return $r
}
losses() { grep -o '"loss":[0-9.eE+-]*' "$1/train.jsonl" | cut -d: -f2; }
for mode in fp32 bf16; do
  f=MRW_TRAIN_GPU_FP32=$([ $mode = fp32 ] && echo 1 || echo 0)
  run "${mode}_1" "${mode}_1" "$f" -- || rc=1
  run "${mode}_2" "${mode}_2" "$f" -- --gpus 2 || rc=1
  run "${mode}_2z" "${mode}_2z" "$f" -- --gpus 2 --zero 1 || rc=1
  run "${mode}_1z" "${mode}_1z" "$f" -- --zero 1 || rc=1
  tol=$([ $mode = fp32 ] && echo 1e-4 || echo 1e-2)
  echo "$mode: loss per step (relative differences against 1 GPU; tolerance $tol)"
  paste <(losses "$tmp/${mode}_1") <(losses "$tmp/${mode}_2") <(losses "$tmp/${mode}_2z") <(losses "$tmp/${mode}_1z") |
    awk -v tol="$tol" -v mode="$mode" '
    function rd(a, b) { d = (a - b) / b; return d < 0 ? -d : d }
    { n++; a = rd($2, $1); b = rd($3, $1); c = rd($4, $1);
      if (a > ma) ma = a; if (b > mb) mb = b; if (c > mc) mc = c;
      printf "  step %2d  1 GPU %.6f  2 GPUs %.6f  2 GPUs ZeRO-1 %.6f  1 GPU ZeRO-1 path %.6f  |  %.1e  %.1e  %.1e\n", n, $1, $2, $3, $4, a, b, c }
    END { printf "%s: %d steps: max rel diff 2 GPUs %.2e, 2 GPUs ZeRO-1 %.2e, 1 GPU ZeRO-1 path %.2e (tol %s)\n", mode, n, ma, mb, mc, tol;
          exit !(n == 12 && ma <= tol && mb <= tol && mc <= tol) }' | tee "$out/dist_$mode.txt"
  [ "${PIPESTATUS[1]}" -eq 0 ] || rc=1
done
# checkpoints across GPU counts (fp32 mode): killed after step 6 (rank 0 kills itself after the checkpoint; the
# launcher stops the other rank), resumed with the other GPU count
F=MRW_TRAIN_GPU_FP32=1
run rs_a1 rs_a "$F" MRW_TRAIN_KILL_AFTER_STEP=6 -- --gpus 2 --zero 1 --save-every 6
run rs_a2 rs_a "$F" -- --save-every 6 --resume || rc=1
run rs_b1 rs_b "$F" MRW_TRAIN_KILL_AFTER_STEP=6 -- --save-every 6
run rs_b2 rs_b "$F" -- --gpus 2 --zero 1 --save-every 6 --resume || rc=1
ref=$(losses "$tmp/fp32_1" | tail -1)
for d in rs_a rs_b; do
  last=$(losses "$tmp/$d" | tail -1); n=$(losses "$tmp/$d" | wc -l)
  awk -v a="$ref" -v b="$last" -v n="$n" -v d="$d" 'BEGIN { x = (b - a) / a; if (x < 0) x = -x;
    printf "resume %s (%s): %d log lines, last loss %s vs %s uninterrupted 1 GPU (rel diff %.2e, tol 1e-4)\n", d,
      d == "rs_a" ? "2 GPUs ZeRO-1 -> 1 GPU" : "1 GPU -> 2 GPUs ZeRO-1", n, b, a, x; exit !(n == 12 && x <= 1e-4) }' || rc=1
done
# more: gradient accumulation (fp32: micro-batch 4 = 2 per GPU, 2 micro-batches a step); a NaN loss on rank 1 only at
# step 3 is skipped by both ranks (as one GPU skips it: the same curve after it); bf16 gradients over the wire (bf16
# training, plain and ZeRO-1, against 1 GPU; tolerance 1e-2)
run ga_1 ga_1 "$F" -- --batch 4 --grad-accum 2 || rc=1
run ga_2 ga_2 "$F" -- --batch 4 --grad-accum 2 --gpus 2 || rc=1
run nan_1 nan_1 "$F" MRW_TRAIN_NAN_AT_STEP=3 -- || rc=1
run nan_2 nan_2 "$F" MRW_TRAIN_NAN_AT_STEP=3,1 -- --gpus 2 --zero 1 || rc=1
run ar_2 ar_2 MRW_TRAIN_GPU_FP32=0 -- --gpus 2 --allreduce bf16 || rc=1
run ar_2z ar_2z MRW_TRAIN_GPU_FP32=0 -- --gpus 2 --zero 1 --allreduce bf16 || rc=1
cmp2() { # NAME A B TOL
  paste <(losses "$tmp/$2") <(losses "$tmp/$3") | awk -v tol="$4" -v name="$1" '
    { n++; d = ($2 - $1) / $1; if (d < 0) d = -d; if (d > m) m = d }
    END { printf "%s: %d steps, max rel diff %.2e (tol %s)\n", name, n, m, tol; exit !(n == 12 && m <= tol) }'
}
cmp2 "grad-accum 2, 2 GPUs vs 1 (fp32)" ga_1 ga_2 1e-4 || rc=1
cmp2 "NaN at step 3 on rank 1 only, 2 GPUs ZeRO-1 vs NaN on 1 GPU (fp32)" nan_1 nan_2 1e-4 || rc=1
grep -q "loss is nan at step 3: step skipped" "$out/dist_nan_2.txt" && echo "  rank 0 skipped step 3 (its own loss was finite)" || { echo "rank 0 did not skip"; rc=1; }
cmp2 "bf16 all-reduce, 2 GPUs vs 1 (bf16)" bf16_1 ar_2 1e-2 || rc=1
cmp2 "bf16 all-reduce, 2 GPUs ZeRO-1 vs 1 (bf16)" bf16_1 ar_2z 1e-2 || rc=1
# the launcher-free path (any launcher, across nodes): two processes started by hand with RANK, WORLD_SIZE, LOCAL_RANK,
# MASTER_ADDR (this machine's first network address, not loopback), MASTER_PORT; the same run as fp32_2
addr=$(hostname -I 2>/dev/null | awk '{print $1}'); [ -n "$addr" ] || addr=127.0.0.1
port=$((20000 + RANDOM % 20000))
for r in 0 1; do
  env MRW_TRAIN_GPU_FP32=1 RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR="$addr" MASTER_PORT=$port \
    "$M" train "${common[@]}" --out "$tmp/env" > "$out/dist_env_$r.txt" 2>&1 &
done
wait
cmp2 "RANK/WORLD_SIZE from the environment, MASTER_ADDR $addr, vs --gpus 2 (fp32)" fp32_2 env 1e-6 || rc=1
# failure handling: NCCL missing -> both ranks fail with the message, the launcher returns 1
t0=$(date +%s)
MRW_NCCL_LIB=/nonexistent/libnccl.so.2 "$M" train "${common[@]}" --gpus 2 --out "$tmp/bad" > "$out/dist_bad.txt" 2>&1
r=$?; dt=$(( $(date +%s) - t0 ))
if [ $r -eq 1 ] && grep -q "cannot load NCCL" "$out/dist_bad.txt" && [ $dt -lt 60 ]; then
  echo "missing NCCL: exit $r after ${dt} s: $(grep -m1 'cannot load NCCL' "$out/dist_bad.txt" | cut -c1-150)"
else
  echo "missing NCCL: unexpected (exit $r after ${dt} s)"; cat "$out/dist_bad.txt"; rc=1
fi
rm -rf "$tmp"
echo "train_dist_gpu: exit $rc"
exit $rc
