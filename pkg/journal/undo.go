package journal

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// Action is one thing undo did (or would do, in a dry run).
type Action struct {
	Ref  ObjectRef `json:"ref"`
	Verb string    `json:"verb"` // restored, recreated, deleted, unchanged
}

// Restore puts every object of e back to its recorded state, last touched first: objects the step
// created are deleted, changed ones are written back, deleted ones are re-created. dryRun is passed
// to the apiserver (nil for a real run, []string{"All"} for a server dry run).
func (j *Journal) Restore(ctx context.Context, e *Entry, dryRun []string) ([]Action, error) {
	var actions []Action
	for i := len(e.Objects) - 1; i >= 0; i-- {
		a, err := j.RestoreObject(ctx, e.Objects[i], dryRun)
		if err != nil {
			return actions, err
		}
		actions = append(actions, a)
	}
	return actions, nil
}

// RestoreObject puts one recorded object back (see Restore). Controllers write status between our
// read and our update, so a conflict re-reads and tries again.
func (j *Journal) RestoreObject(ctx context.Context, o Object, dryRun []string) (Action, error) {
	var a Action
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		a, err = j.restoreOnce(ctx, o, dryRun)
		return err
	})
	if err != nil {
		return Action{}, fmt.Errorf("undo: %s: %w", o.Ref, err)
	}
	return a, nil
}

func (j *Journal) restoreOnce(ctx context.Context, o Object, dryRun []string) (Action, error) {
	ri := j.Dynamic.Resource(o.Ref.GVR()).Namespace(o.Ref.Namespace)
	cur, err := ri.Get(ctx, o.Ref.Name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return Action{}, fmt.Errorf("read: %w", err)
	}
	exists := err == nil
	switch {
	case !o.Existed && !exists:
		return Action{Ref: o.Ref, Verb: "unchanged"}, nil
	case !o.Existed:
		if err := ri.Delete(ctx, o.Ref.Name, metav1.DeleteOptions{DryRun: dryRun}); err != nil && !apierrors.IsNotFound(err) {
			return Action{}, fmt.Errorf("delete: %w", err)
		}
		return Action{Ref: o.Ref, Verb: "deleted"}, nil
	case !exists:
		if _, err := ri.Create(ctx, o.State.DeepCopy(), metav1.CreateOptions{DryRun: dryRun, FieldManager: ManagedBy}); err != nil {
			return Action{}, fmt.Errorf("re-create: %w", err)
		}
		return Action{Ref: o.Ref, Verb: "recreated"}, nil
	}
	if equalIgnoringServerFields(Sanitize(cur), o.State) {
		return Action{Ref: o.Ref, Verb: "unchanged"}, nil
	}
	want := o.State.DeepCopy()
	want.SetResourceVersion(cur.GetResourceVersion())
	want.SetUID(cur.GetUID())
	if _, err := ri.Update(ctx, want, metav1.UpdateOptions{DryRun: dryRun, FieldManager: ManagedBy}); err != nil {
		return Action{}, err // a conflict is retried as it is
	}
	return Action{Ref: o.Ref, Verb: "restored"}, nil
}

// NoteFollows names, on an entry that completes another (a tag move's restart), the entry it
// follows: undo takes that one back first.
const NoteFollows = "follows"

// Overwrites returns the later entries (entries oldest first) that changed one of e's objects and are
// still in effect: undoing e would silently overwrite them (e.g. delete a canary a later shift put in
// service). An undo that took the cluster back to a state after e does not count.
func Overwrites(entries []*Entry, e *Entry) []*Entry {
	pos := map[string]int{}
	for i, x := range entries {
		pos[x.ID] = i
	}
	if _, ok := pos[e.ID]; !ok {
		return nil
	}
	mine := map[ObjectRef]bool{}
	for _, o := range e.Objects {
		mine[o.Ref] = true
	}
	var out []*Entry
	for _, x := range entries[pos[e.ID]+1:] {
		if x.UndoneBy != "" || x.UndoOf == e.ID || x.State == StateRolledBack {
			continue // undone, a (failed) undo of e itself, or taken back by its own step
		}
		if t, ok := pos[x.UndoOf]; ok && x.UndoOf != "" && t > pos[e.ID] {
			continue
		}
		for _, o := range x.Objects {
			if mine[o.Ref] {
				out = append(out, x)
				break
			}
		}
	}
	return out
}
