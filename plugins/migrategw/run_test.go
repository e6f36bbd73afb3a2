package migrategw

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal/journaltest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
)

func newStep(ns string) *Options {
	return &Options{To: "1-31", Timeout: time.Minute, Namespace: ns}
}

// gatewayAPI is steptest's mesh plus Gateway web/bookinfo-gateway (class istio) on 1-30, the
// Deployment and pods istiod made for it, and their Service; replicas of that Deployment.
func gatewayAPI(replicas int32, class string, params map[string]any) []runtime.Object {
	gw := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"name": "bookinfo-gateway", "namespace": "web", "labels": map[string]any{istio.LabelRev: "1-30"}},
		"spec":     map[string]any{"gatewayClassName": class}}}
	if params != nil {
		gw.Object["spec"].(map[string]any)["infrastructure"] = map[string]any{"parametersRef": params}
	}
	d := steptest.Deployment("web", "bookinfo-gateway-istio", replicas, map[string]string{
		"gateway.networking.k8s.io/gateway-name": "bookinfo-gateway", "gateway.istio.io/managed": "istio.io-gateway-controller",
		istio.LabelRev: "1-30", istio.LabelSidecarInject: "false"}, map[string]string{istio.AnnotationTemplates: "gateway"})
	d.Labels = map[string]string{"gateway.networking.k8s.io/gateway-name": "bookinfo-gateway"} // as istiod labels it
	objs := append(steptest.Mesh(), steptest.Namespace("web", nil), gw, d)
	for _, s := range []string{"a", "b", "c", "d"}[:replicas] {
		objs = append(objs, steptest.Pod("web", "bookinfo-gateway-istio", s, "1-30"))
	}
	return objs
}

func TestParseTarget(t *testing.T) {
	for _, tt := range []struct{ in, kind, name string }{
		{"deployment/gw", KindDeployment, "gw"},
		{"deploy/gw", KindDeployment, "gw"},
		{"gateway/bookinfo", KindGateway, "bookinfo"},
		{"gateways.gateway.networking.k8s.io/bookinfo", KindGateway, "bookinfo"},
		{"gtw/bookinfo", KindGateway, "bookinfo"},
		{"service/gw", "", ""},
		{"gw", "", ""},
		{"deployment/", "", ""},
		{"deployment/ns/gw", "", ""},
	} {
		kind, name, err := ParseTarget(tt.in)
		if kind != tt.kind || name != tt.name || (err != nil) != (tt.kind == "") {
			t.Errorf("ParseTarget(%q) = %q, %q, %v; want %q, %q", tt.in, kind, name, err, tt.kind, tt.name)
		}
	}
}

func TestRunContract(t *testing.T) {
	t.Run("deployment", func(t *testing.T) {
		steptest.Contract(t, steptest.Mesh, func() step.Step { return newStep("istio-ingress") }, "deployment/istio-ingressgateway")
	})
	t.Run("gateway", func(t *testing.T) {
		steptest.Contract(t, func() []runtime.Object { return gatewayAPI(4, "istio", nil) }, func() step.Step { return newStep("web") }, "gateway/bookinfo-gateway")
	})
}

