package journal

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		o := e.Objects[i]
		ri := j.Dynamic.Resource(o.Ref.GVR()).Namespace(o.Ref.Namespace)
		cur, err := ri.Get(ctx, o.Ref.Name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return actions, fmt.Errorf("undo: read %s: %w", o.Ref, err)
		}
		exists := err == nil
		switch {
		case !o.Existed && !exists:
			actions = append(actions, Action{Ref: o.Ref, Verb: "unchanged"})
		case !o.Existed:
			if err := ri.Delete(ctx, o.Ref.Name, metav1.DeleteOptions{DryRun: dryRun}); err != nil && !apierrors.IsNotFound(err) {
				return actions, fmt.Errorf("undo: delete %s: %w", o.Ref, err)
			}
			actions = append(actions, Action{Ref: o.Ref, Verb: "deleted"})
		case !exists:
			if _, err := ri.Create(ctx, o.State.DeepCopy(), metav1.CreateOptions{DryRun: dryRun}); err != nil {
				return actions, fmt.Errorf("undo: re-create %s: %w", o.Ref, err)
			}
			actions = append(actions, Action{Ref: o.Ref, Verb: "recreated"})
		default:
			want := o.State.DeepCopy()
			want.SetResourceVersion(cur.GetResourceVersion())
			want.SetUID(cur.GetUID())
			if equalIgnoringServerFields(Sanitize(cur), o.State) {
				actions = append(actions, Action{Ref: o.Ref, Verb: "unchanged"})
				continue
			}
			if _, err := ri.Update(ctx, want, metav1.UpdateOptions{DryRun: dryRun}); err != nil {
				return actions, fmt.Errorf("undo: restore %s: %w", o.Ref, err)
			}
			actions = append(actions, Action{Ref: o.Ref, Verb: "restored"})
		}
	}
	return actions, nil
}
