#!/usr/bin/env bash
# The whole GPU verification of the tree in one command, as the lead runs it before a stop (docs/CUDA.md, "Final
# verification"): every test driver with the sanitizers, the CLI stage scripts, a determinism check and the benches.
# Needs `make CUDA=1 tool cuda-tests cuda-bench` (build-cuda/, with build-cuda/gpulibs on a machine without the
# library's Debian dependencies: docs/CUDA.md). One H100: ~5.5 min for `tests`, ~1.5 min for `bench`.
#   tests/cuda/verify_all.sh [tests] [bench]      (default both; logs under $OUT, default cuda-out/verify)
set -u
cd "$(dirname "$0")/../.."
O=${OUT:-cuda-out/verify}; mkdir -p "$O"
[ -d build-cuda/gpulibs ] && export LD_LIBRARY_PATH="$PWD/build-cuda/gpulibs:${LD_LIBRARY_PATH:-}"
rc=0
# step NAME CMD...: CMD's output in $O/NAME.log, one summary line
step() { local n=$1; shift; local t0=$(date +%s); "$@" > "$O/$n.log" 2>&1; local r=$?; [ $r -eq 0 ] || rc=1
  echo "$n exit $r $(( $(date +%s) - t0 ))s: $(grep -E 'rows|failed|FAIL|pass' "$O/$n.log" | tail -1)"; }
# two identical fp32 GPU trainings, GEMM tuning on and off: equal losses? (docs/CUDA.md, "Reproducibility")
determinism() {
  local t; t=$(mktemp -d)
  for i in 1 2 3 4 5 6; do echo "{\"text\": \"the quick brown fox $i jumps over the lazy dog, again and again, number $i.\"}"; done > "$t/d.jsonl"
  det() { MRW_TRAIN_GPU_FP32=1 MRW_GEMM_TUNE=$1 build-cuda/modrwkv train --init 2,128 --vocab bytes --data "$t/d.jsonl" \
            --batch 2 --ctx-len 64 --steps 12 --seed 3 --device cuda --no-progress --out "$t/$2" > /dev/null 2>&1
          grep -o '"loss":[0-9.eE+-]*' "$t/$2/train.jsonl" | cut -d: -f2 | tr '\n' ' '; }
  for m in 1 0; do
    local a b; a=$(det $m a$m); b=$(det $m b$m)
    if [ "$a" = "$b" ]; then echo "determinism MRW_GEMM_TUNE=$m: the two runs' losses are equal"
    else echo "determinism MRW_GEMM_TUNE=$m: the two runs' losses differ"; echo "  $a"; echo "  $b"
         [ $m = 0 ] && rc=1; fi
  done
  rm -rf "$t"
}
for what in ${*:-tests bench}; do
  case $what in
  tests)
    step gpu_steps env OUT="$O/rg" tests/cuda/run_gpu.sh test sanitize train decode decodesan mm conv vittrain whispertrain wavenet
    step forecast env OUT="$O/fc" tests/cuda/run_gpu.sh forecast
    step train_audio env OUT="$O/ta" tests/cuda/train_audio_gpu.sh
    step train_mm env OUT="$O/tm" tests/cuda/train_mm_gpu.sh
    step train_enc env OUT="$O/te" MEMCHECK=0 tests/cuda/train_enc_gpu.sh
    step mm_chat env OUT="$O/mc" tests/cuda/mm_chat_gpu.sh ;;
  bench)
    determinism
    step benches env OUT="$O/rb" tests/cuda/run_gpu.sh trainbench decodebench mmbench
    grep -h "official\|samples/s" "$O"/rb/*.txt 2>/dev/null
    step fcbench env OUT="$O" bench/cuda/train_forecast.sh
    tail -6 "$O/fcbench.log" ;;
  *) echo "verify_all.sh: unknown part '$what' (tests, bench)"; exit 2 ;;
  esac
done
grep -rh "FAIL" "$O" 2>/dev/null | head -20
exit $rc
