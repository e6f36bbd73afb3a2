// Package tagmove is `kubectl istio-upgrade tag-move`: point a revision tag at another revision,
// showing first who will move.
package tagmove

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	admregv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/util/retry"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins/migratens"
)

// Options is `tag-move`.
type Options struct {
	genericiooptions.IOStreams
	g *cli.Global

	Tag       string
	To        string
	Restart   bool
	Overwrite bool
	DryRunStr string
	Yes       bool
	BatchSize int
	Timeout   time.Duration

	dryRun cli.DryRun
	entry  string // this move's journal entry, which its --restart follows
}

// Details is the step-specific part of the result.
type Details struct {
	Tag          string          `json:"tag"`
	FromRevision string          `json:"fromRevision,omitempty"`
	ToRevision   string          `json:"toRevision"`
	BlastRadius  Radius          `json:"blastRadius"`
	Restart      json.RawMessage `json:"restart,omitempty"`
}

// NewCommand builds `tag-move`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams, g: g}
	cmd := &cobra.Command{
		Use:   "tag-move TAG --to REVISION",
		Short: "Point a revision tag at another revision",
		Long: `Create revision tag TAG, or move it to REVISION: the webhook istio-revision-tag-<TAG> and its Service
istiod-revision-tag-<TAG>, as istioctl tag set makes them; for the default tag also the default
validator. Namespaces labelled istio.io/rev=TAG (and, for default, istio-injection=enabled) then
inject new pods from REVISION.

Before acting it prints the blast radius: the namespaces selecting TAG, their workloads and pods that
move on their next restart, and gateways whose pods select TAG. --restart then restarts them with
migrate-ns's batched, gated machinery. Moving an existing tag needs --overwrite; a tag may not be
named like a revision. Journaled: undo puts the tag back.`,
		Example: `  # Who would move if prod-stable pointed at 1-31?
  kubectl istio-upgrade tag-move prod-stable --to 1-31 --overwrite --dry-run

  # Move it and restart everything that follows it, in verified batches
  kubectl istio-upgrade tag-move prod-stable --to 1-31 --overwrite --restart -y

  # Make 1-31 the default revision (istio-injection=enabled namespaces, the default validator)
  kubectl istio-upgrade tag-move default --to 1-31 --overwrite`,
		Args: cli.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Tag = args[0]
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.To, "to", "", "The revision the tag will point at (required)")
	f.BoolVar(&o.Restart, "restart", false, "Restart the workloads that follow the tag, in gated batches (as migrate-ns)")
	f.BoolVar(&o.Overwrite, "overwrite", false, "Move a tag that already exists")
	f.BoolVarP(&o.Yes, "yes", "y", false, "Do not ask for confirmation")
	f.IntVar(&o.BatchSize, "batch-size", 5, "With --restart: workloads restarted together before each gate")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "With --restart: how long one batch may take to pass its gate")
	cli.AddDryRunFlag(f, &o.DryRunStr)
	return cmd
}

// Validate checks arguments without I/O.
func (o *Options) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if errs := validation.IsDNS1123Label(o.Tag); len(errs) > 0 {
		return cli.UsageErrorf("tag %q: %s", o.Tag, strings.Join(errs, "; "))
	}
	if o.To == "" {
		return cli.UsageErrorf("--to is required: the revision the tag will point at")
	}
	if o.BatchSize < 1 || o.Timeout <= 0 {
		return cli.UsageErrorf("--batch-size must be at least 1 and --timeout positive")
	}
	d, err := cli.ParseDryRun(o.DryRunStr)
	o.dryRun = d
	return err
}

