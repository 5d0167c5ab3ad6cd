#!/usr/bin/env bash
# Benchmark (Telemetry issue, acceptance: "the agent's RSS while serving the digits model is
# < 40 MiB"): memory of the real `edgefleet-agent run` process while it serves raw PNGs over the
# local API with the fleet link on (a real mosquitto broker, telemetry windows of 1 s).
#
#   bench/agent_rss.sh [BUILD_DIR=build/release] [requests=5000] [runs=3]
#
# Per run: a fresh agent process on the same state directory (digits 1.0.0 installed offline
# once, with keys, trust root and bundle made by the built `edgefleet` CLI); `requests` POSTs of
# the held-out PNGs (tests/data/digits/heldout_png, in turn) over one keep-alive connection; then,
# with the agent still running, VmRSS, VmHWM, RssAnon and RssFile from /proc/<pid>/status.
# Verdict on the medians over the runs: PASS when both VmRSS and VmHWM are below 40 MiB; exits 1
# on FAIL. A BUILD_DIR with a CMake cache is built first (targets edgefleet, edgefleet-agent);
# build/release is configured (Release: -O2) when missing, like the other benchmarks.
# EDGEFLEET_RSS_TOP=N also prints the N largest resident mappings of the last run (smaps).
# Last, the agent once more with an empty backends_dir, idle: its memory without any backend
# (OpenCV is loaded only by the opencv plugin), for the comparison with and without OpenCV.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
requests=${2:-5000}
runs=${3:-3}
limit_kib=$((40 * 1024))

