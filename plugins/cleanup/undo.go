package cleanup

import (
	"context"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/helm"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// Undo puts a cleanup back: the helm commands --helm ran are rolled back newest first (the istiod
// release comes back before the base release's validator points at it again), then the objects it
// deleted are re-created. A release helm changed since the cleanup stops it (exit 68) unless --force.
func Undo(ctx context.Context, c *kube.Clients, j *journal.Journal, e *journal.Entry, dryRun []string, p *cli.Progress) ([]journal.Action, error) {
	out, err := helm.New(c.Config).UndoAll(e.Helm, j.Force, dryRun, p)
	if err != nil {
		return out, err
	}
	more, err := j.Restore(ctx, e, dryRun)
	return append(out, more...), err
}
