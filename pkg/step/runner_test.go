package step

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal/journaltest"
)

// fakeStep patches one ConfigMap key per batch; its gate fails when gateErr is set.
type fakeStep struct {
	batches  int
	gateErr  error
	reverted bool
	onBatch  func(i int)
}

func (s *fakeStep) Name() string                  { return "fake" }
func (s *fakeStep) Validate(*Run, []string) error { return nil }
func (s *fakeStep) Plan(context.Context, *Run) (*Plan, error) {
	return &Plan{Question: "go?", Record: []journal.ObjectRef{journal.ConfigMapRef("shop", "target")}}, nil
}

func (s *fakeStep) Apply(ctx context.Context, r *Run) error {
	for i := 0; i < s.batches; i++ {
		if r.Stopping() {
			return r.Cancelled()
		}
		cm, err := r.C.Kube.CoreV1().ConfigMaps("shop").Get(ctx, "target", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data[fmt.Sprint(i)] != "" {
			continue // a rerun resumes: done batches are skipped
		}
		patch := []byte(fmt.Sprintf(`{"data":{"%d":"done"}}`, i))
		if err := r.Write(fmt.Sprintf("configmap/target batch %d", i), "patched", func([]string) error {
			_, err := r.C.Kube.CoreV1().ConfigMaps("shop").Patch(ctx, "target", types.MergePatchType, patch, r.PatchOptions())
			return err
		}); err != nil {
			return err
		}
		if s.onBatch != nil {
			s.onBatch(i)
		}
	}
	if r.Live() && s.gateErr != nil {
		return s.gateErr
	}
	return nil
}

func (s *fakeStep) Revert(context.Context, *Run, error) (bool, error) {
	s.reverted = true
	return true, nil
}

// write is one mutating request the fake cluster saw.
type write struct {
	verb, resource, name string
	dryRun               []string
	manager              string
}

type bed struct {
	t      *testing.T
	c      *journaltest.Cluster
	g      *cli.Global
	writes []write
	out    *bytes.Buffer
	errOut *bytes.Buffer
}

func newBed(t *testing.T, objs ...runtime.Object) *bed {
	t.Helper()
	objs = append(objs,
		&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Name: "target", Namespace: "shop"}, Data: map[string]string{}})
	b := &bed{t: t, c: journaltest.New(t, objs...)}
	b.g = &cli.Global{ConfigFlags: genericclioptions.NewConfigFlags(true), IstioNamespace: "istio-system", Output: cli.OutputJSON}
	b.g.SetClients(b.c.Clients)
	record := func(a k8stesting.Action) (bool, runtime.Object, error) {
		w := write{verb: a.GetVerb(), resource: a.GetResource().Resource}
		switch x := a.(type) {
		case k8stesting.CreateActionImpl:
			w.name, w.dryRun, w.manager = x.GetObject().(metav1.Object).GetName(), x.CreateOptions.DryRun, x.CreateOptions.FieldManager
		case k8stesting.UpdateActionImpl:
			w.name, w.dryRun, w.manager = x.GetObject().(metav1.Object).GetName(), x.UpdateOptions.DryRun, x.UpdateOptions.FieldManager
		case k8stesting.PatchActionImpl:
			w.name, w.dryRun, w.manager = x.Name, x.PatchOptions.DryRun, x.PatchOptions.FieldManager
		case k8stesting.DeleteActionImpl:
			w.name, w.dryRun = x.Name, x.DeleteOptions.DryRun
		default:
			return false, nil, nil
		}
		if strings.HasPrefix(w.resource, "selfsubject") { // questions, not changes
			return false, nil, nil
		}
		b.writes = append(b.writes, w)
		return false, nil, nil
	}
	b.c.Clients.Kube.(interface {
		PrependReactor(string, string, k8stesting.ReactionFunc)
	}).PrependReactor("*", "*", record)
	return b
}

func (b *bed) run(s Step, dry string, signals chan os.Signal) error {
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	b.out, b.errOut = out, errOut
	return Execute(context.Background(), b.g, streams, s, &Options{DryRunStr: dry, Yes: true}, "kubectl istio-upgrade fake shop", nil, signals)
}

