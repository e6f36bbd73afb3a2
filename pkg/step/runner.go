package step

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/checks"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// ProxyReader is a step whose plan needs every proxy even in a dry run (cleanup's blockers).
type ProxyReader interface{ ProxiesInDryRun() bool }

// Mover is a step that moves proxies or gateways to a revision (its Plan sets Target): it takes
// --allow-version-skip.
type Mover interface{ MovesToRevision() }

// NewCommand wires a step into its cobra command: the runner's flags (--dry-run, -y) and a RunE that
// runs the step through the engine.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams, s Step, cmd *cobra.Command) *cobra.Command {
	o := &Options{}
	o.AddFlags(cmd)
	if _, ok := s.(Mover); ok {
		cmd.Flags().BoolVar(&o.AllowVersionSkip, "allow-version-skip", false, "Move to a revision more than one minor ahead of the one serving now (Istio supports one minor at a time; refused with exit 65 otherwise)")
	}
	cmd.RunE = func(c *cobra.Command, args []string) error {
		sigs := make(chan os.Signal, 2)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
		return Execute(c.Context(), g, streams, s, o, CommandLine(c, args), args, sigs)
	}
	return cmd
}

// Execute runs one step through the whole lifecycle. signals (SIGINT/SIGTERM) ask the step to stop after
// its in-flight work; a second one aborts the wait at once.
func Execute(ctx context.Context, g *cli.Global, streams genericiooptions.IOStreams, s Step, o *Options, command string, args []string, signals <-chan os.Signal) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, abort := context.WithCancel(ctx)
	defer abort()
	r := &Run{IOStreams: streams, G: g, Yes: o.Yes, Command: command, stopping: make(chan struct{}), Progress: cli.NewProgress(streams.ErrOut)}

	// Complete: clients and the namespace (-n, else the kubeconfig context's).
	if err := g.Validate(); err != nil {
		return err
	}
	d, err := cli.ParseDryRun(o.DryRunStr)
	if err != nil {
		return err
	}
	r.DryRun = d
	r.Result = cli.NewResult(s.Name(), d)
	c, err := g.Clients()
	if err != nil {
		return err
	}
	r.C, r.Namespace = c, c.Namespace
	r.Istiod = mesh.NewIstiod(c, g.ReadOptions("", true))
	defer r.Istiod.Close()
	if r.Namespace == "" {
		r.Namespace = "default"
	}
	// Validate: pure.
	if err := s.Validate(r, args); err != nil {
		return err
	}
	go watchSignals(ctx, signals, r, abort)

	// Plan, on one read of the mesh. A real run notes the newest journal entry first: one written while
	// it planned means the plan may be stale.
	j := journal.New(c.Kube, c.Dynamic, g.IstioNamespace)
	head := ""
	if r.Live() {
		if head, err = lastID(ctx, j); err != nil {
			return err
		}
	}
	proxies := r.Live()
	if pr, ok := s.(ProxyReader); ok && pr.ProxiesInDryRun() {
		proxies = true
	}
	raw, err := mesh.List(ctx, c, r.ReadOptions(proxies))
	if err != nil {
		return err
	}
	r.Raw, r.Before = raw, mesh.Build(*raw)
	r.Before.ReadAt = time.Now().UTC().Truncate(time.Second)
	plan, err := s.Plan(ctx, r)
	if err != nil {
		return err
	}
	if plan.Nothing != "" {
		r.Result.Summary = plan.Nothing
		return r.Result.Write(r.Out, g.Output)
	}
	if plan.Target != "" && !o.AllowVersionSkip {
		if why := checks.SkipsMinor(r.Before, plan.Target); why != "" {
			return cli.BadInputf("%s; nothing was changed (--allow-version-skip goes ahead anyway)", why)
		}
	}
	gitOpsWarnings(ctx, r, plan)
	if err := checkAccess(ctx, r, plan); err != nil {
		return err
	}
	if !r.Live() {
		// Dry runs go through the same Apply: client records what would be sent, server sends it with dryRun.
		if err := s.Apply(ctx, r); err != nil {
			return err
		}
		return r.Result.Write(r.Out, g.Output)
	}

	// Confirm, lock, journal: nothing has changed until all three passed.
	if plan.Question != "" && !o.Yes {
		if ok, asked := cli.Ask(r.In, r.ErrOut, plan.Question); asked && !ok {
			return cli.Errorf(cli.ExitDeclined, "not confirmed: nothing was changed")
		}
	}
	user := journal.User(ctx, c.Kube)
	lock, err := Acquire(ctx, c.Kube, g.IstioNamespace, Holder{User: user, Command: command}, r.Progress.Printf)
	if err != nil {
		return err
	}
	defer lock.Release()
	entries, err := j.List(ctx)
	if err != nil {
		return err
	}
	if n := len(entries); n > 0 && entries[n-1].ID != head {
		e := entries[n-1]
		return cli.Errorf(cli.ExitLocked, "entry %s (%s by %s) was written while this step planned: the cluster changed; nothing was changed, rerun to plan again", e.ID, e.CommandLine(), e.User)
	}
	var rec *journal.Recorder
	if n := len(entries); n > 0 && entries[n-1].Resumable() && entries[n-1].Step == s.Name() && entries[n-1].Command == command {
		rec = j.Resume(entries[n-1])
		r.Progress.Printf("resuming journal entry %s (%s): %d changes were made before it stopped", entries[n-1].ID, entries[n-1].Status(), len(entries[n-1].Done))
	} else {
		rec = j.Begin(s.Name(), command)
		rec.Entry().User = user
	}
	r.rec = rec
	if err := r.capture(ctx, plan); err != nil {
		return fmt.Errorf("%w; nothing was changed", err)
	}
	r.Result.Journal = rec.Entry().ID

	// Apply and gate; revert on a failed gate when the step can.
	runErr := s.Apply(ctx, r)
	state := journal.StateInEffect
	switch {
	case runErr == nil:
	case errors.Is(runErr, ErrCancelled) || (r.Stopping() && ctx.Err() != nil):
		state = journal.StateCancelled
		if !errors.Is(runErr, ErrCancelled) {
			runErr = fmt.Errorf("%w (%v)", ErrCancelled, runErr)
		}
	default:
		state = journal.StateIncomplete
		var rolledBack bool
		if rolledBack, runErr = revert(ctx, s, r, runErr); rolledBack {
			state = journal.StateRolledBack
		}
	}
	rec.Entry().State = state
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := rec.CaptureAfter(sctx); err != nil {
		r.Progress.Printf("warning: journal entry %s: %v; its undo will write back whole objects", rec.Entry().ID, err)
		rec.DropAfter()
	}
	err = rec.Save(sctx)
	if errors.Is(err, journal.ErrTooLarge) {
		r.Progress.Printf("warning: journal entry %s is too large with the state the step left; its undo will write back whole objects", rec.Entry().ID)
		rec.DropAfter()
		err = rec.Save(sctx)
	}
	if err != nil {
		r.Progress.Printf("warning: journal entry %s could not be marked %s: %v", rec.Entry().ID, state, err)
	}

	// Diff and output.
	if after, err := mesh.Read(sctx, c, r.ReadOptions(true)); err == nil {
		r.Result.Diff = mesh.Compare(r.Before, after)
	}
	if runErr != nil {
		if r.Result.Summary != "" {
			r.Result.Summary += "; "
		}
		r.Result.Summary += "HALTED: " + runErr.Error()
		if state == journal.StateRolledBack {
			r.Result.Summary += " (rolled back)"
		}
	}
	if err := r.Result.Write(r.Out, g.Output); err != nil {
		return err
	}
	return runErr
}

