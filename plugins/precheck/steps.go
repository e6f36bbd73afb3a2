package precheck

import (
	"context"
	"sort"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/migratens"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/ztunnelroll"
)

// StepAccess says whether this identity can run one step on this cluster, and what it lacks.
type StepAccess struct {
	Step    string   `json:"step"`
	Allowed bool     `json:"allowed"`
	Missing []string `json:"missing"`
}

// stepAccess is what each mutating step asks the apiserver for before it changes anything (see
// docs/rbac.md), with namespaced rights in the namespaces the step would act on in this mesh: the
// namespaces that select a revision for migrate-ns, the gateways' namespaces for canary-gw and shift.
func stepAccess(s *mesh.Snapshot, istioNS string) map[string][]kube.Access {
	engine := step.EngineAccess(istioNS)
	with := func(as ...[]kube.Access) []kube.Access {
		out := append([]kube.Access{}, engine...)
		for _, a := range as {
			out = append(out, a...)
		}
		return out
	}
	restarts := kube.Can("", "namespaces", "", "get", "patch")
	for _, ns := range migratens.SelectNamespaces(s) {
		for _, r := range []string{"deployments", "statefulsets", "daemonsets"} {
			restarts = append(restarts, kube.Can("apps", r, ns, "get", "patch", "list", "watch")...)
		}
		restarts = append(restarts, kube.Can("", "pods", ns, "list")...)
	}
	var canary, shift []kube.Access
	seen := map[string]bool{}
	for _, g := range s.Gateways {
		if seen[g.Namespace] {
			continue
		}
		seen[g.Namespace] = true
		canary = append(canary, kube.Can("apps", "deployments", g.Namespace, "get", "create")...)
		canary = append(canary, kube.Can("autoscaling", "horizontalpodautoscalers", g.Namespace, "list", "create")...)
		canary = append(canary, kube.Can("policy", "poddisruptionbudgets", g.Namespace, "list", "create")...)
		canary = append(canary, kube.Can("", "pods", g.Namespace, "list")...)
		canary = append(canary, kube.Can("discovery.k8s.io", "endpointslices", g.Namespace, "list")...)
		shift = append(shift, kube.Can("apps", "deployments", g.Namespace, "get", "patch", "list", "watch")...)
		shift = append(shift, kube.Can("autoscaling", "horizontalpodautoscalers", g.Namespace, "get", "patch", "list")...)
		shift = append(shift, kube.Can("", "pods", g.Namespace, "list")...)
		shift = append(shift, kube.Can("discovery.k8s.io", "endpointslices", g.Namespace, "list")...)
	}
	tags := append(append(kube.Can("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "get", "create", "update"),
		kube.Can("admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "get", "update")...),
		kube.Can("", "services", istioNS, "get", "create", "update")...)
	var clean []kube.Access
	for _, r := range []struct{ group, resource, ns string }{
		{"apps", "deployments", istioNS}, {"", "services", istioNS}, {"", "serviceaccounts", istioNS}, {"", "configmaps", istioNS},
		{"autoscaling", "horizontalpodautoscalers", istioNS}, {"policy", "poddisruptionbudgets", istioNS},
		{"rbac.authorization.k8s.io", "roles", istioNS}, {"rbac.authorization.k8s.io", "rolebindings", istioNS},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", ""}, {"admissionregistration.k8s.io", "validatingwebhookconfigurations", ""},
		{"rbac.authorization.k8s.io", "clusterroles", ""}, {"rbac.authorization.k8s.io", "clusterrolebindings", ""},
	} {
		clean = append(clean, kube.Can(r.group, r.resource, r.ns, "list", "get", "delete")...)
	}
	clean = append(clean, kube.Can("discovery.k8s.io", "endpointslices", istioNS, "list")...)
	out := map[string][]kube.Access{
		"canary-gw":  with(canary),
		"shift":      with(shift),
		"migrate-ns": with(restarts),
		"tag-move":   with(tags),
		"cleanup":    with(clean),
	}
	if len(s.NodeAgents) > 0 { // ambient: the node agents' roll
		out["ztunnel-roll"] = with(ztunnelroll.Access(istioNS, false, false))
	}
	return out
}

// checkSteps asks the apiserver for every step's access (each question once).
func checkSteps(ctx context.Context, c *kube.Clients, s *mesh.Snapshot, istioNS string) ([]StepAccess, error) {
	per := stepAccess(s, istioNS)
	var all []kube.Access
	for _, as := range per {
		all = append(all, as...)
	}
	missing, err := kube.Missing(ctx, c.Kube, all)
	if err != nil {
		return nil, err
	}
	denied := map[kube.Access]bool{}
	for _, a := range missing {
		denied[a] = true
	}
	out := []StepAccess{}
	for step, as := range per {
		sa := StepAccess{Step: step, Missing: []string{}}
		seen := map[kube.Access]bool{}
		for _, a := range as {
			if denied[a] && !seen[a] {
				seen[a] = true
				sa.Missing = append(sa.Missing, a.String())
			}
		}
		sort.Strings(sa.Missing)
		sa.Allowed = len(sa.Missing) == 0
		out = append(out, sa)
	}
	order := map[string]int{"canary-gw": 0, "shift": 1, "migrate-ns": 2, "ztunnel-roll": 3, "tag-move": 4, "cleanup": 5}
	sort.Slice(out, func(i, j int) bool { return order[out[i].Step] < order[out[j].Step] })
	return out, nil
}
