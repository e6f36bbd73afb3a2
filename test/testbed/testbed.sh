#!/usr/bin/env bash
# The simulated cluster: a real Kubernetes control plane (KWOK binary runtime), real istiod processes
# of two Istio versions, and the agent that connects them. Everything listens on loopback only.
#
#   testbed.sh up             cluster + old revision + fixtures, all proxies SYNCED; TESTBED_PROFILE chooses how
#                             Istio is installed: istioctl (default: revision 1-30, tag prod-stable) or helm
#                             (Istio's own charts, seed 000: istio-base, non-revisioned istiod, istio-ingress) or
#                             ambient (Istio's own charts: istiod 1-30 with the ambient profile, istio-cni,
#                             ztunnel on every node, bookinfo in an ambient namespace, a waypoint)
#   testbed.sh down           stop everything, remove state
#   testbed.sh env            print export lines for KUBECONFIG and PATH
#   testbed.sh new-revision   install the new revision ($REV, default 1-31) with the new istioctl
#   testbed.sh wait-synced    wait until every injected running pod shows SYNCED in proxy-status
#
# Tools come from the Makefile (make testbed-tools): K8S_BIN, KWOK_BIN, ETCD_BIN, ISTIO_OLD_BIN, ISTIO_NEW_BIN, HELM_BIN, PROM_BIN.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TESTBED_DIR=${TESTBED_DIR:-$ROOT/.testbed}
CLUSTER=${TESTBED_CLUSTER:-istio-upgrade-testbed}
OLD_REV=${OLD_REV:-1-30}
REV=${REV:-1-31}
ISTIO_NS=istio-system
KCFG=$TESTBED_DIR/kubeconfig
PROFILE_FILE=$TESTBED_DIR/profile
BIN=$TESTBED_DIR/bin
export KWOK_WORKDIR=$TESTBED_DIR/kwok