func (b *bed) entries() []*journal.Entry {
	b.t.Helper()
	l, err := b.c.Journal.List(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	return l
}

func (b *bed) data() map[string]string {
	cm, err := b.c.Clients.Kube.CoreV1().ConfigMaps("shop").Get(context.Background(), "target", metav1.GetOptions{})
	if err != nil {
		b.t.Fatal(err)
	}
	return cm.Data
}

func TestClientDryRunSendsNoWrite(t *testing.T) {
	b := newBed(t)
	if err := b.run(&fakeStep{batches: 3}, "client", nil); err != nil {
		t.Fatal(err)
	}
	if len(b.writes) != 0 {
		t.Errorf("client dry run wrote: %+v", b.writes)
	}
	if !strings.Contains(b.out.String(), `"configmap/target batch 2"`) || !strings.Contains(b.out.String(), `"dryRun": "client"`) {
		t.Errorf("client dry run must print what would be sent:\n%s", b.out)
	}
}

func TestServerDryRunSendsOnlyDryRunWrites(t *testing.T) {
	b := newBed(t)
	if err := b.run(&fakeStep{batches: 3}, "server", nil); err != nil {
		t.Fatal(err)
	}
	if len(b.writes) != 3 {
		t.Fatalf("want the 3 step writes (no lock, no journal), got %+v", b.writes)
	}
	for _, w := range b.writes {
		if len(w.dryRun) != 1 || w.dryRun[0] != "All" {
			t.Errorf("server dry run sent a real write: %+v", w)
		}
	}
}

func TestRealRunLocksJournalsAndUsesFieldManager(t *testing.T) {
	b := newBed(t)
	if err := b.run(&fakeStep{batches: 2}, "none", nil); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, w := range b.writes {
		order = append(order, w.verb+" "+w.resource)
		if w.verb != "delete" && w.manager != FieldManager {
			t.Errorf("write without field manager: %+v", w)
		}
	}
	// The key Secret keeps each entry's newest sequence number: updated after each save.
	want := "create leases,create secrets,create configmaps,update secrets,patch configmaps,patch configmaps,update configmaps,update secrets,delete leases"
	if strings.Join(order, ",") != want {
		t.Errorf("lifecycle order:\n got %s\nwant %s", strings.Join(order, ","), want)
	}
	e := b.entries()
	if len(e) != 1 || e[0].State != journal.StateInEffect || len(e[0].Done) != 2 || e[0].Command != "kubectl istio-upgrade fake shop" {
		t.Fatalf("entry: %+v", e)
	}
}

func TestFailedGateExitCodeAndRevert(t *testing.T) {
	for _, code := range []cli.ExitCode{cli.ExitGateFailed, cli.ExitTimeout} {
		b := newBed(t)
		s := &fakeStep{batches: 1, gateErr: cli.Errorf(code, "gate")}
		err := b.run(s, "none", nil)
		if cli.CodeOf(err) != code || !s.reverted {
			t.Errorf("exit %d (want %d), reverted %v", cli.CodeOf(err), code, s.reverted)
		}
		if e := b.entries(); len(e) != 1 || e[0].State != journal.StateRolledBack {
			t.Errorf("a reverted step's entry must say rolled-back: %+v", e)
		}
	}
	b := newBed(t)
	s := &fakeStep{batches: 1, gateErr: errors.New("api down")}
	if err := b.run(s, "none", nil); cli.CodeOf(err) != cli.ExitError || s.reverted {
		t.Errorf("an API error is not a gate: exit %d, reverted %v", cli.CodeOf(err), s.reverted)
	}
	if e := b.entries(); e[0].State != journal.StateIncomplete {
		t.Errorf("state %s, want incomplete", e[0].State)
	}
}

// heldLease is a lease alice's run holds, renewed at renewed by her clock, with a 1 s duration: a
// watcher waits the longer of that and its own LockDuration.
func heldLease(renewed time.Time) *coordinationv1.Lease {
	at := metav1.NewMicroTime(renewed)
	return &coordinationv1.Lease{TypeMeta: metav1.TypeMeta{APIVersion: "coordination.k8s.io/v1", Kind: "Lease"},
		ObjectMeta: metav1.ObjectMeta{Name: LockName, Namespace: "istio-system", Annotations: map[string]string{AnnotationCommand: "kubectl istio-upgrade migrate-ns a --to=1-31", AnnotationUser: "alice"}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("alice@host/1"), LeaseDurationSeconds: ptr.To(int32(1)), AcquireTime: &at, RenewTime: &at}}
}

func TestHeldLockRefusesBeforeAnyWrite(t *testing.T) {
	b := newBed(t, heldLease(time.Now()))
	err := b.run(&fakeStep{batches: 1}, "none", nil)
	if cli.CodeOf(err) != cli.ExitLocked || !strings.Contains(err.Error(), "alice") || !strings.Contains(err.Error(), "migrate-ns a") {
		t.Fatalf("want exit 73 naming the holder and command, got %d %v", cli.CodeOf(err), err)
	}
	if len(b.writes) != 0 || len(b.data()) != 0 || len(b.entries()) != 0 {
		t.Errorf("a refused step wrote: %+v", b.writes)
	}
}

// A denied verb stops the step before any write, exit 77, listing what is missing; a client dry run
// asks nothing.
func TestMissingPermissionRefusesBeforeAnyWrite(t *testing.T) {
	b := newBed(t)
	b.c.Deny = func(a authzv1.ResourceAttributes) bool { return a.Resource == "leases" && a.Verb == "delete" }
	err := b.run(&fakeStep{batches: 2}, "none", nil)
	if cli.CodeOf(err) != cli.ExitNotPermitted || !strings.Contains(err.Error(), "delete leases.coordination.k8s.io istio-upgrade-lock in istio-system") {
		t.Fatalf("exit %d (%v), want 77 naming the verb", cli.CodeOf(err), err)
	}
	if len(b.writes) != 0 || len(b.data()) != 0 || len(b.entries()) != 0 {
		t.Errorf("a refused step wrote: %+v", b.writes)
	}
	if err := b.run(&fakeStep{batches: 2}, "client", nil); err != nil {
		t.Errorf("a client dry run needs no rights: %v", err)
	}
}

// A lease unchanged while watched for its whole duration is taken over, with a warning.
func TestStaleLockIsTakenOverWithAWarning(t *testing.T) {
	shortLease(t, 600*time.Millisecond)
	b := newBed(t, heldLease(time.Now().Add(-time.Minute)))
	if err := b.run(&fakeStep{batches: 1}, "none", nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.errOut.String(), "taking over the lock from alice") {
		t.Errorf("no warning: %s", b.errOut)
	}
}

func TestCancellationLeavesACancelledEntryARerunCompletes(t *testing.T) {
	b := newBed(t)
	sig := make(chan os.Signal, 1)
	s := &fakeStep{batches: 4, onBatch: func(i int) {
		if i == 1 {
			sig <- syscall.SIGINT
			time.Sleep(100 * time.Millisecond) // the runner sees it before the next batch
		}
	}}
	err := b.run(s, "none", sig)
	if cli.CodeOf(err) != cli.ExitCancelled {
		t.Fatalf("exit %d, want 130: %v", cli.CodeOf(err), err)
	}
	e := b.entries()
	if len(e) != 1 || e[0].State != journal.StateCancelled || len(e[0].Done) != 2 || len(b.data()) != 2 {
		t.Fatalf("cancelled after the batch in flight: entry %+v, data %v", e, b.data())
	}
	if err := b.run(&fakeStep{batches: 4}, "none", nil); err != nil {
		t.Fatal(err)
	}
	e = b.entries()
	if len(e) != 1 || e[0].State != journal.StateInEffect || len(b.data()) != 4 || len(e[0].Done) != 4 {
		t.Errorf("the rerun must resume the same entry and complete it: %+v data %v", e, b.data())
	}
	if before, _, _ := unstructured.NestedStringMap(e[0].Objects[0].State.Object, "data"); len(before) != 0 {
		t.Errorf("the resumed entry must keep the state before the first run: %+v", e[0].Objects[0].State)
	}
}

func TestCommandLineLeavesCredentialsOut(t *testing.T) {
	cmd := &cobra.Command{Use: "migrate-ns", RunE: func(*cobra.Command, []string) error { return nil }}
	genericclioptions.NewConfigFlags(true).AddFlags(cmd.Flags())
	var to string
	cmd.Flags().StringVar(&to, "to", "", "")
	if err := cmd.ParseFlags([]string{"--token", "s3cret", "--client-key=/secret/key", "--as", "admin", "--kubeconfig", "/k", "--context", "prod", "--to", "1-31"}); err != nil {
		t.Fatal(err)
	}
	got := CommandLine(cmd, []string{"shop", "a b"})
	if got != "kubectl istio-upgrade migrate-ns shop 'a b' --context=prod --to=1-31" {
		t.Errorf("got %q", got)
	}
}

// outerStep runs fakeStep inside itself, as tag-move --restart runs migrate-ns.
type outerStep struct{ fakeStep }

func (s *outerStep) Name() string { return "outer" }
func (s *outerStep) Apply(ctx context.Context, r *Run) error {
	if err := r.Write("configmap/target outer", "patched", func([]string) error { return nil }); err != nil {
		return err
	}
	_, err := r.Sub(ctx, &fakeStep{batches: 2}, nil)
	return err
}

func TestSubStepIsOneJournalUnit(t *testing.T) {
	b := newBed(t)
	if err := b.run(&outerStep{}, "none", nil); err != nil {
		t.Fatal(err)
	}
	e := b.entries()
	if len(e) != 1 || e[0].Step != "outer" || e[0].State != journal.StateInEffect {
		t.Fatalf("one command must be one entry: %+v", e)
	}
	if len(e[0].Done) != 3 {
		t.Errorf("each change recorded once (1 outer + 2 sub), got %q", e[0].Done)
	}
}

// shortLease makes the lock's timings test-sized for one test.
func shortLease(t *testing.T, d time.Duration) {
	t.Helper()
	oldD, oldR, oldP := LockDuration, LockRenew, lockPoll
	LockDuration, LockRenew, lockPoll = d, d/6, d/30
	t.Cleanup(func() { LockDuration, LockRenew, lockPoll = oldD, oldR, oldP })
}

// A lease that looks abandoned is watched, on this machine's clock, before it is taken over: one its
// holder renews meanwhile (whatever its clock says) is refused with the lock's code, nothing written.
func TestLeaseRenewedWhileWatchedIsRefused(t *testing.T) {
	shortLease(t, 600*time.Millisecond)
	// The holder's clock runs a minute behind: by its renewTime it looks long dead.
	b := newBed(t, heldLease(time.Now().Add(-time.Minute)))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			l, err := b.c.Clients.Kube.CoordinationV1().Leases("istio-system").Get(context.Background(), LockName, metav1.GetOptions{})
			if err != nil || ptr.Deref(l.Spec.HolderIdentity, "") != "alice@host/1" {
				continue
			}
			l.ResourceVersion = fmt.Sprint(time.Now().UnixNano()) // the fake tracker keeps what it is given
			at := metav1.NewMicroTime(time.Now().Add(-time.Minute))
			l.Spec.RenewTime = &at
			_, _ = b.c.Clients.Kube.CoordinationV1().Leases("istio-system").Update(context.Background(), l, metav1.UpdateOptions{})
		}
	}()
	err := b.run(&fakeStep{batches: 1}, "none", nil)
	if cli.CodeOf(err) != cli.ExitLocked || !strings.Contains(err.Error(), "renewed while this step watched it") {
		t.Fatalf("a live holder with a skewed clock: exit %d %v, want 73", cli.CodeOf(err), err)
	}
	if len(b.data()) != 0 || len(b.entries()) != 0 {
		t.Errorf("a refused step wrote: %v", b.data())
	}
}

