package analyzer

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/checks"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
)

func TestMain(m *testing.M) {
	_ = istio.ConfigureAnalyzerLogging() // the analyzers log at info otherwise
	os.Exit(m.Run())
}

// Istio's own analyzers over a fixture configuration: the messages of the classes precheck surfaces
// come back with their code, level and object, and become findings with our severity and fix.
func TestAnalyzersOnFixtures(t *testing.T) {
	b, err := os.ReadFile("testdata/upgrade.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ms, err := analyzeFiles(ctx, istio.AnalyzeOptions{IstioNamespace: "istio-system"}, map[string]string{"upgrade.yaml": string(b)})
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]checks.Finding{}
	for _, m := range ms {
		f := checks.AnalysisFinding(m)
		found[f.Code+" "+f.Object] = f
	}
	for key, sev := range map[string]checks.Severity{
		"IST0101 virtualservice/shop/web":   checks.Error,
		"IST0109 virtualservice/shop/web-a": checks.Error,
		"IST0132 virtualservice/shop/web":   checks.Warning,
	} {
		f, ok := found[key]
		if !ok {
			t.Errorf("no %s among %v", key, ms)
			continue
		}
		if f.Severity != sev || f.Message == "" || f.Fix == "" {
			t.Errorf("%s: %+v", key, f)
		}
	}
	for i := 1; i < len(ms); i++ {
		if ms[i-1].Level == "Info" && ms[i].Level == "Error" {
			t.Errorf("not sorted most severe first: %v", ms)
		}
	}
}
