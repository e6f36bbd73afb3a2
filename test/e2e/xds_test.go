//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testXDSAddressModes: the test bed's istiods check debug-endpoint auth as a real istiod does, so
// --xds-address over TLS with our TokenRequest token lists the proxies, and tokenless plaintext is refused.
func testXDSAddressModes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testbedDir, "istiod-ports.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ports map[string]struct{ GRPC, SecureGRPC int }
	if err := json.Unmarshal(raw, &ports); err != nil {
		t.Fatal(err)
	}
	p := ports["1-30"]
	d := status(t, "--xds-address", fmt.Sprintf("127.0.0.1:%d", p.SecureGRPC))
	if len(d.Proxies) < 20 || len(d.Warnings) != 0 {
		t.Errorf("TLS + token: %d proxies, warnings %v", len(d.Proxies), d.Warnings)
	}
	r := plugin(t, "status", "--proxies", "-o", "json", "--xds-address", fmt.Sprintf("127.0.0.1:%d", p.GRPC), "--plaintext")
	if r.code != 0 || !strings.Contains(r.stderr, "authentication required") {
		t.Errorf("plaintext without a token: exit %d, stderr %q", r.code, r.stderr)
	}
	var doc statusDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Proxies) != 0 || len(doc.Warnings) != 1 {
		t.Errorf("plaintext document: %v %d proxies %v", err, len(doc.Proxies), doc.Warnings)
	}
	if r := plugin(t, "status", "--plaintext"); r.code != 64 {
		t.Errorf("--plaintext without --xds-address: exit %d", r.code)
	}

	// Something at --xds-address whose certificate is not istiod's (the apiserver's) gets no token: the
	// check against the mesh root fails first, and says so.
	server := strings.TrimPrefix(kubectl(t, "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"), "https://")
	r = plugin(t, "status", "--proxies", "-o", "json", "--xds-address", server)
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Proxies) != 0 || !strings.Contains(strings.Join(doc.Warnings, " "), "mesh root") {
		t.Errorf("a non-istiod certificate: exit %d, %d proxies, warnings %v", r.code, len(doc.Proxies), doc.Warnings)
	}
	// --insecure-xds skips the check, with a warning.
	r = plugin(t, "status", "--proxies", "-o", "json", "--xds-address", fmt.Sprintf("127.0.0.1:%d", p.SecureGRPC), "--insecure-xds")
	if r.code != 0 || !strings.Contains(r.stderr, "not verified") {
		t.Errorf("--insecure-xds: exit %d, stderr %q", r.code, r.stderr)
	}
}
