package mesh

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// RoutingOf asks istiod for the listeners and routes it serves the proxy of pod namespace/name. The
// proxy is connected to one of istiodPods (one revision's); each running one is asked in turn until
// one knows it.
func RoutingOf(ctx context.Context, c *kube.Clients, istiodPods []corev1.Pod, opts ReadOptions, namespace, pod string) (istio.RoutingConfig, error) {
	timeout := opts.XDS.Timeout
	if timeout == 0 {
		timeout = istio.DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	proxyID := pod + "." + namespace
	ask := func(addr, token string, plaintext bool) (istio.RoutingConfig, error) {
		conn, err := istio.Dial(ctx, addr, token, plaintext)
		if err != nil {
			return istio.RoutingConfig{}, err
		}
		defer conn.Close()
		body, err := istio.RequestConfigDump(ctx, conn, opts.IstioNamespace, proxyID)
		if err != nil {
			return istio.RoutingConfig{}, err
		}
		return istio.ParseRoutingConfig(body)
	}
	token := ""
	if opts.XDS.Address == "" || !opts.XDS.Plaintext {
		t, err := Token(ctx, c, opts.IstioNamespace)
		if err != nil {
			return istio.RoutingConfig{}, err
		}
		token = t
	}
	if opts.XDS.Address != "" {
		return ask(opts.XDS.Address, token, opts.XDS.Plaintext)
	}
	var errs []error
	for _, p := range istiodPods {
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		addr, stop, err := kube.PortForward(ctx, c.Config, p.Namespace, p.Name, opts.XDS.Port)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
			continue
		}
		rc, err := ask(addr, token, false)
		stop()
		if err == nil {
			return rc, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
	}
	if len(errs) == 0 {
		return istio.RoutingConfig{}, fmt.Errorf("no running istiod to ask for %s", proxyID)
	}
	return istio.RoutingConfig{}, errors.Join(errs...)
}
