package canary

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/golden"
)

func ptr[T any](v T) *T { return &v }

// helmGateway is a gateway as the Istio gateway Helm chart renders it, on revision 1-30.
func helmGateway() *appsv1.Deployment {
	sel := map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-ingressgateway", Namespace: "istio-ingress", ResourceVersion: "42", UID: "u1",
			Labels:      map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway", "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "gateway-1.30.0"},
			Annotations: map[string]string{"meta.helm.sh/release-name": "istio-ingress", "deployment.kubernetes.io/revision": "3"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr(intstr.FromInt32(0)), MaxSurge: ptr(intstr.FromInt32(1))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway", "istio.io/rev": "1-30", "sidecar.istio.io/inject": "true"},
					Annotations: map[string]string{"inject.istio.io/templates": "gateway", "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z", "prometheus.io/port": "15020"},
				},
				Spec: corev1.PodSpec{
					ServiceAccountName: "istio-ingressgateway",
					SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)},
					Containers: []corev1.Container{{Name: "istio-proxy", Image: "auto",
						Ports: []corev1.ContainerPort{{ContainerPort: 8080, Name: "http2"}}}},
				},
			},
		},
	}
}

func TestDeriveGolden(t *testing.T) {
	old := helmGateway()
	before, _ := yaml.Marshal(old)
	c := Derive(old, "1-31", DefaultName(old.Name, "1-31"), 1, "2-5")
	after, _ := yaml.Marshal(old)
	if string(before) != string(after) {
		t.Error("Derive modified the old Deployment")
	}
	if c.Name != "istio-ingressgateway-1-31" || *c.Spec.Replicas != 1 || c.ResourceVersion != "" || c.UID != "" {
		t.Errorf("metadata %+v replicas %d", c.ObjectMeta, *c.Spec.Replicas)
	}
	// Gateway resources and the shared Service select app/istio: the canary's pods keep them.
	for k, v := range map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway", "istio.io/rev": "1-31", LabelCanaryOf: "istio-ingressgateway"} {
		if c.Spec.Template.Labels[k] != v {
			t.Errorf("pod label %s=%q, want %q", k, c.Spec.Template.Labels[k], v)
		}
	}
	if c.Spec.Selector.MatchLabels[LabelCanaryOf] != "istio-ingressgateway" {
		t.Error("the canary's selector must not match the old gateway's pods")
	}
	if !HasServingGate(&c.Spec.Template.Spec) {
		t.Error("no readiness gate: the canary would serve before shift")
	}
	if c.Labels["app.kubernetes.io/managed-by"] != "" || c.Annotations["meta.helm.sh/release-name"] != "" {
		t.Error("Helm's ownership copied onto the canary")
	}
	b, _ := yaml.Marshal(c)
	golden.Assert(t, "canary-deployment.yaml", b)

	// An istioctl-installed gateway (fixed image, no injection) becomes an injected one.
	ist := helmGateway()
	delete(ist.Spec.Template.Labels, "sidecar.istio.io/inject")
	delete(ist.Spec.Template.Annotations, "inject.istio.io/templates")
	ist.Spec.Template.Spec.Containers[0].Image = "docker.io/istio/proxyv2:1.30.0"
	c = Derive(ist, "1-31", "gw", 2, "")
	if c.Spec.Template.Spec.Containers[0].Image != "auto" || c.Spec.Template.Annotations["inject.istio.io/templates"] != "gateway" || c.Spec.Template.Labels["sidecar.istio.io/inject"] != "true" {
		t.Errorf("istioctl gateway not turned into an injected one: %+v", c.Spec.Template)
	}
	if _, ok := c.Annotations[AnnotationHPARange]; ok {
		t.Error("HPA range recorded without an HPA")
	}
}

