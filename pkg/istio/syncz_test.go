package istio

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
)

// -record-syncz=ADDR re-records testdata/syncz-1.30.pb from a real istiod's plaintext xDS port
// (the test bed's istiod 1-30 listens on 127.0.0.1:21010).
var recordSyncz = flag.String("record-syncz", "", "record a real syncz response from this istiod xDS address")

const recorded = "testdata/syncz-1.30.pb"

func TestRecordSyncz(t *testing.T) {
	if *recordSyncz == "" {
		t.Skip("recording only with -record-syncz=ADDR")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := Dial(ctx, *recordSyncz, "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := RequestSyncz(ctx, conn, "istio-system")
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recorded, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestParseRecordedSyncz decodes a syncz answer recorded from a real istiod 1.30 of the test bed with
// 23 connected simulated proxies (21 sidecars, 2 gateway routers).
func TestParseRecordedSyncz(t *testing.T) {
	b, err := os.ReadFile(recorded)
	if err != nil {
		t.Fatal(err)
	}
	resp := &discovery.DiscoveryResponse{}
	if err := proto.Unmarshal(b, resp); err != nil {
		t.Fatal(err)
	}
	if resp.TypeUrl != SynczType {
		t.Fatalf("type %q, want %q", resp.TypeUrl, SynczType)
	}
	info, proxies, err := ParseSyncz(resp)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != "1.30.0" || info.ID == "" {
		t.Errorf("istiod info = %+v, want version 1.30.0 and an ID", info)
	}
	if len(proxies) != 23 {
		t.Fatalf("got %d proxies, want 23", len(proxies))
	}
	perNS := map[string]int{}
	for _, p := range proxies {
		perNS[p.Namespace]++
		if p.Pod == "" || p.Version != "1.30.0" {
			t.Errorf("proxy %+v: want a pod name and version 1.30.0", p)
		}
		if p.State() != StateSynced {
			t.Errorf("proxy %s: state %s (%v), want SYNCED", p.ID, p.State(), p.Types)
		}
		for _, typ := range []string{"CDS", "LDS", "EDS", "RDS"} {
			if _, ok := p.Types[typ]; !ok {
				t.Errorf("proxy %s: no %s state in %v", p.ID, typ, p.Types)
			}
		}
	}
	want := map[string]int{"bookinfo": 7, "shop": 7, "payments": 7, "istio-ingress": 2}
	for ns, n := range want {
		if perNS[ns] != n {
			t.Errorf("namespace %s: %d proxies, want %d", ns, perNS[ns], n)
		}
	}
}

func TestFoldStates(t *testing.T) {
	cases := []struct {
		name  string
		types map[string]string
		want  string
	}{
		{"none", nil, StateNotSent},
		{"all synced", map[string]string{"CDS": StateSynced, "LDS": StateSynced}, StateSynced},
		{"not sent ignored", map[string]string{"CDS": StateSynced, "RDS": StateNotSent}, StateSynced},
		{"stale wins over synced", map[string]string{"CDS": StateSynced, "LDS": StateStale}, StateStale},
		{"error wins", map[string]string{"CDS": StateStale, "LDS": StateError}, StateError},
		{"only not sent", map[string]string{"CDS": StateNotSent}, StateNotSent},
	}
	for _, c := range cases {
		if got := FoldStates(c.types); got != c.want {
			t.Errorf("%s: FoldStates(%v) = %s, want %s", c.name, c.types, got, c.want)
		}
	}
}

func TestParseNodeID(t *testing.T) {
	cases := []struct{ id, typ, ip, pod, ns string }{
		{"details-v1-abc.bookinfo", "", "", "details-v1-abc", "bookinfo"},
		{"router~10.0.0.1~gw-1.istio-ingress~istio-ingress.svc.cluster.local", "router", "10.0.0.1", "gw-1", "istio-ingress"},
		{"weird", "", "", "weird", ""},
	}
	for _, c := range cases {
		typ, ip, pod, ns := ParseNodeID(c.id)
		if typ != c.typ || ip != c.ip || pod != c.pod || ns != c.ns {
			t.Errorf("ParseNodeID(%q) = %q %q %q %q", c.id, typ, ip, pod, ns)
		}
	}
}

func TestShortType(t *testing.T) {
	for url, want := range map[string]string{
		"type.googleapis.com/envoy.config.cluster.v3.Cluster":                "CDS",
		"type.googleapis.com/envoy.config.listener.v3.Listener":              "LDS",
		"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": "EDS",
		"type.googleapis.com/envoy.config.route.v3.RouteConfiguration":       "RDS",
		"type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig":      "ECDS",
		"type.googleapis.com/istio.workload.Address":                         "WDS",
		"type.googleapis.com/some.other.Thing":                               "Thing",
	} {
		if got := ShortType(url); got != want {
			t.Errorf("ShortType(%s) = %s, want %s", url, got, want)
		}
	}
}

func TestInjectedRevision(t *testing.T) {
	rev, ok := InjectedRevision(nil, map[string]string{AnnotationStatus: `{"containers":["istio-proxy"],"revision":"1-31"}`})
	if !ok || rev != "1-31" {
		t.Errorf("got %q %v", rev, ok)
	}
	if _, ok := InjectedRevision(nil, map[string]string{}); ok {
		t.Error("a pod without the status annotation is not injected")
	}
	rev, _ = InjectedRevision(map[string]string{LabelRev: "canary"}, map[string]string{AnnotationStatus: `{}`})
	if rev != "canary" {
		t.Errorf("fallback to istio.io/rev label: got %q", rev)
	}
	// istiod renders a Gateway API gateway's pod itself (not injected): its proxy is of istio.io/rev.
	rev, ok = InjectedRevision(map[string]string{LabelManagedGateway: "istio.io-gateway-controller", LabelSidecarInject: "false"}, map[string]string{LabelRev: "1-31"})
	if !ok || rev != "1-31" {
		t.Errorf("istiod's gateway pod: got %q %v, want 1-31", rev, ok)
	}
	if _, ok := InjectedRevision(map[string]string{LabelRev: "1-31"}, nil); ok {
		t.Error("a pod labelled istio.io/rev without a sidecar is not injected")
	}
	if v := VersionFromImage("docker.io/istio/proxyv2:1.30.0-distroless"); v != "1.30.0" {
		t.Errorf("VersionFromImage = %q", v)
	}
	if v := VersionFromImage("localhost:5000/pilot"); v != "" {
		t.Errorf("VersionFromImage without tag = %q", v)
	}
}
