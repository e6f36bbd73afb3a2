package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// The traffic plane: every running pod with an IP serves HTTP on a loopback port of its own, so requests
// can flow as in a cluster. A workload pod answers 200 with its name. A gateway pod (a simulated
// router) routes each request as Envoy would from what istiod sent it (see routerState). The pod IP a
// Service's EndpointSlices or istiod's EDS name is mapped to that pod's server here.
//
// The port a request was sent to (the Service's targetPort, or the endpoint's port in EDS) travels in
// headerPort: one loopback server per pod stands for all of its ports.
const (
	headerPort  = "X-Testbed-Port"
	headerCause = "X-Testbed-Cause" // why a hop failed: "refused" (no server at the endpoint), "no-route", "no-endpoint"
	headerPod   = "X-Testbed-Pod"   // the pod that answered
	headerFrom  = "X-Testbed-From"  // the pod IP of the proxy that sent the request (metadata exchange)
)

type plane struct {
	ctx   context.Context
	mu    sync.Mutex
	byIP  map[string]*podServer
	byUID map[types.UID]*podServer
	// routers are the routing state of gateway pods, by UID, set by the simulator.
	routers map[types.UID]*routerState
	faults  *faults
}

type podServer struct {
	ns, name string
	uid      types.UID
	ip       string
	addr     string       // set with srv, on the pod's first lookup
	srv      *http.Server // nil until then
	closing  bool
	peer     peer        // how Istio's metrics name the pod
	stats    *proxyStats // what its proxy counted
}

func newPlane() *plane {
	return &plane{byIP: map[string]*podServer{}, byUID: map[types.UID]*podServer{}, routers: map[types.UID]*routerState{}}
}

func (pl *plane) register(ctx context.Context, f informers.SharedInformerFactory) {
	pl.ctx = ctx
	_, _ = f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { pl.sync(o.(*corev1.Pod)) },
		UpdateFunc: func(_, o any) { pl.sync(o.(*corev1.Pod)) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				pl.terminate(p)
			}
		},
	})
}

// sync registers a running pod's server, or begins its termination.
func (pl *plane) sync(p *corev1.Pod) {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		pl.terminate(p)
		return
	}
	if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
		return
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if _, ok := pl.byUID[p.UID]; ok {
		return
	}
	s := &podServer{ns: p.Namespace, name: p.Name, uid: p.UID, ip: p.Status.PodIP, peer: peerOf(p), stats: &proxyStats{}}
	pl.byUID[p.UID], pl.byIP[s.ip] = s, s
}

// listen starts s's server; pl.mu is held. A pod listens only once it is first dialled: a listener for
// every running pod, beside each proxy's xDS stream, took 10,000 pods past the 20,000 open files this
// machine allows a process.
func (pl *plane) listen(s *podServer) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { pl.serve(s, w, r) }),
		ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	go func() { <-pl.ctx.Done(); _ = s.srv.Close() }()
	return true
}

// terminate stops a pod's server the way a kubelet stops a pod: the preStop sleep first (bounded by
// terminationGracePeriodSeconds), during which it keeps serving; then new connections are refused.
func (pl *plane) terminate(p *corev1.Pod) {
	pl.mu.Lock()
	s, ok := pl.byUID[p.UID]
	if !ok || s.closing {
		pl.mu.Unlock()
		return
	}
	s.closing = true
	wait := preStopSleep(p)
	if pl.routers[p.UID] != nil { // a gateway: pilot-agent keeps Envoy serving while it drains
		wait = max(wait, min(drainDuration(p), grace(p)))
	}
	pl.mu.Unlock()
	time.AfterFunc(wait, func() {
		pl.mu.Lock()
		defer pl.mu.Unlock()
		if s.srv != nil {
			_ = s.srv.Close()
		}
		delete(pl.byUID, s.uid)
		if pl.byIP[s.ip] == s {
			delete(pl.byIP, s.ip)
		}
		delete(pl.routers, s.uid)
	})
}

