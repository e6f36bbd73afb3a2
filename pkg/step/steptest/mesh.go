package steptest

import (
	admregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
)

// Versions are the Istio versions of the two revisions of Mesh.
var Versions = map[string]string{"1-30": "1.30.0", "1-31": "1.31.0"}

// Mesh is a cluster mid-upgrade, as istioctl leaves it: revisions 1-30 (the default tag and the default
// validator) and 1-31 beside it, each with an injector, mesh ConfigMap, Service and one ready istiod;
// namespace shop on 1-30 with Deployment web (2 pods injected by 1-30); the ingress gateway Deployment
// istio-ingress/istio-ingressgateway on 1-30 (2 pods) behind its Service.
func Mesh() []runtime.Object {
	objs := []runtime.Object{Namespace("istio-system", nil)}
	for _, rev := range []string{"1-30", "1-31"} {
		labels := map[string]string{"app": "istiod", istio.LabelRev: rev}
		d := Deployment("istio-system", "istiod-"+rev, 1, labels, nil)
		d.Labels = labels
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "discovery", Image: "docker.io/istio/pilot:" + Versions[rev]}}
		objs = append(objs, d,
			&corev1.Pod{TypeMeta: meta("v1", "Pod"), ObjectMeta: metav1.ObjectMeta{Name: "istiod-" + rev + "-abc", Namespace: "istio-system", Labels: labels},
				Status: corev1.PodStatus{Phase: corev1.PodRunning}},
			&corev1.Service{TypeMeta: meta("v1", "Service"), ObjectMeta: metav1.ObjectMeta{Name: "istiod-" + rev, Namespace: "istio-system", Labels: labels},
				Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "grpc-xds", Port: 15012}}}},
			&corev1.ConfigMap{TypeMeta: meta("v1", "ConfigMap"), ObjectMeta: metav1.ObjectMeta{Name: "istio-" + rev, Namespace: "istio-system", Labels: map[string]string{istio.LabelRev: rev}}},
			&admregv1.MutatingWebhookConfiguration{TypeMeta: meta("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
				ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector-" + rev, Labels: map[string]string{istio.LabelRev: rev}}},
		)
	}
	objs = append(objs,
		&admregv1.MutatingWebhookConfiguration{TypeMeta: meta("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
			ObjectMeta: metav1.ObjectMeta{Name: "istio-revision-tag-default", Labels: map[string]string{istio.LabelRev: "1-30", istio.LabelTag: "default"}}},
		&admregv1.ValidatingWebhookConfiguration{TypeMeta: meta("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
			ObjectMeta: metav1.ObjectMeta{Name: istio.DefaultValidatorName, Labels: map[string]string{istio.LabelRev: "1-30"}}},
		Namespace("shop", map[string]string{istio.LabelRev: "1-30"}),
		Deployment("shop", "web", 2, nil, nil),
		Pod("shop", "web", "a", "1-30"), Pod("shop", "web", "b", "1-30"),
		Namespace("istio-ingress", nil),
	)
	gw := Deployment("istio-ingress", "istio-ingressgateway", 2,
		map[string]string{istio.LabelIstio: "ingressgateway", istio.LabelRev: "1-30"}, map[string]string{istio.AnnotationTemplates: "gateway"})
	gw.Spec.Template.Spec.Containers = []corev1.Container{{Name: istio.ProxyContainer, Image: "auto"}}
	gwPods := []*corev1.Pod{Pod("istio-ingress", "istio-ingressgateway", "a", "1-30"), Pod("istio-ingress", "istio-ingressgateway", "b", "1-30")}
	for _, p := range gwPods {
		p.Labels[istio.LabelIstio] = "ingressgateway" // what its Service selects
	}
	objs = append(objs, gw, gwPods[0], gwPods[1],
		&corev1.Service{TypeMeta: meta("v1", "Service"), ObjectMeta: metav1.ObjectMeta{Name: "istio-ingressgateway", Namespace: "istio-ingress"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{istio.LabelIstio: "ingressgateway"}, Ports: []corev1.ServicePort{{Name: "http2", Port: 80}}}},
	)
	return objs
}

// Without returns objs less those named kind/namespace/name.
func Without(objs []runtime.Object, drop ...string) []runtime.Object {
	var out []runtime.Object
	for _, o := range objs {
		m := o.(metav1.Object)
		key := o.GetObjectKind().GroupVersionKind().Kind + "/" + m.GetNamespace() + "/" + m.GetName()
		keep := true
		for _, d := range drop {
			if d == key {
				keep = false
			}
		}
		if keep {
			out = append(out, o)
		}
	}
	return out
}

func meta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// Namespace with labels.
func Namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{TypeMeta: meta("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// Deployment with its rollout complete (the pods of Pod(ns, name, …) are its pods).
func Deployment(ns, name string, replicas int32, tmplLabels, tmplAnn map[string]string) *appsv1.Deployment {
	l := map[string]string{"app": name}
	for k, v := range tmplLabels {
		l[k] = v
	}
	return &appsv1.Deployment{TypeMeta: meta("apps/v1", "Deployment"),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: 1},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: l, Annotations: tmplAnn},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: replicas, UpdatedReplicas: replicas, ReadyReplicas: replicas, AvailableReplicas: replicas},
	}
}

