package shift

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/canary"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal/journaltest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

func gwDeployment(name string, n int32, gated bool) *appsv1.Deployment {
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-ingress"},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(n)},
	}
	if gated {
		d.Spec.Template.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: canary.ServingGate}}
	}
	return d
}

func gwHPA(target string, lo, hi int32) *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: metav1.ObjectMeta{Name: target, Namespace: "istio-ingress"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{MinReplicas: ptr.To(lo), MaxReplicas: hi,
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: target}},
	}
}

// TestUndoOrder checks that undoing a shift restores the side regaining pods first, and puts a
// canary back behind its readiness gate only after scaling it to 0.
func TestUndoOrder(t *testing.T) {
	const old, can = "istio-ingressgateway", "istio-ingressgateway-1-31"
	tests := []struct {
		name              string
		recorded, current []runtime.Object // old, canary, old HPA, canary HPA
		want              []string
	}{
		{
			name:     "undo a first shift to 100: old back first, canary out of traffic",
			recorded: []runtime.Object{gwDeployment(old, 2, false), gwDeployment(can, 1, true), gwHPA(old, 2, 4), gwHPA(can, 1, 4)},
			current:  []runtime.Object{gwDeployment(old, 0, false), gwDeployment(can, 2, false), gwHPA(old, 2, 4), gwHPA(can, 2, 4)},
			want: []string{
				"update deployments " + old, // its HPA kept the whole range at 0 %: unchanged
				"patch deployments " + can, "update deployments " + can, "update horizontalpodautoscalers " + can,
			},
		},
		{
			name:     "undo a shift back to 0: canary back first",
			recorded: []runtime.Object{gwDeployment(old, 0, false), gwDeployment(can, 2, false), gwHPA(old, 2, 4), gwHPA(can, 2, 4)},
			current:  []runtime.Object{gwDeployment(old, 2, false), gwDeployment(can, 0, false), gwHPA(old, 2, 4), gwHPA(can, 2, 4)},
			want:     []string{"update deployments " + can, "update deployments " + old},
		},
		{
			name:     "undo a partial step: nothing to scale to 0 when the canary was serving",
			recorded: []runtime.Object{gwDeployment(old, 1, false), gwDeployment(can, 1, false), gwHPA(old, 1, 2), gwHPA(can, 1, 2)},
			current:  []runtime.Object{gwDeployment(old, 0, false), gwDeployment(can, 2, false), gwHPA(old, 2, 4), gwHPA(can, 2, 4)},
			want: []string{
				"update horizontalpodautoscalers " + old, "update deployments " + old,
				"update deployments " + can, "update horizontalpodautoscalers " + can,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := journaltest.New(t, tt.current...)
			e := &journal.Entry{ID: "0003", Step: "shift"}
			refs := []journal.ObjectRef{journal.DeploymentRef("istio-ingress", old), journal.DeploymentRef("istio-ingress", can),
				journal.HPARef("istio-ingress", old), journal.HPARef("istio-ingress", can)}
			for i, o := range tt.recorded {
				e.Objects = append(e.Objects, journaltest.Recorded(t, refs[i], o))
			}
			// A server dry run: fakes ignore DryRun, and it skips the rollout waits fakes cannot complete.
			if _, err := Undo(context.Background(), c.Clients, c.Journal, e, []string{"All"}, cli.NewProgress(&bytes.Buffer{})); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Writes, tt.want) {
				t.Errorf("undo wrote\n  %q\nwant\n  %q", c.Writes, tt.want)
			}
			for _, w := range c.Sent {
				if w.Manager != kube.FieldManager && !strings.HasPrefix(w.Write, "delete") {
					t.Errorf("%s sent without the field manager (%q)", w.Write, w.Manager)
				}
			}
		})
	}
}
