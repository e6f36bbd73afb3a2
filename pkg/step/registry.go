package step

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Registration is one mutating step as plugins/plugins.go registers it, in the order an upgrade runs
// them. What is said of every step is read from here: precheck's "steps this identity may run" asks
// for each step's Rights (beside the engine's own).
type Registration struct {
	Name string
	// Rights are the rights the step asks the apiserver for on this mesh, beyond EngineAccess (nil:
	// the step does not apply to it, e.g. ztunnel-roll without ambient node agents).
	Rights func(s *mesh.Snapshot, istioNS string) []kube.Access
}
