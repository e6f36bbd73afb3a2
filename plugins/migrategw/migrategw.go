// Package migrategw is `kubectl istio-upgrade migrate-gw`: move one gateway to a revision in place (the
// same Deployment and Service, so the same load balancer), its pods replaced surge first, and prove the
// move landed before finishing.
package migrategw

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/canary"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/checks"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/gate"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// Kinds of gateway migrate-gw moves.
const (
	KindDeployment = "Deployment"
	KindGateway    = "Gateway"
)

// Options is `migrate-gw`: its flags, and the state of one run.
type Options struct {
	To      string
	Timeout time.Duration

	// Kind, Namespace and Target are the argument (the gateway), parsed.
	Kind, Namespace, Target string

	det      *Details
	dep      *appsv1.Deployment // the gateway's Deployment (istiod's, for a Gateway)
	gw       *unstructured.Unstructured
	from     string // the revision its pods run now
	rev      string // --to, resolved
	fromPods []corev1.Pod
	baseline map[string]int // Service → ready endpoints before the move
	uids     map[string]types.UID
	// surge is how capacity is kept when the Deployment's own strategy would take pods down first.
	surge    surgeMode
	overlaid bool
	moved    bool
}

type surgeMode int

const (
	surgeNone     surgeMode = iota // the strategy already starts new pods first
	surgeStrategy                  // a Deployment gateway's strategy is set for the move and put back after
	surgeOverlay                   // a Gateway gets Istio's deployment customization: a ConfigMap overlay
)

// Details is the step-specific part of the -o json result.
type Details struct {
	Gateway    string `json:"gateway"`
	Deployment string `json:"deployment"`
	From       string `json:"from"`
	To         string `json:"to"`
	Revision   string `json:"revision"`
	// Capacity says how the rollout keeps every ready endpoint: the Deployment's own strategy, a
	// strategy set for the move, or a ConfigMap overlay (Istio's gateway deployment customization).
	Capacity string            `json:"capacity"`
	Services []ServiceCapacity `json:"services"`
	Pods     []string          `json:"pods"`
	Routing  *canary.Routing   `json:"routing,omitempty"`
	Verified bool              `json:"verified"`
	// Requests is the request-metrics gate of the move: the gateway's requests against its baseline.
	Requests *step.RequestGate `json:"requests,omitempty"`
	// RolledBack says a failed gate moved the gateway back to where it was.
	RolledBack bool     `json:"rolledBack"`
	Warnings   []string `json:"warnings"`
}

// ServiceCapacity is one Service in front of the gateway: its UID (never replaced) and its ready
// endpoints before the move and at their lowest during it.
type ServiceCapacity struct {
	Name     string `json:"name"`
	UID      string `json:"uid"`
	Before   int    `json:"readyBefore"`
	MinReady int    `json:"minReady"`
}

// Name is the step's name in the journal and results.
func (o *Options) Name() string { return "migrate-gw" }

// MovesTraffic: the runner gates the move on the gateway's own requests.
func (o *Options) MovesTraffic() {}

// MovesToRevision: the runner refuses a target that skips a minor (--allow-version-skip).
func (o *Options) MovesToRevision() {}

