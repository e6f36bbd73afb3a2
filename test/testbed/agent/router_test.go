package main

import (
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRouterRoutesAsEnvoy(t *testing.T) {
	rs := newRouterState()
	rs.listeners["0.0.0.0_8080"] = listenerInfo{port: 8080, routes: []string{"http.8080"}}
	rs.setRoute("http.8080", &route.RouteConfiguration{VirtualHosts: []*route.VirtualHost{
		{Name: "bookinfo", Domains: []string{"bookinfo.example.com", "bookinfo.example.com:*"}, Routes: []*route.Route{
			{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/productpage"}},
				Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "outbound|9080||productpage"}}}},
			{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Path{Path: "/empty"}},
				Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "outbound|9080||empty"}}}},
		}},
		{Name: "blackhole", Domains: []string{"*"}},
	}})
	rs.setCluster("outbound|9080||productpage", "outbound|9080||productpage")
	ep := func(ip string, h core.HealthStatus) *endpoint.LbEndpoint {
		return &endpoint.LbEndpoint{HealthStatus: h, HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: &core.Address{
			Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{Address: ip, PortSpecifier: &core.SocketAddress_PortValue{PortValue: 9080}}}}}}}
	}
	rs.setEndpoints("outbound|9080||productpage", &endpoint.ClusterLoadAssignment{Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{
		ep("10.0.0.1", core.HealthStatus_HEALTHY), ep("10.0.0.2", core.HealthStatus_UNHEALTHY)}}}})
	for _, tt := range []struct {
		port             int
		host, path, want string
		cause            string
	}{
		{8080, "bookinfo.example.com", "/productpage", "10.0.0.1:9080", ""},
		{8080, "bookinfo.example.com:80", "/productpage/x", "10.0.0.1:9080", ""},
		{8080, "bookinfo.example.com", "/other", "", "no-route"},
		{8080, "other.example.com", "/productpage", "", "no-route"},
		{8080, "bookinfo.example.com", "/empty", "", "no-endpoint"},
		{9090, "bookinfo.example.com", "/productpage", "", "no-route"},
	} {
		got, _, cause := rs.route(tt.port, tt.host, tt.path)
		if got != tt.want || cause != tt.cause {
			t.Errorf("route(%d, %s, %s) = %q %q, want %q %q", tt.port, tt.host, tt.path, got, cause, tt.want, tt.cause)
		}
	}
}

// A caller waits for a cluster's EDS as Envoy does, then calls even when it came back empty (503s).
func TestWarmWaitsForEDSNotForEndpoints(t *testing.T) {
	rs := newRouterState()
	rs.listeners["0.0.0.0_9080"] = listenerInfo{port: 9080, routes: []string{"9080"}}
	rs.setRoute("9080", &route.RouteConfiguration{VirtualHosts: []*route.VirtualHost{
		{Name: "legacy", Domains: []string{"legacy:9080"}, Routes: []*route.Route{{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "outbound|9080||legacy"}}}}}}}})
	if rs.warm(9080, "legacy:9080") {
		t.Error("warm before the cluster's EDS arrived")
	}
	rs.setEndpoints("outbound|9080||legacy", &endpoint.ClusterLoadAssignment{})
	if !rs.warm(9080, "legacy:9080") {
		t.Error("not warm once the EDS arrived empty: Envoy would answer 503, and the failures must count")
	}
	if _, _, cause := rs.route(9080, "legacy:9080", "/"); cause != "no-endpoint" {
		t.Errorf("route to an empty cluster: %q, want no-endpoint", cause)
	}
	if rs.warm(9080, "other:9080") {
		t.Error("warm without a route")
	}
}

func TestTermination(t *testing.T) {
	five, one := int64(5), int64(1)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"proxy.istio.io/config": "terminationDrainDuration: 2s\n"}},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &five, Containers: []corev1.Container{
			{Name: "app", Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 3}}}},
			{Name: "sidecar", Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "sleep 4"}}}}},
		}}}
	if d := preStopSleep(p); d != 4*time.Second {
		t.Errorf("preStopSleep %s, want 4s", d)
	}
	if d := drainDuration(p); d != 2*time.Second {
		t.Errorf("drainDuration %s, want 2s", d)
	}
	p.Spec.TerminationGracePeriodSeconds = &one
	if d := preStopSleep(p); d != time.Second {
		t.Errorf("preStopSleep bounded by the grace period: %s", d)
	}
}
