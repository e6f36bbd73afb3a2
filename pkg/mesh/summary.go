package mesh

import (
	"fmt"
	"sort"
	"strings"
)

// Summary is the one-line summary: "12 proxies: 7 on 1-30, 5 on 1-31, 1 not synced".
func Summary(s *Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d revisions, %d tags, %d namespaces injected, %d workloads need restart",
		countInstalled(s), len(s.Tags), countInjected(s), countNeedsRestart(s))
	if !s.ProxiesRead {
		return b.String()
	}
	perRev := map[string]int{}
	notSynced := 0
	for _, p := range s.Proxies {
		perRev[p.Revision]++
		if p.State != "SYNCED" {
			notSynced++
		}
	}
	revs := make([]string, 0, len(perRev))
	for r := range perRev {
		revs = append(revs, r)
	}
	sort.Strings(revs)
	parts := make([]string, 0, len(revs)+1)
	for _, r := range revs {
		parts = append(parts, fmt.Sprintf("%d on %s", perRev[r], r))
	}
	parts = append(parts, fmt.Sprintf("%d not synced", notSynced))
	fmt.Fprintf(&b, "; %d proxies: %s", len(s.Proxies), strings.Join(parts, ", "))
	return b.String()
}

func countInstalled(s *Snapshot) int {
	n := 0
	for _, r := range s.Revisions {
		if r.Installed {
			n++
		}
	}
	return n
}

func countInjected(s *Snapshot) int {
	n := 0
	for _, ns := range s.Namespaces {
		if ns.Revision != "" {
			n++
		}
	}
	return n
}

func countNeedsRestart(s *Snapshot) int {
	n := 0
	for _, w := range s.Workloads {
		if w.NeedsRestart {
			n++
		}
	}
	return n
}

// InjectedNamespaces returns the namespaces --all means: every namespace with an injection label or
// resolving to a revision, except the Istio namespace.
func InjectedNamespaces(s *Snapshot) []string {
	var out []string
	for _, n := range s.Namespaces {
		if n.Name == s.IstioNamespace || n.Terminating {
			continue
		}
		if n.Selector() != "" && n.InjectionLabel != "disabled" {
			out = append(out, n.Name)
		}
	}
	sort.Strings(out)
	return out
}

// GatewayNamespaces are the namespaces of the mesh's gateways, each once, in the order first seen.
func GatewayNamespaces(s *Snapshot) []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range s.Gateways {
		if !seen[g.Namespace] {
			seen[g.Namespace] = true
			out = append(out, g.Namespace)
		}
	}
	return out
}
