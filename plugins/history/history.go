// Package history is `kubectl istio-upgrade history`: what each step changed.
package history

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Options is `history`.
type Options struct {
	genericiooptions.IOStreams
	g  *cli.Global
	ID string

	Prune          bool
	Keep           int
	OlderThan      time.Duration
	Yes            bool
	DryRunStr      string
	ConfirmTimeout time.Duration
}

// Document is printed with -o json|yaml.
type Document struct {
	cli.TypeMeta `json:",inline"`
	Entries      []*journal.Entry `json:"entries"`
}

// PruneDocument is printed by --prune with -o json|yaml: the entries removed (or, in a dry run, that
// would be).
type PruneDocument struct {
	cli.TypeMeta `json:",inline"`
	DryRun       string   `json:"dryRun,omitempty"`
	Pruned       []string `json:"pruned"`
	Kept         []string `json:"kept"`
}

// NewCommand builds `history`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams, g: g, Keep: -1}
	cmd := &cobra.Command{
		Use:   "history [ID]",
		Short: "List what each upgrade step changed, from the journal",
		Long: `Every mutating step records, before it acts, the prior state of each object it touches in a
journal ConfigMap (istio-upgrade-journal-<ID>) in the Istio namespace. history lists those entries;
with an ID it lists the objects of that entry. Use undo to put an entry's objects back.

An entry left "running" by a run that is gone (killed, out of memory, cut off) shows as interrupted;
the next mutating step marks it so, recording how the cluster was left, and a rerun of its command
resumes it. Entries this tool did not sign are shown as unsigned and never replayed.

--prune removes old entries: those neither among the newest --keep nor younger than --older-than.
What stops being undoable is listed first and asked about (-y skips the question); it takes the lock
like a mutating step, and --dry-run=client lists without removing.`,
		Example: `  # All entries, oldest first
  kubectl istio-upgrade history

  # The objects recorded by entry 0003
  kubectl istio-upgrade history 0003

  # As JSON, with every recorded object state
  kubectl istio-upgrade history -o json

  # Keep the newest 20 entries and everything from the last 30 days
  kubectl istio-upgrade history --prune --keep 20 --older-than 720h`,
		Args: cli.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.ID = args[0]
			}
			if err := o.g.Validate(); err != nil {
				return err
			}
			if err := step.ApplyLeaseEnv(); err != nil {
				return err
			}
			if o.Prune {
				return o.RunPrune(cmd.Context())
			}
			if cmd.Flags().Changed("keep") || cmd.Flags().Changed("older-than") {
				return cli.UsageErrorf("--keep and --older-than need --prune")
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&o.Prune, "prune", false, "Remove old entries (see --keep, --older-than); they can then not be undone")
	cmd.Flags().IntVar(&o.Keep, "keep", -1, "With --prune: keep the newest N entries")
	cmd.Flags().DurationVar(&o.OlderThan, "older-than", 0, "With --prune: keep entries younger than this (e.g. 720h)")
	cmd.Flags().BoolVarP(&o.Yes, "yes", "y", false, "With --prune: do not ask for confirmation")
	cli.AddDryRunFlag(cmd.Flags(), &o.DryRunStr)
	cmd.Flags().DurationVar(&o.ConfirmTimeout, "confirm-timeout", 10*time.Minute, "How long the question waits for an answer (unanswered: exit 67, nothing removed)")
	return cmd
}

// RunPrune removes the entries the rules no longer keep, under the lock.
func (o *Options) RunPrune(ctx context.Context) error {
	if o.Keep < 0 && o.OlderThan <= 0 {
		return cli.UsageErrorf("--prune needs --keep N, --older-than D, or both")
	}
	dry, err := cli.ParseDryRun(o.DryRunStr)
	if err != nil {
		return err
	}
	c, err := o.g.Clients()
	if err != nil {
		return err
	}
	j, entries, err := o.list(ctx)
	if err != nil {
		return err
	}
	doc := PruneDocument{TypeMeta: cli.NewTypeMeta("HistoryPrune"), Pruned: []string{}, Kept: []string{}}
	if dry != cli.DryRunNone {
		doc.DryRun = string(dry)
	}
	prune := journal.Prunable(entries, o.Keep, o.OlderThan, time.Now())
	gone := map[string]bool{}
	var lines []string
	for _, e := range prune {
		gone[e.ID] = true
		doc.Pruned = append(doc.Pruned, e.ID)
		what := "no longer undoable"
		if e.UndoneBy != "" || e.State == journal.StateRolledBack || e.UndoOf != "" {
			what = "its history only"
		}
		lines = append(lines, printable(fmt.Sprintf("%s %s (%s, %s): %s", e.ID, e.CommandLine(), e.Status(), e.Time.Format(time.RFC3339), what)))
	}
	for _, e := range entries {
		if !gone[e.ID] {
			doc.Kept = append(doc.Kept, e.ID)
		}
	}
	if len(prune) == 0 || dry != cli.DryRunNone {
		return o.writePrune(doc, lines)
	}
	if !o.Yes {
		ok, asked, timedOut := cli.AskWithin(o.In, o.ErrOut, fmt.Sprintf("Remove %d journal entries?\n  %s\n", len(prune), strings.Join(lines, "\n  ")), o.ConfirmTimeout)
		if timedOut || (asked && !ok) {
			return cli.Errorf(cli.ExitDeclined, "not confirmed: nothing was removed")
		}
	}
	lock, err := step.Acquire(ctx, c.Kube, o.g.IstioNamespace, step.Holder{User: journal.User(ctx, c.Kube), Command: "kubectl istio-upgrade history --prune"}, cli.NewProgress(o.ErrOut))
	if err != nil {
		return err
	}
	defer lock.Release()
	c.Fence.Guard(lock.Held)
	defer c.Fence.Guard(nil)
	if changed, err := j.Changed(ctx); err != nil {
		return err
	} else if len(changed) > 0 {
		return cli.Errorf(cli.ExitStale, "journal entries %s were written meanwhile; nothing was removed, rerun", strings.Join(changed, ", "))
	}
	if err := j.Delete(ctx, prune); err != nil {
		return err
	}
	return o.writePrune(doc, lines)
}

