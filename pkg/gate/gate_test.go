package gate

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

func pod(ns, deploy, suffix, rev string) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: deploy + "-h-" + suffix, Namespace: ns,
		Labels:          map[string]string{"pod-template-hash": "h"},
		Annotations:     map[string]string{},
		OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: deploy + "-h", Controller: ptr(true)}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if rev != "" {
		p.Annotations[istio.AnnotationStatus] = `{"revision":"` + rev + `"}`
	}
	return p
}

func ptr[T any](v T) *T { return &v }

func TestEvaluatePods(t *testing.T) {
	batch := []kube.WorkloadRef{{Kind: "Deployment", Namespace: "a", Name: "web"}}
	pods := []corev1.Pod{pod("a", "web", "1", "1-31"), pod("a", "web", "2", "1-31"), pod("a", "other", "1", "1-30")}
	synced := map[string]string{"a/web-h-1": istio.StateSynced, "a/web-h-2": istio.StateSynced}
	if n, why := EvaluatePods(batch, pods, synced, "1-31"); n != 2 || why != "" {
		t.Errorf("all good: %d %q", n, why)
	}
	cases := []struct {
		name    string
		pods    []corev1.Pod
		proxies map[string]string
		want    string
	}{
		{"old revision", []corev1.Pod{pod("a", "web", "1", "1-30")}, synced, "injected by 1-30"},
		{"no sidecar", []corev1.Pod{pod("a", "web", "1", "")}, synced, "no sidecar"},
		{"not connected", []corev1.Pod{pod("a", "web", "3", "1-31")}, synced, "not connected"},
		{"stale", []corev1.Pod{pod("a", "web", "1", "1-31")}, map[string]string{"a/web-h-1": istio.StateStale}, "STALE"},
		{"no pods", []corev1.Pod{pod("a", "other", "1", "1-31")}, synced, "no running pods"},
	}
	for _, c := range cases {
		if _, why := EvaluatePods(batch, c.pods, c.proxies, "1-31"); !strings.Contains(why, c.want) {
			t.Errorf("%s: reason %q, want %q", c.name, why, c.want)
		}
	}
	terminating := pod("a", "web", "9", "1-30")
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	if _, why := EvaluatePods(batch, append(pods, terminating), synced, "1-31"); why != "" {
		t.Errorf("terminating old pods are ignored: %q", why)
	}
}

func TestCompareMetrics(t *testing.T) {
	before := map[string]float64{"pilot_total_xds_rejects": 2}
	if r := CompareMetrics(before, map[string]float64{"pilot_total_xds_rejects": 2}); len(r) != 0 {
		t.Errorf("no rise: %v", r)
	}
	if r := CompareMetrics(before, map[string]float64{"pilot_total_xds_rejects": 3, "pilot_xds_write_timeout": 1}); len(r) != 2 {
		t.Errorf("two rises: %v", r)
	}
}