// NewCommand builds `migrate-gw`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "migrate-gw (deployment/NAME | gateway/NAME) --to REVISION_OR_TAG",
		Short: "Move one gateway to a revision in place, keeping its Service and every ready endpoint",
		Long: `Move one gateway to a revision in place: the same Deployment and the same Service, so the same
load balancer address, its pods replaced one by one with new ones started first. The alternative to
canary-gw and shift when a second gateway beside the first is not wanted (seed 003: migrate gateways
instead of recreating them).

  deployment/NAME   a gateway Deployment injected with the gateway template (the gateway Helm chart, or
                    istioctl's injected gateways): its pod template's istio.io/rev label is set.
  gateway/NAME      a Gateway API Gateway of an Istio class (istio, istio-waypoint, …): its own
                    istio.io/rev label is set, and the istiod of that revision re-deploys it.

Capacity: the rollout never takes a ready pod away before its replacement is ready. When the
Deployment's strategy would (maxUnavailable above 0, or Recreate), a Deployment gateway gets
maxUnavailable 0 and maxSurge 1 for the move, put back after it; a Gateway gets Istio's deployment
customization, a ConfigMap <gateway>-istio-upgrade referenced by spec.infrastructure.parametersRef, kept
while the move is in effect (a Gateway with its own parametersRef is refused: add the strategy there).

The gate, within --timeout: the rollout completes; every pod runs the target revision and is SYNCED on
its istiod; every Service in front of the gateway keeps at least the ready endpoints it had (checked
every second, a drop fails at once) and its UID; and the target istiod serves the new pods the same
listeners and routes the old istiod served the old ones (config_dump). A failed gate moves the gateway
back the same way (exit 75; 74 on timeout). undo moves it back the same way too.

A tag given to --to is what the label names: the gateway then follows the tag, as a namespace would.`,
		Example: `  # Move the Helm-installed ingress gateway to the canary revision in place
  kubectl istio-upgrade migrate-gw deployment/istio-ingress -n istio-ingress --to canary

  # Move a Gateway API gateway (istiod re-deploys it from the new revision)
  kubectl istio-upgrade migrate-gw gateway/bookinfo-gateway -n bookinfo --to 1-31 -y

  # What would be sent, validated by the apiserver, as JSON
  kubectl istio-upgrade migrate-gw gateway/bookinfo-gateway -n bookinfo --to 1-31 --dry-run=server -o json

  # Move it back (gated the same way)
  kubectl istio-upgrade undo`,
	}
	o.addFlags(cmd.Flags())
	return step.NewCommand(g, streams, o, cmd)
}

func (o *Options) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.To, "to", "", "The revision (or revision tag) to move the gateway to (required)")
	f.DurationVar(&o.Timeout, "timeout", defaultTimeout, "How long the move may take to pass its gate")
}

// Validate checks the argument and flags without I/O.
func (o *Options) Validate(r *step.Run, args []string) error {
	if len(args) != 1 {
		return cli.UsageErrorf("give one gateway: deployment/NAME or gateway/NAME")
	}
	if o.To == "" {
		return cli.UsageErrorf("--to is required: the revision or tag to move the gateway to")
	}
	if o.Timeout <= 0 {
		return cli.UsageErrorf("--timeout must be positive")
	}
	kind, name, err := ParseTarget(args[0])
	if err != nil {
		return cli.UsageErrorf("%v", err)
	}
	if o.Namespace == "" { // -n, or the kubeconfig context's; tests set it directly
		o.Namespace = r.Namespace
	}
	o.Kind, o.Target = kind, name
	return nil
}

// ParseTarget reads KIND/NAME as kubectl spells it: deployment (deploy, deployments) or gateway
// (gateways, gtw, gateway.gateway.networking.k8s.io).
func ParseTarget(s string) (kind, name string, err error) {
	k, name, ok := strings.Cut(s, "/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("%q: want deployment/NAME or gateway/NAME (the namespace with -n)", s)
	}
	switch strings.ToLower(k) {
	case "deployment", "deployments", "deploy", "deployment.apps", "deployments.apps":
		return KindDeployment, name, nil
	case "gateway", "gateways", "gtw", "gateway.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io":
		return KindGateway, name, nil
	}
	return "", "", fmt.Errorf("%q: kind %q is neither deployment nor gateway (Gateway API)", s, k)
}

// ref is the gateway as results and the journal name it.
func (o *Options) ref() string {
	return strings.ToLower(o.Kind) + "/" + o.Namespace + "/" + o.Target
}

