package shift

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
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
