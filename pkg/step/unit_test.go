package step

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/metrics"
)

// One unit through the runner: its write, its gate and the moved workloads' requests decide the exit
// code (0, 75 for a failed gate or regressed requests, 74 for a gate out of time, 78 for too few
// requests); a unit is never begun once the step was told to stop.
func TestRunUnit(t *testing.T) {
	ctx := context.Background()
	slow := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	for _, tt := range []struct {
		name             string
		requests, failed float64
		gate             func(context.Context) error
		stopped          bool
		code             cli.ExitCode
		wrote            bool
		reason           string
	}{
		{name: "passes", requests: 600, code: cli.ExitOK, wrote: true},
		{name: "requests regressed", requests: 600, failed: 120, code: cli.ExitGateFailed, wrote: true, reason: "shop/web: destination: success rate 80.0%"},
		{name: "control-plane gate failed", requests: 600, gate: func(context.Context) error { return errors.New("1 pod not SYNCED") }, code: cli.ExitGateFailed, wrote: true, reason: "unit 1: gate failed: 1 pod not SYNCED"},
		{name: "gate out of time", requests: 600, gate: slow, code: cli.ExitTimeout, wrote: true},
		{name: "too few requests", requests: 0, code: cli.ExitInconclusive, wrote: true, reason: "too few requests"},
		{name: "told to stop first", requests: 600, stopped: true, code: cli.ExitCancelled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The baseline ends where the unit begins; its checks come 200 ms apart after that.
			srv := promAnsweringUntil(tt.requests, tt.failed, time.Now().Add(100*time.Millisecond))
			defer srv.Close()
			r := gateRun(srv, "halt")
			r.requests.o.Interval = 200 * time.Millisecond
			timeout := 5 * time.Second
			if tt.code == cli.ExitTimeout {
				timeout = 300 * time.Millisecond
			}
			r.stopping = make(chan struct{})
			if tt.stopped {
				close(r.stopping)
			}
			wrote := false
			res, err := r.RunUnit(ctx, Unit{Label: "unit 1", Moves: []string{"shop/web"}, Timeout: timeout,
				Write: func(context.Context) error { wrote = true; return nil }, Gate: tt.gate})
			if cli.CodeOf(err) != tt.code || wrote != tt.wrote || res.Passed != (tt.code == cli.ExitOK) {
				t.Fatalf("exit %d (%v), wrote %v, %+v; want exit %d, wrote %v", cli.CodeOf(err), err, wrote, res, tt.code, tt.wrote)
			}
			if tt.reason != "" && !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not say %q", err, tt.reason)
			}
			if tt.code == cli.ExitOK && (res.Requests == nil || res.Requests.Verdict != metrics.Pass) {
				t.Errorf("a passed unit without its request verdict: %+v", res.Requests)
			}
		})
	}
}

// The journal keeps a unit open until its gates passed: a failed or inconclusive unit stays in flight
// for the rerun (which gates it again) and for undo.
func TestRunUnitJournalsIntentAndDone(t *testing.T) {
	b := newBed(t)
	s := &walkStep{units: []string{"a", "b"}, failAt: "b"}
	if err := b.run(s, "none", nil); cli.CodeOf(err) != cli.ExitGateFailed {
		t.Fatalf("exit %d %v, want 75", cli.CodeOf(err), err)
	}
	e := b.entries()
	if len(e) != 1 || len(e[0].Units) != 2 || !e[0].Units[0].Done || e[0].Units[1].Done || e[0].Units[1].Objects[0] != "configmap/shop/target" {
		t.Fatalf("units: %+v", e)
	}
	if d := b.data(); d["a"] != "done" || d["b"] != "done" {
		t.Errorf("writes: %v", d)
	}
}

// walkStep writes one key per unit through RunUnit; the unit named failAt fails its gate.
type walkStep struct {
	fakeStep
	units  []string
	failAt string
}

func (s *walkStep) Apply(ctx context.Context, r *Run) error {
	for _, name := range s.units {
		_, err := r.RunUnit(ctx, Unit{Label: name, Journal: name, Objects: []string{"configmap/shop/target"},
			Write: func(ctx context.Context) error {
				patch := []byte(fmt.Sprintf(`{"data":{%q:"done"}}`, name))
				return r.Write("configmap/target", "patched", func([]string) error {
					_, err := r.C.Kube.CoreV1().ConfigMaps("shop").Patch(ctx, "target", types.MergePatchType, patch, r.PatchOptions())
					return err
				})
			},
			Gate: func(context.Context) error {
				if name == s.failAt {
					return errors.New("not SYNCED")
				}
				return nil
			}})
		if err != nil {
			return err
		}
	}
	return nil
}

// A hold between units ends at once when the step is told to stop, not when the hold is over.
func TestHoldEndsOnStop(t *testing.T) {
	r := &Run{DryRun: cli.DryRunNone, Progress: cli.NewProgress(io.Discard), stopping: make(chan struct{})}
	time.AfterFunc(50*time.Millisecond, func() { close(r.stopping) })
	done := make(chan error, 1)
	go func() { done <- r.Hold(context.Background(), time.Hour, "step 1/2") }()
	select {
	case err := <-done:
		if cli.CodeOf(err) != cli.ExitCancelled {
			t.Errorf("exit %d %v, want the cancelled code", cli.CodeOf(err), err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the hold waited on after the stop")
	}
	if err := (&Run{DryRun: cli.DryRunClient}).Hold(context.Background(), time.Hour, "x"); err != nil {
		t.Errorf("a dry run holds nothing: %v", err)
	}
}
