package ztunnelroll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/gate"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

var onDelete = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}

// hashLabel is the label a DaemonSet pod carries naming the ControllerRevision (template) it was made from.
const hashLabel = appsv1.DefaultDaemonSetUniqueLabelKey

// BatchNote and HashNote are the journal notes undo reads: the nodes of each batch, and the template
// (ControllerRevision hash) a node's agent ran before the roll replaced it.
func BatchNote(i int) string            { return fmt.Sprintf("batch %d", i+1) }
func HashNote(node, comp string) string { return "ran " + node + "/" + comp }

// Apply sets the DaemonSets' target and OnDelete, then rolls the batches one by one.
func (o *Options) Apply(ctx context.Context, r *step.Run) error {
	for _, w := range o.det.Warnings {
		r.Progress.Printf("warning: %s", w)
	}
	for _, a := range o.sets {
		if !a.patch && a.ds.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType {
			continue
		}
		err := o.update(ctx, r, a.ds.Name, fmt.Sprintf("set to %s %s, updateStrategy OnDelete", o.rev, o.version), o.toTarget(a, r.Before.IstioNamespace))
		if err != nil {
			return err
		}
	}
	n := countNodes(o.batches)
	switch r.DryRun {
	case cli.DryRunClient:
		r.Result.Summary = fmt.Sprintf("ztunnel-roll would roll istio-cni and ztunnel to %s (%s) on %d nodes in %d batches: %s", o.rev, o.version, n, len(o.batches), batchText(o.batches))
		return nil
	case cli.DryRunServer:
		r.Result.Summary = fmt.Sprintf("ztunnel-roll (server dry run): the DaemonSet changes for %s were accepted by the apiserver; %d nodes would roll in %d batches; nothing changed", o.rev, n, len(o.batches))
		return nil
	}
	start := time.Now()
	if err := o.finishInterrupted(ctx, r); err != nil {
		return err
	}
	for i, b := range o.batches {
		if r.Stopping() {
			return r.Cancelled()
		}
		if err := o.rollBatch(ctx, r, i, b); err != nil {
			r.Result.Summary = fmt.Sprintf("ztunnel-roll: batch %d (%s) failed: %v; %d of %d batches done", i+1, nodeList(b), err, o.done, len(o.batches))
			return err
		}
		o.done++
	}
	if len(o.det.Remaining) == 0 {
		for _, a := range o.sets {
			own := a.own
			if own.Type == appsv1.OnDeleteDaemonSetStrategyType {
				continue
			}
			err := o.update(ctx, r, a.ds.Name, "updateStrategy "+strategyText(own)+" restored", func(d *appsv1.DaemonSet) {
				d.Spec.UpdateStrategy = own
				delete(d.Annotations, AnnotationOwnStrategy)
			})
			if err != nil {
				return err
			}
		}
	}
	r.Result.Summary = fmt.Sprintf("ztunnel-roll: %d nodes rolled to %s (%s) in %d batches of at most %d, every ztunnel SYNCED on istiod %s, in %s",
		n, o.rev, o.version, len(o.batches), o.NodesPerBatch, o.rev, time.Since(start).Round(time.Second))
	if len(o.det.Remaining) > 0 {
		r.Result.Summary += fmt.Sprintf("; %d nodes left (%s): rerun to continue (the DaemonSets keep updateStrategy OnDelete until then)", len(o.det.Remaining), nodeList(o.det.Remaining))
	}
	return nil
}

// toTarget gives a DaemonSet the target template and OnDelete, keeping its own strategy in
// AnnotationOwnStrategy (once: a staged roll's later runs find it there).
func (o *Options) toTarget(a *agentSet, istioNS string) func(*appsv1.DaemonSet) {
	return func(d *appsv1.DaemonSet) {
		w := WithTarget(d, a.component, o.rev, o.version, istioNS)
		if a.own.Type != appsv1.OnDeleteDaemonSetStrategyType {
			if own, err := json.Marshal(a.own); err == nil {
				if w.Annotations == nil {
					w.Annotations = map[string]string{}
				}
				w.Annotations[AnnotationOwnStrategy] = string(own)
			}
		}
		w.Spec.UpdateStrategy = onDelete
		*d = *w
	}
}

