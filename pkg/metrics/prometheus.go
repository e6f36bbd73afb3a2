// Package metrics reads Istio's standard request metrics from Prometheus and judges them: the gates
// that see the workloads' own requests (success rate, p99 latency), against each workload's baseline.
// Prometheus is reached through the apiserver's service proxy (services/proxy get), so nothing is
// port-forwarded and it works wherever kubectl does; or at a URL given.
package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Source is where Prometheus answers: a Service, through the apiserver's service proxy, or a URL.
type Source struct {
	URL                      string `json:"url,omitempty"`
	Namespace, Service, Port string `json:"-"`
}

func (s Source) String() string {
	if s.URL != "" {
		return s.URL
	}
	return fmt.Sprintf("service %s/%s:%s (through the apiserver)", s.Namespace, s.Service, s.Port)
}

// ParseService reads NS/NAME:PORT (the port defaults to 9090).
func ParseService(v string) (Source, error) {
	ns, rest, ok := strings.Cut(v, "/")
	name, port, _ := strings.Cut(rest, ":")
	if !ok || ns == "" || name == "" {
		return Source{}, fmt.Errorf("--prometheus-service %q: want NAMESPACE/NAME[:PORT]", v)
	}
	if port == "" {
		port = "9090"
	}
	return Source{Namespace: ns, Service: name, Port: port}, nil
}

// selectors are the labels Prometheus Services carry as the usual installers label them: Istio's
// addon and the Prometheus Helm chart, the Prometheus operator (and kube-prometheus-stack).
var selectors = []string{"app.kubernetes.io/name=prometheus", "operated-prometheus=true", "app=kube-prometheus-stack-prometheus"}

// Find locates Prometheus: the prometheus Service of the Istio namespace (Istio's addon), else the
// first Service labelled as the usual installers label theirs. nil without error: none found.
func Find(ctx context.Context, c kubernetes.Interface, istioNS string) (*Source, error) {
	svc, err := c.CoreV1().Services(istioNS).Get(ctx, "prometheus", metav1.GetOptions{})
	if err == nil {
		return &Source{Namespace: istioNS, Service: svc.Name, Port: portOf(svc.Spec.Ports)}, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, err
	}
	for _, sel := range selectors {
		l, err := c.CoreV1().Services("").List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return nil, err
		}
		for _, s := range l.Items {
			return &Source{Namespace: s.Namespace, Service: s.Name, Port: portOf(s.Spec.Ports)}, nil
		}
	}
	return nil, nil
}

// portOf is the Service's port named http or web (the addon's and the operator's), else its first.
func portOf(ports []corev1.ServicePort) string {
	for _, p := range ports {
		if p.Name == "http" || p.Name == "web" || p.Name == "http-web" {
			return strconv.Itoa(int(p.Port))
		}
	}
	if len(ports) > 0 {
		return strconv.Itoa(int(ports[0].Port))
	}
	return "9090"
}

// Client queries one Prometheus.
type Client struct {
	Kube    kubernetes.Interface
	Source  Source
	HTTP    *http.Client
	queries atomic.Int64
	bytes   atomic.Int64
}

// Queries is how many queries the client sent.
func (c *Client) Queries() int { return int(c.queries.Load()) }

// Bytes is how many bytes of answers the client read (what the gates cost Prometheus to send).
func (c *Client) Bytes() int64 { return c.bytes.Load() }

// Sample is one series of an instant vector.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query runs an instant query at t.
func (c *Client) Query(ctx context.Context, q string, t time.Time) ([]Sample, error) {
	c.queries.Add(1)
	params := map[string]string{"query": q, "time": strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)}
	var body []byte
	var err error
	if c.Source.URL != "" {
		body, err = c.get(ctx, params)
	} else {
		body, err = c.Kube.CoreV1().Services(c.Source.Namespace).ProxyGet("http", c.Source.Service, c.Source.Port, "api/v1/query", params).DoRaw(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("prometheus (%s): %s: %w", c.Source, q, err)
	}
	c.bytes.Add(int64(len(body)))
	var resp struct {
		Status, Error, ErrorType string
		Data                     struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		}
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("prometheus (%s): not a Prometheus answer: %w", c.Source, err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("prometheus (%s): %s: %s %s", c.Source, q, resp.ErrorType, resp.Error)
	}
	out := make([]Sample, 0, len(resp.Data.Result))
	for _, r := range resp.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			continue
		}
		out = append(out, Sample{Labels: r.Metric, Value: v})
	}
	return out, nil
}

func (c *Client) get(ctx context.Context, params map[string]string) ([]byte, error) {
	v := url.Values{}
	for k, p := range params {
		v.Set(k, p)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.Source.URL, "/")+"/api/v1/query?"+v.Encode(), nil)
	if err != nil {
		return nil, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 && len(b) == 0 {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return b, nil
}
