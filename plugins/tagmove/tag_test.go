package tagmove

import (
	"strings"
	"testing"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/golden"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/pin"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
)

func TestNewWebhookGolden(t *testing.T) {
	for _, tag := range []string{"prod-stable", "default"} {
		wh, err := NewWebhook(steptest.Injector("1-31"), tag, "1-31")
		if err != nil {
			t.Fatal(err)
		}
		if wh.Name != "istio-revision-tag-"+tag || wh.Labels[istio.LabelTag] != tag || wh.Labels[istio.LabelRev] != "1-31" || wh.Labels["app"] != "" {
			t.Errorf("%s: metadata %+v", tag, wh.ObjectMeta)
		}
		if v := wh.Webhooks[0].NamespaceSelector.MatchExpressions[0].Values[0]; v != tag {
			t.Errorf("%s: namespace selector selects %q, want the tag", tag, v)
		}
		if v := wh.Webhooks[1].ObjectSelector.MatchExpressions[1].Values[0]; v != tag {
			t.Errorf("%s: object selector selects %q, want the tag", tag, v)
		}
		want := 2
		if tag == "default" {
			want = 4
		}
		if len(wh.Webhooks) != want {
			t.Errorf("%s: %d webhooks, want %d", tag, len(wh.Webhooks), want)
		}
		b, _ := yaml.Marshal(wh)
		golden.Assert(t, "webhook-"+tag+".yaml", b)
	}
	// The injector itself is not modified.
	in := steptest.Injector("1-31")
	_, _ = NewWebhook(in, "x", "1-31")
	if in.Webhooks[0].NamespaceSelector.MatchExpressions[0].Values[0] != "1-31" {
		t.Error("NewWebhook changed the injector")
	}
}

func TestMoveWebhookKeepsSelectors(t *testing.T) {
	tagWh, _ := NewWebhook(steptest.Injector("1-30"), "prod-stable", "1-30")
	moved, err := MoveWebhook(tagWh, steptest.Injector("1-31"), "1-31")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range moved.Webhooks {
		if *w.ClientConfig.URL != "https://istiod-1-31.istio-system.svc:443/inject" || string(w.ClientConfig.CABundle) != "ca-1-31" {
			t.Errorf("%s still calls %v", w.Name, w.ClientConfig)
		}
	}
	if moved.Labels[istio.LabelRev] != "1-31" || moved.Webhooks[0].NamespaceSelector.MatchExpressions[0].Values[0] != "prod-stable" {
		t.Errorf("moved: %+v", moved)
	}
	if tagWh.Labels[istio.LabelRev] != "1-30" {
		t.Error("MoveWebhook changed its input")
	}
}

func TestTagService(t *testing.T) {
	rev := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "istiod-1-31", Namespace: "istio-system", Labels: map[string]string{"app": "istiod", istio.LabelRev: "1-31"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "istiod", istio.LabelRev: "1-31"}, Ports: []corev1.ServicePort{{Name: "grpc-xds", Port: 15010}}, ClusterIP: "10.0.0.9"}}
	s := TagService(nil, rev, "prod", "1-31")
	if s.Name != "istiod-revision-tag-prod" || s.Spec.ClusterIP != "" || s.Spec.Selector[istio.LabelRev] != "1-31" || s.Labels[istio.LabelTag] != "prod" || len(s.Spec.Ports) != 1 {
		t.Errorf("new: %+v", s)
	}
	old := s.DeepCopy()
	old.Spec.Selector[istio.LabelRev] = "1-30"
	moved := TagService(old, rev, "prod", "1-31")
	if moved.Spec.Selector[istio.LabelRev] != "1-31" || old.Spec.Selector[istio.LabelRev] != "1-30" {
		t.Errorf("moved: %+v (input must stay)", moved.Spec.Selector)
	}
}

