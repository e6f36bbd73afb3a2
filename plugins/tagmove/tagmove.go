// Package tagmove is `kubectl istio-upgrade tag-move`: point a revision tag at another revision,
// showing first who will move.
package tagmove

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/util/retry"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/pin"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// restartStep restarts what follows the tag (--restart), as a sub-step of the move.
const restartStep = "migrate-ns"

// Options is `tag-move`: its flags and what one run found.
type Options struct {
	Tag       string
	To        string
	Restart   bool
	Overwrite bool
	// PinGateways labels the Gateway API gateways that follow the tag with their current revision first.
	PinGateways bool
	BatchSize   int
	Timeout     time.Duration

	det         *Details
	injector    *admregv1.MutatingWebhookConfiguration
	existingWh  *admregv1.MutatingWebhookConfiguration
	wantWh      *admregv1.MutatingWebhookConfiguration
	existingSvc *corev1.Service
	revSvc      *corev1.Service
	wantSvc     *corev1.Service
	wantVal     *admregv1.ValidatingWebhookConfiguration
	pins        []pin.Pin
	// deactivate is the injector of the revision named default, which the default tag replaces.
	deactivate string
}

// Details is the step-specific part of the result.
type Details struct {
	Tag          string `json:"tag"`
	FromRevision string `json:"fromRevision,omitempty"`
	ToRevision   string `json:"toRevision"`
	BlastRadius  Radius `json:"blastRadius"`
	// Restart is what --restart did (migrate-ns's details), in the same journal entry as the move.
	Restart any `json:"restart,omitempty"`
}

// Name is the step's name in the journal and results.
func (o *Options) Name() string { return "tag-move" }

// MovesToRevision: the runner refuses a target that skips a minor (--allow-version-skip).
func (o *Options) MovesToRevision() {}

// MovesTraffic: --restart's batches (migrate-ns, run by the registry) are gated on their requests.
func (o *Options) MovesTraffic() {}

// MovesTrafficNow: without --restart the tag moves no running pod, so there is nothing to gate.
func (o *Options) MovesTrafficNow() bool { return o.Restart }

// NewCommand builds `tag-move`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "tag-move TAG --to REVISION",
		Short: "Point a revision tag at another revision",
		Long: `Create revision tag TAG, or move it to REVISION: the webhook istio-revision-tag-<TAG> and its Service
istiod-revision-tag-<TAG>, as istioctl tag set makes them; for the default tag also the default
validator. Namespaces labelled istio.io/rev=TAG (and, for default, istio-injection=enabled) then
inject new pods from REVISION.

Before acting it prints the blast radius: the namespaces selecting TAG, their workloads and pods that
move on their next restart, gateways whose pods select TAG, and Gateway API gateways and waypoints that
follow TAG (their own istio.io/rev, their namespace's, or the default tag). Those would roll the moment
the tag moves, since istiod re-deploys them itself, outside any gate (istio/istio#59959). So by default
each is first labelled istio.io/rev=<the revision it runs now> (pinned, in the same journal entry; undo
takes the label back after the tag): it stays where it is until you move it, gated and keeping its
capacity, with migrate-gw. --pin-gateways=false lets them roll with the tag (listed as rollingNow). --restart then restarts them with
migrate-ns's batched, gated machinery, in the same journal entry: one undo puts the tag back, then
restarts those workloads onto the old revision. Moving an existing tag needs --overwrite; a tag may not
be named like a revision, with one exception: the default tag over a non-revisioned install (the
revision named default, istiod and istio-sidecar-injector). As istioctl's tag set default does, the
default tag then takes over istio-injection=enabled and the old injector is deactivated (kept, matching
nothing); undo reactivates it before it removes the tag.`,
		Example: `  # Who would move if prod-stable pointed at 1-31?
  kubectl istio-upgrade tag-move prod-stable --to 1-31 --overwrite --dry-run

  # Move it and restart everything that follows it, in verified batches
  kubectl istio-upgrade tag-move prod-stable --to 1-31 --overwrite --restart -y

  # Make 1-31 the default revision (istio-injection=enabled namespaces, the default validator)
  kubectl istio-upgrade tag-move default --to 1-31 --overwrite`,
		Args: cli.ExactArgs(1),
	}
	f := cmd.Flags()
	f.StringVar(&o.To, "to", "", "The revision the tag will point at (required)")
	f.BoolVar(&o.Restart, "restart", false, "Restart the workloads that follow the tag, in gated batches (as migrate-ns)")
	f.BoolVar(&o.Overwrite, "overwrite", false, "Move a tag that already exists")
	f.BoolVar(&o.PinGateways, "pin-gateways", true, pin.Help)
	f.IntVar(&o.BatchSize, "batch-size", 5, "With --restart: workloads restarted together before each gate")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "With --restart: how long one batch may take to pass its gate")
	return step.NewCommand(g, streams, o, cmd)
}

