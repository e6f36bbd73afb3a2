package checks

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// ztunnelGrace is Kubernetes' default terminationGracePeriodSeconds, which the ztunnel chart keeps: how
// long an old ztunnel drains before it resets what is left.
const ztunnelGrace = 30

// Ambient: what a ztunnel roll will do to each node (the connections it resets, pods without a PDB,
// workloads that expect longer to finish their connections than ztunnel drains), nodes whose ambient
// pods cannot be drained, node agents not Ready, and ztunnels still pointed at an older istiod than the
// target (cleanup of that revision refuses until they move).
func Ambient(in *Input) []Finding {
	s := in.Snapshot
	if len(s.NodeAgents) == 0 {
		return nil
	}
	nsLabels := map[string]map[string]string{}
	for _, ns := range in.Raw.Namespaces {
		nsLabels[ns.Name] = ns.Labels
	}
	grace := int64(ztunnelGrace)
	for _, ds := range in.Raw.DaemonSets {
		if mesh.AmbientComponent(&ds, s.IstioNamespace) == mesh.ComponentZtunnel && ds.Spec.Template.Spec.TerminationGracePeriodSeconds != nil {
			grace = *ds.Spec.Template.Spec.TerminationGracePeriodSeconds
		}
	}
	type nodeFacts struct {
		pods, noPDB int
		stuck       []string
	}
	nodes := map[string]*nodeFacts{}
	longer := map[string]int64{} // workload → its pods' grace period, when longer than ztunnel's
	for i := range in.Raw.Pods {
		p := &in.Raw.Pods[i]
		if !mesh.IsAmbientPod(p, nsLabels[p.Namespace]) {
			continue
		}
		f := nodes[p.Spec.NodeName]
		if f == nil {
			f = &nodeFacts{}
			nodes[p.Spec.NodeName] = f
		}
		f.pods++
		kind, name := mesh.PodOwner(p)
		obj := p.Namespace + "/" + strings.ToLower(kind) + "/" + name
		pdbs := matchingPDBs(in.PDBs, p)
		switch {
		case kind == "DaemonSet" || p.Annotations[corev1.MirrorPodAnnotationKey] != "":
			// kubectl drain's rules, which ztunnel-roll --drain follows: skipped, not evicted
		case kind == "":
			f.stuck = append(f.stuck, "pod/"+p.Namespace+"/"+p.Name+" (no controller: eviction deletes it for good; --force allows it)")
		case hasEmptyDir(p):
			f.stuck = append(f.stuck, "pod/"+p.Namespace+"/"+p.Name+" (emptyDir data, lost on eviction; --delete-emptydir-data allows it)")
		case blockedNow(pdbs):
			f.stuck = append(f.stuck, "pod/"+p.Namespace+"/"+p.Name+" (its PodDisruptionBudget allows no disruption now)")
		}
		if len(pdbs) == 0 {
			f.noPDB++
		}
		if g := p.Spec.TerminationGracePeriodSeconds; g != nil && *g > grace && kind != "" {
			longer[obj] = max(longer[obj], *g)
		}
	}
	var out []Finding
	for _, n := range sortedKeys(nodes) {
		f := nodes[n]
		out = append(out, Finding{Info, "ZTUNNEL_ROLL_RESETS", "node/" + n,
			fmt.Sprintf("a ztunnel restart on this node resets the long-lived TCP connections of %d ambient pods (%d without a PodDisruptionBudget) after a %ds drain", f.pods, f.noPDB, grace),
			"roll node by node (kubectl istio-upgrade ztunnel-roll), with --drain or --max-connections for connections that must not be reset"})
		if len(f.stuck) > 0 {
			sort.Strings(f.stuck)
			out = append(out, Finding{Warning, "NODE_NOT_DRAINABLE", "node/" + n,
				fmt.Sprintf("ztunnel-roll --drain cannot empty this node: %s", strings.Join(f.stuck, "; ")),
				"give such pods a controller, or allow one disruption in their PDB; or pass the flag named, as to kubectl drain; or roll without --drain"})
		}
	}
	for _, w := range sortedKeys(longer) {
		out = append(out, Finding{Warning, "ZTUNNEL_DRAIN_SHORTER", w,
			fmt.Sprintf("its pods take up to %ds to finish their connections (terminationGracePeriodSeconds), but ztunnel drains for %ds: a ztunnel roll resets what is left", longer[w], grace),
			"ztunnel-roll --drain (its pods get their own grace period), or raise ztunnel's terminationGracePeriodSeconds"})
	}
	target := in.Target
	if target == "" {
		target = newestRevision(s)
	}
	for _, a := range s.NodeAgents {
		obj := "pod/" + s.IstioNamespace + "/" + a.Pod
		if !a.Ready {
			out = append(out, Finding{Warning, "NODE_AGENT_NOT_READY", obj, fmt.Sprintf("the %s agent of node %s is not Ready: that node's ambient pods have no working data plane", a.Component, a.Node),
				"kubectl -n " + s.IstioNamespace + " describe pod " + a.Pod})
		}
		if a.Component == mesh.ComponentZtunnel && target != "" && a.Revision != target {
			out = append(out, Finding{Warning, "ZTUNNEL_ON_OLD_ISTIOD", obj,
				fmt.Sprintf("the ztunnel of node %s is pointed at istiod %s, not %s: cleanup of %s refuses until it moves", a.Node, a.Revision, target, a.Revision),
				"kubectl istio-upgrade ztunnel-roll --to " + target})
		}
	}
	return out
}

// newestRevision is the installed revision running the highest version ("" when unknown).
func newestRevision(s *mesh.Snapshot) string {
	best, bm, bp := "", -1, -1
	for _, r := range s.Revisions {
		m, p, ok := patchOf(r.Version)
		if r.Installed && ok && (best == "" || older(bm, bp, m, p)) {
			best, bm, bp = r.Name, m, p
		}
	}
	return best
}

// matchingPDBs are the PodDisruptionBudgets that select pod p.
func matchingPDBs(pdbs []policyv1.PodDisruptionBudget, p *corev1.Pod) []policyv1.PodDisruptionBudget {
	var out []policyv1.PodDisruptionBudget
	for _, b := range pdbs {
		if b.Namespace != p.Namespace || b.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, b)
		}
	}
	return out
}

// blockedNow says a PDB allows no eviction at this moment (its status, as the disruption controller
// computed it).
func blockedNow(pdbs []policyv1.PodDisruptionBudget) bool {
	for _, b := range pdbs {
		if b.Status.ObservedGeneration > 0 && b.Status.DisruptionsAllowed == 0 {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func hasEmptyDir(p *corev1.Pod) bool {
	for _, v := range p.Spec.Volumes {
		if v.EmptyDir != nil {
			return true
		}
	}
	return false
}
