package helm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
)

// Actions runs helm's own commands through the SDK (pkg/action), on the releases' stored charts:
// `helm upgrade NAME --reuse-values --set K=V` at the same chart version, `helm uninstall NAME
// --keep-history` (so the uninstall can be rolled back) and `helm rollback NAME VERSION`.
type Actions struct {
	// Config is the action configuration of a namespace (tests give one on fakes).
	Config func(namespace string) (*action.Configuration, error)
}

// NewActions talks to the cluster of cfg, with the Secrets storage driver helm uses by default.
func NewActions(cfg *rest.Config) *Actions {
	return &Actions{Config: func(namespace string) (*action.Configuration, error) {
		ac := &action.Configuration{}
		if err := ac.Init(&getter{cfg: cfg, ns: namespace}, namespace, "secret", func(string, ...any) {}); err != nil {
			return nil, err
		}
		return ac, nil
	}}
}

// DryRun is how an action is tried: "" runs it; "client" renders it only; "server" lets helm check
// it against the cluster without changing anything.
type DryRun string

// DryRunOf is a step's --dry-run as helm's.
func DryRunOf(d cli.DryRun) DryRun {
	if d == cli.DryRunNone {
		return ""
	}
	return DryRun(d)
}

// New gives a step its Actions on the cluster (unit tests swap in FakeActions).
var New = NewActions

// SetValue is `helm upgrade NAME --reuse-values --set key=value` with the chart the release already
// runs: only that value changes. It returns the release's version before and after.
func (a *Actions) SetValue(ctx context.Context, namespace, name, key, value string, dry DryRun) (from, to int, err error) {
	cfg, err := a.Config(namespace)
	if err != nil {
		return 0, 0, err
	}
	cur, err := action.NewGet(cfg).Run(name)
	if err != nil {
		return 0, 0, fmt.Errorf("helm release %s/%s: %w", namespace, name, err)
	}
	if cur.Info == nil || cur.Info.Status != release.StatusDeployed {
		return 0, 0, fmt.Errorf("helm release %s/%s is %s, not deployed", namespace, name, statusOf(cur))
	}
	if dry == "client" {
		return cur.Version, cur.Version + 1, nil
	}
	u := action.NewUpgrade(cfg)
	u.Namespace, u.ReuseValues = namespace, true
	if dry == "server" {
		u.DryRun, u.DryRunOption = true, "server"
	}
	rel, err := u.RunWithContext(ctx, name, cur.Chart, map[string]any{key: value})
	if err != nil {
		return cur.Version, 0, fmt.Errorf("helm upgrade %s/%s --set %s=%s: %w", namespace, name, key, value, err)
	}
	return cur.Version, rel.Version, nil
}

// Uninstall is `helm uninstall NAME --keep-history`: the release's objects are deleted by helm and its
// history stays, so Rollback can bring it back. It returns the version that was deployed.
func (a *Actions) Uninstall(namespace, name string, dry DryRun) (int, error) {
	cfg, err := a.Config(namespace)
	if err != nil {
		return 0, err
	}
	cur, err := action.NewGet(cfg).Run(name)
	if err != nil {
		return 0, fmt.Errorf("helm release %s/%s: %w", namespace, name, err)
	}
	if cur.Info == nil || cur.Info.Status != release.StatusDeployed {
		return 0, fmt.Errorf("helm release %s/%s is %s, not deployed", namespace, name, statusOf(cur))
	}
	if dry == "client" {
		return cur.Version, nil
	}
	un := action.NewUninstall(cfg)
	un.KeepHistory, un.DryRun = true, dry == "server"
	if _, err := un.Run(name); err != nil {
		return cur.Version, fmt.Errorf("helm uninstall %s/%s: %w", namespace, name, err)
	}
	return cur.Version, nil
}

// Rollback is `helm rollback NAME VERSION`; it first checks the release is as the action left it
// (version, deployed or uninstalled), so a later helm change is never rolled over silently.
func (a *Actions) Rollback(namespace, name string, version, leftVersion int, leftStatus release.Status, force bool, dry DryRun) error {
	cfg, err := a.Config(namespace)
	if err != nil {
		return err
	}
	if err := check(cfg, namespace, name, leftVersion, leftStatus, force); err != nil {
		return err
	}
	if dry == "client" {
		return nil
	}
	rb := action.NewRollback(cfg)
	rb.Version, rb.DryRun = version, dry == "server"
	if err := rb.Run(name); err != nil {
		return fmt.Errorf("helm rollback %s/%s %d: %w", namespace, name, version, err)
	}
	return nil
}

