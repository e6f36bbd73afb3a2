package kube

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GitOpsLabels are the labels by which Argo CD and Flux track what they own: an object copied from a
// tracked one must not carry them, or the controller prunes it as not in Git (a serving canary among
// them).
var GitOpsLabels = []string{"app.kubernetes.io/instance", "argocd.argoproj.io/instance",
	"kustomize.toolkit.fluxcd.io/name", "kustomize.toolkit.fluxcd.io/namespace",
	"helm.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/namespace"}

// GitOpsOwner names the GitOps controller that manages an object ("" when none): Argo CD by its
// tracking annotation or instance label, Flux by its kustomize or helm controller labels, either by the
// field manager it writes with. Such a controller puts back any change not committed to Git.
func GitOpsOwner(m metav1.Object) string {
	a, l := m.GetAnnotations(), m.GetLabels()
	if id := a["argocd.argoproj.io/tracking-id"]; id != "" {
		app, _, _ := strings.Cut(id, ":")
		return "Argo CD application " + app
	}
	if app := l["argocd.argoproj.io/instance"]; app != "" {
		return "Argo CD application " + app
	}
	if n := l["kustomize.toolkit.fluxcd.io/name"]; n != "" {
		return "Flux Kustomization " + l["kustomize.toolkit.fluxcd.io/namespace"] + "/" + n
	}
	if n := l["helm.toolkit.fluxcd.io/name"]; n != "" {
		return "Flux HelmRelease " + l["helm.toolkit.fluxcd.io/namespace"] + "/" + n
	}
	for _, f := range m.GetManagedFields() {
		switch f.Manager {
		case "argocd-controller", "argocd-application-controller":
			return "Argo CD (field manager " + f.Manager + ")"
		case "kustomize-controller", "helm-controller":
			return "Flux (field manager " + f.Manager + ")"
		}
	}
	return ""
}
