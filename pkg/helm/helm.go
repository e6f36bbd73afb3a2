// Package helm reads Istio's Helm releases through the Helm SDK's own release storage (the Secrets
// driver helm uses), never by decoding release Secrets by hand; all helm.sh imports stay here.
package helm

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/client-go/kubernetes"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Release is one deployed Helm release of an Istio chart, with the values the steps care about.
type Release struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Chart     string `json:"chart"`
	Version   string `json:"version"`
	Revision  int    `json:"revision"`
	// IstioRevision is the istiod or gateway chart's `revision` value ("" for the non-revisioned one).
	IstioRevision string `json:"istioRevision,omitempty"`
	// DefaultRevision is the base chart's `defaultRevision` value: the revision the default validator calls.
	DefaultRevision string `json:"defaultRevision,omitempty"`
	// Digest is the sha256 of the stored chart (its metadata, templates, values and files): what a helm
	// action on the release would run, named in the step's question.
	Digest string `json:"digest,omitempty"`
	// Objects are what the release's manifest holds: what helm uninstall deletes.
	Objects []Object `json:"-"`
}

// Object is one object of a release's manifest. Keep says it carries helm.sh/resource-policy: keep,
// so helm uninstall leaves it.
type Object struct {
	Kind, Namespace, Name string
	Keep                  bool
}

func (o Object) String() string {
	if o.Namespace == "" {
		return o.Kind + "/" + o.Name
	}
	return o.Kind + "/" + o.Namespace + "/" + o.Name
}

// Base says the release is of Istio's base chart (CRDs and the default validator).
func (r Release) Base() bool { return r.Chart == "base" }

// Istiod says the release is of Istio's istiod (istio-discovery) chart.
func (r Release) Istiod() bool { return r.Chart == "istiod" || r.Chart == "istio-discovery" }

// Gateway says the release is of Istio's gateway chart.
func (r Release) Gateway() bool { return r.Chart == "gateway" }

// String is how commands and reports name it.
func (r Release) String() string {
	return r.Namespace + "/" + r.Name + " (" + r.Chart + " " + r.Version + ")"
}

// List returns the deployed releases of Istio's charts in the namespaces named (none: no release is
// read; a tenant able to write Secrets elsewhere must never reach a step). Release Secrets too large
// to decode safely are left out and named in skipped.
func List(k kubernetes.Interface, namespaces ...string) (out []Release, skipped []string, err error) {
	seen := map[string]bool{}
	for _, ns := range namespaces {
		if ns == "" || seen[ns] {
			continue
		}
		seen[ns] = true
		store := storage.Init(driver.NewSecrets(bounded{k.CoreV1().Secrets(ns), &skipped}))
		rels, err := store.ListDeployed()
		if err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
			return nil, skipped, fmt.Errorf("helm releases in %s: %w", ns, err)
		}
		for _, r := range rels {
			if r.Namespace != ns { // a payload copied from elsewhere: helm would act on the one it names
				skipped = append(skipped, fmt.Sprintf("helm release %s in namespace %s claims namespace %s: skipped", r.Name, ns, r.Namespace))
				continue
			}
			if x, ok := fromRelease(r); ok {
				out = append(out, x)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name })
	return out, skipped, nil
}

func fromRelease(r *release.Release) (Release, bool) {
	if r.Chart == nil || r.Chart.Metadata == nil {
		return Release{}, false
	}
	name := r.Chart.Metadata.Name
	switch name {
	case "base", "istiod", "istio-discovery", "gateway", "cni", "ztunnel":
	default:
		return Release{}, false
	}
	out := Release{Name: r.Name, Namespace: r.Namespace, Chart: name, Version: r.Chart.Metadata.Version, Revision: r.Version,
		Digest: digest(r.Chart), Objects: objects(r.Manifest, r.Namespace)}
	out.IstioRevision = value(r, "revision")
	if name == "base" {
		out.DefaultRevision = value(r, "defaultRevision")
	}
	return out, true
}

// value is a top-level string value as the release sees it: set by the user, else the chart's default.
func value(r *release.Release, key string) string {
	for _, vals := range []map[string]any{r.Config, r.Chart.Values} {
		if v, ok := vals[key]; ok && v != nil {
			return strings.TrimSpace(fmt.Sprint(v))
		}
	}
	return ""
}

// Owner is the release that owns an object, from the annotations helm sets on everything it installs.
func Owner(annotations map[string]string) (name, namespace string) {
	return annotations["meta.helm.sh/release-name"], annotations["meta.helm.sh/release-namespace"]
}

// Record stores a deployed release as helm does (its Secret, through the SDK's storage) without
// installing anything, its manifest holding r.Objects: fixtures for tests that read releases.
func Record(k kubernetes.Interface, r Release, values map[string]any) error {
	var manifest strings.Builder
	for _, o := range r.Objects {
		fmt.Fprintf(&manifest, "---\n# Source: %s/templates/%s.yaml\napiVersion: v1\nkind: %s\nmetadata:\n  name: %s\n", r.Chart, strings.ToLower(o.Kind), o.Kind, o.Name)
		if o.Namespace != "" {
			fmt.Fprintf(&manifest, "  namespace: %s\n", o.Namespace)
		}
		if o.Keep {
			manifest.WriteString("  annotations:\n    helm.sh/resource-policy: keep\n")
		}
	}
	store := storage.Init(driver.NewSecrets(k.CoreV1().Secrets(r.Namespace)))
	return store.Create(&release.Release{Name: r.Name, Namespace: r.Namespace, Version: max(r.Revision, 1),
		Info:     &release.Info{Status: release.StatusDeployed},
		Chart:    &chart.Chart{Metadata: &chart.Metadata{Name: r.Chart, Version: r.Version}, Values: map[string]any{}},
		Config:   values,
		Manifest: manifest.String()})
}

// Scope is where Istio's releases are read: the Istio namespace and the namespaces of the gateways
// on revisions (all gateways when none is named). Releases anywhere else are a tenant's to write.
func Scope(istioNamespace string, gateways []mesh.Gateway, revisions ...string) []string {
	out := []string{istioNamespace}
	for _, g := range gateways {
		if len(revisions) == 0 || slices.Contains(revisions, g.Revision) {
			out = append(out, g.Namespace)
		}
	}
	slices.Sort(out[1:])
	return slices.Compact(out)
}
