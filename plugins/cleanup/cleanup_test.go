package cleanup

import (
	"strings"
	"testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// clean is a mesh fully moved to 1-31: nothing blocks removing 1-30.
func clean() *mesh.Snapshot {
	return &mesh.Snapshot{
		Revisions: []mesh.Revision{{Name: "1-30", Installed: true}, {Name: "1-31", Installed: true, DefaultValidator: true}},
		Tags:      []mesh.Tag{{Name: "default", Revision: "1-31"}},
		Namespaces: []mesh.Namespace{
			{Name: "shop", RevLabel: "1-31", Revision: "1-31"},
		},
		Workloads: []mesh.Workload{{Kind: "Deployment", Namespace: "shop", Name: "web", Pods: 2, DesiredRevision: "1-31", InjectedRevisions: []string{"1-31"}}},
		Gateways:  []mesh.Gateway{{Namespace: "istio-ingress", Name: "gw-old", Revision: "1-30", Replicas: 0}},
		Proxies:   []mesh.Proxy{{Pod: "web-1", Namespace: "shop", Revision: "1-31"}},
	}
}

func TestNoBlockersWhenMoved(t *testing.T) {
	if b := Blockers(clean(), "1-30", "1-31"); len(b) != 0 {
		t.Errorf("blockers on a moved mesh: %+v", b)
	}
}

func TestEveryBlocker(t *testing.T) {
	cases := []struct {
		kind, fix string
		mutate    func(s *mesh.Snapshot)
	}{
		{"namespace", "migrate-ns shop --to 1-31", func(s *mesh.Snapshot) { s.Namespaces[0].Revision, s.Namespaces[0].RevLabel = "1-30", "1-30" }},
		{"namespace", "migrate-ns legacy --to 1-31", func(s *mesh.Snapshot) {
			s.Namespaces = append(s.Namespaces, mesh.Namespace{Name: "legacy", RevLabel: "prod", Revision: "1-30", Via: "prod"})
		}},
		{"tag", "tag-move prod --to 1-31 --overwrite", func(s *mesh.Snapshot) { s.Tags = append(s.Tags, mesh.Tag{Name: "prod", Revision: "1-30"}) }},
		{"tag", "tag-move default --to 1-31", func(s *mesh.Snapshot) { s.Tags[0].Revision = "1-30" }},
		{"validator", "tag-move default", func(s *mesh.Snapshot) { s.Revisions[0].DefaultValidator = true }},
		{"gateway", "shift --gateway istio-ingress/gw-old --revision 1-31 --weight 100", func(s *mesh.Snapshot) { s.Gateways[0].Replicas = 2 }},
		{"pods", "rollout restart deployment/web", func(s *mesh.Snapshot) { s.Workloads[0].InjectedRevisions = []string{"1-30", "1-31"} }},
		{"proxies", "move their workloads", func(s *mesh.Snapshot) { s.Proxies[0].Revision = "1-30" }},
	}
	for _, c := range cases {
		s := clean()
		c.mutate(s)
		bs := Blockers(s, "1-30", "1-31")
		found := false
		for _, b := range bs {
			if b.Kind == c.kind && strings.Contains(b.Fix, c.fix) && b.Object != "" && b.Message != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s blocker with fix %q not found in %+v", c.kind, c.fix, bs)
		}
	}
}

func TestValidate(t *testing.T) {
	if cli.CodeOf((&Options{}).Validate(nil, nil)) != cli.ExitUsage {
		t.Error("missing --revision must be a usage error")
	}
	if err := (&Options{Revision: "1-30"}).Validate(nil, nil); err != nil {
		t.Error(err)
	}
}

func TestRevisionKindsNeverIncludeShared(t *testing.T) {
	for _, k := range revisionKinds {
		if k.Resource == "customresourcedefinitions" || k.Resource == "namespaces" {
			t.Errorf("cleanup must never list %s", k.Resource)
		}
	}
}

func TestNewerOrdersVersionsNotStrings(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{{"1.10.0", "1.9.3", true}, {"1.9.3", "1.10.0", false}, {"1.31.0", "1.30.0", true}, {"dev", "1.30.0", false}, {"1.30.0", "unknown", true}} {
		if got := newer(c.a, c.b); got != c.want {
			t.Errorf("newer(%s, %s) = %v", c.a, c.b, got)
		}
	}
}
