package migrategw

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Rights are what migrate-gw asks for in every gateway's namespace: a Deployment gateway's template
// label, or a Gateway API gateway's label and its strategy overlay (precheck's step rights).
func Rights(s *mesh.Snapshot, _ string) []kube.Access {
	out := []kube.Access{}
	for _, ns := range mesh.GatewayNamespaces(s) {
		out = append(out, kube.Can("apps", "deployments", ns, "get", "patch", "list", "watch")...)
		out = append(out, kube.Can("", "pods", ns, "list")...)
		out = append(out, kube.Can("discovery.k8s.io", "endpointslices", ns, "list")...)
		out = append(out, kube.Can("", "services", ns, "get")...)
	}
	return out
}

// newSub is migrate-gw as another step runs it (pkg/pin): its flags, and the gateway's namespace as
// a flag of its own, since the outer step's -n is not the gateway's.
func newSub() (step.Step, *pflag.FlagSet) {
	o := &Options{}
	f := pflag.NewFlagSet("migrate-gw", pflag.ContinueOnError)
	o.addFlags(f)
	f.StringVarP(&o.Namespace, "namespace", "n", "", "The gateway's namespace")
	return o, f
}

// Defaults, shared by the command and the sub-step.
const defaultTimeout = 5 * time.Minute

// Registration is migrate-gw as the step registry (plugins.Steps) holds it.
func Registration() step.Registration {
	return step.Registration{
		Name:   "migrate-gw",
		Rights: Rights,
		Kinds:  []string{"Deployment", "Gateway", "ConfigMap"},
		New:    newSub,
		Permissions: []step.Permission{
			step.Perm("get, patch, list, watch", "deployments (a Deployment gateway; for a Gateway, its Deployment is only read)", "the gateway's namespace"),
			step.Perm("patch", "gateways.gateway.networking.k8s.io (a Gateway API gateway)", "the gateway's namespace"),
			step.Perm("create, delete", "configmaps (the overlay `GATEWAY-istio-upgrade`, only when the Gateway's Deployment would take pods down first)", "the gateway's namespace"),
			step.Perm("get, list", "services, endpointslices, pods", "the gateway's namespace"),
			step.RequestGatePermission,
		},
		Undo: Undo,
	}
}