// Pod of Deployment deploy, running and ready, injected by rev ("" = no sidecar).
func Pod(ns, deploy, suffix, rev string) *corev1.Pod {
	p := &corev1.Pod{TypeMeta: meta("v1", "Pod"), ObjectMeta: metav1.ObjectMeta{
		Name: deploy + "-hash1-" + suffix, Namespace: ns,
		Labels:          map[string]string{"app": deploy, "pod-template-hash": "hash1"},
		Annotations:     map[string]string{},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: deploy + "-hash1", Controller: ptr.To(true)}},
	}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	if rev != "" {
		p.Labels[istio.LabelRev] = rev
		p.Annotations[istio.AnnotationStatus] = `{"containers":["istio-proxy"],"revision":"` + rev + `"}`
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: istio.ProxyContainer, Image: "docker.io/istio/proxyv2:" + Versions[rev]})
	}
	return p
}

// Nodes are the nodes of Ambient.
var Nodes = []string{"node-0", "node-1", "node-2"}

// Ambient is Mesh plus ambient mode on revision 1-30 as Istio's charts install it: DaemonSets
// istio-cni-node and ztunnel (pointed at istiod-1-30) with a pod on each of Nodes, and namespace
// bookinfo (istio.io/dataplane-mode=ambient) with one ready pod of Deployment reviews per node.
func Ambient() []runtime.Object {
	objs := Mesh()
	for _, n := range Nodes {
		objs = append(objs, &corev1.Node{TypeMeta: meta("v1", "Node"), ObjectMeta: metav1.ObjectMeta{Name: n}})
	}
	objs = append(objs, Namespace("bookinfo", map[string]string{istio.LabelDataplaneMode: istio.DataplaneAmbient}),
		Deployment("bookinfo", "reviews", int32(len(Nodes)), nil, nil))
	for i, n := range Nodes {
		p := Pod("bookinfo", "reviews", string(rune('a'+i)), "")
		p.Spec.NodeName = n
		objs = append(objs, p)
	}
	for _, ds := range []struct{ name, container, image string }{
		{istio.CNIDaemonSet, "install-cni", "docker.io/istio/install-cni:1.30.0-distroless"},
		{istio.ZtunnelDaemonSet, istio.ProxyContainer, "docker.io/istio/ztunnel:1.30.0"},
	} {
		tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": ds.name}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: ds.container, Image: ds.image}}}}
		d := &appsv1.DaemonSet{TypeMeta: meta("apps/v1", "DaemonSet"), ObjectMeta: metav1.ObjectMeta{Name: ds.name, Namespace: "istio-system"},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": ds.name}}, Template: tmpl,
				UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType}},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: int32(len(Nodes)), NumberReady: int32(len(Nodes))}}
		if ds.name == istio.ZtunnelDaemonSet {
			d.Annotations = map[string]string{istio.LabelRev: "1-30"}
			d.Spec.Template.Annotations = map[string]string{istio.LabelRev: "1-30"}
			d.Spec.Template.Spec.Containers[0].Args = []string{"proxy", "ztunnel"}
			d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{
				{Name: "CA_ADDRESS", Value: "istiod-1-30.istio-system.svc:15012"}, {Name: istio.EnvXDSAddress, Value: "istiod-1-30.istio-system.svc:15012"}}
		} else {
			d.Labels = map[string]string{istio.LabelRev: "1-30"}
		}
		objs = append(objs, d)
		for _, n := range Nodes {
			objs = append(objs, &corev1.Pod{TypeMeta: meta("v1", "Pod"), ObjectMeta: metav1.ObjectMeta{
				Name: ds.name + "-" + n, Namespace: "istio-system", Labels: map[string]string{"app": ds.name, appsv1.DefaultDaemonSetUniqueLabelKey: "old"},
				Annotations:     d.Spec.Template.Annotations,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.name, Controller: ptr.To(true)}}},
				Spec:   *d.Spec.Template.Spec.DeepCopy(),
				Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}})
			objs[len(objs)-1].(*corev1.Pod).Spec.NodeName = n
		}
	}
	return objs
}

func sel(reqs ...metav1.LabelSelectorRequirement) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: reqs}
}

func req(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: values}
}

// Injector mirrors istio-sidecar-injector-<rev> as istioctl installs it.
func Injector(rev string) *admregv1.MutatingWebhookConfiguration {
	url := "https://istiod-" + rev + ".istio-system.svc:443/inject"
	cc := admregv1.WebhookClientConfig{URL: &url, CABundle: []byte("ca-" + rev)}
	return &admregv1.MutatingWebhookConfiguration{
		TypeMeta:   meta("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
		ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector-" + rev, Labels: map[string]string{"app": "sidecar-injector", istio.LabelRev: rev, "istio.io/owned-by": "x"}},
		Webhooks: []admregv1.MutatingWebhook{
			{Name: "rev.namespace.sidecar-injector.istio.io", ClientConfig: cc,
				NamespaceSelector: sel(req(istio.LabelRev, metav1.LabelSelectorOpIn, rev), req(istio.LabelInjection, metav1.LabelSelectorOpDoesNotExist)),
				ObjectSelector:    sel(req(istio.LabelSidecarInject, metav1.LabelSelectorOpNotIn, "false"))},
			{Name: "rev.object.sidecar-injector.istio.io", ClientConfig: cc,
				NamespaceSelector: sel(req(istio.LabelRev, metav1.LabelSelectorOpDoesNotExist), req(istio.LabelInjection, metav1.LabelSelectorOpDoesNotExist)),
				ObjectSelector:    sel(req(istio.LabelSidecarInject, metav1.LabelSelectorOpNotIn, "false"), req(istio.LabelRev, metav1.LabelSelectorOpIn, rev))},
		},
	}
}
