package step

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/metrics"
)

// TrafficMover is a step whose units move traffic (workloads restarted onto a revision, a gateway
// moved): the runner gives it the request-metrics gate, its flags, and Run.GateRequests.
type TrafficMover interface{ MovesTraffic() }

// SometimesMovesTraffic is a TrafficMover whose validated flags say whether this run moves any (tag-move
// moves traffic only with --restart): a run that moves none does not look for Prometheus.
type SometimesMovesTraffic interface{ MovesTrafficNow() bool }

// gatesRequests says whether a real run of s gets the request gate set up.
func gatesRequests(s Step) bool {
	if _, ok := s.(TrafficMover); !ok {
		return false
	}
	if m, ok := s.(SometimesMovesTraffic); ok {
		return m.MovesTrafficNow()
	}
	return true
}

// RequestGatePermission is the row every TrafficMover adds to its permissions: Prometheus is asked
// through the apiserver's service proxy (docs/rbac.md, "the request gate").
var RequestGatePermission = Perm("get (optional: without it the step warns and gates on the control plane, unless `--require-metrics`)", "services/proxy", "the Prometheus Service's namespace (the request gate; `--metrics=false` needs none)")

// RequestOptions are the request gate's flags, Flagger's and Argo Rollouts' semantics: Count checks
// Interval apart; FailureLimit failed checks fail the gate; too few requests decide nothing.
type RequestOptions struct {
	Enabled      bool
	Require      bool
	Prometheus   metrics.Where
	Interval     time.Duration
	Count        int
	FailureLimit int
	Baseline     time.Duration
	Inconclusive string
	metrics.Thresholds
}

func (o *RequestOptions) addFlags(f *pflag.FlagSet) {
	o.Thresholds = metrics.DefaultThresholds
	f.BoolVar(&o.Enabled, "metrics", true, "Gate each unit on the moved workloads' own requests in Prometheus (success rate, p99 against their baseline); --metrics=false gates on the control plane only")
	f.BoolVar(&o.Require, "require-metrics", false, "Refuse to start when no Prometheus is found (without it: a warning, and the gates see the control plane only)")
	o.Prometheus.AddFlags(f)
	f.DurationVar(&o.Interval, "analysis-interval", 30*time.Second, "Time between two request-metrics checks of a unit (at least twice Prometheus' scrape interval)")
	f.IntVar(&o.Count, "analysis-count", 2, "Request-metrics checks of each unit; it passes when the last passed and none failed past --failure-limit")
	f.IntVar(&o.FailureLimit, "failure-limit", 1, "Failed request-metrics checks that fail the unit")
	f.DurationVar(&o.Baseline, "metrics-baseline", 5*time.Minute, "The baseline window of each unit, just before it began")
	f.StringVar(&o.Inconclusive, "inconclusive", "halt", "What too few requests mean for a unit: halt (exit 78, resumable), pass, or fail")
	metrics.AddThresholdFlags(f, &o.Thresholds)
}

func (o *RequestOptions) validate() error {
	if !o.Enabled {
		return nil
	}
	for _, err := range []error{metrics.ValidateInconclusive(o.Inconclusive), o.Prometheus.Validate(), o.Thresholds.Validate()} {
		if err != nil {
			return cli.UsageErrorf("%v", err)
		}
	}
	if o.Interval < 5*time.Second || o.Count < 1 || o.FailureLimit < 1 || o.Baseline < 10*time.Second {
		return cli.UsageErrorf("--analysis-interval must be at least 5s, --analysis-count and --failure-limit at least 1, --metrics-baseline at least 10s")
	}
	return nil
}

// requestGate is the run's request gate, set up before Plan on a real run (nil: none).
type requestGate struct {
	o      RequestOptions
	client *metrics.Client
}

// setupRequests finds Prometheus for a real run of a TrafficMover. None found is a warning (the step
// gates on the control plane), an error with --require-metrics.
func setupRequests(ctx context.Context, r *Run, o RequestOptions) (*requestGate, error) {
	if !o.Enabled {
		return nil, nil
	}
	src, err := o.Prometheus.Locate(ctx, r.C.Kube, r.G.IstioNamespace)
	if err != nil && o.Require {
		return nil, fmt.Errorf("finding Prometheus: %w", err)
	}
	if src == nil {
		if o.Require {
			return nil, cli.BadInputf("--require-metrics: %s; nothing was changed", metrics.NotFound(r.G.IstioNamespace))
		}
		r.Progress.Printf("warning: no Prometheus found: the gates see the control plane only, not the workloads' requests (--prometheus-service names one)")
		return nil, nil
	}
	return &requestGate{o: o, client: &metrics.Client{Kube: r.C.Kube, Source: *src}}, nil
}