// Plan finds the gateway, its Deployment, Services and revision, and how capacity is kept.
func (o *Options) Plan(ctx context.Context, r *step.Run) (*step.Plan, error) {
	o.det = &Details{Gateway: o.ref(), To: o.To, Services: []ServiceCapacity{}, Pods: []string{}, Warnings: []string{}}
	r.Result.Details = o.det
	s := r.Before
	target, err := gate.ReadyTarget(s, o.To)
	if err != nil {
		return nil, err
	}
	rev := target.Name
	o.rev, o.det.Revision = rev, rev
	g, err := o.find(ctx, r)
	if err != nil {
		return nil, err
	}
	o.from, o.det.From, o.det.Deployment = g.Revision, g.Revision, "deployment/"+g.Namespace+"/"+g.Name
	if o.from == rev && o.currentLabel() == o.To {
		return &step.Plan{Nothing: fmt.Sprintf("migrate-gw: %s already runs %s; nothing to do", o.ref(), rev)}, nil
	}
	o.baseline, o.uids = map[string]int{}, map[string]types.UID{}
	for _, name := range g.Services {
		svc, err := r.C.Kube.CoreV1().Services(o.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		n, err := kube.ReadyEndpoints(ctx, r.C.Kube, o.Namespace, name)
		if err != nil {
			return nil, err
		}
		o.baseline[name], o.uids[name] = n, svc.UID
		o.det.Services = append(o.det.Services, ServiceCapacity{Name: name, UID: string(svc.UID), Before: n, MinReady: n})
	}
	if len(g.Services) == 0 {
		o.warn("no Service selects the gateway's pods: there is no endpoint count to keep")
	}
	if err := o.planCapacity(); err != nil {
		return nil, err
	}
	if g.Helm {
		o.warn(fmt.Sprintf("Helm owns deployment/%s: the next `helm upgrade` puts its revision back unless its values say revision=%s", g.Name, rev))
	}
	p := &step.Plan{Question: fmt.Sprintf("Move %s from %s to %s in place (pods replaced new-first, %s; the Service is kept)?", o.ref(), o.from, rev, o.det.Capacity), Target: rev}
	depRef := journal.DeploymentRef(o.Namespace, o.dep.Name)
	p.Access = append(p.Access, step.On(depRef, "get", "list", "watch")...)
	p.Access = append(p.Access, kube.Can("", "pods", o.Namespace, "list")...)
	p.Access = append(p.Access, kube.Can("discovery.k8s.io", "endpointslices", o.Namespace, "list")...)
	p.Access = append(p.Access, kube.Can("", "services", o.Namespace, "get")...)
	if o.Kind == KindDeployment {
		p.Record = append(p.Record, depRef)
		p.Access = append(p.Access, step.On(depRef, "patch")...)
	} else {
		gwRef := journal.GatewayRef(o.Namespace, o.Target)
		p.Record = append(p.Record, gwRef)
		p.Access = append(p.Access, step.On(gwRef, "patch")...)
		if o.surge == surgeOverlay {
			cm := journal.ConfigMapRef(o.Namespace, OverlayName(o.Target))
			p.Record = append(p.Record, cm)
			p.Access = append(p.Access, step.On(cm, "create", "delete")...)
		}
	}
	return p, nil
}

// find reads the gateway and its Deployment, refusing what migrate-gw cannot move in place.
func (o *Options) find(ctx context.Context, r *step.Run) (*mesh.Gateway, error) {
	s := r.Before
	var g *mesh.Gateway
	if o.Kind == KindGateway {
		gw, err := r.C.Dynamic.Resource(mesh.GatewayAPIGVR).Namespace(o.Namespace).Get(ctx, o.Target, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, cli.BadInputf("gateway.gateway.networking.k8s.io %s/%s not found", o.Namespace, o.Target)
		}
		if err != nil {
			return nil, err
		}
		class, _, _ := unstructured.NestedString(gw.Object, "spec", "gatewayClassName")
		if !mesh.IsIstioGatewayClass(class) {
			return nil, cli.BadInputf("gateway %s/%s is of class %q, which istiod does not deploy: its controller moves it", o.Namespace, o.Target, class)
		}
		o.gw = gw
		for i := range s.Gateways {
			if s.Gateways[i].GatewayAPI == o.Namespace+"/"+o.Target {
				g = &s.Gateways[i]
			}
		}
		if g == nil {
			return nil, cli.BadInputf("istiod has not deployed gateway %s/%s (no Deployment for it yet): see its status conditions", o.Namespace, o.Target)
		}
	} else {
		for i := range s.Gateways {
			if s.Gateways[i].Namespace == o.Namespace && s.Gateways[i].Name == o.Target {
				g = &s.Gateways[i]
			}
		}
		if g == nil {
			return nil, cli.BadInputf("deployment %s/%s is not an Istio gateway (no gateway injection template or router proxy)", o.Namespace, o.Target)
		}
		if g.GatewayAPI != "" {
			_, gwName, _ := strings.Cut(g.GatewayAPI, "/")
			return nil, cli.BadInputf("deployment %s/%s is istiod's, for Gateway %s: move the Gateway (kubectl istio-upgrade migrate-gw gateway/%s -n %s --to %s)", o.Namespace, o.Target, g.GatewayAPI, gwName, o.Namespace, o.To)
		}
	}
	for i := range r.Raw.Deployments {
		d := &r.Raw.Deployments[i]
		if d.Namespace == g.Namespace && d.Name == g.Name {
			o.dep = d.DeepCopy()
		}
	}
	if o.dep == nil {
		return nil, cli.BadInputf("deployment %s/%s not found", g.Namespace, g.Name)
	}
	if o.Kind == KindDeployment {
		if err := o.movable(s); err != nil {
			return nil, err
		}
	}
	if g.Ready == 0 {
		o.warn(fmt.Sprintf("deployment/%s has no ready pod: there is no capacity to keep and no routing to compare", g.Name))
	}
	return g, nil
}

// movable refuses Deployment gateways whose revision is not their pod template's label to set.
func (o *Options) movable(s *mesh.Snapshot) error {
	d := o.dep
	if d.Labels[canary.LabelCanaryOf] != "" {
		return cli.BadInputf("%s is a canary of %s: shift it, or move %s itself", o.ref(), d.Labels[canary.LabelCanaryOf], d.Labels[canary.LabelCanaryOf])
	}
	t := d.Spec.Template
	if t.Labels[istio.LabelSidecarInject] != "true" && !strings.Contains(t.Annotations[istio.AnnotationTemplates], "gateway") {
		return cli.BadInputf("%s runs the proxy its installer rendered, not an injected one: its revision is not a label to change. Use canary-gw and shift", o.ref())
	}
	for _, n := range s.Namespaces {
		if n.Name == o.Namespace && n.InjectionLabel != "" {
			return cli.BadInputf("namespace %s has istio-injection=%s, which overrides a pod's istio.io/rev: the new pods would not be injected by %s. Label the namespace with istio.io/rev instead", o.Namespace, n.InjectionLabel, o.To)
		}
	}
	return nil
}

// currentLabel is the istio.io/rev the move sets, as it is now.
func (o *Options) currentLabel() string {
	if o.Kind == KindGateway {
		return o.gw.GetLabels()[istio.LabelRev]
	}
	return o.dep.Spec.Template.Labels[istio.LabelRev]
}

// planCapacity decides how the rollout starts new pods first.
func (o *Options) planCapacity() error {
	if surgeFirst(o.dep) {
		o.det.Capacity = "the Deployment's strategy starts new pods first"
		return nil
	}
	if o.Kind == KindDeployment {
		o.surge = surgeStrategy
		o.det.Capacity = "strategy set to maxUnavailable 0, maxSurge 1 for the move"
		return nil
	}
	if ref, found, _ := unstructured.NestedMap(o.gw.Object, "spec", "infrastructure", "parametersRef"); found && len(ref) > 0 {
		return cli.BadInputf("gateway %s/%s's Deployment would take pods down first (%s), and the Gateway has its own parametersRef (%v): add `deployment: {spec: {strategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}}}` to that ConfigMap, then rerun",
			o.Namespace, o.Target, strategyText(o.dep), ref["name"])
	}
	o.surge = surgeOverlay
	o.det.Capacity = "ConfigMap " + OverlayName(o.Target) + " (Istio's deployment customization) sets maxUnavailable 0, maxSurge 1"
	return nil
}

// surgeFirst says a rollout of d never has fewer ready pods than it wants.
func surgeFirst(d *appsv1.Deployment) bool {
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return false
	}
	u, _ := checks.RollingParams(d)
	return u == 0
}

