//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/test/traffic"
)

type stepDoc struct {
	Journal string `json:"journalEntry"`
	Summary string
	Details json.RawMessage
}

func step(t *testing.T, args ...string) (stepDoc, result) {
	t.Helper()
	r := plugin(t, append(args, "-o", "json")...)
	var d stepDoc
	if r.code != 64 {
		if err := json.Unmarshal([]byte(r.stdout), &d); err != nil && r.code == 0 {
			t.Fatalf("%v: not JSON: %v\n%s", args, err, r.stdout)
		}
	}
	return d, r
}

// ingressState is every resourceVersion in istio-ingress's Deployments, HPAs, PDBs and Services.
func ingressState(t *testing.T) string {
	// generation moves with every spec change and never with the controllers' status updates (an HPA or
	// a rollout settling after a shift), which made resourceVersions flaky here; Services have none.
	return kubectl(t, "-n", "istio-ingress", "get", "deployments,hpa,pdb", "-o", "jsonpath={range .items[*]}{.kind}/{.metadata.name}@{.metadata.generation} {end}") +
		kubectl(t, "-n", "istio-ingress", "get", "services", "-o", "jsonpath={range .items[*]}{.kind}/{.metadata.name}@{.metadata.resourceVersion} {end}")
}

// canaryShift moves the ingress gateway to 1-31 with canary-gw and shift, checking refusals and dry
// runs change nothing on the way.
func canaryShift(t *testing.T) {
	t.Helper()
	gw := []string{"--gateway", "istio-ingress/istio-ingressgateway", "--revision", "1-31"}
	state := ingressState(t)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"canary-gw", "--gateway", "istio-ingress/istio-ingressgateway", "--revision", "9-99"}, 65},
		{[]string{"canary-gw", "--gateway", "istio-ingress/no-such-gateway", "--revision", "1-31"}, 65},
		{[]string{"canary-gw", "--gateway", "bookinfo/productpage-v1", "--revision", "1-31"}, 65},
		{[]string{"canary-gw", "--gateway", "istio-ingress/istio-ingressgateway", "--revision", "1-31", "--replicas", "0"}, 64},
		{append([]string{"shift", "--metrics=false", "--weight", "50"}, gw...), 65}, // no canary yet
		{append([]string{"shift", "--metrics=false", "--weight", "101"}, gw...), 64},
		{append([]string{"shift"}, gw...), 64},
	} {
		if r := plugin(t, c.args...); r.code != c.code || r.stderr == "" {
			t.Errorf("%v: exit %d (want %d) stderr %q", c.args, r.code, c.code, r.stderr)
		}
	}
	if d, r := step(t, append([]string{"canary-gw", "--dry-run=server"}, gw...)...); r.code != 0 || !strings.Contains(d.Summary, "server dry run") {
		t.Errorf("canary-gw --dry-run=server: exit %d %s", r.code, r.stderr)
	}
	if got := ingressState(t); got != state {
		t.Fatalf("refusals or a server dry run changed istio-ingress:\n%s\n%s", state, got)
	}

	pinnedRoutesDiffer(t, gw)

	oldSpec := func() string {
		return kubectl(t, "-n", "istio-ingress", "get", "deployment", "istio-ingressgateway", "-o", "jsonpath={.metadata.generation} {.metadata.labels} {.spec.replicas}")
	}
	before := oldSpec()
	d, r := step(t, append([]string{"canary-gw"}, gw...)...)
	if after := oldSpec(); after != before {
		t.Errorf("canary-gw modified the old gateway: %s -> %s", before, after)
	}
	var cg struct {
		Pods             []string
		ServingEndpoints int
		Verified         bool
		Routing          struct {
			Listeners   int
			Routes      int
			Differences []string
		}
	}
	if err := json.Unmarshal(d.Details, &cg); err != nil || r.code != 0 {
		t.Fatalf("canary-gw: exit %d %v %s", r.code, err, r.stderr)
	}
	if !cg.Verified || len(cg.Pods) != 1 || cg.ServingEndpoints != 0 || cg.Routing.Listeners == 0 || cg.Routing.Routes == 0 || len(cg.Routing.Differences) != 0 {
		t.Errorf("canary-gw verification: %+v", cg)
	}
	if gates := kubectl(t, "-n", "istio-ingress", "get", "deployment", "istio-ingressgateway-1-31", "-o", "jsonpath={.spec.template.spec.readinessGates[*].conditionType}"); gates != "istio-upgrade.io/serving" {
		t.Errorf("canary readiness gates %q", gates)
	}
	if ready := kubectl(t, "-n", "istio-ingress", "get", "endpointslices", "-l", "kubernetes.io/service-name=istio-ingressgateway",
		"-o", "jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.targetRef.name} {end}"); strings.Contains(ready, "1-31") || strings.Count(ready, " ") != 2 {
		t.Errorf("before shift the Service's ready endpoints are the old pods only: %q", ready)
	}

	state = ingressState(t)
	if _, r := step(t, append([]string{"shift", "--metrics=false", "--weight", "100", "--dry-run=server"}, gw...)...); r.code != 0 || ingressState(t) != state {
		t.Errorf("shift --dry-run=server: exit %d, changed %v", r.code, ingressState(t) != state)
	}

	// A probe target standing in for the load balancer address: the gate asks it at every step.
	var probes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "bookinfo.example.com" {
			probes.Add(1)
		}
	}))
	defer srv.Close()
	type shiftDoc struct {
		Steps []struct {
			Canary    int32 `json:"canaryReplicas"`
			Old       int32 `json:"oldReplicas"`
			Effective int32 `json:"effectiveWeight"`
		}
		Gates []struct {
			Passed         bool
			ReadyEndpoints int
		}
	}
	// A step whose gate fails is reverted, adding back first: exit 75, the old gateway at 2 again and
	// the canary out of traffic again (readiness gate and replicas as canary-gw left them).
	closed := httptest.NewServer(http.NotFoundHandler())
	deadURL := closed.URL
	closed.Close()
	if d, r := step(t, append([]string{"shift", "--metrics=false", "--weight", "50", "--step", "0", "--probe-url", deadURL, "--probes", "1"}, gw...)...); r.code != 75 || !strings.Contains(d.Summary, "rolled back") {
		t.Errorf("shift with a failing probe: exit %d, summary %q, want 75 and rolled back", r.code, d.Summary)
	}
	for _, c := range []struct{ name, path, want string }{
		{"istio-ingressgateway", "{.spec.replicas}", "2"},
		{"istio-ingressgateway-1-31", "{.spec.replicas} {.spec.template.spec.readinessGates[*].conditionType}", "1 istio-upgrade.io/serving"},
	} {
		if got := kubectl(t, "-n", "istio-ingress", "get", "deployment", c.name, "-o", "jsonpath="+c.path); got != c.want {
			t.Errorf("after the reverted step %s: %q, want %q", c.name, got, c.want)
		}
	}

	shiftFailsOnTheCanarysRequests(t, gw)

	for _, c := range []struct {
		weight, step string
		want         int32 // canary replicas at the end
	}{{"50", "25", 1}, {"100", "25", 2}} {
		d, r := step(t, append([]string{"shift", "--metrics=false", "--weight", c.weight, "--step", c.step, "--interval", "1s", "--probe-url", srv.URL, "--probe-host", "bookinfo.example.com"}, gw...)...)
		var sd shiftDoc
		if err := json.Unmarshal(d.Details, &sd); err != nil || r.code != 0 {
			t.Fatalf("shift --weight %s: exit %d %v %s", c.weight, r.code, err, r.stderr)
		}
		for _, g := range sd.Gates {
			if !g.Passed || g.ReadyEndpoints < 2 {
				t.Errorf("shift --weight %s gate: %+v", c.weight, g)
			}
		}
		if n := len(sd.Steps); n == 0 || sd.Steps[n-1].Canary != c.want {
			t.Errorf("shift --weight %s steps %+v", c.weight, sd.Steps)
		}
	}
	if n := probes.Load(); n < 20 {
		t.Errorf("the probe was asked %d times, want 10 per step", n)
	}
	undoShifts(t, d.Journal)
	if d, r := step(t, append([]string{"shift", "--metrics=false", "--weight", "100", "--step", "50", "--interval", "0s"}, gw...)...); r.code != 0 {
		t.Fatalf("shift --weight 100 after the undos: exit %d %s %s", r.code, d.Summary, r.stderr)
	}
	for name, want := range map[string]string{"istio-ingressgateway": "0", "istio-ingressgateway-1-31": "2"} {
		if got := kubectl(t, "-n", "istio-ingress", "get", "deployment", name, "-o", "jsonpath={.spec.replicas}"); got != want {
			t.Errorf("deployment %s replicas %s, want %s", name, got, want)
		}
	}
	if rng := kubectl(t, "-n", "istio-ingress", "get", "hpa", "istio-ingressgateway-1-31", "-o", "jsonpath={.spec.minReplicas}-{.spec.maxReplicas}"); rng != "2-4" {
		t.Errorf("canary HPA at 100%%: %s, want the original 2-4", rng)
	}
	if err := checkProxiesOnInjectedRevision(t, "istio-ingress"); err != nil {
		t.Error(err)
	}
}

