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
			{"get, update", "daemonsets `ztunnel`, `istio-cni-node`", "ISTIO"},
			{"list, delete", "pods (each node's agent pod, replaced)", "ISTIO"},
			{"list", "controllerrevisions (the template a node ran, for its rollback)", "ISTIO"},
			{"get, patch", "nodes (cordon, uncordon)", "cluster"},
			{"list", "pods (a node's ambient pods)", "all namespaces"},
			{"`--drain`: create", "pods/eviction", "all namespaces"},
			{"`--max-connections`: create", "pods/portforward (ztunnel's stats port)", "ISTIO"},
		},
		Undo: Undo,
	}
}
