#!/usr/bin/env bash
# Benchmark (issue 17, acceptance 2): the onnxruntime plugin against ONNX Runtime's C API called
# directly in the same process (limit: host <= 1.03x direct), HTTP on the binary and shared-memory
# routes (limit: the better <= direct + 0.5 ms), and ONNX Runtime against OpenCV DNN on the same
# files, at 1 and 2 threads: MobileNetV2 and ResNet-18 exported at opset 10 (both engines run
# them), MobileNetV2 at opset 17 (ONNX Runtime only). Models: the ONNX zoo the build generates
# (tests/data/make_onnx_zoo.py), batch 1.
#
#   bench/onnxruntime_overhead.sh [runs_mobilenet=100] [runs_resnet=60]
#
# Each line of the summary is one bench/inference_overhead run (its paths interleaved in blocks,
# medians); the ORT/OpenCV ratio compares the two engines' direct medians. Exits 1 when a
# limit of an onnxruntime run is breached.
set -euo pipefail
cd "$(dirname "$0")/.."
runs_mobilenet=${1:-100}
runs_resnet=${2:-60}
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release --target inference_overhead edgefleet_onnx_zoo >/dev/null
bin=build/release/bench/inference_overhead
zoo=build/release/testdata/onnx_zoo
out=$(mktemp /tmp/edgefleet-ort-bench-XXXXXX)
trap 'rm -f "$out"' EXIT

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
run() {  # model runs threads backend
  local log
  log=$("$bin" "$zoo/$1/model.onnx" 1x3x224x224 "$2" "$3" "$4" 2>/dev/null) || {
    [ "$4" = onnxruntime ] && status=1
  }
  echo "$log" | sed 's/^/  /'
  local direct host shm
  direct=$(echo "$log" | awk '/^direct/ {print $(NF-1)}')
  host=$(echo "$log" | awk '/^model host/ {print $(NF-1)}')
  shm=$(echo "$log" | awk '/^HTTP \(shared memory\)/ {print $(NF-1)}')
  echo "$1 $3 $4 $direct $host $shm" >> "$out"
}
for threads in 1 2; do
  for backend in onnxruntime opencv; do
    run mobilenet_v2_op10 "$runs_mobilenet" "$threads" "$backend"
    run resnet18_op10 "$runs_resnet" "$threads" "$backend"
  done
  run mobilenet_v2_op17 "$runs_mobilenet" "$threads" onnxruntime
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-20s %7s %12s %10s %10s %10s %10s\n' model threads backend direct_ms host/dir shm-dir_ms ort/opencv
awk '{key=$1" "$2; if ($3=="opencv") cv[key]=$4; row[NR]=$0}
     END {for (i=1; i<=NR; i++) {split(row[i], f, " "); key=f[1]" "f[2];
          ratio = (f[3]=="onnxruntime" && (key in cv)) ? sprintf("%.2fx", f[4]/cv[key]) : "-";
          printf "%-20s %7s %12s %10.3f %9.3fx %+10.3f %10s\n", f[1], f[2], f[3], f[4], f[5]/f[4], f[6]-f[4], ratio}}' "$out"
exit $status