// shiftFailsOnTheCanarysRequests: each shift step is gated on the gateways' own requests. With the
// canary's pods answering 503 to one host's requests (the fault knob, scoped to a host the suite's
// own loop never sends, so its count of failed bookinfo requests stays honest), the first step fails
// on its requests although every control-plane gate passes, and shift puts the weight back (exit 75);
// the JSON names the canary and its figures.
func shiftFailsOnTheCanarysRequests(t *testing.T, gw []string) {
	t.Helper()
	loop := traffic.Start(context.Background(), traffic.Config{URL: "http://" + ingress() + "/productpage", Host: "faulty.example.com", RPS: 30, Duration: 5 * time.Minute})
	defer loop.Stop()
	kubectl(t, "-n", "default", "create", "configmap", "testbed-faults", "--from-literal=rules=- {namespace: istio-ingress, workload: istio-ingressgateway-1-31, host: faulty.example.com, errorRate: 1}")
	defer run(t, binDir+"/kubectl", "-n", "default", "delete", "configmap", "testbed-faults", "--ignore-not-found")
	d, r := step(t, append([]string{"shift", "--weight", "50", "--step", "50", "--analysis-interval", "25s", "--analysis-count", "2", "--metrics-baseline", "1m"}, gw...)...)
	var sd struct {
		Gates []struct {
			Passed   bool
			Requests *struct {
				Verdict string
				Checks  []struct {
					Workloads []struct {
						Name, Verdict string
						Reasons       []string
					}
				}
			}
		}
	}
	if err := json.Unmarshal(d.Details, &sd); err != nil || r.code != 75 || !strings.Contains(d.Summary, "rolled back") {
		t.Fatalf("shift onto a failing canary: exit %d (want 75, rolled back) %v %q\n%s", r.code, err, d.Summary, r.stderr)
	}
	if len(sd.Gates) != 1 || sd.Gates[0].Passed || sd.Gates[0].Requests == nil || sd.Gates[0].Requests.Verdict != "fail" {
		t.Fatalf("the first step's gate: %+v", sd.Gates)
	}
	named := false
	for _, c := range sd.Gates[0].Requests.Checks {
		for _, w := range c.Workloads {
			if w.Name == "istio-ingressgateway-1-31" && w.Verdict == "fail" && strings.Contains(strings.Join(w.Reasons, ";"), "outbound: success rate") {
				named = true
				t.Logf("caught: %v", w.Reasons)
			}
		}
	}
	if !named {
		t.Errorf("the JSON does not name the failing canary with its figures: %+v", sd.Gates[0].Requests)
	}
	for name, want := range map[string]string{"istio-ingressgateway": "2", "istio-ingressgateway-1-31": "1 istio-upgrade.io/serving"} {
		path := "{.spec.replicas}"
		if name != "istio-ingressgateway" {
			path += " {.spec.template.spec.readinessGates[*].conditionType}"
		}
		if got := kubectl(t, "-n", "istio-ingress", "get", "deployment", name, "-o", "jsonpath="+path); got != want {
			t.Errorf("after the failed step %s: %q, want %q", name, got, want)
		}
	}
}

