#!/usr/bin/env bash
# Everything the GPU machine does for the CUDA kernels in one call: the test driver (table), its host-ASan build,
# compute-sanitizer memcheck / racecheck / synccheck / initcheck on its small shapes, and the benchmarks (WKV7, training ops)
# (plus, on request, an ncu profile and ncu stall counters). Logs go to $OUT
# (or ./cuda-out). Uses the binaries from `make CUDA=1 cuda-tests cuda-bench` when they are there and run on
# this machine; otherwise builds them here with nvcc alone (the drivers need only the CUDA sources and
# src/base/error.c, not the rest of the library's dependencies).
#   tests/cuda/run_gpu.sh [test|asan|sanitize|bench|train|trainsan|trainbench|decode|decodesan|decodebench|mm|mmsan|mmbench|
#                          conv|convsan|vittrain|whispertrain|whispertrainsan|wavenet|distbench|profile|stalls|sass]...
#   (default: test asan sanitize bench train trainsan trainbench)
# train: the GPU trainer against the CPU trainer (test_train_gpu, table in $out/train_parity.txt); trainsan:
# compute-sanitizer memcheck on its quick cases; trainbench: bench_train_gpu (0.1B / 0.4B / 1.5B training steps).
# decode: the GPU decoder against the CPU model (test_decode_gpu, built by `make CUDA=1` with the library: carry
# build-cuda/gpulibs too); decodesan: its memcheck and racecheck runs; decodebench: bench_decode_gpu (0.4B / 1.5B decode).
# mm: the ModRWKV pieces (GPU adapter and ViT encoder against the CPU: test_modrwkv_gpu, whole library like
# test_decode_gpu); mmsan: its memcheck and racecheck runs; mmbench: bench_modrwkv_gpu (image encode time, stage-1 and
# stage-2 samples/s). conv: the GPU Conv1d / pooling / convolutional adapters against float64 references
# (test_conv1d_gpu); convsan: its memcheck and racecheck runs. vittrain: the GPU ViT trainer against the CPU's
# (test_vit_train_gpu, whole library like test_modrwkv_gpu). whispertrain: the GPU Whisper encoder trainer against the
# CPU's whisper_train (test_whisper_train_gpu, whole library); whispertrainsan: its memcheck run on the quick cases. distbench: bench_dist_gpu (data-parallel scaling, every GPU of the machine; docs/DISTRIBUTED.md).
# wavenet: the GPU WaveNet encoder against the CPU's (test_wavenet_gpu, whole library: carry it; asked for alone, the
# build above is skipped), then its memcheck and racecheck runs on --quick.
# The CLI checks are separate scripts: tests/cuda/train_cli_gpu.sh, train_mm_gpu.sh, train_audio_gpu.sh,
# train_enc_gpu.sh, train_dist_gpu.sh, mm_chat_gpu.sh.
set -u
cd "$(dirname "$0")/../.."
out=${OUT:-cuda-out}; mkdir -p "$out"
T=build-cuda/tests/cuda/test_cuda_ops; B=build-cuda/bench/cuda/bench_wkv7
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv 2>&1 | tee "$out/gpu.txt"
if [ "${*:-}" != wavenet ] && [ "${*:-}" != forecast ] && { ! "$T" --device >/dev/null 2>&1 || ! "$B" 0 >/dev/null 2>&1; }; then
  echo "== building the drivers here with nvcc"
  mkdir -p build-cuda/tests/cuda build-cuda/bench/cuda
  G="-gencode arch=compute_90,code=sm_90"
  objs=()
  for f in src/kernels/cuda/*.cu; do
    o=/tmp/$(basename "$f" .cu).o; objs+=("$o")
    nvcc -std=c++17 -O3 $G -lineinfo -Iinclude -Isrc -c "$f" -o "$o" &
  done
  hobjs=()
  # the Makefile's CU_HOST_SRC (the host files every driver links)
  for f in $(sed -n '/^CU_HOST_SRC *:=/,/[^\\]$/p' Makefile | sed 's/^CU_HOST_SRC *:=//; s/\\//g'); do
    o=/tmp/host_$(basename "$f" .c).o; hobjs+=("$o")
    gcc -std=gnu11 -O2 -fopenmp -Iinclude -Isrc -c "$f" -o "$o" &
  done
  wait
  for t in tests/cuda/*.cu bench/cuda/*.cu; do
    case $t in tests/cuda/test_decode_gpu.cu|tests/cuda/test_modrwkv_gpu.cu|tests/cuda/test_vit_train_gpu.cu|tests/cuda/test_whisper_train_gpu.cu) continue ;; esac # whole library: carry them
    nvcc -std=c++17 -O3 $G -lineinfo -Iinclude -Isrc "$t" "${objs[@]}" "${hobjs[@]}" -lcublas -lcublasLt -lgomp \
      -o "build-cuda/${t%.cu}" &
  done
  wait
fi
rc=0
# san DRIVER TOOL LOG: compute-sanitizer TOOL on build-cuda/tests/cuda/DRIVER --quick (with the carried libraries), its
# summary lines and exit code; a failure sets rc
san() {
  echo "== compute-sanitizer --tool $2 $1 --quick"
  LD_LIBRARY_PATH=build-cuda/gpulibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} compute-sanitizer --tool "$2" \
    --error-exitcode 3 "build-cuda/tests/cuda/$1" --quick > "$out/$3" 2>&1
  local r=$?; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|rows" "$out/$3" | tail -3; echo "exit $r"; [ $r -eq 0 ] || rc=1
}
steps=${*:-test asan sanitize bench train trainsan trainbench}
for s in $steps; do
  case $s in
  test)
    echo "== test_cuda_ops"
    "$T" 2>&1 | tee "$out/test.txt"; [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
  asan)
    if [ -x "${T}_asan" ]; then
      echo "== test_cuda_ops_asan (host AddressSanitizer + UBSan, all cases)"
      ASAN_OPTIONS=protect_shadow_gap=0:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "${T}_asan" > "$out/asan.txt" 2>&1
      r=$?; grep -E "rows passed|ERROR|runtime error" "$out/asan.txt" | head; echo "exit $r"; [ $r -eq 0 ] || rc=1
    else
      echo "== no ${T}_asan (make CUDA=1 cuda-tests-asan): host ASan run skipped"
    fi ;;
  sanitize)
    for tool in memcheck racecheck synccheck initcheck; do
      echo "== compute-sanitizer --tool $tool (quick shapes)"
      compute-sanitizer --tool "$tool" --error-exitcode 3 "$T" --quick > "$out/san_$tool.txt" 2>&1
      r=$?; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|rows passed" "$out/san_$tool.txt"; echo "exit $r"
      [ $r -eq 0 ] || rc=1
    done ;;
  bench)
    echo "== bench_wkv7"
    "$B" 2>&1 | tee "$out/bench.txt"
    echo "== bench_train_ops"
    build-cuda/bench/cuda/bench_train_ops 2>&1 | tee "$out/bench_train_ops.txt" ;;
  train)
    echo "== test_train_gpu (GPU trainer vs CPU trainer)"
    OUT="$out" build-cuda/tests/cuda/test_train_gpu > "$out/train.txt" 2>&1; r=$?
    grep -E "FAIL|loss|adam|rows passed" "$out/train.txt"; echo "exit $r"; [ $r -eq 0 ] || rc=1 ;;
  trainsan)
    san test_train_gpu memcheck san_train.txt ;;
  trainbench)
    echo "== bench_train_gpu"
    build-cuda/bench/cuda/bench_train_gpu 2>&1 | tee "$out/bench_train_gpu.txt" ;;
  decode)
    echo "== test_decode_gpu (GPU decode vs the CPU model's RNN mode)"
    LD_LIBRARY_PATH=build-cuda/gpulibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} build-cuda/tests/cuda/test_decode_gpu \
      2>&1 | tee "$out/decode.txt"; [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
  decodesan)
    san test_decode_gpu memcheck san_decode.txt
    san test_decode_gpu racecheck race_decode.txt ;;
  decodebench)
    echo "== bench_decode_gpu"
    build-cuda/bench/cuda/bench_decode_gpu 2>&1 | tee "$out/bench_decode_gpu.txt" ;;
  mm)
    echo "== test_modrwkv_gpu (GPU adapter and ViT encoder vs the CPU)"
    LD_LIBRARY_PATH=build-cuda/gpulibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} build-cuda/tests/cuda/test_modrwkv_gpu \
      > "$out/mm.txt" 2>&1; r=$?
    grep -E "FAIL|rows passed" "$out/mm.txt"; echo "exit $r"; [ $r -eq 0 ] || rc=1 ;;
  mmsan)
    for tool in memcheck racecheck; do san test_modrwkv_gpu "$tool" "san_mm_$tool.txt"; done ;;
  conv)
    echo "== test_conv1d_gpu (GPU Conv1d, pooling and convolutional adapters)"
    build-cuda/tests/cuda/test_conv1d_gpu > "$out/conv.txt" 2>&1; r=$?
    grep -E "FAIL|rows passed" "$out/conv.txt"; echo "exit $r"; [ $r -eq 0 ] || rc=1 ;;
  convsan)
    for tool in memcheck racecheck; do san test_conv1d_gpu "$tool" "san_conv_$tool.txt"; done ;;
  vittrain)
    echo "== test_vit_train_gpu (GPU ViT training forward/backward vs the CPU's vit_train)"
    LD_LIBRARY_PATH=build-cuda/gpulibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} build-cuda/tests/cuda/test_vit_train_gpu \
      > "$out/vittrain.txt" 2>&1; r=$?
    grep -E "FAIL|rows" "$out/vittrain.txt" | tail -3; echo "exit $r"; [ $r -eq 0 ] || rc=1 ;;
  whispertrain)
    echo "== test_whisper_train_gpu (GPU Whisper encoder training forward/backward vs the CPU's whisper_train)"
    LD_LIBRARY_PATH=build-cuda/gpulibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} build-cuda/tests/cuda/test_whisper_train_gpu \
      > "$out/whispertrain.txt" 2>&1; r=$?
    grep -E "FAIL|rows" "$out/whispertrain.txt" | tail -3; echo "exit $r"; [ $r -eq 0 ] || rc=1 ;;
  whispertrainsan)
    san test_whisper_train_gpu memcheck san_whispertrain.txt ;;
  wavenet)
    echo "== test_wavenet_gpu (GPU WaveNet encoder + patch pooling vs the CPU's mrw_wavenet; whole library: carry it)"
    LD_LIBRARY_PATH=build-cuda/gpulibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} build-cuda/tests/cuda/test_wavenet_gpu \
      > "$out/wavenet.txt" 2>&1; r=$?
    grep -E "FAIL|timing|rows passed" "$out/wavenet.txt"; echo "exit $r"; [ $r -eq 0 ] || rc=1
    for tool in memcheck racecheck; do san test_wavenet_gpu "$tool" "san_wavenet_$tool.txt"; done ;;
  forecast) # `modrwkv train --csv --device cuda` vs the CPU (tests/cuda/train_forecast_gpu.sh; build-cuda/modrwkv + gpulibs)
    echo "== train_forecast_gpu.sh (the forecaster on the GPU vs the CPU, memcheck)"
    MEMCHECK=1 OUT="$out" tests/cuda/train_forecast_gpu.sh || rc=1 ;;
  mmbench)
    echo "== bench_modrwkv_gpu"
    build-cuda/bench/cuda/bench_modrwkv_gpu 2>&1 | tee "$out/bench_modrwkv_gpu.txt" ;;
  distbench)
    echo "== bench_dist_gpu"
    build-cuda/bench/cuda/bench_dist_gpu --zero 2>&1 | tee "$out/bench_dist_gpu.txt" ;;
  stalls)
    echo "== ncu stall counters (kernels matching ${NCU_K:-wkv7}, first ${NCU_C:-2}; default: the default forward and backward)"
    m=smsp__inst_executed.sum,smsp__cycles_active.avg
    for r in barrier short_scoreboard long_scoreboard wait math_pipe_throttle mio_throttle lg_throttle \
             dispatch_stall not_selected selected branch_resolving no_instruction membar sleeping drain tex_throttle; do
      m=$m,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio
    done
    ncu --clock-control none -k "regex:${NCU_K:-wkv7}" -c "${NCU_C:-2}" --metrics "$m" "$B" 1 > "$out/stalls.txt" 2>&1
    grep -E "wkv7_|smsp__" "$out/stalls.txt" ;;
  sass)
    echo "== SASS instruction mix of the kernels (cuobjdump)"
    cuobjdump -sass "$B" > "$out/sass.txt" 2>&1
    awk '/Function :/{f=$3} /^ +\/\*[0-9a-f]+\*\//{n[f]++; split($2,a,"."); op=a[1]; if(op ~ /^@/) op=$3; c[f" "op]++} END{for(k in c) if (c[k]>20) print k, c[k]; for (f in n) print f, "total", n[f]}' "$out/sass.txt" | sort | grep -i wkv7 ;;
  profile)
    echo "== ncu (first forward and backward of the bench, default variant)"
    ncu --clock-control none -k regex:wkv7 -c 2 --section SpeedOfLight --section ComputeWorkloadAnalysis \
      --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy "$B" 1 > "$out/ncu.txt" 2>&1
    grep -E "wkv7_|Duration|Throughput|Stall|Issue Slots|Bank|Achieved Occupancy|Registers" "$out/ncu.txt" | head -60 ;;
  esac
done
exit $rc
