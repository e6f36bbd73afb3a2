//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
)

// analysisFixture: namespace e2e-analysis on 1-30 with a Deployment and its Service; an Istio Gateway
// labelled istio.io/rev=1-30 (so only 1-30 sees it) and a VirtualService bound to it; and a
// VirtualService that names a Gateway that does not exist anywhere (an error before any move).
const analysisFixture = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: e2e-analysis}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw-old, namespace: e2e-analysis, labels: {istio.io/rev: "1-30"}}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [analysis.example.com]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: e2e-analysis}
spec:
  hosts: [analysis.example.com]
  gateways: [gw-old]
  http: [{route: [{destination: {host: web.e2e-analysis.svc.cluster.local, port: {number: 80}}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orphan, namespace: e2e-analysis}
spec:
  hosts: [orphan.example.com]
  gateways: [no-such-gateway]
  http: [{route: [{destination: {host: web.e2e-analysis.svc.cluster.local, port: {number: 80}}}]}]
`

// testAnalysisPrecheckAndMigrateGate: precheck reports Istio's analyzer messages (IST0101 for the
// VirtualService naming a missing Gateway), and as the new revision sees the cluster (--revision 1-31:
// the Gateway labelled for 1-30 is invisible to it). migrate-ns of the namespace halts at its analysis
// gate with the new error and rolls back; with the Gateway made global the same migration passes.
func testAnalysisPrecheckAndMigrateGate(t *testing.T) {
	ensureNewRevision(t)
	const ns = "e2e-analysis"
	t.Cleanup(func() { run(t, binDir+"/kubectl", "delete", "namespace", ns, "--timeout=90s") })
	kubectl(t, "create", "namespace", ns)
	kubectl(t, "label", "namespace", ns, "istio.io/rev=1-30")
	kubectl(t, "-n", ns, "create", "deployment", "web", "--image=registry.example/web:1", "--replicas=2")
	f := filepath.Join(t.TempDir(), "analysis.yaml")
	if err := os.WriteFile(f, []byte(analysisFixture), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apply", "-f", f)
	kubectl(t, "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
	eventually(t, 60*time.Second, ns+" on 1-30", func() error { return checkProxiesOnInjectedRevision(t, ns) })

	// As the default revision (1-30) sees it: the orphan only.
	rep, code := precheck(t, "-n", ns)
	msg, ok := findingOf(rep, "IST0101", "virtualservice/e2e-analysis/orphan")
	if !ok || !strings.HasPrefix(msg, "error: ") || !strings.Contains(msg, "no-such-gateway") {
		t.Errorf("precheck -n %s does not report IST0101 for the orphan VirtualService (%q): %+v", ns, msg, rep.Findings)
	}
	if code != 79 {
		t.Errorf("an analyzer error blocks at --fail-on=error: exit %d, want 79", code)
	}
	if _, ok := findingOf(rep, "IST0101", "virtualservice/e2e-analysis/web"); ok {
		t.Errorf("1-30 sees gw-old, yet precheck reports web's Gateway missing")
	}
	// As 1-31 will see it.
	rep, _ = precheck(t, "-n", ns, "--revision", "1-31")
	if msg, ok := findingOf(rep, "IST0101", "virtualservice/e2e-analysis/web"); !ok || !strings.Contains(msg, "gw-old") {
		t.Errorf("precheck --revision 1-31 does not show web's Gateway missing from 1-31's view: %+v", rep.Findings)
	}
	if r := plugin(t, "precheck", "-n", ns, "--analysis=false", "-o", "json"); strings.Contains(r.stdout, "IST0101") {
		t.Errorf("--analysis=false still analyses")
	}

	// The gate: a new error as 1-31 sees the namespace halts the step (75) and rolls it back.
	res, r := migrate(t, ns, "--to", "1-31", "--rollback-on-failure", "-y")
	if r.code != 75 || !res.Details.RolledBack || len(res.Details.Analysis) != 1 || res.Details.Analysis[0].Passed {
		t.Fatalf("migrate-ns with a new analysis error: exit %d, rolledBack %v, analysis %+v\n%s", r.code, res.Details.RolledBack, res.Details.Analysis, r.stderr)
	}
	g := res.Details.Analysis[0]
	if len(g.NewErrors) != 1 || !strings.Contains(g.NewErrors[0], "IST0101 virtualservice/e2e-analysis/web") {
		t.Errorf("new errors %v, want web's missing gateway only (the orphan was there before)", g.NewErrors)
	}
	if l := kubectl(t, "get", "namespace", ns, "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"); l != "1-30" {
		t.Errorf("label after the rollback: %q", l)
	}
	eventually(t, 90*time.Second, ns+" back on 1-30 and SYNCED", func() error {
		for p, rev := range injectedPods(t, ns) {
			if rev != "1-30" {
				return fmt.Errorf("%s on %s", p, rev)
			}
		}
		return checkProxiesOnInjectedRevision(t, ns)
	})

	// The fix precheck names: the Gateway for every revision.
	kubectl(t, "-n", ns, "label", "gateway.networking.istio.io", "gw-old", "istio.io/rev-")

	// Ctrl-C at the terminal during the first namespace's analysis gate: SIGINT to the plugin's whole
	// process group, as a terminal sends it. The companion is in a group of its own, so the gate runs to
	// its end and passes; the step stops there (130, cancelled), nothing rolled back, the second
	// namespace untouched. Before, the companion died of the signal, the gate failed and
	// --rollback-on-failure moved the namespace back.
	const second, third = "e2e-analysis-b", "e2e-analysis-c"
	workloadNamespaces(t, "1s", []string{"web"}, second, third)
	for _, n := range []string{second, third} {
		eventually(t, 60*time.Second, n+" on 1-30", func() error { return checkProxiesOnInjectedRevision(t, n) })
	}
	args := []string{"migrate-ns", ns, second, third, "--to", "1-31", "--metrics=false", "--rollback-on-failure", "-y"}
	b := startPluginInGroup(t, args...)
	gating := b.on("analysis gate: analysing " + ns + " ")
	select { // signalled the moment the gate says it starts: the companion is then still starting
	case <-gating:
	case <-time.After(90 * time.Second):
		t.Fatalf("the analysis gate never started:\n%s", b.errors())
	}
	if err := syscall.Kill(-b.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := b.wait(); code != 130 || strings.Contains(b.errors(), "rolling back") || strings.Contains(b.errors(), "analysis gate FAILED") {
		t.Fatalf("Ctrl-C during the analysis gate: exit %d, want 130 with no rollback\n%s", code, b.errors())
	}
	out := b.errors()
	if i, j := strings.Index(out, "interrupt: stopping"), strings.Index(out, "namespace/"+ns+": analysis gate passed"); i < 0 || j < i {
		t.Logf("the signal landed after the analysis gate, not during it (a fast analysis):\n%s", out)
	}
	if e := journalEntries(t); e[len(e)-1].Status() != journal.StateCancelled {
		t.Errorf("the entry is %s, want cancelled", e[len(e)-1].Status())
	}
	if l := kubectl(t, "get", "namespace", ns, "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"); l != "1-31" {
		t.Errorf("%s after Ctrl-C: label %q, want 1-31 (no rollback)", ns, l)
	}
	if l := kubectl(t, "get", "namespace", third, "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"); l != "1-30" {
		t.Errorf("%s after Ctrl-C: label %q, want 1-30 (never started)", third, l)
	}

	// The rerun resumes the entry and the namespaces left pass their gates.
	res, r = migrate(t, ns, second, third, "--to", "1-31", "--rollback-on-failure", "-y")
	gated := map[string]bool{}
	for _, a := range res.Details.Analysis {
		gated[a.Namespace] = a.Passed
	}
	if r.code != 0 || !gated[third] || len(gated) != len(res.Details.Analysis) {
		t.Fatalf("migrate-ns resumed after Ctrl-C: exit %d, analysis %+v\n%s", r.code, res.Details.Analysis, r.stderr)
	}
	for n, passed := range gated {
		if !passed {
			t.Errorf("the resumed migration's analysis gate of %s failed", n)
		}
	}
}
