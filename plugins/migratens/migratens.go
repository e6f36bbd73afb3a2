// Package migratens is `kubectl istio-upgrade migrate-ns`: move namespaces to a revision or tag and
// restart their workloads in gated batches, proving each batch landed on the new istiod before the next.
package migratens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/checks"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/gate"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/pin"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Options is `migrate-ns`: its flags, and the state of one run.
type Options struct {
	Namespaces               []string
	Selector                 string
	All                      bool
	To                       string
	CanaryStr                string
	BatchSize                int
	MaxUnavailableNamespaces int
	Timeout                  time.Duration
	RollbackOnFailure        bool
	AllowDowntime            bool
	// IncludeSystem lets kube-system, kube-public and kube-node-lease be migrated when named.
	IncludeSystem bool
	// KeepLabels restarts without relabelling (tag-move --restart: the namespaces already select the tag).
	KeepLabels bool
	// PinGateways labels the Gateway API gateways that follow a relabelled namespace with their current
	// revision before anything changes.
	PinGateways bool
	// Analysis gates each namespace on Istio's configuration analysis; StrictAnalysis makes its new
	// warnings block too.
	Analysis       bool
	StrictAnalysis bool
	// Analyzer runs the analysis of namespace ("" = all) as revision rev sees it (tests replace it).
	Analyzer func(ctx context.Context, r *step.Run, namespace, rev string) ([]istio.AnalysisMessage, error)

	analysisBefore   map[string][]istio.AnalysisMessage // per namespace, before it moved
	lastRestart      time.Time                          // the newest restart stamp this run wrote
	canary           *kube.WorkloadRef
	plan             *Plan
	det              *Details
	istiod           []corev1.Pod // target revision's istiod pods
	relabel          []string
	restartedBatches [][]kube.WorkloadRef // what each batch restarted, in order (a rollback walks them backwards)
	inflight         []string             // units an interrupted run began and never gated: gated first
	pins             []pin.Pin
}

// Details is the step-specific part of the -o json result.
type Details struct {
	Plan       *Plan        `json:"plan"`
	Gates      []GateResult `json:"gates"`
	Restarted  []string     `json:"restarted"`
	RolledBack bool         `json:"rolledBack"`
	Halted     string       `json:"halted,omitempty"`
	Warnings   []string     `json:"warnings"`
	// Analysis is each namespace's analysis gate: Istio's analyzers before the move (as the revision it
	// ran sees it) and after (as the target sees it).
	Analysis []AnalysisGate `json:"analysis"`
}

// AnalysisGate is one namespace's analysis gate, as printed in -o json.
type AnalysisGate struct {
	Namespace string `json:"namespace"`
	// Before and After count the namespace's error and warning messages.
	Before      int      `json:"before"`
	After       int      `json:"after"`
	NewErrors   []string `json:"newErrors"`
	NewWarnings []string `json:"newWarnings"`
	Passed      bool     `json:"passed"`
}

// GateResult is one batch's gate, as printed in -o json.
type GateResult struct {
	Batch     int      `json:"batch"`
	Workloads []string `json:"workloads"`
	Passed    bool     `json:"passed"`
	Reason    string   `json:"reason,omitempty"`
	Seconds   float64  `json:"seconds"`
	Pods      int      `json:"pods"`
	// Metrics are istiod's gate counters before → after the batch.
	Metrics map[string][2]float64 `json:"metrics,omitempty"`
	// Requests is the request-metrics gate: per check, each workload's figures against its baseline,
	// the queries and the verdict.
	Requests *step.RequestGate `json:"requests,omitempty"`
}

// NewOptions returns migrate-ns options with the flag defaults.
func NewOptions() *Options {
	return &Options{BatchSize: 5, MaxUnavailableNamespaces: 1, Timeout: 5 * time.Minute, PinGateways: true, Analysis: true, Analyzer: analyzeLive}
}

// Name is the step's name in the journal and results.
func (o *Options) Name() string { return "migrate-ns" }

// MovesToRevision: the runner refuses a target that skips a minor (--allow-version-skip).
func (o *Options) MovesToRevision() {}

// MovesTraffic: each batch is gated on its workloads' requests too (the runner's request gate).
func (o *Options) MovesTraffic() {}

