package metrics

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/version"
)

// AddThresholdFlags binds the thresholds' flags (verify's and every step's request gate).
func AddThresholdFlags(f *pflag.FlagSet, th *Thresholds) {
	f.Float64Var(&th.MaxSuccessDrop, "max-success-drop", th.MaxSuccessDrop, "Percentage points a workload's success rate may fall below its baseline")
	f.Float64Var(&th.MinSuccessRate, "min-success-rate", th.MinSuccessRate, "Success rate (percent) a workload without baseline traffic must reach")
	f.Float64Var(&th.MaxLatencyRatio, "max-latency-ratio", th.MaxLatencyRatio, "How many times its baseline p99 a workload's p99 may reach")
	f.Float64Var(&th.MinRequests, "min-requests", th.MinRequests, "Requests in the window below which there is no verdict (inconclusive)")
}

// Validate checks the thresholds as flags.
func (th Thresholds) Validate() error {
	if th.MinRequests < 1 || th.MaxLatencyRatio < 1 || th.MaxSuccessDrop < 0 || th.MinSuccessRate < 0 || th.MinSuccessRate > 100 {
		return fmt.Errorf("--min-requests must be at least 1, --max-latency-ratio at least 1, --max-success-drop not negative, --min-success-rate within 0..100")
	}
	return nil
}

// Thresholds decide a workload's verdict. Defaults are Flagger's and the runbooks' (seed 004: error
// rate and p99 do not regress).
type Thresholds struct {
	// MaxSuccessDrop is how many percentage points the success rate may fall below the baseline's.
	MaxSuccessDrop float64
	// MinSuccessRate (percent) judges a workload that had no baseline traffic.
	MinSuccessRate float64
	// MaxLatencyRatio is how far p99 may rise above the baseline's (1.5: 50% more).
	MaxLatencyRatio float64
	// MinRequests in the window below which the figures decide nothing (inconclusive).
	MinRequests float64
}

// DefaultThresholds are the flags' defaults.
var DefaultThresholds = Thresholds{MaxSuccessDrop: 1, MinSuccessRate: 99, MaxLatencyRatio: 1.5, MinRequests: 10}

// latencyFloor (ms): a p99 rise smaller than this is noise, whatever its ratio (sub-millisecond
// baselines would otherwise fail on scheduling jitter).
const latencyFloor = 5.0

// Verdicts.
const (
	Pass         = "pass"
	Fail         = "fail"
	Inconclusive = "inconclusive"
)

// Figures are one reporter's view of one workload over a window.
type Figures struct {
	Requests    float64 `json:"requests"`
	SuccessRate float64 `json:"successRate"` // percent; 5xx and code 0 (reset, refused) fail
	P99         float64 `json:"p99Ms"`       // -1: no latency recorded
}

// View is a reporter's figures now and in the baseline window.
type View struct {
	// Reporter is whose figures these are: destination, what the workload answered; source, what its
	// clients saw of it; outbound, what the workload's own proxy saw of the services it called (a
	// gateway's only view, and a new proxy that cannot route shows there).
	Reporter string   `json:"reporter"`
	Baseline *Figures `json:"baseline,omitempty"`
	Current  *Figures `json:"current,omitempty"`
}

// Workload is the verdict on one workload.
type Workload struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Views     []View `json:"views"`
	// ByProxy splits the current window by the proxies' version (istio_build's tag) while a workload
	// runs two: the new proxies compared with the old ones.
	ByProxy []ProxyFigures `json:"byProxy,omitempty"`
	Verdict string         `json:"verdict"`
	Reasons []string       `json:"reasons,omitempty"`
}

// ProxyFigures are one view's figures of the workload's pods on one proxy version.
type ProxyFigures struct {
	Reporter string `json:"reporter"`
	Tag      string `json:"tag"`
	Figures
}

// Report is one analysis.
type Report struct {
	Prometheus string     `json:"prometheus"`
	Window     string     `json:"window"`
	Baseline   string     `json:"baseline"`
	At         time.Time  `json:"at"`
	Thresholds Thresholds `json:"thresholds"`
	Workloads  []Workload `json:"workloads"`
	Verdict    string     `json:"verdict"`
	Queries    []string   `json:"queries"`
}

// Scope is what to judge: workloads by namespace; Only, when set, keeps those named NS/NAME.
// Expected are workloads known to exist (from the cluster): one without any request is inconclusive,
// never silently absent.
type Scope struct {
	Namespaces []string
	Only       map[string]bool
	Expected   []string
}

