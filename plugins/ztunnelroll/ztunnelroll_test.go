package ztunnelroll

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
)

func newStep() *Options {
	return &Options{To: "1-31", NodesPerBatch: 1, MaxConnections: -1, Timeout: time.Minute, RollbackOnFailure: true}
}

func TestRunContract(t *testing.T) {
	steptest.Contract(t, steptest.Ambient, func() step.Step { return newStep() })
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  func(*Options)
		args []string
	}{
		{"no --to", func(o *Options) { o.To = "" }, nil},
		{"an argument", func(*Options) {}, []string{"ztunnel"}},
		{"no nodes per batch", func(o *Options) { o.NodesPerBatch = 0 }, nil},
		{"negative batches", func(o *Options) { o.MaxBatches = -1 }, nil},
		{"drain and connections", func(o *Options) { o.Drain, o.MaxConnections = true, 0 }, nil},
		{"bad connections", func(o *Options) { o.MaxConnections = -2 }, nil},
		{"force without drain", func(o *Options) { o.Force = true }, nil},
		{"emptydir without drain", func(o *Options) { o.DeleteEmptyDirData = true }, nil},
		{"no timeout", func(o *Options) { o.Timeout = 0 }, nil},
	} {
		o := newStep()
		tt.set(o)
		if err := o.Validate(&step.Run{}, tt.args); cli.CodeOf(err) != cli.ExitUsage {
			t.Errorf("%s: exit %d (%v), want 64", tt.name, cli.CodeOf(err), err)
		}
	}
	if err := newStep().Validate(&step.Run{}, nil); err != nil {
		t.Errorf("valid flags refused: %v", err)
	}
}

// The plan: batches of --nodes-per-batch in node order, --max-batches leaving the rest, and the
// DaemonSets set to the target with OnDelete (istio-cni first), all in one client dry run.
func TestPlanBatches(t *testing.T) {
	b := steptest.New(t, steptest.Ambient()...)
	o := newStep()
	o.NodesPerBatch, o.MaxBatches = 2, 1
	if err := b.Run(o, "client", nil); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	var doc struct {
		Actions []struct{ Object, Verb string }
		Details Details
	}
	if err := json.Unmarshal(b.Out.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, b.Out)
	}
	d := doc.Details
	if len(d.Batches) != 1 || !slices.Equal(d.Batches[0], []string{"node-0", "node-1"}) || !slices.Equal(d.Remaining, []string{"node-2"}) {
		t.Errorf("batches %v, remaining %v; want [[node-0 node-1]] and [node-2]", d.Batches, d.Remaining)
	}
	if d.Version != "1.31.0" || d.Revision != "1-31" {
		t.Errorf("target %s %s, want 1-31 1.31.0", d.Revision, d.Version)
	}
	var objects []string
	for _, a := range doc.Actions {
		objects = append(objects, a.Object)
	}
	if want := []string{"daemonset/istio-system/istio-cni-node", "daemonset/istio-system/ztunnel"}; !slices.Equal(objects, want) {
		t.Errorf("actions on %v, want %v (istio-cni first)", objects, want)
	}
}

// Refusals leave the cluster as it was: not ambient, an unknown target, a DaemonSet that already has
// the target and would roll by itself; a mesh already on the target has nothing to do.
func TestRefusals(t *testing.T) {
	onTarget := func() []runtime.Object {
		var out []runtime.Object
		for _, obj := range steptest.Ambient() {
			switch x := obj.(type) {
			case *appsv1.DaemonSet:
				comp := mesh.ComponentCNI
				if x.Name == istio.ZtunnelDaemonSet {
					comp = mesh.ComponentZtunnel
				}
				obj = WithTarget(x, comp, "1-31", "1.31.0", "istio-system")
			}
			out = append(out, obj)
		}
		return out
	}
	for _, tt := range []struct {
		name string
		objs []runtime.Object
		to   string
		code cli.ExitCode
	}{
		{"not ambient", steptest.Mesh(), "1-31", cli.ExitBadInput},
		{"unknown revision", steptest.Ambient(), "1-99", cli.ExitBadInput},
		{"template at target, RollingUpdate", onTarget(), "1-31", cli.ExitBadInput},
		{"already there", steptest.Ambient(), "1-30", cli.ExitOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := steptest.New(t, tt.objs...)
			o := newStep()
			o.To = tt.to
			err := b.Run(o, "none", nil)
			if cli.CodeOf(err) != tt.code {
				t.Fatalf("exit %d (%v), want %d", cli.CodeOf(err), err, tt.code)
			}
			if w := b.StepWrites(); len(w) != 0 {
				t.Errorf("changed %v", w)
			}
		})
	}
}

