#!/usr/bin/env bash
# Fails when a module includes a header of a module it may not use (../shared/ARCHITECTURE.md,
# "Folders"): arrows point only downwards.
set -euo pipefail
root=${1:-$(git rev-parse --show-toplevel)}
declare -A allowed=(
  [manifests]="manifests"
  [http]="manifests http"
  [runtime]="manifests runtime"
  [updater]="manifests updater"
  [telemetry]="manifests telemetry"
  [agent]="manifests http runtime updater telemetry agent"
  [deploy]="manifests http runtime telemetry updater deploy"
)
bad=0
for module in "${!allowed[@]}"; do
  [ -d "$root/$module" ] || continue
  while IFS=: read -r file line text; do
    used=$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$text")
    case " ${allowed[$module]} " in
      *" $used "*) ;;
      *) echo "$file:$line: module '$module' may not include '$used' ($text)"; bad=1 ;;
    esac
  done < <(grep -rnE '^#include "(manifests|http|runtime|updater|telemetry|agent|deploy)/' \
             --include='*.hpp' --include='*.cpp' "$root/$module" || true)
done
# Engines live in backend plugins: OpenCV headers only under runtime/opencv/ (the agent and every
# library it links stay free of them; tests and benchmarks may compare against OpenCV).
while IFS=: read -r file line text; do
  echo "$file:$line: OpenCV outside runtime/opencv/ ($text)"; bad=1
done < <(grep -rnE '^#include <opencv2/' --include='*.hpp' --include='*.cpp' \
           "$root/manifests" "$root/runtime" "$root/updater" "$root/telemetry" "$root/agent" \
           "$root/deploy" | grep -v "^$root/runtime/opencv/" || true)
# The same for libtorch: its headers only under runtime/torch/.
while IFS=: read -r file line text; do
  echo "$file:$line: libtorch outside runtime/torch/ ($text)"; bad=1
done < <(grep -rnE '^#include <(torch|ATen|c10)/' --include='*.hpp' --include='*.cpp' \
           "$root/manifests" "$root/runtime" "$root/updater" "$root/telemetry" "$root/agent" \
           "$root/deploy" | grep -v "^$root/runtime/torch/" || true)
if [ "$bad" -ne 0 ]; then exit 1; fi
echo "module dependencies: all includes point downwards, OpenCV only in runtime/opencv/," \
     "libtorch only in runtime/torch/"
