package cleanup

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	admregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/helm"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
)

// Journal trust knows the step's kinds from its registration, as in the plugin.
func TestMain(m *testing.M) {
	step.Register([]step.Registration{Registration()})
	os.Exit(m.Run())
}

// moved is steptest.Mesh after the upgrade: every namespace, workload, gateway, tag and the validator
// on 1-31. Fakes cannot answer syncz, so istiod pods are left pending (not asked) unless asked is set.
func moved(asked bool) func() []runtime.Object {
	return func() []runtime.Object {
		objs := steptest.Mesh()
		for _, o := range objs {
			switch x := o.(type) {
			case *corev1.Namespace:
				if x.Name == "shop" {
					x.Labels[istio.LabelRev] = "1-31"
				}
			case *corev1.Pod:
				if x.Namespace == "istio-system" && !asked {
					x.Status.Phase = corev1.PodPending
				}
				if x.Namespace != "istio-system" {
					*x = *steptest.Pod(x.Namespace, x.Labels["app"], x.Name[len(x.Name)-1:], "1-31")
				}
			case *appsv1.Deployment:
				if x.Name == "istio-ingressgateway" {
					x.Spec.Template.Labels[istio.LabelRev] = "1-31"
				}
			case *admregv1.MutatingWebhookConfiguration:
				if x.Labels[istio.LabelTag] != "" {
					x.Labels[istio.LabelRev] = "1-31"
				}
			case *admregv1.ValidatingWebhookConfiguration:
				x.Labels[istio.LabelRev] = "1-31"
			}
		}
		return objs
	}
}

func removing(rev string) func() step.Step {
	return func() step.Step { return &Options{Revision: rev} }
}

func TestRunContract(t *testing.T) {
	steptest.Contract(t, moved(false), removing("1-30"))
}

// Nothing depends on 1-30: exactly its objects go, in one entry that the generic restore brings back.
func TestRunRemovesExactlyTheRevisionThenUndo(t *testing.T) {
	b := steptest.New(t, moved(false)()...)
	if err := b.Run(removing("1-30")(), "none", nil); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	// In dependency order: the webhook that calls istiod first, then istiod, its Service, its ConfigMap.
	want := []string{"delete mutatingwebhookconfigurations istio-sidecar-injector-1-30", "delete deployments istiod-1-30", "delete services istiod-1-30", "delete configmaps istio-1-30"}
	if got := b.StepWrites(); !slices.Equal(got, want) {
		t.Errorf("deleted %v\nwant    %v", got, want)
	}
	e := b.Entries()
	if len(e) != 1 || e[0].State != journal.StateInEffect || len(e[0].Objects) != 4 {
		t.Fatalf("entries %+v", e)
	}
	b.Reset()
	if _, err := b.Journal.Restore(context.Background(), e[0], nil); err != nil {
		t.Fatal(err)
	}
	// Undo re-creates backwards: the ConfigMap before istiod, the webhook last.
	if got, want := b.Changes(), []string{"create configmaps istio-1-30", "create services istiod-1-30", "create deployments istiod-1-30", "create mutatingwebhookconfigurations istio-sidecar-injector-1-30"}; !slices.Equal(got, want) {
		t.Errorf("undo wrote %v\nwant       %v", got, want)
	}
	if _, err := b.Clients.Kube.AppsV1().Deployments("istio-system").Get(context.Background(), "istiod-1-30", metav1.GetOptions{}); err != nil {
		t.Errorf("undo did not bring istiod-1-30 back: %v", err)
	}
}

// Anything that still resolves to 1-30 refuses with 66 and nothing changed; so does an istiod that cannot
// say whether proxies are still connected.
func TestRunRefusesWhileSomethingDepends(t *testing.T) {
	for name, objs := range map[string][]runtime.Object{"mid-upgrade": steptest.Mesh(), "istiod not answering": moved(true)()} {
		t.Run(name, func(t *testing.T) {
			b := steptest.New(t, objs...)
			err := b.Run(removing("1-30")(), "none", nil)
			if cli.CodeOf(err) != cli.ExitBlocked || len(b.Changes()) != 0 {
				t.Fatalf("exit %d (%v), changes %v; want 66 and nothing changed", cli.CodeOf(err), err, b.Changes())
			}
		})
	}
}

