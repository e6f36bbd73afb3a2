// Package precheck is `kubectl istio-upgrade precheck`: everything the runbooks check before and
// during an upgrade, as findings with severity, a stable code and the fix, and an exit code.
package precheck

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/checks"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/metrics"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Options is `precheck`.
type Options struct {
	genericiooptions.IOStreams
	g *cli.Global

	Revision      string
	FailOn        string
	AllNamespaces bool
	SaveSnapshot  string
	Analysis      bool
	Metrics       bool
	Prometheus    metrics.Where

	namespace string
	failOn    checks.Severity
	steps     []step.Registration
}

// Report is the document printed with -o json|yaml.
type Report struct {
	cli.TypeMeta `json:",inline"`
	Revision     string           `json:"revision,omitempty"`
	FailOn       string           `json:"failOn"`
	Blocking     bool             `json:"blocking"`
	Counts       map[string]int   `json:"counts"`
	Findings     []checks.Finding `json:"findings"`
	// Skipped names the checks that could not run (e.g. without read permissions).
	Skipped []string `json:"skipped"`
	// Steps says, per mutating step, whether this identity may run it here (empty without read access).
	Steps []StepAccess `json:"steps"`
}

// Command builds `precheck` with the registered mutating steps, whose rights it checks.
func Command(steps []step.Registration) cli.CommandFactory {
	return func(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
		return newCommand(g, streams, steps)
	}
}

