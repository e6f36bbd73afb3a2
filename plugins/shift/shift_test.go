package shift

import (
	"fmt"
	"strings"
	"testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/canary"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// render prints steps as "canary/old@effective%[ canaryHPA|oldHPA]".
func render(steps []Step) string {
	var out []string
	for _, s := range steps {
		x := fmt.Sprintf("%d/%d@%d%%", s.Canary, s.Old, s.Effective)
		if s.CanaryHPA != nil {
			x += fmt.Sprintf(" %s|%s", s.CanaryHPA, s.OldHPA)
		}
		out = append(out, x)
	}
	return strings.Join(out, ", ")
}

func TestPlan(t *testing.T) {
	hpa := &Range{Min: 2, Max: 6}
	cases := []struct {
		name string
		in   Input
		want string
	}{
		{"two pods in quarters: 25 and 50 and 75 share one split", Input{Old: 2, Target: 100, StepSize: 25}, "1/1@50%, 2/0@100%"},
		{"one step", Input{Old: 4, Target: 100}, "4/0@100%"},
		{"four pods in quarters", Input{Old: 4, Target: 100, StepSize: 25}, "1/3@25%, 2/2@50%, 3/1@75%, 4/0@100%"},
		{"odd count rounds half up", Input{Old: 3, Target: 50, StepSize: 50}, "2/1@67%"},
		{"odd count in tenths", Input{Old: 5, Target: 100, StepSize: 10}, "1/4@20%, 2/3@40%, 3/2@60%, 4/1@80%, 5/0@100%"},
		{"small weight still gets a pod", Input{Old: 10, Target: 1}, "1/9@10%"},
		{"99 keeps one old pod", Input{Old: 10, Target: 99}, "9/1@90%"},
		{"single-pod gateway runs two for a partial weight", Input{Old: 1, Target: 50}, "1/1@50%"},
		{"single-pod gateway straight to 100", Input{Old: 1, Target: 100, StepSize: 50}, "1/1@50%, 1/0@100%"},
		{"back to 0 from 100", Input{Canary: 4, Target: 0, StepSize: 50}, "2/2@50%, 0/4@0%"},
		{"resume from 50 to 100", Input{Old: 2, Canary: 2, Target: 100, StepSize: 25}, "3/1@75%, 4/0@100%"},
		{"already there", Input{Old: 2, Canary: 2, Target: 50, StepSize: 25}, ""},
		{"HPA range split with the traffic", Input{Old: 4, Target: 100, StepSize: 50, HPA: hpa}, "2/2@50% 1-3|1-3, 4/0@100% 2-6|2-6"},
		{"HPA range on odd counts keeps each side's replicas inside", Input{Old: 3, Target: 100, StepSize: 34, HPA: hpa},
			"1/2@33% 1-2|1-4, 2/1@67% 1-4|1-2, 3/0@100% 2-6|2-6"},
		{"HPA at 0 gives the old side its whole range back", Input{Canary: 2, Target: 0, HPA: hpa}, "0/2@0% 2-6|2-6"},
	}
	for _, c := range cases {
		steps, err := Plan(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := render(steps); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
		// Invariants: serving pods never fall below what served before; every HPA range holds its side.
		total := c.in.Old + c.in.Canary
		for _, s := range steps {
			if s.Canary+s.Old < total {
				t.Errorf("%s: step %+v serves fewer than %d pods", c.name, s, total)
			}
			for _, side := range []struct {
				n int32
				r *Range
			}{{s.Canary, s.CanaryHPA}, {s.Old, s.OldHPA}} {
				if side.r != nil && side.n > 0 && (side.n < side.r.Min || side.n > side.r.Max) {
					t.Errorf("%s: %d replicas outside HPA range %s", c.name, side.n, side.r)
				}
			}
		}
	}
}

func TestPlanErrors(t *testing.T) {
	for _, in := range []Input{{Target: 50}, {Old: 2, Target: 101}, {Old: 2, Target: 50, StepSize: -1}} {
		if _, err := Plan(in); err == nil {
			t.Errorf("%+v: no error", in)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"ok", func(*Options) {}, ""},
		{"weight missing", func(o *Options) { o.Weight = -1 }, "required"},
		{"weight too big", func(o *Options) { o.Weight = 101 }, "0 to 100"},
		{"step negative", func(o *Options) { o.StepSize = -5 }, "--step"},
		{"bad gateway", func(o *Options) { o.Gateway = "a/b/c" }, "NAMESPACE/DEPLOYMENT"},
		{"host without url", func(o *Options) { o.ProbeHost = "x" }, "--probe-host needs --probe-url"},
		{"url scheme", func(o *Options) { o.ProbeURL = "ftp://x" }, "http://"},
	} {
		o := &Options{Target: canary.Target{Gateway: "istio-ingress/gw", Revision: "1-31"}, Weight: 50, StepSize: 25, Timeout: 1, Probes: 1}
		c.mod(o)
		err := o.Validate(&step.Run{}, nil)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if err != nil && cli.CodeOf(err) != cli.ExitUsage {
			t.Errorf("%s: exit %d, want usage", c.name, cli.CodeOf(err))
		}
	}
}

// A step's request gate judges the gateways that keep pods: a side scaled to 0 serves nothing, and
// would only ever be inconclusive.
func TestServingAfter(t *testing.T) {
	o := &Options{canary: gwDeployment("gw-1-31", 1, false), old: gwDeployment("gw", 2, false)}
	for _, tt := range []struct {
		s    Step
		want string
	}{
		{Step{Canary: 1, Old: 1}, "istio-ingress/gw-1-31 istio-ingress/gw"},
		{Step{Canary: 2, Old: 0}, "istio-ingress/gw-1-31"},
		{Step{Canary: 0, Old: 2}, "istio-ingress/gw"},
	} {
		if got := strings.Join(o.servingAfter(tt.s), " "); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.s, got, tt.want)
		}
	}
}