func check(cfg *action.Configuration, namespace, name string, leftVersion int, leftStatus release.Status, force bool) error {
	cur, err := cfg.Releases.Last(name)
	if err != nil {
		return fmt.Errorf("helm release %s/%s: %w", namespace, name, err)
	}
	// leftStatus "" accepts any: an action stopped midway may have left its release failed or pending.
	if !force && (cur.Version != leftVersion || cur.Info == nil || (leftStatus != "" && cur.Info.Status != leftStatus)) {
		return &DriftError{Release: namespace + "/" + name, Want: fmt.Sprintf("version %d %s", leftVersion, leftStatus), Got: fmt.Sprintf("version %d %s", cur.Version, statusOf(cur))}
	}
	return nil
}

// DriftError says a release changed after the step's action (someone ran helm since).
type DriftError struct{ Release, Want, Got string }

func (e *DriftError) Error() string {
	return fmt.Sprintf("helm release %s changed since the step (left at %s, now %s)", e.Release, e.Want, e.Got)
}

func statusOf(r *release.Release) string {
	if r.Info == nil {
		return "unknown"
	}
	return strings.ToLower(r.Info.Status.String())
}

// getter is the RESTClientGetter helm's kube client wants, from the plugin's own rest.Config.
type getter struct {
	cfg *rest.Config
	ns  string
}

func (g *getter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.cfg), nil }

func (g *getter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(g.cfg)
	if err != nil {
		return nil, err
	}
	return memory.NewMemCacheClient(dc), nil
}

func (g *getter) ToRESTMapper() (meta.RESTMapper, error) {
	dc, err := g.ToDiscoveryClient()
	if err != nil {
		return nil, err
	}
	return restmapper.NewDeferredDiscoveryRESTMapper(dc), nil
}

func (g *getter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	return clientcmd.NewDefaultClientConfig(*clientcmdapi.NewConfig(), &clientcmd.ConfigOverrides{Context: clientcmdapi.Context{Namespace: g.ns}})
}

// Undo rolls back one helm action a step ran: to the version deployed before it, after checking the
// release is still as the action left it (force rolls back anyway).
func (a *Actions) Undo(h journal.HelmAction, force bool, dry DryRun) error {
	if h.Action == journal.HelmInstall { // an install is undone by uninstalling it, history and all
		if err := a.Check(h, force); err != nil {
			return err
		}
		cfg, err := a.Config(h.Namespace)
		if err != nil {
			return err
		}
		if dry == "client" {
			return nil
		}
		un := action.NewUninstall(cfg)
		un.DryRun = dry == "server"
		if _, err := un.Run(h.Release); err != nil {
			return fmt.Errorf("helm uninstall %s/%s: %w", h.Namespace, h.Release, err)
		}
		return nil
	}
	left, status := left(h)
	return a.Rollback(h.Namespace, h.Release, h.From, left, status, force, dry)
}

// UndoAll undoes an entry's helm actions, newest first, after checking every release is as its action
// left it: a refusal (exit 68, unless force) changes none of them. dryRun is the API's (["All"] for a
// server dry run).
func (a *Actions) UndoAll(hs []journal.HelmAction, force bool, dryRun []string, p *cli.Progress) ([]journal.Action, error) {
	hs, err := a.settle(hs)
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		if err := a.Check(h, force); err != nil {
			var d *DriftError
			if errors.As(err, &d) {
				return nil, cli.Errorf(cli.ExitDrifted, "%v: --force undoes it anyway", err)
			}
			return nil, err
		}
	}
	dry := DryRun("")
	if len(dryRun) > 0 {
		dry = "server"
	}
	var out []journal.Action
	for i := len(hs) - 1; i >= 0; i-- {
		h := hs[i]
		if err := a.Undo(h, force, dry); err != nil {
			return out, err
		}
		p.Printf("helm: %s", h.UndoCommand())
		out = append(out, journal.Action{Ref: journal.ObjectRef{Kind: "HelmRelease", Namespace: h.Namespace, Name: h.Release}, Verb: h.UndoVerb()})
	}
	return out, nil
}

