package precheck

import (
	"bytes"
	"encoding/json"
	"testing"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/checks"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/golden"
)

func sampleReport() Report {
	fs := []checks.Finding{
		{Severity: checks.Error, Code: "TARGET_NOT_INSTALLED", Object: "revision/1-31", Message: "revision 1-31 is not installed (no istiod deployment)", Fix: "istioctl install --set revision=1-31"},
		{Severity: checks.Warning, Code: "SINGLE_REPLICA", Object: "deployment/bookinfo/ratings-v1", Message: "one replica: there is no zero-downtime restart without a second ready replica", Fix: "kubectl -n bookinfo scale deployment ratings-v1 --replicas=2"},
		{Severity: checks.Warning, Code: "NS_LEGACY_INJECTION_LABEL", Object: "namespace/bookinfo", Message: "bookinfo still uses istio-injection=enabled", Fix: "kubectl istio-upgrade migrate-ns bookinfo --to 1-31"},
		{Severity: checks.Info, Code: "ISTIOCTL_INSTALL", Object: "namespace/istio-system", Message: "Istio is installed with istioctl"},
	}
	return Report{TypeMeta: cli.NewTypeMeta("PrecheckReport"), Revision: "1-31", FailOn: "error", Blocking: true,
		Counts: map[string]int{"error": 1, "warning": 2, "info": 1}, Findings: fs, Skipped: []string{},
		Steps: []StepAccess{{Step: "canary-gw", Allowed: true, Missing: []string{}},
			{Step: "cleanup", Missing: []string{"delete clusterroles.rbac.authorization.k8s.io", "delete clusterrolebindings.rbac.authorization.k8s.io"}}}}
}

func TestTableGolden(t *testing.T) {
	var b bytes.Buffer
	if err := writeTable(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "report.txt", b.Bytes())
}

func TestJSONGolden(t *testing.T) {
	var b bytes.Buffer
	if err := cli.WriteDocument(&b, cli.OutputJSON, sampleReport()); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.Kind != "PrecheckReport" || len(back.Findings) != 4 {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	golden.Assert(t, "report.json", b.Bytes())
}

func TestValidate(t *testing.T) {
	ns := "shop"
	empty := ""
	cases := []struct {
		failOn string
		all    bool
		nsFlag *string
		code   cli.ExitCode
	}{
		{"error", false, &empty, 0},
		{"warning", false, &empty, 0},
		{"info", false, &empty, cli.ExitUsage},
		{"fatal", false, &empty, cli.ExitUsage},
		{"error", true, &ns, cli.ExitUsage},
		{"error", true, &empty, 0},
	}
	for _, c := range cases {
		cf := genericclioptions.NewConfigFlags(true)
		cf.Namespace = c.nsFlag
		o := &Options{IOStreams: genericiooptions.NewTestIOStreamsDiscard(), g: &cli.Global{ConfigFlags: cf, Output: "table", IstioNamespace: "istio-system"},
			FailOn: c.failOn, AllNamespaces: c.all}
		if got := cli.CodeOf(o.Validate()); got != c.code {
			t.Errorf("%+v: code %d, want %d", c, got, c.code)
		}
	}
}

func TestPermissionNames(t *testing.T) {
	seen := map[string]bool{}
	reads := 0
	for _, p := range runbookPermissions {
		if seen[p.String()] {
			t.Errorf("duplicate permission %s", p)
		}
		seen[p.String()] = true
		if p.read {
			reads++
		}
	}
	if !seen["create pods/portforward"] || !seen["patch namespaces"] || reads < 10 {
		t.Errorf("permission list incomplete: %v", seen)
	}
}
