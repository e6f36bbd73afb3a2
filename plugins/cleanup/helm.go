package cleanup

import (
	"context"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/helm"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
)

// helmCommands are the commands that remove a Helm-installed revision the way Helm expects, named from
// the real releases: uninstall each istiod release owning its objects, and point the base release's
// default validator at next. A gateway release is never uninstalled here: its Service is the one the
// canary serves through.
func helmCommands(releases []helm.Release, objs []*unstructured.Unstructured, old, next string) []string {
	byName := map[string]helm.Release{}
	for _, r := range releases {
		byName[r.Namespace+"/"+r.Name] = r
	}
	owners := owners(objs)
	var out []string
	keys := make([]string, 0, len(owners))
	for k := range owners {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r, known := byName[k]
		switch {
		case !known:
			out = append(out, fmt.Sprintf("helm uninstall %s  # owns objects of %s; not found as a deployed release", k, old))
		case r.Istiod():
			out = append(out, fmt.Sprintf("helm uninstall %s -n %s", r.Name, r.Namespace))
		case r.Gateway():
			out = append(out, fmt.Sprintf("helm upgrade %s istio/gateway --version %s -n %s --reuse-values --set revision=%s  # keep the release: its Service serves the canary",
				r.Name, r.Version, r.Namespace, nextOr(next)))
		}
	}
	for _, r := range releases {
		if ownsValidator(r, old) {
			out = append(out, baseUpgrade(r, next))
		}
	}
	return out
}

// baseUpgrade points the base release's default validator at next, keeping its other values and its
// chart version (a newer base chart would also change the CRDs: that is a separate, deliberate upgrade).
func baseUpgrade(r helm.Release, next string) string {
	return fmt.Sprintf("helm upgrade %s istio/base --version %s -n %s --reuse-values --set defaultRevision=%s", r.Name, r.Version, r.Namespace, nextOr(next))
}

// helmRuns are the helm commands --helm runs, from the same releases helmCommands names: the base
// release's defaultRevision (when it calls old), each gateway release's revision, each istiod release
// uninstalled. A release that owns objects of old but is not deployed is left to the user (its command
// is printed).
func helmRuns(releases []helm.Release, objs []*unstructured.Unstructured, old, next string) []journal.HelmAction {
	owners := owners(objs)
	var out []journal.HelmAction
	for _, r := range releases {
		if ownsValidator(r, old) {
			out = append(out, journal.HelmAction{Release: r.Name, Namespace: r.Namespace, Action: journal.HelmUpgrade, Set: "defaultRevision=" + next})
		}
	}
	for _, r := range releases {
		if owners[r.Namespace+"/"+r.Name] && r.Gateway() {
			out = append(out, journal.HelmAction{Release: r.Name, Namespace: r.Namespace, Action: journal.HelmUpgrade, Set: "revision=" + next})
		}
	}
	for _, r := range releases {
		if owners[r.Namespace+"/"+r.Name] && r.Istiod() {
			out = append(out, journal.HelmAction{Release: r.Name, Namespace: r.Namespace, Action: journal.HelmUninstall})
		}
	}
	return out
}

// owners are the releases (namespace/name) that own any of objs.
func owners(objs []*unstructured.Unstructured) map[string]bool {
	out := map[string]bool{}
	for _, u := range objs {
		if name, ns := helm.Owner(u.GetAnnotations()); name != "" {
			out[ns+"/"+name] = true
		}
	}
	return out
}

// validatorName is the default validator the base chart renders.
const validatorName = "istiod-default-validator"

// ownsValidator says r is the base release whose manifest holds the default validator and whose
// defaultRevision is old: the one release whose upgrade moves that validator. Any other release of a
// chart named base (a copy, a tenant's) fixes nothing and is never run.
func ownsValidator(r helm.Release, old string) bool {
	if !r.Base() || !(r.DefaultRevision == old || (old == "default" && r.DefaultRevision == "")) {
		return false
	}
	for _, obj := range r.Objects {
		if obj.Kind == "ValidatingWebhookConfiguration" && obj.Name == validatorName {
			return true
		}
	}
	return false
}

// release is the release a planned helm action runs on.
func (o *Options) release(h journal.HelmAction) (helm.Release, bool) {
	for _, r := range o.releases {
		if r.Name == h.Release && r.Namespace == h.Namespace {
			return r, true
		}
	}
	return helm.Release{}, false
}