if [ "$build" = build/release ] && [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
if [ -f "$build/CMakeCache.txt" ]; then
  cmake --build "$build" --target edgefleet edgefleet-agent >/dev/null
fi
ef=$(realpath "$build/deploy/edgefleet")
agent=$(realpath "$build/agent/edgefleet-agent")
python=/usr/bin/python3

work=$(mktemp -d /tmp/edgefleet-rss-XXXXXX)
broker_pid=""
agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_for() {  # $1 = what, $2 = seconds, rest = command that succeeds when ready
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "agent_rss: timed out waiting for $what" >&2; exit 1; fi
    sleep 0.05
  done
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# Keys, trust root, the signed digits bundle, and the offline install.
for role in root release deploy; do "$ef" keygen --out "$work/$role" >/dev/null; done
"$ef" trust init --root-key "$work/root.key" --release-key "$work/release.pub" \
  --deploy-key "$work/deploy.pub" -o "$work/root.json" >/dev/null
"$ef" bundle create tests/data/digits/v1 -o "$work/digits.efb" --key "$work/release.key" >/dev/null

# The broker: own config, loopback only, no persistence, no log file.
mqtt_port=$(free_port)
cat > "$work/mosquitto.conf" <<CONF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
log_dest none
CONF
mosquitto -c "$work/mosquitto.conf" &
broker_pid=$!
port_open() { "$python" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$1" 2>/dev/null; }
wait_for "mosquitto on port $mqtt_port" 10 port_open "$mqtt_port"

cat > "$work/agent.json" <<JSON
{"device": "box-1", "fleet": "bench", "state_dir": "state", "trust_root": "root.json",
 "backends": ["opencv"],
 "api": {"host": "127.0.0.1", "port": 0},
 "mqtt": {"host": "127.0.0.1", "port": $mqtt_port},
 "telemetry": {"window_s": 1}}
JSON
"$agent" install --config "$work/agent.json" "$work/digits.efb" >/dev/null 2>"$work/install.log" ||
  { cat "$work/install.log" >&2; echo "agent_rss: offline install failed" >&2; exit 1; }

# The client: raw PNG bodies over one keep-alive connection; every answer must be 200 and its
# argmax is compared with the label in the file name (NNN_L.png), so the agent really served.
cat > "$work/client.py" <<'PY'
import http.client, json, os, sys, time
port, count, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
files = sorted(os.listdir(folder))
images = [(open(os.path.join(folder, f), "rb").read(), int(f[4])) for f in files]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
correct = 0
start = time.monotonic()
for i in range(count):
    body, label = images[i % len(images)]
    conn.request("POST", "/v2/models/digits/infer", body, {"Content-Type": "image/png"})
    res = conn.getresponse()
    data = res.read()
    if res.status != 200:
        sys.exit(f"request {i}: HTTP {res.status}: {data[:200]!r}")
    logits = json.loads(data)["outputs"][0]["data"]
    correct += max(range(len(logits)), key=logits.__getitem__) == label
elapsed = time.monotonic() - start
print(f"{count} {correct} {count / elapsed:.0f}")
PY

: > "$work/results.txt"
for run in $(seq "$runs"); do
  rm -f "$work/state/api.port"
  "$agent" run --config "$work/agent.json" 2> "$work/agent.log" &
  agent_pid=$!
  wait_for "the local API" 20 test -s "$work/state/api.port"
  wait_for "the MQTT connection" 20 grep -q "event=mqtt_connected" "$work/agent.log"
  api_port=$(cat "$work/state/api.port")
  read -r done correct rate < <("$python" "$work/client.py" "$api_port" "$requests" \
                                  tests/data/digits/heldout_png)
  sleep 1.5  # at least one more telemetry window is published while the agent idles
  kill -0 "$agent_pid" || { tail -5 "$work/agent.log" >&2; echo "agent_rss: agent died" >&2; exit 1; }
  status() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$agent_pid/status"; }
  rss=$(status VmRSS); hwm=$(status VmHWM); anon=$(status RssAnon); file=$(status RssFile)
  windows=$(grep -c "event=telemetry_window" "$work/agent.log" || true)
  if [ "${EDGEFLEET_RSS_TOP:-0}" -gt 0 ] && [ "$run" -eq "$runs" ]; then
    echo "largest resident mappings (smaps Rss per file, KiB):"
    awk '/^[0-9a-f]+-[0-9a-f]+ / {name = NF >= 6 ? $6 : "[anon]"} /^Rss:/ {kb[name] += $2}
         END {for (n in kb) print kb[n], n}' "/proc/$agent_pid/smaps" |
      sort -rn | head -n "$EDGEFLEET_RSS_TOP" | sed 's/^/  /'
  fi
  kill "$agent_pid"; wait "$agent_pid" || true; agent_pid=""
  echo "$rss $hwm $anon $file" >> "$work/results.txt"
  printf 'run %d: %d requests (%d correct, %s req/s), %d telemetry windows; VmRSS %s MiB, VmHWM %s MiB, RssAnon %s MiB, RssFile %s MiB\n' \
    "$run" "$done" "$correct" "$rate" "$windows" "$(mib "$rss")" "$(mib "$hwm")" "$(mib "$anon")" "$(mib "$file")"
done

rss=$(cut -d' ' -f1 "$work/results.txt" | median)
hwm=$(cut -d' ' -f2 "$work/results.txt" | median)
anon=$(cut -d' ' -f3 "$work/results.txt" | median)
file=$(cut -d' ' -f4 "$work/results.txt" | median)
printf 'median of %d runs: VmRSS %s MiB, VmHWM %s MiB (RssAnon %s MiB, RssFile %s MiB); shared libraries: %d\n' \
  "$runs" "$(mib "$rss")" "$(mib "$hwm")" "$(mib "$anon")" "$(mib "$file")" "$(ldd "$agent" | wc -l)"
verdict=PASS
[ "$rss" -lt "$limit_kib" ] && [ "$hwm" -lt "$limit_kib" ] || verdict=FAIL
printf 'limit 40 MiB (VmRSS and VmHWM): %s\n' "$verdict"
[ "$verdict" = PASS ]

# The same agent with an empty backends_dir (fresh state, fleet link on, idle): the agent alone,
# with no OpenCV anywhere in the process, since OpenCV comes only with the opencv plugin.
mkdir -p "$work/no-backends"
chmod 755 "$work/no-backends"
sed -e 's|"state_dir": "state"|"state_dir": "state-bare", "backends_dir": "no-backends"|' \
  "$work/agent.json" > "$work/agent-bare.json"
"$agent" run --config "$work/agent-bare.json" 2> "$work/agent-bare.log" &
agent_pid=$!
wait_for "the bare agent's API" 20 test -s "$work/state-bare/api.port"
wait_for "the bare agent's MQTT connection" 20 grep -q "event=mqtt_connected" "$work/agent-bare.log"
sleep 2.5
bare_rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$agent_pid/status")
bare_hwm=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$agent_pid/status")
bare_opencv=$(grep -c "libopencv" "/proc/$agent_pid/maps" || true)
kill "$agent_pid"; wait "$agent_pid" || true; agent_pid=""
printf 'without backends (idle, fleet link on): VmRSS %s MiB, VmHWM %s MiB, libopencv mappings: %d; agent binary NEEDED libopencv: %d\n' \
  "$(mib "$bare_rss")" "$(mib "$bare_hwm")" "$bare_opencv" \
  "$(readelf -d "$agent" | grep NEEDED | grep -c opencv || true)"