// gitOpsWarnings warns about every object the step will change that a GitOps controller manages: it
// would put the change back unless it is committed (-o yaml lists the patches to commit).
// Objects the mesh read listed moments ago are looked at as listed: a migration of 300 workloads
// asked for each one again (about one request per workload).
func gitOpsWarnings(ctx context.Context, r *Run, plan *Plan) {
	listed := listedObjects(r.Raw)
	for _, ref := range append(append([]journal.ObjectRef{}, plan.Record...), plan.Slim...) {
		obj := listed[ref]
		if obj == nil {
			u, err := r.C.Dynamic.Resource(ref.GVR()).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				continue // absent (the step creates it) or unreadable: nothing manages it yet
			}
			obj = u
		}
		if owner := kube.GitOpsOwner(obj); owner != "" {
			w := fmt.Sprintf("%s is managed by %s: it will revert this change unless the change is committed to Git (-o yaml lists the patches)", ref, owner)
			r.Progress.Printf("warning: %s", w)
			r.Result.Warnings = append(r.Result.Warnings, w)
		}
	}
}

// listedObjects indexes the namespaces and workloads of a mesh read by their journal refs.
func listedObjects(raw *mesh.Inputs) map[journal.ObjectRef]metav1.Object {
	out := map[journal.ObjectRef]metav1.Object{}
	if raw == nil {
		return out
	}
	for i := range raw.Namespaces {
		out[journal.NamespaceRef(raw.Namespaces[i].Name)] = &raw.Namespaces[i]
	}
	raw.EachWorkload(func(kind string, m metav1.Object, _ *corev1.PodTemplateSpec) {
		out[journal.WorkloadRef(kind, m.GetNamespace(), m.GetName())] = m
	})
	return out
}

