// Package shift is `kubectl istio-upgrade shift`: move ingress traffic between the old gateway and its
// canary by the ratio of ready pods behind their shared Service, in gated steps.
package shift

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/canary"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/gate"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/helm"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Options is `shift`: its flags and the state of one run.
type Options struct {
	canary.Target
	Weight    int
	StepSize  int
	Interval  time.Duration
	ProbeURL  string
	ProbeHost string
	Probes    int
	Timeout   time.Duration

	r        *step.Run
	det      *Details
	steps    []Step
	old      *appsv1.Deployment
	canary   *appsv1.Deployment
	oldRev   string
	istiod   map[string][]corev1.Pod // revision → its istiod pods, asked for syncz
	services []string
	total    int32
	hpa      map[string]string // deployment name → its HPA's name
	current  Step
	// held is the canary as canary-gw left it (out of traffic), when shift found it so: a failed first
	// step puts it back like that, gate and replicas, not merely at 0 serving pods.
	held *appsv1.Deployment
	// failed and prev are the step whose gate failed and the split before it, for Revert.
	failed, prev *Step
}

// Name is the step's name in the journal and results.
func (o *Options) Name() string { return "shift" }

// MovesTraffic: the runner gates every step on the gateways' own requests.
func (o *Options) MovesTraffic() {}

// Details is the step-specific part of the result.
type Details struct {
	Gateway  string   `json:"gateway"`
	Canary   string   `json:"canary"`
	Revision string   `json:"revision"`
	Services []string `json:"services"`
	From     Step     `json:"from"`
	Steps    []Step   `json:"steps"`
	Gates    []Gate   `json:"gates"`
	Reverted bool     `json:"reverted"`
	Warnings []string `json:"warnings"`
}

// Gate is one step's verification.
type Gate struct {
	Weight  int     `json:"weight"`
	Passed  bool    `json:"passed"`
	Reason  string  `json:"reason,omitempty"`
	Seconds float64 `json:"seconds"`
	// ReadyEndpoints counts ready endpoints behind the gateway's Services after the step.
	ReadyEndpoints int `json:"readyEndpoints"`
	Probes         int `json:"probes,omitempty"`
	// Requests is the step's request-metrics gate: both gateways' requests against their baselines.
	Requests *step.RequestGate `json:"requests,omitempty"`
}

// NewCommand builds `shift`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{Weight: -1}
	cmd := &cobra.Command{
		Use:   "shift --gateway NAMESPACE/DEPLOYMENT --revision NEW --weight PERCENT",
		Short: "Move ingress traffic between the old and the canary gateway in gated steps",
		Long: `Move the share of ingress traffic the canary gateway (made by canary-gw for revision NEW) serves to
PERCENT, in steps of --step, pausing --interval between them.

The old gateway and its canary sit behind the same Service, so traffic is shared by ready pods: a
weight is a split of the serving pods T (old + canary replicas when shift starts). Every step adds
first, then removes: the side that grows is scaled up and verified before the other is scaled down,
so ready endpoints never drop below T. With an HPA, each side's HPA range becomes the original range
in the same proportion (and the whole range again at 0 or 100 %), so autoscaling goes on and never
pulls a side back across the split.

Each step is gated: both Deployments rolled out, every pod injected by its revision and SYNCED on
its istiod, the Service's ready endpoints at least T, and --probe-url answering (non-5xx) when
given. A failed gate reverts that step (adding back first; a canary the step put into service goes
back out of traffic, readiness gate and replicas as canary-gw left it) and exits 75.

The first step with weight above 0 removes the canary's readiness gate, putting it into service.
At 100 % the old Deployment is scaled to 0 and kept: the Service and its load balancer address never
change. --weight 0 is the way back. cleanup later removes the old revision's zero-replica gateway.`,
		Example: `  # Half the traffic to the canary, then all of it, 25 points at a time, a minute apart
  kubectl istio-upgrade shift --gateway istio-ingress/istio-ingressgateway --revision 1-31 --weight 50 --step 25 --interval 1m
  kubectl istio-upgrade shift --gateway istio-ingress/istio-ingressgateway --revision 1-31 --weight 100 --step 25 --interval 1m

  # Gate each step on a request through the gateway's load balancer
  kubectl istio-upgrade shift --gateway istio-ingress/istio-ingressgateway --revision 1-31 --weight 100 \
    --probe-url http://203.0.113.10/productpage --probe-host bookinfo.example.com

  # The plan only: replica counts and HPA ranges per step
  kubectl istio-upgrade shift --gateway istio-ingress/istio-ingressgateway --revision 1-31 --weight 100 --step 10 --dry-run

  # Back to the old gateway
  kubectl istio-upgrade shift --gateway istio-ingress/istio-ingressgateway --revision 1-31 --weight 0`,
		Args: cli.NoArgs,
	}
	f := cmd.Flags()
	o.Target.AddFlags(f)
	f.IntVar(&o.Weight, "weight", -1, "Share of traffic the canary serves at the end, in percent (required)")
	f.IntVar(&o.StepSize, "step", 25, "Percentage points per step; 0 goes to --weight in one step")
	f.DurationVar(&o.Interval, "interval", 10*time.Second, "Pause after each step before the next")
	f.StringVar(&o.ProbeURL, "probe-url", "", "Gate each step on GET requests to this URL (through the gateway) answering below 500")
	f.StringVar(&o.ProbeHost, "probe-host", "", "Host header of the probe requests")
	f.IntVar(&o.Probes, "probes", 10, "Probe requests per step")
	f.DurationVar(&o.Timeout, "timeout", 3*time.Minute, "How long one step may take to pass its gate")
	return step.NewCommand(g, streams, o, cmd)
}