// Bad input is refused with 65 (nothing to do: 0) before any change.
func TestRefusals(t *testing.T) {
	rendered := steptest.Without(steptest.Mesh(), "Deployment/istio-ingress/istio-ingressgateway")
	gw := steptest.Deployment("istio-ingress", "istio-ingressgateway", 2, map[string]string{istio.LabelIstio: "ingressgateway", istio.LabelRev: "1-30"}, nil)
	gw.Spec.Template.Spec.Containers[0].Name = istio.ProxyContainer // istioctl's router: a fixed image, no injection
	rendered = append(rendered, gw)
	injected := steptest.Without(steptest.Mesh(), "Namespace//istio-ingress")
	injected = append(injected, steptest.Namespace("istio-ingress", map[string]string{istio.LabelInjection: "enabled"}))
	for _, tt := range []struct {
		name   string
		objs   []runtime.Object
		ns, to string
		arg    string
		code   cli.ExitCode
		says   string
	}{
		{"unknown revision", steptest.Mesh(), "istio-ingress", "1-99", "deployment/istio-ingressgateway", cli.ExitBadInput, "neither an installed revision"},
		{"not a gateway", steptest.Mesh(), "shop", "1-31", "deployment/web", cli.ExitBadInput, "not an Istio gateway"},
		{"no such deployment", steptest.Mesh(), "istio-ingress", "1-31", "deployment/nope", cli.ExitBadInput, "not an Istio gateway"},
		{"installer-rendered", rendered, "istio-ingress", "1-31", "deployment/istio-ingressgateway", cli.ExitBadInput, "canary-gw"},
		{"istio-injection namespace", injected, "istio-ingress", "1-31", "deployment/istio-ingressgateway", cli.ExitBadInput, "istio-injection"},
		{"istiod's deployment", gatewayAPI(1, "istio", nil), "web", "1-31", "deployment/bookinfo-gateway-istio", cli.ExitBadInput, "migrate-gw gateway/bookinfo-gateway"},
		{"no such gateway", gatewayAPI(1, "istio", nil), "web", "1-31", "gateway/nope", cli.ExitBadInput, "not found"},
		{"another controller's class", gatewayAPI(1, "envoy", nil), "web", "1-31", "gateway/bookinfo-gateway", cli.ExitBadInput, "class \"envoy\""},
		{"own parametersRef, no surge", gatewayAPI(4, "istio", map[string]any{"group": "", "kind": "ConfigMap", "name": "mine"}), "web", "1-31", "gateway/bookinfo-gateway", cli.ExitBadInput, "maxUnavailable: 0"},
		{"already there", steptest.Mesh(), "istio-ingress", "1-30", "deployment/istio-ingressgateway", cli.ExitOK, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := steptest.New(t, tt.objs...)
			o := newStep(tt.ns)
			o.To = tt.to
			err := b.Run(o, "none", nil, tt.arg)
			if cli.CodeOf(err) != tt.code || (tt.says != "" && !strings.Contains(err.Error(), tt.says)) {
				t.Errorf("exit %d (%v), want %d saying %q", cli.CodeOf(err), err, tt.code, tt.says)
			}
			if c := b.Changes(); len(c) != 0 {
				t.Errorf("changed the cluster: %v", c)
			}
		})
	}
}

type result struct {
	Actions []struct{ Object, Verb string }
	Patches []struct {
		Object, Type string
		Patch        map[string]any
	}
	Details Details
}

