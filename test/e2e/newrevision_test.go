//go:build e2e

package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// testNewRevisionInjects installs the new revision exactly as an operator would (the new istioctl),
// then restarts a Deployment in a namespace labelled for it: the apiserver calls the NEW istiod's
// webhook, and the new pods' proxies show up on the new istiod.
// ensureNewRevision installs revision 1-31 with the new istioctl (make testbed-new-revision) once.
func ensureNewRevision(t *testing.T) {
	t.Helper()
	if revisionInstalled(status(t), "1-31") {
		return
	}
	cmd := exec.Command("make", "-C", "../..", "-s", "testbed-new-revision")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make testbed-new-revision: %v\n%s", err, out)
	}
}

func testNewRevisionInjects(t *testing.T) {
	ensureNewRevision(t)
	kubectl(t, "create", "namespace", "e2e-newrev")
	t.Cleanup(func() { run(t, binDir+"/kubectl", "delete", "namespace", "e2e-newrev", "--wait=false") })
	kubectl(t, "label", "namespace", "e2e-newrev", "istio.io/rev=1-30")
	kubectl(t, "-n", "e2e-newrev", "create", "deployment", "echo", "--image=registry.example/echo:1", "--replicas=2")
	kubectl(t, "-n", "e2e-newrev", "rollout", "status", "deployment/echo", "--timeout=90s")
	eventually(t, 60*time.Second, "echo on 1-30", func() error { return checkProxiesOnInjectedRevision(t, "e2e-newrev") })

	kubectl(t, "label", "namespace", "e2e-newrev", "istio.io/rev=1-31", "--overwrite")
	kubectl(t, "-n", "e2e-newrev", "rollout", "restart", "deployment/echo")
	kubectl(t, "-n", "e2e-newrev", "rollout", "status", "deployment/echo", "--timeout=90s")
	eventually(t, 60*time.Second, "echo moved to 1-31", func() error {
		pods := injectedPods(t, "e2e-newrev")
		for p, rev := range pods {
			if rev != "1-31" {
				return errorf("%s still injected by %s", p, rev)
			}
		}
		return checkProxiesOnInjectedRevision(t, "e2e-newrev")
	})
	d := status(t, "-n", "e2e-newrev")
	for _, p := range d.Proxies {
		if p.Version != "1.31.0" || !strings.HasPrefix(p.Istiod, "istiod-1-31-") {
			t.Errorf("proxy %s: version %s on %s, want 1.31.0 on istiod-1-31", p.Pod, p.Version, p.Istiod)
		}
	}
}