// Run moves the tag.
func (o *Options) Run(ctx context.Context) error {
	c, err := o.g.Clients()
	if err != nil {
		return err
	}
	before, err := mesh.Read(ctx, c, o.g.ReadOptions("", o.dryRun == cli.DryRunNone))
	if err != nil {
		return err
	}
	var target *mesh.Revision
	for i := range before.Revisions {
		r := &before.Revisions[i]
		if r.Name == o.Tag && r.Installed {
			return cli.BadInputf("%q is the name of a revision; a tag may not shadow it", o.Tag)
		}
		if r.Name == o.To {
			target = r
		}
	}
	if target == nil || !target.Installed {
		for _, t := range before.Tags {
			if t.Name == o.To {
				return cli.BadInputf("--to %s is a tag (pointing at %s); give the revision", o.To, t.Revision)
			}
		}
		return cli.BadInputf("revision %s is not installed", o.To)
	}
	if target.InjectorWebhook == "" {
		return cli.BadInputf("revision %s has no injector webhook", o.To)
	}
	from := ""
	for _, t := range before.Tags {
		if t.Name == o.Tag {
			from = t.Revision
		}
	}
	if from != "" && !o.Overwrite && from != o.To {
		return cli.BadInputf("tag %s already points at %s; pass --overwrite to move it to %s", o.Tag, from, o.To)
	}
	det := &Details{Tag: o.Tag, FromRevision: from, ToRevision: o.To, BlastRadius: BlastRadius(before, o.Tag)}
	res := cli.NewResult("tag-move", o.dryRun)
	res.Details = det
	o.printRadius(det)
	if from == o.To {
		res.Summary = fmt.Sprintf("tag %s already points at %s; nothing to change", o.Tag, o.To)
		return res.Write(o.Out, o.g.Output)
	}

	k := c.Kube
	adm := k.AdmissionregistrationV1()
	injector, err := adm.MutatingWebhookConfigurations().Get(ctx, target.InjectorWebhook, metav1.GetOptions{})
	if err != nil {
		return err
	}
	whName := istio.TagWebhookPrefix + o.Tag
	existingWh, err := adm.MutatingWebhookConfigurations().Get(ctx, whName, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	var wantWh *admregv1.MutatingWebhookConfiguration
	if existingWh != nil && err == nil {
		wantWh, err = MoveWebhook(existingWh, injector, o.To)
	} else {
		existingWh = nil
		wantWh, err = NewWebhook(injector, o.Tag, o.To)
	}
	if err != nil {
		return err
	}
	svcs := k.CoreV1().Services(o.g.IstioNamespace)
	existingSvc, serr := svcs.Get(ctx, TagServicePrefix+o.Tag, metav1.GetOptions{})
	if serr != nil && !apierrors.IsNotFound(serr) {
		return serr
	}
	if apierrors.IsNotFound(serr) {
		existingSvc = nil
	}
	revSvc, err := svcs.Get(ctx, "istiod-"+o.To, metav1.GetOptions{})
	if err != nil && existingSvc == nil {
		return cli.BadInputf("revision %s has no Service istiod-%s to derive the tag Service from: %v", o.To, o.To, err)
	}
	wantSvc := TagService(existingSvc, revSvc, o.Tag, o.To)
	var wantVal *admregv1.ValidatingWebhookConfiguration
	if o.Tag == istio.DefaultRevision {
		def, derr := adm.ValidatingWebhookConfigurations().Get(ctx, istio.DefaultValidatorName, metav1.GetOptions{})
		revVal, verr := adm.ValidatingWebhookConfigurations().Get(ctx, "istio-validator-"+o.To+"-"+o.g.IstioNamespace, metav1.GetOptions{})
		if derr == nil && verr == nil {
			wantVal = MoveValidator(def, revVal, o.To)
		} else {
			fmt.Fprintf(o.ErrOut, "warning: default validator not moved (%v / %v)\n", derr, verr)
		}
	}

	if o.dryRun == cli.DryRunClient {
		res.Add("mutatingwebhookconfiguration/"+whName, verb(existingWh != nil))
		res.Add("service/"+wantSvc.Name, verb(existingSvc != nil))
		if wantVal != nil {
			res.Add("validatingwebhookconfiguration/"+wantVal.Name, "configured")
		}
		res.Summary = fmt.Sprintf("tag %s would move %s → %s: %d namespaces, %d pods follow on their next restart", o.Tag, cli.OrNone(from), o.To, len(det.BlastRadius.Namespaces), det.BlastRadius.Pods)
		return res.Write(o.Out, o.g.Output)
	}
	dry := o.dryRun.APIDryRun()
	if o.dryRun == cli.DryRunNone {
		if err := cli.Confirm(o.In, o.ErrOut, o.Yes, fmt.Sprintf("Point tag %s (now %s) at %s? %d namespaces and %d pods follow it on their next restart.",
			o.Tag, cli.OrNone(from), o.To, len(det.BlastRadius.Namespaces), det.BlastRadius.Pods)); err != nil {
			return err
		}
		j, err := o.g.Journal()
		if err != nil {
			return err
		}
		rec := j.Begin("tag-move", os.Args[1:])
		refs := []journal.ObjectRef{journal.MutatingWebhookRef(whName), journal.ServiceRef(o.g.IstioNamespace, wantSvc.Name)}
		if wantVal != nil {
			refs = append(refs, journal.ValidatingWebhookRef(wantVal.Name))
		}
		if err := rec.Capture(ctx, refs...); err != nil {
			return err
		}
		if err := rec.Save(ctx); err != nil {
			return err
		}
		res.Journal = rec.Entry().ID
		o.entry = res.Journal
	}
	// istiod patches its webhooks' caBundle at any time: an update that meets a newer version is
	// derived again from it and retried.
	if existingWh != nil {
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			_, err := adm.MutatingWebhookConfigurations().Update(ctx, wantWh, metav1.UpdateOptions{DryRun: dry})
			if apierrors.IsConflict(err) {
				if cur, gerr := adm.MutatingWebhookConfigurations().Get(ctx, whName, metav1.GetOptions{}); gerr == nil {
					if w, derr := MoveWebhook(cur, injector, o.To); derr == nil {
						wantWh = w
					}
				}
			}
			return err
		})
	} else {
		_, err = adm.MutatingWebhookConfigurations().Create(ctx, wantWh, metav1.CreateOptions{DryRun: dry})
	}
	if err != nil {
		return fmt.Errorf("tag webhook %s: %w", whName, err)
	}
	res.Add("mutatingwebhookconfiguration/"+whName, verb(existingWh != nil))
	if existingSvc != nil {
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			_, err := svcs.Update(ctx, wantSvc, metav1.UpdateOptions{DryRun: dry})
			if apierrors.IsConflict(err) {
				if cur, gerr := svcs.Get(ctx, wantSvc.Name, metav1.GetOptions{}); gerr == nil {
					wantSvc = TagService(cur, revSvc, o.Tag, o.To)
				}
			}
			return err
		})
	} else {
		_, err = svcs.Create(ctx, wantSvc, metav1.CreateOptions{DryRun: dry})
	}
	if err != nil {
		return fmt.Errorf("tag service %s: %w", wantSvc.Name, err)
	}
	res.Add("service/"+wantSvc.Name, verb(existingSvc != nil))
	if wantVal != nil {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			_, err := adm.ValidatingWebhookConfigurations().Update(ctx, wantVal, metav1.UpdateOptions{DryRun: dry})
			if apierrors.IsConflict(err) {
				def, derr := adm.ValidatingWebhookConfigurations().Get(ctx, istio.DefaultValidatorName, metav1.GetOptions{})
				rev, verr := adm.ValidatingWebhookConfigurations().Get(ctx, "istio-validator-"+o.To+"-"+o.g.IstioNamespace, metav1.GetOptions{})
				if derr == nil && verr == nil {
					wantVal = MoveValidator(def, rev, o.To)
				}
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("default validator: %w", err)
		}
		res.Add("validatingwebhookconfiguration/"+wantVal.Name, "configured")
	}
	var restartErr error
	if o.Restart && len(det.BlastRadius.Namespaces) > 0 {
		restartErr = o.restart(ctx, det)
	}
	if o.dryRun == cli.DryRunNone {
		if after, err := o.g.Snapshot(ctx); err == nil {
			res.Diff = mesh.Compare(before, after)
		}
	}
	res.Summary = fmt.Sprintf("tag %s moved %s → %s; %d namespaces (%d pods) follow it", o.Tag, cli.OrNone(from), o.To, len(det.BlastRadius.Namespaces), det.BlastRadius.Pods)
	if !o.Restart && det.BlastRadius.Pods > 0 {
		res.Summary += " on their next restart (use --restart, or migrate-ns)"
	}
	if o.dryRun == cli.DryRunServer {
		res.Summary += " (server dry run: nothing persisted)"
	}
	if err := res.Write(o.Out, o.g.Output); err != nil {
		return err
	}
	return restartErr
}

