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
