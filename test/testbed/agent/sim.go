package main

import (
	"context"
	"encoding/json"
	"log"
	"strings"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"istio.io/istio/pkg/adsc"
	"istio.io/istio/pkg/backoff"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/model"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"
)

const (
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
)

// simulator keeps one xDS client per running injected pod, connected to the istiod of the revision
// that injected it, with the node metadata a real istio-proxy sends.
type simulator struct {
	ports *portBook
	plane *plane
	mu    sync.Mutex
	sims  map[types.UID]*sidecar
}

type sidecar struct {
	cancel context.CancelFunc
	rev    string
}

func newSimulator(ports *portBook, pl *plane) *simulator {
	return &simulator{ports: ports, plane: pl, sims: map[types.UID]*sidecar{}}
}

func (s *simulator) register(ctx context.Context, f informers.SharedInformerFactory) {
	_, _ = f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.sync(ctx, o.(*corev1.Pod)) },
		UpdateFunc: func(_, o any) { s.sync(ctx, o.(*corev1.Pod)) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				s.drop(p.UID)
			}
		},
	})
}

// injectedRevision reads sidecar.istio.io/status.revision; a gateway istiod deployed for a Gateway API
// Gateway or waypoint is not injected (istiod renders its proxy itself) and carries its revision in the
// istio.io/rev annotation (and the label too when the Gateway has one).
func injectedRevision(p *corev1.Pod) (string, bool) {
	if rev, ok := ztunnelRevision(p); ok {
		return rev, true
	}
	raw, ok := p.Annotations["sidecar.istio.io/status"]
	if !ok {
		if p.Labels["gateway.istio.io/managed"] != "" {
			if rev := p.Annotations["istio.io/rev"]; rev != "" {
				return rev, true
			}
			if rev := p.Labels["istio.io/rev"]; rev != "" {
				return rev, true
			}
			return "default", true
		}
		return "", false
	}
	var st struct {
		Revision string `json:"revision"`
	}
	if json.Unmarshal([]byte(raw), &st) != nil || st.Revision == "" {
		return "default", true
	}
	return st.Revision, true
}

// ztunnelRevision is the istiod a ztunnel pod connects to, as the ztunnel chart points it there:
// XDS_ADDRESS istiod-REV.NS.svc:15012 (istiod.NS.svc for the non-revisioned default).
func ztunnelRevision(p *corev1.Pod) (string, bool) {
	for _, c := range p.Spec.Containers {
		if !isZtunnel(c) {
			continue
		}
		for _, e := range c.Env {
			if e.Name != "XDS_ADDRESS" {
				continue
			}
			host, _, _ := strings.Cut(e.Value, ".")
			if rev, ok := strings.CutPrefix(host, "istiod-"); ok {
				return rev, true
			}
			return "default", true
		}
		if rev := p.Annotations["istio.io/rev"]; rev != "" {
			return rev, true
		}
		return "default", true
	}
	return "", false
}

func isZtunnel(c corev1.Container) bool {
	return len(c.Args) >= 2 && c.Args[0] == "proxy" && c.Args[1] == "ztunnel"
}