type key struct{ ns, name string }

// Windows are the window judged (Length, ending at End) and the baseline it is judged against
// (BaselineLength, ending at BaselineEnd: before the unit began).
type Windows struct {
	End            time.Time
	Length         time.Duration
	BaselineEnd    time.Time
	BaselineLength time.Duration
}

// Before is the window of length ending at end, against the baseline just before it (verify's).
func Before(end time.Time, length, baseline time.Duration) Windows {
	return Windows{End: end, Length: length, BaselineEnd: end.Add(-length), BaselineLength: baseline}
}

// Analyze judges every workload of scope on the window against its baseline, from both reporters.
func (c *Client) Analyze(ctx context.Context, scope Scope, win Windows, th Thresholds) (*Report, error) {
	window, baseline := win.Length, win.BaselineLength
	rep := &Report{Prometheus: c.Source.String(), Window: window.String(), Baseline: baseline.String(), At: win.End.UTC(), Thresholds: th, Workloads: []Workload{}}
	nsRe := regexAlt(scope.Namespaces)
	type fig struct{ cur, base *Figures }
	views := map[key]map[string]*fig{}
	for _, reporter := range views3 {
		for _, w := range []struct {
			base bool
			rng  string
			at   time.Time
		}{{false, promDuration(window), win.End}, {true, promDuration(baseline), win.BaselineEnd}} {
			side, by := "destination", reporter
			if reporter == Outbound {
				side, by = "source", "source"
			}
			sel := fmt.Sprintf(`reporter=%q,%s_workload_namespace=~%q`, by, side, nsRe)
			by = side + "_workload_namespace, " + side + "_workload"
			qTotal := fmt.Sprintf(`sum by (%s) (increase(istio_requests_total{%s}[%s]))`, by, sel, w.rng)
			qFailed := fmt.Sprintf(`sum by (%s) (increase(istio_requests_total{%s,response_code=~"5..|0"}[%s]))`, by, sel, w.rng)
			qP99 := fmt.Sprintf(`histogram_quantile(0.99, sum by (%s, le) (rate(istio_request_duration_milliseconds_bucket{%s}[%s])))`, by, sel, w.rng)
			stamp := " @ " + w.at.UTC().Format(time.RFC3339)
			rep.Queries = append(rep.Queries, qTotal+stamp, qFailed+stamp, qP99+stamp)
			total, err := c.Query(ctx, qTotal, w.at)
			if err != nil {
				return nil, err
			}
			failed, err := c.Query(ctx, qFailed, w.at)
			if err != nil {
				return nil, err
			}
			p99, err := c.Query(ctx, qP99, w.at)
			if err != nil {
				return nil, err
			}
			get := func(k key) *Figures {
				if views[k] == nil {
					views[k] = map[string]*fig{}
				}
				if views[k][reporter] == nil {
					views[k][reporter] = &fig{}
				}
				f := views[k][reporter]
				p := &f.cur
				if w.base {
					p = &f.base
				}
				if *p == nil {
					*p = &Figures{SuccessRate: 100, P99: -1}
				}
				return *p
			}
			for _, s := range total {
				f := get(keyOf(s, side))
				f.Requests = s.Value
			}
			for _, s := range failed {
				f := get(keyOf(s, side))
				if f.Requests > 0 {
					f.SuccessRate = 100 * (1 - s.Value/f.Requests)
				}
			}
			for _, s := range p99 {
				if !math.IsNaN(s.Value) && !math.IsInf(s.Value, 0) {
					get(keyOf(s, side)).P99 = s.Value
				}
			}
		}
	}
	split, err := c.byProxy(ctx, nsRe, window, win.End, rep)
	if err != nil {
		return nil, err
	}
	for _, e := range scope.Expected {
		ns, name, _ := strings.Cut(e, "/")
		if views[key{ns, name}] == nil {
			views[key{ns, name}] = map[string]*fig{}
		}
	}
	keys := make([]key, 0, len(views))
	for k := range views {
		if k.name == "" || k.name == "unknown" || (scope.Only != nil && !scope.Only[k.ns+"/"+k.name]) {
			continue
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ns+"/"+keys[i].name < keys[j].ns+"/"+keys[j].name })
	rep.Verdict = Pass
	for _, k := range keys {
		w := Workload{Namespace: k.ns, Name: k.name, Views: []View{}}
		judged := false
		for _, reporter := range views3 {
			f := views[k][reporter]
			if f == nil {
				continue
			}
			w.Views = append(w.Views, View{Reporter: reporter, Baseline: f.base, Current: f.cur})
			verdict, why := judge(f.cur, f.base, th)
			switch verdict {
			case Fail:
				w.Reasons = append(w.Reasons, reporter+": "+why)
				w.Verdict = Fail
			case Pass:
				judged = true
			}
		}
		w.ByProxy = split[k]
		if why := newProxiesRegressed(w.ByProxy, th); why != "" {
			w.Reasons = append(w.Reasons, why)
			w.Verdict = Fail
		}
		if w.Verdict == "" {
			if judged {
				w.Verdict = Pass
			} else {
				w.Verdict = Inconclusive
				w.Reasons = append(w.Reasons, fmt.Sprintf("fewer than %g requests in %s: no verdict", th.MinRequests, window))
			}
		}
		rep.Workloads = append(rep.Workloads, w)
		rep.Verdict = worse(rep.Verdict, w.Verdict)
	}
	if len(rep.Workloads) == 0 {
		rep.Verdict = Inconclusive
	}
	return rep, nil
}

