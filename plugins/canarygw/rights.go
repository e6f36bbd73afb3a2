package canarygw

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
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
