package migratens

import (
	"fmt"
	"strings"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Plan is what migrate-ns will do, decided from a snapshot before anything changes.
type Plan struct {
	// Target is what namespaces will be labelled with (a revision or a tag); Revision what it resolves to.
	Target   string            `json:"target"`
	Revision string            `json:"revision"`
	Canary   *kube.WorkloadRef `json:"canary,omitempty"`
	// CanaryDone: the --canary workload already runs the target revision (an earlier run verified it).
	CanaryDone bool            `json:"canaryDone,omitempty"`
	Namespaces []NamespacePlan `json:"namespaces"`
	// Batches are the restart batches, in order; the canary, when given, is alone in the first.
	Batches [][]kube.WorkloadRef `json:"batches"`
	Skipped []Skip               `json:"skipped"`
	// RollingNow are Gateway API gateways and waypoints that follow a relabelled namespace (no
	// istio.io/rev of their own): istiod re-deploys them when the label changes, not in a batch.
	RollingNow []string `json:"rollingNow"`
	// Pinned are those --pin-gateways labels with their current revision before any namespace changes.
	Pinned []string `json:"pinned"`
	// Verify are workloads an interrupted run restarted and never gated: gated first, never restarted
	// again, even when their pods already look done.
	Verify []kube.WorkloadRef `json:"verify,omitempty"`
	// Unmanaged are injected pods in the moved namespaces that no restart moves (a Job's, a bare pod),
	// each with the step that does.
	Unmanaged []string `json:"unmanaged"`
}

// unitPrefix names migrate-ns's journal units: one per restart batch.
const unitPrefix = "restart "

// unitName names the unit of one batch by its workloads (batch numbers change between runs).
func unitName(batch []kube.WorkloadRef) string {
	names := make([]string, len(batch))
	for i, w := range batch {
		names[i] = w.String()
	}
	return unitPrefix + strings.Join(names, ",")
}

// kindOf maps WorkloadRef.String's lower-case kind back to the kind.
var kindOf = map[string]string{"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet"}

// Unverified moves the workloads of units an interrupted run began and never finished out of the
// restarts into Verify: restarted once already, they are gated, not restarted again.
func (p *Plan) Unverified(units []string) {
	seen := map[kube.WorkloadRef]bool{}
	for _, u := range units {
		for _, s := range strings.Split(strings.TrimPrefix(u, unitPrefix), ",") {
			parts := strings.SplitN(s, "/", 3)
			if len(parts) != 3 || kindOf[parts[1]] == "" {
				continue
			}
			w := kube.WorkloadRef{Kind: kindOf[parts[1]], Namespace: parts[0], Name: parts[2]}
			if !seen[w] {
				seen[w] = true
				p.Verify = append(p.Verify, w)
			}
		}
	}
	if len(seen) == 0 {
		return
	}
	if p.Canary != nil && seen[*p.Canary] {
		p.Canary, p.CanaryDone = nil, true
	}
	for i := range p.Namespaces {
		keep := p.Namespaces[i].Restart[:0:0]
		for _, w := range p.Namespaces[i].Restart {
			if !seen[w] {
				keep = append(keep, w)
			}
		}
		p.Namespaces[i].Restart = keep
	}
}

// NamespacePlan is one namespace's label change.
type NamespacePlan struct {
	Name        string `json:"name"`
	BeforeLabel string `json:"beforeLabel"`
	AfterLabel  string `json:"afterLabel"`
	Relabel     bool   `json:"relabel"`
	// Restart are the workloads to restart, in order (single-replica ones last). The canary is not here.
	Restart []kube.WorkloadRef `json:"restart"`
}

// Wave is a group of namespaces migrated together: relabelled, then restarted batch by batch.
type Wave struct {
	Namespaces []string             `json:"namespaces"`
	Batches    [][]kube.WorkloadRef `json:"batches"`
}

// Skip is a workload migrate-ns leaves alone, and why.
type Skip struct {
	Workload kube.WorkloadRef `json:"workload"`
	Reason   string           `json:"reason"`
}

// Skip reasons.
const (
	SkipOnTarget = "already injected by the target revision"
	SkipOptOut   = "opts out of injection (sidecar.istio.io/inject=false)"
	SkipGateway  = "gateway: move it with canary-gw and shift"
	SkipPinned   = "pinned to a revision by its pod label istio.io/rev"
	SkipNoPods   = "no pods"
)

// Workload kinds migrate-ns restarts.
var restartable = map[string]bool{"Deployment": true, "StatefulSet": true, "DaemonSet": true}

// BuildPlan decides the label changes, the restart batches and the skips. Workloads whose pods all
// already run the target revision are skipped, so a rerun resumes where a halted run stopped and
// never restarts a workload twice. Single-replica workloads go last in their namespace.
func BuildPlan(s *mesh.Snapshot, namespaces []string, target, revision string, canary *kube.WorkloadRef, batchSize int) (*Plan, error) {
	p := &Plan{Target: target, Revision: revision, Canary: canary, Namespaces: []NamespacePlan{}, Skipped: []Skip{}}
	byName := map[string]mesh.Namespace{}
	for _, n := range s.Namespaces {
		byName[n.Name] = n
	}
	for _, name := range namespaces {
		n, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("namespace %q not found", name)
		}
		if n.Terminating {
			return nil, fmt.Errorf("namespace %q is being deleted", name)
		}
		nsp := NamespacePlan{Name: name, BeforeLabel: n.Selector(), AfterLabel: istio.LabelRev + "=" + target,
			Relabel: n.InjectionLabel != "" || n.RevLabel != target, Restart: []kube.WorkloadRef{}}
		var singles []kube.WorkloadRef
		for _, w := range s.Workloads {
			if w.Namespace != name || !restartable[w.Kind] {
				continue
			}
			ref := kube.WorkloadRef{Kind: w.Kind, Namespace: w.Namespace, Name: w.Name}
			switch {
			case w.OptOut:
				p.Skipped = append(p.Skipped, Skip{ref, SkipOptOut})
			case w.Gateway:
				p.Skipped = append(p.Skipped, Skip{ref, SkipGateway})
			case w.PinnedRevision != "":
				p.Skipped = append(p.Skipped, Skip{ref, SkipPinned})
			case w.Pods == 0:
				p.Skipped = append(p.Skipped, Skip{ref, SkipNoPods})
			case onlyRevision(w.InjectedRevisions, revision):
				p.Skipped = append(p.Skipped, Skip{ref, SkipOnTarget})
			case canary != nil && ref == *canary:
				// restarted first, alone
			case w.Replicas == 1:
				singles = append(singles, ref)
			default:
				nsp.Restart = append(nsp.Restart, ref)
			}
		}
		nsp.Restart = append(nsp.Restart, singles...)
		p.Namespaces = append(p.Namespaces, nsp)
	}
	if canary != nil {
		found := false
		for _, nsp := range namespaces {
			if nsp == canary.Namespace {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("--canary %s is not in the namespaces being migrated", canary)
		}
		for _, sk := range p.Skipped {
			if sk.Workload == *canary && sk.Reason == SkipOnTarget {
				// Verified by an earlier run: resume with the rest.
				p.Canary, p.CanaryDone = nil, true
				return p, nil
			}
			if sk.Workload == *canary {
				return nil, fmt.Errorf("--canary %s: %s", canary, sk.Reason)
			}
		}
		exists := false
		for _, w := range s.Workloads {
			if w.Kind == canary.Kind && w.Namespace == canary.Namespace && w.Name == canary.Name {
				exists = true
			}
		}
		if !exists {
			return nil, fmt.Errorf("--canary %s not found", canary)
		}
	}
	return p, nil
}

// Waves groups the namespaces maxNamespaces at a time and cuts each group's restarts into batches of
// batchSize. With a canary, the first wave is the canary's namespace with the canary alone.
func (p *Plan) Waves(maxNamespaces, batchSize int) []Wave {
	var out []Wave
	if p.Canary != nil {
		out = append(out, Wave{Namespaces: []string{p.Canary.Namespace}, Batches: [][]kube.WorkloadRef{{*p.Canary}}})
	}
	for i := 0; i < len(p.Namespaces); i += maxNamespaces {
		group := p.Namespaces[i:min(i+maxNamespaces, len(p.Namespaces))]
		w := Wave{Batches: [][]kube.WorkloadRef{}}
		var all []kube.WorkloadRef
		for _, n := range group {
			w.Namespaces = append(w.Namespaces, n.Name)
			all = append(all, n.Restart...)
		}
		for j := 0; j < len(all); j += batchSize {
			w.Batches = append(w.Batches, all[j:min(j+batchSize, len(all))])
		}
		out = append(out, w)
	}
	return out
}

func onlyRevision(revs []string, rev string) bool {
	return len(revs) == 1 && revs[0] == rev
}

// Restarts counts the workloads the plan restarts.
func (p *Plan) Restarts() int {
	n := 0
	if p.Canary != nil {
		n++
	}
	for _, ns := range p.Namespaces {
		n += len(ns.Restart)
	}
	return n
}

// ParseWorkloadRef parses "deploy/x", "deployment/x", "sts/x", "ds/x", optionally "ns/kind/name".
func ParseWorkloadRef(s, defaultNS string) (kube.WorkloadRef, error) {
	parts := strings.Split(s, "/")
	ns := defaultNS
	if len(parts) == 3 {
		ns, parts = parts[0], parts[1:]
	}
	if len(parts) != 2 || parts[1] == "" || ns == "" {
		return kube.WorkloadRef{}, fmt.Errorf("want KIND/NAME or NAMESPACE/KIND/NAME, got %q", s)
	}
	kinds := map[string]string{"deploy": "Deployment", "deployment": "Deployment", "deployments": "Deployment",
		"sts": "StatefulSet", "statefulset": "StatefulSet", "statefulsets": "StatefulSet",
		"ds": "DaemonSet", "daemonset": "DaemonSet", "daemonsets": "DaemonSet"}
	k, ok := kinds[strings.ToLower(parts[0])]
	if !ok {
		return kube.WorkloadRef{}, fmt.Errorf("unknown kind %q in %q: use deploy, sts or ds", parts[0], s)
	}
	return kube.WorkloadRef{Kind: k, Namespace: ns, Name: parts[1]}, nil
}

// Relabels counts the namespaces whose labels change.
func (p *Plan) Relabels() int {
	n := 0
	for _, ns := range p.Namespaces {
		if ns.Relabel {
			n++
		}
	}
	return n
}
