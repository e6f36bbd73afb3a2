package ztunnelroll

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/drain"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// evictRetry is how often an eviction a PodDisruptionBudget refuses now (429) is asked again, as
// kubectl drain does.
const evictRetry = 5 * time.Second

// drainer is kubectl's drain helper over a node's ambient pods (the others do not use its ztunnel):
// DaemonSet and mirror pods are skipped; pods without a controller (evicting one deletes it for
// good) and pods with emptyDir data are refused unless --force and --delete-emptydir-data, as
// `kubectl drain` refuses them; evictions go through the Eviction API, a PodDisruptionBudget that
// allows no disruption now is asked again until the batch's timeout, and the pods are waited for
// until they are gone.
func (o *Options) drainer(ctx context.Context, r *step.Run, timeout time.Duration) *drain.Helper {
	namespaces := map[string]map[string]string{}
	for _, ns := range r.Raw.Namespaces {
		namespaces[ns.Name] = ns.Labels
	}
	// Only a live run drains (dry runs stop before the batches).
	return &drain.Helper{Ctx: ctx, Timeout: timeout, DryRunStrategy: cmdutil.DryRunNone,
		Client: ambientOnly{Interface: r.C.Kube, keep: func(p *corev1.Pod) bool { return mesh.IsAmbientPod(p, namespaces[p.Namespace]) }},
		Force:  o.Force, DeleteEmptyDirData: o.DeleteEmptyDirData, IgnoreAllDaemonSets: true,
		GracePeriodSeconds: -1, EvictErrorRetryDelay: evictRetry, Out: io.Discard, ErrOut: io.Discard,
		OnPodDeletionOrEvictionStarted: func(p *corev1.Pod, _ bool) {
			r.Progress.Update("node %s: evicting pod %s/%s", p.Spec.NodeName, p.Namespace, p.Name)
		},
	}
}

// drainable lists the node's ambient pods h would evict, or why `kubectl drain`'s rules refuse the node.
func drainable(h *drain.Helper, node string) ([]corev1.Pod, error) {
	list, errs := h.GetPodsForDeletion(node)
	if len(errs) > 0 {
		var msgs []string
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		return nil, cli.BadInputf("--drain cannot empty node %s as kubectl drain would: %s", node, strings.Join(msgs, "; "))
	}
	return list.Pods(), nil
}

// checkDrainable refuses, before anything changes, a roll whose --drain would stop at a node.
func (o *Options) checkDrainable(ctx context.Context, r *step.Run) error {
	if !o.Drain {
		return nil
	}
	h := o.drainer(ctx, r, o.Timeout)
	for _, b := range o.batches {
		for _, n := range b {
			if _, err := drainable(h, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// drain evicts a node's ambient pods with kubectl's drain helper (see drainer) and records each one
// evicted.
func (o *Options) drain(ctx context.Context, r *step.Run, node string) (int, error) {
	h := o.drainer(ctx, r, time.Until(deadline(ctx, o.Timeout)))
	pods, err := drainable(h, node)
	if err != nil || len(pods) == 0 {
		return 0, err
	}
	n := 0
	h.OnPodDeletionOrEvictionFinished = func(p *corev1.Pod, _ bool, err error) {
		if err == nil {
			r.Record("pod/"+p.Namespace+"/"+p.Name, "evicted")
			n++
		}
	}
	if err := h.DeleteOrEvictPods(pods); err != nil {
		if ctx.Err() != nil || strings.Contains(err.Error(), "global timeout reached") {
			return n, cli.Errorf(cli.ExitTimeout, "node %s: evicting its ambient pods: not done after %s: %v", node, o.Timeout, err)
		}
		return n, fmt.Errorf("node %s: %w", node, err)
	}
	r.Progress.Done()
	return n, nil
}

func deadline(ctx context.Context, d time.Duration) time.Time {
	if t, ok := ctx.Deadline(); ok {
		return t
	}
	return time.Now().Add(d)
}

// ambientOnly is a clientset whose pod lists hold only the pods keep takes: how kubectl's drain
// helper is given the node's ambient pods alone.
type ambientOnly struct {
	kubernetes.Interface
	keep func(*corev1.Pod) bool
}

func (c ambientOnly) CoreV1() corev1client.CoreV1Interface {
	return ambientCore{CoreV1Interface: c.Interface.CoreV1(), keep: c.keep}
}

type ambientCore struct {
	corev1client.CoreV1Interface
	keep func(*corev1.Pod) bool
}

func (c ambientCore) Pods(namespace string) corev1client.PodInterface {
	return ambientPods{PodInterface: c.CoreV1Interface.Pods(namespace), keep: c.keep}
}

type ambientPods struct {
	corev1client.PodInterface
	keep func(*corev1.Pod) bool
}

func (p ambientPods) List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	l, err := p.PodInterface.List(ctx, opts)
	if err != nil {
		return nil, err
	}
	out := l.Items[:0]
	for i := range l.Items {
		if p.keep(&l.Items[i]) {
			out = append(out, l.Items[i])
		}
	}
	l.Items = out
	return l, nil
}
