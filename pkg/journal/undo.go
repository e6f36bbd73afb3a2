package journal

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
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
	return j.restore(ctx, o, dryRun, false)
}

// RestoreWithScale is RestoreObject for a workload whose autoscaler the same entry restores too (shift
// moved both as one split): its replica count the step changed goes back with the autoscaler's range,
// whatever targets it now.
func (j *Journal) RestoreWithScale(ctx context.Context, o Object, dryRun []string) (Action, error) {
	return j.restore(ctx, o, dryRun, true)
}

func (j *Journal) restore(ctx context.Context, o Object, dryRun []string, ownScale bool) (Action, error) {
	var a Action
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		a, err = j.decide(ctx, o, dryRun, true, ownScale)
		return err
	})
	if err != nil {
		return Action{}, fmt.Errorf("undo: %s: %w", o.Ref, err)
	}
	return a, nil
}

// Preview says what undoing e would do to each object, writing nothing, and refuses (a DriftError
// naming every object and field) when others changed since the step what the step changed.
func (j *Journal) Preview(ctx context.Context, e *Entry) ([]Action, error) {
	var actions []Action
	var drifts []string
	for i := len(e.Objects) - 1; i >= 0; i-- {
		o := e.Objects[i]
		if o.Slim {
			actions = append(actions, Action{Ref: o.Ref, Verb: "restarted if the step restarted it"})
			continue
		}
		a, err := j.decide(ctx, o, nil, false, false)
		var d *DriftError
		switch {
		case errors.As(err, &d):
			drifts = append(drifts, d.Error())
		case err != nil:
			return nil, fmt.Errorf("undo: %s: %w", o.Ref, err)
		default:
			actions = append(actions, a)
		}
	}
	if len(drifts) > 0 {
		return actions, &DriftError{Why: "changed since the step", Fields: drifts, list: true}
	}
	return actions, nil
}

