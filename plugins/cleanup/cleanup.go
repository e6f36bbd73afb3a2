// Package cleanup is `kubectl istio-upgrade cleanup`: remove the old revision only when nothing depends
// on it, and exactly its resources.
package cleanup

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/helm"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Options is `cleanup`: its flags and what one run will remove.
type Options struct {
	Revision string
	Force    bool
	Soak     time.Duration
	// Helm runs the Helm commands itself, through the Helm SDK (journaled: undo rolls the releases back).
	Helm bool

	det      *Details
	remove   []*unstructured.Unstructured
	next     string // the revision blockers suggest moving to
	releases []helm.Release
	helmRuns []journal.HelmAction // with --helm: what Apply runs, in order
	keptWhy  map[string]string    // objects of the revision that stay (helm.Object key), and why
}

// Name is the step's name in the journal and results.
func (o *Options) Name() string { return "cleanup" }

// ProxiesInDryRun: a connected proxy blocks cleanup, so even a dry run asks every istiod.
func (o *Options) ProxiesInDryRun() bool { return true }

// Details is the step-specific part of the result.
type Details struct {
	Revision string    `json:"revision"`
	Blockers []Blocker `json:"blockers"`
	Removed  []string  `json:"removed"`
	// HelmOwned are objects left alone because Helm owns them (without --force), with the commands to run.
	HelmOwned    []string `json:"helmOwned"`
	HelmCommands []string `json:"helmCommands"`
	// HelmRan are the helm commands --helm ran (or, in a dry run, would run) through the Helm SDK.
	HelmRan []string `json:"helmRan"`
	// HelmCharts name the chart each --helm action runs: release, chart, version and digest.
	HelmCharts []string `json:"helmCharts,omitempty"`
	// Kept are objects labelled with the revision that stay, and why (a gateway's Service, a
	// ServiceAccount other pods run as).
	Kept     []string `json:"kept"`
	Warnings []string `json:"warnings"`
}

// revisionKinds are the kinds a revision owns, found by its istio.io/rev label. Tag webhooks and tag
// Services carry the label too but belong to the tag (a tag on OLD is a blocker).
var revisionKinds = []journal.ObjectRef{
	journal.MutatingWebhookRef(""), journal.ValidatingWebhookRef(""),
	journal.DeploymentRef("", ""), journal.ServiceRef("", ""), journal.ConfigMapRef("", ""),
	journal.HPARef("", ""), journal.PDBRef("", ""),
	journal.ServiceAccountRef("", ""), journal.RoleRef("", ""), journal.RoleBindingRef("", ""),
	journal.ClusterRoleRef(""), journal.ClusterRoleBindingRef(""),
}

// NewCommand builds `cleanup`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "cleanup --revision OLD",
		Short: "Remove the old revision once nothing depends on it",
		Long: `Remove revision OLD, only when nothing depends on it. It refuses (exit 66) and lists every blocker with
the command that resolves it while any of these remain: namespaces labelled with OLD or with a tag
pointing at it, tags (default included) pointing at it, the default validator calling it, pods of any
kind injected by it, proxies connected to its istiod, gateway Deployments on it with replicas > 0.

When nothing depends on OLD it removes exactly the objects labelled istio.io/rev=OLD in the Istio
namespace and the cluster (istiod Deployment, Service, HPA, PDB, ServiceAccount, ConfigMaps, injector
and validator webhooks, revision RBAC) and old gateway Deployments scaled to zero - never a tag's
objects, the Services in front of gateways, another revision's objects, CRDs or shared base resources.

It warns when the last step that moved workloads ran less than --soak ago (the runbooks keep the old
control plane 24-48 h as the rollback path). Helm-owned objects are left to helm unless --force: the
commands printed name the real releases, read through the Helm SDK (helm uninstall of the istiod release,
helm upgrade of the base release with --reuse-values --set defaultRevision=NEXT), and a default validator
owned by the base release is a blocker whose fix is that helm upgrade (versions pinned to the release's
chart: only that value changes).

Only releases in the Istio namespace and the old revision's gateways' namespaces are read (a release
elsewhere, of any chart name, is never run and never counts as fixing a blocker), each with a size
bound. With --helm, cleanup runs those helm commands itself through the Helm SDK, on each release's own
stored chart (the plan names chart, version and digest): the base release's defaultRevision moves to NEXT first (the default validator is then no
blocker), then the objects that are not Helm's are deleted, then gateway releases are upgraded to
--set revision=NEXT and the istiod releases uninstalled with their history kept. Each helm command is
journaled before it starts; undo rolls the releases back (helm rollback, newest first) and re-creates the
deleted objects, refusing (exit 68) when a release was changed by helm since. It refuses (exit 66) when helm
uninstall of an istiod release would also delete what must stay: a tag's webhook or Service (tag-move
may have pointed it at the new revision) or an object cleanup keeps because it is in use; the fix named
is to annotate it helm.sh/resource-policy=keep and take it out of the release. A release uninstalled
with its history kept still holds its name: 'helm uninstall NAME' again removes the history for good.

Journaled with the full deleted objects: undo brings the revision back.`,
		Example: `  # What would be removed, or what still blocks it
  kubectl istio-upgrade cleanup --revision 1-30 --dry-run

  # Remove it
  kubectl istio-upgrade cleanup --revision 1-30 -y

  # A Helm install from the non-revisioned default: let cleanup run the helm commands itself
  kubectl istio-upgrade cleanup --revision default --helm -y

  # Bring it back
  kubectl istio-upgrade undo`,
		Args: cli.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&o.Revision, "revision", "", "The old revision to remove (required)")
	f.BoolVar(&o.Force, "force", false, "Also delete Helm-owned objects")
	f.BoolVar(&o.Helm, "helm", false, "Run the helm commands (base defaultRevision, gateway revision, istiod uninstall) through the Helm SDK, journaled")
	f.DurationVar(&o.Soak, "soak", 24*time.Hour, "Warn when workloads were moved off the revision less than this long ago")
	return step.NewCommand(g, streams, o, cmd)
}

