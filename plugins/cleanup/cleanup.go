// Package cleanup is `kubectl istio-upgrade cleanup`: remove the old revision only when nothing depends
// on it, and exactly its resources.
package cleanup

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Options is `cleanup`.
type Options struct {
	genericiooptions.IOStreams
	g *cli.Global

	Revision  string
	DryRunStr string
	Force     bool
	Soak      time.Duration
	Yes       bool

	dryRun cli.DryRun
}

// Details is the step-specific part of the result.
type Details struct {
	Revision string    `json:"revision"`
	Blockers []Blocker `json:"blockers"`
	Removed  []string  `json:"removed"`
	// HelmOwned are objects left alone because Helm owns them (without --force), with the commands to run.
	HelmOwned    []string `json:"helmOwned"`
	HelmCommands []string `json:"helmCommands"`
	Warnings     []string `json:"warnings"`
}

// revisionKinds are the kinds a revision owns, found by its istio.io/rev label. Tag webhooks and tag
// Services carry the label too but belong to the tag (a tag on OLD is a blocker).
var revisionKinds = []journal.ObjectRef{
	journal.MutatingWebhookRef(""), journal.ValidatingWebhookRef(""),
	journal.DeploymentRef("", ""), journal.ServiceRef("", ""), journal.ConfigMapRef("", ""),
	journal.HPARef("", ""), journal.PDBRef("", ""),
	{Version: "v1", Resource: "serviceaccounts", Kind: "ServiceAccount"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles", Kind: "Role"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings", Kind: "RoleBinding"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles", Kind: "ClusterRole"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings", Kind: "ClusterRoleBinding"},
}

var clusterScoped = map[string]bool{"MutatingWebhookConfiguration": true, "ValidatingWebhookConfiguration": true, "ClusterRole": true, "ClusterRoleBinding": true}

// NewCommand builds `cleanup`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams, g: g}
	cmd := &cobra.Command{
		Use:   "cleanup --revision OLD",
		Short: "Remove the old revision once nothing depends on it",
		Long: `Remove revision OLD, only when nothing depends on it. It refuses (exit 75) and lists every blocker with
the command that resolves it while any of these remain: namespaces labelled with OLD or with a tag
pointing at it, tags (default included) pointing at it, the default validator calling it, pods of any
kind injected by it, proxies connected to its istiod, gateway Deployments on it with replicas > 0.

When nothing depends on OLD it removes exactly the objects labelled istio.io/rev=OLD in the Istio
namespace and the cluster (istiod Deployment, Service, HPA, PDB, ServiceAccount, ConfigMaps, injector
and validator webhooks, revision RBAC) and old gateway Deployments scaled to zero - never a tag's
objects, the Services in front of gateways, another revision's objects, CRDs or shared base resources.

It warns when the last step that moved workloads ran less than --soak ago (the runbooks keep the old
control plane 24-48 h as the rollback path). Helm-owned objects are left to helm (the commands are
printed) unless --force. Journaled with the full deleted objects: undo brings the revision back.`,
		Example: `  # What would be removed, or what still blocks it
  kubectl istio-upgrade cleanup --revision 1-30 --dry-run

  # Remove it
  kubectl istio-upgrade cleanup --revision 1-30 -y

  # Bring it back
  kubectl istio-upgrade undo`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Revision, "revision", "", "The old revision to remove (required)")
	f.BoolVar(&o.Force, "force", false, "Also delete Helm-owned objects")
	f.DurationVar(&o.Soak, "soak", 24*time.Hour, "Warn when workloads were moved off the revision less than this long ago")
	f.BoolVarP(&o.Yes, "yes", "y", false, "Do not ask for confirmation")
	cli.AddDryRunFlag(f, &o.DryRunStr)
	return cmd
}

// Validate checks flags without I/O.
func (o *Options) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if o.Revision == "" {
		return cli.UsageErrorf("--revision is required: the old revision to remove")
	}
	d, err := cli.ParseDryRun(o.DryRunStr)
	o.dryRun = d
	return err
}

