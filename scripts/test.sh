#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with warnings as errors, runs every
# test through ctest, then builds and runs the suite again under ASan + UBSan, then builds and
# runs the tests where threads meet under ThreadSanitizer, then builds the fuzz targets with
# clang-14 (libFuzzer + ASan + UBSan) and runs each for 15 s. Tests labelled `fleet` (the demo,
# the browser test, the 50-agent rollout) run in the release pass only: they drive the same code
# as the smaller end-to-end tests that the sanitizer pass does run, at a scale (dozens of
# processes, chromium) that would only cost minutes under ASan. So do tests labelled `load` (the
# slow-connection attacks on the local API, the collector and `serve`): timing limits measured
# under a sanitizer would measure the sanitizer; the HTTP layer's own tests (http_tests) run in
# every pass.
# The three GCC passes are unity builds (CMAKE_UNITY_BUILD, eight sources per translation unit):
# each file's JSON, gtest and standard library templates were generated again for every file, and
# the three builds had grown to about an hour of this command's time on 2 cores. The clang fuzz
# pass still compiles each library source on its own, so every such file still builds alone (as
# a build configured by hand, scripts/demo.sh's, compiles it); as a unity build it saved 36 s of
# its 227 here (bench/RESULTS.md), not worth losing that check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)

cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DEDGEFLEET_WERROR=ON \
      -DEDGEFLEET_REQUIRE_ONNXRUNTIME=ON -DCMAKE_UNITY_BUILD=ON
cmake --build build/release -j"$jobs"
ctest --test-dir build/release --output-on-failure -j"$jobs" --timeout 600

# Not under ASan either: the tests that run whole models of the zoo through OpenCV, ONNX Runtime
# and libtorch and compare numbers (FormTable's zoo sweeps, OrtZoo, TorchModels). Their time is
# spent in those uninstrumented engines (about 110 s of CPU here under ASan, bench/RESULTS.md);
# the same backends' own cases, the form table's unit cases and the lowering run in both passes.
asan_skip='^runtime\.(FormTable\.|Exports/OrtZoo\.|MobileNetV2AndResNet18/TorchModels\.)'
cmake -S . -B build/sanitize -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-g1 \
      -DEDGEFLEET_WERROR=ON -DEDGEFLEET_SANITIZE=ON -DEDGEFLEET_BUILD_BENCH=OFF \
      -DEDGEFLEET_REQUIRE_ONNXRUNTIME=ON -DCMAKE_UNITY_BUILD=ON
cmake --build build/sanitize -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp" \
  ctest --test-dir build/sanitize --output-on-failure -j"$jobs" --timeout 900 -LE "fleet|load" \
        -E "$asan_skip"

# Third pass: ThreadSanitizer over the tests where threads meet (label `tsan`): the agent's unit
# tests, the local API in-process (HTTP I/O thread, workers, ModelHost, ServingStats), the HTTP
# layer, the collector and `serve` end to end, and the agent against a real broker and collector
# (MQTT, telemetry, update and HTTP threads in one process), and a rollout wave signed on helper
# threads. Only those targets are built. A race stops the process that has it (halt_on_error): a
# test fails on its exit code, or on "Sanitizer" in the log of an agent or collector it started.
# setarch -R: GCC 12's TSan cannot map its shadow memory under some kernels' address-space
# randomisation.
cmake -S . -B build/tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DEDGEFLEET_WERROR=ON -DEDGEFLEET_TSAN=ON \
      -DEDGEFLEET_BUILD_BENCH=OFF -DEDGEFLEET_REQUIRE_ONNXRUNTIME=ON -DCMAKE_UNITY_BUILD=ON
cmake --build build/tsan -j"$jobs" --target agent_tests integration_tests http_tests \
      collector_tests serve_tests agent_mqtt_tests rollout_sign_tests
TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" \
  setarch "$(uname -m)" -R \
  ctest --test-dir build/tsan --output-on-failure -j"$jobs" --timeout 900 -L tsan

# Fourth pass: the libFuzzer targets (tests/fuzz) and only the libraries they need, built with
# clang-14 (which also keeps the code building with a second compiler). Through ctest (label
# `fuzz`), each replays its regression inputs, then fuzzes for EDGEFLEET_FUZZ_SECONDS (15 s) from
# the committed seeds; a crash, leak or UBSan report fails it. Longer runs: tests/fuzz/run.sh.
# -O1 with line tables: fast enough to fuzz, symbolized stacks; asserts stay on (no NDEBUG).
CC=clang-14 CXX=clang++-14 cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" -DEDGEFLEET_WERROR=ON \
      -DEDGEFLEET_FUZZ=ON -DEDGEFLEET_BUILD_TESTS=OFF -DEDGEFLEET_BUILD_BENCH=OFF \
      -DEDGEFLEET_FUZZ_SECONDS="${EDGEFLEET_FUZZ_SECONDS:-15}"
cmake --build build/fuzz -j"$jobs" --target fuzzers
ctest --test-dir build/fuzz --output-on-failure -L fuzz -j"$jobs"