// Validate checks flags without I/O.
func (o *Options) Validate(*step.Run, []string) error {
	if o.Revision == "" {
		return cli.UsageErrorf("--revision is required: the old revision to remove")
	}
	if o.Helm && o.Force {
		return cli.UsageErrorf("--helm and --force exclude each other: --helm lets helm remove what it owns, --force deletes it behind helm's back")
	}
	return nil
}

// Plan lists what still depends on the revision (a blocker refuses with exit 66, nothing changed) and,
// when nothing does, exactly the objects that make it up.
func (o *Options) Plan(ctx context.Context, r *step.Run) (*step.Plan, error) {
	before := r.Before
	known, next := false, ""
	for _, rev := range before.Revisions {
		if rev.Name == o.Revision {
			known = true
		} else if rev.Installed && (next == "" || newer(rev.Version, versionOf(before, next))) {
			next = rev.Name
		}
	}
	if !known {
		return nil, cli.BadInputf("revision %q not found (see `kubectl istio-upgrade status`)", o.Revision)
	}
	o.next = next
	o.det = &Details{Revision: o.Revision, Blockers: []Blocker{}, Removed: []string{}, HelmOwned: []string{}, HelmCommands: []string{}, HelmRan: []string{}, Kept: []string{}, Warnings: []string{}}
	res := r.Result
	res.Details = o.det
	// Istio's Helm releases, only in the Istio namespace and the old revision's gateways' (a release
	// elsewhere is a tenant's: never run, never trusted to fix a blocker): who owns what, and the real
	// commands. Without the right to read Secrets the commands fall back to the chart's conventional names.
	rels, skipped, err := helm.List(r.C.Kube, helm.Scope(r.G.IstioNamespace, before.Gateways, o.Revision)...)
	o.releases = rels
	o.det.Warnings = append(o.det.Warnings, skipped...)
	if err != nil {
		if o.Helm {
			return nil, cli.Errorf(cli.ExitNotPermitted, "--helm needs Istio's Helm releases, which are unreadable: %v", err)
		}
		o.det.Warnings = append(o.det.Warnings, "Helm releases unreadable: "+err.Error())
	}
	if o.Helm && next == "" {
		return nil, cli.BadInputf("--helm: no other revision is installed to point the releases at")
	}
	blockers, err := o.blockers(ctx, r, before, r.Raw)
	if err != nil {
		return nil, err
	}
	if len(blockers) > 0 {
		return nil, o.refuse(r, blockers)
	}
	o.soakWarning(ctx, r)
	objs, err := o.revisionObjects(ctx, r)
	if err != nil {
		return nil, err
	}
	for _, u := range objs {
		if mesh.IsHelmOwned(u.GetLabels(), u.GetAnnotations()) && !o.Force {
			o.det.HelmOwned = append(o.det.HelmOwned, refOf(u).String())
			continue
		}
		o.remove = append(o.remove, u)
	}
	if len(o.det.HelmOwned) > 0 {
		o.det.HelmCommands = helmCommands(o.releases, objs, o.Revision, next)
		if !o.Helm {
			for _, h := range o.det.HelmCommands {
				r.Progress.Printf("Helm owns %d objects of %s; run: %s", len(o.det.HelmOwned), o.Revision, h)
			}
		}
	}
	if o.Helm {
		o.helmRuns = helmRuns(o.releases, objs, o.Revision, next)
	}
	// What helm uninstall would delete beyond the plan: refused under --helm, warned of otherwise (the
	// printed commands would delete it).
	rb, err := o.releaseBlockers(ctx, r, objs)
	if err != nil {
		return nil, err
	}
	if o.Helm && len(rb) > 0 {
		return nil, o.refuse(r, rb)
	}
	for _, b := range rb {
		o.det.Warnings = append(o.det.Warnings, b.Message+"; "+b.Fix)
	}
	for _, w := range o.det.Warnings {
		r.Progress.Printf("warning: %s", w)
	}
	names := make([]string, 0, len(o.remove))
	p := &step.Plan{}
	for _, u := range o.remove {
		names = append(names, refOf(u).String())
		p.Record = append(p.Record, refOf(u))
		p.Access = append(p.Access, step.On(refOf(u), "delete")...)
	}
	p.Question = fmt.Sprintf("Delete %d objects of revision %s:\n  %s\n?", len(o.remove), o.Revision, strings.Join(names, "\n  "))
	if len(o.helmRuns) > 0 {
		var cmds []string
		for _, h := range o.helmRuns {
			cmd := h.Command()
			if rel, ok := o.release(h); ok {
				cmd += fmt.Sprintf("  # chart %s %s %s", rel.Chart, rel.Version, helm.Short(rel.Digest))
				o.det.HelmCharts = append(o.det.HelmCharts, fmt.Sprintf("%s/%s: chart %s %s %s", rel.Namespace, rel.Name, rel.Chart, rel.Version, rel.Digest))
			}
			cmds = append(cmds, cmd)
			// helm reads and writes its release Secrets (and changes the release's objects)
			p.Access = append(p.Access, kube.Can("", "secrets", h.Namespace, "list", "create", "update")...)
		}
		p.Question = fmt.Sprintf("Run through the Helm SDK:\n  %s\nand delete %d objects of revision %s:\n  %s\n?", strings.Join(cmds, "\n  "), len(o.remove), o.Revision, strings.Join(names, "\n  "))
	}
	return p, nil
}

