package canarygw

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/canary"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/helm"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
)

// Journal trust knows the step's kinds from its registration, as in the plugin.
func TestMain(m *testing.M) {
	step.Register([]step.Registration{Registration()})
	os.Exit(m.Run())
}

// withHPAAndPDB is steptest.Mesh with an HPA (2-5) and a PDB on the ingress gateway.
func withHPAAndPDB() []runtime.Object {
	return append(steptest.Mesh(),
		&autoscalingv2.HorizontalPodAutoscaler{TypeMeta: metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
			ObjectMeta: metav1.ObjectMeta{Name: "istio-ingressgateway", Namespace: "istio-ingress"},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{MinReplicas: ptr(int32(2)), MaxReplicas: 5,
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "istio-ingressgateway"}}},
		&policyv1.PodDisruptionBudget{TypeMeta: metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
			ObjectMeta: metav1.ObjectMeta{Name: "istio-ingressgateway", Namespace: "istio-ingress"},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromInt32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "istio-ingressgateway"}}}},
	)
}

func canaryOn(rev string, timeout time.Duration) func() step.Step {
	return func() step.Step {
		return &Options{Target: canary.Target{Gateway: "istio-ingress/istio-ingressgateway", Revision: rev}, Replicas: 1, Timeout: timeout}
	}
}

func TestRunContract(t *testing.T) {
	steptest.Contract(t, withHPAAndPDB, canaryOn("1-31", time.Minute))
}

// Fakes run no pods: verification times out (74). The canary, its HPA and PDB stay, out of traffic, in
// an incomplete entry that undo removes; the old gateway is never written.
func TestRunVerificationTimeout(t *testing.T) {
	b := steptest.New(t, withHPAAndPDB()...)
	err := b.Run(canaryOn("1-31", time.Second)(), "none", nil)
	if cli.CodeOf(err) != cli.ExitTimeout {
		t.Fatalf("exit %d (%v), want 74", cli.CodeOf(err), err)
	}
	want := []string{"create deployments istio-ingressgateway-1-31", "create horizontalpodautoscalers istio-ingressgateway-1-31", "create poddisruptionbudgets istio-ingressgateway-1-31"}
	if got := b.StepWrites(); !slices.Equal(got, want) {
		t.Errorf("writes %v, want %v", got, want)
	}
	b.CheckFieldManager()
	c, err := b.Clients.Kube.AppsV1().Deployments("istio-ingress").Get(context.Background(), "istio-ingressgateway-1-31", metav1.GetOptions{})
	if err != nil || !canary.HasServingGate(&c.Spec.Template.Spec) {
		t.Fatalf("the canary must stay out of traffic: %v", err)
	}
	e := b.Entries()
	if len(e) != 1 || e[0].State != journal.StateIncomplete || len(e[0].Objects) != 3 {
		t.Fatalf("entries %+v", e)
	}
	b.Reset()
	if _, err := Undo(context.Background(), b.Clients, b.Journal, e[0], nil, cli.NewProgress(b.ErrOut)); err != nil {
		t.Fatal(err)
	}
	l, err := b.Clients.Kube.AppsV1().Deployments("istio-ingress").List(context.Background(), metav1.ListOptions{})
	if err != nil || len(l.Items) != 1 || l.Items[0].Name != "istio-ingressgateway" {
		t.Errorf("after undo: %v %v", names(l), err)
	}
	if h, err := b.Clients.Kube.AutoscalingV2().HorizontalPodAutoscalers("istio-ingress").List(context.Background(), metav1.ListOptions{}); err != nil || len(h.Items) != 1 {
		t.Errorf("undo must remove the canary's HPA too: %v", err)
	}
}

func TestRunRefusesUnknownRevision(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	err := b.Run(canaryOn("1-99", time.Second)(), "none", nil)
	if cli.CodeOf(err) != cli.ExitBadInput || len(b.Changes()) != 0 {
		t.Fatalf("exit %d (%v), changes %v; want 65 and nothing changed", cli.CodeOf(err), err, b.Changes())
	}
}

func names(l *appsv1.DeploymentList) []string {
	var out []string
	if l == nil {
		return nil
	}
	for _, d := range l.Items {
		out = append(out, d.Name)
	}
	return out
}

