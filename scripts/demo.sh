#!/usr/bin/env bash
# The README's first command: a whole fleet on one machine. Installs what is missing, builds,
# then starts a mosquitto broker on loopback, the collector with its dashboard, the bundle
# server and three agents (box-1..3, group lab) with their own state directories, sends them
# traffic with feedback, and rolls out digits 1.0.0, then 1.1.0 in waves, then a broken 1.2.0
# that the canary refuses (parity), so that rollout halts and restores the previous desired
# state. Prints a numbered line per step (each one checked before it is printed), a summary and
# the dashboard URL, then runs until Ctrl-C; every process it started is stopped on exit.
#
# Environment:
#   EDGEFLEET_DEMO_DIR=DIR         work directory (default: a new mktemp -d); kept at the end
#   EDGEFLEET_DEMO_HTTP_PORT=N     dashboard port (default 8080; taken or 0: a free port)
#   EDGEFLEET_DEMO_EXIT=1          stop everything after the summary and exit 0 (non-interactive)
#   EDGEFLEET_DEMO_BUILD_DIR=DIR   skip install-deps and the build; use DIR's binaries (tests)
#
# No TLS here: the broker listens on 127.0.0.1 only and lets anyone on this machine in. A real
# fleet uses deploy/mosquitto/ (TLS, client certificates, ACL); the agents and the operator
# tools take --ca-file/--cert-file/--key-file for it.
set -eEuo pipefail
cd "$(dirname "$0")/.."
src=$PWD

t_start=$(date +%s.%N)
if [ -n "${EDGEFLEET_DEMO_BUILD_DIR:-}" ]; then
  build=$(cd "$EDGEFLEET_DEMO_BUILD_DIR" && pwd)
else
  bash scripts/install-deps.sh
  t_start=$(date +%s.%N)  # the 3-minute budget starts once the packages are there
  build=$src/build/release
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target edgefleet edgefleet-agent
fi
ef=$build/deploy/edgefleet
agent=$build/agent/edgefleet-agent
for bin in "$ef" "$agent"; do
  [ -x "$bin" ] || { echo "demo: FAILED: $bin is missing (build it first)" >&2; exit 1; }
