#!/usr/bin/env bash
# Fails when a module includes a header of a module it may not use (../shared/ARCHITECTURE.md,
# "Folders"): arrows point only downwards.
set -euo pipefail
root=${1:-$(git rev-parse --show-toplevel)}
declare -A allowed=(
  [manifests]="manifests"
  [runtime]="manifests runtime"
  [updater]="manifests updater"
  [telemetry]="manifests telemetry"
  [agent]="manifests runtime updater telemetry agent"
  [deploy]="manifests telemetry updater deploy"
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
  done < <(grep -rnE '^#include "(manifests|runtime|updater|telemetry|agent|deploy)/' \
             --include='*.hpp' --include='*.cpp' "$root/$module" || true)
done
if [ "$bad" -ne 0 ]; then exit 1; fi
echo "module dependencies: all includes point downwards"
