//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
)

// gateDoc is migrate-ns -o json with the request gate of each batch.
type gateDoc struct {
	Journal string `json:"journalEntry"`
	Details struct {
		Halted     string
		RolledBack bool
		Restarted  []string
		Gates      []struct {
			Passed    bool
			Reason    string
			Workloads []string
			Requests  *struct {
				Verdict string
				Queries int
				Checks  []struct {
					Verdict   string
					Queries   []string
					Workloads []struct {
						Namespace, Name, Verdict string
						Reasons                  []string
					}
				}
			}
		}
	}
}

// verifyDoc is what `verify -o json` prints.
type verifyDoc struct {
	Prometheus string `json:"prometheus"`
	Verdict    string `json:"verdict"`
	Workloads  []struct {
		Namespace, Name, Verdict string
		Reasons                  []string
		Views                    []struct {
			Reporter string
			Current  *struct{ Requests, SuccessRate float64 }
		}
		ByProxy []struct {
			Reporter, Tag         string
			Requests, SuccessRate float64
		}
	} `json:"workloads"`
	Queries []string `json:"queries"`
}

func verifyJSON(t *testing.T, args ...string) (verifyDoc, int) {
	t.Helper()
	r := plugin(t, append([]string{"verify", "-o", "json"}, args...)...)
	var d verifyDoc
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("verify %v: exit %d, stdout is not JSON: %v\n%s\n%s", args, r.code, err, r.stdout, r.stderr)
	}
	return d, r.code
}

func gatedMigrate(t *testing.T, ns string, args ...string) (gateDoc, result) {
	t.Helper()
	r := plugin(t, append([]string{"migrate-ns", ns, "--to", "1-31", "-o", "json", "--metrics-baseline=1m", "--analysis-interval=20s"}, args...)...)
	var d gateDoc
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("migrate-ns %v: exit %d, stdout not JSON: %v\n%s\n%s", args, r.code, err, r.stdout, r.stderr)
	}
	return d, r
}