func (o *Options) writePrune(doc PruneDocument, lines []string) error {
	if o.g.Output != cli.OutputTable {
		return cli.WriteDocument(o.Out, o.g.Output, doc)
	}
	verb := "removed"
	if doc.DryRun != "" {
		verb = "would be removed"
	}
	if len(lines) == 0 {
		fmt.Fprintln(o.ErrOut, "Nothing to prune: every entry is kept by --keep or --older-than.")
		return nil
	}
	for _, l := range lines {
		fmt.Fprintf(o.Out, "journalentry/%s %s\n", l, verb)
	}
	return nil
}

// lockHolder is who holds the lock now ("" when nobody does), and how long ago its holder's clock
// last renewed it (a hint for people; steps judge the lease by watching it). known is false when the
// lease cannot be read: running entries are then shown as they are.
func (o *Options) lockHolder(ctx context.Context) (string, time.Duration, bool) {
	c, err := o.g.Clients()
	if err != nil {
		return "", 0, false
	}
	l, err := c.Kube.CoordinationV1().Leases(o.g.IstioNamespace).Get(ctx, step.LockName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", 0, true
	}
	if err != nil || l.Spec.HolderIdentity == nil {
		return "", 0, err == nil
	}
	var renewed time.Duration
	if l.Spec.RenewTime != nil {
		renewed = time.Since(l.Spec.RenewTime.Time)
	}
	return *l.Spec.HolderIdentity, renewed, true
}

// list reads the journal's entries, oldest first.
func (o *Options) list(ctx context.Context) (*journal.Journal, []*journal.Entry, error) {
	j, err := o.g.Journal()
	if err != nil {
		return nil, nil, err
	}
	entries, err := j.List(ctx)
	return j, entries, err
}

// Run prints the journal.
func (o *Options) Run(ctx context.Context) error {
	_, entries, err := o.list(ctx)
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
		fmt.Fprintf(o.Out, "Entry %s: %s by %s at %s: %s\n", printable(e.ID), printable(e.CommandLine()), printable(e.User), e.Time.Format("2006-01-02T15:04:05Z"), printable(e.Status()))
		for _, d := range e.Done {
			fmt.Fprintf(o.Out, "  %s\n", printable(d))
		}
		for _, k := range slices.Sorted(maps.Keys(e.Notes)) {
			fmt.Fprintf(o.Out, "  note %s: %s\n", printable(k), printable(e.Notes[k]))
		}
		rows := [][]string{}
		for _, ob := range e.Objects {
			prior := "absent (created by the step)"
			if ob.Existed {
				prior = "recorded"
			}
			rows = append(rows, []string{printable(ob.Ref.String()), prior})
		}
		return cli.WriteTable(o.Out, []string{"object", "prior state"}, rows)
	}
	holder, renewed, known := o.lockHolder(ctx)
	rows := [][]string{}
	for _, e := range entries {
		state := e.Status()
		switch {
		case e.State != journal.StateRunning || !known:
		case e.Holder != holder:
			state = journal.StateInterrupted + " (its run is gone; the next step marks it, a rerun resumes it)"
		case renewed > step.LockDuration:
			state += fmt.Sprintf(" (its lock was not renewed for %s: its run may be gone; the next step watches the lock and takes it over)", renewed.Round(time.Second))
		}
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
		rows = append(rows, []string{printable(e.ID), e.Time.Format("2006-01-02T15:04:05Z"), printable(e.Step), printable(e.User), fmt.Sprint(len(e.Objects)), printable(state), printable(e.CommandLine())})
	}
	if len(rows) == 0 {
		fmt.Fprintln(o.ErrOut, "No journal entries: no step has changed this cluster yet.")
		return nil
	}
	return cli.WriteTableWrapped(o.Out, []string{"id", "time", "step", "user", "objects", "state", "command"}, rows)
}

// printable shows a field of an entry on a terminal: anyone who can write a ConfigMap in the Istio
// namespace can plant an entry, and its fields must not move the cursor, recolour or retitle the
// terminal of whoever reads history. Control characters show as \xNN.
func printable(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
