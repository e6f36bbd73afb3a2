package ztunnelroll

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Registration is ztunnel-roll as the step registry (plugins.Steps) holds it.
func Registration() step.Registration {
	return step.Registration{
		Name:   "ztunnel-roll",
		Rights: Rights,
		Kinds:  []string{"DaemonSet"},
		Permissions: []step.Permission{
			step.Perm("get, update", "daemonsets `ztunnel`, `istio-cni-node`", "ISTIO"),
			step.Perm("list, delete", "pods (each node's agent pod, replaced)", "ISTIO"),
			step.Perm("list", "controllerrevisions (the template a node ran, for its rollback)", "ISTIO"),
			step.Perm("get, patch", "nodes (cordon, uncordon)", "cluster"),
			step.Perm("list", "pods (a node's ambient pods)", "all namespaces"),
			step.Perm("`--drain`: create", "pods/eviction", "all namespaces"),
			step.Perm("`--max-connections`: create", "pods/portforward (ztunnel's stats port)", "ISTIO"),
		},
		Undo: Undo,
	}
}
