package checks

import (
	"strconv"
	"strings"
	"testing"

	admregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

func ptr[T any](v T) *T { return &v }

func istiod(rev, version string, replicas int32) appsv1.Deployment {
	return appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "istiod-" + rev, Namespace: "istio-system", Labels: map[string]string{"app": "istiod", istio.LabelRev: rev}},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(replicas), Template: corev1.PodTemplateSpec{
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: "docker.io/istio/pilot:" + version}}},
		}},
		Status: appsv1.DeploymentStatus{ReadyReplicas: replicas},
	}
}

// injectorWebhook mirrors what istioctl installs for a revision: a namespace-label webhook and a
// pod-label webhook.
func injectorWebhook(name, rev string, nsValues []string) admregv1.MutatingWebhookConfiguration {
	return admregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{istio.LabelRev: rev}},
		Webhooks: []admregv1.MutatingWebhook{{
			Name: "rev.namespace.sidecar-injector.istio.io",
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: istio.LabelRev, Operator: metav1.LabelSelectorOpIn, Values: nsValues},
				{Key: istio.LabelInjection, Operator: metav1.LabelSelectorOpDoesNotExist}}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: istio.LabelSidecarInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}}}},
		}},
	}
}

func app(ns, name string, replicas int32) appsv1.Deployment {
	return appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: ptr(intstr.FromInt32(0)), MaxSurge: ptr(intstr.FromInt32(1))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name,
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}}}}},
			},
		},
		Status: appsv1.DeploymentStatus{ReadyReplicas: replicas},
	}
}

func pod(ns, deploy, suffix, rev string, extra map[string]string) corev1.Pod {
	l := map[string]string{"app": deploy, "pod-template-hash": "h"}
	for k, v := range extra {
		l[k] = v
	}
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: deploy + "-h-" + suffix, Namespace: ns, Labels: l,
			Annotations:     map[string]string{istio.AnnotationStatus: `{"revision":"` + rev + `"}`},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: deploy + "-h", Controller: ptr(true)}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func pdb(ns, app string, maxUnavailable int32) policyv1.PodDisruptionBudget {
	return policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr(intstr.FromInt32(maxUnavailable)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}}
}

func synced(ns, podName, version string) istio.ProxySync {
	return istio.ProxySync{ID: podName + "." + ns, Pod: podName, Namespace: ns, Version: version,
		Types: map[string]string{"CDS": istio.StateSynced, "LDS": istio.StateSynced}}
}