// preStopSleep is how long a pod keeps serving after its deletion: its preStop hook's sleep (the sleep
// action, or an exec of `sleep N`), at most its termination grace period.
func preStopSleep(p *corev1.Pod) time.Duration {
	var d time.Duration
	for _, c := range p.Spec.Containers {
		h := c.Lifecycle
		if h == nil || h.PreStop == nil {
			continue
		}
		if h.PreStop.Sleep != nil {
			d = max(d, time.Duration(h.PreStop.Sleep.Seconds)*time.Second)
		}
		if h.PreStop.Exec != nil {
			cmd := strings.Join(h.PreStop.Exec.Command, " ")
			if i := strings.Index(cmd, "sleep "); i >= 0 {
				f := strings.Fields(cmd[i+len("sleep "):])
				if len(f) > 0 {
					if n, err := strconv.ParseFloat(f[0], 64); err == nil {
						d = max(d, time.Duration(n*float64(time.Second)))
					}
				}
			}
		}
	}
	return min(d, grace(p))
}

func grace(p *corev1.Pod) time.Duration {
	if p.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*p.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// drainDuration is how long pilot-agent keeps a terminating proxy serving before Envoy exits: the
// terminationDrainDuration of the pod's proxy.istio.io/config, else Istio's default 5s. (Envoy's own
// connection draining is not modelled: the proxy serves in full, then stops.)
func drainDuration(p *corev1.Pod) time.Duration {
	cfg := p.Annotations["proxy.istio.io/config"]
	if i := strings.Index(cfg, "terminationDrainDuration:"); i >= 0 {
		if f := strings.Fields(cfg[i+len("terminationDrainDuration:"):]); len(f) > 0 {
			if d, err := time.ParseDuration(strings.Trim(f[0], `"'`)); err == nil {
				return d
			}
		}
	}
	return 5 * time.Second
}

// lookup is the loopback address of the pod with this IP, "" when no server runs there.
func (pl *plane) lookup(ip string) string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	s, ok := pl.byIP[ip]
	if !ok || (s.srv == nil && !pl.listen(s)) {
		return ""
	}
	return s.addr
}

func (pl *plane) setRouter(uid types.UID, rs *routerState) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if rs == nil {
		delete(pl.routers, uid)
		return
	}
	pl.routers[uid] = rs
}

// serve answers for one pod: a gateway routes, a workload answers. Both count what they carried, as
// their proxies would (a pod without a proxy counts nothing).
func (pl *plane) serve(s *podServer, w http.ResponseWriter, r *http.Request) {
	pl.mu.Lock()
	rs := pl.routers[s.uid]
	from := pl.byIP[r.Header.Get(headerFrom)]
	pl.mu.Unlock()
	w.Header().Set(headerPod, s.ns+"/"+s.name)
	if rs == nil {
		pl.answer(s, from, w, r)
		return
	}
	if r.Header.Get("X-Testbed-Debug") != "" { // what the router knows, for debugging the bed
		_, _ = fmt.Fprint(w, rs.dump())
		return
	}
	// The fault knob fails what a gateway serves (a canary gateway answering 503), as it does a workload's.
	if delay, code, reset := pl.faults.verdict(s.peer, r.Host); code != 0 || reset || delay > 0 {
		time.Sleep(delay)
		if code != 0 || reset {
			code = max(code, http.StatusServiceUnavailable)
			s.stats.record(request{reporter: "source", src: s.peer, code: code, flags: "FI"})
			w.Header().Set(headerCause, "fault")
			http.Error(w, "fault injected by the test bed", code)
			return
		}
	}
	port, _ := strconv.Atoi(r.Header.Get(headerPort))
	pl.hop(s, rs, port, w, r)
}

