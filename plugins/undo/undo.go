// Package undo is `kubectl istio-upgrade undo`: put a journal entry's objects back.
package undo

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Restorer undoes one step's entry in the order that step needs (shift: the side regaining pods
// first), instead of object by object.
type Restorer func(ctx context.Context, c *kube.Clients, j *journal.Journal, e *journal.Entry, dryRun []string, p *cli.Progress) ([]journal.Action, error)

// Restorers are the step-specific restorers, by step name; other steps are restored object by object.
type Restorers map[string]Restorer

// Options is `undo`.
type Options struct {
	genericiooptions.IOStreams
	g         *cli.Global
	restorers Restorers

	ID        string
	DryRunStr string
	Yes       bool
	Args      []string

	dryRun cli.DryRun
}

// Command builds `undo` with the steps' restorers.
func Command(restorers Restorers) cli.CommandFactory {
	return func(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
		return newCommand(g, streams, restorers)
	}
}

func newCommand(g *cli.Global, streams genericiooptions.IOStreams, restorers Restorers) *cobra.Command {
	o := &Options{IOStreams: streams, g: g, restorers: restorers}
	cmd := &cobra.Command{
		Use:   "undo [ID]",
		Short: "Restore the objects a step changed to their recorded state",
		Long: `Restore every object of a journal entry to the state recorded before the step acted: objects the
step changed are written back, objects it deleted are re-created, objects it created are deleted.
Without ID, the last entry that is not an undo and was not undone. The undo is itself journaled, so
it can be undone too. Prints the proxy-status diff (before → after).

An entry whose objects a later step changed again is refused (exit 65) until that later entry is
undone: undoing canary-gw while a later shift has the canary serving would delete live capacity.
A shift is undone the way shift moves traffic: the side that regains pods is restored first and
waited for, then the other; a canary that was out of traffic is scaled to 0 before its readiness
gate comes back, so serving pods never drop below what the shift kept. A migrate-ns is undone as its
--rollback-on-failure does: namespace labels first, then a rolling restart of the workloads it
restarted, watched until complete (exit 75 if not).`,
		Example: `  # Undo the last step
  kubectl istio-upgrade undo

  # See what undoing entry 0002 would do, without changing anything
  kubectl istio-upgrade undo 0002 --dry-run=server`,
		Args: cli.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.ID = args[0]
			}
			o.Args = args
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cli.AddDryRunFlag(cmd.Flags(), &o.DryRunStr)
	cmd.Flags().BoolVarP(&o.Yes, "yes", "y", false, "Do not ask for confirmation")
	return cmd
}

// Validate checks flags.
func (o *Options) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	d, err := cli.ParseDryRun(o.DryRunStr)
	o.dryRun = d
	return err
}

// Run restores the entry.
func (o *Options) Run(ctx context.Context) error {
	j, err := o.g.Journal()
	if err != nil {
		return err
	}
	entries, err := j.List(ctx)
	if err != nil {
		return err
	}
	e, err := pick(entries, o.ID)
	if err != nil {
		return err
	}
	if f := e.Notes[journal.NoteFollows]; f != "" {
		for _, x := range entries {
			if x.ID == f && x.UndoneBy == "" {
				return cli.BadInputf("entry %s (%s) restarted workloads after entry %s (%s): undo %s first, then %s, so the restart puts the pods back on the revision it restores",
					e.ID, e.Step, x.ID, x.Step, x.ID, e.ID)
			}
		}
	}
	if later := journal.Overwrites(entries, e); len(later) > 0 {
		var names []string
		for _, x := range later {
			names = append(names, fmt.Sprintf("%s (%s)", x.ID, x.Step))
		}
		return cli.BadInputf("entry %s (%s) cannot be undone yet: later entries changed its objects again and are still in effect: %s; undo them first, newest first",
			e.ID, e.Step, strings.Join(names, ", "))
	}
	res := cli.NewResult("undo", o.dryRun)
	if o.dryRun == cli.DryRunClient {
		for i := len(e.Objects) - 1; i >= 0; i-- {
			ob := e.Objects[i]
			verb := "restored"
			if !ob.Existed {
				verb = "deleted"
			}
			res.Add(ob.Ref.String(), verb)
		}
		res.Summary = fmt.Sprintf("Would undo entry %s (%s %s).", e.ID, e.Step, strings.Join(e.Args, " "))
		return res.Write(o.Out, o.g.Output)
	}
	before, err := o.g.Snapshot(ctx)
	if err != nil {
		return err
	}
	var rec *journal.Recorder
	if o.dryRun == cli.DryRunNone {
		if err := cli.Confirm(o.In, o.ErrOut, o.Yes, fmt.Sprintf("Undo entry %s (%s %s): put %d objects back?", e.ID, e.Step, strings.Join(e.Args, " "), len(e.Objects))); err != nil {
			return err
		}
		rec = j.Begin("undo", append([]string{e.ID}, o.Args...))
		rec.Entry().UndoOf = e.ID
		for _, ob := range e.Objects {
			if err := rec.Capture(ctx, ob.Ref); err != nil {
				return err
			}
		}
		if err := rec.Save(ctx); err != nil {
			return err
		}
	}
	var actions []journal.Action
	if restore, ok := o.restorers[e.Step]; ok {
		c, cerr := o.g.Clients()
		if cerr != nil {
			return cerr
		}
		actions, err = restore(ctx, c, j, e, o.dryRun.APIDryRun(), cli.NewProgress(o.ErrOut))
	} else {
		actions, err = j.Restore(ctx, e, o.dryRun.APIDryRun())
	}
	for _, a := range actions {
		res.Add(a.Ref.String(), a.Verb)
	}
	if err != nil {
		_ = res.Write(o.Out, o.g.Output)
		return err
	}
	if rec != nil {
		e.UndoneBy = rec.Entry().ID
		if err := j.Update(ctx, e); err != nil {
			return err
		}
		res.Journal = rec.Entry().ID
	}
	after, err := o.g.Snapshot(ctx)
	if err != nil {
		return err
	}
	res.Diff = mesh.Compare(before, after)
	res.Summary = fmt.Sprintf("Undid entry %s (%s): %d objects.", e.ID, e.Step, len(actions))
	return res.Write(o.Out, o.g.Output)
}

// pick chooses the entry to undo: the given ID, else the last one that is neither an undo nor undone.
func pick(entries []*journal.Entry, id string) (*journal.Entry, error) {
	if id != "" {
		for _, e := range entries {
			if e.ID == id {
				if e.UndoneBy != "" {
					return nil, cli.BadInputf("journal entry %s was already undone by entry %s", id, e.UndoneBy)
				}
				return e, nil
			}
		}
		return nil, cli.BadInputf("journal entry %q not found (see `kubectl istio-upgrade history`)", id)
	}
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].UndoOf == "" && entries[i].UndoneBy == "" {
			return entries[i], nil
		}
	}
	return nil, cli.BadInputf("nothing to undo: the journal has no entry that was not undone already")
}
