// Package analyzer runs Istio's configuration analysis (the analyzers of `istioctl analyze`). It links
// most of istiod, so only the companion executable istio-upgrade-analyze imports it: the plugin itself
// stays small and starts fast, and execs the companion when a command needs analysis.
package analyzer

import (
	"context"
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/rest"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"

	"istio.io/istio/pkg/config/analysis/analyzers"
	"istio.io/istio/pkg/config/analysis/diag"
	"istio.io/istio/pkg/config/analysis/local"
	"istio.io/istio/pkg/config/resource"
	istiokube "istio.io/istio/pkg/kube"
)

// Analyze runs every analyzer `istioctl analyze` runs against the live cluster and returns the messages,
// sorted (most severe first, then by object).
func Analyze(ctx context.Context, rc *rest.Config, o istio.AnalyzeOptions) ([]istio.AnalysisMessage, error) {
	client, err := istiokube.NewClient(istiokube.NewClientConfigForRestConfig(rc), "")
	if err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	defer client.Shutdown()
	rev := o.Revision
	if rev == "" {
		rev = "default"
	}
	sa := local.NewIstiodAnalyzer(analyzers.AllCombined(), resource.Namespace(o.Namespace), resource.Namespace(o.IstioNamespace), nil)
	sa.AddRunningKubeSourceWithRevision(istiokube.EnableCrdWatcher(client), rev, false)
	return run(ctx, sa, o)
}

// analyzeFiles runs the same analyzers over YAML documents (name → content), as `istioctl analyze
// --use-kube=false FILES` does: with Istio's default resources, since no cluster provides them.
func analyzeFiles(ctx context.Context, o istio.AnalyzeOptions, files map[string]string) ([]istio.AnalysisMessage, error) {
	sa := local.NewIstiodAnalyzer(analyzers.AllCombined(), resource.Namespace(o.Namespace), resource.Namespace(o.IstioNamespace), nil)
	var readers []local.ReaderSource
	for name, content := range files {
		readers = append(readers, local.ReaderSource{Name: name, Reader: strings.NewReader(content)})
	}
	if err := sa.AddReaderKubeSource(readers); err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	if err := sa.AddDefaultResources(); err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	return run(ctx, sa, o)
}

// run applies the revision's mesh config and analyses, bounded by ctx.
func run(ctx context.Context, sa *local.IstiodAnalyzer, o istio.AnalyzeOptions) ([]istio.AnalysisMessage, error) {
	if o.MeshConfig != "" {
		// The library takes a revision's mesh config only from a file.
		f, err := os.CreateTemp("", "istio-upgrade-mesh-*.yaml")
		if err != nil {
			return nil, fmt.Errorf("analysis: %w", err)
		}
		defer os.Remove(f.Name())
		_, werr := f.WriteString(o.MeshConfig)
		if cerr := f.Close(); werr != nil || cerr != nil {
			return nil, fmt.Errorf("analysis: writing the mesh config: %v %v", werr, cerr)
		}
		if err := sa.AddFileKubeMeshConfig(f.Name()); err != nil {
			return nil, fmt.Errorf("analysis: the mesh config of revision %s: %w", o.Revision, err)
		}
	}
	stop := make(chan struct{})
	defer close(stop)
	done := make(chan struct{})
	var res local.AnalysisResult
	var err error
	go func() {
		defer close(done)
		res, err = sa.Analyze(stop)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("analysis: %w", ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	return fromDiag(res.Messages), nil
}

func fromDiag(ms diag.Messages) []istio.AnalysisMessage {
	out := make([]istio.AnalysisMessage, 0, len(ms))
	for i := range ms {
		m := &ms[i]
		u := m.Unstructured(false)
		am := istio.AnalysisMessage{Code: m.Type.Code(), Level: m.Type.Level().String(), Message: fmt.Sprint(u["message"]), DocURL: fmt.Sprint(u["documentationUrl"])}
		if m.Resource != nil {
			am.Namespace = m.Resource.Metadata.FullName.Namespace.String()
			am.Name = m.Resource.Metadata.FullName.Name.String()
			// FriendlyName is "Kind ns/name" (istioctl's convention).
			if k, _, ok := strings.Cut(m.Resource.Origin.FriendlyName(), " "); ok {
				am.Kind = k
			}
		}
		out = append(out, am)
	}
	istio.SortAnalysis(out)
	return out
}
