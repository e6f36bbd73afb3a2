// Package gate holds the checks every step's gate makes after changing the data plane: pods of the
// changed workloads injected by the target revision and SYNCED on its istiod, istiod's error counters
// not rising. migrate-ns, tag-move --restart, canary-gw and shift all gate the same way.
package gate

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// EvaluatePods checks that every running pod of the batch's workloads is injected by revision and
// listed SYNCED by that revision's istiods (proxies: namespace/pod → state). It returns the number of
// pods checked and, when not yet true, why.
func EvaluatePods(batch []kube.WorkloadRef, pods []corev1.Pod, proxies map[string]string, revision string) (int, string) {
	return evaluate(batch, pods, proxies, revision, true)
}

// evaluate is EvaluatePods; without synced it checks injection only (a move-back without istiod's view).
func evaluate(batch []kube.WorkloadRef, pods []corev1.Pod, proxies map[string]string, revision string, synced bool) (int, string) {
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
		case !synced:
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
