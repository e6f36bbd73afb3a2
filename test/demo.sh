#!/usr/bin/env bash
# The upgrade runbook on the simulated cluster, run the way a platform engineer would, printing each
# step's output.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TESTBED_DIR=${TESTBED_DIR:-$ROOT/.testbed}
export KUBECONFIG=$TESTBED_DIR/kubeconfig PATH=$TESTBED_DIR/bin:$PATH
OLD=${OLD_REV:-1-30}
NEW=${REV:-1-31}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\n$ %s\n' "$*"; "$@"; }

# Seed 000's curl loop, done properly: requests through the ingress load balancer to productpage during
# each mutating step, counted (test/traffic). `traffic CMD…` runs CMD with the loop around it.
INGRESS=${TESTBED_INGRESS:-127.0.0.1:20080}
(cd "$ROOT" && go build -o "$TESTBED_DIR/bin/traffic-loop" ./test/traffic/loop)
SENT=0 FAILED=0
traffic() {
  local out="$TESTBED_DIR/traffic.json" pid rc=0
  "$TESTBED_DIR/bin/traffic-loop" -url "http://$INGRESS/productpage" -host bookinfo.example.com -rps 50 -duration 30m -out "$out" >/dev/null &
  pid=$!
  show "$@" || rc=$?
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  local sent failed
  sent=$(sed -n 's/.*"sent": \([0-9]*\).*/\1/p' "$out"); failed=$(sed -n 's/.*"failed": \([0-9]*\).*/\1/p' "$out")
  SENT=$((SENT + sent)) FAILED=$((FAILED + failed))
  printf '\033[1mtraffic: %s requests through the ingress during this step, %s failed\033[0m\n' "$sent" "$failed"
  [ "$failed" -eq 0 ] || sed -n '/causes/,/}/p' "$out"
  return "$rc"
}

step "1. Where does the mesh stand? Every revision, tag, namespace, gateway and proxy"
show kubectl istio-upgrade status --proxies

step "2. Precheck, and keep the pre-upgrade record"
show kubectl istio-upgrade precheck --save-snapshot "$TESTBED_DIR/pre-upgrade.json" || true

step "3. Install the new control plane beside the old one, with the new istioctl"
show istioctl-new install -y --set profile=minimal --set revision="$NEW" --set values.pilot.autoscaleEnabled=false >/dev/null
"$ROOT/test/testbed/testbed.sh" wait-synced 60 >/dev/null 2>&1 || true
show kubectl istio-upgrade version
show kubectl istio-upgrade precheck --revision "$NEW" || true

GW=istio-ingress/istio-ingressgateway
step "3a. A canary ingress gateway on $NEW beside the old one: out of traffic, verified (pods, SYNCED, routing)"
traffic kubectl istio-upgrade canary-gw --gateway "$GW" --revision "$NEW"

step "3b. Shift ingress traffic to it: the plan, then 50 % and 100 % in gated steps (add first, then remove)"
# Every step is gated on the gateways' own requests too (Prometheus, through the apiserver): what the
# canary and the old gateway sent on, each step's success rate printed as it is judged.
REQ=(--analysis-interval 20s --analysis-count 2 --metrics-baseline 1m)
show kubectl istio-upgrade shift --gateway "$GW" --revision "$NEW" --weight 100 --step 25 --dry-run
traffic kubectl istio-upgrade shift --gateway "$GW" --revision "$NEW" --weight 50 --step 25 --interval 2s "${REQ[@]}"
traffic kubectl istio-upgrade shift --gateway "$GW" --revision "$NEW" --weight 100 --step 50 --interval 2s "${REQ[@]}"

step "4. Migrate one namespace, productpage first as the canary, each batch gated on its workloads' requests too"
# productpage's requests come through the ingress; details, reviews and ratings carry the bed's call
# traffic (productpage calls details and reviews, reviews calls ratings): each batch shows the moved
# workloads' success rate against their own baseline.
show kubectl istio-upgrade migrate-ns bookinfo --to "$NEW" --canary deploy/productpage-v1 "${REQ[@]}"
traffic kubectl istio-upgrade migrate-ns bookinfo --to "$NEW" --canary deploy/productpage-v1 "${REQ[@]}" -y
traffic kubectl istio-upgrade verify bookinfo --since 1m --baseline 2m

step "5. Move the revision tag prod-stable (payments follows it), restarting its workloads in gated batches"
traffic kubectl istio-upgrade tag-move prod-stable --to "$NEW" --overwrite --restart --metrics=false -y   # no request flows in payments

step "6. Migrate the rest"
traffic kubectl istio-upgrade migrate-ns --all --to "$NEW" --metrics=false -y   # no request flows there: the control plane's gates

step "7. Make $NEW the default revision"
traffic kubectl istio-upgrade tag-move default --to "$NEW" --overwrite -y

step "8. Remove the old revision: what would go, then remove it (the runbooks soak 24-48 h first; --soak 0s in the demo)"
show kubectl istio-upgrade cleanup --revision "$OLD" --dry-run --soak 0s
traffic kubectl istio-upgrade cleanup --revision "$OLD" --soak 0s -y

step "Requests through the ingress during the mutating steps: $SENT sent, $FAILED failed"

step "Where the mesh stands now, and what each step recorded"
show kubectl istio-upgrade status --proxies
show kubectl istio-upgrade history
