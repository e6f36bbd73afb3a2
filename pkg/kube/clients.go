// Package kube builds Kubernetes clients from kubectl's flags and holds the cluster helpers every
// step shares: port-forwarding, rollouts and waits.
package kube

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// Clients are the clients one command uses, built once from kubectl's connection flags.
type Clients struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	// Metadata lists objects as metadata only (labels, annotations, owners): a fraction of the bytes.
	Metadata metadata.Interface
	Config   *rest.Config
	// Namespace is the namespace of -n or the kubeconfig context; Explicit says -n was given.
	Namespace string
	Explicit  bool
	// Fence refuses every client's writes once the run lost the lock (see Fence).
	Fence *Fence
	// Forward, when set, opens port-forwards instead of the apiserver (fake clusters in unit tests
	// point it at a local istiod double).
	Forward func(ctx context.Context, namespace, pod string, port int) (addr string, stop func(), err error)
}

// PortForward opens a port-forward to pod:port: through Forward when set, else through the apiserver.
func (c *Clients) PortForward(ctx context.Context, namespace, pod string, port int) (string, func(), error) {
	if c.Forward != nil {
		return c.Forward(ctx, namespace, pod, port)
	}
	if c.Config == nil {
		return "", nil, fmt.Errorf("port-forward to %s/%s:%d: no REST config", namespace, pod, port)
	}
	return PortForward(ctx, c.Config, namespace, pod, port)
}

// NewClients builds clients from a RESTClientGetter (kubectl's ConfigFlags).
func NewClients(getter genericclioptions.RESTClientGetter) (*Clients, error) {
	cfg, err := getter.ToRESTConfig()
	if err != nil {
		return nil, explainConfigError(err)
	}
	// kubectl's defaults (5 QPS) would throttle a fleet-wide migration; watches carry most reads anyway.
	if cfg.QPS == 0 {
		cfg.QPS = 50
		cfg.Burst = 100
	}
	// kubectl's --request-timeout becomes http.Client's timeout, which would also cut every watch a
	// gate waits on: it bounds each call that is not a watch or a stream instead, as does a default.
	timeout := DefaultRequestTimeout
	if cfg.Timeout > 0 {
		timeout, cfg.Timeout = cfg.Timeout, 0
	}
	fence := &Fence{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &guard{next: rt, fence: fence, timeout: timeout} })
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ns, explicit, err := getter.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, explainConfigError(err)
	}
	return &Clients{Kube: kc, Dynamic: dc, Metadata: mc, Config: cfg, Namespace: ns, Explicit: explicit, Fence: fence}, nil
}

// explainConfigError turns kubeconfig loader errors into one clear sentence.
func explainConfigError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "context was not found"):
		return fmt.Errorf("kubeconfig: %v (see `kubectl config get-contexts`)", err)
	case strings.Contains(msg, "invalid configuration"):
		return fmt.Errorf("kubeconfig: %v", err)
	}
	return err
}

// FlagArgs are kubectl's connection flags as set on f (--context=…), for a process that must reach the
// same cluster as the same user.
func FlagArgs(f *genericclioptions.ConfigFlags) []string {
	var out []string
	str := func(name string, v *string) {
		if v != nil && *v != "" {
			out = append(out, "--"+name+"="+*v)
		}
	}
	str("kubeconfig", f.KubeConfig)
	str("context", f.Context)
	str("cluster", f.ClusterName)
	str("user", f.AuthInfoName)
	str("server", f.APIServer)
	str("tls-server-name", f.TLSServerName)
	str("certificate-authority", f.CAFile)
	str("client-certificate", f.CertFile)
	str("client-key", f.KeyFile)
	str("token", f.BearerToken)
	str("as", f.Impersonate)
	str("as-uid", f.ImpersonateUID)
	str("request-timeout", f.Timeout)
	if f.ImpersonateGroup != nil {
		for _, g := range *f.ImpersonateGroup {
			out = append(out, "--as-group="+g)
		}
	}
	if f.Insecure != nil && *f.Insecure {
		out = append(out, "--insecure-skip-tls-verify=true")
	}
	return out
}
