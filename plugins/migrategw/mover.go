package migrategw

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/gate"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// mover makes the writes of a move and waits for it, the same way forward (the step), back on a failed
// gate (Revert) and back on undo: one path for all three.
type mover struct {
	c *kube.Clients
	p *cli.Progress
	// write is the one write path: the run's (dry run, journal, result) or undo's.
	write func(object, verb string, do func(dryRun []string) error) error
	// note records a patch for -o json|yaml (nil in undo).
	note func(object, patchType string, body []byte)
	// live says writes are real: only then does the mover wait.
	live                bool
	kind, ns, name, dep string
	timeout             time.Duration
}

// runMover is the mover of a step run.
func runMover(r *step.Run, o *Options) *mover {
	return &mover{c: r.C, p: r.Progress, write: r.Write, note: r.Patch, live: r.Live(),
		kind: o.Kind, ns: o.Namespace, name: o.Target, dep: o.dep.Name, timeout: o.Timeout}
}

type labels struct {
	Labels map[string]*string `json:"labels"`
}

type labelsPatch struct {
	Metadata labels `json:"metadata"`
}

type deploymentPatch struct {
	Spec struct {
		Strategy map[string]any `json:"strategy,omitempty"`
		Template *labelsPatch   `json:"template,omitempty"`
	} `json:"spec"`
}

// strategyPatch is a Deployment strategy as a strategic merge patch sets it whole: a missing
// rollingUpdate is sent as null, so a Recreate strategy comes back without one.
func strategyPatch(s appsv1.DeploymentStrategy) map[string]any {
	out := map[string]any{"type": s.Type, "rollingUpdate": nil}
	if s.RollingUpdate != nil {
		out["rollingUpdate"] = s.RollingUpdate
	}
	return out
}

func orNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func intOrStr(i int) *intstr.IntOrString {
	v := intstr.FromInt32(int32(i))
	return &v
}

// object names the gateway as results do: namespace/kind/name.
func (m *mover) object() string {
	if m.kind == KindGateway {
		return m.ns + "/gateway/" + m.name
	}
	return m.ns + "/deployment/" + m.name
}

// setRevision sets the istio.io/rev label that moves the gateway ("" removes it): on the Gateway, or
// on the Deployment's pod template, with strategy (when not nil) in the same patch.
func (m *mover) setRevision(ctx context.Context, label string, strategy *appsv1.DeploymentStrategy, verb string) error {
	lp := &labelsPatch{Metadata: labels{Labels: map[string]*string{istio.LabelRev: orNil(label)}}}
	if m.kind == KindGateway {
		body, err := json.Marshal(lp)
		if err != nil {
			return err
		}
		return m.patchGateway(ctx, body, verb)
	}
	var dp deploymentPatch
	dp.Spec.Template = lp
	if strategy != nil {
		dp.Spec.Strategy = strategyPatch(*strategy)
	}
	return m.patchDeployment(ctx, dp, verb)
}

// setStrategy puts a Deployment gateway's strategy back.
func (m *mover) setStrategy(ctx context.Context, s appsv1.DeploymentStrategy, verb string) error {
	var dp deploymentPatch
	dp.Spec.Strategy = strategyPatch(s)
	return m.patchDeployment(ctx, dp, verb)
}

func (m *mover) patchDeployment(ctx context.Context, dp deploymentPatch, verb string) error {
	body, err := json.Marshal(dp)
	if err != nil {
		return err
	}
	if m.note != nil {
		m.note(m.ns+"/deployment/"+m.name, string(types.StrategicMergePatchType), body)
	}
	return m.write(m.object(), verb, func(dry []string) error {
		_, err := m.c.Kube.AppsV1().Deployments(m.ns).Patch(ctx, m.name, types.StrategicMergePatchType, body,
			metav1.PatchOptions{DryRun: dry, FieldManager: kube.FieldManager})
		return err
	})
}

func (m *mover) patchGateway(ctx context.Context, body []byte, verb string) error {
	if m.note != nil {
		m.note(m.ns+"/gateway/"+m.name, string(types.MergePatchType), body)
	}
	return m.write(m.ns+"/gateway/"+m.name, verb, func(dry []string) error {
		_, err := m.c.Dynamic.Resource(mesh.GatewayAPIGVR).Namespace(m.ns).Patch(ctx, m.name, types.MergePatchType, body,
			metav1.PatchOptions{DryRun: dry, FieldManager: kube.FieldManager})
		return err
	})
}

// overlayData is Istio's gateway deployment customization that makes the rollout start new pods first.
func overlayData() (string, error) {
	b, err := yaml.Marshal(map[string]any{"spec": map[string]any{"strategy": map[string]any{
		"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxUnavailable": 0, "maxSurge": 1}}}})
	return string(b), err
}

type parametersRef struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
}

type infraPatch struct {
	Spec struct {
		Infrastructure struct {
			ParametersRef *parametersRef `json:"parametersRef"`
		} `json:"infrastructure"`
	} `json:"spec"`
}

