package canarygw

import (
	"context"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/canary"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/helm"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// helmSource is the gateway chart release that owns the old Deployment (--helm needs one).
func (o *Options) helmSource(r *step.Run) (helm.Release, error) {
	name, ns := helm.Owner(o.old.Annotations)
	rels, _, err := helm.List(r.C.Kube, o.Namespace)
	if err != nil {
		return helm.Release{}, cli.Errorf(cli.ExitNotPermitted, "--helm needs the gateway's Helm release, which is unreadable: %v", err)
	}
	for _, rel := range rels {
		if rel.Name == name && rel.Namespace == ns && rel.Gateway() {
			return rel, nil
		}
	}
	return helm.Release{}, cli.BadInputf("--helm: deployment %s/%s is not the Deployment of a deployed gateway chart release (owner %q): leave out --helm to derive the canary",
		o.Namespace, o.Old, name)
}

// helmValues are seed 000's values for the canary release, over the source release's own: the new
// revision, no Service (the source release's Service selects the canary's pods by the same app and
// istio labels), the canary label, and the HPA held at --replicas until shift (its range recorded).
func (o *Options) helmValues(hpaRange string) map[string]any {
	// The chart's pod selector is its app and istio labels: the old pods' values, which the source
	// release's Service selects.
	labels := map[string]any{canary.LabelCanaryOf: o.Old}
	for _, k := range []string{"app", "istio"} {
		if v := o.old.Spec.Template.Labels[k]; v != "" {
			labels[k] = v
		}
	}
	vals := map[string]any{
		"name":         o.CanaryName,
		"revision":     o.Revision,
		"replicaCount": int64(o.Replicas),
		"service":      map[string]any{"type": "None"},
		"labels":       labels,
	}
	if hpaRange != "" {
		vals["annotations"] = map[string]any{canary.AnnotationHPARange: hpaRange}
		vals["autoscaling"] = map[string]any{"minReplicas": int64(o.Replicas), "maxReplicas": int64(o.Replicas)}
	}
	return vals
}

// installRelease installs the canary as a release of the source release's chart, held out of traffic
// by ServingGate (added to the rendered Deployment: the chart has no value for readiness gates), and
// journals the install so undo uninstalls it.
func (o *Options) installRelease(ctx context.Context, r *step.Run) error {
	post := func(m string) (string, error) { return gateManifest(m, o.Revision) }
	act := journal.HelmAction{Release: o.CanaryName, Namespace: o.Namespace, Action: journal.HelmInstall,
		Source: o.source.Name, Set: "revision=" + o.Revision + ", service.type=None"}
	// Journaled before it starts: killed mid-install, undo still finds the release to uninstall.
	if err := r.HelmStart(ctx, act); err != nil {
		return err
	}
	version, manifest, err := helm.New(r.C.Config).InstallFrom(ctx, o.Namespace, o.source.Name, o.CanaryName, o.helmVals, post, helm.DryRunOf(r.DryRun))
	if err != nil {
		return cli.Errorf(cli.ExitError, "%v", err)
	}
	o.det.Objects = append(o.det.Objects, manifest)
	o.det.Release = o.Namespace + "/" + o.CanaryName
	act.To = version
	return r.Helm(ctx, act)
}

// gateManifest adds ServingGate to every Deployment in a rendered manifest, and labels it with the
// revision (the chart labels only its pods) so shift finds it as canary-gw's canary.
func gateManifest(manifest, revision string) (string, error) {
	docs := strings.Split(manifest, "\n---")
	for i, doc := range docs {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return "", fmt.Errorf("rendered manifest: %w", err)
		}
		if obj["kind"] != "Deployment" {
			continue
		}
		spec, _ := obj["spec"].(map[string]any)
		tmpl, _ := spec["template"].(map[string]any)
		pod, _ := tmpl["spec"].(map[string]any)
		if pod == nil {
			return "", fmt.Errorf("rendered Deployment has no pod template")
		}
		meta, _ := obj["metadata"].(map[string]any)
		labels, _ := meta["labels"].(map[string]any)
		if labels == nil {
			labels = map[string]any{}
			meta["labels"] = labels
		}
		labels[istio.LabelRev] = revision
		gates, _ := pod["readinessGates"].([]any)
		pod["readinessGates"] = append(gates, map[string]any{"conditionType": string(canary.ServingGate)})
		out, err := yaml.Marshal(obj)
		if err != nil {
			return "", err
		}
		docs[i] = "\n" + string(out)
	}
	return strings.Join(docs, "\n---"), nil
}
