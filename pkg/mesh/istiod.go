package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// IstiodMonitoringPort serves istiod's Prometheus metrics.
const IstiodMonitoringPort = 15014

// tokenLife is how long a minted token is reused (it is requested for 10 minutes).
const tokenLife = 5 * time.Minute

// Istiod is the one client of istiod's debug and monitoring endpoints: status, the runner's
// snapshots, gates, routing checks and metrics all ask through it. It mints the istio-ca token once
// (reused for tokenLife) and keeps one port-forward per pod and port until Close, so a gate polling
// every second costs one gRPC request per istiod, not a token request and a forward each time.
type Istiod struct {
	c      *kube.Clients
	opts   ReadOptions
	mu     sync.Mutex
	token  string
	minted time.Time
	fwd    map[string]forward // "pod:port" → its port-forward
	verify *tls.Config        // how an --xds-address istiod is verified
	ctx    context.Context    // the port-forwards' lifetime: until Close
	cancel context.CancelFunc
}

type forward struct {
	addr string
	stop func()
}

// NewIstiod prepares a client; nothing is asked until a method is called. opts.XDS says how istiod is
// reached (--xds-address, or a port-forward to every pod).
func NewIstiod(c *kube.Clients, opts ReadOptions) *Istiod {
	ctx, cancel := context.WithCancel(context.Background())
	return &Istiod{c: c, opts: opts, fwd: map[string]forward{}, ctx: ctx, cancel: cancel}
}

// Close stops the port-forwards.
func (i *Istiod) Close() {
	i.mu.Lock()
	defer i.mu.Unlock()
	for k, f := range i.fwd {
		f.stop()
		delete(i.fwd, k)
	}
	i.cancel()
}

// TokenServiceAccount is the ServiceAccount of the Istio namespace whose token the istiod client
// presents: the one a Role grants serviceaccounts/token on, by name (never istiod's own).
const TokenServiceAccount = "default"

// Token is a short-lived token of the Istio namespace's default ServiceAccount with audience istio-ca,
// the identity istiod accepts for debug requests (as istioctl does), minted once per tokenLife.
func (i *Istiod) Token(ctx context.Context) (string, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.token != "" && time.Since(i.minted) < tokenLife {
		return i.token, nil
	}
	exp := int64(600)
	tr, err := i.c.Kube.CoreV1().ServiceAccounts(i.opts.IstioNamespace).CreateToken(ctx, TokenServiceAccount, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{Audiences: []string{"istio-ca"}, ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/default (needed to ask istiod for proxy status): %w", i.opts.IstioNamespace, err)
	}
	i.token, i.minted = tr.Status.Token, time.Now()
	return i.token, nil
}

// forward returns the local address of a port-forward to pod:port, opening it on first use. The lock
// is not held while a forward opens, so the pods of a parallel Syncz open theirs at the same time.
func (i *Istiod) forward(ctx context.Context, p corev1.Pod, port int) (string, error) {
	key := fmt.Sprintf("%s:%d", p.Name, port)
	i.mu.Lock()
	f, ok := i.fwd[key]
	i.mu.Unlock()
	if ok {
		return f.addr, nil
	}
	// Bounded by ctx while it opens; once open it lives until Close (or until a request through it fails).
	type opened struct {
		forward
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		a, s, err := i.c.PortForward(i.ctx, p.Namespace, p.Name, port)
		ch <- opened{forward{a, s}, err}
	}()
	select {
	case o := <-ch:
		if o.err != nil {
			return "", o.err
		}
		i.mu.Lock()
		defer i.mu.Unlock()
		if f, ok := i.fwd[key]; ok { // another caller opened one meanwhile
			o.stop()
			return f.addr, nil
		}
		i.fwd[key] = o.forward
		return o.addr, nil
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.err == nil {
				o.stop()
			}
		}()
		return "", fmt.Errorf("port-forward to %s/%s:%d: %w", p.Namespace, p.Name, port, ctx.Err())
	}
}

// rootCertMap holds the mesh root istiod writes into every namespace.
const rootCertMap = "istio-ca-root-cert"

// verifier checks istiod (port-forwarded or at --xds-address) against the mesh root before the token
// (which can mint mesh certificates) is sent to it.
func (i *Istiod) verifier(ctx context.Context) (*tls.Config, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.verify != nil {
		return i.verify, nil
	}
	cm, err := i.c.Kube.CoreV1().ConfigMaps(i.opts.IstioNamespace).Get(ctx, rootCertMap, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("cannot verify istiod without the mesh root (ConfigMap %s/%s): %w; --insecure-xds skips the check",
			i.opts.IstioNamespace, rootCertMap, err)
	}
	v, err := istio.VerifyIstiod([]byte(cm.Data["root-cert.pem"]), i.opts.IstioNamespace)
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", i.opts.IstioNamespace, rootCertMap, err)
	}
	i.verify = v
	return v, nil
}

