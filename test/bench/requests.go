package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/metrics"
)

// ---- scenario 7: the request gate ----

const requestScenario = "7 request gate"

// requestGate times the request gate against a real fault: the fault knob makes details' pods on the
// new revision fail 20% of their requests (details carries the bed's call traffic from productpage),
// and migrate-ns moves details as its canary, gated on its requests (20 s checks). Per run: the time
// from the first new pod serving (the fault's start) to the gate's verdict, the requests that failed
// before the batch was moved back, and what one check cost Prometheus.
func (b *bench) requestGate(ctx context.Context, runs int) error {
	kubectl := b.bin + "/kubectl"
	if err := b.run(kubectl, "-n", "default", "create", "configmap", "testbed-faults",
		"--from-literal=rules=- {namespace: bookinfo, workload: details-v1, revision: "+b.revs[1]+", errorRate: 0.2}"); err != nil {
		return err
	}
	defer func() {
		_ = b.run(kubectl, "-n", "default", "delete", "configmap", "testbed-faults", "--ignore-not-found")
	}()
	prom := &metrics.Client{Kube: b.c.Kube, Source: metrics.Source{Namespace: "istio-system", Service: "prometheus", Port: "9090"}}
	var verdict, failed, queries, bytesPerCheck []float64
	for i := 0; i < runs; i++ {
		time.Sleep(30 * time.Second) // a baseline on the old proxies, scraped twice
		start := time.Now()
		out, served, failedAt, err := b.gatedCanary(ctx)
		if err != nil {
			return err
		}
		var doc struct {
			Details struct {
				Gates []struct {
					Requests *struct {
						Verdict string
						Queries int
						Bytes   int64
						Checks  []json.RawMessage
					}
				}
			}
		}
		if err := json.Unmarshal(out, &doc); err != nil || len(doc.Details.Gates) != 1 || doc.Details.Gates[0].Requests == nil || doc.Details.Gates[0].Requests.Verdict != "fail" {
			return fmt.Errorf("the gate did not fail on the fault (%v): %.400s", err, out)
		}
		rq := doc.Details.Gates[0].Requests
		time.Sleep(35 * time.Second) // the last failures scraped
		window := time.Since(start).Round(time.Second) + 5*time.Second
		q := fmt.Sprintf(`sum(increase(istio_requests_total{reporter="source",destination_workload_namespace="bookinfo",destination_workload="details-v1",response_code=~"5.."}[%ds]))`, int(window.Seconds()))
		s, err := prom.Query(ctx, q, time.Now())
		if err != nil {
			return err
		}
		n := 0.0
		if len(s) > 0 {
			n = s[0].Value
		}
		verdict = append(verdict, failedAt.Sub(served).Seconds())
		failed = append(failed, n)
		queries = append(queries, float64(rq.Queries)/float64(len(rq.Checks)))
		bytesPerCheck = append(bytesPerCheck, float64(rq.Bytes)/float64(len(rq.Checks)))
		logf("  run %d: verdict %.1f s after the first new pod served, %.0f requests failed, %d queries and %d bytes over %d checks",
			i+1, verdict[i], n, rq.Queries, rq.Bytes, len(rq.Checks))
	}
	b.add(requestScenario, "time from the fault's start (first new pod serving) to the gate's verdict (`--analysis-interval 20s`)", secs(median(verdict)), spread(verdict), "20% of details' requests failing on the new revision, 4 requests/s of call traffic")
	b.add(requestScenario, "requests failed before the batch was back on the old revision", fmt.Sprintf("%.0f", median(failed)), spreadScaled(failed, 1, ""), "as its callers' sidecars counted them (reporter source)")
	b.add(requestScenario, "queries one gate check sends to Prometheus", fmt.Sprintf("%.0f", median(queries)), "", "3 per view and window, 2 per view split by proxy version")
	b.add(requestScenario, "bytes of answers one gate check reads", fmt.Sprintf("%.1f KiB", median(bytesPerCheck)/1024), "", "bookinfo: 4 workloads")
	return nil
}

// gatedCanary runs migrate-ns of bookinfo with details as the canary, moved back on failure, and
// returns its JSON, when the first details pod on the new revision served (Ready: the fault's start),
// and when the step printed the failed gate.
func (b *bench) gatedCanary(ctx context.Context) ([]byte, time.Time, time.Time, error) {
	var zero time.Time
	cmd := exec.Command(b.plugin(), "migrate-ns", "bookinfo", "--to", b.revs[1], "--canary", "deploy/details-v1", "--rollback-on-failure",
		"--analysis=false", "--analysis-interval=20s", "--analysis-count=3", "--metrics-baseline=1m", "-y", "-o", "json")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+b.kubeconfig, "PATH="+b.bin+":"+os.Getenv("PATH"))
	var stdout, log bytes.Buffer
	cmd.Stdout = &stdout
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, zero, zero, err
	}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		return nil, zero, zero, err
	}
	pw.Close()
	wctx, stop := context.WithCancel(ctx)
	served := make(chan time.Time, 1)
	go func() { served <- b.firstServing(wctx, "bookinfo", "app=details", b.revs[1]) }()
	var failedAt time.Time
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if failedAt.IsZero() && strings.Contains(sc.Text(), "gate FAILED") {
			failedAt = time.Now()
		}
	}
	err = cmd.Wait()
	stop()
	first := <-served
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 75 || failedAt.IsZero() || first.IsZero() {
		return nil, zero, zero, fmt.Errorf("migrate-ns with the fault: %v (want exit 75, a failed gate and a new pod serving): %s", err, lastLines(log.String(), 5))
	}
	return stdout.Bytes(), first, failedAt, nil
}

// firstServing watches selector's pods until ctx ends and returns when the first one on rev became
// Ready (its condition's time), zero when none did.
func (b *bench) firstServing(ctx context.Context, ns, selector, rev string) time.Time {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		pods, err := b.c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			for _, p := range pods.Items {
				if !strings.Contains(p.Annotations["sidecar.istio.io/status"], `"revision":"`+rev+`"`) {
					continue
				}
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						return c.LastTransitionTime.Time
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}
		case <-tick.C:
		}
	}
}
