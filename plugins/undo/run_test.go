package undo_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/undo"
)

// The undo step finds migrate-ns's restorer in the registry, as the plugin does.
func TestMain(m *testing.M) {
	step.Register(plugins.Steps())
	os.Exit(m.Run())
}

// migrated runs `migrate-ns shop --to REV` (a restart's gate times out on fakes: an incomplete entry,
// shop relabelled, web restarted).
func migrated(t *testing.T, b *steptest.Bed, rev string) {
	t.Helper()
	g, _ := step.Registered("migrate-ns")
	o, f := g.New()
	if err := f.Parse([]string{"--to", rev, "--timeout", "500ms"}); err != nil {
		t.Fatal(err)
	}
	n := len(b.Entries())
	b.Flags = "--to=" + rev
	if err := b.Run(o, "none", nil, "shop"); (err != nil && cli.CodeOf(err) != cli.ExitTimeout) || len(b.Entries()) != n+1 {
		t.Fatalf("migrate-ns: %v\n%s\n%s", err, b.Out, b.ErrOut)
	}
	b.Reset()
}

func TestRunDryRuns(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	migrated(t, b, "1-31")
	if err := b.Run(new(undo.Options), "client", nil); err != nil || len(b.Writes) != 0 {
		t.Fatalf("client dry run: %v, wrote %v", err, b.Writes)
	}
	if err := b.Run(new(undo.Options), "server", nil); err != nil {
		t.Fatal(err)
	}
	if len(b.Sent) == 0 {
		t.Fatal("a server dry run sent nothing")
	}
	for _, s := range b.Sent {
		if len(s.DryRun) != 1 {
			t.Errorf("a real write in a server dry run: %+v", s)
		}
	}
	if b.Rev("shop") != "1-31" || len(b.Entries()) != 1 {
		t.Errorf("a dry run changed the cluster: shop on %s, %d entries", b.Rev("shop"), len(b.Entries()))
	}
}

