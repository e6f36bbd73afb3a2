package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/undo"
)

const (
	rbacBegin = "<!-- per-step permissions: generated from the step registry by make docs -->"
	rbacEnd   = "<!-- end of the generated table -->"
)

// writeRBAC renders the per-step table of docs/rbac.md (file in) from each registration's
// Permissions into out, so the document and the steps cannot disagree.
func writeRBAC(in, out string) error {
	doc, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	before, rest, ok := strings.Cut(string(doc), rbacBegin)
	_, after, ok2 := strings.Cut(rest, rbacEnd)
	if !ok || !ok2 {
		return fmt.Errorf("%s: the markers of the generated table are missing", in)
	}
	var b strings.Builder
	b.WriteString(rbacBegin + "\n| step | verbs | resources | where |\n|---|---|---|---|\n")
	row := func(name string, ps []step.Permission) {
		for i, p := range ps {
			cell := ""
			if i == 0 {
				cell = "`" + name + "`"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell, p.Verbs, p.Resources, p.Where)
		}
	}
	for _, g := range plugins.Steps() {
		row(g.Name, g.Permissions)
	}
	row("undo", undo.Permissions)
	b.WriteString(rbacEnd)
	return os.WriteFile(out, []byte(before+b.String()+after), 0o644)
}
