package cli

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// ExitCode is the process exit status of a command. The values are a contract with the shell
// runbooks that call us; docs/exit-codes.md is generated from ExitCodes.
type ExitCode int

const (
	ExitOK           ExitCode = 0   // success
	ExitError        ExitCode = 1   // unexpected or API error
	ExitUsage        ExitCode = 64  // bad flags or arguments
	ExitBadInput     ExitCode = 65  // unknown revision, tag, namespace, …
	ExitBlocked      ExitCode = 66  // refused because something still depends on what the step would change
	ExitDeclined     ExitCode = 67  // the person at the terminal answered no
	ExitDrifted      ExitCode = 68  // undo refused: others changed what the step changed since
	ExitLocked       ExitCode = 73  // another mutating step holds the cluster's lock
	ExitTimeout      ExitCode = 74  // a gate did not pass in time: the step halted
	ExitStale        ExitCode = 76  // the cluster changed while the step planned
	ExitGateFailed   ExitCode = 75  // a gate failed: the step halted (and reverted when asked)
	ExitNotPermitted ExitCode = 77  // RBAC denied an operation
	ExitInconclusive ExitCode = 78  // a request-metrics gate had too little traffic for a verdict
	ExitPrecheck     ExitCode = 79  // precheck found blocking issues
	ExitCancelled    ExitCode = 130 // SIGINT/SIGTERM: the step stopped after its in-flight work
)

// ExitCodes lists every code with its meaning, in order; docs and tests read it.
var ExitCodes = []struct {
	Code    ExitCode
	Name    string
	Meaning string
}{
	{ExitOK, "OK", "success"},
	{ExitError, "Error", "unexpected or API error (cluster unreachable, unknown context, …)"},
	{ExitUsage, "Usage", "bad flags or arguments"},
	{ExitBadInput, "BadInput", "bad input: unknown revision, tag, namespace or object, or a target revision more than one minor ahead of what serves (without --allow-version-skip); nothing was changed"},
	{ExitBlocked, "Blocked", "refused because something still depends on what the step would change (cleanup's blockers, undo of an entry later steps changed again); nothing was changed"},
	{ExitDeclined, "Declined", "answered no at the confirmation prompt; nothing was changed"},
	{ExitDrifted, "Drifted", "undo refused: fields the step changed were changed again since (or the object was deleted or re-created); the fields are listed, nothing was changed; undo --force restores them anyway"},
	{ExitLocked, "Locked", "another mutating step holds the cluster's lock (the Lease istio-upgrade-lock in the Istio namespace), nothing was changed; or this step lost it mid-run (frozen or cut off past its lease) and stopped before its next write"},
	{ExitTimeout, "Timeout", "a gate did not pass within --timeout: the step halted (and reverted when asked)"},
	{ExitGateFailed, "GateFailed", "a gate failed: the step halted (and reverted when asked)"},
	{ExitStale, "StalePlan", "the plan is stale: another step wrote the journal, or held the lock, while this one planned; nothing was changed, rerun to plan again"},
	{ExitNotPermitted, "NotPermitted", "not permitted: RBAC denied an operation"},
	{ExitInconclusive, "Inconclusive", "a request-metrics gate saw too few requests for a verdict (below --min-requests): never taken as a pass; the step halted where it was, resumable (--inconclusive=pass|fail decides instead)"},
	{ExitPrecheck, "PrecheckFailed", "precheck found issues at or above --fail-on"},
	{ExitCancelled, "Cancelled", "interrupted (SIGINT/SIGTERM): the step finished or reverted its in-flight work and stopped; its journal entry is marked cancelled and a rerun resumes it"},
}

// Error carries an exit code with the error message that explains it.
type Error struct {
	Code ExitCode
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code.
func Errorf(code ExitCode, format string, args ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// UsageErrorf is a usage error (exit 64).
func UsageErrorf(format string, args ...any) error { return Errorf(ExitUsage, format, args...) }

// BadInputf is a bad-input error (exit 65).
func BadInputf(format string, args ...any) error { return Errorf(ExitBadInput, format, args...) }

// CodeOf maps an error to its exit code: an explicit *Error wins, RBAC denials are 77,
// everything else is 1.
func CodeOf(err error) ExitCode {
	if err == nil {
		return ExitOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var drift *journal.DriftError
	if errors.As(err, &drift) {
		return ExitDrifted
	}
	var rollout *kube.RolloutFailed
	if errors.As(err, &rollout) {
		return ExitGateFailed
	}
	if apierrors.IsForbidden(err) {
		return ExitNotPermitted
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ExitTimeout
	}
	return ExitError
}