func TestWithTarget(t *testing.T) {
	var zt, cni *appsv1.DaemonSet
	for _, obj := range steptest.Ambient() {
		if ds, ok := obj.(*appsv1.DaemonSet); ok && ds.Name == istio.ZtunnelDaemonSet {
			zt = ds
		} else if ok {
			cni = ds
		}
	}
	got := WithTarget(zt, mesh.ComponentZtunnel, "1-31", "1.31.0", "istio-system")
	c := got.Spec.Template.Spec.Containers[0]
	if c.Image != "docker.io/istio/ztunnel:1.31.0" || c.Env[0].Value != "istiod-1-31.istio-system.svc:15012" || c.Env[1].Value != "istiod-1-31.istio-system.svc:15012" {
		t.Errorf("ztunnel container %s %v", c.Image, c.Env)
	}
	if got.Spec.Template.Annotations[istio.LabelRev] != "1-31" || got.Annotations[istio.LabelRev] != "1-31" {
		t.Errorf("istio.io/rev annotations %v %v", got.Spec.Template.Annotations, got.Annotations)
	}
	if v, rev := mesh.TemplateTarget(&got.Spec.Template, mesh.ComponentZtunnel); v != "1.31.0" || rev != "1-31" {
		t.Errorf("the template reads as %s %s", v, rev)
	}
	if zt.Spec.Template.Spec.Containers[0].Image != "docker.io/istio/ztunnel:1.30.0" {
		t.Error("WithTarget changed its input")
	}
	def := WithTarget(zt, mesh.ComponentZtunnel, "default", "1.31.0", "istio-system")
	if def.Spec.Template.Spec.Containers[0].Env[1].Value != "istiod.istio-system.svc:15012" || def.Spec.Template.Annotations[istio.LabelRev] != "" {
		t.Errorf("the non-revisioned default: %v %v", def.Spec.Template.Spec.Containers[0].Env, def.Spec.Template.Annotations)
	}
	g := WithTarget(cni, mesh.ComponentCNI, "1-31", "1.31.0", "istio-system")
	if g.Spec.Template.Spec.Containers[0].Image != "docker.io/istio/install-cni:1.31.0-distroless" || g.Labels[istio.LabelRev] != "1-31" {
		t.Errorf("istio-cni: %s %v", g.Spec.Template.Spec.Containers[0].Image, g.Labels)
	}
	custom := zt.DeepCopy()
	custom.Spec.Template.Spec.Containers[0].Env[0].Value = "my-ca.example.com:15012"
	if v := WithTarget(custom, mesh.ComponentZtunnel, "1-31", "1.31.0", "istio-system").Spec.Template.Spec.Containers[0].Env[0].Value; v != "my-ca.example.com:15012" {
		t.Errorf("a custom CA address was rewritten to %s", v)
	}
}

func TestRetag(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io/istio/ztunnel:1.30.0":                "docker.io/istio/ztunnel:1.31.0",
		"docker.io/istio/ztunnel:1.30.0-distroless":     "docker.io/istio/ztunnel:1.31.0-distroless",
		"localhost:5000/istio/ztunnel":                  "localhost:5000/istio/ztunnel:1.31.0",
		"gcr.io/istio/install-cni:1.30.2@sha256:abcdef": "gcr.io/istio/install-cni:1.31.0",
		"registry:5000/install-cni:1.30.0-debug":        "registry:5000/install-cni:1.31.0-debug",
	} {
		if got := Retag(in, "1.31.0"); got != want {
			t.Errorf("Retag(%s) = %s, want %s", in, got, want)
		}
	}
}

// Undo reads the batches and hashes the run noted: with a server dry run it lists every node of every
// batch, last batch first, ztunnel before istio-cni, and sends nothing without dryRun.
func TestUndoOrder(t *testing.T) {
	b := steptest.New(t, steptest.Ambient()...)
	o := newStep()
	if err := b.Run(o, "client", nil); err != nil { // a plan only, to have the DaemonSets' refs
		t.Fatal(err)
	}
	ctx := context.Background()
	rec := b.Journal.Begin("ztunnel-roll", "kubectl istio-upgrade ztunnel-roll --to 1-31")
	if err := rec.Capture(ctx, dsRefs()...); err != nil {
		t.Fatal(err)
	}
	rec.Note(BatchNote(0), "node-0")
	rec.Note(BatchNote(1), "node-1,node-2")
	for _, n := range steptest.Nodes {
		rec.Note(HashNote(n, mesh.ComponentZtunnel), "old")
		rec.Note(HashNote(n, mesh.ComponentCNI), "old")
	}
	b.Reset()
	actions, err := Undo(ctx, b.Clients, b.Journal, rec.Entry(), []string{metav1.DryRunAll}, cli.NewProgress(b.ErrOut))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range actions {
		got = append(got, a.Ref.Name+": "+strings.Fields(a.Verb)[0]+" "+strings.Fields(a.Verb)[1])
	}
	want := []string{"ztunnel: node node-2", "istio-cni-node: node node-2", "ztunnel: node node-1", "istio-cni-node: node node-1",
		"ztunnel: node node-0", "istio-cni-node: node node-0", "istio-cni-node: template and", "ztunnel: template and"}
	if !slices.Equal(got, want) {
		t.Errorf("undo order\n got %v\nwant %v", got, want)
	}
	if c := b.Changes(); len(c) != 0 {
		t.Errorf("a dry-run undo changed %v", c)
	}
}

