package shift

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/canary"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
)

// withCanary is steptest.Mesh plus the canary canary-gw leaves: one replica on 1-31, out of traffic.
func withCanary() []runtime.Object {
	objs := steptest.Mesh()
	var old *appsv1.Deployment
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok && d.Name == "istio-ingressgateway" {
			old = d
		}
	}
	c := canary.Derive(old, "1-31", "istio-ingressgateway-1-31", 1, "")
	c.Generation, c.Status = 1, appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
	return append(objs, c)
}

func toHalf(timeout time.Duration) func() step.Step {
	return func() step.Step {
		return &Options{Target: canary.Target{Gateway: "istio-ingress/istio-ingressgateway", Revision: "1-31"},
			Weight: 50, Probes: 1, Timeout: timeout}
	}
}

func TestRunContract(t *testing.T) {
	steptest.Contract(t, withCanary, toHalf(time.Minute))
}

func get(t *testing.T, b *steptest.Bed, name string) *appsv1.Deployment {
	d, err := b.Clients.Kube.AppsV1().Deployments("istio-ingress").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Fakes run no pods: the first step's gate times out (74) and shift's revert puts both gateways back as
// they were, the canary out of traffic again; the entry says rolled back.
func TestRunGateTimeoutReverts(t *testing.T) {
	b := steptest.New(t, withCanary()...)
	err := b.Run(toHalf(time.Second)(), "none", nil)
	if cli.CodeOf(err) != cli.ExitTimeout {
		t.Fatalf("exit %d (%v), want 74", cli.CodeOf(err), err)
	}
	if len(b.StepWrites()) < 2 {
		t.Fatalf("the first step never ran: %v", b.StepWrites())
	}
	b.CheckFieldManager()
	old, cn := get(t, b, "istio-ingressgateway"), get(t, b, "istio-ingressgateway-1-31")
	if *old.Spec.Replicas != 2 || *cn.Spec.Replicas != 1 || !canary.HasServingGate(&cn.Spec.Template.Spec) {
		t.Errorf("after the revert: old %d replicas, canary %d replicas, serving gate %v; want 2, 1, true",
			*old.Spec.Replicas, *cn.Spec.Replicas, canary.HasServingGate(&cn.Spec.Template.Spec))
	}
	if e := b.Entries(); len(e) != 1 || e[0].State != journal.StateRolledBack {
		t.Errorf("entries %+v, want one rolled-back entry", e)
	}
}

func TestRunRefusesWithoutCanary(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	err := b.Run(toHalf(time.Second)(), "none", nil)
	if cli.CodeOf(err) != cli.ExitBadInput || len(b.Changes()) != 0 {
		t.Fatalf("exit %d (%v), changes %v; want 65 and nothing changed", cli.CodeOf(err), err, b.Changes())
	}
}

// At 100 % history says what serves: the canary Deployment, and whether a Helm release still owns the
// Service's traffic path or the canary is its own release.
func TestServingNote(t *testing.T) {
	dep := func(name string, release string) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-ingress", Name: name}}
		if release != "" {
			d.Annotations = map[string]string{"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": "istio-ingress"}
		}
		return d
	}
	for _, c := range []struct {
		old, canary *appsv1.Deployment
		want        string
	}{
		{dep("gw", ""), dep("gw-1-31", ""), "Deployment istio-ingress/gw-1-31 (revision 1-31)"},
		{dep("istio-ingress", "istio-ingress"), dep("istio-ingress-1-31", ""),
			"Deployment istio-ingress/istio-ingress-1-31 (revision 1-31), not a Helm release: release istio-ingress/istio-ingress keeps the Service and its Deployment istio-ingress at 0 replicas"},
		{dep("istio-ingress", "istio-ingress"), dep("istio-ingress-canary", "istio-ingress-canary"),
			"Deployment istio-ingress/istio-ingress-canary (revision 1-31), of Helm release istio-ingress/istio-ingress-canary"},
	} {
		o := &Options{Target: canary.Target{Revision: "1-31"}, old: c.old, canary: c.canary}
		if got := o.serving(); got != c.want {
			t.Errorf("serving %q\nwant    %q", got, c.want)
		}
	}
}

// The success path through the runner, on a bed whose controllers roll pods and keep endpoints and
// whose istiods answer syncz: each step scales the growing side first, the canary leaves its
// readiness gate with its first share, every gate passes, and the entry is in effect at 50 %.
func TestRunSucceedsWhenEveryGatePasses(t *testing.T) {
	b := steptest.New(t, withCanary()...)
	b.Live()
	if err := b.Run(toHalf(20*time.Second)(), "none", nil); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	b.CheckFieldManager()
	old, cn := get(t, b, "istio-ingressgateway"), get(t, b, "istio-ingressgateway-1-31")
	if *old.Spec.Replicas != 1 || *cn.Spec.Replicas != 1 || canary.HasServingGate(&cn.Spec.Template.Spec) {
		t.Errorf("at 50%%: old %d replicas, canary %d replicas, serving gate %v; want 1, 1, false",
			*old.Spec.Replicas, *cn.Spec.Replicas, canary.HasServingGate(&cn.Spec.Template.Spec))
	}
	if revs := b.PodRevisions("istio-ingress"); !slices.Equal(revs, []string{"1-30", "1-31"}) {
		t.Errorf("gateway pods injected by %v, want one on each revision", revs)
	}
	if e := b.Entries(); len(e) != 1 || e[0].State != journal.StateInEffect {
		t.Errorf("entries %+v, want one in-effect entry", e)
	}
	if !strings.Contains(b.ErrOut.String(), "gate passed: 50%") {
		t.Errorf("no passed gate at 50%% on stderr:\n%s", b.ErrOut)
	}
}
