package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/kubectl/pkg/polymorphichelpers"
)

// RestartedAtAnnotation is the pod-template annotation `kubectl rollout restart` sets.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// FieldManager is the field manager of every write the plugin makes.
const FieldManager = "kubectl-istio-upgrade"

// WorkloadRef names a Deployment, StatefulSet or DaemonSet.
type WorkloadRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (w WorkloadRef) String() string {
	return w.Namespace + "/" + strings.ToLower(w.Kind) + "/" + w.Name
}

// ParseWorkloadRef reads what String wrote ("shop/deployment/web") back, for the kinds a restart takes.
func ParseWorkloadRef(s string) (WorkloadRef, bool) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return WorkloadRef{}, false
	}
	kind := map[string]string{"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet"}[parts[1]]
	if kind == "" || parts[0] == "" || parts[2] == "" {
		return WorkloadRef{}, false
	}
	return WorkloadRef{Kind: kind, Namespace: parts[0], Name: parts[2]}, true
}

// Restart restarts a workload the way `kubectl rollout restart` does: it stamps the pod template with
// the restart time, so the controller rolls out new pods under the workload's own strategy.
func Restart(ctx context.Context, k kubernetes.Interface, w WorkloadRef, at time.Time, dryRun []string) error {
	patch, err := RestartPatch(at)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{DryRun: dryRun, FieldManager: FieldManager}
	switch w.Kind {
	case "Deployment":
		_, err = k.AppsV1().Deployments(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, opts)
	case "StatefulSet":
		_, err = k.AppsV1().StatefulSets(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, opts)
	case "DaemonSet":
		_, err = k.AppsV1().DaemonSets(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, opts)
	default:
		return fmt.Errorf("restart %s: unsupported kind %s", w, w.Kind)
	}
	if err != nil {
		return fmt.Errorf("restart %s: %w", w, err)
	}
	return nil
}

// restartPatch is the patch of a restart: only the pod template's restartedAt annotation (a whole
// typed Deployment would carry null fields that a strategic merge patch deletes).
type restartPatch struct {
	Spec struct {
		Template struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		} `json:"template"`
	} `json:"spec"`
}

// NextRestart is the stamp a restart at now writes: a second after the newest of the stamps the
// workloads carry when that is not before now. The stamp has second precision, so a restart equal to
// the one already there changes nothing and rolls no pod (seen on the test bed: a rollback stamped a
// second ahead, then a new migration within that second, which then waited for pods that never came).
func NextRestart(now time.Time, stamps ...string) time.Time {
	now = now.Truncate(time.Second)
	for _, s := range stamps {
		if t, err := time.Parse(time.RFC3339, s); err == nil && !now.After(t) {
			now = t.Add(time.Second)
		}
	}
	return now
}

// RestartPatch is the strategic merge patch a restart at at sends.
func RestartPatch(at time.Time) ([]byte, error) { return json.Marshal(newRestartPatch(at)) }

func newRestartPatch(at time.Time) restartPatch {
	var p restartPatch
	p.Spec.Template.Metadata.Annotations = map[string]string{RestartedAtAnnotation: at.Format(time.RFC3339)}
	return p
}

// RolloutFailed is a rollout that waiting cannot complete: the gate fails at once instead of waiting out
// its timeout.
type RolloutFailed struct {
	Workload WorkloadRef
	Err      error
}

func (e *RolloutFailed) Error() string { return fmt.Sprintf("%s: %v", e.Workload, e.Err) }
func (e *RolloutFailed) Unwrap() error { return e.Err }

// RolloutStatus judges a workload's rollout with kubectl's own status viewers (`kubectl rollout status`):
// done, a short progress text, and an error when the rollout cannot complete by waiting
// (ProgressDeadlineExceeded, an OnDelete StatefulSet or DaemonSet).
func RolloutStatus(obj runtime.Object) (done bool, progress string, err error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	kind := gvk.Kind
	switch obj.(type) {
	case *appsv1.Deployment:
		kind = "Deployment"
	case *appsv1.StatefulSet:
		kind = "StatefulSet"
	case *appsv1.DaemonSet:
		kind = "DaemonSet"
	}
	viewer, err := polymorphichelpers.StatusViewerFor(schema.GroupKind{Group: "apps", Kind: kind})
	if err != nil {
		return false, "", err
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return false, "", err
	}
	msg, done, err := viewer.Status(&unstructured.Unstructured{Object: m}, 0)
	return done, strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(msg), "...")), err
}

// WaitRollouts watches (never polls) every workload until its rollout is complete or ctx ends. It calls
// report with a one-line summary whenever something changes.
func WaitRollouts(ctx context.Context, k kubernetes.Interface, refs []WorkloadRef, report func(string)) error {
	var mu sync.Mutex
	state := map[string]string{}
	done := map[string]bool{}
	summary := func() {
		var pending []string
		for _, r := range refs {
			if !done[r.String()] {
				pending = append(pending, r.String()+" "+state[r.String()])
			}
		}
		sort.Strings(pending)
		if report != nil && len(pending) > 0 {
			report(fmt.Sprintf("waiting for %d/%d rollouts: %s", len(pending), len(refs), strings.Join(pending, "; ")))
		}
	}
	errs := make(chan error, len(refs))
	for _, r := range refs {
		go func(r WorkloadRef) {
			lw := listWatch(k, r)
			_, err := watchtools.UntilWithSync(ctx, lw, newObject(r.Kind), nil, func(ev watch.Event) (bool, error) {
				if m, err := meta.Accessor(ev.Object); err == nil && m.GetName() != r.Name {
					return false, nil // a client that ignores the field selector (fakes) sends others too
				}
				if ev.Type == watch.Deleted {
					return false, fmt.Errorf("%s was deleted during its rollout", r)
				}
				ok, p, err := RolloutStatus(ev.Object)
				if err != nil {
					return false, &RolloutFailed{Workload: r, Err: err}
				}
				mu.Lock()
				state[r.String()] = p
				done[r.String()] = ok
				summary()
				mu.Unlock()
				return ok, nil
			})
			var failed *RolloutFailed
			if err != nil && !errors.As(err, &failed) {
				if ctx.Err() != nil {
					err = ctx.Err() // the caller's deadline (a timeout, exit 74) or cancellation, not watchtools' own error
				}
				mu.Lock()
				err = fmt.Errorf("rollout of %s not complete (%s): %w", r, state[r.String()], err)
				mu.Unlock()
			}
			errs <- err
		}(r)
	}
	var first error
	for range refs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func newObject(kind string) runtime.Object {
	switch kind {
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	}
	return &appsv1.Deployment{}
}

// listWatch watches one workload by name. The wrapper tells the reflector when k cannot stream lists
// (fake clientsets), so the watch starts with a plain list instead of waiting for initial events.
func listWatch(k kubernetes.Interface, r WorkloadRef) cache.ListerWatcher {
	sel := fields.OneTermEqualSelector("metadata.name", r.Name).String()
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			switch r.Kind {
			case "StatefulSet":
				return k.AppsV1().StatefulSets(r.Namespace).List(ctx, o)
			case "DaemonSet":
				return k.AppsV1().DaemonSets(r.Namespace).List(ctx, o)
			}
			return k.AppsV1().Deployments(r.Namespace).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			switch r.Kind {
			case "StatefulSet":
				return k.AppsV1().StatefulSets(r.Namespace).Watch(ctx, o)
			case "DaemonSet":
				return k.AppsV1().DaemonSets(r.Namespace).Watch(ctx, o)
			}
			return k.AppsV1().Deployments(r.Namespace).Watch(ctx, o)
		},
	}, k)
}
