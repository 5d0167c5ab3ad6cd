#!/usr/bin/env bash
# Benchmark (Runtime issue, acceptance 5): model host and local HTTP API against a bare cv::dnn
# forward, for the digits CNN and MobileNetV2 (opset 10, random weights, exported here with
# Debian's python3-torchvision: scripts/install-deps.sh --models).
#
#   bench/inference_overhead.sh [runs_digits=1000] [runs_mobilenet=150]
#
# Exits 1 when a limit is breached (host <= 1.03x direct; HTTP <= direct + 0.5 ms, medians).
set -euo pipefail
cd "$(dirname "$0")/.."
runs_digits=${1:-1000}
runs_mobilenet=${2:-150}
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release --target inference_overhead >/dev/null
bin=build/release/bench/inference_overhead
work=$(mktemp -d /tmp/edgefleet-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 bench/make_mobilenet.py "$work" >/dev/null

status=0
"$bin" tests/data/digits/v1/model/digits_op10.onnx 1x1x8x8 "$runs_digits" 1 2>/dev/null || status=1
echo
EDGEFLEET_BENCH_VERBOSE=${EDGEFLEET_BENCH_VERBOSE:-} \
  "$bin" "$work/mobilenet_v2_op10.onnx" 1x3x224x224 "$runs_mobilenet" 1 2>/dev/null || status=1
exit $status
