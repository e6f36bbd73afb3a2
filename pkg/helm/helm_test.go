package helm

import (
	"testing"

	"k8s.io/client-go/kubernetes/fake"
)

func TestListReadsIstioReleases(t *testing.T) {
	k := fake.NewClientset()
	for _, r := range []struct {
		rel    Release
		values map[string]any
	}{
		{Release{Name: "istio-base", Namespace: "istio-system", Chart: "base", Version: "1.30.0"}, map[string]any{"defaultRevision": "default"}},
		{Release{Name: "istiod", Namespace: "istio-system", Chart: "istiod", Version: "1.30.0"}, nil},
		{Release{Name: "istiod-canary", Namespace: "istio-system", Chart: "istiod", Version: "1.31.0"}, map[string]any{"revision": "canary"}},
		{Release{Name: "istio-ingress", Namespace: "istio-ingress", Chart: "gateway", Version: "1.30.0"}, nil},
		{Release{Name: "postgres", Namespace: "db", Chart: "postgresql", Version: "12.0.0"}, nil},
	} {
		if err := Record(k, r.rel, r.values); err != nil {
			t.Fatal(err)
		}
	}
	got, err := List(k, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("want Istio's 4 releases, not other charts: %+v", got)
	}
	by := map[string]Release{}
	for _, r := range got {
		by[r.Name] = r
	}
	if b := by["istio-base"]; !b.Base() || b.DefaultRevision != "default" {
		t.Errorf("base: %+v", b)
	}
	if d := by["istiod"]; !d.Istiod() || d.IstioRevision != "" {
		t.Errorf("non-revisioned istiod: %+v", d)
	}
	if d := by["istiod-canary"]; d.IstioRevision != "canary" || d.Version != "1.31.0" {
		t.Errorf("canary: %+v", d)
	}
	if g := by["istio-ingress"]; !g.Gateway() || g.Namespace != "istio-ingress" {
		t.Errorf("gateway: %+v", g)
	}
	if only, _ := List(k, "istio-ingress"); len(only) != 1 {
		t.Errorf("one namespace: %+v", only)
	}
}