// judge is one reporter's verdict: too few requests decide nothing; with a baseline, the success
// rate may drop MaxSuccessDrop points and p99 rise MaxLatencyRatio times; without one, the success
// rate must reach MinSuccessRate.
func judge(cur, base *Figures, th Thresholds) (string, string) {
	if cur == nil || cur.Requests < th.MinRequests {
		return Inconclusive, ""
	}
	if base != nil && base.Requests >= th.MinRequests {
		if drop := base.SuccessRate - cur.SuccessRate; drop > th.MaxSuccessDrop {
			return Fail, fmt.Sprintf("success rate %.1f%% (baseline %.1f%%: down %.1f points, at most %g allowed) over %.0f requests", cur.SuccessRate, base.SuccessRate, drop, th.MaxSuccessDrop, cur.Requests)
		}
		if base.P99 > 0 && cur.P99 > th.MaxLatencyRatio*base.P99 && cur.P99-base.P99 > latencyFloor {
			return Fail, fmt.Sprintf("p99 %.1f ms (baseline %.1f ms: %.1fx, at most %gx allowed)", cur.P99, base.P99, cur.P99/base.P99, th.MaxLatencyRatio)
		}
		return Pass, ""
	}
	if cur.SuccessRate < th.MinSuccessRate {
		return Fail, fmt.Sprintf("success rate %.1f%% over %.0f requests, below %g%% (no baseline traffic to compare with)", cur.SuccessRate, cur.Requests, th.MinSuccessRate)
	}
	return Pass, ""
}