func batchText(batches [][]string) string {
	parts := make([]string, len(batches))
	for i, b := range batches {
		parts[i] = "[" + nodeList(b) + "]"
	}
	return strings.Join(parts, " ")
}

// update changes one node agent DaemonSet on a fresh read (retried on conflict), noting the patch for -o.
func (o *Options) update(ctx context.Context, r *step.Run, name, verb string, mutate func(*appsv1.DaemonSet)) error {
	ns := r.Before.IstioNamespace
	object := "daemonset/" + ns + "/" + name
	return r.Write(object, verb, func(dryRun []string) error {
		return updateDS(ctx, r.C.Kube, ns, name, dryRun, func(d *appsv1.DaemonSet) {
			was := d.DeepCopy()
			mutate(d)
			if patch, err := twoWayPatch(was, d); err == nil {
				r.Patch(object, "strategic", patch)
			}
		})
	})
}

func twoWayPatch(from, to *appsv1.DaemonSet) ([]byte, error) {
	a, err := json.Marshal(from)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(to)
	if err != nil {
		return nil, err
	}
	return strategicpatch.CreateTwoWayMergePatch(a, b, appsv1.DaemonSet{})
}

// rollBatch rolls one batch of nodes: cordon, empty, replace istio-cni then ztunnel, gate, uncordon.
func (o *Options) rollBatch(ctx context.Context, r *step.Run, i int, nodes []string) (err error) {
	bctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	r.Progress.Printf("batch %d/%d: nodes %s", i+1, len(o.batches), nodeList(nodes))
	r.Note(BatchNote(i), nodeList(nodes)) // saved with the unit, before the first cordon
	results := make([]NodeResult, len(nodes))
	for j, n := range nodes {
		results[j] = NodeResult{Node: n, Batch: i + 1, Replaced: []string{}}
	}
	// Which nodes this batch cordons is decided, and recorded with the unit, before the first cordon:
	// killed right after it, a rerun knows the cordon is the step's and takes it back.
	var cordoned []string
	defer func() {
		// A failed batch that --rollback-on-failure will roll back stays cordoned until Revert has put
		// its nodes back (Revert uncordons them); any other exit uncordons here.
		if err != nil && o.RollbackOnFailure && !errors.Is(err, step.ErrCancelled) && ctx.Err() == nil {
			o.held = cordoned
			return
		}
		o.uncordon(context.WithoutCancel(ctx), r, cordoned)
	}()
	toCordon, err := o.uncordoned(bctx, r, nodes)
	if err != nil {
		return err
	}
	notes := map[string]string{}
	for _, n := range toCordon {
		notes[cordonNote(n)] = "true"
	}
	// One unit of the runner: the cordons, drains and replacements are its writes (journaled with their
	// notes before the first), the new agents SYNCED and the ambient pods Ready its gate.
	var counts map[string]int
	_, err = r.RunUnit(ctx, step.Unit{Label: fmt.Sprintf("batch %d/%d", i+1, len(o.batches)), Journal: unitName(nodes),
		Objects: nodeObjects(nodes), Notes: notes, Timeout: o.Timeout,
		Write: func(context.Context) error {
			for _, n := range toCordon {
				cordoned = append(cordoned, n)
				if err := setUnschedulable(bctx, r, n, true, "cordoned"); err != nil {
					return err
				}
			}
			for j, n := range nodes {
				switch {
				case o.Drain:
					k, err := o.drain(bctx, r, n)
					if err != nil {
						return err
					}
					results[j].Drained = k
				case o.MaxConnections >= 0:
					c, err := o.awaitConnections(bctx, r, n)
					if err != nil {
						return err
					}
					results[j].Connections = c
				}
			}
			for _, a := range o.sets {
				replaced, err := o.replace(bctx, r, a, nodes)
				if err != nil {
					return err
				}
				for j, n := range nodes {
					if p := replaced[n]; p != "" {
						results[j].Replaced = append(results[j].Replaced, p)
					}
				}
			}
			return nil
		},
		Gate: func(gctx context.Context) error {
			var err error
			if counts, err = o.awaitWorkloads(gctx, r, nodes); err != nil {
				return err
			}
			o.uncordon(ctx, r, cordoned) // before the unit is done: killed in between, a rerun uncordons
			cordoned = nil
			return nil
		}})
	if err != nil {
		return err
	}
	for j := range results {
		results[j].AmbientPods = counts[results[j].Node]
		results[j].Seconds = time.Since(start).Round(100 * time.Millisecond).Seconds()
	}
	o.det.Nodes = append(o.det.Nodes, results...)
	r.Progress.Printf("batch %d/%d: nodes %s on %s, ztunnel SYNCED, ambient pods Ready, uncordoned (%s)", i+1, len(o.batches), nodeList(nodes), o.rev, time.Since(start).Round(time.Second))
	return nil
}

