package metrics

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
)

// Where is where Prometheus is, as the flags say: a URL, a Service, or neither (found by itself).
// verify and every step's request gate read it the same way.
type Where struct {
	URL     string
	Service string
}

// AddFlags binds --prometheus and --prometheus-service.
func (w *Where) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&w.URL, "prometheus", "", "Prometheus' URL, reached directly (instead of finding its Service)")
	f.StringVar(&w.Service, "prometheus-service", "", "Prometheus' Service as NAMESPACE/NAME[:PORT], reached through the apiserver (default: found by itself)")
}

// Validate checks the flags without I/O.
func (w Where) Validate() error {
	if w.URL != "" && w.Service != "" {
		return fmt.Errorf("give --prometheus or --prometheus-service, not both")
	}
	if w.Service != "" {
		if _, err := ParseService(w.Service); err != nil {
			return err
		}
	}
	return nil
}

// Locate is the Source the flags name, else the one Find finds (nil without error: none).
func (w Where) Locate(ctx context.Context, c kubernetes.Interface, istioNS string) (*Source, error) {
	switch {
	case w.URL != "":
		return &Source{URL: w.URL}, nil
	case w.Service != "":
		s, err := ParseService(w.Service)
		return &s, err
	}
	return Find(ctx, c, istioNS)
}

// NotFound says no Prometheus was found, and how to name one.
func NotFound(istioNS string) string {
	return fmt.Sprintf("no Prometheus found (no Service prometheus in %s, none labelled as Prometheus' installers label theirs); name it with --prometheus-service NS/NAME:PORT or --prometheus URL", istioNS)
}

// ValidateInconclusive checks an --inconclusive value.
func ValidateInconclusive(v string) error {
	switch v {
	case "halt", Pass, Fail:
		return nil
	}
	return fmt.Errorf("--inconclusive must be halt, pass or fail, not %q", v)
}

// Failing names each failed workload with its reasons ("ns/name: reasons").
func (r *Report) Failing() []string {
	var out []string
	for _, w := range r.Workloads {
		if w.Verdict == Fail {
			out = append(out, w.Namespace+"/"+w.Name+": "+strings.Join(w.Reasons, "; "))
		}
	}
	return out
}
