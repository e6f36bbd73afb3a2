package mesh

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// IstiodMonitoringPort serves istiod's Prometheus metrics.
const IstiodMonitoringPort = 15014

// IstiodMetrics reads the gate counters from every running istiod pod of a revision (port-forward to
// 15014, GET /metrics) and sums them.
func IstiodMetrics(ctx context.Context, c *kube.Clients, istiodPods []corev1.Pod, revision string) (map[string]float64, error) {
	total := map[string]float64{}
	n := 0
	for _, p := range istiodPods {
		if istio.RevisionOf(p.Labels) != revision || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		m, err := podMetrics(ctx, c, p)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			total[k] += v
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("no running istiod pod of revision %s", revision)
	}
	return total, nil
}

func podMetrics(ctx context.Context, c *kube.Clients, p corev1.Pod) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	addr, stop, err := kube.PortForward(ctx, c.Config, p.Namespace, p.Name, IstiodMonitoringPort)
	if err != nil {
		return nil, err
	}
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("istiod %s metrics: %w", p.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("istiod %s metrics: HTTP %d", p.Name, resp.StatusCode)
	}
	return istio.ParseMetrics(resp.Body)
}
