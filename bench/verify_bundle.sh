#!/usr/bin/env bash
# Benchmark (Foundation issue, acceptance 4): verifying a 1 GiB bundle with `edgefleet bundle
# verify` against hashing the same file with `sha256sum` (the peer the issue names) and
# `openssl dgst -sha256` (a stronger peer: same SHA-256 code as ours), in the same run.
#
#   bench/verify_bundle.sh [size_mib=1024] [runs=5]
#
# Limits checked: peak RSS of verify < 64 MiB (/usr/bin/time -v "Maximum resident set size"),
# throughput of verify >= 70 % of sha256sum's (ratio of medians over `runs`). Exits 1 on a breach.
# Both compressions the tool writes by default (zstd) and none are measured. Files are read from
# the page cache in every run (one warm-up read first), so the disk does not decide the result.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${2:-5}

cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release --target edgefleet >/dev/null
ef=$PWD/build/release/deploy/edgefleet

work=$(mktemp -d /tmp/edgefleet-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$work/src
mkdir -p "$src/model" "$src/golden/g"
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$src/model/weights.onnx"
printf 'in' > "$src/golden/g/input_0.pb"
printf 'out' > "$src/golden/g/output_0.pb"
cat > "$src/bundle.json" <<'JSON'
{"name": "big", "version": "1.0.0",
 "variants": [{"id": "v", "file": "model/weights.onnx", "format": "onnx", "opset": 13,
   "operators": ["Conv"], "backends": [{"name": "opencv", "version": ">=4.5.0"}],
   "inputs": [{"name": "x", "dtype": "float32", "shape": [1]}],
   "outputs": [{"name": "y", "dtype": "float32", "shape": [1]}]}],
 "golden": [{"name": "g", "inputs": ["golden/g/input_0.pb"], "outputs": ["golden/g/output_0.pb"]}],
 "parity": {}, "watch": {}}
JSON
"$ef" keygen --out "$work/root" >/dev/null
"$ef" keygen --out "$work/release" >/dev/null
"$ef" trust init --root-key "$work/root.key" --release-key "$work/release.pub" \
  --deploy-key "$work/root.pub" -o "$work/root.json" >/dev/null

# Prints "<seconds> <max_rss_kib>" for one command run.
measure() {
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >/dev/null 2>"$work/stderr.txt" || {
    cat "$work/stderr.txt" >&2
    echo "bench: command failed: $*" >&2
    exit 1
  }
  cat "$work/time.txt"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

status=0
printf '%-6s %10s %10s %10s %10s %12s %12s %s\n' compr "MiB" verify_s sha256sum_s openssl_s \
  "vs_sha256sum" "verify_rss" verdict
for compression in zstd none; do
  bundle=$work/big-$compression.efb
  "$ef" bundle create "$src" -o "$bundle" --compression "$compression" \
    --key "$work/release.key" >/dev/null
  cat "$bundle" >/dev/null  # warm the page cache
  : > "$work/v.txt"; : > "$work/s.txt"; : > "$work/o.txt"; : > "$work/rss.txt"
  for _ in $(seq "$runs"); do
    read -r secs rss < <(measure "$ef" bundle verify "$bundle" --trust "$work/root.json")
    echo "$secs" >> "$work/v.txt"; echo "$rss" >> "$work/rss.txt"
    read -r secs _ < <(measure sha256sum "$bundle"); echo "$secs" >> "$work/s.txt"
    read -r secs _ < <(measure openssl dgst -sha256 "$bundle"); echo "$secs" >> "$work/o.txt"
  done
  v=$(median < "$work/v.txt"); s=$(median < "$work/s.txt"); o=$(median < "$work/o.txt")
  rss_max=$(sort -n "$work/rss.txt" | tail -1)
  mib=$(( $(stat -c %s "$bundle") / 1048576 ))
  ratio=$(awk -v s="$s" -v v="$v" 'BEGIN {printf "%.2f", s / v}')
  verdict=PASS
  awk -v r="$ratio" 'BEGIN {exit !(r < 0.70)}' && verdict="FAIL(throughput)"
  [ "$rss_max" -ge $((64 * 1024)) ] && verdict="FAIL(rss)"
  [ "$verdict" = PASS ] || status=1
  printf '%-6s %10s %10s %10s %10s %11sx %9s KiB %s\n' "$compression" "$mib" "$v" "$s" "$o" \
    "$ratio" "$rss_max" "$verdict"
done
echo "(median of $runs runs each; vs_sha256sum = sha256sum time / verify time, >= 0.70 required;"
echo " verify_rss = largest peak RSS of any verify run, < 65536 KiB required)"
exit $status
