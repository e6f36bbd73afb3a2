package step

import (
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
)

// CommandLine rebuilds the command from what cobra parsed: the step, its arguments and the flags that
// were set, credentials (journal.Credentials, URL userinfo) left out.
func CommandLine(cmd *cobra.Command, args []string) string {
	parts := []string{"kubectl istio-upgrade", cmd.Name()}
	for _, a := range args {
		parts = append(parts, quote(a))
	}
	var flags []string
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if journal.Credentials[f.Name] {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				flags = append(flags, "--"+f.Name+"="+quote(v))
			}
			return
		}
		if f.Value.Type() == "bool" && f.Value.String() == "true" {
			flags = append(flags, "--"+f.Name)
			return
		}
		flags = append(flags, "--"+f.Name+"="+quote(f.Value.String()))
	})
	sort.Strings(flags)
	return journal.RedactURL(strings.Join(append(parts, flags...), " "))
}

func quote(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n'\"$`\\;&|<>*?()[]{}") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}

// policyFlags decide how a step judges and asks, never what it writes: a rerun that changes them
// (--inconclusive=pass after an inconclusive halt, a longer --timeout) still resumes the same entry.
var policyFlags = map[string]bool{
	"yes": true, "confirm-timeout": true, "timeout": true, "metrics": true, "require-metrics": true, "prometheus": true,
	"prometheus-service": true, "analysis-interval": true, "analysis-count": true, "failure-limit": true,
	"metrics-baseline": true, "inconclusive": true, "max-success-drop": true, "min-success-rate": true,
	"max-latency-ratio": true, "min-requests": true, "request-timeout": true,
}

// sameWork says whether two recorded command lines ask for the same work: equal but for policyFlags.
func sameWork(a, b string) bool {
	strip := func(c string) string {
		var out []string
		for _, tok := range strings.Fields(c) {
			if name, ok := strings.CutPrefix(tok, "--"); ok {
				name, _, _ = strings.Cut(name, "=")
				if policyFlags[name] {
					continue
				}
			}
			out = append(out, tok)
		}
		return strings.Join(out, " ")
	}
	return a == b || strip(a) == strip(b)
}