// Validate checks flags without I/O.
func (o *Options) Validate(r *step.Run, _ []string) error {
	if err := o.Target.Complete(r.Namespace); err != nil {
		return err
	}
	if o.Weight == -1 {
		return cli.UsageErrorf("--weight is required: the canary's share of traffic at the end, 0 to 100")
	}
	if o.Weight < 0 || o.Weight > 100 {
		return cli.UsageErrorf("--weight %d: must be 0 to 100", o.Weight)
	}
	if o.StepSize < 0 || o.StepSize > 100 {
		return cli.UsageErrorf("--step %d: must be 0 to 100", o.StepSize)
	}
	if o.Interval < 0 || o.Timeout <= 0 {
		return cli.UsageErrorf("--interval must not be negative and --timeout must be positive")
	}
	if o.ProbeHost != "" && o.ProbeURL == "" {
		return cli.UsageErrorf("--probe-host needs --probe-url")
	}
	if o.ProbeURL != "" && !strings.HasPrefix(o.ProbeURL, "http://") && !strings.HasPrefix(o.ProbeURL, "https://") {
		return cli.UsageErrorf("--probe-url %q: must be an http:// or https:// URL", o.ProbeURL)
	}
	if o.Probes < 1 {
		return cli.UsageErrorf("--probes must be at least 1")
	}
	return nil
}