// drop closes a forward a request failed through, so the next one opens it again.
func (i *Istiod) drop(p corev1.Pod, port int) {
	key := fmt.Sprintf("%s:%d", p.Name, port)
	i.mu.Lock()
	defer i.mu.Unlock()
	if f, ok := i.fwd[key]; ok {
		f.stop()
		delete(i.fwd, key)
	}
}

// ask dials one istiod's xDS endpoint (pod nil: --xds-address) and calls fn on the connection.
func (i *Istiod) ask(ctx context.Context, p *corev1.Pod, fn func(grpc.ClientConnInterface) error) error {
	x := i.opts.XDS
	addr, plaintext := x.Address, x.Plaintext
	token := ""
	if p != nil || !plaintext {
		t, err := i.Token(ctx)
		if err != nil {
			return err
		}
		token = t
	}
	if p != nil {
		a, err := i.forward(ctx, *p, x.Port)
		if err != nil {
			return err
		}
		addr, plaintext = a, false
	}
	// Every token path verifies istiod first, a port-forward's too: the token can mint mesh certificates.
	var verify *tls.Config
	if !plaintext && !x.Insecure {
		v, err := i.verifier(ctx)
		if err != nil {
			return err
		}
		verify = v
	}
	conn, err := istio.Dial(ctx, addr, token, plaintext, verify)
	if err == nil {
		err = fn(conn)
		conn.Close()
	}
	if err != nil && p != nil {
		i.drop(*p, x.Port)
	}
	return err
}

func (i *Istiod) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	t := i.opts.XDS.Timeout
	if t == 0 {
		t = istio.DefaultTimeout
	}
	return context.WithTimeout(ctx, t)
}

// Syncz asks every running pod of istiodPods for syncz, in parallel, or asks --xds-address once.
func (i *Istiod) Syncz(ctx context.Context, istiodPods []corev1.Pod) []IstiodSyncz {
	return i.SynczIn(ctx, istiodPods, nil)
}

// SynczIn is Syncz of the proxies in namespaces only (all when none): istiod's debug endpoint filters
// by namespace, one request each. --xds-address's xDS syncz has no filter and answers whole.
func (i *Istiod) SynczIn(ctx context.Context, istiodPods []corev1.Pod, namespaces []string) []IstiodSyncz {
	ctx, cancel := i.timeout(ctx)
	defer cancel()
	fetch := func(p *corev1.Pod) IstiodSyncz {
		var sz IstiodSyncz
		if p != nil {
			if len(namespaces) == 0 {
				sz.Proxies, sz.Err = i.synczHTTP(ctx, *p, "")
				return sz
			}
			for _, ns := range namespaces {
				ps, err := i.synczHTTP(ctx, *p, ns)
				if err != nil {
					sz.Err = err
					return sz
				}
				sz.Proxies = append(sz.Proxies, ps...)
			}
			return sz
		}
		sz.Err = i.ask(ctx, p, func(conn grpc.ClientConnInterface) error {
			info, proxies, err := istio.FetchSyncz(ctx, conn, i.opts.IstioNamespace)
			sz.Pod, sz.Version, sz.Proxies = info.ID, info.Version, proxies
			return err
		})
		return sz
	}
	if i.opts.XDS.Address != "" {
		sz := fetch(nil)
		if sz.Pod == "" {
			sz.Pod = i.opts.XDS.Address
		}
		for _, p := range istiodPods {
			if p.Name == sz.Pod {
				sz.Revision = istio.RevisionOf(p.Labels)
			}
		}
		return []IstiodSyncz{sz}
	}
	running := Running(istiodPods)
	out := make([]IstiodSyncz, len(running))
	var wg sync.WaitGroup
	for n := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := running[n]
			sz := fetch(&p)
			sz.Pod, sz.Revision = p.Name, istio.RevisionOf(p.Labels)
			out[n] = sz
		}()
	}
	wg.Wait()
	return out
}

// synczHTTP reads one istiod pod's /debug/syncz through a port-forward to its debug port (see
// istio.DebugHTTPPort for why not the xDS syncz).
func (i *Istiod) synczHTTP(ctx context.Context, p corev1.Pod, namespace string) ([]istio.ProxySync, error) {
	addr, err := i.forward(ctx, p, istio.DebugHTTPPort)
	if err != nil {
		return nil, err
	}
	ps, err := istio.FetchSynczHTTP(ctx, "http://"+addr, namespace)
	if err != nil {
		i.drop(p, istio.DebugHTTPPort)
	}
	return ps, err
}

// ProxiesOrError is ProxiesIn, with the first istiod's error when any did not answer.
func (i *Istiod) ProxiesOrError(ctx context.Context, istiodPods []corev1.Pod, namespaces ...string) (map[string]string, error) {
	out := map[string]string{}
	var first error
	for _, sz := range i.SynczIn(ctx, istiodPods, namespaces) {
		if sz.Err != nil && first == nil {
			first = fmt.Errorf("istiod %s: %w", sz.Pod, sz.Err)
		}
		for _, p := range sz.Proxies {
			out[p.Namespace+"/"+p.Pod] = p.State()
		}
	}
	return out, first
}

