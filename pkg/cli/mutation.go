package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// DryRun is the --dry-run strategy, as kubectl has it.
type DryRun string

const (
	DryRunNone   DryRun = "none"
	DryRunClient DryRun = "client"
	DryRunServer DryRun = "server"
)

// AddDryRunFlag adds --dry-run to a mutating command. A bare --dry-run means client, as in kubectl.
func AddDryRunFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "dry-run", string(DryRunNone), `Must be "none", "client", or "server". With client, only print what would change; with server, send every change with dryRun=All so the apiserver and its webhooks validate it without persisting it.`)
	fs.Lookup("dry-run").NoOptDefVal = string(DryRunClient)
}

// ParseDryRun validates a --dry-run value.
func ParseDryRun(s string) (DryRun, error) {
	switch DryRun(s) {
	case DryRunNone, DryRunClient, DryRunServer:
		return DryRun(s), nil
	}
	return "", UsageErrorf("invalid --dry-run %q: must be none, client or server", s)
}

// APIDryRun is the DryRun field of a request's options.
func (d DryRun) APIDryRun() []string {
	if d == DryRunServer {
		return []string{"All"}
	}
	return nil
}

// Suffix is appended to "kind/name verb" lines.
func (d DryRun) Suffix() string {
	switch d {
	case DryRunClient:
		return " (dry run)"
	case DryRunServer:
		return " (server dry run)"
	}
	return ""
}

// Action is one object a step changed: printed as "kind/name verb".
type Action struct {
	Object string `json:"object"`
	Verb   string `json:"verb"`
}

// Result is the document every mutating step prints with -o json|yaml.
type Result struct {
	TypeMeta `json:",inline"`
	Step     string     `json:"step"`
	DryRun   string     `json:"dryRun"`
	Journal  string     `json:"journalEntry,omitempty"`
	Actions  []Action   `json:"actions"`
	Diff     *mesh.Diff `json:"diff,omitempty"`
	Summary  string     `json:"summary"`
	// Details carries step-specific data (plans, blast radius, gate results).
	Details any `json:"details,omitempty"`
	// Patches are the changes as patches one can commit to Git (objects a GitOps controller manages
	// would otherwise be put back).
	Patches []Patch `json:"patches,omitempty"`
	// Warnings the runner found (objects a GitOps controller manages).
	Warnings []string `json:"warnings,omitempty"`
}

// Patch is one change as sent to the apiserver.
type Patch struct {
	Object string          `json:"object"`
	Type   string          `json:"type"`
	Patch  json.RawMessage `json:"patch"`
}

// NewResult starts a step result.
func NewResult(step string, dry DryRun) *Result {
	return &Result{TypeMeta: NewTypeMeta("StepResult"), Step: step, DryRun: string(dry), Actions: []Action{}}
}

// Add records an action.
func (r *Result) Add(object, verb string) {
	r.Actions = append(r.Actions, Action{Object: object, Verb: verb})
}

// Write prints the result: the document under -o json|yaml, otherwise the action lines, the
// proxy-status diff and the summary.
func (r *Result) Write(w io.Writer, format string) error {
	if format != OutputTable {
		return WriteDocument(w, format, r)
	}
	for _, a := range r.Actions {
		fmt.Fprintf(w, "%s %s%s\n", a.Object, a.Verb, DryRun(r.DryRun).Suffix())
	}
	if r.Diff != nil {
		if err := WriteDiffTable(w, r.Diff); err != nil {
			return err
		}
	}
	if r.Journal != "" {
		fmt.Fprintf(w, "\nRecorded as journal entry %s (undo with: kubectl istio-upgrade undo %s)\n", r.Journal, r.Journal)
	}
	if r.Summary != "" {
		fmt.Fprintln(w, r.Summary)
	}
	return nil
}
