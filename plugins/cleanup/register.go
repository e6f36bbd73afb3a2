package cleanup

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Rights are what cleanup asks for to remove a revision's objects (precheck's step rights).
func Rights(_ *mesh.Snapshot, istioNS string) []kube.Access {
	var out []kube.Access
	for _, r := range []struct{ group, resource, ns string }{
		{"apps", "deployments", istioNS}, {"", "services", istioNS}, {"", "serviceaccounts", istioNS}, {"", "configmaps", istioNS},
		{"autoscaling", "horizontalpodautoscalers", istioNS}, {"policy", "poddisruptionbudgets", istioNS},
		{"rbac.authorization.k8s.io", "roles", istioNS}, {"rbac.authorization.k8s.io", "rolebindings", istioNS},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", ""}, {"admissionregistration.k8s.io", "validatingwebhookconfigurations", ""},
		{"rbac.authorization.k8s.io", "clusterroles", ""}, {"rbac.authorization.k8s.io", "clusterrolebindings", ""},
	} {
		out = append(out, kube.Can(r.group, r.resource, r.ns, "list", "get", "delete")...)
	}
	return append(out, kube.Can("discovery.k8s.io", "endpointslices", istioNS, "list")...)
}

// Registration is cleanup as the step registry (plugins.Steps) holds it.
func Registration() step.Registration {
	return step.Registration{
		Name:   "cleanup",
		Rights: Rights,
		Kinds: []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Deployment", "Service", "ConfigMap",
			"HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"},
		Permissions: []step.Permission{
			step.Perm("list, get, delete", "deployments, services, serviceaccounts, configmaps, horizontalpodautoscalers, poddisruptionbudgets, roles, rolebindings", "ISTIO"),
			step.Perm("list, get, delete", "mutatingwebhookconfigurations, validatingwebhookconfigurations, clusterroles, clusterrolebindings", "cluster"),
			step.Perm("list", "endpointslices", "ISTIO"),
			step.Perm("list (when the CRD exists)", "gateways.gateway.networking.k8s.io", "all namespaces"),
			step.Perm("`--helm`: list, create, update", "secrets (Helm's release storage), and what helm changes in each release (its objects)", "the releases' namespaces"),
		},
		Undo: Undo,
	}
}