// The request gates and verify on the real Prometheus, on the bed's call traffic (productpage calls
// details and reviews, reviews calls ratings, without any request through the gateway):
//   - verify passes details at rest, and is inconclusive on shop, which carries no request;
//   - with the fault knob making details' pods on 1-31 fail 20% of their requests, migrate-ns's canary
//     batch fails on its requests (every control-plane gate passes), is moved back (exit 75) and the
//     JSON names the workload and its figures; verify fails over the same window (the negative control);
//   - without the fault the same canary passes its request gate;
//   - shop's batch halts as inconclusive (exit 78), never a pass, resumable with --inconclusive=pass
//     restarting nothing again; undo puts both back.
func testMetricsGateInMigrateNs(t *testing.T) {
	ensureNewRevision(t)
	for _, ns := range []string{"bookinfo", "shop"} {
		if err := onRevision(t, ns, "1-30")(); err != nil {
			t.Fatalf("%s must start on 1-30: %v", ns, err)
		}
	}
	q := "/api/v1/namespaces/istio-system/services/prometheus:9090/proxy/api/v1/query?query=" + url.QueryEscape(`istio_build{component="proxy",namespace="bookinfo"}`)
	eventually(t, 60*time.Second, "Prometheus scraped bookinfo's proxies (istio_build)", func() error {
		if out := kubectl(t, "get", "--raw", q); !strings.Contains(out, `"tag"`) {
			return errorf("no istio_build yet: %s", out)
		}
		return nil
	})
	const details = "--workload=bookinfo/details-v1"
	var d verifyDoc
	eventually(t, 90*time.Second, "verify passes details at rest on its call traffic", func() error {
		var code int
		if d, code = verifyJSON(t, "bookinfo", details, "--since=45s", "--baseline=45s"); code != 0 || d.Verdict != "pass" {
			return fmt.Errorf("exit %d, %+v", code, d)
		}
		return nil
	})
	if !strings.Contains(d.Prometheus, "istio-system/prometheus") || len(d.Workloads) != 1 {
		t.Errorf("at rest: %+v", d)
	}
	if v := d.Workloads[0].Views; len(v) == 0 || v[0].Current == nil || v[0].Current.Requests < 100 || v[0].Current.SuccessRate < 99 {
		t.Errorf("at rest, details' figures (productpage calls it 4 times a second): %+v", v)
	}
	if d, code := verifyJSON(t, "shop", "--since=45s"); code != 78 || d.Verdict != "inconclusive" || len(d.Workloads) == 0 {
		t.Errorf("a namespace without traffic: exit %d, %+v", code, d)
	}
	if r := plugin(t, "verify", "nowhere-ns"); r.code != 65 {
		t.Errorf("an unknown namespace: exit %d, %s", r.code, r.stderr)
	}
	if r := plugin(t, "verify", "shop", "--inconclusive=maybe"); r.code != 64 {
		t.Errorf("a bad --inconclusive: exit %d", r.code)
	}

	kubectl(t, "-n", "default", "create", "configmap", "testbed-faults", "--from-literal=rules=- {namespace: bookinfo, workload: details-v1, revision: 1-31, errorRate: 0.2}")
	defer run(t, binDir+"/kubectl", "-n", "default", "delete", "configmap", "testbed-faults", "--ignore-not-found")
	g, r := gatedMigrate(t, "bookinfo", "--canary", "deploy/details-v1", "--rollback-on-failure", "--analysis=false", "-y")
	if r.code != 75 || len(g.Details.Gates) != 1 || g.Details.Gates[0].Requests == nil || g.Details.Gates[0].Requests.Verdict != "fail" {
		t.Fatalf("with the fault: exit %d, %+v\n%s", r.code, g.Details, r.stderr)
	}
	rq := g.Details.Gates[0].Requests
	last := rq.Checks[len(rq.Checks)-1]
	if len(last.Workloads) != 1 || last.Workloads[0].Name != "details-v1" || !strings.Contains(strings.Join(last.Workloads[0].Reasons, ";"), "success rate") || len(last.Queries) == 0 {
		t.Errorf("the JSON does not name details-v1 with its figures and queries: %+v", last)
	}
	t.Logf("caught: %v (%d queries)", last.Workloads[0].Reasons, rq.Queries)
	if !strings.Contains(r.stderr, "requests regressed") {
		t.Errorf("stderr does not say the requests regressed:\n%s", r.stderr)
	}
	// verify sees what the gate saw: the window that held the failing canary against the one before.
	if d, code := verifyJSON(t, "bookinfo", details, "--since=50s", "--baseline=2m"); code != 75 || d.Verdict != "fail" || !strings.Contains(strings.Join(d.Workloads[0].Reasons, ";"), "success rate") {
		t.Errorf("verify over the failing canary's window: exit %d, %+v", code, d)
	}
	eventually(t, 90*time.Second, "details moved back to 1-30", onRevision(t, "bookinfo", "1-30"))
	kubectl(t, "-n", "default", "delete", "configmap", "testbed-faults")

	// The control: no fault, the same canary passes its request gate and pauses for confirmation.
	g, r = gatedMigrate(t, "bookinfo", "--canary", "deploy/details-v1", "--analysis=false")
	if r.code != 0 || len(g.Details.Gates) != 1 || g.Details.Gates[0].Requests == nil || g.Details.Gates[0].Requests.Verdict != "pass" || !strings.Contains(g.Details.Halted, "confirmation") {
		t.Fatalf("without the fault: exit %d, %+v\n%s", r.code, g.Details, r.stderr)
	}
	canary := g.Journal
	// Over a window that saw details on both revisions, its figures are split by proxy version
	// (istio_build's tag joined on each scraped pod): the new proxies are judged against the old.
	d, _ = verifyJSON(t, "bookinfo", details, "--since=150s", "--baseline=1m")
	tags := map[string]bool{}
	for _, w := range d.Workloads {
		for _, p := range w.ByProxy {
			tags[p.Tag] = true
		}
	}
	if len(tags) < 2 {
		t.Errorf("details ran 1-30 and 1-31 proxies in the window, but its figures are not split by version: %+v", d.Workloads)
	} else {
		t.Logf("details by proxy version: %+v; %v", d.Workloads[0].ByProxy, d.Workloads[0].Reasons)
	}

	// shop carries no request: inconclusive, halted, its entry resumable; never a pass.
	g, r = gatedMigrate(t, "shop", "--analysis=false", "--analysis-count=1", "-y")
	if r.code != 78 || len(g.Details.Gates) == 0 || g.Details.Gates[len(g.Details.Gates)-1].Requests.Verdict != "inconclusive" {
		t.Fatalf("no traffic: exit %d, %+v\n%s", r.code, g.Details, r.stderr)
	}
	for _, e := range journalEntries(t) {
		if e.ID == g.Journal && e.Status() != journal.StateIncomplete {
			t.Errorf("the halted run's entry is %s, want incomplete", e.Status())
		}
	}
	// Accepting it resumes that entry: the halted batch is gated again, nothing restarted twice.
	halted := g.Journal
	g, r = gatedMigrate(t, "shop", "--analysis=false", "--analysis-count=1", "-y", "--inconclusive=pass")
	if r.code != 0 || g.Journal != halted || len(g.Details.Restarted) != 0 {
		t.Fatalf("--inconclusive=pass: exit %d, entry %s (want %s), restarted %v\n%s", r.code, g.Journal, halted, g.Details.Restarted, r.stderr)
	}
	for _, id := range []string{g.Journal, canary} {
		if u := plugin(t, "undo", id, "-y"); u.code != 0 {
			t.Fatalf("undo %s: exit %d %s", id, u.code, u.stderr)
		}
	}
	for _, ns := range []string{"bookinfo", "shop"} {
		eventually(t, 90*time.Second, ns+" back on 1-30", onRevision(t, ns, "1-30"))
	}
}