func strategyText(d *appsv1.Deployment) string {
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return "strategy Recreate"
	}
	u, s := checks.RollingParams(d)
	return fmt.Sprintf("maxUnavailable %d, maxSurge %d", u, s)
}

// OverlayName is the ConfigMap migrate-gw creates for a Gateway that needs a surge-first strategy.
func OverlayName(gateway string) string { return gateway + "-istio-upgrade" }

func (o *Options) warn(w string) {
	o.det.Warnings = append(o.det.Warnings, w)
}

// Apply moves the gateway and, on a real run, gates the move.
func (o *Options) Apply(ctx context.Context, r *step.Run) error {
	for _, w := range o.det.Warnings {
		r.Progress.Printf("warning: %s", w)
	}
	m := runMover(r, o)
	var want *istio.RoutingConfig
	if r.Live() {
		pods, err := m.pods(ctx)
		if err != nil {
			return err
		}
		o.fromPods = pods
		if ref := readyPod(pods); ref != nil {
			w, err := r.Istiod.Routing(ctx, gate.IstiodPods(r.Raw, o.from), o.Namespace, ref.Name)
			if err != nil {
				return fmt.Errorf("reading the routing istiod %s serves %s (nothing was changed): %w", o.from, ref.Name, err)
			}
			want = &w
			o.det.Routing = &canary.Routing{Reference: o.Namespace + "/" + ref.Name}
		}
	}
	start := time.Now()
	r.Note(FromNote(o.Kind, o.Namespace, o.Target), o.from)
	// One unit: the move, gated on capacity, SYNCED and routing, then on the gateway's own requests (what
	// it sent on as a client: a gateway answers nobody inside the mesh).
	res, err := r.RunUnit(ctx, step.Unit{Label: o.ref(), Timeout: o.Timeout, Moves: []string{o.Namespace + "/" + o.dep.Name},
		Write: func(ctx context.Context) error {
			if o.surge == surgeOverlay {
				o.overlaid = true
				if err := m.addOverlay(ctx); err != nil {
					return err
				}
			}
			var strategy *appsv1.DeploymentStrategy
			if o.surge == surgeStrategy {
				strategy = &surgeStrategy1
			}
			if err := m.setRevision(ctx, o.To, strategy, "moved to "+o.To); err != nil {
				return err
			}
			o.moved = true
			return nil
		},
		Gate: func(ctx context.Context) error { return o.gate(ctx, r, m, want) }})
	o.det.Requests = res.Requests
	switch {
	case err != nil && !o.moved:
		return err
	case r.DryRun == cli.DryRunClient:
		r.Result.Summary = fmt.Sprintf("migrate-gw would move %s from %s to %s in place (%s)", o.ref(), o.from, o.rev, o.det.Capacity)
		return nil
	case r.DryRun == cli.DryRunServer:
		r.Result.Summary = fmt.Sprintf("migrate-gw (server dry run): the move of %s to %s was accepted by the apiserver; nothing changed", o.ref(), o.rev)
		return nil
	case err != nil:
		o.det.Verified = false
		r.Result.Summary = fmt.Sprintf("migrate-gw: %s NOT moved: %v", o.ref(), err)
		return err
	}
	if o.surge == surgeStrategy {
		if err := m.setStrategy(ctx, o.dep.Spec.Strategy, "strategy restored"); err != nil {
			return err
		}
	}
	r.Result.Summary = fmt.Sprintf("migrate-gw: %s moved from %s to %s in place, %d pods SYNCED, ready endpoints never below %s, in %s",
		o.ref(), o.from, o.rev, len(o.det.Pods), o.capacityText(), time.Since(start).Round(time.Second))
	return nil
}

