package step

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// Condition is one look at what a gate waits for: done, or why not yet; an error fails the gate at once.
type Condition func(ctx context.Context) (reason string, done bool, err error)

// WaitFor polls cond every second (first at once) until done, an error, or timeout. A timeout is exit 74
// naming the last reason; an error from cond is returned as it is.
func WaitFor(ctx context.Context, p *cli.Progress, timeout time.Duration, what string, cond Condition) error {
	return WaitOn(ctx, p, timeout, what, nil, cond)
}

// WaitOn is WaitFor that also looks again whenever wake fires (a watch event on what it waits for),
// so a wait ends when the change lands, not at the next one-second tick.
func WaitOn(ctx context.Context, p *cli.Progress, timeout time.Duration, what string, wake <-chan struct{}, cond Condition) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer p.Done()
	backoff := 0
	for {
		why, done, err := cond(ctx)
		// An overloaded, failing or unreachable apiserver (429, 5xx, a dropped or timed-out connection)
		// is waited out with backoff, up to the timeout: never a gate failure, never a hang.
		pause := time.Second
		if err != nil && ctx.Err() == nil && kube.Transient(err) {
			backoff++
			pause = min(time.Second<<min(backoff, 3), 8*time.Second)
			why, err = fmt.Sprintf("the apiserver did not answer (%v); retrying in %s", err, pause), nil
		} else if err == nil {
			backoff = 0
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
		if done && err == nil {
			return nil
		}
		p.Update("%s: %s", what, why)
		tick := time.NewTimer(pause)
		select {
		case <-wake:
			tick.Stop()
		case <-tick.C:
		case <-ctx.Done():
			tick.Stop()
			if err := parent.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return cli.Errorf(cli.ExitTimeout, "%s: not done after %s: %s", what, timeout, why)
		}
	}
}
