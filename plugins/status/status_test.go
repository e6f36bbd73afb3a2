package status

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/golden"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// snapshot loads the mesh package's golden snapshot: a cluster mid-upgrade with two revisions.
func snapshot(t *testing.T) *mesh.Snapshot {
	t.Helper()
	b, err := os.ReadFile("../../pkg/mesh/testdata/snapshot.json")
	if err != nil {
		t.Fatal(err)
	}
	s := &mesh.Snapshot{}
	if err := json.Unmarshal(b, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStatusTableGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTables(&b, snapshot(t), true, true); err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "status.txt", b.Bytes())
}

func TestStatusDocument(t *testing.T) {
	var b bytes.Buffer
	if err := cli.WriteDocument(&b, cli.OutputJSON, cli.NewStatusDocument(snapshot(t))); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("status -o json is not one JSON document: %v", err)
	}
	if doc["apiVersion"] != cli.APIVersion || doc["kind"] != "MeshStatus" || doc["revisions"] == nil || doc["proxies"] == nil {
		t.Errorf("document head: %v %v", doc["apiVersion"], doc["kind"])
	}
	golden.Assert(t, "status.json", b.Bytes())
}

func TestSummary(t *testing.T) {
	want := "2 revisions, 2 tags, 4 namespaces injected, 2 workloads need restart; 7 proxies: 6 on 1-30, 1 on 1-31, 1 not synced"
	if got := mesh.Summary(snapshot(t)); got != want {
		t.Errorf("Summary = %q\nwant      %q", got, want)
	}
}
