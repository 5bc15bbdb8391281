#!/usr/bin/env bash
# `modrwkv train --csv … --device cuda` (the ModRWKV forecaster on the GPU, src/kernels/cuda/forecaster_gpu.h) against
# `--device cpu` (GPU machine). A small run: a generated CSV of 3 noisy seasonal channels (1500 rows, custom split),
# lookback 96, horizon 24, WaveNet 16 channels, patch 8 (12 tokens), adapter x2, RWKV-7 2 x 64, batch 8, 20 steps, seed 5.
#   A: --skip off (every part gets a gradient from step 1): CPU vs GPU fp32 mode (MRW_TRAIN_GPU_FP32=1: fp32 GEMMs and
#      activations, the adapter on the host) and vs GPU bf16;
#   B: --skip on (ridge start) --prompt-tokens 2 --accum 2 --patch 16: the same three (the skip path's own Adam, prompt
#      tokens after the injected rows, accumulation);
#   C: --freeze-rwkv: CPU vs GPU bf16, and the GPU checkpoint's RWKV-7 tensors byte-equal to the initial ones (a
#      --lr 0 run) while the encoder's moved;
#   D: a frozen Timer encoder (the tiny random fixture tests/fixtures/timer, on the host) instead of the WaveNet: the
#      same three;
#   the GPU checkpoints have the CPU's safetensors header; `modrwkv forecast -m … --eval` on the CPU loads them and
#   scores (test MSE) close to the CPU-trained model; a GPU run killed (SIGKILL) after step 10 and resumed ends where
#   the uninterrupted one does (and whether its checkpoint is byte-identical is printed); a CPU run stopped at step
#   10 resumes on the GPU (fp32) and a GPU run (fp32) resumes on the CPU, both within the fp32 tolerance of the CPU
#   run; refusals: --gpus, a width below 64. MEMCHECK=1 adds compute-sanitizer memcheck runs (3 steps
#   bf16 with prompt tokens, 3 steps fp32, 3 steps Timer bf16).
# Tolerances, |gpu - cpu| / cpu (set before the first run): fp32 mode: the first step's loss 1e-5 (one forward from the
# same weights: only summation order differs), its gradient norm 1e-4 (the GPU WKV backward recovers states by
# inversion: test_train_gpu's fp32 gradient rows, 1e-4), every step's loss 1e-3 (Adam's first updates are ~lr sign(g):
# a rounding that flips a tiny gradient's sign moves that weight by 2 lr, so trajectories drift apart slowly);
# bf16: 1e-2 / 3e-2 / 3e-2 (bf16 activations and GEMM operands through WaveNet, adapter and RWKV-7, as the ModRWKV
# stage scripts); test MSE of the checkpoints: 1e-3 (fp32) / 5e-2 (bf16); resume: 1e-4 per step (cuBLASLt picks
# algorithms by timing in each process, so bit equality across processes is not promised); cross-device: 1e-3.
# Needs MODRWKV (default build-cuda/modrwkv) and GPULIBS (default build-cuda/gpulibs).
#   tests/cuda/train_forecast_gpu.sh       (logs in $OUT or ./cuda-out)
P=fc; RESUME_AT=10; STEPS=20
. "$(dirname "$0")/lib_stage_cmp.sh"
# (noise from a Park-Miller generator, exact in awk's doubles: the same file with any awk, unlike rand())
awk 'function u() { s = (s * 16807) % 2147483647; return s / 2147483647 - 0.5 }
  BEGIN { s = 11; print "date,a,b,c"; for (i = 0; i < 1500; i++) printf "d%d,%.5f,%.5f,%.5f\n", i,
    5 + 2 * sin(i * 2 * 3.14159 / 24) + 0.3 * u(), -1 + sin(i * 2 * 3.14159 / 12) + 0.2 * sin(i * 0.013) + 0.2 * u(),
    0.5 * sin(i * 2 * 3.14159 / 48) + 0.001 * i + 0.3 * u() }' > "$tmp/series.csv"
echo "series.csv: md5 $(md5sum < "$tmp/series.csv" | cut -c1-12)"
F=(train --csv "$tmp/series.csv" --lookback 96 --horizon 24 --init 2,64 --enc-channels 16 --adapter-scale 2 --patch 8
   --steps $STEPS --warmup 3 --lr 1e-3 -b 8 --seed 5 -t 4 -q)
