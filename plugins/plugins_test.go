package plugins

import (
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
)

// TestHelpListsTheRunbook: --help shows every step, in runbook order.
func TestHelpListsTheRunbook(t *testing.T) {
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	root := cli.NewRootCommand(streams, Commands()...)
	root.SetArgs([]string{"--help"})
	if code := cli.Execute(root); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	help := out.String()
	last := -1
	for _, step := range []string{"status", "precheck", "canary-gw", "shift", "migrate-ns", "migrate-gw", "tag-move", "cleanup", "history", "undo"} {
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
