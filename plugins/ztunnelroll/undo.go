package ztunnelroll

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// undoTimeout bounds the wait for one node's agent to be back.
const undoTimeout = 5 * time.Minute

// Revert puts the failed batch's nodes back on the pods they ran (--rollback-on-failure), still
// cordoned, and uncordons them after. With no
// batch done before it, the DaemonSets get their recorded template and strategy back; otherwise they
// keep the target with OnDelete (the nodes already moved stay moved) and the roll is not complete, so
// the entry stays undoable.
func (o *Options) Revert(ctx context.Context, r *step.Run, _ error) (bool, error) {
	// The failed batch's nodes stayed cordoned for the rollback: uncordoned once it is done, or failed.
	defer func() { o.uncordon(context.WithoutCancel(ctx), r, o.held); o.held = nil }()
	if !o.RollbackOnFailure || o.done >= len(o.batches) {
		return false, nil
	}
	nodes := o.batches[o.done]
	e := r.Entry()
	r.Progress.Printf("rolling back batch %d (%s)", o.done+1, nodeList(nodes))
	for _, n := range nodes {
		for i := len(o.sets) - 1; i >= 0; i-- {
			a := o.sets[i]
			hash := e.Notes[HashNote(n, a.component)]
			if hash == "" {
				continue
			}
			if err := RollBack(ctx, r.C.Kube, a.ds.Namespace, a.ds.Name, a.component, n, hash, r.Progress, o.Timeout); err != nil {
				return false, err
			}
			r.Record("node/"+n+"/"+a.component, "rolled back")
		}
		o.det.RolledBack = append(o.det.RolledBack, n)
	}
	for _, a := range o.sets {
		planned := a.ds
		verb := "template and updateStrategy restored"
		mutate := func(d *appsv1.DaemonSet) { restoreSpec(d, planned) }
		if o.done > 0 {
			verb = "template set to " + o.rev + " again (nodes already rolled stay)"
			mutate = o.toTarget(a, r.Before.IstioNamespace)
		}
		if err := o.update(ctx, r, a.ds.Name, verb, mutate); err != nil {
			return false, err
		}
	}
	return o.done == 0, nil
}

// restoreSpec gives d the template, strategy and the metadata a roll sets (istio.io/rev, the kept
// strategy) of was.
func restoreSpec(d, was *appsv1.DaemonSet) {
	d.Spec.Template = *was.Spec.Template.DeepCopy()
	d.Spec.UpdateStrategy = *was.Spec.UpdateStrategy.DeepCopy()
	copyKey(&d.Labels, was.Labels, istio.LabelRev)
	copyKey(&d.Annotations, was.Annotations, istio.LabelRev)
	copyKey(&d.Annotations, was.Annotations, AnnotationOwnStrategy)
}

func copyKey(dst *map[string]string, src map[string]string, key string) {
	v, ok := src[key]
	switch {
	case ok && *dst == nil:
		*dst = map[string]string{key: v}
	case ok:
		(*dst)[key] = v
	default:
		delete(*dst, key)
	}
}