// testPrecheckRequestData (here, late in the suite: Prometheus has scraped for minutes): precheck says whether the request gates will have data. On the bed the
// addon's Prometheus answers and bookinfo carries its call traffic; shop carries none, so its batches
// would halt as inconclusive (named, as info); a Prometheus that is not there is a warning (the
// negative control), and --metrics=false skips the check.
func testPrecheckRequestData(t *testing.T) {
	var rep precheckReport
	eventually(t, 90*time.Second, "bookinfo's call traffic in Prometheus", func() error {
		rep, _ = precheck(t, "--analysis=false")
		for _, code := range []string{"METRICS_MISSING", "METRICS_UNAVAILABLE"} { // a bed just up: nothing scraped yet
			if f, ok := findingOf(rep, code, ""); ok {
				return errorf("%s", f)
			}
		}
		if f, ok := findingOf(rep, "METRICS_LOW_TRAFFIC", "namespace/bookinfo"); ok {
			return errorf("%s", f)
		}
		return nil
	})
	if f, ok := findingOf(rep, "METRICS_LOW_TRAFFIC", "namespace/shop"); !ok || !strings.Contains(f, "info: ") || !strings.Contains(f, "frontend-v1") {
		t.Errorf("shop carries no request: want an info METRICS_LOW_TRAFFIC naming its workloads, got %q (%+v)", f, rep.Findings)
	}
	if has(rep, "METRICS_UNAVAILABLE", "") || has(rep, "METRICS_MISSING", "") {
		t.Errorf("the bed's Prometheus reported missing: %+v", rep.Findings)
	}
	rep, code := precheck(t, "--analysis=false", "--prometheus-service", "istio-system/no-such-prometheus:9090")
	if f, ok := findingOf(rep, "METRICS_UNAVAILABLE", "prometheus"); !ok || !strings.Contains(f, "warning: ") || code != 0 {
		t.Errorf("a Prometheus that is not there: exit %d, %q", code, f)
	}
	rep, _ = precheck(t, "--analysis=false", "--metrics=false")
	if has(rep, "METRICS_LOW_TRAFFIC", "") || !slices.Contains(rep.Skipped, "request-metrics") {
		t.Errorf("--metrics=false: %+v skipped %v", rep.Findings, rep.Skipped)
	}
	if r := plugin(t, "precheck", "--prometheus", "http://x", "--prometheus-service", "a/b:1"); r.code != 64 {
		t.Errorf("both --prometheus and --prometheus-service: exit %d", r.code)
	}
}

