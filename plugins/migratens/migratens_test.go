package migratens

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/pin"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

func wl(kind, ns, name string, replicas int32, injected ...string) mesh.Workload {
	return mesh.Workload{Kind: kind, Namespace: ns, Name: name, Replicas: replicas, Pods: int(replicas), InjectedRevisions: injected, DesiredRevision: "1-30"}
}

func snapshot() *mesh.Snapshot {
	return &mesh.Snapshot{
		IstioNamespace: "istio-system",
		Namespaces: []mesh.Namespace{
			{Name: "bookinfo", InjectionLabel: "enabled", Revision: "1-30"},
			{Name: "shop", RevLabel: "1-30", Revision: "1-30"},
			{Name: "done", RevLabel: "1-31", Revision: "1-31"},
			{Name: "plain"},
			{Name: "istio-system"},
			{Name: "leaving", RevLabel: "1-30", Revision: "1-30", Terminating: true},
		},
		Workloads: []mesh.Workload{
			wl("Deployment", "bookinfo", "details", 2, "1-30"),
			wl("Deployment", "bookinfo", "ratings", 1, "1-30"), // single replica: last
			wl("Deployment", "bookinfo", "reviews", 3, "1-30", "1-31"),
			wl("Deployment", "bookinfo", "productpage", 2, "1-31"), // already on target: skipped (resume)
			{Kind: "Deployment", Namespace: "bookinfo", Name: "batch", Replicas: 1, Pods: 1, OptOut: true, InjectedRevisions: []string{""}},
			wl("StatefulSet", "shop", "cache", 2, "1-30"),
			wl("DaemonSet", "shop", "agent", 3, "1-30"),
			{Kind: "Deployment", Namespace: "shop", Name: "gw", Replicas: 2, Pods: 2, Gateway: true, InjectedRevisions: []string{"1-30"}},
			{Kind: "Deployment", Namespace: "shop", Name: "pinned", Replicas: 2, Pods: 2, PinnedRevision: "1-30", InjectedRevisions: []string{"1-30"}},
			{Kind: "Deployment", Namespace: "shop", Name: "empty", Replicas: 0, InjectedRevisions: []string{}},
			wl("Deployment", "done", "api", 2, "1-31"),
		},
	}
}

func refs(rs []kube.WorkloadRef) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Namespace+"/"+r.Name)
	}
	return strings.Join(out, ",")
}

