package kube

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func deployment(name string, observed int64, updated int32, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
	r := int32(2)
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Generation: 2},
		Spec:   appsv1.DeploymentSpec{Replicas: &r},
		Status: appsv1.DeploymentStatus{ObservedGeneration: observed, Replicas: 2, UpdatedReplicas: updated, ReadyReplicas: 2, AvailableReplicas: 2, Conditions: conds}}
}

func TestWaitRollouts(t *testing.T) {
	k := fake.NewClientset(
		deployment("done", 2, 2),
		deployment("rolling", 2, 1),
		deployment("stuck", 2, 1, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}),
	)
	ref := func(n string) []WorkloadRef { return []WorkloadRef{{Kind: "Deployment", Namespace: "shop", Name: n}} }
	wait := func(n string) (error, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		err := WaitRollouts(ctx, k, ref(n), nil)
		return err, time.Since(start)
	}
	if err, _ := wait("done"); err != nil {
		t.Errorf("a complete rollout: %v", err)
	}
	if err, _ := wait("rolling"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a rollout still going at the deadline must say so (a timeout, exit 74): %v", err)
	}
	var failed *RolloutFailed
	if err, took := wait("stuck"); !errors.As(err, &failed) || took > 500*time.Millisecond {
		t.Errorf("ProgressDeadlineExceeded must fail at once, not wait out the deadline: %v after %s", err, took)
	}
}

func TestRestartPatchTouchesOnlyTheAnnotation(t *testing.T) {
	b, err := json.Marshal(newRestartPatch(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-30T00:00:00Z"}}}}}`
	if string(b) != want {
		t.Errorf("patch %s\nwant  %s", b, want)
	}
}

func TestNextRestart(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 400_000_000, time.UTC)
	for _, tt := range []struct {
		stamps []string
		want   string
	}{
		{nil, "2026-12-01T10:00:00Z"},
		{[]string{"2026-11-30T09:00:00Z"}, "2026-12-01T10:00:00Z"},
		{[]string{"2026-12-01T10:00:00Z"}, "2026-12-01T10:00:01Z"},                         // the same second: a no-op patch
		{[]string{"2026-12-01T10:00:01Z", "2026-12-01T09:59:59Z"}, "2026-12-01T10:00:02Z"}, // a rollback stamped ahead
		{[]string{"not a time"}, "2026-12-01T10:00:00Z"},
	} {
		if got := NextRestart(now, tt.stamps...).Format(time.RFC3339); got != tt.want {
			t.Errorf("NextRestart(%v) = %s, want %s", tt.stamps, got, tt.want)
		}
	}
}