// Validate checks arguments without I/O.
func (o *Options) Validate(_ *step.Run, args []string) error {
	o.Tag = args[0]
	if errs := validation.IsDNS1123Label(o.Tag); len(errs) > 0 {
		return cli.UsageErrorf("tag %q: %s", o.Tag, strings.Join(errs, "; "))
	}
	if o.To == "" {
		return cli.UsageErrorf("--to is required: the revision the tag will point at")
	}
	if o.BatchSize < 1 || o.Timeout <= 0 {
		return cli.UsageErrorf("--batch-size must be at least 1 and --timeout positive")
	}
	return nil
}

// Plan resolves the tag and the revision, prints the blast radius and derives the webhook, the tag
// Service and (for default) the default validator.
func (o *Options) Plan(ctx context.Context, r *step.Run) (*step.Plan, error) {
	before, ns := r.Before, r.G.IstioNamespace
	var target *mesh.Revision
	for i := range before.Revisions {
		rev := &before.Revisions[i]
		if rev.Name == o.Tag && rev.Installed {
			if o.Tag != istio.DefaultRevision || rev.InjectorWebhook == "" {
				return nil, cli.BadInputf("%q is the name of a revision; a tag may not shadow it", o.Tag)
			}
			// The non-revisioned control plane: as istioctl's `tag set default`, the default tag takes
			// over istio-injection=enabled and the revision's own injector is deactivated (kept, never
			// matching), so no pod is injected twice.
			o.deactivate = rev.InjectorWebhook
		}
		if rev.Name == o.To {
			target = rev
		}
	}
	if target == nil || !target.Installed {
		for _, t := range before.Tags {
			if t.Name == o.To {
				return nil, cli.BadInputf("--to %s is a tag (pointing at %s); give the revision", o.To, t.Revision)
			}
		}
		return nil, cli.BadInputf("revision %s is not installed", o.To)
	}
	if target.InjectorWebhook == "" {
		return nil, cli.BadInputf("revision %s has no injector webhook", o.To)
	}
	from := ""
	for _, t := range before.Tags {
		if t.Name == o.Tag {
			from = t.Revision
		}
	}
	if from != "" && !o.Overwrite && from != o.To {
		return nil, cli.BadInputf("tag %s already points at %s; pass --overwrite to move it to %s", o.Tag, from, o.To)
	}
	o.det = &Details{Tag: o.Tag, FromRevision: from, ToRevision: o.To, BlastRadius: BlastRadius(before, o.Tag)}
	r.Result.Details = o.det
	gws, err := mesh.ListGatewayAPI(ctx, r.C.Dynamic, "")
	if err != nil { // the radius cannot name them; the step's own access check reports what it needs
		r.Progress.Printf("warning: Gateway API gateways that follow tag %s are not shown: %v", o.Tag, err)
	}
	if o.PinGateways {
		o.pins = pin.Pins(before, gws, func(g mesh.GatewayAPIGateway) bool { _, ok := followsTag(before, o.Tag)(g); return ok })
		for _, p := range o.pins {
			o.det.BlastRadius.Pinned = append(o.det.BlastRadius.Pinned, p.String())
		}
	}
	o.det.BlastRadius.RollingNow = pin.RollingNow(gws, o.pins, followsTag(before, o.Tag))
	o.printRadius(r.ErrOut, o.det)
	if from == o.To {
		return &step.Plan{Nothing: fmt.Sprintf("tag %s already points at %s; nothing to change", o.Tag, o.To)}, nil
	}
	adm := r.C.Kube.AdmissionregistrationV1()
	if o.injector, err = adm.MutatingWebhookConfigurations().Get(ctx, target.InjectorWebhook, metav1.GetOptions{}); err != nil {
		return nil, err
	}
	whName := istio.TagWebhookPrefix + o.Tag
	o.existingWh, err = adm.MutatingWebhookConfigurations().Get(ctx, whName, metav1.GetOptions{})
	switch {
	case err == nil:
		o.wantWh, err = MoveWebhook(o.existingWh, o.injector, o.To)
	case apierrors.IsNotFound(err):
		o.existingWh = nil
		o.wantWh, err = NewWebhook(o.injector, o.Tag, o.To)
	}
	if err != nil {
		return nil, err
	}
	svcs := r.C.Kube.CoreV1().Services(ns)
	o.existingSvc, err = svcs.Get(ctx, TagServicePrefix+o.Tag, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if apierrors.IsNotFound(err) {
		o.existingSvc = nil
	}
	o.revSvc, err = svcs.Get(ctx, "istiod-"+o.To, metav1.GetOptions{})
	if err != nil && o.existingSvc == nil {
		return nil, cli.BadInputf("revision %s has no Service istiod-%s to derive the tag Service from: %v", o.To, o.To, err)
	}
	o.wantSvc = TagService(o.existingSvc, o.revSvc, o.Tag, o.To)
	if o.Tag == istio.DefaultRevision {
		if def, rev, err := o.validators(ctx, r); err == nil {
			o.wantVal = MoveValidator(def, rev, o.To)
		} else {
			r.Progress.Printf("warning: default validator not moved (%v)", err)
		}
	}
	p := &step.Plan{
		Question: fmt.Sprintf("Point tag %s (now %s) at %s? %d namespaces and %d pods follow it on their next restart%s.",
			o.Tag, cli.OrNone(from), o.To, len(o.det.BlastRadius.Namespaces), o.det.BlastRadius.Pods, map[bool]string{true: " (--restart restarts them now)"}[o.Restart]),
		Record: []journal.ObjectRef{journal.MutatingWebhookRef(whName), journal.ServiceRef(ns, o.wantSvc.Name)},
		Target: o.To,
	}
	if o.wantVal != nil {
		p.Record = append(p.Record, journal.ValidatingWebhookRef(o.wantVal.Name))
	}
	if o.deactivate != "" {
		// Recorded first: undo restores in this order, so the old injector is active again before the
		// tag's webhook goes and istio-injection=enabled is never without an injector.
		p.Record = append([]journal.ObjectRef{journal.MutatingWebhookRef(o.deactivate)}, p.Record...)
		p.Question += fmt.Sprintf(" The injector %s of the revision named default is deactivated (kept, never matching).", o.deactivate)
	}
	for _, ref := range p.Record {
		verb := "update"
		if (ref.Kind == "MutatingWebhookConfiguration" && ref.Name == o.wantWh.Name && o.existingWh == nil) || (ref.Kind == "Service" && o.existingSvc == nil) {
			verb = "create"
		}
		p.Access = append(p.Access, step.On(ref, verb)...)
	}
	if o.Restart { // migrate-ns restarts the workloads of every namespace on the tag
		for _, n := range o.det.BlastRadius.Namespaces {
			for _, res := range []string{"deployments", "statefulsets", "daemonsets"} {
				p.Access = append(p.Access, kube.Can("apps", res, n.Name, "patch", "list", "watch")...)
			}
			p.Access = append(p.Access, kube.Can("", "pods", n.Name, "list")...)
		}
	}
	return p, nil
}

// validators reads the default validator and the revision's own.
func (o *Options) validators(ctx context.Context, r *step.Run) (*admregv1.ValidatingWebhookConfiguration, *admregv1.ValidatingWebhookConfiguration, error) {
	adm := r.C.Kube.AdmissionregistrationV1()
	def, err := adm.ValidatingWebhookConfigurations().Get(ctx, istio.DefaultValidatorName, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	rev, err := adm.ValidatingWebhookConfigurations().Get(ctx, "istio-validator-"+o.To+"-"+r.G.IstioNamespace, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	return def, rev, nil
}

// Apply moves the tag (istiod patches its webhooks' caBundle at any time: an update that meets a newer
// version is derived again from it and retried), then with --restart restarts its followers in the
// same journal entry.
func (o *Options) Apply(ctx context.Context, r *step.Run) error {
	if err := pin.Apply(ctx, r, o.pins, o.Timeout); err != nil {
		return err
	}
	adm := r.C.Kube.AdmissionregistrationV1()
	whName := o.wantWh.Name
	r.Manifest("mutatingwebhookconfiguration/"+whName, "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", o.wantWh)
	r.Manifest(r.G.IstioNamespace+"/service/"+o.wantSvc.Name, "v1", "Service", o.wantSvc)
	if o.wantVal != nil {
		r.Manifest("validatingwebhookconfiguration/"+o.wantVal.Name, "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", o.wantVal)
	}
	err := r.Write("mutatingwebhookconfiguration/"+whName, verb(o.existingWh != nil), func([]string) error {
		if o.existingWh == nil {
			_, err := adm.MutatingWebhookConfigurations().Create(ctx, o.wantWh, r.CreateOptions())
			return err
		}
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			_, err := adm.MutatingWebhookConfigurations().Update(ctx, o.wantWh, r.UpdateOptions())
			if apierrors.IsConflict(err) {
				if cur, gerr := adm.MutatingWebhookConfigurations().Get(ctx, whName, metav1.GetOptions{}); gerr == nil {
					if w, derr := MoveWebhook(cur, o.injector, o.To); derr == nil {
						o.wantWh = w
					}
				}
			}
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("tag webhook %s: %w", whName, err)
	}
	svcs := r.C.Kube.CoreV1().Services(r.G.IstioNamespace)
	err = r.Write("service/"+o.wantSvc.Name, verb(o.existingSvc != nil), func([]string) error {
		if o.existingSvc == nil {
			_, err := svcs.Create(ctx, o.wantSvc, r.CreateOptions())
			return err
		}
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			_, err := svcs.Update(ctx, o.wantSvc, r.UpdateOptions())
			if apierrors.IsConflict(err) {
				if cur, gerr := svcs.Get(ctx, o.wantSvc.Name, metav1.GetOptions{}); gerr == nil {
					o.wantSvc = TagService(cur, o.revSvc, o.Tag, o.To)
				}
			}
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("tag service %s: %w", o.wantSvc.Name, err)
	}
	if o.wantVal != nil {
		err := r.Write("validatingwebhookconfiguration/"+o.wantVal.Name, "configured", func([]string) error {
			return retry.RetryOnConflict(retry.DefaultRetry, func() error {
				_, err := adm.ValidatingWebhookConfigurations().Update(ctx, o.wantVal, r.UpdateOptions())
				if apierrors.IsConflict(err) {
					if def, rev, verr := o.validators(ctx, r); verr == nil {
						o.wantVal = MoveValidator(def, rev, o.To)
					}
				}
				return err
			})
		})
		if err != nil {
			return fmt.Errorf("default validator: %w", err)
		}
	}
	if o.deactivate != "" { // after the tag's webhook exists: istio-injection=enabled always has an injector
		err := r.Write("mutatingwebhookconfiguration/"+o.deactivate, "deactivated (the default tag injects istio-injection=enabled now)", func([]string) error {
			return retry.RetryOnConflict(retry.DefaultRetry, func() error {
				cur, err := adm.MutatingWebhookConfigurations().Get(ctx, o.deactivate, metav1.GetOptions{})
				if err != nil {
					return err
				}
				for i := range cur.Webhooks {
					cur.Webhooks[i].NamespaceSelector, cur.Webhooks[i].ObjectSelector = istio.NeverMatch(), istio.NeverMatch()
				}
				_, err = adm.MutatingWebhookConfigurations().Update(ctx, cur, r.UpdateOptions())
				return err
			})
		})
		if err != nil {
			return fmt.Errorf("deactivate %s: %w", o.deactivate, err)
		}
	}
	rad := o.det.BlastRadius
	r.Result.Summary = fmt.Sprintf("tag %s moved %s → %s; %d namespaces (%d pods) follow it", o.Tag, cli.OrNone(o.det.FromRevision), o.To, len(rad.Namespaces), rad.Pods)
	switch {
	case r.DryRun == cli.DryRunClient:
		r.Result.Summary = fmt.Sprintf("tag %s would move %s → %s: %d namespaces, %d pods follow on their next restart", o.Tag, cli.OrNone(o.det.FromRevision), o.To, len(rad.Namespaces), rad.Pods)
	case r.DryRun == cli.DryRunServer:
		r.Result.Summary += " (server dry run: nothing persisted)"
	case !o.Restart && rad.Pods > 0:
		r.Result.Summary += " on their next restart (use --restart, or migrate-ns)"
	}
	if !o.Restart || len(rad.Namespaces) == 0 {
		return nil
	}
	if !r.Live() {
		// The restart plans on the moved tag, which a dry run never moves: say what would follow.
		for _, n := range rad.Namespaces {
			for _, w := range n.Workloads {
				r.Record(n.Name+"/"+w, "restarted after the move")
			}
		}
		return nil
	}
	args := []string{"--keep-labels", "--to", o.Tag, "--batch-size", strconv.Itoa(o.BatchSize), "--timeout", o.Timeout.String()}
	for _, n := range rad.Namespaces {
		args = append(args, n.Name)
	}
	sub, err := r.SubStep(ctx, restartStep, args...)
	o.det.Restart = sub.Details
	for _, a := range sub.Actions {
		r.Result.Add(a.Object, a.Verb)
	}
	if sub.Summary != "" {
		r.Result.Summary += "; " + sub.Summary
	}
	return err
}

func (o *Options) printRadius(w io.Writer, det *Details) {
	r := det.BlastRadius
	fmt.Fprintf(w, "Blast radius of tag %s (%s → %s): %d namespaces, %d pods move on their next restart\n",
		o.Tag, cli.OrNone(det.FromRevision), det.ToRevision, len(r.Namespaces), r.Pods)
	for _, n := range r.Namespaces {
		fmt.Fprintf(w, "  namespace/%s (%s): %d pods in %s\n", n.Name, n.Label, n.Pods, strings.Join(n.Workloads, ", "))
	}
	for _, g := range r.Gateways {
		fmt.Fprintf(w, "  gateway %s selects the tag\n", g)
	}
	for _, g := range r.Pinned {
		fmt.Fprintf(w, "  %s first, so it stays (move it later with migrate-gw)\n", g)
	}
	for _, g := range r.RollingNow {
		fmt.Fprintf(w, "  %s ROLLS IMMEDIATELY: istiod re-deploys it the moment the tag moves (--pin-gateways keeps it where it is)\n", g)
	}
}

func verb(existed bool) string {
	if existed {
		return "configured"
	}
	return "created"
}