func TestBuildPlan(t *testing.T) {
	p, err := BuildPlan(snapshot(), []string{"bookinfo", "shop", "done"}, "1-31", "1-31", nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := refs(p.Namespaces[0].Restart); got != "bookinfo/details,bookinfo/reviews,bookinfo/ratings" {
		t.Errorf("bookinfo restarts %s (single replica last, on-target skipped)", got)
	}
	if got := refs(p.Namespaces[1].Restart); got != "shop/cache,shop/agent" {
		t.Errorf("shop restarts %s", got)
	}
	if !p.Namespaces[0].Relabel || !p.Namespaces[1].Relabel || p.Namespaces[2].Relabel {
		t.Errorf("relabel flags: %+v", p.Namespaces)
	}
	if p.Namespaces[0].BeforeLabel != "istio-injection=enabled" || p.Namespaces[0].AfterLabel != "istio.io/rev=1-31" {
		t.Errorf("labels: %+v", p.Namespaces[0])
	}
	reasons := map[string]string{}
	for _, s := range p.Skipped {
		reasons[s.Workload.Name] = s.Reason
	}
	want := map[string]string{"productpage": SkipOnTarget, "batch": SkipOptOut, "gw": SkipGateway, "pinned": SkipPinned, "empty": SkipNoPods, "api": SkipOnTarget}
	for k, v := range want {
		if reasons[k] != v {
			t.Errorf("%s skipped for %q, want %q", k, reasons[k], v)
		}
	}
	if p.Restarts() != 5 {
		t.Errorf("restarts %d, want 5", p.Restarts())
	}
	waves := p.Waves(1, 2)
	if len(waves) != 3 || len(waves[0].Batches) != 2 || refs(waves[0].Batches[1]) != "bookinfo/ratings" || len(waves[2].Batches) != 0 {
		t.Errorf("waves(1,2): %+v", waves)
	}
	waves = p.Waves(2, 10)
	if len(waves) != 2 || strings.Join(waves[0].Namespaces, ",") != "bookinfo,shop" || len(waves[0].Batches) != 1 || len(waves[0].Batches[0]) != 5 {
		t.Errorf("waves(2,10): %+v", waves)
	}
}

// A rerun after everything moved restarts nothing: the plan resumes, never restarting twice.
func TestPlanResumes(t *testing.T) {
	s := snapshot()
	for i := range s.Workloads {
		if s.Workloads[i].Namespace == "bookinfo" && !s.Workloads[i].OptOut {
			s.Workloads[i].InjectedRevisions = []string{"1-31"}
		}
	}
	p, err := BuildPlan(s, []string{"bookinfo"}, "1-31", "1-31", nil, 5)
	if err != nil {
		t.Fatal(err)
	}
	if p.Restarts() != 0 {
		t.Errorf("rerun restarts %v", p.Namespaces[0].Restart)
	}
}

func TestPlanCanary(t *testing.T) {
	c := &kube.WorkloadRef{Kind: "Deployment", Namespace: "bookinfo", Name: "details"}
	p, err := BuildPlan(snapshot(), []string{"bookinfo"}, "1-31", "1-31", c, 5)
	if err != nil {
		t.Fatal(err)
	}
	w := p.Waves(1, 5)
	if len(w) != 2 || refs(w[0].Batches[0]) != "bookinfo/details" || strings.Contains(refs(w[1].Batches[0]), "details") {
		t.Errorf("canary must be alone first and not restarted again: %+v", w)
	}
	if p.Restarts() != 3 {
		t.Errorf("restarts %d, want 3", p.Restarts())
	}
	for _, bad := range []kube.WorkloadRef{
		{Kind: "Deployment", Namespace: "bookinfo", Name: "nope"},  // not found
		{Kind: "Deployment", Namespace: "shop", Name: "cache"},     // other namespace
		{Kind: "Deployment", Namespace: "bookinfo", Name: "batch"}, // opts out
	} {
		if _, err := BuildPlan(snapshot(), []string{"bookinfo"}, "1-31", "1-31", &bad, 5); err == nil {
			t.Errorf("canary %v accepted", bad)
		}
	}
	done := &kube.WorkloadRef{Kind: "Deployment", Namespace: "bookinfo", Name: "productpage"}
	if p, err := BuildPlan(snapshot(), []string{"bookinfo"}, "1-31", "1-31", done, 5); err != nil || p.Canary != nil || !p.CanaryDone {
		t.Errorf("a canary already on target resumes: %v %+v", err, p)
	}
	if _, err := BuildPlan(snapshot(), []string{"missing"}, "1-31", "1-31", nil, 5); err == nil {
		t.Error("missing namespace accepted")
	}
	if _, err := BuildPlan(snapshot(), []string{"leaving"}, "1-31", "1-31", nil, 5); err == nil {
		t.Error("terminating namespace accepted")
	}
}

func TestInjectedNamespaces(t *testing.T) {
	if got := strings.Join(mesh.InjectedNamespaces(snapshot()), ","); got != "bookinfo,done,shop" {
		t.Errorf("--all selects %s", got)
	}
}

func TestParseWorkloadRef(t *testing.T) {
	cases := []struct {
		in, ns, want string
		ok           bool
	}{
		{"deploy/x", "a", "a/deployment/x", true},
		{"sts/db", "a", "a/statefulset/db", true},
		{"b/ds/agent", "a", "b/daemonset/agent", true},
		{"deploy/x", "", "", false},
		{"pod/x", "a", "", false},
		{"x", "a", "", false},
	}
	for _, c := range cases {
		r, err := ParseWorkloadRef(c.in, c.ns)
		if (err == nil) != c.ok || (c.ok && r.String() != c.want) {
			t.Errorf("%q: %v %v", c.in, r, err)
		}
	}
}

func TestValidate(t *testing.T) {
	newOpts := func(mut func(o *Options)) *Options {
		o := &Options{To: "1-31", BatchSize: 5, MaxUnavailableNamespaces: 1, Timeout: time.Minute, Namespaces: []string{"shop"}}
		mut(o)
		return o
	}
	cases := []struct {
		name string
		mut  func(o *Options)
		code cli.ExitCode
	}{
		{"ok", func(o *Options) {}, 0},
		{"no selection", func(o *Options) { o.Namespaces = nil }, cli.ExitUsage},
		{"two selections", func(o *Options) { o.All = true }, cli.ExitUsage},
		{"no --to", func(o *Options) { o.To = "" }, cli.ExitUsage},
		{"batch 0", func(o *Options) { o.BatchSize = 0 }, cli.ExitUsage},
		{"timeout 0", func(o *Options) { o.Timeout = 0 }, cli.ExitUsage},
		{"canary ok", func(o *Options) { o.CanaryStr = "deploy/web" }, 0},
		{"canary without namespace", func(o *Options) { o.Namespaces = []string{"a", "b"}; o.CanaryStr = "deploy/web" }, cli.ExitUsage},
		{"canary with namespace", func(o *Options) { o.Namespaces = nil; o.All = true; o.CanaryStr = "a/deploy/web" }, 0},
	}
	for _, c := range cases {
		o := newOpts(c.mut)
		if got := cli.CodeOf(o.Validate(nil, o.Namespaces)); got != c.code {
			t.Errorf("%s: code %d, want %d", c.name, got, c.code)
		}
	}
}

func TestDropsToZero(t *testing.T) {
	d := func(replicas int32, strategy appsv1.DeploymentStrategyType, unav intstr.IntOrString) *appsv1.Deployment {
		x := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr(replicas), Strategy: appsv1.DeploymentStrategy{Type: strategy}}}
		if strategy == appsv1.RollingUpdateDeploymentStrategyType {
			x.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: &unav, MaxSurge: ptr(intstr.FromInt32(1))}
		}
		return x
	}
	if dropsToZero(d(1, appsv1.RollingUpdateDeploymentStrategyType, intstr.FromInt32(0))) != "" {
		t.Error("1 replica surging first keeps a ready pod")
	}
	if dropsToZero(d(1, appsv1.RollingUpdateDeploymentStrategyType, intstr.FromInt32(1))) == "" {
		t.Error("1 replica with maxUnavailable 1 drops to zero")
	}
	if dropsToZero(d(3, appsv1.RecreateDeploymentStrategyType, intstr.IntOrString{})) == "" {
		t.Error("Recreate drops to zero")
	}
	if dropsToZero(d(2, appsv1.RollingUpdateDeploymentStrategyType, intstr.FromString("100%"))) == "" {
		t.Error("maxUnavailable 100% drops to zero")
	}
}

