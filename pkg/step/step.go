// Package step is the engine every mutating runbook step runs through, in one order:
// Complete → Validate → Plan → confirm (-y) → lock (Lease) → journal → Apply (none/client/server through
// one path) → Gate → Revert on failure → diff → output. A step supplies only its own logic: its flags,
// its plan, its writes (through Run.Write, which honours --dry-run), its gates and its revert.
package step

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// FieldManager is the field manager of every write a step makes.
const FieldManager = kube.FieldManager

// Step is one mutating runbook step.
type Step interface {
	// Name names the step's journal entries and results ("migrate-ns").
	Name() string
	// Validate checks flags and arguments without I/O (r has no clients yet; r.Namespace is set).
	Validate(r *Run, args []string) error
	// Plan reads the cluster and decides what to change; it writes nothing. An error leaves the cluster
	// untouched.
	Plan(ctx context.Context, r *Run) (*Plan, error)
	// Apply makes the planned changes through r.Write and gates them (r.Live says whether gates run).
	// Between units of work it checks r.Stopping and returns r.Cancelled() when told to stop.
	Apply(ctx context.Context, r *Run) error
}

// Reverter is a step that can take back its own failed work (a failed gate) before the runner reports.
// It returns false when it chose not to (migrate-ns without --rollback-on-failure).
type Reverter interface {
	Revert(ctx context.Context, r *Run, cause error) (bool, error)
}

// Plan is what a step will do, decided before anything changes.
type Plan struct {
	// Nothing, when set, says there is nothing to change: the runner prints it and stops (exit 0)
	// without a question, lock or journal entry.
	Nothing string
	// Question is asked on a terminal before anything changes (without -y).
	Question string
	// Record are the objects whose prior state the journal keeps (captured before the first write).
	Record []journal.ObjectRef
	// Slim are objects whose undo only reads their restart stamp (workloads migrate-ns restarts).
	Slim []journal.ObjectRef
	// Access is every verb Apply (and Revert) will use, on what, where: the runner asks the apiserver
	// for all of it, with its own, before anything changes (exit 77 and the list when any is denied).
	Access []kube.Access
	// Target is the revision the step moves proxies or gateways to: the runner refuses one more than a
	// minor ahead of what serves now (exit 65) unless --allow-version-skip.
	Target string
}

// On is the access of verbs on the object ref names (its kind, in its namespace; by its name for the
// verbs that act on one object).
func On(ref journal.ObjectRef, verbs ...string) []kube.Access {
	out := kube.Can(ref.Group, ref.Resource, ref.Namespace, verbs...)
	for i := range out {
		switch out[i].Verb {
		case "get", "patch", "update", "delete": // one object's verbs: a Role may grant them by resourceNames
			out[i].Name = ref.Name
		}
	}
	return out
}

// Options are the flags the runner gives every mutating step.
type Options struct {
	DryRunStr        string
	Yes              bool
	AllowVersionSkip bool
	ConfirmTimeout   time.Duration
	Requests         RequestOptions
}

// Run is one execution of a step: its clients, its result, its journal entry and its lock.
type Run struct {
	genericiooptions.IOStreams
	G *cli.Global
	// C are the clients (nil until Complete).
	C *kube.Clients
	// Namespace is -n, or the kubeconfig context's namespace.
	Namespace string
	DryRun    cli.DryRun
	Yes       bool
	Progress  *cli.Progress
	Result    *cli.Result
	// Before is the mesh as Plan saw it (proxies included on a real run); Raw the lists it was built from.
	Before *mesh.Snapshot
	Raw    *mesh.Inputs
	// Command is the command line as the journal records it (credentials left out).
	Command string
	// Istiod is the run's one istiod client (syncz, routing, metrics): its token and port-forwards
	// last for the whole run, snapshots included.
	Istiod *mesh.Istiod

	// J is the journal, read once per run (before Plan, on a real run).
	J *journal.Journal
	// Resuming is the entry this run continues (set before Plan on a real run when the newest entry is
	// this command's, stopped before its end): Plan finishes its units in flight (InFlight).
	Resuming *journal.Entry
	// ConfirmTimeout bounds how long a question waits for its answer.
	ConfirmTimeout time.Duration

	rec      *journal.Recorder
	requests *requestGate
	lock     *Lock
	mu       sync.Mutex
	stopping chan struct{}
}

