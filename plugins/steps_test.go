package plugins

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal/journaltest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/precheck"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/tagmove"
)

// The steps run each other (pins, --restart) and find their restorers through the registry.
func TestMain(m *testing.M) {
	step.Register(Steps())
	os.Exit(m.Run())
}

// checkSteps is precheck's "steps this identity may run" on c, with every registered step.
func checkSteps(t *testing.T, c *journaltest.Cluster) []precheck.StepAccess {
	t.Helper()
	raw, err := mesh.List(context.Background(), c.Clients, mesh.ReadOptions{IstioNamespace: "istio-system"})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := precheck.CheckSteps(context.Background(), c.Clients, Steps(), mesh.Build(*raw), "istio-system")
	if err != nil {
		t.Fatal(err)
	}
	return steps
}

// Namespaced rights are asked in the namespaces a step acts on: patching workloads in shop (which
// selects a revision) decides migrate-ns, not the same right elsewhere.
func TestStepAccessPerStepAndNamespace(t *testing.T) {
	c := journaltest.New(t, steptest.Mesh()...)
	c.Deny = func(a authzv1.ResourceAttributes) bool {
		return (a.Verb == "patch" && a.Resource == "deployments" && a.Namespace == "shop") || (a.Verb == "delete" && a.Resource == "clusterroles")
	}
	steps := checkSteps(t, c)
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

// A Gateway API gateway that follows the tag is pinned to the revision it runs before the tag moves
// (by default), through migrate-gw's gated move as a sub-step; --pin-gateways=false leaves it rolling.
func TestTagMovePinsFollowingGateways(t *testing.T) {
	objs := func() []runtime.Object {
		gw := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
			"metadata": map[string]any{"name": "edge", "namespace": "web"}, "spec": map[string]any{"gatewayClassName": "istio"}}}
		d := steptest.Deployment("web", "edge-istio", 1, map[string]string{"gateway.networking.k8s.io/gateway-name": "edge",
			"gateway.istio.io/managed": "istio.io-gateway-controller", istio.LabelSidecarInject: "false"}, nil)
		return append(steptest.Without(steptest.Mesh(), "MutatingWebhookConfiguration//istio-sidecar-injector-1-31"),
			steptest.Injector("1-31"), steptest.Namespace("web", nil), gw, d, steptest.Pod("web", "edge-istio", "a", "1-30"))
	}
	run := func(pin bool) (res struct {
		Actions []struct{ Object, Verb string }
		Details tagmove.Details
	}) {
		b := steptest.New(t, objs()...)
		if err := b.Run(&tagmove.Options{To: "1-31", Overwrite: true, PinGateways: pin, BatchSize: 5, Timeout: time.Minute}, "client", nil, "default"); err != nil {
			t.Fatalf("%v\n%s", err, b.ErrOut)
		}
		if err := json.Unmarshal(b.Out.Bytes(), &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	if r := run(false).Details.BlastRadius; len(r.RollingNow) != 1 || len(r.Pinned) != 0 {
		t.Errorf("--pin-gateways=false: rollingNow %q, pinned %q", r.RollingNow, r.Pinned)
	}
	res := run(true)
	if r := res.Details.BlastRadius; len(r.RollingNow) != 0 || len(r.Pinned) != 1 || !strings.Contains(r.Pinned[0], "gateway/web/edge") {
		t.Errorf("pinned: rollingNow %q, pinned %q", r.RollingNow, r.Pinned)
	}
	if len(res.Actions) == 0 || res.Actions[0].Object != "web/gateway/edge" || res.Actions[0].Verb != "moved to 1-30" {
		t.Errorf("the pin is not the first action: %+v", res.Actions)
	}
}

// tag-move --restart's success path through the runner, on a bed whose controllers roll pods and
// whose istiods answer syncz: the default tag moves to 1-31 and its sub-step (migrate-ns, found by
// the registry) restarts the workload of the namespace on the tag in a gated batch, in one entry.
func TestTagMoveRestartSucceeds(t *testing.T) {
	objs := append(steptest.Without(steptest.Mesh(), "MutatingWebhookConfiguration//istio-sidecar-injector-1-31"),
		steptest.Injector("1-31"), steptest.Namespace("pay", map[string]string{istio.LabelRev: "default"}),
		steptest.Deployment("pay", "api", 2, nil, nil), steptest.Pod("pay", "api", "a", "1-30"), steptest.Pod("pay", "api", "b", "1-30"))
	b := steptest.New(t, objs...)
	b.Live()
	if err := b.Run(&tagmove.Options{To: "1-31", Overwrite: true, Restart: true, BatchSize: 5, Timeout: 20 * time.Second}, "none", nil, "default"); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	b.CheckFieldManager()
	if revs := b.PodRevisions("pay"); strings.Join(revs, ",") != "1-31,1-31" {
		t.Errorf("pay/api's pods injected by %v after the move, want two on 1-31", revs)
	}
	if revs := b.PodRevisions("shop"); strings.Join(revs, ",") != "1-30,1-30" {
		t.Errorf("shop (on revision 1-30, not the tag) has pods on %v: restarted what does not follow the tag", revs)
	}
	if e := b.Entries(); len(e) != 1 || e[0].Step != "tag-move" || e[0].State != "in-effect" {
		t.Errorf("entries %+v, want one in-effect tag-move entry", e)
	}
}

// precheck judges what a step runs inside itself and its flags that need more: tag-move pins the
// Gateway API gateways that follow a tag with migrate-gw (by default) and restarts with migrate-ns
// (--restart); canary-gw --helm writes Helm's release Secrets. Each is asked where it acts.
func TestStepAccessOfSubStepsAndVariants(t *testing.T) {
	gw := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"name": "edge", "namespace": "web"}, "spec": map[string]any{"gatewayClassName": "istio"}}}
	d := steptest.Deployment("web", "edge-istio", 1, map[string]string{"gateway.networking.k8s.io/gateway-name": "edge",
		"gateway.istio.io/managed": "istio.io-gateway-controller", istio.LabelSidecarInject: "false"}, nil)
	c := journaltest.New(t, append(steptest.Mesh(), steptest.Namespace("web", nil), gw, d, steptest.Pod("web", "edge-istio", "a", "1-30"))...)
	c.Deny = func(a authzv1.ResourceAttributes) bool {
		return (a.Verb == "patch" && a.Resource == "deployments" && (a.Namespace == "shop" || a.Namespace == "web")) ||
			(a.Verb == "create" && a.Resource == "secrets" && a.Namespace == "istio-ingress")
	}
	steps := checkSteps(t, c)
	got := map[string]precheck.StepAccess{}
	var order []string
	for _, s := range steps {
		got[s.Step] = s
		order = append(order, s.Step)
	}
	for name, want := range map[string]string{
		"tag-move":           "patch deployments.apps in web",                                // its pin of web/edge
		"tag-move --restart": "patch deployments.apps in shop,patch deployments.apps in web", // and migrate-ns
		"canary-gw --helm":   "create secrets in istio-ingress",
	} {
		if s := got[name]; s.Allowed || strings.Join(s.Missing, ",") != want {
			t.Errorf("%s: %+v, want missing %s", name, s, want)
		}
	}
	if !got["canary-gw"].Allowed {
		t.Errorf("canary-gw without --helm needs no Secrets: %+v", got["canary-gw"])
	}
	if i := strings.Index(strings.Join(order, ","), "canary-gw,canary-gw --helm,"); i < 0 {
		t.Errorf("a variant follows its step: %v", order)
	}
}