// A run that can no longer renew for half its lease (frozen, cut off) stops before its next write
// with the lock's code, and writes nothing more: not its entry either.
func TestLostLeaseStopsBeforeTheNextWrite(t *testing.T) {
	shortLease(t, 400*time.Millisecond)
	b := newBed(t)
	s := &fakeStep{batches: 3, onBatch: func(i int) {
		if i == 0 {
			// Frozen past half the lease (the renewal loop is stopped too, as in SIGSTOP).
			time.Sleep(LockDuration)
		}
	}}
	LockRenew = time.Hour
	err := b.run(s, "none", nil)
	if cli.CodeOf(err) != cli.ExitLocked || !strings.Contains(err.Error(), "lost the lock") {
		t.Fatalf("exit %d %v, want 73 (lost the lock)", cli.CodeOf(err), err)
	}
	if d := b.data(); len(d) != 1 {
		t.Errorf("wrote %d batches, want only the one before the freeze: %v", len(d), d)
	}
	e := b.entries()
	if len(e) != 1 || e[0].State != journal.StateRunning {
		t.Fatalf("the entry must be left as the lost run last saved it (running): %+v", e)
	}
	for _, w := range b.writes {
		if w.resource == "leases" && w.verb == "delete" {
			t.Errorf("a run that lost the lock deleted the lease")
		}
	}
	// The next run finds it running with its holder gone: sealed interrupted, then resumed.
	if err := b.run(&fakeStep{batches: 3}, "none", nil); err != nil {
		t.Fatal(err)
	}
	e = b.entries()
	if len(e) != 1 || e[0].State != journal.StateInEffect || len(b.data()) != 3 {
		t.Errorf("the rerun must resume the interrupted entry and complete it: %+v %v", e, b.data())
	}
	if !strings.Contains(b.errOut.String(), "marked interrupted") || !strings.Contains(b.errOut.String(), "resuming journal entry "+e[0].ID) {
		t.Errorf("the rerun must say it sealed and resumed the entry:\n%s", b.errOut)
	}
}