func dsRefs() []journal.ObjectRef {
	return []journal.ObjectRef{journal.DaemonSetRef("istio-system", istio.CNIDaemonSet), journal.DaemonSetRef("istio-system", istio.ZtunnelDaemonSet)}
}

// A staged roll keeps the DaemonSet's own strategy across runs: the first run's OnDelete stores it,
// a later run (which finds OnDelete) still reads it, and undo's restore puts the annotation back.
func TestOwnStrategyKept(t *testing.T) {
	var zt *appsv1.DaemonSet
	for _, obj := range steptest.Ambient() {
		if ds, ok := obj.(*appsv1.DaemonSet); ok && ds.Name == istio.ZtunnelDaemonSet {
			zt = ds
		}
	}
	o := newStep()
	o.rev, o.version = "1-31", "1.31.0"
	a := &agentSet{component: mesh.ComponentZtunnel, ds: zt, own: ownStrategy(zt)}
	staged := zt.DeepCopy()
	o.toTarget(a, "istio-system")(staged)
	if staged.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType {
		t.Fatalf("strategy %s, want OnDelete", staged.Spec.UpdateStrategy.Type)
	}
	if got := ownStrategy(staged); got.Type != appsv1.RollingUpdateDaemonSetStrategyType {
		t.Errorf("a later run reads the own strategy as %q, want RollingUpdate", got.Type)
	}
	again := staged.DeepCopy()
	o.toTarget(&agentSet{component: mesh.ComponentZtunnel, ds: staged, own: ownStrategy(staged)}, "istio-system")(again)
	if again.Annotations[AnnotationOwnStrategy] != staged.Annotations[AnnotationOwnStrategy] {
		t.Errorf("a second run changed the kept strategy: %q → %q", staged.Annotations[AnnotationOwnStrategy], again.Annotations[AnnotationOwnStrategy])
	}
	restoreSpec(again, zt)
	if _, ok := again.Annotations[AnnotationOwnStrategy]; ok || again.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType {
		t.Errorf("restored to the state before the roll: %v %s", again.Annotations, again.Spec.UpdateStrategy.Type)
	}
}

// --drain follows kubectl drain's rules (its own helper): an ambient pod without a controller, or
// with emptyDir data, refuses the roll before anything changes, naming the kubectl flag that allows
// it; with both flags the roll goes ahead. Non-ambient pods on the node (here a sidecar pod without a
// controller) are not the roll's concern.
func TestDrainRefusesAsKubectlDrain(t *testing.T) {
	bare := steptest.Pod("bookinfo", "debug", "x", "")
	bare.Name, bare.OwnerReferences, bare.Spec.NodeName = "debug", nil, "node-0"
	scratch := steptest.Pod("bookinfo", "cache", "x", "")
	scratch.Spec.NodeName = "node-1"
	scratch.Spec.Volumes = []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	outside := steptest.Pod("shop", "tool", "x", "1-30") // a sidecar pod: not ambient
	outside.Name, outside.OwnerReferences, outside.Spec.NodeName = "tool", nil, "node-0"
	objs := func() []runtime.Object { return append(steptest.Ambient(), bare, scratch, outside) }
	for _, tt := range []struct {
		name, dry string
		set       func(*Options)
		code      cli.ExitCode
		msg       string
	}{
		{"a pod without a controller", "none", func(*Options) {}, cli.ExitBadInput, "bookinfo/debug"},
		{"a pod with emptyDir data", "none", func(o *Options) { o.Force = true }, cli.ExitBadInput, "bookinfo/cache-hash1-x"},
		{"both allowed", "client", func(o *Options) { o.Force, o.DeleteEmptyDirData = true, true }, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := steptest.New(t, objs()...)
			o := newStep()
			o.Drain = true
			tt.set(o)
			err := b.Run(o, tt.dry, nil)
			if cli.CodeOf(err) != tt.code || (tt.msg != "" && !strings.Contains(err.Error(), tt.msg)) {
				t.Fatalf("exit %d (%v), want %d naming %s", cli.CodeOf(err), err, tt.code, tt.msg)
			}
			if c := b.Changes(); tt.code != 0 && len(c) != 0 {
				t.Errorf("a refused roll changed %v", c)
			}
		})
	}
}

