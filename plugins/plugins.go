// Package plugins lists the runbook steps, in the order an upgrade runs them.
package plugins

import (
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/canarygw"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/cleanup"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/history"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/migrategw"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/migratens"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/precheck"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/shift"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/status"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/tagmove"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/undo"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/verify"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/ztunnelroll"
)

// Steps are the mutating steps, in the order an upgrade runs them: what precheck's "steps this
// identity may run" asks for each, the kinds journal trust allows, undo's restorers, sub-steps.
// Adding a step is its package and one line here.
func Steps() []step.Registration {
	return []step.Registration{
		canarygw.Registration(),
		shift.Registration(),
		migratens.Registration(),
		migrategw.Registration(),
		ztunnelroll.Registration(),
		tagmove.Registration(),
		cleanup.Registration(),
	}
}

// Commands are the subcommands of kubectl istio-upgrade; it registers Steps with the runner.
func Commands() []cli.CommandFactory {
	steps := Steps()
	step.Register(steps)
	return []cli.CommandFactory{
		status.NewCommand,
		precheck.Command(steps),
		canarygw.NewCommand,
		shift.NewCommand,
		migratens.NewCommand,
		migrategw.NewCommand,
		ztunnelroll.NewCommand,
		tagmove.NewCommand,
		cleanup.NewCommand,
		history.NewCommand,
		undo.NewCommand,
		verify.NewCommand,
	}
}
