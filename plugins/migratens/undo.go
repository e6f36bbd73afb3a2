package migratens

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
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
	if dryRun == nil && len(relabelled) > 0 {
		// As the step itself does after relabelling: restarts wait until the injector selects by the
		// restored labels, or the new pods land on the revision being undone.
		tags, err := tagRevisions(ctx, c)
		if err != nil {
			return actions, err
		}
		for ns, labels := range relabelled {
			awaitInjector(ctx, c.Kube, p, ns, selectedRevision(labels, tags))
		}
	}
	now := time.Now()
	seen := map[journal.ObjectRef]bool{}
	var restarted []kube.WorkloadRef
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
		w := kube.WorkloadRef{Kind: o.Ref.Kind, Namespace: o.Ref.Namespace, Name: o.Ref.Name}
		if err := kube.Restart(ctx, c.Kube, w, kube.NextRestart(now, restartedAt(cur)), dryRun); err != nil {
			return actions, fmt.Errorf("undo: %w", err)
		}
		actions = append(actions, journal.Action{Ref: o.Ref, Verb: "restarted"})
		restarted = append(restarted, w)
	}
	if len(restarted) > 0 && dryRun == nil {
		wctx, cancel := context.WithTimeout(ctx, undoTimeout)
		defer cancel()
		err := kube.WaitRollouts(wctx, c.Kube, restarted, func(m string) { p.Update("%s", m) })
		p.Done()
		if err != nil {
			return actions, cli.Errorf(cli.ExitGateFailed, "undo: restarted workloads did not complete their rollouts: %v", err)
		}
		p.Printf("%d workloads restarted and rolled out", len(restarted))
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
