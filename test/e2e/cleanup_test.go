//go:build e2e

package e2e

// Runs after the migration tests: everything but the tags and the gateway is on 1-31 by now. One
// sequence: cleanup refuses; canary-gw; shift in steps to 100 %; cleanup; undo - with a watcher on the
// gateway Service's ready endpoints from the first change to the last.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// endpointWatcher records the lowest number of ready endpoints a Service had, from its EndpointSlices'
// watch events (every state the apiserver stored, not samples).
type endpointWatcher struct {
	mu     sync.Mutex
	slices map[string]map[string]bool // slice → ready addresses
	low    int
	events int
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func watchEndpoints(t *testing.T, namespace, service string) *endpointWatcher {
	c := clients(t)
	ctx, cancel := context.WithCancel(context.Background())
	w := &endpointWatcher{slices: map[string]map[string]bool{}, low: -1, cancel: cancel}
	l, err := c.Kube.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		t.Fatal(err)
	}
	for i := range l.Items {
		w.record(watch.Added, &l.Items[i])
	}
	wi, err := c.Kube.DiscoveryV1().EndpointSlices(namespace).Watch(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + service, ResourceVersion: l.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		for ev := range wi.ResultChan() {
			if s, ok := ev.Object.(*discoveryv1.EndpointSlice); ok {
				w.record(ev.Type, s)
			}
		}
	}()
	go func() { <-ctx.Done(); wi.Stop() }()
	return w
}

func (w *endpointWatcher) record(typ watch.EventType, s *discoveryv1.EndpointSlice) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ready := map[string]bool{}
	if typ != watch.Deleted {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready && len(e.Addresses) > 0 {
				ready[e.Addresses[0]] = true
			}
		}
	}
	w.slices[s.Name] = ready
	all := map[string]bool{}
	for _, r := range w.slices {
		for a := range r {
			all[a] = true
		}
	}
	w.events++
	if w.low < 0 || len(all) < w.low {
		w.low = len(all)
	}
}

func (w *endpointWatcher) stop() (low, events int) {
	w.cancel()
	w.done.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.low, w.events
}

type cleanupResult struct {
	Journal string `json:"journalEntry"`
	Summary string
	Details struct {
		Blockers     []struct{ Kind, Object, Message, Fix string }
		Removed      []string
		Kept         []string
		HelmOwned    []string
		HelmCommands []string
		HelmRan      []string
		HelmCharts   []string
	}
}

func cleanup(t *testing.T, args ...string) (cleanupResult, result) {
	t.Helper()
	r := plugin(t, append([]string{"cleanup", "--revision", "1-30", "-o", "json"}, args...)...)
	var res cleanupResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("cleanup %v: exit %d, not JSON: %v\n%s\n%s", args, r.code, err, r.stdout, r.stderr)
	}
	return res, r
}

