// Package helm reads Istio's Helm releases through the Helm SDK's own release storage (the Secrets
// driver helm uses), never by decoding release Secrets by hand; all helm.sh imports stay here.
package helm

import (
	"fmt"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/client-go/kubernetes"
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

// List returns the deployed releases in namespace ("" = all) whose charts are Istio's.
func List(k kubernetes.Interface, namespace string) ([]Release, error) {
	store := storage.Init(driver.NewSecrets(k.CoreV1().Secrets(namespace)))
	rels, err := store.ListDeployed()
	if err != nil {
		return nil, fmt.Errorf("helm releases: %w", err)
	}
	var out []Release
	for _, r := range rels {
		if x, ok := fromRelease(r); ok {
			out = append(out, x)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name })
	return out, nil
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
	out := Release{Name: r.Name, Namespace: r.Namespace, Chart: name, Version: r.Chart.Metadata.Version, Revision: r.Version}
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
// installing anything: fixtures for tests that read releases.
func Record(k kubernetes.Interface, r Release, values map[string]any) error {
	store := storage.Init(driver.NewSecrets(k.CoreV1().Secrets(r.Namespace)))
	return store.Create(&release.Release{Name: r.Name, Namespace: r.Namespace, Version: max(r.Revision, 1),
		Info:   &release.Info{Status: release.StatusDeployed},
		Chart:  &chart.Chart{Metadata: &chart.Metadata{Name: r.Chart, Version: r.Version}, Values: map[string]any{}},
		Config: values})
}
