package migratens

import (
	"github.com/spf13/pflag"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
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

// Registration is migrate-ns as the step registry (plugins.Steps) holds it.
func Registration() step.Registration {
	return step.Registration{
		Name:   "migrate-ns",
		Rights: Rights,
		Kinds:  []string{"Namespace", "Deployment", "StatefulSet", "DaemonSet", "Gateway"},
		New:    newSub,
		Permissions: []step.Permission{
			step.Perm("get, patch", "namespaces it relabels", "cluster"),
			step.Perm("get, patch, list, watch", "deployments, statefulsets, daemonsets it restarts", "each migrated namespace"),
			step.Perm("list", "pods", "each migrated namespace"),
			step.Perm("list (optional: the guard warns less without)", "poddisruptionbudgets, horizontalpodautoscalers", "all namespaces"),
			step.Perm("create, dry run only (optional: without it, a fixed 2 s wait)", "pods", "each relabelled namespace: a dry-run pod shows which revision the injector picks now, so restarts wait until it picks the new one (and, rolling back, the old one)"),
			step.Perm("list (optional: the plan names the Gateway API gateways that roll with a namespace)", "gateways.gateway.networking.k8s.io", "all namespaces"),
			step.Perm("`--pin-gateways` (default): as `migrate-gw` for each Gateway it pins", "", "each pinned Gateway's namespace"),
			step.RequestGatePermission,
		},
		Undo: Undo,
	}
}

// newSub is migrate-ns as another step runs it (tag-move --restart): its flags, and --keep-labels to
// restart namespaces that already select the target without relabelling them.
func newSub() (step.Step, *pflag.FlagSet) {
	o := NewOptions()
	f := pflag.NewFlagSet("migrate-ns", pflag.ContinueOnError)
	o.addFlags(f)
	f.BoolVar(&o.KeepLabels, "keep-labels", false, "Restart without relabelling")
	return o, f
}
