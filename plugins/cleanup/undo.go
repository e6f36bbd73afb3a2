package cleanup

import (
	"context"
	"errors"
	"fmt"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/helm"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// Undo puts a cleanup back: the helm commands --helm ran are rolled back newest first (the istiod
// release comes back before the base release's validator points at it again), then the objects it
// deleted are re-created. A release helm changed since the cleanup stops it (exit 68) unless --force.
func Undo(ctx context.Context, c *kube.Clients, j *journal.Journal, e *journal.Entry, dryRun []string, p *cli.Progress) ([]journal.Action, error) {
	var out []journal.Action
	if len(e.Helm) > 0 {
		acts := newActions(c)
		dry := helm.DryRun("")
		if len(dryRun) > 0 {
			dry = "server"
		}
		// Every release is checked before any is rolled back: a refusal leaves all of them as they are.
		for _, h := range e.Helm {
			if err := acts.Check(h, j.Force); err != nil {
				var d *helm.DriftError
				if errors.As(err, &d) {
					return out, cli.Errorf(cli.ExitDrifted, "%v: --force rolls it back anyway", err)
				}
				return out, err
			}
		}
		for i := len(e.Helm) - 1; i >= 0; i-- {
			h := e.Helm[i]
			if err := acts.Undo(h, j.Force, dry); err != nil {
				return out, err
			}
			p.Printf("helm: %s", h.UndoCommand())
			out = append(out, journal.Action{Ref: journal.ObjectRef{Kind: "HelmRelease", Namespace: h.Namespace, Name: h.Release},
				Verb: fmt.Sprintf("rolled back to version %d", h.From)})
		}
	}
	more, err := j.Restore(ctx, e, dryRun)
	return append(out, more...), err
}