// RequestGate is one unit's request-metrics verdict, for the step's JSON.
type RequestGate struct {
	Verdict string            `json:"verdict"`
	Checks  []*metrics.Report `json:"checks"`
	Queries int               `json:"queries"`
	// Bytes are the answers' size: with Queries, what the unit's checks cost Prometheus.
	Bytes int64 `json:"bytes"`
}

// GateRequests gates a unit on its workloads' requests (what names it on progress lines; its errors
// are the runner's to prefix) (NAMESPACE/NAME each): Count checks Interval
// apart, each judging the time since the unit was rolled out (rolled) against the baseline window
// ending when the unit began (began). A failed gate is exit 75, an inconclusive one 78 (or what
// --inconclusive says). nil, nil without a gate (no Prometheus, --metrics=false, a dry run).
func (r *Run) GateRequests(ctx context.Context, what string, began, rolled time.Time, workloads []string) (*RequestGate, error) {
	g := r.requests
	if g == nil || !r.Live() || len(workloads) == 0 {
		return nil, nil
	}
	scope := metrics.Scope{Only: map[string]bool{}, Expected: workloads}
	seen := map[string]bool{}
	for _, w := range workloads {
		scope.Only[w] = true
		if ns, _, _ := strings.Cut(w, "/"); !seen[ns] {
			seen[ns] = true
			scope.Namespaces = append(scope.Namespaces, ns)
		}
	}
	res := &RequestGate{Checks: []*metrics.Report{}}
	failures := 0
	before, bytes := g.client.Queries(), g.client.Bytes()
	defer func() { res.Queries, res.Bytes = g.client.Queries()-before, g.client.Bytes()-bytes }()
	for i := 1; i <= g.o.Count; i++ {
		t := time.NewTimer(g.o.Interval)
		r.Progress.Update("%s: request metrics, check %d/%d in %s", what, i, g.o.Count, g.o.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, ctx.Err()
		case <-t.C:
		}
		now := time.Now()
		rep, err := g.client.Analyze(ctx, scope, metrics.Windows{End: now, Length: now.Sub(rolled).Round(time.Second), BaselineEnd: began, BaselineLength: g.o.Baseline}, g.o.Thresholds)
		if err != nil {
			r.Progress.Done()
			return res, cli.Errorf(cli.ExitGateFailed, "request metrics: %v", err)
		}
		res.Checks = append(res.Checks, rep)
		res.Verdict = rep.Verdict
		r.Progress.Done()
		r.Progress.Printf("%s: request metrics check %d/%d: %s", what, i, g.o.Count, summary(rep))
		if rep.Verdict == metrics.Fail {
			failures++
			if failures >= g.o.FailureLimit {
				return res, cli.Errorf(cli.ExitGateFailed, "the moved workloads' requests regressed: %s", strings.Join(rep.Failing(), "; "))
			}
		}
	}
	switch res.Verdict {
	case metrics.Fail: // failed checks below the limit, but the last one too
		return res, cli.Errorf(cli.ExitGateFailed, "the moved workloads' requests regressed: %s", strings.Join(res.Checks[len(res.Checks)-1].Failing(), "; "))
	case metrics.Inconclusive:
		switch g.o.Inconclusive {
		case "pass":
			r.Progress.Printf("%s: too few requests for a verdict; passed as --inconclusive=pass says", what)
			return res, nil
		case "fail":
			return res, cli.Errorf(cli.ExitGateFailed, "too few requests for a verdict, and --inconclusive=fail")
		}
		return res, cli.Errorf(cli.ExitInconclusive, "too few requests for a verdict (at least %g per workload in the window; a new pod needs two scrapes before Prometheus has its rate, so a longer --analysis-interval or --analysis-count may give one): halted, never taken as a pass; a rerun gates it again (--inconclusive=pass to accept it)", g.o.MinRequests)
	}
	return res, nil
}

// summary is a check on one line: each workload's success rate, as clients saw it where known.
func summary(rep *metrics.Report) string {
	var parts []string
	for _, w := range rep.Workloads {
		sr := "no requests"
		for _, v := range w.Views {
			if v.Current != nil && v.Current.Requests > 0 {
				sr = fmt.Sprintf("%.1f%% of %.0f (%s)", v.Current.SuccessRate, v.Current.Requests, v.Reporter)
			}
		}
		parts = append(parts, fmt.Sprintf("%s/%s %s %s", w.Namespace, w.Name, sr, strings.ToUpper(w.Verdict)))
	}
	return strings.Join(parts, ", ")
}
