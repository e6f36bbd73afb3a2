package checks

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// ambientMesh is clean() in ambient mode: a ztunnel on node-0 pointed at 1-30 and one on node-1 at
// 1-31; namespace amb (ambient) with reviews (a PDB that allows no disruption now) on node-0, ratings
// (grace 60s, no PDB) and a bare pod on node-1.
func ambientMesh() *Input {
	in := clean()
	raw := in.Raw
	raw.Namespaces = append(raw.Namespaces, corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "amb", Labels: map[string]string{istio.LabelDataplaneMode: istio.DataplaneAmbient}}})
	raw.DaemonSets = append(raw.DaemonSets, appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: istio.ZtunnelDaemonSet, Namespace: "istio-system"},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy", Image: "docker.io/istio/ztunnel:1.31.0",
			Env: []corev1.EnvVar{{Name: istio.EnvXDSAddress, Value: "istiod-1-31.istio-system.svc:15012"}}}}}}}})
	for i, rev := range []string{"1-30", "1-31"} {
		node := []string{"node-0", "node-1"}[i]
		z := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ztunnel-" + node, Namespace: "istio-system", Labels: map[string]string{"app": "ztunnel"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Name: istio.ZtunnelDaemonSet, Controller: ptr(true)}}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "istio-proxy", Image: "docker.io/istio/ztunnel:" + map[string]string{"1-30": "1.30.0", "1-31": "1.31.0"}[rev],
				Env: []corev1.EnvVar{{Name: istio.EnvXDSAddress, Value: "istiod-" + rev + ".istio-system.svc:15012"}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
		raw.Pods = append(raw.Pods, z)
	}
	ambient := func(p corev1.Pod, node string) corev1.Pod {
		p.Annotations = nil
		p.Spec.NodeName = node
		return p
	}
	reviews := ambient(pod("amb", "reviews", "a", "", nil), "node-0")
	ratings := ambient(pod("amb", "ratings", "a", "", nil), "node-1")
	ratings.Spec.TerminationGracePeriodSeconds = ptr(int64(60))
	bare := ambient(pod("amb", "debug", "a", "", nil), "node-1")
	bare.OwnerReferences = nil
	raw.Pods = append(raw.Pods, reviews, ratings, bare)
	b := pdb("amb", "reviews", 0)
	b.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: 1, DisruptionsAllowed: 0}
	in.PDBs = append(in.PDBs, b)
	in.Snapshot = mesh.Build(*raw)
	return in
}

func TestAmbient(t *testing.T) {
	var got []string
	for _, f := range Ambient(ambientMesh()) {
		got = append(got, f.Code+" "+f.Object)
	}
	want := []string{
		"ZTUNNEL_ROLL_RESETS node/node-0", "NODE_NOT_DRAINABLE node/node-0",
		"ZTUNNEL_ROLL_RESETS node/node-1", "NODE_NOT_DRAINABLE node/node-1",
		"ZTUNNEL_DRAIN_SHORTER amb/deployment/ratings",
		"ZTUNNEL_ON_OLD_ISTIOD pod/istio-system/ztunnel-node-0",
	}
	if !slices.Equal(got, want) {
		t.Errorf("findings\n got %v\nwant %v", got, want)
	}
	for _, f := range Ambient(ambientMesh()) {
		if f.Code == "ZTUNNEL_ROLL_RESETS" && f.Object == "node/node-1" && !strings.Contains(f.Message, "2 ambient pods (2 without") {
			t.Errorf("node-1: %s", f.Message)
		}
	}
	if fs := Ambient(clean()); len(fs) != 0 {
		t.Errorf("a mesh without ambient got %v", fs)
	}
}
