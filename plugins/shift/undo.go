package shift

import (
	"context"
	"fmt"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/canary"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// undoTimeout bounds each wait for a restored side's rollout.
const undoTimeout = 5 * time.Minute

// side is one Deployment of a shift entry with its HPAs, as recorded and as it is now.
type side struct {
	dep      journal.Object
	hpas     []journal.Object
	recorded *appsv1.Deployment // nil when the shift created it
	current  *appsv1.Deployment // nil when it is gone
	growth   int32
}

// Undo puts a shift entry back the way shift moves traffic, never by writing both Deployments at once:
// the side that regains pods is restored first (its HPA before it, so they do not fight) and waited
// for; then the other side. A canary that was out of traffic when the shift began is scaled to 0
// before its readiness gate comes back, because pods of a rolling update behind a gate nothing sets
// never become ready and its serving pods would stay. Other objects are restored last.
func Undo(ctx context.Context, c *kube.Clients, j *journal.Journal, e *journal.Entry, dryRun []string, p *cli.Progress) ([]journal.Action, error) {
	sides, rest, err := sidesOf(ctx, c, e)
	if err != nil {
		return nil, err
	}
	var actions []journal.Action
	// A side whose HPA the entry restores too gets its count back with the HPA's range: shift moved
	// both as one split (journal.RestoreWithScale); any other count an autoscaler owns stays.
	scaled := map[journal.ObjectRef]bool{}
	for _, s := range sides {
		scaled[s.dep.Ref] = len(s.hpas) > 0
	}
	restore := func(objs ...journal.Object) error {
		for _, o := range objs {
			restoreOne := j.RestoreObject
			if scaled[o.Ref] {
				restoreOne = j.RestoreWithScale
			}
			a, err := restoreOne(ctx, o, dryRun)
			if err != nil {
				return err
			}
			actions = append(actions, a)
		}
		return nil
	}
	for _, s := range sides {
		ref := s.dep.Ref
		gated := s.recorded != nil && canary.HasServingGate(&s.recorded.Spec.Template.Spec)
		zeroed := false
		if gated && s.current != nil && !canary.HasServingGate(&s.current.Spec.Template.Spec) && replicas(s.current) > 0 {
			zeroed = true
			if _, err := c.Kube.AppsV1().Deployments(ref.Namespace).Patch(ctx, ref.Name, types.MergePatchType,
				[]byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{DryRun: dryRun, FieldManager: kube.FieldManager}); err != nil {
				return actions, fmt.Errorf("undo: scale %s to 0 before its readiness gate returns: %w", ref, err)
			}
			actions = append(actions, journal.Action{Ref: ref, Verb: "scaled to 0 (out of traffic)"})
			p.Printf("%s: scaled to 0 before it goes back behind readiness gate %s", ref, canary.ServingGate)
		}
		if s.growth > 0 {
			err = restore(append(s.hpas, s.dep)...)
		} else {
			err = restore(append([]journal.Object{s.dep}, s.hpas...)...)
		}
		if err != nil {
			return actions, err
		}
		// The count this undo zeroed comes back as recorded: the restore writes back only a count the
		// shift itself changed.
		if zeroed && replicas(s.recorded) > 0 && dryRun == nil {
			body := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas(s.recorded))
			if _, err := c.Kube.AppsV1().Deployments(ref.Namespace).Patch(ctx, ref.Name, types.MergePatchType, body,
				metav1.PatchOptions{FieldManager: kube.FieldManager}); err != nil {
				return actions, fmt.Errorf("undo: scale %s back to %d: %w", ref, replicas(s.recorded), err)
			}
		}
		// The growing side must serve before the other side shrinks; gated pods never become ready.
		if s.growth > 0 && !gated && dryRun == nil {
			wctx, cancel := context.WithTimeout(ctx, undoTimeout)
			err := kube.WaitRollouts(wctx, c.Kube, []kube.WorkloadRef{{Kind: "Deployment", Namespace: ref.Namespace, Name: ref.Name}},
				func(m string) { p.Update("%s", m) })
			cancel()
			p.Done()
			if err != nil {
				return actions, fmt.Errorf("undo: %s did not become ready, the other side was left as it is: %w", ref, err)
			}
			p.Printf("%s: %d replicas ready", ref, replicas(s.recorded))
		}
	}
	return actions, restore(rest...)
}

// sidesOf splits a shift entry into its Deployments (growing side first) and the other objects.
func sidesOf(ctx context.Context, c *kube.Clients, e *journal.Entry) ([]*side, []journal.Object, error) {
	byName := map[string]*side{}
	var sides []*side
	var hpas, rest []journal.Object
	for _, o := range e.Objects {
		switch o.Ref.Kind {
		case "Deployment":
			s := &side{dep: o}
			if o.Existed && o.State != nil {
				s.recorded = &appsv1.Deployment{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.State.Object, s.recorded); err != nil {
					return nil, nil, fmt.Errorf("undo: recorded %s: %w", o.Ref, err)
				}
			}
			cur, err := c.Kube.AppsV1().Deployments(o.Ref.Namespace).Get(ctx, o.Ref.Name, metav1.GetOptions{})
			switch {
			case err == nil:
				s.current = cur
			case !apierrors.IsNotFound(err):
				return nil, nil, fmt.Errorf("undo: read %s: %w", o.Ref, err)
			}
			var want, now int32
			if s.recorded != nil {
				want = replicas(s.recorded)
			}
			if s.current != nil {
				now = replicas(s.current)
			}
			s.growth = want - now
			byName[o.Ref.Namespace+"/"+o.Ref.Name] = s
			sides = append(sides, s)
		case "HorizontalPodAutoscaler":
			hpas = append(hpas, o)
		default:
			rest = append(rest, o)
		}
	}
	for _, h := range hpas {
		target := ""
		if h.State != nil {
			target, _, _ = unstructured.NestedString(h.State.Object, "spec", "scaleTargetRef", "name")
		}
		if s, ok := byName[h.Ref.Namespace+"/"+target]; ok {
			s.hpas = append(s.hpas, h)
		} else {
			rest = append(rest, h)
		}
	}
	sort.SliceStable(sides, func(a, b int) bool { return sides[a].growth > sides[b].growth })
	return sides, rest, nil
}
