package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// loadBalancer is the ingress gateway Service's external load balancer on loopback: each request on
// its port goes to one ready endpoint of the Service's port 80, as its EndpointSlices list them, seen
// delay late (cloud load balancers and kube-proxy learn of endpoint changes about a second after the
// EndpointSlice controller writes them). Requests then reach the gateway pod's server in the plane.
type loadBalancer struct {
	ns, svc string
	delay   time.Duration
	plane   *plane

	mu      sync.Mutex
	slices  map[string]*discoveryv1.EndpointSlice
	service *corev1.Service
	ready   []string // ip:port, as of delay ago
	next    int
}

func newLoadBalancer(ns, svc string, delay time.Duration, pl *plane) *loadBalancer {
	return &loadBalancer{ns: ns, svc: svc, delay: delay, plane: pl, slices: map[string]*discoveryv1.EndpointSlice{}}
}

func (lb *loadBalancer) register(f informers.SharedInformerFactory) {
	mine := func(o any) (*discoveryv1.EndpointSlice, bool) {
		if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = t.Obj
		}
		s, ok := o.(*discoveryv1.EndpointSlice)
		return s, ok && s.Namespace == lb.ns && s.Labels[discoveryv1.LabelServiceName] == lb.svc
	}
	_, _ = f.Discovery().V1().EndpointSlices().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { lb.slice(mine(o)) },
		UpdateFunc: func(_, o any) { lb.slice(mine(o)) },
		DeleteFunc: func(o any) {
			if s, ok := mine(o); ok {
				lb.mu.Lock()
				delete(lb.slices, s.Name)
				lb.mu.Unlock()
				lb.changed()
			}
		},
	})
	_, _ = f.Core().V1().Services().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { lb.service1(o) },
		UpdateFunc: func(_, o any) { lb.service1(o) },
	})
}

func (lb *loadBalancer) slice(s *discoveryv1.EndpointSlice, ok bool) {
	if !ok {
		return
	}
	lb.mu.Lock()
	lb.slices[s.Name] = s
	lb.mu.Unlock()
	lb.changed()
}

func (lb *loadBalancer) service1(o any) {
	if s, ok := o.(*corev1.Service); ok && s.Namespace == lb.ns && s.Name == lb.svc {
		lb.mu.Lock()
		lb.service = s
		lb.mu.Unlock()
		lb.changed()
	}
}

// changed computes the ready endpoints now and makes them the load balancer's view delay later.
func (lb *loadBalancer) changed() {
	lb.mu.Lock()
	portName := ""
	if lb.service != nil {
		for _, p := range lb.service.Spec.Ports {
			if p.Port == 80 {
				portName = p.Name
			}
		}
	}
	var ready []string
	for _, s := range lb.slices {
		port := 0
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == portName && p.Port != nil {
				port = int(*p.Port)
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready && len(e.Addresses) > 0 {
				ready = append(ready, net.JoinHostPort(e.Addresses[0], strconv.Itoa(port)))
			}
		}
	}
	lb.mu.Unlock()
	time.AfterFunc(lb.delay, func() {
		lb.mu.Lock()
		lb.ready = ready
		lb.mu.Unlock()
	})
}

func (lb *loadBalancer) pick() string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if len(lb.ready) == 0 {
		return ""
	}
	lb.next++
	return lb.ready[lb.next%len(lb.ready)]
}

// serve listens on addr until ctx ends.
func (lb *loadBalancer) serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := lb.pick()
		if target == "" {
			w.Header().Set(headerCause, "no-endpoint")
			http.Error(w, "no ready endpoint", http.StatusServiceUnavailable)
			return
		}
		ip, port, _ := net.SplitHostPort(target)
		pod := lb.plane.lookup(ip)
		if pod == "" {
			w.Header().Set(headerCause, "refused")
			http.Error(w, "connection refused", http.StatusBadGateway)
			return
		}
		if _, err := forward(w, r, pod, port); err != nil {
			w.Header().Set(headerCause, "refused")
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	})}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	go func() { _ = srv.Serve(ln) }()
	return nil
}
