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
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"

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
	if _, ok := s.(TrafficMover); ok {
		o.Requests.addFlags(cmd.Flags())
	}
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
	r := &Run{IOStreams: streams, G: g, Yes: o.Yes, Command: command, stopping: make(chan struct{}), Progress: cli.NewProgress(streams.ErrOut), ConfirmTimeout: o.ConfirmTimeout}

	// Complete: clients and the namespace (-n, else the kubeconfig context's).
	if err := g.Validate(); err != nil {
		return err
	}
	if err := ApplyLeaseEnv(); err != nil {
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
	if _, ok := s.(TrafficMover); ok {
		if err := o.Requests.validate(); err != nil {
			return err
		}
	}
	go watchSignals(ctx, signals, r, abort)

	// Plan, on one read of the mesh. A real run reads the journal once first (the stale-plan check
	// compares its resource versions, and the lease's, after taking the lock) and finds the entry a
	// rerun of the same command resumes: the step's plan sees its units in flight.
	j := journal.New(c.Kube, c.Dynamic, g.IstioNamespace)
	j.Meta = c.Metadata
	r.J = j
	var planLease *coordinationv1.Lease
	if gatesRequests(s) && r.Live() {
		if r.requests, err = setupRequests(ctx, r, o.Requests); err != nil {
			return err
		}
	}
	if r.Live() {
		entries, err := j.List(ctx)
		if err != nil {
			return err
		}
		r.Resuming = resumable(entries, s.Name(), command)
		if l, err := c.Kube.CoordinationV1().Leases(g.IstioNamespace).Get(ctx, LockName, metav1.GetOptions{}); err == nil && ptr.Deref(l.Spec.HolderIdentity, "") != "" {
			planLease = l
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
		if err := r.Ask(plan.Question); err != nil {
			return err
		}
	}
	user := journal.User(ctx, c.Kube)
	lock, err := Acquire(ctx, c.Kube, g.IstioNamespace, Holder{User: user, Command: command}, r.Progress)
	if err != nil {
		return err
	}
	defer lock.Release()
	r.lock = lock
	c.Fence.Guard(lock.Held)
	defer c.Fence.Guard(nil)
	if err := stalePlan(ctx, j, planLease, lock); err != nil {
		return err
	}
	entries, err := j.Entries(ctx)
	if err != nil {
		return err
	}
	if err := sealInterrupted(ctx, r, j, entries); err != nil {
		return fmt.Errorf("%w; nothing was changed", err)
	}
	var rec *journal.Recorder
	if e := r.Resuming; e != nil && e.Resumable() {
		was := e.Status()
		rec = j.Resume(e)
		r.Progress.Printf("resuming journal entry %s (%s): %d changes were made before it stopped", e.ID, was, len(e.Done))
	} else {
		r.Resuming = nil
		rec = j.Begin(s.Name(), command)
		rec.Entry().User = user
	}
	rec.Entry().Holder = lock.Identity()
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
	if lerr := lock.Held(); lerr != nil {
		// Another run holds the lock now: this one writes nothing more, its entry included (the holder
		// finds it running with its lease gone, and seals it interrupted).
		r.Progress.Printf("%v: journal entry %s is left as it was; the step holding the lock now, or a rerun, takes it over", lerr, rec.Entry().ID)
		r.Result.Summary = "HALTED: " + lerr.Error()
		_ = r.Result.Write(r.Out, g.Output)
		return lerr
	}
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

// EngineAccess is what the runner itself does on every real run, in the Istio namespace: the lock, the
// journal and its signing key, each named where RBAC can name it (a create never can), so a Role that
// grants it reads no other Secret. firstEntry (the key Secret does not exist yet) adds creating it.
func EngineAccess(istioNS string, firstEntry bool) []kube.Access {
	out := kube.Can("coordination.k8s.io", "leases", istioNS, "create")
	for _, a := range kube.Can("coordination.k8s.io", "leases", istioNS, "get", "update", "delete") {
		out = append(out, a.Named(LockName))
	}
	out = append(out, kube.Can("", "configmaps", istioNS, "list", "get", "create", "update")...)
	for _, a := range kube.Can("", "secrets", istioNS, "get", "update") {
		out = append(out, a.Named(journal.KeySecret))
	}
	if firstEntry {
		out = append(out, kube.Can("", "secrets", istioNS, "create")...)
	}
	return out
}

// FirstEntry says the journal's key Secret does not exist yet (or cannot be read): the next entry
// creates it.
func FirstEntry(ctx context.Context, c *kube.Clients, istioNS string) bool {
	_, err := c.Kube.CoreV1().Secrets(istioNS).Get(ctx, journal.KeySecret, metav1.GetOptions{})
	return err != nil
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
		want = append(want, EngineAccess(r.G.IstioNamespace, FirstEntry(ctx, r.C, r.G.IstioNamespace))...)
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

// resumable is the entry a rerun of command continues: the newest entry, when it is of the same step
// and command, this tool signed it, and it stopped before its end (cancelled, failed, or running when
// its run died: sealed interrupted once the lock is taken).
func resumable(entries []*journal.Entry, step, command string) *journal.Entry {
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.Unreadable != "" || !e.Signed {
			continue // a planted or foreign ConfigMap is never "the newest entry"
		}
		if e.Step != step || !sameWork(e.Command, command) || e.UndoneBy != "" || e.Legacy {
			return nil
		}
		if e.Resumable() || e.State == journal.StateRunning {
			return e
		}
		return nil
	}
	return nil
}

// stalePlan refuses (exit 76) a plan made while another step could change the cluster: the journal
// changed since it was read, or another step held the lock then and did not simply die holding it
// (the lease taken over is the one seen while planning).
func stalePlan(ctx context.Context, j *journal.Journal, planLease *coordinationv1.Lease, lock *Lock) error {
	if planLease != nil && planLease.ResourceVersion != lock.TookFrom() {
		return cli.Errorf(cli.ExitStale, "%s held the lock (`%s`) while this step planned: the cluster may have changed; nothing was changed, rerun to plan again",
			planLease.Annotations[AnnotationUser], planLease.Annotations[AnnotationCommand])
	}
	changed, err := j.Changed(ctx)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		return cli.Errorf(cli.ExitStale, "journal entries %s were written while this step planned: the cluster changed; nothing was changed, rerun to plan again", strings.Join(changed, ", "))
	}
	return nil
}

// sealInterrupted marks every entry still running (its run died: this run holds the lock) as
// interrupted, recording how the cluster is now, so undo checks drift against it and a rerun resumes.
func sealInterrupted(ctx context.Context, r *Run, j *journal.Journal, entries []*journal.Entry) error {
	for _, e := range entries {
		if e.State != journal.StateRunning || !e.Signed || e.Legacy || e.Unreadable != "" {
			continue
		}
		rec := j.Resume(e)
		if err := rec.CaptureAfter(ctx); err != nil {
			return err
		}
		e.State = journal.StateInterrupted
		if err := rec.Save(ctx); err != nil {
			return err
		}
		r.Progress.Printf("journal entry %s (%s by %s) was left running by a run that is gone: marked interrupted (%d of its units unfinished); a rerun of its command resumes it", e.ID, e.CommandLine(), e.User, len(e.InFlight()))
	}
	return nil
}
