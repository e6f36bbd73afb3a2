package main

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// Every connection flag the plugin passes on (kube.FlagArgs) is one the companion reads, to the same effect.
func TestClientConfigReadsThePluginsFlags(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://a.example:6443"}}, {name: d, cluster: {server: "https://d.example:6443"}}]
users: [{name: u, user: {token: t0}}]
contexts: [{name: ctx-x, context: {cluster: c, user: u}}, {name: ctx-y, context: {cluster: d, user: u}}]
current-context: ctx-x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := genericclioptions.NewConfigFlags(true)
	set := func(p **string, v string) { *p = &v }
	set(&f.KubeConfig, kc)
	set(&f.Context, "ctx-y")
	set(&f.BearerToken, "t1")
	set(&f.Impersonate, "alice")
	set(&f.ImpersonateUID, "42")
	set(&f.Timeout, "7s")
	set(&f.TLSServerName, "tls.example")
	groups := []string{"g1", "g2"}
	f.ImpersonateGroup = &groups
	args := kube.FlagArgs(f)
	cc, err := clientConfig(args)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	rc, err := cc.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != "https://d.example:6443" || rc.BearerToken != "t1" || rc.Impersonate.UserName != "alice" || rc.Impersonate.UID != "42" ||
		len(rc.Impersonate.Groups) != 2 || rc.Timeout.String() != "7s" || rc.TLSClientConfig.ServerName != "tls.example" {
		t.Errorf("from %v: %+v", args, rc)
	}
	if _, err := clientConfig([]string{"--no-such-flag=1"}); err == nil {
		t.Error("an unknown flag is accepted")
	}
}
