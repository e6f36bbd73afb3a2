package tagmove

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Rights are what tag-move asks for: the tag's webhooks and its Service (precheck's step rights).
func Rights(_ *mesh.Snapshot, istioNS string) []kube.Access {
	return append(append(kube.Can("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "get", "create", "update"),
		kube.Can("admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "get", "update")...),
		kube.Can("", "services", istioNS, "get", "create", "update")...)
}
