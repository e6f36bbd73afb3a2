//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testGatewayAPIGatewayBlocksCleanup: with the upstream Gateway API CRDs on the bed, Istio's own bookinfo
// Gateway (class istio), following the default tag, gets its Deployment from istiod 1-30, SYNCED there;
// the previews of tag-move and migrate-ns name it as rolling now, or pinned by default; migrate-ns pins
// it to 1-30 and nothing of it rolls; cleanup of 1-30 then names it as a blocker, fixed by migrate-gw,
// and deletes nothing while it stands.
func testGatewayAPIGatewayBlocksCleanup(t *testing.T) {
	ensureNewRevision(t)
	const ns = "e2e-gwapi"
	kubectl(t, "create", "namespace", ns)
	t.Cleanup(func() { run(t, binDir+"/kubectl", "delete", "namespace", ns, "--wait=false") })
	kubectl(t, "-n", ns, "apply", "-f", filepath.Join(testbedDir, "istio-old-src", "samples", "bookinfo", "gateway-api", "bookinfo-gateway.yaml"))
	// Unlabelled, in an unlabelled namespace, it follows the default tag: precheck warns and names the pin.
	if rep, _ := precheck(t); !has(rep, "GATEWAY_FOLLOWS_TAG", "gateway/"+ns+"/bookinfo-gateway") {
		t.Errorf("precheck does not warn that the Gateway follows a tag: %+v", rep.Findings)
	}
	// istiod 1-30 deploys the gateway (its proxy rendered by istiod, not injected); the bed's router for
	// it is SYNCED on istiod 1-30 in our status and in the real istioctl.
	const gwPods = "gateway.networking.k8s.io/gateway-name=bookinfo-gateway"
	eventually(t, 90*time.Second, "bookinfo-gateway-istio SYNCED on 1-30", func() error { return podsSynced(t, ns, gwPods, "1-30", "istioctl-old", 1) })

	// tag-move's preview names it as rolling the moment the default tag moves, or, by default, as pinned
	// to 1-30 first.
	named := func(list []string) bool {
		return strings.Contains(strings.Join(list, "\n"), "gateway/"+ns+"/bookinfo-gateway ")
	}
	type radius struct {
		RollingNow []string `json:"rollingNow"`
		Pinned     []string `json:"pinned"`
	}
	var preview struct {
		Details struct {
			BlastRadius radius `json:"blastRadius"`
		} `json:"details"`
	}
	mustJSON(t, plugin(t, "tag-move", "default", "--to", "1-31", "--overwrite", "--pin-gateways=false", "--dry-run=client", "-o", "json"), &preview)
	if !named(preview.Details.BlastRadius.RollingNow) {
		t.Errorf("tag-move default --pin-gateways=false: the preview does not name the Gateway as rolling now: %+v", preview.Details.BlastRadius)
	}
	mustJSON(t, plugin(t, "tag-move", "default", "--to", "1-31", "--overwrite", "--dry-run=client", "-o", "json"), &preview)
	if r := preview.Details.BlastRadius; !named(r.Pinned) || named(r.RollingNow) {
		t.Errorf("tag-move default: the preview does not pin the Gateway: %+v", r)
	}
	// So does migrate-ns's, for the namespace it follows.
	var mig struct {
		Details struct {
			Plan radius `json:"plan"`
		} `json:"details"`
	}
	mustJSON(t, plugin(t, "migrate-ns", "--metrics=false", ns, "--to", "1-31", "--pin-gateways=false", "--dry-run=client", "-o", "json"), &mig)
	if !named(mig.Details.Plan.RollingNow) {
		t.Errorf("migrate-ns --pin-gateways=false: the preview does not name the Gateway as rolling now: %+v", mig.Details.Plan)
	}
	// For real: the Gateway is pinned to 1-30 first (istiod rolls it once, on 1-30: the Gateway's labels
	// are its pods', so migrate-gw gates that roll), then the namespace moves to 1-31; ready endpoints
	// never fall below the one it had.
	const gwSvc = "bookinfo-gateway-istio"
	ew := watchEndpoints(t, ns, gwSvc)
	var migRes struct {
		Journal string `json:"journalEntry"`
		Details struct {
			Plan radius `json:"plan"`
		} `json:"details"`
	}
	r := plugin(t, "migrate-ns", "--metrics=false", ns, "--to", "1-31", "-y", "-o", "json")
	mustJSON(t, r, &migRes)
	low, events := ew.stop()
	t.Logf("migrate-ns with a pin: exit %d, %d endpoint events, lowest ready %d", r.code, events, low)
	if r.code != 0 || !named(migRes.Details.Plan.Pinned) {
		t.Fatalf("migrate-ns did not pin the Gateway: exit %d %+v\n%s", r.code, migRes.Details.Plan, r.stderr)
	}
	if low < 1 {
		t.Errorf("pinning took the gateway's last ready endpoint away (%d events)", events)
	}
	gwLabel := func() string {
		return kubectl(t, "-n", ns, "get", "gateway.gateway.networking.k8s.io", "bookinfo-gateway", "-o", "jsonpath={.metadata.labels.istio\\.io/rev}")
	}
	if l := gwLabel(); l != "1-30" {
		t.Errorf("the Gateway's istio.io/rev after migrate-ns: %q, want 1-30", l)
	}
	eventually(t, 30*time.Second, "bookinfo-gateway-istio still SYNCED on 1-30", func() error { return podsSynced(t, ns, gwPods, "1-30", "istioctl-old", 1) })

	var listed bool
	for _, g := range status(t, "-n", ns).Gateways {
		if g.Name == "bookinfo-gateway-istio" {
			listed = g.Revision == "1-30" && g.GatewayAPI == ns+"/bookinfo-gateway"
		}
	}
	if !listed {
		t.Errorf("status does not list bookinfo-gateway-istio on 1-30 for Gateway %s/bookinfo-gateway", ns)
	}

	istiodRV := func() string {
		return kubectl(t, "-n", "istio-system", "get", "deployment", "istiod-1-30", "-o", "jsonpath={.metadata.resourceVersion}")
	}
	rv := istiodRV()
	res, r := cleanup(t, "-y")
	if r.code != 66 {
		t.Fatalf("cleanup with a Gateway on 1-30: exit %d, want 66", r.code)
	}
	var blocked bool
	for _, b := range res.Details.Blockers {
		if strings.Contains(b.Object, ns+"/bookinfo-gateway") {
			blocked = true
			if !strings.Contains(b.Fix, "migrate-gw gateway/bookinfo-gateway -n "+ns) {
				t.Errorf("the Gateway's blocker does not name migrate-gw: %+v", b)
			}
		}
	}
	if !blocked {
		t.Errorf("cleanup's blockers do not name the Gateway: %+v", res.Details.Blockers)
	}
	if istiodRV() != rv {
		t.Error("a refused cleanup changed istiod-1-30")
	}

	// Undo of migrate-ns: the namespace label back, then the pin taken back the same gated way.
	ew = watchEndpoints(t, ns, gwSvc)
	r = plugin(t, "undo", migRes.Journal, "-y")
	low, events = ew.stop()
	if r.code != 0 || low < 1 {
		t.Errorf("undo of migrate-ns: exit %d, lowest ready endpoints %d over %d events\n%s", r.code, low, events, r.stderr)
	}
	if l := gwLabel(); l != "" {
		t.Errorf("undo left the pin: istio.io/rev=%q", l)
	}
	eventually(t, 30*time.Second, "bookinfo-gateway-istio on 1-30 after undo", func() error { return podsSynced(t, ns, gwPods, "1-30", "istioctl-old", 1) })
}

