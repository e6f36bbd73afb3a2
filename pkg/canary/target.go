package canary

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// Target is what canary-gw and shift act on: the existing gateway Deployment (--gateway) and the new
// revision its canary runs (--revision).
type Target struct {
	Gateway  string
	Revision string
	// Namespace and Old are --gateway parsed.
	Namespace string
	Old       string
}

// AddFlags binds --gateway and --revision.
func (t *Target) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&t.Gateway, "gateway", "", "The existing (old) gateway Deployment, as NAMESPACE/NAME (or NAME with -n) (required)")
	f.StringVar(&t.Revision, "revision", "", "The new revision, which the canary is injected by (required)")
}

// Complete checks and parses the flags, without I/O; NAME alone is in namespace ns (-n, or the
// kubeconfig context's).
func (t *Target) Complete(ns string) error {
	if t.Gateway == "" || t.Revision == "" {
		return cli.UsageErrorf("--gateway and --revision are required")
	}
	var err error
	if t.Namespace, t.Old, err = ParseGateway(t.Gateway, ns); err != nil {
		return cli.UsageErrorf("%v", err)
	}
	return nil
}

// ParseGateway splits NAMESPACE/NAME; NAME alone takes the -n namespace.
func ParseGateway(s, namespace string) (string, string, error) {
	ns, name, found := strings.Cut(s, "/")
	if !found {
		ns, name = namespace, s
	}
	if ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("--gateway %q: want NAMESPACE/DEPLOYMENT, or DEPLOYMENT with -n", s)
	}
	return ns, name, nil
}

// Routing compares what istiod serves the old gateway and the canary.
type Routing struct {
	Reference   string   `json:"reference"`
	Canary      string   `json:"canary"`
	Listeners   int      `json:"listeners"`
	Routes      int      `json:"routes"`
	Differences []string `json:"differences"`
}

// PodsReady says why the canary's pods are not yet all running with ready containers ("" when they are).
func PodsReady(pods []corev1.Pod, want int32) string {
	n := int32(0)
	for i := range pods {
		q := &pods[i]
		if q.DeletionTimestamp != nil {
			continue
		}
		if q.Status.Phase != corev1.PodRunning || !kube.PodCondition(q, corev1.ContainersReady) {
			return fmt.Sprintf("pod %s is %s", q.Name, q.Status.Phase)
		}
		n++
	}
	if n != want {
		return fmt.Sprintf("%d/%d pods running", n, want)
	}
	return ""
}

// ServingEndpoints counts the given pods that are ready endpoints in any EndpointSlice of the namespace.
func ServingEndpoints(ctx context.Context, c *kube.Clients, namespace string, pods []corev1.Pod) (int, error) {
	names := map[string]bool{}
	for _, p := range pods {
		names[p.Name] = true
	}
	slices, err := c.Kube.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.TargetRef != nil && names[e.TargetRef.Name] && e.Conditions.Ready != nil && *e.Conditions.Ready {
				n++
			}
		}
	}
	return n, nil
}