// InFlight are the units the resumed entry began and did not finish: a rerun gates them even when the
// cluster already looks done (they were written, never verified).
func (r *Run) InFlight() []journal.Unit {
	if r.Resuming == nil {
		return nil
	}
	return r.Resuming.InFlight()
}

// Begin records a unit of work, with what it is about to change and what its move-back needs to know,
// and saves the entry before the unit's first write: were the process killed right after, a rerun
// and undo still know it. A unit begun again (a resumed one) is recorded once.
func (r *Run) Begin(ctx context.Context, name string, objects []string, notes map[string]string) error {
	if r.rec == nil || !r.Live() {
		return nil
	}
	r.mu.Lock()
	e := r.rec.Entry()
	found := false
	for i := range e.Units {
		if e.Units[i].Name == name {
			e.Units[i].Done, found = false, true
			for k, v := range notes {
				if _, ok := e.Units[i].Notes[k]; !ok {
					if e.Units[i].Notes == nil {
						e.Units[i].Notes = map[string]string{}
					}
					e.Units[i].Notes[k] = v // the first record of a fact wins: it is the state before
				}
			}
		}
	}
	if !found {
		e.Units = append(e.Units, journal.Unit{Name: name, Objects: objects, Notes: notes})
	}
	r.mu.Unlock()
	return r.rec.Save(ctx)
}

// Finish marks a unit done (its gate passed); the entry is saved with the next save.
func (r *Run) Finish(name string) {
	if r.rec == nil || !r.Live() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.rec.Entry()
	for i := range e.Units {
		if e.Units[i].Name == name {
			e.Units[i].Done = true
		}
	}
}

// Ask puts a question to the person at the terminal: nil to go on; exit 67 on "no" and when nobody
// answers within --confirm-timeout; exit 130 on Ctrl-C (SIGINT or SIGTERM) while it waits. Without a
// terminal nothing is asked and nothing waits.
func (r *Run) Ask(question string) error {
	ok, asked, timedOut, stopped := cli.AskUntil(r.In, r.ErrOut, question, r.ConfirmTimeout, r.stopping)
	switch {
	case stopped:
		return cli.Errorf(cli.ExitCancelled, "interrupted at the question: nothing more was changed")
	case timedOut:
		return cli.Errorf(cli.ExitDeclined, "no answer within %s (--confirm-timeout): nothing more was changed", r.ConfirmTimeout)
	case asked && !ok:
		return cli.Errorf(cli.ExitDeclined, "not confirmed: nothing more was changed")
	}
	return nil
}

// ReadOptions are the options of a whole-mesh read through the run's istiod client.
func (r *Run) ReadOptions(proxies bool) mesh.ReadOptions {
	o := r.G.ReadOptions("", proxies)
	o.Istiod = r.Istiod
	return o
}

// Live says the run changes the cluster (no dry run): only then do gates wait and the journal record.
func (r *Run) Live() bool { return r.DryRun == cli.DryRunNone }

// Stopping says SIGINT or SIGTERM asked the step to stop: finish or revert the in-flight unit, start
// no new one.
func (r *Run) Stopping() bool {
	if r.lock != nil && r.lock.Held() != nil {
		return true
	}
	select {
	case <-r.stopping:
		return true
	default:
		return false
	}
}

// Cancelled is the error a step returns when it stops on r.Stopping: the lock's, when the lock was
// lost, else ErrCancelled.
func (r *Run) Cancelled() error {
	if r.lock != nil {
		if err := r.lock.Held(); err != nil {
			return err
		}
	}
	return ErrCancelled
}

// ErrCancelled is returned by a step that stopped because it was told to.
var ErrCancelled = cli.Errorf(cli.ExitCancelled, "cancelled: stopped after the in-flight work; a rerun of the same command resumes")

// Entry is the journal entry of this run (nil under a dry run).
func (r *Run) Entry() *journal.Entry {
	if r.rec == nil {
		return nil
	}
	return r.rec.Entry()
}

