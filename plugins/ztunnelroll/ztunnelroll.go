// Package ztunnelroll is `kubectl istio-upgrade ztunnel-roll`: move ambient mode's node agents to a
// revision node by node. ztunnel and istio-cni cannot be canaried (one DaemonSet each), so the upgrade
// is an in-place roll; this step stages it: OnDelete on the DaemonSets, then per node (or node batch)
// cordon, optionally drain or wait for connections to end, replace istio-cni then ztunnel, gate, uncordon.
package ztunnelroll

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/gate"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Options is `ztunnel-roll`: its flags, and the state of one run.
type Options struct {
	To            string
	NodesPerBatch int
	MaxBatches    int
	Drain         bool
	Force         bool
	// DeleteEmptyDirData is kubectl drain's --delete-emptydir-data.
	DeleteEmptyDirData bool
	MaxConnections     int
	Timeout            time.Duration
	RollbackOnFailure  bool

	det     *Details
	rev     string
	version string
	sets    []*agentSet // istio-cni first, then ztunnel: Istio's documented order
	batches [][]string
	done    int      // batches that passed their gate
	held    []string // the failed batch's nodes the step cordoned, kept so for Revert
	// inflight are the node batches an interrupted run began and never finished.
	inflight []journal.Unit
}

// agentSet is one node agent DaemonSet: as planned, and the template the roll gives it.
type agentSet struct {
	component string
	ds        *appsv1.DaemonSet
	want      *appsv1.DaemonSet // ds with the target's image tag and istiod
	patch     bool              // want differs from ds
	// own is the strategy the DaemonSet had before any ztunnel-roll gave it OnDelete: a staged roll
	// keeps it in AnnotationOwnStrategy until the last node is done.
	own appsv1.DaemonSetUpdateStrategy
}

// AnnotationOwnStrategy keeps a DaemonSet's own updateStrategy while a (staged) roll holds it at
// OnDelete: the run that finishes the last node puts it back, even when an earlier run set OnDelete.
const AnnotationOwnStrategy = "istio-upgrade.io/update-strategy"

// AnnotationCordonedBy is on every node the step (or its undo) cordoned, naming the journal entry: an
// operator sees whose cordon it is, and a rerun uncordons only nodes whose cordon is its entry's.
const AnnotationCordonedBy = "istio-upgrade.io/cordoned-by"

// ownStrategy is the DaemonSet's strategy before a roll: the annotation a staged roll left, else its own.
func ownStrategy(ds *appsv1.DaemonSet) appsv1.DaemonSetUpdateStrategy {
	var st appsv1.DaemonSetUpdateStrategy
	if v := ds.Annotations[AnnotationOwnStrategy]; v != "" && json.Unmarshal([]byte(v), &st) == nil {
		return st
	}
	return ds.Spec.UpdateStrategy
}

// Details is the step-specific part of the -o json result.
type Details struct {
	To         string          `json:"to"`
	Revision   string          `json:"revision"`
	Version    string          `json:"version"`
	Components []ComponentPlan `json:"components"`
	Batches    [][]string      `json:"batches"`
	Nodes      []NodeResult    `json:"nodes"`
	// Remaining are nodes --max-batches left for a rerun; the DaemonSets keep OnDelete until none is left.
	Remaining  []string `json:"remaining"`
	RolledBack []string `json:"rolledBack"`
	Warnings   []string `json:"warnings"`
}

// ComponentPlan is one DaemonSet the roll moves.
type ComponentPlan struct {
	Component string `json:"component"`
	DaemonSet string `json:"daemonSet"`
	// Template says whether the step sets the target on the template, or finds it there (helm upgrade).
	Template string `json:"template"`
	Strategy string `json:"strategy"`
}

// NodeResult is one node's roll.
type NodeResult struct {
	Node        string   `json:"node"`
	Batch       int      `json:"batch"`
	Replaced    []string `json:"replaced"`
	Drained     int      `json:"drained"`
	Connections *int     `json:"connectionsAtRestart,omitempty"`
	AmbientPods int      `json:"ambientPodsReady"`
	Seconds     float64  `json:"seconds"`
}

// Name is the step's name in the journal and results.
func (o *Options) Name() string { return "ztunnel-roll" }

// MovesToRevision: the runner refuses a target that skips a minor (--allow-version-skip).
func (o *Options) MovesToRevision() {}