// unitPrefix names ztunnel-roll's journal units: one per node batch.
const unitPrefix = "nodes "

func unitName(nodes []string) string { return unitPrefix + nodeList(nodes) }

func cordonNote(node string) string { return "cordoned " + node }

func nodeObjects(nodes []string) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = "node/" + n
	}
	return out
}

// uncordoned are the nodes of a batch not cordoned yet: the ones the step cordons (and only those it
// uncordons after; a node an operator cordoned stays so).
func (o *Options) uncordoned(ctx context.Context, r *step.Run, nodes []string) ([]string, error) {
	var out []string
	for _, node := range nodes {
		n, err := r.C.Kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("read node %s: %w", node, err)
		}
		if !n.Spec.Unschedulable {
			out = append(out, node)
		}
	}
	return out, nil
}

// finishInterrupted takes back the cordons of the batches an interrupted run began and never
// finished (recorded before they were made), and gates those nodes' ambient pods: the run died
// before it could, and a rerun would take its cordons for an operator's.
func (o *Options) finishInterrupted(ctx context.Context, r *step.Run) error {
	for _, u := range o.inflight {
		var nodes, cordoned []string
		for _, obj := range u.Objects {
			n := strings.TrimPrefix(obj, "node/")
			nodes = append(nodes, n)
			if u.Notes[cordonNote(n)] == "true" {
				cordoned = append(cordoned, n)
			}
		}
		r.Progress.Printf("%s: an interrupted run began it; uncordoning the nodes it cordoned (%s)", u.Name, orNone(nodeList(cordoned)))
		for _, n := range cordoned {
			// Only a cordon this entry's annotation still names: one an operator made (or took over) since stays.
			node, err := r.C.Kube.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("read node %s: %w", n, err)
			}
			if by := node.Annotations[AnnotationCordonedBy]; node.Spec.Unschedulable && by != cordonedBy(r) {
				r.Progress.Printf("warning: node %s left cordoned: its cordon is not this entry's (%s=%q)", n, AnnotationCordonedBy, by)
				continue
			}
			if err := setUnschedulable(ctx, r, n, false, "uncordoned"); err != nil {
				return err
			}
		}
		bctx, cancel := context.WithTimeout(ctx, o.Timeout)
		_, err := o.awaitWorkloads(bctx, r, nodes)
		cancel()
		if err != nil {
			return err
		}
		r.Finish(u.Name)
	}
	return nil
}

// uncordon undoes the step's own cordons; it runs on every exit path, so a failed or stopped roll
// never leaves a node cordoned behind it.
func (o *Options) uncordon(ctx context.Context, r *step.Run, nodes []string) {
	for _, n := range nodes {
		if err := setUnschedulable(ctx, r, n, false, "uncordoned"); err != nil {
			r.Progress.Printf("warning: uncordon node %s: %v (kubectl uncordon %s)", n, err, n)
		}
	}
}

func setUnschedulable(ctx context.Context, r *step.Run, node string, on bool, verb string) error {
	patch, err := json.Marshal(cordonPatch(on, cordonedBy(r)))
	if err != nil {
		return err
	}
	return r.Write("node/"+node, verb, func(dryRun []string) error {
		_, err := r.C.Kube.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, patch,
			metav1.PatchOptions{DryRun: dryRun, FieldManager: step.FieldManager})
		return err
	})
}

