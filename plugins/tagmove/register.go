package tagmove

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Rights are what tag-move asks for: the tag's webhooks and its Service (precheck's step rights).
func Rights(_ *mesh.Snapshot, istioNS string) []kube.Access {
	return append(append(kube.Can("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "get", "create", "update"),
		kube.Can("admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "get", "update")...),
		kube.Can("", "services", istioNS, "get", "create", "update")...)
}

// Registration is tag-move as the step registry (plugins.Steps) holds it.
func Registration() step.Registration {
	return step.Registration{
		Name:   "tag-move",
		Rights: Rights,
		Kinds:  []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Service", "Namespace", "Deployment", "StatefulSet", "DaemonSet", "Gateway"},
		Permissions: []step.Permission{
			step.Perm("get, create or update", "mutatingwebhookconfigurations (`istio-revision-tag-*`)", "cluster"),
			step.Perm("get, create or update", "services (`istiod-revision-tag-*`)", "ISTIO"),
			step.Perm("get, update", "validatingwebhookconfigurations (`istiod-default-validator`, tag `default` only)", "cluster"),
			step.Perm("list (optional: the blast radius names the Gateway API gateways that roll with the tag)", "gateways.gateway.networking.k8s.io", "all namespaces"),
			step.Perm("`--pin-gateways` (default): as `migrate-gw` for each Gateway it pins", "", "each pinned Gateway's namespace"),
			step.Perm("`--restart`: as `migrate-ns`", "", "each namespace on the tag"),
		},
		Undo:    Undo,
		Entries: []string{"tag-move --restart"}, // entries from before one command was one entry
		// --pin-gateways (the default) runs migrate-gw for each Gateway API gateway that follows the tag.
		Runs:     []step.SubRights{{Step: "migrate-gw", Where: gatewayAPINamespaces}},
		Variants: []step.Variant{{Flag: "--restart", Runs: []step.SubRights{{Step: "migrate-ns"}}}},
	}
}

// gatewayAPINamespaces are where istiod deploys Gateway API gateways: the ones a tag move may pin.
func gatewayAPINamespaces(s *mesh.Snapshot) []string {
	var out []string
	for _, g := range s.Gateways {
		if g.GatewayAPI != "" {
			out = append(out, g.Namespace)
		}
	}
	return out
}
