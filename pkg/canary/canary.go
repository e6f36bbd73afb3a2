package canary

import (
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

const (
	// LabelCanaryOf marks a canary gateway Deployment, its pods, HPA and PDB with the name of the
	// gateway Deployment it stands beside. It is also in the canary's selector, so the canary never
	// adopts the old gateway's pods.
	LabelCanaryOf = "istio-upgrade.io/canary-of"
	// ServingGate is the readiness gate that keeps a new canary's pods out of every Service: nothing
	// sets it, so they are never Ready and never an endpoint. shift removes the gate when it gives the
	// canary its first share of traffic.
	ServingGate corev1.PodConditionType = "istio-upgrade.io/serving"
	// AnnotationHPARange records the old gateway HPA's "min-max" on the canary, so shift can split the
	// range between the two in the proportion of the traffic and give it back whole at 0 or 100 %.
	AnnotationHPARange = "istio-upgrade.io/hpa-range"
)

// dropLabels are labels of the old Deployment's installer or its GitOps controller: the canary is ours,
// not Helm's, and Argo CD or Flux would prune it (serving or not) as an object missing from Git.
var dropLabels = append([]string{"app.kubernetes.io/managed-by", "helm.sh/chart", "release", "heritage", "chart"}, kube.GitOpsLabels...)

// DefaultName is the canary Deployment's name when --name is not given.
func DefaultName(old, revision string) string { return old + "-" + revision }

// Derive builds the canary gateway Deployment for revision from the old gateway Deployment: the same
// pod template (resources, security context, ports, service account, scheduling), labelled for the
// new revision and for LabelCanaryOf, injected with the gateway template, held out of traffic by
// ServingGate, with its own selector so neither Deployment adopts the other's pods.
func Derive(old *appsv1.Deployment, revision, name string, replicas int32, hpaRange string) *appsv1.Deployment {
	c := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   old.Namespace,
			Labels:      canaryLabels(old.Labels, old.Name, revision),
			Annotations: map[string]string{},
		},
		Spec: *old.Spec.DeepCopy(),
	}
	if hpaRange != "" {
		c.Annotations[AnnotationHPARange] = hpaRange
	}
	c.Spec.Replicas = &replicas
	c.Spec.Selector = old.Spec.Selector.DeepCopy()
	if c.Spec.Selector.MatchLabels == nil {
		c.Spec.Selector.MatchLabels = map[string]string{}
	}
	c.Spec.Selector.MatchLabels[LabelCanaryOf] = old.Name
	t := &c.Spec.Template
	t.Labels = canaryLabels(t.Labels, old.Name, revision)
	delete(t.Labels, "pod-template-hash")
	for k, v := range c.Spec.Selector.MatchLabels { // a label the selector needs stays, whoever set it
		t.Labels[k] = v
	}
	if t.Annotations == nil {
		t.Annotations = map[string]string{}
	}
	delete(t.Annotations, kube.RestartedAtAnnotation)
	// A gateway from istioctl's installer runs a fixed proxy image with no injection; the canary is
	// injected by the new revision with the gateway template, so it runs that revision's proxy.
	t.Labels[istio.LabelSidecarInject] = "true"
	t.Annotations[istio.AnnotationTemplates] = "gateway"
	for i := range t.Spec.Containers {
		if t.Spec.Containers[i].Name == istio.ProxyContainer {
			t.Spec.Containers[i].Image = "auto"
		}
	}
	if !HasServingGate(&t.Spec) {
		t.Spec.ReadinessGates = append(t.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: ServingGate})
	}
	return c
}

func canaryLabels(in map[string]string, oldName, revision string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		out[k] = v
	}
	for _, k := range dropLabels {
		delete(out, k)
	}
	delete(out, istio.LabelTag)
	out[istio.LabelRev] = revision
	out[LabelCanaryOf] = oldName
	return out
}

// HasServingGate says whether a pod spec still carries the canary's readiness gate.
func HasServingGate(spec *corev1.PodSpec) bool {
	for _, g := range spec.ReadinessGates {
		if g.ConditionType == ServingGate {
			return true
		}
	}
	return false
}

// DeriveHPA copies the old gateway's HPA (metrics, behavior) for the canary. Before shift the canary
// runs at its own replica count, so min is that count and max the old max; shift moves both.
func DeriveHPA(old *autoscalingv2.HorizontalPodAutoscaler, canary *appsv1.Deployment) *autoscalingv2.HorizontalPodAutoscaler {
	h := &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: metav1.ObjectMeta{Name: canary.Name, Namespace: canary.Namespace, Labels: copyLabels(canary.Labels)},
		Spec:       *old.Spec.DeepCopy(),
	}
	h.Spec.ScaleTargetRef = autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: canary.Name}
	min := max(*canary.Spec.Replicas, 1)
	h.Spec.MinReplicas = &min
	h.Spec.MaxReplicas = max(h.Spec.MaxReplicas, min)
	return h
}

// DerivePDB copies the old gateway's PDB for the canary, selecting the canary's pods only.
func DerivePDB(old *policyv1.PodDisruptionBudget, canary *appsv1.Deployment) *policyv1.PodDisruptionBudget {
	p := &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: metav1.ObjectMeta{Name: canary.Name, Namespace: canary.Namespace, Labels: copyLabels(canary.Labels)},
		Spec:       *old.Spec.DeepCopy(),
	}
	p.Spec.Selector = canary.Spec.Selector.DeepCopy()
	return p
}

func copyLabels(in map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		out[k] = v
	}
	return out
}

// HPAFor returns the HPA scaling Deployment name, or nil.
func HPAFor(hpas []autoscalingv2.HorizontalPodAutoscaler, name string) *autoscalingv2.HorizontalPodAutoscaler {
	for i := range hpas {
		r := hpas[i].Spec.ScaleTargetRef
		if r.Kind == "Deployment" && r.Name == name {
			return &hpas[i]
		}
	}
	return nil
}

// PDBFor returns the first PDB (by name) that selects the Deployment's pods, or nil. Canary PDBs are
// skipped when looking for the old gateway's.
func PDBFor(pdbs []policyv1.PodDisruptionBudget, d *appsv1.Deployment) *policyv1.PodDisruptionBudget {
	var found *policyv1.PodDisruptionBudget
	for i := range pdbs {
		p := &pdbs[i]
		if p.Labels[LabelCanaryOf] != "" && d.Labels[LabelCanaryOf] == "" {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		if found == nil || p.Name < found.Name {
			found = p
		}
	}
	return found
}

// HPARange renders an HPA's bounds as AnnotationHPARange holds them.
func HPARange(h *autoscalingv2.HorizontalPodAutoscaler) string {
	if h == nil {
		return ""
	}
	min := int32(1)
	if h.Spec.MinReplicas != nil {
		min = *h.Spec.MinReplicas
	}
	return fmt.Sprintf("%d-%d", min, h.Spec.MaxReplicas)
}

// ParseHPARange reads AnnotationHPARange.
func ParseHPARange(s string) (min, max int32, ok bool) {
	a, b, found := strings.Cut(s, "-")
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	if !found || err1 != nil || err2 != nil || x < 1 || y < x {
		return 0, 0, false
	}
	return int32(x), int32(y), true
}
