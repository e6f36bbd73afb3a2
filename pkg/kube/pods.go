package kube

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// PodCondition says whether a pod's condition t is True.
func PodCondition(p *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PodReady says whether a pod is running, not terminating and Ready (an endpoint of its Services).
func PodReady(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && PodCondition(p, corev1.PodReady)
}

// DryRunPod asks the apiserver to admit a minimal pod in ns without creating it (dryRun=All): what comes
// back is what the mutating webhooks made of it.
func DryRunPod(ctx context.Context, c kubernetes.Interface, ns string) (*corev1.Pod, error) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "istio-upgrade-injection-probe-", Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "registry.invalid/istio-upgrade-probe"}}},
	}
	return c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: FieldManager})
}
