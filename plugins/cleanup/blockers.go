package cleanup

import (
	"context"
	"fmt"
	"sort"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Blocker is something that still depends on the revision, with the command that resolves it.
type Blocker struct {
	Kind    string `json:"kind"`
	Object  string `json:"object"`
	Message string `json:"message"`
	Fix     string `json:"fix"`
}

// Blockers lists everything that still depends on revision old. next is the revision to suggest
// moving to (the newest other installed one).
func Blockers(s *mesh.Snapshot, old, next string) []Blocker {
	if next == "" {
		next = "<new revision>"
	}
	var out []Blocker
	for _, n := range s.Namespaces {
		if n.Revision != old {
			continue
		}
		how := "labelled " + n.Selector()
		if n.Via != "" {
			how += " (through tag " + n.Via + ")"
		}
		out = append(out, Blocker{"namespace", "namespace/" + n.Name, "new pods in " + n.Name + " would be injected by " + old + ": " + how,
			fmt.Sprintf("kubectl istio-upgrade migrate-ns %s --to %s", n.Name, next)})
	}
	for _, t := range s.Tags {
		if t.Revision == old {
			out = append(out, Blocker{"tag", "tag/" + t.Name, "tag " + t.Name + " points at " + old,
				fmt.Sprintf("kubectl istio-upgrade tag-move %s --to %s --overwrite", t.Name, next)})
		}
	}
	for _, r := range s.Revisions {
		if r.Name == old && r.DefaultValidator {
			out = append(out, Blocker{"validator", "validatingwebhookconfiguration/istiod-default-validator", "the default validator calls " + old,
				fmt.Sprintf("kubectl istio-upgrade tag-move default --to %s --overwrite", next)})
		}
	}
	for _, g := range s.Gateways {
		// istiod's Deployment of a Gateway API gateway is the Gateway's blocker (GatewayAPIBlockers), moved
		// by migrate-gw, never by shift.
		if g.Revision == old && g.Replicas > 0 && g.GatewayAPI == "" {
			out = append(out, Blocker{"gateway", "deployment/" + g.Namespace + "/" + g.Name, fmt.Sprintf("gateway on %s with %d replicas", old, g.Replicas),
				fmt.Sprintf("kubectl istio-upgrade shift --gateway %s/%s --revision %s --weight 100", g.Namespace, g.Name, next)})
		}
	}
	for _, w := range s.Workloads {
		injected := false
		for _, r := range w.InjectedRevisions {
			if r == old {
				injected = true
			}
		}
		if !injected || (w.Gateway && w.Replicas > 0) {
			continue // gateways are reported above
		}
		fix := fmt.Sprintf("kubectl istio-upgrade migrate-ns %s --to %s", w.Namespace, next)
		if w.DesiredRevision == next || w.DesiredRevision != old {
			fix = fmt.Sprintf("kubectl -n %s rollout restart %s", w.Namespace, w.Ref())
		}
		out = append(out, Blocker{"pods", w.Namespace + "/" + w.Ref(), fmt.Sprintf("%d pods run a proxy injected by %s", w.Pods, old), fix})
	}
	proxies := 0
	for _, p := range s.Proxies {
		if p.Revision == old {
			proxies++
		}
	}
	if proxies > 0 {
		out = append(out, Blocker{"proxies", "revision/" + old, fmt.Sprintf("%d proxies are connected to istiod %s", proxies, old),
			"move their workloads (see the rows above); then rerun"})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// GatewayAPIBlockers are the Gateway API Gateways Istio runs (its classes: istio, istio-waypoint, …)
// that resolve to revision old: by their own istio.io/rev label, else their namespace's revision,
// else the default tag's. istiod deploys and injects their proxies on that revision.
func GatewayAPIBlockers(ctx context.Context, c *kube.Clients, s *mesh.Snapshot, old, next string) ([]Blocker, error) {
	gws, err := mesh.ListGatewayAPI(ctx, c.Dynamic, "")
	if err != nil {
		return nil, err
	}
	var out []Blocker
	for _, g := range gws {
		name, how := s.Selects(g)
		rev, _, ok := s.Resolver().Resolve(name)
		if !ok || rev != old {
			continue
		}
		out = append(out, Blocker{g.Kind(), "gateway/" + g.Namespace + "/" + g.Name,
			fmt.Sprintf("Gateway API %s (class %s) runs on %s through %s", g.Kind(), g.Class, old, how),
			fmt.Sprintf("kubectl istio-upgrade migrate-gw gateway/%s -n %s --to %s", g.Name, g.Namespace, nextOr(next))})
	}
	return out, nil
}

// DataPlaneBlockers are ambient's node agents still on revision old: a ztunnel pointed at its istiod,
// an istio-cni agent running its version (when the next revision runs another), or a DaemonSet whose
// template would bring either back on a new node.
func DataPlaneBlockers(s *mesh.Snapshot, raw *mesh.Inputs, old, next string) []Blocker {
	versions := map[string]string{}
	for _, r := range s.Revisions {
		versions[r.Name] = r.Version
	}
	uses := func(comp, version, rev string) bool {
		if comp == mesh.ComponentZtunnel {
			return rev == old
		}
		return version != "" && version == versions[old] && version != versions[next]
	}
	fix := "kubectl istio-upgrade ztunnel-roll --to " + nextOr(next)
	var out []Blocker
	for _, a := range s.NodeAgents {
		if !uses(a.Component, a.Version, a.Revision) {
			continue
		}
		what := "points at istiod " + old
		if a.Component == mesh.ComponentCNI {
			what = "runs " + a.Version + ", the version of " + old
		}
		out = append(out, Blocker{a.Component, "pod/" + s.IstioNamespace + "/" + a.Pod, fmt.Sprintf("the %s agent of node %s %s", a.Component, a.Node, what), fix})
	}
	for i := range raw.DaemonSets {
		d := &raw.DaemonSets[i]
		comp := mesh.AmbientComponent(d, s.IstioNamespace)
		if comp == "" {
			continue
		}
		if v, rev := mesh.TemplateTarget(&d.Spec.Template, comp); uses(comp, v, rev) {
			out = append(out, Blocker{comp, "daemonset/" + d.Namespace + "/" + d.Name,
				fmt.Sprintf("its template still runs %s %s: a new node would get it", v, rev), fix})
		}
	}
	return out
}

func nextOr(next string) string {
	if next == "" {
		return "<new revision>"
	}
	return next
}
