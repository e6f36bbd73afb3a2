package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// now is when the tests' windows end: a query at another time is the baseline's.
var now = time.Now()

// series are one workload's recorded answers: requests and failures per reporter, current and
// baseline window, and p99.
type series struct {
	ns, name                   string
	reqs, failed, p99          float64
	baseReqs, baseFail, baseP9 float64
	// outbound: the figures are of the requests the workload sent (a gateway's), not of those it got.
	outbound bool
}

// fakeProm answers the analysis' queries as Prometheus would from the recorded series: a query with
// "offset" is the baseline window; "response_code" the failures; histogram_quantile the p99.
func fakeProm(t *testing.T, data []series) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("query")
		base := r.URL.Query().Get("time") != fmt.Sprintf("%.3f", float64(now.UnixMilli())/1000)
		var result []map[string]any
		for _, s := range data {
			if !strings.Contains(q, s.ns) || s.outbound != strings.Contains(q, "by (source_workload_namespace") {
				continue
			}
			v := s.reqs
			switch {
			case strings.HasPrefix(q, "histogram_quantile"):
				v = s.p99
				if base {
					v = s.baseP9
				}
			case strings.Contains(q, "response_code"):
				v = s.failed
				if base {
					v = s.baseFail
				}
			case base:
				v = s.baseReqs
			}
			side := "destination"
			if s.outbound {
				side = "source"
			}
			result = append(result, map[string]any{"metric": map[string]string{side + "_workload_namespace": s.ns, side + "_workload": s.name},
				"value": []any{1.0, fmt.Sprint(v)}})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
	}))
}

func analyze(t *testing.T, data []series, scope Scope) *Report {
	t.Helper()
	srv := fakeProm(t, data)
	defer srv.Close()
	c := &Client{Source: Source{URL: srv.URL}}
	if scope.Namespaces == nil {
		scope.Namespaces = []string{"shop"}
	}
	rep, err := c.Analyze(context.Background(), scope, Before(now, time.Minute, 5*time.Minute), DefaultThresholds)
	if err != nil {
		t.Fatal(err)
	}
	if c.Queries() != 22 {
		t.Errorf("queries: %d, want 3 per view (destination, source, outbound) and window, and 2 per split view", c.Queries())
	}
	return rep
}

func TestVerdicts(t *testing.T) {
	for _, tt := range []struct {
		name    string
		s       series
		verdict string
		reason  string
	}{
		{"steady", series{"shop", "web", 600, 0, 4, 3000, 0, 4, false}, Pass, ""},
		{"20% failing", series{"shop", "web", 600, 120, 4, 3000, 0, 4, false}, Fail, "success rate 80.0% (baseline 100.0%"},
		{"within the allowed drop", series{"shop", "web", 1000, 5, 4, 3000, 0, 4, false}, Pass, ""},
		{"slower", series{"shop", "web", 600, 0, 300, 3000, 0, 20, false}, Fail, "p99 300.0 ms (baseline 20.0 ms: 15.0x"},
		{"sub-millisecond jitter is not a regression", series{"shop", "web", 600, 0, 2.5, 3000, 0, 0.9, false}, Pass, ""},
		{"too few requests", series{"shop", "web", 5, 5, 4, 3000, 0, 4, false}, Inconclusive, "fewer than 10 requests"},
		{"no baseline: absolute floor", series{"shop", "web", 600, 30, 4, 0, 0, 0, false}, Fail, "below 99% (no baseline traffic"},
		{"no baseline, healthy", series{"shop", "web", 600, 0, 4, 0, 0, 0, false}, Pass, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := analyze(t, []series{tt.s}, Scope{})
			if rep.Verdict != tt.verdict || len(rep.Workloads) != 1 {
				t.Fatalf("verdict %s, want %s: %+v", rep.Verdict, tt.verdict, rep.Workloads)
			}
			if got := strings.Join(rep.Workloads[0].Reasons, "; "); !strings.Contains(got, tt.reason) {
				t.Errorf("reasons %q, want %q", got, tt.reason)
			}
		})
	}
}

// A gateway only sends requests: its figures are the outbound view, and a canary gateway answering 503
// without a baseline of its own fails on the absolute floor; a healthy one passes.
func TestOutboundView(t *testing.T) {
	rep := analyze(t, []series{{ns: "shop", name: "gw-canary", reqs: 200, failed: 60, p99: 3, outbound: true}}, Scope{})
	if rep.Verdict != Fail || len(rep.Workloads) != 1 || !strings.Contains(strings.Join(rep.Workloads[0].Reasons, ";"), "outbound: success rate 70.0%") {
		t.Fatalf("a failing gateway: %+v", rep)
	}
	if v := rep.Workloads[0].Views; len(v) != 1 || v[0].Reporter != Outbound {
		t.Errorf("views: %+v", v)
	}
	rep = analyze(t, []series{{ns: "shop", name: "gw-canary", reqs: 200, p99: 3, outbound: true}}, Scope{})
	if rep.Verdict != Pass {
		t.Errorf("a healthy gateway: %+v", rep)
	}
}

