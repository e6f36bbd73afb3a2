package step

import (
	"context"
	"errors"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
)

// Unit is one piece of a step's work that the runner runs: a migrate-ns batch, a shift step, a
// migrate-gw move. The step says what the unit changes, how to write it and how to gate it; the runner
// owns the lifecycle around that, the same for every step: no new unit once told to stop, the intent
// journaled before the first write, one timeout over the unit's gates, the request gate on the moved
// workloads, failures mapped to 74 or 75, progress lines, and the unit marked done only when it passed.
type Unit struct {
	// Label names the unit on progress lines and in errors ("batch 2", "step 1/3").
	Label string
	// Journal is the unit's name in the journal entry; "" for a unit the journal does not track.
	Journal string
	// Objects and Notes are recorded with the unit before its first write (what undo and a rerun need).
	Objects []string
	Notes   map[string]string
	// Write makes the unit's changes through Run.Write (under a dry run too). nil: nothing to write, as
	// for a unit a killed run wrote and never gated.
	Write func(ctx context.Context) error
	// Gate waits for the unit's control-plane gates on a real run (rollouts, SYNCED, capacity, routing).
	Gate func(ctx context.Context) error
	// Moves are the workloads (NAMESPACE/NAME) whose own requests the request gate judges once Gate
	// passed; none: no request gate.
	Moves []string
	// Timeout bounds Gate and the request gate together (the step's --timeout).
	Timeout time.Duration
}

// UnitResult is what the runner saw of a unit, for the step's JSON.
type UnitResult struct {
	Passed   bool         `json:"passed"`
	Seconds  float64      `json:"seconds"`
	Reason   string       `json:"reason,omitempty"`
	Requests *RequestGate `json:"requests,omitempty"`
}

// RunUnit runs one unit. It returns r.Cancelled() without writing when the step was told to stop; a
// unit once begun is finished (gated) even when told to stop meanwhile. A gate that fails is exit 75,
// one that runs out of time 74, too few requests 78 (the unit stays open: a rerun gates it again).
func (r *Run) RunUnit(ctx context.Context, u Unit) (UnitResult, error) {
	var res UnitResult
	if r.Stopping() {
		return res, r.Cancelled()
	}
	start := time.Now()
	if u.Journal != "" && u.Write != nil {
		if err := r.Begin(ctx, u.Journal, u.Objects, u.Notes); err != nil {
			return res, err
		}
	}
	if u.Write != nil {
		if err := u.Write(ctx); err != nil {
			return res, err // in a server dry run: the apiserver refused a write
		}
	}
	if !r.Live() {
		return res, nil
	}
	timeout := u.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	gctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(err error) (UnitResult, error) {
		r.Progress.Done()
		res.Reason, res.Seconds = err.Error(), time.Since(start).Seconds()
		code := cli.CodeOf(err)
		switch {
		case code == cli.ExitInconclusive:
			r.Progress.Printf("%s: %v", u.Label, err)
			return res, cli.Errorf(code, "%s: %v", u.Label, err) // not finished: a rerun gates it again, writing nothing twice
		case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
			return res, ctx.Err() // aborted (a second signal): not a gate's verdict
		case code != cli.ExitTimeout && errors.Is(gctx.Err(), context.DeadlineExceeded):
			code = cli.ExitTimeout
		case code != cli.ExitTimeout:
			code = cli.ExitGateFailed
		}
		r.Progress.Printf("%s: gate FAILED: %v", u.Label, err)
		return res, cli.Errorf(code, "%s: gate failed: %v", u.Label, err)
	}
	if u.Gate != nil {
		if err := u.Gate(gctx); err != nil {
			return fail(err)
		}
	}
	rg, err := r.GateRequests(gctx, u.Label, start, time.Now(), u.Moves)
	res.Requests = rg
	if err != nil {
		return fail(err)
	}
	res.Passed, res.Seconds = true, time.Since(start).Seconds()
	if u.Journal != "" {
		r.Finish(u.Journal)
	}
	return res, nil
}

// Hold waits d between units (shift's --interval), showing it on the progress line. Told to stop, it
// returns r.Cancelled() at once instead of waiting the hold out.
func (r *Run) Hold(ctx context.Context, d time.Duration, what string) error {
	if d <= 0 || !r.Live() {
		return nil
	}
	end := time.Now().Add(d)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	defer r.Progress.Done()
	for {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		if r.Stopping() {
			return r.Cancelled()
		}
		r.Progress.Update("%s: holding, %s left", what, left.Round(time.Second))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.stopping:
			return r.Cancelled()
		case <-tick.C:
		}
	}
}
