// Package canarygw is `kubectl istio-upgrade canary-gw`: a canary ingress gateway for the new revision
// beside the old one, out of traffic until shift, verified on its own.
package canarygw

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
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

// Options is `canary-gw`: its flags and what one run derived.
type Options struct {
	canary.Target
	CanaryName string
	Replicas   int32
	Timeout    time.Duration
	// Helm makes the canary a release of the old gateway's own chart instead of a derived Deployment.
	Helm bool

	det    *Details
	old    *appsv1.Deployment
	oldRev string
	canary *appsv1.Deployment
	hpa    *autoscalingv2.HorizontalPodAutoscaler
	pdb    *policyv1.PodDisruptionBudget
	// with --helm: the old gateway's release and the canary release's values
	source   helm.Release
	helmVals map[string]any
}

// Name is the step's name in the journal and results.
func (o *Options) Name() string { return "canary-gw" }

// MovesToRevision: the runner refuses a target that skips a minor (--allow-version-skip).
func (o *Options) MovesToRevision() {}

// Details is the step-specific part of the result.
type Details struct {
	Gateway  string `json:"gateway"`
	Canary   string `json:"canary"`
	Revision string `json:"revision"`
	Replicas int32  `json:"replicas"`
	// Release is the canary's Helm release (--helm).
	Release string `json:"release,omitempty"`
	// Objects are the canary's Deployment, HPA and PDB as created (or as they would be).
	Objects []any `json:"objects"`
	// Pods are the canary's pods, each injected by Revision and SYNCED on its istiod.
	Pods []string `json:"pods"`
	// ServingEndpoints counts canary pods that are ready endpoints of a Service: 0 until shift.
	ServingEndpoints int             `json:"servingEndpoints"`
	Routing          *canary.Routing `json:"routing,omitempty"`
	Verified         bool            `json:"verified"`
	Warnings         []string        `json:"warnings"`
}

// NewCommand builds `canary-gw`.
func NewCommand(g *cli.Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "canary-gw --gateway NAMESPACE/DEPLOYMENT --revision NEW",
		Short: "Create a canary ingress gateway on the new revision, out of traffic, and verify it",
		Long: `Create a canary gateway Deployment for revision NEW beside an existing ingress gateway, and verify
it before it serves anybody.

The canary is derived from the existing Deployment: the same pod template (resources, security
context, ports, service account, scheduling), labelled istio.io/rev=NEW and injected by NEW with the
gateway template, with the labels the Gateway resources select, plus an HPA and a PDB equivalent to
the old gateway's. It gets no Service: it shares the old gateway's Service, whose selector already
matches it - which is how shift later moves traffic, by the ratio of ready pods.

Until shift gives it weight the canary serves no traffic: its pods carry the readiness gate
istio-upgrade.io/serving, which nothing sets, so they run and connect to istiod but are never Ready and
never an endpoint of any Service. shift removes the gate when it gives the canary its first share.

Verified on its own: every pod running with its containers ready, injected by NEW, SYNCED on NEW's
istiod, zero of them serving, and the listeners and routes NEW's istiod serves the canary equal to
what the old revision's istiod serves the old gateway (differences are listed; exit 75). The old
gateway, whether Helm, istioctl or plain YAML installed it, is never modified.`,
		Example: `  # A canary of the ingress gateway on revision 1-31, one replica
  kubectl istio-upgrade canary-gw --gateway istio-ingress/istio-ingressgateway --revision 1-31

  # Two replicas, a custom name, the objects it would create as YAML
  kubectl istio-upgrade canary-gw --gateway istio-ingress/istio-ingressgateway --revision 1-31 --replicas 2 --name gw-canary --dry-run -o yaml

  # Then move traffic to it
  kubectl istio-upgrade shift --gateway istio-ingress/istio-ingressgateway --revision 1-31 --weight 100 --step 50`,
		Args: cli.NoArgs,
	}
	f := cmd.Flags()
	o.Target.AddFlags(f)
	f.StringVar(&o.CanaryName, "name", "", "Name of the canary Deployment (default <gateway>-<revision>)")
	f.Int32Var(&o.Replicas, "replicas", 1, "Canary replicas before shift")
	f.DurationVar(&o.Timeout, "timeout", 3*time.Minute, "How long the canary may take to pass verification")
	f.BoolVar(&o.Helm, "helm", false, "Install the canary as a release (named like the canary) of the old gateway's own gateway chart, through the Helm SDK")
	return step.NewCommand(g, streams, o, cmd)
}

