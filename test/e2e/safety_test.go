//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

// An outside label added after migrate-ns survives undo; an outside change to the label the step set
// makes undo refuse (68) naming it, with nothing changed, and --force restores it.
func testUndoKeepsOutsideChangesAndRefusesDrift(t *testing.T) {
	ensureNewRevision(t)
	kubectl(t, "create", "namespace", "e2e-drift")
	defer kubectl(t, "delete", "namespace", "e2e-drift", "--wait=false")
	kubectl(t, "label", "namespace", "e2e-drift", "istio.io/rev=1-30")
	labels := func() string {
		return kubectl(t, "get", "namespace", "e2e-drift", "-o", `jsonpath={.metadata.labels.istio\.io/rev} {.metadata.labels.team}`)
	}

	if r := plugin(t, "migrate-ns", "--metrics=false", "e2e-drift", "--to", "1-31", "-y"); r.code != 0 {
		t.Fatalf("migrate-ns: exit %d %s", r.code, r.stderr)
	}
	kubectl(t, "label", "namespace", "e2e-drift", "team=payments-oncall")
	if r := plugin(t, "undo", "-y"); r.code != 0 {
		t.Fatalf("undo: exit %d %s", r.code, r.stderr)
	}
	if got := labels(); got != "1-30 payments-oncall" {
		t.Errorf("after undo: labels %q, want istio.io/rev back to 1-30 and team kept", got)
	}

	if r := plugin(t, "migrate-ns", "--metrics=false", "e2e-drift", "--to", "1-31", "-y"); r.code != 0 {
		t.Fatalf("migrate-ns again: exit %d %s", r.code, r.stderr)
	}
	kubectl(t, "label", "namespace", "e2e-drift", "istio.io/rev=prod-stable", "--overwrite") // someone moves it by hand
	kubectl(t, "label", "namespace", "e2e-drift", "team=platform", "--overwrite")
	before := labels()
	r := plugin(t, "undo", "-y")
	if r.code != 68 || !strings.Contains(r.stderr, `metadata.labels["istio.io/rev"]`) {
		t.Errorf("undo over an outside change: exit %d (want 68 naming the label) %s", r.code, r.stderr)
	}
	if labels() != before {
		t.Errorf("a refused undo changed the namespace: %q → %q", before, labels())
	}
	if r := plugin(t, "undo", "--force", "-y"); r.code != 0 {
		t.Fatalf("undo --force: exit %d %s", r.code, r.stderr)
	}
	if got := labels(); got != "1-30 platform" {
		t.Errorf("after undo --force: %q", got)
	}
}

// A ConfigMap with the journal label that this tool did not write is never replayed.
func testUndoRefusesAHandMadeEntry(t *testing.T) {
	plant(t, map[string]any{"id": "9999", "step": "migrate-ns", "objects": kubeSystemLabel("owned")}, nil)
	before := kubectl(t, "get", "namespace", "kube-system", "-o", "jsonpath={.metadata.labels}")
	r := plugin(t, "undo", "9999", "-y")
	if r.code != 65 || !strings.Contains(r.stderr, "not signed") {
		t.Errorf("undo of a forged entry: exit %d (want 65, not signed) %s", r.code, r.stderr)
	}
	if kubectl(t, "get", "namespace", "kube-system", "-o", "jsonpath={.metadata.labels}") != before {
		t.Error("a forged entry changed kube-system")
	}
	if h := plugin(t, "history"); !strings.Contains(h.stdout, "unsigned") {
		t.Errorf("history does not mark the forged entry unsigned:\n%s", h.stdout)
	}
}

// kube-system is refused by name unless --include-system, and never taken by --all.
func testMigrateNsNeverTakesSystemNamespaces(t *testing.T) {
	ensureNewRevision(t)
	rv := kubectl(t, "get", "namespace", "kube-system", "-o", "jsonpath={.metadata.resourceVersion}")
	r := plugin(t, "migrate-ns", "--metrics=false", "kube-system", "--to", "1-31", "-y")
	if r.code != 65 || !strings.Contains(r.stderr, "--include-system") {
		t.Errorf("migrate-ns kube-system: exit %d (want 65) %s", r.code, r.stderr)
	}
	if kubectl(t, "get", "namespace", "kube-system", "-o", "jsonpath={.metadata.resourceVersion}") != rv {
		t.Error("a refused migrate-ns changed kube-system")
	}
	kubectl(t, "label", "namespace", "kube-system", "istio-injection=enabled")
	defer kubectl(t, "label", "namespace", "kube-system", "istio-injection-")
	all := plugin(t, "migrate-ns", "--metrics=false", "--all", "--to", "1-31", "--dry-run=client", "-o", "json")
	if all.code != 0 || strings.Contains(all.stdout, `"namespace/kube-system`) || !strings.Contains(all.stderr, "left out: ") {
		t.Errorf("--all with kube-system labelled: exit %d, must leave it out and say so:\n%s\n%s", all.code, all.stdout, all.stderr)
	}
}

// A namespace Argo CD manages: migrate-ns warns that Argo CD will revert the relabel, and -o yaml
// carries the patch to commit.
func testGitOpsManagedNamespaceWarnsWithThePatch(t *testing.T) {
	ensureNewRevision(t)
	kubectl(t, "create", "namespace", "e2e-argo")
	defer kubectl(t, "delete", "namespace", "e2e-argo", "--wait=false")
	kubectl(t, "label", "namespace", "e2e-argo", "istio.io/rev=1-30")
	kubectl(t, "annotate", "namespace", "e2e-argo", "argocd.argoproj.io/tracking-id=platform:/Namespace:/e2e-argo")
	r := plugin(t, "migrate-ns", "--metrics=false", "e2e-argo", "--to", "1-31", "--dry-run=client", "-o", "yaml")
	if r.code != 0 || !strings.Contains(r.stderr, "managed by Argo CD application platform") {
		t.Errorf("exit %d, no Argo CD warning: %s", r.code, r.stderr)
	}
	for _, want := range []string{"object: namespace/e2e-argo", "type: application/merge-patch+json", "istio.io/rev: 1-31"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("-o yaml lacks %q:\n%s", want, r.stdout)
		}
	}
	if p := plugin(t, "precheck", "-o", "json"); !strings.Contains(p.stdout, "GITOPS_MANAGED") {
		t.Errorf("precheck does not report the Argo CD namespace:\n%s", p.stdout)
	}
}
