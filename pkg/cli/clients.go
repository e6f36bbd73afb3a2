package cli

import (
	"context"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Clients builds the Kubernetes clients from kubectl's flags (once per command).
func (g *Global) Clients() (*kube.Clients, error) {
	if g.clients != nil {
		return g.clients, nil
	}
	c, err := kube.NewClients(g.ConfigFlags)
	if err != nil {
		return nil, err
	}
	g.clients = c
	return c, nil
}

// ReadOptions are the snapshot options the shared flags imply.
func (g *Global) ReadOptions(namespace string, proxies bool) mesh.ReadOptions {
	return mesh.ReadOptions{
		IstioNamespace: g.IstioNamespace, Namespace: namespace, Proxies: proxies,
		XDS: mesh.XDSOptions{Address: g.XDSAddress, Plaintext: g.Plaintext, Insecure: g.InsecureXDS, Port: g.XDSPort, Timeout: 30 * time.Second},
	}
}

// Snapshot reads the whole mesh, proxies included: what steps diff before and after they act.
func (g *Global) Snapshot(ctx context.Context) (*mesh.Snapshot, error) {
	c, err := g.Clients()
	if err != nil {
		return nil, err
	}
	return mesh.Read(ctx, c, g.ReadOptions("", true))
}

// Journal returns the journal in the Istio namespace.
func (g *Global) Journal() (*journal.Journal, error) {
	c, err := g.Clients()
	if err != nil {
		return nil, err
	}
	return journal.New(c.Kube, c.Dynamic, g.IstioNamespace), nil
}

// SetClients gives the command clients built elsewhere (tests: fake clientsets).
func (g *Global) SetClients(c *kube.Clients) { g.clients = c }
