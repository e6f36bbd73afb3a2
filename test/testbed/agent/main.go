// Command testbed-agent plays, for the simulated cluster, the parts a real cluster's nodes would:
//   - runs one real pilot-discovery process per istiod revision, named like its simulated pod;
//   - keeps KWOK PortForward rules so `kubectl port-forward` to an istiod pod reaches that process;
//   - is the apiserver's egress proxy, routing calls to an istiod Service to the local istiod of its
//     revision (kube-proxy's part), so the apiserver really calls the injector and validator while
//     webhook configurations stay exactly as Helm or istioctl wrote them;
//   - simulates the sidecar of every running injected pod with a real xDS client connected to the
//     istiod of the revision that injected it, and the metrics its proxy exposes (Prometheus scrapes
//     them through the agent's scrape proxy);
//   - makes workloads fail on request, from the fault rules of ConfigMap default/testbed-faults.
//
// It talks only to the local apiserver and to local istiod processes on loopback.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	istiolog "istio.io/istio/pkg/log"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

type pilotFlag map[string]string

func (p pilotFlag) String() string { return fmt.Sprint(map[string]string(p)) }
func (p pilotFlag) Set(v string) error {
	k, path, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want VERSION=PATH, got %q", v)
	}
	p[k] = path
	return nil
}

func main() {
	pilots := pilotFlag{}
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the simulated cluster")
	dir := flag.String("dir", ".testbed", "state directory (ports, pids, logs)")
	istioNS := flag.String("istio-namespace", "istio-system", "Istio namespace")
	egressSocket := flag.String("egress-socket", "", "unix socket the apiserver's egress selector sends cluster traffic to (HTTP CONNECT)")
	ingress := flag.String("ingress-service", "", "NAMESPACE/NAME of the ingress gateway Service the loopback load balancer fronts")
	ingressAddr := flag.String("ingress-listen", "127.0.0.1:20080", "where the ingress load balancer listens")
	ingressDelay := flag.Duration("ingress-delay", time.Second, "how late the load balancer sees EndpointSlice changes")
	scrapes := flag.String("scrape-listen", "", "where the proxy Prometheus scrapes pods through (its proxy_url) listens")
	prom := flag.String("prometheus", "", "the local Prometheus (HOST:PORT) the prometheus Service of the Istio namespace stands for")
	flag.Var(pilots, "pilot-discovery", "VERSION=PATH of a pilot-discovery build; an istiod pod runs the build matching its image tag (repeatable)")
	promCfg := flag.String("prometheus-config", "", "write ADDON.yaml's Prometheus configuration for the bed to OUT (ADDON=OUT) and exit; needs -kubeconfig, -scrape-listen and -prometheus")
	flag.Parse()
	if in, out, ok := strings.Cut(*promCfg, "="); ok {
		if err := promConfig(in, out, *kubeconfig, "http://"+*scrapes, *prom); err != nil {
			log.Fatal(err)
		}
		return
	}
	// adsc logs every xDS response; a test bed with thousands of sidecars only wants errors.
	if sc := istiolog.FindScope("adsc"); sc != nil {
		sc.SetOutputLevel(istiolog.WarnLevel)
	}
	// The delta client (gateway routers) logs at fatal, and so exits the whole agent, when istiod removes
	// a cluster whose endpoints it then removes too (it forgets the cluster before unlinking its
	// endpoints): a Gateway's namespace deleted took every simulated proxy down. Its bookkeeping goes on
	// correctly past that point, so the router keeps running silent.
	if sc := istiolog.FindScope("deltaadsc"); sc != nil {
		sc.SetOutputLevel(istiolog.NoneLevel)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	kc := kubernetes.NewForConfigOrDie(cfg)
	dc := dynamic.NewForConfigOrDie(cfg)

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	ports, err := loadPorts(*dir)
	if err != nil {
		log.Fatal(err)
	}
	sup := newSupervisor(*dir, *kubeconfig, *istioNS, pilots, ports, kc, dc)
	factory := informers.NewSharedInformerFactory(kc, 0)
	sup.register(ctx, factory)
	eg := newEgress(*istioNS, ports)
	eg.prometheus = *prom
	eg.register(factory)
	pl := newPlane()
	pl.register(ctx, factory)
	pl.faults = &faults{}
	pl.faults.register(kc, ctx.Done())
	var lb *loadBalancer
	if ns, name, ok := strings.Cut(*ingress, "/"); ok {
		lb = newLoadBalancer(ns, name, *ingressDelay, pl)
		lb.register(factory)
	}
	newSimulator(ports, pl).register(ctx, factory)
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	if *egressSocket != "" {
		if err := eg.serve(ctx, *egressSocket); err != nil {
			log.Fatal(err)
		}
	}
	if *scrapes != "" {
		if err := pl.serveScrapes(*scrapes); err != nil {
			log.Fatal(err)
		}
	}
	if lb != nil {
		if err := lb.serve(ctx, *ingressAddr); err != nil {
			log.Fatal(err)
		}
		log.Printf("ingress load balancer for service %s on %s (endpoint changes seen %s late)", *ingress, *ingressAddr, *ingressDelay)
	}
	log.Printf("testbed-agent running (pid %d)", os.Getpid())
	<-ctx.Done()
	sup.stopAll()
	log.Printf("testbed-agent stopped")
}
