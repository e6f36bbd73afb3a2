package mesh

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// TestReadWithFakeClient checks that Read lists every input it needs (without syncz, which fakes cannot serve).
func TestReadWithFakeClient(t *testing.T) {
	in := midUpgrade()
	var objs []runtime.Object
	for i := range in.IstiodDeployments {
		objs = append(objs, &in.IstiodDeployments[i])
	}
	for i := range in.IstiodPods {
		objs = append(objs, &in.IstiodPods[i])
	}
	for i := range in.MutatingWebhooks {
		objs = append(objs, &in.MutatingWebhooks[i])
	}
	for i := range in.ValidatingWebhooks {
		objs = append(objs, &in.ValidatingWebhooks[i])
	}
	for i := range in.ConfigMaps {
		objs = append(objs, &in.ConfigMaps[i])
	}
	for i := range in.Namespaces {
		objs = append(objs, &in.Namespaces[i])
	}
	for i := range in.Deployments {
		objs = append(objs, &in.Deployments[i])
	}
	for i := range in.Pods {
		objs = append(objs, &in.Pods[i])
	}
	for i := range in.Services {
		objs = append(objs, &in.Services[i])
	}
	c := &kube.Clients{Kube: fake.NewClientset(objs...)}
	s, err := Read(context.Background(), c, ReadOptions{IstioNamespace: "istio-system"})
	if err != nil {
		t.Fatal(err)
	}
	in.Syncz = nil
	want := Build(in)
	if len(s.Revisions) != len(want.Revisions) || len(s.Namespaces) != len(want.Namespaces) || len(s.Workloads) != len(want.Workloads) ||
		len(s.Gateways) != 1 || len(s.Tags) != 2 || s.ProxiesRead {
		t.Errorf("Read = %d revisions %d namespaces %d workloads %d gateways %d tags (proxiesRead %v); want %d %d %d 1 2 false",
			len(s.Revisions), len(s.Namespaces), len(s.Workloads), len(s.Gateways), len(s.Tags), s.ProxiesRead,
			len(want.Revisions), len(want.Namespaces), len(want.Workloads))
	}
	// Scoped to one namespace.
	s, err = Read(context.Background(), c, ReadOptions{IstioNamespace: "istio-system", Namespace: "moved"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Namespaces) != 1 || len(s.Workloads) != 2 || len(s.Revisions) != 2 {
		t.Errorf("-n moved: %d namespaces, %d workloads, %d revisions", len(s.Namespaces), len(s.Workloads), len(s.Revisions))
	}
	if _, err := Read(context.Background(), c, ReadOptions{IstioNamespace: "istio-system", Namespace: "nope"}); err == nil {
		t.Error("reading a missing namespace must fail")
	}
}