// Plan finds the old gateway, its canary, their HPAs and Services, and plans the steps.
func (o *Options) Plan(ctx context.Context, r *step.Run) (*step.Plan, error) {
	o.r = r
	o.hpa, o.istiod = map[string]string{}, map[string][]corev1.Pod{}
	o.det = &Details{Gateway: o.Namespace + "/" + o.Old, Revision: o.Revision, Services: []string{}, Steps: []Step{}, Gates: []Gate{}, Warnings: []string{}}
	r.Result.Details = o.det
	steps, err := o.load(ctx, r.Before, r.Raw)
	if err != nil {
		return nil, err
	}
	o.steps, o.det.Steps = steps, steps
	if len(steps) == 0 {
		return &step.Plan{Nothing: fmt.Sprintf("shift: %s already serves %d%% (%d canary, %d old pods); nothing to do", o.det.Canary, o.current.Effective, o.current.Canary, o.current.Old)}, nil
	}
	p := &step.Plan{
		Question: fmt.Sprintf("Move %s from %d%% to %d%% of the traffic in %d gated steps (serving pods %d throughout)?", o.det.Canary, o.current.Effective, steps[len(steps)-1].Effective, len(steps), o.total),
		Record:   []journal.ObjectRef{journal.DeploymentRef(o.Namespace, o.old.Name), journal.DeploymentRef(o.Namespace, o.canary.Name)},
	}
	for _, h := range o.hpa {
		p.Record = append(p.Record, journal.HPARef(o.Namespace, h))
	}
	for _, ref := range p.Record {
		p.Access = append(p.Access, step.On(ref, "patch")...)
	}
	// Each step's gate watches the rollouts and counts pods and ready endpoints.
	p.Access = append(p.Access, kube.Can("apps", "deployments", o.Namespace, "list", "watch")...)
	p.Access = append(p.Access, kube.Can("", "pods", o.Namespace, "list")...)
	p.Access = append(p.Access, kube.Can("discovery.k8s.io", "endpointslices", o.Namespace, "list")...)
	return p, nil
}

// Apply runs the steps: in a dry run it sends (server) or shows (client) each step's changes; on a real
// run each step is gated, and the step is told to stop only between steps.
func (o *Options) Apply(ctx context.Context, r *step.Run) error {
	switch r.DryRun {
	case cli.DryRunClient:
		for _, s := range o.steps {
			o.describe(s)
		}
		r.Result.Summary = fmt.Sprintf("shift would move %s from %d%% to %d%% in %d steps (serving pods %d throughout)", o.det.Canary, o.current.Effective, o.steps[len(o.steps)-1].Effective, len(o.steps), o.total)
		return o.writePlan()
	case cli.DryRunServer:
		for _, s := range o.steps {
			if err := o.scale(ctx, o.canary, s.Canary, s.CanaryHPA); err != nil {
				return err
			}
			if err := o.scale(ctx, o.old, s.Old, s.OldHPA); err != nil {
				return err
			}
		}
		r.Result.Summary = fmt.Sprintf("shift (server dry run): %d steps accepted by the apiserver; nothing changed", len(o.steps))
		return o.writePlan()
	}
	start := time.Now()
	err := o.run(ctx, o.steps)
	r.Result.Summary = fmt.Sprintf("shift: %s serves %d%% (%d canary pods on %s, %d old on %s) after %d gated step(s) in %s",
		o.det.Canary, o.current.Effective, o.current.Canary, o.Revision, o.current.Old, o.oldRev, len(o.det.Gates), time.Since(start).Round(time.Second))
	if err == nil && o.current.Effective == 100 {
		r.Note(journal.NoteServing, o.serving())
	}
	return err
}

// serving says, for history, what serves all traffic now: with a Helm gateway, that the release's own
// Deployment no longer does (its Service still carries the traffic).
func (o *Options) serving() string {
	out := "Deployment " + o.canary.Namespace + "/" + o.canary.Name + " (revision " + o.Revision + ")"
	if name, ns := helm.Owner(o.canary.Annotations); name != "" {
		return out + ", of Helm release " + ns + "/" + name
	}
	if name, ns := helm.Owner(o.old.Annotations); name != "" {
		out += fmt.Sprintf(", not a Helm release: release %s/%s keeps the Service and its Deployment %s at 0 replicas", ns, name, o.old.Name)
	}
	return out
}

