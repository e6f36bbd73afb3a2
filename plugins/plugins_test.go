package plugins

import (
	"os"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
)

// commands are the subcommands Commands makes, in its (the runbook's) order.
func commands(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, f := range Commands() {
		out = append(out, f(&cli.Global{}, genericiooptions.NewTestIOStreamsDiscard()).Name())
	}
	return out
}

// --help lists every subcommand, in runbook order, each with a capitalised Short.
func TestHelpListsTheRunbook(t *testing.T) {
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	root := cli.NewRootCommand(streams, Commands()...)
	root.SetArgs([]string{"--help"})
	if code := cli.Execute(root); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	help := out.String()
	last := -1
	for _, step := range commands(t) {
		i := strings.Index(help, "\n  "+step+" ")
		if i < 0 {
			t.Errorf("--help does not list %s", step)
			continue
		}
		if i < last {
			t.Errorf("%s is out of runbook order", step)
		}
		last = i
	}
	for _, c := range root.Commands() {
		if c.Short == "" || c.Short[0] < 'A' || c.Short[0] > 'Z' || strings.HasSuffix(c.Short, ".") {
			t.Errorf("%s: Short %q must be capitalised without a period", c.Name(), c.Short)
		}
	}
}

// The README's table of steps has a row for every subcommand: adding a step without telling users
// fails here.
func TestReadmeTableListsEveryCommand(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	table, _, _ := strings.Cut(string(b), "\n\n## ")
	for _, c := range commands(t) {
		if !strings.Contains(table, "`"+c+"`") {
			t.Errorf("README.md's table of steps has no row for `%s`", c)
		}
	}
}
