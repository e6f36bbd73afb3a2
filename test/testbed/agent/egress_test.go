package main

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// A webhook call to an istiod Service's ClusterIP reaches the local istiod of the revision it selects
// (the non-revisioned one is "default"); anything else is dialled as asked.
func TestEgressRoute(t *testing.T) {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	svc := func(name, ip string, sel map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system"},
			Spec: corev1.ServiceSpec{ClusterIP: ip, Selector: sel, Ports: []corev1.ServicePort{
				{Port: 443, TargetPort: intstr.FromInt32(15017)}, {Port: 15012, TargetPort: intstr.FromInt32(15012)}}}}
	}
	for _, s := range []*corev1.Service{
		svc("istiod", "10.96.0.10", map[string]string{"app": "istiod", "istio.io/rev": "default"}),
		svc("istiod-canary", "10.96.0.11", map[string]string{"app": "istiod", "istio.io/rev": "canary"}),
		svc("other", "10.96.0.12", map[string]string{"app": "web"}),
	} {
		_ = idx.Add(s)
	}
	ports, err := loadPorts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &egress{ns: "istio-system", ports: ports, services: listersv1.NewServiceLister(idx)}
	for in, want := range map[string]string{
		"10.96.0.10:443":   addr(ports.get("default").HTTPS),
		"10.96.0.11:443":   addr(ports.get("canary").HTTPS),
		"10.96.0.11:15012": addr(ports.get("canary").SecureGRPC),
		"10.96.0.12:443":   "10.96.0.12:443",
		"127.0.0.1:10250":  "127.0.0.1:10250",
	} {
		if got := e.route(in); got != want {
			t.Errorf("route(%s) = %s, want %s", in, got, want)
		}
	}
}
