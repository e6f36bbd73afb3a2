//go:build e2e

package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/test/traffic"
)

// requestsSent adds up the requests of every loop that asserted zero failures, for the suite's total.
var requestsSent int

// ingress is the bed's ingress load balancer (TESTBED_INGRESS in `make testbed-env`).
func ingress() string {
	if a := os.Getenv("TESTBED_INGRESS"); a != "" {
		return a
	}
	return "127.0.0.1:20080"
}

// bookinfoLoop sends seed 000's request, Host bookinfo.example.com and /productpage, through the
// ingress load balancer, the gateway and to productpage, rps per second until stopped.
func bookinfoLoop(rps int) *traffic.Loop {
	return traffic.Start(context.Background(), traffic.Config{URL: "http://" + ingress() + "/productpage", Host: "bookinfo.example.com",
		RPS: rps, Duration: 10 * time.Minute})
}

// noFailures stops a loop and fails the test on any failed request, or on fewer than min sent.
func noFailures(t *testing.T, what string, l *traffic.Loop, min int) traffic.Summary {
	t.Helper()
	s := l.Stop()
	t.Logf("traffic through %s: %d sent, %d ok, %d failed %v (longest failing run %d) in %.0fs", what, s.Sent, s.OK, s.Failed, s.Causes, s.LongestFailureRun, s.Seconds)
	if s.Failed > 0 {
		t.Errorf("%s: %d of %d requests failed: %v", what, s.Failed, s.Sent, s.Causes)
	} else {
		requestsSent += s.Sent
	}
	if s.Sent < min {
		t.Errorf("%s: only %d requests sent, want at least %d", what, s.Sent, min)
	}
	return s
}

// testTrafficReachesProductpage: the request loop gets through the bed's load balancer, the ingress
// gateway's routes from istiod and productpage's endpoints; and, as a negative control, it fails once
// the serving gateway is scaled to 0 by hand with no canary beside it.
func testTrafficReachesProductpage(t *testing.T) {
	eventually(t, 30*time.Second, "a first request through the ingress", func() error {
		if s := traffic.Run(context.Background(), traffic.Config{URL: "http://" + ingress() + "/productpage", Host: "bookinfo.example.com", RPS: 20, Max: 5}); s.Failed > 0 {
			return errorf("%v", s.Causes)
		}
		return nil
	})
	rest := traffic.Start(context.Background(), traffic.Config{URL: "http://" + ingress() + "/productpage", Host: "bookinfo.example.com", RPS: 100, Max: 300})
	time.Sleep(3500 * time.Millisecond)
	noFailures(t, "the fixtures at rest", rest, 300)
	// A route the gateway does not have is Envoy's 404.
	if s := traffic.Run(context.Background(), traffic.Config{URL: "http://" + ingress() + "/nowhere", Host: "bookinfo.example.com", RPS: 50, Max: 10}); s.Causes["404/no-route"] != 10 {
		t.Errorf("a path with no route: %+v", s)
	}

	const ns, gw = "istio-ingress", "istio-ingressgateway"
	l := bookinfoLoop(50)
	time.Sleep(time.Second)
	kubectl(t, "-n", ns, "scale", "deployment", gw, "--replicas=0")
	time.Sleep(4 * time.Second)
	kubectl(t, "-n", ns, "scale", "deployment", gw, "--replicas=2")
	s := l.Stop()
	t.Logf("negative control: %d sent, %d failed %v", s.Sent, s.Failed, s.Causes)
	if s.Failed == 0 {
		t.Errorf("scaling the only gateway to 0 failed no request: the loop cannot see a drop")
	}
	kubectl(t, "-n", ns, "rollout", "status", "deployment", gw, "--timeout=60s")
	eventually(t, 30*time.Second, "traffic back", func() error {
		if s := traffic.Run(context.Background(), traffic.Config{URL: "http://" + ingress() + "/productpage", Host: "bookinfo.example.com", RPS: 20, Max: 20}); s.Failed > 0 {
			return errorf("%v", s.Causes)
		}
		return nil
	})
}