// Undo rolls back the nodes the entry's run moved, last batch first and ztunnel before istio-cni on
// each node (the reverse of the roll), each back on the template it ran (its ControllerRevision), then
// gives the DaemonSets the template and strategy the entry recorded.
func Undo(ctx context.Context, c *kube.Clients, _ *journal.Journal, e *journal.Entry, dryRun []string, p *cli.Progress) ([]journal.Action, error) {
	var actions []journal.Action
	sets := map[string]journal.Object{}
	for _, o := range e.Objects {
		if o.Ref.Kind == "DaemonSet" && o.State != nil {
			switch o.Ref.Name {
			case istio.ZtunnelDaemonSet:
				sets[mesh.ComponentZtunnel] = o
			case istio.CNIDaemonSet:
				sets[mesh.ComponentCNI] = o
			}
		}
	}
	var batches [][]string
	for i := 0; e.Notes[BatchNote(i)] != ""; i++ {
		batches = append(batches, splitNodes(e.Notes[BatchNote(i)]))
	}
	for b := len(batches) - 1; b >= 0; b-- {
		nodes := slices.Clone(batches[b])
		slices.Reverse(nodes)
		for _, n := range nodes { // one at a time: at most one node without a serving ztunnel
			// Cordoned while its agents go back, as the roll did; uncordoned after unless it already was.
			release, err := cordonFor(ctx, c.Kube, n, "undo of entry "+e.ID, dryRun)
			if err != nil {
				return actions, fmt.Errorf("undo: %w", err)
			}
			for _, comp := range []string{mesh.ComponentZtunnel, mesh.ComponentCNI} {
				o, ok := sets[comp]
				hash := e.Notes[HashNote(n, comp)]
				if !ok || hash == "" {
					continue
				}
				if dryRun == nil {
					if err := RollBack(ctx, c.Kube, o.Ref.Namespace, o.Ref.Name, comp, n, hash, p, undoTimeout); err != nil {
						_ = release()
						return actions, fmt.Errorf("undo: %w", err)
					}
				}
				actions = append(actions, journal.Action{Ref: o.Ref, Verb: fmt.Sprintf("node %s rolled back to the pod template it ran (%s)", n, hash)})
			}
			if err := release(); err != nil {
				return actions, fmt.Errorf("undo: uncordon node %s: %w (kubectl uncordon %s)", n, err, n)
			}
		}
	}
	for _, comp := range []string{mesh.ComponentCNI, mesh.ComponentZtunnel} {
		o, ok := sets[comp]
		if !ok {
			continue
		}
		var was appsv1.DaemonSet
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.State.Object, &was); err != nil {
			return actions, fmt.Errorf("undo: recorded %s: %w", o.Ref, err)
		}
		if len(batches) == 0 { // an undo's entry: every node goes back to the recorded template, one by one
			a, err := rollAll(ctx, c.Kube, o, &was, comp, dryRun, p)
			actions = append(actions, a...)
			if err != nil {
				return actions, err
			}
		}
		if err := updateDS(ctx, c.Kube, o.Ref.Namespace, o.Ref.Name, dryRun, func(d *appsv1.DaemonSet) { restoreSpec(d, &was) }); err != nil {
			return actions, fmt.Errorf("undo: %s: %w", o.Ref, err)
		}
		actions = append(actions, journal.Action{Ref: o.Ref, Verb: "template and updateStrategy restored"})
	}
	return actions, nil
}

// rollAll moves every node whose agent does not run was's template onto it, one node at a time.
func rollAll(ctx context.Context, k kubernetes.Interface, o journal.Object, was *appsv1.DaemonSet, comp string, dryRun []string, p *cli.Progress) ([]journal.Action, error) {
	sel, err := metav1.LabelSelectorAsSelector(was.Spec.Selector)
	if err != nil {
		return nil, err
	}
	l, err := k.CoreV1().Pods(o.Ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("undo: list %s pods: %w", o.Ref.Name, err)
	}
	wantV, wantRev := mesh.TemplateTarget(&was.Spec.Template, comp)
	var nodes []string
	for _, pod := range l.Items {
		if v, rev := mesh.PodTarget(&pod, comp); pod.DeletionTimestamp == nil && (v != wantV || rev != wantRev) && !slices.Contains(nodes, pod.Spec.NodeName) {
			nodes = append(nodes, pod.Spec.NodeName)
		}
	}
	slices.Sort(nodes)
	var actions []journal.Action
	for _, n := range nodes {
		if dryRun == nil {
			if err := rollNode(ctx, k, o.Ref.Namespace, o.Ref.Name, comp, n, &was.Spec.Template, p, undoTimeout); err != nil {
				return actions, fmt.Errorf("undo: %w", err)
			}
		}
		actions = append(actions, journal.Action{Ref: o.Ref, Verb: fmt.Sprintf("node %s rolled to the recorded template (%s)", n, strings.TrimSpace(wantV+" "+wantRev))})
	}
	return actions, nil
}

func splitNodes(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}

// updateDS changes a DaemonSet on a fresh read, retried on conflict.
func updateDS(ctx context.Context, k kubernetes.Interface, ns, name string, dryRun []string, mutate func(*appsv1.DaemonSet)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := k.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(cur)
		_, err = k.AppsV1().DaemonSets(ns).Update(ctx, cur, metav1.UpdateOptions{DryRun: dryRun, FieldManager: step.FieldManager})
		return err
	})
}

// RollBack puts one node's agent back on the template it ran: that template (from the DaemonSet's
// ControllerRevision of hash) is set with OnDelete, so no other node rolls, the node's pod is replaced,
// and the new one must come up Ready running it.
func RollBack(ctx context.Context, k kubernetes.Interface, ns, dsName, comp, node, hash string, p *cli.Progress, timeout time.Duration) error {
	tmpl, err := revisionTemplate(ctx, k, ns, dsName, hash)
	if err != nil {
		return err
	}
	return rollNode(ctx, k, ns, dsName, comp, node, tmpl, p, timeout)
}

