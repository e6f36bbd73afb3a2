package shift

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Rights are what shift asks for in every gateway's namespace (precheck's step rights).
func Rights(s *mesh.Snapshot, _ string) []kube.Access {
	out := []kube.Access{}
	seen := map[string]bool{}
	for _, g := range s.Gateways {
		if seen[g.Namespace] {
			continue
		}
		seen[g.Namespace] = true
		out = append(out, kube.Can("apps", "deployments", g.Namespace, "get", "patch", "list", "watch")...)
		out = append(out, kube.Can("autoscaling", "horizontalpodautoscalers", g.Namespace, "get", "patch", "list")...)
		out = append(out, kube.Can("", "pods", g.Namespace, "list")...)
		out = append(out, kube.Can("discovery.k8s.io", "endpointslices", g.Namespace, "list")...)
	}
	return out
}