func TestRunRefusesUnderAHeldLock(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	migrated(t, b, "1-31")
	if _, err := b.Clients.Kube.CoordinationV1().Leases("istio-system").Create(context.Background(), steptest.HeldLease(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	err := b.Run(new(undo.Options), "none", nil)
	if cli.CodeOf(err) != cli.ExitLocked || len(b.Changes()) != 0 {
		t.Fatalf("exit %d (%v), changes %v; want 73, nothing changed", cli.CodeOf(err), err, b.Changes())
	}
}

// undo restores the last entry, is journaled itself, and the same entry is not undone twice.
func TestRunUndoesTheLastEntryOnce(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	migrated(t, b, "1-31")
	if err := b.Run(new(undo.Options), "none", nil); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	if b.Rev("shop") != "1-30" {
		t.Errorf("shop on %s after undo, want 1-30", b.Rev("shop"))
	}
	b.CheckFieldManager()
	e := b.Entries()
	if len(e) != 2 || e[0].UndoneBy != e[1].ID || e[1].UndoOf != e[0].ID || e[1].State != journal.StateInEffect {
		t.Fatalf("entries %+v %+v", e[0], e[len(e)-1])
	}
	b.Reset()
	err := b.Run(new(undo.Options), "none", nil, e[0].ID)
	if cli.CodeOf(err) != cli.ExitBadInput || len(b.Changes()) != 0 {
		t.Errorf("undoing an undone entry: exit %d (%v), changes %v", cli.CodeOf(err), err, b.Changes())
	}
}

// An entry a later step changed again is refused (66) until that one is undone.
func TestRunRefusesAnOverwrittenEntry(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	migrated(t, b, "1-31")
	migrated(t, b, "1-30")
	first := b.Entries()[0].ID
	err := b.Run(new(undo.Options), "none", nil, first)
	if cli.CodeOf(err) != cli.ExitBlocked || len(b.Changes()) != 0 || !strings.Contains(err.Error(), "undo them first") {
		t.Fatalf("exit %d (%v), changes %v; want 66, nothing changed", cli.CodeOf(err), err, b.Changes())
	}
}

func setLabel(t *testing.T, b *steptest.Bed, key, value string) {
	t.Helper()
	n, err := b.Clients.Kube.CoreV1().Namespaces().Get(context.Background(), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels[key] = value
	if _, err := b.Clients.Kube.CoreV1().Namespaces().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.Reset()
}

// A label a teammate adds after the step survives undo.
func TestRunKeepsOutsideChanges(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	migrated(t, b, "1-31")
	setLabel(t, b, "team", "payments-oncall")
	if err := b.Run(new(undo.Options), "none", nil); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	n, _ := b.Clients.Kube.CoreV1().Namespaces().Get(context.Background(), "shop", metav1.GetOptions{})
	if n.Labels[istio.LabelRev] != "1-30" || n.Labels["team"] != "payments-oncall" {
		t.Errorf("labels after undo %v: want istio.io/rev=1-30 back and team kept", n.Labels)
	}
}

// Someone changed the label the step set: undo refuses (68) naming it, changes nothing; --force restores.
func TestRunRefusesDriftUnlessForced(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	migrated(t, b, "1-31")
	setLabel(t, b, istio.LabelRev, "canary")
	err := b.Run(new(undo.Options), "none", nil)
	if cli.CodeOf(err) != cli.ExitDrifted || !strings.Contains(err.Error(), `metadata.labels["istio.io/rev"]`) || len(b.Changes()) != 0 {
		t.Fatalf("exit %d (%v), changes %v; want 68 naming the label, nothing changed", cli.CodeOf(err), err, b.Changes())
	}
	forced := new(undo.Options)
	forced.Force = true
	if err := b.Run(forced, "none", nil); err != nil {
		t.Fatalf("--force: %v", err)
	}
	if b.Rev("shop") != "1-30" {
		t.Errorf("--force left shop on %s", b.Rev("shop"))
	}
}

// A ConfigMap with the journal label that this tool did not write is never replayed.
func TestRunRefusesAHandMadeEntry(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	migrated(t, b, "1-31")
	cms := b.Clients.Kube.CoreV1().ConfigMaps("istio-system")
	cm, err := cms.Get(context.Background(), journal.NamePrefix+"0001", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Name, cm.ResourceVersion, cm.Annotations = journal.NamePrefix+"0002", "", nil
	if _, err := cms.Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	err = b.Run(new(undo.Options), "none", nil, "0002")
	if cli.CodeOf(err) != cli.ExitBadInput || !strings.Contains(err.Error(), "entry 0002 is not") || len(b.Changes()) != 0 {
		t.Fatalf("exit %d (%v), changes %v; want 65, nothing changed", cli.CodeOf(err), err, b.Changes())
	}
}

// An undo that fails part way is retried by running it again: the failed undo resumes, and the entry
// ends undone once.
func TestRunFailedUndoIsRetried(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	migrated(t, b, "1-31")
	failed := false
	b.Dynamic.PrependReactor("update", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		if !failed {
			failed = true
			return true, nil, errors.New("etcdserver: request timed out")
		}
		return false, nil, nil
	})
	if err := b.Run(new(undo.Options), "none", nil); err == nil {
		t.Fatal("the first undo did not fail")
	}
	if b.Rev("shop") != "1-31" {
		t.Fatalf("shop on %s after the failed undo", b.Rev("shop"))
	}
	if err := b.Run(new(undo.Options), "none", nil); err != nil {
		t.Fatalf("retry: %v\n%s", err, b.ErrOut)
	}
	e := b.Entries()
	if b.Rev("shop") != "1-30" || len(e) != 2 || e[0].UndoneBy != e[1].ID || e[1].Status() != journal.StateInEffect {
		t.Errorf("after the retry: shop on %s, entries %+v / %+v", b.Rev("shop"), e[0], e[len(e)-1])
	}
}