// Capture records more objects' prior state mid-run (the entry is saved before returning), for
// objects a step only finds while acting.
func (r *Run) Capture(ctx context.Context, refs ...journal.ObjectRef) error {
	return r.capture(ctx, &Plan{Record: refs})
}

// capture records a plan's objects, whole and slim, and saves the entry.
func (r *Run) capture(ctx context.Context, p *Plan) error {
	if r.rec == nil {
		return nil
	}
	if err := r.rec.Capture(ctx, p.Record...); err != nil {
		return err
	}
	if err := r.rec.CaptureSlim(ctx, p.Slim...); err != nil {
		return err
	}
	return r.rec.Save(ctx)
}

// Write is the one path of every change: with --dry-run=client it only records what would be sent;
// otherwise it calls do with the request's dryRun (["All"] on a server dry run) and records the
// action once the apiserver accepted it. object is "kind/name", verb what happens to it.
func (r *Run) Write(object, verb string, do func(dryRun []string) error) error {
	if r.DryRun != cli.DryRunClient {
		if err := do(r.DryRun.APIDryRun()); err != nil {
			return err
		}
	}
	r.Record(object, verb)
	return nil
}

// Patch notes a change as the patch sent for it, for -o json|yaml: what to commit to Git when a GitOps
// controller manages the object.
func (r *Run) Patch(object, patchType string, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Result.Patches = append(r.Result.Patches, cli.Patch{Object: object, Type: patchType, Patch: append([]byte{}, body...)})
}

// Manifest notes an object a step creates or replaces whole, as the manifest to commit (server-owned
// fields left out).
func (r *Run) Manifest(object, apiVersion, kind string, obj any) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return
	}
	u := journal.Sanitize(&unstructured.Unstructured{Object: m})
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	if body, err := json.Marshal(u.Object); err == nil {
		r.Patch(object, "manifest", body)
	}
}

// HelmStart journals a helm command before it runs, saving the entry at once: were the step stopped
// mid-action, undo still knows to look at the release (see journal.HelmAction.Pending).
func (r *Run) HelmStart(ctx context.Context, a journal.HelmAction) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rec == nil || !r.Live() {
		return nil
	}
	a.Pending = true
	e := r.rec.Entry()
	e.Helm = append(e.Helm, a)
	return r.rec.Save(ctx)
}

// Helm records a helm command the step ran (completing the one HelmStart journaled), saving the entry
// at once: were the step stopped right after, undo still knows to roll the release back.
func (r *Run) Helm(ctx context.Context, a journal.HelmAction) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Result.Add("helmrelease/"+a.Namespace+"/"+a.Release, a.Action)
	if r.rec == nil || !r.Live() {
		return nil
	}
	e := r.rec.Entry()
	a.Pending = false
	if n := len(e.Helm); n > 0 && e.Helm[n-1].Pending && e.Helm[n-1].Release == a.Release && e.Helm[n-1].Namespace == a.Namespace && e.Helm[n-1].Action == a.Action {
		e.Helm[n-1] = a
	} else {
		e.Helm = append(e.Helm, a)
	}
	e.Done = append(e.Done, a.Command())
	return r.rec.Save(ctx)
}

// Note attaches a fact to the run's journal entry (history shows it); nothing under a dry run.
func (r *Run) Note(key, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rec != nil && r.Live() {
		r.rec.Note(key, value)
	}
}

// Checkpoint saves the entry now, with the notes and units so far: before a write whose move-back
// needs a note just taken (ztunnel-roll's template hash of the pod it is about to delete).
func (r *Run) Checkpoint(ctx context.Context) error {
	if r.rec == nil || !r.Live() {
		return nil
	}
	return r.rec.Save(ctx)
}

// Record notes an action that already happened (or, in a dry run, would).
func (r *Run) Record(object, verb string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Result.Add(object, verb)
	if r.rec != nil && r.Live() {
		e := r.rec.Entry()
		e.Done = append(e.Done, object+" "+verb)
	}
}

// CreateOptions, UpdateOptions, PatchOptions and DeleteOptions carry the run's dry run and field manager.
func (r *Run) CreateOptions() metav1.CreateOptions {
	return metav1.CreateOptions{DryRun: r.DryRun.APIDryRun(), FieldManager: FieldManager}
}

