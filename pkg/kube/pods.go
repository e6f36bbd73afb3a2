package kube

import corev1 "k8s.io/api/core/v1"

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