// EngineAccess is what the runner itself does on every real run, in the Istio namespace: the lock,
// the journal and its signing key.
func EngineAccess(istioNS string) []kube.Access {
	return append(append(kube.Can("coordination.k8s.io", "leases", istioNS, "get", "create", "update", "delete"),
		kube.Can("", "configmaps", istioNS, "list", "get", "create", "update")...),
		kube.Can("", "secrets", istioNS, "get", "create")...)
}

// checkAccess asks the apiserver for everything the run will do before it does any of it: the step's
// own access, reading every object the journal records, and the runner's lock, journal and signing
// key. A server dry run is authorized like the real thing; a client dry run sends nothing.
func checkAccess(ctx context.Context, r *Run, plan *Plan) error {
	if r.DryRun == cli.DryRunClient {
		return nil
	}
	want := append([]kube.Access{}, plan.Access...)
	if r.Live() {
		want = append(want, EngineAccess(r.G.IstioNamespace)...)
		for _, ref := range append(append([]journal.ObjectRef{}, plan.Record...), plan.Slim...) {
			want = append(want, On(ref, "get")...)
		}
	}
	missing, err := kube.Missing(ctx, r.C.Kube, want)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		lines := make([]string, len(missing))
		for i, a := range missing {
			lines[i] = a.String()
		}
		return cli.Errorf(cli.ExitNotPermitted, "not permitted (nothing was changed): this step needs\n  %s\nsee docs/rbac.md for the Role and ClusterRole each step needs", strings.Join(lines, "\n  "))
	}
	return nil
}

// watchSignals turns the first signal into Stopping and the second into an abort.
func watchSignals(ctx context.Context, signals <-chan os.Signal, r *Run, abort context.CancelFunc) {
	if signals == nil {
		return
	}
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-signals:
			n++
			if n == 1 {
				r.Progress.Printf("%s: stopping after the work in flight (again to abort at once)", sig)
				close(r.stopping)
				continue
			}
			r.Progress.Printf("%s: aborting", sig)
			abort()
			return
		}
	}
}

func lastID(ctx context.Context, j *journal.Journal) (string, error) {
	entries, err := j.List(ctx)
	if err != nil || len(entries) == 0 {
		return "", err
	}
	return entries[len(entries)-1].ID, nil
}