// settle turns the pending actions of hs (journaled, never reported done: the step was stopped
// mid-action) into what they did, read from the release: dropped when it shows the action never took
// effect, given the version it left otherwise.
func (a *Actions) settle(hs []journal.HelmAction) ([]journal.HelmAction, error) {
	var out []journal.HelmAction
	for _, h := range hs {
		if !h.Pending {
			out = append(out, h)
			continue
		}
		cfg, err := a.Config(h.Namespace)
		if err != nil {
			return nil, err
		}
		last, err := cfg.Releases.Last(h.Release)
		if errors.Is(err, driver.ErrReleaseNotFound) && h.Action == journal.HelmInstall {
			continue // the install never wrote its release
		} else if err != nil {
			return nil, fmt.Errorf("helm release %s/%s: %w", h.Namespace, h.Release, err)
		}
		untouched := last.Version == h.From && last.Info != nil && last.Info.Status == release.StatusDeployed
		switch h.Action {
		case journal.HelmInstall:
			h.To = last.Version
		case journal.HelmUpgrade:
			if untouched {
				continue
			}
			if last.Version == h.From+1 {
				h.To = last.Version
			}
		case journal.HelmUninstall:
			if untouched {
				continue
			}
		}
		out = append(out, h)
	}
	return out, nil
}

// Check says whether Undo would refuse h because helm changed the release since (a *DriftError).
func (a *Actions) Check(h journal.HelmAction, force bool) error {
	cfg, err := a.Config(h.Namespace)
	if err != nil {
		return err
	}
	left, status := left(h)
	return check(cfg, h.Namespace, h.Release, left, status, force)
}

// left is the version and status h left its release in (any status for an action stopped midway).
func left(h journal.HelmAction) (int, release.Status) {
	if h.Pending {
		if h.Action == journal.HelmUninstall {
			return h.From, ""
		}
		return h.To, ""
	}
	if h.Action == journal.HelmUninstall {
		return h.From, release.StatusUninstalled
	}
	return h.To, release.StatusDeployed
}

// InstallFrom is `helm install NAME` of the chart release `from` runs (same chart, same version),
// with from's user values overlaid by vals; post changes the rendered manifests for what the chart has
// no value for. It returns the release version and its manifest (rendered only, in a dry run).
func (a *Actions) InstallFrom(ctx context.Context, namespace, from, name string, vals map[string]any, post func(string) (string, error), dry DryRun) (int, string, error) {
	cfg, err := a.Config(namespace)
	if err != nil {
		return 0, "", err
	}
	src, err := action.NewGet(cfg).Run(from)
	if err != nil {
		return 0, "", fmt.Errorf("helm release %s/%s: %w", namespace, from, err)
	}
	if _, err := cfg.Releases.Last(name); err == nil {
		return 0, "", fmt.Errorf("helm release %s/%s already exists", namespace, name)
	}
	in := action.NewInstall(cfg)
	in.Namespace, in.ReleaseName = namespace, name
	in.PostRenderer = postRenderer(post)
	switch dry {
	case "client":
		in.DryRun, in.ClientOnly = true, true
	case "server":
		in.DryRun, in.DryRunOption = true, "server"
	}
	rel, err := in.RunWithContext(ctx, src.Chart, chartutil.CoalesceTables(vals, copyValues(src.Config)))
	if err != nil {
		return 0, "", fmt.Errorf("helm install %s/%s (chart of %s): %w", namespace, name, from, err)
	}
	return rel.Version, rel.Manifest, nil
}

// copyValues deep-copies values, since CoalesceTables writes into its second argument's maps.
func copyValues(v map[string]any) map[string]any {
	out := make(map[string]any, len(v))
	for k, x := range v {
		if m, ok := x.(map[string]any); ok {
			x = copyValues(m)
		}
		out[k] = x
	}
	return out
}

type postRenderer func(string) (string, error)

func (p postRenderer) Run(in *bytes.Buffer) (*bytes.Buffer, error) {
	out, err := p(in.String())
	if err != nil {
		return nil, err
	}
	return bytes.NewBufferString(out), nil
}