func newCommand(g *cli.Global, streams genericiooptions.IOStreams, steps []step.Registration) *cobra.Command {
	o := &Options{IOStreams: streams, g: g, steps: steps}
	cmd := &cobra.Command{
		Use:   "precheck",
		Short: "Check everything that would make the upgrade unsafe",
		Long: `Run every check the upgrade runbooks ask for before (and during) a canary upgrade, and report each
problem as a finding: severity, a stable code, the object, what is wrong and how to fix it.

Checks: Kubernetes version against each Istio version's supported range; the permissions to read the
mesh (PERMISSIONS_MISSING) and, per mutating step, to run it here, asked in the namespaces that step
acts on, with the steps it runs inside itself (tag-move pins gateways with migrate-gw), and flags that
need more on lines of their own (canary-gw --helm, tag-move --restart) (STEP_NOT_PERMITTED, and steps[]
in -o json); each istiod ready and not single-replica; the target revision (--revision) installed with
its injector and ConfigMaps; version skew between revisions; Istio CRDs; one root of trust across
revisions; injector webhooks that overlap (IST0139) and tags or the default validator pointing at a
missing revision; namespace labels (both labels IST0123, unknown revision, legacy istio-injection, pods
on another revision); proxies not SYNCED, disconnected or too far behind; zero-downtime guardrails
(single replica, Recreate, maxUnavailable, readiness probes, PDBs, HPA minReplicas, and workloads serving
a Service with no preStop hook, whose pods stop before endpoints stop sending to them:
NO_GRACEFUL_SHUTDOWN); gateways (one
replica, Services pinning a revision, Gateway selectors matching nothing); Gateway API gateways that
follow a tag, which istiod re-deploys all at once when the tag moves (GATEWAY_FOLLOWS_TAG, with the
migrate-gw command that pins one, gated); Helm vs istioctl; Gateway API CRD versions (IST0156, IST0172,
as istioctl x precheck reports them); version rules: a target more than one minor ahead of what serves
now (TARGET_SKIPS_MINOR; the mutating steps refuse it unless --allow-version-skip), proxies newer than
their istiod (PROXY_AHEAD_OF_ISTIOD) and known skew bugs between a proxy and the istiod it meets, with
the releases they apply to (SKEW_HAZARD); ztunnel and istio-cni ahead of an istiod or more than one
minor behind it (AMBIENT_AHEAD_OF_ISTIOD, AMBIENT_VERSION_SKEW); whether the request gates will have
data: Prometheus found and answering (METRICS_UNAVAILABLE), Istio's request metrics present
(METRICS_MISSING), Telemetry resources that turn metrics off (TELEMETRY_METRICS_OFF), and sidecar
workloads with fewer requests over the last 5 minutes than a verdict needs, whose batches would halt as
inconclusive (METRICS_LOW_TRAFFIC).

Istio's configuration analysis: every analyzer istioctl analyze runs, against the live cluster (all
namespaces, or -n), each message a finding with its IST code (IST0101 a reference to something missing,
IST0106 a schema error, …), the object, its level as our severity and a fix where one is known. It runs
as the --revision's istiod will see the cluster (configuration labelled istio.io/rev for another
revision is invisible to it; its own mesh config), else as the default revision's: what the new
version rejects shows before any workload moves. IST0123, IST0139, IST0141 and IST0142 are reported by
our own checks. The analyzers link most of istiod, so they run in the companion executable
istio-upgrade-analyze installed beside the plugin; --analysis=false skips them.

Exits 79 when a finding at or above --fail-on exists, 0 otherwise.`,
		Example: `  # Before installing anything: is the mesh healthy?
  kubectl istio-upgrade precheck

  # After installing the new revision 1-31: is it ready to take workloads?
  kubectl istio-upgrade precheck --revision 1-31

  # Stricter gate for CI, and keep the pre-upgrade record the runbooks ask for
  kubectl istio-upgrade precheck --revision 1-31 --fail-on warning --save-snapshot pre-upgrade.json

  # Only one namespace's workloads
  kubectl istio-upgrade precheck -n payments -o json

  # Just Istio's analyzer messages, as the new revision will see the configuration
  kubectl istio-upgrade precheck --revision 1-31 -o json | jq '.findings[] | select(.code | startswith("IST"))'`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.Revision, "revision", "", "The revision being upgraded to; checks that it is installed and ready")
	cmd.Flags().StringVar(&o.FailOn, "fail-on", "error", "Exit 79 when a finding of this severity or worse exists: error or warning")
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "All namespaces (the default unless -n is given)")
	cmd.Flags().BoolVar(&o.Analysis, "analysis", true, "Run Istio's configuration analysis (istioctl analyze's analyzers) as the --revision's istiod, else the default revision's, sees the cluster")
	cmd.Flags().StringVar(&o.SaveSnapshot, "save-snapshot", "", "Write the mesh snapshot (the status document) to this file, readable by its owner only (a symbolic link there is refused)")
	cmd.Flags().BoolVar(&o.Metrics, "metrics", true, "Check that the request gates will have data: Prometheus found and answering, Istio's request metrics, telemetry on, traffic per workload")
	o.Prometheus.AddFlags(cmd.Flags())
	return cmd
}

// Validate checks flags (no I/O).
func (o *Options) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	switch o.FailOn {
	case "error", "warning":
		o.failOn = checks.Severity(o.FailOn)
	default:
		return cli.UsageErrorf("--fail-on must be error or warning, not %q", o.FailOn)
	}
	if err := o.Prometheus.Validate(); err != nil {
		return cli.UsageErrorf("%v", err)
	}
	ns, err := o.g.NamespaceScope(o.AllNamespaces)
	o.namespace = ns
	return err
}

