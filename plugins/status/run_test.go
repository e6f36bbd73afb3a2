package status

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step/steptest"
)

func run(t *testing.T, b *steptest.Bed, args ...string) (string, error) {
	t.Helper()
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	cmd := NewCommand(b.G, streams)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	if c := b.Changes(); len(c) != 0 {
		t.Errorf("status wrote %v: it only reads", c)
	}
	return out.String(), err
}

// status --proxies asks every istiod of every revision: on a bed whose istiods answer syncz, each
// injected pod is listed once, SYNCED, with the revision that serves it.
func TestRunListsEveryProxyFromEveryIstiod(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	b.Live()
	out, err := run(t, b, "--proxies")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Proxies []struct {
			Pod, Namespace, Revision, State string
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := map[string]string{}
	for _, p := range doc.Proxies {
		got[p.Namespace+"/"+p.Pod] = p.Revision + " " + p.State
	}
	want := map[string]string{"shop/web-hash1-a": "1-30 SYNCED", "shop/web-hash1-b": "1-30 SYNCED",
		"istio-ingress/istio-ingressgateway-hash1-a": "1-30 SYNCED", "istio-ingress/istio-ingressgateway-hash1-b": "1-30 SYNCED"}
	if len(got) != len(want) {
		t.Errorf("proxies %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

// A namespace that does not exist is bad input (65), not an empty table.
func TestRunUnknownNamespace(t *testing.T) {
	b := steptest.New(t, steptest.Mesh()...)
	b.G.ConfigFlags.Namespace = ptrTo("nope")
	_, err := run(t, b)
	if cli.CodeOf(err) != cli.ExitBadInput || !strings.Contains(err.Error(), "nope") {
		t.Errorf("exit %d (%v), want 65 naming the namespace", cli.CodeOf(err), err)
	}
}

func ptrTo(s string) *string { return &s }
