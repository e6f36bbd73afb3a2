// Package history is `kubectl istio-upgrade history`: what each step changed.
package history

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
)

// Options is `history`.
type Options struct {
	genericiooptions.IOStreams
	g  *cli.Global
	ID string
}

// Document is printed with -o json|yaml.
type Document struct {
	cli.TypeMeta `json:",inline"`
	Entries      []*journal.Entry `json:"entries"`
}

// NewCommand builds `history`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams, g: g}
	return &cobra.Command{
		Use:   "history [ID]",
		Short: "List what each upgrade step changed, from the journal",
		Long: `Every mutating step records, before it acts, the prior state of each object it touches in a
journal ConfigMap (istio-upgrade-journal-<ID>) in the Istio namespace. history lists those entries;
with an ID it lists the objects of that entry. Use undo to put an entry's objects back.`,
		Example: `  # All entries, oldest first
  kubectl istio-upgrade history

  # The objects recorded by entry 0003
  kubectl istio-upgrade history 0003

  # As JSON, with every recorded object state
  kubectl istio-upgrade history -o json`,
		Args: cli.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.ID = args[0]
			}
			if err := o.g.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
}

// Run prints the journal.
func (o *Options) Run(ctx context.Context) error {
	j, err := o.g.Journal()
	if err != nil {
		return err
	}
	entries, err := j.List(ctx)
	if err != nil {
		return err
	}
	if o.ID != "" {
		var found []*journal.Entry
		for _, e := range entries {
			if e.ID == o.ID {
				found = append(found, e)
			}
		}
		if len(found) == 0 {
			return cli.BadInputf("journal entry %q not found (see `kubectl istio-upgrade history`)", o.ID)
		}
		entries = found
	}
	if o.g.Output != cli.OutputTable {
		return cli.WriteDocument(o.Out, o.g.Output, Document{TypeMeta: cli.NewTypeMeta("History"), Entries: entries})
	}
	if o.ID != "" {
		e := entries[0]
		fmt.Fprintf(o.Out, "Entry %s: %s by %s at %s: %s\n", e.ID, e.CommandLine(), e.User, e.Time.Format("2006-01-02T15:04:05Z"), e.Status())
		for _, d := range e.Done {
			fmt.Fprintf(o.Out, "  %s\n", d)
		}
		for _, k := range slices.Sorted(maps.Keys(e.Notes)) {
			fmt.Fprintf(o.Out, "  note %s: %s\n", k, e.Notes[k])
		}
		rows := [][]string{}
		for _, ob := range e.Objects {
			prior := "absent (created by the step)"
			if ob.Existed {
				prior = "recorded"
			}
			rows = append(rows, []string{ob.Ref.String(), prior})
		}
		return cli.WriteTable(o.Out, []string{"object", "prior state"}, rows)
	}
	rows := [][]string{}
	for _, e := range entries {
		state := e.Status()
		switch {
		case e.UndoneBy != "":
			state += " by " + e.UndoneBy
		case e.UndoOf != "":
			state += " (undo of " + e.UndoOf + ")"
		}
		switch {
		case e.Unreadable != "":
			state = "unreadable: " + e.Unreadable
		case !e.Signed:
			state += " (unsigned: undo refuses it)"
		}
		if v := e.Notes[journal.NoteServing]; v != "" {
			short, _, _ := strings.Cut(v, " (") // the whole note is in `history ID`
			state += "; serving: " + short
		}
		rows = append(rows, []string{e.ID, e.Time.Format("2006-01-02T15:04:05Z"), e.Step, e.User, fmt.Sprint(len(e.Objects)), state, e.CommandLine()})
	}
	if len(rows) == 0 {
		fmt.Fprintln(o.ErrOut, "No journal entries: no step has changed this cluster yet.")
		return nil
	}
	return cli.WriteTableWrapped(o.Out, []string{"id", "time", "step", "user", "objects", "state", "command"}, rows)
}
