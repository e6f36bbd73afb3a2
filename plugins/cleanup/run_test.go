package cleanup

import (
	"context"
	"slices"
	"testing"

	admregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
)

// moved is steptest.Mesh after the upgrade: every namespace, workload, gateway, tag and the validator
// on 1-31. Fakes cannot answer syncz, so istiod pods are left pending (not asked) unless asked is set.
func moved(asked bool) func() []runtime.Object {
	return func() []runtime.Object {
		objs := steptest.Mesh()
		for _, o := range objs {
			switch x := o.(type) {
			case *corev1.Namespace:
				if x.Name == "shop" {
					x.Labels[istio.LabelRev] = "1-31"
				}
			case *corev1.Pod:
				if x.Namespace == "istio-system" && !asked {
					x.Status.Phase = corev1.PodPending
				}
				if x.Namespace != "istio-system" {
					*x = *steptest.Pod(x.Namespace, x.Labels["app"], x.Name[len(x.Name)-1:], "1-31")
				}
			case *appsv1.Deployment:
				if x.Name == "istio-ingressgateway" {
					x.Spec.Template.Labels[istio.LabelRev] = "1-31"
				}
			case *admregv1.MutatingWebhookConfiguration:
				if x.Labels[istio.LabelTag] != "" {
					x.Labels[istio.LabelRev] = "1-31"
				}
			case *admregv1.ValidatingWebhookConfiguration:
				x.Labels[istio.LabelRev] = "1-31"
			}
		}
		return objs
	}
}

func removing(rev string) func() step.Step {
	return func() step.Step { return &Options{Revision: rev} }
}

func TestRunContract(t *testing.T) {
	steptest.Contract(t, moved(false), removing("1-30"))
}

// Nothing depends on 1-30: exactly its objects go, in one entry that the generic restore brings back.
func TestRunRemovesExactlyTheRevisionThenUndo(t *testing.T) {
	b := steptest.New(t, moved(false)()...)
	if err := b.Run(removing("1-30")(), "none", nil); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	want := []string{"delete configmaps istio-1-30", "delete deployments istiod-1-30", "delete mutatingwebhookconfigurations istio-sidecar-injector-1-30", "delete services istiod-1-30"}
	got := b.StepWrites()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("deleted %v\nwant    %v", got, want)
	}
	e := b.Entries()
	if len(e) != 1 || e[0].State != journal.StateInEffect || len(e[0].Objects) != 4 {
		t.Fatalf("entries %+v", e)
	}
	if _, err := b.Journal.Restore(context.Background(), e[0], nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Clients.Kube.AppsV1().Deployments("istio-system").Get(context.Background(), "istiod-1-30", metav1.GetOptions{}); err != nil {
		t.Errorf("undo did not bring istiod-1-30 back: %v", err)
	}
}

// Anything that still resolves to 1-30 refuses with 66 and nothing changed; so does an istiod that cannot
// say whether proxies are still connected.
func TestRunRefusesWhileSomethingDepends(t *testing.T) {
	for name, objs := range map[string][]runtime.Object{"mid-upgrade": steptest.Mesh(), "istiod not answering": moved(true)()} {
		t.Run(name, func(t *testing.T) {
			b := steptest.New(t, objs...)
			err := b.Run(removing("1-30")(), "none", nil)
			if cli.CodeOf(err) != cli.ExitBlocked || len(b.Changes()) != 0 {
				t.Fatalf("exit %d (%v), changes %v; want 66 and nothing changed", cli.CodeOf(err), err, b.Changes())
			}
		})
	}
}
