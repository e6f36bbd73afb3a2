package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Traffic between workloads: a pod whose template declares the services it calls sends them requests
// from its sidecar, all the time, routed by that sidecar's own xDS view (its istiod's listeners,
// routes and endpoints, as a gateway router has them). So workloads behind no gateway carry requests
// for the request gates to judge, and a route only one revision's istiod serves fails from the
// proxies of the other.
//
//	testbed.istio-upgrade.io/calls: "details:9080,reviews:9080"   # host:port, the Host header sent
//	testbed.istio-upgrade.io/calls-per-second: "2"                 # per callee, per pod (default 1)
const (
	callsAnnotation = "testbed.istio-upgrade.io/calls"
	callsRate       = "testbed.istio-upgrade.io/calls-per-second"
)

type callee struct {
	host string // Host header, as the caller names the service ("details:9080")
	port int
}

// callsOf are the callees a pod declares and the rate per callee; none when it declares nothing.
func callsOf(p *corev1.Pod) ([]callee, float64) {
	var out []callee
	for _, c := range strings.Split(p.Annotations[callsAnnotation], ",") {
		c = strings.TrimSpace(c)
		_, port, ok := strings.Cut(c, ":")
		n, err := strconv.Atoi(port)
		if !ok || err != nil || n <= 0 {
			continue
		}
		out = append(out, callee{host: c, port: n})
	}
	rate := 1.0
	if v, err := strconv.ParseFloat(p.Annotations[callsRate], 64); err == nil && v > 0 {
		rate = min(v, 50)
	}
	return out, rate
}

// call sends the pod's requests until ctx ends, once its own server is up (the plane knows the pod)
// and its sidecar's routes have arrived. Each callee is called once its cluster is warm: Envoy waits
// for a cluster's endpoints (EDS) before the listener that routes to it takes traffic, so a new pod's
// first calls do not fail for want of EDS; after that every failure counts, and a route to a cluster
// whose EDS came back empty (a Service without endpoints, a route this revision's istiod lacks) fails
// with 503 as it does in Envoy.
func (pl *plane) call(ctx context.Context, uid types.UID, callees []callee, rate float64, rs *routerState) {
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	warm := make([]bool, len(callees))
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pl.mu.Lock()
		s := pl.byUID[uid]
		pl.mu.Unlock()
		if s == nil || s.closing || !rs.ready() {
			continue
		}
		for i, c := range callees {
			if !warm[i] {
				if !rs.warm(c.port, c.host) {
					continue
				}
				warm[i] = true
			}
			r, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.host+"/", nil)
			if err != nil {
				continue
			}
			r.Host = c.host
			go pl.hop(s, rs, c.port, discard{}, r)
		}
	}
}

// ready says the router got its first xDS answers (a request before that would count as no route).
func (rs *routerState) ready() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.synced
}

// discard is the caller's side of a response: only the proxy's metrics keep it.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
