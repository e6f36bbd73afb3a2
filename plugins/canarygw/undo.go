package canarygw

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/canary"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/helm"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// Undo deletes what canary-gw created, but only while the canary is out of traffic: a canary that
// lost its readiness gate serves the gateway's users (a shift, journaled or not, put it there), and
// deleting it would drop their connections. undo refuses journaled shifts on its own; this catches
// the rest.
// A canary installed as a Helm release (--helm) is uninstalled, after the same check.
func Undo(ctx context.Context, c *kube.Clients, j *journal.Journal, e *journal.Entry, dryRun []string, p *cli.Progress) ([]journal.Action, error) {
	canaries := []journal.ObjectRef{}
	for _, o := range e.Objects {
		if o.Ref.Kind == "Deployment" && !o.Existed {
			canaries = append(canaries, o.Ref)
		}
	}
	for _, h := range e.Helm { // the chart names the Deployment after the release
		canaries = append(canaries, journal.DeploymentRef(h.Namespace, h.Release))
	}
	for _, ref := range canaries {
		d, err := c.Kube.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("undo: read %s: %w", ref, err)
		}
		if (d.Spec.Replicas == nil || *d.Spec.Replicas > 0) && !canary.HasServingGate(&d.Spec.Template.Spec) {
			gw := d.Labels[canary.LabelCanaryOf]
			return nil, cli.BadInputf("canary %s/%s is in service (no readiness gate %s): take its traffic away first with `kubectl istio-upgrade shift --gateway %s/%s --revision %s --weight 0`, then undo",
				d.Namespace, d.Name, canary.ServingGate, d.Namespace, gw, d.Spec.Template.Labels[istio.LabelRev])
		}
	}
	out, err := helm.New(c.Config).UndoAll(e.Helm, j.Force, dryRun, p)
	if err != nil {
		return out, err
	}
	more, err := j.Restore(ctx, e, dryRun)
	return append(out, more...), err
}
