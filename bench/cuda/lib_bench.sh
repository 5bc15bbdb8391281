# Shared by the bench/cuda/*.sh scripts that time real `modrwkv train --device cuda` runs: sourced after `cd` to the
# repository root. Sets M (MODRWKV, default build-cuda/modrwkv) and the library path for GPULIBS (default
# build-cuda/gpulibs, the library's shared dependencies on a machine without them: docs/CUDA.md).
M=${MODRWKV:-build-cuda/modrwkv}
libs=${GPULIBS:-build-cuda/gpulibs}
[ -d "$libs" ] && export LD_LIBRARY_PATH="$(cd "$libs" && pwd):${LD_LIBRARY_PATH:-}"
# steady_rate RUN_DIR BATCH STEPS LABEL: samples/s over steps 5..STEPS of RUN_DIR/train.jsonl's elapsed_s (the first
# steps include start-up), printed as "LABEL: R samples/s (steps 5..STEPS: S s a step; whole run W s)"
steady_rate() {
  grep -o '"elapsed_s":[0-9.]*' "$1/train.jsonl" | cut -d: -f2 | awk -v b="$2" -v n="$3" -v label="$4" '
    { e[NR] = $1 } END { k = n - 4; r = k * b / (e[n] - e[4]);
      printf "%s: %.1f samples/s (steps 5..%d: %.4f s a step; whole run %.1f s)\n", label, r, n, (e[n] - e[4]) / k, e[n] }'
}