// addOverlay creates the overlay ConfigMap, points the Gateway at it and, on a real run, waits until
// istiod re-rendered the Deployment with it (no pod changes: the pod template stays the same).
func (m *mover) addOverlay(ctx context.Context) error {
	data, err := overlayData()
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: OverlayName(m.name), Namespace: m.ns, Labels: map[string]string{"app.kubernetes.io/managed-by": kube.FieldManager}},
		Data:       map[string]string{"deployment": data},
	}
	if err := m.write(m.ns+"/configmap/"+cm.Name, "created", func(dry []string) error {
		_, err := m.c.Kube.CoreV1().ConfigMaps(m.ns).Create(ctx, cm, metav1.CreateOptions{DryRun: dry, FieldManager: kube.FieldManager})
		return err
	}); err != nil {
		return fmt.Errorf("create configmap %s/%s: %w", m.ns, cm.Name, err)
	}
	var ip infraPatch
	ip.Spec.Infrastructure.ParametersRef = &parametersRef{Group: "", Kind: "ConfigMap", Name: cm.Name}
	body, err := json.Marshal(ip)
	if err != nil {
		return err
	}
	if err := m.patchGateway(ctx, body, "parametersRef set to configmap/"+cm.Name); err != nil {
		return err
	}
	if !m.live {
		return nil
	}
	return step.WaitFor(ctx, m.p, m.timeout, "waiting for istiod to apply "+cm.Name+" to deployment/"+m.dep, func(ctx context.Context) (string, bool, error) {
		d, err := m.c.Kube.AppsV1().Deployments(m.ns).Get(ctx, m.dep, metav1.GetOptions{})
		if err != nil {
			return err.Error(), false, nil
		}
		if !surgeFirst(d) {
			return "deployment/" + m.dep + " still has " + strategyText(d), false, nil
		}
		return "", true, nil
	})
}

// removeOverlay points the Gateway back at no parameters and deletes the overlay ConfigMap.
func (m *mover) removeOverlay(ctx context.Context) error {
	var ip infraPatch
	body, err := json.Marshal(ip)
	if err != nil {
		return err
	}
	if err := m.patchGateway(ctx, body, "parametersRef removed"); err != nil {
		return err
	}
	name := OverlayName(m.name)
	return m.write(m.ns+"/configmap/"+name, "deleted", func(dry []string) error {
		err := m.c.Kube.CoreV1().ConfigMaps(m.ns).Delete(ctx, name, metav1.DeleteOptions{DryRun: dry})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

// pods lists the gateway Deployment's pods that are not terminating.
func (m *mover) pods(ctx context.Context) ([]corev1.Pod, error) {
	d, err := m.c.Kube.AppsV1().Deployments(m.ns).Get(ctx, m.dep, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	l, err := m.c.Kube.CoreV1().Pods(m.ns).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			out = append(out, p)
		}
	}
	return out, nil
}

// await waits until the Deployment's rollout is complete and every pod runs revision (and, when
// proxies is given, is SYNCED on its istiod). capacity, when given, runs every tick and ends the wait
// with its error.
func (m *mover) await(ctx context.Context, revision string, capacity func(context.Context) error, proxies func(context.Context) map[string]string) ([]corev1.Pod, error) {
	ref := kube.WorkloadRef{Kind: "Deployment", Namespace: m.ns, Name: m.dep}
	var pods []corev1.Pod
	last := "" // a read cut short by the deadline must not hide why the move was not done
	readErr := func(err error) string {
		if last != "" {
			return last
		}
		return err.Error()
	}
	err := step.WaitFor(ctx, m.p, m.timeout, m.object()+": moving to "+revision, func(ctx context.Context) (reason string, done bool, err error) {
		defer func() { last = reason }()
		if capacity != nil {
			if err := capacity(ctx); err != nil {
				return "", false, err
			}
		}
		d, err := m.c.Kube.AppsV1().Deployments(m.ns).Get(ctx, m.dep, metav1.GetOptions{})
		if err != nil {
			return readErr(err), false, nil
		}
		done, progress, err := kube.RolloutStatus(d)
		if err != nil {
			return "", false, cli.Errorf(cli.ExitGateFailed, "deployment/%s: %v", m.dep, err)
		}
		if !done {
			return progress, false, nil
		}
		if pods, err = m.pods(ctx); err != nil {
			return readErr(err), false, nil
		}
		for i := range pods {
			if rev, _ := istio.InjectedRevision(pods[i].Labels, pods[i].Annotations); rev != revision {
				return fmt.Sprintf("pod %s runs %s", pods[i].Name, rev), false, nil
			}
		}
		if proxies != nil {
			if _, reason := gate.EvaluatePods([]kube.WorkloadRef{ref}, pods, proxies(ctx), revision); reason != "" {
				return reason, false, nil
			}
		}
		return "", true, nil
	})
	m.p.Done()
	return pods, err
}