log() { printf '%s testbed: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
need() { [ -n "${!1:-}" ] || die "$1 is not set (run through make)"; }

kc() { "$BIN/kubectl" --kubeconfig "$KCFG" "$@"; }

# wait_for DESC TIMEOUT_SECONDS COMMAND...: retry COMMAND every second.
wait_for() {
  local desc=$1 timeout=$2; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    (( SECONDS - start < timeout )) || die "timed out after ${timeout}s waiting for $desc"
    sleep 1
  done
  log "$desc ($((SECONDS - start))s)"
}

link_tools() {
  mkdir -p "$BIN" "$TESTBED_DIR/logs" "$TESTBED_DIR/istiod"
  ln -sf "$K8S_BIN/kubectl" "$BIN/kubectl"
  ln -sf "$ISTIO_OLD_BIN/istioctl" "$BIN/istioctl-old"
  ln -sf "$ISTIO_NEW_BIN/istioctl" "$BIN/istioctl-new"
  ln -sf "$KWOK_BIN/kwokctl" "$BIN/kwokctl"
  [ -n "${HELM_BIN:-}" ] && [ -x "$HELM_BIN/helm" ] && ln -sf "$HELM_BIN/helm" "$BIN/helm"
  [ -x "$ROOT/bin/kubectl-istio_upgrade" ] && ln -sf "$ROOT/bin/kubectl-istio_upgrade" "$BIN/kubectl-istio_upgrade"
  return 0
}

# pod_stages picks KWOK's node stages and its fast pod-complete/delete stages, plus our own pod-ready
# stage (config/pod-ready.yaml: readiness delay from a pod annotation, readiness gates honoured). A Job's
# pod completes at once, as in KWOK's fast stage, unless its annotation testbed.istio-upgrade.io/run-for
# (a Go duration) keeps it running that long: a Job mid-run, which a migration must name.
pod_stages() {
  local src
  src=$(cd "$ROOT/test/testbed/tools/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
  mkdir -p "$TESTBED_DIR/stages"
  awk '/^  next:/ && !done { print "  delay:"; print "    durationMilliseconds: 0"; print "    durationFrom:";
      print "      expressionFrom: '"'"'.metadata.annotations[\"testbed.istio-upgrade.io/run-for\"]'"'"'"; done = 1 } { print }' \
    "$src/pod/fast/pod-complete.yaml" >"$TESTBED_DIR/stages/pod-complete.yaml"
  grep -q 'run-for' "$TESTBED_DIR/stages/pod-complete.yaml" || die "KWOK's pod-complete stage changed shape: no run-for delay added"
  STAGE_ARGS=(--config "$src/node/fast/node-initialize.yaml" --config "$src/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml"
    --config "$ROOT/test/testbed/config/pod-ready.yaml" --config "$TESTBED_DIR/stages/pod-complete.yaml" --config "$src/pod/fast/pod-delete.yaml")
}

# The ingress gateway Service each profile installs, fronted by the agent's load balancer on
# 127.0.0.1:$INGRESS_PORT (TESTBED_INGRESS in testbed-env).
INGRESS_PORT=${TESTBED_INGRESS_PORT:-20080}
ingress_service() {
  case "$(profile)" in
    helm) echo istio-ingress/istio-ingress ;;
    *) echo istio-ingress/istio-ingressgateway ;;
  esac
}

# Prometheus (the real one, built from its module) listens on 127.0.0.1:$PROM_PORT and scrapes pods
# through the agent's scrape proxy on $SCRAPE_PORT; the addon's prometheus Service reaches it.
PROM_PORT=${TESTBED_PROMETHEUS_PORT:-20090}
SCRAPE_PORT=${TESTBED_SCRAPE_PORT:-20091}

start_agent() {
  [ -f "$TESTBED_DIR/agent.pid" ] && kill -0 "$(cat "$TESTBED_DIR/agent.pid")" 2>/dev/null && return 0
  "$TESTBED_DIR/bin/testbed-agent" --kubeconfig "$KCFG" --dir "$TESTBED_DIR" --istio-namespace "$ISTIO_NS" \
    --egress-socket "$TESTBED_DIR/egress.sock" \
    --scrape-listen "127.0.0.1:$SCRAPE_PORT" --prometheus "127.0.0.1:$PROM_PORT" \
    --ingress-service "$(ingress_service)" --ingress-listen "127.0.0.1:$INGRESS_PORT" \
    --pilot-discovery "$ISTIO_OLD_VERSION=$ISTIO_OLD_BIN/pilot-discovery" \
    --pilot-discovery "$ISTIO_NEW_VERSION=$ISTIO_NEW_BIN/pilot-discovery" \
    >>"$TESTBED_DIR/logs/agent.log" 2>&1 &
  echo $! > "$TESTBED_DIR/agent.pid"
  log "agent started (pid $!, log $TESTBED_DIR/logs/agent.log)"
}

# start_prometheus installs Istio's Prometheus addon as its docs do (kubectl apply of
# samples/addons/prometheus.yaml: Service prometheus:9090 in the Istio namespace, its pod simulated) and
# runs the real Prometheus for it with the addon's own scrape configuration (pod jobs, through the agent).
start_prometheus() {
  need PROM_BIN
  local addon; addon=$(istio_src old)/samples/addons/prometheus.yaml
  kc apply -f "$addon" >/dev/null
  if ! { [ -f "$TESTBED_DIR/prometheus.pid" ] && kill -0 "$(cat "$TESTBED_DIR/prometheus.pid")" 2>/dev/null; }; then
    "$BIN/testbed-agent" --prometheus-config "$addon=$TESTBED_DIR/prometheus.yml" --kubeconfig "$KCFG" \
      --scrape-listen "127.0.0.1:$SCRAPE_PORT" --prometheus "127.0.0.1:$PROM_PORT"
    mkdir -p "$TESTBED_DIR/prometheus"
    "$PROM_BIN/prometheus" --config.file="$TESTBED_DIR/prometheus.yml" --storage.tsdb.path="$TESTBED_DIR/prometheus" \
      --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-lifecycle --log.level=warn \
      >>"$TESTBED_DIR/logs/prometheus.log" 2>&1 &
    echo $! > "$TESTBED_DIR/prometheus.pid"
  fi
  wait_for "Prometheus ready on 127.0.0.1:$PROM_PORT" 60 http_ok "$PROM_PORT" /-/ready
}

http_ok() { # PORT PATH: a GET answers 200 (bash's /dev/tcp: no curl needed)
  local status
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$2" >&3
  read -r _ status _ <&3 || true
  exec 3>&- 3<&-
  [ "$status" = 200 ]
}

istiod_ready() { # REV: the local istiod of REV answers /ready with 200 (bash's /dev/tcp: no curl needed)
  local port status
  port=$(cat "$TESTBED_DIR/istiod/$1.http-port" 2>/dev/null) || return 1
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
  read -r _ status _ <&3 || true
  exec 3>&- 3<&-
  [ "$status" = 200 ]
}

# webhook_ready NAME: the local istiod has filled the webhook's caBundle (the apiserver reaches it through
# the agent's egress proxy; the configuration itself is left as its installer wrote it).
webhook_ready() {
  [ -n "$(kc get mutatingwebhookconfiguration "$1" -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ]
}

# kwok_config writes the KWOK configuration: the repository's, plus the apiserver's egress selector that
# sends cluster traffic (webhook calls, kubelet connections) to the agent.
kwok_config() {
  cat >"$TESTBED_DIR/egress.yaml" <<EOF
apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: $TESTBED_DIR/egress.sock
EOF
  { cat "$ROOT/test/testbed/config/kwok.yaml"; cat <<EOF
componentsPatches:
- name: kube-apiserver
  extraArgs:
  - key: egress-selector-config-file
    value: $TESTBED_DIR/egress.yaml
# One instance each: leader election only lets a paused apiserver (the e2e fault tests stop it for 10 s)
# make them exit, leaving a bed that schedules and reconciles nothing.
- name: kube-controller-manager
  extraArgs:
  - key: leader-elect
    value: "false"
- name: kube-scheduler
  extraArgs:
  - key: leader-elect
    value: "false"
EOF
  } >"$TESTBED_DIR/kwok.yaml"
}

install_revision() { # ISTIOCTL REV
  local istioctl=$1 rev=$2
  log "installing revision $rev with $(basename "$istioctl")"
  "$istioctl" --kubeconfig "$KCFG" install -y --set profile=minimal --set revision="$rev" \
    --set values.pilot.autoscaleEnabled=false --set components.pilot.k8s.replicaCount=1 \
    >"$TESTBED_DIR/logs/istioctl-install-$rev.log" 2>&1 || { tail -20 "$TESTBED_DIR/logs/istioctl-install-$rev.log" >&2; die "istioctl install $rev failed"; }
  wait_for "istiod $rev ready" 120 istiod_ready "$rev"
  wait_for "injector webhook $rev served by the local istiod" 60 webhook_ready "istio-sidecar-injector-$rev"
}

istio_src() { # old|new: the istio.io/istio module directory (charts, samples) of that test-bed version
  (cd "$ROOT/test/testbed/tools/istio-$1" && go list -m -f '{{.Dir}}' istio.io/istio)
}

helm_() { "$BIN/helm" --kubeconfig "$KCFG" "$@"; }

# helm_revision old|new REV [PROFILE]: an istiod install from Istio's own chart ("" = the non-revisioned
# default; PROFILE the chart's profile, e.g. ambient). The image tag names the pilot-discovery build the
# agent runs for it.
helm_revision() {
  local which=$1 rev=$2 version release=istiod args=()
  version=$ISTIO_OLD_VERSION; [ "$which" = new ] && version=$ISTIO_NEW_VERSION
  if [ -n "$rev" ]; then release=istiod-$rev; args=(--set "revision=$rev"); fi
  [ -n "${3:-}" ] && args+=(--set "profile=$3")
  log "helm install $release (istiod chart $version${rev:+, revision $rev})"
  helm_ install "$release" "$(istio_src "$which")/manifests/charts/istio-control/istio-discovery" -n "$ISTIO_NS" \
    --set global.hub=docker.io/istio --set global.tag="$version" --set pilot.autoscaleEnabled=false \
    --set pilot.replicaCount=1 "${args[@]}" >"$TESTBED_DIR/logs/helm-$release.log" 2>&1 \
    || { tail -20 "$TESTBED_DIR/logs/helm-$release.log" >&2; die "helm install $release failed"; }
  wait_for "istiod ${rev:-default} ready" 120 istiod_ready "${rev:-default}"
  wait_for "injector webhook ${rev:-default} served by the local istiod" 60 webhook_ready "istio-sidecar-injector${rev:+-$rev}"
}

# up_helm: seed 000's starting point with Istio's own charts and bookinfo sample.
up_helm() {
  need HELM_BIN
  local charts; charts=$(istio_src old)/manifests/charts
  if ! helm_ status istio-base -n "$ISTIO_NS" >/dev/null 2>&1; then
    kc create namespace "$ISTIO_NS" >/dev/null 2>&1 || true
    log "helm install istio-base (defaultRevision=default)"
    helm_ install istio-base "$charts/base" -n "$ISTIO_NS" --set defaultRevision=default >"$TESTBED_DIR/logs/helm-istio-base.log" 2>&1 \
      || { tail -20 "$TESTBED_DIR/logs/helm-istio-base.log" >&2; die "helm install istio-base failed"; }
  fi
  helm_ status istiod -n "$ISTIO_NS" >/dev/null 2>&1 || helm_revision old ""
  if ! helm_ status istio-ingress -n istio-ingress >/dev/null 2>&1; then
    kc create namespace istio-ingress >/dev/null 2>&1 || true
    log "helm install istio-ingress (gateway chart: 2 replicas, HPA, PDB)"
    helm_ install istio-ingress "$charts/gateway" -n istio-ingress --set revision=default \
      --set replicaCount=2 --set autoscaling.minReplicas=2 --set autoscaling.maxReplicas=4 \
      --set podDisruptionBudget.minAvailable=1 >"$TESTBED_DIR/logs/helm-istio-ingress.log" 2>&1 \
      || { tail -20 "$TESTBED_DIR/logs/helm-istio-ingress.log" >&2; die "helm install istio-ingress failed"; }
  fi
  log "applying bookinfo (Istio's sample) in namespace bookinfo, istio-injection=enabled"
  kc create namespace bookinfo >/dev/null 2>&1 || true
  kc label namespace bookinfo istio-injection=enabled --overwrite >/dev/null
  kc apply -n bookinfo -f "$(istio_src old)/samples/bookinfo/platform/kube/bookinfo.yaml" >/dev/null
  kc apply -f "$ROOT/test/fixtures/helm/" >/dev/null
  # The chart leaves replicas to its HPA (minReplicas 2): wait for the HPA to bring the second pod.
  wait_for "istio-ingress at 2 ready replicas (its HPA)" 90 bash -c \
    "[ \"\$('$BIN/kubectl' --kubeconfig '$KCFG' -n istio-ingress get deploy istio-ingress -o jsonpath='{.status.readyReplicas}')\" = 2 ]"
}

# ds_ready NAME: every node runs a ready pod of DaemonSet NAME in the Istio namespace.
ds_ready() {
  local st; st=$(kc -n "$ISTIO_NS" get ds "$1" -o jsonpath='{.status.desiredNumberScheduled}/{.status.numberReady}')
  [ "${st%/*}" -gt 0 ] && [ "${st%/*}" = "${st#*/}" ]
}

# up_ambient: the old revision in ambient mode with Istio's own charts, in the documented order (base,
# istiod with the ambient profile, istio-cni, ztunnel), bookinfo in a namespace labelled
# istio.io/dataplane-mode=ambient, and a waypoint applied by istioctl as users do.
up_ambient() {
  need HELM_BIN
  local charts; charts=$(istio_src old)/manifests/charts
  kc create namespace "$ISTIO_NS" >/dev/null 2>&1 || true
  if ! helm_ status istio-base -n "$ISTIO_NS" >/dev/null 2>&1; then
    # No default revision: every istiod here is a revision, each validating for itself.
    log "helm install istio-base (no default revision)"
    helm_ install istio-base "$charts/base" -n "$ISTIO_NS" --set defaultRevision="" >"$TESTBED_DIR/logs/helm-istio-base.log" 2>&1 \
      || { tail -20 "$TESTBED_DIR/logs/helm-istio-base.log" >&2; die "helm install istio-base failed"; }
  fi
  helm_ status "istiod-$OLD_REV" -n "$ISTIO_NS" >/dev/null 2>&1 || helm_revision old "$OLD_REV" ambient
  local release chart args
  for release in istio-cni ztunnel; do
    helm_ status "$release" -n "$ISTIO_NS" >/dev/null 2>&1 && continue
    if [ "$release" = istio-cni ]; then
      chart=$charts/istio-cni; args=(--set profile=ambient --set global.hub=docker.io/istio --set global.tag="$ISTIO_OLD_VERSION")
    else
      chart=$charts/ztunnel; args=(--set hub=docker.io/istio --set tag="$ISTIO_OLD_VERSION")
    fi
    log "helm install $release (revision $OLD_REV)"
    helm_ install "$release" "$chart" -n "$ISTIO_NS" --set revision="$OLD_REV" "${args[@]}" >"$TESTBED_DIR/logs/helm-$release.log" 2>&1 \
      || { tail -20 "$TESTBED_DIR/logs/helm-$release.log" >&2; die "helm install $release failed"; }
  done
  wait_for "istio-cni-node on every node" 90 ds_ready istio-cni-node
  wait_for "ztunnel on every node" 90 ds_ready ztunnel
  log "applying bookinfo (Istio's sample) in namespace bookinfo, istio.io/dataplane-mode=ambient"
  kc create namespace bookinfo >/dev/null 2>&1 || true
  kc label namespace bookinfo istio.io/dataplane-mode=ambient --overwrite >/dev/null
  kc apply -n bookinfo -f "$(istio_src old)/samples/bookinfo/platform/kube/bookinfo.yaml" >/dev/null
  "$BIN/istioctl-old" --kubeconfig "$KCFG" waypoint apply -n bookinfo --enroll-namespace --revision "$OLD_REV" \
    >"$TESTBED_DIR/logs/waypoint.log" 2>&1 || { tail -20 "$TESTBED_DIR/logs/waypoint.log" >&2; die "istioctl waypoint apply failed"; }
  wait_for "waypoint deployed by istiod $OLD_REV" 90 bash -c \
    "[ \"\$('$BIN/kubectl' --kubeconfig '$KCFG' -n bookinfo get deploy waypoint -o jsonpath='{.status.readyReplicas}')\" -ge 1 ]"
}

# gateway_api_crds: the upstream Gateway API CRDs (standard channel) of the sigs.k8s.io/gateway-api module the
# new Istio version builds with, as users install them; istiod then deploys a gateway for each Gateway of
# class istio.
gateway_api_crds() {
  local dir
  dir=$(cd "$ROOT/test/testbed/tools/istio-new" && go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/standard
  kc apply --server-side -f "$dir" >/dev/null
  wait_for "Gateway API CRDs established" 60 kc wait --for condition=established --timeout=5s crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io
}

# link_sources: both versions' istio.io/istio sources (charts, samples), where the e2e suite and a user find them.
link_sources() {
  ln -sfn "$(istio_src old)" "$TESTBED_DIR/istio-old-src"
  ln -sfn "$(istio_src new)" "$TESTBED_DIR/istio-new-src"
}

# up_istioctl: revision 1-30 by istioctl, tag prod-stable, the repository's fixtures.
up_istioctl() {
  if ! kc -n "$ISTIO_NS" get deploy "istiod-$OLD_REV" >/dev/null 2>&1; then
    install_revision "$BIN/istioctl-old" "$OLD_REV"
  fi
  "$BIN/istioctl-old" --kubeconfig "$KCFG" tag set prod-stable --revision "$OLD_REV" --overwrite -y >/dev/null 2>&1 ||
    "$BIN/istioctl-old" --kubeconfig "$KCFG" tag set prod-stable --revision "$OLD_REV" --overwrite >/dev/null
  wait_for "tag prod-stable served by the local istiod" 60 webhook_ready istio-revision-tag-prod-stable
  log "applying fixtures"
  kc apply -f "$ROOT/test/fixtures/" >/dev/null
}

profile() { cat "$PROFILE_FILE" 2>/dev/null || echo "${TESTBED_PROFILE:-istioctl}"; }

all_pods_ready() {
  local notready
  notready=$(kc get pods -A --no-headers 2>/dev/null | awk '$4!="Running" || split($3,a,"/") && a[1]!=a[2]' | wc -l)
  [ "$notready" -eq 0 ]
}

# synced: every running proxy (injected sidecars and gateways, ztunnels, waypoints) is listed SYNCED by
# kubectl istio-upgrade status --proxies.
synced() {
  local want got
  want=$(kc get pods -A --field-selector=status.phase=Running \
    -o jsonpath='{range .items[*]}{.metadata.deletionTimestamp}{"|"}{.metadata.annotations.sidecar\.istio\.io/status}{"|"}{.metadata.labels.app}{"|"}{.metadata.labels.gateway\.istio\.io/managed}{"\n"}{end}' |
    grep -cE '^\|(.*revision.*|[^|]*\|ztunnel\|.*|[^|]*\|[^|]*\|.+)$')
  got=$("$TESTBED_DIR/bin/kubectl-istio_upgrade" --kubeconfig "$KCFG" status --proxies -o json 2>/dev/null | grep -c '"state": "SYNCED"')
  [ "$want" -gt 0 ] && [ "$got" -ge "$want" ]
}

cmd_up() {
  need K8S_BIN; need KWOK_BIN; need ETCD_BIN; need ISTIO_OLD_BIN; need ISTIO_NEW_BIN
  local t0=$SECONDS
  link_tools
  if [ -n "${TESTBED_PROFILE:-}" ] && [ -f "$PROFILE_FILE" ] && [ "$(cat "$PROFILE_FILE")" != "$TESTBED_PROFILE" ]; then
    die "the test bed is up with the $(cat "$PROFILE_FILE") profile; make testbed-down before TESTBED_PROFILE=$TESTBED_PROFILE"
  fi
  if [ -f "$KCFG" ] && kc get --raw /readyz >/dev/null 2>&1; then
    log "cluster already up"
  else
    check_free
    pod_stages
    kwok_config
    log "creating KWOK cluster $CLUSTER"
    PATH="$BIN:$PATH" "$KWOK_BIN/kwokctl" create cluster --name "$CLUSTER" --runtime binary \
      --kube-apiserver-binary "$K8S_BIN/kube-apiserver" --kube-controller-manager-binary "$K8S_BIN/kube-controller-manager" \
      --kube-scheduler-binary "$K8S_BIN/kube-scheduler" --kwok-controller-binary "$KWOK_BIN/kwok" \
      --etcd-binary "$ETCD_BIN/etcd" --kubeconfig "" \
      --config "$TESTBED_DIR/kwok.yaml" "${STAGE_ARGS[@]}" --wait 2m >"$TESTBED_DIR/logs/kwokctl.log" 2>&1 \
      || { tail -20 "$TESTBED_DIR/logs/kwokctl.log" >&2; die "kwokctl create cluster failed"; }
    "$KWOK_BIN/kwokctl" get kubeconfig --name "$CLUSTER" > "$KCFG"
    log "cluster up ($((SECONDS - t0))s)"
  fi
  kc apply -f "$ROOT/test/testbed/config/nodes.yaml" >/dev/null
  wait_for "3 nodes Ready" 60 bash -c "[ \$('$BIN/kubectl' --kubeconfig '$KCFG' get nodes --no-headers | grep -c ' Ready') -eq 3 ]"
  wait_for "default service account" 60 kc -n default get serviceaccount default
  start_agent
  link_sources
  gateway_api_crds
  local prof; prof=$(profile)
  case "$prof" in
    istioctl) up_istioctl ;;
    helm) up_helm ;;
    ambient) up_ambient ;;
    *) die "TESTBED_PROFILE=$prof: want istioctl, helm or ambient" ;;
  esac
  echo "$prof" >"$PROFILE_FILE"
  start_prometheus
  wait_for "all pods Running and Ready" 180 all_pods_ready
  wait_for "all sidecars SYNCED on their istiod" 120 synced
  log "test bed ($prof profile) up in $((SECONDS - t0))s; kubeconfig: $KCFG"
}

