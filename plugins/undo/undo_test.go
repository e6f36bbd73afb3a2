package undo

import (
	"testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
)

func TestPick(t *testing.T) {
	entries := []*journal.Entry{
		{ID: "0001", Step: "migrate-ns"},
		{ID: "0002", Step: "tag-move", UndoneBy: "0003"},
		{ID: "0003", Step: "undo", UndoOf: "0002"},
	}
	cases := []struct {
		id, want string
		code     cli.ExitCode
	}{
		{"", "0001", 0},                // last that is neither an undo nor undone
		{"0001", "0001", 0},            // explicit
		{"0002", "", cli.ExitBadInput}, // already undone
		{"0009", "", cli.ExitBadInput}, // unknown
		{"0003", "0003", 0},            // an undo can be undone explicitly
	}
	for _, c := range cases {
		e, err := pick(entries, c.id)
		if cli.CodeOf(err) != c.code || (e != nil && e.ID != c.want) {
			t.Errorf("pick(%q) = %v, %v; want %s / code %d", c.id, e, err, c.want, c.code)
		}
	}
	if _, err := pick(entries[1:], ""); cli.CodeOf(err) != cli.ExitBadInput {
		t.Errorf("nothing to undo should be bad input, got %v", err)
	}
}