// A killed run's entry (running, nobody holding the lock) is sealed interrupted by the next step, with
// the state it left, so undo can check drift; another command starts its own entry.
func TestKilledRunIsSealedInterrupted(t *testing.T) {
	b := newBed(t)
	rec := b.c.Journal.Begin("fake", "kubectl istio-upgrade fake other")
	rec.CaptureObject(journal.ConfigMapRef("shop", "target"), nil)
	if err := rec.Save(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.run(&fakeStep{batches: 1}, "none", nil); err != nil {
		t.Fatal(err)
	}
	e := b.entries()
	if len(e) != 2 || e[0].State != journal.StateInterrupted || !e[0].Objects[0].Left || e[1].State != journal.StateInEffect {
		t.Fatalf("want the killed entry interrupted with its after state, and a new entry: %+v", e)
	}
	if !e[0].Resumable() {
		t.Errorf("an interrupted entry is resumable")
	}
}

// A ConfigMap planted in the shape of the newest cancelled entry of the same command is never
// resumed, so never signed; the run starts its own entry.
func TestPlantedEntryIsNeverResumedOrSigned(t *testing.T) {
	b := newBed(t)
	if err := b.run(&fakeStep{batches: 1}, "none", nil); err != nil { // creates the key
		t.Fatal(err)
	}
	b.c.Clients.Kube.CoreV1().ConfigMaps("shop").Update(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "target", Namespace: "shop"}, Data: map[string]string{}}, metav1.UpdateOptions{})
	planted := journaltest.Planted(t, &journal.Entry{ID: "0002", Step: "fake", Command: "kubectl istio-upgrade fake shop", State: journal.StateCancelled,
		Objects: []journal.Object{{Ref: journal.ConfigMapRef("shop", "target"), Existed: true}}})
	if _, err := b.c.Clients.Kube.CoreV1().ConfigMaps("istio-system").Create(context.Background(), planted, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := b.run(&fakeStep{batches: 1}, "none", nil); err != nil {
		t.Fatal(err)
	}
	for _, e := range b.entries() {
		if e.ID == "0002" && (e.Signed || e.State != journal.StateCancelled) {
			t.Errorf("the planted entry was resumed or signed: %+v", e)
		}
	}
	if e := b.entries(); len(e) != 3 || e[2].ID != "0003" || !e[2].Signed {
		t.Errorf("the run must start its own entry: %+v", e)
	}
}