// blockers is everything that still resolves to the revision (see Blockers), plus Gateway API gateways
// and waypoints on it and istiods that cannot say whether proxies are still connected.
func (o *Options) blockers(ctx context.Context, r *step.Run, s *mesh.Snapshot, raw *mesh.Inputs) ([]Blocker, error) {
	out := Blockers(s, o.Revision, o.next)
	helmFixed := map[int]bool{}
	for i, b := range out {
		if b.Kind != "validator" {
			continue
		}
		for _, rel := range o.releases {
			if ownsValidator(rel, o.Revision) {
				out[i].Fix = baseUpgrade(rel, o.next) // Helm owns the default validator: move it with Helm
				helmFixed[i] = true
			}
		}
	}
	if o.Helm { // --helm runs that base upgrade first: the validator is then no blocker
		kept := out[:0]
		for i, b := range out {
			if !helmFixed[i] {
				kept = append(kept, b)
			}
		}
		out = kept
	}
	gws, err := GatewayAPIBlockers(ctx, r.C, s, o.Revision, o.next)
	if err != nil {
		return nil, err
	}
	out = append(out, gws...)
	out = append(out, DataPlaneBlockers(s, raw, o.Revision, o.next)...)
	for _, w := range s.Warnings {
		out = append(out, Blocker{"syncz", "istiod", w, "make every istiod answer, then rerun: a proxy might still be connected"})
	}
	return out, nil
}

