// Package migratens is `kubectl istio-upgrade migrate-ns`: move namespaces to a revision or tag and
// restart their workloads in gated batches, proving each batch landed on the new istiod before the next.
package migratens

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/checks"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/gate"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Options is `migrate-ns`.
type Options struct {
	genericiooptions.IOStreams
	g *cli.Global

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
	DryRunStr                string
	Yes                      bool
	// KeepLabels restarts without relabelling (tag-move --restart: the namespaces already select the tag).
	KeepLabels bool
	// Step names the journal entry and result ("migrate-ns", or the step that runs it).
	Step string
	// Follows is the journal entry this restart completes (tag-move --restart: the tag move); undo
	// takes that entry back first.
	Follows string

	dryRun cli.DryRun
	canary *kube.WorkloadRef
	args   []string
}

// Details is the step-specific part of the -o json result.
type Details struct {
	Plan       *Plan        `json:"plan"`
	Gates      []GateResult `json:"gates"`
	Restarted  []string     `json:"restarted"`
	RolledBack bool         `json:"rolledBack"`
	Halted     string       `json:"halted,omitempty"`
	Warnings   []string     `json:"warnings"`
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
}

// NewOptions returns migrate-ns options with the flag defaults, for steps that run it (tag-move --restart).
func NewOptions(g *cli.Global, streams genericiooptions.IOStreams) *Options {
	return &Options{IOStreams: streams, g: g, BatchSize: 5, MaxUnavailableNamespaces: 1, Timeout: 5 * time.Minute, DryRunStr: "none", Step: "migrate-ns", args: os.Args[1:]}
}

