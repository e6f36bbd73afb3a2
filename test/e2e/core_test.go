//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// The fixtures' sidecars are listed SYNCED on the istiod of their injected revision, by our status
// (port-forward + token + syncz, through the apiserver and KWOK) and by the real istioctl.
func testFixtureProxiesSynced(t *testing.T) {
	eventually(t, 60*time.Second, "fixture proxies synced", func() error { return checkProxiesOnInjectedRevision(t, "") })
	d := status(t)
	if d.APIVersion != "istio-upgrade.io/v1alpha1" || d.Kind != "MeshStatus" || len(d.Warnings) != 0 {
		t.Errorf("document %s/%s, warnings %v", d.APIVersion, d.Kind, d.Warnings)
	}
	want := map[string]string{"bookinfo": "default", "payments": "prod-stable", "shop": ""}
	for _, n := range d.Namespaces {
		if via, ok := want[n.Name]; ok && (n.Revision == "" || n.Via != via) {
			t.Errorf("namespace %s resolves to %q via %q, want via %q", n.Name, n.Revision, n.Via, via)
		}
	}
	routers := 0
	for _, p := range d.Proxies {
		if p.Namespace == "istio-ingress" && p.Type == "router" {
			routers++
		}
	}
	if routers != 2 {
		t.Errorf("want the 2 ingress gateway pods as routers, got %d", routers)
	}
}

func testVersionAndOutputContract(t *testing.T) {
	var v struct {
		Kind          string
		ControlPlanes []struct{ Revision, Version string }
	}
	mustJSON(t, plugin(t, "version", "-o", "json"), &v)
	found := false
	for _, cp := range v.ControlPlanes {
		if cp.Revision == "1-30" && cp.Version == "1.30.0" {
			found = true
		}
	}
	if v.Kind != "Version" || !found {
		t.Errorf("version -o json: %+v", v)
	}
	r := plugin(t, "version", "--client")
	if r.code != 0 || strings.Contains(r.stdout, "control-plane") {
		t.Errorf("version --client must not contact the cluster: %+v", r)
	}
	// -o yaml is a document too.
	r = plugin(t, "status", "-o", "yaml")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "apiVersion: istio-upgrade.io/v1alpha1") {
		t.Errorf("status -o yaml: exit %d, starts %q", r.code, r.stdout[:min(len(r.stdout), 60)])
	}
}

func testBadInputExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"status", "-n", "no-such-namespace"}, 65, `namespace "no-such-namespace" not found`},
		{[]string{"status", "--context", "no-such-context"}, 1, `context "no-such-context" does not exist`},
		{[]string{"status", "--bogus"}, 64, "unknown flag"},
		{[]string{"status", "-o", "wide"}, 64, "unknown output format"},
		{[]string{"undo", "9999"}, 65, "not found"},
		{[]string{"canary-gw", "--gateway", "istio-ingress/istio-ingressgateway"}, 64, "--gateway and --revision are required"},
	}
	for _, c := range cases {
		r := plugin(t, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.msg) || r.stdout != "" {
			t.Errorf("%v: exit %d stderr %q stdout %q; want exit %d and %q on stderr only", c.args, r.code, r.stderr, r.stdout, c.code, c.msg)
		}
	}
}

// testUndoRestoresRecordedState records a namespace and a webhook the way a step does, changes them
// with kubectl, and checks that `undo --dry-run=server` changes nothing and `undo` restores them.
func testUndoRestoresRecordedState(t *testing.T) {
	ctx := context.Background()
	kubectl(t, "create", "namespace", "e2e-undo")
	t.Cleanup(func() { run(t, binDir+"/kubectl", "delete", "namespace", "e2e-undo", "--wait=false") })
	kubectl(t, "label", "namespace", "e2e-undo", "istio-injection=enabled")

	cf := genericclioptions.NewConfigFlags(true)
	cf.KubeConfig = &kubeconfig
	c, err := kube.NewClients(cf)
	if err != nil {
		t.Fatal(err)
	}
	j := journal.New(c.Kube, c.Dynamic, "istio-system")
	rec := j.Begin("tag-move", "e2e-undo")
	nsRef, whRef := journal.NamespaceRef("e2e-undo"), journal.MutatingWebhookRef("istio-revision-tag-prod-stable")
	if err := rec.Capture(ctx, nsRef, whRef); err != nil {
		t.Fatal(err)
	}
	if err := rec.Save(ctx); err != nil {
		t.Fatal(err)
	}
	before := kubectl(t, "get", "namespace", "e2e-undo", "-o", "jsonpath={.metadata.labels}")

	kubectl(t, "label", "namespace", "e2e-undo", "istio-injection-", "istio.io/rev=1-30")
	kubectl(t, "label", "mutatingwebhookconfiguration", "istio-revision-tag-prod-stable", "e2e-touched=yes")

	rv := func() string {
		return kubectl(t, "get", "namespace", "e2e-undo", "-o", "jsonpath={.metadata.resourceVersion}")
	}
	rvBefore := rv()
	r := plugin(t, "undo", rec.Entry().ID, "--dry-run=server", "-o", "json")
	var res struct {
		DryRun  string
		Actions []struct{ Object, Verb string }
	}
	mustJSON(t, r, &res)
	if res.DryRun != "server" || len(res.Actions) != 2 || rv() != rvBefore {
		t.Errorf("undo --dry-run=server: %+v; resourceVersion %s → %s", res, rvBefore, rv())
	}

	r = plugin(t, "undo", rec.Entry().ID)
	if r.code != 0 {
		t.Fatalf("undo: exit %d: %s", r.code, r.stderr)
	}
	if got := kubectl(t, "get", "namespace", "e2e-undo", "-o", "jsonpath={.metadata.labels}"); got != before {
		t.Errorf("namespace labels after undo %s, want %s", got, before)
	}
	if got := kubectl(t, "get", "mutatingwebhookconfiguration", "istio-revision-tag-prod-stable", "-o", "jsonpath={.metadata.labels.e2e-touched}"); got != "" {
		t.Errorf("webhook label still there after undo: %q", got)
	}
	// The webhook still calls its istiod Service with istiod's CA: injection keeps working after an undo.
	svc := kubectl(t, "get", "mutatingwebhookconfiguration", "istio-revision-tag-prod-stable", "-o", "jsonpath={.webhooks[0].clientConfig.service.name}{' '}{.webhooks[0].clientConfig.caBundle}")
	if name, ca, _ := strings.Cut(svc, " "); name != "istiod-1-30" || ca == "" {
		t.Errorf("webhook clientConfig after undo: service %q, caBundle %d bytes", name, len(ca))
	}
	var h struct {
		Entries []journal.Entry `json:"entries"`
	}
	mustJSON(t, plugin(t, "history", "-o", "json"), &h)
	var orig, undo *journal.Entry
	for i := range h.Entries {
		switch {
		case h.Entries[i].ID == rec.Entry().ID:
			orig = &h.Entries[i]
		case h.Entries[i].UndoOf == rec.Entry().ID:
			undo = &h.Entries[i]
		}
	}
	if orig == nil || undo == nil || orig.UndoneBy != undo.ID {
		t.Errorf("history: entry %+v, undo %+v", orig, undo)
	}
	if r := plugin(t, "undo", rec.Entry().ID); r.code != 65 {
		t.Errorf("undoing an entry twice: exit %d, want 65", r.code)
	}
}