// writePlan prints the steps as a table before the result (table output only).
func (o *Options) writePlan() error {
	r := o.r
	if r.G.Output != cli.OutputTable {
		return nil
	}
	rows := [][]string{}
	for i, s := range o.det.Steps {
		rows = append(rows, []string{fmt.Sprint(i + 1), fmt.Sprintf("%d%%", s.Weight), fmt.Sprintf("%d%%", s.Effective),
			fmt.Sprint(s.Canary), fmt.Sprint(s.Old), s.CanaryHPA.String(), s.OldHPA.String()})
	}
	if err := cli.WriteTable(r.Out, []string{"STEP", "WEIGHT", "EFFECTIVE", "CANARY", "OLD", "CANARY-HPA", "OLD-HPA"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(r.Out)
	return nil
}

// load finds the old gateway, its canary, their HPAs and Services, and plans the steps. Any error
// here leaves the cluster untouched.
func (o *Options) load(ctx context.Context, s *mesh.Snapshot, raw *mesh.Inputs) ([]Step, error) {
	c := o.r.C
	old, err := c.Kube.AppsV1().Deployments(o.Namespace).Get(ctx, o.Old, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, cli.BadInputf("gateway deployment %s/%s not found", o.Namespace, o.Old)
	}
	if err != nil {
		return nil, err
	}
	o.old = old
	l, err := c.Kube.AppsV1().Deployments(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{canary.LabelCanaryOf: o.Old, istio.LabelRev: o.Revision}.String()})
	if err != nil {
		return nil, err
	}
	if len(l.Items) != 1 {
		return nil, cli.BadInputf("%d canaries of %s/%s on revision %s (want 1): create one with `kubectl istio-upgrade canary-gw --gateway %s/%s --revision %s`",
			len(l.Items), o.Namespace, o.Old, o.Revision, o.Namespace, o.Old, o.Revision)
	}
	o.canary = &l.Items[0]
	o.det.Canary = o.Namespace + "/" + o.canary.Name
	for _, gw := range s.Gateways {
		if gw.Namespace == o.Namespace && gw.Name == o.Old {
			o.oldRev = gw.Revision
		}
	}
	if o.oldRev == "" {
		return nil, cli.BadInputf("%s/%s is not an Istio gateway", o.Namespace, o.Old)
	}
	if err := gate.RevisionReady(s, o.Revision); err != nil {
		return nil, err
	}
	for _, rev := range []string{o.Revision, o.oldRev} {
		o.istiod[rev] = gate.IstiodPods(raw, rev)
	}
	svcs, err := c.Kube.CoreV1().Services(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, svc := range svcs.Items {
		if len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(old.Spec.Template.Labels)) {
			o.services = append(o.services, svc.Name)
			o.det.Services = append(o.det.Services, fmt.Sprintf("%s (uid %s)", svc.Name, svc.UID))
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(o.canary.Spec.Template.Labels)) {
				return nil, cli.BadInputf("service %s/%s does not select the canary's pods (selector %v): traffic cannot be shared by ready pods", o.Namespace, svc.Name, svc.Spec.Selector)
			}
		}
	}
	if len(o.services) == 0 {
		o.det.Warnings = append(o.det.Warnings, "no Service selects the gateway: nothing to shift traffic on, only replicas move")
		o.r.Progress.Printf("warning: no Service in %s selects %s", o.Namespace, o.Old)
	}
	hpas, err := c.Kube.AutoscalingV2().HorizontalPodAutoscalers(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var hpaRange *Range
	oldHPA := canary.HPAFor(hpas.Items, old.Name)
	if oldHPA != nil {
		o.hpa[old.Name] = oldHPA.Name
	}
	if h := canary.HPAFor(hpas.Items, o.canary.Name); h != nil {
		o.hpa[o.canary.Name] = h.Name
	}
	// The range to split is the old gateway's as canary-gw found it (shift has changed the live one
	// since); an HPA added after canary-gw is taken as it is now.
	rng := o.canary.Annotations[canary.AnnotationHPARange]
	if rng == "" {
		rng = canary.HPARange(oldHPA)
	}
	if min, max, ok := canary.ParseHPARange(rng); ok && len(o.hpa) > 0 {
		hpaRange = &Range{Min: min, Max: max}
	}
	o.current = Step{Old: replicas(old), Canary: replicas(o.canary)}
	if canary.HasServingGate(&o.canary.Spec.Template.Spec) {
		o.current.Canary = 0 // held out of traffic: its pods serve nothing yet
		o.held = o.canary.DeepCopy()
	}
	o.current.Effective = effective(o.current.Canary, o.current.Old)
	o.current.Weight = o.current.Effective
	o.det.From = o.current
	o.total = o.current.Old + o.current.Canary
	steps, err := Plan(Input{Old: o.current.Old, Canary: o.current.Canary, Target: o.Weight, StepSize: o.StepSize, HPA: hpaRange})
	if err != nil {
		return nil, cli.BadInputf("%v", err)
	}
	return steps, nil
}

func replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func (o *Options) describe(s Step) {
	o.r.Record("deployment/"+o.canary.Name, fmt.Sprintf("scaled to %d (%d%%)", s.Canary, s.Weight))
	o.r.Record("deployment/"+o.old.Name, fmt.Sprintf("scaled to %d", s.Old))
}

// run executes the steps, each a unit of the runner; a failed gate stops (the runner then calls Revert
// for that step). Told to stop, it finishes the step in flight and starts no other, holds included.
func (o *Options) run(ctx context.Context, steps []Step) error {
	for i, s := range steps {
		prev := o.current
		label := fmt.Sprintf("step %d/%d", i+1, len(steps))
		if !o.r.Stopping() {
			o.r.Progress.Printf("%s: %d%% -> %d%% (canary %d -> %d, old %d -> %d)", label, prev.Effective, s.Effective, prev.Canary, s.Canary, prev.Old, s.Old)
		}
		g := Gate{Weight: s.Weight}
		res, err := o.r.RunUnit(ctx, step.Unit{Label: label, Journal: fmt.Sprintf("weight %d%%", s.Weight), Timeout: o.Timeout,
			Objects: []string{"deployment/" + o.canary.Namespace + "/" + o.canary.Name, "deployment/" + o.old.Namespace + "/" + o.old.Name},
			// The gateways' own requests: what each sent on, the canary's against the floor until it has a
			// baseline; a side the step scales to 0 serves nothing to judge.
			Moves: o.servingAfter(s),
			Write: func(ctx context.Context) error {
				wctx, cancel := context.WithTimeout(ctx, o.Timeout)
				defer cancel()
				o.failed, o.prev = &s, &prev // from the first write on, a failure takes this step back
				if err := o.moveTo(wctx, prev, s); err != nil {
					if cli.CodeOf(err) == cli.ExitTimeout {
						return err
					}
					return cli.Errorf(cli.ExitGateFailed, "%v", err) // half moved: taken back as a failed gate
				}
				o.current = s
				return nil
			},
			Gate: func(ctx context.Context) error { return o.gate(ctx, s, &g) },
		})
		g.Passed, g.Seconds, g.Reason, g.Requests = res.Passed, res.Seconds, res.Reason, res.Requests
		if o.failed == nil && err != nil {
			return err // told to stop before this step began
		}
		o.det.Gates = append(o.det.Gates, g)
		if err != nil {
			if code := cli.CodeOf(err); code == cli.ExitGateFailed || code == cli.ExitTimeout {
				o.r.Progress.Printf("%s: reverting to %d%%", label, prev.Effective)
			}
			return err
		}
		o.failed, o.prev = nil, nil
		o.r.Progress.Printf("%s: gate passed: %d%% (%d ready endpoints) in %.1fs", label, s.Effective, g.ReadyEndpoints, g.Seconds)
		if i < len(steps)-1 {
			if err := o.r.Hold(ctx, o.Interval, label); err != nil {
				return err
			}
		}
	}
	return nil
}

// servingAfter are the gateways (NAMESPACE/NAME) that keep pods after step s: the ones whose requests its
// gate judges.
func (o *Options) servingAfter(s Step) []string {
	var out []string
	if s.Canary > 0 {
		out = append(out, o.canary.Namespace+"/"+o.canary.Name)
	}
	if s.Old > 0 {
		out = append(out, o.old.Namespace+"/"+o.old.Name)
	}
	return out
}

// gate is a step's control-plane gate: every pod of both sides on its revision and SYNCED, the
// Services' ready endpoints kept, and the probes answered.
func (o *Options) gate(ctx context.Context, s Step, g *Gate) error {
	n, err := o.verify(ctx, s)
	g.ReadyEndpoints = n
	if err != nil {
		return err
	}
	if o.ProbeURL != "" {
		if err := o.probe(ctx); err != nil {
			return err
		}
		g.Probes = o.Probes
	}
	return nil
}

// moveTo scales the growing side first and waits for it, then the shrinking side.
func (o *Options) moveTo(ctx context.Context, from, to Step) error {
	type change struct {
		d      *appsv1.Deployment
		n      int32
		hpa    *Range
		growth int32
	}
	changes := []change{{o.canary, to.Canary, to.CanaryHPA, to.Canary - from.Canary}, {o.old, to.Old, to.OldHPA, to.Old - from.Old}}
	if changes[1].growth > changes[0].growth {
		changes[0], changes[1] = changes[1], changes[0]
	}
	for _, ch := range changes {
		if err := o.scale(ctx, ch.d, ch.n, ch.hpa); err != nil {
			return err
		}
		ref := kube.WorkloadRef{Kind: "Deployment", Namespace: ch.d.Namespace, Name: ch.d.Name}
		if err := kube.WaitRollouts(ctx, o.r.C.Kube, []kube.WorkloadRef{ref}, func(m string) { o.r.Progress.Update("%s", m) }); err != nil {
			return err
		}
	}
	return nil
}

// jsonPatchOp is one RFC 6902 operation.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// hpaRangePatch sets an HPA's replica range.
type hpaRangePatch struct {
	Spec struct {
		MinReplicas int32 `json:"minReplicas"`
		MaxReplicas int32 `json:"maxReplicas"`
	} `json:"spec"`
}

// patchDeployment sends a JSON patch through the run (honouring its dry run) and keeps the live object.
func (o *Options) patchDeployment(ctx context.Context, d *appsv1.Deployment, verb string, ops []jsonPatchOp) error {
	body, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	o.r.Patch(d.Namespace+"/deployment/"+d.Name, string(types.JSONPatchType), body)
	return o.r.Write("deployment/"+d.Name, verb, func([]string) error {
		out, err := o.r.C.Kube.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.JSONPatchType, body, o.r.PatchOptions())
		if err == nil && o.r.Live() {
			*d = *out
		}
		return err
	})
}

