package main

import (
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"
)

// The fault knob, for negative controls: the ConfigMap default/testbed-faults holds, under key
// "rules", a YAML list of rules; a workload's pods that match one misbehave on the requests they serve.
//
//   - namespace: shop          # required
//     workload: web            # empty: every workload of the namespace
//     revision: 1-31           # the proxy's revision (or version: the proxy's version tag); empty: any
//     errorRate: 0.2           # share of requests answered with code (default 503)
//     code: 503
//     delay: 300ms             # added to every matching request
//     resetRate: 0.1           # share of connections reset before any response
//     host: faulty.example.com # only requests with this Host header (port aside); empty: any
const (
	faultsNamespace = "default"
	faultsName      = "testbed-faults"
)

type faultRule struct {
	Namespace string  `json:"namespace"`
	Workload  string  `json:"workload,omitempty"`
	Revision  string  `json:"revision,omitempty"`
	Version   string  `json:"version,omitempty"`
	ErrorRate float64 `json:"errorRate,omitempty"`
	Code      int     `json:"code,omitempty"`
	Delay     string  `json:"delay,omitempty"`
	ResetRate float64 `json:"resetRate,omitempty"`
	Host      string  `json:"host,omitempty"`
	delay     time.Duration
}

type faults struct {
	mu    sync.RWMutex
	rules []faultRule
}

func (f *faults) register(kc kubernetes.Interface, stop <-chan struct{}) {
	fac := informers.NewSharedInformerFactoryWithOptions(kc, 0, informers.WithNamespace(faultsNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + faultsName }))
	set := func(o any) {
		cm, ok := o.(*corev1.ConfigMap)
		if !ok {
			f.set(nil)
			return
		}
		var rules []faultRule
		if err := yaml.Unmarshal([]byte(cm.Data["rules"]), &rules); err != nil {
			log.Printf("faults: %s/%s: %v (no fault applies)", faultsNamespace, faultsName, err)
			rules = nil
		}
		f.set(rules)
	}
	_, _ = fac.Core().V1().ConfigMaps().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: set, UpdateFunc: func(_, o any) { set(o) }, DeleteFunc: func(any) { f.set(nil) },
	})
	fac.Start(stop)
}

func (f *faults) set(rules []faultRule) {
	for i := range rules {
		rules[i].delay, _ = time.ParseDuration(rules[i].Delay)
		if rules[i].Code == 0 {
			rules[i].Code = http.StatusServiceUnavailable
		}
	}
	f.mu.Lock()
	f.rules = rules
	f.mu.Unlock()
	if len(rules) > 0 {
		log.Printf("faults: %d rules", len(rules))
	}
}

// verdict is what a matching rule makes of one request to p for host: a delay, then a code to answer
// with (0: none) or a reset.
func (f *faults) verdict(p peer, host string) (delay time.Duration, code int, reset bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if f == nil {
		return 0, 0, false
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, r := range f.rules {
		if r.Namespace != p.ns || (r.Workload != "" && r.Workload != p.workload) ||
			(r.Revision != "" && r.Revision != p.revision) || (r.Version != "" && r.Version != p.proxyVersion) ||
			(r.Host != "" && r.Host != host) {
			continue
		}
		delay = max(delay, r.delay)
		if r.ResetRate > 0 && rand.Float64() < r.ResetRate {
			return delay, 0, true
		}
		if r.ErrorRate > 0 && rand.Float64() < r.ErrorRate {
			return delay, r.Code, false
		}
	}
	return delay, 0, false
}