func run(t *testing.T, b *steptest.Bed, o *Options, dry, arg string) result {
	t.Helper()
	if err := b.Run(o, dry, nil, arg); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	var res result
	if err := json.Unmarshal(b.Out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// A Deployment gateway whose strategy takes pods down first moves with maxUnavailable 0 in the same
// patch as its revision; one that surges already is sent the label alone.
func TestDeploymentMoveKeepsCapacity(t *testing.T) {
	for _, tt := range []struct {
		name        string
		unavailable int
		strategy    bool
	}{{"surge already", 0, false}, {"maxUnavailable 1", 1, true}} {
		t.Run(tt.name, func(t *testing.T) {
			objs := steptest.Mesh()
			for _, o := range objs {
				if d, ok := o.(*appsv1.Deployment); ok && d.Name == "istio-ingressgateway" {
					u, s := intstr.FromInt32(int32(tt.unavailable)), intstr.FromInt32(1)
					d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
						RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &u, MaxSurge: &s}}
				}
			}
			b := steptest.New(t, objs...)
			res := run(t, b, newStep("istio-ingress"), "client", "deployment/istio-ingressgateway")
			if len(res.Patches) != 1 {
				t.Fatalf("patches %+v", res.Patches)
			}
			spec := res.Patches[0].Patch["spec"].(map[string]any)
			labels := spec["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)
			if labels[istio.LabelRev] != "1-31" {
				t.Errorf("the patch does not set istio.io/rev=1-31: %v", spec)
			}
			st, ok := spec["strategy"].(map[string]any)
			if ok != tt.strategy {
				t.Fatalf("strategy in the patch: %v, want %v", st, tt.strategy)
			}
			if ok {
				ru := st["rollingUpdate"].(map[string]any)
				if ru["maxUnavailable"] != float64(0) || ru["maxSurge"] != float64(1) {
					t.Errorf("strategy %v, want maxUnavailable 0, maxSurge 1", st)
				}
			}
			if res.Details.From != "1-30" || res.Details.Revision != "1-31" || len(res.Details.Services) != 1 || res.Details.Services[0].Name != "istio-ingressgateway" {
				t.Errorf("details %+v", res.Details)
			}
		})
	}
}

// A Gateway whose Deployment would take pods down first gets Istio's deployment customization: a
// ConfigMap overlay and parametersRef, before the label that moves it.
func TestGatewayMoveAddsOverlay(t *testing.T) {
	for _, tt := range []struct {
		replicas int32
		overlay  bool
	}{{2, false}, {4, true}} { // the default 25% rounds to 0 unavailable below 4 replicas
		b := steptest.New(t, gatewayAPI(tt.replicas, "istio", nil)...)
		res := run(t, b, newStep("web"), "client", "gateway/bookinfo-gateway")
		var verbs []string
		for _, a := range res.Actions {
			verbs = append(verbs, a.Object+" "+a.Verb)
		}
		want := "web/gateway/bookinfo-gateway moved to 1-31"
		if tt.overlay {
			want = "web/configmap/bookinfo-gateway-istio-upgrade created,web/gateway/bookinfo-gateway parametersRef set to configmap/bookinfo-gateway-istio-upgrade," + want
		}
		if got := strings.Join(verbs, ","); got != want {
			t.Errorf("%d replicas: actions\n got %s\nwant %s", tt.replicas, got, want)
		}
	}
	// The server dry run creates the ConfigMap and patches the Gateway with dryRun=All only.
	b := steptest.New(t, gatewayAPI(4, "istio", nil)...)
	run(t, b, newStep("web"), "server", "gateway/bookinfo-gateway")
	var sent []string
	for _, x := range b.Sent {
		sent = append(sent, x.Write)
	}
	if got := strings.Join(sent, ","); !strings.Contains(got, "create configmaps bookinfo-gateway-istio-upgrade") || !strings.Contains(got, "patch gateways bookinfo-gateway") {
		t.Errorf("server dry run sent %s", got)
	}
}

// Undo moves a Gateway back by its recorded label, waits for its pods on the recorded revision, then
// puts the Gateway back whole and deletes the overlay the step created.
func TestUndoMovesTheGatewayBack(t *testing.T) {
	objs := gatewayAPI(2, "istio", nil)
	var recorded *unstructured.Unstructured
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			recorded = u.DeepCopy()
			u.SetLabels(map[string]string{istio.LabelRev: "1-31"}) // as the step left it; pods still on 1-30 in the fake
			_ = unstructured.SetNestedMap(u.Object, map[string]any{"group": "", "kind": "ConfigMap", "name": "bookinfo-gateway-istio-upgrade"}, "spec", "infrastructure", "parametersRef")
		}
	}
	c := journaltest.New(t, objs...)
	if _, err := c.Clients.Kube.CoreV1().ConfigMaps("web").Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bookinfo-gateway-istio-upgrade", Namespace: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Writes = nil
	e := &journal.Entry{ID: "0003", Step: "migrate-gw", Notes: map[string]string{FromNote(KindGateway, "web", "bookinfo-gateway"): "1-30"}, Objects: []journal.Object{
		{Ref: journal.GatewayRef("web", "bookinfo-gateway"), Existed: true, State: journal.Sanitize(recorded)},
		{Ref: journal.ConfigMapRef("web", "bookinfo-gateway-istio-upgrade")},
	}}
	var log bytes.Buffer
	if _, err := Undo(context.Background(), c.Clients, c.Journal, e, nil, cli.NewProgress(&log)); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	want := "patch gateways bookinfo-gateway,update gateways bookinfo-gateway,delete configmaps bookinfo-gateway-istio-upgrade"
	if got := strings.Join(c.Writes, ","); got != want {
		t.Errorf("writes\n got %s\nwant %s", got, want)
	}
	gw, err := c.Clients.Dynamic.Resource(journal.GatewayRef("", "").GVR()).Namespace("web").Get(context.Background(), "bookinfo-gateway", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if gw.GetLabels()[istio.LabelRev] != "1-30" {
		t.Errorf("the Gateway is on %q after undo", gw.GetLabels()[istio.LabelRev])
	}
	if _, found, _ := unstructured.NestedMap(gw.Object, "spec", "infrastructure", "parametersRef"); found {
		t.Error("undo left the Gateway's parametersRef")
	}
}