func TestStatefulSetAndDaemonSetGuard(t *testing.T) {
	sts := func(replicas int32, st appsv1.StatefulSetUpdateStrategy) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{Replicas: ptr(replicas), UpdateStrategy: st}}
	}
	rolling := appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType}
	if statefulSetDropsToZero(sts(1, rolling)) == "" {
		t.Error("a one-replica StatefulSet stops its pod first")
	}
	if statefulSetDropsToZero(sts(3, rolling)) != "" || statefulSetNeverRolls(sts(3, rolling)) != "" {
		t.Error("three replicas rolling one at a time keep ready pods")
	}
	all := rolling
	all.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: ptr(intstr.FromString("100%"))}
	if statefulSetDropsToZero(sts(3, all)) == "" {
		t.Error("maxUnavailable 100% drops to zero")
	}
	if statefulSetNeverRolls(sts(3, appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType})) == "" {
		t.Error("OnDelete never rolls")
	}
	part := rolling
	part.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr(int32(2))}
	if statefulSetNeverRolls(sts(3, part)) == "" {
		t.Error("a partition leaves pods unreplaced")
	}
	ds := func(nodes int32, unav, surge *intstr.IntOrString) *appsv1.DaemonSet {
		return &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: unav, MaxSurge: surge}}},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: nodes}}
	}
	if drops, gap := daemonSetDropsToZero(ds(3, nil, nil)); drops != "" || gap == "" {
		t.Errorf("3 nodes, one at a time: ready pods remain, but each node pauses: %q %q", drops, gap)
	}
	if drops, _ := daemonSetDropsToZero(ds(1, nil, nil)); drops == "" {
		t.Error("one node without maxSurge drops to zero")
	}
	if drops, _ := daemonSetDropsToZero(ds(3, ptr(intstr.FromString("100%")), nil)); drops == "" {
		t.Error("maxUnavailable 100% drops to zero")
	}
	if drops, gap := daemonSetDropsToZero(ds(1, ptr(intstr.FromInt32(0)), ptr(intstr.FromInt32(1)))); drops != "" || gap != "" {
		t.Errorf("maxSurge keeps each node's pod until its replacement is ready: %q %q", drops, gap)
	}
}

// TestRestartAndLabelPatches checks the requests sent (fakes ignore DryRun, so we assert it is passed).
func TestRestartAndLabelPatches(t *testing.T) {
	k := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"istio-injection": "enabled", "team": "x"}}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}},
	)
	r := &step.Run{C: &kube.Clients{Kube: k}, DryRun: cli.DryRunServer, Result: cli.NewResult("migrate-ns", cli.DryRunServer)}
	ctx := context.Background()
	to := "1-31"
	if err := label(ctx, r, "shop", "labeled", map[string]*string{"istio.io/rev": &to, "istio-injection": nil}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 1, 2, 3, 0, time.UTC)
	if err := kube.Restart(ctx, k, kube.WorkloadRef{Kind: "Deployment", Namespace: "shop", Name: "web"}, at, []string{"All"}); err != nil {
		t.Fatal(err)
	}
	var patches []k8stesting.PatchActionImpl
	for _, a := range k.Actions() {
		if p, ok := a.(k8stesting.PatchActionImpl); ok {
			patches = append(patches, p)
		}
	}
	if len(patches) != 2 {
		t.Fatalf("want 2 patches, got %d", len(patches))
	}
	if string(patches[0].Patch) != `{"metadata":{"labels":{"istio-injection":null,"istio.io/rev":"1-31"}}}` {
		t.Errorf("label patch %s", patches[0].Patch)
	}
	if !strings.Contains(string(patches[1].Patch), `"kubectl.kubernetes.io/restartedAt":"2026-11-23T01:02:03Z"`) {
		t.Errorf("restart patch %s", patches[1].Patch)
	}
	for _, p := range patches {
		if len(p.PatchOptions.DryRun) != 1 || p.PatchOptions.DryRun[0] != "All" || p.PatchOptions.FieldManager != "kubectl-istio-upgrade" {
			t.Errorf("dry run not passed: %+v", p.PatchOptions)
		}
	}
	ns, _ := k.CoreV1().Namespaces().Get(ctx, "shop", metav1.GetOptions{})
	if ns.Labels["istio.io/rev"] != "1-31" || ns.Labels["team"] != "x" || ns.Labels["istio-injection"] != "" {
		t.Errorf("labels after patch (fake applies it): %v", ns.Labels)
	}
}
func ptr[T any](v T) *T { return &v }

