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
	for _, a := range b.Dynamic.Actions() { // the namespace was listed by the mesh read: not asked for again
		if a.GetVerb() == "get" {
			t.Errorf("asked again for %s", a.GetResource().Resource)
		}
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

// fakeAnalyzer answers the analysis as each revision sees the cluster.
func fakeAnalyzer(byRev map[string][]istio.AnalysisMessage, calls *[]string) func(context.Context, *step.Run, string, string) ([]istio.AnalysisMessage, error) {
	return func(_ context.Context, _ *step.Run, ns, rev string) ([]istio.AnalysisMessage, error) {
		*calls = append(*calls, ns+"@"+rev)
		return byRev[rev], nil
	}
}

// The analysis gate: a namespace (no workloads, so its batches pass at once) whose configuration the
// target revision sees with a new error halts with 75 and, with --rollback-on-failure, is relabelled
// back; a new warning passes unless --strict-analysis; messages of other namespaces do not count.
func TestRunAnalysisGate(t *testing.T) {
	missingGW := istio.AnalysisMessage{Code: "IST0101", Level: "Error", Kind: "VirtualService", Namespace: "calm", Name: "web",
		Message: `Referenced gateway not found: "calm/gw-1-30"`}
	warn := istio.AnalysisMessage{Code: "IST0108", Level: "Warning", Kind: "Pod", Namespace: "calm", Name: "web-1", Message: "Unknown annotation: x"}
	elsewhere := istio.AnalysisMessage{Code: "IST0101", Level: "Error", Kind: "VirtualService", Namespace: "other", Name: "v", Message: "x"}
	old := istio.AnalysisMessage{Code: "IST0106", Level: "Error", Kind: "DestinationRule", Namespace: "calm", Name: "dr", Message: "Schema validation error: y"}
	cases := []struct {
		name     string
		after    []istio.AnalysisMessage
		strict   bool
		wantCode cli.ExitCode
		wantRev  string
	}{
		{"new error", []istio.AnalysisMessage{old, missingGW, elsewhere}, false, cli.ExitGateFailed, "1-30"},
		{"new warning", []istio.AnalysisMessage{old, warn, elsewhere}, false, cli.ExitOK, "1-31"},
		{"new warning, strict", []istio.AnalysisMessage{old, warn}, true, cli.ExitGateFailed, "1-30"},
		{"nothing new", []istio.AnalysisMessage{old, elsewhere}, false, cli.ExitOK, "1-31"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := steptest.New(t, append(steptest.Mesh(), steptest.Namespace("calm", map[string]string{istio.LabelRev: "1-30"}))...)
			var calls []string
			o := NewOptions()
			o.To, o.Timeout, o.RollbackOnFailure, o.StrictAnalysis = "1-31", time.Minute, true, c.strict
			o.Analyzer = fakeAnalyzer(map[string][]istio.AnalysisMessage{"1-30": {old}, "1-31": c.after}, &calls)
			err := b.Run(o, "none", nil, "calm")
			if cli.CodeOf(err) != c.wantCode {
				t.Fatalf("exit %d (%v), want %d", cli.CodeOf(err), err, c.wantCode)
			}
			if l := b.Rev("calm"); l != c.wantRev {
				t.Errorf("calm labelled %q, want %q", l, c.wantRev)
			}
			if want := []string{"@1-30", "@1-31"}; !slices.Equal(calls, want) {
				t.Errorf("analyses %v, want before as 1-30 then after as 1-31 %v", calls, want)
			}
			if len(o.det.Analysis) != 1 || o.det.Analysis[0].Passed != (c.wantCode == cli.ExitOK) {
				t.Fatalf("analysis gates %+v", o.det.Analysis)
			}
			g := o.det.Analysis[0]
			if c.name == "new error" && (len(g.NewErrors) != 1 || !strings.Contains(g.NewErrors[0], "IST0101 virtualservice/calm/web")) {
				t.Errorf("new errors %v", g.NewErrors)
			}
			if c.name == "new error" && !strings.Contains(err.Error(), "IST0101") {
				t.Errorf("the gate's error does not name the message: %v", err)
			}
		})
	}
}

// Without the companion (an error from the analyzer) the step says so and gates on the rest.
func TestRunAnalysisUnavailable(t *testing.T) {
	b := steptest.New(t, append(steptest.Mesh(), steptest.Namespace("calm", map[string]string{istio.LabelRev: "1-30"}))...)
	o := NewOptions()
	o.To, o.Timeout = "1-31", time.Minute
	o.Analyzer = func(context.Context, *step.Run, string, string) ([]istio.AnalysisMessage, error) {
		return nil, istio.ErrNoAnalyzer
	}
	if err := b.Run(o, "none", nil, "calm"); err != nil {
		t.Fatal(err)
	}
	if len(o.det.Warnings) == 0 || !strings.Contains(strings.Join(o.det.Warnings, " "), "analysis unavailable") {
		t.Errorf("warnings %v", o.det.Warnings)
	}
}

