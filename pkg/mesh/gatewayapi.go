package mesh

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
)

// GatewayAPIGVR is the Gateway API Gateway resource; clusters without its CRD have none.
var GatewayAPIGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}

// IsIstioGatewayClass says istiod deploys Gateways of the class (istio, istio-waypoint, per-revision ones).
func IsIstioGatewayClass(class string) bool { return strings.HasPrefix(class, "istio") }

// GatewayAPIGateway is a Gateway API Gateway istiod deploys: its class and its own istio.io/rev label.
type GatewayAPIGateway struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Class     string `json:"class"`
	RevLabel  string `json:"revLabel,omitempty"`
}

// Kind is "waypoint" for class istio-waypoint, else "gateway".
func (g GatewayAPIGateway) Kind() string {
	if g.Class == "istio-waypoint" {
		return "waypoint"
	}
	return "gateway"
}

// ListGatewayAPI lists the Gateways of Istio's classes in namespace ("" = all); none without the CRD.
func ListGatewayAPI(ctx context.Context, dc dynamic.Interface, namespace string) ([]GatewayAPIGateway, error) {
	l, err := dc.Resource(GatewayAPIGVR).Namespace(namespace).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list gateways.gateway.networking.k8s.io: %w", err)
	}
	var out []GatewayAPIGateway
	for _, g := range l.Items {
		class, _, _ := unstructured.NestedString(g.Object, "spec", "gatewayClassName")
		if IsIstioGatewayClass(class) {
			out = append(out, GatewayAPIGateway{Namespace: g.GetNamespace(), Name: g.GetName(), Class: class, RevLabel: g.GetLabels()[istio.LabelRev]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name })
	return out, nil
}

// Selects is the revision or tag name the Gateway resolves through, as Istio resolves it, and how: its
// own istio.io/rev label, else its namespace's injection label, else the default (tag or revision).
func (s *Snapshot) Selects(g GatewayAPIGateway) (name, how string) {
	if g.RevLabel != "" {
		return g.RevLabel, "its " + istio.LabelRev + " label"
	}
	for _, n := range s.Namespaces {
		if n.Name != g.Namespace {
			continue
		}
		if n.RevLabel != "" {
			return n.RevLabel, "its namespace's " + istio.LabelRev + " label"
		}
		if n.InjectionLabel == "enabled" {
			return "default", "its namespace's istio-injection label"
		}
	}
	return "default", "the default revision"
}
