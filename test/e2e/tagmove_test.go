//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
)

// url is the Service the tag's webhook calls.
func tagState(t *testing.T) (webhookRev, serviceRev, url string) {
	webhookRev = kubectl(t, "get", "mutatingwebhookconfiguration", "istio-revision-tag-prod-stable", "-o", "jsonpath={.metadata.labels.istio\\.io/rev}")
	serviceRev = kubectl(t, "-n", "istio-system", "get", "service", "istiod-revision-tag-prod-stable", "-o", "jsonpath={.spec.selector.istio\\.io/rev}")
	url = kubectl(t, "get", "mutatingwebhookconfiguration", "istio-revision-tag-prod-stable", "-o", "jsonpath={.webhooks[0].clientConfig.service.name}")
	return
}

// testTagMoveRestartAndUndo: prod-stable moves to the new revision, its namespace (payments) is
// restarted onto it in gated batches, and undo puts the tag back.
func testTagMoveRestartAndUndo(t *testing.T) {
	ensureNewRevision(t)
	loop := bookinfoLoop(50) // the ingress route stays served while the tag's workloads restart
	defer noFailures(t, "tag-move --restart and its undo", loop, 100)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"tag-move", "1-30", "--to", "1-31"}, 65},                       // named like a revision
		{[]string{"tag-move", "prod-stable", "--to", "1-31"}, 65},                // exists, no --overwrite
		{[]string{"tag-move", "prod-stable", "--to", "9-99", "--overwrite"}, 65}, // unknown revision
		{[]string{"tag-move", "Bad_Tag", "--to", "1-31"}, 64},
		{[]string{"tag-move", "prod-stable"}, 64},
	} {
		if r := plugin(t, c.args...); r.code != c.code || r.stdout != "" {
			t.Errorf("%v: exit %d stdout %q, want %d", c.args, r.code, r.stdout, c.code)
		}
	}
	whRV := func() string {
		return kubectl(t, "get", "mutatingwebhookconfiguration", "istio-revision-tag-prod-stable", "-o", "jsonpath={.metadata.resourceVersion}") +
			"/" + kubectl(t, "-n", "istio-system", "get", "service", "istiod-revision-tag-prod-stable", "-o", "jsonpath={.metadata.resourceVersion}")
	}
	rv := whRV()
	if r := plugin(t, "tag-move", "prod-stable", "--to", "1-31", "--overwrite", "--dry-run=server", "-o", "json"); r.code != 0 || rv != whRV() {
		t.Errorf("--dry-run=server: exit %d, resourceVersions %s → %s\n%s", r.code, rv, whRV(), r.stderr)
	}
	if wr, sr, _ := tagState(t); wr != "1-30" || sr != "1-30" {
		t.Fatalf("tag before the move: webhook %s service %s", wr, sr)
	}
	oldURL := func() string { _, _, u := tagState(t); return u }()

	r := plugin(t, "tag-move", "prod-stable", "--to", "1-31", "--overwrite", "--restart", "--metrics=false", "-y", "-o", "json")
	var res struct {
		Journal string `json:"journalEntry"`
		Details struct {
			BlastRadius struct {
				Namespaces []struct{ Name string }
				Pods       int
			}
			Restart json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 0 {
		t.Fatalf("tag-move: exit %d, %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	if len(res.Details.BlastRadius.Namespaces) != 1 || res.Details.BlastRadius.Namespaces[0].Name != "payments" || res.Details.BlastRadius.Pods != 7 {
		t.Errorf("blast radius: %+v", res.Details.BlastRadius)
	}
	if len(res.Details.Restart) == 0 {
		t.Error("--restart result missing")
	}
	if wr, sr, url := tagState(t); wr != "1-31" || sr != "1-31" || url == oldURL {
		t.Errorf("tag after the move: webhook %s service %s url %s", wr, sr, url)
	}
	eventually(t, 60*time.Second, "payments on 1-31", func() error {
		for p, rev := range injectedPods(t, "payments") {
			if rev != "1-31" {
				return fmt.Errorf("%s on %s", p, rev)
			}
		}
		return checkProxiesOnInjectedRevision(t, "payments")
	})
	if l := kubectl(t, "get", "namespace", "payments", "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"); l != "prod-stable" {
		t.Errorf("tag-move --restart must keep the namespace on the tag, label is %q", l)
	}

	// One command, one journal unit: one `undo -y` puts the tag back, then restarts payments onto 1-30,
	// rolled out when undo returns.
	var h struct {
		Entries []journal.Entry `json:"entries"`
	}
	mustJSON(t, plugin(t, "history", "-o", "json"), &h)
	if last := h.Entries[len(h.Entries)-1]; last.ID != res.Journal || last.Step != "tag-move" || last.Status() != journal.StateInEffect {
		t.Errorf("the move and its restart must be one entry %s in effect, newest is %+v", res.Journal, last)
	}
	u := plugin(t, "undo", "-y")
	if u.code != 0 {
		t.Fatalf("undo -y: exit %d %s", u.code, u.stderr)
	}
	if wr, sr, url := tagState(t); wr != "1-30" || sr != "1-30" || url != "istiod-1-30" || url != oldURL {
		t.Errorf("after undo: webhook %s service %s url %s (want %s)", wr, sr, url, oldURL)
	}
	eventually(t, 30*time.Second, "payments back on 1-30", func() error {
		for p, rev := range injectedPods(t, "payments") {
			if rev != "1-30" {
				return fmt.Errorf("%s on %s", p, rev)
			}
		}
		return checkProxiesOnInjectedRevision(t, "payments")
	})
}
