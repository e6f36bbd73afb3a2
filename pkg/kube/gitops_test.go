package kube

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestGitOpsOwner(t *testing.T) {
	for want, m := range map[string]metav1.ObjectMeta{
		"Argo CD application shop":      {Annotations: map[string]string{"argocd.argoproj.io/tracking-id": "shop:/Namespace:/shop"}},
		"Argo CD application legacy":    {Labels: map[string]string{"argocd.argoproj.io/instance": "legacy"}},
		"Flux Kustomization flux/apps":  {Labels: map[string]string{"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux"}},
		"Flux HelmRelease flux/istiod":  {Labels: map[string]string{"helm.toolkit.fluxcd.io/name": "istiod", "helm.toolkit.fluxcd.io/namespace": "flux"}},
		"Argo CD (field manager argocd": {ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "argocd-controller"}}},
		"":                              {Labels: map[string]string{"app.kubernetes.io/instance": "web"}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
	} {
		got := GitOpsOwner(&m)
		if (want == "" && got != "") || !strings.HasPrefix(got, want) {
			t.Errorf("%+v: %q, want %q", m, got, want)
		}
	}
}