// The success path through the runner, on a bed whose DaemonSet controller brings a deleted agent
// pod back from the current template and whose istiods answer syncz for the ztunnels pointed at
// them: node by node, istio-cni then ztunnel replaced, each ztunnel SYNCED on 1-31, every node
// uncordoned, the DaemonSets' own strategy back, the entry in effect.
func TestRunRollsEveryNodeWhenTheGatesPass(t *testing.T) {
	b := steptest.New(t, steptest.Ambient()...)
	b.Live()
	if err := b.Run(newStep(), "none", nil); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	b.CheckFieldManager()
	ctx := context.Background()
	pods, err := b.Clients.Kube.CoreV1().Pods("istio-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	onTarget := map[string]int{}
	for i := range pods.Items {
		p := &pods.Items[i]
		comp := p.Labels["app"]
		if comp != istio.ZtunnelDaemonSet && comp != istio.CNIDaemonSet {
			continue
		}
		v, rev := mesh.PodTarget(p, map[string]string{istio.ZtunnelDaemonSet: mesh.ComponentZtunnel, istio.CNIDaemonSet: mesh.ComponentCNI}[comp])
		if v == "1.31.0" && (comp == istio.CNIDaemonSet || rev == "1-31") {
			onTarget[comp]++
		} else {
			t.Errorf("%s runs %s %s after the roll", p.Name, v, rev)
		}
	}
	if onTarget[istio.ZtunnelDaemonSet] != len(steptest.Nodes) || onTarget[istio.CNIDaemonSet] != len(steptest.Nodes) {
		t.Errorf("agents on the target per DaemonSet: %v, want %d each", onTarget, len(steptest.Nodes))
	}
	nodes, err := b.Clients.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			t.Errorf("node %s left cordoned", n.Name)
		}
	}
	for _, name := range []string{istio.ZtunnelDaemonSet, istio.CNIDaemonSet} {
		ds, err := b.Clients.Kube.AppsV1().DaemonSets("istio-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil || ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType {
			t.Errorf("%s: strategy %v (%v), want its own RollingUpdate back", name, ds.Spec.UpdateStrategy.Type, err)
		}
	}
	if e := b.Entries(); len(e) != 1 || e[0].State != journal.StateInEffect {
		t.Errorf("entries %+v, want one in-effect entry", e)
	}
}

// Undo cordons a node while its agents go back and uncordons it after; a node an operator cordoned
// stays cordoned.
func TestUndoCordonsTheNodeItRollsBack(t *testing.T) {
	b := steptest.New(t, steptest.Ambient()...)
	ctx := context.Background()
	nodes := b.Clients.Kube.CoreV1().Nodes()
	unschedulable := func(n string) bool {
		x, err := nodes.Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return x.Spec.Unschedulable
	}
	release, err := cordonFor(ctx, b.Clients.Kube, steptest.Nodes[0], "undo of entry 0001", nil)
	if err != nil || !unschedulable(steptest.Nodes[0]) {
		t.Fatalf("cordonFor: %v, cordoned %v", err, unschedulable(steptest.Nodes[0]))
	}
	if n, _ := nodes.Get(ctx, steptest.Nodes[0], metav1.GetOptions{}); n.Annotations[AnnotationCordonedBy] != "undo of entry 0001" {
		t.Errorf("the cordon does not name its entry: %v", n.Annotations)
	}
	if err := release(); err != nil || unschedulable(steptest.Nodes[0]) {
		t.Fatalf("release: %v, still cordoned %v", err, unschedulable(steptest.Nodes[0]))
	}
	if n, _ := nodes.Get(ctx, steptest.Nodes[0], metav1.GetOptions{}); n.Annotations[AnnotationCordonedBy] != "" {
		t.Errorf("the uncordoned node still carries %s: %v", AnnotationCordonedBy, n.Annotations)
	}
	if _, err := nodes.Patch(ctx, steptest.Nodes[1], types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	release, err = cordonFor(ctx, b.Clients.Kube, steptest.Nodes[1], "undo of entry 0001", nil)
	if err != nil || release() != nil || !unschedulable(steptest.Nodes[1]) {
		t.Errorf("an operator's cordon was taken back: %v", err)
	}
}
