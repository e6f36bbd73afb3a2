package helm

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"io"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"

	"k8s.io/client-go/kubernetes/fake"
)

func TestListReadsIstioReleases(t *testing.T) {
	k := fake.NewClientset()
	for _, r := range []struct {
		rel    Release
		values map[string]any
	}{
		{Release{Name: "istio-base", Namespace: "istio-system", Chart: "base", Version: "1.30.0"}, map[string]any{"defaultRevision": "default"}},
		{Release{Name: "istiod", Namespace: "istio-system", Chart: "istiod", Version: "1.30.0"}, nil},
		{Release{Name: "istiod-canary", Namespace: "istio-system", Chart: "istiod", Version: "1.31.0"}, map[string]any{"revision": "canary"}},
		{Release{Name: "istio-ingress", Namespace: "istio-ingress", Chart: "gateway", Version: "1.30.0"}, nil},
		{Release{Name: "postgres", Namespace: "db", Chart: "postgresql", Version: "12.0.0"}, nil},
	} {
		if err := Record(k, r.rel, r.values); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := List(k, "istio-system", "istio-ingress", "db")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("want Istio's 4 releases, not other charts: %+v", got)
	}
	by := map[string]Release{}
	for _, r := range got {
		by[r.Name] = r
	}
	if b := by["istio-base"]; !b.Base() || b.DefaultRevision != "default" {
		t.Errorf("base: %+v", b)
	}
	if d := by["istiod"]; !d.Istiod() || d.IstioRevision != "" {
		t.Errorf("non-revisioned istiod: %+v", d)
	}
	if d := by["istiod-canary"]; d.IstioRevision != "canary" || d.Version != "1.31.0" {
		t.Errorf("canary: %+v", d)
	}
	if g := by["istio-ingress"]; !g.Gateway() || g.Namespace != "istio-ingress" {
		t.Errorf("gateway: %+v", g)
	}
	if only, _, _ := List(k, "istio-ingress"); len(only) != 1 {
		t.Errorf("one namespace: %+v", only)
	}
	if none, _, _ := List(k); len(none) != 0 {
		t.Errorf("no namespace named, yet releases read: %+v", none)
	}
}

// A Secret labelled as a deployed release whose payload decompresses past MaxRelease is left out and
// named, never decoded whole; a real release beside it is read.
func TestListSkipsOversizedReleases(t *testing.T) {
	k := fake.NewClientset()
	if err := Record(k, Release{Name: "istiod", Namespace: "istio-system", Chart: "istiod", Version: "1.30.0",
		Objects: []Object{{Kind: "Deployment", Name: "istiod"}, {Kind: "ValidatingWebhookConfiguration", Name: "v", Keep: true}}}, nil); err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	if _, err := w.Write(bytes.Repeat([]byte{' '}, MaxRelease+1)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	bomb := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sh.helm.release.v1.bomb.v1", Namespace: "istio-system",
		Labels: map[string]string{"owner": "helm", "status": "deployed", "name": "bomb", "version": "1"}},
		Data: map[string][]byte{"release": []byte(base64.StdEncoding.EncodeToString(z.Bytes()))}}
	if _, err := k.CoreV1().Secrets("istio-system").Create(context.Background(), bomb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, skipped, err := List(k, "istio-system")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "istiod" || len(skipped) != 1 || !strings.Contains(skipped[0], "bomb") {
		t.Fatalf("releases %+v, skipped %q: want istiod read and the bomb skipped", got, skipped)
	}
	want := []Object{{Kind: "Deployment", Namespace: "istio-system", Name: "istiod"}, {Kind: "ValidatingWebhookConfiguration", Name: "v", Keep: true}}
	if !reflect.DeepEqual(got[0].Objects, want) || !strings.HasPrefix(got[0].Digest, "sha256:") {
		t.Errorf("manifest %+v digest %q, want %+v", got[0].Objects, got[0].Digest, want)
	}
}

// A helm action journaled before it started and never reported done (the step was killed): undo
// rolls it back when the release shows it ran, and leaves the release alone when it never did.
func TestUndoSettlesPendingActions(t *testing.T) {
	k := fake.NewClientset()
	for _, name := range []string{"ran", "never"} {
		if err := Record(k, Release{Name: name, Namespace: "istio-system", Chart: "base", Version: "1.0.0"}, map[string]any{"defaultRevision": "1-30"}); err != nil {
			t.Fatal(err)
		}
	}
	acts := FakeActions(k)
	if _, _, err := acts.SetValue(context.Background(), "istio-system", "ran", "defaultRevision", "1-31", ""); err != nil {
		t.Fatal(err)
	}
	hs := []journal.HelmAction{
		{Release: "ran", Namespace: "istio-system", Action: journal.HelmUpgrade, Set: "defaultRevision=1-31", From: 1, Pending: true},
		{Release: "never", Namespace: "istio-system", Action: journal.HelmUpgrade, Set: "defaultRevision=1-31", From: 1, Pending: true},
	}
	done, err := acts.UndoAll(hs, false, nil, cli.NewProgress(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || done[0].Ref.Name != "ran" {
		t.Errorf("undid %+v, want only the action that ran", done)
	}
	for name, want := range map[string]string{"ran": "1 superseded, 2 superseded, 3 deployed", "never": "1 deployed"} {
		if h, _ := History(k, "istio-system", name); strings.Join(h, ", ") != want {
			t.Errorf("%s: history %v, want %s", name, h, want)
		}
	}
}