// NewCommand builds `migrate-ns`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams, g: g, Step: "migrate-ns"}
	cmd := &cobra.Command{
		Use:   "migrate-ns (NAMESPACE... | -l SELECTOR | --all) --to REVISION_OR_TAG",
		Short: "Move namespaces to a revision or tag and restart workloads in verified batches",
		Long: `Move namespaces to a revision (or a revision tag) and restart their workloads in batches, proving
each batch landed before starting the next.

Per namespace: istio-injection is removed and istio.io/rev=<target> set (one injection selector), the
prior labels recorded in the journal. Deployments, StatefulSets and DaemonSets are restarted the way
'kubectl rollout restart' does, in batches; workloads whose pods already run the target revision are
skipped (a rerun resumes and never restarts a workload twice), as are workloads that opt out of
injection, gateways (use canary-gw and shift) and workloads pinned by their own istio.io/rev label.

After each batch, a gate: every rollout complete (watched), every new pod injected by the target
revision, its proxy SYNCED on the target istiod (syncz), and the target istiod's error counters
(rejected configs, push errors) did not rise. A failed or timed-out gate halts the step (exit 75);
with --rollback-on-failure the namespaces are relabelled back and what was restarted is restarted
again onto the old revision.

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
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Namespaces = args
			o.args = os.Args[1:]
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Selector, "selector", "l", "", "Migrate the namespaces matching this label selector")
	f.BoolVar(&o.All, "all", false, "Migrate every namespace that selects a revision (injection label or istio.io/rev)")
	f.StringVar(&o.To, "to", "", "The revision or revision tag to label namespaces with (required)")
	f.StringVar(&o.CanaryStr, "canary", "", "Restart this workload (KIND/NAME or NAMESPACE/KIND/NAME) first, alone, verify it, and ask before continuing")
	f.IntVar(&o.BatchSize, "batch-size", 5, "Workloads restarted together before each gate")
	f.IntVar(&o.MaxUnavailableNamespaces, "max-unavailable-namespaces", 1, "Namespaces relabelled and migrating at the same time")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "How long one batch may take to pass its gate")
	f.BoolVar(&o.RollbackOnFailure, "rollback-on-failure", false, "When a gate fails, relabel the touched namespaces back and restart what was restarted")
	f.BoolVar(&o.AllowDowntime, "allow-downtime", false, "Restart workloads even when their rollout would leave no ready pod")
	f.BoolVarP(&o.Yes, "yes", "y", false, "Do not stop for confirmation after the canary")
	cli.AddDryRunFlag(f, &o.DryRunStr)
	return cmd
}

// Validate checks flags and arguments without I/O.
func (o *Options) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
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
	d, err := cli.ParseDryRun(o.DryRunStr)
	if err != nil {
		return err
	}
	o.dryRun = d
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

// runner carries one run's state.
type runner struct {
	o        *Options
	c        *kube.Clients
	p        *cli.Progress
	plan     *Plan
	res      *cli.Result
	det      *Details
	istiod   []corev1.Pod // target revision's istiod pods
	syncz    *gate.Istiod // asks them for syncz while gates wait
	before   *mesh.Snapshot
	relabel  []string
	restarts []kube.WorkloadRef
}

// Run validates against the cluster, plans, then migrates.
func (o *Options) Run(ctx context.Context) error {
	c, err := o.g.Clients()
	if err != nil {
		return err
	}
	r := &runner{o: o, c: c, p: cli.NewProgress(o.ErrOut), res: cli.NewResult(o.Step, o.dryRun), det: &Details{Gates: []GateResult{}, Restarted: []string{}, Warnings: []string{}}}
	r.res.Details = r.det
	raw, err := mesh.List(ctx, c, o.g.ReadOptions("", o.dryRun == cli.DryRunNone))
	if err != nil {
		return err
	}
	r.before = mesh.Build(*raw)
	r.before.ReadAt = time.Now().UTC().Truncate(time.Second)
	if err := r.validateCluster(ctx, raw); err != nil {
		return err
	}
	r.syncz = gate.NewIstiod(c, r.istiod, o.g.ReadOptions("", true))
	defer r.syncz.Close()
	switch o.dryRun {
	case cli.DryRunClient:
		r.describe()
		return r.res.Write(o.Out, o.g.Output)
	case cli.DryRunServer:
		if err := r.serverDryRun(ctx); err != nil {
			return err
		}
		return r.res.Write(o.Out, o.g.Output)
	}
	start := time.Now()
	runErr := r.migrate(ctx)
	if runErr != nil && o.RollbackOnFailure && cli.CodeOf(runErr) == cli.ExitGateFailed {
		r.rollback(ctx)
	}
	after, err := o.g.Snapshot(ctx)
	if err == nil {
		r.res.Diff = mesh.Compare(r.before, after)
	}
	skippedOnTarget := 0
	for _, s := range r.plan.Skipped {
		if s.Reason == SkipOnTarget {
			skippedOnTarget++
		}
	}
	r.res.Summary = fmt.Sprintf("migrate-ns: %d namespaces to %s (%s), %d workloads restarted in %d gated batches, %d already on target, in %s",
		len(r.relabel), o.To, r.plan.Revision, len(r.restarts), len(r.det.Gates), skippedOnTarget, time.Since(start).Round(time.Second))
	if runErr != nil {
		r.res.Summary += "; HALTED: " + runErr.Error()
		if r.det.RolledBack {
			r.res.Summary += " (rolled back)"
		}
	}
	if err := r.res.Write(o.Out, o.g.Output); err != nil {
		return err
	}
	return runErr
}

// validateCluster resolves --to, the namespaces and the canary, builds the plan and applies the
// zero-downtime guard. Any error here leaves the cluster untouched (exit 65).
func (r *runner) validateCluster(ctx context.Context, raw *mesh.Inputs) error {
	o, s := r.o, r.before
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
			r.istiod = append(r.istiod, p)
		}
	}
	namespaces, err := r.selectNamespaces(ctx)
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
	r.plan = plan
	r.det.Plan = plan
	return r.guard(ctx, raw)
}

func (r *runner) selectNamespaces(ctx context.Context) ([]string, error) {
	o, s := r.o, r.before
	exists := map[string]bool{}
	for _, n := range s.Namespaces {
		exists[n.Name] = true
	}
	var out []string
	switch {
	case o.All:
		out = SelectNamespaces(s)
	case o.Selector != "":
		l, err := r.c.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: o.Selector})
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
	var filtered []string
	for _, n := range out {
		if n == s.IstioNamespace {
			return nil, cli.BadInputf("refusing to relabel the Istio namespace %s", n)
		}
		filtered = append(filtered, n)
	}
	if len(filtered) == 0 {
		return nil, cli.BadInputf("no namespaces selected")
	}
	return filtered, nil
}

// guard stops before anything changes when a restart would drop a workload to zero ready pods, and
// warns about everything else precheck's guardrails find in the workloads it will restart.
func (r *runner) guard(ctx context.Context, raw *mesh.Inputs) error {
	restart := map[kube.WorkloadRef]bool{}
	if r.plan.Canary != nil {
		restart[*r.plan.Canary] = true
	}
	for _, n := range r.plan.Namespaces {
		for _, w := range n.Restart {
			restart[w] = true
		}
	}
	pdbs, _ := r.c.Kube.PolicyV1().PodDisruptionBudgets("").List(ctx, metav1.ListOptions{})
	hpas, _ := r.c.Kube.AutoscalingV2().HorizontalPodAutoscalers("").List(ctx, metav1.ListOptions{})
	var pdbItems []policyv1.PodDisruptionBudget
	var hpaItems []autoscalingv2.HorizontalPodAutoscaler
	if pdbs != nil && hpas != nil {
		pdbItems, hpaItems = pdbs.Items, hpas.Items
	}
	var blocking []string
	for i := range raw.Deployments {
		d := &raw.Deployments[i]
		if !restart[kube.WorkloadRef{Kind: "Deployment", Namespace: d.Namespace, Name: d.Name}] {
			continue
		}
		for _, f := range checks.DeploymentGuardrails(d, pdbItems, hpaItems) {
			if f.Severity != checks.Info {
				r.det.Warnings = append(r.det.Warnings, f.Code+" "+f.Object+": "+f.Message)
			}
		}
		if drops := dropsToZero(d); drops != "" {
			blocking = append(blocking, fmt.Sprintf("deployment/%s/%s: %s", d.Namespace, d.Name, drops))
		}
	}
	for _, w := range r.det.Warnings {
		r.p.Printf("warning: %s", w)
	}
	if len(blocking) > 0 && !r.o.AllowDowntime {
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

// describe fills the client dry-run result from the plan.
func (r *runner) describe() {
	for _, w := range r.plan.Waves(r.o.MaxUnavailableNamespaces, r.o.BatchSize) {
		for _, ns := range w.Namespaces {
			if np := r.nsPlan(ns); np != nil && np.Relabel && !slices.Contains(r.relabel, ns) {
				r.relabel = append(r.relabel, ns)
				r.res.Add("namespace/"+ns, "labeled "+np.AfterLabel)
			}
		}
		for _, b := range w.Batches {
			for _, wl := range b {
				r.res.Add(wl.String(), "restarted")
			}
		}
	}
	r.res.Summary = fmt.Sprintf("migrate-ns would relabel %d namespaces to %s (%s) and restart %d workloads; %d skipped",
		len(r.relabel), r.o.To, r.plan.Revision, r.plan.Restarts(), len(r.plan.Skipped))
}

func (r *runner) nsPlan(name string) *NamespacePlan {
	for i := range r.plan.Namespaces {
		if r.plan.Namespaces[i].Name == name {
			return &r.plan.Namespaces[i]
		}
	}
	return nil
}

// serverDryRun sends every change with dryRun=All: the apiserver and its webhooks validate them,
// nothing is persisted, and there is nothing to wait for.
func (r *runner) serverDryRun(ctx context.Context) error {
	dry := r.o.dryRun.APIDryRun()
	now := time.Now()
	for _, w := range r.plan.Waves(r.o.MaxUnavailableNamespaces, r.o.BatchSize) {
		for _, ns := range w.Namespaces {
			np := r.nsPlan(ns)
			if np == nil || !np.Relabel || slices.Contains(r.relabel, ns) {
				continue
			}
			if err := r.label(ctx, ns, r.o.To, dry); err != nil {
				return err
			}
			r.relabel = append(r.relabel, ns)
			r.res.Add("namespace/"+ns, "labeled "+np.AfterLabel)
		}
		for _, b := range w.Batches {
			for _, wl := range b {
				if err := kube.Restart(ctx, r.c.Kube, wl, now, dry); err != nil {
					return err
				}
				r.res.Add(wl.String(), "restarted")
			}
		}
	}
	r.res.Summary = fmt.Sprintf("migrate-ns (server dry run): %d namespaces and %d workloads accepted by the apiserver; nothing changed",
		len(r.relabel), r.plan.Restarts())
	return nil
}

// label sets istio.io/rev=target and removes istio-injection in one merge patch.
func (r *runner) label(ctx context.Context, ns, target string, dry []string) error {
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q,%q:null}}}`, istio.LabelRev, target, istio.LabelInjection)
	_, err := r.c.Kube.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{DryRun: dry})
	if err != nil {
		return fmt.Errorf("label namespace %s: %w", ns, err)
	}
	return nil
}

