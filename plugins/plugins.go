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
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/ztunnelroll"
)

// Steps are the mutating steps, in the order an upgrade runs them: what precheck's "steps this
// identity may run" asks for each.
func Steps() []step.Registration {
	return []step.Registration{
		{Name: "canary-gw", Rights: canarygw.Rights},
		{Name: "shift", Rights: shift.Rights},
		{Name: "migrate-ns", Rights: migratens.Rights},
		{Name: "ztunnel-roll", Rights: ztunnelroll.Rights},
		{Name: "tag-move", Rights: tagmove.Rights},
		{Name: "cleanup", Rights: cleanup.Rights},
	}
}

// Commands are the subcommands of kubectl istio-upgrade.
func Commands() []cli.CommandFactory {
	return []cli.CommandFactory{
		status.NewCommand,
		precheck.Command(Steps()),
		canarygw.NewCommand,
		shift.NewCommand,
		migratens.NewCommand,
		migrategw.NewCommand,
		ztunnelroll.NewCommand,
		tagmove.NewCommand,
		cleanup.NewCommand,
		history.NewCommand,
		// Steps whose undo needs their own order or guard; the others are restored object by object.
		undo.Command(undo.Restorers{
			"canary-gw":          canarygw.Undo,
			"shift":              shift.Undo,
			"migrate-ns":         migratens.Undo,
			"migrate-gw":         migrategw.Undo,
			"tag-move":           tagmove.Undo,
			"cleanup":            cleanup.Undo,
			"ztunnel-roll":       ztunnelroll.Undo,
			"tag-move --restart": migratens.Undo, // entries written before one command was one entry
		}),
	}
}
