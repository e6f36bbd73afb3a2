// Package pin keeps Gateway API gateways where they run while a step moves what they follow (a
// namespace's label, a tag): istiod would otherwise re-deploy them at once, outside any gate
// (istio/istio#59959). migrate-ns and tag-move pin; migrate-gw, run as their sub-step, does the move.
package pin

import (
	"context"
	"fmt"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Help is the help of --pin-gateways, shared by the steps that move what Gateways follow.
const Help = "Label each Gateway API gateway or waypoint that follows what moves with the revision it runs now, so it does not roll at once outside any gate; move it later with migrate-gw (--pin-gateways=false lets them roll)"

// mover is the step that labels a gateway with a revision, gated.
const mover = "migrate-gw"

// Pin is a Gateway API Gateway that follows what a step moves, and the revision it runs now: the
// step labels it with that revision before moving anything.
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

// RollingNow names the gateways among gws that follow what moves but are not pinned: they roll the
// moment it moves. follows says whether one does, and how (", through the default tag"), for the name.
func RollingNow(gws []mesh.GatewayAPIGateway, pinned []Pin, follows func(mesh.GatewayAPIGateway) (how string, ok bool)) []string {
	pin := map[string]bool{}
	for _, p := range pinned {
		pin[p.Namespace+"/"+p.Name] = true
	}
	out := []string{}
	for _, g := range gws {
		if how, ok := follows(g); ok && !pin[g.Namespace+"/"+g.Name] {
			out = append(out, fmt.Sprintf("%s/%s/%s (Gateway API, class %s%s)", g.Kind(), g.Namespace, g.Name, g.Class, how))
		}
	}
	return out
}

// Apply labels each Gateway with the revision it runs now, each through migrate-gw as a sub-step of
// the running step (same journal entry, dry run and lock): istiod re-renders a Gateway's Deployment
// with the Gateway's labels (unless spec.infrastructure.labels is set), so pinning rolls it once, onto
// the same revision. That roll is gated as any move is; a failed one is moved back and stops the step
// before anything else changed.
func Apply(ctx context.Context, r *step.Run, pins []Pin, timeout time.Duration) error {
	for _, g := range pins {
		res, err := r.SubStep(ctx, mover, "--to", g.Revision, "--timeout", timeout.String(), "--namespace", g.Namespace, "gateway/"+g.Name)
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

// Undo takes the pins among objs (of entry e) back the way migrate-gw undoes a move: the recorded
// label set again and its pods watched back, then the objects restored.
func Undo(ctx context.Context, c *kube.Clients, j *journal.Journal, e *journal.Entry, objs []journal.Object, dryRun []string, p *cli.Progress) ([]journal.Action, error) {
	if len(objs) == 0 {
		return nil, nil
	}
	undo := step.RestorerOf(mover)
	if undo == nil {
		return nil, fmt.Errorf("internal: %s is not registered, so pinned gateways cannot be moved back", mover)
	}
	pinned := *e
	pinned.Objects = objs
	return undo(ctx, c, j, &pinned, dryRun, p)
}