// Run collects, checks, prints and sets the exit code.
func (o *Options) Run(ctx context.Context) error {
	c, err := o.g.Clients()
	if err != nil {
		return err
	}
	report := Report{TypeMeta: cli.NewTypeMeta("PrecheckReport"), Revision: o.Revision, FailOn: o.FailOn,
		Findings: []checks.Finding{}, Skipped: []string{}, Counts: map[string]int{}, Steps: []StepAccess{}}
	in := &checks.Input{Target: o.Revision}
	missing, readMissing, err := missingPermissions(ctx, c, o.g.IstioNamespace)
	if err != nil {
		return fmt.Errorf("checking permissions: %w", err)
	}
	// With read access, the rights to change things are judged per step, in the namespaces each acts on
	// (a team with namespaced Roles is not told it lacks cluster-wide rights it never needs).
	in.MissingPermissions = readMissing
	readBlocked := len(readMissing) > 0
	if readBlocked {
		in.MissingPermissions = missing
	}
	if readBlocked {
		// Without read access every other check would be a stack of API errors: report what is missing.
		report.Findings = checks.Permissions(in)
		for _, ch := range checks.All[1:] {
			report.Skipped = append(report.Skipped, ch.Name)
		}
	} else {
		opts := o.g.ReadOptions(o.namespace, true)
		raw, err := mesh.List(ctx, c, opts)
		if err != nil {
			return err
		}
		in.Raw = raw
		in.Snapshot = mesh.Build(*raw)
		if o.namespace != "" && len(in.Snapshot.Namespaces) == 0 {
			return cli.BadInputf("namespace %q not found", o.namespace)
		}
		// Istio's analysis runs in its companion process while the rest is collected.
		type analysis struct {
			ms  []istio.AnalysisMessage
			err error
		}
		analysed := make(chan analysis, 1)
		// An analyzer informer that may not list its kind never syncs: without the rights the analysis
		// would only end at its 2-minute bound. Asked first, it is refused at once, naming them.
		var cannot []kube.Access
		if o.Analysis {
			cannot, _ = kube.Missing(ctx, c.Kube, analysisAccess(o.namespace, o.g.IstioNamespace))
		}
		if len(cannot) > 0 {
			var names []string
			for _, a := range cannot {
				names = append(names, a.String())
			}
			analysed <- analysis{err: fmt.Errorf("this identity may not %s, which Istio's analyzers read (docs/rbac.md)", strings.Join(names, ", "))}
		} else if o.Analysis {
			go func() {
				ms, err := mesh.Analyze(ctx, kube.FlagArgs(o.g.ConfigFlags), in.Snapshot, raw, o.namespace, o.Revision)
				analysed <- analysis{ms, err}
			}()
		} else {
			report.Skipped = append(report.Skipped, "analysis")
			analysed <- analysis{}
		}
		if err := collect(ctx, c, in, opts); err != nil {
			return err
		}
		if o.Metrics {
			in.Requests = o.requestData(ctx, c)
		} else {
			report.Skipped = append(report.Skipped, "request-metrics")
		}
		a := <-analysed
		if in.Analysis = a.ms; a.err != nil {
			in.AnalysisError = a.err.Error()
		}
		report.Findings = checks.Run(in, checks.All)
		if report.Steps, err = CheckSteps(ctx, c, o.steps, in.Snapshot, o.g.IstioNamespace); err != nil {
			return fmt.Errorf("checking permissions: %w", err)
		}
		for _, st := range report.Steps {
			if !st.Allowed {
				report.Findings = append(report.Findings, checks.Finding{Severity: checks.Warning, Code: "STEP_NOT_PERMITTED", Object: "step/" + st.Step,
					Message: "this identity may not run " + st.Step + " here: missing " + strings.Join(st.Missing, ", "),
					Fix:     "grant them (docs/rbac.md), or let someone who holds them run this step"})
			}
		}
		sort.SliceStable(report.Findings, func(i, j int) bool { return report.Findings[i].Severity.Rank() > report.Findings[j].Severity.Rank() })
		if o.SaveSnapshot != "" {
			if err := saveSnapshot(o.SaveSnapshot, in.Snapshot); err != nil {
				return err
			}
			fmt.Fprintf(o.ErrOut, "Saved the mesh snapshot to %s\n", o.SaveSnapshot)
		}
	}
	for _, f := range report.Findings {
		report.Counts[string(f.Severity)]++
		if f.Severity.Rank() >= o.failOn.Rank() {
			report.Blocking = true
		}
	}
	if o.g.Output != cli.OutputTable {
		if err := cli.WriteDocument(o.Out, o.g.Output, report); err != nil {
			return err
		}
	} else if err := writeTable(o.Out, report); err != nil {
		return err
	}
	if report.Blocking {
		return cli.Errorf(cli.ExitPrecheck, "precheck found %d error(s) and %d warning(s); blocking at --fail-on=%s",
			report.Counts["error"], report.Counts["warning"], o.FailOn)
	}
	return nil
}

