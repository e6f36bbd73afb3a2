package istio

import (
	"reflect"
	"testing"
)

// /debug/syncz as istiod writes it (pilot/pkg/xds SyncStatus): the states come out as the xDS syncz
// reports them, and the debug clients (istioctl's, as the test bed's istiod listed it) are left out.
func TestParseSynczHTTP(t *testing.T) {
	const body = `[
 {"cluster_id":"Kubernetes","proxy":"web-1.shop","proxy_type":"sidecar","istio_version":"1.30.0",
  "resources":{
   "type.googleapis.com/envoy.config.cluster.v3.Cluster":{"sent":"a","acked":"a"},
   "type.googleapis.com/envoy.config.listener.v3.Listener":{"sent":"b","acked":null,"extra":{"x":[1,"y"]}},
   "type.googleapis.com/envoy.config.route.v3.RouteConfiguration":{"sent":"c","acked":"c","lastError":"rejected"},
   "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment":{}}},
 {"cluster_id":"Kubernetes","proxy":"gw-1.istio-ingress","proxy_type":"router","istio_version":"1.31.0",
  "resources":{"type.googleapis.com/envoy.config.cluster.v3.Cluster":{"sent":"x","acked":"x"}}},
 {"proxy":"kubectl-istio-upgrade.istio-system","proxy_type":"sidecar"},
 {"proxy":"test-1.default","proxy_type":"sidecar","istio_version":"65536.65536.65536"},
 {"proxy":"istioctl.istio-system"}
]`
	got, err := ParseSynczHTTP([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []ProxySync{
		{ID: "gw-1.istio-ingress", Type: "router", Pod: "gw-1", Namespace: "istio-ingress", Version: "1.31.0", ClusterID: "Kubernetes", Types: map[string]string{"CDS": StateSynced}},
		{ID: "web-1.shop", Type: "sidecar", Pod: "web-1", Namespace: "shop", Version: "1.30.0", ClusterID: "Kubernetes",
			Types: map[string]string{"CDS": StateSynced, "LDS": StateStale, "RDS": StateError, "EDS": StateNotSent}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got[1].State() != StateError || got[0].State() != StateSynced {
		t.Errorf("folded states %s %s", got[1].State(), got[0].State())
	}
	for _, bad := range []string{"<html>", `{"proxy":"a.b"}`, body[:200], body[:len(body)-2]} {
		if _, err := ParseSynczHTTP([]byte(bad)); err == nil {
			t.Errorf("%.30q… is accepted", bad)
		}
	}
	if got, err := ParseSynczHTTP([]byte("null")); err != nil || len(got) != 0 {
		t.Errorf("null: %v %v", got, err)
	}
}