// nodePods are the pods on node (all namespaces when ns is "").
func nodePods(ctx context.Context, k kubernetes.Interface, ns, selector, node string) ([]corev1.Pod, error) {
	l, err := k.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector, FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.Spec.NodeName == node {
			out = append(out, p)
		}
	}
	return out, nil
}

// ambientOn are a node's ambient pods.
func (o *Options) ambientOn(ctx context.Context, r *step.Run, node string) ([]corev1.Pod, error) {
	pods, err := nodePods(ctx, r.C.Kube, "", "", node)
	if err != nil {
		return nil, fmt.Errorf("list the pods on node %s: %w", node, err)
	}
	labels := map[string]map[string]string{}
	for _, ns := range r.Raw.Namespaces {
		labels[ns.Name] = ns.Labels
	}
	var out []corev1.Pod
	for i := range pods {
		if mesh.IsAmbientPod(&pods[i], labels[pods[i].Namespace]) {
			out = append(out, pods[i])
		}
	}
	return out, nil
}

// awaitConnections waits until the node's ztunnel carries at most --max-connections; a ztunnel whose
// stats cannot be read is not waited for (a warning says so).
func (o *Options) awaitConnections(ctx context.Context, r *step.Run, node string) (*int, error) {
	var zt *agentSet
	for _, a := range o.sets {
		if a.component == mesh.ComponentZtunnel {
			zt = a
		}
	}
	pod, err := o.agentPod(ctx, r.C.Kube, zt.ds, node)
	if err != nil || pod == nil {
		return nil, err
	}
	var last *int
	err = r.Wait(ctx, o.Timeout, fmt.Sprintf("node %s: ztunnel connections", node), func(ctx context.Context) (string, bool, error) {
		n, err := mesh.ZtunnelConnections(ctx, r.C, pod)
		if err != nil {
			o.warn(fmt.Sprintf("node %s: the connections of ztunnel %s could not be read (%v): not waited for", node, pod.Name, err))
			r.Progress.Printf("warning: %s", o.det.Warnings[len(o.det.Warnings)-1])
			return "", true, nil
		}
		last = &n
		return fmt.Sprintf("%d open, waiting for at most %d", n, o.MaxConnections), n <= o.MaxConnections, nil
	})
	return last, err
}

// agentPod is the DaemonSet's pod on node, nil when it has none.
func (o *Options) agentPod(ctx context.Context, k kubernetes.Interface, ds *appsv1.DaemonSet, node string) (*corev1.Pod, error) {
	pods, err := agentPods(ctx, k, ds, node)
	if err != nil || len(pods) == 0 {
		return nil, err
	}
	return &pods[0], nil
}

// agentPods are the DaemonSet's pods on node that are not terminating.
func agentPods(ctx context.Context, k kubernetes.Interface, ds *appsv1.DaemonSet, node string) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil, err
	}
	pods, err := nodePods(ctx, k, ds.Namespace, sel.String(), node)
	if err != nil {
		return nil, fmt.Errorf("list %s pods on node %s: %w", ds.Name, node, err)
	}
	var out []corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// podEvents fires on every change to the DaemonSet's pods (nil, so ticks only, when it cannot watch):
// a node's wait ends when its new pod is Ready, not at the next tick.
func podEvents(ctx context.Context, k kubernetes.Interface, ds *appsv1.DaemonSet) <-chan struct{} {
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil
	}
	w, err := k.CoreV1().Pods(ds.Namespace).Watch(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil
	}
	ch := make(chan struct{}, 1)
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-w.ResultChan():
				if !ok {
					return
				}
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch
}