// migrate runs the waves: journal first, then relabel, restart in batches, gate each batch.
func (r *runner) migrate(ctx context.Context) error {
	j, err := r.o.g.Journal()
	if err != nil {
		return err
	}
	rec := j.Begin(r.o.Step, r.o.args)
	if r.o.Follows != "" {
		rec.Note(journal.NoteFollows, r.o.Follows)
	}
	for _, n := range r.plan.Namespaces {
		if err := rec.Capture(ctx, journal.NamespaceRef(n.Name)); err != nil {
			return err
		}
		for _, w := range n.Restart {
			if err := rec.Capture(ctx, workloadJournalRef(w)); err != nil {
				return err
			}
		}
	}
	if r.plan.Canary != nil {
		if err := rec.Capture(ctx, workloadJournalRef(*r.plan.Canary)); err != nil {
			return err
		}
	}
	if err := rec.Save(ctx); err != nil {
		return err
	}
	r.res.Journal = rec.Entry().ID
	baseline, merr := mesh.IstiodMetrics(ctx, r.c, r.istiod, r.plan.Revision)
	if merr != nil {
		r.p.Printf("warning: istiod %s metrics unavailable (%v): the gates check rollouts, injection and sync only", r.plan.Revision, merr)
		r.det.Warnings = append(r.det.Warnings, "istiod metrics unavailable: "+merr.Error())
	}
	batchNo := 0
	for wi, w := range r.plan.Waves(r.o.MaxUnavailableNamespaces, r.o.BatchSize) {
		for _, ns := range w.Namespaces {
			np := r.nsPlan(ns)
			if np == nil || !np.Relabel || slices.Contains(r.relabel, ns) {
				continue
			}
			if err := r.label(ctx, ns, r.o.To, nil); err != nil {
				return err
			}
			r.relabel = append(r.relabel, ns)
			r.res.Add("namespace/"+ns, "labeled "+np.AfterLabel)
			r.p.Printf("namespace/%s labeled %s (was %s)", ns, np.AfterLabel, orNone(np.BeforeLabel))
		}
		for _, b := range w.Batches {
			batchNo++
			g, err := r.runBatch(ctx, batchNo, b, baseline)
			r.det.Gates = append(r.det.Gates, g)
			if err != nil {
				r.det.Halted = err.Error()
				return err
			}
			if merr == nil && g.Metrics != nil {
				for k, v := range g.Metrics {
					baseline[k] = v[1]
				}
			}
		}
		if wi == 0 && r.plan.Canary != nil && !r.confirm() {
			r.res.Summary = "canary verified"
			r.det.Halted = "stopped after the canary for confirmation"
			r.p.Printf("Canary %s is on %s and SYNCED. Rerun with -y to continue (the canary will be skipped).", r.plan.Canary, r.plan.Revision)
			return nil
		}
	}
	return nil
}