func (r *Run) UpdateOptions() metav1.UpdateOptions {
	return metav1.UpdateOptions{DryRun: r.DryRun.APIDryRun(), FieldManager: FieldManager}
}

func (r *Run) PatchOptions() metav1.PatchOptions {
	return metav1.PatchOptions{DryRun: r.DryRun.APIDryRun(), FieldManager: FieldManager}
}

func (r *Run) DeleteOptions() metav1.DeleteOptions {
	return metav1.DeleteOptions{DryRun: r.DryRun.APIDryRun()}
}

// Sub runs another step inside this one (tag-move --restart runs migrate-ns): same clients, dry run,
// lock and journal entry, so the whole command stays one undoable unit. Its result is returned for the
// caller to embed. The sub-step plans on a fresh read of the mesh: it sees what the outer step changed.
func (r *Run) Sub(ctx context.Context, s Step, args []string) (*cli.Result, error) {
	sub := &Run{IOStreams: r.IOStreams, G: r.G, C: r.C, Namespace: r.Namespace, DryRun: r.DryRun, Yes: r.Yes,
		Progress: r.Progress, Result: cli.NewResult(s.Name(), r.DryRun),
		Command: r.Command, Istiod: r.Istiod, rec: r.rec, stopping: r.stopping, lock: r.lock, J: r.J, ConfirmTimeout: r.ConfirmTimeout, requests: r.requests}
	if err := s.Validate(sub, args); err != nil {
		return sub.Result, err
	}
	raw, err := mesh.List(ctx, r.C, r.ReadOptions(r.Live()))
	if err != nil {
		return sub.Result, err
	}
	sub.Raw, sub.Before = raw, mesh.Build(*raw)
	p, err := s.Plan(ctx, sub)
	if err != nil {
		return sub.Result, err
	}
	if p.Nothing != "" {
		sub.Result.Summary = p.Nothing
		return sub.Result, nil
	}
	if err := checkAccess(ctx, sub, p); err != nil {
		return sub.Result, err
	}
	if err := r.capture(ctx, p); err != nil {
		return sub.Result, err
	}
	// The sub-step's writes go into the shared entry through sub.Record. Its revert takes back only its
	// own part: the outer step's changes stay in effect, so the entry is never marked rolled back by it.
	_, err = revert(ctx, s, sub, s.Apply(ctx, sub))
	return sub.Result, err
}

// revert gives a step whose gate failed or timed out (on a real run) the chance to take its work back:
// the one rule for the runner and sub-steps. It says whether the step's own work was taken back
// completely, and returns the error to report.
func revert(ctx context.Context, s Step, r *Run, err error) (bool, error) {
	code := cli.CodeOf(err)
	rv, ok := s.(Reverter)
	if !ok || !r.Live() || (code != cli.ExitGateFailed && code != cli.ExitTimeout) {
		return false, err
	}
	done, rerr := rv.Revert(context.WithoutCancel(ctx), r, err)
	if rerr != nil {
		return false, cli.Errorf(code, "%v; revert failed: %v", err, rerr)
	}
	return done, err
}

// Wait polls cond every second until it is done, fails, or timeout passes; the live progress line shows
// cond's reason. A timeout is exit 74 with the last reason; cond's error ends the wait at once.
func (r *Run) Wait(ctx context.Context, timeout time.Duration, what string, cond Condition) error {
	return WaitFor(ctx, r.Progress, timeout, what, cond)
}

// Add registers the runner's flags (--dry-run, -y) on a step's command.
func (o *Options) AddFlags(cmd *cobra.Command) {
	cli.AddDryRunFlag(cmd.Flags(), &o.DryRunStr)
	cmd.Flags().BoolVarP(&o.Yes, "yes", "y", false, "Do not ask for confirmation (without a terminal nothing is asked anyway)")
	cmd.Flags().DurationVar(&o.ConfirmTimeout, "confirm-timeout", 10*time.Minute, "How long a question waits for an answer; unanswered, the step stops with exit 67 and nothing more changed")
}
