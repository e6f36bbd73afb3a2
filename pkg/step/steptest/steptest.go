// Package steptest runs a step through the real runner (step.Execute) on fake clientsets, and holds
// the contract every mutating step keeps: a client dry run sends no write, a server dry run sends only
// dryRun writes, a held lock refuses before any write. What fakes cannot show (syncz, rollouts, port-
// forwards) is proven in e2e.
package steptest

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal/journaltest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Bed is a fake cluster a step runs against through the runner.
type Bed struct {
	*journaltest.Cluster
	T           *testing.T
	G           *cli.Global
	Out, ErrOut *bytes.Buffer
	// Flags are added to the command line the journal records (a rerun with the same line resumes an
	// entry that did not finish).
	Flags string
	// AllowVersionSkip is --allow-version-skip.
	AllowVersionSkip bool
	// syncz are the namespace filters the live bed's istiods were asked syncz with ("" for all).
	syncz   []string
	synczMu sync.Mutex
}

// SynczAsked are the namespace filters of every syncz request the live bed's istiods answered, in
// order ("" for a request over all namespaces).
func (b *Bed) SynczAsked() []string {
	b.synczMu.Lock()
	defer b.synczMu.Unlock()
	return append([]string{}, b.syncz...)
}

// New returns a bed holding objs (see journaltest.New).
func New(t *testing.T, objs ...runtime.Object) *Bed {
	t.Helper()
	b := &Bed{T: t, Cluster: journaltest.New(t, objs...)}
	b.G = &cli.Global{ConfigFlags: genericclioptions.NewConfigFlags(true), IstioNamespace: "istio-system", Output: cli.OutputJSON}
	b.G.SetClients(b.Clients)
	return b
}

// Run executes s with args through the runner (-y given); signals may be nil.
func (b *Bed) Run(s step.Step, dry string, signals <-chan os.Signal, args ...string) error {
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	b.Out, b.ErrOut = out, errOut
	cmd := strings.Join(append([]string{"kubectl istio-upgrade", s.Name(), b.Flags}, args...), " ")
	return step.Execute(context.Background(), b.G, streams, s, &step.Options{DryRunStr: dry, Yes: true, AllowVersionSkip: b.AllowVersionSkip}, cmd, args, signals)
}

// Changes are the writes that change the cluster: not dry runs, not the SelfSubjectReview that asks
// who runs the step.
func (b *Bed) Changes() []string {
	var out []string
	for _, s := range b.Sent {
		if len(s.DryRun) == 0 && !strings.HasPrefix(s.Write, "create selfsubjectreviews") {
			out = append(out, s.Write)
		}
	}
	return out
}

// StepWrites are Changes without the runner's own (the lock, the journal and its key).
func (b *Bed) StepWrites() []string {
	var out []string
	for _, w := range b.Changes() {
		if !strings.Contains(w, " leases "+step.LockName) && !strings.Contains(w, " configmaps "+journal.NamePrefix) && !strings.Contains(w, " secrets "+journal.KeySecret) {
			out = append(out, w)
		}
	}
	return out
}

// Entries are the journal's entries.
func (b *Bed) Entries() []*journal.Entry {
	b.T.Helper()
	l, err := b.Journal.List(context.Background())
	if err != nil {
		b.T.Fatal(err)
	}
	return l
}

// Reset forgets the writes seen so far.
func (b *Bed) Reset() { b.Writes, b.Sent = nil, nil }