// hop is one proxy sending a request on, routed by what its own istiod sent it (rs): a gateway's
// request from outside, or a sidecar's call to another service. The proxy counts it as the source.
func (pl *plane) hop(s *podServer, rs *routerState, port int, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	target, svc, cause := rs.route(port, r.Host, r.URL.Path)
	rec := request{reporter: "source", src: s.peer, service: svc}
	report := func(code int, flags string) {
		rec.code, rec.flags, rec.ms = code, flags, float64(time.Since(start).Microseconds())/1000
		s.stats.record(rec)
	}
	switch cause {
	case "no-route":
		w.Header().Set(headerCause, cause)
		http.Error(w, "no route", http.StatusNotFound)
		report(http.StatusNotFound, "NR")
		return
	case "no-endpoint":
		w.Header().Set(headerCause, cause)
		http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
		report(http.StatusServiceUnavailable, "UH")
		return
	}
	ip, p, _ := net.SplitHostPort(target)
	pl.mu.Lock()
	if d := pl.byIP[ip]; d != nil {
		rec.dst = d.peer
	}
	pl.mu.Unlock()
	addr := pl.lookup(ip)
	if addr == "" {
		w.Header().Set(headerCause, "refused")
		http.Error(w, "upstream connect error: connection refused", http.StatusServiceUnavailable)
		report(http.StatusServiceUnavailable, "UF")
		return
	}
	r.Header.Set(headerFrom, s.ip)
	code, err := forward(w, r, addr, p)
	if err != nil {
		w.Header().Set(headerCause, "refused")
		http.Error(w, "upstream connect error: "+err.Error(), http.StatusServiceUnavailable)
		report(http.StatusServiceUnavailable, "UC")
		return
	}
	report(code, "")
}

// answer is a workload pod's reply, with the faults the knob sets for it; its sidecar (if any) counts
// it as the destination, the sender named by headerFrom as the source.
func (pl *plane) answer(s *podServer, from *podServer, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := request{reporter: "destination", dst: s.peer}
	if from != nil {
		rec.src = from.peer
	}
	if host := r.Host; host != "" {
		rec.service = serviceFQDN(host, s.ns)
	}
	report := func(code int, flags string) {
		if s.peer.proxied {
			rec.code, rec.flags, rec.ms = code, flags, float64(time.Since(start).Microseconds())/1000
			s.stats.record(rec)
		}
	}
	delay, code, reset := pl.faults.verdict(s.peer, r.Host)
	if delay > 0 {
		time.Sleep(delay)
	}
	switch {
	case reset:
		report(http.StatusServiceUnavailable, "UC")
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				_ = c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // closes the connection without a response
	case code != 0:
		http.Error(w, "fault injected by the test bed", code)
		report(code, "")
		return
	}
	_, _ = fmt.Fprintf(w, "%s/%s\n", s.ns, s.name)
	report(http.StatusOK, "")
}

// serviceFQDN is the Service a Host header names, as destination_service spells it.
func serviceFQDN(host, ns string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	switch strings.Count(host, ".") {
	case 0:
		return host + "." + ns + ".svc.cluster.local"
	case 1:
		return host + ".svc.cluster.local"
	}
	return host
}

var upstream = &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 2 * time.Second,
	DialContext: (&net.Dialer{Timeout: time.Second}).DialContext}

// forward sends r to the pod server at addr (port is the pod port it stands for) and copies the
// answer; it returns the answer's status code.
func forward(w http.ResponseWriter, r *http.Request, addr, port string) (int, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+addr+r.URL.RequestURI(), nil)
	if err != nil {
		return 0, err
	}
	req.Header = r.Header.Clone()
	req.Host = r.Host
	req.Header.Set(headerPort, port)
	resp, err := upstream.RoundTrip(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return 0, op
		}
		return 0, err
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		if k != headerPod || w.Header().Get(headerPod) == "" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	buf := make([]byte, 4096)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			_, _ = w.Write(buf[:n])
		}
		if rerr != nil {
			return resp.StatusCode, nil
		}
	}
}
