package cleanup

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
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
