package mesh

import (
	"context"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
)

// Analyze runs Istio's configuration analysis of namespace ("" = all) as revision rev's istiod sees
// the cluster: the configuration labelled for it (or for none) and its own mesh config. rev "" takes
// the revision the default tag points at. kubeFlags are kubectl's connection flags (kube.FlagArgs).
func Analyze(ctx context.Context, kubeFlags []string, s *Snapshot, raw *Inputs, namespace, rev string) ([]istio.AnalysisMessage, error) {
	if rev == "" {
		rev, _, _ = s.Resolver().Default()
	}
	o := istio.AnalyzeOptions{Namespace: namespace, IstioNamespace: s.IstioNamespace, Revision: rev, KubeFlags: kubeFlags}
	cmName := "istio-" + rev
	if rev == "" || rev == istio.DefaultRevision {
		cmName = "istio"
	}
	if raw != nil {
		for _, cm := range raw.ConfigMaps {
			if cm.Name == cmName && cm.Namespace == s.IstioNamespace {
				o.MeshConfig = cm.Data["mesh"]
			}
		}
	}
	return istio.Analyze(ctx, o)
}
