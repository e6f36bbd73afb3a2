package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// Set at build time with -ldflags -X.
var (
	version   = "v0.0.0-dev"
	gitCommit = "unknown"
)

// Version returns the plugin's version and commit.
func Version() (string, string) { return version, gitCommit }

// Global holds the flags every subcommand shares: kubectl's connection flags, the Istio namespace,
// the output format and how to reach istiod's xDS debug endpoint.
type Global struct {
	ConfigFlags    *genericclioptions.ConfigFlags
	IstioNamespace string
	Output         string
	XDSAddress     string
	Plaintext      bool
	InsecureXDS    bool
	// XDSPort is the istiod port we port-forward to for syncz (istioctl's --xds-port).
	XDSPort int

	clients *kube.Clients
}

// AddFlags binds the shared flags to the root command's persistent flags.
func (g *Global) AddFlags(fs *pflag.FlagSet) {
	g.ConfigFlags.AddFlags(fs)
	fs.StringVar(&g.IstioNamespace, "istio-namespace", "istio-system", "Namespace where the Istio control planes run")
	fs.StringVarP(&g.Output, "output", "o", OutputTable, "Output format: table, json or yaml")
	fs.StringVar(&g.XDSAddress, "xds-address", "", "Reach istiod's xDS debug endpoint at this address instead of port-forwarding to every istiod pod (one control plane only)")
	fs.BoolVar(&g.Plaintext, "plaintext", false, "With --xds-address: plaintext gRPC without a token (istiod's port 15010)")
	fs.BoolVar(&g.InsecureXDS, "insecure-xds", false, "With --xds-address: do not verify istiod's certificate against the mesh root before sending it a token (prints a warning)")
	fs.IntVar(&g.XDSPort, "xds-port", 15012, "istiod pod port to port-forward to for xDS debug requests")
}

// Validate checks the shared flags; it does no I/O.
func (g *Global) Validate() error {
	if err := ValidateOutput(g.Output); err != nil {
		return err
	}
	if g.IstioNamespace == "" {
		return UsageErrorf("--istio-namespace must not be empty")
	}
	if g.Plaintext && g.XDSAddress == "" {
		return UsageErrorf("--plaintext needs --xds-address")
	}
	if g.InsecureXDS && (g.XDSAddress == "" || g.Plaintext) {
		return UsageErrorf("--insecure-xds needs --xds-address over TLS (without --plaintext)")
	}
	if g.InsecureXDS {
		fmt.Fprintln(os.Stderr, "warning: --insecure-xds: istiod's certificate at "+g.XDSAddress+" is not verified, and the token sent to it can mint mesh certificates")
	}
	return nil
}

// NamespaceScope is the namespace a read-only step looks at: the one -n names, or "" for all namespaces
// (the default, and -A). Giving both is a usage error.
func (g *Global) NamespaceScope(allNamespaces bool) (string, error) {
	ns := ""
	if g.ConfigFlags.Namespace != nil {
		ns = *g.ConfigFlags.Namespace
	}
	if allNamespaces && ns != "" {
		return "", UsageErrorf("-A and -n cannot be used together")
	}
	return ns, nil
}

// CommandFactory builds one subcommand from the shared flags and streams.
type CommandFactory func(g *Global, streams genericiooptions.IOStreams) *cobra.Command

// NewRootCommand builds `kubectl istio-upgrade` with the given subcommands, in runbook order.
func NewRootCommand(streams genericiooptions.IOStreams, subcommands ...CommandFactory) *cobra.Command {
	// --help lists the steps in runbook order, not alphabetically.
	cobra.EnableCommandSorting = false
	g := &Global{ConfigFlags: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:   "kubectl-istio_upgrade",
		Short: "Upgrade Istio with canary revisions, one verified step at a time",
		Long: `kubectl istio-upgrade runs a revision-based (canary) Istio upgrade as a series of verified steps:

  status      see every revision, tag, namespace, gateway and proxy
  precheck    find everything that would make the upgrade unsafe
  canary-gw   start a canary ingress gateway on the new revision
  shift       move ingress traffic to the canary gateway in gated steps
  migrate-ns  move namespaces to the new revision in verified batches
  migrate-gw  move one gateway to the new revision in place (instead of canary-gw and shift)
  ztunnel-roll roll ambient's istio-cni and ztunnel to the new revision, node by node
  tag-move    point a revision tag at the new revision
  cleanup     remove the old revision once nothing depends on it
  history     what each step changed
  undo        put a step's changes back

Every mutating step accepts --dry-run=none|client|server and -y, takes the cluster's lock (one mutating
step at a time), records what it changes as one journal entry (see history, undo), and prints the
proxy-status diff (before → after). On a terminal each asks before changing anything: -y answers yes;
without a terminal nothing waits. Ctrl-C stops after the work in flight; the same command resumes, as
it does after a run that was killed (its entry shows as interrupted). A step frozen or cut off past its
lease stops before its next write (exit 73); one whose plan went stale exits 76 with nothing changed.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl istio-upgrade",
		},
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	g.AddFlags(root.PersistentFlags())
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &Error{Code: ExitUsage, Err: err}
	})
	for _, f := range subcommands {
		root.AddCommand(f(g, streams))
	}
	root.AddCommand(newVersionCommand(g, streams))
	return root
}

// ExactArgs is cobra.ExactArgs returning a usage error (exit 64).
func ExactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &Error{Code: ExitUsage, Err: err}
		}
		return nil
	}
}

// NoArgs is cobra.NoArgs returning a usage error (exit 64).
func NoArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return &Error{Code: ExitUsage, Err: err}
	}
	return nil
}

// MaximumNArgs is cobra.MaximumNArgs returning a usage error (exit 64).
func MaximumNArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MaximumNArgs(n)(cmd, args); err != nil {
			return &Error{Code: ExitUsage, Err: err}
		}
		return nil
	}
}

// Execute runs the root command and returns the exit code, printing `error: …` once on ErrOut.
func Execute(root *cobra.Command) int {
	err := root.Execute()
	if err == nil {
		return int(ExitOK)
	}
	code := CodeOf(err)
	// cobra reports unknown commands and arg-count errors as plain errors: they are usage errors.
	var e *Error
	if !errors.As(err, &e) && isCobraUsageError(err) {
		code = ExitUsage
	}
	fmt.Fprintf(root.ErrOrStderr(), "error: %v\n", err)
	if code == ExitUsage {
		fmt.Fprintf(root.ErrOrStderr(), "See '%s --help' for usage.\n", "kubectl istio-upgrade")
	}
	return int(code)
}