// A target two minors ahead of what shop runs is refused before anything changes (65), in dry runs too;
// --allow-version-skip goes ahead.
func TestRunRefusesASkippedMinor(t *testing.T) {
	was := steptest.Versions["1-31"]
	steptest.Versions["1-31"] = "1.32.1"
	t.Cleanup(func() { steptest.Versions["1-31"] = was })
	for _, dry := range []string{"none", "client"} {
		b := steptest.New(t, steptest.Mesh()...)
		err := b.Run(toShop(time.Second, false)(), dry, nil, "shop")
		if cli.CodeOf(err) != cli.ExitBadInput || !strings.Contains(err.Error(), "--allow-version-skip") || !strings.Contains(err.Error(), "2 minors ahead") {
			t.Fatalf("dry-run=%s: exit %d (%v), want 65 naming the skip and the flag", dry, cli.CodeOf(err), err)
		}
		if c := b.Changes(); len(c) != 0 {
			t.Errorf("dry-run=%s: changes %v", dry, c)
		}
	}
	b := steptest.New(t, steptest.Mesh()...)
	b.AllowVersionSkip = true
	if err := b.Run(toShop(time.Second, false)(), "client", nil, "shop"); err != nil {
		t.Fatalf("--allow-version-skip: %v", err)
	}
}

// While the apiserver still injects the namespace's old revision (its label cache behind the write),
// migrate-ns waits before restarting: the restart comes after the injector answers the target.
func TestRunWaitsForTheInjectorToSeeTheLabel(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	probes := 0
	b.Clients.Kube.(interface {
		PrependReactor(string, string, k8stesting.ReactionFunc)
	}).PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		probes++
		if probes > 3 {
			return false, nil, nil // the injector now sees 1-31 (journaltest answers from the label)
		}
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod).DeepCopy()
		p.Annotations = map[string]string{istio.AnnotationStatus: `{"revision":"1-30"}`}
		return true, p, nil
	})
	err := b.Run(toShop(time.Second, false)(), "none", nil, "shop")
	if cli.CodeOf(err) != cli.ExitTimeout { // fakes run no pods: the batch gate times out after the restart
		t.Fatalf("exit %d (%v)", cli.CodeOf(err), err)
	}
	if probes != 4 {
		t.Errorf("%d dry-run pods, want 4 (three answered 1-30, the fourth 1-31)", probes)
	}
	if w := b.StepWrites(); len(w) < 2 || w[1] != "patch deployments web" {
		t.Errorf("writes %v", w)
	}
}

// The success path through the runner, on a bed whose controllers roll pods and whose istiods answer
// syncz: shop relabelled, web restarted once, its new pods on 1-31 and SYNCED, the entry done with
// its batch verified; undo then puts shop and web back on 1-30.
func TestRunSucceedsWhenTheGatePasses(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	b.Live()
	if err := b.Run(toShop(20*time.Second, false)(), "none", nil, "shop"); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	if got, want := b.StepWrites(), []string{"patch namespaces shop", "patch deployments web"}; !slices.Equal(got, want) {
		t.Errorf("writes %v, want %v", got, want)
	}
	b.CheckFieldManager()
	if l := b.Rev("shop"); l != "1-31" {
		t.Errorf("shop labelled %q, want 1-31", l)
	}
	// The gate asks istiod for the batch's namespace only; only the two snapshots (before and after, for
	// the proxy-status diff) read both istiods whole, however many ticks the gate takes.
	asked := b.SynczAsked()
	whole := 0
	for _, ns := range asked {
		if ns == "" {
			whole++
		} else if ns != "shop" {
			t.Errorf("syncz asked for namespace %q", ns)
		}
	}
	if whole != 4 || !slices.Contains(asked, "shop") {
		t.Errorf("syncz asked with namespace filters %q, want 4 whole reads (2 snapshots x 2 istiods) and the gate's for shop", asked)
	}
	if revs := b.PodRevisions("shop"); !slices.Equal(revs, []string{"1-31", "1-31"}) {
		t.Errorf("web's pods injected by %v, want two on 1-31", revs)
	}
	e := b.Entries()
	if len(e) != 1 || e[0].State != journal.StateInEffect {
		t.Fatalf("entries %+v, want one in-effect entry", e)
	}
	if !strings.Contains(b.ErrOut.String(), "gate passed") {
		t.Errorf("no gate result on stderr:\n%s", b.ErrOut)
	}
	var res struct {
		Details struct {
			Gates []GateResult `json:"gates"`
		} `json:"details"`
	}
	if err := json.Unmarshal(b.Out.Bytes(), &res); err != nil || len(res.Details.Gates) != 1 || !res.Details.Gates[0].Passed || res.Details.Gates[0].Pods != 2 {
		t.Errorf("result %s (%v), want one passed batch of 2 pods", b.Out, err)
	}
	b.Reset()
	if _, err := Undo(context.Background(), b.Clients, b.Journal, e[0], nil, cli.NewProgress(b.ErrOut)); err != nil {
		t.Fatal(err)
	}
	if l := b.Rev("shop"); l != "1-30" {
		t.Errorf("undo left shop labelled %q", l)
	}
	steptest.Eventually(t, 5*time.Second, func() string {
		if revs := b.PodRevisions("shop"); !slices.Equal(revs, []string{"1-30", "1-30"}) {
			return "web's pods after undo: " + strings.Join(revs, ",")
		}
		return ""
	})
}
