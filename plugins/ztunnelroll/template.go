package ztunnelroll

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// WithTarget is ds as Istio's charts render it for revision rev at version: every container image
// retagged (its variant, e.g. -distroless, kept); for ztunnel the istiod address (XDS_ADDRESS and
// CA_ADDRESS, where they name an istiod of this namespace) and the istio.io/rev annotation, as the ztunnel
// chart's revision value sets them; for istio-cni the DaemonSet's istio.io/rev label.
func WithTarget(ds *appsv1.DaemonSet, comp, rev, version, istioNamespace string) *appsv1.DaemonSet {
	out := ds.DeepCopy()
	t := &out.Spec.Template
	for _, cs := range [][]corev1.Container{t.Spec.InitContainers, t.Spec.Containers} {
		for i := range cs {
			cs[i].Image = Retag(cs[i].Image, version)
			if comp != mesh.ComponentZtunnel {
				continue
			}
			for j := range cs[i].Env {
				e := &cs[i].Env[j]
				if (e.Name == istio.EnvXDSAddress || e.Name == "CA_ADDRESS") && isIstiodAddress(e.Value, istioNamespace) {
					e.Value = istio.ZtunnelXDSAddress(rev, istioNamespace)
				}
			}
		}
	}
	switch comp {
	case mesh.ComponentZtunnel:
		setOrDrop(&t.Annotations, rev)
		if _, ok := out.Annotations[istio.LabelRev]; ok || rev != istio.DefaultRevision {
			setOrDrop(&out.Annotations, rev)
		}
	case mesh.ComponentCNI:
		if _, ok := out.Labels[istio.LabelRev]; ok {
			out.Labels[istio.LabelRev] = rev
		}
	}
	return out
}

// setOrDrop sets the istio.io/rev annotation to rev; the non-revisioned default has none.
func setOrDrop(m *map[string]string, rev string) {
	if rev == istio.DefaultRevision {
		delete(*m, istio.LabelRev)
		return
	}
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[istio.LabelRev] = rev
}

// isIstiodAddress says an address is an istiod Service of this namespace on 15012, as the chart writes
// it (a custom caAddress or xdsAddress is left alone).
func isIstiodAddress(addr, istioNamespace string) bool {
	host, port, ok := strings.Cut(addr, ":")
	if !ok || port != "15012" {
		return false
	}
	name, rest, _ := strings.Cut(host, ".")
	if rest != istioNamespace+".svc" && rest != istioNamespace+".svc.cluster.local" {
		return false
	}
	return name == istio.IstiodApp || strings.HasPrefix(name, istio.IstiodApp+"-")
}

// Retag replaces an image's tag (and digest) with version, keeping the variant suffix.
func Retag(image, version string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	slash := strings.LastIndex(image, "/")
	colon := strings.LastIndex(image, ":")
	if colon <= slash {
		return image + ":" + version
	}
	tag := image[colon+1:]
	suffix := strings.TrimPrefix(tag, istio.VersionFromImage(image))
	return image[:colon+1] + version + suffix
}

// sameTarget says want changes nothing in ds.
func sameTarget(ds, want *appsv1.DaemonSet) bool {
	return equality.Semantic.DeepEqual(ds.Spec.Template, want.Spec.Template) &&
		equality.Semantic.DeepEqual(ds.Labels, want.Labels) && equality.Semantic.DeepEqual(ds.Annotations, want.Annotations)
}
