package migratens

import (
	"bytes"
	"context"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal/journaltest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// TestUndoRelabelsThenRestarts checks the order of a migrate-ns undo (labels before any restart) and
// that it restarts only what the step restarted, never writing the recorded specs back.
func TestUndoRelabelsThenRestarts(t *testing.T) {
	ns := func(rev string) *corev1.Namespace {
		return &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"istio.io/rev": rev}}}
	}
	dep := func(name, restarted string, replicas int32) *appsv1.Deployment {
		d := &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"}, Spec: appsv1.DeploymentSpec{Replicas: ptr(replicas)}}
		if restarted != "" {
			d.Spec.Template.Annotations = map[string]string{kube.RestartedAtAnnotation: restarted}
		}
		return d
	}
	// Now: relabelled to 1-31, web restarted by the step and scaled to 5 by an HPA since; cart untouched.
	current := []runtime.Object{ns("1-31"), dep("web", "2026-11-23T10:00:00Z", 5), dep("cart", "", 2)}
	recorded := []runtime.Object{ns("1-30"), dep("web", "", 3), dep("cart", "", 2), dep("web", "", 3)} // web is the canary too
	c := journaltest.New(t, current...)
	e := &journal.Entry{ID: "0004", Step: "migrate-ns"}
	refs := []journal.ObjectRef{journal.NamespaceRef("shop"), journal.DeploymentRef("shop", "web"), journal.DeploymentRef("shop", "cart"), journal.DeploymentRef("shop", "web")}
	for i, o := range recorded {
		e.Objects = append(e.Objects, journaltest.Recorded(t, refs[i], o))
	}
	// Server dry run: the fakes ignore DryRun and it skips the rollout wait they cannot complete.
	actions, err := Undo(context.Background(), c.Clients, c.Journal, e, []string{"All"}, cli.NewProgress(&bytes.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"update namespaces shop", "patch deployments web"}; !reflect.DeepEqual(c.Writes, want) {
		t.Errorf("undo wrote %q, want %q", c.Writes, want)
	}
	var verbs []string
	for _, a := range actions {
		verbs = append(verbs, a.Ref.String()+" "+a.Verb)
	}
	want := []string{"namespace/shop restored", "shop/deployment/cart unchanged (the step never restarted it)", "shop/deployment/web restarted"}
	if !reflect.DeepEqual(verbs, want) {
		t.Errorf("actions %q, want %q", verbs, want)
	}
	if d, _ := c.Clients.Kube.AppsV1().Deployments("shop").Get(context.Background(), "web", metav1.GetOptions{}); *d.Spec.Replicas != 5 {
		t.Errorf("undo changed web's replicas to %d: the HPA's 5 must stay", *d.Spec.Replicas)
	}
}

// Undo restarts in the step's batches (its journal units), last first; workloads no unit names (an
// entry from before units) go last, five at a time.
func TestUndoBatchesFollowTheUnitsBackwards(t *testing.T) {
	w := func(name string) kube.WorkloadRef {
		return kube.WorkloadRef{Kind: "Deployment", Namespace: "shop", Name: name}
	}
	e := &journal.Entry{Units: []journal.Unit{
		{Name: unitName([]kube.WorkloadRef{w("a")}), Objects: []string{w("a").String()}},
		{Name: unitName([]kube.WorkloadRef{w("b"), w("c")}), Objects: []string{w("b").String(), w("c").String()}},
		{Name: "pin gateways", Objects: []string{w("d").String()}},
	}}
	pending := map[kube.WorkloadRef]bool{w("a"): true, w("b"): true, w("c"): true, w("d"): true, w("e"): true}
	got := undoBatches(e, pending)
	want := [][]kube.WorkloadRef{{w("b"), w("c")}, {w("a")}, {w("d"), w("e")}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("batches %v, want %v", got, want)
	}
}
