package step

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/metrics"
)

// promAnswering answers every query as if shop/web served requests, failed of them 5xx, with a
// healthy baseline (queries at a time before the unit's start); requests 0 is a workload without traffic.
func promAnswering(requests, failed float64, began time.Time) *httptest.Server {
	return promAnsweringUntil(requests, failed, began.Add(time.Second))
}

// promAnsweringUntil is promAnswering whose baseline is every query at or before cut.
func promAnsweringUntil(requests, failed float64, cut time.Time) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("query")
		at, _ := strconv.ParseFloat(r.URL.Query().Get("time"), 64)
		baseline := at <= float64(cut.UnixMilli())/1000
		v := requests
		switch {
		case strings.HasPrefix(q, "histogram_quantile"):
			v = 3
		case strings.Contains(q, "response_code") && !baseline:
			v = failed
		case strings.Contains(q, "response_code"):
			v = 0
		}
		result := []any{}
		if requests > 0 {
			result = append(result, map[string]any{"metric": map[string]string{"destination_workload_namespace": "shop", "destination_workload": "web"}, "value": []any{1, fmt.Sprint(v)}})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
	}))
}

func gateRun(srv *httptest.Server, inconclusive string) *Run {
	o := RequestOptions{Enabled: true, Interval: 10 * time.Millisecond, Count: 2, FailureLimit: 1, Baseline: time.Minute, Inconclusive: inconclusive, Thresholds: metrics.DefaultThresholds}
	return &Run{DryRun: cli.DryRunNone, Progress: cli.NewProgress(io.Discard), requests: &requestGate{o: o, client: &metrics.Client{Source: metrics.Source{URL: srv.URL}}}}
}

// The request gate passes healthy workloads, fails a regression naming the workload (75), halts on
// too few requests (78) unless told otherwise, and is no gate at all without Prometheus.
func TestGateRequests(t *testing.T) {
	ctx := context.Background()
	began := time.Now().Add(-time.Minute)
	for _, tt := range []struct {
		name             string
		requests, failed float64
		inconclusive     string
		code             cli.ExitCode
		verdict          string
	}{
		{"healthy", 600, 0, "halt", cli.ExitOK, metrics.Pass},
		{"20% failing", 600, 120, "halt", cli.ExitGateFailed, metrics.Fail},
		{"no traffic halts", 0, 0, "halt", cli.ExitInconclusive, metrics.Inconclusive},
		{"no traffic passes when told", 0, 0, "pass", cli.ExitOK, metrics.Inconclusive},
		{"no traffic fails when told", 0, 0, "fail", cli.ExitGateFailed, metrics.Inconclusive},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := promAnswering(tt.requests, tt.failed, began)
			defer srv.Close()
			res, err := gateRun(srv, tt.inconclusive).GateRequests(ctx, "batch 1", began, time.Now(), []string{"shop/web"})
			if cli.CodeOf(err) != tt.code || res == nil || res.Verdict != tt.verdict {
				t.Fatalf("exit %d (%v), %+v; want %d %s", cli.CodeOf(err), err, res, tt.code, tt.verdict)
			}
			if tt.code == cli.ExitGateFailed && tt.failed > 0 && !strings.Contains(err.Error(), "shop/web: destination: success rate 80.0%") {
				t.Errorf("the failure does not name the workload and its figures: %v", err)
			}
			if want := 22 * len(res.Checks); res.Queries != want || (len(res.Checks) > 0 && res.Bytes == 0) || (tt.code != cli.ExitGateFailed && len(res.Checks) != 2) {
				t.Errorf("%d checks, %d queries", len(res.Checks), res.Queries)
			}
		})
	}
	if res, err := (&Run{}).GateRequests(ctx, "batch 1", began, time.Now(), []string{"shop/web"}); res != nil || err != nil {
		t.Errorf("without a gate: %+v %v", res, err)
	}
}

func TestRequestOptionsValidate(t *testing.T) {
	o := RequestOptions{Enabled: true, Interval: 30 * time.Second, Count: 2, FailureLimit: 1, Baseline: time.Minute, Inconclusive: "halt", Thresholds: metrics.DefaultThresholds}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []func(*RequestOptions){
		func(o *RequestOptions) { o.Inconclusive = "maybe" },
		func(o *RequestOptions) { o.Count = 0 },
		func(o *RequestOptions) { o.Prometheus = metrics.Where{URL: "http://x", Service: "a/b"} },
		func(o *RequestOptions) { o.Prometheus.Service = "nonamespace" },
		func(o *RequestOptions) { o.MinRequests = 0 },
	} {
		b := o
		bad(&b)
		if err := b.validate(); cli.CodeOf(err) != cli.ExitUsage {
			t.Errorf("%+v: %v", b, err)
		}
	}
}

// A rerun that only changes how the step judges (--inconclusive=pass after an inconclusive halt)
// resumes the same entry; one that changes what it moves does not.
func TestSameWork(t *testing.T) {
	base := "kubectl istio-upgrade migrate-ns bookinfo --analysis-interval=20s --to=1-31 --yes"
	if !sameWork(base, "kubectl istio-upgrade migrate-ns bookinfo --inconclusive=pass --to=1-31") {
		t.Error("a policy flag changed: not resumed")
	}
	for _, other := range []string{
		"kubectl istio-upgrade migrate-ns bookinfo --to=1-32",
		"kubectl istio-upgrade migrate-ns bookinfo shop --to=1-31",
		"kubectl istio-upgrade migrate-ns bookinfo --batch-size=1 --to=1-31",
	} {
		if sameWork(base, other) {
			t.Errorf("%q resumes %q", other, base)
		}
	}
}
