//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type precheckReport struct {
	Kind     string
	Blocking bool
	Findings []struct{ Severity, Code, Object, Message, Fix string }
	Skipped  []string
}

func precheck(t *testing.T, args ...string) (precheckReport, int) {
	t.Helper()
	r := plugin(t, append([]string{"precheck", "-o", "json"}, args...)...)
	var rep precheckReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("precheck -o json: exit %d, not JSON: %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	return rep, r.code
}

func has(rep precheckReport, code, object string) bool {
	_, ok := findingOf(rep, code, object)
	return ok
}

// findingOf is "severity: message" of the first finding with code on object ("" = any object).
func findingOf(rep precheckReport, code, object string) (string, bool) {
	for _, f := range rep.Findings {
		if f.Code == code && (object == "" || f.Object == object) {
			return f.Severity + ": " + f.Message, true
		}
	}
	return "", false
}

// testPrecheckFixtures: the fixtures' single-replica Deployment and the namespace still on
// istio-injection are reported; a --revision that is not installed is an error with exit 79.
func testPrecheckFixtures(t *testing.T) {
	rep, code := precheck(t)
	if rep.Kind != "PrecheckReport" {
		t.Errorf("kind %q", rep.Kind)
	}
	if !has(rep, "SINGLE_REPLICA", "deployment/bookinfo/ratings-v1") || !has(rep, "NS_LEGACY_INJECTION_LABEL", "namespace/bookinfo") {
		t.Errorf("precheck missed the fixtures' single replica or legacy label: %+v", rep.Findings)
	}
	if has(rep, "PROXY_DISCONNECTED", "") || has(rep, "PROXY_NOT_SYNCED", "") || has(rep, "CRDS_MISSING", "") {
		t.Errorf("healthy fixtures reported as broken: %+v", rep.Findings)
	}
	if code != 0 || rep.Blocking {
		t.Errorf("no errors on the fixtures, want exit 0, got %d", code)
	}
	rep, code = precheck(t, "--revision", "9-99")
	if code != 79 || !rep.Blocking || !has(rep, "TARGET_NOT_INSTALLED", "revision/9-99") {
		t.Errorf("--revision 9-99: exit %d, %+v", code, rep.Findings)
	}
	if _, code := precheck(t, "--fail-on", "warning"); code != 79 {
		t.Errorf("--fail-on warning with warnings present: exit %d, want 79", code)
	}
	snap := filepath.Join(t.TempDir(), "pre.json")
	if _, code := precheck(t, "--save-snapshot", snap); code != 0 {
		t.Fatalf("--save-snapshot: exit %d", code)
	}
	b, err := os.ReadFile(snap)
	if err != nil || !strings.Contains(string(b), `"kind": "MeshStatus"`) {
		t.Errorf("saved snapshot: %v %.80s", err, b)
	}
	if r := plugin(t, "precheck", "--fail-on", "sometimes"); r.code != 64 {
		t.Errorf("bad --fail-on: exit %d", r.code)
	}
}

// testPrecheckAfterNewRevision: once the new revision is installed, the same precheck reports no
// error about it.
func testPrecheckAfterNewRevision(t *testing.T) {
	ensureNewRevision(t)
	rep, code := precheck(t, "--revision", "1-31")
	for _, f := range rep.Findings {
		if f.Severity == "error" {
			t.Errorf("error after installing 1-31: %+v", f)
		}
	}
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
}

// testPrecheckMissingPermissions runs as a ServiceAccount that may read but not patch namespaces,
// nor port-forward: precheck reports exactly those verbs in one finding and exits 79.
func testPrecheckMissingPermissions(t *testing.T) {
	kubectl(t, "create", "namespace", "e2e-rbac")
	t.Cleanup(func() {
		run(t, binDir+"/kubectl", "delete", "namespace", "e2e-rbac", "--wait=false")
		run(t, binDir+"/kubectl", "delete", "clusterrolebinding", "e2e-limited")
		run(t, binDir+"/kubectl", "delete", "clusterrole", "e2e-limited")
	})
	kubectl(t, "-n", "e2e-rbac", "create", "serviceaccount", "limited")
	// Everything the runbook needs except: patch/update namespaces and pods/portforward.
	kubectl(t, "create", "clusterrole", "e2e-limited",
		"--verb=get,list,watch", "--resource=namespaces,pods,services,configmaps,deployments,statefulsets,daemonsets,mutatingwebhookconfigurations,validatingwebhookconfigurations,horizontalpodautoscalers,poddisruptionbudgets,customresourcedefinitions")
	kubectl(t, "create", "clusterrolebinding", "e2e-limited", "--clusterrole=e2e-limited", "--serviceaccount=e2e-rbac:limited")
	token := strings.TrimSpace(kubectl(t, "-n", "e2e-rbac", "create", "token", "limited"))
	// A kubeconfig whose only credential is the ServiceAccount's token (the admin client cert would win).
	limited := filepath.Join(t.TempDir(), "limited.kubeconfig")
	if err := os.WriteFile(limited, []byte(kubectl(t, "config", "view", "--raw", "--minify", "--flatten")), 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "--kubeconfig", limited, "config", "set-credentials", "limited", "--token="+token)
	kubectl(t, "--kubeconfig", limited, "config", "set-context", "--current", "--user=limited")
	r := plugin(t, "precheck", "-o", "json", "--kubeconfig", limited)
	var rep precheckReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("not JSON (exit %d): %s / %s", r.code, r.stdout, r.stderr)
	}
	if r.code != 79 || len(rep.Findings) != 1 || rep.Findings[0].Code != "PERMISSIONS_MISSING" {
		t.Fatalf("exit %d findings %+v; want exit 79 and one PERMISSIONS_MISSING", r.code, rep.Findings)
	}
	msg := rep.Findings[0].Message
	for _, want := range []string{"patch namespaces", "create pods/portforward", "create serviceaccounts/token", "delete mutatingwebhookconfigurations"} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in %q", want, msg)
		}
	}
	for _, granted := range []string{"list namespaces", "list pods,", "list deployments"} {
		if strings.Contains(msg, granted) {
			t.Errorf("granted permission %q reported missing: %q", granted, msg)
		}
	}
	if strings.Contains(r.stderr, "forbidden") {
		t.Errorf("API errors leaked: %s", r.stderr)
	}

	// A mutating step with that identity is refused before any write (77), naming what is missing.
	ensureNewRevision(t)
	entries := func() string {
		return kubectl(t, "-n", "istio-system", "get", "configmaps", "-l", "istio-upgrade.io/journal=entry", "-o", "name")
	}
	before, rv := entries(), kubectl(t, "get", "namespace", "e2e-rbac", "-o", "jsonpath={.metadata.resourceVersion}")
	m := plugin(t, "migrate-ns", "--metrics=false", "e2e-rbac", "--to", "1-31", "-y", "--kubeconfig", limited)
	if m.code != 77 || !strings.Contains(m.stderr, "patch namespaces") || !strings.Contains(m.stderr, "create leases.coordination.k8s.io in istio-system") {
		t.Errorf("migrate-ns without the rights: exit %d (want 77 naming patch namespaces and the lock): %s", m.code, m.stderr)
	}
	if entries() != before || kubectl(t, "get", "namespace", "e2e-rbac", "-o", "jsonpath={.metadata.resourceVersion}") != rv {
		t.Error("a step refused for permissions changed the cluster")
	}

	// With the rights to read the mesh (port-forward and tokens in the Istio namespace), writes are judged
	// per step: no PERMISSIONS_MISSING, a STEP_NOT_PERMITTED per step it may not run.
	kubectl(t, "-n", "istio-system", "create", "role", "e2e-limited", "--verb=create", "--resource=pods/portforward,serviceaccounts/token")
	kubectl(t, "-n", "istio-system", "create", "rolebinding", "e2e-limited", "--role=e2e-limited", "--serviceaccount=e2e-rbac:limited")
	t.Cleanup(func() {
		run(t, binDir+"/kubectl", "-n", "istio-system", "delete", "rolebinding", "e2e-limited")
		run(t, binDir+"/kubectl", "-n", "istio-system", "delete", "role", "e2e-limited")
	})
	r = plugin(t, "precheck", "-o", "json", "--kubeconfig", limited)
	var full struct {
		Findings []struct{ Code, Object, Message string }
		Steps    []struct {
			Step    string
			Allowed bool
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &full); err != nil {
		t.Fatalf("not JSON (exit %d): %s / %s", r.code, r.stdout, r.stderr)
	}
	codes := map[string]int{}
	for _, f := range full.Findings {
		codes[f.Code]++
	}
	// Istio's analyzers may not list the configuration kinds: said at once, never waited out.
	analysisSays := ""
	for _, f := range full.Findings {
		if f.Code == "ANALYSIS_FAILED" {
			analysisSays = f.Message
		}
	}
	if !strings.Contains(analysisSays, "may not ") || !strings.Contains(analysisSays, "list virtualservices.networking.istio.io") {
		t.Errorf("the analysis without its rights: %q, want ANALYSIS_FAILED naming them", analysisSays)
	}
	// The six steps that apply to this mesh (not ztunnel-roll) and the two flags that need more.
	var names []string
	for _, s := range full.Steps {
		names = append(names, s.Step)
	}
	want := "canary-gw,canary-gw --helm,shift,migrate-ns,migrate-gw,tag-move,tag-move --restart,cleanup"
	if codes["PERMISSIONS_MISSING"] != 0 || codes["STEP_NOT_PERMITTED"] != len(full.Steps) || strings.Join(names, ",") != want {
		t.Errorf("with read access: findings %v, steps %v; want no PERMISSIONS_MISSING and STEP_NOT_PERMITTED for each of %s", codes, names, want)
	}
}