// Run checks blockers, then removes the revision.
func (o *Options) Run(ctx context.Context) error {
	c, err := o.g.Clients()
	if err != nil {
		return err
	}
	before, err := o.g.Snapshot(ctx)
	if err != nil {
		return err
	}
	known, next := false, ""
	for _, r := range before.Revisions {
		if r.Name == o.Revision {
			known = true
		} else if r.Installed && (next == "" || r.Version > versionOf(before, next)) {
			next = r.Name
		}
	}
	if !known {
		return cli.BadInputf("revision %q not found (see `kubectl istio-upgrade status`)", o.Revision)
	}
	det := &Details{Revision: o.Revision, Blockers: Blockers(before, o.Revision, next), Removed: []string{}, HelmOwned: []string{}, HelmCommands: []string{}, Warnings: []string{}}
	res := cli.NewResult("cleanup", o.dryRun)
	res.Details = det
	for _, w := range before.Warnings {
		det.Blockers = append(det.Blockers, Blocker{"syncz", "istiod", w, "make every istiod answer, then rerun: a proxy might still be connected"})
	}
	if len(det.Blockers) > 0 {
		res.Summary = fmt.Sprintf("cleanup refused: %d things still depend on revision %s; nothing was changed", len(det.Blockers), o.Revision)
		if o.g.Output == cli.OutputTable {
			rows := [][]string{}
			for _, b := range det.Blockers {
				rows = append(rows, []string{b.Object, b.Message, b.Fix})
			}
			_ = cli.WriteTableWrapped(o.Out, []string{"blocker", "why", "resolve with"}, rows)
			fmt.Fprintln(o.Out, res.Summary)
		} else if err := res.Write(o.Out, o.g.Output); err != nil {
			return err
		}
		return cli.Errorf(cli.ExitGateFailed, "revision %s is still in use (%d blockers)", o.Revision, len(det.Blockers))
	}
	o.soakWarning(ctx, det)
	objs, err := o.revisionObjects(ctx, c, before)
	if err != nil {
		return err
	}
	var remove []*unstructured.Unstructured
	for _, u := range objs {
		if mesh.IsHelmOwned(u.GetLabels(), u.GetAnnotations()) && !o.Force {
			det.HelmOwned = append(det.HelmOwned, refOf(u).String())
			continue
		}
		remove = append(remove, u)
	}
	if len(det.HelmOwned) > 0 {
		det.HelmCommands = []string{
			fmt.Sprintf("helm uninstall istiod-%s -n %s", o.Revision, o.g.IstioNamespace),
			fmt.Sprintf("helm upgrade istio-base istio/base -n %s --set defaultRevision=%s", o.g.IstioNamespace, next),
		}
		for _, h := range det.HelmCommands {
			fmt.Fprintf(o.ErrOut, "Helm owns %d objects of %s; run: %s\n", len(det.HelmOwned), o.Revision, h)
		}
	}
	for _, w := range det.Warnings {
		fmt.Fprintf(o.ErrOut, "warning: %s\n", w)
	}
	if o.dryRun == cli.DryRunNone {
		names := make([]string, 0, len(remove))
		for _, u := range remove {
			names = append(names, refOf(u).String())
		}
		if err := cli.Confirm(o.In, o.ErrOut, o.Yes, fmt.Sprintf("Delete %d objects of revision %s:\n  %s\n?", len(remove), o.Revision, strings.Join(names, "\n  "))); err != nil {
			return err
		}
		j, err := o.g.Journal()
		if err != nil {
			return err
		}
		rec := j.Begin("cleanup", os.Args[1:])
		for _, u := range remove {
			rec.CaptureObject(refOf(u), u)
		}
		if err := rec.Save(ctx); err != nil {
			return err
		}
		res.Journal = rec.Entry().ID
	}
	for _, u := range remove {
		ref := refOf(u)
		res.Add(strings.ToLower(ref.Kind)+"/"+ref.Name, "deleted")
		det.Removed = append(det.Removed, ref.String())
		if o.dryRun == cli.DryRunClient {
			continue
		}
		err := c.Dynamic.Resource(ref.GVR()).Namespace(ref.Namespace).Delete(ctx, ref.Name, metav1.DeleteOptions{DryRun: o.dryRun.APIDryRun()})
		if err != nil {
			return fmt.Errorf("delete %s: %w", ref, err)
		}
	}
	if o.dryRun == cli.DryRunNone {
		if after, err := o.g.Snapshot(ctx); err == nil {
			res.Diff = mesh.Compare(before, after)
		}
	}
	res.Summary = fmt.Sprintf("cleanup: removed %d objects of revision %s", len(det.Removed), o.Revision)
	if o.dryRun != cli.DryRunNone {
		res.Summary = fmt.Sprintf("cleanup would remove %d objects of revision %s", len(det.Removed), o.Revision)
	}
	return res.Write(o.Out, o.g.Output)
}

// revisionObjects lists what belongs to the revision: objects labelled istio.io/rev=OLD (not a tag's)
// in the Istio namespace and cluster-wide, plus old gateway Deployments scaled to zero.
func (o *Options) revisionObjects(ctx context.Context, c *kube.Clients, s *mesh.Snapshot) ([]*unstructured.Unstructured, error) {
	sel := metav1.ListOptions{LabelSelector: istio.LabelRev + "=" + o.Revision + "," + "!" + istio.LabelTag}
	var out []*unstructured.Unstructured
	for _, k := range revisionKinds {
		ns := o.g.IstioNamespace
		if clusterScoped[k.Kind] {
			ns = ""
		}
		l, err := c.Dynamic.Resource(k.GVR()).Namespace(ns).List(ctx, sel)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", k.Resource, err)
		}
		for i := range l.Items {
			u := &l.Items[i]
			if u.GetKind() == "" {
				u.SetKind(k.Kind)
			}
			if k.Kind == "ValidatingWebhookConfiguration" && u.GetName() == istio.DefaultValidatorName {
				continue // shared; a blocker when it calls OLD
			}
			if k.Kind == "ConfigMap" && strings.HasPrefix(u.GetName(), journal.NamePrefix) {
				continue
			}
			out = append(out, u)
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
			out = append(out, u)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return refOf(out[i]).String() < refOf(out[j]).String() })
	return out, nil
}

// soakWarning warns when the last step that moved workloads ran less than --soak ago.
func (o *Options) soakWarning(ctx context.Context, det *Details) {
	j, err := o.g.Journal()
	if err != nil {
		return
	}
	entries, err := j.List(ctx)
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

func versionOf(s *mesh.Snapshot, rev string) string {
	for _, r := range s.Revisions {
		if r.Name == rev {
			return r.Version
		}
	}
	return ""
}
