//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
)

// gateDoc is migrate-ns -o json with the request gate of each batch.
type gateDoc struct {
	Journal string `json:"journalEntry"`
	Details struct {
		Halted     string
		RolledBack bool
		Restarted  []string
		Gates      []struct {
			Passed    bool
			Reason    string
			Workloads []string
			Requests  *struct {
				Verdict string
				Queries int
				Checks  []struct {
					Verdict   string
					Queries   []string
					Workloads []struct {
						Namespace, Name, Verdict string
						Reasons                  []string
					}
				}
			}
		}
	}
}

func gatedMigrate(t *testing.T, args ...string) (gateDoc, result) {
	t.Helper()
	r := plugin(t, append([]string{"migrate-ns", "bookinfo", "--to", "1-31", "-o", "json", "--metrics-baseline=1m", "--analysis-interval=20s"}, args...)...)
	var d gateDoc
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("migrate-ns %v: exit %d, stdout not JSON: %v\n%s\n%s", args, r.code, err, r.stdout, r.stderr)
	}
	return d, r
}

// The request gate in migrate-ns, on the real Prometheus: with the fault knob making productpage's
// pods on 1-31 fail 20% of their requests, the canary batch fails on its requests (every control-plane
// gate passes), is moved back (exit 75) and the JSON names the workload and its figures; without the
// fault the same canary passes on its requests; the rest of bookinfo carries no request, so its batch
// halts as inconclusive (exit 78), never a pass, resumable; undo puts bookinfo back.
func TestMetricsGateInMigrateNs(t *testing.T) {
	ensureNewRevision(t)
	for p, rev := range injectedPods(t, "bookinfo") {
		if rev != "1-30" {
			t.Fatalf("bookinfo must start on 1-30: %s is on %s", p, rev)
		}
	}
	loop := bookinfoLoop(20)
	stopped := false
	defer func() {
		if !stopped {
			loop.Stop()
		}
	}()
	time.Sleep(40 * time.Second) // a baseline: productpage's requests on 1-30, scraped twice or more

	kubectl(t, "-n", "default", "create", "configmap", "testbed-faults", "--from-literal=rules=- {namespace: bookinfo, workload: productpage-v1, revision: 1-31, errorRate: 0.2}")
	defer run(t, binDir+"/kubectl", "-n", "default", "delete", "configmap", "testbed-faults", "--ignore-not-found")
	d, r := gatedMigrate(t, "--canary", "deploy/productpage-v1", "--rollback-on-failure", "--analysis=false", "-y")
	if r.code != 75 || len(d.Details.Gates) != 1 || d.Details.Gates[0].Requests == nil || d.Details.Gates[0].Requests.Verdict != "fail" {
		t.Fatalf("with the fault: exit %d, %+v\n%s", r.code, d.Details, r.stderr)
	}
	rq := d.Details.Gates[0].Requests
	last := rq.Checks[len(rq.Checks)-1]
	if len(last.Workloads) != 1 || last.Workloads[0].Name != "productpage-v1" || !strings.Contains(strings.Join(last.Workloads[0].Reasons, ";"), "success rate") || len(last.Queries) == 0 {
		t.Errorf("the JSON does not name productpage-v1 with its figures and queries: %+v", last)
	}
	t.Logf("caught: %v (%d queries)", last.Workloads[0].Reasons, rq.Queries)
	if !strings.Contains(r.stderr, "requests regressed") {
		t.Errorf("stderr does not say the requests regressed:\n%s", r.stderr)
	}
	eventually(t, 90*time.Second, "productpage moved back to 1-30", func() error {
		for p, rev := range injectedPods(t, "bookinfo") {
			if rev != "1-30" {
				return fmt.Errorf("%s on %s", p, rev)
			}
		}
		return nil
	})
	kubectl(t, "-n", "default", "delete", "configmap", "testbed-faults")

	// The control: no fault, the same canary passes its request gate and pauses for confirmation.
	d, r = gatedMigrate(t, "--canary", "deploy/productpage-v1", "--analysis=false")
	if r.code != 0 || len(d.Details.Gates) != 1 || d.Details.Gates[0].Requests == nil || d.Details.Gates[0].Requests.Verdict != "pass" || !strings.Contains(d.Details.Halted, "confirmation") {
		t.Fatalf("without the fault: exit %d, %+v\n%s", r.code, d.Details, r.stderr)
	}
	canary := d.Journal
	loop.Stop()
	stopped = true

	// The rest carries no request: inconclusive, halted, its entry resumable; never a pass.
	d, r = gatedMigrate(t, "--canary", "deploy/productpage-v1", "--analysis=false", "--analysis-count=1", "-y")
	if r.code != 78 || len(d.Details.Gates) == 0 || d.Details.Gates[len(d.Details.Gates)-1].Requests.Verdict != "inconclusive" {
		t.Fatalf("no traffic: exit %d, %+v\n%s", r.code, d.Details, r.stderr)
	}
	for _, e := range journalEntries(t) {
		if e.ID == d.Journal && e.Status() != journal.StateIncomplete {
			t.Errorf("the halted run's entry is %s, want incomplete", e.Status())
		}
	}
	// Accepting it resumes that entry: the halted batch is gated again, nothing restarted twice.
	halted := d.Journal
	d, r = gatedMigrate(t, "--canary", "deploy/productpage-v1", "--analysis=false", "--analysis-count=1", "-y", "--inconclusive=pass")
	if r.code != 0 || d.Journal != halted || len(d.Details.Restarted) != 0 {
		t.Fatalf("--inconclusive=pass: exit %d, entry %s (want %s), restarted %v\n%s", r.code, d.Journal, halted, d.Details.Restarted, r.stderr)
	}
	for _, id := range []string{d.Journal, canary} {
		if u := plugin(t, "undo", id, "-y"); u.code != 0 {
			t.Fatalf("undo %s: exit %d %s", id, u.code, u.stderr)
		}
	}
	eventually(t, 90*time.Second, "bookinfo back on 1-30", func() error {
		for p, rev := range injectedPods(t, "bookinfo") {
			if rev != "1-30" {
				return fmt.Errorf("%s on %s", p, rev)
			}
		}
		return checkProxiesOnInjectedRevision(t, "bookinfo")
	})
}
