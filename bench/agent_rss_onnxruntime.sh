#!/usr/bin/env bash
# Benchmark (issue 17, acceptance 4): the real `edgefleet-agent run` process's memory while it
# serves MobileNetV2 (opset 17, the ONNX zoo the build generates) through the onnxruntime plugin,
# with ONNX Runtime's CPU memory arena on and off (backend_options.onnxruntime.memory_arena), and
# the same model through opencv (opset 10; OpenCV refuses the opset 17 export) for comparison.
#
#   bench/agent_rss_onnxruntime.sh [BUILD_DIR=build/release] [requests=300] [runs=3]
#
# Per setting and run: a fresh agent on an installed state directory (offline install, keys and
# bundles made by the built `edgefleet` CLI), `requests` binary-tensor infer requests (KServe v2
# binary extension, batch 1) over one keep-alive connection, then VmRSS and VmHWM from
# /proc/<pid>/status with the agent still running. Prints the medians per setting. No limit:
# the numbers are recorded (bench/RESULTS.md); exits 1 only when something fails.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
requests=${2:-300}
runs=${3:-3}

if [ "$build" = build/release ] && [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" --target edgefleet edgefleet-agent edgefleet_backend_onnxruntime \
  edgefleet_backend_opencv edgefleet_onnx_zoo >/dev/null
ef=$(realpath "$build/deploy/edgefleet")
agent=$(realpath "$build/agent/edgefleet-agent")
zoo=$(realpath "$build/testdata/onnx_zoo")
python=/usr/bin/python3

work=$(mktemp -d /tmp/edgefleet-rss-ort-XXXXXX)
agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
wait_for() {  # $1 = what, $2 = seconds, rest = command that succeeds when ready
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "agent_rss_onnxruntime: timed out waiting for $what" >&2; exit 1; fi
    sleep 0.05
  done
}

for role in root release deploy; do "$ef" keygen --out "$work/$role" >/dev/null; done
"$ef" trust init --root-key "$work/root.key" --release-key "$work/release.pub" \
  --deploy-key "$work/deploy.pub" -o "$work/root.json" >/dev/null

# bundle <zoo name> <backend>: a one-variant bundle of the zoo file for that backend.
bundle() {
  local src=$work/src-$1
  mkdir -p "$src/model" "$src/golden/g"
  cp "$zoo/$1/model.onnx" "$src/model/mobilenet.onnx"
  cp "$zoo/$1/golden/input_0.pb" "$zoo/$1/golden/output_0.pb" "$src/golden/g/"
  cat > "$src/bundle.json" <<JSON
{"name": "mobilenet", "version": "1.0.0", "description": "MobileNetV2 $1 (random weights)",
 "variants": [{"id": "onnx", "file": "model/mobilenet.onnx", "format": "onnx",
               "backends": [{"name": "$2", "version": "*"}]}],
 "golden": [{"name": "g", "inputs": ["golden/g/input_0.pb"], "outputs": ["golden/g/output_0.pb"]}],
 "parity": {"atol": 0.001, "rtol": 0.001, "min_top1_agreement": 1.0, "max_latency_factor": 3.0},
 "watch": {"window_s": 30, "min_requests": 50, "max_error_rate": 0.01, "max_p95_latency_factor": 3.0}}
JSON
  "$ef" bundle create "$src" -o "$work/$1.efb" --key "$work/release.key" >/dev/null
}
bundle mobilenet_v2_op17 onnxruntime
bundle mobilenet_v2_op10 opencv

cat > "$work/client.py" <<'PY'
import http.client, json, random, struct, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
random.seed(1)
data = struct.pack("<%df" % (3 * 224 * 224), *[random.gauss(0, 1) for _ in range(3 * 224 * 224)])
header = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                 "parameters": {"binary_data_size": len(data)}}]}).encode()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for i in range(count):
    conn.request("POST", "/v2/models/mobilenet/infer", header + data,
                 {"Content-Type": "application/octet-stream",
                  "Inference-Header-Content-Length": str(len(header))})
    res = conn.getresponse()
    body = res.read()
    if res.status != 200:
        sys.exit(f"request {i}: HTTP {res.status}: {body[:200]!r}")
print(count)
PY

# measure <label> <bundle> <backends JSON> <backend_options JSON>
measure() {
  local label=$1 state=$work/state-$1
  cat > "$work/$1.json" <<JSON
{"device": "box-1", "fleet": "bench", "state_dir": "$state", "trust_root": "$work/root.json",
 "backends": $3, "backend_options": $4, "api": {"host": "127.0.0.1", "port": 0},
 "runtime": {"threads": 1, "parallel_runs": 1}}
JSON
  "$agent" install --config "$work/$1.json" "$work/$2.efb" >/dev/null 2>"$work/$1-install.log" ||
    { cat "$work/$1-install.log" >&2; echo "agent_rss_onnxruntime: install failed ($1)" >&2; exit 1; }
  : > "$work/$1.txt"
  for run in $(seq "$runs"); do
    rm -f "$state/api.port"
    "$agent" run --config "$work/$1.json" 2> "$work/$1.log" &
    agent_pid=$!
    wait_for "the local API ($1)" 60 test -s "$state/api.port"
    "$python" "$work/client.py" "$(cat "$state/api.port")" "$requests" >/dev/null
    rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$agent_pid/status")
    hwm=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$agent_pid/status")
    kill "$agent_pid"; wait "$agent_pid" || true; agent_pid=""
    echo "$rss $hwm" >> "$work/$1.txt"
  done
  printf '%-28s VmRSS %6s MiB  VmHWM %6s MiB  (median of %d runs, %d requests each)\n' "$label" \
    "$(mib "$(cut -d' ' -f1 "$work/$1.txt" | median)")" \
    "$(mib "$(cut -d' ' -f2 "$work/$1.txt" | median)")" "$runs" "$requests"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
measure onnxruntime-arena-on mobilenet_v2_op17 '["onnxruntime"]' '{"onnxruntime": {"memory_arena": true}}'
measure onnxruntime-arena-off mobilenet_v2_op17 '["onnxruntime"]' '{"onnxruntime": {"memory_arena": false}}'
measure opencv mobilenet_v2_op10 '["opencv"]' '{}'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
