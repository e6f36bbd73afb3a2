package istio

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseRoutingConfigRecorded(t *testing.T) {
	// Recorded from the test bed's istiod 1.30 for an ingress gateway pod (Gateway on port 8080).
	b, err := os.ReadFile("testdata/configdump-gateway-1.30.json")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ParseRoutingConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"0.0.0.0_8080 null -> rds:http.8080"}; !reflect.DeepEqual(rc.Listeners, want) {
		t.Errorf("listeners %q, want %q", rc.Listeners, want)
	}
}

const routes = `{"configs":[{"@type":"type.googleapis.com/envoy.config.route.v3.RouteConfiguration","name":"http.8080",
 "virtualHosts":[{"name":"bookinfo.example.com:8080","domains":["bookinfo.example.com","bookinfo.example.com:*"],
  "routes":[{"match":{"prefix":"/productpage","caseSensitive":true},"route":{"cluster":"outbound|9080||productpage.bookinfo.svc.cluster.local"}},
            {"match":{"path":"/old"},"redirect":{"pathRedirect":"/new"}}]}]}]}`

func TestParseAndCompareRoutes(t *testing.T) {
	rc, err := ParseRoutingConfig([]byte(routes))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`http.8080 bookinfo.example.com,bookinfo.example.com:* {"caseSensitive":true,"prefix":"/productpage"} -> outbound|9080||productpage.bookinfo.svc.cluster.local`,
		`http.8080 bookinfo.example.com,bookinfo.example.com:* {"path":"/old"} -> redirect:{"pathRedirect":"/new"}`,
	}
	if !reflect.DeepEqual(rc.Routes, want) {
		t.Errorf("routes\n%q\nwant\n%q", rc.Routes, want)
	}
	if d := CompareRouting(rc, rc); len(d) != 0 {
		t.Errorf("equal configs differ: %v", d)
	}
	canary, _ := ParseRoutingConfig([]byte(strings.Replace(routes, "productpage.bookinfo", "reviews.bookinfo", 1)))
	canary.Listeners = append(canary.Listeners, "0.0.0.0_8443 null -> rds:https.443")
	d := CompareRouting(rc, canary)
	if len(d) != 3 || !strings.HasPrefix(d[0], "+ listener 0.0.0.0_8443") || !strings.HasPrefix(d[1], "- route") || !strings.HasPrefix(d[2], "+ route") {
		t.Errorf("differences %q", d)
	}
}

func TestParseRoutingConfigError(t *testing.T) {
	if _, err := ParseRoutingConfig([]byte("Proxy not connected to this Pilot instance: x.y\n")); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("istiod's error text is the error: %v", err)
	}
}
