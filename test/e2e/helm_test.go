//go:build e2e

package e2e

// The helm profile (make e2e-helm): seed 000 end to end on Istio's own charts, from the non-revisioned
// default control plane to the revision "canary", through the real plugin and the real helm.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/test/traffic"
)

func requireProfile(t *testing.T, want string) {
	t.Helper()
	got, _ := os.ReadFile(filepath.Join(testbedDir, "profile"))
	if p := strings.TrimSpace(string(got)); p != want {
		t.Skipf("needs the %s test-bed profile (this bed: %q): make e2e-%s", want, p, want)
	}
}

// helmRepo serves the new Istio version's charts as the Helm repository "istio" on loopback, so the
// commands the plugin prints (helm upgrade istio-base istio/base ...) run exactly as printed.
func helmRepo(t *testing.T) {
	t.Helper()
	home := t.TempDir()
	for _, v := range []string{"HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME"} {
		t.Setenv(v, filepath.Join(home, v))
	}
	dir := t.TempDir()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	charts := filepath.Join(testbedDir, "istio-new-src", "manifests", "charts")
	for _, c := range []string{"base", "istio-control/istio-discovery", "gateway"} {
		helmOK(t, "package", filepath.Join(charts, c), "-d", dir)
	}
	helmOK(t, "repo", "index", dir, "--url", srv.URL)
	helmOK(t, "repo", "add", "istio", srv.URL)
}

func helmOK(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, "helm", args...)
}

// shell runs a command line the plugin printed, as a user pastes it.
func shell(t *testing.T, line string) {
	t.Helper()
	cmd := exec.Command("bash", "-c", line)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+binDir+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	t.Logf("ran: %s", line)
}

type helmRelease struct {
	Name, Namespace, Status, Chart string
}

func helmReleases(t *testing.T) map[string]helmRelease {
	t.Helper()
	var l []helmRelease
	if err := json.Unmarshal([]byte(helmOK(t, "list", "-A", "-o", "json")), &l); err != nil {
		t.Fatal(err)
	}
	out := map[string]helmRelease{}
	for _, r := range l {
		out[r.Namespace+"/"+r.Name] = r
	}
	return out
}

// helmConsistent: every deployed release's objects exist (nothing deleted behind Helm's back).
func helmConsistent(t *testing.T) {
	t.Helper()
	for key, rel := range helmReleases(t) {
		if rel.Status != "deployed" {
			t.Errorf("release %s is %s", key, rel.Status)
			continue
		}
		manifest := helmOK(t, "get", "manifest", rel.Name, "-n", rel.Namespace)
		cmd := exec.Command(filepath.Join(binDir, "kubectl"), "--kubeconfig", kubeconfig, "get", "-n", rel.Namespace, "-f", "-", "-o", "name")
		cmd.Stdin = strings.NewReader(manifest)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("release %s: objects missing: %v\n%s", key, err, out)
		}
	}
}