A=("${F[@]}" --skip off)
B=("${F[@]}" --skip on --prompt-tokens 2 --accum 2 --patch 16)
Z=("${F[@]}" --skip off --freeze-rwkv)
run a_cpu "$M" "${A[@]}"
run a_gpu32 G32 "$M" "${A[@]}" --device cuda
run a_gpu "$M" "${A[@]}" --device cuda
run b_cpu "$M" "${B[@]}"
run b_gpu32 G32 "$M" "${B[@]}" --device cuda
run b_gpu "$M" "${B[@]}" --device cuda
run z_cpu "$M" "${Z[@]}"
run z_gpu "$M" "${Z[@]}" --device cuda
run z_init "$M" "${Z[@]}" --steps 1 --lr 0
D=(train --csv "$tmp/series.csv" --lookback 96 --horizon 24 --init 2,64 --encoder timer tests/fixtures/timer
   --adapter-scale 2 --steps $STEPS --warmup 3 --lr 1e-3 -b 8 --seed 5 -t 4 -q --skip off)
run d_cpu "$M" "${D[@]}"
run d_gpu32 G32 "$M" "${D[@]}" --device cuda
run d_gpu "$M" "${D[@]}" --device cuda
cmp_losses "A: GPU fp32 vs CPU" a_cpu a_gpu32 1e-3 1e-5 1e-4
cmp_losses "A: GPU bf16 vs CPU" a_cpu a_gpu 3e-2 1e-2 3e-2
cmp_losses "B (skip, prompt 2, accum 2): GPU fp32 vs CPU" b_cpu b_gpu32 1e-3 1e-5 1e-4
cmp_losses "B (skip, prompt 2, accum 2): GPU bf16 vs CPU" b_cpu b_gpu 3e-2 1e-2 3e-2
cmp_losses "C (--freeze-rwkv): GPU bf16 vs CPU" z_cpu z_gpu 3e-2 1e-2 3e-2
cmp_losses "D (frozen Timer encoder): GPU fp32 vs CPU" d_cpu d_gpu32 1e-3 1e-5 1e-4
cmp_losses "D (frozen Timer encoder): GPU bf16 vs CPU" d_cpu d_gpu 3e-2 1e-2 3e-2
# the same bundle: the checkpoint's safetensors header (names, dtypes, shapes, offsets, metadata) equals the CPU's
for p in a_cpu:a_gpu a_cpu:a_gpu32 b_cpu:b_gpu z_cpu:z_gpu d_cpu:d_gpu; do
  a=${p%%:*}; b=${p##*:}
  if cmp -s <(header "$tmp/$a/forecaster.safetensors") <(header "$tmp/$b/forecaster.safetensors"); then
    echo "checkpoint header $b = $a: pass"
  else echo "checkpoint header $b != $a: FAIL"; rc=1; fi
done
# --freeze-rwkv: the RWKV-7 tensors (llm.*) of the GPU run's checkpoint are the initial ones, the encoder's are not
python3 - "$tmp/z_init/forecaster.safetensors" "$tmp/z_gpu/forecaster.safetensors" <<'EOF' || rc=1
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
llm = [k for k in a if k.startswith("llm.")]; enc = [k for k in a if not k.startswith("llm.") and "forecast_head" not in k]
same = all(a[k] == b[k] for k in llm); moved = sum(a[k] != b[k] for k in enc)
ok = same and len(llm) > 0 and moved > 0
print("--freeze-rwkv on the GPU: %d RWKV-7 tensors %s the initial ones, %d of %d other tensors moved: %s"
      % (len(llm), "equal" if same else "DIFFER FROM", moved, len(enc), "pass" if ok else "FAIL"))
sys.exit(0 if ok else 1)
EOF
# the GPU checkpoints on the CPU: `forecast -m … --eval` (test split, 40 windows a channel) close to the CPU model's
mse() { "$M" forecast -m "$tmp/$1/forecaster.safetensors" --eval "$tmp/series.csv" --max-windows 40 -t 4 2> /dev/null |
        awk -F'|' '$2 ~ /custom/ { gsub(/[* ]/, "", $6); print $6 }'; }
ma=$(mse a_cpu); m32=$(mse a_gpu32); m16=$(mse a_gpu)
awk -v a="$ma" -v b="$m32" -v c="$m16" 'BEGIN { if (a == "" || b == "" || c == "") { print "forecast --eval: no MSE: FAIL"; exit 1 }
  d1 = (b - a) / a; if (d1 < 0) d1 = -d1; d2 = (c - a) / a; if (d2 < 0) d2 = -d2; ok = d1 <= 1e-3 && d2 <= 5e-2
  printf "forecast --eval on the CPU: test MSE CPU-trained %s, GPU fp32 %s (rel %.2e, tol 1e-03), GPU bf16 %s (rel %.2e, tol 5e-02): %s\n",
         a, b, d1, c, d2, ok ? "pass" : "FAIL"; exit !ok }' || rc=1
