#!/usr/bin/env bash
# Benchmark (issue 12, acceptance 5): every in-tree backend on MobileNetV2 (torchvision, random
# weights, the same seed and calibration in both generating scripts), side by side in one run:
# for each backend the agent's path over the plugin ABI against that engine's own direct call
# (limit: <= 1.03x), and the latency per backend. opencv and onnxruntime run the ONNX export at
# opset 10 (bench/inference_overhead: model host vs a bare cv::dnn::Net / ORT C API session),
# torch the frozen TorchScript trace (bench/torch_overhead: plugin vs torch::jit forward). One
# intra-op thread, batch 1 (the TorchScript golden input's first row). tflite runs the same
# MobileNetV2 written as TFLite by bench/make_tflite_mobilenet.py (no TensorFlow in Debian: batch
# norms folded, NHWC; its logits must match torch's, checked here) and MediaPipe's short-range
# face detector from npm (bench/tflite_overhead: plugin vs Arm NN's own API, CpuRef). Arm NN's
# CpuRef takes seconds per MobileNetV2 run, so its row uses 2 rounds of max(runs/50, 2) runs.
# Needs scripts/install-deps.sh --models (python3-flatbuffers) for the TFLite MobileNetV2.
#
#   bench/backends_side_by_side.sh [runs=100]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release --target inference_overhead torch_overhead tflite_overhead \
  edgefleet_onnx_zoo edgefleet_torchscript_models >/dev/null
b=build/release
onnx=$b/testdata/onnx_zoo/mobilenet_v2_op10/model.onnx
ts=$b/testdata/torchscript/mobilenet_v2
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
rows=()
for backend in opencv onnxruntime; do
  log=$("$b/bench/inference_overhead" "$onnx" 1x3x224x224 "$runs" 1 "$backend" 2>/dev/null || true)
  direct=$(echo "$log" | awk '/^direct/ {print $(NF-1)}')
  host=$(echo "$log" | awk '/^model host/ {print $(NF-1)}')
  rows+=("$backend $direct $host")
done
log=$("$b/bench/torch_overhead" "$ts/model.pt" "$ts/golden/input_0.pb" --threads 1 \
        --runs $((runs / 5)) --rounds 5 2>/dev/null)
direct=$(echo "$log" | awk '$1 == "direct" {print $2}')
plugin=$(echo "$log" | awk '$1 == "plugin" {print $2}')
rows+=("torch $direct $plugin")
mbv2=$b/testdata/tflite_mobilenet_v2
if [ ! -f "$mbv2/model.tflite" ] || [ bench/make_tflite_mobilenet.py -nt "$mbv2/model.tflite" ]; then
  /usr/bin/python3 bench/make_tflite_mobilenet.py "$mbv2" >/dev/null
fi
few=$((runs / 50 > 2 ? runs / 50 : 2))
log=$("$b/bench/tflite_overhead" "$mbv2/model.tflite" --golden "$mbv2" --runs "$few" --rounds 2)
echo "$log" | grep '^against' || true
direct=$(echo "$log" | awk '$1 == "direct" {print $2}')
plugin=$(echo "$log" | awk '$1 == "plugin" {print $2}')
rows+=("tflite $direct $plugin")
key=$(sha256sum tests/data/mediapipe/npm/package-lock.json | cut -c1-16)
face="${EDGEFLEET_CACHE_DIR:-$HOME/.cache/edgefleet}/mediapipe-npm/$key/models/face_detection_short_range.tflite"
log=$("$b/bench/tflite_overhead" "$face" --runs $((runs / 10 > 2 ? runs / 10 : 3)) --rounds 3 2>/dev/null)
direct=$(echo "$log" | awk '$1 == "direct" {print $2}')
plugin=$(echo "$log" | awk '$1 == "plugin" {print $2}')
rows+=("tflite(face) $direct $plugin")
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
printf '%-12s %12s %12s %14s\n' backend direct_ms agent_ms agent/direct
for row in "${rows[@]}"; do
  read -r name d h <<<"$row"
  if [ -z "$d" ] || [ -z "$h" ]; then echo "$name: no result"; status=1; continue; fi
  verdict=$(awk -v d="$d" -v h="$h" 'BEGIN {print (h <= 1.03 * d) ? "PASS" : "FAIL"}')
  [ "$verdict" = PASS ] || status=1
  printf '%-12s %12.3f %12.3f %13.3fx %s\n' "$name" "$d" "$h" "$(awk -v d="$d" -v h="$h" 'BEGIN {print h / d}')" "$verdict"
done
exit $status