cmd_new_revision() {
  need ISTIO_NEW_BIN
  link_tools
  if [ "$(profile)" = helm ]; then
    helm_revision new "$REV"
  elif [ "$(profile)" = ambient ]; then
    helm_revision new "$REV" ambient
  else
    install_revision "$BIN/istioctl-new" "$REV"
  fi
}

cmd_down() {
  if [ -f "$TESTBED_DIR/prometheus.pid" ]; then
    kill -9 "$(cat "$TESTBED_DIR/prometheus.pid")" 2>/dev/null || true
    rm -f "$TESTBED_DIR/prometheus.pid"
  fi
  if [ -f "$TESTBED_DIR/agent.pid" ]; then
    local pid; pid=$(cat "$TESTBED_DIR/agent.pid")
    kill "$pid" 2>/dev/null && for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$TESTBED_DIR/agent.pid"
  fi
  for f in "$TESTBED_DIR"/istiod/*.pid; do [ -f "$f" ] && kill -9 "-$(cat "$f")" 2>/dev/null; kill -9 "$(cat "$f" 2>/dev/null)" 2>/dev/null; rm -f "$f"; done 2>/dev/null || true
  if [ -n "${KWOK_BIN:-}" ] && [ -x "$KWOK_BIN/kwokctl" ]; then
    PATH="$BIN:$PATH" "$KWOK_BIN/kwokctl" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  rm -rf "$TESTBED_DIR/kwok" "$TESTBED_DIR/istiod" "$TESTBED_DIR/istiod-ports.json" "$KCFG" "$TESTBED_DIR/stages" \
    "$PROFILE_FILE" "$TESTBED_DIR/istio-old-src" "$TESTBED_DIR/istio-new-src" "$TESTBED_DIR/egress.sock" "$TESTBED_DIR/egress.yaml" "$TESTBED_DIR/kwok.yaml" \
    "$TESTBED_DIR/prometheus" "$TESTBED_DIR/prometheus.yml"
  check_clean
  log "test bed down"
}

# listening lists the loopback ports a test bed takes that something listens on: the agent's istiod
# range 21000-21999, the ingress load balancer's port, Prometheus' and the scrape proxy's.
listening() {
  local port
  for port in $(awk 'FNR>1 && $4=="0A" {n=split($2,a,":"); print a[n]}' /proc/net/tcp /proc/net/tcp6 2>/dev/null); do
    port=$((16#$port))
    if { [ "$port" -ge 21000 ] && [ "$port" -lt 22000 ]; } || [ "$port" -eq "$INGRESS_PORT" ] || [ "$port" -eq "$PROM_PORT" ] || [ "$port" -eq "$SCRAPE_PORT" ]; then echo "$port"; fi
  done | sort -un
}

# check_free refuses to start beside another test bed (another checkout's, or a crashed one's): both
# would come up and collide on the cluster name and the ports.
check_free() {
  local f pid cmd other="" ports
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    cmd=$(tr '\0' ' ' < "$f" 2>/dev/null) || continue
    case "$cmd" in
      *testbed-agent*--dir*) [[ "$cmd" == *"--dir $TESTBED_DIR "* ]] || other="$other\n  pid $pid: ${cmd:0:160}" ;;
      *kube-apiserver*"$CLUSTER"*) [[ "$cmd" == *"$TESTBED_DIR"* ]] || other="$other\n  pid $pid: ${cmd:0:160}" ;;
    esac
  done
  [ -z "$other" ] || die "another test bed is running (stop it with make testbed-down in its checkout):$(echo -e "$other")"
  ports=$(listening | tr '\n' ' ')
  [ -z "$ports" ] || die "ports a test bed needs are taken: ${ports}(another test bed, or TESTBED_INGRESS_PORT to move the load balancer)"
}

# check_clean fails when a test-bed process or an istiod port outlived `down`.
check_clean() {
  local left="" f pid port
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    [ "$pid" = "$$" ] && continue
    if tr '\0' ' ' < "$f" 2>/dev/null | grep -Eq -- "$CLUSTER|testbed-agent|pilot-discovery discovery|$TESTBED_DIR/prometheus.yml"; then
      left="$left $pid:$(tr '\0' ' ' < "$f" | cut -c1-60)"
    fi
  done
  for port in $(listening); do left="$left port:$port"; done
  [ -z "$left" ] || die "left behind after down:$left"
}

cmd_env() {
  echo "export KUBECONFIG=$KCFG"
  echo "export PATH=$BIN:\$PATH"
  echo "export TESTBED_PROFILE=$(profile)"
  echo "export TESTBED_INGRESS=127.0.0.1:$INGRESS_PORT"
  echo "# Prometheus' API: directly, or as the plugin reaches it, through the apiserver's service proxy:"
  echo "#   kubectl get --raw '/api/v1/namespaces/$ISTIO_NS/services/prometheus:9090/proxy/api/v1/query?query=istio_requests_total'"
  echo "export TESTBED_PROMETHEUS=http://127.0.0.1:$PROM_PORT"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  new-revision) cmd_new_revision ;;
  wait-synced) link_tools; wait_for "all sidecars SYNCED" "${2:-120}" synced ;;
  *) echo "usage: $0 up|down|env|new-revision|wait-synced" >&2; exit 64 ;;
esac