// replace deletes the agent pods of a batch's nodes that do not run the target and waits for the
// DaemonSet's new ones: Ready, on the target, and a ztunnel SYNCED on the target istiod.
func (o *Options) replace(ctx context.Context, r *step.Run, a *agentSet, nodes []string) (map[string]string, error) {
	old := map[string]types.UID{}
	for _, n := range nodes {
		p, err := o.agentPod(ctx, r.C.Kube, a.ds, n)
		if err != nil {
			return nil, err
		}
		if p == nil {
			continue // the DaemonSet has no pod there yet: it makes one from the new template
		}
		if v, rev := mesh.PodTarget(p, a.component); o.onTarget(v, rev, a.component) {
			continue
		}
		r.Note(HashNote(n, a.component), p.Labels[hashLabel])
		if err := r.Checkpoint(ctx); err != nil { // killed after the delete, undo still knows the pod's template
			return nil, err
		}
		uid := p.UID
		err = r.Write("pod/"+p.Namespace+"/"+p.Name, "deleted", func(dryRun []string) error {
			err := r.C.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{DryRun: dryRun, Preconditions: &metav1.Preconditions{UID: &uid}})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("delete %s pod %s on node %s: %w", a.component, p.Name, n, err)
		}
		old[n] = uid
	}
	istiod := gate.IstiodPods(r.Raw, o.rev)
	got := map[string]string{}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := podEvents(wctx, r.C.Kube, a.ds)
	err := step.WaitOn(ctx, r.Progress, o.Timeout, fmt.Sprintf("%s on %s", a.component, nodeList(nodes)), wake, func(ctx context.Context) (string, bool, error) {
		var synced map[string]string
		if a.component == mesh.ComponentZtunnel {
			synced = r.Istiod.Proxies(ctx, istiod)
		}
		var waiting []string
		for _, n := range nodes {
			p, err := o.agentPod(ctx, r.C.Kube, a.ds, n)
			if err != nil {
				return "", false, err
			}
			why := ""
			switch {
			case p == nil || p.UID == old[n]:
				why = "no new pod yet"
			case !kube.PodReady(p):
				why = p.Name + " not Ready"
			default:
				if v, rev := mesh.PodTarget(p, a.component); !o.onTarget(v, rev, a.component) {
					why = fmt.Sprintf("%s runs %s %s", p.Name, v, rev)
				} else if synced != nil && synced[p.Namespace+"/"+p.Name] != istio.StateSynced {
					why = fmt.Sprintf("%s not SYNCED on istiod %s (%s)", p.Name, o.rev, orNone(synced[p.Namespace+"/"+p.Name]))
				}
			}
			if why != "" {
				waiting = append(waiting, n+": "+why)
				continue
			}
			if _, replaced := old[n]; replaced {
				got[n] = p.Name
			}
		}
		return strings.Join(waiting, "; "), len(waiting) == 0, nil
	})
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if got[n] != "" {
			r.Progress.Printf("node %s: %s %s Ready on %s%s", n, a.component, got[n], o.rev, map[bool]string{true: ", SYNCED", false: ""}[a.component == mesh.ComponentZtunnel])
		}
	}
	return got, nil
}

// awaitWorkloads waits until every ambient pod on the nodes is Ready again (those a drain evicted are
// elsewhere by now).
func (o *Options) awaitWorkloads(ctx context.Context, r *step.Run, nodes []string) (map[string]int, error) {
	counts := map[string]int{}
	err := r.Wait(ctx, o.Timeout, "ambient pods on "+nodeList(nodes), func(ctx context.Context) (string, bool, error) {
		var notReady []string
		for _, n := range nodes {
			pods, err := o.ambientOn(ctx, r, n)
			if err != nil {
				return "", false, err
			}
			counts[n] = 0
			for _, p := range pods {
				if kube.PodReady(&p) {
					counts[n]++
				} else {
					notReady = append(notReady, p.Namespace+"/"+p.Name)
				}
			}
		}
		slices.Sort(notReady)
		return fmt.Sprintf("%d not Ready (%s)", len(notReady), strings.Join(notReady, ",")), len(notReady) == 0, nil
	})
	return counts, err
}

func orNone(s string) string {
	if s == "" {
		return "not connected"
	}
	return s
}

// cordonPatch cordons a node naming who did (by), or uncordons it and removes the name.
func cordonPatch(on bool, by string) map[string]any {
	var who any // null removes the annotation
	if on {
		who = by
	}
	return map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationCordonedBy: who}},
		"spec": map[string]any{"unschedulable": on}}
}

// cordonedBy is what the run's cordons say of it: its journal entry.
func cordonedBy(r *step.Run) string {
	if e := r.Entry(); e != nil {
		return "entry " + e.ID
	}
	return "entry (dry run)"
}
