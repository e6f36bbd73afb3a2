package cleanup

import (
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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
		if r.Base() && (r.DefaultRevision == old || (old == "default" && r.DefaultRevision == "")) {
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
		if r.Base() && (r.DefaultRevision == old || (old == "default" && r.DefaultRevision == "")) {
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
