package precheck

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

func telemetry(ns, name string, overrides ...map[string]any) *unstructured.Unstructured {
	ovs := make([]any, len(overrides))
	for i, o := range overrides {
		ovs[i] = o
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     map[string]any{"metrics": []any{map[string]any{"providers": []any{map[string]any{"name": "prometheus"}}, "overrides": ovs}}},
	}}
}

// Telemetry overrides that disable metrics are named with what they turn off; tag overrides and
// metrics left on are not.
func TestTelemetryOff(t *testing.T) {
	gvr := schema.GroupVersionResource{Group: "telemetry.istio.io", Version: "v1", Resource: "telemetries"}
	dc := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{gvr: "TelemetryList"},
		telemetry("istio-system", "mesh-default", map[string]any{"tagOverrides": map[string]any{"x": map[string]any{"value": "y"}}}),
		telemetry("shop", "quiet", map[string]any{"disabled": true}),
		telemetry("pay", "no-count", map[string]any{"disabled": true, "match": map[string]any{"metric": "REQUEST_COUNT", "mode": "SERVER"}}),
		telemetry("web", "on", map[string]any{"disabled": false}))
	got := strings.Join(telemetryOff(context.Background(), &kube.Clients{Dynamic: dc}), "; ")
	for _, want := range []string{"shop/quiet: all metrics off", "pay/no-count: REQUEST_COUNT (server side) off"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q does not name %q", got, want)
		}
	}
	if strings.Contains(got, "mesh-default") || strings.Contains(got, "web/on") {
		t.Errorf("named a Telemetry that turns nothing off: %q", got)
	}
}