func labelled(kind, apiVersion, ns, name, rev string) runtime.Object {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetLabels(map[string]string{istio.LabelRev: rev})
	switch kind {
	case "ServiceAccount":
		return &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: u.GetLabels()}}
	case "Role":
		return &rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: u.GetLabels()}}
	case "ClusterRole":
		return &rbacv1.ClusterRole{TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}, ObjectMeta: metav1.ObjectMeta{Name: name, Labels: u.GetLabels()}}
	case "Service":
		return &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: u.GetLabels()}}
	}
	panic(kind)
}

// Only the revision's control plane goes: what istioctl's gateway component labels with the revision
// in the Istio namespace (Service, ServiceAccount, Role of an ingress gateway), another Istio namespace's
// ClusterRole, and an istiod Service with ready endpoints on other pods all stay.
func TestRunDeletesExactlyTheControlPlane(t *testing.T) {
	ready := true
	objs := append(moved(false)(),
		labelled("ServiceAccount", "v1", "istio-system", "istiod-1-30", "1-30"),
		labelled("Role", "rbac.authorization.k8s.io/v1", "istio-system", "istiod-1-30", "1-30"),
		labelled("ClusterRole", "rbac.authorization.k8s.io/v1", "", "istiod-clusterrole-1-30-istio-system", "1-30"),
		labelled("ClusterRole", "rbac.authorization.k8s.io/v1", "", "istiod-clusterrole-1-30-other-istio", "1-30"),
		labelled("Service", "v1", "istio-system", "istio-ingressgateway", "1-30"),
		labelled("ServiceAccount", "v1", "istio-system", "istio-ingressgateway-service-account", "1-30"),
		labelled("Role", "rbac.authorization.k8s.io/v1", "istio-system", "istio-ingressgateway-sds", "1-30"),
		// Something else serves behind istiod-1-30's Service.
		&discoveryv1.EndpointSlice{TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
			ObjectMeta: metav1.ObjectMeta{Name: "istiod-1-30-x", Namespace: "istio-system", Labels: map[string]string{discoveryv1.LabelServiceName: "istiod-1-30"}},
			Endpoints: []discoveryv1.Endpoint{{Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "istio-system", Name: "debug-proxy"}}}},
	)
	b := steptest.New(t, objs...)
	if err := b.Run(removing("1-30")(), "none", nil); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	got := b.StepWrites()
	slices.Sort(got)
	want := []string{"delete clusterroles istiod-clusterrole-1-30-istio-system", "delete configmaps istio-1-30", "delete deployments istiod-1-30",
		"delete mutatingwebhookconfigurations istio-sidecar-injector-1-30", "delete roles istiod-1-30", "delete serviceaccounts istiod-1-30"}
	if !slices.Equal(got, want) {
		t.Errorf("deleted %v\nwant    %v", got, want)
	}
	for _, s := range b.Sent {
		if strings.HasPrefix(s.Write, "delete ") && !strings.Contains(s.Write, "leases") && s.Precondition == "" {
			t.Errorf("%s without a UID precondition", s.Write)
		}
	}
	for _, kept := range []string{"istio-ingressgateway", "debug-proxy", "istiod-clusterrole-1-30-other-istio"} {
		if !strings.Contains(b.Out.String(), kept) {
			t.Errorf("the result does not say why %s was kept:\n%s", kept, b.Out)
		}
	}
}

func apiGateway(ns, name, class string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"name": name, "namespace": ns}, "spec": map[string]any{"gatewayClassName": class}}}
	u.SetLabels(labels)
	return u
}

