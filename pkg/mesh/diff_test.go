package mesh

import (
	"encoding/json"
	"testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/golden"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
)

// afterMigration is midUpgrade after `moved` finished restarting, the canary tag moved back to 1-30,
// and `legacy` was relabelled to istio.io/rev=1-31 (not restarted yet).
func afterMigration() Inputs {
	in := midUpgrade()
	in.MutatingWebhooks[3] = tagWebhook("canary", "1-30")
	in.Namespaces[0] = ns("legacy", map[string]string{istio.LabelRev: "1-31"})
	in.Pods[3] = pod("moved", "api", "c", "1-31")
	in.Syncz[0].Proxies = append([]istio.ProxySync{}, in.Syncz[0].Proxies[0], in.Syncz[0].Proxies[1], in.Syncz[0].Proxies[3], in.Syncz[0].Proxies[4], in.Syncz[0].Proxies[5])
	in.Syncz[1].Proxies = append(in.Syncz[1].Proxies, proxySync("api-hash1-c.moved", "1.31.0", istio.StateSynced))
	in.IstiodDeployments[1].Status.ReadyReplicas = 0
	return in
}

func TestDiff(t *testing.T) {
	d := Compare(Build(midUpgrade()), Build(afterMigration()))
	if len(d.Proxies) != 2 || d.Proxies[0].Pod != "api-hash1-b" || d.Proxies[0].Change != Removed || d.Proxies[1].Change != Added {
		t.Errorf("proxies: %+v", d.Proxies)
	}
	if len(d.Groups) != 1 || d.Groups[0].Before != "1×1-30@1.30.0/SYNCED,1×1-31@1.31.0/SYNCED" || d.Groups[0].After != "2×1-31@1.31.0/SYNCED" {
		t.Errorf("groups: %+v", d.Groups)
	}
	if len(d.Tags) != 1 || d.Tags[0].Name != "canary" || d.Tags[0].BeforeRevision != "1-31" || d.Tags[0].AfterRevision != "1-30" {
		t.Errorf("tags: %+v", d.Tags)
	}
	// legacy was relabelled; tagged now resolves elsewhere because its tag moved.
	if len(d.Namespaces) != 2 || d.Namespaces[0].Name != "legacy" || d.Namespaces[1].Name != "tagged" || d.Namespaces[1].AfterRevision != "1-30" {
		t.Errorf("namespaces: %+v", d.Namespaces)
	}
	if len(d.Revisions) != 1 || d.Revisions[0].Change != Changed {
		t.Errorf("revisions: %+v", d.Revisions)
	}
	b, _ := json.MarshalIndent(d, "", "  ")
	golden.Assert(t, "diff.json", append(b, '\n'))
}

func TestDiffNoChange(t *testing.T) {
	d := Compare(Build(midUpgrade()), Build(midUpgrade()))
	if !d.Empty() {
		t.Errorf("identical snapshots differ: %+v", d)
	}
}

func TestDiffProxyMoved(t *testing.T) {
	a := Build(midUpgrade())
	in := midUpgrade()
	// Same pod, now reported by the other istiod (reconnected after a tag move, or istiod restarted).
	in.Syncz[0].Proxies = in.Syncz[0].Proxies[1:]
	in.Syncz[1].Proxies = append(in.Syncz[1].Proxies, proxySync("web-hash1-a.legacy", "1.30.0", istio.StateSynced))
	d := Compare(a, Build(in))
	if len(d.Proxies) != 1 || d.Proxies[0].Change != Changed || d.Proxies[0].Before.Istiod != "istiod-1-30-abc" || d.Proxies[0].After.Istiod != "istiod-1-31-abc" {
		t.Errorf("moved proxy: %+v", d.Proxies)
	}
}

func TestDiffSkipsProxiesWhenNotRead(t *testing.T) {
	in := midUpgrade()
	in.Syncz = nil
	d := Compare(Build(in), Build(afterMigration()))
	if len(d.Proxies) != 0 {
		t.Errorf("proxies compared although one side did not read them: %+v", d.Proxies)
	}
}