// clean is a healthy mesh mid-upgrade: nothing but the install-method info may fire.
func clean() *Input {
	gw := app("istio-ingress", "gateway", 2)
	gw.Spec.Template.Labels[istio.LabelIstio] = "ingressgateway"
	gw.Spec.Template.Labels[istio.LabelRev] = "1-30"
	gw.Spec.Template.Annotations = map[string]string{istio.AnnotationTemplates: "gateway"}
	gw.Spec.Template.Spec.Containers[0].Name = istio.ProxyContainer
	raw := &mesh.Inputs{
		IstioNamespace:    "istio-system",
		IstiodDeployments: []appsv1.Deployment{istiod("1-30", "1.30.0", 2), istiod("1-31", "1.31.0", 2)},
		MutatingWebhooks: []admregv1.MutatingWebhookConfiguration{
			injectorWebhook("istio-sidecar-injector-1-30", "1-30", []string{"1-30"}),
			injectorWebhook("istio-sidecar-injector-1-31", "1-31", []string{"1-31"}),
		},
		ValidatingWebhooks: []admregv1.ValidatingWebhookConfiguration{{ObjectMeta: metav1.ObjectMeta{Name: istio.DefaultValidatorName, Labels: map[string]string{istio.LabelRev: "1-30"}}}},
		ConfigMaps: []corev1.ConfigMap{
			{ObjectMeta: metav1.ObjectMeta{Name: "istio-1-30", Labels: map[string]string{istio.LabelRev: "1-30"}}, Data: map[string]string{"mesh": "trustDomain: cluster.local\n"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "istio-1-31", Labels: map[string]string{istio.LabelRev: "1-31"}}, Data: map[string]string{"mesh": "trustDomain: cluster.local\n"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector-1-31", Labels: map[string]string{istio.LabelRev: "1-31"}}},
		},
		Namespaces: []corev1.Namespace{
			{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{istio.LabelRev: "1-30"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "istio-ingress"}},
		},
		Deployments: []appsv1.Deployment{app("shop", "web", 2), gw},
		Pods: []corev1.Pod{pod("shop", "web", "a", "1-30", nil), pod("shop", "web", "b", "1-30", nil),
			pod("istio-ingress", "gateway", "a", "1-30", map[string]string{istio.LabelIstio: "ingressgateway"}),
			pod("istio-ingress", "gateway", "b", "1-30", map[string]string{istio.LabelIstio: "ingressgateway"})},
		Services: []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "gateway", Namespace: "istio-ingress"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "gateway", istio.LabelIstio: "ingressgateway"}}}},
		Syncz: []mesh.IstiodSyncz{{Pod: "istiod-1-30-x", Revision: "1-30", Version: "1.30.0", Proxies: []istio.ProxySync{
			synced("shop", "web-h-a", "1.30.0"), synced("shop", "web-h-b", "1.30.0"),
			synced("istio-ingress", "gateway-h-a", "1.30.0"), synced("istio-ingress", "gateway-h-b", "1.30.0")}},
			{Pod: "istiod-1-31-x", Revision: "1-31", Version: "1.31.0"}},
	}
	raw.MutatingWebhooks = append(raw.MutatingWebhooks, tagWebhookCfg("default", "1-30"))
	in := &Input{Raw: raw, Target: "1-31", ServerVersion: "v1.36.3", CRDs: append([]string{}, requiredCRDs...),
		PDBs:        []policyv1.PodDisruptionBudget{pdb("shop", "web", 1), pdb("istio-ingress", "gateway", 1)},
		Gateways:    map[string]map[string]string{"istio-ingress/main": {istio.LabelIstio: "ingressgateway"}},
		RunningPods: raw.Pods}
	in.Snapshot = mesh.Build(*raw)
	return in
}

// tagWebhookCfg is a tag webhook that only matches namespaces selecting the tag by name.
func tagWebhookCfg(tag, rev string) admregv1.MutatingWebhookConfiguration {
	w := injectorWebhook("istio-revision-tag-"+tag, rev, []string{tag})
	w.Labels[istio.LabelTag] = tag
	return w
}

func codes(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Severity)+":"+f.Code)
	}
	return out
}

func TestCleanMeshHasNoFindings(t *testing.T) {
	fs := Run(clean(), All)
	if len(fs) != 1 || fs[0].Code != "ISTIOCTL_INSTALL" {
		t.Errorf("a clean mesh should only report how it was installed, got %v", codes(fs))
	}
}