// podsSynced says why the running pods of selector in ns are not (at least want of them, all) SYNCED
// on revision, in our status and in the real istioctl of that revision.
func podsSynced(t *testing.T, ns, selector, revision, istioctl string, want int) error {
	l, err := clients(t).Kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector, FieldSelector: "status.phase=Running"})
	if err != nil {
		return err
	}
	var pods []string
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p.Name)
		}
	}
	if len(pods) < want {
		return fmt.Errorf("%d pods running, want %d", len(pods), want)
	}
	ours := map[string]string{}
	for _, p := range status(t, "-n", ns).Proxies {
		if p.State == "SYNCED" {
			ours[p.Pod] = p.Revision
		}
	}
	real, err := istioctlProxies(t, istioctl, revision)
	if err != nil {
		return err
	}
	for _, p := range pods {
		if ours[p] != revision {
			return fmt.Errorf("status --proxies: %s on %q", p, ours[p])
		}
		if !strings.HasPrefix(real[p+"."+ns], istiodPodPrefix(revision)) {
			return fmt.Errorf("istioctl proxy-status: %s on %q", p, real[p+"."+ns])
		}
	}
	return nil
}

type migrateGWResult struct {
	Journal string `json:"journalEntry"`
	Details struct {
		From, Revision, Capacity string
		Verified                 bool
		Services                 []struct {
			Name        string
			UID         string
			ReadyBefore int
			MinReady    int
		}
		Routing struct{ Differences []string }
	}
}

