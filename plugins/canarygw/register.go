package canarygw

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Rights are what canary-gw asks for in every gateway's namespace (precheck's step rights).
func Rights(s *mesh.Snapshot, _ string) []kube.Access {
	out := []kube.Access{}
	for _, ns := range mesh.GatewayNamespaces(s) {
		out = append(out, kube.Can("apps", "deployments", ns, "get", "create")...)
		out = append(out, kube.Can("autoscaling", "horizontalpodautoscalers", ns, "list", "create")...)
		out = append(out, kube.Can("policy", "poddisruptionbudgets", ns, "list", "create")...)
		out = append(out, kube.Can("", "pods", ns, "list")...)
		out = append(out, kube.Can("discovery.k8s.io", "endpointslices", ns, "list")...)
	}
	return out
}

// HelmRights are what --helm asks for beyond Rights in every gateway's namespace: Helm's release
// storage (Secrets) and the objects Istio's gateway chart renders.
func HelmRights(s *mesh.Snapshot, _ string) []kube.Access {
	out := []kube.Access{}
	for _, ns := range mesh.GatewayNamespaces(s) {
		out = append(out, kube.Can("", "secrets", ns, "list", "get", "create", "update")...)
		out = append(out, kube.Can("", "serviceaccounts", ns, "create")...)
		out = append(out, kube.Can("rbac.authorization.k8s.io", "roles", ns, "create")...)
		out = append(out, kube.Can("rbac.authorization.k8s.io", "rolebindings", ns, "create")...)
	}
	return out
}

// Registration is canary-gw as the step registry (plugins.Steps) holds it.
func Registration() step.Registration {
	return step.Registration{
		Name:   "canary-gw",
		Rights: Rights,
		Kinds:  []string{"Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"},
		Permissions: []step.Permission{
			step.Perm("get, create", "deployments, and horizontalpodautoscalers and poddisruptionbudgets when the gateway has them", "the gateway's namespace"),
			step.Perm("list", "horizontalpodautoscalers, poddisruptionbudgets, pods, endpointslices", "the gateway's namespace"),
			step.Perm("`--helm`: list, create, update", "secrets (Helm's release storage), and create for the chart's objects (serviceaccount, role, rolebinding, deployment, HPA, PDB)", "the gateway's namespace"),
		},
		Undo:     Undo,
		Variants: []step.Variant{{Flag: "--helm", Rights: HelmRights}},
	}
}
