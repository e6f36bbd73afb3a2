package mesh

import (
	admregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
)

// Test fixtures: a cluster mid-upgrade with revisions 1-30 (default tag) and 1-31 (tag canary).

func ptr[T any](v T) *T { return &v }

func istiodDeploy(rev, version string, ready int32) appsv1.Deployment {
	return appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "istiod-" + rev, Namespace: "istio-system", Labels: map[string]string{"app": "istiod", istio.LabelRev: rev}},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(1)), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "istiod", istio.LabelRev: rev}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: "docker.io/istio/pilot:" + version}}},
		}},
		Status: appsv1.DeploymentStatus{ReadyReplicas: ready},
	}
}

func istiodPod(rev string) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "istiod-" + rev + "-abc", Namespace: "istio-system", Labels: map[string]string{"app": "istiod", istio.LabelRev: rev}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
}

func injector(rev string) admregv1.MutatingWebhookConfiguration {
	return admregv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector-" + rev, Labels: map[string]string{istio.LabelRev: rev}}}
}

func tagWebhook(tag, rev string) admregv1.MutatingWebhookConfiguration {
	return admregv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-revision-tag-" + tag, Labels: map[string]string{istio.LabelRev: rev, istio.LabelTag: tag}}}
}

func ns(name string, labels map[string]string) corev1.Namespace {
	return corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func deploy(ns, name string, replicas int32, tmplLabels, tmplAnn map[string]string) appsv1.Deployment {
	if tmplLabels == nil {
		tmplLabels = map[string]string{}
	}
	tmplLabels["app"] = name
	return appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(replicas), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: tmplLabels, Annotations: tmplAnn},
		}},
		Status: appsv1.DeploymentStatus{ReadyReplicas: replicas},
	}
}

// pod of a Deployment, injected by rev ("" = no sidecar).
func pod(ns, deployName, suffix, rev string) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: deployName + "-hash1-" + suffix, Namespace: ns,
		Labels:          map[string]string{"app": deployName, "pod-template-hash": "hash1"},
		Annotations:     map[string]string{},
		OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: deployName + "-hash1", Controller: ptr(true)}},
	}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if rev != "" {
		p.Annotations[istio.AnnotationStatus] = `{"containers":["istio-proxy"],"revision":"` + rev + `"}`
		p.Spec.Containers = []corev1.Container{{Name: "app"}, {Name: istio.ProxyContainer, Image: "docker.io/istio/proxyv2:" + map[string]string{"1-30": "1.30.0", "1-31": "1.31.0"}[rev]}}
	}
	return p
}

func midUpgrade() Inputs {
	return Inputs{
		IstioNamespace:     "istio-system",
		IstiodDeployments:  []appsv1.Deployment{istiodDeploy("1-30", "1.30.0", 1), istiodDeploy("1-31", "1.31.0", 1)},
		IstiodPods:         []corev1.Pod{istiodPod("1-30"), istiodPod("1-31")},
		MutatingWebhooks:   []admregv1.MutatingWebhookConfiguration{injector("1-30"), injector("1-31"), tagWebhook("default", "1-30"), tagWebhook("canary", "1-31")},
		ValidatingWebhooks: []admregv1.ValidatingWebhookConfiguration{{ObjectMeta: metav1.ObjectMeta{Name: istio.DefaultValidatorName, Labels: map[string]string{istio.LabelRev: "1-30"}}}},
		ConfigMaps: []corev1.ConfigMap{
			{ObjectMeta: metav1.ObjectMeta{Name: "istio-1-30", Namespace: "istio-system", Labels: map[string]string{istio.LabelRev: "1-30"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "istio-1-31", Namespace: "istio-system", Labels: map[string]string{istio.LabelRev: "1-31"}}},
		},
		Namespaces: []corev1.Namespace{
			ns("legacy", map[string]string{istio.LabelInjection: "enabled"}),                       // → default tag → 1-30
			ns("moved", map[string]string{istio.LabelRev: "1-31"}),                                 // direct
			ns("tagged", map[string]string{istio.LabelRev: "canary"}),                              // → tag canary → 1-31
			ns("both", map[string]string{istio.LabelInjection: "enabled", istio.LabelRev: "1-31"}), // IST0123
			ns("dangling", map[string]string{istio.LabelRev: "1-29"}),                              // names nothing
			ns("plain", nil),
		},
		Deployments: []appsv1.Deployment{
			deploy("legacy", "web", 2, nil, nil),
			deploy("moved", "api", 2, nil, nil),
			deploy("moved", "batch", 1, map[string]string{istio.LabelSidecarInject: "false"}, nil),
			deploy("tagged", "db", 1, nil, nil),
			deploy("plain", "gw", 2, map[string]string{istio.LabelRev: "1-30", istio.LabelIstio: "ingressgateway"}, map[string]string{istio.AnnotationTemplates: "gateway"}),
		},
		Pods: []corev1.Pod{
			pod("legacy", "web", "a", "1-30"), pod("legacy", "web", "b", "1-30"),
			pod("moved", "api", "a", "1-31"), pod("moved", "api", "b", "1-30"), // half restarted
			pod("moved", "batch", "a", ""),
			pod("tagged", "db", "a", "1-30"), // tag moved to 1-31, pod not restarted yet
			pod("plain", "gw", "a", "1-30"), pod("plain", "gw", "b", "1-30"),
		},
		Services: []corev1.Service{
			{ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: "plain"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "gw"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "plain"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "nope"}}},
		},
		Syncz: []IstiodSyncz{
			{Pod: "istiod-1-30-abc", Revision: "1-30", Version: "1.30.0", Proxies: []istio.ProxySync{
				proxySync("web-hash1-a.legacy", "1.30.0", istio.StateSynced), proxySync("web-hash1-b.legacy", "1.30.0", istio.StateSynced),
				proxySync("api-hash1-b.moved", "1.30.0", istio.StateSynced), proxySync("db-hash1-a.tagged", "1.30.0", istio.StateStale),
				proxySync("gw-hash1-a.plain", "1.30.0", istio.StateSynced), proxySync("gw-hash1-b.plain", "1.30.0", istio.StateSynced),
			}},
			{Pod: "istiod-1-31-abc", Revision: "1-31", Version: "1.31.0", Proxies: []istio.ProxySync{
				proxySync("api-hash1-a.moved", "1.31.0", istio.StateSynced),
			}},
		},
	}
}

func proxySync(id, version, state string) istio.ProxySync {
	_, _, p, n := istio.ParseNodeID(id)
	return istio.ProxySync{ID: id, Pod: p, Namespace: n, Version: version,
		Types: map[string]string{"CDS": state, "LDS": istio.StateSynced, "EDS": istio.StateSynced, "RDS": istio.StateNotSent}}
}