// NewCommand builds `migrate-ns`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "migrate-ns (NAMESPACE... | -l SELECTOR | --all) --to REVISION_OR_TAG",
		Short: "Move namespaces to a revision or tag and restart workloads in verified batches",
		Long: `Move namespaces to a revision (or a revision tag) and restart their workloads in batches, proving
each batch landed before starting the next.

Per namespace: istio-injection is removed and istio.io/rev=<target> set (one injection selector), the
prior labels recorded in the journal; restarts wait until a dry-run pod there is injected by the target
(the apiserver applies new namespace labels to webhook selection a moment late). Deployments,
StatefulSets and DaemonSets are restarted the way
'kubectl rollout restart' does, in batches; workloads whose pods already run the target revision are
skipped (a rerun resumes and never restarts a workload twice), as are workloads that opt out of
injection, gateways (use canary-gw and shift) and workloads pinned by their own istio.io/rev label.

--all and -l never take the Istio namespace or Kubernetes' own (kube-system, kube-public,
kube-node-lease); they are listed as left out. Named as arguments, the Istio namespace is refused and
the system ones need --include-system.

After each batch, a gate: every rollout complete (watched), every new pod injected by the target
revision, its proxy SYNCED on the target istiod (syncz), and the target istiod's error counters
(rejected configs, push errors) did not rise. After each wave, each of its namespaces is analysed with
Istio's analyzers (istioctl analyze's) as the target revision sees it, and compared with its analysis
before the move as the revision it ran: a new error fails the gate (configuration labelled istio.io/rev
for the old revision is invisible to the new one, a missing Gateway shows as IST0101); new warnings are
reported, and fail it with --strict-analysis. A failed gate halts the step (exit 75), a timed-out one too (exit 74);
with --rollback-on-failure the namespaces are relabelled back and what was restarted is restarted
again onto the old revision, in the same batches, last first, each gated before the next.

Gateway API gateways and waypoints that follow a relabelled namespace (no istio.io/rev of their own)
would roll the moment the label changes: istiod re-deploys them itself, outside the gated batches. So by
default each is first labelled istio.io/rev=<the revision it runs now> (pinned; undo takes the label
back after the namespaces) and stays there until migrate-gw moves it, gated. --pin-gateways=false lets
them roll with their namespace (named in the plan as rollingNow, and warned about).

Before anything changes, workloads that cannot restart without downtime (Recreate strategy, or a
rollout that would leave no ready pod) stop the step unless --allow-downtime; single-replica
workloads are warned about and restarted last.`,
		Example: `  # Canary first: migrate one namespace, restart details-v1 alone, verify, then ask to continue
  kubectl istio-upgrade migrate-ns bookinfo --to 1-31 --canary deploy/details-v1

  # Then the rest, two namespaces at a time, 5 workloads per batch, rolling back on failure
  kubectl istio-upgrade migrate-ns --all --to 1-31 --max-unavailable-namespaces 2 --batch-size 5 --rollback-on-failure -y

  # Move every namespace labelled team=payments to the tag prod-stable
  kubectl istio-upgrade migrate-ns -l team=payments --to prod-stable

  # What would happen, validated by the apiserver, without changing anything
  kubectl istio-upgrade migrate-ns shop --to 1-31 --dry-run=server -o json`,
	}
	o.addFlags(cmd.Flags())
	return step.NewCommand(g, streams, o, cmd)
}

func (o *Options) addFlags(f *pflag.FlagSet) {
	f.StringVarP(&o.Selector, "selector", "l", "", "Migrate the namespaces matching this label selector")
	f.BoolVar(&o.All, "all", false, "Migrate every namespace that selects a revision (injection label or istio.io/rev)")
	f.StringVar(&o.To, "to", "", "The revision or revision tag to label namespaces with (required)")
	f.StringVar(&o.CanaryStr, "canary", "", "Restart this workload (KIND/NAME or NAMESPACE/KIND/NAME) first, alone, verify it, and ask before continuing (-y continues without asking)")
	f.IntVar(&o.BatchSize, "batch-size", 5, "Workloads restarted together before each gate")
	f.IntVar(&o.MaxUnavailableNamespaces, "max-unavailable-namespaces", 1, "Namespaces relabelled and migrating at the same time")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "How long one batch may take to pass its gate")
	f.BoolVar(&o.RollbackOnFailure, "rollback-on-failure", false, "When a gate fails, relabel the touched namespaces back and restart what was restarted")
	f.BoolVar(&o.AllowDowntime, "allow-downtime", false, "Restart workloads even when their rollout would leave no ready pod")
	f.BoolVar(&o.PinGateways, "pin-gateways", true, pin.Help)
	f.BoolVar(&o.Analysis, "analysis", true, "After each namespace moves, gate on Istio's configuration analysis: no new error as the target revision sees the namespace")
	f.BoolVar(&o.StrictAnalysis, "strict-analysis", false, "Let new analysis warnings fail the gate too (they are reported either way)")
	f.BoolVar(&o.IncludeSystem, "include-system", false, "Allow kube-system, kube-public and kube-node-lease when named as arguments (never taken by --all or -l)")
}

// Validate checks flags and arguments without I/O.
func (o *Options) Validate(_ *step.Run, args []string) error {
	o.Namespaces = args
	modes := 0
	if len(o.Namespaces) > 0 {
		modes++
	}
	if o.Selector != "" {
		modes++
	}
	if o.All {
		modes++
	}
	if modes != 1 {
		return cli.UsageErrorf("give exactly one of: namespaces as arguments, -l SELECTOR, or --all")
	}
	if o.To == "" {
		return cli.UsageErrorf("--to is required: the revision or tag to move the namespaces to")
	}
	if o.BatchSize < 1 || o.MaxUnavailableNamespaces < 1 {
		return cli.UsageErrorf("--batch-size and --max-unavailable-namespaces must be at least 1")
	}
	if o.Timeout <= 0 {
		return cli.UsageErrorf("--timeout must be positive")
	}
	if o.CanaryStr != "" {
		def := ""
		if len(o.Namespaces) == 1 {
			def = o.Namespaces[0]
		}
		ref, err := ParseWorkloadRef(o.CanaryStr, def)
		if err != nil {
			return cli.UsageErrorf("--canary: %v", err)
		}
		o.canary = &ref
	}
	return nil
}

