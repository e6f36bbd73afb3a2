package gate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// rolledOut is a Deployment whose rollout is complete, as kubectl's status viewer reads it.
func rolledOut(ns, name string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: 1},
		Spec:   appsv1.DeploymentSpec{Replicas: ptr(int32(1))},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}}
}

// A move-back restarts one batch at a time and gates it before the next: with every pod back on
// 1-30 both batches pass in order, one line each; with b's pod still on 1-31 the second batch fails
// its gate, and the third is never restarted.
func TestMoveBackGatesEachBatchBeforeTheNext(t *testing.T) {
	w := func(name string) kube.WorkloadRef {
		return kube.WorkloadRef{Kind: "Deployment", Namespace: "shop", Name: name}
	}
	for _, c := range []struct {
		name      string
		bRevision string
		restarted []string
		fails     bool
	}{
		{"every batch back", "1-30", []string{"a", "b", "c"}, false},
		{"b stays on 1-31", "1-31", []string{"a", "b"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			pa, pb, pc := pod("shop", "a", "1", "1-30"), pod("shop", "b", "1", c.bRevision), pod("shop", "c", "1", "1-30")
			k := fake.NewClientset([]runtime.Object{rolledOut("shop", "a"), rolledOut("shop", "b"), rolledOut("shop", "c"), &pa, &pb, &pc}...)
			var restarted, lines []string
			m := MoveBack{Batches: [][]kube.WorkloadRef{{w("a")}, {w("b")}, {w("c")}}, Timeout: 1500 * time.Millisecond,
				Restart:  func(_ context.Context, x kube.WorkloadRef) error { restarted = append(restarted, x.Name); return nil },
				Revision: func(string) string { return "1-30" },
				Say:      func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) },
				Update:   func(string, ...any) {}}
			err := m.Run(context.Background(), k, "rollback")
			if (err != nil) != c.fails || !slices.Equal(restarted, c.restarted) {
				t.Fatalf("err %v, restarted %v; want failure %v after %v", err, restarted, c.fails, c.restarted)
			}
			if c.fails && !strings.Contains(err.Error(), "rollback batch 2/3") {
				t.Errorf("the failure does not name its batch: %v", err)
			}
			if !c.fails && (len(lines) != 3 || !strings.HasPrefix(lines[0], "rollback batch 1/3: shop/deployment/a back on 1-30, 1 pods ready")) {
				t.Errorf("lines %q", lines)
			}
		})
	}
}