// HeldLease is the runner's lock, held by alice and renewed just now.
func HeldLease() *coordinationv1.Lease {
	at := metav1.NewMicroTime(time.Now())
	return &coordinationv1.Lease{TypeMeta: metav1.TypeMeta{APIVersion: "coordination.k8s.io/v1", Kind: "Lease"},
		ObjectMeta: metav1.ObjectMeta{Name: step.LockName, Namespace: "istio-system",
			Annotations: map[string]string{step.AnnotationCommand: "kubectl istio-upgrade migrate-ns other --to 1-31", step.AnnotationUser: "alice"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("alice@host/1"), LeaseDurationSeconds: ptr.To(int32(30)), AcquireTime: &at, RenewTime: &at}}
}

// Contract checks what every mutating step promises, each on a fresh bed of objs: --dry-run=client sends
// no write; --dry-run=server sends at least one write and every one with dryRun=All; an identity that may
// not make the step's writes is refused with exit 77 before any write; a lock another operator holds
// refuses with exit 73 before any write. newStep returns the step with its flags set.
func Contract(t *testing.T, objs func() []runtime.Object, newStep func() step.Step, args ...string) {
	t.Helper()
	t.Run("client dry run sends no write", func(t *testing.T) {
		b := New(t, objs()...)
		if err := b.Run(newStep(), "client", nil, args...); err != nil {
			t.Fatalf("%v\n%s", err, b.ErrOut)
		}
		if len(b.Writes) != 0 {
			t.Errorf("wrote %v", b.Writes)
		}
		if !strings.Contains(b.Out.String(), `"dryRun": "client"`) {
			t.Errorf("the result does not say it was a client dry run:\n%s", b.Out)
		}
	})
	t.Run("server dry run sends only dryRun writes", func(t *testing.T) {
		b := New(t, objs()...)
		if err := b.Run(newStep(), "server", nil, args...); err != nil {
			t.Fatalf("%v\n%s", err, b.ErrOut)
		}
		if len(b.Sent) == 0 {
			t.Fatal("sent nothing: the apiserver never saw what the step would do")
		}
		for _, s := range b.Sent {
			if len(s.DryRun) != 1 || s.DryRun[0] != "All" {
				t.Errorf("a real write in a server dry run: %+v", s)
			}
		}
		if len(b.Entries()) != 0 {
			t.Error("a dry run wrote a journal entry")
		}
	})
	t.Run("a denied write refuses before any write", func(t *testing.T) {
		b := New(t, objs()...)
		b.Deny = func(a authzv1.ResourceAttributes) bool {
			runner := a.Resource == "leases" || a.Resource == "configmaps" || a.Resource == "secrets"
			return !runner && (a.Verb == "create" || a.Verb == "update" || a.Verb == "patch" || a.Verb == "delete")
		}
		err := b.Run(newStep(), "none", nil, args...)
		if cli.CodeOf(err) != cli.ExitNotPermitted {
			t.Fatalf("exit %d (%v), want 77: the step must declare the writes it makes", cli.CodeOf(err), err)
		}
		if c := b.Changes(); len(c) != 0 || len(b.Entries()) != 0 {
			t.Errorf("a refused step changed %v", c)
		}
	})
	t.Run("held lock refuses before any write", func(t *testing.T) {
		b := New(t, append(objs(), HeldLease())...)
		err := b.Run(newStep(), "none", nil, args...)
		if cli.CodeOf(err) != cli.ExitLocked || !strings.Contains(err.Error(), "alice") {
			t.Fatalf("exit %d (%v), want 73 naming the holder", cli.CodeOf(err), err)
		}
		if c := b.Changes(); len(c) != 0 || len(b.Entries()) != 0 {
			t.Errorf("a refused step changed %v", c)
		}
	})
}

// CheckFieldManager fails the test when a change was sent without the runner's field manager (deletes
// carry none).
func (b *Bed) CheckFieldManager() {
	b.T.Helper()
	for _, s := range b.Sent {
		if !strings.HasPrefix(s.Write, "delete ") && !strings.HasPrefix(s.Write, "create selfsubjectreviews") && s.Manager != step.FieldManager {
			b.T.Errorf("%s sent with field manager %q, want %q", s.Write, s.Manager, step.FieldManager)
		}
	}
}

// Rev is the istio.io/rev label of namespace ns as the cluster holds it now.
func (b *Bed) Rev(ns string) string {
	b.T.Helper()
	n, err := b.Clients.Kube.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
	if err != nil {
		b.T.Fatal(err)
	}
	return n.Labels[istio.LabelRev]
}