// Plan resolves --to, the namespaces and the canary, and applies the zero-downtime guard.
func (o *Options) Plan(ctx context.Context, r *step.Run) (*step.Plan, error) {
	o.det = &Details{Gates: []GateResult{}, Restarted: []string{}, Warnings: []string{}, Analysis: []AnalysisGate{}}
	r.Result.Details = o.det
	if err := o.validateCluster(ctx, r); err != nil {
		return nil, err
	}
	// Without the right to list Gateways the plan cannot name them: said, not fatal (the step's own
	// access check reports what it needs).
	gws, err := mesh.ListGatewayAPI(ctx, r.C.Dynamic, "")
	if err != nil {
		o.det.Warnings = append(o.det.Warnings, "Gateway API gateways that follow these namespaces are not shown: "+err.Error())
	}
	follows := followsRelabel(o.plan)
	if o.PinGateways {
		o.pins = pin.Pins(r.Before, gws, func(g mesh.GatewayAPIGateway) bool { _, ok := follows(g); return ok })
	}
	o.plan.RollingNow = pin.RollingNow(gws, o.pins, follows)
	o.plan.Pinned = []string{}
	for _, p := range o.pins {
		o.plan.Pinned = append(o.plan.Pinned, p.String())
		r.Progress.Printf("%s before its namespace is relabelled; move it with migrate-gw", p)
	}
	for _, g := range o.plan.RollingNow {
		w := fmt.Sprintf("%s rolls when its namespace is relabelled: istiod re-deploys it at once, outside the gated batches (--pin-gateways keeps it where it is)", g)
		o.det.Warnings = append(o.det.Warnings, w)
		r.Progress.Printf("warning: %s", w)
	}
	// Pods no restart moves are named with the step that does, never left behind without a word.
	o.plan.Unmanaged = []string{}
	moving := map[string]bool{}
	for _, n := range o.plan.Namespaces {
		moving[n.Name] = true
	}
	for _, u := range r.Before.Unmanaged {
		if moving[u.Namespace] && u.InjectedRevision != o.plan.Revision {
			line := fmt.Sprintf("pod/%s/%s (%s) stays on %s: %s", u.Namespace, u.Pod, orController(u.Owner), u.InjectedRevision, u.MoveTo(o.plan.Revision))
			o.plan.Unmanaged = append(o.plan.Unmanaged, line)
			r.Progress.Printf("warning: %s", line)
		}
	}
	p := &step.Plan{Question: fmt.Sprintf("Relabel %d namespaces to %s (%s) and restart %d workloads in gated batches of %d?",
		o.plan.Relabels(), o.To, o.plan.Revision, o.plan.Restarts(), o.BatchSize), Target: o.plan.Revision}
	if len(o.plan.Verify) > 0 {
		p.Question = fmt.Sprintf("Gate %d workloads an interrupted run restarted, then %s", len(o.plan.Verify), p.Question)
		for _, w := range o.plan.Verify {
			p.Slim = append(p.Slim, journal.WorkloadRef(w.Kind, w.Namespace, w.Name))
		}
	}
	if o.plan.Restarts() == 0 && o.plan.Relabels() == 0 && len(o.plan.Verify) == 0 {
		p.Nothing = fmt.Sprintf("migrate-ns: every selected namespace already selects %s and every workload runs %s; nothing to do", o.To, o.plan.Revision)
	}
	for _, n := range o.plan.Namespaces {
		p.Record = append(p.Record, journal.NamespaceRef(n.Name))
		if n.Relabel {
			p.Access = append(p.Access, step.On(journal.NamespaceRef(n.Name), "patch")...)
		}
		for _, w := range n.Restart {
			p.Slim = append(p.Slim, journal.WorkloadRef(w.Kind, w.Namespace, w.Name))
		}
	}
	if o.plan.Canary != nil {
		p.Slim = append(p.Slim, journal.WorkloadRef(o.plan.Canary.Kind, o.plan.Canary.Namespace, o.plan.Canary.Name))
	}
	// Restarts are patched, watched to the end of their rollout, and their pods listed by the gate.
	for _, w := range p.Slim {
		p.Access = append(p.Access, step.On(w, "patch", "list", "watch")...)
		p.Access = append(p.Access, kube.Can("", "pods", w.Namespace, "list")...)
	}
	return p, nil
}

// followsRelabel says which Gateway API gateways and waypoints follow a namespace the plan relabels:
// those without an istio.io/rev of their own.
func followsRelabel(p *Plan) func(mesh.GatewayAPIGateway) (string, bool) {
	relabel := map[string]bool{}
	for _, n := range p.Namespaces {
		relabel[n.Name] = n.Relabel
	}
	return func(g mesh.GatewayAPIGateway) (string, bool) { return "", g.RevLabel == "" && relabel[g.Namespace] }
}

// Apply relabels and restarts wave by wave, gating every batch; it stops between batches when told to.
func (o *Options) Apply(ctx context.Context, r *step.Run) error {
	start := time.Now()
	err := pin.Apply(ctx, r, o.pins, o.Timeout)
	if err == nil {
		err = o.migrate(ctx, r)
	}
	skippedOnTarget := 0
	for _, s := range o.plan.Skipped {
		if s.Reason == SkipOnTarget {
			skippedOnTarget++
		}
	}
	switch r.DryRun {
	case cli.DryRunClient:
		r.Result.Summary = fmt.Sprintf("migrate-ns would relabel %d namespaces to %s (%s) and restart %d workloads; %d skipped",
			len(o.relabel), o.To, o.plan.Revision, o.plan.Restarts(), len(o.plan.Skipped))
	case cli.DryRunServer:
		r.Result.Summary = fmt.Sprintf("migrate-ns (server dry run): %d namespaces and %d workloads accepted by the apiserver; nothing changed",
			len(o.relabel), o.plan.Restarts())
	default:
		r.Result.Summary = fmt.Sprintf("migrate-ns: %d namespaces to %s (%s), %d workloads restarted in %d gated batches, %d already on target, in %s",
			len(o.relabel), o.To, o.plan.Revision, o.restarted(), len(o.det.Gates), skippedOnTarget, time.Since(start).Round(time.Second))
	}
	if err != nil {
		o.det.Halted = err.Error()
	}
	return err
}