// Gateway API gateways without their own istio.io/rev follow their namespace: relabelling it rolls them
// at once; a pinned one, or one in a namespace not relabelled, stays.
func TestRollingNow(t *testing.T) {
	p := &Plan{Namespaces: []NamespacePlan{{Name: "web", Relabel: true}, {Name: "done", Relabel: false}}}
	got := pin.RollingNow([]mesh.GatewayAPIGateway{
		{Namespace: "web", Name: "follows", Class: "istio"},
		{Namespace: "web", Name: "pinned", Class: "istio", RevLabel: "1-30"},
		{Namespace: "done", Name: "unchanged", Class: "istio"},
		{Namespace: "web", Name: "wp", Class: "istio-waypoint"},
		{Namespace: "web", Name: "pinned-now", Class: "istio"},
	}, []pin.Pin{{GatewayAPIGateway: mesh.GatewayAPIGateway{Namespace: "web", Name: "pinned-now", Class: "istio"}, Revision: "1-30"}}, followsRelabel(p))
	if len(got) != 2 || got[0] != "gateway/web/follows (Gateway API, class istio)" || got[1] != "waypoint/web/wp (Gateway API, class istio-waypoint)" {
		t.Errorf("rollingNow %q", got)
	}
}

func TestSelectedRevision(t *testing.T) {
	tags := map[string]string{"default": "1-30", "prod": "1-31"}
	for _, tt := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{istio.LabelRev: "1-31"}, "1-31"},
		{map[string]string{istio.LabelRev: "prod"}, "1-31"},
		{map[string]string{istio.LabelInjection: "enabled"}, "1-30"},
		{map[string]string{istio.LabelInjection: "enabled", istio.LabelRev: "1-31"}, "1-30"}, // istio-injection wins
		{map[string]string{istio.LabelInjection: "disabled", istio.LabelRev: "1-31"}, ""},
		{nil, ""},
	} {
		if got := selectedRevision(tt.labels, tags); got != tt.want {
			t.Errorf("selectedRevision(%v) = %q, want %q", tt.labels, got, tt.want)
		}
	}
	if got := selectedRevision(map[string]string{istio.LabelInjection: "enabled"}, nil); got != "default" {
		t.Errorf("istio-injection=enabled without a default tag: %q, want the revision named default", got)
	}
}

// The workloads of a batch an interrupted run began and never gated leave the restarts for Verify:
// gated on the rerun, never restarted twice; the canary among them counts as done.
func TestUnverifiedBatchesAreGatedNotRestarted(t *testing.T) {
	web := kube.WorkloadRef{Kind: "Deployment", Namespace: "shop", Name: "web"}
	db := kube.WorkloadRef{Kind: "StatefulSet", Namespace: "shop", Name: "db"}
	api := kube.WorkloadRef{Kind: "Deployment", Namespace: "shop", Name: "api"}
	p := &Plan{Canary: &api, Namespaces: []NamespacePlan{{Name: "shop", Restart: []kube.WorkloadRef{web, db}}}}
	p.Unverified([]string{unitName([]kube.WorkloadRef{web, api}), "restart not/a-workload"})
	if len(p.Verify) != 2 || p.Verify[0] != web || p.Verify[1] != api {
		t.Errorf("verify %v, want web and api", p.Verify)
	}
	if len(p.Namespaces[0].Restart) != 1 || p.Namespaces[0].Restart[0] != db {
		t.Errorf("restarts %v, want db alone", p.Namespaces[0].Restart)
	}
	if p.Canary != nil || !p.CanaryDone {
		t.Errorf("the canary was in the unverified batch: canary %v done %v", p.Canary, p.CanaryDone)
	}
}
