package checks

import (
	"fmt"
	"sort"
	"strings"
)

// RequestData is what precheck learned about the data the request gates will judge (nil: not asked,
// --metrics=false).
type RequestData struct {
	// Prometheus names the one found; empty when none was found, with Error saying why (or why it did
	// not answer).
	Prometheus string
	Error      string
	// Requests are each workload's requests (NAMESPACE/NAME) over Window, the larger of what it answered
	// and what it sent: the gates judge either.
	Requests    map[string]float64
	Window      string
	MinRequests float64
	// TelemetryOff are Telemetry resources that turn metrics off ("NAMESPACE/NAME: what"), mesh-wide when
	// in the Istio namespace.
	TelemetryOff []string
}

// RequestMetrics says whether the request gates (migrate-ns, shift, migrate-gw, tag-move --restart)
// will have data: a Prometheus found and answering, Istio's request metrics present, telemetry not
// turned off, and which sidecar workloads carry too few requests for a verdict (their gates halt as
// inconclusive, exit 78).
func RequestMetrics(in *Input) []Finding {
	d := in.Requests
	if d == nil || in.Snapshot == nil {
		return nil
	}
	var out []Finding
	const gates = "the request gates of migrate-ns, shift, migrate-gw and tag-move --restart"
	if d.Prometheus == "" || d.Error != "" {
		msg := d.Error
		if d.Prometheus != "" {
			msg = d.Prometheus + " did not answer: " + d.Error
		}
		return append(out, Finding{Severity: Warning, Code: "METRICS_UNAVAILABLE", Object: "prometheus",
			Message: msg + "; " + gates + " will see the control plane only",
			Fix:     "install Istio's Prometheus addon, or name yours with --prometheus-service NS/NAME:PORT (or --prometheus URL), here and on the steps; --require-metrics makes a step refuse without it"})
	}
	for _, t := range d.TelemetryOff {
		out = append(out, Finding{Severity: Warning, Code: "TELEMETRY_METRICS_OFF", Object: "telemetry/" + strings.SplitN(t, ":", 2)[0],
			Message: "Telemetry " + t + ": the proxies it selects report no request metrics, so " + gates + " get no data from them",
			Fix:     "turn the metrics back on for the upgrade, or run those steps with --metrics=false knowing they gate on the control plane only"})
	}
	low := map[string][]string{}
	total := 0.0
	for _, w := range in.Snapshot.Workloads {
		if !sidecarInjected(w.InjectedRevisions) {
			continue
		}
		n := d.Requests[w.Namespace+"/"+w.Name]
		total += n
		if n < d.MinRequests {
			low[w.Namespace] = append(low[w.Namespace], w.Name)
		}
	}
	if total == 0 && len(d.Requests) == 0 {
		return append(out, Finding{Severity: Warning, Code: "METRICS_MISSING", Object: "prometheus",
			Message: fmt.Sprintf("%s has no istio_requests_total for any workload over the last %s: telemetry may be off, or it does not scrape the proxies; %s will halt as inconclusive (exit 78)", d.Prometheus, d.Window, gates),
			Fix:     "check that Prometheus scrapes the proxies (pods annotated prometheus.io/scrape, port 15020, /stats/prometheus) and that metrics are on"})
	}
	nss := make([]string, 0, len(low))
	for ns := range low {
		nss = append(nss, ns)
	}
	sort.Strings(nss)
	for _, ns := range nss {
		ws := low[ns]
		sort.Strings(ws)
		out = append(out, Finding{Severity: Info, Code: "METRICS_LOW_TRAFFIC", Object: "namespace/" + ns,
			Message: fmt.Sprintf("%d workload(s) carried fewer than %g requests over the last %s (%s): a batch with them halts as inconclusive (exit 78), never a pass", len(ws), d.MinRequests, d.Window, strings.Join(ws, ", ")),
			Fix:     "send them traffic during the move, or accept it knowingly: --inconclusive=pass (or --metrics=false) on migrate-ns"})
	}
	return out
}

// sidecarInjected says a workload's pods run a sidecar (ambient pods report through ztunnel and
// waypoints, which these metrics do not cover).
func sidecarInjected(revs []string) bool {
	for _, r := range revs {
		if r != "" {
			return true
		}
	}
	return false
}
