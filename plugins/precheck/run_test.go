package precheck

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
)

// run runs precheck's command on the bed (Istio's analyzers, a companion process, and the request
// data, which needs Prometheus, are proven in e2e) and decodes its -o json report.
func run(t *testing.T, b *steptest.Bed, args ...string) (Report, error) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	cmd := newCommand(b.G, streams, nil)
	cmd.SetArgs(append([]string{"--analysis=false", "--metrics=false"}, args...))
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	var r Report
	if jerr := json.Unmarshal(out.Bytes(), &r); jerr != nil && err == nil {
		t.Fatalf("report: %v\n%s\n%s", jerr, out, errOut)
	} else if jerr != nil {
		t.Fatalf("precheck failed without a report: %v\n%s", err, errOut)
	}
	for _, w := range b.Changes() {
		if !strings.HasPrefix(w, "create selfsubjectaccessreviews") && !strings.HasPrefix(w, "create selfsubjectrulesreviews") {
			t.Errorf("precheck wrote %s: it only reads", w)
		}
	}
	return r, err
}

func codes(r Report) map[string]string {
	out := map[string]string{}
	for _, f := range r.Findings {
		out[f.Code] = string(f.Severity)
	}
	return out
}

// installed is steptest.Mesh with what istioctl also installs: Istio's CRDs and each revision's
// injector ConfigMap.
func installed() []runtime.Object {
	objs := steptest.Mesh()
	for _, rev := range []string{"1-30", "1-31"} {
		objs = append(objs, &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector-" + rev, Namespace: "istio-system", Labels: map[string]string{"istio.io/rev": rev}}})
	}
	for _, name := range []string{"authorizationpolicies.security.istio.io", "destinationrules.networking.istio.io", "envoyfilters.networking.istio.io",
		"gateways.networking.istio.io", "peerauthentications.security.istio.io", "requestauthentications.security.istio.io",
		"serviceentries.networking.istio.io", "sidecars.networking.istio.io", "telemetries.telemetry.istio.io",
		"virtualservices.networking.istio.io", "workloadentries.networking.istio.io", "workloadgroups.networking.istio.io"} {
		group := name[strings.Index(name, ".")+1:]
		objs = append(objs, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": name}, "spec": map[string]any{"group": group}}})
	}
	return objs
}

// The exit code is the contract runbooks gate on: 79 exactly when a finding at or above --fail-on
// exists, 0 otherwise, and the report says the same.
func TestRunExitCodeFollowsFailOn(t *testing.T) {
	b := steptest.New(t, installed()...)
	b.Live()
	r, err := run(t, b, "--revision", "1-31")
	if err != nil || r.Blocking || r.Counts["error"] != 0 {
		t.Fatalf("a mesh ready for 1-31: exit %d (%v), blocking %v, findings %v; want 0 and no errors", cli.CodeOf(err), err, r.Blocking, codes(r))
	}
	if r.Counts["warning"] == 0 {
		t.Fatalf("the fixture has single-replica istiods and workloads, yet no warning: %v", codes(r))
	}
	r, err = run(t, b, "--revision", "1-31", "--fail-on", "warning")
	if cli.CodeOf(err) != cli.ExitPrecheck || !r.Blocking {
		t.Errorf("--fail-on warning with %d warnings: exit %d (%v), blocking %v; want 79", r.Counts["warning"], cli.CodeOf(err), err, r.Blocking)
	}
	r, err = run(t, b, "--revision", "1-99")
	if cli.CodeOf(err) != cli.ExitPrecheck || !r.Blocking || codes(r)["TARGET_NOT_INSTALLED"] != "error" {
		t.Errorf("a target not installed: exit %d (%v), findings %v; want 79 with TARGET_NOT_INSTALLED", cli.CodeOf(err), err, codes(r))
	}
}

// --save-snapshot writes the file for its owner only, and never through a symlink at the path.
func TestSaveSnapshotOwnerOnlyNoSymlink(t *testing.T) {
	dir := t.TempDir()
	s := &mesh.Snapshot{IstioNamespace: "istio-system"}
	path := filepath.Join(dir, "pre.json")
	if err := saveSnapshot(path, s); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved snapshot: mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), `"kind": "MeshStatus"`) {
		t.Errorf("not the status document: %s", b)
	}
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(victim, link); err != nil {
		t.Skip(err)
	}
	if err := saveSnapshot(link, s); cli.CodeOf(err) != cli.ExitBadInput {
		t.Errorf("a symlink at the path: exit %d (%v), want 65", cli.CodeOf(err), err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("written through the symlink: %q", b)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}
