// Package verify is `kubectl istio-upgrade verify`: the request-metrics analysis on demand, for the
// namespaces or workloads a runbook just moved.
package verify

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/metrics"
)

// Options is `verify`.
type Options struct {
	genericiooptions.IOStreams
	g *cli.Global

	Namespaces      []string
	Workloads       []string
	Since, Baseline time.Duration
	Prometheus      metrics.Where
	Inconclusive    string
	metrics.Thresholds
}

// NewCommand builds `verify`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams, g: g, Thresholds: metrics.DefaultThresholds}
	cmd := &cobra.Command{
		Use:   "verify NAMESPACE... [--workload NAMESPACE/NAME]...",
		Short: "Judge the workloads' own requests (success rate, p99) against their baseline, from Prometheus",
		Long: `Judge what the workloads' requests say, from Istio's standard metrics in Prometheus: per workload of
the namespaces given, and from both reporters (what the workload answered, what its clients saw), the
success rate (5xx and code 0, a reset or refused connection, count as failures), p99 latency and the
request volume over the last --since, against the same figures over the --baseline window before it.

A workload fails when its success rate drops more than --max-success-drop points below its baseline,
or its p99 rises above --max-latency-ratio times the baseline's; one without baseline traffic fails
below --min-success-rate. Fewer than --min-requests requests decide nothing: the verdict is
inconclusive (exit 78), never a pass, unless --inconclusive=pass|fail says otherwise.

Prometheus is found by itself (the prometheus Service of the Istio namespace, as Istio's addon installs
it, else a Service labelled as the Prometheus chart or operator label theirs) and queried through the
apiserver's service proxy (the right: services/proxy get), so nothing is port-forwarded; or name it
with --prometheus-service NS/NAME:PORT, or --prometheus URL.

Exit codes: 0 every workload passed; 75 one failed; 78 inconclusive. This is what a shell runbook runs
between steps, or what Argo Rollouts (job metric provider) and Kargo run as a verification Job.`,
		Example: `  # After migrate-ns shop: did shop's workloads keep their success rate and latency?
  kubectl istio-upgrade verify shop --since 2m

  # Two namespaces, one workload only, as JSON with the queries used
  kubectl istio-upgrade verify shop bookinfo --workload shop/web -o json

  # A Prometheus of the operator, through the apiserver
  kubectl istio-upgrade verify shop --prometheus-service monitoring/prometheus-operated:9090`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Namespaces = args
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Workloads, "workload", nil, "Judge only this workload (NAMESPACE/NAME, repeatable)")
	f.DurationVar(&o.Since, "since", 2*time.Minute, "The window judged, ending now (at least twice Prometheus' scrape interval)")
	f.DurationVar(&o.Baseline, "baseline", 10*time.Minute, "The baseline window, just before --since")
	o.Prometheus.AddFlags(f)
	f.StringVar(&o.Inconclusive, "inconclusive", "halt", "What too few requests mean: halt (exit 78), pass, or fail")
	metrics.AddThresholdFlags(f, &o.Thresholds)
	return cmd
}

// Validate checks flags without I/O.
func (o *Options) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if o.Since < 10*time.Second || o.Baseline < 10*time.Second {
		return cli.UsageErrorf("--since and --baseline must be at least 10s (and at least twice Prometheus' scrape interval to mean anything)")
	}
	for _, err := range []error{metrics.ValidateInconclusive(o.Inconclusive), o.Prometheus.Validate(), o.Thresholds.Validate()} {
		if err != nil {
			return cli.UsageErrorf("%v", err)
		}
	}
	for _, w := range o.Workloads {
		if ns, name, ok := strings.Cut(w, "/"); !ok || ns == "" || name == "" {
			return cli.UsageErrorf("--workload %q: want NAMESPACE/NAME", w)
		}
	}
	return nil
}