// surgeStrategy1 is the strategy a Deployment gateway moves with when its own would take pods down first.
var surgeStrategy1 = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
	RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: intOrStr(0), MaxSurge: intOrStr(1)}}

func (o *Options) capacityText() string {
	var parts []string
	for _, s := range o.det.Services {
		parts = append(parts, fmt.Sprintf("%d (%s)", s.Before, s.Name))
	}
	if len(parts) == 0 {
		return "<no Service>"
	}
	return strings.Join(parts, ", ")
}

// gate waits for the move to land, failing at once when a Service loses a ready endpoint, then
// compares the routing the new istiod serves with what the old one served (within the unit's timeout).
func (o *Options) gate(gctx context.Context, r *step.Run, m *mover, want *istio.RoutingConfig) error {
	istiod := gate.IstiodPods(r.Raw, o.rev)
	pods, err := m.await(gctx, o.rev, func(ctx context.Context) error { return o.checkCapacity(ctx, r) },
		func(ctx context.Context) map[string]string { return r.Istiod.Proxies(ctx, istiod) })
	if err != nil {
		return err
	}
	for _, p := range pods {
		o.det.Pods = append(o.det.Pods, p.Namespace+"/"+p.Name)
	}
	r.Progress.Printf("%s: %d pods on %s, SYNCED; ready endpoints kept (%s)", o.ref(), len(pods), o.rev, o.capacityText())
	for name, uid := range o.uids {
		svc, err := r.C.Kube.CoreV1().Services(o.Namespace).Get(gctx, name, metav1.GetOptions{})
		if err != nil {
			return cli.Errorf(cli.ExitGateFailed, "service %s/%s: %v", o.Namespace, name, err)
		}
		if svc.UID != uid {
			return cli.Errorf(cli.ExitGateFailed, "service %s/%s was replaced during the move (UID %s, was %s): its load balancer address may have changed", o.Namespace, name, svc.UID, uid)
		}
	}
	if want == nil || len(pods) == 0 {
		o.warn("no ready pod before the move to compare routing with")
		o.det.Verified = true
		return nil
	}
	got, err := r.Istiod.Routing(gctx, istiod, o.Namespace, pods[0].Name)
	if err != nil {
		return cli.Errorf(cli.ExitGateFailed, "config of %s from istiod %s: %v", pods[0].Name, o.rev, err)
	}
	o.det.Routing.Canary = o.Namespace + "/" + pods[0].Name
	o.det.Routing.Listeners, o.det.Routing.Routes = len(got.Listeners), len(got.Routes)
	o.det.Routing.Differences = istio.CompareRouting(*want, got)
	if d := o.det.Routing.Differences; len(d) > 0 {
		for _, x := range d {
			r.Progress.Printf("routing difference: %s", x)
		}
		return cli.Errorf(cli.ExitGateFailed, "istiod %s serves %s %d listener/route differences from what istiod %s served before the move", o.rev, pods[0].Name, len(d), o.from)
	}
	r.Progress.Printf("%s: listeners (%d) and routes (%d) equal to before the move", o.ref(), len(got.Listeners), len(got.Routes))
	o.det.Verified = true
	return nil
}

