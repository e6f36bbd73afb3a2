package tagmove

import (
	"context"
	"fmt"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/pin"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Undo takes a tag move back as one unit: the tag first (webhook, tag Service, default validator), so
// the pods a restart creates are injected by the old revision again, then what --restart restarted,
// the way migrate-ns is undone.
func Undo(ctx context.Context, c *kube.Clients, j *journal.Journal, e *journal.Entry, dryRun []string, p *cli.Progress) ([]journal.Action, error) {
	var actions []journal.Action
	restarts := *e
	restarts.Objects = nil
	var pinned []journal.Object // unpinned last, once the tag (and the workloads) are back
	for _, o := range e.Objects {
		switch o.Ref.Kind {
		case "Namespace", "Deployment", "StatefulSet", "DaemonSet":
			restarts.Objects = append(restarts.Objects, o)
			continue
		case "Gateway", "ConfigMap":
			pinned = append(pinned, o)
			continue
		}
		a, err := j.RestoreObject(ctx, o, dryRun)
		if err != nil {
			return actions, err
		}
		actions = append(actions, a)
	}
	if len(restarts.Objects) > 0 {
		restartsUndo := step.RestorerOf(restartStep)
		if restartsUndo == nil {
			return actions, fmt.Errorf("internal: %s is not registered, so the restarted workloads cannot be restarted back", restartStep)
		}
		more, err := restartsUndo(ctx, c, j, &restarts, dryRun, p)
		actions = append(actions, more...)
		if err != nil {
			return actions, err
		}
	}
	more, err := pin.Undo(ctx, c, j, e, pinned, dryRun, p)
	return append(actions, more...), err
}