func TestEachCheckFires(t *testing.T) {
	rebuild := func(in *Input) { in.Snapshot = mesh.Build(*in.Raw) }
	cases := []struct {
		code   string
		sev    Severity
		mutate func(in *Input)
	}{
		{"PERMISSIONS_MISSING", Error, func(in *Input) { in.MissingPermissions = []string{"patch namespaces"} }},
		{"K8S_VERSION_UNSUPPORTED", Error, func(in *Input) { in.ServerVersion = "v1.31.0" }},
		{"K8S_VERSION_UNKNOWN", Info, func(in *Input) { in.ServerVersion = "unknown-build" }},
		{"K8S_SUPPORT_UNKNOWN", Warning, func(in *Input) {
			in.Raw.IstiodDeployments[1] = istiod("1-31", "1.99.0", 2)
			rebuild(in)
		}},
		{"ISTIOD_NOT_READY", Error, func(in *Input) { in.Raw.IstiodDeployments[1].Status.ReadyReplicas = 1; rebuild(in) }},
		{"ISTIOD_SINGLE_REPLICA", Warning, func(in *Input) { in.Raw.IstiodDeployments[0] = istiod("1-30", "1.30.0", 1); rebuild(in) }},
		{"TARGET_NOT_INSTALLED", Error, func(in *Input) { in.Target = "1-32" }},
		{"TARGET_IS_TAG", Error, func(in *Input) { in.Target = "default" }},
		{"TARGET_NO_INJECTOR", Error, func(in *Input) {
			in.Raw.MutatingWebhooks = append(in.Raw.MutatingWebhooks[:1], in.Raw.MutatingWebhooks[2:]...)
			rebuild(in)
		}},
		{"TARGET_CONFIGMAP_MISSING", Error, func(in *Input) { in.Raw.ConfigMaps = in.Raw.ConfigMaps[:2]; rebuild(in) }},
		{"VERSION_SKEW", Warning, func(in *Input) { in.Raw.IstiodDeployments[1] = istiod("1-31", "1.28.0", 2); rebuild(in) }},
		{"CRDS_MISSING", Error, func(in *Input) { in.CRDs = in.CRDs[1:] }},
		{"ROOT_CA_MISMATCH", Error, func(in *Input) { in.Raw.ConfigMaps[1].Data["mesh"] = "trustDomain: other.local\n" }},
		{"TAG_DANGLING", Error, func(in *Input) {
			in.Raw.MutatingWebhooks = append(in.Raw.MutatingWebhooks, tagWebhookCfg("prod", "1-29"))
			rebuild(in)
		}},
		{"DEFAULT_VALIDATOR_DANGLING", Error, func(in *Input) { in.Raw.ValidatingWebhooks[0].Labels[istio.LabelRev] = "1-29" }},
		{"INJECTOR_OVERLAP", Error, func(in *Input) {
			in.Raw.MutatingWebhooks = append(in.Raw.MutatingWebhooks, injectorWebhook("istio-sidecar-injector-extra", "1-31", []string{"1-30"}))
		}},
		{"GATEWAY_FOLLOWS_TAG", Warning, func(in *Input) {
			in.Raw.MutatingWebhooks = append(in.Raw.MutatingWebhooks, tagWebhookCfg("prod", "1-30"))
			rebuild(in)
			in.GatewayAPI = []mesh.GatewayAPIGateway{{Namespace: "web", Name: "gw", Class: "istio", RevLabel: "prod"}, {Namespace: "web", Name: "pinned", Class: "istio", RevLabel: "1-30"}}
		}},
		{"NS_BOTH_LABELS", Warning, func(in *Input) { in.Raw.Namespaces[0].Labels[istio.LabelInjection] = "enabled"; rebuild(in) }},
		{"NS_UNKNOWN_REVISION", Error, func(in *Input) { in.Raw.Namespaces[0].Labels[istio.LabelRev] = "1-29"; rebuild(in) }},
		{"NS_NO_DEFAULT", Error, func(in *Input) {
			in.Raw.Namespaces[0].Labels = map[string]string{istio.LabelInjection: "enabled"}
			in.Raw.MutatingWebhooks = in.Raw.MutatingWebhooks[:2]
			rebuild(in)
		}},
		{"NS_LEGACY_INJECTION_LABEL", Warning, func(in *Input) {
			in.Raw.Namespaces[0].Labels = map[string]string{istio.LabelInjection: "enabled"}
			rebuild(in)
		}},
		{"NS_PROXY_MISMATCH", Warning, func(in *Input) { in.Raw.Namespaces[0].Labels[istio.LabelRev] = "1-31"; rebuild(in) }},
		{"SYNCZ_UNAVAILABLE", Warning, func(in *Input) { in.Raw.Syncz[1].Err = errString("connection refused"); rebuild(in) }},
		{"PROXY_NOT_SYNCED", Warning, func(in *Input) { in.Raw.Syncz[0].Proxies[0].Types["CDS"] = istio.StateStale; rebuild(in) }},
		{"PROXY_DISCONNECTED", Warning, func(in *Input) { in.Raw.Syncz[0].Proxies = in.Raw.Syncz[0].Proxies[1:]; rebuild(in) }},
		{"PROXY_VERSION_SKEW", Warning, func(in *Input) { in.Raw.Syncz[0].Proxies[0].Version = "1.28.1"; rebuild(in) }},
		{"SINGLE_REPLICA", Warning, func(in *Input) { in.Raw.Deployments[0].Spec.Replicas = ptr(int32(1)); rebuild(in) }},
		{"ROLLOUT_RECREATE", Error, func(in *Input) {
			in.Raw.Deployments[0].Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
		}},
		{"ROLLOUT_CANNOT_PROGRESS", Error, func(in *Input) { in.Raw.Deployments[0].Spec.Strategy.RollingUpdate.MaxSurge = ptr(intstr.FromInt32(0)) }},
		{"ROLLOUT_REDUCES_CAPACITY", Warning, func(in *Input) {
			in.Raw.Deployments[0].Spec.Strategy.RollingUpdate.MaxUnavailable = ptr(intstr.FromString("50%"))
		}},
		{"NO_READINESS_PROBE", Warning, func(in *Input) { in.Raw.Deployments[0].Spec.Template.Spec.Containers[0].ReadinessProbe = nil }},
		{"PDB_MISSING", Info, func(in *Input) { in.PDBs = in.PDBs[1:] }},
		{"PDB_BLOCKS_DISRUPTION", Warning, func(in *Input) { in.PDBs[0] = pdb("shop", "web", 0) }},
		{"HPA_MIN_ONE", Warning, func(in *Input) {
			in.HPAs = []autoscalingv2.HorizontalPodAutoscaler{{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
				Spec: autoscalingv2.HorizontalPodAutoscalerSpec{ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{Kind: "Deployment", Name: "web"}, MinReplicas: ptr(int32(1))}}}
		}},
		{"STATEFULSET_ON_DELETE", Warning, func(in *Input) {
			st := appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"}, Spec: appsv1.StatefulSetSpec{Replicas: ptr(int32(2)),
				UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}, Template: in.Raw.Deployments[0].Spec.Template}}
			st.Spec.Template.Labels = map[string]string{"app": "db"}
			in.Raw.StatefulSets = []appsv1.StatefulSet{st}
			in.PDBs = append(in.PDBs, pdb("shop", "db", 1))
			rebuild(in)
		}},
		{"GATEWAY_SINGLE_REPLICA", Warning, func(in *Input) { in.Raw.Deployments[1].Spec.Replicas = ptr(int32(1)); rebuild(in) }},
		{"GATEWAYS_MIXED_REVISIONS", Info, func(in *Input) {
			gw2 := *in.Raw.Deployments[1].DeepCopy()
			gw2.Name = "gateway-canary"
			gw2.Spec.Template.Labels[istio.LabelRev] = "1-31"
			in.Raw.Deployments = append(in.Raw.Deployments, gw2)
			rebuild(in)
		}},
		{"GATEWAY_SERVICE_PINS_REVISION", Warning, func(in *Input) { in.Raw.Services[0].Spec.Selector[istio.LabelRev] = "1-30" }},
		{"GATEWAY_SELECTS_NOTHING", Warning, func(in *Input) {
			in.Gateways["istio-ingress/main"] = map[string]string{istio.LabelIstio: "egressgateway"}
		}},
		{"HELM_INSTALL", Info, func(in *Input) { in.HelmReleases = []string{"istiod-1-30"} }},
		{"GITOPS_MANAGED", Warning, func(in *Input) {
			in.Raw.Namespaces[0].Labels["kustomize.toolkit.fluxcd.io/name"] = "apps"
			rebuild(in)
		}},
		{"ORPHAN_INJECTOR", Warning, func(in *Input) {
			in.Raw.MutatingWebhooks = append(in.Raw.MutatingWebhooks, injectorWebhook("istio-sidecar-injector-1-29", "1-29", []string{"1-29"}))
			rebuild(in)
		}},
	}
	for _, c := range cases {
		t.Run(c.code, func(t *testing.T) {
			in := clean()
			c.mutate(in)
			fs := Run(in, All)
			found := false
			for _, f := range fs {
				if f.Code == c.code {
					found = true
					if f.Severity != c.sev || f.Object == "" || f.Message == "" {
						t.Errorf("%s: %+v, want severity %s with object and message", c.code, f, c.sev)
					}
				}
			}
			if !found {
				t.Errorf("%s did not fire; got %v", c.code, codes(fs))
			}
		})
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestRollingParams(t *testing.T) {
	cases := []struct {
		replicas  int32
		unav, srg *intstr.IntOrString
		wantU     int
		wantS     int
	}{
		{4, nil, nil, 1, 1}, // 25% defaults: down 1, up 1
		{3, nil, nil, 0, 1}, // 25% of 3 rounds down to 0 / up to 1
		{10, ptr(intstr.FromString("50%")), ptr(intstr.FromInt32(0)), 5, 0},
		{2, ptr(intstr.FromInt32(0)), ptr(intstr.FromInt32(1)), 0, 1},
	}
	for _, c := range cases {
		d := app("x", "y", c.replicas)
		d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: c.unav, MaxSurge: c.srg}
		u, s := RollingParams(&d)
		if u != c.wantU || s != c.wantS {
			t.Errorf("replicas %d: got %d/%d, want %d/%d", c.replicas, u, s, c.wantU, c.wantS)
		}
	}
}

