//go:build e2e

package e2e

// Runs after the migration tests: everything but the tags and the gateway is on 1-31 by now.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

type cleanupResult struct {
	Journal string `json:"journalEntry"`
	Summary string
	Details struct {
		Blockers []struct{ Kind, Object, Fix string }
		Removed  []string
	}
}

func cleanup(t *testing.T, args ...string) (cleanupResult, result) {
	t.Helper()
	r := plugin(t, append([]string{"cleanup", "--revision", "1-30", "-o", "json"}, args...)...)
	var res cleanupResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("cleanup %v: exit %d, not JSON: %v\n%s\n%s", args, r.code, err, r.stdout, r.stderr)
	}
	return res, r
}

func TestCleanupRefusesThenRemovesAndUndo(t *testing.T) {
	ensureNewRevision(t)
	if r := plugin(t, "cleanup", "--revision", "9-99"); r.code != 65 {
		t.Errorf("unknown revision: exit %d", r.code)
	}
	kubectl(t, "create", "namespace", "e2e-still-old")
	kubectl(t, "label", "namespace", "e2e-still-old", "istio.io/rev=1-30")
	istiodRV := func() string {
		return kubectl(t, "-n", "istio-system", "get", "deployment", "istiod-1-30", "-o", "jsonpath={.metadata.resourceVersion}") + "/" +
			kubectl(t, "get", "mutatingwebhookconfiguration", "istio-sidecar-injector-1-30", "-o", "jsonpath={.metadata.resourceVersion}")
	}
	rv := istiodRV()
	res, r := cleanup(t)
	if r.code != 75 {
		t.Fatalf("cleanup with dependents: exit %d, want 75", r.code)
	}
	kinds := map[string]bool{}
	for _, b := range res.Details.Blockers {
		kinds[b.Kind+" "+b.Object] = true
		if b.Fix == "" {
			t.Errorf("blocker without a fix: %+v", b)
		}
	}
	for _, want := range []string{"namespace namespace/e2e-still-old", "tag tag/default", "gateway deployment/istio-ingress/istio-ingressgateway"} {
		if !kinds[want] {
			t.Errorf("blocker %q not listed: %v", want, kinds)
		}
	}
	if istiodRV() != rv {
		t.Error("a refused cleanup changed the revision's objects")
	}

	// Resolve every blocker, as the listed fixes say (the gateway moves by hand until shift exists).
	kubectl(t, "delete", "namespace", "e2e-still-old", "--timeout=90s")
	for _, tag := range []string{"default", "prod-stable"} {
		if r := plugin(t, "tag-move", tag, "--to", "1-31", "--overwrite", "-y"); r.code != 0 {
			t.Fatalf("tag-move %s: exit %d %s", tag, r.code, r.stderr)
		}
	}
	svcUID := kubectl(t, "-n", "istio-ingress", "get", "service", "istio-ingressgateway", "-o", "jsonpath={.metadata.uid}")
	kubectl(t, "-n", "istio-ingress", "patch", "deployment", "istio-ingressgateway", "--type=merge", "-p",
		`{"spec":{"template":{"metadata":{"labels":{"istio.io/rev":"1-31"}}}}}`)
	kubectl(t, "-n", "istio-ingress", "rollout", "status", "deployment/istio-ingressgateway", "--timeout=90s")
	eventually(t, 60*time.Second, "nothing left on 1-30", func() error {
		res, r := cleanup(t, "--dry-run=client")
		if r.code != 0 {
			return fmt.Errorf("still blocked: %+v", res.Details.Blockers)
		}
		return nil
	})

	rv = istiodRV()
	if res, r := cleanup(t, "--dry-run=server"); r.code != 0 || len(res.Details.Removed) == 0 || istiodRV() != rv {
		t.Errorf("--dry-run=server: exit %d, %d removed, resourceVersions %s → %s", r.code, len(res.Details.Removed), rv, istiodRV())
	}
	res, r = cleanup(t, "-y")
	if r.code != 0 || res.Journal == "" {
		t.Fatalf("cleanup: exit %d %s", r.code, r.stderr)
	}
	removed := strings.Join(res.Details.Removed, " ")
	for _, want := range []string{"istio-system/deployment/istiod-1-30", "mutatingwebhookconfiguration/istio-sidecar-injector-1-30", "istio-system/service/istiod-1-30"} {
		if !strings.Contains(removed, want) {
			t.Errorf("%s not removed: %s", want, removed)
		}
	}
	for _, kept := range []string{"istio-revision-tag", "istiod-default-validator", "istiod-1-31", "istio-ingressgateway"} {
		if strings.Contains(removed, kept) {
			t.Errorf("cleanup removed %s: %s", kept, removed)
		}
	}
	if r := run(t, binDir+"/kubectl", "-n", "istio-system", "get", "deployment", "istiod-1-30"); r.code == 0 {
		t.Error("istiod-1-30 still exists")
	}
	if uid := kubectl(t, "-n", "istio-ingress", "get", "service", "istio-ingressgateway", "-o", "jsonpath={.metadata.uid}"); uid != svcUID {
		t.Errorf("the gateway Service was replaced (%s → %s)", svcUID, uid)
	}
	eventually(t, 60*time.Second, "every proxy still SYNCED on 1-31", func() error {
		d := status(t)
		for _, p := range d.Proxies {
			if p.Revision != "1-31" || p.State != "SYNCED" {
				return fmt.Errorf("%s/%s on %s %s", p.Namespace, p.Pod, p.Revision, p.State)
			}
		}
		return nil
	})

	if u := plugin(t, "undo", res.Journal); u.code != 0 {
		t.Fatalf("undo cleanup: exit %d %s", u.code, u.stderr)
	}
	kubectl(t, "-n", "istio-system", "get", "deployment", "istiod-1-30")
	kubectl(t, "get", "mutatingwebhookconfiguration", "istio-sidecar-injector-1-30")
	eventually(t, 90*time.Second, "revision 1-30 back and ready", func() error {
		for _, r := range status(t).Revisions {
			if r.Name == "1-30" && r.Ready > 0 {
				return nil
			}
		}
		return fmt.Errorf("not ready")
	})
}
