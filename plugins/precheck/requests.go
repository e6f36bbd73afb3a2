package precheck

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/checks"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/metrics"
)

// requestWindow is how far back precheck looks for each workload's requests: the steps' default
// --metrics-baseline, the window their gates compare against.
const requestWindow = 5 * time.Minute

var telemetryGVR = schema.GroupVersionResource{Group: "telemetry.istio.io", Version: "v1", Resource: "telemetries"}

// requestData asks what the request gates will see: Prometheus found and answering, each workload's
// requests, and Telemetry resources that turn metrics off.
func (o *Options) requestData(ctx context.Context, c *kube.Clients) *checks.RequestData {
	d := &checks.RequestData{Window: requestWindow.String(), MinRequests: metrics.DefaultThresholds.MinRequests}
	src, err := o.Prometheus.Locate(ctx, c.Kube, o.g.IstioNamespace)
	switch {
	case err != nil:
		d.Error = "finding Prometheus: " + err.Error()
		return d
	case src == nil:
		d.Error = metrics.NotFound(o.g.IstioNamespace)
		return d
	}
	d.Prometheus = src.String()
	if d.Requests, err = (&metrics.Client{Kube: c.Kube, Source: *src}).RequestsByWorkload(ctx, requestWindow, time.Now()); err != nil {
		d.Error = err.Error()
		return d
	}
	d.TelemetryOff = telemetryOff(ctx, c)
	return d
}

// telemetryOff lists Telemetry resources whose metrics overrides disable reporting (none when the
// kind is not served or may not be listed: nothing to say).
func telemetryOff(ctx context.Context, c *kube.Clients) []string {
	l, err := c.Dynamic.Resource(telemetryGVR).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, t := range l.Items {
		ms, _, _ := unstructured.NestedSlice(t.Object, "spec", "metrics")
		for _, m := range ms {
			mm, _ := m.(map[string]any)
			ovs, _, _ := unstructured.NestedSlice(mm, "overrides")
			for _, ov := range ovs {
				om, _ := ov.(map[string]any)
				if off, _, _ := unstructured.NestedBool(om, "disabled"); !off {
					continue
				}
				what := "all metrics"
				if metric, _, _ := unstructured.NestedString(om, "match", "metric"); metric != "" && metric != "ALL_METRICS" {
					what = metric
				}
				if mode, _, _ := unstructured.NestedString(om, "match", "mode"); mode != "" && mode != "CLIENT_AND_SERVER" {
					what += " (" + strings.ToLower(mode) + " side)"
				}
				out = append(out, fmt.Sprintf("%s/%s: %s off", t.GetNamespace(), t.GetName(), what))
			}
		}
	}
	return out
}
