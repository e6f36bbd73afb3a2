package plugins

import (
	"context"
	"strings"
	"testing"

	authzv1 "k8s.io/api/authorization/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal/journaltest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/precheck"
)

// Namespaced rights are asked in the namespaces a step acts on: patching workloads in shop (which
// selects a revision) decides migrate-ns, not the same right elsewhere.
func TestStepAccessPerStepAndNamespace(t *testing.T) {
	c := journaltest.New(t, steptest.Mesh()...)
	c.Deny = func(a authzv1.ResourceAttributes) bool {
		return (a.Verb == "patch" && a.Resource == "deployments" && a.Namespace == "shop") || (a.Verb == "delete" && a.Resource == "clusterroles")
	}
	raw, err := mesh.List(context.Background(), c.Clients, mesh.ReadOptions{IstioNamespace: "istio-system"})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := precheck.CheckSteps(context.Background(), c.Clients, Steps(), mesh.Build(*raw), "istio-system")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]precheck.StepAccess{}
	for _, s := range steps {
		got[s.Step] = s
	}
	if s := got["migrate-ns"]; s.Allowed || strings.Join(s.Missing, ",") != "patch deployments.apps in shop" {
		t.Errorf("migrate-ns: %+v", s)
	}
	if s := got["cleanup"]; s.Allowed || !strings.Contains(strings.Join(s.Missing, ","), "delete clusterroles") {
		t.Errorf("cleanup: %+v", s)
	}
	for _, name := range []string{"canary-gw", "shift", "tag-move"} {
		if !got[name].Allowed {
			t.Errorf("%s: %+v", name, got[name])
		}
	}
}
