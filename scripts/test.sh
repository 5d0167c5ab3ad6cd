#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with warnings as errors, runs every
# test through ctest, then builds and runs the suite again under ASan + UBSan. Tests labelled
# `fleet` (the demo, the browser test, the 50-agent rollout) run in the release pass only: they
# drive the same code as the smaller end-to-end tests that the sanitizer pass does run, at a scale
# (dozens of processes, chromium) that would only cost minutes under ASan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)

cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DEDGEFLEET_WERROR=ON
cmake --build build/release -j"$jobs"
ctest --test-dir build/release --output-on-failure -j"$jobs" --timeout 600

cmake -S . -B build/sanitize -G Ninja -DCMAKE_BUILD_TYPE=Debug -DEDGEFLEET_WERROR=ON \
      -DEDGEFLEET_SANITIZE=ON -DEDGEFLEET_BUILD_BENCH=OFF
cmake --build build/sanitize -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/sanitize --output-on-failure -j"$jobs" --timeout 900 -LE fleet