func testHelmSeed000(t *testing.T) {
	requireProfile(t, "helm")
	helmRepo(t)

	// The starting point: the non-revisioned default control plane, everything SYNCED on it.
	d := status(t)
	if !revisionInstalled(d, "default") || len(d.Revisions) != 1 {
		t.Fatalf("status: revisions %+v, want only default", d.Revisions)
	}
	if err := checkProxiesOnInjectedRevision(t, "bookinfo"); err != nil {
		t.Fatal(err)
	}
	if err := checkProxiesOnInjectedRevision(t, "istio-ingress"); err != nil {
		t.Fatal(err)
	}
	for _, ns := range d.Namespaces {
		if ns.Name == "bookinfo" && ns.Revision != "default" {
			t.Errorf("bookinfo (istio-injection=enabled) resolves to %q, want default", ns.Revision)
		}
	}

	// precheck names the real releases, read through the Helm SDK.
	rep, _ := precheck(t)
	var helmFinding string
	for _, f := range rep.Findings {
		if f.Code == "HELM_INSTALL" {
			helmFinding += f.Message
		}
	}
	for _, want := range []string{"istio-system/istio-base (base", "defaultRevision=default", "istio-system/istiod (istiod", "istio-ingress/istio-ingress (gateway"} {
		if !strings.Contains(helmFinding, want) {
			t.Errorf("precheck HELM_INSTALL does not name %q: %q", want, helmFinding)
		}
	}

	// Istio's productpage serves a Service with no preStop hook: precheck says a restart drops requests
	// on their way to it (the traffic loop measured 4 of 149 failing through migrate-ns without it). Its
	// fix applied before the upgrade starts (a rollout of its own, outside the loops below).
	if !has(rep, "NO_GRACEFUL_SHUTDOWN", "deployment/bookinfo/productpage-v1") {
		t.Errorf("precheck does not find productpage-v1's missing preStop hook: %+v", rep.Findings)
	}
	kubectl(t, "-n", "bookinfo", "patch", "deployment", "productpage-v1", "--type=json", "-p",
		`[{"op":"add","path":"/spec/template/spec/containers/0/lifecycle","value":{"preStop":{"sleep":{"seconds":3}}}}]`)
	kubectl(t, "-n", "bookinfo", "rollout", "status", "deployment", "productpage-v1", "--timeout=60s")
	if rep, _ := precheck(t); has(rep, "NO_GRACEFUL_SHUTDOWN", "deployment/bookinfo/productpage-v1") {
		t.Error("precheck still finds productpage-v1 without a preStop hook after the fix")
	}

	// helm install istiod-canary ... --set revision=canary (the test bed's new-revision on this profile).
	cmd := exec.Command("make", "-C", "../..", "-s", "testbed-new-revision", "REV=canary")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make testbed-new-revision REV=canary: %v\n%s", err, out)
	}
	if rel := helmReleases(t)["istio-system/istiod-canary"]; rel.Status != "deployed" {
		t.Fatalf("istiod-canary release: %+v", rel)
	}

	// The gateway: a canary beside the release's Deployment, then all traffic to it. The Service the
	// load balancer points at is never replaced.
	svcUID := kubectl(t, "-n", "istio-ingress", "get", "service", "istio-ingress", "-o", "jsonpath={.metadata.uid}")
	gw := []string{"--gateway", "istio-ingress/istio-ingress", "--revision", "canary"}
	// Seed 000's curl loop, counted, through the Helm gateway to Istio's productpage.
	eventually(t, 30*time.Second, "a first request through the Helm gateway", func() error {
		if s := traffic.Run(context.Background(), traffic.Config{URL: "http://" + ingress() + "/productpage", Host: "bookinfo.example.com", RPS: 20, Max: 5}); s.Failed > 0 {
			return fmt.Errorf("%v", s.Causes)
		}
		return nil
	})
	gwLoop := bookinfoLoop(100)
	// The default way: a Deployment derived from the release's, out of traffic; undo removes it.
	if d, r := step(t, append([]string{"canary-gw", "-y"}, gw...)...); r.code != 0 {
		t.Fatalf("canary-gw: exit %d %s %s", r.code, d.Summary, r.stderr)
	}
	if u := plugin(t, "undo", "-y"); u.code != 0 {
		t.Fatalf("undo of the derived canary: exit %d %s", u.code, u.stderr)
	}
	// --helm: a release of the gateway chart itself (seed 000: revision, no Service, the Service's pod
	// labels), out of traffic until shift, so Helm can upgrade the cluster later.
	if d, r := step(t, append([]string{"canary-gw", "--helm", "--dry-run=server"}, gw...)...); r.code != 0 || helmReleases(t)["istio-ingress/istio-ingress-canary"].Name != "" {
		t.Fatalf("canary-gw --helm --dry-run=server: exit %d %s %s", r.code, d.Summary, r.stderr)
	}
	if d, r := step(t, append([]string{"canary-gw", "--helm", "-y"}, gw...)...); r.code != 0 {
		t.Fatalf("canary-gw --helm: exit %d %s %s", r.code, d.Summary, r.stderr)
	}
	if rel := helmReleases(t)["istio-ingress/istio-ingress-canary"]; rel.Status != "deployed" || !strings.HasPrefix(rel.Chart, "gateway-") {
		t.Fatalf("canary release: %+v", rel)
	}
	if n := kubectl(t, "-n", "istio-ingress", "get", "services", "-o", "name"); strings.TrimSpace(n) != "service/istio-ingress" {
		t.Errorf("the canary release must add no Service: %q", n)
	}
	if d, r := step(t, append([]string{"shift", "--metrics=false", "--weight", "100", "--step", "50", "--interval", "0s", "-y"}, gw...)...); r.code != 0 {
		t.Fatalf("shift --weight 100: exit %d %s %s", r.code, d.Summary, r.stderr)
	}
	eventually(t, 60*time.Second, "gateway on canary", func() error { return checkProxiesOnInjectedRevision(t, "istio-ingress") })
	noFailures(t, "the Helm gateway's canary-gw (both ways) and shift", gwLoop, 200)
	if h := plugin(t, "history"); !strings.Contains(h.stdout, "serving: Deployment istio-ingress/istio-ingress-canary") {
		t.Errorf("history does not say what serves:\n%s", h.stdout)
	}

	// The workloads: one canary workload first, then the rest.
	migLoop := bookinfoLoop(100)
	if res, r := migrate(t, "bookinfo", "--to", "canary", "--canary", "deploy/details-v1"); r.code != 0 || len(res.Details.Restarted) != 1 {
		t.Fatalf("migrate-ns --canary: exit %d restarted %v %s", r.code, res.Details.Restarted, r.stderr)
	}
	if _, r := migrate(t, "bookinfo", "--to", "canary", "-y"); r.code != 0 {
		t.Fatalf("migrate-ns: exit %d %s", r.code, r.stderr)
	}
	eventually(t, 90*time.Second, "bookinfo on canary", func() error {
		for p, rev := range injectedPods(t, "bookinfo") {
			if rev != "canary" {
				return fmt.Errorf("%s still on %s", p, rev)
			}
		}
		return checkProxiesOnInjectedRevision(t, "bookinfo")
	})
	noFailures(t, "migrate-ns of Istio's bookinfo", migLoop, 150)

	// A tenant who may write Secrets in its own namespace plants a copy of the base release there (chart
	// base, defaultRevision=default, the default validator in its manifest): cleanup never reads it.
	plantTenantRelease(t)
	// The old istiod release renders tag prod-stable (its revisionTags), and tag-move points the tag at
	// canary: helm uninstall of that release would delete the tag's webhook and Service.
	oldChart := filepath.Join(testbedDir, "istio-old-src", "manifests", "charts", "istio-control", "istio-discovery")
	helmOK(t, "upgrade", "istiod", oldChart, "-n", "istio-system", "--reuse-values", "--set", "revisionTags={prod-stable}")
	if d, r := step(t, "tag-move", "prod-stable", "--to", "canary", "--overwrite", "-y"); r.code != 0 {
		t.Fatalf("tag-move prod-stable --to canary: exit %d %s %s", r.code, d.Summary, r.stderr)
	}
	tagRev := func() string {
		return kubectl(t, "get", "mutatingwebhookconfiguration", "istio-revision-tag-prod-stable", "-o", "jsonpath={.webhooks[0].clientConfig.service.name}")
	}

	// cleanup of default: the default validator (the base release's defaultRevision) blocks it, and the
	// fix is Helm's.
	clean := func(args ...string) (cleanupResult, result) {
		r := plugin(t, append([]string{"cleanup", "--revision", "default", "-o", "json"}, args...)...)
		var res cleanupResult
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("cleanup %v: exit %d, not JSON: %v\n%s\n%s", args, r.code, err, r.stdout, r.stderr)
		}
		return res, r
	}
	res, r := clean("-y")
	if r.code != 66 || len(res.Details.Blockers) == 0 {
		t.Fatalf("cleanup with the validator on default: exit %d, want 66: %+v %s", r.code, res.Details.Blockers, r.stderr)
	}
	for _, b := range res.Details.Blockers {
		if !strings.HasPrefix(b.Fix, "helm upgrade istio-base istio/base ") || !strings.Contains(b.Fix, "defaultRevision=canary") {
			t.Fatalf("blocker %+v: want Helm's fix on the base release", b)
		}
	}
	fixes := res.Details.Blockers

	// --helm refuses (66) while uninstalling the istiod release would delete the tag's objects, and
	// names them; the webhook still calls canary. Its fix, run as named (with the chart this bed
	// installed the release from): keep them, then take them out of the release.
	res, r = clean("--helm", "-y")
	var named []string
	for _, b := range res.Details.Blockers {
		if b.Kind == "helm-release" {
			named = append(named, b.Message)
			if !strings.Contains(b.Fix, "helm.sh/resource-policy=keep") || !strings.Contains(b.Fix, "--set-json 'revisionTags=[]'") {
				t.Errorf("blocker %+v: want the keep annotation and --set-json 'revisionTags=[]'", b)
			}
		}
	}
	if joined := strings.Join(named, "\n"); r.code != 66 || !strings.Contains(joined, "MutatingWebhookConfiguration/istio-revision-tag-prod-stable") ||
		!strings.Contains(joined, "Service/istio-system/istiod-revision-tag-prod-stable") {
		t.Fatalf("cleanup --helm with tag prod-stable in the istiod release: exit %d, helm-release blockers %q %s", r.code, named, r.stderr)
	}
	if got := tagRev(); got != "istiod-canary" {
		t.Fatalf("the refused cleanup changed the tag's webhook: it calls %q", got)
	}
	kubectl(t, "annotate", "mutatingwebhookconfiguration", "istio-revision-tag-prod-stable", "helm.sh/resource-policy=keep")
	kubectl(t, "-n", "istio-system", "annotate", "service", "istiod-revision-tag-prod-stable", "helm.sh/resource-policy=keep")
	// --set-json, not --set revisionTags=null: with --reuse-values a null keeps the old list, and helm
	// renders the tag again from its template, pointing it back at default.
	helmOK(t, "upgrade", "istiod", oldChart, "-n", "istio-system", "--reuse-values", "--set-json", "revisionTags=[]")
	if got := tagRev(); got != "istiod-canary" {
		t.Fatalf("taking the tag out of the release changed its webhook: it calls %q", got)
	}

	// Path 1: --helm runs the helm commands through the SDK, journaled; undo rolls the releases back.
	versions := func() string {
		var out []string
		for _, n := range []string{"istio-system/istio-base", "istio-system/istiod", "istio-ingress/istio-ingress"} {
			ns, name, _ := strings.Cut(n, "/")
			out = append(out, name+":"+strings.TrimSpace(kubectl(t, "-n", ns, "get", "secrets", "-l", "owner=helm,name="+name,
				"-o", "jsonpath={range .items[*]}{.metadata.labels.version}={.metadata.labels.status} {end}")))
		}
		return strings.Join(out, " ")
	}
	before := versions()
	if res, r := clean("--helm", "--dry-run=server"); r.code != 0 || len(res.Details.HelmRan) != 3 || versions() != before {
		t.Fatalf("cleanup --helm --dry-run=server: exit %d, ran %q, blockers %+v, releases %s → %s\n%s", r.code, res.Details.HelmRan, res.Details.Blockers, before, versions(), r.stderr)
	}
	res, r = clean("--helm", "-y")
	if r.code != 0 || len(res.Details.HelmRan) != 3 {
		t.Fatalf("cleanup --helm: exit %d, ran %q: %s", r.code, res.Details.HelmRan, r.stderr)
	}
	if rels := helmReleases(t); rels["istio-system/istiod"].Name != "" {
		t.Errorf("cleanup --helm left the istiod release deployed: %+v", rels["istio-system/istiod"])
	}
	if got := tagRev(); got != "istiod-canary" {
		t.Errorf("after cleanup --helm the tag's webhook calls %q, want istiod-canary", got)
	}
	if charts := strings.Join(res.Details.HelmCharts, "\n"); strings.Contains(charts, "tenant") || !strings.Contains(charts, "istio-system/istiod: chart istiod") {
		t.Errorf("cleanup --helm's charts: %q", charts)
	}
	if got := kubectl(t, "-n", "tenant", "get", "secrets", "-l", "owner=helm", "-o", "jsonpath={range .items[*]}{.metadata.labels.version}={.metadata.labels.status} {end}"); got != "1=deployed " {
		t.Errorf("the tenant's release was acted on: %q", got)
	}
	helmConsistent(t)
	if got := helmOK(t, "get", "values", "istio-base", "-n", "istio-system", "-o", "json"); !strings.Contains(got, `"defaultRevision":"canary"`) {
		t.Errorf("istio-base values after cleanup --helm: %s", got)
	}
	if u := plugin(t, "undo", "-y"); u.code != 0 {
		t.Fatalf("undo of cleanup --helm: exit %d %s", u.code, u.stderr)
	}
	if rel := helmReleases(t)["istio-system/istiod"]; rel.Status != "deployed" {
		t.Fatalf("after undo the istiod release is %+v", rel)
	}
	if got := helmOK(t, "get", "values", "istio-base", "-n", "istio-system", "-o", "json"); !strings.Contains(got, `"defaultRevision":"default"`) {
		t.Errorf("istio-base values after undo: %s", got)
	}
	helmConsistent(t)
	eventually(t, 60*time.Second, "default back after undo", func() error {
		if !revisionInstalled(status(t), "default") {
			return fmt.Errorf("revision default not back")
		}
		return nil
	})

	// Path 2: the printed commands, run as printed with the real helm. cleanup itself never deletes
	// what a release owns.
	for _, b := range fixes {
		shell(t, b.Fix)
	}
	eventually(t, 60*time.Second, "cleanup unblocked", func() error {
		if res, r := clean("--dry-run=client"); r.code != 0 {
			return fmt.Errorf("exit %d: %+v", r.code, res.Details.Blockers)
		}
		return nil
	})
	res, r = clean("-y")
	if r.code != 0 {
		t.Fatalf("cleanup: exit %d %s", r.code, r.stderr)
	}
	if len(res.Details.HelmOwned) == 0 || !strings.Contains(strings.Join(res.Details.HelmCommands, "\n"), "helm uninstall istiod -n istio-system") {
		t.Fatalf("cleanup's Helm-owned objects %q and commands %q", res.Details.HelmOwned, res.Details.HelmCommands)
	}
	helmConsistent(t) // nothing a release owns was deleted behind helm's back
	for _, c := range res.Details.HelmCommands {
		shell(t, c)
	}

	// The end: one revision, every proxy SYNCED on it, the same ingress Service, Helm consistent.
	eventually(t, 90*time.Second, "only canary left", func() error {
		d := status(t)
		if len(d.Revisions) != 1 || d.Revisions[0].Name != "canary" {
			return fmt.Errorf("revisions %+v", d.Revisions)
		}
		for _, p := range d.Proxies {
			if p.Revision != "canary" || p.State != "SYNCED" {
				return fmt.Errorf("proxy %s/%s: %s on %s", p.Namespace, p.Pod, p.State, p.Revision)
			}
		}
		return nil
	})
	if got := kubectl(t, "-n", "istio-ingress", "get", "service", "istio-ingress", "-o", "jsonpath={.metadata.uid}"); got != svcUID {
		t.Errorf("the ingress Service was replaced: UID %s → %s", svcUID, got)
	}
	rels := helmReleases(t)
	if _, ok := rels["istio-system/istiod"]; ok {
		t.Error("the istiod release is still installed")
	}
	if got := helmOK(t, "get", "values", "istio-base", "-n", "istio-system", "-o", "json"); !strings.Contains(got, `"defaultRevision":"canary"`) {
		t.Errorf("istio-base values: %s", got)
	}
	helmConsistent(t)
}

// plantTenantRelease copies the base release's Secret into namespace tenant, as anyone allowed to write
// Secrets there could: labelled owner=helm,status=deployed, chart base, the default validator in its
// manifest.
func plantTenantRelease(t *testing.T) {
	t.Helper()
	kubectl(t, "create", "namespace", "tenant")
	var sec map[string]any
	if err := json.Unmarshal([]byte(kubectl(t, "-n", "istio-system", "get", "secret", "-l", "owner=helm,name=istio-base,status=deployed", "-o", "jsonpath={.items[0]}")), &sec); err != nil {
		t.Fatal(err)
	}
	meta := sec["metadata"].(map[string]any)
	sec["metadata"] = map[string]any{"name": meta["name"], "namespace": "tenant", "labels": meta["labels"]}
	f := filepath.Join(t.TempDir(), "release.json")
	b, _ := json.Marshal(sec)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "create", "-f", f) // not apply: its last-applied annotation would exceed the limit
}