// routeFixture: caller calls legacy:9080 four times a second; legacy is a Service with no endpoints
// that a VirtualService labelled for 1-30 routes to backend. 1-30's proxies get the route; 1-31's
// istiod does not see it, so its proxies send legacy's requests to legacy itself: 503.
const routeFixture = `apiVersion: v1
kind: Service
metadata: {name: backend, namespace: e2e-route}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: e2e-route}
spec:
  selector: {app: legacy-none}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: legacy, namespace: e2e-route, labels: {istio.io/rev: "1-30"}}
spec:
  hosts: [legacy]
  http:
  - route:
    - destination: {host: backend, port: {number: 9080}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend, namespace: e2e-route}
spec:
  replicas: 2
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec:
      containers: [{name: backend, image: registry.example/backend:1, ports: [{containerPort: 9080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: caller, namespace: e2e-route}
spec:
  replicas: 2
  selector: {matchLabels: {app: caller}}
  template:
    metadata:
      labels: {app: caller}
      annotations: {testbed.istio-upgrade.io/calls: "legacy:9080", testbed.istio-upgrade.io/calls-per-second: "4"}
    spec:
      containers: [{name: caller, image: registry.example/caller:1, ports: [{containerPort: 9080}]}]
`

// A route only the old revision sees (a VirtualService labelled istio.io/rev=1-30): every
// control-plane gate passes when caller moves to 1-31, with Istio's analysis off, but its requests
// fail from its new proxies, and the request gate catches it as the client's success rate (exit 75,
// moved back). The control: with the VirtualService made global, the same canary passes.
func testMetricsGateCatchesARouteOnlyTheOldRevisionSees(t *testing.T) {
	ensureNewRevision(t)
	const ns = "e2e-route"
	t.Cleanup(func() { run(t, binDir+"/kubectl", "delete", "namespace", ns, "--timeout=90s") })
	kubectl(t, "create", "namespace", ns)
	kubectl(t, "label", "namespace", ns, "istio.io/rev=1-30")
	f := filepath.Join(t.TempDir(), "route.yaml")
	if err := os.WriteFile(f, []byte(routeFixture), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apply", "-f", f)
	kubectl(t, "-n", ns, "rollout", "status", "deployment/caller", "deployment/backend", "--timeout=90s")
	// The baseline: 30 s of caller's requests (8 a second), all answered through the route.
	eventually(t, 120*time.Second, "verify passes backend on caller's requests through the route", func() error {
		if d, code := verifyJSON(t, ns, "--workload="+ns+"/backend", "--since=30s", "--baseline=30s"); code != 0 || d.Verdict != "pass" {
			return fmt.Errorf("exit %d, %+v", code, d)
		}
		return nil
	})

	g, r := gatedMigrate(t, ns, "--canary", "deploy/caller", "--rollback-on-failure", "--analysis=false", "--metrics-baseline=30s", "-y")
	if r.code != 75 || len(g.Details.Gates) != 1 || g.Details.Gates[0].Requests == nil || g.Details.Gates[0].Requests.Verdict != "fail" {
		t.Fatalf("caller on 1-31 without the route: exit %d, %+v\n%s", r.code, g.Details, r.stderr)
	}
	rq := g.Details.Gates[0].Requests
	last := rq.Checks[len(rq.Checks)-1]
	named := false
	for _, w := range last.Workloads {
		named = named || w.Name == "caller" && strings.Contains(strings.Join(w.Reasons, ";"), "success rate")
	}
	if !named {
		t.Errorf("the JSON does not name caller's success rate: %+v", last.Workloads)
	}
	t.Logf("caught: %+v", last.Workloads)
	eventually(t, 90*time.Second, "caller moved back to 1-30", onRevision(t, ns, "1-30"))

	// The control: the route made global, so 1-31's istiod serves it too; the same canary passes.
	kubectl(t, "-n", ns, "label", "virtualservice", "legacy", "istio.io/rev-")
	time.Sleep(10 * time.Second) // both revisions push the route
	g, r = gatedMigrate(t, ns, "--canary", "deploy/caller", "--analysis=false", "--metrics-baseline=30s")
	if r.code != 0 || len(g.Details.Gates) != 1 || g.Details.Gates[0].Requests == nil || g.Details.Gates[0].Requests.Verdict != "pass" {
		t.Fatalf("with the route global: exit %d, %+v\n%s", r.code, g.Details, r.stderr)
	}
	if u := plugin(t, "undo", g.Journal, "-y"); u.code != 0 {
		t.Fatalf("undo %s: exit %d %s", g.Journal, u.code, u.stderr)
	}
}