func TestMoveValidator(t *testing.T) {
	url := "https://istiod-1-31/validate"
	def := &admregv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: istio.DefaultValidatorName, Labels: map[string]string{istio.LabelRev: "1-30"}},
		Webhooks: []admregv1.ValidatingWebhook{{Name: "validation.istio.io"}}}
	rev := &admregv1.ValidatingWebhookConfiguration{Webhooks: []admregv1.ValidatingWebhook{{ClientConfig: admregv1.WebhookClientConfig{URL: &url}}}}
	m := MoveValidator(def, rev, "1-31")
	if m.Labels[istio.LabelRev] != "1-31" || *m.Webhooks[0].ClientConfig.URL != url || m.Webhooks[0].Name != "validation.istio.io" {
		t.Errorf("validator: %+v", m)
	}
}

func TestBlastRadius(t *testing.T) {
	s := &mesh.Snapshot{
		Namespaces: []mesh.Namespace{
			{Name: "payments", RevLabel: "prod-stable", Revision: "1-30", Via: "prod-stable"},
			{Name: "bookinfo", InjectionLabel: "enabled", Revision: "1-30", Via: "default"},
			{Name: "shop", RevLabel: "1-30", Revision: "1-30"},
		},
		Workloads: []mesh.Workload{
			{Kind: "Deployment", Namespace: "payments", Name: "api", Pods: 2, DesiredRevision: "1-30"},
			{Kind: "DaemonSet", Namespace: "payments", Name: "agent", Pods: 3, DesiredRevision: "1-30"},
			{Kind: "Deployment", Namespace: "payments", Name: "batch", Pods: 1, OptOut: true},
			{Kind: "Deployment", Namespace: "shop", Name: "web", Pods: 2, DesiredRevision: "1-30"},
			{Kind: "Deployment", Namespace: "istio-ingress", Name: "gw", Pods: 2, Gateway: true, PinnedRevision: "prod-stable"},
		},
	}
	r := BlastRadius(s, "prod-stable")
	if len(r.Namespaces) != 1 || r.Namespaces[0].Name != "payments" || r.Pods != 5 || len(r.Namespaces[0].Workloads) != 2 {
		t.Errorf("prod-stable radius: %+v", r)
	}
	if len(r.Gateways) != 1 || r.Gateways[0] != "istio-ingress/deployment/gw" {
		t.Errorf("gateways: %v", r.Gateways)
	}
	if d := BlastRadius(s, "default"); len(d.Namespaces) != 1 || d.Namespaces[0].Name != "bookinfo" {
		t.Errorf("default radius: %+v", d)
	}
	if n := BlastRadius(s, "nothing"); len(n.Namespaces) != 0 || n.Pods != 0 {
		t.Errorf("empty radius: %+v", n)
	}
}

// Gateway API gateways following the tag (their own label, their namespace's, or the default tag
// through an unlabelled namespace) roll the moment it moves; a pinned one does not.
func TestRollingNow(t *testing.T) {
	s := &mesh.Snapshot{Namespaces: []mesh.Namespace{{Name: "web", RevLabel: "prod-stable"}, {Name: "plain"}}}
	gws := []mesh.GatewayAPIGateway{
		{Namespace: "web", Name: "by-namespace", Class: "istio"},
		{Namespace: "plain", Name: "by-label", Class: "istio", RevLabel: "prod-stable"},
		{Namespace: "web", Name: "pinned", Class: "istio", RevLabel: "1-30"},
		{Namespace: "plain", Name: "waypoint", Class: "istio-waypoint"},
	}
	got := pin.RollingNow(gws, nil, followsTag(s, "prod-stable"))
	if len(got) != 2 || !strings.HasPrefix(got[0], "gateway/web/by-namespace ") || !strings.HasPrefix(got[1], "gateway/plain/by-label ") {
		t.Errorf("prod-stable: %q", got)
	}
	if got := pin.RollingNow(gws, nil, followsTag(s, "default")); len(got) != 1 || !strings.HasPrefix(got[0], "waypoint/plain/waypoint ") {
		t.Errorf("default: %q", got)
	}
}
