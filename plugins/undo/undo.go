// Package undo is `kubectl istio-upgrade undo`: put a journal entry's objects back.
package undo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Permissions are what undo needs beside the engine's, as docs/rbac.md lists them.
var Permissions = []step.Permission{
	step.Perm("get, and update, create or delete as the entry needs", "the entry's objects", "where they live"),
	step.Perm("patch, list, watch", "workloads of the entry (restarts, scaling)", "their namespaces"),
	step.Perm("list", "horizontalpodautoscalers (a replica count an autoscaler owns is left as it is)", "the workloads' namespaces"),
}

// Options is `undo`: the entry to undo and how.
type Options struct {
	ID    string
	Force bool

	entry    *journal.Entry
	j        *journal.Journal
	restorer step.Restorer
	preview  []journal.Action
}

// Name is the step's name in the journal and results.
func (o *Options) Name() string { return "undo" }

// NewCommand builds `undo`; the steps' own restorers are the registry's (step.Register).
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "undo [ID]",
		Short: "Restore the objects a step changed to their recorded state",
		Long: `Put back what a journal entry's step changed: fields the step changed are set back to their
recorded values, objects it deleted are re-created, objects it created are deleted. Only what the step
changed is put back: a label or field others changed since, that the step never touched, stays.

Before anything is changed, every object is compared with the state the step left. When others
changed a field the step changed (or deleted or re-created an object the step touched), undo refuses
with exit 68 and lists each object and field; --force restores them anyway. Only entries this tool
wrote are replayed: each entry is signed with a key kept in the Secret istio-upgrade-journal-key, and
names only the kinds its step touches; anything else is refused (exit 65). The question lists who ran
the step, when, and what undo will do to each object.

Without ID, the last entry that is not an undo, was not undone and was not rolled back by its own step.
One command is one entry: a tag-move --restart is undone whole, the tag first, then its workloads
restarted onto the old revision. The undo is itself journaled, so it can be undone too (in its step's
order: a migrate-ns undo is undone by relabelling first, then restarting); a failed undo is retried by
running it again. Prints the proxy-status diff (before → after).

An entry whose objects a later step changed again is refused (exit 66) until that later entry is
undone: undoing canary-gw while a later shift has the canary serving would delete live capacity.
A shift is undone the way shift moves traffic: the side that regains pods is restored first and
waited for, then the other; a canary that was out of traffic is scaled to 0 before its readiness
gate comes back, so serving pods never drop below what the shift kept. A migrate-ns is undone as its
--rollback-on-failure does: namespace labels first, then a rolling restart of the workloads it
restarted, watched until complete (exit 75 if not).`,
		Example: `  # Undo the last step
  kubectl istio-upgrade undo

  # See what undoing entry 0002 would do, without changing anything
  kubectl istio-upgrade undo 0002 --dry-run=server

  # Someone changed a label migrate-ns set since: put it back anyway
  kubectl istio-upgrade undo 0002 --force`,
		Args: cli.MaximumNArgs(1),
	}
	cmd.Flags().BoolVar(&o.Force, "force", false, "Restore fields others changed since the step too (undo refuses with exit 68 and lists them otherwise)")
	return step.NewCommand(g, streams, o, cmd)
}

// Validate takes the entry ID.
func (o *Options) Validate(_ *step.Run, args []string) error {
	if len(args) == 1 {
		o.ID = args[0]
	}
	return nil
}