// NewCommand builds `ztunnel-roll`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{NodesPerBatch: 1, MaxConnections: -1, Timeout: 5 * time.Minute, RollbackOnFailure: true}
	cmd := &cobra.Command{
		Use:   "ztunnel-roll --to REVISION_OR_TAG",
		Short: "Move ambient mode's istio-cni and ztunnel to a revision node by node, gated",
		Long: `Move ambient mode's node agents to a revision, one node (or --nodes-per-batch nodes) at a time.
ztunnel and istio-cni cannot be canaried: there is one DaemonSet of each, so the upgrade replaces each
node's pod in place, and a node's ztunnel restart resets the long-lived TCP connections of that node's
pods. Istio's order is kept: the control plane first (the target istiod must be ready), then istio-cni,
then ztunnel.

The DaemonSets get updateStrategy OnDelete and the target's image tag (and, for ztunnel, the target
istiod in XDS_ADDRESS, CA_ADDRESS and istio.io/rev, as the ztunnel chart's revision value sets them), so
nothing rolls by itself. Then per batch of nodes:
  1. cordon the nodes (nothing new is scheduled there);
  2. --drain: evict the node's ambient pods through the Eviction API with kubectl's drain helper
     (PodDisruptionBudgets respected, retried until --timeout; pods without a controller need --force,
     pods with emptyDir data --delete-emptydir-data, as for kubectl drain, else the roll is refused
     before anything changes); or --max-connections N: wait until the node's ztunnel carries at most N
     TCP connections (read from its stats port, 15020, where reachable);
  3. delete the node's istio-cni pod, then its ztunnel pod; the DaemonSet recreates each from the new
     template;
  4. gate: the new pods Ready, the ztunnel SYNCED on the target istiod, the node's ambient pods Ready;
  5. uncordon.
At most --nodes-per-batch nodes are without a serving ztunnel at any moment. A failed gate stops the
roll (exit 75; 74 on timeout) and, with --rollback-on-failure, puts that batch's nodes back on the pods
they ran. When every node runs the target the DaemonSets get their own strategy back.

--max-batches N stops after N batches (a staged roll); rerunning the command continues with the nodes
not yet on the target. undo rolls back the nodes that run moved, last batch first.

With Helm, apply the new spec with the OnDelete strategy, then let this step roll it:
  helm upgrade istio-cni istio/cni -n istio-system --reuse-values --set global.tag=VERSION \
    --set updateStrategy.type=OnDelete
  helm upgrade ztunnel istio/ztunnel -n istio-system --reuse-values --set revision=REV --set tag=VERSION \
    --set updateStrategy.type=OnDelete
  kubectl istio-upgrade ztunnel-roll --to REV`,
		Example: `  # Roll every node's istio-cni and ztunnel to revision 1-31, one node at a time
  kubectl istio-upgrade ztunnel-roll --to 1-31 -y

  # Two nodes at a time, evicting each node's ambient pods first (PDBs respected)
  kubectl istio-upgrade ztunnel-roll --to 1-31 --nodes-per-batch 2 --drain

  # Stage it: the first node only, then the rest after looking at it
  kubectl istio-upgrade ztunnel-roll --to 1-31 --max-batches 1
  kubectl istio-upgrade ztunnel-roll --to 1-31

  # What would be sent, validated by the apiserver, as JSON
  kubectl istio-upgrade ztunnel-roll --to 1-31 --dry-run=server -o json`,
		Args: cli.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&o.To, "to", "", "The revision (or revision tag) whose istiod the node agents move to (required)")
	f.IntVar(&o.NodesPerBatch, "nodes-per-batch", 1, "Nodes rolled at once: at most this many nodes are without a serving ztunnel")
	f.IntVar(&o.MaxBatches, "max-batches", 0, "Stop after this many batches (0: all); a rerun continues")
	f.BoolVar(&o.Drain, "drain", false, "Evict each node's ambient pods (PodDisruptionBudgets respected) before replacing its ztunnel, with kubectl drain's rules")
	f.BoolVar(&o.Force, "force", false, "With --drain: also evict ambient pods without a controller, as kubectl drain --force (they are deleted for good)")
	f.BoolVar(&o.DeleteEmptyDirData, "delete-emptydir-data", false, "With --drain: also evict ambient pods with emptyDir volumes, as kubectl drain --delete-emptydir-data (their data is lost)")
	f.IntVar(&o.MaxConnections, "max-connections", -1, "Wait until the node's ztunnel carries at most this many TCP connections (-1: do not wait)")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "How long one batch may take to pass its gate")
	f.BoolVar(&o.RollbackOnFailure, "rollback-on-failure", true, "When a batch fails its gate, put its nodes back on the pods they ran")
	return step.NewCommand(g, streams, o, cmd)
}