// decide works out what undo does to one object and, when write is set, does it.
func (j *Journal) decide(ctx context.Context, o Object, dryRun []string, write, ownScale bool) (Action, error) {
	if o.Slim {
		return Action{}, fmt.Errorf("only its restart was recorded: its step's own undo restarts it")
	}
	ri := j.Dynamic.Resource(o.Ref.GVR()).Namespace(o.Ref.Namespace)
	cur, err := ri.Get(ctx, o.Ref.Name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return Action{}, fmt.Errorf("read: %w", err)
	}
	exists := err == nil
	if !o.Left {
		if !write {
			return Action{Ref: o.Ref, Verb: "restored"}, nil
		}
		return j.restoreWhole(ctx, ri, o, cur, exists, dryRun)
	}
	switch {
	case !o.Existed && !exists:
		return Action{Ref: o.Ref, Verb: "unchanged"}, nil
	case !o.Existed: // the step created it: delete it, unless it is not the object the step left
		if o.UID != "" && string(cur.GetUID()) != o.UID && !j.Force {
			return Action{}, &DriftError{Ref: o.Ref, Why: "was deleted and created again since the step"}
		}
		if o.After != nil && !j.Force {
			if d, _ := Compare(o.After.Object, o.After.Object, Sanitize(cur).Object, false); d.Kept > 0 {
				return Action{}, &DriftError{Ref: o.Ref, Why: fmt.Sprintf("the step created it and %d of its fields were changed since", d.Kept)}
			}
		}
		uid := cur.GetUID()
		if !write {
			return Action{Ref: o.Ref, Verb: "deleted"}, nil
		}
		if err := ri.Delete(ctx, o.Ref.Name, metav1.DeleteOptions{DryRun: dryRun, Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
			return Action{}, fmt.Errorf("delete: %w", err)
		}
		return Action{Ref: o.Ref, Verb: "deleted"}, nil
	case !exists: // deleted by the step (cleanup), or by someone since
		if !o.Gone && !j.Force {
			return Action{}, &DriftError{Ref: o.Ref, Why: "was deleted since the step"}
		}
		if !write {
			return Action{Ref: o.Ref, Verb: "recreated"}, nil
		}
		if _, err := ri.Create(ctx, o.State.DeepCopy(), metav1.CreateOptions{DryRun: dryRun, FieldManager: ManagedBy}); err != nil {
			return Action{}, fmt.Errorf("re-create: %w", err)
		}
		return Action{Ref: o.Ref, Verb: "recreated"}, nil
	case o.Gone: // the step deleted it and someone created it again
		if !j.Force {
			return Action{}, &DriftError{Ref: o.Ref, Why: "the step deleted it and it was created again since"}
		}
		if !write {
			return Action{Ref: o.Ref, Verb: "restored"}, nil
		}
		return j.restoreWhole(ctx, ri, o, cur, exists, dryRun)
	}
	d, fields := Compare(o.State.Object, o.After.Object, Sanitize(cur).Object, !ownScale && j.autoscaled(ctx, o.Ref))
	if len(d.Conflicts) > 0 && !j.Force {
		return Action{}, &DriftError{Ref: o.Ref, Fields: d.Conflicts, Why: "fields the step changed were changed again since"}
	}
	if len(fields) == 0 {
		return Action{Ref: o.Ref, Verb: "unchanged"}, nil
	}
	if !write {
		return Action{Ref: o.Ref, Verb: "restored"}, nil
	}
	want := &unstructured.Unstructured{Object: Desired(o.State.Object, cur.Object, fields)}
	if _, err := ri.Update(ctx, want, metav1.UpdateOptions{DryRun: dryRun, FieldManager: ManagedBy}); err != nil {
		return Action{}, err // a conflict (resourceVersion) is retried on a fresh read
	}
	verb := fmt.Sprintf("restored %d fields", len(fields))
	if d.Kept > 0 {
		verb += fmt.Sprintf(" (%d fields changed by others since kept)", d.Kept)
	}
	return Action{Ref: o.Ref, Verb: verb}, nil
}

// restoreWhole writes the recorded object back whole: entries written before after-states existed,
// and --force over an object deleted and created again.
func (j *Journal) restoreWhole(ctx context.Context, ri dynamic.ResourceInterface, o Object, cur *unstructured.Unstructured, exists bool, dryRun []string) (Action, error) {
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
		return Action{}, err
	}
	return Action{Ref: o.Ref, Verb: "restored"}, nil
}

// DriftError is an undo refused because others changed the object since the step: undoing would
// overwrite their change. --force restores anyway.
type DriftError struct {
	Ref    ObjectRef
	Fields []string
	Why    string
	list   bool // Fields are whole messages, one per object (Check)
}

func (e *DriftError) Error() string {
	if e.list {
		return fmt.Sprintf("%d objects %s:\n  %s", len(e.Fields), e.Why, strings.Join(e.Fields, "\n  "))
	}
	msg := fmt.Sprintf("%s %s", e.Ref, e.Why)
	if len(e.Fields) > 0 {
		msg += ": " + strings.Join(e.Fields, ", ")
	}
	return msg + "; undo would overwrite that (nothing was changed for it; --force restores it anyway)"
}

// NoteServing, on a shift that ended at 100 %, says which Deployment (and Helm release) serves.
const NoteServing = "serving"

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

var hpaGVR = schema.GroupVersionResource{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}

// autoscaled says a HorizontalPodAutoscaler targets ref now. Unreadable HPAs count as none: undo then
// writes back only a replica count the step itself changed.
func (j *Journal) autoscaled(ctx context.Context, ref ObjectRef) bool {
	switch ref.Kind {
	case "Deployment", "StatefulSet", "ReplicaSet":
	default:
		return false
	}
	l, err := j.Dynamic.Resource(hpaGVR).Namespace(ref.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false
	}
	for _, h := range l.Items {
		kind, _, _ := unstructured.NestedString(h.Object, "spec", "scaleTargetRef", "kind")
		name, _, _ := unstructured.NestedString(h.Object, "spec", "scaleTargetRef", "name")
		if kind == ref.Kind && name == ref.Name {
			return true
		}
	}
	return false
}