func (s *simulator) sync(ctx context.Context, p *corev1.Pod) {
	rev, injected := injectedRevision(p)
	running := p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && p.Status.PodIP != ""
	if !injected || !running {
		s.drop(p.UID)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sims[p.UID]; ok {
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	s.sims[p.UID] = &sidecar{cancel: cancel, rev: rev}
	go s.run(cctx, p.DeepCopy(), rev)
}

func (s *simulator) drop(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sc, ok := s.sims[uid]; ok {
		sc.cancel()
		delete(s.sims, uid)
	}
}

func (s *simulator) run(ctx context.Context, p *corev1.Pod, rev string) {
	version, nodeType := "", model.SidecarProxy
	for _, c := range p.Spec.Containers {
		if c.Name != "istio-proxy" {
			continue
		}
		if i := strings.LastIndex(c.Image, ":"); i > 0 {
			version, _, _ = strings.Cut(c.Image[i+1:], "-distroless")
		}
		for _, a := range c.Args {
			switch a {
			case "router":
				nodeType = model.Router
			case "waypoint":
				nodeType = model.Waypoint
			case "ztunnel":
				nodeType = model.Ztunnel
			}
		}
	}
	meta := model.NodeMetadata{
		Namespace: p.Namespace, ClusterID: "Kubernetes", IstioVersion: version, Labels: p.Labels,
		WorkloadName: p.Labels["app"], ServiceAccount: p.Spec.ServiceAccountName, NodeName: p.Spec.NodeName,
		ProxyConfig: (*model.NodeMetaProxyConfig)(mesh.DefaultProxyConfig()),
	}.ToStruct()
	addr := addr(s.ports.get(rev).GRPC)
	if nodeType == model.Ztunnel {
		runZtunnel(ctx, addr, adsc.Config{
			Namespace: p.Namespace, Workload: p.Name, IP: p.Status.PodIP, NodeType: nodeType, Meta: meta,
			BackoffPolicy: backoff.NewExponentialBackOff(backoff.Option{InitialInterval: 500 * time.Millisecond, MaxInterval: 2 * time.Second}),
		})
		return
	}
	if callees, rate := callsOf(p); nodeType == model.SidecarProxy && len(callees) > 0 {
		// A caller's sidecar routes its calls by what its istiod sent it: it subscribes as a gateway
		// router does (routes by name, every cluster's endpoints).
		rs := newRouterState()
		go s.plane.call(ctx, p.UID, callees, rate, rs)
		runRouter(ctx, addr, adsc.Config{
			Namespace: p.Namespace, Workload: p.Name, IP: p.Status.PodIP, NodeType: nodeType, Meta: meta,
			BackoffPolicy: backoff.NewExponentialBackOff(backoff.Option{InitialInterval: 500 * time.Millisecond, MaxInterval: 2 * time.Second}),
		}, rs)
		return
	}
	if nodeType == model.Router {
		// The routing state outlives the xDS client: a terminating gateway serves through its preStop
		// sleep with what it last knew, as Envoy does; the plane drops it with the pod's server.
		rs := newRouterState()
		s.plane.setRouter(p.UID, rs)
		runRouter(ctx, addr, adsc.Config{
			Namespace: p.Namespace, Workload: p.Name, IP: p.Status.PodIP, NodeType: nodeType, Meta: meta,
			BackoffPolicy: backoff.NewExponentialBackOff(backoff.Option{InitialInterval: 500 * time.Millisecond, MaxInterval: 2 * time.Second}),
		}, rs)
		return
	}
	for {
		c, err := adsc.New(addr, &adsc.ADSConfig{
			Config: adsc.Config{
				Namespace: p.Namespace, Workload: p.Name, IP: p.Status.PodIP, NodeType: nodeType, Meta: meta,
				BackoffPolicy: backoff.NewExponentialBackOff(backoff.Option{InitialInterval: 500 * time.Millisecond, MaxInterval: 2 * time.Second}),
			},
			InitialDiscoveryRequests: []*discovery.DiscoveryRequest{{TypeUrl: clusterType}, {TypeUrl: listenerType}},
		})
		if err == nil {
			if err = c.Run(); err == nil {
				<-ctx.Done()
				c.Close()
				return
			}
			c.Close()
		}
		log.Printf("sidecar %s/%s → istiod %s: %v (retrying)", p.Namespace, p.Name, rev, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// runZtunnel simulates a node's ztunnel: a delta xDS client of node type ztunnel subscribed, as ztunnel
// is, to every workload address and authorization policy; it ACKs what it gets and keeps nothing.
func runZtunnel(ctx context.Context, addr string, cfg adsc.Config) {
	c := adsc.NewDelta(addr, &adsc.DeltaADSConfig{Config: cfg},
		adsc.Register(func(adsc.HandlerContext, string, string, *workloadapi.Address, adsc.Event) {}),
		adsc.Watch[*workloadapi.Address]("*"),
		adsc.Register(func(adsc.HandlerContext, string, string, *security.Authorization, adsc.Event) {}),
		adsc.Watch[*security.Authorization]("*"),
	)
	go c.Run(ctx)
	<-ctx.Done()
	c.Close()
}