// Validate checks flags without I/O.
func (o *Options) Validate(_ *step.Run, args []string) error {
	switch {
	case len(args) > 0:
		return cli.UsageErrorf("ztunnel-roll takes no arguments (the revision with --to)")
	case o.To == "":
		return cli.UsageErrorf("--to is required: the revision or tag whose istiod the node agents move to")
	case o.NodesPerBatch < 1:
		return cli.UsageErrorf("--nodes-per-batch must be at least 1")
	case o.MaxBatches < 0:
		return cli.UsageErrorf("--max-batches must be 0 (all) or more")
	case o.MaxConnections < -1:
		return cli.UsageErrorf("--max-connections must be -1 (do not wait) or more")
	case o.Drain && o.MaxConnections >= 0:
		return cli.UsageErrorf("--drain and --max-connections are two ways to empty a node: give one")
	case (o.Force || o.DeleteEmptyDirData) && !o.Drain:
		return cli.UsageErrorf("--force and --delete-emptydir-data say what --drain may evict: give --drain too")
	case o.Timeout <= 0:
		return cli.UsageErrorf("--timeout must be positive")
	}
	return nil
}

// Plan resolves the target, works out each DaemonSet's target template and the nodes to roll.
func (o *Options) Plan(ctx context.Context, r *step.Run) (*step.Plan, error) {
	o.det = &Details{To: o.To, Components: []ComponentPlan{}, Batches: [][]string{}, Nodes: []NodeResult{},
		Remaining: []string{}, RolledBack: []string{}, Warnings: []string{}}
	r.Result.Details = o.det
	s := r.Before
	target, err := gate.ReadyTarget(s, o.To)
	if err != nil {
		return nil, err
	}
	rev := target.Name
	o.version = target.Version
	if o.version == "" {
		return nil, cli.BadInputf("the version istiod %s runs is unknown (no image tag): the node agents' image tag cannot be chosen", rev)
	}
	o.rev, o.det.Revision, o.det.Version = rev, rev, o.version
	if err := o.planSets(r); err != nil {
		return nil, err
	}
	o.inflight = nil
	for _, u := range r.InFlight() {
		if strings.HasPrefix(u.Name, unitPrefix) {
			o.inflight = append(o.inflight, u)
		}
	}
	nodes := o.outdatedNodes(s)
	if len(nodes) == 0 && len(o.inflight) == 0 {
		if o.templatesAtTarget() {
			return &step.Plan{Nothing: fmt.Sprintf("ztunnel-roll: every node's node agents already run %s (%s); nothing to do", rev, o.version)}, nil
		}
		o.warn("every node's pods already run the target, but a template does not: it is set so new nodes get it too")
	}
	for i := 0; i < len(nodes); i += o.NodesPerBatch {
		o.batches = append(o.batches, nodes[i:min(i+o.NodesPerBatch, len(nodes))])
	}
	if o.MaxBatches > 0 && len(o.batches) > o.MaxBatches {
		for _, b := range o.batches[o.MaxBatches:] {
			o.det.Remaining = append(o.det.Remaining, b...)
		}
		o.batches = o.batches[:o.MaxBatches]
	}
	o.det.Batches = o.batches
	if err := o.checkDrainable(ctx, r); err != nil {
		return nil, err
	}
	p := &step.Plan{Target: rev, Question: fmt.Sprintf("Roll istio-cni and ztunnel to %s (%s) on %d nodes, %d at a time (each node cordoned%s; its ztunnel restart resets the node's TCP connections)?",
		rev, o.version, countNodes(o.batches), o.NodesPerBatch, o.emptying())}
	for _, a := range o.sets {
		p.Record = append(p.Record, journal.DaemonSetRef(s.IstioNamespace, a.ds.Name))
	}
	p.Access = Access(s.IstioNamespace, o.Drain, o.MaxConnections >= 0)
	return p, nil
}

// Access is what ztunnel-roll does, on what, where (docs/rbac.md); precheck asks for it too.
func Access(istioNS string, drain, connections bool) []kube.Access {
	var out []kube.Access
	for _, ds := range []string{istio.CNIDaemonSet, istio.ZtunnelDaemonSet} {
		out = append(out, step.On(journal.DaemonSetRef(istioNS, ds), "get", "update")...)
	}
	out = append(out, kube.Can("", "pods", istioNS, "list", "delete")...)
	out = append(out, kube.Can("apps", "controllerrevisions", istioNS, "list")...)
	out = append(out, kube.Can("", "nodes", "", "get", "patch")...)
	out = append(out, kube.Can("", "pods", "", "list")...)
	if drain {
		out = append(out, kube.Access{Verb: "create", Resource: "pods", Subresource: "eviction"})
	}
	if connections {
		out = append(out, kube.Access{Verb: "create", Resource: "pods", Subresource: "portforward", Namespace: istioNS})
	}
	return out
}

