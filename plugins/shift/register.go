package shift

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Rights are what shift asks for in every gateway's namespace (precheck's step rights).
func Rights(s *mesh.Snapshot, _ string) []kube.Access {
	out := []kube.Access{}
	for _, ns := range mesh.GatewayNamespaces(s) {
		out = append(out, kube.Can("apps", "deployments", ns, "get", "patch", "list", "watch")...)
		out = append(out, kube.Can("autoscaling", "horizontalpodautoscalers", ns, "get", "patch", "list")...)
		out = append(out, kube.Can("", "pods", ns, "list")...)
		out = append(out, kube.Can("discovery.k8s.io", "endpointslices", ns, "list")...)
	}
	return out
}

// Registration is shift as the step registry (plugins.Steps) holds it.
func Registration() step.Registration {
	return step.Registration{
		Name:   "shift",
		Rights: Rights,
		Kinds:  []string{"Deployment", "HorizontalPodAutoscaler"},
		Permissions: []step.Permission{
			step.Perm("get, patch, list, watch", "deployments", "the gateway's namespace"),
			step.Perm("get, patch, list", "horizontalpodautoscalers", "the gateway's namespace"),
			step.Perm("list", "services, pods, endpointslices", "the gateway's namespace"),
			step.RequestGatePermission,
		},
		Undo: Undo,
	}
}
