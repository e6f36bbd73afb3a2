package migratens

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/gate"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/pin"
)

// undoTimeout bounds the wait for the restarted workloads.
const undoTimeout = 10 * time.Minute

// Undo puts a migrate-ns entry back the way --rollback-on-failure does: the namespace labels first
// (they decide which istiod injects the pods a restart creates), then a rolling restart of every
// workload the step restarted, watched until complete. Writing the recorded workload specs back
// instead would race the labels and also undo what changed since (an HPA's replica count).
func Undo(ctx context.Context, c *kube.Clients, j *journal.Journal, e *journal.Entry, dryRun []string, p *cli.Progress) ([]journal.Action, error) {
	var actions []journal.Action
	var workloads, rest []journal.Object
	relabelled := map[string]map[string]string{} // namespace → the labels it has back
	for _, o := range e.Objects {
		switch o.Ref.Kind {
		case "Namespace":
			a, err := j.RestoreObject(ctx, o, dryRun)
			if err != nil {
				return actions, err
			}
			actions = append(actions, a)
			if o.State != nil {
				relabelled[o.Ref.Name] = o.State.GetLabels()
			}
		case "Deployment", "StatefulSet", "DaemonSet":
			workloads = append(workloads, o)
		default:
			rest = append(rest, o)
		}
	}
	tags, err := tagRevisions(ctx, c)
	if err != nil {
		return actions, err
	}
	if dryRun == nil && len(relabelled) > 0 {
		// As the step itself does after relabelling: restarts wait until the injector selects by the
		// restored labels, or the new pods land on the revision being undone.
		for ns, labels := range relabelled {
			awaitInjector(ctx, c.Kube, p, ns, selectedRevision(labels, tags))
		}
	}
	seen := map[journal.ObjectRef]bool{}
	pending := map[kube.WorkloadRef]bool{}
	var stamps []string
	for _, o := range workloads {
		if seen[o.Ref] {
			continue // the canary is recorded twice
		}
		seen[o.Ref] = true
		cur, err := c.Dynamic.Resource(o.Ref.GVR()).Namespace(o.Ref.Namespace).Get(ctx, o.Ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			actions = append(actions, journal.Action{Ref: o.Ref, Verb: "gone (not restarted)"})
			continue
		}
		if err != nil {
			return actions, fmt.Errorf("undo: read %s: %w", o.Ref, err)
		}
		if o.State != nil && restartedAt(o.State) == restartedAt(cur) {
			actions = append(actions, journal.Action{Ref: o.Ref, Verb: "unchanged (the step never restarted it)"})
			continue
		}
		pending[kube.WorkloadRef{Kind: o.Ref.Kind, Namespace: o.Ref.Namespace, Name: o.Ref.Name}] = true
		stamps = append(stamps, restartedAt(cur))
	}
	at := kube.NextRestart(time.Now(), stamps...)
	restart := func(ctx context.Context, w kube.WorkloadRef) error {
		if err := kube.Restart(ctx, c.Kube, w, at, dryRun); err != nil {
			return fmt.Errorf("undo: %w", err)
		}
		actions = append(actions, journal.Action{Ref: journal.WorkloadRef(w.Kind, w.Namespace, w.Name), Verb: "restarted"})
		return nil
	}
	batches := undoBatches(e, pending)
	if dryRun != nil {
		for _, b := range batches {
			for _, w := range b {
				if err := restart(ctx, w); err != nil {
					return actions, err
				}
			}
		}
	} else if len(batches) > 0 {
		// The forward step's batches, last first, each gated before the next (MoveBack): capacity and
		// istiod's load stay as the migration kept them.
		istiod := mesh.NewIstiod(c, mesh.ReadOptions{IstioNamespace: j.Namespace})
		defer istiod.Close()
		revisions := map[string]string{}
		mb := gate.MoveBack{Batches: batches, Restart: restart, Timeout: undoTimeout, Say: p.Printf, Update: p.Update,
			Revision: func(ns string) string {
				if r, ok := revisions[ns]; ok {
					return r
				}
				n, err := c.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
				if err == nil {
					revisions[ns] = selectedRevision(n.Labels, tags)
				}
				return revisions[ns]
			},
			Proxies: func(ctx context.Context, revs, namespaces []string) (map[string]string, error) {
				l, err := c.Kube.CoreV1().Pods(j.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=istiod"})
				if err != nil {
					return nil, err
				}
				return istiod.ProxiesOrError(ctx, gate.IstiodPodsOf(l.Items, revs...), namespaces...)
			}}
		err := mb.Run(ctx, c.Kube, "undo")
		p.Done()
		if err != nil {
			return actions, cli.Errorf(cli.ExitGateFailed, "undo: %v", err)
		}
	}
	// The Gateways pinned before the namespaces moved, unpinned now that they are back.
	more, err := pin.Undo(ctx, c, j, e, rest, dryRun, p)
	actions = append(actions, more...)
	if err != nil {
		return actions, err
	}
	return actions, nil
}

func restartedAt(u *unstructured.Unstructured) string {
	s, _, _ := unstructured.NestedString(u.Object, "spec", "template", "metadata", "annotations", kube.RestartedAtAnnotation)
	return s
}

// tagRevisions maps each revision tag to its revision, from the tag webhooks.
func tagRevisions(ctx context.Context, c *kube.Clients) (map[string]string, error) {
	l, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{LabelSelector: istio.LabelTag})
	if err != nil {
		return nil, fmt.Errorf("undo: list the revision tags: %w", err)
	}
	out := map[string]string{}
	for _, w := range l.Items {
		out[w.Labels[istio.LabelTag]] = w.Labels[istio.LabelRev]
	}
	return out, nil
}

// selectedRevision is the revision a namespace's labels have new pods injected by ("" for none):
// istio-injection wins over istio.io/rev; both may name a tag.
func selectedRevision(labels, tags map[string]string) string {
	resolve := func(name string) string {
		if rev, ok := tags[name]; ok {
			return rev
		}
		return name
	}
	switch v := labels[istio.LabelInjection]; {
	case v == "enabled":
		return resolve(istio.DefaultRevision)
	case v != "":
		return ""
	}
	if v := labels[istio.LabelRev]; v != "" {
		return resolve(v)
	}
	return ""
}

// undoBatches are the workloads to restart back, in the batches the step restarted them (its journal
// units), last first; workloads outside every unit (entries written before units) go last, five at a
// time.
func undoBatches(e *journal.Entry, pending map[kube.WorkloadRef]bool) [][]kube.WorkloadRef {
	left := maps.Clone(pending)
	var out [][]kube.WorkloadRef
	for i := len(e.Units) - 1; i >= 0; i-- {
		u := e.Units[i]
		if !strings.HasPrefix(u.Name, unitPrefix) {
			continue
		}
		var b []kube.WorkloadRef
		for _, s := range u.Objects {
			if w, ok := kube.ParseWorkloadRef(s); ok && left[w] {
				b = append(b, w)
				delete(left, w)
			}
		}
		if len(b) > 0 {
			out = append(out, b)
		}
	}
	rest := slices.SortedFunc(maps.Keys(left), func(a, b kube.WorkloadRef) int { return strings.Compare(a.String(), b.String()) })
	for len(rest) > 0 {
		n := min(5, len(rest))
		out = append(out, rest[:n])
		rest = rest[n:]
	}
	return out
}
