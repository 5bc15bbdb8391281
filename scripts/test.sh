#!/usr/bin/env bash
# Runs every test: the release build, then the same tests under AddressSanitizer + UndefinedBehaviorSanitizer,
# and the committed fuzz corpora replayed in both. Needs the packages from scripts/setup.sh --deps-only and
# ../shared (or MRW_SHARED) for the shared assets.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
echo "== release build"
make -j"$jobs" tests
./tests/run.sh build
echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
make -j"$jobs" SAN=1 BUILD=build-asan tests
./tests/run.sh build-asan
# The CUDA sources are compiled (not run: CI has no GPU) wherever the CUDA toolkit is installed.
nvcc_bin=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ -n "$nvcc_bin" ]; then echo "== CUDA compile check ($nvcc_bin, no GPU needed)"; make -j"$jobs" NVCC="$nvcc_bin" cuda-check; fi