// moveInPlace runs migrate-gw on target with a watcher on the Service's ready endpoints over the whole
// move, then undo the same way, checking the endpoints never fell below want, the Service's UID, and
// the pods SYNCED on the new istiod, then back on the old one.
func moveInPlace(t *testing.T, ns, target, service, selector string, want int) migrateGWResult {
	t.Helper()
	uid := kubectl(t, "-n", ns, "get", "service", service, "-o", "jsonpath={.metadata.uid}")
	ew := watchEndpoints(t, ns, service)
	var res migrateGWResult
	r := plugin(t, "migrate-gw", "--metrics=false", target, "-n", ns, "--to", "1-31", "-y", "-o", "json")
	mustJSON(t, r, &res)
	low, events := ew.stop()
	t.Logf("migrate-gw %s: exit %d, %d endpoint events, lowest ready %d; %s", target, r.code, events, low, res.Details.Capacity)
	if r.code != 0 || !res.Details.Verified || res.Details.From != "1-30" || res.Details.Revision != "1-31" {
		t.Fatalf("migrate-gw %s: exit %d, %+v\n%s", target, r.code, res.Details, r.stderr)
	}
	if low < want || events < 2 {
		t.Errorf("migrate-gw %s: ready endpoints of %s fell to %d (of %d) over %d events", target, service, low, want, events)
	}
	if got := kubectl(t, "-n", ns, "get", "service", service, "-o", "jsonpath={.metadata.uid}"); got != uid {
		t.Errorf("migrate-gw %s replaced Service %s: UID %s → %s", target, service, uid, got)
	}
	eventually(t, 60*time.Second, target+" SYNCED on 1-31", func() error { return podsSynced(t, ns, selector, "1-31", "istioctl-new", want) })

	ew = watchEndpoints(t, ns, service)
	r = plugin(t, "undo", res.Journal, "-y")
	low, events = ew.stop()
	t.Logf("undo of migrate-gw %s: exit %d, %d endpoint events, lowest ready %d", target, r.code, events, low)
	if r.code != 0 {
		t.Fatalf("undo %s: exit %d\n%s", res.Journal, r.code, r.stderr)
	}
	if low < want || events < 2 {
		t.Errorf("undo of migrate-gw %s: ready endpoints of %s fell to %d (of %d) over %d events", target, service, low, want, events)
	}
	if got := kubectl(t, "-n", ns, "get", "service", service, "-o", "jsonpath={.metadata.uid}"); got != uid {
		t.Errorf("undo replaced Service %s: UID %s → %s", service, uid, got)
	}
	eventually(t, 60*time.Second, target+" back on 1-30", func() error { return podsSynced(t, ns, selector, "1-30", "istioctl-old", want) })
	return res
}