// undoShifts undoes the two shifts (100 % -> 50 % -> canary out of traffic) after checking that the
// canary-gw entry cannot be undone while they are in effect; the endpoint watcher of the caller
// sees every step.
func undoShifts(t *testing.T, canaryGW string) {
	t.Helper()
	deploy := func(name string) string {
		return kubectl(t, "-n", "istio-ingress", "get", "deployment", name, "-o", "jsonpath={.spec.replicas} {.spec.template.spec.readinessGates[*].conditionType}")
	}
	state := ingressState(t)
	if r := plugin(t, "undo", canaryGW); r.code != 66 || !strings.Contains(r.stderr, "shift") {
		t.Errorf("undo of canary-gw under two shifts: exit %d (want 66) %q", r.code, r.stderr)
	}
	if ingressState(t) != state {
		t.Error("a refused undo changed istio-ingress")
	}
	// On a terminal undo asks first: "n" changes nothing (exit 67), "y" goes on.
	if r := onTerminal(t, "n\n", "undo"); r.code != 67 || !strings.Contains(r.stdout, "[y/N]") || ingressState(t) != state {
		t.Errorf("undo answered no on a terminal: exit %d (want 67), changed %v:\n%s", r.code, ingressState(t) != state, r.stdout)
	}
	for i, c := range []struct{ old, canary string }{
		{"1 ", "1 "},                         // undo of shift 100: back to 50 %
		{"2 ", "1 istio-upgrade.io/serving"}, // undo of shift 50: canary out of traffic as canary-gw left it
	} {
		if i == 0 {
			if r := onTerminal(t, "y\n", "undo"); r.code != 0 {
				t.Fatalf("undo answered yes on a terminal: exit %d\n%s", r.code, r.stdout)
			}
		} else if d, r := step(t, "undo"); r.code != 0 {
			t.Fatalf("undo: exit %d %s %s", r.code, d.Summary, r.stderr)
		}
		if o, cn := deploy("istio-ingressgateway"), deploy("istio-ingressgateway-1-31"); o != c.old || cn != c.canary {
			t.Errorf("after undo: old %q canary %q, want %q and %q", o, cn, c.old, c.canary)
		}
	}
	eventually(t, 30*time.Second, "after undoing both shifts, the old pods alone serve", func() error {
		ready := kubectl(t, "-n", "istio-ingress", "get", "endpointslices", "-l", "kubernetes.io/service-name=istio-ingressgateway",
			"-o", "jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.targetRef.name} {end}")
		if strings.Contains(ready, "1-31") || strings.Count(ready, " ") != 2 {
			return fmt.Errorf("ready endpoints %q, want the 2 old pods only", ready)
		}
		return nil
	})
}