// checkCapacity fails when a Service in front of the gateway has fewer ready endpoints than before.
func (o *Options) checkCapacity(ctx context.Context, r *step.Run) error {
	for i := range o.det.Services {
		s := &o.det.Services[i]
		n, err := kube.ReadyEndpoints(ctx, r.C.Kube, o.Namespace, s.Name)
		if err != nil {
			return nil // a failed read is not a lost endpoint: the next tick reads again
		}
		s.MinReady = min(s.MinReady, n)
		if n < s.Before {
			return cli.Errorf(cli.ExitGateFailed, "service %s/%s has %d ready endpoints, below the %d before the move", o.Namespace, s.Name, n, s.Before)
		}
	}
	return nil
}

// Revert moves the gateway back the same way when the gate failed: the revision it ran, new pods first,
// then the strategy or overlay put back.
func (o *Options) Revert(ctx context.Context, r *step.Run, _ error) (bool, error) {
	if !o.moved && !o.overlaid {
		return false, nil
	}
	r.Progress.Printf("moving %s back to %s", o.ref(), o.from)
	m := runMover(r, o)
	if !o.moved {
		return true, m.removeOverlay(ctx) // the overlay was set, the move never sent
	}
	back := o.currentLabel()
	var strategy *appsv1.DeploymentStrategy
	if o.surge == surgeStrategy {
		strategy = &surgeStrategy1
	}
	if err := m.setRevision(ctx, back, strategy, "moved back to "+orDefault(back)); err != nil {
		return false, err
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if _, err := m.await(wctx, o.from, nil, nil); err != nil {
		return false, err
	}
	switch o.surge {
	case surgeStrategy:
		if err := m.setStrategy(ctx, o.dep.Spec.Strategy, "strategy restored"); err != nil {
			return false, err
		}
	case surgeOverlay:
		if err := m.removeOverlay(ctx); err != nil {
			return false, err
		}
	}
	o.det.RolledBack = true
	return true, nil
}

func readyPod(pods []corev1.Pod) *corev1.Pod {
	for i := range pods {
		if pods[i].DeletionTimestamp == nil && kube.PodReady(&pods[i]) {
			return &pods[i]
		}
	}
	return nil
}

func orDefault(label string) string {
	if label == "" {
		return "no istio.io/rev label"
	}
	return label
}
