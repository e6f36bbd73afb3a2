//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// docRoles are the YAML blocks of docs/rbac.md, in order: read, engine; team-a's; the runbook's.
func docRoles(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "rbac.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, part := range strings.Split(string(b), "```yaml\n")[1:] {
		block, _, ok := strings.Cut(part, "```")
		if !ok {
			t.Fatal("docs/rbac.md: a yaml block without its end")
		}
		out = append(out, block)
	}
	if len(out) != 3 {
		t.Fatalf("docs/rbac.md has %d yaml blocks, want 3 (read and engine, team-a, runbook)", len(out))
	}
	return out
}

// saKubeconfig is a kubeconfig for ServiceAccount ns/name (a token, no client certificate), for the
// test bed's apiserver.
func saKubeconfig(t *testing.T, ns, name string) string {
	t.Helper()
	token := strings.TrimSpace(kubectl(t, "-n", ns, "create", "token", name, "--duration=1h"))
	server := kubectl(t, "config", "view", "--raw", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
	ca := kubectl(t, "config", "view", "--raw", "--minify", "-o", "jsonpath={.clusters[0].cluster.certificate-authority-data}")
	caLine := "certificate-authority-data: " + ca
	if ca == "" {
		caLine = "certificate-authority: " + kubectl(t, "config", "view", "--raw", "--minify", "-o", "jsonpath={.clusters[0].cluster.certificate-authority}")
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: bed, cluster: {server: %q, %s}}]
users: [{name: %s, user: {token: %q}}]
contexts: [{name: %s, context: {cluster: bed, user: %s}}]
current-context: %s
`, server, caLine, name, token, name, name, name)
	f := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// testRBACDocumentedRolesRunMigrateNs: docs/rbac.md's Roles, applied as written and bound to a
// ServiceAccount of team-a, run status, migrate-ns of team-a and its undo; and nothing more: another
// team's namespace is refused (77, unchanged), and neither the mesh's CA nor a token of istiod's
// ServiceAccount is within reach, while the engine's own key Secret and the default token are.
func testRBACDocumentedRolesRunMigrateNs(t *testing.T) {
	ensureNewRevision(t)
	const ns, sa = "team-a", "team-a-operator"
	workloadNamespaces(t, "1s", []string{"web"}, ns)
	eventually(t, 60*time.Second, ns+" on 1-30", func() error { return checkProxiesOnInjectedRevision(t, ns) })
	if r := run(t, filepath.Join(binDir, "kubectl"), "-n", "istio-system", "get", "secret", "istio-upgrade-journal-key"); r.code != 0 {
		t.Fatalf("the journal key must exist (earlier scenarios wrote entries): %s", r.stderr)
	}

	blocks := docRoles(t)
	for i, b := range blocks {
		f := filepath.Join(t.TempDir(), fmt.Sprintf("roles-%d.yaml", i))
		if err := os.WriteFile(f, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
		if i == 2 { // the whole runbook's: valid as written
			kubectl(t, "apply", "--dry-run=server", "-f", f)
			continue
		}
		kubectl(t, "apply", "-f", f)
	}
	kubectl(t, "-n", ns, "create", "serviceaccount", sa)
	subject := ns + ":" + sa
	kubectl(t, "create", "clusterrolebinding", "e2e-team-a-read", "--clusterrole=istio-upgrade-read", "--serviceaccount="+subject)
	kubectl(t, "create", "clusterrolebinding", "e2e-team-a-migrate", "--clusterrole=istio-upgrade-migrate-team-a", "--serviceaccount="+subject)
	kubectl(t, "-n", "istio-system", "create", "rolebinding", "e2e-team-a-engine", "--role=istio-upgrade-engine", "--serviceaccount="+subject)
	kubectl(t, "-n", ns, "create", "rolebinding", "e2e-team-a-migrate-ns", "--role=istio-upgrade-migrate-ns", "--serviceaccount="+subject)
	t.Cleanup(func() {
		k := filepath.Join(binDir, "kubectl")
		run(t, k, "delete", "clusterrolebinding", "e2e-team-a-read", "e2e-team-a-migrate", "--ignore-not-found")
		run(t, k, "-n", "istio-system", "delete", "rolebinding", "e2e-team-a-engine", "--ignore-not-found")
		run(t, k, "delete", "clusterrole", "istio-upgrade-read", "istio-upgrade-migrate-team-a", "--ignore-not-found")
		run(t, k, "-n", "istio-system", "delete", "role", "istio-upgrade-engine", "--ignore-not-found")
	})

	// What the Roles grant and withhold, as the apiserver answers for the ServiceAccount.
	as := "--as=system:serviceaccount:" + subject
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "secrets/istio-ca-secret", "-n", "istio-system"}, "no"},
		{[]string{"get", "secrets/cacerts", "-n", "istio-system"}, "no"},
		{[]string{"list", "secrets", "-n", "istio-system"}, "no"},
		{[]string{"create", "serviceaccounts/istiod", "--subresource=token", "-n", "istio-system"}, "no"},
		{[]string{"patch", "namespaces/bookinfo"}, "no"},
		{[]string{"get", "secrets/istio-upgrade-journal-key", "-n", "istio-system"}, "yes"},
		{[]string{"create", "serviceaccounts/default", "--subresource=token", "-n", "istio-system"}, "yes"},
		{[]string{"patch", "namespaces/" + ns}, "yes"},
	} {
		r := run(t, filepath.Join(binDir, "kubectl"), append(append([]string{"auth", "can-i"}, c.args...), as)...)
		if got := strings.TrimSpace(r.stdout); got != c.want {
			t.Errorf("can-i %v: %q, want %q", c.args, got, c.want)
		}
	}

	kcfg := saKubeconfig(t, ns, sa)
	if r := plugin(t, "status", "--kubeconfig", kcfg, "-o", "json"); r.code != 0 {
		t.Fatalf("status with the documented Roles: exit %d %s", r.code, r.stderr)
	}
	// Another team's namespace: refused before anything changes, naming what is missing.
	before := kubectl(t, "get", "namespace", "bookinfo", "-o", "jsonpath={.metadata.labels}")
	if r := plugin(t, "migrate-ns", "bookinfo", "--to", "1-31", "--metrics=false", "--analysis=false", "-y", "--kubeconfig", kcfg); r.code != 77 ||
		!strings.Contains(r.stderr, "patch namespaces bookinfo") {
		t.Fatalf("migrate-ns of another team's namespace: exit %d, want 77 naming patch namespaces bookinfo\n%s", r.code, r.stderr)
	}
	if after := kubectl(t, "get", "namespace", "bookinfo", "-o", "jsonpath={.metadata.labels}"); after != before {
		t.Errorf("the refused step changed bookinfo's labels: %s -> %s", before, after)
	}
	// Its own: moved, gated, undone, all with the documented Roles only.
	if r := plugin(t, "migrate-ns", ns, "--to", "1-31", "--metrics=false", "--analysis=false", "-y", "--kubeconfig", kcfg); r.code != 0 {
		t.Fatalf("migrate-ns %s with the documented Roles: exit %d\n%s", ns, r.code, r.stderr)
	}
	for p, rev := range injectedPods(t, ns) {
		if rev != "1-31" {
			t.Errorf("%s on %s after migrate-ns", p, rev)
		}
	}
	if r := plugin(t, "undo", "-y", "--kubeconfig", kcfg); r.code != 0 {
		t.Fatalf("undo with the documented Roles: exit %d\n%s", r.code, r.stderr)
	}
	eventually(t, 90*time.Second, ns+" back on 1-30", func() error {
		for p, rev := range injectedPods(t, ns) {
			if rev != "1-30" {
				return fmt.Errorf("%s on %s", p, rev)
			}
		}
		return nil
	})
}