// restart runs migrate-ns over the namespaces following the tag, keeping their labels.
func (o *Options) restart(ctx context.Context, det *Details) error {
	var buf bytes.Buffer
	streams := o.IOStreams
	if o.g.Output != cli.OutputTable {
		streams.Out = &buf // the restart result is embedded: stdout holds one document
	}
	m := migratens.NewOptions(o.g, streams)
	m.Step, m.KeepLabels, m.Yes, m.To, m.Follows = "tag-move --restart", true, true, o.Tag, o.entry
	m.BatchSize, m.Timeout, m.DryRunStr = o.BatchSize, o.Timeout, o.DryRunStr
	for _, n := range det.BlastRadius.Namespaces {
		m.Namespaces = append(m.Namespaces, n.Name)
	}
	if err := m.Validate(); err != nil {
		return err
	}
	err := m.Run(ctx)
	if buf.Len() > 0 {
		det.Restart = json.RawMessage(bytes.TrimSpace(buf.Bytes()))
	}
	return err
}

func (o *Options) printRadius(det *Details) {
	r := det.BlastRadius
	fmt.Fprintf(o.ErrOut, "Blast radius of tag %s (%s → %s): %d namespaces, %d pods move on their next restart\n",
		o.Tag, cli.OrNone(det.FromRevision), det.ToRevision, len(r.Namespaces), r.Pods)
	for _, n := range r.Namespaces {
		fmt.Fprintf(o.ErrOut, "  namespace/%s (%s): %d pods in %s\n", n.Name, n.Label, n.Pods, strings.Join(n.Workloads, ", "))
	}
	for _, g := range r.Gateways {
		fmt.Fprintf(o.ErrOut, "  gateway %s selects the tag\n", g)
	}
}

func verb(existed bool) string {
	if existed {
		return "configured"
	}
	return "created"
}