// confirm asks to continue after the canary: on a terminal it prompts; without one it never waits.
func (r *runner) confirm() bool {
	if r.o.Yes {
		return true
	}
	ok, _ := cli.Ask(r.o.In, r.o.ErrOut, fmt.Sprintf("Canary %s verified on %s. Continue with the remaining workloads?", r.plan.Canary, r.plan.Revision))
	return ok
}

// runBatch restarts one batch and waits for its gate.
func (r *runner) runBatch(ctx context.Context, n int, batch []kube.WorkloadRef, baseline map[string]float64) (GateResult, error) {
	start := time.Now()
	g := GateResult{Batch: n}
	for _, w := range batch {
		g.Workloads = append(g.Workloads, w.String())
	}
	now := time.Now()
	for _, w := range batch {
		if err := kube.Restart(ctx, r.c.Kube, w, now, nil); err != nil {
			return g, err
		}
		r.restarts = append(r.restarts, w)
		r.det.Restarted = append(r.det.Restarted, w.String())
		r.res.Add(w.String(), "restarted")
	}
	r.p.Printf("batch %d: restarted %s", n, strings.Join(g.Workloads, ", "))
	gctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	fail := func(reason string) (GateResult, error) {
		r.p.Done()
		g.Reason, g.Seconds = reason, time.Since(start).Seconds()
		r.p.Printf("batch %d: gate FAILED: %s", n, reason)
		return g, cli.Errorf(cli.ExitGateFailed, "batch %d gate failed: %s", n, reason)
	}
	if err := kube.WaitRollouts(gctx, r.c.Kube, batch, func(s string) { r.p.Update("batch %d: %s", n, s) }); err != nil {
		return fail(err.Error())
	}
	reason := ""
	for {
		pods, err := r.podsOf(gctx, batch)
		if err == nil {
			proxies := r.targetProxies(gctx)
			g.Pods, reason = gate.EvaluatePods(batch, pods, proxies, r.plan.Revision)
			if reason == "" {
				break
			}
		} else {
			reason = err.Error()
		}
		r.p.Update("batch %d: waiting for proxies on %s: %s", n, r.plan.Revision, reason)
		select {
		case <-gctx.Done():
			return fail(fmt.Sprintf("after %s: %s", r.o.Timeout, reason))
		case <-time.After(time.Second):
		}
	}
	if baseline != nil {
		after, err := mesh.IstiodMetrics(gctx, r.c, r.istiod, r.plan.Revision)
		if err != nil {
			return fail("reading istiod metrics: " + err.Error())
		}
		g.Metrics = map[string][2]float64{}
		for k, v := range after {
			g.Metrics[k] = [2]float64{baseline[k], v}
		}
		if rises := gate.CompareMetrics(baseline, after); len(rises) > 0 {
			return fail(strings.Join(rises, "; "))
		}
	}
	r.p.Done()
	g.Passed, g.Seconds = true, time.Since(start).Seconds()
	r.p.Printf("batch %d: gate passed (%d pods on %s, SYNCED) in %.1fs", n, g.Pods, r.plan.Revision, g.Seconds)
	return g, nil
}

