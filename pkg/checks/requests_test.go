package checks

import (
	"strings"
	"testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// What precheck says about the request gates' data: nothing when not asked; no Prometheus, one that does
// not answer, no metric at all, telemetry off; and the sidecar workloads too quiet for a verdict, by
// namespace (an ambient workload's pods have no sidecar and are not judged on these metrics).
func TestRequestMetrics(t *testing.T) {
	snap := &mesh.Snapshot{Workloads: []mesh.Workload{
		{Namespace: "shop", Name: "web", InjectedRevisions: []string{"1-30"}},
		{Namespace: "shop", Name: "idle", InjectedRevisions: []string{"1-30"}},
		{Namespace: "ambient", Name: "app", InjectedRevisions: []string{""}},
	}}
	codes := func(fs []Finding) string {
		var c []string
		for _, f := range fs {
			c = append(c, string(f.Severity)+" "+f.Code+" "+f.Object)
		}
		return strings.Join(c, "; ")
	}
	data := func(d RequestData) *RequestData { d.Window, d.MinRequests = "5m0s", 10; return &d }
	for _, tt := range []struct {
		name string
		d    *RequestData
		want string
		says string
	}{
		{"not asked", nil, "", ""},
		{"no Prometheus", data(RequestData{Error: "no Prometheus found"}), "warning METRICS_UNAVAILABLE prometheus", "see the control plane only"},
		{"not answering", data(RequestData{Prometheus: "service istio-system/prometheus:9090", Error: "503"}), "warning METRICS_UNAVAILABLE prometheus", "did not answer: 503"},
		{"no metric at all", data(RequestData{Prometheus: "p", Requests: map[string]float64{}}), "warning METRICS_MISSING prometheus", "no istio_requests_total"},
		{"one quiet workload", data(RequestData{Prometheus: "p", Requests: map[string]float64{"shop/web": 600, "shop/idle": 2}}), "info METRICS_LOW_TRAFFIC namespace/shop", "(idle)"},
		{"all carry traffic", data(RequestData{Prometheus: "p", Requests: map[string]float64{"shop/web": 600, "shop/idle": 20}}), "", ""},
		{"telemetry off", data(RequestData{Prometheus: "p", Requests: map[string]float64{"shop/web": 600, "shop/idle": 20}, TelemetryOff: []string{"shop/quiet: all metrics off"}}), "warning TELEMETRY_METRICS_OFF telemetry/shop/quiet", "report no request metrics"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := RequestMetrics(&Input{Snapshot: snap, Requests: tt.d})
			if got := codes(fs); got != tt.want {
				t.Fatalf("findings %q, want %q", got, tt.want)
			}
			if tt.says != "" && !strings.Contains(fs[0].Message, tt.says) && !strings.Contains(fs[len(fs)-1].Message, tt.says) {
				t.Errorf("messages %+v do not say %q", fs, tt.says)
			}
		})
	}
}