// Undo of a Deployment gateway whose own strategy takes pods down first moves it back with
// maxUnavailable 0, then puts the user's strategy back.
func TestUndoMovesTheDeploymentBackSurgeFirst(t *testing.T) {
	objs := steptest.Mesh()
	var recorded *appsv1.Deployment
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok && d.Name == "istio-ingressgateway" {
			u, s := intstr.FromInt32(1), intstr.FromInt32(0)
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &u, MaxSurge: &s}}
			recorded = d.DeepCopy()
			d.Spec.Template.Labels[istio.LabelRev] = "1-31" // as the step left it; the fake's pods stay on 1-30
		}
	}
	c := journaltest.New(t, objs...)
	state, err := runtime.DefaultUnstructuredConverter.ToUnstructured(recorded)
	if err != nil {
		t.Fatal(err)
	}
	e := &journal.Entry{ID: "0004", Step: "migrate-gw", Notes: map[string]string{FromNote(KindDeployment, "istio-ingress", "istio-ingressgateway"): "1-30"}, Objects: []journal.Object{
		{Ref: journal.DeploymentRef("istio-ingress", "istio-ingressgateway"), Existed: true, State: journal.Sanitize(&unstructured.Unstructured{Object: state})}}}
	var log bytes.Buffer
	actions, err := Undo(context.Background(), c.Clients, c.Journal, e, nil, cli.NewProgress(&log))
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	var verbs []string
	for _, a := range actions {
		verbs = append(verbs, a.Verb)
	}
	if got := strings.Join(verbs, ","); got != "moved back to 1-30,strategy restored,unchanged" {
		t.Errorf("actions %s", got)
	}
	if len(c.Sent) < 1 || !strings.Contains(string(c.Sent[0].Write), "patch deployments") {
		t.Fatalf("writes %v", c.Writes)
	}
	d, err := c.Clients.Kube.AppsV1().Deployments("istio-ingress").Get(context.Background(), "istio-ingressgateway", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Template.Labels[istio.LabelRev] != "1-30" || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 1 {
		t.Errorf("after undo: revision %s, strategy %+v", d.Spec.Template.Labels[istio.LabelRev], d.Spec.Strategy.RollingUpdate)
	}
}

// The success path through the runner, on a bed whose controllers roll pods and keep endpoints and
// whose istiods answer syncz: the gateway's Deployment is moved to 1-31 (its pods rolled there,
// SYNCED, the Service's endpoints kept), and the entry is in effect.
func TestRunDeploymentMoveSucceeds(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	b.Live()
	if err := b.Run(newStep("istio-ingress"), "none", nil, "deployment/istio-ingressgateway"); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	b.CheckFieldManager()
	if got := b.StepWrites(); len(got) == 0 || got[len(got)-1] != "patch deployments istio-ingressgateway" {
		t.Errorf("writes %v, want the gateway's Deployment patched last", got)
	}
	if revs := b.PodRevisions("istio-ingress"); strings.Join(revs, ",") != "1-31,1-31" {
		t.Errorf("gateway pods injected by %v, want two on 1-31", revs)
	}
	if e := b.Entries(); len(e) != 1 || e[0].State != journal.StateInEffect {
		t.Errorf("entries %+v, want one in-effect entry", e)
	}
}
