package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Istio's standard metrics, as every simulated sidecar and gateway would expose them on
// :15020/stats/prometheus: istio_requests_total and istio_request_duration_milliseconds per
// (reporter, source, destination, response code, flags), and istio_build. A request through a gateway
// is counted twice, as in Istio: by the gateway (reporter="source") and by the workload's sidecar
// (reporter="destination"). Prometheus reaches a pod's metrics through the agent's scrape proxy
// (its proxy_url), which maps the pod IP it asks for to that pod's counters.

// durationBuckets are Istio's default buckets for istio_request_duration_milliseconds.
var durationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// peer is a pod as Istio's metrics label it.
type peer struct {
	proxied                bool // a sidecar or gateway proxy runs in it (so it reports)
	ns, workload           string
	app, version           string
	canonical, canonicalRv string
	revision, proxyVersion string
}

// peerOf reads a pod's identity the way Istio's metadata exchange does: the workload is its owner's
// name (a Deployment's, through its ReplicaSet), the canonical service and revision come from the
// service.istio.io labels, else app and version.
func peerOf(p *corev1.Pod) peer {
	rev, injected := injectedRevision(p)
	_, ztunnel := ztunnelRevision(p)
	pr := peer{proxied: injected && !ztunnel, ns: p.Namespace, workload: p.Name, app: p.Labels["app"], version: p.Labels["version"], revision: rev}
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			pr.workload = o.Name
			if o.Kind == "ReplicaSet" {
				if h := p.Labels["pod-template-hash"]; h != "" {
					pr.workload = strings.TrimSuffix(o.Name, "-"+h)
				}
			}
		}
	}
	pr.canonical = first(p.Labels["service.istio.io/canonical-name"], p.Labels["app.kubernetes.io/name"], pr.app, pr.workload)
	pr.canonicalRv = first(p.Labels["service.istio.io/canonical-revision"], p.Labels["app.kubernetes.io/version"], pr.version, "latest")
	for _, c := range p.Spec.Containers {
		if c.Name == "istio-proxy" {
			if i := strings.LastIndex(c.Image, ":"); i > 0 {
				pr.proxyVersion, _, _ = strings.Cut(c.Image[i+1:], "-distroless")
			}
		}
	}
	return pr
}

func first(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// request is one request a proxy carried, as its metrics record it.
type request struct {
	reporter      string
	src, dst      peer
	service       string // destination_service: the FQDN of the Service the route chose
	code          int    // 0: the connection was reset or refused before a response
	flags         string // Envoy's response flags, "-" for none
	ms            float64
	security      string
	protocol      string
	sourceCluster string
}

func (r request) labels() string {
	svcName, svcNS, _ := strings.Cut(r.service, ".")
	svcNS, _, _ = strings.Cut(svcNS, ".")
	kv := [][2]string{
		{"reporter", r.reporter},
		{"source_workload", orUnknown(r.src.workload)}, {"source_workload_namespace", orUnknown(r.src.ns)},
		{"source_canonical_service", orUnknown(r.src.canonical)}, {"source_canonical_revision", orUnknown(r.src.canonicalRv)},
		{"source_app", orUnknown(r.src.app)}, {"source_version", orUnknown(r.src.version)}, {"source_cluster", "Kubernetes"},
		{"destination_workload", orUnknown(r.dst.workload)}, {"destination_workload_namespace", orUnknown(r.dst.ns)},
		{"destination_canonical_service", orUnknown(r.dst.canonical)}, {"destination_canonical_revision", orUnknown(r.dst.canonicalRv)},
		{"destination_app", orUnknown(r.dst.app)}, {"destination_version", orUnknown(r.dst.version)}, {"destination_cluster", "Kubernetes"},
		{"destination_service", orUnknown(r.service)}, {"destination_service_name", orUnknown(svcName)}, {"destination_service_namespace", orUnknown(svcNS)},
		{"request_protocol", "http"}, {"response_code", fmt.Sprint(r.code)}, {"response_flags", first(r.flags, "-")},
		{"connection_security_policy", first(r.security, "unknown")}, {"grpc_response_status", ""},
		{"source_principal", "unknown"}, {"destination_principal", "unknown"},
	}
	var b strings.Builder
	for i, p := range kv {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", p[0], p[1])
	}
	return b.String()
}

type histogram struct {
	count   uint64
	sum     float64
	buckets []uint64
}

// proxyStats are one proxy's counters, by label set.
type proxyStats struct {
	mu       sync.Mutex
	requests map[string]*histogram
}

func (s *proxyStats) record(r request) {
	l := r.labels()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.requests == nil {
		s.requests = map[string]*histogram{}
	}
	h := s.requests[l]
	if h == nil {
		h = &histogram{buckets: make([]uint64, len(durationBuckets))}
		s.requests[l] = h
	}
	h.count++
	h.sum += r.ms
	for i, b := range durationBuckets {
		if r.ms <= b {
			h.buckets[i]++
		}
	}
}

// write renders the counters in Prometheus' text format, as Envoy's /stats/prometheus does.
func (s *proxyStats) write(w io.Writer, self peer) {
	fmt.Fprintf(w, "# TYPE istio_build gauge\nistio_build{component=\"proxy\",tag=%q} 1\n", orUnknown(self.proxyVersion))
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.requests))
	for k := range s.requests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprint(w, "# TYPE istio_requests_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(w, "istio_requests_total{%s} %d\n", k, s.requests[k].count)
	}
	fmt.Fprint(w, "# TYPE istio_request_duration_milliseconds histogram\n")
	for _, k := range keys {
		h := s.requests[k]
		for i, b := range durationBuckets {
			fmt.Fprintf(w, "istio_request_duration_milliseconds_bucket{%s,le=\"%g\"} %d\n", k, b, h.buckets[i])
		}
		fmt.Fprintf(w, "istio_request_duration_milliseconds_bucket{%s,le=\"+Inf\"} %d\n", k, h.count)
		fmt.Fprintf(w, "istio_request_duration_milliseconds_sum{%s} %g\n", k, h.sum)
		fmt.Fprintf(w, "istio_request_duration_milliseconds_count{%s} %d\n", k, h.count)
	}
}

// serveScrapes serves the HTTP proxy Prometheus scrapes pods through (proxy_url): a GET for
// http://POD_IP:15020/stats/prometheus is answered with that pod's proxy metrics; a pod without a
// proxy, or gone, is a refused connection as it would be on a cluster.
func (pl *plane) serveScrapes(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.URL.Hostname()
		pl.mu.Lock()
		s := pl.byIP[host]
		pl.mu.Unlock()
		if s == nil || !s.peer.proxied || r.URL.Port() != "15020" || r.URL.Path != "/stats/prometheus" {
			http.Error(w, "dial tcp "+r.URL.Host+": connect: connection refused", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.stats.write(w, s.peer)
	})}
	go func() { _ = srv.Serve(ln) }()
	go func() { <-pl.ctx.Done(); _ = srv.Close() }()
	return nil
}
