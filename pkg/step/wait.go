package step

import (
	"context"
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
)

// Condition is one look at what a gate waits for: done, or why not yet; an error fails the gate at once.
type Condition func(ctx context.Context) (reason string, done bool, err error)

// WaitFor polls cond every second (first at once) until done, an error, or timeout. A timeout is exit 74
// naming the last reason; an error from cond is returned as it is.
func WaitFor(ctx context.Context, p *cli.Progress, timeout time.Duration, what string, cond Condition) error {
	reason := ""
	var condErr error
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		why, done, err := cond(ctx)
		if err != nil {
			condErr = err
			return false, err
		}
		reason = why
		if !done {
			p.Update("%s: %s", what, why)
		}
		return done, nil
	})
	p.Done()
	switch {
	case condErr != nil:
		return condErr
	case err == nil:
		return nil
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return ctx.Err()
	}
	return cli.Errorf(cli.ExitTimeout, "%s: not done after %s: %s", what, timeout, reason)
}
