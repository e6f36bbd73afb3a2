package migrategw

import (
	"context"
	"fmt"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// PinHelp is the help of --pin-gateways, shared by the steps that move what Gateways follow.
const PinHelp = "Label each Gateway API gateway or waypoint that follows what moves with the revision it runs now, so it does not roll at once outside any gate; move it later with migrate-gw (--pin-gateways=false lets them roll)"

// Pin is a Gateway API Gateway that follows what a step moves (a tag, a namespace's label), and the
// revision it runs now: the step labels it with that revision before moving anything, so istiod does
// not re-deploy it outside any gate (istio/istio#59959).
type Pin struct {
	mesh.GatewayAPIGateway
	Revision string
}

// String names the pin as previews print it.
func (p Pin) String() string {
	return fmt.Sprintf("%s/%s/%s (Gateway API, class %s) pinned to %s", p.Kind(), p.Namespace, p.Name, p.Class, p.Revision)
}

// Pins are the Gateways among gws that follows says follow what moves, each with the revision it
// resolves to now. One istiod has not deployed, or that resolves to nothing installed, is left out: it
// has no pods to roll.
func Pins(s *mesh.Snapshot, gws []mesh.GatewayAPIGateway, follows func(mesh.GatewayAPIGateway) bool) []Pin {
	deployed := map[string]bool{}
	for _, g := range s.Gateways {
		deployed[g.GatewayAPI] = g.GatewayAPI != ""
	}
	var out []Pin
	for _, g := range gws {
		if !follows(g) || !deployed[g.Namespace+"/"+g.Name] {
			continue
		}
		name, _ := s.Selects(g)
		if rev, _, ok := s.Resolver().Resolve(name); ok {
			out = append(out, Pin{GatewayAPIGateway: g, Revision: rev})
		}
	}
	return out
}

// ApplyPins labels each Gateway with the revision it runs now, each through migrate-gw as a sub-step
// of the running step (same journal entry, dry run and lock): istiod re-renders a Gateway's Deployment
// with the Gateway's labels (unless spec.infrastructure.labels is set), so pinning rolls it once, onto
// the same revision. That roll is gated as any move is: surge first, ready endpoints kept, pods SYNCED,
// routes equal; a failed one is moved back and stops the step before anything else changed.
func ApplyPins(ctx context.Context, r *step.Run, pins []Pin, timeout time.Duration) error {
	for _, g := range pins {
		o := &Options{To: g.Revision, Timeout: timeout, Namespace: g.Namespace}
		res, err := r.Sub(ctx, o, []string{"gateway/" + g.Name})
		for _, a := range res.Actions { // the sub-step's writes are this step's: shown with its own
			r.Result.Add(a.Object, a.Verb)
		}
		r.Result.Patches = append(r.Result.Patches, res.Patches...)
		if err != nil {
			return fmt.Errorf("pin gateway %s/%s to %s: %w", g.Namespace, g.Name, g.Revision, err)
		}
	}
	return nil
}
