package mesh

import (
	"sort"
	"strconv"
	"strings"
)

// Diff is what changed between two snapshots: the proxy-status diff every mutating step prints.
type Diff struct {
	Proxies    []ProxyChange     `json:"proxies"`
	Groups     []GroupChange     `json:"groups"`
	Namespaces []NamespaceChange `json:"namespaces"`
	Tags       []TagChange       `json:"tags"`
	Revisions  []RevisionChange  `json:"revisions"`
	Workloads  []WorkloadChange  `json:"workloads"`
	// Nodes are ambient node agents (a node's ztunnel or istio-cni) whose version, revision or state
	// changed.
	Nodes []NodeChange `json:"nodes"`
}

// NodeChange is one node's ztunnel or istio-cni agent before and after ("1.30.0 1-30 SYNCED").
type NodeChange struct {
	Node      string `json:"node"`
	Component string `json:"component"`
	Before    string `json:"before"`
	After     string `json:"after"`
}

// Change kinds.
const (
	Added   = "added"
	Removed = "removed"
	Changed = "changed"
)

// ProxyRef is where one proxy stood.
type ProxyRef struct {
	Istiod   string `json:"istiod"`
	Revision string `json:"revision"`
	Version  string `json:"version"`
	State    string `json:"state"`
}

// ProxyChange is one proxy added, removed, or moved to another istiod/revision/version/state.
type ProxyChange struct {
	Namespace string    `json:"namespace"`
	Pod       string    `json:"pod"`
	Workload  string    `json:"workload,omitempty"`
	Change    string    `json:"change"`
	Before    *ProxyRef `json:"before,omitempty"`
	After     *ProxyRef `json:"after,omitempty"`
}

// GroupChange sums a workload's proxies before and after: restarts replace pods, so the per-proxy
// view is all adds and removes; this is the view a person reads ("3 on 1-30 → 3 on 1-31").
type GroupChange struct {
	Namespace string `json:"namespace"`
	Workload  string `json:"workload"`
	Before    string `json:"before"`
	After     string `json:"after"`
}

// NamespaceChange is a namespace relabelled (or resolving elsewhere because a tag moved).
type NamespaceChange struct {
	Name           string `json:"name"`
	BeforeLabel    string `json:"beforeLabel"`
	AfterLabel     string `json:"afterLabel"`
	BeforeRevision string `json:"beforeRevision"`
	AfterRevision  string `json:"afterRevision"`
}

// TagChange is a tag created, removed or moved.
type TagChange struct {
	Name           string `json:"name"`
	BeforeRevision string `json:"beforeRevision"`
	AfterRevision  string `json:"afterRevision"`
}

// RevisionChange is a revision installed, removed or changed in readiness/version.
type RevisionChange struct {
	Name   string `json:"name"`
	Change string `json:"change"`
	Before string `json:"before"`
	After  string `json:"after"`
}

// WorkloadChange is a workload whose replicas, readiness or proxy revisions changed.
type WorkloadChange struct {
	Namespace string `json:"namespace"`
	Workload  string `json:"workload"`
	Before    string `json:"before"`
	After     string `json:"after"`
}

// Empty reports whether nothing changed.
func (d *Diff) Empty() bool {
	return len(d.Proxies)+len(d.Namespaces)+len(d.Tags)+len(d.Revisions)+len(d.Workloads)+len(d.Nodes) == 0
}

// Compare returns the Diff from a to b. Proxies are compared only when both snapshots read them.
func Compare(a, b *Snapshot) *Diff {
	d := &Diff{Proxies: []ProxyChange{}, Groups: []GroupChange{}, Namespaces: []NamespaceChange{}, Tags: []TagChange{},
		Revisions: []RevisionChange{}, Workloads: []WorkloadChange{}, Nodes: []NodeChange{}}
	if a.ProxiesRead && b.ProxiesRead {
		diffProxies(d, a.Proxies, b.Proxies)
	}
	diffNamespaces(d, a.Namespaces, b.Namespaces)
	diffTags(d, a.Tags, b.Tags)
	diffRevisions(d, a.Revisions, b.Revisions)
	diffWorkloads(d, a.Workloads, b.Workloads)
	diffNodes(d, a.NodeAgents, b.NodeAgents)
	return d
}

