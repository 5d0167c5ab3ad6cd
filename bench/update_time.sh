#!/usr/bin/env bash
# Benchmark (Updater issue, acceptance 5): time from a signed desired state to the new model
# serving, for a 100 MB bundle over loopback, against the same work done by
# `curl -o` + `sha256sum` + `tar -x` in the same run (the peer does no signature check, no
# compatibility check, no load, no parity and no fsync: it is the floor for moving the bytes).
#
#   bench/update_time.sh [size_mb=100] [runs=3] [limit=1.0]
#
# Ours: a fresh agent state per run; the clock starts when the desired state file appears (an
# atomic rename) and stops when the agent logs the activation (`to=watching`: the model serves).
# Limit: median(ours) / median(peer) below `limit` (issue 16: 1.0 on an idle machine, 1.2 with
# the other core busy). The load average before and after is printed. Exits 1 on a breach.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-100}
runs=${2:-3}
limit=${3:-1.0}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release --target edgefleet edgefleet-agent >/dev/null
ef=$PWD/build/release/deploy/edgefleet
agent=$PWD/build/release/agent/edgefleet-agent

work=$(mktemp -d /tmp/edgefleet-bench-XXXXXX)
server_pid=""
agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Keys, trust root, and a bundle: digits v1 plus a padding variant no backend here runs (verified
# and unpacked like every file, never loaded), stored uncompressed so the wire carries size_mb.
for role in root release deploy; do "$ef" keygen --out "$work/$role" >/dev/null; done
"$ef" trust init --root-key "$work/root.key" --release-key "$work/release.pub" \
  --deploy-key "$work/deploy.pub" -o "$work/root.json" >/dev/null
cp -r tests/data/digits/v1 "$work/src"
head -c $((size_mb * 1000 * 1000)) /dev/urandom > "$work/src/model/padding.bin"
/usr/bin/python3 - "$work/src/bundle.json" <<'PY'
import json, sys
p = sys.argv[1]
spec = json.load(open(p))
v = dict(spec["variants"][0])
v.update(id="padding", file="model/padding.bin", format="padding",
         backends=[{"name": "tflite", "version": ">=2.0.0"}])
spec["variants"].append(v)
json.dump(spec, open(p, "w"))
PY
mkdir -p "$work/www"
"$ef" bundle create "$work/src" -o "$work/www/big.efb" --compression none \
  --key "$work/release.key" >/dev/null
bytes=$(stat -c %s "$work/www/big.efb")
sha=$(sha256sum "$work/www/big.efb" | cut -d' ' -f1)

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work/www" && exec /usr/bin/python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
server_pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
url="http://127.0.0.1:$port/big.efb"

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

desired() {  # $1 = serial; writes the signed desired state to $work/desired.tmp
  local expires
  expires=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
  /usr/bin/python3 - "$1" "$url" "$bytes" "$sha" "$expires" > "$work/desired.tmp" <<'PY'
import json, sys, datetime
serial, url, size, sha, expires = sys.argv[1:]
now = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
body = {"type": "edgefleet/desired-state", "spec_version": 1, "fleet": "bench",
        "target": {"device": "box-1"}, "serial": int(serial), "created": now, "expires": expires,
        "models": [{"name": "digits", "version": "1.0.0",
                    "bundle": {"url": url, "size": int(size), "sha256": sha}}]}
print(json.dumps({"signed": body, "signatures": []}))
PY
  "$ef" trust sign "$work/desired.tmp" --key "$work/deploy.key" >/dev/null
}

: > "$work/ours.txt"; : > "$work/peer.txt"
for run in $(seq "$runs"); do
  # Peer: download, hash, unpack.
  rm -rf "$work/peer" && mkdir -p "$work/peer/x"
  t0=$(now_ms)
  curl -s -o "$work/peer/b.efb" "$url"
  sha256sum "$work/peer/b.efb" >/dev/null
  tar -xf "$work/peer/b.efb" -C "$work/peer/x"
  echo $(( $(now_ms) - t0 )) >> "$work/peer.txt"

  # Ours: a fresh agent; the desired state appears; wait for the activation.
  rm -rf "$work/state" "$work/desired.json"
  cat > "$work/agent.json" <<JSON
{"device": "box-1", "fleet": "bench", "state_dir": "state", "trust_root": "root.json",
 "api": {"host": "127.0.0.1", "port": 0},
 "desired_state": {"file": "desired.json", "poll_ms": 20}}
JSON
  "$agent" run --config "$work/agent.json" 2> "$work/agent.log" &
  agent_pid=$!
  for _ in $(seq 200); do [ -s "$work/state/api.port" ] && break; sleep 0.02; done
  desired "$run"
  # The clock starts when the document appears (an atomic rename), not while the script signs it.
  t0=$(now_ms)
  mv "$work/desired.tmp" "$work/desired.json"
  until grep -q "to=watching" "$work/agent.log"; do
    if ! kill -0 "$agent_pid" 2>/dev/null || grep -q "to=failed" "$work/agent.log"; then
      tail -5 "$work/agent.log" >&2; echo "bench: the agent did not activate" >&2; exit 1
    fi
    sleep 0.005
  done
  echo $(( $(now_ms) - t0 )) >> "$work/ours.txt"
  kill "$agent_pid"; wait "$agent_pid" || true; agent_pid=""
done

ours=$(median < "$work/ours.txt"); peer=$(median < "$work/peer.txt")
ratio=$(awk -v o="$ours" -v p="$peer" 'BEGIN {printf "%.2f", o / p}')
printf 'bundle %s bytes over loopback, %s runs each\n' "$bytes" "$runs"
printf 'ours (desired state -> serving): median %s ms (%s)\n' "$ours" "$(tr '\n' ' ' < "$work/ours.txt")"
printf 'peer (curl -o + sha256sum + tar -x): median %s ms (%s)\n' "$peer" "$(tr '\n' ' ' < "$work/peer.txt")"
verdict=PASS
awk -v r="$ratio" -v l="$limit" 'BEGIN {exit !(r >= l)}' && verdict=FAIL
printf 'load average before %s, after %s\n' "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'ratio ours/peer = %sx (limit below %sx): %s\n' "$ratio" "$limit" "$verdict"
[ "$verdict" = PASS ]
