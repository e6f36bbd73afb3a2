//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGatewayAPIGatewayBlocksCleanup: with the upstream Gateway API CRDs on the bed, Istio's own bookinfo
// Gateway (class istio) pinned to 1-30 gets its Deployment from istiod 1-30, injected and SYNCED there;
// cleanup of 1-30 names it as a blocker and deletes nothing while it stands.
func TestGatewayAPIGatewayBlocksCleanup(t *testing.T) {
	ensureNewRevision(t)
	const ns = "e2e-gwapi"
	kubectl(t, "create", "namespace", ns)
	t.Cleanup(func() { run(t, binDir+"/kubectl", "delete", "namespace", ns, "--wait=false") })
	kubectl(t, "-n", ns, "apply", "-f", filepath.Join(testbedDir, "istio-old-src", "samples", "bookinfo", "gateway-api", "bookinfo-gateway.yaml"))
	// Unlabelled, in an unlabelled namespace, it follows the default tag: precheck warns and names the pin.
	if rep, _ := precheck(t); !has(rep, "GATEWAY_FOLLOWS_TAG", "gateway/"+ns+"/bookinfo-gateway") {
		t.Errorf("precheck does not warn that the Gateway follows a tag: %+v", rep.Findings)
	}
	// tag-move's preview names it as rolling the moment the default tag moves.
	var preview struct {
		Details struct {
			BlastRadius struct {
				RollingNow []string `json:"rollingNow"`
			} `json:"blastRadius"`
		} `json:"details"`
	}
	mustJSON(t, plugin(t, "tag-move", "default", "--to", "1-31", "--overwrite", "--dry-run=client", "-o", "json"), &preview)
	if rn := strings.Join(preview.Details.BlastRadius.RollingNow, "\n"); !strings.Contains(rn, "gateway/"+ns+"/bookinfo-gateway ") {
		t.Errorf("tag-move default's preview does not name the Gateway as rolling now: %q", rn)
	}
	// So does migrate-ns's, for the namespace it follows.
	var mig struct {
		Details struct {
			Plan struct {
				RollingNow []string `json:"rollingNow"`
			} `json:"plan"`
		} `json:"details"`
	}
	mustJSON(t, plugin(t, "migrate-ns", ns, "--to", "1-31", "--dry-run=client", "-o", "json"), &mig)
	if rn := strings.Join(mig.Details.Plan.RollingNow, "\n"); !strings.Contains(rn, "gateway/"+ns+"/bookinfo-gateway ") {
		t.Errorf("migrate-ns's preview does not name the Gateway as rolling now: %q", rn)
	}
	kubectl(t, "-n", ns, "label", "gateway.gateway.networking.k8s.io", "bookinfo-gateway", "istio.io/rev=1-30")

	// istiod 1-30 deploys the gateway (its proxy rendered by istiod, not injected); the bed's router for
	// it is SYNCED on istiod 1-30 in our status and in the real istioctl.
	eventually(t, 90*time.Second, "bookinfo-gateway-istio SYNCED on 1-30", func() error {
		pods := strings.Fields(kubectl(t, "-n", ns, "get", "pods", "-l", "gateway.networking.k8s.io/gateway-name=bookinfo-gateway",
			"--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}"))
		if len(pods) == 0 {
			return fmt.Errorf("no gateway pod running yet")
		}
		ours := map[string]string{}
		for _, p := range status(t, "-n", ns).Proxies {
			if p.State == "SYNCED" {
				ours[p.Pod] = p.Revision
			}
		}
		real, err := istioctlProxies(t, "istioctl-old", "1-30")
		if err != nil {
			return err
		}
		for _, p := range pods {
			if ours[p] != "1-30" {
				return fmt.Errorf("status --proxies: %s on %q", p, ours[p])
			}
			if !strings.HasPrefix(real[p+"."+ns], "istiod-1-30-") {
				return fmt.Errorf("istioctl proxy-status: %s on %q", p, real[p+"."+ns])
			}
		}
		return nil
	})

	var listed bool
	for _, g := range status(t, "-n", ns).Gateways {
		if g.Name == "bookinfo-gateway-istio" {
			listed = g.Revision == "1-30" && g.GatewayAPI == ns+"/bookinfo-gateway"
		}
	}
	if !listed {
		t.Errorf("status does not list bookinfo-gateway-istio on 1-30 for Gateway %s/bookinfo-gateway", ns)
	}

	istiodRV := func() string {
		return kubectl(t, "-n", "istio-system", "get", "deployment", "istiod-1-30", "-o", "jsonpath={.metadata.resourceVersion}")
	}
	rv := istiodRV()
	res, r := cleanup(t, "-y")
	if r.code != 66 {
		t.Fatalf("cleanup with a Gateway on 1-30: exit %d, want 66", r.code)
	}
	var named bool
	for _, b := range res.Details.Blockers {
		if strings.Contains(b.Object, ns+"/bookinfo-gateway") {
			named = true
			if b.Fix == "" {
				t.Errorf("the Gateway's blocker has no fix: %+v", b)
			}
		}
	}
	if !named {
		t.Errorf("cleanup's blockers do not name the Gateway: %+v", res.Details.Blockers)
	}
	if istiodRV() != rv {
		t.Error("a refused cleanup changed istiod-1-30")
	}
}