func worse(a, b string) string {
	rank := map[string]int{Pass: 0, Inconclusive: 1, Fail: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// keyOf is the workload a sample is about, on its destination or source side.
func keyOf(s Sample, side string) key {
	return key{s.Labels[side+"_workload_namespace"], s.Labels[side+"_workload"]}
}

// Outbound is the view of a workload as a client: the requests its own proxy sent (reporter source,
// by source workload).
const Outbound = "outbound"

// views3 are the views Analyze takes of every workload.
var views3 = []string{"destination", "source", Outbound}

// regexAlt matches exactly one of values (quoted for PromQL's RE2).
func regexAlt(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = regexpQuote(v)
	}
	return strings.Join(q, "|")
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// promDuration spells d as PromQL does (whole seconds at least).
func promDuration(d time.Duration) string {
	return model.Duration(d.Truncate(time.Second)).String()
}

// RequestsByWorkload is each workload's requests (NAMESPACE/NAME) over window ending at at: the larger
// of what it answered and what it sent, the two views a gate can judge it on (precheck: will the
// gates have data?).
func (c *Client) RequestsByWorkload(ctx context.Context, window time.Duration, at time.Time) (map[string]float64, error) {
	out := map[string]float64{}
	for _, side := range []string{"destination", "source"} {
		q := fmt.Sprintf(`sum by (%[1]s_workload_namespace, %[1]s_workload) (increase(istio_requests_total{reporter=%[2]q}[%[3]s]))`, side, side, promDuration(window))
		samples, err := c.Query(ctx, q, at)
		if err != nil {
			return nil, err
		}
		for _, s := range samples {
			k := keyOf(s, side)
			if k.name == "" || k.name == "unknown" {
				continue
			}
			out[k.ns+"/"+k.name] = max(out[k.ns+"/"+k.name], s.Value)
		}
	}
	return out, nil
}

// byProxy is the current window split by the proxy version of the pods that reported it: what each
// workload answered (destination) and sent (outbound), joined with istio_build on the scraped pod.
// Only workloads whose pods run two versions or more are kept.
func (c *Client) byProxy(ctx context.Context, nsRe string, window time.Duration, at time.Time, rep *Report) (map[key][]ProxyFigures, error) {
	out := map[key][]ProxyFigures{}
	// Every pod that reported in the window, deleted ones included (over the window, not at its end);
	// one tag per scrape target, so a StatefulSet pod reborn under its old name on another version
	// (another IP) never makes the join ambiguous.
	build := fmt.Sprintf(`topk by (namespace, pod, instance) (1, max_over_time(istio_build{component="proxy",namespace=~%q}[%s]))`, nsRe, promDuration(window))
	for _, view := range []string{"destination", Outbound} {
		side := "destination"
		if view == Outbound {
			side = "source"
		}
		sel := fmt.Sprintf(`reporter=%q,%s_workload_namespace=~%q`, side, side, nsRe)
		by := side + "_workload_namespace, " + side + "_workload, tag"
		figs := map[[3]string]*ProxyFigures{}
		for _, failed := range []bool{false, true} {
			code := ""
			if failed {
				code = `,response_code=~"5..|0"`
			}
			q := fmt.Sprintf(`sum by (%s) (increase(istio_requests_total{%s%s}[%s]) * on (namespace, pod, instance) group_left(tag) %s)`, by, sel, code, promDuration(window), build)
			rep.Queries = append(rep.Queries, q+" @ "+at.UTC().Format(time.RFC3339))
			samples, err := c.Query(ctx, q, at)
			if err != nil {
				return nil, err
			}
			for _, smp := range samples {
				k := keyOf(smp, side)
				id := [3]string{k.ns, k.name, smp.Labels["tag"]}
				if figs[id] == nil {
					if failed {
						continue
					}
					figs[id] = &ProxyFigures{Reporter: view, Tag: smp.Labels["tag"], Figures: Figures{SuccessRate: 100, P99: -1}}
				}
				if !failed {
					figs[id].Requests = smp.Value
				} else if figs[id].Requests > 0 {
					figs[id].SuccessRate = 100 * (1 - smp.Value/figs[id].Requests)
				}
			}
		}
		tags := map[key]map[string]bool{}
		for id := range figs {
			k := key{id[0], id[1]}
			if tags[k] == nil {
				tags[k] = map[string]bool{}
			}
			tags[k][id[2]] = true
		}
		for id, f := range figs {
			if k := (key{id[0], id[1]}); len(tags[k]) > 1 && id[2] != "" {
				out[k] = append(out[k], *f)
			}
		}
	}
	for k := range out {
		sort.Slice(out[k], func(i, j int) bool {
			a, b := out[k][i], out[k][j]
			return a.Reporter < b.Reporter || (a.Reporter == b.Reporter && a.Tag < b.Tag)
		})
	}
	return out, nil
}

// newProxiesRegressed says why a workload's newest proxies do worse than its older ones in one view:
// a regression confined to the new proxies, named even when the workload's total still passes.
func newProxiesRegressed(figs []ProxyFigures, th Thresholds) string {
	byView := map[string][]ProxyFigures{}
	for _, f := range figs {
		if f.Requests >= th.MinRequests {
			byView[f.Reporter] = append(byView[f.Reporter], f)
		}
	}
	for _, view := range views3 {
		fs := byView[view]
		if len(fs) < 2 {
			continue
		}
		newest := fs[0]
		for _, f := range fs[1:] {
			if newerTag(f.Tag, newest.Tag) {
				newest = f
			}
		}
		for _, old := range fs {
			if old.Tag == newest.Tag {
				continue
			}
			if drop := old.SuccessRate - newest.SuccessRate; drop > th.MaxSuccessDrop {
				return fmt.Sprintf("%s: confined to the new proxies: %s at %.1f%% of %.0f requests, %s at %.1f%% of %.0f (down %.1f points, at most %g allowed)",
					view, newest.Tag, newest.SuccessRate, newest.Requests, old.Tag, old.SuccessRate, old.Requests, drop, th.MaxSuccessDrop)
			}
		}
	}
	return ""
}

// newerTag compares proxy version tags (1.31.0 > 1.30.2); tags that do not parse compare as strings.
func newerTag(a, b string) bool {
	va, errA := version.ParseGeneric(a)
	vb, errB := version.ParseGeneric(b)
	if errA != nil || errB != nil {
		return a > b
	}
	return vb.LessThan(va)
}