// A Gateway API gateway or waypoint on 1-30 (its label, else its namespace), ztunnel on 1-30: each blocks.
func TestRunBlockedByGatewaysAndNodeAgents(t *testing.T) {
	ztunnel := steptest.Deployment("istio-system", "x", 1, nil, nil) // only for its template
	ds := &appsv1.DaemonSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "ztunnel", Namespace: "istio-system"},
		Spec:       appsv1.DaemonSetSpec{Selector: ztunnel.Spec.Selector, Template: ztunnel.Spec.Template}}
	ds.Spec.Template.Annotations = map[string]string{istio.LabelRev: "1-30"} // as the ztunnel chart's revision value writes it
	for name, extra := range map[string]runtime.Object{
		"gateway labelled 1-30":        apiGateway("istio-ingress", "web", "istio", map[string]string{istio.LabelRev: "1-30"}),
		"waypoint in a 1-30 namespace": apiGateway("legacy", "waypoint", "istio-waypoint", nil),
		"ztunnel on 1-30":              ds,
	} {
		t.Run(name, func(t *testing.T) {
			objs := append(moved(false)(), steptest.Namespace("legacy", map[string]string{istio.LabelRev: "1-30"}), extra)
			if name != "waypoint in a 1-30 namespace" {
				objs = append(moved(false)(), extra)
			}
			b := steptest.New(t, objs...)
			err := b.Run(removing("1-30")(), "none", nil)
			if cli.CodeOf(err) != cli.ExitBlocked || len(b.Changes()) != 0 {
				t.Fatalf("exit %d (%v), changes %v; want 66, nothing changed", cli.CodeOf(err), err, b.Changes())
			}
		})
	}
	// Another class's Gateway is not Istio's.
	b := steptest.New(t, append(moved(false)(), apiGateway("istio-ingress", "web", "envoy", map[string]string{istio.LabelRev: "1-30"}))...)
	if err := b.Run(removing("1-30")(), "client", nil); err != nil {
		t.Errorf("a Gateway of another class blocked: %v", err)
	}
}

// Something that comes to depend on the revision after the plan (here: while the lock is taken) stops
// cleanup before its first delete.
func TestRunRechecksBlockersBeforeDeleting(t *testing.T) {
	b := steptest.New(t, moved(false)()...)
	kc := b.Clients.Kube.(*fake.Clientset)
	nsGVR := corev1.SchemeGroupVersion.WithResource("namespaces")
	kc.PrependReactor("create", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		o, err := kc.Tracker().Get(nsGVR, "", "shop") // the store directly: a reactor runs under the fake's lock
		if err != nil {
			return true, nil, err
		}
		n := o.(*corev1.Namespace).DeepCopy()
		n.Labels[istio.LabelRev] = "1-30"
		return false, nil, kc.Tracker().Update(nsGVR, n, "")
	})
	err := b.Run(removing("1-30")(), "none", nil)
	if cli.CodeOf(err) != cli.ExitBlocked || !strings.Contains(err.Error(), "since the plan") {
		t.Fatalf("exit %d (%v), want 66", cli.CodeOf(err), err)
	}
	for _, w := range b.StepWrites() {
		if strings.HasPrefix(w, "delete ") {
			t.Errorf("deleted after the cluster changed: %s", w)
		}
	}
}

// A cleanup that fails part way leaves an incomplete entry whose undo brings back what it deleted.
func TestRunFailurePartWayIsUndoneCompletely(t *testing.T) {
	b := steptest.New(t, moved(false)()...)
	deletes := 0
	b.Dynamic.PrependReactor("delete", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetResource().Resource == "leases" {
			return false, nil, nil
		}
		if deletes++; deletes == 3 {
			return true, nil, errors.New("etcdserver: request timed out")
		}
		return false, nil, nil
	})
	if err := b.Run(removing("1-30")(), "none", nil); err == nil {
		t.Fatal("cleanup did not fail")
	}
	e := b.Entries()
	if len(e) != 1 || e[0].State != journal.StateIncomplete {
		t.Fatalf("entries %+v", e)
	}
	gone := 0
	for _, o := range e[0].Objects {
		if o.Gone {
			gone++
		}
	}
	if gone != 2 {
		t.Errorf("%d objects recorded as deleted, want the 2 deleted before the failure", gone)
	}
	if _, err := b.Journal.Restore(context.Background(), e[0], nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"istio-1-30"} {
		if _, err := b.Clients.Kube.CoreV1().ConfigMaps("istio-system").Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("undo did not bring back %s: %v", name, err)
		}
	}
	if _, err := b.Clients.Kube.AppsV1().Deployments("istio-system").Get(context.Background(), "istiod-1-30", metav1.GetOptions{}); err != nil {
		t.Errorf("undo did not bring back istiod-1-30: %v", err)
	}
}