func saveSnapshot(path string, s *mesh.Snapshot) error {
	// The same bytes as status -o json, so a saved snapshot and a printed one compare.
	var b bytes.Buffer
	if err := cli.WriteDocument(&b, cli.OutputJSON, cli.NewStatusDocument(s)); err != nil {
		return err
	}
	// The snapshot names every workload and gateway: readable by its owner only, and never written
	// through a symlink someone else planted at the path.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return cli.BadInputf("--save-snapshot %s is a symbolic link: give the file itself", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return cli.Errorf(cli.ExitError, "--save-snapshot: %v", err)
	}
	defer os.Remove(f.Name()) // gone once renamed; left only on failure
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return cli.Errorf(cli.ExitError, "--save-snapshot: %v", err)
	}
	if err := f.Close(); err != nil {
		return cli.Errorf(cli.ExitError, "--save-snapshot: %v", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return cli.Errorf(cli.ExitError, "--save-snapshot: %v", err)
	}
	return nil
}

func writeTable(w io.Writer, r Report) error {
	if err := writeFindings(w, r); err != nil || len(r.Steps) == 0 {
		return err
	}
	fmt.Fprintln(w, "\nSTEPS THIS IDENTITY MAY RUN")
	for _, s := range r.Steps {
		if s.Allowed {
			fmt.Fprintf(w, "  %-12s yes\n", s.Step)
			continue
		}
		fmt.Fprintf(w, "  %-12s no: %s\n", s.Step, strings.Join(s.Missing, ", "))
	}
	return nil
}

func writeFindings(w io.Writer, r Report) error {
	if len(r.Findings) == 0 {
		_, err := fmt.Fprintln(w, "No findings: nothing blocks the upgrade.")
		return err
	}
	rows := make([][]string, 0, len(r.Findings))
	for _, f := range r.Findings {
		rows = append(rows, []string{string(f.Severity), f.Code, f.Object, f.Message})
	}
	if err := cli.WriteTableWrapped(w, []string{"severity", "code", "object", "message"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nHOW TO FIX")
	seen := map[string]bool{}
	for _, f := range r.Findings {
		key := f.Code + f.Fix
		if f.Fix == "" || seen[key] {
			continue
		}
		seen[key] = true
		fmt.Fprintf(w, "  %-28s %s\n", f.Code, f.Fix)
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "\nSkipped (no read access): %v\n", r.Skipped)
	}
	_, err := fmt.Fprintf(w, "\n%d errors, %d warnings, %d info\n", r.Counts["error"], r.Counts["warning"], r.Counts["info"])
	return err
}

// analysisAccess is what Istio's analyzers list and watch (docs/rbac.md): the Istio configuration kinds,
// the Gateway API's, and the core objects they check references against.
func analysisAccess(ns, istioNS string) []kube.Access {
	var out []kube.Access
	for _, k := range []struct{ group, resource string }{
		{"networking.istio.io", "virtualservices"}, {"networking.istio.io", "destinationrules"}, {"networking.istio.io", "gateways"},
		{"networking.istio.io", "serviceentries"}, {"networking.istio.io", "sidecars"},
		{"security.istio.io", "authorizationpolicies"}, {"security.istio.io", "peerauthentications"},
		{"telemetry.istio.io", "telemetries"}, {"gateway.networking.k8s.io", "httproutes"},
		{"", "pods"}, {"", "services"}, {"", "endpoints"}, {"", "secrets"}, {"apps", "deployments"},
	} {
		out = append(out, kube.Can(k.group, k.resource, ns, "list", "watch")...)
	}
	out = append(out, kube.Can("", "namespaces", "", "list", "watch")...)
	return append(out, kube.Can("", "configmaps", istioNS, "list", "watch")...)
}