// One test per row of the Kubernetes support table.
func TestKubernetesSupportTable(t *testing.T) {
	for minor, rng := range k8sSupport {
		for k := rng[0] - 1; k <= rng[1]+1; k++ {
			in := clean()
			in.Raw.IstiodDeployments = []appsv1.Deployment{istiod("x", "1."+itoa(minor)+".0", 2)}
			in.Snapshot = mesh.Build(*in.Raw)
			in.ServerVersion = "v1." + itoa(k) + ".0"
			fs := KubernetesVersion(in)
			supported := k >= rng[0] && k <= rng[1]
			if supported != (len(fs) == 0) {
				t.Errorf("Istio 1.%d on Kubernetes 1.%d: findings %v, supported=%v", minor, k, codes(fs), supported)
			}
		}
	}
	if m, ok := minorOf("v1.36.3-dirty"); !ok || m != 36 {
		t.Errorf("minorOf: %d %v", m, ok)
	}
	if _, ok := minorOf("2.0"); ok {
		t.Error("minorOf accepts only 1.x")
	}
	for v, want := range map[string][2]int{"1.29.2-distroless": {29, 2}, "1.29": {29, 0}, "v1.30.11": {30, 11}} {
		if m, p, ok := patchOf(v); !ok || m != want[0] || p != want[1] {
			t.Errorf("patchOf(%q) = %d, %d, %v; want %v", v, m, p, ok, want)
		}
	}
	if _, _, ok := patchOf("latest"); ok {
		t.Error("patchOf accepts a tag without a version")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// Only a Gateway whose revision comes through a tag is at risk: one pinned to a revision is not, and one
// with no label follows its namespace, else the default tag.
func TestGatewayAPIFollowsTag(t *testing.T) {
	in := clean() // the default tag points at 1-30
	in.GatewayAPI = []mesh.GatewayAPIGateway{
		{Namespace: "web", Name: "pinned", Class: "istio", RevLabel: "1-30"},
		{Namespace: "nowhere", Name: "unlabelled", Class: "istio"},
	}
	fs := GatewayAPIFollowsTag(in)
	if len(fs) != 1 || fs[0].Object != "gateway/nowhere/unlabelled" || !strings.Contains(fs[0].Message, "tag default") ||
		!strings.Contains(fs[0].Fix, "migrate-gw gateway/unlabelled -n nowhere --to 1-30") {
		t.Errorf("findings %+v", fs)
	}
}

// A workload serving a Service without a preStop hook drops the requests already on their way to a
// pod a restart deletes; one with a hook, or serving no Service, is fine.
func TestGracefulShutdown(t *testing.T) {
	tmpl := func(hook bool) *corev1.PodTemplateSpec {
		p := &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web"}}}}
		if hook {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}}
		}
		return p
	}
	svc := []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}}}
	if fs := GracefulShutdown("deployment/shop/web", "shop", tmpl(false), svc); len(fs) != 1 || fs[0].Code != "NO_GRACEFUL_SHUTDOWN" || !strings.Contains(fs[0].Message, "Service web") {
		t.Errorf("no hook: %+v", fs)
	}
	if fs := GracefulShutdown("deployment/shop/web", "shop", tmpl(true), svc); len(fs) != 0 {
		t.Errorf("with a preStop hook: %+v", fs)
	}
	if fs := GracefulShutdown("deployment/other/web", "other", tmpl(false), svc); len(fs) != 0 {
		t.Errorf("serving no Service: %+v", fs)
	}
}
