package step

import (
	"context"
	"fmt"
	"sync"

	"github.com/spf13/pflag"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Registration is one mutating step as plugins/plugins.go registers it, in the order an upgrade runs
// them. What is said of every step is read from here: precheck's "steps this identity may run", the
// kinds journal trust lets its entries name, undo's restorer, and the step another runs as a sub-step.
type Registration struct {
	Name string
	// Rights are the rights the step asks the apiserver for on this mesh, beyond EngineAccess (nil:
	// the step does not apply to it, e.g. ztunnel-roll without ambient node agents).
	Rights func(s *mesh.Snapshot, istioNS string) []kube.Access
	// Kinds are the kinds the step may write, so the only ones its journal entries may name.
	Kinds []string
	// New makes the step with its flags, as its command parses them: how another step runs it
	// (Run.SubStep). Nil: it never runs inside another.
	New func() (Step, *pflag.FlagSet)
	// Permissions are the rights the step needs as docs/rbac.md lists them for people (generated from
	// here by make docs): Rights is what precheck asks the apiserver, these explain it.
	Permissions []Permission
	// Undo undoes the step's entries in the order the step needs; nil: object by object.
	Undo Restorer
	// Entries are older entry names this step's Undo also restores.
	Entries []string
	// Runs are the steps it runs inside itself by default, whose Rights it needs too (tag-move pins
	// the Gateway API gateways that follow the tag with migrate-gw).
	Runs []SubRights
	// Variants are ways of running it that need more (a flag): precheck reports each on its own line.
	Variants []Variant
}

// SubRights are the Rights of the registered step Step, in the namespaces Where gives (nil: all of them).
type SubRights struct {
	Step  string
	Where func(s *mesh.Snapshot) []string
}

// Variant is the step run with Flag: it asks for Rights and its Runs beyond the step's own.
type Variant struct {
	Flag   string
	Rights func(s *mesh.Snapshot, istioNS string) []kube.Access
	Runs   []SubRights
}

// RightsWith are the Rights of reg on this mesh plus those of the sub-steps it runs (by default, and
// with the variant v when not nil), found in regs; nil when reg does not apply to this mesh.
func RightsWith(regs []Registration, reg Registration, v *Variant, s *mesh.Snapshot, istioNS string) []kube.Access {
	own := reg.Rights(s, istioNS)
	if own == nil {
		return nil
	}
	out := append([]kube.Access{}, own...)
	runs := reg.Runs
	if v != nil {
		if v.Rights != nil {
			out = append(out, v.Rights(s, istioNS)...)
		}
		runs = append(append([]SubRights{}, runs...), v.Runs...)
	}
	for _, sub := range runs {
		for _, g := range regs {
			if g.Name != sub.Step {
				continue
			}
			var in map[string]bool
			if sub.Where != nil {
				in = map[string]bool{}
				for _, ns := range sub.Where(s) {
					in[ns] = true
				}
			}
			for _, a := range g.Rights(s, istioNS) {
				if in == nil || in[a.Namespace] {
					out = append(out, a)
				}
			}
		}
	}
	return out
}

// Permission is one row of docs/rbac.md's table of a step: verbs (and the flag that needs them), on
// which resources, where (ISTIO is the Istio namespace).
type Permission struct{ Verbs, Resources, Where string }

// Restorer undoes one step's entry in the order that step needs (shift: the side regaining pods
// first), instead of object by object.
type Restorer func(ctx context.Context, c *kube.Clients, j *journal.Journal, e *journal.Entry, dryRun []string, p *cli.Progress) ([]journal.Action, error)

var (
	registryMu sync.RWMutex
	registry   []Registration
)

// Register makes the steps known to the runner (sub-steps, restorers) and to journal trust (their
// kinds). plugins.Commands calls it once with every step; tests call it with what they run.
func Register(regs []Registration) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry = regs
	kinds := map[string][]string{}
	for _, g := range regs {
		kinds[g.Name] = g.Kinds
		for _, n := range g.Entries {
			kinds[n] = g.Kinds
		}
	}
	journal.SetStepKinds(kinds)
}

// Registered is the registration of the step named name (its own or an older entry name).
func Registered(name string) (Registration, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	for _, g := range registry {
		if g.Name == name {
			return g, true
		}
		for _, n := range g.Entries {
			if n == name {
				return g, true
			}
		}
	}
	return Registration{}, false
}

// RestorerOf is the Undo of the step named name, nil when it is restored object by object.
func RestorerOf(name string) Restorer {
	g, _ := Registered(name)
	return g.Undo
}

// SubStep runs the registered step name inside this one, its flags and arguments parsed from args as
// its command would (e.g. "--to", "1-31", "gateway/ingress"): see Sub.
func (r *Run) SubStep(ctx context.Context, name string, args ...string) (*cli.Result, error) {
	g, ok := Registered(name)
	if !ok || g.New == nil {
		return cli.NewResult(name, r.DryRun), fmt.Errorf("internal: step %q is not registered to run inside another", name)
	}
	s, flags := g.New()
	flags.SetOutput(r.ErrOut)
	if err := flags.Parse(args); err != nil {
		return cli.NewResult(name, r.DryRun), fmt.Errorf("internal: sub-step %s %v: %w", name, args, err)
	}
	return r.Sub(ctx, s, flags.Args())
}

// Perm is one Permission row.
func Perm(verbs, resources, where string) Permission {
	return Permission{Verbs: verbs, Resources: resources, Where: where}
}
