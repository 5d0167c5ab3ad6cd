#!/usr/bin/env bash
# Runs edgefleet's libFuzzer targets (tests/fuzz/<name>_fuzz.cpp, built with EDGEFLEET_FUZZ=ON).
#
#   tests/fuzz/run.sh [--build-dir DIR] [--jobs N] <target|all> <seconds>
#
# For each target: replays every regression input in tests/fuzz/regressions/<target>/ (a crash
# there fails at once), then fuzzes for <seconds> (-max_total_time) from the committed seeds
# (tests/fuzz/corpus/<target>/ and the tests/data files named below) into a persistent corpus
# outside the tree, <build dir>/corpus/<target>/, which later runs continue from. --jobs N runs
# N fuzzing processes on that corpus (libFuzzer's -jobs/-workers; each gets <seconds>). Prints one
# line per target: executions, coverage (cov = edges, ft = features, from libFuzzer's last
# stats line), corpus size, findings and slow units (a unit over 10 s: reported, not a finding; a
# stall of a shared machine causes them too); a finding's input is kept in <build dir>/findings/<target>/
# (copy it to tests/fuzz/regressions/<target>/ once the defect is fixed).
# Exit status: 0 when nothing was found, 1 on a finding, 2 on bad usage or a missing binary.
#
# Environment: FUZZ_RSS_LIMIT_MB (default 2048), FUZZ_TIMEOUT_S (one input, default 10).
# Without --build-dir: build/fuzz, configured as in scripts/test.sh.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build="$src/build/fuzz"
jobs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -ne 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: tests/fuzz/run.sh [--build-dir DIR] [--jobs N] <target|all> <seconds>" >&2
  exit 2
fi
all=(manifest desired_state trust_root semver archive tensor_proto image onnx tflite collector
     local_api)
if [ "$1" = all ]; then targets=("${all[@]}"); else targets=("$1"); fi
seconds=$2

# Seeds from tests/data beside the committed ones (small files only; libFuzzer reads them all).
extra_seeds() {
  case "$1" in
    tensor_proto) echo "$src/tests/data/digits/v1/golden $src/tests/data/onnx/node" ;;
    onnx) echo "$src/tests/data/digits/v1/model $src/tests/data/onnx/node" ;;
    tflite) echo "$src/tests/data/tflite" ;;
  esac
}

status=0
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/${t}_fuzz"
  if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is missing (build it: cmake --build $build --target fuzzers)" >&2
    exit 2
  fi
  corpus="$build/corpus/$t"
  findings="$build/findings/$t"
  # One log directory per run: two runs of a target at once (ctest beside a long run) must not
  # read each other's stats.
  logs="$build/fuzz-logs/$t/$(date +%Y%m%dT%H%M%S)-$$"
  mkdir -p "$corpus" "$findings" "$logs"
  opts=(-rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-2048}" -timeout="${FUZZ_TIMEOUT_S:-10}"
        -artifact_prefix="$findings/" -print_final_stats=1)

  # 1. Regression inputs: each must run clean.
  regressions=()
  if [ -d "$src/tests/fuzz/regressions/$t" ]; then
    while IFS= read -r -d '' f; do regressions+=("$f"); done \
      < <(find "$src/tests/fuzz/regressions/$t" -type f ! -name '*.md' -print0 | sort -z)
  fi
  if [ ${#regressions[@]} -gt 0 ]; then
    if ! "$bin" "${opts[@]}" "${regressions[@]}" > "$logs/regressions.log" 2>&1; then
      echo "fuzz $t: a regression input fails again:" >&2
      tail -n 40 "$logs/regressions.log" >&2
      status=1
      continue
    fi
  fi

  # 2. Timed run from the seeds into the persistent corpus (the first directory is written to).
  seeds=()
  [ -d "$src/tests/fuzz/corpus/$t" ] && seeds+=("$src/tests/fuzz/corpus/$t")
  for d in $(extra_seeds "$t"); do seeds+=("$d"); done
  # Crashes, leaks, timeouts and OOMs are findings; slow-unit-* files (a unit over 10 s, which a
  # stall of a shared machine also causes; libFuzzer goes on) are counted apart.
  count_findings() { find "$findings" -type f ! -name 'slow-unit-*' | wc -l; }
  count_slow() { find "$findings" -type f -name 'slow-unit-*' | wc -l; }
  before=$(count_findings)
  slow_before=$(count_slow)
  start=$(date +%s)
  rc=0
  if [ "$jobs" -gt 1 ]; then
    (cd "$logs" && "$bin" "${opts[@]}" -max_total_time="$seconds" -jobs="$jobs" \
        -workers="$jobs" "$corpus" "${seeds[@]}" > "$logs/main.log" 2>&1) || rc=$?
  else
    "$bin" "${opts[@]}" -max_total_time="$seconds" "$corpus" "${seeds[@]}" \
      > "$logs/fuzz-0.log" 2>&1 || rc=$?
  fi
  elapsed=$(( $(date +%s) - start ))
  after=$(count_findings)
  slow=$(( $(count_slow) - slow_before ))

  # libFuzzer's stats: the last "#N ... cov: C ft: F corp: K" line and the final
  # stat::number_of_executed_units of each process.
  execs=0; cov=?; ft=?
  for log in "$logs"/fuzz-*.log; do
    [ -f "$log" ] || continue
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    execs=$(( execs + ${n:-0} ))
    line=$(grep -E '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)
    if [ -n "$line" ]; then
      c=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$line")
      f=$(sed -E 's/.*ft: ([0-9]+).*/\1/' <<<"$line")
      if [ "$cov" = "?" ] || [ "$c" -gt "$cov" ]; then cov=$c; fi
      if [ "$ft" = "?" ] || [ "$f" -gt "$ft" ]; then ft=$f; fi
    fi
  done
  files=$(find "$corpus" -type f | wc -l)
  new=$(( after - before ))
  echo "fuzz $t: ${elapsed}s execs=$execs cov=$cov ft=$ft corpus=$files findings=$new" \
       "slow_units=$slow (logs: $logs)"
  if [ "$rc" -ne 0 ] || [ "$new" -gt 0 ]; then
    echo "fuzz $t: FAILED (exit $rc); inputs in $findings:" >&2
    ls -1 "$findings" >&2
    for log in "$logs"/fuzz-*.log; do
      grep -q -E 'ERROR: |runtime error|deadly signal' "$log" && tail -n 60 "$log" >&2
    done
    status=1
  fi
done
exit $status