// validateCluster resolves --to, the namespaces and the canary, builds the plan and applies the
// zero-downtime guard. Any error here leaves the cluster untouched (exit 65).
func (o *Options) validateCluster(ctx context.Context, r *step.Run) error {
	s, raw := r.Before, r.Raw
	rev, _, ok := s.Resolver().Resolve(o.To)
	if !ok {
		return cli.BadInputf("--to %s is neither an installed revision nor a revision tag (see `kubectl istio-upgrade status`)", o.To)
	}
	var target *mesh.Revision
	for i := range s.Revisions {
		if s.Revisions[i].Name == rev {
			target = &s.Revisions[i]
		}
	}
	if target == nil || !target.Installed || target.Desired == 0 || target.Ready < target.Desired {
		state := "not installed"
		if target != nil && target.Installed {
			state = fmt.Sprintf("%d/%d ready", target.Ready, target.Desired)
		}
		return cli.BadInputf("the istiod of revision %s is not ready (%s): install it or wait before migrating", rev, state)
	}
	for _, p := range raw.IstiodPods {
		if istio.RevisionOf(p.Labels) == rev {
			o.istiod = append(o.istiod, p)
		}
	}
	namespaces, err := o.selectNamespaces(ctx, r)
	if err != nil {
		return err
	}
	plan, err := BuildPlan(s, namespaces, o.To, rev, o.canary, o.BatchSize)
	if err != nil {
		return cli.BadInputf("%v", err)
	}
	if o.KeepLabels {
		for i := range plan.Namespaces {
			plan.Namespaces[i].Relabel = false
			plan.Namespaces[i].AfterLabel = plan.Namespaces[i].BeforeLabel
		}
	}
	var inflight []string
	for _, u := range r.InFlight() {
		if strings.HasPrefix(u.Name, unitPrefix) {
			inflight = append(inflight, u.Name)
		}
	}
	plan.Unverified(inflight)
	o.inflight = inflight
	o.plan = plan
	o.det.Plan = plan
	return o.guard(ctx, r)
}

func (o *Options) selectNamespaces(ctx context.Context, r *step.Run) ([]string, error) {
	s := r.Before
	exists := map[string]bool{}
	for _, n := range s.Namespaces {
		exists[n.Name] = true
	}
	var out []string
	switch {
	case o.All:
		out = mesh.InjectedNamespaces(s)
	case o.Selector != "":
		l, err := r.C.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: o.Selector})
		if err != nil {
			return nil, cli.BadInputf("-l %s: %v", o.Selector, err)
		}
		for _, n := range l.Items {
			out = append(out, n.Name)
		}
	default:
		var missing []string
		for _, n := range o.Namespaces {
			if !exists[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return nil, cli.BadInputf("namespaces not found: %s", strings.Join(missing, ", "))
		}
		out = o.Namespaces
	}
	var filtered, left []string
	for _, n := range out {
		switch {
		case n == s.IstioNamespace:
			if len(o.Namespaces) > 0 {
				return nil, cli.BadInputf("refusing to relabel the Istio namespace %s", n)
			}
			left = append(left, n)
		case SystemNamespace(n) && !o.IncludeSystem:
			if len(o.Namespaces) > 0 {
				return nil, cli.BadInputf("refusing to relabel the system namespace %s: its pods run the cluster; give --include-system if you really mean it", n)
			}
			left = append(left, n)
		default:
			filtered = append(filtered, n)
		}
	}
	if len(left) > 0 {
		r.Progress.Printf("left out: %s (the Istio and system namespaces are migrated only by name, the system ones with --include-system)", strings.Join(left, ", "))
		o.det.Warnings = append(o.det.Warnings, "left out: "+strings.Join(left, ", "))
	}
	if len(filtered) == 0 {
		return nil, cli.BadInputf("no namespaces selected")
	}
	return filtered, nil
}

// SystemNamespace says whether a namespace is Kubernetes' own: never migrated by --all or -l, and by
// name only with --include-system.
func SystemNamespace(n string) bool {
	switch n {
	case "kube-system", "kube-public", "kube-node-lease":
		return true
	}
	return false
}

// guard stops before anything changes when a restart would drop a workload to zero ready pods, and
// warns about everything else precheck's guardrails find in the workloads it will restart.
func (o *Options) guard(ctx context.Context, r *step.Run) error {
	raw := r.Raw
	restart := map[kube.WorkloadRef]bool{}
	if o.plan.Canary != nil {
		restart[*o.plan.Canary] = true
	}
	for _, n := range o.plan.Namespaces {
		for _, w := range n.Restart {
			restart[w] = true
		}
	}
	pdbs, _ := r.C.Kube.PolicyV1().PodDisruptionBudgets("").List(ctx, metav1.ListOptions{})
	hpas, _ := r.C.Kube.AutoscalingV2().HorizontalPodAutoscalers("").List(ctx, metav1.ListOptions{})
	var pdbItems []policyv1.PodDisruptionBudget
	var hpaItems []autoscalingv2.HorizontalPodAutoscaler
	if pdbs != nil && hpas != nil {
		pdbItems, hpaItems = pdbs.Items, hpas.Items
	}
	var blocking, stuck []string
	for i := range raw.Deployments {
		d := &raw.Deployments[i]
		if !restart[kube.WorkloadRef{Kind: "Deployment", Namespace: d.Namespace, Name: d.Name}] {
			continue
		}
		fs := checks.DeploymentGuardrails(d, pdbItems, hpaItems)
		fs = append(fs, checks.GracefulShutdown("deployment/"+d.Namespace+"/"+d.Name, d.Namespace, &d.Spec.Template, raw.Services)...)
		for _, f := range fs {
			if f.Severity != checks.Info {
				o.det.Warnings = append(o.det.Warnings, f.Code+" "+f.Object+": "+f.Message)
			}
		}
		if drops := dropsToZero(d); drops != "" {
			blocking = append(blocking, fmt.Sprintf("deployment/%s/%s: %s", d.Namespace, d.Name, drops))
		}
	}
	for i := range raw.StatefulSets {
		ss := &raw.StatefulSets[i]
		if !restart[kube.WorkloadRef{Kind: "StatefulSet", Namespace: ss.Namespace, Name: ss.Name}] {
			continue
		}
		if never := statefulSetNeverRolls(ss); never != "" {
			stuck = append(stuck, fmt.Sprintf("statefulset/%s/%s: %s", ss.Namespace, ss.Name, never))
		} else if drops := statefulSetDropsToZero(ss); drops != "" {
			blocking = append(blocking, fmt.Sprintf("statefulset/%s/%s: %s", ss.Namespace, ss.Name, drops))
		}
	}
	for i := range raw.DaemonSets {
		ds := &raw.DaemonSets[i]
		if !restart[kube.WorkloadRef{Kind: "DaemonSet", Namespace: ds.Namespace, Name: ds.Name}] {
			continue
		}
		if ds.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType {
			stuck = append(stuck, fmt.Sprintf("daemonset/%s/%s: updateStrategy OnDelete: a restart replaces no pod until each is deleted by hand", ds.Namespace, ds.Name))
			continue
		}
		drops, gap := daemonSetDropsToZero(ds)
		if drops != "" {
			blocking = append(blocking, fmt.Sprintf("daemonset/%s/%s: %s", ds.Namespace, ds.Name, drops))
		} else if gap != "" {
			o.det.Warnings = append(o.det.Warnings, fmt.Sprintf("daemonset/%s/%s: %s", ds.Namespace, ds.Name, gap))
		}
	}
	if len(stuck) > 0 {
		return cli.BadInputf("these workloads would never finish a restart, so their gate could only time out (nothing was changed):\n  %s\nchange their update strategy, or migrate their namespace without them (istio.io/rev on the workload pins it)", strings.Join(stuck, "\n  "))
	}
	for _, w := range o.det.Warnings {
		r.Progress.Printf("warning: %s", w)
	}
	if len(blocking) > 0 && !o.AllowDowntime {
		return cli.BadInputf("these restarts would leave no ready pod (nothing was changed):\n  %s\nfix their rollout strategy, or pass --allow-downtime to accept the gap", strings.Join(blocking, "\n  "))
	}
	return nil
}

