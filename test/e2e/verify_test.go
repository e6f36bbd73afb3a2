//go:build e2e

package e2e

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

// verifyDoc is what `verify -o json` prints.
type verifyDoc struct {
	Prometheus string `json:"prometheus"`
	Verdict    string `json:"verdict"`
	Workloads  []struct {
		Namespace, Name, Verdict string
		Reasons                  []string
		Views                    []struct {
			Reporter string
			Current  *struct{ Requests, SuccessRate float64 }
		}
	} `json:"workloads"`
	Queries []string `json:"queries"`
}

func verifyJSON(t *testing.T, args ...string) (verifyDoc, int) {
	t.Helper()
	r := plugin(t, append([]string{"verify", "-o", "json"}, args...)...)
	var d verifyDoc
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("verify %v: exit %d, stdout is not JSON: %v\n%s\n%s", args, r.code, err, r.stdout, r.stderr)
	}
	return d, r.code
}

// The real Prometheus scrapes the simulated proxies' Istio metrics (through the agent, with the
// addon's configuration) and is reached through the apiserver's service proxy; verify judges the
// requests the loop sends: a pass at rest, a fail once the fault knob makes productpage answer 30% of
// its requests with 503 (the negative control), and inconclusive where no request flows.
func TestVerifyRequestMetrics(t *testing.T) {
	q := "/api/v1/namespaces/istio-system/services/prometheus:9090/proxy/api/v1/query?query=" + url.QueryEscape(`istio_build{component="proxy",namespace="bookinfo"}`)
	eventually(t, 60*time.Second, "Prometheus scraped bookinfo's proxies (istio_build)", func() error {
		out := kubectl(t, "get", "--raw", q)
		if !strings.Contains(out, `"tag"`) {
			return errorf("no istio_build yet: %s", out)
		}
		return nil
	})
	loop, stopped := bookinfoLoop(20), false
	defer func() {
		if !stopped {
			loop.Stop()
		}
	}()
	const w = "--workload=bookinfo/productpage-v1"
	time.Sleep(50 * time.Second) // three scrapes of the addon's 15 s interval
	d, code := verifyJSON(t, "bookinfo", w, "--since=45s", "--baseline=45s")
	if code != 0 || d.Verdict != "pass" || len(d.Workloads) != 1 || !strings.Contains(d.Prometheus, "istio-system/prometheus") {
		t.Fatalf("at rest: exit %d, %+v", code, d)
	}
	if v := d.Workloads[0].Views; len(v) == 0 || v[0].Current == nil || v[0].Current.Requests < 100 || v[0].Current.SuccessRate < 99 {
		t.Errorf("at rest, productpage's figures: %+v", v)
	}

	kubectl(t, "-n", "default", "create", "configmap", "testbed-faults", "--from-literal=rules=- {namespace: bookinfo, workload: productpage-v1, errorRate: 0.3}")
	defer run(t, binDir+"/kubectl", "-n", "default", "delete", "configmap", "testbed-faults", "--ignore-not-found")
	time.Sleep(50 * time.Second)
	d, code = verifyJSON(t, "bookinfo", w, "--since=45s", "--baseline=2m")
	if code != 75 || d.Verdict != "fail" || len(d.Workloads) != 1 || d.Workloads[0].Verdict != "fail" || !strings.Contains(strings.Join(d.Workloads[0].Reasons, ";"), "success rate") {
		t.Fatalf("with 30%% of productpage's requests failing: exit %d, %+v", code, d)
	}
	t.Logf("fault caught: %v", d.Workloads[0].Reasons)
	kubectl(t, "-n", "default", "delete", "configmap", "testbed-faults")
	loop.Stop()
	stopped = true

	// shop gets no request from the loop: no verdict, and never a pass.
	d, code = verifyJSON(t, "shop", "--since=45s")
	if code != 78 || d.Verdict != "inconclusive" || len(d.Workloads) == 0 {
		t.Errorf("a namespace without traffic: exit %d, %+v", code, d)
	}
	if r := plugin(t, "verify", "nowhere-ns"); r.code != 65 {
		t.Errorf("an unknown namespace: exit %d, %s", r.code, r.stderr)
	}
	if r := plugin(t, "verify", "shop", "--inconclusive=maybe"); r.code != 64 {
		t.Errorf("a bad --inconclusive: exit %d", r.code)
	}
}
