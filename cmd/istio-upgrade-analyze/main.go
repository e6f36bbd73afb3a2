// Command istio-upgrade-analyze is the plugin's companion that runs Istio's configuration analysis
// (pkg/istio/analyzer): options as JSON on stdin, the messages as JSON on stdout.
package main

import (
	"context"
	"encoding/json"
	"os"
	"os/signal"

	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio/analyzer"
)

func main() {
	if err := run(); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}

func run() error {
	if err := istio.ConfigureAnalyzerLogging(); err != nil {
		return err
	}
	var o istio.AnalyzeOptions
	if err := json.NewDecoder(os.Stdin).Decode(&o); err != nil {
		return err
	}
	cc, err := clientConfig(o.KubeFlags)
	if err != nil {
		return err
	}
	rc, err := cc.ClientConfig()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ms, err := analyzer.Analyze(ctx, rc, o)
	if err != nil {
		return err
	}
	if ms == nil {
		ms = []istio.AnalysisMessage{}
	}
	return json.NewEncoder(os.Stdout).Encode(istio.AnalysisResult{Messages: ms, Build: istio.Build()})
}

// clientConfig reads kubectl's connection flags, as the plugin passed them on (kube.FlagArgs).
func clientConfig(args []string) (clientcmd.ClientConfig, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	overrides := &clientcmd.ConfigOverrides{}
	fs := pflag.NewFlagSet("kube", pflag.ContinueOnError)
	fs.StringVar(&rules.ExplicitPath, "kubeconfig", "", "")
	clientcmd.BindOverrideFlags(overrides, fs, clientcmd.RecommendedConfigOverrideFlags(""))
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides), nil
}