// A journal entry written between Plan and the lock (another step ran meanwhile) makes the plan stale:
// exit 76, nothing changed.
func TestJournalWrittenWhilePlanningIsStale(t *testing.T) {
	b := newBed(t)
	s := &planHook{fakeStep: fakeStep{batches: 1}, hook: func() {
		other := journal.New(b.c.Clients.Kube, b.c.Clients.Dynamic, "istio-system")
		if err := other.Begin("tag-move", "kubectl istio-upgrade tag-move x").Save(context.Background()); err != nil {
			t.Error(err)
		}
	}}
	err := b.run(s, "none", nil)
	if cli.CodeOf(err) != cli.ExitStale || !strings.Contains(err.Error(), "0001") {
		t.Fatalf("exit %d %v, want 76 naming entry 0001", cli.CodeOf(err), err)
	}
	if len(b.data()) != 0 || len(b.entries()) != 1 {
		t.Errorf("a stale plan changed something: %v %+v", b.data(), b.entries())
	}
}

// A ConfigMap with the journal label and a name outside the journal's IDs orders nothing: the rerun
// still resumes its entry.
func TestForeignNamesDoNotOrderTheJournal(t *testing.T) {
	b := newBed(t)
	sig := make(chan os.Signal, 1)
	sig <- syscall.SIGINT
	if err := b.run(&fakeStep{batches: 2}, "none", sig); cli.CodeOf(err) != cli.ExitCancelled {
		t.Fatalf("exit %d %v", cli.CodeOf(err), err)
	}
	foreign := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: journal.NamePrefix + "zzzz", Namespace: "istio-system", Labels: map[string]string{journal.LabelJournal: "entry"}}}
	if _, err := b.c.Clients.Kube.CoreV1().ConfigMaps("istio-system").Create(context.Background(), foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := b.run(&fakeStep{batches: 2}, "none", nil); err != nil {
		t.Fatal(err)
	}
	e := b.entries()
	if len(e) != 2 || e[0].ID != "zzzz" || e[1].ID != "0001" || e[1].State != journal.StateInEffect {
		t.Errorf("want the foreign name first and entry 0001 resumed to in-effect: %+v", e)
	}
}

