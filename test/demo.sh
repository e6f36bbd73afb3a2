#!/usr/bin/env bash
# The upgrade runbook on the simulated cluster, run the way a platform engineer would, printing each
# step's output. Steps that are not built yet are announced and skipped.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TESTBED_DIR=${TESTBED_DIR:-$ROOT/.testbed}
export KUBECONFIG=$TESTBED_DIR/kubeconfig PATH=$TESTBED_DIR/bin:$PATH
NEW=${REV:-1-31}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
built() { ! kubectl istio-upgrade "$1" --help 2>/dev/null | grep -q "not built yet"; }

step "1. Where does the mesh stand? (every revision, tag, namespace, gateway and proxy)"
show kubectl istio-upgrade status --proxies

step "2. Precheck"
if built precheck; then show kubectl istio-upgrade precheck || true; else echo "(precheck is not built yet)"; fi

step "3. Install the new control plane beside the old one, with the new istioctl"
show istioctl-new install -y --set profile=minimal --set revision="$NEW" --set values.pilot.autoscaleEnabled=false >/dev/null
"$ROOT/test/testbed/testbed.sh" wait-synced 60 >/dev/null 2>&1 || true
show kubectl istio-upgrade version
show kubectl istio-upgrade status

for s in canary-gw shift migrate-ns tag-move cleanup; do
  step "$s"
  if built "$s"; then echo "(see docs/runbook.md for the arguments)"; else echo "($s is not built yet)"; fi
done

step "What the steps recorded"
show kubectl istio-upgrade history
