#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs the operator's bundle
# workflow on the real digits model: keygen -> trust init -> bundle create -> sign -> verify ->
# inspect, then shows a tampered copy being refused. Later issues extend this to a whole fleet.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j"$(nproc)" --target edgefleet
ef=$PWD/build/release/deploy/edgefleet

work=${EDGEFLEET_DEMO_DIR:-$(mktemp -d /tmp/edgefleet-demo-XXXXXX)}
mkdir -p "$work"
step() { printf '\n== %s\n' "$*"; }

step "1. keys: one for each role (root signs trust roots, release signs bundles, deploy signs desired state)"
for role in root release deploy; do "$ef" keygen --force --out "$work/$role"; done

step "2. trust root: what every box believes (written once at provisioning)"
"$ef" trust init --root-key "$work/root.key" --release-key "$work/release.pub" \
  --deploy-key "$work/deploy.pub" --expires 365d -o "$work/root.json"

step "3. bundle create: digits 1.0.0 from tests/data/digits/v1 (sizes and SHA-256 of every file)"
"$ef" bundle create tests/data/digits/v1 -o "$work/digits-1.0.0.efb"

step "4. bundle sign: the release key vouches for the manifest"
"$ef" bundle sign "$work/digits-1.0.0.efb" --key "$work/release.key"

step "5. bundle verify: signatures against the trust root, every file's size and hash, safe entries"
"$ef" bundle verify "$work/digits-1.0.0.efb" --trust "$work/root.json"

step "6. bundle inspect"
"$ef" bundle inspect "$work/digits-1.0.0.efb"

step "7. a tampered copy (one byte changed) is refused"
cp "$work/digits-1.0.0.efb" "$work/tampered.efb"
size=$(stat -c %s "$work/tampered.efb")
printf '\x00' | dd of="$work/tampered.efb" bs=1 seek=$((size / 2)) conv=notrunc status=none
if "$ef" bundle verify "$work/tampered.efb" --trust "$work/root.json"; then
  echo "demo: FAILED: the tampered bundle was accepted" >&2
  exit 1
fi
echo "(refused, as it must be)"

printf '\ndemo: done. Keys, trust root and bundles are in %s\n' "$work"