func proxyRef(p Proxy) *ProxyRef {
	return &ProxyRef{Istiod: p.Istiod, Revision: p.Revision, Version: p.Version, State: p.State}
}

func diffProxies(d *Diff, before, after []Proxy) {
	type pkey struct{ ns, pod string }
	key := func(p Proxy) pkey { return pkey{p.Namespace, p.Pod} }
	bm := make(map[pkey]Proxy, len(before))
	for _, p := range before {
		bm[key(p)] = p
	}
	am := make(map[pkey]Proxy, len(after))
	for _, p := range after {
		am[key(p)] = p
	}
	type group struct{ ns, wl string }
	groupOf := func(p Proxy) group {
		if p.Workload != "" {
			return group{p.Namespace, p.Workload}
		}
		return group{p.Namespace, "pod/" + p.Pod}
	}
	touched := map[group]bool{}
	for _, p := range before {
		q, ok := am[key(p)]
		switch {
		case !ok:
			d.Proxies = append(d.Proxies, ProxyChange{Namespace: p.Namespace, Pod: p.Pod, Workload: p.Workload, Change: Removed, Before: proxyRef(p)})
			touched[groupOf(p)] = true
		case p.Istiod != q.Istiod || p.Revision != q.Revision || p.Version != q.Version || p.State != q.State:
			d.Proxies = append(d.Proxies, ProxyChange{Namespace: p.Namespace, Pod: p.Pod, Workload: p.Workload, Change: Changed, Before: proxyRef(p), After: proxyRef(q)})
			touched[groupOf(p)] = true
		}
	}
	for _, q := range after {
		if _, ok := bm[key(q)]; !ok {
			d.Proxies = append(d.Proxies, ProxyChange{Namespace: q.Namespace, Pod: q.Pod, Workload: q.Workload, Change: Added, After: proxyRef(q)})
			touched[groupOf(q)] = true
		}
	}
	sort.Slice(d.Proxies, func(i, j int) bool {
		a, b := d.Proxies[i], d.Proxies[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Pod < b.Pod
	})
	// One pass per side: counts per touched group (rescanning every proxy per group is quadratic).
	count := func(ps []Proxy) map[group]map[string]int {
		out := make(map[group]map[string]int, len(touched))
		for _, p := range ps {
			g := groupOf(p)
			if !touched[g] {
				continue
			}
			if out[g] == nil {
				out[g] = map[string]int{}
			}
			out[g][p.Revision+"@"+p.Version+" "+p.State]++
		}
		return out
	}
	bc, ac := count(before), count(after)
	for g := range touched {
		d.Groups = append(d.Groups, GroupChange{Namespace: g.ns, Workload: g.wl, Before: summarize(bc[g]), After: summarize(ac[g])})
	}
	sort.Slice(d.Groups, func(i, j int) bool {
		if d.Groups[i].Namespace != d.Groups[j].Namespace {
			return d.Groups[i].Namespace < d.Groups[j].Namespace
		}
		return d.Groups[i].Workload < d.Groups[j].Workload
	})
}

// summarize renders {"1-30@1.30.0 SYNCED": 3} as "3×1-30@1.30.0/SYNCED".
func summarize(counts map[string]int) string {
	if len(counts) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, strconv.Itoa(counts[k])+"×"+strings.ReplaceAll(k, " ", "/"))
	}
	return strings.Join(parts, ",")
}

func diffNamespaces(d *Diff, before, after []Namespace) {
	bm := map[string]Namespace{}
	for _, n := range before {
		bm[n.Name] = n
	}
	for _, n := range after {
		o, ok := bm[n.Name]
		if !ok {
			continue
		}
		if o.Selector() != n.Selector() || o.Revision != n.Revision {
			d.Namespaces = append(d.Namespaces, NamespaceChange{Name: n.Name, BeforeLabel: o.Selector(), AfterLabel: n.Selector(),
				BeforeRevision: o.Revision, AfterRevision: n.Revision})
		}
	}
}

