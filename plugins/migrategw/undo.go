package migrategw

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// undoTimeout bounds how long undo waits for the gateway to be back on its revision.
const undoTimeout = 5 * time.Minute

// Undo undoes the gateway moves of e (migrate-gw's, or the pins of tag-move and migrate-ns through
// pkg/pin) the way they were made: each recorded istio.io/rev label set again, new pods first (a
// Deployment's strategy held at maxUnavailable 0 meanwhile, a Gateway's overlay still in place), the
// Services' ready endpoints watched until the pods are back on the revision the entry noted; only then
// are the objects put back whole (strategy, parametersRef) and an overlay ConfigMap deleted.
func Undo(ctx context.Context, c *kube.Clients, j *journal.Journal, e *journal.Entry, dryRun []string, p *cli.Progress) ([]journal.Action, error) {
	var actions []journal.Action
	objs := e.Objects
	for i := range objs {
		o := &objs[i]
		from := e.Notes[FromNote(o.Ref.Kind, o.Ref.Namespace, o.Ref.Name)]
		if (o.Ref.Kind != KindDeployment && o.Ref.Kind != KindGateway) || o.State == nil || from == "" {
			continue
		}
		a, err := moveBack(ctx, c, o, from, dryRun, p)
		actions = append(actions, a...)
		if err != nil {
			return actions, err
		}
	}
	for _, o := range objs {
		a, err := j.RestoreObject(ctx, o, dryRun)
		if err != nil {
			return actions, err
		}
		actions = append(actions, a)
	}
	return actions, nil
}

// FromNote is the journal note that holds the revision a gateway ran before a step moved it.
func FromNote(kind, namespace, name string) string {
	return "from " + strings.ToLower(kind) + "/" + namespace + "/" + name
}

// moveBack sets a moved gateway's recorded istio.io/rev again and waits until its pods run from.
func moveBack(ctx context.Context, c *kube.Clients, moved *journal.Object, from string, dryRun []string, p *cli.Progress) ([]journal.Action, error) {
	var actions []journal.Action
	m := &mover{c: c, p: p, live: dryRun == nil, kind: moved.Ref.Kind, ns: moved.Ref.Namespace, name: moved.Ref.Name, timeout: undoTimeout,
		write: func(object, verb string, do func([]string) error) error {
			if err := do(dryRun); err != nil {
				return err
			}
			actions = append(actions, journal.Action{Ref: moved.Ref, Verb: verb})
			return nil
		}}
	label, _, _ := unstructured.NestedString(moved.State.Object, "metadata", "labels", istio.LabelRev)
	m.dep = moved.Ref.Name
	var strategy, own *appsv1.DeploymentStrategy // the move's, and the Deployment's own to put back after it
	if m.kind == KindDeployment {
		label, _, _ = unstructured.NestedString(moved.State.Object, "spec", "template", "metadata", "labels", istio.LabelRev)
		d, err := c.Kube.AppsV1().Deployments(m.ns).Get(ctx, m.dep, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("undo: read deployment %s/%s: %w", m.ns, m.dep, err)
		}
		if !surgeFirst(d) {
			strategy, own = &surgeStrategy1, d.Spec.Strategy.DeepCopy()
		}
	} else {
		dep, err := deploymentOf(ctx, c, m.ns, m.name)
		if err != nil {
			return nil, err
		}
		m.dep = dep
	}
	baseline, err := readyBaseline(ctx, c, m)
	if err != nil {
		return nil, err
	}
	if err := m.setRevision(ctx, label, strategy, "moved back to "+orDefault(label)); err != nil {
		return actions, fmt.Errorf("undo: %w", err)
	}
	if m.live {
		if _, err := m.await(ctx, from, baseline, nil); err != nil {
			return actions, cli.Errorf(cli.ExitGateFailed, "undo: %s did not come back to %s: %v", m.object(), from, err)
		}
		p.Printf("%s back on %s; ready endpoints kept", m.object(), from)
	}
	if own != nil {
		if err := m.setStrategy(ctx, *own, "strategy restored"); err != nil {
			return actions, fmt.Errorf("undo: %w", err)
		}
	}
	return actions, nil
}

// deploymentOf is the Deployment istiod made for a Gateway.
func deploymentOf(ctx context.Context, c *kube.Clients, ns, gateway string) (string, error) {
	l, err := c.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: "gateway.networking.k8s.io/gateway-name=" + gateway})
	if err != nil {
		return "", fmt.Errorf("undo: list the deployment of gateway %s/%s: %w", ns, gateway, err)
	}
	if len(l.Items) != 1 {
		return "", cli.BadInputf("undo: gateway %s/%s has %d deployments, want 1", ns, gateway, len(l.Items))
	}
	return l.Items[0].Name, nil
}

// readyBaseline is a capacity check for undo: no Service in front of the gateway may fall below the
// ready endpoints it has now.
func readyBaseline(ctx context.Context, c *kube.Clients, m *mover) (func(context.Context) error, error) {
	d, err := c.Kube.AppsV1().Deployments(m.ns).Get(ctx, m.dep, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("undo: read deployment %s/%s: %w", m.ns, m.dep, err)
	}
	l, err := c.Kube.CoreV1().Services(m.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("undo: list services in %s: %w", m.ns, err)
	}
	svcs := mesh.ServicesOf(l.Items, d)
	before := map[string]int{}
	for _, s := range svcs {
		if before[s], err = kube.ReadyEndpoints(ctx, c.Kube, m.ns, s); err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context) error {
		for s, want := range before {
			if n, err := kube.ReadyEndpoints(ctx, c.Kube, m.ns, s); err == nil && n < want {
				return cli.Errorf(cli.ExitGateFailed, "service %s/%s has %d ready endpoints, below the %d before undo", m.ns, s, n, want)
			}
		}
		return nil
	}, nil
}