// dropsToZero says why a Deployment's rollout restart would pass through zero ready pods, or "".
func dropsToZero(d *appsv1.Deployment) string {
	n := 1
	if d.Spec.Replicas != nil {
		n = int(*d.Spec.Replicas)
	}
	if n == 0 {
		return ""
	}
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return "strategy Recreate stops every pod first"
	}
	u, _ := checks.RollingParams(d)
	if n-u < 1 {
		return fmt.Sprintf("maxUnavailable %d of %d replicas", u, n)
	}
	return ""
}

// statefulSetNeverRolls says why a restart of a StatefulSet would never complete, or "".
func statefulSetNeverRolls(ss *appsv1.StatefulSet) string {
	st := ss.Spec.UpdateStrategy
	if st.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return "updateStrategy OnDelete: a restart replaces no pod until each is deleted by hand"
	}
	if ru := st.RollingUpdate; ru != nil && ru.Partition != nil && *ru.Partition > 0 {
		return fmt.Sprintf("partition %d: pods below ordinal %d are never replaced", *ru.Partition, *ru.Partition)
	}
	return ""
}

// statefulSetDropsToZero says why a StatefulSet's rolling restart would pass through zero ready pods:
// it deletes a pod before starting its replacement, so one replica (or maxUnavailable of all) is a gap.
func statefulSetDropsToZero(ss *appsv1.StatefulSet) string {
	n := 1
	if ss.Spec.Replicas != nil {
		n = int(*ss.Spec.Replicas)
	}
	if n == 0 {
		return ""
	}
	if n == 1 {
		return "one replica: a StatefulSet stops its pod before starting the replacement"
	}
	if ru := ss.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
		if u, _ := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, n, false); n-u < 1 {
			return fmt.Sprintf("maxUnavailable %d of %d replicas", u, n)
		}
	}
	return ""
}

// daemonSetDropsToZero says why a DaemonSet's rolling restart would pass through zero ready pods (the
// rule Deployments follow), and, as a warning, that nodes go without their pod for a moment: without
// maxSurge each node's pod stops before its replacement starts.
func daemonSetDropsToZero(ds *appsv1.DaemonSet) (drops, gap string) {
	n := int(ds.Status.DesiredNumberScheduled)
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	unavailable, surge := intstr.FromInt32(1), intstr.FromInt32(0)
	if ru != nil && ru.MaxUnavailable != nil {
		unavailable = *ru.MaxUnavailable
	}
	if ru != nil && ru.MaxSurge != nil {
		surge = *ru.MaxSurge
	}
	if s, _ := intstr.GetScaledValueFromIntOrPercent(&surge, n, true); s > 0 || n == 0 {
		return "", ""
	}
	u, _ := intstr.GetScaledValueFromIntOrPercent(&unavailable, n, true)
	if n-u < 1 {
		return fmt.Sprintf("maxUnavailable %d of %d pods and no maxSurge", u, n), ""
	}
	return "", "maxSurge 0: each node's pod stops before its replacement starts (node-local traffic pauses; set maxSurge 1, maxUnavailable 0)"
}

func (o *Options) nsPlan(name string) *NamespacePlan {
	for i := range o.plan.Namespaces {
		if o.plan.Namespaces[i].Name == name {
			return &o.plan.Namespaces[i]
		}
	}
	return nil
}

// labelPatch sets or removes (nil) namespace labels in one merge patch.
type labelPatch struct {
	Metadata struct {
		Labels map[string]*string `json:"labels"`
	} `json:"metadata"`
}

// label sets the injection labels of a namespace (values given, nil removes) through the run's one
// write path, noting the patch for -o json|yaml.
func label(ctx context.Context, r *step.Run, ns, verb string, labels map[string]*string) error {
	var p labelPatch
	p.Metadata.Labels = labels
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	r.Patch("namespace/"+ns, string(types.MergePatchType), body)
	return r.Write("namespace/"+ns, verb, func([]string) error {
		if _, err := r.C.Kube.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, body, r.PatchOptions()); err != nil {
			return fmt.Errorf("label namespace %s: %w", ns, err)
		}
		return nil
	})
}

