package journal

// Refs of the kinds the runbook steps touch.

func NamespaceRef(name string) ObjectRef {
	return ObjectRef{Version: "v1", Resource: "namespaces", Kind: "Namespace", Name: name}
}

func DeploymentRef(ns, name string) ObjectRef {
	return ObjectRef{Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespace: ns, Name: name}
}

// WorkloadRef is the ref of a Deployment, StatefulSet or DaemonSet by its kind.
func WorkloadRef(kind, ns, name string) ObjectRef {
	switch kind {
	case "StatefulSet":
		return StatefulSetRef(ns, name)
	case "DaemonSet":
		return DaemonSetRef(ns, name)
	}
	return DeploymentRef(ns, name)
}

func StatefulSetRef(ns, name string) ObjectRef {
	return ObjectRef{Group: "apps", Version: "v1", Resource: "statefulsets", Kind: "StatefulSet", Namespace: ns, Name: name}
}

func DaemonSetRef(ns, name string) ObjectRef {
	return ObjectRef{Group: "apps", Version: "v1", Resource: "daemonsets", Kind: "DaemonSet", Namespace: ns, Name: name}
}

func ServiceRef(ns, name string) ObjectRef {
	return ObjectRef{Version: "v1", Resource: "services", Kind: "Service", Namespace: ns, Name: name}
}

func ConfigMapRef(ns, name string) ObjectRef {
	return ObjectRef{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: ns, Name: name}
}

func MutatingWebhookRef(name string) ObjectRef {
	return ObjectRef{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations", Kind: "MutatingWebhookConfiguration", Name: name}
}

func ValidatingWebhookRef(name string) ObjectRef {
	return ObjectRef{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations", Kind: "ValidatingWebhookConfiguration", Name: name}
}

func HPARef(ns, name string) ObjectRef {
	return ObjectRef{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers", Kind: "HorizontalPodAutoscaler", Namespace: ns, Name: name}
}

func PDBRef(ns, name string) ObjectRef {
	return ObjectRef{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets", Kind: "PodDisruptionBudget", Namespace: ns, Name: name}
}

func ServiceAccountRef(ns, name string) ObjectRef {
	return ObjectRef{Version: "v1", Resource: "serviceaccounts", Kind: "ServiceAccount", Namespace: ns, Name: name}
}

func RoleRef(ns, name string) ObjectRef {
	return ObjectRef{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles", Kind: "Role", Namespace: ns, Name: name}
}

func RoleBindingRef(ns, name string) ObjectRef {
	return ObjectRef{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings", Kind: "RoleBinding", Namespace: ns, Name: name}
}

func ClusterRoleRef(name string) ObjectRef {
	return ObjectRef{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles", Kind: "ClusterRole", Name: name}
}

func ClusterRoleBindingRef(name string) ObjectRef {
	return ObjectRef{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings", Kind: "ClusterRoleBinding", Name: name}
}

// GatewayRef is a Gateway API Gateway (migrate-gw moves it by its istio.io/rev label).
func GatewayRef(ns, name string) ObjectRef {
	return ObjectRef{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways", Kind: "Gateway", Namespace: ns, Name: name}
}