// Validate checks flags without I/O.
func (o *Options) Validate(r *step.Run, _ []string) error {
	if err := o.Target.Complete(r.Namespace); err != nil {
		return err
	}
	if o.Replicas < 1 {
		return cli.UsageErrorf("--replicas must be at least 1")
	}
	if o.Timeout <= 0 {
		return cli.UsageErrorf("--timeout must be positive")
	}
	if o.CanaryName == "" {
		o.CanaryName = canary.DefaultName(o.Old, o.Revision)
	}
	if errs := validation.IsDNS1123Subdomain(o.CanaryName); len(errs) > 0 {
		return cli.UsageErrorf("--name %q: %s", o.CanaryName, strings.Join(errs, "; "))
	}
	if o.Helm && len(o.CanaryName) > 53 { // helm's limit on release names
		return cli.UsageErrorf("--name %q: a Helm release name has at most 53 characters", o.CanaryName)
	}
	return nil
}

// Plan finds the old gateway, checks the revision and derives the canary's Deployment, HPA and PDB.
func (o *Options) Plan(ctx context.Context, r *step.Run) (*step.Plan, error) {
	o.det = &Details{Gateway: o.Namespace + "/" + o.Old, Canary: o.Namespace + "/" + o.CanaryName, Revision: o.Revision, Replicas: o.Replicas, Objects: []any{}, Pods: []string{}, Warnings: []string{}}
	r.Result.Details = o.det
	var err error
	if o.old, o.oldRev, err = o.checkCluster(ctx, r.C, r.Before); err != nil {
		return nil, err
	}
	hpas, err := r.C.Kube.AutoscalingV2().HorizontalPodAutoscalers(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	pdbs, err := r.C.Kube.PolicyV1().PodDisruptionBudgets(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	oldHPA, oldPDB := canary.HPAFor(hpas.Items, o.old.Name), canary.PDBFor(pdbs.Items, o.old)
	if o.Helm {
		if o.source, err = o.helmSource(r); err != nil {
			return nil, err
		}
		o.helmVals = o.helmValues(canary.HPARange(oldHPA))
		p := &step.Plan{Question: fmt.Sprintf("Install Helm release %s (the %s chart %s of release %s: revision=%s, no Service, %d replicas, out of traffic until shift) beside %s?",
			o.det.Canary, o.source.Chart, o.source.Version, o.source.Name, o.Revision, o.Replicas, o.det.Gateway), Target: o.Revision}
		// helm writes its release Secret and creates the chart's objects
		p.Access = append(p.Access, kube.Can("", "secrets", o.Namespace, "list", "create", "update")...)
		p.Access = append(p.Access, kube.Can("apps", "deployments", o.Namespace, "create")...)
		p.Access = append(p.Access, kube.Can("", "pods", o.Namespace, "list")...)
		p.Access = append(p.Access, kube.Can("discovery.k8s.io", "endpointslices", o.Namespace, "list")...)
		return p, nil
	}
	o.canary = canary.Derive(o.old, o.Revision, o.CanaryName, o.Replicas, canary.HPARange(oldHPA))
	o.det.Objects = append(o.det.Objects, o.canary)
	p := &step.Plan{
		Question: fmt.Sprintf("Create canary gateway %s on %s beside %s (%d replicas, out of traffic until shift)?", o.det.Canary, o.Revision, o.det.Gateway, o.Replicas),
		Record:   []journal.ObjectRef{journal.DeploymentRef(o.Namespace, o.CanaryName)},
		Target:   o.Revision,
	}
	if oldHPA != nil {
		o.hpa = canary.DeriveHPA(oldHPA, o.canary)
		o.det.Objects = append(o.det.Objects, o.hpa)
		p.Record = append(p.Record, journal.HPARef(o.Namespace, o.hpa.Name))
	}
	if oldPDB != nil {
		o.pdb = canary.DerivePDB(oldPDB, o.canary)
		o.det.Objects = append(o.det.Objects, o.pdb)
		p.Record = append(p.Record, journal.PDBRef(o.Namespace, o.pdb.Name))
	}
	for _, ref := range p.Record {
		p.Access = append(p.Access, step.On(ref, "create")...)
	}
	// Verification lists the canary's pods and the endpoints that must not include them.
	p.Access = append(p.Access, kube.Can("", "pods", o.Namespace, "list")...)
	p.Access = append(p.Access, kube.Can("discovery.k8s.io", "endpointslices", o.Namespace, "list")...)
	return p, nil
}

// Apply creates the canary and, on a real run, verifies it. A canary that fails verification stays out
// of traffic (exit 75); undo removes it.
func (o *Options) Apply(ctx context.Context, r *step.Run) error {
	if o.Helm {
		if err := o.installRelease(ctx, r); err != nil {
			return err
		}
	} else if err := o.create(ctx, r); err != nil {
		return err
	}
	return o.finish(ctx, r)
}

// create creates the derived canary Deployment, HPA and PDB.
func (o *Options) create(ctx context.Context, r *step.Run) error {
	k := r.C.Kube
	r.Manifest(o.Namespace+"/deployment/"+o.CanaryName, "apps/v1", "Deployment", o.canary)
	if o.hpa != nil {
		r.Manifest(o.Namespace+"/horizontalpodautoscaler/"+o.hpa.Name, "autoscaling/v2", "HorizontalPodAutoscaler", o.hpa)
	}
	if o.pdb != nil {
		r.Manifest(o.Namespace+"/poddisruptionbudget/"+o.pdb.Name, "policy/v1", "PodDisruptionBudget", o.pdb)
	}
	if err := r.Write("deployment/"+o.CanaryName, "created", func([]string) error {
		_, err := k.AppsV1().Deployments(o.Namespace).Create(ctx, o.canary, r.CreateOptions())
		return err
	}); err != nil {
		return fmt.Errorf("create deployment %s/%s: %w", o.Namespace, o.CanaryName, err)
	}
	if o.hpa != nil {
		if err := r.Write("horizontalpodautoscaler/"+o.hpa.Name, "created", func([]string) error {
			_, err := k.AutoscalingV2().HorizontalPodAutoscalers(o.Namespace).Create(ctx, o.hpa, r.CreateOptions())
			return err
		}); err != nil {
			return fmt.Errorf("create hpa %s/%s: %w", o.Namespace, o.hpa.Name, err)
		}
	}
	if o.pdb != nil {
		if err := r.Write("poddisruptionbudget/"+o.pdb.Name, "created", func([]string) error {
			_, err := k.PolicyV1().PodDisruptionBudgets(o.Namespace).Create(ctx, o.pdb, r.CreateOptions())
			return err
		}); err != nil {
			return fmt.Errorf("create pdb %s/%s: %w", o.Namespace, o.pdb.Name, err)
		}
	}
	return nil
}

// finish verifies a created canary (a real run) or sums up a dry run.
func (o *Options) finish(ctx context.Context, r *step.Run) error {
	switch r.DryRun {
	case cli.DryRunClient:
		r.Result.Summary = fmt.Sprintf("canary-gw would create %s for %s on %s (%d replicas, out of traffic until shift)", o.det.Canary, o.det.Gateway, o.Revision, o.Replicas)
		return nil
	case cli.DryRunServer:
		r.Result.Summary = fmt.Sprintf("canary-gw (server dry run): %s for %s on %s accepted by the apiserver; nothing changed", o.det.Canary, o.det.Gateway, o.Revision)
		return nil
	}
	r.Progress.Printf("deployment/%s created: %d replicas on %s, out of traffic (readiness gate %s)", o.CanaryName, o.Replicas, o.Revision, canary.ServingGate)
	start := time.Now()
	if err := o.verify(ctx, r); err != nil {
		r.Result.Summary = fmt.Sprintf("canary-gw: %s created but NOT verified (it serves no traffic; `kubectl istio-upgrade undo %s` removes it)", o.det.Canary, r.Result.Journal)
		return err
	}
	r.Result.Summary = fmt.Sprintf("canary-gw: %s on %s beside %s (%s), %d pods SYNCED, %d serving, verified in %s",
		o.det.Canary, o.Revision, o.det.Gateway, o.oldRev, len(o.det.Pods), o.det.ServingEndpoints, time.Since(start).Round(time.Second))
	return nil
}

// checkCluster finds the old gateway and checks the revision; nothing has changed when it fails.
func (o *Options) checkCluster(ctx context.Context, c *kube.Clients, s *mesh.Snapshot) (*appsv1.Deployment, string, error) {
	old, err := c.Kube.AppsV1().Deployments(o.Namespace).Get(ctx, o.Old, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, "", cli.BadInputf("gateway deployment %s/%s not found", o.Namespace, o.Old)
	}
	if err != nil {
		return nil, "", err
	}
	if old.Labels[canary.LabelCanaryOf] != "" {
		return nil, "", cli.BadInputf("%s/%s is itself a canary of %s: give the original gateway", o.Namespace, o.Old, old.Labels[canary.LabelCanaryOf])
	}
	oldRev := ""
	isGateway := false
	for _, gw := range s.Gateways {
		if gw.Namespace == o.Namespace && gw.Name == o.Old {
			isGateway, oldRev = true, gw.Revision
		}
	}
	if !isGateway {
		return nil, "", cli.BadInputf("%s/%s is not an Istio gateway (no gateway injection template or router proxy)", o.Namespace, o.Old)
	}
	if err := gate.RevisionReady(s, o.Revision); err != nil {
		return nil, "", err
	}
	if oldRev == o.Revision {
		return nil, "", cli.BadInputf("gateway %s/%s already runs revision %s: nothing to canary", o.Namespace, o.Old, o.Revision)
	}
	for _, n := range s.Namespaces {
		if n.Name == o.Namespace && n.InjectionLabel != "" {
			return nil, "", cli.BadInputf("namespace %s has istio-injection=%s, which overrides a pod's istio.io/rev: the canary would not be injected by %s. Label the namespace with istio.io/rev instead", o.Namespace, n.InjectionLabel, o.Revision)
		}
	}
	if _, err := c.Kube.AppsV1().Deployments(o.Namespace).Get(ctx, o.CanaryName, metav1.GetOptions{}); err == nil {
		return nil, "", cli.BadInputf("deployment %s/%s already exists: shift it, or remove it with undo", o.Namespace, o.CanaryName)
	} else if !apierrors.IsNotFound(err) {
		return nil, "", err
	}
	return old, oldRev, nil
}

// verify waits for the canary's pods to run, be injected by the revision and be SYNCED on its istiod,
// checks none serves, then compares routing with the old gateway.
func (o *Options) verify(ctx context.Context, r *step.Run) error {
	c, p, det, old, oldRev := r.C, r.Progress, o.det, o.old, o.oldRev
	vctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	ref := kube.WorkloadRef{Kind: "Deployment", Namespace: o.Namespace, Name: o.CanaryName}
	istiod := gate.IstiodPods(r.Raw, o.Revision)
	sel := labels.Set{canary.LabelCanaryOf: o.Old}.AsSelector().String()
	var pods []corev1.Pod
	err := r.Wait(vctx, o.Timeout, "canary "+o.CanaryName+": waiting", func(ctx context.Context) (string, bool, error) {
		l, err := c.Kube.CoreV1().Pods(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return err.Error(), false, nil
		}
		pods = l.Items
		reason := canary.PodsReady(pods, o.Replicas)
		if reason == "" {
			_, reason = gate.EvaluatePods([]kube.WorkloadRef{ref}, pods, r.Istiod.Proxies(ctx, istiod), o.Revision)
		}
		return reason, reason == "", nil
	})
	if err != nil {
		return err
	}
	var live []corev1.Pod
	for _, pod := range pods {
		if pod.DeletionTimestamp == nil {
			live = append(live, pod)
			det.Pods = append(det.Pods, pod.Namespace+"/"+pod.Name)
		}
	}
	pods = live
	p.Printf("canary %s: %d pods running, injected by %s, SYNCED", o.CanaryName, len(det.Pods), o.Revision)
	serving, err := canary.ServingEndpoints(vctx, c, o.Namespace, pods)
	if err != nil {
		return err
	}
	det.ServingEndpoints = serving
	if serving > 0 {
		return cli.Errorf(cli.ExitGateFailed, "%d canary pods are ready endpoints of a Service before shift: the readiness gate did not hold them out", serving)
	}
	// Routing: one ready pod of the old gateway against one canary pod.
	oldPods, err := c.Kube.CoreV1().Pods(o.Namespace).List(vctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(old.Spec.Selector)})
	if err != nil {
		return err
	}
	var refPod *corev1.Pod
	for i := range oldPods.Items {
		q := &oldPods.Items[i]
		if q.Labels[canary.LabelCanaryOf] == "" && kube.PodReady(q) {
			refPod = q
			break
		}
	}
	if refPod == nil {
		det.Warnings = append(det.Warnings, "no ready pod of the old gateway to compare routing with")
		p.Printf("warning: no ready pod of %s to compare routing with", o.Old)
		det.Verified = true
		return nil
	}
	want, err := r.Istiod.Routing(vctx, gate.IstiodPods(r.Raw, oldRev), refPod.Namespace, refPod.Name)
	if err != nil {
		return cli.Errorf(cli.ExitGateFailed, "config of %s from istiod %s: %v", refPod.Name, oldRev, err)
	}
	got, err := r.Istiod.Routing(vctx, istiod, o.Namespace, pods[0].Name)
	if err != nil {
		return cli.Errorf(cli.ExitGateFailed, "config of %s from istiod %s: %v", pods[0].Name, o.Revision, err)
	}
	det.Routing = &canary.Routing{Reference: refPod.Namespace + "/" + refPod.Name, Canary: o.Namespace + "/" + pods[0].Name,
		Listeners: len(got.Listeners), Routes: len(got.Routes), Differences: istio.CompareRouting(want, got)}
	if d := det.Routing.Differences; len(d) > 0 {
		for _, x := range d {
			p.Printf("routing difference: %s", x)
		}
		return cli.Errorf(cli.ExitGateFailed, "istiod %s serves the canary %d listener/route differences from what istiod %s serves %s", o.Revision, len(d), oldRev, refPod.Name)
	}
	p.Printf("canary %s: listeners (%d) and routes (%d) equal to %s's", o.CanaryName, len(got.Listeners), len(got.Routes), refPod.Name)
	det.Verified = true
	return nil
}
