package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	listersv1 "k8s.io/client-go/listers/core/v1"
)

// egress is the apiserver's egress proxy (its EgressSelectorConfiguration sends the "cluster" network
// context, which carries webhook calls and kubelet connections, as HTTP CONNECT over a unix socket).
// It plays kube-proxy for istiod Services: a CONNECT to an istiod Service's ClusterIP reaches the local
// pilot-discovery of the revision the Service selects; anything else is dialled as asked. Webhook
// configurations keep their clientConfig.service untouched, so Helm and istioctl can patch what they own.
type egress struct {
	ns         string
	ports      *portBook
	services   listersv1.ServiceLister
	pods       listersv1.PodLister
	prometheus string // the local Prometheus the addon's pod stands for
}

func newEgress(ns string, ports *portBook) *egress { return &egress{ns: ns, ports: ports} }

func (e *egress) register(f informers.SharedInformerFactory) {
	e.services = f.Core().V1().Services().Lister()
	_ = f.Core().V1().Services().Informer()
	e.pods = f.Core().V1().Pods().Lister()
}

// serve accepts CONNECT requests on the unix socket until ctx ends.
func (e *egress) serve(ctx context.Context, socket string) error {
	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); l.Close() }()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					log.Printf("egress: %v", err)
				}
				return
			}
			go e.handle(ctx, c)
		}
	}()
	return nil
}

func (e *egress) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		fmt.Fprint(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
		return
	}
	target := e.route(req.Host)
	up, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", target)
	if err != nil {
		fmt.Fprint(c, "HTTP/1.1 503 Service Unavailable\r\n\r\n")
		return
	}
	defer up.Close()
	if _, err := fmt.Fprint(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(up, br) // br: nothing the client sent after CONNECT is lost
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(c, up)
	_ = c.Close()
	wg.Wait()
}

// route maps an istiod Service's ClusterIP and port to the local listener of its revision's istiod;
// any other address is returned unchanged.
func (e *egress) route(hostport string) string {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil || e.services == nil {
		return hostport
	}
	port, _ := strconv.Atoi(portStr)
	if e.prometheus != "" && port == 9090 && e.isPrometheus(host) {
		return e.prometheus
	}
	svcs, err := e.services.Services(e.ns).List(everything)
	if err != nil {
		return hostport
	}
	for _, s := range svcs {
		if s.Spec.ClusterIP != host || s.Spec.Selector["app"] != "istiod" {
			continue
		}
		rev := s.Spec.Selector["istio.io/rev"]
		if rev == "" {
			rev = "default"
		}
		for _, sp := range s.Spec.Ports {
			if int(sp.Port) == port {
				if local := e.local(rev, sp); local != 0 {
					return addr(local)
				}
			}
		}
	}
	return hostport
}

// local is the loopback port of the istiod container port a Service port targets.
func (e *egress) local(rev string, sp corev1.ServicePort) int {
	p := e.ports.get(rev)
	target := sp.TargetPort.IntValue()
	if target == 0 {
		target = int(sp.Port)
	}
	switch target {
	case 15017:
		return p.HTTPS
	case 15012:
		return p.SecureGRPC
	case 15010:
		return p.GRPC
	case 15014:
		return p.Monitoring
	case 8080:
		return p.HTTP
	}
	return 0
}

// isPrometheus says whether ip is the pod of Istio's Prometheus addon (the apiserver's service proxy
// dials an endpoint) or the ClusterIP of its Service (what a webhook-like caller dials).
func (e *egress) isPrometheus(ip string) bool {
	if svc, err := e.services.Services(e.ns).Get("prometheus"); err == nil && svc.Spec.ClusterIP == ip {
		return true
	}
	if e.pods == nil {
		return false
	}
	pods, err := e.pods.Pods(e.ns).List(everything)
	if err != nil {
		return false
	}
	for _, p := range pods {
		if p.Status.PodIP == ip && p.Labels["app.kubernetes.io/name"] == "prometheus" {
			return true
		}
	}
	return false
}
