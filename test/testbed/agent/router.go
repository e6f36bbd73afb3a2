package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
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
// What it receives is kept in rs, which routes the pod's requests.
//
// Endpoints of a cluster first seen after the client connected (a Service created later) are sent once
// and never updated to this client; Envoy is not affected. So when such a cluster appears the router
// reconnects (its state kept meanwhile), subscribing to every cluster's endpoints from the start.
func runRouter(ctx context.Context, addr string, cfg adsc.Config, rs *routerState) {
	for ctx.Err() == nil {
		var synced atomic.Bool // the first responses are in: a cluster new after that is a new Service
		renew := make(chan struct{}, 1)
		c := adsc.NewDelta(addr, &adsc.DeltaADSConfig{Config: cfg},
			adsc.Register(func(hc adsc.HandlerContext, name, _ string, l *listener.Listener, ev adsc.Event) {
				if ev == adsc.EventDelete || l == nil {
					rs.setListener(name, nil)
					return
				}
				hc.RegisterDependency(v3.RouteType, routeNames(l)...)
				rs.setListener(name, l)
			}),
			adsc.Watch[*listener.Listener]("*"),
			adsc.Register(func(hc adsc.HandlerContext, name, _ string, c *cluster.Cluster, ev adsc.Event) {
				if ev == adsc.EventDelete || c == nil {
					rs.setCluster(name, "")
					return
				}
				svc := c.GetName()
				if c.GetType() == cluster.Cluster_EDS {
					if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
						svc = n
					}
					hc.RegisterDependency(v3.EndpointType, svc)
					if synced.Load() && !rs.hasCluster(name) {
						select {
						case renew <- struct{}{}:
						default:
						}
					}
				}
				rs.setCluster(name, svc)
			}),
			adsc.Watch[*cluster.Cluster]("*"),
			adsc.Register(func(_ adsc.HandlerContext, name, _ string, r *route.RouteConfiguration, ev adsc.Event) {
				if ev == adsc.EventDelete {
					r = nil
				}
				rs.setRoute(name, r)
			}),
			adsc.Register(func(_ adsc.HandlerContext, name, _ string, e *endpoint.ClusterLoadAssignment, ev adsc.Event) {
				if ev == adsc.EventDelete {
					e = nil
				}
				rs.setEndpoints(name, e)
			}),
		)
		rs.mu.Lock()
		rs.connects++
		rs.synced = false
		rs.mu.Unlock()
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-c.Synced():
				synced.Store(true)
				rs.mu.Lock()
				rs.synced = true
				rs.mu.Unlock()
			case <-cctx.Done():
				return
			}
			select {
			case <-renew:
				time.Sleep(time.Second) // a burst of new Services settles into one reconnect
				cancel()
			case <-cctx.Done():
			}
		}()
		c.Run(cctx) // returns when cctx ends: the pod is gone, or the router renews
		cancel()
		c.Close()
	}
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

// routerState is what a simulated gateway knows from xDS, enough to route a request as Envoy would:
// listener port → route configuration → virtual host by Host → route by path → cluster → a healthy
// endpoint.
type routerState struct {
	mu        sync.Mutex
	listeners map[string]listenerInfo // by listener name
	routes    map[string]*route.RouteConfiguration
	clusters  map[string]string   // cluster → EDS service name
	endpoints map[string][]string // EDS service name → healthy ip:port
	seen      map[string][]string // EDS service name → every endpoint with its health (dump)
	next      int
	// connects and synced are for dump: how often the router connected, and whether the last
	// connection got its first responses.
	connects int
	synced   bool
}

type listenerInfo struct {
	port   int
	routes []string
}

func newRouterState() *routerState {
	return &routerState{listeners: map[string]listenerInfo{}, routes: map[string]*route.RouteConfiguration{},
		clusters: map[string]string{}, endpoints: map[string][]string{}, seen: map[string][]string{}}
}

func (rs *routerState) setListener(name string, l *listener.Listener) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if l == nil {
		delete(rs.listeners, name)
		return
	}
	rs.listeners[name] = listenerInfo{port: int(l.GetAddress().GetSocketAddress().GetPortValue()), routes: routeNames(l)}
}

func (rs *routerState) setRoute(name string, r *route.RouteConfiguration) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r == nil {
		delete(rs.routes, name)
		return
	}
	rs.routes[name] = r
}

func (rs *routerState) setCluster(name, svc string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if svc == "" {
		delete(rs.clusters, name)
		return
	}
	rs.clusters[name] = svc
}