func (o *Options) emptying() string {
	switch {
	case o.Drain:
		return " and drained"
	case o.MaxConnections >= 0:
		return fmt.Sprintf(", waiting for at most %d connections", o.MaxConnections)
	}
	return ""
}

func countNodes(batches [][]string) int {
	n := 0
	for _, b := range batches {
		n += len(b)
	}
	return n
}

// planSets finds the node agent DaemonSets and the template each gets.
func (o *Options) planSets(r *step.Run) error {
	var found = map[string]*appsv1.DaemonSet{}
	for i := range r.Raw.DaemonSets {
		ds := &r.Raw.DaemonSets[i]
		if c := mesh.AmbientComponent(ds, r.Before.IstioNamespace); c != "" {
			found[c] = ds
		}
	}
	if found[mesh.ComponentZtunnel] == nil {
		return cli.BadInputf("no ztunnel DaemonSet in %s: this mesh does not run ambient mode (ztunnel-roll moves ztunnel and istio-cni)", r.Before.IstioNamespace)
	}
	if found[mesh.ComponentCNI] == nil {
		o.warn("no istio-cni-node DaemonSet in " + r.Before.IstioNamespace + ": only ztunnel is rolled")
	}
	for _, comp := range []string{mesh.ComponentCNI, mesh.ComponentZtunnel} {
		ds := found[comp]
		if ds == nil {
			continue
		}
		want := WithTarget(ds, comp, o.rev, o.version, r.Before.IstioNamespace)
		a := &agentSet{component: comp, ds: ds.DeepCopy(), want: want, patch: !sameTarget(ds, want), own: ownStrategy(ds)}
		o.sets = append(o.sets, a)
		cp := ComponentPlan{Component: comp, DaemonSet: "daemonset/" + ds.Namespace + "/" + ds.Name, Template: "set to " + o.rev + " " + o.version,
			Strategy: strategyText(a.own)}
		if !a.patch {
			cp.Template = "already " + o.rev + " " + o.version
			if ds.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType && o.hasOutdated(r.Before, comp) {
				return cli.BadInputf("daemonset/%s already has the %s template and updateStrategy %s: the DaemonSet controller rolls it by itself, with no node staged. Apply it with --set updateStrategy.type=OnDelete, then run ztunnel-roll", ds.Name, o.rev, ds.Spec.UpdateStrategy.Type)
			}
		}
		if mesh.IsHelmOwned(ds.Labels, ds.Annotations) && a.patch {
			o.warn(fmt.Sprintf("Helm owns daemonset/%s: the next `helm upgrade` puts its old values back unless they say the new ones (see --help)", ds.Name))
		}
		o.det.Components = append(o.det.Components, cp)
	}
	return nil
}

func (o *Options) templatesAtTarget() bool {
	for _, a := range o.sets {
		if a.patch {
			return false
		}
	}
	return true
}

// hasOutdated says some node's agent of comp does not run the target.
func (o *Options) hasOutdated(s *mesh.Snapshot, comp string) bool {
	for _, a := range s.NodeAgents {
		if a.Component == comp && !o.onTarget(a.Version, a.Revision, comp) {
			return true
		}
	}
	return false
}

// onTarget says a node agent runs the target (istio-cni has no istiod: its version decides).
func (o *Options) onTarget(version, revision, comp string) bool {
	return version == o.version && (comp != mesh.ComponentZtunnel || revision == o.rev)
}

// outdatedNodes are the nodes, sorted, where an agent does not run the target.
func (o *Options) outdatedNodes(s *mesh.Snapshot) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range s.NodeAgents {
		if a.Node == "" || seen[a.Node] || o.onTarget(a.Version, a.Revision, a.Component) {
			continue
		}
		if !o.rolls(a.Component) {
			continue
		}
		seen[a.Node] = true
		out = append(out, a.Node)
	}
	sort.Strings(out)
	return out
}

func (o *Options) rolls(comp string) bool {
	for _, a := range o.sets {
		if a.component == comp {
			return true
		}
	}
	return false
}

func (o *Options) warn(w string) { o.det.Warnings = append(o.det.Warnings, w) }

func strategyText(st appsv1.DaemonSetUpdateStrategy) string {
	if st.Type == "" {
		return string(appsv1.RollingUpdateDaemonSetStrategyType)
	}
	return string(st.Type)
}

// nodeList is nodes as one line.
func nodeList(nodes []string) string { return strings.Join(nodes, ",") }

// Rights are what ztunnel-roll asks for without --drain or --max-connections, on an ambient mesh
// (nil otherwise: precheck's step rights).
func Rights(s *mesh.Snapshot, istioNS string) []kube.Access {
	if len(s.NodeAgents) == 0 {
		return nil
	}
	return Access(istioNS, false, false)
}