// migrate runs the waves: relabel, restart in batches, gate each batch (gates only on a real run).
func (o *Options) migrate(ctx context.Context, r *step.Run) error {
	var baseline map[string]float64
	var merr error
	if r.Live() {
		baseline, merr = r.Istiod.Metrics(ctx, o.istiod, o.plan.Revision)
		if merr != nil {
			r.Progress.Printf("warning: istiod %s metrics unavailable (%v): the gates check rollouts, injection and sync only", o.plan.Revision, merr)
			o.det.Warnings = append(o.det.Warnings, "istiod metrics unavailable: "+merr.Error())
		}
	}
	if r.Live() && o.Analysis {
		o.analysisBaseline(ctx, r)
	}
	batchNo := 0
	if len(o.plan.Verify) > 0 && r.Live() {
		// The batch an interrupted run restarted: its gate never ran. Gated now, restarted never again.
		batchNo++
		r.Progress.Printf("batch %d: gating %d workloads the interrupted run restarted", batchNo, len(o.plan.Verify))
		o.restartedBatches = append(o.restartedBatches, o.plan.Verify)
		g, err := o.runBatch(ctx, r, batchNo, o.plan.Verify, baseline, false)
		o.det.Gates = append(o.det.Gates, g)
		if err != nil {
			return err
		}
		for _, u := range o.inflight {
			r.Finish(u)
		}
	}
	for wi, w := range o.plan.Waves(o.MaxUnavailableNamespaces, o.BatchSize) {
		if r.Stopping() {
			return r.Cancelled()
		}
		for _, ns := range w.Namespaces {
			np := o.nsPlan(ns)
			if np == nil || !np.Relabel || slices.Contains(o.relabel, ns) {
				continue
			}
			err := label(ctx, r, ns, "labeled "+np.AfterLabel, map[string]*string{istio.LabelRev: &o.To, istio.LabelInjection: nil})
			if err != nil {
				return err
			}
			o.relabel = append(o.relabel, ns)
			if r.Live() {
				r.Progress.Printf("namespace/%s labeled %s (was %s)", ns, np.AfterLabel, orNone(np.BeforeLabel))
				awaitInjector(ctx, r.C.Kube, r.Progress, ns, o.plan.Revision)
			}
		}
		for _, b := range w.Batches {
			if r.Stopping() {
				return r.Cancelled()
			}
			batchNo++
			g, err := o.runBatch(ctx, r, batchNo, b, baseline, true)
			if r.Live() {
				o.det.Gates = append(o.det.Gates, g)
			}
			if err != nil {
				return err // in a server dry run: the apiserver refused a restart
			}
			if merr == nil && g.Metrics != nil {
				for k, v := range g.Metrics {
					baseline[k] = v[1]
				}
			}
		}
		if r.Live() && o.analysisBefore != nil {
			if err := o.analysisGate(ctx, r, w.Namespaces); err != nil {
				return err
			}
		}
		if wi == 0 && o.plan.Canary != nil && r.Live() {
			if goOn, err := o.confirm(r); err != nil || !goOn {
				o.det.Halted = "stopped after the canary for confirmation"
				r.Progress.Printf("Canary %s is on %s and SYNCED. Rerun with -y to continue (the canary will be skipped).", o.plan.Canary, o.plan.Revision)
				return err
			}
		}
	}
	return nil
}

// confirm asks to continue after the canary through the runner's question (its timeout, exit 67 on
// "no"). Without -y and without a terminal the step pauses after the canary (exit 0): the runbook's
// next command moves the rest, once someone looked at the canary.
func (o *Options) confirm(r *step.Run) (bool, error) {
	if r.Yes {
		return true, nil
	}
	if !cli.IsTerminal(r.In) {
		return false, nil
	}
	return true, r.Ask(fmt.Sprintf("Canary %s verified on %s. Continue with the remaining workloads?", o.plan.Canary, o.plan.Revision))
}

// restartStamps are the restart stamps the batch's workloads carried when the step read them.
func (o *Options) restartStamps(r *step.Run, batch []kube.WorkloadRef) []string {
	want := map[kube.WorkloadRef]bool{}
	for _, w := range batch {
		want[w] = true
	}
	var out []string
	r.Raw.EachWorkload(func(kind string, m metav1.Object, t *corev1.PodTemplateSpec) {
		if want[kube.WorkloadRef{Kind: kind, Namespace: m.GetNamespace(), Name: m.GetName()}] && t.Annotations[kube.RestartedAtAnnotation] != "" {
			out = append(out, t.Annotations[kube.RestartedAtAnnotation])
		}
	})
	return out
}

// runBatch restarts one batch (restart false: a batch an interrupted run restarted, only gated) as one
// unit of the runner: journaled before its first restart, gated on rollouts, injection, SYNCED,
// istiod's counters and the workloads' own requests.
func (o *Options) runBatch(ctx context.Context, r *step.Run, n int, batch []kube.WorkloadRef, baseline map[string]float64, restart bool) (GateResult, error) {
	g := GateResult{Batch: n}
	var moved []string
	for _, w := range batch {
		g.Workloads = append(g.Workloads, w.String())
		moved = append(moved, w.Namespace+"/"+w.Name)
	}
	u := step.Unit{Label: fmt.Sprintf("batch %d", n), Journal: unitName(batch), Objects: g.Workloads, Moves: moved, Timeout: o.Timeout,
		Gate: func(ctx context.Context) error { return o.gateBatch(ctx, r, n, batch, baseline, &g) }}
	if restart {
		u.Write = func(ctx context.Context) error { return o.restart(ctx, r, n, batch, g.Workloads) }
	}
	res, err := r.RunUnit(ctx, u)
	g.Requests, g.Seconds, g.Reason, g.Passed = res.Requests, res.Seconds, res.Reason, res.Passed
	if err == nil && r.Live() {
		r.Progress.Printf("batch %d: gate passed (%d pods on %s, SYNCED) in %.1fs", n, g.Pods, o.plan.Revision, g.Seconds)
	}
	return g, err
}