// ProxiesIn is namespace/pod → sync state of the proxies in namespaces (all when none) the given
// istiod pods serve: what a gate polls. Each istiod is asked for those namespaces only (syncz's
// namespace filter): a gate on one batch reads its proxies, not every proxy of a 5,000-proxy mesh
// each tick. Pods that do not answer are left out (the gate keeps waiting for their proxies).
func (i *Istiod) ProxiesIn(ctx context.Context, istiodPods []corev1.Pod, namespaces ...string) map[string]string {
	out, _ := i.ProxiesOrError(ctx, istiodPods, namespaces...)
	return out
}

// Proxies is ProxiesIn over every namespace.
func (i *Istiod) Proxies(ctx context.Context, istiodPods []corev1.Pod) map[string]string {
	return i.ProxiesIn(ctx, istiodPods)
}

// Routing asks istiod for the listeners and routes it serves the proxy of pod namespace/name. The proxy
// is connected to one of istiodPods (one revision's); each running one is asked in turn until one knows it.
func (i *Istiod) Routing(ctx context.Context, istiodPods []corev1.Pod, namespace, pod string) (istio.RoutingConfig, error) {
	ctx, cancel := i.timeout(ctx)
	defer cancel()
	proxyID := pod + "." + namespace
	var rc istio.RoutingConfig
	get := func(conn grpc.ClientConnInterface) error {
		body, err := istio.RequestConfigDump(ctx, conn, i.opts.IstioNamespace, proxyID)
		if err == nil {
			rc, err = istio.ParseRoutingConfig(body)
		}
		return err
	}
	if i.opts.XDS.Address != "" {
		return rc, i.ask(ctx, nil, get)
	}
	// A proxy that is reconnecting (istiod closes connections at their max age, a proxy re-subscribes
	// when its clusters change) is briefly connected to none: asked again each second until the
	// request's timeout, since a fixed count of tries ran out on a slow reconnect (CI).
	for {
		var errs []error
		reconnecting := true
		for _, p := range Running(istiodPods) {
			err := i.ask(ctx, &p, get)
			if err == nil {
				return rc, nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
			reconnecting = reconnecting && strings.Contains(err.Error(), "not connected to this Pilot")
		}
		if len(errs) == 0 {
			return rc, fmt.Errorf("no running istiod to ask for %s", proxyID)
		}
		if !reconnecting {
			return rc, errors.Join(errs...)
		}
		select {
		case <-ctx.Done():
			return rc, fmt.Errorf("%s still connected to no istiod when the wait ran out: %w", proxyID, errors.Join(errs...))
		case <-time.After(time.Second):
		}
	}
}

// Metrics reads the gate counters from every running istiod pod of a revision (port-forward to 15014,
// GET /metrics) and sums them.
func (i *Istiod) Metrics(ctx context.Context, istiodPods []corev1.Pod, revision string) (map[string]float64, error) {
	total := map[string]float64{}
	n := 0
	for _, p := range Running(istiodPods) {
		if istio.RevisionOf(p.Labels) != revision {
			continue
		}
		m, err := i.podMetrics(ctx, p)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			total[k] += v
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("no running istiod pod of revision %s", revision)
	}
	return total, nil
}

func (i *Istiod) podMetrics(ctx context.Context, p corev1.Pod) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	addr, err := i.forward(ctx, p, IstiodMonitoringPort)
	if err != nil {
		return nil, err
	}
	m, err := getMetrics(ctx, addr)
	if err != nil {
		i.drop(p, IstiodMonitoringPort)
		return nil, fmt.Errorf("istiod %s metrics: %w", p.Name, err)
	}
	return m, nil
}

func getMetrics(ctx context.Context, addr string, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return istio.ParseMetrics(resp.Body, names...)
}

// ZtunnelStatsPort is where ztunnel serves its metrics.
const ZtunnelStatsPort = 15020

// ZtunnelConnections reads how many TCP connections a ztunnel pod carries (port-forward to its stats
// port): what restarting it would reset.
func ZtunnelConnections(ctx context.Context, c *kube.Clients, p *corev1.Pod) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addr, stop, err := c.PortForward(ctx, p.Namespace, p.Name, ZtunnelStatsPort)
	if err != nil {
		return 0, err
	}
	defer stop()
	m, err := getMetrics(ctx, addr, istio.ZtunnelConnectionMetrics...)
	if err != nil {
		return 0, err
	}
	return istio.OpenConnections(m), nil
}

// Running are the pods that are running and not being deleted: the ones worth asking.
func Running(pods []corev1.Pod) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}
