package cli

import (
	"fmt"
	"io"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// WriteDiffTable prints the proxy-status diff (before → after) the way every mutating step ends.
func WriteDiffTable(w io.Writer, d *mesh.Diff) error {
	if d.Empty() {
		_, err := fmt.Fprintln(w, "No change in the mesh.")
		return err
	}
	fmt.Fprintln(w, "\nPROXY-STATUS DIFF (before → after)")
	if len(d.Groups) > 0 {
		rows := make([][]string, 0, len(d.Groups))
		for _, g := range d.Groups {
			rows = append(rows, []string{g.Namespace + "/" + g.Workload, g.Before, "→", g.After})
		}
		if err := WriteTable(w, []string{"workload", "proxies before", "", "proxies after"}, rows); err != nil {
			return err
		}
	}
	var rows [][]string
	for _, n := range d.Namespaces {
		rows = append(rows, []string{"namespace/" + n.Name, n.BeforeLabel + "(" + OrNone(n.BeforeRevision) + ")", "→", n.AfterLabel + "(" + OrNone(n.AfterRevision) + ")"})
	}
	for _, t := range d.Tags {
		rows = append(rows, []string{"tag/" + t.Name, OrNone(t.BeforeRevision), "→", OrNone(t.AfterRevision)})
	}
	for _, r := range d.Revisions {
		rows = append(rows, []string{"revision/" + r.Name, OrNone(r.Before), "→", OrNone(r.After)})
	}
	for _, wl := range d.Workloads {
		rows = append(rows, []string{wl.Namespace + "/" + wl.Workload, wl.Before, "→", wl.After})
	}
	for _, n := range d.Nodes {
		rows = append(rows, []string{"node/" + n.Node + "/" + n.Component, n.Before, "→", n.After})
	}
	if len(rows) > 0 {
		fmt.Fprintln(w)
		return WriteTable(w, []string{"object", "before", "", "after"}, rows)
	}
	return nil
}

// OrNone returns s, or the <none> placeholder when s is empty.
func OrNone(s string) string {
	if s == "" {
		return None
	}
	return s
}