# --resume on the GPU: killed (SIGKILL) after step 10 (checkpoints every 5 steps), resumed
resume a_rs a_gpu 1e-4 "$M" "${A[@]}" --device cuda
if cmp -s "$tmp/a_rs/forecaster.safetensors" "$tmp/a_gpu/forecaster.safetensors"; then
  echo "resumed GPU checkpoint: byte-identical to the uninterrupted run's"
else echo "resumed GPU checkpoint: not byte-identical (info: GEMM algorithms are picked per process)"; fi
# across devices: CPU 10 steps -> GPU fp32 to 20; GPU fp32 10 steps -> CPU to 20; each against the CPU run
{ "$M" "${A[@]}" --stop-after 10 --out "$tmp/x_cpu_gpu" && MRW_TRAIN_GPU_FP32=1 "$M" "${A[@]}" --resume --device cuda \
    --out "$tmp/x_cpu_gpu"; } > "$out/fc_x_cpu_gpu.txt" 2>&1 || { echo "resume CPU -> GPU failed"; tail -3 "$out/fc_x_cpu_gpu.txt"; rc=1; }
cmp_losses "resume CPU (10 steps) -> GPU fp32 vs CPU" a_cpu x_cpu_gpu 1e-3 0 0
{ MRW_TRAIN_GPU_FP32=1 "$M" "${A[@]}" --stop-after 10 --device cuda --out "$tmp/x_gpu_cpu" &&
  "$M" "${A[@]}" --resume --out "$tmp/x_gpu_cpu"; } > "$out/fc_x_gpu_cpu.txt" 2>&1 || { echo "resume GPU -> CPU failed"; tail -3 "$out/fc_x_gpu_cpu.txt"; rc=1; }
cmp_losses "resume GPU fp32 (10 steps) -> CPU vs CPU" a_cpu x_gpu_cpu 1e-3 1e-5 1e-4
# refusals, by name
refuse() { local what=$1 pat=$2; shift 2
  if "$@" --out "$tmp/refused" > "$out/fc_refuse.txt" 2>&1; then echo "$what: ran, FAIL"; rc=1
  elif grep -q -- "$pat" "$out/fc_refuse.txt"; then echo "refusal of $what: pass"
  else echo "refusal of $what: unexpected message: $(cat "$out/fc_refuse.txt")"; rc=1; fi; }
refuse "--gpus" "trains on one GPU" "$M" "${F[@]}" --gpus 2 --device cuda
refuse "width 32" "64 needed" "$M" "${F[@]}" --init 1,32 --device cuda
if [ "${MEMCHECK:-0}" = 1 ]; then
  compute-sanitizer --tool memcheck --error-exitcode 3 "$M" "${B[@]}" --steps 3 --save-every 2 --device cuda \
    --out "$tmp/san" > "$out/fc_memcheck.txt" 2>&1
  r=$?; echo "memcheck, bf16 with prompt tokens (3 steps): exit $r, $(grep -m1 'ERROR SUMMARY' "$out/fc_memcheck.txt")"
  [ $r -eq 0 ] && grep -q "ERROR SUMMARY: 0 errors" "$out/fc_memcheck.txt" || rc=1
  MRW_TRAIN_GPU_FP32=1 compute-sanitizer --tool memcheck --error-exitcode 3 "$M" "${A[@]}" --steps 3 --device cuda \
    --out "$tmp/san32" > "$out/fc_memcheck32.txt" 2>&1
  r=$?; echo "memcheck, fp32 (3 steps): exit $r, $(grep -m1 'ERROR SUMMARY' "$out/fc_memcheck32.txt")"
  [ $r -eq 0 ] && grep -q "ERROR SUMMARY: 0 errors" "$out/fc_memcheck32.txt" || rc=1
  compute-sanitizer --tool memcheck --error-exitcode 3 "$M" "${D[@]}" --steps 3 --device cuda --out "$tmp/sant" \
    > "$out/fc_memcheck_timer.txt" 2>&1
  r=$?; echo "memcheck, Timer encoder bf16 (3 steps): exit $r, $(grep -m1 'ERROR SUMMARY' "$out/fc_memcheck_timer.txt")"
  [ $r -eq 0 ] && grep -q "ERROR SUMMARY: 0 errors" "$out/fc_memcheck_timer.txt" || rc=1
fi
rm -rf "$tmp"
echo "train_forecast_gpu: exit $rc"
exit $rc
