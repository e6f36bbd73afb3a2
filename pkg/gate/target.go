package gate

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// ReadyTarget resolves --to (a revision or a revision tag) to its revision, which must be installed
// with every istiod ready (exit 65 otherwise).
func ReadyTarget(s *mesh.Snapshot, to string) (*mesh.Revision, error) {
	rev, _, ok := s.Resolver().Resolve(to)
	if !ok {
		return nil, cli.BadInputf("--to %s is neither an installed revision nor a revision tag (see `kubectl istio-upgrade status`)", to)
	}
	if err := RevisionReady(s, rev); err != nil {
		return nil, err
	}
	for i := range s.Revisions {
		if s.Revisions[i].Name == rev {
			return &s.Revisions[i], nil
		}
	}
	return nil, cli.BadInputf("revision %s is not installed (see `kubectl istio-upgrade status`)", rev)
}

// RevisionReady is nil when revision is installed and every istiod of it is ready.
func RevisionReady(s *mesh.Snapshot, revision string) error {
	for _, r := range s.Revisions {
		if r.Name == revision && r.Installed && r.Desired > 0 && r.Ready >= r.Desired {
			return nil
		}
		if r.Name == revision && r.Installed {
			return cli.BadInputf("the istiod of revision %s is not ready (%d/%d)", revision, r.Ready, r.Desired)
		}
	}
	return cli.BadInputf("revision %s is not installed (see `kubectl istio-upgrade status`)", revision)
}

// IstiodPods returns the istiod pods of one revision.
func IstiodPods(raw *mesh.Inputs, revision string) []corev1.Pod {
	return IstiodPodsOf(raw.IstiodPods, revision)
}

// IstiodPodsOf keeps the istiod pods of the given revisions.
func IstiodPodsOf(pods []corev1.Pod, revisions ...string) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if slices.Contains(revisions, istio.RevisionOf(p.Labels)) {
			out = append(out, p)
		}
	}
	return out
}