// testMigrateGWDeployment: the ingress gateway Deployment moves to 1-31 in place and back by undo,
// new pods first although its own strategy would take one down first (maxUnavailable 1 of 2 here):
// the strategy is held at maxUnavailable 0 for the move and put back after.
func testMigrateGWDeployment(t *testing.T) {
	ensureNewRevision(t)
	const ns, name = "istio-ingress", "istio-ingressgateway"
	strategy := func() string {
		return kubectl(t, "-n", ns, "get", "deployment", name, "-o", "jsonpath={.spec.strategy.rollingUpdate.maxUnavailable}")
	}
	orig := strategy()
	kubectl(t, "-n", ns, "patch", "deployment", name, "--type=merge", "-p", `{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":1}}}}`)
	defer kubectl(t, "-n", ns, "patch", "deployment", name, "--type=merge", "-p", `{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":`+orig+`}}}}`)
	if r := plugin(t, "migrate-gw", "deployment/"+name, "-n", ns, "--to", "9-99", "-y"); r.code != 65 {
		t.Errorf("unknown revision: exit %d, want 65", r.code)
	}
	if r := plugin(t, "migrate-gw", "service/"+name, "-n", ns, "--to", "1-31", "-y"); r.code != 64 {
		t.Errorf("a Service as the target: exit %d, want 64", r.code)
	}
	res := moveInPlace(t, ns, "deployment/"+name, name, "app=istio-ingressgateway,istio=ingressgateway", 2)
	if !strings.Contains(res.Details.Capacity, "maxUnavailable 0") {
		t.Errorf("capacity %q: the strategy was not held for the move", res.Details.Capacity)
	}
	if s := strategy(); s != "1" {
		t.Errorf("maxUnavailable after migrate-gw and undo: %s, want the user's 1 back", s)
	}
}

// testMigrateGWGatewayAPI: Istio's bookinfo Gateway (class istio), at 4 replicas so the Deployment
// istiod renders would take one pod down first, moves to 1-31 by its istio.io/rev label with Istio's
// deployment customization (a ConfigMap overlay), its pods SYNCED on istiod 1-31, and back by undo,
// which removes the overlay.
func testMigrateGWGatewayAPI(t *testing.T) {
	ensureNewRevision(t)
	const ns = "e2e-gwapi-move"
	kubectl(t, "create", "namespace", ns)
	t.Cleanup(func() { run(t, binDir+"/kubectl", "delete", "namespace", ns, "--wait=false") })
	kubectl(t, "-n", ns, "apply", "-f", filepath.Join(testbedDir, "istio-old-src", "samples", "bookinfo", "gateway-api", "bookinfo-gateway.yaml"))
	// Pods that take time to be ready make a rollout that drops capacity visible to the watcher.
	kubectl(t, "-n", ns, "patch", "gateway.gateway.networking.k8s.io", "bookinfo-gateway", "--type=merge", "-p",
		`{"metadata":{"labels":{"istio.io/rev":"1-30"}},"spec":{"infrastructure":{"annotations":{"testbed.istio-upgrade.io/ready-delay":"2s"}}}}`)
	const sel = "gateway.networking.k8s.io/gateway-name=bookinfo-gateway"
	eventually(t, 90*time.Second, "the Gateway's Deployment", func() error {
		if r := run(t, binDir+"/kubectl", "-n", ns, "get", "deployment", "bookinfo-gateway-istio"); r.code != 0 {
			return fmt.Errorf("%s", r.stderr)
		}
		return nil
	})
	kubectl(t, "-n", ns, "scale", "deployment", "bookinfo-gateway-istio", "--replicas=4")
	eventually(t, 90*time.Second, "4 gateway pods SYNCED on 1-30", func() error { return podsSynced(t, ns, sel, "1-30", "istioctl-old", 4) })
	res := moveInPlace(t, ns, "gateway/bookinfo-gateway", "bookinfo-gateway-istio", sel, 4)
	if !strings.Contains(res.Details.Capacity, "ConfigMap") {
		t.Errorf("capacity %q: 4 replicas at the default 25%% need the overlay", res.Details.Capacity)
	}
	if d := res.Details.Routing.Differences; len(d) > 0 {
		t.Errorf("routing differences: %v", d)
	}
	if ref := kubectl(t, "-n", ns, "get", "gateway.gateway.networking.k8s.io", "bookinfo-gateway", "-o", "jsonpath={.spec.infrastructure.parametersRef}"); ref != "" {
		t.Errorf("undo left parametersRef %s", ref)
	}
	if r := run(t, binDir+"/kubectl", "-n", ns, "get", "configmap", "bookinfo-gateway-istio-upgrade"); r.code == 0 {
		t.Error("undo left the overlay ConfigMap")
	}
}
