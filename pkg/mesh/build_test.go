package mesh

import (
	"encoding/json"
	"errors"
	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"strings"
	"testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/golden"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
)

func findNS(t *testing.T, s *Snapshot, name string) Namespace {
	t.Helper()
	for _, n := range s.Namespaces {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("namespace %s not in snapshot", name)
	return Namespace{}
}

func findWL(t *testing.T, s *Snapshot, key string) Workload {
	t.Helper()
	for _, w := range s.Workloads {
		if w.Key() == key {
			return w
		}
	}
	t.Fatalf("workload %s not in snapshot", key)
	return Workload{}
}

func TestNamespaceResolution(t *testing.T) {
	s := Build(midUpgrade())
	cases := []struct {
		ns, rev, via string
		conflicts    int
	}{
		{"legacy", "1-30", "default", 0},
		{"moved", "1-31", "", 0},
		{"tagged", "1-31", "canary", 0},
		{"both", "1-30", "default", 1}, // istio-injection wins, flagged
		{"dangling", "", "", 1},
		{"plain", "", "", 0},
	}
	for _, c := range cases {
		n := findNS(t, s, c.ns)
		if n.Revision != c.rev || n.Via != c.via || len(n.Conflicts) != c.conflicts {
			t.Errorf("%s: revision %q via %q conflicts %v; want %q via %q with %d conflicts", c.ns, n.Revision, n.Via, n.Conflicts, c.rev, c.via, c.conflicts)
		}
	}
	if c := findNS(t, s, "both").Conflicts[0]; !strings.Contains(c, "IST0123") {
		t.Errorf("both-labels conflict should name IST0123: %q", c)
	}
}

func TestNoDefaultRevision(t *testing.T) {
	in := midUpgrade()
	in.MutatingWebhooks = in.MutatingWebhooks[:2] // no tags at all
	s := Build(in)
	n := findNS(t, s, "legacy")
	if n.Revision != "" || len(n.Conflicts) != 1 || !strings.Contains(n.Conflicts[0], "no default revision") {
		t.Errorf("istio-injection=enabled without a default: %+v", n)
	}
	for _, r := range s.Revisions {
		if r.Default {
			t.Errorf("revision %s marked default without a default tag", r.Name)
		}
	}
}

func TestDesiredVsInjected(t *testing.T) {
	s := Build(midUpgrade())
	cases := []struct {
		key, desired string
		injected     []string
		restart      bool
	}{
		{"legacy/deployment/web", "1-30", []string{"1-30"}, false},
		{"moved/deployment/api", "1-31", []string{"1-30", "1-31"}, true},
		{"moved/deployment/batch", "", []string{""}, false}, // opts out
		{"tagged/deployment/db", "1-31", []string{"1-30"}, true},
		{"plain/deployment/gw", "1-30", []string{"1-30"}, false}, // pod label selects the revision
	}
	for _, c := range cases {
		w := findWL(t, s, c.key)
		if w.DesiredRevision != c.desired || strings.Join(w.InjectedRevisions, ",") != strings.Join(c.injected, ",") || w.NeedsRestart != c.restart {
			t.Errorf("%s: desired %q injected %v restart %v; want %q %v %v", c.key, w.DesiredRevision, w.InjectedRevisions, w.NeedsRestart, c.desired, c.injected, c.restart)
		}
	}
	if !findWL(t, s, "moved/deployment/batch").OptOut {
		t.Error("batch should be marked as opting out of injection")
	}
	if n := findNS(t, s, "moved"); n.NeedsRestart != 1 || n.Workloads != 2 || n.Pods != 3 {
		t.Errorf("moved namespace counts: %+v", n)
	}
}

func TestRevisionsAndTags(t *testing.T) {
	s := Build(midUpgrade())
	if len(s.Revisions) != 2 {
		t.Fatalf("revisions: %+v", s.Revisions)
	}
	r30, r31 := s.Revisions[0], s.Revisions[1]
	if r30.Name != "1-30" || r30.Version != "1.30.0" || !r30.Default || !r30.DefaultValidator || strings.Join(r30.Tags, ",") != "default" {
		t.Errorf("1-30: %+v", r30)
	}
	if r31.Name != "1-31" || r31.Version != "1.31.0" || r31.Default || strings.Join(r31.Tags, ",") != "canary" || r31.InjectorWebhook != "istio-sidecar-injector-1-31" {
		t.Errorf("1-31: %+v", r31)
	}
	if len(s.Gateways) != 1 || s.Gateways[0].Revision != "1-30" || strings.Join(s.Gateways[0].Services, ",") != "gw" || strings.Join(s.Gateways[0].Versions, ",") != "1.30.0" {
		t.Errorf("gateways: %+v", s.Gateways)
	}
}

func TestMultiRevisionSynczMerge(t *testing.T) {
	in := midUpgrade()
	in.Syncz = append(in.Syncz, IstiodSyncz{Pod: "istiod-1-31-def", Revision: "1-31", Err: errors.New("connection refused")})
	s := Build(in)
	if len(s.Proxies) != 7 {
		t.Fatalf("want the 7 proxies of both istiods merged, got %d", len(s.Proxies))
	}
	per := map[string]int{}
	for _, p := range s.Proxies {
		per[p.Revision+"/"+p.Istiod]++
	}
	if per["1-30/istiod-1-30-abc"] != 6 || per["1-31/istiod-1-31-abc"] != 1 {
		t.Errorf("proxies per revision/istiod: %v", per)
	}
	for _, p := range s.Proxies {
		if p.Pod == "api-hash1-a" && (p.Workload != "deployment/api" || p.Revision != "1-31" || p.Type != "sidecar") {
			t.Errorf("api-hash1-a: %+v", p)
		}
		if p.Pod == "gw-hash1-a" && p.Type != "router" {
			t.Errorf("a gateway's proxy is a router: %+v", p)
		}
		if p.Pod == "db-hash1-a" && p.State != "STALE" {
			t.Errorf("db proxy state %s, want STALE", p.State)
		}
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "istiod-1-31-def") {
		t.Errorf("an istiod that failed syncz must be a warning: %v", s.Warnings)
	}
	// -n limits proxies and namespaces, not revisions.
	in.Namespace = "moved"
	s = Build(in)
	if len(s.Proxies) != 2 || len(s.Namespaces) != 1 || len(s.Revisions) != 2 {
		t.Errorf("-n moved: %d proxies, %d namespaces, %d revisions", len(s.Proxies), len(s.Namespaces), len(s.Revisions))
	}
}

func TestSnapshotGolden(t *testing.T) {
	s := Build(midUpgrade())
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "snapshot.json", append(b, '\n'))
}