// scale sets a side's HPA range (first, so the HPA agrees with what follows) and replicas; a canary
// going into service loses its readiness gate in the same patch.
func (o *Options) scale(ctx context.Context, d *appsv1.Deployment, n int32, rng *Range) error {
	if h := o.hpa[d.Name]; h != "" && rng != nil {
		var p hpaRangePatch
		p.Spec.MinReplicas, p.Spec.MaxReplicas = rng.Min, rng.Max
		body, err := json.Marshal(p)
		if err != nil {
			return err
		}
		o.r.Patch(d.Namespace+"/horizontalpodautoscaler/"+h, string(types.MergePatchType), body)
		err = o.r.Write("horizontalpodautoscaler/"+h, fmt.Sprintf("range %d-%d", rng.Min, rng.Max), func([]string) error {
			_, err := o.r.C.Kube.AutoscalingV2().HorizontalPodAutoscalers(d.Namespace).Patch(ctx, h, types.MergePatchType, body, o.r.PatchOptions())
			return err
		})
		if err != nil {
			return fmt.Errorf("hpa %s: %w", h, err)
		}
	}
	ops := []jsonPatchOp{{Op: "replace", Path: "/spec/replicas", Value: n}}
	verb := fmt.Sprintf("scaled to %d", n)
	if d == o.canary && n > 0 {
		for i, g := range d.Spec.Template.Spec.ReadinessGates {
			if g.ConditionType == canary.ServingGate {
				path := fmt.Sprintf("/spec/template/spec/readinessGates/%d", i)
				ops = append(ops, jsonPatchOp{Op: "test", Path: path + "/conditionType", Value: g.ConditionType}, jsonPatchOp{Op: "remove", Path: path})
				verb += ", readiness gate removed (in service)"
			}
		}
	}
	if err := o.patchDeployment(ctx, d, verb, ops); err != nil {
		return fmt.Errorf("scale deployment %s to %d: %w", d.Name, n, err)
	}
	if len(ops) > 1 && o.r.Live() {
		o.r.Progress.Printf("deployment/%s: readiness gate %s removed: the canary is in service", d.Name, canary.ServingGate)
	}
	return nil
}

