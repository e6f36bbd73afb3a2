// Package gate holds the checks every step's gate makes after changing the data plane: pods of the
// changed workloads injected by the target revision and SYNCED on its istiod, istiod's error counters
// not rising. migrate-ns, tag-move --restart, canary-gw and shift all gate the same way.
package gate

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// EvaluatePods checks that every running pod of the batch's workloads is injected by revision and
// listed SYNCED by that revision's istiods (proxies: namespace/pod → state). It returns the number of
// pods checked and, when not yet true, why.
func EvaluatePods(batch []kube.WorkloadRef, pods []corev1.Pod, proxies map[string]string, revision string) (int, string) {
	in := map[kube.WorkloadRef]bool{}
	for _, w := range batch {
		in[w] = true
	}
	seen := map[kube.WorkloadRef]int{}
	var problems []string
	for i := range pods {
		p := &pods[i]
		kind, name := mesh.PodOwner(p)
		ref := kube.WorkloadRef{Kind: kind, Namespace: p.Namespace, Name: name}
		if !in[ref] || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		seen[ref]++
		rev, injected := istio.InjectedRevision(p.Labels, p.Annotations)
		switch {
		case !injected:
			problems = append(problems, p.Namespace+"/"+p.Name+" has no sidecar")
		case rev != revision:
			problems = append(problems, fmt.Sprintf("%s/%s injected by %s", p.Namespace, p.Name, rev))
		case proxies[p.Namespace+"/"+p.Name] == "":
			problems = append(problems, fmt.Sprintf("%s/%s not connected to istiod %s", p.Namespace, p.Name, revision))
		case proxies[p.Namespace+"/"+p.Name] != istio.StateSynced:
			problems = append(problems, fmt.Sprintf("%s/%s is %s", p.Namespace, p.Name, proxies[p.Namespace+"/"+p.Name]))
		}
	}
	for _, w := range batch {
		if seen[w] == 0 {
			problems = append(problems, w.String()+" has no running pods")
		}
	}
	n := 0
	for _, c := range seen {
		n += c
	}
	sort.Strings(problems)
	if len(problems) > 3 {
		problems = append(problems[:3], fmt.Sprintf("and %d more", len(problems)-3))
	}
	return n, strings.Join(problems, "; ")
}

// CompareMetrics reports every gate counter that rose between before and after.
func CompareMetrics(before, after map[string]float64) []string {
	var out []string
	for _, m := range istio.GateMetrics {
		if after[m] > before[m] {
			out = append(out, fmt.Sprintf("istiod %s rose from %g to %g", m, before[m], after[m]))
		}
	}
	return out
}

// Istiod asks one revision's istiods for syncz, again and again while a gate waits, over one token and
// one port-forward per istiod pod kept for the whole step: minting a token and opening port-forwards on
// every poll was most of a gated step's apiserver requests. Close releases the port-forwards.
type Istiod struct {
	c      *kube.Clients
	pods   []corev1.Pod
	opts   mesh.ReadOptions
	token  string
	minted time.Time
	fwd    map[string]forward // istiod pod → its port-forward
	mu     sync.Mutex
	ctx    context.Context // the port-forwards' lifetime: until Close
	cancel context.CancelFunc
}

type forward struct {
	addr string
	stop func()
}

// tokenLife is how long a minted token is reused (it is requested for 10 minutes).
const tokenLife = 5 * time.Minute

// NewIstiod prepares syncz polling of the given istiod pods (one revision's).
func NewIstiod(c *kube.Clients, pods []corev1.Pod, opts mesh.ReadOptions) *Istiod {
	ctx, cancel := context.WithCancel(context.Background())
	return &Istiod{c: c, pods: pods, opts: opts, fwd: map[string]forward{}, ctx: ctx, cancel: cancel}
}

// Proxies returns namespace/pod → sync state from every running istiod pod.
func (i *Istiod) Proxies(ctx context.Context) map[string]string {
	out := map[string]string{}
	add := func(sz mesh.IstiodSyncz) {
		for _, p := range sz.Proxies {
			out[p.Namespace+"/"+p.Pod] = p.State()
		}
	}
	if i.opts.XDS.Address != "" {
		for _, sz := range mesh.GatherSyncz(ctx, i.c, i.pods, i.opts) {
			add(sz)
		}
		return out
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.token == "" || time.Since(i.minted) > tokenLife {
		t, err := mesh.Token(ctx, i.c, i.opts.IstioNamespace)
		if err != nil {
			return out
		}
		i.token, i.minted = t, time.Now()
	}
	timeout := i.opts.XDS.Timeout
	if timeout == 0 {
		timeout = istio.DefaultTimeout
	}
	for _, p := range i.pods {
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		f, ok := i.fwd[p.Name]
		if !ok {
			// The forward outlives this poll: it lasts until Close, or until a fetch through it fails.
			addr, stop, err := kube.PortForward(i.ctx, i.c.Config, p.Namespace, p.Name, i.opts.XDS.Port)
			if err != nil {
				continue
			}
			f = forward{addr, stop}
			i.fwd[p.Name] = f
		}
		fctx, cancel := context.WithTimeout(ctx, timeout)
		sz := mesh.FetchAt(fctx, f.addr, i.token, false, i.opts.IstioNamespace)
		cancel()
		if sz.Err != nil {
			f.stop()
			delete(i.fwd, p.Name)
			continue
		}
		add(sz)
	}
	return out
}

// Close stops the port-forwards.
func (i *Istiod) Close() {
	i.mu.Lock()
	defer i.mu.Unlock()
	for k, f := range i.fwd {
		f.stop()
		delete(i.fwd, k)
	}
	i.cancel()
}