func diffTags(d *Diff, before, after []Tag) {
	bm, am := map[string]string{}, map[string]string{}
	for _, t := range before {
		bm[t.Name] = t.Revision
	}
	for _, t := range after {
		am[t.Name] = t.Revision
	}
	for _, name := range unionKeys(bm, am) {
		if bm[name] != am[name] {
			d.Tags = append(d.Tags, TagChange{Name: name, BeforeRevision: bm[name], AfterRevision: am[name]})
		}
	}
}

func revisionState(r Revision) string {
	if !r.Installed {
		return "not-installed"
	}
	return r.Version + " " + strconv.Itoa(int(r.Ready)) + "/" + strconv.Itoa(int(r.Desired))
}

func diffRevisions(d *Diff, before, after []Revision) {
	bm, am := map[string]string{}, map[string]string{}
	for _, r := range before {
		bm[r.Name] = revisionState(r)
	}
	for _, r := range after {
		am[r.Name] = revisionState(r)
	}
	for _, name := range unionKeys(bm, am) {
		b, inB := bm[name]
		a, inA := am[name]
		switch {
		case !inB:
			d.Revisions = append(d.Revisions, RevisionChange{Name: name, Change: Added, After: a})
		case !inA:
			d.Revisions = append(d.Revisions, RevisionChange{Name: name, Change: Removed, Before: b})
		case a != b:
			d.Revisions = append(d.Revisions, RevisionChange{Name: name, Change: Changed, Before: b, After: a})
		}
	}
}

func workloadState(w Workload) string {
	revs := make([]string, len(w.InjectedRevisions))
	for i, r := range w.InjectedRevisions {
		if r == "" {
			r = "none"
		}
		revs[i] = r
	}
	state := strconv.Itoa(int(w.Ready)) + "/" + strconv.Itoa(int(w.Replicas))
	if len(revs) == 0 {
		return state // no pods: nothing injected to name
	}
	return state + " " + strings.Join(revs, ",")
}

func diffWorkloads(d *Diff, before, after []Workload) {
	bm, am := map[string]string{}, map[string]string{}
	for _, w := range before {
		bm[w.Key()] = workloadState(w)
	}
	for _, w := range after {
		am[w.Key()] = workloadState(w)
	}
	eachChanged(bm, am, func(k, b, a string) {
		ns, ref, _ := strings.Cut(k, "/")
		d.Workloads = append(d.Workloads, WorkloadChange{Namespace: ns, Workload: ref, Before: b, After: a})
	})
}

// nodeState is a node agent as the diff shows it; which pod it is does not matter, so a replaced
// ztunnel that came back the same is no change.
func nodeState(a NodeAgent) string {
	st := a.Version + " " + a.Revision
	if !a.Ready {
		return st + " not-ready"
	}
	if a.SyncState != "" {
		st += " " + a.SyncState
	}
	return st
}

func diffNodes(d *Diff, before, after []NodeAgent) {
	bm, am := map[string]string{}, map[string]string{}
	for _, a := range before {
		bm[a.Node+"/"+a.Component] = nodeState(a)
	}
	for _, a := range after {
		am[a.Node+"/"+a.Component] = nodeState(a)
	}
	eachChanged(bm, am, func(k, b, a string) {
		node, comp, _ := strings.Cut(k, "/")
		d.Nodes = append(d.Nodes, NodeChange{Node: node, Component: comp, Before: b, After: a})
	})
}

// eachChanged calls f, in key order, for every key whose state differs between before and after; a
// state missing on one side is "-".
func eachChanged(before, after map[string]string, f func(key, before, after string)) {
	for _, k := range unionKeys(before, after) {
		b, a := before[k], after[k]
		if b == a {
			continue
		}
		if b == "" {
			b = "-"
		}
		if a == "" {
			a = "-"
		}
		f(k, b, a)
	}
}

func unionKeys(a, b map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]string{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}