// verify waits until every pod of both sides runs its revision SYNCED and the Services have at least
// the original number of ready endpoints.
func (o *Options) verify(ctx context.Context, s Step) (int, error) {
	ready := 0
	err := o.r.Wait(ctx, o.Timeout, "waiting", func(ctx context.Context) (string, bool, error) {
		var reason string
		reason, ready = o.check(ctx, s)
		return reason, reason == "", nil
	})
	return ready, err
}

func (o *Options) check(ctx context.Context, s Step) (string, int) {
	pods, err := o.r.C.Kube.CoreV1().Pods(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(o.old.Spec.Selector)})
	if err != nil {
		return err.Error(), 0
	}
	for _, side := range []struct {
		d   *appsv1.Deployment
		n   int32
		rev string
	}{{o.canary, s.Canary, o.Revision}, {o.old, s.Old, o.oldRev}} {
		if side.n == 0 {
			continue
		}
		ref := kube.WorkloadRef{Kind: "Deployment", Namespace: side.d.Namespace, Name: side.d.Name}
		if _, why := gate.EvaluatePods([]kube.WorkloadRef{ref}, pods.Items, o.r.Istiod.Proxies(ctx, o.istiod[side.rev]), side.rev); why != "" {
			return why, 0
		}
	}
	ready := 0
	for _, svc := range o.services {
		n, err := kube.ReadyEndpoints(ctx, o.r.C.Kube, o.Namespace, svc)
		if err != nil {
			return err.Error(), 0
		}
		if n < int(o.total) {
			return fmt.Sprintf("service %s has %d ready endpoints, want at least %d", svc, n, o.total), n
		}
		ready = n
	}
	return "", ready
}