// istioChart is a chart of the istio.io/istio module the plugin builds from (Istio's own artefact).
func istioChart(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio").Output()
	if err != nil || len(strings.TrimSpace(string(out))) == 0 {
		t.Skipf("istio.io/istio module source not found: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "manifests", "charts", path)
}

// --helm: the canary is a release of the old gateway's own gateway chart (seed 000's values: the new
// revision, no Service, the Service's pod labels), held out of traffic by the readiness gate; nothing is
// created beside helm, and undo uninstalls the release.
func TestRunHelmCanaryRelease(t *testing.T) {
	objs := withHPAAndPDB()
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok && d.Name == "istio-ingressgateway" {
			d.Annotations = map[string]string{"meta.helm.sh/release-name": "istio-ingressgateway", "meta.helm.sh/release-namespace": "istio-ingress"}
		}
	}
	b := steptest.New(t, objs...)
	if err := helm.RecordChart(b.Clients.Kube, "istio-ingress", "istio-ingressgateway", istioChart(t, "gateway"),
		map[string]any{"autoscaling": map[string]any{"minReplicas": int64(2), "maxReplicas": int64(5)}}); err != nil {
		t.Fatal(err)
	}
	acts := helm.FakeActions(b.Clients.Kube)
	helm.New = func(*rest.Config) *helm.Actions { return acts }
	t.Cleanup(func() { helm.New = helm.NewActions })
	b.Reset()

	err := b.Run(&Options{Target: canary.Target{Gateway: "istio-ingress/istio-ingressgateway", Revision: "1-31"}, Replicas: 1, Timeout: time.Second, Helm: true}, "none", nil)
	if cli.CodeOf(err) != cli.ExitTimeout { // fakes run no pods
		t.Fatalf("exit %d (%v), want 74", cli.CodeOf(err), err)
	}
	if w := b.StepWrites(); slices.ContainsFunc(w, func(s string) bool { return strings.HasPrefix(s, "create deployments") }) {
		t.Errorf("--helm created the canary beside helm: %v", w)
	}
	h, err := helm.History(b.Clients.Kube, "istio-ingress", "istio-ingressgateway-1-31")
	if err != nil || !slices.Equal(h, []string{"1 deployed"}) {
		t.Fatalf("canary release history %v (%v)", h, err)
	}
	out := b.Out.String()
	for _, want := range []string{"conditionType: istio-upgrade.io/serving", "istio.io/rev: 1-31", "istio-upgrade.io/canary-of: istio-ingressgateway", "istio: ingressgateway", "kind: HorizontalPodAutoscaler"} {
		if !strings.Contains(out, want) {
			t.Errorf("the release's manifest lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "kind: Service\\n") {
		t.Error("the canary release renders a Service: the old release's Service must stay the only one")
	}
	e := b.Entries()
	if len(e) != 1 || len(e[0].Helm) != 1 || e[0].Helm[0].Action != journal.HelmInstall || e[0].Helm[0].To != 1 {
		t.Fatalf("entries %+v", e)
	}
	if err := journal.Trusted(e[0]); err != nil {
		t.Errorf("entry not replayable: %v", err)
	}
	if _, err := Undo(context.Background(), b.Clients, b.Journal, e[0], nil, cli.NewProgress(b.ErrOut)); err != nil {
		t.Fatal(err)
	}
	if h, err := helm.History(b.Clients.Kube, "istio-ingress", "istio-ingressgateway-1-31"); err == nil && len(h) > 0 {
		t.Errorf("after undo the canary release is still there: %v", h)
	}
}

func ptr[T any](v T) *T { return &v }

// The success path through the runner, on a bed whose controllers run the canary's pod and whose
// istiods answer syncz and config dumps: the canary, its HPA and PDB are created, its pod is injected
// by 1-31 and SYNCED yet out of every Service (the readiness gate), the old gateway is never written,
// and the entry is in effect.
func TestRunSucceedsWhenTheCanarySyncs(t *testing.T) {
	b := steptest.New(t, withHPAAndPDB()...)
	b.Live()
	if err := b.Run(canaryOn("1-31", 20*time.Second)(), "none", nil); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	want := []string{"create deployments istio-ingressgateway-1-31", "create horizontalpodautoscalers istio-ingressgateway-1-31", "create poddisruptionbudgets istio-ingressgateway-1-31"}
	if got := b.StepWrites(); !slices.Equal(got, want) {
		t.Errorf("writes %v, want %v", got, want)
	}
	b.CheckFieldManager()
	if revs := b.PodRevisions("istio-ingress"); !slices.Equal(revs, []string{"1-30", "1-30", "1-31"}) {
		t.Errorf("gateway pods injected by %v, want the old two and the canary's on 1-31", revs)
	}
	if n, err := kube.ReadyEndpoints(context.Background(), b.Clients.Kube, "istio-ingress", "istio-ingressgateway"); err != nil || n != 2 {
		t.Errorf("the Service has %d ready endpoints (%v), want the old gateway's 2 alone", n, err)
	}
	if e := b.Entries(); len(e) != 1 || e[0].State != journal.StateInEffect {
		t.Errorf("entries %+v, want one in-effect entry", e)
	}
}