// restart restarts a batch's workloads, one stamp for all (after the stamps they carry).
func (o *Options) restart(ctx context.Context, r *step.Run, n int, batch []kube.WorkloadRef, names []string) error {
	now := kube.NextRestart(time.Now(), o.restartStamps(r, batch)...)
	o.lastRestart = now
	if r.Live() { // grown as each restart lands: a rollback restarts back what a half-done batch restarted
		o.restartedBatches = append(o.restartedBatches, nil)
	}
	for _, w := range batch {
		if body, err := kube.RestartPatch(now); err == nil {
			r.Patch(w.String(), string(types.StrategicMergePatchType), body)
		}
		if err := r.Write(w.String(), "restarted", func(dry []string) error { return kube.Restart(ctx, r.C.Kube, w, now, dry) }); err != nil {
			return err
		}
		if r.Live() {
			last := len(o.restartedBatches) - 1
			o.restartedBatches[last] = append(o.restartedBatches[last], w)
			o.det.Restarted = append(o.det.Restarted, w.String())
		}
	}
	if r.Live() {
		r.Progress.Printf("batch %d: restarted %s", n, strings.Join(names, ", "))
	}
	return nil
}

// gateBatch is a batch's control-plane gate: rollouts complete, every pod injected by the target
// revision and SYNCED, istiod's error counters not risen.
func (o *Options) gateBatch(ctx context.Context, r *step.Run, n int, batch []kube.WorkloadRef, baseline map[string]float64, g *GateResult) error {
	if err := kube.WaitRollouts(ctx, r.C.Kube, batch, func(s string) { r.Progress.Update("batch %d: %s", n, s) }); err != nil {
		return err
	}
	err := r.Wait(ctx, o.Timeout, fmt.Sprintf("batch %d: waiting for proxies on %s", n, o.plan.Revision), func(ctx context.Context) (string, bool, error) {
		pods, err := podsOf(ctx, r, batch)
		if err != nil {
			return err.Error(), false, nil
		}
		var reason string
		g.Pods, reason = gate.EvaluatePods(batch, pods, r.Istiod.ProxiesIn(ctx, o.istiod, gate.Namespaces(batch)...), o.plan.Revision)
		return reason, reason == "", nil
	})
	if err != nil || baseline == nil {
		return err
	}
	after, err := r.Istiod.Metrics(ctx, o.istiod, o.plan.Revision)
	if err != nil {
		return fmt.Errorf("reading istiod metrics: %w", err)
	}
	g.Metrics = map[string][2]float64{}
	for k, v := range after {
		g.Metrics[k] = [2]float64{baseline[k], v}
	}
	if rises := gate.CompareMetrics(baseline, after); len(rises) > 0 {
		return errors.New(strings.Join(rises, "; "))
	}
	return nil
}

func podsOf(ctx context.Context, r *step.Run, batch []kube.WorkloadRef) ([]corev1.Pod, error) {
	var out []corev1.Pod
	done := map[string]bool{}
	for _, w := range batch {
		if done[w.Namespace] {
			continue
		}
		done[w.Namespace] = true
		l, err := r.C.Kube.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		out = append(out, l.Items...)
	}
	return out, nil
}

// Revert is --rollback-on-failure: relabel the touched namespaces back to what they were and restart
// what was restarted, waited for. Its actions are journaled: undo never repeats them.
func (o *Options) Revert(ctx context.Context, r *step.Run, _ error) (bool, error) {
	if !o.RollbackOnFailure {
		return false, nil
	}
	r.Progress.Printf("rolling back: %d namespaces, %d workloads", len(o.relabel), o.restarted())
	before := map[string]mesh.Namespace{}
	for _, n := range r.Before.Namespaces {
		before[n.Name] = n
	}
	for _, ns := range o.relabel {
		b := before[ns]
		err := label(ctx, r, ns, "labels restored", map[string]*string{istio.LabelRev: orNil(b.RevLabel), istio.LabelInjection: orNil(b.InjectionLabel)})
		if err != nil {
			return false, err
		}
		awaitInjector(ctx, r.C.Kube, r.Progress, ns, b.Revision)
	}
	// The restart stamp has second precision: one equal to the restart being rolled back would change
	// nothing, and the pods would stay on the new revision (seen on the bed, where a gate can fail
	// within the second of its restart).
	now := kube.NextRestart(time.Now(), o.lastRestart.Format(time.RFC3339))
	// The batches the run restarted, last first, each gated as the forward batch was (rollouts, pods on
	// the revision their namespace selects again, SYNCED) before the next: capacity and istiod's load
	// stay as the forward step kept them.
	batches := slices.Clone(o.restartedBatches)
	slices.Reverse(batches)
	mb := gate.MoveBack{Batches: batches, Timeout: o.Timeout, Say: r.Progress.Printf, Update: r.Progress.Update,
		Restart: func(ctx context.Context, w kube.WorkloadRef) error {
			return r.Write(w.String(), "restarted (rollback)", func(dry []string) error { return kube.Restart(ctx, r.C.Kube, w, now, dry) })
		},
		Revision: func(ns string) string { return before[ns].Revision },
		Proxies: func(ctx context.Context, revs, namespaces []string) (map[string]string, error) {
			return r.Istiod.ProxiesOrError(ctx, gate.IstiodPodsOf(r.Raw.IstiodPods, revs...), namespaces...)
		}}
	err := mb.Run(ctx, r.C.Kube, "rollback")
	r.Progress.Done()
	if err != nil {
		return false, err
	}
	o.det.RolledBack = true
	return true, nil
}

func orNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func orNone(s string) string {
	if s == "" {
		return "no label"
	}
	return s
}

