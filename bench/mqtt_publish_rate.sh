#!/usr/bin/env bash
# Benchmark (issue 5, acceptance 5): our outbox + MQTT client against mosquitto_pub -l, both
# publishing the same N ~600-byte QoS 1 messages to a local mosquitto broker started here (own
# config in a temp dir, a free loopback port, no persistence). Builds nothing: it runs the
# already-built bench/mqtt_publish_rate from the build dir given (default build/release).
#
#   bench/mqtt_publish_rate.sh [build_dir=build/release] [messages=20000] [runs=3]
#
# Exits 1 when ours is below 0.5x mosquitto_pub (medians).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
messages=${2:-20000}
runs=${3:-3}
bin=$build/bench/mqtt_publish_rate
if [[ ! -x $bin ]]; then
  echo "no $bin: build it first (cmake --build $build --target mqtt_publish_rate)" >&2
  exit 2
fi

work=$(mktemp -d /tmp/edgefleet-mqtt-bench-XXXXXX)
broker_pid=
cleanup() {
  if [[ -n $broker_pid ]]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest file $work/mosquitto.log
log_type error
log_type warning
EOF
# As root, mosquitto would switch to the mosquitto user, which cannot write into $work.
if [[ $(id -u) == 0 ]]; then echo "user root" >>"$work/mosquitto.conf"; fi
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.out" 2>&1 &
broker_pid=$!
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "mosquitto did not start on port $port:" >&2
  cat "$work/mosquitto.out" "$work/mosquitto.log" >&2 || true
  exit 2
fi
echo "broker: $(/usr/sbin/mosquitto -h | head -1) on 127.0.0.1:$port"
TMPDIR=$work "$bin" 127.0.0.1 "$port" "$messages" "$runs"