func (rs *routerState) setEndpoints(name string, e *endpoint.ClusterLoadAssignment) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if e == nil {
		delete(rs.endpoints, name)
		return
	}
	var out []string
	rs.seen[name] = nil
	for _, le := range e.GetEndpoints() {
		for _, ep := range le.GetLbEndpoints() {
			rs.seen[name] = append(rs.seen[name], ep.GetHealthStatus().String()+" "+ep.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
			if h := ep.GetHealthStatus(); h != core.HealthStatus_HEALTHY && h != core.HealthStatus_UNKNOWN {
				continue
			}
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			if sa.GetAddress() != "" {
				out = append(out, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
			}
		}
	}
	rs.endpoints[name] = out
}

// route picks the upstream ip:port for a request to the listener on port, or why none: "no-route" (no
// listener, route configuration, virtual host or route matches: Envoy's 404) or "no-endpoint" (the
// route's cluster has no healthy endpoint: Envoy's 503).
func (rs *routerState) route(port int, host, path string) (target, service, cause string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	svc, cause := rs.resolve(port, host, path)
	if cause != "" {
		return "", "", cause
	}
	eps := rs.endpoints[svc]
	if len(eps) == 0 {
		return "", serviceOf(svc), "no-endpoint"
	}
	rs.next++
	return eps[rs.next%len(eps)], serviceOf(svc), ""
}

// warm says whether Envoy would send a request for host on port now: its route resolves to a cluster
// whose endpoints (EDS) have arrived, even none (then Envoy answers 503). A cluster still waiting for
// its EDS is warming: Envoy holds the listener.
func (rs *routerState) warm(port int, host string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	svc, cause := rs.resolve(port, host, "/")
	if cause != "" {
		return false
	}
	_, arrived := rs.endpoints[svc]
	return arrived
}

// resolve is the cluster (its EDS service name) the route for host and path on port names, or
// "no-route". rs.mu is held.
func (rs *routerState) resolve(port int, host, path string) (svc, cause string) {
	var rc *route.RouteConfiguration
	for _, l := range rs.listeners {
		if l.port == port {
			for _, n := range l.routes {
				if rs.routes[n] != nil {
					rc = rs.routes[n]
				}
			}
		}
	}
	if rc == nil {
		return "", "no-route"
	}
	vh := virtualHost(rc, host)
	if vh == nil {
		return "", "no-route"
	}
	for _, r := range vh.GetRoutes() {
		if !pathMatches(r.GetMatch(), path) {
			continue
		}
		cl := r.GetRoute().GetCluster()
		if wc := r.GetRoute().GetWeightedClusters(); wc != nil {
			cl = pickWeighted(wc)
		}
		if cl == "" {
			return "", "no-route"
		}
		svc := rs.clusters[cl]
		if svc == "" {
			svc = cl
		}
		return svc, ""
	}
	return "", "no-route"
}

// serviceOf is the Service FQDN of an EDS cluster name ("outbound|9080||productpage.bookinfo.svc.cluster.local").
func serviceOf(cluster string) string {
	if i := strings.LastIndex(cluster, "|"); i >= 0 {
		return cluster[i+1:]
	}
	return cluster
}

// virtualHost is Envoy's choice of virtual host for host: an exact domain, then the longest suffix or
// prefix wildcard, then "*". A domain "h:*" or "h:port" also matches h.
func virtualHost(rc *route.RouteConfiguration, host string) *route.VirtualHost {
	bare := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		bare = h
	}
	var best *route.VirtualHost
	bestScore := -1
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			score := -1
			switch {
			case d == host || d == bare || d == bare+":*":
				score = 1 << 20
			case d == "*":
				score = 0
			case strings.HasPrefix(d, "*") && strings.HasSuffix(bare, d[1:]):
				score = len(d)
			case strings.HasSuffix(d, "*") && strings.HasPrefix(bare, d[:len(d)-1]):
				score = len(d)
			}
			if score > bestScore {
				best, bestScore = vh, score
			}
		}
	}
	return best
}

func pathMatches(m *route.RouteMatch, path string) bool {
	switch {
	case m.GetPath() != "":
		return path == m.GetPath()
	case m.GetPathSeparatedPrefix() != "":
		p := m.GetPathSeparatedPrefix()
		return path == p || strings.HasPrefix(path, p+"/")
	case m.GetSafeRegex() != nil:
		return true // not evaluated: the bed's routes are prefixes and exact paths
	default:
		return strings.HasPrefix(path, m.GetPrefix())
	}
}

func pickWeighted(wc *route.WeightedCluster) string {
	total := 0
	for _, c := range wc.GetClusters() {
		total += int(c.GetWeight().GetValue())
	}
	if total == 0 {
		return ""
	}
	n := rand.IntN(total)
	for _, c := range wc.GetClusters() {
		n -= int(c.GetWeight().GetValue())
		if n < 0 {
			return c.GetName()
		}
	}
	return ""
}

func (rs *routerState) hasCluster(name string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	_, ok := rs.clusters[name]
	return ok
}

// dump is the router's state as text (X-Testbed-Debug).
func (rs *routerState) dump() string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "connects %d synced %v\n", rs.connects, rs.synced)
	for n, l := range rs.listeners {
		fmt.Fprintf(&b, "listener %s port %d routes %v\n", n, l.port, l.routes)
	}
	for n, r := range rs.routes {
		for _, vh := range r.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				fmt.Fprintf(&b, "route %s vhost %s domains %v match %v cluster %s\n", n, vh.GetName(), vh.GetDomains(), rt.GetMatch(), rt.GetRoute().GetCluster())
			}
		}
	}
	for n, svc := range rs.clusters {
		fmt.Fprintf(&b, "cluster %s eds %s endpoints %v (all: %v)\n", n, svc, rs.endpoints[svc], rs.seen[svc])
	}
	return b.String()
}