// runHelm runs the planned helm commands that pick selects, through the Helm SDK, journaling each as
// it completes (a server dry run is helm's own, checked against the cluster; a client one runs nothing).
func (o *Options) runHelm(ctx context.Context, r *step.Run, pick func(journal.HelmAction) bool) error {
	if len(o.helmRuns) == 0 {
		return nil
	}
	acts, dry := helm.New(r.C.Config), helm.DryRunOf(r.DryRun)
	for _, h := range o.helmRuns {
		if !pick(h) {
			continue
		}
		// Journaled before it starts: a step stopped mid-action leaves undo the release to look at.
		if rel, ok := o.release(h); ok {
			h.From = rel.Revision
		}
		if err := r.HelmStart(ctx, h); err != nil {
			return err
		}
		var err error
		if h.Action == journal.HelmUninstall {
			h.From, err = acts.Uninstall(h.Namespace, h.Release, dry)
		} else {
			key, value, _ := strings.Cut(h.Set, "=")
			h.From, h.To, err = acts.SetValue(ctx, h.Namespace, h.Release, key, value, dry)
		}
		if err != nil {
			return cli.Errorf(cli.ExitError, "%v", err)
		}
		r.Progress.Printf("helm: %s", h.Command())
		o.det.HelmRan = append(o.det.HelmRan, h.Command())
		if err := r.Helm(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

// Apply deletes the revision's objects (the journal holds them whole: undo re-creates them). On a real
// run the blockers are read again first: anything that came to depend on the revision since the plan
// (and the question) stops it with nothing deleted. Every delete names the UID it planned to delete.
func (o *Options) Apply(ctx context.Context, r *step.Run) error {
	if r.Live() {
		raw, err := mesh.List(ctx, r.C, r.ReadOptions(true))
		if err != nil {
			return err
		}
		b, err := o.blockers(ctx, r, mesh.Build(*raw), raw)
		if err != nil {
			return err
		}
		if len(b) > 0 {
			o.det.Blockers = b
			var what []string
			for _, x := range b {
				what = append(what, x.Object+": "+x.Message)
			}
			return cli.Errorf(cli.ExitBlocked, "since the plan, %d things came to depend on revision %s (nothing was deleted): %s", len(b), o.Revision, strings.Join(what, "; "))
		}
	}
	// --helm: the base release's validator moves first, so nothing calls the old istiod once it goes.
	if err := o.runHelm(ctx, r, func(h journal.HelmAction) bool { return h.Set != "" && strings.HasPrefix(h.Set, "defaultRevision=") }); err != nil {
		return err
	}
	for _, u := range o.remove {
		ref := refOf(u)
		uid := u.GetUID()
		err := r.Write(strings.ToLower(ref.Kind)+"/"+ref.Name, "deleted", func([]string) error {
			opts := r.DeleteOptions()
			if uid != "" {
				opts.Preconditions = &metav1.Preconditions{UID: &uid}
			}
			return r.C.Dynamic.Resource(ref.GVR()).Namespace(ref.Namespace).Delete(ctx, ref.Name, opts)
		})
		if err != nil {
			return fmt.Errorf("delete %s: %w", ref, err)
		}
		o.det.Removed = append(o.det.Removed, ref.String())
	}
	if err := o.runHelm(ctx, r, func(h journal.HelmAction) bool { return !strings.HasPrefix(h.Set, "defaultRevision=") }); err != nil {
		return err
	}
	r.Result.Summary = fmt.Sprintf("cleanup: removed %d objects of revision %s", len(o.det.Removed), o.Revision)
	if !r.Live() {
		r.Result.Summary = fmt.Sprintf("cleanup would remove %d objects of revision %s", len(o.det.Removed), o.Revision)
	}
	return nil
}

// revisionObjects lists exactly the revision's control plane in this Istio namespace (see
// controlPlane), each once, less what something else still uses; plus its old gateway Deployments
// scaled to zero.
func (o *Options) revisionObjects(ctx context.Context, r *step.Run) ([]*unstructured.Unstructured, error) {
	c, s, ns := r.C, r.Before, r.G.IstioNamespace
	o.keptWhy = map[string]string{}
	sel := metav1.ListOptions{LabelSelector: istio.LabelRev + "=" + o.Revision + "," + "!" + istio.LabelTag}
	istiod := map[string]bool{}
	for _, p := range r.Raw.IstiodPods {
		if istio.RevisionOf(p.Labels) == o.Revision {
			istiod[p.Namespace+"/"+p.Name] = true
		}
	}
	pods := append(append([]corev1.Pod{}, r.Raw.Pods...), r.Raw.IstiodPods...)
	seen := map[journal.ObjectRef]bool{}
	var out []*unstructured.Unstructured
	add := func(u *unstructured.Unstructured) {
		if ref := refOf(u); !seen[ref] {
			seen[ref] = true
			out = append(out, u)
		}
	}
	for _, k := range revisionKinds {
		lns := ns
		if journal.ClusterScoped[k.Kind] {
			lns = ""
		}
		l, err := c.Dynamic.Resource(k.GVR()).Namespace(lns).List(ctx, sel)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", k.Resource, err)
		}
		for i := range l.Items {
			u := &l.Items[i]
			if u.GetKind() == "" {
				u.SetKind(k.Kind)
			}
			if u.GetAPIVersion() == "" {
				u.SetAPIVersion(k.GVR().GroupVersion().String())
			}
			if !owned(u, o.Revision, ns) {
				if !strings.HasPrefix(u.GetName(), journal.NamePrefix) {
					why := "labelled " + istio.LabelRev + "=" + o.Revision + " but not part of its control plane"
					o.det.Kept = append(o.det.Kept, refOf(u).String()+": "+why)
					o.keptWhy[objKey(u)] = why
				}
				continue
			}
			why, err := inUse(ctx, c, u, pods, istiod)
			if err != nil {
				return nil, err
			}
			if why != "" {
				o.det.Kept = append(o.det.Kept, refOf(u).String()+": "+why)
				o.keptWhy[objKey(u)] = why
				continue
			}
			add(u)
		}
	}
	for _, g := range s.Gateways {
		if g.Revision == o.Revision && g.Replicas == 0 {
			u, err := c.Dynamic.Resource(journal.DeploymentRef("", "").GVR()).Namespace(g.Namespace).Get(ctx, g.Name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			if u.GetKind() == "" {
				u.SetKind("Deployment")
			}
			add(u)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := deleteRank[out[i].GetKind()], deleteRank[out[j].GetKind()]
		if ri != rj {
			return ri < rj
		}
		return refOf(out[i]).String() < refOf(out[j]).String()
	})
	return out, nil
}

// deleteRank orders removals by dependency: first what calls istiod (its webhooks), then istiod and
// what scales and shields it, its Service, then what it reads and runs as. The journal keeps this
// order and undo walks it backwards, so a re-created istiod finds its ConfigMaps, RBAC and
// ServiceAccount, and its webhooks return only once it is back.
var deleteRank = map[string]int{
	"MutatingWebhookConfiguration": 0, "ValidatingWebhookConfiguration": 0,
	"Deployment": 1, "HorizontalPodAutoscaler": 2, "PodDisruptionBudget": 2, "Service": 3,
	"ConfigMap": 4, "RoleBinding": 5, "ClusterRoleBinding": 5, "Role": 6, "ClusterRole": 6, "ServiceAccount": 7,
}

// soakWarning warns when the last step that moved workloads ran less than --soak ago.
func (o *Options) soakWarning(ctx context.Context, r *step.Run) {
	det := o.det
	entries, err := r.J.Entries(ctx)
	if err != nil {
		return
	}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if strings.HasPrefix(e.Step, "migrate-ns") || strings.HasPrefix(e.Step, "tag-move") || strings.HasPrefix(e.Step, "shift") {
			if age := time.Since(e.Time); age < o.Soak {
				det.Warnings = append(det.Warnings, fmt.Sprintf("workloads were last moved %s ago (journal entry %s, %s); the runbooks keep the old control plane for %s as the rollback path",
					age.Round(time.Minute), e.ID, e.Step, o.Soak))
			}
			return
		}
	}
}

func refOf(u *unstructured.Unstructured) journal.ObjectRef {
	gv := strings.SplitN(u.GetAPIVersion(), "/", 2)
	group, version := "", gv[0]
	if len(gv) == 2 {
		group, version = gv[0], gv[1]
	}
	resource := ""
	for _, k := range revisionKinds {
		if k.Kind == u.GetKind() {
			resource = k.Resource
		}
	}
	return journal.ObjectRef{Group: group, Version: version, Resource: resource, Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
}

// newer orders Istio versions as versions (1.10 after 1.9); an unparsable one is never newer.
func newer(a, b string) bool {
	va, err := version.ParseGeneric(a)
	if err != nil {
		return false
	}
	vb, err := version.ParseGeneric(b)
	return err != nil || va.GreaterThan(vb)
}

func versionOf(s *mesh.Snapshot, rev string) string {
	for _, r := range s.Revisions {
		if r.Name == rev {
			return r.Version
		}
	}
	return ""
}