// Plan picks the entry and refuses one that later steps changed again.
func (o *Options) Plan(ctx context.Context, r *step.Run) (*step.Plan, error) {
	o.j = r.J
	entries, err := o.j.Entries(ctx)
	if err != nil {
		return nil, err
	}
	e, err := pick(entries, o.ID)
	if err != nil {
		return nil, err
	}
	if f := e.Notes[journal.NoteFollows]; f != "" {
		for _, x := range entries {
			if x.ID == f && x.UndoneBy == "" {
				return nil, cli.Errorf(cli.ExitBlocked, "entry %s (%s) restarted workloads after entry %s (%s): undo %s first, then %s, so the restart puts the pods back on the revision it restores",
					e.ID, e.Step, x.ID, x.Step, x.ID, e.ID)
			}
		}
	}
	if later := journal.Overwrites(entries, e); len(later) > 0 {
		var names []string
		for _, x := range later {
			names = append(names, fmt.Sprintf("%s (%s)", x.ID, x.Step))
		}
		return nil, cli.Errorf(cli.ExitBlocked, "entry %s (%s) cannot be undone yet: later entries changed its objects again and are still in effect: %s; undo them first, newest first",
			e.ID, e.Step, strings.Join(names, ", "))
	}
	if err := journal.Trusted(e); err != nil {
		return nil, cli.BadInputf("%v", err)
	}
	for _, x := range entries {
		if e.UndoOf != "" && x.ID == e.UndoOf && len(x.Helm) > 0 {
			return nil, cli.Errorf(cli.ExitBlocked, "entry %s rolled back the helm releases of entry %s (%s): run that step again rather than undoing its undo", e.ID, x.ID, x.CommandLine())
		}
	}
	o.entry, o.restorer = e, o.restorerFor(e, entries)
	o.j.Force = o.Force
	o.preview, err = o.j.Preview(ctx, e)
	if err != nil {
		return nil, err
	}
	lines := make([]string, 0, len(o.preview)+len(e.Helm))
	for i := len(e.Helm) - 1; i >= 0; i-- {
		lines = append(lines, e.Helm[i].UndoCommand())
	}
	for _, a := range o.preview {
		lines = append(lines, a.Ref.String()+" "+a.Verb)
	}
	p := &step.Plan{Question: fmt.Sprintf("Undo entry %s (%s, %s by %s at %s):\n  %s\n?", e.ID, e.CommandLine(), e.Status(), e.User,
		e.Time.Format(time.RFC3339), strings.Join(lines, "\n  "))}
	for _, ob := range e.Objects {
		if ob.Slim {
			p.Slim = append(p.Slim, ob.Ref)
		} else {
			p.Record = append(p.Record, ob.Ref)
		}
		switch ob.Ref.Kind {
		case "Deployment", "StatefulSet", "DaemonSet": // restorers restart, scale and watch workloads
			p.Access = append(p.Access, step.On(ob.Ref, "patch", "list", "watch")...)
			// whether an autoscaler owns the replica count (then undo leaves it)
			p.Access = append(p.Access, kube.Can("autoscaling", "horizontalpodautoscalers", ob.Ref.Namespace, "list")...)
		}
	}
	verbs := map[string]string{"restored": "update", "recreated": "create", "deleted": "delete"}
	for _, a := range o.preview {
		verb, _, _ := strings.Cut(a.Verb, " ")
		if v, ok := verbs[verb]; ok {
			p.Access = append(p.Access, step.On(a.Ref, v)...)
		}
	}
	return p, nil
}

// restorerFor is e's step's own restorer; an undo entry is undone by the restorer of the step it
// undid (its order: namespace labels before restarts, the tag before its workloads).
func (o *Options) restorerFor(e *journal.Entry, entries []*journal.Entry) step.Restorer {
	name := e.Step
	if e.UndoOf != "" {
		for _, x := range entries {
			if x.ID == e.UndoOf {
				name = x.Step
			}
		}
	}
	return step.RestorerOf(name)
}

// Apply restores the entry with its step's own restorer (object by object for the others) and marks
// it undone.
func (o *Options) Apply(ctx context.Context, r *step.Run) error {
	e := o.entry
	if r.DryRun == cli.DryRunClient {
		for i := len(e.Helm) - 1; i >= 0; i-- {
			h := e.Helm[i]
			r.Record("helmrelease/"+h.Namespace+"/"+h.Release, h.UndoVerb())
		}
		for _, a := range o.preview {
			r.Record(a.Ref.String(), a.Verb)
		}
		r.Result.Summary = fmt.Sprintf("Would undo entry %s (%s).", e.ID, e.CommandLine())
		return nil
	}
	if r.Live() {
		r.Entry().UndoOf = e.ID
	}
	var actions []journal.Action
	var err error
	if o.restorer != nil {
		actions, err = o.restorer(ctx, r.C, o.j, e, r.DryRun.APIDryRun(), r.Progress)
	} else {
		actions, err = o.j.Restore(ctx, e, r.DryRun.APIDryRun())
	}
	for _, a := range actions {
		r.Record(a.Ref.String(), a.Verb)
	}
	if err != nil {
		return err
	}
	if r.Live() {
		e.UndoneBy = r.Entry().ID
		if err := o.j.Update(ctx, e); err != nil {
			return err
		}
	}
	r.Result.Summary = fmt.Sprintf("Undid entry %s (%s): %d objects.", e.ID, e.CommandLine(), len(actions))
	return nil
}

// pick chooses the entry to undo: the given ID, else the last one that is neither an undo nor undone.
func pick(entries []*journal.Entry, id string) (*journal.Entry, error) {
	if id != "" {
		for _, e := range entries {
			if e.ID == id {
				if e.UndoneBy != "" {
					return nil, cli.BadInputf("journal entry %s was already undone by entry %s", id, e.UndoneBy)
				}
				if e.State == journal.StateRolledBack {
					return nil, cli.BadInputf("journal entry %s was rolled back by its own step: nothing to undo", id)
				}
				return e, nil
			}
		}
		return nil, cli.BadInputf("journal entry %q not found (see `kubectl istio-upgrade history`)", id)
	}
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].UndoOf == "" && entries[i].UndoneBy == "" && entries[i].State != journal.StateRolledBack {
			return entries[i], nil
		}
	}
	return nil, cli.BadInputf("nothing to undo: the journal has no entry that was not undone already")
}