func testGatewayCanaryShiftCleanupUndo(t *testing.T) {
	ensureNewRevision(t)
	const original = 2 // the fixture gateway's replicas
	loop := bookinfoLoop(80)
	defer func() {
		noFailures(t, "canary-gw, shift, cleanup and undo", loop, 1500)
		t.Logf("requests through the ingress with none failed, across the suite's loops: %d", requestsSent)
		if requestsSent < 2000 {
			t.Errorf("%d requests across the gateway sequence and the migrations, want at least 2,000", requestsSent)
		}
	}()
	ew := watchEndpoints(t, "istio-ingress", "istio-ingressgateway")
	defer func() {
		low, events := ew.stop()
		t.Logf("gateway Service: %d endpoint events, lowest ready endpoints %d", events, low)
		if events < 4 || low < original {
			t.Errorf("gateway Service ready endpoints: lowest %d over %d events, want never below %d", low, events, original)
		}
	}()
	if r := plugin(t, "cleanup", "--revision", "9-99"); r.code != 65 {
		t.Errorf("unknown revision: exit %d", r.code)
	}
	kubectl(t, "create", "namespace", "e2e-still-old")
	kubectl(t, "label", "namespace", "e2e-still-old", "istio.io/rev=1-30")
	istiodRV := func() string {
		return kubectl(t, "-n", "istio-system", "get", "deployment", "istiod-1-30", "-o", "jsonpath={.metadata.resourceVersion}") + "/" +
			kubectl(t, "get", "mutatingwebhookconfiguration", "istio-sidecar-injector-1-30", "-o", "jsonpath={.metadata.resourceVersion}")
	}
	rv := istiodRV()
	res, r := cleanup(t)
	if r.code != 66 {
		t.Fatalf("cleanup with dependents: exit %d, want 66", r.code)
	}
	kinds := map[string]bool{}
	for _, b := range res.Details.Blockers {
		kinds[b.Kind+" "+b.Object] = true
		if b.Fix == "" {
			t.Errorf("blocker without a fix: %+v", b)
		}
	}
	for _, want := range []string{"namespace namespace/e2e-still-old", "tag tag/default", "gateway deployment/istio-ingress/istio-ingressgateway"} {
		if !kinds[want] {
			t.Errorf("blocker %q not listed: %v", want, kinds)
		}
	}
	if istiodRV() != rv {
		t.Error("a refused cleanup changed the revision's objects")
	}

	// Resolve every blocker, as the listed fixes say.
	kubectl(t, "delete", "namespace", "e2e-still-old", "--timeout=90s")
	for _, tag := range []string{"default", "prod-stable"} {
		if r := plugin(t, "tag-move", tag, "--to", "1-31", "--overwrite", "-y"); r.code != 0 {
			t.Fatalf("tag-move %s: exit %d %s", tag, r.code, r.stderr)
		}
	}
	svcUID := kubectl(t, "-n", "istio-ingress", "get", "service", "istio-ingressgateway", "-o", "jsonpath={.metadata.uid}")
	canaryShift(t)
	eventually(t, 60*time.Second, "nothing left on 1-30", func() error {
		res, r := cleanup(t, "--dry-run=client")
		if r.code != 0 {
			return fmt.Errorf("still blocked: %+v", res.Details.Blockers)
		}
		return nil
	})

	// What istioctl's gateway component labels with the revision: in the Istio namespace a Service,
	// ServiceAccount and Role of an ingress gateway; beside it, the Service the canary now serves through.
	kubectl(t, "-n", "istio-system", "create", "service", "clusterip", "istio-ingressgateway", "--tcp=80:8080")
	kubectl(t, "-n", "istio-system", "create", "serviceaccount", "istio-ingressgateway-service-account")
	kubectl(t, "-n", "istio-system", "create", "role", "istio-ingressgateway-sds", "--verb=get", "--resource=secrets")
	gwObjects := []string{"service/istio-ingressgateway", "serviceaccount/istio-ingressgateway-service-account", "role/istio-ingressgateway-sds"}
	gwUIDs := map[string]string{}
	for _, o := range gwObjects {
		kubectl(t, "-n", "istio-system", "label", o, "istio.io/rev=1-30")
		gwUIDs[o] = kubectl(t, "-n", "istio-system", "get", o, "-o", "jsonpath={.metadata.uid}")
	}
	defer func() {
		for _, o := range gwObjects {
			run(t, binDir+"/kubectl", "-n", "istio-system", "delete", o)
		}
	}()
	kubectl(t, "-n", "istio-ingress", "label", "service", "istio-ingressgateway", "istio.io/rev=1-30")

	rv = istiodRV()
	if res, r := cleanup(t, "--dry-run=server"); r.code != 0 || len(res.Details.Removed) == 0 || istiodRV() != rv {
		t.Errorf("--dry-run=server: exit %d, %d removed, resourceVersions %s → %s", r.code, len(res.Details.Removed), rv, istiodRV())
	}
	res, r = cleanup(t, "-y")
	if r.code != 0 || res.Journal == "" {
		t.Fatalf("cleanup: exit %d %s", r.code, r.stderr)
	}
	removed := strings.Join(res.Details.Removed, " ")
	for _, want := range []string{"istio-system/deployment/istiod-1-30", "mutatingwebhookconfiguration/istio-sidecar-injector-1-30", "istio-system/service/istiod-1-30"} {
		if !strings.Contains(removed, want) {
			t.Errorf("%s not removed: %s", want, removed)
		}
	}
	if !strings.Contains(removed, "istio-ingress/deployment/istio-ingressgateway ") && !strings.HasSuffix(removed, "istio-ingress/deployment/istio-ingressgateway") {
		t.Errorf("the old gateway scaled to zero was not removed: %s", removed)
	}
	for _, kept := range []string{"istio-revision-tag", "istiod-default-validator", "istiod-1-31", "istio-ingressgateway-1-31", "service/istio-ingressgateway"} {
		if strings.Contains(removed, kept) {
			t.Errorf("cleanup removed %s: %s", kept, removed)
		}
	}
	for _, o := range gwObjects {
		if uid := kubectl(t, "-n", "istio-system", "get", o, "-o", "jsonpath={.metadata.uid}"); uid != gwUIDs[o] {
			t.Errorf("%s labelled with the old revision was replaced or removed (%s → %s)", o, gwUIDs[o], uid)
		}
		if !strings.Contains(strings.Join(res.Details.Kept, "\n"), strings.SplitN(o, "/", 2)[1]) {
			t.Errorf("the result does not say why %s was kept: %v", o, res.Details.Kept)
		}
	}
	if r := run(t, binDir+"/kubectl", "-n", "istio-system", "get", "deployment", "istiod-1-30"); r.code == 0 {
		t.Error("istiod-1-30 still exists")
	}
	if uid := kubectl(t, "-n", "istio-ingress", "get", "service", "istio-ingressgateway", "-o", "jsonpath={.metadata.uid}"); uid != svcUID {
		t.Errorf("the gateway Service was replaced (%s → %s)", svcUID, uid)
	}
	eventually(t, 60*time.Second, "every proxy still SYNCED on 1-31", func() error {
		d := status(t)
		for _, p := range d.Proxies {
			if p.Revision != "1-31" || p.State != "SYNCED" {
				return fmt.Errorf("%s/%s on %s %s", p.Namespace, p.Pod, p.Revision, p.State)
			}
		}
		return nil
	})

	if u := plugin(t, "undo", res.Journal); u.code != 0 {
		t.Fatalf("undo cleanup: exit %d %s", u.code, u.stderr)
	}
	kubectl(t, "-n", "istio-system", "get", "deployment", "istiod-1-30")
	kubectl(t, "get", "mutatingwebhookconfiguration", "istio-sidecar-injector-1-30")
	eventually(t, 90*time.Second, "revision 1-30 back and ready", func() error {
		for _, r := range status(t).Revisions {
			if r.Name == "1-30" && r.Ready > 0 {
				return nil
			}
		}
		return fmt.Errorf("not ready")
	})
}
