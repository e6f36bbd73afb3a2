package migratens

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Rights are what migrate-ns asks for in the namespaces --all would take (precheck's step rights).
func Rights(s *mesh.Snapshot, _ string) []kube.Access {
	out := kube.Can("", "namespaces", "", "get", "patch")
	for _, ns := range mesh.InjectedNamespaces(s) {
		for _, r := range []string{"deployments", "statefulsets", "daemonsets"} {
			out = append(out, kube.Can("apps", r, ns, "get", "patch", "list", "watch")...)
		}
		out = append(out, kube.Can("", "pods", ns, "list")...)
	}
	return out
}