type planHook struct {
	fakeStep
	hook func()
}

func (s *planHook) Plan(ctx context.Context, r *Run) (*Plan, error) {
	s.hook()
	return s.fakeStep.Plan(ctx, r)
}

// A gate that meets an overloaded or unreachable apiserver waits it out instead of failing; an error
// that is not transient still fails at once.
func TestWaitRetriesTransientErrors(t *testing.T) {
	p := cli.NewProgress(&bytes.Buffer{})
	calls := 0
	err := WaitFor(context.Background(), p, 10*time.Second, "gate", func(context.Context) (string, bool, error) {
		calls++
		if calls == 1 {
			return "", false, apierrors.NewServiceUnavailable("paused")
		}
		return "", true, nil
	})
	if err != nil || calls != 2 {
		t.Errorf("a 503 then done: %v after %d looks", err, calls)
	}
	err = WaitFor(context.Background(), p, 10*time.Second, "gate", func(context.Context) (string, bool, error) {
		return "", false, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "x", errors.New("no"))
	})
	if cli.CodeOf(err) != cli.ExitNotPermitted {
		t.Errorf("a denial must end the wait at once: %v", err)
	}
}

// unitStep begins a unit before each batch's write and finishes it after; its Plan notes the units
// in flight the runner hands it on a rerun.
type unitStep struct {
	fakeStep
	inflight []journal.Unit
	freezeAt int
}

func (s *unitStep) Plan(ctx context.Context, r *Run) (*Plan, error) {
	s.inflight = r.InFlight()
	return s.fakeStep.Plan(ctx, r)
}

func (s *unitStep) Apply(ctx context.Context, r *Run) error {
	for i := 0; i < s.batches; i++ {
		if r.Stopping() {
			return r.Cancelled()
		}
		name := fmt.Sprintf("batch %d", i)
		if err := r.Begin(ctx, name, []string{"configmap/shop/target"}, map[string]string{"key": fmt.Sprint(i)}); err != nil {
			return err
		}
		patch := []byte(fmt.Sprintf(`{"data":{"%d":"done"}}`, i))
		if err := r.Write("configmap/target", "patched", func([]string) error {
			_, err := r.C.Kube.CoreV1().ConfigMaps("shop").Patch(ctx, "target", types.MergePatchType, patch, r.PatchOptions())
			return err
		}); err != nil {
			return err
		}
		if i == s.freezeAt {
			time.Sleep(LockDuration) // frozen before its gate: the unit stays in flight
			continue
		}
		r.Finish(name)
	}
	return nil
}

// A unit is recorded before its first write; a rerun of the interrupted entry is handed the unit
// that never finished, with what it recorded.
func TestUnitsInFlightReachTheRerun(t *testing.T) {
	shortLease(t, 400*time.Millisecond)
	LockRenew = time.Hour
	b := newBed(t)
	if err := b.run(&unitStep{fakeStep: fakeStep{batches: 3}, freezeAt: 1}, "none", nil); cli.CodeOf(err) != cli.ExitLocked {
		t.Fatalf("exit %d %v, want 73", cli.CodeOf(err), err)
	}
	e := b.entries()
	if len(e) != 1 || len(e[0].Units) != 2 || !e[0].Units[0].Done || e[0].Units[1].Done || e[0].Units[1].Notes["key"] != "1" {
		t.Fatalf("units recorded: %+v", e)
	}
	again := &unitStep{fakeStep: fakeStep{batches: 0}, freezeAt: -1}
	if err := b.run(again, "none", nil); err != nil {
		t.Fatal(err)
	}
	if len(again.inflight) != 1 || again.inflight[0].Name != "batch 1" || again.inflight[0].Objects[0] != "configmap/shop/target" {
		t.Errorf("the rerun's plan was handed %+v, want batch 1 in flight", again.inflight)
	}
}
