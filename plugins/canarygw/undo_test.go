package canarygw

import (
	"bytes"
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/canary"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal/journaltest"
)

// TestUndoRefusesACanaryInService: undo of canary-gw deletes the canary only while it is behind its
// readiness gate (or at 0 replicas).
func TestUndoRefusesACanaryInService(t *testing.T) {
	canary := func(replicas int32, gated bool) *appsv1.Deployment {
		d := &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Name: "gw-1-31", Namespace: "istio-ingress", Labels: map[string]string{canary.LabelCanaryOf: "gw"}},
			Spec:       appsv1.DeploymentSpec{Replicas: &replicas}}
		d.Spec.Template.Labels = map[string]string{"istio.io/rev": "1-31"}
		if gated {
			d.Spec.Template.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: canary.ServingGate}}
		}
		return d
	}
	for _, tt := range []struct {
		name    string
		canary  *appsv1.Deployment
		refused bool
	}{
		{"behind its gate", canary(1, true), false},
		{"in service", canary(2, false), true},
		{"shifted back to 0", canary(0, false), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := journaltest.New(t, tt.canary)
			ref := journal.DeploymentRef("istio-ingress", "gw-1-31")
			e := &journal.Entry{ID: "0002", Step: "canary-gw", Objects: []journal.Object{{Ref: ref}}}
			_, err := Undo(context.Background(), c.Clients, c.Journal, e, nil, cli.NewProgress(&bytes.Buffer{}))
			deleted := len(c.Writes) == 1 && c.Writes[0] == "delete deployments gw-1-31"
			if tt.refused && (cli.CodeOf(err) != cli.ExitBadInput || deleted) {
				t.Errorf("want refused (65) and kept: err %v, deleted %v", err, deleted)
			}
			if !tt.refused && (err != nil || !deleted) {
				t.Errorf("want deleted: err %v, deleted %v", err, deleted)
			}
		})
	}
}
