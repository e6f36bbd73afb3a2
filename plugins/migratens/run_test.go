package migratens

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
)

func toShop(timeout time.Duration, rollback bool) func() step.Step {
	return func() step.Step {
		o := NewOptions()
		o.To, o.Timeout, o.RollbackOnFailure = "1-31", timeout, rollback
		return o
	}
}

func TestRunContract(t *testing.T) {
	steptest.Contract(t, steptest.Mesh, toShop(time.Minute, false), "shop")
}

// Fakes run no pods: the gate never sees web's new pods, times out (74), and --rollback-on-failure
// relabels shop back and restarts web again, all in one rolled-back entry.
func TestRunGateTimeoutRollsBack(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	err := b.Run(toShop(1500*time.Millisecond, true)(), "none", nil, "shop")
	if cli.CodeOf(err) != cli.ExitTimeout {
		t.Fatalf("exit %d (%v), want 74", cli.CodeOf(err), err)
	}
	want := []string{"patch namespaces shop", "patch deployments web", "patch namespaces shop", "patch deployments web"}
	if got := b.StepWrites(); !slices.Equal(got, want) {
		t.Errorf("writes %v, want relabel, restart, then both again to roll back %v", got, want)
	}
	if l := b.Rev("shop"); l != "1-30" {
		t.Errorf("shop labelled %q after the rollback, want 1-30", l)
	}
	b.CheckFieldManager()
	e := b.Entries()
	if len(e) != 1 || e[0].State != journal.StateRolledBack {
		t.Fatalf("entries %+v, want one rolled-back entry", e)
	}
}

// Without --rollback-on-failure a timed-out gate leaves the change and an incomplete entry that undo takes back.
func TestRunGateTimeoutIncompleteThenUndo(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	err := b.Run(toShop(time.Second, false)(), "none", nil, "shop")
	if cli.CodeOf(err) != cli.ExitTimeout {
		t.Fatalf("exit %d (%v), want 74", cli.CodeOf(err), err)
	}
	e := b.Entries()
	if len(e) != 1 || e[0].State != journal.StateIncomplete || b.Rev("shop") != "1-31" {
		t.Fatalf("entries %+v, label %s", e, b.Rev("shop"))
	}
	b.Reset()
	if _, err := Undo(context.Background(), b.Clients, b.Journal, e[0], nil, cli.NewProgress(b.ErrOut)); err != nil {
		t.Fatal(err)
	}
	if l := b.Rev("shop"); l != "1-30" {
		t.Errorf("undo left shop labelled %q", l)
	}
}

// SIGINT before the first batch: a cancelled entry with nothing done; the rerun resumes that entry.
func TestRunCancelledThenResumed(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	sig := make(chan os.Signal, 1)
	b.Clients.Kube.(interface {
		PrependReactor(string, string, k8stesting.ReactionFunc)
	}).PrependReactor("create", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if strings.HasPrefix(a.(k8stesting.CreateAction).GetObject().(metav1.Object).GetName(), journal.NamePrefix) && len(sig) == 0 && cap(sig) == 1 {
			sig <- syscall.SIGINT // as the entry is written, before Apply
			time.Sleep(100 * time.Millisecond)
		}
		return false, nil, nil
	})
	err := b.Run(toShop(time.Second, false)(), "none", sig, "shop")
	if cli.CodeOf(err) != cli.ExitCancelled {
		t.Fatalf("exit %d (%v), want 130", cli.CodeOf(err), err)
	}
	e := b.Entries()
	if len(e) != 1 || e[0].State != journal.StateCancelled || len(e[0].Done) != 0 || b.Rev("shop") != "1-30" {
		t.Fatalf("entries %+v, label %s", e, b.Rev("shop"))
	}
	err = b.Run(toShop(time.Second, false)(), "none", nil, "shop")
	if cli.CodeOf(err) != cli.ExitTimeout { // the fake gate again; what matters is which entry it wrote
		t.Fatalf("rerun: exit %d (%v)", cli.CodeOf(err), err)
	}
	e = b.Entries()
	if len(e) != 1 || e[0].State != journal.StateIncomplete || len(e[0].Done) != 2 {
		t.Errorf("the rerun must resume the cancelled entry: %+v", e)
	}
}

// kube-system is refused by name (nothing changed) unless --include-system, and never taken by --all.
func TestRunSystemNamespaces(t *testing.T) {
	objs := append(steptest.Mesh(), steptest.Namespace("kube-system", map[string]string{istio.LabelRev: "1-30"}))
	b := steptest.New(t, objs...)
	err := b.Run(toShop(time.Second, false)(), "none", nil, "kube-system")
	if cli.CodeOf(err) != cli.ExitBadInput || !strings.Contains(err.Error(), "--include-system") || len(b.Changes()) != 0 {
		t.Fatalf("exit %d (%v), changes %v; want 65 naming --include-system, nothing changed", cli.CodeOf(err), err, b.Changes())
	}
	all := NewOptions()
	all.To, all.All = "1-31", true
	if err := b.Run(all, "client", nil); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.Out.String(), `"namespace/kube-system`) || !strings.Contains(b.Out.String(), `"namespace/shop`) {
		t.Errorf("--all must take shop and leave kube-system out:\n%s", b.Out)
	}
	named := NewOptions()
	named.To, named.IncludeSystem = "1-31", true
	if err := b.Run(named, "client", nil, "kube-system"); err != nil {
		t.Errorf("--include-system: %v", err)
	}
}

// A namespace Argo CD manages: the step warns that Argo CD will revert the change, and the result
// carries the exact patch to commit instead.
func TestRunWarnsAboutGitOpsAndPrintsThePatch(t *testing.T) {
	objs := steptest.Mesh()
	for _, o := range objs {
		if n, ok := o.(*corev1.Namespace); ok && n.Name == "shop" {
			n.Annotations = map[string]string{"argocd.argoproj.io/tracking-id": "shop-apps:/Namespace:/shop"}
		}
	}
	b := steptest.New(t, objs...)
	if err := b.Run(toShop(time.Minute, false)(), "client", nil, "shop"); err != nil {
		t.Fatal(err)
	}
	var res struct {
		Warnings []string
		Patches  []struct {
			Object, Type string
			Patch        json.RawMessage
		}
	}
	if err := json.Unmarshal(b.Out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "Argo CD application shop-apps") || !strings.Contains(b.ErrOut.String(), "revert") {
		t.Errorf("warnings %q, stderr %s", res.Warnings, b.ErrOut)
	}
	found := false
	for _, p := range res.Patches {
		var compact bytes.Buffer
		_ = json.Compact(&compact, p.Patch)
		if p.Object == "namespace/shop" && p.Type == "application/merge-patch+json" && compact.String() == `{"metadata":{"labels":{"istio-injection":null,"istio.io/rev":"1-31"}}}` {
			found = true
		}
	}
	if !found {
		t.Errorf("no committable patch for namespace/shop: %+v", res.Patches)
	}
}