// rollNode replaces one node's agent with a pod of template tmpl (set with OnDelete, so no other node
// rolls) and waits until it is Ready running it.
func rollNode(ctx context.Context, k kubernetes.Interface, ns, dsName, comp, node string, tmpl *corev1.PodTemplateSpec, p *cli.Progress, timeout time.Duration) error {
	err := updateDS(ctx, k, ns, dsName, nil, func(d *appsv1.DaemonSet) {
		d.Spec.Template = *tmpl
		d.Spec.UpdateStrategy = onDelete
	})
	if err != nil {
		return fmt.Errorf("daemonset %s/%s: %w", ns, dsName, err)
	}
	ds, err := k.AppsV1().DaemonSets(ns).Get(ctx, dsName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	wantV, wantRev := mesh.TemplateTarget(tmpl, comp)
	var old types.UID
	pods, err := agentPods(ctx, k, ds, node)
	if err != nil {
		return err
	}
	for _, pod := range pods {
		if v, rev := mesh.PodTarget(&pod, comp); v == wantV && rev == wantRev && kube.PodReady(&pod) {
			continue
		}
		uid := pod.UID
		if err := k.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil {
			return fmt.Errorf("delete %s pod %s on node %s: %w", comp, pod.Name, node, err)
		}
		old = uid
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return step.WaitOn(ctx, p, timeout, fmt.Sprintf("node %s: %s to %s", node, comp, strings.TrimSpace(wantV+" "+wantRev)), podEvents(wctx, k, ds), func(ctx context.Context) (string, bool, error) {
		pods, err := agentPods(ctx, k, ds, node)
		if err != nil {
			return "", false, err
		}
		for _, pod := range pods {
			if pod.UID == old {
				continue
			}
			v, rev := mesh.PodTarget(&pod, comp)
			if !kube.PodReady(&pod) || v != wantV || rev != wantRev {
				return fmt.Sprintf("%s: %s %s, ready %v", pod.Name, v, rev, kube.PodReady(&pod)), false, nil
			}
			p.Printf("node %s: %s %s Ready on %s", node, comp, pod.Name, strings.TrimSpace(wantV+" "+wantRev))
			return "", true, nil
		}
		return "no new pod yet", false, nil
	})
}

// revisionTemplate is the pod template a DaemonSet's ControllerRevision of hash holds.
func revisionTemplate(ctx context.Context, k kubernetes.Interface, ns, dsName, hash string) (*corev1.PodTemplateSpec, error) {
	l, err := k.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{LabelSelector: hashLabel + "=" + hash})
	if err != nil {
		return nil, fmt.Errorf("list controllerrevisions of %s: %w", dsName, err)
	}
	for _, cr := range l.Items {
		owned := false
		for _, o := range cr.OwnerReferences {
			owned = owned || (o.Kind == "DaemonSet" && o.Name == dsName)
		}
		if !owned {
			continue
		}
		var data struct {
			Spec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(cr.Data.Raw, &data); err != nil {
			return nil, fmt.Errorf("controllerrevision %s: %w", cr.Name, err)
		}
		return &data.Spec.Template, nil
	}
	return nil, cli.Errorf(cli.ExitBlocked, "daemonset %s/%s no longer keeps the template %s ran before (ControllerRevision with hash %s): its revisionHistoryLimit dropped it; roll forward instead", ns, dsName, hash, hash)
}

// cordonFor cordons node unless it is already, and returns what uncordons it again (nothing when it
// was cordoned before: an operator's cordon stays).
func cordonFor(ctx context.Context, k kubernetes.Interface, node, by string, dryRun []string) (func() error, error) {
	n, err := k.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	if n.Spec.Unschedulable {
		return func() error { return nil }, nil
	}
	set := func(on bool) error {
		body, err := json.Marshal(cordonPatch(on, by))
		if err != nil {
			return err
		}
		_, err = k.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, body, metav1.PatchOptions{DryRun: dryRun, FieldManager: kube.FieldManager})
		return err
	}
	if err := set(true); err != nil {
		return nil, fmt.Errorf("cordon node %s: %w", node, err)
	}
	return func() error { return set(false) }, nil
}