// analyzeLive runs Istio's analyzers through the companion executable.
func analyzeLive(ctx context.Context, r *step.Run, namespace, rev string) ([]istio.AnalysisMessage, error) {
	return mesh.Analyze(ctx, kube.FlagArgs(r.G.ConfigFlags), r.Before, r.Raw, namespace, rev)
}

// inNamespace keeps the messages about ns (its objects, and the Namespace itself).
func inNamespace(ms []istio.AnalysisMessage, ns string) []istio.AnalysisMessage {
	var out []istio.AnalysisMessage
	for _, m := range ms {
		if m.Namespace == ns || (m.Kind == "Namespace" && m.Name == ns) {
			out = append(out, m)
		}
	}
	return out
}

// analysisBaseline analyses the namespaces to move as the revisions they run now see them: one run per
// revision, over all namespaces. Without it (the companion missing, an API error) the analysis gate is
// skipped and said, as the metrics gate is.
func (o *Options) analysisBaseline(ctx context.Context, r *step.Run) {
	byRev := map[string][]string{}
	for _, np := range o.plan.Namespaces {
		rev := ""
		for _, n := range r.Before.Namespaces {
			if n.Name == np.Name {
				rev = n.Revision
			}
		}
		byRev[rev] = append(byRev[rev], np.Name)
	}
	before := map[string][]istio.AnalysisMessage{}
	for rev, nss := range byRev {
		r.Progress.Printf("analysing %s as %s sees them (Istio's analyzers)", strings.Join(nss, ", "), orNone(rev))
		ms, err := o.Analyzer(ctx, r, "", rev)
		if err != nil {
			r.Progress.Printf("warning: configuration analysis unavailable (%v): the gates do not compare it", err)
			o.det.Warnings = append(o.det.Warnings, "configuration analysis unavailable: "+err.Error())
			return
		}
		for _, ns := range nss {
			before[ns] = inNamespace(ms, ns)
		}
	}
	o.analysisBefore = before
}

// analysisGate analyses the wave's namespaces as the target sees them and fails on a new error (or,
// with --strict-analysis, a new warning).
func (o *Options) analysisGate(ctx context.Context, r *step.Run, namespaces []string) error {
	r.Progress.Printf("analysis gate: analysing %s as %s sees them", strings.Join(namespaces, ", "), o.plan.Revision)
	ms, err := o.Analyzer(ctx, r, "", o.plan.Revision)
	if err != nil {
		return cli.Errorf(cli.ExitGateFailed, "analysis gate: %v", err)
	}
	var failed []string
	for _, ns := range namespaces {
		before, after := o.analysisBefore[ns], inNamespace(ms, ns)
		errs, warns := checks.AnalysisRegressions(before, after)
		g := AnalysisGate{Namespace: ns, Before: countSevere(before), After: countSevere(after), NewErrors: []string{}, NewWarnings: []string{}}
		for _, m := range errs {
			g.NewErrors = append(g.NewErrors, checks.DescribeMessage(m))
		}
		for _, m := range warns {
			g.NewWarnings = append(g.NewWarnings, checks.DescribeMessage(m))
		}
		g.Passed = len(errs) == 0 && (!o.StrictAnalysis || len(warns) == 0)
		o.det.Analysis = append(o.det.Analysis, g)
		if len(warns) > 0 {
			r.Progress.Printf("namespace/%s: new analysis warnings as %s sees it: %s", ns, o.plan.Revision, checks.DescribeAnalysis(warns))
		}
		if !g.Passed {
			failed = append(failed, fmt.Sprintf("namespace %s: %s", ns, checks.DescribeAnalysis(append(errs, warns...))))
			continue
		}
		r.Progress.Printf("namespace/%s: analysis gate passed (%d errors and warnings before, %d after; no new error, %d new warnings)", ns, g.Before, g.After, len(warns))
	}
	if len(failed) > 0 {
		err := fmt.Errorf("the analysis as %s sees it has new findings: %s", o.plan.Revision, strings.Join(failed, "; "))
		r.Progress.Printf("analysis gate FAILED: %v", err)
		return cli.Errorf(cli.ExitGateFailed, "analysis gate failed: %v", err)
	}
	return nil
}

func countSevere(ms []istio.AnalysisMessage) int {
	n := 0
	for _, m := range ms {
		if m.Level == "Error" || m.Level == "Warning" {
			n++
		}
	}
	return n
}

// settleDelay is how long a namespace's new labels are given to reach the apiserver's webhook selection
// when it cannot be asked (no right to create pods, even as a dry run).
const settleDelay = 2 * time.Second

// awaitInjector waits until a pod created in ns now would be injected by rev ("" = not injected). The
// apiserver selects webhooks by namespace labels from its cache, a moment behind the write: pods a
// restart creates in that moment get the revision the namespace had (seen on the test bed, where a
// rollback's restart landed back on the new revision). A dry-run pod shows what the injector would do.
func awaitInjector(ctx context.Context, k kubernetes.Interface, progress *cli.Progress, ns, rev string) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		p, err := kube.DryRunPod(ctx, k, ns)
		if err != nil {
			// A dry run is authorized as a create: without that right, or in a namespace whose policy
			// refuses the probe, wait the usual propagation instead.
			select {
			case <-ctx.Done():
			case <-time.After(settleDelay):
			}
			return
		}
		got, injected := istio.InjectedRevision(p.Labels, p.Annotations)
		if (rev == "" && !injected) || (injected && got == rev) {
			return
		}
		if time.Now().After(deadline) {
			progress.Printf("warning: namespace/%s: new pods are still injected by %s, not %s, after 15s; restarting anyway (the gate checks every pod)", ns, orNone(got), orNone(rev))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// restarted counts the workloads the run restarted.
func (o *Options) restarted() int {
	n := 0
	for _, b := range o.restartedBatches {
		n += len(b)
	}
	return n
}

func orController(owner string) string {
	if owner == "" {
		return "no controller"
	}
	return owner
}