// On a Helm install the default validator belongs to the base release: its blocker's fix is the helm
// upgrade of that release (not a tag-move, which cannot move a revision named like the tag), and the
// commands name the real releases.
func TestRunHelmInstallNamesHelmFixes(t *testing.T) {
	objs := moved(false)()
	for _, o := range objs {
		if v, ok := o.(*admregv1.ValidatingWebhookConfiguration); ok {
			v.Labels[istio.LabelRev] = "1-30"
		}
	}
	b := steptest.New(t, objs...)
	if err := helm.Record(b.Clients.Kube, helm.Release{Name: "istio-base", Namespace: "istio-system", Chart: "base", Version: "1.30.0", Objects: validator},
		map[string]any{"defaultRevision": "1-30"}); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	err := b.Run(removing("1-30")(), "none", nil)
	if cli.CodeOf(err) != cli.ExitBlocked || len(b.Changes()) != 0 {
		t.Fatalf("exit %d (%v), want 66 with nothing changed", cli.CodeOf(err), err)
	}
	if want := "helm upgrade istio-base istio/base --version 1.30.0 -n istio-system --reuse-values --set defaultRevision=1-31"; !strings.Contains(b.Out.String(), want) {
		t.Errorf("the validator blocker's fix is not %q:\n%s", want, b.Out)
	}
}

func TestHelmCommandsFromReleases(t *testing.T) {
	owned := func(kind, name, release string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetKind(kind)
		u.SetName(name)
		u.SetAnnotations(map[string]string{"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": "istio-system"})
		return u
	}
	rels := []helm.Release{
		{Name: "istiod", Namespace: "istio-system", Chart: "istiod"},
		{Name: "istio-base", Namespace: "istio-system", Chart: "base", Version: "1.0.0", DefaultRevision: "default", Objects: validator},
	}
	got := helmCommands(rels, []*unstructured.Unstructured{owned("Deployment", "istiod", "istiod"), owned("Service", "istiod", "istiod")}, "default", "canary")
	want := []string{"helm uninstall istiod -n istio-system", "helm upgrade istio-base istio/base --version 1.0.0 -n istio-system --reuse-values --set defaultRevision=canary"}
	if !slices.Equal(got, want) {
		t.Errorf("commands %q\nwant     %q", got, want)
	}
}

// --helm: the base release's defaultRevision moves, the istiod release is uninstalled with its history
// kept, both through helm's own actions and journaled; cleanup deletes none of the releases' objects
// itself. Undo rolls both back, and refuses (68) once helm changed a release since, unless forced.
func TestRunHelmRunsAndUndoRollsBack(t *testing.T) {
	objs := helmOwned()
	b := steptest.New(t, objs...)
	acts := withReleases(t, b, istiod130)
	history := func(name string) string {
		h, err := helm.History(b.Clients.Kube, "istio-system", name)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(h, ", ")
	}

	if err := b.Run(&Options{Revision: "1-30", Helm: true}, "none", nil); err != nil {
		t.Fatalf("%v\n%s", err, b.ErrOut)
	}
	if got := history("istio-base") + " | " + history("istiod-1-30"); got != "1 superseded, 2 deployed | 1 uninstalled" {
		t.Errorf("releases after cleanup --helm: %s", got)
	}
	for _, w := range b.StepWrites() {
		if w == "delete deployments istiod-1-30" || w == "delete mutatingwebhookconfigurations istio-sidecar-injector-1-30" {
			t.Errorf("cleanup deleted a release's object itself: %s", w)
		}
	}
	rels, _, _ := helm.List(b.Clients.Kube, "istio-system")
	if len(rels) != 1 || rels[0].DefaultRevision != "1-31" {
		t.Errorf("deployed releases %+v, want istio-base with defaultRevision=1-31", rels)
	}
	e := b.Entries()
	if len(e) != 1 || len(e[0].Helm) != 2 || e[0].Helm[0].Set != "defaultRevision=1-31" || e[0].Helm[0].From != 1 || e[0].Helm[0].To != 2 ||
		e[0].Helm[1].Action != journal.HelmUninstall || e[0].Helm[1].From != 1 {
		t.Fatalf("entry %+v", e)
	}
	if err := journal.Trusted(e[0]); err != nil {
		t.Errorf("the entry is not replayable: %v", err)
	}

	// helm changes the base release after the cleanup: undo refuses with nothing rolled back.
	if _, _, err := acts.SetValue(context.Background(), "istio-system", "istio-base", "defaultRevision", "1-31", ""); err != nil {
		t.Fatal(err)
	}
	before := history("istio-base") + " | " + history("istiod-1-30")
	progress := cli.NewProgress(b.ErrOut)
	if _, err := Undo(context.Background(), b.Clients, b.Journal, e[0], nil, progress); cli.CodeOf(err) != cli.ExitDrifted {
		t.Fatalf("undo after a helm change: %v, want exit 68", err)
	}
	if got := history("istio-base") + " | " + history("istiod-1-30"); got != before {
		t.Errorf("a refused undo changed releases: %s → %s", before, got)
	}
	b.Journal.Force = true
	if _, err := Undo(context.Background(), b.Clients, b.Journal, e[0], nil, progress); err != nil {
		t.Fatalf("undo --force: %v", err)
	}
	rels, _, _ = helm.List(b.Clients.Kube, "istio-system")
	got := map[string]string{}
	for _, r := range rels {
		got[r.Name] = r.DefaultRevision + r.IstioRevision
	}
	if len(got) != 2 || got["istio-base"] != "1-30" || got["istiod-1-30"] != "1-30" {
		t.Errorf("after undo --force: %v, want istio-base on 1-30 and istiod-1-30 deployed", got)
	}
}