func TestDeriveHPAAndPDB(t *testing.T) {
	old := helmGateway()
	c := Derive(old, "1-31", "canary", 1, "")
	oh := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "istio-ingressgateway", Namespace: "istio-ingress"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{Kind: "Deployment", Name: old.Name},
			MinReplicas: ptr(int32(3)), MaxReplicas: 6, Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType}}}}
	h := DeriveHPA(oh, c)
	if h.Spec.ScaleTargetRef.Name != "canary" || *h.Spec.MinReplicas != 1 || h.Spec.MaxReplicas != 6 || len(h.Spec.Metrics) != 1 {
		t.Errorf("canary HPA %+v", h.Spec)
	}
	if HPAFor([]autoscalingv2.HorizontalPodAutoscaler{*oh}, old.Name) == nil || HPAFor([]autoscalingv2.HorizontalPodAutoscaler{*oh}, "x") != nil {
		t.Error("HPAFor")
	}
	if r := HPARange(oh); r != "3-6" {
		t.Errorf("HPARange %q", r)
	}
	if lo, hi, ok := ParseHPARange("3-6"); !ok || lo != 3 || hi != 6 {
		t.Error("ParseHPARange")
	}
	for _, bad := range []string{"", "3", "6-3", "0-2", "a-b"} {
		if _, _, ok := ParseHPARange(bad); ok {
			t.Errorf("ParseHPARange(%q) accepted", bad)
		}
	}
	op := policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "gw"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"istio": "ingressgateway"}}}}
	other := policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "a-other"},
		Spec: policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	found := PDBFor([]policyv1.PodDisruptionBudget{other, op}, old)
	if found == nil || found.Name != "gw" {
		t.Fatalf("PDBFor %v", found)
	}
	p := DerivePDB(found, c)
	if p.Name != "canary" || p.Spec.MinAvailable.IntValue() != 1 || p.Spec.Selector.MatchLabels[LabelCanaryOf] != old.Name {
		t.Errorf("canary PDB %+v", p.Spec)
	}
	// The canary's PDB selects only canary pods; looking for the old gateway's PDB never returns it.
	if got := PDBFor([]policyv1.PodDisruptionBudget{*p, op}, old); got.Name != "gw" {
		t.Errorf("PDBFor picked the canary's PDB for the old gateway")
	}
}

func TestParseGateway(t *testing.T) {
	for _, c := range []struct{ in, ns, wantNS, wantName string }{
		{"istio-ingress/gw", "", "istio-ingress", "gw"},
		{"gw", "istio-ingress", "istio-ingress", "gw"},
		{"gw", "", "", ""},
		{"a/b/c", "", "", ""},
		{"/gw", "", "", ""},
	} {
		ns, name, err := ParseGateway(c.in, c.ns)
		if ns != c.wantNS || name != c.wantName || (err == nil) != (c.wantName != "") {
			t.Errorf("ParseGateway(%q, %q) = %q %q %v", c.in, c.ns, ns, name, err)
		}
	}
}

func TestPodsReady(t *testing.T) {
	pod := func(phase corev1.PodPhase, containersReady corev1.ConditionStatus) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{Phase: phase,
			Conditions: []corev1.PodCondition{{Type: corev1.ContainersReady, Status: containersReady}, {Type: corev1.PodReady, Status: corev1.ConditionFalse}}}}
	}
	if r := PodsReady([]corev1.Pod{pod(corev1.PodRunning, corev1.ConditionTrue)}, 1); r != "" {
		t.Errorf("gated but running: %q", r)
	}
	if r := PodsReady([]corev1.Pod{pod(corev1.PodPending, corev1.ConditionFalse)}, 1); r == "" {
		t.Error("pending pod passed")
	}
	if r := PodsReady([]corev1.Pod{pod(corev1.PodRunning, corev1.ConditionTrue)}, 2); r != "1/2 pods running" {
		t.Errorf("count: %q", r)
	}
}

// The canary carries none of Argo CD's or Flux's tracking labels (they would prune it as missing from
// Git), on the Deployment or its pods, unless the selector needs one.
func TestDeriveDropsGitOpsTracking(t *testing.T) {
	tracked := map[string]string{"app": "gw", "argocd.argoproj.io/instance": "mesh", "kustomize.toolkit.fluxcd.io/name": "infra",
		"kustomize.toolkit.fluxcd.io/namespace": "flux-system", "app.kubernetes.io/instance": "gw"}
	old := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: "ingress", Labels: tracked},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "gw", "app.kubernetes.io/instance": "gw"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: tracked}}}}
	c := Derive(old, "1-31", "gw-1-31", 1, "")
	for _, l := range []map[string]string{c.Labels, c.Spec.Template.Labels} {
		for _, k := range []string{"argocd.argoproj.io/instance", "kustomize.toolkit.fluxcd.io/name", "kustomize.toolkit.fluxcd.io/namespace"} {
			if _, ok := l[k]; ok {
				t.Errorf("the canary carries %s: %v", k, l)
			}
		}
	}
	if c.Spec.Template.Labels["app.kubernetes.io/instance"] != "gw" {
		t.Errorf("a label the selector needs was dropped from the pods: %v", c.Spec.Template.Labels)
	}
}
