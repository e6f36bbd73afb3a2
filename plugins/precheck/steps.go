package precheck

import (
	"context"
	"sort"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// StepAccess says whether this identity can run one step on this cluster, and what it lacks.
type StepAccess struct {
	Step    string   `json:"step"`
	Allowed bool     `json:"allowed"`
	Missing []string `json:"missing"`
}

// stepAccess is what each registered mutating step (and each of its variants, "canary-gw --helm") asks the apiserver for before it changes anything
// (see docs/rbac.md), with namespaced rights in the namespaces the step would act on in this mesh,
// beside the engine's own.
func stepAccess(steps []step.Registration, s *mesh.Snapshot, istioNS string, firstEntry bool) map[string][]kube.Access {
	engine := step.EngineAccess(istioNS, firstEntry)
	out := map[string][]kube.Access{}
	for _, r := range steps {
		rights := step.RightsWith(steps, r, nil, s, istioNS)
		if rights == nil {
			continue
		}
		out[r.Name] = append(append([]kube.Access{}, engine...), rights...)
		for _, v := range r.Variants {
			out[r.Name+" "+v.Flag] = append(append([]kube.Access{}, engine...), step.RightsWith(steps, r, &v, s, istioNS)...)
		}
	}
	return out
}

// CheckSteps asks the apiserver for every step's access (each question once).
func CheckSteps(ctx context.Context, c *kube.Clients, steps []step.Registration, s *mesh.Snapshot, istioNS string) ([]StepAccess, error) {
	per := stepAccess(steps, s, istioNS, step.FirstEntry(ctx, c, istioNS))
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
	order := map[string]int{}
	for _, r := range steps {
		order[r.Name] = len(order)
		for _, v := range r.Variants {
			order[r.Name+" "+v.Flag] = len(order)
		}
	}
	sort.Slice(out, func(i, j int) bool { return order[out[i].Step] < order[out[j].Step] })
	return out, nil
}
