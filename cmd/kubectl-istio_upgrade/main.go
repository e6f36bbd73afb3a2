// Command kubectl-istio_upgrade is the kubectl plugin `kubectl istio-upgrade`.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	_ "k8s.io/client-go/plugin/pkg/client/auth" // cloud auth providers, as kubectl has them

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/plugins"
)

func main() {
	if err := istio.ConfigureLogging(); err != nil {
		os.Stderr.WriteString("warning: " + err.Error() + "\n")
	}
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	root := cli.NewRootCommand(streams, plugins.Commands()...)
	os.Exit(cli.Execute(root))
}
