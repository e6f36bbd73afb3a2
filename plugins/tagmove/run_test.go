package tagmove

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal/journaltest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
)

// cluster holds revision 1-31 (istiod, injector, Service) and a namespace on the tag prod-stable.
func cluster(t *testing.T) *journaltest.Cluster { return journaltest.New(t, objects()...) }

func objects() []runtime.Object {
	one := int32(1)
	wh := steptest.Injector("1-31")
	wh.TypeMeta = metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"}
	return []runtime.Object{
		&appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Name: "istiod-1-31", Namespace: "istio-system", Labels: map[string]string{"app": "istiod", istio.LabelRev: "1-31"}},
			Spec:       appsv1.DeploymentSpec{Replicas: &one}, Status: appsv1.DeploymentStatus{ReadyReplicas: 1}},
		wh,
		&corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: "istiod-1-31", Namespace: "istio-system", Labels: map[string]string{"app": "istiod", istio.LabelRev: "1-31"}},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc-xds", Port: 15012}}}},
		&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: "payments", Labels: map[string]string{istio.LabelRev: "prod-stable"}}},
	}
}

func TestRunContract(t *testing.T) {
	steptest.Contract(t, objects, func() step.Step { return &Options{To: "1-31", BatchSize: 5, Timeout: time.Minute} }, "prod-stable")
}

func execute(t *testing.T, c *journaltest.Cluster, dry string, args ...string) error {
	g := &cli.Global{ConfigFlags: genericclioptions.NewConfigFlags(true), IstioNamespace: "istio-system", Output: cli.OutputJSON}
	g.SetClients(c.Clients)
	o := &Options{To: "1-31", BatchSize: 5, Timeout: time.Minute}
	return step.Execute(context.Background(), g, genericiooptions.NewTestIOStreamsDiscard(), o, &step.Options{DryRunStr: dry, Yes: true},
		"kubectl istio-upgrade tag-move "+strings.Join(args, " "), args, nil)
}

// TestRunThroughTheRunner: tag-move's Run on fake clientsets, through the engine.
func TestRunThroughTheRunner(t *testing.T) {
	c := cluster(t)
	if err := execute(t, c, "client", "prod-stable"); err != nil {
		t.Fatal(err)
	}
	if len(c.Writes) != 0 {
		t.Fatalf("client dry run wrote %v", c.Writes)
	}
	if err := execute(t, c, "none", "1-31"); cli.CodeOf(err) != cli.ExitBadInput || len(c.Writes) != 0 {
		t.Fatalf("a tag named like a revision: exit %d, writes %v", cli.CodeOf(err), c.Writes)
	}
	if err := execute(t, c, "none", "prod-stable"); err != nil {
		t.Fatal(err)
	}
	want := []string{"create leases istio-upgrade-lock", "create secrets istio-upgrade-journal-key", "create configmaps istio-upgrade-journal-0001",
		"update secrets istio-upgrade-journal-key", "create mutatingwebhookconfigurations istio-revision-tag-prod-stable", "create services istiod-revision-tag-prod-stable",
		"update configmaps istio-upgrade-journal-0001", "update secrets istio-upgrade-journal-key", "delete leases istio-upgrade-lock"}
	var got []string
	for _, w := range c.Writes {
		if !strings.HasPrefix(w, "create selfsubjectreviews") { // who runs it, for the lock and journal
			got = append(got, w)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("writes:\n got %v\nwant %v", got, want)
	}
	entries, err := c.Journal.List(context.Background())
	if err != nil || len(entries) != 1 {
		t.Fatalf("entries %v %v", entries, err)
	}
	e := entries[0]
	if e.Step != "tag-move" || e.State != journal.StateInEffect || len(e.Objects) != 2 || e.Objects[0].Existed {
		t.Errorf("entry: %+v", e)
	}
	// Its undo removes the tag it created: webhook and Service.
	if _, err := Undo(context.Background(), c.Clients, c.Journal, e, nil, cli.NewProgress(io.Discard)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Clients.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), "istio-revision-tag-prod-stable", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("undo left the tag's webhook: %v", err)
	}
	if _, err := c.Clients.Kube.CoreV1().Services("istio-system").Get(context.Background(), "istiod-revision-tag-prod-stable", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("undo left the tag's Service: %v", err)
	}
}

