package main

import (
	"context"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	v3 "istio.io/istio/pilot/pkg/xds/v3"
	"istio.io/istio/pkg/adsc"
)

// runRouter simulates a gateway's Envoy with istio's delta xDS client: like Envoy it asks for the
// route configurations its listeners name ("http.8080"), which the state-of-the-world adsc client does
// not (it asks by port, "8080", and a gateway then gets no routes). canary-gw compares those routes.
func runRouter(ctx context.Context, addr string, cfg adsc.Config) {
	c := adsc.NewDelta(addr, &adsc.DeltaADSConfig{Config: cfg},
		adsc.Register(func(hc adsc.HandlerContext, _, _ string, l *listener.Listener, ev adsc.Event) {
			if ev == adsc.EventDelete || l == nil {
				return
			}
			hc.RegisterDependency(v3.RouteType, routeNames(l)...)
		}),
		adsc.Watch[*listener.Listener]("*"),
		adsc.Register(func(hc adsc.HandlerContext, _, _ string, c *cluster.Cluster, ev adsc.Event) {
			if ev == adsc.EventDelete || c == nil {
				return
			}
			if c.GetType() == cluster.Cluster_EDS {
				name := c.GetEdsClusterConfig().GetServiceName()
				if name == "" {
					name = c.GetName()
				}
				hc.RegisterDependency(v3.EndpointType, name)
			}
		}),
		adsc.Watch[*cluster.Cluster]("*"),
		adsc.Register(func(adsc.HandlerContext, string, string, *route.RouteConfiguration, adsc.Event) {}),
		adsc.Register(func(adsc.HandlerContext, string, string, *endpoint.ClusterLoadAssignment, adsc.Event) {}),
	)
	c.Run(ctx)
	<-ctx.Done()
	c.Close()
}

// routeNames are the RDS route configurations a listener's HTTP connection managers name.
func routeNames(l *listener.Listener) []string {
	var out []string
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			m := &hcm.HttpConnectionManager{}
			if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(m) != nil {
				continue
			}
			if n := m.GetRds().GetRouteConfigName(); n != "" {
				out = append(out, n)
			}
		}
	}
	return out
}