// validator is the base chart's manifest as cleanup reads it: the default validator.
var validator = []helm.Object{{Kind: "ValidatingWebhookConfiguration", Name: "istiod-default-validator"}}

// istiod130 is the istiod chart's manifest for revision 1-30 (the objects cleanup plans to remove).
var istiod130 = []helm.Object{
	{Kind: "Deployment", Namespace: "istio-system", Name: "istiod-1-30"},
	{Kind: "MutatingWebhookConfiguration", Name: "istio-sidecar-injector-1-30"},
}

// helmOwned marks the 1-30 control plane as Helm's: the validator is the base release's, istiod and its
// injector the istiod-1-30 release's.
func helmOwned() []runtime.Object {
	objs := moved(false)()
	owned := map[string]bool{"istiod-1-30": true, "istio-sidecar-injector-1-30": true}
	ann := func(rel string) map[string]string {
		return map[string]string{"meta.helm.sh/release-name": rel, "meta.helm.sh/release-namespace": "istio-system"}
	}
	for _, o := range objs {
		switch x := o.(type) {
		case *admregv1.ValidatingWebhookConfiguration:
			x.Labels[istio.LabelRev] = "1-30"
			x.Annotations = ann("istio-base")
		case *appsv1.Deployment:
			if owned[x.Name] {
				x.Annotations = ann("istiod-1-30")
			}
		case *admregv1.MutatingWebhookConfiguration:
			if owned[x.Name] {
				x.Annotations = ann("istiod-1-30")
			}
		}
	}
	return objs
}

