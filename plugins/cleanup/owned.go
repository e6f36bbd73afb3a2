package cleanup

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// owned says whether u is part of revision's control plane in the Istio namespace ns.
func owned(u *unstructured.Unstructured, revision, ns string) bool {
	if u.GetLabels()[istio.LabelRev] != revision || u.GetLabels()[istio.LabelTag] != "" {
		return false
	}
	if !journal.ClusterScoped[u.GetKind()] && u.GetNamespace() != ns {
		return false
	}
	for _, n := range istio.ControlPlane(revision, ns)[u.GetKind()] {
		if u.GetName() == n {
			return true
		}
	}
	return false
}

// inUse says why an object of the revision must stay although it matched: something that is not the
// revision's own istiod still uses it (a Service with ready endpoints on other pods, a ServiceAccount
// other running pods run as), or "".
func inUse(ctx context.Context, c *kube.Clients, u *unstructured.Unstructured, pods []corev1.Pod, istiod map[string]bool) (string, error) {
	switch u.GetKind() {
	case "Service":
		l, err := c.Kube.DiscoveryV1().EndpointSlices(u.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + u.GetName()})
		if err != nil {
			return "", fmt.Errorf("list endpointslices of %s: %w", u.GetName(), err)
		}
		var others []string
		for _, s := range l.Items {
			for _, ep := range s.Endpoints {
				ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
				if ready && ep.TargetRef != nil && !istiod[ep.TargetRef.Namespace+"/"+ep.TargetRef.Name] {
					others = append(others, ep.TargetRef.Name)
				}
			}
		}
		if len(others) > 0 {
			return fmt.Sprintf("Service %s has ready endpoints on pods that are not its istiod: %s", u.GetName(), strings.Join(others, ", ")), nil
		}
	case "ServiceAccount":
		var users []string
		for _, p := range pods {
			if p.Namespace == u.GetNamespace() && p.Spec.ServiceAccountName == u.GetName() && p.DeletionTimestamp == nil &&
				p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed && !istiod[p.Namespace+"/"+p.Name] {
				users = append(users, p.Name)
			}
		}
		if len(users) > 0 {
			return fmt.Sprintf("ServiceAccount %s runs pods that are not its istiod: %s", u.GetName(), strings.Join(users, ", ")), nil
		}
	}
	return "", nil
}