func (r *runner) podsOf(ctx context.Context, batch []kube.WorkloadRef) ([]corev1.Pod, error) {
	var out []corev1.Pod
	done := map[string]bool{}
	for _, w := range batch {
		if done[w.Namespace] {
			continue
		}
		done[w.Namespace] = true
		l, err := r.c.Kube.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		out = append(out, l.Items...)
	}
	return out, nil
}

// targetProxies asks the target revision's istiods for syncz: namespace/pod → state.
func (r *runner) targetProxies(ctx context.Context) map[string]string {
	return r.syncz.Proxies(ctx)
}

// rollback relabels the touched namespaces back to what they were and restarts what was restarted.
func (r *runner) rollback(ctx context.Context) {
	r.p.Printf("rolling back: %d namespaces, %d workloads", len(r.relabel), len(r.restarts))
	before := map[string]mesh.Namespace{}
	for _, n := range r.before.Namespaces {
		before[n.Name] = n
	}
	for _, ns := range r.relabel {
		b := before[ns]
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s,%q:%s}}}`, istio.LabelRev, jsonOrNull(b.RevLabel), istio.LabelInjection, jsonOrNull(b.InjectionLabel))
		if _, err := r.c.Kube.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			r.p.Printf("rollback: namespace/%s: %v", ns, err)
			continue
		}
		r.res.Add("namespace/"+ns, "labels restored")
	}
	now := time.Now()
	for _, w := range r.restarts {
		if err := kube.Restart(ctx, r.c.Kube, w, now, nil); err != nil {
			r.p.Printf("rollback: %v", err)
			continue
		}
		r.res.Add(w.String(), "restarted (rollback)")
	}
	wctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	if err := kube.WaitRollouts(wctx, r.c.Kube, r.restarts, func(s string) { r.p.Update("rollback: %s", s) }); err != nil {
		r.p.Done()
		r.p.Printf("rollback: %v", err)
		return
	}
	r.p.Done()
	r.det.RolledBack = true
}

func jsonOrNull(s string) string {
	if s == "" {
		return "null"
	}
	return fmt.Sprintf("%q", s)
}

func orNone(s string) string {
	if s == "" {
		return "no label"
	}
	return s
}

func workloadJournalRef(w kube.WorkloadRef) journal.ObjectRef {
	switch w.Kind {
	case "StatefulSet":
		return journal.StatefulSetRef(w.Namespace, w.Name)
	case "DaemonSet":
		return journal.DaemonSetRef(w.Namespace, w.Name)
	}
	return journal.DeploymentRef(w.Namespace, w.Name)
}