// A workload known to exist that sent no metric at all is inconclusive, never a pass; one failing
// workload fails the whole report; Only narrows it.
func TestScope(t *testing.T) {
	data := []series{{"shop", "web", 600, 0, 4, 3000, 0, 4, false}, {"shop", "cart", 600, 300, 4, 3000, 0, 4, false}}
	rep := analyze(t, data, Scope{Expected: []string{"shop/web", "shop/cart", "shop/idle"}})
	if rep.Verdict != Fail || len(rep.Workloads) != 3 || rep.Workloads[1].Name != "idle" || rep.Workloads[1].Verdict != Inconclusive {
		t.Fatalf("%+v", rep)
	}
	rep = analyze(t, data, Scope{Only: map[string]bool{"shop/web": true}})
	if rep.Verdict != Pass || len(rep.Workloads) != 1 {
		t.Fatalf("only web: %+v", rep)
	}
	if rep := analyze(t, nil, Scope{}); rep.Verdict != Inconclusive {
		t.Errorf("no traffic at all: %s", rep.Verdict)
	}
}

func TestPrometheusErrorsAreErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"parse error"}`))
	}))
	defer srv.Close()
	c := &Client{Source: Source{URL: srv.URL}}
	if _, err := c.Analyze(context.Background(), Scope{Namespaces: []string{"shop"}}, Before(now, time.Minute, time.Minute), DefaultThresholds); err == nil || !strings.Contains(err.Error(), "parse error") {
		t.Errorf("error: %v", err)
	}
}

func TestParseService(t *testing.T) {
	if s, err := ParseService("monitoring/prometheus-operated"); err != nil || s.Port != "9090" || s.Namespace != "monitoring" {
		t.Errorf("%+v %v", s, err)
	}
	if _, err := ParseService("prometheus"); err == nil {
		t.Error("no namespace accepted")
	}
	if got := regexAlt([]string{"a.b", "c"}); got != `a\.b|c` {
		t.Errorf("regexAlt %q", got)
	}
}

// While a workload runs two proxy versions, the new proxies are judged against the old ones: a
// regression confined to them fails the workload and is named as such, even when its total (diluted by
// the old pods) is within the allowed drop; a workload whose versions do alike passes.
func TestNewProxiesAgainstOld(t *testing.T) {
	split := func(newFailed float64) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query().Get("query")
			var result []map[string]any
			add := func(labels map[string]string, v float64) {
				result = append(result, map[string]any{"metric": labels, "value": []any{1.0, fmt.Sprint(v)}})
			}
			failed := strings.Contains(q, "response_code")
			switch {
			case strings.Contains(q, "group_left(tag)") && strings.Contains(q, `reporter="destination"`):
				for tag, v := range map[string][2]float64{"1.30.0": {900, 0}, "1.31.0": {100, newFailed}} {
					n := v[0]
					if failed {
						n = v[1]
					}
					add(map[string]string{"destination_workload_namespace": "shop", "destination_workload": "web", "tag": tag}, n)
				}
			case strings.Contains(q, "group_left(tag)"), strings.HasPrefix(q, "histogram_quantile"):
			case strings.Contains(q, `reporter="destination"`):
				n := 1000.0
				if failed {
					n = newFailed
				}
				add(map[string]string{"destination_workload_namespace": "shop", "destination_workload": "web"}, n)
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
		}))
	}
	for _, tt := range []struct {
		failed  float64
		verdict string
	}{{8, Fail}, {0, Pass}} {
		srv := split(tt.failed)
		c := &Client{Source: Source{URL: srv.URL}}
		rep, err := c.Analyze(context.Background(), Scope{Namespaces: []string{"shop"}}, Before(now, time.Minute, 5*time.Minute), DefaultThresholds)
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if rep.Verdict != tt.verdict || len(rep.Workloads) != 1 || len(rep.Workloads[0].ByProxy) != 2 {
			t.Fatalf("new proxies failing %g of 100: %+v", tt.failed, rep)
		}
		why := strings.Join(rep.Workloads[0].Reasons, "; ")
		if tt.verdict == Fail && !strings.Contains(why, "confined to the new proxies: 1.31.0 at 92.0% of 100 requests, 1.30.0 at 100.0%") {
			t.Errorf("reasons %q", why)
		}
	}
	if !newerTag("1.31.0", "1.30.2") || newerTag("1.9.0", "1.10.0") || !newerTag("1.10.0", "1.9.0") {
		t.Error("proxy tags compare as versions")
	}
}