// Run finds Prometheus, analyses and reports; the exit code is the verdict.
func (o *Options) Run(ctx context.Context) error {
	c, err := o.g.Clients()
	if err != nil {
		return err
	}
	var expected []string
	for _, ns := range o.Namespaces {
		if _, err := c.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			return cli.BadInputf("namespace %q: %v", ns, err)
		}
		deps, err := c.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, d := range deps.Items {
			expected = append(expected, ns+"/"+d.Name)
		}
	}
	src, err := o.Prometheus.Locate(ctx, c.Kube, o.g.IstioNamespace)
	if err != nil {
		return err
	}
	if src == nil {
		return cli.BadInputf("%s", metrics.NotFound(o.g.IstioNamespace))
	}
	scope := metrics.Scope{Namespaces: o.Namespaces, Expected: expected}
	if len(o.Workloads) > 0 {
		scope.Only = map[string]bool{}
		for _, w := range o.Workloads {
			scope.Only[w] = true
		}
	}
	mc := &metrics.Client{Kube: c.Kube, Source: *src}
	rep, err := mc.Analyze(ctx, scope, metrics.Before(time.Now(), o.Since, o.Baseline), o.Thresholds)
	if err != nil {
		return err
	}
	if o.g.Output != cli.OutputTable {
		if err := cli.WriteDocument(o.Out, o.g.Output, rep); err != nil {
			return err
		}
	} else {
		WriteTable(o.Out, rep)
	}
	return o.exit(rep)
}

// exit maps the verdict to the exit-code contract.
func (o *Options) exit(rep *metrics.Report) error {
	v := rep.Verdict
	if v == metrics.Inconclusive && o.Inconclusive != "halt" {
		v = o.Inconclusive
	}
	switch v {
	case metrics.Fail:
		bad := rep.Failing()
		if len(bad) == 0 {
			bad = append(bad, "too few requests, and --inconclusive=fail")
		}
		return cli.Errorf(cli.ExitGateFailed, "the request metrics fail:\n  %s", strings.Join(bad, "\n  "))
	case metrics.Inconclusive:
		return cli.Errorf(cli.ExitInconclusive, "too few requests for a verdict (at least %g in %s per workload): nothing was judged a pass", o.MinRequests, o.Since)
	}
	return nil
}

// WriteTable prints one row per workload and reporter.
func WriteTable(w io.Writer, rep *metrics.Report) {
	fmt.Fprintf(w, "Request metrics from %s: last %s against the %s before\n", rep.Prometheus, rep.Window, rep.Baseline)
	rows := [][]string{}
	fig := func(f *metrics.Figures) (string, string, string) {
		if f == nil {
			return "0", "-", "-"
		}
		p99 := "-"
		if f.P99 >= 0 {
			p99 = fmt.Sprintf("%.1f", f.P99)
		}
		return fmt.Sprintf("%.0f", f.Requests), fmt.Sprintf("%.2f%%", f.SuccessRate), p99
	}
	for _, wl := range rep.Workloads {
		if len(wl.Views) == 0 {
			rows = append(rows, []string{wl.Namespace + "/" + wl.Name, "-", "0", "-", "-", "-", "-", strings.ToUpper(wl.Verdict)})
		}
		for i, v := range wl.Views {
			n, sr, p99 := fig(v.Current)
			_, bsr, bp99 := fig(v.Baseline)
			verdict := ""
			if i == 0 {
				verdict = strings.ToUpper(wl.Verdict)
			}
			rows = append(rows, []string{wl.Namespace + "/" + wl.Name, v.Reporter, n, sr, bsr, p99, bp99, verdict})
		}
	}
	_ = cli.WriteTable(w, []string{"workload", "reporter", "requests", "success", "baseline", "p99 ms", "baseline p99", "verdict"}, rows)
	for _, wl := range rep.Workloads {
		for _, r := range wl.Reasons {
			fmt.Fprintf(w, "%s/%s: %s\n", wl.Namespace, wl.Name, r)
		}
	}
	fmt.Fprintf(w, "Verdict: %s\n", strings.ToUpper(rep.Verdict))
}