// probe sends the probe requests; any transport error or 5xx fails the gate.
func (o *Options) probe(ctx context.Context) error {
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < o.Probes; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.ProbeURL, nil)
		if err != nil {
			return err
		}
		if o.ProbeHost != "" {
			req.Host = o.ProbeHost
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("probe %d/%d: %w", i+1, o.Probes, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("probe %d/%d: %s answered %s", i+1, o.Probes, o.ProbeURL, resp.Status)
		}
	}
	return nil
}

// Revert takes back the step whose gate failed, to the split before it, adding back first; a canary
// that step put into service goes back out of traffic as canary-gw left it. It reports done only when
// that leaves the cluster as the shift found it (the first step failed): earlier steps stay in effect.
func (o *Options) Revert(ctx context.Context, _ *step.Run, _ error) (bool, error) {
	if o.failed == nil {
		return false, nil
	}
	failed, prev := *o.failed, *o.prev
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := o.moveTo(rctx, failed, prev); err != nil {
		return false, err
	}
	if o.held != nil && prev.Canary == 0 && !canary.HasServingGate(&o.canary.Spec.Template.Spec) {
		ops := []jsonPatchOp{
			{Op: "add", Path: "/spec/template/spec/readinessGates", Value: o.held.Spec.Template.Spec.ReadinessGates},
			{Op: "replace", Path: "/spec/replicas", Value: replicas(o.held)},
		}
		if err := o.patchDeployment(rctx, o.canary, fmt.Sprintf("readiness gate restored, scaled to %d (out of traffic again)", replicas(o.held)), ops); err != nil {
			return false, fmt.Errorf("put the canary back out of traffic: %w", err)
		}
		o.r.Progress.Printf("deployment/%s: back out of traffic (readiness gate %s, %d replicas)", o.canary.Name, canary.ServingGate, replicas(o.canary))
	}
	o.current = prev
	o.det.Reverted = true
	o.r.Progress.Done()
	return prev.Canary == o.det.From.Canary && prev.Old == o.det.From.Old, nil
}