done
t_built=$(date +%s.%N)
py=/usr/bin/python3  # Debian's (install-deps.sh); the helpers use its standard library only
[ -x "$py" ] || py=python3
helper=("$py" "$src/scripts/demo_helper.py")
secs() { "$py" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
elapsed() { secs "$1" "$(date +%s.%N)"; }

# --- the work directory ---------------------------------------------------------------------
work=${EDGEFLEET_DEMO_DIR:-$(mktemp -d /tmp/edgefleet-demo-XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
if [ -n "$(ls -A "$work")" ]; then
  if [ -f "$work/.edgefleet-demo" ]; then
    find "$work" -mindepth 1 -delete  # a previous demo's files: start afresh
  else
    echo "demo: FAILED: $work is not empty and was not made by the demo; choose another EDGEFLEET_DEMO_DIR" >&2
    exit 1
  fi
fi
touch "$work/.edgefleet-demo"
mkdir -p "$work/pids" "$work/logs"

# --- processes, cleanup and failures --------------------------------------------------------
# Every background process: its pid in $work/pids/<name>.pid and in `started` (start order).
# Each runs in its own session (setsid, same pid), so a Ctrl-C in the terminal reaches only this
# script, which then stops them in order: agents before the broker, so their "offline" arrives.
started=()
declare -A pid_of=()
start_bg() {  # NAME LOG COMMAND...
  local name=$1 log=$2
  shift 2
  setsid "$@" >"$log" 2>&1 &
  pid_of[$name]=$!
  started+=("$name")
  echo "${pid_of[$name]}" >"$work/pids/$name.pid"
}
alive() { [ -n "${pid_of[$1]:-}" ] && kill -0 "${pid_of[$1]}" 2>/dev/null; }
stop_names() {  # TERM, then KILL whoever is still there after 5 s
  local name pid deadline
  for name in "$@"; do alive "$name" && kill -TERM "${pid_of[$name]}" 2>/dev/null || true; done
  deadline=$((SECONDS + 5))
  for name in "$@"; do
    while alive "$name" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if alive "$name"; then
      echo "demo: $name (pid ${pid_of[$name]}) did not stop within 5 s of SIGTERM: SIGKILL" >&2
      kill -KILL "${pid_of[$name]}" 2>/dev/null || true
    fi
    pid=${pid_of[$name]}
    wait "$pid" 2>/dev/null || true
    unset "pid_of[$name]"
  done
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM ERR
  set +e
  if [ ${#started[@]} -gt 0 ]; then
    local names=() n
    # Order: traffic and the idle wait first, then the agents (their clean stop publishes
    # "offline" while broker and collector still listen), then the servers, the broker last.
    for n in traffic idle box-1 box-2 box-3; do [ -n "${pid_of[$n]:-}" ] && names+=("$n"); done
    [ ${#names[@]} -gt 0 ] && stop_names "${names[@]}"
    names=()
    for n in collector serve; do [ -n "${pid_of[$n]:-}" ] && names+=("$n"); done
    [ ${#names[@]} -gt 0 ] && stop_names "${names[@]}"
    for n in "${!pid_of[@]}"; do stop_names "$n"; done  # mosquitto and anything else
    echo "demo: stopped the ${#started[@]} processes it started (${started[*]})"
  fi
  echo "demo: work directory (keys, bundles, logs, databases, state): $work"
  exit "$rc"
}
current="setting up"
on_error() {
  local rc=$1
  echo "demo: FAILED at step '$current': command exited $rc: $2" >&2
  echo "demo: logs are in $work/logs" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'on_error $? "$BASH_COMMAND"' ERR
trap 'echo; echo "demo: interrupted during: $current" >&2; exit 130' INT TERM
fail() { echo "demo: FAILED at step '$current': $*" >&2; echo "demo: logs are in $work/logs" >&2; exit 1; }

n=0
step() { n=$((n + 1)); printf '[%d] %s\n' "$n" "$*"; }
begin() { current=$*; }
wait_file() {  # FILE SECONDS NAME: until FILE exists (and NAME still runs)
  local deadline=$((SECONDS + $2))
  until [ -s "$1" ]; do
    alive "$3" || fail "$3 exited; its log: $work/logs/$3.log: $(tail -n 5 "$work/logs/$3.log" 2>/dev/null)"
    [ $SECONDS -lt $deadline ] || fail "$1 did not appear within $2 s"
    sleep 0.1
  done
}

echo "edgefleet demo: work directory $work"
echo "(no TLS in the demo: the broker, collector, bundle server and agents listen on 127.0.0.1 only)"

# --- keys, trust root, bundles --------------------------------------------------------------
begin "keys"
mkdir -p "$work/keys"
for role in root release deploy; do
  "$ef" keygen --force --out "$work/keys/$role" >"$work/logs/keygen-$role.log"
done
step "keys: root, release and deploy key pairs made (keys/*.key, mode 0600)"

begin "trust root"
"$ef" trust init --root-key "$work/keys/root.key" --release-key "$work/keys/release.pub" \
  --deploy-key "$work/keys/deploy.pub" --expires 365d -o "$work/root.json" >"$work/logs/trust.log"
step "trust root: root.json names the three keys (root signs trust roots, release signs bundles, deploy signs desired state)"

begin "bundles"
mkdir -p "$work/bundles" "$work/bundle-src"
# The watch window after each activation: short so the demo is quick, online accuracy from the
# traffic's feedback, and a coarse latency factor: these requests take a fraction of a
# millisecond, so on a busy machine scheduler noise alone can triple a p95 (seen: 0.25 -> 0.9 ms).
watch_window_s=3
watch=(window_s=$watch_window_s min_requests=20 min_online_accuracy=0.8 max_p95_latency_factor=50)
declare -A bundle_of=([1.0.0]=v1 [1.1.0]=v2 [1.2.0]=broken)
for version in 1.0.0 1.1.0 1.2.0; do
  dir=$work/bundle-src/${bundle_of[$version]}
  cp -r "$src/tests/data/digits/${bundle_of[$version]}" "$dir"
  "${helper[@]}" patch-watch "$dir/bundle.json" "${watch[@]}"
  "$ef" bundle create "$dir" -o "$work/bundles/digits-$version.efb" --version "$version" \
    --key "$work/keys/release.key" >"$work/logs/bundle-$version.log"
  "$ef" bundle verify "$work/bundles/digits-$version.efb" --trust "$work/root.json" \
    >>"$work/logs/bundle-$version.log"
done
step "bundles: digits 1.0.0 (tests/data/digits/v1), 1.1.0 (v2) and 1.2.0 (broken: fails parity) created, signed by the release key and verified against the trust root; watch policy ${watch[*]}"

# --- broker, collector, bundle server ---------------------------------------------------------
begin "mosquitto broker"
mkdir -p "$work/mosquitto"
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)  # /usr/sbin: not in a user's PATH
mqtt_port=
for attempt in 1 2 3; do
  port=$("${helper[@]}" free-port)
  {
    echo "# edgefleet demo broker: loopback only, anonymous, no TLS (a real fleet: deploy/mosquitto/)"
    echo "listener $port 127.0.0.1"
    echo "allow_anonymous true"
    echo "persistence true"
    echo "persistence_location $work/mosquitto/"
    echo "log_dest file $work/mosquitto/mosquitto.log"
    echo "max_queued_messages 100000"
    # As root, mosquitto would switch to the `mosquitto` user, which cannot write here.
    if [ "$(id -u)" -eq 0 ]; then echo "user root"; fi
  } >"$work/mosquitto/mosquitto.conf"
  start_bg mosquitto "$work/logs/mosquitto.log" "$mosquitto" -c "$work/mosquitto/mosquitto.conf"
  if "${helper[@]}" wait-tcp "$port" 10 2>/dev/null && alive mosquitto; then
    mqtt_port=$port
    break
  fi
  stop_names mosquitto  # the port was taken meanwhile: another one
done
[ -n "$mqtt_port" ] || fail "mosquitto did not start (see $work/mosquitto/mosquitto.log)"
step "mosquitto: MQTT broker on 127.0.0.1:$mqtt_port (anonymous, loopback only, no TLS; persistence in mosquitto/)"

begin "collector"
http_port=${EDGEFLEET_DEMO_HTTP_PORT:-8080}
if [ "$http_port" != 0 ] && ! "${helper[@]}" port-free "$http_port"; then
  echo "    (port $http_port is taken: the collector takes a free one)"
  http_port=0
fi
start_collector() {
  rm -f "$work/collector.port"
  start_bg collector "$work/logs/collector.log" "$ef" collect --broker "127.0.0.1:$mqtt_port" \
    --fleet demo --db "$work/collector.db" --http "127.0.0.1:$1" --port-file "$work/collector.port"
}
start_collector "$http_port"
deadline=$((SECONDS + 15))
until [ -s "$work/collector.port" ]; do
  if ! alive collector; then
    [ "$http_port" != 0 ] || fail "edgefleet collect exited: $(tail -n 5 "$work/logs/collector.log")"
    echo "    (the collector could not listen on port $http_port: it takes a free one)"
    stop_names collector
    http_port=0
    start_collector 0
  fi
  [ $SECONDS -lt $deadline ] || fail "edgefleet collect wrote no port file within 15 s"
  sleep 0.1
done
http_port=$(cat "$work/collector.port")
dashboard=http://127.0.0.1:$http_port/
step "collector: edgefleet collect stores fleet \"demo\" in collector.db; dashboard and API on $dashboard"

begin "bundle server"
start_bg serve "$work/logs/serve.log" "$ef" serve --dir "$work/bundles" --http 127.0.0.1:0 \
  --port-file "$work/serve.port"
wait_file "$work/serve.port" 15 serve
bundles_url=http://127.0.0.1:$(cat "$work/serve.port")
step "bundle server: edgefleet serve publishes bundles/ on $bundles_url/ (Range requests, so downloads resume)"

check_agent() {  # DEVICE CHECKS...: the device's own journal must pass the helper's checks
  local d=$1
  shift
  "${helper[@]}" agent "$agent" "$work/$d/agent.json" digits "$@" >"$work/logs/check.out" \
    2>"$work/logs/check.err" || fail "$d: $(cat "$work/logs/check.err")"
}

# --- three agents ---------------------------------------------------------------------------
begin "agents"
devices=(box-1 box-2 box-3)
for d in "${devices[@]}"; do
  mkdir -p "$work/$d/state"
  cp "$work/root.json" "$work/$d/root.json"
  cat >"$work/$d/agent.json" <<EOF
{"device": "$d", "fleet": "demo", "groups": ["lab"],
 "state_dir": "state", "trust_root": "root.json", "backends": ["opencv"],
 "api": {"host": "127.0.0.1", "port": 0},
 "mqtt": {"host": "127.0.0.1", "port": $mqtt_port},
 "telemetry": {"window_s": 2}}
EOF
  start_bg "$d" "$work/logs/$d.log" "$agent" run --config "$work/$d/agent.json"
done
for d in "${devices[@]}"; do wait_file "$work/$d/state/api.port" 20 "$d"; done
"${helper[@]}" wait-online "http://127.0.0.1:$http_port" 20 "${devices[@]}" || fail "agents not online"
for d in "${devices[@]}"; do check_agent "$d" --active none; done
ports=""
for d in "${devices[@]}"; do ports+="$d:$(cat "$work/$d/state/api.port") "; done
step "agents: box-1, box-2, box-3 run (fleet demo, group lab; each with its own config and state directory, box-N/); local APIs on ${ports% }; all three online in the collector, no model yet"

begin "traffic"
traffic_args=()
for d in "${devices[@]}"; do traffic_args+=("$d=$work/$d/state/api.port"); done
start_bg traffic "$work/logs/traffic.log" "$py" "$src/scripts/demo_traffic.py" \
  --images "$src/tests/data/digits/heldout_png" --rate 10 --report 5 "${traffic_args[@]}"
sleep 0.5
alive traffic || fail "demo_traffic.py exited: $(tail -n 5 "$work/logs/traffic.log")"
step "traffic: scripts/demo_traffic.py posts held-out digit PNGs to every agent's local API (about 10 requests/s each) and sends the true label as feedback (logs/traffic.log)"

# --- rollouts -------------------------------------------------------------------------------
# On screen each device's download, commit or failure; every step is in logs/rollout-ID.log.
quiet_events='pending|verifying|unpacking|loading|parity|parity_report|activating'
rollout() {  # ID VERSION EXPECTED_STATUS HEADLINE: `edgefleet rollout start`, progress indented
  begin "rollout $1"
  echo "[$((n + 1))] rollout $1: $4"
  t0=$(date +%s.%N)
  local rc=0
  "$ef" rollout start --model digits --bundle "$bundles_url/digits-$2.efb" --group lab \
    --waves "$waves" --broker "127.0.0.1:$mqtt_port" --fleet demo \
    --deploy-key "$work/keys/deploy.key" --db "$work/rollouts.db" --id "$1" \
    --wave-timeout 60s 2>&1 | tee "$work/logs/rollout-$1.log" |
    sed -u -E "/ event=($quiet_events) /d; s/^/      /" || rc=$?
  [ "$rc" -eq "$3" ] || fail "edgefleet rollout start exited $rc, expected $3; log: logs/rollout-$1.log"
  n=$((n + 1))
}

waves=100%
rollout digits-1.0.0 1.0.0 0 "digits 1.0.0 to group lab, one wave ($waves)"
for d in "${devices[@]}"; do check_agent "$d" --active 1.0.0 --committed 1.0.0; done
echo "    completed (exit 0) in $(elapsed "$t0") s: box-1, box-2 and box-3 serve digits 1.0.0 (each agent's journal: committed, active)"

# Wave k releases the first ceil(p_k * N) devices of the group (sorted by name): with N = 3 these
# percentages make waves of one device each (34% would already be ceil(1.02) = 2 devices).
waves=33%,66%,100%
rollout digits-1.1.0 1.1.0 0 "digits 1.1.0 to group lab in waves $waves (one device each)"
for d in "${devices[@]}"; do check_agent "$d" --active 1.1.0 --committed 1.1.0; done
echo "    completed (exit 0) in $(elapsed "$t0") s ($("${helper[@]}" waves "$work/logs/rollout-digits-1.1.0.log")): each box served 1.1.0 through its ${watch_window_s} s watch window and committed it"

rollout digits-1.2.0 1.2.0 2 "the broken digits 1.2.0 to group lab in waves $waves (one device each)"
canary=box-1
check_agent "$canary" --failed 1.2.0 --active 1.1.0
reason=$(cat "$work/logs/check.out")
# One variant: "parity: ..."; several (the box runs both digits exports): "no variant passed: "
# and one "variant '<id>' on <backend>: parity: ..." per variant.
parity_only=1
case "$reason" in
  parity:*) ;;
  "no variant passed: "*)
    IFS=';' read -ra parts <<<"${reason#no variant passed: }"
    for part in "${parts[@]}"; do [[ "$part" == *": parity: "* ]] || parity_only=0; done ;;
  *) parity_only=0 ;;
esac
[ "$parity_only" = 1 ] || fail "$canary failed 1.2.0 for another reason than parity: $reason"
for d in box-2 box-3; do check_agent "$d" --never 1.2.0 --active 1.1.0; done
"${helper[@]}" retained-desired "$mqtt_port" demo >"$work/logs/desired-after-halt.txt"
if grep -q "digits=1.2.0" "$work/logs/desired-after-halt.txt"; then
  fail "a retained desired state still names digits 1.2.0 after the halt: $(cat "$work/logs/desired-after-halt.txt")"
fi
echo "    halted (exit 2) in $(elapsed "$t0") s: the canary $canary refused 1.2.0 ($reason); no retained desired state names 1.2.0 any more (the previous one was restored); box-2 and box-3 never started a 1.2.0 deployment; all three still serve 1.1.0"

# --- summary --------------------------------------------------------------------------------
begin "collector catching up"
stored=$("${helper[@]}" wait-collector "http://127.0.0.1:$http_port" 20 digits \
  --active box-1=1.1.0 --active box-2=1.1.0 --active box-3=1.1.0 --failed box-1=1.2.0 \
  --rollouts 3) || fail "the collector does not show the final fleet"
step "collector: its API shows every box serving digits 1.1.0, the canary's failed 1.2.0 deployment and $stored"

begin "summary"
"$ef" rollout list --db "$work/rollouts.db" --json >"$work/rollouts.json"
echo
t_summary=$(date +%s.%N)
echo "== summary (reached $(secs "$t_start" "$t_summary") s after the packages were installed: build $(secs "$t_start" "$t_built") s, demo $(secs "$t_built" "$t_summary") s)"
"${helper[@]}" summary "$work/collector.db" "$work/collector-at-summary.db" "$work/rollouts.json" digits
echo "  canary failure: $canary refused digits 1.2.0: $reason"
echo "  dashboard: $dashboard"
echo "  work directory: $work (logs/, collector.db, rollouts.db, box-N/state/)"
echo "demo: summary reached in $(secs "$t_start" "$t_summary") s"

if [ "${EDGEFLEET_DEMO_EXIT:-0}" = 1 ]; then
  current="stopping"
  exit 0
fi
current="running (Ctrl-C stops everything)"
echo
echo "The fleet keeps running with traffic: open $dashboard . Press Ctrl-C to stop everything."
trap 'echo; exit 0' INT TERM  # the expected way to end the demo
start_bg idle /dev/null sleep 2147483647
wait "${pid_of[idle]}" || true