// Istio's charts stamp chart and operator labels on what istioctl and helm install alike; only helm's
// release annotation says a release owns the object.
func TestIsHelmOwned(t *testing.T) {
	chart := map[string]string{"app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "istiod-1.0.0",
		"operator.istio.io/component": "Pilot", "install.operator.istio.io/owning-resource": "unknown"}
	release := map[string]string{"meta.helm.sh/release-name": "istiod", "meta.helm.sh/release-namespace": "istio-system"}
	for _, c := range []struct {
		name        string
		labels, ann map[string]string
		want        bool
	}{
		{"helm install of Istio's chart", chart, release, true},
		{"istioctl install of the same chart", chart, nil, false},
		{"a chart of Helm before 3.2 (labels only)", map[string]string{"app.kubernetes.io/managed-by": "Helm"}, nil, true},
		{"plain manifest", map[string]string{"app": "x"}, nil, false},
	} {
		if got := IsHelmOwned(c.labels, c.ann); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// A gateway istiod deployed for a Gateway API Gateway is not injected (sidecar.istio.io/inject=false,
// its proxy rendered by istiod): its revision is the istio.io/rev istiod labels its pods with, and the
// snapshot names the Gateway it serves.
func TestGatewayAPIGatewayRevision(t *testing.T) {
	in := midUpgrade()
	in.Deployments = append(in.Deployments, deploy("web", "bookinfo-gateway-istio", 1, map[string]string{
		"gateway.networking.k8s.io/gateway-name": "bookinfo-gateway", "gateway.istio.io/managed": "istio.io-gateway-controller",
		istio.LabelRev: "1-30", istio.LabelSidecarInject: "false",
	}, map[string]string{istio.AnnotationTemplates: "gateway"}))
	s := Build(in)
	for _, g := range s.Gateways {
		if g.Name == "bookinfo-gateway-istio" {
			if g.Revision != "1-30" || g.GatewayAPI != "web/bookinfo-gateway" {
				t.Errorf("gateway %+v: want revision 1-30 for Gateway web/bookinfo-gateway", g)
			}
			return
		}
	}
	t.Errorf("the Gateway API gateway is not in the snapshot: %+v", s.Gateways)
}

// An unlabelled Gateway's pods carry istiod's revision only as the istio.io/rev annotation.
func TestGatewayAPIGatewayRevisionFromAnnotation(t *testing.T) {
	in := midUpgrade()
	in.Deployments = append(in.Deployments, deploy("web", "edge-istio", 1, map[string]string{
		"gateway.networking.k8s.io/gateway-name": "edge", "gateway.istio.io/managed": "istio.io-gateway-controller",
		istio.LabelSidecarInject: "false"}, map[string]string{istio.LabelRev: "1-31"}))
	for _, g := range Build(in).Gateways {
		if g.Name == "edge-istio" && g.Revision != "1-31" {
			t.Errorf("gateway %+v: want revision 1-31 from the pod template's annotation", g)
		}
	}
}

// Another control plane in namespace istio-b, with revisions of the same names: its injector and tag
// webhooks call istiod in istio-b and are not this control plane's (--istio-namespace istio-system).
func TestWebhooksOfAnotherIstioNamespace(t *testing.T) {
	in := midUpgrade()
	other := func(w admregv1.MutatingWebhookConfiguration) admregv1.MutatingWebhookConfiguration {
		w.Name += "-istio-b"
		w.Webhooks = []admregv1.MutatingWebhook{{Name: "x", ClientConfig: admregv1.WebhookClientConfig{Service: &admregv1.ServiceReference{Namespace: "istio-b", Name: "istiod"}}}}
		return w
	}
	in.MutatingWebhooks = append(in.MutatingWebhooks, other(injector("1-29")), other(tagWebhook("stable", "1-29")))
	s := Build(in)
	for _, r := range s.Revisions {
		if r.Name == "1-29" {
			t.Errorf("istio-b's injector makes a revision here: %+v", r)
		}
	}
	for _, tg := range s.Tags {
		if tg.Name == "stable" {
			t.Errorf("istio-b's tag is listed here: %+v", tg)
		}
	}
}

// Injected pods outside every workload are listed with the step that moves them: a Job's, a bare
// ReplicaSet's, one without a controller; a pod without a proxy is not.
func TestUnmanagedPods(t *testing.T) {
	in := midUpgrade()
	pod := func(name, owner, rev string) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "moved", Annotations: map[string]string{}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}
		if kind, n, ok := strings.Cut(owner, "/"); ok {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: kind, Name: n, Controller: ptr(true)}}
		}
		if rev != "" {
			p.Annotations[istio.AnnotationStatus] = `{"revision":"` + rev + `"}`
		}
		return p
	}
	in.Pods = append(in.Pods, pod("backup-1-x", "Job/backup-1", "1-30"), pod("debug", "", "1-30"), pod("rs-x", "ReplicaSet/rs", "1-31"), pod("plain", "", ""))
	s := Build(in)
	got := map[string]UnmanagedPod{}
	for _, u := range s.Unmanaged {
		got[u.Pod] = u
	}
	if len(got) != 3 || got["plain"].Pod != "" {
		t.Fatalf("unmanaged %+v, want the Job's, the bare pod and the ReplicaSet's", s.Unmanaged)
	}
	if j := got["backup-1-x"]; j.Owner != "Job/backup-1" || !j.NeedsRestart || j.DesiredRevision != "1-31" || !strings.Contains(j.Action, "next pods are injected by 1-31") {
		t.Errorf("the Job's pod: %+v", j)
	}
	if b := got["debug"]; b.Owner != "" || !b.NeedsRestart || !strings.Contains(b.Action, "re-create it by hand") {
		t.Errorf("the bare pod: %+v", b)
	}
	if r := got["rs-x"]; r.NeedsRestart || r.Owner != "ReplicaSet/rs" {
		t.Errorf("the ReplicaSet's pod, already on 1-31: %+v", r)
	}
}