func objKey(u *unstructured.Unstructured) string {
	ns := u.GetNamespace()
	if journal.ClusterScoped[u.GetKind()] {
		ns = ""
	}
	return helm.Object{Kind: u.GetKind(), Namespace: ns, Name: u.GetName()}.String()
}

// releaseBlockers are the objects helm uninstall of an istiod release would delete beyond the plan:
// what cleanup keeps (in use, not the revision's control plane) and the webhooks and Services of tags,
// which tag-move may have pointed at another revision (new pods on that tag would then start without
// a sidecar). Objects the manifest marks helm.sh/resource-policy: keep stay with helm too.
func (o *Options) releaseBlockers(ctx context.Context, r *step.Run, objs []*unstructured.Unstructured) ([]Blocker, error) {
	planned := map[string]bool{}
	for _, u := range objs {
		planned[objKey(u)] = true
	}
	owners := owners(objs)
	tags := map[string]string{} // helm.Object key -> what the tag points at
	sel := metav1.ListOptions{LabelSelector: istio.LabelTag}
	mwcs, err := r.C.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list tag webhooks: %w", err)
	}
	for _, w := range mwcs.Items {
		tags[helm.Object{Kind: "MutatingWebhookConfiguration", Name: w.Name}.String()] = "tag " + w.Labels[istio.LabelTag] + "'s webhook, pointing at " + w.Labels[istio.LabelRev]
	}
	svcs, err := r.C.Kube.CoreV1().Services(r.G.IstioNamespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list tag services: %w", err)
	}
	for _, v := range svcs.Items {
		tags[helm.Object{Kind: "Service", Namespace: v.Namespace, Name: v.Name}.String()] = "tag " + v.Labels[istio.LabelTag] + "'s Service, selecting " + v.Spec.Selector[istio.LabelRev]
	}
	var out []Blocker
	for _, rel := range o.releases {
		if !rel.Istiod() || !owners[rel.Namespace+"/"+rel.Name] {
			continue
		}
		for _, obj := range rel.Objects {
			key := obj.String()
			why := tags[key]
			if why == "" {
				why = o.keptWhy[key]
			}
			if obj.Keep || planned[key] || why == "" {
				continue
			}
			kind := strings.ToLower(obj.Kind)
			ns := ""
			if obj.Namespace != "" {
				ns = " -n " + obj.Namespace
			}
			fix := fmt.Sprintf("kubectl annotate %s %s%s helm.sh/resource-policy=keep, then take it out of the release (", kind, obj.Name, ns)
			if tags[key] != "" {
				fix += fmt.Sprintf("helm upgrade %s istio/%s --version %s -n %s --reuse-values --set-json 'revisionTags=[]'", rel.Name, rel.Chart, rel.Version, rel.Namespace)
			} else {
				fix += "a helm upgrade that no longer renders it"
			}
			fix += ": helm leaves what it drops but finds annotated keep), then rerun"
			out = append(out, Blocker{"helm-release", "helmrelease/" + rel.Namespace + "/" + rel.Name,
				fmt.Sprintf("helm uninstall %s would also delete %s, which must stay: %s", rel.Name, key, why), fix})
		}
	}
	return out, nil
}

// refuse prints the blockers (or the result document) and gives the refusal: exit 66, nothing changed.
func (o *Options) refuse(r *step.Run, blockers []Blocker) error {
	o.det.Blockers = blockers
	res := r.Result
	res.Summary = fmt.Sprintf("cleanup refused: %d things still depend on revision %s; nothing was changed", len(blockers), o.Revision)
	if r.G.Output == cli.OutputTable {
		rows := [][]string{}
		for _, b := range blockers {
			rows = append(rows, []string{b.Object, b.Message, b.Fix})
		}
		_ = cli.WriteTableWrapped(r.Out, []string{"blocker", "why", "resolve with"}, rows)
		fmt.Fprintln(r.Out, res.Summary)
	} else if err := res.Write(r.Out, r.G.Output); err != nil {
		return err
	}
	return cli.Errorf(cli.ExitBlocked, "revision %s is still in use (%d blockers)", o.Revision, len(blockers))
}