// pinnedGateway serves a host only on pods of revision 1-30: a canary on 1-31 would not serve it.
const pinnedGateway = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: pinned, namespace: bookinfo}
spec:
  selector: {istio: ingressgateway, istio.io/rev: "1-30"}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["pinned.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pinned, namespace: bookinfo}
spec:
  hosts: ["pinned.example.com"]
  gateways: [pinned]
  http:
  - route: [{destination: {host: productpage, port: {number: 9080}}}]
`

// pinnedRoutesDiffer gives the old gateway a route the canary cannot have: canary-gw must find the
// difference in what the two istiods serve, exit 75 and keep the canary out of traffic; undo removes it.
func pinnedRoutesDiffer(t *testing.T, gw []string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pinned.yaml")
	if err := os.WriteFile(f, []byte(pinnedGateway), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apply", "-f", f)
	defer kubectl(t, "delete", "-f", f)
	d, r := step(t, append([]string{"canary-gw"}, gw...)...)
	if r.code != 75 || !strings.Contains(r.stdout+r.stderr, "pinned.example.com") {
		t.Errorf("canary-gw with a route pinned to 1-30: exit %d (want 75), pinned.example.com not reported:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if gates := kubectl(t, "-n", "istio-ingress", "get", "deployment", "istio-ingressgateway-1-31", "-o", "jsonpath={.spec.template.spec.readinessGates[*].conditionType}"); gates != "istio-upgrade.io/serving" {
		t.Errorf("the unverified canary must stay behind its readiness gate: %q", gates)
	}
	if d.Journal == "" {
		t.Fatalf("no journal entry for the unverified canary: %s", r.stdout)
	}

	// Shifted anyway, the canary lacks the route: requests for pinned.example.com get 404s once it
	// serves, while bookinfo.example.com, routed on both, loses none.
	pinnedURL := traffic.Config{URL: "http://" + ingress() + "/productpage", Host: "pinned.example.com", RPS: 50, Duration: 5 * time.Minute}
	eventually(t, 30*time.Second, "pinned.example.com served by the old gateway", func() error {
		c := pinnedURL
		c.Max = 10
		if s := traffic.Run(context.Background(), c); s.Failed > 0 {
			return fmt.Errorf("%v", s.Causes)
		}
		return nil
	})
	pinned, both := traffic.Start(context.Background(), pinnedURL), bookinfoLoop(50)
	sd, sr := step(t, append([]string{"shift", "--metrics=false", "--weight", "100", "--step", "100", "-y"}, gw...)...)
	time.Sleep(2 * time.Second) // the load balancer follows the endpoints a second late
	ps := pinned.Stop()
	t.Logf("pinned.example.com during and after a shift to the unverified canary: %d sent, %d failed %v", ps.Sent, ps.Failed, ps.Causes)
	if sr.code != 0 || ps.Causes["404/no-route"] == 0 {
		t.Errorf("shift to a canary without the route: exit %d, pinned.example.com causes %v: want 404s\n%s", sr.code, ps.Causes, sr.stderr)
	}
	noFailures(t, "bookinfo.example.com during the same shift", both, 50)
	if u := plugin(t, "undo", sd.Journal, "-y"); u.code != 0 {
		t.Fatalf("undo of the shift: exit %d %s", u.code, u.stderr)
	}
	if u := plugin(t, "undo", d.Journal); u.code != 0 {
		t.Fatalf("undo of the unverified canary: exit %d %s", u.code, u.stderr)
	}
	eventually(t, 30*time.Second, "unverified canary removed", func() error {
		if r := run(t, filepath.Join(binDir, "kubectl"), "-n", "istio-ingress", "get", "deployment,hpa,pdb,pods", "-l", "istio-upgrade.io/canary-of", "-o", "name"); strings.TrimSpace(r.stdout) != "" {
			return fmt.Errorf("left: %s", r.stdout)
		}
		return nil
	})
}