// The result carries the tag's webhook and Service as manifests to commit (GitOps installs).
func TestRunResultCarriesManifests(t *testing.T) {
	b := steptest.New(t, objects()...)
	if err := b.Run(&Options{To: "1-31", BatchSize: 5, Timeout: time.Minute}, "client", nil, "prod-stable"); err != nil {
		t.Fatal(err)
	}
	var res struct {
		Patches []struct {
			Object, Type string
			Patch        map[string]any
		}
	}
	if err := json.Unmarshal(b.Out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, p := range res.Patches {
		if p.Type == "manifest" {
			kinds[p.Object], _ = p.Patch["kind"].(string)
		}
	}
	if kinds["mutatingwebhookconfiguration/istio-revision-tag-prod-stable"] != "MutatingWebhookConfiguration" || kinds["istio-system/service/istiod-revision-tag-prod-stable"] != "Service" {
		t.Errorf("manifests %v", kinds)
	}
}

// From a non-revisioned install (the revision named default, seed 000's start): `tag-move default`
// creates the default tag and deactivates the old injector, as istioctl's `tag set default` does; its
// undo puts the old injector back first, then removes the tag.
func TestRunDefaultTagOverNonRevisionedInstall(t *testing.T) {
	one := int32(1)
	old := steptest.Injector("default")
	old.Name = "istio-sidecar-injector"
	old.TypeMeta = metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"}
	validator := func(name, rev string) *admregv1.ValidatingWebhookConfiguration {
		url := "https://istiod-" + rev + ".istio-system.svc:443/validate"
		return &admregv1.ValidatingWebhookConfiguration{TypeMeta: metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{istio.LabelRev: rev}},
			Webhooks:   []admregv1.ValidatingWebhook{{Name: "validation.istio.io", ClientConfig: admregv1.WebhookClientConfig{URL: &url}}}}
	}
	objs := append(objects(), old,
		&appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: "istio-system", Labels: map[string]string{"app": "istiod", istio.LabelRev: "default"}},
			Spec:       appsv1.DeploymentSpec{Replicas: &one}, Status: appsv1.DeploymentStatus{ReadyReplicas: 1}},
		validator(istio.DefaultValidatorName, "default"), validator("istio-validator-1-31-istio-system", "1-31"),
		&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: "bookinfo", Labels: map[string]string{istio.LabelInjection: "enabled"}}})
	b := steptest.New(t, objs...)
	if err := b.Run(&Options{To: "1-31", BatchSize: 5, Timeout: time.Minute}, "none", nil, "default"); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	adm := b.Clients.Kube.AdmissionregistrationV1()
	cur, err := adm.MutatingWebhookConfigurations().Get(context.Background(), "istio-sidecar-injector", metav1.GetOptions{})
	if err != nil || cur.Webhooks[0].NamespaceSelector.MatchLabels["istio.io/deactivated"] != "never-match" {
		t.Fatalf("the old injector is not deactivated: %v %+v", err, cur)
	}
	if _, err := adm.MutatingWebhookConfigurations().Get(context.Background(), "istio-revision-tag-default", metav1.GetOptions{}); err != nil {
		t.Fatalf("no default tag: %v", err)
	}
	e := b.Entries()
	if e[0].Objects[0].Ref.Name != "istio-sidecar-injector" {
		t.Errorf("the old injector must be recorded first (undo restores it first): %+v", e[0].Objects[0].Ref)
	}
	if _, err := Undo(context.Background(), b.Clients, b.Journal, e[0], nil, cli.NewProgress(io.Discard)); err != nil {
		t.Fatal(err)
	}
	cur, _ = adm.MutatingWebhookConfigurations().Get(context.Background(), "istio-sidecar-injector", metav1.GetOptions{})
	if cur.Webhooks[0].NamespaceSelector.MatchLabels["istio.io/deactivated"] != "" {
		t.Errorf("undo left the old injector deactivated: %+v", cur.Webhooks[0].NamespaceSelector)
	}
	if _, err := adm.MutatingWebhookConfigurations().Get(context.Background(), "istio-revision-tag-default", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("undo left the default tag: %v", err)
	}
}