// A tenant who may write Secrets in its own namespace records a release of a chart named base with
// defaultRevision=1-30: cleanup --helm never reads it, never runs its chart, and the real validator
// blocker stays (the real base release is not there to fix it).
func TestRunHelmIgnoresATenantsRelease(t *testing.T) {
	b := steptest.New(t, helmOwned()...)
	if err := helm.Record(b.Clients.Kube, helm.Release{Name: "istio-base", Namespace: "tenant", Chart: "base", Version: "6.6.6", Objects: validator},
		map[string]any{"defaultRevision": "1-30"}); err != nil {
		t.Fatal(err)
	}
	if err := helm.Record(b.Clients.Kube, helm.Release{Name: "istiod-1-30", Namespace: "istio-system", Chart: "istiod", Version: "1.0.0", Objects: istiod130},
		map[string]any{"revision": "1-30"}); err != nil {
		t.Fatal(err)
	}
	acts := helm.FakeActions(b.Clients.Kube)
	helm.New = func(*rest.Config) *helm.Actions { return acts }
	t.Cleanup(func() { helm.New = helm.NewActions })
	b.Reset()
	err := b.Run(&Options{Revision: "1-30", Helm: true}, "none", nil)
	if cli.CodeOf(err) != cli.ExitBlocked || len(b.Changes()) != 0 {
		t.Fatalf("exit %d (%v), want 66 with nothing changed", cli.CodeOf(err), err)
	}
	if !strings.Contains(b.Out.String(), "istiod-default-validator") || strings.Contains(b.Out.String(), "tenant") {
		t.Errorf("the validator blocker is not reported, or the tenant's release is named:\n%s", b.Out)
	}
	if h, _ := helm.History(b.Clients.Kube, "tenant", "istio-base"); strings.Join(h, ",") != "1 deployed" {
		t.Errorf("the tenant's release was acted on: %v", h)
	}
	// The control: the same release in the Istio namespace is the validator's owner, and --helm runs it.
	if err := helm.Record(b.Clients.Kube, helm.Release{Name: "istio-base", Namespace: "istio-system", Chart: "base", Version: "1.0.0", Objects: validator},
		map[string]any{"defaultRevision": "1-30"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Run(&Options{Revision: "1-30", Helm: true}, "none", nil); err != nil {
		t.Fatalf("with the real base release: %v\n%s", err, b.Out)
	}
}

// The istiod release's manifest holds tag prod-stable's webhook, which tag-move pointed at 1-31: helm
// uninstall would delete it, so --helm refuses (66, nothing changed) naming it and the way out; once the
// release marks it keep (or no longer holds it), cleanup runs, and the question names chart and digest.
func TestRunHelmKeepsATagWebhookInTheRelease(t *testing.T) {
	objs := helmOwned()
	objs = append(objs, &admregv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-revision-tag-prod-stable",
		Labels: map[string]string{istio.LabelRev: "1-31", istio.LabelTag: "prod-stable"}}})
	b := steptest.New(t, objs...)
	tagged := append(append([]helm.Object{}, istiod130...), helm.Object{Kind: "MutatingWebhookConfiguration", Name: "istio-revision-tag-prod-stable"})
	withReleases(t, b, tagged)
	b.Reset()
	err := b.Run(&Options{Revision: "1-30", Helm: true}, "none", nil)
	if cli.CodeOf(err) != cli.ExitBlocked || len(b.Changes()) != 0 {
		t.Fatalf("exit %d (%v), want 66 with nothing changed", cli.CodeOf(err), err)
	}
	out := b.Out.String()
	for _, want := range []string{"istio-revision-tag-prod-stable", "helm.sh/resource-policy=keep", "--set-json 'revisionTags=[]'"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	// The release now marks the webhook keep (as a helm upgrade after the annotation would leave it).
	if err := b.Clients.Kube.CoreV1().Secrets("istio-system").Delete(context.Background(), "sh.helm.release.v1.istiod-1-30.v1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	tagged[len(tagged)-1].Keep = true
	if err := helm.Record(b.Clients.Kube, helm.Release{Name: "istiod-1-30", Namespace: "istio-system", Chart: "istiod", Version: "1.0.0", Objects: tagged},
		map[string]any{"revision": "1-30"}); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	b.ErrOut.Reset()
	if err := b.Run(&Options{Revision: "1-30", Helm: true}, "client", nil); err != nil {
		t.Fatalf("with the webhook kept: %v\n%s", err, b.Out)
	}
	if !strings.Contains(b.Out.String(), "istio-system/istiod-1-30: chart istiod 1.0.0 sha256:") {
		t.Errorf("the plan does not name chart, version and digest:\n%s%s", b.ErrOut, b.Out)
	}
}

// withReleases records the base release (the validator) and the istiod-1-30 release holding objects,
// and gives cleanup the real helm actions on the bed's release Secrets.
func withReleases(t *testing.T, b *steptest.Bed, objects []helm.Object) *helm.Actions {
	t.Helper()
	for _, r := range []struct {
		rel  helm.Release
		vals map[string]any
	}{
		{helm.Release{Name: "istio-base", Namespace: "istio-system", Chart: "base", Version: "1.0.0", Objects: validator}, map[string]any{"defaultRevision": "1-30"}},
		{helm.Release{Name: "istiod-1-30", Namespace: "istio-system", Chart: "istiod", Version: "1.0.0", Objects: objects}, map[string]any{"revision": "1-30"}},
	} {
		if err := helm.Record(b.Clients.Kube, r.rel, r.vals); err != nil {
			t.Fatal(err)
		}
	}
	acts := helm.FakeActions(b.Clients.Kube)
	helm.New = func(*rest.Config) *helm.Actions { return acts }
	t.Cleanup(func() { helm.New = helm.NewActions })
	return acts
}
